//! Handing a running service its new config in place (`reload` in the manifest), so that a
//! config-only change keeps the container, its id and its connections.
//!
//! `caddy-admin` POSTs the Caddyfile's text to Caddy's admin API (`/load`, Content-Type
//! `text/caddyfile`): Caddy adapts it, starts the new config and stops the old one gracefully,
//! or answers 400 with its error and keeps running the old one. The text goes in the request,
//! not as a path: the host's file is replaced by rename, so a single-file bind mount still
//! shows the container the old inode until its next start.

use std::time::Duration;

use edge_core::{Reload, ReloadVia};

use crate::DeployError;

/// How long a reload may take: Caddy answers once the new config runs and the old one stopped.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// Applies `contents` (the rendered file `file` of `service`) to the running service as its
/// `reload` says. An error names the service, the endpoint and what the service answered.
pub async fn apply(service: &str, file: &str, reload: &Reload, contents: &[u8]) -> Result<(), DeployError> {
    let failed = |message: String| DeployError::Reload {
        service: service.to_owned(),
        file: file.to_owned(),
        via: reload.via.as_str().to_owned(),
        admin: reload.admin.clone(),
        message,
    };
    match reload.via {
        ReloadVia::CaddyAdmin => caddy_load(&reload.admin, contents).await.map_err(failed),
    }
}

/// `POST http://ADMIN/load` with a Caddyfile; `Err` holds Caddy's own error text.
async fn caddy_load(admin: &str, caddyfile: &[u8]) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .timeout(RELOAD_TIMEOUT)
        .no_proxy()
        .build()
        .map_err(|e| format!("cannot build the http client: {e}"))?;
    let response = client
        .post(format!("http://{admin}/load"))
        .header("Content-Type", "text/caddyfile")
        .body(caddyfile.to_vec())
        .send()
        .await
        .map_err(|e| describe(&e))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    Err(caddy_error(status.as_u16(), &body))
}

/// Caddy's `{"error": "..."}` answer, or the status and body as they came.
fn caddy_error(status: u16, body: &str) -> String {
    let from_json = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned));
    match from_json {
        Some(error) => format!("caddy refused it (HTTP {status}): {error}"),
        None => format!("HTTP {status}: {}", body.trim()),
    }
}

/// The innermost cause of a transport error (`Connection refused (os error 111)`).
fn describe(e: &reqwest::Error) -> String {
    let mut source: &dyn std::error::Error = e;
    while let Some(inner) = source.source() {
        source = inner;
    }
    format!("cannot reach it: {source}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// One canned answer per connection; returns the address and the requests received.
    async fn admin(answer: &'static str) -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = vec![0u8; 8192];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let _ = tx.send(String::from_utf8_lossy(&buf[..n]).into_owned());
                let _ = s.write_all(answer.as_bytes()).await;
            }
        });
        (addr, rx)
    }

    fn reload(admin: &str) -> Reload {
        Reload { template: "caddy".into(), via: ReloadVia::CaddyAdmin, admin: admin.into() }
    }

    #[tokio::test]
    async fn the_caddyfile_goes_to_the_admin_api_and_a_refusal_carries_caddys_error() {
        let (ok, mut seen) = admin("HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
        apply("caddy", "Caddyfile", &reload(&ok), b":8080 {\n\trespond ok\n}\n").await.unwrap();
        let request = seen.recv().await.unwrap();
        assert!(request.starts_with("POST /load HTTP/1.1\r\n"), "{request}");
        assert!(request.to_ascii_lowercase().contains("content-type: text/caddyfile"), "{request}");
        assert!(request.ends_with(":8080 {\n\trespond ok\n}\n"), "the text itself, not a path: {request}");

        let body = r#"{"error":"adapting config using caddyfile: parsing caddyfile tokens for 'reverse_proxy': bad duration"}"#;
        let answer: &'static str = Box::leak(
            format!("HTTP/1.1 400 Bad Request\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len())
                .into_boxed_str(),
        );
        let (bad, _seen) = admin(answer).await;
        let err = apply("caddy", "Caddyfile", &reload(&bad), b"x").await.unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "caddy did not take its new Caddyfile through caddy-admin at {bad}: caddy refused it (HTTP 400): \
                 adapting config using caddyfile: parsing caddyfile tokens for 'reverse_proxy': bad duration"
            )
        );

        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
        let err = apply("caddy", "Caddyfile", &reload(&closed), b"x").await.unwrap_err().to_string();
        assert!(
            err.contains(&format!("at {closed}: cannot reach it: ")) && err.to_lowercase().contains("refused"),
            "{err}"
        );
    }
}
