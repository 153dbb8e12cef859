//! Rendering against the real tools: rendered Caddyfiles pass `caddy validate`,
//! compose files pass `docker-compose config`, a real Caddy routes the pool
//! with `X-Channel-Tag`, and `edge render` behaves as operators script it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use edge_core::StackBundle;
use edge_render::{Renderer, Source, Variables};
use edge_tests::caddy::{self, Caddy, CaddyProcess, free_port};
use edge_tests::proxy::ForwardProxy;
use edge_tests::upstream::{Upstream, UpstreamMode, http_get};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fixture(name: &str) -> PathBuf {
    workspace().join("tests/fixtures/render").join(name)
}

fn fixture_pairs(name: &str) -> Vec<(String, String)> {
    edge_render::parse_fixture(&std::fs::read_to_string(fixture(name)).unwrap()).unwrap()
}

/// Stack defaults < fixture (minus `drop`) < `extra`.
fn vars(bundle: &StackBundle, fixture_name: &str, drop: &[&str], extra: &[(&str, String)]) -> Variables {
    Variables::new(&bundle.stack.variables)
        .with_layer(
            Source::Fixture,
            fixture_pairs(fixture_name).into_iter().filter(|(k, _)| !drop.contains(&k.as_str())),
        )
        .with_layer(Source::Flag, extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())))
}

const HYSTERIA2: &[&str] = &["HYSTERIA2_SERVER", "HYSTERIA2_PORT", "HYSTERIA2_AUTH", "HYSTERIA2_OBFS"];
const NAIVE: &[&str] = &["NAIVE_SERVER", "NAIVE_USERNAME", "NAIVE_PASSWORD"];

fn app_stack() -> StackBundle {
    StackBundle::load(&workspace().join("examples/app-behind-caddy")).unwrap()
}

fn app_vars(bundle: &StackBundle) -> Variables {
    Variables::new(&bundle.stack.variables).with_layer(
        Source::Flag,
        [
            ("APP_DOMAIN".to_owned(), "app.example.com".to_owned()),
            ("APP_IMAGE".to_owned(), "ghcr.io/acme/app:1.4".to_owned()),
        ],
    )
}

/// Every Caddyfile the stacks render for `caddy` (its `CADDY_VERSION`), `extra` on top:
/// (what, text). The partner edge's pool sets, the empty pool, the runbook's options, the app.
fn rendered_caddyfiles(caddy: Caddy, extra: &[(&str, String)]) -> Vec<(String, String)> {
    let bundle = StackBundle::partner_edge();
    let renderer = Renderer::new(&bundle);
    let mut extra = extra.to_vec();
    extra.push(("CADDY_VERSION", caddy.version_variable().to_owned()));
    let no_hy2: Vec<&str> = HYSTERIA2.to_vec();
    let cases: [(&str, &str, &[&str], &str); 5] = [
        ("minimal fixture", "caddy.env", &[], "to 127.0.0.1:3081\n"),
        ("every channel", "full.env", &[], "to 127.0.0.1:3081 127.0.0.1:3082 127.0.0.1:3083\n"),
        ("without hysteria2", "full.env", &no_hy2, "to 127.0.0.1:3081 127.0.0.1:3083\n"),
        ("without naive", "full.env", NAIVE, "to 127.0.0.1:3081 127.0.0.1:3082\n"),
        ("without either", "full.env", &[HYSTERIA2, NAIVE].concat(), "to 127.0.0.1:3081\n"),
    ];
    let mut out = Vec::new();
    for (what, fixture_name, drop, pool) in cases {
        let v = vars(&bundle, fixture_name, drop, &extra);
        let text = renderer.render_template("caddy", None, &v).unwrap();
        assert!(text.contains(pool), "{what}: {text}");
        if fixture_name == "full.env" {
            let whole = renderer.render_stack(&v, &BTreeMap::new()).unwrap();
            assert_eq!(whole.file("caddy").unwrap().contents, text, "{what}: the set and the single render differ");
        }
        out.push((what.to_owned(), text));
    }
    // No active channel at all (xray failed at runtime, the others without credentials).
    let forced = BTreeMap::from([("xray".to_owned(), edge_core::ChannelState::FailedAtRuntime)]);
    // The whole set needs the TURN secret install generates; caddy.env has none.
    let mut with_secret = extra.clone();
    with_secret.push(("TURN_SECRET", "0f".repeat(32)));
    let empty = renderer.render_stack(&vars(&bundle, "caddy.env", &[], &with_secret), &forced).unwrap();
    assert!(empty.pool.is_empty());
    let text = empty.file("caddy").unwrap().contents.clone();
    assert!(text.contains("respond \"no active channel\" 503") && !text.contains("reverse_proxy"), "{text}");
    out.push(("no active channel".to_owned(), text));
    // The runbook's optional global options set.
    let mut options = extra.clone();
    options.extend([("ACME_EMAIL", "ops@example.com".to_owned()), ("CADDY_STORAGE_CLEAN_INTERVAL", "48h".to_owned())]);
    let text = renderer.render_template("caddy", None, &vars(&bundle, "full.env", &[], &options)).unwrap();
    assert!(text.contains("\temail \"ops@example.com\"\n"), "{text}");
    out.push(("with an ACME email".to_owned(), text));

    let app = app_stack();
    let app_vars = app_vars(&app).with_layer(Source::Flag, extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    out.push(("the app stack".to_owned(), Renderer::new(&app).render_template("caddy", None, &app_vars).unwrap()));
    out
}

#[test]
fn every_rendered_caddyfile_passes_validate_on_both_caddys() {
    for caddy in Caddy::ALL {
        // As rendered for production: a public site name (validate obtains no certificate).
        for (what, text) in rendered_caddyfiles(caddy, &[]) {
            caddy::validate_with(caddy, &text).unwrap_or_else(|e| panic!("{caddy:?}, {what}: {e}"));
        }
    }
}

#[test]
fn every_rendered_caddyfile_runs_on_both_caddys() {
    for caddy in Caddy::ALL {
        let site = format!("127.0.0.1:{}", free_port().unwrap());
        let admin = format!("127.0.0.1:{}", free_port().unwrap());
        let loopback = [("CADDY_SITE", format!("http://{site}")), ("CADDY_ADMIN", admin.clone())];
        for (what, text) in rendered_caddyfiles(caddy, &loopback) {
            let running =
                CaddyProcess::start_with(caddy, &text, &admin).unwrap_or_else(|e| panic!("{caddy:?}, {what}: {e}"));
            if what == "no active channel" {
                let r = http_get(&site, "/").unwrap();
                assert_eq!((r.status, r.body.as_str()), (503, "no active channel"), "{caddy:?}");
            }
            drop(running);
        }
    }
}

#[test]
fn the_default_render_needs_a_current_caddy_and_caddy_version_2_6_serves_debians() {
    // Debian's 2.6 refuses the default file (global metrics, health counts): the switch keeps it working there.
    let (_, text) = rendered_caddyfiles(Caddy::Current, &[]).remove(1);
    let err = caddy::validate_with(Caddy::Debian, &text).unwrap_err().to_string();
    assert!(
        err.contains("unrecognized global option: metrics") || err.contains("unrecognized subdirective health_passes"),
        "{err}"
    );
    let (_, text) = rendered_caddyfiles(Caddy::Debian, &[]).remove(1);
    assert!(!text.contains("\thealth_passes") && text.contains("\t\t# health_passes 2 and health_fails 3 need"));
    caddy::validate_with(Caddy::Debian, &text).unwrap();
}

#[test]
fn acme_dns_needs_a_caddy_built_with_the_providers_module() {
    // What the template's note says: stock Caddy has no DNS provider, so the line is rendered only when asked for.
    let bundle = StackBundle::partner_edge();
    let v = vars(&bundle, "full.env", &[], &[("ACME_DNS_PROVIDER", "cloudflare".to_owned())]);
    let text = Renderer::new(&bundle).render_template("caddy", None, &v).unwrap();
    let err = caddy::validate(&text).unwrap_err().to_string();
    assert!(err.contains("dns.providers.cloudflare"), "{err}");
}

#[test]
fn the_pool_and_metrics_are_what_caddy_runs() {
    let bundle = StackBundle::partner_edge();
    let text = Renderer::new(&bundle).render_template("caddy", None, &vars(&bundle, "full.env", &[], &[])).unwrap();
    let config = caddy::adapt(&text).unwrap();
    assert_eq!(config["admin"]["listen"], "127.0.0.1:2019");
    assert_eq!(config["apps"]["http"]["metrics"], serde_json::json!({}));
    assert_eq!(config["apps"]["tls"]["automation"]["storage_clean_interval"], 86_400_000_000_000u64, "{config}");
    let server = &config["apps"]["http"]["servers"]["srv0"];
    assert_eq!(server["automatic_https"]["disable_redirects"], true, "{config}");
    let json = config.to_string();
    // No retry count unless asked: lb_try_duration bounds retries (stack.toml says why).
    assert!(!text.contains("lb_retries"), "{text}");
    let capped = vars(&bundle, "full.env", &[], &[("CADDY_LB_RETRIES", "2".to_owned())]);
    let text_capped = Renderer::new(&bundle).render_template("caddy", None, &capped).unwrap();
    assert!(caddy::adapt(&text_capped).unwrap().to_string().contains(r#""retries":2"#), "{text_capped}");
    for needle in [
        r#""dial":"127.0.0.1:3081"},{"dial":"127.0.0.1:3082"},{"dial":"127.0.0.1:3083"}"#,
        r#""selection_policy":{"policy":"first"}"#,
        r#""try_duration":5000000000"#,
        r#""try_interval":250000000"#,
        r#""active":{"expect_status":2,"fails":3,"interval":10000000000,"passes":2,"timeout":3000000000,"uri":"/api/health"}"#,
        r#""X-Channel-Tag":["{edge_channel_tag}"]"#,
        r#""passive":{"fail_duration":10000000000,"max_fails":1,"unhealthy_status":[502,503,504]}"#,
        r#""transport":{"dial_timeout":500000000,"protocol":"http"}"#,
    ] {
        assert!(json.contains(needle), "{needle} not in {json}");
    }
}

fn docker_compose_config(text: &str) -> serde_yaml::Value {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("docker-compose.yml"), text).unwrap();
    let out = Command::new("docker-compose")
        .arg("-f")
        .arg(dir.path().join("docker-compose.yml"))
        .arg("config")
        .current_dir(dir.path())
        .output()
        .expect(
            "docker-compose is not installed: the tests need Debian's docker-compose (apt-get install docker-compose)",
        );
    assert!(out.status.success(), "docker-compose config failed: {}\n{text}", String::from_utf8_lossy(&out.stderr));
    serde_yaml::from_slice(&out.stdout).unwrap()
}

fn service_names(config: &serde_yaml::Value) -> Vec<String> {
    let mut names: Vec<String> =
        config["services"].as_mapping().unwrap().keys().map(|k| k.as_str().unwrap().to_owned()).collect();
    names.sort();
    names
}

#[test]
fn rendered_compose_files_pass_docker_compose_config() {
    let bundle = StackBundle::partner_edge();
    let renderer = Renderer::new(&bundle);

    let minimal = renderer.render_template("compose", None, &vars(&bundle, "caddy.env", &[], &[])).unwrap();
    // Keyed by container name, as the runbook's deployment matrix and the legacy compose file.
    let keys = |names: &[&str]| names.iter().map(|n| format!("oxpulse-partner-{n}")).collect::<Vec<_>>();
    assert_eq!(service_names(&docker_compose_config(&minimal)), keys(&["caddy", "coturn", "sfu", "xray"]));

    let v = vars(&bundle, "full.env", &[], &[]);
    let full = renderer.render_stack(&v, &BTreeMap::new()).unwrap();
    let text = &full.file("compose").unwrap().contents;
    let config = docker_compose_config(text);
    assert_eq!(service_names(&config), keys(&["caddy", "coturn", "hy2", "naive", "sfu", "xray"]));

    // The naive service as SPEC.md describes it.
    let naive = &config["services"]["oxpulse-partner-naive"];
    assert_eq!(naive["container_name"], "oxpulse-partner-naive");
    assert_eq!(naive["restart"], "unless-stopped");
    // A channel client is alone on its own network: no other container reaches its inbounds.
    let networks = naive["networks"].as_mapping().unwrap();
    assert_eq!(networks.keys().collect::<Vec<_>>(), ["oxpulse-partner-naive"], "{networks:?}");
    assert_eq!(config["networks"]["oxpulse-partner-naive"]["name"], "oxpulse-partner-naive");
    assert!(
        config["services"]["oxpulse-partner-sfu"]["networks"]["oxpulse-partner"].is_mapping()
            || config["services"]["oxpulse-partner-sfu"]["networks"]["oxpulse-partner"].is_null()
    );
    assert_eq!(config["services"]["oxpulse-partner-sfu"]["networks"].as_mapping().unwrap().len(), 1);
    let coturn = &config["services"]["oxpulse-partner-coturn"];
    assert_eq!((coturn["read_only"].as_bool(), coturn["user"].as_str()), (Some(true), Some("65534:65534")));
    assert!(format!("{:?}", coturn["volumes"]).contains("turnserver.conf"), "{:?}", coturn["volumes"]);
    // The TURN secret is only in coturn's 0600 config, never in the compose file.
    let turn = full.file("coturn").unwrap();
    assert_eq!(turn.mode, 0o600);
    assert!(turn.contents.contains(&format!("static-auth-secret={}\n", v.get("TURN_SECRET").unwrap())));
    assert!(turn.contents.contains("\nrealm=edge.example.com\n") && turn.contents.contains("\nno-cli\n"));
    assert!(!text.contains(v.get("TURN_SECRET").unwrap()), "the TURN secret is in the compose file");
    let ports: Vec<String> = naive["ports"].as_sequence().unwrap().iter().map(|p| format!("{p:?}")).collect();
    for p in naive["ports"].as_sequence().unwrap() {
        // docker-compose normalises short syntax to a string or a mapping depending on its version.
        let host_ip = p["host_ip"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| p.as_str().map(|s| s.split(':').next().unwrap().to_owned()));
        assert_eq!(host_ip.as_deref(), Some("127.0.0.1"), "{ports:?}");
    }
    assert!(ports.iter().any(|p| p.contains("1080")), "{ports:?}");
    let volumes = format!("{:?}", naive["volumes"]);
    assert!(volumes.contains("/etc/naive/config.json") && volumes.contains("naive-client.json"), "{volumes}");
    assert!(
        volumes.contains("ro") || volumes.contains("read_only: true") || volumes.contains("Bool(true)"),
        "{volumes}"
    );
    assert_eq!(naive["logging"]["driver"], "json-file");
    assert_eq!(naive["logging"]["options"]["max-size"], "10m");
    assert_eq!(naive["logging"]["options"]["max-file"], "3");
    assert!(naive["command"].is_null() && naive["environment"].is_null() && naive["labels"].is_null());
    // No credential anywhere in the compose file.
    for key in ["NAIVE_PASSWORD", "NAIVE_USERNAME", "HYSTERIA2_AUTH", "HYSTERIA2_OBFS", "REALITY_SHORT_ID"] {
        let value = v.get(key).unwrap();
        assert!(!text.contains(value), "{key}'s value is in the compose file");
    }
    assert!(!format!("{:?}", naive["healthcheck"]).contains(v.get("NAIVE_PASSWORD").unwrap()));

    let app = app_stack();
    let text = Renderer::new(&app).render_template("compose", None, &app_vars(&app)).unwrap();
    let config = docker_compose_config(&text);
    assert_eq!(service_names(&config), ["app", "caddy"]);
    assert!(config["services"]["app"]["ports"].is_null(), "the app must be reachable only on the stack network");
}

/// A Caddyfile of the partner edge pointed at loopback upstreams of the test. naive's upstream
/// is the backend stand-in behind a forward proxy standing where naive's local listener would be.
pub(crate) struct Pool {
    pub(crate) caddy: CaddyProcess,
    pub(crate) site: String,
    upstreams: Vec<(String, Upstream)>,
    /// Each channel's pool member (the dial address Caddy's metric names), skipped ones too.
    members: Vec<(String, String)>,
    naive_proxy: Option<ForwardProxy>,
}

fn start_pool(channels: &[&str]) -> Pool {
    start_pool_with(channels, &[("CADDY_HEALTH_INTERVAL", "500ms"), ("CADDY_HEALTH_TIMEOUT", "400ms")])
}

/// The partner edge's Caddyfile over `channels`, stack variables overridden by `set`.
pub(crate) fn start_pool_with(channels: &[&str], set: &[(&str, &str)]) -> Pool {
    let bundle = StackBundle::partner_edge();
    let site_port = free_port().unwrap();
    let admin = format!("127.0.0.1:{}", free_port().unwrap());
    let mut upstreams = Vec::new();
    let mut members = Vec::new();
    let mut extra = vec![("CADDY_SITE", format!("http://127.0.0.1:{site_port}")), ("CADDY_ADMIN", admin.clone())];
    extra.extend(set.iter().map(|(k, v)| (*k, (*v).to_owned())));
    for (channel, port_var) in [("xray", "XRAY_HTTP_PORT"), ("hysteria2", "HYSTERIA2_HTTP_PORT")] {
        let up = Upstream::start(channel).unwrap();
        extra.push((port_var, up.addr().port().to_string()));
        members.push((channel.to_owned(), up.hostport()));
        upstreams.push((channel.to_owned(), up));
    }
    // naive: Caddy's own listener (the member) -> the proxy -> the backend stand-in.
    let backend = Upstream::start("naive").unwrap();
    let proxy = ForwardProxy::start().unwrap();
    let member_port = free_port().unwrap();
    extra.extend([
        ("NAIVE_HTTP_PORT", member_port.to_string()),
        ("NAIVE_PROXY_PORT", proxy.addr().port().to_string()),
        ("NAIVE_BACKEND", backend.hostport()),
    ]);
    members.push(("naive".to_owned(), format!("127.0.0.1:{member_port}")));
    upstreams.push(("naive".to_owned(), backend));

    let drop: Vec<&str> = [("hysteria2", HYSTERIA2), ("naive", NAIVE)]
        .iter()
        .filter(|(c, _)| !channels.contains(c))
        .flat_map(|(_, vars)| vars.iter().copied())
        .collect();
    let text =
        Renderer::new(&bundle).render_template("caddy", None, &vars(&bundle, "full.env", &drop, &extra)).unwrap();
    let caddy = CaddyProcess::start(&text, &admin).unwrap();
    upstreams.retain(|(c, _)| channels.contains(&c.as_str()));
    Pool { caddy, site: format!("127.0.0.1:{site_port}"), upstreams, members, naive_proxy: Some(proxy) }
}

impl Pool {
    pub(crate) fn upstream(&self, channel: &str) -> &Upstream {
        &self.upstreams.iter().find(|(c, _)| c == channel).unwrap().1
    }

    fn member(&self, channel: &str) -> String {
        self.members.iter().find(|(c, _)| c == channel).unwrap().1.clone()
    }

    fn naive_proxy(&self) -> &ForwardProxy {
        self.naive_proxy.as_ref().unwrap()
    }

    /// Waits until Caddy's metric says exactly `expected` (channel, healthy) for the channels'
    /// members (series of other upstreams, like the backend naive's member dials, aside).
    pub(crate) fn wait_health(&self, expected: &[(&str, f64)]) {
        let want: Vec<(String, f64)> = expected.iter().map(|(c, h)| (self.member(c), *h)).collect();
        let got = self.caddy.wait_upstreams(Duration::from_secs(30), |samples| {
            let mut s: Vec<_> =
                samples.iter().filter(|(u, _)| self.members.iter().any(|(_, m)| m == u)).cloned().collect();
            s.sort_by(|a, b| a.0.cmp(&b.0));
            let mut w = want.clone();
            w.sort_by(|a, b| a.0.cmp(&b.0));
            s == w
        });
        if let Err(e) = got {
            panic!("{e}\n{}", self.caddy.log());
        }
    }

    /// Sends a request through Caddy; returns (the upstream that answered, the X-Channel-Tag it saw).
    fn request(&self) -> (String, String) {
        let r = http_get(&self.site, "/through/the/pool").unwrap();
        assert_eq!(r.status, 200, "{r:?}\n{}", self.caddy.log());
        let body = r.json().unwrap();
        (
            body["upstream"].as_str().unwrap().to_owned(),
            body["headers"]["x-channel-tag"].as_str().unwrap_or("").to_owned(),
        )
    }

    /// The requests for `path` naive's proxy forwarded to the backend stand-in.
    fn via_naive_proxy(&self, path: &str) -> usize {
        let backend = self.upstream("naive").hostport();
        let target = format!("http://{backend}{path}");
        self.naive_proxy().log().iter().filter(|f| f.destination == backend && f.target == target).count()
    }
}

#[test]
fn a_real_caddy_serves_the_first_healthy_channel_with_its_tag() {
    let pool = start_pool(&["xray", "hysteria2", "naive"]);
    // One series per active channel.
    pool.wait_health(&[("xray", 1.0), ("hysteria2", 1.0), ("naive", 1.0)]);
    assert_eq!(pool.request(), ("xray".to_owned(), "xray".to_owned()));

    // xray's health check fails: Caddy marks it down and the next channel serves, tagged as itself.
    pool.upstream("xray").set_mode(UpstreamMode::Unhealthy);
    pool.wait_health(&[("xray", 0.0), ("hysteria2", 1.0), ("naive", 1.0)]);
    assert_eq!(pool.request(), ("hysteria2".to_owned(), "hysteria2".to_owned()));

    // hysteria2 stops answering at all: the request is retried on naive within lb_try_duration,
    // and reaches the backend by way of naive's proxy.
    pool.upstream("hysteria2").set_mode(UpstreamMode::Stopped);
    assert_eq!(pool.via_naive_proxy("/through/the/pool"), 0);
    assert_eq!(pool.request(), ("naive".to_owned(), "naive".to_owned()));
    assert_eq!(pool.via_naive_proxy("/through/the/pool"), 1, "{:?}", pool.naive_proxy().log());

    // xray comes back: it serves again once healthy.
    pool.upstream("xray").set_mode(UpstreamMode::Healthy);
    pool.wait_health(&[("xray", 1.0), ("hysteria2", 0.0), ("naive", 1.0)]);
    assert_eq!(pool.request(), ("xray".to_owned(), "xray".to_owned()));
}

#[test]
fn the_naive_member_reaches_the_backend_through_naives_proxy() {
    let mut pool = start_pool(&["xray", "naive"]);
    // naive's health checks go the whole way: member, proxy, backend.
    pool.wait_health(&[("xray", 1.0), ("naive", 1.0)]);
    // Caddy counts a member healthy before its first check: wait for a check through the proxy.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while pool.via_naive_proxy("/api/health") == 0 {
        assert!(std::time::Instant::now() < deadline, "{:?}", pool.naive_proxy().log());
        std::thread::sleep(Duration::from_millis(100));
    }
    pool.upstream("xray").set_mode(UpstreamMode::Stopped);
    assert_eq!(pool.request(), ("naive".to_owned(), "naive".to_owned()));
    let seen = pool.upstream("naive").seen();
    let request = seen.iter().rfind(|r| r.path == "/through/the/pool").unwrap();
    // The backend sees the request as naive's proxy sent it: to its own address, tagged naive.
    assert_eq!(request.headers.get("host"), Some(&pool.upstream("naive").hostport()));
    assert_eq!(request.headers.get("x-channel-tag").map(String::as_str), Some("naive"));
    assert_eq!(pool.via_naive_proxy("/through/the/pool"), 1, "{:?}", pool.naive_proxy().log());

    // Without naive's listener the member cannot reach the backend: Caddy marks it down.
    pool.naive_proxy = None;
    pool.wait_health(&[("xray", 0.0), ("naive", 0.0)]);
}

#[test]
fn a_real_caddy_has_no_series_for_a_skipped_channel() {
    let pool = start_pool(&["xray", "naive"]);
    pool.wait_health(&[("xray", 1.0), ("naive", 1.0)]);
    pool.upstream("xray").set_mode(UpstreamMode::Stopped);
    assert_eq!(pool.request(), ("naive".to_owned(), "naive".to_owned()));
}

#[test]
fn nasty_values_keep_the_structure_caddy_adapts() {
    let bundle = StackBundle::partner_edge();
    let template = ":8080 {\n\theader X-A {{ V }}\n\theader X-B \"p-{{ V }}\"\n\trespond {{ V }}-body 200\n}\n";
    let adapt = |v: &str| {
        let vars = vars(&bundle, "caddy.env", &[], &[("V", v.to_owned())]);
        let text =
            Renderer::new(&bundle).render_template("caddy", Some((Path::new("probe.tpl"), template)), &vars).unwrap();
        caddy::adapt(&text).unwrap()
    };
    let shape = |config: &serde_json::Value| {
        let routes = &config["apps"]["http"]["servers"]["srv0"]["routes"];
        let handlers: Vec<String> = routes[0]["handle"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                format!(
                    "{}:{}",
                    h["handler"],
                    h["response"]["set"]
                        .as_object()
                        .map(|o| o.keys().cloned().collect::<Vec<_>>().join(","))
                        .unwrap_or_default()
                )
            })
            .collect();
        (routes.as_array().unwrap().len(), handlers)
    };
    let reference = shape(&adapt("plain"));
    // The template's own quotes cannot hold a trailing backslash: an error naming the line, not a broken file.
    let vars_ends = vars(&bundle, "caddy.env", &[], &[("V", "ends\\".to_owned())]);
    let err = Renderer::new(&bundle)
        .render_template("caddy", Some((Path::new("probe.tpl"), template)), &vars_ends)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("probe.tpl:3: "), "{err}");
    // Caddy's replacer turns `\{` and `\}` into braces at request time.
    let runtime = |s: &str| s.replace("\\{", "{").replace("\\}", "}");
    for v in [
        "two words",
        "q\"uote",
        "{",
        "}",
        "{{ x }}",
        "{env.HOME}",
        "é日本",
        "# hash",
        "}\n}\nevil {",
        "`tick`",
        "import x",
    ] {
        let config = adapt(v);
        assert_eq!(shape(&config), reference, "value {v:?} changed the structure: {config}");
        let handle = &config["apps"]["http"]["servers"]["srv0"]["routes"][0]["handle"];
        let header = |name: &str| {
            handle.as_array().unwrap().iter().find_map(|h| h["response"]["set"][name][0].as_str()).unwrap().to_owned()
        };
        assert_eq!(runtime(&header("X-A")), v);
        assert_eq!(runtime(&header("X-B")), format!("p-{v}"));
        let body = handle.as_array().unwrap().iter().find_map(|h| h["body"].as_str()).unwrap();
        assert_eq!(runtime(body), format!("{v}-body"));
    }
}

/// The `edge` binary, built once for these tests.
fn edge_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", "edge-cli", "--bin", "edge"])
            .current_dir(workspace())
            .status()
            .expect("cannot run cargo build");
        assert!(status.success(), "cargo build -p edge-cli failed");
        // This test binary lives in target/debug/deps; edge is in target/debug.
        let exe = std::env::current_exe().unwrap();
        exe.parent().and_then(Path::parent).unwrap().join("edge")
    })
}

fn edge(root: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(edge_bin());
    cmd.arg("--root").arg(root).args(args).current_dir(workspace()).env_remove("EDGE_ROOT").env_remove("EDGE_STACK");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn edge_render_renders_an_operators_legacy_template() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("caddy.txt");
    // SPEC.md's command, as operators script it.
    let o = edge(
        dir.path(),
        &[
            "render",
            "caddy",
            "--tpl",
            "tests/fixtures/render/Caddyfile.tpl",
            "--out",
            out.to_str().unwrap(),
            "--env-from-fixture",
            "tests/fixtures/render/caddy.env",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        text.contains("\t\tto 127.0.0.1:3081\n")
            && text.contains("header_up X-Partner acme\n")
            && !text.contains("log"),
        "{text}"
    );
    caddy::validate(&text).unwrap();

    // Environment above the fixture, --set above the environment.
    let o = edge(
        dir.path(),
        &[
            "render",
            "caddy",
            "--tpl",
            "tests/fixtures/render/Caddyfile.tpl",
            "--out",
            out.to_str().unwrap(),
            "--env-from-fixture",
            "tests/fixtures/render/caddy.env",
            "--set",
            "PARTNER_ID=from-flag",
        ],
        &[("PARTNER_ID", "from-env"), ("NAIVE_SERVER", "n.example.net"), ("DEBUG_LOG", "1")],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains("to 127.0.0.1:3081 127.0.0.1:3083\n") && text.contains("X-Partner from-flag\n"), "{text}");
    assert!(text.contains("\tlog\n"), "{text}");
    caddy::validate(&text).unwrap();
}

#[test]
fn edge_render_errors_name_the_variable_and_line_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let tpl = dir.path().join("bad.tpl");
    std::fs::write(&tpl, "{{PARTNER_DOMAIN}} {\n\trespond {{ NOT_SET_ANYWHERE }}\n}\n").unwrap();
    let out = dir.path().join("out.txt");
    let o = edge(
        dir.path(),
        &[
            "render",
            "caddy",
            "--tpl",
            tpl.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--env-from-fixture",
            "tests/fixtures/render/caddy.env",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("{}:2: undefined variable NOT_SET_ANYWHERE", tpl.display())),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());

    // The client config of the required channel says which node-config fields are missing.
    let o = edge(
        dir.path(),
        &["render", "xray", "--out", out.to_str().unwrap(), "--env-from-fixture", "tests/fixtures/render/caddy.env"],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("channel xray is not configured: missing REALITY_SERVER, REALITY_PORT"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());
}

#[test]
fn edge_render_all_writes_the_set_and_the_channel_status_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let fixture_path = fixture("full.env");
    let o = edge(
        dir.path(),
        &[
            "render",
            "--all",
            "--out-dir",
            out_dir.to_str().unwrap(),
            "--env-from-fixture",
            fixture_path.to_str().unwrap(),
            "--json",
        ],
        &[("NAIVE_SERVER", "")],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let states: Vec<String> = report["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| format!("{}={}", c["id"].as_str().unwrap(), c["state"].as_str().unwrap()))
        .collect();
    assert_eq!(states, ["xray=active", "awg=active", "hysteria2=active", "naive=skipped"]);
    assert_eq!(
        std::fs::read_to_string(out_dir.join("channels-status.env")).unwrap(),
        "xray=active\nawg=active\nhysteria2=active\nnaive=skipped\n"
    );
    for f in [
        "Caddyfile",
        "docker-compose.yml",
        "xray-client.json",
        "hysteria2-client.yaml",
        "systemd/edge-watchdog.service",
        "systemd/edge-watchdog.timer",
    ] {
        assert!(out_dir.join(f).is_file(), "{f} missing");
    }
    assert!(!out_dir.join("naive-client.json").exists());
    caddy::validate(&std::fs::read_to_string(out_dir.join("Caddyfile")).unwrap()).unwrap();

    // Without the required channel's credentials: an error, and nothing written.
    let empty = dir.path().join("empty");
    let o = edge(
        dir.path(),
        &[
            "render",
            "--all",
            "--out-dir",
            empty.to_str().unwrap(),
            "--env-from-fixture",
            "tests/fixtures/render/caddy.env",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("channel xray is not configured"), "{}", stderr(&o));
    assert!(!empty.exists());

    // The second stack renders with the same command and no code of its own.
    let app_dir = dir.path().join("app");
    let o = render_app_behind_caddy(dir.path(), Path::new("examples/app-behind-caddy"), &app_dir);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("app served at https://app.example.com"));
    caddy::validate(&std::fs::read_to_string(app_dir.join("Caddyfile")).unwrap()).unwrap();
    docker_compose_config(&std::fs::read_to_string(app_dir.join("docker-compose.yml")).unwrap());
}

#[test]
fn generated_secrets_reach_a_container_env_only_by_opt_in_and_render_warns_then() {
    let mut bundle = app_stack();
    let secrets = [("APP_API_KEY", "key-5d81c0a4e7"), ("APP_SESSION_SECRET", "session-0b9f3a62")];
    let vars = app_vars(&bundle).with_layer(Source::Secret, secrets.map(|(k, v)| (k.to_owned(), v.to_owned())));
    let render = |bundle: &StackBundle| Renderer::new(bundle).render_stack(&vars, &BTreeMap::new()).unwrap();

    // The default: a read-only file, nothing in the environment or the compose file.
    let rendered = render(&bundle);
    let app = rendered.services.iter().find(|s| s.name == "app").unwrap();
    assert!(secrets.iter().all(|(k, _)| !app.env.contains_key(*k)), "{:?}", app.env);
    let compose = &rendered.file("compose").unwrap().contents;
    assert!(secrets.iter().all(|(_, v)| !compose.contains(v)), "{compose}");
    assert!(rendered.warnings.is_empty(), "{:?}", rendered.warnings);

    // Opted in: every generated key is in the app's environment, and render says who can read it.
    bundle.stack.services.iter_mut().find(|s| s.name == "app").unwrap().secrets_in_env = true;
    let rendered = render(&bundle);
    let app = rendered.services.iter().find(|s| s.name == "app").unwrap();
    for (k, v) in secrets {
        assert_eq!(app.env.get(k).map(String::as_str), Some(v));
    }
    let compose = docker_compose_config(&rendered.file("compose").unwrap().contents);
    assert_eq!(compose["services"]["app"]["environment"]["APP_API_KEY"].as_str(), Some(secrets[0].1));
    assert_eq!(rendered.warnings.len(), 1, "{:?}", rendered.warnings);
    let warning = &rendered.warnings[0];
    assert!(warning.contains("APP_API_KEY, APP_SESSION_SECRET") && warning.contains("docker inspect"), "{warning}");

    // `edge render` prints it.
    let dir = tempfile::tempdir().unwrap();
    let stack_dir = dir.path().join("stack");
    std::fs::create_dir_all(stack_dir.join("templates")).unwrap();
    let example = workspace().join("examples/app-behind-caddy");
    let manifest = std::fs::read_to_string(example.join("stack.toml")).unwrap();
    let manifest = manifest.replace("aliases = [\"app\"]", "aliases = [\"app\"]\nsecrets_in_env = true");
    std::fs::write(stack_dir.join("stack.toml"), manifest).unwrap();
    for entry in std::fs::read_dir(example.join("templates")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), stack_dir.join("templates").join(entry.file_name())).unwrap();
    }
    let out_dir = dir.path().join("out");
    let o = render_app_behind_caddy(dir.path(), &stack_dir, &out_dir);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("warning: service app gets the generated secrets"), "{}", stderr(&o));
}

#[test]
fn both_stacks_point_caddy_at_another_acme_ca_only_when_asked() {
    let ca = "https://pebble:14000/dir";
    let partner = StackBundle::partner_edge();
    let app = app_stack();
    let render = |bundle: &StackBundle, base: Variables, extra: &[(&str, &str)]| {
        let v = base.with_layer(Source::Flag, extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        Renderer::new(bundle).render_template("caddy", None, &v).unwrap()
    };
    let cases = [
        (render(&partner, vars(&partner, "caddy.env", &[], &[]), &[]), None),
        (render(&app, app_vars(&app), &[]), None),
        (
            render(
                &partner,
                vars(&partner, "caddy.env", &[], &[]),
                &[("ACME_CA", ca), ("ACME_CA_ROOT", "/data/ca.pem")],
            ),
            Some("/data/ca.pem"),
        ),
        (
            render(&app, app_vars(&app), &[("ACME_CA", ca), ("ACME_CA_ROOT_PEM", "-----BEGIN CERTIFICATE-----")]),
            Some("/etc/caddy/acme-ca-root.pem"),
        ),
    ];
    for (text, root) in cases {
        let adapted = caddy::adapt(&text).unwrap().to_string();
        match root {
            None => {
                assert!(!text.contains("acme_ca") && !adapted.contains("pebble"), "{text}");
            }
            Some(root) => {
                assert!(text.contains(&format!("acme_ca {ca}\n")), "{text}");
                assert!(text.contains(&format!("acme_ca_root {root}\n")), "{text}");
                assert!(adapted.contains(&format!("\"ca\":\"{ca}\"")), "{adapted}");
                assert!(adapted.contains(root), "{adapted}");
            }
        }
    }
}

/// `edge --stack STACK render --all --out-dir OUT` of app-behind-caddy (or a copy of it) with its
/// required variables set, run from `cwd`.
fn render_app_behind_caddy(cwd: &Path, stack: &Path, out: &Path) -> std::process::Output {
    let (stack, out) = (stack.to_str().unwrap(), out.to_str().unwrap());
    let set = ["--set", "APP_DOMAIN=app.example.com", "--set", "APP_IMAGE=ghcr.io/acme/app:1.4"];
    let args: Vec<&str> = ["--stack", stack, "render", "--all", "--out-dir", out].into_iter().chain(set).collect();
    edge(cwd, &args, &[])
}
