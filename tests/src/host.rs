//! This host's kernel settings as `edge install` sets them on a real root: tests and benches
//! that install under `--root` (which never touches the host) apply them first, so the front
//! proxy they load behaves as on a real node.

use anyhow::{Context, bail};
use edge_core::{Paths, Stack};
use edge_deploy::host::{SysctlOutcome, SysctlReport, apply_sysctls};

/// Applies the partner edge's `[stack] host_sysctls` to this host through the same code as
/// install (the `sysctl.d` drop-in goes to a scratch root). Fails loudly when the kernel lacks
/// one or refuses it: a test that relies on it would otherwise measure something else.
pub fn apply_partner_edge_sysctls() -> anyhow::Result<Vec<SysctlReport>> {
    let stack = Stack::partner_edge();
    let scratch = tempfile::tempdir().context("scratch root for the sysctl drop-in")?;
    let paths = Paths::new(Some(scratch.path()), &stack.stack);
    let reports = apply_sysctls(&stack, &paths, false, std::path::Path::new("/proc/sys"), &|_| {})?;
    for r in &reports {
        if let SysctlOutcome::Unavailable(why) = &r.outcome {
            bail!("this host cannot take {} = {} as edge install would: {why}", r.key, r.value);
        }
    }
    Ok(reports)
}
