//! `edge smoke`: the stack's smoke checks ([`edge_deploy::smoke`]) as a table or JSON; exit 0
//! only if all pass.

use edge_deploy::SmokeReport;

use crate::args::SmokeArgs;
use crate::rt::block_on;
use crate::settings::Settings;
use crate::{ExitStatus, op_error};

pub(crate) fn run(settings: &Settings, args: SmokeArgs) -> anyhow::Result<ExitStatus> {
    let node = settings.node()?;
    let report = block_on(edge_deploy::smoke(&node))?.map_err(op_error)?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(if report.ok { ExitStatus::Success } else { ExitStatus::Failure })
}

/// One line per check, then the tally.
pub(crate) fn print_table(report: &SmokeReport) {
    if report.checks.is_empty() {
        outln!("{} has no smoke checks", report.stack);
        return;
    }
    outln!("smoke checks through {}:", report.url.as_deref().unwrap_or("(no front URL)"));
    let width = report.checks.iter().map(|c| c.method.len() + c.path.len() + 1).max().unwrap_or(0);
    for c in &report.checks {
        let request = format!("{} {}", c.method, c.path);
        outln!(
            "  {:<4}  {request:<width$}  {:<28}  {} ({} ms)",
            if c.ok { "ok" } else { "FAIL" },
            c.expected,
            c.detail,
            c.duration_ms
        );
    }
    if report.ok {
        outln!("all {} smoke checks passed", report.passed);
    } else {
        outln!("{} of {} smoke checks failed", report.failed, report.checks.len());
    }
}
