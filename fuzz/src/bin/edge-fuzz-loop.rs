//! `edge-fuzz-loop TARGET SECONDS OUT_DIR`: the in-process random fuzzer, for when AFL
//! cannot run. Seeds come from the workspace's fixtures and regression corpus; each distinct
//! crash's input is saved in OUT_DIR. The last line is `executions=N crashes=M`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [name, seconds, out] = args.as_slice() else {
        eprintln!("usage: edge-fuzz-loop TARGET SECONDS OUT_DIR");
        return ExitCode::from(2);
    };
    let Some(target) = edge_fuzz::target(name) else {
        eprintln!("error: no fuzz target {name:?}");
        return ExitCode::from(2);
    };
    let Ok(seconds) = seconds.parse::<u64>() else {
        eprintln!("error: SECONDS {seconds:?} is not a whole number");
        return ExitCode::from(2);
    };
    let root = edge_fuzz::workspace_root();
    let seeds = match (target.seeds(&root), target.regressions(&root)) {
        (Ok(seeds), Ok(kept)) => seeds.into_iter().chain(kept).map(|s| s.data).collect::<Vec<_>>(),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let rng_seed = SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
    let report = edge_fuzz::run_loop(target, &seeds, Duration::from_secs(seconds), rng_seed);
    let out = PathBuf::from(out);
    if let Err(e) = std::fs::create_dir_all(&out) {
        eprintln!("error: cannot create {}: {e}", out.display());
        return ExitCode::FAILURE;
    }
    for crash in &report.crashes {
        let path = out.join(format!("crash-{}", edge_fuzz::input_id(&crash.input)));
        println!("crash {}: {}", path.display(), crash.signature);
        if let Err(e) = std::fs::write(&path, &crash.input) {
            eprintln!("error: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    println!("executions={} crashes={}", report.executions, report.crashes.len());
    ExitCode::SUCCESS
}
