//! Registries: which one an image reference names, the credentials the docker CLI keeps for it
//! (`$DOCKER_CONFIG/config.json`), and pulls that fail with an error naming the image, the
//! registry and, for a refusal, where the credentials came from.
//!
//! Credentials never reach a log, a `Debug` output or an error message.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

use crate::engine::{Engine, PullProgress, PulledImage};
use crate::{DeployError, EngineError};

/// The registry of images named without one (`caddy:2.10`, `library/caddy`).
pub const DOCKER_HUB: &str = "docker.io";

/// The key the docker CLI files Docker Hub's credentials under in `config.json`.
pub const DOCKER_HUB_AUTH_KEY: &str = "https://index.docker.io/v1/";

/// The file inside the docker config dir that holds `auths`.
pub const CONFIG_FILE: &str = "config.json";

/// Registry credentials. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryCredentials {
    /// The registry user.
    pub username: String,
    /// The password or token.
    pub password: String,
}

impl fmt::Debug for RegistryCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryCredentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The registry host of an image reference, as the docker CLI decides it: the part before the
/// first `/` if it has a `.` or a `:` or is `localhost`, else Docker Hub ([`DOCKER_HUB`]).
pub fn registry_of(reference: &str) -> &str {
    match reference.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => first,
        _ => DOCKER_HUB,
    }
}

/// The registry host an `auths` key names: `https://127.0.0.1:5000/v1/` → `127.0.0.1:5000`;
/// Docker Hub's aliases become [`DOCKER_HUB`].
fn auth_key_host(key: &str) -> &str {
    let host = key.strip_prefix("https://").or_else(|| key.strip_prefix("http://")).unwrap_or(key);
    let host = host.split('/').next().unwrap_or(host);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => DOCKER_HUB,
        h => h,
    }
}

/// One `auths` entry of `config.json`.
#[derive(Clone, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

#[derive(Default, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
}

/// The docker CLI's client config, read for registry credentials only.
///
/// `Debug` shows the path and which registries have credentials, never the credentials.
#[derive(Clone)]
pub struct DockerConfig {
    path: PathBuf,
    file: Option<ConfigFileData>,
}

#[derive(Clone)]
struct ConfigFileData {
    auths: BTreeMap<String, AuthEntry>,
    creds_store: Option<String>,
    cred_helpers: BTreeMap<String, String>,
}

impl fmt::Debug for DockerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let registries: Vec<&String> = self.file.iter().flat_map(|d| d.auths.keys()).collect();
        f.debug_struct("DockerConfig").field("path", &self.path).field("auths", &registries).finish()
    }
}

impl DockerConfig {
    /// Reads `DIR/config.json` (`DIR` is `$DOCKER_CONFIG`, `~/.docker` by default). A missing
    /// file is a config with no credentials; an unreadable or malformed one is an error naming it.
    pub fn load(dir: &Path) -> Result<Self, DeployError> {
        let path = dir.join(CONFIG_FILE);
        let error = |message: String| DeployError::DockerConfig { path: path.clone(), message };
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self { path, file: None }),
            Err(e) => return Err(error(e.to_string())),
        };
        // serde_json's message names line and column, never the value.
        let file: ConfigFile =
            serde_json::from_slice(&bytes).map_err(|e| error(format!("not a docker config: {e}")))?;
        let data = ConfigFileData { auths: file.auths, creds_store: file.creds_store, cred_helpers: file.cred_helpers };
        Ok(Self { path, file: Some(data) })
    }

    /// A config with no file behind it: every pull goes without credentials.
    pub fn empty(dir: &Path) -> Self {
        Self { path: dir.join(CONFIG_FILE), file: None }
    }

    /// Where it was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The credentials `auths` holds for `registry` (a host such as `127.0.0.1:5000`, or
    /// [`DOCKER_HUB`]): the base64 `user:pass` of `auth`, else `username` and `password`.
    pub fn credentials_for(&self, registry: &str) -> Result<Option<RegistryCredentials>, DeployError> {
        let Some(data) = &self.file else { return Ok(None) };
        let Some((key, entry)) = data.auths.iter().find(|(k, _)| auth_key_host(k) == registry) else {
            return Ok(None);
        };
        let bad = |what: &str| DeployError::DockerConfig {
            path: self.path.clone(),
            message: format!("auths entry {key:?}: {what}"),
        };
        if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
            let decoded =
                base64::engine::general_purpose::STANDARD.decode(auth.trim()).map_err(|_| bad("auth is not base64"))?;
            let text = String::from_utf8(decoded).map_err(|_| bad("auth is not UTF-8 once decoded"))?;
            let (username, password) = text.split_once(':').ok_or_else(|| bad("auth is not base64 of user:pass"))?;
            return Ok(Some(RegistryCredentials { username: username.to_owned(), password: password.to_owned() }));
        }
        match (&entry.username, &entry.password) {
            (Some(u), Some(p)) => Ok(Some(RegistryCredentials { username: u.clone(), password: p.clone() })),
            _ => Ok(None),
        }
    }

    /// The credential helper the docker CLI would ask for `registry` (`credHelpers`, else
    /// `credsStore`), as its program name: `docker-credential-pass`.
    pub fn helper_for(&self, registry: &str) -> Option<String> {
        let data = self.file.as_ref()?;
        let helper = data
            .cred_helpers
            .iter()
            .find(|(k, _)| auth_key_host(k) == registry)
            .map(|(_, h)| h)
            .or(data.creds_store.as_ref())?;
        Some(format!("docker-credential-{helper}"))
    }
}

/// Why the engine could not pull an image, as told by its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullFailure {
    /// The registry wants credentials, or refused those given.
    Unauthorized,
    /// The registry did not answer (refused, no route, no such host, timeout).
    Unreachable,
    /// The registry has no such repository or tag.
    NotFound,
    /// Anything else.
    Other,
}

impl PullFailure {
    /// Classifies the engine's answer to a pull. The engine reports most registry failures as
    /// a 500 with the registry's words, so the message decides.
    pub fn of(error: &EngineError) -> Self {
        let m = error.message.to_ascii_lowercase();
        let any = |words: &[&str]| words.iter().any(|w| m.contains(w));
        if error.status == Some(401) || any(&["unauthorized", "no basic auth credentials", "authentication required"]) {
            Self::Unauthorized
        } else if any(&[
            "connection refused",
            "no such host",
            "i/o timeout",
            "no route to host",
            "network is unreachable",
            "connection reset",
            "tls: ",
            "http response to https client",
            "timeout exceeded",
        ]) {
            Self::Unreachable
        } else if error.is_not_found() || any(&["manifest unknown", "not found", "name unknown"]) {
            Self::NotFound
        } else {
            Self::Other
        }
    }
}

/// Pulls `reference` with the credentials `config` holds for its registry, turning the
/// engine's failure into an error that names the image, the registry and, when credentials
/// were refused or missing, the config they came from (or the helper edge does not run).
pub async fn pull<E: Engine>(
    engine: &E,
    reference: &str,
    config: &DockerConfig,
    on_progress: &(dyn Fn(PullProgress) + Send + Sync),
) -> Result<PulledImage, DeployError> {
    let registry = registry_of(reference).to_owned();
    let credentials = config.credentials_for(&registry)?;
    let source = match engine.pull_image(reference, credentials.as_ref(), on_progress).await {
        Ok(pulled) => return Ok(pulled),
        Err(e) => e,
    };
    let image = reference.to_owned();
    Err(match PullFailure::of(&source) {
        PullFailure::Unauthorized if credentials.is_some() => {
            DeployError::RegistryRefused { image, registry, config: config.path().to_owned(), source }
        }
        PullFailure::Unauthorized => {
            let helper = config.helper_for(&registry);
            DeployError::RegistryNeedsCredentials {
                image,
                registry,
                config: config.path().to_owned(),
                helper,
                source: Box::new(source),
            }
        }
        PullFailure::Unreachable => DeployError::RegistryUnreachable { image, registry, source },
        PullFailure::NotFound => DeployError::ImageNotInRegistry { image, registry, source },
        PullFailure::Other => DeployError::PullImage { image, registry, source },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_is_the_first_part_when_it_looks_like_a_host() {
        let check = |reference: &str, expected: &str| assert_eq!(registry_of(reference), expected, "{reference}");
        check("127.0.0.1:5000/edge/caddy:dev", "127.0.0.1:5000");
        check("localhost/caddy", "localhost");
        check("localhost:5000/caddy:2", "localhost:5000");
        check("ghcr.io/oxpulse/naive:1.0", "ghcr.io");
        check("[::1]:5000/caddy:2", "[::1]:5000");
        check("caddy:2.10", DOCKER_HUB);
        check("library/caddy:2.10", DOCKER_HUB);
        check("oxpulse/naive", DOCKER_HUB);
        check("edge-standin:dev", DOCKER_HUB);
        check("127.0.0.1:5000/caddy@sha256:abc", "127.0.0.1:5000");
    }

    fn config(json: &str) -> (tempfile::TempDir, DockerConfig) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CONFIG_FILE), json).unwrap();
        let config = DockerConfig::load(dir.path()).unwrap();
        (dir, config)
    }

    #[test]
    fn credentials_are_read_as_the_docker_cli_writes_them() {
        // "edge:s3cret:with:colons", as `docker login` stores it.
        let auth = base64::engine::general_purpose::STANDARD.encode("edge:s3cret:with:colons");
        let (_dir, config) = config(&format!(
            r#"{{"auths": {{"127.0.0.1:5000": {{"auth": "{auth}"}},
                "https://index.docker.io/v1/": {{"username": "hub", "password": "tok"}},
                "http://registry.test:8443/v2/": {{"auth": "{auth}"}} }}}}"#
        ));
        let creds = |r: &str| config.credentials_for(r).unwrap().map(|c| (c.username, c.password));
        assert_eq!(creds("127.0.0.1:5000"), Some(("edge".into(), "s3cret:with:colons".into())));
        assert_eq!(creds(DOCKER_HUB), Some(("hub".into(), "tok".into())));
        assert_eq!(creds("registry.test:8443"), Some(("edge".into(), "s3cret:with:colons".into())));
        assert_eq!(creds("127.0.0.1:5001"), None);
        assert_eq!(config.helper_for("127.0.0.1:5000"), None);
        let shown = format!("{config:?}");
        assert!(shown.contains("127.0.0.1:5000") && !shown.contains(&auth) && !shown.contains("tok"), "{shown}");
    }

    #[test]
    fn a_missing_config_has_no_credentials_and_a_corrupt_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = DockerConfig::load(dir.path()).unwrap();
        assert_eq!(missing.credentials_for("127.0.0.1:5000").unwrap(), None);
        std::fs::write(dir.path().join(CONFIG_FILE), "{\"auths\": [").unwrap();
        let err = DockerConfig::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("config.json") && err.contains("not a docker config"), "{err}");

        let (_dir, bad) = config(r#"{"auths": {"127.0.0.1:5000": {"auth": "bm90LWEtcGFpcg=="}}}"#);
        let err = bad.credentials_for("127.0.0.1:5000").unwrap_err().to_string();
        assert!(err.contains("127.0.0.1:5000") && err.contains("user:pass"), "{err}");
        assert!(!err.contains("bm90LWEtcGFpcg") && !err.contains("not-a-pair"), "{err}");
    }

    #[test]
    fn helpers_are_named_per_registry_then_globally() {
        let (_dir, config) =
            config(r#"{"credsStore": "desktop", "credHelpers": {"ghcr.io": "pass"}, "auths": {"ghcr.io": {}}}"#);
        assert_eq!(config.helper_for("ghcr.io").as_deref(), Some("docker-credential-pass"));
        assert_eq!(config.helper_for("127.0.0.1:5000").as_deref(), Some("docker-credential-desktop"));
        assert_eq!(config.credentials_for("ghcr.io").unwrap(), None);
    }

    #[test]
    fn engine_answers_to_a_pull_are_classified() {
        // What Docker 20.10 answers for each case, against Debian's docker-registry.
        let check = |status: u16, message: &str, expected: PullFailure| {
            assert_eq!(PullFailure::of(&EngineError::new(Some(status), message)), expected, "{message}");
        };
        check(
            500,
            "Head \"http://127.0.0.1:5731/v2/exp/manifests/one\": no basic auth credentials",
            PullFailure::Unauthorized,
        );
        check(500, "unauthorized: authentication required", PullFailure::Unauthorized);
        check(
            404,
            "manifest for 127.0.0.1:5731/exp:nope not found: manifest unknown: manifest unknown",
            PullFailure::NotFound,
        );
        check(
            500,
            "Get \"http://127.0.0.1:5799/v2/\": dial tcp 127.0.0.1:5799: connect: connection refused",
            PullFailure::Unreachable,
        );
        check(500, "write /var/lib/docker/tmp: no space left on device", PullFailure::Other);
    }

    #[tokio::test]
    async fn failed_pulls_name_the_image_the_registry_and_where_credentials_came_from() {
        use crate::testing::FakeEngine;
        let auth = base64::engine::general_purpose::STANDARD.encode("edge:wrong-pass");
        let (_dir, config) =
            config(&format!(r#"{{"credsStore": "pass", "auths": {{"127.0.0.1:5000": {{"auth": "{auth}"}}}}}}"#));
        let engine = FakeEngine::default();
        let refused = "127.0.0.1:5000/edge/caddy:dev";
        engine.fail_pull(refused, 500, "unauthorized: authentication required");
        let anonymous = "127.0.0.1:5001/edge/caddy:dev";
        engine.fail_pull(
            anonymous,
            500,
            "Head \"http://127.0.0.1:5001/v2/edge/caddy/manifests/dev\": no basic auth credentials",
        );
        let down = "127.0.0.1:5002/edge/caddy:dev";
        engine.fail_pull(
            down,
            500,
            "Get \"http://127.0.0.1:5002/v2/\": dial tcp 127.0.0.1:5002: connect: connection refused",
        );
        let ok = "127.0.0.1:5000/edge/standin:dev";
        engine.publish(ok);

        let quiet = |_: PullProgress| {};
        let err = |reference: &'static str| {
            let (engine, config) = (&engine, &config);
            async move { pull(engine, reference, config, &quiet).await.unwrap_err().to_string() }
        };
        let path = config.path().display().to_string();
        let refused_text = err(refused).await;
        assert!(
            refused_text
                .starts_with(&format!("registry 127.0.0.1:5000 refused the credentials for {refused} (from {path})")),
            "{refused_text}"
        );
        assert!(!refused_text.contains("wrong-pass") && !refused_text.contains(&auth), "{refused_text}");
        assert_eq!(engine.pulled_with_credentials(refused), Some(true));

        let anonymous_text = err(anonymous).await;
        assert!(anonymous_text.starts_with(&format!("registry 127.0.0.1:5001 wants credentials to pull {anonymous} and {path} has none for it (its credentials are kept by docker-credential-pass")), "{anonymous_text}");
        assert_eq!(engine.pulled_with_credentials(anonymous), Some(false));

        let down_text = err(down).await;
        assert!(
            down_text.starts_with(&format!("cannot reach registry 127.0.0.1:5002 to pull {down}: ")),
            "{down_text}"
        );
        let missing_text = err("127.0.0.1:5000/edge/nope:dev").await;
        assert!(
            missing_text.starts_with("registry 127.0.0.1:5000 has no image 127.0.0.1:5000/edge/nope:dev: "),
            "{missing_text}"
        );

        let pulled = pull(&engine, ok, &config, &quiet).await.unwrap();
        assert_eq!(engine.image_id(ok).await.unwrap(), Some(pulled.id));
    }
}
