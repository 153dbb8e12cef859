//! Raw command-line flags, as clap parses them; [`crate::settings`] validates them.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use edge_deploy::PullPolicy;

/// Deploy and keep healthy a multi-channel edge node on a Docker host.
#[derive(Debug, Parser)]
#[command(name = "edge", version, propagate_version = true)]
pub struct EdgeArgs {
    /// Options every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Root prefix for every host path (/etc, /var/lib, systemd units), so tests and dry runs never touch the real ones.
    #[arg(long, global = true, env = "EDGE_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Stack to manage: a folder with stack.toml and templates/ [default: the embedded partner edge].
    #[arg(long, global = true, env = "EDGE_STACK", value_name = "DIR")]
    pub stack: Option<PathBuf>,
    /// More log output (-v info, -vv debug); EDGE_LOG=filter overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

/// The commands of `edge`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Render one template of the stack, or the whole set with --all.
    #[command(
        after_help = "Examples:\n  edge render caddy --out /tmp/Caddyfile --env-from-fixture caddy.env\n  edge render caddy --tpl Caddyfile.tpl --out /tmp/caddy.txt --env-from-fixture tests/fixtures/render/caddy.env\n  edge render --all --out-dir /tmp/edge --set PARTNER_ID=acme --set PARTNER_DOMAIN=edge.example.com"
    )]
    Render(RenderArgs),
    /// Print the JSON Schema of the stack manifest format.
    Schema,
    /// Create identity secrets (once: an existing valid key is never replaced).
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Render, deploy and health-check the stack on the local Docker engine.
    Install(InstallArgs),
    /// Take over a host the legacy bash installer set up, keeping every volume and the identity.
    #[command(
        after_help = "Stops each legacy container, copies its volumes (anonymous ones included) into the stack's named volumes at the \
same paths (an anonymous volume at a path the stack does not mount goes into a named volume of its own, \
STACK_adopted-CONTAINER-PATH, labelled edge.adopted-from), renames it aside (NAME-legacy), installs, then removes what was set aside and the legacy units (the health-report timer, \
the boot service and the daily refresh that re-ran the bash installer; copies stay in the state dir's legacy-units/). \
Each step is journaled in the state dir: after a crash, run it again to resume. A second run changes nothing.\n\n\
Examples:\n  edge adopt --dry-run\n  edge adopt"
    )]
    Adopt(AdoptArgs),
    /// Show each channel's state, its container and its upstream's health.
    Status(StatusArgs),
    /// Run the operator's numbered checks; exit 0 only if all pass.
    Healthcheck(StatusArgs),
    /// Send the stack's smoke checks through the front proxy; exit 0 only if all pass.
    Smoke(SmokeArgs),
    /// Remove the stack's containers, keeping identity backups.
    Uninstall(UninstallArgs),
    /// Stop services and keep them stopped (the watchdog reports them as stopped, not failed).
    #[command(
        after_help = "Examples:\n  edge stop                # every service of the stack\n  edge stop naive caddy    # by service or container name"
    )]
    Stop(LifecycleArgs),
    /// Start stopped services in dependency order and wait for their health.
    Start(LifecycleArgs),
    /// Restart services in dependency order and wait for their health.
    Restart(LifecycleArgs),
    /// Run the whole lifecycle N times and report each step: install, healthcheck, stop, start,
    /// restart, re-install, uninstall, restore.
    #[command(
        after_help = "One run: install -> healthcheck -> stop (nothing listening on the stack's ports) -> start -> restart -> \
re-install (no container recreated) -> uninstall --keep-backups -> install --restore-from. After each run the identity \
files are byte-identical and a marker written into a named volume at the start is still there. On failure the host is \
left as the failing step left it.\n\nExample:\n  edge gate --runs 20 --partner-id acme --domain edge.example.com --manual-config node-config.json"
    )]
    Gate(GateArgs),
    /// Alert delivery.
    #[command(subcommand)]
    Alert(AlertCommand),
    /// Back up the stack's SQLite databases ([[backup]] in stack.toml) while the app keeps
    /// writing; `edge backup list` shows the backups kept.
    #[command(
        after_help = "Each copy is made by SQLite's online backup API in a one-off container of the service's image, \
checked with PRAGMA integrity_check and recorded with its sha256; the newest `keep` backups stay.\n\nExamples:\n  edge backup\n  edge backup list --json"
    )]
    Backup(BackupArgs),
    /// Restore a backup: stop the app, swap the database in, start, wait ready, check, run the
    /// smoke checks; a failed restore puts the previous file back.
    #[command(
        after_help = "A restore whose app does not come back ready, whose file fails PRAGMA integrity_check or whose \
app fails one of the stack's [[smoke]] checks is a failed restore: the previous file goes back, the app starts on it \
and edge exits 1 naming the step or check that failed.\n\nExamples:\n  edge restore 20261201T033000Z\n  edge restore latest"
    )]
    Restore(RestoreArgs),
    /// Deploy new images with a way back: back up, install, wait ready, run the smoke checks;
    /// on any failure roll back to the previous images and exit non-zero.
    #[command(
        after_help = "Examples:\n  edge rollout --images app=ghcr.io/acme/app:1.5 --smoke http://127.0.0.1:8080/api/rows=200\n  edge rollout --images app=ghcr.io/acme/app:1.5 --restore-on-failure"
    )]
    Rollout(RolloutArgs),
    /// Return every service to the image it ran before (the install record keeps the last 5).
    Rollback(RollbackArgs),
}

/// `edge rollout`.
#[derive(Debug, Args)]
pub struct RolloutArgs {
    /// What to install; `--images` names the new release.
    #[command(flatten)]
    pub install: InstallFlags,
    /// Also restore the backup taken first when the rollout fails.
    #[arg(long)]
    pub restore_on_failure: bool,
    /// A smoke check after the deploy: GET URL must answer STATUS (repeatable).
    #[arg(long, value_name = "URL=STATUS", value_parser = parse_smoke)]
    pub smoke: Vec<edge_deploy::rollout::SmokeCheck>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_smoke(text: &str) -> Result<edge_deploy::rollout::SmokeCheck, String> {
    edge_deploy::rollout::SmokeCheck::parse(text)
}

/// `edge rollback`.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// How long to wait for containers to become healthy.
    #[arg(long, value_name = "DURATION", default_value = "120s", value_parser = parse_duration)]
    pub health_timeout: Duration,
    /// Variables.
    #[command(flatten)]
    pub vars: VariableArgs,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `edge backup`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BackupArgs {
    /// `list`: the backups kept, oldest first.
    #[command(subcommand)]
    pub command: Option<BackupCommand>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `edge backup list`.
#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// List the backups kept, oldest first.
    List {
        /// Print them as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `edge restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The backup's id (see `edge backup list`), or `latest`.
    #[arg(value_name = "BACKUP")]
    pub backup: String,
    /// How long to wait for the restarted services to become healthy.
    #[arg(long, value_name = "DURATION", default_value = "120s", value_parser = parse_duration)]
    pub health_timeout: Duration,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Where variables come from, lowest to highest precedence after the stack's defaults.
#[derive(Debug, Clone, Default, Args)]
pub struct VariableArgs {
    /// KEY=VALUE file (`#` comments, optional quotes), below the process environment in precedence.
    #[arg(long = "env-from-fixture", value_name = "PATH")]
    pub fixture: Option<PathBuf>,
    /// Set a variable, above everything else (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_assignment)]
    pub set: Vec<Assignment>,
}

/// A `KEY=VALUE` flag, checked when parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The variable.
    pub key: String,
    /// Its value.
    pub value: String,
}

/// A `SERVICE=IMAGE` flag, checked when parsed (the service against the stack later).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageOverride {
    /// The service.
    pub service: String,
    /// The image reference.
    pub image: String,
}

fn parse_assignment(text: &str) -> Result<Assignment, String> {
    let (key, value) = edge_render::parse_assignment(text)?;
    Ok(Assignment { key, value })
}

/// `--pull`: its words shown in `--help`, then the policy (the words were checked already).
fn parse_pull() -> impl clap::builder::TypedValueParser<Value = PullPolicy> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(PullPolicy::VALUES).map(|s| s.parse().unwrap_or_default())
}

fn parse_image(text: &str) -> Result<ImageOverride, String> {
    match text.trim().split_once('=') {
        Some((s, i)) if !s.trim().is_empty() && !i.trim().is_empty() => {
            Ok(ImageOverride { service: s.trim().to_owned(), image: i.trim().to_owned() })
        }
        _ => Err(format!("{text:?}: expected SERVICE=IMAGE")),
    }
}

/// `edge render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// Template to render: caddy, compose, naive, xray, hysteria2, or any template name of the stack.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub target: Option<String>,
    /// Render every template, all or nothing, and write channels-status.env beside them.
    #[arg(long, requires = "out_dir")]
    pub all: bool,
    /// Use this template file instead of the embedded one (tera, `{{VAR}}` and `{{#if VAR}}…{{/if}}`).
    #[arg(long, value_name = "PATH", conflicts_with = "all")]
    pub tpl: Option<PathBuf>,
    /// Output file.
    #[arg(long, value_name = "PATH", required_unless_present = "all", conflicts_with = "all")]
    pub out: Option<PathBuf>,
    /// Output folder for --all.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
    /// Variables.
    #[command(flatten)]
    pub vars: VariableArgs,
    /// Print per-channel outcomes as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `edge secrets`.
#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Create the Reality X25519 key pair (xray's encoding) and reality.uuid.
    RealityKeygen(SecretsArgs),
    /// Create the AmneziaWG X25519 key pair (WireGuard's encoding).
    AwgKeygen(SecretsArgs),
}

/// Options of `edge secrets`.
#[derive(Debug, Args)]
pub struct SecretsArgs {
    /// Print the public values and file paths as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `edge install`.
#[derive(Debug, Args)]
#[command(
    after_help = "Optional channels come from the environment: HYSTERIA2_SERVER, HYSTERIA2_PORT, HYSTERIA2_AUTH, HYSTERIA2_OBFS; NAIVE_SERVER, NAIVE_SOCKS_PORT, NAIVE_USERNAME, NAIVE_PASSWORD.\n\n\
A host the legacy bash installer set up (containers of the stack's names that edge did not create, its health-report \
timer, or an unfinished adoption) is refused: edge adopt --dry-run shows how edge takes it over, and --adopt does it \
before installing (see edge adopt --help).\n\n\
Examples:\n  edge install --partner-id acme --domain edge.example.com --manual-config node-config.json\n  edge install --dry-run\n  edge install --adopt"
)]
pub struct InstallArgs {
    /// What to install.
    #[command(flatten)]
    pub install: InstallFlags,
    /// Put identity files and install.env back from this backup before deploying.
    #[arg(long, value_name = "BACKUP_DIR")]
    pub restore_from: Option<PathBuf>,
    /// Print the plan (create, recreate, remove, keep) and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// On a host the legacy bash installer set up, take it over first as `edge adopt` does
    /// (every volume and the identity kept), then install; without it install refuses such a host.
    #[arg(long)]
    pub adopt: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `edge adopt`.
#[derive(Debug, Args)]
pub struct AdoptArgs {
    /// What to install once the legacy containers are set aside (install.env's values by default).
    #[command(flatten)]
    pub install: InstallFlags,
    /// Print what was found and every step, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The flags `install` and `gate` share.
#[derive(Debug, Clone, Args)]
pub struct InstallFlags {
    /// Partner id (PARTNER_ID).
    #[arg(long, value_name = "ID")]
    pub partner_id: Option<String>,
    /// Public domain (PARTNER_DOMAIN).
    #[arg(long, value_name = "DOMAIN")]
    pub domain: Option<String>,
    /// Registration token (ptkn_...), kept as the `token` identity file (0600) instead of a generated one; never printed.
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<SecretArg>,
    /// The legacy installer's tunnel value, kept as TUNNEL in install.env [default: the recorded one].
    #[arg(long, value_name = "TUNNEL")]
    pub tunnel: Option<String>,
    /// node-config.json with the channels' server parameters; copied into the config dir.
    #[arg(long, value_name = "PATH")]
    pub manual_config: Option<PathBuf>,
    /// Image overrides, SERVICE=IMAGE (repeatable or comma-separated) [default: the images the last install used].
    #[arg(long, value_name = "SERVICE=IMAGE", value_delimiter = ',', value_parser = parse_image)]
    pub images: Vec<ImageOverride>,
    /// How long to wait for containers to become healthy.
    #[arg(long, value_name = "DURATION", default_value = "120s", value_parser = parse_duration)]
    pub health_timeout: Duration,
    /// Which images to pull before anything changes, with the registry credentials of $DOCKER_CONFIG/config.json (~/.docker/config.json).
    #[arg(long, value_name = "WHEN", default_value = "missing", value_parser = parse_pull())]
    pub pull: PullPolicy,
    /// Variables.
    #[command(flatten)]
    pub vars: VariableArgs,
    /// Alert settings.
    #[command(flatten)]
    pub alerts: AlertArgs,
}

/// Alert settings of `install` and `gate`, written to watchdog.env (0600) for the watchdog unit.
/// A setting not given keeps the value watchdog.env has; an empty value removes it.
#[derive(Debug, Clone, Default, Args)]
pub struct AlertArgs {
    /// Webhook URL, tried first (JSON body {"message": ...}).
    #[arg(long, help_heading = ALERTS_HEADING, value_name = "URL", env = "OXPULSE_TG_WEBHOOK", hide_env_values = true)]
    pub alert_webhook: Option<SecretArg>,
    /// Telegram bot token of the Bot API fallback (prefer the variable: a flag shows in `ps`).
    #[arg(long, help_heading = ALERTS_HEADING, value_name = "TOKEN", env = "TG_TOKEN", hide_env_values = true)]
    pub alert_telegram_token: Option<SecretArg>,
    /// Telegram chat id of the Bot API fallback [env: TG_CHAT, the legacy name, if unset].
    #[arg(long, help_heading = ALERTS_HEADING, value_name = "ID", env = "OXPULSE_TG_CHAT", hide_env_values = true)]
    pub alert_telegram_chat: Option<String>,
    /// Full sendMessage URL that replaces the public Bot API's.
    #[arg(long, help_heading = ALERTS_HEADING, value_name = "URL", env = "OXPULSE_TG_API_FALLBACK", hide_env_values = true)]
    pub alert_telegram_api: Option<SecretArg>,
    /// Alertmanager base URL (pool alerts are pushed to its API v2).
    #[arg(long, help_heading = ALERTS_HEADING, value_name = "URL", env = "OXPULSE_ALERTMANAGER_URL", hide_env_values = true)]
    pub alertmanager_url: Option<SecretArg>,
    /// Seconds between two non-critical alerts [watchdog default: 600].
    #[arg(long, help_heading = ALERTS_HEADING, value_name = "SECONDS", env = "OXPULSE_TG_MIN_INTERVAL", hide_env_values = true, value_parser = parse_seconds)]
    pub alert_min_interval: Option<Seconds>,
}

/// A flag value that may be a secret (a token, a URL with credentials): `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretArg(pub String);

impl std::fmt::Debug for SecretArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "<redacted>" })
    }
}

impl std::str::FromStr for SecretArg {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

const ALERTS_HEADING: &str = "Alerts (kept in watchdog.env, 0600; an empty value removes one)";

/// A number of seconds; `None`: empty, remove the setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seconds(pub Option<u64>);

fn parse_seconds(text: &str) -> Result<Seconds, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(Seconds(None));
    }
    text.parse().map(|s| Seconds(Some(s))).map_err(|_| format!("invalid number of seconds {text:?}: expected e.g. 600"))
}

/// `edge stop`, `edge start` and `edge restart`.
#[derive(Debug, Args)]
pub struct LifecycleArgs {
    /// Services (or container names) [default: every service of the stack].
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,
    /// How long a container may take to stop before it is killed.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub stop_grace: Duration,
    /// How long to wait for started containers to become healthy.
    #[arg(long, value_name = "DURATION", default_value = "120s", value_parser = parse_duration)]
    pub health_timeout: Duration,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `edge gate`.
#[derive(Debug, Args)]
pub struct GateArgs {
    /// How many times to run the whole lifecycle.
    #[arg(long, value_name = "N", default_value = "1", value_parser = clap::value_parser!(u32).range(1..))]
    pub runs: u32,
    /// What to install in each run.
    #[command(flatten)]
    pub install: InstallFlags,
    /// Print the per-run steps and the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `edge status` and `edge healthcheck`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// Caddy metrics URL [default: http://CADDY_ADMIN/metrics].
    #[arg(long, value_name = "URL")]
    pub metrics_url: Option<String>,
}

/// `edge smoke`.
#[derive(Debug, Args)]
pub struct SmokeArgs {
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `edge uninstall`.
#[derive(Debug, Args)]
pub struct UninstallArgs {
    /// Confirm removal.
    #[arg(long)]
    pub yes: bool,
    /// Keep a timestamped backup of the identity files and install.env (the default; kept for the runbook's spelling).
    #[arg(long)]
    pub keep_backups: bool,
    /// Write the backup in the legacy installer's layout, as DIR/oxpulse-backup-<epoch>/ (e.g. /root) [default: edge's own, in the state dir].
    #[arg(long, value_name = "DIR")]
    pub backup_dir: Option<PathBuf>,
    /// Also remove the stack's named volumes, those `edge adopt` made included (their data is lost).
    #[arg(long)]
    pub purge_volumes: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `edge alert`.
#[derive(Debug, Subcommand)]
pub enum AlertCommand {
    /// Send a test message through the configured chain and say which transport delivered it.
    Test(AlertTestArgs),
}

/// `edge alert test`.
#[derive(Debug, Args)]
pub struct AlertTestArgs {
    /// Message text [default: a test message naming this host].
    #[arg(long)]
    pub message: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Watch the front proxy's upstream health and alert on every transition.
#[derive(Debug, Parser)]
#[command(
    name = "edge-watchdog",
    version,
    after_help = "Environment (the legacy names): OXPULSE_METRICS_SRC (metrics URL or file), STATE_DIR (state dir, as is), \
OXPULSE_TG_WEBHOOK, TG_TOKEN, OXPULSE_TG_CHAT (or TG_CHAT), OXPULSE_TG_API_FALLBACK, OXPULSE_TG_MIN_INTERVAL, \
OXPULSE_TG_STATE_DIR, OXPULSE_ALERTMANAGER_URL, OXPULSE_ALERT_BREAKER_TICKS.\n\n\
Exit codes of a tick (--once): 0 done (alerts delivered, or held by the rate limit to go out together later); \
1 failure (e.g. a state file cannot be written); 2 bad arguments or environment; \
3 degraded: alerts could not be delivered (every transport failed: they wait in the outbox for the next run) \
or no transport is configured. The daemon (--interval) exits 0 on SIGTERM or SIGINT."
)]
pub struct WatchdogArgs {
    /// Options every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// Run one tick and exit, for a systemd timer (the default without --interval).
    #[arg(long, conflicts_with = "interval")]
    pub once: bool,
    /// Run as a daemon, ticking at this interval and following Docker events between ticks.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub interval: Option<Duration>,
    /// Write Prometheus textfile metrics here (node_exporter textfile collector).
    #[arg(long, value_name = "PATH", env = "EDGE_WATCHDOG_TEXTFILE")]
    pub textfile: Option<PathBuf>,
    /// Print the tick report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Parses `250ms`, `5s`, `2m`, `1h` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| format!("invalid duration {text:?}: expected e.g. 250ms, 30s, 2m"))?;
    let ms = match unit {
        "ms" => n,
        "" | "s" => n.saturating_mul(1000),
        "m" => n.saturating_mul(60_000),
        "h" => n.saturating_mul(3_600_000),
        _ => return Err(format!("invalid duration unit {unit:?} in {text:?}: use ms, s, m or h")),
    };
    Ok(Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let check = |input: &str, expected: Result<u64, &str>| {
            assert_eq!(
                parse_duration(input).map(|d| d.as_millis() as u64).map_err(|e| e.to_string()),
                expected.map_err(str::to_owned)
            );
        };
        check("250ms", Ok(250));
        check("5s", Ok(5000));
        check("60", Ok(60_000));
        check("2m", Ok(120_000));
        check("5x", Err("invalid duration unit \"x\" in \"5x\": use ms, s, m or h"));
        check("", Err("invalid duration \"\": expected e.g. 250ms, 30s, 2m"));
    }

    #[test]
    fn the_cli_is_well_formed() {
        use clap::CommandFactory;
        EdgeArgs::command().debug_assert();
        WatchdogArgs::command().debug_assert();
    }
}
