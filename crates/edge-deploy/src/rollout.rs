//! `edge rollout --images SERVICE=REF` and `edge rollback`: a new release with a way back.
//!
//! A rollout takes a data backup first (when the stack has `[[backup]]` entries), installs
//! with the new images (which waits for readiness), then runs the smoke checks. If any step
//! fails (a container that never gets ready is named as `readiness of CONTAINER`) it installs
//! the images the services ran before, automatically, and reports the failing check and the
//! backup taken; with `restore_on_failure` it also restores that backup.
//! `rollback` installs each service's previous image from the install record's history.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use edge_channels::Engine;
use edge_core::InstallRecord;
use serde::Serialize;

use crate::backup::{BackupRequest, backup, restore};
use crate::{InstallRequest, Node, OpError, Outcome, ProgressSink, install};

/// One extra smoke check given on the command line: `GET URL` must answer `status`. The stack's
/// own `[[smoke]]` checks always run after these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SmokeCheck {
    /// `http://` URL on loopback, through the front proxy.
    pub url: String,
    /// The status it must answer.
    pub status: u16,
}

impl SmokeCheck {
    /// Parses `URL=STATUS`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (url, status) = text.rsplit_once('=').ok_or_else(|| format!("smoke check {text:?} is not URL=STATUS"))?;
        let status = status.parse().map_err(|_| format!("smoke check {text:?}: {status:?} is not an HTTP status"))?;
        if !url.starts_with("http://") {
            return Err(format!("smoke check {text:?}: the URL must start with http://"));
        }
        Ok(Self { url: url.to_owned(), status })
    }
}

/// How to run a rollout.
#[derive(Debug, Clone, Default)]
pub struct RolloutRequest {
    /// The install to run (variables, alerts, timeouts); its `images` are ignored.
    pub install: InstallRequest,
    /// The new images by service.
    pub images: BTreeMap<String, String>,
    /// Also restore the backup taken when the rollout fails.
    pub restore_on_failure: bool,
    /// The smoke checks to run after the deploy.
    pub smoke: Vec<SmokeCheck>,
    /// How backups and restores run.
    pub backup: BackupRequest,
}

/// What a rollout or rollback did.
#[derive(Debug, Clone, Serialize)]
pub struct RolloutReport {
    /// The stack.
    pub stack: String,
    /// Success, or failure (rolled back).
    pub status: Outcome,
    /// The images before, by service.
    pub from: BTreeMap<String, String>,
    /// The images asked for.
    pub to: BTreeMap<String, String>,
    /// The backup taken first, if the stack has `[[backup]]` entries.
    pub backup: Option<String>,
    /// The step that failed, with why: `deploy`, `readiness of CONTAINER` (the new release
    /// never got ready), or `smoke METHOD PATH`.
    pub failed_check: Option<String>,
    /// Whether the previous images were put back.
    pub rolled_back: bool,
    /// Whether the backup was restored too.
    pub restored: bool,
    /// Time to the new release being up (or failing).
    pub rollout_ms: u64,
    /// Time the automatic rollback took.
    pub rollback_ms: Option<u64>,
    /// One line saying how it ended.
    pub message: String,
}

/// Rolls out `request.images`; see the module docs.
pub async fn rollout<E: Engine>(
    engine: &E,
    node: &Node,
    request: &RolloutRequest,
    progress: ProgressSink<'_>,
) -> Result<RolloutReport, OpError> {
    let started = Instant::now();
    let record = recorded(node)?;
    for service in request.images.keys() {
        if node.stack().service(service).is_none() {
            let known: Vec<String> = node.stack().services.iter().map(|s| s.name.clone()).collect();
            return Err(OpError::UnknownService { name: service.clone(), known });
        }
    }
    let current = record.current_images();
    let from: BTreeMap<String, String> =
        request.images.keys().filter_map(|s| Some((s.clone(), current.get(s)?.clone()))).collect();
    let mut report = RolloutReport {
        stack: node.name().to_owned(),
        status: Outcome::Success,
        from: from.clone(),
        to: request.images.clone(),
        backup: None,
        failed_check: None,
        rolled_back: false,
        restored: false,
        rollout_ms: 0,
        rollback_ms: None,
        message: String::new(),
    };
    if !node.stack().backups.is_empty() {
        progress(crate::Progress::Step("back up before the rollout".to_owned()));
        match backup(engine, node, &request.backup).await {
            Ok(b) => report.backup = Some(b.backup.id),
            // No backup, no rollout: nothing has changed yet.
            Err(e) => {
                return Err(OpError::Backup {
                    what: "rollout".to_owned(),
                    message: format!("stopped before deploying: backup failed: {e}"),
                });
            }
        }
    }
    let mut images = record.images.clone();
    images.extend(request.images.clone());
    let failure = deploy_and_check(engine, node, request, images, progress).await;
    report.rollout_ms = started.elapsed().as_millis() as u64;
    let Some(failed) = failure else {
        report.message = format!("rolled out {} in {:.1}s", pairs(&request.images), started.elapsed().as_secs_f64());
        return Ok(report);
    };
    report.status = Outcome::Failure;
    report.failed_check = Some(failed.clone());
    let back_started = Instant::now();
    progress(crate::Progress::Step(format!("roll back to {}", pairs(&from))));
    let mut back = record.images.clone();
    back.extend(from.clone());
    let rollback = InstallRequest { images: back, ..request.install.clone() };
    let rolled = install(engine, node, &rollback, progress).await;
    report.rolled_back = matches!(&rolled, Ok(r) if r.status != Outcome::Failure);
    if report.rolled_back {
        // The failed release never counted: the history is as before the rollout.
        InstallRecord::update(&node.paths, |r| r.image_history = record.image_history.clone())?;
    }
    if request.restore_on_failure
        && let Some(id) = &report.backup
    {
        let restored = restore(engine, node, id, &request.backup, progress).await;
        report.restored = matches!(&restored, Ok(r) if r.status == Outcome::Success);
    }
    report.rollback_ms = Some(back_started.elapsed().as_millis() as u64);
    let backup_note = match (&report.backup, report.restored) {
        (Some(id), true) => format!("backup {id} taken and restored"),
        (Some(id), false) => format!("backup {id} taken (edge restore {id} puts the data back)"),
        (None, _) => "no backup taken (the stack has no [[backup]])".to_owned(),
    };
    report.message = match (&rolled, report.rolled_back) {
        (_, true) => format!(
            "rollout of {} failed at {failed}; rolled back to {}; {backup_note}",
            pairs(&request.images),
            pairs(&from)
        ),
        (Ok(r), false) => format!(
            "rollout of {} failed at {failed}; the rollback failed too: {}; {backup_note}",
            pairs(&request.images),
            r.message
        ),
        (Err(e), false) => format!(
            "rollout of {} failed at {failed}; the rollback failed too: {e}; {backup_note}",
            pairs(&request.images)
        ),
    };
    Ok(report)
}

/// Installs with `images`, then runs the smoke checks; the failing step, if any.
async fn deploy_and_check<E: Engine>(
    engine: &E,
    node: &Node,
    request: &RolloutRequest,
    images: BTreeMap<String, String>,
    progress: ProgressSink<'_>,
) -> Option<String> {
    let deploy = InstallRequest { images, ..request.install.clone() };
    match install(engine, node, &deploy, progress).await {
        Ok(r) if r.status == Outcome::Failure => {
            // A service that never got ready is named as such: the release itself is bad.
            let unready = r.services.iter().find_map(|(container, readiness)| match readiness {
                edge_channels::Readiness::Failed { reason } => Some(format!("readiness of {container}: {reason}")),
                edge_channels::Readiness::Ready { .. } => None,
            });
            return Some(unready.unwrap_or_else(|| format!("deploy: {}", r.message)));
        }
        Ok(_) => {}
        Err(e) => return Some(format!("deploy: {e}")),
    }
    progress(crate::Progress::Step("smoke checks".to_owned()));
    for check in &request.smoke {
        let got = get_status(&check.url).await;
        if got != Ok(check.status) {
            let got = match got {
                Ok(code) => format!("answered {code}"),
                Err(e) => e,
            };
            return Some(format!("smoke GET {}: want {}, {got}", check.url, check.status));
        }
    }
    match crate::smoke(node).await {
        Ok(report) => report.first_failure(),
        Err(e) => Some(format!("smoke: {e}")),
    }
}

/// Returns to each service's previous recorded image.
pub async fn rollback<E: Engine>(
    engine: &E,
    node: &Node,
    request: &InstallRequest,
    progress: ProgressSink<'_>,
) -> Result<RolloutReport, OpError> {
    let started = Instant::now();
    let record = recorded(node)?;
    let previous = record.previous_images();
    if previous.is_empty() {
        return Err(OpError::Backup {
            what: format!("stack {}", node.name()),
            message: "has no previous release recorded; nothing to roll back to".to_owned(),
        });
    }
    let current = record.current_images();
    let from: BTreeMap<String, String> =
        previous.keys().filter_map(|s| Some((s.clone(), current.get(s)?.clone()))).collect();
    let mut images = record.images.clone();
    images.extend(previous.clone());
    let report = install(engine, node, &InstallRequest { images, ..request.clone() }, progress).await?;
    let ok = report.status != Outcome::Failure;
    if ok {
        // Going back drops the release left, so that the next rollback goes further back.
        InstallRecord::update(&node.paths, |r| {
            for service in previous.keys() {
                if let (Some(h), Some(before)) = (r.image_history.get_mut(service), record.image_history.get(service)) {
                    *h = before[..before.len() - 1].to_vec();
                }
            }
        })?;
    }
    Ok(RolloutReport {
        stack: node.name().to_owned(),
        status: if ok { Outcome::Success } else { Outcome::Failure },
        from,
        to: previous.clone(),
        backup: None,
        failed_check: (!ok).then(|| format!("deploy: {}", report.message)),
        rolled_back: ok,
        restored: false,
        rollout_ms: started.elapsed().as_millis() as u64,
        rollback_ms: None,
        message: if ok {
            format!("rolled back to {} in {:.1}s", pairs(&previous), started.elapsed().as_secs_f64())
        } else {
            format!("rollback to {} failed: {}", pairs(&previous), report.message)
        },
    })
}

fn recorded(node: &Node) -> Result<InstallRecord, OpError> {
    let install_env = node.paths.install_env();
    InstallRecord::load_optional(&install_env)?
        .ok_or_else(|| OpError::NotInstalled { stack: node.name().to_owned(), install_env })
}

fn pairs(images: &BTreeMap<String, String>) -> String {
    images.iter().map(|(s, i)| format!("{s}={i}")).collect::<Vec<_>>().join(",")
}

/// `GET url` on loopback: the status, or why there is none.
async fn get_status(url: &str) -> Result<u16, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").ok_or_else(|| format!("{url} is not http://"))?;
    let (addr, path) = rest.find('/').map_or((rest, "/"), |i| rest.split_at(i));
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("cannot connect: {e}"))?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.map_err(|e| format!("cannot send: {e}"))?;
        let mut head = vec![0; 64];
        let n = stream.read(&mut head).await.map_err(|e| format!("no answer: {e}"))?;
        let line = String::from_utf8_lossy(&head[..n]).into_owned();
        line.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or_else(|| format!("not HTTP: {line:?}"))
    };
    tokio::time::timeout(Duration::from_secs(10), exchange).await.map_err(|_| "no answer within 10s".to_owned())?
}

#[cfg(test)]
mod tests {
    use super::SmokeCheck;

    #[test]
    fn smoke_checks_parse_from_url_and_status() {
        let check = |text: &str, want: Result<(&str, u16), &str>| {
            let got = SmokeCheck::parse(text);
            match want {
                Ok((url, status)) => assert_eq!(got, Ok(SmokeCheck { url: url.to_owned(), status })),
                Err(message) => assert_eq!(got.unwrap_err(), message),
            }
        };
        check("http://127.0.0.1:8080/api/rows=200", Ok(("http://127.0.0.1:8080/api/rows", 200)));
        check("http://127.0.0.1:8080/a?b=c=404", Ok(("http://127.0.0.1:8080/a?b=c", 404)));
        check("http://127.0.0.1:8080/", Err("smoke check \"http://127.0.0.1:8080/\" is not URL=STATUS"));
        check("https://x/=200", Err("smoke check \"https://x/=200\": the URL must start with http://"));
        check("http://x/=ok", Err("smoke check \"http://x/=ok\": \"ok\" is not an HTTP status"));
    }
}
