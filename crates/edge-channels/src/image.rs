//! Images on the Docker engine: build from an in-memory context, inspect, tag, remove, push,
//! and run a throwaway container to capture the output of one command.
//!
//! The build context is assembled in memory ([`BuildContext`]) as a deterministic tar: entries
//! sorted by path, owner 0:0, one fixed mtime, no symlinks. The classic builder is used so that
//! builds work on every engine from API 1.41 on; nothing here pulls an image on its own.
//!
//! # Example
//!
//! ```no_run
//! use edge_channels::image::{BuildContext, BuildRequest, Images};
//!
//! # async fn demo() -> Result<(), edge_channels::image::ImageError> {
//! let mut context = BuildContext::new();
//! context.add_file("Dockerfile", b"FROM scratch\nCOPY hello /hello\n".to_vec(), 0o644)?;
//! context.add_file("hello", b"hi\n".to_vec(), 0o644)?;
//!
//! let images = Images::connect().await?;
//! let id = images.build_image(&context, &BuildRequest::new("example/hello:dev")).await?;
//! let info = images.inspect(&id).await?;
//! println!("{} is {} bytes", info.id, info.size);
//! images.remove("example/hello:dev").await?;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateContainerOptionsBuilder, ListImagesOptionsBuilder, LogsOptionsBuilder,
    PushImageOptionsBuilder, RemoveContainerOptionsBuilder, RemoveImageOptionsBuilder, TagImageOptionsBuilder,
};
use futures_util::StreamExt;

/// How many trailing lines of builder output an error message quotes.
const BUILD_LOG_TAIL: usize = 20;

/// Everything the image half of the Docker driver can fail at.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The Docker engine could not be reached or its API version not negotiated.
    #[error("cannot reach the docker engine: {message}; is dockerd running and DOCKER_HOST right?")]
    Connect {
        /// What the client reported.
        message: String,
    },
    /// A build-context entry was refused (absolute path, `..`, symlink, unreadable file).
    #[error("build context entry {path}: {message}")]
    Context {
        /// The entry path in the context, or the file on disk.
        path: String,
        /// Why it was refused.
        message: String,
    },
    /// The engine failed to build an image.
    #[error("building image {tag} failed: {message}")]
    Build {
        /// The tag the build was asked to apply.
        tag: String,
        /// The builder's error and the tail of its output.
        message: String,
    },
    /// The image does not exist on the engine.
    #[error("image {reference} not found on the docker engine; build it or load it first (nothing can be pulled here)")]
    NotFound {
        /// The reference that was looked up.
        reference: String,
    },
    /// Inspecting or listing images failed.
    #[error("inspecting image {reference} failed: {message}")]
    Inspect {
        /// The reference or filter that was inspected.
        reference: String,
        /// What the engine reported.
        message: String,
    },
    /// Tagging an image failed.
    #[error("tagging {source_ref} as {target} failed: {message}")]
    Tag {
        /// The image that was to be tagged.
        source_ref: String,
        /// The new `repository:tag`.
        target: String,
        /// What the engine reported.
        message: String,
    },
    /// Removing an image failed.
    #[error("removing image {reference} failed: {message}")]
    Remove {
        /// The image reference.
        reference: String,
        /// What the engine reported.
        message: String,
    },
    /// Pushing an image to its registry failed.
    #[error("pushing {reference} failed: {message}; check that the registry answers and that you are logged in")]
    Push {
        /// The `registry/repository:tag` that was pushed.
        reference: String,
        /// What the engine or registry reported.
        message: String,
    },
    /// Creating, starting or reading a throwaway container failed.
    #[error("running {command:?} in image {image} failed at {step}: {message}")]
    Run {
        /// The image the container was created from.
        image: String,
        /// The command that was run.
        command: Vec<String>,
        /// Which step failed: create, start, wait or logs.
        step: &'static str,
        /// What the engine reported.
        message: String,
    },
    /// A throwaway container did not exit in time (it was killed and removed).
    #[error("running {command:?} in image {image} did not finish within {seconds}s")]
    RunTimeout {
        /// The image the container was created from.
        image: String,
        /// The command that was run.
        command: Vec<String>,
        /// The time limit.
        seconds: u64,
    },
}

/// A build context held in memory, serialised as a deterministic tar.
///
/// Entries are regular files only; parent folders are implied. Adding an entry twice replaces it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildContext {
    files: BTreeMap<String, ContextFile>,
    mtime: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ContextFile {
    contents: Vec<u8>,
    mode: u32,
}

impl BuildContext {
    /// An empty context whose entries carry mtime 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the mtime every entry carries (e.g. `SOURCE_DATE_EPOCH`).
    pub fn with_mtime(mut self, seconds_since_epoch: u64) -> Self {
        self.mtime = seconds_since_epoch;
        self
    }

    /// Adds a regular file at `path` (relative, `/`-separated, no `..`).
    pub fn add_file(&mut self, path: &str, contents: Vec<u8>, mode: u32) -> Result<(), ImageError> {
        let path = normalize_context_path(path)?;
        self.files.insert(path, ContextFile { contents, mode: mode & 0o7777 });
        Ok(())
    }

    /// Adds the regular file at `disk_path` as `path`, keeping its permission bits.
    ///
    /// A symlink is refused rather than followed: the context holds exactly what is named.
    pub fn add_file_from_disk(&mut self, path: &str, disk_path: &Path) -> Result<(), ImageError> {
        let refuse = |message: String| ImageError::Context { path: disk_path.display().to_string(), message };
        let meta = std::fs::symlink_metadata(disk_path).map_err(|e| refuse(e.to_string()))?;
        if meta.file_type().is_symlink() {
            return Err(refuse("is a symlink; symlinks are not followed into a build context".into()));
        }
        if !meta.is_file() {
            return Err(refuse("is not a regular file".into()));
        }
        let contents = std::fs::read(disk_path).map_err(|e| refuse(e.to_string()))?;
        self.add_file(path, contents, permission_bits(&meta))
    }

    /// The entry paths, sorted.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(String::as_str)
    }

    /// Serialises the context: ustar entries sorted by path, uid/gid 0, no owner names, one mtime.
    pub fn to_tar(&self) -> Result<Vec<u8>, ImageError> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, file) in &self.files {
            let mut header = tar::Header::new_ustar();
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(file.contents.len() as u64);
            header.set_mode(file.mode);
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(self.mtime);
            builder
                .append_data(&mut header, path, file.contents.as_slice())
                .map_err(|e| ImageError::Context { path: path.clone(), message: e.to_string() })?;
        }
        builder.into_inner().map_err(|e| ImageError::Context { path: "<tar>".into(), message: e.to_string() })
    }
}

#[cfg(unix)]
fn permission_bits(meta: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o7777
}

#[cfg(not(unix))]
fn permission_bits(_meta: &std::fs::Metadata) -> u32 {
    0o644
}

/// Checks that a context path is relative and stays inside the context; returns it `/`-joined.
fn normalize_context_path(path: &str) -> Result<String, ImageError> {
    let refuse = |message: &str| ImageError::Context { path: path.to_string(), message: message.to_string() };
    let mut parts = Vec::new();
    for component in PathBuf::from(path).components() {
        match component {
            Component::Normal(part) => match part.to_str() {
                Some(part) => parts.push(part.to_string()),
                None => return Err(refuse("is not valid UTF-8")),
            },
            Component::CurDir => {}
            Component::ParentDir => return Err(refuse("must not contain `..`")),
            Component::RootDir | Component::Prefix(_) => return Err(refuse("must be relative")),
        }
    }
    if parts.is_empty() {
        return Err(refuse("is empty"));
    }
    Ok(parts.join("/"))
}

/// What to build: the tag, the Dockerfile's path in the context, build arguments and labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildRequest {
    /// `repository:tag` applied by the build.
    pub tag: String,
    /// Path of the Dockerfile inside the context.
    pub dockerfile: String,
    /// `ARG` values.
    pub build_args: BTreeMap<String, String>,
    /// Labels set on the image.
    pub labels: BTreeMap<String, String>,
    /// `os/arch` to build for; empty means the engine's own.
    pub platform: String,
}

impl BuildRequest {
    /// A request that builds `Dockerfile` from the context root and tags it `tag`.
    pub fn new(tag: impl Into<String>) -> Self {
        Self {
            tag: tag.into(),
            dockerfile: "Dockerfile".into(),
            build_args: BTreeMap::new(),
            labels: BTreeMap::new(),
            platform: String::new(),
        }
    }
}

/// What the engine knows of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// Content id (`sha256:…`).
    pub id: String,
    /// Size in bytes, all layers included.
    pub size: u64,
    /// `User` of the image config; empty means root.
    pub user: String,
    /// `Entrypoint` of the image config.
    pub entrypoint: Vec<String>,
    /// `Cmd` of the image config.
    pub cmd: Vec<String>,
    /// Exposed ports, e.g. `1080/tcp`, sorted.
    pub exposed_ports: Vec<String>,
    /// `Env` of the image config.
    pub env: Vec<String>,
    /// `repository:tag` names pointing at the image.
    pub tags: Vec<String>,
    /// CPU architecture, e.g. `amd64`.
    pub architecture: String,
    /// Operating system, e.g. `linux`.
    pub os: String,
    /// Labels of the image config.
    pub labels: BTreeMap<String, String>,
}

impl ImageInfo {
    /// Whether the image's processes run as a user other than root.
    pub fn runs_as_non_root(&self) -> bool {
        let user = self.user.split(':').next().unwrap_or_default();
        !(user.is_empty() || user == "root" || user == "0")
    }
}

/// What a throwaway container printed and how it exited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutput {
    /// The process exit code.
    pub exit_code: i64,
    /// Everything written to stdout.
    pub stdout: String,
    /// Everything written to stderr.
    pub stderr: String,
}

pub use crate::registry::RegistryCredentials;

/// Splits `registry:port/repo:tag` into `("registry:port/repo", Some("tag"))`.
///
/// A colon counts as the tag separator only after the last `/`, so a registry port is kept in
/// the repository; a digest reference (`repo@sha256:…`) has no tag.
pub fn split_reference(reference: &str) -> (&str, Option<&str>) {
    if reference.contains('@') {
        return (reference, None);
    }
    let name_start = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[name_start..].rfind(':') {
        Some(i) => {
            let at = name_start + i;
            (&reference[..at], Some(&reference[at + 1..]))
        }
        None => (reference, None),
    }
}

/// The image operations of the Docker driver, on one engine connection.
#[derive(Debug, Clone)]
pub struct Images {
    docker: Docker,
}

impl Images {
    /// Connects to the local engine (`DOCKER_HOST` or the default socket) and negotiates the API
    /// version, so engines as old as API 1.41 work.
    pub async fn connect() -> Result<Self, ImageError> {
        let connect_error = |e: bollard::errors::Error| ImageError::Connect { message: e.to_string() };
        let docker = Docker::connect_with_local_defaults()
            .map_err(connect_error)?
            // Builds and pushes stream for long; the timeout covers waiting for the first byte.
            .with_timeout(Duration::from_secs(600))
            .negotiate_version()
            .await
            .map_err(connect_error)?;
        Ok(Self { docker })
    }

    /// Builds an image from `context` with the classic builder and returns its id.
    ///
    /// The base image must already be on the engine unless it is `scratch`: the builder is not
    /// asked to pull. Intermediate containers are always removed.
    pub async fn build_image(&self, context: &BuildContext, request: &BuildRequest) -> Result<String, ImageError> {
        let build_error = |message: String| ImageError::Build { tag: request.tag.clone(), message };
        let tar = context.to_tar()?;
        let build_args: HashMap<String, String> = request.build_args.clone().into_iter().collect();
        let labels: HashMap<String, String> = request.labels.clone().into_iter().collect();
        let mut options = BuildImageOptionsBuilder::default()
            .dockerfile(&request.dockerfile)
            .t(&request.tag)
            .rm(true)
            .forcerm(true)
            .buildargs(&build_args)
            .labels(&labels);
        if !request.platform.is_empty() {
            options = options.platform(&request.platform);
        }
        let mut stream = self.docker.build_image(options.build(), None, Some(bollard::body_full(tar.into())));

        let mut log: Vec<String> = Vec::new();
        let mut image_id = None;
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(id) = info.aux.and_then(|aux| aux.id) {
                        image_id = Some(id);
                    }
                    if let Some(line) = info.stream {
                        log.extend(line.lines().map(str::to_string));
                        tracing::debug!(tag = %request.tag, "{}", line.trim_end());
                    }
                }
                Err(e) => {
                    return Err(build_error(with_log_tail(&error_text(&e), &log)));
                }
            }
        }
        // Older engines report the id only as a `Successfully built <id>` line.
        let image_id = image_id.or_else(|| {
            log.iter().rev().find_map(|l| l.strip_prefix("Successfully built ").map(str::trim).map(str::to_string))
        });
        match image_id {
            Some(id) => Ok(id),
            None => Err(build_error(with_log_tail("the builder finished without reporting an image id", &log))),
        }
    }

    /// Looks an image up by id or `repository:tag`.
    pub async fn inspect(&self, reference: &str) -> Result<ImageInfo, ImageError> {
        let image = match self.docker.inspect_image(reference).await {
            Ok(image) => image,
            Err(e) if is_not_found(&e) => {
                return Err(ImageError::NotFound { reference: reference.into() });
            }
            Err(e) => {
                return Err(ImageError::Inspect { reference: reference.into(), message: error_text(&e) });
            }
        };
        let config = image.config.unwrap_or_default();
        let mut exposed_ports = config.exposed_ports.unwrap_or_default();
        exposed_ports.sort();
        Ok(ImageInfo {
            id: image.id.unwrap_or_default(),
            size: image.size.unwrap_or_default().max(0).unsigned_abs(),
            user: config.user.unwrap_or_default(),
            entrypoint: config.entrypoint.unwrap_or_default(),
            cmd: config.cmd.unwrap_or_default(),
            exposed_ports,
            env: config.env.unwrap_or_default(),
            tags: image.repo_tags.unwrap_or_default(),
            architecture: image.architecture.unwrap_or_default(),
            os: image.os.unwrap_or_default(),
            labels: config.labels.unwrap_or_default().into_iter().collect(),
        })
    }

    /// Whether an image exists on the engine.
    pub async fn exists(&self, reference: &str) -> Result<bool, ImageError> {
        match self.inspect(reference).await {
            Ok(_) => Ok(true),
            Err(ImageError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// All `repository:tag` names matching a reference filter such as `owner/name` or
    /// `owner/name:*`, sorted.
    pub async fn tags_matching(&self, pattern: &str) -> Result<Vec<String>, ImageError> {
        let filters = HashMap::from([("reference", vec![pattern])]);
        let options = ListImagesOptionsBuilder::default().filters(&filters).build();
        let images = self
            .docker
            .list_images(Some(options))
            .await
            .map_err(|e| ImageError::Inspect { reference: pattern.into(), message: error_text(&e) })?;
        let mut tags: Vec<String> =
            images.into_iter().flat_map(|image| image.repo_tags).filter(|tag| tag != "<none>:<none>").collect();
        tags.sort();
        tags.dedup();
        Ok(tags)
    }

    /// Points `target` (`repository:tag`) at the image `source`.
    pub async fn tag(&self, source: &str, target: &str) -> Result<(), ImageError> {
        let (repo, tag) = split_reference(target);
        let options = TagImageOptionsBuilder::default().repo(repo).tag(tag.unwrap_or("latest")).build();
        self.docker.tag_image(source, Some(options)).await.map_err(|e| ImageError::Tag {
            source_ref: source.into(),
            target: target.into(),
            message: error_text(&e),
        })
    }

    /// Removes a tag (or an image by id, with all its tags). Returns `false` if it did not exist.
    pub async fn remove(&self, reference: &str) -> Result<bool, ImageError> {
        let options = RemoveImageOptionsBuilder::default().force(true).build();
        match self.docker.remove_image(reference, Some(options), None).await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(ImageError::Remove { reference: reference.into(), message: error_text(&e) }),
        }
    }

    /// Pushes `reference` (`registry/repository:tag`) to its registry.
    pub async fn push(&self, reference: &str, credentials: Option<&RegistryCredentials>) -> Result<(), ImageError> {
        let push_error = |message: String| ImageError::Push { reference: reference.into(), message };
        let (repo, tag) = split_reference(reference);
        let options = PushImageOptionsBuilder::default().tag(tag.unwrap_or("latest")).build();
        let credentials = credentials.map(|c| DockerCredentials {
            username: Some(c.username.clone()),
            password: Some(c.password.clone()),
            serveraddress: Some(repo.split('/').next().unwrap_or_default().to_string()),
            ..Default::default()
        });
        let mut stream = self.docker.push_image(repo, Some(options), credentials);
        let mut pushed = false;
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| push_error(error_text(&e)))?;
            // The final status line carries the digest; without it nothing was confirmed.
            if info.status.as_deref().is_some_and(|s| s.contains("digest: ")) {
                pushed = true;
            }
        }
        if pushed { Ok(()) } else { Err(push_error("the registry never confirmed a digest".into())) }
    }

    /// Runs `command` (replacing the image's entrypoint) in a throwaway container with no
    /// network, as the image's own user, waits at most `timeout`, and returns what it printed.
    /// The container is removed whatever happens.
    pub async fn run_to_completion(
        &self,
        image: &str,
        command: &[&str],
        timeout: Duration,
    ) -> Result<RunOutput, ImageError> {
        let command: Vec<String> = command.iter().map(|s| s.to_string()).collect();
        let run_error = |step: &'static str, message: String| ImageError::Run {
            image: image.into(),
            command: command.clone(),
            step,
            message,
        };
        let name = unique_name("edge-run");
        let body = ContainerCreateBody {
            image: Some(image.into()),
            entrypoint: Some(command.clone()),
            cmd: Some(Vec::new()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            network_disabled: Some(true),
            host_config: Some(HostConfig { network_mode: Some("none".into()), ..Default::default() }),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        self.docker.create_container(Some(options), body).await.map_err(|e| run_error("create", error_text(&e)))?;

        let result = self.start_wait_and_read(&name, timeout).await;
        let remove = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
        if let Err(e) = self.docker.remove_container(&name, Some(remove)).await {
            tracing::warn!(container = %name, "cannot remove throwaway container: {e}");
        }
        match result {
            Ok(output) => Ok(output),
            Err(RunFailure::Step(step, message)) => Err(run_error(step, message)),
            Err(RunFailure::Timeout) => {
                Err(ImageError::RunTimeout { image: image.into(), command, seconds: timeout.as_secs() })
            }
        }
    }

    async fn start_wait_and_read(&self, name: &str, timeout: Duration) -> Result<RunOutput, RunFailure> {
        self.docker.start_container(name, None).await.map_err(|e| RunFailure::Step("start", error_text(&e)))?;
        let exit_code = match tokio::time::timeout(timeout, self.wait(name)).await {
            Ok(code) => code?,
            Err(_) => return Err(RunFailure::Timeout),
        };
        let options = LogsOptionsBuilder::default().stdout(true).stderr(true).build();
        let mut logs = self.docker.logs(name, Some(options));
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        while let Some(item) = logs.next().await {
            match item.map_err(|e| RunFailure::Step("logs", error_text(&e)))? {
                bollard::container::LogOutput::StdErr { message } => stderr.extend_from_slice(&message),
                other => stdout.extend_from_slice(other.as_ref()),
            }
        }
        Ok(RunOutput {
            exit_code,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        })
    }

    async fn wait(&self, name: &str) -> Result<i64, RunFailure> {
        let mut stream = self.docker.wait_container(name, None);
        let mut code = None;
        while let Some(item) = stream.next().await {
            match item {
                Ok(response) => code = Some(response.status_code),
                // bollard reports a non-zero exit as an error; for us it is data.
                Err(bollard::errors::Error::DockerContainerWaitError { code: c, .. }) => code = Some(c),
                Err(e) => return Err(RunFailure::Step("wait", error_text(&e))),
            }
        }
        code.ok_or_else(|| RunFailure::Step("wait", "the engine reported no exit code".into()))
    }
}

/// Why `start_wait_and_read` stopped, before the image and command are attached.
enum RunFailure {
    Step(&'static str, String),
    Timeout,
}

/// Engine errors carry the daemon's message; other errors print as themselves.
fn error_text(e: &bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
        bollard::errors::Error::DockerStreamError { error } => error.clone(),
        other => other.to_string(),
    }
}

fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(e, bollard::errors::Error::DockerResponseServerError { status_code: 404, .. })
}

fn with_log_tail(message: &str, log: &[String]) -> String {
    let tail: Vec<&str> = log
        .iter()
        .map(|l| l.trim_end())
        .filter(|l| !l.is_empty())
        .rev()
        .take(BUILD_LOG_TAIL)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    if tail.is_empty() {
        message.trim_end().to_string()
    } else {
        format!("{}\n  builder output:\n    {}", message.trim_end(), tail.join("\n    "))
    }
}

/// A name unique to this process and moment, for throwaway containers and temporary tags.
pub fn unique_name(prefix: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{prefix}-{}-{nanos:x}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn split_reference_cases() {
        fn check(reference: &str, expected: (&str, Option<&str>)) {
            assert_eq!(split_reference(reference), expected, "{reference}");
        }
        check("naive", ("naive", None));
        check("naive:1.0", ("naive", Some("1.0")));
        check("owner/naive:stable-amd64", ("owner/naive", Some("stable-amd64")));
        check("127.0.0.1:5000/owner/naive", ("127.0.0.1:5000/owner/naive", None));
        check("127.0.0.1:5000/owner/naive:0.1.0-amd64", ("127.0.0.1:5000/owner/naive", Some("0.1.0-amd64")));
        check("naive@sha256:abcd", ("naive@sha256:abcd", None));
    }

    proptest! {
        #[test]
        fn split_reference_round_trips(
            registry in proptest::option::of("[a-z0-9.]{1,10}(:[0-9]{1,5})?"),
            repo in "[a-z0-9]{1,8}(/[a-z0-9_.-]{1,8}){0,2}",
            tag in proptest::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}"),
        ) {
            let repository = match &registry {
                Some(r) => format!("{r}/{repo}"),
                None => repo.clone(),
            };
            let reference = match &tag {
                Some(t) => format!("{repository}:{t}"),
                None => repository.clone(),
            };
            prop_assert_eq!(split_reference(&reference), (repository.as_str(), tag.as_deref()));
        }

        #[test]
        fn context_paths_never_escape(path in "[a-z./]{0,20}") {
            match normalize_context_path(&path) {
                Ok(normal) => {
                    prop_assert!(!normal.starts_with('/'));
                    prop_assert!(!normal.split('/').any(|p| p == ".." || p == "." || p.is_empty()));
                }
                Err(ImageError::Context { .. }) => {}
                Err(other) => prop_assert!(false, "unexpected error {other}"),
            }
        }
    }

    #[test]
    fn context_paths_are_checked() {
        fn check(path: &str, expected: Option<&str>) {
            assert_eq!(normalize_context_path(path).ok().as_deref(), expected, "{path}");
        }
        check("Dockerfile", Some("Dockerfile"));
        check("./usr//local/bin/naive", Some("usr/local/bin/naive"));
        check("/etc/passwd", None);
        check("a/../../b", None);
        check("", None);
        check(".", None);
    }

    fn sample_context(mtime: u64, order: &[(&str, &[u8], u32)]) -> BuildContext {
        let mut context = BuildContext::new().with_mtime(mtime);
        for (path, contents, mode) in order {
            context.add_file(path, contents.to_vec(), *mode).unwrap();
        }
        context
    }

    #[test]
    fn tar_is_deterministic_and_sorted() {
        let files: [(&str, &[u8], u32); 3] = [
            ("naive", b"\x7fELF", 0o755),
            ("Dockerfile", b"FROM scratch\n", 0o644),
            ("etc/naive/README", b"doc", 0o600),
        ];
        let forward = sample_context(0, &files).to_tar().unwrap();
        let mut reversed_files = files;
        reversed_files.reverse();
        let reversed = sample_context(0, &reversed_files).to_tar().unwrap();
        assert_eq!(forward, reversed);

        let mut archive = tar::Archive::new(forward.as_slice());
        let entries: Vec<(String, u32, u64, u64, u64)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().display().to_string(),
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                    h.gid().unwrap(),
                    h.mtime().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            entries,
            vec![
                ("Dockerfile".to_string(), 0o644, 0, 0, 0),
                ("etc/naive/README".to_string(), 0o600, 0, 0, 0),
                ("naive".to_string(), 0o755, 0, 0, 0),
            ]
        );
        assert_ne!(sample_context(1, &files).to_tar().unwrap(), sample_context(0, &files).to_tar().unwrap());
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_are_refused_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("real");
        std::fs::write(&target, b"secret").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();

        let mut context = BuildContext::new();
        let err = context.add_file_from_disk("naive", &link).unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
        assert_eq!(context.paths().count(), 0);

        context.add_file_from_disk("naive", &target).unwrap();
        assert_eq!(context.paths().collect::<Vec<_>>(), vec!["naive"]);
    }

    #[test]
    fn credentials_debug_hides_the_password() {
        let creds = RegistryCredentials { username: "ci".into(), password: "hunter2".into() };
        let shown = format!("{creds:?}");
        assert!(shown.contains("ci") && !shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn non_root_detection() {
        fn check(user: &str, expected: bool) {
            let info = ImageInfo {
                id: String::new(),
                size: 0,
                user: user.into(),
                entrypoint: vec![],
                cmd: vec![],
                exposed_ports: vec![],
                env: vec![],
                tags: vec![],
                architecture: String::new(),
                os: String::new(),
                labels: BTreeMap::new(),
            };
            assert_eq!(info.runs_as_non_root(), expected, "{user:?}");
        }
        check("", false);
        check("root", false);
        check("0", false);
        check("0:0", false);
        check("65532:65532", true);
        check("nonroot", true);
    }

    /// A context whose Dockerfile only copies a file: buildable offline from `scratch`.
    fn scratch_context(marker: &str) -> BuildContext {
        let mut context = BuildContext::new();
        context
            .add_file(
                "Dockerfile",
                b"FROM scratch\nCOPY marker /marker\nUSER 65532:65532\nEXPOSE 1080\nENTRYPOINT [\"/nothing\"]\n"
                    .to_vec(),
                0o644,
            )
            .unwrap();
        context.add_file("marker", marker.as_bytes().to_vec(), 0o644).unwrap();
        context
    }

    #[tokio::test]
    async fn build_inspect_tag_remove_against_the_engine() {
        let images = Images::connect().await.unwrap();
        let repo = unique_name("edge-image-test");
        let tag = format!("{repo}:build");
        let id = images.build_image(&scratch_context(&repo), &BuildRequest::new(&tag)).await.unwrap();

        let info = images.inspect(&tag).await.unwrap();
        assert_eq!(info.id, id);
        assert!(info.runs_as_non_root());
        assert_eq!(info.exposed_ports, vec!["1080/tcp".to_string()]);
        assert_eq!(info.entrypoint, vec!["/nothing".to_string()]);
        assert!(info.size > 0 && info.size < 4096, "size {}", info.size);

        images.tag(&id, &format!("{repo}:final")).await.unwrap();
        assert_eq!(images.tags_matching(&repo).await.unwrap(), vec![format!("{repo}:build"), format!("{repo}:final")]);

        assert!(images.remove(&tag).await.unwrap());
        assert!(images.remove(&format!("{repo}:final")).await.unwrap());
        assert!(!images.remove(&format!("{repo}:final")).await.unwrap());
        assert!(!images.exists(&id).await.unwrap());
        assert!(matches!(images.inspect(&tag).await, Err(ImageError::NotFound { .. })));
    }

    #[tokio::test]
    async fn a_failing_build_names_the_tag_and_the_builder_error() {
        let images = Images::connect().await.unwrap();
        let mut context = BuildContext::new();
        context.add_file("Dockerfile", b"FROM scratch\nCOPY missing /missing\n".to_vec(), 0o644).unwrap();
        let tag = format!("{}:broken", unique_name("edge-image-test"));
        let err = images.build_image(&context, &BuildRequest::new(&tag)).await.unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, ImageError::Build { .. }), "{message}");
        assert!(message.contains(&tag) && message.contains("missing"), "{message}");
        assert!(!images.exists(&tag).await.unwrap());
    }

    #[tokio::test]
    async fn push_to_a_registry_that_does_not_answer_fails_clearly() {
        let images = Images::connect().await.unwrap();
        // Port 9 on loopback: nothing listens there, so the engine is refused at once.
        let repo = format!("127.0.0.1:9/{}", unique_name("edge-image-test"));
        let tag = format!("{repo}:push");
        images.build_image(&scratch_context(&repo), &BuildRequest::new(&tag)).await.unwrap();
        let err = images.push(&tag, None).await.unwrap_err();
        images.remove(&tag).await.unwrap();
        let message = err.to_string();
        assert!(matches!(err, ImageError::Push { .. }), "{message}");
        assert!(message.contains(&tag), "{message}");
    }

    #[tokio::test]
    async fn running_in_a_missing_image_fails_at_create() {
        let images = Images::connect().await.unwrap();
        let image = format!("{}:absent", unique_name("edge-image-test"));
        let err = images.run_to_completion(&image, &["naive", "--version"], Duration::from_secs(30)).await.unwrap_err();
        assert!(matches!(err, ImageError::Run { step: "create", .. }), "{err}");
    }
}
