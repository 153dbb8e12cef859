//! KEY=VALUE files: `install.env`, render fixtures and `.env` files.
//!
//! Values are written so that `bash`'s `source` reads them back exactly
//! (bare when safe, single-quoted otherwise), and the parser reads what
//! operators write by hand: `#` comments, `export`, single or double quotes.

use std::fmt;
use std::path::Path;

use crate::status::read_optional;
use crate::{CoreError, LineError, write_atomic_with_mode};

/// An ordered set of KEY=VALUE pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvFile {
    entries: Vec<(String, String)>,
}

impl EnvFile {
    /// Parses the text of an env file.
    pub fn parse(text: &str) -> Result<Self, LineError> {
        let mut env = Self::default();
        let lines: Vec<&str> = text.split('\n').collect();
        let mut i = 0;
        while i < lines.len() {
            let start = i + 1;
            let line = lines[i].trim_start();
            i += 1;
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let line = line.strip_prefix("export ").map(str::trim_start).unwrap_or(line);
            let err = |message: String| LineError { line: start, message };
            let (key, rest) = line.split_once('=').ok_or_else(|| err(format!("expected KEY=VALUE, found {line:?}")))?;
            if !is_env_key(key) {
                return Err(err(format!("invalid variable name {key:?}")));
            }
            // A quoted value may span lines: feed the parser further lines as needed.
            let mut value_text = rest.to_owned();
            let value = loop {
                match parse_value(&value_text) {
                    Ok(v) => break v,
                    Err(ValueError::Unterminated) if i < lines.len() => {
                        value_text.push('\n');
                        value_text.push_str(lines[i]);
                        i += 1;
                    }
                    Err(ValueError::Unterminated) => {
                        return Err(err(format!("unterminated quote in the value of {key}")));
                    }
                    Err(ValueError::Trailing(t)) => {
                        return Err(err(format!("unexpected text {t:?} after the value of {key}")));
                    }
                }
            };
            env.set(key, &value);
        }
        Ok(env)
    }

    /// Reads a file; a missing file is an error.
    pub fn load(path: &Path) -> Result<Self, CoreError> {
        let text = read_optional(path)?
            .ok_or_else(|| CoreError::read(path, std::io::Error::new(std::io::ErrorKind::NotFound, "no such file")))?;
        Self::parse(&text).map_err(|source| CoreError::Parse { path: path.to_owned(), source })
    }

    /// Writes the file atomically with the given mode.
    pub fn save(&self, path: &Path, mode: u32) -> Result<(), CoreError> {
        write_atomic_with_mode(path, self.to_string().as_bytes(), mode)
    }

    /// Sets a value, keeping the key's position if already present.
    pub fn set(&mut self, key: &str, value: &str) {
        match self.entries.iter_mut().find(|(k, _)| k == key) {
            Some(e) => e.1 = value.to_owned(),
            None => self.entries.push((key.to_owned(), value.to_owned())),
        }
    }

    /// A value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// All pairs in file order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Whether there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl fmt::Display for EnvFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (k, v) in &self.entries {
            writeln!(f, "{k}={}", escape_env_value(v))?;
        }
        Ok(())
    }
}

/// Whether `key` is a valid variable name (`[A-Za-z_][A-Za-z0-9_]*`).
pub(crate) fn is_env_key(key: &str) -> bool {
    let mut bytes = key.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Quotes a value for a KEY=VALUE line that `bash` and [`EnvFile::parse`] both read back exactly.
pub fn escape_env_value(value: &str) -> String {
    let safe = |b: u8| b.is_ascii_alphanumeric() || b"_./:@,+-%".contains(&b);
    if !value.is_empty() && value.bytes().all(safe) {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
}

enum ValueError {
    Unterminated,
    Trailing(String),
}

/// Parses one shell word: bare text with backslash escapes, 'single' and "double" quoted parts.
fn parse_value(text: &str) -> Result<String, ValueError> {
    let text = text.trim_start_matches([' ', '\t']);
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => loop {
                match chars.next() {
                    Some('\'') => break,
                    Some(c) => out.push(c),
                    None => return Err(ValueError::Unterminated),
                }
            },
            '"' => loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some('n') => out.push('\n'),
                        Some(c @ ('\\' | '"' | '$' | '`')) => out.push(c),
                        Some('\n') => {}
                        Some(c) => {
                            out.push('\\');
                            out.push(c);
                        }
                        None => return Err(ValueError::Unterminated),
                    },
                    Some(c) => out.push(c),
                    None => return Err(ValueError::Unterminated),
                }
            },
            '\\' => match chars.next() {
                Some(c) => out.push(c),
                None => return Err(ValueError::Unterminated),
            },
            ' ' | '\t' | '\r' => {
                let rest: String = chars.collect();
                let rest = rest.trim();
                if rest.is_empty() || rest.starts_with('#') {
                    return Ok(out);
                }
                return Err(ValueError::Trailing(rest.to_owned()));
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check(input: &str, expected: Result<&[(&str, &str)], &str>) {
        match (EnvFile::parse(input), expected) {
            (Ok(env), Ok(pairs)) => assert_eq!(env.iter().collect::<Vec<_>>(), pairs.to_vec()),
            (Err(e), Err(msg)) => assert_eq!(e.to_string(), msg),
            (got, want) => panic!("{input:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn reads_what_operators_write() {
        check("PARTNER_ID=acme\n", Ok(&[("PARTNER_ID", "acme")]));
        check(
            "# comment\n\nexport A=1\nB='two words'\nC=\"q\\\"x\"\n",
            Ok(&[("A", "1"), ("B", "two words"), ("C", "q\"x")]),
        );
        check("A=x # trailing comment\nB=\n", Ok(&[("A", "x"), ("B", "")]));
        check("A='multi\nline'\nB=2\n", Ok(&[("A", "multi\nline"), ("B", "2")]));
        check("A=1\nnot a pair\n", Err("line 2: expected KEY=VALUE, found \"not a pair\""));
        check("1A=x\n", Err("line 1: invalid variable name \"1A\""));
        check("A='open\n", Err("line 1: unterminated quote in the value of A"));
        check("A=x y\n", Err("line 1: unexpected text \"y\" after the value of A"));
    }

    #[test]
    fn bash_reads_back_what_is_written() {
        let mut env = EnvFile::default();
        let tricky = "it's $HOME `x` \"q\" \\ \n end";
        env.set("V", tricky);
        let out =
            std::process::Command::new("bash").arg("-c").arg(format!("{}printf %s \"$V\"", env)).output().unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), tricky);
    }

    proptest! {
        #[test]
        fn any_value_round_trips(pairs in proptest::collection::vec(("[A-Za-z_][A-Za-z0-9_]{0,10}", "\\PC*"), 0..6)) {
            let mut env = EnvFile::default();
            for (k, v) in &pairs { env.set(k, v); }
            prop_assert_eq!(EnvFile::parse(&env.to_string()).unwrap(), env);
        }

        #[test]
        fn values_with_control_characters_round_trip(v in any::<String>()) {
            let mut env = EnvFile::default();
            env.set("K", &v);
            let back = EnvFile::parse(&env.to_string()).unwrap();
            prop_assert_eq!(back.get("K"), Some(v.as_str()));
        }

        #[test]
        fn parser_never_panics(text in any::<String>()) {
            let _ = EnvFile::parse(&text);
        }
    }
}
