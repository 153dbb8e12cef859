//! `edge install`: flags → [`edge_deploy::InstallRequest`] → [`edge_deploy::install`] →
//! the report as text or JSON, and the exit code.

use std::collections::BTreeSet;

use anyhow::bail;
use edge_alerts::{AlertChanges, Change};
use edge_channels::{ActionKind, DockerEngine, Readiness};
use edge_core::ChannelState;
use edge_deploy::identity::RegistrationToken;
use edge_deploy::{InstallReport, InstallRequest, Outcome};

use crate::args::{AlertArgs, InstallArgs, InstallFlags, Seconds, SecretArg};
use crate::progress::Progress;
use crate::rt::block_on;
use crate::settings::Settings;
use crate::{ExitStatus, op_error};

pub(crate) fn run(settings: &Settings, args: InstallArgs) -> anyhow::Result<ExitStatus> {
    let request =
        InstallRequest { restore_from: args.restore_from.clone(), dry_run: args.dry_run, ..request(&args.install) };
    if args.adopt {
        return super::adopt::install(settings, request, args.json);
    }
    let node = settings.node()?;
    let progress = Progress::new();
    let report = block_on(async {
        let engine = DockerEngine::connect().await?;
        edge_deploy::install(&engine, &node, &request, &|p| progress.report(p)).await.map_err(op_error)
    })??;
    print_report(&report, args.json)?;
    match report.status {
        Outcome::Success | Outcome::DryRun => Ok(ExitStatus::Success),
        Outcome::Degraded => Ok(ExitStatus::Degraded),
        Outcome::Failure => bail!("{}", report.message),
    }
}

/// The install request the shared install flags describe.
pub(crate) fn request(flags: &InstallFlags) -> InstallRequest {
    let mut variables = Settings::variable_sources(&flags.vars);
    let named = [("PARTNER_ID", &flags.partner_id), ("PARTNER_DOMAIN", &flags.domain)];
    variables.flags.extend(named.into_iter().filter_map(|(k, v)| Some((k.to_owned(), v.clone()?))));
    InstallRequest {
        variables,
        manual_config: flags.manual_config.clone(),
        token: flags.token.as_ref().map(|t| RegistrationToken::new(t.0.clone())),
        tunnel: flags.tunnel.clone(),
        images: flags.images.iter().map(|o| (o.service.clone(), o.image.clone())).collect(),
        health_timeout: flags.health_timeout,
        alerts: alert_changes(&flags.alerts, &|k| std::env::var(k).ok()),
        pull: flags.pull,
        docker_config: docker_config_dir(),
        edge_bin: std::env::current_exe().ok(),
        ..InstallRequest::default()
    }
}

/// The alert flags as changes to watchdog.env: a flag (or its variable) sets, empty clears,
/// absent keeps. `TG_CHAT` stands in for `OXPULSE_TG_CHAT` as the legacy script allows.
fn alert_changes(flags: &AlertArgs, lookup: &dyn Fn(&str) -> Option<String>) -> AlertChanges {
    let change = |value: Option<&str>| match value {
        None => Change::Keep,
        Some("") => Change::Clear,
        Some(v) => Change::Set(v.to_owned()),
    };
    let secret = |value: &Option<SecretArg>| change(value.as_ref().map(|s| s.0.as_str()));
    let chat = flags.alert_telegram_chat.clone().or_else(|| lookup("TG_CHAT").filter(|v| !v.is_empty()));
    AlertChanges {
        webhook: secret(&flags.alert_webhook),
        telegram_token: secret(&flags.alert_telegram_token),
        telegram_chat: change(chat.as_deref()),
        telegram_api_fallback: secret(&flags.alert_telegram_api),
        alertmanager_url: secret(&flags.alertmanager_url),
        min_interval: match flags.alert_min_interval {
            None => Change::Keep,
            Some(Seconds(None)) => Change::Clear,
            Some(Seconds(Some(secs))) => Change::Set(secs),
        },
    }
}

fn print_alerts(alerts: &edge_deploy::AlertsReport, dry_run: bool) {
    let changed = if alerts.changed.is_empty() {
        "unchanged".to_owned()
    } else {
        format!("{} {}", if dry_run { "would change" } else { "changed" }, alerts.changed.join(", "))
    };
    outln!("alerts: {} ({changed})", alerts.settings_file.display());
    for t in &alerts.transports {
        let result = match &alerts.delivered_by {
            Some(d) if d == t.transport => "delivered \"edge installed\"",
            _ if t.transport == "alertmanager" => "gets pool alerts from the watchdog",
            _ => "",
        };
        outln!("  {:<12} {}  {result}", t.transport, t.target);
    }
    for e in &alerts.errors {
        outln!("  failed: {e}");
    }
    if alerts.queued {
        outln!("  the \"edge installed\" alert waits in the outbox; the watchdog retries it on its next run");
    }
}

/// Where the docker CLI keeps its config: `$DOCKER_CONFIG`, else `~/.docker`.
pub(crate) fn docker_config_dir() -> Option<std::path::PathBuf> {
    let set = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    set("DOCKER_CONFIG").map(Into::into).or_else(|| set("HOME").map(|h| std::path::Path::new(&h).join(".docker")))
}

pub(crate) fn print_report(report: &InstallReport, json: bool) -> anyhow::Result<()> {
    if json {
        outln!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    if report.dry_run {
        outln!("plan for {} (dry run, nothing changed):", report.stack);
    } else if !report.plan.is_empty() || !report.pulls.is_empty() {
        outln!("changes:");
    }
    for p in &report.pulls {
        let done = match (p.size, p.duration_ms) {
            (Some(size), Some(ms)) => format!(" ({:.1} MB in {:.1}s)", size as f64 / 1e6, ms as f64 / 1000.0),
            _ => String::new(),
        };
        let verb = if report.dry_run { "would pull" } else { "pulled" };
        outln!("  {verb:<8} {} from {}{done}", p.image, p.registry);
    }
    let mut kinds: BTreeSet<ActionKind> = BTreeSet::new();
    for e in &report.plan {
        kinds.insert(e.action);
        let why = e.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
        let image = e.image.as_deref().map(|i| format!(" [{i}]")).unwrap_or_default();
        outln!("  {:<8} {}{image}{why}", e.action.as_str(), e.container);
    }
    if !report.dry_run && report.plan.is_empty() {
        outln!("no changes: every container matches its spec");
    }
    if !report.channels.is_empty() {
        outln!("channels:");
    }
    for c in &report.channels {
        let mut line = format!("  {:<10} {}", c.id, c.state);
        if let (Some(u), ChannelState::Active) = (&c.upstream, c.state) {
            line.push_str(&format!("  upstream {u}"));
            if let Some(h) = &c.upstream_health {
                line.push_str(&format!(" ({h})"));
            }
        }
        if let Some(r) = &c.reason {
            line.push_str(&format!("  — {r}"));
        }
        outln!("{line}");
    }
    for (container, r) in &report.services {
        if let Readiness::Failed { reason } = r {
            outln!("  service container {container}: {reason}");
        }
    }
    if !report.dry_run {
        for line in report.summary.iter().take_while(|l| !report.channels.iter().any(|c| l.starts_with(&c.id))) {
            outln!("{line}");
        }
        if !report.identity_created.is_empty() {
            outln!("identity created: {}", report.identity_created.join(", "));
        }
    }
    print_alerts(&report.alerts, report.dry_run);
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    if let Some(smoke) = &report.smoke {
        crate::cmd::smoke::print_table(smoke);
    }
    outln!("{}", report.message);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_flags_set_clear_or_keep() {
        let flags = AlertArgs {
            alert_webhook: Some(SecretArg("http://127.0.0.1:9/hook".into())),
            alertmanager_url: Some(SecretArg(String::new())),
            alert_min_interval: Some(Seconds(Some(30))),
            ..AlertArgs::default()
        };
        let changes = alert_changes(&flags, &|k| (k == "TG_CHAT").then(|| "-1".to_owned()));
        let expected = AlertChanges {
            webhook: Change::Set("http://127.0.0.1:9/hook".into()),
            telegram_chat: Change::Set("-1".into()),
            alertmanager_url: Change::Clear,
            min_interval: Change::Set(30),
            ..AlertChanges::default()
        };
        assert!(changes == expected, "{changes:?}");
        let none = alert_changes(&AlertArgs::default(), &|_| None);
        assert!(none == AlertChanges::default(), "{none:?}");
        assert_eq!(format!("{:?}", SecretArg("123:AAHsecret".into())), "<redacted>");
    }
}
