//! Caddy's metrics page: never panics, keeps within its caps, and a filter only removes.

use std::path::Path;

use edge_alerts::UpstreamMetrics;
use edge_alerts::metrics::{MAX_LABEL_BYTES, MAX_PROBLEMS, MAX_UPSTREAMS};

use crate::{Seed, file_seeds, files};

/// Parses `data` as a metrics page and checks what the parser promises of any page.
pub fn check(data: &[u8]) {
    let all = UpstreamMetrics::parse_bytes(data);
    let lines = data.split(|&b| b == b'\n').count();
    assert!(all.health.len() <= MAX_UPSTREAMS, "{} upstreams kept, cap {MAX_UPSTREAMS}", all.health.len());
    // One problem per series up to the cap, then one per cap gone over (three caps).
    assert!(all.problems.len() <= MAX_PROBLEMS + 3, "{} problems listed", all.problems.len());
    for upstream in all.health.keys() {
        assert!(upstream.len() <= MAX_LABEL_BYTES, "an upstream of {} bytes was kept", upstream.len());
    }
    for problem in &all.problems {
        assert!((1..=lines).contains(&problem.line), "problem on line {} of a {lines}-line page", problem.line);
        assert!(!problem.message.is_empty(), "a problem without a message on line {}", problem.line);
    }
    // Keeping every upstream is the plain parse; keeping some only drops upstreams.
    assert_eq!(UpstreamMetrics::parse_bytes_only(data, |_| true), all);
    let some = UpstreamMetrics::parse_bytes_only(data, |u| u.len() % 2 == 0);
    for (upstream, health) in &some.health {
        assert_eq!(upstream.len() % 2, 0, "{upstream:?} kept though the filter refuses it");
        if all.health.len() < MAX_UPSTREAMS {
            assert_eq!(all.health.get(upstream), Some(health), "{upstream:?} differs once filtered");
        }
    }
}

/// The metrics pages in `tests/fixtures/metrics/`.
pub fn seeds(root: &Path) -> Result<Vec<Seed>, String> {
    file_seeds(&files(&root.join("tests/fixtures/metrics"), &[".txt"])?)
}
