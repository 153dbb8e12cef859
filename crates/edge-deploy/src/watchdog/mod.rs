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
//! (the state dir, taken as is, above `--root`), `OXPULSE_TG_*`, `TG_TOKEN`, `TG_CHAT`; the
//! caller reads it through [`effective_paths`], [`alert_config`] and
//! [`crate::mesh::handshake_max_age`] into a [`WatchdogRequest`], and prints the
//! [`TickOutcome`]s.

pub mod daemon;
pub mod textfile;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_alerts::{AlertConfig, Alerter, MetricsSource, Observation, Report, TickStatus};
use edge_channels::{DeployError, Engine};
use edge_core::{ChannelsStatus, InstallRecord, ObservedHealth, Paths, PoolMember, Stack};
use serde::Serialize;

use crate::channels::{self, ChannelChange};
use crate::install::now_secs;
use crate::mesh::MeshHost;
use crate::{Node, OpError};
use textfile::{Counters, Snapshot, Textfile, UpstreamSample};

/// How long the `--once` look at the channel containers may take before it is skipped.
const ENGINE_LOOK_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one host-side readiness probe may take within that look.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// What the watchdog watches, and where it reports.
#[derive(Debug, Clone)]
pub struct WatchdogRequest {
    /// The stack on this host; its paths name the state dir the watchdog keeps
    /// ([`effective_paths`]), its mesh the host's WireGuard tools.
    pub node: Node,
    /// Where alerts go ([`alert_config`]).
    pub alerts: AlertConfig,
    /// Where the textfile metrics go, if anywhere.
    pub textfile: Option<PathBuf>,
    /// How old a mesh peer's last handshake may be ([`crate::mesh::handshake_max_age`]).
    pub mesh_max_age: Duration,
}

/// The watchdog: alerter, where the files are, and what it has seen.
pub struct Watchdog {
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

/// What one tick found and did (`edge-watchdog --json` prints it).
#[derive(Debug, Serialize)]
pub struct TickOutcome {
    /// `quiet`, `delivered`, `held`, `undelivered`, `no_transport` or `stopped` (by the operator).
    pub status: &'static str,
    /// `stack` or `legacy`.
    pub mode: &'static str,
    /// The front proxy's metrics page.
    pub metrics: MetricsOutcome,
    /// The upstreams watched (in legacy mode, every series on the page).
    pub pool: Vec<PoolOutcome>,
    /// Alert texts detected by this tick.
    pub events: Vec<String>,
    /// What was delivered, by transport.
    pub delivered: Vec<DeliveredOutcome>,
    /// Events held in the outbox (rate-limit window or circuit breaker).
    pub held: usize,
    /// Events no transport took: they wait in the outbox.
    pub undelivered: usize,
    /// Failed delivery attempts.
    pub errors: Vec<String>,
    /// Channel states this tick changed.
    pub channel_changes: Vec<ChannelChange>,
    /// Services the operator stopped: not watched.
    pub stopped: Vec<String>,
    /// Wall time of the tick.
    pub duration_ms: f64,
    /// The delivery's outcome; `None` when the operator stopped the stack.
    #[serde(skip)]
    pub tick_status: Option<TickStatus>,
}

/// The metrics page as one tick read it.
#[derive(Debug, Serialize)]
pub struct MetricsOutcome {
    /// The URL or file.
    pub source: String,
    /// Whether it was read.
    pub reachable: bool,
    /// Why it was not.
    pub error: Option<String>,
}

/// One watched upstream.
#[derive(Debug, Serialize)]
pub struct PoolOutcome {
    /// Its channel (`None` in legacy mode).
    pub channel: Option<String>,
    /// Its dial address.
    pub upstream: String,
    /// Its health on the page.
    pub health: ObservedHealth,
}

/// One delivery.
#[derive(Debug, Serialize)]
pub struct DeliveredOutcome {
    /// `webhook`, `telegram` or `alertmanager`.
    pub transport: &'static str,
    /// How many events it carried.
    pub events: usize,
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

/// The node's paths; `STATE_DIR` (legacy) replaces the state dir as given.
pub fn effective_paths(stack: &Stack, paths: &Paths, lookup: &dyn Fn(&str) -> Option<String>) -> Paths {
    match lookup("STATE_DIR").filter(|v| !v.is_empty()) {
        None => paths.clone(),
        Some(dir) => {
            let dir = PathBuf::from(dir);
            let dir =
                if dir.is_absolute() { dir } else { std::env::current_dir().map(|cwd| cwd.join(&dir)).unwrap_or(dir) };
            let mut meta = stack.stack.clone();
            meta.state_dir = dir;
            Paths::new(None, &meta)
        }
    }
}

/// The alert configuration of this node: the legacy variables, and the metrics source
/// `install.env` recorded (or the stack's `CADDY_ADMIN`) unless `OXPULSE_METRICS_SRC` says.
pub fn alert_config(
    stack: &Stack,
    paths: &Paths,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<AlertConfig, OpError> {
    let mut config = AlertConfig::from_env(paths, lookup)?;
    if lookup("OXPULSE_METRICS_SRC").is_none_or(|v| v.is_empty()) {
        let recorded = InstallRecord::load_optional(&paths.install_env())?.and_then(|r| r.metrics_url);
        if let Some(url) = recorded.or_else(|| crate::default_metrics_url(stack)) {
            config.metrics = MetricsSource::parse(&url);
        }
    }
    Ok(config)
}

impl Watchdog {
    /// The watchdog `request` describes.
    pub fn new(request: WatchdogRequest) -> Result<Self, OpError> {
        let WatchdogRequest { node, alerts, textfile, mesh_max_age } = request;
        let alerter = Alerter::new(alerts)
            .map_err(OpError::AlertDelivery)?
            .with_legacy_upstreams(node.bundle.stack.legacy_upstreams());
        let textfile = textfile.map(Textfile::new);
        let counters = textfile.as_ref().map(Textfile::load_counters).unwrap_or_default();
        let snapshot = Snapshot { counters, ..Snapshot::default() };
        Ok(Self {
            alerter,
            paths: node.paths,
            stack: node.bundle.stack,
            textfile,
            snapshot,
            mesh: node.mesh,
            mesh_max_age,
        })
    }

    /// The stack watched.
    pub fn stack(&self) -> &Stack {
        &self.stack
    }

    /// The state dir now. A corrupt install record is an error, never a silent switch to
    /// legacy mode.
    fn pool(&self) -> Result<PoolView, OpError> {
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
    pub fn stopped_by_operator(&self, container: &str) -> bool {
        let Ok(view) = self.pool() else { return false };
        self.stack.services.iter().any(|s| s.container == container && view.record.stopped.contains(&s.name))
    }

    /// Pool channels of the stack whose containers the engine says are down, with why, by
    /// container. `connect` reaches the engine; an engine that cannot be reached says nothing.
    pub async fn look_at_containers<E: Engine>(
        &self,
        connect: impl Future<Output = Result<E, DeployError>>,
    ) -> BTreeMap<String, (String, String)> {
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
            let engine = match connect.await {
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
    pub async fn tick(&mut self, down: &BTreeMap<String, String>) -> Result<TickOutcome, OpError> {
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
                .map_err(OpError::channels_status)?;
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
                    .map_err(OpError::channels_status)?;
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
    pub async fn notify(&mut self, severity: edge_alerts::Severity, text: &str) -> Result<Report, OpError> {
        let report = self.alerter.notify(severity, text).await?;
        self.count(&report, true);
        self.write_textfile();
        Ok(report)
    }

    /// Marks a pool channel `failed_at_runtime` at once (a container of it died).
    pub fn fail_channel(&mut self, channel: &str, reason: &str) -> Result<Option<ChannelChange>, OpError> {
        let view = self.pool()?;
        let (Some(members), Some(_)) = (view.members(&self.stack), view.status) else { return Ok(None) };
        let Some(member) = members.into_iter().find(|m| m.channel == channel) else { return Ok(None) };
        let changes = channels::apply(&self.paths, &[member], |_| None, |_| Some(reason.to_owned()))
            .map_err(OpError::channels_status)?;
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
            tracing::warn!("{}", crate::error::chain(&e));
        }
    }
}

/// What a delivery report says was delivered, by transport.
pub fn delivered(report: &Report) -> Vec<DeliveredOutcome> {
    report.delivered.iter().map(|d| DeliveredOutcome { transport: d.transport.as_str(), events: d.events }).collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use edge_channels::EngineError;
    use edge_channels::testing::{FakeEngine, without_host_probes};
    use edge_core::StackBundle;

    use super::*;

    /// A watchdog over the partner edge under `root`, with xray and naive in the recorded pool.
    fn watchdog(root: &Path) -> Watchdog {
        let mut bundle = StackBundle::partner_edge();
        without_host_probes(&mut bundle.stack);
        let node = Node::new(bundle, Some(root)).unwrap();
        let pool = vec![PoolMember::new("xray", "127.0.0.1:3081"), PoolMember::new("naive", "127.0.0.1:3083")];
        std::fs::create_dir_all(node.paths.install_env().parent().unwrap()).unwrap();
        InstallRecord { pool: Some(pool), ..InstallRecord::default() }.save(&node.paths.install_env()).unwrap();
        let alerts = AlertConfig::new("h", node.paths.alert_state_dir(), node.paths.upstream_state());
        let request = WatchdogRequest { node, alerts, textfile: None, mesh_max_age: crate::mesh::HANDSHAKE_MAX_AGE };
        Watchdog::new(request).unwrap()
    }

    /// The in-memory engine running the containers of `running`, and those of `crashed` dead.
    fn engine(stack: &Stack, running: &[&str], crashed: &[&str]) -> FakeEngine {
        let engine = FakeEngine::default();
        for channel in running.iter().chain(crashed) {
            for s in stack.services_of(channel) {
                engine.run_compose(&s.container, &s.image, &stack.stack.compose_project, Vec::new());
            }
        }
        for s in crashed.iter().flat_map(|c| stack.services_of(c)) {
            engine.crash(&s.container);
        }
        engine
    }

    /// What `look_at_containers` finds, as (container, channel, why) rows.
    fn look(watchdog: &Watchdog, engine: Result<FakeEngine, DeployError>) -> Vec<(String, String, String)> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let down = runtime.block_on(watchdog.look_at_containers(async { engine }));
        down.into_iter().map(|(name, (channel, why))| (name, channel, why)).collect()
    }

    #[test]
    fn a_pool_channel_whose_container_is_dead_or_missing_is_down() {
        let root = tempfile::tempdir().unwrap();
        let watchdog = watchdog(root.path());
        let stack = watchdog.stack().clone();
        let naive = stack.services_of("naive").next().unwrap().container.clone();
        let down = |why: &str| vec![(naive.clone(), "naive".to_owned(), format!("container {naive} is {why}"))];

        assert_eq!(look(&watchdog, Ok(engine(&stack, &["xray", "naive"], &[]))), []);
        assert_eq!(look(&watchdog, Ok(engine(&stack, &["xray"], &["naive"]))), down("exited"));
        assert_eq!(look(&watchdog, Ok(engine(&stack, &["xray"], &[]))), down("missing"));
        // An engine out of reach says nothing.
        let unreachable = DeployError::EngineUnreachable {
            endpoint: "unix:///nowhere".into(),
            source: EngineError::new(None, "gone"),
        };
        assert_eq!(look(&watchdog, Err(unreachable)), []);
    }
}
