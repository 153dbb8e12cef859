//! Builders shared by the unit tests: metrics pages and pools.

use crate::metrics::UpstreamMetrics;
use edge_core::PoolMember;

use crate::transitions::Observation;

/// A metrics page with one health series per `(upstream, 0|1)`.
pub(crate) fn page(pairs: &[(&str, u8)]) -> Observation {
    let text: String =
        pairs.iter().map(|(u, v)| format!("caddy_reverse_proxy_upstreams_healthy{{upstream=\"{u}\"}} {v}\n")).collect();
    Observation::Metrics { source: "m".into(), metrics: UpstreamMetrics::parse(&text) }
}

/// A pool of the given upstreams, all of channel `ch`.
pub(crate) fn pool(ids: &[&str]) -> Vec<PoolMember> {
    ids.iter().map(|u| PoolMember::new("ch", *u)).collect()
}
