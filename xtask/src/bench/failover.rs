//! `cargo xtask bench failover`: what users see during failures and re-installs. Steady,
//! bounded loopback load goes through Caddy while, one at a time, the serving channel is killed,
//! restarted, and the stack re-installed with a Caddyfile-only change, with a pool change (an
//! optional channel leaves) and with no change. For each event: failed requests, the longest
//! stall with no answer, p99 latency against the baseline just before, the channel serving
//! before and after, and whether Caddy's container (its id) survived.
//!
//! The same events then run on the same rendered files under `docker-compose up -d` (the
//! compose user's experience): the files edge rendered at each stage are put in place and
//! `up -d` applies them. Compose does not see a bind-mounted file change, so its run also says
//! whether Caddy took the new config, and what `up -d --force-recreate caddy` costs to make it.
//!
//! The stack is a copy of the partner edge on the local images (`TestStack`: own names and
//! loopback ports), with Caddy's pool options at the stack's defaults (10 s active checks).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use edge_tests::docker::{TestStack, docker_out, partner_edge_images};
use edge_tests::load::{Load, LoadConfig, Record, Sample};

use crate::demo::{DEMO_ENV, DEMO_NODE_CONFIG};

/// Options of `cargo xtask bench failover`.
#[derive(Debug, clap::Args)]
pub(crate) struct FailoverBenchArgs {
    /// Concurrent load clients.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Requests per second each client sends at most.
    #[arg(long, default_value_t = 125)]
    rate: u32,
    /// Use this edge binary instead of building the release one.
    #[arg(long, value_name = "PATH")]
    edge: Option<PathBuf>,
}

/// The load stops by itself after this long, whatever happens.
const LOAD_LIMIT: Duration = Duration::from_secs(600);
/// The baseline: this long before each event.
const BASELINE: Duration = Duration::from_secs(2);
/// How long after an event's command returns its window stays open.
const SETTLE: Duration = Duration::from_millis(1500);
/// How long a recovered channel may take to serve again.
const RECOVERY: Duration = Duration::from_secs(40);
/// The stack's `lb_try_interval`: Caddy sleeps this long after any failed attempt before it
/// tries the next upstream, so a request answered this late was held for a retry.
const TRY_INTERVAL: Duration = Duration::from_millis(250);

/// One event's numbers.
struct Row {
    event: &'static str,
    tool: &'static str,
    failed: usize,
    /// Why requests failed: each distinct error with its count.
    failures: std::collections::BTreeMap<String, usize>,
    total: usize,
    stall: Duration,
    /// Answered requests that took at least [`TRY_INTERVAL`].
    held: usize,
    /// The slowest answered request.
    slowest: Duration,
    p99_base: Duration,
    p99_event: Duration,
    before: String,
    after: String,
    caddy_kept: bool,
    /// Whether Caddy runs the config the event meant it to (`-` when the event changes none).
    applied: Option<bool>,
}

pub(crate) fn run(args: FailoverBenchArgs) -> anyhow::Result<()> {
    let edge = super::edge_against_compose(args.edge.as_deref())?;
    // The host as edge install leaves a real node (a --root install never touches it).
    for s in edge_tests::host::apply_partner_edge_sysctls()? {
        eprintln!("==> host: {} = {} ({:?})", s.key, s.value, s.outcome);
    }

    let stack = TestStack::partner_edge("bench-failover")?;
    let bench =
        Bench { stack: &stack, edge: &edge, load: LoadConfig::new("127.0.0.1:0", args.clients, args.rate, LOAD_LIMIT) };
    let mut rows = bench.edge_events()?;
    rows.extend(bench.compose_events()?);
    print_table(&rows, &args);
    Ok(())
}

struct Bench<'a> {
    stack: &'a TestStack,
    edge: &'a Path,
    load: LoadConfig,
}

/// The rendered files of one stage, as edge wrote them.
struct Stage {
    compose: Vec<u8>,
    caddyfile: Vec<u8>,
}

impl Bench<'_> {
    fn site(&self) -> String {
        format!("127.0.0.1:{}", self.stack.ports.site)
    }

    fn container(&self, name: &str) -> String {
        self.stack.container(name)
    }

    fn caddy_id(&self) -> String {
        docker_out(&["inspect", "-f", "{{.Id}}", &self.container("oxpulse-partner-caddy")]).trim().to_owned()
    }

    /// Caddy's running config (its admin API), "" when it does not answer.
    fn running_config(&self) -> String {
        let admin = format!("127.0.0.1:{}", self.stack.ports.admin);
        edge_tests::upstream::http_get(&admin, "/config/").map(|r| r.body).unwrap_or_default()
    }

    /// `edge install` of the bench stack: every channel unless `without_naive`, `set` on top.
    fn install(&self, set: &[&str], without_naive: bool) -> anyhow::Result<()> {
        let node_config = self.stack.root().join("node-config.input.json");
        std::fs::write(&node_config, DEMO_NODE_CONFIG)?;
        let images = partner_edge_images();
        let mut cmd = self.stack.command(self.edge);
        cmd.args(["install", "--partner-id", "bench", "--domain", "edge.bench.invalid", "--manual-config"])
            .arg(&node_config)
            .args(["--images", &images, "--health-timeout", "60s"])
            // Alerts need a transport, or install is degraded (exit 3): a loopback webhook.
            .args(["--alert-webhook", &edge_tests::telegram::shared_chat_server().webhook_url()]);
        // Caddy's pool at the stack's defaults, not the test stack's 1 s checks.
        for s in ["CADDY_HEALTH_INTERVAL=10s", "CADDY_HEALTH_TIMEOUT=3s"].iter().chain(set) {
            cmd.args(["--set", s]);
        }
        cmd.envs(DEMO_ENV.iter().copied().filter(|(k, _)| !(without_naive && k.starts_with("NAIVE_"))));
        run_quiet(cmd, "edge install")
    }

    fn stage(&self) -> anyhow::Result<Stage> {
        Ok(Stage {
            compose: std::fs::read(self.stack.config_file("docker-compose.yml")?)?,
            caddyfile: std::fs::read(self.stack.config_file("Caddyfile")?)?,
        })
    }

    /// Puts a stage's files in place the way a renderer does: a new file renamed over the old.
    fn put_stage(&self, stage: &Stage) -> anyhow::Result<()> {
        for (name, bytes) in [("docker-compose.yml", &stage.compose), ("Caddyfile", &stage.caddyfile)] {
            let path = self.stack.config_file(name)?;
            let tmp = path.with_extension("bench-tmp");
            std::fs::write(&tmp, bytes)?;
            std::fs::rename(&tmp, &path)?;
        }
        Ok(())
    }

    fn compose(&self, args: &[&str]) -> anyhow::Result<()> {
        let mut cmd = Command::new("docker-compose");
        cmd.arg("-f").arg(self.stack.config_file("docker-compose.yml")?).args(["-p", &self.stack.name]).args(args);
        run_quiet(cmd, &format!("docker-compose {}", args.join(" ")))
    }

    /// Until a request through Caddy is served by `channel`.
    fn wait_served_by(&self, channel: &str) -> anyhow::Result<()> {
        let started = Instant::now();
        let served = || {
            let r = edge_tests::upstream::http_get(&self.site(), "/probe").ok()?;
            edge_tests::load::channel_tag(&r.body).map(str::to_owned)
        };
        while served().as_deref() != Some(channel) {
            if started.elapsed() > RECOVERY {
                bail!("{channel} did not serve again within {RECOVERY:?}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    }

    /// Runs `events` under one load; returns a row per event.
    fn under_load(&self, tool: &'static str, events: &[Event<'_>]) -> anyhow::Result<Vec<Row>> {
        let load = Load::start(&LoadConfig { addr: self.site(), ..self.load.clone() })?;
        std::thread::sleep(BASELINE);
        let mut marks = Vec::new();
        for e in events {
            eprintln!("==> {tool}: {}", e.name);
            let caddy_before = self.caddy_id();
            let start = load.now();
            (e.act)()?;
            std::thread::sleep(SETTLE);
            let end = load.now();
            let config = self.running_config();
            let applied = e.applied.as_ref().map(|a| match a {
                Applied::Has(text) => config.contains(text.as_str()),
                Applied::Lacks(text) => !config.is_empty() && !config.contains(text.as_str()),
            });
            marks.push((e.name, start, end, caddy_before == self.caddy_id(), applied));
            if let Some((channel, recover)) = &e.recover {
                recover()?;
                self.wait_served_by(channel)?;
            }
            std::thread::sleep(BASELINE);
        }
        let record = load.finish();
        Ok(marks
            .into_iter()
            .map(|(event, start, end, caddy_kept, applied)| row(&record, event, tool, start, end, caddy_kept, applied))
            .collect())
    }

    fn edge_events(&self) -> anyhow::Result<Vec<Row>> {
        eprintln!("==> edge install of the bench stack");
        self.install(&[], false)?;
        self.wait_pool()?;
        let events = self.events(
            Box::new(|| self.install(&["CADDY_LB_TRY_INTERVAL=200ms"], false)),
            Box::new(|| self.install(&["CADDY_LB_TRY_INTERVAL=200ms"], true)),
            Box::new(|| self.install(&["CADDY_LB_TRY_INTERVAL=200ms"], true)),
        );
        self.under_load("edge", &events)
    }

    fn compose_events(&self) -> anyhow::Result<Vec<Row>> {
        // The files of each stage, rendered by edge: as installed, Caddyfile-only change, pool change.
        self.install(&[], false)?;
        let first = self.stage()?;
        self.install(&["CADDY_LB_TRY_INTERVAL=200ms"], false)?;
        let caddy_only = self.stage()?;
        self.install(&["CADDY_LB_TRY_INTERVAL=200ms"], true)?;
        let pool_change = self.stage()?;

        eprintln!("==> docker-compose up -d on the same rendered files");
        self.stack.cleanup();
        self.put_stage(&first)?;
        self.compose(&["up", "-d"])?;
        self.wait_pool()?;
        let mut events = self.events(
            Box::new(|| {
                self.put_stage(&caddy_only)?;
                self.compose(&["up", "-d"])
            }),
            Box::new(|| {
                self.put_stage(&pool_change)?;
                self.compose(&["up", "-d", "--remove-orphans"])
            }),
            Box::new(|| self.compose(&["up", "-d", "--remove-orphans"])),
        );
        // Compose does not see a changed bind-mounted file: this is what applying it takes.
        events.insert(
            3,
            Event {
                name: "Caddyfile-only: up -d --force-recreate caddy",
                act: Box::new(|| {
                    // Compose keys are the container names, as in the legacy compose file.
                    self.compose(&["up", "-d", "--force-recreate", &self.stack.container("oxpulse-partner-caddy")])
                }),
                applied: Some(Applied::Has(TRY_200MS.to_owned())),
                recover: None,
            },
        );
        let rows = self.under_load("docker-compose", &events);
        self.stack.cleanup();
        rows
    }

    /// The five events; the re-installs are the given actions.
    fn events<'a>(&'a self, caddy_only: Action<'a>, pool_change: Action<'a>, noop: Action<'a>) -> Vec<Event<'a>> {
        let xray = self.container("oxpulse-partner-xray");
        let naive = format!(r#""dial":"127.0.0.1:{}""#, self.stack.ports.naive);
        let (kill, start, restart) = (xray.clone(), xray.clone(), xray);
        vec![
            Event {
                name: "kill the serving channel (xray)",
                act: Box::new(move || docker(&["kill", &kill])),
                applied: None,
                recover: Some(("xray", Box::new(move || docker(&["start", &start])))),
            },
            Event {
                name: "restart the serving channel (xray)",
                act: Box::new(move || docker(&["restart", &restart])),
                applied: None,
                recover: Some(("xray", Box::new(|| Ok(())))),
            },
            Event {
                name: "re-install, Caddyfile-only change",
                act: caddy_only,
                applied: Some(Applied::Has(TRY_200MS.to_owned())),
                recover: None,
            },
            Event {
                name: "re-install, pool change (naive leaves)",
                act: pool_change,
                applied: Some(Applied::Lacks(naive)),
                recover: None,
            },
            Event { name: "no-op re-install", act: noop, applied: None, recover: None },
        ]
    }

    /// Until Caddy's metrics call every channel's upstream healthy.
    fn wait_pool(&self) -> anyhow::Result<()> {
        let admin = format!("127.0.0.1:{}", self.stack.ports.admin);
        let p = self.stack.ports;
        let started = Instant::now();
        loop {
            let page = edge_tests::upstream::http_get(&admin, "/metrics").map(|r| r.body).unwrap_or_default();
            let healthy = [p.xray, p.hysteria2, p.naive].iter().all(|port| {
                page.contains(&format!("caddy_reverse_proxy_upstreams_healthy{{upstream=\"127.0.0.1:{port}\"}} 1"))
            });
            if healthy {
                return Ok(());
            }
            if started.elapsed() > RECOVERY {
                bail!("Caddy did not see every channel healthy within {RECOVERY:?}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Caddy's running config with the Caddyfile-only change applied.
const TRY_200MS: &str = r#""try_interval":200000000"#;

type Action<'a> = Box<dyn Fn() -> anyhow::Result<()> + 'a>;

/// How to tell that Caddy runs the config an event meant it to.
enum Applied {
    /// Its running config holds this text.
    Has(String),
    /// Its running config lacks this text.
    Lacks(String),
}

struct Event<'a> {
    name: &'static str,
    act: Action<'a>,
    applied: Option<Applied>,
    /// After the event's window: bring the stack back until this channel serves again.
    recover: Option<(&'static str, Action<'a>)>,
}

fn row(
    record: &Record,
    event: &'static str,
    tool: &'static str,
    start: Duration,
    end: Duration,
    caddy_kept: bool,
    applied: Option<bool>,
) -> Row {
    let base = record.window(start.saturating_sub(BASELINE), start);
    let during = record.window(start, end);
    Row {
        event,
        tool,
        failed: during.failures().len(),
        failures: during.failures().into_iter().fold(Default::default(), |mut m, s| {
            *m.entry(s.outcome.clone().unwrap_err()).or_insert(0) += 1;
            m
        }),
        total: during.total(),
        stall: during.longest_stall(),
        held: during.samples.iter().filter(|s| s.outcome.is_ok() && s.latency() >= TRY_INTERVAL).count(),
        slowest: during.samples.iter().filter(|s| s.outcome.is_ok()).map(Sample::latency).max().unwrap_or_default(),
        p99_base: base.percentile(99.0),
        p99_event: during.percentile(99.0),
        before: base.last_served().unwrap_or("-").to_owned(),
        after: during.last_served().unwrap_or("-").to_owned(),
        caddy_kept,
        applied,
    }
}

fn docker(args: &[&str]) -> anyhow::Result<()> {
    let mut cmd = Command::new("docker");
    cmd.args(args);
    run_quiet(cmd, &format!("docker {}", args.join(" ")))
}

/// Runs a command to its end; a failure is an error with its output.
fn run_quiet(mut cmd: Command, what: &str) -> anyhow::Result<()> {
    cmd.stdin(Stdio::null());
    let out = cmd.output().with_context(|| format!("cannot run {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} exited with {}\n--- stdout\n{}--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn ms(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

fn print_table(rows: &[Row], args: &FailoverBenchArgs) {
    println!();
    println!(
        "failover under load: {} clients x {} req/s through Caddy (one connection per request), stack-default pool options",
        args.clients, args.rate
    );
    println!(
        "window: from the event until {} ms after its command returned; baseline: the {} s before",
        SETTLE.as_millis(),
        BASELINE.as_secs()
    );
    println!();
    let mut table: Vec<Vec<String>> = vec![
        [
            "event",
            "tool",
            "failed/requests",
            "longest stall",
            "held >= 250 ms (slowest)",
            "p99 base -> event",
            "served before -> after",
            "caddy id kept",
            "config applied",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for r in rows {
        table.push(vec![
            r.event.to_owned(),
            r.tool.to_owned(),
            format!("{}/{}", r.failed, r.total),
            ms(r.stall),
            format!("{} ({})", r.held, ms(r.slowest)),
            format!("{} -> {}", ms(r.p99_base), ms(r.p99_event)),
            format!("{} -> {}", r.before, r.after),
            if r.caddy_kept { "yes" } else { "no" }.to_owned(),
            r.applied.map_or("-", |a| if a { "yes" } else { "no" }).to_owned(),
        ]);
    }
    let widths: Vec<usize> =
        (0..table[0].len()).map(|c| table.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    for row in &table {
        let line: Vec<String> = row.iter().zip(&widths).map(|(v, w)| format!("{v:<w$}")).collect();
        println!("{}", line.join("  ").trim_end());
    }
    for r in rows.iter().filter(|r| !r.failures.is_empty()) {
        println!();
        println!("failed during \"{}\" ({}):", r.event, r.tool);
        for (error, count) in &r.failures {
            println!("  {count} x {error}");
        }
    }
}
