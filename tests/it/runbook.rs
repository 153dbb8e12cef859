//! The legacy runbook's commands against the real Docker engine: a host reinstalled from the
//! legacy installer's backup with its `--token` and `--tunnel`, the healthcheck wrapper at the
//! runbook's path, and `uninstall --backup-dir` writing the legacy layout back.

use std::os::unix::fs::PermissionsExt;

use edge_core::{InstallRecord, Stack};
use edge_tests::docker::{TestStack, provision_local_images};

use crate::deploy::{all_channels, code, edge, install, paths, stderr, stdout};

const TOKEN: &str = "ptkn_4f1c9a2e7b3d";

/// A legacy backup as `uninstall.sh --keep-backups` leaves it: the identity files at the top
/// (the token without a newline, as the bash installer wrote it) and install.env beneath.
fn legacy_backup(stack: &Stack, dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let scratch = tempfile::tempdir().unwrap();
    edge_core::secrets::ensure_all(scratch.path(), &stack.secrets).unwrap();
    std::fs::write(scratch.path().join("token"), TOKEN).unwrap();
    let mut identity = Vec::new();
    std::fs::create_dir_all(dir.join("var-lib-oxpulse-partner-edge")).unwrap();
    for file in ["reality.priv", "reality.pub", "reality.uuid", "awg-private.key", "awg-public.key", "token"] {
        let bytes = std::fs::read(scratch.path().join(file)).unwrap();
        std::fs::write(dir.join(file), &bytes).unwrap();
        std::fs::set_permissions(dir.join(file), std::fs::Permissions::from_mode(0o600)).unwrap();
        identity.push((file.to_owned(), bytes));
    }
    std::fs::write(
        dir.join("var-lib-oxpulse-partner-edge/install.env"),
        "PARTNER_ID=acme\nPARTNER_DOMAIN=edge.test.invalid\nTUNNEL=tun-old\n",
    )
    .unwrap();
    identity
}

#[test]
fn a_clean_host_installs_from_a_legacy_backup_with_token_and_tunnel() {
    provision_local_images();
    let stack = TestStack::partner_edge("legacy-restore").expect("test stack");
    let bundle = stack.bundle().unwrap();
    let backups = tempfile::tempdir().unwrap();
    let backup = backups.path().join("oxpulse-backup-1716200000");
    let identity = legacy_backup(&bundle.stack, &backup);
    let backup_arg = backup.display().to_string();

    let out =
        install(&stack, &["--restore-from", &backup_arg, "--token", TOKEN, "--tunnel", "tun-eu-1"], &all_channels());
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    assert!(!stdout(&out).contains(TOKEN) && !stderr(&out).contains(TOKEN), "the token was printed");

    let paths = paths(&stack);
    for (file, bytes) in &identity {
        let path = paths.config_file(file);
        assert_eq!(&std::fs::read(&path).unwrap(), bytes, "{file} is not byte-identical");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600, "{file}");
    }
    let record = InstallRecord::load_optional(&paths.install_env()).unwrap().unwrap();
    assert_eq!(record.tunnel.as_deref(), Some("tun-eu-1"));
    assert_eq!(record.pool.as_ref().map(Vec::len), Some(3), "{record:?}");

    // `docker-compose ps` on the rendered file finds edge's containers under the runbook's keys.
    let naive = stack.container("oxpulse-partner-naive");
    let ps = std::process::Command::new("docker-compose")
        .arg("-f")
        .arg(paths.config_file("docker-compose.yml"))
        .args(["-p", &stack.name, "ps", "-q", &naive])
        .output()
        .expect("docker-compose is not installed: the tests need Debian's docker-compose");
    assert!(ps.status.success(), "{}", stderr(&ps));
    let id = edge_tests::docker::docker_out(&["inspect", "--format", "{{.Id}}", &naive]);
    assert_eq!(stdout(&ps).trim(), id.trim(), "docker-compose ps {naive}");

    // The runbook's healthcheck path runs edge's healthcheck of this install.
    let script = paths.healthcheck_script();
    assert_eq!(std::fs::metadata(script).unwrap().permissions().mode() & 0o777, 0o755);
    let check = std::process::Command::new("sh").arg(script).output().unwrap();
    assert_eq!(check.status.code(), Some(0), "{}{}", stdout(&check), stderr(&check));

    // Uninstall writes the legacy layout where the operator asks, and it restores again.
    let out_dir = tempfile::tempdir().unwrap();
    let out = edge(
        &stack,
        &["uninstall", "--yes", "--keep-backups", "--backup-dir", &out_dir.path().display().to_string()],
        &[],
    );
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    assert!(!script.exists(), "uninstall leaves the healthcheck wrapper");
    let written: Vec<_> = std::fs::read_dir(out_dir.path()).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(written.len(), 1, "{written:?}");
    let again = &written[0];
    assert!(again.file_name().unwrap().to_str().unwrap().starts_with("oxpulse-backup-"), "{again:?}");
    for (file, bytes) in &identity {
        assert_eq!(&std::fs::read(again.join(file)).unwrap(), bytes, "{file} in the written backup");
    }
    let env = std::fs::read_to_string(again.join("var-lib-oxpulse-partner-edge/install.env")).unwrap();
    assert!(env.contains("TUNNEL=tun-eu-1\n"), "{env}");
}
