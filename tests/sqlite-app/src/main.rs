//! The app of `examples/app-sqlite`: rows kept in SQLite (WAL mode) on a volume, served over
//! HTTP, and the helper edge runs next to the database file for backups and restores.
//!
//! `serve` (the default) listens on `APP_LISTEN` (default `0.0.0.0:8080`), database `APP_DB`
//! (default `/data/app.db`):
//! - `GET /api/health` answers 200 `ok` once the database answers.
//! - `POST /api/rows` stores the body as a row and answers 201 with its id; `GET /api/rows`
//!   lists them, one `ID<TAB>BODY` line each, in id order.
//! - `GET /admin` answers 401 without `Authorization: Bearer TOKEN`, `TOKEN` being
//!   `APP_ADMIN_TOKEN` of the env file at `APP_ENV_FILE` (mounted read-only, never the
//!   environment).
//! - `GET /uploads/NAME` answers 200: the proxy in front must be the one that refuses it.
//! - With `APP_FAIL=rows` `/api/rows` answers 500 while health stays green: a bad release.
//!   With `APP_FAIL=health` `/api/health` answers 503: a release that never gets ready.
//! - The database's schema version is SQLite's `user_version`: a new file gets [`SCHEMA`], and
//!   a file of a newer schema (a backup written by a later release) is refused at start.
//!
//! Helper subcommands (exit 0 on success; on failure the reason goes to stderr and to
//! `HELPER_ERROR_FILE` when set, which edge reads back through its bind mount):
//! - `backup SRC DST`: SQLite's online backup API while writers go on, then
//!   `PRAGMA integrity_check` on the copy; written to `DST.partial`, renamed when checked.
//! - `restore SRC DST`: checks `SRC`, moves `DST` to `DST.pre-restore` (after a checkpoint),
//!   puts a copy of `SRC` in its place and removes stale `-wal`/`-shm` files.
//! - `putback DST`: moves `DST.pre-restore` back after a failed restore.
//! - `check FILE`: `PRAGMA integrity_check`.
//! - `probe URL`: GET on loopback, exit 0 on 2xx (the Docker health check; no shell in the image).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;

const MAX_BODY: usize = 1024 * 1024;

/// The schema version this release writes and reads (`PRAGMA user_version`).
const SCHEMA: i64 = 1;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        [] | ["serve", ..] => serve(),
        ["backup", src, dst] => report(backup(Path::new(src), Path::new(dst))),
        ["restore", src, dst] => report(restore(Path::new(src), Path::new(dst))),
        ["putback", dst] => report(putback(Path::new(dst))),
        ["check", file] => report(check_file(Path::new(file))),
        ["probe", url] => probe(url),
        _ => Err(format!(
            "usage: edge-sqlite-app [serve | backup SRC DST | restore SRC DST | putback DST | check FILE | probe URL], not {args:?}"
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edge-sqlite-app: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Writes a helper's failure to `HELPER_ERROR_FILE` too, where edge reads it back.
fn report(result: Result<(), String>) -> Result<(), String> {
    if let (Err(e), Ok(file)) = (&result, std::env::var("HELPER_ERROR_FILE")) {
        let _ = std::fs::write(file, e);
    }
    result
}

fn open(path: &Path) -> Result<Connection, String> {
    let conn = Connection::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    conn.busy_timeout(Duration::from_secs(10)).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(conn)
}

fn integrity_check(conn: &Connection, path: &Path) -> Result<(), String> {
    let verdict: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .map_err(|e| format!("integrity check of {} failed to run: {e}", path.display()))?;
    if verdict == "ok" { Ok(()) } else { Err(format!("integrity check of {} failed: {verdict}", path.display())) }
}

fn check_file(path: &Path) -> Result<(), String> {
    if !path.is_file() {
        return Err(format!("{} is not a file", path.display()));
    }
    integrity_check(&open(path)?, path)
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    PathBuf::from(format!("{}{suffix}", path.display()))
}

fn backup(src: &Path, dst: &Path) -> Result<(), String> {
    if !src.is_file() {
        return Err(format!("{} is not a file", src.display()));
    }
    let source = open(src)?;
    let partial = sibling(dst, ".partial");
    let _ = std::fs::remove_file(&partial);
    if let Some(dir) = dst.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    {
        let mut target = open(&partial)?;
        let backup = rusqlite::backup::Backup::new(&source, &mut target)
            .map_err(|e| format!("cannot start the backup of {}: {e}", src.display()))?;
        // One step copies one read snapshot. In WAL mode the app's writers go on meanwhile; in
        // small steps every write from another connection would restart the copy, so under a
        // steady write load it would never finish.
        // A good minute of busy answers (a checkpoint holding the lock) before giving up.
        for _ in 0..6000 {
            match backup.step(-1).map_err(|e| format!("backup of {} failed: {e}", src.display()))? {
                rusqlite::backup::StepResult::Done => break,
                _ => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        if backup.progress().remaining != 0 {
            return Err(format!("backup of {} did not finish: the database stayed busy", src.display()));
        }
    }
    // The copy keeps the source's WAL mode in its header; a backup file stands alone.
    let copy = open(&partial)?;
    copy.pragma_update(None, "journal_mode", "DELETE").map_err(|e| format!("{}: {e}", partial.display()))?;
    integrity_check(&copy, &partial)?;
    drop(copy);
    std::fs::rename(&partial, dst).map_err(|e| format!("cannot rename {} to {}: {e}", partial.display(), dst.display()))
}

fn remove_if_present(path: &Path) -> Result<(), String> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(format!("cannot remove {}: {e}", path.display())),
        _ => Ok(()),
    }
}

fn remove_wal(dst: &Path) -> Result<(), String> {
    remove_if_present(&sibling(dst, "-wal"))?;
    remove_if_present(&sibling(dst, "-shm"))
}

fn restore(src: &Path, dst: &Path) -> Result<(), String> {
    check_file(src)?;
    let incoming = sibling(dst, ".restore");
    std::fs::copy(src, &incoming)
        .map_err(|e| format!("cannot copy {} to {}: {e}", src.display(), incoming.display()))?;
    check_file(&incoming)?;
    let previous = sibling(dst, ".pre-restore");
    if dst.exists() {
        // Fold the WAL into the file first, so that the file alone is the previous state.
        let conn = open(dst)?;
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(|e| format!("cannot checkpoint {}: {e}", dst.display()))?;
        drop(conn);
        std::fs::rename(dst, &previous).map_err(|e| format!("cannot move {} aside: {e}", dst.display()))?;
    }
    remove_wal(dst)?;
    std::fs::rename(&incoming, dst).map_err(|e| format!("cannot move {} into place: {e}", incoming.display()))
}

fn putback(dst: &Path) -> Result<(), String> {
    let previous = sibling(dst, ".pre-restore");
    if !previous.is_file() {
        // The restore failed before its swap: the file in place is still the previous one.
        return if dst.is_file() {
            Ok(())
        } else {
            Err(format!("{} is missing: nothing to put back", previous.display()))
        };
    }
    remove_wal(dst)?;
    std::fs::rename(&previous, dst).map_err(|e| format!("cannot put {} back: {e}", previous.display()))
}

fn probe(url: &str) -> Result<(), String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| format!("{url}: only http:// is probed"))?;
    let (addr, path) = rest.find('/').map_or((rest, "/"), |i| rest.split_at(i));
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("{url}: {e}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").map_err(|e| format!("{url}: {e}"))?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).map_err(|e| format!("{url}: {e}"))?;
    match line.split_whitespace().nth(1) {
        Some(code) if code.starts_with('2') => Ok(()),
        _ => Err(format!("{url} answered {:?}", line.trim())),
    }
}

struct App {
    db: Mutex<Connection>,
    admin_token: Option<String>,
    fail_rows: bool,
    fail_health: bool,
}

fn serve() -> Result<(), String> {
    let listen = std::env::var("APP_LISTEN").unwrap_or_else(|_| "0.0.0.0:8080".to_owned());
    let db_path = PathBuf::from(std::env::var("APP_DB").unwrap_or_else(|_| "/data/app.db".to_owned()));
    let conn = open(&db_path)?;
    let mode: String =
        conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)).map_err(|e| format!("cannot set WAL mode: {e}"))?;
    if mode != "wal" {
        return Err(format!("{} refused WAL mode (it is {mode})", db_path.display()));
    }
    conn.execute_batch(
        "PRAGMA synchronous=NORMAL; CREATE TABLE IF NOT EXISTS rows (id INTEGER PRIMARY KEY, body TEXT NOT NULL)",
    )
    .map_err(|e| format!("cannot create the rows table: {e}"))?;
    let schema: i64 =
        conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(|e| format!("cannot read the schema: {e}"))?;
    if schema > SCHEMA {
        return Err(format!(
            "{} has schema {schema}, newer than this release's {SCHEMA}: restore a backup this release wrote, or run the release that wrote it",
            db_path.display()
        ));
    }
    conn.pragma_update(None, "user_version", SCHEMA).map_err(|e| format!("cannot set the schema: {e}"))?;
    let admin_token = match std::env::var("APP_ENV_FILE") {
        Ok(file) => {
            let text = std::fs::read_to_string(&file).map_err(|e| format!("cannot read {file}: {e}"))?;
            let token =
                text.lines().find_map(|l| l.strip_prefix("APP_ADMIN_TOKEN=")).map(|t| t.trim_matches('"').to_owned());
            Some(token.filter(|t| !t.is_empty()).ok_or_else(|| format!("{file} has no APP_ADMIN_TOKEN"))?)
        }
        Err(_) => None,
    };
    let app = Arc::new(App {
        db: Mutex::new(conn),
        admin_token,
        fail_rows: std::env::var("APP_FAIL").is_ok_and(|v| v == "rows"),
        fail_health: std::env::var("APP_FAIL").is_ok_and(|v| v == "health"),
    });
    let listener = TcpListener::bind(&listen).map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    println!("edge-sqlite-app listening on {listen}, database {}", db_path.display());
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let app = Arc::clone(&app);
        std::thread::spawn(move || {
            if let Err(e) = handle(stream, &app)
                && !matches!(e.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe)
            {
                eprintln!("edge-sqlite-app: {e}");
            }
        });
    }
    Ok(())
}

fn handle(stream: TcpStream, app: &App) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(());
        }
        let mut parts = request_line.split_whitespace();
        let (method, path, version) =
            (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or("HTTP/1.0"));
        let mut length = 0usize;
        let mut authorization = None;
        let mut close = version == "HTTP/1.0";
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                let value = value.trim();
                match name.to_ascii_lowercase().as_str() {
                    "content-length" => length = value.parse().unwrap_or(0).min(MAX_BODY),
                    "authorization" => authorization = Some(value.to_owned()),
                    "connection" => close = value.eq_ignore_ascii_case("close"),
                    _ => {}
                }
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        let (status, text) = route(app, method, path, authorization.as_deref(), &body);
        let reason = match status {
            200 => "OK",
            201 => "Created",
            401 => "Unauthorized",
            404 => "Not Found",
            500 => "Internal Server Error",
            503 => "Service Unavailable",
            _ => "Error",
        };
        write!(
            writer,
            "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{}\r\n{text}",
            text.len(),
            if close { "Connection: close\r\n" } else { "" }
        )?;
        writer.flush()?;
        if close {
            return Ok(());
        }
    }
}

fn route(app: &App, method: &str, path: &str, authorization: Option<&str>, body: &[u8]) -> (u16, String) {
    let db = || app.db.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    match (method, path) {
        ("GET", "/api/health") if app.fail_health => (503, "not ready in this release\n".to_owned()),
        ("GET", "/api/health") => match db().query_row("SELECT count(*) FROM rows", [], |r| r.get::<_, i64>(0)) {
            Ok(_) => (200, "ok\n".to_owned()),
            Err(e) => (500, format!("database: {e}\n")),
        },
        (_, "/api/rows") if app.fail_rows => (500, "rows are broken in this release\n".to_owned()),
        ("POST", "/api/rows") => {
            let text = String::from_utf8_lossy(body);
            let db = db();
            match db.execute("INSERT INTO rows (body) VALUES (?1)", [text.as_ref()]) {
                Ok(_) => (201, format!("{}\n", db.last_insert_rowid())),
                Err(e) => (500, format!("database: {e}\n")),
            }
        }
        ("GET", "/api/rows") => {
            let db = db();
            let rows = db.prepare("SELECT id, body FROM rows ORDER BY id").and_then(|mut s| {
                s.query_map([], |r| Ok(format!("{}\t{}\n", r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?
                    .collect::<Result<String, _>>()
            });
            match rows {
                Ok(text) => (200, text),
                Err(e) => (500, format!("database: {e}\n")),
            }
        }
        ("GET", "/admin") => {
            let expected = app.admin_token.as_deref().map(|t| format!("Bearer {t}"));
            if expected.is_some() && authorization == expected.as_deref() {
                (200, "admin\n".to_owned())
            } else {
                (401, "unauthorized\n".to_owned())
            }
        }
        ("GET", p) if p.starts_with("/uploads/") => (200, "an upload\n".to_owned()),
        _ => (404, "not found\n".to_owned()),
    }
}
