//! `stop`, `start` and `restart` of a stack's services, as the operator asks.
//!
//! A stop is recorded in the install record *before* the containers go down, so the
//! watchdog, racing it, already sees them as stopped by the operator: no failure, no alert,
//! no restart. Docker keeps a container stopped by hand down across its restart policy
//! (`unless-stopped`, `on-failure`) and across an engine restart. A start or restart clears
//! the record once the containers are back, in dependency order, and waits for their health
//! like install does.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use edge_channels::{ContainerStatus, Deployer, Engine, Readiness};
use edge_core::{InstallRecord, Service};
use futures_util::future::join_all;
use serde::Serialize;

use crate::{Node, OpError, Outcome, Progress, ProgressSink};

/// Which lifecycle verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verb {
    /// Stop and keep stopped.
    Stop,
    /// Start what is stopped.
    Start,
    /// Stop and start again.
    Restart,
}

impl Verb {
    fn past(self) -> &'static str {
        match self {
            Self::Stop => "stopped",
            Self::Start => "started",
            Self::Restart => "restarted",
        }
    }
}

/// How to run a lifecycle verb.
#[derive(Debug, Clone)]
pub struct LifecycleRequest {
    /// Services (or their container names); empty means every service of the stack.
    pub services: Vec<String>,
    /// How long a container may take to stop before it is killed.
    pub stop_grace: Duration,
    /// How long to wait for started containers to become healthy.
    pub health_timeout: Duration,
}

impl Default for LifecycleRequest {
    fn default() -> Self {
        Self { services: Vec::new(), stop_grace: Duration::from_secs(10), health_timeout: Duration::from_secs(120) }
    }
}

/// One service after the verb.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceState {
    /// The service.
    pub service: String,
    /// Its container.
    pub container: String,
    /// Its state before.
    pub before: ContainerStatus,
    /// Its state after.
    pub after: ContainerStatus,
    /// Whether it became ready (start and restart).
    pub readiness: Option<Readiness>,
}

/// What a lifecycle verb did.
#[derive(Debug, Clone, Serialize)]
pub struct LifecycleReport {
    /// The stack.
    pub stack: String,
    /// The verb.
    pub verb: Verb,
    /// Success, or failure when a container did not stop or did not become ready.
    pub status: Outcome,
    /// Every service acted on.
    pub services: Vec<ServiceState>,
    /// Wall time.
    pub duration_ms: u64,
    /// One line saying how it ended.
    pub message: String,
}

/// Stops the services and records them as stopped by the operator.
pub async fn stop<E: Engine>(engine: &E, node: &Node, request: &LifecycleRequest) -> Result<LifecycleReport, OpError> {
    let started = Instant::now();
    let services = select(node, &request.services)?;
    engine.version().await?;
    let before = states(engine, &services).await?;
    InstallRecord::update(&node.paths, |r| r.stopped.extend(services.iter().map(|s| s.name.clone())))?;
    let results = join_all(services.iter().map(|s| engine.stop_container(&s.container, request.stop_grace))).await;
    for result in results {
        result?;
    }
    let after = states(engine, &services).await?;
    let still: Vec<&str> = services
        .iter()
        .zip(&after)
        .filter(|(_, s)| matches!(s, ContainerStatus::Running | ContainerStatus::Restarting))
        .map(|(s, _)| s.container.as_str())
        .collect();
    let (status, message) = if still.is_empty() {
        (Outcome::Success, done_message(Verb::Stop, &services, started))
    } else {
        (Outcome::Failure, format!("stop failed: still running: {}; see `docker inspect`", still.join(", ")))
    };
    Ok(report(node, Verb::Stop, status, &services, &before, &after, BTreeMap::new(), started, message))
}

/// Starts the services in dependency order, waits for their health, and clears their stop.
pub async fn start<E: Engine>(
    engine: &E,
    node: &Node,
    request: &LifecycleRequest,
    progress: ProgressSink<'_>,
) -> Result<LifecycleReport, OpError> {
    run_up(engine, node, request, Verb::Start, progress).await
}

/// Restarts the services in dependency order, waits for their health, and clears their stop.
pub async fn restart<E: Engine>(
    engine: &E,
    node: &Node,
    request: &LifecycleRequest,
    progress: ProgressSink<'_>,
) -> Result<LifecycleReport, OpError> {
    run_up(engine, node, request, Verb::Restart, progress).await
}

async fn run_up<E: Engine>(
    engine: &E,
    node: &Node,
    request: &LifecycleRequest,
    verb: Verb,
    progress: ProgressSink<'_>,
) -> Result<LifecycleReport, OpError> {
    let started = Instant::now();
    let services = select(node, &request.services)?;
    engine.version().await?;
    let before = states(engine, &services).await?;
    if let Some((s, _)) = services.iter().zip(&before).find(|(_, st)| **st == ContainerStatus::Missing) {
        return Err(OpError::Preflight(format!(
            "container {} of service {} does not exist; run edge install to create it",
            s.container, s.name
        )));
    }
    let deployer = Deployer::new(engine);
    let on_event = |e| progress(Progress::Deploy(e));
    let mut readiness = BTreeMap::new();
    for wave in waves(&services) {
        let names: Vec<String> = wave.iter().map(|s| s.container.clone()).collect();
        progress(Progress::Step(format!("{} {}", verb_word(verb), names.join(", "))));
        let results = join_all(wave.iter().map(|s| async move {
            match verb {
                Verb::Restart => engine.restart_container(&s.container, request.stop_grace).await,
                _ => engine.start_container(&s.container).await,
            }
        }))
        .await;
        for result in results {
            result?;
        }
        readiness.extend(deployer.wait_ready(&names, request.health_timeout, &on_event).await);
    }
    let up: BTreeSet<String> = services
        .iter()
        .filter(|s| readiness.get(&s.container).is_some_and(Readiness::is_ready))
        .map(|s| s.name.clone())
        .collect();
    InstallRecord::update(&node.paths, |r| r.stopped.retain(|s| !up.contains(s)))?;
    let after = states(engine, &services).await?;
    let failed: Vec<String> = readiness
        .iter()
        .filter_map(|(name, r)| match r {
            Readiness::Failed { reason } => Some(format!("{name} {reason}")),
            Readiness::Ready { .. } => None,
        })
        .collect();
    let (status, message) = if failed.is_empty() {
        (Outcome::Success, done_message(verb, &services, started))
    } else {
        (
            Outcome::Failure,
            format!("{} failed: {}; see `docker logs` of the container", verb_word(verb), failed.join("; ")),
        )
    };
    Ok(report(node, verb, status, &services, &before, &after, readiness, started, message))
}

fn verb_word(verb: Verb) -> &'static str {
    match verb {
        Verb::Stop => "stop",
        Verb::Start => "start",
        Verb::Restart => "restart",
    }
}

fn done_message(verb: Verb, services: &[Service], started: Instant) -> String {
    let names: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();
    format!("{} in {:.1}s: {}", verb.past(), started.elapsed().as_secs_f64(), names.join(", "))
}

#[allow(clippy::too_many_arguments)]
fn report(
    node: &Node,
    verb: Verb,
    status: Outcome,
    services: &[Service],
    before: &[ContainerStatus],
    after: &[ContainerStatus],
    mut readiness: BTreeMap<String, Readiness>,
    started: Instant,
    message: String,
) -> LifecycleReport {
    LifecycleReport {
        stack: node.name().to_owned(),
        verb,
        status,
        services: services
            .iter()
            .zip(before.iter().zip(after))
            .map(|(s, (b, a))| ServiceState {
                service: s.name.clone(),
                container: s.container.clone(),
                before: *b,
                after: *a,
                readiness: readiness.remove(&s.container),
            })
            .collect(),
        duration_ms: started.elapsed().as_millis() as u64,
        message,
    }
}

/// The services named (by service or container name), in stack order; all when none is.
fn select(node: &Node, names: &[String]) -> Result<Vec<Service>, OpError> {
    let stack = node.stack();
    let install_env = node.paths.install_env();
    if InstallRecord::load_optional(&install_env)?.is_none() {
        return Err(OpError::NotInstalled { stack: node.name().to_owned(), install_env });
    }
    for name in names {
        if !stack.services.iter().any(|s| &s.name == name || &s.container == name) {
            return Err(OpError::UnknownService {
                name: name.clone(),
                known: stack.services.iter().map(|s| s.name.clone()).collect(),
            });
        }
    }
    Ok(stack
        .services
        .iter()
        .filter(|s| names.is_empty() || names.iter().any(|n| n == &s.name || n == &s.container))
        .cloned()
        .collect())
}

async fn states<E: Engine>(engine: &E, services: &[Service]) -> Result<Vec<ContainerStatus>, OpError> {
    let mut out = Vec::new();
    for s in services {
        let info = engine.inspect_container(&s.container).await?;
        out.push(info.map_or(ContainerStatus::Missing, |c| c.status));
    }
    Ok(out)
}

/// The services in start order: each wave's dependencies (among those selected) are in
/// earlier waves. A cycle (the manifest forbids it) ends as one last wave.
fn waves(services: &[Service]) -> Vec<Vec<&Service>> {
    let names: BTreeSet<&str> = services.iter().map(|s| s.name.as_str()).collect();
    let mut placed: BTreeSet<&str> = BTreeSet::new();
    let mut left: Vec<&Service> = services.iter().collect();
    let mut out = Vec::new();
    while !left.is_empty() {
        let (ready, rest): (Vec<&Service>, Vec<&Service>) = left
            .into_iter()
            .partition(|s| s.depends_on.iter().all(|d| !names.contains(d.as_str()) || placed.contains(d.as_str())));
        if ready.is_empty() {
            out.push(rest);
            break;
        }
        placed.extend(ready.iter().map(|s| s.name.as_str()));
        out.push(ready);
        left = rest;
    }
    out
}
