//! The naive client image: a build context of `Dockerfile.naive` and the release's `naive`,
//! built under a temporary tag, verified, then given its final tags all at once (or none).

use std::collections::BTreeMap;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use edge_channels::image::{BuildContext, BuildRequest, ImageError, Images, RegistryCredentials};

use super::Arch;
use super::naive::{NaiveRelease, parse_version_output};

/// Repository name of the image, under the owner prefix.
pub(crate) const IMAGE_NAME: &str = "partner-edge-naive";
/// The image must stay under this many bytes (50 MB).
pub(crate) const MAX_IMAGE_BYTES: u64 = 50_000_000;
/// What the container runs; the deployer mounts the rendered config there.
pub(crate) const ENTRYPOINT: [&str; 2] = ["naive", "/etc/naive/config.json"];
/// The SOCKS port the client listens on.
pub(crate) const EXPOSED_PORT: &str = "1080/tcp";
/// Temporary builds live outside every owner's namespace, so a crash never leaves a release tag.
const TEMP_REPOSITORY: &str = "partner-edge-naive-build";

/// `<owner>/partner-edge-naive`, or just the name without an owner.
pub(crate) fn repository(owner: &str) -> String {
    let owner = owner.trim_end_matches('/');
    if owner.is_empty() { IMAGE_NAME.to_string() } else { format!("{owner}/{IMAGE_NAME}") }
}

/// The two release tags: `<version>-<arch>` and `stable-<arch>`.
pub(crate) fn final_tags(owner: &str, version: &str, arch: Arch) -> [String; 2] {
    let repository = repository(owner);
    [format!("{repository}:{version}-{}", arch.as_str()), format!("{repository}:stable-{}", arch.as_str())]
}

/// Checks an owner prefix such as `registry.example:5000/team` against the reference grammar
/// (lowercase path components; a host with an optional port may come first).
pub(crate) fn validate_owner(owner: &str) -> Result<()> {
    if owner.is_empty() {
        return Ok(());
    }
    let bad = |why: &str| anyhow::anyhow!("image owner {owner:?} is not valid: {why}");
    for (i, part) in owner.split('/').enumerate() {
        if part.is_empty() {
            return Err(bad("empty path component"));
        }
        let is_host = i == 0 && owner.contains('/') && looks_like_registry_host(part);
        let (name, port) = match part.split_once(':') {
            Some((name, port)) if is_host => (name, Some(port)),
            Some(_) => return Err(bad("`:` is only allowed in a registry host's port")),
            None => (part, None),
        };
        if let Some(port) = port
            && (port.is_empty() || port.parse::<u16>().is_err())
        {
            return Err(bad("the registry port must be a number"));
        }
        let allowed = |c: char| {
            c.is_ascii_lowercase()
                || c.is_ascii_digit()
                || matches!(c, '.' | '_' | '-')
                || (is_host && c.is_ascii_uppercase())
        };
        if !name.chars().all(allowed) {
            return Err(bad("use lowercase letters, digits, `.`, `_` and `-`"));
        }
        if !name.starts_with(|c: char| c.is_ascii_alphanumeric())
            || !name.ends_with(|c: char| c.is_ascii_alphanumeric())
        {
            return Err(bad("each component must start and end with a letter or digit"));
        }
    }
    Ok(())
}

fn looks_like_registry_host(part: &str) -> bool {
    part.contains('.') || part.contains(':') || part == "localhost"
}

/// Host and port of the registry an owner prefix pushes to (Docker Hub without a host).
pub(crate) fn registry_address(owner: &str) -> (String, u16) {
    let first = owner.split('/').next().unwrap_or_default();
    if owner.contains('/') && looks_like_registry_host(first) {
        match first.rsplit_once(':') {
            Some((host, port)) => (host.to_string(), port.parse().unwrap_or(443)),
            None => (first.to_string(), 443),
        }
    } else {
        ("registry-1.docker.io".to_string(), 443)
    }
}

/// Fails unless the registry accepts a TCP connection, before anything is built or pushed.
pub(crate) fn check_registry_answers(owner: &str) -> Result<()> {
    let (host, port) = registry_address(owner);
    let addresses: Vec<_> = (host.as_str(), port)
        .to_socket_addrs()
        .with_context(|| format!("registry {host}:{port} does not answer: cannot resolve {host}"))?
        .collect();
    let mut last_error = None;
    for address in &addresses {
        match TcpStream::connect_timeout(address, Duration::from_secs(5)) {
            Ok(_) => return Ok(()),
            Err(e) => last_error = Some(e),
        }
    }
    match last_error {
        Some(e) => bail!("registry {host}:{port} does not answer: {e}; nothing was pushed"),
        None => bail!("registry {host}:{port} does not answer: no address for {host}; nothing was pushed"),
    }
}

/// Fails unless `base_image` is on the engine (`scratch` always is: it is no image at all).
pub(crate) async fn check_base_image(images: &Images, base_image: &str) -> Result<()> {
    if base_image == "scratch" {
        return Ok(());
    }
    match images.inspect(base_image).await {
        Ok(_) => Ok(()),
        Err(ImageError::NotFound { .. }) => bail!(
            "base image {base_image} is not on the docker engine and nothing can be pulled here; \
             load it first (docker load) or pass --base-image scratch for a static naive"
        ),
        Err(e) => Err(e.into()),
    }
}

/// What the image is built from.
#[derive(Debug, Clone)]
pub(crate) struct ImageInputs<'a> {
    pub(crate) dockerfile: &'a [u8],
    pub(crate) naive: &'a NaiveRelease,
    pub(crate) base_image: &'a str,
    pub(crate) version: &'a str,
    pub(crate) arch: Arch,
    /// mtime of the context entries (`SOURCE_DATE_EPOCH`, else 0).
    pub(crate) mtime: u64,
}

/// The build context: `Dockerfile` and `naive`, nothing else.
pub(crate) fn build_context(inputs: &ImageInputs<'_>) -> Result<BuildContext> {
    let mut context = BuildContext::new().with_mtime(inputs.mtime);
    context.add_file("Dockerfile", inputs.dockerfile.to_vec(), 0o644)?;
    context.add_file("naive", inputs.naive.binary.clone(), 0o755)?;
    Ok(context)
}

/// Builds the image under a fresh temporary tag and returns that tag.
pub(crate) async fn build(images: &Images, inputs: &ImageInputs<'_>) -> Result<String> {
    let temp_tag = format!("{TEMP_REPOSITORY}:{}", edge_channels::image::unique_name(inputs.arch.as_str()));
    let mut request = BuildRequest::new(&temp_tag);
    request.platform = inputs.arch.platform().to_string();
    request.build_args = BTreeMap::from([("BASE_IMAGE".to_string(), inputs.base_image.to_string())]);
    request.labels = BTreeMap::from([
        ("org.opencontainers.image.title".to_string(), IMAGE_NAME.to_string()),
        ("org.opencontainers.image.version".to_string(), inputs.version.to_string()),
    ]);
    if let Some(naive_version) = &inputs.naive.version {
        request.labels.insert("org.naiveproxy.version".to_string(), naive_version.clone());
    }
    images.build_image(&build_context(inputs)?, &request).await?;
    Ok(temp_tag)
}

/// What the verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Verified {
    pub(crate) id: String,
    pub(crate) size: u64,
    pub(crate) user: String,
    pub(crate) naive_version: String,
}

/// Checks size, user, entrypoint, port and arch, then runs `naive --version` inside the image.
pub(crate) async fn verify(
    images: &Images,
    image: &str,
    arch: Arch,
    expected_version: Option<&str>,
) -> Result<Verified> {
    let info = images.inspect(image).await?;
    ensure!(
        info.size < MAX_IMAGE_BYTES,
        "the image is {} bytes ({:.1} MB), over the 50 MB limit",
        info.size,
        info.size as f64 / 1e6
    );
    ensure!(info.runs_as_non_root(), "the image runs as {:?}; it must run as a non-root user", info.user);
    ensure!(info.entrypoint == ENTRYPOINT, "the entrypoint is {:?}, expected {ENTRYPOINT:?}", info.entrypoint);
    ensure!(
        info.exposed_ports.iter().any(|p| p == EXPOSED_PORT),
        "the image exposes {:?}, expected {EXPOSED_PORT}",
        info.exposed_ports
    );
    ensure!(info.architecture == arch.as_str(), "the image is for {}, expected {}", info.architecture, arch.as_str());
    let output = images.run_to_completion(image, &["naive", "--version"], Duration::from_secs(60)).await?;
    ensure!(
        output.exit_code == 0,
        "`naive --version` exited with {} inside the image: {}{}",
        output.exit_code,
        output.stdout.trim(),
        output.stderr.trim()
    );
    let Some(printed) = parse_version_output(&output.stdout) else {
        bail!("`naive --version` printed no version inside the image: {:?}", output.stdout.trim());
    };
    if let Some(expected) = expected_version {
        ensure!(printed == expected, "`naive --version` printed {printed} but the tarball is naiveproxy {expected}");
    }
    Ok(Verified { id: info.id, size: info.size, user: info.user, naive_version: printed.to_string() })
}

/// Points every tag at `id`, or none: if one fails, the tags already moved are put back.
pub(crate) async fn apply_tags(images: &Images, id: &str, tags: &[String]) -> Result<()> {
    let mut previous: Vec<(String, Option<String>)> = Vec::new();
    for tag in tags {
        let before = match images.inspect(tag).await {
            Ok(info) => Some(info.id),
            Err(ImageError::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        if let Err(e) = images.tag(id, tag).await {
            for (done, before) in previous.iter().rev() {
                let restored = match before {
                    Some(old) => images.tag(old, done).await,
                    None => images.remove(done).await.map(|_| ()),
                };
                if let Err(undo) = restored {
                    eprintln!("warning: cannot undo tag {done}: {undo}");
                }
            }
            return Err(e.into());
        }
        previous.push((tag.clone(), before));
    }
    Ok(())
}

/// Removes the temporary tag (the image stays if final tags point at it).
pub(crate) async fn discard(images: &Images, temp_tag: &str) {
    if let Err(e) = images.remove(temp_tag).await {
        eprintln!("warning: cannot remove temporary image {temp_tag}: {e}");
    }
}

/// Pushes the tags in order; the registry was checked to answer before the build.
pub(crate) async fn push(images: &Images, tags: &[String], credentials: Option<&RegistryCredentials>) -> Result<()> {
    for tag in tags {
        images.push(tag, credentials).await?;
        println!("    pushed {tag}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_and_repository() {
        assert_eq!(
            final_tags("", "0.1.0", Arch::Amd64),
            ["partner-edge-naive:0.1.0-amd64".to_string(), "partner-edge-naive:stable-amd64".to_string()]
        );
        assert_eq!(
            final_tags("registry.example:5000/team/", "2.0.0", Arch::Arm64),
            [
                "registry.example:5000/team/partner-edge-naive:2.0.0-arm64".to_string(),
                "registry.example:5000/team/partner-edge-naive:stable-arm64".to_string()
            ]
        );
    }

    #[test]
    fn owners() {
        fn check(owner: &str, ok: bool) {
            assert_eq!(validate_owner(owner).is_ok(), ok, "{owner:?}");
        }
        check("", true);
        check("oxpulse", true);
        check("registry.example/oxpulse", true);
        check("127.0.0.1:5000/team/sub", true);
        check("localhost:5000/x", true);
        check("Oxpulse", false);
        check("x/team:1", false);
        check("registry.example:port/x", false);
        check("a//b", false);
        check("-a", false);
        check("a b", false);
    }

    #[test]
    fn registry_addresses() {
        fn check(owner: &str, host: &str, port: u16) {
            assert_eq!(registry_address(owner), (host.to_string(), port), "{owner:?}");
        }
        check("127.0.0.1:5000/team", "127.0.0.1", 5000);
        check("registry.example/team", "registry.example", 443);
        check("localhost/team", "localhost", 443);
        check("team", "registry-1.docker.io", 443);
        check("team/sub", "registry-1.docker.io", 443);
    }

    #[test]
    fn a_registry_that_does_not_answer_is_named() {
        // Port 9 on loopback: nothing listens there.
        let err = format!("{:#}", check_registry_answers("127.0.0.1:9/team").unwrap_err());
        assert!(err.contains("registry 127.0.0.1:9 does not answer"), "{err}");
        assert!(err.contains("nothing was pushed"), "{err}");
    }

    #[test]
    fn a_registry_that_listens_passes() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        check_registry_answers(&format!("127.0.0.1:{port}/team")).unwrap();
    }

    #[test]
    fn the_context_holds_the_dockerfile_and_the_binary_only() {
        let naive = NaiveRelease {
            binary: b"\x7fELF...".to_vec(),
            folder: "naiveproxy-v1.0-1-linux-x64".into(),
            version: Some("1.0".into()),
            tarball_sha256: String::new(),
        };
        let inputs = ImageInputs {
            dockerfile: b"FROM scratch\n",
            naive: &naive,
            base_image: "scratch",
            version: "0.1.0",
            arch: Arch::Amd64,
            mtime: 0,
        };
        let context = build_context(&inputs).unwrap();
        assert_eq!(context.paths().collect::<Vec<_>>(), vec!["Dockerfile", "naive"]);
        assert_eq!(context.to_tar().unwrap(), build_context(&inputs).unwrap().to_tar().unwrap());
    }
}
