//! Shared helpers: the workspace's render fixtures, variables, snapshot files and stack copies.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use edge_core::StackBundle;
use edge_render::{Source, Variables};

/// `tests/fixtures/render/NAME` at the workspace root.
pub(crate) fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/render").join(name)
}

/// The pairs of a fixture file.
pub(crate) fn fixture(name: &str) -> Vec<(String, String)> {
    let path = fixture_path(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    edge_render::parse_fixture(&text).unwrap()
}

/// Stack defaults < fixture < `extra` (as flags); pairs of `fixture` named in `drop` are left out.
pub(crate) fn vars(bundle: &StackBundle, fixture_name: &str, drop: &[&str], extra: &[(&str, &str)]) -> Variables {
    let pairs = fixture(fixture_name).into_iter().filter(|(k, _)| !drop.contains(&k.as_str()));
    Variables::new(&bundle.stack.variables)
        .with_layer(Source::Fixture, pairs)
        .with_layer(Source::Flag, extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())))
}

/// Compares `actual` with `tests/snapshots/NAME`; `UPDATE_SNAPSHOTS=1` rewrites the file instead.
pub(crate) fn check_snapshot(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots").join(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("no snapshot {}: run the tests with UPDATE_SNAPSHOTS=1", path.display()));
    if expected != actual {
        let line = expected.lines().zip(actual.lines()).position(|(a, b)| a != b).unwrap_or(0);
        panic!(
            "{name} differs from its snapshot at line {} (UPDATE_SNAPSHOTS=1 accepts the new text):\n--- snapshot\n{}\n--- rendered\n{}",
            line + 1,
            expected.lines().nth(line).unwrap_or("<end>"),
            actual.lines().nth(line).unwrap_or("<end>"),
        );
    }
}

/// A copy of the partner edge on disk, with some template sources replaced.
pub(crate) fn partner_edge_with(replaced: &BTreeMap<&str, &str>) -> (tempfile::TempDir, StackBundle) {
    let embedded = StackBundle::partner_edge();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("templates")).unwrap();
    std::fs::write(dir.path().join("stack.toml"), embedded.stack.to_toml()).unwrap();
    for (name, text) in embedded.template_sources() {
        let text = replaced.get(name).copied().unwrap_or(text);
        std::fs::write(dir.path().join("templates").join(name), text).unwrap();
    }
    let bundle = StackBundle::load(dir.path()).unwrap();
    (dir, bundle)
}
