//! Running the `edge` binary in tests: a run logged for the failing test's output, and the
//! install flags every test stack shares (its local images, alerts to the loopback webhook).

use std::process::{Command, Output};
use std::time::Instant;

/// Runs `cmd` with `args`; the command line, exit, wall time and output go to stderr.
pub fn run_logged(mut cmd: Command, args: &[&str]) -> Output {
    let started = Instant::now();
    let out = cmd.args(args).output().expect("the edge binary runs");
    eprintln!(
        "edge {} -> {} in {:.1}s\n--- stdout\n{}--- stderr\n{}",
        args.join(" "),
        out.status,
        started.elapsed().as_secs_f64(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `VERB --images IMAGES --alert-webhook URL EXTRA…`: the images unless `extra` names some,
/// the shared loopback webhook unless `extra` names an alert flag or `alerts_given` (a
/// transport in the environment). Without a transport, install is degraded.
pub fn install_args(verb: &str, images: &str, extra: &[&str], alerts_given: bool) -> Vec<String> {
    let mut args = vec![verb.to_owned()];
    if !extra.contains(&"--images") {
        args.extend(["--images".to_owned(), images.to_owned()]);
    }
    if !alerts_given && !extra.iter().any(|a| a.starts_with("--alert")) {
        args.extend(["--alert-webhook".to_owned(), crate::telegram::shared_chat_server().webhook_url()]);
    }
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    args
}
