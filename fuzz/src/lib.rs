//! Fuzz targets over edge's parsers and escapers, their seeds, the regression corpus and a
//! random-mutation loop.
//!
//! Each target is one `check(data: &[u8])` that panics exactly when the code under test
//! misbehaves: a parser of operator-facing text panics, or gives back something it cannot
//! read again, or an escaper's output, read by a parser of its format, is not the value.
//! The same functions run three ways: under AFL (`fuzz/afl`, a crate outside the workspace,
//! built by `cargo xtask fuzz`), in [`run_loop`] where AFL cannot run, and in this crate's
//! tests, which replay every seed and every input kept in `fuzz/regressions/TARGET/`.
//!
//! # Example
//!
//! ```
//! let target = edge_fuzz::target("envfile").unwrap();
//! (target.check)(b"PARTNER_ID=acme\nB='two words'\n");
//! ```
#![deny(missing_docs)]

use std::path::{Path, PathBuf};

mod caddy_lexer;
mod mutate;
mod systemd_word;
pub mod targets;

pub use mutate::{Crash, LoopReport, run_loop};

/// One fuzz target: a name, what it covers, its check and where its seeds come from.
pub struct Target {
    /// The name on the command line and of its folders (`fuzz/regressions/NAME/`).
    pub name: &'static str,
    /// What it exercises, in a few words.
    pub about: &'static str,
    /// Panics when the code under test misbehaves on `data`.
    pub check: fn(&[u8]),
    seeds: fn(&Path) -> Result<Vec<Seed>, String>,
}

/// A starting input and the file it came from.
#[derive(Debug, Clone)]
pub struct Seed {
    /// A name for it, unique within its target (used as a file name).
    pub name: String,
    /// Its bytes, as the target's check takes them.
    pub data: Vec<u8>,
}

/// Every target, in the order `cargo xtask fuzz` runs them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "metrics",
        about: "Caddy's metrics page (Prometheus text)",
        check: targets::metrics::check,
        seeds: targets::metrics::seeds,
    },
    Target {
        name: "envfile",
        about: "KEY=VALUE env files, written back and read again",
        check: targets::envfile::check,
        seeds: targets::envfile::seeds,
    },
    Target {
        name: "status",
        about: "channels-status.env and upstream-state.env",
        check: targets::status::check,
        seeds: targets::status::seeds,
    },
    Target {
        name: "record",
        about: "install.env as the typed install record",
        check: targets::record::check,
        seeds: targets::record::seeds,
    },
    Target { name: "stack", about: "stack.toml manifests", check: targets::stack::check, seeds: targets::stack::seeds },
    Target {
        name: "translate",
        about: "legacy {{VAR}}/{{#if}} templates, translated and rendered",
        check: targets::translate::check,
        seeds: targets::translate::seeds,
    },
    Target {
        name: "escape",
        about: "each escaper, read back by a parser of its format",
        check: targets::escape::check,
        seeds: targets::escape::seeds,
    },
];

/// A target by name.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

impl Target {
    /// Its seeds, read from the workspace's fixtures and stacks under `root`; a missing
    /// fixture is an error naming it.
    pub fn seeds(&self, root: &Path) -> Result<Vec<Seed>, String> {
        (self.seeds)(root)
    }

    /// The inputs kept in `fuzz/regressions/NAME/` under `root` (crashes found and fixed).
    pub fn regressions(&self, root: &Path) -> Result<Vec<Seed>, String> {
        let dir = regressions_dir(root).join(self.name);
        let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        for entry in entries {
            let path = entry.map_err(|e| format!("cannot list {}: {e}", dir.display()))?.path();
            if path.is_file() && path.file_name().is_some_and(|n| n != "README.md") {
                out.push(Seed { name: file_name(&path), data: read(&path)? });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

/// The workspace root this crate was built in.
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// `fuzz/regressions` under the workspace root: one folder of kept inputs per target.
pub fn regressions_dir(root: &Path) -> PathBuf {
    root.join("fuzz").join("regressions")
}

/// A short, stable name for an input (FNV-1a, 64 bits, in hex).
pub fn input_id(data: &[u8]) -> String {
    let hash = data.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    format!("{hash:016x}")
}

/// The text of an input: invalid UTF-8 replaced, as a file read lossily would be.
pub(crate) fn text(data: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(data)
}

pub(crate) fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read seed {}: {e}", path.display()))
}

pub(crate) fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// The files of `dir` whose names end with one of `suffixes`, sorted; a missing folder is an error.
pub(crate) fn files(dir: &Path, suffixes: &[&str]) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot list seed folder {}: {e}", dir.display()))?;
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && suffixes.iter().any(|s| file_name(p).ends_with(s)))
        .collect();
    out.sort();
    if out.is_empty() {
        return Err(format!("no seed ending in {} in {}", suffixes.join(" or "), dir.display()));
    }
    Ok(out)
}

/// Seeds from whole files.
pub(crate) fn file_seeds(paths: &[PathBuf]) -> Result<Vec<Seed>, String> {
    paths.iter().map(|p| Ok(Seed { name: file_name(p), data: read(p)? })).collect()
}
