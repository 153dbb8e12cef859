//! From a manifest service (variables already resolved) to a [`ContainerSpec`].
//!
//! The rendered files a service mounts enter the spec with their content digest,
//! so the spec hash changes exactly when the container would see different files.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use edge_core::{ReadinessProbe, Service, SpecHashKey, StackMeta};

use crate::DeployError;
use crate::engine::{
    ContainerSpec, HostProbe, LABEL_CHANNEL, LABEL_COMPOSE_PROJECT, LABEL_COMPOSE_SERVICE, LABEL_READINESS,
    LABEL_STACK, Mount, MountKind, NetworkAttachment, PublishedPort, Security, is_probe_path,
};

/// A rendered file as a service mounts it: where it is on the host and what it holds.
#[derive(Clone, PartialEq, Eq)]
pub struct RenderedMount {
    /// Absolute path of the file on the host.
    pub host_path: PathBuf,
    /// Its contents (may hold credentials: never logged).
    pub contents: Vec<u8>,
}

impl std::fmt::Debug for RenderedMount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RenderedMount")
            .field("host_path", &self.host_path)
            .field("contents", &format_args!("<{} bytes>", self.contents.len()))
            .finish()
    }
}

/// The labels every object of a stack carries (containers, its network, its volumes).
pub fn stack_labels(stack: &StackMeta) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_STACK.to_owned(), stack.name.clone()),
        (LABEL_COMPOSE_PROJECT.to_owned(), stack.compose_project.clone()),
    ])
}

/// The container spec of `service`, whose fields the renderer has resolved.
///
/// `files` maps template names to the rendered files; every file the service mounts must be
/// there. Credentials only ever reach the container through these read-only file mounts.
pub fn container_spec(
    service: &Service,
    stack: &StackMeta,
    files: &BTreeMap<String, RenderedMount>,
) -> Result<ContainerSpec, DeployError> {
    let invalid = |message: String| DeployError::InvalidSpec { service: service.name.clone(), message };

    let mut ports = Vec::new();
    for p in &service.ports {
        let port = |what: &str, text: &str| {
            text.trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| invalid(format!("{what} port {text:?} is not a port number (1-65535)")))
        };
        let protocol = p.protocol.to_ascii_lowercase();
        if !matches!(protocol.as_str(), "tcp" | "udp" | "sctp") {
            return Err(invalid(format!("port protocol {:?} must be tcp, udp or sctp", p.protocol)));
        }
        ports.push(PublishedPort {
            host_ip: p.host_ip.clone().filter(|ip| !ip.trim().is_empty()),
            host_port: port("host", &p.host)?,
            container_port: port("container", &p.container)?,
            protocol,
        });
    }

    let mut mounts = Vec::new();
    for v in &service.volumes {
        if !v.target.starts_with('/') {
            return Err(invalid(format!("volume target {:?} must be an absolute path", v.target)));
        }
        let kind = if v.source.starts_with('/') { MountKind::Bind } else { MountKind::Volume };
        mounts.push(Mount { source: v.source.clone(), target: v.target.clone(), read_only: v.read_only, kind });
    }
    for f in &service.files {
        let file = files
            .get(&f.template)
            .ok_or_else(|| invalid(format!("mounts template {:?}, which was not rendered", f.template)))?;
        if !file.host_path.is_absolute() {
            return Err(invalid(format!(
                "rendered file {} must be an absolute path to be mounted",
                file.host_path.display()
            )));
        }
        if !f.target.starts_with('/') {
            return Err(invalid(format!("file target {:?} must be an absolute path", f.target)));
        }
        let reloaded = service.reload.as_ref().is_some_and(|r| r.template == f.template);
        let kind = if reloaded { MountKind::ReloadedFile } else { MountKind::File { digest: digest(&file.contents) } };
        mounts.push(Mount {
            source: file.host_path.display().to_string(),
            target: f.target.clone(),
            read_only: true,
            kind,
        });
    }

    let network = match service.network_mode.as_deref().map(str::trim).filter(|m| !m.is_empty()) {
        Some(mode) => {
            if !service.aliases.is_empty() {
                return Err(invalid(format!("network aliases need the stack network, not network_mode {mode:?}")));
            }
            NetworkAttachment::Mode(mode.to_owned())
        }
        None => NetworkAttachment::Stack {
            name: service.network(stack).unwrap_or_else(|| stack.network.clone()),
            aliases: service.aliases.clone(),
        },
    };
    if matches!(&network, NetworkAttachment::Mode(m) if m == "host") && !ports.is_empty() {
        return Err(invalid("publishes ports but shares the host's network (network_mode = \"host\")".to_owned()));
    }

    let mut labels = stack_labels(stack);
    labels.insert(LABEL_COMPOSE_SERVICE.to_owned(), stack.compose_key_of(service).to_owned());
    labels.insert("com.docker.compose.oneoff".to_owned(), "False".to_owned());
    labels.insert("com.docker.compose.container-number".to_owned(), "1".to_owned());
    if let Some(channel) = &service.channel {
        labels.insert(LABEL_CHANNEL.to_owned(), channel.clone());
    }
    if let Some(readiness) = &service.readiness {
        let probe = host_probe(readiness, &ports, &network).map_err(invalid)?;
        labels.insert(LABEL_READINESS.to_owned(), probe.to_string());
    }

    let mut security = Security { read_only: service.read_only, ..Security::default() };
    for cap in &service.cap_add {
        let bare = cap.trim().to_ascii_uppercase();
        let bare = bare.strip_prefix("CAP_").unwrap_or(&bare);
        if bare.is_empty() || bare == "ALL" {
            return Err(invalid(format!("cap_add {cap:?} must name one capability, not ALL")));
        }
        security.cap_add.push(bare.to_owned());
    }
    for t in &service.tmpfs {
        let (path, options) = t.split_once(':').unwrap_or((t.as_str(), ""));
        if !path.starts_with('/') {
            return Err(invalid(format!("tmpfs {t:?} must be an absolute path")));
        }
        security.tmpfs.insert(path.to_owned(), options.to_owned());
    }

    if service.image.trim().is_empty() {
        return Err(invalid("has no image".to_owned()));
    }
    Ok(ContainerSpec {
        name: service.container.clone(),
        image: service.image.trim().to_owned(),
        command: service.command.clone(),
        env: service.env.clone(),
        ports,
        mounts,
        network,
        user: service.user.clone().filter(|u| !u.trim().is_empty()),
        healthcheck: service.healthcheck.clone(),
        restart: service.restart.clone(),
        logging: service.logging.clone(),
        labels,
        security,
    })
}

/// The host-side probe of a resolved `readiness`: loopback, on the host port the service
/// publishes (or its own port when it shares the host's network).
fn host_probe(
    readiness: &ReadinessProbe,
    ports: &[PublishedPort],
    network: &NetworkAttachment,
) -> Result<HostProbe, String> {
    let text = readiness.port();
    let port = text
        .trim()
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("readiness port {text:?} is not a port number (1-65535)"))?;
    let published = ports.iter().find(|p| p.host_port == port && p.protocol == "tcp");
    let ip: IpAddr = match (published, network) {
        (Some(p), _) => match p.host_ip.as_deref().map(str::parse::<IpAddr>) {
            None => Ipv4Addr::LOCALHOST.into(),
            Some(Ok(ip)) if ip.is_unspecified() && ip.is_ipv6() => Ipv6Addr::LOCALHOST.into(),
            Some(Ok(ip)) if ip.is_unspecified() => Ipv4Addr::LOCALHOST.into(),
            Some(Ok(ip)) if ip.is_loopback() => ip,
            Some(_) => {
                return Err(format!(
                    "readiness port {port} is published on {}, not on loopback: edge probes it from the host on loopback",
                    p.host_ip.as_deref().unwrap_or_default()
                ));
            }
        },
        (None, NetworkAttachment::Mode(m)) if m == "host" => Ipv4Addr::LOCALHOST.into(),
        (None, _) => {
            return Err(format!(
                "readiness port {port} is not a tcp port the service publishes; publish it on 127.0.0.1 or use a healthcheck"
            ));
        }
    };
    let addr = SocketAddr::new(ip, port);
    Ok(match readiness {
        ReadinessProbe::Http { path, .. } if is_probe_path(path) => HostProbe::Http { addr, path: path.clone() },
        ReadinessProbe::Http { path, .. } => {
            return Err(format!("readiness path {path:?} must start with '/' and hold no spaces"));
        }
        ReadinessProbe::Tcp { .. } => HostProbe::Tcp { addr },
    })
}

/// The keyed digest of a rendered file's contents, as the install record keeps it for the
/// config a service runs ([`MountKind::ReloadedFile`]): an HMAC-SHA256 under the host's key,
/// like the spec hash, because such a file may hold credentials.
pub fn config_digest(key: &SpecHashKey, contents: &[u8]) -> String {
    use hmac::Mac;
    let mut mac =
        <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(key.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(contents);
    hex::encode(mac.finalize().into_bytes())
}

fn digest(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_core::Stack;

    fn files(entries: &[(&str, &str, &str)]) -> BTreeMap<String, RenderedMount> {
        entries
            .iter()
            .map(|(t, p, c)| {
                ((*t).to_owned(), RenderedMount { host_path: PathBuf::from(p), contents: c.as_bytes().to_vec() })
            })
            .collect()
    }

    fn naive() -> (Service, StackMeta) {
        let stack = Stack::partner_edge();
        let mut s = stack.service("naive").unwrap().clone();
        for p in &mut s.ports {
            p.host = p.host.replace("{{ NAIVE_SOCKS_PORT }}", "1080").replace("{{ NAIVE_PROXY_PORT }}", "3084");
        }
        s.readiness = Some(ReadinessProbe::Tcp { port: "3084".into() });
        (s, stack.stack)
    }

    #[test]
    fn a_service_becomes_a_labelled_spec_with_read_only_file_mounts() {
        let (svc, meta) = naive();
        let spec = container_spec(&svc, &meta, &files(&[("naive", "/etc/e/naive-client.json", "{}")])).unwrap();
        assert_eq!(spec.name, "oxpulse-partner-naive");
        assert_eq!(spec.labels["com.docker.compose.project"], "oxpulse-partner");
        // The compose key the partner edge's compose file uses: the container name.
        assert_eq!(spec.labels["com.docker.compose.service"], "oxpulse-partner-naive");
        let by_name = StackMeta { compose_key: edge_core::ComposeKey::Name, ..meta.clone() };
        let spec_by_name =
            container_spec(&svc, &by_name, &files(&[("naive", "/etc/e/naive-client.json", "{}")])).unwrap();
        assert_eq!(spec_by_name.labels["com.docker.compose.service"], "naive");
        assert_eq!(spec.labels["edge.channel"], "naive");
        assert_eq!(
            spec.ports.iter().map(|p| (p.host_port, p.container_port)).collect::<Vec<_>>(),
            [(1080, 1080), (3084, 3080)]
        );
        let m = &spec.mounts[0];
        assert_eq!(
            (m.source.as_str(), m.target.as_str(), m.read_only),
            ("/etc/e/naive-client.json", "/etc/naive/config.json", true)
        );
        assert_eq!(spec.stack_network(), Some("oxpulse-partner-naive"), "a channel client has its own network");
        let sfu = Stack::partner_edge().service("sfu").unwrap().clone();
        let spec = container_spec(&sfu, &meta, &files(&[])).unwrap();
        assert_eq!(spec.stack_network(), Some("oxpulse-partner"), "the other services share the stack network");
    }

    #[test]
    fn readiness_becomes_a_loopback_probe_on_a_published_port() {
        let (svc, meta) = naive();
        let mounted = files(&[("naive", "/c/n.json", "{}")]);
        let probe = |edit: &dyn Fn(&mut Service)| {
            let mut s = svc.clone();
            edit(&mut s);
            container_spec(&s, &meta, &mounted).map(|spec| spec.labels.get(LABEL_READINESS).cloned())
        };
        assert_eq!(probe(&|_| {}).unwrap().as_deref(), Some("tcp://127.0.0.1:3084"));
        let http = |port: &str, path: &str| ReadinessProbe::Http { port: port.into(), path: path.into() };
        let on = |s: &mut Service, ip: Option<&str>| s.ports[0].host_ip = ip.map(str::to_owned);
        assert_eq!(
            probe(&|s| s.readiness = Some(http("1080", "/api/health"))).unwrap().as_deref(),
            Some("http://127.0.0.1:1080/api/health")
        );
        assert_eq!(
            probe(&|s| {
                on(s, None);
                s.readiness = Some(http("1080", "/"));
            })
            .unwrap()
            .as_deref(),
            Some("http://127.0.0.1:1080/"),
            "published on every address: probed on loopback"
        );
        assert_eq!(
            probe(&|s| {
                on(s, Some("::1"));
                s.readiness = Some(ReadinessProbe::Tcp { port: "1080".into() });
            })
            .unwrap()
            .as_deref(),
            Some("tcp://[::1]:1080")
        );
        assert_eq!(probe(&|s| s.readiness = None).unwrap(), None);

        let err = |edit: &dyn Fn(&mut Service)| probe(edit).unwrap_err().to_string();
        assert_eq!(
            err(&|s| s.readiness = Some(ReadinessProbe::Tcp { port: "http".into() })),
            "service naive: readiness port \"http\" is not a port number (1-65535)"
        );
        assert_eq!(
            err(&|s| s.readiness = Some(ReadinessProbe::Tcp { port: "9999".into() })),
            "service naive: readiness port 9999 is not a tcp port the service publishes; publish it on 127.0.0.1 or use a healthcheck"
        );
        assert_eq!(
            err(&|s| s.readiness = Some(http("3084", "api/health"))),
            "service naive: readiness path \"api/health\" must start with '/' and hold no spaces"
        );
        assert_eq!(
            err(&|s| s.ports[1].host_ip = Some("192.0.2.1".into())),
            "service naive: readiness port 3084 is published on 192.0.2.1, not on loopback: edge probes it from the host on loopback"
        );
    }

    #[test]
    fn the_hash_follows_mounted_file_contents_and_nothing_else() {
        let (svc, meta) = naive();
        let a = container_spec(&svc, &meta, &files(&[("naive", "/c/n.json", "{\"password\":\"a\"}")])).unwrap();
        let b = container_spec(&svc, &meta, &files(&[("naive", "/c/n.json", "{\"password\":\"b\"}")])).unwrap();
        let a2 = container_spec(&svc, &meta, &files(&[("naive", "/c/n.json", "{\"password\":\"a\"}")])).unwrap();
        let key = crate::testing::spec_key();
        assert_ne!(a.spec_hash(&key), b.spec_hash(&key));
        assert_eq!(a.spec_hash(&key), a2.spec_hash(&key));
        let mut labelled = a.clone();
        labelled.labels.insert(crate::LABEL_SPEC_HASH.into(), a.spec_hash(&key));
        assert_eq!(labelled.spec_hash(&key), a.spec_hash(&key), "the hash label does not feed the hash");
        // The secret itself appears nowhere in the spec.
        assert!(!serde_json::to_string(&a).unwrap().contains("password"));
    }

    #[test]
    fn the_hash_is_keyed_so_a_label_cannot_test_guessed_passwords() {
        use sha2::Digest;
        let (svc, meta) = naive();
        let spec = |password: &str| {
            let contents = format!("{{\"password\":\"{password}\"}}");
            container_spec(&svc, &meta, &files(&[("naive", "/c/n.json", &contents)])).unwrap()
        };
        let real = spec("hunter2");
        let (key, other) = (SpecHashKey::from_bytes([1; 32]), SpecHashKey::from_bytes([2; 32]));
        let label = real.spec_hash(&key);

        // The label is an HMAC-SHA256: 64 hex digits, but not the plain sha256 of the spec that
        // anyone could recompute for a guessed password.
        assert_eq!(label.len(), 64);
        assert!(label.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        let plain = |s: &ContainerSpec| hex::encode(sha2::Sha256::digest(serde_json::to_vec(s).unwrap()));
        assert_ne!(label, plain(&real), "the label is not the unkeyed hash");
        assert_ne!(spec("hunter2").spec_hash(&other), label, "another host's key, another label");
        assert_eq!(spec("hunter2").spec_hash(&key), label, "one key, one label: a re-run recreates nothing");

        // Without the key, guessing the right password yields nothing to compare with the label.
        let guesses = ["123456", "password", "hunter2"];
        assert!(guesses.iter().all(|g| plain(&spec(g)) != label && spec(g).spec_hash(&other) != label));

        // The construction: HMAC-SHA256 under the key, over the serialised spec.
        let mac = {
            use hmac::Mac;
            let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(key.as_bytes()).unwrap();
            mac.update(&serde_json::to_vec(&real).unwrap());
            hex::encode(mac.finalize().into_bytes())
        };
        assert_eq!(label, mac);
    }

    #[test]
    fn every_spec_drops_privileges_and_adds_back_only_what_the_manifest_names() {
        let (mut svc, meta) = naive();
        let files = files(&[("naive", "/c/n.json", "{}")]);
        let spec = container_spec(&svc, &meta, &files).unwrap();
        assert_eq!(spec.security.security_opt, ["no-new-privileges:true"]);
        assert_eq!(spec.security.cap_drop, ["ALL"]);
        assert!(spec.security.cap_add.is_empty());

        svc.cap_add = vec!["cap_net_bind_service".into()];
        svc.read_only = true;
        svc.tmpfs = vec!["/tmp".into(), "/run:size=8m".into()];
        let hardened = container_spec(&svc, &meta, &files).unwrap();
        assert_eq!(hardened.security.cap_add, ["NET_BIND_SERVICE"]);
        assert!(hardened.security.read_only);
        assert_eq!(
            hardened.security.tmpfs,
            BTreeMap::from([("/run".to_owned(), "size=8m".to_owned()), ("/tmp".to_owned(), String::new())])
        );
        let key = crate::testing::spec_key();
        assert_ne!(spec.spec_hash(&key), hardened.spec_hash(&key), "the settings are part of the hash");
    }

    #[test]
    fn invalid_services_are_errors_naming_the_service() {
        let check = |edit: &dyn Fn(&mut Service), expected: &str| {
            let (mut svc, meta) = naive();
            edit(&mut svc);
            let err = container_spec(&svc, &meta, &files(&[("naive", "/c/n.json", "")])).unwrap_err().to_string();
            assert_eq!(err, expected);
        };
        check(
            &|s| s.ports[0].host = "70000".into(),
            "service naive: host port \"70000\" is not a port number (1-65535)",
        );
        check(&|s| s.cap_add = vec!["ALL".into()], "service naive: cap_add \"ALL\" must name one capability, not ALL");
        check(&|s| s.tmpfs = vec!["tmp".into()], "service naive: tmpfs \"tmp\" must be an absolute path");
        check(
            &|s| s.ports[0].protocol = "icmp".into(),
            "service naive: port protocol \"icmp\" must be tcp, udp or sctp",
        );
        check(
            &|s| s.files[0].template = "other".into(),
            "service naive: mounts template \"other\", which was not rendered",
        );
        check(
            &|s| s.network_mode = Some("host".into()),
            "service naive: network aliases need the stack network, not network_mode \"host\"",
        );
        check(
            &|s| {
                s.network_mode = Some("host".into());
                s.aliases.clear();
            },
            "service naive: publishes ports but shares the host's network (network_mode = \"host\")",
        );
    }
}
