//! Runs a rendered systemd service the way systemd would, without systemd: its
//! `EnvironmentFile=` read with systemd's own rules (a port of `parse_env_file_internal` in
//! systemd's src/basic/env-file.c) into an otherwise empty environment, and its `ExecStart=`.
//!
//! The rules that differ from a shell's: `'…'` takes everything literally, and after a closing
//! quote a `\'` and a following `'…'` are plain text (so the shell's `'\''` does not work); in
//! `"…"` only `\"`, `\\`, `` \` `` and `\$` are escapes (another backslash stays); `$` is never
//! expanded; `#` starts a comment only at the start of a line; trailing blanks of a bare value go.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// What `systemctl start` of a oneshot service would run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRun {
    /// `ExecStart=`, split into words.
    pub argv: Vec<String>,
    /// The environment: only what the `EnvironmentFile=`s give.
    pub env: Vec<(String, String)>,
}

impl ServiceRun {
    /// Reads a rendered unit: its `EnvironmentFile=` (a leading `-`: the file may be missing)
    /// and `ExecStart=` lines. `ExecStart=` words must be bare (what edge renders there).
    pub fn from_unit(unit: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(unit).with_context(|| format!("cannot read {}", unit.display()))?;
        let mut env: Vec<(String, String)> = Vec::new();
        let mut argv = None;
        for line in text.lines() {
            if let Some(file) = line.strip_prefix("EnvironmentFile=") {
                let (optional, file) = match file.strip_prefix('-') {
                    Some(f) => (true, f),
                    None => (false, file),
                };
                let path = PathBuf::from(file);
                match std::fs::read_to_string(&path) {
                    Ok(text) => {
                        for (k, v) in parse_env_file(&text) {
                            env.retain(|(key, _)| key != &k);
                            env.push((k, v));
                        }
                    }
                    Err(e) if optional && e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => bail!("EnvironmentFile={}: {e}", path.display()),
                }
            } else if let Some(cmd) = line.strip_prefix("ExecStart=") {
                if cmd.contains(['"', '\'', '\\', '$', '%']) {
                    bail!("ExecStart={cmd}: only bare words are supported here");
                }
                argv = Some(cmd.split_whitespace().map(str::to_owned).collect());
            }
        }
        let argv: Vec<String> = argv.with_context(|| format!("{} has no ExecStart=", unit.display()))?;
        Ok(Self { argv, env })
    }

    /// The command, in a clean environment holding only the unit's variables.
    pub fn command(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(&self.argv[0]);
        cmd.args(&self.argv[1..]).env_clear().envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }
}

/// Parses an env file as systemd's `EnvironmentFile=` does; later keys replace earlier ones.
pub fn parse_env_file(text: &str) -> Vec<(String, String)> {
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum State {
        PreKey,
        Key,
        PreValue,
        Value,
        ValueEscape,
        Single,
        Double,
        DoubleEscape,
        Comment,
        CommentEscape,
    }
    const WHITESPACE: &[char] = &[' ', '\t', '\n', '\r'];
    const NEWLINE: &[char] = &['\n', '\r'];
    let mut out: Vec<(String, String)> = Vec::new();
    let mut push = |key: &str, value: &str| {
        out.retain(|(k, _)| k != key);
        out.push((key.to_owned(), value.to_owned()));
    };
    let (mut key, mut value) = (String::new(), String::new());
    // Byte lengths before trailing blanks of the key and of a bare value.
    let (mut key_ws, mut value_ws): (Option<usize>, Option<usize>) = (None, None);
    let mut state = State::PreKey;
    let finish = |key: &mut String, key_ws: Option<usize>| {
        if let Some(n) = key_ws {
            key.truncate(n);
        }
    };
    for c in text.chars() {
        state = match state {
            State::PreKey if "#;".contains(c) => State::Comment,
            State::PreKey if !WHITESPACE.contains(&c) => {
                key_ws = None;
                key.push(c);
                State::Key
            }
            State::PreKey => State::PreKey,
            State::Key if NEWLINE.contains(&c) => {
                key.clear();
                State::PreKey
            }
            State::Key if c == '=' => {
                value_ws = None;
                State::PreValue
            }
            State::Key => {
                if !WHITESPACE.contains(&c) {
                    key_ws = None;
                } else if key_ws.is_none() {
                    key_ws = Some(key.len());
                }
                key.push(c);
                State::Key
            }
            State::PreValue | State::Value if NEWLINE.contains(&c) => {
                if state == State::Value
                    && let Some(n) = value_ws
                {
                    value.truncate(n);
                }
                finish(&mut key, key_ws);
                push(&key, &value);
                key.clear();
                value.clear();
                State::PreKey
            }
            State::PreValue if c == '\'' => State::Single,
            State::PreValue if c == '"' => State::Double,
            State::PreValue if c == '\\' => State::ValueEscape,
            State::PreValue if WHITESPACE.contains(&c) => State::PreValue,
            State::PreValue => {
                value.push(c);
                State::Value
            }
            State::Value if c == '\\' => {
                value_ws = None;
                State::ValueEscape
            }
            State::Value => {
                if !WHITESPACE.contains(&c) {
                    value_ws = None;
                } else if value_ws.is_none() {
                    value_ws = Some(value.len());
                }
                value.push(c);
                State::Value
            }
            State::ValueEscape => {
                if !NEWLINE.contains(&c) {
                    value.push(c);
                }
                State::Value
            }
            State::Single if c == '\'' => State::PreValue,
            State::Single => {
                value.push(c);
                State::Single
            }
            State::Double if c == '"' => State::PreValue,
            State::Double if c == '\\' => State::DoubleEscape,
            State::Double => {
                value.push(c);
                State::Double
            }
            State::DoubleEscape => {
                if "\"\\`$".contains(c) {
                    value.push(c);
                } else if c != '\n' {
                    value.push('\\');
                    value.push(c);
                }
                State::Double
            }
            State::Comment if c == '\\' => State::CommentEscape,
            State::Comment if NEWLINE.contains(&c) => State::PreKey,
            State::Comment => State::Comment,
            State::CommentEscape if NEWLINE.contains(&c) => State::PreKey,
            State::CommentEscape => State::Comment,
        };
    }
    if matches!(
        state,
        State::PreValue | State::Value | State::ValueEscape | State::Single | State::Double | State::DoubleEscape
    ) {
        if state == State::Value
            && let Some(n) = value_ws
        {
            value.truncate(n);
        }
        finish(&mut key, key_ws);
        push(&key, &value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check(text: &str, expected: &[(&str, &str)]) {
        let got = parse_env_file(text);
        let got: Vec<(&str, &str)> = got.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(got, expected, "{text:?}");
    }

    #[test]
    fn systemd_rules() {
        check("A=1\n# c\n; c\nB = two words  \n", &[("A", "1"), ("B", "two words")]);
        check("A='x $HOME \\n'\n", &[("A", "x $HOME \\n")]);
        check("A=\"q\\\"\\$x\\n\"\n", &[("A", "q\"$x\\n")]);
        // The shell's quote-in-single-quotes is not systemd's.
        check("A='it'\\''s'\n", &[("A", "it''s'")]);
        check("A=x # not a comment\n", &[("A", "x # not a comment")]);
        check("A=1\nA=2", &[("A", "2")]);
    }

    proptest! {
        #[test]
        fn edge_writes_what_systemd_reads(value in "[^\\x00]*", key in "[A-Z_][A-Z0-9_]{0,8}") {
            let mut env = edge_core::EnvFile::default();
            env.set(&key, &value);
            let read = parse_env_file(&env.to_systemd_string());
            prop_assert_eq!(read, vec![(key, value)]);
        }
    }
}
