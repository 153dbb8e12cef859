//! Test helper binary: one edge-alerts tick configured from the environment, as the
//! watchdog will run it (`alert-tick`), or ticks in a loop until killed (`alert-tick --loop N`).
//!
//! Environment: the legacy `OXPULSE_*`/`TG_*` variables, plus `EDGE_TEST_ROOT` (the
//! `--root` prefix), `EDGE_TEST_HOST` (`HOST` in messages) and `EDGE_TEST_POOL`
//! (`upstream=channel,…`). Prints the report as one JSON line:
//! `{"status": …, "events": […], "delivered": n, "undelivered": n, "held": n}`;
//! exits 3 when every transport failed (the events wait in the outbox), as the watchdog will.
//! With `--loop N` it never reads the metrics source: it makes up pages in which
//! N upstreams change health on every tick, so that every tick writes state.

use std::path::PathBuf;
use std::process::ExitCode;

use edge_alerts::{AlertConfig, Alerter, Observation, Report, TickStatus, UpstreamMetrics};
use edge_core::PoolMember;

/// Exit code when alerts could not be delivered.
const UNDELIVERED: u8 = 3;

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("alert-tick: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(UNDELIVERED),
        Err(e) => {
            eprintln!("alert-tick: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `Ok(false)` when alerts were left undelivered.
async fn run() -> anyhow::Result<bool> {
    let root = PathBuf::from(std::env::var("EDGE_TEST_ROOT")?);
    let paths = edge_core::Paths::new(Some(&root), &edge_core::Stack::partner_edge().stack);
    let mut config = AlertConfig::from_env(&paths, |k| std::env::var(k).ok())?;
    if let Ok(host) = std::env::var("EDGE_TEST_HOST") {
        config.host = host;
    }
    let pool: Vec<PoolMember> = std::env::var("EDGE_TEST_POOL")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|m| {
            let (u, c) = m.split_once('=').unwrap_or((m, ""));
            PoolMember::new(c, u)
        })
        .collect();
    let alerter = Alerter::new(config)?;

    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some("--loop") {
        let n: usize = args.next().unwrap_or_default().parse().unwrap_or(4);
        for i in 0usize.. {
            let page: String = (0..n)
                .map(|k| {
                    let v = u8::from(!(i + k).is_multiple_of(3));
                    format!("caddy_reverse_proxy_upstreams_healthy{{upstream=\"u{k}:80\"}} {v}\n")
                })
                .collect();
            let observation = Observation::Metrics { source: "loop".into(), metrics: UpstreamMetrics::parse(&page) };
            alerter.process(observation, &pool).await?;
        }
        return Ok(true);
    }
    let report = alerter.tick(&pool).await?;
    println!("{}", summary(&alerter, &report));
    Ok(report.status() != TickStatus::Undelivered)
}

fn summary(alerter: &Alerter, report: &Report) -> serde_json::Value {
    let host = &alerter.config().host;
    serde_json::json!({
        "status": format!("{:?}", report.status()),
        "events": report.events.iter().map(|e| e.text(host)).collect::<Vec<_>>(),
        "delivered": report.delivered_events(),
        "undelivered": report.undelivered,
        "held": report.held,
        "errors": report.errors.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
    })
}
