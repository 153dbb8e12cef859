//! `edge-watchdog`: one tick (`--once`) or a daemon (`--interval`).

use crate::ExitStatus;
use crate::args::WatchdogArgs;
use crate::settings::Settings;

pub(crate) fn run(_settings: &Settings, _args: WatchdogArgs) -> anyhow::Result<ExitStatus> {
    anyhow::bail!("`edge-watchdog` is not available in this build yet")
}
