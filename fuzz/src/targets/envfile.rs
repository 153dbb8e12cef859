//! KEY=VALUE files: never panic, an error names a line of the text, and what parses is
//! written back to text that parses to the same pairs.

use std::path::Path;

use edge_core::EnvFile;

use crate::{Seed, file_seeds, files, text};

/// Parses `data` as an env file and round-trips what it reads.
pub fn check(data: &[u8]) {
    let text = text(data);
    match EnvFile::parse(&text) {
        Ok(env) => {
            let written = env.to_string();
            let again = EnvFile::parse(&written).unwrap_or_else(|e| panic!("written back, it no longer parses: {e}"));
            assert_eq!(again, env, "written back, it reads differently");
        }
        Err(e) => check_line(e.line, &text),
    }
}

/// An error's line is one of the text's lines.
pub(crate) fn check_line(line: usize, text: &str) {
    let lines = text.split('\n').count();
    assert!((1..=lines).contains(&line), "error on line {line} of a {lines}-line file");
}

/// The env files in `tests/fixtures/render/` and `tests/fixtures/state/`.
pub fn seeds(root: &Path) -> Result<Vec<Seed>, String> {
    let mut paths = files(&root.join("tests/fixtures/render"), &[".env"])?;
    paths.extend(files(&root.join("tests/fixtures/state"), &[".env"])?);
    file_seeds(&paths)
}
