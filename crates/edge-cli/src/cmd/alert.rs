//! `edge alert`.

use crate::ExitStatus;
use crate::args::AlertCommand;
use crate::settings::Settings;

pub(crate) fn run(_settings: &Settings, _args: AlertCommand) -> anyhow::Result<ExitStatus> {
    anyhow::bail!("`edge alert` is not available in this build yet")
}
