//! What a long operation tells while it works; the caller decides how to show it.

use std::time::Duration;

/// One thing an operation reports while it works.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// A step of the pipeline begins, e.g. `render`.
    Step(String),
    /// A detail of the current step.
    Note(String),
    /// The deployer did something to a container.
    Deploy(edge_channels::Event),
    /// Still waiting on something that is not a container (the front proxy's pool).
    Waiting {
        /// What is waited on.
        label: String,
        /// Its state now.
        state: String,
        /// Time waited so far.
        waited: Duration,
    },
    /// A wait ended.
    Done {
        /// What was waited on.
        label: String,
        /// How it ended.
        state: String,
        /// Whether it ended well.
        ok: bool,
    },
}

/// Where progress goes.
pub type ProgressSink<'a> = &'a (dyn Fn(Progress) + Send + Sync);

/// A sink that drops everything.
pub fn quiet(_: Progress) {}
