//! Stand-in channel server: the process inside test and demo images in place of xray,
//! hysteria2, naive, coturn or the SFU.
//!
//! - `GET /api/health` answers 200 `ok`, or 503 when `STANDIN_HEALTH=fail`.
//! - Any other request is echoed: request line and headers, as text, so a test can see
//!   which stand-in a proxy reached and with which headers (`X-Channel-Tag`).
//! - A request in a forward proxy's absolute form (`GET http://host/path`) is answered as if
//!   the path were asked directly: behind naive's pool member it plays naive's proxy and the
//!   backend at once.
//! - Listens on `STANDIN_LISTEN` (default `0.0.0.0:3080`); unknown arguments are ignored so
//!   it runs under any service's manifest command.
//! - Invoked as `wget` (a copy at `/usr/bin/wget` in a `FROM scratch` image) it fetches the
//!   URL among its arguments and exits 0 on a 2xx answer, so manifest health checks such
//!   as `wget -q -O /dev/null http://127.0.0.1:3080/api/health` work unchanged.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

const MAX_HEAD: usize = 64 * 1024;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let program = args.first().map(|a| a.rsplit('/').next().unwrap_or(a)).unwrap_or_default();
    if program == "wget" {
        return wget(&args[1..]);
    }
    serve()
}

fn serve() -> ExitCode {
    let listen = std::env::var("STANDIN_LISTEN").unwrap_or_else(|_| "0.0.0.0:3080".to_owned());
    let healthy = std::env::var("STANDIN_HEALTH").map(|v| v != "fail").unwrap_or(true);
    let name = std::env::var("STANDIN_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "edge-standin".to_owned());
    let listener = match TcpListener::bind(&listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("edge-standin: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("edge-standin {name} listening on {listen} (health {})", if healthy { "ok" } else { "fail" });
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let name = name.clone();
        std::thread::spawn(move || {
            // A client that hangs up early (a health checker, a port probe) is not news.
            if let Err(e) = handle(stream, healthy, &name)
                && !matches!(e.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe)
            {
                eprintln!("edge-standin: {e}");
            }
        });
    }
    ExitCode::SUCCESS
}

fn handle(mut stream: TcpStream, healthy: bool, name: &str) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let head = read_head(&mut stream)?;
    let mut lines = head.lines();
    let request_line = lines.next().unwrap_or_default().to_owned();
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or_default(), parts.next().unwrap_or("/"));
    // A forward proxy's request in absolute form (Caddy through the channel's proxy port): the
    // stand-in plays the proxy and the backend behind it.
    let path = target.strip_prefix("http://").map_or(target, |rest| rest.find('/').map_or("/", |i| &rest[i..]));
    let (status, body) = if path == "/api/health" || path.starts_with("/api/health?") {
        if healthy { ("200 OK", "ok\n".to_owned()) } else { ("503 Service Unavailable", "unhealthy\n".to_owned()) }
    } else {
        let mut body = format!("standin {name}\n{request_line}\n");
        for line in lines.filter(|l| !l.is_empty()) {
            match line.split_once(':') {
                Some((k, v)) => body.push_str(&format!("{}: {}\n", k.trim().to_ascii_lowercase(), v.trim())),
                None => body.push_str(&format!("{line}\n")),
            }
        }
        ("200 OK", body)
    };
    println!("{request_line} -> {status}");
    let body = if method == "HEAD" { "" } else { body.as_str() };
    write!(
        stream,
        "HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

/// Reads up to the blank line ending an HTTP request head.
fn read_head(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut reader = BufReader::new(stream.take(MAX_HEAD as u64));
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            return Ok(head);
        }
        head.push_str(line.trim_end_matches(['\r', '\n']));
        head.push('\n');
    }
}

/// `wget [-q] [-O FILE] [--spider] URL`: exit 0 on a 2xx answer. Plain http only.
fn wget(args: &[String]) -> ExitCode {
    let quiet = args.iter().any(|a| a == "-q" || a == "--quiet");
    let Some(url) = args.iter().find(|a| a.starts_with("http://")) else {
        eprintln!("wget (edge-standin): no http:// URL among the arguments");
        return ExitCode::FAILURE;
    };
    match fetch(url) {
        Ok(status) if (200..300).contains(&status) => ExitCode::SUCCESS,
        Ok(status) => {
            if !quiet {
                eprintln!("wget: server returned HTTP {status}");
            }
            // Health checks report the output of the last failed check: say why even with -q.
            println!("HTTP {status} from {url}");
            ExitCode::FAILURE
        }
        Err(e) => {
            println!("cannot fetch {url}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn fetch(url: &str) -> std::io::Result<u16> {
    let rest = url.trim_start_matches("http://");
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = authority
        .to_socket_addrs()
        .or_else(|_| format!("{authority}:80").to_socket_addrs())?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("{authority} resolves to nothing")))?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
    stream.set_read_timeout(Some(Duration::from_secs(3)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: {authority}\r\nuser-agent: edge-standin-wget\r\nconnection: close\r\n\r\n"
    )?;
    let mut status_line = String::new();
    BufReader::new(stream).read_line(&mut status_line)?;
    status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {:?}", status_line.trim())))
}
