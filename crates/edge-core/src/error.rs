//! Errors of edge-core operations.

use std::path::PathBuf;

/// A parse error pinned to one line of a text file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct LineError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with the line.
    pub message: String,
}

/// Everything edge-core can fail at.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// Reading a file failed.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Writing a file (atomically) failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The state dir's lock cannot be taken.
    #[error("cannot lock {path}: {source}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A status or env file has a line that does not parse.
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The offending line.
        source: LineError,
    },
    /// A stack manifest is invalid.
    #[error("invalid stack manifest {origin}: {message}")]
    Manifest {
        /// Where the manifest came from.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// node-config.json is invalid.
    #[error("invalid node config {path}: {message}")]
    NodeConfig {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An existing identity file is corrupt; it is never regenerated silently.
    #[error(
        "identity file {path} is corrupt ({reason}); restore it from a backup or remove it to generate a new identity"
    )]
    CorruptSecret {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The system random source failed.
    #[error("cannot read random bytes: {0}")]
    Random(String),
}

impl CoreError {
    pub(crate) fn read(path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Read { path: path.to_owned(), source }
    }
    pub(crate) fn write(path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Write { path: path.to_owned(), source }
    }
}
