//! `edge alert test`: one message through the configured chain (webhook, then the Bot API),
//! saying which transport delivered it and why the others did not.
//!
//! The test message bypasses the rate limiter and the outbox and does not stamp
//! `last-alert-ts`: testing never delays a real alert.

use edge_alerts::deliver::http_client;
use edge_alerts::{AlertConfig, Chain, TransportKind};
use edge_deploy::watchdog::{alert_config, effective_paths};
use serde::Serialize;

use crate::args::{AlertCommand, AlertTestArgs};
use crate::rt::block_on;
use crate::settings::Settings;
use crate::{ExitStatus, UsageError, op_error};

pub(crate) fn run(settings: &Settings, command: AlertCommand) -> anyhow::Result<ExitStatus> {
    match command {
        AlertCommand::Test(args) => test(settings, args),
    }
}

#[derive(Debug, Serialize)]
struct Attempt {
    transport: &'static str,
    /// The URL's scheme, host and port (and the Bot API method, token redacted): never a secret.
    target: String,
    /// `delivered`, `failed` or `not_tried`.
    result: &'static str,
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct Outcome {
    message: String,
    delivered_by: Option<&'static str>,
    attempts: Vec<Attempt>,
    /// Alertmanager gets pool alerts from the watchdog, outside this chain (scheme, host and port).
    alertmanager: Option<String>,
}

fn test(settings: &Settings, args: AlertTestArgs) -> anyhow::Result<ExitStatus> {
    let lookup = |k: &str| std::env::var(k).ok();
    let paths = effective_paths(&settings.bundle.stack, &settings.paths, &lookup);
    let config = alert_config(&settings.bundle.stack, &paths, &lookup).map_err(op_error)?;
    let client = http_client(&config)?;
    let chain = Chain::from_config(&config, &client);
    if chain.is_empty() {
        return Err(UsageError(
            "no alert transport is configured: set OXPULSE_TG_WEBHOOK, or TG_TOKEN and OXPULSE_TG_CHAT \
             (OXPULSE_TG_API_FALLBACK overrides the Bot API URL)"
                .into(),
        )
        .into());
    }
    let message = args.message.unwrap_or_else(|| {
        format!(
            "[{}] TEST alert from edge {} at {}: alert delivery works",
            config.host,
            env!("CARGO_PKG_VERSION"),
            edge_alerts::rfc3339(now())
        )
    });
    let (transport, errors) = block_on(chain.send(&message))?;
    let outcome = Outcome {
        attempts: attempts(&config, transport, &errors),
        delivered_by: transport.map(TransportKind::as_str),
        message,
        alertmanager: config.alertmanager.as_ref().map(|a| a.redacted_url()),
    };
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&outcome)?);
    } else {
        for a in &outcome.attempts {
            let detail = match (&a.error, a.result) {
                (Some(e), _) => format!("failed: {e}"),
                (None, "delivered") => "delivered".to_owned(),
                _ => "not tried (an earlier transport delivered)".to_owned(),
            };
            outln!("{:<9} {}: {detail}", a.transport, a.target);
        }
        if let Some(url) = &outcome.alertmanager {
            outln!("alertmanager {url}: not part of the chat chain; edge-watchdog pushes pool alerts there");
        }
    }
    match outcome.delivered_by {
        Some(t) => {
            if !args.json {
                outln!("delivered by {t}");
            }
            Ok(ExitStatus::Success)
        }
        None => anyhow::bail!("the test message was not delivered: every configured transport failed"),
    }
}

/// Each configured transport in chain order and what became of it.
fn attempts(
    config: &AlertConfig,
    delivered: Option<TransportKind>,
    errors: &[edge_alerts::AlertError],
) -> Vec<Attempt> {
    let mut configured = Vec::new();
    if let Some(url) = &config.webhook {
        configured.push((TransportKind::Webhook, edge_alerts::redact_url(url)));
    }
    if let Some(tg) = &config.telegram {
        configured.push((TransportKind::Telegram, tg.redacted_url()));
    }
    let mut errors = errors.iter();
    let mut done = false;
    configured
        .into_iter()
        .map(|(kind, target)| {
            let (result, error) = if done {
                ("not_tried", None)
            } else if delivered == Some(kind) {
                done = true;
                ("delivered", None)
            } else {
                ("failed", errors.next().map(ToString::to_string))
            };
            Attempt { transport: kind.as_str(), target, result, error }
        })
        .collect()
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_show_no_secret() {
        let mut config = AlertConfig::new("h", "/n", "/n/u.env");
        config.webhook = Some("https://user:s3cr3tpw@hooks.example/services/SECRETPATH".into());
        config.telegram =
            Some(edge_alerts::TelegramConfig::with_url("http://127.0.0.1:9/bot1%3AAAHsecret/sendMessage", "1", None));
        let tried = attempts(&config, Some(TransportKind::Telegram), &[]);
        let targets: Vec<&str> = tried.iter().map(|a| a.target.as_str()).collect();
        assert_eq!(targets, ["https://hooks.example", "http://127.0.0.1:9/bot<redacted>/sendMessage"]);
        config.alertmanager =
            Some(edge_alerts::AlertmanagerConfig { url: "http://admin:s3cr3tpw@127.0.0.1:9093".into() });
        assert_eq!(config.alertmanager.as_ref().map(|a| a.redacted_url()).as_deref(), Some("http://127.0.0.1:9093"));
    }
}
