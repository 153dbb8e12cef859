//! Debian's `pebble` (Let's Encrypt's ACME test server) packaged as a local image, to run as a
//! service of a test stack: Caddy reaches it by its network alias `pebble`, and the test reaches
//! its management port on a loopback port. `PEBBLE_VA_ALWAYS_VALID=1` skips challenge
//! validation, so no name needs to resolve to the stack.
//!
//! Its HTTPS endpoints use a server certificate made here (`PebbleCerts`): Caddy trusts its
//! root through the stack's `ACME_CA_ROOT_PEM`. Pebble makes a new issuing root each time it
//! starts; [`fetch_issuing_root`] reads the current one.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use edge_channels::image::BuildContext;

/// Where Debian installs it.
pub const BINARY: &str = "/usr/bin/pebble";

/// The local image tag.
pub const IMAGE: &str = "edge-test-pebble:local";

/// The ACME directory as Caddy on the stack network sees it.
pub const DIRECTORY: &str = "https://pebble:14000/dir";

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

    /// The image's build context: pebble, its libraries, its config and these certificates.
    pub fn context(&self) -> anyhow::Result<BuildContext> {
        let mut context = BuildContext::new();
        let mut dockerfile = crate::docker::scratch_with_binary(&mut context, Path::new(BINARY), "/usr/bin/pebble")?;
        let config = serde_json::json!({"pebble": {
            "listenAddress": "0.0.0.0:14000",
            "managementListenAddress": "0.0.0.0:15000",
            "certificate": "/etc/pebble/cert.pem",
            "privateKey": "/etc/pebble/key.pem",
            "httpPort": 5002,
            "tlsPort": 5001,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false
        }});
        context.add_file("pebble-config.json", serde_json::to_vec_pretty(&config)?, 0o644)?;
        for f in ["cert.pem", "key.pem"] {
            context.add_file(f, std::fs::read(self.dir.path().join(f))?, 0o644)?;
            dockerfile.push_str(&format!("COPY {f} /etc/pebble/{f}\n"));
        }
        dockerfile.push_str("COPY pebble-config.json /etc/pebble/pebble-config.json\n");
        // Every challenge passes, and no nonce is refused at random: the test is about Caddy.
        dockerfile.push_str("ENV PEBBLE_VA_ALWAYS_VALID=1 PEBBLE_WFE_NONCEREJECT=0\n");
        dockerfile.push_str("EXPOSE 14000 15000\nSTOPSIGNAL SIGKILL\n");
        dockerfile.push_str("ENTRYPOINT [\"/usr/bin/pebble\", \"-config\", \"/etc/pebble/pebble-config.json\"]\n");
        context.add_file("Dockerfile", dockerfile.into_bytes(), 0o644)?;
        Ok(context)
    }

    /// A `[[services]]` block running pebble on the stack network with alias `pebble`, its
    /// ports published on loopback (`acme`: 14000, `management`: 15000), ready when it listens.
    pub fn service_toml(container: &str, acme: u16, management: u16) -> String {
        format!(
            r#"
[[services]]
name = "pebble"
container = "{container}"
image = "{IMAGE}"
aliases = ["pebble"]
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
