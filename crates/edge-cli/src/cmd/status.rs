//! `edge status`: each channel's state, its container's state and health, and each pool
//! upstream's health in Caddy's metrics (`unknown` when its series is missing).

use crate::ExitStatus;
use crate::args::StatusArgs;
use crate::observe::{ContainerView, Observation, observe};
use crate::rt::block_on;
use crate::settings::Settings;

pub(crate) fn run(settings: &Settings, args: StatusArgs) -> anyhow::Result<ExitStatus> {
    let seen = block_on(observe(settings, args.metrics_url.as_deref()))??;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&seen)?);
    } else {
        print!("{}", render(&seen));
    }
    // Status reports; only an engine it cannot see makes it fail.
    Ok(if seen.engine.reachable { ExitStatus::Success } else { ExitStatus::Failure })
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
        let state = c.state.map(|s| s.to_string()).unwrap_or_else(|| "unknown".to_owned());
        let (container, status, health) = containers(&c.containers);
        rows.push(row(&[
            &c.id,
            &state,
            &container,
            &status,
            &health,
            c.upstream.as_deref().unwrap_or("-"),
            c.upstream_health.as_deref().unwrap_or("-"),
        ]));
    }
    out.push_str(&table(&rows));
    if !seen.services.is_empty() {
        out.push('\n');
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
