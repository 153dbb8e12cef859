//! `edge stop`, `start` and `restart` against the real Docker engine, and the watchdog's view
//! of what the operator stopped.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use edge_tests::docker::{TestStack, docker_out, provision_local_images};
use edge_tests::telegram::ChatServer;

use crate::deploy::{all_channels, code, edge, install, paths, status_file, stdout};

const WATCHDOG: &str = env!("CARGO_BIN_EXE_edge-watchdog-it");

/// Running containers of the stack.
fn running(stack: &TestStack) -> Vec<String> {
    let text = docker_out(&[
        "ps",
        "--filter",
        &format!("label=edge.stack={}", stack.name),
        "--filter",
        "status=running",
        "--format",
        "{{.Names}}",
    ]);
    text.lines().map(str::to_owned).collect()
}

/// The stack's TCP ports that accept a connection.
fn accepting(stack: &TestStack) -> Vec<u16> {
    let p = stack.ports;
    [p.admin, p.site, p.xray, p.hysteria2, p.naive, p.naive_proxy, p.naive_socks]
        .into_iter()
        .filter(|port| {
            let addr = SocketAddr::from(([127, 0, 0, 1], *port));
            TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
        })
        .collect()
}

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(out)))
}

#[test]
fn stop_really_stops_and_start_brings_everything_back() {
    provision_local_images();
    let stack = TestStack::partner_edge("stop").expect("test stack");
    assert_eq!(code(&install(&stack, &[], &all_channels())), Some(0));
    assert!(!running(&stack).is_empty());

    let out = edge(&stack, &["stop", "--json"], &[]);
    assert_eq!(code(&out), Some(0));
    let report = json(&out);
    assert_eq!(report["status"], "success");
    assert_eq!(report["services"].as_array().map(Vec::len), Some(6));
    let check_stopped = |when: &str| {
        assert_eq!(running(&stack), Vec::<String>::new(), "{when}: containers still running");
        assert_eq!(accepting(&stack), Vec::<u16>::new(), "{when}: ports still accepting");
    };
    check_stopped("right after stop");

    let seen = json(&edge(&stack, &["status", "--json"], &[]));
    for c in seen["channels"].as_array().unwrap().iter().flat_map(|c| c["containers"].as_array().unwrap()) {
        assert_eq!(c["status"], "stopped", "{c}");
    }
    assert!(stdout(&edge(&stack, &["status"], &[])).contains("stopped"));

    // The restart policy (unless-stopped) must not revive them.
    std::thread::sleep(Duration::from_secs(30));
    check_stopped("30 s after stop");

    let out = edge(&stack, &["start", "--json"], &[]);
    assert_eq!(code(&out), Some(0));
    assert_eq!(running(&stack).len(), 6);
    let record = std::fs::read_to_string(paths(&stack).install_env()).unwrap();
    assert!(!record.contains("STOPPED="), "{record}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = edge(&stack, &["healthcheck"], &[]);
        if code(&out) == Some(0) {
            break;
        }
        assert!(Instant::now() < deadline, "healthcheck never passed after start");
        std::thread::sleep(Duration::from_secs(1));
    }
    let out = edge(&stack, &["restart", "naive", "--json"], &[]);
    assert_eq!(code(&out), Some(0));
    assert_eq!(json(&out)["services"][0]["after"], "running");
}

#[test]
fn a_channel_the_operator_stopped_is_neither_failed_nor_alerted() {
    provision_local_images();
    let stack = TestStack::partner_edge("stopwatch").expect("test stack");
    assert_eq!(code(&install(&stack, &[], &all_channels())), Some(0));
    // The chat server runs on its own runtime's threads while this one runs the binaries.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let chat = runtime.block_on(ChatServer::start()).expect("chat server");
    let naive_upstream = format!("127.0.0.1:{}", stack.ports.naive);

    assert_eq!(code(&edge(&stack, &["stop", "naive"], &[])), Some(0));
    // Caddy sees the upstream go down.
    let deadline = Instant::now() + Duration::from_secs(30);
    while crate::deploy::pool_health(&stack, &[]).get(&naive_upstream) != Some(&edge_core::UpstreamHealth::Unhealthy) {
        assert!(Instant::now() < deadline, "caddy never marked {naive_upstream} unhealthy");
        std::thread::sleep(Duration::from_millis(500));
    }

    let out = stack
        .command(Path::new(WATCHDOG))
        .args(["--once", "--json"])
        .env("OXPULSE_TG_WEBHOOK", chat.webhook_url())
        .env("OXPULSE_TG_MIN_INTERVAL", "0")
        .output()
        .expect("watchdog runs");
    eprintln!("{}\n{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    assert_eq!(code(&out), Some(0));
    let tick = json(&out);
    assert_eq!(tick["stopped"], serde_json::json!(["naive"]));
    assert_eq!(tick["channel_changes"], serde_json::json!([]));
    assert!(tick["pool"].as_array().unwrap().iter().all(|m| m["channel"] != "naive"), "{tick}");
    assert!(status_file(&stack).contains("naive=active"), "{}", status_file(&stack));
    let about_naive: Vec<String> = chat.delivered().into_iter().filter(|m| m.contains(&naive_upstream)).collect();
    assert_eq!(about_naive, Vec::<String>::new());
    // Nothing restarted it either.
    assert!(!running(&stack).contains(&stack.container("oxpulse-partner-naive")));
}
