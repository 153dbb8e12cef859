//! One watchdog tick: observe, detect, journal, deliver, stamp, all under the state lock.

use std::collections::BTreeSet;
use std::path::Path;

use edge_core::{CoreError, UpstreamState};

use crate::alertmanager::{self, AmPush, AmState};
use crate::breaker::{Breaker, BreakerStep};
use crate::compose::{TELEGRAM_LIMIT, compose};
use crate::config::{AlertConfig, MetricsSource};
use crate::deliver::{Chain, TransportKind, http_client};
use crate::event::{Event, EventKind, Severity};
use crate::limiter::{StateLock, read_last_alert, window_open, write_last_alert};
use crate::metrics::{MetricsProblem, UpstreamMetrics};
use crate::outbox::{Commit, Outbox};
use crate::transitions::{Observation, PoolMember, detect};
use crate::{AlertError, SendError, time};

/// Largest metrics page read (Caddy's is a few hundred kilobytes at most).
const MAX_METRICS_BYTES: usize = 16 << 20;

/// The alerter: configuration plus the delivery chain. Cheap to keep for the
/// life of a process; every call takes the state lock for its whole duration.
#[derive(Debug)]
pub struct Alerter {
    config: AlertConfig,
    chain: Chain,
    client: reqwest::Client,
}

/// One message that went out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// Who took it.
    pub transport: TransportKind,
    /// Outbox events it carried.
    pub events: usize,
}

/// What a run did.
#[derive(Debug, Default)]
pub struct Report {
    /// Events detected by this run (already in the outbox if there is a chat transport).
    pub events: Vec<Event>,
    /// Messages delivered, in order.
    pub delivered: Vec<Delivered>,
    /// Events left in the outbox because of the rate-limit window or the open circuit breaker.
    pub held: usize,
    /// Events left in the outbox because every transport failed: retried by the next run.
    pub undelivered: usize,
    /// Transport failures, including those a fallback made up for.
    pub errors: Vec<AlertError>,
    /// What this run did to the circuit breaker (`None` when it observed nothing).
    pub breaker: Option<BreakerStep>,
    /// The Alertmanager post, when one is configured and this run observed metrics.
    pub alertmanager: Option<Result<AmPush, AlertError>>,
    /// Series of the health metric that could not be read.
    pub metrics_problems: Vec<MetricsProblem>,
    /// Upstream addresses that cannot be recorded in `upstream-state.env`.
    pub ignored_upstreams: Vec<String>,
    /// No chat transport is configured: events were logged, not queued.
    pub no_transport: bool,
}

/// The outcome of a run in one word, for an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickStatus {
    /// Nothing to send.
    Quiet,
    /// Everything due was delivered.
    Delivered,
    /// Events wait for the rate-limit window or a recovery (nothing failed).
    Held,
    /// Every transport failed: events are in the outbox.
    Undelivered,
    /// There were events but no chat transport is configured.
    NoTransport,
}

impl Report {
    /// Events delivered by this run.
    pub fn delivered_events(&self) -> usize {
        self.delivered.iter().map(|d| d.events).sum()
    }

    /// The transport that took the first message, if any.
    pub fn transport(&self) -> Option<TransportKind> {
        self.delivered.first().map(|d| d.transport)
    }

    /// The outcome in one word.
    pub fn status(&self) -> TickStatus {
        if self.undelivered > 0 {
            TickStatus::Undelivered
        } else if self.no_transport && !self.events.is_empty() {
            TickStatus::NoTransport
        } else if !self.delivered.is_empty() {
            TickStatus::Delivered
        } else if self.held > 0 {
            TickStatus::Held
        } else {
            TickStatus::Quiet
        }
    }
}

enum Input<'a> {
    Observe(Observation, &'a [PoolMember]),
    Notes(Vec<Event>),
    Flush,
}

impl Alerter {
    /// An alerter with the chain `config` describes (webhook, then Bot API).
    pub fn new(config: AlertConfig) -> Result<Self, AlertError> {
        let client = http_client(&config)?;
        let chain = Chain::from_config(&config, &client);
        Ok(Self { config, chain, client })
    }

    /// An alerter with another delivery chain (e.g. a fake one in unit tests).
    pub fn with_chain(config: AlertConfig, chain: Chain) -> Result<Self, AlertError> {
        let client = http_client(&config)?;
        Ok(Self { config, chain, client })
    }

    /// Its configuration.
    pub fn config(&self) -> &AlertConfig {
        &self.config
    }

    /// One watchdog tick: reads the metrics page, then [`Alerter::process`].
    pub async fn tick(&self, pool: &[PoolMember]) -> Result<Report, AlertError> {
        let observation = self.observe().await;
        self.process(observation, pool).await
    }

    /// Reads the metrics page; a failure is an [`Observation::Unreachable`], not an error.
    pub async fn observe(&self) -> Observation {
        let source = self.config.metrics.to_string();
        let page = match &self.config.metrics {
            MetricsSource::Url(url) => fetch(&self.client, url, self.config.timeouts.metrics).await,
            MetricsSource::File(path) => tokio::fs::read(path).await.map_err(|e| e.to_string()),
        };
        match page {
            Ok(bytes) => Observation::Metrics { source, metrics: UpstreamMetrics::parse_bytes(&bytes) },
            Err(reason) => Observation::Unreachable { source, reason },
        }
    }

    /// Detects transitions in `observation`, records them, and delivers what is due.
    pub async fn process(&self, observation: Observation, pool: &[PoolMember]) -> Result<Report, AlertError> {
        self.run(Input::Observe(observation, pool)).await
    }

    /// Sends a notice (e.g. a container event) through the same limiter and outbox.
    pub async fn notify(&self, severity: Severity, text: &str) -> Result<Report, AlertError> {
        let event = Event::new(time::now(), EventKind::Note { severity, text: text.to_owned() });
        self.run(Input::Notes(vec![event])).await
    }

    /// Delivers what is due in the outbox without observing anything.
    pub async fn flush(&self) -> Result<Report, AlertError> {
        self.run(Input::Flush).await
    }

    async fn run(&self, input: Input<'_>) -> Result<Report, AlertError> {
        let cfg = &self.config;
        let (outbox_path, breaker_path) = (cfg.outbox_file(), cfg.breaker_file());
        let lock = StateLock::acquire(&cfg.lock_file()).await?;
        lock.remove_stale_temp_files(&[
            &outbox_path,
            &breaker_path,
            &cfg.last_alert_file(),
            &cfg.alertmanager_file(),
            &cfg.upstream_state,
        ]);
        let now = time::now();
        let mut report = Report { no_transport: self.chain.is_empty(), ..Report::default() };

        let mut outbox = Outbox::load(&outbox_path, now)?;
        let mut dirty = false;
        if let Some(commit) = outbox.commit.take() {
            // The last run died between journaling and writing its state files: finish its work.
            self.write_state(&commit)?;
            dirty = true;
        }
        let mut breaker = Breaker::load(&breaker_path)?;

        match input {
            Input::Observe(observation, pool) => {
                let (prev, unreadable) = self.load_upstream_state(now)?;
                if let Observation::Metrics { metrics, .. } = &observation {
                    report.metrics_problems = metrics.problems.clone();
                }
                let detection = detect(&prev, &outbox.watch, &observation, pool, now);
                report.ignored_upstreams = detection.ignored;
                let mut events: Vec<Event> = unreadable.into_iter().chain(detection.events).collect();
                let before = breaker;
                let step = breaker.observe(&events, cfg.breaker_ticks, now);
                report.breaker = Some(step);
                match step {
                    BreakerStep::Parked => events.push(parked_event(&breaker, &detection.state, &detection.watch, now)),
                    BreakerStep::Unparked => outbox.release_held(),
                    BreakerStep::Closed | BreakerStep::StillParked => {}
                }
                let hold = step == BreakerStep::StillParked;
                self.enqueue(&mut outbox, &events, hold);
                report.events = events;

                let changed = detection.state != prev || detection.watch != outbox.watch || breaker != before;
                if changed || !report.events.is_empty() {
                    outbox.watch = detection.watch;
                    let commit = Commit { upstream_state: detection.state.to_string(), breaker: breaker.to_string() };
                    outbox.commit = Some(commit.clone());
                    outbox.save(&outbox_path)?;
                    self.write_state(&commit)?;
                    outbox.commit = None;
                    dirty = true;
                }

                if let Some(am) = &cfg.alertmanager {
                    let am_path = cfg.alertmanager_file();
                    let previous = AmState::load(&am_path);
                    let firing = alertmanager::firing_alerts(&cfg.host, &detection.state, &outbox.watch, pool);
                    let url = am.alerts_url();
                    let result =
                        alertmanager::push(&self.client, &url, cfg.timeouts.alertmanager, &previous, &firing, now)
                            .await;
                    if result.is_ok() && previous.firing != firing {
                        AmState { firing }.save(&am_path)?;
                    }
                    if let Err(e) = &result {
                        tracing::warn!(error = %e, "alertmanager push failed");
                    }
                    report.alertmanager = Some(result);
                }
            }
            Input::Notes(events) => {
                self.enqueue(&mut outbox, &events, breaker.is_parked());
                report.events = events;
                dirty = !report.events.is_empty();
            }
            Input::Flush => {}
        }

        self.deliver(&mut outbox, &mut report, now, &mut dirty).await?;
        if dirty {
            outbox.save(&outbox_path)?;
        }
        drop(lock);
        Ok(report)
    }

    /// Queues events for the chat chain, or only logs them when there is none.
    fn enqueue(&self, outbox: &mut Outbox, events: &[Event], hold: bool) {
        for e in events {
            let text = e.text(&self.config.host);
            match e.severity() {
                Severity::Info => tracing::info!(alert = %text),
                Severity::Warning | Severity::Critical => tracing::warn!(alert = %text),
            }
            if !self.chain.is_empty() {
                let held = hold && e.severity() != Severity::Critical && !e.is_recovery();
                outbox.push(e.clone(), held);
            }
        }
    }

    /// Sends what is due: everything when a CRITICAL waits, else what is not held once the window is open.
    async fn deliver(
        &self,
        outbox: &mut Outbox,
        report: &mut Report,
        now: u64,
        dirty: &mut bool,
    ) -> Result<(), AlertError> {
        let cfg = &self.config;
        if self.chain.is_empty() || (outbox.entries.is_empty() && outbox.dropped == 0) {
            report.held = outbox.entries.len();
            return Ok(());
        }
        let last_path = cfg.last_alert_file();
        let force = outbox.entries.iter().any(|q| q.event.severity() == Severity::Critical);
        let open = window_open(read_last_alert(&last_path)?, now, cfg.min_interval);
        let batch: Vec<_> = outbox.entries.iter().filter(|q| force || (open && !q.held)).collect();
        let chunks =
            if batch.is_empty() { Vec::new() } else { compose(&cfg.host, &batch, outbox.dropped, TELEGRAM_LIMIT) };
        let mut failed: BTreeSet<u64> = BTreeSet::new();
        for (i, chunk) in chunks.iter().enumerate() {
            let (transport, errors) = self.chain.send(&chunk.text).await;
            report.errors.extend(errors);
            let Some(transport) = transport else {
                failed.extend(chunks[i..].iter().flat_map(|c| c.ids.iter().copied()));
                break;
            };
            tracing::info!(transport = transport.as_str(), events = chunk.ids.len(), "alert delivered");
            outbox.remove(&chunk.ids);
            if chunk.reports_dropped {
                outbox.dropped = 0;
            }
            // Remove first, stamp second: a crash in between may send the next alert early, never lose one.
            outbox.save(&cfg.outbox_file())?;
            *dirty = false;
            write_last_alert(&last_path, now)?;
            report.delivered.push(Delivered { transport, events: chunk.ids.len() });
        }
        report.undelivered = failed.len();
        report.held = outbox.entries.len() - failed.len();
        Ok(())
    }

    /// The previous `upstream-state.env`; one that does not parse is replaced, and that is an event.
    fn load_upstream_state(&self, now: u64) -> Result<(UpstreamState, Option<Event>), AlertError> {
        let path = &self.config.upstream_state;
        match UpstreamState::load(path) {
            Ok(state) => Ok((state, None)),
            Err(CoreError::Parse { source, .. }) => {
                let text = format!("{} was unreadable ({source}); upstream health starts afresh", path.display());
                tracing::warn!("{text}");
                Ok((
                    UpstreamState::default(),
                    Some(Event::new(now, EventKind::Note { severity: Severity::Warning, text })),
                ))
            }
            Err(source) => Err(AlertError::LoadUpstreamState { path: path.to_owned(), source }),
        }
    }

    fn write_state(&self, commit: &Commit) -> Result<(), AlertError> {
        write_if_changed(&self.config.upstream_state, &commit.upstream_state)?;
        write_if_changed(&self.config.breaker_file(), &commit.breaker)
    }
}

fn write_if_changed(path: &Path, text: &str) -> Result<(), AlertError> {
    if std::fs::read(path).ok().as_deref() == Some(text.as_bytes()) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| AlertError::StateDir { path: dir.to_owned(), source })?;
    }
    edge_core::write_atomic(path, text.as_bytes())
        .map_err(|source| AlertError::WriteState { path: path.to_owned(), source })
}

fn parked_event(breaker: &Breaker, state: &UpstreamState, watch: &crate::transitions::WatchState, now: u64) -> Event {
    let unhealthy =
        state.iter().filter(|e| e.health == edge_core::UpstreamHealth::Unhealthy).map(|e| e.upstream.clone()).collect();
    let unknown = watch.unknown.keys().cloned().collect();
    Event::new(now, EventKind::Parked { failing_ticks: breaker.failing_ticks, unhealthy, unknown })
}

/// GETs a metrics page: a non-2xx answer or an oversized page is a failure.
async fn fetch(client: &reqwest::Client, url: &str, timeout: std::time::Duration) -> Result<Vec<u8>, String> {
    let reason = |e: reqwest::Error| SendError::from_reqwest(e).to_string();
    let mut resp = client.get(url).timeout(timeout).send().await.map_err(reason)?;
    if !resp.status().is_success() {
        return Err(format!("http status {}", resp.status().as_u16()));
    }
    let mut page = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(reason)? {
        page.extend_from_slice(&chunk);
        if page.len() > MAX_METRICS_BYTES {
            return Err(format!("page larger than {MAX_METRICS_BYTES} bytes"));
        }
    }
    Ok(page)
}
