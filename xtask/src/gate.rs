//! `cargo xtask gate --runs N`: `edge gate` on the demo stack (the embedded partner edge on
//! the local images, as `cargo xtask demo` installs it) in `target/gate-root`. A passing
//! gate removes what it installed; a failing one leaves the host as the failing step left it.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};

use crate::demo::{DEMO_ENV, build_edge, build_images, install_flags, remove, require_docker_or_fail};

/// Options of `cargo xtask gate`.
#[derive(Debug, clap::Args)]
pub(crate) struct GateArgs {
    /// How many times to run the whole lifecycle.
    #[arg(long, value_name = "N", default_value = "3")]
    runs: u32,
    /// Where the gate's /etc and /var/lib live.
    #[arg(long, value_name = "DIR", default_value = "target/gate-root")]
    root: PathBuf,
    /// Caddy's site address (loopback, plain HTTP).
    #[arg(long, value_name = "ADDRESS", default_value = "http://127.0.0.1:8080")]
    site: String,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

impl GateArgs {
    /// The gate as `cargo xtask test` runs it.
    pub(crate) fn runs(runs: u32) -> Self {
        Self { runs, root: PathBuf::from("target/gate-root"), site: "http://127.0.0.1:8080".to_owned(), json: false }
    }
}

pub(crate) fn run(args: GateArgs) -> anyhow::Result<()> {
    let workspace = crate::workspace_root();
    let root = if args.root.is_absolute() { args.root.clone() } else { workspace.join(&args.root) };
    require_docker_or_fail()?;
    let edge = build_edge(&workspace)?;
    build_images()?;
    // A gate starts from a fresh host: what a previous failing gate left goes first.
    remove(&edge, &root)?;
    let runs = args.runs.to_string();
    let mut gate = vec!["gate".to_owned(), "--runs".to_owned(), runs];
    gate.extend(install_flags(&root, &args.site)?);
    if args.json {
        gate.push("--json".to_owned());
    }
    eprintln!("==> edge --root {} {}", root.display(), gate.join(" "));
    let status = Command::new(&edge)
        .arg("--root")
        .arg(&root)
        .args(&gate)
        .envs(DEMO_ENV.iter().copied())
        .status()
        .with_context(|| format!("cannot run {}", edge.display()))?;
    if !status.success() {
        bail!("the gate failed ({status}); the host is left as the failing step left it, under {}", root.display());
    }
    remove(&edge, &root)
}
