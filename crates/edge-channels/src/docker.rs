//! [`Engine`] on the Docker Engine API (bollard), negotiating the API version so that
//! engines from API 1.41 (Docker 20.10) on work.
//!
//! No bollard type leaves this module: answers become [`ContainerInfo`] and friends,
//! failures become [`DeployError`] variants naming the operation and its object.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum, EndpointSettings, HealthConfig,
    HealthStatusEnum, HostConfig, HostConfigLogConfig, MountPoint, NetworkCreateRequest, NetworkingConfig, PortBinding,
    RestartPolicy, RestartPolicyNameEnum, VolumeCreateRequest,
};
use bollard::query_parameters::CreateImageOptions;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, DownloadFromContainerOptionsBuilder, KillContainerOptionsBuilder,
    ListContainersOptionsBuilder, ListVolumesOptionsBuilder, RemoveContainerOptionsBuilder, RemoveVolumeOptionsBuilder,
    RenameContainerOptionsBuilder, RestartContainerOptionsBuilder, StopContainerOptionsBuilder,
    UploadToContainerOptionsBuilder,
};
use futures_util::{StreamExt, TryStreamExt};

use crate::engine::{
    ContainerInfo, ContainerSpec, ContainerStatus, Engine, EngineVersion, HealthStatus, Mount, MountKind,
    NetworkAttachment, PullProgress, PulledImage, check_volume_path, is_anonymous_volume_name,
};
use crate::registry::RegistryCredentials;
use crate::{DeployError, EngineError};

/// The oldest engine API the driver is tested against (Docker 20.10).
pub const MIN_API_VERSION: (u32, u32) = (1, 41);

/// The Docker engine, through its API.
#[derive(Debug, Clone)]
pub struct DockerEngine {
    docker: Docker,
    endpoint: String,
}

/// The engine's archive of [`COPY_SOURCE`] rebased onto [`HELPER_MOUNT`]: every entry (the
/// folder itself included, so the volume root keeps its owner and mode) keeps its header and
/// contents, only the first part of its path (and of a hard link's target) changes.
fn rebase_archive(archive: &[u8]) -> std::io::Result<Vec<u8>> {
    let from = COPY_SOURCE.trim_start_matches('/');
    let to = HELPER_MOUNT.trim_start_matches('/');
    let rebase = |path: &std::path::Path| -> std::io::Result<std::path::PathBuf> {
        let rest = path
            .strip_prefix(from)
            .map_err(|_| std::io::Error::other(format!("entry {} lies outside {COPY_SOURCE}", path.display())))?;
        Ok(std::path::Path::new(to).join(rest))
    };
    let mut source = tar::Archive::new(archive);
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    for entry in source.entries()? {
        let mut entry = entry?;
        let path = rebase(&entry.path()?)?;
        let mut header = entry.header().clone();
        let kind = header.entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            let target = entry.link_name()?.unwrap_or_default().into_owned();
            let target = if kind.is_hard_link() { rebase(&target)? } else { target };
            builder.append_link(&mut header, &path, &target)?;
        } else {
            let mut contents = Vec::new();
            entry.read_to_end(&mut contents)?;
            builder.append_data(&mut header, &path, contents.as_slice())?;
        }
    }
    builder.into_inner()
}

impl DockerEngine {
    /// Connects to the engine `DOCKER_HOST` names (the local socket by default), negotiates the
    /// API version and checks it is at least [`MIN_API_VERSION`].
    pub async fn connect() -> Result<Self, DeployError> {
        let endpoint = std::env::var("DOCKER_HOST")
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "unix:///var/run/docker.sock".to_owned());
        let unreachable = |e: bollard::errors::Error| DeployError::EngineUnreachable {
            endpoint: endpoint.clone(),
            source: engine_error(e),
        };
        let docker = Docker::connect_with_defaults()
            .map_err(unreachable)?
            .with_timeout(Duration::from_secs(120))
            .negotiate_version()
            .await
            .map_err(unreachable)?;
        let engine = Self { docker, endpoint };
        let version = engine.version().await?;
        if !api_at_least(&version.api_version, MIN_API_VERSION) {
            return Err(DeployError::ApiTooOld {
                endpoint: engine.endpoint.clone(),
                found: version.api_version,
                required: format!("{}.{}", MIN_API_VERSION.0, MIN_API_VERSION.1),
            });
        }
        Ok(engine)
    }

    /// Where the engine is.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

/// The repository and the tag (or digest) the engine's pull takes for `reference`; no tag
/// means `latest`, as the docker CLI pulls.
fn pull_target(reference: &str) -> (&str, &str) {
    if let Some((repo, digest)) = reference.split_once('@') {
        return (repo, digest);
    }
    let (repo, tag) = crate::image::split_reference(reference);
    (repo, tag.unwrap_or("latest"))
}

/// Whether `version` (`MAJOR.MINOR`) is at least `min`.
fn api_at_least(version: &str, min: (u32, u32)) -> bool {
    let mut parts = version.trim().split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    found >= min
}

fn engine_error(e: bollard::errors::Error) -> EngineError {
    match e {
        bollard::errors::Error::DockerResponseServerError { status_code, message } => {
            EngineError::new(Some(status_code), message.trim().to_owned())
        }
        other => EngineError::new(None, other.to_string()),
    }
}

fn info_of(c: ContainerInspectResponse) -> ContainerInfo {
    let state = c.state.unwrap_or_default();
    let status = match state.status {
        Some(ContainerStateStatusEnum::CREATED) => ContainerStatus::Created,
        Some(ContainerStateStatusEnum::RUNNING) => ContainerStatus::Running,
        Some(ContainerStateStatusEnum::PAUSED) => ContainerStatus::Paused,
        Some(ContainerStateStatusEnum::RESTARTING) => ContainerStatus::Restarting,
        Some(ContainerStateStatusEnum::REMOVING) => ContainerStatus::Removing,
        Some(ContainerStateStatusEnum::EXITED) => ContainerStatus::Exited,
        Some(ContainerStateStatusEnum::DEAD) => ContainerStatus::Dead,
        _ => ContainerStatus::Missing,
    };
    let health_state = state.health.unwrap_or_default();
    let health = match health_state.status {
        Some(HealthStatusEnum::STARTING) => HealthStatus::Starting,
        Some(HealthStatusEnum::HEALTHY) => HealthStatus::Healthy,
        Some(HealthStatusEnum::UNHEALTHY) => HealthStatus::Unhealthy,
        _ => HealthStatus::None,
    };
    let last_health_output = health_state.log.and_then(|log| log.into_iter().last()).and_then(|r| r.output);
    let config = c.config.unwrap_or_default();
    ContainerInfo {
        id: c.id.unwrap_or_default(),
        name: c.name.unwrap_or_default().trim_start_matches('/').to_owned(),
        image: config.image.unwrap_or_default(),
        image_id: c.image.unwrap_or_default(),
        labels: config.labels.unwrap_or_default().into_iter().collect(),
        status,
        health,
        last_health_output,
        exit_code: state.exit_code,
        restart_count: c.restart_count.unwrap_or_default(),
        mounts: c.mounts.unwrap_or_default().into_iter().filter_map(mount_of).collect(),
    }
}

/// A mount as the engine reports it; `None` for tmpfs and other kinds that hold no data.
fn mount_of(m: MountPoint) -> Option<Mount> {
    let target = m.destination.filter(|d| !d.is_empty())?;
    let read_only = m.rw == Some(false);
    match m.typ.as_deref() {
        Some("volume") => {
            let name = m.name.filter(|n| !n.is_empty())?;
            let kind = if is_anonymous_volume_name(&name) { MountKind::AnonymousVolume } else { MountKind::Volume };
            Some(Mount { source: name, target, read_only, kind })
        }
        Some("bind") => {
            Some(Mount { source: m.source.filter(|s| !s.is_empty())?, target, read_only, kind: MountKind::Bind })
        }
        _ => None,
    }
}

fn restart_policy(text: &str) -> RestartPolicy {
    let (name, count) = text.split_once(':').unwrap_or((text, ""));
    let name = match name.trim() {
        "always" => RestartPolicyNameEnum::ALWAYS,
        "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
        "no" | "" => RestartPolicyNameEnum::NO,
        _ => RestartPolicyNameEnum::UNLESS_STOPPED,
    };
    RestartPolicy { name: Some(name), maximum_retry_count: count.trim().parse().ok() }
}

const NANOS: i64 = 1_000_000_000;

/// The engine's create request for a spec, `inherited` mounted besides the spec's mounts;
/// labels are the spec's, the keyed spec hash the planner put there included.
fn create_body(spec: &ContainerSpec, inherited: &[Mount]) -> ContainerCreateBody {
    let labels: HashMap<String, String> = spec.labels.clone().into_iter().collect();

    let mut port_bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for p in &spec.ports {
        let key = format!("{}/{}", p.container_port, p.protocol);
        let binding = PortBinding { host_ip: p.host_ip.clone(), host_port: Some(p.host_port.to_string()) };
        port_bindings.entry(key).or_insert_with(|| Some(Vec::new())).get_or_insert_with(Vec::new).push(binding);
    }
    let mut exposed: Vec<String> = port_bindings.keys().cloned().collect();
    exposed.sort();

    // An anonymous volume is mounted by its name, as a named one: the engine then uses it
    // instead of making a fresh one for a path the image declares.
    let binds: Vec<String> = spec
        .mounts
        .iter()
        .chain(inherited)
        .map(|m| {
            let ro = m.read_only || matches!(m.kind, MountKind::File { .. } | MountKind::ReloadedFile);
            format!("{}:{}{}", m.source, m.target, if ro { ":ro" } else { "" })
        })
        .collect();

    let (network_mode, networking_config) = match &spec.network {
        NetworkAttachment::Stack { name, aliases } => {
            let endpoint =
                EndpointSettings { aliases: (!aliases.is_empty()).then(|| aliases.clone()), ..Default::default() };
            (name.clone(), Some(NetworkingConfig { endpoints_config: Some(HashMap::from([(name.clone(), endpoint)])) }))
        }
        NetworkAttachment::Mode(mode) => (mode.clone(), None),
    };

    let healthcheck = spec.healthcheck.as_ref().map(|h| HealthConfig {
        test: Some(h.test.clone()),
        interval: Some(h.interval_secs as i64 * NANOS),
        timeout: Some(h.timeout_secs as i64 * NANOS),
        retries: Some(i64::from(h.retries)),
        start_period: Some(h.start_period_secs as i64 * NANOS),
        start_interval: None,
    });

    let log_config = HostConfigLogConfig {
        typ: Some("json-file".to_owned()),
        config: Some(HashMap::from([
            ("max-size".to_owned(), spec.logging.max_size.clone()),
            ("max-file".to_owned(), spec.logging.max_file.to_string()),
        ])),
    };

    ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: (!spec.command.is_empty()).then(|| spec.command.clone()),
        env: (!spec.env.is_empty()).then(|| spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        user: spec.user.clone(),
        labels: Some(labels),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        healthcheck,
        host_config: Some(HostConfig {
            binds: (!binds.is_empty()).then_some(binds),
            port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
            restart_policy: Some(restart_policy(&spec.restart)),
            log_config: Some(log_config),
            network_mode: Some(network_mode),
            security_opt: Some(spec.security.security_opt.clone()),
            cap_drop: Some(spec.security.cap_drop.clone()),
            cap_add: (!spec.security.cap_add.is_empty()).then(|| spec.security.cap_add.clone()),
            readonly_rootfs: Some(spec.security.read_only),
            tmpfs: (!spec.security.tmpfs.is_empty())
                .then(|| spec.security.tmpfs.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
            ..Default::default()
        }),
        networking_config,
        ..Default::default()
    }
}

/// Where a volume helper container mounts the volume.
const HELPER_MOUNT: &str = "/edge-volume";
/// Where a volume helper container mounts the volume it copies from.
const COPY_SOURCE: &str = "/edge-copy-source";
/// Label naming the volume a helper container was made to reach, so that a leftover one is
/// easy to find (`docker ps -a --filter label=edge.volume-helper`).
const LABEL_VOLUME_HELPER: &str = "edge.volume-helper";

/// A container name no other helper, of this process or another, uses.
fn helper_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    format!("edge-volume-helper-{}-{nanos}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The create request of a container that only holds `volume` at [`HELPER_MOUNT`] for the
/// archive API: it is never started, has no network, and its entrypoint is a path no image
/// has, so that even a mistaken start runs nothing. Creating needs a command, not a shell.
///
/// With `copy_from`, that volume is mounted too, read-only at [`COPY_SOURCE`].
fn helper_body(volume: &str, copy_from: Option<&str>, helper_image: &str) -> ContainerCreateBody {
    let mut binds = vec![format!("{volume}:{HELPER_MOUNT}")];
    binds.extend(copy_from.map(|from| format!("{from}:{COPY_SOURCE}:ro")));
    ContainerCreateBody {
        image: Some(helper_image.to_owned()),
        entrypoint: Some(vec!["/edge-volume-helper-never-runs".to_owned()]),
        labels: Some(HashMap::from([(LABEL_VOLUME_HELPER.to_owned(), volume.to_owned())])),
        network_disabled: Some(true),
        host_config: Some(HostConfig {
            binds: Some(binds),
            network_mode: Some("none".to_owned()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A tar archive holding one file, `path`, with `contents`, owned by root, mode 0644.
fn file_archive(path: &str, contents: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut header = tar::Header::new_gnu();
    header.set_size(contents.len() as u64);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs());
    let mut builder = tar::Builder::new(Vec::new());
    builder.append_data(&mut header, path, contents)?;
    builder.into_inner()
}

/// The contents of the one file in the archive the engine returns for a file's path; an
/// error if the path is a folder, a link or anything but a regular file.
fn file_from_archive(archive: &[u8]) -> Result<Vec<u8>, String> {
    let mut archive = tar::Archive::new(archive);
    let mut entries = archive.entries().map_err(|e| format!("unreadable archive from the engine: {e}"))?;
    let mut entry = match entries.next() {
        Some(entry) => entry.map_err(|e| format!("unreadable archive from the engine: {e}"))?,
        None => return Err("the engine returned an empty archive".to_owned()),
    };
    let kind = entry.header().entry_type();
    if kind.is_dir() {
        return Err("it is a folder, not a file".to_owned());
    }
    if !kind.is_file() {
        return Err("it is a link or a special file, not a regular file".to_owned());
    }
    let mut contents = Vec::new();
    entry.read_to_end(&mut contents).map_err(|e| format!("unreadable archive from the engine: {e}"))?;
    Ok(contents)
}

impl DockerEngine {
    /// Whether `volume` exists; an engine failure goes through `error`, the operation's.
    async fn has_volume(&self, volume: &str, error: impl Fn(EngineError) -> DeployError) -> Result<bool, DeployError> {
        match self.docker.inspect_volume(volume).await {
            Ok(_) => Ok(true),
            Err(e) => match engine_error(e) {
                e if e.is_not_found() => Ok(false),
                e => Err(error(e)),
            },
        }
    }

    /// Runs `op` on a fresh helper container that holds `volume` (see [`helper_body`]) and
    /// removes the container afterwards, whether `op` succeeded or not. A removal that fails
    /// after `op` succeeded is the error, so that no helper is left behind unnoticed. The
    /// caller checks that `volume` exists: the engine would create a missing one, unlabelled.
    ///
    /// `error` turns an engine failure into the operation's [`DeployError`].
    async fn with_volume_helper<T, F>(
        &self,
        volume: &str,
        copy_from: Option<&str>,
        helper_image: &str,
        error: impl Fn(EngineError) -> DeployError,
        op: impl FnOnce(String) -> F,
    ) -> Result<T, DeployError>
    where
        F: Future<Output = Result<T, DeployError>>,
    {
        let name = helper_name();
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        self.docker.create_container(Some(options), helper_body(volume, copy_from, helper_image)).await.map_err(
            |e| {
                let e = engine_error(e);
                if e.is_not_found() {
                    error(EngineError::new(
                        e.status,
                        format!("{}; build or load helper image {helper_image}", e.message),
                    ))
                } else {
                    error(e)
                }
            },
        )?;
        let result = op(name.clone()).await;
        // `v` removes only the anonymous volumes this never-started helper got for paths its
        // image declares, never `volume`, which it mounts by name.
        let options = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
        let removed = match self.docker.remove_container(&name, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) => match engine_error(e) {
                e if e.is_not_found() => Ok(()),
                source => Err(DeployError::RemoveContainer { name: name.clone(), source }),
            },
        };
        match (result, removed) {
            (Ok(value), Ok(())) => Ok(value),
            (Ok(_), Err(e)) => Err(e),
            (Err(e), Ok(())) => Err(e),
            (Err(e), Err(removal)) => {
                tracing::warn!(container = %name, "volume helper left behind: {removal}");
                Err(e)
            }
        }
    }
}

impl Engine for DockerEngine {
    async fn version(&self) -> Result<EngineVersion, DeployError> {
        let v = self
            .docker
            .version()
            .await
            .map_err(|e| DeployError::EngineUnreachable { endpoint: self.endpoint.clone(), source: engine_error(e) })?;
        Ok(EngineVersion {
            version: v.version.unwrap_or_default(),
            api_version: v.api_version.unwrap_or_default(),
            endpoint: self.endpoint.clone(),
        })
    }

    async fn list_containers(&self, key: &str, value: &str) -> Result<Vec<ContainerInfo>, DeployError> {
        let filter = format!("{key}={value}");
        let filters = HashMap::from([("label".to_owned(), vec![filter.clone()])]);
        let options = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
        let summaries = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| DeployError::ListContainers { filter: format!("label {filter}"), source: engine_error(e) })?;
        let mut out = Vec::new();
        for s in summaries {
            let Some(id) = s.id else { continue };
            // A container removed between the list and the inspect is simply gone.
            if let Some(info) = self.inspect_container(&id).await? {
                out.push(info);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn inspect_container(&self, name: &str) -> Result<Option<ContainerInfo>, DeployError> {
        match self.docker.inspect_container(name, None).await {
            Ok(c) => Ok(Some(info_of(c))),
            Err(e) => match engine_error(e) {
                e if e.is_not_found() => Ok(None),
                source => Err(DeployError::InspectContainer { name: name.to_owned(), source }),
            },
        }
    }

    async fn create_container(&self, spec: &ContainerSpec, inherited: &[Mount]) -> Result<String, DeployError> {
        let options = CreateContainerOptionsBuilder::default().name(&spec.name).build();
        let created = self
            .docker
            .create_container(Some(options), create_body(spec, inherited))
            .await
            .map_err(|e| DeployError::CreateContainer { name: spec.name.clone(), source: engine_error(e) })?;
        for w in created.warnings.iter().filter(|w| !w.trim().is_empty()) {
            tracing::warn!(container = %spec.name, "engine warning: {w}");
        }
        Ok(created.id)
    }

    async fn start_container(&self, name: &str) -> Result<(), DeployError> {
        match self.docker.start_container(name, None).await {
            Ok(()) => Ok(()),
            Err(e) => match engine_error(e) {
                e if e.is_not_modified() => Ok(()),
                source => Err(DeployError::StartContainer { name: name.to_owned(), source }),
            },
        }
    }

    async fn stop_container(&self, name: &str, grace: Duration) -> Result<(), DeployError> {
        let t = i32::try_from(grace.as_secs()).unwrap_or(i32::MAX);
        let options = StopContainerOptionsBuilder::default().t(t).build();
        match self.docker.stop_container(name, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) => match engine_error(e) {
                e if e.is_not_modified() || e.is_not_found() => Ok(()),
                source => Err(DeployError::StopContainer { name: name.to_owned(), source }),
            },
        }
    }

    async fn restart_container(&self, name: &str, grace: Duration) -> Result<(), DeployError> {
        let t = i32::try_from(grace.as_secs()).unwrap_or(i32::MAX);
        let options = RestartContainerOptionsBuilder::default().t(t).build();
        self.docker
            .restart_container(name, Some(options))
            .await
            .map_err(|e| DeployError::RestartContainer { name: name.to_owned(), source: engine_error(e) })
    }

    async fn remove_container(&self, name: &str) -> Result<bool, DeployError> {
        // Never `v`: anonymous volumes hold data too (a Caddy's certificates); they outlive
        // the container, and a recreated one mounts them again.
        let options = RemoveContainerOptionsBuilder::default().force(true).v(false).build();
        match self.docker.remove_container(name, Some(options)).await {
            Ok(()) => Ok(true),
            Err(e) => match engine_error(e) {
                e if e.is_not_found() => Ok(false),
                source => Err(DeployError::RemoveContainer { name: name.to_owned(), source }),
            },
        }
    }

    async fn rename_container(&self, name: &str, new_name: &str) -> Result<(), DeployError> {
        let options = RenameContainerOptionsBuilder::default().name(new_name).build();
        self.docker.rename_container(name, options).await.map_err(|e| DeployError::RenameContainer {
            name: name.to_owned(),
            new_name: new_name.to_owned(),
            source: engine_error(e),
        })
    }

    async fn kill_container(&self, name: &str, signal: &str) -> Result<(), DeployError> {
        let options = KillContainerOptionsBuilder::default().signal(signal).build();
        self.docker.kill_container(name, Some(options)).await.map_err(|e| DeployError::KillContainer {
            name: name.to_owned(),
            signal: signal.to_owned(),
            source: engine_error(e),
        })
    }

    async fn image_id(&self, reference: &str) -> Result<Option<String>, DeployError> {
        match self.docker.inspect_image(reference).await {
            Ok(image) => Ok(image.id),
            Err(e) => match engine_error(e) {
                e if e.is_not_found() => Ok(None),
                source => Err(DeployError::InspectImage { image: reference.to_owned(), source }),
            },
        }
    }

    async fn pull_image(
        &self,
        reference: &str,
        credentials: Option<&RegistryCredentials>,
        on_progress: &(dyn Fn(PullProgress) + Send + Sync),
    ) -> Result<PulledImage, EngineError> {
        let (repo, tag) = pull_target(reference);
        // An empty tag would pull every tag of the repository.
        let options =
            CreateImageOptions { from_image: Some(repo.to_owned()), tag: Some(tag.to_owned()), ..Default::default() };
        let credentials = credentials.map(|c| DockerCredentials {
            username: Some(c.username.clone()),
            password: Some(c.password.clone()),
            serveraddress: Some(crate::registry::registry_of(reference).to_owned()),
            ..Default::default()
        });
        let mut stream = self.docker.create_image(Some(options), None, credentials);
        let mut layers: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        while let Some(item) = stream.next().await {
            let info = item.map_err(engine_error)?;
            let (Some(id), Some(detail)) = (info.id, info.progress_detail) else { continue };
            if info.status.as_deref() != Some("Downloading") {
                continue;
            }
            let clamp = |v: Option<i64>| v.map_or(0, |v| v.max(0) as u64);
            layers.insert(id, (clamp(detail.current), clamp(detail.total)));
            let (downloaded, total) = layers.values().fold((0, 0), |(d, t), (c, n)| (d + c, t + n));
            on_progress(PullProgress { downloaded, total });
        }
        let image = self.docker.inspect_image(reference).await.map_err(engine_error)?;
        Ok(PulledImage {
            reference: reference.to_owned(),
            id: image.id.unwrap_or_default(),
            size: image.size.map_or(0, |s| s.max(0) as u64),
        })
    }

    async fn ensure_network(&self, name: &str, labels: &BTreeMap<String, String>) -> Result<bool, DeployError> {
        let error = |source| DeployError::CreateNetwork { name: name.to_owned(), source };
        match self.docker.inspect_network(name, None).await {
            Ok(_) => return Ok(false),
            Err(e) => match engine_error(e) {
                e if e.is_not_found() => {}
                e => return Err(error(e)),
            },
        }
        let mut labels: HashMap<String, String> = labels.clone().into_iter().collect();
        labels.insert("com.docker.compose.network".to_owned(), name.to_owned());
        let request = NetworkCreateRequest {
            name: name.to_owned(),
            driver: Some("bridge".to_owned()),
            labels: Some(labels),
            ..Default::default()
        };
        match self.docker.create_network(request).await {
            Ok(_) => Ok(true),
            // Someone created it meanwhile.
            Err(e) => match engine_error(e) {
                e if e.is_conflict() => Ok(false),
                e => Err(error(e)),
            },
        }
    }

    async fn remove_network(&self, name: &str) -> Result<bool, DeployError> {
        match self.docker.remove_network(name).await {
            Ok(()) => Ok(true),
            Err(e) => match engine_error(e) {
                e if e.is_not_found() => Ok(false),
                source => Err(DeployError::RemoveNetwork { name: name.to_owned(), source }),
            },
        }
    }

    async fn ensure_volume(&self, name: &str, labels: &BTreeMap<String, String>) -> Result<bool, DeployError> {
        if self.volume_exists(name).await? {
            return Ok(false);
        }
        let request = VolumeCreateRequest {
            name: Some(name.to_owned()),
            labels: Some(labels.clone().into_iter().collect()),
            ..Default::default()
        };
        self.docker
            .create_volume(request)
            .await
            .map(|_| true)
            .map_err(|e| DeployError::CreateVolume { name: name.to_owned(), source: engine_error(e) })
    }

    async fn remove_volume(&self, name: &str) -> Result<bool, DeployError> {
        let options = RemoveVolumeOptionsBuilder::default().force(false).build();
        match self.docker.remove_volume(name, Some(options)).await {
            Ok(()) => Ok(true),
            Err(e) => match engine_error(e) {
                e if e.is_not_found() => Ok(false),
                source => Err(DeployError::RemoveVolume { name: name.to_owned(), source }),
            },
        }
    }

    async fn volume_exists(&self, name: &str) -> Result<bool, DeployError> {
        match self.docker.inspect_volume(name).await {
            Ok(_) => Ok(true),
            Err(e) => match engine_error(e) {
                e if e.is_not_found() => Ok(false),
                source => Err(DeployError::CreateVolume { name: name.to_owned(), source }),
            },
        }
    }

    async fn volumes_labelled(&self, key: &str, value: &str) -> Result<Vec<String>, DeployError> {
        let filter = format!("{key}={value}");
        let filters = HashMap::from([("label".to_owned(), vec![filter.clone()])]);
        let options = ListVolumesOptionsBuilder::default().filters(&filters).build();
        let list = self
            .docker
            .list_volumes(Some(options))
            .await
            .map_err(|e| DeployError::ListVolumes { filter: format!("label {filter}"), source: engine_error(e) })?;
        let mut names: Vec<String> = list.volumes.unwrap_or_default().into_iter().map(|v| v.name).collect();
        names.sort();
        Ok(names)
    }

    async fn write_volume_file(
        &self,
        volume: &str,
        path: &str,
        contents: &[u8],
        helper_image: &str,
    ) -> Result<(), DeployError> {
        check_volume_path(volume, path)?;
        let error = |source| DeployError::WriteVolumeFile { volume: volume.to_owned(), path: path.to_owned(), source };
        if !self.has_volume(volume, error).await? {
            return Err(error(EngineError::new(Some(404), "no such volume; create it first (edge install does)")));
        }
        let archive = file_archive(path, contents).map_err(|e| error(EngineError::new(None, e.to_string())))?;
        self.with_volume_helper(volume, None, helper_image, error, |helper| async move {
            // Docker's extraction creates the parent folders the archive's path needs.
            let options = UploadToContainerOptionsBuilder::default().path(HELPER_MOUNT).build();
            self.docker
                .upload_to_container(&helper, Some(options), bollard::body_full(archive.into()))
                .await
                .map_err(|e| error(engine_error(e)))
        })
        .await
    }

    async fn copy_volume(&self, from: &str, to: &str, helper_image: &str) -> Result<(), DeployError> {
        let error = |source| DeployError::CopyVolume { from: from.to_owned(), to: to.to_owned(), source };
        for volume in [from, to] {
            if !self.has_volume(volume, error).await? {
                return Err(error(EngineError::new(Some(404), format!("no such volume {volume}"))));
            }
        }
        self.with_volume_helper(to, Some(from), helper_image, error, |helper| async move {
            let options = DownloadFromContainerOptionsBuilder::default().path(COPY_SOURCE).build();
            let archive: Vec<u8> = self
                .docker
                .download_from_container(&helper, Some(options))
                .map_ok(|chunk| chunk.to_vec())
                .try_concat()
                .await
                .map_err(|e| error(engine_error(e)))?;
            let archive = rebase_archive(&archive).map_err(|e| error(EngineError::new(None, e.to_string())))?;
            let options = UploadToContainerOptionsBuilder::default().path("/").build();
            self.docker
                .upload_to_container(&helper, Some(options), bollard::body_full(archive.into()))
                .await
                .map_err(|e| error(engine_error(e)))
        })
        .await
    }

    async fn read_volume_file(
        &self,
        volume: &str,
        path: &str,
        helper_image: &str,
    ) -> Result<Option<Vec<u8>>, DeployError> {
        check_volume_path(volume, path)?;
        let error = |source| DeployError::ReadVolumeFile { volume: volume.to_owned(), path: path.to_owned(), source };
        if !self.has_volume(volume, error).await? {
            return Ok(None);
        }
        self.with_volume_helper(volume, None, helper_image, error, |helper| async move {
            let options =
                DownloadFromContainerOptionsBuilder::default().path(&format!("{HELPER_MOUNT}/{path}")).build();
            let archive: Vec<u8> = match self
                .docker
                .download_from_container(&helper, Some(options))
                .map_ok(|chunk| chunk.to_vec())
                .try_concat()
                .await
            {
                Ok(archive) => archive,
                Err(e) => {
                    return match engine_error(e) {
                        e if e.is_not_found() => Ok(None),
                        e => Err(error(e)),
                    };
                }
            };
            file_from_archive(&archive).map(Some).map_err(|message| error(EngineError::new(None, message)))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{LABEL_SPEC_HASH, Mount, PublishedPort};

    #[test]
    fn api_versions_compare_numerically() {
        let check = |v: &str, ok: bool| assert_eq!(api_at_least(v, (1, 41)), ok, "{v}");
        check("1.41", true);
        check("1.50", true);
        check("1.9", false);
        check("1.40", false);
        check("2.0", true);
        check("garbage", false);
    }

    proptest::proptest! {
        #[test]
        fn api_version_parsing_never_panics(text in proptest::prelude::any::<String>()) {
            let _ = api_at_least(&text, MIN_API_VERSION);
        }

        #[test]
        fn api_versions_order_like_numbers(a in 0u32..5, b in 0u32..100) {
            proptest::prop_assert_eq!(api_at_least(&format!("{a}.{b}"), (1, 41)), (a, b) >= (1, 41));
        }
    }

    #[test]
    fn pulls_name_a_tag_or_digest_always() {
        let check =
            |reference: &str, expected: (&str, &str)| assert_eq!(pull_target(reference), expected, "{reference}");
        check("127.0.0.1:5000/edge/caddy:dev", ("127.0.0.1:5000/edge/caddy", "dev"));
        check("127.0.0.1:5000/edge/caddy", ("127.0.0.1:5000/edge/caddy", "latest"));
        check("caddy", ("caddy", "latest"));
        check("caddy@sha256:0123", ("caddy", "sha256:0123"));
    }

    #[test]
    fn restart_policies() {
        let check = |text: &str, name: RestartPolicyNameEnum, count: Option<i64>| {
            let p = restart_policy(text);
            assert_eq!((p.name, p.maximum_retry_count), (Some(name), count), "{text}");
        };
        check("unless-stopped", RestartPolicyNameEnum::UNLESS_STOPPED, None);
        check("always", RestartPolicyNameEnum::ALWAYS, None);
        check("on-failure:3", RestartPolicyNameEnum::ON_FAILURE, Some(3));
        check("no", RestartPolicyNameEnum::NO, None);
    }

    #[test]
    fn the_create_body_carries_the_hash_and_mounts_files_read_only() {
        let mut spec = crate::testing::spec("c", "img:1");
        spec.ports.push(PublishedPort {
            host_ip: Some("127.0.0.1".into()),
            host_port: 3083,
            container_port: 3080,
            protocol: "tcp".into(),
        });
        spec.mounts.push(Mount {
            source: "/etc/e/n.json".into(),
            target: "/etc/naive/config.json".into(),
            read_only: false,
            kind: MountKind::File { digest: "d".into() },
        });
        // The planner labels the spec; the engine copies the label as it is.
        let hash = spec.spec_hash(&crate::testing::spec_key());
        spec.labels.insert(LABEL_SPEC_HASH.into(), hash.clone());
        let body = create_body(&spec, &[]);
        assert_eq!(body.labels.as_ref().unwrap()[LABEL_SPEC_HASH], hash);
        let host = body.host_config.unwrap();
        assert_eq!(host.binds.unwrap(), ["/etc/e/n.json:/etc/naive/config.json:ro"]);
        let binding = &host.port_bindings.unwrap()["3080/tcp"];
        assert_eq!(binding.as_ref().unwrap()[0].host_port.as_deref(), Some("3083"));
        assert_eq!(host.network_mode.as_deref(), Some("net"));
        assert_eq!(host.log_config.unwrap().config.unwrap()["max-size"], "10m");
        assert_eq!(body.exposed_ports.unwrap(), ["3080/tcp"]);
    }

    #[test]
    fn the_create_body_drops_privileges_and_maps_the_root_filesystem() {
        let mut spec = crate::testing::spec("c", "img:1");
        let host = create_body(&spec, &[]).host_config.unwrap();
        assert_eq!(host.security_opt.unwrap(), ["no-new-privileges:true"]);
        assert_eq!(host.cap_drop.unwrap(), ["ALL"]);
        assert_eq!((host.cap_add, host.readonly_rootfs, host.tmpfs), (None, Some(false), None));

        spec.security.cap_add = vec!["NET_BIND_SERVICE".into()];
        spec.security.read_only = true;
        spec.security.tmpfs.insert("/config".into(), String::new());
        let host = create_body(&spec, &[]).host_config.unwrap();
        assert_eq!(host.cap_add.unwrap(), ["NET_BIND_SERVICE"]);
        assert_eq!(host.readonly_rootfs, Some(true));
        assert_eq!(host.tmpfs.unwrap(), HashMap::from([("/config".to_owned(), String::new())]));
    }

    #[test]
    fn inherited_volumes_are_mounted_by_name_and_left_out_of_the_hash() {
        let spec = crate::testing::spec("c", "img:1");
        let anonymous = "a".repeat(64);
        let inherited = [Mount {
            source: anonymous.clone(),
            target: "/data".into(),
            read_only: false,
            kind: MountKind::AnonymousVolume,
        }];
        let body = create_body(&spec, &inherited);
        assert_eq!(body.host_config.unwrap().binds.unwrap(), [format!("{anonymous}:/data")]);
        let labels: BTreeMap<String, String> = body.labels.unwrap().into_iter().collect();
        assert_eq!(labels, spec.labels, "the spec's labels, nothing about the inherited volumes");
    }

    #[test]
    fn reported_mounts_tell_anonymous_volumes_from_named_ones() {
        let check = |typ: &str, name: &str, source: &str, rw: bool, expected: Option<(&str, bool, MountKind)>| {
            let point = MountPoint {
                typ: Some(typ.into()),
                name: Some(name.into()),
                source: Some(source.into()),
                destination: Some("/data".into()),
                rw: Some(rw),
                ..Default::default()
            };
            let got = mount_of(point).map(|m| (m.source, m.read_only, m.kind));
            assert_eq!(got, expected.map(|(s, ro, k)| (s.to_owned(), ro, k)), "{typ} {name} {source}");
        };
        let hex = "0123456789abcdef".repeat(4);
        let host = format!("/var/lib/docker/volumes/{hex}/_data");
        check("volume", &hex, &host, true, Some((&hex, false, MountKind::AnonymousVolume)));
        check("volume", "caddy-data", "/v", false, Some(("caddy-data", true, MountKind::Volume)));
        check("volume", &hex.to_uppercase(), "/v", true, Some((&hex.to_uppercase(), false, MountKind::Volume)));
        check("volume", &hex[1..], "/v", true, Some((&hex[1..], false, MountKind::Volume)));
        check("bind", "", "/etc/e/Caddyfile", false, Some(("/etc/e/Caddyfile", true, MountKind::Bind)));
        check("tmpfs", "", "", true, None);
    }

    #[test]
    fn a_one_file_archive_round_trips_and_nothing_else_is_a_file() {
        let archive = file_archive("gate/marker", b"edge").unwrap();
        assert_eq!(file_from_archive(&archive).unwrap(), b"edge");

        let other = |kind: tar::EntryType| {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(kind);
            header.set_size(0);
            header.set_mode(0o755);
            let mut builder = tar::Builder::new(Vec::new());
            if kind.is_symlink() {
                builder.append_link(&mut header, "marker", "/etc/passwd").unwrap();
            } else {
                builder.append_data(&mut header, "gate", &[][..]).unwrap();
            }
            file_from_archive(&builder.into_inner().unwrap()).unwrap_err()
        };
        assert_eq!(other(tar::EntryType::Directory), "it is a folder, not a file");
        assert_eq!(other(tar::EntryType::Symlink), "it is a link or a special file, not a regular file");
        assert_eq!(file_from_archive(&[]).unwrap_err(), "the engine returned an empty archive");
    }
}
