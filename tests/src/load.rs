//! Steady, bounded HTTP load on loopback through a front proxy, for failover tests and
//! `cargo xtask bench failover`: a few client threads send paced GETs, each on a new
//! connection, and record every answer. A [`Record`] (or a window of it) says how many
//! requests failed, the longest stall with no answer, latency percentiles and which channel
//! (the `X-Channel-Tag` the upstream echoes) served.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::upstream::http_get;

/// What load to send.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// The front proxy's site, `127.0.0.1:PORT` (loopback only).
    pub addr: String,
    /// Concurrent clients.
    pub clients: usize,
    /// Requests per second each client sends at most.
    pub rate_per_client: u32,
    /// The load stops by itself after this long, whatever happens.
    pub limit: Duration,
}

impl LoadConfig {
    /// `clients` clients at `rate_per_client` requests/s each against `addr`, for at most `limit`.
    pub fn new(addr: &str, clients: usize, rate_per_client: u32, limit: Duration) -> Self {
        Self { addr: addr.to_owned(), clients, rate_per_client, limit }
    }
}

/// One request.
#[derive(Debug, Clone)]
pub struct Sample {
    /// When it was sent, from the start of the load.
    pub sent: Duration,
    /// When its answer (or error) came, from the start of the load.
    pub done: Duration,
    /// The channel that served it (`X-Channel-Tag` as the upstream saw it; `?` when the body
    /// does not say), or why it failed: a status other than 200, or the connection's error.
    pub outcome: Result<String, String>,
}

impl Sample {
    /// How long it took.
    pub fn latency(&self) -> Duration {
        self.done.saturating_sub(self.sent)
    }
}

/// Running load; [`Load::finish`] stops it and returns what it saw.
pub struct Load {
    started: Instant,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Vec<Sample>>>,
}

impl Load {
    /// Starts the clients. The address must be on loopback.
    pub fn start(config: &LoadConfig) -> anyhow::Result<Self> {
        let addr: SocketAddr = config.addr.parse().with_context(|| format!("load target {:?}", config.addr))?;
        if !addr.ip().is_loopback() {
            bail!("load target {addr} is not on loopback");
        }
        if config.clients == 0 || config.rate_per_client == 0 {
            bail!("load needs at least one client and a rate above zero");
        }
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let period = Duration::from_secs(1) / config.rate_per_client;
        let mut threads = Vec::new();
        for i in 0..config.clients {
            let (stop, target, limit) = (Arc::clone(&stop), config.addr.clone(), config.limit);
            // Clients start spread over one period so that their requests interleave.
            let offset = period * i as u32 / config.clients as u32;
            let thread = std::thread::Builder::new()
                .name(format!("load-{i}"))
                .spawn(move || client(&target, started, offset, period, limit, &stop))
                .context("cannot spawn a load client")?;
            threads.push(thread);
        }
        Ok(Self { started, stop, threads })
    }

    /// Time since the load started: the clock of every [`Sample`].
    pub fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// Stops the clients (each finishes the request it is in) and returns every sample.
    pub fn finish(self) -> Record {
        self.stop.store(true, Ordering::SeqCst);
        let mut samples: Vec<Sample> = self.threads.into_iter().flat_map(|t| t.join().unwrap_or_default()).collect();
        samples.sort_by_key(|s| s.sent);
        Record { samples, from: Duration::ZERO, to: self.started.elapsed() }
    }
}

fn client(
    target: &str,
    started: Instant,
    offset: Duration,
    period: Duration,
    limit: Duration,
    stop: &AtomicBool,
) -> Vec<Sample> {
    let mut samples = Vec::new();
    let mut next = offset;
    while !stop.load(Ordering::SeqCst) && started.elapsed() < limit {
        if let Some(wait) = next.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
        let sent = started.elapsed();
        let outcome = match http_get(target, "/load") {
            Ok(r) if r.status == 200 => Ok(channel_tag(&r.body).unwrap_or("?").to_owned()),
            Ok(r) => Err(format!("HTTP {}", r.status)),
            Err(e) => Err(format!("{e:#}")),
        };
        samples.push(Sample { sent, done: started.elapsed(), outcome });
        // A late client does not burst to catch up: the rate stays bounded.
        next = (next + period).max(started.elapsed());
    }
    samples
}

/// The `X-Channel-Tag` value an upstream echoed in its body (as JSON or as header lines).
pub fn channel_tag(body: &str) -> Option<&str> {
    let at = body.find("x-channel-tag")? + "x-channel-tag".len();
    let rest = body[at..].trim_start_matches(['"', ':', ' ']);
    let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_')).unwrap_or(rest.len());
    (end > 0).then(|| &rest[..end])
}

/// Samples of a load, or of a window of it.
#[derive(Debug, Clone)]
pub struct Record {
    /// Every sample sent in the window, by send time.
    pub samples: Vec<Sample>,
    from: Duration,
    to: Duration,
}

impl Record {
    /// The samples sent in `[from, to)`.
    pub fn window(&self, from: Duration, to: Duration) -> Record {
        let samples = self.samples.iter().filter(|s| s.sent >= from && s.sent < to).cloned().collect();
        Record { samples, from, to }
    }

    /// How many requests there were.
    pub fn total(&self) -> usize {
        self.samples.len()
    }

    /// The failed requests.
    pub fn failures(&self) -> Vec<&Sample> {
        self.samples.iter().filter(|s| s.outcome.is_err()).collect()
    }

    /// The longest time in the window during which no request got an answer: the largest gap
    /// between consecutive answers, the window's start and end counted as answers.
    pub fn longest_stall(&self) -> Duration {
        let mut done: Vec<Duration> = self.samples.iter().filter(|s| s.outcome.is_ok()).map(|s| s.done).collect();
        done.sort();
        let mut last = self.from;
        let mut longest = Duration::ZERO;
        for d in done.into_iter().chain([self.to]) {
            longest = longest.max(d.saturating_sub(last));
            last = last.max(d);
        }
        longest
    }

    /// The `p`th percentile (0-100) of the answered requests' latency; zero with none.
    pub fn percentile(&self, p: f64) -> Duration {
        let mut l: Vec<Duration> = self.samples.iter().filter(|s| s.outcome.is_ok()).map(Sample::latency).collect();
        if l.is_empty() {
            return Duration::ZERO;
        }
        l.sort();
        let rank = ((p / 100.0) * l.len() as f64).ceil() as usize;
        l[rank.clamp(1, l.len()) - 1]
    }

    /// The channel that served the first answered request.
    pub fn first_served(&self) -> Option<&str> {
        self.samples.iter().find_map(|s| s.outcome.as_deref().ok())
    }

    /// The channel that served the last answered request.
    pub fn last_served(&self) -> Option<&str> {
        self.samples.iter().rev().find_map(|s| s.outcome.as_deref().ok())
    }

    /// Each failure, one per line, for an assertion message.
    pub fn describe_failures(&self) -> String {
        self.failures()
            .iter()
            .map(|s| format!("at {:.3}s: {}", s.sent.as_secs_f64(), s.outcome.as_ref().err().map_or("", |e| e)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn record(samples: &[(u64, u64, Result<&str, &str>)], to: u64) -> Record {
        let samples = samples
            .iter()
            .map(|(s, d, o)| Sample {
                sent: ms(*s),
                done: ms(*d),
                outcome: o.map(str::to_owned).map_err(str::to_owned),
            })
            .collect();
        Record { samples, from: Duration::ZERO, to: ms(to) }
    }

    #[test]
    fn stalls_failures_and_percentiles_come_from_the_samples() {
        let r = record(
            &[(0, 10, Ok("xray")), (5, 300, Ok("hysteria2")), (20, 30, Err("HTTP 502")), (300, 310, Ok("hysteria2"))],
            400,
        );
        assert_eq!(r.longest_stall(), ms(290), "from 10 ms to 300 ms nothing was answered");
        assert_eq!(r.failures().len(), 1);
        assert_eq!((r.first_served(), r.last_served()), (Some("xray"), Some("hysteria2")));
        assert_eq!(r.percentile(50.0), ms(10));
        assert_eq!(r.percentile(100.0), ms(295));
        let w = r.window(ms(1), ms(301));
        assert_eq!(w.total(), 3);
        assert_eq!(w.longest_stall(), ms(299), "the window's start counts as an answer");
    }

    #[test]
    fn the_tag_is_found_in_json_and_in_header_lines() {
        assert_eq!(channel_tag(r#"{"headers":{"x-channel-tag":"xray"}}"#), Some("xray"));
        assert_eq!(channel_tag("standin 0123\nx-channel-tag: hysteria2\nhost: x\n"), Some("hysteria2"));
        assert_eq!(channel_tag("nothing here"), None);
    }
}
