//! Errors of the deploy side: one variant per engine operation, each naming its object.

/// What the engine answered when an operation failed: its HTTP status (if it got that far)
/// and its message. No engine-client type crosses the crate boundary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct EngineError {
    /// HTTP status of the engine's answer; `None` when the request never got one.
    pub status: Option<u16>,
    /// The engine's message, or the transport error.
    pub message: String,
}

impl EngineError {
    /// An error with a status and a message.
    pub fn new(status: Option<u16>, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }

    /// Whether the engine said the object does not exist.
    pub fn is_not_found(&self) -> bool {
        self.status == Some(404)
    }

    /// Whether the engine said the object is in a conflicting state (name taken, in use).
    pub fn is_conflict(&self) -> bool {
        self.status == Some(409)
    }

    /// Whether the engine said the operation had nothing to do (already started or stopped).
    pub fn is_not_modified(&self) -> bool {
        self.status == Some(304)
    }
}

/// Everything deploying a stack can fail at. Each variant names the operation and its object.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The engine did not answer.
    #[error("cannot reach the docker engine at {endpoint}: {source}; is dockerd running and DOCKER_HOST right?")]
    EngineUnreachable {
        /// Where the engine was looked for (`unix:///var/run/docker.sock`, `DOCKER_HOST`).
        endpoint: String,
        /// The cause.
        source: EngineError,
    },
    /// The engine's API is older than the driver supports.
    #[error("the docker engine at {endpoint} speaks API {found}, older than the {required} edge needs; upgrade docker")]
    ApiTooOld {
        /// Where the engine is.
        endpoint: String,
        /// Its API version.
        found: String,
        /// The minimum.
        required: String,
    },
    /// Listing containers failed.
    #[error("cannot list the containers of {filter}: {source}")]
    ListContainers {
        /// The label filter used.
        filter: String,
        /// The cause.
        source: EngineError,
    },
    /// Listing volumes failed.
    #[error("cannot list the volumes of {filter}: {source}")]
    ListVolumes {
        /// The label filter used.
        filter: String,
        /// The cause.
        source: EngineError,
    },
    /// Inspecting a container failed.
    #[error("cannot inspect container {name}: {source}")]
    InspectContainer {
        /// Container name.
        name: String,
        /// The cause.
        source: EngineError,
    },
    /// Creating a container failed.
    #[error("cannot create container {name}: {source}")]
    CreateContainer {
        /// Container name.
        name: String,
        /// The cause.
        source: EngineError,
    },
    /// Starting a container failed.
    #[error("cannot start container {name}: {source}")]
    StartContainer {
        /// Container name.
        name: String,
        /// The cause.
        source: EngineError,
    },
    /// Stopping a container failed.
    #[error("cannot stop container {name}: {source}")]
    StopContainer {
        /// Container name.
        name: String,
        /// The cause.
        source: EngineError,
    },
    /// Restarting a container failed.
    #[error("cannot restart container {name}: {source}")]
    RestartContainer {
        /// Container name.
        name: String,
        /// The cause.
        source: EngineError,
    },
    /// Removing a container failed.
    #[error("cannot remove container {name}: {source}")]
    RemoveContainer {
        /// Container name.
        name: String,
        /// The cause.
        source: EngineError,
    },
    /// Renaming a container failed.
    #[error("cannot rename container {name} to {new_name}: {source}")]
    RenameContainer {
        /// Container name.
        name: String,
        /// The name it was to get.
        new_name: String,
        /// The cause.
        source: EngineError,
    },
    /// Copying one volume's contents into another failed.
    #[error("cannot copy volume {from} into volume {to}: {source}")]
    CopyVolume {
        /// Volume copied from.
        from: String,
        /// Volume copied into.
        to: String,
        /// The cause.
        source: EngineError,
    },
    /// Sending a signal to a container failed.
    #[error("cannot send {signal} to container {name}: {source}")]
    KillContainer {
        /// Container name.
        name: String,
        /// The signal, e.g. `SIGHUP`.
        signal: String,
        /// The cause.
        source: EngineError,
    },
    /// Looking an image up failed.
    #[error("cannot inspect image {image}: {source}")]
    InspectImage {
        /// Image reference.
        image: String,
        /// The cause.
        source: EngineError,
    },
    /// A service's image is not on the engine, and was not to be pulled (`--pull never`).
    #[error(
        "image {image} of service {service} is not on the docker engine; pull it (--pull missing), build or load it, or pass --images {service}=REF"
    )]
    ImageMissing {
        /// Service name.
        service: String,
        /// Image reference.
        image: String,
    },
    /// The docker CLI's config (`$DOCKER_CONFIG/config.json`) cannot be read; its
    /// credentials are never part of the message.
    #[error("cannot read the docker config {}: {message}", path.display())]
    DockerConfig {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong, naming the entry but never its value.
        message: String,
    },
    /// The registry refused the credentials the docker config holds for it.
    #[error(
        "registry {registry} refused the credentials for {image} (from {}): {source}; fix them with docker login {registry}",
        config.display()
    )]
    RegistryRefused {
        /// Image reference.
        image: String,
        /// Registry host.
        registry: String,
        /// The docker config the credentials came from.
        config: std::path::PathBuf,
        /// The engine's answer.
        source: EngineError,
    },
    /// The registry wants credentials and the docker config has none for it.
    #[error(
        "registry {registry} wants credentials to pull {image} and {} has none for it{}: {source}; run docker login {registry} or set DOCKER_CONFIG to the folder whose config.json has them",
        config.display(),
        helper.as_deref().map(|h| format!(" (its credentials are kept by {h}, which edge does not run; add an auths entry)")).unwrap_or_default()
    )]
    RegistryNeedsCredentials {
        /// Image reference.
        image: String,
        /// Registry host.
        registry: String,
        /// The docker config looked in.
        config: std::path::PathBuf,
        /// The credential helper the config names for the registry, e.g. `docker-credential-pass`.
        helper: Option<String>,
        /// The engine's answer.
        source: Box<EngineError>,
    },
    /// The registry did not answer.
    #[error("cannot reach registry {registry} to pull {image}: {source}; is the registry up and its address right?")]
    RegistryUnreachable {
        /// Image reference.
        image: String,
        /// Registry host.
        registry: String,
        /// The engine's answer.
        source: EngineError,
    },
    /// The registry has no such repository or tag.
    #[error("registry {registry} has no image {image}: {source}; check the repository and the tag")]
    ImageNotInRegistry {
        /// Image reference.
        image: String,
        /// Registry host.
        registry: String,
        /// The engine's answer.
        source: EngineError,
    },
    /// Pulling an image failed otherwise.
    #[error("cannot pull {image} from registry {registry}: {source}")]
    PullImage {
        /// Image reference.
        image: String,
        /// Registry host.
        registry: String,
        /// The engine's answer.
        source: EngineError,
    },
    /// Creating or inspecting a network failed.
    #[error("cannot create network {name}: {source}")]
    CreateNetwork {
        /// Network name.
        name: String,
        /// The cause.
        source: EngineError,
    },
    /// Removing a network failed.
    #[error("cannot remove network {name}: {source}")]
    RemoveNetwork {
        /// Network name.
        name: String,
        /// The cause.
        source: EngineError,
    },
    /// Creating or inspecting a volume failed.
    #[error("cannot create volume {name}: {source}")]
    CreateVolume {
        /// Volume name.
        name: String,
        /// The cause.
        source: EngineError,
    },
    /// Removing a volume failed.
    #[error("cannot remove volume {name}: {source}")]
    RemoveVolume {
        /// Volume name.
        name: String,
        /// The cause.
        source: EngineError,
    },
    /// Writing a file into a named volume failed.
    #[error("cannot write {path} into volume {volume}: {source}")]
    WriteVolumeFile {
        /// Volume name.
        volume: String,
        /// Path of the file inside the volume.
        path: String,
        /// The cause.
        source: EngineError,
    },
    /// Reading a file from a named volume failed.
    #[error("cannot read {path} from volume {volume}: {source}")]
    ReadVolumeFile {
        /// Volume name.
        volume: String,
        /// Path of the file inside the volume.
        path: String,
        /// The cause.
        source: EngineError,
    },
    /// A path given for a file in a volume is not a plain relative path inside it.
    #[error(
        "path {path:?} in volume {volume} must be relative to the volume, like `gate/marker`: no leading `/`, no `.` or `..`, no empty parts"
    )]
    InvalidVolumePath {
        /// Volume name.
        volume: String,
        /// The rejected path.
        path: String,
    },
    /// A service of the manifest cannot become a container spec (bad port, missing rendered file).
    #[error("service {service}: {message}")]
    InvalidSpec {
        /// Service name.
        service: String,
        /// What is wrong.
        message: String,
    },
    /// A container with a wanted name belongs to another stack; it is never taken over.
    #[error(
        "container {name} belongs to stack {owner}, not {stack}; remove it or give this stack other container names"
    )]
    NameConflict {
        /// Container name.
        name: String,
        /// The stack its labels name.
        owner: String,
        /// The stack being deployed.
        stack: String,
    },
    /// A container with a wanted name was not created by edge (it has no spec-hash label):
    /// edge does not take it over, so that its data is never lost to a recreation.
    #[error(
        "container {name} exists and was not created by edge (it has no edge.spec-hash label); edge does not take over \
         containers it did not create: back up its volumes, then remove it (docker rm {name}) or rename it \
         (docker rename {name} {name}-old) and try again"
    )]
    NotCreatedByEdge {
        /// Container name.
        name: String,
    },
    /// Services depend on each other in a cycle.
    #[error("services depend on each other in a cycle: {services}")]
    DependencyCycle {
        /// The services left unordered.
        services: String,
    },
    /// The HTTP client for health probes could not be built.
    #[error("cannot build the http client for health probes: {message}")]
    HttpClient {
        /// The cause.
        message: String,
    },
    /// A running service did not take its new config in place; it runs the one it had.
    #[error("{service} did not take its new {file} through {via} at {admin}: {message}")]
    Reload {
        /// The service.
        service: String,
        /// The rendered file.
        file: String,
        /// How it was applied (`caddy-admin`).
        via: String,
        /// The endpoint.
        admin: String,
        /// What the service answered (its own error), or why it could not be reached.
        message: String,
    },
}
