//! Alerts end to end at library level: the limiter, outbox and delivery chain against a loopback
//! webhook/Bot API server, concurrent and killed runs of the `alert-tick` binary, and a real Alertmanager.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use edge_alerts::outbox::Outbox;
use edge_alerts::{AlertConfig, Alerter, Report, SendError, Severity, TickStatus, TransportKind};
use edge_core::PoolMember;
use edge_core::{UpstreamHealth, UpstreamState};
use edge_tests::alertmanager::Alertmanager;
use edge_tests::telegram::{ChatServer, Endpoint, Reply, refused_url};

const HOST: &str = "edge1";
const TOKEN: &str = "123456789:AAHtesttokenNEVERshownANYWHERE_x1";
const CHAT: &str = "-1001234567890";

/// A node root (`--root`) in a temp dir.
struct Node {
    dir: tempfile::TempDir,
}

impl Node {
    fn new() -> Self {
        Self { dir: tempfile::tempdir().unwrap() }
    }

    fn paths(&self) -> edge_core::Paths {
        edge_core::Paths::new(Some(self.dir.path()), &edge_core::Stack::partner_edge().stack)
    }

    /// An alerter configured, like the watchdog, from legacy variables.
    fn alerter(&self, vars: &[(&str, String)]) -> Alerter {
        Alerter::new(self.config(vars)).unwrap()
    }

    fn config(&self, vars: &[(&str, String)]) -> AlertConfig {
        let mut config =
            AlertConfig::from_env(&self.paths(), |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))
                .unwrap();
        config.host = HOST.to_owned();
        config
    }

    fn telegram_dir(&self) -> PathBuf {
        self.paths().alert_state_dir()
    }

    fn last_alert(&self) -> Option<String> {
        std::fs::read_to_string(self.telegram_dir().join("last-alert-ts")).ok()
    }

    /// Puts the last delivery `ago` seconds in the past.
    fn stamp_ago(&self, ago: u64) {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        std::fs::write(self.telegram_dir().join("last-alert-ts"), format!("{}\n", now - ago)).unwrap();
    }

    fn outbox(&self) -> Outbox {
        Outbox::load(&self.telegram_dir().join("outbox.json"), 0).unwrap()
    }

    fn upstream_state(&self) -> UpstreamState {
        UpstreamState::load(&self.paths().upstream_state()).unwrap()
    }
}

fn page(pairs: &[(String, bool)]) -> String {
    let mut out = String::from(
        "# HELP caddy_reverse_proxy_upstreams_healthy Health status of reverse proxy upstreams.\n\
         # TYPE caddy_reverse_proxy_upstreams_healthy gauge\n",
    );
    for (u, healthy) in pairs {
        out.push_str(&format!("caddy_reverse_proxy_upstreams_healthy{{upstream=\"{u}\"}} {}\n", u8::from(*healthy)));
    }
    out
}

fn upstreams(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("u{i}:80")).collect()
}

fn pool(names: &[String]) -> Vec<PoolMember> {
    names.iter().map(|u| PoolMember::new("ch", u.clone())).collect()
}

/// Serves `healthy[i]` for `names[i]` and runs one tick over HTTP.
async fn tick(alerter: &Alerter, server: &ChatServer, names: &[String], healthy: &[bool]) -> Report {
    let pairs: Vec<(String, bool)> = names.iter().cloned().zip(healthy.iter().copied()).collect();
    server.set_metrics(Some(&page(&pairs)));
    alerter.tick(&pool(names)).await.unwrap()
}

fn vars_webhook(server: &ChatServer) -> Vec<(&'static str, String)> {
    vec![("OXPULSE_TG_WEBHOOK", server.webhook_url()), ("OXPULSE_METRICS_SRC", server.metrics_url())]
}

fn vars_both(server: &ChatServer) -> Vec<(&'static str, String)> {
    let mut v = vars_webhook(server);
    v.extend([
        ("TG_TOKEN", TOKEN.to_owned()),
        ("OXPULSE_TG_CHAT", CHAT.to_owned()),
        ("OXPULSE_TG_API_FALLBACK", server.telegram_url(TOKEN)),
    ]);
    v
}

/// `(upstream, from, to)` of every TRANSITION line in `texts`, in order (a `channel=` word
/// before the upstream is skipped).
fn transitions(texts: &[String]) -> Vec<(String, String, String)> {
    texts
        .iter()
        .flat_map(|t| t.lines())
        .filter_map(|line| {
            let rest = &line[line.find("TRANSITION ")? + "TRANSITION ".len()..];
            let rest = rest.split_once(' ').filter(|(w, _)| w.starts_with("channel=")).map_or(rest, |(_, r)| r);
            let rest = rest.strip_prefix("upstream=")?;
            let (upstream, change) = rest.split_once(' ')?;
            let (from, to) = change.split_once(" -> ")?;
            Some((upstream.to_owned(), from.to_owned(), to.split(' ').next()?.to_owned()))
        })
        .collect()
}

#[tokio::test]
async fn all_down_is_critical_and_bypasses_the_rate_limit_window() {
    let server = ChatServer::start().await.unwrap();
    let node = Node::new();
    let alerter = node.alerter(&vars_webhook(&server));
    let names = upstreams(3);
    tick(&alerter, &server, &names, &[true, true, true]).await;
    node.stamp_ago(5);

    let r = tick(&alerter, &server, &names, &[false, false, false]).await;
    assert_eq!((r.status(), r.delivered_events()), (TickStatus::Delivered, 4), "{r:?}");
    let sent = server.delivered();
    assert_eq!(sent.len(), 1);
    assert!(
        sent[0].starts_with("CRITICAL: all upstreams unhealthy on edge1\n[edge1] 4 alerts, oldest first:\n"),
        "{sent:?}"
    );
    assert_eq!(transitions(&sent).len(), 3, "the transitions waiting in the window ride along");

    // Still all down: no second CRITICAL.
    server.clear();
    let r = tick(&alerter, &server, &names, &[false, false, false]).await;
    assert!(r.events.is_empty() && server.received().is_empty(), "{r:?}");
}

#[tokio::test]
async fn ten_flips_inside_one_window_are_all_reported_oldest_first() {
    let server = ChatServer::start().await.unwrap();
    let node = Node::new();
    let alerter = node.alerter(&vars_webhook(&server));
    let names = upstreams(11);
    let mut health = vec![true; 11];
    tick(&alerter, &server, &names, &health).await;
    health[0] = false;
    let r = tick(&alerter, &server, &names, &health).await;
    assert_eq!(r.delivered_events(), 1, "the first alert opens the window");
    server.clear();

    // Ten ticks, one flip each, all inside the window (the breaker parks at the
    // fifth and the recovery at the tenth releases it): nothing is sent yet.
    let mut expected = Vec::new();
    for i in 1..=9 {
        health[i] = false;
        expected.push((names[i].clone(), "healthy".to_owned(), "unhealthy".to_owned()));
        tick(&alerter, &server, &names, &health).await;
    }
    health[0] = true;
    expected.push((names[0].clone(), "unhealthy".to_owned(), "healthy".to_owned()));
    let r = tick(&alerter, &server, &names, &health).await;
    assert_eq!(r.status(), TickStatus::Held);
    assert!(server.received().is_empty());

    node.stamp_ago(601);
    let r = alerter.flush().await.unwrap();
    assert_eq!(r.held, 0);
    let sent = server.delivered();
    assert_eq!(sent.len(), 1, "one digest: {sent:?}");
    assert_eq!(transitions(&sent), expected);
    assert!(sent[0].contains("PARKED after 5 consecutive ticks"), "{sent:?}");

    // Ten flips in one tick: one digest lists them all.
    server.clear();
    let flipped: Vec<bool> = health.iter().enumerate().map(|(i, h)| if i < 10 { !h } else { *h }).collect();
    let r = tick(&alerter, &server, &names, &flipped).await;
    assert_eq!((r.events.len(), r.held), (10, 10));
    node.stamp_ago(601);
    alerter.flush().await.unwrap();
    let got = transitions(&server.delivered());
    assert_eq!(got.len(), 10);
    let mut listed: Vec<&String> = got.iter().map(|(u, ..)| u).collect();
    listed.sort();
    let mut want: Vec<&String> = names[..10].iter().collect();
    want.sort();
    assert_eq!(listed, want);
}

#[tokio::test]
async fn webhook_down_uses_the_bot_api_both_down_fill_the_outbox_both_back_deliver_once() {
    let server = ChatServer::start().await.unwrap();
    let node = Node::new();
    let mut vars = vars_both(&server);
    vars.push(("OXPULSE_TG_MIN_INTERVAL", "0".to_owned()));
    let alerter = node.alerter(&vars);
    let names = upstreams(2);
    tick(&alerter, &server, &names, &[true, true]).await;

    server.set_webhook(Reply::Fail(503));
    let r = tick(&alerter, &server, &names, &[false, true]).await;
    assert_eq!((r.status(), r.transport()), (TickStatus::Delivered, Some(TransportKind::Telegram)));
    assert_eq!(r.errors.len(), 1, "the webhook failure is still reported");
    let got = server.received();
    let tg = got.iter().find(|r| r.endpoint == Endpoint::Telegram).unwrap();
    assert_eq!(tg.chat_id.as_deref(), Some(CHAT));
    assert_eq!(tg.token.as_deref(), Some(TOKEN));
    assert!(tg.content_type.starts_with("application/json"));
    assert_eq!(tg.text.as_deref(), Some("[edge1] TRANSITION channel=ch upstream=u0:80 healthy -> unhealthy"));
    let stamp = node.last_alert();
    assert!(stamp.is_some());

    server.clear();
    server.set_telegram(Reply::Fail(502));
    let r = tick(&alerter, &server, &names, &[true, true]).await;
    assert_eq!((r.status(), r.undelivered), (TickStatus::Undelivered, 1));
    let errors = format!("{:?} {}", r.errors, r.errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join(" "));
    assert!(!errors.contains(TOKEN) && !errors.contains("AAHtest"), "token leaked: {errors}");
    assert!(errors.contains("bot<redacted>/sendMessage"), "{errors}");
    assert_eq!(node.last_alert(), stamp, "the clock is stamped only after a delivery");
    assert_eq!(node.outbox().entries.len(), 1);
    // A second run while both are down queues nothing twice.
    let r = tick(&alerter, &server, &names, &[true, true]).await;
    assert_eq!(r.undelivered, 1);
    assert!(server.delivered().is_empty());

    server.set_webhook(Reply::Accept);
    server.set_telegram(Reply::Accept);
    let r = tick(&alerter, &server, &names, &[true, true]).await;
    assert_eq!((r.delivered_events(), r.transport()), (1, Some(TransportKind::Webhook)));
    let r = tick(&alerter, &server, &names, &[true, true]).await;
    assert_eq!(r.status(), TickStatus::Quiet);
    assert_eq!(server.delivered(), ["[edge1] TRANSITION channel=ch upstream=u0:80 unhealthy -> healthy"]);
    assert!(node.outbox().entries.is_empty());
}

fn vars_telegram_only(server: &ChatServer) -> Vec<(&'static str, String)> {
    vec![
        ("TG_TOKEN", TOKEN.to_owned()),
        ("TG_CHAT", CHAT.to_owned()),
        ("OXPULSE_TG_API_FALLBACK", server.telegram_url(TOKEN)),
        ("OXPULSE_TG_MIN_INTERVAL", "0".to_owned()),
    ]
}

#[tokio::test]
async fn telegram_429_retry_after_is_waited_out() {
    let server = ChatServer::start().await.unwrap();
    let node = Node::new();
    let alerter = node.alerter(&vars_telegram_only(&server));
    server.script_telegram(&[Reply::RetryAfter(1)]);
    let started = Instant::now();
    let r = alerter.notify(Severity::Warning, "container oxpulse-partner-naive died").await.unwrap();
    assert_eq!((r.delivered_events(), r.transport()), (1, Some(TransportKind::Telegram)));
    assert!(started.elapsed() >= Duration::from_secs(1));
    let got = server.received();
    assert_eq!(got.iter().map(|r| r.accepted).collect::<Vec<_>>(), [false, true]);
}

#[tokio::test]
async fn telegram_429_beyond_the_budget_and_ok_false_wait_for_the_next_run() {
    let server = ChatServer::start().await.unwrap();
    let node = Node::new();
    let mut config = node.config(&vars_telegram_only(&server));
    config.max_retry_wait = Duration::from_secs(1);
    let alerter = Alerter::new(config).unwrap();

    server.script_telegram(&[Reply::RetryAfter(30)]);
    let started = Instant::now();
    let r = alerter.notify(Severity::Warning, "one").await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "did not sleep 30 s");
    assert_eq!(r.status(), TickStatus::Undelivered);
    assert!(
        matches!(
            &r.errors[..],
            [edge_alerts::AlertError::Telegram { source: SendError::RateLimited { retry_after: 30, .. }, .. }]
        ),
        "{:?}",
        r.errors
    );

    server.script_telegram(&[Reply::NotOk]);
    let r = alerter.flush().await.unwrap();
    assert_eq!(r.status(), TickStatus::Undelivered);
    assert!(matches!(&r.errors[..], [edge_alerts::AlertError::Telegram { source: SendError::Api { .. }, .. }]));

    let r = alerter.flush().await.unwrap();
    assert_eq!(r.delivered_events(), 1);
    assert_eq!(server.delivered(), ["[edge1] one"]);
}

#[tokio::test]
async fn long_digests_are_split_under_the_4096_character_limit() {
    let server = ChatServer::start().await.unwrap();
    let node = Node::new();
    let mut vars = vars_telegram_only(&server);
    vars.push(("OXPULSE_METRICS_SRC", server.metrics_url()));
    let alerter = node.alerter(&vars);
    let names: Vec<String> = (0..150).map(|i| format!("channel-{i:03}-{}.internal:8443", "x".repeat(40))).collect();
    let mut health = vec![true; names.len()];
    tick(&alerter, &server, &names, &health).await;
    for h in health.iter_mut().skip(1) {
        *h = false;
    }
    let r = tick(&alerter, &server, &names, &health).await;
    assert_eq!((r.delivered_events(), r.undelivered), (149, 0), "{:?}", r.errors);
    let sent = server.delivered();
    assert!(sent.len() > 1, "split into parts");
    assert!(sent.iter().all(|t| t.encode_utf16().count() <= 4096));
    assert!(sent[0].starts_with(&format!("[edge1] 149 alerts, oldest first (part 1/{}):", sent.len())), "{}", sent[0]);
    let got = transitions(&sent);
    assert_eq!(
        got.iter().map(|(u, ..)| u.as_str()).collect::<Vec<_>>(),
        names[1..].iter().map(String::as_str).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn the_webhook_body_is_json_whatever_the_text() {
    let server = ChatServer::start().await.unwrap();
    let node = Node::new();
    let alerter = node.alerter(&vars_webhook(&server));
    let text = r#"quote " backslash \ braces {} unicode → 😀 and a "$(touch /tmp/x)" for the shell"#;
    let r = alerter.notify(Severity::Warning, text).await.unwrap();
    assert_eq!(r.delivered_events(), 1, "{:?}", r.errors);
    assert_eq!(server.delivered(), [format!("[edge1] {text}")]);
}

#[tokio::test]
async fn an_unreachable_metrics_endpoint_and_a_missing_series_are_alerts() {
    let server = ChatServer::start().await.unwrap();
    let node = Node::new();
    let mut vars = vars_webhook(&server);
    vars.push(("OXPULSE_TG_MIN_INTERVAL", "0".to_owned()));
    let alerter = node.alerter(&vars);
    let names = upstreams(2);
    tick(&alerter, &server, &names, &[true, true]).await;

    server.set_metrics(None);
    alerter.tick(&pool(&names)).await.unwrap();
    let refused =
        node.alerter(&[("OXPULSE_TG_WEBHOOK", server.webhook_url()), ("OXPULSE_METRICS_SRC", refused_url("/metrics"))]);
    let r = refused.tick(&pool(&names)).await.unwrap();
    assert!(r.events.is_empty(), "already reported as unreachable: {r:?}");
    server.set_metrics(Some(&page(&[(names[0].clone(), true)])));
    alerter.tick(&pool(&names)).await.unwrap();

    let sent = server.delivered();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[0], format!("[edge1] METRICS UNREACHABLE source={}: http status 404", server.metrics_url()));
    assert!(sent[1].contains(&format!("METRICS REACHABLE again source={}", server.metrics_url())), "{sent:?}");
    assert!(
        sent[1].contains(
            "TRANSITION channel=ch upstream=u1:80 healthy -> unknown (no caddy_reverse_proxy_upstreams_healthy series)"
        ),
        "{sent:?}"
    );
    // The missing upstream is not left in upstream-state.env as healthy.
    assert_eq!(node.upstream_state().get("u1:80"), None);
}

/// Runs the `alert-tick` binary against `node`.
fn alert_tick(node: &Node, server: &ChatServer, metrics: &Path, names: &[String]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_alert-tick"));
    cmd.env_clear()
        .env("EDGE_TEST_ROOT", node.dir.path())
        .env("EDGE_TEST_HOST", HOST)
        .env("EDGE_TEST_POOL", names.iter().map(|u| format!("{u}=ch")).collect::<Vec<_>>().join(","))
        .env("OXPULSE_TG_WEBHOOK", server.webhook_url())
        .env("OXPULSE_METRICS_SRC", metrics)
        .env("OXPULSE_TG_MIN_INTERVAL", "0")
        .env("OXPULSE_ALERT_BREAKER_TICKS", "0")
        .kill_on_drop(true);
    cmd
}

/// A small deterministic generator (xorshift), so a failure can be replayed.
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_runs_deliver_each_transition_exactly_once() {
    let server = ChatServer::start().await.unwrap();
    let node = Node::new();
    let names = upstreams(10);
    let pages = node.dir.path().join("pages");
    std::fs::create_dir(&pages).unwrap();
    let healthy: Vec<(String, bool)> = names.iter().map(|u| (u.clone(), true)).collect();
    std::fs::write(pages.join("start"), page(&healthy)).unwrap();
    let out = alert_tick(&node, &server, &pages.join("start"), &names).output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let mut seed = 0x9e37_79b9_7f4a_7c15;
    let mut children = Vec::new();
    for i in 0..50 {
        let pairs: Vec<(String, bool)> =
            names.iter().map(|u| (u.clone(), !xorshift(&mut seed).is_multiple_of(3))).collect();
        let file = pages.join(format!("{i}"));
        std::fs::write(&file, page(&pairs)).unwrap();
        children.push(alert_tick(&node, &server, &file, &names).output());
    }
    let started = Instant::now();
    let outputs = futures_join_all(children).await;
    eprintln!("50 concurrent alert-tick runs took {:?}", started.elapsed());

    let mut reported = Vec::new();
    for out in &outputs {
        let out = out.as_ref().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let events: Vec<String> =
            report["events"].as_array().unwrap().iter().map(|e| e.as_str().unwrap().to_owned()).collect();
        reported.extend(transitions(&events));
    }
    let delivered = transitions(&server.delivered());
    assert!(!delivered.is_empty());
    // Every transition a run detected was delivered, and nothing else.
    let mut a = reported.clone();
    let mut b = delivered.clone();
    a.sort();
    b.sort();
    assert_eq!(a, b);
    // In delivery order, each upstream's transitions chain up (a duplicate would break the chain)
    // and end where upstream-state.env says.
    let mut current: BTreeMap<&str, &str> = names.iter().map(|u| (u.as_str(), "healthy")).collect();
    for (u, from, to) in &delivered {
        let cur = current.get_mut(u.as_str()).unwrap();
        assert_eq!(*cur, from.as_str(), "{u}: {delivered:?}");
        *cur = to.as_str();
    }
    let state = node.upstream_state();
    for u in &names {
        let health = state.get(u).unwrap().health;
        assert_eq!(current[u.as_str()], if health == UpstreamHealth::Healthy { "healthy" } else { "unhealthy" });
    }
    assert!(node.outbox().entries.is_empty());
    let stamp = node.last_alert().unwrap();
    assert!(stamp.trim().parse::<u64>().is_ok(), "{stamp:?}");
}

/// Awaits every future (the tests crate does not depend on futures-util).
async fn futures_join_all<F: std::future::Future + Send + 'static>(futures: Vec<F>) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_write_never_leaves_a_torn_state_file() {
    let server = ChatServer::start().await.unwrap();
    let node = Node::new();
    let names = upstreams(6);
    let tg = node.telegram_dir();
    let state_dir = node.paths().state_dir().to_owned();
    let temp_files = |dir: &Path| -> usize {
        std::fs::read_dir(dir)
            .map(|d| d.flatten().filter(|e| e.file_name().to_string_lossy().contains(".tmp.")).count())
            .unwrap_or(0)
    };
    let mut seed = 0x2545_f491_4f6c_dd1d;
    let mut leftovers = 0;
    for _ in 0..40 {
        let mut child = alert_tick(&node, &server, Path::new("/nonexistent"), &names)
            .env("OXPULSE_ALERT_BREAKER_TICKS", "3")
            .arg("--loop")
            .arg("6")
            .spawn()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20 + xorshift(&mut seed) % 80)).await;
        child.start_kill().unwrap();
        child.wait().await.unwrap();
        leftovers += temp_files(&tg) + temp_files(&state_dir);

        // Whatever the moment of death, every state file is whole.
        if let Ok(text) = std::fs::read_to_string(node.paths().upstream_state()) {
            UpstreamState::parse(&text).unwrap_or_else(|e| panic!("torn upstream-state.env: {e}\n{text}"));
        }
        if let Ok(bytes) = std::fs::read(tg.join("outbox.json")) {
            serde_json::from_slice::<Outbox>(&bytes).unwrap_or_else(|e| panic!("torn outbox.json: {e}"));
        }
        if let Ok(text) = std::fs::read_to_string(tg.join("circuit-breaker.state")) {
            edge_alerts::breaker::Breaker::parse(&text).unwrap_or_else(|e| panic!("torn breaker state: {e}\n{text}"));
        }
        if let Some(stamp) = node.last_alert() {
            assert!(stamp.ends_with('\n') && stamp.trim().parse::<u64>().is_ok(), "torn last-alert-ts: {stamp:?}");
        }
    }
    eprintln!(
        "kill -9 loop: {} messages delivered, {leftovers} temp files left by killed writers",
        server.delivered().len()
    );
    assert!(!server.delivered().is_empty(), "the killed runs did real work");

    // A normal run afterwards works and sweeps what the killed writers left.
    let metrics = node.dir.path().join("metrics");
    std::fs::write(&metrics, page(&names.iter().map(|u| (u.clone(), true)).collect::<Vec<_>>())).unwrap();
    let out = alert_tick(&node, &server, &metrics, &names).output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(temp_files(&tg) + temp_files(&state_dir), 0);
}

#[tokio::test]
async fn both_transports_down_is_exit_code_3_from_the_binary() {
    let server = ChatServer::start().await.unwrap();
    let node = Node::new();
    let names = upstreams(2);
    let metrics = node.dir.path().join("metrics");
    std::fs::write(&metrics, page(&[(names[0].clone(), true), (names[1].clone(), true)])).unwrap();
    alert_tick(&node, &server, &metrics, &names).output().await.unwrap();
    std::fs::write(&metrics, page(&[(names[0].clone(), false), (names[1].clone(), true)])).unwrap();
    let out = alert_tick(&node, &server, &metrics, &names)
        .env("OXPULSE_TG_WEBHOOK", refused_url("/hook"))
        .env("TG_CHAT", CHAT)
        .env("OXPULSE_TG_API_FALLBACK", refused_url(&format!("/bot{TOKEN}/sendMessage")))
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(r#""status":"Undelivered""#) && !stdout.contains(TOKEN), "{stdout}");
    let out = alert_tick(&node, &server, &metrics, &names).output().await.unwrap();
    assert!(out.status.success());
    assert_eq!(server.delivered(), ["[edge1] TRANSITION channel=ch upstream=u0:80 healthy -> unhealthy"]);
}

#[tokio::test]
async fn a_real_alertmanager_lists_the_firing_alert_then_resolves_it() {
    let am = Alertmanager::start().await.unwrap();
    let server = ChatServer::start().await.unwrap();
    let node = Node::new();
    let mut vars = vars_webhook(&server);
    vars.push(("OXPULSE_ALERTMANAGER_URL", am.url()));
    let alerter = node.alerter(&vars);
    let names = upstreams(2);
    let members = [PoolMember::new("xray", names[0].clone()), PoolMember::new("naive", names[1].clone())];
    let run = |healthy: [bool; 2]| {
        let pairs: Vec<(String, bool)> = names.iter().cloned().zip(healthy).collect();
        server.set_metrics(Some(&page(&pairs)));
        alerter.tick(&members)
    };

    let r = run([true, true]).await.unwrap();
    assert_eq!(r.alertmanager.as_ref().map(|a| a.as_ref().ok().copied()), Some(Some(Default::default())));
    let r = run([false, true]).await.unwrap();
    assert!(matches!(r.alertmanager, Some(Ok(p)) if p.firing == 1), "{:?}", r.alertmanager);
    let alerts = am
        .wait_for(Duration::from_secs(10), |a| a.iter().any(|x| x["labels"]["alertname"] == "EdgeUpstreamUnhealthy"))
        .await
        .unwrap();
    let labels = &alerts[0]["labels"];
    assert_eq!(labels["edge"], HOST);
    assert_eq!(labels["upstream"], "u0:80");
    assert_eq!(labels["channel"], "xray");
    assert_eq!(labels["severity"], "warning");
    assert_eq!(alerts[0]["status"]["state"], "active");

    // All down: the critical joins; then everything recovers and is resolved.
    run([false, false]).await.unwrap();
    am.wait_for(Duration::from_secs(10), |a| {
        a.iter()
            .any(|x| x["labels"]["alertname"] == "EdgeAllUpstreamsUnhealthy" && x["labels"]["severity"] == "critical")
            && a.len() == 3
    })
    .await
    .unwrap();
    let r = run([true, true]).await.unwrap();
    assert!(matches!(r.alertmanager, Some(Ok(p)) if p.resolved == 3 && p.firing == 0), "{:?}", r.alertmanager);
    am.wait_for(Duration::from_secs(10), |a| a.is_empty()).await.unwrap();
}

#[tokio::test]
async fn the_bot_api_server_reads_form_bodies_as_the_legacy_curl_sends_them() {
    let server = ChatServer::start().await.unwrap();
    // What lib/telegram-alert-lib.sh runs: `curl -s URL -d "chat_id=$CHAT&text=$msg"`.
    let out = tokio::process::Command::new("curl")
        .args(["-s", "--max-time", "5", &server.telegram_url(TOKEN), "-d"])
        .arg(format!("chat_id={CHAT}&text=[edge1] TRANSITION upstream=u0:80 healthy -> unhealthy"))
        .output()
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(r#""ok":true"#));
    let got = server.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].content_type, "application/x-www-form-urlencoded");
    assert_eq!(got[0].chat_id.as_deref(), Some(CHAT));
    assert_eq!(got[0].text.as_deref(), Some("[edge1] TRANSITION upstream=u0:80 healthy -> unhealthy"));
}
