//! The node's identity on disk: which files make it, timestamped backups of them
//! (with `install.env`) and byte-identical restores.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use edge_core::secrets::SPEC_HASH_KEY_FILE;
use edge_core::{Paths, SecretKind, Stack};

use crate::OpError;

/// The node-config file `--manual-config` is copied to; part of the identity.
pub const NODE_CONFIG: &str = "node-config.json";

/// The identity files of a stack, relative to its config dir: every secret's files,
/// `node-config.json` and the host's spec-hash key ([`SPEC_HASH_KEY_FILE`]), which keys the
/// containers' `edge.spec-hash` labels: restored with the rest, it keeps them valid, so a
/// reinstall from a backup recreates no container.
pub fn identity_files(stack: &Stack) -> Vec<String> {
    let mut files = Vec::new();
    for s in &stack.secrets {
        match &s.kind {
            SecretKind::RealityKeypair { private, public, uuid } => {
                files.extend([private.clone(), public.clone(), uuid.clone()]);
            }
            SecretKind::WireguardKeypair { private, public } => files.extend([private.clone(), public.clone()]),
            SecretKind::Token { file, .. } | SecretKind::EnvFile { file, .. } => files.push(file.clone()),
        }
    }
    files.push(NODE_CONFIG.to_owned());
    files.push(SPEC_HASH_KEY_FILE.to_owned());
    files
}

/// Copies the identity files present and `install.env` into a new timestamped folder of the
/// backups dir; returns it, or `None` when there was nothing to back up.
pub fn backup(paths: &Paths, stack: &Stack, now: u64) -> Result<Option<PathBuf>, OpError> {
    let mut sources: Vec<(PathBuf, String)> =
        identity_files(stack).into_iter().map(|f| (paths.config_file(&f), f)).filter(|(p, _)| p.is_file()).collect();
    if paths.install_env().is_file() {
        sources.push((paths.install_env(), "install.env".to_owned()));
    }
    if sources.is_empty() {
        return Ok(None);
    }
    let stamp: String = edge_alerts::rfc3339(now).chars().filter(|c| !matches!(c, '-' | ':')).collect();
    let base = paths.backups_dir();
    let mut dir = base.join(&stamp);
    let mut n = 1;
    while dir.exists() {
        dir = base.join(format!("{stamp}-{n}"));
        n += 1;
    }
    std::fs::create_dir_all(&dir).map_err(|e| OpError::io("create backup dir", &dir, e))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| OpError::io("restrict backup dir", &dir, e))?;
    for (source, name) in sources {
        copy_exact(&source, &dir.join(&name))?;
    }
    Ok(Some(dir))
}

/// Puts the identity files and `install.env` of a backup back in place, byte-identical and
/// with their modes. A different file already in place is an error: an identity is never
/// overwritten silently. Returns the files restored.
pub fn restore(paths: &Paths, stack: &Stack, from: &Path) -> Result<Vec<PathBuf>, OpError> {
    if !from.is_dir() {
        return Err(OpError::Restore { dir: from.to_owned(), message: "no such backup dir".into() });
    }
    let mut pairs: Vec<(PathBuf, PathBuf)> = identity_files(stack)
        .into_iter()
        .map(|f| (from.join(&f), paths.config_file(&f)))
        .filter(|(src, _)| src.is_file())
        .collect();
    if pairs.is_empty() {
        return Err(OpError::Restore {
            dir: from.to_owned(),
            message: format!(
                "it holds none of the identity files ({}); is it a backup made by edge uninstall?",
                identity_files(stack).join(", ")
            ),
        });
    }
    if from.join("install.env").is_file() {
        pairs.push((from.join("install.env"), paths.install_env()));
    }
    for (src, dest) in &pairs {
        if let Ok(existing) = std::fs::read(dest) {
            let wanted = std::fs::read(src).map_err(|e| OpError::io("read", src, e))?;
            if existing != wanted && dest != &paths.install_env() {
                return Err(OpError::Restore {
                    dir: from.to_owned(),
                    message: format!(
                        "{} already exists and differs from the backup's; move it away first if the backup's identity is the one to keep",
                        dest.display()
                    ),
                });
            }
        }
    }
    paths.ensure_dirs().map_err(|e| OpError::io("create", paths.config_dir(), e))?;
    for (src, dest) in &pairs {
        copy_exact(src, dest)?;
    }
    Ok(pairs.into_iter().map(|(_, d)| d).collect())
}

/// Copies bytes and mode, atomically.
fn copy_exact(src: &Path, dest: &Path) -> Result<(), OpError> {
    let bytes = std::fs::read(src).map_err(|e| OpError::io("read", src, e))?;
    let mode = std::fs::metadata(src).map_err(|e| OpError::io("stat", src, e))?.permissions().mode() & 0o7777;
    edge_core::write_atomic_with_mode(dest, &bytes, mode)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_then_restore_is_byte_identical() {
        let stack = Stack::partner_edge();
        let root = tempfile::tempdir().unwrap();
        let paths = Paths::new(Some(root.path()), &stack.stack);
        paths.ensure_dirs().unwrap();
        edge_core::secrets::ensure_all(paths.config_dir(), &stack.secrets).unwrap();
        edge_core::secrets::ensure_spec_hash_key(&paths.config_file(SPEC_HASH_KEY_FILE)).unwrap();
        edge_core::write_atomic(&paths.install_env(), b"PARTNER_ID=acme\n").unwrap();
        let before: Vec<_> = identity_files(&stack).iter().map(|f| std::fs::read(paths.config_file(f)).ok()).collect();
        assert!(before.iter().zip(identity_files(&stack)).all(|(b, f)| b.is_some() || f == NODE_CONFIG));

        let dir = backup(&paths, &stack, 1_716_200_000).unwrap().unwrap();
        assert!(dir.ends_with("20240520T101320Z"), "{}", dir.display());
        std::fs::remove_dir_all(paths.config_dir()).unwrap();
        std::fs::remove_file(paths.install_env()).unwrap();

        restore(&paths, &stack, &dir).unwrap();
        let after: Vec<_> = identity_files(&stack).iter().map(|f| std::fs::read(paths.config_file(f)).ok()).collect();
        assert_eq!(before, after);
        for file in ["reality.priv", SPEC_HASH_KEY_FILE] {
            let mode = std::fs::metadata(paths.config_file(file)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{file}");
        }
        assert_eq!(std::fs::read(paths.install_env()).unwrap(), b"PARTNER_ID=acme\n");

        // A second backup in the same second gets its own folder.
        let again = backup(&paths, &stack, 1_716_200_000).unwrap().unwrap();
        assert!(again.ends_with("20240520T101320Z-1"));
    }

    #[test]
    fn a_different_identity_in_place_is_never_overwritten() {
        let stack = Stack::partner_edge();
        let root = tempfile::tempdir().unwrap();
        let paths = Paths::new(Some(root.path()), &stack.stack);
        edge_core::secrets::ensure_all(paths.config_dir(), &stack.secrets).unwrap();
        let dir = backup(&paths, &stack, 1).unwrap().unwrap();
        std::fs::remove_dir_all(paths.config_dir()).unwrap();
        edge_core::secrets::ensure_all(paths.config_dir(), &stack.secrets).unwrap();
        let err = restore(&paths, &stack, &dir).unwrap_err().to_string();
        assert!(err.contains("already exists and differs from the backup's"), "{err}");
        let err = restore(&paths, &stack, root.path()).unwrap_err().to_string();
        assert!(err.contains("holds none of the identity files"), "{err}");
    }
}
