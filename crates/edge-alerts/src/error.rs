//! Errors of edge-alerts operations.

use std::path::PathBuf;

/// Everything edge-alerts can fail at. A transport failure is reported here
/// and the message stays in the outbox; nothing is dropped because of an error.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    /// An environment variable has a value that cannot be used.
    #[error("invalid {name}={value:?}: {reason}")]
    Config {
        /// The variable.
        name: &'static str,
        /// Its value; for a URL, only its scheme, host and port.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `watchdog.env` could not be read, parsed or written.
    #[error("alert settings: {source}")]
    Settings {
        /// The file.
        path: PathBuf,
        /// The cause (it names the file and the line, never a value).
        source: edge_core::CoreError,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the http client: {reason}")]
    Client {
        /// The cause.
        reason: String,
    },
    /// The alert state dir could not be created.
    #[error("cannot create the alert state dir {path}: {source}")]
    StateDir {
        /// The dir.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The lock file could not be opened or locked.
    #[error("cannot lock {path}: {source}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A state file could not be read.
    #[error("cannot read {path}: {source}")]
    ReadState {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// `upstream-state.env` could not be read.
    #[error("cannot load the upstream state: {source}")]
    LoadUpstreamState {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: edge_core::CoreError,
    },
    /// A state file could not be written.
    #[error("cannot save alert state: {source}")]
    WriteState {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: edge_core::CoreError,
    },
    /// The outbox could not be read or written.
    #[error("outbox {path}: {reason}")]
    Outbox {
        /// The outbox file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Delivery through the webhook failed.
    #[error("webhook {url} failed: {source}")]
    Webhook {
        /// The webhook's scheme, host and port (its path may be a secret).
        url: String,
        /// The cause.
        source: SendError,
    },
    /// Delivery through the Telegram Bot API failed.
    #[error("telegram {url} failed: {source}")]
    Telegram {
        /// The sendMessage URL's scheme, host and port, and `/bot<redacted>/sendMessage`.
        url: String,
        /// The cause.
        source: SendError,
    },
    /// Posting to Alertmanager failed.
    #[error("alertmanager {url} failed: {source}")]
    Alertmanager {
        /// The alerts endpoint's scheme, host and port (its userinfo may be credentials).
        url: String,
        /// The cause.
        source: SendError,
    },
    /// A blocking task (lock wait) panicked or was cancelled.
    #[error("lock wait on {path} was interrupted: {reason}")]
    LockTask {
        /// The lock file.
        path: PathBuf,
        /// What happened.
        reason: String,
    },
}

/// Why one HTTP delivery failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// No answer: connection refused, timeout, TLS failure...
    #[error("{reason}")]
    Http {
        /// The cause chain, without the URL.
        reason: String,
    },
    /// An answer with a non-success status.
    #[error("http status {status}: {body}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The start of the answer's body.
        body: String,
    },
    /// Telegram answered `{"ok": false}`.
    #[error("telegram answered ok=false (error {code}): {description}")]
    Api {
        /// `error_code`, 0 when absent.
        code: i64,
        /// `description`.
        description: String,
    },
    /// Telegram asked to wait longer than this run may.
    #[error("rate limited: telegram asks to retry after {retry_after}s, more than the {budget}s this run may wait")]
    RateLimited {
        /// `parameters.retry_after`, seconds.
        retry_after: u64,
        /// Seconds this run was still allowed to wait.
        budget: u64,
    },
}

impl SendError {
    /// Builds an [`SendError::Http`] from a reqwest error, dropping the URL
    /// (it may hold a bot token) and keeping the cause chain.
    pub(crate) fn from_reqwest(err: reqwest::Error) -> Self {
        let err = err.without_url();
        let mut reason = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(s) = source {
            let text = s.to_string();
            if !reason.contains(&text) {
                reason.push_str(": ");
                reason.push_str(&text);
            }
            source = s.source();
        }
        Self::Http { reason }
    }
}
