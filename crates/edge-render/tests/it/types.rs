//! Values keep the type their position has: in the rendered client configs a
//! value is a string wherever it stands, and a template asks for a number or
//! a boolean with `| int`, `| float` or `| bool`.

use std::collections::BTreeMap;
use std::path::Path;

use edge_core::StackBundle;
use edge_render::{RenderError, Renderer};

use crate::support::vars;

/// The 1-based line of the embedded template `source` that holds `needle`.
fn line_of(source: &str, needle: &str) -> usize {
    let text = StackBundle::partner_edge().template_source(source).unwrap().to_owned();
    text.lines().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("{needle} not in {source}")) + 1
}

fn render(template: &str, extra: &[(&str, &str)]) -> Result<String, RenderError> {
    let bundle = StackBundle::partner_edge();
    Renderer::new(&bundle).render_template(template, None, &vars(&bundle, "full.env", &[], extra))
}

/// Strings JSON or YAML would read as another type if they were written bare.
const LOOKALIKES: &[&str] =
    &["12345678", "00000000", "-1", "1e999", "0x10", "0o17", "1_000", ".5", "true", "False", "yes", "off", "null", "~"];

#[test]
fn a_short_id_of_digits_stays_a_json_string() {
    for short_id in LOOKALIKES.iter().chain(&["6ba85179e30d4fc2"]) {
        let text = render("xray", &[("REALITY_SHORT_ID", short_id)]).unwrap();
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        let reality = &doc["outbounds"][0]["streamSettings"]["realitySettings"];
        assert_eq!(reality["shortId"], serde_json::json!(short_id), "{text}");
        // The port still is a number: the template asks for one.
        assert_eq!(doc["outbounds"][0]["settings"]["vnext"][0]["port"], serde_json::json!(443), "{text}");
    }
}

#[test]
fn hysteria2_auth_stays_a_yaml_string() {
    for auth in LOOKALIKES {
        let text = render("hysteria2", &[("HYSTERIA2_AUTH", auth), ("HYSTERIA2_OBFS", auth)]).unwrap();
        let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(doc["auth"].as_str(), Some(*auth), "{text}");
        assert_eq!(doc["obfs"]["salamander"]["password"].as_str(), Some(*auth), "{text}");
    }
}

#[test]
fn the_rendered_set_has_numbers_only_where_templates_ask() {
    let bundle = StackBundle::partner_edge();
    let r = Renderer::new(&bundle).render_stack(&vars(&bundle, "full.env", &[], &[]), &BTreeMap::new()).unwrap();
    let compose: serde_yaml::Value = serde_yaml::from_str(&r.file("compose").unwrap().contents).unwrap();
    for (name, service) in compose["services"].as_mapping().unwrap() {
        let retries = &service["healthcheck"]["retries"];
        assert!(retries.is_null() || retries.is_u64(), "{name:?}: retries {retries:?}");
        for (key, value) in service["environment"].as_mapping().into_iter().flatten() {
            assert!(value.is_string(), "{name:?}: {key:?} is {value:?}");
        }
    }
}

#[test]
fn a_value_that_is_not_the_asked_type_is_an_error_naming_it() {
    let port_line = line_of("xray-client.json.tera", "REALITY_PORT");
    for port in ["443x", " 443", "0x1bb", "1e3", "99999999999999999999"] {
        let err = render("xray", &[("REALITY_PORT", port)]).unwrap_err().to_string();
        assert!(err.starts_with(&format!("xray:{port_line}: REALITY_PORT is not ")), "{port:?}: {err}");
        assert!(err.ends_with("which `| int` asks for"), "{port:?}: {err}");
        // The message names the variable, never its value.
        assert!(!err.contains(port), "{err}");
    }
    // The required channel fails the whole render with that reason.
    let bundle = StackBundle::partner_edge();
    let v = vars(&bundle, "full.env", &[], &[("REALITY_PORT", "https")]);
    let err = Renderer::new(&bundle).render_stack(&v, &BTreeMap::new()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "required channel xray failed to render: xray:{port_line}: REALITY_PORT is not a decimal integer, which `| int` asks for"
        )
    );
}

/// Renders an operator's JSON or YAML template (in place of the xray or
/// hysteria2 one) with `V` and `W` set; checks the parsed document or the error.
fn check(template: &str, v: &str, expected: Result<&str, &str>) {
    let bundle = StackBundle::partner_edge();
    let (name, path) =
        if template.trim_start().starts_with('{') { ("xray", "ops/x.json") } else { ("hysteria2", "ops/h.yaml") };
    let vars = vars(&bundle, "full.env", &[], &[("V", v), ("W", "w")]);
    let got = Renderer::new(&bundle).render_template(name, Some((Path::new(path), template)), &vars);
    match (got, expected) {
        (Ok(text), Ok(want)) => {
            let doc: serde_json::Value = if name == "xray" {
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
            } else {
                serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
            };
            let want: serde_json::Value = serde_json::from_str(want).unwrap();
            assert_eq!(doc, want, "template {template:?}, V={v:?}: {text}");
        }
        (Err(e), Err(want)) => assert_eq!(e.to_string(), want, "template {template:?}, V={v:?}"),
        (got, want) => panic!("template {template:?}, V={v:?}: got {got:?}, want {want:?}"),
    }
}

#[test]
fn templates_ask_for_numbers_and_booleans() {
    check(r#"{"a": {{ V }}, "b": {{ V | int }}}"#, "8080", Ok(r#"{"a": "8080", "b": 8080}"#));
    check(r#"{"a": {{ V | int }}}"#, "-0042", Ok(r#"{"a": -42}"#));
    check(r#"{"a": {{ V | float }}}"#, "1e300", Ok(r#"{"a": 1e300}"#));
    check(r#"{"a": {{ V | bool }}, "b": {{ V }}}"#, "yes", Ok(r#"{"a": true, "b": "yes"}"#));
    check("a: {{ V | int }}\nb: {{ V }}\n", "7", Ok(r#"{"a": 7, "b": "7"}"#));
    check("a: {{ V | bool }}\nb: [{{ V | bool }}]\n", "off", Ok(r#"{"a": false, "b": [false]}"#));
    check("a: {{ V | float }}\n", "3", Ok(r#"{"a": 3.0}"#));
    // Inside a string, or as part of a bigger scalar, a typed value is text.
    check(r#"{"a": "{{ W }}:{{ V | int }}"}"#, "443", Ok(r#"{"a": "w:443"}"#));
    check("a: {{ W }}:{{ V | int }}\n", "443", Ok(r#"{"a": "w:443"}"#));
    // A default in between still converts (tera's own filter with arguments runs first).
    check("a: {{ NOPE | default(value=V) | int }}\n", "9", Ok(r#"{"a": 9}"#));
    check("a: {{ V | int(default=5) }}\n", "x", Ok(r#"{"a": 5}"#));
    // Not the asked type: an error naming the variable and the line.
    check(
        "a: 1\nb: {{ V | int }}\n",
        "8080/tcp",
        Err("ops/h.yaml:2: V is not a decimal integer, which `| int` asks for"),
    );
    check(
        r#"{"a": {{ V | float }}}"#,
        "1e999",
        Err("ops/x.json:1: V is not a finite 64-bit number, which `| float` asks for"),
    );
    check(
        "a: {{ V | bool }}\n",
        "maybe",
        Err("ops/h.yaml:1: V is not a boolean (true, false, yes, no, on, off, 1 or 0), which `| bool` asks for"),
    );
    check("a: {{ W }}:{{ V | int }}\n", "x", Err("ops/h.yaml:1: V is not a decimal integer, which `| int` asks for"));
}
