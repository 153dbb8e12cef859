//! An in-memory [`Engine`] for unit tests of the planner and the deployer.
//!
//! It is no substitute for the real engine: integration tests deploy on Docker.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use crate::engine::{
    ContainerInfo, ContainerSpec, ContainerStatus, Engine, EngineVersion, HealthStatus, LABEL_SPEC_HASH,
};
use crate::{DeployError, EngineError};

#[derive(Default)]
struct State {
    containers: BTreeMap<String, ContainerInfo>,
    images: BTreeMap<String, String>,
    networks: BTreeSet<String>,
    volumes: BTreeSet<String>,
    unhealthy: BTreeMap<String, String>,
    fail_start: BTreeMap<String, String>,
    calls: Vec<&'static str>,
    next_id: u64,
}

/// A fake engine holding containers, images, networks and volumes in memory.
#[derive(Default)]
pub(crate) struct FakeEngine {
    state: Mutex<State>,
}

impl FakeEngine {
    /// An engine that has these images.
    pub(crate) fn with_images(images: &[&str]) -> Self {
        let engine = Self::default();
        engine.with(|s| {
            for (i, r) in images.iter().enumerate() {
                s.images.insert((*r).to_owned(), format!("sha256:{i}"));
            }
        });
        engine
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }

    /// Container `name`'s health check will fail with `output`.
    pub(crate) fn make_unhealthy(&self, name: &str, output: &str) {
        self.with(|s| s.unhealthy.insert(name.to_owned(), output.to_owned()));
    }

    /// Starting container `name` will fail with `message`.
    pub(crate) fn fail_start(&self, name: &str, message: &str) {
        self.with(|s| s.fail_start.insert(name.to_owned(), message.to_owned()));
    }

    /// Container ids by name.
    pub(crate) fn ids(&self) -> BTreeMap<String, String> {
        self.with(|s| s.containers.iter().map(|(k, c)| (k.clone(), c.id.clone())).collect())
    }

    /// How often an operation was called.
    pub(crate) fn calls_of(&self, op: &str) -> usize {
        self.with(|s| s.calls.iter().filter(|c| **c == op).count())
    }
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

    async fn create_container(&self, spec: &ContainerSpec) -> Result<String, DeployError> {
        self.with(|s| {
            s.calls.push("create");
            if s.containers.contains_key(&spec.name) {
                return Err(DeployError::CreateContainer {
                    name: spec.name.clone(),
                    source: EngineError::new(Some(409), "name in use"),
                });
            }
            s.next_id += 1;
            let id = format!("c{}", s.next_id);
            let mut labels = spec.labels.clone();
            labels.insert(LABEL_SPEC_HASH.into(), spec.spec_hash());
            let info = ContainerInfo {
                id: id.clone(),
                name: spec.name.clone(),
                image: spec.image.clone(),
                image_id: s.images.get(&spec.image).cloned().unwrap_or_default(),
                labels,
                status: ContainerStatus::Created,
                health: HealthStatus::None,
                last_health_output: None,
                exit_code: None,
                restart_count: 0,
            };
            s.containers.insert(spec.name.clone(), info);
            Ok(id)
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

    async fn kill_container(&self, _name: &str, _signal: &str) -> Result<(), DeployError> {
        self.with(|s| s.calls.push("kill"));
        Ok(())
    }

    async fn image_id(&self, reference: &str) -> Result<Option<String>, DeployError> {
        Ok(self.with(|s| s.images.get(reference).cloned()))
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

    async fn ensure_volume(&self, name: &str, _labels: &BTreeMap<String, String>) -> Result<bool, DeployError> {
        Ok(self.with(|s| {
            let created = s.volumes.insert(name.to_owned());
            if created {
                s.calls.push("create_volume");
            }
            created
        }))
    }

    async fn remove_volume(&self, name: &str) -> Result<bool, DeployError> {
        Ok(self.with(|s| s.volumes.remove(name)))
    }

    async fn volume_exists(&self, name: &str) -> Result<bool, DeployError> {
        Ok(self.with(|s| s.volumes.contains(name)))
    }
}
