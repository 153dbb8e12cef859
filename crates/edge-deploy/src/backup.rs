//! `edge backup`, `edge backup list` and `edge restore`: the SQLite databases a stack names in
//! `[[backup]]`, copied while the app keeps writing, checked, and put back under control.
//!
//! The copy runs next to the file: a one-off container of the service's own image mounts the
//! volume at `/data` and the backup's host folder at `/backup`, and runs `backup SRC DST`
//! (SQLite's online backup API, then `PRAGMA integrity_check` on the copy). Reading through the
//! volume's host mountpoint would not work on a remote or rootless engine. Edge then records each
//! copy's sha256 in `backup.json` and keeps the newest `keep` backups.
//!
//! A restore stops the service (recorded as the operator's stop, so the watchdog leaves it
//! down), has the helper swap the file in (`restore SRC DST`: the previous file goes to
//! `DST.pre-restore`, stale `-wal`/`-shm` go), starts the service, waits until it is ready,
//! checks the file again and runs the stack's `[[smoke]]` checks through the front proxy. If
//! any of that fails (a restored file the app does not come back ready on, or serves wrongly,
//! counts as a failed restore), the previous file is put back (`putback DST`), the service
//! started on it, and the report is a failure naming the step or smoke check that failed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use edge_channels::{ContainerSpec, ContainerStatus, Engine, Mount, MountKind, NetworkAttachment, Security};
use edge_core::{BackupEntry, LogRotation, write_atomic_with_mode};
use serde::{Deserialize, Serialize};

use crate::lifecycle::{LifecycleRequest, start, stop};
use crate::{Node, OpError, Outcome, ProgressSink};

/// The manifest of one backup, `backup.json` in its folder.
const MANIFEST: &str = "backup.json";
/// Where the helper sees the volume.
const DATA: &str = "/data";
/// Where the helper sees the backup's host folder.
const BACKUP: &str = "/backup";
/// The file in the backup folder where the helper writes why it failed.
const HELPER_ERROR: &str = "helper.error";

/// How a backup or restore runs.
#[derive(Debug, Clone)]
pub struct BackupRequest {
    /// How long one helper run (a copy, a swap, a check) may take.
    pub helper_timeout: Duration,
    /// How long a restarted service may take to become ready.
    pub health_timeout: Duration,
    /// How long the smoke checks after a restore are retried before they count as failed.
    pub smoke_wait: Duration,
}

impl Default for BackupRequest {
    fn default() -> Self {
        Self {
            helper_timeout: Duration::from_secs(600),
            health_timeout: Duration::from_secs(120),
            smoke_wait: Duration::from_secs(10),
        }
    }
}

/// One database in a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupFile {
    /// The service that writes it.
    pub service: String,
    /// Its volume.
    pub volume: String,
    /// Its path in the volume.
    pub path: String,
    /// The copy's name in the backup folder.
    pub file: String,
    /// Hex sha256 of the copy.
    pub sha256: String,
    /// The copy's size in bytes.
    pub bytes: u64,
}

/// One backup as `backup.json` records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupInfo {
    /// Its id, the folder's name (`20261201T033000Z`).
    pub id: String,
    /// When it was taken, epoch seconds.
    pub created_at: u64,
    /// The databases it holds, each checked with `PRAGMA integrity_check`.
    pub files: Vec<BackupFile>,
}

/// What `edge backup` did.
#[derive(Debug, Clone, Serialize)]
pub struct BackupReport {
    /// The stack.
    pub stack: String,
    /// The backup taken.
    pub backup: BackupInfo,
    /// Its folder.
    pub dir: PathBuf,
    /// Older backups deleted by retention.
    pub removed: Vec<String>,
    /// Wall time.
    pub duration_ms: u64,
}

/// What `edge restore` did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    /// The stack.
    pub stack: String,
    /// The backup restored.
    pub backup: String,
    /// Success, or failure with the previous files back in place.
    pub status: Outcome,
    /// The stack's smoke checks on the restored data; `None` when it has none or the restore
    /// failed before them.
    pub smoke: Option<crate::SmokeReport>,
    /// Wall time.
    pub duration_ms: u64,
    /// One line saying how it ended.
    pub message: String,
}

/// The stack's data backups folder.
pub fn backups_root(node: &Node) -> PathBuf {
    node.paths.state_dir().join("data-backups")
}

/// Backs up every `[[backup]]` database of the stack while its services keep running, then
/// deletes the oldest backups beyond the smallest `keep` of the entries.
pub async fn backup<E: Engine>(engine: &E, node: &Node, request: &BackupRequest) -> Result<BackupReport, OpError> {
    let started = Instant::now();
    let entries = entries(node)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let root = backups_root(node);
    let stamp: String = edge_alerts::rfc3339(now).chars().filter(|c| !matches!(c, '-' | ':')).collect();
    let (mut id, mut n) = (stamp.clone(), 1);
    while root.join(&id).exists() {
        id = format!("{stamp}-{n}");
        n += 1;
    }
    let partial = root.join(format!(".{id}.partial"));
    std::fs::create_dir_all(&partial).map_err(|e| OpError::io("create backup dir", &partial, e))?;
    // The copies hold the app's data: only root may read them.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| OpError::io("restrict backup dir", &root, e))?;
    let result = take(engine, node, request, &entries, &partial).await;
    let files = match result {
        Ok(files) => files,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&partial);
            return Err(e);
        }
    };
    let info = BackupInfo { id: id.clone(), created_at: now, files };
    let json = serde_json::to_vec_pretty(&info).unwrap_or_default();
    write_atomic_with_mode(&partial.join(MANIFEST), &json, 0o600)?;
    let dir = root.join(&id);
    std::fs::rename(&partial, &dir).map_err(|e| OpError::io("move backup into place", &dir, e))?;
    let keep = entries.iter().map(|e| e.keep).min().unwrap_or(1) as usize;
    let mut removed = Vec::new();
    let all = list(node)?;
    for old in all.iter().take(all.len().saturating_sub(keep)) {
        let path = root.join(&old.id);
        std::fs::remove_dir_all(&path).map_err(|e| OpError::io("remove old backup", &path, e))?;
        removed.push(old.id.clone());
    }
    Ok(BackupReport {
        stack: node.name().to_owned(),
        backup: info,
        dir,
        removed,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

async fn take<E: Engine>(
    engine: &E,
    node: &Node,
    request: &BackupRequest,
    entries: &[BackupEntry],
    dir: &Path,
) -> Result<Vec<BackupFile>, OpError> {
    let mut files = Vec::new();
    for entry in entries {
        let image = service_image(engine, node, entry).await?;
        let file = copy_name(entry);
        let command = ["backup".to_owned(), format!("{DATA}/{}", entry.path), format!("{BACKUP}/{file}")];
        run_helper(engine, node, request, entry, &image, dir, &command, "back up").await?;
        let path = dir.join(&file);
        let bytes = std::fs::read(&path).map_err(|e| OpError::io("read backup copy", &path, e))?;
        use sha2::Digest;
        files.push(BackupFile {
            service: entry.service.clone(),
            volume: entry.volume.clone(),
            path: entry.path.clone(),
            file,
            sha256: hex::encode(sha2::Sha256::digest(&bytes)),
            bytes: bytes.len() as u64,
        });
    }
    Ok(files)
}

/// The stack's backups, oldest first. A folder without a readable `backup.json` is an error
/// naming it.
pub fn list(node: &Node) -> Result<Vec<BackupInfo>, OpError> {
    let root = backups_root(node);
    let read = match std::fs::read_dir(&root) {
        Ok(read) => read,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(OpError::io("list backups in", &root, e)),
    };
    let mut out = Vec::new();
    for item in read {
        let item = item.map_err(|e| OpError::io("list backups in", &root, e))?;
        let name = item.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        out.push(load(&root.join(&name))?);
    }
    out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    Ok(out)
}

fn load(dir: &Path) -> Result<BackupInfo, OpError> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read(&path).map_err(|e| OpError::io("read backup manifest", &path, e))?;
    serde_json::from_slice(&text)
        .map_err(|e| OpError::Backup { what: path.display().to_string(), message: format!("is corrupt: {e}") })
}

/// Restores backup `id` (or the newest, for `latest`): see the module docs.
pub async fn restore<E: Engine>(
    engine: &E,
    node: &Node,
    id: &str,
    request: &BackupRequest,
    progress: ProgressSink<'_>,
) -> Result<RestoreReport, OpError> {
    let started = Instant::now();
    let entries = entries(node)?;
    let all = list(node)?;
    let info = if id == "latest" { all.last() } else { all.iter().find(|b| b.id == id) };
    let Some(info) = info.cloned() else {
        let known: Vec<&str> = all.iter().map(|b| b.id.as_str()).collect();
        return Err(OpError::Backup {
            what: format!("backup {id:?}"),
            message: format!(
                "does not exist (have: {}); see edge backup list",
                if known.is_empty() { "none".to_owned() } else { known.join(", ") }
            ),
        });
    };
    let dir = backups_root(node).join(&info.id);
    for f in &info.files {
        let path = dir.join(&f.file);
        let bytes = std::fs::read(&path).map_err(|e| OpError::io("read backup copy", &path, e))?;
        use sha2::Digest;
        if hex::encode(sha2::Sha256::digest(&bytes)) != f.sha256 {
            return Err(OpError::Backup {
                what: path.display().to_string(),
                message: "does not match the sha256 recorded in backup.json; pick another backup".to_owned(),
            });
        }
    }
    let mut services: Vec<String> = info.files.iter().map(|f| f.service.clone()).collect();
    services.dedup();
    // The images are read before the services stop: the helper runs the service's own image.
    let mut images = BTreeMap::new();
    for entry in &entries {
        images.insert(entry.service.clone(), service_image(engine, node, entry).await?);
    }
    let lifecycle = LifecycleRequest {
        services: services.clone(),
        health_timeout: request.health_timeout,
        ..LifecycleRequest::default()
    };
    let stopped = stop(engine, node, &lifecycle).await?;
    if stopped.status != Outcome::Success {
        return Err(OpError::Backup { what: format!("restore of {}", info.id), message: stopped.message });
    }
    let mut smoke = None;
    let failure =
        swap_in(engine, node, request, &entries, &info, &dir, &images, &lifecycle, &mut smoke, progress).await;
    let (status, message) = match failure {
        None => (Outcome::Success, format!("restored {} in {:.1}s", info.id, started.elapsed().as_secs_f64())),
        Some(why) => {
            // Put every previous file back and start on it; the report says what failed.
            let mut back = Vec::new();
            for entry in entries.iter().filter(|e| info.files.iter().any(|f| f.volume == e.volume && f.path == e.path))
            {
                let _ = stop(
                    engine,
                    node,
                    &LifecycleRequest { services: vec![entry.service.clone()], ..LifecycleRequest::default() },
                )
                .await;
                let image = &images[&entry.service];
                let command = ["putback".to_owned(), format!("{DATA}/{}", entry.path)];
                match run_helper(engine, node, request, entry, image, &dir, &command, "put back").await {
                    Ok(()) => back.push(entry.path.clone()),
                    Err(e) => back.push(format!("{} NOT put back: {e}", entry.path)),
                }
            }
            let _ = start(engine, node, &lifecycle, progress).await;
            (
                Outcome::Failure,
                format!("restore of {} failed: {why}; previous data put back: {}", info.id, back.join(", ")),
            )
        }
    };
    Ok(RestoreReport {
        stack: node.name().to_owned(),
        backup: info.id,
        status,
        smoke,
        duration_ms: started.elapsed().as_millis() as u64,
        message,
    })
}

/// Swaps each file in, starts the services, waits for them, checks the files and runs the
/// smoke checks (their report goes to `smoke`); the reason of the first failure, if any.
#[allow(clippy::too_many_arguments)]
async fn swap_in<E: Engine>(
    engine: &E,
    node: &Node,
    request: &BackupRequest,
    entries: &[BackupEntry],
    info: &BackupInfo,
    dir: &Path,
    images: &BTreeMap<String, String>,
    lifecycle: &LifecycleRequest,
    smoke: &mut Option<crate::SmokeReport>,
    progress: ProgressSink<'_>,
) -> Option<String> {
    for f in &info.files {
        let Some(entry) = entries.iter().find(|e| e.volume == f.volume && e.path == f.path) else {
            return Some(format!("{}:{} is no longer a [[backup]] of the stack", f.volume, f.path));
        };
        let command = ["restore".to_owned(), format!("{BACKUP}/{}", f.file), format!("{DATA}/{}", f.path)];
        if let Err(e) =
            run_helper(engine, node, request, entry, &images[&entry.service], dir, &command, "restore").await
        {
            return Some(e.to_string());
        }
    }
    match start(engine, node, lifecycle, progress).await {
        Ok(r) if r.status == Outcome::Success => {}
        Ok(r) => return Some(r.message),
        Err(e) => return Some(e.to_string()),
    }
    for f in &info.files {
        let Some(entry) = entries.iter().find(|e| e.volume == f.volume && e.path == f.path) else { continue };
        let command = ["check".to_owned(), format!("{DATA}/{}", f.path)];
        if let Err(e) = run_helper(engine, node, request, entry, &images[&entry.service], dir, &command, "check").await
        {
            return Some(e.to_string());
        }
    }
    if node.stack().smoke.is_empty() {
        return None;
    }
    progress(crate::Progress::Step("smoke checks on the restored data".to_owned()));
    match crate::smoke::smoke_until(node, request.smoke_wait).await {
        Ok(report) => {
            let failed = report.first_failure();
            *smoke = Some(report);
            failed
        }
        Err(e) => Some(format!("smoke: {e}")),
    }
}

fn entries(node: &Node) -> Result<Vec<BackupEntry>, OpError> {
    let stack = node.stack();
    if stack.backups.is_empty() {
        return Err(OpError::Backup {
            what: format!("stack {}", node.name()),
            message: "names no database to back up; add a [[backup]] entry to stack.toml".to_owned(),
        });
    }
    let install_env = node.paths.install_env();
    if edge_core::InstallRecord::load_optional(&install_env)?.is_none() {
        return Err(OpError::NotInstalled { stack: node.name().to_owned(), install_env });
    }
    Ok(stack.backups.clone())
}

/// The copy's file name in the backup folder: volume and path, flattened.
fn copy_name(entry: &BackupEntry) -> String {
    format!("{}__{}", entry.volume, entry.path.replace('/', "__"))
}

/// The image the service's container runs now.
async fn service_image<E: Engine>(engine: &E, node: &Node, entry: &BackupEntry) -> Result<String, OpError> {
    let service = node.stack().service(&entry.service).ok_or_else(|| OpError::UnknownService {
        name: entry.service.clone(),
        known: node.stack().services.iter().map(|s| s.name.clone()).collect(),
    })?;
    match engine.inspect_container(&service.container).await? {
        Some(c) => Ok(c.image),
        None => Err(OpError::Backup {
            what: format!("service {}", entry.service),
            message: format!("has no container {}; run edge install first", service.container),
        }),
    }
}

/// Runs `image COMMAND` once with the volume at `/data` and `dir` at `/backup`, no network,
/// every capability dropped; an exit other than 0 is an error carrying the helper's own reason
/// (`DST.error`, written through the bind mount).
#[allow(clippy::too_many_arguments)]
async fn run_helper<E: Engine>(
    engine: &E,
    node: &Node,
    request: &BackupRequest,
    entry: &BackupEntry,
    image: &str,
    dir: &Path,
    command: &[String],
    what: &str,
) -> Result<(), OpError> {
    let name = format!("{}-backup-helper-{}", node.stack().stack.compose_project, std::process::id());
    let spec = ContainerSpec {
        name: name.clone(),
        image: image.to_owned(),
        command: command.to_vec(),
        env: BTreeMap::from([("HELPER_ERROR_FILE".to_owned(), format!("{BACKUP}/{HELPER_ERROR}"))]),
        ports: Vec::new(),
        mounts: vec![
            Mount { source: entry.volume.clone(), target: DATA.to_owned(), read_only: false, kind: MountKind::Volume },
            Mount {
                source: dir.display().to_string(),
                target: BACKUP.to_owned(),
                read_only: false,
                kind: MountKind::Bind,
            },
        ],
        network: NetworkAttachment::Mode("none".to_owned()),
        user: None,
        healthcheck: None,
        restart: "no".to_owned(),
        logging: LogRotation::default(),
        labels: BTreeMap::new(),
        security: Security::default(),
    };
    let failed = |message: String| OpError::Backup { what: format!("{what} {}:{}", entry.volume, entry.path), message };
    let error_file = dir.join(HELPER_ERROR);
    let _ = std::fs::remove_file(&error_file);
    engine.remove_container(&name).await?;
    engine.create_container(&spec, &[]).await?;
    let outcome = async {
        engine.start_container(&name).await?;
        let deadline = Instant::now() + request.helper_timeout;
        loop {
            let info = engine.inspect_container(&name).await?;
            match info {
                Some(c) if matches!(c.status, ContainerStatus::Exited | ContainerStatus::Dead) => {
                    return Ok(c.exit_code.unwrap_or(-1));
                }
                Some(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
                Some(_) => {
                    return Err(failed(format!("helper {name} did not finish within {:?}", request.helper_timeout)));
                }
                None => return Err(failed(format!("helper {name} vanished"))),
            }
        }
    }
    .await;
    engine.remove_container(&name).await?;
    match outcome? {
        0 => Ok(()),
        code => {
            let reason = std::fs::read_to_string(&error_file)
                .map(|r| r.trim().to_owned())
                .unwrap_or_else(|_| format!("the helper ({image} {}) exited {code}", command.join(" ")));
            let _ = std::fs::remove_file(&error_file);
            Err(failed(reason))
        }
    }
}
