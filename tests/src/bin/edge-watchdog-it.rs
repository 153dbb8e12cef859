//! The `edge-watchdog` command as the integration tests run it: the same shim as edge-cli's
//! binary, built by `cargo test` for this crate so the tests need no nested cargo build.

fn main() -> std::process::ExitCode {
    edge_cli::watchdog_main()
}
