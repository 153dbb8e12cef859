//! Values of any content through whole templates: the rendered JSON, YAML and
//! env files parse back to the exact value, a string wherever it stands;
//! Caddyfile lines keep their tokens.

use std::sync::OnceLock;

use edge_core::StackBundle;
use edge_render::{Renderer, Source, Variables};
use proptest::prelude::*;

const STACK: &str = r#"
[stack]
name = "probe"
compose_project = "probe"
network = "probe"
config_dir = "/etc/probe"
state_dir = "/var/lib/probe"

[[templates]]
name = "json"
source = "probe.json.tera"
output = "probe.json"
format = "json"

[[templates]]
name = "yaml"
source = "probe.yaml.tera"
output = "probe.yaml"
format = "yaml"

[[templates]]
name = "yaml_no_single"
source = "probe-no-single.yaml.tera"
output = "probe-no-single.yaml"
format = "yaml"

[[templates]]
name = "caddy"
source = "Caddyfile.tera"
output = "Caddyfile"
format = "caddyfile"

[[templates]]
name = "caddy_quoted"
source = "Caddyfile.quoted.tera"
output = "Caddyfile.quoted"
format = "caddyfile"

[[templates]]
name = "env"
source = "probe.env.tera"
output = "probe.env"
format = "env"
"#;

/// Every position a JSON value can stand in: a member's value, an array
/// item, a key, inside strings.
const JSON: &str = r#"{"bare": {{ V }}, "quoted": "{{ V }}", "mixed": "<{{ V }}>", "legacy": "{{V}}", "k{{ V }}": 1,
  "items": [{{ V }}, {{V}}], "keyed": { {{ V }}: {{ V }} }}"#;

/// Every position a YAML scalar can stand in: block and flow values, keys,
/// sequence items, plain scalars with more text, quoted scalars.
const YAML: &str = r#"bare: {{ V }}
quoted: "{{ V }}"
single: '{{ V }}'
mixed: <{{ V }}>
plain: a {{ V }} b  # comment {{ V }}
flow: [{{ V }}, "x{{ V }}", y{{ V }}]
seq:
  - {{ V }}
k{{ V }}: key
keyed:
  {{ V }}: {{ V }}
fmap: {k: {{ V }}, {{ V }}: k}
"#;

/// Bare tokens: the escaper picks the quoting.
const CADDY: &str = "http://127.0.0.1:8080 {\n\theader X-A {{ V }}\n\theader X-C p{{ V }}q\n}\n";

/// The template's own quotes: a value they cannot hold is an error.
const CADDY_QUOTED: &str = "http://127.0.0.1:8080 {\n\theader X-B \"p{{ V }}\"\n\theader X-D `p{{ V }}`\n}\n";

const ENV: &str = "A={{ V }}\nB='x{{ V }}'\nC=\"y{{ V }}\"\n";

fn probe() -> &'static (tempfile::TempDir, StackBundle) {
    static PROBE: OnceLock<(tempfile::TempDir, StackBundle)> = OnceLock::new();
    PROBE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("templates")).unwrap();
        std::fs::write(dir.path().join("stack.toml"), STACK).unwrap();
        for (name, text) in [
            ("probe.json.tera", JSON),
            ("probe.yaml.tera", YAML),
            ("probe-no-single.yaml.tera", YAML.replace("single: '{{ V }}'", "# single").as_str()),
            ("Caddyfile.tera", CADDY),
            ("Caddyfile.quoted.tera", CADDY_QUOTED),
            ("probe.env.tera", ENV),
        ] {
            std::fs::write(dir.path().join("templates").join(name), text).unwrap();
        }
        let bundle = StackBundle::load(dir.path()).unwrap();
        (dir, bundle)
    })
}

fn render(template: &str, v: &str) -> Result<String, edge_render::RenderError> {
    let bundle = &probe().1;
    let vars = Variables::new(&bundle.stack.variables).with_layer(Source::Flag, [("V".to_owned(), v.to_owned())]);
    Renderer::new(bundle).render_template(template, None, &vars)
}

/// The value came back as a string holding exactly `v`: never a number, a boolean or null.
fn json_string_is(got: &serde_json::Value, v: &str) -> bool {
    got.as_str() == Some(v)
}

fn yaml_string_is(got: &serde_yaml::Value, v: &str) -> bool {
    got.as_str() == Some(v)
}

/// Caddy 2.6's lexer (lexer.go without heredocs): each token with the line it starts on.
fn caddy_tokens(text: &str) -> Vec<(usize, String)> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    loop {
        while let Some(&c) = chars.peek() {
            if !c.is_whitespace() {
                break;
            }
            line += usize::from(c == '\n');
            chars.next();
        }
        let Some(first) = chars.next() else { break };
        let start = line;
        let mut tok = String::new();
        match first {
            '#' => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        line += 1;
                        break;
                    }
                }
                continue;
            }
            '`' => {
                for c in chars.by_ref() {
                    if c == '`' {
                        break;
                    }
                    line += usize::from(c == '\n');
                    tok.push(c);
                }
            }
            '"' => {
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => match chars.next() {
                            Some('"') => tok.push('"'),
                            Some(n) => {
                                line += usize::from(n == '\n');
                                tok.push('\\');
                                tok.push(n);
                            }
                            None => break,
                        },
                        '"' => break,
                        c => {
                            line += usize::from(c == '\n');
                            tok.push(c);
                        }
                    }
                }
            }
            c => {
                tok.push(c);
                while let Some(&n) = chars.peek() {
                    if n.is_whitespace() {
                        break;
                    }
                    tok.push(n);
                    chars.next();
                }
            }
        }
        tokens.push((start, tok));
    }
    tokens
}

/// Checks a rendered probe Caddyfile: the same tokens as with a harmless
/// value, each directive on its own line, and the header values back after
/// Caddy's replacer unescapes braces.
fn check_caddy_structure(text: &str, headers: &[(&str, String)]) -> Result<(), String> {
    if text.contains("{$") {
        return Err(format!("'{{$' in the output:\n{text}"));
    }
    let tokens = caddy_tokens(text);
    let texts: Vec<&str> = tokens.iter().map(|(_, t)| t.as_str()).collect();
    if texts.len() != 3 + 3 * headers.len() {
        return Err(format!("{} tokens instead of {}: {texts:?}\n{text}", texts.len(), 3 + 3 * headers.len()));
    }
    if texts[..2] != ["http://127.0.0.1:8080", "{"] || texts.last() != Some(&"}") {
        return Err(format!("the site block changed: {texts:?}\n{text}"));
    }
    for (n, (name, value)) in headers.iter().enumerate() {
        let i = 2 + 3 * n;
        if texts[i] != "header" || texts[i + 1] != *name {
            return Err(format!("expected `header {name}` at token {i}: {texts:?}\n{text}"));
        }
        let (prev_line, prev) = &tokens[i - 1];
        if tokens[i].0 <= prev_line + prev.matches('\n').count() {
            return Err(format!("`header {name}` is not on a line of its own\n{text}"));
        }
        if unbrace(texts[i + 2]) != *value {
            return Err(format!("{name} came back as {:?}, expected {value:?}\n{text}", unbrace(texts[i + 2])));
        }
    }
    let close = tokens.len() - 1;
    if tokens[close].0 <= tokens[close - 1].0 + tokens[close - 1].1.matches('\n').count() {
        return Err(format!("the closing brace is not on a line of its own\n{text}"));
    }
    Ok(())
}

fn bare_headers(v: &str) -> Vec<(&'static str, String)> {
    vec![("X-A", v.to_owned()), ("X-C", format!("p{v}q"))]
}

/// Caddy's replacer turns `\{` and `\}` back into braces.
fn unbrace(s: &str) -> String {
    s.replace("\\{", "{").replace("\\}", "}")
}

/// Strings JSON or YAML would read as something else if written bare:
/// numbers (`12345678`, `1e999`, `0x10`, `0o7`, `1_000`, `.5`), booleans and
/// null in YAML 1.1 and 1.2, timestamps, sexagesimals, special floats.
const LOOKALIKES: &str = "[-+]?[0-9][0-9_]{0,8}|[-+]?[0-9]{0,3}\\.?[0-9]{0,3}([eE][-+]?[0-9]{1,4})?|0[xXoObB][0-9a-fA-F]{1,4}\
    |(?i:true|false|yes|no|y|n|on|off|null|~|\\.inf|-\\.inf|\\.nan)|[0-9]{4}-[0-9]{2}-[0-9]{2}|[0-9]{1,2}:[0-9]{2}(:[0-9]{2})?\
    |[0-9a-f]{8}|[0-9]{1,3}(\\.[0-9]{1,3}){3}";

fn check_json(v: &str) -> Result<(), TestCaseError> {
    let text = render("json", v).unwrap();
    let doc: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
    prop_assert!(json_string_is(&doc["bare"], v), "{}", text);
    prop_assert_eq!(doc["quoted"].as_str(), Some(v));
    prop_assert_eq!(doc["mixed"].as_str().map(str::to_owned), Some(format!("<{v}>")));
    prop_assert_eq!(doc["legacy"].as_str(), Some(v));
    prop_assert_eq!(&doc[format!("k{v}")], &serde_json::json!(1));
    prop_assert!(json_string_is(&doc["items"][0], v) && json_string_is(&doc["items"][1], v), "{}", text);
    prop_assert!(json_string_is(&doc["keyed"][v], v), "{}", text);
    prop_assert_eq!(doc.as_object().map(|o| o.len()), Some(7));
    Ok(())
}

fn check_yaml(v: &str) -> Result<(), TestCaseError> {
    let text = match render("yaml", v) {
        Ok(text) => text,
        // Only a single-quoted scalar refuses a value (a line break, a control character...).
        Err(e) => {
            prop_assert!(e.to_string().starts_with("yaml:3: V holds "), "{}", e);
            render("yaml_no_single", v).unwrap()
        }
    };
    prop_assert_eq!(text.lines().count(), YAML.lines().count(), "{}", text);
    let doc: serde_yaml::Value =
        serde_yaml::from_str(&text).map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
    prop_assert!(yaml_string_is(&doc["bare"], v), "{}", text);
    prop_assert_eq!(doc["quoted"].as_str(), Some(v));
    prop_assert_eq!(doc["mixed"].as_str().map(str::to_owned), Some(format!("<{v}>")));
    prop_assert_eq!(doc["plain"].as_str().map(str::to_owned), Some(format!("a {v} b")));
    prop_assert!(yaml_string_is(&doc["flow"][0], v), "{}", text);
    prop_assert_eq!(doc["flow"][1].as_str().map(str::to_owned), Some(format!("x{v}")));
    prop_assert_eq!(doc["flow"][2].as_str().map(str::to_owned), Some(format!("y{v}")));
    prop_assert!(yaml_string_is(&doc["seq"][0], v), "{}", text);
    prop_assert_eq!(doc[format!("k{v}").as_str()].as_str(), Some("key"));
    // Keys are strings too: looked up by the string, not by a number or a boolean.
    let keyed = doc["keyed"].as_mapping().unwrap();
    prop_assert_eq!(keyed.len(), 1);
    prop_assert!(yaml_string_is(keyed.keys().next().unwrap(), v) && yaml_string_is(&keyed[v], v), "{}", text);
    prop_assert!(yaml_string_is(&doc["fmap"]["k"], v), "{}", text);
    if v != "k" {
        prop_assert_eq!(doc["fmap"][v].as_str(), Some("k"), "{}", text);
    }
    if let Some(single) = doc.get("single") {
        prop_assert_eq!(single.as_str(), Some(v));
    }
    prop_assert_eq!(doc.as_mapping().map(|m| m.len()), Some(if doc.get("single").is_some() { 10 } else { 9 }));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn json_parses_back_to_the_string(v in any::<String>()) {
        check_json(&v)?;
    }

    #[test]
    fn json_parses_back_to_the_string_whatever_it_looks_like(v in LOOKALIKES) {
        check_json(&v)?;
    }

    #[test]
    fn yaml_parses_back_to_the_string(v in any::<String>()) {
        check_yaml(&v)?;
    }

    #[test]
    fn yaml_parses_back_to_the_string_whatever_it_looks_like(v in LOOKALIKES) {
        check_yaml(&v)?;
    }

    #[test]
    fn env_files_read_back_the_value(v in any::<String>()) {
        let text = render("env", &v).unwrap();
        let env = edge_core::EnvFile::parse(&text).map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
        prop_assert_eq!(env.get("A"), Some(v.as_str()));
        prop_assert_eq!(env.get("B").map(str::to_owned), Some(format!("x{v}")));
        prop_assert_eq!(env.get("C").map(str::to_owned), Some(format!("y{v}")));
    }

    #[test]
    fn caddyfile_bare_tokens_keep_the_structure(v in any::<String>()) {
        match render("caddy", &v) {
            Ok(text) => check_caddy_structure(&text, &bare_headers(&v)).map_err(TestCaseError::fail)?,
            // Only `{$` (expanded by Caddy before lexing), or a backquote with a backslash before a quote or at the end.
            Err(e) => prop_assert!(v.contains("{$") || (v.contains('`') && (v.ends_with('\\') || v.contains("\\\""))), "{}", e),
        }
    }

    #[test]
    fn caddyfile_quoted_tokens_keep_the_structure(v in any::<String>()) {
        match render("caddy_quoted", &v) {
            Ok(text) => {
                let headers = [("X-B", format!("p{v}")), ("X-D", format!("p{v}"))];
                check_caddy_structure(&text, &headers).map_err(TestCaseError::fail)?;
            }
            Err(e) => prop_assert!(v.contains("{$") || v.contains('`') || v.ends_with('\\') || v.contains("\\\""), "{}", e),
        }
    }
}

#[test]
fn nasty_caddyfile_values_keep_the_structure() {
    for v in [
        "plain",
        "two words",
        "q\"uote",
        "{",
        "}",
        "{{ x }}",
        "{env.HOME}",
        "\u{e9}\u{65e5}",
        "back\\slash",
        "ends\\",
        "# hash",
        "import x",
        "line\nbreak",
        "}\n}\nevil {",
        "`tick`",
        "",
    ] {
        let text = render("caddy", v).unwrap();
        check_caddy_structure(&text, &bare_headers(v)).unwrap();
    }
}
