//! `edge backup`, `edge backup list` and `edge restore`: [`edge_deploy::backup`], then the report.

use edge_channels::DockerEngine;
use edge_deploy::Outcome;
use edge_deploy::backup::{BackupInfo, BackupRequest};

use crate::args::{BackupArgs, BackupCommand, RestoreArgs};
use crate::progress::Progress;
use crate::rt::block_on;
use crate::settings::Settings;
use crate::{ExitStatus, op_error};

pub(crate) fn backup(settings: &Settings, args: BackupArgs) -> anyhow::Result<ExitStatus> {
    let node = settings.node()?;
    if let Some(BackupCommand::List { json }) = args.command {
        let all = edge_deploy::backup::list(&node).map_err(op_error)?;
        print_list(&all, json)?;
        return Ok(ExitStatus::Success);
    }
    let report = block_on(async {
        let engine = DockerEngine::connect().await?;
        edge_deploy::backup::backup(&engine, &node, &BackupRequest::default()).await.map_err(op_error)
    })??;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitStatus::Success);
    }
    print_list(std::slice::from_ref(&report.backup), false)?;
    for id in &report.removed {
        outln!("  removed {id} (retention)");
    }
    outln!("backup {} taken in {:.1}s: {}", report.backup.id, report.duration_ms as f64 / 1000.0, report.dir.display());
    Ok(ExitStatus::Success)
}

fn print_list(all: &[BackupInfo], json: bool) -> anyhow::Result<()> {
    if json {
        outln!("{}", serde_json::to_string_pretty(all)?);
        return Ok(());
    }
    if all.is_empty() {
        outln!("no backups yet; take one with edge backup");
    }
    for b in all {
        for f in &b.files {
            outln!("{:<20} {}:{:<16} {:>12} bytes  sha256 {}", b.id, f.volume, f.path, f.bytes, f.sha256);
        }
    }
    Ok(())
}

pub(crate) fn restore(settings: &Settings, args: RestoreArgs) -> anyhow::Result<ExitStatus> {
    let node = settings.node()?;
    let request = BackupRequest { health_timeout: args.health_timeout, ..BackupRequest::default() };
    let progress = Progress::new();
    let sink = |p| progress.report(p);
    let report = block_on(async {
        let engine = DockerEngine::connect().await?;
        edge_deploy::backup::restore(&engine, &node, &args.backup, &request, &sink).await.map_err(op_error)
    })??;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        if let Some(smoke) = &report.smoke {
            super::smoke::print_table(smoke);
        }
        outln!("{}", report.message);
    }
    match report.status {
        Outcome::Success => Ok(ExitStatus::Success),
        _ => anyhow::bail!("{}", report.message),
    }
}
