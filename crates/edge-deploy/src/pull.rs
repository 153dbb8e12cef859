//! The pull phase of install: which images to pull under a [`PullPolicy`], and pulling them
//! all before any container is touched.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use edge_channels::registry::{DockerConfig, registry_of};
use edge_channels::{Desired, Engine, PullProgress};
use futures_util::future::join_all;
use serde::Serialize;

use crate::{OpError, Progress, ProgressSink};

/// When install pulls a service's image.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PullPolicy {
    /// Pull the images the engine does not have.
    #[default]
    Missing,
    /// Pull every image, so that a tag moved in the registry is followed.
    Always,
    /// Pull nothing: a missing image is an error.
    Never,
}

impl PullPolicy {
    /// The words `--pull` takes.
    pub const VALUES: [&'static str; 3] = ["missing", "always", "never"];

    /// Its word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Always => "always",
            Self::Never => "never",
        }
    }
}

impl std::str::FromStr for PullPolicy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "missing" => Ok(Self::Missing),
            "always" => Ok(Self::Always),
            "never" => Ok(Self::Never),
            _ => Err(format!("{text:?}: expected one of {}", Self::VALUES.join(", "))),
        }
    }
}

impl std::fmt::Display for PullPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One image install pulled (or, in a dry run, would pull).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImagePull {
    /// Image reference.
    pub image: String,
    /// Its registry host.
    pub registry: String,
    /// The services that run it.
    pub services: Vec<String>,
    /// Whether the engine had it before.
    pub present: bool,
    /// Its size on the engine once pulled, in bytes (none in a dry run).
    pub size: Option<u64>,
    /// How long the pull took, in milliseconds (none in a dry run).
    pub duration_ms: Option<u64>,
}

/// The images of `desired` to pull under `policy`, by reference, with their services.
pub(crate) async fn images_to_pull<E: Engine>(
    engine: &E,
    desired: &[Desired],
    policy: PullPolicy,
) -> Result<Vec<ImagePull>, OpError> {
    let mut services: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for d in desired {
        services.entry(d.spec.image.as_str()).or_default().push(d.service.clone());
    }
    if policy == PullPolicy::Never {
        return Ok(Vec::new());
    }
    let present = join_all(services.keys().map(|image| engine.image_id(image))).await;
    let mut pulls = Vec::new();
    for ((image, services), id) in services.into_iter().zip(present) {
        let present = id?.is_some();
        if present && policy == PullPolicy::Missing {
            continue;
        }
        pulls.push(ImagePull {
            image: image.to_owned(),
            registry: registry_of(image).to_owned(),
            services,
            present,
            size: None,
            duration_ms: None,
        });
    }
    Ok(pulls)
}

/// Pulls every image of `pulls` at once with the credentials of the docker config in
/// `docker_config` (none: no credentials), each reporting its start, progress and end. All
/// must succeed: the first failure (in `pulls` order) is the error, once every pull ended.
pub(crate) async fn pull_all<E: Engine>(
    engine: &E,
    pulls: &mut [ImagePull],
    docker_config: Option<&PathBuf>,
    progress: ProgressSink<'_>,
) -> Result<(), OpError> {
    if pulls.is_empty() {
        return Ok(());
    }
    let config = match docker_config {
        Some(dir) => DockerConfig::load(dir)?,
        None => DockerConfig::empty(std::path::Path::new("")),
    };
    let results = join_all(pulls.iter().map(|p| {
        let config = &config;
        async move {
            progress(Progress::Note(format!("    pulling {} from {}", p.image, p.registry)));
            let started = Instant::now();
            let on_progress = |state: PullProgress| {
                progress(Progress::Waiting {
                    label: p.image.clone(),
                    state: format!("{} of {}", bytes(state.downloaded), bytes(state.total)),
                    waited: started.elapsed(),
                });
            };
            let result = edge_channels::registry::pull(engine, &p.image, config, &on_progress).await;
            let elapsed = started.elapsed();
            let state = match &result {
                Ok(pulled) => format!("pulled {} in {:.1}s", bytes(pulled.size), elapsed.as_secs_f64()),
                Err(_) => "pull failed".to_owned(),
            };
            progress(Progress::Done { label: p.image.clone(), state, ok: result.is_ok() });
            result.map(|pulled| (pulled.size, elapsed.as_millis() as u64))
        }
    }))
    .await;
    for (p, result) in pulls.iter_mut().zip(results) {
        let (size, ms) = result?;
        p.size = Some(size);
        p.duration_ms = Some(ms);
    }
    Ok(())
}

/// `12.3 MB`, `512 B`: decimal units, as the docker CLI shows pulls.
fn bytes(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.1} GB", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.1} MB", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1} kB", n as f64 / 1e3),
        n => format!("{n} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_from_their_words_only() {
        for word in PullPolicy::VALUES {
            assert_eq!(word.parse::<PullPolicy>().unwrap().as_str(), word);
        }
        assert!("sometimes".parse::<PullPolicy>().unwrap_err().contains("missing, always, never"));
        assert_eq!(PullPolicy::default(), PullPolicy::Missing);
    }

    #[test]
    fn sizes_read_like_the_docker_cli() {
        let check = |n: u64, expected: &str| assert_eq!(bytes(n), expected);
        check(512, "512 B");
        check(1_500, "1.5 kB");
        check(12_345_678, "12.3 MB");
        check(2_000_000_000, "2.0 GB");
    }
}
