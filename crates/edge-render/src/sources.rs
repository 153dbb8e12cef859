//! Where an operation's variables come from, gathered once: `edge render`, `edge install`
//! and every library caller build their [`Variables`] through [`VariableSources`].

use std::path::{Path, PathBuf};

use edge_core::Stack;

use crate::{RenderError, Source, Variables, parse_fixture};

/// The layers above the stack's defaults, lowest precedence first.
#[derive(Debug, Clone, Default)]
pub struct VariableSources {
    /// The last install's parameters (`PARTNER_ID`, ...), so a re-run needs no flags again.
    pub recorded: Vec<(String, String)>,
    /// node-config.json to flatten.
    pub node_config: Option<NodeConfigSource>,
    /// A KEY=VALUE fixture or env file.
    pub fixture: Option<PathBuf>,
    /// The process environment (see [`VariableSources::process_environment`]).
    pub environment: Vec<(String, String)>,
    /// Command-line values (`--set`, `--partner-id`...), above everything else.
    pub flags: Vec<(String, String)>,
}

/// A node-config.json to read.
#[derive(Debug, Clone)]
pub struct NodeConfigSource {
    /// The file.
    pub path: PathBuf,
    /// Whether it must be readable: an operator's `--manual-config` must; the config dir's
    /// copy may be missing, or root's while an operator renders.
    pub required: bool,
}

impl VariableSources {
    /// The process environment's variables whose name and value are UTF-8 and whose name is
    /// a variable name; anything else cannot be a template value and is skipped, never a panic.
    pub fn process_environment() -> Vec<(String, String)> {
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .filter(|(k, _)| crate::variables::is_var_name(k))
            .collect()
    }

    /// The variables: `stack`'s defaults with every layer on top. node-config.json may set only
    /// what the stack lets it ([`Stack::read_node_config`]), and the stack's loopback-only
    /// variables must end up on loopback. Returns the raw bytes of a required node config
    /// too, for the caller to keep a copy.
    pub fn build(&self, stack: &Stack) -> Result<(Variables, Option<Vec<u8>>), RenderError> {
        let mut vars = Variables::new(&stack.variables).with_layer(Source::Recorded, self.recorded.iter().cloned());
        let mut node_config = None;
        if let Some(source) = &self.node_config {
            match std::fs::read(&source.path) {
                Ok(bytes) => {
                    let text = String::from_utf8_lossy(&bytes);
                    let flat =
                        stack.read_node_config(&text, &source.path).map_err(|e| input(&source.path, e.to_string()))?;
                    vars = vars.with_layer(Source::NodeConfig, flat);
                    if source.required {
                        node_config = Some(bytes);
                    }
                }
                Err(e) if source.required => {
                    return Err(input(&source.path, format!("cannot read node config {}: {e}", source.path.display())));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                // root's 0700 config dir while an operator renders
                Err(e) => tracing::warn!("not reading {}: {e}", source.path.display()),
            }
        }
        if let Some(path) = &self.fixture {
            let text = std::fs::read_to_string(path)
                .map_err(|e| input(path, format!("cannot read the fixture {}: {e}", path.display())))?;
            let pairs = parse_fixture(&text).map_err(|e| input(path, format!("{}: {e}", path.display())))?;
            vars = vars.with_layer(Source::Fixture, pairs);
        }
        let vars = vars
            .with_layer(Source::Environment, self.environment.iter().cloned())
            .with_layer(Source::Flag, self.flags.iter().cloned());
        stack.check_loopback(|k| vars.get(k)).map_err(RenderError::Unsafe)?;
        Ok((vars, node_config))
    }
}

/// `KEY=VALUE` as a `--set` flag gives it; KEY must be a variable name.
pub fn parse_assignment(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if crate::variables::is_var_name(k) => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{text:?}: expected KEY=VALUE with KEY a variable name")),
    }
}

fn input(path: &Path, message: String) -> RenderError {
    RenderError::Input { path: path.to_owned(), message }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(k: &str, v: &str) -> (String, String) {
        (k.to_owned(), v.to_owned())
    }

    /// A stack whose node config may set A and D, with defaults for A and F.
    fn stack() -> Stack {
        let toml = r#"
            [stack]
            name = "t"
            compose_project = "t"
            network = "t"
            config_dir = "/etc/t"
            state_dir = "/var/lib/t"
            node_config_variables = ["A", "D"]
            loopback_variables = ["ADMIN"]
            [variables]
            A = "default"
            F = "default"
        "#;
        Stack::from_toml(toml, "test").unwrap()
    }

    #[test]
    fn layers_stack_in_precedence_order() {
        let dir = tempfile::tempdir().unwrap();
        let fixture = dir.path().join("f.env");
        std::fs::write(&fixture, "A=fixture\nB=fixture\nC=fixture\n").unwrap();
        let node = dir.path().join("node-config.json");
        std::fs::write(&node, r#"{"A":"node","D":"node"}"#).unwrap();
        let sources = VariableSources {
            recorded: vec![pair("D", "recorded"), pair("E", "recorded")],
            node_config: Some(NodeConfigSource { path: node, required: true }),
            fixture: Some(fixture),
            environment: vec![pair("B", "env"), pair("C", "env")],
            flags: vec![pair("C", "flag")],
        };
        let (vars, bytes) = sources.build(&stack()).unwrap();
        let got: Vec<(&str, &str)> = vars.iter().collect();
        assert_eq!(
            got,
            [("A", "fixture"), ("B", "env"), ("C", "flag"), ("D", "node"), ("E", "recorded"), ("F", "default")]
        );
        assert_eq!(bytes.as_deref(), Some(br#"{"A":"node","D":"node"}"#.as_slice()));
    }

    #[test]
    fn unreadable_inputs_name_the_file() {
        let check = |sources: VariableSources, expected: &str| {
            let err = sources.build(&stack()).unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
        };
        let missing = PathBuf::from("/nonexistent/node-config.json");
        check(
            VariableSources {
                node_config: Some(NodeConfigSource { path: missing.clone(), required: true }),
                ..Default::default()
            },
            "cannot read node config /nonexistent/node-config.json",
        );
        let optional = VariableSources {
            node_config: Some(NodeConfigSource { path: missing, required: false }),
            ..Default::default()
        };
        assert!(optional.build(&stack()).is_ok());
        check(
            VariableSources { fixture: Some("/nonexistent/f.env".into()), ..Default::default() },
            "cannot read the fixture /nonexistent/f.env",
        );
    }

    #[test]
    fn a_node_config_sets_only_what_the_stack_lets_it() {
        let dir = tempfile::tempdir().unwrap();
        let node = dir.path().join("node-config.json");
        // The keys a hostile node config used: a unit's binary, an admin address, a mount root.
        for (json, variable) in [
            (r#"{"watchdog_bin": "+/tmp/payload"}"#, "WATCHDOG_BIN"),
            (r#"{"admin": "0.0.0.0:2019"}"#, "ADMIN"),
            (r#"{"A": "x", "config_dir": "/"}"#, "CONFIG_DIR"),
        ] {
            std::fs::write(&node, json).unwrap();
            let sources = VariableSources {
                node_config: Some(NodeConfigSource { path: node.clone(), required: true }),
                ..Default::default()
            };
            let err = sources.build(&stack()).unwrap_err().to_string();
            assert!(
                err.contains(&format!("it sets {variable}, which node-config.json may not set (it may set A, D)")),
                "{err}"
            );
            assert!(err.contains("node-config.json"), "{err}");
        }
    }

    #[test]
    fn loopback_variables_must_stay_on_loopback() {
        let check = |value: &str, ok: bool| {
            let sources = VariableSources { flags: vec![pair("ADMIN", value)], ..Default::default() };
            match sources.build(&stack()) {
                Ok(_) => assert!(ok, "{value} was accepted"),
                Err(e) => {
                    assert!(!ok, "{value}: {e}");
                    assert!(e.to_string().starts_with(&format!("ADMIN={value:?} must be a loopback address")), "{e}");
                }
            }
        };
        check("127.0.0.1:2019", true);
        check("127.0.0.9:1", true);
        check("[::1]:2019", true);
        check("localhost:2019", true);
        check("", true);
        check("0.0.0.0:2019", false);
        check("[::]:2019", false);
        check("203.0.113.7:2019", false);
        check("localhost.evil.example:2019", false);
        check("localhost", false);
    }

    #[test]
    fn assignments_are_checked() {
        assert_eq!(parse_assignment("A_1=x=y"), Ok(pair("A_1", "x=y")));
        assert_eq!(parse_assignment("1A=x"), Err("\"1A=x\": expected KEY=VALUE with KEY a variable name".into()));
        assert!(parse_assignment("novalue").is_err());
    }
}
