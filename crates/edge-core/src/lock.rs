//! One lock for every read-modify-write of the state dir (`channels-status.env`,
//! `install.env`): install, `edge stop`/`start`, the watchdog's timer tick and its daemon
//! all take it, so none of them loses another's update.
//!
//! The lock is held only around the read, the change and the atomic write, never across
//! network waits.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::{ChannelsStatus, CoreError, InstallRecord, Paths};

/// An exclusive lock on a stack's state dir, released on drop.
#[derive(Debug)]
pub struct StateLock {
    _file: File,
    path: PathBuf,
}

impl StateLock {
    /// Waits for the state dir's lock (creating the dir and the lock file if needed). The
    /// lock file is opened without following a symlink planted in its place.
    pub fn acquire(paths: &Paths) -> Result<Self, CoreError> {
        let path = paths.state_lock();
        let err = |source| CoreError::Lock { path: path.clone(), source };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(err)?;
        file.lock().map_err(err)?;
        Ok(Self { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl ChannelsStatus {
    /// Reads `channels-status.env`, lets `change` edit it and writes it back if it changed,
    /// all under the state lock. A corrupt file is an error and is left as it is.
    pub fn update<T>(paths: &Paths, change: impl FnOnce(&mut ChannelsStatus) -> T) -> Result<T, CoreError> {
        let _lock = StateLock::acquire(paths)?;
        let path = paths.channels_status();
        let before = Self::load(&path)?;
        let mut status = before.clone();
        let out = change(&mut status);
        if status != before {
            status.save(&path)?;
        }
        Ok(out)
    }
}

impl InstallRecord {
    /// Reads `install.env`, lets `change` edit it and writes it back if it changed, under the
    /// state lock. A missing file starts from an empty record.
    pub fn update<T>(paths: &Paths, change: impl FnOnce(&mut InstallRecord) -> T) -> Result<T, CoreError> {
        let _lock = StateLock::acquire(paths)?;
        let path = paths.install_env();
        let before = Self::load_optional(&path)?.unwrap_or_default();
        let mut record = before.clone();
        let out = change(&mut record);
        if record != before {
            record.save(&path)?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ChannelState, Stack};

    fn paths(root: &Path) -> Paths {
        Paths::new(Some(root), &Stack::partner_edge().stack)
    }

    #[test]
    fn concurrent_updates_lose_nothing() {
        let root = tempfile::tempdir().unwrap();
        let paths = paths(root.path());
        let writers = 8;
        let rounds = 25;
        std::thread::scope(|s| {
            for w in 0..writers {
                let paths = &paths;
                s.spawn(move || {
                    for r in 0..rounds {
                        ChannelsStatus::update(paths, |status| {
                            // A read-modify-write that takes time, as a tick's does.
                            let state = if r % 2 == 0 { ChannelState::Active } else { ChannelState::FailedAtRuntime };
                            std::thread::yield_now();
                            status.set(&format!("ch{w}-{r}"), state);
                        })
                        .unwrap();
                    }
                });
            }
        });
        let status = ChannelsStatus::load(&paths.channels_status()).unwrap();
        assert_eq!(status.iter().count(), writers * rounds);
    }

    #[test]
    fn a_planted_symlink_is_not_followed() {
        let root = tempfile::tempdir().unwrap();
        let paths = paths(root.path());
        std::fs::create_dir_all(paths.state_dir()).unwrap();
        let target = root.path().join("elsewhere");
        std::os::unix::fs::symlink(&target, paths.state_lock()).unwrap();
        let err = StateLock::acquire(&paths).unwrap_err().to_string();
        assert!(err.contains("state.lock"), "{err}");
        assert!(!target.exists());
    }

    #[test]
    fn a_corrupt_status_file_is_left_alone() {
        let root = tempfile::tempdir().unwrap();
        let paths = paths(root.path());
        std::fs::create_dir_all(paths.state_dir()).unwrap();
        std::fs::write(paths.channels_status(), "xray=up\n").unwrap();
        assert!(ChannelsStatus::update(&paths, |s| s.set("naive", ChannelState::Active)).is_err());
        assert_eq!(std::fs::read_to_string(paths.channels_status()).unwrap(), "xray=up\n");
    }
}
