//! Where a stack's files live on the host, relocatable under a root prefix.

use std::path::{Component, Path, PathBuf};

use crate::StackMeta;

/// The host paths of one stack, all under an optional root prefix (`--root DIR`),
/// so that tests and dry runs never touch the real `/etc` or `/var/lib`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    root: PathBuf,
    config_dir: PathBuf,
    state_dir: PathBuf,
    systemd_dir: PathBuf,
    healthcheck_script: PathBuf,
    sysctl_dropin: PathBuf,
}

impl Paths {
    /// Paths of `meta`'s stack under `root` (`/` when `None`).
    pub fn new(root: Option<&Path>, meta: &StackMeta) -> Self {
        let root = root.unwrap_or(Path::new("/")).to_owned();
        Self {
            config_dir: under(&root, &meta.config_dir),
            state_dir: under(&root, &meta.state_dir),
            systemd_dir: under(&root, &meta.systemd_dir),
            healthcheck_script: under(&root, Path::new(&format!("/usr/local/sbin/{}-healthcheck", meta.name))),
            sysctl_dropin: under(&root, Path::new(&format!("/etc/sysctl.d/60-{}.conf", meta.name))),
            root,
        }
    }

    /// The root prefix.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// Rendered configs and identity files (mode 0700), e.g. `/etc/oxpulse-partner-edge`.
    pub fn config_dir(&self) -> &Path {
        &self.config_dir
    }
    /// Status and state files, e.g. `/var/lib/oxpulse-partner-edge`.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }
    /// Where systemd units are installed.
    pub fn systemd_dir(&self) -> &Path {
        &self.systemd_dir
    }
    /// The runbook's healthcheck command, e.g. `/usr/local/sbin/oxpulse-partner-edge-healthcheck`:
    /// a wrapper that runs `edge healthcheck` for this install.
    pub fn healthcheck_script(&self) -> &Path {
        &self.healthcheck_script
    }
    /// The stack's kernel settings for `sysctl --system`, e.g.
    /// `/etc/sysctl.d/60-oxpulse-partner-edge.conf`.
    pub fn sysctl_dropin(&self) -> &Path {
        &self.sysctl_dropin
    }
    /// A file in the config dir.
    pub fn config_file(&self, name: &str) -> PathBuf {
        self.config_dir.join(name)
    }
    /// `watchdog.env`: the alert settings the watchdog unit reads (`EnvironmentFile=`), 0600.
    pub fn watchdog_env(&self) -> PathBuf {
        self.config_dir.join("watchdog.env")
    }
    /// `channels-status.env`.
    pub fn channels_status(&self) -> PathBuf {
        self.state_dir.join("channels-status.env")
    }
    /// `upstream-state.env`.
    pub fn upstream_state(&self) -> PathBuf {
        self.state_dir.join("upstream-state.env")
    }
    /// `install.env`.
    pub fn install_env(&self) -> PathBuf {
        self.state_dir.join("install.env")
    }
    /// The lock every read-modify-write of the state dir takes ([`crate::StateLock`]).
    pub fn state_lock(&self) -> PathBuf {
        self.state_dir.join("state.lock")
    }
    /// The alert state dir (`telegram/`, the legacy name operators' scripts read): the
    /// rate-limit clock, the outbox and the lock of the alert limiter.
    pub fn alert_state_dir(&self) -> PathBuf {
        self.state_dir.join("telegram")
    }
    /// Where uninstall keeps timestamped backups of the identity files.
    pub fn backups_dir(&self) -> PathBuf {
        self.state_dir.join("backups")
    }

    /// Creates the config dir (0700) and the state dir (0755) if missing,
    /// and narrows an existing config dir to 0700.
    pub fn ensure_dirs(&self) -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(&self.config_dir)?;
        std::fs::set_permissions(&self.config_dir, std::fs::Permissions::from_mode(0o700))?;
        std::fs::create_dir_all(&self.state_dir)
    }
}

/// `path` re-rooted under `root`; `..` components are dropped so nothing escapes the root.
fn under(root: &Path, path: &Path) -> PathBuf {
    let mut out = root.to_owned();
    for c in path.components() {
        if let Component::Normal(part) = c {
            out.push(part);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_relocated_under_the_root() {
        let meta = crate::Stack::partner_edge().stack;
        let p = Paths::new(Some(Path::new("/tmp/r")), &meta);
        assert_eq!(p.config_dir(), Path::new("/tmp/r/etc/oxpulse-partner-edge"));
        assert_eq!(p.channels_status(), Path::new("/tmp/r/var/lib/oxpulse-partner-edge/channels-status.env"));
        assert_eq!(p.alert_state_dir(), Path::new("/tmp/r/var/lib/oxpulse-partner-edge/telegram"));
        assert_eq!(p.watchdog_env(), Path::new("/tmp/r/etc/oxpulse-partner-edge/watchdog.env"));
        let real = Paths::new(None, &meta);
        assert_eq!(real.upstream_state(), Path::new("/var/lib/oxpulse-partner-edge/upstream-state.env"));
    }

    #[test]
    fn dot_dot_cannot_escape_the_root() {
        assert_eq!(under(Path::new("/r"), Path::new("/../etc/x")), Path::new("/r/etc/x"));
    }
}
