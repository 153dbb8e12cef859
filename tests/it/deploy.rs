//! `edge install`, `status`, `healthcheck` and `uninstall` against the real Docker engine, on
//! the local images (static stand-in channel servers, Caddy from the current static binary).
//!
//! Each test deploys its own copy of the partner edge (`TestStack`: own stack name, container
//! names, network, volumes and loopback ports, 1 s health checks), so the tests run side by
//! side and never touch a real install or the demo. The images are built once per run and
//! reused across runs while their build context is unchanged.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use edge_tests::cli::install_args;
use edge_tests::docker::{STANDIN_UNHEALTHY_IMAGE, TestStack, docker_out, partner_edge_images, provision_local_images};

const EDGE: &str = env!("CARGO_BIN_EXE_edge-it");

const NODE_CONFIG: &str = r#"{"reality": {"server": "reality.test.invalid", "port": 443,
  "public_key": "Z4bx4ZL8Vxd1v8z0rZzV0Xh2rKpFQ0Dk7yYjv6sVYkA", "server_name": "www.example.com", "short_id": "0123abcd"}}"#;

const HY2: &[(&str, &str)] = &[
    ("HYSTERIA2_SERVER", "hy2.test.invalid"),
    ("HYSTERIA2_PORT", "443"),
    ("HYSTERIA2_AUTH", "hy2-auth-3c5d9e1f"),
    ("HYSTERIA2_OBFS", "hy2-obfs-77aa01b2"),
];

pub(crate) fn naive(password: &str) -> Vec<(&'static str, String)> {
    vec![
        ("NAIVE_SERVER", "naive.test.invalid".to_owned()),
        ("NAIVE_USERNAME", "naive-user".to_owned()),
        ("NAIVE_PASSWORD", password.to_owned()),
    ]
}

/// Runs `edge` on the test stack; the environment holds only the given credentials.
pub(crate) fn edge(stack: &TestStack, args: &[&str], env: &[(&str, String)]) -> Output {
    let mut cmd = stack.command(Path::new(EDGE));
    cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    edge_tests::cli::run_logged(cmd, args)
}

pub(crate) fn install(stack: &TestStack, extra: &[&str], env: &[(&str, String)]) -> Output {
    with_install_flags(stack, "install", extra, env)
}

/// Runs `edge VERB` (`install`, `adopt`) with the test stack's install flags.
pub(crate) fn with_install_flags(stack: &TestStack, verb: &str, extra: &[&str], env: &[(&str, String)]) -> Output {
    let node_config = stack.root().join("node-config.input.json");
    std::fs::write(&node_config, NODE_CONFIG).expect("write node config");
    let node_config = node_config.display().to_string();
    let alerts_given = env.iter().any(|(k, _)| *k == "OXPULSE_TG_WEBHOOK");
    let mut args = install_args(verb, &partner_edge_images(), extra, alerts_given);
    args.extend(
        ["--partner-id", "acme", "--domain", "edge.test.invalid", "--manual-config", &node_config].map(str::to_owned),
    );
    args.extend(["--health-timeout".to_owned(), "40s".to_owned()]);
    edge(stack, &args.iter().map(String::as_str).collect::<Vec<_>>(), env)
}

pub(crate) fn all_channels() -> Vec<(&'static str, String)> {
    let mut env: Vec<(&str, String)> = HY2.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
    env.extend(naive("naive-pass-91f2c4d8"));
    env
}

pub(crate) fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

pub(crate) fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub(crate) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Container ids of the stack, by name.
pub(crate) fn container_ids(stack: &TestStack) -> BTreeMap<String, String> {
    let text = docker_out(&[
        "ps",
        "-a",
        "--no-trunc",
        "--filter",
        &format!("label=edge.stack={}", stack.name),
        "--format",
        "{{.Names}} {{.ID}}",
    ]);
    text.lines().filter_map(|l| l.split_once(' ')).map(|(n, id)| (n.to_owned(), id.to_owned())).collect()
}

/// The `edge.spec-hash` label of each container of the stack.
fn spec_hashes(stack: &TestStack) -> BTreeMap<String, String> {
    container_ids(stack)
        .into_keys()
        .map(|name| {
            let hash = inspect(&name)["Config"]["Labels"]["edge.spec-hash"].as_str().unwrap_or_default().to_owned();
            (name, hash)
        })
        .collect()
}

pub(crate) fn inspect(name: &str) -> serde_json::Value {
    let text = docker_out(&["inspect", name]);
    let all: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    all.get(0).cloned().unwrap_or(serde_json::Value::Null)
}

pub(crate) fn paths(stack: &TestStack) -> edge_core::Paths {
    let bundle = stack.bundle().expect("stack loads");
    edge_core::Paths::new(Some(stack.root()), &bundle.stack.stack)
}

pub(crate) fn status_file(stack: &TestStack) -> String {
    let path = paths(stack).channels_status();
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn config_file(stack: &TestStack, name: &str) -> std::path::PathBuf {
    paths(stack).config_file(name)
}

/// A plain HTTP GET on loopback: status and body.
pub(crate) fn http_get(url: &str) -> std::io::Result<(u16, String)> {
    let rest = url.trim_start_matches("http://");
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut s = std::net::TcpStream::connect(authority)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let path = if path.is_empty() { "/" } else { path };
    write!(s, "GET {path} HTTP/1.1\r\nhost: {authority}\r\nconnection: close\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Ok((status, body))
}

/// The channels' health series in Caddy's metrics, once every expected one is healthy (or after 30 s).
pub(crate) fn pool_health(stack: &TestStack, expected: &[u16]) -> BTreeMap<String, edge_core::UpstreamHealth> {
    let url = format!("http://127.0.0.1:{}/metrics", stack.ports.admin);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut health =
            http_get(&url).map(|(_, body)| edge_alerts::UpstreamMetrics::parse(&body).health).unwrap_or_default();
        // The channels' members only: naive's member has its own upstream, the backend it dials.
        let p = stack.ports;
        health.retain(|u, _| [p.xray, p.hysteria2, p.naive].iter().any(|port| *u == format!("127.0.0.1:{port}")));
        let all_healthy =
            expected.iter().all(|p| health.get(&format!("127.0.0.1:{p}")) == Some(&edge_core::UpstreamHealth::Healthy));
        if all_healthy || Instant::now() > deadline {
            return health;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn install_reconciles_instead_of_recreating() {
    provision_local_images();
    let stack = TestStack::partner_edge("reconcile").unwrap();
    let p = stack.ports;

    // Fresh install of the default stack: every channel configured.
    let out = install(&stack, &[], &all_channels());
    assert_eq!(code(&out), Some(0), "fresh install succeeds");
    assert!(stdout(&out).lines().last().unwrap_or_default().starts_with("done in "), "ends with a done line");
    assert!(stderr(&out).contains("waiting for"), "progress is visible during waits");
    assert_eq!(status_file(&stack), "xray=active\nawg=skipped\nhysteria2=active\nnaive=active\n");
    let ids = container_ids(&stack);
    for c in ["xray", "hy2", "naive", "caddy", "coturn", "sfu"] {
        let name = stack.container(&format!("oxpulse-partner-{c}"));
        let state = &inspect(&name)["State"];
        assert_eq!(state["Status"], "running", "{name} runs");
        let labels = &inspect(&name)["Config"]["Labels"];
        // hysteria2's image has wget; xray's and naive's are probed from the host.
        match c {
            "hy2" => assert_eq!(state["Health"]["Status"], "healthy", "{name} is healthy"),
            "xray" => assert_eq!(labels["edge.readiness"], format!("http://127.0.0.1:{}/api/health", stack.ports.xray)),
            "naive" => assert_eq!(labels["edge.readiness"], format!("tcp://127.0.0.1:{}", stack.ports.naive_proxy)),
            _ => {}
        }
        assert_eq!(labels["com.docker.compose.project"], stack.name.as_str());
        assert!(labels["edge.spec-hash"].as_str().is_some_and(|h| h.len() == 64));
    }
    // The labels are keyed with the host's spec-hash key, an identity file.
    let key_file = config_file(&stack, "spec-hash.key");
    assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);
    let health = pool_health(&stack, &[p.xray, p.hysteria2, p.naive]);
    assert_eq!(health.len(), 3, "one series per active channel: {health:?}");
    assert!(health.values().all(|h| *h == edge_core::UpstreamHealth::Healthy), "{health:?}");
    let (status, body) = http_get(&format!("http://127.0.0.1:{}/through-caddy", p.site)).unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("x-channel-tag: xray"), "the request reached xray's stand-in: {body}");
    let xray_id = &ids[&stack.container("oxpulse-partner-xray")];
    assert!(body.starts_with(&format!("standin {}", &xray_id[..12])), "{body}");

    // No secret reaches docker inspect: not the channel credentials, not the identity.
    let mut inspected = String::new();
    for name in ids.keys() {
        inspected.push_str(&docker_out(&["inspect", name]));
    }
    let identity = std::fs::read_to_string(config_file(&stack, "reality.priv")).unwrap();
    let token = std::fs::read_to_string(config_file(&stack, "token")).unwrap();
    for (_, secret) in
        all_channels().iter().filter(|(k, _)| k.ends_with("AUTH") || k.ends_with("OBFS") || k.ends_with("PASSWORD"))
    {
        assert!(!inspected.contains(secret.as_str()), "{secret} leaks into docker inspect");
    }
    assert!(!inspected.contains(identity.trim()) && !inspected.contains(token.trim()));
    let naive_conf = config_file(&stack, "naive-client.json");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&naive_conf).unwrap().permissions().mode() & 0o777, 0o600);
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&naive_conf).unwrap().uid(), 65532, "the non-root naive user owns its config");
    assert_eq!(inspect(&stack.container("oxpulse-partner-naive"))["Config"]["User"], "65532:65532");
    let mounts = inspect(&stack.container("oxpulse-partner-naive"))["Mounts"].clone();
    let mount = mounts.as_array().unwrap().iter().find(|m| m["Destination"] == "/etc/naive/config.json").unwrap();
    assert_eq!(mount["RW"], false, "client configs are mounted read-only");

    // Status and healthcheck see it all.
    let out = edge(&stack, &["status", "--json"], &[]);
    assert_eq!(code(&out), Some(0));
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for c in seen["channels"].as_array().unwrap() {
        // No mesh configured here: awg waits, skipped (tests/it/awg.rs brings one up).
        assert_eq!(c["state"], if c["id"] == "awg" { "skipped" } else { "active" }, "{c}");
        if c["id"] != "awg" {
            assert_eq!(c["upstream_health"], "healthy", "{c}");
            assert_eq!(c["containers"][0]["health"], "healthy", "{c}");
        }
    }
    let out = edge(&stack, &["healthcheck"], &[]);
    assert_eq!(code(&out), Some(0), "healthcheck is green after install");

    // Re-run: nothing is recreated.
    let out = install(&stack, &[], &all_channels());
    assert_eq!(code(&out), Some(0));
    assert!(stdout(&out).contains("no changes"), "the re-run reports no changes");
    assert_eq!(container_ids(&stack), ids, "no container was recreated");

    // A dry run with naive's new credentials plans exactly one recreation and changes nothing.
    let mut changed = all_channels();
    changed.retain(|(k, _)| *k != "NAIVE_PASSWORD");
    changed.push(("NAIVE_PASSWORD", "another-pass-5e6f".to_owned()));
    let out = install(&stack, &["--dry-run", "--json"], &changed);
    assert_eq!(code(&out), Some(0));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let naive_name = stack.container("oxpulse-partner-naive");
    for entry in plan["plan"].as_array().unwrap() {
        let expected = if entry["container"] == naive_name.as_str() { "recreate" } else { "keep" };
        assert_eq!(entry["action"], expected, "{entry}");
    }
    assert_eq!(container_ids(&stack), ids, "a dry run changes nothing");

    // Changing naive's credentials recreates the naive container only.
    let out = install(&stack, &[], &changed);
    assert_eq!(code(&out), Some(0));
    let after = container_ids(&stack);
    for (name, id) in &ids {
        if *name == naive_name {
            assert_ne!(&after[name], id, "naive was recreated");
        } else {
            assert_eq!(&after[name], id, "{name} was left alone");
        }
    }

    // Unsetting hysteria2's credentials removes its container and its upstream.
    let mut without_hy2 = changed.clone();
    without_hy2.retain(|(k, _)| !k.starts_with("HYSTERIA2_"));
    let out = install(&stack, &[], &without_hy2);
    assert_eq!(code(&out), Some(0));
    let hy2 = stack.container("oxpulse-partner-hy2");
    let now = container_ids(&stack);
    assert!(!now.contains_key(&hy2), "the hysteria2 container is removed");
    assert_eq!(now[&naive_name], after[&naive_name]);
    assert_eq!(now[&stack.container("oxpulse-partner-xray")], after[&stack.container("oxpulse-partner-xray")]);
    assert_eq!(status_file(&stack), "xray=active\nawg=skipped\nhysteria2=skipped\nnaive=active\n");
    let caddyfile = std::fs::read_to_string(config_file(&stack, "Caddyfile")).unwrap();
    assert!(!caddyfile.contains(&format!("127.0.0.1:{}", p.hysteria2)), "its upstream left the Caddyfile");
    assert!(!config_file(&stack, "hysteria2-client.yaml").exists(), "its stale client config is gone");
    // Caddy took the new pool in place; its metrics keep the old upstream's last value until
    // it restarts, which is why edge reads only the recorded pool's series.
    assert_eq!(now[&stack.container("oxpulse-partner-caddy")], after[&stack.container("oxpulse-partner-caddy")]);
    let (_, running) = http_get(&format!("http://127.0.0.1:{}/config/", p.admin)).unwrap();
    assert!(running.contains(&format!("\"dial\":\"127.0.0.1:{}\"", p.xray)), "{running}");
    assert!(!running.contains(&format!("127.0.0.1:{}", p.hysteria2)), "its upstream left Caddy's running config");
    let health = pool_health(&stack, &[p.xray, p.naive]);
    assert!(health.len() >= 2, "{health:?}");
    let out = edge(&stack, &["status", "--json"], &[]);
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let upstreams: Vec<&str> =
        seen["channels"].as_array().unwrap().iter().filter_map(|c| c["upstream"].as_str()).collect();
    assert!(!upstreams.contains(&format!("127.0.0.1:{}", p.hysteria2).as_str()), "{seen}");
    let out = edge(&stack, &["healthcheck", "--json"], &[]);
    assert_eq!(code(&out), Some(0), "healthcheck is green with a skipped channel");
}

#[test]
fn uninstall_and_restore_keep_the_identity_and_the_volumes() {
    provision_local_images();
    let stack = TestStack::partner_edge("restore").unwrap();
    let out = install(&stack, &[], &[]);
    assert_eq!(code(&out), Some(0));
    let bundle = stack.bundle().unwrap();
    let identity =
        ["reality.priv", "reality.pub", "reality.uuid", "awg-private.key", "awg-public.key", "token", "spec-hash.key"];
    let before: Vec<Vec<u8>> = identity.iter().map(|f| std::fs::read(config_file(&stack, f)).unwrap()).collect();
    let hashes_before = spec_hashes(&stack);

    // Data in a named volume.
    let volume = bundle.stack.volumes.iter().find(|v| v.ends_with("sfu-data")).unwrap().clone();
    let mountpoint = docker_out(&["volume", "inspect", "-f", "{{.Mountpoint}}", &volume]);
    let marker = Path::new(mountpoint.trim()).join("marker");
    std::fs::write(&marker, b"keep me").unwrap();

    let out = edge(&stack, &["uninstall"], &[]);
    assert_eq!(code(&out), Some(2), "uninstall wants --yes");
    let out = edge(&stack, &["uninstall", "--yes", "--keep-backups", "--json"], &[]);
    assert_eq!(code(&out), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(container_ids(&stack).is_empty(), "every container is gone");
    assert!(!config_file(&stack, "reality.priv").exists(), "the identity left the config dir");
    assert!(report["volumes_kept"].as_array().unwrap().iter().any(|v| v == volume.as_str()));
    let backup = report["backup"].as_str().unwrap().to_owned();
    assert!(Path::new(&backup).join("install.env").is_file());

    // Without --images: the backup's install.env says which images the stack ran on.
    let out = edge(&stack, &["install", "--restore-from", &backup, "--health-timeout", "40s"], &[]);
    assert_eq!(code(&out), Some(0));
    let after: Vec<Vec<u8>> = identity.iter().map(|f| std::fs::read(config_file(&stack, f)).unwrap()).collect();
    assert_eq!(before, after, "the identity files are back byte-identical");
    assert_eq!(spec_hashes(&stack), hashes_before, "the restored spec-hash key labels every container as before");
    assert_eq!(std::fs::read(&marker).unwrap(), b"keep me", "the volume's data survived");
    assert_eq!(code(&edge(&stack, &["healthcheck"], &[])), Some(0));

    // --purge-volumes takes the data too.
    let out = edge(&stack, &["uninstall", "--yes", "--purge-volumes"], &[]);
    assert_eq!(code(&out), Some(0));
    assert!(docker_out(&["volume", "ls", "-q", "--filter", &format!("name={volume}")]).trim().is_empty());
}

#[test]
fn an_optional_channel_that_never_becomes_healthy_leaves_the_pool() {
    provision_local_images();
    let stack = TestStack::partner_edge("optfail").unwrap();
    // hysteria2's image has wget: its docker health check fails at once.
    let images = format!("{},hysteria2={STANDIN_UNHEALTHY_IMAGE}", partner_edge_images());
    let hy2: Vec<(&str, String)> = HY2.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
    let out = install(&stack, &["--images", &images], &hy2);
    assert_eq!(code(&out), Some(3), "done, but degraded");
    assert!(stdout(&out).contains("failed and out of the pool: hysteria2"), "{}", stdout(&out));
    assert_eq!(status_file(&stack), "xray=active\nawg=skipped\nhysteria2=failed_at_runtime\nnaive=skipped\n");
    let caddyfile = std::fs::read_to_string(config_file(&stack, "Caddyfile")).unwrap();
    assert!(!caddyfile.contains(&format!("127.0.0.1:{}", stack.ports.hysteria2)), "hysteria2 left the pool");
    assert!(caddyfile.contains(&format!("127.0.0.1:{}", stack.ports.xray)));
    // The failed container stays for `docker logs`; the rest serves.
    assert_eq!(inspect(&stack.container("oxpulse-partner-hy2"))["State"]["Health"]["Status"], "unhealthy");
    let (status, body) = http_get(&format!("http://127.0.0.1:{}/", stack.ports.site)).unwrap();
    assert!(status == 200 && body.contains("x-channel-tag: xray"), "{status} {body}");
    assert_eq!(code(&edge(&stack, &["healthcheck"], &[])), Some(0), "every active channel is healthy");
}

#[test]
fn a_required_channel_that_never_becomes_healthy_fails_the_install() {
    provision_local_images();
    let stack = TestStack::partner_edge("reqfail").unwrap();
    let images = format!("{},xray={STANDIN_UNHEALTHY_IMAGE}", partner_edge_images());
    let out = install(&stack, &["--images", &images], &[]);
    assert_eq!(code(&out), Some(1));
    let err = stderr(&out);
    assert!(err.contains("error: install failed: required channel xray is failed_at_runtime"), "{err}");
    assert!(err.contains("unhealthy") && err.contains("run edge install again"), "says what to do: {err}");
    assert!(status_file(&stack).starts_with("xray=failed_at_runtime\n"));
}

#[test]
fn an_unreachable_engine_is_a_clear_error_and_nothing_is_written() {
    let stack = TestStack::partner_edge("noengine").unwrap();
    let out = install(&stack, &[], &[("DOCKER_HOST", "unix:///nonexistent/edge-test/docker.sock".to_owned())]);
    assert_eq!(code(&out), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("cannot reach the docker engine at unix:///nonexistent/edge-test/docker.sock")
            && err.contains("is dockerd running"),
        "{err}"
    );
    let written: Vec<_> = walk(stack.root()).into_iter().filter(|p| !p.ends_with("node-config.input.json")).collect();
    assert!(written.is_empty(), "nothing written: {written:?}");
}

#[test]
fn a_dry_run_on_a_fresh_host_plans_creations_and_writes_nothing() {
    provision_local_images();
    let stack = TestStack::partner_edge("dryrun").unwrap();
    let out = install(&stack, &["--dry-run"], &naive("naive-pass-77"));
    assert_eq!(code(&out), Some(0));
    let text = stdout(&out);
    for c in ["xray", "naive", "caddy", "coturn", "sfu"] {
        assert!(text.contains(&format!("create   {}", stack.container(&format!("oxpulse-partner-{c}")))), "{text}");
    }
    assert!(!text.contains("oxpulse-partner-hy2") && !text.contains(&stack.container("oxpulse-partner-hy2")));
    assert!(container_ids(&stack).is_empty());
    let written: Vec<_> = walk(stack.root()).into_iter().filter(|p| !p.ends_with("node-config.input.json")).collect();
    assert!(written.is_empty(), "nothing written: {written:?}");
}

/// The compose file edge renders runs the same stack under docker-compose, as operators who
/// keep the legacy `docker-compose up -d` do (timings of both: `cargo xtask bench deploy`).
#[test]
fn the_rendered_compose_file_runs_the_stack_under_docker_compose() {
    provision_local_images();
    let stack = TestStack::partner_edge("compose").unwrap();
    assert_eq!(code(&install(&stack, &[], &all_channels())), Some(0));

    // edge's containers, network and volumes go; the rendered files stay.
    let compose_file = config_file(&stack, "docker-compose.yml");
    stack.cleanup();
    assert!(container_ids(&stack).is_empty());
    let compose = |args: &[&str]| {
        let out = std::process::Command::new("docker-compose")
            .arg("-f")
            .arg(&compose_file)
            .args(["-p", &stack.name])
            .args(args)
            .output()
            .expect("docker-compose runs (apt-get install docker-compose)");
        assert!(out.status.success(), "docker-compose {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    compose(&["up", "-d"]);
    let started = Instant::now();
    // Compose runs hysteria2's docker health check; xray and naive have none (edge probes them
    // from the host): Caddy's active checks below show they serve.
    let hy2 = stack.container("oxpulse-partner-hy2");
    while inspect(&hy2)["State"]["Health"]["Status"] != "healthy" {
        assert!(started.elapsed() < Duration::from_secs(60), "compose's hysteria2 never became healthy");
        std::thread::sleep(Duration::from_millis(100));
    }
    for c in ["caddy", "coturn", "sfu", "xray", "naive"] {
        let name = stack.container(&format!("oxpulse-partner-{c}"));
        assert_eq!(inspect(&name)["State"]["Status"], "running", "{name} runs under docker-compose");
    }
    let p = stack.ports;
    let health = pool_health(&stack, &[p.xray, p.hysteria2, p.naive]);
    assert!(health.len() == 3 && health.values().all(|h| *h == edge_core::UpstreamHealth::Healthy), "{health:?}");
    let (status, body) = http_get(&format!("http://127.0.0.1:{}/", p.site)).unwrap();
    assert!(status == 200 && body.contains("x-channel-tag: "), "Caddy serves the pool: {status} {body}");
    compose(&["up", "-d"]);
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn a_non_utf8_environment_entry_is_no_panic() {
    use std::os::unix::ffi::OsStrExt;
    provision_local_images();
    let stack = TestStack::partner_edge("nonutf8").expect("test stack");
    let node_config = stack.root().join("node-config.input.json");
    std::fs::write(&node_config, NODE_CONFIG).expect("write node config");
    let out = stack
        .command(Path::new(EDGE))
        .args(["install", "--dry-run", "--partner-id", "acme", "--domain", "edge.test.invalid", "--manual-config"])
        .arg(&node_config)
        .args(["--images", &partner_edge_images()])
        .env(std::ffi::OsStr::from_bytes(b"BAD"), std::ffi::OsStr::from_bytes(b"\xff"))
        .env(std::ffi::OsStr::from_bytes(b"ALSO_\xfe"), "x")
        .output()
        .expect("edge runs");
    assert_ne!(out.status.code(), Some(134), "aborted: {}", stderr(&out));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("dry run, nothing changed"), "{}", stdout(&out));
}
