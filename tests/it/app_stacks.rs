//! Application stacks installed for real: `examples/app-behind-caddy` with the stand-in as
//! its app, Caddy obtaining a real certificate from pebble (Let's Encrypt's ACME test server,
//! run as a service of the test's copy of the stack), smoke checks and healthcheck.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use edge_channels::image::Images;
use edge_tests::docker::{CADDY_IMAGE, STANDIN_IMAGE, TestStack, free_port, provision_local_images};
use edge_tests::pebble::{self, PebbleCerts};

use crate::deploy::{code, edge, stdout};

const DOMAIN: &str = "app.test";

struct Ports {
    http: u16,
    https: u16,
    admin: u16,
    acme: u16,
    management: u16,
}

fn install_args(ports: &Ports, front_ca: &Path, webhook: &str) -> Vec<String> {
    let mut args: Vec<String> = vec!["install".into()];
    for (k, v) in [
        ("APP_DOMAIN", DOMAIN.to_owned()),
        ("APP_IMAGE", STANDIN_IMAGE.to_owned()),
        // The stand-in listens on 3080 and answers any path.
        ("APP_PORT", "3080".to_owned()),
        ("CADDY_IMAGE", CADDY_IMAGE.to_owned()),
        ("CADDY_ADMIN", format!("127.0.0.1:{}", ports.admin)),
        ("HTTP_PORT", ports.http.to_string()),
        ("HTTPS_PORT", ports.https.to_string()),
        ("ACME_CA", pebble::DIRECTORY.to_owned()),
        ("FRONT_CA", front_ca.display().to_string()),
    ] {
        args.push("--set".into());
        args.push(format!("{k}={v}"));
    }
    args.extend(["--alert-webhook".into(), webhook.to_owned(), "--health-timeout".into(), "60s".into()]);
    args
}

fn run(stack: &TestStack, args: &[String], certs: &PebbleCerts) -> Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    edge(stack, &args, &[("ACME_CA_ROOT_PEM", certs.ca_pem().unwrap())])
}

/// `curl --cacert ROOT --resolve app.test:PORT:127.0.0.1 https://app.test:PORT/`.
fn https_get(ports: &Ports, root: &Path) -> (bool, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(root)
        .arg("--resolve")
        .arg(format!("{DOMAIN}:{}:127.0.0.1", ports.https))
        .arg(format!("https://{DOMAIN}:{}/hello", ports.https))
        .output()
        .expect("curl runs");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// The serial and SHA-256 fingerprint of the certificate the front proxy serves for app.test.
fn served_certificate(ports: &Ports) -> String {
    let script = format!(
        "openssl s_client -connect 127.0.0.1:{} -servername {DOMAIN} </dev/null 2>/dev/null | openssl x509 -noout -serial -fingerprint -sha256",
        ports.https
    );
    let out = Command::new("sh").arg("-c").arg(script).output().expect("openssl runs");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Writes pebble's issuing root to `path` as soon as pebble answers, in the background: it
/// makes a new root when it starts, during the install.
fn keep_issuing_root(certs: &PebbleCerts, management: u16, path: PathBuf, done: Arc<AtomicBool>) {
    let ca = certs.ca_file();
    std::thread::spawn(move || {
        while !done.load(Ordering::SeqCst) {
            let out = Command::new("curl")
                .args(["-sS", "--fail", "--max-time", "3", "--cacert"])
                .arg(&ca)
                .arg(format!("https://127.0.0.1:{management}/roots/0"))
                .output();
            if let Ok(out) = out
                && out.status.success()
            {
                std::fs::write(&path, &out.stdout).expect("write pebble's root");
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
}

#[test]
fn app_behind_caddy_serves_https_from_a_real_acme_ca_and_keeps_its_certificate() {
    provision_local_images();
    let certs = PebbleCerts::new().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async { pebble::ensure_image(&Images::connect().await?).await }).unwrap();
    let ports =
        Ports { http: free_port(), https: free_port(), admin: free_port(), acme: free_port(), management: free_port() };
    let stack = TestStack::example("https", "app-behind-caddy", |name, manifest| {
        let manifest = manifest
            .replace(r#"{ host = "{{ HTTP"#, r#"{ host_ip = "127.0.0.1", host = "{{ HTTP"#)
            .replace(r#"depends_on = ["app"]"#, r#"depends_on = ["app", "pebble"]"#)
            .replace("interval_secs = 5", "interval_secs = 1");
        manifest + &certs.service_toml(&format!("{name}-pebble"), ports.acme, ports.management)
    })
    .unwrap();
    let root = stack.root().join("pebble-root.pem");
    let done = Arc::new(AtomicBool::new(false));
    keep_issuing_root(&certs, ports.management, root.clone(), done.clone());
    let webhook = edge_tests::telegram::shared_chat_server().webhook_url();
    let args = install_args(&ports, &root, &webhook);

    let out = run(&stack, &args, &certs);
    done.store(true, Ordering::SeqCst);
    assert_eq!(code(&out), Some(0), "install succeeds, smoke checks included");
    let text = stdout(&out);
    assert!(text.contains(&format!("app served at https://{DOMAIN}")), "the summary is printed: {text}");
    assert!(text.contains("all 1 smoke checks passed"), "{text}");

    // The generated .env: created once, 0600.
    let env_file = stack.config_file(".env").unwrap();
    let env_before = std::fs::read(&env_file).unwrap();
    assert_eq!(std::fs::metadata(&env_file).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(String::from_utf8_lossy(&env_before).contains("APP_API_KEY="));

    // Real HTTPS: a certificate issued by pebble, the answer from the app.
    let (ok, body) = https_get(&ports, &root);
    assert!(ok && body.contains("standin") && body.contains("GET /hello"), "{body}");
    let certificate = served_certificate(&ports);
    assert!(certificate.contains("serial="), "{certificate}");

    let out = edge(&stack, &["healthcheck"], &[]);
    assert_eq!(code(&out), Some(0), "healthcheck is green without Caddy metrics checks");
    assert!(!stdout(&out).contains("caddy metrics"), "the app stack has no metrics pool");
    assert!(stdout(&out).contains("smoke checks: 1 passed"));
    let out = edge(&stack, &["smoke", "--json"], &[]);
    assert_eq!(code(&out), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["checks"][0]["status"], 200);

    // Re-install: same secrets, same certificate.
    let out = run(&stack, &args, &certs);
    assert_eq!(code(&out), Some(0));
    assert_eq!(std::fs::read(&env_file).unwrap(), env_before, ".env is never regenerated");
    assert_eq!(served_certificate(&ports), certificate, "the certificate survives a re-install");

    // Uninstall keeps the named volumes; the restored stack serves the same certificate, though
    // the new pebble has another root: Caddy did not ask for a new one.
    let out = edge(&stack, &["uninstall", "--yes", "--keep-backups", "--json"], &[]);
    assert_eq!(code(&out), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let backup = report["backup"].as_str().unwrap().to_owned();
    let mut restore = args.clone();
    restore.extend(["--restore-from".to_owned(), backup]);
    let out = run(&stack, &restore, &certs);
    assert_eq!(code(&out), Some(0));
    assert_eq!(std::fs::read(&env_file).unwrap(), env_before, ".env is restored byte-identical");
    assert_eq!(served_certificate(&ports), certificate, "the certificate survives uninstall and restore");
    let (ok, body) = https_get(&ports, &root);
    assert!(ok && body.contains("standin"), "{body}");

    // The lifecycle gate passes on a stack without Caddy metrics: its healthcheck step is the
    // stack-aware one.
    let mut gate = args.clone();
    gate[0] = "gate".to_owned();
    gate.extend(["--runs".to_owned(), "1".to_owned()]);
    let out = run(&stack, &gate, &certs);
    assert_eq!(code(&out), Some(0), "the gate passes");
    assert_eq!(served_certificate(&ports), certificate, "the certificate survives the gate's lifecycle");
}
