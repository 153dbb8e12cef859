//! `cargo xtask demo`: the main job on a fresh machine. Builds the local images (the static
//! stand-in channel server and Caddy 2.11 from its static binary), installs the embedded
//! partner edge with hysteria2 and naive credentials into `target/demo-root` on the local engine, and prints
//! `edge status`. `--down` removes it all again.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use edge_tests::docker::{docker_version, ensure_local_images, partner_edge_images};

/// Options of `cargo xtask demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Remove the demo: its containers, network, volumes and `target/demo-root`.
    #[arg(long)]
    down: bool,
    /// Where the demo's /etc and /var/lib live.
    #[arg(long, value_name = "DIR", default_value = "target/demo-root")]
    root: PathBuf,
    /// Caddy's site address for the demo (loopback, plain HTTP: no certificate needed).
    #[arg(long, value_name = "ADDRESS", default_value = "http://127.0.0.1:8080")]
    site: String,
    /// Bring up this stack folder instead of the partner edge (`examples/app-sqlite`: the app on
    /// its local image behind Caddy on 127.0.0.1:8080).
    #[arg(long, value_name = "DIR")]
    stack: Option<PathBuf>,
}

/// Demo credentials of the channels; the stand-ins ignore them, the rendered configs carry them.
pub(crate) const DEMO_ENV: &[(&str, &str)] = &[
    ("HYSTERIA2_SERVER", "hy2.demo.invalid"),
    ("HYSTERIA2_PORT", "443"),
    ("HYSTERIA2_AUTH", "demo-hysteria2-auth"),
    ("HYSTERIA2_OBFS", "demo-hysteria2-obfs"),
    ("NAIVE_SERVER", "naive.demo.invalid"),
    ("NAIVE_USERNAME", "demo"),
    ("NAIVE_PASSWORD", "demo-naive-password"),
];

pub(crate) const DEMO_NODE_CONFIG: &str = r#"{
  "reality": {
    "server": "reality.demo.invalid",
    "port": 443,
    "public_key": "Z4bx4ZL8Vxd1v8z0rZzV0Xh2rKpFQ0Dk7yYjv6sVYkA",
    "server_name": "www.example.com",
    "short_id": "0123abcd"
  }
}
"#;

pub(crate) fn run(args: DemoArgs) -> anyhow::Result<()> {
    let root_dir = crate::workspace_root();
    let root = if args.root.is_absolute() { args.root.clone() } else { root_dir.join(&args.root) };
    require_docker_or_fail()?;
    let edge = build_edge(&root_dir)?;
    if let Some(stack) = &args.stack {
        return run_stack(&edge, &root, &root_dir.join(stack), args.down);
    }
    if args.down {
        remove(&edge, &root)?;
        eprintln!("demo removed");
        return Ok(());
    }

    build_images()?;
    let mut install = vec!["install".to_owned()];
    install.extend(install_flags(&root, &args.site)?);
    let install: Vec<&str> = install.iter().map(String::as_str).collect();
    run_edge(&edge, &root, &install, DEMO_ENV)?;
    run_edge(&edge, &root, &["status"], &[])?;
    eprintln!("try: curl -s {}/ (served by the xray stand-in through Caddy)", args.site);
    eprintln!("remove with: cargo xtask demo --down");
    Ok(())
}

/// The demo of a stack folder: `examples/app-sqlite` runs on the local app and Caddy images.
fn run_stack(edge: &Path, root: &Path, stack: &Path, down: bool) -> anyhow::Result<()> {
    let dir = stack.display().to_string();
    if down {
        if root.exists() {
            run_edge(edge, root, &["--stack", &dir, "uninstall", "--yes", "--purge-volumes"], &[])?;
            std::fs::remove_dir_all(root).with_context(|| format!("cannot remove {}", root.display()))?;
        }
        eprintln!("demo removed");
        return Ok(());
    }
    eprintln!("==> building the local images (app, Caddy)");
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(edge_tests::sqlite_app::ensure_sqlite_app_images())
        .context("building the demo images")?;
    std::fs::create_dir_all(root)?;
    let webhook = edge_tests::telegram::shared_chat_server().webhook_url();
    let images = edge_tests::sqlite_app::sqlite_app_images();
    let install = ["--stack", &dir, "install", "--alert-webhook", &webhook, "--images", &images];
    run_edge(edge, root, &install, &[])?;
    run_edge(edge, root, &["--stack", &dir, "status"], &[])?;
    eprintln!("try: curl -s -X POST -d hello http://127.0.0.1:8080/api/rows; curl -s http://127.0.0.1:8080/api/rows");
    eprintln!("back up: {} --root {} --stack {dir} backup", edge.display(), root.display());
    eprintln!("remove with: cargo xtask demo --stack {dir} --down");
    Ok(())
}

/// Builds the local images the demo stack runs (stand-in channel server, Caddy, coturn).
pub(crate) fn build_images() -> anyhow::Result<()> {
    eprintln!("==> building the local images (stand-in channel server, Caddy, coturn)");
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(ensure_local_images())
        .context("building the demo images")
}

/// The install flags of the demo stack under `root`, writing its node config there. Alerts go
/// to a loopback webhook that lives as long as this process: without a transport, install
/// is degraded and the gate's healthcheck fails.
pub(crate) fn install_flags(root: &Path, site: &str) -> anyhow::Result<Vec<String>> {
    std::fs::create_dir_all(root)?;
    let node_config = root.join("demo-node-config.json");
    std::fs::write(&node_config, DEMO_NODE_CONFIG)?;
    let flags = [
        "--partner-id",
        "demo",
        "--domain",
        "demo.localhost",
        "--manual-config",
        &node_config.display().to_string(),
        "--images",
        &partner_edge_images(),
        "--set",
        &format!("CADDY_SITE={site}"),
        "--alert-webhook",
        &edge_tests::telegram::shared_chat_server().webhook_url(),
    ]
    .map(str::to_owned);
    Ok(flags.to_vec())
}

/// Uninstalls the demo stack under `root` with its volumes and removes `root`, if it exists.
pub(crate) fn remove(edge: &Path, root: &Path) -> anyhow::Result<()> {
    if root.exists() {
        run_edge(edge, root, &["uninstall", "--yes", "--purge-volumes"], &[])?;
        std::fs::remove_dir_all(root).with_context(|| format!("cannot remove {}", root.display()))?;
    }
    Ok(())
}

pub(crate) fn require_docker_or_fail() -> anyhow::Result<()> {
    docker_version().map(drop).map_err(|e| anyhow::anyhow!("the demo needs the Docker engine and {e}; start dockerd"))
}

/// Builds the `edge` binary and returns its path.
pub(crate) fn build_edge(root: &Path) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(cargo)
        .current_dir(root)
        .args(["build", "--quiet", "-p", "edge-cli", "--bin", "edge"])
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("building edge failed");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    Ok(target.join("debug/edge"))
}

pub(crate) fn run_edge(edge: &Path, root: &Path, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<()> {
    eprintln!("==> edge --root {} {}", root.display(), args.join(" "));
    let status = Command::new(edge)
        .arg("--root")
        .arg(root)
        .args(args)
        .envs(env.iter().copied())
        .status()
        .with_context(|| format!("cannot run {}", edge.display()))?;
    // Exit 3 is "done but degraded": the demo still stands.
    match status.code() {
        Some(0 | 3) => Ok(()),
        _ => bail!("edge {} exited with {status}", args.join(" ")),
    }
}
