//! Zero-downtime traffic under a small bounded load: a dead channel is skipped after its first
//! failed dial (passive health, behind a real Caddy), and on the real engine a config-only
//! re-install reloads Caddy in place while killing the serving channel moves traffic to the
//! next one, neither losing a request. Stall and latency goals are `cargo xtask bench failover`'s.

use std::time::Duration;

use edge_tests::docker::{TestStack, docker_out, provision_local_images};
use edge_tests::load::{Load, LoadConfig};
use edge_tests::upstream::UpstreamMode;

use crate::deploy::{all_channels, code, container_ids, http_get, install, pool_health, stderr, stdout};
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

/// The real-engine stack with every channel, installed, Caddy seeing each upstream healthy.
fn installed(tag: &str) -> TestStack {
    provision_local_images();
    let stack = TestStack::partner_edge(tag).expect("a test stack");
    let out = install(&stack, &[], &all_channels());
    assert_eq!(code(&out), Some(0), "install succeeds");
    let p = stack.ports;
    let health = pool_health(&stack, &[p.xray, p.hysteria2, p.naive]);
    assert!(health.values().all(|h| *h == edge_core::UpstreamHealth::Healthy), "{health:?}");
    stack
}

/// Caddy's running config, as its admin API gives it.
fn running_config(stack: &TestStack) -> String {
    let (status, body) = http_get(&format!("http://127.0.0.1:{}/config/", stack.ports.admin)).unwrap();
    assert_eq!(status, 200, "{body}");
    body
}

#[test]
fn a_config_only_reinstall_reloads_caddy_in_place_and_loses_no_request() {
    // What install sets on a real root (never under --root): without it the kernel resets the
    // connections queued on the socket Caddy closes during the reload.
    edge_tests::host::apply_partner_edge_sysctls().expect("the host takes the partner edge's sysctls");
    let stack = installed("reload");
    let caddy = stack.container("oxpulse-partner-caddy");
    let caddyfile = stack.config_file("Caddyfile").unwrap();
    let ids = container_ids(&stack);
    assert!(running_config(&stack).contains(r#""try_interval":250000000"#));

    let load = small_load(&format!("127.0.0.1:{}", stack.ports.site), Duration::from_secs(120));
    std::thread::sleep(Duration::from_millis(500));
    let out = install(&stack, &["--set", "CADDY_LB_TRY_INTERVAL=200ms"], &all_channels());
    std::thread::sleep(Duration::from_millis(500));
    let record = load.finish();
    assert_eq!(code(&out), Some(0), "the re-install succeeds");
    assert!(stdout(&out).contains(&format!("reload   {caddy}")), "the plan says reload: {}", stdout(&out));
    assert_eq!(container_ids(&stack), ids, "no container was recreated, Caddy included");
    assert!(record.total() > 50, "the load ran through the re-install: {}", record.total());
    assert!(record.failures().is_empty(), "no request was lost:\n{}", record.describe_failures());
    assert!(running_config(&stack).contains(r#""try_interval":200000000"#), "Caddy runs the new config");

    // A restart reads the file from the host again, not the inode it was started with.
    docker_out(&["restart", &caddy]);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while http_get(&format!("http://127.0.0.1:{}/config/", stack.ports.admin)).is_err() {
        assert!(std::time::Instant::now() < deadline, "caddy came back after its restart");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(running_config(&stack).contains(r#""try_interval":200000000"#), "after a restart too");

    // A config Caddy refuses: the install fails with Caddy's error, Caddy keeps the running
    // config and the file on disk is put back.
    let before = std::fs::read_to_string(&caddyfile).unwrap();
    let out = install(&stack, &["--set", "CADDY_LB_TRY_INTERVAL=soon"], &all_channels());
    assert_eq!(code(&out), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "caddy did not take its new Caddyfile through caddy-admin at 127.0.0.1:{}: caddy refused it (HTTP 400): ",
            stack.ports.admin
        )),
        "{err}"
    );
    assert!(err.contains("soon") && err.contains("it keeps running its previous config"), "{err}");
    assert_eq!(std::fs::read_to_string(&caddyfile).unwrap(), before, "the file on disk is restored");
    assert_eq!(container_ids(&stack), ids);
    assert!(running_config(&stack).contains(r#""try_interval":200000000"#), "the running config stays");
    let (status, body) = http_get(&format!("http://127.0.0.1:{}/", stack.ports.site)).unwrap();
    assert!(status == 200 && body.contains("x-channel-tag: xray"), "{status} {body}");
}

#[test]
fn killing_the_serving_channel_moves_traffic_to_the_next_with_no_failed_request() {
    let stack = installed("kill");
    let load = small_load(&format!("127.0.0.1:{}", stack.ports.site), Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(700));
    let killed = load.now();
    docker_out(&["kill", &stack.container("oxpulse-partner-xray")]);
    std::thread::sleep(Duration::from_millis(2000));
    // Within fail_duration (10 s) Caddy still counts every failed attempt on xray.
    let fails = upstream_fails(&stack);
    let record = load.finish();
    assert!(record.failures().is_empty(), "no request failed:\n{}", record.describe_failures());
    // Only the requests in flight at its death tried xray (one per client at most): every later
    // one went straight to hysteria2, so pulling xray out on the engine's `die` event could not
    // spare a request.
    let xray = format!("127.0.0.1:{}", stack.ports.xray);
    let xray_fails = fails.iter().find(|(u, _)| *u == xray).map_or(0, |(_, f)| *f);
    assert!((1..=4).contains(&xray_fails), "xray failed once per request in flight, then was skipped: {fails:?}");
    let before = record.window(Duration::ZERO, killed - Duration::from_millis(100));
    assert_eq!((before.first_served(), before.last_served()), (Some("xray"), Some("xray")));
    let after = record.window(killed + Duration::from_millis(1000), record_end(&record));
    assert!(after.total() > 20, "the load kept running: {}", after.total());
    assert!(
        after.samples.iter().all(|s| s.outcome.as_deref() == Ok("hysteria2")),
        "hysteria2, next in the pool, serves"
    );
}

/// Caddy's failed-attempt count per upstream (passive health), from its admin API.
fn upstream_fails(stack: &TestStack) -> Vec<(String, u64)> {
    let (status, body) = http_get(&format!("http://127.0.0.1:{}/reverse_proxy/upstreams", stack.ports.admin)).unwrap();
    assert_eq!(status, 200, "{body}");
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|u| Some((u["address"].as_str()?.to_owned(), u["fails"].as_u64()?)))
        .collect()
}

/// Just after the last request was sent.
fn record_end(record: &edge_tests::load::Record) -> Duration {
    record.samples.last().map_or(Duration::ZERO, |s| s.sent + Duration::from_millis(1))
}
