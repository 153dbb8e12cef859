//! `edge render`: one template to a file, or the whole set (all or nothing) to a folder.
//!
//! Variables, lowest precedence first: stack defaults, node-config.json and
//! identity files found in the config dir (read only: render creates no
//! secret), the `--env-from-fixture` file, the process environment, `--set`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use edge_core::{ChannelState, TemplateFormat};
use edge_render::{RenderError, RenderedFile, Renderer, Source, Variables};

use crate::args::{RenderArgs, VariableArgs};
use crate::settings::Settings;
use crate::{ExitStatus, UsageError};

pub(crate) fn run(settings: &Settings, args: RenderArgs) -> anyhow::Result<ExitStatus> {
    let vars = variables(settings, &args.vars)?;
    let renderer = Renderer::new(&settings.bundle);
    match (&args.target, &args.out_dir) {
        (Some(target), _) => {
            let out = args.out.as_deref().ok_or_else(|| UsageError("--out is required with a target".into()))?;
            render_one(&renderer, target, args.tpl.as_deref(), out, &vars, args.json)
        }
        (None, Some(dir)) => render_all(&renderer, dir, &vars, args.json),
        (None, None) => Err(UsageError("give a template to render, or --all --out-dir DIR".into()).into()),
    }
}

/// Builds the variable layers for a render (also used by commands that render before deploying).
pub(crate) fn variables(settings: &Settings, flags: &VariableArgs) -> anyhow::Result<Variables> {
    let stack = &settings.bundle.stack;
    let mut vars = Variables::new(&stack.variables);
    let node_config = settings.paths.config_file("node-config.json");
    match std::fs::read_to_string(&node_config) {
        Ok(text) => {
            let pairs = edge_core::flatten_node_config(&text, &node_config).map_err(|e| UsageError(e.to_string()))?;
            vars = vars.with_layer(Source::NodeConfig, pairs);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        // The config dir is root's (0700): an operator may render without it.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            tracing::warn!("not reading {}: {e}", node_config.display());
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", node_config.display())),
    }
    match edge_render::read_secrets(settings.paths.config_dir(), &stack.secrets) {
        Ok(secrets) => vars = vars.with_layer(Source::Secret, secrets),
        Err(edge_core::CoreError::Read { path, source }) if source.kind() == std::io::ErrorKind::PermissionDenied => {
            tracing::warn!("not reading identity file {}: {source}", path.display());
        }
        Err(e) => return Err(e.into()),
    }
    if let Some(path) = &flags.fixture {
        let text = std::fs::read_to_string(path)
            .map_err(|e| UsageError(format!("cannot read the fixture {}: {e}", path.display())))?;
        let pairs = edge_render::parse_fixture(&text).map_err(|e| UsageError(format!("{}: {e}", path.display())))?;
        vars = vars.with_layer(Source::Fixture, pairs);
    }
    // Non-UTF-8 entries cannot be template values: skipped rather than a panic.
    let env = std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
    vars = vars.with_layer(Source::Environment, env);
    let mut set = Vec::new();
    for pair in &flags.set {
        let (k, v) = pair
            .split_once('=')
            .filter(|(k, _)| is_var_name(k))
            .ok_or_else(|| UsageError(format!("--set {pair:?}: expected KEY=VALUE with KEY a variable name")))?;
        set.push((k.to_owned(), v.to_owned()));
    }
    Ok(vars.with_layer(Source::Flag, set))
}

fn is_var_name(k: &str) -> bool {
    let mut bytes = k.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Template, variable and credential errors are the operator's input: exit 2.
fn classify(err: RenderError) -> anyhow::Error {
    match err {
        RenderError::Write { .. } => anyhow::Error::new(err),
        other => UsageError(other.to_string()).into(),
    }
}

fn render_one(
    renderer: &Renderer,
    target: &str,
    tpl: Option<&Path>,
    out: &Path,
    vars: &Variables,
    json: bool,
) -> anyhow::Result<ExitStatus> {
    let text = match tpl {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| UsageError(format!("cannot read the template {}: {e}", path.display())))?,
        ),
        None => None,
    };
    let contents = renderer.render_template(target, tpl.zip(text.as_deref()), vars).map_err(classify)?;
    let mode = renderer.stack().template(target).map(|t| t.mode).unwrap_or(0o644);
    edge_core::write_atomic_with_mode(out, contents.as_bytes(), mode)?;
    if json {
        println!("{}", serde_json::json!({ "template": target, "out": out, "bytes": contents.len() }));
    } else {
        tracing::info!("rendered {target} to {}", out.display());
    }
    Ok(ExitStatus::Success)
}

fn render_all(renderer: &Renderer, dir: &Path, vars: &Variables, json: bool) -> anyhow::Result<ExitStatus> {
    let mut rendered = renderer.render_stack(vars, &BTreeMap::new()).map_err(classify)?;
    // channels-status.env is staged with the rest, so the folder is all old or all new.
    rendered.files.push(RenderedFile {
        template: "channels-status".into(),
        output: "channels-status.env".into(),
        format: TemplateFormat::Env,
        mode: 0o644,
        contents: rendered.status.to_string(),
    });
    rendered.write_to(dir, &dir.join("systemd"))?;
    let degraded = rendered.channels.iter().any(|c| c.state == ChannelState::FailedAtRender);
    if json {
        let files: Vec<_> = rendered
            .files
            .iter()
            .map(|f| {
                let path = if f.is_systemd_unit() { dir.join("systemd").join(&f.output) } else { dir.join(&f.output) };
                serde_json::json!({ "template": f.template, "path": path, "mode": format!("{:o}", f.mode) })
            })
            .collect();
        println!("{}", serde_json::json!({ "channels": rendered.channels, "pool": rendered.pool, "files": files }));
    } else {
        for line in &rendered.summary {
            println!("{line}");
        }
        println!("rendered {} files into {}", rendered.files.len(), dir.display());
    }
    Ok(if degraded { ExitStatus::Degraded } else { ExitStatus::Success })
}
