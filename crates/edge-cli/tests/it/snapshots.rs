//! Snapshot files under `tests/snapshots/`: compare, or refresh with `EDGE_UPDATE_SNAPSHOTS=1`.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

/// The environment variable that rewrites the snapshots instead of comparing them.
const UPDATE: &str = "EDGE_UPDATE_SNAPSHOTS";

/// Lines of context around each change in a diff.
const CONTEXT: usize = 3;

/// Compares each `(name, text)` with `tests/snapshots/DIR/NAME.txt`, and fails on a missing or
/// differing snapshot and on a file no name claims any more, listing every problem with a diff
/// and how to refresh. Under `EDGE_UPDATE_SNAPSHOTS=1` it writes the files (and removes the
/// unclaimed ones) instead.
pub(crate) fn check_dir(dir: &str, snapshots: &[(String, String)]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots").join(dir);
    let update = std::env::var_os(UPDATE).is_some_and(|v| v == "1");
    let mut claimed = BTreeSet::new();
    let mut problems = Vec::new();
    for (name, actual) in snapshots {
        let file = format!("{name}.txt");
        assert!(claimed.insert(file.clone()), "two snapshots are named {file}: rename one");
        let path = dir.join(&file);
        let expected = std::fs::read_to_string(&path).ok();
        if expected.as_deref() == Some(actual.as_str()) {
            continue;
        }
        if update {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, actual).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
            continue;
        }
        match expected {
            None => problems.push(format!("{file}: no snapshot; the new text is\n{}", indent(actual))),
            Some(expected) => {
                problems.push(format!("{file} differs (- snapshot, + now):\n{}", diff(&expected, actual)))
            }
        }
    }
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        if claimed.contains(&file) {
            continue;
        }
        if update {
            std::fs::remove_file(entry.path()).unwrap_or_else(|e| panic!("cannot remove {file}: {e}"));
        } else {
            problems.push(format!("{file}: a snapshot of nothing any more (the command is gone?)"));
        }
    }
    assert!(
        problems.is_empty(),
        "{} snapshot(s) in {} out of date:\n\n{}\n\nif the change is intended, refresh them and review the diff:\n    \
         {UPDATE}=1 cargo test -p edge-cli --test it",
        problems.len(),
        dir.display(),
        problems.join("\n\n")
    );
}

fn indent(text: &str) -> String {
    text.lines().map(|l| if l.is_empty() { "\n".to_owned() } else { format!("  {l}\n") }).collect()
}

/// A line diff of `old` and `new` (longest common subsequence), changes with a few lines of
/// context, `…` where unchanged lines are left out.
fn diff(old: &str, new: &str) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    // common[i][j]: length of the longest common subsequence of a[i..] and b[j..].
    let mut common = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            common[i][j] = if a[i] == b[j] { common[i + 1][j + 1] + 1 } else { common[i + 1][j].max(common[i][j + 1]) };
        }
    }
    let mut lines: Vec<(char, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            lines.push((' ', a[i]));
            (i, j) = (i + 1, j + 1);
        } else if i < a.len() && (j == b.len() || common[i + 1][j] >= common[i][j + 1]) {
            lines.push(('-', a[i]));
            i += 1;
        } else {
            lines.push(('+', b[j]));
            j += 1;
        }
    }
    let changed: Vec<usize> = (0..lines.len()).filter(|&k| lines[k].0 != ' ').collect();
    if changed.is_empty() {
        return "  (the lines are equal: the texts differ in line endings or the final newline)\n".to_owned();
    }
    let mut out = String::new();
    let mut skipped = false;
    for (k, (tag, text)) in lines.iter().enumerate() {
        if changed.iter().any(|&c| c.abs_diff(k) <= CONTEXT) {
            if skipped {
                out.push_str("  …\n");
                skipped = false;
            }
            writeln!(out, "{tag} {text}").unwrap();
        } else {
            skipped = true;
        }
    }
    if skipped {
        out.push_str("  …\n");
    }
    out
}

#[test]
fn a_diff_shows_changes_in_context() {
    let check = |old: &str, new: &str, expected: &str| assert_eq!(diff(old, new), expected);
    check("a\nb\nc\n", "a\nB\nc\n", "  a\n- b\n+ B\n  c\n");
    check("a\n", "a\nb\n", "  a\n+ b\n");
    check("1\n2\n3\n4\n5\n6\n7\n8\n9\n", "1\n2\n3\n4\n5\n6\n7\n8\nnine\n", "  …\n  6\n  7\n  8\n- 9\n+ nine\n");
    check("a", "a\n", "  (the lines are equal: the texts differ in line endings or the final newline)\n");
}
