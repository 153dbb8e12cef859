//! A tiny HTTP forward proxy on loopback that stands where naive's local HTTP listener would
//! be. Like naive's, it takes `CONNECT host:port` and plain requests in absolute form, sends a
//! plain request where its `Host` header points (with the request line made relative), and then
//! relays bytes both ways. Every request it forwarded is logged; stopped on drop.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// A request the proxy forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarded {
    /// `CONNECT`, `GET`, ...
    pub method: String,
    /// The request target as the client sent it (`host:port` or `http://host:port/path`).
    pub target: String,
    /// Where the proxy connected (`HOST:PORT`).
    pub destination: String,
}

struct Shared {
    quit: AtomicBool,
    log: Mutex<Vec<Forwarded>>,
}

/// The proxy, on an ephemeral loopback port, served from its own thread.
pub struct ForwardProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl ForwardProxy {
    /// Starts the proxy.
    pub fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared { quit: AtomicBool::new(false), log: Mutex::new(Vec::new()) });
        let s = Arc::clone(&shared);
        let thread = std::thread::spawn(move || {
            while !s.quit.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let s = Arc::clone(&s);
                        std::thread::spawn(move || {
                            let _ = serve(stream, &s);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Ok(Self { addr, shared, thread: Some(thread) })
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The requests forwarded so far, in order.
    pub fn log(&self) -> Vec<Forwarded> {
        self.shared.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Drop for ForwardProxy {
    fn drop(&mut self) {
        self.shared.quit.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(mut client: TcpStream, shared: &Shared) -> std::io::Result<()> {
    client.set_nonblocking(false)?;
    client.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = client.read(&mut chunk)?;
        if n == 0 || buf.len() > 64 * 1024 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let request_line = head.lines().next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (method, target, version) =
        (parts.next().unwrap_or_default(), parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let (destination, first) = if method == "CONNECT" {
        (target.to_owned(), buf[head_end..].to_vec())
    } else {
        // naive routes a plain request by its Host header, not by the URI.
        let host = head
            .lines()
            .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("host")).map(|(_, v)| v.trim()))
            .unwrap_or_default();
        let destination = if host.contains(':') { host.to_owned() } else { format!("{host}:80") };
        let path = target.strip_prefix("http://").map_or(target, |rest| rest.find('/').map_or("/", |i| &rest[i..]));
        let mut rewritten = format!("{method} {path} {version}").into_bytes();
        rewritten.extend_from_slice(&buf[request_line.len()..]);
        (destination, rewritten)
    };
    let mut upstream = match TcpStream::connect(&destination) {
        Ok(s) => s,
        Err(_) => return client.write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n"),
    };
    if let Ok(mut log) = shared.log.lock() {
        log.push(Forwarded { method: method.to_owned(), target: target.to_owned(), destination });
    }
    if method == "CONNECT" {
        client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
    }
    upstream.write_all(&first)?;
    client.set_read_timeout(None)?;
    let (mut c2, mut u2) = (client.try_clone()?, upstream.try_clone()?);
    let back = std::thread::spawn(move || {
        let _ = std::io::copy(&mut u2, &mut c2);
        let _ = c2.shutdown(Shutdown::Write);
    });
    let _ = std::io::copy(&mut client, &mut upstream);
    let _ = upstream.shutdown(Shutdown::Write);
    let _ = back.join();
    Ok(())
}
