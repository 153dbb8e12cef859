//! What `edge status` and `edge healthcheck` look at: the status file, the stack's
//! containers on the engine, and each pool upstream's health in Caddy's metrics.
//!
//! `install.env` records what install decided (`POOL`, `METRICS_URL`) so these commands
//! need no credentials and no re-render.

use std::collections::BTreeMap;
use std::time::Duration;

use edge_channels::{ContainerInfo, DockerEngine, Engine, LABEL_STACK, Prober};
use edge_core::{ChannelState, ChannelsStatus, EnvFile, Stack, UpstreamHealth};
use serde::Serialize;

use crate::settings::Settings;

/// `install.env` key: the front proxy's pool, `channel=upstream` pairs in priority order.
pub(crate) const KEY_POOL: &str = "POOL";
/// `install.env` key: Caddy's metrics URL.
pub(crate) const KEY_METRICS_URL: &str = "METRICS_URL";

/// Encodes a pool for `install.env`.
pub(crate) fn encode_pool(pool: &[(String, String)]) -> String {
    pool.iter().map(|(c, u)| format!("{c}={u}")).collect::<Vec<_>>().join(",")
}

/// Decodes `install.env`'s pool; malformed items are skipped.
pub(crate) fn decode_pool(text: &str) -> Vec<(String, String)> {
    text.split(',')
        .filter_map(|item| item.split_once('='))
        .map(|(c, u)| (c.trim().to_owned(), u.trim().to_owned()))
        .filter(|(c, u)| !c.is_empty() && !u.is_empty())
        .collect()
}

/// The engine as seen.
#[derive(Debug, Serialize)]
pub(crate) struct EngineView {
    pub(crate) reachable: bool,
    pub(crate) endpoint: Option<String>,
    pub(crate) version: Option<String>,
    pub(crate) api_version: Option<String>,
    pub(crate) error: Option<String>,
}

/// One container of the manifest.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ContainerView {
    pub(crate) service: String,
    pub(crate) container: String,
    pub(crate) channel: Option<String>,
    /// `running`, `exited`..., `missing` (no such container) or `unknown` (engine unreachable).
    pub(crate) status: String,
    /// `healthy`, `unhealthy`, `starting`, `none` (no health check) or `unknown`.
    pub(crate) health: String,
    /// Running and healthy (or without a health check).
    pub(crate) ready: bool,
    /// Its container id.
    pub(crate) id: Option<String>,
}

/// One channel.
#[derive(Debug, Serialize)]
pub(crate) struct ChannelView {
    pub(crate) id: String,
    pub(crate) required: bool,
    /// From `channels-status.env`; `None` when the file does not list it.
    pub(crate) state: Option<ChannelState>,
    pub(crate) containers: Vec<ContainerView>,
    /// Its dial address in the pool, if it is in the pool.
    pub(crate) upstream: Option<String>,
    /// `healthy`, `unhealthy` or `unknown` (no series, or metrics unreachable).
    pub(crate) upstream_health: Option<String>,
}

/// Caddy's metrics as seen.
#[derive(Debug, Serialize)]
pub(crate) struct MetricsView {
    pub(crate) url: Option<String>,
    pub(crate) reachable: bool,
    pub(crate) error: Option<String>,
    /// Every upstream series found, by upstream.
    pub(crate) upstreams: BTreeMap<String, String>,
}

/// Everything observed.
#[derive(Debug, Serialize)]
pub(crate) struct Observation {
    pub(crate) stack: String,
    pub(crate) engine: EngineView,
    pub(crate) status_file: String,
    pub(crate) channels: Vec<ChannelView>,
    /// Containers of services that carry no channel (front proxy, coturn...).
    pub(crate) services: Vec<ContainerView>,
    pub(crate) metrics: MetricsView,
    /// Containers labelled for this stack that no service of the manifest names.
    pub(crate) strays: Vec<String>,
}

/// Looks at the stack: never fails because something is down; only an unreadable status
/// file is an error.
pub(crate) async fn observe(settings: &Settings, metrics_url: Option<&str>) -> anyhow::Result<Observation> {
    let stack = &settings.bundle.stack;
    let paths = &settings.paths;
    let status = ChannelsStatus::load(&paths.channels_status())?;
    let install = EnvFile::load(&paths.install_env()).ok();

    let (engine, containers) = match DockerEngine::connect().await {
        Ok(engine) => {
            let version = engine.version().await.ok();
            let mut found: BTreeMap<String, ContainerInfo> = BTreeMap::new();
            let mut error = None;
            match engine.list_containers(LABEL_STACK, &stack.stack.name).await {
                Ok(list) => found.extend(list.into_iter().map(|c| (c.name.clone(), c))),
                Err(e) => error = Some(e.to_string()),
            }
            // Containers of the manifest made by someone else (the legacy installer, compose).
            for s in &stack.services {
                if !found.contains_key(&s.container)
                    && let Ok(Some(c)) = engine.inspect_container(&s.container).await
                {
                    found.insert(c.name.clone(), c);
                }
            }
            let view = EngineView {
                reachable: error.is_none(),
                endpoint: Some(engine.endpoint().to_owned()),
                version: version.as_ref().map(|v| v.version.clone()),
                api_version: version.as_ref().map(|v| v.api_version.clone()),
                error,
            };
            (view, Some(found))
        }
        Err(e) => (
            EngineView {
                reachable: false,
                endpoint: None,
                version: None,
                api_version: None,
                error: Some(e.to_string()),
            },
            None,
        ),
    };

    let pool = match install.as_ref().and_then(|env| env.get(KEY_POOL)) {
        Some(text) => decode_pool(text),
        None => default_pool(stack, &status),
    };
    let metrics_url = metrics_url
        .map(str::to_owned)
        .or_else(|| install.as_ref().and_then(|env| env.get(KEY_METRICS_URL)).map(str::to_owned))
        .or_else(|| default_metrics_url(stack));
    let metrics = read_metrics(metrics_url).await;

    let view = |s: &edge_core::Service| container_view(s, containers.as_ref());
    let channels = stack
        .channels
        .iter()
        .map(|c| {
            let upstream = pool.iter().find(|(id, _)| *id == c.id).map(|(_, u)| u.clone());
            let upstream_health = upstream.as_ref().map(|u| match metrics.upstreams.get(u) {
                Some(h) => h.clone(),
                None => "unknown".to_owned(),
            });
            ChannelView {
                id: c.id.clone(),
                required: c.required,
                state: status.get(&c.id),
                containers: stack.services_of(&c.id).map(view).collect(),
                upstream,
                upstream_health,
            }
        })
        .collect();
    let services = stack.services.iter().filter(|s| s.channel.is_none()).map(view).collect();
    let strays = containers
        .iter()
        .flat_map(|found| found.keys())
        .filter(|name| !stack.services.iter().any(|s| &s.container == *name))
        .cloned()
        .collect();
    Ok(Observation {
        stack: stack.stack.name.clone(),
        engine,
        status_file: paths.channels_status().display().to_string(),
        channels,
        services,
        metrics,
        strays,
    })
}

fn container_view(s: &edge_core::Service, found: Option<&BTreeMap<String, ContainerInfo>>) -> ContainerView {
    let (status, health, ready, id) = match found {
        None => ("unknown".to_owned(), "unknown".to_owned(), false, None),
        Some(found) => match found.get(&s.container) {
            None => ("missing".to_owned(), "unknown".to_owned(), false, None),
            Some(c) => (c.status.to_string(), c.health.to_string(), c.is_ready(), Some(c.id.clone())),
        },
    };
    ContainerView {
        service: s.name.clone(),
        container: s.container.clone(),
        channel: s.channel.clone(),
        status,
        health,
        ready,
        id,
    }
}

/// The pool when `install.env` does not record it: active channels' upstreams, resolved
/// against the stack's default variables.
fn default_pool(stack: &Stack, status: &ChannelsStatus) -> Vec<(String, String)> {
    let vars = edge_render::Variables::new(&stack.variables);
    stack
        .channels
        .iter()
        .filter(|c| status.get(&c.id) == Some(ChannelState::Active))
        .filter_map(|c| Some((c.id.clone(), substitute(c.upstream.as_deref()?, &vars)?)))
        .collect()
}

fn default_metrics_url(stack: &Stack) -> Option<String> {
    let vars = edge_render::Variables::new(&stack.variables);
    vars.get("CADDY_ADMIN").filter(|a| !a.is_empty()).map(|a| format!("http://{a}/metrics"))
}

/// Replaces `{{ NAME }}` with the variable's value; `None` if one is unset.
fn substitute(text: &str, vars: &edge_render::Variables) -> Option<String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("}}")? + start;
        out.push_str(vars.get(rest[start + 2..end].trim())?);
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    Some(out)
}

async fn read_metrics(url: Option<String>) -> MetricsView {
    let Some(url) = url else {
        return MetricsView {
            url: None,
            reachable: false,
            error: Some("the stack names no metrics endpoint (CADDY_ADMIN)".to_owned()),
            upstreams: BTreeMap::new(),
        };
    };
    let fetched = match Prober::new(Duration::from_secs(3)) {
        Ok(prober) => prober.fetch_text(&url).await.map_err(|h| match h {
            edge_channels::Health::Unhealthy { reason } => reason,
            edge_channels::Health::Healthy => String::new(),
        }),
        Err(e) => Err(e.to_string()),
    };
    match fetched {
        Ok(text) => {
            let parsed = edge_alerts::UpstreamMetrics::parse(&text);
            let upstreams = parsed
                .health
                .into_iter()
                .map(|(u, h)| {
                    let word = match h {
                        UpstreamHealth::Healthy => "healthy",
                        UpstreamHealth::Unhealthy => "unhealthy",
                    };
                    (u, word.to_owned())
                })
                .collect();
            MetricsView { url: Some(url), reachable: true, error: None, upstreams }
        }
        Err(reason) => {
            MetricsView { url: Some(url), reachable: false, error: Some(reason), upstreams: BTreeMap::new() }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_round_trip_through_install_env() {
        let pool = vec![("xray".to_owned(), "127.0.0.1:3081".to_owned()), ("naive".into(), "127.0.0.1:3083".into())];
        assert_eq!(decode_pool(&encode_pool(&pool)), pool);
        assert_eq!(decode_pool("garbage,,a=b"), vec![("a".to_owned(), "b".to_owned())]);
    }

    proptest::proptest! {
        #[test]
        fn any_pool_of_plain_names_round_trips(pool in proptest::collection::vec(("[a-z0-9_-]{1,12}", "[a-z0-9.:\\[\\]-]{1,30}"), 0..6)) {
            proptest::prop_assert_eq!(decode_pool(&encode_pool(&pool)), pool);
        }

        #[test]
        fn decoding_never_panics(text in proptest::prelude::any::<String>()) {
            let _ = decode_pool(&text);
        }
    }

    #[test]
    fn the_default_pool_follows_the_status_file() {
        let stack = Stack::partner_edge();
        let status = ChannelsStatus::parse("xray=active\nawg=active\nhysteria2=skipped\nnaive=active\n").unwrap();
        assert_eq!(
            default_pool(&stack, &status),
            vec![("xray".to_owned(), "127.0.0.1:3081".to_owned()), ("naive".to_owned(), "127.0.0.1:3083".to_owned())]
        );
        assert_eq!(default_metrics_url(&stack).as_deref(), Some("http://127.0.0.1:2019/metrics"));
    }
}
