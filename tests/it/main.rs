//! Workspace integration tests: one binary, one module per capability.

mod alerts;
mod caddy_syntax;
mod deploy;
mod failover;
mod lifecycle;
mod privileges;
mod recreate;
mod release;
mod render;
mod volume_files;
mod watchdog;
