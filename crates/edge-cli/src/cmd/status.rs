//! `edge status`: each channel's state, its container's state and health, and each pool
//! upstream's health in Caddy's metrics (`unknown` when its series is missing).

use edge_deploy::{ContainerView, Observation};

use crate::args::StatusArgs;
use crate::rt::block_on;
use crate::settings::Settings;
use crate::{ExitStatus, op_error};

pub(crate) fn run(settings: &Settings, args: StatusArgs) -> anyhow::Result<ExitStatus> {
    let node = settings.node()?;
    let seen = block_on(observe(&node, args.metrics_url.as_deref()))??;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&seen)?);
    } else {
        out!("{}", render(&seen));
    }
    // Status reports; only an engine it cannot see makes it fail.
    Ok(if seen.engine.reachable { ExitStatus::Success } else { ExitStatus::Failure })
}

/// Looks at the stack on the local engine; an engine that cannot be reached is part of the
/// observation, not an error.
pub(crate) async fn observe(node: &edge_deploy::Node, metrics_url: Option<&str>) -> anyhow::Result<Observation> {
    let engine = edge_channels::DockerEngine::connect().await;
    let engine = engine.as_ref().map_err(ToString::to_string);
    edge_deploy::observe(node, engine, metrics_url).await.map_err(op_error)
}

/// The text report.
pub(crate) fn render(seen: &Observation) -> String {
    let mut out = String::new();
    let engine = match (&seen.engine.version, &seen.engine.error) {
        (_, Some(e)) => format!("engine unreachable: {e}"),
        (Some(v), None) => format!("engine {v} (API {})", seen.engine.api_version.as_deref().unwrap_or("?")),
        (None, None) => "engine reachable".to_owned(),
    };
    out.push_str(&format!("stack {} — {engine}\n\n", seen.stack));
    let mut rows = vec![row(&["CHANNEL", "STATE", "CONTAINER", "STATUS", "HEALTH", "UPSTREAM", "POOL"])];
    for c in &seen.channels {
        let state = match (c.stopped, c.state) {
            (true, _) => "stopped".to_owned(),
            (false, Some(s)) => s.to_string(),
            (false, None) => "unknown".to_owned(),
        };
        let (container, status, health) = containers(&c.containers);
        rows.push(row(&[
            &c.id,
            &state,
            &container,
            &status,
            &health,
            c.upstream.as_deref().unwrap_or("-"),
            c.upstream_health.map_or("-", |h| h.as_str()),
        ]));
    }
    // An app stack has services only: no channel table, no pool metrics to read.
    if !seen.channels.is_empty() {
        out.push_str(&table(&rows));
    }
    for c in &seen.channels {
        if let Some(reason) = &c.reason {
            out.push_str(&format!("{}: {reason}\n", c.id));
        }
    }
    if !seen.services.is_empty() {
        if !seen.channels.is_empty() {
            out.push('\n');
        }
        let mut rows = vec![row(&["SERVICE", "CONTAINER", "STATUS", "HEALTH"])];
        for s in &seen.services {
            rows.push(row(&[&s.service, &s.container, &s.status, &s.health]));
        }
        out.push_str(&table(&rows));
    }
    out.push('\n');
    match (&seen.metrics.url, seen.metrics.reachable, &seen.metrics.error) {
        (Some(url), true, _) => {
            out.push_str(&format!("metrics {url}: {} upstream series\n", seen.metrics.upstreams.len()))
        }
        (Some(url), false, e) => {
            out.push_str(&format!("metrics {url}: unreachable ({})\n", e.as_deref().unwrap_or("?")))
        }
        (None, _, _) if seen.channels.is_empty() => {}
        (None, _, e) => out.push_str(&format!("metrics: {}\n", e.as_deref().unwrap_or("none"))),
    }
    if !seen.strays.is_empty() {
        out.push_str(&format!("containers of this stack the manifest does not name: {}\n", seen.strays.join(", ")));
    }
    out.push_str(&format!("status file: {}\n", seen.status_file));
    out
}

fn containers(list: &[ContainerView]) -> (String, String, String) {
    if list.is_empty() {
        return ("-".into(), "-".into(), "-".into());
    }
    let join = |f: &dyn Fn(&ContainerView) -> &str| list.iter().map(f).collect::<Vec<_>>().join(",");
    (join(&|c| &c.container), join(&|c| &c.status), join(&|c| &c.health))
}

fn row(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| (*c).to_owned()).collect()
}

fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> =
        (0..cols).map(|i| rows.iter().filter_map(|r| r.get(i)).map(|c| c.chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r.iter().enumerate().map(|(i, c)| format!("{c:<w$}", w = widths[i])).collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}
