//! Errors name the variable and the template line; legacy `{{#if}}` on an undefined variable is false.

use std::path::Path;

use edge_core::StackBundle;
use edge_render::{RenderError, Renderer};

use crate::support::vars;

fn render_caddy_override(text: &str, extra: &[(&str, &str)]) -> Result<String, RenderError> {
    let bundle = StackBundle::partner_edge();
    Renderer::new(&bundle).render_template(
        "caddy",
        Some((Path::new("ops/Caddyfile.tpl"), text)),
        &vars(&bundle, "caddy.env", &[], extra),
    )
}

fn check(text: &str, expected: Result<&str, &str>) {
    match (render_caddy_override(text, &[]), expected) {
        (Ok(got), Ok(want)) => assert_eq!(got, want, "template {text:?}"),
        (Err(e), Err(want)) => assert_eq!(e.to_string(), want, "template {text:?}"),
        (got, want) => panic!("template {text:?}: got {got:?}, want {want:?}"),
    }
}

#[test]
fn undefined_variables_name_the_variable_and_the_line() {
    check(
        "# site\n{{ PARTNER_DOMAIN }} {\n\trespond {{ NOPE }}\n}\n",
        Err("ops/Caddyfile.tpl:3: undefined variable NOPE"),
    );
    check("{{#if X}}\n{{/if}}\na {{NOPE_TOO}}\n", Err("ops/Caddyfile.tpl:3: undefined variable NOPE_TOO"));
    // The line of the use, not of a condition that mentions it first.
    check("{{#if NOPE}}x{{/if}}\n\n{{ NOPE }}\n", Err("ops/Caddyfile.tpl:3: undefined variable NOPE"));
}

#[test]
fn legacy_conditions_on_undefined_variables_are_false() {
    check("{{#if NOPE}}yes{{else}}no{{/if}} {{PARTNER_ID}}\n", Ok("no acme\n"));
    check("a\n  {{#if PARTNER_ID}}\nb {{PARTNER_ID}}\n  {{/if}}\nc\n", Ok("a\nb acme\nc\n"));
    check("{{#unless NOPE}}u{{/unless}}{{^NOPE}}v{{/NOPE}}\n", Ok("uv\n"));
}

#[test]
fn a_default_needing_an_unset_variable_says_so() {
    let bundle = StackBundle::partner_edge();
    let v = vars(&bundle, "caddy.env", &["PARTNER_DOMAIN"], &[]);
    let err = Renderer::new(&bundle).render_template("caddy", None, &v).unwrap_err();
    let source = bundle.template_source("Caddyfile.tera").unwrap();
    let line = source.lines().position(|l| l.contains("{{ CADDY_SITE }}")).unwrap() + 1;
    assert_eq!(
        err.to_string(),
        format!(
            "caddy:{line}: undefined variable CADDY_SITE (its stack default \"{{{{ PARTNER_DOMAIN }}}}\" needs PARTNER_DOMAIN, which is not set)"
        )
    );
}

#[test]
fn syntax_errors_name_the_line() {
    let err = render_caddy_override("a\nb\n{% if %}\n", &[]).unwrap_err();
    assert!(matches!(&err, RenderError::Syntax { line: 3, template, .. } if template == "ops/Caddyfile.tpl"), "{err}");
}

#[test]
fn a_value_no_caddyfile_can_hold_is_an_error_naming_the_line() {
    let err = render_caddy_override("x\n{{ CADDY_SITE }} {\n}\n", &[("CADDY_SITE", "{$HOME}")]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "ops/Caddyfile.tpl:2: CADDY_SITE holds '{$', which Caddy expands as an environment variable anywhere in a Caddyfile"
    );
}

#[test]
fn the_whole_stack_needs_its_required_variables() {
    let bundle = StackBundle::partner_edge();
    let v = vars(&bundle, "full.env", &["PARTNER_ID", "PARTNER_DOMAIN"], &[]);
    let err = Renderer::new(&bundle).render_stack(&v, &Default::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "missing required variables PARTNER_ID, PARTNER_DOMAIN: set them in the fixture, the environment or with --set"
    );
    let err = Renderer::new(&bundle).render_template("nginx", None, &v).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown template \"nginx\"; the stack has: caddy, compose, xray, hysteria2, naive, coturn, awg, watchdog-service, watchdog-timer"
    );
}

#[test]
fn a_mesh_value_cannot_add_lines_to_the_interface_config() {
    let bundle = StackBundle::partner_edge();
    let renderer = Renderer::new(&bundle);
    for (endpoint, why) in [
        ("mesh.example.net:51820\nPostUp = rm -rf /", "holds the control character '\\n'"),
        ("mesh.example.net:51820 # x", "holds '#', which starts a comment"),
    ] {
        let vars = vars(&bundle, "full.env", &[], &[("AWG_PEER_ENDPOINT", endpoint)]);
        let err = renderer.render_stack(&vars, &Default::default()).unwrap_err().to_string();
        assert!(err.contains("awg") && err.contains("AWG_PEER_ENDPOINT") && err.contains(why), "{err}");
    }
    // Unconfigured, the required mesh is skipped rather than failing the render.
    let vars = vars(&bundle, "full.env", &["AWG_ADDRESS"], &[]);
    let r = renderer.render_stack(&vars, &Default::default()).unwrap();
    assert_eq!(r.status.get("awg"), Some(edge_core::ChannelState::Skipped));
    assert!(r.file("awg").is_none());
}
