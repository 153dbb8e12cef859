//! edge-render's integration tests: one binary, one module per feature.

mod channels;
mod errors;
mod escaping;
mod front_proxy;
mod keywords;
mod snapshots;
mod support;
mod types;
