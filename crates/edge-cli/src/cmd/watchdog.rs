//! `edge-watchdog`: one tick (`--once`, the default, for the systemd timer) or a daemon
//! (`--interval D`, ticks plus the Docker engine's events).

use anyhow::Context;

use crate::args::WatchdogArgs;
use crate::settings::Settings;
use crate::watchdog::{Watchdog, daemon};
use crate::{ExitStatus, UsageError};

pub(crate) fn run(settings: &Settings, args: WatchdogArgs) -> anyhow::Result<ExitStatus> {
    if args.interval.is_some_and(|d| d.is_zero()) {
        return Err(UsageError("--interval must be longer than 0".into()).into());
    }
    let lookup = |k: &str| std::env::var(k).ok();
    let mut watchdog = Watchdog::new(settings, args.textfile.clone(), &lookup)?;
    // One thread: a tick is a few reads, one HTTP fetch and maybe a POST.
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        if let Some(interval) = args.interval {
            return daemon::run(watchdog, interval, args.json).await;
        }
        let down: std::collections::BTreeMap<String, String> =
            watchdog.look_at_containers().await.into_values().collect();
        let outcome = watchdog.tick(&down).await?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&outcome)?);
        } else {
            for line in outcome.lines() {
                println!("{line}");
            }
        }
        Ok(outcome.exit_status())
    })
}
