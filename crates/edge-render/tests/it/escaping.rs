//! Values of any content through whole templates: the rendered JSON, YAML and
//! env files parse back to the exact value; Caddyfile lines keep their tokens.

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

const JSON: &str = r#"{"bare": {{ V }}, "quoted": "{{ V }}", "mixed": "<{{ V }}>", "legacy": "{{V}}", "k{{ V }}": 1}"#;

const YAML: &str = r#"bare: {{ V }}
quoted: "{{ V }}"
mixed: <{{ V }}>
plain: a {{ V }} b  # comment {{ V }}
flow: [{{ V }}, "x{{ V }}", y{{ V }}]
seq:
  - {{ V }}
k{{ V }}: key
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

/// A value written bare may come back typed (a number, a boolean): its text is the value.
fn same_scalar_json(got: &serde_json::Value, v: &str) -> bool {
    match got {
        serde_json::Value::String(s) => s == v,
        other => {
            let text = other.to_string();
            text == v
        }
    }
}

fn same_scalar_yaml(got: &serde_yaml::Value, v: &str) -> bool {
    match got {
        serde_yaml::Value::String(s) => s == v,
        serde_yaml::Value::Number(n) => n.to_string() == v,
        serde_yaml::Value::Bool(b) => b.to_string() == v,
        _ => false,
    }
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn json_parses_back_to_the_value(v in any::<String>()) {
        let text = render("json", &v).unwrap();
        let doc: serde_json::Value = serde_json::from_str(&text).map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
        prop_assert!(same_scalar_json(&doc["bare"], &v), "{}", text);
        prop_assert_eq!(doc["quoted"].as_str(), Some(v.as_str()));
        prop_assert_eq!(doc["mixed"].as_str().map(str::to_owned), Some(format!("<{v}>")));
        prop_assert_eq!(doc["legacy"].as_str(), Some(v.as_str()));
        prop_assert_eq!(&doc[format!("k{v}")], &serde_json::json!(1));
        prop_assert_eq!(doc.as_object().map(|o| o.len()), Some(5));
    }

    #[test]
    fn yaml_parses_back_to_the_value(v in any::<String>()) {
        let text = render("yaml", &v).unwrap();
        prop_assert_eq!(text.lines().count(), YAML.lines().count(), "{}", text);
        let doc: serde_yaml::Value = serde_yaml::from_str(&text).map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
        prop_assert!(same_scalar_yaml(&doc["bare"], &v), "{}", text);
        prop_assert_eq!(doc["quoted"].as_str(), Some(v.as_str()));
        prop_assert_eq!(doc["mixed"].as_str().map(str::to_owned), Some(format!("<{v}>")));
        prop_assert_eq!(doc["plain"].as_str().map(str::to_owned), Some(format!("a {v} b")));
        prop_assert!(same_scalar_yaml(&doc["flow"][0], &v), "{}", text);
        prop_assert_eq!(doc["flow"][1].as_str().map(str::to_owned), Some(format!("x{v}")));
        prop_assert_eq!(doc["flow"][2].as_str().map(str::to_owned), Some(format!("y{v}")));
        prop_assert!(same_scalar_yaml(&doc["seq"][0], &v), "{}", text);
        prop_assert_eq!(doc[format!("k{v}").as_str()].as_str(), Some("key"));
        prop_assert_eq!(doc.as_mapping().map(|m| m.len()), Some(7));
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
