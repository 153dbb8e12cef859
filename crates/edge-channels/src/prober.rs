//! HTTP health probes and metrics fetches. A failed probe is data
//! ([`Health::Unhealthy`]), never an error: callers decide what it means.
//!
//! Parsing Caddy's metrics page is edge-alerts' job (`edge_alerts::metrics`); this
//! module only fetches the text.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

use crate::DeployError;
use crate::engine::{ContainerInfo, HostProbe};

/// How long an accepted connection must stay open for a TCP probe to pass: Docker's proxy
/// accepts on a published port even when nothing listens inside, then closes at once.
const TCP_SETTLE: Duration = Duration::from_millis(200);

/// The outcome of one probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "health", rename_all = "snake_case")]
pub enum Health {
    /// It answered 2xx.
    Healthy,
    /// It did not.
    Unhealthy {
        /// What went wrong: `HTTP 503`, `connection refused`, `timed out after 3s`.
        reason: String,
    },
}

impl Health {
    /// Whether it is [`Health::Healthy`].
    pub fn is_healthy(&self) -> bool {
        matches!(self, Self::Healthy)
    }
}

/// An HTTP prober with a per-request timeout. Never uses a proxy: probes target loopback.
#[derive(Debug, Clone)]
pub struct Prober {
    client: reqwest::Client,
    timeout: Duration,
}

impl Prober {
    /// A prober whose requests give up after `timeout`.
    pub fn new(timeout: Duration) -> Result<Self, DeployError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .no_proxy()
            .build()
            .map_err(|e| DeployError::HttpClient { message: e.to_string() })?;
        Ok(Self { client, timeout })
    }

    /// GETs `url`: healthy on a 2xx answer.
    pub async fn probe(&self, url: &str) -> Health {
        match self.client.get(url).send().await {
            Ok(r) if r.status().is_success() => Health::Healthy,
            Ok(r) => Health::Unhealthy { reason: format!("HTTP {}", r.status().as_u16()) },
            Err(e) => Health::Unhealthy { reason: self.describe(&e) },
        }
    }

    /// Runs a host-side readiness probe.
    pub async fn check(&self, probe: &HostProbe) -> Health {
        match probe {
            HostProbe::Http { addr, path } => self.probe(&format!("http://{addr}{path}")).await,
            HostProbe::Tcp { addr } => self.connect(*addr).await,
        }
    }

    /// Runs a container's host-side readiness probe ([`ContainerInfo::host_probe`]); `None`
    /// when it has none. The reason of a failure names the probe.
    pub async fn probe_container(&self, container: &ContainerInfo) -> Option<Health> {
        let probe = match container.host_probe() {
            Ok(probe) => probe?,
            Err(reason) => return Some(Health::Unhealthy { reason }),
        };
        Some(match self.check(&probe).await {
            Health::Healthy => Health::Healthy,
            Health::Unhealthy { reason } => Health::Unhealthy { reason: format!("{probe}: {reason}") },
        })
    }

    /// Healthy when a connection is accepted and stays open (or speaks) for [`TCP_SETTLE`].
    async fn connect(&self, addr: SocketAddr) -> Health {
        let stream = match tokio::time::timeout(self.timeout, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Health::Unhealthy { reason: e.to_string() },
            Err(_) => return Health::Unhealthy { reason: format!("timed out after {}s", self.timeout.as_secs_f32()) },
        };
        let mut byte = [0u8; 1];
        match tokio::time::timeout(TCP_SETTLE, stream.peek(&mut byte)).await {
            Err(_) | Ok(Ok(1..)) => Health::Healthy,
            Ok(Ok(0)) => {
                Health::Unhealthy { reason: "connection closed at once: nothing listens behind the port".to_owned() }
            }
            Ok(Err(e)) => Health::Unhealthy { reason: e.to_string() },
        }
    }

    /// GETs `url` and returns its body if the answer is 2xx, else why not.
    pub async fn fetch_text(&self, url: &str) -> Result<String, Health> {
        let response =
            self.client.get(url).send().await.map_err(|e| Health::Unhealthy { reason: self.describe(&e) })?;
        if !response.status().is_success() {
            return Err(Health::Unhealthy { reason: format!("HTTP {}", response.status().as_u16()) });
        }
        response.text().await.map_err(|e| Health::Unhealthy { reason: self.describe(&e) })
    }

    fn describe(&self, e: &reqwest::Error) -> String {
        if e.is_timeout() {
            return format!("timed out after {}s", self.timeout.as_secs_f32());
        }
        // The innermost cause says it best (`Connection refused (os error 111)`).
        let mut source: &dyn std::error::Error = e;
        while let Some(inner) = source.source() {
            source = inner;
        }
        source.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Serves one canned answer per connection on a loopback port.
    async fn serve(answer: &'static str) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(answer.as_bytes()).await;
            }
        });
        format!("http://{addr}/api/health")
    }

    #[tokio::test]
    async fn probes_are_data() {
        let prober = Prober::new(Duration::from_secs(2)).unwrap();
        let ok = serve("HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok").await;
        assert_eq!(prober.probe(&ok).await, Health::Healthy);
        assert_eq!(prober.fetch_text(&ok).await, Ok("ok".to_owned()));
        let down = serve("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
        assert_eq!(prober.probe(&down).await, Health::Unhealthy { reason: "HTTP 503".into() });

        // A port nobody listens on: bind one, learn it, close it.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let Health::Unhealthy { reason } = prober.probe(&format!("http://{closed}/")).await else {
            panic!("a closed port is unhealthy")
        };
        assert!(reason.to_lowercase().contains("refused"), "{reason}");
    }

    #[tokio::test]
    async fn a_tcp_probe_needs_a_listener_that_keeps_the_connection() {
        let prober = Prober::new(Duration::from_secs(2)).unwrap();
        let tcp = |addr| HostProbe::Tcp { addr };

        // A listener that holds the connection open, as naive's does until its client speaks.
        let held = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let held_addr = held.local_addr().unwrap();
        tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((s, _)) = held.accept().await {
                open.push(s);
            }
        });
        assert_eq!(prober.check(&tcp(held_addr)).await, Health::Healthy);

        // Accepted then closed at once: what Docker's proxy does when nothing listens inside.
        let closing = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closing_addr = closing.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((s, _)) = closing.accept().await {
                drop(s);
            }
        });
        let reason = "connection closed at once: nothing listens behind the port".to_owned();
        assert_eq!(prober.check(&tcp(closing_addr)).await, Health::Unhealthy { reason });

        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let Health::Unhealthy { reason } = prober.check(&tcp(closed)).await else { panic!("nobody listens") };
        assert!(reason.to_lowercase().contains("refused"), "{reason}");
    }

    #[tokio::test]
    async fn a_container_is_probed_by_its_label() {
        let prober = Prober::new(Duration::from_secs(2)).unwrap();
        let mut c = ContainerInfo {
            id: "1".into(),
            name: "a".into(),
            image: "i".into(),
            image_id: "sha256:1".into(),
            labels: Default::default(),
            status: crate::ContainerStatus::Running,
            health: crate::HealthStatus::None,
            last_health_output: None,
            exit_code: None,
            restart_count: 0,
            mounts: vec![],
        };
        assert_eq!(prober.probe_container(&c).await, None, "no label, no host probe");
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        c.labels.insert(crate::LABEL_READINESS.into(), format!("http://{closed}/api/health"));
        let Some(Health::Unhealthy { reason }) = prober.probe_container(&c).await else { panic!("nobody listens") };
        assert!(reason.starts_with(&format!("http://{closed}/api/health: ")), "{reason}");
        c.labels.insert(crate::LABEL_READINESS.into(), "exec://x".into());
        assert_eq!(
            prober.probe_container(&c).await,
            Some(Health::Unhealthy { reason: "readiness probe \"exec://x\" must start with http:// or tcp://".into() })
        );
    }
}
