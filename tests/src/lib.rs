//! Test helpers shared by the workspace integration tests: loopback servers (channel upstreams, a forward proxy, alert sinks), and provisioning of Caddy and the Docker engine.

pub mod alertmanager;
pub mod caddy;
pub mod cli;
pub mod docker;
pub mod host;
pub mod load;
pub mod naive_tarball;
pub mod pebble;
pub mod proxy;
pub mod registry;
pub mod sqlite_app;
pub mod systemd;
pub mod telegram;
pub mod turn;
pub mod upstream;
