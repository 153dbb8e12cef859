//! Uninstall: back up the identity, then remove the stack's containers, its network, its
//! rendered files, identity files and status files. Named volumes survive unless purged;
//! backups always survive.

use std::path::PathBuf;
use std::time::Duration;

use edge_channels::{Engine, LABEL_COMPOSE_PROJECT, LABEL_STACK};
use edge_core::TemplateFormat;
use futures_util::future::join_all;
use serde::Serialize;

use crate::identity::{BackupLayout, backup_as, identity_files};
use crate::install::now_secs;
use crate::{Node, OpError};

/// How to uninstall.
#[derive(Debug, Clone, Default)]
pub struct UninstallRequest {
    /// Also remove the stack's named volumes (their data is lost).
    pub purge_volumes: bool,
    /// The layout of the identity backup: edge's own, or the legacy installer's in a folder
    /// the operator names.
    pub backup_layout: BackupLayout,
}

/// What an uninstall did.
#[derive(Debug, Clone, Serialize)]
pub struct UninstallReport {
    /// The stack.
    pub stack: String,
    /// The backup of the identity and install record.
    pub backup: Option<PathBuf>,
    /// Containers removed.
    pub containers_removed: Vec<String>,
    /// Whether any of the stack's networks was removed.
    pub network_removed: bool,
    /// Named volumes removed.
    pub volumes_removed: Vec<String>,
    /// Named volumes kept.
    pub volumes_kept: Vec<String>,
    /// Files removed.
    pub files_removed: Vec<PathBuf>,
    /// What could not be removed.
    pub warnings: Vec<String>,
}

/// Uninstalls the stack from `engine` and the host.
pub async fn uninstall<E: Engine>(
    engine: &E,
    node: &Node,
    request: &UninstallRequest,
) -> Result<UninstallReport, OpError> {
    let stack = node.stack();
    let paths = &node.paths;
    // The engine must answer before anything is touched.
    engine.version().await?;
    let backup =
        backup_as(paths, stack, now_secs(), &request.backup_layout)?.map(|d| std::path::absolute(&d).unwrap_or(d));
    let mut warnings = Vec::new();

    // The stack's containers, and containers of its manifest names in its Compose project.
    let mut names: Vec<String> =
        engine.list_containers(LABEL_STACK, &stack.stack.name).await?.into_iter().map(|c| c.name).collect();
    for s in &stack.services {
        if names.contains(&s.container) {
            continue;
        }
        if let Some(c) = engine.inspect_container(&s.container).await?
            && c.labels.get(LABEL_COMPOSE_PROJECT) == Some(&stack.stack.compose_project)
        {
            names.push(c.name);
        }
    }
    let removals = join_all(names.iter().map(|n| async move {
        engine.stop_container(n, Duration::from_secs(10)).await?;
        engine.remove_container(n).await
    }))
    .await;
    let mut containers_removed = Vec::new();
    for (name, result) in names.iter().zip(removals) {
        match result {
            Ok(_) => containers_removed.push(name.clone()),
            Err(e) => warnings.push(e.to_string()),
        }
    }

    // The stack network and the channel clients' own networks.
    let mut network_removed = false;
    for network in stack.networks() {
        match engine.remove_network(&network).await {
            Ok(removed) => network_removed |= removed,
            Err(e) => warnings.push(e.to_string()),
        }
    }

    // The manifest's volumes, and those adoption made for the stack (labelled with it).
    let mut volumes = stack.volumes.clone();
    for v in engine.volumes_labelled(LABEL_STACK, &stack.stack.name).await? {
        if !volumes.contains(&v) {
            volumes.push(v);
        }
    }
    let (mut volumes_removed, mut volumes_kept) = (Vec::new(), Vec::new());
    for v in &volumes {
        if request.purge_volumes {
            match engine.remove_volume(v).await {
                Ok(true) => volumes_removed.push(v.clone()),
                Ok(false) => {}
                Err(e) => warnings.push(e.to_string()),
            }
        } else if engine.volume_exists(v).await? {
            volumes_kept.push(v.clone());
        }
    }

    let mut files: Vec<PathBuf> = stack
        .templates
        .iter()
        .map(|t| match t.format {
            TemplateFormat::Systemd => paths.systemd_dir().join(&t.output),
            _ => paths.config_file(&t.output),
        })
        .collect();
    files.extend(identity_files(stack).iter().map(|f| paths.config_file(f)));
    files.extend([paths.channels_status(), paths.upstream_state(), paths.install_env()]);
    files.push(paths.healthcheck_script().to_owned());
    // The live kernel values stay: the drop-in only decides the next boot.
    files.push(paths.sysctl_dropin().to_owned());
    let mut files_removed = Vec::new();
    for f in files {
        match std::fs::remove_file(&f) {
            Ok(()) => files_removed.push(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => warnings.push(format!("cannot remove {}: {e}", f.display())),
        }
    }
    // The config dir goes if nothing else is left in it (an operator's own files stay).
    if std::fs::read_dir(paths.config_dir()).is_ok_and(|mut d| d.next().is_none()) {
        std::fs::remove_dir(paths.config_dir()).map_err(|e| OpError::io("remove", paths.config_dir(), e))?;
    }
    Ok(UninstallReport {
        stack: stack.stack.name.clone(),
        backup,
        containers_removed,
        network_removed,
        volumes_removed,
        volumes_kept,
        files_removed,
        warnings,
    })
}
