//! `edge uninstall`.

use crate::ExitStatus;
use crate::args::UninstallArgs;
use crate::settings::Settings;

pub(crate) fn run(_settings: &Settings, _args: UninstallArgs) -> anyhow::Result<ExitStatus> {
    anyhow::bail!("`edge uninstall` is not available in this build yet")
}
