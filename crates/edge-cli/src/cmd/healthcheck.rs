//! `edge healthcheck`: the operator's numbered checks; exit 0 only if all pass.
//!
//! 1. the Docker engine answers; then one check per active channel that its containers
//!    run and are healthy; the always-on services run; Caddy's metrics answer; one upstream
//!    series per pool member; `channels-status.env` agrees with the containers; the identity
//!    files are present with mode 0600.

use std::os::unix::fs::PermissionsExt;

use edge_core::ChannelState;
use serde::Serialize;

use crate::ExitStatus;
use crate::args::StatusArgs;
use crate::identity::{NODE_CONFIG, identity_files};
use crate::observe::{ContainerView, Observation, observe};
use crate::rt::block_on;
use crate::settings::Settings;

/// One numbered check.
#[derive(Debug, Serialize)]
struct Check {
    number: usize,
    name: String,
    ok: bool,
    detail: String,
}

#[derive(Debug, Serialize)]
struct Report {
    stack: String,
    ok: bool,
    passed: usize,
    failed: usize,
    checks: Vec<Check>,
}

pub(crate) fn run(settings: &Settings, args: StatusArgs) -> anyhow::Result<ExitStatus> {
    let seen = block_on(observe(settings, args.metrics_url.as_deref()))??;
    let checks = checks(settings, &seen);
    let failed = checks.iter().filter(|c| !c.ok).count();
    let report = Report { stack: seen.stack.clone(), ok: failed == 0, passed: checks.len() - failed, failed, checks };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for c in &report.checks {
            println!("{:>2}. {:<4}  {}: {}", c.number, if c.ok { "ok" } else { "FAIL" }, c.name, c.detail);
        }
        if report.ok {
            println!("all {} checks passed", report.passed);
        } else {
            println!("{} of {} checks failed", report.failed, report.checks.len());
        }
    }
    Ok(if report.ok { ExitStatus::Success } else { ExitStatus::Failure })
}

fn checks(settings: &Settings, seen: &Observation) -> Vec<Check> {
    let mut out: Vec<(String, bool, String)> = Vec::new();
    let e = &seen.engine;
    out.push(match &e.error {
        None => (
            "docker engine".into(),
            true,
            format!(
                "{} (API {}) at {}",
                e.version.as_deref().unwrap_or("?"),
                e.api_version.as_deref().unwrap_or("?"),
                e.endpoint.as_deref().unwrap_or("?")
            ),
        ),
        Some(err) => ("docker engine".into(), false, err.clone()),
    });

    let active: Vec<_> = seen.channels.iter().filter(|c| c.state == Some(ChannelState::Active)).collect();
    for c in active.iter().filter(|c| !c.containers.is_empty()) {
        let ok = c.containers.iter().all(|v| v.ready);
        out.push((format!("channel {}", c.id), ok, describe(&c.containers)));
    }
    if !seen.services.is_empty() {
        let ok = seen.services.iter().all(|v| v.ready);
        out.push(("always-on services".into(), ok, describe(&seen.services)));
    }

    let m = &seen.metrics;
    let url = m.url.as_deref().unwrap_or("(none)");
    out.push(match (m.reachable, &m.error) {
        (true, _) => ("caddy metrics".into(), true, format!("{url} answers")),
        (false, err) => ("caddy metrics".into(), false, format!("{url}: {}", err.as_deref().unwrap_or("unreachable"))),
    });
    let pool: Vec<_> = active.iter().filter_map(|c| Some((c.id.as_str(), c.upstream.as_deref()?))).collect();
    let missing: Vec<String> =
        pool.iter().filter(|(_, u)| !m.upstreams.contains_key(*u)).map(|(c, u)| format!("{c} ({u})")).collect();
    let pool_text = pool.iter().map(|(c, u)| format!("{c}={u}")).collect::<Vec<_>>().join(", ");
    out.push(if missing.is_empty() {
        ("upstream series".into(), true, format!("one per active channel: {pool_text}"))
    } else {
        ("upstream series".into(), false, format!("no series for {}", missing.join(", ")))
    });

    out.push(status_consistency(seen));
    out.push(identity(settings));

    out.into_iter().enumerate().map(|(i, (name, ok, detail))| Check { number: i + 1, name, ok, detail }).collect()
}

fn describe(views: &[ContainerView]) -> String {
    views.iter().map(|v| format!("{} {}, health {}", v.container, v.status, v.health)).collect::<Vec<_>>().join("; ")
}

fn status_consistency(seen: &Observation) -> (String, bool, String) {
    let name = "status file".to_owned();
    if !seen.engine.reachable {
        return (name, false, "cannot compare with the containers: the engine is unreachable".into());
    }
    let mut problems = Vec::new();
    for c in &seen.channels {
        let exists = c.containers.iter().any(|v| v.status != "missing");
        let all_exist = c.containers.iter().all(|v| v.status != "missing");
        match c.state {
            None => problems.push(format!("{} is not listed", c.id)),
            Some(ChannelState::Active) if !all_exist => {
                problems.push(format!("{} is active but has no container", c.id))
            }
            Some(s @ (ChannelState::Skipped | ChannelState::FailedAtRender)) if exists => {
                problems.push(format!("{} is {s} but its container exists", c.id))
            }
            _ => {}
        }
    }
    if problems.is_empty() {
        (name, true, format!("{} agrees with the containers", seen.status_file))
    } else {
        (name, false, format!("{}: {}", seen.status_file, problems.join("; ")))
    }
}

fn identity(settings: &Settings) -> (String, bool, String) {
    let mut problems = Vec::new();
    let mut present = 0;
    for f in identity_files(&settings.bundle.stack) {
        let path = settings.paths.config_file(&f);
        match std::fs::metadata(&path) {
            Ok(m) => {
                present += 1;
                let mode = m.permissions().mode() & 0o777;
                if mode != 0o600 {
                    problems.push(format!("{} has mode {mode:o}, expected 600", path.display()));
                }
            }
            // node-config.json exists only when install was given --manual-config.
            Err(_) if f == NODE_CONFIG => {}
            Err(_) => problems.push(format!("{} is missing", path.display())),
        }
    }
    let name = "identity files".to_owned();
    if problems.is_empty() {
        (name, true, format!("{present} present with mode 0600 in {}", settings.paths.config_dir().display()))
    } else {
        (name, false, problems.join("; "))
    }
}
