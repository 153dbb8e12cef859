//! `cargo xtask bench pull`: how long install's pull phase takes for the demo images (the
//! stand-in channel server and Caddy) from the reference registry on loopback, with htpasswd
//! auth and credentials read from a docker config, as `edge install` pulls them.
//!
//! Each round builds the images with a first layer unique to the round, so the engine shares no
//! layer with them, pushes them to the registry, removes them from the engine, then times the
//! two pulls run at once (as install runs them). The pulled images are removed after the round.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use edge_channels::DockerEngine;
use edge_channels::image::{BuildRequest, Images, RegistryCredentials, unique_name};
use edge_channels::registry::{DockerConfig, pull};
use edge_tests::docker::{build_standin_binary, caddy_context_marked, docker_version, standin_context_marked};
use edge_tests::registry::{Registry, USER};
use futures_util::future::join_all;

/// Options of `cargo xtask bench pull`.
#[derive(Debug, clap::Args)]
pub(crate) struct PullBenchArgs {
    /// Timed rounds, each pulling freshly built images.
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

/// One round: each image's pull time and size, and the wall time of both at once.
struct Round {
    images: Vec<(String, Duration, u64)>,
    wall: Duration,
}

pub(crate) fn run(args: PullBenchArgs) -> anyhow::Result<()> {
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    docker_version().map_err(|e| anyhow::anyhow!("the bench needs the Docker engine and {e}; start dockerd"))?;
    let registry =
        Registry::start().context("starting docker-registry (cargo xtask test --provision-only installs it)")?;
    let config_dir = registry.docker_config("bench", registry.password())?;
    let binary = build_standin_binary()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let mut rounds = Vec::new();
    for round in 0..args.runs {
        eprintln!("==> round {}/{}", round + 1, args.runs);
        rounds.push(runtime.block_on(measure(&registry, &config_dir, &binary))?);
    }
    print_table(&rounds);
    Ok(())
}

async fn measure(registry: &Registry, config_dir: &Path, binary: &Path) -> anyhow::Result<Round> {
    let marker = unique_name("edge-bench-pull");
    let images = Images::connect().await?;
    let credentials = RegistryCredentials { username: USER.to_owned(), password: registry.password().to_owned() };
    let contexts = [
        ("standin", standin_context_marked(binary, true, Some(&marker))?),
        ("caddy", caddy_context_marked(&edge_tests::caddy::Caddy::Current.bin()?, Some(&marker))?),
    ];
    let mut references = Vec::new();
    for (name, context) in contexts {
        let reference = format!("{}/bench/{name}:{marker}", registry.host());
        images.build_image(&context, &BuildRequest::new(reference.as_str())).await?;
        images.push(&reference, Some(&credentials)).await?;
        images.remove(&reference).await?;
        references.push(reference);
    }

    let engine = DockerEngine::connect().await?;
    let config = DockerConfig::load(config_dir)?;
    let quiet = |_| {};
    let started = Instant::now();
    let pulls = join_all(references.iter().map(|r| {
        let (engine, config) = (&engine, &config);
        async move {
            let begun = Instant::now();
            let pulled = pull(engine, r, config, &quiet).await;
            (pulled, begun.elapsed())
        }
    }))
    .await;
    let wall = started.elapsed();
    let mut round = Round { images: Vec::new(), wall };
    for (reference, (pulled, took)) in references.iter().zip(pulls) {
        let pulled = pulled.with_context(|| format!("pulling {reference}"))?;
        let name = reference.rsplit('/').next().unwrap_or(reference).split(':').next().unwrap_or_default();
        round.images.push((name.to_owned(), took, pulled.size));
        images.remove(reference).await?;
    }
    Ok(round)
}

fn print_table(rounds: &[Round]) {
    println!("pull of the demo images from docker-registry on loopback (htpasswd auth), {} rounds", rounds.len());
    println!("  {:<10} {:>10} {:>10} {:>10}", "IMAGE", "SIZE", "MEDIAN", "MAX");
    let names: Vec<String> = rounds.first().map(|r| r.images.iter().map(|i| i.0.clone()).collect()).unwrap_or_default();
    for (i, name) in names.iter().enumerate() {
        let times: Vec<Duration> = rounds.iter().filter_map(|r| r.images.get(i)).map(|x| x.1).collect();
        let size = rounds.first().and_then(|r| r.images.get(i)).map_or(0, |x| x.2);
        let max = times.iter().max().copied().unwrap_or_default();
        println!(
            "  {name:<10} {:>8.1}MB {:>9.2}s {:>9.2}s",
            size as f64 / 1e6,
            super::median(&times).as_secs_f64(),
            max.as_secs_f64()
        );
    }
    let walls: Vec<Duration> = rounds.iter().map(|r| r.wall).collect();
    let max = walls.iter().max().copied().unwrap_or_default();
    println!("  {:<10} {:>10} {:>9.2}s {:>9.2}s", "both", "", super::median(&walls).as_secs_f64(), max.as_secs_f64());
}
