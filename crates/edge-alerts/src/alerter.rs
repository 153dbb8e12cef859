//! One watchdog tick: observe, detect, journal, deliver, stamp, all under the state lock.

use std::collections::{BTreeMap, BTreeSet, HashSet};
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
use edge_core::PoolMember;

use crate::transitions::{Observation, detect};
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
    /// The legacy installer's upstream names and their channels, renamed in `upstream-state.env`.
    legacy_upstreams: BTreeMap<String, String>,
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
    Announce(Event),
    Flush,
}

impl Alerter {
    /// An alerter with the chain `config` describes (webhook, then Bot API).
    pub fn new(config: AlertConfig) -> Result<Self, AlertError> {
        let client = http_client(&config)?;
        let chain = Chain::from_config(&config, &client);
        Ok(Self { config, chain, client, legacy_upstreams: BTreeMap::new() })
    }

    /// Reads lines of `upstream-state.env` under the legacy installer's upstream names
    /// (`xray-client:3080` → `xray`) as the pool's lines of their channel, keeping health and
    /// time, so that taking over a legacy host sends no transition; the file is then
    /// rewritten with edge's names.
    pub fn with_legacy_upstreams(mut self, legacy: BTreeMap<String, String>) -> Self {
        self.legacy_upstreams = legacy;
        self
    }

    /// An alerter with another delivery chain (e.g. a fake one in unit tests).
    pub fn with_chain(config: AlertConfig, chain: Chain) -> Result<Self, AlertError> {
        let client = http_client(&config)?;
        Ok(Self { config, chain, client, legacy_upstreams: BTreeMap::new() })
    }

    /// Its configuration.
    pub fn config(&self) -> &AlertConfig {
        &self.config
    }

    /// One watchdog tick: reads the metrics page for `pool`, then [`Alerter::process`].
    pub async fn tick(&self, pool: &[PoolMember]) -> Result<Report, AlertError> {
        let observation = self.observe_pool(pool).await;
        self.process(observation, pool).await
    }

    /// Reads the metrics page; a failure is an [`Observation::Unreachable`], not an error.
    /// Every upstream of the page is read, up to [`crate::metrics::MAX_UPSTREAMS`]: in stack
    /// mode prefer [`Alerter::observe_pool`].
    pub async fn observe(&self) -> Observation {
        self.observe_pool(&[]).await
    }

    /// Reads the metrics page for `pool`: when it is not empty (stack mode), only the pool's
    /// series are kept, so that no number of other series on the page can crowd them out.
    pub async fn observe_pool(&self, pool: &[PoolMember]) -> Observation {
        let wanted: HashSet<&str> = pool.iter().map(|m| m.upstream.as_str()).collect();
        let source = self.config.metrics.to_string();
        let page = match &self.config.metrics {
            MetricsSource::Url(url) => fetch(&self.client, url, self.config.timeouts.metrics).await,
            MetricsSource::File(path) => read_page(path).await,
        };
        match page {
            Ok(bytes) => {
                let metrics = UpstreamMetrics::parse_bytes_only(&bytes, |u| wanted.is_empty() || wanted.contains(u));
                Observation::Metrics { source, metrics }
            }
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

    /// Sends `text` now through the chain, outside the rate limit: it neither waits for the
    /// window nor stamps the clock, so it never delays the first real alert (install's "edge
    /// installed"). If every transport fails it stays in the outbox like any alert, and the
    /// next run delivers it.
    pub async fn announce(&self, text: &str) -> Result<Report, AlertError> {
        let event = Event::new(time::now(), EventKind::Note { severity: Severity::Info, text: text.to_owned() });
        self.run(Input::Announce(event)).await
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
                let (loaded, unreadable) = self.load_upstream_state(now)?;
                let prev = crate::transitions::adopt_legacy_upstreams(&loaded, pool, &self.legacy_upstreams);
                if let Observation::Metrics { metrics, .. } = &observation {
                    // Bounded by the parser: a few lines per tick, never one per line of the page.
                    for p in &metrics.problems {
                        tracing::warn!(line = p.line, "metrics page: {}", p.message);
                    }
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

                // Against the file as read: renamed legacy lines are written back under edge's names.
                let changed = detection.state != loaded || detection.watch != outbox.watch || breaker != before;
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
            Input::Announce(event) => {
                if !self.chain.is_empty() {
                    let (transport, errors) = self.chain.send(&event.text(&cfg.host)).await;
                    report.errors.extend(errors);
                    match transport {
                        Some(transport) => report.delivered.push(Delivered { transport, events: 1 }),
                        None => {
                            outbox.push(event.clone(), false);
                            report.undelivered = 1;
                            dirty = true;
                        }
                    }
                }
                report.events = vec![event];
                if dirty {
                    outbox.save(&outbox_path)?;
                }
                return Ok(report);
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
    if edge_core::read_no_follow(path).ok().flatten().as_deref() == Some(text.as_bytes()) {
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

/// Reads a metrics page from a file (in one blocking read): an oversized page is a failure, as from a URL.
async fn read_page(path: &Path) -> Result<Vec<u8>, String> {
    let path = path.to_owned();
    let read = move || -> Result<Vec<u8>, String> {
        use std::io::Read;
        let file = std::fs::File::open(&path).map_err(|e| e.to_string())?;
        let mut page = Vec::new();
        file.take(MAX_METRICS_BYTES as u64 + 1).read_to_end(&mut page).map_err(|e| e.to_string())?;
        if page.len() > MAX_METRICS_BYTES {
            return Err(format!("page larger than {MAX_METRICS_BYTES} bytes"));
        }
        Ok(page)
    };
    tokio::task::spawn_blocking(read).await.map_err(|e| format!("reading the page was interrupted: {e}"))?
}

#[cfg(test)]
mod tests {
    use crate::test_support::{page, pool};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;
    use crate::deliver::{SendFuture, Transport};

    /// Records what it is given; fails while `down` is set. A unit-test stand-in:
    /// the real transports are tested against loopback servers in edge-tests.
    #[derive(Clone, Default)]
    struct Fake {
        sent: Arc<Mutex<Vec<String>>>,
        down: Arc<AtomicBool>,
    }

    impl Transport for Fake {
        fn kind(&self) -> TransportKind {
            TransportKind::Webhook
        }
        fn send<'a>(&'a self, text: &'a str) -> SendFuture<'a> {
            Box::pin(async move {
                if self.down.load(Ordering::SeqCst) {
                    return Err(AlertError::Webhook {
                        url: "fake".into(),
                        source: SendError::Http { reason: "down".into() },
                    });
                }
                self.sent.lock().unwrap().push(text.to_owned());
                Ok(())
            })
        }
    }

    impl Fake {
        fn take(&self) -> Vec<String> {
            std::mem::take(&mut *self.sent.lock().unwrap())
        }
    }

    struct Setup {
        dir: tempfile::TempDir,
        fake: Fake,
        alerter: Alerter,
    }

    fn setup(min_interval: u64, breaker_ticks: u32) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let mut config = AlertConfig::new("h", dir.path().join("telegram"), dir.path().join("upstream-state.env"));
        config.min_interval = Duration::from_secs(min_interval);
        config.breaker_ticks = breaker_ticks;
        let fake = Fake::default();
        let alerter = Alerter::with_chain(config, Chain::new(vec![Box::new(fake.clone())])).unwrap();
        Setup { dir, fake, alerter }
    }

    impl Setup {
        async fn tick(&self, pairs: &[(&str, u8)], pool_ids: &[&str]) -> Report {
            self.alerter.process(page(pairs), &pool(pool_ids)).await.unwrap()
        }
        fn file(&self, name: &str) -> String {
            std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
        }
    }

    #[tokio::test]
    async fn a_legacy_state_file_is_taken_over_without_an_alert_and_rewritten_with_edges_names() {
        let mut s = setup(600, 0);
        let legacy = BTreeMap::from([("xray-client:3080".to_owned(), "xray".to_owned())]);
        s.alerter = Alerter::with_chain(s.alerter.config.clone(), Chain::new(vec![Box::new(s.fake.clone())]))
            .unwrap()
            .with_legacy_upstreams(legacy);
        std::fs::write(s.dir.path().join("upstream-state.env"), "xray-client:3080=healthy:1716200000\n").unwrap();
        // The legacy watchdog's clock stays where it was.
        std::fs::create_dir_all(s.dir.path().join("telegram")).unwrap();
        std::fs::write(s.dir.path().join("telegram/last-alert-ts"), "1716200000\n").unwrap();
        let pool = vec![PoolMember::new("xray", "127.0.0.1:3081")];
        let r = s.alerter.process(page(&[("127.0.0.1:3081", 1)]), &pool).await.unwrap();
        assert!(r.events.is_empty(), "{:?}", r.events);
        assert!(s.fake.take().is_empty());
        assert_eq!(s.file("upstream-state.env"), "127.0.0.1:3081=healthy:1716200000\n");
        assert_eq!(s.file("telegram/last-alert-ts"), "1716200000\n");
        // Then a real flip names the channel.
        s.alerter.process(page(&[("127.0.0.1:3081", 0)]), &pool).await.unwrap();
        let sent = s.fake.take();
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert!(sent[0].contains("TRANSITION channel=xray upstream=127.0.0.1:3081 healthy -> unhealthy"), "{sent:?}");
    }

    #[tokio::test]
    async fn inside_the_window_events_are_coalesced_not_dropped() {
        let s = setup(600, 0);
        let p = ["a", "b", "c"];
        s.tick(&[("a", 1), ("b", 1), ("c", 1)], &p).await;
        assert!(s.fake.take().is_empty(), "first sight of healthy upstreams is not news");
        let r = s.tick(&[("a", 0), ("b", 1), ("c", 1)], &p).await;
        assert_eq!((r.status(), r.delivered_events()), (TickStatus::Delivered, 1));
        assert_eq!(s.fake.take(), ["[h] TRANSITION channel=ch upstream=a healthy -> unhealthy"]);
        // Inside the window: held.
        let r = s.tick(&[("a", 0), ("b", 0), ("c", 1)], &p).await;
        assert_eq!((r.status(), r.held), (TickStatus::Held, 1));
        let r = s.tick(&[("a", 1), ("b", 0), ("c", 1)], &p).await;
        assert_eq!(r.held, 2);
        assert!(s.fake.take().is_empty());
        // The window opens: one digest, oldest first.
        std::fs::write(s.dir.path().join("telegram/last-alert-ts"), "1\n").unwrap();
        let r = s.alerter.flush().await.unwrap();
        assert_eq!((r.delivered_events(), r.held), (2, 0));
        let sent = s.fake.take();
        assert_eq!(sent.len(), 1);
        let lines: Vec<&str> = sent[0].lines().collect();
        assert_eq!(lines[0], "[h] 2 alerts, oldest first:");
        assert!(lines[1].ends_with("[h] TRANSITION channel=ch upstream=b healthy -> unhealthy"), "{sent:?}");
        assert!(lines[2].ends_with("[h] TRANSITION channel=ch upstream=a unhealthy -> healthy"), "{sent:?}");
    }

    #[tokio::test]
    async fn critical_bypasses_the_window_and_carries_what_waited() {
        let s = setup(600, 0);
        let p = ["a", "b"];
        s.tick(&[("a", 1), ("b", 1)], &p).await;
        std::fs::write(s.dir.path().join("telegram/last-alert-ts"), format!("{}\n", time::now())).unwrap();
        let r = s.tick(&[("a", 0), ("b", 0)], &p).await;
        assert_eq!(r.delivered_events(), 3);
        let sent = s.fake.take();
        assert_eq!(sent.len(), 1);
        assert!(sent[0].starts_with("CRITICAL: all upstreams unhealthy on h\n[h] 3 alerts"), "{sent:?}");
    }

    #[tokio::test]
    async fn a_failed_delivery_stays_in_the_outbox_and_goes_once_later() {
        let s = setup(600, 0);
        s.tick(&[("a", 1), ("b", 1)], &["a", "b"]).await;
        s.fake.down.store(true, Ordering::SeqCst);
        let r = s.tick(&[("a", 0), ("b", 1)], &["a", "b"]).await;
        assert_eq!((r.status(), r.undelivered, r.errors.len()), (TickStatus::Undelivered, 1, 1));
        assert_eq!(s.file("telegram/last-alert-ts"), "", "the clock is stamped only after a delivery");
        let r = s.tick(&[("a", 0), ("b", 1)], &["a", "b"]).await;
        assert_eq!(r.undelivered, 1);
        s.fake.down.store(false, Ordering::SeqCst);
        let r = s.tick(&[("a", 0), ("b", 1)], &["a", "b"]).await;
        assert_eq!(r.delivered_events(), 1);
        assert_eq!(s.fake.take(), ["[h] TRANSITION channel=ch upstream=a healthy -> unhealthy"]);
        s.alerter.flush().await.unwrap();
        assert!(s.fake.take().is_empty());
        assert!(!s.file("telegram/last-alert-ts").is_empty());
    }

    #[tokio::test]
    async fn a_run_killed_after_journaling_is_rolled_forward_without_duplicates() {
        let s = setup(0, 0);
        s.tick(&[("a", 1)], &["a"]).await;
        // What a run leaves when killed right after saving the outbox: a journaled commit, old state files.
        let outbox_path = s.alerter.config().outbox_file();
        let mut outbox = Outbox::load(&outbox_path, 0).unwrap();
        outbox.push(
            Event::new(
                5,
                EventKind::Transition {
                    channel: None,
                    upstream: "a".into(),
                    from: Health::Healthy,
                    to: Health::Unhealthy,
                },
            ),
            false,
        );
        outbox.commit =
            Some(Commit { upstream_state: "a=unhealthy:5\n".into(), breaker: Breaker::default().to_string() });
        outbox.save(&outbox_path).unwrap();
        let r = s.tick(&[("a", 0)], &["a"]).await;
        assert!(r.events.is_empty(), "{:?}", r.events);
        assert_eq!(s.fake.take(), ["[h] TRANSITION upstream=a healthy -> unhealthy"]);
        assert_eq!(s.file("upstream-state.env"), "a=unhealthy:5\n");
    }

    use crate::event::Health;

    #[tokio::test]
    async fn the_breaker_parks_a_cascade_once_and_a_recovery_releases_it() {
        let s = setup(0, 2);
        let p = ["a", "b", "c", "d"];
        s.tick(&[("a", 1), ("b", 1), ("c", 1), ("d", 1)], &p).await;
        s.tick(&[("a", 0), ("b", 1), ("c", 1), ("d", 1)], &p).await;
        let r = s.tick(&[("a", 0), ("b", 0), ("c", 1), ("d", 1)], &p).await;
        assert_eq!(r.breaker, Some(BreakerStep::Parked));
        let sent = s.fake.take();
        assert_eq!(sent.len(), 2);
        assert!(sent[1].contains("PARKED after 2 consecutive ticks"), "{sent:?}");
        assert!(sent[1].contains("unhealthy: a, b"), "{sent:?}");
        assert!(s.file("telegram/circuit-breaker.state").contains("PARKED_SINCE=1"));
        let r = s.tick(&[("a", 0), ("b", 0), ("c", 0), ("d", 1)], &p).await;
        assert_eq!((r.breaker, r.held), (Some(BreakerStep::StillParked), 1));
        assert!(s.fake.take().is_empty());
        let r = s.tick(&[("a", 1), ("b", 0), ("c", 0), ("d", 1)], &p).await;
        assert_eq!(r.breaker, Some(BreakerStep::Unparked));
        let sent = s.fake.take();
        assert_eq!(sent.len(), 1);
        assert!(
            sent[0].contains("upstream=c healthy -> unhealthy") && sent[0].contains("upstream=a unhealthy -> healthy")
        );
    }

    #[tokio::test]
    async fn without_a_chat_transport_events_are_not_queued() {
        let dir = tempfile::tempdir().unwrap();
        let config = AlertConfig::new("h", dir.path().join("tg"), dir.path().join("upstream-state.env"));
        let alerter = Alerter::new(config).unwrap();
        alerter.process(page(&[("a", 1)]), &[]).await.unwrap();
        let r = alerter.process(page(&[("a", 0)]), &[]).await.unwrap();
        assert_eq!(r.status(), TickStatus::NoTransport);
        assert!(Outbox::load(&dir.path().join("tg/outbox.json"), 0).unwrap().entries.is_empty());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("upstream-state.env")).unwrap().split(':').next(),
            Some("a=unhealthy")
        );
    }

    #[tokio::test]
    async fn an_unreadable_state_file_is_reported_and_replaced() {
        let s = setup(0, 0);
        std::fs::write(s.dir.path().join("upstream-state.env"), "garbage\n").unwrap();
        let r = s.tick(&[("a", 0)], &["a"]).await;
        let sent = s.fake.take();
        assert_eq!(r.delivered_events(), 3, "{sent:?}");
        assert!(sent[0].contains("upstream-state.env was unreadable (line 1: expected key=value"), "{sent:?}");
        assert!(s.file("upstream-state.env").starts_with("a=unhealthy:"));
    }

    #[tokio::test]
    async fn a_hostile_page_never_grows_the_state_files() {
        use crate::metrics::{MAX_UPSTREAMS, UPSTREAM_HEALTH_METRIC as M};
        let huge = "h".repeat(5 << 20);
        let mut text = format!("{M}{{upstream=\"{huge}:1\"}} 0\n{M}{{upstream=\"a\"}} 1\n");
        text.extend((0..2 * MAX_UPSTREAMS).map(|i| format!("{M}{{upstream=\"x{i}:1\"}} 1\n")));
        let observation = Observation::Metrics { source: "m".into(), metrics: UpstreamMetrics::parse(&text) };

        // Legacy mode: the page counts, within the caps, each reported once.
        let s = setup(0, 0);
        let r = s.alerter.process(observation.clone(), &[]).await.unwrap();
        let state = s.file("upstream-state.env");
        assert_eq!(state.lines().count(), MAX_UPSTREAMS);
        assert!(state.len() < 64 << 10, "{} bytes", state.len());
        assert!(!state.contains("hhhh"));
        assert_eq!(r.metrics_problems.len(), 2, "{:?}", r.metrics_problems);

        // Stack mode: only the pool.
        let s = setup(0, 0);
        let r = s.alerter.process(observation, &pool(&["a"])).await.unwrap();
        assert!(r.events.is_empty(), "{:?}", r.events);
        assert!(s.file("upstream-state.env").starts_with("a=healthy:"));
        assert_eq!(s.file("upstream-state.env").lines().count(), 1);
        assert!(s.file("telegram/outbox.json").len() < 4 << 10);
        assert!(s.fake.take().is_empty());
    }

    #[tokio::test]
    async fn an_oversized_metrics_file_is_unreachable_not_read() {
        let s = setup(0, 0);
        let file = s.dir.path().join("metrics.txt");
        std::fs::write(&file, vec![b'#'; MAX_METRICS_BYTES + 1]).unwrap();
        let mut config = s.alerter.config().clone();
        config.metrics = MetricsSource::File(file);
        let alerter = Alerter::with_chain(config, Chain::default()).unwrap();
        match alerter.observe().await {
            Observation::Unreachable { reason, .. } => {
                assert_eq!(reason, format!("page larger than {MAX_METRICS_BYTES} bytes"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn in_stack_mode_other_series_never_crowd_the_pool_out() {
        use crate::metrics::{MAX_UPSTREAMS, UPSTREAM_HEALTH_METRIC as M};
        let s = setup(0, 0);
        let file = s.dir.path().join("metrics.txt");
        let mut page: String = (0..2 * MAX_UPSTREAMS).map(|i| format!("{M}{{upstream=\"10.0.{i}:1\"}} 0\n")).collect();
        page.push_str(&format!("{M}{{upstream=\"xray-client:3080\"}} 1\n"));
        std::fs::write(&file, page).unwrap();
        let mut config = s.alerter.config().clone();
        config.metrics = MetricsSource::File(file);
        let alerter = Alerter::with_chain(config, Chain::new(vec![Box::new(s.fake.clone())])).unwrap();
        let pool = [PoolMember::new("xray", "xray-client:3080")];
        let r = alerter.tick(&pool).await.unwrap();
        assert!(r.events.is_empty() && r.metrics_problems.is_empty(), "{:?} {:?}", r.events, r.metrics_problems);
        assert!(s.file("upstream-state.env").starts_with("xray-client:3080=healthy:"));
        assert!(s.fake.take().is_empty());
    }

    #[tokio::test]
    async fn notices_share_the_limiter() {
        let s = setup(600, 0);
        let r = s.alerter.notify(Severity::Warning, "container oxpulse-partner-naive died").await.unwrap();
        assert_eq!(r.delivered_events(), 1);
        let r = s.alerter.notify(Severity::Warning, "again").await.unwrap();
        assert_eq!(r.held, 1);
        assert_eq!(s.fake.take(), ["[h] container oxpulse-partner-naive died"]);
    }

    #[tokio::test]
    async fn an_announcement_skips_the_window_leaves_the_clock_and_is_never_dropped() {
        let s = setup(600, 0);
        s.tick(&[("a", 1)], &["a"]).await;
        let stamped = format!("{}\n", time::now());
        std::fs::write(s.dir.path().join("telegram/last-alert-ts"), &stamped).unwrap();
        let r = s.alerter.announce("edge installed").await.unwrap();
        assert_eq!((r.status(), r.transport()), (TickStatus::Delivered, Some(TransportKind::Webhook)));
        assert_eq!(s.fake.take(), ["[h] edge installed"]);
        assert_eq!(s.file("telegram/last-alert-ts"), stamped, "the clock is left alone");

        // Undelivered: in the outbox, and the next run that may send delivers it.
        std::fs::remove_file(s.dir.path().join("telegram/last-alert-ts")).unwrap();
        s.fake.down.store(true, Ordering::SeqCst);
        let r = s.alerter.announce("edge installed again").await.unwrap();
        assert_eq!((r.status(), r.undelivered, r.errors.len()), (TickStatus::Undelivered, 1, 1));
        assert_eq!(s.file("telegram/last-alert-ts"), "");
        s.fake.down.store(false, Ordering::SeqCst);
        let r = s.alerter.flush().await.unwrap();
        assert_eq!(r.delivered_events(), 1);
        assert_eq!(s.fake.take(), ["[h] edge installed again"]);
    }

    #[tokio::test]
    async fn unreachable_metrics_are_an_alert() {
        let s = setup(0, 0);
        let down = Observation::Unreachable { source: "http://127.0.0.1:1/metrics".into(), reason: "refused".into() };
        s.alerter.process(down.clone(), &[]).await.unwrap();
        s.alerter.process(down, &[]).await.unwrap();
        s.tick(&[], &[]).await;
        assert_eq!(
            s.fake.take(),
            [
                "[h] METRICS UNREACHABLE source=http://127.0.0.1:1/metrics: refused",
                "[h] METRICS REACHABLE again source=m"
            ]
        );
    }
}
