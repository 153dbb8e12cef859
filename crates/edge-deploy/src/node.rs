//! The stack on this host: its manifest and templates, and where its files live.

use std::path::Path;
use std::sync::Arc;

use edge_core::{Paths, StackBundle};

use crate::mesh::{MeshHost, WgTools};

/// One stack on one host.
#[derive(Debug, Clone)]
pub struct Node {
    /// The stack and its templates.
    pub bundle: StackBundle,
    /// Its host paths.
    pub paths: Paths,
    /// Whether the paths are under a root prefix (`--root`): then no systemd unit is enabled.
    pub rooted: bool,
    /// The host's WireGuard tools, for mesh channels (the real ones unless a test says).
    pub mesh: Arc<dyn MeshHost>,
}

impl Node {
    /// The stack `bundle` under `root` (the real `/` when `None`). The root is made absolute,
    /// since bind mounts need absolute host paths.
    pub fn new(bundle: StackBundle, root: Option<&Path>) -> std::io::Result<Self> {
        let root = root.map(std::path::absolute).transpose()?;
        let paths = Paths::new(root.as_deref(), &bundle.stack.stack);
        Ok(Self { bundle, paths, rooted: root.is_some(), mesh: Arc::new(WgTools::default()) })
    }

    /// The stack's manifest.
    pub fn stack(&self) -> &edge_core::Stack {
        &self.bundle.stack
    }

    /// The stack's name.
    pub fn name(&self) -> &str {
        &self.bundle.stack.stack.name
    }
}
