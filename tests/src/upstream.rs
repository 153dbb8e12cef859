//! Tiny loopback HTTP upstreams for front-proxy tests: `/api/health` answers
//! 200 (or 503 when unhealthy), every other path echoes the request's headers
//! as JSON; each server can be switched healthy, unhealthy or stopped
//! (connection refused) at runtime. Also a minimal HTTP/1.1 GET client.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;

/// What an [`Upstream`] does with requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamMode {
    /// `/api/health` answers 200; other paths echo.
    Healthy,
    /// Every request answers 503.
    Unhealthy,
    /// The port is closed: connections are refused.
    Stopped,
}

impl UpstreamMode {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Healthy,
            1 => Self::Unhealthy,
            _ => Self::Stopped,
        }
    }
    fn as_u8(self) -> u8 {
        match self {
            Self::Healthy => 0,
            Self::Unhealthy => 1,
            Self::Stopped => 2,
        }
    }
}

/// A request an upstream received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenRequest {
    /// Request path.
    pub path: String,
    /// Headers, names lower-cased.
    pub headers: BTreeMap<String, String>,
}

struct Shared {
    name: String,
    mode: AtomicU8,
    quit: AtomicBool,
    seen: Mutex<Vec<SeenRequest>>,
}

/// A loopback HTTP server on an ephemeral port, served from its own thread; stopped on drop.
pub struct Upstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Upstream {
    /// Starts a healthy upstream on `127.0.0.1:0`; `name` is echoed in its answers.
    pub fn start(name: &str) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind a loopback port")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            mode: AtomicU8::new(UpstreamMode::Healthy.as_u8()),
            quit: AtomicBool::new(false),
            seen: Mutex::new(Vec::new()),
        });
        let s = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("upstream-{name}"))
            .spawn(move || serve(listener, addr, &s))
            .context("cannot spawn the upstream thread")?;
        Ok(Self { addr, shared, thread: Some(thread) })
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `127.0.0.1:PORT`, as Caddy names the upstream in its metrics.
    pub fn hostport(&self) -> String {
        self.addr.to_string()
    }

    /// Switches what it does; takes effect within a few milliseconds.
    pub fn set_mode(&self, mode: UpstreamMode) {
        self.shared.mode.store(mode.as_u8(), Ordering::SeqCst);
        // Let the accept loop close or reopen the port before the caller goes on.
        std::thread::sleep(Duration::from_millis(30));
    }

    /// What it does now.
    pub fn mode(&self) -> UpstreamMode {
        UpstreamMode::from_u8(self.shared.mode.load(Ordering::SeqCst))
    }

    /// Requests received so far (health checks included).
    pub fn seen(&self) -> Vec<SeenRequest> {
        self.shared.seen.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.shared.quit.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(listener: TcpListener, addr: SocketAddr, shared: &Shared) {
    let mut listener = Some(listener);
    while !shared.quit.load(Ordering::SeqCst) {
        let mode = UpstreamMode::from_u8(shared.mode.load(Ordering::SeqCst));
        match (&listener, mode) {
            (Some(_), UpstreamMode::Stopped) => listener = None,
            (None, UpstreamMode::Stopped) => std::thread::sleep(Duration::from_millis(5)),
            (None, _) => listener = TcpListener::bind(addr).ok(),
            (Some(l), _) => {
                let _ = l.set_nonblocking(true);
                match l.accept() {
                    Ok((stream, _)) => handle(stream, shared),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        }
    }
}

fn handle(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let Ok(mut reader) = stream.try_clone().map(BufReader::new) else { return };
    let Some((_, path, headers)) = read_head(&mut reader) else { return };
    if let Some(len) = headers.get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        let mut body = vec![0; len];
        let _ = reader.read_exact(&mut body);
    }
    if let Ok(mut seen) = shared.seen.lock() {
        seen.push(SeenRequest { path: path.clone(), headers: headers.clone() });
    }
    let (status, body) = match UpstreamMode::from_u8(shared.mode.load(Ordering::SeqCst)) {
        UpstreamMode::Healthy if path == "/api/health" => (200, "ok\n".to_owned()),
        UpstreamMode::Healthy => {
            (200, serde_json::json!({ "upstream": shared.name, "path": path, "headers": headers }).to_string())
        }
        _ => (503, "unhealthy\n".to_owned()),
    };
    let reason = if status == 200 { "OK" } else { "Service Unavailable" };
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.flush();
}

/// Reads a request or response head: first line, then headers (names lower-cased).
fn read_head(reader: &mut impl BufRead) -> Option<(String, String, BTreeMap<String, String>)> {
    let mut first = String::new();
    reader.read_line(&mut first).ok()?;
    let mut parts = first.split_whitespace();
    let (a, b) = (parts.next()?.to_owned(), parts.next()?.to_owned());
    let mut headers = BTreeMap::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            break;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    Some((a, b, headers))
}

/// An HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers, names lower-cased.
    pub headers: BTreeMap<String, String>,
    /// Body text.
    pub body: String,
}

impl Response {
    /// The body as JSON.
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_str(&self.body).with_context(|| format!("body is not JSON: {:?}", self.body))
    }
}

/// `GET http://ADDR/PATH` over HTTP/1.1 with `Connection: close`, 10 s timeout.
pub fn http_get(addr: &str, path: &str) -> anyhow::Result<Response> {
    let mut stream = TcpStream::connect(addr).with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut reader = BufReader::new(stream);
    let (_, status, headers) = read_head(&mut reader).with_context(|| format!("no HTTP answer from {addr}"))?;
    let mut body = Vec::new();
    if let Some(len) = headers.get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(len, 0);
        reader.read_exact(&mut body)?;
    } else if headers.get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim(), 16).context("bad chunk size")?;
            let mut chunk = vec![0; n + 2];
            reader.read_exact(&mut chunk)?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else {
        reader.read_to_end(&mut body)?;
    }
    Ok(Response {
        status: status.parse().with_context(|| format!("bad status {status:?}"))?,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}
