//! `cargo xtask fuzz [--time 10m] [TARGET...]`: a fuzz campaign over the parsers and
//! escapers (`edge-fuzz`), one target after another on one core.
//!
//! Coverage-guided with AFL++ through cargo-afl (installed if missing) on `fuzz/afl`;
//! where that cannot be built or run, `edge-fuzz-loop`, the in-process random loop. Seeds
//! are the workspace's fixtures plus `fuzz/regressions/TARGET/`; every crash input found
//! is copied there, where `cargo test -p edge-fuzz` replays it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

/// Options of `cargo xtask fuzz`.
#[derive(Debug, clap::Args)]
pub(crate) struct FuzzArgs {
    /// Total fuzzing time, shared evenly by the targets (`90s`, `10m`, `1h`).
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    time: Duration,
    /// Run the in-process random loop even where AFL could run.
    #[arg(long)]
    no_afl: bool,
    /// Targets to run, all when none: metrics, envfile, status, record, stack, translate, escape.
    targets: Vec<String>,
}

/// What one target's run gave.
struct Outcome {
    target: &'static str,
    engine: &'static str,
    executions: u64,
    crashes: Vec<PathBuf>,
    saved_in: PathBuf,
}

pub(crate) fn run(args: FuzzArgs) -> anyhow::Result<()> {
    let root = crate::workspace_root();
    let targets = select(&args.targets)?;
    let share = args.time / targets.len() as u32;
    let share_secs = share.as_secs().max(1);
    let afl =
        if args.no_afl { Err("--no-afl given".to_owned()) } else { build_afl(&root).map_err(|e| format!("{e:#}")) };
    let engine = match &afl {
        Ok(_) => "afl",
        Err(reason) => {
            eprintln!("==> AFL cannot run here ({reason}): fuzzing with the in-process random loop");
            build_loop(&root)?;
            "loop"
        }
    };
    eprintln!("==> fuzzing {} target(s) with {engine}, {share_secs}s each", targets.len());
    let mut outcomes = Vec::new();
    for target in targets {
        let work = root.join("target/fuzz").join(target.name);
        let seeds = write_seeds(&root, target, &work.join("seeds"))?;
        eprintln!("==> {}: {} seeds, {share_secs}s ({})", target.name, seeds, target.about);
        let outcome = match &afl {
            Ok(bin_dir) => run_afl(target.name, &bin_dir.join(target.name), &work, share_secs)?,
            Err(_) => run_loop(&root, target.name, &work, share_secs)?,
        };
        let kept = keep_crashes(&root, &outcome)?;
        eprintln!(
            "==> {}: {} executions, {} unique crash(es){}",
            target.name,
            outcome.executions,
            outcome.crashes.len(),
            if kept > 0 { format!(", {kept} new in fuzz/regressions/{}", target.name) } else { String::new() }
        );
        outcomes.push(outcome);
    }
    println!("{:<10} {:<6} {:>12} {:>8}  crash inputs saved in", "target", "engine", "executions", "crashes");
    for o in &outcomes {
        let saved = if o.crashes.is_empty() { "-".to_owned() } else { o.saved_in.display().to_string() };
        println!("{:<10} {:<6} {:>12} {:>8}  {saved}", o.target, o.engine, o.executions, o.crashes.len());
    }
    let total: u64 = outcomes.iter().map(|o| o.executions).sum();
    let crashes: usize = outcomes.iter().map(|o| o.crashes.len()).sum();
    println!("total: {total} executions, {crashes} unique crash(es)");
    if crashes > 0 {
        bail!("{crashes} crash(es): their inputs are in fuzz/regressions/; `cargo test -p edge-fuzz` replays them");
    }
    Ok(())
}

fn select(names: &[String]) -> anyhow::Result<Vec<&'static edge_fuzz::Target>> {
    if names.is_empty() {
        return Ok(edge_fuzz::TARGETS.iter().collect());
    }
    names
        .iter()
        .map(|n| {
            edge_fuzz::target(n).with_context(|| {
                let known: Vec<&str> = edge_fuzz::TARGETS.iter().map(|t| t.name).collect();
                format!("no fuzz target {n:?} (known: {})", known.join(", "))
            })
        })
        .collect()
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: u64 = number.parse().map_err(|_| format!("{text:?} is not a duration like 90s, 10m or 1h"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("{text:?} has unit {unit:?}: use s, m or h")),
    };
    if secs == 0 {
        return Err("the time must be at least 1s".to_owned());
    }
    Ok(Duration::from_secs(secs))
}

/// Writes the target's seeds and kept inputs into `dir` (emptied first); returns how many.
fn write_seeds(root: &Path, target: &edge_fuzz::Target, dir: &Path) -> anyhow::Result<usize> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let seeds = target.seeds(root).map_err(anyhow::Error::msg)?;
    let kept = target.regressions(root).map_err(anyhow::Error::msg)?;
    for seed in seeds.iter().chain(&kept) {
        let path = dir.join(&seed.name);
        std::fs::write(&path, &seed.data).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(seeds.len() + kept.len())
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
}

/// Installs cargo-afl if missing and builds `fuzz/afl`; returns the folder of its binaries.
fn build_afl(root: &Path) -> anyhow::Result<PathBuf> {
    let has_afl = || cargo().args(["afl", "--version"]).output().is_ok_and(|o| o.status.success());
    if !has_afl() {
        eprintln!("==> installing cargo-afl (cargo install cargo-afl: it builds AFL++ too, a few minutes)");
        let status = cargo().args(["install", "--locked", "cargo-afl"]).status().context("cannot run cargo install")?;
        if !status.success() || !has_afl() {
            bail!("cargo install cargo-afl failed ({status})");
        }
    }
    let target_dir = root.join("target/fuzz/afl-build");
    eprintln!("==> building the AFL harnesses (cargo afl build --release, fuzz/afl)");
    let status = cargo()
        .args(["afl", "build", "--release", "--manifest-path"])
        .arg(root.join("fuzz/afl/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .status()
        .context("cannot run cargo afl build")?;
    if !status.success() {
        bail!("cargo afl build failed ({status})");
    }
    Ok(target_dir.join("release"))
}

fn build_loop(root: &Path) -> anyhow::Result<()> {
    eprintln!("==> building edge-fuzz-loop (profile fuzz-loop)");
    let status = cargo()
        .args(["build", "--profile", "fuzz-loop", "-p", "edge-fuzz", "--bin", "edge-fuzz-loop"])
        .current_dir(root)
        .status()
        .context("cannot run cargo build")?;
    if !status.success() {
        bail!("building edge-fuzz-loop failed ({status})");
    }
    Ok(())
}

/// One AFL++ run of `secs` on one core; its output goes to `work/afl.log`.
fn run_afl(name: &'static str, bin: &Path, work: &Path, secs: u64) -> anyhow::Result<Outcome> {
    let out = work.join("afl");
    let _ = std::fs::remove_dir_all(&out);
    let log = work.join("afl.log");
    let log_file = std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
    let status = cargo()
        .args(["afl", "fuzz", "-V", &secs.to_string(), "-i"])
        .arg(work.join("seeds"))
        .arg("-o")
        .arg(&out)
        .arg("--")
        .arg(bin)
        // No screen, no CPU pinning (the machine is shared), and no core-dump handler check.
        .envs([
            ("AFL_NO_UI", "1"),
            ("AFL_NO_AFFINITY", "1"),
            ("AFL_SKIP_CPUFREQ", "1"),
            ("AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES", "1"),
            ("AFL_IGNORE_SEED_PROBLEMS", "1"),
        ])
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .status()
        .context("cannot run cargo afl fuzz")?;
    let stats_path = out.join("default/fuzzer_stats");
    let stats = std::fs::read_to_string(&stats_path)
        .with_context(|| format!("afl-fuzz wrote no {} ({status}): see {}", stats_path.display(), log.display()))?;
    let executions = stat(&stats, "execs_done").unwrap_or(0);
    let saved_in = out.join("default/crashes");
    let mut crashes: Vec<PathBuf> = std::fs::read_dir(&saved_in)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| is_input(p)).collect())
        .unwrap_or_default();
    crashes.sort();
    Ok(Outcome { target: name, engine: "afl", executions, crashes, saved_in })
}

fn stat(stats: &str, key: &str) -> Option<u64> {
    stats.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then(|| v.trim().parse().ok()).flatten()
    })
}

fn is_input(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("id:"))
}

fn run_loop(root: &Path, name: &'static str, work: &Path, secs: u64) -> anyhow::Result<Outcome> {
    let saved_in = work.join("crashes");
    let _ = std::fs::remove_dir_all(&saved_in);
    let bin = root.join("target/fuzz-loop/edge-fuzz-loop");
    let output = Command::new(&bin)
        .arg(name)
        .arg(secs.to_string())
        .arg(&saved_in)
        .output()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!("{} {name} failed: {}", bin.display(), String::from_utf8_lossy(&output.stderr));
    }
    let executions = stdout
        .lines()
        .last()
        .and_then(|l| l.strip_prefix("executions="))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("edge-fuzz-loop printed no executions= line:\n{stdout}"))?;
    let mut crashes: Vec<PathBuf> =
        std::fs::read_dir(&saved_in).map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
    crashes.sort();
    Ok(Outcome { target: name, engine: "loop", executions, crashes, saved_in })
}

/// Copies the crash inputs into `fuzz/regressions/TARGET/` by content; returns how many were new.
fn keep_crashes(root: &Path, outcome: &Outcome) -> anyhow::Result<usize> {
    let dir = edge_fuzz::regressions_dir(root).join(outcome.target);
    let mut new = 0;
    for crash in &outcome.crashes {
        let data = std::fs::read(crash).with_context(|| format!("cannot read {}", crash.display()))?;
        let path = dir.join(format!("crash-{}", edge_fuzz::input_id(&data)));
        if !path.exists() {
            std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
            std::fs::write(&path, &data).with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("    kept {}", path.display());
            new += 1;
        }
    }
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("10 m").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("m").is_err());
    }

    #[test]
    fn reads_afl_stats() {
        let stats = "start_time        : 1\nexecs_done        : 123456\nsaved_crashes     : 2\n";
        assert_eq!(stat(stats, "execs_done"), Some(123456));
        assert_eq!(stat(stats, "saved_crashes"), Some(2));
        assert_eq!(stat(stats, "missing"), None);
    }
}
