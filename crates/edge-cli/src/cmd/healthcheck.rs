//! `edge healthcheck`: the operator's numbered checks ([`edge_deploy::healthcheck`]); exit 0
//! only if all pass.

use crate::ExitStatus;
use crate::args::StatusArgs;
use crate::cmd::status::observe;
use crate::rt::block_on;
use crate::settings::Settings;

pub(crate) fn run(settings: &Settings, args: StatusArgs) -> anyhow::Result<ExitStatus> {
    let node = settings.node()?;
    let seen = block_on(observe(&node, args.metrics_url.as_deref()))??;
    let report = edge_deploy::healthcheck(&node, &seen);
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for c in &report.checks {
            outln!("{:>2}. {:<4}  {}: {}", c.number, if c.ok { "ok" } else { "FAIL" }, c.name, c.detail);
        }
        if report.ok {
            outln!("all {} checks passed", report.passed);
        } else {
            outln!("{} of {} checks failed", report.failed, report.checks.len());
        }
    }
    Ok(if report.ok { ExitStatus::Success } else { ExitStatus::Failure })
}
