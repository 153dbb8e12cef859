//! The awg mesh for real: Debian's `wireguard-go` and `wireguard-tools` in two network
//! namespaces this test creates (a veth pair between them, addresses from the 198.18.0.0/15
//! benchmark range inside the namespaces only; the host's interfaces are never touched).
//! Install brings the node's interface up with wg-quick (userspace wireguard-go: there is no
//! kernel module here) and records `awg=active` once it shook hands with the peer; the
//! watchdog, run inside the node's namespace, flips it to `failed_at_runtime` when the peer
//! stops and back to `active` when it returns.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use edge_channels::testing::{FakeEngine, without_host_probes};
use edge_core::{ChannelState, ChannelsStatus, StackBundle};
use edge_deploy::mesh::WgTools;
use edge_deploy::{InstallRequest, Node, Outcome, install};

const WATCHDOG: &str = env!("CARGO_BIN_EXE_edge-watchdog-it");

fn sh(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0]).args(&args[1..]).output().map_err(|e| format!("{}: {e}", args[0]))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("{} -> {}: {}", args.join(" "), out.status, String::from_utf8_lossy(&out.stderr)))
    }
}

fn must(args: &[&str]) -> String {
    sh(args).unwrap_or_else(|e| panic!("{e}"))
}

/// A key pair: (private, public), made by `wg`.
fn keypair() -> (String, String) {
    let private = must(&["wg", "genkey"]).trim().to_owned();
    let mut child = Command::new("wg")
        .arg("pubkey")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("wg runs: cargo xtask test installs wireguard-tools");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(private.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (private, String::from_utf8(out.stdout).unwrap().trim().to_owned())
}

/// Two network namespaces joined by a veth pair, removed (with their interfaces and the
/// wireguard-go processes serving them) on drop.
struct Lab {
    node_ns: String,
    peer_ns: String,
    /// The node's and the peer's WireGuard interface names (unique: wireguard-go's control
    /// socket is named after the interface in the host-wide /var/run/wireguard).
    node_if: String,
    peer_if: String,
    dir: tempfile::TempDir,
}

impl Lab {
    fn new() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        for tool in ["wireguard-go", "wg-quick", "wg", "ip"] {
            assert!(
                sh(&["sh", "-c", &format!("command -v {tool}")]).is_ok(),
                "{tool} is missing: cargo xtask test installs wireguard-go, wireguard-tools and iproute2"
            );
        }
        let tag = format!("{:x}{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
        let lab = Self {
            node_ns: format!("edge-awg-{tag}-n"),
            peer_ns: format!("edge-awg-{tag}-p"),
            node_if: format!("ea{tag}n"),
            peer_if: format!("ea{tag}p"),
            dir: tempfile::Builder::new().prefix("edge-awg-").tempdir().unwrap(),
        };
        must(&["ip", "netns", "add", &lab.node_ns]);
        must(&["ip", "netns", "add", &lab.peer_ns]);
        // The veth ends are created inside the namespaces: nothing appears on the host.
        let (va, vb) = (format!("va{tag}"), format!("vb{tag}"));
        must(&[
            "ip",
            "link",
            "add",
            &va,
            "netns",
            &lab.node_ns,
            "type",
            "veth",
            "peer",
            "name",
            &vb,
            "netns",
            &lab.peer_ns,
        ]);
        for (ns, dev, addr) in [(&lab.node_ns, &va, "198.18.0.1/30"), (&lab.peer_ns, &vb, "198.18.0.2/30")] {
            must(&["ip", "-n", ns, "address", "add", addr, "dev", dev]);
            must(&["ip", "-n", ns, "link", "set", dev, "up"]);
            must(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        lab
    }

    fn peer_config(&self) -> PathBuf {
        self.dir.path().join(format!("{}.conf", self.peer_if))
    }

    fn peer(&self, verb: &str) {
        must(&["ip", "netns", "exec", &self.peer_ns, "wg-quick", verb, &self.peer_config().display().to_string()]);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Deleting a TUN link makes its wireguard-go exit; a namespace would outlive its name
        // while a process still runs in it.
        for (ns, dev) in [(&self.node_ns, &self.node_if), (&self.peer_ns, &self.peer_if)] {
            let _ = sh(&["ip", "-n", ns, "link", "delete", "dev", dev]);
            let _ = sh(&["ip", "netns", "del", ns]);
        }
    }
}

/// The embedded partner edge with the mesh interface renamed for this lab, on disk.
fn stack_dir(lab: &Lab) -> PathBuf {
    let embedded = StackBundle::partner_edge();
    let mut stack = embedded.stack.clone();
    let t = stack.templates.iter_mut().find(|t| t.name == "awg").unwrap();
    t.output = format!("{}.conf", lab.node_if);
    without_host_probes(&mut stack);
    let dir = lab.dir.path().join("stack");
    std::fs::create_dir_all(dir.join("templates")).unwrap();
    std::fs::write(dir.join("stack.toml"), stack.to_toml()).unwrap();
    for (name, text) in embedded.template_sources() {
        std::fs::write(dir.join("templates").join(name), text).unwrap();
    }
    dir
}

/// One watchdog tick inside the node's namespace, where the interface is; returns its JSON.
fn tick(lab: &Lab, root: &Path, stack: &Path, max_age: &str) -> serde_json::Value {
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.node_ns, WATCHDOG, "--once", "--json"])
        .arg("--root")
        .arg(root)
        .arg("--stack")
        .arg(stack)
        .env("EDGE_AWG_HANDSHAKE_MAX_AGE", max_age)
        .env("DOCKER_HOST", "unix:///nonexistent/edge-test-docker.sock")
        .env_remove("OXPULSE_TG_WEBHOOK")
        .env_remove("TG_TOKEN")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("tick -> {}\n{stdout}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("tick JSON: {e}: {stdout}"))
}

fn awg_state(node: &Node) -> Option<ChannelState> {
    ChannelsStatus::load(&node.paths.channels_status()).unwrap().get("awg")
}

#[test]
fn the_mesh_comes_up_shakes_hands_and_its_state_follows_the_peer() {
    let lab = Lab::new();
    let (node_key, node_pub) = keypair();
    let (peer_key, peer_pub) = keypair();

    // The peer: up first, keepalive so that it greets the node as soon as it can.
    let peer_conf = format!(
        "[Interface]\nPrivateKey = {peer_key}\nAddress = 198.19.0.2/24\nListenPort = 51820\n\n[Peer]\nPublicKey = {node_pub}\nEndpoint = 198.18.0.1:51820\nAllowedIPs = 198.19.0.1/32\nPersistentKeepalive = 1\n"
    );
    edge_core::write_atomic_with_mode(&lab.peer_config(), peer_conf.as_bytes(), 0o600).unwrap();
    lab.peer("up");

    // The node: its identity key in place, the mesh configured through variables.
    let stack = stack_dir(&lab);
    let root = lab.dir.path().join("root");
    let mut node = Node::new(StackBundle::load(&stack).unwrap(), Some(&root)).unwrap();
    node.mesh = Arc::new(WgTools::in_netns(&lab.node_ns));
    node.paths.ensure_dirs().unwrap();
    edge_core::write_atomic_with_mode(
        &node.paths.config_file("awg-private.key"),
        format!("{node_key}\n").as_bytes(),
        0o600,
    )
    .unwrap();
    edge_core::write_atomic_with_mode(
        &node.paths.config_file("awg-public.key"),
        format!("{node_pub}\n").as_bytes(),
        0o644,
    )
    .unwrap();
    let mut request = InstallRequest { pool_wait: Duration::ZERO, host_checks: false, ..InstallRequest::default() };
    for (k, v) in [
        ("PARTNER_ID", "acme"),
        ("PARTNER_DOMAIN", "edge.example.com"),
        ("REALITY_SERVER", "203.0.113.7"),
        ("REALITY_PORT", "443"),
        ("REALITY_PUBLIC_KEY", "Xk7tq3Oa0Rr8Dy6oYqJ3OazkJm9q6oHgqRr5Yb4a1kE"),
        ("REALITY_SERVER_NAME", "www.example.com"),
        ("REALITY_SHORT_ID", "0123abcd"),
        ("AWG_ADDRESS", "198.19.0.1/24"),
        ("AWG_LISTEN_PORT", "51820"),
        ("AWG_PEER_PUBLIC_KEY", &peer_pub),
        ("AWG_PEER_ENDPOINT", "198.18.0.2:51820"),
        ("AWG_ALLOWED_IPS", "198.19.0.2/32"),
    ] {
        request.variables.flags.push((k.to_owned(), v.to_owned()));
    }
    let images: Vec<&str> = node.stack().services.iter().map(|s| s.image.as_str()).collect();
    let engine = FakeEngine::with_images(&images);
    let notes = std::sync::Mutex::new(Vec::new());
    let sink = |p: edge_deploy::Progress| notes.lock().unwrap().push(format!("{p:?}"));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let started = Instant::now();
    let report = runtime.block_on(install(&engine, &node, &request, &sink)).unwrap();
    let install_secs = started.elapsed().as_secs_f64();
    let notes = notes.into_inner().unwrap();
    let awg_note = notes.iter().find(|n| n.contains("active") && n.contains("after bring-up")).cloned();
    eprintln!("install took {install_secs:.2}s; {awg_note:?}");
    // No alert transport is configured here, so the install is done but degraded for that alone.
    assert!(
        report.status == Outcome::Success
            || (report.status == Outcome::Degraded && report.message.contains("no alert transport")),
        "{:?}: {}",
        report.status,
        report.message
    );
    assert_eq!(awg_state(&node), Some(ChannelState::Active));
    let config = node.paths.config_file(&format!("{}.conf", lab.node_if));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&config).unwrap().permissions().mode() & 0o777, 0o600);
    // The handshake is real: the node's wireguard-go reports it.
    let shown = must(&["ip", "netns", "exec", &lab.node_ns, "wg", "show", &lab.node_if, "latest-handshakes"]);
    assert!(shown.starts_with(&peer_pub) && !shown.trim().ends_with("\t0"), "{shown}");
    assert!(awg_note.is_some(), "install says when awg became active: {notes:?}");

    // A tick while the handshake is fresh changes nothing.
    let t = tick(&lab, &root, &stack, "4");
    assert_eq!(t["channel_changes"], serde_json::json!([]));

    // The peer stops: once its last handshake is older than the window, awg fails.
    lab.peer("down");
    std::thread::sleep(Duration::from_secs(5));
    let t = tick(&lab, &root, &stack, "4");
    let change = &t["channel_changes"][0];
    assert_eq!((change["channel"].as_str(), change["to"].as_str()), (Some("awg"), Some("failed_at_runtime")), "{t}");
    let reason = change["reason"].as_str().unwrap();
    assert!(reason.starts_with(&format!("interface {}: last handshake with peer ", lab.node_if)), "{reason}");
    assert!(reason.ends_with("(limit 4s)"), "{reason}");
    assert_eq!(awg_state(&node), Some(ChannelState::FailedAtRuntime));
    let events = t["events"].to_string();
    assert!(events.contains("TRANSITION channel=awg active -> failed_at_runtime"), "{events}");

    // The peer comes back and greets the node: the next ticks see it active again.
    let back = Instant::now();
    lab.peer("up");
    let mut recovered = None;
    while back.elapsed() < Duration::from_secs(20) {
        let t = tick(&lab, &root, &stack, "4");
        if t["channel_changes"][0]["to"] == "active" {
            recovered = Some(back.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let recovered = recovered.expect("awg active again within 20s of the peer's return");
    eprintln!("peer back -> awg active in {:.2}s", recovered.as_secs_f64());
    assert_eq!(awg_state(&node), Some(ChannelState::Active));
}
