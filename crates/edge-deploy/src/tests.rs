//! Unit tests of the operations on the in-memory engine: the whole install pipeline, the
//! lifecycle verbs and uninstall/restore, in milliseconds. The real-engine tests in
//! `tests/it` prove the same on Docker.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use std::collections::BTreeMap;

use edge_alerts::{AlertChanges, AlertSettings, Change};
use edge_channels::testing::{FakeEngine, without_host_probes};
use edge_channels::{ContainerStatus, Engine, LABEL_SPEC_HASH};
use edge_core::secrets::SPEC_HASH_KEY_FILE;
use edge_core::{ChannelState, ChannelsStatus, InstallRecord, StackBundle};

use crate::identity::{BackupLayout, RegistrationToken, identity_files};
use crate::mesh::fake::FakeMesh;
use crate::mesh::{MeshProbe, PeerSeen};
use crate::{InstallRequest, LifecycleRequest, Node, Outcome, PullPolicy, UninstallRequest, install, quiet};
use base64::Engine as _;

mod adopt;

/// Install checks that the ports it will publish are free: tests that install take turns.
static PORTS: Mutex<()> = Mutex::new(());

struct Host {
    _ports: MutexGuard<'static, ()>,
    _root: tempfile::TempDir,
    node: Node,
    engine: FakeEngine,
    mesh: Arc<FakeMesh>,
    admin: FakeAdmin,
}

const PEER: &str = "1Zg1v1nu3AwPWj+V/f51pXznc/5TaReXmyzLx+4asxE=";

/// The host's report on an interface whose peer shook hands at `at` (epoch seconds).
fn shook_hands(at: Option<u64>) -> MeshProbe {
    MeshProbe::Up { peers: vec![PeerSeen { public_key: PEER.to_owned(), latest_handshake: at }] }
}

/// Caddy's admin API as install reloads through it: every `POST /load` body is kept, and it
/// answers 200, or 400 with Caddy's error shape while `refuse` is set.
struct FakeAdmin {
    addr: String,
    loads: std::sync::Arc<Mutex<Vec<String>>>,
    refuse: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl FakeAdmin {
    fn start() -> Self {
        use std::io::{BufRead, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let loads = std::sync::Arc::new(Mutex::new(Vec::new()));
        let refuse = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (l, r) = (loads.clone(), refuse.clone());
        // Serves until the test process ends: one thread, one connection at a time.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = std::io::BufReader::new(&stream);
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                l.lock().unwrap().push(String::from_utf8_lossy(&body).into_owned());
                let answer = if r.load(std::sync::atomic::Ordering::SeqCst) {
                    let error = r#"{"error":"adapting config using caddyfile: bad duration"}"#;
                    format!(
                        "HTTP/1.1 400 Bad Request\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{error}",
                        error.len()
                    )
                } else {
                    "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_owned()
                };
                let _ = (&stream).write_all(answer.as_bytes());
            }
        });
        Self { addr, loads, refuse }
    }

    fn loads(&self) -> Vec<String> {
        self.loads.lock().unwrap().clone()
    }
}

const CHANNEL_VARS: &[(&str, &str)] = &[
    ("PARTNER_ID", "acme"),
    ("PARTNER_DOMAIN", "edge.example.com"),
    ("REALITY_SERVER", "203.0.113.7"),
    ("REALITY_PORT", "443"),
    ("REALITY_PUBLIC_KEY", "Xk7tq3Oa0Rr8Dy6oYqJ3OazkJm9q6oHgqRr5Yb4a1kE"),
    ("REALITY_SERVER_NAME", "www.example.com"),
    ("REALITY_SHORT_ID", "0123abcd"),
    ("HYSTERIA2_SERVER", "hy2.example.com"),
    ("HYSTERIA2_PORT", "443"),
    ("HYSTERIA2_AUTH", "hy2-auth"),
    ("HYSTERIA2_OBFS", "hy2-obfs"),
    ("NAIVE_SERVER", "naive.example.com"),
    ("NAIVE_USERNAME", "user"),
    ("NAIVE_PASSWORD", "pass"),
    ("AWG_ADDRESS", "198.19.0.2/24"),
    ("AWG_PEER_PUBLIC_KEY", PEER),
    ("AWG_PEER_ENDPOINT", "mesh.example.com:51820"),
    ("AWG_ALLOWED_IPS", "198.19.0.0/24"),
];

/// The partner edge on free loopback ports: install checks that the ports it publishes are
/// free on this host, whatever else runs here.
fn host() -> Host {
    let ports = PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let root = tempfile::tempdir().unwrap();
    let mut bundle = StackBundle::partner_edge();
    let admin = FakeAdmin::start();
    bundle.stack.variables.insert("CADDY_ADMIN".to_owned(), admin.addr.clone());
    for key in ["XRAY_HTTP_PORT", "HYSTERIA2_HTTP_PORT", "NAIVE_HTTP_PORT", "NAIVE_SOCKS_PORT"] {
        bundle.stack.variables.insert(key.to_owned(), free_port().to_string());
    }
    without_host_probes(&mut bundle.stack);
    for port in bundle.stack.services.iter_mut().flat_map(|s| &mut s.ports).filter(|p| p.protocol == "udp") {
        port.host_ip = Some("127.0.0.1".to_owned());
        port.host = free_port().to_string();
    }
    let mut node = Node::new(bundle, Some(root.path())).unwrap();
    // The mesh comes up and its peer answers at once, unless a test says otherwise.
    let mesh =
        Arc::new(FakeMesh { after_up: Some(shook_hands(Some(crate::install::now_secs()))), ..FakeMesh::default() });
    node.mesh = mesh.clone();
    let images: Vec<&str> = node.stack().services.iter().map(|s| s.image.as_str()).collect();
    let engine = FakeEngine::with_images(&images);
    Host { _ports: ports, _root: root, node, engine, mesh, admin }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap()
}

impl Host {
    fn variable(&self, key: &str) -> &str {
        &self.node.stack().variables[key]
    }
}

/// A loopback webhook that accepts every post and keeps its body: the alert transport of
/// these installs (the real transports are proven in tests/it against the test chat server).
struct Sink {
    url: String,
    bodies: Arc<Mutex<Vec<String>>>,
}

fn sink() -> &'static Sink {
    static SINK: OnceLock<Sink> = OnceLock::new();
    SINK.get_or_init(|| {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let kept = bodies.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                if let Some(body) = read_post(stream) {
                    kept.lock().unwrap_or_else(|e| e.into_inner()).push(body);
                }
            }
        });
        Sink { url, bodies }
    })
}

/// Reads one request and answers 200; returns its body.
fn read_post(mut stream: std::net::TcpStream) -> Option<String> {
    use std::io::{BufRead, BufReader, Read, Write};
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").ok()?;
    Some(String::from_utf8_lossy(&body).into_owned())
}

fn delivered_with(needle: &str) -> usize {
    sink().bodies.lock().unwrap_or_else(|e| e.into_inner()).iter().filter(|b| b.contains(needle)).count()
}

fn request() -> InstallRequest {
    let mut request = InstallRequest {
        pool_wait: Duration::ZERO,
        health_timeout: Duration::from_secs(5),
        alerts: AlertChanges { webhook: Change::Set(sink().url.clone()), ..AlertChanges::default() },
        ..InstallRequest::default()
    };
    request.variables.flags = CHANNEL_VARS.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    request
}

fn run<T>(future: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(future)
}

fn status(node: &Node) -> String {
    ChannelsStatus::load(&node.paths.channels_status()).unwrap().to_string()
}

fn record(node: &Node) -> InstallRecord {
    InstallRecord::load_optional(&node.paths.install_env()).unwrap().unwrap()
}

fn identity(node: &Node) -> Vec<(String, Option<Vec<u8>>)> {
    identity_files(node.stack())
        .into_iter()
        .map(|f| (f.clone(), std::fs::read(node.paths.config_file(&f)).ok()))
        .collect()
}

#[test]
fn a_fresh_install_deploys_every_configured_channel_and_records_it() {
    let h = host();
    let report = run(install(&h.engine, &h.node, &request(), &quiet)).unwrap();
    assert_eq!(report.status, Outcome::Success, "{}", report.message);
    assert_eq!(status(&h.node), "xray=active\nawg=active\nhysteria2=active\nnaive=active\n");
    let names = h.engine.containers();
    for s in &h.node.stack().services {
        assert!(names.contains(&s.container), "{} missing from {names:?}", s.container);
        assert_eq!(h.engine.status_of(&s.container), Some(ContainerStatus::Running));
    }
    let record = record(&h.node);
    let pool: Vec<&str> = record.pool.as_ref().unwrap().iter().map(|m| m.channel.as_str()).collect();
    assert_eq!(pool, ["xray", "hysteria2", "naive"]);
    assert_eq!(record.partner_id.as_deref(), Some("acme"));
    assert_eq!(report.identity_created, ["EDGE_REALITY", "AWG", "EDGE_TOKEN", "TURN_SECRET", "SPEC_HASH_KEY"]);
    let xray = format!("127.0.0.1:{}/tcp", h.variable("XRAY_HTTP_PORT"));
    assert!(report.listening.contains(&xray), "{:?}", report.listening);
}

#[test]
fn a_rerun_changes_nothing_and_needs_no_flags_for_the_install_parameters() {
    let h = host();
    run(install(&h.engine, &h.node, &request(), &quiet)).unwrap();
    let ids = h.engine.ids();
    let creates = h.engine.calls_of("create");
    let mut again = request();
    again.variables.flags.retain(|(k, _)| !k.starts_with("PARTNER_"));
    let report = run(install(&h.engine, &h.node, &again, &quiet)).unwrap();
    assert_eq!(report.status, Outcome::Success, "{}", report.message);
    assert!(report.plan.is_empty(), "{:?}", report.plan);
    assert_eq!(h.engine.ids(), ids);
    assert_eq!(h.engine.calls_of("create"), creates);
}

#[test]
fn a_config_only_change_reloads_the_front_proxy_in_place_and_a_refused_one_is_rolled_back() {
    use edge_channels::ActionKind;
    let h = host();
    run(install(&h.engine, &h.node, &request(), &quiet)).unwrap();
    let caddyfile = h.node.paths.config_file("Caddyfile");
    let ids = h.engine.ids();
    assert!(h.admin.loads().is_empty(), "a created Caddy reads its file at start");
    assert!(record(&h.node).configs.contains_key("caddy"), "the config it runs is recorded");

    // Only the Caddyfile changes: Caddy is kept and handed the new text.
    let mut changed = request();
    changed.variables.flags.push(("CADDY_LB_TRY_INTERVAL".to_owned(), "200ms".to_owned()));
    let dry = run(install(&h.engine, &h.node, &InstallRequest { dry_run: true, ..changed.clone() }, &quiet)).unwrap();
    let planned: Vec<(ActionKind, &str)> =
        dry.plan.iter().filter(|e| e.action != ActionKind::Keep).map(|e| (e.action, e.container.as_str())).collect();
    assert_eq!(planned, [(ActionKind::Reload, "oxpulse-partner-caddy")]);
    let report = run(install(&h.engine, &h.node, &changed, &quiet)).unwrap();
    assert_eq!(report.status, Outcome::Success, "{}", report.message);
    let done: Vec<(ActionKind, &str)> = report.plan.iter().map(|e| (e.action, e.container.as_str())).collect();
    assert_eq!(done, [(ActionKind::Reload, "oxpulse-partner-caddy")]);
    assert_eq!(h.engine.ids(), ids, "no container was recreated");
    let on_disk = std::fs::read_to_string(&caddyfile).unwrap();
    assert!(on_disk.contains("lb_try_interval 200ms"));
    assert_eq!(h.admin.loads(), std::slice::from_ref(&on_disk), "the text on disk went to the admin API");

    // The same again: nothing to hand over.
    let report = run(install(&h.engine, &h.node, &changed, &quiet)).unwrap();
    assert!(report.plan.is_empty(), "{:?}", report.plan);
    assert_eq!(h.admin.loads().len(), 1);

    // Caddy refuses the next one: it keeps running the old config, which is back on disk.
    h.admin.refuse.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut refused = request();
    refused.variables.flags.push(("CADDY_LB_TRY_INTERVAL".to_owned(), "300ms".to_owned()));
    let err = run(install(&h.engine, &h.node, &refused, &quiet)).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "caddy did not take its new Caddyfile through caddy-admin at {}: caddy refused it (HTTP 400): adapting config \
             using caddyfile: bad duration; it keeps running its previous config, which is back in {}",
            h.admin.addr,
            caddyfile.display()
        )
    );
    assert!(h.admin.loads()[1].contains("lb_try_interval 300ms"), "the refused text was sent");
    assert_eq!(std::fs::read_to_string(&caddyfile).unwrap(), on_disk, "the file on disk is restored");
    assert_eq!(h.engine.ids(), ids);

    // Any other change to Caddy's spec still recreates it.
    h.admin.refuse.store(false, std::sync::atomic::Ordering::SeqCst);
    let mut image = request();
    image.images.insert("caddy".to_owned(), "caddy:2.12".to_owned());
    h.engine.add_image("caddy:2.12");
    let report = run(install(&h.engine, &h.node, &image, &quiet)).unwrap();
    let done: Vec<(ActionKind, &str)> = report.plan.iter().map(|e| (e.action, e.container.as_str())).collect();
    assert_eq!(done, [(ActionKind::Recreate, "oxpulse-partner-caddy")]);
}

#[test]
fn an_optional_channel_failing_at_runtime_leaves_the_pool_and_degrades() {
    let h = host();
    h.engine.make_unhealthy("oxpulse-partner-naive", "HTTP 503");
    let report = run(install(&h.engine, &h.node, &request(), &quiet)).unwrap();
    assert_eq!(report.status, Outcome::Degraded, "{}", report.message);
    assert!(report.message.contains("failed and out of the pool: naive"), "{}", report.message);
    assert_eq!(status(&h.node), "xray=active\nawg=active\nhysteria2=active\nnaive=failed_at_runtime\n");
    let pool: Vec<String> = record(&h.node).pool.unwrap().into_iter().map(|m| m.channel).collect();
    assert_eq!(pool, ["xray", "hysteria2"]);
    let caddyfile = std::fs::read_to_string(h.node.paths.config_file("Caddyfile")).unwrap();
    let naive = format!("127.0.0.1:{}", h.variable("NAIVE_HTTP_PORT"));
    assert!(!caddyfile.contains(&naive), "naive's upstream left the Caddyfile");
    assert!(caddyfile.contains(&format!("127.0.0.1:{}", h.variable("XRAY_HTTP_PORT"))));
    assert_eq!(h.engine.status_of("oxpulse-partner-caddy"), Some(ContainerStatus::Running));
}

#[test]
fn a_required_channel_failing_fails_the_install() {
    let h = host();
    h.engine.make_unhealthy("oxpulse-partner-xray", "HTTP 500");
    let report = run(install(&h.engine, &h.node, &request(), &quiet)).unwrap();
    assert_eq!(report.status, Outcome::Failure);
    assert!(
        report.message.starts_with("install failed: required channel xray is failed_at_runtime"),
        "{}",
        report.message
    );
}

#[test]
fn a_dry_run_changes_nothing() {
    let h = host();
    let report = run(install(&h.engine, &h.node, &InstallRequest { dry_run: true, ..request() }, &quiet)).unwrap();
    assert_eq!(report.status, Outcome::DryRun);
    assert!(!report.plan.is_empty());
    assert!(h.engine.containers().is_empty());
    assert!(!h.node.paths.config_dir().exists());
}

#[test]
fn uninstall_then_restore_keeps_the_identity_byte_identical() {
    let h = host();
    run(install(&h.engine, &h.node, &request(), &quiet)).unwrap();
    let before = identity(&h.node);
    let removed = run(crate::uninstall(&h.engine, &h.node, &UninstallRequest::default())).unwrap();
    assert!(h.engine.containers().is_empty());
    assert!(identity(&h.node).iter().all(|(_, b)| b.is_none()));
    let backup = removed.backup.unwrap();
    let restore = InstallRequest { restore_from: Some(backup), ..request() };
    let report = run(install(&h.engine, &h.node, &restore, &quiet)).unwrap();
    assert_eq!(report.status, Outcome::Success, "{}", report.message);
    assert!(report.identity_created.is_empty(), "{:?}", report.identity_created);
    assert_eq!(identity(&h.node), before);
}

#[test]
fn token_and_tunnel_are_kept_the_token_0600_and_never_shown() {
    use std::os::unix::fs::PermissionsExt;
    let h = host();
    let token = "ptkn_0123456789abcdef";
    let first =
        InstallRequest { token: Some(RegistrationToken::new(token)), tunnel: Some("tun-eu-1".into()), ..request() };
    assert!(!format!("{first:?}").contains(token));
    let report = run(install(&h.engine, &h.node, &first, &quiet)).unwrap();
    assert_eq!(report.status, Outcome::Success, "{}", report.message);
    assert!(!format!("{report:?}").contains(token));
    // The given token is the EDGE_TOKEN secret: not generated.
    assert!(!report.identity_created.contains(&"EDGE_TOKEN".to_owned()), "{:?}", report.identity_created);
    let file = h.node.paths.config_file("token");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), format!("{token}\n"));
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    let env = std::fs::read_to_string(h.node.paths.install_env()).unwrap();
    assert!(env.contains("TUNNEL=tun-eu-1\n"), "{env}");
    assert!(!env.contains(token), "{env}");
    assert_eq!(record(&h.node).pool.unwrap().len(), 3);

    // A re-run without the flags keeps both; another token is refused without showing either.
    run(install(&h.engine, &h.node, &request(), &quiet)).unwrap();
    assert_eq!(record(&h.node).tunnel.as_deref(), Some("tun-eu-1"));
    let other = InstallRequest { token: Some(RegistrationToken::new("ptkn_other")), ..request() };
    let err = run(install(&h.engine, &h.node, &other, &quiet)).unwrap_err().to_string();
    assert!(err.contains("already holds another token") && !err.contains("ptkn_"), "{err}");
    let bad = InstallRequest { token: Some(RegistrationToken::new("ptkn with space")), ..request() };
    let err = run(install(&h.engine, &h.node, &bad, &quiet)).unwrap_err().to_string();
    assert!(err.starts_with("--token: it must be") && !err.contains("ptkn"), "{err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), format!("{token}\n"));
}

#[test]
fn install_writes_the_runbooks_healthcheck_wrapper_and_uninstall_removes_it() {
    use std::os::unix::fs::PermissionsExt;
    let h = host();
    let bin = Path::new("/opt/edge it/edge");
    let first = InstallRequest { edge_bin: Some(bin.to_owned()), ..request() };
    run(install(&h.engine, &h.node, &first, &quiet)).unwrap();
    let script = h.node.paths.root().join("usr/local/sbin/oxpulse-partner-edge-healthcheck");
    assert_eq!(h.node.paths.healthcheck_script(), script);
    let text = std::fs::read_to_string(&script).unwrap();
    let root = h.node.paths.root().display().to_string();
    assert!(text.starts_with("#!/bin/sh\n"), "{text}");
    assert!(text.ends_with(&format!("exec '/opt/edge it/edge' --root '{root}' healthcheck \"$@\"\n")), "{text}");
    assert_eq!(std::fs::metadata(&script).unwrap().permissions().mode() & 0o777, 0o755);
    run(crate::uninstall(&h.engine, &h.node, &UninstallRequest::default())).unwrap();
    assert!(!script.exists());
}

#[test]
fn uninstall_writes_the_legacy_backup_layout_and_install_restores_it() {
    let h = host();
    let first = InstallRequest { tunnel: Some("tun-eu-1".into()), ..request() };
    run(install(&h.engine, &h.node, &first, &quiet)).unwrap();
    let before = identity(&h.node);
    let root = tempfile::tempdir().unwrap();
    let layout = BackupLayout::Legacy(root.path().to_owned());
    let removed =
        run(crate::uninstall(&h.engine, &h.node, &UninstallRequest { backup_layout: layout, ..Default::default() }))
            .unwrap();
    let backup = removed.backup.unwrap();
    let name = backup.file_name().unwrap().to_str().unwrap().to_owned();
    assert!(name.strip_prefix("oxpulse-backup-").is_some_and(|e| e.parse::<u64>().is_ok()), "{name}");
    assert!(backup.join("reality.priv").is_file() && backup.join("token").is_file());
    let env = backup.join("var-lib-oxpulse-partner-edge/install.env");
    assert!(std::fs::read_to_string(&env).unwrap().contains("TUNNEL=tun-eu-1"));
    assert!(!backup.join("install.env").exists());

    let report =
        run(install(&h.engine, &h.node, &InstallRequest { restore_from: Some(backup), ..request() }, &quiet)).unwrap();
    assert_eq!(report.status, Outcome::Success, "{}", report.message);
    assert!(report.identity_created.is_empty(), "{:?}", report.identity_created);
    assert_eq!(identity(&h.node), before);
    assert_eq!(record(&h.node).tunnel.as_deref(), Some("tun-eu-1"));
}

/// Each container's `edge.spec-hash` label.
fn spec_hashes(engine: &FakeEngine) -> BTreeMap<String, String> {
    run(async {
        let mut out = BTreeMap::new();
        for name in engine.containers() {
            let c = engine.inspect_container(&name).await.unwrap().unwrap();
            out.insert(name, c.labels[LABEL_SPEC_HASH].clone());
        }
        out
    })
}

#[test]
fn the_spec_hash_key_is_created_once_0600_and_keys_the_labels() {
    use std::os::unix::fs::PermissionsExt;
    let h = host();
    run(install(&h.engine, &h.node, &request(), &quiet)).unwrap();
    let key_file = h.node.paths.config_file(SPEC_HASH_KEY_FILE);
    let key = std::fs::read(&key_file).unwrap();
    assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(identity_files(h.node.stack()).contains(&SPEC_HASH_KEY_FILE.to_owned()));

    let hashes = spec_hashes(&h.engine);
    assert_eq!(hashes.len(), h.node.stack().services.len());

    // A re-run keeps the key and so every container.
    let report = run(install(&h.engine, &h.node, &request(), &quiet)).unwrap();
    assert!(report.plan.is_empty() && report.identity_created.is_empty(), "{:?}", report.plan);
    assert_eq!(std::fs::read(&key_file).unwrap(), key);
    assert_eq!(spec_hashes(&h.engine), hashes);

    // A corrupt key stops install before anything changes; it is not replaced.
    let ids = h.engine.ids();
    std::fs::write(&key_file, "not a key\n").unwrap();
    let err = run(install(&h.engine, &h.node, &request(), &quiet)).unwrap_err().to_string();
    assert!(err.contains("spec-hash.key is corrupt"), "{err}");
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), "not a key\n");
    assert_eq!(h.engine.ids(), ids);

    // The labels follow the key on disk: under another key every container is recreated, once.
    std::fs::write(&key_file, format!("{}\n", "ab".repeat(32))).unwrap();
    let report = run(install(&h.engine, &h.node, &request(), &quiet)).unwrap();
    assert_eq!(report.plan.len(), ids.len(), "{:?}", report.plan);
    assert!(report.plan.iter().all(|e| e.reason.as_deref() == Some("spec changed")), "{:?}", report.plan);
    let relabelled = spec_hashes(&h.engine);
    assert!(relabelled.iter().all(|(name, hash)| hashes[name] != *hash), "{relabelled:?}");
    let report = run(install(&h.engine, &h.node, &request(), &quiet)).unwrap();
    assert!(report.plan.is_empty(), "{:?}", report.plan);
}

#[test]
fn a_reinstall_from_a_backup_recreates_no_container() {
    let h = host();
    run(install(&h.engine, &h.node, &request(), &quiet)).unwrap();
    let hashes = spec_hashes(&h.engine);

    // Uninstall, then install from its backup: the containers come back with the same labels
    // (same key, same specs), and the next run recreates nothing.
    let removed = run(crate::uninstall(&h.engine, &h.node, &UninstallRequest::default())).unwrap();
    assert!(!h.node.paths.config_file(SPEC_HASH_KEY_FILE).exists(), "uninstall took the key with the identity");
    let backup = removed.backup.unwrap();
    assert!(backup.join(SPEC_HASH_KEY_FILE).is_file(), "the backup holds the key");
    let restore = InstallRequest { restore_from: Some(backup.clone()), ..request() };
    let report = run(install(&h.engine, &h.node, &restore, &quiet)).unwrap();
    assert_eq!(report.status, Outcome::Success, "{}", report.message);
    assert!(report.identity_created.is_empty(), "{:?}", report.identity_created);
    assert_eq!(spec_hashes(&h.engine), hashes, "the restored key labels the containers as before");
    let ids = h.engine.ids();
    let creates = h.engine.calls_of("create");
    let report = run(install(&h.engine, &h.node, &request(), &quiet)).unwrap();
    assert!(report.plan.is_empty(), "{:?}", report.plan);
    assert_eq!((h.engine.ids(), h.engine.calls_of("create")), (ids.clone(), creates));

    // A host that lost its config dir but kept its containers: restoring the backup keeps
    // every one of them (a new key would have recreated them all).
    std::fs::remove_dir_all(h.node.paths.config_dir()).unwrap();
    let report =
        run(install(&h.engine, &h.node, &InstallRequest { restore_from: Some(backup), ..request() }, &quiet)).unwrap();
    assert_eq!(report.status, Outcome::Success, "{}", report.message);
    assert!(report.plan.is_empty(), "nothing recreated: {:?}", report.plan);
    assert_eq!((h.engine.ids(), h.engine.calls_of("create")), (ids, creates));
}

#[test]
fn stop_records_the_stop_and_start_brings_everything_back() {
    let h = host();
    run(install(&h.engine, &h.node, &request(), &quiet)).unwrap();
    let all = LifecycleRequest::default();
    let stopped = run(crate::stop(&h.engine, &h.node, &all)).unwrap();
    assert_eq!(stopped.status, Outcome::Success, "{}", stopped.message);
    for s in &h.node.stack().services {
        assert_eq!(h.engine.status_of(&s.container), Some(ContainerStatus::Exited), "{}", s.container);
    }
    assert_eq!(record(&h.node).stopped.len(), h.node.stack().services.len());

    let one = LifecycleRequest { services: vec!["oxpulse-partner-naive".into()], ..LifecycleRequest::default() };
    let started = run(crate::start(&h.engine, &h.node, &one, &quiet)).unwrap();
    assert_eq!(started.status, Outcome::Success, "{}", started.message);
    assert_eq!(h.engine.status_of("oxpulse-partner-naive"), Some(ContainerStatus::Running));
    assert_eq!(h.engine.status_of("oxpulse-partner-xray"), Some(ContainerStatus::Exited));
    assert!(!record(&h.node).stopped.contains("naive"));

    let started = run(crate::start(&h.engine, &h.node, &all, &quiet)).unwrap();
    assert_eq!(started.status, Outcome::Success, "{}", started.message);
    assert!(record(&h.node).stopped.is_empty());
    let restarted = run(crate::restart(&h.engine, &h.node, &all, &quiet)).unwrap();
    assert_eq!(restarted.status, Outcome::Success, "{}", restarted.message);
    assert!(h.node.stack().services.iter().all(|s| h.engine.status_of(&s.container) == Some(ContainerStatus::Running)));
}

#[test]
fn lifecycle_verbs_name_what_is_wrong() {
    let h = host();
    let err = run(crate::stop(&h.engine, &h.node, &LifecycleRequest::default())).unwrap_err().to_string();
    assert!(err.contains("is not installed here") && err.contains("run edge install first"), "{err}");
    run(install(&h.engine, &h.node, &request(), &quiet)).unwrap();
    let web = LifecycleRequest { services: vec!["web".into()], ..LifecycleRequest::default() };
    let err = run(crate::stop(&h.engine, &h.node, &web)).unwrap_err();
    assert!(err.is_input());
    assert_eq!(err.to_string(), "the stack has no service \"web\" (it has caddy, xray, hysteria2, naive, coturn, sfu)");
}

#[test]
fn a_corrupt_install_record_stops_install_before_anything_changes() {
    let h = host();
    std::fs::create_dir_all(h.node.paths.state_dir()).unwrap();
    std::fs::write(h.node.paths.install_env(), "POOL=garbage\n").unwrap();
    let err = run(install(&h.engine, &h.node, &request(), &quiet)).unwrap_err().to_string();
    assert!(err.contains("install.env: line 1: POOL"), "{err}");
    assert!(h.engine.containers().is_empty());
    assert!(!Path::new(&h.node.paths.channels_status()).exists());
}

#[test]
fn an_image_override_must_name_a_service() {
    let h = host();
    let mut bad = request();
    bad.images.insert("web".into(), "nginx".into());
    let err = run(install(&h.engine, &h.node, &bad, &quiet)).unwrap_err();
    assert!(err.is_input());
    assert!(err.to_string().starts_with("--images \"web=nginx\": the stack has no service \"web\""), "{err}");
}

#[test]
fn channel_states_survive_install_racing_watchdog_ticks() {
    use std::sync::atomic::{AtomicBool, Ordering};

    use edge_core::{PoolMember, UpstreamHealth};
    let h = host();
    run(install(&h.engine, &h.node, &request(), &quiet)).unwrap();
    let naive: Vec<PoolMember> = record(&h.node).pool.unwrap().into_iter().filter(|m| m.channel == "naive").collect();
    // Installs alternate hysteria2 between configured and not while ticks flip naive: a tick that wrote back a file it read before an install would bring back a
    // stale hysteria2 state.
    let without_hysteria2 = || {
        let mut r = request();
        r.variables.flags.retain(|(k, _)| !k.starts_with("HYSTERIA2_"));
        r
    };
    let done = AtomicBool::new(false);
    let mut lost = Vec::new();
    std::thread::scope(|s| {
        let (paths, naive, done) = (&h.node.paths, &naive, &done);
        s.spawn(move || {
            // naive flaps, so every tick writes the file.
            let mut health = UpstreamHealth::Unhealthy;
            while !done.load(Ordering::Relaxed) {
                crate::channels::apply(paths, naive, |_| Some(health), |_| None).unwrap();
                health = match health {
                    UpstreamHealth::Healthy => UpstreamHealth::Unhealthy,
                    UpstreamHealth::Unhealthy => UpstreamHealth::Healthy,
                };
            }
        });
        // Stops the ticks however this thread leaves the scope.
        struct Stop<'a>(&'a AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let _stop = Stop(done);
        for i in 0..6 {
            let r = if i % 2 == 0 { request() } else { without_hysteria2() };
            run(install(&h.engine, &h.node, &r, &quiet)).unwrap();
            let expected = if i % 2 == 0 { "hysteria2=active\n" } else { "hysteria2=skipped\n" };
            let now = status(&h.node);
            if !now.contains(expected) {
                lost.push(format!("install {i}: {now:?}"));
            }
        }
    });
    assert!(lost.is_empty(), "installs' states lost to ticks: {lost:?}");
    crate::channels::apply(&h.node.paths, &naive, |_| Some(UpstreamHealth::Unhealthy), |_| None).unwrap();
    assert_eq!(status(&h.node), "xray=active\nawg=active\nhysteria2=skipped\nnaive=failed_at_runtime\n");
}

#[test]
fn install_keeps_the_alert_settings_and_says_which_transport_delivered() {
    use std::os::unix::fs::PermissionsExt;
    let h = host();
    let report = run(install(&h.engine, &h.node, &request(), &quiet)).unwrap();
    assert_eq!(report.status, Outcome::Success, "{}", report.message);
    assert_eq!(report.alerts.delivered_by.as_deref(), Some("webhook"));
    let file = h.node.paths.watchdog_env();
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text, format!("OXPULSE_TG_WEBHOOK={}\n", sink().url));
    let sent = report.alerts.message.clone().unwrap();
    assert!(sent.contains(" installed oxpulse-partner-edge: active xray, awg, hysteria2, naive"), "{sent}");
    // The sink is shared by every test of this binary: the same text may come from another.
    assert!(delivered_with(&sent) >= 1, "the webhook never got {sent:?}");

    // A re-install without alert flags keeps the file; a flag replaces its key only.
    let keep = InstallRequest { alerts: AlertChanges::default(), ..request() };
    let report = run(install(&h.engine, &h.node, &keep, &quiet)).unwrap();
    assert_eq!((report.status, report.alerts.changed.len()), (Outcome::Success, 0), "{}", report.message);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
    let interval = InstallRequest {
        alerts: AlertChanges { min_interval: Change::Set(60), ..AlertChanges::default() },
        ..request()
    };
    let report = run(install(&h.engine, &h.node, &interval, &quiet)).unwrap();
    assert_eq!(report.alerts.changed, ["OXPULSE_TG_MIN_INTERVAL"]);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), format!("{text}OXPULSE_TG_MIN_INTERVAL=60\n"));

    let seen = run(crate::observe(&h.node, Ok(&h.engine), None)).unwrap();
    let check = crate::healthcheck(&h.node, &seen).checks.pop().unwrap();
    assert_eq!((check.name.as_str(), check.ok), ("alerts can be delivered", true), "{}", check.detail);
}

#[test]
fn without_an_alert_transport_install_is_degraded_and_the_healthcheck_fails() {
    let h = host();
    let none = InstallRequest { alerts: AlertChanges::default(), ..request() };
    let report = run(install(&h.engine, &h.node, &none, &quiet)).unwrap();
    assert_eq!(report.status, Outcome::Degraded, "{}", report.message);
    assert!(report.message.contains("no alert transport is configured"), "{}", report.message);
    assert!(h.node.paths.watchdog_env().is_file(), "an empty watchdog.env is written for the operator");
    let seen = run(crate::observe(&h.node, Ok(&h.engine), None)).unwrap();
    let health = crate::healthcheck(&h.node, &seen);
    let last = health.checks.last().unwrap();
    assert_eq!((last.number, last.name.as_str(), last.ok), (health.checks.len(), "alerts can be delivered", false));
    assert!(last.detail.contains("no alert transport"), "{}", last.detail);
}

#[test]
fn an_undelivered_install_alert_degrades_and_waits_in_the_outbox() {
    let h = host();
    let refused = format!("http://127.0.0.1:{}/hook", free_port());
    let request = InstallRequest {
        alerts: AlertChanges { webhook: Change::Set(refused), ..AlertChanges::default() },
        ..request()
    };
    let report = run(install(&h.engine, &h.node, &request, &quiet)).unwrap();
    assert_eq!(report.status, Outcome::Degraded, "{}", report.message);
    assert!(report.alerts.queued && report.alerts.delivered_by.is_none(), "{:?}", report.alerts);
    assert!(report.message.contains("waits in the outbox"), "{}", report.message);
    let settings = AlertSettings::load_optional(&h.node.paths.watchdog_env()).unwrap().unwrap();
    let outbox = std::fs::read_to_string(settings.config(&h.node.paths).unwrap().outbox_file()).unwrap();
    assert!(outbox.contains("installed"), "{outbox}");
}

#[test]
fn a_bad_alert_setting_stops_install_before_anything_changes() {
    let h = host();
    let request = InstallRequest {
        alerts: AlertChanges { webhook: Change::Set("ftp://u:s3cr3t@h/x".into()), ..AlertChanges::default() },
        ..request()
    };
    let err = run(install(&h.engine, &h.node, &request, &quiet)).unwrap_err();
    assert!(err.is_input(), "{err}");
    assert!(err.to_string().starts_with("invalid OXPULSE_TG_WEBHOOK=") && !err.to_string().contains("s3cr3t"), "{err}");
    assert!(h.engine.containers().is_empty() && !h.node.paths.watchdog_env().exists());
}

/// The partner edge on an engine with no image, whose registries offer every one.
fn fresh_host() -> Host {
    let mut h = host();
    h.engine = FakeEngine::default();
    for s in &h.node.stack().services {
        h.engine.publish(&s.image);
    }
    h
}

fn images_of(node: &Node) -> Vec<String> {
    let mut images: Vec<String> = node.stack().services.iter().map(|s| s.image.clone()).collect();
    images.sort();
    images.dedup();
    images
}

fn pulled_sorted(engine: &FakeEngine) -> Vec<String> {
    let mut pulled = engine.pulled();
    pulled.sort();
    pulled
}

#[test]
fn missing_images_are_pulled_then_deployed() {
    let h = fresh_host();
    let report = run(install(&h.engine, &h.node, &request(), &quiet)).unwrap();
    assert_eq!(report.status, Outcome::Success, "{}", report.message);
    assert_eq!(pulled_sorted(&h.engine), images_of(&h.node));
    let xray = report.pulls.iter().find(|p| p.image.starts_with("ghcr.io/")).unwrap();
    assert_eq!((xray.registry.as_str(), xray.present, xray.size), ("ghcr.io", false, Some(1024)));
    assert_eq!(xray.services, ["xray"]);
    assert_eq!(h.engine.status_of("oxpulse-partner-caddy"), Some(ContainerStatus::Running));

    // Present now: a re-run with the default policy pulls nothing.
    let again = run(install(&h.engine, &h.node, &request(), &quiet)).unwrap();
    assert!(again.pulls.is_empty(), "{:?}", again.pulls);
    assert_eq!(h.engine.pulled().len(), images_of(&h.node).len());
}

#[test]
fn only_the_missing_image_is_pulled_by_default() {
    let h = host();
    let caddy = h.node.stack().service("caddy").unwrap().image.clone();
    h.engine.remove_image(&caddy);
    h.engine.publish(&caddy);
    let report = run(install(&h.engine, &h.node, &request(), &quiet)).unwrap();
    assert_eq!(report.status, Outcome::Success, "{}", report.message);
    assert_eq!(h.engine.pulled(), [caddy]);
}

#[test]
fn always_pulls_every_image_and_a_newer_one_recreates_its_containers() {
    let h = host();
    run(install(&h.engine, &h.node, &request(), &quiet)).unwrap();
    let ids = h.engine.ids();
    for image in images_of(&h.node) {
        h.engine.publish(&image);
    }
    let always = InstallRequest { pull: PullPolicy::Always, ..request() };
    let report = run(install(&h.engine, &h.node, &always, &quiet)).unwrap();
    assert_eq!(report.status, Outcome::Success, "{}", report.message);
    assert_eq!(pulled_sorted(&h.engine), images_of(&h.node));
    assert!(report.pulls.iter().all(|p| p.present));
    // Every pulled id differs from the local one, so every container is made anew.
    assert!(h.engine.ids().iter().all(|(name, id)| ids.get(name) != Some(id)), "{:?}", report.plan);
}

#[test]
fn never_pulls_nothing_and_a_missing_image_is_an_error() {
    let h = fresh_host();
    let never = InstallRequest { pull: PullPolicy::Never, ..request() };
    let err = run(install(&h.engine, &h.node, &never, &quiet)).unwrap_err().to_string();
    assert!(err.contains("is not on the docker engine"), "{err}");
    assert!(h.engine.pulled().is_empty());
    assert!(h.engine.containers().is_empty());
}

#[test]
fn a_failed_pull_stops_the_install_before_any_container_is_touched() {
    let h = host();
    run(install(&h.engine, &h.node, &request(), &quiet)).unwrap();
    let (ids, before) = (h.engine.ids(), status(&h.node));
    let calls = |e: &FakeEngine| ["create", "start", "stop", "remove"].map(|op| e.calls_of(op));
    let touched = calls(&h.engine);
    for image in images_of(&h.node) {
        h.engine.publish(&image);
    }
    let caddy = h.node.stack().service("caddy").unwrap().image.clone();
    h.engine.fail_pull(&caddy, 500, "unauthorized: authentication required");
    let always = InstallRequest { pull: PullPolicy::Always, ..request() };
    let err = run(install(&h.engine, &h.node, &always, &quiet)).unwrap_err().to_string();
    assert!(err.starts_with(&format!("registry docker.io wants credentials to pull {caddy}")), "{err}");
    assert_eq!(calls(&h.engine), touched, "no container was created, started, stopped or removed");
    assert_eq!(h.engine.ids(), ids);
    assert_eq!(status(&h.node), before);
}

#[test]
fn pulls_carry_the_docker_config_credentials_of_their_registry() {
    let h = fresh_host();
    let dir = tempfile::tempdir().unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode("ci:token");
    std::fs::write(dir.path().join("config.json"), format!(r#"{{"auths": {{"ghcr.io": {{"auth": "{auth}"}}}}}}"#))
        .unwrap();
    let with_config = InstallRequest { docker_config: Some(dir.path().to_owned()), ..request() };
    run(install(&h.engine, &h.node, &with_config, &quiet)).unwrap();
    let xray = &h.node.stack().service("xray").unwrap().image;
    let caddy = &h.node.stack().service("caddy").unwrap().image;
    assert_eq!(h.engine.pulled_with_credentials(xray), Some(true));
    assert_eq!(h.engine.pulled_with_credentials(caddy), Some(false));
}

#[test]
fn a_dry_run_lists_the_pulls_and_pulls_nothing() {
    let h = fresh_host();
    let report = run(install(&h.engine, &h.node, &InstallRequest { dry_run: true, ..request() }, &quiet)).unwrap();
    assert_eq!(report.status, Outcome::DryRun);
    let listed: Vec<String> = report.pulls.iter().map(|p| p.image.clone()).collect();
    assert_eq!(listed, images_of(&h.node));
    assert!(report.pulls.iter().all(|p| p.size.is_none()));
    assert!(h.engine.pulled().is_empty());
    assert!(h.engine.containers().is_empty());
}

fn with_mesh(h: Host, mesh: FakeMesh) -> Host {
    let mesh = Arc::new(mesh);
    let mut node = h.node.clone();
    node.mesh = mesh.clone();
    Host { node, mesh, ..h }
}

#[test]
fn the_mesh_is_brought_up_from_its_rendered_config_and_active_once_it_shook_hands() {
    let h = host();
    let report = run(install(&h.engine, &h.node, &request(), &quiet)).unwrap();
    assert_eq!(report.status, Outcome::Success, "{}", report.message);
    let up = h.mesh.brought_up.lock().unwrap().clone();
    assert_eq!(up, [("awg0".to_owned(), h.node.paths.config_file("awg0.conf"))]);
    let config = std::fs::read_to_string(h.node.paths.config_file("awg0.conf")).unwrap();
    assert!(config.contains(&format!("PublicKey = {PEER}")) && config.contains("Address = 198.19.0.2/24"), "{config}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(h.node.paths.config_file("awg0.conf")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn a_mesh_that_never_shakes_hands_fails_the_install_with_the_reason() {
    let h = host();
    let h = with_mesh(h, FakeMesh { after_up: Some(shook_hands(None)), ..FakeMesh::default() });
    let request = InstallRequest { mesh_wait: Duration::from_millis(300), ..request() };
    let report = run(install(&h.engine, &h.node, &request, &quiet)).unwrap();
    assert_eq!(report.status, Outcome::Failure);
    assert!(
        report.message.starts_with(
            "install failed: required channel awg is failed_at_runtime: interface awg0: no handshake yet with peer 1Zg1v1nu… after 0.3s; it runs on the host"
        ),
        "{}",
        report.message
    );
    assert_eq!(status(&h.node), "xray=active\nawg=failed_at_runtime\nhysteria2=active\nnaive=active\n");

    let h = with_mesh(h, FakeMesh { up_error: Some("wg-quick up failed: boom".into()), ..FakeMesh::default() });
    let report = run(install(&h.engine, &h.node, &request, &quiet)).unwrap();
    let awg = report.channels.iter().find(|c| c.id == "awg").unwrap();
    assert_eq!(awg.reason.as_deref(), Some("wg-quick up failed: boom"));
}

#[test]
fn a_node_without_a_mesh_yet_installs_with_awg_skipped() {
    let h = host();
    let mut request = request();
    request.variables.flags.retain(|(k, _)| !k.starts_with("AWG_"));
    let report = run(install(&h.engine, &h.node, &request, &quiet)).unwrap();
    assert_eq!(report.status, Outcome::Success, "{}", report.message);
    assert_eq!(status(&h.node), "xray=active\nawg=skipped\nhysteria2=active\nnaive=active\n");
    assert!(h.mesh.brought_up.lock().unwrap().is_empty());
    assert!(!h.node.paths.config_file("awg0.conf").exists());
    // The key pair to hand the mesh peer exists all the same.
    assert!(h.node.paths.config_file("awg-public.key").is_file());
}

#[test]
fn the_mesh_state_follows_the_host_both_ways() {
    let h = host();
    run(install(&h.engine, &h.node, &request(), &quiet)).unwrap();
    let stack = h.node.stack();
    let now = crate::install::now_secs();
    let window = Duration::from_secs(180);
    let apply = || crate::channels::apply_mesh(&h.node.paths, stack, h.mesh.as_ref(), now, window).unwrap().1;
    // Stale handshake: failed, with the evidence.
    h.mesh.set("awg0", shook_hands(Some(now - 200)));
    let changes = apply();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].reason, "interface awg0: last handshake with peer 1Zg1v1nu… 200s ago (limit 180s)");
    assert_eq!(status(&h.node), "xray=active\nawg=failed_at_runtime\nhysteria2=active\nnaive=active\n");
    // Fresh again: active.
    h.mesh.set("awg0", shook_hands(Some(now - 3)));
    let changes = apply();
    assert_eq!((changes[0].from, changes[0].to), (ChannelState::FailedAtRuntime, ChannelState::Active));
    // The interface gone: failed.
    h.mesh.set("awg0", MeshProbe::Missing);
    assert_eq!(apply()[0].reason, "interface awg0 does not exist");
    assert!(apply().is_empty(), "no change, no news");
    // A skipped mesh is left alone.
    let mut s = ChannelsStatus::load(&h.node.paths.channels_status()).unwrap();
    s.set("awg", ChannelState::Skipped);
    s.save(&h.node.paths.channels_status()).unwrap();
    h.mesh.set("awg0", shook_hands(Some(now)));
    assert!(apply().is_empty());
}

#[test]
fn status_shows_why_the_mesh_is_in_its_state() {
    let h = host();
    run(install(&h.engine, &h.node, &request(), &quiet)).unwrap();
    h.mesh.set("awg0", MeshProbe::Missing);
    let seen = run(crate::observe(&h.node, Ok(&h.engine), None)).unwrap();
    let awg = seen.channels.iter().find(|c| c.id == "awg").unwrap();
    assert_eq!(awg.reason.as_deref(), Some("interface awg0 does not exist"));
    assert!(seen.channels.iter().filter(|c| c.id != "awg").all(|c| c.reason.is_none()));
}
