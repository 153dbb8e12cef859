//! The `edge` command-line tool and the `edge-watchdog` binary: argument parsing, output and exit codes.
//!
//! edge-cli is the only crate of the workspace that reads argv, installs
//! tracing and chooses exit codes. Arguments are parsed in two stages: raw
//! flags ([`args`]), then a validated [`settings::Settings`] the commands use.

pub mod args;
#[macro_use]
mod out;
mod cmd;
mod exit;
mod progress;
mod rt;
pub mod settings;

use std::process::ExitCode;

use clap::Parser;

pub use exit::{ExitStatus, UsageError};

/// Runs `edge` with the process arguments.
pub fn edge_main() -> ExitCode {
    let args = args::EdgeArgs::parse();
    init_tracing(args.global.verbose, args.global.quiet);
    let result =
        settings::Settings::from_args(&args.global).and_then(|settings| cmd::dispatch(&settings, args.command));
    finish(result)
}

/// Runs `edge-watchdog` with the process arguments.
pub fn watchdog_main() -> ExitCode {
    let args = args::WatchdogArgs::parse();
    init_tracing(args.global.verbose, args.global.quiet);
    let result = settings::Settings::from_args(&args.global).and_then(|settings| cmd::watchdog::run(&settings, args));
    finish(result)
}

/// An operation's error, exit 2 when the operator's input is at fault.
pub(crate) fn op_error(err: edge_deploy::OpError) -> anyhow::Error {
    if err.is_input() { UsageError(err.to_string()).into() } else { anyhow::Error::new(err) }
}

fn finish(result: anyhow::Result<ExitStatus>) -> ExitCode {
    match result {
        Ok(status) => status.into(),
        Err(err) => {
            eprintln!("error: {}", exit::render_error(&err));
            ExitStatus::of_error(&err).into()
        }
    }
}

fn init_tracing(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("EDGE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .try_init();
}
