//! The container engine as the deployer sees it: a small trait and plain data.
//!
//! [`crate::docker::DockerEngine`] implements it on the Docker Engine API; unit
//! tests of the planner and deployer use an in-memory fake. Every method's error
//! already names its operation and object.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use edge_core::{Healthcheck, LogRotation, SpecHashKey};
use serde::Serialize;

use crate::registry::RegistryCredentials;
use crate::{DeployError, EngineError};

/// Label holding the keyed hash of a container's full spec (including mounted file contents):
/// see [`ContainerSpec::spec_hash`].
pub const LABEL_SPEC_HASH: &str = "edge.spec-hash";
/// Label naming the stack a container belongs to.
pub const LABEL_STACK: &str = "edge.stack";
/// Label naming the channel a container carries.
pub const LABEL_CHANNEL: &str = "edge.channel";
/// Label holding the container's host-side readiness probe ([`HostProbe`]), so that every
/// command that looks at the container knows how to probe it without re-rendering.
pub const LABEL_READINESS: &str = "edge.readiness";
/// Compose's project label: `docker compose ps/logs` find containers by it.
pub const LABEL_COMPOSE_PROJECT: &str = "com.docker.compose.project";
/// Compose's service label.
pub const LABEL_COMPOSE_SERVICE: &str = "com.docker.compose.service";

/// Everything needed to create one container. Serialised (labels included, the hash label
/// excluded) it is the input of [`ContainerSpec::spec_hash`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContainerSpec {
    /// Container name.
    pub name: String,
    /// Image reference.
    pub image: String,
    /// Command arguments (the image's entrypoint is kept).
    pub command: Vec<String>,
    /// Non-secret environment.
    pub env: BTreeMap<String, String>,
    /// Published ports.
    pub ports: Vec<PublishedPort>,
    /// Volumes, host paths and rendered files.
    pub mounts: Vec<Mount>,
    /// Which network the container joins.
    pub network: NetworkAttachment,
    /// User to run as.
    pub user: Option<String>,
    /// Health check.
    pub healthcheck: Option<Healthcheck>,
    /// Restart policy, e.g. `unless-stopped`.
    pub restart: String,
    /// json-file log rotation.
    pub logging: LogRotation,
    /// Labels (stack, channel, Compose project and service).
    pub labels: BTreeMap<String, String>,
    /// Privileges and root filesystem.
    pub security: Security,
}

/// What a container may do beyond running its process: least privilege by default.
///
/// The default is the floor every edge container gets: `no-new-privileges` and every
/// capability dropped, nothing added back, a writable root filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Security {
    /// `--security-opt` entries, e.g. `no-new-privileges:true`.
    pub security_opt: Vec<String>,
    /// Capabilities dropped (`ALL`).
    pub cap_drop: Vec<String>,
    /// Capabilities added back after the drop, as the manifest names them.
    pub cap_add: Vec<String>,
    /// Read-only root filesystem.
    pub read_only: bool,
    /// In-memory mounts: path → mount options (empty for Docker's defaults).
    pub tmpfs: BTreeMap<String, String>,
}

/// The security option that stops setuid binaries and file capabilities from raising privileges.
pub const NO_NEW_PRIVILEGES: &str = "no-new-privileges:true";

impl Default for Security {
    fn default() -> Self {
        Self {
            security_opt: vec![NO_NEW_PRIVILEGES.to_owned()],
            cap_drop: vec!["ALL".to_owned()],
            cap_add: Vec::new(),
            read_only: false,
            tmpfs: BTreeMap::new(),
        }
    }
}

impl ContainerSpec {
    /// The hex HMAC-SHA256 of the spec under the host's `key`, the [`LABEL_SPEC_HASH`] label
    /// left out: the value of that label. File mounts carry their content digest, so a changed
    /// rendered file changes the hash.
    ///
    /// Keyed, because the label is public (`docker inspect`) and the digests in the spec are of
    /// files holding credentials: a plain hash would let anyone who reads the label test
    /// guessed passwords offline. Under one key the hash is stable, so a re-run on an
    /// unchanged stack recreates nothing.
    pub fn spec_hash(&self, key: &SpecHashKey) -> String {
        use hmac::Mac;
        let mut spec = self.clone();
        spec.labels.remove(LABEL_SPEC_HASH);
        // Serialising plain data with string keys cannot fail.
        let bytes = serde_json::to_vec(&spec).unwrap_or_default();
        let mut mac =
            <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(key.as_bytes()).expect("HMAC takes a key of any length");
        mac.update(&bytes);
        hex::encode(mac.finalize().into_bytes())
    }

    /// The names of the named volumes it mounts.
    pub fn volume_names(&self) -> impl Iterator<Item = &str> {
        self.mounts.iter().filter(|m| m.kind == MountKind::Volume).map(|m| m.source.as_str())
    }

    /// The stack's bridge network it joins (shared or its own), if any.
    pub fn stack_network(&self) -> Option<&str> {
        match &self.network {
            NetworkAttachment::Stack { name, .. } => Some(name),
            NetworkAttachment::Mode(_) => None,
        }
    }
}

/// A published port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublishedPort {
    /// Host address; all addresses when `None`.
    pub host_ip: Option<String>,
    /// Host port.
    pub host_port: u16,
    /// Container port.
    pub container_port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
}

/// Something mounted into a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mount {
    /// Volume name or absolute host path.
    pub source: String,
    /// Path inside the container.
    pub target: String,
    /// Mounted read-only.
    pub read_only: bool,
    /// What the source is.
    pub kind: MountKind,
}

/// What a mount's source is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MountKind {
    /// A named volume.
    Volume,
    /// A host path.
    Bind,
    /// A rendered file (bind-mounted read-only); its content digest is part of the spec.
    File {
        /// Hex sha256 of the file's contents.
        digest: String,
    },
    /// A rendered file the service takes in place (`reload` in the manifest), bind-mounted
    /// read-only. Its contents are not part of the spec: a change is applied to the running
    /// container, which then keeps its id. A restart reads the file from the host path again
    /// (the engine binds the path anew at every start), so it sees the latest version.
    ReloadedFile,
    /// An anonymous volume: one the engine made and named itself (64 hex digits) for a path
    /// the container or its image declared. Containers report them in
    /// [`ContainerInfo::mounts`]; a recreated container inherits its predecessor's, mounted by
    /// name ([`Engine::create_container`]). A manifest never declares one.
    AnonymousVolume,
}

impl Mount {
    /// Its target with trailing slashes dropped (`/data/` and `/data` are one path).
    pub fn clean_target(&self) -> &str {
        match self.target.trim_end_matches('/') {
            "" => "/",
            t => t,
        }
    }
}

/// Whether a volume name is one the engine gives an anonymous volume: 64 lowercase hex digits.
pub(crate) fn is_anonymous_volume_name(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The network a container joins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkAttachment {
    /// The stack's own bridge network, with aliases.
    Stack {
        /// Network name.
        name: String,
        /// Aliases on it.
        aliases: Vec<String>,
    },
    /// A Docker network mode such as `host`.
    Mode(String),
}

/// A container as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerInfo {
    /// Full id.
    pub id: String,
    /// Name without the leading `/`.
    pub name: String,
    /// The image reference it was created from.
    pub image: String,
    /// The image id it runs.
    pub image_id: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Run state.
    pub status: ContainerStatus,
    /// Health as the engine's health check sees it.
    pub health: HealthStatus,
    /// Output of the last health check, if any.
    pub last_health_output: Option<String>,
    /// Exit code of the last run.
    pub exit_code: Option<i64>,
    /// How often the engine restarted it.
    pub restart_count: i64,
    /// What is mounted into it: volumes (named or [`MountKind::AnonymousVolume`]) and host
    /// paths ([`MountKind::Bind`], rendered files included). Tmpfs mounts are left out.
    pub mounts: Vec<Mount>,
}

impl ContainerInfo {
    /// Its spec-hash label.
    pub fn spec_hash(&self) -> Option<&str> {
        self.labels.get(LABEL_SPEC_HASH).map(String::as_str)
    }

    /// The stack its labels name.
    pub fn stack(&self) -> Option<&str> {
        self.labels.get(LABEL_STACK).map(String::as_str)
    }

    /// Its anonymous volumes ([`MountKind::AnonymousVolume`]).
    pub fn anonymous_volumes(&self) -> impl Iterator<Item = &Mount> {
        self.mounts.iter().filter(|m| m.kind == MountKind::AnonymousVolume)
    }

    /// Its host-side readiness probe, if its [`LABEL_READINESS`] label names one; a label that
    /// does not parse is an error saying so.
    pub fn host_probe(&self) -> Result<Option<HostProbe>, String> {
        self.labels.get(LABEL_READINESS).map(|t| HostProbe::parse(t)).transpose()
    }

    /// Whether it is running and, if it has a health check, healthy. A host-side probe
    /// ([`ContainerInfo::host_probe`]) is not run here: see [`crate::Prober::probe_container`].
    pub fn is_ready(&self) -> bool {
        self.status == ContainerStatus::Running && matches!(self.health, HealthStatus::Healthy | HealthStatus::None)
    }
}

/// A readiness probe edge runs from the host, against a published port on loopback. Its text
/// form (the [`LABEL_READINESS`] label) is `http://127.0.0.1:3083/api/health` or
/// `tcp://127.0.0.1:3083`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HostProbe {
    /// Ready when `GET http://ADDR/PATH` answers 2xx.
    Http {
        /// Loopback address and host port.
        addr: SocketAddr,
        /// Path, starting with `/`.
        path: String,
    },
    /// Ready when a connection to `ADDR` is accepted and not closed at once.
    Tcp {
        /// Loopback address and host port.
        addr: SocketAddr,
    },
}

impl HostProbe {
    /// Parses the text form; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("readiness probe {text:?} {why}");
        let addr = |a: &str| a.parse::<SocketAddr>().map_err(|_| bad("does not name a loopback address and port"));
        let probe = if let Some(rest) = text.strip_prefix("http://") {
            let (a, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
            if !is_probe_path(path) {
                return Err(bad("needs a path starting with '/' and holding no spaces"));
            }
            Self::Http { addr: addr(a)?, path: path.to_owned() }
        } else if let Some(rest) = text.strip_prefix("tcp://") {
            Self::Tcp { addr: addr(rest)? }
        } else {
            return Err(bad("must start with http:// or tcp://"));
        };
        if !probe.addr().ip().is_loopback() {
            return Err(bad("must target loopback"));
        }
        Ok(probe)
    }

    /// The address it dials.
    pub fn addr(&self) -> SocketAddr {
        match self {
            Self::Http { addr, .. } | Self::Tcp { addr } => *addr,
        }
    }
}

/// A path a probe may GET: starts with `/`, no whitespace or control characters.
pub(crate) fn is_probe_path(path: &str) -> bool {
    path.starts_with('/') && !path.chars().any(|c| c.is_whitespace() || c.is_control())
}

impl std::fmt::Display for HostProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Http { addr, path } => write!(f, "http://{addr}{path}"),
            Self::Tcp { addr } => write!(f, "tcp://{addr}"),
        }
    }
}

/// Run state of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerStatus {
    /// Created, never started.
    Created,
    /// Running.
    Running,
    /// Paused.
    Paused,
    /// Being restarted by its restart policy.
    Restarting,
    /// Being removed.
    Removing,
    /// Exited.
    Exited,
    /// Dead.
    Dead,
    /// Absent (no such container).
    Missing,
}

impl ContainerStatus {
    /// The engine's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Restarting => "restarting",
            Self::Removing => "removing",
            Self::Exited => "exited",
            Self::Dead => "dead",
            Self::Missing => "missing",
        }
    }
}

impl std::fmt::Display for ContainerStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Health of a container as its engine health check reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// It has no health check.
    None,
    /// Checks have not passed yet.
    Starting,
    /// The last checks passed.
    Healthy,
    /// Checks failed `retries` times in a row.
    Unhealthy,
}

impl HealthStatus {
    /// The engine's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Starting => "starting",
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
        }
    }
}

impl std::fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the engine says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EngineVersion {
    /// Engine version, e.g. `20.10.24`.
    pub version: String,
    /// API version it speaks, e.g. `1.41`.
    pub api_version: String,
    /// Where it is.
    pub endpoint: String,
}

/// How far a pull has got, summed over the image's layers the engine has announced so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PullProgress {
    /// Bytes downloaded.
    pub downloaded: u64,
    /// Bytes to download, as far as known.
    pub total: u64,
}

/// An image the engine pulled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PulledImage {
    /// The reference pulled.
    pub reference: String,
    /// The id the engine now has for it.
    pub id: String,
    /// Its size on the engine, in bytes.
    pub size: u64,
}

/// Checks that `path` is a plain relative path inside a volume: not empty, no leading `/`,
/// and no `.`, `..` or empty parts, so that it can never leave the volume.
pub(crate) fn check_volume_path(volume: &str, path: &str) -> Result<(), DeployError> {
    let plain = |part: &str| !matches!(part, "" | "." | "..") && !part.contains('\0');
    if path.split('/').all(plain) {
        Ok(())
    } else {
        Err(DeployError::InvalidVolumePath { volume: volume.to_owned(), path: path.to_owned() })
    }
}

/// The container engine operations the deployer needs.
///
/// Methods return [`DeployError`]s that already name the operation and its object.
pub trait Engine: Send + Sync {
    /// Version and API version of the engine.
    fn version(&self) -> impl Future<Output = Result<EngineVersion, DeployError>> + Send;

    /// All containers (running or not) carrying label `key=value`.
    fn list_containers(
        &self,
        key: &str,
        value: &str,
    ) -> impl Future<Output = Result<Vec<ContainerInfo>, DeployError>> + Send;

    /// A container by name; `None` if there is none.
    fn inspect_container(&self, name: &str) -> impl Future<Output = Result<Option<ContainerInfo>, DeployError>> + Send;

    /// Creates a container (not started) from `spec`, labelled with exactly the spec's labels
    /// (the planner has put the keyed [`LABEL_SPEC_HASH`] among them); returns its id.
    ///
    /// `inherited` are mounted too: the anonymous volumes of the container it replaces, at
    /// the paths they had there (see [`crate::Action::Recreate`]). They are not part of the
    /// spec and do not enter its hash. A volume the image declares at a path no mount covers
    /// gets a fresh anonymous volume, as the engine always does.
    fn create_container(
        &self,
        spec: &ContainerSpec,
        inherited: &[Mount],
    ) -> impl Future<Output = Result<String, DeployError>> + Send;

    /// Starts a container; starting a running one is not an error.
    fn start_container(&self, name: &str) -> impl Future<Output = Result<(), DeployError>> + Send;

    /// Stops a container, killing it after `grace`; stopping a stopped one is not an error.
    fn stop_container(&self, name: &str, grace: Duration) -> impl Future<Output = Result<(), DeployError>> + Send;

    /// Restarts a container.
    fn restart_container(&self, name: &str, grace: Duration) -> impl Future<Output = Result<(), DeployError>> + Send;

    /// Removes a container (forcibly); returns `false` if it did not exist.
    ///
    /// Its volumes stay, anonymous ones included: data goes only when a volume is removed by
    /// name ([`Engine::remove_volume`]).
    fn remove_container(&self, name: &str) -> impl Future<Output = Result<bool, DeployError>> + Send;

    /// Renames a container (`docker rename`); its volumes and state stay as they are.
    fn rename_container(&self, name: &str, new_name: &str) -> impl Future<Output = Result<(), DeployError>> + Send;

    /// Sends a signal to a container's main process.
    fn kill_container(&self, name: &str, signal: &str) -> impl Future<Output = Result<(), DeployError>> + Send;

    /// The id of an image; `None` if the engine does not have it.
    fn image_id(&self, reference: &str) -> impl Future<Output = Result<Option<String>, DeployError>> + Send;

    /// Pulls `reference` from its registry with `credentials` (none: anonymously), telling
    /// `on_progress` how far it got. The error is the engine's answer, which
    /// [`crate::registry::pull`] turns into one naming the image and the registry.
    fn pull_image(
        &self,
        reference: &str,
        credentials: Option<&RegistryCredentials>,
        on_progress: &(dyn Fn(PullProgress) + Send + Sync),
    ) -> impl Future<Output = Result<PulledImage, EngineError>> + Send;

    /// Creates a bridge network unless it exists; returns whether it was created.
    fn ensure_network(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<bool, DeployError>> + Send;

    /// Removes a network; returns `false` if it did not exist.
    fn remove_network(&self, name: &str) -> impl Future<Output = Result<bool, DeployError>> + Send;

    /// Creates a named volume unless it exists; returns whether it was created.
    fn ensure_volume(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<bool, DeployError>> + Send;

    /// Removes a named volume and its data; returns `false` if it did not exist.
    fn remove_volume(&self, name: &str) -> impl Future<Output = Result<bool, DeployError>> + Send;

    /// Whether a named volume exists.
    fn volume_exists(&self, name: &str) -> impl Future<Output = Result<bool, DeployError>> + Send;

    /// The named volumes labelled `key=value`, sorted.
    fn volumes_labelled(&self, key: &str, value: &str)
    -> impl Future<Output = Result<Vec<String>, DeployError>> + Send;

    /// Writes `contents` to the file at `path` inside named volume `volume`, creating its
    /// parent folders and replacing a file already there. `path` is relative to the volume
    /// (`gate/marker`); an absolute path or one with `.`, `..` or empty parts is refused.
    ///
    /// The volume must exist. The engine may need a container to reach the volume: it is
    /// created from `helper_image` (which needs no shell; `FROM scratch` will do), never
    /// started, and removed afterwards.
    fn write_volume_file(
        &self,
        volume: &str,
        path: &str,
        contents: &[u8],
        helper_image: &str,
    ) -> impl Future<Output = Result<(), DeployError>> + Send;

    /// Copies everything in volume `from` (named or anonymous) into volume `to`, both existing:
    /// file contents, modes, owners and times as they are, replacing files `to` has at the
    /// same paths. `helper_image` is as for [`Engine::write_volume_file`].
    fn copy_volume(
        &self,
        from: &str,
        to: &str,
        helper_image: &str,
    ) -> impl Future<Output = Result<(), DeployError>> + Send;

    /// The contents of the file at `path` inside named volume `volume`; `None` if there is
    /// no such file or no such volume. `path` and `helper_image` are as for
    /// [`Engine::write_volume_file`]; a folder at `path` is an error.
    fn read_volume_file(
        &self,
        volume: &str,
        path: &str,
        helper_image: &str,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, DeployError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_paths_must_stay_inside_the_volume() {
        let check = |path: &str, ok: bool| assert_eq!(check_volume_path("v", path).is_ok(), ok, "{path:?}");
        check("marker", true);
        check("gate/marker", true);
        check(".edge-gate", true);
        check("a..b/c", true);
        check("", false);
        check("/marker", false);
        check("/", false);
        check("..", false);
        check("../marker", false);
        check("gate/../../marker", false);
        check("./marker", false);
        check("gate//marker", false);
        check("gate/", false);
        check("nul\0byte", false);
    }

    #[test]
    fn host_probes_read_back_from_their_label() {
        for text in ["http://127.0.0.1:3083/api/health", "tcp://127.0.0.1:1080", "http://[::1]:80/a?b=c"] {
            assert_eq!(HostProbe::parse(text).unwrap().to_string(), text);
        }
        let check = |text: &str, why: &str| {
            assert_eq!(HostProbe::parse(text).unwrap_err(), format!("readiness probe {text:?} {why}"));
        };
        check("http://127.0.0.1:80", "needs a path starting with '/' and holding no spaces");
        check("http://127.0.0.1:80/a b", "needs a path starting with '/' and holding no spaces");
        check("tcp://10.0.0.1:80", "must target loopback");
        check("tcp://localhost:80", "does not name a loopback address and port");
        check("udp://127.0.0.1:80", "must start with http:// or tcp://");
    }

    #[test]
    fn mount_targets_compare_without_trailing_slashes() {
        let target =
            |t: &str| Mount { source: "v".into(), target: t.into(), read_only: false, kind: MountKind::Volume };
        assert_eq!(target("/data/").clean_target(), "/data");
        assert_eq!(target("/data").clean_target(), "/data");
        assert_eq!(target("/").clean_target(), "/");
        assert!(is_anonymous_volume_name(&"0a".repeat(32)));
        assert!(!is_anonymous_volume_name("caddy_data") && !is_anonymous_volume_name(&"0A".repeat(32)));
    }

    proptest::proptest! {
        #[test]
        fn accepted_volume_paths_never_leave_the_volume(path in "[a-z./]{0,12}") {
            if check_volume_path("v", &path).is_ok() {
                let joined = std::path::Path::new("/edge-volume").join(&path);
                let mut depth = 0i32;
                for c in joined.components().skip(2) {
                    match c {
                        std::path::Component::Normal(_) => depth += 1,
                        _ => depth -= 1,
                    }
                    proptest::prop_assert!(depth > 0, "{path:?} leaves the volume");
                }
                proptest::prop_assert!(depth > 0, "{path:?} names the volume itself");
            }
        }
    }
}
