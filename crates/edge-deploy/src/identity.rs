//! The node's identity on disk: which files make it, timestamped backups of them
//! (with `install.env`) and byte-identical restores, the registration token `--token` gives.
//!
//! Two backup layouts are read and written: edge's own (`<state dir>/backups/<stamp>/`, every
//! file at its top) and the legacy installer's (`oxpulse-backup-<epoch>/`, the identity files
//! at its top and `install.env` under `var-lib-oxpulse-partner-edge/`, the state dir's path).

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

/// The identity file `--token` fills: the `token` secret.
pub const TOKEN_FILE: &str = "token";

/// The legacy installer's backup folder name, before its epoch.
pub const LEGACY_BACKUP_PREFIX: &str = "oxpulse-backup-";

/// A registration token (`--token`). `Debug` hides it: it is never printed or logged.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistrationToken(String);

impl RegistrationToken {
    /// The token as given; [`store_token`] checks it (an error never shows it).
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// Printable ASCII, no space, at most 4096 bytes: the one line the `token` file holds.
    fn is_valid(&self) -> bool {
        !self.0.is_empty() && self.0.len() <= 4096 && self.0.bytes().all(|b| b.is_ascii_graphic())
    }
}

impl std::fmt::Debug for RegistrationToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RegistrationToken(<redacted>)")
    }
}

/// Stores `token` as the stack's `token` secret file in `dir` (0600), where the secret would
/// otherwise be generated. A file already holding it is left byte-identical; one holding
/// another token is an error: an identity is never overwritten silently.
pub fn store_token(dir: &Path, stack: &Stack, token: &RegistrationToken) -> Result<(), OpError> {
    let has_secret =
        stack.secrets.iter().any(|s| matches!(&s.kind, SecretKind::Token { file, .. } if file == TOKEN_FILE));
    if !has_secret {
        return Err(OpError::Token(format!("stack {} has no token secret kept in {TOKEN_FILE:?}", stack.stack.name)));
    }
    if !token.is_valid() {
        return Err(OpError::Token("it must be 1 to 4096 printable characters without spaces".to_owned()));
    }
    let path = dir.join(TOKEN_FILE);
    match std::fs::read(&path) {
        Ok(existing) if existing.trim_ascii() == token.0.as_bytes() => return Ok(()),
        Ok(_) => {
            return Err(OpError::Token(format!(
                "{} already holds another token; move it away first if the new one is to replace it",
                path.display()
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(OpError::io("read", &path, e)),
    }
    std::fs::create_dir_all(dir).map_err(|e| OpError::io("create", dir, e))?;
    edge_core::write_atomic_with_mode(&path, format!("{}\n", token.0).as_bytes(), 0o600)?;
    Ok(())
}

/// Where the legacy layout keeps `install.env` inside a backup: the state dir's path with
/// `/` as `-` (`var-lib-oxpulse-partner-edge`).
pub fn legacy_state_subdir(stack: &Stack) -> String {
    stack.stack.state_dir.to_string_lossy().trim_matches('/').replace('/', "-")
}

/// Which layout a backup is written in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum BackupLayout {
    /// `<state dir>/backups/<stamp>/`, every file at its top.
    #[default]
    Edge,
    /// `DIR/oxpulse-backup-<epoch>/`, as the legacy installer wrote under `/root`.
    Legacy(PathBuf),
}

/// Copies the identity files present and `install.env` into a new timestamped folder of the
/// backups dir; returns it, or `None` when there was nothing to back up.
pub fn backup(paths: &Paths, stack: &Stack, now: u64) -> Result<Option<PathBuf>, OpError> {
    backup_as(paths, stack, now, &BackupLayout::Edge)
}

/// [`backup`] in the layout asked for.
pub fn backup_as(paths: &Paths, stack: &Stack, now: u64, layout: &BackupLayout) -> Result<Option<PathBuf>, OpError> {
    let install_env = match layout {
        BackupLayout::Edge => "install.env".to_owned(),
        BackupLayout::Legacy(_) => format!("{}/install.env", legacy_state_subdir(stack)),
    };
    let mut sources: Vec<(PathBuf, String)> =
        identity_files(stack).into_iter().map(|f| (paths.config_file(&f), f)).filter(|(p, _)| p.is_file()).collect();
    if paths.install_env().is_file() {
        sources.push((paths.install_env(), install_env));
    }
    if sources.is_empty() {
        return Ok(None);
    }
    let (base, stamp) = match layout {
        BackupLayout::Edge => (
            paths.backups_dir(),
            edge_alerts::rfc3339(now).chars().filter(|c| !matches!(c, '-' | ':')).collect::<String>(),
        ),
        BackupLayout::Legacy(dir) => (dir.clone(), format!("{LEGACY_BACKUP_PREFIX}{now}")),
    };
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
        let dest = dir.join(&name);
        if let Some(parent) = dest.parent().filter(|p| *p != dir) {
            std::fs::create_dir_all(parent).map_err(|e| OpError::io("create backup dir", parent, e))?;
            std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| OpError::io("restrict backup dir", parent, e))?;
        }
        copy_exact(&source, &dest)?;
    }
    Ok(Some(dir))
}

/// Puts the identity files and `install.env` of a backup (either layout) back in place,
/// byte-identical and with their modes. A different file already in place is an error: an
/// identity is never overwritten silently. Returns the files restored.
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
                "it holds none of the identity files ({}); is it a backup made by edge uninstall or the legacy uninstall.sh?",
                identity_files(stack).join(", ")
            ),
        });
    }
    let legacy_env = from.join(legacy_state_subdir(stack)).join("install.env");
    if let Some(env) = [from.join("install.env"), legacy_env].into_iter().find(|p| p.is_file()) {
        pairs.push((env, paths.install_env()));
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
    fn a_legacy_backup_restores_byte_identical() {
        let stack = Stack::partner_edge();
        assert_eq!(legacy_state_subdir(&stack), "var-lib-oxpulse-partner-edge");
        let legacy = tempfile::tempdir().unwrap();
        let dir = legacy.path().join("oxpulse-backup-1716200000");
        let files: [(&str, &[u8]); 4] = [
            ("reality.priv", b"legacy-priv\n"),
            ("reality.uuid", b"0f8e0c52-1d27-4bb3-9d6a-6a9f4c3f7f10"),
            ("token", b"ptkn_legacy"),
            ("var-lib-oxpulse-partner-edge/install.env", b"PARTNER_ID=acme\nPARTNER_DOMAIN=e.example\nTUNNEL=t1\n"),
        ];
        for (name, bytes) in files {
            let path = dir.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, bytes).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let root = tempfile::tempdir().unwrap();
        let paths = Paths::new(Some(root.path()), &stack.stack);
        let restored = restore(&paths, &stack, &dir).unwrap();
        assert_eq!(restored.len(), 4);
        for (name, bytes) in &files[..3] {
            assert_eq!(std::fs::read(paths.config_file(name)).unwrap(), *bytes, "{name}");
            let mode = std::fs::metadata(paths.config_file(name)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{name}");
        }
        let record = edge_core::InstallRecord::load_optional(&paths.install_env()).unwrap().unwrap();
        assert_eq!((record.partner_id.as_deref(), record.tunnel.as_deref()), (Some("acme"), Some("t1")));
        assert!(record.is_legacy());
    }

    #[test]
    fn a_token_is_stored_0600_once_and_never_shown() {
        let stack = Stack::partner_edge();
        let dir = tempfile::tempdir().unwrap();
        let token = RegistrationToken::new("ptkn_abc");
        assert_eq!(format!("{token:?}"), "RegistrationToken(<redacted>)");
        store_token(dir.path(), &stack, &token).unwrap();
        let path = dir.path().join(TOKEN_FILE);
        assert_eq!(std::fs::read(&path).unwrap(), b"ptkn_abc\n");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        // A legacy file without the newline, same token: left byte-identical.
        std::fs::write(&path, b"ptkn_abc").unwrap();
        store_token(dir.path(), &stack, &token).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"ptkn_abc");
        let err = store_token(dir.path(), &stack, &RegistrationToken::new("ptkn_xyz")).unwrap_err().to_string();
        assert!(err.contains("already holds another token") && !err.contains("ptkn_"), "{err}");
        for bad in ["", "a b", "tab\there", "é"] {
            let err = store_token(dir.path(), &stack, &RegistrationToken::new(bad)).unwrap_err().to_string();
            assert_eq!(err, "--token: it must be 1 to 4096 printable characters without spaces");
        }
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
