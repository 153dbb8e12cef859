//! Builders shared by the unit tests: metrics pages and pools.

use crate::metrics::UpstreamMetrics;
use edge_core::PoolMember;

use crate::transitions::Observation;

/// A metrics page with one health series per `(upstream, 0|1)`.
pub(crate) fn page(pairs: &[(&str, u8)]) -> Observation {
    let text: String =
        pairs.iter().map(|(u, v)| format!("caddy_reverse_proxy_upstreams_healthy{{upstream=\"{u}\"}} {v}\n")).collect();
    Observation::Metrics { source: "m".into(), metrics: UpstreamMetrics::parse(&text) }
}

/// A pool of the given upstreams, all of channel `ch`.
pub(crate) fn pool(ids: &[&str]) -> Vec<PoolMember> {
    ids.iter().map(|u| PoolMember::new("ch", *u)).collect()
}

/// A loopback HTTP server that answers every request `status` with the request line as the
/// body, as a careless server echoes the path it did not find. Returns `http://127.0.0.1:PORT`.
pub(crate) async fn echo_server(status: u16) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&request);
                let body = text.lines().next().unwrap_or_default().to_owned();
                let answer = format!(
                    "HTTP/1.1 {status} Echo\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(answer.as_bytes()).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}
