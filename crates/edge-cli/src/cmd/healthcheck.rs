//! `edge healthcheck`.

use crate::ExitStatus;
use crate::args::StatusArgs;
use crate::settings::Settings;

pub(crate) fn run(_settings: &Settings, _args: StatusArgs) -> anyhow::Result<ExitStatus> {
    anyhow::bail!("`edge healthcheck` is not available in this build yet")
}
