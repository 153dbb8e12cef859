//! Message composition: one event is its exact line; several make a digest, oldest first,
//! split on line boundaries so that no message exceeds Telegram's 4096 characters.

use crate::event::{EventKind, Severity};
use crate::outbox::Queued;
use crate::time::rfc3339;

/// Telegram's limit on a message's text, in UTF-16 code units.
pub const TELEGRAM_LIMIT: usize = 4096;

/// One message to deliver, and the outbox entries it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// The text.
    pub text: String,
    /// Outbox ids to remove once it is delivered.
    pub ids: Vec<u64>,
    /// Whether it reports the dropped-events counter (reset once delivered).
    pub reports_dropped: bool,
}

/// Length as Telegram counts it.
pub fn text_len(text: &str) -> usize {
    text.encode_utf16().count()
}

/// Builds the messages for `batch` (oldest first); `dropped` events were lost to a full outbox.
pub fn compose(host: &str, batch: &[&Queued], dropped: u64, limit: usize) -> Vec<Chunk> {
    if batch.is_empty() && dropped == 0 {
        return Vec::new();
    }
    let dropped_line =
        (dropped > 0).then(|| format!("[{host}] {dropped} older alerts were dropped because the outbox was full"));
    if let ([only], None) = (batch, &dropped_line) {
        return vec![Chunk {
            text: truncate(&only.event.text(host), limit),
            ids: vec![only.id],
            reports_dropped: false,
        }];
    }

    let critical = batch.iter().find(|q| q.event.severity() == Severity::Critical).map(|q| {
        if q.event.kind == EventKind::AllUnhealthy { q.event.text(host) } else { format!("CRITICAL on {host}") }
    });
    let n = batch.len();
    let header = |part: Option<(usize, usize)>, first: bool| {
        let mut h = String::new();
        if let Some(c) = &critical {
            h.push_str(c);
            h.push('\n');
        }
        h.push_str(&format!("[{host}] {n} alerts, oldest first"));
        if let Some((i, m)) = part {
            h.push_str(&format!(" (part {i}/{m})"));
        }
        h.push(':');
        if let (true, Some(d)) = (first, &dropped_line) {
            h.push('\n');
            h.push_str(d);
        }
        h
    };
    // Reserve room for the longest header any part can get.
    let reserve = text_len(&header(Some((n.max(1), n.max(1))), true));
    let budget = limit.saturating_sub(reserve + 1).max(1);
    let lines: Vec<(u64, String)> = batch
        .iter()
        .map(|q| (q.id, truncate(&format!("{} {}", rfc3339(q.event.at), q.event.text(host)), budget)))
        .collect();

    let mut groups: Vec<Vec<&(u64, String)>> = vec![Vec::new()];
    let mut used = 0;
    for line in &lines {
        let cost = text_len(&line.1) + 1;
        let current = groups.last_mut().expect("groups starts non-empty");
        if !current.is_empty() && used + cost > budget + 1 {
            groups.push(Vec::new());
            used = 0;
        }
        used += cost;
        groups.last_mut().expect("just pushed").push(line);
    }
    let m = groups.len();
    groups
        .into_iter()
        .enumerate()
        .map(|(i, group)| {
            let mut text = header((m > 1).then_some((i + 1, m)), i == 0);
            for (_, line) in &group {
                text.push('\n');
                text.push_str(line);
            }
            Chunk { text, ids: group.iter().map(|(id, _)| *id).collect(), reports_dropped: i == 0 && dropped > 0 }
        })
        .collect()
}

/// Cuts `text` to `limit` UTF-16 units, saying so.
fn truncate(text: &str, limit: usize) -> String {
    if text_len(text) <= limit {
        return text.to_owned();
    }
    const MARK: &str = " [truncated]";
    let room = limit.saturating_sub(MARK.len());
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        if used + c.len_utf16() > room {
            break;
        }
        used += c.len_utf16();
        out.push(c);
    }
    out.push_str(MARK);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, Health};
    use proptest::prelude::*;

    fn q(id: u64, upstream: &str, to: Health) -> Queued {
        let from = if to == Health::Healthy { Health::Unhealthy } else { Health::Healthy };
        Queued {
            id,
            event: Event::new(
                1_716_200_000 + id,
                EventKind::Transition { channel: None, upstream: upstream.into(), from, to },
            ),
            held: false,
        }
    }

    fn check(batch: &[Queued], dropped: u64, limit: usize, expected: &[&str]) {
        let refs: Vec<&Queued> = batch.iter().collect();
        let got: Vec<String> = compose("h", &refs, dropped, limit).into_iter().map(|c| c.text).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn one_event_is_its_exact_line() {
        check(
            &[q(1, "a:1", Health::Unhealthy)],
            0,
            TELEGRAM_LIMIT,
            &["[h] TRANSITION upstream=a:1 healthy -> unhealthy"],
        );
    }

    #[test]
    fn several_events_are_a_digest_oldest_first() {
        check(
            &[q(1, "a", Health::Unhealthy), q(2, "a", Health::Healthy)],
            0,
            TELEGRAM_LIMIT,
            &["[h] 2 alerts, oldest first:\n\
               2024-05-20T10:13:21Z [h] TRANSITION upstream=a healthy -> unhealthy\n\
               2024-05-20T10:13:22Z [h] TRANSITION upstream=a unhealthy -> healthy"],
        );
    }

    #[test]
    fn a_critical_digest_leads_with_the_critical_line() {
        let crit = Queued { id: 3, event: Event::new(1_716_200_003, EventKind::AllUnhealthy), held: false };
        check(
            &[q(1, "a", Health::Unhealthy), crit],
            2,
            TELEGRAM_LIMIT,
            &["CRITICAL: all upstreams unhealthy on h\n[h] 2 alerts, oldest first:\n\
               [h] 2 older alerts were dropped because the outbox was full\n\
               2024-05-20T10:13:21Z [h] TRANSITION upstream=a healthy -> unhealthy\n\
               2024-05-20T10:13:23Z CRITICAL: all upstreams unhealthy on h"],
        );
    }

    #[test]
    fn long_digests_split_on_line_boundaries() {
        let batch: Vec<Queued> = (1..=3).map(|i| q(i, "a", Health::Unhealthy)).collect();
        check(
            &batch,
            0,
            200,
            &[
                "[h] 3 alerts, oldest first (part 1/2):\n\
               2024-05-20T10:13:21Z [h] TRANSITION upstream=a healthy -> unhealthy\n\
               2024-05-20T10:13:22Z [h] TRANSITION upstream=a healthy -> unhealthy",
                "[h] 3 alerts, oldest first (part 2/2):\n\
               2024-05-20T10:13:23Z [h] TRANSITION upstream=a healthy -> unhealthy",
            ],
        );
    }

    proptest! {
        #[test]
        fn every_event_is_in_exactly_one_chunk_within_the_limit(
            names in proptest::collection::vec("\\PC{1,300}", 1..60),
            limit in 200usize..5000,
        ) {
            let batch: Vec<Queued> = names.iter().enumerate().map(|(i, n)| q(i as u64, n, Health::Unhealthy)).collect();
            let refs: Vec<&Queued> = batch.iter().collect();
            let chunks = compose("host", &refs, 0, limit);
            let mut ids: Vec<u64> = chunks.iter().flat_map(|c| c.ids.clone()).collect();
            prop_assert_eq!(ids.clone(), (0..names.len() as u64).collect::<Vec<_>>());
            ids.dedup();
            prop_assert_eq!(ids.len(), names.len());
            for c in &chunks {
                prop_assert!(text_len(&c.text) <= limit, "{} > {}", text_len(&c.text), limit);
            }
        }
    }
}
