//! KEY=VALUE files: `install.env`, render fixtures and `.env` files.
//!
//! Values are written so that `bash`'s `source` reads them back exactly
//! (bare when safe, single-quoted otherwise), and the parser reads what
//! operators write by hand: `#` comments, `export`, single or double quotes.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use crate::status::read_optional;
use crate::{CoreError, LineError, write_atomic_with_mode};

/// An ordered set of KEY=VALUE pairs.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct EnvFile {
    entries: Vec<(String, String)>,
    /// Position of each key in `entries`: a file of many keys is read in linear time.
    index: HashMap<String, usize>,
}

impl fmt::Debug for EnvFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnvFile").field("entries", &self.entries).finish()
    }
}

impl EnvFile {
    /// Parses the text of an env file, in one pass however long its values.
    ///
    /// An error names the line and, once known, the key; it never quotes the
    /// text of the line, which may hold a secret.
    pub fn parse(text: &str) -> Result<Self, LineError> {
        let mut env = Self::default();
        let mut pos = 0;
        let mut line_no = 1;
        while pos <= text.len() {
            let start_line = line_no;
            let line_end = text[pos..].find('\n').map_or(text.len(), |e| pos + e);
            let line = text[pos..line_end].trim_start();
            if line.is_empty() || line.starts_with('#') {
                pos = line_end + 1;
                line_no += 1;
                continue;
            }
            let err = |message: String| LineError { line: start_line, message };
            let line = line.strip_prefix("export ").map(str::trim_start).unwrap_or(line);
            let Some((key, rest)) = line.split_once('=') else {
                return Err(err("expected KEY=VALUE: the line has no =".to_owned()));
            };
            if !is_env_key(key) {
                return Err(err(
                    "invalid variable name before = (expected letters, digits and _, not starting with a digit)"
                        .to_owned(),
                ));
            }
            // `rest` runs to the end of the line; the value starts there and may run over further lines.
            let value = parse_value(text, line_end - rest.len()).map_err(|e| match e {
                ValueError::Unterminated => err(format!("unterminated quote in the value of {key}")),
                ValueError::Trailing => err(format!(
                    "unexpected text after the value of {key}: quote a value that holds spaces, and start a comment with #"
                )),
            })?;
            env.set(key, &value.text);
            line_no += value.newlines + 1;
            pos = value.end + 1;
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

    /// The file as systemd's `EnvironmentFile=` reads it, and `bash`'s `source` and
    /// [`EnvFile::parse`] too: see [`escape_systemd_env_value`].
    pub fn to_systemd_string(&self) -> String {
        self.entries.iter().map(|(k, v)| format!("{k}={}\n", escape_systemd_env_value(v))).collect()
    }

    /// Writes [`EnvFile::to_systemd_string`] atomically with the given mode.
    pub fn save_systemd(&self, path: &Path, mode: u32) -> Result<(), CoreError> {
        write_atomic_with_mode(path, self.to_systemd_string().as_bytes(), mode)
    }

    /// Removes a key; returns whether it was there.
    pub fn remove(&mut self, key: &str) -> bool {
        let Some(i) = self.index.remove(key) else { return false };
        self.entries.remove(i);
        for pos in self.index.values_mut() {
            if *pos > i {
                *pos -= 1;
            }
        }
        true
    }

    /// Sets a value, keeping the key's position if already present.
    pub fn set(&mut self, key: &str, value: &str) {
        match self.index.get(key) {
            Some(&i) => self.entries[i].1 = value.to_owned(),
            None => {
                self.index.insert(key.to_owned(), self.entries.len());
                self.entries.push((key.to_owned(), value.to_owned()));
            }
        }
    }

    /// A value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.index.get(key).map(|&i| self.entries[i].1.as_str())
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

/// Quotes a value for a KEY=VALUE line that systemd's `EnvironmentFile=`, `bash` and
/// [`EnvFile::parse`] all read back exactly: bare when safe, else in double quotes with `\`,
/// `"`, `$` and `` ` `` escaped. Single quotes would not do: systemd takes `'\''` (the shell's
/// quote inside single quotes) literally, and it never expands `$` in such a file.
pub fn escape_systemd_env_value(value: &str) -> String {
    let safe = |b: u8| b.is_ascii_alphanumeric() || b"_./:@,+-%".contains(&b);
    if !value.is_empty() && value.bytes().all(safe) {
        return value.to_owned();
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if matches!(c, '\\' | '"' | '$' | '`') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

enum ValueError {
    Unterminated,
    Trailing,
}

/// One value, read from `text[from..]` to the end of its (last) line.
struct Value {
    text: String,
    /// Byte offset of the `\n` that ends it, or the length of the text.
    end: usize,
    /// Line breaks inside its quotes.
    newlines: usize,
}

/// Parses one shell word: bare text with backslash escapes, 'single' and "double" quoted parts.
/// A quoted part may span lines; the word ends at the first blank or line break outside quotes.
fn parse_value(text: &str, from: usize) -> Result<Value, ValueError> {
    let mut out = String::new();
    let mut newlines = 0;
    let mut chars = text[from..].char_indices().map(|(i, c)| (i + from, c)).peekable();
    while chars.next_if(|&(_, c)| c == ' ' || c == '\t').is_some() {}
    let mut next = |newlines: &mut usize| {
        let item = chars.next();
        if let Some((_, '\n')) = item {
            *newlines += 1;
        }
        item
    };
    while let Some((i, c)) = next(&mut newlines) {
        match c {
            '\'' => loop {
                match next(&mut newlines) {
                    Some((_, '\'')) => break,
                    Some((_, c)) => out.push(c),
                    None => return Err(ValueError::Unterminated),
                }
            },
            '"' => loop {
                match next(&mut newlines) {
                    Some((_, '"')) => break,
                    Some((_, '\\')) => match next(&mut newlines) {
                        Some((_, 'n')) => out.push('\n'),
                        Some((_, c @ ('\\' | '"' | '$' | '`'))) => out.push(c),
                        Some((_, '\n')) => {}
                        Some((_, c)) => {
                            out.push('\\');
                            out.push(c);
                        }
                        None => return Err(ValueError::Unterminated),
                    },
                    Some((_, c)) => out.push(c),
                    None => return Err(ValueError::Unterminated),
                }
            },
            '\\' => match next(&mut newlines) {
                Some((_, c)) => out.push(c),
                None => return Err(ValueError::Unterminated),
            },
            '\n' => {
                // The line break that ends the value is the caller's, not the value's.
                return Ok(Value { text: out, end: i, newlines: newlines - 1 });
            }
            ' ' | '\t' | '\r' => {
                let end = text[i..].find('\n').map_or(text.len(), |e| i + e);
                let rest = text[i..end].trim();
                if rest.is_empty() || rest.starts_with('#') {
                    return Ok(Value { text: out, end, newlines });
                }
                return Err(ValueError::Trailing);
            }
            c => out.push(c),
        }
    }
    Ok(Value { text: out, end: text.len(), newlines })
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
        check("A=1\nnot a pair\n", Err("line 2: expected KEY=VALUE: the line has no ="));
        check(
            "1A=x\n",
            Err("line 1: invalid variable name before = (expected letters, digits and _, not starting with a digit)"),
        );
        check("A='open\n", Err("line 1: unterminated quote in the value of A"));
        check(
            "A=x y\n",
            Err(
                "line 1: unexpected text after the value of A: quote a value that holds spaces, and start a comment with #",
            ),
        );
        check(
            "A='a\nb\nc'\nB=x y\n",
            Err(
                "line 4: unexpected text after the value of B: quote a value that holds spaces, and start a comment with #",
            ),
        );
    }

    #[test]
    fn parse_errors_name_the_line_and_key_never_the_value() {
        for text in [
            "NAIVE_PASSWORD: s3cr3t\n",
            "OK=1\nNAIVE_PASSWORD=s3cr3t s3cr3t\n",
            "NAIVE_PASSWORD:s3cr3t=x\n",
            "NAIVE_PASSWORD=\"s3cr3t\n",
            "s3cr3t\n",
        ] {
            let err = EnvFile::parse(text).unwrap_err().to_string();
            assert!(!err.contains("s3cr3t"), "{text:?}: {err}");
        }
        let err = EnvFile::parse("OK=1\nNAIVE_PASSWORD=s3cr3t s3cr3t\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.message.contains("NAIVE_PASSWORD"), "{err}");
    }

    #[test]
    fn a_long_multi_line_value_parses_in_one_pass() {
        // 80k lines inside one quoted value: re-reading the value per line made this quadratic.
        let value: String = (0..80_000).map(|i| if i % 2 == 0 { "ab\n" } else { "\n" }).collect();
        let text = format!("# big\nA='{value}'\nB=\"x\ny\"\nC=3\nD=x y\n");
        let err = EnvFile::parse(&text).unwrap_err();
        assert_eq!(err.line, 80_000 + 6, "{err}");
        let text = format!("A='{value}'\nB=\"x\ny\"\nC=3\n");
        let env = EnvFile::parse(&text).unwrap();
        assert_eq!(env.iter().collect::<Vec<_>>(), [("A", value.as_str()), ("B", "x\ny"), ("C", "3")]);
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

    #[test]
    fn bash_reads_back_the_systemd_form() {
        let mut env = EnvFile::default();
        let tricky = "it's $HOME `x` \"q\" \\ \\n \n end # not a comment";
        env.set("V", tricky);
        assert_eq!(env.to_systemd_string(), "V=\"it's \\$HOME \\`x\\` \\\"q\\\" \\\\ \\\\n \n end # not a comment\"\n");
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!("{}printf %s \"$V\"", env.to_systemd_string()))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), tricky);
    }

    #[test]
    fn keys_are_removed_and_the_order_kept() {
        let mut env = EnvFile::parse("A=1\nB=2\nC=3\n").unwrap();
        assert!(env.remove("B") && !env.remove("B"));
        env.set("C", "4");
        env.set("D", "5");
        assert_eq!(env.iter().collect::<Vec<_>>(), [("A", "1"), ("C", "4"), ("D", "5")]);
    }

    proptest! {
        #[test]
        fn the_systemd_form_round_trips(pairs in proptest::collection::vec(("[A-Za-z_][A-Za-z0-9_]{0,10}", "\\PC*"), 0..6)) {
            let mut env = EnvFile::default();
            for (k, v) in &pairs { env.set(k, v); }
            prop_assert_eq!(EnvFile::parse(&env.to_systemd_string()).unwrap(), env);
        }

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

        #[test]
        fn errors_never_quote_the_text(key in "[A-Z_]{1,8}", secret in "[a-z0-9]{16}", shape in 0usize..5) {
            let text = match shape {
                0 => format!("{key}: {secret}\n"),
                1 => format!("{key}={secret} {secret}\n"),
                2 => format!("{key}:{secret}=x\n"),
                3 => format!("{key}='{secret}\n"),
                _ => format!("A=1\n{secret}\n"),
            };
            let err = EnvFile::parse(&text).unwrap_err().to_string();
            prop_assert!(!err.contains(&secret), "{}", err);
        }
    }
}
