//! A real image registry (Debian's `docker-registry`, the reference registry) on a free
//! loopback port, with htpasswd (bcrypt) auth and its storage in a temp dir; killed when
//! dropped. The Docker engine pulls from loopback registries over plain http.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine as _;

/// Where Debian installs it.
pub const BINARY: &str = "/usr/bin/docker-registry";
/// Makes the bcrypt htpasswd file (Debian's `apache2-utils`).
pub const HTPASSWD: &str = "/usr/bin/htpasswd";

/// The user the registry accepts.
pub const USER: &str = "edge";

/// A running registry.
pub struct Registry {
    child: Option<Child>,
    addr: SocketAddr,
    password: String,
    dir: tempfile::TempDir,
}

impl Registry {
    /// Starts one that accepts [`USER`] with a fresh random password, and waits until it answers.
    pub fn start() -> anyhow::Result<Self> {
        let mut last_error = None;
        // The port is picked free, then handed over: retry if someone took it in between.
        for _ in 0..3 {
            match Self::try_start() {
                Ok(registry) => return Ok(registry),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("the registry did not start")))
    }

    fn try_start() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("edge-registry-").tempdir()?;
        let password = edge_channels::image::unique_name("pw");
        let htpasswd = dir.path().join("htpasswd");
        let out = Command::new(HTPASSWD)
            .args(["-B", "-b", "-n", USER, &password])
            .output()
            .with_context(|| format!("cannot run {HTPASSWD} (apt-get install apache2-utils)"))?;
        if !out.status.success() {
            bail!("htpasswd failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::fs::write(&htpasswd, &out.stdout)?;
        let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\nauth:\n  htpasswd:\n    realm: edge-test\n    path: {}\n",
            dir.path().join("data").display(),
            htpasswd.display()
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config)?;
        let log = std::fs::File::create(dir.path().join("registry.log"))?;
        let child = Command::new(BINARY)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {BINARY} (apt-get install docker-registry)"))?;
        let mut registry = Self { child: Some(child), addr, password, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = registry.child.as_mut().and_then(|c| c.try_wait().transpose()).transpose()? {
                bail!("the registry exited with {status}: {}", registry.log());
            }
            if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(registry);
            }
            if Instant::now() > deadline {
                bail!("the registry did not listen on {addr} within 20s: {}", registry.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Its host as image references name it: `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// The password it accepts for [`USER`].
    pub fn password(&self) -> &str {
        &self.password
    }

    /// A docker config dir (what `DOCKER_CONFIG` names) whose `config.json` holds `password`
    /// for [`USER`] on this registry, as `docker login` writes it.
    pub fn docker_config(&self, name: &str, password: &str) -> anyhow::Result<PathBuf> {
        let dir = self.dir.path().join(name);
        std::fs::create_dir_all(&dir)?;
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{password}"));
        let config = serde_json::json!({ "auths": { self.host(): { "auth": auth } } });
        std::fs::write(dir.join("config.json"), serde_json::to_vec_pretty(&config)?)?;
        Ok(dir)
    }

    /// Stops it: pulls from it then find nothing listening.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Its log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Its storage and config dir.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}
