//! edge-cli's integration tests: one binary, one module per feature.

mod help;
mod pipe;
mod snapshots;
