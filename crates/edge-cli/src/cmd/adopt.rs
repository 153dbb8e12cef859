//! `edge adopt`: flags → [`edge_deploy::AdoptRequest`] → [`edge_deploy::adopt`] → the plan or
//! the report as text or JSON, and the exit code.

use anyhow::{Context, bail};
use edge_channels::DockerEngine;
use edge_deploy::{AdoptReport, AdoptRequest, Outcome};

use crate::args::AdoptArgs;
use crate::progress::Progress;
use crate::rt::block_on;
use crate::settings::Settings;
use crate::{ExitStatus, op_error};

/// A test hook: stop after this many steps, as a crash there would (see `AdoptRequest::stop_after`).
const STOP_AFTER_VAR: &str = "EDGE_ADOPT_STOP_AFTER";

pub(crate) fn run(settings: &Settings, args: AdoptArgs) -> anyhow::Result<ExitStatus> {
    let request = AdoptRequest {
        install: super::install::request(&args.install),
        dry_run: args.dry_run,
        stop_after: stop_after()?,
    };
    adopt(settings, &request, args.json, false)
}

/// The test hook's value, if set.
fn stop_after() -> anyhow::Result<Option<usize>> {
    match std::env::var(STOP_AFTER_VAR) {
        Ok(v) => Ok(Some(v.parse::<usize>().with_context(|| format!("{STOP_AFTER_VAR}={v:?} is not a step count"))?)),
        Err(_) => Ok(None),
    }
}

/// `edge install --adopt`: the adoption, then the install where the adoption ran none.
pub(crate) fn install(
    settings: &Settings,
    install: edge_deploy::InstallRequest,
    json: bool,
) -> anyhow::Result<ExitStatus> {
    let request = AdoptRequest { dry_run: install.dry_run, install, stop_after: stop_after()? };
    adopt(settings, &request, json, true)
}

/// Runs [`edge_deploy::adopt`] (or, for `install --adopt`, [`edge_deploy::install_adopting`])
/// and prints its report; where nothing was legacy and an install ran, the install's report.
fn adopt(settings: &Settings, request: &AdoptRequest, json: bool, then_install: bool) -> anyhow::Result<ExitStatus> {
    let node = settings.node()?;
    let progress = Progress::new();
    let report = block_on(async {
        let engine = DockerEngine::connect().await?;
        let sink = &|p| progress.report(p);
        let report = if then_install {
            edge_deploy::install_adopting(&engine, &node, request, sink).await
        } else {
            edge_deploy::adopt(&engine, &node, request, sink).await
        };
        report.map_err(op_error)
    })??;
    match (&report.install, report.noop) {
        (Some(install), true) => super::install::print_report(install, json)?,
        _ if json => outln!("{}", serde_json::to_string_pretty(&report)?),
        _ => print_report(&report)?,
    }
    match report.install.as_ref().map(|i| i.status) {
        Some(Outcome::Failure) => bail!("{}", report.message),
        Some(Outcome::Degraded) => Ok(ExitStatus::Degraded),
        _ => Ok(ExitStatus::Success),
    }
}

fn print_report(report: &AdoptReport) -> anyhow::Result<()> {
    if report.noop {
        outln!("{}", report.message);
        return Ok(());
    }
    let legacy = &report.legacy;
    if report.dry_run {
        outln!("found: {}", legacy.summary());
        for c in &legacy.containers {
            for m in &c.binds {
                outln!("  {}: keeps host path {} at {}", c.name, m.source, m.target);
            }
            for m in &c.kept_volumes {
                outln!("  {}: keeps volume {} at {}", c.name, m.source, m.target);
            }
            for copy in c.copies.iter().filter(|copy| !copy.mounted) {
                outln!(
                    "  {}: anonymous volume {} at {} is kept as named volume {} (the stack mounts nothing there)",
                    c.name,
                    copy.from,
                    copy.target,
                    copy.to
                );
            }
            for m in &c.unmounted {
                outln!(
                    "  {}: volume {} at {} stays on the engine, unmounted (the stack mounts nothing there)",
                    c.name,
                    m.source,
                    m.target
                );
            }
        }
        for f in legacy.identity_files.iter().chain(&legacy.state_files) {
            outln!("  keeps {}", f.display());
        }
        if !report.resumed.is_empty() {
            outln!("resumes the adoption in {}", report.journal.display());
        }
        outln!("steps:");
        for (n, step) in report.steps.iter().enumerate() {
            outln!("  {}. {}", n + 1, step.key());
        }
        outln!("channels after the install:");
        for c in &report.channels {
            let why = c.reason.as_deref().map(|r| format!(" — {r}")).unwrap_or_default();
            outln!("  {:<10} {}{why}", c.id, c.state);
        }
        for d in &report.dropped {
            outln!(
                "warning: {d}: its legacy container is removed and nothing takes its place; give the channel's \
variables as for edge install (the environment, node-config.json or --set) and run the dry run again"
            );
        }
    } else if let Some(install) = &report.install {
        super::install::print_report(install, false)?;
    }
    if !report.dry_run {
        for c in &report.legacy.containers {
            for copy in c.copies.iter().filter(|copy| !copy.mounted) {
                outln!(
                    "kept {}'s anonymous volume at {} as named volume {} (not mounted: the stack mounts nothing there)",
                    c.name,
                    copy.target,
                    copy.to
                );
            }
        }
    }
    outln!("{}", report.message);
    Ok(())
}
