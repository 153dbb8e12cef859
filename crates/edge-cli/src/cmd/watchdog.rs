//! `edge-watchdog`: one tick (`--once`, the default, for the systemd timer) or a daemon
//! (`--interval D`, ticks plus the Docker engine's events); `edge_deploy::watchdog` does the
//! work, this prints what it reports.

use std::sync::Arc;

use anyhow::Context;
use edge_alerts::TickStatus;
use edge_channels::DockerEngine;
use edge_deploy::Node;
use edge_deploy::mesh::{WgTools, handshake_max_age};
use edge_deploy::watchdog::daemon::{self, ContainerAlert, DaemonOutput};
use edge_deploy::watchdog::{self, DeliveredOutcome, TickOutcome, Watchdog, WatchdogRequest};
use tokio::signal::unix::{SignalKind, signal};

use crate::args::WatchdogArgs;
use crate::settings::Settings;
use crate::{ExitStatus, UsageError, op_error};

pub(crate) fn run(settings: &Settings, args: WatchdogArgs) -> anyhow::Result<ExitStatus> {
    if args.interval.is_some_and(|d| d.is_zero()) {
        return Err(UsageError("--interval must be longer than 0".into()).into());
    }
    let lookup = |k: &str| std::env::var(k).ok();
    let paths = watchdog::effective_paths(&settings.bundle.stack, &settings.paths, &lookup);
    let alerts = watchdog::alert_config(&settings.bundle.stack, &paths, &lookup).map_err(op_error)?;
    // Not `settings.node()`: the paths stay as given (`STATE_DIR` above `--root`), so that
    // messages name them as the operator wrote them.
    let node = Node {
        bundle: settings.bundle.clone(),
        paths,
        rooted: settings.root.is_some(),
        mesh: Arc::new(WgTools::default()),
    };
    let request =
        WatchdogRequest { node, alerts, textfile: args.textfile.clone(), mesh_max_age: handshake_max_age(lookup) };
    let mut watchdog = Watchdog::new(request).map_err(op_error)?;
    // One thread: a tick is a few reads, one HTTP fetch and maybe a POST.
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        if let Some(interval) = args.interval {
            let mut term = signal(SignalKind::terminate())?;
            let mut int = signal(SignalKind::interrupt())?;
            let shutdown = async move {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            };
            let json = args.json;
            let print = move |output: DaemonOutput<'_>| print_daemon(output, json);
            daemon::run(watchdog, interval, DockerEngine::connect, shutdown, &print).await;
            // A requested stop is a clean exit; undelivered alerts stay in the outbox for the next run.
            return Ok(ExitStatus::Success);
        }
        let down: std::collections::BTreeMap<String, String> =
            watchdog.look_at_containers(DockerEngine::connect()).await.into_values().collect();
        let outcome = watchdog.tick(&down).await?;
        if args.json {
            outln!("{}", serde_json::to_string_pretty(&outcome)?);
        } else {
            for line in tick_lines(&outcome) {
                outln!("{line}");
            }
        }
        Ok(exit_status(outcome.tick_status))
    })
}

/// One line of JSON, or lines for a person, per daemon report.
fn print_daemon(output: DaemonOutput<'_>, json: bool) {
    if json {
        let line = match output {
            DaemonOutput::Tick(outcome) => serde_json::to_string(outcome),
            DaemonOutput::Alert(alert) => serde_json::to_string(alert),
        };
        match line {
            Ok(line) => outln!("{line}"),
            Err(e) => tracing::error!("{e}"),
        }
        return;
    }
    let lines = match output {
        DaemonOutput::Tick(outcome) => tick_lines(outcome),
        DaemonOutput::Alert(alert) => alert_lines(alert),
    };
    for line in lines {
        outln!("{line}");
    }
}

/// The exit status a run ends with: 3 while alerts could not be delivered.
fn exit_status(status: Option<TickStatus>) -> ExitStatus {
    match status {
        Some(TickStatus::Undelivered | TickStatus::NoTransport) => ExitStatus::Degraded,
        _ => ExitStatus::Success,
    }
}

/// A tick's lines for a person (nothing when the tick was quiet).
fn tick_lines(outcome: &TickOutcome) -> Vec<String> {
    let mut out: Vec<String> = outcome.events.iter().map(|e| format!("alert: {e}")).collect();
    if !outcome.stopped.is_empty() {
        out.push(format!("stopped by the operator (not watched): {}", outcome.stopped.join(", ")));
    }
    for c in &outcome.channel_changes {
        out.push(format!("channel {}: {} -> {} ({})", c.channel, c.from, c.to, c.reason));
    }
    out.extend(report_lines(&outcome.delivered, outcome.held, outcome.undelivered, outcome.tick_status));
    out
}

/// A container alert's lines for a person.
fn alert_lines(alert: &ContainerAlert) -> Vec<String> {
    let mut out = vec![format!("alert: {}", alert.alert)];
    if let Some(c) = &alert.channel_change {
        out.push(format!("channel {}: {} -> {} ({})", c.channel, c.from, c.to, c.reason));
    }
    out.extend(report_lines(&alert.delivered, alert.held, alert.undelivered, Some(alert.status)));
    out
}

/// What a delivery did, in words.
fn report_lines(
    delivered: &[DeliveredOutcome],
    held: usize,
    undelivered: usize,
    status: Option<TickStatus>,
) -> Vec<String> {
    let mut out = Vec::new();
    for d in delivered {
        out.push(format!("delivered {} event{} via {}", d.events, plural(d.events), d.transport));
    }
    if undelivered > 0 {
        out.push(format!(
            "{undelivered} event{} undelivered: every transport failed; kept in the outbox for the next run",
            plural(undelivered)
        ));
    }
    if held > 0 {
        out.push(format!(
            "{held} event{} held in the outbox (rate-limit window or circuit breaker); they go out together later",
            plural(held)
        ));
    }
    if status == Some(TickStatus::NoTransport) {
        out.push(
            "no alert transport is configured: set OXPULSE_TG_WEBHOOK, or TG_TOKEN and OXPULSE_TG_CHAT".to_owned(),
        );
    }
    out
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
