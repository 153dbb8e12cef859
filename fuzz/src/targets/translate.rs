//! Templates, legacy (`{{VAR}}`, `{{#if VAR}}`) or tera, translated and rendered in the
//! partner edge as an operator's `--tpl` replacement: rendering never panics, whatever
//! the template.
//!
//! The first byte picks the template the text replaces, so one corpus covers every
//! format's translation: a Caddyfile, YAML, JSON and a systemd unit.

use std::path::Path;
use std::sync::OnceLock;

use edge_core::{EnvFile, StackBundle};
use edge_render::{Renderer, Source, Variables};

use crate::{Seed, files, read};

/// The partner edge's templates by the selector byte (modulo their count), with each
/// one's file-name ending, which gives the seeds their selector.
const TEMPLATES: &[(&str, &[&str])] = &[
    ("caddy", &["Caddyfile.tera", ".tpl"]),
    ("compose", &[".yml.tera", ".yaml.tera"]),
    ("naive", &[".json.tera"]),
    ("watchdog-service", &[".service.tera", ".timer.tera"]),
];

/// Every channel configured, so that a channel's template renders too.
const VARIABLES: &str = include_str!("../../../tests/fixtures/render/full.env");

fn renderer() -> &'static (Renderer, Variables) {
    static RENDERER: OnceLock<(Renderer, Variables)> = OnceLock::new();
    RENDERER.get_or_init(|| {
        let bundle = StackBundle::partner_edge();
        let fixture = EnvFile::parse(VARIABLES).expect("tests/fixtures/render/full.env parses");
        let pairs = fixture.iter().map(|(k, v)| (k.to_owned(), v.to_owned()));
        let vars = Variables::new(&bundle.stack.variables).with_layer(Source::Fixture, pairs);
        (Renderer::new(&bundle), vars)
    })
}

/// Renders the rest of `data` in place of the template its first byte picks.
pub fn check(data: &[u8]) {
    let Some((&selector, source)) = data.split_first() else { return };
    let (name, _) = TEMPLATES[usize::from(selector) % TEMPLATES.len()];
    let source = String::from_utf8_lossy(source);
    let (renderer, vars) = renderer();
    if let Err(e) = renderer.render_template(name, Some((Path::new("fuzz.tpl"), &source)), vars) {
        assert!(!e.to_string().is_empty(), "an empty error");
    }
}

/// The partner edge's and the examples' templates and the legacy render fixture, each
/// behind the selector of the template of its format.
pub fn seeds(root: &Path) -> Result<Vec<Seed>, String> {
    let mut paths = files(&root.join("crates/edge-core/stacks/partner-edge/templates"), &[".tera"])?;
    paths.extend(files(&root.join("examples/app-behind-caddy/templates"), &[""])?);
    paths.extend(files(&root.join("tests/fixtures/render"), &[".tpl"])?);
    let mut seeds = Vec::new();
    for path in paths {
        let name = crate::file_name(&path);
        let Some(selector) = TEMPLATES.iter().position(|(_, ends)| ends.iter().any(|e| name.ends_with(e))) else {
            continue;
        };
        let mut data = vec![selector as u8];
        data.extend(read(&path)?);
        let folder = path.parent().and_then(Path::parent).map(crate::file_name).unwrap_or_default();
        seeds.push(Seed { name: format!("{folder}-{name}"), data });
    }
    Ok(seeds)
}
