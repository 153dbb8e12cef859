//! `channels-status.env` and `upstream-state.env`: never panic, an error names a line,
//! and what parses is written back to the same state.

use std::path::Path;

use edge_core::{ChannelsStatus, UpstreamState};

use crate::targets::envfile::check_line;
use crate::{Seed, file_seeds, files, text};

/// Parses `data` as both state files and round-trips what each reads.
pub fn check(data: &[u8]) {
    let text = text(data);
    match ChannelsStatus::parse(&text) {
        Ok(status) => {
            let again = ChannelsStatus::parse(&status.to_string())
                .unwrap_or_else(|e| panic!("channels status written back no longer parses: {e}"));
            assert_eq!(again, status, "channels status written back reads differently");
        }
        Err(e) => check_line(e.line, &text),
    }
    match UpstreamState::parse(&text) {
        Ok(state) => {
            let again = UpstreamState::parse(&state.to_string())
                .unwrap_or_else(|e| panic!("upstream state written back no longer parses: {e}"));
            assert_eq!(again, state, "upstream state written back reads differently");
        }
        Err(e) => check_line(e.line, &text),
    }
}

/// The state files in `tests/fixtures/state/`.
pub fn seeds(root: &Path) -> Result<Vec<Seed>, String> {
    file_seeds(&files(&root.join("tests/fixtures/state"), &["-status.env", "-state.env"])?)
}
