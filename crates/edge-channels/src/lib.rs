//! Docker engine driver, reconciling deployer and health prober for edge channels.
//!
//! The seam is [`Engine`], the small set of container operations the deployer needs;
//! [`DockerEngine`] implements it on the Docker Engine API (bollard). A stack's services
//! become [`ContainerSpec`]s ([`container_spec`]) whose hash covers the full spec and the
//! contents of the rendered files they mount, keyed with the host's
//! [`SpecHashKey`](edge_core::SpecHashKey) so that the `edge.spec-hash` label reveals nothing
//! about them; the planner ([`plan()`]) compares them with the containers the engine has and
//! yields create / recreate / start / keep / remove;
//! the [`Deployer`] applies that and waits for health. Re-running on an unchanged stack
//! touches nothing. A service that takes its config in place (`reload` in the manifest) is
//! kept when only that config changed, and [`reload`] hands it the new one.
//!
//! No data is lost on the way: a recreated container inherits the anonymous volumes of the
//! one it replaces, removing a container never removes a volume, and a same-named container
//! edge did not create is refused, never recreated ([`DeployError::NotCreatedByEdge`]).
//!
//! No bollard type crosses this crate's boundary, and a credential never reaches a
//! container's env, command or labels: it only travels in rendered files mounted read-only.
//!
//! # Example
//!
//! ```no_run
//! use std::collections::BTreeMap;
//! use std::time::Duration;
//! use edge_channels::{Deployer, Desired, DockerEngine, Infrastructure, container_spec, stack_labels};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let stack = edge_core::Stack::partner_edge();
//! // The host's spec-hash key, created once and kept with the identity.
//! let key_file = std::path::Path::new("/etc/oxpulse-partner-edge").join(edge_core::secrets::SPEC_HASH_KEY_FILE);
//! let (key, _) = edge_core::secrets::ensure_spec_hash_key(&key_file)?;
//! let mut coturn = stack.service("coturn").unwrap().clone();
//! coturn.image = "edge-standin:dev".into();
//! let spec = container_spec(&coturn, &stack.stack, &BTreeMap::new())?;
//!
//! let engine = DockerEngine::connect().await?;
//! let deployer = Deployer::new(&engine);
//! let plan = deployer.plan(&stack.stack.name, vec![Desired::new("coturn", spec, vec![])], &key).await?;
//! for entry in plan.entries() {
//!     println!("{} {}", entry.action, entry.container);
//! }
//! let infra = Infrastructure { labels: stack_labels(&stack.stack) };
//! deployer.apply(&plan, &infra, Duration::from_secs(60), &|event| println!("{event:?}")).await?;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod deploy;
pub mod docker;
mod engine;
mod error;
pub mod events;
pub mod image;
mod plan;
pub mod prober;
pub mod registry;
pub mod reload;
mod spec;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use deploy::{Applied, Deployer, Event, Infrastructure, Readiness};
pub use docker::DockerEngine;
pub use engine::{
    ContainerInfo, ContainerSpec, ContainerStatus, Engine, EngineVersion, HealthStatus, HostProbe, LABEL_CHANNEL,
    LABEL_COMPOSE_PROJECT, LABEL_COMPOSE_SERVICE, LABEL_READINESS, LABEL_SPEC_HASH, LABEL_STACK, Mount, MountKind,
    NO_NEW_PRIVILEGES, NetworkAttachment, PublishedPort, PullProgress, PulledImage, Security,
};
pub use error::{DeployError, EngineError};
pub use plan::{Action, ActionKind, Desired, Plan, PlanEntry, plan, waves};
pub use prober::{Health, Prober};
pub use spec::{RenderedMount, config_digest, container_spec, stack_labels};
