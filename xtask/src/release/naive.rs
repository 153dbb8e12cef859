//! The naiveproxy release tarball: format detection, the `naive` binary inside it, arch checks.
//!
//! Real releases are `naiveproxy-v<version>-linux-<x64|arm64>.tar.xz` holding a top folder of the
//! same name with `naive` in it. `.tar.xz` (decoded in pure Rust by lzma-rs), `.tar.gz` and plain
//! `.tar` are accepted; the format is told by magic bytes, not by the file name.

use std::io::{Read, Write};
use std::path::{Component, Path};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use super::Arch;
use super::elf;

/// Decompressed tarballs larger than this are refused (a real release is ~30 MB).
const MAX_TAR_BYTES: u64 = 1 << 30;

/// The `naive` binary taken from a release tarball, with what is known about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NaiveRelease {
    /// The binary's bytes.
    pub(crate) binary: Vec<u8>,
    /// The folder holding `naive` in the tarball, e.g. `naiveproxy-v130.0.6723.40-1-linux-x64`.
    pub(crate) folder: String,
    /// The upstream version from the folder name (`130.0.6723.40`, release suffix dropped).
    pub(crate) version: Option<String>,
    /// SHA-256 of the tarball file.
    pub(crate) tarball_sha256: String,
}

/// What a naiveproxy folder name says: `naiveproxy-v<version>-<platform>-<arch>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FolderName {
    /// Version with its release suffix, e.g. `130.0.6723.40-1`.
    pub(crate) version: String,
    /// `Some(arch)` for a `-linux-<arch>` folder, `None` for any other platform.
    pub(crate) linux_arch: Option<String>,
}

/// Parses a naiveproxy release folder name; `None` if it does not have that shape at all.
pub(crate) fn parse_folder_name(name: &str) -> Option<FolderName> {
    let rest = name.strip_prefix("naiveproxy-v")?;
    match rest.rsplit_once("-linux-") {
        Some((version, arch)) if !version.is_empty() && !arch.is_empty() && !arch.contains('/') => {
            Some(FolderName { version: version.to_string(), linux_arch: Some(arch.to_string()) })
        }
        Some(_) => None,
        None => {
            // Another platform (openwrt, win, mac...): keep the version-looking prefix.
            let version = rest.split('-').next().unwrap_or_default();
            (!version.is_empty()).then(|| FolderName { version: version.to_string(), linux_arch: None })
        }
    }
}

/// Drops a release suffix: `130.0.6723.40-1` is naive `130.0.6723.40`.
pub(crate) fn upstream_version(version: &str) -> &str {
    match version.rsplit_once('-') {
        Some((upstream, suffix)) if !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_digit()) => upstream,
        _ => version,
    }
}

/// The first dotted number in `naive --version` output (`naive 130.0.6723.40` → `130.0.6723.40`).
pub(crate) fn parse_version_output(output: &str) -> Option<&str> {
    output
        .split(|c: char| c.is_whitespace() || c == ',' || c == '(' || c == ')')
        .map(|word| word.trim_start_matches('v'))
        .find(|word| {
            word.contains('.')
                && word.starts_with(|c: char| c.is_ascii_digit())
                && word.ends_with(|c: char| c.is_ascii_digit())
                && word.chars().all(|c| c.is_ascii_digit() || c == '.')
                && !word.contains("..")
        })
}

/// Reads the tarball at `path` and returns its `naive` binary, checked against `arch`.
pub(crate) fn read_tarball(path: &Path, arch: Arch) -> Result<NaiveRelease> {
    let meta = std::fs::symlink_metadata(path)
        .with_context(|| format!("cannot read naiveproxy tarball {}", path.display()))?;
    if !meta.is_file() {
        bail!("naiveproxy tarball {} is not a regular file", path.display());
    }
    let raw = std::fs::read(path).with_context(|| format!("cannot read naiveproxy tarball {}", path.display()))?;
    let tarball_sha256 = hex::encode(Sha256::digest(&raw));
    let tar = decompress(&raw).with_context(|| format!("{} is not a readable tarball", path.display()))?;
    let release = find_naive(&tar, arch).with_context(|| format!("naiveproxy tarball {}", path.display()))?;
    Ok(NaiveRelease { tarball_sha256, ..release })
}

fn decompress(raw: &[u8]) -> Result<Vec<u8>> {
    let mut out = CappedWriter::default();
    if raw.starts_with(&[0xFD, b'7', b'z', b'X', b'Z', 0x00]) {
        lzma_rs::xz_decompress(&mut std::io::BufReader::new(raw), &mut out).map_err(|e| anyhow::anyhow!("xz: {e}"))?;
    } else if raw.starts_with(&[0x1F, 0x8B]) {
        let mut decoder = flate2::read::GzDecoder::new(raw).take(MAX_TAR_BYTES + 1);
        std::io::copy(&mut decoder, &mut out).context("gzip")?;
    } else if raw.len() > 262 && &raw[257..262] == b"ustar" {
        out.write_all(raw)?;
    } else {
        bail!("unknown format: expected .tar.xz, .tar.gz or .tar");
    }
    Ok(out.bytes)
}

/// A `Vec` sink that refuses to grow past [`MAX_TAR_BYTES`].
#[derive(Default)]
struct CappedWriter {
    bytes: Vec<u8>,
}

impl Write for CappedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() as u64 + buf.len() as u64 > MAX_TAR_BYTES {
            return Err(std::io::Error::other(format!("decompressed size over {} MiB", MAX_TAR_BYTES >> 20)));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Finds `naive` at the top or one folder down, refusing links and binaries for another arch.
pub(crate) fn find_naive(tar: &[u8], arch: Arch) -> Result<NaiveRelease> {
    let expected = format!("naiveproxy-v<version>-linux-{}/naive", arch.naive_name());
    let mut found: Vec<(String, Vec<u8>)> = Vec::new();
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries().context("cannot list the tarball")? {
        let mut entry = entry.context("corrupt tarball entry")?;
        let path = entry.path().context("tarball entry with a bad path")?.into_owned();
        let parts: Vec<String> = path
            .components()
            .filter_map(|c| match c {
                Component::Normal(p) => Some(p.to_string_lossy().into_owned()),
                _ => None,
            })
            .collect();
        if parts.last().map(String::as_str) != Some("naive") || parts.len() > 2 {
            continue;
        }
        let folder = if parts.len() == 2 { parts[0].clone() } else { String::new() };
        let kind = entry.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            bail!("{} is a link, not the naive binary; links are not followed", path.display());
        }
        if !kind.is_file() {
            continue;
        }
        let mut binary = Vec::new();
        entry.read_to_end(&mut binary).with_context(|| format!("cannot read {}", path.display()))?;
        found.push((folder, binary));
    }
    let (folder, binary) = match found.len() {
        0 => bail!("no naive binary in it; expected {expected}"),
        1 => found.remove(0),
        _ => bail!(
            "{} naive binaries in it ({}); expected exactly {expected}",
            found.len(),
            found.iter().map(|(f, _)| format!("{f}/naive")).collect::<Vec<_>>().join(", ")
        ),
    };

    let parsed = parse_folder_name(&folder);
    if let Some(name) = &parsed {
        match &name.linux_arch {
            Some(linux_arch) if linux_arch == arch.naive_name() => {}
            Some(linux_arch) => bail!(
                "it is the linux-{linux_arch} release but --arch {} needs linux-{} ({expected})",
                arch.as_str(),
                arch.naive_name()
            ),
            None => bail!("{folder} is not a linux release; --arch {} needs {expected}", arch.as_str()),
        }
    }
    let info = elf::parse(&binary).with_context(|| format!("{folder}/naive is not a Linux executable"))?;
    if info.machine != arch.elf_machine() {
        bail!(
            "{folder}/naive is built for {} but --arch {} needs {}",
            elf::machine_name(info.machine),
            arch.as_str(),
            elf::machine_name(arch.elf_machine())
        );
    }
    Ok(NaiveRelease {
        binary,
        version: parsed.map(|p| upstream_version(&p.version).to_string()),
        folder,
        tarball_sha256: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn folder_names() {
        fn check(name: &str, expected: Option<(&str, Option<&str>)>) {
            let parsed = parse_folder_name(name);
            let parsed = parsed.as_ref().map(|p| (p.version.as_str(), p.linux_arch.as_deref()));
            assert_eq!(parsed, expected, "{name}");
        }
        check("naiveproxy-v130.0.6723.40-1-linux-x64", Some(("130.0.6723.40-1", Some("x64"))));
        check("naiveproxy-v147.0.7727.49-1-linux-arm64", Some(("147.0.7727.49-1", Some("arm64"))));
        check("naiveproxy-v147.0.7727.49-1-openwrt-aarch64_cortex-a53", Some(("147.0.7727.49", None)));
        check("naiveproxy-v1-linux-", None);
        check("something-else", None);
        check("", None);
    }

    #[test]
    fn versions() {
        assert_eq!(upstream_version("130.0.6723.40-1"), "130.0.6723.40");
        assert_eq!(upstream_version("130.0.6723.40"), "130.0.6723.40");
        assert_eq!(upstream_version("1.2-rc"), "1.2-rc");

        fn check(output: &str, expected: Option<&str>) {
            assert_eq!(parse_version_output(output), expected, "{output:?}");
        }
        check("naive 130.0.6723.40\n", Some("130.0.6723.40"));
        check("naive v1.2.3", Some("1.2.3"));
        check("naive (build 7) 2.0", Some("2.0"));
        check("usage: naive [options]", None);
        check("", None);
        check("1.", None);
    }

    proptest! {
        #[test]
        fn folder_name_round_trips(
            version in "[0-9]{1,3}(\\.[0-9]{1,4}){1,3}-[0-9]",
            arch in "[a-z0-9_]{1,8}",
        ) {
            let parsed = parse_folder_name(&format!("naiveproxy-v{version}-linux-{arch}")).unwrap();
            prop_assert_eq!(parsed.version, version);
            prop_assert_eq!(parsed.linux_arch, Some(arch));
        }

        #[test]
        fn folder_name_parser_never_panics(name in "\\PC{0,40}") {
            let _ = parse_folder_name(&name);
        }

        #[test]
        fn version_output_finds_the_printed_version(version in "[0-9]{1,3}(\\.[0-9]{1,4}){1,3}") {
            let output = format!("naive {version}\n");
            prop_assert_eq!(parse_version_output(&output), Some(version.as_str()));
        }

        #[test]
        fn version_output_parser_never_panics(output in "\\PC{0,60}") {
            let _ = parse_version_output(&output);
        }
    }

    /// A minimal 64-bit little-endian ELF header for `machine`, optionally with a PT_INTERP.
    pub(crate) fn fake_elf(machine: u16) -> Vec<u8> {
        elf::tests::fake_elf64(machine, false)
    }

    fn tarball(entries: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, contents) in entries {
            let mut header = tar::Header::new_gnu();
            match contents {
                Some(bytes) => {
                    header.set_size(bytes.len() as u64);
                    header.set_mode(0o755);
                    builder.append_data(&mut header, path, *bytes).unwrap();
                }
                None => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_size(0);
                    builder.append_link(&mut header, path, "/bin/sh").unwrap();
                }
            }
        }
        builder.into_inner().unwrap()
    }

    const X64_DIR: &str = "naiveproxy-v130.0.6723.40-1-linux-x64";

    #[test]
    fn finds_the_binary_of_a_real_shaped_release() {
        let elf = fake_elf(elf::EM_X86_64);
        let tar =
            tarball(&[(&format!("{X64_DIR}/naive"), Some(&elf)), (&format!("{X64_DIR}/config.json"), Some(b"{}"))]);
        let release = find_naive(&tar, Arch::Amd64).unwrap();
        assert_eq!(release.binary, elf);
        assert_eq!(release.folder, X64_DIR);
        assert_eq!(release.version.as_deref(), Some("130.0.6723.40"));
    }

    #[test]
    fn clear_errors() {
        fn check(tar: Vec<u8>, arch: Arch, expected: &str) {
            let err = format!("{:#}", find_naive(&tar, arch).unwrap_err());
            assert!(err.contains(expected), "{err:?} does not contain {expected:?}");
        }
        let x64 = fake_elf(elf::EM_X86_64);
        let arm = fake_elf(elf::EM_AARCH64);
        check(
            tarball(&[(&format!("{X64_DIR}/README"), Some(b"hi"))]),
            Arch::Amd64,
            "no naive binary in it; expected naiveproxy-v<version>-linux-x64/naive",
        );
        check(
            tarball(&[("naiveproxy-v1.0-1-linux-arm64/naive", Some(&arm))]),
            Arch::Amd64,
            "it is the linux-arm64 release but --arch amd64 needs linux-x64",
        );
        check(
            tarball(&[(&format!("{X64_DIR}/naive"), Some(&arm))]),
            Arch::Amd64,
            "is built for aarch64 but --arch amd64 needs x86-64",
        );
        check(tarball(&[(&format!("{X64_DIR}/naive"), Some(&x64))]), Arch::Arm64, "needs linux-arm64");
        check(tarball(&[(&format!("{X64_DIR}/naive"), None)]), Arch::Amd64, "is a link, not the naive binary");
        check(
            tarball(&[(&format!("{X64_DIR}/naive"), Some(b"#!/bin/sh\necho hi\n"))]),
            Arch::Amd64,
            "is not a Linux executable",
        );
        check(
            tarball(&[("a/naive", Some(&x64)), ("b/naive", Some(&x64))]),
            Arch::Amd64,
            "2 naive binaries in it (a/naive, b/naive)",
        );
        check(
            tarball(&[("naiveproxy-v1.0-1-openwrt-x86_64/naive", Some(&x64))]),
            Arch::Amd64,
            "is not a linux release",
        );
    }

    #[test]
    fn reads_xz_gz_and_plain_tar_files() {
        let elf = fake_elf(elf::EM_X86_64);
        let tar = tarball(&[(&format!("{X64_DIR}/naive"), Some(&elf))]);
        let mut xz = Vec::new();
        lzma_rs::xz_compress(&mut tar.as_slice(), &mut xz).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let gz = gz.finish().unwrap();

        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in [("a.tar.xz", &xz), ("a.tar.gz", &gz), ("a.tar", &tar)] {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            let release = read_tarball(&path, Arch::Amd64).unwrap();
            assert_eq!(release.binary, elf, "{name}");
            assert_eq!(release.tarball_sha256, hex::encode(Sha256::digest(bytes)));
        }

        let junk = dir.path().join("junk.tar.xz");
        std::fs::write(&junk, b"not a tarball at all").unwrap();
        let err = format!("{:#}", read_tarball(&junk, Arch::Amd64).unwrap_err());
        assert!(err.contains("unknown format"), "{err}");

        let missing = dir.path().join("missing.tar.xz");
        let err = format!("{:#}", read_tarball(&missing, Arch::Amd64).unwrap_err());
        assert!(err.contains("cannot read naiveproxy tarball"), "{err}");
    }
}
