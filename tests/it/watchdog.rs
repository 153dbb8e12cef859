//! `edge-watchdog` and `edge alert test` end to end: the real binaries against a real Caddy
//! (the current one) over switchable loopback upstreams, a loopback webhook/Bot API server of the
//! tests, Debian's `promtool`, and the real Docker engine for the daemon's container events.
//!
//! The binaries are this crate's shims (`edge-watchdog-it`, `edge-it`: the same one-line
//! `main` as edge-cli's), which `cargo test` builds and names in `CARGO_BIN_EXE_*`: no nested
//! cargo build, no guessing at `target/debug`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use edge_channels::image::{BuildContext, Images};
use edge_core::{ChannelsStatus, EnvFile, Paths, StackBundle, UpstreamState};
use edge_render::{Renderer, Source, Variables};
use edge_tests::caddy::{CaddyProcess, free_port};
use edge_tests::docker::{
    STANDIN_IMAGE, STANDIN_UNHEALTHY_IMAGE, TestStack, docker_out, ensure_image, provision_local_images,
};
use edge_tests::proxy::ForwardProxy;
use edge_tests::telegram::{ChatServer, Endpoint, Reply, refused_url};
use edge_tests::upstream::{Upstream, UpstreamMode};
use tokio::io::{AsyncBufReadExt, BufReader};

const WATCHDOG: &str = env!("CARGO_BIN_EXE_edge-watchdog-it");
const EDGE: &str = env!("CARGO_BIN_EXE_edge-it");
const TOKEN: &str = "123456789:AAHwatchdogTOKENneverSHOWN_x9";
const CHAT: &str = "-100777";
/// An engine socket that does not exist: the `--once` look at the containers finds nothing,
/// so only the front proxy's metrics decide (the loopback upstreams have no containers).
const NO_ENGINE: &str = "unix:///nonexistent/edge-test-docker.sock";

/// A command with none of the operator's alert or node variables inherited.
fn command(bin: &str) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(bin);
    for (k, _) in std::env::vars() {
        if k.starts_with("OXPULSE_") || k.starts_with("TG_") || k.starts_with("EDGE_") || k == "STATE_DIR" {
            cmd.env_remove(k);
        }
    }
    cmd.kill_on_drop(true);
    cmd
}

async fn run(bin: &str, args: &[&str], env: &[(&str, String)]) -> Output {
    let out = command(bin)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .await
        .expect("the binary runs");
    eprintln!(
        "{} {} -> {}\n--- stdout\n{}--- stderr\n{}",
        Path::new(bin).file_name().unwrap_or_default().to_string_lossy(),
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Texts of the messages the chat server accepted that contain `needle`.
fn messages_with(chat: &ChatServer, needle: &str) -> Vec<String> {
    chat.delivered().into_iter().filter(|m| m.contains(needle)).collect()
}

/// A node: a root prefix with the embedded partner edge's paths under it.
struct Node {
    root: tempfile::TempDir,
    paths: Paths,
}

impl Node {
    fn new(bundle: &StackBundle) -> Self {
        let root = tempfile::Builder::new().prefix("edge-watchdog-").tempdir().unwrap();
        let paths = Paths::new(Some(root.path()), &bundle.stack.stack);
        std::fs::create_dir_all(paths.state_dir()).unwrap();
        Self { root, paths }
    }

    fn root(&self) -> String {
        self.root.path().display().to_string()
    }

    /// What `edge install` records: the front proxy's pool and metrics URL, and the channel states.
    fn installed(&self, pool: &[(String, String)], metrics_url: &str, status: &ChannelsStatus) {
        let mut env = EnvFile::default();
        let pool: Vec<String> = pool.iter().map(|(c, u)| format!("{c}={u}")).collect();
        env.set("POOL", &pool.join(","));
        env.set("METRICS_URL", metrics_url);
        env.save(&self.paths.install_env(), 0o644).unwrap();
        status.save(&self.paths.channels_status()).unwrap();
    }

    fn status(&self) -> String {
        std::fs::read_to_string(self.paths.channels_status()).unwrap_or_default()
    }

    fn textfile(&self) -> PathBuf {
        self.root.path().join("textfile/edge_watchdog.prom")
    }
}

/// The partner edge's Caddyfile, rendered for three loopback upstreams of the test, run by a real Caddy.
struct Front {
    caddy: CaddyProcess,
    upstreams: Vec<(String, Upstream)>,
    _naive_proxy: ForwardProxy,
    pool: Vec<(String, String)>,
    status: ChannelsStatus,
}

impl Front {
    fn start() -> Self {
        Self::start_with(true)
    }

    /// Without naive, Caddy's page holds exactly one series per channel: naive's member adds a
    /// series for the backend it dials, which legacy mode (every series counts) would watch too.
    fn start_with(naive: bool) -> Self {
        let bundle = StackBundle::partner_edge();
        let admin = format!("127.0.0.1:{}", free_port().unwrap());
        let mut extra = vec![
            ("CADDY_SITE".to_owned(), format!("http://127.0.0.1:{}", free_port().unwrap())),
            ("CADDY_ADMIN".to_owned(), admin.clone()),
            ("CADDY_HEALTH_INTERVAL".to_owned(), "300ms".to_owned()),
            ("CADDY_HEALTH_TIMEOUT".to_owned(), "250ms".to_owned()),
        ];
        let mut upstreams = Vec::new();
        for (channel, port_var) in [("xray", "XRAY_HTTP_PORT"), ("hysteria2", "HYSTERIA2_HTTP_PORT")] {
            let up = Upstream::start(channel).unwrap();
            extra.push((port_var.to_owned(), up.addr().port().to_string()));
            upstreams.push((channel.to_owned(), up));
        }
        // naive's member is Caddy's own listener, dialling the backend through naive's proxy.
        let naive_proxy = ForwardProxy::start().unwrap();
        if naive {
            let backend = Upstream::start("naive").unwrap();
            extra.extend([
                ("NAIVE_HTTP_PORT".to_owned(), free_port().unwrap().to_string()),
                ("NAIVE_PROXY_PORT".to_owned(), naive_proxy.addr().port().to_string()),
                ("NAIVE_BACKEND".to_owned(), backend.hostport()),
            ]);
            upstreams.push(("naive".to_owned(), backend));
        }
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/render/full.env");
        let mut pairs = edge_render::parse_fixture(&std::fs::read_to_string(fixture).unwrap()).unwrap();
        if !naive {
            pairs.retain(|(k, _)| k != "NAIVE_SERVER");
        }
        let vars =
            Variables::new(&bundle.stack.variables).with_layer(Source::Fixture, pairs).with_layer(Source::Flag, extra);
        let rendered = Renderer::new(&bundle).render_stack(&vars, &BTreeMap::new()).unwrap();
        let caddyfile = &rendered.file("caddy").unwrap().contents;
        let caddy = CaddyProcess::start(caddyfile, &admin).unwrap();
        let pool = rendered.pool.iter().map(|m| (m.channel.clone(), m.upstream.clone())).collect();
        // The fixture configures a mesh this host does not run: the tick would report awg down.
        let mut status = rendered.status.clone();
        status.set("awg", edge_core::ChannelState::Skipped);
        let front = Self { caddy, upstreams, _naive_proxy: naive_proxy, pool, status };
        if naive {
            front.wait(&[("xray", 1.0), ("hysteria2", 1.0), ("naive", 1.0)]);
        } else {
            front.wait(&[("xray", 1.0), ("hysteria2", 1.0)]);
        }
        front
    }

    fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.caddy.admin())
    }

    fn upstream(&self, channel: &str) -> &Upstream {
        &self.upstreams.iter().find(|(c, _)| c == channel).unwrap().1
    }

    /// The channel's pool member, the address Caddy's metric names.
    fn member(&self, channel: &str) -> String {
        self.pool.iter().find(|(c, _)| c == channel).unwrap().1.clone()
    }

    /// Switches a channel's upstream and waits until Caddy's metric says so.
    fn set(&self, channel: &str, mode: UpstreamMode) {
        self.upstream(channel).set_mode(mode);
    }

    /// Waits until Caddy's metric says exactly `expected` (channel, healthy).
    fn wait(&self, expected: &[(&str, f64)]) {
        let mut want: Vec<(String, f64)> = expected.iter().map(|(c, h)| (self.member(c), *h)).collect();
        want.sort_by(|a, b| a.0.cmp(&b.0));
        let got = self.caddy.wait_upstreams(Duration::from_secs(30), |samples| {
            // The pool's members only: naive's member adds a series for the backend it dials.
            let mut s: Vec<_> =
                samples.iter().filter(|(u, _)| self.pool.iter().any(|(_, m)| m == u)).cloned().collect();
            s.sort_by(|a, b| a.0.cmp(&b.0));
            s == want
        });
        if let Err(e) = got {
            panic!("{e}\n{}", self.caddy.log());
        }
    }
}

/// One `edge-watchdog --once` on the node.
async fn once(node: &Node, env: &[(&str, String)]) -> Output {
    let textfile = node.textfile().display().to_string();
    let mut env = env.to_vec();
    env.push(("DOCKER_HOST", NO_ENGINE.to_owned()));
    run(WATCHDOG, &["--once", "--root", &node.root(), "--textfile", &textfile], &env).await
}

/// `promtool check metrics` on a file: its verdict and output.
fn promtool(file: &Path) -> (bool, String) {
    let out = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(file).unwrap())
        .output()
        .expect("promtool runs (apt-get install prometheus)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_upstream_is_one_transition_and_its_return_one_recovery() {
    let front = Front::start();
    let node = Node::new(&StackBundle::partner_edge());
    node.installed(&front.pool, &front.metrics_url(), &front.status);
    let chat = ChatServer::start().await.unwrap();
    let env = [("OXPULSE_TG_WEBHOOK", chat.webhook_url()), ("OXPULSE_TG_MIN_INTERVAL", "0".to_owned())];
    let naive = front.member("naive");

    let out = once(&node, &env).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(chat.delivered().is_empty(), "healthy upstreams seen for the first time are not news");
    assert!(stdout(&out).is_empty(), "a quiet tick prints nothing: {}", stdout(&out));

    front.set("naive", UpstreamMode::Stopped);
    front.wait(&[("xray", 1.0), ("hysteria2", 1.0), ("naive", 0.0)]);
    let out = once(&node, &env).await;
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(chat.delivered().len(), 1, "{:?}", chat.delivered());
    let expected = format!("TRANSITION channel=naive upstream={naive} healthy -> unhealthy");
    assert_eq!(messages_with(&chat, &expected).len(), 1, "{:?}", chat.delivered());
    assert!(node.status().contains("naive=failed_at_runtime\n"), "{}", node.status());
    assert!(node.status().contains("xray=active\n"), "{}", node.status());
    let state = UpstreamState::load(&node.paths.upstream_state()).unwrap();
    assert_eq!(state.get(&naive).map(|e| e.health.as_str()), Some("unhealthy"));
    assert!(stdout(&out).contains("channel naive: active -> failed_at_runtime"), "{}", stdout(&out));
    let (ok, text) = promtool(&node.textfile());
    assert!(ok, "promtool check metrics failed:\n{text}");
    let metrics = std::fs::read_to_string(node.textfile()).unwrap();
    assert!(metrics.contains("edge_watchdog_channel_up{channel=\"naive\"} 0\n"), "{metrics}");
    assert!(
        metrics.contains(&format!("edge_watchdog_upstream_healthy{{channel=\"naive\",upstream=\"{naive}\"}} 0\n")),
        "{metrics}"
    );
    assert!(metrics.contains("edge_watchdog_alerts_sent_total{transport=\"webhook\"} 1\n"), "{metrics}");

    // Still down: nothing new.
    let out = once(&node, &env).await;
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(chat.delivered().len(), 1, "{:?}", chat.delivered());

    front.set("naive", UpstreamMode::Healthy);
    front.wait(&[("xray", 1.0), ("hysteria2", 1.0), ("naive", 1.0)]);
    let out = once(&node, &env).await;
    assert_eq!(out.status.code(), Some(0));
    let sent = chat.delivered();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(sent[1].ends_with(&format!("TRANSITION channel=naive upstream={naive} unhealthy -> healthy")), "{sent:?}");
    assert!(node.status().contains("naive=active\n"), "{}", node.status());
    assert_eq!(messages_with(&chat, "TRANSITION").len(), 2);
    let metrics = std::fs::read_to_string(node.textfile()).unwrap();
    assert!(metrics.contains("edge_watchdog_alerts_sent_total{transport=\"webhook\"} 2\n"), "{metrics}");
    assert!(promtool(&node.textfile()).0);
}

/// Legacy mode (no `install.env`): `OXPULSE_METRICS_SRC` as a URL, `STATE_DIR`, the default
/// 600 s window; the Bot API fallback behind a failing webhook, as the legacy script chains them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_upstreams_down_is_critical_even_inside_the_rate_limit_window() {
    let front = Front::start_with(false);
    let state = tempfile::tempdir().unwrap();
    let chat = ChatServer::start().await.unwrap();
    chat.set_webhook(Reply::Fail(502));
    let env = [
        ("OXPULSE_METRICS_SRC", front.metrics_url()),
        ("STATE_DIR", state.path().display().to_string()),
        ("OXPULSE_TG_WEBHOOK", chat.webhook_url()),
        ("TG_TOKEN", TOKEN.to_owned()),
        ("OXPULSE_TG_CHAT", CHAT.to_owned()),
        ("OXPULSE_TG_API_FALLBACK", chat.telegram_url(TOKEN)),
        ("DOCKER_HOST", NO_ENGINE.to_owned()),
    ];
    let tick = || run(WATCHDOG, &["--once", "--json"], &env);

    assert_eq!(tick().await.status.code(), Some(0));
    front.set("xray", UpstreamMode::Stopped);
    front.wait(&[("xray", 0.0), ("hysteria2", 1.0)]);
    let out = tick().await;
    assert_eq!(out.status.code(), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["mode"], "legacy");
    assert_eq!(report["delivered"][0]["transport"], "telegram", "{report}");
    assert_eq!(chat.delivered().len(), 1);
    let stamp = std::fs::read_to_string(state.path().join("telegram/last-alert-ts")).unwrap();
    assert!(!stamp.trim().is_empty(), "the window is now closed for 600 s");

    // Inside the window: the rest goes down.
    front.set("hysteria2", UpstreamMode::Stopped);
    front.wait(&[("xray", 0.0), ("hysteria2", 0.0)]);
    let out = tick().await;
    assert_eq!(out.status.code(), Some(0));
    let sent = chat.delivered();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(sent[1].starts_with("CRITICAL: all upstreams unhealthy on "), "{sent:?}");
    // The transitions that waited go with it, none lost.
    let up = front.member("hysteria2");
    assert!(sent[1].contains(&format!("TRANSITION upstream={up} healthy -> unhealthy")), "{sent:?}");
    let telegram: Vec<_> = chat.received().into_iter().filter(|r| r.endpoint == Endpoint::Telegram).collect();
    assert!(telegram.iter().all(|r| r.chat_id.as_deref() == Some(CHAT) && r.accepted));
    assert!(!String::from_utf8_lossy(&out.stderr).contains(TOKEN), "the bot token is never logged");
}

/// Legacy mode on a metrics file, hostile upstream names included: the textfile passes
/// `promtool check metrics`; an undelivered alert exits 3 and goes out on the next run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn textfile_metrics_pass_promtool_and_undelivered_alerts_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("metrics.txt");
    let textfile = dir.path().join("edge_watchdog.prom");
    let names = ["127.0.0.1:3081", "odd\"name\\x:1", "[::1]:3083"];
    let write_page = |healthy: &[bool]| {
        let mut text = String::from(
            "# HELP caddy_reverse_proxy_upstreams_healthy Health status of reverse proxy upstreams.\n\
             # TYPE caddy_reverse_proxy_upstreams_healthy gauge\n",
        );
        for (name, h) in names.iter().zip(healthy) {
            let escaped = name.replace('\\', "\\\\").replace('"', "\\\"");
            text.push_str(&format!(
                "caddy_reverse_proxy_upstreams_healthy{{upstream=\"{escaped}\"}} {}\n",
                u8::from(*h)
            ));
        }
        text.push_str("caddy_http_requests_total{handler=\"reverse_proxy\",server=\"srv0\"} 42\n");
        std::fs::write(&page, text).unwrap();
    };
    let chat = ChatServer::start().await.unwrap();
    let env = [
        ("OXPULSE_METRICS_SRC", page.display().to_string()),
        ("STATE_DIR", dir.path().join("state").display().to_string()),
        ("OXPULSE_TG_WEBHOOK", refused_url("/hook")),
        ("DOCKER_HOST", NO_ENGINE.to_owned()),
    ];
    let tf = textfile.display().to_string();
    let args = ["--once", "--textfile", tf.as_str()];

    write_page(&[true, true, true]);
    assert_eq!(run(WATCHDOG, &args, &env).await.status.code(), Some(0));
    let (ok, text) = promtool(&textfile);
    assert!(ok, "promtool check metrics failed:\n{text}");

    write_page(&[true, false, true]);
    let out = run(WATCHDOG, &args, &env).await;
    assert_eq!(out.status.code(), Some(3), "every transport failed: degraded");
    assert!(stdout(&out).contains("1 event undelivered"), "{}", stdout(&out));
    let metrics = std::fs::read_to_string(&textfile).unwrap();
    assert!(metrics.contains("edge_watchdog_alerts_queued 1\n"), "{metrics}");
    assert!(metrics.contains("edge_watchdog_upstream_healthy{upstream=\"odd\\\"name\\\\x:1\"} 0\n"), "{metrics}");
    let (ok, text) = promtool(&textfile);
    assert!(ok, "promtool check metrics failed:\n{text}\n{metrics}");

    // The webhook is back: the queued alert goes out, once.
    let mut env = env.to_vec();
    env[2].1 = chat.webhook_url();
    assert_eq!(run(WATCHDOG, &args, &env).await.status.code(), Some(0));
    assert_eq!(run(WATCHDOG, &args, &env).await.status.code(), Some(0));
    assert_eq!(
        chat.delivered(),
        ["[".to_owned() + &host() + "] TRANSITION upstream=odd\"name\\x:1 healthy -> unhealthy"]
    );
    let metrics = std::fs::read_to_string(&textfile).unwrap();
    assert!(metrics.contains("edge_watchdog_alerts_queued 0\n"), "{metrics}");
    assert!(metrics.contains("edge_watchdog_alert_delivery_failures_total 1\n"), "{metrics}");
    assert!(metrics.contains("edge_watchdog_alerts_sent_total{transport=\"webhook\"} 1\n"), "{metrics}");
    assert!(promtool(&textfile).0);
}

/// `hostname -s`, as messages name the host.
fn host() -> String {
    edge_alerts::config::short_hostname()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_alert_test_says_which_transport_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().display().to_string();
    let chat = ChatServer::start().await.unwrap();
    let alert_test = |env: Vec<(&'static str, String)>| {
        let root = root.clone();
        async move { run(EDGE, &["--root", &root, "alert", "test", "--json"], &env).await }
    };
    let telegram = |webhook: String| {
        vec![
            ("OXPULSE_TG_WEBHOOK", webhook),
            ("TG_TOKEN", TOKEN.to_owned()),
            ("OXPULSE_TG_CHAT", CHAT.to_owned()),
            ("OXPULSE_TG_API_FALLBACK", chat.telegram_url(TOKEN)),
        ]
    };

    // The webhook answers: it delivers, the Bot API is not tried.
    let out = alert_test(telegram(chat.webhook_url())).await;
    assert_eq!(out.status.code(), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["delivered_by"], "webhook", "{report}");
    assert_eq!(report["attempts"][1]["result"], "not_tried", "{report}");
    assert!(chat.delivered()[0].contains("TEST alert from edge"), "{:?}", chat.delivered());

    // The webhook is down: the Bot API delivers, and the webhook's failure is named.
    let out = alert_test(telegram(refused_url("/hook"))).await;
    assert_eq!(out.status.code(), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["delivered_by"], "telegram", "{report}");
    assert_eq!(report["attempts"][0]["result"], "failed", "{report}");
    assert!(!report.to_string().contains(TOKEN), "the token is redacted: {report}");
    assert_eq!(chat.received().last().map(|r| r.endpoint), Some(Endpoint::Telegram));

    // The plain text says it too.
    let out = run(EDGE, &["--root", &root, "alert", "test", "--message", "hello"], &telegram(chat.webhook_url())).await;
    assert!(stdout(&out).ends_with("delivered by webhook\n"), "{}", stdout(&out));
    assert_eq!(chat.delivered().last().map(String::as_str), Some("hello"));

    // Everything down: failure; nothing configured: a usage error.
    chat.set_telegram(Reply::Fail(500));
    let out = alert_test(telegram(refused_url("/hook"))).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("every configured transport failed"));
    let out = alert_test(Vec::new()).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no alert transport is configured"));
    // Testing never stamps the rate-limit clock.
    assert!(!dir.path().join("var/lib/oxpulse-partner-edge/telegram/last-alert-ts").exists());
}

/// The failing stand-in with an engine health check every second (one failure is enough).
const CHECKED_UNHEALTHY_IMAGE: &str = "edge-standin:unhealthy-checked";

async fn ensure_checked_unhealthy_image() {
    let images = Images::connect().await.unwrap();
    let base = images.inspect(STANDIN_UNHEALTHY_IMAGE).await.unwrap().id;
    let mut context = BuildContext::new();
    // The base's id is in the context, so a rebuilt base rebuilds this one.
    let dockerfile = format!(
        "FROM {STANDIN_UNHEALTHY_IMAGE}\nLABEL edge.test.base=\"{base}\"\n\
         HEALTHCHECK --interval=1s --timeout=1s --retries=1 CMD [\"wget\", \"-q\", \"-O\", \"/dev/null\", \"http://127.0.0.1:3080/api/health\"]\n"
    );
    context.add_file("Dockerfile", dockerfile.into_bytes(), 0o644).unwrap();
    ensure_image(&images, CHECKED_UNHEALTHY_IMAGE, &context).await.unwrap();
}

/// `docker run -d` of a stand-in labelled as edge labels a channel container of `stack`.
fn run_channel_container(stack: &TestStack, project: &str, container: &str, channel: &str, image: &str) {
    let created = docker_out(&[
        "run",
        "-d",
        "--name",
        container,
        "--label",
        &format!("edge.stack={}", stack.name),
        "--label",
        &format!("com.docker.compose.project={project}"),
        "--label",
        &format!("com.docker.compose.service={channel}"),
        "--label",
        &format!("edge.channel={channel}"),
        image,
    ]);
    assert!(!created.trim().is_empty(), "docker run {image} failed");
}

/// Polls until a delivered message contains `needle`; the time it took.
async fn wait_message(chat: &ChatServer, needle: &str, timeout: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if !messages_with(chat, needle).is_empty() {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_reports_a_stopped_channel_container_within_seconds() {
    tokio::task::spawn_blocking(provision_local_images).await.unwrap();
    let stack = TestStack::partner_edge("watchdog").unwrap();
    let bundle = stack.bundle().unwrap();
    let container = stack.container("oxpulse-partner-naive");
    let project = bundle.stack.stack.compose_project.clone();
    ensure_checked_unhealthy_image().await;
    // One channel container, labelled as edge labels a stack's (no engine health check).
    run_channel_container(&stack, &project, &container, "naive", STANDIN_IMAGE);

    let chat = ChatServer::start().await.unwrap();
    let upstream = format!("127.0.0.1:{}", stack.ports.naive);
    chat.set_metrics(Some(&format!("caddy_reverse_proxy_upstreams_healthy{{upstream=\"{upstream}\"}} 1\n")));
    let paths = Paths::new(Some(stack.root()), &bundle.stack.stack);
    std::fs::create_dir_all(paths.state_dir()).unwrap();
    let mut env = EnvFile::default();
    env.set("POOL", &format!("naive={upstream}"));
    env.set("METRICS_URL", &chat.metrics_url());
    env.save(&paths.install_env(), 0o644).unwrap();
    ChannelsStatus::parse("xray=active\nawg=skipped\nhysteria2=skipped\nnaive=active\n")
        .unwrap()
        .save(&paths.channels_status())
        .unwrap();

    let root = stack.root().display().to_string();
    let stack_dir = stack.stack_dir().display().to_string();
    let mut daemon = command(WATCHDOG)
        .args(["--interval", "60s", "--root", &root, "--stack", &stack_dir, "-v"])
        .env("OXPULSE_TG_WEBHOOK", chat.webhook_url())
        .env("OXPULSE_TG_MIN_INTERVAL", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Ready once it follows the engine's events.
    let mut stderr = BufReader::new(daemon.stderr.take().unwrap()).lines();
    let mut log = String::new();
    let ready = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = stderr.next_line().await {
            log.push_str(&line);
            log.push('\n');
            if line.contains("following docker events") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(ready, Ok(true), "the daemon never followed the events:\n{log}");
    let log_task = tokio::spawn(async move {
        let mut rest = String::new();
        while let Ok(Some(line)) = stderr.next_line().await {
            rest.push_str(&line);
            rest.push('\n');
        }
        rest
    });

    let started = Instant::now();
    docker_out(&["stop", &container]);
    let latency = wait_message(&chat, &format!("CONTAINER {container} (channel naive) died"), Duration::from_secs(10))
        .await
        .map(|_| started.elapsed());
    eprintln!("docker stop -> alert received: {latency:?}");
    let latency = latency.unwrap_or_else(|| panic!("no alert within 10 s: {:?}", chat.delivered()));
    assert!(latency < Duration::from_secs(5), "the alert took {latency:?}");
    assert_eq!(chat.delivered().len(), 1, "one alert, not one per event (kill, die, stop): {:?}", chat.delivered());
    let deadline = Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(paths.channels_status()).unwrap_or_default().contains("naive=failed_at_runtime")
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(std::fs::read_to_string(paths.channels_status()).unwrap().contains("naive=failed_at_runtime\n"));

    // It comes back: the recovery is reported too (the channel goes active once the proxy agrees).
    docker_out(&["start", &container]);
    let back =
        wait_message(&chat, &format!("CONTAINER {container} (channel naive) running again"), Duration::from_secs(10))
            .await;
    assert!(back.is_some(), "no recovery alert: {:?}", chat.delivered());

    // A container whose engine health check fails: reported when it turns unhealthy, not at its start.
    let hy2 = stack.container("oxpulse-partner-hy2");
    let started = Instant::now();
    run_channel_container(&stack, &project, &hy2, "hysteria2", CHECKED_UNHEALTHY_IMAGE);
    let unhealthy =
        wait_message(&chat, &format!("CONTAINER {hy2} (channel hysteria2) turned unhealthy"), Duration::from_secs(15))
            .await
            .map(|_| started.elapsed());
    eprintln!("docker run (failing health check) -> alert received: {unhealthy:?}");
    assert!(unhealthy.is_some(), "no unhealthy alert: {:?}", chat.delivered());
    assert!(messages_with(&chat, &format!("{hy2} (channel hysteria2) running again")).is_empty());
    assert_eq!(chat.delivered().len(), 3, "{:?}", chat.delivered());

    // SIGTERM: a clean exit.
    let pid = daemon.id().unwrap().to_string();
    std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), daemon.wait()).await;
    let rest = tokio::time::timeout(Duration::from_secs(5), log_task).await;
    eprintln!("--- daemon log\n{log}{}", rest.ok().and_then(Result::ok).unwrap_or_default());
    assert!(matches!(status, Ok(Ok(s)) if s.success()), "{status:?}");
}
