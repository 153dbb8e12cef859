//! `examples/app-sqlite` on the real engine: the app behind Caddy, and `edge backup` /
//! `edge restore` of its SQLite database while it keeps writing.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edge_tests::cli::install_args;
use edge_tests::docker::docker_out;
use edge_tests::sqlite_app::{SQLITE_APP_IMAGE, SqliteStack, ensure_sqlite_app_images, sqlite_app_images};

const EDGE: &str = env!("CARGO_BIN_EXE_edge-it");

pub(crate) fn provision() {
    static DONE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let result = DONE.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
        rt.block_on(ensure_sqlite_app_images()).map_err(|e| format!("{e:#}"))
    });
    if let Err(e) = result {
        panic!("building the app-sqlite images failed: {e}");
    }
}

pub(crate) fn edge(stack: &SqliteStack, args: &[&str]) -> Output {
    edge_tests::cli::run_logged(stack.command(Path::new(EDGE)), args)
}

pub(crate) fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// Installs the stack on the local images; alerts go to the shared loopback webhook.
pub(crate) fn install(stack: &SqliteStack, extra: &[&str]) -> Output {
    let args = install_args("install", &sqlite_app_images(), extra, false);
    edge(stack, &args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// One HTTP/1.0 request on loopback: status and body.
pub(crate) fn http(method: &str, url: &str, body: &str, header: Option<&str>) -> (u16, String) {
    let rest = url.strip_prefix("http://").expect("http URL");
    let (addr, path) = rest.split_at(rest.find('/').expect("a path"));
    let Ok(mut stream) = TcpStream::connect(addr) else { return (0, "connection refused".to_owned()) };
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let header = header.map(|h| format!("{h}\r\n")).unwrap_or_default();
    let request =
        format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n{header}\r\n{body}", body.len());
    if stream.write_all(request.as_bytes()).is_err() {
        return (0, "write failed".to_owned());
    }
    let mut reader = BufReader::new(stream);
    let mut status = String::new();
    if reader.read_line(&mut status).is_err() {
        return (0, "read failed".to_owned());
    }
    let code = status.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let mut text = String::new();
    let _ = reader.read_to_string(&mut text);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (code, body)
}

/// The ids `GET /api/rows` lists.
pub(crate) fn row_ids(stack: &SqliteStack) -> BTreeSet<i64> {
    let (code, body) = http("GET", &stack.url("/api/rows"), "", None);
    assert_eq!(code, 200, "GET /api/rows: {body}");
    body.lines().filter_map(|l| l.split('\t').next()?.parse().ok()).collect()
}

/// Writes rows through the proxy until stopped; each acknowledged id with when it was acknowledged.
pub(crate) struct Writer {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<(i64, Instant)>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    pub(crate) fn start(url: String) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let (s, a) = (Arc::clone(&stop), Arc::clone(&acked));
        let thread = std::thread::spawn(move || {
            let mut n = 0;
            while !s.load(Ordering::Relaxed) {
                n += 1;
                let (code, body) = http("POST", &url, &format!("row-{n}-{}", "x".repeat(200)), None);
                if code == 201 {
                    a.lock().unwrap().push((body.trim().parse().expect("an id"), Instant::now()));
                } else {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        });
        Self { stop, acked, thread: Some(thread) }
    }

    /// Ids acknowledged before `t`.
    pub(crate) fn acked_before(&self, t: Instant) -> BTreeSet<i64> {
        self.acked.lock().unwrap().iter().filter(|(_, at)| *at < t).map(|(id, _)| *id).collect()
    }

    pub(crate) fn count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    pub(crate) fn stop(mut self) -> BTreeSet<i64> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.acked.lock().unwrap().iter().map(|(id, _)| *id).collect()
    }
}

/// The app-sqlite test stack `name`, installed.
fn installed(name: &str) -> SqliteStack {
    provision();
    let stack = SqliteStack::new(name).expect("test stack");
    assert_eq!(install(&stack, &[]).status.code(), Some(0));
    stack
}

/// `edge backup --json` on `stack`, which must succeed: its report.
fn backup(stack: &SqliteStack) -> serde_json::Value {
    let out = edge(stack, &["backup", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    json(&out)
}

/// Runs the app image's own `check` on a backup copy, outside edge.
fn integrity_check(dir: &Path, file: &str) -> String {
    let out = std::process::Command::new("docker")
        .args(["run", "--rm", "--network", "none", "-v", &format!("{}:/b:ro", dir.display())])
        .args([SQLITE_APP_IMAGE, "check", &format!("/b/{file}")])
        .output()
        .expect("docker runs");
    format!("{} {}", out.status, String::from_utf8_lossy(&out.stderr))
}

#[test]
fn the_app_serves_rows_behind_caddy_which_guards_admin_and_uploads() {
    provision();
    let stack = SqliteStack::new("sqlite-app").expect("test stack");
    let out = install(&stack, &[]);
    assert_eq!(out.status.code(), Some(0));
    // A stack without channels says what came up: its services, no empty channel list.
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("{} installed, 2 services ready", stack.name)), "{text}");
    assert!(!text.contains("channels:"), "{text}");
    let status = String::from_utf8_lossy(&edge(&stack, &["status"]).stdout).into_owned();
    assert!(status.contains("SERVICE") && !status.contains("CHANNEL") && !status.contains("metrics"), "{status}");
    assert_eq!(http("GET", &stack.url("/api/health"), "", None).0, 200);
    let (code, id) = http("POST", &stack.url("/api/rows"), "hello", None);
    assert_eq!(code, 201, "{id}");
    let (_, rows) = http("GET", &stack.url("/api/rows"), "", None);
    assert_eq!(rows, format!("{}\thello\n", id.trim()));
    assert_eq!(http("GET", &stack.url("/admin"), "", None).0, 401);
    let env = std::fs::read_to_string(stack.root().join("etc/app-sqlite/.env")).expect("the generated .env");
    let token = env.lines().find_map(|l| l.strip_prefix("APP_ADMIN_TOKEN=")).expect("a token").trim_matches('"');
    assert_eq!(http("GET", &stack.url("/admin"), "", Some(&format!("Authorization: Bearer {token}"))).0, 200);
    assert_eq!(http("GET", &stack.url("/admin"), "", Some("Authorization: Bearer wrong")).0, 401);
    // The app itself would serve it; the proxy must not.
    assert_eq!(http("GET", &stack.url("/uploads/x"), "", None).0, 404);
    // The token never reaches the container's environment.
    let inspect = docker_out(&["inspect", &format!("{}-app", stack.name)]);
    assert!(!inspect.contains(token), "the admin token shows in docker inspect");
}

#[test]
fn a_backup_taken_mid_stream_restores_exactly_the_rows_it_holds() {
    let stack = installed("sqlite-backup");
    let writer = Writer::start(stack.url("/api/rows"));
    while writer.count() < 300 {
        std::thread::sleep(Duration::from_millis(50));
    }
    let backup_started = Instant::now();
    let out = edge(&stack, &["backup", "--json"]);
    let backup_ended = Instant::now();
    assert_eq!(out.status.code(), Some(0));
    let report = json(&out);
    let before = writer.acked_before(backup_started);
    // The app kept writing during the backup.
    while writer.acked_before(Instant::now()).len() <= writer.acked_before(backup_ended).len() + 50 {
        std::thread::sleep(Duration::from_millis(50));
    }
    let written = writer.stop();
    let id = report["backup"]["id"].as_str().expect("an id").to_owned();
    let dir = Path::new(report["dir"].as_str().expect("a dir")).to_owned();
    let file = &report["backup"]["files"][0];
    let copy = dir.join(file["file"].as_str().unwrap());
    use sha2::Digest;
    assert_eq!(file["sha256"].as_str().unwrap(), hex::encode(sha2::Sha256::digest(std::fs::read(&copy).unwrap())));
    let check = integrity_check(&dir, file["file"].as_str().unwrap());
    assert!(check.starts_with("exit status: 0"), "{check}");

    let list = json(&edge(&stack, &["backup", "list", "--json"]));
    assert_eq!(
        list.as_array().map(|a| a.iter().map(|b| b["id"].clone()).collect::<Vec<_>>()),
        Some(vec![id.clone().into()])
    );

    let out = edge(&stack, &["restore", &id]);
    assert_eq!(out.status.code(), Some(0));
    let restored = row_ids(&stack);
    let missing: Vec<&i64> = before.difference(&restored).collect();
    assert!(missing.is_empty(), "rows committed before the backup started are missing: {missing:?}");
    // Exactly the backup's rows: a gapless prefix of what was written, none written after it.
    let max = *restored.iter().max().unwrap();
    let expected: BTreeSet<i64> = written.iter().copied().filter(|i| *i <= max).collect();
    assert_eq!(restored, expected);
    assert!(restored.len() < written.len(), "rows written after the backup came back");
    assert_eq!(http("GET", &stack.url("/api/health"), "", None).0, 200);
}

#[test]
fn retention_keeps_the_newest_backups() {
    let stack = installed("sqlite-keep");
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(backup(&stack)["backup"]["id"].as_str().unwrap().to_owned());
    }
    let list = json(&edge(&stack, &["backup", "list", "--json"]));
    let kept: Vec<String> = list.as_array().unwrap().iter().map(|b| b["id"].as_str().unwrap().to_owned()).collect();
    // keep = 5 in the example's manifest.
    assert_eq!(kept, ids[1..].to_vec());
    let out = edge(&stack, &["restore", "no-such-backup"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
}

fn app_image(stack: &SqliteStack) -> String {
    docker_out(&["inspect", "--format", "{{.Config.Image}}", &format!("{}-app", stack.name)]).trim().to_owned()
}

fn write_rows(stack: &SqliteStack, n: usize) -> BTreeSet<i64> {
    (0..n)
        .map(|i| {
            let (code, id) = http("POST", &stack.url("/api/rows"), &format!("kept-{i}"), None);
            assert_eq!(code, 201, "{id}");
            id.trim().parse().unwrap()
        })
        .collect()
}

#[test]
fn a_bad_rollout_fails_smoke_and_rolls_back_without_losing_a_row() {
    use edge_tests::sqlite_app::{SQLITE_APP_BAD_IMAGE, SQLITE_APP_NEXT_IMAGE};
    let stack = installed("sqlite-rollout");
    let mut rows = write_rows(&stack, 40);
    let smoke = format!("{}=200", stack.url("/api/rows"));

    let good = format!("app={SQLITE_APP_NEXT_IMAGE}");
    let out = edge(&stack, &["rollout", "--images", &good, "--smoke", &smoke, "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let report = json(&out);
    assert_eq!(report["status"], "success");
    assert!(report["backup"].is_string(), "a backup is taken first: {report}");
    assert_eq!(app_image(&stack), SQLITE_APP_NEXT_IMAGE);
    assert!(row_ids(&stack).is_superset(&rows));
    rows.extend(write_rows(&stack, 40));

    let bad = format!("app={SQLITE_APP_BAD_IMAGE}");
    let out = edge(&stack, &["rollout", "--images", &bad, "--smoke", &smoke, "--json"]);
    assert_ne!(out.status.code(), Some(0), "a rollout that fails smoke exits non-zero");
    let report = json(&out);
    assert_eq!(report["status"], "failure");
    assert_eq!(report["rolled_back"], true);
    let failed = report["failed_check"].as_str().unwrap();
    assert!(failed.contains("smoke") && failed.contains("/api/rows"), "{failed}");
    let backup = report["backup"].as_str().expect("the backup taken").to_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&backup) && stderr.contains("/api/rows"),
        "the error names the check and the backup: {stderr}"
    );
    // The old image serves again, with every row.
    assert_eq!(app_image(&stack), SQLITE_APP_NEXT_IMAGE);
    assert_eq!(row_ids(&stack), rows);

    // On request, back to the release before.
    let out = edge(&stack, &["rollback", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(app_image(&stack), SQLITE_APP_IMAGE);
    assert_eq!(row_ids(&stack), rows);
    let out = edge(&stack, &["rollback"]);
    assert_ne!(out.status.code(), Some(0), "nothing older is recorded");
}

#[test]
fn restore_on_failure_puts_the_backup_back_too() {
    use edge_tests::sqlite_app::SQLITE_APP_BAD_IMAGE;
    let stack = installed("sqlite-restore-fail");
    let rows = write_rows(&stack, 20);
    let smoke = format!("{}=200", stack.url("/api/rows"));
    let bad = format!("app={SQLITE_APP_BAD_IMAGE}");
    let out = edge(&stack, &["rollout", "--images", &bad, "--smoke", &smoke, "--restore-on-failure", "--json"]);
    assert_ne!(out.status.code(), Some(0));
    let report = json(&out);
    assert_eq!((report["rolled_back"].clone(), report["restored"].clone()), (true.into(), true.into()), "{report}");
    assert_eq!(app_image(&stack), SQLITE_APP_IMAGE);
    assert_eq!(row_ids(&stack), rows);
}

#[test]
fn a_failed_restore_leaves_the_app_on_its_previous_data() {
    let stack = installed("sqlite-bad-restore");
    write_rows(&stack, 10);
    let report = backup(&stack);
    let rows = write_rows(&stack, 10).union(&row_ids(&stack)).copied().collect::<BTreeSet<i64>>();
    // A copy damaged on disk, with a sha256 that matches it: only SQLite's check can tell.
    edit_backup_copy(&report, |bytes| bytes[100..4096].fill(0xa5));

    let out = edge(&stack, &["restore", "latest"]);
    assert_ne!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("previous data put back") && !stderr.contains("NOT put back"), "{stderr}");
    assert_eq!(row_ids(&stack), rows);
}

/// Replaces backup `report`'s copy with `edit(bytes)` and records its sha256 in `backup.json`,
/// so that only what edge checks after the sha256 can refuse it.
fn edit_backup_copy(report: &serde_json::Value, edit: impl FnOnce(&mut Vec<u8>)) -> (std::path::PathBuf, String) {
    let dir = Path::new(report["dir"].as_str().unwrap()).to_owned();
    let file = report["backup"]["files"][0]["file"].as_str().unwrap().to_owned();
    let mut bytes = std::fs::read(dir.join(&file)).unwrap();
    edit(&mut bytes);
    std::fs::write(dir.join(&file), &bytes).unwrap();
    use sha2::Digest;
    let manifest = std::fs::read_to_string(dir.join("backup.json")).unwrap();
    let manifest = manifest
        .replace(report["backup"]["files"][0]["sha256"].as_str().unwrap(), &hex::encode(sha2::Sha256::digest(&bytes)));
    std::fs::write(dir.join("backup.json"), manifest).unwrap();
    (dir, file)
}

#[test]
fn a_restore_the_app_does_not_come_back_ready_on_puts_the_previous_file_back() {
    let stack = installed("sqlite-unready-restore");
    write_rows(&stack, 10);
    let report = backup(&stack);
    write_rows(&stack, 10);
    let rows = row_ids(&stack);
    // A sound file of a newer schema (SQLite's user_version, bytes 60..64 of the header): it
    // passes every check before the swap, and the app refuses to start on it.
    let (dir, file) = edit_backup_copy(&report, |bytes| bytes[60..64].copy_from_slice(&99u32.to_be_bytes()));
    let check = integrity_check(&dir, &file);
    assert!(check.starts_with("exit status: 0"), "the copy is sound: {check}");

    let out = edge(&stack, &["restore", "latest", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report = json(&out);
    assert_eq!(report["status"], "failure", "{report}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("previous data put back: app.db") && !stderr.contains("NOT put back"), "{stderr}");
    assert!(stderr.contains(&format!("{}-app", stack.name)), "the error names the service that failed: {stderr}");
    assert_eq!(row_ids(&stack), rows, "the app serves its previous rows");
}

#[test]
fn a_restore_whose_app_fails_its_smoke_checks_puts_the_previous_file_back() {
    let stack = installed("sqlite-smoke-restore");
    write_rows(&stack, 10);
    let old = backup(&stack)["backup"]["id"].as_str().unwrap().to_owned();
    // From here on the app must serve the marker row: the old backup does not hold it.
    let (code, _) = http("POST", &stack.url("/api/rows"), "marker-row", None);
    assert_eq!(code, 201);
    write_rows(&stack, 5);
    let rows = row_ids(&stack);
    stack.append_manifest("[[smoke]]\npath = \"/api/rows\"\nbody = \"marker-row\"\n").unwrap();
    assert_eq!(edge(&stack, &["smoke"]).status.code(), Some(0));

    let out = edge(&stack, &["restore", &old, "--json"]);
    assert_eq!(out.status.code(), Some(1), "a restore whose app fails a smoke check fails");
    let report = json(&out);
    assert_eq!((report["smoke"]["ok"].clone(), report["smoke"]["failed"].clone()), (false.into(), 1.into()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("smoke GET /api/rows: want body contains \"marker-row\"")
            && stderr.contains("previous data put back: app.db"),
        "the error names the failing check: {stderr}"
    );
    assert_eq!(row_ids(&stack), rows, "the app serves its previous rows");

    // A restore that passes them reports them.
    let new = backup(&stack)["backup"]["id"].as_str().unwrap().to_owned();
    let out = edge(&stack, &["restore", &new, "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let report = json(&out);
    assert_eq!((report["smoke"]["ok"].clone(), report["smoke"]["passed"].clone()), (true.into(), 4.into()));
    assert_eq!(row_ids(&stack), rows);
}

#[test]
fn a_rollout_that_never_gets_ready_is_rolled_back_naming_readiness_and_the_backup() {
    use edge_tests::sqlite_app::SQLITE_APP_UNREADY_IMAGE;
    let stack = installed("sqlite-unready");
    let rows = write_rows(&stack, 20);
    let unready = format!("app={SQLITE_APP_UNREADY_IMAGE}");
    let out = edge(&stack, &["rollout", "--images", &unready, "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report = json(&out);
    assert_eq!((report["status"].clone(), report["rolled_back"].clone()), ("failure".into(), true.into()), "{report}");
    let failed = report["failed_check"].as_str().unwrap();
    let container = format!("{}-app", stack.name);
    assert!(failed.starts_with(&format!("readiness of {container}: ")), "{failed}");
    // Caddy, probed through the app, is not waited for once the app failed: the rollback
    // starts within the app's own health check's retries, not after the 120 s health timeout.
    let rollout_ms = report["rollout_ms"].as_u64().unwrap();
    assert!(rollout_ms < 60_000, "the rollout gave up after {rollout_ms} ms");
    let backup = report["backup"].as_str().expect("the backup taken");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("failed at readiness of {container}")) && stderr.contains(backup),
        "the error names readiness and the backup: {stderr}"
    );
    assert_eq!(app_image(&stack), SQLITE_APP_IMAGE);
    assert_eq!(row_ids(&stack), rows);
    // The failed release is not in the history: nothing to roll back to.
    assert_eq!(edge(&stack, &["rollback"]).status.code(), Some(1));
}
