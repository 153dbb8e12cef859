//! Escapers, one per output format and lexical context: a value of any
//! content lands as exactly one scalar or token and never adds structure.
//!
//! The renderer picks the escaper from where a placeholder stands in the
//! template (inside a JSON string, as a whole YAML value, inside a quoted
//! Caddyfile token...), see [`crate::translate`].

use std::fmt::Write as _;

/// A JSON value for a placeholder outside any string: a JSON number or
/// `true`/`false` stays bare (`"port": {{ PORT }}` gives a number), anything
/// else becomes a string literal.
pub fn json_value(value: &str) -> String {
    if is_json_number(value) || value == "true" || value == "false" { value.to_owned() } else { json_string(value) }
}

/// A complete JSON string literal, quotes included.
pub fn json_string(value: &str) -> String {
    format!("\"{}\"", json_content(value))
}

/// The inside of a JSON string literal (for a placeholder between the template's own quotes).
pub fn json_content(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            // Line and paragraph separators are valid JSON but break JavaScript readers.
            c if (c as u32) < 0x20 || c == '\u{7f}' || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// Whether `text` is a number in JSON's grammar.
fn is_json_number(text: &str) -> bool {
    let b = text.as_bytes();
    let mut i = 0;
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
        }
        _ => return false,
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    i == b.len()
}

/// A YAML value for a placeholder that is a whole scalar: a decimal integer
/// or `true`/`false` stays bare, so does a word both YAML 1.1 and 1.2 read
/// as that same string (`unless-stopped`, `/etc/caddy`); anything else
/// becomes a double-quoted scalar.
pub fn yaml_value(value: &str) -> String {
    let integer = {
        let digits = value.strip_prefix('-').unwrap_or(value);
        !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && (digits == "0" || !digits.starts_with('0'))
            && digits.len() <= 18
            && value != "-0"
    };
    if integer || value == "true" || value == "false" || yaml_plain_word(value) {
        value.to_owned()
    } else {
        yaml_double_quoted(value)
    }
}

/// Starts with a letter, `_` or `/`, then letters, digits, `_./-` only, and is
/// not one of YAML 1.1's boolean or null words: no reader types it otherwise.
fn yaml_plain_word(value: &str) -> bool {
    const WORDS: &[&str] = &["y", "n", "yes", "no", "on", "off", "true", "false", "null"];
    let mut bytes = value.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_' || b == b'/')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"_./-".contains(&b))
        && !WORDS.contains(&value.to_ascii_lowercase().as_str())
}

/// A complete double-quoted YAML scalar, quotes included.
pub fn yaml_double_quoted(value: &str) -> String {
    format!("\"{}\"", yaml_double_content(value))
}

/// The inside of a double-quoted YAML scalar: every character YAML would
/// fold, strip or refuse is written as an escape, so the text is one line.
pub fn yaml_double_content(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            c if !yaml_printable(c) || c == '\u{feff}' => {
                let n = c as u32;
                if n <= 0xff {
                    let _ = write!(out, "\\x{n:02x}");
                } else if n <= 0xffff {
                    let _ = write!(out, "\\u{n:04x}");
                } else {
                    let _ = write!(out, "\\U{n:08x}");
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// The inside of a single-quoted YAML scalar; line breaks and unprintable
/// characters cannot be written there.
pub fn yaml_single_content(value: &str) -> Result<String, String> {
    if let Some(c) = value.chars().find(|&c| !yaml_printable(c) || c == '\u{feff}' || c == '\t') {
        return Err(format!(
            "the value holds {c:?}, which a single-quoted YAML scalar cannot hold; put the placeholder in double quotes"
        ));
    }
    Ok(value.replace('\'', "''"))
}

/// YAML's printable set minus the line breaks (which fold inside scalars).
fn yaml_printable(c: char) -> bool {
    matches!(c as u32, 0x20..=0x7e | 0xa0..=0xd7ff | 0xe000..=0xfffd | 0x10000..=0x10ffff)
        && !matches!(c, '\u{2028}' | '\u{2029}')
}

/// A Caddyfile token holding exactly `value`: bare when that is safe, else
/// double-quoted, else backquoted.
///
/// Braces are escaped (`\{`, `\}`) so Caddy never expands a runtime
/// placeholder from a value; `{$` cannot be written at all, because Caddy
/// 2.6 substitutes `{$NAME}` in the raw file before it reads any token.
pub fn caddy_token(value: &str) -> Result<String, String> {
    check_caddy(value)?;
    let bare = value
        .bytes()
        .enumerate()
        .all(|(i, b)| b.is_ascii_alphanumeric() || (i > 0 && b"._:/-".contains(&b)) || (i == 0 && b"/.".contains(&b)));
    if !value.is_empty() && bare {
        return Ok(value.to_owned());
    }
    let braced = caddy_braces(value);
    if caddy_double_ok(&braced) {
        Ok(format!("\"{}\"", braced.replace('"', "\\\"")))
    } else if !braced.contains('`') {
        Ok(format!("`{braced}`"))
    } else {
        Err(caddy_unquotable())
    }
}

/// The inside of a double-quoted Caddyfile token.
pub fn caddy_double_content(value: &str) -> Result<String, String> {
    check_caddy(value)?;
    let braced = caddy_braces(value);
    if caddy_double_ok(&braced) { Ok(braced.replace('"', "\\\"")) } else { Err(caddy_unquotable()) }
}

/// The inside of a backquoted Caddyfile token (no escapes exist there).
pub fn caddy_backquote_content(value: &str) -> Result<String, String> {
    check_caddy(value)?;
    if value.contains('`') {
        return Err("the value holds a backquote, which a backquoted Caddyfile token cannot hold".to_owned());
    }
    Ok(caddy_braces(value))
}

/// A value inside a Caddyfile comment: kept on the comment's line.
pub fn caddy_comment(value: &str) -> String {
    value.replace('\r', "\\r").replace('\n', "\\n").replace("{$", "{\\$")
}

fn check_caddy(value: &str) -> Result<(), String> {
    if value.contains("{$") {
        return Err(
            "the value holds '{$', which Caddy expands as an environment variable anywhere in a Caddyfile".to_owned()
        );
    }
    Ok(())
}

fn caddy_unquotable() -> String {
    "the value holds a backquote and a backslash before a quote (or at its end): no Caddyfile token can hold it"
        .to_owned()
}

/// In a double-quoted token, `\"` is the only escape: a backslash right before
/// a quote, or at the very end, cannot be written.
fn caddy_double_ok(braced: &str) -> bool {
    !braced.ends_with('\\') && !braced.contains("\\\"")
}

fn caddy_braces(value: &str) -> String {
    value.replace('{', "\\{").replace('}', "\\}")
}

/// One systemd command-line word (`ExecStart=`, list settings): bare when
/// safe, else double-quoted with C escapes; `%` and `$` are doubled so no
/// specifier or variable is expanded.
pub fn systemd_word(value: &str) -> String {
    let safe = |b: u8| b.is_ascii_alphanumeric() || b"_./:@=+,-".contains(&b);
    if !value.is_empty() && value.bytes().all(safe) {
        return value.to_owned();
    }
    let mut out = String::from("\"");
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '%' => out.push_str("%%"),
            '$' => out.push_str("$$"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Percent-encodes everything but RFC 3986's unreserved characters, for the
/// user or password part of a URL.
pub fn url_userinfo(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A shell word for a KEY=VALUE file, read back exactly by bash and [`edge_core::EnvFile`].
pub fn env_word(value: &str) -> String {
    edge_core::escape_env_value(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check(f: impl Fn(&str) -> String, input: &str, expected: &str) {
        assert_eq!(f(input), expected, "input {input:?}");
    }

    #[test]
    fn json() {
        check(json_value, "443", "443");
        check(json_value, "-1.5e3", "-1.5e3");
        check(json_value, "0443", "\"0443\"");
        check(json_value, "1.", "\"1.\"");
        check(json_value, "true", "true");
        check(json_value, "null", "\"null\"");
        check(json_value, "a\"b\\c\n\u{1}", r#""a\"b\\c\n\u0001""#);
        check(json_content, "{{x}}", "{{x}}");
    }

    #[test]
    fn yaml() {
        check(yaml_value, "1080", "1080");
        check(yaml_value, "010", "\"010\"");
        check(yaml_value, "yes", "\"yes\"");
        check(yaml_value, "Off", "\"Off\"");
        check(yaml_value, "unless-stopped", "unless-stopped");
        check(yaml_value, "/etc/caddy/Caddyfile", "/etc/caddy/Caddyfile");
        check(yaml_value, "3478:3478", "\"3478:3478\"");
        check(yaml_value, "caddy:2.6", "\"caddy:2.6\"");
        check(yaml_value, "a: b\n- c", r#""a: b\n- c""#);
        check(yaml_double_content, "\u{85}\u{2028}\u{feff}\u{7f}", r"\x85\u2028\ufeff\x7f");
        assert_eq!(yaml_single_content("it's").unwrap(), "it''s");
        assert!(yaml_single_content("a\nb").unwrap_err().contains("double quotes"));
    }

    #[test]
    fn caddy() {
        let check = |input: &str, expected: Result<&str, &str>| {
            let got = caddy_token(input);
            match expected {
                Ok(e) => assert_eq!(got.as_deref(), Ok(e), "input {input:?}"),
                Err(e) => assert!(got.as_ref().is_err_and(|m| m.contains(e)), "input {input:?}: {got:?}"),
            }
        };
        check("127.0.0.1:3081", Ok("127.0.0.1:3081"));
        check("http://127.0.0.1:8080", Ok("http://127.0.0.1:8080"));
        check("edge.example.com", Ok("edge.example.com"));
        check("", Ok("\"\""));
        check("a b", Ok("\"a b\""));
        check("{", Ok("\"\\{\""));
        check("{env.HOME}", Ok("\"\\{env.HOME\\}\""));
        check("say \"hi\"", Ok("\"say \\\"hi\\\"\""));
        check("ends\\", Ok("`ends\\`"));
        check("a\\\"b", Ok("`a\\\"b`"));
        check("`a\\", Err("no Caddyfile token"));
        check("{$HOME}", Err("environment variable"));
        check(",", Ok("\",\""));
        check("-x", Ok("\"-x\""));
    }

    #[test]
    fn systemd() {
        check(systemd_word, "/usr/local/bin/edge-watchdog", "/usr/local/bin/edge-watchdog");
        check(systemd_word, "a b%c$d\"\n", r#""a b%%c$$d\"\n""#);
    }

    /// Undoes Caddy 2.6's lexer on one token, then its runtime brace escapes.
    fn caddy_unlex(token: &str) -> Option<String> {
        let text = if let Some(inner) = token.strip_prefix('`') {
            inner.strip_suffix('`')?.to_owned()
        } else if let Some(inner) = token.strip_prefix('"') {
            let inner = inner.strip_suffix('"')?;
            let mut out = String::new();
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    match chars.next() {
                        Some('"') => out.push('"'),
                        Some(n) => {
                            out.push('\\');
                            out.push(n);
                        }
                        None => return None,
                    }
                } else if c == '"' {
                    return None;
                } else {
                    out.push(c);
                }
            }
            out
        } else {
            if token.chars().any(char::is_whitespace) || token.is_empty() {
                return None;
            }
            token.to_owned()
        };
        // Caddy's replacer: `\{` and `\}` are literal braces.
        Some(text.replace("\\{", "{").replace("\\}", "}"))
    }

    proptest! {
        #[test]
        fn json_literals_parse_back_to_the_value(v in any::<String>()) {
            let parsed: serde_json::Value = serde_json::from_str(&json_string(&v)).unwrap();
            prop_assert_eq!(parsed.as_str(), Some(v.as_str()));
            let parsed: serde_json::Value = serde_json::from_str(&json_value(&v)).unwrap();
            match parsed {
                serde_json::Value::String(s) => prop_assert_eq!(s, v),
                other => prop_assert_eq!(other.to_string(), v),
            }
        }

        #[test]
        fn yaml_values_parse_back_to_the_value(v in "\\PC{0,12}|[a-z/_][a-z0-9_./-]{0,8}|-?[0-9]{1,4}") {
            let parsed: serde_yaml::Value = serde_yaml::from_str(&format!("k: {}\n", yaml_value(&v))).unwrap();
            match &parsed["k"] {
                serde_yaml::Value::String(s) => prop_assert_eq!(s, &v),
                serde_yaml::Value::Number(n) => prop_assert_eq!(n.to_string(), v),
                serde_yaml::Value::Bool(b) => prop_assert_eq!(b.to_string(), v),
                other => prop_assert!(false, "{:?} parsed as {:?}", v, other),
            }
        }

        #[test]
        fn yaml_scalars_parse_back_to_the_value(v in any::<String>()) {
            let parsed: serde_yaml::Value = serde_yaml::from_str(&format!("k: {}\n", yaml_double_quoted(&v))).unwrap();
            prop_assert_eq!(parsed["k"].as_str(), Some(v.as_str()));
            prop_assert!(!yaml_double_quoted(&v).contains(['\n', '\r']));
            if let Ok(inner) = yaml_single_content(&v) {
                let parsed: serde_yaml::Value = serde_yaml::from_str(&format!("k: '{inner}'\n")).unwrap();
                prop_assert_eq!(parsed["k"].as_str(), Some(v.as_str()));
            }
        }

        #[test]
        fn caddy_tokens_are_one_token_holding_the_value(v in any::<String>()) {
            match caddy_token(&v) {
                Ok(token) => {
                    prop_assert!(!token.contains("{$"), "token {}", token);
                    prop_assert_ne!(token.as_str(), "{");
                    prop_assert_ne!(token.as_str(), "}");
                    prop_assert_eq!(caddy_unlex(&token), Some(v.clone()), "token {}", token);
                }
                Err(e) => prop_assert!(v.contains("{$") || v.contains('`'), "{}", e),
            }
        }

        #[test]
        fn systemd_words_stay_on_one_line(v in any::<String>()) {
            let w = systemd_word(&v);
            prop_assert!(!w.contains(['\n', '\r']));
            prop_assert!(!w.replace("%%", "").contains('%'));
        }
    }
}
