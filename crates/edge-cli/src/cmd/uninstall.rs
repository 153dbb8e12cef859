//! `edge uninstall --yes`: [`edge_deploy::uninstall`], then the report.

use edge_channels::DockerEngine;
use edge_deploy::UninstallRequest;
use edge_deploy::identity::BackupLayout;

use crate::args::UninstallArgs;
use crate::rt::block_on;
use crate::settings::Settings;
use crate::{ExitStatus, UsageError, op_error};

pub(crate) fn run(settings: &Settings, args: UninstallArgs) -> anyhow::Result<ExitStatus> {
    let node = settings.node()?;
    if !args.yes {
        return Err(UsageError(format!(
            "uninstall removes the containers and files of {}; pass --yes to confirm (identity files are backed up first)",
            node.name()
        ))
        .into());
    }
    let backup_layout = match &args.backup_dir {
        Some(dir) => BackupLayout::Legacy(dir.clone()),
        None => BackupLayout::Edge,
    };
    let request = UninstallRequest { purge_volumes: args.purge_volumes, backup_layout };
    let report = block_on(async {
        let engine = DockerEngine::connect().await?;
        edge_deploy::uninstall(&engine, &node, &request).await.map_err(op_error)
    })??;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for w in &report.warnings {
            eprintln!("warning: {w}");
        }
        match &report.backup {
            Some(dir) => outln!("backup of the identity and install.env: {}", dir.display()),
            None => outln!("nothing to back up: no identity files"),
        }
        outln!(
            "removed containers: {}",
            if report.containers_removed.is_empty() { "none".to_owned() } else { report.containers_removed.join(", ") }
        );
        if !report.volumes_removed.is_empty() {
            outln!("removed volumes: {}", report.volumes_removed.join(", "));
        }
        if !report.volumes_kept.is_empty() {
            outln!("kept volumes: {} (--purge-volumes removes them)", report.volumes_kept.join(", "));
        }
        outln!("removed {} files", report.files_removed.len());
        match &report.backup {
            Some(dir) => outln!(
                "done: {} uninstalled; reinstall with the same identity: edge install --restore-from {}",
                report.stack,
                dir.display()
            ),
            None => outln!("done: {} uninstalled", report.stack),
        }
    }
    Ok(if report.warnings.is_empty() { ExitStatus::Success } else { ExitStatus::Degraded })
}
