//! Caddy's metrics page (Prometheus text format) to the health of each reverse-proxy upstream.
//!
//! Only `caddy_reverse_proxy_upstreams_healthy{upstream="HOST:PORT"} 0|1` is
//! read; every other series, `# HELP`/`# TYPE` line and comment is skipped.
//! The page is untrusted input: the parser never panics, and a series of the
//! metric that cannot be read is reported as a problem, not guessed at.

use std::collections::BTreeMap;

use edge_core::UpstreamHealth;

/// The gauge Caddy exposes per upstream when `servers { metrics }` is on.
pub const UPSTREAM_HEALTH_METRIC: &str = "caddy_reverse_proxy_upstreams_healthy";

/// What a metrics page says about the upstreams.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamMetrics {
    /// Health by upstream address. When several series name the same
    /// upstream, unhealthy wins.
    pub health: BTreeMap<String, UpstreamHealth>,
    /// Series of the metric that could not be read.
    pub problems: Vec<MetricsProblem>,
}

/// A series of [`UPSTREAM_HEALTH_METRIC`] that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsProblem {
    /// 1-based line number in the page.
    pub line: usize,
    /// What is wrong with it.
    pub message: String,
}

impl UpstreamMetrics {
    /// Reads a metrics page.
    pub fn parse(text: &str) -> Self {
        let mut out = Self::default();
        for (i, raw) in text.split('\n').enumerate() {
            match parse_line(raw) {
                Ok(None) => {}
                Ok(Some((upstream, health))) => {
                    let slot = out.health.entry(upstream).or_insert(health);
                    if health == UpstreamHealth::Unhealthy {
                        *slot = health;
                    }
                }
                Err(message) => out.problems.push(MetricsProblem { line: i + 1, message }),
            }
        }
        out
    }

    /// Reads a metrics page that may not be valid UTF-8.
    pub fn parse_bytes(bytes: &[u8]) -> Self {
        Self::parse(&String::from_utf8_lossy(bytes))
    }
}

/// One line: `Ok(None)` when it is not a sample of the metric.
fn parse_line(raw: &str) -> Result<Option<(String, UpstreamHealth)>, String> {
    let mut c = Cursor { rest: raw.trim_end_matches('\r') };
    c.skip_ws();
    let name = c.take_while(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == ':');
    if name != UPSTREAM_HEALTH_METRIC {
        return Ok(None);
    }
    c.skip_ws();
    let mut upstream = None;
    if c.eat('{') {
        loop {
            c.skip_ws();
            if c.eat('}') {
                break;
            }
            let label = c.take_while(|ch| ch.is_ascii_alphanumeric() || ch == '_');
            if label.is_empty() {
                return Err(format!("expected a label name, found {:?}", c.excerpt()));
            }
            c.skip_ws();
            if !c.eat('=') {
                return Err(format!("expected = after label {label}"));
            }
            c.skip_ws();
            if !c.eat('"') {
                return Err(format!("expected a quoted value for label {label}"));
            }
            let value = c.quoted().ok_or_else(|| format!("unterminated value of label {label}"))?;
            if label == "upstream" && upstream.replace(value).is_some() {
                return Err("two upstream labels in one series".to_owned());
            }
            c.skip_ws();
            if c.eat(',') {
                continue;
            }
            if c.eat('}') {
                break;
            }
            return Err(format!("expected , or }} after label {label}, found {:?}", c.excerpt()));
        }
    }
    c.skip_ws();
    let value = c.take_while(|ch| !matches!(ch, ' ' | '\t'));
    if value.is_empty() {
        return Err("missing sample value".to_owned());
    }
    let number: f64 = value.parse().map_err(|_| format!("invalid sample value {value:?}"))?;
    c.skip_ws();
    let timestamp = c.take_while(|ch| !matches!(ch, ' ' | '\t'));
    if !timestamp.is_empty() && !timestamp.starts_with('#') && timestamp.parse::<i64>().is_err() {
        return Err(format!("invalid timestamp {timestamp:?}"));
    }
    c.skip_ws();
    // An OpenMetrics exemplar (`# {...} v`) may follow; anything else is not a sample.
    if !c.rest.is_empty() && !timestamp.starts_with('#') && !c.rest.starts_with('#') {
        return Err(format!("unexpected text {:?} after the sample", c.excerpt()));
    }
    let upstream = upstream.ok_or_else(|| "series without an upstream label".to_owned())?;
    let health = if number == 1.0 {
        UpstreamHealth::Healthy
    } else if number == 0.0 {
        UpstreamHealth::Unhealthy
    } else {
        return Err(format!("value {value} for upstream {upstream:?} is neither 0 nor 1"));
    };
    Ok(Some((upstream, health)))
}

struct Cursor<'a> {
    rest: &'a str,
}

impl<'a> Cursor<'a> {
    fn skip_ws(&mut self) {
        self.rest = self.rest.trim_start_matches([' ', '\t']);
    }

    fn eat(&mut self, ch: char) -> bool {
        match self.rest.strip_prefix(ch) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    fn take_while(&mut self, keep: impl Fn(char) -> bool) -> &'a str {
        let end = self.rest.find(|ch| !keep(ch)).unwrap_or(self.rest.len());
        let (taken, rest) = self.rest.split_at(end);
        self.rest = rest;
        taken
    }

    /// The rest of a quoted label value (after its opening quote), unescaped.
    fn quoted(&mut self) -> Option<String> {
        let mut out = String::new();
        let mut chars = self.rest.char_indices();
        while let Some((i, ch)) = chars.next() {
            match ch {
                '"' => {
                    self.rest = &self.rest[i + 1..];
                    return Some(out);
                }
                '\\' => match chars.next()?.1 {
                    'n' => out.push('\n'),
                    esc @ ('\\' | '"') => out.push(esc),
                    other => {
                        out.push('\\');
                        out.push(other);
                    }
                },
                other => out.push(other),
            }
        }
        None
    }

    fn excerpt(&self) -> String {
        self.rest.chars().take(20).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use UpstreamHealth::{Healthy, Unhealthy};
    use proptest::prelude::*;

    fn check(page: &str, expected: &[(&str, UpstreamHealth)], problems: &[(usize, &str)]) {
        let got = UpstreamMetrics::parse(page);
        let want: BTreeMap<String, UpstreamHealth> = expected.iter().map(|(u, h)| ((*u).to_owned(), *h)).collect();
        assert_eq!(got.health, want, "{page:?}");
        let got_problems: Vec<(usize, &str)> = got.problems.iter().map(|p| (p.line, p.message.as_str())).collect();
        assert_eq!(got_problems, problems, "{page:?}");
    }

    #[test]
    fn reads_what_caddy_writes() {
        check(
            "# HELP caddy_reverse_proxy_upstreams_healthy Health status of reverse proxy upstreams.\n\
             # TYPE caddy_reverse_proxy_upstreams_healthy gauge\n\
             caddy_reverse_proxy_upstreams_healthy{upstream=\"xray-client:3080\"} 1\n\
             caddy_reverse_proxy_upstreams_healthy{upstream=\"hy2-client:3081\"} 0\n\
             caddy_http_requests_total{handler=\"reverse_proxy\"} 12\n",
            &[("xray-client:3080", Healthy), ("hy2-client:3081", Unhealthy)],
            &[],
        );
    }

    #[test]
    fn tolerates_every_legal_spelling() {
        let m = UPSTREAM_HEALTH_METRIC;
        check(&format!("{m}{{a=\"x\",upstream=\"u:1\",}} 1.0\r\n"), &[("u:1", Healthy)], &[]);
        check(&format!("  {m} {{ upstream = \"u:1\" }}\t0e0 1716200000000\n"), &[("u:1", Unhealthy)], &[]);
        check(&format!("{m}{{upstream=\"a\\\"b\\\\c\\nd\"}} 1e0\n"), &[("a\"b\\c\nd", Healthy)], &[]);
        check(&format!("{m}{{upstream=\"u:1\"}} -0\n"), &[("u:1", Unhealthy)], &[]);
        check(&format!("{m}{{upstream=\"u:1\"}} 1 # {{trace_id=\"x\"}} 1\n"), &[("u:1", Healthy)], &[]);
        check(&format!("{m}_other{{upstream=\"u:1\"}} 0\n{m}:x{{upstream=\"u:2\"}} 0\n"), &[], &[]);
    }

    #[test]
    fn unhealthy_wins_over_a_duplicate_series() {
        let m = UPSTREAM_HEALTH_METRIC;
        check(&format!("{m}{{upstream=\"u\",h=\"1\"}} 1\n{m}{{upstream=\"u\",h=\"2\"}} 0\n"), &[("u", Unhealthy)], &[]);
        check(&format!("{m}{{upstream=\"u\",h=\"1\"}} 0\n{m}{{upstream=\"u\",h=\"2\"}} 1\n"), &[("u", Unhealthy)], &[]);
    }

    #[test]
    fn unreadable_series_are_problems() {
        let m = UPSTREAM_HEALTH_METRIC;
        check(&format!("{m} 1\n"), &[], &[(1, "series without an upstream label")]);
        check(
            &format!("ok 1\n{m}{{upstream=\"u\"}} 0.5\n"),
            &[],
            &[(2, "value 0.5 for upstream \"u\" is neither 0 nor 1")],
        );
        check(&format!("{m}{{upstream=\"u\"}} NaN\n"), &[], &[(1, "value NaN for upstream \"u\" is neither 0 nor 1")]);
        check(&format!("{m}{{upstream=\"u\"}}\n"), &[], &[(1, "missing sample value")]);
        check(&format!("{m}{{upstream=\"u}} 1\n"), &[], &[(1, "unterminated value of label upstream")]);
        check(&format!("{m}{{upstream=u}} 1\n"), &[], &[(1, "expected a quoted value for label upstream")]);
        check(
            &format!("{m}{{upstream=\"u\" x=\"y\"}} 1\n"),
            &[],
            &[(1, "expected , or } after label upstream, found \"x=\\\"y\\\"} 1\"")],
        );
        check(&format!("{m}{{upstream=\"u\"}} 1 soon\n"), &[], &[(1, "invalid timestamp \"soon\"")]);
        check(&format!("{m}{{upstream=\"u\"}} 1 2 3\n"), &[], &[(1, "unexpected text \"3\" after the sample")]);
        check(&format!("{m}{{upstream=\"a\",upstream=\"b\"}} 1\n"), &[], &[(1, "two upstream labels in one series")]);
        check(&format!("{m}{{=\"a\"}} 1\n"), &[], &[(1, "expected a label name, found \"=\\\"a\\\"} 1\"")]);
    }

    fn escape_label(value: &str) -> String {
        value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
    }

    /// A sample line for `upstream` with extra labels in any order, any spelling of 0/1 and maybe a timestamp.
    fn sample() -> impl Strategy<Value = (String, UpstreamHealth, String)> {
        (
            "\\PC{1,24}",
            any::<bool>(),
            proptest::collection::vec(("[a-z_][a-z0-9_]{0,8}", "\\PC{0,12}"), 0..3),
            0usize..3,
            prop_oneof![Just("1"), Just("1.0"), Just("1e0"), Just("+1")],
            prop_oneof![Just("0"), Just("0.0"), Just("0e0"), Just("-0")],
            proptest::option::of(any::<i64>()),
            prop_oneof![Just(" "), Just("\t"), Just("  ")],
        )
            .prop_filter("the metric's own label", |(_, _, extra, ..)| extra.iter().all(|(k, _)| k != "upstream"))
            .prop_map(|(upstream, healthy, extra, at, one, zero, ts, ws)| {
                let mut labels: Vec<String> =
                    extra.iter().map(|(k, v)| format!("{k}=\"{}\"", escape_label(v))).collect();
                labels.insert(at.min(labels.len()), format!("upstream=\"{}\"", escape_label(&upstream)));
                let value = if healthy { one } else { zero };
                let ts = ts.map(|t| format!("{ws}{t}")).unwrap_or_default();
                let line = format!("{UPSTREAM_HEALTH_METRIC}{{{}}}{ws}{value}{ts}", labels.join(","));
                (upstream, if healthy { UpstreamHealth::Healthy } else { UpstreamHealth::Unhealthy }, line)
            })
    }

    proptest! {
        #[test]
        fn never_panics_on_any_text(text in any::<String>()) {
            let _ = UpstreamMetrics::parse(&text);
        }

        #[test]
        fn never_panics_on_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = UpstreamMetrics::parse_bytes(&bytes);
        }

        #[test]
        fn never_panics_on_near_misses(tail in "[{}\",= a-z\\\\0-9.#\t\r\n-]{0,40}") {
            let _ = UpstreamMetrics::parse(&format!("{UPSTREAM_HEALTH_METRIC}{tail}"));
        }

        #[test]
        fn reads_every_generated_series(
            samples in proptest::collection::vec(sample(), 0..8),
            noise in proptest::collection::vec("[a-z_# ][^\n]{0,30}", 0..6),
        ) {
            let mut want = BTreeMap::new();
            let mut lines = Vec::new();
            for (i, (upstream, health, line)) in samples.into_iter().enumerate() {
                let slot = want.entry(upstream).or_insert(health);
                if health == UpstreamHealth::Unhealthy { *slot = health; }
                lines.push(line);
                if let Some(n) = noise.get(i) { lines.push(n.clone()); }
            }
            let page = lines.join("\n");
            let got = UpstreamMetrics::parse(&page);
            prop_assert_eq!(got.health, want);
        }
    }
}
