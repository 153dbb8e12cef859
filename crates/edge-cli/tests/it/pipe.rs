//! `edge` writing into a pipe whose reader is gone (`edge schema | head -1`).

use std::process::Command;

#[test]
fn a_closed_pipe_drops_the_output_quietly_and_keeps_the_exit_status() {
    let run = |args: &[&str]| {
        let (reader, writer) = std::io::pipe().expect("a pipe");
        // The reader is gone before edge writes anything: every write meets a closed pipe.
        drop(reader);
        Command::new(env!("CARGO_BIN_EXE_edge")).args(args).stdout(writer).output().expect("edge runs")
    };
    let out = run(&["schema"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");

    // A failing command keeps its own status when its output cannot be written.
    let root = tempfile::tempdir().expect("a root");
    let out = run(&["--root", root.path().to_str().expect("utf-8"), "healthcheck"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
}
