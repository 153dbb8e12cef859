//! Least privilege on the real engine: every container of an installed stack runs with
//! `no-new-privileges`, all capabilities dropped and only the manifest's added back, and a
//! read-only root filesystem (with its tmpfs mounts) where the manifest asks for one.

use edge_tests::docker::{TestStack, docker_out, provision_local_images};

use crate::deploy::{all_channels, code, container_ids, install};

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
    assert!(read_only >= 4, "Caddy and the three channel clients run read-only");
    let caddy = bundle.stack.services.iter().find(|s| s.name == "caddy").unwrap();
    assert_eq!(caddy.cap_add, ["NET_BIND_SERVICE"], "Caddy binds 80/443 on the host network");

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
