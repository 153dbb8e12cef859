//! What `edge-watchdog` does on each tick: read the front proxy's metrics, hand them to
//! edge-alerts (transitions, outbox, delivery), keep `channels-status.env` true, and write
//! the textfile metrics. [`daemon`] adds the Docker engine's events between ticks.
//!
//! Two modes, chosen per tick from the state dir:
//! - **stack**: `install.env` records the front proxy's pool (`POOL`); the watched upstreams
//!   are the pool's whose channel is `active` or `failed_at_runtime` (failed ones too, so
//!   their recovery is seen), and their channels flip between those two states;
//! - **legacy**: no `POOL` in `install.env` (a node set up by the bash installer): every
//!   upstream series on the metrics page is watched, as `oxpulse-channels-health-report.sh` does.
//!
//! A host-level mesh channel (`awg`) is kept true from the host's WireGuard tools each tick:
//! `active` while its interface exists and its peer's last handshake is within 180 s
//! (`EDGE_AWG_HANDSHAKE_MAX_AGE` seconds when set); each flip is alerted as
//! `TRANSITION channel=awg FROM -> TO (why)`.
//!
//! A channel whose service the operator stopped (`edge stop`) is not watched: it is shown as
//! stopped, never failed, alerted on or restarted. With an always-on service (the front
//! proxy) stopped, the whole tick is skipped as stopped by the operator.
//!
//! The legacy environment is honoured: `OXPULSE_METRICS_SRC` (URL or file), `STATE_DIR`
//! (the state dir, taken as is, above `--root`), `OXPULSE_TG_*`, `TG_TOKEN`, `TG_CHAT`.

pub(crate) mod daemon;
pub(crate) mod textfile;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use edge_alerts::{AlertConfig, Alerter, MetricsSource, Observation, Report, TickStatus};
use edge_channels::{DockerEngine, Engine};
use edge_core::{ChannelsStatus, InstallRecord, ObservedHealth, Paths, PoolMember, Stack};
use edge_deploy::channels::{self, ChannelChange};
use edge_deploy::mesh::{MeshHost, WgTools};
use serde::Serialize;

use crate::settings::Settings;
use crate::{ExitStatus, UsageError};
use textfile::{Counters, Snapshot, Textfile, UpstreamSample};

/// How long the `--once` look at the channel containers may take before it is skipped.
const ENGINE_LOOK_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one host-side readiness probe may take within that look.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// The watchdog: alerter, where the files are, and what it has seen.
pub(crate) struct Watchdog {
    alerter: Alerter,
    paths: Paths,
    stack: Stack,
    textfile: Option<Textfile>,
    snapshot: Snapshot,
    /// The host's WireGuard tools, for mesh channels.
    mesh: Arc<dyn MeshHost>,
    /// How old a mesh peer's last handshake may be.
    mesh_max_age: Duration,
}

/// What one tick found and did (`--json` prints it).
#[derive(Debug, Serialize)]
pub(crate) struct TickOutcome {
    /// `quiet`, `delivered`, `held`, `undelivered`, `no_transport` or `stopped` (by the operator).
    pub(crate) status: &'static str,
    /// `stack` or `legacy`.
    pub(crate) mode: &'static str,
    pub(crate) metrics: MetricsOutcome,
    pub(crate) pool: Vec<PoolOutcome>,
    /// Alert texts detected by this tick.
    pub(crate) events: Vec<String>,
    pub(crate) delivered: Vec<DeliveredOutcome>,
    pub(crate) held: usize,
    pub(crate) undelivered: usize,
    pub(crate) errors: Vec<String>,
    pub(crate) channel_changes: Vec<ChannelChange>,
    /// Services the operator stopped: not watched.
    pub(crate) stopped: Vec<String>,
    pub(crate) duration_ms: f64,
    #[serde(skip)]
    tick_status: Option<TickStatus>,
}

#[derive(Debug, Serialize)]
pub(crate) struct MetricsOutcome {
    pub(crate) source: String,
    pub(crate) reachable: bool,
    pub(crate) error: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct PoolOutcome {
    pub(crate) channel: Option<String>,
    pub(crate) upstream: String,
    pub(crate) health: ObservedHealth,
}

#[derive(Debug, Serialize)]
pub(crate) struct DeliveredOutcome {
    pub(crate) transport: &'static str,
    pub(crate) events: usize,
}

/// The watched pool, as the state dir says now.
struct PoolView {
    /// The install record (empty when there is none: legacy mode).
    record: InstallRecord,
    /// `None` when the file does not parse (then it is not rewritten).
    status: Option<ChannelsStatus>,
}

impl PoolView {
    /// Pool members whose channel the operator did not stop; `None` in legacy mode.
    fn members(&self, stack: &Stack) -> Option<Vec<PoolMember>> {
        let pool = self.record.pool.as_ref()?;
        Some(pool.iter().filter(|m| !channels::stopped_channel(stack, &self.record, &m.channel)).cloned().collect())
    }

    /// Whether the operator stopped an always-on service (the front proxy among them).
    fn stack_stopped(&self, stack: &Stack) -> bool {
        stack.services.iter().any(|s| s.channel.is_none() && self.record.stopped.contains(&s.name))
    }
}

fn word(status: TickStatus) -> &'static str {
    match status {
        TickStatus::Quiet => "quiet",
        TickStatus::Delivered => "delivered",
        TickStatus::Held => "held",
        TickStatus::Undelivered => "undelivered",
        TickStatus::NoTransport => "no_transport",
    }
}

/// The exit status a run ends with: 3 while alerts could not be delivered.
pub(crate) fn exit_status(status: Option<TickStatus>) -> ExitStatus {
    match status {
        Some(TickStatus::Undelivered | TickStatus::NoTransport) => ExitStatus::Degraded,
        _ => ExitStatus::Success,
    }
}

impl TickOutcome {
    pub(crate) fn exit_status(&self) -> ExitStatus {
        exit_status(self.tick_status)
    }

    /// Lines for a person (nothing when the tick was quiet).
    pub(crate) fn lines(&self) -> Vec<String> {
        let mut out: Vec<String> = self.events.iter().map(|e| format!("alert: {e}")).collect();
        if !self.stopped.is_empty() {
            out.push(format!("stopped by the operator (not watched): {}", self.stopped.join(", ")));
        }
        for c in &self.channel_changes {
            out.push(format!("channel {}: {} -> {} ({})", c.channel, c.from, c.to, c.reason));
        }
        out.extend(report_lines(
            &self.delivered.iter().map(|d| (d.transport, d.events)).collect::<Vec<_>>(),
            self.held,
            self.undelivered,
            self.tick_status,
        ));
        out
    }
}

/// What a delivery did, in words.
pub(crate) fn report_lines(
    delivered: &[(&str, usize)],
    held: usize,
    undelivered: usize,
    status: Option<TickStatus>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (transport, events) in delivered {
        out.push(format!("delivered {events} event{} via {transport}", plural(*events)));
    }
    if undelivered > 0 {
        out.push(format!(
            "{undelivered} event{} undelivered: every transport failed; kept in the outbox for the next run",
            plural(undelivered)
        ));
    }
    if held > 0 {
        out.push(format!(
            "{held} event{} held in the outbox (rate-limit window or circuit breaker); they go out together later",
            plural(held)
        ));
    }
    if status == Some(TickStatus::NoTransport) {
        out.push(
            "no alert transport is configured: set OXPULSE_TG_WEBHOOK, or TG_TOKEN and OXPULSE_TG_CHAT".to_owned(),
        );
    }
    out
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The node's paths; `STATE_DIR` (legacy) replaces the state dir as given.
pub(crate) fn effective_paths(settings: &Settings, lookup: &dyn Fn(&str) -> Option<String>) -> Paths {
    match lookup("STATE_DIR").filter(|v| !v.is_empty()) {
        None => settings.paths.clone(),
        Some(dir) => {
            let dir = PathBuf::from(dir);
            let dir =
                if dir.is_absolute() { dir } else { std::env::current_dir().map(|cwd| cwd.join(&dir)).unwrap_or(dir) };
            let mut meta = settings.bundle.stack.stack.clone();
            meta.state_dir = dir;
            Paths::new(None, &meta)
        }
    }
}

/// The alert configuration of this node: the legacy variables, and the metrics source
/// `install.env` recorded (or the stack's `CADDY_ADMIN`) unless `OXPULSE_METRICS_SRC` says.
pub(crate) fn alert_config(
    settings: &Settings,
    paths: &Paths,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<AlertConfig> {
    let mut config = AlertConfig::from_env(paths, lookup).map_err(|e| UsageError(e.to_string()))?;
    if lookup("OXPULSE_METRICS_SRC").is_none_or(|v| v.is_empty()) {
        let recorded = InstallRecord::load_optional(&paths.install_env())?.and_then(|r| r.metrics_url);
        if let Some(url) = recorded.or_else(|| edge_deploy::default_metrics_url(&settings.bundle.stack)) {
            config.metrics = MetricsSource::parse(&url);
        }
    }
    Ok(config)
}

impl Watchdog {
    /// The watchdog of the node `settings` names, configured through `lookup` (the environment).
    pub(crate) fn new(
        settings: &Settings,
        textfile: Option<PathBuf>,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Self> {
        let paths = effective_paths(settings, lookup);
        let config = alert_config(settings, &paths, lookup)?;
        let alerter = Alerter::new(config)
            .context("cannot set up alert delivery")?
            .with_legacy_upstreams(settings.bundle.stack.legacy_upstreams());
        let textfile = textfile.map(Textfile::new);
        let counters = textfile.as_ref().map(Textfile::load_counters).unwrap_or_default();
        let snapshot = Snapshot { counters, ..Snapshot::default() };
        Ok(Self {
            alerter,
            paths,
            stack: settings.bundle.stack.clone(),
            textfile,
            snapshot,
            mesh: Arc::new(WgTools::default()),
            mesh_max_age: edge_deploy::mesh::handshake_max_age(lookup),
        })
    }

    pub(crate) fn stack(&self) -> &Stack {
        &self.stack
    }

    /// The state dir now. A corrupt install record is an error, never a silent switch to
    /// legacy mode.
    fn pool(&self) -> anyhow::Result<PoolView> {
        let record = InstallRecord::load_optional(&self.paths.install_env())?.unwrap_or_default();
        let status = match ChannelsStatus::load(&self.paths.channels_status()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!("{e}; channel states are not updated");
                None
            }
        };
        Ok(PoolView { record, status })
    }

    /// Whether the operator stopped the service whose container this is.
    pub(crate) fn stopped_by_operator(&self, container: &str) -> bool {
        let Ok(view) = self.pool() else { return false };
        self.stack.services.iter().any(|s| s.container == container && view.record.stopped.contains(&s.name))
    }

    /// Pool channels of the stack whose containers the engine says are down, with why.
    /// An engine that cannot be reached says nothing.
    pub(crate) async fn look_at_containers(&self) -> BTreeMap<String, (String, String)> {
        let Some(members) = self.pool().ok().and_then(|view| view.members(&self.stack)) else {
            return BTreeMap::new();
        };
        let names: Vec<(String, String)> = members
            .iter()
            .flat_map(|m| self.stack.services_of(&m.channel).map(|s| (s.container.clone(), m.channel.clone())))
            .collect();
        if names.is_empty() {
            return BTreeMap::new();
        }
        let look = async {
            let engine = match DockerEngine::connect().await {
                Ok(e) => e,
                Err(e) => {
                    tracing::debug!("container states unknown: {e}");
                    return BTreeMap::new();
                }
            };
            let prober = edge_channels::Prober::new(PROBE_TIMEOUT).map_err(|e| e.to_string());
            let mut down = BTreeMap::new();
            for (name, channel) in names {
                match engine.inspect_container(&name).await {
                    Ok(Some(c)) if !c.is_ready() => {
                        let reason = match (c.status, c.health) {
                            (edge_channels::ContainerStatus::Running, h) => format!("container {name} is {h}"),
                            (s, _) => format!("container {name} is {s}"),
                        };
                        down.insert(name, (channel, reason));
                    }
                    Ok(Some(c)) => {
                        // A container probed from the host is down when its probe fails.
                        if let Some(edge_channels::Health::Unhealthy { reason }) = match &prober {
                            Ok(p) => p.probe_container(&c).await,
                            Err(e) => c
                                .labels
                                .contains_key(edge_channels::LABEL_READINESS)
                                .then(|| edge_channels::Health::Unhealthy { reason: e.clone() }),
                        } {
                            down.insert(name.clone(), (channel, format!("container {name} is unhealthy ({reason})")));
                        }
                    }
                    Ok(None) => {
                        down.insert(name.clone(), (channel, format!("container {name} is missing")));
                    }
                    Err(e) => tracing::debug!("{e}"),
                }
            }
            down
        };
        tokio::time::timeout(ENGINE_LOOK_TIMEOUT, look).await.unwrap_or_else(|_| {
            tracing::debug!("the docker engine did not answer within {ENGINE_LOOK_TIMEOUT:?}");
            BTreeMap::new()
        })
    }

    /// One tick. `down` maps a channel to why one of its containers is down.
    pub(crate) async fn tick(&mut self, down: &BTreeMap<String, String>) -> anyhow::Result<TickOutcome> {
        let started = Instant::now();
        let view = self.pool()?;
        let stopped: Vec<String> = view.record.stopped.iter().cloned().collect();
        if view.stack_stopped(&self.stack) {
            return Ok(self.stopped_outcome(stopped, started));
        }
        let members = view.members(&self.stack);
        let legacy = members.is_none();
        let watched: Vec<PoolMember> = match (&members, &view.status) {
            (Some(members), Some(status)) => {
                members.iter().filter(|m| channels::watched(status, &m.channel)).cloned().collect()
            }
            (Some(members), None) => members.clone(),
            (None, _) => Vec::new(),
        };
        let pool = watched.clone();

        let mut observation = self.alerter.observe_pool(&pool).await;
        // What the operator stopped is no news: its series leave the page before detection.
        if let Observation::Metrics { metrics, .. } = &mut observation {
            for m in view.record.pool.iter().flatten() {
                if channels::stopped_channel(&self.stack, &view.record, &m.channel) {
                    metrics.health.remove(&m.upstream);
                }
            }
        }
        let report = self.alerter.process(observation.clone(), &pool).await?;

        let (source, health, error) = match &observation {
            Observation::Metrics { source, metrics } => (source.clone(), Some(&metrics.health), None),
            Observation::Unreachable { source, reason } => (source.clone(), None, Some(reason.clone())),
        };
        let health_of = |u: &str| health.and_then(|h| h.get(u).copied());

        let mut changes = Vec::new();
        if let (Some(members), Some(_)) = (&members, &view.status) {
            // A fresh read-modify-write under the state lock: install may have rewritten the
            // file while this tick waited on the network.
            changes = channels::apply(&self.paths, members, health_of, |c| down.get(c).cloned())
                .context("cannot update channels-status.env")?;
            let status = ChannelsStatus::load(&self.paths.channels_status())?;
            for c in &changes {
                tracing::warn!("channel {}: {} -> {} ({})", c.channel, c.from, c.to, c.reason);
            }
            self.snapshot.channels = watched
                .iter()
                .map(|m| (m.channel.clone(), status.get(&m.channel) == Some(edge_core::ChannelState::Active)))
                .collect();
        }

        let mut events: Vec<String> = report.events.iter().map(|e| e.text(&self.alerter.config().host)).collect();
        let mut delivered_out = delivered(&report);
        let (mut held, mut undelivered) = (report.held, report.undelivered);
        // Stack mode only: a legacy node's mesh is not ours to judge.
        if members.is_some() && view.status.is_some() {
            let (_, mesh_changes) =
                channels::apply_mesh(&self.paths, &self.stack, self.mesh.as_ref(), now_secs(), self.mesh_max_age)
                    .context("cannot update channels-status.env")?;
            for c in mesh_changes {
                tracing::warn!("channel {}: {} -> {} ({})", c.channel, c.from, c.to, c.reason);
                let severity = if c.to == edge_core::ChannelState::Active {
                    edge_alerts::Severity::Info
                } else {
                    edge_alerts::Severity::Warning
                };
                let text = format!("TRANSITION channel={} {} -> {} ({})", c.channel, c.from, c.to, c.reason);
                let sent = self.notify(severity, &text).await?;
                events.extend(sent.events.iter().map(|e| e.text(&self.alerter.config().host)));
                delivered_out.extend(delivered(&sent));
                held += sent.held;
                undelivered += sent.undelivered;
                changes.push(c);
            }
        }

        // The upstreams shown: the pool's, or in legacy mode every series on the page.
        let shown: Vec<(Option<String>, String)> = if legacy {
            health.map(|h| h.keys().map(|u| (None, u.clone())).collect()).unwrap_or_default()
        } else {
            watched.iter().map(|m| (Some(m.channel.clone()), m.upstream.clone())).collect()
        };
        let pool_out: Vec<PoolOutcome> = shown
            .iter()
            .map(|(channel, upstream)| PoolOutcome {
                channel: channel.clone(),
                upstream: upstream.clone(),
                health: health_of(upstream).into(),
            })
            .collect();
        self.snapshot.upstreams = shown
            .into_iter()
            .map(|(channel, upstream)| UpstreamSample {
                healthy: health_of(&upstream).map(|h| h == edge_core::UpstreamHealth::Healthy),
                channel: channel.unwrap_or_default(),
                upstream,
            })
            .collect();
        self.snapshot.metrics_up = error.is_none();
        let elapsed = started.elapsed();
        self.snapshot.last_tick_seconds = elapsed.as_secs_f64();
        self.snapshot.last_tick_timestamp = now_secs();
        self.count(&report, false);
        self.write_textfile();

        Ok(TickOutcome {
            status: word(report.status()),
            mode: if legacy { "legacy" } else { "stack" },
            metrics: MetricsOutcome { source, reachable: error.is_none(), error },
            pool: pool_out,
            events,
            delivered: delivered_out,
            held,
            undelivered,
            errors: report.errors.iter().map(ToString::to_string).collect(),
            channel_changes: changes,
            stopped,
            duration_ms: elapsed.as_secs_f64() * 1000.0,
            tick_status: Some(report.status()),
        })
    }

    /// A tick while the operator has the stack stopped: nothing is watched or alerted.
    fn stopped_outcome(&mut self, stopped: Vec<String>, started: Instant) -> TickOutcome {
        self.snapshot.last_tick_seconds = started.elapsed().as_secs_f64();
        self.snapshot.last_tick_timestamp = now_secs();
        self.write_textfile();
        TickOutcome {
            status: "stopped",
            mode: "stack",
            metrics: MetricsOutcome {
                source: self.alerter.config().metrics.to_string(),
                reachable: false,
                error: Some("not read: the operator stopped the stack".to_owned()),
            },
            pool: Vec::new(),
            events: Vec::new(),
            delivered: Vec::new(),
            held: 0,
            undelivered: 0,
            errors: Vec::new(),
            channel_changes: Vec::new(),
            stopped,
            duration_ms: started.elapsed().as_secs_f64() * 1000.0,
            tick_status: None,
        }
    }

    /// Sends a notice (a container event) through the same limiter and outbox.
    pub(crate) async fn notify(&mut self, severity: edge_alerts::Severity, text: &str) -> anyhow::Result<Report> {
        let report = self.alerter.notify(severity, text).await?;
        self.count(&report, true);
        self.write_textfile();
        Ok(report)
    }

    /// Marks a pool channel `failed_at_runtime` at once (a container of it died).
    pub(crate) fn fail_channel(&mut self, channel: &str, reason: &str) -> anyhow::Result<Option<ChannelChange>> {
        let view = self.pool()?;
        let (Some(members), Some(_)) = (view.members(&self.stack), view.status) else { return Ok(None) };
        let Some(member) = members.into_iter().find(|m| m.channel == channel) else { return Ok(None) };
        let changes = channels::apply(&self.paths, &[member], |_| None, |_| Some(reason.to_owned()))
            .context("cannot update channels-status.env")?;
        if let Some(change) = changes.into_iter().next() {
            tracing::warn!("channel {}: {} -> {} ({})", change.channel, change.from, change.to, change.reason);
            if let Some(entry) = self.snapshot.channels.iter_mut().find(|(c, _)| c == channel) {
                entry.1 = false;
            }
            self.write_textfile();
            return Ok(Some(change));
        }
        Ok(None)
    }

    fn count(&mut self, report: &Report, container_event: bool) {
        let c: &mut Counters = &mut self.snapshot.counters;
        for d in &report.delivered {
            *c.sent.entry(d.transport.as_str().to_owned()).or_insert(0) += 1;
            if d.events > 1 {
                c.coalesced += d.events as u64;
            }
        }
        c.failures += report.errors.len() as u64;
        if container_event {
            c.container_events += 1;
        }
        self.snapshot.queued = report.held + report.undelivered;
    }

    fn write_textfile(&self) {
        if let Some(t) = &self.textfile
            && let Err(e) = t.write(&self.snapshot)
        {
            tracing::warn!("{e:#}");
        }
    }
}

pub(crate) fn delivered(report: &Report) -> Vec<DeliveredOutcome> {
    report.delivered.iter().map(|d| DeliveredOutcome { transport: d.transport.as_str(), events: d.events }).collect()
}
