//! The renderer: a stack's templates and channels, rendered in memory, written all or nothing.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use edge_core::{
    ChannelState, ChannelsStatus, PoolMember, ReadinessProbe, Service, Stack, StackBundle, Template, TemplateFormat,
};
use serde::Serialize;
use tera::{Context, Tera, Value};

use crate::escape::{self, CaddyPosition, Typed};
use crate::translate::translate;
use crate::{RenderError, Source, Variables};

/// Marks an escaping filter's error so its line can be recovered from tera's error chain.
const ESCAPE_MARK: &str = "\u{1}edge-escape:";

/// Renders the templates of one stack.
#[derive(Debug, Clone)]
pub struct Renderer {
    bundle: StackBundle,
}

/// What happened to one channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChannelOutcome {
    /// Channel id, e.g. `naive`.
    pub id: String,
    /// Its state.
    pub state: ChannelState,
    /// Whether the stack requires it.
    pub required: bool,
    /// Why it is not active (missing credentials, the render error...).
    pub reason: Option<String>,
    /// The front proxy's dial address for it, if it carries traffic.
    pub upstream: Option<String>,
}

/// One rendered file, in memory.
#[derive(Clone, PartialEq, Eq)]
pub struct RenderedFile {
    /// The template's name, e.g. `caddy`.
    pub template: String,
    /// Output path, relative to the config dir (or the systemd dir for systemd units).
    pub output: String,
    /// Its format.
    pub format: TemplateFormat,
    /// File mode.
    pub mode: u32,
    /// The rendered text.
    pub contents: String,
}

impl std::fmt::Debug for RenderedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Client configs hold credentials: only their size is shown.
        f.debug_struct("RenderedFile")
            .field("template", &self.template)
            .field("output", &self.output)
            .field("mode", &format_args!("{:o}", self.mode))
            .field("bytes", &self.contents.len())
            .finish()
    }
}

impl RenderedFile {
    /// Whether the file goes to the systemd dir rather than the config dir.
    pub fn is_systemd_unit(&self) -> bool {
        self.format == TemplateFormat::Systemd
    }
}

/// A whole stack rendered in memory: nothing is written until [`RenderedStack::write_to`].
#[derive(Debug, Clone)]
pub struct RenderedStack {
    /// Every channel, in priority order.
    pub channels: Vec<ChannelOutcome>,
    /// The same as `channels-status.env` records it.
    pub status: ChannelsStatus,
    /// Every rendered file.
    pub files: Vec<RenderedFile>,
    /// Services to deploy (always-on ones and those of active channels), template strings resolved.
    pub services: Vec<Service>,
    /// The front proxy's pool: active channels with an upstream, in priority order.
    pub pool: Vec<PoolMember>,
    /// Lines to print after an install: the stack's summary and one line per channel.
    pub summary: Vec<String>,
    /// The front proxy's URL (`[stack] front_url`, resolved).
    pub front_url: Option<String>,
    /// The extra root its certificate may chain to (`[stack] front_ca`, resolved; none if empty).
    pub front_ca: Option<String>,
    /// What the operator should know before deploying (secrets a service gets in its
    /// environment with `secrets_in_env`).
    pub warnings: Vec<String>,
}

impl RenderedStack {
    /// The rendered file of a template.
    pub fn file(&self, template: &str) -> Option<&RenderedFile> {
        self.files.iter().find(|f| f.template == template)
    }

    /// Writes every file, all or nothing: each is first staged beside its
    /// destination (atomically, with its mode), then all are renamed into place.
    pub fn write_to(&self, config_dir: &Path, systemd_dir: &Path) -> Result<(), RenderError> {
        let mut staged: Vec<(PathBuf, PathBuf)> = Vec::new();
        let cleanup = |staged: &[(PathBuf, PathBuf)]| {
            for (tmp, _) in staged {
                let _ = std::fs::remove_file(tmp);
            }
        };
        for file in &self.files {
            let dest = if file.is_systemd_unit() { systemd_dir } else { config_dir }.join(&file.output);
            let write_err = |source| RenderError::Write { path: dest.clone(), source };
            if let Some(dir) = dest.parent()
                && let Err(e) = std::fs::create_dir_all(dir)
            {
                cleanup(&staged);
                return Err(write_err(edge_core::CoreError::Write { path: dir.to_owned(), source: e }));
            }
            let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let tmp = dest.with_file_name(format!(".{name}.edge-staged"));
            if let Err(e) = edge_core::write_atomic_with_mode(&tmp, file.contents.as_bytes(), file.mode) {
                cleanup(&staged);
                return Err(write_err(e));
            }
            staged.push((tmp, dest));
        }
        for (i, (tmp, dest)) in staged.iter().enumerate() {
            if let Err(e) = std::fs::rename(tmp, dest) {
                cleanup(&staged[i..]);
                return Err(RenderError::Write {
                    path: dest.clone(),
                    source: edge_core::CoreError::Write { path: dest.clone(), source: e },
                });
            }
        }
        let mut dirs: Vec<&Path> = staged.iter().filter_map(|(_, d)| d.parent()).collect();
        dirs.dedup();
        for dir in dirs {
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

/// Whether a required channel without credentials fails the render (a whole stack)
/// or counts as active (one template, so `edge render caddy` works from a partial fixture).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Stack,
    Single,
}

impl Renderer {
    /// A renderer for a stack and its template sources.
    pub fn new(bundle: &StackBundle) -> Self {
        Self { bundle: bundle.clone() }
    }

    /// The stack.
    pub fn stack(&self) -> &Stack {
        &self.bundle.stack
    }

    /// Renders one template of the stack, or an operator's replacement for it
    /// (`override_source`: its path, for messages, and its text).
    ///
    /// A channel's template needs the channel's credentials; the Caddyfile and
    /// compose file get the pool and services the whole stack would have, with
    /// required channels counted active.
    pub fn render_template(
        &self,
        name: &str,
        override_source: Option<(&Path, &str)>,
        vars: &Variables,
    ) -> Result<String, RenderError> {
        let vars = &self.with_config_dir(vars);
        let template = self.template(name)?;
        if let Some(channel) = template.channel.as_deref().and_then(|c| self.stack().channel(c)) {
            let missing = missing(&channel.requires, vars);
            if !missing.is_empty() {
                return Err(RenderError::MissingCredentials { channel: channel.id.clone(), missing });
            }
        }
        let (label, source) = match override_source {
            Some((path, text)) => (path.display().to_string(), text.to_owned()),
            None => (template.name.clone(), self.source(template)?.to_owned()),
        };
        let state = self.evaluate(vars, &BTreeMap::new(), Mode::Single)?;
        let context = self.context(vars, &state)?;
        render_source(&label, &source, template.format, &context, vars)
    }

    /// Renders the whole stack in memory.
    ///
    /// A channel whose credentials are absent is `skipped`, one whose template
    /// fails is `failed_at_render` and the others still render; a required
    /// channel failing fails the whole render. `forced` overrides channel
    /// states (e.g. `failed_at_runtime` after a deploy), so the Caddyfile and
    /// compose file can be rendered again without those channels.
    pub fn render_stack(
        &self,
        vars: &Variables,
        forced: &BTreeMap<String, ChannelState>,
    ) -> Result<RenderedStack, RenderError> {
        let vars = &self.with_config_dir(vars);
        let stack = self.stack();
        let unset: Vec<String> = stack.stack.required_variables.iter().filter(|v| !vars.is_set(v)).cloned().collect();
        if !unset.is_empty() {
            return Err(RenderError::MissingVariables { names: unset });
        }
        let state = self.evaluate(vars, forced, Mode::Stack)?;
        let context = self.context(vars, &state)?;
        let mut files = state.channel_files.clone();
        for t in stack.templates.iter().filter(|t| t.channel.is_none()) {
            let contents = render_source(&t.name, self.source(t)?, t.format, &context, vars)?;
            files.push(rendered(t, contents));
        }
        // Files in the manifest's order, whatever order they rendered in.
        files.sort_by_key(|f| stack.templates.iter().position(|t| t.name == f.template));
        let mut status = ChannelsStatus::default();
        for c in &state.channels {
            status.set(&c.id, c.state);
        }
        let mut summary = Vec::new();
        for (i, line) in stack.stack.summary.iter().enumerate() {
            summary.push(resolve(line, vars, &format!("summary line {}", i + 1))?);
        }
        for c in &state.channels {
            let mut line = format!("{}: {}", c.id, c.state);
            if let Some(up) = &c.upstream
                && c.state == ChannelState::Active
            {
                line.push_str(&format!(" (upstream {up})"));
            }
            if let Some(r) = &c.reason {
                line.push_str(&format!(" — {r}"));
            }
            summary.push(line);
        }
        let optional = |value: &Option<String>, what: &str| -> Result<Option<String>, RenderError> {
            match value {
                Some(v) => Ok(Some(resolve(v, vars, what)?).filter(|v| !v.is_empty())),
                None => Ok(None),
            }
        };
        Ok(RenderedStack {
            channels: state.channels,
            status,
            files,
            services: state.services,
            pool: state.pool,
            summary,
            front_url: optional(&stack.stack.front_url, "front_url")?,
            front_ca: optional(&stack.stack.front_ca, "front_ca")?,
            warnings: state.warnings,
        })
    }

    /// `CONFIG_DIR` defaults to the stack's config dir, so templates and summaries can name files in it.
    fn with_config_dir(&self, vars: &Variables) -> Variables {
        let mut vars = vars.clone();
        if vars.get("CONFIG_DIR").is_none() {
            vars.set("CONFIG_DIR", &self.stack().stack.config_dir.display().to_string(), Source::Default);
        }
        vars
    }

    fn template(&self, name: &str) -> Result<&Template, RenderError> {
        self.stack().template(name).ok_or_else(|| RenderError::UnknownTemplate {
            name: name.to_owned(),
            known: self.stack().templates.iter().map(|t| t.name.clone()).collect(),
        })
    }

    fn source(&self, t: &Template) -> Result<&str, RenderError> {
        self.bundle.template_source(&t.source).ok_or_else(|| RenderError::Render {
            template: t.name.clone(),
            message: format!("the stack has no template source {:?}", t.source),
        })
    }

    /// Decides every channel's state, rendering channel templates on the way.
    fn evaluate(
        &self,
        vars: &Variables,
        forced: &BTreeMap<String, ChannelState>,
        mode: Mode,
    ) -> Result<Evaluated, RenderError> {
        let stack = self.stack();
        let mut out = Evaluated::default();
        let bare_context = self.base_context(vars);
        for channel in &stack.channels {
            let upstream = match &channel.upstream {
                Some(u) => Some(resolve(u, vars, &format!("channel {}, upstream", channel.id))?),
                None => None,
            };
            let mut outcome = ChannelOutcome {
                id: channel.id.clone(),
                state: ChannelState::Active,
                required: channel.required,
                reason: None,
                upstream,
            };
            if let Some(&state) = forced.get(&channel.id).filter(|s| **s != ChannelState::Active) {
                outcome.state = state;
                outcome.reason = Some(format!("marked {state} by the caller"));
                out.channels.push(outcome);
                continue;
            }
            let missing = missing(&channel.requires, vars);
            if !missing.is_empty() {
                match (channel.required && !channel.skip_unconfigured, mode) {
                    (true, Mode::Stack) => {
                        return Err(RenderError::MissingCredentials { channel: channel.id.clone(), missing });
                    }
                    (true, Mode::Single) => {
                        outcome.reason = Some(format!("required; missing {}", missing.join(", ")));
                    }
                    (false, _) => {
                        outcome.state = ChannelState::Skipped;
                        outcome.reason = Some(format!("missing {}", missing.join(", ")));
                    }
                }
                out.channels.push(outcome);
                continue;
            }
            let mut files = Vec::new();
            let mut failure = None;
            for t in stack.templates.iter().filter(|t| t.channel.as_deref() == Some(channel.id.as_str())) {
                match render_source(&t.name, self.source(t)?, t.format, &bare_context, vars) {
                    Ok(contents) => files.push(rendered(t, contents)),
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            match failure {
                None => out.channel_files.extend(files),
                Some(e) if channel.required && mode == Mode::Stack => {
                    return Err(RenderError::RequiredChannel { channel: channel.id.clone(), reason: e.to_string() });
                }
                Some(e) if channel.required => outcome.reason = Some(format!("required; {e}")),
                Some(e) => {
                    outcome.state = ChannelState::FailedAtRender;
                    outcome.reason = Some(e.to_string());
                }
            }
            out.channels.push(outcome);
        }
        for c in &out.channels {
            if let (ChannelState::Active, Some(up)) = (c.state, &c.upstream) {
                out.pool.push(PoolMember { channel: c.id.clone(), upstream: up.clone() });
            }
        }
        let active = |id: &str| out.channels.iter().any(|c| c.id == id && c.state == ChannelState::Active);
        for s in &stack.services {
            if s.channel.as_deref().is_none_or(active) {
                let mut service = resolve_service(s, vars)?;
                if s.secrets_in_env {
                    let keys = secrets_into_env(&mut service, &stack.secrets, vars);
                    out.warnings.push(format!(
                        "service {} gets the generated secrets {} in its environment (secrets_in_env = true): \
                         anyone who can run docker inspect on {} reads them",
                        s.name,
                        if keys.is_empty() { "(none yet)".to_owned() } else { keys.join(", ") },
                        service.container
                    ));
                }
                out.services.push(service);
            }
        }
        Ok(out)
    }

    /// Variables plus the stack's names: what channel templates see.
    fn base_context(&self, vars: &Variables) -> Context {
        let stack = self.stack();
        let mut ctx = Context::new();
        for (k, v) in vars.iter() {
            ctx.insert(k, v);
        }
        ctx.insert(
            "stack",
            &serde_json::json!({
                "name": stack.stack.name,
                "description": stack.stack.description,
                "compose_project": stack.stack.compose_project,
                "network": stack.stack.network,
                "config_dir": stack.stack.config_dir,
                "state_dir": stack.stack.state_dir,
            }),
        );
        ctx.insert("volumes", &stack.volumes);
        ctx
    }

    /// The full context: also `channels`, `pool`, `networks` and `services` (each with the
    /// bridge `network` it joins, each file mount with its host `source`).
    fn context(&self, vars: &Variables, state: &Evaluated) -> Result<Context, RenderError> {
        let mut ctx = self.base_context(vars);
        let config_dir = vars.get("CONFIG_DIR").unwrap_or_default();
        let mut services = Vec::new();
        for s in &state.services {
            let mut value = serde_json::to_value(s)
                .map_err(|e| RenderError::Render { template: format!("service {}", s.name), message: e.to_string() })?;
            if let Some(files) = value.get_mut("files").and_then(Value::as_array_mut) {
                for f in files {
                    let output = f
                        .get("template")
                        .and_then(Value::as_str)
                        .and_then(|t| self.stack().template(t))
                        .map(|t| t.output.clone())
                        .unwrap_or_default();
                    f["source"] = Value::String(format!("{}/{output}", config_dir.trim_end_matches('/')));
                }
            }
            value["network"] = s.network(&self.stack().stack).map_or(Value::Null, Value::String);
            // The compose file's key, and the keys of the services it waits for.
            let meta = &self.stack().stack;
            value["key"] = Value::String(meta.compose_key_of(s).to_owned());
            let key_of = |name: &String| -> String {
                state
                    .services
                    .iter()
                    .find(|o| &o.name == name)
                    .map_or(name.clone(), |o| meta.compose_key_of(o).to_owned())
            };
            value["depends_on_keys"] = s.depends_on.iter().map(|d| Value::String(key_of(d))).collect();
            services.push(value);
        }
        ctx.insert("services", &services);
        // The stack network and the own networks of the services deployed, nothing else.
        let mut networks = vec![self.stack().stack.network.clone()];
        for n in state.services.iter().filter_map(|s| s.network(&self.stack().stack)) {
            if !networks.contains(&n) {
                networks.push(n);
            }
        }
        ctx.insert("networks", &networks);
        ctx.insert("pool", &state.pool);
        ctx.insert("channels", &state.channels);
        Ok(ctx)
    }
}

#[derive(Debug, Default)]
struct Evaluated {
    channels: Vec<ChannelOutcome>,
    channel_files: Vec<RenderedFile>,
    pool: Vec<PoolMember>,
    services: Vec<Service>,
    warnings: Vec<String>,
}

fn rendered(t: &Template, contents: String) -> RenderedFile {
    RenderedFile { template: t.name.clone(), output: t.output.clone(), format: t.format, mode: t.mode, contents }
}

fn missing(requires: &[String], vars: &Variables) -> Vec<String> {
    requires.iter().filter(|v| !vars.is_set(v)).cloned().collect()
}

/// Resolves one template string of the manifest (a service field, an upstream...).
fn resolve(text: &str, vars: &Variables, location: &str) -> Result<String, RenderError> {
    if !text.contains("{{") && !text.contains("{%") {
        return Ok(text.to_owned());
    }
    let mut ctx = Context::new();
    for (k, v) in vars.iter() {
        ctx.insert(k, v);
    }
    render_source(location, text, TemplateFormat::Text, &ctx, vars).map_err(|e| RenderError::Manifest {
        location: location.to_owned(),
        message: match e {
            RenderError::UndefinedVariable { name, hint, .. } => {
                format!("undefined variable {name}{}", hint.map(|h| format!(" ({h})")).unwrap_or_default())
            }
            other => other.to_string(),
        },
    })
}

/// Adds every `env-file` secret's value the variables hold to the service's environment;
/// returns the keys added.
fn secrets_into_env(service: &mut Service, secrets: &[edge_core::Secret], vars: &Variables) -> Vec<String> {
    let mut added = Vec::new();
    for secret in secrets {
        if let edge_core::SecretKind::EnvFile { keys, .. } = &secret.kind {
            for key in keys {
                if let Some(value) = vars.get(key) {
                    service.env.insert(key.clone(), value.to_owned());
                    added.push(key.clone());
                }
            }
        }
    }
    added
}

fn resolve_service(s: &Service, vars: &Variables) -> Result<Service, RenderError> {
    let at = |field: &str| format!("service {}, {field}", s.name);
    let mut out = s.clone();
    out.image = resolve(&s.image, vars, &at("image"))?;
    for arg in &mut out.command {
        *arg = resolve(arg, vars, &at("command"))?;
    }
    for (k, v) in &mut out.env {
        *v = resolve(v, vars, &at(&format!("env {k}")))?;
    }
    for p in &mut out.ports {
        if let Some(ip) = &mut p.host_ip {
            *ip = resolve(ip, vars, &at("ports"))?;
        }
        p.host = resolve(&p.host, vars, &at("ports"))?;
        p.container = resolve(&p.container, vars, &at("ports"))?;
    }
    for v in &mut out.volumes {
        v.source = resolve(&v.source, vars, &at("volumes"))?;
    }
    if let Some(h) = &mut out.healthcheck {
        for t in &mut h.test {
            *t = resolve(t, vars, &at("healthcheck"))?;
        }
    }
    match &mut out.readiness {
        Some(ReadinessProbe::Http { port, path }) => {
            *port = resolve(port, vars, &at("readiness port"))?;
            *path = resolve(path, vars, &at("readiness path"))?;
        }
        Some(ReadinessProbe::Tcp { port }) => *port = resolve(port, vars, &at("readiness port"))?,
        None => {}
    }
    if let Some(r) = &mut out.reload {
        r.admin = resolve(&r.admin, vars, &at("reload admin"))?;
    }
    Ok(out)
}

/// Translates, parses and renders one template source.
fn render_source(
    label: &str,
    source: &str,
    format: TemplateFormat,
    context: &Context,
    vars: &Variables,
) -> Result<String, RenderError> {
    let translated = translate(source, format);
    let mut tera = Tera::default();
    tera.autoescape_on(vec![]);
    register_filters(&mut tera);
    tera.add_raw_template(label, &translated).map_err(|e| syntax_error(label, &translated, &e))?;
    tera.render(label, context).map_err(|e| runtime_error(label, source, &e, vars))
}

/// Where a placeholder stands, as the translated template tells its escaping filter.
struct Place {
    /// 1-based template line.
    line: u64,
    /// The variables in the escaped text (`PARTNER_DOMAIN`, `HOST, PORT`); empty when unknown.
    name: String,
    /// In a Caddyfile: the token's position.
    at: CaddyPosition,
    /// The value begins its token (the template wrote nothing before it).
    start: bool,
    /// The value is its whole token or word.
    whole: bool,
}

impl Place {
    fn from_args(args: &HashMap<String, Value>) -> Self {
        let flag = |k: &str| args.get(k).and_then(Value::as_bool).unwrap_or(true);
        Self {
            line: args.get("line").and_then(Value::as_u64).unwrap_or(0),
            name: args.get("name").and_then(Value::as_str).unwrap_or_default().to_owned(),
            at: args
                .get("at")
                .and_then(Value::as_str)
                .and_then(CaddyPosition::from_name)
                .unwrap_or(CaddyPosition::Argument),
            start: flag("start"),
            whole: flag("whole"),
        }
    }

    /// A filter's error, carrying the line and the variable to [`runtime_error`].
    fn error(&self, message: &str) -> tera::Error {
        tera::Error::msg(format!("{ESCAPE_MARK}{}{SEP}{}{SEP}{message}", self.line, self.name))
    }
}

/// Separates the fields of an escaping filter's error.
const SEP: char = '\u{1}';

type EscapeFn = fn(&str, &Place) -> Result<String, String>;

/// An escaper that needs no place.
type PlainEscapeFn = fn(&str) -> Result<String, String>;

fn caddy_checked(v: &str, p: &Place, escape: PlainEscapeFn) -> Result<String, String> {
    escape::caddy_position(v, p.at, p.start, p.whole)?;
    escape(v)
}

fn register_filters(tera: &mut Tera) {
    let contextual: [(&str, EscapeFn); 19] = [
        ("escape_json_value", |v, _| Ok(escape::json_string(v))),
        ("escape_json_content", |v, _| Ok(escape::json_content(v))),
        ("escape_yaml_value", |v, _| Ok(escape::yaml_value(v))),
        ("escape_yaml_dq_content", |v, _| Ok(escape::yaml_double_content(v))),
        ("escape_yaml_sq_content", |v, _| escape::yaml_single_content(v)),
        ("escape_caddy_token", |v, p| {
            escape::caddy_position(v, p.at, p.start, true)?;
            escape::caddy_token(v)
        }),
        ("escape_caddy_dq_content", |v, p| caddy_checked(v, p, escape::caddy_double_content)),
        ("escape_caddy_bq_content", |v, p| caddy_checked(v, p, escape::caddy_backquote_content)),
        ("escape_caddy_comment", |v, _| Ok(escape::caddy_comment(v))),
        ("escape_systemd_word", |v, _| escape::systemd_word(v)),
        ("escape_systemd_command", |v, p| escape::systemd_command(v, p.whole)),
        ("escape_env_word", |v, _| Ok(escape::env_word(v))),
        ("escape_wireguard_value", |v, _| escape::wireguard_value(v)),
        ("escape_wireguard_hook", |v, _| escape::wireguard_hook(v)),
        ("escape_env_sq_content", |v, _| Ok(v.replace('\'', r"'\''"))),
        ("escape_env_dq_content", |v, _| Ok(format!("\"{}\"", escape::env_word(v)))),
        // `{{ PORT | int }}` and co: the value as a number or a boolean, or an error.
        ("as_int", |v, _| Typed::Int.literal(v)),
        ("as_float", |v, _| Typed::Float.literal(v)),
        ("as_bool", |v, _| Typed::Bool.literal(v)),
    ];
    for (name, f) in contextual {
        tera.register_filter(name, move |value: &Value, args: &HashMap<String, Value>| {
            let place = Place::from_args(args);
            f(&value_text(value), &place).map(Value::String).map_err(|m| place.error(&m))
        });
    }
    tera.register_filter("escape_line", |value: &Value, _: &HashMap<String, Value>| {
        Ok(Value::String(escape::caddy_comment(&value_text(value))))
    });
    // Percent-encodes a URL's user or password part (`https://USER:PASS@host`).
    tera.register_filter("userinfo", |value: &Value, _: &HashMap<String, Value>| {
        Ok(Value::String(escape::url_userinfo(&value_text(value))))
    });
    // Explicit filters, for template authors: the full literal of a value.
    tera.register_filter("json", |value: &Value, _: &HashMap<String, Value>| {
        Ok(Value::String(match value {
            Value::String(s) => escape::json_string(s),
            other => other.to_string(),
        }))
    });
    tera.register_filter("yaml", |value: &Value, _: &HashMap<String, Value>| {
        Ok(Value::String(match value {
            Value::String(s) => escape::yaml_double_quoted(s),
            // JSON is YAML's flow style.
            other => other.to_string(),
        }))
    });
    let explicit: [(&str, PlainEscapeFn); 3] =
        [("caddy", escape::caddy_token), ("systemd", escape::systemd_word), ("env", |v| Ok(escape::env_word(v)))];
    for (name, f) in explicit {
        tera.register_filter(name, move |value: &Value, _: &HashMap<String, Value>| {
            f(&value_text(value))
                .map(Value::String)
                .map_err(|m| tera::Error::msg(format!("{ESCAPE_MARK}0{SEP}{SEP}{m}")))
        });
    }
}

fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn error_chain(e: &tera::Error) -> Vec<String> {
    let mut out = vec![e.to_string()];
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(c) = cur {
        out.push(c.to_string());
        cur = c.source();
    }
    out
}

fn syntax_error(label: &str, translated: &str, e: &tera::Error) -> RenderError {
    let chain = error_chain(e);
    let text = chain.join("\n");
    // pest reports ` --> LINE:COL` and a `= expected ...` line.
    let mut line = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("--> ").and_then(|p| p.split(':').next()?.parse().ok()))
        .unwrap_or(1);
    // A tag alone on its line got that line's newline before its closing `%}`: report the tag's own line.
    if line > 1
        && translated.lines().nth(line - 1).is_some_and(|l| ["%}", "-%}", "#}"].iter().any(|c| l.starts_with(c)))
    {
        line -= 1;
    }
    let message = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("= ").map(str::to_owned))
        .unwrap_or_else(|| chain.last().cloned().unwrap_or_default());
    RenderError::Syntax { template: label.to_owned(), line, message }
}

fn runtime_error(label: &str, source: &str, e: &tera::Error, vars: &Variables) -> RenderError {
    let chain = error_chain(e);
    for (i, msg) in chain.iter().enumerate() {
        if let Some(rest) = msg.find(ESCAPE_MARK).map(|i| &msg[i + ESCAPE_MARK.len()..]) {
            let mut fields = rest.splitn(3, SEP);
            let (line, name, message) = (fields.next(), fields.next(), fields.next());
            let line = line.and_then(|l| l.parse().ok()).unwrap_or(0usize);
            let variable = name.filter(|n| !n.is_empty());
            return RenderError::Value {
                template: label.to_owned(),
                line: line.max(1),
                variable: variable.map(str::to_owned),
                hint: variable.and_then(|v| vars.default_template(v)).map(|d| format!("its stack default {d:?}")),
                message: message.unwrap_or(rest).to_owned(),
            };
        }
        // A template refusing a value: `{{ throw(message="VAR must be ...") }}`.
        let thrown = match msg.strip_prefix("Function call 'throw' failed") {
            Some("") => chain.get(i + 1).map(String::as_str),
            Some(rest) => rest.strip_prefix(": "),
            None => None,
        };
        if let Some(text) = thrown {
            let (name, rest) = text.split_once(' ').unwrap_or((text, ""));
            let known = vars.get(name).is_some();
            return RenderError::Value {
                template: label.to_owned(),
                line: source.lines().position(|l| l.contains("throw(") && l.contains(text)).map_or(1, |n| n + 1),
                variable: known.then(|| name.to_owned()),
                hint: None,
                message: if known { rest.to_owned() } else { text.to_owned() },
            };
        }
        if let Some(name) = msg
            .strip_prefix("Variable `")
            .and_then(|r| r.split_once("` not found in context"))
            .map(|(name, _)| name.to_owned())
        {
            return RenderError::UndefinedVariable {
                template: label.to_owned(),
                line: line_of(source, &name),
                hint: vars.unresolved_reason(&name).map(str::to_owned),
                name,
            };
        }
    }
    let message = chain.iter().skip(1).cloned().collect::<Vec<_>>().join(": ");
    RenderError::Render {
        template: label.to_owned(),
        message: if message.is_empty() { chain.join(": ") } else { message },
    }
}

/// The 1-based line where a template first outputs `name` (`{{ name }}`), else first mentions it in a tag.
fn line_of(source: &str, name: &str) -> usize {
    let mentions = |tag: &str| {
        tag.match_indices(name).any(|(i, _)| {
            let before = tag[..i].chars().next_back();
            let after = tag[i + name.len()..].chars().next();
            let ident = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
            !ident(before) && !ident(after)
        })
    };
    let mut fallback = None;
    for (n, line) in source.lines().enumerate() {
        let mut rest = line;
        while let Some(start) = [rest.find("{{"), rest.find("{%")].into_iter().flatten().min() {
            let tag = &rest[start..];
            let end = tag.find("}}").or_else(|| tag.find("%}")).map(|e| e + 2).unwrap_or(tag.len());
            let body = &tag[2..end.saturating_sub(2).max(2)];
            if mentions(body) {
                let output = tag.starts_with("{{") && !body.trim_start().starts_with(['#', '^', '/']);
                if output {
                    return n + 1;
                }
                fallback.get_or_insert(n + 1);
            }
            rest = &tag[end..];
        }
    }
    fallback.unwrap_or(1)
}
