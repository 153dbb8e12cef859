//! Each escaper's output, where the renderer puts it, read back by a parser of its format
//! gives the value again, or the escaper refuses the value with an error.
//!
//! Readers: serde_json (JSON), serde_yaml (YAML), edge-core's env-file parser (env files),
//! and Rust rewrites of Caddy's lexer and systemd's word splitting (no Rust crate reads
//! those formats). The first byte picks the escaper; the rest, as text, is the value.

use std::collections::BTreeMap;
use std::path::Path;

use edge_core::EnvFile;
use edge_render::escape::{self, Typed};

use crate::{Seed, caddy_lexer, systemd_word, text};

/// Escapes a value and reads it back, panicking when it does not come back.
type RoundTrip = fn(&str);

/// The escapers, by the selector byte (modulo their count).
const ESCAPERS: &[(&str, RoundTrip)] = &[
    ("json_string", |v| json(&escape::json_string(v), v)),
    ("json_content", |v| json(&format!("\"{}\"", escape::json_content(v)), v)),
    ("yaml_value", |v| yaml(&escape::yaml_value(v), v)),
    ("yaml_double_quoted", |v| yaml(&escape::yaml_double_quoted(v), v)),
    ("yaml_double_content", |v| yaml(&format!("\"{}\"", escape::yaml_double_content(v)), v)),
    ("yaml_single_content", |v| refused_or(escape::yaml_single_content(v), |s| yaml(&format!("'{s}'"), v))),
    ("caddy_token", |v| refused_or(escape::caddy_token(v), |t| caddy(&t, v))),
    ("caddy_double_content", |v| refused_or(escape::caddy_double_content(v), |t| caddy(&format!("\"{t}\""), v))),
    ("caddy_backquote_content", |v| refused_or(escape::caddy_backquote_content(v), |t| caddy(&format!("`{t}`"), v))),
    ("caddy_comment", |v| {
        let file = format!("# {}\nnext", escape::caddy_comment(v));
        assert_eq!(caddy_lexer::tokens(&file), Ok(vec!["next".to_owned()]), "{file:?}");
    }),
    ("systemd_word", |v| refused_or(escape::systemd_word(v), |w| systemd(&w, v))),
    ("systemd_command", |v| refused_or(escape::systemd_command(v, true), |w| systemd(&w, v))),
    ("env_word", |v| env(&format!("K={}\n", escape::env_word(v)), v)),
    // The renderer's `K="{{ X }}"`: the value closes the template's quotes and reopens them.
    ("env_dq_content", |v| env(&format!("K=\"\"{}\"\"\n", escape::env_word(v)), v)),
    ("url_userinfo", |v| assert_eq!(percent_decode(&escape::url_userinfo(v)), v.as_bytes())),
    ("int", |v| typed(Typed::Int, v)),
    ("float", |v| typed(Typed::Float, v)),
    ("bool", |v| typed(Typed::Bool, v)),
];

/// Escapes the rest of `data` with the escaper its first byte picks and reads it back.
pub fn check(data: &[u8]) {
    let Some((&selector, value)) = data.split_first() else { return };
    let (_, check) = ESCAPERS[usize::from(selector) % ESCAPERS.len()];
    check(&text(value));
}

fn refused_or(escaped: Result<String, String>, read: impl FnOnce(String)) {
    match escaped {
        Ok(text) => read(text),
        Err(reason) => assert!(!reason.is_empty(), "refused without a reason"),
    }
}

fn json(literal: &str, value: &str) {
    let back: String = serde_json::from_str(literal).unwrap_or_else(|e| panic!("{literal:?} is not JSON: {e}"));
    assert_eq!(back, value, "JSON {literal:?}");
}

/// The scalar as the value of a mapping key, as templates write it.
fn yaml(scalar: &str, value: &str) {
    let doc = format!("key: {scalar}\n");
    let map: BTreeMap<String, String> =
        serde_yaml::from_str(&doc).unwrap_or_else(|e| panic!("{doc:?} is not a YAML string map: {e}"));
    assert_eq!(map.get("key").map(String::as_str), Some(value), "YAML {doc:?}");
}

/// The token as a directive's argument, with another token after it.
fn caddy(token: &str, value: &str) {
    let line = format!("directive {token} after\n");
    let tokens = caddy_lexer::tokens(&line).unwrap_or_else(|e| panic!("Caddy cannot read {line:?}: {e}"));
    assert_eq!(tokens, ["directive", value, "after"], "Caddyfile {line:?}");
}

fn systemd(word: &str, value: &str) {
    let back = systemd_word::read_word(word).unwrap_or_else(|e| panic!("systemd cannot read {word:?}: {e}"));
    assert_eq!(back, value, "systemd word {word:?}");
}

fn env(file: &str, value: &str) {
    let env = EnvFile::parse(file).unwrap_or_else(|e| panic!("{file:?} does not parse: {e}"));
    assert_eq!(env.get("K"), Some(value), "env file {file:?}");
}

fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok());
            out.push(hex.unwrap_or_else(|| panic!("bad percent escape in {text:?}")));
            i += 3;
        } else {
            assert!(bytes[i].is_ascii_alphanumeric() || b"-._~".contains(&bytes[i]), "{text:?} is not userinfo");
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// A typed literal reads as the same number or boolean in JSON and in YAML.
fn typed(ty: Typed, value: &str) {
    let Ok(literal) = ty.literal(value) else { return };
    let json: serde_json::Value =
        serde_json::from_str(&literal).unwrap_or_else(|e| panic!("{literal:?} is not JSON: {e}"));
    let yaml: serde_yaml::Value =
        serde_yaml::from_str(&literal).unwrap_or_else(|e| panic!("{literal:?} is not YAML: {e}"));
    match ty {
        Typed::Int => {
            let n: i64 = value.parse().unwrap_or_else(|_| panic!("{value:?} became {literal:?}"));
            assert_eq!(json.as_i64(), Some(n), "JSON {literal:?}");
            assert_eq!(yaml.as_i64(), Some(n), "YAML {literal:?}");
        }
        Typed::Float => {
            let f: f64 = value.parse().unwrap_or_else(|_| panic!("{value:?} became {literal:?}"));
            // serde_json reads floats to within one unit in the last place (its exact reader is
            // a feature this workspace does not turn on), so JSON is checked for a number whose
            // correctly rounded value, Rust's reading of the same digits, is `f`.
            assert!(json.is_number(), "JSON {literal:?} is not a number");
            assert_eq!(literal.parse::<f64>(), Ok(f), "JSON {literal:?}");
            assert_eq!(yaml.as_f64(), Some(f), "YAML {literal:?}");
        }
        Typed::Bool => {
            assert!(json.is_boolean(), "JSON {literal:?}");
            assert_eq!(json.as_bool(), yaml.as_bool(), "YAML {literal:?}");
        }
    }
}

/// Every value of the render fixtures behind every escaper's selector.
pub fn seeds(root: &Path) -> Result<Vec<Seed>, String> {
    let mut seeds = Vec::new();
    for path in crate::files(&root.join("tests/fixtures/render"), &[".env"])? {
        let text = String::from_utf8_lossy(&crate::read(&path)?).into_owned();
        let env = EnvFile::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        for (key, value) in env.iter() {
            for (i, (name, _)) in ESCAPERS.iter().enumerate() {
                let mut data = vec![i as u8];
                data.extend(value.as_bytes());
                seeds.push(Seed { name: format!("{}-{key}-{name}", crate::file_name(&path)), data });
            }
        }
    }
    Ok(seeds)
}
