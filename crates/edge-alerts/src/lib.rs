//! Alert limiter, outbox and delivery chain (webhook, Telegram, Alertmanager) for edge nodes.
