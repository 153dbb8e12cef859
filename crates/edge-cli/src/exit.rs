//! Exit codes: a small closed set that scripts can rely on.

use std::process::ExitCode;

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Everything asked for was done and is healthy (0).
    Success,
    /// The operation failed (1).
    Failure,
    /// The command line or an input file is wrong (2).
    Usage,
    /// Done, but not everything is healthy: an optional channel failed, an alert waits in the outbox (3).
    Degraded,
}

impl ExitStatus {
    /// The status an error maps to: [`ExitStatus::Usage`] when a [`UsageError`] is in its chain.
    pub fn of_error(err: &anyhow::Error) -> Self {
        if err.chain().any(|e| e.is::<UsageError>()) { Self::Usage } else { Self::Failure }
    }
}

impl From<ExitStatus> for ExitCode {
    fn from(status: ExitStatus) -> Self {
        ExitCode::from(match status {
            ExitStatus::Success => 0,
            ExitStatus::Failure => 1,
            ExitStatus::Usage => 2,
            ExitStatus::Degraded => 3,
        })
    }
}

/// An error in what the operator gave: arguments, a config file, a template, a variable.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The error and its causes on one line each.
pub(crate) fn render_error(err: &anyhow::Error) -> String {
    let mut out = err.to_string();
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str("\n  caused by: ");
            out.push_str(&text);
        }
    }
    out
}
