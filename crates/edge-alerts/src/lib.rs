//! Alert limiter, outbox and delivery chain (webhook, Telegram, Alertmanager) for edge nodes,
//! and the transition detection that feeds them from Caddy's metrics.
//!
//! One watchdog tick is one call: [`Alerter::tick`] reads the metrics page,
//! compares it with `upstream-state.env`, journals the events in the outbox,
//! writes the state files atomically and delivers what is due, all under a
//! file lock so that concurrent runs take turns. Nothing is lost: the
//! rate-limit clock is stamped only after a delivery succeeded, events inside
//! the window wait in the outbox and go out together as a digest, a message no
//! transport took stays in the outbox for the next run, and CRITICAL (every
//! upstream down) bypasses the window.
//!
//! edge-alerts knows nothing of Docker, tera or argv; it reads the
//! environment only through the lookup function given to
//! [`AlertConfig::from_env`].
//!
//! # Example
//!
//! ```no_run
//! use edge_alerts::{AlertConfig, Alerter, TickStatus};
//! use edge_core::PoolMember;
//!
//! # async fn run(paths: edge_core::Paths) -> Result<(), edge_alerts::AlertError> {
//! let config = AlertConfig::from_env(&paths, |k| std::env::var(k).ok())?;
//! let alerter = Alerter::new(config)?;
//! let pool = [PoolMember::new("xray", "xray-client:3080"), PoolMember::new("hysteria2", "hy2-client:3081")];
//! let report = alerter.tick(&pool).await?;
//! if report.status() == TickStatus::Undelivered {
//!     eprintln!("{} alerts wait in the outbox", report.undelivered);
//! }
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod alerter;
pub mod alertmanager;
pub mod breaker;
pub mod compose;
pub mod config;
pub mod deliver;
mod error;
pub mod event;
pub mod limiter;
pub mod metrics;
pub mod outbox;
pub mod redact;
pub mod settings;
#[cfg(test)]
mod test_support;
mod time;
pub mod transitions;

pub use alerter::{Alerter, Delivered, Report, TickStatus};
pub use config::{AlertConfig, AlertmanagerConfig, MetricsSource, TelegramConfig};
pub use deliver::{Chain, Transport, TransportKind};
pub use error::{AlertError, SendError};
pub use event::{Event, EventKind, Health, Severity};
pub use metrics::UpstreamMetrics;
pub use redact::redact_url;
pub use settings::{AlertChanges, AlertSettings, Change, TransportTarget};
pub use time::rfc3339;
pub use transitions::Observation;
