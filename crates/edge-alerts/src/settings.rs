//! The node's alert settings as `watchdog.env` keeps them: the legacy variables the watchdog
//! unit loads with `EnvironmentFile=`, written 0600 in the form systemd reads back exactly.
//!
//! `edge install` changes only the keys it is given ([`AlertChanges`]) and keeps the rest of
//! the file, lines the operator added included, so a re-install without alert flags leaves it
//! as it was.

use std::fmt;
use std::path::Path;

use edge_core::{EnvFile, Paths};

use crate::config::{AlertConfig, TelegramConfig};
use crate::redact::redact_url;
use crate::{AlertError, TransportKind};

/// `OXPULSE_TG_WEBHOOK`.
pub const WEBHOOK: &str = "OXPULSE_TG_WEBHOOK";
/// `TG_TOKEN`.
pub const TELEGRAM_TOKEN: &str = "TG_TOKEN";
/// `OXPULSE_TG_CHAT`.
pub const TELEGRAM_CHAT: &str = "OXPULSE_TG_CHAT";
/// `OXPULSE_TG_API_FALLBACK`.
pub const TELEGRAM_API_FALLBACK: &str = "OXPULSE_TG_API_FALLBACK";
/// `OXPULSE_ALERTMANAGER_URL`.
pub const ALERTMANAGER_URL: &str = "OXPULSE_ALERTMANAGER_URL";
/// `OXPULSE_TG_MIN_INTERVAL`.
pub const MIN_INTERVAL: &str = "OXPULSE_TG_MIN_INTERVAL";

/// What to do with one setting.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Change<T> {
    /// Keep what the file says.
    #[default]
    Keep,
    /// Set it.
    Set(T),
    /// Remove it from the file.
    Clear,
}

/// Changes to the alert settings, one per key; [`Change::Keep`] everywhere changes nothing.
/// `Debug` names the keys that change, never a value.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AlertChanges {
    /// `OXPULSE_TG_WEBHOOK`.
    pub webhook: Change<String>,
    /// `TG_TOKEN`.
    pub telegram_token: Change<String>,
    /// `OXPULSE_TG_CHAT`.
    pub telegram_chat: Change<String>,
    /// `OXPULSE_TG_API_FALLBACK`.
    pub telegram_api_fallback: Change<String>,
    /// `OXPULSE_ALERTMANAGER_URL`.
    pub alertmanager_url: Change<String>,
    /// `OXPULSE_TG_MIN_INTERVAL`, seconds.
    pub min_interval: Change<u64>,
}

impl AlertChanges {
    fn each(&self) -> [(&'static str, Change<String>); 6] {
        let interval = match &self.min_interval {
            Change::Keep => Change::Keep,
            Change::Set(secs) => Change::Set(secs.to_string()),
            Change::Clear => Change::Clear,
        };
        [
            (WEBHOOK, self.webhook.clone()),
            (TELEGRAM_TOKEN, self.telegram_token.clone()),
            (TELEGRAM_CHAT, self.telegram_chat.clone()),
            (TELEGRAM_API_FALLBACK, self.telegram_api_fallback.clone()),
            (ALERTMANAGER_URL, self.alertmanager_url.clone()),
            (MIN_INTERVAL, interval),
        ]
    }
}

impl fmt::Debug for AlertChanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for (key, change) in self.each() {
            match change {
                Change::Keep => {}
                Change::Set(_) => {
                    list.entry(&format_args!("set {key}"));
                }
                Change::Clear => {
                    list.entry(&format_args!("clear {key}"));
                }
            }
        }
        list.finish()
    }
}

/// `watchdog.env`. `Debug` shows the keys, never a value.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AlertSettings {
    env: EnvFile,
}

impl fmt::Debug for AlertSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.env.iter().map(|(k, _)| k)).finish()
    }
}

/// One configured transport as reports show it: its kind and its target without a secret.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TransportTarget {
    /// `webhook`, `telegram` or `alertmanager`.
    pub transport: &'static str,
    /// Scheme, host and port (the Bot API's method, token redacted).
    pub target: String,
}

impl AlertSettings {
    /// Reads `watchdog.env`: `None` when there is none; a file that does not parse is an error
    /// naming its line, never quoting it.
    pub fn load_optional(path: &Path) -> Result<Option<Self>, AlertError> {
        let err = |source| AlertError::Settings { path: path.to_owned(), source };
        let text = match edge_core::read_no_follow(path) {
            Ok(Some(bytes)) => String::from_utf8(bytes).map_err(|_| {
                let source = edge_core::LineError { line: 1, message: "file is not UTF-8 text".to_owned() };
                err(edge_core::CoreError::Parse { path: path.to_owned(), source })
            })?,
            Ok(None) => return Ok(None),
            Err(source) => return Err(err(edge_core::CoreError::Read { path: path.to_owned(), source })),
        };
        let env = EnvFile::parse(&text)
            .map_err(|source| err(edge_core::CoreError::Parse { path: path.to_owned(), source }))?;
        Ok(Some(Self { env }))
    }

    /// Writes the file atomically, mode 0600 (it holds the bot token), in the form systemd's
    /// `EnvironmentFile=` and `bash` both read back exactly.
    pub fn save(&self, path: &Path) -> Result<(), AlertError> {
        self.env.save_systemd(path, 0o600).map_err(|source| AlertError::Settings { path: path.to_owned(), source })
    }

    /// Applies `changes`; returns the keys whose value changed.
    pub fn apply(&mut self, changes: &AlertChanges) -> Vec<&'static str> {
        let mut changed = Vec::new();
        for (key, change) in changes.each() {
            let did = match change {
                Change::Keep => false,
                Change::Set(value) if self.env.get(key) == Some(value.as_str()) => false,
                Change::Set(value) => {
                    self.env.set(key, &value);
                    true
                }
                Change::Clear => self.env.remove(key),
            };
            if did {
                changed.push(key);
            }
        }
        changed
    }

    /// A value of the file; empty counts as unset, as in the legacy script.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.env.get(key).filter(|v| !v.is_empty())
    }

    /// The alert configuration these settings give on this node (as the watchdog run by its
    /// unit sees it); a bad value is an error naming the variable, never showing a secret.
    pub fn config(&self, paths: &Paths) -> Result<AlertConfig, AlertError> {
        AlertConfig::from_env(paths, |k| self.get(k).map(str::to_owned))
    }

    /// The transports `config` delivers through, in chain order, then Alertmanager.
    pub fn targets(config: &AlertConfig) -> Vec<TransportTarget> {
        let mut out = Vec::new();
        if let Some(url) = &config.webhook {
            out.push(TransportTarget { transport: TransportKind::Webhook.as_str(), target: redact_url(url) });
        }
        if let Some(tg) = &config.telegram {
            out.push(TransportTarget {
                transport: TransportKind::Telegram.as_str(),
                target: TelegramConfig::redacted_url(tg),
            });
        }
        if let Some(am) = &config.alertmanager {
            out.push(TransportTarget { transport: "alertmanager", target: am.redacted_url() });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    const TOKEN: &str = "123456:AAHsettingsSECRET";

    fn paths(root: &Path) -> Paths {
        Paths::new(Some(root), &edge_core::Stack::partner_edge().stack)
    }

    #[test]
    fn only_the_given_keys_change_and_the_rest_of_the_file_stays() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("watchdog.env");
        std::fs::write(&file, "# mine\nOXPULSE_TG_STATE_DIR=/srv/tg\nOXPULSE_TG_WEBHOOK=http://127.0.0.1:1/old\n")
            .unwrap();
        let mut settings = AlertSettings::load_optional(&file).unwrap().unwrap();
        let changes = AlertChanges {
            telegram_token: Change::Set(TOKEN.into()),
            telegram_chat: Change::Set("-100".into()),
            min_interval: Change::Set(30),
            ..AlertChanges::default()
        };
        assert_eq!(settings.apply(&changes), [TELEGRAM_TOKEN, TELEGRAM_CHAT, MIN_INTERVAL]);
        assert_eq!(settings.apply(&changes), Vec::<&str>::new(), "the same values again change nothing");
        settings.save(&file).unwrap();
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        let back = AlertSettings::load_optional(&file).unwrap().unwrap();
        assert_eq!(back, settings);
        let config = back.config(&paths(dir.path())).unwrap();
        assert_eq!(config.webhook.as_deref(), Some("http://127.0.0.1:1/old"));
        assert_eq!(config.state_dir, Path::new("/srv/tg"));
        assert_eq!(config.min_interval.as_secs(), 30);
        assert_eq!(config.telegram.as_ref().map(|t| t.chat_id()), Some("-100"));

        let clear = AlertChanges { webhook: Change::Clear, ..AlertChanges::default() };
        let mut cleared = back.clone();
        assert_eq!(cleared.apply(&clear), [WEBHOOK]);
        assert_eq!(cleared.config(&paths(dir.path())).unwrap().webhook, None);
    }

    #[test]
    fn nothing_shows_a_secret() {
        let mut settings = AlertSettings::default();
        let changes = AlertChanges {
            webhook: Change::Set("https://hooks.example/services/SECRETPATH".into()),
            telegram_token: Change::Set(TOKEN.into()),
            telegram_chat: Change::Set("1".into()),
            ..AlertChanges::default()
        };
        settings.apply(&changes);
        let config = settings.config(&paths(Path::new("/r"))).unwrap();
        let shown = format!("{settings:?} {changes:?} {:?}", AlertSettings::targets(&config));
        for secret in ["SECRETPATH", "AAHsettingsSECRET"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("https://hooks.example") && shown.contains("set TG_TOKEN"), "{shown}");
    }

    #[test]
    fn a_corrupt_file_is_an_error_and_a_missing_one_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("watchdog.env");
        assert_eq!(AlertSettings::load_optional(&file).unwrap(), None);
        std::fs::write(&file, "TG_TOKEN=AAH SECRET\n").unwrap();
        let err = AlertSettings::load_optional(&file).unwrap_err().to_string();
        assert!(err.contains("line 1") && !err.contains("SECRET"), "{err}");
    }
}
