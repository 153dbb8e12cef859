//! One module per command; each returns the [`ExitStatus`] it ends with.

use crate::ExitStatus;
use crate::args::Command;
use crate::settings::Settings;

mod alert;
mod healthcheck;
mod install;
mod render;
mod schema;
mod secrets;
mod status;
mod uninstall;
pub(crate) mod watchdog;

pub(crate) fn dispatch(settings: &Settings, command: Command) -> anyhow::Result<ExitStatus> {
    match command {
        Command::Render(args) => render::run(settings, args),
        Command::Schema => schema::run(),
        Command::Secrets(args) => secrets::run(settings, args),
        Command::Install(args) => install::run(settings, args),
        Command::Status(args) => status::run(settings, args),
        Command::Healthcheck(args) => healthcheck::run(settings, args),
        Command::Uninstall(args) => uninstall::run(settings, args),
        Command::Alert(args) => alert::run(settings, args),
    }
}
