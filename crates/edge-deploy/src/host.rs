//! Kernel settings a stack needs on its host (`[stack] host_sysctls`): a `sysctl.d` drop-in
//! so they survive a reboot and, on the real root, the live value under `/proc/sys`.
//!
//! The partner edge sets `net.ipv4.tcp_migrate_req = 1`: its front proxy binds a new
//! `SO_REUSEPORT` socket on every config reload and closes the old one, and without the setting
//! the kernel resets every connection still queued on the old socket.
//!
//! Under a root prefix only the drop-in is written: tests and dry runs never change the host.

use std::path::{Path, PathBuf};

use edge_core::{Paths, Stack};
use serde::Serialize;

use crate::OpError;
use crate::progress::{Progress, ProgressSink};

/// One setting and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SysctlReport {
    /// The key, e.g. `net.ipv4.tcp_migrate_req`.
    pub key: String,
    /// The value the stack wants.
    pub value: String,
    /// What happened on this host.
    pub outcome: SysctlOutcome,
}

/// What happened to one setting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "detail")]
pub enum SysctlOutcome {
    /// A dry run: it would be written and applied.
    Planned,
    /// The live value was changed.
    Applied,
    /// The live value was already right.
    AlreadySet,
    /// Only the drop-in was written (a root prefix).
    FileOnly,
    /// The running kernel has no such setting, or refused the value: the install goes on.
    Unavailable(String),
}

/// What a dry run reports: every setting, `Planned`.
pub fn planned(stack: &Stack) -> Vec<SysctlReport> {
    let settings = &stack.stack.host_sysctls;
    settings
        .iter()
        .map(|(key, value)| SysctlReport { key: key.clone(), value: value.clone(), outcome: SysctlOutcome::Planned })
        .collect()
}

/// Writes the stack's drop-in (or removes a stale one when the stack has none) and, unless
/// `rooted`, sets each value under `proc_sys` (`/proc/sys` on a host).
pub fn apply_sysctls(
    stack: &Stack,
    paths: &Paths,
    rooted: bool,
    proc_sys: &Path,
    progress: ProgressSink<'_>,
) -> Result<Vec<SysctlReport>, OpError> {
    let dropin = paths.sysctl_dropin();
    let settings = &stack.stack.host_sysctls;
    if settings.is_empty() {
        match std::fs::remove_file(dropin) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(OpError::io("remove", dropin, e)),
        }
        return Ok(Vec::new());
    }
    if let Some(dir) = dropin.parent() {
        std::fs::create_dir_all(dir).map_err(|e| OpError::io("create", dir, e))?;
    }
    edge_core::write_atomic_with_mode(dropin, dropin_text(stack).as_bytes(), 0o644)?;
    let mut reports = Vec::new();
    for (key, value) in settings {
        let outcome = if rooted { SysctlOutcome::FileOnly } else { set_live(proc_sys, key, value) };
        let said = match &outcome {
            SysctlOutcome::Planned => "would be set".to_owned(),
            SysctlOutcome::Applied => "applied".to_owned(),
            SysctlOutcome::AlreadySet => "already set".to_owned(),
            SysctlOutcome::FileOnly => format!("written to {}, not applied under a root prefix", dropin.display()),
            SysctlOutcome::Unavailable(why) => format!("warning: not applied: {why}"),
        };
        progress(Progress::Note(format!("    {key} = {value} ({said})")));
        reports.push(SysctlReport { key: key.clone(), value: value.clone(), outcome });
    }
    Ok(reports)
}

/// The drop-in's text: what `sysctl --system` reads at boot.
fn dropin_text(stack: &Stack) -> String {
    let mut text = format!("# Written by edge install for {}; removed by edge uninstall.\n", stack.stack.name);
    for (key, value) in &stack.stack.host_sysctls {
        text.push_str(&format!("{key} = {value}\n"));
    }
    text
}

/// `net.ipv4.tcp_migrate_req` lives at `net/ipv4/tcp_migrate_req`.
fn proc_path(proc_sys: &Path, key: &str) -> PathBuf {
    key.split('.').fold(proc_sys.to_owned(), |p, part| p.join(part))
}

fn set_live(proc_sys: &Path, key: &str, value: &str) -> SysctlOutcome {
    let path = proc_path(proc_sys, key);
    let current = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return SysctlOutcome::Unavailable(format!("this kernel has no {key}"));
        }
        Err(e) => return SysctlOutcome::Unavailable(format!("cannot read {}: {e}", path.display())),
    };
    if current.split_whitespace().eq(value.split_whitespace()) {
        return SysctlOutcome::AlreadySet;
    }
    match std::fs::write(&path, format!("{value}\n")) {
        Ok(()) => SysctlOutcome::Applied,
        Err(e) => SysctlOutcome::Unavailable(format!("cannot write {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack_with(settings: &[(&str, &str)]) -> Stack {
        let mut stack = Stack::partner_edge();
        stack.stack.host_sysctls = settings.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        stack
    }

    fn run(stack: &Stack, rooted: bool, root: &Path, proc_sys: &Path) -> Vec<SysctlReport> {
        let paths = Paths::new(Some(root), &stack.stack);
        apply_sysctls(stack, &paths, rooted, proc_sys, &|_| {}).expect("apply")
    }

    #[test]
    fn a_setting_is_written_to_the_dropin_and_applied_live_only_on_the_real_root() {
        let (root, proc_sys) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let live = proc_sys.path().join("net/ipv4/tcp_migrate_req");
        std::fs::create_dir_all(live.parent().unwrap()).unwrap();
        std::fs::write(&live, "0\n").unwrap();
        let stack = stack_with(&[("net.ipv4.tcp_migrate_req", "1")]);
        let dropin = Paths::new(Some(root.path()), &stack.stack).sysctl_dropin().to_owned();

        let reports = run(&stack, true, root.path(), proc_sys.path());
        assert_eq!(reports[0].outcome, SysctlOutcome::FileOnly);
        assert_eq!(std::fs::read_to_string(&live).unwrap(), "0\n", "a root prefix never changes the host");
        let text = std::fs::read_to_string(&dropin).unwrap();
        assert!(text.ends_with("\nnet.ipv4.tcp_migrate_req = 1\n"), "{text}");

        assert_eq!(run(&stack, false, root.path(), proc_sys.path())[0].outcome, SysctlOutcome::Applied);
        assert_eq!(std::fs::read_to_string(&live).unwrap(), "1\n");
        assert_eq!(run(&stack, false, root.path(), proc_sys.path())[0].outcome, SysctlOutcome::AlreadySet);
    }

    #[test]
    fn a_kernel_without_the_setting_is_a_warning_not_a_failure() {
        let (root, proc_sys) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let stack = stack_with(&[("net.ipv4.tcp_migrate_req", "1")]);
        let reports = run(&stack, false, root.path(), proc_sys.path());
        assert_eq!(
            reports[0].outcome,
            SysctlOutcome::Unavailable("this kernel has no net.ipv4.tcp_migrate_req".to_owned())
        );
    }

    #[test]
    fn a_stack_without_settings_removes_its_stale_dropin() {
        let (root, proc_sys) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let with = stack_with(&[("net.ipv4.tcp_migrate_req", "1")]);
        run(&with, true, root.path(), proc_sys.path());
        let dropin = Paths::new(Some(root.path()), &with.stack).sysctl_dropin().to_owned();
        assert!(dropin.exists());
        assert!(run(&stack_with(&[]), true, root.path(), proc_sys.path()).is_empty());
        assert!(!dropin.exists());
    }
}
