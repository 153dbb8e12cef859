//! `--help` of every command and subcommand of `edge` and `edge-watchdog`, found by walking
//! clap's command tree (a new command is covered without touching this file), each compared
//! with its snapshot `tests/snapshots/help/<binary>[-<subcommand>…].txt`.

use clap::{Arg, Command, CommandFactory};
use edge_cli::args::{EdgeArgs, WatchdogArgs};

use crate::snapshots;

/// A fixed terminal width, so the snapshots don't follow the terminal the tests run in.
const WIDTH: usize = 100;

#[test]
fn every_command_s_long_help_matches_its_snapshot() {
    let mut helps = Vec::new();
    for binary in [EdgeArgs::command(), WatchdogArgs::command()] {
        let mut binary = without_env_values(binary.term_width(WIDTH));
        binary.build();
        let name = binary.get_name().to_owned();
        collect(&mut binary, &name, &mut helps);
    }
    snapshots::check_dir("help", &helps);
}

/// The long help of `cmd` and of every subcommand below it, as (`edge-secrets-awg-keygen`, text).
fn collect(cmd: &mut Command, name: &str, helps: &mut Vec<(String, String)>) {
    let text = cmd.render_long_help().to_string();
    helps.push((name.to_owned(), restore_env_markers(cmd, text)));
    for sub in cmd.get_subcommands_mut() {
        // clap's generated `help` subcommand: not ours to document.
        if sub.get_name() == "help" {
            continue;
        }
        let sub_name = format!("{name}-{}", sub.get_name());
        collect(sub, &sub_name, helps);
    }
}

/// Help shows an environment variable's current value (`[env: EDGE_ROOT=/tmp/x]`); the
/// snapshots show the help of a clean environment, so set variables get their value hidden here
/// and their `=` back in [`restore_env_markers`].
fn without_env_values(cmd: Command) -> Command {
    cmd.mut_args(|arg| if is_set_in_env(&arg) { arg.hide_env_values(true) } else { arg })
        .mut_subcommands(without_env_values)
}

fn restore_env_markers(cmd: &Command, mut text: String) -> String {
    for arg in cmd.get_arguments().filter(|a| is_set_in_env(a)) {
        if let Some(env) = arg.get_env() {
            let env = env.to_string_lossy();
            text = text.replace(&format!("[env: {env}]"), &format!("[env: {env}=]"));
        }
    }
    text
}

fn is_set_in_env(arg: &Arg) -> bool {
    arg.get_env().is_some_and(|name| std::env::var_os(name).is_some())
}
