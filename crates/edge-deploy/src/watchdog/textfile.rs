//! The watchdog's own metrics in the Prometheus text format, for node_exporter's textfile
//! collector: written atomically after every tick and container event.
//!
//! Hand-written rather than through a metrics registry: a dozen series do not need one, and
//! the process stays small for a timer that runs every minute. Counters survive `--once`
//! runs by being read back from the previous file (a missing or foreign file starts them at 0,
//! which Prometheus reads as a counter reset).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::OpError;

/// Alert counters, accumulated across runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    /// Messages delivered, by transport (`webhook`, `telegram`).
    pub(crate) sent: BTreeMap<String, u64>,
    /// Events delivered inside a digest together with others.
    pub(crate) coalesced: u64,
    /// Transport failures (including those a fallback made up for).
    pub(crate) failures: u64,
    /// Container events reported (daemon mode).
    pub(crate) container_events: u64,
}

/// One pool upstream as the last tick saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UpstreamSample {
    pub(crate) upstream: String,
    /// Empty in legacy mode (no stack state): the label is left out.
    pub(crate) channel: String,
    /// `None`: no series (unknown).
    pub(crate) healthy: Option<bool>,
}

/// Everything one file holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Snapshot {
    /// Channel id and whether it is `active` (vs `failed_at_runtime`).
    pub(crate) channels: Vec<(String, bool)>,
    pub(crate) upstreams: Vec<UpstreamSample>,
    /// Whether the metrics page was read on the last tick.
    pub(crate) metrics_up: bool,
    pub(crate) counters: Counters,
    /// Events waiting in the outbox.
    pub(crate) queued: usize,
    pub(crate) last_tick_seconds: f64,
    pub(crate) last_tick_timestamp: u64,
}

/// Where the file goes.
#[derive(Debug, Clone)]
pub(crate) struct Textfile {
    path: PathBuf,
}

const TRANSPORTS: [&str; 2] = ["webhook", "telegram"];

impl Textfile {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self { path }
    }

    /// The counters of the previous file, if it is ours.
    pub(crate) fn load_counters(&self) -> Counters {
        std::fs::read_to_string(&self.path).map(|t| parse_counters(&t)).unwrap_or_default()
    }

    /// Writes `snapshot` atomically (node_exporter never reads half a file).
    pub(crate) fn write(&self, snapshot: &Snapshot) -> Result<(), OpError> {
        write_file(&self.path, &render(snapshot))
    }
}

fn write_file(path: &Path, text: &str) -> Result<(), OpError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| OpError::TextfileDir { path: dir.to_owned(), source })?;
    }
    edge_core::write_atomic_with_mode(path, text.as_bytes(), 0o644)
        .map_err(|source| OpError::Textfile { path: path.to_owned(), source })
}

/// Escapes a label value as the text format wants: `\` , `"` and newline.
pub(crate) fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn labels(pairs: &[(&str, &str)]) -> String {
    let inner: Vec<String> =
        pairs.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| format!("{k}=\"{}\"", escape_label(v))).collect();
    if inner.is_empty() { String::new() } else { format!("{{{}}}", inner.join(",")) }
}

/// The file's text.
pub(crate) fn render(s: &Snapshot) -> String {
    let mut out = String::new();
    if !s.channels.is_empty() {
        family(
            &mut out,
            "edge_watchdog_channel_up",
            "gauge",
            "Whether the channel is active (1) or failed at runtime (0), as channels-status.env says.",
        );
        for (channel, up) in &s.channels {
            let _ = writeln!(out, "edge_watchdog_channel_up{} {}", labels(&[("channel", channel)]), u8::from(*up));
        }
    }
    let known: Vec<&UpstreamSample> = s.upstreams.iter().filter(|u| u.healthy.is_some()).collect();
    if !known.is_empty() {
        family(
            &mut out,
            "edge_watchdog_upstream_healthy",
            "gauge",
            "Health of each pool upstream in the front proxy's metrics (1 healthy, 0 unhealthy; absent when it has no series).",
        );
        for u in known {
            let _ = writeln!(
                out,
                "edge_watchdog_upstream_healthy{} {}",
                labels(&[("channel", &u.channel), ("upstream", &u.upstream)]),
                u8::from(u.healthy == Some(true))
            );
        }
    }
    let unknown: Vec<&UpstreamSample> = s.upstreams.iter().filter(|u| u.healthy.is_none()).collect();
    family(
        &mut out,
        "edge_watchdog_upstreams_unknown",
        "gauge",
        "Pool upstreams without a health series in the front proxy's metrics.",
    );
    let _ = writeln!(out, "edge_watchdog_upstreams_unknown {}", unknown.len());
    family(
        &mut out,
        "edge_watchdog_metrics_up",
        "gauge",
        "Whether the front proxy's metrics page could be read on the last tick.",
    );
    let _ = writeln!(out, "edge_watchdog_metrics_up {}", u8::from(s.metrics_up));

    family(&mut out, "edge_watchdog_alerts_sent_total", "counter", "Alert messages delivered, by transport.");
    let mut sent = s.counters.sent.clone();
    for t in TRANSPORTS {
        sent.entry(t.to_owned()).or_insert(0);
    }
    for (transport, n) in &sent {
        let _ = writeln!(out, "edge_watchdog_alerts_sent_total{} {n}", labels(&[("transport", transport)]));
    }
    family(
        &mut out,
        "edge_watchdog_alerts_coalesced_total",
        "counter",
        "Alert events delivered inside a digest with others (held by the rate limit, never dropped).",
    );
    let _ = writeln!(out, "edge_watchdog_alerts_coalesced_total {}", s.counters.coalesced);
    family(
        &mut out,
        "edge_watchdog_alert_delivery_failures_total",
        "counter",
        "Failed delivery attempts, including those a fallback transport made up for.",
    );
    let _ = writeln!(out, "edge_watchdog_alert_delivery_failures_total {}", s.counters.failures);
    family(
        &mut out,
        "edge_watchdog_alerts_queued",
        "gauge",
        "Alert events waiting in the outbox (rate-limit window, open circuit breaker, or failed delivery).",
    );
    let _ = writeln!(out, "edge_watchdog_alerts_queued {}", s.queued);
    family(
        &mut out,
        "edge_watchdog_container_events_total",
        "counter",
        "Container deaths, health failures and recoveries reported from the Docker engine's events.",
    );
    let _ = writeln!(out, "edge_watchdog_container_events_total {}", s.counters.container_events);
    family(&mut out, "edge_watchdog_last_tick_duration_seconds", "gauge", "Wall time of the last tick.");
    let _ = writeln!(out, "edge_watchdog_last_tick_duration_seconds {}", s.last_tick_seconds);
    family(
        &mut out,
        "edge_watchdog_last_tick_timestamp_seconds",
        "gauge",
        "When the last tick ended, in seconds since the epoch.",
    );
    let _ = writeln!(out, "edge_watchdog_last_tick_timestamp_seconds {}", s.last_tick_timestamp);
    out
}

/// The counters in a file [`render`] wrote; anything else is ignored.
pub(crate) fn parse_counters(text: &str) -> Counters {
    let mut c = Counters::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let Ok(value) = value.trim().parse::<u64>() else { continue };
        match series {
            "edge_watchdog_alerts_coalesced_total" => c.coalesced = value,
            "edge_watchdog_alert_delivery_failures_total" => c.failures = value,
            "edge_watchdog_container_events_total" => c.container_events = value,
            _ => {
                let transport = series
                    .strip_prefix("edge_watchdog_alerts_sent_total{transport=\"")
                    .and_then(|r| r.strip_suffix("\"}"))
                    .filter(|t| TRANSPORTS.contains(t));
                if let Some(t) = transport {
                    c.sent.insert(t.to_owned(), value);
                }
            }
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn check_escape(input: &str, expected: &str) {
        assert_eq!(escape_label(input), expected);
    }

    #[test]
    fn label_values_are_escaped() {
        check_escape("127.0.0.1:3081", "127.0.0.1:3081");
        check_escape("a\"b", "a\\\"b");
        check_escape("a\\b", "a\\\\b");
        check_escape("a\nb", "a\\nb");
    }

    fn snapshot() -> Snapshot {
        Snapshot {
            channels: vec![("xray".into(), true), ("naive".into(), false)],
            upstreams: vec![
                UpstreamSample { upstream: "127.0.0.1:3081".into(), channel: "xray".into(), healthy: Some(true) },
                UpstreamSample { upstream: "127.0.0.1:3083".into(), channel: "naive".into(), healthy: Some(false) },
                UpstreamSample { upstream: "127.0.0.1:3082".into(), channel: "hysteria2".into(), healthy: None },
            ],
            metrics_up: true,
            counters: Counters {
                sent: BTreeMap::from([("webhook".into(), 3)]),
                coalesced: 2,
                failures: 1,
                container_events: 4,
            },
            queued: 1,
            last_tick_seconds: 0.0125,
            last_tick_timestamp: 1_716_200_000,
        }
    }

    #[test]
    fn the_file_has_every_series() {
        let text = render(&snapshot());
        for line in [
            "edge_watchdog_channel_up{channel=\"naive\"} 0",
            "edge_watchdog_upstream_healthy{channel=\"xray\",upstream=\"127.0.0.1:3081\"} 1",
            "edge_watchdog_upstream_healthy{channel=\"naive\",upstream=\"127.0.0.1:3083\"} 0",
            "edge_watchdog_upstreams_unknown 1",
            "edge_watchdog_alerts_sent_total{transport=\"telegram\"} 0",
            "edge_watchdog_alerts_sent_total{transport=\"webhook\"} 3",
            "edge_watchdog_alerts_queued 1",
            "edge_watchdog_last_tick_duration_seconds 0.0125",
            "edge_watchdog_last_tick_timestamp_seconds 1716200000",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing from\n{text}");
        }
        assert!(!text.contains("3082"), "an unknown upstream has no health sample");
    }

    #[test]
    fn counters_read_back() {
        let s = snapshot();
        let mut expected = s.counters.clone();
        expected.sent.insert("telegram".into(), 0);
        assert_eq!(parse_counters(&render(&s)), expected);
        assert_eq!(
            parse_counters("garbage\nedge_watchdog_alerts_sent_total{transport=\"x\"} 5\n"),
            Counters::default()
        );
    }

    #[test]
    fn legacy_upstreams_have_no_channel_label() {
        let s = Snapshot {
            upstreams: vec![UpstreamSample { upstream: "u:80".into(), channel: String::new(), healthy: Some(true) }],
            ..Snapshot::default()
        };
        assert!(render(&s).contains("edge_watchdog_upstream_healthy{upstream=\"u:80\"} 1\n"));
    }

    proptest! {
        #[test]
        fn escaped_values_stay_inside_their_quotes(value in "\\PC*|[\"\\\\\n]{0,8}") {
            let escaped = escape_label(&value);
            prop_assert!(!escaped.contains('\n'));
            // Every quote in the escaped text is preceded by an odd run of backslashes.
            let bytes = escaped.as_bytes();
            for (i, b) in bytes.iter().enumerate() {
                if *b == b'"' {
                    let run = bytes[..i].iter().rev().take_while(|c| **c == b'\\').count();
                    prop_assert!(run % 2 == 1, "{escaped:?}");
                }
            }
            // And it reads back to the value.
            let mut back = String::new();
            let mut chars = escaped.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    match chars.next() {
                        Some('n') => back.push('\n'),
                        Some(o) => back.push(o),
                        None => prop_assert!(false, "dangling backslash"),
                    }
                } else {
                    back.push(c);
                }
            }
            prop_assert_eq!(back, value);
        }
    }
}
