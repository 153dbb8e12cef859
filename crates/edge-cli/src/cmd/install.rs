//! `edge install`: preflight, render, secrets, deploy, wait for health, status files,
//! summary.
//!
//! Deploying is reconciling: containers whose spec hash (full spec plus the rendered files
//! they mount) and image match are kept, so a re-run on an unchanged stack touches nothing.
//! Channel containers go first; a channel whose container does not become healthy is
//! `failed_at_runtime`, the stack is rendered again without it (its upstream leaves the
//! Caddyfile), and only then are the front proxy and the other services deployed, so Caddy
//! starts with the final pool. The failed container is left in place for `docker logs`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use edge_channels::{
    Action, ActionKind, Applied, Deployer, Desired, DockerEngine, Engine, EngineVersion, Event, Infrastructure,
    PlanEntry, Prober, Readiness, RenderedMount, container_spec, stack_labels,
};
use edge_core::{ChannelState, EnvFile, Paths, Stack, flatten_node_config};
use edge_render::{RenderedStack, Renderer, Source, Variables, parse_fixture};
use serde::Serialize;

use crate::args::InstallArgs;
use crate::identity::{self, NODE_CONFIG};
use crate::observe::{KEY_METRICS_URL, KEY_POOL, encode_pool};
use crate::progress::Progress;
use crate::rt::block_on;
use crate::settings::Settings;
use crate::{ExitStatus, UsageError};

/// Free space the config and state dirs need, in KiB.
const MIN_FREE_KIB: u64 = 50 * 1024;
/// How long install waits for the front proxy to report every pool upstream.
const POOL_WAIT: Duration = Duration::from_secs(30);

pub(crate) fn run(settings: &Settings, args: InstallArgs) -> anyhow::Result<ExitStatus> {
    let stack = &settings.bundle.stack;
    let mut overrides = parse_images(&args.images, stack)?;
    // Bind mounts need absolute host paths, whatever --root was given as.
    let root = match &settings.root {
        Some(r) => Some(std::path::absolute(r).with_context(|| format!("cannot resolve --root {}", r.display()))?),
        None => None,
    };
    let paths = Paths::new(root.as_deref(), &stack.stack);
    // Without --images, a re-run (or a restore) keeps the images the last install used.
    let recorded = match &args.restore_from {
        Some(backup) if backup.join("install.env").is_file() => backup.join("install.env"),
        _ => paths.install_env(),
    };
    if args.images.is_empty()
        && let Ok(env) = EnvFile::load(&recorded)
        && let Some(images) = env.get("IMAGES")
    {
        let items: Vec<String> = images.split(',').map(str::to_owned).collect();
        overrides = parse_images(&items, stack).context("the IMAGES recorded in install.env")?;
    }
    let progress = Progress::new();
    block_on(install(settings, &paths, &args, &overrides, &progress))?
}

/// One channel in the result.
#[derive(Debug, Serialize)]
struct ChannelReport {
    id: String,
    state: ChannelState,
    required: bool,
    reason: Option<String>,
    upstream: Option<String>,
    containers: Vec<String>,
    upstream_health: Option<String>,
}

/// The result, as `--json` prints it.
#[derive(Debug, Serialize)]
struct Report {
    stack: String,
    dry_run: bool,
    ok: bool,
    status: &'static str,
    engine: EngineVersion,
    channels: Vec<ChannelReport>,
    services: BTreeMap<String, Readiness>,
    plan: Vec<PlanEntry>,
    identity_created: Vec<String>,
    restored: Vec<PathBuf>,
    status_file: Option<PathBuf>,
    install_env: Option<PathBuf>,
    summary: Vec<String>,
    duration_ms: u64,
    message: String,
}

async fn install(
    settings: &Settings,
    paths: &Paths,
    args: &InstallArgs,
    overrides: &BTreeMap<String, String>,
    progress: &Progress,
) -> anyhow::Result<ExitStatus> {
    let started = Instant::now();
    let stack = &settings.bundle.stack;
    let name = &stack.stack.name;
    let on_event = |e: Event| progress.event(e);

    // Preflight: nothing is written before the engine answers.
    progress.step("preflight");
    let engine = DockerEngine::connect().await?;
    let version = engine.version().await?;
    progress
        .line(&format!("    docker engine {} (API {}) at {}", version.version, version.api_version, version.endpoint));
    check_disk(paths)?;

    let mut restored = Vec::new();
    if let Some(from) = &args.restore_from {
        if args.dry_run {
            progress.line(&format!("    would restore the identity from {}", from.display()));
        } else {
            progress.step(&format!("restoring the identity from {}", from.display()));
            restored = identity::restore(paths, stack, from)?;
        }
    }

    let (base, node_config) = variables(paths, stack, args)?;
    let (secret_vars, identity_created) = secrets(paths, stack, args.dry_run)?;
    let vars = base.with_layer(Source::Secret, secret_vars);

    progress.step("render");
    // Overrides go into the manifest, so the rendered compose file names the same images.
    let mut bundle = settings.bundle.clone();
    for s in &mut bundle.stack.services {
        if let Some(image) = overrides.get(&s.name) {
            s.image = image.clone();
        }
    }
    let renderer = Renderer::new(&bundle);
    let first = renderer.render_stack(&vars, &BTreeMap::new()).map_err(|e| UsageError(e.to_string()))?;
    for c in &first.channels {
        let why = c.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
        progress.line(&format!("    {}: {}{why}", c.id, c.state));
    }
    let desired_first = desired(&first, overrides, paths, stack)?;
    let deployer = Deployer::new(&engine);
    let plan = deployer.plan(name, desired_first.clone()).await?;
    check_ports(&plan)?;

    if args.dry_run {
        let report = Report {
            stack: name.clone(),
            dry_run: true,
            ok: true,
            status: "dry_run",
            engine: version,
            channels: channel_reports(&first, stack, &BTreeMap::new()),
            services: BTreeMap::new(),
            plan: plan.entries(),
            identity_created,
            restored,
            status_file: None,
            install_env: None,
            summary: first.summary.clone(),
            duration_ms: started.elapsed().as_millis() as u64,
            message: "dry run: nothing was changed".to_owned(),
        };
        print_report(&report, args.json)?;
        return Ok(ExitStatus::Success);
    }

    progress.step("write configs");
    paths.ensure_dirs().with_context(|| format!("cannot create {}", paths.config_dir().display()))?;
    if let Some((bytes, _)) = &node_config {
        edge_core::write_atomic_with_mode(&paths.config_file(NODE_CONFIG), bytes, 0o600)?;
    }
    first.write_to(paths.config_dir(), paths.systemd_dir())?;
    grant_mounts_to_service_users(&first, paths)?;

    // Channels first: their health decides the pool.
    progress.step("deploy channels");
    let infra = Infrastructure { labels: stack_labels(&stack.stack) };
    let mut executed: Vec<PlanEntry> = Vec::new();
    let channel_plan = edge_channels::Plan {
        actions: plan
            .actions
            .iter()
            .filter(|a| a.desired().is_none_or(|d| service_channel(stack, &d.service).is_some()))
            .cloned()
            .collect(),
    };
    executed.extend(channel_plan.entries().into_iter().filter(|e| e.action != ActionKind::Keep));
    let channel_containers =
        desired_first.iter().filter(|d| service_channel(stack, &d.service).is_some()).map(|d| d.name().to_owned());
    let (applied, mut readiness) = apply_and_wait(
        &deployer,
        &channel_plan,
        &infra,
        channel_containers.collect(),
        "wait for channel health",
        progress,
        args.health_timeout,
        &on_event,
    )
    .await?;

    let mut forced: BTreeMap<String, ChannelState> = BTreeMap::new();
    let mut runtime_reasons: BTreeMap<String, String> = BTreeMap::new();
    for d in &desired_first {
        let Some(channel) = service_channel(stack, &d.service) else { continue };
        if let Some(Readiness::Failed { reason }) = readiness.get(d.name()) {
            forced.insert(channel.to_owned(), ChannelState::FailedAtRuntime);
            runtime_reasons.insert(channel.to_owned(), format!("container {} {}", d.name(), reason));
        }
    }
    let rendered = if forced.is_empty() {
        first
    } else {
        progress.step(&format!("render again without {}", forced.keys().cloned().collect::<Vec<_>>().join(", ")));
        let again = renderer.render_stack(&vars, &forced).map_err(|e| UsageError(e.to_string()))?;
        again.write_to(paths.config_dir(), paths.systemd_dir())?;
        grant_mounts_to_service_users(&again, paths)?;
        again
    };
    remove_stale_channel_files(&rendered, stack, paths);

    // The rest, with the final pool; failed channel containers stay as they are.
    progress.step("deploy services");
    let mut desired_final = desired(&rendered, overrides, paths, stack)?;
    for d in &desired_first {
        let failed_channel = service_channel(stack, &d.service).is_some_and(|c| forced.contains_key(c));
        if failed_channel && !applied.failed.contains_key(d.name()) {
            desired_final.push(d.clone());
        }
    }
    let plan_final = deployer.plan(name, desired_final.clone()).await?;
    executed.extend(plan_final.entries().into_iter().filter(|e| e.action != ActionKind::Keep));
    let others =
        desired_final.iter().filter(|d| service_channel(stack, &d.service).is_none()).map(|d| d.name().to_owned());
    let (_, service_readiness) = apply_and_wait(
        &deployer,
        &plan_final,
        &infra,
        others.collect(),
        "wait for service health",
        progress,
        args.health_timeout,
        &on_event,
    )
    .await?;
    readiness.extend(service_readiness.clone());

    // The front proxy's view of the pool.
    let pool: Vec<(String, String)> = rendered.pool.iter().map(|m| (m.channel.clone(), m.upstream.clone())).collect();
    let metrics_url = vars.get("CADDY_ADMIN").filter(|a| !a.is_empty()).map(|a| format!("http://{a}/metrics"));
    let pool_health = match &metrics_url {
        Some(url) if !pool.is_empty() => {
            progress.step("wait for the front proxy's pool");
            wait_pool(url, &pool, progress).await
        }
        _ => BTreeMap::new(),
    };

    progress.step("write status");
    let status_file = paths.channels_status();
    rendered.status.save(&status_file)?;
    let install_env = paths.install_env();
    write_install_env(&install_env, settings, paths, &vars, &rendered, overrides, metrics_url.as_deref())?;
    install_units(paths, settings.root.is_some(), progress);

    // Outcome.
    let mut channels = channel_reports(&rendered, stack, &runtime_reasons);
    for c in &mut channels {
        c.upstream_health = c.upstream.as_ref().and_then(|u| pool_health.get(u).cloned());
    }
    let failed_required: Vec<&ChannelReport> =
        channels.iter().filter(|c| c.required && c.state != ChannelState::Active).collect();
    let failed_optional: Vec<&ChannelReport> = channels
        .iter()
        .filter(|c| !c.required && matches!(c.state, ChannelState::FailedAtRender | ChannelState::FailedAtRuntime))
        .collect();
    let failed_services: Vec<(&String, String)> = service_readiness
        .iter()
        .filter_map(|(n, r)| match r {
            Readiness::Failed { reason } => Some((n, reason.clone())),
            Readiness::Ready { .. } => None,
        })
        .collect();
    let active: Vec<&str> =
        channels.iter().filter(|c| c.state == ChannelState::Active).map(|c| c.id.as_str()).collect();
    let elapsed = started.elapsed();
    let (status, message) = if let Some(c) = failed_required.first() {
        (
            ExitStatus::Failure,
            format!(
                "install failed: required channel {} is {}: {}; see `docker logs` of its container, fix its configuration and run edge install again",
                c.id,
                c.state,
                c.reason.as_deref().unwrap_or("no reason recorded")
            ),
        )
    } else if let Some((container, reason)) = failed_services.first() {
        (
            ExitStatus::Failure,
            format!(
                "install failed: container {container} {reason}; see `docker logs {container}`, fix it and run edge install again"
            ),
        )
    } else if !failed_optional.is_empty() {
        let ids: Vec<&str> = failed_optional.iter().map(|c| c.id.as_str()).collect();
        (
            ExitStatus::Degraded,
            format!(
                "done with problems in {:.1}s: {} active ({}); failed and out of the pool: {} (see the reasons above, then run edge install again)",
                elapsed.as_secs_f64(),
                active.len(),
                active.join(", "),
                ids.join(", ")
            ),
        )
    } else {
        (
            ExitStatus::Success,
            format!(
                "done in {:.1}s: {} installed, {} channel{} active ({})",
                elapsed.as_secs_f64(),
                name,
                active.len(),
                if active.len() == 1 { "" } else { "s" },
                active.join(", ")
            ),
        )
    };
    let report = Report {
        stack: name.clone(),
        dry_run: false,
        ok: status != ExitStatus::Failure,
        status: match status {
            ExitStatus::Success => "success",
            ExitStatus::Degraded => "degraded",
            _ => "failure",
        },
        engine: version,
        channels,
        services: service_readiness,
        plan: executed,
        identity_created,
        restored,
        status_file: Some(status_file),
        install_env: Some(install_env),
        summary: rendered.summary.clone(),
        duration_ms: elapsed.as_millis() as u64,
        message: message.clone(),
    };
    print_report(&report, args.json)?;
    if status == ExitStatus::Failure {
        bail!("{message}");
    }
    Ok(status)
}

/// `--images SERVICE=IMAGE` pairs, checked against the stack's services.
fn parse_images(items: &[String], stack: &Stack) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for item in items.iter().map(|i| i.trim()).filter(|i| !i.is_empty()) {
        let Some((service, image)) = item.split_once('=').filter(|(s, i)| !s.is_empty() && !i.is_empty()) else {
            return Err(UsageError(format!("--images {item:?}: expected SERVICE=IMAGE")).into());
        };
        if stack.service(service.trim()).is_none() {
            let known: Vec<&str> = stack.services.iter().map(|s| s.name.as_str()).collect();
            return Err(UsageError(format!(
                "--images {item:?}: the stack has no service {service:?} (it has {})",
                known.join(", ")
            ))
            .into());
        }
        out.insert(service.trim().to_owned(), image.trim().to_owned());
    }
    Ok(out)
}

type NodeConfig = Option<(Vec<u8>, PathBuf)>;

/// Variables from every layer but the secrets: stack defaults, the previous install's
/// parameters, node-config.json, the fixture, the environment, the flags.
fn variables(paths: &Paths, stack: &Stack, args: &InstallArgs) -> anyhow::Result<(Variables, NodeConfig)> {
    let mut vars = Variables::new(&stack.variables);
    // A re-run (or a restore) reuses the install parameters recorded last time.
    if let Ok(env) = EnvFile::load(&paths.install_env()) {
        let keep = ["PARTNER_ID", "PARTNER_DOMAIN"];
        let pairs = env.iter().filter(|(k, _)| keep.contains(k)).map(|(k, v)| (k.to_owned(), v.to_owned()));
        vars = vars.with_layer(Source::NodeConfig, pairs.collect::<Vec<_>>());
    }
    let node_config_path = match &args.manual_config {
        Some(p) => Some(p.clone()),
        None => Some(paths.config_file(NODE_CONFIG)).filter(|p| p.is_file()),
    };
    let mut node_config = None;
    if let Some(path) = node_config_path {
        let bytes =
            std::fs::read(&path).map_err(|e| UsageError(format!("cannot read node config {}: {e}", path.display())))?;
        let text = String::from_utf8_lossy(&bytes);
        let flat = flatten_node_config(&text, &path).map_err(|e| UsageError(e.to_string()))?;
        vars = vars.with_layer(Source::NodeConfig, flat);
        if args.manual_config.is_some() {
            node_config = Some((bytes, path));
        }
    }
    if let Some(path) = &args.vars.fixture {
        let text = std::fs::read_to_string(path)
            .map_err(|e| UsageError(format!("cannot read fixture {}: {e}", path.display())))?;
        let pairs = parse_fixture(&text).map_err(|e| UsageError(format!("{}: {e}", path.display())))?;
        vars = vars.with_layer(Source::Fixture, pairs);
    }
    vars = vars.with_layer(Source::Environment, std::env::vars().filter(|(k, _)| is_var_name(k)));
    let mut flags = Vec::new();
    for item in &args.vars.set {
        let Some((k, v)) = item.split_once('=').filter(|(k, _)| is_var_name(k)) else {
            return Err(UsageError(format!("--set {item:?}: expected KEY=VALUE")).into());
        };
        flags.push((k.to_owned(), v.to_owned()));
    }
    if let Some(id) = &args.partner_id {
        flags.push(("PARTNER_ID".to_owned(), id.clone()));
    }
    if let Some(domain) = &args.domain {
        flags.push(("PARTNER_DOMAIN".to_owned(), domain.clone()));
    }
    // Rendered files (the compose file's mounts) name the config dir where it really is.
    if !flags.iter().any(|(k, _)| k == "CONFIG_DIR") {
        flags.push(("CONFIG_DIR".to_owned(), paths.config_dir().display().to_string()));
    }
    Ok((vars.with_layer(Source::Flag, flags), node_config))
}

fn is_var_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The identity: created once. A dry run creates nothing: missing secrets are generated in a
/// scratch folder so that the templates still render.
fn secrets(paths: &Paths, stack: &Stack, dry_run: bool) -> anyhow::Result<(BTreeMap<String, String>, Vec<String>)> {
    if !dry_run {
        let ensured = edge_core::secrets::ensure_all(paths.config_dir(), &stack.secrets)?;
        return Ok((ensured.vars, ensured.created));
    }
    let scratch = std::env::temp_dir().join(edge_channels::image::unique_name("edge-dry-run"));
    let result = (|| -> anyhow::Result<_> {
        std::fs::create_dir_all(&scratch)?;
        for f in identity::identity_files(stack) {
            let src = paths.config_file(&f);
            if src.is_file() {
                std::fs::copy(&src, scratch.join(&f))?;
            }
        }
        let ensured = edge_core::secrets::ensure_all(&scratch, &stack.secrets)?;
        Ok((ensured.vars, ensured.created))
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

/// The containers a rendered stack wants, images overridden as asked.
fn desired(
    rendered: &RenderedStack,
    overrides: &BTreeMap<String, String>,
    paths: &Paths,
    stack: &Stack,
) -> anyhow::Result<Vec<Desired>> {
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
        if let Some(image) = overrides.get(&s.name) {
            s.image = image.clone();
        }
        let spec = container_spec(&s, &stack.stack, &files)?;
        out.push(Desired::new(s.name.clone(), spec, s.depends_on.clone()));
    }
    Ok(out)
}

/// Hands each rendered file a service mounts to the numeric `uid[:gid]` the service
/// runs as, so a non-root container can read its 0600 config and nobody else can.
fn grant_mounts_to_service_users(rendered: &RenderedStack, paths: &Paths) -> anyhow::Result<()> {
    for service in &rendered.services {
        let Some((uid, gid)) = service.user.as_deref().and_then(numeric_user) else { continue };
        for mount in &service.files {
            let Some(file) = rendered.files.iter().find(|f| f.template == mount.template) else { continue };
            let path = paths.config_file(&file.output);
            std::os::unix::fs::chown(&path, Some(uid), gid.or(Some(uid)))
                .with_context(|| format!("cannot hand {} to user {uid} of service {}", path.display(), service.name))?;
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

fn service_channel<'a>(stack: &'a Stack, service: &str) -> Option<&'a str> {
    stack.service(service).and_then(|s| s.channel.as_deref())
}

/// Applies one phase of the plan, then waits for those of `phase` it could start;
/// a container that failed to start is recorded as failed rather than waited for.
#[allow(clippy::too_many_arguments)]
async fn apply_and_wait<E: Engine>(
    deployer: &Deployer<'_, E>,
    plan: &edge_channels::Plan,
    infra: &Infrastructure,
    phase: Vec<String>,
    wait_step: &str,
    progress: &Progress,
    timeout: Duration,
    on_event: &(dyn Fn(Event) + Send + Sync),
) -> anyhow::Result<(Applied, BTreeMap<String, Readiness>)> {
    let applied = deployer.apply(plan, infra, timeout, on_event).await?;
    let waiting: Vec<String> = phase.into_iter().filter(|name| !applied.failed.contains_key(name)).collect();
    if !waiting.is_empty() {
        progress.step(wait_step);
    }
    let mut readiness = deployer.wait_ready(&waiting, timeout, on_event).await;
    for (name, e) in &applied.failed {
        readiness.insert(name.clone(), Readiness::Failed { reason: e.to_string() });
    }
    Ok((applied, readiness))
}

/// Ports the plan will newly publish must be free; a recreated container frees its own.
fn check_ports(plan: &edge_channels::Plan) -> anyhow::Result<()> {
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
                bail!(
                    "preflight: port {addr}/{} that service {} publishes is in use; free it or set the stack variable that chooses it",
                    p.protocol,
                    desired.service
                );
            }
        }
    }
    Ok(())
}

/// The config and state dirs' file system must have room for configs, status and backups.
fn check_disk(paths: &Paths) -> anyhow::Result<()> {
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
        Some(kib) if kib < MIN_FREE_KIB => bail!(
            "preflight: only {} MiB free under {}; edge needs at least {} MiB",
            kib / 1024,
            dir.display(),
            MIN_FREE_KIB / 1024
        ),
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

/// Polls Caddy's metrics until every pool upstream has a healthy series, at most [`POOL_WAIT`];
/// returns each upstream's last seen health (`unknown` without a series).
async fn wait_pool(url: &str, pool: &[(String, String)], progress: &Progress) -> BTreeMap<String, String> {
    let Ok(prober) = Prober::new(Duration::from_secs(3)) else { return BTreeMap::new() };
    let started = Instant::now();
    let label = "front proxy pool";
    loop {
        let (health, state) = match prober.fetch_text(url).await {
            Ok(text) => {
                let parsed = edge_alerts::UpstreamMetrics::parse(&text);
                let health: BTreeMap<String, String> = pool
                    .iter()
                    .map(|(_, u)| {
                        let word = match parsed.health.get(u) {
                            Some(edge_core::UpstreamHealth::Healthy) => "healthy",
                            Some(edge_core::UpstreamHealth::Unhealthy) => "unhealthy",
                            None => "unknown",
                        };
                        (u.clone(), word.to_owned())
                    })
                    .collect();
                let state = health.iter().map(|(u, h)| format!("{u} {h}")).collect::<Vec<_>>().join(", ");
                (health, state)
            }
            Err(edge_channels::Health::Unhealthy { reason }) => {
                (pool.iter().map(|(_, u)| (u.clone(), "unknown".to_owned())).collect(), format!("metrics: {reason}"))
            }
            Err(edge_channels::Health::Healthy) => (BTreeMap::new(), String::new()),
        };
        if health.values().all(|h| h == "healthy") {
            progress.done(label, &state, true);
            return health;
        }
        if started.elapsed() >= POOL_WAIT {
            progress.done(label, &format!("not all healthy after {}s: {state}", POOL_WAIT.as_secs()), false);
            return health;
        }
        progress.waiting(label, &state, started.elapsed());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn write_install_env(
    path: &Path,
    settings: &Settings,
    paths: &Paths,
    vars: &Variables,
    rendered: &RenderedStack,
    overrides: &BTreeMap<String, String>,
    metrics_url: Option<&str>,
) -> anyhow::Result<()> {
    let mut env = EnvFile::default();
    for key in ["PARTNER_ID", "PARTNER_DOMAIN"] {
        if let Some(v) = vars.get(key) {
            env.set(key, v);
        }
    }
    let pool: Vec<(String, String)> = rendered.pool.iter().map(|m| (m.channel.clone(), m.upstream.clone())).collect();
    env.set("TUNNEL", &pool.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>().join(","));
    env.set("STACK", &settings.bundle.stack.stack.name);
    env.set("STACK_ORIGIN", &settings.bundle.origin);
    if settings.root.is_some() {
        env.set("EDGE_ROOT", &paths.root().display().to_string());
    }
    env.set(KEY_POOL, &encode_pool(&pool));
    if let Some(url) = metrics_url {
        env.set(KEY_METRICS_URL, url);
    }
    if !overrides.is_empty() {
        env.set("IMAGES", &overrides.iter().map(|(s, i)| format!("{s}={i}")).collect::<Vec<_>>().join(","));
    }
    env.set("EDGE_VERSION", env!("CARGO_PKG_VERSION"));
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    env.set("INSTALLED_AT", &now.to_string());
    env.save(path, 0o644)?;
    Ok(())
}

/// On the real root, enables the watchdog timer the render step wrote; under `--root` the
/// units are only written.
fn install_units(paths: &Paths, rooted: bool, progress: &Progress) {
    if rooted || !Path::new("/run/systemd/system").is_dir() {
        progress.line(&format!("    watchdog units written to {}", paths.systemd_dir().display()));
        return;
    }
    let ok = |args: &[&str]| std::process::Command::new("systemctl").args(args).status().is_ok_and(|s| s.success());
    if ok(&["daemon-reload"]) && ok(&["enable", "--now", "edge-watchdog.timer"]) {
        progress.line("    edge-watchdog.timer enabled");
    } else {
        progress.line("    warning: cannot enable edge-watchdog.timer with systemctl; enable it by hand");
    }
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

fn print_report(report: &Report, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    if report.dry_run {
        println!("plan for {} (dry run, nothing changed):", report.stack);
    } else if !report.plan.is_empty() {
        println!("changes:");
    }
    let mut kinds: BTreeSet<ActionKind> = BTreeSet::new();
    for e in &report.plan {
        kinds.insert(e.action);
        let why = e.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
        let image = e.image.as_deref().map(|i| format!(" [{i}]")).unwrap_or_default();
        println!("  {:<8} {}{image}{why}", e.action.as_str(), e.container);
    }
    if !report.dry_run && report.plan.is_empty() {
        println!("no changes: every container matches its spec");
    }
    println!("channels:");
    for c in &report.channels {
        let mut line = format!("  {:<10} {}", c.id, c.state);
        if let (Some(u), ChannelState::Active) = (&c.upstream, c.state) {
            line.push_str(&format!("  upstream {u}"));
            if let Some(h) = &c.upstream_health {
                line.push_str(&format!(" ({h})"));
            }
        }
        if let Some(r) = &c.reason {
            line.push_str(&format!("  — {r}"));
        }
        println!("{line}");
    }
    for (container, r) in &report.services {
        if let Readiness::Failed { reason } = r {
            println!("  service container {container}: {reason}");
        }
    }
    if !report.dry_run {
        for line in report.summary.iter().take_while(|l| !report.channels.iter().any(|c| l.starts_with(&c.id))) {
            println!("{line}");
        }
        if !report.identity_created.is_empty() {
            println!("identity created: {}", report.identity_created.join(", "));
        }
    }
    println!("{}", report.message);
    Ok(())
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

    #[test]
    fn image_overrides_are_checked() {
        let stack = Stack::partner_edge();
        let check = |items: &[&str], expected: Result<&[(&str, &str)], &str>| {
            let items: Vec<String> = items.iter().map(|s| (*s).to_owned()).collect();
            match (parse_images(&items, &stack), expected) {
                (Ok(got), Ok(want)) => assert_eq!(
                    got,
                    want.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect::<BTreeMap<_, _>>()
                ),
                (Err(e), Err(want)) => assert_eq!(e.to_string(), want),
                (got, want) => panic!("{items:?}: got {got:?}, want {want:?}"),
            }
        };
        check(
            &["caddy=edge-caddy:dev", " xray=edge-standin:dev "],
            Ok(&[("caddy", "edge-caddy:dev"), ("xray", "edge-standin:dev")]),
        );
        check(&["caddy"], Err("--images \"caddy\": expected SERVICE=IMAGE"));
        check(
            &["web=x"],
            Err(
                "--images \"web=x\": the stack has no service \"web\" (it has caddy, xray, hysteria2, naive, coturn, sfu)",
            ),
        );
    }
}
