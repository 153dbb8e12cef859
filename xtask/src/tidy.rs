//! `cargo xtask tidy`: every Rust file opens with a `//!` line saying what it is.

use std::path::{Path, PathBuf};

use anyhow::bail;

pub(crate) fn check(root: &Path) -> anyhow::Result<()> {
    let mut offenders = Vec::new();
    for dir in ["crates", "xtask", "tests", "fuzz"] {
        walk(&root.join(dir), &mut offenders)?;
    }
    if !offenders.is_empty() {
        let list: Vec<String> = offenders.iter().map(|p| format!("  {}", p.display())).collect();
        bail!("these files do not start with a `//!` line saying what they are:\n{}", list.join("\n"));
    }
    Ok(())
}

fn walk(dir: &Path, offenders: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "target" || n == "snapshots" || n == "fixtures") {
                continue;
            }
            walk(&path, offenders)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path)?;
            if !text.starts_with("//!") {
                offenders.push(path);
            }
        }
    }
    Ok(())
}
