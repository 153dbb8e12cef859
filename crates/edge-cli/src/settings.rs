//! Validated settings shared by every command: the stack and where its files live.

use std::path::PathBuf;

use anyhow::Context;
use edge_core::{Paths, StackBundle};

use crate::UsageError;
use crate::args::GlobalArgs;

/// What every command needs, checked once.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The stack and its templates.
    pub bundle: StackBundle,
    /// Its host paths, under the root prefix.
    pub paths: Paths,
    /// The root prefix given, if any.
    pub root: Option<PathBuf>,
}

impl Settings {
    /// Loads the stack named by the flags (the embedded partner edge by default).
    pub fn from_args(global: &GlobalArgs) -> anyhow::Result<Self> {
        let bundle = match &global.stack {
            None => StackBundle::partner_edge(),
            Some(dir) => StackBundle::load(dir)
                .map_err(|e| UsageError(e.to_string()))
                .with_context(|| format!("cannot load the stack in {}", dir.display()))?,
        };
        if let Some(root) = &global.root
            && root.as_os_str().is_empty()
        {
            return Err(UsageError("--root must not be empty".into()).into());
        }
        let paths = Paths::new(global.root.as_deref(), &bundle.stack.stack);
        Ok(Self { bundle, paths, root: global.root.clone() })
    }

    /// The stack on this host, for the operations library (the root made absolute).
    pub fn node(&self) -> anyhow::Result<edge_deploy::Node> {
        edge_deploy::Node::new(self.bundle.clone(), self.root.as_deref()).with_context(|| {
            format!("cannot resolve --root {}", self.root.as_deref().unwrap_or(std::path::Path::new("/")).display())
        })
    }

    /// The variable sources the flags give (above the process environment).
    pub fn variable_sources(flags: &crate::args::VariableArgs) -> edge_render::VariableSources {
        edge_render::VariableSources {
            fixture: flags.fixture.clone(),
            environment: edge_render::VariableSources::process_environment(),
            flags: flags.set.iter().map(|a| (a.key.clone(), a.value.clone())).collect(),
            ..Default::default()
        }
    }
}
