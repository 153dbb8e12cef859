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
use crate::redact::{REDACTED, decode, redact_secrets, redact_url, url_secrets};

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
    /// The bot token and whatever else of the URL may be secret, decoded.
    secrets: Vec<String>,
}

impl TelegramConfig {
    /// `sendMessage` of the public Bot API for `token`.
    pub fn with_token(token: &str, chat_id: &str) -> Self {
        Self::with_url(&format!("{TELEGRAM_API}/bot{token}/sendMessage"), chat_id, Some(token))
    }

    /// A full `sendMessage` URL (`OXPULSE_TG_API_FALLBACK`); `token`, if known, is redacted wherever
    /// it appears, and so is the URL's own `bot<token>` segment, its userinfo, path and query.
    pub fn with_url(url: &str, chat_id: &str, token: Option<&str>) -> Self {
        let mut secrets = url_secrets(url);
        if let Ok(parsed) = reqwest::Url::parse(url) {
            let bot = parsed.path_segments().into_iter().flatten().filter_map(|s| s.strip_prefix("bot"));
            secrets.extend(bot.filter(|t| !t.is_empty()).flat_map(|t| [t.to_owned(), decode(t)]));
        }
        secrets.extend(token.filter(|t| !t.is_empty()).map(str::to_owned));
        secrets.sort();
        secrets.dedup();
        Self { url: url.to_owned(), chat_id: chat_id.to_owned(), secrets }
    }

    /// The URL to post to. Never log it: use [`TelegramConfig::redacted_url`].
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The chat id.
    pub fn chat_id(&self) -> &str {
        &self.chat_id
    }

    /// The URL as logs show it: scheme, host and port, then `/bot<redacted>/METHOD` when the
    /// path is the Bot API's `/bot<token>/METHOD` (which says what was called and hides the
    /// token); nothing else of the path, no userinfo, no query.
    pub fn redacted_url(&self) -> String {
        let Ok(parsed) = reqwest::Url::parse(&self.url) else { return REDACTED.to_owned() };
        let origin = crate::redact::origin(&parsed);
        let segments: Vec<&str> = parsed.path_segments().into_iter().flatten().collect();
        match segments.as_slice() {
            [bot, method] if bot.starts_with("bot") && method.bytes().all(|b| b.is_ascii_alphabetic()) => {
                format!("{origin}/bot{REDACTED}/{method}")
            }
            _ => origin,
        }
    }

    /// `text` with the bot token (and the URL's other secrets) replaced by `<redacted>`,
    /// percent-encoded spellings included.
    pub fn redact(&self, text: &str) -> String {
        redact_bot_segments(&redact_secrets(text, &self.secrets))
    }
}

impl fmt::Debug for TelegramConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelegramConfig").field("url", &self.redacted_url()).field("chat_id", &self.chat_id).finish()
    }
}

/// Replaces a `/bot<token>` path segment and every occurrence of `token`, spelled as is or
/// percent-encoded, with `<redacted>`.
pub fn redact(text: &str, token: Option<&str>) -> String {
    redact_bot_segments(&redact_secrets(text, token.as_slice()))
}

fn redact_bot_segments(text: &str) -> String {
    let mut out = text.to_owned();
    let mut from = 0;
    while let Some(pos) = out[from..].find("/bot").map(|p| p + from) {
        let start = pos + 4;
        let end = out[start..].find(['/', '?', '#', ' ', ')']).map_or(out.len(), |e| e + start);
        if end > start && &out[start..end] != REDACTED {
            out.replace_range(start..end, REDACTED);
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

/// As logs and alerts show it: a file's path; a URL's scheme, host and port, and its path only
/// when it is Caddy's `/metrics` (any other path may be a secret and shows as `/…`).
impl fmt::Display for MetricsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Url(u) => match reqwest::Url::parse(u) {
                Ok(parsed) => {
                    let path = match parsed.path() {
                        "/" | "" => "",
                        "/metrics" => "/metrics",
                        _ => "/…",
                    };
                    write!(f, "{}{path}", crate::redact::origin(&parsed))
                }
                Err(_) => f.write_str(REDACTED),
            },
            Self::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// An Alertmanager to push alerts to. Its URL may hold credentials: `Debug` and
/// [`AlertmanagerConfig::redacted_url`] show its scheme, host and port only.
#[derive(Clone, PartialEq, Eq)]
pub struct AlertmanagerConfig {
    /// Base URL, e.g. `http://127.0.0.1:9093`.
    pub url: String,
}

impl AlertmanagerConfig {
    /// The API v2 alerts endpoint.
    pub fn alerts_url(&self) -> String {
        format!("{}/api/v2/alerts", self.url.trim_end_matches('/'))
    }

    /// The URL as logs show it: scheme, host and port.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }
}

impl fmt::Debug for AlertmanagerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlertmanagerConfig").field("url", &self.redacted_url()).finish()
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

/// Everything the alerter needs. `Debug` shows no secret: URLs as scheme, host and port.
#[derive(Clone, PartialEq, Eq)]
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

impl fmt::Debug for AlertConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlertConfig")
            .field("host", &self.host)
            .field("state_dir", &self.state_dir)
            .field("upstream_state", &self.upstream_state)
            .field("metrics", &format_args!("{}", self.metrics))
            .field("min_interval", &self.min_interval)
            .field("webhook", &self.webhook.as_deref().map(redact_url))
            .field("telegram", &self.telegram)
            .field("alertmanager", &self.alertmanager)
            .field("breaker_ticks", &self.breaker_ticks)
            .field("max_retry_wait", &self.max_retry_wait)
            .field("timeouts", &self.timeouts)
            .finish()
    }
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
    // The value is shown as scheme, host and port; the reason is the url crate's, which never quotes it.
    let err = |reason: &str| AlertError::Config { name, value: redact_url(url), reason: redact(reason, token) };
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

    #[test]
    fn a_percent_encoded_token_is_redacted() {
        let url = "http://127.0.0.1:9/bot123456%3AAAHsecret_token-x/sendMessage";
        // Known from TG_TOKEN or only from the URL, the token goes in any spelling.
        for token in [Some("123456:AAHsecret_token-x"), None] {
            let tg = TelegramConfig::with_url(url, "1", token);
            assert_eq!(tg.redacted_url(), "http://127.0.0.1:9/bot<redacted>/sendMessage");
            for echo in [
                "no route for 123456:AAHsecret_token-x",
                "path=/bot123456%3aAAHsecret_token-x/x",
                "q=123456%253AAAHsecret_token-x",
                "%31%32%33%34%35%36%3A%41AHsecret_token-x",
            ] {
                let out = tg.redact(echo);
                assert!(!out.contains("AAHsecret") && !out.contains("AHsecret"), "{token:?} {echo}: {out}");
            }
        }
        // Not under /bot: the token still goes, and the URL shows no path.
        let tg = TelegramConfig::with_url(
            "https://proxy.example/tg/123456%3AAAHsecret/send?k=v",
            "1",
            Some("123456:AAHsecret"),
        );
        assert_eq!(tg.redacted_url(), "https://proxy.example");
        assert_eq!(tg.redact("GET /tg/123456%3AAAHsecret/send"), "GET /<redacted>");
        assert_eq!(redact("x 123456%3aAAHsecret", Some("123456:AAHsecret")), "x <redacted>");
    }

    #[test]
    fn urls_in_debug_and_errors_show_scheme_host_and_port() {
        let c = from(&[
            ("OXPULSE_TG_WEBHOOK", "https://hooks.example/services/T0/B0/SECRETPATH"),
            ("OXPULSE_ALERTMANAGER_URL", "http://admin:s3cr3tpw@127.0.0.1:9093/"),
            ("OXPULSE_METRICS_SRC", "http://scrape:s3cr3tpw@127.0.0.1:2019/metrics?token=SECRETQ"),
        ])
        .unwrap();
        let debug = format!("{c:?}");
        for secret in ["SECRETPATH", "s3cr3tpw", "admin", "SECRETQ"] {
            assert!(!debug.contains(secret), "{secret}: {debug}");
        }
        assert!(debug.contains("https://hooks.example") && debug.contains("http://127.0.0.1:9093"), "{debug}");
        assert_eq!(c.alertmanager.unwrap().redacted_url(), "http://127.0.0.1:9093");
        assert_eq!(c.metrics.to_string(), "http://127.0.0.1:2019/metrics");
        assert_eq!(MetricsSource::parse("http://h:1/SECRETPATH/m").to_string(), "http://h:1/…");
        assert_eq!(MetricsSource::parse("/var/m.txt").to_string(), "/var/m.txt");
        for (name, url) in [
            ("OXPULSE_TG_WEBHOOK", "ftp://u:s3cr3tpw@h/SECRETPATH"),
            ("OXPULSE_ALERTMANAGER_URL", "gopher://admin:s3cr3tpw@h:70/"),
            ("OXPULSE_TG_WEBHOOK", "http://[SECRETPATH"),
        ] {
            let err = from(&[(name, url)]).unwrap_err().to_string();
            assert!(!err.contains("s3cr3tpw") && !err.contains("SECRETPATH"), "{err}");
            assert!(err.starts_with(&format!("invalid {name}=")), "{err}");
        }
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
