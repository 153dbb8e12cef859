//! `cargo xtask release`: static `edge`/`edge-watchdog` binaries, templates, systemd unit
//! templates, installer and `SHA256SUMS` in the dist folder, plus the naive client image.
//!
//! Steps, each named in its error: check everything that can be checked cheaply (Rust target,
//! tarball, Dockerfile, templates, engine, base image, registry), build the binaries, assemble
//! the dist folder, build the image under a temporary tag, verify it, apply the final tags (all
//! or none), write `manifest.json`, then push if asked.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use clap::{Args, ValueEnum};
use edge_channels::image::{Images, RegistryCredentials};
use serde::Serialize;
use sha2::{Digest, Sha256};

mod dist;
mod elf;
mod naive;
mod naive_image;

/// Base image for real releases: the official naive binaries link glibc, which this image has.
const DEFAULT_BASE_IMAGE: &str = "gcr.io/distroless/cc-debian12:nonroot";

/// Raw flags of `cargo xtask release`.
#[derive(Debug, Args)]
pub(crate) struct ReleaseArgs {
    /// Expected release version; fails unless it is the workspace version (bump it in the root
    /// Cargo.toml, `[workspace.package] version`).
    #[arg(long, value_name = "V")]
    version: Option<String>,
    /// naiveproxy release tarball (`naiveproxy-v<ver>-linux-<x64|arm64>.tar.xz`, .tar.gz or .tar).
    #[arg(long, value_name = "PATH", env = "EDGE_NAIVE_TARBALL")]
    naive_tarball: PathBuf,
    /// Base image of the naive image; must already be on the engine (`scratch` always is).
    #[arg(long, value_name = "REF", default_value = DEFAULT_BASE_IMAGE)]
    base_image: String,
    /// Target architecture; defaults to this machine's.
    #[arg(long, value_enum)]
    arch: Option<Arch>,
    /// Owner prefix of the image, e.g. `registry.example/team` (tags go under it).
    #[arg(long, value_name = "PREFIX", env = "EDGE_IMAGE_OWNER", default_value = "")]
    owner: String,
    /// Push both image tags to the owner's registry (credentials from EDGE_REGISTRY_USER and
    /// EDGE_REGISTRY_PASSWORD, if set).
    #[arg(long)]
    push: bool,
    /// Dist folder; defaults to `target/dist`.
    #[arg(long, value_name = "DIR")]
    dist: Option<PathBuf>,
    /// Stack templates to ship; defaults to the partner edge's.
    #[arg(long, value_name = "DIR")]
    templates: Option<PathBuf>,
}

/// A release architecture, named as Docker names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Arch {
    /// x86-64.
    Amd64,
    /// AArch64.
    Arm64,
}

impl Arch {
    /// The architecture this xtask runs on, if releases exist for it.
    pub(crate) fn host() -> Option<Self> {
        match std::env::consts::ARCH {
            "x86_64" => Some(Self::Amd64),
            "aarch64" => Some(Self::Arm64),
            _ => None,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Amd64 => "amd64",
            Self::Arm64 => "arm64",
        }
    }

    /// naiveproxy's name for the architecture in its release names.
    pub(crate) fn naive_name(self) -> &'static str {
        match self {
            Self::Amd64 => "x64",
            Self::Arm64 => "arm64",
        }
    }

    pub(crate) fn rust_target(self) -> &'static str {
        match self {
            Self::Amd64 => "x86_64-unknown-linux-gnu",
            Self::Arm64 => "aarch64-unknown-linux-gnu",
        }
    }

    pub(crate) fn platform(self) -> &'static str {
        match self {
            Self::Amd64 => "linux/amd64",
            Self::Arm64 => "linux/arm64",
        }
    }

    pub(crate) fn elf_machine(self) -> u16 {
        match self {
            Self::Amd64 => elf::EM_X86_64,
            Self::Arm64 => elf::EM_AARCH64,
        }
    }
}

/// What `cargo metadata` says about the workspace.
#[derive(Debug, Clone)]
pub(crate) struct Workspace {
    pub(crate) root: PathBuf,
    pub(crate) target_dir: PathBuf,
    pub(crate) version: String,
    pub(crate) repository: String,
}

impl Workspace {
    fn load() -> Result<Self> {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let here = Path::new(env!("CARGO_MANIFEST_DIR"));
        let output = Command::new(cargo)
            .current_dir(here)
            .args(["metadata", "--no-deps", "--format-version", "1"])
            .output()
            .context("cannot run cargo metadata")?;
        ensure!(output.status.success(), "cargo metadata failed: {}", String::from_utf8_lossy(&output.stderr));
        let meta: serde_json::Value =
            serde_json::from_slice(&output.stdout).context("cargo metadata printed bad JSON")?;
        let text = |v: &serde_json::Value| v.as_str().map(str::to_string);
        let cli = meta["packages"]
            .as_array()
            .and_then(|packages| packages.iter().find(|p| p["name"] == "edge-cli"))
            .context("no edge-cli package in the workspace")?;
        Ok(Self {
            root: text(&meta["workspace_root"]).context("no workspace_root")?.into(),
            target_dir: text(&meta["target_directory"]).context("no target_directory")?.into(),
            version: text(&cli["version"]).context("edge-cli has no version")?,
            repository: text(&cli["repository"]).unwrap_or_default(),
        })
    }
}

/// Validated release settings.
#[derive(Debug, Clone)]
struct Config {
    ws: Workspace,
    arch: Arch,
    naive_tarball: PathBuf,
    base_image: String,
    owner: String,
    push: Option<Option<RegistryCredentials>>,
    dist: PathBuf,
    templates: PathBuf,
    dockerfile: PathBuf,
    mtime: u64,
}

impl Config {
    fn from_args(args: ReleaseArgs, ws: Workspace) -> Result<Self> {
        if let Some(wanted) = &args.version {
            ensure!(
                *wanted == ws.version,
                "--version {wanted} is not the workspace version {}; bump [workspace.package] \
                 version in {} (the one place it lives)",
                ws.version,
                ws.root.join("Cargo.toml").display()
            );
        }
        let arch = match args.arch.or_else(Arch::host) {
            Some(arch) => arch,
            None => bail!("no release architecture for {}; pass --arch", std::env::consts::ARCH),
        };
        naive_image::validate_owner(&args.owner)?;
        let push = if args.push {
            ensure!(
                !args.owner.is_empty(),
                "--push needs --owner (e.g. registry.example/team): the registry to push to"
            );
            let user = std::env::var("EDGE_REGISTRY_USER").ok();
            let password = std::env::var("EDGE_REGISTRY_PASSWORD").ok();
            Some(match (user, password) {
                (Some(username), Some(password)) => Some(RegistryCredentials { username, password }),
                (None, None) => None,
                _ => bail!("set both EDGE_REGISTRY_USER and EDGE_REGISTRY_PASSWORD, or neither"),
            })
        } else {
            None
        };
        let mtime = match std::env::var("SOURCE_DATE_EPOCH") {
            Ok(value) => value
                .trim()
                .parse()
                .with_context(|| format!("SOURCE_DATE_EPOCH={value:?} is not a number of seconds"))?,
            Err(_) => 0,
        };
        let cwd = std::env::current_dir().context("no current directory")?;
        Ok(Self {
            arch,
            naive_tarball: cwd.join(args.naive_tarball),
            base_image: args.base_image,
            owner: args.owner.trim_end_matches('/').to_string(),
            push,
            dist: args.dist.map_or_else(|| ws.target_dir.join("dist"), |d| cwd.join(d)),
            templates: args
                .templates
                .map_or_else(|| ws.root.join("crates/edge-core/stacks/partner-edge/templates"), |t| cwd.join(t)),
            dockerfile: ws.root.join("Dockerfile.naive"),
            mtime,
            ws,
        })
    }

    fn release_url(&self) -> String {
        let repository = if self.ws.repository.is_empty() {
            "https://example.invalid/edge"
        } else {
            self.ws.repository.trim_end_matches('/')
        };
        format!("{repository}/releases/download/v{}", self.ws.version)
    }
}

/// `dist/manifest.json`: every artifact with its checksum, and the image.
#[derive(Debug, Serialize)]
struct Manifest<'a> {
    name: &'static str,
    version: &'a str,
    arch: Arch,
    rust_target: &'static str,
    linkage: &'static str,
    artifacts: &'a [dist::Artifact],
    /// SHA-256 of `SHA256SUMS` (the manifest itself is outside it: image ids differ per build).
    sha256sums: String,
    images: Vec<ManifestImage<'a>>,
}

#[derive(Debug, Serialize)]
struct ManifestImage<'a> {
    repository: String,
    tags: &'a [String],
    id: &'a str,
    size: u64,
    user: &'a str,
    base_image: &'a str,
    entrypoint: [&'static str; 2],
    naive_version: &'a str,
    naive_tarball: NaiveTarball<'a>,
}

#[derive(Debug, Serialize)]
struct NaiveTarball<'a> {
    file: String,
    folder: &'a str,
    sha256: &'a str,
}

/// Runs one named step, printing its name and timing, and naming it in any error.
fn step<T>(name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    println!("==> {name}");
    let started = Instant::now();
    let result = f().with_context(|| format!("release step `{name}` failed"));
    if result.is_ok() {
        println!("    done in {:.1}s", started.elapsed().as_secs_f64());
    }
    result
}

/// Runs the release.
pub(crate) fn run(args: ReleaseArgs) -> Result<()> {
    let started = Instant::now();
    let config = step("read workspace", || Config::from_args(args, Workspace::load()?))?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let version = config.ws.version.as_str();
    let arch = config.arch;
    let tags = naive_image::final_tags(&config.owner, version, arch).to_vec();
    println!("    edge {version} for {} ({}); image {}", arch.as_str(), arch.rust_target(), tags.join(", "));

    // Cheap checks first: a wrong input fails in seconds, before any build or tag.
    step("check rust target", || check_rust_target(arch))?;
    let naive = step("read naive tarball", || naive::read_tarball(&config.naive_tarball, arch))?;
    let dockerfile = step("read Dockerfile.naive", || read_regular_file(&config.dockerfile))?;
    step("check templates", || dist::list_regular_files(&config.templates).map(|_| ()))?;
    let images = step("connect to docker", || Ok(runtime.block_on(Images::connect())?))?;
    step("check base image", || runtime.block_on(naive_image::check_base_image(&images, &config.base_image)))?;
    if config.push.is_some() {
        step("check registry", || naive_image::check_registry_answers(&config.owner))?;
    }

    let binaries = step("build binaries", || {
        let binaries = dist::build_binaries(&config.ws, arch)?;
        dist::check_binary(&binaries.edge, arch, version)?;
        dist::check_binary(&binaries.watchdog, arch, version)?;
        Ok(binaries)
    })?;
    let staging = step("prepare dist folder", || dist::prepare_staging(&config.dist))?;
    let release_url = config.release_url();
    let artifacts = step("assemble dist", || {
        dist::assemble(
            &staging,
            &dist::DistInputs {
                version,
                arch,
                binaries: &binaries,
                templates_dir: &config.templates,
                release_url: &release_url,
            },
        )
    })?;

    let inputs = naive_image::ImageInputs {
        dockerfile: &dockerfile,
        naive: &naive,
        base_image: &config.base_image,
        version,
        arch,
        mtime: config.mtime,
    };
    let temp_tag = step("build image", || runtime.block_on(naive_image::build(&images, &inputs)))?;
    let verified = step("verify image", || {
        runtime.block_on(naive_image::verify(&images, &temp_tag, arch, naive.version.as_deref()))
    });
    let verified = match verified {
        Ok(verified) => verified,
        Err(e) => {
            runtime.block_on(naive_image::discard(&images, &temp_tag));
            return Err(e);
        }
    };
    let tagged = step("tag image", || runtime.block_on(naive_image::apply_tags(&images, &verified.id, &tags)));
    runtime.block_on(naive_image::discard(&images, &temp_tag));
    tagged?;

    step("write manifest", || {
        let sums = std::fs::read(staging.join("SHA256SUMS")).context("cannot read SHA256SUMS")?;
        let manifest = Manifest {
            name: "edge",
            version,
            arch,
            rust_target: arch.rust_target(),
            linkage: "static",
            artifacts: &artifacts,
            sha256sums: hex::encode(Sha256::digest(&sums)),
            images: vec![ManifestImage {
                repository: naive_image::repository(&config.owner),
                tags: &tags,
                id: &verified.id,
                size: verified.size,
                user: &verified.user,
                base_image: &config.base_image,
                entrypoint: naive_image::ENTRYPOINT,
                naive_version: &verified.naive_version,
                naive_tarball: NaiveTarball {
                    file: config
                        .naive_tarball
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    folder: &naive.folder,
                    sha256: &naive.tarball_sha256,
                },
            }],
        };
        let mut json = serde_json::to_string_pretty(&manifest)?;
        json.push('\n');
        let path = staging.join("manifest.json");
        std::fs::write(&path, json).with_context(|| format!("cannot write {}", path.display()))?;
        dist::publish(&staging, &config.dist)
    })?;

    if let Some(credentials) = &config.push {
        step("push image", || runtime.block_on(naive_image::push(&images, &tags, credentials.as_ref())))?;
    }

    println!(
        "release {version} ({}) done in {:.0}s: {} ({} files, SHA256SUMS); image {} ({:.1} MB, naive {})",
        arch.as_str(),
        started.elapsed().as_secs_f64(),
        config.dist.display(),
        artifacts.len(),
        tags.join(", "),
        verified.size as f64 / 1e6,
        verified.naive_version
    );
    Ok(())
}

/// The standard library for `arch` must be installed (rustup or a distro toolchain).
fn check_rust_target(arch: Arch) -> Result<()> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let output =
        Command::new(rustc).args(["--print", "sysroot"]).output().context("cannot run rustc --print sysroot")?;
    ensure!(output.status.success(), "rustc --print sysroot failed");
    let sysroot = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    let lib = sysroot.join("lib/rustlib").join(arch.rust_target()).join("lib");
    ensure!(
        lib.is_dir(),
        "the Rust target {target} is not installed, so the {arch} binaries cannot be built here; \
         run `rustup target add {target}` (and install a linker for it) or release --arch {host}",
        target = arch.rust_target(),
        arch = arch.as_str(),
        host = Arch::host().unwrap_or(Arch::Amd64).as_str()
    );
    Ok(())
}

fn read_regular_file(path: &Path) -> Result<Vec<u8>> {
    let meta = std::fs::symlink_metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    ensure!(meta.is_file(), "{} is not a regular file (symlinks are not followed)", path.display());
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arch_names() {
        fn check(arch: Arch, expected: [&str; 4]) {
            assert_eq!([arch.as_str(), arch.naive_name(), arch.rust_target(), arch.platform()], expected);
        }
        check(Arch::Amd64, ["amd64", "x64", "x86_64-unknown-linux-gnu", "linux/amd64"]);
        check(Arch::Arm64, ["arm64", "arm64", "aarch64-unknown-linux-gnu", "linux/arm64"]);
        assert_eq!(Arch::Amd64.elf_machine(), elf::EM_X86_64);
        assert_eq!(Arch::Arm64.elf_machine(), elf::EM_AARCH64);
    }

    #[test]
    fn arch_values_on_the_command_line() {
        assert_eq!(Arch::from_str("amd64", false), Ok(Arch::Amd64));
        assert_eq!(Arch::from_str("arm64", false), Ok(Arch::Arm64));
        assert!(Arch::from_str("x64", false).is_err());
    }

    #[test]
    fn the_host_target_is_installed() {
        let host = Arch::host().unwrap();
        check_rust_target(host).unwrap();
    }

    #[test]
    fn a_missing_target_is_a_clear_error() {
        // Only the host target is installed here; where arm64 is installed too, the check passes.
        if let Err(e) = check_rust_target(Arch::Arm64) {
            let message = format!("{e:#}");
            assert!(message.contains("rustup target add aarch64-unknown-linux-gnu"), "{message}");
        }
    }

    #[test]
    fn workspace_version_is_the_crate_version() {
        let ws = Workspace::load().unwrap();
        assert_eq!(ws.version, env!("CARGO_PKG_VERSION"));
        assert!(ws.root.join("Dockerfile.naive").is_file());
    }
}
