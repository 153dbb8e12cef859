//! `edge-watchdog --interval D`: ticks at the interval and, between ticks, follows the Docker
//! engine's events for the stack's containers, so that a channel container that dies or turns
//! unhealthy is reported within seconds instead of after the front proxy's health checks and
//! the next tick. The caller's `shutdown` (SIGTERM or SIGINT for `edge-watchdog`) ends it between
//! two steps (never in the middle of a tick); each tick and each container alert goes to the
//! caller's [`OutputSink`] as it happens.

use std::collections::BTreeMap;
use std::time::Duration;

use edge_alerts::{Report, Severity, TickStatus};
use edge_channels::events::{ContainerAction, ContainerEvent, ContainerEvents, FollowOptions, WatchItem};
use edge_channels::{DeployError, Engine, HealthStatus, LABEL_COMPOSE_PROJECT};
use serde::Serialize;

use super::{DeliveredOutcome, TickOutcome, Watchdog, delivered};
use crate::channels::ChannelChange;

/// A container the daemon knows to be down.
#[derive(Debug, Clone)]
struct Down {
    channel: Option<String>,
    reason: String,
}

/// What the daemon knows between ticks.
struct Daemon<'a, E, C> {
    watchdog: Watchdog,
    output: OutputSink<'a>,
    /// Down containers by name.
    down: BTreeMap<String, Down>,
    engine: Option<E>,
    /// Reaches the engine (again, after it was lost).
    connect: C,
}

/// What the daemon reports as it goes.
#[derive(Debug, Clone, Copy)]
pub enum DaemonOutput<'a> {
    /// A tick ended.
    Tick(&'a TickOutcome),
    /// A container event was alerted.
    Alert(&'a ContainerAlert),
}

/// Where the daemon's reports go; the caller prints them.
pub type OutputSink<'a> = &'a (dyn Fn(DaemonOutput<'_>) + Send + Sync);

/// One container event as alerted (`edge-watchdog --json` prints it).
#[derive(Debug, Serialize)]
pub struct ContainerAlert {
    /// The container.
    pub container: String,
    /// The channel it carries.
    pub channel: Option<String>,
    /// The alert text.
    pub alert: String,
    /// What was delivered, by transport.
    pub delivered: Vec<DeliveredOutcome>,
    /// Events held in the outbox.
    pub held: usize,
    /// Events no transport took.
    pub undelivered: usize,
    /// The channel state the event changed.
    pub channel_change: Option<ChannelChange>,
    /// The delivery's outcome.
    #[serde(skip)]
    pub status: TickStatus,
}

/// Ticks every `interval` and follows the engine's events until `shutdown` completes.
/// `connect` reaches the engine to look at containers.
pub async fn run<E, C, F>(
    watchdog: Watchdog,
    interval: Duration,
    connect: C,
    shutdown: impl Future<Output = ()>,
    output: OutputSink<'_>,
) where
    E: Engine,
    C: Fn() -> F,
    F: Future<Output = Result<E, DeployError>>,
{
    let project = watchdog.stack().stack.compose_project.clone();
    let mut events = ContainerEvents::follow(FollowOptions::label(LABEL_COMPOSE_PROJECT, &project));
    let mut shutdown = std::pin::pin!(shutdown);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut daemon = Daemon { watchdog, output, down: BTreeMap::new(), engine: None, connect };
    daemon.resync(false).await;
    tracing::info!("watching every {interval:?} and following the docker events of project {project}");
    loop {
        tokio::select! {
            _ = ticker.tick() => daemon.tick().await,
            item = events.next() => match item {
                Some(WatchItem::Event(event)) => daemon.event(event).await,
                Some(WatchItem::Connected { endpoint, reconnected }) => {
                    tracing::info!("following docker events of project {project} at {endpoint}");
                    if reconnected {
                        daemon.resync(true).await;
                    }
                }
                Some(WatchItem::Lost { endpoint, reason, retry_in }) => {
                    daemon.engine = None;
                    tracing::warn!("lost the docker engine at {endpoint}: {reason}; retrying in {retry_in:?}");
                }
                None => {
                    tracing::warn!("the docker event watcher stopped; restarting it");
                    events = ContainerEvents::follow(FollowOptions::label(LABEL_COMPOSE_PROJECT, &project));
                }
            },
            () = &mut shutdown => break,
        }
    }
    // A requested stop is a clean end; undelivered alerts stay in the outbox for the next run.
    tracing::info!("stopping");
}

impl<E, C, F> Daemon<'_, E, C>
where
    E: Engine,
    C: Fn() -> F,
    F: Future<Output = Result<E, DeployError>>,
{
    async fn tick(&mut self) {
        let down: BTreeMap<String, String> =
            self.down.values().filter_map(|d| Some((d.channel.clone()?, d.reason.clone()))).collect();
        match self.watchdog.tick(&down).await {
            Ok(outcome) => (self.output)(DaemonOutput::Tick(&outcome)),
            Err(e) => tracing::error!("tick failed: {}", crate::error::chain(&e)),
        }
    }

    /// Looks at the pool's containers: at start silently, after a lost engine as events.
    async fn resync(&mut self, report: bool) {
        let seen = self.watchdog.look_at_containers((self.connect)()).await;
        if report {
            let recovered: Vec<String> = self.down.keys().filter(|n| !seen.contains_key(*n)).cloned().collect();
            for name in recovered {
                self.mark_up(&name, "running again (seen after the docker engine came back)").await;
            }
            for (name, (channel, reason)) in seen {
                self.mark_down(&name, Some(channel), &format!("{reason} (seen after the docker engine came back)"))
                    .await;
            }
        } else {
            self.down = seen
                .into_iter()
                .map(|(name, (channel, reason))| (name, Down { channel: Some(channel), reason }))
                .collect();
        }
    }

    fn channel_of(&self, event: &ContainerEvent) -> Option<String> {
        event.channel.clone().or_else(|| {
            self.watchdog.stack().services.iter().find(|s| s.container == event.name).and_then(|s| s.channel.clone())
        })
    }

    async fn event(&mut self, event: ContainerEvent) {
        tracing::debug!(container = %event.name, action = ?event.action, "docker event");
        let channel = self.channel_of(&event);
        let name = event.name.as_str();
        match &event.action {
            ContainerAction::Die { exit_code } => {
                let reason = match exit_code {
                    Some(code) => format!("died (exit code {code})"),
                    None => "died".to_owned(),
                };
                self.mark_down(name, channel, &reason).await;
            }
            ContainerAction::Health(HealthStatus::Unhealthy) => {
                self.mark_down(name, channel, "turned unhealthy (engine health check)").await;
            }
            // With a health check it is up only once that passes.
            ContainerAction::Start if !self.has_health_check(name).await => {
                self.mark_up(name, "running again").await;
            }
            ContainerAction::Health(HealthStatus::Healthy) => {
                self.mark_up(name, "healthy again").await;
            }
            _ => {}
        }
    }

    /// Whether the container runs an engine health check (then it is up only once that passes).
    async fn has_health_check(&mut self, name: &str) -> bool {
        if self.engine.is_none() {
            self.engine = (self.connect)().await.ok();
        }
        let Some(engine) = &self.engine else { return false };
        match engine.inspect_container(name).await {
            Ok(Some(c)) => c.health != HealthStatus::None,
            _ => false,
        }
    }

    async fn mark_down(&mut self, name: &str, channel: Option<String>, reason: &str) {
        if self.down.contains_key(name) {
            return;
        }
        // `edge stop`: no failure, no alert, no restart.
        if self.watchdog.stopped_by_operator(name) {
            tracing::info!("container {name} {reason}: stopped by the operator");
            return;
        }
        self.down
            .insert(name.to_owned(), Down { channel: channel.clone(), reason: format!("container {name} {reason}") });
        let text = format!("CONTAINER {name}{} {reason}", describe(channel.as_deref()));
        let change = match &channel {
            Some(c) => match self.watchdog.fail_channel(c, &format!("container {name} {reason}")) {
                Ok(change) => change,
                Err(e) => {
                    tracing::error!("{}", crate::error::chain(&e));
                    None
                }
            },
            None => None,
        };
        self.alert(Severity::Warning, name, channel.as_deref(), &text, change).await;
    }

    async fn mark_up(&mut self, name: &str, what: &str) {
        let Some(was) = self.down.remove(name) else { return };
        let text = format!("CONTAINER {name}{} {what}", describe(was.channel.as_deref()));
        self.alert(Severity::Info, name, was.channel.as_deref(), &text, None).await;
    }

    async fn alert(
        &mut self,
        severity: Severity,
        name: &str,
        channel: Option<&str>,
        text: &str,
        change: Option<ChannelChange>,
    ) {
        let report: Report = match self.watchdog.notify(severity, text).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("cannot queue the alert {text:?}: {}", crate::error::chain(&e));
                return;
            }
        };
        let alert = ContainerAlert {
            container: name.to_owned(),
            channel: channel.map(str::to_owned),
            alert: text.to_owned(),
            delivered: delivered(&report),
            held: report.held,
            undelivered: report.undelivered,
            channel_change: change,
            status: report.status(),
        };
        (self.output)(DaemonOutput::Alert(&alert));
    }
}

fn describe(channel: Option<&str>) -> String {
    channel.map(|c| format!(" (channel {c})")).unwrap_or_default()
}
