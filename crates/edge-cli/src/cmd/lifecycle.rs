//! `edge stop`, `edge start` and `edge restart`: [`edge_deploy::stop`] and friends, then the
//! report.

use edge_channels::DockerEngine;
use edge_deploy::{LifecycleReport, LifecycleRequest, Outcome, Verb};

use crate::args::LifecycleArgs;
use crate::progress::Progress;
use crate::rt::block_on;
use crate::settings::Settings;
use crate::{ExitStatus, op_error};

pub(crate) fn run(settings: &Settings, verb: Verb, args: LifecycleArgs) -> anyhow::Result<ExitStatus> {
    let node = settings.node()?;
    let request = LifecycleRequest {
        services: args.services.clone(),
        stop_grace: args.stop_grace,
        health_timeout: args.health_timeout,
    };
    let progress = Progress::new();
    let sink = |p| progress.report(p);
    let report = block_on(async {
        let engine = DockerEngine::connect().await?;
        match verb {
            Verb::Stop => edge_deploy::stop(&engine, &node, &request).await,
            Verb::Start => edge_deploy::start(&engine, &node, &request, &sink).await,
            Verb::Restart => edge_deploy::restart(&engine, &node, &request, &sink).await,
        }
        .map_err(op_error)
    })??;
    print_report(&report, args.json)?;
    match report.status {
        Outcome::Success => Ok(ExitStatus::Success),
        _ => anyhow::bail!("{}", report.message),
    }
}

fn print_report(report: &LifecycleReport, json: bool) -> anyhow::Result<()> {
    if json {
        outln!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    for s in &report.services {
        let ready = match &s.readiness {
            Some(edge_channels::Readiness::Failed { reason }) => format!("  — {reason}"),
            _ => String::new(),
        };
        outln!("  {:<10} {:<28} {} -> {}{ready}", s.service, s.container, s.before, s.after);
    }
    outln!("{}", report.message);
    Ok(())
}
