//! The delivery chain: the webhook first, then the Telegram Bot API.
//!
//! [`Transport`] is the seam; [`Webhook`] and [`Telegram`] implement it over
//! reqwest (rustls). A message counts as delivered only on a success answer:
//! a 2xx for the webhook, `{"ok": true}` for the Bot API.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{AlertConfig, TelegramConfig};
use crate::redact::{redact_secrets, redact_url, url_secrets};
use crate::{AlertError, SendError};

/// The future a [`Transport`] returns.
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<(), AlertError>> + Send + 'a>>;

/// Which transport delivered a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportKind {
    /// `OXPULSE_TG_WEBHOOK`.
    Webhook,
    /// The Telegram Bot API.
    Telegram,
}

impl TransportKind {
    /// A lowercase name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Telegram => "telegram",
        }
    }
}

/// Something that delivers one message text.
pub trait Transport: Send + Sync {
    /// Which one it is.
    fn kind(&self) -> TransportKind;
    /// Delivers `text`; `Ok` only when the far end accepted it.
    fn send<'a>(&'a self, text: &'a str) -> SendFuture<'a>;
}

/// An HTTP client suited to alert delivery: rustls, no redirects (a POST
/// that gets redirected is a failure, and a bot token never follows one).
pub fn http_client(config: &AlertConfig) -> Result<reqwest::Client, AlertError> {
    reqwest::Client::builder()
        .connect_timeout(config.timeouts.connect)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("edge-alerts/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| AlertError::Client { reason: SendError::from_reqwest(e).to_string() })
}

/// `POST {"message": text}` to a webhook. Its URL may hold a secret path or credentials:
/// errors and `Debug` show its scheme, host and port only.
#[derive(Clone)]
pub struct Webhook {
    client: reqwest::Client,
    url: String,
    /// What errors show of `url`.
    shown: String,
    /// Parts of `url` redacted from answers quoted in errors.
    secrets: Vec<String>,
    timeout: Duration,
}

impl Webhook {
    /// A webhook at `url`.
    pub fn new(client: reqwest::Client, url: &str, timeout: Duration) -> Self {
        Self { client, url: url.to_owned(), shown: redact_url(url), secrets: url_secrets(url), timeout }
    }
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook").field("url", &self.shown).field("timeout", &self.timeout).finish()
    }
}

#[derive(Serialize)]
struct WebhookBody<'a> {
    message: &'a str,
}

impl Transport for Webhook {
    fn kind(&self) -> TransportKind {
        TransportKind::Webhook
    }

    fn send<'a>(&'a self, text: &'a str) -> SendFuture<'a> {
        Box::pin(async move {
            let err = |source| AlertError::Webhook { url: self.shown.clone(), source };
            let resp = self
                .client
                .post(&self.url)
                .timeout(self.timeout)
                .json(&WebhookBody { message: text })
                .send()
                .await
                .map_err(|e| err(SendError::from_reqwest(e)))?;
            let status = resp.status();
            if status.is_success() {
                return Ok(());
            }
            let body = resp.text().await.unwrap_or_default();
            let body = excerpt(&redact_secrets(head(&body), &self.secrets));
            Err(err(SendError::Status { status: status.as_u16(), body }))
        })
    }
}

/// The Bot API's `sendMessage`, JSON body. Handles `429` with
/// `parameters.retry_after` by waiting, within a per-run budget.
#[derive(Debug, Clone)]
pub struct Telegram {
    client: reqwest::Client,
    config: TelegramConfig,
    timeout: Duration,
    max_wait: Duration,
}

impl Telegram {
    /// A Bot API transport; it waits at most `max_wait` in total on 429 answers.
    pub fn new(client: reqwest::Client, config: TelegramConfig, timeout: Duration, max_wait: Duration) -> Self {
        Self { client, config, timeout, max_wait }
    }
}

#[derive(Serialize)]
struct SendMessage<'a> {
    chat_id: &'a str,
    text: &'a str,
}

#[derive(Deserialize)]
struct Answer {
    ok: bool,
    #[serde(default)]
    error_code: Option<i64>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<Parameters>,
}

#[derive(Deserialize)]
struct Parameters {
    #[serde(default)]
    retry_after: Option<u64>,
}

impl Transport for Telegram {
    fn kind(&self) -> TransportKind {
        TransportKind::Telegram
    }

    fn send<'a>(&'a self, text: &'a str) -> SendFuture<'a> {
        Box::pin(async move {
            let err = |source| AlertError::Telegram { url: self.config.redacted_url(), source };
            let mut waited = 0u64;
            for _attempt in 0..5 {
                let resp = self
                    .client
                    .post(self.config.url())
                    .timeout(self.timeout)
                    .json(&SendMessage { chat_id: self.config.chat_id(), text })
                    .send()
                    .await
                    .map_err(|e| err(redact_send(&self.config, SendError::from_reqwest(e))))?;
                let status = resp.status();
                let body =
                    resp.bytes().await.map_err(|e| err(redact_send(&self.config, SendError::from_reqwest(e))))?;
                let Ok(answer) = serde_json::from_slice::<Answer>(&body) else {
                    let body = excerpt(&self.config.redact(head(&String::from_utf8_lossy(&body))));
                    return Err(err(SendError::Status { status: status.as_u16(), body }));
                };
                if answer.ok {
                    return Ok(());
                }
                let code = answer.error_code.unwrap_or(i64::from(status.as_u16()));
                let retry_after = answer.parameters.and_then(|p| p.retry_after);
                if let (429, Some(secs)) = (code, retry_after) {
                    let budget = self.max_wait.as_secs().saturating_sub(waited);
                    if secs > budget {
                        return Err(err(SendError::RateLimited { retry_after: secs, budget }));
                    }
                    tracing::info!(retry_after = secs, "telegram rate limit, waiting");
                    tokio::time::sleep(Duration::from_secs(secs)).await;
                    waited += secs;
                    continue;
                }
                let description = self.config.redact(&answer.description.unwrap_or_default());
                return Err(err(SendError::Api { code, description }));
            }
            Err(err(SendError::RateLimited { retry_after: 0, budget: self.max_wait.as_secs().saturating_sub(waited) }))
        })
    }
}

fn redact_send(config: &TelegramConfig, e: SendError) -> SendError {
    match e {
        SendError::Http { reason } => SendError::Http { reason: config.redact(&reason) },
        other => other,
    }
}

/// The start of an answer body that redaction looks at: far more than [`excerpt`] keeps,
/// so that a secret is redacted whole before the excerpt is cut.
pub(crate) fn head(body: &str) -> &str {
    let mut end = body.len().min(8 << 10);
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    &body[..end]
}

/// The first 200 characters of an answer body, for error messages.
pub(crate) fn excerpt(body: &str) -> String {
    let trimmed = body.trim();
    let mut out: String = trimmed.chars().take(200).collect();
    if out.len() < trimmed.len() {
        out.push('…');
    }
    out
}

/// Transports tried in order until one accepts the message.
#[derive(Default)]
pub struct Chain {
    transports: Vec<Box<dyn Transport>>,
}

impl Chain {
    /// A chain of `transports`, tried in order.
    pub fn new(transports: Vec<Box<dyn Transport>>) -> Self {
        Self { transports }
    }

    /// The chain `config` describes: webhook (if set), then Bot API (if set).
    pub fn from_config(config: &AlertConfig, client: &reqwest::Client) -> Self {
        let mut transports: Vec<Box<dyn Transport>> = Vec::new();
        if let Some(url) = &config.webhook {
            transports.push(Box::new(Webhook::new(client.clone(), url, config.timeouts.webhook)));
        }
        if let Some(tg) = &config.telegram {
            transports.push(Box::new(Telegram::new(
                client.clone(),
                tg.clone(),
                config.timeouts.telegram,
                config.max_retry_wait,
            )));
        }
        Self { transports }
    }

    /// Whether no transport is configured.
    pub fn is_empty(&self) -> bool {
        self.transports.is_empty()
    }

    /// Tries each transport in turn; the errors of those that failed come back
    /// either way (a fallback that worked still deserves a warning).
    pub async fn send(&self, text: &str) -> (Option<TransportKind>, Vec<AlertError>) {
        let mut errors = Vec::new();
        for t in &self.transports {
            match t.send(text).await {
                Ok(()) => return (Some(t.kind()), errors),
                Err(e) => {
                    tracing::warn!(transport = t.kind().as_str(), error = %e, "alert delivery failed");
                    errors.push(e);
                }
            }
        }
        (None, errors)
    }
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.transports.iter().map(|t| t.kind())).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::echo_server;

    fn client() -> reqwest::Client {
        http_client(&AlertConfig::new("h", "/nonexistent", "/nonexistent/u.env")).unwrap()
    }

    #[tokio::test]
    async fn webhook_errors_show_scheme_host_and_port_only() {
        let base = echo_server(404).await;
        let url = format!("{}/hooks/T0/SECRETPATH?sig=SECRETSIG", base.replace("http://", "http://user:s3cr3tpw@"));
        let err = Webhook::new(client(), &url, Duration::from_secs(5)).send("x").await.unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(text.starts_with(&format!("webhook {base} failed: http status 404: POST /")), "{text}");
        for secret in ["SECRETPATH", "SECRETSIG", "s3cr3tpw"] {
            assert!(!text.contains(secret), "{secret}: {text}");
        }
        let refused = Webhook::new(client(), "http://127.0.0.1:1/hooks/SECRETPATH", Duration::from_secs(5));
        assert!(!format!("{refused:?}").contains("SECRETPATH"));
        let err = refused.send("x").await.unwrap_err().to_string();
        assert!(err.starts_with("webhook http://127.0.0.1:1 failed: ") && !err.contains("SECRETPATH"), "{err}");
    }

    #[tokio::test]
    async fn telegram_errors_never_show_the_token_however_encoded() {
        let base = echo_server(502).await;
        let token = "123456:AAHsecret_token-x";
        for url in [
            format!("{base}/bot123456%3AAAHsecret_token-x/sendMessage"),
            format!("{base}/bot{token}/sendMessage"),
            format!("{base}/relay/123456%3aAAHsecret_token-x"),
        ] {
            for known in [Some(token), None] {
                let tg = TelegramConfig::with_url(&url, "1", known);
                let t = Telegram::new(client(), tg, Duration::from_secs(5), Duration::ZERO);
                let err = t.send("x").await.unwrap_err();
                let text = format!("{err} {err:?}");
                assert!(text.contains("http status 502: POST /"), "{text}");
                assert!(!text.contains("AAHsecret"), "{url} {known:?}: {text}");
            }
        }
    }
}
