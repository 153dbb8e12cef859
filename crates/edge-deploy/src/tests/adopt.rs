//! Adoption of a legacy host on the in-memory engine: detection, the refusal of install, the
//! plan, the volume copies, and a crash injected after every step, then a re-run converging.

use edge_channels::testing::FakeEngine;
use edge_channels::{Engine, LABEL_SPEC_HASH, Mount, MountKind};

use super::{Host, host, identity, request, run};
use crate::adopt::{
    AdoptRequest, AdoptStep, JOURNAL_FILE, LABEL_ADOPTED_FROM, LABEL_ADOPTED_VOLUME, LEGACY_UNITS, LEGACY_UNITS_DIR,
    VolumeCopy, adopted_volume_name, aside_name,
};
use crate::{Node, OpError, adopt, install, install_adopting, quiet};

const CADDY: &str = "oxpulse-partner-caddy";
const SFU: &str = "oxpulse-partner-sfu";
const CADDY_MARKER: &[u8] = b"acme account and certificates\n";
const SFU_DATA: &[u8] = b"sfu room state\n";

fn image(node: &Node, container: &str) -> String {
    node.stack().services.iter().find(|s| s.container == container).unwrap().image.clone()
}

/// The host the bash installer left: Compose containers of the stack's names (Caddy's `/data`
/// an anonymous volume with a marker, the sfu on a Compose-named volume), a legacy install
/// record and the legacy watchdog units.
fn legacy_host() -> Host {
    let h = host();
    let (node, engine) = (&h.node, &h.engine);
    engine.add_image_volume(&image(node, CADDY), "/data");
    for s in node.stack().services.iter().filter(|s| s.name != "hysteria2" && s.name != "naive") {
        let mounts = match s.container.as_str() {
            SFU => vec![Mount {
                source: "legacy_sfu-data".into(),
                target: "/var/lib/sfu".into(),
                read_only: false,
                kind: MountKind::Volume,
            }],
            _ => Vec::new(),
        };
        engine.run_compose(&s.container, &s.image, "legacy", mounts);
    }
    engine.put_volume_file(&anonymous_data(engine), "caddy/marker", CADDY_MARKER);
    engine.put_volume_file("legacy_sfu-data", "rooms.db", SFU_DATA);
    let paths = &node.paths;
    paths.ensure_dirs().unwrap();
    std::fs::write(paths.install_env(), "PARTNER_ID=acme\nPARTNER_DOMAIN=edge.example.com\nTUNNEL=xray\n").unwrap();
    std::fs::create_dir_all(paths.systemd_dir()).unwrap();
    for unit in LEGACY_UNITS {
        std::fs::write(paths.systemd_dir().join(unit), "[Unit]\n").unwrap();
    }
    h
}

/// The legacy Caddy's anonymous `/data` volume.
fn anonymous_data(engine: &FakeEngine) -> String {
    let c = run(engine.inspect_container(CADDY)).unwrap().unwrap();
    c.anonymous_volumes().next().unwrap().source.clone()
}

fn adopt_request(stop_after: Option<usize>) -> AdoptRequest {
    AdoptRequest { install: request(), dry_run: false, stop_after }
}

/// Everything the adoption promises, checked on the engine and the files.
fn assert_adopted(h: &Host, anonymous: &str) {
    let (node, engine) = (&h.node, &h.engine);
    for s in node.stack().services.iter().filter(|s| s.name != "hysteria2" && s.name != "naive") {
        let c = run(engine.inspect_container(&s.container)).unwrap().unwrap();
        assert!(c.labels.contains_key(LABEL_SPEC_HASH), "{} carries edge's labels", s.container);
        assert_eq!(run(engine.inspect_container(&aside_name(&s.container))).unwrap(), None);
    }
    assert_eq!(engine.volume_file("oxpulse-partner-caddy-data", "caddy/marker").as_deref(), Some(CADDY_MARKER));
    assert_eq!(engine.volume_file("oxpulse-partner-sfu-data", "rooms.db").as_deref(), Some(SFU_DATA));
    // The legacy volumes are never deleted.
    assert_eq!(engine.volume_file(anonymous, "caddy/marker").as_deref(), Some(CADDY_MARKER));
    assert_eq!(engine.volume_file("legacy_sfu-data", "rooms.db").as_deref(), Some(SFU_DATA));
    for unit in LEGACY_UNITS {
        assert!(!node.paths.systemd_dir().join(unit).exists(), "{unit} is removed");
        let kept = node.paths.state_dir().join(LEGACY_UNITS_DIR).join(unit);
        assert_eq!(std::fs::read_to_string(&kept).ok().as_deref(), Some("[Unit]\n"), "a copy of {unit} is kept");
    }
}

#[test]
fn install_refuses_a_legacy_host_and_points_to_adopt() {
    let h = legacy_host();
    let err = run(install(&h.engine, &h.node, &request(), &quiet)).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, OpError::LegacyHost { .. }), "{text}");
    assert!(text.contains("run edge adopt --dry-run") && text.contains(CADDY), "{text}");
    assert!(text.contains("edge install --adopt"), "{text}");
    assert_eq!(h.engine.calls_of("create"), 0);
}

#[test]
fn install_adopting_takes_a_legacy_host_over_then_installs() {
    let h = legacy_host();
    let anonymous = anonymous_data(&h.engine);
    let dry = AdoptRequest { dry_run: true, ..adopt_request(None) };
    let planned = run(install_adopting(&h.engine, &h.node, &dry, &quiet)).unwrap();
    assert!(planned.install.is_none() && planned.steps.contains(&AdoptStep::Install), "{:?}", planned.steps);
    for op in ["create", "stop", "rename", "copy_volume", "remove"] {
        assert_eq!(h.engine.calls_of(op), 0, "a dry run: {op}");
    }

    let report = run(install_adopting(&h.engine, &h.node, &adopt_request(None), &quiet)).unwrap();
    assert!(!report.noop, "{}", report.message);
    assert_eq!(report.install.as_ref().map(|i| i.status), Some(crate::Outcome::Success), "{}", report.message);
    assert_adopted(&h, &anonymous);
    let creates = h.engine.calls_of("create");

    // Adopted: install --adopt is an install; nothing is recreated.
    let ids = h.engine.ids();
    let again = run(install_adopting(&h.engine, &h.node, &adopt_request(None), &quiet)).unwrap();
    assert!(again.noop && again.install.is_some(), "{}", again.message);
    assert_eq!(h.engine.ids(), ids);
    assert_eq!(h.engine.calls_of("create"), creates);
}

#[test]
fn install_adopting_installs_a_host_with_nothing_to_adopt() {
    let h = host();
    let report = run(install_adopting(&h.engine, &h.node, &adopt_request(None), &quiet)).unwrap();
    assert!(report.noop && report.steps.is_empty(), "{:?}", report.steps);
    assert_eq!(report.install.as_ref().map(|i| i.status), Some(crate::Outcome::Success), "{}", report.message);
    assert!(h.engine.calls_of("create") > 0);
}

#[test]
fn a_dry_run_shows_every_step_and_changes_nothing() {
    let h = legacy_host();
    let anonymous = anonymous_data(&h.engine);
    let dry = AdoptRequest { dry_run: true, ..adopt_request(None) };
    let report = run(adopt(&h.engine, &h.node, &dry, &quiet)).unwrap();
    let keys: Vec<String> = report.steps.iter().map(AdoptStep::key).collect();
    let unit = |u: &str| format!("remove-unit {}", h.node.paths.systemd_dir().join(u).display());
    let mut expected = vec![
        format!("copy-volume {CADDY} /data {anonymous} -> oxpulse-partner-caddy-data"),
        format!("set-aside {CADDY} -> {CADDY}-legacy"),
        "set-aside oxpulse-partner-xray -> oxpulse-partner-xray-legacy".to_owned(),
        "set-aside oxpulse-partner-coturn -> oxpulse-partner-coturn-legacy".to_owned(),
        format!("copy-volume {SFU} /var/lib/sfu legacy_sfu-data -> oxpulse-partner-sfu-data"),
        format!("set-aside {SFU} -> {SFU}-legacy"),
        "install".to_owned(),
    ];
    expected.extend(report.legacy.containers.iter().map(|c| format!("remove-container {}-legacy", c.name)));
    expected.extend(LEGACY_UNITS.iter().map(|u| unit(u)));
    assert_eq!(keys, expected);
    assert_eq!(report.legacy.state_files, vec![h.node.paths.install_env()]);
    for op in ["create", "stop", "rename", "copy_volume", "remove"] {
        assert_eq!(h.engine.calls_of(op), 0, "{op}");
    }
    assert!(!h.node.paths.state_dir().join(JOURNAL_FILE).exists());
}

#[test]
fn adoption_keeps_every_volume_and_a_second_run_is_a_noop() {
    let h = legacy_host();
    let anonymous = anonymous_data(&h.engine);
    let report = run(adopt(&h.engine, &h.node, &adopt_request(None), &quiet)).unwrap();
    assert!(!report.noop && report.install.is_some(), "{}", report.message);
    assert_adopted(&h, &anonymous);
    let identity_after = identity(&h.node);

    let again = run(adopt(&h.engine, &h.node, &adopt_request(None), &quiet)).unwrap();
    assert!(again.noop && again.steps.is_empty(), "{:?}", again.steps);
    assert_eq!(identity(&h.node), identity_after);
    // Install is an ordinary re-run now: nothing is recreated.
    let ids = h.engine.ids();
    run(install(&h.engine, &h.node, &request(), &quiet)).unwrap();
    assert_eq!(h.engine.ids(), ids);
}

#[test]
fn a_crash_after_any_step_then_a_rerun_converges_with_nothing_lost() {
    let steps = {
        let h = legacy_host();
        let dry = AdoptRequest { dry_run: true, ..adopt_request(None) };
        run(adopt(&h.engine, &h.node, &dry, &quiet)).unwrap().steps.len()
    };
    for n in 0..=steps {
        let h = legacy_host();
        let anonymous = anonymous_data(&h.engine);
        let err = run(adopt(&h.engine, &h.node, &adopt_request(Some(n)), &quiet)).unwrap_err();
        assert!(matches!(err, OpError::AdoptStopped { after } if after == n), "{err}");
        if n > 0 {
            let refused = run(install(&h.engine, &h.node, &request(), &quiet)).unwrap_err();
            assert!(matches!(refused, OpError::LegacyHost { .. }), "after {n} steps: {refused}");
        }
        let report = run(adopt(&h.engine, &h.node, &adopt_request(None), &quiet)).unwrap();
        assert!(!report.noop, "after {n} steps");
        assert_adopted(&h, &anonymous);
        let journal = std::fs::read_to_string(h.node.paths.state_dir().join(JOURNAL_FILE)).unwrap();
        assert!(journal.ends_with("complete\n"), "{journal}");
        assert!(run(adopt(&h.engine, &h.node, &adopt_request(None), &quiet)).unwrap().noop);
    }
}

#[test]
fn a_recorded_copy_is_never_repeated_over_newer_data() {
    let h = legacy_host();
    let install_at = {
        let dry = AdoptRequest { dry_run: true, ..adopt_request(None) };
        let report = run(adopt(&h.engine, &h.node, &dry, &quiet)).unwrap();
        report.steps.iter().position(|s| *s == AdoptStep::Install).unwrap()
    };
    // Crash right after the install: the new Caddy runs on the named volume and writes there.
    run(adopt(&h.engine, &h.node, &adopt_request(Some(install_at + 1)), &quiet)).unwrap_err();
    h.engine.put_volume_file("oxpulse-partner-caddy-data", "caddy/marker", b"renewed certificate\n");
    let report = run(adopt(&h.engine, &h.node, &adopt_request(None), &quiet)).unwrap();
    assert!(report.steps.iter().all(|s| !matches!(s, AdoptStep::CopyVolume { .. })), "{:?}", report.steps);
    assert_eq!(
        h.engine.volume_file("oxpulse-partner-caddy-data", "caddy/marker").as_deref(),
        Some(&b"renewed certificate\n"[..])
    );
}

#[test]
fn an_anonymous_volume_at_a_path_the_stack_does_not_mount_is_kept_in_a_named_volume() {
    let h = host();
    let caddy_image = image(&h.node, CADDY);
    h.engine.add_image_volume(&caddy_image, "/config");
    h.engine.run_compose(CADDY, &caddy_image, "legacy", Vec::new());
    let config = run(h.engine.inspect_container(CADDY)).unwrap().unwrap().anonymous_volumes().next().unwrap().clone();
    h.engine.put_volume_file(&config.source, "caddy/autosave.json", b"{}");
    let kept = format!("oxpulse-partner-edge_adopted-{CADDY}-config");
    let copy = VolumeCopy {
        from: config.source.clone(),
        anonymous: true,
        to: kept.clone(),
        target: "/config".to_owned(),
        mounted: false,
    };
    let dry = AdoptRequest { dry_run: true, ..adopt_request(None) };
    let planned = run(adopt(&h.engine, &h.node, &dry, &quiet)).unwrap();
    assert_eq!(planned.legacy.containers[0].copies, vec![copy.clone()]);
    assert_eq!(planned.legacy.containers[0].unmounted, Vec::<Mount>::new());
    assert_eq!(planned.steps[0], AdoptStep::CopyVolume { container: CADDY.to_owned(), copy });

    let report = run(adopt(&h.engine, &h.node, &adopt_request(None), &quiet)).unwrap();
    assert!(report.install.is_some(), "{}", report.message);
    assert_eq!(h.engine.volume_file(&kept, "caddy/autosave.json").as_deref(), Some(&b"{}"[..]));
    let labels = h.engine.volume_labels(&kept).unwrap();
    assert_eq!(labels.get(edge_channels::LABEL_STACK).map(String::as_str), Some("oxpulse-partner-edge"));
    assert_eq!(labels.get(LABEL_ADOPTED_FROM).map(String::as_str), Some(&*format!("{CADDY}:/config")));
    assert_eq!(labels.get(LABEL_ADOPTED_VOLUME), Some(&config.source));
    // The anonymous one is not deleted either.
    assert_eq!(h.engine.volume_file(&config.source, "caddy/autosave.json").as_deref(), Some(&b"{}"[..]));

    // It is the stack's: an uninstall keeps it, a purge removes it with the stack's own.
    let keep = crate::UninstallRequest { purge_volumes: false, backup_layout: Default::default() };
    let report = run(crate::uninstall(&h.engine, &h.node, &keep)).unwrap();
    assert!(report.volumes_kept.contains(&kept), "{:?}", report.volumes_kept);
    run(install(&h.engine, &h.node, &request(), &quiet)).unwrap();
    let purge = crate::UninstallRequest { purge_volumes: true, ..keep };
    let report = run(crate::uninstall(&h.engine, &h.node, &purge)).unwrap();
    assert!(report.volumes_removed.contains(&kept), "{:?}", report.volumes_removed);
    assert!(!run(h.engine.volume_exists(&kept)).unwrap());
}

#[test]
fn adopted_volume_names_are_volume_names() {
    let check = |target: &str, expected: &str| assert_eq!(adopted_volume_name("s", "c", target), expected, "{target}");
    check("/config", "s_adopted-c-config");
    check("/var/lib/x/", "s_adopted-c-var-lib-x");
    check("/data dir:ro", "s_adopted-c-data-dir-ro");
    check("/", "s_adopted-c-root");
}

#[test]
fn a_container_set_aside_that_came_back_is_stopped_before_the_install() {
    let h = legacy_host();
    let dry = AdoptRequest { dry_run: true, ..adopt_request(None) };
    let install_at =
        run(adopt(&h.engine, &h.node, &dry, &quiet)).unwrap().steps.iter().position(|s| *s == AdoptStep::Install);
    run(adopt(&h.engine, &h.node, &adopt_request(install_at), &quiet)).unwrap_err();
    // The engine restarted and brought back a `restart: always` container.
    run(h.engine.start_container(&aside_name(CADDY))).unwrap();
    run(adopt(&h.engine, &h.node, &adopt_request(Some(1)), &quiet)).unwrap_err();
    assert_eq!(h.engine.status_of(&aside_name(CADDY)), Some(edge_channels::ContainerStatus::Exited));
}

#[test]
fn a_dry_run_warns_of_a_legacy_channel_the_install_would_not_run() {
    let h = legacy_host();
    let hy2 = h.node.stack().services.iter().find(|s| s.name == "hysteria2").unwrap().clone();
    h.engine.run_compose(&hy2.container, &hy2.image, "legacy", Vec::new());
    let mut without = adopt_request(None);
    without.dry_run = true;
    without.install.variables.flags.retain(|(k, _)| !k.starts_with("HYSTERIA2_"));
    let report = run(adopt(&h.engine, &h.node, &without, &quiet)).unwrap();
    let hy2_report = report.channels.iter().find(|c| c.id == "hysteria2").unwrap();
    assert_eq!(hy2_report.state, edge_core::ChannelState::Skipped);
    assert_eq!(report.dropped.len(), 1, "{:?}", report.dropped);
    assert!(report.dropped[0].starts_with(&format!("{}: channel hysteria2 would be skipped (missing", hy2.container)));
    assert!(!h.node.paths.config_dir().join("reality.priv").exists(), "a dry run writes no identity");

    let with = AdoptRequest { dry_run: true, ..adopt_request(None) };
    let report = run(adopt(&h.engine, &h.node, &with, &quiet)).unwrap();
    assert_eq!(report.dropped, Vec::<String>::new());
    assert!(report.channels.iter().any(|c| c.id == "hysteria2" && c.state == edge_core::ChannelState::Active));
}
