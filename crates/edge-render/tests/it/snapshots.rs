//! Snapshots of the default rendered set (refresh with `UPDATE_SNAPSHOTS=1`).

use std::collections::BTreeMap;

use edge_core::StackBundle;
use edge_render::Renderer;

use crate::support::{check_snapshot, vars};

#[test]
fn the_full_set_with_every_channel() {
    let bundle = StackBundle::partner_edge();
    let rendered = Renderer::new(&bundle).render_stack(&vars(&bundle, "full.env", &[], &[]), &BTreeMap::new()).unwrap();
    let names: Vec<_> = rendered.files.iter().map(|f| f.output.as_str()).collect();
    assert_eq!(
        names,
        [
            "Caddyfile",
            "docker-compose.yml",
            "xray-client.json",
            "hysteria2-client.yaml",
            "naive-client.json",
            "turnserver.conf",
            "awg0.conf",
            "edge-watchdog.service",
            "edge-watchdog.timer"
        ]
    );
    for f in &rendered.files {
        check_snapshot(&format!("full/{}", f.output), &f.contents);
    }
    check_snapshot("full/channels-status.env", &rendered.status.to_string());
    check_snapshot("full/summary.txt", &(rendered.summary.join("\n") + "\n"));
}

#[test]
fn caddy_and_compose_from_the_minimal_fixture() {
    let bundle = StackBundle::partner_edge();
    let renderer = Renderer::new(&bundle);
    let vars = vars(&bundle, "caddy.env", &[], &[]);
    for name in ["caddy", "compose"] {
        check_snapshot(&format!("minimal/{name}"), &renderer.render_template(name, None, &vars).unwrap());
    }
}
