//! Test helpers shared by the workspace integration tests: loopback servers, and provisioning of Caddy and the Docker engine.

pub mod alertmanager;
pub mod caddy;
pub mod docker;
pub mod load;
pub mod naive_tarball;
pub mod telegram;
pub mod upstream;
