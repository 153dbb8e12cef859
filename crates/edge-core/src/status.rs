//! The state files operators' scripts read: `channels-status.env` and `upstream-state.env`.
//!
//! Both are `key=value` lines. Parsing never panics: a line that does not
//! parse is an error naming the line.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use crate::{CoreError, LineError, write_atomic};

/// The state of one channel, as `channels-status.env` records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelState {
    /// Rendered, deployed and in the front proxy's pool.
    Active,
    /// Not configured: its credentials are absent.
    Skipped,
    /// Its templates failed to render.
    FailedAtRender,
    /// Its container did not run or did not become healthy.
    FailedAtRuntime,
}

impl ChannelState {
    /// The word written to `channels-status.env`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Skipped => "skipped",
            Self::FailedAtRender => "failed_at_render",
            Self::FailedAtRuntime => "failed_at_runtime",
        }
    }
}

impl fmt::Display for ChannelState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ChannelState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "active" => Ok(Self::Active),
            "skipped" => Ok(Self::Skipped),
            "failed_at_render" => Ok(Self::FailedAtRender),
            "failed_at_runtime" => Ok(Self::FailedAtRuntime),
            other => Err(format!(
                "unknown channel state {other:?} (expected active, skipped, failed_at_render or failed_at_runtime)"
            )),
        }
    }
}

/// `channels-status.env`: one `key=state` line per channel, in stack order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelsStatus {
    entries: Vec<(String, ChannelState)>,
}

impl ChannelsStatus {
    /// Parses the file's text.
    pub fn parse(text: &str) -> Result<Self, LineError> {
        let mut status = Self::default();
        for (line, key, value) in key_value_lines(text)? {
            if !is_channel_key(key) {
                return Err(LineError { line, message: format!("invalid channel key {key:?}") });
            }
            let state = value.parse().map_err(|message| LineError { line, message })?;
            status.set(key, state);
        }
        Ok(status)
    }

    /// Reads the file; a missing file is an empty status.
    pub fn load(path: &Path) -> Result<Self, CoreError> {
        load_or_default(path, Self::parse)
    }

    /// Writes the file atomically.
    pub fn save(&self, path: &Path) -> Result<(), CoreError> {
        write_atomic(path, self.to_string().as_bytes())
    }

    /// Sets a channel's state, keeping its position if already present.
    ///
    /// Channel ids are `[A-Za-z0-9_.-]+`; the stack manifest guarantees that.
    pub fn set(&mut self, channel: &str, state: ChannelState) {
        match self.entries.iter_mut().find(|(k, _)| k == channel) {
            Some(entry) => entry.1 = state,
            None => self.entries.push((channel.to_owned(), state)),
        }
    }

    /// A channel's state.
    pub fn get(&self, channel: &str) -> Option<ChannelState> {
        self.entries.iter().find(|(k, _)| k == channel).map(|(_, s)| *s)
    }

    /// All entries in file order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, ChannelState)> {
        self.entries.iter().map(|(k, s)| (k.as_str(), *s))
    }
}

impl fmt::Display for ChannelsStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (k, s) in &self.entries {
            writeln!(f, "{k}={s}")?;
        }
        Ok(())
    }
}

/// Health of one upstream as `upstream-state.env` records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamHealth {
    /// The front proxy's health check passes.
    Healthy,
    /// The front proxy's health check fails.
    Unhealthy,
}

impl UpstreamHealth {
    /// The word written to `upstream-state.env`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
        }
    }
}

impl fmt::Display for UpstreamHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of `upstream-state.env`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamEntry {
    /// The upstream's dial address, e.g. `xray-client:3080`.
    pub upstream: String,
    /// Its health.
    pub health: UpstreamHealth,
    /// Epoch seconds when this state was recorded.
    pub since: u64,
}

/// `upstream-state.env`: one `UPSTREAM=healthy|unhealthy:EPOCH` line per upstream.
///
/// Lines keep the order in which upstreams were first recorded; lookups,
/// updates and removals are by key, not by a scan of every line.
#[derive(Clone, Default)]
pub struct UpstreamState {
    /// Entries by a sequence number that gives the file order.
    entries: BTreeMap<u64, UpstreamEntry>,
    /// The sequence number of each upstream.
    index: HashMap<String, u64>,
    next: u64,
}

impl PartialEq for UpstreamState {
    fn eq(&self, other: &Self) -> bool {
        self.entries.len() == other.entries.len() && self.entries.values().eq(other.entries.values())
    }
}

impl Eq for UpstreamState {}

impl fmt::Debug for UpstreamState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamState").field("entries", &self.entries.values().collect::<Vec<_>>()).finish()
    }
}

impl UpstreamState {
    /// Parses the file's text.
    pub fn parse(text: &str) -> Result<Self, LineError> {
        let mut state = Self::default();
        for (line, key, value) in key_value_lines(text)? {
            let err = |message: String| LineError { line, message };
            if let Some(reason) = invalid_upstream(key) {
                return Err(err(reason));
            }
            let (health, since) = value
                .split_once(':')
                .ok_or_else(|| err(format!("expected healthy:EPOCH or unhealthy:EPOCH, found {value:?}")))?;
            let health = match health {
                "healthy" => UpstreamHealth::Healthy,
                "unhealthy" => UpstreamHealth::Unhealthy,
                other => return Err(err(format!("unknown health {other:?} (expected healthy or unhealthy)"))),
            };
            let since = since
                .parse::<u64>()
                .map_err(|_| err(format!("invalid epoch {since:?}: expected seconds since 1970")))?;
            state.insert(UpstreamEntry { upstream: key.to_owned(), health, since });
        }
        Ok(state)
    }

    /// Reads the file; a missing file is an empty state.
    pub fn load(path: &Path) -> Result<Self, CoreError> {
        load_or_default(path, Self::parse)
    }

    /// Writes the file atomically.
    pub fn save(&self, path: &Path) -> Result<(), CoreError> {
        write_atomic(path, self.to_string().as_bytes())
    }

    /// Records an upstream's health. Rejects an address that cannot be a
    /// key of the file (empty, or holding `=`, `#` first, whitespace or a line break).
    pub fn set(&mut self, upstream: &str, health: UpstreamHealth, since: u64) -> Result<(), String> {
        if let Some(reason) = invalid_upstream(upstream) {
            return Err(reason);
        }
        self.insert(UpstreamEntry { upstream: upstream.to_owned(), health, since });
        Ok(())
    }

    fn insert(&mut self, entry: UpstreamEntry) {
        let seq = match self.index.get(&entry.upstream) {
            Some(&seq) => seq,
            None => {
                let seq = self.next;
                self.next += 1;
                self.index.insert(entry.upstream.clone(), seq);
                seq
            }
        };
        self.entries.insert(seq, entry);
    }

    /// Forgets an upstream.
    pub fn remove(&mut self, upstream: &str) {
        if let Some(seq) = self.index.remove(upstream) {
            self.entries.remove(&seq);
        }
    }

    /// An upstream's entry.
    pub fn get(&self, upstream: &str) -> Option<&UpstreamEntry> {
        self.index.get(upstream).and_then(|seq| self.entries.get(seq))
    }

    /// All entries in file order.
    pub fn iter(&self) -> impl Iterator<Item = &UpstreamEntry> {
        self.entries.values()
    }
}

impl fmt::Display for UpstreamState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in self.entries.values() {
            writeln!(f, "{}={}:{}", e.upstream, e.health, e.since)?;
        }
        Ok(())
    }
}

/// Parses a state file; a missing one is the empty state.
fn load_or_default<T: Default>(path: &Path, parse: fn(&str) -> Result<T, LineError>) -> Result<T, CoreError> {
    match read_optional(path)? {
        None => Ok(T::default()),
        Some(text) => parse(&text).map_err(|source| CoreError::Parse { path: path.to_owned(), source }),
    }
}

fn invalid_upstream(key: &str) -> Option<String> {
    if key.is_empty() {
        Some("empty upstream address".to_owned())
    } else if key.starts_with('#') || key.contains(['=', '\n', '\r']) || key.contains(char::is_whitespace) {
        Some(format!("invalid upstream address {key:?}"))
    } else {
        None
    }
}

fn is_channel_key(key: &str) -> bool {
    !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// Splits `key=value` lines, skipping blank lines and `#` comments.
fn key_value_lines(text: &str) -> Result<Vec<(usize, &str, &str)>, LineError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end_matches(['\r', ' ', '\t']);
        if line.trim_start().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| LineError { line: i + 1, message: format!("expected key=value, found {line:?}") })?;
        out.push((i + 1, key, value));
    }
    Ok(out)
}

pub(crate) fn read_optional(path: &Path) -> Result<Option<String>, CoreError> {
    match crate::read_no_follow(path) {
        Ok(Some(bytes)) => String::from_utf8(bytes).map(Some).map_err(|_| CoreError::Parse {
            path: path.to_owned(),
            source: LineError { line: 1, message: "file is not UTF-8 text".to_owned() },
        }),
        Ok(None) => Ok(None),
        Err(e) => Err(CoreError::read(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check_channels(input: &str, expected: Result<&[(&str, ChannelState)], &str>) {
        let got = ChannelsStatus::parse(input);
        match expected {
            Ok(entries) => {
                let got = got.unwrap();
                assert_eq!(got.iter().collect::<Vec<_>>(), entries.to_vec());
            }
            Err(msg) => assert_eq!(got.unwrap_err().to_string(), msg),
        }
    }

    #[test]
    fn channels_status_reads_the_spec_example() {
        use ChannelState::*;
        check_channels("xray=active\nnaive=skipped\n", Ok(&[("xray", Active), ("naive", Skipped)]));
        check_channels("# c\n\nawg=failed_at_runtime\r\n", Ok(&[("awg", FailedAtRuntime)]));
        check_channels(
            "xray=up\n",
            Err(
                "line 1: unknown channel state \"up\" (expected active, skipped, failed_at_render or failed_at_runtime)",
            ),
        );
        check_channels("ok=active\ngarbage\n", Err("line 2: expected key=value, found \"garbage\""));
        check_channels("a b=active\n", Err("line 1: invalid channel key \"a b\""));
    }

    #[test]
    fn upstream_state_reads_the_spec_example() {
        let s = UpstreamState::parse("xray-client:3080=healthy:1716200000\n").unwrap();
        let e = s.get("xray-client:3080").unwrap();
        assert_eq!((e.health, e.since), (UpstreamHealth::Healthy, 1_716_200_000));
        assert_eq!(s.to_string(), "xray-client:3080=healthy:1716200000\n");
        let err = UpstreamState::parse("a:1=healthy:1\nb:2=sick:3\n").unwrap_err();
        assert_eq!(err.to_string(), "line 2: unknown health \"sick\" (expected healthy or unhealthy)");
        let err = UpstreamState::parse("a:1=healthy:soon\n").unwrap_err();
        assert_eq!(err.line, 1);
    }

    #[test]
    fn upstream_state_keeps_file_order_through_updates_and_removals() {
        let mut s = UpstreamState::parse("b=healthy:1\na=healthy:2\nc=unhealthy:3\n").unwrap();
        s.set("a", UpstreamHealth::Unhealthy, 9).unwrap();
        s.remove("b");
        s.set("b", UpstreamHealth::Healthy, 10).unwrap();
        s.remove("missing");
        assert_eq!(s.to_string(), "a=unhealthy:9\nc=unhealthy:3\nb=healthy:10\n");
        assert_eq!(s, UpstreamState::parse(&s.to_string()).unwrap());
        assert_ne!(s, UpstreamState::parse("c=unhealthy:3\na=unhealthy:9\nb=healthy:10\n").unwrap());
        assert_eq!(s.get("a").map(|e| e.since), Some(9));
        assert!(s.get("missing").is_none());
    }

    fn state() -> impl Strategy<Value = ChannelState> {
        prop_oneof![
            Just(ChannelState::Active),
            Just(ChannelState::Skipped),
            Just(ChannelState::FailedAtRender),
            Just(ChannelState::FailedAtRuntime)
        ]
    }

    proptest! {
        #[test]
        fn channels_status_round_trips(entries in proptest::collection::vec(("[A-Za-z0-9_.-]{1,12}", state()), 0..8)) {
            let mut s = ChannelsStatus::default();
            for (k, v) in &entries { s.set(k, *v); }
            prop_assert_eq!(ChannelsStatus::parse(&s.to_string()).unwrap(), s);
        }

        #[test]
        fn upstream_state_round_trips(entries in proptest::collection::vec(("[^=#\\s][^=\\s]{0,20}", any::<bool>(), any::<u64>()), 0..8)) {
            let mut s = UpstreamState::default();
            for (k, h, t) in &entries {
                let h = if *h { UpstreamHealth::Healthy } else { UpstreamHealth::Unhealthy };
                s.set(k, h, *t).unwrap();
            }
            prop_assert_eq!(UpstreamState::parse(&s.to_string()).unwrap(), s);
        }

        #[test]
        fn parsers_never_panic(text in "\\PC*(\n\\PC*){0,5}") {
            let _ = ChannelsStatus::parse(&text);
            let _ = UpstreamState::parse(&text);
        }
    }
}
