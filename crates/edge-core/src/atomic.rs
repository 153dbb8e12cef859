//! Atomic file replacement (temp file in the same folder, fsync, rename, fsync of the folder)
//! and the matching read, which never follows a symlink planted where a state file belongs.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::CoreError;

/// Replaces `path` with `contents` atomically, keeping the mode of the file it
/// replaces (0644 for a new file). A crash leaves the old file or the new one,
/// never a torn one.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), CoreError> {
    let mode = fs::metadata(path).map(|m| m.permissions().mode() & 0o7777).unwrap_or(0o644);
    write_atomic_with_mode(path, contents, mode)
}

/// Replaces `path` with `contents` atomically with the given mode. The mode is
/// set before any byte is written, so a secret is never readable by others.
pub fn write_atomic_with_mode(path: &Path, contents: &[u8], mode: u32) -> Result<(), CoreError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let file_name = path.file_name().ok_or_else(|| {
        CoreError::write(path, std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path"))
    })?;
    let err = |e| CoreError::write(path, e);
    let tmp = dir.join(format!(".{}.tmp.{}.{}", file_name.to_string_lossy(), std::process::id(), unique_suffix()));
    let result = (|| {
        let mut file = OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
        // The umask may have narrowed the mode given to open.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(err)
}

/// Reads `path` without following a symlink at its last component; `Ok(None)` when it does
/// not exist. Writes rename over such a link, so reads must not trust it either: a link
/// planted in a state folder would otherwise make edge read (and quote in errors) any file.
pub fn read_no_follow(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    let mut file = match OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(std::io::Error::other("is a symbolic link; edge does not follow links in its folders"));
        }
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(Some(bytes))
}

fn unique_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    (nanos << 16) ^ COUNTER.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_mode_of_the_file_it_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        write_atomic_with_mode(&path, b"one", 0o600).unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn new_file_gets_0644_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plain");
        write_atomic(&path, b"x").unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o644);
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("plain")]);
    }

    #[test]
    fn a_state_file_planted_as_a_symlink_is_refused_and_its_target_never_read() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("shadow");
        fs::write(&target, "root:s3cr3t-hash\n").unwrap();
        let link = dir.path().join("channels-status.env");
        std::os::unix::fs::symlink(&target, &link).unwrap();

        let err = read_no_follow(&link).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        let loaded = crate::ChannelsStatus::load(&link).unwrap_err().to_string();
        assert!(loaded.contains("channels-status.env") && loaded.contains("symbolic link"), "{loaded}");
        assert!(!loaded.contains("s3cr3t"), "the link's target leaks: {loaded}");
        assert_eq!(read_no_follow(&dir.path().join("missing")).unwrap(), None);
        assert_eq!(read_no_follow(&target).unwrap().as_deref(), Some(&b"root:s3cr3t-hash\n"[..]));
    }

    #[test]
    fn failure_names_the_path() {
        let err = write_atomic(Path::new("/nonexistent-dir-for-edge/x"), b"x").unwrap_err();
        assert!(err.to_string().contains("/nonexistent-dir-for-edge/x"), "{err}");
    }
}
