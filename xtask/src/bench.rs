//! `cargo xtask bench`: timings of edge next to what it replaces, one suite per file under
//! `bench/` (`watchdog`, the default, `deploy`, `pull` and `failover`); this file dispatches and holds what they
//! share.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

mod deploy;
mod failover;
mod pull;
mod watchdog;

/// Options of `cargo xtask bench`: a suite, or the watchdog suite's options.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct BenchArgs {
    /// The suite to run [default: watchdog].
    #[command(subcommand)]
    suite: Option<Suite>,
    /// The watchdog suite's options, when no suite is named.
    #[command(flatten)]
    watchdog: watchdog::WatchdogBenchArgs,
}

/// The bench suites.
#[derive(Debug, clap::Subcommand)]
enum Suite {
    /// Time `edge-watchdog --once` against the legacy bash watchdog on generated metrics pages.
    Watchdog(watchdog::WatchdogBenchArgs),
    /// Time `edge install` (fresh, no-op re-run) against `docker-compose up -d` on the rendered compose file.
    Deploy(deploy::DeployBenchArgs),
    /// Time the pull of the demo images from docker-registry on loopback, as `edge install` pulls them.
    Pull(pull::PullBenchArgs),
    /// Failed requests, stalls and p99 under load while channels die and the stack is re-installed,
    /// edge against `docker-compose up -d` on the same rendered files.
    Failover(failover::FailoverBenchArgs),
}

pub(crate) fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.suite {
        None => watchdog::run(args.watchdog),
        Some(Suite::Watchdog(args)) => watchdog::run(args),
        Some(Suite::Deploy(args)) => deploy::run(args),
        Some(Suite::Pull(args)) => pull::run(args),
        Some(Suite::Failover(args)) => failover::run(args),
    }
}

/// Builds one binary of edge-cli in release (what operators run) and returns its path.
fn build_release(root: &Path, bin: &str) -> anyhow::Result<PathBuf> {
    eprintln!("==> cargo build --release -p edge-cli --bin {bin}");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(cargo)
        .current_dir(root)
        .args(["build", "--release", "-p", "edge-cli", "--bin", bin])
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("building {bin} failed");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    Ok(target.join("release").join(bin))
}

/// The median of some timings (zero for none).
fn median(timings: &[Duration]) -> Duration {
    let mut sorted = timings.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

/// What the benches against `docker-compose up -d` need first: the engine, docker-compose, the
/// `edge` binary (`--edge PATH`, else the release build) and the local images.
fn edge_against_compose(edge: Option<&Path>) -> anyhow::Result<PathBuf> {
    edge_tests::docker::docker_version()
        .map_err(|e| anyhow::anyhow!("the bench needs the Docker engine and {e}; start dockerd"))?;
    let compose = Command::new("docker-compose").arg("version").output();
    if !compose.is_ok_and(|o| o.status.success()) {
        bail!("docker-compose is missing: apt-get install docker-compose (cargo xtask test --provision-only does)");
    }
    let edge = match edge {
        Some(path) => path.to_owned(),
        None => build_release(&crate::workspace_root(), "edge")?,
    };
    if !edge.is_file() {
        bail!("{} is missing: pass an existing --edge PATH, or leave it out to build the release one", edge.display());
    }
    eprintln!("==> building the local images (stand-in channel server, Caddy)");
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(edge_tests::docker::ensure_local_images())
        .context("building the local images")?;
    Ok(edge)
}
