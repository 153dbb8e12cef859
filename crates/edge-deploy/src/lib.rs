//! Operations on an edge stack, generic over the container engine: install (plan → apply →
//! wait → record), uninstall, identity backup and restore, `stop`/`start`/`restart`, the
//! observation `status` and `healthcheck` print, the lifecycle gate, the runtime channel
//! states (container channels from the engine and the front proxy, the host-level mesh
//! channel from the host's WireGuard tools, [`mesh`]), and the watchdog that keeps them
//! ([`watchdog`]: its tick, its engine-event daemon and its textfile metrics).
//!
//! Every operation takes an [`edge_channels::Engine`]: [`edge_channels::DockerEngine`] on a
//! host, the in-memory engine of `edge_channels::testing` in unit tests. Operations report
//! progress through a [`ProgressSink`] and return a report (data, serialisable); they never
//! print, read argv or choose exit codes.
//!
//! # Example
//!
//! Installing the partner edge on the in-memory engine:
//!
//! ```
//! use std::time::Duration;
//! use edge_channels::testing::{FakeEngine, without_host_probes};
//! use edge_core::{ChannelState, ChannelsStatus, StackBundle};
//! use edge_deploy::{InstallRequest, Node, Outcome, install, quiet};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let root = tempfile::tempdir().unwrap();
//! let mut bundle = StackBundle::partner_edge();
//! // The in-memory engine runs no process a host-side readiness probe could reach.
//! without_host_probes(&mut bundle.stack);
//! let node = Node::new(bundle, Some(root.path())).unwrap();
//! let images: Vec<&str> = node.stack().services.iter().map(|s| s.image.as_str()).collect();
//! let engine = FakeEngine::with_images(&images);
//!
//! // No metrics to wait for, and no host ports to probe: the engine is in memory.
//! let mut request = InstallRequest { pool_wait: Duration::ZERO, host_checks: false, ..InstallRequest::default() };
//! for (key, value) in [
//!     ("PARTNER_ID", "acme"),
//!     ("PARTNER_DOMAIN", "edge.example.com"),
//!     ("REALITY_SERVER", "203.0.113.7"),
//!     ("REALITY_PORT", "443"),
//!     ("REALITY_PUBLIC_KEY", "Xk7tq3Oa0Rr8Dy6oYqJ3OazkJm9q6oHgqRr5Yb4a1kE"),
//!     ("REALITY_SERVER_NAME", "www.example.com"),
//!     ("REALITY_SHORT_ID", "0123abcd"),
//! ] {
//!     request.variables.flags.push((key.to_owned(), value.to_owned()));
//! }
//! let report = install(&engine, &node, &request, &quiet).await.unwrap();
//! // Everything runs, but with no alert transport (`request.alerts`) nobody would hear of a
//! // channel going down: that is degraded.
//! assert_eq!(report.status, Outcome::Degraded);
//! assert!(report.alerts.problem.is_some());
//!
//! let status = ChannelsStatus::load(&node.paths.channels_status()).unwrap();
//! assert_eq!(status.get("xray"), Some(ChannelState::Active));
//! assert_eq!(status.get("naive"), Some(ChannelState::Skipped));
//! # });
//! ```
#![deny(missing_docs)]

pub mod adopt;
pub mod backup;
pub mod channels;
mod error;
mod gate;
mod health;
pub mod host;
pub mod identity;
mod install;
mod lifecycle;
pub mod mesh;
pub mod metrics;
mod node;
mod observe;
mod progress;
mod pull;
pub mod rollout;
mod smoke;
#[cfg(test)]
mod tests;
mod uninstall;
pub mod watchdog;

pub use adopt::{AdoptReport, AdoptRequest, AdoptStep, LegacyHost, adopt, install_adopting};
pub use error::OpError;
pub use gate::{GateFailure, GateReport, GateRequest, RunReport, STEPS, StepReport, StepSummary, gate};
pub use health::{Check, HealthReport, healthcheck};
pub use install::{AlertsReport, ChannelReport, InstallReport, InstallRequest, Outcome, install};
pub use lifecycle::{LifecycleReport, LifecycleRequest, ServiceState, Verb, restart, start, stop};
pub use node::Node;
pub use observe::{ChannelView, ContainerView, EngineView, MetricsView, Observation, default_metrics_url, observe};
pub use progress::{Progress, ProgressSink, quiet};
pub use pull::{ImagePull, PullPolicy};
pub use smoke::{SmokeReport, SmokeResult, smoke, smoke_until};
pub use uninstall::{UninstallReport, UninstallRequest, uninstall};
