//! One module per command; each returns the [`ExitStatus`] it ends with.

use crate::ExitStatus;
use crate::args::Command;
use crate::settings::Settings;

mod adopt;
mod alert;
mod backup;
mod gate;
mod healthcheck;
mod install;
mod lifecycle;
mod render;
mod rollout;
mod schema;
mod secrets;
pub(crate) mod smoke;
pub(crate) mod status;
mod uninstall;
pub(crate) mod watchdog;

pub(crate) fn dispatch(settings: &Settings, command: Command) -> anyhow::Result<ExitStatus> {
    match command {
        Command::Render(args) => render::run(settings, args),
        Command::Schema => schema::run(),
        Command::Secrets(args) => secrets::run(settings, args),
        Command::Install(args) => install::run(settings, args),
        Command::Adopt(args) => adopt::run(settings, args),
        Command::Status(args) => status::run(settings, args),
        Command::Healthcheck(args) => healthcheck::run(settings, args),
        Command::Smoke(args) => smoke::run(settings, args),
        Command::Uninstall(args) => uninstall::run(settings, args),
        Command::Stop(args) => lifecycle::run(settings, edge_deploy::Verb::Stop, args),
        Command::Start(args) => lifecycle::run(settings, edge_deploy::Verb::Start, args),
        Command::Restart(args) => lifecycle::run(settings, edge_deploy::Verb::Restart, args),
        Command::Gate(args) => gate::run(settings, args),
        Command::Alert(args) => alert::run(settings, args),
        Command::Backup(args) => backup::backup(settings, args),
        Command::Restore(args) => backup::restore(settings, args),
        Command::Rollout(args) => rollout::rollout(settings, args),
        Command::Rollback(args) => rollout::rollback(settings, args),
    }
}
