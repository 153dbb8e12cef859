//! The app-sqlite stack for tests and the demo: the `edge-sqlite-app` images (the static app
//! `FROM scratch`, a bad release of it whose `/api/rows` fails and one that never gets ready)
//! and test copies of `examples/app-sqlite` with their own names and loopback port, removed
//! when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use edge_channels::image::{BuildContext, Images};
use edge_core::StackBundle;

use crate::docker::{CADDY_IMAGE, docker_out, ensure_image, ensure_local_images, free_port, workspace_root};

/// The app image.
pub const SQLITE_APP_IMAGE: &str = "edge-sqlite-app:dev";
/// A bad release of the app: healthy, but `/api/rows` answers 500 (`APP_FAIL=rows`).
pub const SQLITE_APP_BAD_IMAGE: &str = "edge-sqlite-app:bad";
/// The same app as [`SQLITE_APP_IMAGE`] under a second tag: a new release that works.
pub const SQLITE_APP_NEXT_IMAGE: &str = "edge-sqlite-app:next";
/// A release that never gets ready: `/api/health` answers 503 (`APP_FAIL=health`).
pub const SQLITE_APP_UNREADY_IMAGE: &str = "edge-sqlite-app:unready";

/// Builds the static app binary (`x86_64-unknown-linux-gnu`, crt-static, SQLite bundled).
pub fn build_sqlite_app_binary() -> anyhow::Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let root = workspace_root();
    let out = Command::new(cargo)
        .current_dir(&root)
        .args(["build", "--quiet", "--target", "x86_64-unknown-linux-gnu", "-p", "edge-sqlite-app"])
        .env("RUSTFLAGS", "-C target-feature=+crt-static -C strip=symbols")
        .output()
        .context("cannot run cargo")?;
    if !out.status.success() {
        bail!("building edge-sqlite-app failed:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    let target_dir = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    Ok(target_dir.join("x86_64-unknown-linux-gnu/debug/edge-sqlite-app"))
}

/// The app's build context; `env` lines go into the image (a bad release sets `APP_FAIL`). It is
/// killed at once on stop (no signal handling as PID 1); a commit is durable in the WAL by then.
pub fn sqlite_app_context(binary: &Path, env: &str) -> anyhow::Result<BuildContext> {
    let mut context = BuildContext::new();
    let bytes = std::fs::read(binary).with_context(|| format!("cannot read {}", binary.display()))?;
    context.add_file("edge-sqlite-app", bytes, 0o755)?;
    context.add_file("empty", Vec::new(), 0o644)?;
    let dockerfile = format!(
        "FROM scratch\nCOPY edge-sqlite-app /usr/bin/edge-sqlite-app\nCOPY empty /data/.keep\n{env}STOPSIGNAL SIGKILL\nEXPOSE 8080\nENTRYPOINT [\"/usr/bin/edge-sqlite-app\"]\n"
    );
    context.add_file("Dockerfile", dockerfile.into_bytes(), 0o644)?;
    Ok(context)
}

/// Builds the app images (good, next, bad and unready) and the local Caddy, each once per content.
pub async fn ensure_sqlite_app_images() -> anyhow::Result<()> {
    ensure_local_images().await?;
    let binary = tokio::task::spawn_blocking(build_sqlite_app_binary).await.context("building the app")??;
    let images = Images::connect().await?;
    ensure_image(&images, SQLITE_APP_IMAGE, &sqlite_app_context(&binary, "")?).await?;
    ensure_image(&images, SQLITE_APP_NEXT_IMAGE, &sqlite_app_context(&binary, "ENV APP_RELEASE=next\n")?).await?;
    ensure_image(&images, SQLITE_APP_BAD_IMAGE, &sqlite_app_context(&binary, "ENV APP_FAIL=rows\n")?).await?;
    ensure_image(&images, SQLITE_APP_UNREADY_IMAGE, &sqlite_app_context(&binary, "ENV APP_FAIL=health\n")?).await?;
    Ok(())
}

/// The `--images` value that runs app-sqlite on the local images (recorded by install, so a
/// rollout or rollback keeps Caddy's).
pub fn sqlite_app_images() -> String {
    format!("app={SQLITE_APP_IMAGE},caddy={CADDY_IMAGE}")
}

/// A copy of `examples/app-sqlite` named `edge-it-TAG-PID` (containers, network, volumes), on a
/// free loopback port, with a root dir. Dropping it removes its containers, network and volumes.
pub struct SqliteStack {
    /// Stack name and name prefix.
    pub name: String,
    /// Caddy's published loopback port.
    pub port: u16,
    dir: tempfile::TempDir,
    root: tempfile::TempDir,
}

impl SqliteStack {
    /// A fresh copy.
    pub fn new(tag: &str) -> anyhow::Result<Self> {
        let name = format!("edge-it-{tag}-{}", std::process::id());
        let port = free_port();
        let source = workspace_root().join("examples/app-sqlite");
        let bundle = StackBundle::load(&source)?;
        let mut stack = bundle.stack.clone();
        let rename = |s: &str| s.replace("app-sqlite", &name);
        stack.stack.name = name.clone();
        stack.stack.compose_project = name.clone();
        stack.stack.network = name.clone();
        stack.volumes = stack.volumes.iter().map(|v| rename(v)).collect();
        for s in &mut stack.services {
            s.container = rename(&s.container);
            for v in &mut s.volumes {
                v.source = rename(&v.source);
            }
        }
        for b in &mut stack.backups {
            b.volume = rename(&b.volume);
        }
        stack.variables.insert("HTTP_PORT".to_owned(), port.to_string());
        let dir = tempfile::Builder::new().prefix("edge-stack-").tempdir()?;
        std::fs::create_dir_all(dir.path().join("templates"))?;
        std::fs::write(dir.path().join("stack.toml"), stack.to_toml())?;
        for (file, text) in bundle.template_sources() {
            std::fs::write(dir.path().join("templates").join(file), text)?;
        }
        let root = tempfile::Builder::new().prefix("edge-root-").tempdir()?;
        Ok(Self { name, port, dir, root })
    }

    /// The stack folder (`--stack`).
    pub fn stack_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The root prefix (`--root`).
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// `edge_bin --root ROOT --stack DIR`.
    pub fn command(&self, edge_bin: &Path) -> Command {
        let mut cmd = Command::new(edge_bin);
        cmd.arg("--root").arg(self.root()).arg("--stack").arg(self.stack_dir());
        cmd.env_remove("EDGE_ROOT").env_remove("EDGE_STACK").env_remove("DOCKER_HOST");
        cmd
    }

    /// Appends `toml` (e.g. a `[[smoke]]` entry) to the copy's `stack.toml`; the next command
    /// reads it.
    pub fn append_manifest(&self, toml: &str) -> anyhow::Result<()> {
        let path = self.dir.path().join("stack.toml");
        let text = std::fs::read_to_string(&path)? + "\n" + toml;
        std::fs::write(&path, text)?;
        Ok(())
    }

    /// The app's URL base through Caddy.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for SqliteStack {
    fn drop(&mut self) {
        let ids = docker_out(&["ps", "-aq", "--filter", &format!("label=edge.stack={}", self.name)]);
        let mut args = vec!["rm", "-f"];
        args.extend(ids.split_whitespace());
        if args.len() > 2 {
            docker_out(&args);
        }
        docker_out(&["network", "rm", &self.name]);
        for v in ["data", "caddy-data", "caddy-config"] {
            docker_out(&["volume", "rm", "-f", &format!("{}-{v}", self.name)]);
        }
    }
}
