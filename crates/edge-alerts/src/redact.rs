//! What logs, errors and reports may show of a URL or of a text that may hold a secret.
//!
//! A URL is shown as its scheme, host and port: userinfo (Alertmanager
//! credentials), path (a webhook's secret path, a bot token), query and
//! fragment are left out. A known secret is replaced by `<redacted>` wherever
//! it appears, spelled as is or percent-encoded, in part or in whole, in either
//! case of hex digits, once or twice over.

/// What replaces a secret.
pub const REDACTED: &str = "<redacted>";

/// `url` as logs and reports show it: `scheme://host[:port]`; `<redacted>` if it is not a URL.
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(parsed) => origin(&parsed),
        Err(_) => REDACTED.to_owned(),
    }
}

/// `scheme://host[:port]` of a parsed URL (the port only when it is not the scheme's default).
pub(crate) fn origin(url: &reqwest::Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{}://{host}:{port}", url.scheme()),
        (Some(host), None) => format!("{}://{host}", url.scheme()),
        (None, _) => format!("{}:", url.scheme()),
    }
}

/// The parts of `url` that may be secret, decoded: the password, the path and the query.
/// A path of `/` or a single plain word (`/hook`) is not taken for one.
pub(crate) fn url_secrets(url: &str) -> Vec<String> {
    let Ok(parsed) = reqwest::Url::parse(url) else { return vec![url.to_owned()] };
    let mut secrets: Vec<String> = Vec::new();
    if let Some(password) = parsed.password() {
        secrets.push(decode(password));
    }
    if !parsed.username().is_empty() {
        secrets.push(decode(parsed.username()));
    }
    let path = parsed.path().trim_matches('/');
    if path.len() >= 8 {
        secrets.push(path.to_owned());
        secrets.push(decode(path));
        secrets.extend(path.split('/').filter(|s| s.len() >= 8).map(decode));
    }
    if let Some(query) = parsed.query().filter(|q| !q.is_empty()) {
        secrets.push(query.to_owned());
        secrets.extend(query.split('&').filter_map(|kv| kv.split_once('=')).map(|(_, v)| decode(v)));
    }
    secrets.retain(|s| s.len() >= 4);
    secrets.sort();
    secrets.dedup();
    secrets
}

/// Percent-decodes `text` once (lossily: an invalid UTF-8 result keeps replacement characters).
pub(crate) fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match escaped(&bytes[i..]) {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The byte a `%XX` escape at the start of `text` stands for.
fn escaped(text: &[u8]) -> Option<u8> {
    let hex = |b: u8| (b as char).to_digit(16);
    match text {
        [b'%', h, l, ..] => Some((hex(*h)? * 16 + hex(*l)?) as u8),
        _ => None,
    }
}

/// The end of an occurrence of `secret` at the start of `text[at..]`, each of its bytes
/// spelled as is, as `%XX` or as `%25XX` (encoded twice).
fn match_at(text: &[u8], at: usize, secret: &[u8]) -> Option<usize> {
    let Some((&want, rest)) = secret.split_first() else { return Some(at) };
    let here = &text[at..];
    let mut spellings = [None, None, None];
    if here.first() == Some(&want) {
        spellings[0] = Some(1);
    }
    if escaped(here) == Some(want) {
        spellings[1] = Some(3);
    }
    if here.len() >= 5 && escaped(here) == Some(b'%') && escaped(&[b'%', here[3], here[4]]) == Some(want) {
        spellings[2] = Some(5);
    }
    spellings.into_iter().flatten().find_map(|len| match_at(text, at + len, rest))
}

/// `text` with every secret of `secrets` (empty ones aside) replaced by `<redacted>`,
/// whether spelled as is or percent-encoded, in part or in whole, once or twice over.
pub fn redact_secrets<S: AsRef<str>>(text: &str, secrets: &[S]) -> String {
    let secrets: Vec<&[u8]> = secrets.iter().map(|s| s.as_ref().as_bytes()).filter(|s| !s.is_empty()).collect();
    if secrets.is_empty() {
        return text.to_owned();
    }
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let (mut done, mut at) = (0, 0);
    while at < bytes.len() {
        // The longest occurrence starting here.
        let end = secrets.iter().filter_map(|s| match_at(bytes, at, s)).max();
        match end {
            Some(mut end) if text.is_char_boundary(at) => {
                while !text.is_char_boundary(end) {
                    end += 1;
                }
                out.push_str(&text[done..at]);
                out.push_str(REDACTED);
                done = end;
                at = end;
            }
            _ => at += 1,
        }
    }
    out.push_str(&text[done..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check_url(url: &str, expected: &str) {
        assert_eq!(redact_url(url), expected, "{url}");
    }

    #[test]
    fn urls_show_scheme_host_and_port_only() {
        check_url("https://hooks.example.com/services/T000/B000/XXXXSECRET", "https://hooks.example.com");
        check_url("http://admin:s3cr3t@127.0.0.1:9093/", "http://127.0.0.1:9093");
        check_url("http://127.0.0.1:9/bot123:ABC/sendMessage?x=1#f", "http://127.0.0.1:9");
        check_url("https://[::1]:8443/hook?token=s3cr3t", "https://[::1]:8443");
        check_url("https://h.example:443/p", "https://h.example");
        check_url("not a url s3cr3t", "<redacted>");
        check_url("mailto:s3cr3t@example.com", "mailto:");
    }

    fn check(text: &str, secrets: &[&str], expected: &str) {
        assert_eq!(redact_secrets(text, secrets), expected, "{text}");
    }

    #[test]
    fn secrets_are_redacted_however_they_are_encoded() {
        check("token 123:ABC here", &["123:ABC"], "token <redacted> here");
        check("/bot123%3AABC/send", &["123:ABC"], "/bot<redacted>/send");
        check("/bot123%3aABC/send", &["123:ABC"], "/bot<redacted>/send");
        check("%31%32%33%3A%41%42%43", &["123:ABC"], "<redacted>");
        check("x=123%253AABC&y", &["123:ABC"], "x=<redacted>&y");
        check("a 123:ABC b 123%3AABC c", &["123:ABC", "ABC"], "a <redacted> b <redacted> c");
        check("nothing to see, 100%", &["123:ABC"], "nothing to see, 100%");
        check("é123:ABCé", &["123:ABC"], "é<redacted>é");
        // A stray % before the text does not hide it.
        check("%00%30:x", &["000:x"], "%<redacted>");
        check("any", &[""], "any");
    }

    #[test]
    fn url_secrets_are_the_private_parts() {
        let s = url_secrets("http://user:pa%24%24word@h:1/hooks/abcdef123456?key=s3cr3t%21&v=1");
        for want in ["pa$$word", "hooks/abcdef123456", "abcdef123456", "key=s3cr3t%21&v=1", "s3cr3t!"] {
            assert!(s.iter().any(|x| x == want), "{want} not in {s:?}");
        }
        assert!(url_secrets("http://127.0.0.1:1/hook").is_empty());
    }

    fn encode_some(token: &str, mask: &[bool], upper: bool) -> String {
        token
            .bytes()
            .zip(mask.iter().cycle())
            .map(|(b, &enc)| match (enc, upper) {
                (true, true) => format!("%{b:02X}"),
                (true, false) => format!("%{b:02x}"),
                (false, _) => (b as char).to_string(),
            })
            .collect()
    }

    proptest! {
        #[test]
        fn an_encoded_token_never_survives(
            token in "[0-9]{6,10}:[A-Za-z0-9_-]{30,40}",
            mask in proptest::collection::vec(any::<bool>(), 1..8),
            upper in any::<bool>(),
            prefix in "\\PC{0,20}",
            suffix in "\\PC{0,20}",
        ) {
            let encoded = encode_some(&token, &mask, upper);
            let text = format!("{prefix}{encoded}{suffix}");
            let out = redact_secrets(&text, &[&token]);
            prop_assert!(!out.contains(&token) && !out.contains(&encoded), "{}", out);
            prop_assert!(out.contains(REDACTED));
        }

        #[test]
        fn text_without_the_secret_is_unchanged(text in "[^%]{0,40}", secret in "[0-9]{6}:[A-Z]{8}") {
            prop_assume!(!text.contains(&secret));
            prop_assert_eq!(redact_secrets(&text, &[&secret]), text);
        }
    }
}
