//! `cargo xtask`: project automation. One subcommand per file; this file only dispatches.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod demo;
mod fuzz;
mod gate;
mod release;
mod test;
mod tidy;

/// Project automation for the edge workspace (run as `cargo xtask <task>`).
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", version)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

/// The tasks; adding one is a variant here and a file beside this one.
#[derive(Debug, Subcommand)]
enum Task {
    /// Time edge against what it replaces: `watchdog` (the default) against the legacy bash watchdog, `deploy` against docker-compose.
    Bench(bench::BenchArgs),
    /// Build the local images and bring up the embedded partner edge in target/demo-root (--down removes it).
    Demo(demo::DemoArgs),
    /// Fuzz the parsers and escapers (AFL++ via cargo-afl, else a random loop), keeping crash inputs in fuzz/regressions.
    Fuzz(fuzz::FuzzArgs),
    /// Run `edge gate` (the whole lifecycle, N times, each step timed) on the demo stack.
    Gate(gate::GateArgs),
    /// Build the release: static binaries, templates, installer, checksums and the naive image.
    Release(release::ReleaseArgs),
    /// Provision the test dependencies, then run every check CI runs.
    Test(test::TestArgs),
    /// Check that every Rust file opens with a `//!` line saying what it is.
    Tidy,
}

/// The workspace root (the folder of the root Cargo.toml).
fn workspace_root() -> PathBuf {
    let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask.parent().unwrap_or(xtask).to_path_buf()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Bench(args) => bench::run(args),
        Task::Demo(args) => demo::run(args),
        Task::Fuzz(args) => fuzz::run(args),
        Task::Gate(args) => gate::run(args),
        Task::Release(args) => release::run(args),
        Task::Test(args) => test::run(args),
        Task::Tidy => tidy::check(&workspace_root()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
