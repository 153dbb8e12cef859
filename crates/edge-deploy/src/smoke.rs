//! `smoke`: the stack's `[[smoke]]` checks, each a request through the front proxy with the
//! status or body it must answer. Install, `edge smoke` and `healthcheck` run them.
//!
//! Requests go to the recorded front URL (`FRONT_URL` in `install.env`) but connect to this
//! host's loopback whatever its name resolves to: the front proxy being checked is this one.
//! A failed request is a failed check (data), never an error.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use edge_core::{InstallRecord, SmokeCheck};
use edge_render::{Source, Variables};
use serde::Serialize;

use crate::{Node, OpError};

/// How long one smoke request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One check's result.
#[derive(Debug, Clone, Serialize)]
pub struct SmokeResult {
    /// The method.
    pub method: String,
    /// The path.
    pub path: String,
    /// What it must answer, e.g. `status 200, body contains "ok"`.
    pub expected: String,
    /// Whether it did.
    pub ok: bool,
    /// The status it answered.
    pub status: Option<u16>,
    /// What was seen, or why the request failed.
    pub detail: String,
    /// Wall time of the request.
    pub duration_ms: u64,
}

/// Every check of the stack.
#[derive(Debug, Clone, Serialize)]
pub struct SmokeReport {
    /// The stack.
    pub stack: String,
    /// The front URL the checks went to.
    pub url: Option<String>,
    /// Whether every check passed (true when the stack has none).
    pub ok: bool,
    /// How many passed.
    pub passed: usize,
    /// How many failed.
    pub failed: usize,
    /// The checks, in the manifest's order.
    pub checks: Vec<SmokeResult>,
}

impl SmokeReport {
    /// The first failed check as one line (`smoke GET /api/rows: want status 200, answered
    /// 500`), if any.
    pub fn first_failure(&self) -> Option<String> {
        let c = self.checks.iter().find(|c| !c.ok)?;
        Some(format!("smoke {} {}: want {}, {}", c.method, c.path, c.expected, c.detail))
    }
}

/// Runs the stack's smoke checks through the front proxy recorded by the last install. Only an
/// unreadable install record or secret is an error; every request's failure is in the report.
pub async fn smoke(node: &Node) -> Result<SmokeReport, OpError> {
    let stack = node.stack();
    let record = InstallRecord::load_optional(&node.paths.install_env())?;
    let url = record.as_ref().and_then(|r| r.front_url.clone());
    let ca = record.as_ref().and_then(|r| r.front_ca.clone());
    let checks = if stack.smoke.is_empty() {
        Vec::new()
    } else {
        // Headers may name generated secrets (`Authorization: Bearer {{ APP_API_KEY }}`).
        let secrets = edge_render::read_secrets(node.paths.config_dir(), &stack.secrets)?;
        let vars = Variables::new(&stack.variables).with_layer(Source::Secret, secrets);
        let client = match &url {
            None => {
                Err(format!("no front URL recorded in {}: install the stack first", node.paths.install_env().display()))
            }
            Some(url) => client(url, ca.as_deref()),
        };
        let mut out = Vec::new();
        for check in &stack.smoke {
            out.push(run(check, url.as_deref().unwrap_or_default(), client.as_ref(), &vars).await);
        }
        out
    };
    let failed = checks.iter().filter(|c| !c.ok).count();
    Ok(SmokeReport {
        stack: stack.stack.name.clone(),
        url,
        ok: failed == 0,
        passed: checks.len() - failed,
        failed,
        checks,
    })
}

/// Runs the smoke checks until they all pass or `limit` is over (a front proxy may still be
/// obtaining its certificate right after install); returns the last report.
pub async fn smoke_until(node: &Node, limit: Duration) -> Result<SmokeReport, OpError> {
    let started = Instant::now();
    loop {
        let report = smoke(node).await?;
        if report.ok || started.elapsed() >= limit {
            return Ok(report);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A client that reaches the front URL's host on loopback and trusts `ca` besides the system roots.
fn client(url: &str, ca: Option<&str>) -> Result<reqwest::Client, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("front URL {url:?}: {e}"))?;
    let host = parsed.host_str().ok_or_else(|| format!("front URL {url:?} names no host"))?;
    let port = parsed.port_or_known_default().ok_or_else(|| format!("front URL {url:?} has no port"))?;
    let mut builder = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .resolve(host, SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).map_err(|e| format!("cannot read the front CA {ca}: {e}"))?;
        let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| format!("front CA {ca}: {e}"))?;
        builder = builder.add_root_certificate(cert);
    }
    builder.build().map_err(|e| format!("cannot build an HTTP client: {e}"))
}

async fn run(
    check: &SmokeCheck,
    base: &str,
    client: Result<&reqwest::Client, &String>,
    vars: &Variables,
) -> SmokeResult {
    let started = Instant::now();
    let mut expected = Vec::new();
    if let Some(s) = check.status {
        expected.push(format!("status {s}"));
    }
    if let Some(b) = &check.body {
        expected.push(format!("body contains {b:?}"));
    }
    let (ok, status, detail) = match client {
        Err(reason) => (false, None, reason.clone()),
        Ok(client) => match request(client, check, base, vars).await {
            Err(reason) => (false, None, reason),
            Ok((status, body)) => judge(check, status, &body),
        },
    };
    SmokeResult {
        method: check.method.clone(),
        path: check.path.clone(),
        expected: expected.join(", "),
        ok,
        status,
        detail,
        duration_ms: started.elapsed().as_millis() as u64,
    }
}

async fn request(
    client: &reqwest::Client,
    check: &SmokeCheck,
    base: &str,
    vars: &Variables,
) -> Result<(u16, String), String> {
    let method = reqwest::Method::from_bytes(check.method.as_bytes()).map_err(|e| format!("method: {e}"))?;
    // The path may name variables too; reports show the manifest's text, never a secret.
    let path = crate::observe::substitute(&check.path, vars)
        .ok_or_else(|| "the path names a variable that is not set".to_owned())?;
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let shown = format!("{}{}", base.trim_end_matches('/'), check.path);
    let mut req = client.request(method, &url);
    if let Some(header) = &check.header {
        let resolved = crate::observe::substitute(header, vars)
            .ok_or_else(|| "the header names a variable that is not set".to_owned())?;
        let (name, value) = resolved.split_once(':').unwrap_or((&resolved, ""));
        req = req.header(name.trim(), value.trim());
    }
    let resp = req.send().await.map_err(|e| describe(&shown, e))?;
    let status = resp.status().as_u16();
    let body = resp.text().await.map_err(|e| format!("{shown}: reading the body: {}", e.without_url()))?;
    Ok((status, body))
}

/// The error and its causes: reqwest's own text hides the TLS or connect reason. `url` is the
/// manifest's text; the resolved one, which may hold a secret, is left out.
fn describe(url: &str, e: reqwest::Error) -> String {
    format!("{url}: {}", crate::error::chain(&e.without_url()))
}

fn judge(check: &SmokeCheck, status: u16, body: &str) -> (bool, Option<u16>, String) {
    let mut problems = Vec::new();
    if let Some(want) = check.status
        && want != status
    {
        problems.push(format!("answered {status}, expected {want}"));
    }
    if let Some(want) = &check.body
        && !body.contains(want.as_str())
    {
        let shown: String = body.chars().take(80).collect();
        problems.push(format!("body has no {want:?} (starts {shown:?})"));
    }
    if problems.is_empty() {
        (true, Some(status), format!("answered {status}"))
    } else {
        (false, Some(status), problems.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(status: Option<u16>, body: Option<&str>, got: (u16, &str), ok: bool) {
        let c =
            SmokeCheck { method: "GET".into(), path: "/".into(), header: None, status, body: body.map(str::to_owned) };
        assert_eq!(judge(&c, got.0, got.1).0, ok, "{status:?} {body:?} against {got:?}");
    }

    /// One loopback HTTP server answering each request with its request line as the body.
    fn echo_server() -> String {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://localhost:{}", listener.local_addr().unwrap().port());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                let _ = reader.read_line(&mut line);
                let body = line.trim_end();
                let _ = write!(&stream, "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
            }
        });
        url
    }

    #[tokio::test]
    async fn the_path_names_variables_and_the_report_shows_the_manifest_text() {
        let url = echo_server();
        let client = client(&url, None).unwrap();
        let vars = Variables::new(&[("TENANT".to_owned(), "acme".to_owned())].into_iter().collect());
        let check = |path: &str, body: &str| SmokeCheck {
            method: "GET".into(),
            path: path.into(),
            header: None,
            status: Some(200),
            body: Some(body.into()),
        };
        let got = run(&check("/t/{{ TENANT }}/health", "GET /t/acme/health"), &url, Ok(&client), &vars).await;
        assert!(got.ok, "{got:?}");
        assert_eq!(got.path, "/t/{{ TENANT }}/health");
        let got = run(&check("/t/{{ NOPE }}", "x"), &url, Ok(&client), &vars).await;
        assert_eq!((got.ok, got.detail.as_str()), (false, "the path names a variable that is not set"));
    }

    #[test]
    fn a_check_passes_only_when_status_and_body_match() {
        check(Some(200), None, (200, ""), true);
        check(Some(401), None, (200, "secret"), false);
        check(None, Some("ok"), (500, "all ok"), true);
        check(Some(200), Some("ok"), (200, "fail"), false);
        check(Some(404), Some("not"), (404, "not found"), true);
    }
}
