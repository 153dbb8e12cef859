//! Workspace integration tests: one binary, one module per capability.

mod alerts;
mod app_stacks;
mod awg;
mod caddy_syntax;
mod deploy;
mod failover;
mod first_alert;
mod lifecycle;
mod privileges;
mod pull;
mod readiness;
mod recreate;
mod release;
mod render;
mod volume_files;
mod watchdog;
