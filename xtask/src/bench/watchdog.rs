//! `cargo xtask bench watchdog` (plain `cargo xtask bench` too): the tick cost of
//! `edge-watchdog --once` (release build) next to the legacy `oxpulse-channels-health-report.sh`
//! it replaces, side by side in one run, on the same generated Caddy metrics pages (3, 30 and 300
//! upstreams among Caddy's and Go's other series).
//!
//! Both read the page from a file (`OXPULSE_METRICS_SRC`), keep their state in fresh temp dirs
//! (`STATE_DIR`, `OXPULSE_TG_STATE_DIR`) and alert a loopback sink of the bench
//! (`OXPULSE_TG_WEBHOOK`, always set: the legacy default is a private address). Scenarios:
//! - `steady`: nothing changes (the timer's usual minute);
//! - `flip`: about half the upstreams change health on every tick, no rate limit (every
//!   transition is sent: one curl each for the legacy script, a digest for edge-watchdog);
//! - `flip+600s`: the same under the default 600 s window, which shows the alerts the legacy
//!   script drops (edge-watchdog holds them in its outbox, to go out together).
//!
//! Wall time is measured around each process; peak RSS comes from `/usr/bin/time -f %M`
//! (for the script: its largest process, bash or a child).
//!
//! Then edge-watchdog alone on a hostile page (`--hostile-series`, 200k upstream series, about
//! 14 MB), in legacy mode and in stack mode (a pool of three): a tick must stay under 100 ms,
//! or the bench fails. The legacy script is left out: it takes minutes on such a page.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use edge_tests::telegram::ChatServer;

/// Options of `cargo xtask bench watchdog`.
#[derive(Debug, clap::Args)]
pub(crate) struct WatchdogBenchArgs {
    /// Timed runs per tool, scenario and page size.
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// Upstream counts of the generated metrics pages.
    #[arg(long, value_delimiter = ',', default_value = "3,30,300")]
    sizes: Vec<usize>,
    /// Use this edge-watchdog binary instead of building the release one.
    #[arg(long, value_name = "PATH")]
    watchdog: Option<PathBuf>,
    /// The legacy script [default: shared/peer/oxpulse-channels-health-report.sh beside the repository].
    #[arg(long, value_name = "PATH")]
    legacy: Option<PathBuf>,
    /// Upstream series of the hostile page edge-watchdog alone is timed on (0 skips it).
    #[arg(long, default_value_t = 200_000)]
    hostile_series: usize,
}

/// The most one tick on the hostile page may take (median wall time of the process).
const HOSTILE_BUDGET: Duration = Duration::from_millis(100);

const TIME: &str = "/usr/bin/time";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Steady,
    Flip,
    FlipWindow,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Self::Steady => "steady",
            Self::Flip => "flip",
            Self::FlipWindow => "flip+600s",
        }
    }
    fn min_interval(self) -> &'static str {
        match self {
            Self::FlipWindow => "600",
            _ => "0",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tool {
    Edge,
    Legacy,
}

/// What one tool did in one scenario and size.
#[derive(Debug, Default)]
struct Measured {
    walls: Vec<Duration>,
    peak_rss_kb: u64,
    /// Transitions that reached the sink.
    delivered: usize,
    /// Transitions waiting in the outbox at the end (edge-watchdog only).
    queued: usize,
    failures: usize,
}

impl Measured {
    fn median(&self) -> Duration {
        super::median(&self.walls)
    }
}

pub(crate) fn run(args: WatchdogBenchArgs) -> anyhow::Result<()> {
    if args.runs == 0 || args.sizes.is_empty() {
        bail!("--runs and --sizes must not be empty");
    }
    let root = crate::workspace_root();
    let legacy = args.legacy.clone().unwrap_or_else(|| root.join("../shared/peer/oxpulse-channels-health-report.sh"));
    if !legacy.is_file() {
        bail!("the legacy script {} is missing (pass --legacy PATH)", legacy.display());
    }
    if !Path::new(TIME).is_file() {
        bail!("{TIME} is missing: apt-get install time");
    }
    let watchdog = match &args.watchdog {
        Some(p) => p.clone(),
        None => super::build_release(&root, "edge-watchdog")?,
    };
    if !watchdog.is_file() {
        bail!(
            "{} is missing: pass an existing --watchdog PATH, or leave it out to build the release one",
            watchdog.display()
        );
    }

    // The loopback sinks run on their own threads while the bench runs processes.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let edge_sink = runtime.block_on(ChatServer::start())?;
    let legacy_sink = runtime.block_on(ChatServer::start())?;

    eprintln!(
        "==> {} runs per cell: {} vs bash {}",
        args.runs,
        watchdog.display(),
        legacy.canonicalize().unwrap_or(legacy.clone()).display()
    );
    let mut rows = Vec::new();
    for &size in &args.sizes {
        for scenario in [Scenario::Steady, Scenario::Flip, Scenario::FlipWindow] {
            eprintln!("==> {} upstreams, {}", size, scenario.name());
            let cell = Cell { size, scenario, runs: args.runs };
            edge_sink.clear();
            legacy_sink.clear();
            let (edge, legacy_m) = cell.measure(&watchdog, &legacy, &edge_sink, &legacy_sink)?;
            rows.push((cell, edge, legacy_m));
        }
    }
    print_table(&rows, args.runs);
    if args.hostile_series > 0 {
        edge_sink.clear();
        hostile(&watchdog, args.hostile_series, args.runs, &edge_sink)?;
    }
    Ok(())
}

/// edge-watchdog on a page of `series` upstream series, in legacy then stack mode: the tick
/// must stay under [`HOSTILE_BUDGET`] and the state file small.
fn hostile(watchdog: &Path, series: usize, runs: usize, sink: &ChatServer) -> anyhow::Result<()> {
    let dir = TempDir::new("hostile")?;
    let page = dir.path().join("metrics.txt");
    let text = metrics_page(series, &[]);
    std::fs::write(&page, &text)?;
    let mb = text.len() as f64 / 1e6;
    eprintln!("==> hostile page: {series} upstream series, {mb:.1} MB");
    let time_file = dir.path().join("time.txt");
    let mut rows = Vec::new();
    for mode in ["legacy", "stack"] {
        let state = dir.path().join(mode);
        std::fs::create_dir_all(&state)?;
        if mode == "stack" {
            // Three members of the page; the other series are none of the watchdog's business.
            let pool = "bench0=127.0.0.1:3081,bench1=127.0.0.1:3082,bench2=127.0.0.1:3083";
            std::fs::write(state.join("install.env"), format!("POOL={pool}\n"))?;
        }
        assert!(sink.webhook_url().starts_with("http://127.0.0.1:"), "alerts go to the bench's loopback sink only");
        let env: Vec<(String, String)> = [
            ("PATH", std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".to_owned())),
            ("OXPULSE_METRICS_SRC", page.display().to_string()),
            ("STATE_DIR", state.display().to_string()),
            ("OXPULSE_TG_STATE_DIR", state.join("telegram").display().to_string()),
            ("OXPULSE_TG_WEBHOOK", sink.webhook_url()),
            ("OXPULSE_TG_MIN_INTERVAL", "0".to_owned()),
            ("OXPULSE_ALERT_BREAKER_TICKS", "0".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        // Prime the state (first sight), untimed.
        run_tool(Tool::Edge, watchdog, watchdog, &env, &time_file)?;
        let mut m = Measured::default();
        for _ in 0..runs {
            let sample = run_tool(Tool::Edge, watchdog, watchdog, &env, &time_file)?;
            m.walls.push(sample.wall);
            m.peak_rss_kb = m.peak_rss_kb.max(sample.rss_kb);
            if sample.code != Some(0) {
                m.failures += 1;
            }
        }
        let state_bytes = std::fs::metadata(state.join("upstream-state.env")).map(|f| f.len()).unwrap_or(0);
        rows.push((mode, m, state_bytes));
    }

    println!();
    println!(
        "edge-watchdog --once on a hostile page of {series} upstream series ({mb:.1} MB): wall time per tick over {runs} runs, budget {}",
        ms(HOSTILE_BUDGET)
    );
    println!();
    let mut over = Vec::new();
    for (mode, m, state_bytes) in &rows {
        let max = m.walls.iter().max().copied().unwrap_or_default();
        let verdict = if m.median() < HOSTILE_BUDGET { "ok" } else { "OVER BUDGET" };
        let failures = if m.failures > 0 { format!(", {} exit≠0", m.failures) } else { String::new() };
        println!(
            "{mode:<7} median {:<9} max {:<9} RSS {:<9} upstream-state.env {state_bytes} bytes{failures}  {verdict}",
            ms(m.median()),
            ms(max),
            mib(m.peak_rss_kb)
        );
        if m.median() >= HOSTILE_BUDGET || m.failures > 0 {
            over.push(format!("{mode} mode: median {}, {} failed runs", ms(m.median()), m.failures));
        }
    }
    if sink.delivered().iter().any(|t| t.contains("TRANSITION")) {
        over.push("the hostile page caused transition alerts".to_owned());
    }
    if !over.is_empty() {
        bail!("edge-watchdog misses the hostile-page budget of {}: {}", ms(HOSTILE_BUDGET), over.join("; "));
    }
    Ok(())
}

struct Cell {
    size: usize,
    scenario: Scenario,
    runs: usize,
}

impl Cell {
    /// Both tools, runs interleaved so that machine noise hits both alike.
    fn measure(
        &self,
        watchdog: &Path,
        legacy: &Path,
        edge_sink: &ChatServer,
        legacy_sink: &ChatServer,
    ) -> anyhow::Result<(Measured, Measured)> {
        let dir = TempDir::new(&format!("{}-{}", self.size, self.scenario.name()))?;
        let page = dir.path().join("metrics.txt");
        let calm = metrics_page(self.size, &[]);
        let flipped: Vec<usize> = (0..self.size).filter(|i| i % 2 == 0).collect();
        let stormy = metrics_page(self.size, &flipped);
        std::fs::write(&page, &calm)?;

        let tools = [(Tool::Edge, edge_sink), (Tool::Legacy, legacy_sink)];
        let mut measured = [Measured::default(), Measured::default()];
        let envs: Vec<Vec<(String, String)>> =
            tools.iter().map(|(tool, sink)| self.env(*tool, dir.path(), &page, &sink.webhook_url())).collect();
        // Prime the state (first sight of every upstream), untimed.
        for ((tool, _), env) in tools.iter().zip(&envs) {
            run_tool(*tool, watchdog, legacy, env, &dir.path().join("time.txt"))?;
        }
        for run in 0..self.runs {
            if self.scenario != Scenario::Steady {
                std::fs::write(&page, if run % 2 == 0 { &stormy } else { &calm })?;
            }
            for (i, (tool, _)) in tools.iter().enumerate() {
                let sample = run_tool(*tool, watchdog, legacy, &envs[i], &dir.path().join("time.txt"))?;
                let m = &mut measured[i];
                m.walls.push(sample.wall);
                m.peak_rss_kb = m.peak_rss_kb.max(sample.rss_kb);
                // The legacy script always exits 0; edge-watchdog 0, or 3 when alerts wait undelivered.
                if sample.code != Some(0) {
                    m.failures += 1;
                }
            }
        }
        for (i, (_, sink)) in tools.iter().enumerate() {
            measured[i].delivered = sink.delivered().iter().map(|m| m.matches("TRANSITION").count()).sum();
        }
        measured[0].queued = queued(&dir.path().join("edge/state/telegram/outbox.json"));
        let [edge, legacy_m] = measured;
        Ok((edge, legacy_m))
    }

    /// The environment of one tool: the page, its own state dirs, the loopback sink.
    fn env(&self, tool: Tool, dir: &Path, page: &Path, webhook: &str) -> Vec<(String, String)> {
        let name = match tool {
            Tool::Edge => "edge",
            Tool::Legacy => "legacy",
        };
        let state = dir.join(name).join("state");
        // On a node the state dir exists (the installer made it); the legacy script relies on that.
        let _ = std::fs::create_dir_all(&state);
        assert!(webhook.starts_with("http://127.0.0.1:"), "alerts go to the bench's loopback sink only");
        let mut env = vec![
            ("PATH".to_owned(), std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".to_owned())),
            ("OXPULSE_METRICS_SRC".to_owned(), page.display().to_string()),
            ("STATE_DIR".to_owned(), state.display().to_string()),
            ("OXPULSE_TG_STATE_DIR".to_owned(), state.join("telegram").display().to_string()),
            ("OXPULSE_TG_WEBHOOK".to_owned(), webhook.to_owned()),
            ("OXPULSE_TG_MIN_INTERVAL".to_owned(), self.scenario.min_interval().to_owned()),
        ];
        if tool == Tool::Edge {
            // The legacy script has no circuit breaker: compare like with like.
            env.push(("OXPULSE_ALERT_BREAKER_TICKS".to_owned(), "0".to_owned()));
        }
        env
    }
}

/// A scratch folder removed on drop (xtask keeps its dependencies few).
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join(format!("edge-bench-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Self(path))
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Sample {
    wall: Duration,
    rss_kb: u64,
    code: Option<i32>,
}

fn run_tool(
    tool: Tool,
    watchdog: &Path,
    legacy: &Path,
    env: &[(String, String)],
    time_file: &Path,
) -> anyhow::Result<Sample> {
    let mut cmd = Command::new(TIME);
    cmd.args(["-f", "%M", "-o"]).arg(time_file);
    match tool {
        Tool::Edge => cmd.arg(watchdog).arg("--once"),
        Tool::Legacy => cmd.arg("bash").arg(legacy),
    };
    cmd.env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let started = Instant::now();
    let status = cmd.status().with_context(|| format!("cannot run {TIME}"))?;
    let wall = started.elapsed();
    let text = std::fs::read_to_string(time_file).unwrap_or_default();
    // `time` prints "Command exited with non-zero status N" before the figure when it does.
    let rss_kb = text.lines().filter_map(|l| l.trim().parse::<u64>().ok()).next_back().unwrap_or(0);
    Ok(Sample { wall, rss_kb, code: status.code() })
}

/// Events waiting in edge-watchdog's outbox.
fn queued(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["entries"].as_array().map(Vec::len))
        .unwrap_or(0)
}

/// A Caddy 2.6 `/metrics` page: Go runtime and process series, admin and HTTP server
/// histograms, and `size` upstream health series (those in `unhealthy` at 0).
fn metrics_page(size: usize, unhealthy: &[usize]) -> String {
    let mut p = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: &[String]| {
        p.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for s in samples {
            p.push_str(s);
            p.push('\n');
        }
    };
    family(
        "caddy_admin_http_requests_total",
        "counter",
        "Counter of requests made to the Admin API's HTTP endpoints.",
        &[
            "caddy_admin_http_requests_total{code=\"200\",handler=\"load\",method=\"POST\",path=\"/load\"} 1".into(),
            "caddy_admin_http_requests_total{code=\"200\",handler=\"metrics\",method=\"GET\",path=\"/metrics\"} 5231"
                .into(),
        ],
    );
    let handlers =
        [("reverse_proxy", "200"), ("reverse_proxy", "502"), ("subroute", "200"), ("static_response", "404")];
    let histogram = |name: &str, bounds: &[&str]| -> Vec<String> {
        let mut out = Vec::new();
        for (i, (handler, code)) in handlers.iter().enumerate() {
            let labels = format!("code=\"{code}\",handler=\"{handler}\",method=\"GET\",server=\"srv0\"");
            let mut cumulative = 0;
            for (j, le) in bounds.iter().enumerate() {
                cumulative += (i + 1) * (j + 3);
                out.push(format!("{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}"));
            }
            out.push(format!("{name}_sum{{{labels}}} {}.{}", cumulative / 7, i * 137));
            out.push(format!("{name}_count{{{labels}}} {cumulative}"));
        }
        out
    };
    let durations = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"];
    let sizes =
        ["256", "1024", "4096", "16384", "65536", "262144", "1.048576e+06", "4.194304e+06", "1.6777216e+07", "+Inf"];
    family(
        "caddy_http_request_duration_seconds",
        "histogram",
        "Histogram of round-trip request durations.",
        &histogram("caddy_http_request_duration_seconds", &durations),
    );
    family(
        "caddy_http_request_size_bytes",
        "histogram",
        "Total size of the request. Includes body",
        &histogram("caddy_http_request_size_bytes", &sizes),
    );
    family(
        "caddy_http_requests_in_flight",
        "gauge",
        "Number of requests currently handled by this server.",
        &handlers
            .iter()
            .map(|(h, _)| format!("caddy_http_requests_in_flight{{handler=\"{h}\",server=\"srv0\"}} 0"))
            .collect::<Vec<_>>(),
    );
    family(
        "caddy_http_requests_total",
        "counter",
        "Counter of HTTP(S) requests made.",
        &handlers
            .iter()
            .map(|(h, _)| format!("caddy_http_requests_total{{handler=\"{h}\",server=\"srv0\"}} 81234"))
            .collect::<Vec<_>>(),
    );
    family(
        "caddy_http_response_duration_seconds",
        "histogram",
        "Histogram of times to first byte in response bodies.",
        &histogram("caddy_http_response_duration_seconds", &durations),
    );
    family(
        "caddy_http_response_size_bytes",
        "histogram",
        "Size of the returned response.",
        &histogram("caddy_http_response_size_bytes", &sizes),
    );
    let upstreams: Vec<String> = (0..size)
        .map(|i| {
            let healthy = u8::from(!unhealthy.contains(&i));
            format!("caddy_reverse_proxy_upstreams_healthy{{upstream=\"127.0.0.1:{}\"}} {healthy}", 3081 + i)
        })
        .collect();
    family("caddy_reverse_proxy_upstreams_healthy", "gauge", "Health status of reverse proxy upstreams.", &upstreams);
    let quantiles = ["0", "0.25", "0.5", "0.75", "1"];
    family(
        "go_gc_duration_seconds",
        "summary",
        "A summary of the pause duration of garbage collection cycles.",
        &quantiles
            .iter()
            .map(|q| format!("go_gc_duration_seconds{{quantile=\"{q}\"}} 4.2e-05"))
            .chain(["go_gc_duration_seconds_sum 0.0713".to_owned(), "go_gc_duration_seconds_count 1202".to_owned()])
            .collect::<Vec<_>>(),
    );
    family("go_goroutines", "gauge", "Number of goroutines that currently exist.", &["go_goroutines 41".into()]);
    family("go_info", "gauge", "Information about the Go environment.", &["go_info{version=\"go1.19.8\"} 1".into()]);
    for (name, value) in [
        ("go_memstats_alloc_bytes", "1.2345e+07"),
        ("go_memstats_buck_hash_sys_bytes", "1.4969e+06"),
        ("go_memstats_gc_sys_bytes", "8.9e+06"),
        ("go_memstats_heap_alloc_bytes", "1.2345e+07"),
        ("go_memstats_heap_idle_bytes", "5.1e+06"),
        ("go_memstats_heap_inuse_bytes", "1.5e+07"),
        ("go_memstats_heap_objects", "81234"),
        ("go_memstats_heap_released_bytes", "2.1e+06"),
        ("go_memstats_heap_sys_bytes", "2.0e+07"),
        ("go_memstats_last_gc_time_seconds", "1.7162e+09"),
        ("go_memstats_mcache_inuse_bytes", "9600"),
        ("go_memstats_mspan_inuse_bytes", "250000"),
        ("go_memstats_next_gc_bytes", "1.9e+07"),
        ("go_memstats_other_sys_bytes", "1.9e+06"),
        ("go_memstats_stack_inuse_bytes", "1.2e+06"),
        ("go_memstats_sys_bytes", "3.4e+07"),
        ("go_threads", "12"),
        ("process_max_fds", "1.048576e+06"),
        ("process_open_fds", "23"),
        ("process_resident_memory_bytes", "4.5e+07"),
        ("process_start_time_seconds", "1.7161e+09"),
        ("process_virtual_memory_bytes", "7.9e+08"),
    ] {
        family(name, "gauge", "Go runtime or process statistic.", &[format!("{name} {value}")]);
    }
    for (name, value) in [
        ("go_memstats_frees_total", "1.023e+07"),
        ("go_memstats_lookups_total", "0"),
        ("go_memstats_mallocs_total", "1.031e+07"),
        ("process_cpu_seconds_total", "312.4"),
        ("promhttp_metric_handler_requests_total{code=\"200\"}", "5231"),
    ] {
        let family_name = name.split('{').next().unwrap_or(name);
        family(family_name, "counter", "Go runtime or process counter.", &[format!("{name} {value}")]);
    }
    p
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn mib(kb: u64) -> String {
    format!("{:.1} MiB", kb as f64 / 1024.0)
}

fn print_table(rows: &[(Cell, Measured, Measured)], runs: usize) {
    println!();
    println!("edge-watchdog --once vs oxpulse-channels-health-report.sh: median wall time per tick over {runs} runs,");
    println!(
        "peak RSS (largest process), transitions that reached the loopback sink (edge-watchdog: + queued in its outbox)"
    );
    println!();
    let header = [
        "upstreams",
        "scenario",
        "edge-watchdog",
        "legacy bash",
        "legacy/edge",
        "RSS edge",
        "RSS legacy",
        "alerts edge",
        "alerts legacy",
    ];
    let mut table: Vec<Vec<String>> = vec![header.iter().map(|h| (*h).to_owned()).collect()];
    for (cell, edge, legacy) in rows {
        let flips = (0..cell.size).filter(|i| i % 2 == 0).count();
        let expected = if cell.scenario == Scenario::Steady { 0 } else { flips * cell.runs };
        let ratio = legacy.median().as_secs_f64() / edge.median().as_secs_f64().max(1e-9);
        let edge_alerts = if edge.queued > 0 {
            format!("{}+{}q/{expected}", edge.delivered, edge.queued)
        } else {
            format!("{}/{expected}", edge.delivered)
        };
        let mut edge_median = ms(edge.median());
        if edge.failures > 0 {
            edge_median.push_str(&format!(" ({} exit≠0)", edge.failures));
        }
        table.push(vec![
            cell.size.to_string(),
            cell.scenario.name().to_owned(),
            edge_median,
            ms(legacy.median()),
            format!("{ratio:.1}x"),
            mib(edge.peak_rss_kb),
            mib(legacy.peak_rss_kb),
            edge_alerts,
            format!("{}/{expected}", legacy.delivered),
        ]);
    }
    let widths: Vec<usize> =
        (0..header.len()).map(|c| table.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    for row in &table {
        let line: Vec<String> = row.iter().zip(&widths).map(|(v, w)| format!("{v:<w$}")).collect();
        println!("{}", line.join("  ").trim_end());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_hold_the_upstreams_among_other_series() {
        let page = metrics_page(30, &[0, 2]);
        let health: Vec<&str> =
            page.lines().filter(|l| l.starts_with("caddy_reverse_proxy_upstreams_healthy{")).collect();
        assert_eq!(health.len(), 30);
        assert_eq!(health.iter().filter(|l| l.ends_with(" 0")).count(), 2);
        assert!(page.lines().count() > 200, "a realistic page has plenty of other series");
    }

    #[test]
    fn pages_pass_promtool() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("page.txt");
        std::fs::write(&file, metrics_page(3, &[1])).unwrap();
        let out = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::fs::File::open(&file).unwrap())
            .output()
            .expect("promtool runs (apt-get install prometheus)");
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
