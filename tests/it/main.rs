//! Workspace integration tests: one binary, one module per capability.

mod adopt;
mod alerts;
mod app_sqlite;
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
mod runbook;
mod volume_files;
mod watchdog;
