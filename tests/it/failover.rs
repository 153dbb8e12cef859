//! Zero-downtime traffic under a small bounded load: a dead channel is skipped after its first
//! failed dial (passive health, behind a real Caddy), and on the real engine a config-only
//! re-install reloads Caddy in place while killing the serving channel moves traffic to the
//! next one, neither losing a request. Stall and latency goals are `cargo xtask bench failover`'s.

use std::time::Duration;

use edge_tests::load::{Load, LoadConfig};
use edge_tests::upstream::UpstreamMode;

use crate::render::start_pool_with;

/// Four clients at 50 requests/s each, stopping on their own after `limit`.
fn small_load(site: &str, limit: Duration) -> Load {
    Load::start(&LoadConfig::new(site, 4, 50, limit)).expect("the load starts")
}

#[test]
fn a_dead_channel_is_skipped_after_its_first_failed_dial_not_at_the_next_health_check() {
    // Active checks every 60 s: within this test only the passive checks can move traffic.
    let pool = start_pool_with(
        &["xray", "hysteria2"],
        &[("CADDY_HEALTH_INTERVAL", "60s"), ("CADDY_HEALTH_TIMEOUT", "1s"), ("CADDY_FAIL_DURATION", "3s")],
    );
    pool.wait_health(&[("xray", 1.0), ("hysteria2", 1.0)]);
    let xray = pool.upstream("xray").hostport();

    let load = small_load(&pool.site, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(700));
    let killed = load.now();
    pool.upstream("xray").set_mode(UpstreamMode::Stopped);
    std::thread::sleep(Duration::from_millis(1500));
    let fails = pool.caddy.upstream_fails().unwrap();
    let health = pool.caddy.upstreams_healthy().unwrap();

    // xray comes back: once its failure is forgotten (fail_duration) it serves again.
    pool.upstream("xray").set_mode(UpstreamMode::Healthy);
    std::thread::sleep(Duration::from_millis(4000));
    let record = load.finish();

    assert!(record.failures().is_empty(), "no request failed:\n{}\n{}", record.describe_failures(), pool.caddy.log());
    let before = record.window(Duration::ZERO, killed - Duration::from_millis(100));
    let during = record.window(killed + Duration::from_millis(400), killed + Duration::from_millis(1500));
    assert_eq!((before.first_served(), before.last_served()), (Some("xray"), Some("xray")));
    assert!(during.total() > 20, "the load kept running: {}", during.total());
    assert!(during.samples.iter().all(|s| s.outcome.as_deref() == Ok("hysteria2")), "hysteria2 took over");
    // The active check has not run since the start and still calls xray healthy: the passive
    // check moved the traffic, after the failed dials of the requests in flight only.
    assert!(health.contains(&(xray.clone(), 1.0)), "{health:?}");
    let xray_fails = fails.iter().find(|(u, _)| *u == xray).map_or(0, |(_, f)| *f);
    assert!((1..=4).contains(&xray_fails), "xray failed once per request in flight, then was skipped: {fails:?}");
    assert_eq!(record.last_served(), Some("xray"), "xray serves again once its failure is forgotten");
}
