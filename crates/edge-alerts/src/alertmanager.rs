//! The Alertmanager target: API v2 `POST /api/v2/alerts`, so a fleet routes edges' alerts
//! through the Alertmanager it already runs.
//!
//! Alertmanager wants state, not messages: every run posts every alert that
//! is firing (it expires alerts that are not re-sent within its
//! `resolve_timeout`, 5 minutes by default, so the watchdog must tick more
//! often than that) and resolves, with `endsAt`, those that stopped firing
//! since the last post that succeeded. Labels: `alertname`, `edge`,
//! `upstream`, `channel`, `severity`. The chat rate limit does not apply.

use std::collections::BTreeMap;
use std::path::Path;

use edge_core::{UpstreamHealth, UpstreamState};
use serde::{Deserialize, Serialize};

use crate::deliver::{excerpt, head};
use crate::event::Severity;
use crate::redact::{redact_secrets, redact_url, url_secrets};
use crate::time::rfc3339;
use edge_core::PoolMember;

use crate::transitions::WatchState;
use crate::{AlertError, SendError};

/// One alert as posted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AmAlert {
    /// Identifying labels.
    pub labels: BTreeMap<String, String>,
    /// `summary`.
    pub annotations: BTreeMap<String, String>,
    /// Epoch seconds when it started firing.
    pub starts_at: u64,
}

/// What was last posted successfully: the alerts that are firing as far as Alertmanager knows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AmState {
    /// By key (`alertname` and `upstream`).
    #[serde(default)]
    pub firing: BTreeMap<String, AmAlert>,
}

impl AmState {
    /// Reads the file; missing or unreadable is empty (at worst a resolve is left to `resolve_timeout`).
    pub fn load(path: &Path) -> Self {
        edge_core::read_no_follow(path).ok().flatten().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
    }

    /// Writes the file atomically.
    pub fn save(&self, path: &Path) -> Result<(), AlertError> {
        let json = serde_json::to_vec_pretty(self)
            .map_err(|e| AlertError::Outbox { path: path.to_owned(), reason: e.to_string() })?;
        edge_core::write_atomic(path, &json).map_err(|source| AlertError::WriteState { path: path.to_owned(), source })
    }
}

/// The alerts firing now, from the state a tick just computed.
pub fn firing_alerts(
    host: &str,
    state: &UpstreamState,
    watch: &WatchState,
    pool: &[PoolMember],
) -> BTreeMap<String, AmAlert> {
    let channels: BTreeMap<&str, &str> = pool.iter().rev().map(|m| (m.upstream.as_str(), m.channel.as_str())).collect();
    let channel = |u: &str| channels.get(u).copied();
    let mut out = BTreeMap::new();
    let mut add = |name: &str, upstream: Option<&str>, severity: Severity, summary: String, since: u64| {
        let mut labels = BTreeMap::from([
            ("alertname".to_owned(), name.to_owned()),
            ("edge".to_owned(), host.to_owned()),
            ("severity".to_owned(), severity.as_str().to_owned()),
        ]);
        if let Some(u) = upstream {
            labels.insert("upstream".to_owned(), u.to_owned());
            if let Some(c) = channel(u).filter(|c| !c.is_empty()) {
                labels.insert("channel".to_owned(), c.to_owned());
            }
        }
        let key = format!("{name}/{}", upstream.unwrap_or_default());
        let annotations = BTreeMap::from([("summary".to_owned(), summary)]);
        out.insert(key, AmAlert { labels, annotations, starts_at: since });
    };

    for e in state.iter().filter(|e| e.health == UpstreamHealth::Unhealthy) {
        let summary = format!("upstream {} of edge {host} is unhealthy", e.upstream);
        add("EdgeUpstreamUnhealthy", Some(&e.upstream), Severity::Warning, summary, e.since);
    }
    for (u, since) in &watch.unknown {
        let summary = format!("upstream {u} of edge {host} has no health series: health unknown");
        add("EdgeUpstreamUnknown", Some(u), Severity::Warning, summary, *since);
    }
    if let Some(since) = watch.metrics_unreachable_since {
        let summary = format!("the metrics endpoint of edge {host} does not answer");
        add("EdgeMetricsUnreachable", None, Severity::Warning, summary, since);
    }
    let members: Vec<&str> = if pool.is_empty() {
        state.iter().map(|e| e.upstream.as_str()).chain(watch.unknown.keys().map(String::as_str)).collect()
    } else {
        pool.iter().map(|m| m.upstream.as_str()).collect()
    };
    let down_since = members
        .iter()
        .map(|u| state.get(u).filter(|e| e.health == UpstreamHealth::Unhealthy).map(|e| e.since))
        .collect::<Option<Vec<u64>>>();
    if let Some(since) = down_since.filter(|s| !s.is_empty()).and_then(|s| s.into_iter().max()) {
        add("EdgeAllUpstreamsUnhealthy", None, Severity::Critical, format!("all upstreams unhealthy on {host}"), since);
    }
    out
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PostableAlert<'a> {
    labels: &'a BTreeMap<String, String>,
    annotations: &'a BTreeMap<String, String>,
    starts_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    ends_at: Option<String>,
}

/// What one post did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AmPush {
    /// Alerts posted as firing.
    pub firing: usize,
    /// Alerts posted as resolved.
    pub resolved: usize,
}

/// Posts `firing` and resolves what `previous` had that `firing` lacks. Nothing to say, no request.
pub async fn push(
    client: &reqwest::Client,
    url: &str,
    timeout: std::time::Duration,
    previous: &AmState,
    firing: &BTreeMap<String, AmAlert>,
    now: u64,
) -> Result<AmPush, AlertError> {
    let resolved: Vec<&AmAlert> =
        previous.firing.iter().filter(|(k, _)| !firing.contains_key(*k)).map(|(_, a)| a).collect();
    let mut body: Vec<PostableAlert<'_>> = firing
        .values()
        .map(|a| PostableAlert {
            labels: &a.labels,
            annotations: &a.annotations,
            starts_at: rfc3339(a.starts_at.min(now)),
            ends_at: None,
        })
        .collect();
    body.extend(resolved.iter().map(|a| PostableAlert {
        labels: &a.labels,
        annotations: &a.annotations,
        starts_at: rfc3339(a.starts_at.min(now)),
        ends_at: Some(rfc3339(now)),
    }));
    let result = AmPush { firing: firing.len(), resolved: resolved.len() };
    if body.is_empty() {
        return Ok(result);
    }
    // The URL may carry credentials: errors show its scheme, host and port, and answers lose its secrets.
    let err = |source| AlertError::Alertmanager { url: redact_url(url), source };
    let resp =
        client.post(url).timeout(timeout).json(&body).send().await.map_err(|e| err(SendError::from_reqwest(e)))?;
    let status = resp.status();
    if !status.is_success() {
        let body = resp.text().await.unwrap_or_default();
        let body = excerpt(&redact_secrets(head(&body), &url_secrets(url)));
        return Err(err(SendError::Status { status: status.as_u16(), body }));
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn firing_set_carries_the_fleet_labels() {
        let state = UpstreamState::parse("a:1=unhealthy:10\nb:2=healthy:5\n").unwrap();
        let watch = WatchState { metrics_unreachable_since: None, unknown: BTreeMap::from([("c:3".to_owned(), 7)]) };
        let pool =
            [PoolMember::new("xray", "a:1"), PoolMember::new("hysteria2", "b:2"), PoolMember::new("naive", "c:3")];
        let f = firing_alerts("edge1", &state, &watch, &pool);
        assert_eq!(f.keys().collect::<Vec<_>>(), ["EdgeUpstreamUnhealthy/a:1", "EdgeUpstreamUnknown/c:3"]);
        let a = &f["EdgeUpstreamUnhealthy/a:1"];
        let labels: Vec<(&str, &str)> = a.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            labels,
            [
                ("alertname", "EdgeUpstreamUnhealthy"),
                ("channel", "xray"),
                ("edge", "edge1"),
                ("severity", "warning"),
                ("upstream", "a:1")
            ]
        );
        assert_eq!(a.starts_at, 10);
    }

    #[test]
    fn all_down_adds_a_critical() {
        let state = UpstreamState::parse("a=unhealthy:10\nb=unhealthy:20\n").unwrap();
        let f =
            firing_alerts("e", &state, &WatchState::default(), &[PoolMember::new("x", "a"), PoolMember::new("y", "b")]);
        let crit = &f["EdgeAllUpstreamsUnhealthy/"];
        assert_eq!((crit.labels["severity"].as_str(), crit.starts_at), ("critical", 20));
        let f =
            firing_alerts("e", &state, &WatchState::default(), &[PoolMember::new("x", "a"), PoolMember::new("z", "c")]);
        assert!(!f.contains_key("EdgeAllUpstreamsUnhealthy/"));
    }

    #[tokio::test]
    async fn errors_show_scheme_host_and_port_only() {
        let base = crate::test_support::echo_server(400).await;
        let am = crate::AlertmanagerConfig {
            url: format!("{}/tenant-SECRETPATH/", base.replace("http://", "http://admin:s3cr3tpw@")),
        };
        let client = crate::deliver::http_client(&crate::AlertConfig::new("h", "/n", "/n/u.env")).unwrap();
        let state = UpstreamState::parse("a=unhealthy:10\n").unwrap();
        let firing = firing_alerts("e", &state, &WatchState::default(), &[]);
        let timeout = std::time::Duration::from_secs(5);
        let err = push(&client, &am.alerts_url(), timeout, &AmState::default(), &firing, 20).await.unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(text.starts_with(&format!("alertmanager {base} failed: http status 400: POST /")), "{text}");
        assert!(!text.contains("SECRETPATH") && !text.contains("s3cr3tpw") && !text.contains("admin"), "{text}");
        assert!(!format!("{am:?}").contains("s3cr3tpw"));
    }

    #[test]
    fn state_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("am.json");
        assert_eq!(AmState::load(&path), AmState::default());
        let state = UpstreamState::parse("a=unhealthy:10\n").unwrap();
        let s = AmState { firing: firing_alerts("e", &state, &WatchState::default(), &[]) };
        s.save(&path).unwrap();
        assert_eq!(AmState::load(&path), s);
    }
}
