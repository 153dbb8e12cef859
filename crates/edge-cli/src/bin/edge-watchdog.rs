//! The `edge-watchdog` binary: a shim over [`edge_cli::watchdog_main`].

fn main() -> std::process::ExitCode {
    edge_cli::watchdog_main()
}
