//! The front proxy's pool: which channel is dialled at which address, and how healthy an
//! upstream looks from outside.

use std::fmt;

use crate::UpstreamHealth;

/// One member of the front proxy's pool: a channel and its dial address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct PoolMember {
    /// The channel, e.g. `xray`.
    pub channel: String,
    /// Its dial address as the metric's `upstream` label names it, e.g. `127.0.0.1:3081`.
    pub upstream: String,
}

impl PoolMember {
    /// A pool member.
    pub fn new(channel: impl Into<String>, upstream: impl Into<String>) -> Self {
        Self { channel: channel.into(), upstream: upstream.into() }
    }

    /// A pool as `install.env` records it: `channel=upstream` pairs in priority order.
    pub fn encode_list(pool: &[PoolMember]) -> String {
        pool.iter().map(|m| format!("{}={}", m.channel, m.upstream)).collect::<Vec<_>>().join(",")
    }

    /// Reads [`PoolMember::encode_list`]'s text; an item that is not `channel=upstream` is an error.
    pub fn decode_list(text: &str) -> Result<Vec<PoolMember>, String> {
        let mut out = Vec::new();
        for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            match item.split_once('=') {
                Some((c, u)) if !c.trim().is_empty() && !u.trim().is_empty() => {
                    out.push(PoolMember::new(c.trim(), u.trim()));
                }
                _ => return Err(format!("pool item {item:?} is not channel=upstream")),
            }
        }
        Ok(out)
    }
}

/// An upstream's health as observed now: the metric may be missing, and then it is
/// `unknown`, never silently healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObservedHealth {
    /// The front proxy's health check passes.
    Healthy,
    /// The front proxy's health check fails.
    Unhealthy,
    /// No series for it, or the metrics could not be read.
    Unknown,
}

impl ObservedHealth {
    /// The word shown to operators.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
            Self::Unknown => "unknown",
        }
    }

    /// The recorded health, if known.
    pub fn known(self) -> Option<UpstreamHealth> {
        match self {
            Self::Healthy => Some(UpstreamHealth::Healthy),
            Self::Unhealthy => Some(UpstreamHealth::Unhealthy),
            Self::Unknown => None,
        }
    }
}

impl From<Option<UpstreamHealth>> for ObservedHealth {
    fn from(health: Option<UpstreamHealth>) -> Self {
        match health {
            Some(UpstreamHealth::Healthy) => Self::Healthy,
            Some(UpstreamHealth::Unhealthy) => Self::Unhealthy,
            None => Self::Unknown,
        }
    }
}

impl fmt::Display for ObservedHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_round_trip_through_install_env() {
        let pool = vec![PoolMember::new("xray", "127.0.0.1:3081"), PoolMember::new("naive", "127.0.0.1:3083")];
        assert_eq!(PoolMember::encode_list(&pool), "xray=127.0.0.1:3081,naive=127.0.0.1:3083");
        assert_eq!(PoolMember::decode_list(&PoolMember::encode_list(&pool)), Ok(pool));
        assert_eq!(PoolMember::decode_list(""), Ok(vec![]));
        assert_eq!(PoolMember::decode_list("a=b,garbage"), Err("pool item \"garbage\" is not channel=upstream".into()));
    }

    proptest::proptest! {
        #[test]
        fn any_pool_of_plain_names_round_trips(pool in proptest::collection::vec(("[a-z0-9_-]{1,12}", "[a-z0-9.:\\[\\]-]{1,30}"), 0..6)) {
            let pool: Vec<PoolMember> = pool.into_iter().map(|(c, u)| PoolMember::new(c, u)).collect();
            proptest::prop_assert_eq!(PoolMember::decode_list(&PoolMember::encode_list(&pool)), Ok(pool));
        }

        #[test]
        fn decoding_never_panics(text in proptest::prelude::any::<String>()) {
            let _ = PoolMember::decode_list(&text);
        }
    }
}
