//! `edge uninstall --yes`: back up the identity, then remove the stack's containers, its
//! network, its rendered files, identity files and status files. Named volumes survive
//! unless `--purge-volumes`; backups always survive.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use edge_channels::{DockerEngine, Engine, LABEL_COMPOSE_PROJECT, LABEL_STACK};
use edge_core::TemplateFormat;
use futures_util::future::join_all;
use serde::Serialize;

use crate::args::UninstallArgs;
use crate::identity::{backup, identity_files};
use crate::rt::block_on;
use crate::settings::Settings;
use crate::{ExitStatus, UsageError};

#[derive(Debug, Serialize)]
struct Report {
    stack: String,
    backup: Option<PathBuf>,
    containers_removed: Vec<String>,
    network_removed: bool,
    volumes_removed: Vec<String>,
    volumes_kept: Vec<String>,
    files_removed: Vec<PathBuf>,
    warnings: Vec<String>,
}

pub(crate) fn run(settings: &Settings, args: UninstallArgs) -> anyhow::Result<ExitStatus> {
    let stack = &settings.bundle.stack;
    if !args.yes {
        return Err(UsageError(format!(
            "uninstall removes the containers and files of {}; pass --yes to confirm (identity files are backed up first)",
            stack.stack.name
        ))
        .into());
    }
    let report = block_on(uninstall(settings, &args))??;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for w in &report.warnings {
            eprintln!("warning: {w}");
        }
        match &report.backup {
            Some(dir) => println!("backup of the identity and install.env: {}", dir.display()),
            None => println!("nothing to back up: no identity files"),
        }
        println!(
            "removed containers: {}",
            if report.containers_removed.is_empty() { "none".to_owned() } else { report.containers_removed.join(", ") }
        );
        if !report.volumes_removed.is_empty() {
            println!("removed volumes: {}", report.volumes_removed.join(", "));
        }
        if !report.volumes_kept.is_empty() {
            println!("kept volumes: {} (--purge-volumes removes them)", report.volumes_kept.join(", "));
        }
        println!("removed {} files", report.files_removed.len());
        match &report.backup {
            Some(dir) => println!(
                "done: {} uninstalled; reinstall with the same identity: edge install --restore-from {}",
                report.stack,
                dir.display()
            ),
            None => println!("done: {} uninstalled", report.stack),
        }
    }
    Ok(if report.warnings.is_empty() { ExitStatus::Success } else { ExitStatus::Degraded })
}

async fn uninstall(settings: &Settings, args: &UninstallArgs) -> anyhow::Result<Report> {
    let stack = &settings.bundle.stack;
    let paths = &settings.paths;
    // The engine must answer before anything is touched.
    let engine = DockerEngine::connect().await?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let backup = backup(paths, stack, now)?.map(|d| std::path::absolute(&d).unwrap_or(d));
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
    let removals = join_all(names.iter().map(|n| {
        let engine = &engine;
        async move {
            engine.stop_container(n, Duration::from_secs(10)).await?;
            engine.remove_container(n).await
        }
    }))
    .await;
    let mut containers_removed = Vec::new();
    for (name, result) in names.iter().zip(removals) {
        match result {
            Ok(_) => containers_removed.push(name.clone()),
            Err(e) => warnings.push(e.to_string()),
        }
    }

    let network_removed = match engine.remove_network(&stack.stack.network).await {
        Ok(removed) => removed,
        Err(e) => {
            warnings.push(e.to_string());
            false
        }
    };

    let (mut volumes_removed, mut volumes_kept) = (Vec::new(), Vec::new());
    for v in &stack.volumes {
        if args.purge_volumes {
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
        std::fs::remove_dir(paths.config_dir())
            .with_context(|| format!("cannot remove {}", paths.config_dir().display()))?;
    }
    Ok(Report {
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
