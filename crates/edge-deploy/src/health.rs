//! `healthcheck`: the operator's numbered checks on an [`Observation`]; all must pass.
//!
//! 1. the Docker engine answers; then one check per active channel that its containers
//!    run and are healthy; the always-on services run; the front proxy's metrics answer; one
//!    upstream series per pool member; `channels-status.env` agrees with the containers; the
//!    identity files are present with mode 0600; alerts can be delivered (a chat transport is
//!    configured in `watchdog.env` and nothing waits in the outbox past the rate-limit window);
//!    the stack's smoke checks, where it has some. New checks go last, so that the numbers
//!    scripts know stay. A stack with no pool (no channel has an upstream) has no metrics
//!    checks: its front proxy need not expose metrics.

use std::os::unix::fs::PermissionsExt;

use edge_core::ChannelState;
use serde::Serialize;

use crate::identity::{NODE_CONFIG, identity_files};
use crate::{ContainerView, Node, Observation};

/// One numbered check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Its number, from 1.
    pub number: usize,
    /// What it checks.
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// What was seen.
    pub detail: String,
}

/// Every check.
#[derive(Debug, Clone, Serialize)]
pub struct HealthReport {
    /// The stack.
    pub stack: String,
    /// Whether every check passed.
    pub ok: bool,
    /// How many passed.
    pub passed: usize,
    /// How many failed.
    pub failed: usize,
    /// The checks, in order.
    pub checks: Vec<Check>,
}

/// Runs the operator's numbered checks on what was observed.
pub fn healthcheck(node: &Node, seen: &Observation) -> HealthReport {
    let checks = checks(node, seen);
    let failed = checks.iter().filter(|c| !c.ok).count();
    HealthReport { stack: seen.stack.clone(), ok: failed == 0, passed: checks.len() - failed, failed, checks }
}

fn checks(node: &Node, seen: &Observation) -> Vec<Check> {
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

    // Only a stack whose channels feed a pool has upstream series to read.
    if node.stack().channels.iter().any(|c| c.upstream.is_some()) {
        let m = &seen.metrics;
        let url = m.url.as_deref().unwrap_or("(none)");
        out.push(match (m.reachable, &m.error) {
            (true, _) => ("caddy metrics".into(), true, format!("{url} answers")),
            (false, err) => {
                ("caddy metrics".into(), false, format!("{url}: {}", err.as_deref().unwrap_or("unreachable")))
            }
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
    }

    out.push(status_consistency(seen));
    out.push(identity(node));
    out.push(alerts(node));
    if let Some(smoke) = &seen.smoke {
        let failed: Vec<String> =
            smoke.checks.iter().filter(|c| !c.ok).map(|c| format!("{} {}: {}", c.method, c.path, c.detail)).collect();
        let url = smoke.url.as_deref().unwrap_or("(no front URL)");
        out.push(if failed.is_empty() {
            ("smoke checks".into(), true, format!("{} passed through {url}", smoke.passed))
        } else {
            ("smoke checks".into(), false, failed.join("; "))
        });
    }

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

/// Slack for the watchdog timer's period before a waiting alert counts as undelivered.
const ALERT_GRACE_SECS: u64 = 180;

fn alerts(node: &Node) -> (String, bool, String) {
    let name = "alerts can be delivered".to_owned();
    let file = node.paths.watchdog_env();
    let config = match edge_alerts::AlertSettings::load_optional(&file) {
        Ok(settings) => settings.unwrap_or_default().config(&node.paths),
        Err(e) => Err(e),
    };
    let config = match config {
        Ok(c) => c,
        Err(e) => return (name, false, e.to_string()),
    };
    let targets: Vec<String> = edge_alerts::AlertSettings::targets(&config)
        .into_iter()
        .map(|t| format!("{} {}", t.transport, t.target))
        .collect();
    if config.webhook.is_none() && config.telegram.is_none() {
        return (
            name,
            false,
            format!(
                "no alert transport in {}: run edge install with --alert-webhook URL, or --alert-telegram-token and --alert-telegram-chat",
                file.display()
            ),
        );
    }
    let outbox = match edge_alerts::outbox::Outbox::peek(&config.outbox_file()) {
        Ok(o) => o,
        Err(e) => return (name, false, e.to_string()),
    };
    let late = crate::install::now_secs().saturating_sub(config.min_interval.as_secs() + ALERT_GRACE_SECS);
    let stuck = outbox.entries.iter().filter(|q| !q.held && q.event.at < late).count();
    if stuck > 0 {
        return (
            name,
            false,
            format!(
                "{stuck} alert{} waiting in {} past the rate-limit window: delivery through {} fails (see `edge alert test`)",
                if stuck == 1 { "" } else { "s" },
                config.outbox_file().display(),
                targets.join(", ")
            ),
        );
    }
    (name, true, format!("{} ({})", targets.join(", "), file.display()))
}

fn identity(node: &Node) -> (String, bool, String) {
    let mut problems = Vec::new();
    let mut present = 0;
    for f in identity_files(node.stack()) {
        let path = node.paths.config_file(&f);
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
        (name, true, format!("{present} present with mode 0600 in {}", node.paths.config_dir().display()))
    } else {
        (name, false, problems.join("; "))
    }
}
