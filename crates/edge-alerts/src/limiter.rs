//! The rate limiter's files: the lock that serializes runs, and `last-alert-ts`.
//!
//! The lock (`<state dir>/.lock`, std's `File::lock`, i.e. `flock`) is held
//! around the whole read-decide-deliver-stamp section, so concurrent runs,
//! whether processes or tasks, take turns. The clock is stamped only after a
//! delivery succeeded.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::AlertError;

/// Seconds of clock skew tolerated in `last-alert-ts` before it is taken as garbage.
const FUTURE_SLACK: u64 = 60;

/// An exclusive hold on the alert state dir; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct StateLock {
    _file: File,
    path: PathBuf,
}

impl StateLock {
    /// Waits for the lock on `path` without blocking the async runtime.
    pub async fn acquire(path: &Path) -> Result<Self, AlertError> {
        let owned = path.to_owned();
        tokio::task::spawn_blocking(move || Self::acquire_blocking(&owned))
            .await
            .map_err(|e| AlertError::LockTask { path: path.to_owned(), reason: e.to_string() })?
    }

    /// Waits for the lock on `path`, blocking the thread.
    pub fn acquire_blocking(path: &Path) -> Result<Self, AlertError> {
        let err = |source| AlertError::Lock { path: path.to_owned(), source };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| AlertError::StateDir { path: dir.to_owned(), source })?;
        }
        // A symlink planted in the lock's place is refused, never followed.
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(err)?;
        file.lock().map_err(err)?;
        Ok(Self { _file: file, path: path.to_owned() })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the temp files a killed writer left next to `files` (`.NAME.tmp.*`,
    /// see `edge_core::write_atomic`). Only call it for files written under this lock.
    pub fn remove_stale_temp_files(&self, files: &[&Path]) {
        for file in files {
            let (Some(dir), Some(name)) = (file.parent(), file.file_name()) else { continue };
            let prefix = format!(".{}.tmp.", name.to_string_lossy());
            let Ok(entries) = std::fs::read_dir(dir) else { continue };
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with(&prefix) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
    }
}

/// Reads `last-alert-ts`; missing or garbage is 0 (the window is open: an alert is never lost to a bad stamp).
pub fn read_last_alert(path: &Path) -> Result<u64, AlertError> {
    match edge_core::read_no_follow(path) {
        Ok(Some(bytes)) => Ok(String::from_utf8_lossy(&bytes).trim().parse().unwrap_or_else(|_| {
            tracing::warn!(path = %path.display(), "last-alert-ts unreadable, taking it as 0");
            0
        })),
        Ok(None) => Ok(0),
        Err(source) => Err(AlertError::ReadState { path: path.to_owned(), source }),
    }
}

/// Stamps `last-alert-ts` (epoch seconds and a newline, as `date +%s` writes it).
pub fn write_last_alert(path: &Path, now: u64) -> Result<(), AlertError> {
    edge_core::write_atomic(path, format!("{now}\n").as_bytes())
        .map_err(|source| AlertError::WriteState { path: path.to_owned(), source })
}

/// Whether a non-critical message may go out at `now`. A stamp from the future
/// (clock stepped back) does not keep the window shut for ever.
pub fn window_open(last: u64, now: u64, min_interval: Duration) -> bool {
    if last > now.saturating_add(FUTURE_SLACK) {
        return true;
    }
    now.saturating_sub(last) >= min_interval.as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(last: u64, now: u64, interval: u64, open: bool) {
        assert_eq!(window_open(last, now, Duration::from_secs(interval)), open, "last={last} now={now}");
    }

    #[test]
    fn a_symlink_planted_as_the_lock_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        let lock = dir.path().join("telegram/.lock");
        std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&target, &lock).unwrap();
        let err = StateLock::acquire_blocking(&lock).unwrap_err().to_string();
        assert!(err.contains(".lock"), "{err}");
        assert!(!target.exists(), "the lock followed the symlink");
    }

    #[test]
    fn window_follows_the_legacy_rule() {
        check(0, 1_000, 600, true);
        check(1_000, 1_599, 600, false);
        check(1_000, 1_600, 600, true);
        check(1_000, 1_000, 0, true);
        check(1_030, 1_000, 600, false);
        check(9_999_999, 1_000, 600, true);
    }

    #[test]
    fn stamp_round_trips_and_garbage_reads_as_zero() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("last-alert-ts");
        assert_eq!(read_last_alert(&path).unwrap(), 0);
        write_last_alert(&path, 1_716_200_000).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "1716200000\n");
        assert_eq!(read_last_alert(&path).unwrap(), 1_716_200_000);
        std::fs::write(&path, "yesterday").unwrap();
        assert_eq!(read_last_alert(&path).unwrap(), 0);
    }

    #[test]
    fn the_lock_excludes_a_second_holder_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/.lock");
        let held = StateLock::acquire_blocking(&path).unwrap();
        let other = File::options().write(true).open(&path).unwrap();
        assert!(other.try_lock().is_err());
        drop(held);
        assert!(other.try_lock().is_ok());
    }

    #[test]
    fn stale_temp_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".outbox.json.tmp.1.2"), "half").unwrap();
        std::fs::write(dir.path().join(".other.tmp.1.2"), "not ours").unwrap();
        std::fs::write(dir.path().join("outbox.json"), "{}").unwrap();
        let lock = StateLock::acquire_blocking(&dir.path().join(".lock")).unwrap();
        lock.remove_stale_temp_files(&[&dir.path().join("outbox.json")]);
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, [".lock", ".other.tmp.1.2", "outbox.json"]);
    }
}
