//! The stack manifest: services, channels, templates, secrets and volumes as data.
//!
//! String fields marked "template" may hold `{{ VAR }}` references; the
//! renderer resolves them against the stack's variables.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::CoreError;
use crate::envfile::is_env_key;

/// A whole stack: everything `edge` manages on one host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Stack {
    /// Names and host paths.
    pub stack: StackMeta,
    /// Default values of variables (lowest precedence).
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    /// Channels, in front-proxy failover priority order.
    #[serde(default)]
    pub channels: Vec<Channel>,
    /// Containers.
    #[serde(default)]
    pub services: Vec<Service>,
    /// Files rendered from templates.
    #[serde(default)]
    pub templates: Vec<Template>,
    /// Identity and generated secrets, created once.
    #[serde(default)]
    pub secrets: Vec<Secret>,
    /// Named volumes the services use.
    #[serde(default)]
    pub volumes: Vec<String>,
    /// SQLite databases on volumes that `edge backup` copies (`[[backup]]`).
    #[serde(default, rename = "backup", skip_serializing_if = "Vec::is_empty")]
    pub backups: Vec<BackupEntry>,
    /// Requests sent through the front proxy after install (`edge smoke`), each with what it
    /// must answer.
    #[serde(default)]
    pub smoke: Vec<SmokeCheck>,
}

/// One SQLite database on a named volume that `edge backup` copies and `edge restore` puts back.
///
/// The copy is made next to the file by the service's own image (`IMAGE backup SRC DST`, SQLite's
/// online backup API): the volume's host mountpoint is not portable across engines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupEntry {
    /// The service writing the database: its image runs the backup, and a restore stops it.
    pub service: String,
    /// The named volume holding the database (declared in `volumes`).
    pub volume: String,
    /// The database file, relative to the volume's root, e.g. `app.db`.
    pub path: String,
    /// How many backups to keep; older ones are deleted after a new one is checked.
    #[serde(default = "default_keep")]
    pub keep: u32,
}

fn default_keep() -> u32 {
    7
}

/// One smoke check: a request through the front proxy (`[stack] front_url`) and what it must
/// answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SmokeCheck {
    /// HTTP method.
    #[serde(default = "default_smoke_method")]
    pub method: String,
    /// Path (and query) on the front URL, from `/` (template: like the header, it may name the
    /// stack's variables and generated secrets).
    pub path: String,
    /// One request header, `Name: value` (template: may name a generated secret).
    #[serde(default)]
    pub header: Option<String>,
    /// The status it must answer.
    #[serde(default)]
    pub status: Option<u16>,
    /// Text its body must contain.
    #[serde(default)]
    pub body: Option<String>,
}

fn default_smoke_method() -> String {
    "GET".to_owned()
}

/// Names and host paths of a stack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StackMeta {
    /// Stack name, e.g. `oxpulse-partner-edge`.
    pub name: String,
    /// One line saying what the stack is.
    #[serde(default)]
    pub description: String,
    /// Compose project label put on every container, so `docker compose ps` sees them.
    pub compose_project: String,
    /// The Docker network the services share.
    pub network: String,
    /// Config dir (rendered configs, identity files).
    pub config_dir: PathBuf,
    /// State dir (status files).
    pub state_dir: PathBuf,
    /// Where systemd units are installed.
    #[serde(default = "default_systemd_dir")]
    pub systemd_dir: PathBuf,
    /// Variables that must be set for anything to render (e.g. `PARTNER_ID`).
    #[serde(default)]
    pub required_variables: Vec<String>,
    /// Lines printed after a successful install (templates).
    #[serde(default)]
    pub summary: Vec<String>,
    /// Variables node-config.json may set besides the channels' `requires`; any other key
    /// of it is an error.
    #[serde(default)]
    pub node_config_variables: Vec<String>,
    /// Variables holding an address (`host:port`) that must be on loopback, such as an
    /// unauthenticated admin endpoint.
    #[serde(default)]
    pub loopback_variables: Vec<String>,
    /// What names a service in the rendered compose file and in its containers'
    /// `com.docker.compose.service` label (so `docker-compose ps/logs` find them).
    #[serde(default, skip_serializing_if = "ComposeKey::is_default")]
    pub compose_key: ComposeKey,
    /// The front proxy's URL as clients use it (template), e.g. `https://{{ APP_DOMAIN }}`;
    /// smoke checks go there, connecting to this host's loopback whatever the name resolves to.
    #[serde(default)]
    pub front_url: Option<String>,
    /// A PEM file (template) of a root that the front proxy's certificate may chain to besides
    /// the system roots, e.g. a test ACME CA's; empty means none.
    #[serde(default)]
    pub front_ca: Option<String>,
    /// Kernel settings the stack needs on its host (`sysctl` keys and values), written to a
    /// `sysctl.d` drop-in and applied on the real root, e.g. `net.ipv4.tcp_migrate_req = "1"`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub host_sysctls: BTreeMap<String, String>,
}

/// The key of a service in the compose file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ComposeKey {
    /// The service's `name` (`naive`).
    #[default]
    Name,
    /// The service's `container` (`oxpulse-partner-naive`), as the legacy installer's compose
    /// file has it.
    Container,
}

impl ComposeKey {
    fn is_default(&self) -> bool {
        *self == Self::Name
    }
}

impl StackMeta {
    /// The compose key of `service`.
    pub fn compose_key_of<'a>(&self, service: &'a Service) -> &'a str {
        match self.compose_key {
            ComposeKey::Name => &service.name,
            ComposeKey::Container => &service.container,
        }
    }
}

fn default_systemd_dir() -> PathBuf {
    PathBuf::from("/etc/systemd/system")
}

/// A user-facing tunnel path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Channel {
    /// Id and status key, e.g. `xray`.
    pub id: String,
    /// What it is, e.g. `CH1 xray VLESS-Reality`.
    #[serde(default)]
    pub description: String,
    /// A required channel failing fails the whole install.
    #[serde(default)]
    pub required: bool,
    /// Variables that must all be non-empty for the channel to be configured;
    /// an optional channel missing any of them is `skipped`.
    #[serde(default)]
    pub requires: Vec<String>,
    /// The dial address the front proxy uses for this channel (template), if it carries traffic.
    #[serde(default)]
    pub upstream: Option<String>,
    /// A required channel whose `requires` are not all set is `skipped` instead of failing
    /// the render: it is required once configured (a mesh with no peer yet).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skip_unconfigured: bool,
    /// Names the legacy bash installer gave this channel's upstream (`xray-client:3080`): lines
    /// of `upstream-state.env` under them are read as this channel's, so a takeover sends no
    /// spurious transition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub legacy_upstreams: Vec<String>,
}

/// A `[stack] host_sysctls` entry: a dotted key of lowercase names (it becomes a path under
/// `/proc/sys`, so no `/` or `..`) and a value of plain words (it lands in a `sysctl.d` line).
fn check_sysctl(key: &str, value: &str) -> Result<(), String> {
    let part_ok = |p: &str| {
        !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-".contains(&b))
    };
    if key.split('.').count() < 2 || !key.split('.').all(part_ok) {
        return Err(format!(
            "[stack] host_sysctls key {key:?} must be a dotted sysctl name such as net.ipv4.tcp_migrate_req"
        ));
    }
    if value.trim().is_empty() || !value.bytes().all(|b| b.is_ascii_alphanumeric() || b" .,:_-".contains(&b)) {
        return Err(format!(
            "[stack] host_sysctls {key} = {value:?}: the value must be letters, digits, spaces or .,:_-"
        ));
    }
    Ok(())
}

impl Stack {
    /// Every channel's legacy upstream names, each with its channel.
    pub fn legacy_upstreams(&self) -> std::collections::BTreeMap<String, String> {
        self.channels.iter().flat_map(|c| c.legacy_upstreams.iter().map(move |u| (u.clone(), c.id.clone()))).collect()
    }
}

/// A Linux capability name as Docker takes it (`NET_BIND_SERVICE` or `CAP_NET_BIND_SERVICE`);
/// `ALL` is refused: adding every capability back undoes the default drop.
fn is_capability(name: &str) -> bool {
    let bare = name.strip_prefix("CAP_").unwrap_or(name);
    !bare.is_empty()
        && bare != "ALL"
        && bare.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        && bare.as_bytes()[0].is_ascii_uppercase()
}

/// One container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Compose service name, e.g. `naive`.
    pub name: String,
    /// Container name, e.g. `oxpulse-partner-naive`.
    pub container: String,
    /// Image reference (template); `--images NAME=REF` overrides it.
    pub image: String,
    /// Deployed only while this channel is active.
    #[serde(default)]
    pub channel: Option<String>,
    /// Command arguments (templates). Never a credential.
    #[serde(default)]
    pub command: Vec<String>,
    /// Non-secret environment (templates). Visible in `docker inspect`: never a credential.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Published ports.
    #[serde(default)]
    pub ports: Vec<PortMapping>,
    /// Named volumes or host paths.
    #[serde(default)]
    pub volumes: Vec<VolumeMount>,
    /// Rendered files mounted read-only.
    #[serde(default)]
    pub files: Vec<FileMount>,
    /// Network aliases on the stack network.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// `host` to share the host's network instead of the stack network.
    #[serde(default)]
    pub network_mode: Option<String>,
    /// Join a bridge network of its own ([`Service::network`]) instead of the stack network:
    /// no other container of the stack reaches it, while its published ports still answer.
    #[serde(default)]
    pub own_network: bool,
    /// Put the stack's generated `.env` values (`env-file` secrets) into this container's
    /// environment, for an app that reads them nowhere else. They then show in `docker
    /// inspect`, and render and install say so. Off by default: secrets travel in files
    /// mounted read-only.
    #[serde(default)]
    pub secrets_in_env: bool,
    /// User to run as (`uid:gid` or name).
    #[serde(default)]
    pub user: Option<String>,
    /// Services that must be healthy before this one starts.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Container health check, run by Docker inside the container: the image needs the tool
    /// it names (`wget`...). For an image without one, use `readiness`.
    #[serde(default)]
    pub healthcheck: Option<Healthcheck>,
    /// Readiness probed by edge from the host against a published port: for images with no
    /// shell or `wget`. A service has a `healthcheck` or a `readiness`, not both.
    #[serde(default)]
    pub readiness: Option<ReadinessProbe>,
    /// Restart policy.
    #[serde(default = "default_restart")]
    pub restart: String,
    /// json-file log rotation.
    #[serde(default)]
    pub logging: LogRotation,
    /// Linux capabilities added back, e.g. `NET_BIND_SERVICE`: every container starts with
    /// `no-new-privileges` and all capabilities dropped, so this names all the image needs.
    #[serde(default)]
    pub cap_add: Vec<String>,
    /// Run on a read-only root filesystem; what must stay writable is a volume or `tmpfs`.
    #[serde(default)]
    pub read_only: bool,
    /// Paths mounted as an empty in-memory filesystem, e.g. `/tmp`, optionally with mount
    /// options after a colon (`/tmp:size=64m`).
    #[serde(default)]
    pub tmpfs: Vec<String>,
    /// How the running container takes a new version of one of its rendered files in place,
    /// instead of being recreated (the front proxy's config).
    #[serde(default)]
    pub reload: Option<Reload>,
}

/// A rendered file a running service takes in place: a change to it is applied through the
/// service's own interface and keeps the container, its id and its connections. Only that
/// file's contents leave the container's spec hash; any other change still recreates it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Reload {
    /// The template (one the service mounts) whose new contents are applied in place.
    pub template: String,
    /// How they are applied.
    pub via: ReloadVia,
    /// Where (template): for `caddy-admin`, the admin endpoint `host:port` on loopback.
    pub admin: String,
}

/// The interface a running service takes a new config through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ReloadVia {
    /// Caddy's admin API: `POST /load` with the Caddyfile (Caddy swaps configs gracefully and
    /// keeps the running one when it rejects the new one).
    #[serde(rename = "caddy-admin")]
    CaddyAdmin,
}

impl ReloadVia {
    /// Its manifest name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CaddyAdmin => "caddy-admin",
        }
    }
}

fn default_restart() -> String {
    "unless-stopped".to_owned()
}

impl Service {
    /// The bridge network it joins: its own (`STACK-NETWORK-SERVICE`) or the stack's; `None`
    /// with a `network_mode` such as `host`.
    pub fn network(&self, stack: &StackMeta) -> Option<String> {
        if self.network_mode.as_deref().is_some_and(|m| !m.trim().is_empty()) {
            None
        } else if self.own_network {
            Some(format!("{}-{}", stack.network, self.name))
        } else {
            Some(stack.network.clone())
        }
    }
}

/// A published port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PortMapping {
    /// Host address to bind (template), e.g. `127.0.0.1`; all addresses when absent.
    #[serde(default)]
    pub host_ip: Option<String>,
    /// Host port (template).
    pub host: String,
    /// Container port (template).
    pub container: String,
    /// `tcp` or `udp`.
    #[serde(default = "default_protocol")]
    pub protocol: String,
}

fn default_protocol() -> String {
    "tcp".to_owned()
}

/// A named volume or host path mounted into a container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeMount {
    /// Named volume (declared in `volumes`) or absolute host path (template).
    pub source: String,
    /// Path inside the container.
    pub target: String,
    /// Mount read-only.
    #[serde(default)]
    pub read_only: bool,
}

/// A rendered file mounted read-only into a container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileMount {
    /// The template's name.
    pub template: String,
    /// Path inside the container.
    pub target: String,
}

/// A container health check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Healthcheck {
    /// Docker's test, e.g. `["CMD", "wget", "-q", "--spider", "http://127.0.0.1:3080/api/health"]`.
    pub test: Vec<String>,
    /// Seconds between checks.
    #[serde(default = "default_interval")]
    pub interval_secs: u64,
    /// Seconds a check may take.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Consecutive failures before unhealthy.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Grace period after start, in seconds.
    #[serde(default)]
    pub start_period_secs: u64,
}

fn default_interval() -> u64 {
    10
}
fn default_timeout() -> u64 {
    3
}
fn default_retries() -> u32 {
    3
}

/// A readiness probe edge runs from the host against a port the service publishes (on
/// loopback or all addresses), or the service's own port when it shares the host's network.
///
/// In TOML: `readiness = { http = { port = "{{ APP_PORT }}", path = "/healthz" } }` or
/// `readiness = { tcp = { port = "{{ APP_PORT }}" } }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum ReadinessProbe {
    /// Ready when `GET http://127.0.0.1:PORT/PATH` answers 2xx.
    Http {
        /// Host port (template).
        port: String,
        /// Path starting with `/` (template).
        path: String,
    },
    /// Ready when a connection to `127.0.0.1:PORT` is accepted and stays open: Docker's proxy
    /// accepts for a container that does not listen, then closes at once.
    Tcp {
        /// Host port (template).
        port: String,
    },
}

impl ReadinessProbe {
    /// The host port (template).
    pub fn port(&self) -> &str {
        match self {
            Self::Http { port, .. } | Self::Tcp { port } => port,
        }
    }
}

/// json-file log rotation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogRotation {
    /// Size before rotation, e.g. `10m`.
    pub max_size: String,
    /// Files kept.
    pub max_file: u32,
}

impl Default for LogRotation {
    fn default() -> Self {
        Self { max_size: "10m".to_owned(), max_file: 3 }
    }
}

/// A file rendered from a template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Template {
    /// Name used on the command line, e.g. `caddy` in `edge render caddy`.
    pub name: String,
    /// Source file in the stack's `templates/` folder.
    pub source: String,
    /// Output file name, relative to the config dir (or the systemd dir for `systemd` templates).
    pub output: String,
    /// Output format: decides how values are escaped.
    pub format: TemplateFormat,
    /// Rendered only while this channel is configured; its failure marks the channel `failed_at_render`.
    #[serde(default)]
    pub channel: Option<String>,
    /// File mode; files holding credentials are 0600.
    #[serde(default = "default_mode")]
    pub mode: u32,
}

fn default_mode() -> u32 {
    0o644
}

/// Output format of a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TemplateFormat {
    /// A Caddyfile.
    Caddyfile,
    /// JSON.
    Json,
    /// YAML (compose files, client configs).
    Yaml,
    /// KEY=VALUE env file.
    Env,
    /// A systemd unit, installed into the systemd dir.
    Systemd,
    /// A WireGuard (wg-quick, AmneziaWG) interface config: `Key = value` lines. It makes its
    /// channel a host-level interface named after the output file (`awg0.conf` is `awg0`).
    Wireguard,
    /// Plain text, no escaping.
    Text,
}

/// A secret generated once and never overwritten.
// No deny_unknown_fields here: serde does not support it with `flatten`; SecretKind denies them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Secret {
    /// Variable prefix its values are exposed under, e.g. `REALITY` gives `REALITY_PUBLIC_KEY`.
    pub name: String,
    /// What to generate.
    #[serde(flatten)]
    pub kind: SecretKind,
}

/// What a secret is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum SecretKind {
    /// X25519 key pair in xray's encoding (base64url, no padding) plus a UUID.
    /// Exposes `NAME_PRIVATE_KEY`, `NAME_PUBLIC_KEY`, `NAME_UUID`.
    RealityKeypair {
        /// Private key file.
        private: String,
        /// Public key file.
        public: String,
        /// UUID file.
        uuid: String,
    },
    /// X25519 key pair in WireGuard's encoding (standard base64).
    /// Exposes `NAME_PRIVATE_KEY`, `NAME_PUBLIC_KEY`.
    WireguardKeypair {
        /// Private key file.
        private: String,
        /// Public key file.
        public: String,
    },
    /// A random token (hex). Exposes `NAME`.
    Token {
        /// Token file.
        file: String,
        /// Random bytes (the hex is twice as long).
        #[serde(default = "default_token_bytes")]
        bytes: usize,
    },
    /// A `.env` file of random values, one per key; missing keys are added, existing ones never change.
    /// Exposes each key.
    EnvFile {
        /// The file, relative to the config dir.
        file: String,
        /// Keys to generate.
        keys: Vec<String>,
        /// Random bytes per value.
        #[serde(default = "default_token_bytes")]
        bytes: usize,
    },
}

fn default_token_bytes() -> usize {
    32
}

const PARTNER_EDGE_TOML: &str = include_str!("../stacks/partner-edge/stack.toml");

/// Embedded template sources of the partner edge, by source file name.
const PARTNER_EDGE_TEMPLATES: &[(&str, &str)] = &[
    ("Caddyfile.tera", include_str!("../stacks/partner-edge/templates/Caddyfile.tera")),
    ("docker-compose.yml.tera", include_str!("../stacks/partner-edge/templates/docker-compose.yml.tera")),
    ("naive-client.json.tera", include_str!("../stacks/partner-edge/templates/naive-client.json.tera")),
    ("xray-client.json.tera", include_str!("../stacks/partner-edge/templates/xray-client.json.tera")),
    ("hysteria2-client.yaml.tera", include_str!("../stacks/partner-edge/templates/hysteria2-client.yaml.tera")),
    ("turnserver.conf.tera", include_str!("../stacks/partner-edge/templates/turnserver.conf.tera")),
    ("edge-watchdog.service.tera", include_str!("../stacks/partner-edge/templates/edge-watchdog.service.tera")),
    ("edge-watchdog.timer.tera", include_str!("../stacks/partner-edge/templates/edge-watchdog.timer.tera")),
    ("awg.conf.tera", include_str!("../stacks/partner-edge/templates/awg.conf.tera")),
];

impl Stack {
    /// The embedded partner-edge stack (SPEC.md's flagship).
    pub fn partner_edge() -> Self {
        StackBundle::partner_edge().stack
    }

    /// Parses and validates a manifest; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, CoreError> {
        let stack: Stack = toml::from_str(text)
            .map_err(|e| CoreError::Manifest { origin: origin.to_owned(), message: e.to_string() })?;
        stack.validate().map_err(|message| CoreError::Manifest { origin: origin.to_owned(), message })?;
        Ok(stack)
    }

    /// The manifest as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// The JSON Schema of the manifest format.
    pub fn json_schema() -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(Stack)).unwrap_or_default()
    }

    /// A channel by id.
    pub fn channel(&self, id: &str) -> Option<&Channel> {
        self.channels.iter().find(|c| c.id == id)
    }

    /// A service by name.
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }

    /// Every network its services may join: the stack network first, then each own network.
    pub fn networks(&self) -> Vec<String> {
        let mut out = vec![self.stack.network.clone()];
        for n in self.services.iter().filter_map(|s| s.network(&self.stack)) {
            if !out.contains(&n) {
                out.push(n);
            }
        }
        out
    }

    /// A template by name.
    pub fn template(&self, name: &str) -> Option<&Template> {
        self.templates.iter().find(|t| t.name == name)
    }

    /// The host-level interface a channel is carried by: its `wireguard` template, and the
    /// interface name (the output's file stem).
    pub fn interface_of(&self, channel: &str) -> Option<(&Template, &str)> {
        let t = self
            .templates
            .iter()
            .find(|t| t.format == TemplateFormat::Wireguard && t.channel.as_deref() == Some(channel))?;
        let name = t.output.rsplit('/').next()?.strip_suffix(".conf")?;
        Some((t, name))
    }

    /// The services that carry a channel.
    pub fn services_of<'a>(&'a self, channel: &'a str) -> impl Iterator<Item = &'a Service> + 'a {
        self.services.iter().filter(move |s| s.channel.as_deref() == Some(channel))
    }

    /// The variables node-config.json may set: every channel's `requires` and the stack's
    /// `node_config_variables`.
    pub fn node_config_variables(&self) -> BTreeSet<&str> {
        let requires = self.channels.iter().flat_map(|c| &c.requires);
        requires.chain(&self.stack.node_config_variables).map(String::as_str).collect()
    }

    /// Flattens node-config.json ([`flatten_node_config`]) and refuses any variable the stack
    /// does not let it set: a node config must not reach paths, binaries or admin addresses.
    pub fn read_node_config(&self, json: &str, path: &Path) -> Result<BTreeMap<String, String>, CoreError> {
        let flat = flatten_node_config(json, path)?;
        let allowed = self.node_config_variables();
        if let Some(key) = flat.keys().find(|k| !allowed.contains(k.as_str())) {
            let list: Vec<&str> = allowed.into_iter().collect();
            return Err(CoreError::NodeConfig {
                path: path.to_owned(),
                message: format!(
                    "it sets {key}, which node-config.json may not set (it may set {}); give other variables with --set or the environment",
                    list.join(", ")
                ),
            });
        }
        Ok(flat)
    }

    /// Checks that every `loopback_variables` entry with a value is a loopback `host:port`.
    pub fn check_loopback<'a>(&self, value_of: impl Fn(&str) -> Option<&'a str>) -> Result<(), String> {
        for name in &self.stack.loopback_variables {
            let Some(value) = value_of(name).filter(|v| !v.is_empty()) else { continue };
            if !is_loopback_address(value) {
                return Err(format!(
                    "{name}={value:?} must be a loopback address (127.0.0.1:PORT, [::1]:PORT or localhost:PORT): it serves an unauthenticated admin endpoint"
                ));
            }
        }
        Ok(())
    }

    /// Checks cross-references; the message names the offending entry.
    pub fn validate(&self) -> Result<(), String> {
        for (key, value) in &self.stack.host_sysctls {
            check_sysctl(key, value)?;
        }
        let mut seen = BTreeSet::new();
        for c in &self.channels {
            if c.id.is_empty() || !c.id.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)) {
                return Err(format!("channel id {:?} must be letters, digits, '_', '.' or '-'", c.id));
            }
            if !seen.insert(c.id.as_str()) {
                return Err(format!("channel {:?} is declared twice", c.id));
            }
            if let Some(v) = c.requires.iter().find(|v| !is_env_key(v)) {
                return Err(format!("channel {:?} requires an invalid variable name {v:?}", c.id));
            }
        }
        let channel_ref = |owner: String, c: &Option<String>| match c {
            Some(id) if self.channel(id).is_none() => Err(format!("{owner} names unknown channel {id:?}")),
            _ => Ok(()),
        };
        let mut names = BTreeSet::new();
        for t in &self.templates {
            if !names.insert(t.name.as_str()) {
                return Err(format!("template {:?} is declared twice", t.name));
            }
            channel_ref(format!("template {:?}", t.name), &t.channel)?;
            if t.format == TemplateFormat::Wireguard {
                let iface = t.output.rsplit('/').next().and_then(|f| f.strip_suffix(".conf")).unwrap_or_default();
                if t.channel.is_none() || !is_interface_name(iface) {
                    return Err(format!(
                        "template {:?} is a wireguard config: it needs a channel and an output named INTERFACE.conf (1 to 15 of a-z, A-Z, 0-9, '_', '=', '+', '.', '-')",
                        t.name
                    ));
                }
            }
            contained(&format!("template {:?} output", t.name), &t.output)?;
            contained(&format!("template {:?} source", t.name), &t.source)?;
        }
        let mut services = BTreeSet::new();
        let mut containers = BTreeSet::new();
        for s in &self.services {
            if !services.insert(s.name.as_str()) {
                return Err(format!("service {:?} is declared twice", s.name));
            }
            if !containers.insert(s.container.as_str()) {
                return Err(format!("container name {:?} is used twice", s.container));
            }
            channel_ref(format!("service {:?}", s.name), &s.channel)?;
            for f in &s.files {
                if self.template(&f.template).is_none() {
                    return Err(format!("service {:?} mounts unknown template {:?}", s.name, f.template));
                }
            }
            if let Some(r) = &s.reload
                && !s.files.iter().any(|f| f.template == r.template)
            {
                return Err(format!("service {:?} reloads template {:?}, which it does not mount", s.name, r.template));
            }
            for v in &s.volumes {
                if !v.source.starts_with('/') && !v.source.contains("{{") && !self.volumes.contains(&v.source) {
                    return Err(format!(
                        "service {:?} mounts volume {:?}, which is not declared in `volumes`",
                        s.name, v.source
                    ));
                }
            }
            for d in &s.depends_on {
                if self.service(d).is_none() {
                    return Err(format!("service {:?} depends on unknown service {d:?}", s.name));
                }
            }
            if s.own_network && s.network(&self.stack).is_none() {
                return Err(format!(
                    "service {:?} asks for its own network but shares the host's (network_mode)",
                    s.name
                ));
            }
            if s.own_network && s.name.bytes().any(|b| !(b.is_ascii_alphanumeric() || b"_.-".contains(&b))) {
                return Err(format!(
                    "service {:?} names its own network: use letters, digits, '_', '.' or '-'",
                    s.name
                ));
            }
            if s.healthcheck.is_some() && s.readiness.is_some() {
                return Err(format!(
                    "service {:?} has both a healthcheck and a readiness probe: keep one (readiness for an image without wget)",
                    s.name
                ));
            }
            if let Some(ReadinessProbe::Http { path, .. }) = &s.readiness
                && !path.starts_with('/')
                && !path.starts_with("{{")
            {
                return Err(format!("service {:?} readiness path {path:?} must start with '/'", s.name));
            }
            if let Some(k) = s.env.keys().find(|k| !is_env_key(k)) {
                return Err(format!("service {:?} has an invalid env name {k:?}", s.name));
            }
            if let Some(c) = s.cap_add.iter().find(|c| !is_capability(c)) {
                return Err(format!(
                    "service {:?} adds capability {c:?}: name one capability such as NET_BIND_SERVICE, not ALL",
                    s.name
                ));
            }
            for t in &s.tmpfs {
                let path = t.split_once(':').map_or(t.as_str(), |(p, _)| p);
                if !path.starts_with('/') || path.split('/').any(|c| c == "..") {
                    return Err(format!("service {:?} tmpfs {t:?} must be an absolute path without '..'", s.name));
                }
            }
        }
        if let Some(k) = self.variables.keys().find(|k| !is_env_key(k)) {
            return Err(format!("invalid variable name {k:?}"));
        }
        for s in &self.secrets {
            if !is_env_key(&s.name) {
                return Err(format!("secret name {:?} must be a variable name", s.name));
            }
            let files: Vec<(&str, &String)> = match &s.kind {
                SecretKind::RealityKeypair { private, public, uuid } => {
                    vec![("private", private), ("public", public), ("uuid", uuid)]
                }
                SecretKind::WireguardKeypair { private, public } => vec![("private", private), ("public", public)],
                SecretKind::Token { file, .. } | SecretKind::EnvFile { file, .. } => vec![("file", file)],
            };
            for (field, file) in files {
                contained(&format!("secret {:?} {field}", s.name), file)?;
            }
        }
        self.validate_backups()?;
        for name in self.stack.node_config_variables.iter().chain(&self.stack.loopback_variables) {
            if !is_env_key(name) {
                return Err(format!("invalid variable name {name:?} in [stack]"));
            }
        }
        self.validate_front()?;
        self.validate_smoke()?;
        Ok(())
    }

    /// `[[backup]]` entries: each names a service of the stack, a volume it mounts, a relative
    /// path in it and `keep` of at least 1, and no database twice.
    fn validate_backups(&self) -> Result<(), String> {
        let mut seen: Vec<(&str, &str)> = Vec::new();
        for (i, b) in self.backups.iter().enumerate() {
            let what = format!("[[backup]] {} ({} on volume {})", i + 1, b.path, b.volume);
            let Some(service) = self.service(&b.service) else {
                let known: Vec<&str> = self.services.iter().map(|s| s.name.as_str()).collect();
                return Err(format!(
                    "{what}: service {:?} is not a service of the stack; name the one that writes the database ({})",
                    b.service,
                    known.join(", ")
                ));
            };
            if !self.volumes.contains(&b.volume) {
                return Err(format!(
                    "{what}: volume {:?} is not declared in `volumes`; declare it and mount it in service {:?}",
                    b.volume, b.service
                ));
            }
            if !service.volumes.iter().any(|v| v.source == b.volume) {
                return Err(format!(
                    "{what}: service {:?} does not mount volume {:?}; name the volume the database is on, in the service that writes it",
                    b.service, b.volume
                ));
            }
            if Path::new(&b.path).components().any(|c| !matches!(c, std::path::Component::Normal(_)))
                || b.path.is_empty()
            {
                return Err(format!(
                    "{what}: path {:?} must be relative to the volume's root, without '..' (e.g. app.db)",
                    b.path
                ));
            }
            if b.keep == 0 {
                return Err(format!("{what}: keep = 0 would delete every backup it takes; keep at least 1"));
            }
            if let Some(j) = seen.iter().position(|(v, p)| *v == b.volume && *p == b.path) {
                return Err(format!("{what}: the same database as [[backup]] {}; name each database once", j + 1));
            }
            seen.push((&b.volume, &b.path));
        }
        Ok(())
    }

    /// `[stack] front_url` is an `http://` or `https://` URL; `front_ca` a PEM file's absolute
    /// path (or a variable, or empty for none), only beside a `front_url`.
    fn validate_front(&self) -> Result<(), String> {
        let meta = &self.stack;
        if let Some(url) = &meta.front_url
            && !url.starts_with("http://")
            && !url.starts_with("https://")
        {
            return Err(format!(
                "[stack] front_url {url:?} must start with http:// or https://: the URL clients use, e.g. \"https://{{{{ APP_DOMAIN }}}}\""
            ));
        }
        if let Some(ca) = &meta.front_ca {
            if !ca.is_empty() && !ca.starts_with('/') && !ca.starts_with("{{") {
                return Err(format!(
                    "[stack] front_ca {ca:?} must be the absolute path of a PEM file (or a variable holding one, or empty for none)"
                ));
            }
            if meta.front_url.is_none() {
                return Err("[stack] front_ca is set without front_url; set front_url or remove front_ca".to_owned());
            }
        }
        Ok(())
    }

    /// `[[smoke]]` entries: a known method, a path from `/`, a status in 100..=599 or a body to
    /// find (or both), a header `Name: value`, a front URL to send them to, no request twice.
    fn validate_smoke(&self) -> Result<(), String> {
        let mut seen: Vec<(&str, &str, Option<&str>)> = Vec::new();
        for (i, c) in self.smoke.iter().enumerate() {
            let what = format!("[[smoke]] {} ({} {})", i + 1, c.method, c.path);
            if self.stack.front_url.is_none() {
                return Err(format!(
                    "{what}: [stack] has no front_url to send it to; set front_url, e.g. \"http://127.0.0.1:8080\""
                ));
            }
            if !c.path.starts_with('/') {
                return Err(format!("{what}: path {:?} must start with '/': a path on the front URL", c.path));
            }
            if !SMOKE_METHODS.contains(&c.method.as_str()) {
                return Err(format!(
                    "{what}: method {:?} is not one of {}; use one of them",
                    c.method,
                    SMOKE_METHODS.join(", ")
                ));
            }
            if c.status.is_none() && c.body.as_deref().is_none_or(str::is_empty) {
                return Err(format!(
                    "{what}: expects nothing; give the status it must answer, text its body must contain, or both"
                ));
            }
            if let Some(s) = c.status.filter(|s| !(100..=599).contains(s)) {
                return Err(format!("{what}: status {s} is not an HTTP status; use one from 100 to 599"));
            }
            if let Some(h) = &c.header {
                let (name, value) = h.split_once(':').unwrap_or((h, ""));
                let name = name.trim();
                if name.is_empty()
                    || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
                {
                    return Err(format!("{what}: header {h:?} has no valid name; write it as 'Name: value'"));
                }
                if value.trim().is_empty() {
                    return Err(format!("{what}: header {h:?} has no value; write it as 'Name: value'"));
                }
            }
            let key = (c.method.as_str(), c.path.as_str(), c.header.as_deref());
            if let Some(j) = seen.iter().position(|k| *k == key) {
                return Err(format!(
                    "{what}: the same request as [[smoke]] {}; put both expectations in one check",
                    j + 1
                ));
            }
            seen.push(key);
        }
        Ok(())
    }
}

/// The methods a `[[smoke]]` check may send.
const SMOKE_METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// A name wg-quick accepts for an interface.
fn is_interface_name(name: &str) -> bool {
    (1..=15).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_=+.-".contains(&b))
}

/// A path of the manifest must stay inside its folder: relative, no `..`, not empty.
fn contained(what: &str, path: &str) -> Result<(), String> {
    let p = Path::new(path);
    if path.is_empty() || p.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
        return Err(format!("{what} {path:?} must be a relative path without '..'"));
    }
    Ok(())
}

/// `127.x.y.z:PORT`, `[::1]:PORT` or `localhost:PORT`.
fn is_loopback_address(value: &str) -> bool {
    if let Ok(addr) = value.parse::<std::net::SocketAddr>() {
        return addr.ip().is_loopback();
    }
    value.rsplit_once(':').is_some_and(|(host, port)| host == "localhost" && port.parse::<u16>().is_ok())
}

/// A stack manifest with its template sources.
#[derive(Debug, Clone)]
pub struct StackBundle {
    /// The manifest.
    pub stack: Stack,
    /// Where it came from (`embedded:partner-edge` or a path), for messages.
    pub origin: String,
    templates: BTreeMap<String, String>,
}

impl StackBundle {
    /// The embedded partner edge.
    pub fn partner_edge() -> Self {
        let origin = "embedded:partner-edge".to_owned();
        // The embedded manifest is checked by the test suite; failing here is a build defect.
        let stack = Stack::from_toml(PARTNER_EDGE_TOML, &origin).expect("embedded partner-edge manifest is valid");
        let templates = PARTNER_EDGE_TEMPLATES.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Self { stack, origin, templates }
    }

    /// Loads `DIR/stack.toml` and the template sources it names from `DIR/templates/`.
    pub fn load(dir: &Path) -> Result<Self, CoreError> {
        let manifest = dir.join("stack.toml");
        let text = std::fs::read_to_string(&manifest).map_err(|e| CoreError::read(&manifest, e))?;
        let origin = manifest.display().to_string();
        let stack = Stack::from_toml(&text, &origin)?;
        let mut templates = BTreeMap::new();
        for t in &stack.templates {
            let path = dir.join("templates").join(&t.source);
            let source = std::fs::read_to_string(&path).map_err(|e| CoreError::read(&path, e))?;
            templates.insert(t.source.clone(), source);
        }
        Ok(Self { stack, origin, templates })
    }

    /// The source text of a template file.
    pub fn template_source(&self, source: &str) -> Option<&str> {
        self.templates.get(source).map(String::as_str)
    }

    /// All template sources, by file name.
    pub fn template_sources(&self) -> impl Iterator<Item = (&str, &str)> {
        self.templates.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// Flattens a node-config.json object into variables: nested keys are joined
/// with `_` and upper-cased (`{"reality": {"public_key": "x"}}` gives
/// `REALITY_PUBLIC_KEY=x`); `-` and `.` in keys become `_`.
pub fn flatten_node_config(json: &str, path: &Path) -> Result<BTreeMap<String, String>, CoreError> {
    let err = |message: String| CoreError::NodeConfig { path: path.to_owned(), message };
    let value: serde_json::Value = serde_json::from_str(json).map_err(|e| err(e.to_string()))?;
    let serde_json::Value::Object(map) = value else {
        return Err(err("the top level must be a JSON object".to_owned()));
    };
    let mut out = BTreeMap::new();
    flatten_into(&mut out, "", &map).map_err(err)?;
    Ok(out)
}

fn flatten_into(
    out: &mut BTreeMap<String, String>,
    prefix: &str,
    map: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), String> {
    for (k, v) in map {
        let key = format!("{prefix}{}", k.to_uppercase().replace(['-', '.'], "_"));
        if !is_env_key(&key) {
            return Err(format!("key {k:?} does not make a variable name"));
        }
        let text = match v {
            serde_json::Value::Object(inner) => {
                flatten_into(out, &format!("{key}_"), inner)?;
                continue;
            }
            serde_json::Value::Null => continue,
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        out.insert(key, text);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_partner_edge_is_valid_and_matches_the_spec() {
        let bundle = StackBundle::partner_edge();
        let s = &bundle.stack;
        let ids: Vec<_> = s.channels.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["xray", "awg", "hysteria2", "naive"]);
        assert!(s.channel("xray").unwrap().required && s.channel("awg").unwrap().required);
        // awg is required once its mesh is configured, skipped before.
        assert!(s.channel("awg").unwrap().skip_unconfigured);
        assert_eq!(s.interface_of("awg").map(|(t, iface)| (t.name.as_str(), iface)), Some(("awg", "awg0")));
        assert!(!s.channel("hysteria2").unwrap().required && !s.channel("naive").unwrap().required);
        for (svc, container) in [
            ("xray", "oxpulse-partner-xray"),
            ("hysteria2", "oxpulse-partner-hy2"),
            ("naive", "oxpulse-partner-naive"),
            ("caddy", "oxpulse-partner-caddy"),
            ("coturn", "oxpulse-partner-coturn"),
            ("sfu", "oxpulse-partner-sfu"),
        ] {
            assert_eq!(s.service(svc).map(|s| s.container.as_str()), Some(container));
        }
        for t in &s.templates {
            assert!(bundle.template_source(&t.source).is_some(), "template {} has no source", t.name);
        }
    }

    #[test]
    fn manifest_errors_name_the_entry() {
        let mut s = Stack::partner_edge();
        s.services[0].channel = Some("nope".into());
        let err = s.validate().unwrap_err();
        assert!(err.contains("unknown channel \"nope\""), "{err}");
        let err = Stack::from_toml("[stack]\nname = 1\n", "x.toml").unwrap_err().to_string();
        assert!(err.starts_with("invalid stack manifest x.toml:"), "{err}");

        let mut s = Stack::partner_edge();
        let caddy = s.services.iter_mut().find(|s| s.name == "caddy").unwrap();
        assert_eq!(caddy.reload.as_ref().map(|r| (r.template.as_str(), r.via)), Some(("caddy", ReloadVia::CaddyAdmin)));
        caddy.reload.as_mut().unwrap().template = "compose".into();
        let err = s.validate().unwrap_err();
        assert_eq!(err, "service \"caddy\" reloads template \"compose\", which it does not mount");
    }

    #[test]
    fn capabilities_and_tmpfs_paths_are_checked() {
        let check = |edit: &dyn Fn(&mut Service), expected: Option<&str>| {
            let mut s = Stack::partner_edge();
            edit(&mut s.services[0]);
            assert_eq!(s.validate().err().as_deref(), expected);
        };
        check(&|s| s.cap_add = vec!["NET_BIND_SERVICE".into(), "CAP_CHOWN".into()], None);
        check(&|s| s.tmpfs = vec!["/tmp".into(), "/run:size=8m".into()], None);
        for bad in ["ALL", "CAP_ALL", "net_admin", "", "NET ADMIN"] {
            let expected = format!(
                "service \"caddy\" adds capability {bad:?}: name one capability such as NET_BIND_SERVICE, not ALL"
            );
            check(&|s| s.cap_add = vec![bad.into()], Some(&expected));
        }
        for bad in ["tmp", "/tmp/../etc", ""] {
            let expected = format!("service \"caddy\" tmpfs {bad:?} must be an absolute path without '..'");
            check(&|s| s.tmpfs = vec![bad.into()], Some(&expected));
        }
    }

    #[test]
    fn channel_clients_join_networks_of_their_own() {
        let s = Stack::partner_edge();
        let network = |name: &str| s.service(name).unwrap().network(&s.stack);
        assert_eq!(network("xray").as_deref(), Some("oxpulse-partner-xray"));
        assert_eq!(network("naive").as_deref(), Some("oxpulse-partner-naive"));
        assert_eq!(network("sfu").as_deref(), Some("oxpulse-partner"));
        assert_eq!(network("caddy"), None, "Caddy is on the host network");
        assert_eq!(
            s.networks(),
            ["oxpulse-partner", "oxpulse-partner-xray", "oxpulse-partner-hysteria2", "oxpulse-partner-naive"]
        );
        let mut bad = s.clone();
        bad.services[0].own_network = true;
        assert_eq!(
            bad.validate().unwrap_err(),
            "service \"caddy\" asks for its own network but shares the host's (network_mode)"
        );
    }

    #[test]
    fn paths_of_the_manifest_stay_inside_its_folder() {
        let check = |edit: &dyn Fn(&mut Stack), expected: &str| {
            let mut s = Stack::partner_edge();
            edit(&mut s);
            assert_eq!(s.validate().unwrap_err(), expected);
        };
        check(
            &|s| s.templates[0].source = "/etc/os-release".into(),
            "template \"caddy\" source \"/etc/os-release\" must be a relative path without '..'",
        );
        check(
            &|s| s.templates[0].source = "../../x".into(),
            "template \"caddy\" source \"../../x\" must be a relative path without '..'",
        );
        check(
            &|s| {
                if let SecretKind::RealityKeypair { private, .. } = &mut s.secrets[0].kind {
                    *private = "/root/.ssh/id_ed25519".into();
                }
            },
            "secret \"EDGE_REALITY\" private \"/root/.ssh/id_ed25519\" must be a relative path without '..'",
        );
        check(
            &|s| {
                if let SecretKind::Token { file, .. } = &mut s.secrets[2].kind {
                    *file = "../../../etc/shadow".into();
                }
            },
            "secret \"EDGE_TOKEN\" file \"../../../etc/shadow\" must be a relative path without '..'",
        );
        check(
            &|s| s.templates[1].output = String::new(),
            "template \"compose\" output \"\" must be a relative path without '..'",
        );
    }

    #[test]
    fn host_sysctls_are_plain_dotted_names_and_plain_values() {
        let check = |key: &str, value: &str, expected: Option<&str>| {
            let mut s = Stack::partner_edge();
            s.stack.host_sysctls = [(key.to_owned(), value.to_owned())].into();
            assert_eq!(s.validate().err().as_deref(), expected, "{key} = {value:?}");
        };
        check("net.ipv4.tcp_migrate_req", "1", None);
        check("net.ipv4.ip_local_port_range", "32768 60999", None);
        let bad_key = "must be a dotted sysctl name such as net.ipv4.tcp_migrate_req";
        for key in ["kernel", "net..ipv4", "net/ipv4/x", "net.ipv4.../../../etc/x", "Net.IPv4.x", ".net.x"] {
            check(key, "1", Some(&format!("[stack] host_sysctls key {key:?} {bad_key}")));
        }
        for value in ["", "  ", "1\nkernel.x = 1", "$(reboot)", "a;b"] {
            check(
                "net.ipv4.x",
                value,
                Some(&format!(
                    "[stack] host_sysctls net.ipv4.x = {value:?}: the value must be letters, digits, spaces or .,:_-"
                )),
            );
        }
    }

    #[test]
    fn node_config_sets_only_what_the_stack_allows() {
        let s = Stack::partner_edge();
        let ok = s.read_node_config(r#"{"reality": {"server": "r", "flow": "x"}}"#, Path::new("n.json")).unwrap();
        assert_eq!(ok["REALITY_FLOW"], "x");
        let err = s.read_node_config(r#"{"caddy_admin": "0.0.0.0:2019"}"#, Path::new("n.json")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid node config n.json: it sets CADDY_ADMIN, which node-config.json may not set"),
            "{err}"
        );
        assert!(s.check_loopback(|_| Some("0.0.0.0:2019")).is_err());
        assert!(s.check_loopback(|_| Some("127.0.0.1:2019")).is_ok());
    }

    #[test]
    fn node_config_flattens_to_variables() {
        let vars = flatten_node_config(
            r#"{"reality": {"server": "r.example", "port": 443, "short-id": "ab"}, "x": null}"#,
            Path::new("n.json"),
        )
        .unwrap();
        assert_eq!(vars["REALITY_SERVER"], "r.example");
        assert_eq!(vars["REALITY_PORT"], "443");
        assert_eq!(vars["REALITY_SHORT_ID"], "ab");
        assert!(flatten_node_config("[1]", Path::new("n.json")).unwrap_err().to_string().contains("n.json"));
    }

    #[test]
    fn readiness_is_one_probe_written_as_data() {
        let toml = |readiness: &str| {
            let mut s = Stack::partner_edge().to_toml();
            s.push_str(&format!(
                "\n[[services]]\nname = \"app\"\ncontainer = \"app\"\nimage = \"app:1\"\n{readiness}\n"
            ));
            Stack::from_toml(&s, "s.toml").map(|s| s.service("app").unwrap().readiness.clone())
        };
        assert_eq!(
            toml("readiness = { http = { port = \"{{ P }}\", path = \"/healthz\" } }").unwrap(),
            Some(ReadinessProbe::Http { port: "{{ P }}".into(), path: "/healthz".into() })
        );
        assert_eq!(
            toml("readiness = { tcp = { port = \"1080\" } }").unwrap(),
            Some(ReadinessProbe::Tcp { port: "1080".into() })
        );
        let err = toml("readiness = { http = { port = \"80\", path = \"healthz\" } }").unwrap_err().to_string();
        assert!(err.ends_with("service \"app\" readiness path \"healthz\" must start with '/'"), "{err}");
        let both = "readiness = { tcp = { port = \"1\" } }\nhealthcheck = { test = [\"CMD\", \"true\"] }";
        let err = toml(both).unwrap_err().to_string();
        assert!(err.contains("service \"app\" has both a healthcheck and a readiness probe"), "{err}");
        assert!(toml("readiness = { exec = { port = \"1\" } }").is_err(), "only http and tcp");
    }

    /// The `[[backup]]`, `[[smoke]]` and `[stack] front_url`/`front_ca` of `input`, appended to
    /// a stack of two services (app mounts `data`, web mounts `logs`) whose `[stack]` table
    /// comes last, are refused at load with `expected`, or load when it is `None`.
    fn check_entries(input: &str, expected: Option<&str>) {
        let base = r#"
volumes = ["data", "logs"]
[[services]]
name = "app"
container = "t-app"
image = "app:1"
volumes = [{ source = "data", target = "/data" }]
[[services]]
name = "web"
container = "t-web"
image = "web:1"
volumes = [{ source = "logs", target = "/logs" }]
[stack]
name = "t"
compose_project = "t"
network = "t"
config_dir = "/etc/t"
state_dir = "/var/lib/t"
"#;
        let got = Stack::from_toml(&format!("{base}{input}"), "t.toml").err().map(|e| e.to_string());
        let expected = expected.map(|e| format!("invalid stack manifest t.toml: {e}"));
        assert_eq!(got, expected, "{input}");
    }

    #[test]
    fn bad_backup_smoke_and_front_entries_are_refused_naming_the_entry_and_field() {
        const FRONT: &str = "front_url = \"http://127.0.0.1:8080\"\n";
        let backup = |fields: &str| format!("[[backup]]\n{fields}\n");
        let smoke = |fields: &str| format!("{FRONT}[[smoke]]\n{fields}\n");
        // Good entries load.
        check_entries(&backup("service = \"app\"\nvolume = \"data\"\npath = \"db/app.db\"\nkeep = 1"), None);
        check_entries(
            &smoke(
                "method = \"POST\"\npath = \"/api/{{ TENANT }}\"\nheader = \"Authorization: Bearer {{ KEY }}\"\nstatus = 401\nbody = \"no\"",
            ),
            None,
        );
        check_entries("front_url = \"https://{{ APP_DOMAIN }}\"\nfront_ca = \"{{ FRONT_CA }}\"", None);
        check_entries(&format!("{FRONT}front_ca = \"\""), None);

        let b1 = "[[backup]] 1 (app.db on volume data)";
        for (fields, expected) in [
            (
                "service = \"db\"\nvolume = \"data\"\npath = \"app.db\"",
                format!("{b1}: service \"db\" is not a service of the stack; name the one that writes the database (app, web)"),
            ),
            (
                "service = \"app\"\nvolume = \"logs\"\npath = \"app.db\"",
                "[[backup]] 1 (app.db on volume logs): service \"app\" does not mount volume \"logs\"; name the volume the database is on, in the service that writes it".to_owned(),
            ),
            (
                "service = \"app\"\nvolume = \"cache\"\npath = \"app.db\"",
                "[[backup]] 1 (app.db on volume cache): volume \"cache\" is not declared in `volumes`; declare it and mount it in service \"app\"".to_owned(),
            ),
            (
                "service = \"app\"\nvolume = \"data\"\npath = \"/data/app.db\"",
                "[[backup]] 1 (/data/app.db on volume data): path \"/data/app.db\" must be relative to the volume's root, without '..' (e.g. app.db)".to_owned(),
            ),
            (
                "service = \"app\"\nvolume = \"data\"\npath = \"../other/app.db\"",
                "[[backup]] 1 (../other/app.db on volume data): path \"../other/app.db\" must be relative to the volume's root, without '..' (e.g. app.db)".to_owned(),
            ),
            (
                "service = \"app\"\nvolume = \"data\"\npath = \"\"",
                "[[backup]] 1 ( on volume data): path \"\" must be relative to the volume's root, without '..' (e.g. app.db)".to_owned(),
            ),
            (
                "service = \"app\"\nvolume = \"data\"\npath = \"app.db\"\nkeep = 0",
                format!("{b1}: keep = 0 would delete every backup it takes; keep at least 1"),
            ),
            (
                "service = \"app\"\nvolume = \"data\"\npath = \"app.db\"\n[[backup]]\nservice = \"app\"\nvolume = \"data\"\npath = \"app.db\"\nkeep = 2",
                "[[backup]] 2 (app.db on volume data): the same database as [[backup]] 1; name each database once".to_owned(),
            ),
        ] {
            check_entries(&backup(fields), Some(&expected));
        }

        let s1 = "[[smoke]] 1 (GET /api/health)";
        for (fields, expected) in [
            (
                "path = \"api/health\"\nstatus = 200",
                "[[smoke]] 1 (GET api/health): path \"api/health\" must start with '/': a path on the front URL".to_owned(),
            ),
            (
                "path = \"http://x/api/health\"\nstatus = 200",
                "[[smoke]] 1 (GET http://x/api/health): path \"http://x/api/health\" must start with '/': a path on the front URL".to_owned(),
            ),
            (
                "method = \"FETCH\"\npath = \"/api/health\"\nstatus = 200",
                "[[smoke]] 1 (FETCH /api/health): method \"FETCH\" is not one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS; use one of them".to_owned(),
            ),
            (
                "method = \"get\"\npath = \"/api/health\"\nstatus = 200",
                "[[smoke]] 1 (get /api/health): method \"get\" is not one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS; use one of them".to_owned(),
            ),
            (
                "path = \"/api/health\"",
                format!("{s1}: expects nothing; give the status it must answer, text its body must contain, or both"),
            ),
            (
                "path = \"/api/health\"\nbody = \"\"",
                format!("{s1}: expects nothing; give the status it must answer, text its body must contain, or both"),
            ),
            ("path = \"/api/health\"\nstatus = 99", format!("{s1}: status 99 is not an HTTP status; use one from 100 to 599")),
            ("path = \"/api/health\"\nstatus = 600", format!("{s1}: status 600 is not an HTTP status; use one from 100 to 599")),
            (
                "path = \"/api/health\"\nstatus = 200\nheader = \"X-Token\"",
                format!("{s1}: header \"X-Token\" has no value; write it as 'Name: value'"),
            ),
            (
                "path = \"/api/health\"\nstatus = 200\nheader = \"X-Token:  \"",
                format!("{s1}: header \"X-Token:  \" has no value; write it as 'Name: value'"),
            ),
            (
                "path = \"/api/health\"\nstatus = 200\nheader = \": abc\"",
                format!("{s1}: header \": abc\" has no valid name; write it as 'Name: value'"),
            ),
            (
                "path = \"/api/health\"\nstatus = 200\nheader = \"X Token: abc\"",
                format!("{s1}: header \"X Token: abc\" has no valid name; write it as 'Name: value'"),
            ),
            (
                "path = \"/api/health\"\nstatus = 200\n[[smoke]]\npath = \"/api/health\"\nbody = \"ok\"",
                "[[smoke]] 2 (GET /api/health): the same request as [[smoke]] 1; put both expectations in one check".to_owned(),
            ),
        ] {
            check_entries(&smoke(fields), Some(&expected));
        }
        check_entries(
            "[[smoke]]\npath = \"/api/health\"\nstatus = 200",
            Some(&format!(
                "{s1}: [stack] has no front_url to send it to; set front_url, e.g. \"http://127.0.0.1:8080\""
            )),
        );

        for (input, expected) in [
            (
                "front_url = \"127.0.0.1:8080\"",
                "[stack] front_url \"127.0.0.1:8080\" must start with http:// or https://: the URL clients use, e.g. \"https://{{ APP_DOMAIN }}\"",
            ),
            (
                "front_url = \"\"",
                "[stack] front_url \"\" must start with http:// or https://: the URL clients use, e.g. \"https://{{ APP_DOMAIN }}\"",
            ),
            (
                "front_url = \"https://app.test\"\nfront_ca = \"ca.pem\"",
                "[stack] front_ca \"ca.pem\" must be the absolute path of a PEM file (or a variable holding one, or empty for none)",
            ),
            (
                "front_ca = \"/etc/ca.pem\"",
                "[stack] front_ca is set without front_url; set front_url or remove front_ca",
            ),
        ] {
            check_entries(input, Some(expected));
        }
    }

    #[test]
    fn toml_round_trips() {
        let s = Stack::partner_edge();
        assert_eq!(Stack::from_toml(&s.to_toml(), "rt").unwrap(), s);
    }
}
