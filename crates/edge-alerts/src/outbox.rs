//! The on-disk outbox: every alert event not yet delivered, oldest first, in one JSON file.
//!
//! One file, replaced atomically, so that "delivered, remove it" is a single
//! step and a killed process leaves the old outbox or the new one. The file
//! also journals the state files a tick is about to write (`commit`): a run
//! that dies between the outbox and `upstream-state.env` is rolled forward by
//! the next run instead of detecting the same transitions twice.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::AlertError;
use crate::event::{Event, EventKind, Severity};
use crate::transitions::WatchState;

/// Beyond this many undelivered events the oldest are dropped (and counted), so a
/// node whose transports are down for weeks does not grow the file without bound.
pub const MAX_QUEUED: usize = 5_000;

/// One undelivered event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Queued {
    /// Unique within this outbox, increasing.
    pub id: u64,
    /// The event.
    pub event: Event,
    /// Held by the open circuit breaker until something recovers.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub held: bool,
}

/// State files a tick decided to write; rolled forward if the tick died before writing them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    /// The text of `upstream-state.env`.
    pub upstream_state: String,
    /// The text of `circuit-breaker.state`.
    pub breaker: String,
}

/// The outbox file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outbox {
    #[serde(default)]
    next_id: u64,
    /// Undelivered events, oldest first.
    #[serde(default)]
    pub entries: Vec<Queued>,
    /// Events dropped because the outbox was full, not yet reported.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropped: u64,
    /// The transition detector's memory.
    #[serde(default)]
    pub watch: WatchState,
    /// Pending state-file writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<Commit>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Outbox {
    /// Reads the outbox; a missing file is an empty outbox. A file that does not
    /// parse is moved aside (never deleted) and replaced by an outbox that says so.
    pub fn load(path: &Path, now: u64) -> Result<Self, AlertError> {
        let bytes = match edge_core::read_no_follow(path) {
            Ok(Some(b)) => b,
            Ok(None) => return Ok(Self::default()),
            Err(source) => return Err(AlertError::ReadState { path: path.to_owned(), source }),
        };
        match serde_json::from_slice(&bytes) {
            Ok(outbox) => Ok(outbox),
            Err(err) => {
                let aside = path.with_extension(format!("json.corrupt-{now}"));
                std::fs::rename(path, &aside).map_err(|e| AlertError::Outbox {
                    path: path.to_owned(),
                    reason: format!("unreadable ({err}) and cannot be moved aside: {e}"),
                })?;
                tracing::warn!(path = %path.display(), aside = %aside.display(), %err, "outbox unreadable, moved aside");
                let mut fresh = Self::default();
                fresh.push(
                    Event::new(
                        now,
                        EventKind::Note {
                            severity: Severity::Warning,
                            text: format!("alert outbox was unreadable ({err}); moved to {}", aside.display()),
                        },
                    ),
                    false,
                );
                Ok(fresh)
            }
        }
    }

    /// Reads the outbox without changing anything (for checks): a missing file is empty, one
    /// that does not parse is an error.
    pub fn peek(path: &Path) -> Result<Self, AlertError> {
        match edge_core::read_no_follow(path) {
            Ok(Some(bytes)) => serde_json::from_slice(&bytes)
                .map_err(|e| AlertError::Outbox { path: path.to_owned(), reason: format!("unreadable: {e}") }),
            Ok(None) => Ok(Self::default()),
            Err(source) => Err(AlertError::ReadState { path: path.to_owned(), source }),
        }
    }

    /// Writes the outbox atomically.
    pub fn save(&self, path: &Path) -> Result<(), AlertError> {
        let json = serde_json::to_vec_pretty(self)
            .map_err(|e| AlertError::Outbox { path: path.to_owned(), reason: e.to_string() })?;
        edge_core::write_atomic(path, &json).map_err(|source| AlertError::WriteState { path: path.to_owned(), source })
    }

    /// Queues an event.
    pub fn push(&mut self, event: Event, held: bool) {
        self.next_id += 1;
        self.entries.push(Queued { id: self.next_id, event, held });
        if self.entries.len() > MAX_QUEUED {
            let excess = self.entries.len() - MAX_QUEUED;
            self.entries.drain(..excess);
            self.dropped += excess as u64;
        }
    }

    /// Removes delivered events.
    pub fn remove(&mut self, ids: &[u64]) {
        let ids: std::collections::HashSet<u64> = ids.iter().copied().collect();
        self.entries.retain(|q| !ids.contains(&q.id));
    }

    /// Releases everything the circuit breaker held.
    pub fn release_held(&mut self) {
        for q in &mut self.entries {
            q.held = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Health;

    fn ev(i: u64) -> Event {
        Event::new(
            i,
            EventKind::Transition {
                channel: None,
                upstream: format!("u{i}"),
                from: Health::Healthy,
                to: Health::Unhealthy,
            },
        )
    }

    #[test]
    fn round_trips_and_removes_in_one_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.json");
        assert_eq!(Outbox::load(&path, 0).unwrap(), Outbox::default());
        let mut o = Outbox::default();
        o.push(ev(1), false);
        o.push(ev(2), true);
        o.save(&path).unwrap();
        let mut back = Outbox::load(&path, 0).unwrap();
        assert_eq!(back, o);
        back.remove(&[1]);
        back.save(&path).unwrap();
        let ids: Vec<u64> = Outbox::load(&path, 0).unwrap().entries.iter().map(|q| q.id).collect();
        assert_eq!(ids, [2]);
    }

    #[test]
    fn ids_keep_increasing_after_removal() {
        let mut o = Outbox::default();
        o.push(ev(1), false);
        o.remove(&[1]);
        o.push(ev(2), false);
        assert_eq!(o.entries[0].id, 2);
    }

    #[test]
    fn a_corrupt_outbox_is_moved_aside_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.json");
        std::fs::write(&path, "{not json").unwrap();
        let o = Outbox::load(&path, 7).unwrap();
        assert_eq!(o.entries.len(), 1);
        assert!(o.entries[0].event.text("h").starts_with("[h] alert outbox was unreadable"));
        assert_eq!(std::fs::read_to_string(dir.path().join("outbox.json.corrupt-7")).unwrap(), "{not json");
    }

    #[test]
    fn overflow_drops_the_oldest_and_counts_them() {
        let mut o = Outbox::default();
        for i in 0..(MAX_QUEUED as u64 + 3) {
            o.push(ev(i), false);
        }
        assert_eq!(o.entries.len(), MAX_QUEUED);
        assert_eq!(o.dropped, 3);
        assert_eq!(o.entries[0].event.at, 3);
    }
}
