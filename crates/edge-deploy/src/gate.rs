//! The lifecycle gate: the whole lifecycle of a stack, N times, each step timed.
//!
//! One run: install → healthcheck → stop (nothing listening on the stack's ports) → start →
//! restart → re-install (no container recreated, ids compared) → uninstall (backup kept) →
//! install from that backup. After the run the identity files are byte-identical to those
//! after its install, and a marker written into a named volume at its start is still there.
//! The first failing step ends the gate and leaves the host as that step left it.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use edge_channels::{ActionKind, Engine};
use serde::Serialize;

use crate::identity::identity_files;
use crate::{
    InstallRequest, LifecycleRequest, Node, OpError, Outcome, Progress, ProgressSink, UninstallRequest, healthcheck,
    install, observe,
};

/// Where the marker goes inside the named volume.
const MARKER_PATH: &str = "edge-gate/marker";

/// The steps of one run, in order.
pub const STEPS: [&str; 8] =
    ["install", "healthcheck", "stop", "start", "restart", "reinstall", "uninstall", "restore"];

/// How to run the gate.
#[derive(Debug, Clone)]
pub struct GateRequest {
    /// How many runs.
    pub runs: u32,
    /// What each install installs (its `restore_from` and `dry_run` are the gate's to set).
    pub install: InstallRequest,
}

/// One timed step.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    /// Its name (one of [`STEPS`]).
    pub step: &'static str,
    /// Wall time.
    pub duration_ms: u64,
    /// Whether it passed.
    pub ok: bool,
    /// What was seen.
    pub detail: String,
}

/// One run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// Its number, from 1.
    pub run: u32,
    /// Its steps, up to the first failing one.
    pub steps: Vec<StepReport>,
    /// Wall time.
    pub duration_ms: u64,
}

/// Timing of one step over every run that reached it.
#[derive(Debug, Clone, Serialize)]
pub struct StepSummary {
    /// The step.
    pub step: &'static str,
    /// Runs that passed it.
    pub passed: u32,
    /// Median wall time.
    pub median_ms: u64,
    /// Fastest.
    pub min_ms: u64,
    /// Slowest.
    pub max_ms: u64,
}

/// Where the gate failed.
#[derive(Debug, Clone, Serialize)]
pub struct GateFailure {
    /// The run.
    pub run: u32,
    /// The step.
    pub step: &'static str,
    /// Why.
    pub message: String,
}

/// What the gate did.
#[derive(Debug, Clone, Serialize)]
pub struct GateReport {
    /// The stack.
    pub stack: String,
    /// Runs asked for.
    pub runs_requested: u32,
    /// Every run, the failing one last.
    pub runs: Vec<RunReport>,
    /// Per-step timing.
    pub summary: Vec<StepSummary>,
    /// Whether every run passed.
    pub ok: bool,
    /// The first failure.
    pub failure: Option<GateFailure>,
    /// Wall time.
    pub duration_ms: u64,
}

/// Runs the gate. An `Err` is an error before the first step; a failing step is data in the
/// report.
pub async fn gate<E: Engine>(
    engine: &E,
    node: &Node,
    request: &GateRequest,
    progress: ProgressSink<'_>,
) -> Result<GateReport, OpError> {
    let started = Instant::now();
    engine.version().await?;
    let mut runs = Vec::new();
    let mut failure = None;
    for run in 1..=request.runs {
        progress(Progress::Step(format!("gate run {run} of {}", request.runs)));
        let run_started = Instant::now();
        let mut state = RunState::default();
        let mut steps = Vec::new();
        for step in STEPS {
            let step_started = Instant::now();
            let result = one_step(engine, node, request, step, run, &mut state, progress).await;
            let (ok, detail) = match result {
                Ok(detail) => (true, detail),
                Err(message) => (false, message),
            };
            let duration_ms = step_started.elapsed().as_millis() as u64;
            progress(Progress::Note(format!(
                "    {} {step} in {:.1}s: {detail}",
                if ok { "ok" } else { "!!" },
                duration_ms as f64 / 1000.0
            )));
            steps.push(StepReport { step, duration_ms, ok, detail: detail.clone() });
            if !ok {
                failure = Some(GateFailure { run, step, message: detail });
                break;
            }
        }
        runs.push(RunReport { run, steps, duration_ms: run_started.elapsed().as_millis() as u64 });
        if failure.is_some() {
            break;
        }
    }
    Ok(GateReport {
        stack: node.name().to_owned(),
        runs_requested: request.runs,
        summary: summarize(&runs),
        ok: failure.is_none(),
        failure,
        runs,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

/// What a run carries from step to step.
#[derive(Debug, Default)]
struct RunState {
    identity: BTreeMap<String, Vec<u8>>,
    marker: Option<(String, String, Vec<u8>)>,
    ports: Vec<String>,
    ids: BTreeMap<String, String>,
    backup: Option<PathBuf>,
}

async fn one_step<E: Engine>(
    engine: &E,
    node: &Node,
    request: &GateRequest,
    step: &'static str,
    run: u32,
    state: &mut RunState,
    progress: ProgressSink<'_>,
) -> Result<String, String> {
    let lifecycle = LifecycleRequest { health_timeout: request.install.health_timeout, ..LifecycleRequest::default() };
    let text = |e: OpError| e.to_string();
    match step {
        "install" => {
            let report = install(engine, node, &fresh(request, None), progress).await.map_err(text)?;
            if report.status != Outcome::Success {
                return Err(report.message);
            }
            state.ports = report.listening.clone();
            state.identity = read_identity(node);
            state.marker = write_marker(engine, node, run).await?;
            Ok(format!(
                "{} changes; identity of {} files; marker {}",
                report.plan.len(),
                state.identity.len(),
                if state.marker.is_some() { "written" } else { "skipped (the stack has no volume)" }
            ))
        }
        "healthcheck" => {
            let seen = observe(node, Ok(engine), None).await.map_err(text)?;
            let health = healthcheck(node, &seen);
            if health.ok {
                Ok(format!("all {} checks passed", health.passed))
            } else {
                let failed: Vec<String> =
                    health.checks.iter().filter(|c| !c.ok).map(|c| format!("{}: {}", c.name, c.detail)).collect();
                Err(format!("{} checks failed: {}", health.failed, failed.join("; ")))
            }
        }
        "stop" => {
            let report = crate::stop(engine, node, &lifecycle).await.map_err(text)?;
            if report.status != Outcome::Success {
                return Err(report.message);
            }
            let listening: Vec<&String> = state.ports.iter().filter(|p| accepts(p)).collect();
            if !listening.is_empty() {
                let list: Vec<&str> = listening.iter().map(|p| p.as_str()).collect();
                return Err(format!("still accepting connections after stop: {}", list.join(", ")));
            }
            Ok(format!("{}; {} ports refused", report.message, state.ports.len()))
        }
        "start" | "restart" => {
            let report = if step == "start" {
                crate::start(engine, node, &lifecycle, progress).await
            } else {
                crate::restart(engine, node, &lifecycle, progress).await
            }
            .map_err(text)?;
            if report.status != Outcome::Success {
                return Err(report.message);
            }
            state.ids = container_ids(engine, node).await?;
            Ok(report.message)
        }
        "reinstall" => {
            let report = install(engine, node, &fresh(request, None), progress).await.map_err(text)?;
            if report.status != Outcome::Success {
                return Err(report.message);
            }
            let changed: Vec<String> = report
                .plan
                .iter()
                .filter(|e| matches!(e.action, ActionKind::Create | ActionKind::Recreate | ActionKind::Remove))
                .map(|e| format!("{} {}", e.action.as_str(), e.container))
                .collect();
            if !changed.is_empty() {
                return Err(format!("a re-install changed containers: {}", changed.join(", ")));
            }
            let ids = container_ids(engine, node).await?;
            if ids != state.ids {
                return Err(format!("container ids changed across the re-install: {:?} -> {ids:?}", state.ids));
            }
            Ok(format!("0 containers recreated ({} ids unchanged)", ids.len()))
        }
        "uninstall" => {
            let report = crate::uninstall(engine, node, &UninstallRequest::default()).await.map_err(text)?;
            if !report.warnings.is_empty() {
                return Err(report.warnings.join("; "));
            }
            state.backup = report.backup.clone();
            match &report.backup {
                Some(dir) => {
                    Ok(format!("{} containers removed; backup {}", report.containers_removed.len(), dir.display()))
                }
                None => Err("uninstall made no backup of the identity".to_owned()),
            }
        }
        "restore" => {
            let report = install(engine, node, &fresh(request, state.backup.clone()), progress).await.map_err(text)?;
            if report.status != Outcome::Success {
                return Err(report.message);
            }
            let now = read_identity(node);
            let differing: Vec<&String> =
                state.identity.keys().filter(|f| now.get(*f) != state.identity.get(*f)).collect();
            if !differing.is_empty() || now.len() != state.identity.len() {
                return Err(format!("identity files differ after the restore: {differing:?}"));
            }
            if let Some((volume, image, bytes)) = &state.marker {
                let found = engine.read_volume_file(volume, MARKER_PATH, image).await.map_err(|e| e.to_string())?;
                if found.as_ref() != Some(bytes) {
                    return Err(format!("the marker in volume {volume} is gone or changed"));
                }
            }
            Ok(format!("identity byte-identical ({} files); marker intact", now.len()))
        }
        other => Err(format!("unknown gate step {other}")),
    }
}

fn fresh(request: &GateRequest, restore_from: Option<PathBuf>) -> InstallRequest {
    InstallRequest { restore_from, dry_run: false, ..request.install.clone() }
}

fn read_identity(node: &Node) -> BTreeMap<String, Vec<u8>> {
    identity_files(node.stack())
        .into_iter()
        .filter_map(|f| Some((f.clone(), std::fs::read(node.paths.config_file(&f)).ok()?)))
        .collect()
}

/// Writes a marker into the stack's first named volume, through the image of a service that
/// mounts it (as installed).
async fn write_marker<E: Engine>(
    engine: &E,
    node: &Node,
    run: u32,
) -> Result<Option<(String, String, Vec<u8>)>, String> {
    let Some(volume) = node.stack().volumes.first() else { return Ok(None) };
    let Some(service) = node.stack().services.iter().find(|s| s.volumes.iter().any(|v| &v.source == volume)) else {
        return Ok(None);
    };
    let image = match engine.inspect_container(&service.container).await.map_err(|e| e.to_string())? {
        Some(c) => c.image,
        None => return Err(format!("container {} is missing after install", service.container)),
    };
    let bytes = format!("edge gate run {run} at {}\n", crate::install::now_secs()).into_bytes();
    engine.write_volume_file(volume, MARKER_PATH, &bytes, &image).await.map_err(|e| e.to_string())?;
    Ok(Some((volume.clone(), image, bytes)))
}

async fn container_ids<E: Engine>(engine: &E, node: &Node) -> Result<BTreeMap<String, String>, String> {
    let mut ids = BTreeMap::new();
    for s in &node.stack().services {
        if let Some(c) = engine.inspect_container(&s.container).await.map_err(|e| e.to_string())? {
            ids.insert(c.name, c.id);
        }
    }
    Ok(ids)
}

/// Whether something accepts TCP connections at `address` (`host:port/tcp`); UDP ports are
/// free when they can be bound.
fn accepts(address: &str) -> bool {
    let (addr, proto) = address.rsplit_once('/').unwrap_or((address, "tcp"));
    if proto == "udp" {
        return std::net::UdpSocket::bind(addr).is_err();
    }
    let Some(addr): Option<SocketAddr> = addr.to_socket_addrs().ok().and_then(|mut a| a.next()) else {
        return false;
    };
    let addr = if addr.ip().is_unspecified() { SocketAddr::from(([127, 0, 0, 1], addr.port())) } else { addr };
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

fn summarize(runs: &[RunReport]) -> Vec<StepSummary> {
    STEPS
        .iter()
        .filter_map(|step| {
            let mut times: Vec<u64> =
                runs.iter().flat_map(|r| &r.steps).filter(|s| s.step == *step && s.ok).map(|s| s.duration_ms).collect();
            if times.is_empty() {
                return None;
            }
            times.sort_unstable();
            Some(StepSummary {
                step,
                passed: times.len() as u32,
                median_ms: times[times.len() / 2],
                min_ms: times[0],
                max_ms: times[times.len() - 1],
            })
        })
        .collect()
}
