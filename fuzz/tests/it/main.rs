//! Replays every fuzz target's seeds and kept crash inputs (`fuzz/regressions/TARGET/`)
//! through its check, so the crashes found stay fixed without AFL.

use edge_fuzz::{TARGETS, workspace_root};

/// Runs every input of one target and names each that panics.
fn replay(name: &str) {
    let target = edge_fuzz::target(name).unwrap_or_else(|| panic!("no target {name}"));
    let root = workspace_root();
    let seeds = target.seeds(&root).unwrap();
    assert!(!seeds.is_empty(), "{name} has no seeds");
    let kept = target.regressions(&root).unwrap();
    let mut failed = Vec::new();
    for input in seeds.iter().chain(&kept) {
        if std::panic::catch_unwind(|| (target.check)(&input.data)).is_err() {
            failed.push(input.name.clone());
        }
    }
    assert!(failed.is_empty(), "{name}: these inputs fail its check: {failed:?}");
}

#[test]
fn every_target_is_replayed_here() {
    let names: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
    assert_eq!(names, ["metrics", "envfile", "status", "record", "stack", "translate", "escape"]);
}

#[test]
fn metrics() {
    replay("metrics");
}

#[test]
fn envfile() {
    replay("envfile");
}

#[test]
fn status() {
    replay("status");
}

#[test]
fn record() {
    replay("record");
}

#[test]
fn stack() {
    replay("stack");
}

#[test]
fn translate() {
    replay("translate");
}

#[test]
fn escape() {
    replay("escape");
}
