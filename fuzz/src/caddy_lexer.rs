//! Caddy's Caddyfile lexer (`caddyconfig/caddyfile/lexer.go`) and its replacer's brace
//! escapes, rewritten in Rust as the reader the Caddyfile escapers are checked against.
//!
//! It follows Caddy's rules: tokens split on Unicode whitespace; `#` at a token's start
//! comments out the rest of the line; a token opening with `"` runs to the next `"` not
//! preceded by `\`, and `\"` is its only escape; one opening with a backquote runs to the
//! next backquote with no escapes; `\` + newline outside quotes joins lines; a bare
//! `\` keeps itself, except before whitespace. Heredocs (`<<MARKER`) are an error here:
//! no escaper writes one. Token text then goes through the replacer, where `\{` and `\}`
//! are literal braces and an unescaped `{...}` is a placeholder (an error here).

/// The tokens of `input`, their brace escapes resolved.
pub(crate) fn tokens(input: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = input.chars().peekable();
    loop {
        // Skip whitespace and comments up to the next token.
        let mut escaped = false;
        let first = loop {
            match chars.next() {
                None => return Ok(out),
                Some('\\') if !escaped => escaped = true,
                Some(c) if c.is_whitespace() => escaped = false,
                Some('#') => while chars.next_if(|&c| c != '\n').is_some() {},
                Some(c) => break c,
            }
        };
        let mut text = String::new();
        match first {
            '"' if !escaped => loop {
                match chars.next() {
                    None => return Err("unterminated double-quoted token".to_owned()),
                    Some('\\') => match chars.next() {
                        Some('"') => text.push('"'),
                        Some(c) => {
                            text.push('\\');
                            text.push(c);
                        }
                        None => return Err("unterminated double-quoted token".to_owned()),
                    },
                    Some('"') => break,
                    Some(c) => text.push(c),
                }
            },
            '`' if !escaped => loop {
                match chars.next() {
                    None => return Err("unterminated backquoted token".to_owned()),
                    Some('`') => break,
                    Some(c) => text.push(c),
                }
            },
            c => {
                if escaped && c != '<' {
                    text.push('\\');
                }
                text.push(c);
                let mut escaped = false;
                while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                    if escaped {
                        if c != '<' {
                            text.push('\\');
                        }
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                        continue;
                    }
                    text.push(c);
                }
                if text.starts_with("<<") {
                    return Err(format!("heredoc token {text:?}"));
                }
            }
        }
        out.push(replace(&text)?);
    }
}

/// Caddy's replacer on a token: `\{` and `\}` are braces, an unescaped `{` opens a placeholder.
fn replace(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if matches!(chars.peek(), Some('{' | '}')) => out.extend(chars.next()),
            '{' if chars.clone().any(|c| c == '}') => return Err(format!("a placeholder in token {text:?}")),
            c => out.push(c),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::tokens;

    #[test]
    fn reads_tokens_as_caddy_does() {
        let ok = |input: &str, want: &[&str]| assert_eq!(tokens(input).unwrap(), want, "{input:?}");
        ok("a b\tc\n", &["a", "b", "c"]);
        ok(r#"x "a \"q\" \n b" y"#, &["x", r#"a "q" \n b"#, "y"]);
        ok("x `a \\\" b` y", &["x", "a \\\" b", "y"]);
        ok("x # comment \"\ny", &["x", "y"]);
        ok("a#b", &["a#b"]);
        ok(r"a\b \{x\}", &[r"a\b", "{x}"]);
        ok("a\\\nb", &["a", "b"]);
        assert!(tokens("\"open").is_err());
        assert!(tokens("{host}").is_err());
        assert!(tokens("<<EOF\nx\nEOF").is_err());
    }
}
