//! `edge rollout` and `edge rollback`: [`edge_deploy::rollout`], then the report.

use edge_channels::DockerEngine;
use edge_deploy::rollout::{RolloutReport, RolloutRequest};
use edge_deploy::{InstallRequest, Outcome};

use crate::args::{RollbackArgs, RolloutArgs};
use crate::progress::Progress;
use crate::rt::block_on;
use crate::settings::Settings;
use crate::{ExitStatus, UsageError, op_error};

pub(crate) fn rollout(settings: &Settings, args: RolloutArgs) -> anyhow::Result<ExitStatus> {
    let node = settings.node()?;
    let install = super::install::request(&args.install);
    if install.images.is_empty() {
        return Err(UsageError("edge rollout needs --images SERVICE=IMAGE: the new release".to_owned()).into());
    }
    let request = RolloutRequest {
        images: install.images.clone(),
        install,
        restore_on_failure: args.restore_on_failure,
        smoke: args.smoke,
        ..RolloutRequest::default()
    };
    let progress = Progress::new();
    let sink = |p| progress.report(p);
    let report = block_on(async {
        let engine = DockerEngine::connect().await?;
        edge_deploy::rollout::rollout(&engine, &node, &request, &sink).await.map_err(op_error)
    })??;
    finish(&report, args.json)
}

pub(crate) fn rollback(settings: &Settings, args: RollbackArgs) -> anyhow::Result<ExitStatus> {
    let node = settings.node()?;
    let request = InstallRequest {
        variables: Settings::variable_sources(&args.vars),
        health_timeout: args.health_timeout,
        docker_config: super::install::docker_config_dir(),
        ..InstallRequest::default()
    };
    let progress = Progress::new();
    let sink = |p| progress.report(p);
    let report = block_on(async {
        let engine = DockerEngine::connect().await?;
        edge_deploy::rollout::rollback(&engine, &node, &request, &sink).await.map_err(op_error)
    })??;
    finish(&report, args.json)
}

fn finish(report: &RolloutReport, json: bool) -> anyhow::Result<ExitStatus> {
    if json {
        outln!("{}", serde_json::to_string_pretty(report)?);
    } else {
        outln!("{}", report.message);
    }
    match report.status {
        Outcome::Success => Ok(ExitStatus::Success),
        _ => anyhow::bail!("{}", report.message),
    }
}
