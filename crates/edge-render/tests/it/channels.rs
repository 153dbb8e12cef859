//! Channel outcomes: skipped without credentials, failed_at_render on a broken
//! template while the others render, a required channel failing the whole render.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

use edge_core::{ChannelState, StackBundle};
use edge_render::{RenderError, Renderer};

use crate::support::{partner_edge_with, vars};

fn states(r: &edge_render::RenderedStack) -> Vec<(String, ChannelState)> {
    r.channels.iter().map(|c| (c.id.clone(), c.state)).collect()
}

fn check_states(r: &edge_render::RenderedStack, expected: &[(&str, ChannelState)]) {
    let expected: Vec<_> = expected.iter().map(|(k, s)| ((*k).to_owned(), *s)).collect();
    assert_eq!(states(r), expected);
    assert_eq!(r.status.iter().map(|(k, s)| (k.to_owned(), s)).collect::<Vec<_>>(), expected);
}

#[test]
fn every_channel_with_credentials_is_active_and_pooled_in_priority_order() {
    use ChannelState::Active;
    let bundle = StackBundle::partner_edge();
    let r = Renderer::new(&bundle).render_stack(&vars(&bundle, "full.env", &[], &[]), &BTreeMap::new()).unwrap();
    check_states(&r, &[("xray", Active), ("awg", Active), ("hysteria2", Active), ("naive", Active)]);
    let pool: Vec<_> = r.pool.iter().map(|m| format!("{}={}", m.channel, m.upstream)).collect();
    assert_eq!(pool, ["xray=127.0.0.1:3081", "hysteria2=127.0.0.1:3082", "naive=127.0.0.1:3083"]);
    let services: Vec<_> = r.services.iter().map(|s| s.container.as_str()).collect();
    assert_eq!(
        services,
        [
            "oxpulse-partner-caddy",
            "oxpulse-partner-xray",
            "oxpulse-partner-hy2",
            "oxpulse-partner-naive",
            "oxpulse-partner-coturn",
            "oxpulse-partner-sfu"
        ]
    );
    // Service template strings are resolved.
    let naive = r.services.iter().find(|s| s.name == "naive").unwrap();
    assert_eq!(naive.ports[0].host, "1080");
    let caddy = &r.file("caddy").unwrap().contents;
    assert!(caddy.contains("to 127.0.0.1:3081 127.0.0.1:3082 127.0.0.1:3083\n"), "{caddy}");
}

#[test]
fn a_channel_without_credentials_is_skipped_and_left_out_of_caddy_and_compose() {
    use ChannelState::{Active, Skipped};
    let bundle = StackBundle::partner_edge();
    let v = vars(&bundle, "full.env", &["HYSTERIA2_AUTH", "HYSTERIA2_OBFS"], &[]);
    let r = Renderer::new(&bundle).render_stack(&v, &BTreeMap::new()).unwrap();
    check_states(&r, &[("xray", Active), ("awg", Active), ("hysteria2", Skipped), ("naive", Active)]);
    let hy2 = r.channels.iter().find(|c| c.id == "hysteria2").unwrap();
    assert_eq!(hy2.reason.as_deref(), Some("missing HYSTERIA2_AUTH, HYSTERIA2_OBFS"));
    assert!(r.file("hysteria2").is_none());
    assert!(!r.file("caddy").unwrap().contents.contains("3082"));
    let compose = &r.file("compose").unwrap().contents;
    assert!(!compose.contains("oxpulse-partner-hy2") && compose.contains("oxpulse-partner-naive"), "{compose}");
    assert!(
        r.summary.iter().any(|l| l == "hysteria2: skipped — missing HYSTERIA2_AUTH, HYSTERIA2_OBFS"),
        "{:?}",
        r.summary
    );
}

#[test]
fn a_broken_channel_template_fails_that_channel_only() {
    use ChannelState::{Active, FailedAtRender};
    let broken = BTreeMap::from([("naive-client.json.tera", "{\"proxy\": \"{{ NAIVE_TYPO }}\"}\n")]);
    let (_dir, bundle) = partner_edge_with(&broken);
    let r = Renderer::new(&bundle).render_stack(&vars(&bundle, "full.env", &[], &[]), &BTreeMap::new()).unwrap();
    check_states(&r, &[("xray", Active), ("awg", Active), ("hysteria2", Active), ("naive", FailedAtRender)]);
    let naive = r.channels.iter().find(|c| c.id == "naive").unwrap();
    assert_eq!(naive.reason.as_deref(), Some("naive:1: undefined variable NAIVE_TYPO"));
    assert!(r.file("naive").is_none() && r.file("hysteria2").is_some());
    assert!(!r.file("compose").unwrap().contents.contains("oxpulse-partner-naive"));
    assert!(!r.pool.iter().any(|m| m.channel == "naive"));
}

#[test]
fn a_required_channel_failing_fails_the_whole_render() {
    let broken = BTreeMap::from([("xray-client.json.tera", "{\n  \"a\": {{ XRAY_TYPO }}\n}\n")]);
    let (_dir, bundle) = partner_edge_with(&broken);
    let err = Renderer::new(&bundle).render_stack(&vars(&bundle, "full.env", &[], &[]), &BTreeMap::new()).unwrap_err();
    assert_eq!(err.to_string(), "required channel xray failed to render: xray:2: undefined variable XRAY_TYPO");

    let bundle = StackBundle::partner_edge();
    let err = Renderer::new(&bundle)
        .render_stack(&vars(&bundle, "full.env", &["REALITY_PORT", "REALITY_SHORT_ID"], &[]), &BTreeMap::new())
        .unwrap_err();
    assert!(
        matches!(&err, RenderError::MissingCredentials { channel, missing }
        if channel == "xray" && missing == &["REALITY_PORT", "REALITY_SHORT_ID"]),
        "{err}"
    );
}

#[test]
fn the_minimal_fixture_renders_caddy_and_compose_with_xray_pooled() {
    let bundle = StackBundle::partner_edge();
    let renderer = Renderer::new(&bundle);
    let v = vars(&bundle, "caddy.env", &[], &[]);
    let caddy = renderer.render_template("caddy", None, &v).unwrap();
    assert!(caddy.contains("\t\tto 127.0.0.1:3081\n") && caddy.contains("127.0.0.1:3081 xray"), "{caddy}");
    let compose = renderer.render_template("compose", None, &v).unwrap();
    assert!(compose.contains("oxpulse-partner-xray") && !compose.contains("oxpulse-partner-naive"));
    // The client config needs the node-config fields, and says which.
    let err = renderer.render_template("xray", None, &v).unwrap_err();
    assert_eq!(
        err.to_string(),
        "channel xray is not configured: missing REALITY_SERVER, REALITY_PORT, REALITY_PUBLIC_KEY, REALITY_SERVER_NAME, REALITY_SHORT_ID; give them in node-config.json (edge install --manual-config), the environment or with --set"
    );
}

#[test]
fn forced_states_take_channels_out_of_caddy_and_compose() {
    use ChannelState::{Active, FailedAtRuntime};
    let bundle = StackBundle::partner_edge();
    let forced = BTreeMap::from([("naive".to_owned(), FailedAtRuntime)]);
    let r = Renderer::new(&bundle).render_stack(&vars(&bundle, "full.env", &[], &[]), &forced).unwrap();
    check_states(&r, &[("xray", Active), ("awg", Active), ("hysteria2", Active), ("naive", FailedAtRuntime)]);
    assert!(!r.file("caddy").unwrap().contents.contains("3083"));
    assert!(!r.services.iter().any(|s| s.name == "naive"));
    assert_eq!(r.status.to_string(), "xray=active\nawg=active\nhysteria2=active\nnaive=failed_at_runtime\n");
}

#[test]
fn write_to_is_all_or_nothing_and_keeps_modes() {
    let bundle = StackBundle::partner_edge();
    let r = Renderer::new(&bundle).render_stack(&vars(&bundle, "full.env", &[], &[]), &BTreeMap::new()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (config, systemd) = (dir.path().join("etc"), dir.path().join("systemd"));
    // The systemd dir cannot be created: nothing at all may be written.
    std::fs::write(&systemd, "not a folder").unwrap();
    let err = r.write_to(&config, &systemd).unwrap_err();
    assert!(matches!(err, RenderError::Write { .. }), "{err}");
    let left: Vec<_> =
        std::fs::read_dir(&config).map(|d| d.map(|e| e.unwrap().file_name()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");

    std::fs::remove_file(&systemd).unwrap();
    r.write_to(&config, &systemd).unwrap();
    let mode = |p: std::path::PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(config.join("naive-client.json")), 0o600);
    assert_eq!(mode(config.join("Caddyfile")), 0o644);
    assert_eq!(
        std::fs::read_to_string(systemd.join("edge-watchdog.timer")).unwrap(),
        r.file("watchdog-timer").unwrap().contents
    );
    let names: Vec<_> =
        std::fs::read_dir(&config).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert!(names.iter().all(|n| !n.starts_with('.')), "staged files left: {names:?}");
}
