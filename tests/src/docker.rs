//! Docker provisioning for tests and the demo: the local images (the static stand-in channel
//! server, Caddy from the current static binary, coturn from Debian's) built once and cached by a content hash, and test
//! copies of the partner-edge stack with their own names and free ports so that deploy tests
//! run side by side; each copy removes its containers, network and volumes when dropped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context, bail};
use edge_channels::image::{BuildContext, BuildRequest, Images};
use edge_core::StackBundle;
use sha2::Digest;

/// The stand-in channel server image.
pub const STANDIN_IMAGE: &str = "edge-standin:dev";
/// The stand-in whose `/api/health` always answers 503.
pub const STANDIN_UNHEALTHY_IMAGE: &str = "edge-standin:unhealthy";
/// Caddy, packaged from the current Caddy binary (2.11, [`crate::caddy::Caddy::Current`]).
pub const CADDY_IMAGE: &str = "edge-caddy:2.11";
/// coturn, packaged from the host's `/usr/bin/turnserver` (Debian's `coturn`).
pub const COTURN_IMAGE: &str = "edge-coturn:dev";
/// Label holding the hash of an image's build context: an image whose label matches is reused.
pub const CONTEXT_HASH_LABEL: &str = "edge.test.context-hash";

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
}

/// The engine's version, or why `docker info` failed.
pub fn docker_version() -> Result<String, String> {
    match Command::new("docker").args(["info", "--format", "{{.ServerVersion}}"]).output() {
        Ok(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).trim().to_owned()),
        Ok(o) => Err(format!("`docker info` failed: {}", String::from_utf8_lossy(&o.stderr).trim())),
        Err(e) => Err(format!("the docker CLI cannot run: {e}")),
    }
}

/// Panics with a clear message unless the Docker engine answers: tests that need it must fail
/// loudly, never skip.
pub fn require_docker() {
    if let Err(e) = docker_version() {
        panic!("this test needs the Docker engine and {e}; start dockerd (cargo xtask test does)");
    }
}

/// Builds the static stand-in binary (`x86_64-unknown-linux-gnu`, crt-static) and returns its path.
pub fn build_standin_binary() -> anyhow::Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let root = workspace_root();
    let out = Command::new(cargo)
        .current_dir(&root)
        .args(["build", "--quiet", "--target", "x86_64-unknown-linux-gnu", "-p", "edge-standin"])
        .env("RUSTFLAGS", "-C target-feature=+crt-static -C strip=symbols")
        .output()
        .context("cannot run cargo")?;
    if !out.status.success() {
        bail!("building the stand-in failed:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    let target_dir = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    Ok(target_dir.join("x86_64-unknown-linux-gnu/debug/edge-standin"))
}

/// Builds an image from `context` unless one tagged `tag` already carries the context's hash.
/// Returns whether it built.
pub async fn ensure_image(images: &Images, tag: &str, context: &BuildContext) -> anyhow::Result<bool> {
    let hash = hex::encode(sha2::Sha256::digest(context.to_tar()?));
    if let Ok(info) = images.inspect(tag).await
        && info.labels.get(CONTEXT_HASH_LABEL) == Some(&hash)
    {
        return Ok(false);
    }
    let mut request = BuildRequest::new(tag);
    request.labels.insert(CONTEXT_HASH_LABEL.to_owned(), hash);
    images.build_image(context, &request).await.with_context(|| format!("building {tag}"))?;
    Ok(true)
}

/// The stand-in's build context: the binary, a copy at `/usr/bin/wget` for health checks,
/// killed at once on stop (it has no signal handling as PID 1).
pub fn standin_context(binary: &Path, healthy: bool) -> anyhow::Result<BuildContext> {
    standin_context_marked(binary, healthy, None)
}

/// The stand-in's context; with a `marker`, its first layer is a file holding the marker (see
/// [`marker_layer`]).
pub fn standin_context_marked(binary: &Path, healthy: bool, marker: Option<&str>) -> anyhow::Result<BuildContext> {
    let mut context = BuildContext::new();
    let first = marker_layer(&mut context, marker)?;
    let bytes = std::fs::read(binary).with_context(|| format!("cannot read {}", binary.display()))?;
    context.add_file("edge-standin", bytes, 0o755)?;
    let env = if healthy { "" } else { "ENV STANDIN_HEALTH=fail\n" };
    let dockerfile = format!(
        "FROM scratch\n{first}COPY edge-standin /usr/bin/edge-standin\nCOPY edge-standin /usr/bin/wget\n{env}STOPSIGNAL SIGKILL\nEXPOSE 3080\nENTRYPOINT [\"/usr/bin/edge-standin\"]\n"
    );
    context.add_file("Dockerfile", dockerfile.into_bytes(), 0o644)?;
    Ok(context)
}

/// Caddy's build context: a host binary and the shared libraries `ldd` lists for it (none for
/// the static current one), at the same paths, `FROM scratch`.
pub fn caddy_context(caddy: &Path) -> anyhow::Result<BuildContext> {
    caddy_context_marked(caddy, None)
}

/// Caddy's context; with a `marker`, its first layer is a file holding the marker (see
/// [`marker_layer`]).
pub fn caddy_context_marked(caddy: &Path, marker: Option<&str>) -> anyhow::Result<BuildContext> {
    let mut context = BuildContext::new();
    let first = marker_layer(&mut context, marker)?;
    let dockerfile = scratch_with_binary(&mut context, caddy, "/usr/bin/caddy")?;
    // The marker goes first so that every layer above it is unique to this image.
    let mut dockerfile = dockerfile.replacen("FROM scratch\n", &format!("FROM scratch\n{first}"), 1);
    context.add_file("empty", Vec::new(), 0o644)?;
    for dir in ["/config", "/data", "/tmp", "/etc/caddy"] {
        dockerfile.push_str(&format!("COPY empty {dir}/.keep\n"));
    }
    dockerfile.push_str("ENV XDG_CONFIG_HOME=/config XDG_DATA_HOME=/data HOME=/tmp\n");
    dockerfile
        .push_str("CMD [\"caddy\", \"run\", \"--config\", \"/etc/caddy/Caddyfile\", \"--adapter\", \"caddyfile\"]\n");
    context.add_file("Dockerfile", dockerfile.into_bytes(), 0o644)?;
    Ok(context)
}

/// coturn's build context: Debian's `turnserver` and its libraries, `FROM scratch`, shaped like
/// the coturn/coturn image where the stack relies on it: user `nobody:nogroup` (65534), the
/// state dir `/var/lib/coturn`, and arguments starting with `-` going to `turnserver` (the
/// image's entrypoint prepends it; here it is the entrypoint).
pub fn coturn_context(turnserver: &Path) -> anyhow::Result<BuildContext> {
    let mut context = BuildContext::new();
    let mut dockerfile = scratch_with_binary(&mut context, turnserver, "/usr/bin/turnserver")?;
    context.add_file("empty", Vec::new(), 0o644)?;
    for dir in ["/var/lib/coturn", "/etc/coturn", "/tmp"] {
        dockerfile.push_str(&format!("COPY empty {dir}/.keep\n"));
    }
    dockerfile.push_str("USER 65534:65534\nEXPOSE 3478/udp\nENTRYPOINT [\"/usr/bin/turnserver\"]\n");
    context.add_file("Dockerfile", dockerfile.into_bytes(), 0o644)?;
    Ok(context)
}

/// Adds a host binary at `target` and the shared libraries `ldd` lists for it, at the same
/// paths, to `context`; returns the Dockerfile so far (`FROM scratch` and the copies).
pub fn scratch_with_binary(context: &mut BuildContext, binary: &Path, target: &str) -> anyhow::Result<String> {
    let mut dockerfile = String::from("FROM scratch\n");
    let bytes = std::fs::read(binary).with_context(|| {
        format!("cannot read {}: install its Debian package (cargo xtask test does)", binary.display())
    })?;
    context.add_file("binary", bytes, 0o755)?;
    dockerfile.push_str(&format!("COPY binary {target}\n"));
    for (i, lib) in shared_libraries(binary)?.iter().enumerate() {
        // Symlinks are resolved: the image holds the library under the name the loader asks for.
        let bytes = std::fs::read(lib).with_context(|| format!("cannot read {}", lib.display()))?;
        let name = format!("lib{i}");
        context.add_file(&name, bytes, 0o755)?;
        dockerfile.push_str(&format!("COPY {name} {}\n", lib.display()));
    }
    Ok(dockerfile)
}

/// With a `marker`, adds a file holding it to `context` and returns the Dockerfile line that
/// copies it in. As the image's first layer it gives every layer above a new chain id, so the
/// engine shares none of them with another image and a pull downloads them all.
fn marker_layer(context: &mut BuildContext, marker: Option<&str>) -> anyhow::Result<String> {
    let Some(marker) = marker else { return Ok(String::new()) };
    context.add_file("edge-marker", marker.as_bytes().to_vec(), 0o644)?;
    Ok("COPY edge-marker /.edge-marker\n".to_owned())
}

/// The absolute library paths (and loader) `ldd` lists for a binary; empty for a static one.
pub fn shared_libraries(binary: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let out = Command::new("ldd").arg(binary).output().context("cannot run ldd")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut libs = Vec::new();
    for line in text.lines() {
        // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)` or `/lib64/ld-linux-x86-64.so.2 (0x…)`.
        let path = match line.split_once("=>") {
            Some((_, rhs)) => rhs.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            libs.push(PathBuf::from(p));
        }
    }
    Ok(libs)
}

/// Builds (or finds up to date) the stand-in images, the Caddy image and the coturn image.
/// Docker answers and the local images exist: built once per test process,
/// whichever test asks first, so parallel tests never build them twice.
pub fn provision_local_images() {
    require_docker();
    static IMAGES: OnceLock<Result<(), String>> = OnceLock::new();
    let built = IMAGES.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
        runtime.block_on(ensure_local_images()).map_err(|e| format!("{e:#}"))
    });
    if let Err(e) = built {
        panic!("cannot build the local test images: {e}");
    }
}

pub async fn ensure_local_images() -> anyhow::Result<()> {
    let binary = tokio::task::spawn_blocking(build_standin_binary).await.context("building the stand-in")??;
    let images = Images::connect().await?;
    ensure_image(&images, STANDIN_IMAGE, &standin_context(&binary, true)?).await?;
    ensure_image(&images, STANDIN_UNHEALTHY_IMAGE, &standin_context(&binary, false)?).await?;
    ensure_image(&images, CADDY_IMAGE, &caddy_context(&crate::caddy::Caddy::Current.bin()?)?).await?;
    ensure_image(&images, COTURN_IMAGE, &coturn_context(Path::new("/usr/bin/turnserver"))?).await?;
    Ok(())
}

/// `--images` overrides that run the partner edge on the local images.
pub fn partner_edge_images() -> String {
    let mut items = vec![format!("caddy={CADDY_IMAGE}"), format!("coturn={COTURN_IMAGE}")];
    for service in ["xray", "hysteria2", "naive", "sfu"] {
        items.push(format!("{service}={STANDIN_IMAGE}"));
    }
    items.join(",")
}

/// A free loopback port (TCP), by binding port 0.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

/// The ports a test stack uses, all on loopback.
#[derive(Debug, Clone, Copy)]
pub struct StackPorts {
    /// Caddy's admin and metrics endpoint.
    pub admin: u16,
    /// Caddy's site (plain HTTP).
    pub site: u16,
    /// xray's HTTP tunnel port.
    pub xray: u16,
    /// hysteria2's HTTP tunnel port.
    pub hysteria2: u16,
    /// naive's pool member: Caddy's listener that dials through naive's proxy.
    pub naive: u16,
    /// naive's local HTTP proxy listener.
    pub naive_proxy: u16,
    /// naive's SOCKS port.
    pub naive_socks: u16,
    /// coturn's UDP port.
    pub coturn: u16,
}

impl StackPorts {
    /// A free loopback port for each.
    pub fn free() -> Self {
        Self {
            admin: free_port(),
            site: free_port(),
            xray: free_port(),
            hysteria2: free_port(),
            naive: free_port(),
            naive_proxy: free_port(),
            naive_socks: free_port(),
            coturn: free_port(),
        }
    }
}

/// A copy of the partner edge with its own stack name, container names, network, volumes and
/// loopback ports, fast health checks (1 s), and a root dir. Dropping it removes everything
/// it may have created on the engine.
pub struct TestStack {
    /// Stack name, Compose project, network and container-name prefix.
    pub name: String,
    /// Its ports.
    pub ports: StackPorts,
    dir: tempfile::TempDir,
    root: tempfile::TempDir,
}

impl TestStack {
    /// A partner-edge copy named `edge-it-TAG-PID`.
    pub fn partner_edge(tag: &str) -> anyhow::Result<Self> {
        let name = format!("edge-it-{tag}-{}", std::process::id());
        let ports = StackPorts::free();
        let bundle = StackBundle::partner_edge();
        let mut stack = bundle.stack.clone();
        stack.stack.name = name.clone();
        stack.stack.compose_project = name.clone();
        stack.stack.network = name.clone();
        let rename = |s: &str| s.replace("oxpulse-partner", &name);
        stack.volumes = stack.volumes.iter().map(|v| rename(v)).collect();
        for s in &mut stack.services {
            s.container = rename(&s.container);
            for v in &mut s.volumes {
                v.source = rename(&v.source);
            }
            if let Some(h) = &mut s.healthcheck {
                h.interval_secs = 1;
                h.timeout_secs = 2;
                h.retries = 2;
            }
            for p in &mut s.ports {
                if p.protocol == "udp" {
                    p.host = ports.coturn.to_string();
                    p.host_ip = Some("127.0.0.1".to_owned());
                }
            }
        }
        let vars: BTreeMap<&str, String> = BTreeMap::from([
            ("CADDY_ADMIN", format!("127.0.0.1:{}", ports.admin)),
            ("CADDY_SITE", format!("http://127.0.0.1:{}", ports.site)),
            ("CADDY_HEALTH_INTERVAL", "1s".to_owned()),
            ("CADDY_HEALTH_TIMEOUT", "1s".to_owned()),
            ("XRAY_HTTP_PORT", ports.xray.to_string()),
            ("HYSTERIA2_HTTP_PORT", ports.hysteria2.to_string()),
            ("NAIVE_HTTP_PORT", ports.naive.to_string()),
            ("NAIVE_PROXY_PORT", ports.naive_proxy.to_string()),
            ("NAIVE_SOCKS_PORT", ports.naive_socks.to_string()),
        ]);
        for (k, v) in vars {
            stack.variables.insert(k.to_owned(), v);
        }
        let dir = tempfile::Builder::new().prefix("edge-stack-").tempdir()?;
        std::fs::create_dir_all(dir.path().join("templates"))?;
        std::fs::write(dir.path().join("stack.toml"), stack.to_toml())?;
        for (file, source) in bundle.template_sources() {
            std::fs::write(dir.path().join("templates").join(file), source)?;
        }
        let root = tempfile::Builder::new().prefix("edge-root-").tempdir()?;
        Ok(Self { name, ports, dir, root })
    }

    /// A copy of `examples/EXAMPLE` named `edge-it-TAG-PID`: every `EXAMPLE` in its manifest
    /// (name, network, containers, volumes) becomes that name, then `edit` changes the text.
    pub fn example(tag: &str, example: &str, edit: impl FnOnce(&str, String) -> String) -> anyhow::Result<Self> {
        let name = format!("edge-it-{tag}-{}", std::process::id());
        let ports = StackPorts::free();
        let source = workspace_root().join("examples").join(example);
        let manifest = std::fs::read_to_string(source.join("stack.toml"))?;
        let dir = tempfile::Builder::new().prefix("edge-stack-").tempdir()?;
        std::fs::create_dir_all(dir.path().join("templates"))?;
        std::fs::write(dir.path().join("stack.toml"), edit(&name, manifest.replace(example, &name)))?;
        for entry in std::fs::read_dir(source.join("templates"))? {
            let entry = entry?;
            std::fs::copy(entry.path(), dir.path().join("templates").join(entry.file_name()))?;
        }
        let root = tempfile::Builder::new().prefix("edge-root-").tempdir()?;
        Ok(Self { name, ports, dir, root })
    }

    /// The stack folder (`--stack`).
    pub fn stack_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The root prefix (`--root`).
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// The stack as loaded from its folder.
    pub fn bundle(&self) -> anyhow::Result<StackBundle> {
        Ok(StackBundle::load(self.stack_dir())?)
    }

    /// A file of the stack's config dir under the root (`docker-compose.yml`, `Caddyfile`).
    pub fn config_file(&self, name: &str) -> anyhow::Result<PathBuf> {
        let bundle = self.bundle()?;
        Ok(edge_core::Paths::new(Some(self.root()), &bundle.stack.stack).config_file(name))
    }

    /// A container name of this stack, from the partner edge's (`oxpulse-partner-naive`).
    pub fn container(&self, partner_edge_name: &str) -> String {
        partner_edge_name.replace("oxpulse-partner", &self.name)
    }

    /// `edge_bin --root ROOT --stack DIR`, with no channel credentials inherited.
    pub fn command(&self, edge_bin: &Path) -> Command {
        let mut cmd = Command::new(edge_bin);
        cmd.arg("--root").arg(self.root()).arg("--stack").arg(self.stack_dir());
        for (k, _) in std::env::vars() {
            if k.starts_with("HYSTERIA2_") || k.starts_with("NAIVE_") || k.starts_with("REALITY_") || k == "DOCKER_HOST"
            {
                cmd.env_remove(k);
            }
        }
        cmd.env_remove("EDGE_ROOT").env_remove("EDGE_STACK");
        cmd
    }

    /// Removes the stack's containers, network and volumes.
    pub fn cleanup(&self) {
        // Containers made by edge carry the stack label; those made by docker-compose only the project's.
        let mut ids = docker_out(&["ps", "-aq", "--filter", &format!("label=edge.stack={}", self.name)]);
        ids.push_str(&docker_out(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=com.docker.compose.project={}", self.name),
        ]));
        let mut ids: Vec<&str> = ids.split_whitespace().collect();
        ids.sort_unstable();
        ids.dedup();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(ids);
            docker_out(&args);
        }
        // The stack network and the channel clients' own networks all carry the stack label.
        let mut networks = docker_out(&["network", "ls", "-q", "--filter", &format!("label=edge.stack={}", self.name)]);
        networks.push_str(&docker_out(&[
            "network",
            "ls",
            "-q",
            "--filter",
            &format!("label=com.docker.compose.project={}", self.name),
        ]));
        let mut networks: Vec<&str> = networks.split_whitespace().collect();
        networks.sort_unstable();
        networks.dedup();
        for n in networks {
            docker_out(&["network", "rm", n]);
        }
        docker_out(&["network", "rm", &self.name]);
        if let Ok(bundle) = self.bundle() {
            for v in &bundle.stack.volumes {
                docker_out(&["volume", "rm", "-f", v]);
            }
        }
    }
}

impl Drop for TestStack {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// Runs the docker CLI and returns its stdout ("" on failure).
pub fn docker_out(args: &[&str]) -> String {
    Command::new("docker")
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}
