//! Stack and channel model of an edge node: the manifest, paths under a root,
//! status files, atomic writes and identity secrets.
//!
//! edge-core does no network I/O and knows nothing of Docker, tera or Telegram:
//! it is the data every other crate of the workspace agrees on.
//!
//! # Example
//!
//! ```
//! use edge_core::{ChannelState, ChannelsStatus, Stack};
//!
//! let stack = Stack::partner_edge();
//! assert_eq!(stack.channel("xray").map(|c| c.required), Some(true));
//!
//! let mut status = ChannelsStatus::default();
//! status.set("xray", ChannelState::Active);
//! status.set("naive", ChannelState::Skipped);
//! assert_eq!(status.to_string(), "xray=active\nnaive=skipped\n");
//! assert_eq!(ChannelsStatus::parse(&status.to_string()).unwrap(), status);
//! ```
#![deny(missing_docs)]

mod atomic;
mod envfile;
mod error;
mod lock;
mod paths;
mod pool;
mod record;
pub mod secrets;
mod stack;
mod status;

pub use atomic::{read_no_follow, write_atomic, write_atomic_with_mode};
pub use envfile::{EnvFile, escape_env_value, escape_systemd_env_value};
pub use error::{CoreError, LineError};
pub use lock::StateLock;
pub use paths::Paths;
pub use pool::{ObservedHealth, PoolMember};
pub use record::{IMAGE_HISTORY_LEN, InstallRecord};
pub use secrets::SpecHashKey;
pub use stack::{
    BackupEntry, Channel, ComposeKey, FileMount, Healthcheck, LogRotation, PortMapping, ReadinessProbe, Reload,
    ReloadVia, Secret, SecretKind, Service, SmokeCheck, Stack, StackBundle, StackMeta, Template, TemplateFormat,
    VolumeMount, flatten_node_config,
};
pub use status::{ChannelState, ChannelsStatus, UpstreamEntry, UpstreamHealth, UpstreamState};
