//! `install.env` as the typed install record: never panics, an error names a line, and a
//! record is written back to the same record.

use std::path::Path;

use edge_core::InstallRecord;

use crate::targets::envfile::check_line;
use crate::{Seed, file_seeds, files, text};

/// Parses `data` as an install record and round-trips what it reads.
pub fn check(data: &[u8]) {
    let text = text(data);
    match InstallRecord::parse(&text) {
        Ok(record) => {
            let written = record.to_env().to_string();
            let again =
                InstallRecord::parse(&written).unwrap_or_else(|e| panic!("record written back no longer parses: {e}"));
            assert_eq!(again, record, "record written back reads differently");
        }
        Err(e) => check_line(e.line, &text),
    }
}

/// `tests/fixtures/state/install.env` and the render fixtures (install parameters).
pub fn seeds(root: &Path) -> Result<Vec<Seed>, String> {
    let mut paths = files(&root.join("tests/fixtures/state"), &["install.env"])?;
    paths.extend(files(&root.join("tests/fixtures/render"), &[".env"])?);
    file_seeds(&paths)
}
