//! Alerts from the first minute: `edge install` with a loopback webhook writes `watchdog.env`,
//! says "edge installed" through it, and the watchdog run as its systemd unit runs it (the
//! rendered `EnvironmentFile=` read with systemd's rules into a clean environment, the
//! rendered `ExecStart=`) tells the same webhook when a channel's container stops.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use edge_tests::docker::{TestStack, docker_out, partner_edge_images, provision_local_images};
use edge_tests::systemd::ServiceRun;
use edge_tests::telegram::ChatServer;

use crate::deploy::{all_channels, code, edge, paths, stdout};

const EDGE: &str = env!("CARGO_BIN_EXE_edge-it");
const WATCHDOG: &str = env!("CARGO_BIN_EXE_edge-watchdog-it");

const NODE_CONFIG: &str = r#"{"reality": {"server": "reality.test.invalid", "port": 443,
  "public_key": "Z4bx4ZL8Vxd1v8z0rZzV0Xh2rKpFQ0Dk7yYjv6sVYkA", "server_name": "www.example.com", "short_id": "0123abcd"}}"#;

fn messages_with(chat: &ChatServer, needle: &str) -> Vec<String> {
    chat.delivered().into_iter().filter(|m| m.contains(needle)).collect()
}

/// One run of the watchdog unit as the timer starts it, with the test's `--root` and `--stack`.
pub(crate) fn run_unit(stack: &TestStack) -> (Option<i32>, String) {
    let unit = paths(stack).systemd_dir().join("edge-watchdog.service");
    let service = ServiceRun::from_unit(&unit).expect("the rendered unit reads");
    let out = service
        .command()
        .args(["--json", "--root"])
        .arg(stack.root())
        .arg("--stack")
        .arg(stack.stack_dir())
        .output()
        .expect("the unit's ExecStart runs");
    let text = stdout(&out);
    eprintln!("{:?} -> {}\n{text}{}", service.argv, out.status, String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text)
}

#[test]
fn install_alerts_from_the_first_minute_and_the_timer_s_tick_delivers_a_transition() {
    provision_local_images();
    let stack = TestStack::partner_edge("firstalert").expect("test stack");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let chat = runtime.block_on(ChatServer::start()).expect("chat server");
    let webhook = chat.webhook_url();
    let node_config = stack.root().join("node-config.input.json");
    std::fs::write(&node_config, NODE_CONFIG).unwrap();

    // Install, watching the webhook meanwhile: install start -> "edge installed" received.
    let started = Instant::now();
    let images = partner_edge_images();
    let mut child = stack
        .command(Path::new(EDGE))
        .args(["install", "--partner-id", "acme", "--domain", "edge.test.invalid", "--manual-config"])
        .arg(&node_config)
        .args(["--images", &images, "--health-timeout", "40s", "--alert-webhook", &webhook])
        .args(["--set", &format!("WATCHDOG_BIN={WATCHDOG}")])
        .envs(all_channels())
        .stdout(Stdio::piped())
        .spawn()
        .expect("edge install runs");
    let mut first_alert = None;
    let status = loop {
        if first_alert.is_none() && !messages_with(&chat, " installed ").is_empty() {
            first_alert = Some(started.elapsed());
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let install_time = started.elapsed();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut text).unwrap();
    eprintln!("edge install -> {status}\n{text}");
    assert_eq!(status.code(), Some(0), "install with a working webhook succeeds");
    let first_alert =
        first_alert.or_else(|| (!messages_with(&chat, " installed ").is_empty()).then(|| started.elapsed()));
    let first_alert = first_alert.expect("the webhook got \"edge installed\"");
    eprintln!("install-to-first-alert: {first_alert:?} (install took {install_time:?})");
    assert!(text.contains("webhook") && text.contains("delivered \"edge installed\""), "{text}");
    assert!(!text.contains("/webhook/monitor"), "the webhook's path is never shown: {text}");

    let env_file = paths(&stack).watchdog_env();
    assert_eq!(std::fs::metadata(&env_file).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read_to_string(&env_file).unwrap(), format!("OXPULSE_TG_WEBHOOK={webhook}\n"));
    let health = edge(&stack, &["healthcheck"], &[]);
    assert_eq!(code(&health), Some(0), "every check passes, alerts included");
    assert!(
        stdout(&health).contains("ok    alerts can be delivered: webhook http://127.0.0.1:"),
        "{}",
        stdout(&health)
    );

    // The timer's first run: every upstream healthy, nothing to say.
    let (code_first, _) = run_unit(&stack);
    assert_eq!(code_first, Some(0));

    // A channel's container stops; Caddy marks its upstream down; the next run tells the webhook.
    // Two channels stay up: a plain transition, which the rate-limit window would hold had the
    // "edge installed" message stamped its clock (the default 600 s window is in force).
    let xray = format!("127.0.0.1:{}", stack.ports.xray);
    let stopped = Instant::now();
    docker_out(&["stop", "-t", "1", &stack.container("oxpulse-partner-xray")]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while crate::deploy::pool_health(&stack, &[]).get(&xray) != Some(&edge_core::UpstreamHealth::Unhealthy) {
        assert!(Instant::now() < deadline, "caddy never marked {xray} unhealthy");
        std::thread::sleep(Duration::from_millis(250));
    }
    let (code_tick, tick) = run_unit(&stack);
    assert_eq!(code_tick, Some(0), "the transition was delivered: {tick}");
    let wanted = format!("TRANSITION channel=xray upstream={xray} healthy -> unhealthy");
    assert_eq!(messages_with(&chat, &wanted).len(), 1, "{:?}", chat.delivered());
    assert!(messages_with(&chat, "CRITICAL").is_empty(), "{:?}", chat.delivered());
    eprintln!("docker stop -> transition alert via the unit: {:?}", stopped.elapsed());

    // Re-install without alert flags: watchdog.env stays as it was.
    let before = std::fs::read(&env_file).unwrap();
    docker_out(&["start", &stack.container("oxpulse-partner-xray")]);
    let out = edge(
        &stack,
        &["install", "--images", &images, "--health-timeout", "40s", "--set", &format!("WATCHDOG_BIN={WATCHDOG}")],
        &all_channels(),
    );
    assert_eq!(code(&out), Some(0));
    assert_eq!(std::fs::read(&env_file).unwrap(), before);
    assert_eq!(messages_with(&chat, " installed ").len(), 2, "each install says so");
}

#[test]
fn without_an_alert_transport_install_is_degraded_and_healthcheck_says_why() {
    provision_local_images();
    let stack = TestStack::partner_edge("noalert").expect("test stack");
    let node_config = stack.root().join("node-config.input.json");
    std::fs::write(&node_config, NODE_CONFIG).unwrap();
    let images = partner_edge_images();
    let node_config = node_config.display().to_string();
    let args = [
        "install",
        "--partner-id",
        "acme",
        "--domain",
        "edge.test.invalid",
        "--manual-config",
        &node_config,
        "--images",
        &images,
        "--health-timeout",
        "40s",
    ];
    let out = edge(&stack, &args, &[]);
    assert_eq!(code(&out), Some(3), "degraded");
    assert!(stdout(&out).contains("no alert transport is configured"), "{}", stdout(&out));
    let health = edge(&stack, &["healthcheck", "--json"], &[]);
    assert_eq!(code(&health), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&health.stdout).unwrap();
    let checks = report["checks"].as_array().unwrap();
    let last = checks.last().unwrap();
    assert_eq!(last["name"], "alerts can be delivered");
    assert_eq!(last["number"], checks.len());
    assert_eq!(last["ok"], false);
    assert!(checks[..checks.len() - 1].iter().all(|c| c["ok"] == true), "only the alerts check fails: {report}");
}
