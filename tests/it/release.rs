//! `cargo xtask release` end to end against the real Docker engine: the dist folder, its
//! checksums and installer, the naive image and its tags, reproducibility, and clear failures.
//!
//! Cost: the release build of edge-cli happens once per test run (minutes on 2 cores); every
//! other `cargo xtask release` here finds it fresh and only copies, checksums and builds the
//! small image. The failure cases stop in the checks before any build.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_channels::image::{Images, unique_name};
use edge_tests::naive_tarball::NaiveTarball;

const NAIVE_VERSION: &str = "130.0.6723.40";
const IMAGE: &str = "partner-edge-naive";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

fn workspace_version() -> String {
    // The tests crate takes its version from the workspace, like edge-cli and xtask.
    env!("CARGO_PKG_VERSION").to_string()
}

/// Runs `cargo xtask release <args>` from the workspace root.
fn xtask_release(args: &[&str]) -> Output {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let started = Instant::now();
    let output = Command::new(cargo)
        .current_dir(workspace_root())
        .args(["xtask", "release"])
        .args(args)
        .env_remove("EDGE_IMAGE_OWNER")
        .env_remove("EDGE_NAIVE_TARBALL")
        .output()
        .expect("cargo runs");
    eprintln!("cargo xtask release {} took {:.1}s", args.join(" "), started.elapsed().as_secs_f64());
    output
}

fn text(output: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// One release run's inputs: a fake naiveproxy tarball and a unique owner prefix for the tags.
struct Fixture {
    dir: tempfile::TempDir,
    tarball: PathBuf,
    owner: String,
}

impl Fixture {
    fn new(tarball: NaiveTarball) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let tarball = tarball.write(dir.path()).expect("fake naiveproxy tarball");
        Self { dir, tarball, owner: unique_name("edge-release-test") }
    }

    fn dist(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn release(&self, dist: &str, extra: &[&str]) -> Output {
        let tarball = self.tarball.to_string_lossy().into_owned();
        let dist = self.dist(dist).to_string_lossy().into_owned();
        let mut args = vec!["--naive-tarball", &tarball, "--owner", &self.owner, "--dist", &dist];
        if !extra.contains(&"--base-image") {
            args.extend(["--base-image", "scratch"]);
        }
        args.extend(extra);
        xtask_release(&args)
    }

    fn repository(&self) -> String {
        format!("{}/{IMAGE}", self.owner)
    }

    fn tags(&self) -> [String; 2] {
        let version = workspace_version();
        [format!("{}:{version}-amd64", self.repository()), format!("{}:stable-amd64", self.repository())]
    }

    async fn tags_on_engine(&self, images: &Images) -> Vec<String> {
        images.tags_matching(&self.repository()).await.expect("list images")
    }

    async fn remove_tags(&self, images: &Images) {
        for tag in self.tags_on_engine(images).await {
            images.remove(&tag).await.expect("remove test tag");
        }
    }
}

fn sha256sum_check(dir: &Path) -> Output {
    Command::new("sha256sum").args(["-c", "--strict", "SHA256SUMS"]).current_dir(dir).output().expect("sha256sum runs")
}

fn manifest(dist: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dist.join("manifest.json")).expect("manifest.json");
    serde_json::from_str(&text).expect("manifest.json is JSON")
}

/// `path -> sha256` from SHA256SUMS.
fn sums(dist: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(dist.join("SHA256SUMS"))
        .expect("SHA256SUMS")
        .lines()
        .map(|line| {
            let (sum, path) = line.split_once("  ").expect("`<sum>  <path>` line");
            (path.to_string(), sum.to_string())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn release_builds_a_complete_dist_and_a_verified_image() {
    let fixture = Arc::new(Fixture::new(NaiveTarball::x64(NAIVE_VERSION)));
    let started = Instant::now();
    let output = fixture.release("dist", &["--version", &workspace_version(), "--arch", "amd64"]);
    eprintln!("release wall time {:.1}s", started.elapsed().as_secs_f64());
    let images = Images::connect().await.expect("docker engine");
    // The checks run in their own task so that a failed assertion still lets us remove the tags.
    let checks = tokio::spawn({
        let (fixture, images) = (Arc::clone(&fixture), images.clone());
        async move { check_release(&fixture, &output, &images).await }
    })
    .await;
    fixture.remove_tags(&images).await;
    if let Err(failure) = checks {
        std::panic::resume_unwind(failure.into_panic());
    }
}

async fn check_release(fixture: &Fixture, output: &Output, images: &Images) {
    assert!(output.status.success(), "release failed:\n{}", text(output));
    let version = workspace_version();
    let dist = fixture.dist("dist");

    // Dist folder complete, checksums verifiable by sha256sum.
    let sums = sums(&dist);
    for expected in [
        format!("edge-{version}-amd64"),
        format!("edge-watchdog-{version}-amd64"),
        "install.sh".to_string(),
        "systemd/edge-watchdog.service.tera".to_string(),
        "systemd/edge-watchdog.timer.tera".to_string(),
        "templates/Caddyfile.tera".to_string(),
    ] {
        assert!(sums.contains_key(&expected), "{expected} missing from SHA256SUMS: {sums:?}");
    }
    let templates = workspace_root().join("crates/edge-core/stacks/partner-edge/templates");
    for entry in std::fs::read_dir(&templates).expect("templates folder") {
        let name = entry.expect("entry").file_name().to_string_lossy().into_owned();
        assert!(sums.contains_key(&format!("templates/{name}")), "template {name} not shipped");
    }
    let check = sha256sum_check(&dist);
    assert!(check.status.success(), "sha256sum -c failed:\n{}", text(&check));
    assert!(!dist.with_file_name("dist.partial").exists(), "staging folder left behind");

    // The binaries run --version.
    for name in ["edge", "edge-watchdog"] {
        let binary = dist.join(format!("{name}-{version}-amd64"));
        let run = Command::new(&binary).arg("--version").output().expect("binary runs");
        let stdout = String::from_utf8_lossy(&run.stdout);
        assert!(run.status.success() && stdout.contains(&version), "{name} --version:\n{}", text(&run));
    }

    // The manifest lists every artifact with its checksum, and the image id.
    let manifest = manifest(&dist);
    assert_eq!(manifest["version"], version.as_str());
    let listed: BTreeMap<String, String> = manifest["artifacts"]
        .as_array()
        .expect("artifacts")
        .iter()
        .map(|a| (a["path"].as_str().unwrap().to_string(), a["sha256"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(listed, sums);
    let image = &manifest["images"][0];
    let image_id = image["id"].as_str().expect("image id").to_string();
    assert_eq!(image["naive_version"], NAIVE_VERSION);

    // The image: both tags, one id, small, non-root, the right entrypoint and port.
    let tags = fixture.tags();
    assert_eq!(fixture.tags_on_engine(images).await, tags.to_vec());
    for tag in &tags {
        let info = images.inspect(tag).await.expect("tag exists");
        assert_eq!(info.id, image_id, "{tag}");
        assert!(info.size < 50_000_000, "{tag} is {} bytes", info.size);
        assert!(info.runs_as_non_root(), "{tag} runs as {:?}", info.user);
        assert_eq!(info.entrypoint, vec!["naive", "/etc/naive/config.json"]);
        assert_eq!(info.exposed_ports, vec!["1080/tcp"]);
        assert_eq!(info.architecture, "amd64");
    }
    eprintln!("image {} is {} bytes", tags[0], images.inspect(&tags[0]).await.unwrap().size);

    // naive --version runs inside, and the process is not root.
    let timeout = Duration::from_secs(60);
    let run = images.run_to_completion(&tags[0], &["naive", "--version"], timeout).await.expect("run");
    assert_eq!((run.exit_code, run.stdout.trim()), (0, format!("naive {NAIVE_VERSION}").as_str()));
    let run = images.run_to_completion(&tags[0], &["naive", "--uid"], timeout).await.expect("run");
    assert_eq!((run.exit_code, run.stdout.trim()), (0, "65532"));

    check_installer(&dist, &version);
}

/// The installer verifies before it installs: from the dist folder, through a URL, and not at all
/// when a file was tampered with.
fn check_installer(dist: &Path, version: &str) {
    let work = tempfile::tempdir().expect("temp dir");
    let install = |prefix: &Path, how: Installer<'_>| -> Output {
        let mut command = Command::new("sh");
        command.env("EDGE_PREFIX", prefix).env_remove("EDGE_SHARE_DIR").current_dir(work.path());
        match how {
            Installer::Beside(dir) => {
                command.arg(dir.join("install.sh"));
            }
            Installer::Piped(url) => {
                let script = std::fs::File::open(dist.join("install.sh")).expect("install.sh");
                command.env("EDGE_RELEASE_URL", url).stdin(script);
            }
        }
        command.output().expect("sh runs")
    };

    // Run next to the release files.
    let prefix = work.path().join("beside");
    let run = install(&prefix, Installer::Beside(dist));
    assert!(run.status.success(), "install.sh failed:\n{}", text(&run));
    let edge = Command::new(prefix.join("bin/edge")).arg("--version").output().expect("installed edge");
    assert!(String::from_utf8_lossy(&edge.stdout).contains(version));
    assert!(prefix.join("bin/edge-watchdog").is_file());
    assert!(prefix.join("share/edge/systemd/edge-watchdog.timer.tera").is_file());
    assert!(prefix.join("share/edge/templates/Caddyfile.tera").is_file());

    // The one-liner: the script piped into sh downloads every file, here from a file:// URL.
    let prefix = work.path().join("piped");
    let run = install(&prefix, Installer::Piped(&format!("file://{}", dist.display())));
    assert!(run.status.success(), "piped install.sh failed:\n{}", text(&run));
    assert!(prefix.join("bin/edge").is_file());

    // Piped from a directory an attacker filled with a consistent fake release: the script
    // downloads from the URL and never installs what the current directory holds.
    let planted = work.path().join("planted");
    copy_tree(dist, &planted);
    let fake_edge = planted.join(format!("edge-{version}-{}", host_arch()));
    std::fs::write(&fake_edge, "#!/bin/sh\necho planted\n").expect("plant");
    let sums = std::fs::read_to_string(planted.join("SHA256SUMS")).expect("sums");
    let fake_sum = sha256_hex(&std::fs::read(&fake_edge).expect("planted file"));
    let sums: String = sums
        .lines()
        .map(|l| match l.split_once("  ") {
            Some((_, name)) if planted.join(name) == fake_edge => format!("{fake_sum}  {name}\n"),
            _ => format!("{l}\n"),
        })
        .collect();
    std::fs::write(planted.join("SHA256SUMS"), sums).expect("plant sums");
    let prefix = work.path().join("piped-in-planted");
    let script = std::fs::File::open(dist.join("install.sh")).expect("install.sh");
    let run = Command::new("sh")
        .env("EDGE_PREFIX", &prefix)
        .env("EDGE_RELEASE_URL", format!("file://{}", dist.display()))
        .current_dir(&planted)
        .stdin(script)
        .output()
        .expect("sh runs");
    assert!(run.status.success(), "piped install.sh failed:\n{}", text(&run));
    let edge = Command::new(prefix.join("bin/edge")).arg("--version").output().expect("installed edge");
    assert!(String::from_utf8_lossy(&edge.stdout).contains(version), "the planted edge was installed: {}", text(&edge));

    // A plain http:// release URL is refused before anything is fetched.
    let prefix = work.path().join("http");
    let run = install(&prefix, Installer::Piped("http://127.0.0.1:9/edge"));
    assert!(!run.status.success(), "an http:// release was accepted:\n{}", text(&run));
    assert!(
        String::from_utf8_lossy(&run.stderr).contains("refusing release URL http://127.0.0.1:9/edge"),
        "{}",
        text(&run)
    );
    assert!(!prefix.exists());

    // A tampered file: nothing is installed, and the message says why.
    let tampered = work.path().join("tampered");
    copy_tree(dist, &tampered);
    let template = tampered.join("templates/Caddyfile.tera");
    let mut bytes = std::fs::read(&template).expect("template");
    bytes.extend_from_slice(b"\n# injected\n");
    std::fs::write(&template, bytes).expect("tamper");
    let prefix = work.path().join("refused");
    let run = install(&prefix, Installer::Beside(&tampered));
    assert!(!run.status.success(), "tampered release installed:\n{}", text(&run));
    assert!(String::from_utf8_lossy(&run.stderr).contains("checksum mismatch"), "{}", text(&run));
    assert!(!prefix.exists(), "something was installed from a tampered release");
}

fn host_arch() -> &'static str {
    if cfg!(target_arch = "aarch64") { "arm64" } else { "amd64" }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

enum Installer<'a> {
    Beside(&'a Path),
    Piped(&'a str),
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn building_twice_from_the_same_inputs_gives_the_same_dist_checksums() {
    let fixture = Fixture::new(NaiveTarball::x64(NAIVE_VERSION));
    let first = fixture.release("first", &[]);
    let second = fixture.release("second", &[]);
    let images = Images::connect().await.expect("docker engine");
    fixture.remove_tags(&images).await;
    assert!(first.status.success(), "first release failed:\n{}", text(&first));
    assert!(second.status.success(), "second release failed:\n{}", text(&second));

    let (a, b) = (fixture.dist("first"), fixture.dist("second"));
    // Both runs build from the same checkout: cargo finds the second build fresh, so what is
    // compared here is everything the release itself adds (copies, installer, order, checksums).
    assert_eq!(
        std::fs::read_to_string(a.join("SHA256SUMS")).expect("first SHA256SUMS"),
        std::fs::read_to_string(b.join("SHA256SUMS")).expect("second SHA256SUMS")
    );
    // Every file, not just the list: the second dist verifies against the first one's sums.
    std::fs::copy(a.join("SHA256SUMS"), b.join("SHA256SUMS.first")).expect("copy sums");
    let check = Command::new("sha256sum")
        .args(["-c", "--strict", "SHA256SUMS.first"])
        .current_dir(&b)
        .output()
        .expect("sha256sum runs");
    assert!(check.status.success(), "{}", text(&check));
    assert_eq!(manifest(&a)["artifacts"], manifest(&b)["artifacts"]);
    assert_eq!(manifest(&a)["sha256sums"], manifest(&b)["sha256sums"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_inputs_fail_clearly_and_tag_nothing() {
    let images = Images::connect().await.expect("docker engine");

    async fn check(images: &Images, tarball: NaiveTarball, extra: &[&str], step: &str, message: &str) {
        let fixture = Fixture::new(tarball);
        let output = fixture.release("dist", extra);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "release succeeded:\n{}", text(&output));
        assert!(stderr.contains(&format!("release step `{step}` failed")), "step {step} not named:\n{stderr}");
        assert!(stderr.contains(message), "{message:?} not said:\n{stderr}");
        assert_eq!(fixture.tags_on_engine(images).await, Vec::<String>::new(), "a tag was created");
        assert!(!fixture.dist("dist").exists(), "a dist folder was left");
    }

    let no_binary = NaiveTarball { with_binary: false, ..NaiveTarball::x64(NAIVE_VERSION) };
    check(&images, no_binary, &[], "read naive tarball", "no naive binary in it").await;

    let arm64 = NaiveTarball { naive_arch: "arm64".to_string(), ..NaiveTarball::x64(NAIVE_VERSION) };
    check(&images, arm64, &["--arch", "amd64"], "read naive tarball", "linux-arm64 release but --arch amd64").await;

    let missing_base = unique_name("edge-release-test-missing-base");
    check(
        &images,
        NaiveTarball::x64(NAIVE_VERSION),
        &["--base-image", &format!("{missing_base}:1")],
        "check base image",
        "is not on the docker engine",
    )
    .await;

    check(
        &images,
        NaiveTarball::x64(NAIVE_VERSION),
        &["--version", "999.0.0"],
        "read workspace",
        "is not the workspace version",
    )
    .await;

    // Port 9 on loopback: no registry answers there, so nothing may be built or tagged.
    let fixture = Fixture::new(NaiveTarball::x64(NAIVE_VERSION));
    let output = {
        let tarball = fixture.tarball.to_string_lossy().into_owned();
        let dist = fixture.dist("dist").to_string_lossy().into_owned();
        let owner = format!("127.0.0.1:9/{}", fixture.owner);
        xtask_release(&[
            "--naive-tarball",
            &tarball,
            "--base-image",
            "scratch",
            "--owner",
            &owner,
            "--dist",
            &dist,
            "--push",
        ])
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "push without a registry succeeded:\n{}", text(&output));
    assert!(stderr.contains("release step `check registry` failed"), "{stderr}");
    assert!(stderr.contains("registry 127.0.0.1:9 does not answer"), "{stderr}");
    let tags = images.tags_matching(&format!("127.0.0.1:9/{}/{IMAGE}", fixture.owner)).await.expect("list");
    assert_eq!(tags, Vec::<String>::new());

    // arm64 binaries need the aarch64 standard library; where it is missing, say so first.
    let sysroot = Command::new("rustc").args(["--print", "sysroot"]).output().expect("rustc");
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    if !sysroot.join("lib/rustlib/aarch64-unknown-linux-gnu").exists() {
        let arm64 = NaiveTarball { naive_arch: "arm64".to_string(), ..NaiveTarball::x64(NAIVE_VERSION) };
        check(&images, arm64, &["--arch", "arm64"], "check rust target", "rustup target add aarch64-unknown-linux-gnu")
            .await;
    }
}
