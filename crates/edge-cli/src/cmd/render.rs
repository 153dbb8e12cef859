//! `edge render`.

use crate::ExitStatus;
use crate::args::RenderArgs;
use crate::settings::Settings;

pub(crate) fn run(_settings: &Settings, _args: RenderArgs) -> anyhow::Result<ExitStatus> {
    anyhow::bail!("`edge render` is not available in this build yet")
}
