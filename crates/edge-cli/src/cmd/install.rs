//! `edge install`.

use crate::ExitStatus;
use crate::args::InstallArgs;
use crate::settings::Settings;

pub(crate) fn run(_settings: &Settings, _args: InstallArgs) -> anyhow::Result<ExitStatus> {
    anyhow::bail!("`edge install` is not available in this build yet")
}
