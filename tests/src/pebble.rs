//! Debian's `pebble` (Let's Encrypt's ACME test server) packaged as a local image, to run as a
//! service of a test stack: Caddy reaches it by its network alias `pebble`, and the test reaches
//! its management port on a loopback port. `PEBBLE_VA_ALWAYS_VALID=1` skips challenge
//! validation, so no name needs to resolve to the stack.
//!
//! Its HTTPS endpoints use a server certificate made here for each test (`PebbleCerts`),
//! mounted into the container: the image holds only pebble and its config, so it is built once
//! per content ([`ensure_image`]) and kept across runs. Caddy trusts the certificate's root
//! through the stack's `ACME_CA_ROOT_PEM`. Pebble makes a new issuing root each time it starts;
//! [`fetch_issuing_root`] reads the current one.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use edge_channels::image::{BuildContext, Images};

/// Where Debian installs it.
pub const BINARY: &str = "/usr/bin/pebble";

/// The local image tag.
pub const IMAGE: &str = "edge-test-pebble:local";

/// The ACME directory as Caddy on the stack network sees it.
pub const DIRECTORY: &str = "https://pebble:14000/dir";

/// Where the container finds its HTTPS certificate and key ([`PebbleCerts::service_toml`]).
const TLS_DIR: &str = "/etc/pebble/tls";

/// The image's build context: pebble, its libraries and its config; no certificate.
pub fn context() -> anyhow::Result<BuildContext> {
    let mut context = BuildContext::new();
    let mut dockerfile = crate::docker::scratch_with_binary(&mut context, Path::new(BINARY), "/usr/bin/pebble")?;
    let config = serde_json::json!({"pebble": {
        "listenAddress": "0.0.0.0:14000",
        "managementListenAddress": "0.0.0.0:15000",
        "certificate": format!("{TLS_DIR}/cert.pem"),
        "privateKey": format!("{TLS_DIR}/key.pem"),
        "httpPort": 5002,
        "tlsPort": 5001,
        "ocspResponderURL": "",
        "externalAccountBindingRequired": false
    }});
    context.add_file("pebble-config.json", serde_json::to_vec_pretty(&config)?, 0o644)?;
    dockerfile.push_str("COPY pebble-config.json /etc/pebble/pebble-config.json\n");
    // Every challenge passes, and no nonce is refused at random: the test is about Caddy.
    dockerfile.push_str("ENV PEBBLE_VA_ALWAYS_VALID=1 PEBBLE_WFE_NONCEREJECT=0\n");
    dockerfile.push_str("EXPOSE 14000 15000\nSTOPSIGNAL SIGKILL\n");
    dockerfile.push_str("ENTRYPOINT [\"/usr/bin/pebble\", \"-config\", \"/etc/pebble/pebble-config.json\"]\n");
    context.add_file("Dockerfile", dockerfile.into_bytes(), 0o644)?;
    Ok(context)
}

/// Builds [`IMAGE`] unless the engine has it from the same context (same pebble, same
/// config); returns whether it built.
pub async fn ensure_image(images: &Images) -> anyhow::Result<bool> {
    crate::docker::ensure_image(images, IMAGE, &context()?).await
}

/// A CA and the server certificate of pebble's HTTPS listeners (names `pebble`, `localhost`,
/// `127.0.0.1`), made with openssl in a temp dir.
pub struct PebbleCerts {
    dir: tempfile::TempDir,
}

impl PebbleCerts {
    /// Makes a fresh CA and server certificate.
    pub fn new() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("edge-pebble-").tempdir()?;
        let d = dir.path();
        let run = |args: &[&str]| -> anyhow::Result<()> {
            let out = Command::new("openssl").args(args).current_dir(d).output().context("cannot run openssl")?;
            if !out.status.success() {
                bail!("openssl {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
            }
            Ok(())
        };
        let key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
        let mut ca = vec!["req", "-x509"];
        ca.extend(key);
        ca.extend(["-keyout", "ca.key", "-out", "ca.pem", "-days", "30", "-subj", "/CN=edge test pebble CA"]);
        run(&ca)?;
        let mut csr = vec!["req"];
        csr.extend(key);
        csr.extend(["-keyout", "key.pem", "-out", "server.csr", "-subj", "/CN=pebble"]);
        run(&csr)?;
        std::fs::write(d.join("san.ext"), "subjectAltName=DNS:pebble,DNS:localhost,IP:127.0.0.1\n")?;
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "cert.pem",
            "-days",
            "30",
            "-extfile",
            "san.ext",
        ])?;
        // Pebble runs with every capability dropped: when the tests run as another user than
        // its root, it reads the throwaway test key as "other".
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755))?;
        std::fs::set_permissions(d.join("key.pem"), std::fs::Permissions::from_mode(0o644))?;
        Ok(Self { dir })
    }

    /// The CA's PEM file: the root pebble's HTTPS endpoints chain to.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The CA's PEM text.
    pub fn ca_pem(&self) -> anyhow::Result<String> {
        Ok(std::fs::read_to_string(self.ca_file())?)
    }

    /// A `[[services]]` block running pebble on the stack network with alias `pebble`, these
    /// certificates mounted read-only, its ports published on loopback (`acme`: 14000,
    /// `management`: 15000), ready when it listens.
    pub fn service_toml(&self, container: &str, acme: u16, management: u16) -> String {
        let dir = self.dir.path().display();
        format!(
            r#"
[[services]]
name = "pebble"
container = "{container}"
image = "{IMAGE}"
aliases = ["pebble"]
volumes = [
  {{ source = "{dir}/cert.pem", target = "{TLS_DIR}/cert.pem", read_only = true }},
  {{ source = "{dir}/key.pem", target = "{TLS_DIR}/key.pem", read_only = true }},
]
ports = [
  {{ host_ip = "127.0.0.1", host = "{acme}", container = "14000" }},
  {{ host_ip = "127.0.0.1", host = "{management}", container = "15000" }},
]
readiness = {{ tcp = {{ port = "{acme}" }} }}
"#
        )
    }
}

/// Pebble's current issuing root (`/roots/0` on its management port), as PEM.
pub fn fetch_issuing_root(certs: &PebbleCerts, management: u16) -> anyhow::Result<String> {
    let out = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "5", "--cacert"])
        .arg(certs.ca_file())
        .arg(format!("https://127.0.0.1:{management}/roots/0"))
        .output()
        .context("cannot run curl")?;
    if !out.status.success() {
        bail!("pebble's root is not available: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?)
}
