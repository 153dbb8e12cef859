//! Errors of the operations: each names what the operator must look at.

use std::path::PathBuf;

use edge_alerts::AlertError;
use edge_channels::DeployError;
use edge_core::CoreError;
use edge_render::RenderError;

/// Everything an operation can fail at.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// The container engine refused or could not be reached; the error names the operation.
    #[error(transparent)]
    Engine(DeployError),
    /// The stack did not render (a template, a variable, a channel's credentials).
    #[error(transparent)]
    Render(RenderError),
    /// A state or config file could not be read, parsed or written.
    #[error(transparent)]
    File(CoreError),
    /// An image override names no service of the stack, or is not `SERVICE=IMAGE`.
    #[error("--images {item:?}: {message}")]
    Image {
        /// The override as given.
        item: String,
        /// What is wrong.
        message: String,
    },
    /// A service named on the command line is not in the stack.
    #[error("the stack has no service {name:?} (it has {})", known.join(", "))]
    UnknownService {
        /// The name given.
        name: String,
        /// The stack's services.
        known: Vec<String>,
    },
    /// A backup dir cannot be restored.
    #[error("--restore-from {}: {message}", dir.display())]
    Restore {
        /// The backup dir.
        dir: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The registration token (`--token`) cannot be stored.
    #[error("--token: {0}")]
    Token(String),
    /// A data backup or restore cannot be made, read or applied.
    #[error("{what} {message}")]
    Backup {
        /// What: the backup, the database or the stack.
        what: String,
        /// What is wrong, and what to do.
        message: String,
    },
    /// The alert settings (`watchdog.env` and the alert flags) cannot be read, used or written.
    #[error(transparent)]
    Alerts(AlertError),
    /// The host is not ready for the operation (disk, ports, the engine).
    #[error("preflight: {0}")]
    Preflight(String),
    /// A file or folder operation failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. `create backup dir`.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A running service refused its new config (or could not be reached): it keeps running
    /// the previous one, which is back on disk.
    #[error("{source}; it keeps running its previous config, which is back in {}", restored.display())]
    Reload {
        /// What the service answered.
        source: Box<DeployError>,
        /// The config file put back.
        restored: PathBuf,
    },
    /// The legacy bash installer runs this host: install would replace its containers.
    #[error(
        "{stack}: this host was set up by the legacy installer ({found}); run edge adopt --dry-run to see how edge takes it over, then edge adopt (or edge install --adopt)"
    )]
    LegacyHost {
        /// The stack.
        stack: String,
        /// What was found, e.g. the containers edge did not create.
        found: String,
    },
    /// The adoption stopped where its test hook (`EDGE_ADOPT_STOP_AFTER`) said, as a crash would.
    #[error("adoption stopped after {after} steps (EDGE_ADOPT_STOP_AFTER); run edge adopt again to resume")]
    AdoptStopped {
        /// Steps done in this run.
        after: usize,
    },
    /// The watchdog cannot deliver alerts (the HTTP client, the alert state dir).
    #[error("cannot set up alert delivery")]
    AlertDelivery(#[source] AlertError),
    /// The watchdog cannot write a channel's new state.
    #[error("cannot update channels-status.env")]
    ChannelsStatus(#[source] Box<OpError>),
    /// The folder of the watchdog's textfile metrics cannot be created.
    #[error("cannot create {}", path.display())]
    TextfileDir {
        /// The folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The watchdog's textfile metrics cannot be written.
    #[error("cannot write the metrics textfile {}", path.display())]
    Textfile {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: CoreError,
    },
    /// The stack is not installed on this host.
    #[error("{stack} is not installed here ({} is missing); run edge install first", install_env.display())]
    NotInstalled {
        /// The stack.
        stack: String,
        /// Its install record.
        install_env: PathBuf,
    },
}

impl OpError {
    /// Whether the operator's input is at fault (bad flags, files, templates), rather than
    /// the host or the engine: the CLI exits 2 for these.
    pub fn is_input(&self) -> bool {
        match self {
            Self::Render(RenderError::Write { .. }) => false,
            Self::Render(_)
            | Self::Image { .. }
            | Self::UnknownService { .. }
            | Self::Restore { .. }
            | Self::Token(_) => true,
            Self::File(CoreError::NodeConfig { .. } | CoreError::Manifest { .. }) => true,
            Self::Alerts(AlertError::Config { .. } | AlertError::Settings { source: CoreError::Parse { .. }, .. }) => {
                true
            }
            _ => false,
        }
    }

    pub(crate) fn channels_status(source: OpError) -> Self {
        Self::ChannelsStatus(Box::new(source))
    }

    pub(crate) fn io(action: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io { action, path: path.to_owned(), source }
    }
}

/// An error and its causes on one line, `: ` between them.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

impl From<DeployError> for OpError {
    fn from(e: DeployError) -> Self {
        Self::Engine(e)
    }
}

impl From<CoreError> for OpError {
    fn from(e: CoreError) -> Self {
        Self::File(e)
    }
}

impl From<AlertError> for OpError {
    fn from(e: AlertError) -> Self {
        Self::Alerts(e)
    }
}

impl From<RenderError> for OpError {
    fn from(e: RenderError) -> Self {
        Self::Render(e)
    }
}
