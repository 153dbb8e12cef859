//! The `edge` command as the integration tests run it: the same shim as edge-cli's binary,
//! built by `cargo test` so the deploy tests need no nested build.

fn main() -> std::process::ExitCode {
    edge_cli::edge_main()
}
