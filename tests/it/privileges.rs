//! Least privilege on the real engine: every container of an installed stack runs with
//! `no-new-privileges`, all capabilities dropped and only the manifest's added back, and a
//! read-only root filesystem (with its tmpfs mounts) where the manifest asks for one; the
//! channel clients' inbounds answer on loopback but not to the stack's other containers; and
//! coturn (Debian's real turnserver) refuses unauthenticated allocations and relays to
//! loopback or private peers.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use edge_tests::docker::{TestStack, docker_out, provision_local_images};
use edge_tests::turn::{Answer, TurnClient, rest_credential};

use crate::deploy::{all_channels, code, container_ids, http_get, install};

/// `docker inspect` of one container.
fn inspect(name: &str) -> serde_json::Value {
    let text = docker_out(&["inspect", name]);
    let all: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    all.get(0).cloned().unwrap_or(serde_json::Value::Null)
}

fn strings(value: &serde_json::Value) -> Vec<String> {
    value.as_array().map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()).unwrap_or_default()
}

#[test]
fn every_container_drops_privileges_and_keeps_its_root_read_only_where_the_manifest_says() {
    provision_local_images();
    let stack = TestStack::partner_edge("privileges").unwrap();
    let out = install(&stack, &[], &all_channels());
    assert_eq!(code(&out), Some(0), "install succeeds with every container hardened");

    let bundle = stack.bundle().unwrap();
    let containers = container_ids(&stack);
    assert_eq!(containers.len(), bundle.stack.services.len(), "every service runs: {containers:?}");
    let mut read_only = 0;
    for service in &bundle.stack.services {
        let name = &service.container;
        assert!(containers.contains_key(name), "{name} exists");
        let info = inspect(name);
        let host = &info["HostConfig"];
        let security_opt = strings(&host["SecurityOpt"]);
        assert!(
            security_opt.iter().any(|o| o == "no-new-privileges:true" || o == "no-new-privileges"),
            "{name} has no-new-privileges: {security_opt:?}"
        );
        assert_eq!(strings(&host["CapDrop"]), ["ALL"], "{name} drops every capability");
        let added: Vec<String> =
            service.cap_add.iter().map(|c| c.strip_prefix("CAP_").unwrap_or(c).to_ascii_uppercase()).collect();
        let mut inspected: Vec<String> =
            strings(&host["CapAdd"]).iter().map(|c| c.strip_prefix("CAP_").unwrap_or(c).to_owned()).collect();
        inspected.sort();
        let mut expected = added.clone();
        expected.sort();
        assert_eq!(inspected, expected, "{name} gets back only what the manifest names");
        assert_eq!(host["ReadonlyRootfs"].as_bool(), Some(service.read_only), "{name} read-only root");
        for t in &service.tmpfs {
            let path = t.split_once(':').map_or(t.as_str(), |(p, _)| p);
            assert!(host["Tmpfs"].get(path).is_some(), "{name} mounts a tmpfs at {path}: {}", host["Tmpfs"]);
        }
        assert_eq!(info["State"]["Status"], "running", "{name} runs hardened");
        read_only += usize::from(service.read_only);
    }
    assert!(read_only >= 5, "Caddy, the three channel clients and coturn run read-only");
    let caddy = bundle.stack.services.iter().find(|s| s.name == "caddy").unwrap();
    assert_eq!(caddy.cap_add, ["NET_BIND_SERVICE"], "Caddy binds 80/443 on the host network");

    // coturn runs as the image's user, read-only, with its secret only in the 0600 config.
    let coturn = inspect(&stack.container("oxpulse-partner-coturn"));
    assert_eq!(coturn["Config"]["User"], "65534:65534", "coturn runs as nobody:nogroup");
    assert_eq!(coturn["HostConfig"]["ReadonlyRootfs"], true, "coturn's root is read-only");
    let secret_file = stack.config_file("turn-secret").unwrap();
    let secret = std::fs::read_to_string(&secret_file).expect("install generated the TURN secret");
    let secret = secret.trim();
    assert!(secret.len() >= 32, "the TURN secret is a long random token");
    assert_eq!(std::fs::metadata(&secret_file).unwrap().permissions().mode() & 0o777, 0o600);
    let conf = stack.config_file("turnserver.conf").unwrap();
    let meta = std::fs::metadata(&conf).unwrap();
    assert_eq!((meta.permissions().mode() & 0o777, meta.uid()), (0o600, 65534), "config 0600, owned by coturn's user");
    assert!(std::fs::read_to_string(&conf).unwrap().contains(&format!("static-auth-secret={secret}")));
    let coturn_config = &coturn["Config"];
    for (what, value) in
        [("command", &coturn_config["Cmd"]), ("env", &coturn_config["Env"]), ("labels", &coturn_config["Labels"])]
    {
        assert!(!value.to_string().contains(secret), "the TURN secret is not in coturn's {what}: {value}");
    }

    // Each channel client is alone on its own network; the others share the stack network.
    for service in &bundle.stack.services {
        let info = inspect(&service.container);
        let networks: Vec<&String> =
            info["NetworkSettings"]["Networks"].as_object().map(|m| m.keys().collect()).unwrap_or_default();
        let expected = match (&service.network_mode, service.channel.is_some()) {
            (Some(mode), _) => mode.clone(),
            (None, true) => format!("{}-{}", stack.name, service.name),
            (None, false) => stack.name.clone(),
        };
        assert_eq!(networks, [&expected], "{} joins only {expected}", service.container);
    }

    // A read-only root really refuses writes; the tmpfs takes them. The stand-in images have
    // no shell, so this asks the engine itself: `docker cp` into a read-only root fails.
    let xray = &bundle.stack.service("xray").unwrap().container;
    let file = stack.root().join("probe");
    std::fs::write(&file, b"x").unwrap();
    let into_root = std::process::Command::new("docker")
        .args(["cp", &file.display().to_string(), &format!("{xray}:/probe")])
        .output()
        .unwrap();
    assert!(!into_root.status.success(), "writing into xray's read-only root is refused");
}

/// Runs the stand-in's `wget` inside a container; true when it got a 2xx answer.
fn fetch_from(container: &str, url: &str) -> bool {
    let out = std::process::Command::new("docker")
        .args(["exec", container, "/usr/bin/wget", "-q", "-O", "/dev/null", url])
        .output()
        .expect("docker exec runs");
    eprintln!("{container} fetching {url}: {} {}", out.status, String::from_utf8_lossy(&out.stdout).trim());
    out.status.success()
}

#[test]
fn channel_inbounds_answer_on_loopback_but_not_to_the_stacks_other_containers() {
    provision_local_images();
    let stack = TestStack::partner_edge("inbounds").unwrap();
    let out = install(&stack, &[], &all_channels());
    assert_eq!(code(&out), Some(0), "install succeeds");

    // The SFU (a stand-in here) is a container on the stack network with an HTTP client.
    let sfu = stack.container("oxpulse-partner-sfu");
    let sfu_info = inspect(&sfu);
    let stack_net = &sfu_info["NetworkSettings"]["Networks"][&stack.name];
    let sfu_ip = stack_net["IPAddress"].as_str().unwrap().to_owned();
    let gateway = stack_net["Gateway"].as_str().unwrap().to_owned();
    assert!(fetch_from(&sfu, &format!("http://{sfu_ip}:3080/api/health")), "the probe works on the stack network");

    for (service, host_port) in
        [("xray", stack.ports.xray), ("hy2", stack.ports.hysteria2), ("naive", stack.ports.naive)]
    {
        let client = stack.container(&format!("oxpulse-partner-{service}"));
        let info = inspect(&client);
        let networks = info["NetworkSettings"]["Networks"].as_object().unwrap();
        let ip = networks.values().next().unwrap()["IPAddress"].as_str().unwrap().to_owned();
        // Caddy's way in: the port published on the host's loopback.
        let health = format!("http://127.0.0.1:{host_port}/api/health");
        let answer = http_get(&health).map(|(status, _)| status);
        assert_eq!(answer.ok(), Some(200), "{client} answers on {health}");
        // Another container of the stack: not by its address, nor through the host's gateway.
        assert!(!fetch_from(&sfu, &format!("http://{ip}:3080/api/health")), "{client} is unreachable from {sfu}");
        assert!(
            !fetch_from(&sfu, &format!("http://{gateway}:{host_port}/api/health")),
            "{client}'s published port is not reachable from {sfu} through the gateway"
        );
    }
    assert!(
        !fetch_from(&sfu, "http://xray-client:3080/api/health"),
        "the xray-client alias is not on the stack network"
    );
}

#[test]
fn coturn_refuses_unauthenticated_allocations_and_relays_to_loopback_or_private_peers() {
    provision_local_images();
    let stack = TestStack::partner_edge("coturn").unwrap();
    let out = install(&stack, &[], &[]);
    assert_eq!(code(&out), Some(0), "install succeeds");
    let server = SocketAddr::from((Ipv4Addr::LOCALHOST, stack.ports.coturn));
    let coturn = stack.container("oxpulse-partner-coturn");

    // turnserver may take a moment to open its listener.
    let mut client = TurnClient::connect(server).unwrap();
    let mut first = Err(anyhow::anyhow!("not asked"));
    for _ in 0..20 {
        first = client.allocate_unauthenticated();
        if first.is_ok() {
            break;
        }
    }
    let first = first.unwrap_or_else(|e| panic!("{e:#}; coturn logs:\n{}", docker_out(&["logs", &coturn])));
    assert!(matches!(&first, Answer::Error(401, _)), "an Allocate without credentials gets 401: {first:?}");

    let secret = std::fs::read_to_string(stack.config_file("turn-secret").unwrap()).unwrap();
    let expiry = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 3600;
    let (user, wrong) = rest_credential("not-the-secret", "alice", expiry);
    let answer = TurnClient::connect(server).unwrap().allocate(&user, &wrong).unwrap();
    assert!(matches!(&answer, Answer::Error(401, _)), "a credential under another secret gets 401: {answer:?}");

    let (user, password) = rest_credential(secret.trim(), "alice", expiry);
    let answer = client.allocate(&user, &password).unwrap();
    let logs = || docker_out(&["logs", &coturn]);
    assert_eq!(answer, Answer::Success, "a credential under the node's secret allocates a relay; logs:\n{}", logs());
    for peer in ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1"] {
        let answer = client.create_permission(peer.parse().unwrap()).unwrap();
        assert!(matches!(&answer, Answer::Error(403, _)), "no relay to {peer}: {answer:?}; logs:\n{}", logs());
    }
}
