//! `edge adopt`: taking over a host the legacy bash installer set up, keeping every volume.
//!
//! Detection ([`detect`]) finds what the legacy installer left: the stack's container names
//! held by containers without edge's labels, its state files, and its health-report units.
//! Adoption is computed as a plan (data, printed by `--dry-run`) and applied step by step:
//! per legacy container, stop it, copy each of its volumes whose path the manifest mounts
//! from a named volume into that volume (an anonymous Caddy `/data` becomes the stack's named
//! one), copy each anonymous volume at a path the manifest does not mount (a Caddy's `/config`)
//! into a named volume of its own ([`adopted_volume_name`], labelled with the stack and where it
//! came from), so that no `docker volume prune` of a dangling anonymous volume loses it, and
//! rename it aside (`NAME-legacy`); then install; then remove the containers set aside and the
//! legacy units.
//!
//! Every step done is recorded in a journal in the state dir (atomically, under the state
//! lock), so a re-run after a crash at any point resumes and converges: a copy is never
//! repeated once recorded (the new container may have written since), a container is only
//! removed once its data is in the named volume and the stack runs, and removal never
//! deletes a volume. A second adoption finds nothing to do.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use edge_channels::{ContainerInfo, Engine, Mount, MountKind};
use edge_core::{InstallRecord, StateLock};
use serde::Serialize;

use crate::install::{ChannelReport, InstallReport, InstallRequest, install_unchecked};
use crate::progress::{Progress, ProgressSink};
use crate::{Node, OpError};

/// The legacy installer's units, removed by adoption: its watchdog (one watchdog per host), and
/// the boot service and daily refresh that re-ran the bash installer, which would recreate the
/// containers edge now owns. Timers go before the services they start.
pub const LEGACY_UNITS: [&str; 5] = [
    "oxpulse-channels-health-report.timer",
    "oxpulse-channels-health-report.service",
    "oxpulse-partner-edge-refresh.timer",
    "oxpulse-partner-edge-refresh.service",
    "oxpulse-partner-edge.service",
];

/// Where adoption keeps a copy of each legacy unit file it removes, in the state dir.
pub const LEGACY_UNITS_DIR: &str = "legacy-units";

/// The journal of an adoption, in the state dir.
pub const JOURNAL_FILE: &str = "adopt.journal";

/// The label of a volume adoption made for an anonymous volume the stack does not mount:
/// `CONTAINER:PATH`, where it was mounted.
pub const LABEL_ADOPTED_FROM: &str = "edge.adopted-from";

/// The label naming the anonymous volume such a volume's data came from.
pub const LABEL_ADOPTED_VOLUME: &str = "edge.adopted-volume";

/// The named volume that keeps a legacy container's anonymous volume at a path the stack
/// does not mount: `<stack>_adopted-<container>-<path>` (`/config` → `config`,
/// `/var/lib/x` → `var-lib-x`; characters a volume name cannot hold become `-`).
pub fn adopted_volume_name(stack: &str, container: &str, target: &str) -> String {
    let path: String = target
        .trim_matches('/')
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') { c } else { '-' })
        .collect();
    let path = if path.is_empty() { "root".to_owned() } else { path };
    format!("{stack}_adopted-{container}-{path}")
}

/// What a legacy container is renamed to while the stack takes its name.
pub fn aside_name(container: &str) -> String {
    format!("{container}-legacy")
}

/// The journal's last line once an adoption has finished.
const COMPLETE: &str = "complete";

/// What the legacy installer left on this host.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LegacyHost {
    /// The stack's containers not made by edge (or set aside by an unfinished adoption).
    pub containers: Vec<LegacyContainer>,
    /// The legacy installer's units present in the systemd dir.
    pub units: Vec<PathBuf>,
    /// State files the legacy installer wrote (kept as they are: edge reads them).
    pub state_files: Vec<PathBuf>,
    /// Identity files in the config dir (kept as they are).
    pub identity_files: Vec<PathBuf>,
    /// An adoption started and not finished: its journal.
    pub unfinished: Option<PathBuf>,
}

impl LegacyHost {
    /// Whether an adoption has anything to do (install refuses then).
    pub fn needs_adoption(&self) -> bool {
        !self.containers.is_empty() || !self.units.is_empty() || self.unfinished.is_some()
    }

    /// What was found, in a few words: `containers oxpulse-partner-caddy, … not made by edge; unit …`.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if !self.containers.is_empty() {
            let names: Vec<&str> = self.containers.iter().map(|c| c.current_name.as_str()).collect();
            parts.push(format!("containers {} not made by edge", names.join(", ")));
        }
        for unit in &self.units {
            parts.push(format!("legacy unit {}", unit.display()));
        }
        if let Some(journal) = &self.unfinished {
            parts.push(format!("an unfinished adoption ({})", journal.display()));
        }
        parts.join("; ")
    }
}

/// A container of the stack's name that edge did not create.
#[derive(Debug, Clone, Serialize)]
pub struct LegacyContainer {
    /// The stack's name for it.
    pub name: String,
    /// The name it has now: [`LegacyContainer::name`], or [`aside_name`] once set aside.
    pub current_name: String,
    /// The manifest's service.
    pub service: String,
    /// The image it runs (the helper image of its volume copies).
    pub image: String,
    /// Volumes whose data goes into a named volume of the stack: the one the manifest mounts
    /// at the same path, or for an anonymous volume at a path it does not mount, one of its
    /// own ([`VolumeCopy::mounted`] is then `false`).
    pub copies: Vec<VolumeCopy>,
    /// Volumes kept as they are: the stack mounts the same named volume at that path.
    pub kept_volumes: Vec<Mount>,
    /// Named volumes at paths the stack mounts nothing at: they stay on the engine as they
    /// are, unmounted (never deleted), for the operator to look at.
    pub unmounted: Vec<Mount>,
    /// Host paths it mounts: kept (nothing under them is touched).
    pub binds: Vec<Mount>,
}

/// One volume carried into a named volume of the stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumeCopy {
    /// The legacy volume (an anonymous one's 64-hex name, or a named one).
    pub from: String,
    /// Whether it is anonymous.
    pub anonymous: bool,
    /// The stack's named volume.
    pub to: String,
    /// The path the legacy volume is mounted at (and the stack's, when it is mounted).
    pub target: String,
    /// Whether the stack mounts [`VolumeCopy::to`] at that path; `false`: an anonymous volume
    /// at a path the manifest does not mount, kept in a named volume of its own, labelled
    /// [`LABEL_ADOPTED_FROM`].
    pub mounted: bool,
}

/// One step of an adoption.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum AdoptStep {
    /// Stop the legacy container (so its data is still) and copy a volume into the stack's.
    CopyVolume {
        /// The legacy container.
        container: String,
        /// The copy.
        copy: VolumeCopy,
    },
    /// Stop the legacy container and rename it aside, freeing its name for the stack.
    SetAside {
        /// Its name.
        container: String,
        /// The name it gets.
        aside: String,
    },
    /// Install the stack (creates its containers on the named volumes).
    Install,
    /// Remove a legacy container set aside (its volumes stay on the engine).
    RemoveLegacy {
        /// Its name now.
        container: String,
    },
    /// Disable and remove a legacy unit.
    RemoveUnit {
        /// The unit file.
        path: PathBuf,
    },
}

impl AdoptStep {
    /// Its journal line (also its one-line description).
    pub fn key(&self) -> String {
        match self {
            Self::CopyVolume { container, copy } => {
                format!("copy-volume {container} {} {} -> {}", copy.target, copy.from, copy.to)
            }
            Self::SetAside { container, aside } => format!("set-aside {container} -> {aside}"),
            Self::Install => "install".to_owned(),
            Self::RemoveLegacy { container } => format!("remove-container {container}"),
            Self::RemoveUnit { path } => format!("remove-unit {}", path.display()),
        }
    }
}

/// What to adopt and how.
#[derive(Debug, Clone, Default)]
pub struct AdoptRequest {
    /// The install run as the adoption's install step (its `dry_run` is ignored).
    pub install: InstallRequest,
    /// Plan only: change nothing.
    pub dry_run: bool,
    /// A test hook: stop with [`OpError::AdoptStopped`] after this many steps, as a crash
    /// there would (the CLI reads it from `EDGE_ADOPT_STOP_AFTER`).
    pub stop_after: Option<usize>,
}

/// How an adoption ended.
#[derive(Debug, Clone, Serialize)]
pub struct AdoptReport {
    /// The stack.
    pub stack: String,
    /// Only planned.
    pub dry_run: bool,
    /// What was found.
    pub legacy: LegacyHost,
    /// The steps still to do when it started, in order (a dry run: what would happen).
    pub steps: Vec<AdoptStep>,
    /// Steps a previous, interrupted run already did.
    pub resumed: Vec<String>,
    /// The install step's report, if it ran.
    pub install: Option<InstallReport>,
    /// A dry run: the channels the install step would render (an optional channel whose
    /// credentials are missing is skipped, and its legacy container removed with the rest).
    pub channels: Vec<ChannelReport>,
    /// A dry run: legacy containers whose channel the install would not run, with why.
    pub dropped: Vec<String>,
    /// The journal.
    pub journal: PathBuf,
    /// Nothing was legacy: nothing changed.
    pub noop: bool,
    /// One line saying how it ended.
    pub message: String,
}

/// Whether a container carries none of edge's labels.
fn unlabelled(c: &ContainerInfo) -> bool {
    c.stack().is_none() && c.spec_hash().is_none()
}

/// The journal's lines; none if there is no journal.
fn read_journal(path: &Path) -> Result<Vec<String>, OpError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text.lines().map(str::to_owned).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(OpError::io("read", path, e)),
    }
}

/// Records `line` as done: read, append, write atomically, under the state lock.
fn record(node: &Node, line: &str, fresh: bool) -> Result<(), OpError> {
    let path = node.paths.state_dir().join(JOURNAL_FILE);
    let _lock = StateLock::acquire(&node.paths)?;
    let mut lines = if fresh { Vec::new() } else { read_journal(&path)? };
    lines.push(line.to_owned());
    edge_core::write_atomic_with_mode(&path, format!("{}\n", lines.join("\n")).as_bytes(), 0o644)?;
    Ok(())
}

/// Finds what the legacy installer left on this host.
pub async fn detect<E: Engine>(engine: &E, node: &Node) -> Result<LegacyHost, OpError> {
    let paths = &node.paths;
    let mut host = LegacyHost::default();
    for service in &node.stack().services {
        let found = match engine.inspect_container(&service.container).await? {
            Some(c) if unlabelled(&c) => Some(c),
            _ => engine.inspect_container(&aside_name(&service.container)).await?.filter(unlabelled),
        };
        let Some(c) = found else { continue };
        let mut legacy = LegacyContainer {
            name: service.container.clone(),
            current_name: c.name.clone(),
            service: service.name.clone(),
            image: c.image.clone(),
            copies: Vec::new(),
            kept_volumes: Vec::new(),
            unmounted: Vec::new(),
            binds: Vec::new(),
        };
        for m in &c.mounts {
            match m.kind {
                MountKind::Volume | MountKind::AnonymousVolume => {
                    let wanted = service.volumes.iter().find(|v| v.target.trim_end_matches('/') == m.clean_target());
                    let anonymous = m.kind == MountKind::AnonymousVolume;
                    let target = m.clean_target().to_owned();
                    match wanted {
                        Some(v) if v.source != m.source => legacy.copies.push(VolumeCopy {
                            from: m.source.clone(),
                            anonymous,
                            to: v.source.clone(),
                            target,
                            mounted: true,
                        }),
                        Some(_) => legacy.kept_volumes.push(m.clone()),
                        // Dangling once its container is gone, where a volume prune deletes it.
                        None if anonymous => legacy.copies.push(VolumeCopy {
                            from: m.source.clone(),
                            anonymous,
                            to: adopted_volume_name(&node.stack().stack.name, &service.container, &target),
                            target,
                            mounted: false,
                        }),
                        None => legacy.unmounted.push(m.clone()),
                    }
                }
                _ => legacy.binds.push(m.clone()),
            }
        }
        host.containers.push(legacy);
    }
    host.units = LEGACY_UNITS.iter().map(|u| paths.systemd_dir().join(u)).filter(|p| p.exists()).collect();
    // The state files are edge's formats too: they say legacy only next to a legacy record.
    if InstallRecord::load_optional(&paths.install_env())?.is_some_and(|r| r.is_legacy()) {
        host.state_files = [paths.install_env(), paths.channels_status(), paths.upstream_state()]
            .into_iter()
            .filter(|p| p.is_file())
            .collect();
    }
    host.identity_files = crate::identity::identity_files(node.stack())
        .into_iter()
        .map(|f| paths.config_file(&f))
        .filter(|p| p.is_file())
        .collect();
    let journal = paths.state_dir().join(JOURNAL_FILE);
    if read_journal(&journal)?.last().is_some_and(|l| l != COMPLETE) {
        host.unfinished = Some(journal);
    }
    Ok(host)
}

/// The steps an adoption of `host` takes, leaving out copies the journal says are done.
pub fn plan(host: &LegacyHost, done: &BTreeSet<String>) -> Vec<AdoptStep> {
    let mut steps = Vec::new();
    for c in &host.containers {
        for copy in &c.copies {
            steps.push(AdoptStep::CopyVolume { container: c.name.clone(), copy: copy.clone() });
        }
        if c.current_name == c.name {
            steps.push(AdoptStep::SetAside { container: c.name.clone(), aside: aside_name(&c.name) });
        }
    }
    steps.retain(|s| !done.contains(&s.key()));
    if !host.containers.is_empty() || host.unfinished.is_some() {
        steps.push(AdoptStep::Install);
    }
    for c in &host.containers {
        steps.push(AdoptStep::RemoveLegacy { container: aside_name(&c.name) });
    }
    for path in &host.units {
        steps.push(AdoptStep::RemoveUnit { path: path.clone() });
    }
    steps
}

/// Legacy containers of a channel that `channels` says will not be active: adoption sets
/// them aside and removes them like the rest, and nothing takes their place.
fn dropped_channels(node: &Node, legacy: &LegacyHost, channels: &[ChannelReport]) -> Vec<String> {
    let mut dropped = Vec::new();
    for c in &legacy.containers {
        let Some(channel) = node.stack().services.iter().find(|s| s.name == c.service).and_then(|s| s.channel.as_ref())
        else {
            continue;
        };
        let Some(report) = channels.iter().find(|r| &r.id == channel) else { continue };
        if report.state != edge_core::ChannelState::Active {
            let why = report.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
            dropped.push(format!("{}: channel {channel} would be {}{why}", c.name, report.state));
        }
    }
    dropped
}

/// Takes over a host the legacy installer set up (see the module docs).
pub async fn adopt<E: Engine>(
    engine: &E,
    node: &Node,
    request: &AdoptRequest,
    progress: ProgressSink<'_>,
) -> Result<AdoptReport, OpError> {
    let journal = node.paths.state_dir().join(JOURNAL_FILE);
    engine.version().await?;
    let legacy = detect(engine, node).await?;
    let previous = if legacy.unfinished.is_some() { read_journal(&journal)? } else { Vec::new() };
    let done: BTreeSet<String> = previous.iter().cloned().collect();
    let steps = plan(&legacy, &done);
    let mut report = AdoptReport {
        stack: node.name().to_owned(),
        dry_run: request.dry_run,
        legacy: legacy.clone(),
        steps: steps.clone(),
        resumed: previous,
        install: None,
        channels: Vec::new(),
        dropped: Vec::new(),
        journal: journal.clone(),
        noop: steps.is_empty(),
        message: String::new(),
    };
    if steps.is_empty() {
        report.message = "nothing to adopt: no legacy container, unit or unfinished adoption here".to_owned();
        return Ok(report);
    }
    if request.dry_run {
        report.channels = crate::install::preview_channels(node, &request.install)?;
        report.dropped = dropped_channels(node, &legacy, &report.channels);
        report.message = format!("dry run: {} steps planned, nothing was changed", steps.len());
        return Ok(report);
    }
    node.paths.ensure_dirs().map_err(|e| OpError::io("create", node.paths.state_dir(), e))?;
    if legacy.unfinished.is_none() {
        record(node, "start", true)?;
    }
    let step = |text: String| progress(Progress::Step(text));
    for (n, s) in steps.iter().enumerate() {
        if request.stop_after == Some(n) {
            return Err(OpError::AdoptStopped { after: n });
        }
        step(s.key());
        match s {
            AdoptStep::CopyVolume { container, copy } => {
                let c = legacy.containers.iter().find(|c| &c.name == container).expect("planned from these");
                engine.stop_container(&c.current_name, std::time::Duration::from_secs(10)).await?;
                let mut labels = edge_channels::stack_labels(&node.stack().stack);
                if !copy.mounted {
                    labels.insert(LABEL_ADOPTED_FROM.to_owned(), format!("{}:{}", c.name, copy.target));
                    labels.insert(LABEL_ADOPTED_VOLUME.to_owned(), copy.from.clone());
                }
                engine.ensure_volume(&copy.to, &labels).await?;
                engine.copy_volume(&copy.from, &copy.to, &c.image).await?;
            }
            AdoptStep::SetAside { container, aside } => {
                engine.stop_container(container, std::time::Duration::from_secs(10)).await?;
                engine.rename_container(container, aside).await?;
            }
            AdoptStep::Install => {
                // A container set aside with `restart: always` comes back when the engine
                // restarts (a reboot after a crash): it must not hold the stack's ports.
                for c in &legacy.containers {
                    engine.stop_container(&aside_name(&c.name), std::time::Duration::from_secs(10)).await?;
                }
                let install = InstallRequest { dry_run: false, ..request.install.clone() };
                let result = install_unchecked(engine, node, &install, progress).await?;
                let failed = result.status == crate::Outcome::Failure;
                let message = result.message.clone();
                report.install = Some(result);
                if failed {
                    // The legacy containers stay set aside with their data; a re-run resumes here.
                    report.message = format!("install failed, legacy containers kept aside: {message}");
                    return Ok(report);
                }
            }
            AdoptStep::RemoveLegacy { container } => {
                engine.remove_container(container).await?;
            }
            AdoptStep::RemoveUnit { path } => remove_unit(node, path, progress)?,
        }
        record(node, &s.key(), false)?;
    }
    if request.stop_after == Some(steps.len()) {
        return Err(OpError::AdoptStopped { after: steps.len() });
    }
    record(node, COMPLETE, false)?;
    report.message = format!("done: {} adopted", node.name());
    Ok(report)
}

/// `edge install --adopt`: [`adopt()`] this host, whose install step is the install; where
/// there is nothing to adopt, [`crate::install()`].
///
/// A dry run on a legacy host is the adoption's plan (its install step included); elsewhere it
/// is the install's. The report's `install` is the install that ran (or was planned), if any.
pub async fn install_adopting<E: Engine>(
    engine: &E,
    node: &Node,
    request: &AdoptRequest,
    progress: ProgressSink<'_>,
) -> Result<AdoptReport, OpError> {
    let mut report = adopt(engine, node, request, progress).await?;
    let planned = request.dry_run && !report.noop;
    if report.install.is_none() && !planned {
        let install = InstallRequest { dry_run: request.dry_run, ..request.install.clone() };
        let result = crate::install::install(engine, node, &install, progress).await?;
        report.message = result.message.clone();
        report.install = Some(result);
    }
    Ok(report)
}

/// Disables (on the real root, with systemctl) and removes a legacy unit file, keeping a copy
/// under the state dir's `legacy-units/`.
fn remove_unit(node: &Node, path: &Path, progress: ProgressSink<'_>) -> Result<(), OpError> {
    let unit = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if let Ok(text) = std::fs::read(path) {
        let kept = node.paths.state_dir().join(LEGACY_UNITS_DIR);
        std::fs::create_dir_all(&kept).map_err(|e| OpError::io("create", &kept, e))?;
        edge_core::write_atomic_with_mode(&kept.join(&unit), &text, 0o644)?;
    }
    if !node.rooted && Path::new("/run/systemd/system").is_dir() {
        let ok = std::process::Command::new("systemctl")
            .args(["disable", "--now", &unit])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            progress(Progress::Note(format!("    warning: systemctl disable --now {unit} failed; removing its file")));
        }
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(OpError::io("remove", path, e)),
    }
}
