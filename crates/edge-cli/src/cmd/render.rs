//! `edge render`: one template to a file, or the whole set (all or nothing) to a folder.
//!
//! Variables, lowest precedence first: stack defaults, node-config.json and
//! identity files found in the config dir (read only: render creates no
//! secret), the `--env-from-fixture` file, the process environment, `--set`.

use std::collections::BTreeMap;
use std::path::Path;

use edge_core::{ChannelState, TemplateFormat};
use edge_render::{NodeConfigSource, RenderError, RenderedFile, Renderer, Source, Variables};

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

/// The variables of a render: the layers the flags give, the config dir's node-config.json
/// and identity files (read only: render creates no secret).
pub(crate) fn variables(settings: &Settings, flags: &VariableArgs) -> anyhow::Result<Variables> {
    let stack = &settings.bundle.stack;
    let mut sources = Settings::variable_sources(flags);
    let path = settings.paths.config_file(edge_deploy::identity::NODE_CONFIG);
    sources.node_config = Some(NodeConfigSource { path, required: false });
    let (vars, _) = sources.build(stack).map_err(classify)?;
    match edge_render::read_secrets(settings.paths.config_dir(), &stack.secrets) {
        Ok(secrets) => Ok(vars.with_layer(Source::Secret, secrets)),
        // The config dir is root's (0700): an operator may render without it.
        Err(edge_core::CoreError::Read { path, source }) if source.kind() == std::io::ErrorKind::PermissionDenied => {
            tracing::warn!("not reading identity file {}: {source}", path.display());
            Ok(vars)
        }
        Err(e) => Err(e.into()),
    }
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
    for service in renderer.stack().services.iter().filter(|s| s.secrets_in_env) {
        eprintln!(
            "warning: service {} gets the generated secrets in its environment (secrets_in_env = true): anyone who can run docker inspect on {} reads them",
            service.name, service.container
        );
    }
    let mode = renderer.stack().template(target).map(|t| t.mode).unwrap_or(0o644);
    edge_core::write_atomic_with_mode(out, contents.as_bytes(), mode)?;
    if json {
        outln!("{}", serde_json::json!({ "template": target, "out": out, "bytes": contents.len() }));
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
    for w in &rendered.warnings {
        eprintln!("warning: {w}");
    }
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
        outln!("{}", serde_json::json!({ "channels": rendered.channels, "pool": rendered.pool, "files": files }));
    } else {
        for line in &rendered.summary {
            outln!("{line}");
        }
        outln!("rendered {} files into {}", rendered.files.len(), dir.display());
    }
    Ok(if degraded { ExitStatus::Degraded } else { ExitStatus::Success })
}
