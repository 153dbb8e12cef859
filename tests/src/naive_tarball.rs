//! A naiveproxy-shaped release tarball for release tests: `naiveproxy-v<ver>-linux-<arch>.tar.xz`
//! holding `naiveproxy-v<ver>-linux-<arch>/naive`, a small static binary built here with
//! `gcc -static` that answers `--version` like the real one (and `--uid`, to show its user).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, ensure};

/// The C source of the fake `naive`.
const FAKE_NAIVE_C: &str = r#"
#include <stdio.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--version") == 0) { printf("naive %s\n", NAIVE_VERSION); return 0; }
    if (argc > 1 && strcmp(argv[1], "--uid") == 0) { printf("%u\n", (unsigned) getuid()); return 0; }
    fprintf(stderr, "fake naive: only --version and --uid\n");
    return 2;
}
"#;

/// What to put in the tarball.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NaiveTarball {
    /// Upstream version the binary prints, e.g. `130.0.6723.40`.
    pub version: String,
    /// naiveproxy's arch name in the folder: `x64` or `arm64`.
    pub naive_arch: String,
    /// Whether the folder holds the `naive` binary at all.
    pub with_binary: bool,
}

impl NaiveTarball {
    /// A well-formed linux-x64 release of `version`.
    pub fn x64(version: &str) -> Self {
        Self { version: version.to_string(), naive_arch: "x64".to_string(), with_binary: true }
    }

    /// The top folder (and file stem): `naiveproxy-v<version>-1-linux-<arch>`.
    pub fn folder(&self) -> String {
        format!("naiveproxy-v{}-1-linux-{}", self.version, self.naive_arch)
    }

    /// Writes `<folder>.tar.xz` into `dir` and returns its path. The binary is compiled into `dir`.
    pub fn write(&self, dir: &Path) -> Result<PathBuf> {
        let folder = self.folder();
        let mut builder = tar::Builder::new(Vec::new());
        let mut add = |path: String, bytes: &[u8], mode: u32| -> Result<()> {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(mode);
            header.set_mtime(0);
            builder.append_data(&mut header, path, bytes).context("cannot append to the tarball")
        };
        if self.with_binary {
            let binary = fake_naive_binary(dir, &self.version)?;
            add(format!("{folder}/naive"), &binary, 0o755)?;
        }
        add(format!("{folder}/config.json"), br#"{"listen": "socks://127.0.0.1:1080"}"#, 0o644)?;
        add(format!("{folder}/USAGE.txt"), b"fake naiveproxy release for tests\n", 0o644)?;
        let tar = builder.into_inner().context("cannot finish the tarball")?;
        let mut xz = Vec::new();
        lzma_rs::xz_compress(&mut tar.as_slice(), &mut xz).context("cannot xz the tarball")?;
        let path = dir.join(format!("{folder}.tar.xz"));
        std::fs::write(&path, xz).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    }
}

/// Compiles the fake `naive` (static, stripped) into `dir` and returns its bytes.
pub fn fake_naive_binary(dir: &Path, version: &str) -> Result<Vec<u8>> {
    let source = dir.join("fake-naive.c");
    let binary = dir.join("fake-naive");
    std::fs::write(&source, FAKE_NAIVE_C).with_context(|| format!("cannot write {}", source.display()))?;
    let output = Command::new("gcc")
        .args(["-static", "-Os", "-s", "-o"])
        .arg(&binary)
        .arg(format!("-DNAIVE_VERSION=\"{version}\""))
        .arg(&source)
        .output()
        .context("cannot run gcc (apt-get install gcc libc6-dev)")?;
    ensure!(output.status.success(), "gcc -static failed: {}", String::from_utf8_lossy(&output.stderr));
    std::fs::read(&binary).with_context(|| format!("cannot read {}", binary.display()))
}
