//! Escapers, one per output format and lexical context: a value of any
//! content lands as exactly one scalar or token and never adds structure.
//!
//! The renderer picks the escaper from where a placeholder stands in the
//! template (inside a JSON string, as a whole YAML value, inside a quoted
//! Caddyfile token...), see [`crate::translate`].
//!
//! A value keeps the type its position has: wherever it lands in JSON or
//! YAML it is a string, whatever it looks like (`8080`, `true`, `1e999`).
//! A template that needs a number or a boolean asks for it (`{{ PORT | int }}`,
//! see [`Typed`]), and a value that is not one is an error.
//!
//! Errors are predicates to put after the value's name:
//! `holds a backquote and ...`, `starts with '+', which ...`.

use std::fmt::Write as _;

/// A type a template asks a placeholder's value to have, with the filter
/// that ends its expression: `| int`, `| float` or `| bool`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Typed {
    /// A decimal integer (`-12`, `443`).
    Int,
    /// A finite number (`1.5`, `-2e3`, `7`).
    Float,
    /// `true` or `false` (also read from `yes`/`no`, `on`/`off`, `1`/`0`).
    Bool,
}

impl Typed {
    /// The type a filter name asks for.
    pub fn from_filter(name: &str) -> Option<Self> {
        match name {
            "int" => Some(Self::Int),
            "float" => Some(Self::Float),
            "bool" => Some(Self::Bool),
            _ => None,
        }
    }

    /// The filter's name.
    pub fn filter(self) -> &'static str {
        match self {
            Self::Int => "int",
            Self::Float => "float",
            Self::Bool => "bool",
        }
    }

    /// The literal of `value` as this type, in a canonical form that JSON,
    /// YAML 1.1 and YAML 1.2 all read as that number or boolean, and that
    /// is a plain word in every other format (`443`, `1.5e+300`, `true`).
    pub fn literal(self, value: &str) -> Result<String, String> {
        let fail = |what: &str| Err(format!("is not {what}, which `| {}` asks for", self.filter()));
        match self {
            Self::Int => {
                let digits = value.strip_prefix('-').unwrap_or(value);
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return fail("a decimal integer");
                }
                match value.parse::<i64>() {
                    Ok(n) => Ok(n.to_string()),
                    Err(_) => fail("an integer between -2^63 and 2^63-1"),
                }
            }
            Self::Float => {
                if !is_json_number(value) {
                    return fail("a decimal number");
                }
                match value.parse::<f64>() {
                    Ok(f) if f.is_finite() => Ok(float_literal(f)),
                    _ => fail("a finite 64-bit number"),
                }
            }
            Self::Bool => match value.to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" | "1" => Ok("true".to_owned()),
                "false" | "no" | "off" | "0" => Ok("false".to_owned()),
                _ => fail("a boolean (true, false, yes, no, on, off, 1 or 0)"),
            },
        }
    }
}

/// `f` with a dot in its mantissa and a signed exponent, as YAML 1.1 wants floats.
fn float_literal(f: f64) -> String {
    // Debug always writes a dot or an exponent: `3.0`, `1.5`, `1e300`, `1e-7`.
    let text = format!("{f:?}");
    let Some((mantissa, exponent)) = text.split_once('e') else { return text };
    let dot = if mantissa.contains('.') { "" } else { ".0" };
    let sign = if exponent.starts_with('-') { "" } else { "+" };
    format!("{mantissa}{dot}e{sign}{exponent}")
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

/// A whole YAML scalar holding the string `value`: bare when YAML 1.1 and
/// 1.2 both read that word as the same string (`unless-stopped`,
/// `/etc/caddy`), else double-quoted. Never a number, a boolean or null:
/// `8080`, `true` and `~` come out quoted.
pub fn yaml_value(value: &str) -> String {
    if yaml_plain_word(value) { value.to_owned() } else { yaml_double_quoted(value) }
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
            "holds {c:?}, which a single-quoted YAML scalar cannot hold; put the placeholder in double quotes"
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
        return Err("holds a backquote, which a backquoted Caddyfile token cannot hold".to_owned());
    }
    Ok(caddy_braces(value))
}

/// A value inside a Caddyfile comment: kept on the comment's line.
pub fn caddy_comment(value: &str) -> String {
    value.replace('\r', "\\r").replace('\n', "\\n").replace("{$", "{\\$")
}

/// Where a token stands in a Caddyfile: what Caddy would read as syntax there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaddyPosition {
    /// A site block's address (a top-level line before its `{`): `[scheme://]host[:port]` only.
    Site,
    /// The first token of a line inside a block (a directive, a subdirective,
    /// a map key), where `import`, `(snippet)` and `@matcher` are syntax.
    LineStart,
    /// A directive's first argument, where a matcher (`*`, `/path`, `@name`) may stand.
    Matcher,
    /// Any other argument.
    Argument,
}

impl CaddyPosition {
    /// The position a translated template names (`site`, `line`, `matcher`, `arg`).
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "site" => Self::Site,
            "line" => Self::LineStart,
            "matcher" => Self::Matcher,
            "arg" => Self::Argument,
            _ => return None,
        })
    }

    /// Its name in a translated template.
    pub fn name(self) -> &'static str {
        match self {
            Self::Site => "site",
            Self::LineStart => "line",
            Self::Matcher => "matcher",
            Self::Argument => "arg",
        }
    }
}

/// Rejects text Caddy would read as syntax where it stands, quoted or not
/// (Caddy's parser looks at a token's text, not at its quotes).
///
/// `start`: the text begins its token (nothing of the template's before it);
/// `whole`: the text is the whole token. A template's own text before a
/// value (`@{{ NAME }}`) is the template's choice; a value's is not.
pub fn caddy_position(text: &str, at: CaddyPosition, start: bool, whole: bool) -> Result<(), String> {
    let starts = |c: char| start && text.starts_with(c);
    match at {
        CaddyPosition::Argument => Ok(()),
        CaddyPosition::Site if whole => caddy_site_address(text),
        CaddyPosition::Site | CaddyPosition::LineStart => {
            if whole && text == "import" {
                Err("is `import`, which Caddy reads as its import directive at the start of a line".to_owned())
            } else if starts('(') && (!whole || text.ends_with(')')) {
                Err("is in parentheses, which Caddy reads as a snippet definition at the start of a line".to_owned())
            } else if starts('@') {
                Err("starts with '@', which Caddy reads as a named matcher at the start of a line".to_owned())
            } else {
                Ok(())
            }
        }
        CaddyPosition::Matcher => {
            if whole && text == "*" {
                Err("is `*`, which Caddy reads as a matcher as a directive's first argument".to_owned())
            } else if starts('/') {
                Err("starts with '/', which Caddy reads as a path matcher as a directive's first argument".to_owned())
            } else if starts('@') {
                Err("starts with '@', which Caddy reads as a named matcher as a directive's first argument".to_owned())
            } else {
                Ok(())
            }
        }
    }
}

/// Accepts a site address `[scheme://]host[:port]` (one trailing comma, the
/// list separator, aside): scheme `http` or `https`; host a DNS name (`*`
/// labels allowed, a lone `*` not), an IPv4 address or a bracketed IPv6 one, empty only
/// with a scheme or a port (`:8080`); port 1 to 65535.
pub fn caddy_site_address(text: &str) -> Result<(), String> {
    let err = || Err("is not a site address: Caddy takes [scheme://]host[:port] here".to_owned());
    let address = text.strip_suffix(',').unwrap_or(text);
    if address == "import" {
        return Err("is `import`, which Caddy reads as its import directive at the start of a line".to_owned());
    }
    let (scheme, rest) = match address.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, address),
    };
    if scheme.is_some_and(|s| !s.eq_ignore_ascii_case("http") && !s.eq_ignore_ascii_case("https")) {
        return Err("has a scheme other than http:// or https://, which a Caddy site address cannot have".to_owned());
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let Some((inside, after)) = v6.split_once(']') else { return err() };
        if inside.is_empty() || !inside.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.') {
            return err();
        }
        match after {
            "" => (rest, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (&rest[..rest.len() - after.len()], Some(port)),
                None => return err(),
            },
        }
    } else {
        match rest.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        }
    };
    if let Some(port) = port
        && !(!port.is_empty()
            && port.len() <= 5
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u32>().is_ok_and(|p| (1..=65535).contains(&p)))
    {
        return err();
    }
    let label_ok = |l: &str| {
        l == "*"
            || (!l.is_empty()
                && !l.starts_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    };
    let host_ok = if host.starts_with('[') {
        true
    } else if host == "*" {
        // A lone `*` looks like the catch-all matcher, not a host.
        false
    } else if host.is_empty() {
        scheme.is_some() || port.is_some()
    } else {
        host.split('.').all(label_ok)
    };
    if host_ok { Ok(()) } else { err() }
}

fn check_caddy(value: &str) -> Result<(), String> {
    if value.contains("{$") {
        return Err("holds '{$', which Caddy expands as an environment variable anywhere in a Caddyfile".to_owned());
    }
    Ok(())
}

fn caddy_unquotable() -> String {
    "holds a backquote and a backslash before a quote (or at its end): no Caddyfile token can hold it".to_owned()
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
/// specifier or variable is expanded. A NUL is refused: systemd rejects the line
/// (`\x00` is the one escape it refuses), and no command argument can hold one.
pub fn systemd_word(value: &str) -> Result<String, String> {
    if value.contains('\0') {
        return Err("holds a NUL character, which no systemd command line can hold".to_owned());
    }
    let safe = |b: u8| b.is_ascii_alphanumeric() || b"_./:@=+,-".contains(&b);
    if !value.is_empty() && value.bytes().all(safe) {
        return Ok(value.to_owned());
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
    Ok(out)
}

/// The first word of an `Exec*=` command line (`ExecStart=`, `ExecStop=`...):
/// [`systemd_word`], but a leading `-`, `@`, `:`, `+`, `!` or `|` is
/// refused, because systemd reads those as prefixes (`+` runs the command
/// with full privileges) before it unquotes anything. `whole`: the value is
/// the whole word, so it cannot be empty.
pub fn systemd_command(value: &str, whole: bool) -> Result<String, String> {
    if let Some(c) = value.chars().next().filter(|c| "-@:+!|".contains(*c)) {
        return Err(format!(
            "starts with {c:?}, which systemd reads as a command prefix ('+' runs the command with full privileges, '-' ignores its failure...): give the command's path"
        ));
    }
    if whole && value.is_empty() {
        return Err("is empty where systemd needs the command's path".to_owned());
    }
    systemd_word(value)
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

/// A value of a WireGuard config line (`Key = value`): the line is the whole value and `#`
/// starts a comment, and there is no quoting, so a line break, a control character or `#` is
/// refused rather than escaped.
pub fn wireguard_value(value: &str) -> Result<String, String> {
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(format!("holds the control character {c:?}, which would end or corrupt the WireGuard config line"));
    }
    if value.contains('#') {
        return Err("holds '#', which starts a comment in a WireGuard config".to_owned());
    }
    Ok(value.to_owned())
}

/// A value in a wg-quick hook (`PostUp = ...`), which bash runs: only a plain word (letters,
/// digits and `_./:@=+,-`), never shell syntax.
pub fn wireguard_hook(value: &str) -> Result<String, String> {
    let safe = |b: u8| b.is_ascii_alphanumeric() || b"_./:@=+,-".contains(&b);
    match value.bytes().find(|b| !safe(*b)) {
        None => Ok(value.to_owned()),
        Some(b) => Err(format!(
            "holds {:?} in a wg-quick hook, which bash would run: only letters, digits and _./:@=+,- may stand there",
            b as char
        )),
    }
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
        // Strings stay strings, whatever they look like.
        check(json_string, "443", "\"443\"");
        check(json_string, "-1.5e3", "\"-1.5e3\"");
        check(json_string, "true", "\"true\"");
        check(json_string, "null", "\"null\"");
        check(json_string, "a\"b\\c\n\u{1}", r#""a\"b\\c\n\u0001""#);
        check(json_content, "{{x}}", "{{x}}");
    }

    #[test]
    fn yaml() {
        check(yaml_value, "1080", "\"1080\"");
        check(yaml_value, "-1", "\"-1\"");
        check(yaml_value, "010", "\"010\"");
        check(yaml_value, "true", "\"true\"");
        check(yaml_value, "yes", "\"yes\"");
        check(yaml_value, "Off", "\"Off\"");
        check(yaml_value, "~", "\"~\"");
        check(yaml_value, ".inf", "\".inf\"");
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
    fn typed_literals() {
        let check = |t: Typed, input: &str, expected: Result<&str, &str>| {
            let got = t.literal(input);
            match expected {
                Ok(e) => assert_eq!(got.as_deref(), Ok(e), "{t:?} {input:?}"),
                Err(e) => assert!(got.as_ref().is_err_and(|m| m.contains(e)), "{t:?} {input:?}: {got:?}"),
            }
        };
        check(Typed::Int, "443", Ok("443"));
        check(Typed::Int, "-7", Ok("-7"));
        check(Typed::Int, "0443", Ok("443"));
        check(Typed::Int, "-0", Ok("0"));
        check(Typed::Int, "9223372036854775807", Ok("9223372036854775807"));
        check(Typed::Int, "9223372036854775808", Err("between -2^63 and 2^63-1"));
        for bad in ["", "-", "+5", " 5", "5 ", "0x10", "1e3", "1.0", "443/tcp", "true"] {
            check(Typed::Int, bad, Err("is not a decimal integer, which `| int` asks for"));
        }
        check(Typed::Float, "1.5", Ok("1.5"));
        check(Typed::Float, "3", Ok("3.0"));
        check(Typed::Float, "-2e3", Ok("-2000.0"));
        check(Typed::Float, "1e300", Ok("1.0e+300"));
        check(Typed::Float, "1.5e-7", Ok("1.5e-7"));
        check(Typed::Float, "1e999", Err("a finite 64-bit number"));
        for bad in ["", "1.", ".5", "0x10", "inf", "NaN", "1e", "--1"] {
            check(Typed::Float, bad, Err("is not a decimal number, which `| float` asks for"));
        }
        for yes in ["true", "TRUE", "yes", "on", "1"] {
            check(Typed::Bool, yes, Ok("true"));
        }
        for no in ["false", "No", "off", "0"] {
            check(Typed::Bool, no, Ok("false"));
        }
        for bad in ["", "y", "2", "truthy"] {
            check(Typed::Bool, bad, Err("is not a boolean"));
        }
    }

    #[test]
    fn caddy_positions() {
        use CaddyPosition::*;
        // (text, position, start, whole) → Ok or a fragment of the error.
        let check = |text: &str, at: CaddyPosition, start: bool, whole: bool, expected: Result<(), &str>| {
            let got = caddy_position(text, at, start, whole);
            match expected {
                Ok(()) => assert_eq!(got, Ok(()), "{text:?} at {at:?}"),
                Err(e) => assert!(got.as_ref().is_err_and(|m| m.contains(e)), "{text:?} at {at:?}: {got:?}"),
            }
        };
        for good in [
            "edge.example.com",
            "edge.example.com,",
            "*.example.com",
            "localhost",
            ":8080",
            "127.0.0.1:3081",
            "http://127.0.0.1:8080",
            "HTTPS://edge.example.com:443",
            "http://",
            "[::1]:2019",
            "[2001:db8::1]",
            "under_score.example",
        ] {
            check(good, Site, true, true, Ok(()));
        }
        for bad in [
            "(x)",
            "@m",
            "/x",
            "*",
            "",
            "edge.example.com/path",
            "a b",
            "a..b",
            "-x.example.com",
            ":0",
            ":65536",
            ":http",
            "a:1:2",
            "[::1",
            "[zz]",
            "[::1]x",
            "é.example",
            "edge.example.com{",
        ] {
            check(bad, Site, true, true, Err("is not a site address"));
        }
        check("import", Site, true, true, Err("is `import`"));
        check("ftp://x.example", Site, true, true, Err("scheme other than http:// or https://"));
        // A quoted part of an address: only what would read as syntax at its start.
        check("(x", Site, true, false, Err("snippet"));
        check("@x", Site, true, false, Err("named matcher"));
        check("(x", Site, false, false, Ok(()));

        check("import", LineStart, true, true, Err("import directive"));
        check("import", LineStart, true, false, Ok(()));
        check("(x)", LineStart, true, true, Err("snippet definition"));
        check("(x", LineStart, true, false, Err("snippet definition"));
        check("(x", LineStart, true, true, Ok(()));
        check("@name", LineStart, true, true, Err("named matcher"));
        check("@name", LineStart, false, true, Ok(()));
        check("127.0.0.1:3081", LineStart, true, true, Ok(()));
        check("/x", LineStart, true, true, Ok(()));

        check("*", Matcher, true, true, Err("is `*`"));
        check("*", Matcher, true, false, Ok(()));
        check("/api", Matcher, true, true, Err("path matcher"));
        check("/api", Matcher, false, true, Ok(()));
        check("@m", Matcher, true, false, Err("named matcher"));
        check("app:8080", Matcher, true, true, Ok(()));

        for any in ["import", "(x)", "@m", "*", "/x"] {
            check(any, Argument, true, true, Ok(()));
        }
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
        let word = |v: &str| systemd_word(v).unwrap();
        check(word, "/usr/local/bin/edge-watchdog", "/usr/local/bin/edge-watchdog");
        check(word, "a b%c$d\"\n", r#""a b%%c$$d\"\n""#);
        check(word, "+x", "+x");
        // Found by `cargo xtask fuzz` (escape): `\x00` made systemd refuse the whole line.
        assert!(systemd_word("a\0b").is_err_and(|e| e.contains("NUL")));
        let check = |value: &str, whole: bool, expected: Result<&str, &str>| {
            let got = systemd_command(value, whole);
            match expected {
                Ok(e) => assert_eq!(got.as_deref(), Ok(e), "{value:?}"),
                Err(e) => assert!(got.as_ref().is_err_and(|m| m.contains(e)), "{value:?}: {got:?}"),
            }
        };
        check("/usr/local/bin/edge-watchdog", true, Ok("/usr/local/bin/edge-watchdog"));
        check("edge-watchdog", true, Ok("edge-watchdog"));
        check("/opt/my tools/w", true, Ok("\"/opt/my tools/w\""));
        check("/opt", false, Ok("/opt"));
        check("", false, Ok("\"\""));
        check("", true, Err("is empty where systemd needs the command's path"));
        for prefix in ['+', '-', '@', ':', '!', '|'] {
            check(&format!("{prefix}/tmp/payload"), true, Err("which systemd reads as a command prefix"));
            check(&format!("{prefix}/tmp/payload"), false, Err(&format!("starts with '{prefix}'")));
        }
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
        }

        #[test]
        fn yaml_values_parse_back_to_the_string(
            v in "\\PC{0,12}|[a-zA-Z/_~.][a-zA-Z0-9_./-]{0,8}|[-+.]?[0-9][0-9_.:eE+-]{0,6}|[tTfFyYnNoO~][a-zA-Z]{0,4}"
        ) {
            let parsed: serde_yaml::Value = serde_yaml::from_str(&format!("k: {}\n", yaml_value(&v))).unwrap();
            prop_assert_eq!(parsed["k"].as_str(), Some(v.as_str()), "{}", yaml_value(&v));
        }

        #[test]
        fn typed_literals_parse_as_their_type(v in "-?[0-9]{1,20}|-?[0-9]{1,3}(\\.[0-9]{1,3})?([eE][-+]?[0-9]{1,3})?|\\PC{0,6}") {
            if let Ok(lit) = Typed::Int.literal(&v) {
                let n: i64 = v.parse().unwrap();
                prop_assert_eq!(serde_json::from_str::<serde_json::Value>(&lit).unwrap(), serde_json::json!(n));
                let y: serde_yaml::Value = serde_yaml::from_str(&format!("k: {lit}\n")).unwrap();
                prop_assert_eq!(y["k"].as_i64(), Some(n));
            }
            if let Ok(lit) = Typed::Float.literal(&v) {
                let f: f64 = v.parse().unwrap();
                prop_assert!(lit.contains('.'), "{}", lit);
                // serde_json's default float parser may be one ulp off.
                let json = serde_json::from_str::<serde_json::Value>(&lit).unwrap().as_f64().unwrap();
                prop_assert!((json - f).abs() <= f.abs() * 1e-15, "{} read as {}", lit, json);
                let y: serde_yaml::Value = serde_yaml::from_str(&format!("k: {lit}\n")).unwrap();
                prop_assert_eq!(y["k"].as_f64(), Some(f), "{}", lit);
            }
            if let Ok(lit) = Typed::Bool.literal(&v) {
                prop_assert!(lit == "true" || lit == "false");
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
        fn site_addresses_are_only_addresses(v in "\\PC{0,16}|(https?://)?[a-z0-9*(@/._:\\[\\]-]{0,16}(:[0-9]{1,6})?,?") {
            if caddy_site_address(&v).is_ok() {
                let address = v.strip_suffix(',').unwrap_or(&v);
                prop_assert!(address != "import" && !address.is_empty(), "{:?}", v);
                prop_assert!(
                    address.chars().all(|c| c.is_ascii_alphanumeric() || "*._-:/[]".contains(c)),
                    "{:?}", v
                );
                prop_assert!(!address.starts_with(['(', '@', '/']), "{:?}", v);
                prop_assert!(caddy_token(&v).is_ok());
            }
        }

        #[test]
        fn systemd_commands_never_start_with_a_prefix(v in any::<String>(), whole in any::<bool>()) {
            if let Ok(word) = systemd_command(&v, whole) {
                prop_assert!(!word.starts_with(['-', '@', ':', '+', '!', '|']), "{}", word);
                prop_assert!(!word.is_empty());
            }
        }

        #[test]
        fn wireguard_values_stay_one_value_on_their_line(v in any::<String>()) {
            if let Ok(out) = wireguard_value(&v) {
                // wg-quick reads `key = value` up to the end of the line, cut at `#`.
                let line = format!("Address = {out}");
                prop_assert_eq!(line.lines().count(), 1);
                prop_assert_eq!(line.split('#').next(), Some(line.as_str()));
                prop_assert_eq!(&out, &v);
            } else {
                prop_assert!(v.contains('#') || v.chars().any(char::is_control));
            }
            if let Ok(word) = wireguard_hook(&v) {
                prop_assert!(word.bytes().all(|b| b.is_ascii_alphanumeric() || b"_./:@=+,-".contains(&b)));
            }
        }

        #[test]
        fn systemd_words_stay_on_one_line(v in any::<String>()) {
            let Ok(w) = systemd_word(&v) else { return Ok(()) };
            prop_assert!(!w.contains(['\n', '\r']));
            prop_assert!(!w.replace("%%", "").contains('%'));
        }
    }
}
