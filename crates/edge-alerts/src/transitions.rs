//! Transition detection: the previous `upstream-state.env` plus what the metrics say now gives the events to send.
//!
//! A pool upstream without a series becomes `unknown` (its line leaves
//! `upstream-state.env`, so no script reads it as healthy) and is an event;
//! an unreachable metrics endpoint is an event; so is its return.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use edge_core::{PoolMember, UpstreamHealth, UpstreamState};
use serde::{Deserialize, Serialize};

use crate::event::{Event, EventKind, Health};
use crate::metrics::{MAX_UPSTREAMS, UpstreamMetrics};

/// What one look at the metrics endpoint gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// The page was read.
    Metrics {
        /// URL or file it came from.
        source: String,
        /// What it says.
        metrics: UpstreamMetrics,
    },
    /// The page could not be read.
    Unreachable {
        /// URL or file.
        source: String,
        /// Why.
        reason: String,
    },
}

/// What the detector remembers besides `upstream-state.env`, whose format has no room for it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchState {
    /// Since when the metrics endpoint has been unreachable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_unreachable_since: Option<u64>,
    /// Pool upstreams without a series, and since when.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unknown: BTreeMap<String, u64>,
}

/// The outcome of [`detect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    /// Events, in the order they should be read.
    pub events: Vec<Event>,
    /// The new `upstream-state.env`.
    pub state: UpstreamState,
    /// The new detector memory.
    pub watch: WatchState,
    /// Upstream addresses that cannot be a line of `upstream-state.env` and were ignored.
    pub ignored: Vec<String>,
}

/// Compares `observation` with the previous state.
///
/// The pool is the set of upstreams that must have a series. When it is not
/// empty (stack mode) only its members count: a series of any other upstream
/// creates no state and no event. When it is empty (legacy mode) every
/// upstream of the page counts, and those known from before, at most
/// [`MAX_UPSTREAMS`] in all. `since` in `upstream-state.env` is when the
/// upstream entered its current health.
pub fn detect(
    prev: &UpstreamState,
    watch: &WatchState,
    observation: &Observation,
    pool: &[PoolMember],
    now: u64,
) -> Detection {
    let mut events = Vec::new();
    let mut state = prev.clone();
    let mut new_watch = watch.clone();
    let event = |kind| Event::new(now, kind);

    let metrics = match observation {
        Observation::Unreachable { source, reason } => {
            if watch.metrics_unreachable_since.is_none() {
                events.push(event(EventKind::MetricsUnreachable { source: source.clone(), reason: reason.clone() }));
                new_watch.metrics_unreachable_since = Some(now);
            }
            return Detection { events, state, watch: new_watch, ignored: Vec::new() };
        }
        Observation::Metrics { source, metrics } => {
            if new_watch.metrics_unreachable_since.take().is_some() {
                events.push(event(EventKind::MetricsRecovered { source: source.clone() }));
            }
            metrics
        }
    };

    // An address that cannot be a line of upstream-state.env is reported and left out.
    let storable = |u: &str| UpstreamState::default().set(u, UpstreamHealth::Healthy, 0).is_ok();
    let (members, ignored): (Vec<&str>, Vec<String>) = if pool.is_empty() {
        let page = metrics.health.keys().map(String::as_str);
        let ignored = page.clone().filter(|u| !storable(u)).map(str::to_owned).collect();
        let mut all: BTreeSet<&str> = page.filter(|u| storable(u)).take(MAX_UPSTREAMS).collect();
        for u in prev.iter().map(|e| e.upstream.as_str()).chain(watch.unknown.keys().map(String::as_str)) {
            if all.len() >= MAX_UPSTREAMS {
                break;
            }
            all.insert(u);
        }
        (all.into_iter().collect(), ignored)
    } else {
        // Pool order: failover priority.
        let mut seen = HashSet::new();
        let upstreams = pool.iter().map(|m| m.upstream.as_str()).filter(|u| seen.insert(*u));
        let (members, ignored): (Vec<&str>, Vec<&str>) = upstreams.partition(|u| storable(u));
        (members, ignored.into_iter().map(str::to_owned).collect())
    };
    let in_pool: HashSet<&str> = members.iter().copied().collect();
    let channel_of = |u: &str| pool.iter().find(|m| m.upstream == u).map(|m| m.channel.clone());
    let observed = |u: &str| metrics.health.get(u).copied();
    let previous = |u: &str| -> Option<Health> {
        if watch.unknown.contains_key(u) { Some(Health::Unknown) } else { prev.get(u).map(|e| e.health.into()) }
    };

    for &upstream in &members {
        match observed(upstream) {
            Some(now_health) => {
                let before = previous(upstream);
                let changed = before != Some(now_health.into());
                let since = match prev.get(upstream) {
                    Some(e) if !changed => e.since,
                    _ => now,
                };
                // Cannot fail: the address was checked above.
                let _ = state.set(upstream, now_health, since);
                new_watch.unknown.remove(upstream);
                match before {
                    // First sight of a healthy upstream is not news; of an unhealthy one it is.
                    None if now_health == UpstreamHealth::Healthy => {}
                    Some(_) if !changed => {}
                    b => events.push(event(EventKind::Transition {
                        channel: channel_of(upstream),
                        upstream: upstream.to_owned(),
                        from: b.unwrap_or(Health::Unknown),
                        to: now_health.into(),
                    })),
                }
            }
            None => {
                if new_watch.unknown.contains_key(upstream) {
                    continue;
                }
                let from = prev.get(upstream).map(|e| e.health.into()).unwrap_or(Health::Unknown);
                events.push(event(EventKind::Transition {
                    channel: channel_of(upstream),
                    upstream: upstream.to_owned(),
                    from,
                    to: Health::Unknown,
                }));
                new_watch.unknown.insert(upstream.to_owned(), now);
                state.remove(upstream);
            }
        }
    }

    // Upstreams that left the pool (or never were in it) are forgotten without a word.
    let stale: Vec<String> =
        state.iter().map(|e| e.upstream.as_str()).filter(|u| !in_pool.contains(u)).map(str::to_owned).collect();
    for u in stale {
        state.remove(&u);
    }
    new_watch.unknown.retain(|u, _| in_pool.contains(u.as_str()));

    let all_unhealthy = |is_down: &dyn Fn(&str) -> bool| !members.is_empty() && members.iter().all(|u| is_down(u));
    let down_now = all_unhealthy(&|u| observed(u) == Some(UpstreamHealth::Unhealthy));
    let down_before = all_unhealthy(&|u| previous(u) == Some(Health::Unhealthy));
    if down_now && !down_before {
        events.push(event(EventKind::AllUnhealthy));
    }

    Detection { events, state, watch: new_watch, ignored }
}

/// `prev` with the legacy installer's upstream names (`legacy`: name → channel, e.g.
/// `xray-client:3080` → `xray`) renamed to the dial address of their channel in `pool`, keeping
/// health and `since`, so that taking over a legacy host reads as no change. A name whose
/// channel is not in the pool, or whose channel's address already has a line, is left as it
/// is (and forgotten by [`detect`] like any upstream outside the pool).
pub fn adopt_legacy_upstreams(
    prev: &UpstreamState,
    pool: &[PoolMember],
    legacy: &BTreeMap<String, String>,
) -> UpstreamState {
    let mut state = prev.clone();
    for entry in prev.iter() {
        let Some(channel) = legacy.get(&entry.upstream) else { continue };
        let Some(member) = pool.iter().find(|m| &m.channel == channel) else { continue };
        if member.upstream == entry.upstream || prev.get(&member.upstream).is_some() {
            continue;
        }
        // The pool's addresses are storable: detect checks the same.
        if state.set(&member.upstream, entry.health, entry.since).is_ok() {
            state.remove(&entry.upstream);
        }
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{page, pool};
    use Health::*;

    const NOW: u64 = 1_000;

    /// Events as text lines (host `h`) and the resulting state file.
    fn check(prev: &str, watch: &WatchState, obs: Observation, pool: &[PoolMember], events: &[&str], state: &str) {
        let prev = UpstreamState::parse(prev).unwrap();
        let d = detect(&prev, watch, &obs, pool, NOW);
        let got: Vec<String> = d.events.iter().map(|e| e.text("h")).collect();
        assert_eq!(got, events);
        assert_eq!(d.state.to_string(), state);
    }

    #[test]
    fn legacy_upstream_names_become_the_pools_with_their_health_and_time() {
        let legacy: BTreeMap<String, String> =
            [("xray-client:3080", "xray"), ("host.docker.internal:18443", "hysteria2"), ("127.0.0.1:1080", "naive")]
                .into_iter()
                .map(|(u, c)| (u.to_owned(), c.to_owned()))
                .collect();
        let pool = vec![
            PoolMember::new("xray", "127.0.0.1:3081"),
            PoolMember::new("hysteria2", "127.0.0.1:3082"),
            PoolMember::new("naive", "127.0.0.1:3083"),
        ];
        let prev = UpstreamState::parse(
            "xray-client:3080=healthy:1716200000
host.docker.internal:18443=unhealthy:1716200100
127.0.0.1:1080=healthy:1716200200
other:9=healthy:1
",
        )
        .unwrap();
        let adopted = adopt_legacy_upstreams(&prev, &pool, &legacy);
        let mut lines: Vec<String> = adopted.to_string().lines().map(str::to_owned).collect();
        lines.sort();
        assert_eq!(
            lines,
            [
                "127.0.0.1:3081=healthy:1716200000",
                "127.0.0.1:3082=unhealthy:1716200100",
                "127.0.0.1:3083=healthy:1716200200",
                "other:9=healthy:1",
            ]
        );
        // The same health on the page is no transition, and the times stay.
        let obs = page(&[("127.0.0.1:3081", 1), ("127.0.0.1:3082", 0), ("127.0.0.1:3083", 1)]);
        let d = detect(&adopted, &WatchState::default(), &obs, &pool, NOW);
        assert!(d.events.is_empty(), "{:?}", d.events);
        assert!(d.state.to_string().contains("127.0.0.1:3081=healthy:1716200000\n"), "{}", d.state);
        // Without the mapping the takeover would read as vanished upstreams and new ones.
        let d = detect(&prev, &WatchState::default(), &page(&[("127.0.0.1:3082", 0)]), &pool, NOW);
        assert!(!d.events.is_empty());
        // A channel outside the pool, or an edge line already there, is left alone.
        let edge_line = UpstreamState::parse(
            "xray-client:3080=unhealthy:5
127.0.0.1:3081=healthy:7
",
        )
        .unwrap();
        assert_eq!(adopt_legacy_upstreams(&edge_line, &pool, &legacy), edge_line);
        assert_eq!(
            adopt_legacy_upstreams(&prev, &pool[..1], &legacy).get("127.0.0.1:1080").map(|e| e.since),
            Some(1716200200)
        );
    }

    #[test]
    fn transitions_name_the_channel_of_the_pool() {
        let pool = vec![PoolMember::new("xray", "127.0.0.1:3081")];
        check(
            "127.0.0.1:3081=healthy:1\n",
            &WatchState::default(),
            page(&[("127.0.0.1:3081", 0)]),
            &pool,
            &[
                "[h] TRANSITION channel=xray upstream=127.0.0.1:3081 healthy -> unhealthy",
                "CRITICAL: all upstreams unhealthy on h",
            ],
            "127.0.0.1:3081=unhealthy:1000\n",
        );
    }

    #[test]
    fn flips_are_transitions() {
        let w = WatchState::default();
        check(
            "a=healthy:1\nb=healthy:1\n",
            &w,
            page(&[("a", 0), ("b", 1)]),
            &pool(&["a", "b"]),
            &["[h] TRANSITION channel=ch upstream=a healthy -> unhealthy"],
            "a=unhealthy:1000\nb=healthy:1\n",
        );
        check(
            "a=unhealthy:5\n",
            &w,
            page(&[("a", 1)]),
            &[],
            &["[h] TRANSITION upstream=a unhealthy -> healthy"],
            "a=healthy:1000\n",
        );
        check("a=healthy:5\n", &w, page(&[("a", 1)]), &[], &[], "a=healthy:5\n");
    }

    #[test]
    fn first_sight_reports_only_trouble() {
        let w = WatchState::default();
        check(
            "",
            &w,
            page(&[("a", 1), ("b", 0)]),
            &pool(&["a", "b", "c"]),
            &[
                "[h] TRANSITION channel=ch upstream=b unknown -> unhealthy",
                "[h] MISSING channel=ch upstream=c: no caddy_reverse_proxy_upstreams_healthy series, health unknown",
            ],
            "a=healthy:1000\nb=unhealthy:1000\n",
        );
    }

    #[test]
    fn a_missing_series_is_unknown_not_healthy() {
        let prev = UpstreamState::parse("a=healthy:1\nb=healthy:1\n").unwrap();
        let d = detect(&prev, &WatchState::default(), &page(&[("a", 1)]), &pool(&["a", "b"]), NOW);
        assert_eq!(d.events.len(), 1);
        assert_eq!(
            d.events[0].kind,
            EventKind::Transition { channel: Some("ch".into()), upstream: "b".into(), from: Healthy, to: Unknown }
        );
        assert_eq!(d.state.to_string(), "a=healthy:1\n");
        assert_eq!(d.watch.unknown.get("b"), Some(&NOW));
        // Still missing: no new event.
        let d2 = detect(&d.state, &d.watch, &page(&[("a", 1)]), &pool(&["a", "b"]), NOW + 60);
        assert!(d2.events.is_empty());
        // Back: a recovery.
        let d3 = detect(&d2.state, &d2.watch, &page(&[("a", 1), ("b", 1)]), &pool(&["a", "b"]), NOW + 120);
        assert_eq!(d3.events[0].text("h"), "[h] TRANSITION channel=ch upstream=b unknown -> healthy");
        assert!(d3.watch.unknown.is_empty());
    }

    #[test]
    fn unreachable_metrics_is_an_event_once_then_a_recovery() {
        let prev = UpstreamState::parse("a=healthy:1\n").unwrap();
        let down = Observation::Unreachable { source: "u".into(), reason: "refused".into() };
        let d = detect(&prev, &WatchState::default(), &down, &[], NOW);
        assert_eq!(
            d.events.iter().map(|e| e.text("h")).collect::<Vec<_>>(),
            ["[h] METRICS UNREACHABLE source=u: refused"]
        );
        assert_eq!(d.state, prev);
        assert!(detect(&prev, &d.watch, &down, &[], NOW + 1).events.is_empty());
        let back = detect(&prev, &d.watch, &page(&[("a", 1)]), &[], NOW + 2);
        assert_eq!(
            back.events.iter().map(|e| e.text("h")).collect::<Vec<_>>(),
            ["[h] METRICS REACHABLE again source=m"]
        );
        assert_eq!(back.watch, WatchState::default());
    }

    #[test]
    fn all_down_is_critical_once() {
        let w = WatchState::default();
        check(
            "a=healthy:1\nb=unhealthy:1\n",
            &w,
            page(&[("a", 0), ("b", 0)]),
            &pool(&["a", "b"]),
            &["[h] TRANSITION channel=ch upstream=a healthy -> unhealthy", "CRITICAL: all upstreams unhealthy on h"],
            "a=unhealthy:1000\nb=unhealthy:1\n",
        );
        check(
            "a=unhealthy:1\nb=unhealthy:1\n",
            &w,
            page(&[("a", 0), ("b", 0)]),
            &pool(&["a", "b"]),
            &[],
            "a=unhealthy:1\nb=unhealthy:1\n",
        );
        // A missing member is not known to be down: no CRITICAL.
        check(
            "a=healthy:1\n",
            &w,
            page(&[("a", 0)]),
            &pool(&["a", "b"]),
            &[
                "[h] TRANSITION channel=ch upstream=a healthy -> unhealthy",
                "[h] MISSING channel=ch upstream=b: no caddy_reverse_proxy_upstreams_healthy series, health unknown",
            ],
            "a=unhealthy:1000\n",
        );
    }

    #[test]
    fn upstreams_that_left_the_pool_are_forgotten() {
        check(
            "a=healthy:1\nold=unhealthy:1\n",
            &WatchState::default(),
            page(&[("a", 1)]),
            &pool(&["a"]),
            &[],
            "a=healthy:1\n",
        );
    }

    #[test]
    fn in_stack_mode_only_pool_members_count() {
        let w = WatchState::default();
        // A series outside the pool creates no state and no alert, healthy or not.
        check(
            "a=healthy:1\n",
            &w,
            page(&[("a", 1), ("intruder", 0), ("other", 1)]),
            &pool(&["a"]),
            &[],
            "a=healthy:1\n",
        );
        // Not even when everything it names is down: the pool is healthy.
        check("", &w, page(&[("a", 1), ("x", 0), ("y", 0)]), &pool(&["a"]), &[], "a=healthy:1000\n");
        // A state line left by an earlier run outside the pool is dropped, even if the page still lists it.
        check("a=healthy:1\nx=unhealthy:1\n", &w, page(&[("a", 1), ("x", 0)]), &pool(&["a"]), &[], "a=healthy:1\n");
        // In legacy mode (no pool) the page is what counts.
        check(
            "",
            &w,
            page(&[("a", 1), ("x", 0)]),
            &[],
            &["[h] TRANSITION upstream=x unknown -> unhealthy"],
            "a=healthy:1000\nx=unhealthy:1000\n",
        );
    }

    #[test]
    fn a_page_of_many_series_is_bounded_in_either_mode() {
        let names: Vec<String> = (0..3 * MAX_UPSTREAMS).map(|i| format!("u{i}:80")).collect();
        let series: Vec<(&str, u8)> = names.iter().map(|u| (u.as_str(), 0)).collect();
        let d = detect(&UpstreamState::default(), &WatchState::default(), &page(&series), &pool(&["u1:80"]), NOW);
        assert_eq!(d.state.to_string(), "u1:80=unhealthy:1000\n");
        assert_eq!(d.events.len(), 2, "one transition and the CRITICAL of a one-member pool");
        // Legacy mode: what the page parser kept, no more; a previous state adds nothing past the cap.
        let prev = UpstreamState::parse("gone:1=healthy:1\n").unwrap();
        let d = detect(&prev, &WatchState::default(), &page(&series), &[], NOW);
        assert_eq!(d.state.iter().count(), MAX_UPSTREAMS);
        assert!(d.state.get("gone:1").is_none() && d.watch.unknown.is_empty());
    }

    #[test]
    fn addresses_that_cannot_be_stored_are_ignored() {
        let d = detect(&UpstreamState::default(), &WatchState::default(), &page(&[("a b", 0)]), &[], NOW);
        assert!(d.events.is_empty());
        assert_eq!(d.ignored, ["a b"]);
    }
}
