//! The `edge` binary: a shim over [`edge_cli::edge_main`].

fn main() -> std::process::ExitCode {
    edge_cli::edge_main()
}
