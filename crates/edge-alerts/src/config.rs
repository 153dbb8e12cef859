//! Alert configuration from the legacy environment variables, read through a lookup
//! function so that tests never mutate the process environment.
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `OXPULSE_TG_WEBHOOK` | webhook URL, tried first | none: webhook skipped |
//! | `TG_TOKEN` | bot token for the Bot API fallback | none |
//! | `OXPULSE_TG_CHAT` (or `TG_CHAT`) | chat id; the Bot API is used only with one | none |
//! | `OXPULSE_TG_API_FALLBACK` | full `sendMessage` URL, overrides the one built from `TG_TOKEN` | `https://api.telegram.org/bot$TG_TOKEN/sendMessage` |
//! | `OXPULSE_TG_MIN_INTERVAL` | seconds between non-critical messages | 600 |
//! | `OXPULSE_TG_STATE_DIR` | lock, `last-alert-ts`, outbox, breaker state | `<state dir>/telegram` |
//! | `OXPULSE_METRICS_SRC` | Caddy metrics URL, or a file | `http://127.0.0.1:2019/metrics` |
//! | `OXPULSE_ALERTMANAGER_URL` | Alertmanager base URL (`…/api/v2/alerts` is appended) | none |
//! | `OXPULSE_ALERT_BREAKER_TICKS` | failing ticks before the breaker parks alerts, 0 = never | 5 |
//!
//! As in the legacy script, an empty variable counts as unset. Unlike it,
//! there is no default webhook: the legacy one is a private address.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::AlertError;

/// Seconds between two non-critical messages unless `OXPULSE_TG_MIN_INTERVAL` says otherwise.
pub const DEFAULT_MIN_INTERVAL: u64 = 600;
/// Where Caddy's admin endpoint serves metrics.
pub const DEFAULT_METRICS_URL: &str = "http://127.0.0.1:2019/metrics";
/// Consecutive failing ticks before the circuit breaker parks alerts.
pub const DEFAULT_BREAKER_TICKS: u32 = 5;
/// The Telegram Bot API.
pub const TELEGRAM_API: &str = "https://api.telegram.org";

/// The Telegram Bot API fallback. Its URL holds the bot token: `Debug` and
/// [`TelegramConfig::redacted_url`] never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct TelegramConfig {
    url: String,
    chat_id: String,
    token: Option<String>,
}

impl TelegramConfig {
    /// `sendMessage` of the public Bot API for `token`.
    pub fn with_token(token: &str, chat_id: &str) -> Self {
        Self {
            url: format!("{TELEGRAM_API}/bot{token}/sendMessage"),
            chat_id: chat_id.to_owned(),
            token: Some(token.to_owned()),
        }
    }

    /// A full `sendMessage` URL (`OXPULSE_TG_API_FALLBACK`); `token`, if known, is redacted wherever it appears.
    pub fn with_url(url: &str, chat_id: &str, token: Option<&str>) -> Self {
        Self { url: url.to_owned(), chat_id: chat_id.to_owned(), token: token.map(str::to_owned) }
    }

    /// The URL to post to. Never log it: use [`TelegramConfig::redacted_url`].
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The chat id.
    pub fn chat_id(&self) -> &str {
        &self.chat_id
    }

    /// The URL with the bot token replaced by `<redacted>`.
    pub fn redacted_url(&self) -> String {
        self.redact(&self.url)
    }

    /// `text` with the bot token replaced by `<redacted>`.
    pub fn redact(&self, text: &str) -> String {
        redact(text, self.token.as_deref())
    }
}

impl fmt::Debug for TelegramConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelegramConfig").field("url", &self.redacted_url()).field("chat_id", &self.chat_id).finish()
    }
}

/// Replaces a `/bot<token>` path segment and every occurrence of `token` with `<redacted>`.
pub fn redact(text: &str, token: Option<&str>) -> String {
    let mut out = match token {
        Some(t) if !t.is_empty() => text.replace(t, "<redacted>"),
        _ => text.to_owned(),
    };
    let mut from = 0;
    while let Some(pos) = out[from..].find("/bot").map(|p| p + from) {
        let start = pos + 4;
        let end = out[start..].find(['/', '?', '#', ' ', ')']).map_or(out.len(), |e| e + start);
        if end > start && &out[start..end] != "<redacted>" {
            out.replace_range(start..end, "<redacted>");
        }
        from = start;
    }
    out
}

/// Where the metrics page comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetricsSource {
    /// An HTTP(S) URL, fetched with a timeout.
    Url(String),
    /// A file (as the legacy script allows).
    File(PathBuf),
}

impl MetricsSource {
    /// A value starting with `http` is a URL, anything else a file (the legacy rule).
    pub fn parse(value: &str) -> Self {
        if value.starts_with("http") { Self::Url(value.to_owned()) } else { Self::File(PathBuf::from(value)) }
    }
}

impl fmt::Display for MetricsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Url(u) => f.write_str(u),
            Self::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// An Alertmanager to push alerts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertmanagerConfig {
    /// Base URL, e.g. `http://127.0.0.1:9093`.
    pub url: String,
}

impl AlertmanagerConfig {
    /// The API v2 alerts endpoint.
    pub fn alerts_url(&self) -> String {
        format!("{}/api/v2/alerts", self.url.trim_end_matches('/'))
    }
}

/// Time limits of each network operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connect, any target.
    pub connect: Duration,
    /// Whole webhook request (the legacy script used 5 s).
    pub webhook: Duration,
    /// Whole Bot API request (the legacy script used 10 s).
    pub telegram: Duration,
    /// Whole Alertmanager request.
    pub alertmanager: Duration,
    /// Whole metrics fetch (the legacy script used 3 s).
    pub metrics: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(3),
            webhook: Duration::from_secs(5),
            telegram: Duration::from_secs(10),
            alertmanager: Duration::from_secs(5),
            metrics: Duration::from_secs(3),
        }
    }
}

/// Everything the alerter needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertConfig {
    /// `HOST` in messages and Alertmanager's `edge` label (the short host name by default).
    pub host: String,
    /// Lock file, `last-alert-ts`, outbox and breaker state.
    pub state_dir: PathBuf,
    /// `upstream-state.env`.
    pub upstream_state: PathBuf,
    /// Caddy's metrics page.
    pub metrics: MetricsSource,
    /// Minimum time between two non-critical messages.
    pub min_interval: Duration,
    /// Webhook URL (`{"message": …}`), tried first.
    pub webhook: Option<String>,
    /// Bot API fallback.
    pub telegram: Option<TelegramConfig>,
    /// Alertmanager target, independent of the chat chain and its rate limit.
    pub alertmanager: Option<AlertmanagerConfig>,
    /// Consecutive failing ticks before the breaker parks alerts; 0 disables it.
    pub breaker_ticks: u32,
    /// Longest total wait this run accepts when Telegram answers 429.
    pub max_retry_wait: Duration,
    /// Network time limits.
    pub timeouts: Timeouts,
}

impl AlertConfig {
    /// Defaults with no transport: `state_dir` holds the limiter's files.
    pub fn new(host: impl Into<String>, state_dir: impl Into<PathBuf>, upstream_state: impl Into<PathBuf>) -> Self {
        Self {
            host: host.into(),
            state_dir: state_dir.into(),
            upstream_state: upstream_state.into(),
            metrics: MetricsSource::Url(DEFAULT_METRICS_URL.to_owned()),
            min_interval: Duration::from_secs(DEFAULT_MIN_INTERVAL),
            webhook: None,
            telegram: None,
            alertmanager: None,
            breaker_ticks: DEFAULT_BREAKER_TICKS,
            max_retry_wait: Duration::from_secs(10),
            timeouts: Timeouts::default(),
        }
    }

    /// Reads the variables in the module docs through `lookup` (e.g. `|k| std::env::var(k).ok()`).
    /// `paths` gives the node's state dir; `host` is the short host name.
    pub fn from_env(paths: &edge_core::Paths, lookup: impl Fn(&str) -> Option<String>) -> Result<Self, AlertError> {
        let get = |name: &str| lookup(name).filter(|v| !v.is_empty());
        let state_dir = get("OXPULSE_TG_STATE_DIR").map(PathBuf::from).unwrap_or_else(|| paths.alert_state_dir());
        let mut config = Self::new(short_hostname(), state_dir, paths.upstream_state());

        if let Some(v) = get("OXPULSE_TG_MIN_INTERVAL") {
            let secs = v.trim().parse::<u64>().map_err(|_| AlertError::Config {
                name: "OXPULSE_TG_MIN_INTERVAL",
                value: v.clone(),
                reason: "expected a number of seconds".to_owned(),
            })?;
            config.min_interval = Duration::from_secs(secs);
        }
        if let Some(v) = get("OXPULSE_ALERT_BREAKER_TICKS") {
            config.breaker_ticks = v.trim().parse().map_err(|_| AlertError::Config {
                name: "OXPULSE_ALERT_BREAKER_TICKS",
                value: v.clone(),
                reason: "expected a number of ticks (0 disables the breaker)".to_owned(),
            })?;
        }
        if let Some(v) = get("OXPULSE_METRICS_SRC") {
            config.metrics = MetricsSource::parse(&v);
        }
        if let Some(url) = get("OXPULSE_TG_WEBHOOK") {
            check_url("OXPULSE_TG_WEBHOOK", &url, None)?;
            config.webhook = Some(url);
        }
        let token = get("TG_TOKEN");
        let chat = get("OXPULSE_TG_CHAT").or_else(|| get("TG_CHAT"));
        config.telegram = match (chat, get("OXPULSE_TG_API_FALLBACK"), token) {
            (Some(chat), Some(url), token) => {
                check_url("OXPULSE_TG_API_FALLBACK", &url, token.as_deref())?;
                Some(TelegramConfig::with_url(&url, &chat, token.as_deref()))
            }
            (Some(chat), None, Some(token)) => Some(TelegramConfig::with_token(&token, &chat)),
            _ => None,
        };
        if let Some(url) = get("OXPULSE_ALERTMANAGER_URL") {
            check_url("OXPULSE_ALERTMANAGER_URL", &url, None)?;
            config.alertmanager = Some(AlertmanagerConfig { url });
        }
        Ok(config)
    }

    /// `last-alert-ts`.
    pub fn last_alert_file(&self) -> PathBuf {
        self.state_dir.join("last-alert-ts")
    }
    /// The lock that serializes runs.
    pub fn lock_file(&self) -> PathBuf {
        self.state_dir.join(".lock")
    }
    /// The outbox.
    pub fn outbox_file(&self) -> PathBuf {
        self.state_dir.join("outbox.json")
    }
    /// `circuit-breaker.state`.
    pub fn breaker_file(&self) -> PathBuf {
        self.state_dir.join("circuit-breaker.state")
    }
    /// What was last pushed to Alertmanager.
    pub fn alertmanager_file(&self) -> PathBuf {
        self.state_dir.join("alertmanager.json")
    }
}

fn check_url(name: &'static str, url: &str, token: Option<&str>) -> Result<(), AlertError> {
    let err = |reason: &str| AlertError::Config { name, value: redact(url, token), reason: reason.to_owned() };
    let parsed = reqwest::Url::parse(url).map_err(|e| err(&e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(err("expected an http:// or https:// URL"));
    }
    Ok(())
}

/// The host name up to its first dot (`hostname -s`), from the kernel; `localhost` if unreadable.
pub fn short_hostname() -> String {
    let name = std::fs::read_to_string(Path::new("/proc/sys/kernel/hostname")).unwrap_or_default();
    let short = name.trim().split('.').next().unwrap_or_default();
    if short.is_empty() { "localhost".to_owned() } else { short.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn paths() -> edge_core::Paths {
        edge_core::Paths::new(Some(Path::new("/r")), &edge_core::Stack::partner_edge().stack)
    }

    fn from(vars: &[(&str, &str)]) -> Result<AlertConfig, AlertError> {
        AlertConfig::from_env(&paths(), |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned()))
    }

    #[test]
    fn defaults_have_no_transport_and_the_legacy_limits() {
        let c = from(&[]).unwrap();
        assert_eq!(c.webhook, None);
        assert_eq!(c.telegram, None);
        assert_eq!(c.min_interval, Duration::from_secs(600));
        assert_eq!(c.state_dir, Path::new("/r/var/lib/oxpulse-partner-edge/telegram"));
        assert_eq!(c.last_alert_file(), Path::new("/r/var/lib/oxpulse-partner-edge/telegram/last-alert-ts"));
        assert_eq!(c.upstream_state, Path::new("/r/var/lib/oxpulse-partner-edge/upstream-state.env"));
        assert_eq!(c.metrics, MetricsSource::Url(DEFAULT_METRICS_URL.to_owned()));
    }

    #[test]
    fn reads_the_legacy_variables() {
        let c = from(&[
            ("OXPULSE_TG_WEBHOOK", "http://127.0.0.1:1/hook"),
            ("TG_TOKEN", "123:ABC"),
            ("TG_CHAT", "42"),
            ("OXPULSE_TG_MIN_INTERVAL", "5"),
            ("OXPULSE_TG_STATE_DIR", "/tmp/tg"),
            ("OXPULSE_METRICS_SRC", "/tmp/metrics.txt"),
            ("OXPULSE_ALERTMANAGER_URL", "http://127.0.0.1:9093/"),
        ])
        .unwrap();
        assert_eq!(c.webhook.as_deref(), Some("http://127.0.0.1:1/hook"));
        let tg = c.telegram.as_ref().unwrap();
        assert_eq!(tg.url(), "https://api.telegram.org/bot123:ABC/sendMessage");
        assert_eq!(tg.chat_id(), "42");
        assert_eq!(c.min_interval, Duration::from_secs(5));
        assert_eq!(c.state_dir, Path::new("/tmp/tg"));
        assert_eq!(c.metrics, MetricsSource::File("/tmp/metrics.txt".into()));
        assert_eq!(c.alertmanager.unwrap().alerts_url(), "http://127.0.0.1:9093/api/v2/alerts");
    }

    #[test]
    fn oxpulse_chat_wins_and_the_fallback_url_overrides() {
        let c = from(&[
            ("OXPULSE_TG_CHAT", "1"),
            ("TG_CHAT", "2"),
            ("TG_TOKEN", "T"),
            ("OXPULSE_TG_API_FALLBACK", "http://127.0.0.1:9/botT/sendMessage"),
        ])
        .unwrap();
        let tg = c.telegram.unwrap();
        assert_eq!((tg.url(), tg.chat_id()), ("http://127.0.0.1:9/botT/sendMessage", "1"));
    }

    #[test]
    fn no_chat_no_bot_api_and_empty_means_unset() {
        assert_eq!(from(&[("TG_TOKEN", "T")]).unwrap().telegram, None);
        let c = from(&[("OXPULSE_TG_WEBHOOK", ""), ("OXPULSE_TG_MIN_INTERVAL", "")]).unwrap();
        assert_eq!((c.webhook, c.min_interval), (None, Duration::from_secs(600)));
    }

    #[test]
    fn bad_values_name_the_variable_and_never_show_the_token() {
        let err = from(&[("OXPULSE_TG_MIN_INTERVAL", "10m")]).unwrap_err();
        assert_eq!(err.to_string(), "invalid OXPULSE_TG_MIN_INTERVAL=\"10m\": expected a number of seconds");
        let err = from(&[("TG_TOKEN", "SECRET"), ("TG_CHAT", "1"), ("OXPULSE_TG_API_FALLBACK", "ftp://x/botSECRET/s")])
            .unwrap_err();
        assert!(!err.to_string().contains("SECRET"), "{err}");
    }

    #[test]
    fn debug_never_shows_the_token() {
        let tg = TelegramConfig::with_token("123:SECRET", "1");
        assert!(!format!("{tg:?}").contains("SECRET"));
        assert_eq!(tg.redacted_url(), "https://api.telegram.org/bot<redacted>/sendMessage");
    }

    fn check_redact(text: &str, token: Option<&str>, expected: &str) {
        assert_eq!(redact(text, token), expected);
    }

    #[test]
    fn redaction() {
        check_redact("http://h/botX:Y/sendMessage", None, "http://h/bot<redacted>/sendMessage");
        check_redact("http://h/api?key=TOK", Some("TOK"), "http://h/api?key=<redacted>");
        check_redact("no bot here", None, "no bot here");
        check_redact("a/bot", None, "a/bot");
    }

    proptest! {
        #[test]
        fn the_token_never_survives_redaction(token in "[0-9]{6,10}:[A-Za-z0-9_-]{30,40}", prefix in "\\PC{0,20}", suffix in "\\PC{0,20}") {
            let text = format!("{prefix}/bot{token}/sendMessage{suffix}");
            prop_assert!(!redact(&text, Some(&token)).contains(&token));
            let url = format!("http://h/bot{token}/sendMessage");
            prop_assert!(!redact(&url, None).contains(&token));
        }
    }
}
