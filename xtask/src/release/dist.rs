//! The dist folder: static release binaries, the stack's templates, its systemd unit templates,
//! the checksum-verifying installer, and `SHA256SUMS` over all of them.
//!
//! The folder is assembled in a `<dist>.partial` sibling and renamed into place at the end, so a
//! failed release never leaves a dist folder that looks complete.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{Arch, Workspace, elf};

/// The installer, with `@VERSION@` and `@RELEASE_URL@` filled in at release time.
const INSTALL_SH: &str = include_str!("install.sh");

/// Endings (after `.tera` is dropped) that make a template a systemd unit.
const UNIT_SUFFIXES: [&str; 5] = [".service", ".timer", ".socket", ".path", ".target"];

/// What an artifact is for, as the manifest says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum ArtifactKind {
    /// `edge` or `edge-watchdog`.
    Binary,
    /// A template of the stack (including unit templates, so `--tpl` gets the whole folder).
    Template,
    /// A systemd unit template, rendered by `edge install`.
    SystemdUnit,
    /// `install.sh`.
    Installer,
}

/// One file of the dist folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Artifact {
    /// Path relative to the dist folder, `/`-separated.
    pub(crate) path: String,
    /// What it is.
    pub(crate) kind: ArtifactKind,
    /// Hex SHA-256 of its bytes.
    pub(crate) sha256: String,
    /// Size in bytes.
    pub(crate) size: u64,
}

/// Where the freshly built binaries are.
#[derive(Debug, Clone)]
pub(crate) struct Binaries {
    pub(crate) edge: PathBuf,
    pub(crate) watchdog: PathBuf,
}

/// Builds `edge` and `edge-watchdog` in release mode, statically linked, for `arch`.
///
/// Paths are remapped so the binaries do not depend on where the checkout or cargo home lives.
pub(crate) fn build_binaries(ws: &Workspace, arch: Arch) -> Result<Binaries> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut rustflags = vec!["-C".to_string(), "target-feature=+crt-static".to_string()];
    rustflags.push(format!("--remap-path-prefix={}=/edge", ws.root.display()));
    if let Some(home) = cargo_home() {
        rustflags.push(format!("--remap-path-prefix={}=/cargo", home.display()));
    }
    let status = Command::new(&cargo)
        .current_dir(&ws.root)
        .args(["build", "--release", "--package", "edge-cli"])
        .args(["--bin", "edge", "--bin", "edge-watchdog"])
        .args(["--target", arch.rust_target()])
        // Encoded flags would win over RUSTFLAGS; the release decides its own flags.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env("RUSTFLAGS", rustflags.join(" "))
        .status()
        .with_context(|| format!("cannot run {}", Path::new(&cargo).display()))?;
    ensure!(status.success(), "cargo build --release for {} failed ({status})", arch.rust_target());
    let dir = ws.target_dir.join(arch.rust_target()).join("release");
    Ok(Binaries { edge: dir.join("edge"), watchdog: dir.join("edge-watchdog") })
}

fn cargo_home() -> Option<PathBuf> {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
}

/// Checks a built binary: right CPU, statically linked, and (on a matching host) that
/// `--version` prints `version`.
pub(crate) fn check_binary(path: &Path, arch: Arch, version: &str) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let info = elf::parse(&bytes).with_context(|| format!("{} is not an ELF executable", path.display()))?;
    ensure!(
        info.machine == arch.elf_machine(),
        "{} is built for {}, not {}",
        path.display(),
        elf::machine_name(info.machine),
        arch.as_str()
    );
    ensure!(info.is_static, "{} is dynamically linked; the release must be static (crt-static)", path.display());
    if Arch::host() == Some(arch) {
        let output = Command::new(path)
            .arg("--version")
            .output()
            .with_context(|| format!("cannot run {} --version", path.display()))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        ensure!(
            output.status.success() && stdout.contains(version),
            "{} --version printed {:?} ({}); expected the version {version}",
            path.display(),
            stdout.trim(),
            output.status
        );
    }
    Ok(())
}

/// What goes into the dist folder.
#[derive(Debug, Clone)]
pub(crate) struct DistInputs<'a> {
    pub(crate) version: &'a str,
    pub(crate) arch: Arch,
    pub(crate) binaries: &'a Binaries,
    pub(crate) templates_dir: &'a Path,
    pub(crate) release_url: &'a str,
}

/// Name of a release binary in the dist folder: `edge-0.1.0-amd64`.
pub(crate) fn binary_name(name: &str, version: &str, arch: Arch) -> String {
    format!("{name}-{version}-{}", arch.as_str())
}

/// Fills the (empty) `staging` folder and writes `SHA256SUMS`; returns the artifacts, sorted.
pub(crate) fn assemble(staging: &Path, inputs: &DistInputs<'_>) -> Result<Vec<Artifact>> {
    let mut artifacts = Vec::new();
    let mut put = |path: String, kind: ArtifactKind, bytes: &[u8], mode: u32| -> Result<()> {
        let target = staging.join(&path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&target, bytes).with_context(|| format!("cannot write {}", target.display()))?;
        set_mode(&target, mode)?;
        artifacts.push(Artifact { path, kind, sha256: hex::encode(Sha256::digest(bytes)), size: bytes.len() as u64 });
        Ok(())
    };

    for (name, source) in [("edge", &inputs.binaries.edge), ("edge-watchdog", &inputs.binaries.watchdog)] {
        let bytes = std::fs::read(source).with_context(|| format!("cannot read {}", source.display()))?;
        put(binary_name(name, inputs.version, inputs.arch), ArtifactKind::Binary, &bytes, 0o755)?;
    }

    let templates = list_regular_files(inputs.templates_dir)?;
    ensure!(!templates.is_empty(), "no templates in {}", inputs.templates_dir.display());
    let mut units = 0;
    for relative in &templates {
        let bytes = std::fs::read(inputs.templates_dir.join(relative))
            .with_context(|| format!("cannot read template {relative}"))?;
        put(format!("templates/{relative}"), ArtifactKind::Template, &bytes, 0o644)?;
        if is_unit_template(relative) {
            let file_name = relative.rsplit('/').next().unwrap_or(relative);
            put(format!("systemd/{file_name}"), ArtifactKind::SystemdUnit, &bytes, 0o644)?;
            units += 1;
        }
    }
    ensure!(
        units > 0,
        "no systemd unit templates (*.service.tera, *.timer.tera) in {}",
        inputs.templates_dir.display()
    );

    let script = render_install_script(inputs.version, inputs.release_url);
    put("install.sh".into(), ArtifactKind::Installer, script.as_bytes(), 0o755)?;

    artifacts.sort_by(|a, b| a.path.cmp(&b.path));
    let sums = staging.join("SHA256SUMS");
    std::fs::write(&sums, sha256sums(&artifacts)).with_context(|| format!("cannot write {}", sums.display()))?;
    set_mode(&sums, 0o644)?;
    Ok(artifacts)
}

fn is_unit_template(relative: &str) -> bool {
    let name = relative.strip_suffix(".tera").unwrap_or(relative);
    UNIT_SUFFIXES.iter().any(|suffix| name.ends_with(suffix))
}

/// `SHA256SUMS` in the format `sha256sum -c` reads: `<hex>  <path>` per line, sorted by path.
pub(crate) fn sha256sums(artifacts: &[Artifact]) -> String {
    let mut sorted: Vec<&Artifact> = artifacts.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    sorted.iter().map(|a| format!("{}  {}\n", a.sha256, a.path)).collect()
}

/// The installer with this release's version and download location baked in.
pub(crate) fn render_install_script(version: &str, release_url: &str) -> String {
    INSTALL_SH.replace("@VERSION@", version).replace("@RELEASE_URL@", release_url.trim_end_matches('/'))
}

/// Regular files under `dir`, as sorted `/`-separated relative paths. Symlinks are refused, not
/// followed, so the dist holds exactly what is in the tree.
pub(crate) fn list_regular_files(dir: &Path) -> Result<Vec<String>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
        let entries = std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
            let path = entry.path();
            let kind = entry.file_type().with_context(|| format!("cannot stat {}", path.display()))?;
            if kind.is_symlink() {
                bail!("{} is a symlink; the release does not follow symlinks", path.display());
            } else if kind.is_dir() {
                walk(root, &path, out)?;
            } else if kind.is_file() {
                let relative = path.strip_prefix(root).unwrap_or(&path);
                let parts: Vec<String> =
                    relative.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
                out.push(parts.join("/"));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    out.sort();
    Ok(out)
}

/// Prepares an empty `<dist>.partial` folder next to `dist`, after checking that `dist` is either
/// absent or a previous release (so a mistyped `--dist` never wipes a folder of other files).
pub(crate) fn prepare_staging(dist: &Path) -> Result<PathBuf> {
    if dist.exists() {
        let is_release = dist.join("SHA256SUMS").is_file() || dist.join("manifest.json").is_file();
        let is_empty =
            std::fs::read_dir(dist).with_context(|| format!("cannot list {}", dist.display()))?.next().is_none();
        ensure!(
            is_release || is_empty,
            "{} exists and is not a previous release (no SHA256SUMS); remove it or choose another --dist",
            dist.display()
        );
    }
    let staging = staging_path(dist);
    if staging.exists() {
        std::fs::remove_dir_all(&staging).with_context(|| format!("cannot remove {}", staging.display()))?;
    }
    std::fs::create_dir_all(&staging).with_context(|| format!("cannot create {}", staging.display()))?;
    Ok(staging)
}

fn staging_path(dist: &Path) -> PathBuf {
    let mut name = dist.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    dist.with_file_name(name)
}

/// Replaces `dist` with the finished `staging` folder.
pub(crate) fn publish(staging: &Path, dist: &Path) -> Result<()> {
    if dist.exists() {
        std::fs::remove_dir_all(dist).with_context(|| format!("cannot remove the old {}", dist.display()))?;
    }
    std::fs::rename(staging, dist).with_context(|| format!("cannot move {} to {}", staging.display(), dist.display()))
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot chmod {}", path.display()))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, bytes: &[u8]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    /// A fake build output and template tree in `dir`.
    fn inputs_in(dir: &Path) -> (Binaries, PathBuf) {
        let binaries = Binaries { edge: dir.join("bin/edge"), watchdog: dir.join("bin/edge-watchdog") };
        write(&binaries.edge, b"edge binary");
        write(&binaries.watchdog, b"watchdog binary");
        let templates = dir.join("templates");
        write(&templates.join("Caddyfile.tera"), b"{{ CADDY_SITE }}");
        write(&templates.join("edge-watchdog.service.tera"), b"[Service]");
        write(&templates.join("edge-watchdog.timer.tera"), b"[Timer]");
        write(&templates.join("extra/naive-client.json.tera"), b"{}");
        (binaries, templates)
    }

    fn assemble_into(dir: &Path, staging: &Path) -> Vec<Artifact> {
        let (binaries, templates) = inputs_in(dir);
        std::fs::create_dir_all(staging).unwrap();
        assemble(
            staging,
            &DistInputs {
                version: "1.2.3",
                arch: Arch::Amd64,
                binaries: &binaries,
                templates_dir: &templates,
                release_url: "https://example.invalid/edge/releases/download/v1.2.3/",
            },
        )
        .unwrap()
    }

    #[test]
    fn dist_layout_and_checksums() {
        let dir = tempfile::tempdir().unwrap();
        let staging = dir.path().join("dist");
        let artifacts = assemble_into(dir.path(), &staging);
        let paths: Vec<(&str, ArtifactKind)> = artifacts.iter().map(|a| (a.path.as_str(), a.kind)).collect();
        assert_eq!(
            paths,
            vec![
                ("edge-1.2.3-amd64", ArtifactKind::Binary),
                ("edge-watchdog-1.2.3-amd64", ArtifactKind::Binary),
                ("install.sh", ArtifactKind::Installer),
                ("systemd/edge-watchdog.service.tera", ArtifactKind::SystemdUnit),
                ("systemd/edge-watchdog.timer.tera", ArtifactKind::SystemdUnit),
                ("templates/Caddyfile.tera", ArtifactKind::Template),
                ("templates/edge-watchdog.service.tera", ArtifactKind::Template),
                ("templates/edge-watchdog.timer.tera", ArtifactKind::Template),
                ("templates/extra/naive-client.json.tera", ArtifactKind::Template),
            ]
        );
        let sums = std::fs::read_to_string(staging.join("SHA256SUMS")).unwrap();
        assert_eq!(sums, sha256sums(&artifacts));
        assert_eq!(
            sums.lines().next().unwrap(),
            format!("{}  edge-1.2.3-amd64", hex::encode(Sha256::digest(b"edge binary")))
        );
        let status = Command::new("sha256sum")
            .args(["-c", "--strict", "--quiet", "SHA256SUMS"])
            .current_dir(&staging)
            .status()
            .unwrap();
        assert!(status.success());

        let script = std::fs::read_to_string(staging.join("install.sh")).unwrap();
        assert!(script.contains("version='1.2.3'"));
        assert!(script.contains("EDGE_RELEASE_URL:-https://example.invalid/edge/releases/download/v1.2.3}"));
        assert!(!script.contains('@'), "unfilled placeholder in install.sh");
    }

    #[test]
    fn assembling_twice_gives_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let first = assemble_into(dir.path(), &dir.path().join("a"));
        let second = assemble_into(dir.path(), &dir.path().join("b"));
        assert_eq!(first, second);
        assert_eq!(
            std::fs::read(dir.path().join("a/SHA256SUMS")).unwrap(),
            std::fs::read(dir.path().join("b/SHA256SUMS")).unwrap()
        );
    }

    #[cfg(unix)]
    #[test]
    fn symlinked_templates_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("outside"), b"secret");
        let templates = dir.path().join("templates");
        write(&templates.join("a.tera"), b"a");
        std::os::unix::fs::symlink(dir.path().join("outside"), templates.join("b.tera")).unwrap();
        let err = format!("{:#}", list_regular_files(&templates).unwrap_err());
        assert!(err.contains("is a symlink"), "{err}");
    }

    #[test]
    fn staging_refuses_to_wipe_a_foreign_folder() {
        let dir = tempfile::tempdir().unwrap();
        let dist = dir.path().join("dist");
        write(&dist.join("precious.txt"), b"keep me");
        let err = format!("{:#}", prepare_staging(&dist).unwrap_err());
        assert!(err.contains("is not a previous release"), "{err}");
        assert!(dist.join("precious.txt").exists());

        write(&dist.join("SHA256SUMS"), b"");
        let staging = prepare_staging(&dist).unwrap();
        assert_eq!(staging, dir.path().join("dist.partial"));
        write(&staging.join("SHA256SUMS"), b"new");
        publish(&staging, &dist).unwrap();
        assert_eq!(std::fs::read(dist.join("SHA256SUMS")).unwrap(), b"new");
        assert!(!dist.join("precious.txt").exists());
        assert!(!staging.exists());
    }

    #[test]
    fn unit_templates_are_recognised() {
        fn check(name: &str, expected: bool) {
            assert_eq!(is_unit_template(name), expected, "{name}");
        }
        check("edge-watchdog.service.tera", true);
        check("units/edge-watchdog.timer.tera", true);
        check("edge.service", true);
        check("Caddyfile.tera", false);
        check("docker-compose.yml.tera", false);
    }
}
