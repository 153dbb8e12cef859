//! `edge secrets`: identity key pairs, created once.

use anyhow::Context;
use edge_core::SecretKind;
use edge_core::secrets::{KeyEncoding, Outcome, ensure_keypair, ensure_uuid};

use crate::args::SecretsCommand;
use crate::settings::Settings;
use crate::{ExitStatus, UsageError};

pub(crate) fn run(settings: &Settings, command: SecretsCommand) -> anyhow::Result<ExitStatus> {
    let dir = settings.paths.config_dir();
    settings.paths.ensure_dirs().with_context(|| format!("cannot create {}", dir.display()))?;
    let stack = &settings.bundle.stack;
    let (json, mut report) = match &command {
        SecretsCommand::RealityKeygen(a) => (a.json, serde_json::Map::new()),
        SecretsCommand::AwgKeygen(a) => (a.json, serde_json::Map::new()),
    };
    let outcome = match command {
        SecretsCommand::RealityKeygen(_) => {
            let Some((private, public, uuid)) = stack.secrets.iter().find_map(|s| match &s.kind {
                SecretKind::RealityKeypair { private, public, uuid } => Some((private, public, uuid)),
                _ => None,
            }) else {
                return Err(UsageError(format!("stack {} declares no reality-keypair secret", stack.stack.name)).into());
            };
            let (pair, o1) = ensure_keypair(&dir.join(private), &dir.join(public), KeyEncoding::Xray)?;
            let (id, o2) = ensure_uuid(&dir.join(uuid))?;
            report.insert("public_key".into(), KeyEncoding::Xray.encode(&pair.public).into());
            report.insert("uuid".into(), id.into());
            report.insert("public_key_file".into(), dir.join(public).display().to_string().into());
            report.insert("private_key_file".into(), dir.join(private).display().to_string().into());
            report.insert("uuid_file".into(), dir.join(uuid).display().to_string().into());
            if o1 == Outcome::Created || o2 == Outcome::Created { Outcome::Created } else { Outcome::Kept }
        }
        SecretsCommand::AwgKeygen(_) => {
            let Some((private, public)) = stack.secrets.iter().find_map(|s| match &s.kind {
                SecretKind::WireguardKeypair { private, public } => Some((private, public)),
                _ => None,
            }) else {
                return Err(
                    UsageError(format!("stack {} declares no wireguard-keypair secret", stack.stack.name)).into()
                );
            };
            let (pair, o) = ensure_keypair(&dir.join(private), &dir.join(public), KeyEncoding::Wireguard)?;
            report.insert("public_key".into(), KeyEncoding::Wireguard.encode(&pair.public).into());
            report.insert("public_key_file".into(), dir.join(public).display().to_string().into());
            report.insert("private_key_file".into(), dir.join(private).display().to_string().into());
            o
        }
    };
    let created = outcome == Outcome::Created;
    report.insert("created".into(), created.into());
    if json {
        outln!("{}", serde_json::Value::Object(report));
    } else {
        let verb = if created { "created" } else { "kept existing" };
        outln!("{verb} key pair; public key: {}", report["public_key"].as_str().unwrap_or_default());
        if let Some(id) = report.get("uuid").and_then(|v| v.as_str()) {
            outln!("uuid: {id}");
        }
    }
    Ok(ExitStatus::Success)
}
