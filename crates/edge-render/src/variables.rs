//! Layered variables: stack defaults < install.env < node-config.json < identity secrets < fixture < environment < flags.
//!
//! Only stack defaults are templates (`CADDY_SITE = "{{ PARTNER_DOMAIN }}"`):
//! values from every other layer are taken literally, so an operator's value
//! holding `{{` is never interpreted.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use edge_core::secrets::KeyEncoding;
use edge_core::{CoreError, EnvFile, LineError, Secret, SecretKind};

/// Where a variable's value came from, lowest precedence first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    /// The stack manifest's `[variables]`.
    Default,
    /// The last install's parameters (`install.env`).
    Recorded,
    /// node-config.json in the config dir, flattened.
    NodeConfig,
    /// Identity files in the config dir.
    Secret,
    /// A KEY=VALUE fixture or env file (`--env-from-fixture`).
    Fixture,
    /// The process environment.
    Environment,
    /// A command-line flag (`--set`, `--partner-id`...).
    Flag,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Default => "stack default",
            Self::Recorded => "install.env",
            Self::NodeConfig => "node-config.json",
            Self::Secret => "identity file",
            Self::Fixture => "fixture file",
            Self::Environment => "environment",
            Self::Flag => "command line",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    value: String,
    source: Source,
}

/// Variables from every layer, each remembering where its value came from.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Variables {
    raw: BTreeMap<String, Entry>,
    resolved: BTreeMap<String, String>,
    /// Defaults that could not be resolved, with the reason (e.g. the variable they need).
    unresolved: BTreeMap<String, String>,
}

impl fmt::Debug for Variables {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values may be credentials: only names and sources are shown.
        f.debug_map().entries(self.raw.iter().map(|(k, e)| (k, e.source))).finish()
    }
}

impl Variables {
    /// Variables holding the stack's defaults.
    pub fn new(defaults: &BTreeMap<String, String>) -> Self {
        let mut vars = Self::default();
        for (k, v) in defaults {
            vars.raw.insert(k.clone(), Entry { value: v.clone(), source: Source::Default });
        }
        vars.resolve();
        vars
    }

    /// Adds a layer above the ones of lower precedence already present.
    ///
    /// A value from a lower-precedence source never replaces one from a higher
    /// source, so layers may be added in any order.
    pub fn with_layer(mut self, source: Source, pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        for (k, v) in pairs {
            self.insert(k, v, source);
        }
        self.resolve();
        self
    }

    /// Sets one variable (precedence rules apply as in [`Variables::with_layer`]).
    pub fn set(&mut self, key: &str, value: &str, source: Source) {
        self.insert(key.to_owned(), value.to_owned(), source);
        self.resolve();
    }

    fn insert(&mut self, key: String, value: String, source: Source) {
        match self.raw.get(&key) {
            Some(e) if e.source > source => {}
            _ => {
                self.raw.insert(key, Entry { value, source });
            }
        }
    }

    /// A variable's value, with stack defaults resolved.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.resolved.get(key).map(String::as_str)
    }

    /// Whether a variable has a non-empty value.
    pub fn is_set(&self, key: &str) -> bool {
        self.get(key).is_some_and(|v| !v.is_empty())
    }

    /// Where a variable's value came from.
    pub fn source(&self, key: &str) -> Option<Source> {
        self.raw.get(key).map(|e| e.source)
    }

    /// Why a variable has no value though the stack declares a default for it.
    pub fn unresolved_reason(&self, key: &str) -> Option<&str> {
        self.unresolved.get(key).map(String::as_str)
    }

    /// The stack default a variable's value was resolved from, when that
    /// default is itself a template (`CADDY_SITE = "{{ PARTNER_DOMAIN }}"`).
    pub fn default_template(&self, key: &str) -> Option<&str> {
        self.raw.get(key).filter(|e| e.source == Source::Default && e.value.contains("{{")).map(|e| e.value.as_str())
    }

    /// All resolved variables, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.resolved.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Recomputes resolved values: defaults may reference other variables with `{{ NAME }}`.
    fn resolve(&mut self) {
        self.resolved.clear();
        self.unresolved.clear();
        let mut pending = Vec::new();
        for (k, e) in &self.raw {
            if e.source == Source::Default && e.value.contains("{{") {
                pending.push(k.clone());
            } else {
                self.resolved.insert(k.clone(), e.value.clone());
            }
        }
        // Each pass resolves the defaults whose references are all known; a pass without progress ends.
        loop {
            let mut progress = false;
            let mut still = Vec::new();
            for k in pending {
                match substitute(&self.raw[&k].value, &self.resolved) {
                    Ok(v) => {
                        self.resolved.insert(k, v);
                        progress = true;
                    }
                    Err(_) => still.push(k),
                }
            }
            pending = still;
            if !progress || pending.is_empty() {
                break;
            }
        }
        for k in pending {
            let reason = match substitute(&self.raw[&k].value, &self.resolved) {
                Err(Missing::Variable(name)) if self.raw.contains_key(&name) => {
                    format!("its stack default {:?} refers to {name}, which refers back to it", self.raw[&k].value)
                }
                Err(Missing::Variable(name)) => {
                    format!("its stack default {:?} needs {name}, which is not set", self.raw[&k].value)
                }
                Err(Missing::Syntax(message)) => format!("its stack default {:?}: {message}", self.raw[&k].value),
                Ok(_) => continue,
            };
            self.unresolved.insert(k, reason);
        }
    }
}

enum Missing {
    Variable(String),
    Syntax(String),
}

/// Replaces `{{ NAME }}` references with values; the values are not scanned again.
fn substitute(text: &str, vars: &BTreeMap<String, String>) -> Result<String, Missing> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| Missing::Syntax("unclosed '{{'".to_owned()))?;
        let name = after[..end].trim();
        if !is_var_name(name) {
            return Err(Missing::Syntax(format!("{name:?} is not a variable name")));
        }
        out.push_str(vars.get(name).ok_or_else(|| Missing::Variable(name.to_owned()))?);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

pub(crate) fn is_var_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Parses a KEY=VALUE fixture (`#` comments, `export`, optional quotes) into pairs.
pub fn parse_fixture(text: &str) -> Result<Vec<(String, String)>, LineError> {
    Ok(EnvFile::parse(text)?.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect())
}

/// The variables exposed by the identity files already present in `dir`.
///
/// Read-only: a missing file exposes nothing and nothing is created; a corrupt
/// one is an error (it is never regenerated behind the operator's back).
pub fn read_secrets(dir: &Path, secrets: &[Secret]) -> Result<BTreeMap<String, String>, CoreError> {
    let mut out = BTreeMap::new();
    let read = |file: &str| -> Result<Option<String>, CoreError> {
        let path = dir.join(file);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text.trim().to_owned())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(CoreError::Read { path, source }),
        }
    };
    let corrupt = |file: &str, reason: String| CoreError::CorruptSecret { path: dir.join(file), reason };
    for secret in secrets {
        let name = &secret.name;
        match &secret.kind {
            SecretKind::RealityKeypair { private, public, uuid } => {
                keypair(&mut out, name, KeyEncoding::Xray, (private, read(private)?), (public, read(public)?))
                    .map_err(|(f, r)| corrupt(f, r))?;
                if let Some(id) = read(uuid)? {
                    out.insert(format!("{name}_UUID"), id);
                }
            }
            SecretKind::WireguardKeypair { private, public } => {
                keypair(&mut out, name, KeyEncoding::Wireguard, (private, read(private)?), (public, read(public)?))
                    .map_err(|(f, r)| corrupt(f, r))?;
            }
            SecretKind::Token { file, .. } => {
                if let Some(token) = read(file)? {
                    out.insert(name.clone(), token);
                }
            }
            SecretKind::EnvFile { file, .. } => {
                let path = dir.join(file);
                if let Some(text) = read(file)? {
                    let env = EnvFile::parse(&text)
                        .map_err(|e| CoreError::CorruptSecret { path: path.clone(), reason: e.to_string() })?;
                    out.extend(env.iter().map(|(k, v)| (k.to_owned(), v.to_owned())));
                }
            }
        }
    }
    Ok(out)
}

fn keypair<'a>(
    out: &mut BTreeMap<String, String>,
    name: &str,
    encoding: KeyEncoding,
    (private_file, private): (&'a str, Option<String>),
    (public_file, public): (&'a str, Option<String>),
) -> Result<(), (&'a str, String)> {
    if let Some(text) = private {
        let key = encoding.decode(&text).map_err(|r| (private_file, r))?;
        let pair = edge_core::secrets::KeyPair::from_private(key);
        out.insert(format!("{name}_PRIVATE_KEY"), encoding.encode(&pair.private));
        out.insert(format!("{name}_PUBLIC_KEY"), encoding.encode(&pair.public));
    } else if let Some(text) = public {
        let key = encoding.decode(&text).map_err(|r| (public_file, r))?;
        out.insert(format!("{name}_PUBLIC_KEY"), encoding.encode(&key));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn layer(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn higher_layers_win_in_any_order() {
        let vars = Variables::new(&defaults(&[("A", "default"), ("B", "default"), ("C", "default")]))
            .with_layer(Source::Flag, layer(&[("A", "flag")]))
            .with_layer(Source::Fixture, layer(&[("A", "fixture"), ("B", "fixture")]))
            .with_layer(Source::Environment, layer(&[("B", "env")]));
        assert_eq!(vars.get("A"), Some("flag"));
        assert_eq!(vars.get("B"), Some("env"));
        assert_eq!(vars.get("C"), Some("default"));
        assert_eq!(vars.source("B"), Some(Source::Environment));
        assert_eq!(vars.get("D"), None);
    }

    #[test]
    fn defaults_resolve_references_but_other_layers_stay_literal() {
        let vars = Variables::new(&defaults(&[("SITE", "{{ DOMAIN }}"), ("URL", "https://{{SITE}}/x")]))
            .with_layer(Source::Fixture, layer(&[("DOMAIN", "{{ NOT_A_REF }}")]));
        assert_eq!(vars.get("SITE"), Some("{{ NOT_A_REF }}"));
        assert_eq!(vars.get("URL"), Some("https://{{ NOT_A_REF }}/x"));
    }

    #[test]
    fn an_unresolvable_default_is_undefined_with_a_reason() {
        let vars = Variables::new(&defaults(&[("SITE", "{{ DOMAIN }}"), ("A", "{{ B }}"), ("B", "{{ A }}")]));
        assert_eq!(vars.get("SITE"), None);
        assert_eq!(
            vars.unresolved_reason("SITE"),
            Some("its stack default \"{{ DOMAIN }}\" needs DOMAIN, which is not set")
        );
        assert!(vars.unresolved_reason("A").unwrap().contains("refers back"), "{:?}", vars.unresolved_reason("A"));
        let vars = vars.with_layer(Source::Flag, layer(&[("DOMAIN", "d.example")]));
        assert_eq!(vars.get("SITE"), Some("d.example"));
    }

    #[test]
    fn debug_output_shows_no_values() {
        let vars = Variables::new(&BTreeMap::new()).with_layer(Source::Fixture, layer(&[("PASSWORD", "hunter2")]));
        let text = format!("{vars:?}");
        assert!(text.contains("PASSWORD") && !text.contains("hunter2"), "{text}");
    }

    #[test]
    fn secrets_are_read_without_being_created() {
        let dir = tempfile::tempdir().unwrap();
        let stack = edge_core::Stack::partner_edge();
        assert!(read_secrets(dir.path(), &stack.secrets).unwrap().is_empty());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let made = edge_core::secrets::ensure_all(dir.path(), &stack.secrets).unwrap();
        assert_eq!(read_secrets(dir.path(), &stack.secrets).unwrap(), made.vars);
        std::fs::write(dir.path().join("awg-private.key"), "garbage\n").unwrap();
        let err = read_secrets(dir.path(), &stack.secrets).unwrap_err().to_string();
        assert!(err.contains("awg-private.key") && err.contains("corrupt"), "{err}");
    }
}
