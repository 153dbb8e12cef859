//! `cargo xtask bench deploy`: `edge install` (release build; a fresh install, then a no-op
//! re-run) next to `docker-compose up -d` (fresh, then a no-op re-run) on the compose file
//! edge rendered for the same stack and images, in one run.
//!
//! Each round deploys its own copy of the partner edge on the local images (`TestStack`:
//! own names, loopback ports, 1 s health checks, every channel configured with the demo's
//! credentials), so nothing touches a real install or the demo. After edge's two runs its
//! containers, network and volumes go (the rendered files stay) and docker-compose brings the
//! same stack up. `edge install` returns once the channels are healthy and the pool is checked;
//! `docker-compose up -d` returns once the containers are started, so the bench also times how
//! long its channels take to become healthy. Rounds run one after the other; the table shows
//! medians.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use edge_tests::docker::{TestStack, docker_out, partner_edge_images};

use crate::demo::{DEMO_ENV, DEMO_NODE_CONFIG};

/// Options of `cargo xtask bench deploy`.
#[derive(Debug, clap::Args)]
pub(crate) struct DeployBenchArgs {
    /// Timed rounds, each on a fresh copy of the stack.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Use this edge binary instead of building the release one.
    #[arg(long, value_name = "PATH")]
    edge: Option<PathBuf>,
}

/// The channels whose health checks docker-compose's run waits for.
const CHANNELS: &[&str] = &["oxpulse-partner-xray", "oxpulse-partner-hy2", "oxpulse-partner-naive"];

/// How long the channels may take to become healthy, for either tool.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(60);

/// The timings of one round.
#[derive(Debug, Default)]
struct Round {
    edge_fresh: Duration,
    edge_noop: Duration,
    compose_fresh: Duration,
    compose_healthy: Duration,
    compose_noop: Duration,
}

pub(crate) fn run(args: DeployBenchArgs) -> anyhow::Result<()> {
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let edge = super::edge_against_compose(args.edge.as_deref())?;

    let mut rounds = Vec::new();
    for round in 0..args.runs {
        eprintln!("==> round {}/{}", round + 1, args.runs);
        rounds.push(measure(&edge, round)?);
    }
    print_table(&rounds);
    Ok(())
}

/// One round on a fresh copy of the stack, removed when the round ends.
fn measure(edge: &Path, round: usize) -> anyhow::Result<Round> {
    let stack = TestStack::partner_edge(&format!("bench-{round}"))?;
    let node_config = stack.root().join("node-config.input.json");
    std::fs::write(&node_config, DEMO_NODE_CONFIG)?;
    let node_config = node_config.display().to_string();
    let images = partner_edge_images();
    let health_timeout = format!("{}s", HEALTH_TIMEOUT.as_secs());
    let install = [
        "install",
        "--partner-id",
        "bench",
        "--domain",
        "edge.bench.invalid",
        "--manual-config",
        &node_config,
        "--images",
        &images,
        "--health-timeout",
        &health_timeout,
    ];
    let edge_install = || -> anyhow::Result<Duration> {
        let mut cmd = stack.command(edge);
        cmd.args(install).envs(DEMO_ENV.iter().copied());
        timed(cmd, "edge install")
    };
    let mut timings = Round { edge_fresh: edge_install()?, edge_noop: edge_install()?, ..Round::default() };

    // The same stack through docker-compose: edge's containers, network and volumes go, the
    // rendered files stay.
    let compose_file = stack.config_file("docker-compose.yml")?;
    if !compose_file.is_file() {
        bail!("edge install left no compose file at {}", compose_file.display());
    }
    stack.cleanup();
    let compose_up = || -> anyhow::Result<Duration> {
        let mut cmd = Command::new("docker-compose");
        cmd.arg("-f").arg(&compose_file).args(["-p", &stack.name, "up", "-d"]);
        timed(cmd, "docker-compose up -d")
    };
    timings.compose_fresh = compose_up()?;
    let channels: Vec<String> = CHANNELS.iter().map(|c| stack.container(c)).collect();
    timings.compose_healthy = timings.compose_fresh + until_healthy(&channels)?;
    timings.compose_noop = compose_up()?;
    Ok(timings)
}

/// Runs a command to its end and returns its wall time; a failure is an error with its output.
fn timed(mut cmd: Command, what: &str) -> anyhow::Result<Duration> {
    cmd.stdin(Stdio::null());
    let started = Instant::now();
    let out: Output = cmd.output().with_context(|| format!("cannot run {what}"))?;
    let wall = started.elapsed();
    if !out.status.success() {
        bail!(
            "{what} exited with {}\n--- stdout\n{}--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(wall)
}

/// Waits until every container's health check passes; returns how long that took.
fn until_healthy(containers: &[String]) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut args = vec!["inspect", "-f", "{{.State.Health.Status}}"];
    args.extend(containers.iter().map(String::as_str));
    loop {
        let states = docker_out(&args);
        if states.lines().count() == containers.len() && states.lines().all(|s| s == "healthy") {
            return Ok(started.elapsed());
        }
        if started.elapsed() > HEALTH_TIMEOUT {
            bail!("docker-compose's channels were not healthy within {HEALTH_TIMEOUT:?}: {}", states.trim());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn print_table(rounds: &[Round]) {
    let median = |pick: fn(&Round) -> Duration| super::median(&rounds.iter().map(pick).collect::<Vec<_>>());
    let rows = [
        ("fresh, until the command returns", median(|r| r.edge_fresh), median(|r| r.compose_fresh)),
        ("fresh, until the channels are healthy", median(|r| r.edge_fresh), median(|r| r.compose_healthy)),
        ("no-op re-run", median(|r| r.edge_noop), median(|r| r.compose_noop)),
    ];
    println!();
    println!(
        "edge install vs docker-compose up -d on the compose file edge rendered (6 containers, 1 s health checks):"
    );
    println!("median wall time over {} rounds; edge install returns once the channels are healthy", rounds.len());
    println!();
    let mut table: Vec<[String; 4]> =
        vec![["step".into(), "edge install".into(), "docker-compose up -d".into(), "compose/edge".into()]];
    for (step, edge, compose) in rows {
        let ratio = compose.as_secs_f64() / edge.as_secs_f64().max(1e-9);
        table.push([step.to_owned(), secs(edge), secs(compose), format!("{ratio:.2}x")]);
    }
    let widths: Vec<usize> = (0..4).map(|c| table.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    for row in &table {
        let line: Vec<String> = row.iter().zip(&widths).map(|(v, w)| format!("{v:<w$}")).collect();
        println!("{}", line.join("  ").trim_end());
    }
}
