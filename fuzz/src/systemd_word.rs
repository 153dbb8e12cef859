//! How systemd reads one word of an `ExecStart=` line, rewritten in Rust as the reader
//! `systemd_word` is checked against.
//!
//! Order as in systemd: specifiers first (`%%` is `%`, any other `%X` a specifier), then
//! variables (`$$` is `$`, `$NAME` and `${NAME}` are expanded), then the word is split off
//! and unquoted (`extract_first_word` with `EXTRACT_UNQUOTE | EXTRACT_CUNESCAPE`): C escapes
//! inside and outside double quotes, a NUL written as an escape refused (`cunescape_one`
//! without `accept_nul`).

/// The one word `line` holds, or why systemd would not read it as exactly one word.
pub(crate) fn read_word(line: &str) -> Result<String, String> {
    let line = unspecify(line)?;
    let line = unvariable(&line)?;
    let mut out = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut started = false;
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted = !quoted;
                started = true;
            }
            '\\' => {
                out.push(unescape(&mut chars)?);
                started = true;
            }
            c if !quoted && " \t\n\r".contains(c) => {
                if started {
                    if chars.any(|c| !" \t\n\r".contains(c)) {
                        return Err("more than one word".to_owned());
                    }
                    break;
                }
            }
            c => {
                out.push(c);
                started = true;
            }
        }
    }
    if quoted {
        return Err("unterminated quote".to_owned());
    }
    if !started {
        return Err("no word".to_owned());
    }
    Ok(out)
}

fn unspecify(line: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match (c, c == '%') {
            (_, true) => match chars.next() {
                Some('%') => out.push('%'),
                other => return Err(format!("specifier %{}", other.unwrap_or(' '))),
            },
            (c, false) => out.push(c),
        }
    }
    Ok(out)
}

fn unvariable(line: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            out.push(c);
        } else if chars.next_if_eq(&'$').is_some() {
            out.push('$');
        } else if chars.peek().is_some_and(|&c| c == '{' || c.is_ascii_alphabetic() || c == '_') {
            return Err("a variable reference".to_owned());
        } else {
            out.push('$');
        }
    }
    Ok(out)
}

/// systemd's `cunescape_one` after a backslash.
fn unescape(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Result<char, String> {
    let hex = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>, n: usize| -> Result<u32, String> {
        let digits: String = (0..n).filter_map(|_| chars.next()).collect();
        if digits.len() != n {
            return Err("short escape".to_owned());
        }
        u32::from_str_radix(&digits, 16).map_err(|_| format!("bad escape digits {digits:?}"))
    };
    let c = match chars.next().ok_or("a backslash at the end")? {
        'a' => '\u{7}',
        'b' => '\u{8}',
        'f' => '\u{c}',
        'n' => '\n',
        'r' => '\r',
        't' => '\t',
        'v' => '\u{b}',
        's' => ' ',
        '\\' => '\\',
        '"' => '"',
        '\'' => '\'',
        'x' => char::from_u32(hex(chars, 2)?).ok_or("bad \\x escape")?,
        'u' => char::from_u32(hex(chars, 4)?).ok_or("bad \\u escape")?,
        'U' => char::from_u32(hex(chars, 8)?).ok_or("bad \\U escape")?,
        other => return Err(format!("unknown escape \\{other}")),
    };
    if c == '\0' {
        return Err("a NUL, which systemd refuses in a command line".to_owned());
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::read_word;

    #[test]
    fn reads_words_as_systemd_does() {
        assert_eq!(read_word("/usr/bin/x").unwrap(), "/usr/bin/x");
        assert_eq!(read_word(r#""a b\n\x01%%$$""#).unwrap(), "a b\n\u{1}%$");
        assert!(read_word("a b").is_err());
        assert!(read_word("%h").is_err());
        assert!(read_word("$HOME").is_err());
        assert!(read_word(r#""\x00""#).is_err());
        assert!(read_word("\"open").is_err());
    }
}
