//! `edge gate --runs N`: the whole lifecycle N times ([`edge_deploy::gate`]), a table of
//! timed steps per run and a summary.

use edge_channels::DockerEngine;
use edge_deploy::{GateReport, GateRequest};

use crate::args::GateArgs;
use crate::progress::Progress;
use crate::rt::block_on;
use crate::settings::Settings;
use crate::{ExitStatus, op_error};

pub(crate) fn run(settings: &Settings, args: GateArgs) -> anyhow::Result<ExitStatus> {
    let node = settings.node()?;
    let request = GateRequest { runs: args.runs, install: crate::cmd::install::request(&args.install) };
    let progress = Progress::new();
    let report = block_on(async {
        let engine = DockerEngine::connect().await?;
        edge_deploy::gate(&engine, &node, &request, &|p| progress.report(p)).await.map_err(op_error)
    })??;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        out!("{}", render(&report));
    }
    match &report.failure {
        None => Ok(ExitStatus::Success),
        Some(f) => anyhow::bail!(
            "gate failed in run {} at step {}: {}; the host is left as that step left it",
            f.run,
            f.step,
            f.message
        ),
    }
}

/// One table per run, then the per-step summary.
fn render(report: &GateReport) -> String {
    let mut out = String::new();
    for run in &report.runs {
        out.push_str(&format!("run {} ({:.1}s)\n", run.run, run.duration_ms as f64 / 1000.0));
        for s in &run.steps {
            out.push_str(&format!(
                "  {:<12} {:>8.2}s  {:<4}  {}\n",
                s.step,
                s.duration_ms as f64 / 1000.0,
                if s.ok { "ok" } else { "FAIL" },
                s.detail
            ));
        }
    }
    out.push_str(&format!("\nsummary over {} of {} runs:\n", report.runs.len(), report.runs_requested));
    out.push_str(&format!("  {:<12} {:>6} {:>9} {:>9} {:>9}\n", "STEP", "PASSED", "MEDIAN", "MIN", "MAX"));
    for s in &report.summary {
        out.push_str(&format!(
            "  {:<12} {:>6} {:>8.2}s {:>8.2}s {:>8.2}s\n",
            s.step,
            s.passed,
            s.median_ms as f64 / 1000.0,
            s.min_ms as f64 / 1000.0,
            s.max_ms as f64 / 1000.0
        ));
    }
    if report.ok {
        let runs = report.runs.len();
        let plural = if runs == 1 { "" } else { "s" };
        out.push_str(&format!("gate passed: {runs} run{plural} in {:.1}s\n", report.duration_ms as f64 / 1000.0));
    }
    out
}
