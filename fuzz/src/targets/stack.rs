//! `stack.toml`: never panics, and a manifest that validates is written back to the same one.

use std::path::Path;

use edge_core::Stack;

use crate::{Seed, file_seeds, files, text};

/// Parses `data` as a manifest and round-trips what validates.
pub fn check(data: &[u8]) {
    let Ok(stack) = Stack::from_toml(&text(data), "fuzz") else { return };
    let written = stack.to_toml();
    let again = Stack::from_toml(&written, "written back").unwrap_or_else(|e| panic!("{e}\n{written}"));
    assert_eq!(again, stack, "manifest written back reads differently");
}

/// The partner edge's manifest and every example's.
pub fn seeds(root: &Path) -> Result<Vec<Seed>, String> {
    let mut paths = files(&root.join("crates/edge-core/stacks/partner-edge"), &["stack.toml"])?;
    let examples = root.join("examples");
    let entries = std::fs::read_dir(&examples).map_err(|e| format!("cannot list {}: {e}", examples.display()))?;
    for entry in entries.filter_map(Result::ok) {
        if entry.path().join("stack.toml").is_file() {
            paths.push(entry.path().join("stack.toml"));
        }
    }
    let mut seeds = file_seeds(&paths)?;
    // Both are called stack.toml: name them by folder.
    for (seed, path) in seeds.iter_mut().zip(&paths) {
        let folder = path.parent().map(crate::file_name).unwrap_or_default();
        seed.name = format!("{folder}.toml");
    }
    Ok(seeds)
}
