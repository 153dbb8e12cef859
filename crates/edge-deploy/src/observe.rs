//! What `edge status` and `edge healthcheck` look at: the status file, the stack's
//! containers on the engine, and each pool upstream's health in the front proxy's metrics.
//!
//! The install record says what install decided (the pool, the metrics URL, what the
//! operator stopped), so observing needs no credentials and no re-render.

use std::collections::BTreeMap;
use std::time::Duration;

use edge_channels::{ContainerInfo, Engine, Health, LABEL_READINESS, LABEL_STACK, Prober};
use edge_core::{ChannelState, ChannelsStatus, InstallRecord, ObservedHealth, PoolMember, Stack};
use futures_util::future::join_all;
use serde::Serialize;

use crate::{Node, OpError};

/// How long one host-side readiness probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The engine as seen.
#[derive(Debug, Serialize)]
pub struct EngineView {
    /// Whether it answered.
    pub reachable: bool,
    /// Where it is.
    pub endpoint: Option<String>,
    /// Its version.
    pub version: Option<String>,
    /// The API version it speaks.
    pub api_version: Option<String>,
    /// Why it could not be seen.
    pub error: Option<String>,
}

/// One container of the manifest.
#[derive(Debug, Clone, Serialize)]
pub struct ContainerView {
    /// The service.
    pub service: String,
    /// Its container.
    pub container: String,
    /// The channel it carries.
    pub channel: Option<String>,
    /// `running`, `exited`..., `stopped` (by the operator), `missing` (no such container) or
    /// `unknown` (engine unreachable).
    pub status: String,
    /// `healthy`, `unhealthy`, `starting`, `none` (no health check) or `unknown`; for a
    /// container probed from the host, `healthy` or `unhealthy (PROBE: REASON)`.
    pub health: String,
    /// Running and healthy (or without a health check), and answering its host-side probe.
    pub ready: bool,
    /// The operator stopped it with `edge stop`.
    pub stopped: bool,
    /// Its container id.
    pub id: Option<String>,
}

/// One channel.
#[derive(Debug, Serialize)]
pub struct ChannelView {
    /// The channel.
    pub id: String,
    /// Whether the stack requires it.
    pub required: bool,
    /// From `channels-status.env`; `None` when the file does not list it.
    pub state: Option<ChannelState>,
    /// The operator stopped a container of it.
    pub stopped: bool,
    /// Its containers.
    pub containers: Vec<ContainerView>,
    /// Its dial address in the pool, if it is in the pool.
    pub upstream: Option<String>,
    /// Its upstream's health (`unknown`: no series, or metrics unreachable).
    pub upstream_health: Option<ObservedHealth>,
    /// For a host-level mesh channel the watchdog keeps: what its interface shows now
    /// (up, the last handshake), the evidence behind its state.
    pub reason: Option<String>,
}

/// The front proxy's metrics as seen.
#[derive(Debug, Serialize)]
pub struct MetricsView {
    /// The page.
    pub url: Option<String>,
    /// Whether it was read.
    pub reachable: bool,
    /// Why it was not.
    pub error: Option<String>,
    /// Every upstream series found, by upstream.
    pub upstreams: BTreeMap<String, ObservedHealth>,
}

/// Everything observed.
#[derive(Debug, Serialize)]
pub struct Observation {
    /// The stack.
    pub stack: String,
    /// The engine.
    pub engine: EngineView,
    /// `channels-status.env`.
    pub status_file: String,
    /// Every channel of the stack.
    pub channels: Vec<ChannelView>,
    /// Containers of services that carry no channel (front proxy, coturn...).
    pub services: Vec<ContainerView>,
    /// The front proxy's metrics.
    pub metrics: MetricsView,
    /// Containers labelled for this stack that no service of the manifest names.
    pub strays: Vec<String>,
    /// The stack's smoke checks through the front proxy; `None` when it has none.
    pub smoke: Option<crate::SmokeReport>,
}

impl Observation {
    /// Whether every service is stopped by the operator.
    pub fn all_stopped(&self) -> bool {
        self.services.iter().chain(self.channels.iter().flat_map(|c| &c.containers)).all(|c| c.stopped)
    }
}

/// Looks at the stack. Never fails because something is down (an engine that cannot be
/// reached is `engine`, the error why); only an unreadable state file is an error.
pub async fn observe<E: Engine>(
    node: &Node,
    engine: Result<&E, String>,
    metrics_url: Option<&str>,
) -> Result<Observation, OpError> {
    let stack = node.stack();
    let paths = &node.paths;
    let status = ChannelsStatus::load(&paths.channels_status())?;
    let record = InstallRecord::load_optional(&paths.install_env())?;

    let (engine, containers) = match engine {
        Ok(engine) => {
            let version = engine.version().await;
            let mut found: BTreeMap<String, ContainerInfo> = BTreeMap::new();
            let mut error = version.as_ref().err().map(ToString::to_string);
            if error.is_none() {
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
            }
            let version = version.ok();
            let view = EngineView {
                reachable: error.is_none(),
                endpoint: version.as_ref().map(|v| v.endpoint.clone()),
                version: version.as_ref().map(|v| v.version.clone()),
                api_version: version.as_ref().map(|v| v.api_version.clone()),
                error: error.clone(),
            };
            (view, error.is_none().then_some(found))
        }
        Err(e) => {
            (EngineView { reachable: false, endpoint: None, version: None, api_version: None, error: Some(e) }, None)
        }
    };

    let pool = match record.as_ref().and_then(|r| r.pool.clone()) {
        Some(pool) => pool,
        None => default_pool(stack, &status),
    };
    let metrics_url = metrics_url
        .map(str::to_owned)
        .or_else(|| record.as_ref().and_then(|r| r.metrics_url.clone()))
        .or_else(|| default_metrics_url(stack));
    let metrics = read_metrics(metrics_url).await;
    let stopped = record.as_ref().map(|r| r.stopped.clone()).unwrap_or_default();

    let probes = probe_containers(containers.as_ref()).await;
    let view = |s: &edge_core::Service| {
        let probe = probes.get(&s.container);
        container_view(s, containers.as_ref(), probe, stopped.contains(&s.name))
    };
    let channels = stack
        .channels
        .iter()
        .map(|c| {
            let upstream = pool.iter().find(|m| m.channel == c.id).map(|m| m.upstream.clone());
            let upstream_health =
                upstream.as_ref().map(|u| metrics.upstreams.get(u).copied().unwrap_or(ObservedHealth::Unknown));
            let containers: Vec<ContainerView> = stack.services_of(&c.id).map(view).collect();
            let state = status.get(&c.id);
            let reason = match (stack.interface_of(&c.id), state) {
                (Some((_, iface)), Some(ChannelState::Active | ChannelState::FailedAtRuntime)) => {
                    let probe = node.mesh.probe(iface);
                    Some(
                        crate::mesh::judge(iface, &probe, crate::install::now_secs(), crate::mesh::HANDSHAKE_MAX_AGE).1,
                    )
                }
                _ => None,
            };
            ChannelView {
                id: c.id.clone(),
                required: c.required,
                state,
                reason,
                stopped: containers.iter().any(|c| c.stopped),
                containers,
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
    let smoke = if stack.smoke.is_empty() { None } else { Some(crate::smoke(node).await?) };
    Ok(Observation {
        stack: stack.stack.name.clone(),
        engine,
        status_file: paths.channels_status().display().to_string(),
        channels,
        services,
        metrics,
        strays,
        smoke,
    })
}

/// The host-side readiness probe of every running container that has one, by container name.
async fn probe_containers(found: Option<&BTreeMap<String, ContainerInfo>>) -> BTreeMap<String, Health> {
    let probed: Vec<&ContainerInfo> = found
        .into_iter()
        .flat_map(|f| f.values())
        .filter(|c| c.is_ready() && c.labels.contains_key(LABEL_READINESS))
        .collect();
    if probed.is_empty() {
        return BTreeMap::new();
    }
    let prober = match Prober::new(PROBE_TIMEOUT) {
        Ok(p) => p,
        Err(e) => {
            let reason = e.to_string();
            return probed.iter().map(|c| (c.name.clone(), Health::Unhealthy { reason: reason.clone() })).collect();
        }
    };
    let results = join_all(probed.iter().map(|c| prober.probe_container(c))).await;
    probed.iter().zip(results).filter_map(|(c, h)| Some((c.name.clone(), h?))).collect()
}

fn container_view(
    s: &edge_core::Service,
    found: Option<&BTreeMap<String, ContainerInfo>>,
    probe: Option<&Health>,
    stopped: bool,
) -> ContainerView {
    let (status, health, ready, id) = match found {
        None => ("unknown".to_owned(), "unknown".to_owned(), false, None),
        Some(found) => match found.get(&s.container) {
            None => ("missing".to_owned(), "unknown".to_owned(), false, None),
            Some(c) => {
                let status = if stopped && !c.is_ready() { "stopped".to_owned() } else { c.status.to_string() };
                let (health, ready) = match probe {
                    Some(Health::Healthy) => ("healthy".to_owned(), c.is_ready()),
                    Some(Health::Unhealthy { reason }) => (format!("unhealthy ({reason})"), false),
                    None => (c.health.to_string(), c.is_ready()),
                };
                (status, health, ready, Some(c.id.clone()))
            }
        },
    };
    ContainerView {
        service: s.name.clone(),
        container: s.container.clone(),
        channel: s.channel.clone(),
        status,
        health,
        ready,
        stopped,
        id,
    }
}

/// The pool when the install record does not hold it: active channels' upstreams, resolved
/// against the stack's default variables.
pub(crate) fn default_pool(stack: &Stack, status: &ChannelsStatus) -> Vec<PoolMember> {
    let vars = edge_render::Variables::new(&stack.variables);
    stack
        .channels
        .iter()
        .filter(|c| status.get(&c.id) == Some(ChannelState::Active))
        .filter_map(|c| Some(PoolMember::new(c.id.clone(), substitute(c.upstream.as_deref()?, &vars)?)))
        .collect()
}

/// The front proxy's metrics URL from the stack's defaults (`CADDY_ADMIN`).
pub fn default_metrics_url(stack: &Stack) -> Option<String> {
    metrics_url(&edge_render::Variables::new(&stack.variables))
}

/// The front proxy's metrics URL (`http://CADDY_ADMIN/metrics`), if the variables name its admin address.
pub(crate) fn metrics_url(vars: &edge_render::Variables) -> Option<String> {
    vars.get("CADDY_ADMIN").filter(|a| !a.is_empty()).map(|a| format!("http://{a}/metrics"))
}

/// Replaces `{{ NAME }}` with the variable's value; `None` if one is unset.
pub(crate) fn substitute(text: &str, vars: &edge_render::Variables) -> Option<String> {
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
    match crate::metrics::read_upstreams(&url).await {
        Ok(page) => MetricsView {
            url: Some(url),
            reachable: true,
            error: None,
            upstreams: page.into_iter().map(|(u, h)| (u, Some(h).into())).collect(),
        },
        Err(reason) => {
            MetricsView { url: Some(url), reachable: false, error: Some(reason), upstreams: BTreeMap::new() }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_pool_follows_the_status_file() {
        let stack = Stack::partner_edge();
        let status = ChannelsStatus::parse("xray=active\nawg=active\nhysteria2=skipped\nnaive=active\n").unwrap();
        assert_eq!(
            default_pool(&stack, &status),
            vec![PoolMember::new("xray", "127.0.0.1:3081"), PoolMember::new("naive", "127.0.0.1:3083")]
        );
        assert_eq!(default_metrics_url(&stack).as_deref(), Some("http://127.0.0.1:2019/metrics"));
    }
}
