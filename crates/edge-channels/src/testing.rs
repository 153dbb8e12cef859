//! Test support: an in-memory [`Engine`] and spec fixtures, for unit tests of the planner,
//! the deployer and the pipelines built on them in other crates.
//!
//! Compiled for this crate's own tests and, elsewhere, only with the `testing` feature
//! (`edge-channels = { workspace = true, features = ["testing"] }` under
//! `[dev-dependencies]`). The fake is no substitute for the real engine: integration tests
//! deploy on Docker.
//!
//! # Example
//!
//! ```
//! use edge_channels::testing::{FakeEngine, spec};
//! use edge_channels::{ContainerStatus, Engine};
//!
//! # async fn demo() -> Result<(), edge_channels::DeployError> {
//! let engine = FakeEngine::with_images(&["img:1"]);
//! engine.create_container(&spec("naive", "img:1"), &[]).await?;
//! engine.start_container("naive").await?;
//! engine.crash("naive");
//! assert_eq!(engine.status_of("naive"), Some(ContainerStatus::Exited));
//! # Ok(())
//! # }
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(demo()).unwrap();
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use edge_core::SpecHashKey;

use crate::engine::{
    ContainerInfo, ContainerSpec, ContainerStatus, Engine, EngineVersion, HealthStatus, LABEL_STACK, Mount, MountKind,
    NetworkAttachment, PullProgress, PulledImage, check_volume_path,
};
use crate::registry::RegistryCredentials;
use crate::{DeployError, EngineError};

/// A minimal spec: container `name` from `image`, of stack `s` on network `net`, with no
/// ports, mounts or health check.
pub fn spec(name: &str, image: &str) -> ContainerSpec {
    ContainerSpec {
        name: name.into(),
        image: image.into(),
        command: vec![],
        env: BTreeMap::new(),
        ports: vec![],
        mounts: vec![],
        network: NetworkAttachment::Stack { name: "net".into(), aliases: vec![] },
        user: None,
        healthcheck: None,
        restart: "unless-stopped".into(),
        logging: Default::default(),
        labels: BTreeMap::from([(LABEL_STACK.into(), "s".into())]),
        security: Default::default(),
    }
}

/// A fixed spec-hash key for tests (a host's real one is random: see
/// [`edge_core::secrets::ensure_spec_hash_key`]).
pub fn spec_key() -> SpecHashKey {
    SpecHashKey::from_bytes([7; 32])
}

/// Drops every service's host-side `readiness` probe from `stack`: the in-memory engine runs
/// no process such a probe could reach (the real-engine tests probe real ones).
pub fn without_host_probes(stack: &mut edge_core::Stack) {
    for service in &mut stack.services {
        service.readiness = None;
    }
}

/// The exit code [`FakeEngine::crash`] leaves on a container.
pub const CRASH_EXIT_CODE: i64 = 1;

#[derive(Debug, Default)]
struct State {
    containers: BTreeMap<String, ContainerInfo>,
    images: BTreeMap<String, String>,
    /// Image reference → the paths it declares as volumes (Dockerfile `VOLUME`).
    image_volumes: BTreeMap<String, Vec<String>>,
    networks: BTreeSet<String>,
    /// Volume name → file path inside it → contents.
    volumes: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    /// Volume name → the labels [`Engine::ensure_volume`] created it with.
    volume_labels: BTreeMap<String, BTreeMap<String, String>>,
    unhealthy: BTreeMap<String, String>,
    fail_start: BTreeMap<String, String>,
    /// What a registry offers: reference → the id a pull gives it.
    registry: BTreeMap<String, String>,
    /// Pulls that fail, with the engine's answer.
    fail_pull: BTreeMap<String, EngineError>,
    /// References pulled, in order, with whether credentials came along.
    pulled: Vec<(String, bool)>,
    calls: Vec<&'static str>,
    next_id: u64,
}

impl State {
    /// A container `name` from `image` (stopped, never started) with `labels`, mounting
    /// `mounts` and a fresh anonymous volume for each path the image declares that no mount
    /// covers; returns its id.
    fn add_container(
        &mut self,
        name: &str,
        image: &str,
        labels: BTreeMap<String, String>,
        mut mounts: Vec<Mount>,
    ) -> String {
        for path in self.image_volumes.get(image).cloned().unwrap_or_default() {
            if mounts.iter().any(|m| m.clean_target() == path.trim_end_matches('/')) {
                continue;
            }
            self.next_id += 1;
            let volume = format!("{:064x}", self.next_id);
            self.volumes.insert(volume.clone(), BTreeMap::new());
            mounts.push(Mount { source: volume, target: path, read_only: false, kind: MountKind::AnonymousVolume });
        }
        self.next_id += 1;
        let id = format!("c{}", self.next_id);
        let info = ContainerInfo {
            id: id.clone(),
            name: name.to_owned(),
            image: image.to_owned(),
            image_id: self.images.get(image).cloned().unwrap_or_default(),
            labels,
            status: ContainerStatus::Created,
            health: HealthStatus::None,
            last_health_output: None,
            exit_code: None,
            restart_count: 0,
            mounts,
        };
        self.containers.insert(name.to_owned(), info);
        id
    }
}

/// An engine holding containers, images, networks and volumes (with their files) in memory.
///
/// Containers it starts become healthy at once unless [`FakeEngine::make_unhealthy`] said
/// otherwise; it records which operations were called ([`FakeEngine::calls_of`]). Like the
/// real engine, it refuses to reach a volume through a helper image it does not have.
#[derive(Debug, Default)]
pub struct FakeEngine {
    state: Mutex<State>,
}

impl FakeEngine {
    /// An engine that has these images (and nothing else).
    pub fn with_images(images: &[&str]) -> Self {
        let engine = Self::default();
        for reference in images {
            engine.add_image(reference);
        }
        engine
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }

    /// Gives the engine image `reference` (a fresh id) unless it has it already.
    pub fn add_image(&self, reference: &str) {
        self.with(|s| {
            let id = format!("sha256:{}", s.images.len());
            s.images.entry(reference.to_owned()).or_insert(id);
        });
    }

    /// Removes image `reference` from the engine, as `docker rmi` would.
    pub fn remove_image(&self, reference: &str) {
        self.with(|s| s.images.remove(reference));
    }

    /// A registry offers image `reference`: a pull of it succeeds and gives it a fresh id
    /// (another than a local image of that reference has, as a newer push would).
    pub fn publish(&self, reference: &str) {
        self.with(|s| {
            let id = format!("sha256:pulled-{}", s.registry.len());
            s.registry.insert(reference.to_owned(), id);
        });
    }

    /// A pull of `reference` fails with the engine's answer `status` and `message`.
    pub fn fail_pull(&self, reference: &str, status: u16, message: &str) {
        self.with(|s| s.fail_pull.insert(reference.to_owned(), EngineError::new(Some(status), message)));
    }

    /// The references pulled so far, in order.
    pub fn pulled(&self) -> Vec<String> {
        self.with(|s| s.pulled.iter().map(|(r, _)| r.clone()).collect())
    }

    /// Whether the pull of `reference` carried credentials (the last one, if pulled twice).
    pub fn pulled_with_credentials(&self, reference: &str) -> Option<bool> {
        self.with(|s| s.pulled.iter().rev().find(|(r, _)| r == reference).map(|(_, c)| *c))
    }

    /// Containers made from image `reference` get an anonymous volume at `path` unless a mount
    /// covers it, as an image's `VOLUME` does (a Caddy image's `/data`).
    pub fn add_image_volume(&self, reference: &str, path: &str) {
        self.add_image(reference);
        self.with(|s| s.image_volumes.entry(reference.to_owned()).or_default().push(path.to_owned()));
    }

    /// A running container `name` from `image` that edge did not create (`docker run`): no
    /// labels, and the anonymous volumes its image declares. Returns its id.
    pub fn run_unlabelled(&self, name: &str, image: &str) -> String {
        self.with(|s| {
            let id = s.add_container(name, image, BTreeMap::new(), Vec::new());
            if let Some(c) = s.containers.get_mut(name) {
                c.status = ContainerStatus::Running;
            }
            id
        })
    }

    /// A running container `name` from `image` that Compose made (Compose's labels, none of
    /// edge's), mounting `mounts`, plus the anonymous volumes its image declares. Returns its id.
    pub fn run_compose(&self, name: &str, image: &str, project: &str, mounts: Vec<Mount>) -> String {
        self.with(|s| {
            for m in mounts.iter().filter(|m| m.kind == MountKind::Volume) {
                s.volumes.entry(m.source.clone()).or_default();
            }
            let labels = BTreeMap::from([
                (crate::engine::LABEL_COMPOSE_PROJECT.to_owned(), project.to_owned()),
                (crate::engine::LABEL_COMPOSE_SERVICE.to_owned(), name.to_owned()),
            ]);
            let id = s.add_container(name, image, labels, mounts);
            if let Some(c) = s.containers.get_mut(name) {
                c.status = ContainerStatus::Running;
            }
            id
        })
    }

    /// Writes `contents` to `path` in volume `volume`, creating the volume if needed, as a
    /// container writing there would.
    pub fn put_volume_file(&self, volume: &str, path: &str, contents: &[u8]) {
        self.with(|s| s.volumes.entry(volume.to_owned()).or_default().insert(path.to_owned(), contents.to_vec()));
    }

    /// The contents of `path` in volume `volume`, if both exist.
    pub fn volume_file(&self, volume: &str, path: &str) -> Option<Vec<u8>> {
        self.with(|s| s.volumes.get(volume)?.get(path).cloned())
    }

    /// The labels volume `name` was created with by [`Engine::ensure_volume`]; `None` if it
    /// was not created that way.
    pub fn volume_labels(&self, name: &str) -> Option<BTreeMap<String, String>> {
        self.with(|s| s.volume_labels.get(name).cloned())
    }

    /// Container `name`'s health check will fail with `output`.
    pub fn make_unhealthy(&self, name: &str, output: &str) {
        self.with(|s| s.unhealthy.insert(name.to_owned(), output.to_owned()));
    }

    /// Starting container `name` will fail with `message`.
    pub fn fail_start(&self, name: &str, message: &str) {
        self.with(|s| s.fail_start.insert(name.to_owned(), message.to_owned()));
    }

    /// Container `name` exits on its own with [`CRASH_EXIT_CODE`], as a channel that died.
    ///
    /// # Panics
    ///
    /// If there is no such container: a test that crashes a container it never made is wrong.
    pub fn crash(&self, name: &str) {
        self.with(|s| {
            let Some(c) = s.containers.get_mut(name) else {
                panic!("the fake engine has no container {name} to crash");
            };
            c.status = ContainerStatus::Exited;
            c.exit_code = Some(CRASH_EXIT_CODE);
        });
    }

    /// Container `name`'s run state; `None` if there is no such container.
    pub fn status_of(&self, name: &str) -> Option<ContainerStatus> {
        self.with(|s| s.containers.get(name).map(|c| c.status))
    }

    /// The names of all containers, sorted.
    pub fn containers(&self) -> Vec<String> {
        self.with(|s| s.containers.keys().cloned().collect())
    }

    /// The names of all networks, sorted.
    pub fn networks(&self) -> Vec<String> {
        self.with(|s| s.networks.iter().cloned().collect())
    }

    /// The names of all volumes, sorted.
    pub fn volumes(&self) -> Vec<String> {
        self.with(|s| s.volumes.keys().cloned().collect())
    }

    /// Container ids by name.
    pub fn ids(&self) -> BTreeMap<String, String> {
        self.with(|s| s.containers.iter().map(|(k, c)| (k.clone(), c.id.clone())).collect())
    }

    /// How often operation `op` was called: `create`, `start`, `stop`, `remove`, `kill`,
    /// `create_network`, `create_volume` (counting only actual creations), `remove_volume`,
    /// `write_volume_file`, `read_volume_file` or `pull`.
    pub fn calls_of(&self, op: &str) -> usize {
        self.with(|s| s.calls.iter().filter(|c| **c == op).count())
    }
}

/// Whether `path` is `dir` or lies below it.
fn is_under(path: &str, dir: &str) -> bool {
    path.strip_prefix(dir).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

impl Engine for FakeEngine {
    async fn version(&self) -> Result<EngineVersion, DeployError> {
        Ok(EngineVersion { version: "fake".into(), api_version: "1.41".into(), endpoint: "fake://".into() })
    }

    async fn list_containers(&self, key: &str, value: &str) -> Result<Vec<ContainerInfo>, DeployError> {
        Ok(self.with(|s| {
            s.containers.values().filter(|c| c.labels.get(key).map(String::as_str) == Some(value)).cloned().collect()
        }))
    }

    async fn inspect_container(&self, name: &str) -> Result<Option<ContainerInfo>, DeployError> {
        Ok(self.with(|s| s.containers.get(name).cloned()))
    }

    async fn create_container(&self, spec: &ContainerSpec, inherited: &[Mount]) -> Result<String, DeployError> {
        self.with(|s| {
            s.calls.push("create");
            let error = |status, message: &str| DeployError::CreateContainer {
                name: spec.name.clone(),
                source: EngineError::new(Some(status), message),
            };
            if s.containers.contains_key(&spec.name) {
                return Err(error(409, "name in use"));
            }
            if let Some(m) = inherited.iter().find(|m| !s.volumes.contains_key(&m.source)) {
                return Err(error(404, &format!("no such volume: {}", m.source)));
            }
            // Labels are the spec's: the planner has put the spec hash among them.
            let labels = spec.labels.clone();
            // The engine reports a rendered file as the bind mount it is.
            let reported = spec.mounts.iter().map(|m| match m.kind {
                MountKind::File { .. } => Mount { kind: MountKind::Bind, ..m.clone() },
                _ => m.clone(),
            });
            let mounts = reported.chain(inherited.iter().cloned()).collect();
            Ok(s.add_container(&spec.name, &spec.image, labels, mounts))
        })
    }

    async fn start_container(&self, name: &str) -> Result<(), DeployError> {
        self.with(|s| {
            s.calls.push("start");
            if let Some(message) = s.fail_start.get(name) {
                return Err(DeployError::StartContainer {
                    name: name.into(),
                    source: EngineError::new(Some(500), message.clone()),
                });
            }
            let unhealthy = s.unhealthy.get(name).cloned();
            let c = s.containers.get_mut(name).ok_or_else(|| DeployError::StartContainer {
                name: name.into(),
                source: EngineError::new(Some(404), "no such container"),
            })?;
            c.status = ContainerStatus::Running;
            (c.health, c.last_health_output) = match unhealthy {
                Some(output) => (HealthStatus::Unhealthy, Some(output)),
                None => (HealthStatus::Healthy, None),
            };
            Ok(())
        })
    }

    async fn stop_container(&self, name: &str, _grace: Duration) -> Result<(), DeployError> {
        self.with(|s| {
            s.calls.push("stop");
            if let Some(c) = s.containers.get_mut(name) {
                c.status = ContainerStatus::Exited;
            }
        });
        Ok(())
    }

    async fn restart_container(&self, name: &str, grace: Duration) -> Result<(), DeployError> {
        self.stop_container(name, grace).await?;
        self.start_container(name).await
    }

    async fn remove_container(&self, name: &str) -> Result<bool, DeployError> {
        Ok(self.with(|s| {
            s.calls.push("remove");
            s.containers.remove(name).is_some()
        }))
    }

    async fn rename_container(&self, name: &str, new_name: &str) -> Result<(), DeployError> {
        self.with(|s| {
            s.calls.push("rename");
            let error = |status, message: &str| DeployError::RenameContainer {
                name: name.to_owned(),
                new_name: new_name.to_owned(),
                source: EngineError::new(Some(status), message),
            };
            if s.containers.contains_key(new_name) {
                return Err(error(409, "the name is in use"));
            }
            let mut c = s.containers.remove(name).ok_or_else(|| error(404, "no such container"))?;
            c.name = new_name.to_owned();
            s.containers.insert(new_name.to_owned(), c);
            Ok(())
        })
    }

    async fn kill_container(&self, _name: &str, _signal: &str) -> Result<(), DeployError> {
        self.with(|s| s.calls.push("kill"));
        Ok(())
    }

    async fn image_id(&self, reference: &str) -> Result<Option<String>, DeployError> {
        Ok(self.with(|s| s.images.get(reference).cloned()))
    }

    async fn pull_image(
        &self,
        reference: &str,
        credentials: Option<&RegistryCredentials>,
        on_progress: &(dyn Fn(PullProgress) + Send + Sync),
    ) -> Result<PulledImage, EngineError> {
        let pulled = self.with(|s| {
            s.calls.push("pull");
            s.pulled.push((reference.to_owned(), credentials.is_some()));
            if let Some(e) = s.fail_pull.get(reference) {
                return Err(e.clone());
            }
            let Some(id) = s.registry.get(reference).cloned() else {
                let message = format!("manifest for {reference} not found: manifest unknown: manifest unknown");
                return Err(EngineError::new(Some(404), message));
            };
            s.images.insert(reference.to_owned(), id.clone());
            Ok(PulledImage { reference: reference.to_owned(), id, size: 1024 })
        })?;
        on_progress(PullProgress { downloaded: pulled.size, total: pulled.size });
        Ok(pulled)
    }

    async fn ensure_network(&self, name: &str, _labels: &BTreeMap<String, String>) -> Result<bool, DeployError> {
        Ok(self.with(|s| {
            let created = s.networks.insert(name.to_owned());
            if created {
                s.calls.push("create_network");
            }
            created
        }))
    }

    async fn remove_network(&self, name: &str) -> Result<bool, DeployError> {
        Ok(self.with(|s| s.networks.remove(name)))
    }

    async fn ensure_volume(&self, name: &str, labels: &BTreeMap<String, String>) -> Result<bool, DeployError> {
        Ok(self.with(|s| {
            if s.volumes.contains_key(name) {
                return false;
            }
            s.volumes.insert(name.to_owned(), BTreeMap::new());
            s.volume_labels.insert(name.to_owned(), labels.clone());
            s.calls.push("create_volume");
            true
        }))
    }

    async fn remove_volume(&self, name: &str) -> Result<bool, DeployError> {
        Ok(self.with(|s| {
            s.calls.push("remove_volume");
            s.volume_labels.remove(name);
            s.volumes.remove(name).is_some()
        }))
    }

    async fn volume_exists(&self, name: &str) -> Result<bool, DeployError> {
        Ok(self.with(|s| s.volumes.contains_key(name)))
    }

    async fn volumes_labelled(&self, key: &str, value: &str) -> Result<Vec<String>, DeployError> {
        Ok(self.with(|s| {
            let labelled = |labels: &BTreeMap<String, String>| labels.get(key).is_some_and(|v| v == value);
            s.volume_labels.iter().filter(|(_, l)| labelled(l)).map(|(name, _)| name.clone()).collect()
        }))
    }

    async fn write_volume_file(
        &self,
        volume: &str,
        path: &str,
        contents: &[u8],
        helper_image: &str,
    ) -> Result<(), DeployError> {
        check_volume_path(volume, path)?;
        self.with(|s| {
            s.calls.push("write_volume_file");
            let error = |status, message: &str| DeployError::WriteVolumeFile {
                volume: volume.to_owned(),
                path: path.to_owned(),
                source: EngineError::new(Some(status), message),
            };
            if !s.images.contains_key(helper_image) {
                return Err(error(404, &format!("no such image: {helper_image}")));
            }
            let files = s.volumes.get_mut(volume).ok_or_else(|| error(404, "no such volume"))?;
            // A file cannot also be a folder, on the way to `path` or at it.
            if files.keys().any(|f| f != path && (is_under(path, f) || is_under(f, path))) {
                return Err(error(400, "a file and a folder cannot share a path"));
            }
            files.insert(path.to_owned(), contents.to_vec());
            Ok(())
        })
    }

    async fn copy_volume(&self, from: &str, to: &str, helper_image: &str) -> Result<(), DeployError> {
        self.with(|s| {
            s.calls.push("copy_volume");
            let error = |status, message: String| DeployError::CopyVolume {
                from: from.to_owned(),
                to: to.to_owned(),
                source: EngineError::new(Some(status), message),
            };
            if !s.images.contains_key(helper_image) {
                return Err(error(404, format!("no such image: {helper_image}")));
            }
            let files = s.volumes.get(from).cloned().ok_or_else(|| error(404, format!("no such volume {from}")))?;
            let target = s.volumes.get_mut(to).ok_or_else(|| error(404, format!("no such volume {to}")))?;
            target.extend(files);
            Ok(())
        })
    }

    async fn read_volume_file(
        &self,
        volume: &str,
        path: &str,
        helper_image: &str,
    ) -> Result<Option<Vec<u8>>, DeployError> {
        check_volume_path(volume, path)?;
        self.with(|s| {
            s.calls.push("read_volume_file");
            let error = |status, message: &str| DeployError::ReadVolumeFile {
                volume: volume.to_owned(),
                path: path.to_owned(),
                source: EngineError::new(Some(status), message),
            };
            if !s.images.contains_key(helper_image) {
                return Err(error(404, &format!("no such image: {helper_image}")));
            }
            let Some(files) = s.volumes.get(volume) else { return Ok(None) };
            if let Some(contents) = files.get(path) {
                return Ok(Some(contents.clone()));
            }
            if files.keys().any(|f| is_under(f, path)) {
                return Err(error(400, "it is a folder, not a file"));
            }
            Ok(None)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELPER: &str = "helper:1";

    fn engine_with_volume() -> FakeEngine {
        let engine = FakeEngine::with_images(&[HELPER]);
        engine.with(|s| s.volumes.insert("v".into(), BTreeMap::new()));
        engine
    }

    #[tokio::test]
    async fn volume_files_round_trip_until_the_volume_goes() {
        let engine = engine_with_volume();
        engine.write_volume_file("v", "gate/marker", b"one", HELPER).await.unwrap();
        engine.write_volume_file("v", "gate/marker", b"two", HELPER).await.unwrap();
        assert_eq!(engine.read_volume_file("v", "gate/marker", HELPER).await.unwrap().as_deref(), Some(&b"two"[..]));
        assert_eq!(engine.read_volume_file("v", "gate/other", HELPER).await.unwrap(), None);
        assert!(matches!(engine.read_volume_file("v", "gate", HELPER).await, Err(DeployError::ReadVolumeFile { .. })));
        assert!(matches!(
            engine.write_volume_file("v", "gate/marker/x", b"", HELPER).await,
            Err(DeployError::WriteVolumeFile { .. })
        ));
        assert!(engine.remove_volume("v").await.unwrap());
        assert_eq!(engine.read_volume_file("v", "gate/marker", HELPER).await.unwrap(), None);
        assert_eq!(engine.calls_of("write_volume_file"), 3);
    }

    #[tokio::test]
    async fn volume_files_need_the_volume_the_helper_image_and_a_relative_path() {
        let engine = engine_with_volume();
        let write = |volume: &'static str, path: &'static str, image: &'static str| {
            let engine = &engine;
            async move { engine.write_volume_file(volume, path, b"x", image).await.unwrap_err().to_string() }
        };
        assert_eq!(write("w", "m", HELPER).await, "cannot write m into volume w: no such volume");
        assert_eq!(write("v", "m", "nope:1").await, "cannot write m into volume v: no such image: nope:1");
        assert!(write("v", "../m", HELPER).await.starts_with("path \"../m\" in volume v must be relative"));
        assert!(
            engine.volumes().contains(&"v".to_owned())
                && engine.read_volume_file("v", "m", HELPER).await.unwrap().is_none()
        );
    }

    #[tokio::test]
    async fn a_crashed_container_has_exited() {
        let engine = FakeEngine::default();
        engine.add_image("img:1");
        engine.create_container(&spec("a", "img:1"), &[]).await.unwrap();
        assert_eq!(engine.status_of("a"), Some(ContainerStatus::Created));
        engine.start_container("a").await.unwrap();
        engine.crash("a");
        let info = engine.inspect_container("a").await.unwrap().unwrap();
        assert_eq!((info.status, info.exit_code), (ContainerStatus::Exited, Some(CRASH_EXIT_CODE)));
        assert!(!info.image_id.is_empty());
        assert_eq!(engine.containers(), ["a"]);
        assert_eq!(engine.status_of("b"), None);
    }
}
