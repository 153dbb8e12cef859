//! Circuit breaker for alert cascades: after K consecutive ticks that each bring new failures,
//! one "parked" summary goes out and further warnings are held until something recovers.
//!
//! Held alerts are not dropped: they stay in the outbox and ride along with
//! the next message (a recovery, or a CRITICAL, which is never held).
//! State: `circuit-breaker.state`, `KEY=value` lines.

use std::fmt;
use std::path::Path;

use edge_core::EnvFile;

use crate::AlertError;
use crate::event::Event;

/// The breaker's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Breaker {
    /// Consecutive ticks that brought at least one new failure.
    pub failing_ticks: u32,
    /// When it opened, if it is open.
    pub parked_since: Option<u64>,
}

/// What one tick did to the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerStep {
    /// Closed before and after.
    Closed,
    /// Opened by this tick: send the parked summary.
    Parked,
    /// Open before and after: hold warnings.
    StillParked,
    /// Closed by a recovery in this tick.
    Unparked,
}

impl Breaker {
    /// Parses `circuit-breaker.state`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let env = EnvFile::parse(text).map_err(|e| e.to_string())?;
        let number = |key: &str| -> Result<Option<u64>, String> {
            env.get(key)
                .filter(|v| !v.is_empty())
                .map(|v| v.parse::<u64>().map_err(|_| format!("{key}={v:?} is not a number")))
                .transpose()
        };
        Ok(Self {
            failing_ticks: number("FAILING_TICKS")?.map(|n| n.min(u64::from(u32::MAX)) as u32).unwrap_or(0),
            parked_since: number("PARKED_SINCE")?,
        })
    }

    /// Reads the file; a missing or unreadable one is a closed breaker (alerts flow rather than stay parked).
    pub fn load(path: &Path) -> Result<Self, AlertError> {
        match edge_core::read_no_follow(path) {
            Ok(Some(bytes)) => Ok(Self::parse(&String::from_utf8_lossy(&bytes)).unwrap_or_else(|reason| {
                tracing::warn!(path = %path.display(), %reason, "circuit breaker state unreadable, starting closed");
                Self::default()
            })),
            Ok(None) => Ok(Self::default()),
            Err(source) => Err(AlertError::ReadState { path: path.to_owned(), source }),
        }
    }

    /// Whether warnings are held.
    pub fn is_parked(&self) -> bool {
        self.parked_since.is_some()
    }

    /// Feeds one tick's events. `threshold` 0 disables the breaker.
    pub fn observe(&mut self, events: &[Event], threshold: u32, now: u64) -> BreakerStep {
        let was_parked = self.is_parked();
        if events.iter().any(Event::is_recovery) {
            self.failing_ticks = 0;
            self.parked_since = None;
            return if was_parked { BreakerStep::Unparked } else { BreakerStep::Closed };
        }
        if events.iter().any(Event::is_failure) {
            self.failing_ticks = self.failing_ticks.saturating_add(1);
        } else {
            // A quiet tick ends the streak; an open breaker stays open until a recovery.
            self.failing_ticks = 0;
        }
        if was_parked {
            BreakerStep::StillParked
        } else if threshold > 0 && self.failing_ticks >= threshold {
            self.parked_since = Some(now);
            BreakerStep::Parked
        } else {
            BreakerStep::Closed
        }
    }
}

impl fmt::Display for Breaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "FAILING_TICKS={}", self.failing_ticks)?;
        writeln!(f, "PARKED_SINCE={}", self.parked_since.map(|t| t.to_string()).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventKind, Health};
    use proptest::prelude::*;

    fn down(u: &str) -> Event {
        Event::new(
            0,
            EventKind::Transition { channel: None, upstream: u.into(), from: Health::Healthy, to: Health::Unhealthy },
        )
    }
    fn up(u: &str) -> Event {
        Event::new(
            0,
            EventKind::Transition { channel: None, upstream: u.into(), from: Health::Unhealthy, to: Health::Healthy },
        )
    }

    /// Feeds ticks (each a list of events) and checks the steps.
    fn check(threshold: u32, ticks: &[Vec<Event>], steps: &[BreakerStep]) {
        let mut b = Breaker::default();
        let got: Vec<BreakerStep> = ticks.iter().enumerate().map(|(i, t)| b.observe(t, threshold, i as u64)).collect();
        assert_eq!(got, steps);
    }

    #[test]
    fn parks_after_k_failing_ticks_until_a_recovery() {
        use BreakerStep::*;
        check(
            3,
            &[vec![down("a")], vec![down("b")], vec![down("c")], vec![down("d")], vec![], vec![up("a")]],
            &[Closed, Closed, Parked, StillParked, StillParked, Unparked],
        );
        check(
            3,
            &[vec![down("a")], vec![down("b")], vec![], vec![down("c")], vec![down("d")]],
            &[Closed, Closed, Closed, Closed, Closed],
        );
        check(0, &[vec![down("a")], vec![down("b")], vec![down("c")]], &[Closed, Closed, Closed]);
        check(2, &[vec![down("a")], vec![down("b"), up("a")], vec![down("c")]], &[Closed, Closed, Closed]);
    }

    #[test]
    fn reads_back_what_it_writes() {
        let b = Breaker { failing_ticks: 4, parked_since: Some(1_716_200_000) };
        assert_eq!(b.to_string(), "FAILING_TICKS=4\nPARKED_SINCE=1716200000\n");
        assert_eq!(Breaker::parse(&b.to_string()), Ok(b));
        assert_eq!(Breaker::parse(&Breaker::default().to_string()), Ok(Breaker::default()));
        assert_eq!(Breaker::parse("FAILING_TICKS=x\n"), Err("FAILING_TICKS=\"x\" is not a number".to_owned()));
    }

    proptest! {
        #[test]
        fn parse_never_panics(text in any::<String>()) {
            let _ = Breaker::parse(&text);
        }

        #[test]
        fn round_trips(ticks in any::<u32>(), since in proptest::option::of(any::<u64>())) {
            let b = Breaker { failing_ticks: ticks, parked_since: since };
            prop_assert_eq!(Breaker::parse(&b.to_string()), Ok(b));
        }
    }
}
