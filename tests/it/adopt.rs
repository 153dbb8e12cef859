//! Taking over a host the legacy bash installer set up, on the real Docker engine: containers
//! made by `docker-compose up -d` from a file whose service keys are the container names, a
//! Caddy whose `/data` is an anonymous volume, the sfu on a Compose volume, the legacy
//! identity and watchdog timer. `edge install` refuses; `edge adopt`, killed at a few points
//! by its test hook (`EDGE_ADOPT_STOP_AFTER`) and run again, converges with nothing lost.

use std::path::{Path, PathBuf};
use std::process::Output;

use edge_tests::docker::{STANDIN_IMAGE, TestStack, docker_out, provision_local_images};

use crate::deploy::{code, container_ids, edge, inspect, install, paths, stderr, stdout, with_install_flags};

const CADDY_MARKER: &[u8] = b"acme account key and certificates\n";
const SFU_DATA: &[u8] = b"sfu room state \x00\x01\xff\n";
const LEGACY_UNITS: [&str; 2] = ["oxpulse-channels-health-report.timer", "oxpulse-channels-health-report.service"];
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

fn adopt(stack: &TestStack, extra: &[&str], env: &[(&str, String)]) -> Output {
    with_install_flags(stack, "adopt", extra, env)
}

fn mountpoint(volume: &str) -> PathBuf {
    let out = docker_out(&["volume", "inspect", "-f", "{{.Mountpoint}}", volume]);
    assert!(!out.trim().is_empty(), "volume {volume} exists");
    PathBuf::from(out.trim())
}

fn systemd_dir(stack: &TestStack) -> PathBuf {
    paths(stack).systemd_dir().to_owned()
}

/// The legacy host: compose containers named like the stack's, data in their volumes, the
/// identity and install.env the legacy installer wrote, and its watchdog units.
fn legacy_host(stack: &TestStack) -> Volumes {
    let name = |c: &str| stack.container(&format!("oxpulse-partner-{c}"));
    let compose = format!(
        "version: \"3.7\"\nservices:\n  {caddy}:\n    image: {STANDIN_IMAGE}\n    container_name: {caddy}\n    restart: unless-stopped\n    volumes: [\"/data\"]\n  {xray}:\n    image: {STANDIN_IMAGE}\n    container_name: {xray}\n    restart: unless-stopped\n  {coturn}:\n    image: {STANDIN_IMAGE}\n    container_name: {coturn}\n    restart: unless-stopped\n  {sfu}:\n    image: {STANDIN_IMAGE}\n    container_name: {sfu}\n    restart: unless-stopped\n    volumes: [\"sfu-data:/var/lib/sfu\"]\nvolumes:\n  sfu-data: {{}}\n",
        caddy = name("caddy"),
        xray = name("xray"),
        coturn = name("coturn"),
        sfu = name("sfu"),
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
    let anonymous = docker_out(&["inspect", "-f", "{{range .Mounts}}{{.Name}}{{end}}", &name("caddy")]);
    let anonymous = anonymous.trim().to_owned();
    assert_eq!(anonymous.len(), 64, "the legacy Caddy's /data is an anonymous volume: {anonymous:?}");
    let sfu_volume = format!("{}_sfu-data", stack.name);
    let volumes = Volumes(vec![anonymous.clone(), sfu_volume.clone()]);
    let marker = mountpoint(&anonymous).join("caddy/marker");
    std::fs::create_dir_all(marker.parent().unwrap()).unwrap();
    std::fs::write(&marker, CADDY_MARKER).unwrap();
    std::fs::write(mountpoint(&sfu_volume).join("rooms.db"), SFU_DATA).unwrap();

    // The identity the legacy installer made (same formats), its token, and install.env.
    for cmd in ["reality-keygen", "awg-keygen"] {
        assert_eq!(code(&edge(stack, &["secrets", cmd], &[])), Some(0));
    }
    let config = stack.config_file("token").unwrap();
    std::fs::write(&config, "ptkn_legacy0123456789\n").unwrap();
    let paths = paths(stack);
    std::fs::create_dir_all(paths.state_dir()).unwrap();
    std::fs::write(paths.install_env(), "PARTNER_ID=acme\nPARTNER_DOMAIN=edge.test.invalid\nTUNNEL=xray\n").unwrap();
    std::fs::create_dir_all(systemd_dir(stack)).unwrap();
    for unit in LEGACY_UNITS {
        std::fs::write(systemd_dir(stack).join(unit), "[Unit]\nDescription=legacy health report\n").unwrap();
    }
    volumes
}

fn identity(stack: &TestStack) -> Vec<Vec<u8>> {
    IDENTITY.iter().map(|f| std::fs::read(stack.config_file(f).unwrap()).unwrap()).collect()
}

fn steps(stack: &TestStack) -> Vec<String> {
    let out = adopt(stack, &["--dry-run", "--json"], &[]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    report["steps"].as_array().unwrap().iter().map(|s| s["step"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn adopt_takes_over_a_legacy_host_keeping_every_volume_even_when_killed() {
    provision_local_images();
    let stack = TestStack::partner_edge("adopt").unwrap();
    let _volumes = legacy_host(&stack);
    let identity_before = identity(&stack);
    let caddy = stack.container("oxpulse-partner-caddy");

    let out = install(&stack, &[], &[]);
    assert_eq!(code(&out), Some(1), "install refuses a legacy host");
    assert!(stderr(&out).contains("run edge adopt --dry-run") && stderr(&out).contains(&caddy), "{}", stderr(&out));
    assert_eq!(inspect(&caddy)["State"]["Status"], "running", "the refusal changed nothing");

    let out = adopt(&stack, &["--dry-run"], &[]);
    assert_eq!(code(&out), Some(0));
    assert!(stdout(&out).contains(&format!("copy-volume {caddy} /data ")), "{}", stdout(&out));
    let planned = steps(&stack);
    assert_eq!(planned.first().map(String::as_str), Some("copy_volume"));
    assert_eq!(inspect(&caddy)["State"]["Status"], "running", "a dry run changes nothing");

    // Killed after the Caddy's copy and set-aside, then right after the install.
    let stop = |n: usize| [("EDGE_ADOPT_STOP_AFTER", n.to_string())];
    assert_eq!(code(&adopt(&stack, &[], &stop(2))), Some(1));
    assert_eq!(code(&install(&stack, &[], &[])), Some(1), "an unfinished adoption still refuses install");
    let left = steps(&stack);
    let install_at = left.iter().position(|s| s == "install").unwrap();
    assert_eq!(left.len(), planned.len() - 2, "the copy and the set-aside are not repeated: {left:?}");
    assert_eq!(code(&adopt(&stack, &[], &stop(install_at + 1))), Some(1));

    let out = adopt(&stack, &[], &[]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).lines().last().unwrap_or_default().starts_with("done: "), "{}", stdout(&out));
    for c in ["caddy", "xray", "coturn", "sfu"] {
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
    assert_eq!(identity(&stack), identity_before, "the identity is byte-identical");
    for unit in LEGACY_UNITS {
        assert!(!Path::new(&systemd_dir(&stack).join(unit)).exists(), "{unit} is gone");
    }

    let ids = container_ids(&stack);
    let out = adopt(&stack, &[], &[]);
    assert_eq!(code(&out), Some(0));
    assert!(stdout(&out).starts_with("nothing to adopt"), "{}", stdout(&out));
    assert_eq!(container_ids(&stack), ids, "a second adopt changes nothing");
}
