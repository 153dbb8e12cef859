//! Alert events and the exact text operators receive for each.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::metrics::UPSTREAM_HEALTH_METRIC;

/// An upstream's health as the watchdog sees it: the metric can also be missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// The series says 1.
    Healthy,
    /// The series says 0.
    Unhealthy,
    /// No series (or never seen before): never taken for healthy.
    Unknown,
}

impl Health {
    /// The word used in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
            Self::Unknown => "unknown",
        }
    }
}

impl From<edge_core::UpstreamHealth> for Health {
    fn from(h: edge_core::UpstreamHealth) -> Self {
        match h {
            edge_core::UpstreamHealth::Healthy => Self::Healthy,
            edge_core::UpstreamHealth::Unhealthy => Self::Unhealthy,
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How loud an event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// A recovery.
    Info,
    /// Something went down; rate-limited.
    Warning,
    /// All upstreams are down; bypasses the rate limit.
    Critical,
}

impl Severity {
    /// The word used in Alertmanager's `severity` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    /// An upstream changed health (`from == to == Unknown`: a pool upstream never seen has no series).
    Transition {
        /// The channel it carries, when the pool names it (a legacy pool does not).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        channel: Option<String>,
        /// Its dial address.
        upstream: String,
        /// Health before.
        from: Health,
        /// Health now.
        to: Health,
    },
    /// Every upstream of the pool is unhealthy.
    AllUnhealthy,
    /// The metrics endpoint did not answer or answered garbage.
    MetricsUnreachable {
        /// URL or file.
        source: String,
        /// Why.
        reason: String,
    },
    /// The metrics endpoint answers again.
    MetricsRecovered {
        /// URL or file.
        source: String,
    },
    /// The circuit breaker opened: alerts are held until something recovers.
    Parked {
        /// Consecutive ticks that brought new failures.
        failing_ticks: u32,
        /// Upstreams unhealthy at that moment.
        unhealthy: Vec<String>,
        /// Upstreams without a series at that moment.
        unknown: Vec<String>,
    },
    /// Any other notice (e.g. a container event), sent through the same limiter.
    Note {
        /// How loud it is.
        severity: Severity,
        /// The text after `[HOST] `.
        text: String,
    },
}

/// One alert event, stamped with the time it was detected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Epoch seconds.
    pub at: u64,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

impl Event {
    /// An event at `at`.
    pub fn new(at: u64, kind: EventKind) -> Self {
        Self { at, kind }
    }

    /// How loud it is: recoveries are info, all-down is critical, the rest warnings.
    pub fn severity(&self) -> Severity {
        match &self.kind {
            EventKind::Transition { to: Health::Healthy, .. } | EventKind::MetricsRecovered { .. } => Severity::Info,
            EventKind::Transition { .. } | EventKind::MetricsUnreachable { .. } | EventKind::Parked { .. } => {
                Severity::Warning
            }
            EventKind::AllUnhealthy => Severity::Critical,
            EventKind::Note { severity, .. } => *severity,
        }
    }

    /// Whether something came back (closes the circuit breaker).
    pub fn is_recovery(&self) -> bool {
        matches!(self.kind, EventKind::Transition { to: Health::Healthy, .. } | EventKind::MetricsRecovered { .. })
    }

    /// Whether something went wrong (counts towards the circuit breaker).
    pub fn is_failure(&self) -> bool {
        !self.is_recovery() && self.severity() >= Severity::Warning && !matches!(self.kind, EventKind::Parked { .. })
    }

    /// The message line, e.g. `[edge1] TRANSITION channel=xray upstream=127.0.0.1:3081 healthy -> unhealthy`
    /// (`channel=` only when the pool names it: operators' filters match the channel name).
    pub fn text(&self, host: &str) -> String {
        let host = clean(host);
        match &self.kind {
            EventKind::Transition { channel, upstream, from: Health::Unknown, to: Health::Unknown } => {
                format!(
                    "[{host}] MISSING {}upstream={}: no {UPSTREAM_HEALTH_METRIC} series, health unknown",
                    channel_word(channel),
                    clean(upstream)
                )
            }
            EventKind::Transition { channel, upstream, from, to: Health::Unknown } => format!(
                "[{host}] TRANSITION {}upstream={} {from} -> unknown (no {UPSTREAM_HEALTH_METRIC} series)",
                channel_word(channel),
                clean(upstream)
            ),
            EventKind::Transition { channel, upstream, from, to } => {
                format!("[{host}] TRANSITION {}upstream={} {from} -> {to}", channel_word(channel), clean(upstream))
            }
            EventKind::AllUnhealthy => format!("CRITICAL: all upstreams unhealthy on {host}"),
            EventKind::MetricsUnreachable { source, reason } => {
                format!("[{host}] METRICS UNREACHABLE source={}: {}", clean(source), clean(reason))
            }
            EventKind::MetricsRecovered { source } => {
                format!("[{host}] METRICS REACHABLE again source={}", clean(source))
            }
            EventKind::Parked { failing_ticks, unhealthy, unknown } => {
                let list = |v: &[String]| if v.is_empty() { "none".to_owned() } else { clean(&v.join(", ")) };
                format!(
                    "[{host}] PARKED after {failing_ticks} consecutive ticks with new failures: alerts are held until something recovers (unhealthy: {}; unknown: {})",
                    list(unhealthy),
                    list(unknown)
                )
            }
            EventKind::Note { text, .. } => format!("[{host}] {}", clean(text)),
        }
    }
}

/// `channel=ID ` before the upstream, or nothing.
fn channel_word(channel: &Option<String>) -> String {
    channel.as_deref().map(|c| format!("channel={} ", clean(c))).unwrap_or_default()
}

/// Escapes control characters so that a hostile upstream name cannot forge extra message lines.
fn clean(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    text.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(kind: EventKind, text: &str, severity: Severity) {
        let e = Event::new(0, kind);
        assert_eq!(e.text("edge1"), text);
        assert_eq!(e.severity(), severity, "{text}");
    }

    fn t(upstream: &str, from: Health, to: Health) -> EventKind {
        EventKind::Transition { channel: None, upstream: upstream.to_owned(), from, to }
    }

    #[test]
    fn the_taxonomy_is_exact() {
        use Health::*;
        check(t("x:1", Healthy, Unhealthy), "[edge1] TRANSITION upstream=x:1 healthy -> unhealthy", Severity::Warning);
        check(t("x:1", Unhealthy, Healthy), "[edge1] TRANSITION upstream=x:1 unhealthy -> healthy", Severity::Info);
        check(EventKind::AllUnhealthy, "CRITICAL: all upstreams unhealthy on edge1", Severity::Critical);
        check(
            t("x:1", Healthy, Unknown),
            "[edge1] TRANSITION upstream=x:1 healthy -> unknown (no caddy_reverse_proxy_upstreams_healthy series)",
            Severity::Warning,
        );
        check(
            t("x:1", Unknown, Unknown),
            "[edge1] MISSING upstream=x:1: no caddy_reverse_proxy_upstreams_healthy series, health unknown",
            Severity::Warning,
        );
        check(t("x:1", Unknown, Healthy), "[edge1] TRANSITION upstream=x:1 unknown -> healthy", Severity::Info);
        let named = |from, to| EventKind::Transition {
            channel: Some("xray".into()),
            upstream: "127.0.0.1:3081".into(),
            from,
            to,
        };
        check(
            named(Healthy, Unhealthy),
            "[edge1] TRANSITION channel=xray upstream=127.0.0.1:3081 healthy -> unhealthy",
            Severity::Warning,
        );
        check(
            named(Unhealthy, Healthy),
            "[edge1] TRANSITION channel=xray upstream=127.0.0.1:3081 unhealthy -> healthy",
            Severity::Info,
        );
        check(
            named(Healthy, Unknown),
            "[edge1] TRANSITION channel=xray upstream=127.0.0.1:3081 healthy -> unknown (no caddy_reverse_proxy_upstreams_healthy series)",
            Severity::Warning,
        );
        check(
            named(Unknown, Unknown),
            "[edge1] MISSING channel=xray upstream=127.0.0.1:3081: no caddy_reverse_proxy_upstreams_healthy series, health unknown",
            Severity::Warning,
        );
        check(
            EventKind::MetricsUnreachable { source: "http://127.0.0.1:2019/metrics".into(), reason: "refused".into() },
            "[edge1] METRICS UNREACHABLE source=http://127.0.0.1:2019/metrics: refused",
            Severity::Warning,
        );
        check(
            EventKind::MetricsRecovered { source: "/tmp/m".into() },
            "[edge1] METRICS REACHABLE again source=/tmp/m",
            Severity::Info,
        );
    }

    #[test]
    fn control_characters_cannot_forge_lines() {
        let e = Event::new(0, t("a\nCRITICAL: fake", Health::Healthy, Health::Unhealthy));
        assert_eq!(e.text("h").lines().count(), 1);
        assert!(e.text("h").contains("a\\nCRITICAL"));
    }

    #[test]
    fn events_round_trip_through_json() {
        let e = Event::new(5, t("x:1", Health::Healthy, Health::Unhealthy));
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(json, r#"{"at":5,"kind":"transition","upstream":"x:1","from":"healthy","to":"unhealthy"}"#);
        assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), e);
    }
}
