//! Taking over a host the legacy bash installer set up, on the real Docker engine: containers
//! made by `docker-compose up -d` from a file whose service keys are the container names, a
//! Caddy whose `/data` is an anonymous volume, the sfu on a Compose volume, the legacy
//! identity, state files and watchdog timer. `edge install` refuses; `edge adopt`, killed at a
//! few points by its test hook (`EDGE_ADOPT_STOP_AFTER`) and resumed by `edge install --adopt`,
//! converges with nothing lost; then the one watchdog left takes the legacy health state over
//! without a word and names the channel of the first real transition.

use std::path::{Path, PathBuf};
use std::process::Output;

use std::time::{Duration, Instant};

use edge_deploy::adopt::{LEGACY_UNITS, LEGACY_UNITS_DIR};
use edge_tests::docker::{STANDIN_IMAGE, TestStack, docker_out, provision_local_images};
use edge_tests::telegram::ChatServer;

use crate::deploy::{
    all_channels, code, container_ids, edge, inspect, install, paths, stderr, stdout, with_install_flags,
};
use crate::first_alert::run_unit;

const WATCHDOG: &str = env!("CARGO_BIN_EXE_edge-watchdog-it");
const CADDY_MARKER: &[u8] = b"acme account key and certificates\n";
const CONFIG_MARKER: &[u8] = b"{\"admin\": {\"config\": {\"persist\": true}}}\n";
/// When the legacy watchdog last saw each upstream change (`upstream-state.env`).
const LEGACY_SINCE: u64 = 1716200000;
/// The legacy watchdog's last alert, an hour before the takeover: outside the rate-limit window.
const LEGACY_LAST_ALERT_AGO: u64 = 3600;
const SFU_DATA: &[u8] = b"sfu room state \x00\x01\xff\n";
const IDENTITY: [&str; 6] =
    ["reality.priv", "reality.pub", "reality.uuid", "awg-private.key", "awg-public.key", "token"];

/// Volumes the legacy containers held: edge never removes them, so the test does.
struct Volumes(Vec<String>);

impl Drop for Volumes {
    fn drop(&mut self) {
        for v in &self.0 {
            docker_out(&["volume", "rm", "-f", v]);
        }
    }
}

/// The legacy host, the webhook the alerts go to, and the legacy volumes: dropped in this
/// order, containers before their volumes.
struct Takeover {
    stack: TestStack,
    chat: ChatServer,
    _runtime: tokio::runtime::Runtime,
    /// The legacy Caddy's anonymous `/data` and `/config` volumes.
    caddy_data: String,
    caddy_config: String,
    volumes: Volumes,
}

impl Takeover {
    /// `edge VERB` (adopt, or install) with the install flags, every channel's credentials,
    /// alerts to this test's webhook and the watchdog unit running the test's binary.
    fn run(&self, verb: &str, extra: &[&str], env: &[(&str, String)]) -> Output {
        let webhook = self.chat.webhook_url();
        let bin = format!("WATCHDOG_BIN={WATCHDOG}");
        let mut args = vec!["--alert-webhook", webhook.as_str(), "--set", bin.as_str()];
        args.extend(extra);
        let mut env = env.to_vec();
        env.extend(all_channels());
        with_install_flags(&self.stack, verb, &args, &env)
    }

    fn adopt(&self, extra: &[&str], env: &[(&str, String)]) -> Output {
        self.run("adopt", extra, env)
    }

    /// The alerts delivered so far.
    fn alerts(&self) -> Vec<String> {
        self.chat.delivered()
    }

    /// One run of the watchdog unit, as its timer starts it; the tick's report.
    fn tick(&self) -> serde_json::Value {
        let (code, text) = run_unit(&self.stack);
        assert_eq!(code, Some(0), "the tick delivered what it had: {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }
}

fn mountpoint(volume: &str) -> PathBuf {
    let out = docker_out(&["volume", "inspect", "-f", "{{.Mountpoint}}", volume]);
    assert!(!out.trim().is_empty(), "volume {volume} exists");
    PathBuf::from(out.trim())
}

fn systemd_dir(stack: &TestStack) -> PathBuf {
    paths(stack).systemd_dir().to_owned()
}

/// The legacy host: compose containers named like the stack's, data in their volumes (the
/// Caddy's `/data` and `/config` anonymous ones), the identity, install.env and watchdog state
/// the legacy installer wrote, and its watchdog units.
fn legacy_host(stack: TestStack) -> Takeover {
    let name = |c: &str| stack.container(&format!("oxpulse-partner-{c}"));
    let service = |c: &str, extra: &str| {
        let c = name(c);
        format!("  {c}:\n    image: {STANDIN_IMAGE}\n    container_name: {c}\n    restart: unless-stopped\n{extra}")
    };
    let compose = format!(
        "version: \"3.7\"\nservices:\n{}{}{}{}{}{}volumes:\n  sfu-data: {{}}\n",
        service("caddy", "    volumes: [\"/data\", \"/config\"]\n"),
        service("xray", ""),
        service("hy2", ""),
        service("naive", ""),
        service("coturn", ""),
        service("sfu", "    volumes: [\"sfu-data:/var/lib/sfu\"]\n"),
    );
    let file = stack.root().join("legacy-compose.yml");
    std::fs::write(&file, compose).unwrap();
    let out = std::process::Command::new("docker-compose")
        .arg("-f")
        .arg(&file)
        .args(["-p", &stack.name, "up", "-d"])
        .output()
        .expect("docker-compose runs (apt-get install docker-compose)");
    assert!(out.status.success(), "docker-compose up -d: {}", String::from_utf8_lossy(&out.stderr));
    let mounts = docker_out(&["inspect", "-f", "{{range .Mounts}}{{.Destination}}={{.Name}} {{end}}", &name("caddy")]);
    let anonymous = |path: &str| {
        let found = mounts.split_whitespace().find_map(|m| m.strip_prefix(&format!("{path}="))).unwrap_or_default();
        assert_eq!(found.len(), 64, "the legacy Caddy's {path} is an anonymous volume: {mounts:?}");
        found.to_owned()
    };
    let (caddy_data, caddy_config) = (anonymous("/data"), anonymous("/config"));
    let sfu_volume = format!("{}_sfu-data", stack.name);
    let adopted_config = format!("{}_adopted-{}-config", stack.name, name("caddy"));
    let volumes = Volumes(vec![caddy_data.clone(), caddy_config.clone(), sfu_volume.clone(), adopted_config]);
    let marker = mountpoint(&caddy_data).join("caddy/marker");
    std::fs::create_dir_all(marker.parent().unwrap()).unwrap();
    std::fs::write(&marker, CADDY_MARKER).unwrap();
    std::fs::write(mountpoint(&caddy_config).join("autosave.json"), CONFIG_MARKER).unwrap();
    std::fs::write(mountpoint(&sfu_volume).join("rooms.db"), SFU_DATA).unwrap();

    // The identity the legacy installer made (same formats), its token, and install.env.
    for cmd in ["reality-keygen", "awg-keygen"] {
        assert_eq!(code(&edge(&stack, &["secrets", cmd], &[])), Some(0));
    }
    let config = stack.config_file("token").unwrap();
    std::fs::write(&config, "ptkn_legacy0123456789\n").unwrap();
    let paths = paths(&stack);
    std::fs::create_dir_all(paths.state_dir()).unwrap();
    std::fs::write(paths.install_env(), "PARTNER_ID=acme\nPARTNER_DOMAIN=edge.test.invalid\nTUNNEL=xray\n").unwrap();
    // The legacy watchdog's state: every upstream healthy under its legacy name, its last alert.
    let legacy_state: String = ["xray-client:3080", "host.docker.internal:18443", "127.0.0.1:1080"]
        .iter()
        .map(|u| format!("{u}=healthy:{LEGACY_SINCE}\n"))
        .collect();
    std::fs::write(paths.upstream_state(), legacy_state).unwrap();
    std::fs::create_dir_all(paths.alert_state_dir()).unwrap();
    let last_alert = now() - LEGACY_LAST_ALERT_AGO;
    std::fs::write(paths.alert_state_dir().join("last-alert-ts"), format!("{last_alert}\n")).unwrap();
    std::fs::create_dir_all(systemd_dir(&stack)).unwrap();
    for unit in LEGACY_UNITS {
        std::fs::write(systemd_dir(&stack).join(unit), "[Unit]\nDescription=legacy health report\n").unwrap();
    }
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let chat = runtime.block_on(ChatServer::start()).expect("chat server");
    Takeover { stack, chat, _runtime: runtime, caddy_data, caddy_config, volumes }
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn identity(stack: &TestStack) -> Vec<Vec<u8>> {
    IDENTITY.iter().map(|f| std::fs::read(stack.config_file(f).unwrap()).unwrap()).collect()
}

fn steps(legacy: &Takeover) -> Vec<String> {
    let out = legacy.adopt(&["--dry-run", "--json"], &[]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    report["steps"].as_array().unwrap().iter().map(|s| s["step"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn adopt_takes_over_a_legacy_host_keeping_every_volume_even_when_killed() {
    provision_local_images();
    let legacy = legacy_host(TestStack::partner_edge("adopt").unwrap());
    let stack = &legacy.stack;
    let identity_before = identity(stack);
    let caddy = stack.container("oxpulse-partner-caddy");
    let adopted_config = &legacy.volumes.0[3];

    let out = legacy.run("install", &[], &[]);
    assert_eq!(code(&out), Some(1), "install refuses a legacy host");
    let refusal = stderr(&out);
    assert!(refusal.contains("run edge adopt --dry-run") && refusal.contains(&caddy), "{refusal}");
    assert!(refusal.contains("edge install --adopt"), "{refusal}");
    assert_eq!(inspect(&caddy)["State"]["Status"], "running", "the refusal changed nothing");

    let out = legacy.adopt(&["--dry-run"], &[]);
    assert_eq!(code(&out), Some(0));
    let plan = stdout(&out);
    assert!(plan.contains(&format!("copy-volume {caddy} /data {} ", legacy.caddy_data)), "{plan}");
    assert!(
        plan.contains(&format!("copy-volume {caddy} /config {} -> {adopted_config}", legacy.caddy_config)),
        "{plan}"
    );
    let kept = format!(
        "{caddy}: anonymous volume {} at /config is kept as named volume {adopted_config}",
        legacy.caddy_config
    );
    assert!(plan.contains(&kept), "{plan}");
    let planned = steps(&legacy);
    assert_eq!(planned.first().map(String::as_str), Some("copy_volume"));
    assert_eq!(inspect(&caddy)["State"]["Status"], "running", "a dry run changes nothing");

    // Killed after the Caddy's two copies, then right after the install.
    let stop = |n: usize| [("EDGE_ADOPT_STOP_AFTER", n.to_string())];
    assert_eq!(code(&legacy.adopt(&[], &stop(2))), Some(1));
    assert_eq!(code(&install(stack, &[], &[])), Some(1), "an unfinished adoption still refuses install");
    let left = steps(&legacy);
    let install_at = left.iter().position(|s| s == "install").unwrap();
    assert_eq!(left.len(), planned.len() - 2, "the copies are not repeated: {left:?}");
    assert_eq!(code(&legacy.adopt(&[], &stop(install_at + 1))), Some(1));

    // `install --adopt` resumes the adoption.
    let out = legacy.run("install", &["--adopt"], &[]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.lines().last().unwrap_or_default().starts_with("done: "), "{text}");
    assert!(
        text.contains(&format!("kept {caddy}'s anonymous volume at /config as named volume {adopted_config}")),
        "{text}"
    );
    for c in ["caddy", "xray", "hy2", "naive", "coturn", "sfu"] {
        let name = stack.container(&format!("oxpulse-partner-{c}"));
        let labels = &inspect(&name)["Config"]["Labels"];
        assert!(labels["edge.spec-hash"].as_str().is_some_and(|h| h.len() == 64), "{name} carries edge's labels");
        assert_eq!(inspect(&name)["State"]["Status"], "running", "{name} runs");
        assert!(docker_out(&["ps", "-aq", "--filter", &format!("name=^{name}-legacy$")]).trim().is_empty());
    }
    let caddy_data = mountpoint(&stack.container("oxpulse-partner-caddy-data"));
    assert_eq!(std::fs::read(caddy_data.join("caddy/marker")).unwrap(), CADDY_MARKER);
    let sfu_data = mountpoint(&stack.container("oxpulse-partner-sfu-data"));
    assert_eq!(std::fs::read(sfu_data.join("rooms.db")).unwrap(), SFU_DATA);
    let mounted = inspect(&caddy)["Mounts"].to_string();
    assert!(mounted.contains(&stack.container("oxpulse-partner-caddy-data")), "{mounted}");
    // The Caddy's /config, which the stack does not mount, is kept in a labelled named volume.
    assert_eq!(std::fs::read(mountpoint(adopted_config).join("autosave.json")).unwrap(), CONFIG_MARKER);
    let labels: serde_json::Value =
        serde_json::from_str(&docker_out(&["volume", "inspect", "-f", "{{json .Labels}}", adopted_config])).unwrap();
    assert_eq!(labels["edge.stack"], stack.name.as_str(), "{labels}");
    assert_eq!(labels["edge.adopted-from"], format!("{caddy}:/config").as_str(), "{labels}");
    assert_eq!(labels["edge.adopted-volume"], legacy.caddy_config.as_str(), "{labels}");
    assert_eq!(identity(stack), identity_before, "the identity is byte-identical");
    for unit in LEGACY_UNITS {
        assert!(!Path::new(&systemd_dir(stack).join(unit)).exists(), "{unit} is gone");
        let kept = paths(stack).state_dir().join(LEGACY_UNITS_DIR).join(unit);
        assert!(std::fs::read_to_string(&kept).is_ok_and(|t| t.contains("legacy health report")), "{unit} is kept");
    }

    // One watchdog: its first tick takes the legacy health state over and says nothing.
    let p = stack.ports;
    let members = [p.xray, p.hysteria2, p.naive];
    let health = crate::deploy::pool_health(stack, &members);
    assert!(health.values().all(|h| *h == edge_core::UpstreamHealth::Healthy), "{health:?}");
    let before = legacy.alerts().len();
    let tick = legacy.tick();
    assert_eq!(tick["events"], serde_json::json!([]), "{tick}");
    assert!(legacy.alerts()[before..].is_empty(), "the takeover alerts nobody: {:?}", legacy.alerts());
    let state = std::fs::read_to_string(paths(stack).upstream_state()).unwrap();
    for port in members {
        let line = format!("127.0.0.1:{port}=healthy:{LEGACY_SINCE}\n");
        assert!(state.contains(&line), "the legacy health and time, under edge's name ({line:?}): {state}");
    }
    assert!(!state.contains("xray-client:3080"), "{state}");

    let ids = container_ids(stack);
    let out = legacy.adopt(&[], &[]);
    assert_eq!(code(&out), Some(0));
    assert!(stdout(&out).starts_with("nothing to adopt"), "{}", stdout(&out));
    assert_eq!(container_ids(stack), ids, "a second adopt changes nothing");

    // xray dies: ticks until one sees it, then exactly one alert, naming the channel.
    docker_out(&["stop", "-t", "1", &stack.container("oxpulse-partner-xray")]);
    let deadline = Instant::now() + Duration::from_secs(40);
    while legacy.tick()["events"].as_array().is_none_or(Vec::is_empty) {
        assert!(Instant::now() < deadline, "no tick saw xray go down: {:?}", legacy.alerts());
        std::thread::sleep(Duration::from_millis(500));
    }
    let sent = legacy.alerts()[before..].to_vec();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let xray = format!("TRANSITION channel=xray upstream=127.0.0.1:{} healthy -> unhealthy", p.xray);
    assert!(sent[0].contains(&xray), "{sent:?}");
    let stamped: u64 =
        std::fs::read_to_string(paths(stack).alert_state_dir().join("last-alert-ts")).unwrap().trim().parse().unwrap();
    assert!(stamped + 60 > now(), "the rate-limit clock carries on from the legacy one: {stamped}");

    // The volume adoption made is the stack's: a purge removes it with the stack's own, and
    // leaves the legacy anonymous volumes (never the stack's) alone.
    let out = edge(stack, &["uninstall", "--yes", "--purge-volumes"], &[]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let left = docker_out(&["volume", "ls", "-q"]);
    assert!(!left.lines().any(|v| v == adopted_config), "{adopted_config} is purged");
    assert!(left.lines().any(|v| v == legacy.caddy_config), "the legacy anonymous volume stays");
}
