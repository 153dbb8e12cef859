//! A real Alertmanager (Debian's `prometheus-alertmanager`) on loopback, with a temp
//! config and storage dir, on a free port, clustering off; killed when dropped.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;

/// Where Debian installs it.
pub const BINARY: &str = "/usr/bin/prometheus-alertmanager";

const CONFIG: &str = "route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n";

/// A running Alertmanager.
pub struct Alertmanager {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Alertmanager {
    /// Starts one and waits until `/-/ready` answers.
    pub async fn start() -> anyhow::Result<Self> {
        let mut last_error = None;
        // The port is picked free, then handed over: retry if someone took it in between.
        for _ in 0..3 {
            match Self::try_start().await {
                Ok(am) => return Ok(am),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("alertmanager did not start")))
    }

    async fn try_start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(&config, CONFIG)?;
        std::fs::create_dir(dir.path().join("data"))?;
        let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let log = std::fs::File::create(dir.path().join("alertmanager.log"))?;
        let child = Command::new(BINARY)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            // Empty: no gossip listener on 0.0.0.0:9094.
            .arg("--cluster.listen-address=")
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {BINARY}"))?;
        let mut am = Self { child, addr, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = am.child.try_wait()? {
                bail!("alertmanager exited with {status}: {}", am.log());
            }
            if let Ok((200, _)) = http(addr, "GET", "/-/ready", "").await {
                return Ok(am);
            }
            if Instant::now() > deadline {
                bail!("alertmanager not ready after 20s: {}", am.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Its base URL (what `OXPULSE_ALERTMANAGER_URL` takes).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Its data dir.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `GET /api/v2/alerts`: the alerts it holds as active (resolved ones are not listed).
    pub async fn alerts(&self) -> anyhow::Result<Vec<serde_json::Value>> {
        let (status, body) = http(self.addr, "GET", "/api/v2/alerts", "").await?;
        if status != 200 {
            bail!("GET /api/v2/alerts: status {status}: {body}");
        }
        Ok(serde_json::from_str(&body)?)
    }

    /// Polls [`Alertmanager::alerts`] until `done` holds (or fails after `timeout`).
    pub async fn wait_for(
        &self,
        timeout: Duration,
        done: impl Fn(&[serde_json::Value]) -> bool,
    ) -> anyhow::Result<Vec<serde_json::Value>> {
        let deadline = Instant::now() + timeout;
        loop {
            let alerts = self.alerts().await?;
            if done(&alerts) {
                return Ok(alerts);
            }
            if Instant::now() > deadline {
                bail!("condition not met after {timeout:?}; alerts: {alerts:#?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("alertmanager.log")).unwrap_or_default()
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request over a fresh loopback connection.
async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> anyhow::Result<(u16, String)> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, addr.to_string())
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_owned())))?;
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}
