//! Install as plan → apply → wait → record.
//!
//! Deploying is reconciling: containers whose spec hash (full spec plus the rendered files
//! they mount, keyed with the host's spec-hash key, an identity file) and image match are
//! kept, so a re-run on an unchanged stack touches nothing.
//! Channel containers go first; a channel whose container does not become healthy is
//! `failed_at_runtime`, the stack is rendered again without it (its upstream leaves the
//! front proxy's config), and only then are the front proxy and the other services
//! deployed, so the proxy starts with the final pool. The failed container is left in place
//! for `docker logs`. A host-level mesh channel's interface is brought up from its rendered
//! config, and the channel is `active` only once the host reports it up (and, with a peer,
//! a handshake). A dry run is the plan alone.
//!
//! A service that takes its config in place (`reload` in the manifest: the front proxy) is
//! kept when only that config changed: once the other services are deployed it is handed the
//! new one (Caddy's admin API) and keeps its id and connections. If it refuses the config it
//! keeps running the old one, the file on disk is put back, and the install fails with the
//! service's own error. `install.env` records the digest of the config each such service
//! runs (`CONFIGS`), so an unchanged re-run hands it nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use edge_alerts::{AlertChanges, AlertSettings, Alerter, TransportTarget};
use edge_channels::{
    Action, ActionKind, Applied, Deployer, Desired, Engine, EngineVersion, Event, Infrastructure, PlanEntry, Readiness,
    RenderedMount, container_spec, stack_labels,
};
use edge_core::secrets::{Outcome as SecretOutcome, SPEC_HASH_KEY_FILE};
use edge_core::{ChannelState, InstallRecord, ObservedHealth, Paths, Reload, SpecHashKey, Stack, StateLock};
use edge_render::{NodeConfigSource, RenderedStack, Renderer, Source, VariableSources, Variables};
use serde::Serialize;

use crate::identity::{self, NODE_CONFIG, RegistrationToken};
use crate::mesh::{HANDSHAKE_MAX_AGE, judge};
use crate::pull::{ImagePull, PullPolicy, images_to_pull, pull_all};
use crate::{Node, OpError, Progress, ProgressSink};

/// Free space the config and state dirs need, in KiB.
const MIN_FREE_KIB: u64 = 50 * 1024;

/// What to install and how.
#[derive(Debug, Clone)]
pub struct InstallRequest {
    /// Variables above the stack's defaults. Install adds the last install's parameters
    /// and, unless one is given, the config dir's node-config.json.
    pub variables: VariableSources,
    /// node-config.json to use and keep a copy of in the config dir.
    pub manual_config: Option<PathBuf>,
    /// Image overrides by service; empty keeps the images the last install used.
    pub images: BTreeMap<String, String>,
    /// Put the identity files and install record of this backup back first: edge's own backup
    /// or the legacy installer's `oxpulse-backup-<epoch>` layout.
    pub restore_from: Option<PathBuf>,
    /// The registration token (`--token`): stored as the `token` identity file, the `EDGE_TOKEN`
    /// secret, instead of a generated one.
    pub token: Option<RegistrationToken>,
    /// The legacy installer's `--tunnel` value, kept as `TUNNEL` in `install.env`; `None` keeps
    /// the recorded one.
    pub tunnel: Option<String>,
    /// Plan only: change nothing.
    pub dry_run: bool,
    /// How long to wait for containers to become healthy.
    pub health_timeout: Duration,
    /// How long to wait for the front proxy to see every pool upstream healthy (zero: do not wait).
    pub pool_wait: Duration,
    /// Changes to the alert settings in `watchdog.env`; keys not changed keep their value.
    pub alerts: AlertChanges,
    /// How long to wait for a mesh interface to be up and, with a peer, to shake hands.
    pub mesh_wait: Duration,
    /// Check this host's free disk and the ports to publish before anything changes. Off when
    /// the engine is not on this host (or is the in-memory one): its ports are not ours to probe.
    pub host_checks: bool,
    /// Which images to pull before anything changes.
    pub pull: PullPolicy,
    /// The `edge` binary the healthcheck wrapper runs (`None`: `edge` on `PATH`).
    pub edge_bin: Option<PathBuf>,
    /// The docker CLI's config dir (`$DOCKER_CONFIG`, `~/.docker`) whose `config.json` holds
    /// registry credentials; `None` pulls without credentials.
    pub docker_config: Option<PathBuf>,
}

impl Default for InstallRequest {
    fn default() -> Self {
        Self {
            variables: VariableSources::default(),
            manual_config: None,
            images: BTreeMap::new(),
            restore_from: None,
            token: None,
            tunnel: None,
            dry_run: false,
            health_timeout: Duration::from_secs(120),
            pool_wait: Duration::from_secs(30),
            alerts: AlertChanges::default(),
            // WireGuard retries a handshake every 5 s: this gives it three tries.
            mesh_wait: Duration::from_secs(16),
            host_checks: true,
            pull: PullPolicy::default(),
            docker_config: None,
            edge_bin: None,
        }
    }
}

/// How an install ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Everything asked for runs and is healthy.
    Success,
    /// Done, but an optional channel failed and is out of the pool.
    Degraded,
    /// A required channel or a service failed.
    Failure,
    /// A dry run: nothing was changed.
    DryRun,
}

/// One channel in the report.
#[derive(Debug, Clone, Serialize)]
pub struct ChannelReport {
    /// The channel.
    pub id: String,
    /// Its state, as `channels-status.env` records it.
    pub state: ChannelState,
    /// Whether the stack requires it.
    pub required: bool,
    /// Why it is not active.
    pub reason: Option<String>,
    /// Its dial address in the pool.
    pub upstream: Option<String>,
    /// Its containers.
    pub containers: Vec<String>,
    /// Its upstream's health in the front proxy's metrics.
    pub upstream_health: Option<ObservedHealth>,
}

/// The alert settings and the "edge installed" message.
#[derive(Debug, Clone, Serialize)]
pub struct AlertsReport {
    /// `watchdog.env`.
    pub settings_file: PathBuf,
    /// Keys this install set or cleared (in a dry run: would).
    pub changed: Vec<String>,
    /// The configured transports (secrets never shown).
    pub transports: Vec<TransportTarget>,
    /// The text sent, once sent.
    pub message: Option<String>,
    /// The transport that delivered it.
    pub delivered_by: Option<String>,
    /// Why transports failed (a fallback may have delivered after).
    pub errors: Vec<String>,
    /// Not delivered: it waits in the outbox for the watchdog's next run.
    pub queued: bool,
    /// What keeps alerts from working, if anything.
    pub problem: Option<String>,
}

/// What an install did.
#[derive(Debug, Clone, Serialize)]
pub struct InstallReport {
    /// The stack.
    pub stack: String,
    /// Whether it was a dry run.
    pub dry_run: bool,
    /// Whether the install reached a working state (success or degraded).
    pub ok: bool,
    /// How it ended.
    pub status: Outcome,
    /// The engine.
    pub engine: EngineVersion,
    /// Every channel.
    pub channels: Vec<ChannelReport>,
    /// Readiness of the service containers (those carrying no channel).
    pub services: BTreeMap<String, Readiness>,
    /// Images pulled (or, in a dry run, to pull) before any container was touched.
    pub pulls: Vec<ImagePull>,
    /// What was (or, in a dry run, would be) done; kept containers are left out after a real run.
    pub plan: Vec<PlanEntry>,
    /// Identity files created.
    pub identity_created: Vec<String>,
    /// Files restored from the backup.
    pub restored: Vec<PathBuf>,
    /// Where the installed stack listens: published ports (`host:port/proto`) and the front
    /// proxy's admin address.
    pub listening: Vec<String>,
    /// `channels-status.env`, once written.
    pub status_file: Option<PathBuf>,
    /// `install.env`, once written.
    pub install_env: Option<PathBuf>,
    /// The stack's summary lines.
    pub summary: Vec<String>,
    /// The stack's smoke checks after install; `None` when it has none, or they were not run
    /// (a dry run, no pool wait, a failed install).
    pub smoke: Option<crate::SmokeReport>,
    /// What the operator should know (secrets a service gets in its environment).
    pub warnings: Vec<String>,
    /// The stack's kernel settings on this host (`[stack] host_sysctls`).
    pub host_sysctls: Vec<crate::host::SysctlReport>,
    /// Alert settings and delivery.
    pub alerts: AlertsReport,
    /// Wall time.
    pub duration_ms: u64,
    /// One line saying how it ended and what to do next.
    pub message: String,
}

/// Installs (or reconciles) the stack on `engine`.
///
/// A host the legacy installer set up is refused ([`OpError::LegacyHost`]): its containers
/// and volumes are taken over by [`crate::adopt()`] instead.
pub async fn install<E: Engine>(
    engine: &E,
    node: &Node,
    request: &InstallRequest,
    progress: ProgressSink<'_>,
) -> Result<InstallReport, OpError> {
    let legacy = crate::adopt::detect(engine, node).await?;
    if legacy.needs_adoption() {
        return Err(OpError::LegacyHost { stack: node.name().to_owned(), found: legacy.summary() });
    }
    install_unchecked(engine, node, request, progress).await
}

/// [`install`] without the legacy check: the adoption's install step.
pub(crate) async fn install_unchecked<E: Engine>(
    engine: &E,
    node: &Node,
    request: &InstallRequest,
    progress: ProgressSink<'_>,
) -> Result<InstallReport, OpError> {
    let started = Instant::now();
    let stack = node.stack();
    let paths = &node.paths;
    let name = node.name().to_owned();
    let step = |text: &str| progress(Progress::Step(text.to_owned()));
    let note = |text: String| progress(Progress::Note(text));

    // Preflight: nothing is written before the engine answers and the record reads.
    step("preflight");
    let version = engine.version().await?;
    note(format!("    docker engine {} (API {}) at {}", version.version, version.api_version, version.endpoint));
    if request.host_checks {
        check_disk(paths)?;
    }
    let images = images_to_use(node, request)?;
    let alerts = AlertPlan::new(paths, &request.alerts)?;

    let mut restored = Vec::new();
    if let Some(from) = &request.restore_from {
        if request.dry_run {
            note(format!("    would restore the identity from {}", from.display()));
        } else {
            step(&format!("restoring the identity from {}", from.display()));
            restored = identity::restore(paths, stack, from)?;
        }
    }

    let (base, node_config) = variables(paths, stack, request)?;
    let previous = InstallRecord::load_optional(&paths.install_env())?;
    let tunnel = request.tunnel.clone().or_else(|| previous.as_ref().and_then(|r| r.tunnel.clone()));
    let applied_configs = previous.map(|r| r.configs).unwrap_or_default();
    let Identity { vars: secret_vars, created: identity_created, spec_key } =
        secrets(paths, stack, request.dry_run, request.token.as_ref())?;
    let vars = base.with_layer(Source::Secret, secret_vars);

    step("render");
    // Overrides go into the manifest, so the rendered compose file names the same images.
    let mut bundle = node.bundle.clone();
    for s in &mut bundle.stack.services {
        if let Some(image) = images.get(&s.name) {
            s.image = image.clone();
        }
    }
    let renderer = Renderer::new(&bundle);
    let first = renderer.render_stack(&vars, &BTreeMap::new())?;
    for c in &first.channels {
        let why = c.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
        note(format!("    {}: {}{why}", c.id, c.state));
    }
    let desired_first = desired(&first, &images, paths, stack)?;
    let deployer = Deployer::new(engine);
    // Every pull succeeds before any container is stopped, created or removed.
    let mut pulls = images_to_pull(engine, &desired_first, request.pull).await?;
    let plan = if request.dry_run {
        // The report lists the pulls.
        let pending = pulls.iter().map(|p| p.image.clone()).collect();
        deployer.plan_pending(&name, desired_first.clone(), &spec_key, &pending).await?
    } else {
        if !pulls.is_empty() {
            step(&format!("pull {} image{}", pulls.len(), if pulls.len() == 1 { "" } else { "s" }));
        }
        pull_all(engine, &mut pulls, request.docker_config.as_ref(), progress).await?;
        deployer.plan(&name, desired_first.clone(), &spec_key).await?
    };
    if request.host_checks {
        check_ports(&plan)?;
    }

    if request.dry_run {
        return Ok(InstallReport {
            stack: name,
            dry_run: true,
            ok: true,
            status: Outcome::DryRun,
            engine: version,
            channels: channel_reports(&first, stack, &BTreeMap::new()),
            services: BTreeMap::new(),
            pulls,
            plan: with_reloads(plan.entries(), &config_reloads(&plan, &first, &applied_configs, &spec_key)),
            identity_created,
            restored,
            listening: listening(&desired_first, &vars),
            status_file: None,
            install_env: None,
            summary: first.summary.clone(),
            smoke: None,
            warnings: first.warnings.clone(),
            host_sysctls: crate::host::planned(stack),
            alerts: alerts.report(paths),
            duration_ms: started.elapsed().as_millis() as u64,
            message: "dry run: nothing was changed".to_owned(),
        });
    }

    step("write configs");
    paths.ensure_dirs().map_err(|e| OpError::io("create", paths.config_dir(), e))?;
    if let Some(bytes) = &node_config {
        edge_core::write_atomic_with_mode(&paths.config_file(NODE_CONFIG), bytes, 0o600)?;
    }
    // What the services that take their config in place run now, to put back if one refuses.
    let running_configs = running_configs(&first, paths)?;
    write_rendered(&first, paths)?;
    // Before any reload: the kernel setting that keeps Caddy's queued connections over it.
    let host_sysctls = crate::host::apply_sysctls(stack, paths, node.rooted, Path::new("/proc/sys"), progress)?;

    // Channels first: their health decides the pool.
    step("deploy channels");
    let infra = Infrastructure { labels: stack_labels(&stack.stack) };
    let is_channel = |d: &Desired| service_channel(stack, &d.service).is_some();
    let channel_plan = edge_channels::Plan {
        actions: plan.actions.iter().filter(|a| a.desired().is_none_or(is_channel)).cloned().collect(),
    };
    let mut executed: Vec<PlanEntry> =
        channel_plan.entries().into_iter().filter(|e| e.action != ActionKind::Keep).collect();
    let channel_containers = desired_first.iter().filter(|d| is_channel(d)).map(|d| d.name().to_owned()).collect();
    let wait = Wait { timeout: request.health_timeout, progress };
    let (applied, readiness) =
        apply_and_wait(&deployer, &channel_plan, &infra, channel_containers, "wait for channel health", &wait).await?;

    let mut forced: BTreeMap<String, ChannelState> = BTreeMap::new();
    let mut runtime_reasons: BTreeMap<String, String> = BTreeMap::new();
    for d in &desired_first {
        let Some(channel) = service_channel(stack, &d.service) else { continue };
        if let Some(Readiness::Failed { reason }) = readiness.get(d.name()) {
            forced.insert(channel.to_owned(), ChannelState::FailedAtRuntime);
            runtime_reasons.insert(channel.to_owned(), format!("container {} {}", d.name(), reason));
        }
    }
    let mut rendered = if forced.is_empty() {
        first
    } else {
        step(&format!("render again without {}", forced.keys().cloned().collect::<Vec<_>>().join(", ")));
        let again = renderer.render_stack(&vars, &forced)?;
        write_rendered(&again, paths)?;
        again
    };
    remove_stale_channel_files(&rendered, stack, paths);

    // The rest, with the final pool; failed channel containers stay as they are.
    step("deploy services");
    let mut desired_final = desired(&rendered, &images, paths, stack)?;
    for d in &desired_first {
        let failed_channel = service_channel(stack, &d.service).is_some_and(|c| forced.contains_key(c));
        if failed_channel && !applied.failed.contains_key(d.name()) {
            desired_final.push(d.clone());
        }
    }
    let plan_final = deployer.plan(&name, desired_final.clone(), &spec_key).await?;
    let reloads = config_reloads(&plan_final, &rendered, &applied_configs, &spec_key);
    executed.extend(with_reloads(plan_final.entries(), &reloads).into_iter().filter(|e| e.action != ActionKind::Keep));
    let others = desired_final.iter().filter(|d| !is_channel(d)).map(|d| d.name().to_owned()).collect();
    let (_, service_readiness) =
        apply_and_wait(&deployer, &plan_final, &infra, others, "wait for service health", &wait).await?;
    for r in &reloads {
        step(&format!("reload {} in place ({} via {})", r.container, r.file, r.reload.via.as_str()));
        if let Err(source) = edge_channels::reload::apply(&r.service, &r.file, &r.reload, &r.contents).await {
            let path = paths.config_file(&r.file);
            if let Some(previous) = running_configs.get(&r.file) {
                edge_core::write_atomic(&path, previous)?;
            }
            return Err(OpError::Reload { source: Box::new(source), restored: path });
        }
    }

    // The front proxy's view of the pool.
    let metrics_url = crate::observe::metrics_url(&vars);
    let pool_health = match &metrics_url {
        Some(url) if !rendered.pool.is_empty() && !request.pool_wait.is_zero() => {
            step("wait for the front proxy's pool");
            crate::metrics::wait_pool(url, &rendered.pool, request.pool_wait, progress).await
        }
        _ => BTreeMap::new(),
    };

    bring_up_meshes(node, &mut rendered, request.mesh_wait, &mut runtime_reasons, progress).await;

    step("write status");
    // The history survives re-installs: rollback reads it.
    let previous_history =
        InstallRecord::load_optional(&paths.install_env())?.map(|r| r.image_history).unwrap_or_default();
    let record = InstallRecord {
        partner_id: vars.get("PARTNER_ID").map(str::to_owned),
        partner_domain: vars.get("PARTNER_DOMAIN").map(str::to_owned),
        tunnel: tunnel.clone(),
        stack: Some(name.clone()),
        stack_origin: Some(node.bundle.origin.clone()),
        edge_root: node.rooted.then(|| paths.root().to_owned()),
        pool: Some(rendered.pool.clone()),
        metrics_url,
        images: images.clone(),
        // Install brings every service up: nothing stays stopped.
        stopped: Default::default(),
        edge_version: Some(env!("CARGO_PKG_VERSION").to_owned()),
        installed_at: Some(now_secs()),
        configs: config_digests(&rendered, &spec_key),
        image_history: previous_history,
        front_url: rendered.front_url.clone(),
        front_ca: rendered.front_ca.clone(),
        other: Vec::new(),
    };
    let mut record = record;
    for spec in &desired_final {
        if let Some(service) = stack.services.iter().find(|s| s.container == spec.name()) {
            record.push_image(&service.name, &spec.spec.image);
        }
    }
    {
        let _lock = StateLock::acquire(paths)?;
        rendered.status.save(&paths.channels_status())?;
        record.save(&paths.install_env())?;
    }
    alerts.save(paths)?;
    write_healthcheck(node, request.edge_bin.as_deref())?;
    install_units(paths, node.rooted, progress);

    let mut channels = channel_reports(&rendered, stack, &runtime_reasons);
    for c in &mut channels {
        c.upstream_health = c.upstream.as_ref().and_then(|u| pool_health.get(u).copied());
    }
    let (status, message) = outcome(&name, &channels, &service_readiness, started.elapsed());
    // Smoke checks go through the front proxy on this host: not with the in-memory engine.
    // After a failed install they could only use up the wait: the install already failed.
    let smoke = if stack.smoke.is_empty() || request.pool_wait.is_zero() || status == Outcome::Failure {
        None
    } else {
        step("run the smoke checks");
        Some(crate::smoke::smoke_until(node, request.pool_wait).await?)
    };
    let (status, message) = match &smoke {
        Some(s) if !s.ok && status != Outcome::Failure => {
            let failed: Vec<String> =
                s.checks.iter().filter(|c| !c.ok).map(|c| format!("{} {}: {}", c.method, c.path, c.detail)).collect();
            (Outcome::Degraded, format!("{message}; but smoke checks failed: {}", failed.join("; ")))
        }
        _ => (status, message),
    };
    let mut alerts_report = alerts.report(paths);
    let (status, message) = if status == Outcome::Failure {
        (status, message)
    } else {
        step("send the \"edge installed\" alert");
        let active: Vec<&str> =
            channels.iter().filter(|c| c.state == ChannelState::Active).map(|c| c.id.as_str()).collect();
        let up = match (channels.is_empty(), active.is_empty()) {
            (true, _) => format!("{} services ready", service_readiness.len()),
            (false, true) => "no channel active".to_owned(),
            (false, false) => format!("active {}", active.join(", ")),
        };
        let text = format!("edge {} installed {name}: {up} (alerts of this node come here)", env!("CARGO_PKG_VERSION"));
        alerts.announce(&text, &mut alerts_report).await;
        match &alerts_report.problem {
            Some(problem) => (Outcome::Degraded, format!("{message}; but {problem}")),
            None => (status, message),
        }
    };
    let elapsed = started.elapsed();
    Ok(InstallReport {
        stack: name,
        dry_run: false,
        ok: status != Outcome::Failure,
        status,
        engine: version,
        channels,
        services: service_readiness,
        pulls,
        plan: executed,
        identity_created,
        restored,
        listening: listening(&desired_final, &vars),
        status_file: Some(paths.channels_status()),
        install_env: Some(paths.install_env()),
        summary: rendered.summary.clone(),
        smoke,
        warnings: rendered.warnings.clone(),
        host_sysctls,
        alerts: alerts_report,
        duration_ms: elapsed.as_millis() as u64,
        message,
    })
}

/// The alert settings this install leaves: `watchdog.env` with the request's changes.
struct AlertPlan {
    settings: AlertSettings,
    changed: Vec<&'static str>,
    /// No `watchdog.env` yet: write one even if nothing changed.
    missing: bool,
    config: edge_alerts::AlertConfig,
}

impl AlertPlan {
    /// Reads `watchdog.env` and applies `changes`; a bad value stops install before anything changes.
    fn new(paths: &Paths, changes: &AlertChanges) -> Result<Self, OpError> {
        let existing = AlertSettings::load_optional(&paths.watchdog_env())?;
        let missing = existing.is_none();
        let mut settings = existing.unwrap_or_default();
        let changed = settings.apply(changes);
        let config = settings.config(paths)?;
        Ok(Self { settings, changed, missing, config })
    }

    fn save(&self, paths: &Paths) -> Result<(), OpError> {
        if self.missing || !self.changed.is_empty() {
            self.settings.save(&paths.watchdog_env())?;
        }
        Ok(())
    }

    fn report(&self, paths: &Paths) -> AlertsReport {
        AlertsReport {
            settings_file: paths.watchdog_env(),
            changed: self.changed.iter().map(|k| (*k).to_owned()).collect(),
            transports: AlertSettings::targets(&self.config),
            message: None,
            delivered_by: None,
            errors: Vec::new(),
            queued: false,
            problem: None,
        }
    }

    /// Sends `text` through the watchdog's chain, outside its rate limit; what failed is kept in
    /// the outbox and said in `report.problem`.
    async fn announce(&self, text: &str, report: &mut AlertsReport) {
        let chat = self.config.webhook.is_some() || self.config.telegram.is_some();
        if !chat {
            report.problem = Some(
                "no alert transport is configured, so nobody hears of a channel going down: give \
                 --alert-webhook URL (OXPULSE_TG_WEBHOOK), or --alert-telegram-token and --alert-telegram-chat \
                 (TG_TOKEN, OXPULSE_TG_CHAT), and run edge install again"
                    .to_owned(),
            );
            return;
        }
        let result = match Alerter::new(self.config.clone()) {
            Ok(alerter) => alerter.announce(text).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(r) => {
                report.message = r.events.first().map(|e| e.text(&self.config.host));
                report.delivered_by = r.transport().map(|t| t.as_str().to_owned());
                report.errors = r.errors.iter().map(ToString::to_string).collect();
                report.queued = r.undelivered > 0;
                if report.delivered_by.is_none() {
                    report.problem = Some(format!(
                        "the \"edge installed\" alert was not delivered ({}); it waits in the outbox: fix the \
                         alert settings in {} and run edge install again",
                        report.errors.join("; "),
                        report.settings_file.display()
                    ));
                }
            }
            Err(e) => {
                report.errors.push(e.to_string());
                report.problem = Some(format!("the \"edge installed\" alert could not be sent: {e}"));
            }
        }
    }
}

/// Brings up the interface of every active mesh channel and waits until the host reports it
/// active or `wait` passes; a channel that does not get there is `failed_at_runtime`, with why.
async fn bring_up_meshes(
    node: &Node,
    rendered: &mut RenderedStack,
    wait: Duration,
    runtime_reasons: &mut BTreeMap<String, String>,
    progress: ProgressSink<'_>,
) {
    let stack = node.stack();
    for c in rendered.channels.iter_mut().filter(|c| c.state == ChannelState::Active) {
        let Some((template, iface)) = stack.interface_of(&c.id) else { continue };
        progress(Progress::Step(format!("bring up the {} interface {iface}", c.id)));
        let config = node.paths.config_file(&template.output);
        let started = Instant::now();
        let verdict = match node.mesh.up(iface, &config) {
            Err(e) => Err(e),
            Ok(()) => loop {
                let probe = node.mesh.probe(iface);
                let (state, reason) = judge(iface, &probe, now_secs(), HANDSHAKE_MAX_AGE);
                if state == ChannelState::Active {
                    break Ok(reason);
                }
                if started.elapsed() >= wait {
                    break Err(format!("{reason} after {:.1}s", wait.as_secs_f64()));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            },
        };
        match verdict {
            Ok(reason) => progress(Progress::Note(format!(
                "    {}: {reason} (active {:.1}s after bring-up began)",
                c.id,
                started.elapsed().as_secs_f64()
            ))),
            Err(reason) => {
                c.state = ChannelState::FailedAtRuntime;
                c.reason = Some(reason.clone());
                rendered.status.set(&c.id, ChannelState::FailedAtRuntime);
                runtime_reasons.insert(c.id.clone(), reason);
            }
        }
    }
}

fn outcome(
    name: &str,
    channels: &[ChannelReport],
    services: &BTreeMap<String, Readiness>,
    elapsed: Duration,
) -> (Outcome, String) {
    // A required channel is skipped only while unconfigured (`skip_unconfigured`).
    let failed_required =
        channels.iter().find(|c| c.required && !matches!(c.state, ChannelState::Active | ChannelState::Skipped));
    let failed_optional: Vec<&str> = channels
        .iter()
        .filter(|c| !c.required && matches!(c.state, ChannelState::FailedAtRender | ChannelState::FailedAtRuntime))
        .map(|c| c.id.as_str())
        .collect();
    let failed_service = services.iter().find_map(|(n, r)| match r {
        Readiness::Failed { reason } => Some((n, reason)),
        Readiness::Ready { .. } => None,
    });
    let active: Vec<&str> =
        channels.iter().filter(|c| c.state == ChannelState::Active).map(|c| c.id.as_str()).collect();
    if let Some(c) = failed_required {
        return (
            Outcome::Failure,
            format!(
                "install failed: required channel {} is {}: {}; {}, fix its configuration and run edge install again",
                c.id,
                c.state,
                c.reason.as_deref().unwrap_or("no reason recorded"),
                if c.containers.is_empty() {
                    "it runs on the host: see its interface (wg show) and the peer"
                } else {
                    "see `docker logs` of its container"
                }
            ),
        );
    }
    if let Some((container, reason)) = failed_service {
        return (
            Outcome::Failure,
            format!(
                "install failed: container {container} {reason}; see `docker logs {container}`, fix it and run edge install again"
            ),
        );
    }
    if !failed_optional.is_empty() {
        return (
            Outcome::Degraded,
            format!(
                "done with problems in {:.1}s: {} active ({}); failed and out of the pool: {} (see the reasons above, then run edge install again)",
                elapsed.as_secs_f64(),
                active.len(),
                active.join(", "),
                failed_optional.join(", ")
            ),
        );
    }
    if channels.is_empty() {
        // An app stack: its services are what came up.
        let ready = services.values().filter(|r| r.is_ready()).count();
        return (
            Outcome::Success,
            format!(
                "done in {:.1}s: {name} installed, {ready} service{} ready",
                elapsed.as_secs_f64(),
                if ready == 1 { "" } else { "s" }
            ),
        );
    }
    (
        Outcome::Success,
        format!(
            "done in {:.1}s: {name} installed, {} channel{} active ({})",
            elapsed.as_secs_f64(),
            active.len(),
            if active.len() == 1 { "" } else { "s" },
            active.join(", ")
        ),
    )
}

/// The image overrides in force: the request's, else those the last install (or the backup
/// being restored) recorded. Every one must name a service of the stack.
fn images_to_use(node: &Node, request: &InstallRequest) -> Result<BTreeMap<String, String>, OpError> {
    let images = if request.images.is_empty() {
        let recorded = match &request.restore_from {
            Some(backup) if backup.join("install.env").is_file() => backup.join("install.env"),
            _ => node.paths.install_env(),
        };
        InstallRecord::load_optional(&recorded)?.map(|r| r.images).unwrap_or_default()
    } else {
        request.images.clone()
    };
    for (service, image) in &images {
        if node.stack().service(service).is_none() {
            let known: Vec<&str> = node.stack().services.iter().map(|s| s.name.as_str()).collect();
            return Err(OpError::Image {
                item: format!("{service}={image}"),
                message: format!("the stack has no service {service:?} (it has {})", known.join(", ")),
            });
        }
    }
    Ok(images)
}

/// Variables from every layer but the secrets; the node config's bytes when one was given.
fn variables(paths: &Paths, stack: &Stack, request: &InstallRequest) -> Result<(Variables, Option<Vec<u8>>), OpError> {
    let mut sources = request.variables.clone();
    // A re-run (or a restore) reuses the install parameters recorded last time.
    if let Some(record) = InstallRecord::load_optional(&paths.install_env())? {
        let recorded = [("PARTNER_ID", record.partner_id), ("PARTNER_DOMAIN", record.partner_domain)];
        sources.recorded.extend(recorded.into_iter().filter_map(|(k, v)| Some((k.to_owned(), v?))));
    }
    sources.node_config = Some(match &request.manual_config {
        Some(path) => NodeConfigSource { path: path.clone(), required: true },
        None => NodeConfigSource { path: paths.config_file(NODE_CONFIG), required: false },
    });
    // Rendered files (the compose file's mounts) name the config dir where it really is.
    if !sources.flags.iter().any(|(k, _)| k == "CONFIG_DIR") {
        sources.flags.push(("CONFIG_DIR".to_owned(), paths.config_dir().display().to_string()));
    }
    let (vars, node_config) = sources.build(stack)?;
    Ok((vars, node_config))
}

/// The identity as install uses it.
struct Identity {
    /// Variables the stack's secrets expose to templates.
    vars: BTreeMap<String, String>,
    /// Names of the secrets created now (`SPEC_HASH_KEY` for the spec-hash key).
    created: Vec<String>,
    /// The key of the containers' spec hashes.
    spec_key: SpecHashKey,
}

/// The identity: created once. A dry run creates nothing: missing secrets are generated in a
/// scratch folder so that the templates still render (and a missing spec-hash key plans what
/// a new one would: every container recreated).
fn secrets(
    paths: &Paths,
    stack: &Stack,
    dry_run: bool,
    token: Option<&RegistrationToken>,
) -> Result<Identity, OpError> {
    let ensure = |dir: &Path| -> Result<Identity, OpError> {
        if let Some(token) = token {
            identity::store_token(dir, stack, token)?;
        }
        let ensured = edge_core::secrets::ensure_all(dir, &stack.secrets)?;
        let (spec_key, outcome) = edge_core::secrets::ensure_spec_hash_key(&dir.join(SPEC_HASH_KEY_FILE))?;
        let mut created = ensured.created;
        if outcome == SecretOutcome::Created {
            created.push("SPEC_HASH_KEY".to_owned());
        }
        Ok(Identity { vars: ensured.vars, created, spec_key })
    };
    if !dry_run {
        return ensure(paths.config_dir());
    }
    let scratch = std::env::temp_dir().join(edge_channels::image::unique_name("edge-dry-run"));
    let result = (|| -> Result<_, OpError> {
        std::fs::create_dir_all(&scratch).map_err(|e| OpError::io("create", &scratch, e))?;
        for f in identity::identity_files(stack) {
            let src = paths.config_file(&f);
            if src.is_file() {
                std::fs::copy(&src, scratch.join(&f)).map_err(|e| OpError::io("copy", &src, e))?;
            }
        }
        ensure(&scratch)
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

/// The channels an install with `request` would render, the engine untouched and nothing
/// written (the identity is made in a scratch folder, as a dry run does): adopt's dry run.
pub(crate) fn preview_channels(node: &Node, request: &InstallRequest) -> Result<Vec<ChannelReport>, OpError> {
    let (stack, paths) = (node.stack(), &node.paths);
    let (base, _) = variables(paths, stack, request)?;
    let Identity { vars: secret_vars, .. } = secrets(paths, stack, true, request.token.as_ref())?;
    let vars = base.with_layer(Source::Secret, secret_vars);
    let rendered = Renderer::new(&node.bundle).render_stack(&vars, &BTreeMap::new())?;
    Ok(channel_reports(&rendered, stack, &BTreeMap::new()))
}

/// The containers a rendered stack wants, images overridden as asked.
fn desired(
    rendered: &RenderedStack,
    images: &BTreeMap<String, String>,
    paths: &Paths,
    stack: &Stack,
) -> Result<Vec<Desired>, OpError> {
    let files: BTreeMap<String, RenderedMount> = rendered
        .files
        .iter()
        .filter(|f| !f.is_systemd_unit())
        .map(|f| {
            let mount =
                RenderedMount { host_path: paths.config_file(&f.output), contents: f.contents.as_bytes().to_vec() };
            (f.template.clone(), mount)
        })
        .collect();
    let mut out = Vec::new();
    for s in &rendered.services {
        let mut s = s.clone();
        if let Some(image) = images.get(&s.name) {
            s.image = image.clone();
        }
        let spec = container_spec(&s, &stack.stack, &files)?;
        out.push(Desired::new(s.name.clone(), spec, s.depends_on.clone()));
    }
    Ok(out)
}

/// Writes the rendered set (all or nothing), then hands each file a service mounts to the
/// numeric `uid[:gid]` the service runs as, so a non-root container can read its 0600
/// config and nobody else can.
fn write_rendered(rendered: &RenderedStack, paths: &Paths) -> Result<(), OpError> {
    rendered.write_to(paths.config_dir(), paths.systemd_dir())?;
    for service in &rendered.services {
        let Some((uid, gid)) = service.user.as_deref().and_then(numeric_user) else { continue };
        for mount in &service.files {
            let Some(file) = rendered.files.iter().find(|f| f.template == mount.template) else { continue };
            let path = paths.config_file(&file.output);
            std::os::unix::fs::chown(&path, Some(uid), gid.or(Some(uid)))
                .map_err(|e| OpError::io("hand to the service user", &path, e))?;
        }
    }
    Ok(())
}

/// `1000` or `1000:1000`; a user name cannot be resolved on the host, so it is left alone.
fn numeric_user(user: &str) -> Option<(u32, Option<u32>)> {
    let (uid, gid) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let gid = match gid {
        Some(g) => Some(g.parse().ok()?),
        None => None,
    };
    Some((uid.parse().ok()?, gid))
}

/// A kept service whose in-place config changed, and what to hand it.
struct ConfigReload {
    service: String,
    container: String,
    /// The rendered file's name in the config dir.
    file: String,
    reload: Reload,
    contents: Vec<u8>,
}

/// The services the plan keeps whose in-place config differs from the one `install.env` says
/// they run. A created, recreated or started container reads the file at start instead.
fn config_reloads(
    plan: &edge_channels::Plan,
    rendered: &RenderedStack,
    applied: &BTreeMap<String, String>,
    key: &SpecHashKey,
) -> Vec<ConfigReload> {
    let mut out = Vec::new();
    for action in &plan.actions {
        let Action::Keep { desired, .. } = action else { continue };
        let Some(service) = rendered.services.iter().find(|s| s.name == desired.service) else { continue };
        let Some(reload) = &service.reload else { continue };
        let Some(file) = rendered.files.iter().find(|f| f.template == reload.template) else { continue };
        let contents = file.contents.as_bytes();
        if applied.get(&service.name) != Some(&edge_channels::config_digest(key, contents)) {
            out.push(ConfigReload {
                service: service.name.clone(),
                container: desired.name().to_owned(),
                file: file.output.clone(),
                reload: reload.clone(),
                contents: contents.to_vec(),
            });
        }
    }
    out
}

/// The plan's entries, a kept container that takes its new config in place shown as reloaded.
fn with_reloads(mut entries: Vec<PlanEntry>, reloads: &[ConfigReload]) -> Vec<PlanEntry> {
    for e in &mut entries {
        if let Some(r) = reloads.iter().find(|r| r.container == e.container && e.action == ActionKind::Keep) {
            e.action = ActionKind::Reload;
            e.reason = Some(format!("{} changed: applied in place via {}", r.file, r.reload.via.as_str()));
        }
    }
    entries
}

/// The digest of the in-place config of every service deployed, for `install.env`.
fn config_digests(rendered: &RenderedStack, key: &SpecHashKey) -> BTreeMap<String, String> {
    rendered
        .services
        .iter()
        .filter_map(|s| {
            let reload = s.reload.as_ref()?;
            let file = rendered.files.iter().find(|f| f.template == reload.template)?;
            Some((s.name.clone(), edge_channels::config_digest(key, file.contents.as_bytes())))
        })
        .collect()
}

/// The on-disk contents of every in-place config, by file name, before new ones are written.
fn running_configs(rendered: &RenderedStack, paths: &Paths) -> Result<BTreeMap<String, Vec<u8>>, OpError> {
    let mut out = BTreeMap::new();
    for s in &rendered.services {
        let Some(reload) = &s.reload else { continue };
        let Some(file) = rendered.files.iter().find(|f| f.template == reload.template) else { continue };
        let path = paths.config_file(&file.output);
        match std::fs::read(&path) {
            Ok(bytes) => {
                out.insert(file.output.clone(), bytes);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(OpError::io("read", &path, e)),
        }
    }
    Ok(out)
}

fn service_channel<'a>(stack: &'a Stack, service: &str) -> Option<&'a str> {
    stack.service(service).and_then(|s| s.channel.as_deref())
}

struct Wait<'a> {
    timeout: Duration,
    progress: ProgressSink<'a>,
}

/// Applies one phase of the plan, then waits for those of `phase` it could start;
/// a container that failed to start is recorded as failed rather than waited for.
async fn apply_and_wait<E: Engine>(
    deployer: &Deployer<'_, E>,
    plan: &edge_channels::Plan,
    infra: &Infrastructure,
    phase: Vec<String>,
    wait_step: &str,
    wait: &Wait<'_>,
) -> Result<(Applied, BTreeMap<String, Readiness>), OpError> {
    let on_event = |e| (wait.progress)(Progress::Deploy(e));
    let applied = deployer.apply(plan, infra, wait.timeout, &on_event).await?;
    // A dependency that already failed fails its dependents too: a front proxy probed through
    // an app that never got ready would only use up the whole timeout.
    let failed_services: BTreeSet<&str> = plan
        .actions
        .iter()
        .filter_map(|a| a.desired())
        .filter(|d| {
            applied.failed.contains_key(d.name())
                || matches!(applied.waited.get(d.name()), Some(Readiness::Failed { .. }))
        })
        .map(|d| d.service.as_str())
        .collect();
    let mut readiness = BTreeMap::new();
    let mut waiting = Vec::new();
    for name in phase.into_iter().filter(|name| !applied.failed.contains_key(name)) {
        let desired = plan.action(&name).and_then(|a| a.desired());
        match desired.and_then(|d| d.depends_on.iter().find(|s| failed_services.contains(s.as_str()))) {
            Some(dep) => {
                let reason = format!("not waited for: dependency {dep} is not healthy");
                (wait.progress)(Progress::Deploy(Event::Failed { name: name.clone(), reason: reason.clone() }));
                readiness.insert(name, Readiness::Failed { reason });
            }
            None => waiting.push(name),
        }
    }
    if !waiting.is_empty() {
        (wait.progress)(Progress::Step(wait_step.to_owned()));
    }
    readiness.extend(deployer.wait_ready(&waiting, wait.timeout, &on_event).await);
    for (name, e) in &applied.failed {
        readiness.insert(name.clone(), Readiness::Failed { reason: e.to_string() });
    }
    Ok((applied, readiness))
}

fn listening(desired: &[Desired], vars: &Variables) -> Vec<String> {
    let mut out: Vec<String> = desired
        .iter()
        .flat_map(|d| &d.spec.ports)
        .map(|p| {
            let ip = p.host_ip.as_deref().unwrap_or("0.0.0.0");
            let host = if ip.contains(':') { format!("[{ip}]") } else { ip.to_owned() };
            format!("{host}:{}/{}", p.host_port, p.protocol)
        })
        .collect();
    if let Some(admin) = vars.get("CADDY_ADMIN").filter(|a| !a.is_empty()) {
        out.push(format!("{admin}/tcp"));
    }
    out
}

/// Ports the plan will newly publish must be free; a recreated container frees its own.
fn check_ports(plan: &edge_channels::Plan) -> Result<(), OpError> {
    for action in &plan.actions {
        let Action::Create { desired } = action else { continue };
        for p in &desired.spec.ports {
            let ip = p.host_ip.as_deref().unwrap_or("0.0.0.0");
            let addr = format!("{}:{}", if ip.contains(':') { format!("[{ip}]") } else { ip.to_owned() }, p.host_port);
            let free = match p.protocol.as_str() {
                "udp" => std::net::UdpSocket::bind(&addr).map(drop),
                _ => std::net::TcpListener::bind(&addr).map(drop),
            };
            if let Err(e) = free
                && e.kind() == std::io::ErrorKind::AddrInUse
            {
                return Err(OpError::Preflight(format!(
                    "port {addr}/{} that service {} publishes is in use; free it or set the stack variable that chooses it",
                    p.protocol, desired.service
                )));
            }
        }
    }
    Ok(())
}

/// The config and state dirs' file system must have room for configs, status and backups.
fn check_disk(paths: &Paths) -> Result<(), OpError> {
    let mut dir: &Path = paths.config_dir();
    while !dir.exists() {
        match dir.parent() {
            Some(parent) => dir = parent,
            None => return Ok(()),
        }
    }
    // std has no statvfs; df is everywhere docker is.
    let Ok(out) = std::process::Command::new("df").arg("-Pk").arg(dir).output() else { return Ok(()) };
    let text = String::from_utf8_lossy(&out.stdout);
    let free = text.lines().nth(1).and_then(|l| l.split_whitespace().nth(3)).and_then(|v| v.parse::<u64>().ok());
    match free {
        Some(kib) if kib < MIN_FREE_KIB => Err(OpError::Preflight(format!(
            "only {} MiB free under {}; edge needs at least {} MiB",
            kib / 1024,
            dir.display(),
            MIN_FREE_KIB / 1024
        ))),
        _ => Ok(()),
    }
}

/// Client configs of channels that are no longer configured hold stale credentials: remove them.
fn remove_stale_channel_files(rendered: &RenderedStack, stack: &Stack, paths: &Paths) {
    for t in &stack.templates {
        let Some(channel) = &t.channel else { continue };
        let state = rendered.channels.iter().find(|c| &c.id == channel).map(|c| c.state);
        if matches!(state, Some(ChannelState::Skipped | ChannelState::FailedAtRender)) {
            let _ = std::fs::remove_file(paths.config_file(&t.output));
        }
    }
}

/// On the real root, enables the watchdog timer the render step wrote; under a root prefix
/// the units are only written.
fn install_units(paths: &Paths, rooted: bool, progress: ProgressSink<'_>) {
    let note = |text: String| progress(Progress::Note(text));
    if rooted || !Path::new("/run/systemd/system").is_dir() {
        note(format!("    watchdog units written to {}", paths.systemd_dir().display()));
        return;
    }
    let ok = |args: &[&str]| std::process::Command::new("systemctl").args(args).status().is_ok_and(|s| s.success());
    if ok(&["daemon-reload"]) && ok(&["enable", "--now", "edge-watchdog.timer"]) {
        note("    edge-watchdog.timer enabled".to_owned());
    } else {
        note("    warning: cannot enable edge-watchdog.timer with systemctl; enable it by hand".to_owned());
    }
}

/// Writes the runbook's healthcheck command (0755): `edge healthcheck` with this install's
/// `--root` and `--stack`, so operators' monitors that call it keep working.
fn write_healthcheck(node: &Node, edge_bin: Option<&Path>) -> Result<(), OpError> {
    if let Some(dir) = node.paths.healthcheck_script().parent() {
        std::fs::create_dir_all(dir).map_err(|e| OpError::io("create", dir, e))?;
    }
    edge_core::write_atomic_with_mode(
        node.paths.healthcheck_script(),
        healthcheck_script(node, edge_bin).as_bytes(),
        0o755,
    )?;
    Ok(())
}

/// The wrapper's text.
pub(crate) fn healthcheck_script(node: &Node, edge_bin: Option<&Path>) -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
    let mut command = vec![edge_bin.map_or_else(|| "edge".to_owned(), |b| quote(&b.display().to_string()))];
    if node.rooted {
        command.extend(["--root".to_owned(), quote(&node.paths.root().display().to_string())]);
    }
    // A stack loaded from a folder: its manifest's folder (the embedded one needs no flag).
    if let Some(dir) = Path::new(&node.bundle.origin).parent().filter(|_| !node.bundle.origin.starts_with("embedded:"))
    {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
        command.extend(["--stack".to_owned(), quote(&dir.display().to_string())]);
    }
    format!(
        "#!/bin/sh\n# {name}-healthcheck: written by edge install, removed by edge uninstall.\n\
         # Exit 0 when the node is healthy; edge healthcheck says what is not.\n\
         exec {} healthcheck \"$@\"\n",
        command.join(" "),
        name = node.name(),
    )
}

fn channel_reports(
    rendered: &RenderedStack,
    stack: &Stack,
    runtime_reasons: &BTreeMap<String, String>,
) -> Vec<ChannelReport> {
    rendered
        .channels
        .iter()
        .map(|c| ChannelReport {
            id: c.id.clone(),
            state: c.state,
            required: c.required,
            reason: runtime_reasons.get(&c.id).cloned().or_else(|| c.reason.clone()),
            upstream: c.upstream.clone(),
            containers: stack.services_of(&c.id).map(|s| s.container.clone()).collect(),
            upstream_health: None,
        })
        .collect()
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_users_are_recognised() {
        let check =
            |input: &str, expected: Option<(u32, Option<u32>)>| assert_eq!(numeric_user(input), expected, "{input}");
        check("65532:65532", Some((65532, Some(65532))));
        check("1000", Some((1000, None)));
        check("nonroot", None);
        check("1000:staff", None);
        check("", None);
    }
}
