//! The front proxy's view of its pool, read from its Prometheus metrics page.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use edge_channels::{Health, Prober};
use edge_core::{ObservedHealth, PoolMember, UpstreamHealth};

use crate::{Progress, ProgressSink};

/// How long one read of the metrics page may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(3);

/// Every upstream series on the page at `url`, or why the page could not be read.
pub async fn read_upstreams(url: &str) -> Result<BTreeMap<String, UpstreamHealth>, String> {
    let prober = Prober::new(FETCH_TIMEOUT).map_err(|e| e.to_string())?;
    match prober.fetch_text(url).await {
        Ok(text) => Ok(edge_alerts::UpstreamMetrics::parse(&text).health),
        Err(Health::Unhealthy { reason }) => Err(reason),
        Err(Health::Healthy) => Err("no answer".to_owned()),
    }
}

/// Each pool member's health on the page (`unknown` without a series).
pub fn pool_health(pool: &[PoolMember], page: &BTreeMap<String, UpstreamHealth>) -> BTreeMap<String, ObservedHealth> {
    pool.iter().map(|m| (m.upstream.clone(), page.get(&m.upstream).copied().into())).collect()
}

/// Polls the metrics until every pool upstream is healthy, at most `limit`; returns each
/// upstream's last seen health.
pub async fn wait_pool(
    url: &str,
    pool: &[PoolMember],
    limit: Duration,
    progress: ProgressSink<'_>,
) -> BTreeMap<String, ObservedHealth> {
    let started = Instant::now();
    let label = "front proxy pool".to_owned();
    loop {
        let (health, state) = match read_upstreams(url).await {
            Ok(page) => {
                let health = pool_health(pool, &page);
                let state = health.iter().map(|(u, h)| format!("{u} {h}")).collect::<Vec<_>>().join(", ");
                (health, state)
            }
            Err(reason) => (
                pool.iter().map(|m| (m.upstream.clone(), ObservedHealth::Unknown)).collect(),
                format!("metrics: {reason}"),
            ),
        };
        if health.values().all(|h| *h == ObservedHealth::Healthy) {
            progress(Progress::Done { label, state, ok: true });
            return health;
        }
        if started.elapsed() >= limit {
            let state = format!("not all healthy after {}s: {state}", limit.as_secs());
            progress(Progress::Done { label, state, ok: false });
            return health;
        }
        progress(Progress::Waiting { label: label.clone(), state, waited: started.elapsed() });
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
