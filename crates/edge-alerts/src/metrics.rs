//! Caddy's metrics page (Prometheus text format) to the health of each reverse-proxy upstream.
//!
//! Only `caddy_reverse_proxy_upstreams_healthy{upstream="HOST:PORT"} 0|1` is
//! read; every other series, `# HELP`/`# TYPE` line and comment is skipped.
//! The page is untrusted input: the parser never panics, and a series of the
//! metric that cannot be read is reported as a problem, not guessed at. What it
//! keeps is bounded whatever the page: at most [`MAX_UPSTREAMS`] upstreams,
//! label values of at most [`MAX_LABEL_BYTES`], [`MAX_PROBLEMS`] problems told
//! one by one; each cap the page goes over is one more problem, not one per line.

use std::borrow::Cow;
use std::collections::BTreeMap;

use edge_core::UpstreamHealth;

/// The gauge Caddy exposes per upstream when `servers { metrics }` is on.
pub const UPSTREAM_HEALTH_METRIC: &str = "caddy_reverse_proxy_upstreams_healthy";

/// Most upstreams read from one page (an edge's front proxy has a handful); series
/// naming further upstreams are skipped. A pool member among them reads as missing.
pub const MAX_UPSTREAMS: usize = 1024;

/// Longest label name or value read, in bytes (a `HOST:PORT` is at most 261); a series
/// with a longer one is skipped.
pub const MAX_LABEL_BYTES: usize = 512;

/// Most unreadable series reported one by one; the others are counted in one problem.
pub const MAX_PROBLEMS: usize = 16;

/// Longest excerpt of the page quoted in a problem, in characters.
const EXCERPT_CHARS: usize = 20;

/// What a metrics page says about the upstreams.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamMetrics {
    /// Health by upstream address. When several series name the same
    /// upstream, unhealthy wins.
    pub health: BTreeMap<String, UpstreamHealth>,
    /// Series of the metric that could not be read, in page order (at most
    /// [`MAX_PROBLEMS`]), then one problem per cap the page went over.
    pub problems: Vec<MetricsProblem>,
}

/// A series of [`UPSTREAM_HEALTH_METRIC`] that could not be read, or a cap the page went over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsProblem {
    /// 1-based line number in the page (for a cap: the first line over it).
    pub line: usize,
    /// What is wrong with it.
    pub message: String,
}

/// Lines that went over one cap: counted, reported once.
#[derive(Default)]
struct Overflow {
    first_line: usize,
    count: usize,
}

impl Overflow {
    fn note(&mut self, line: usize) {
        if self.count == 0 {
            self.first_line = line;
        }
        self.count += 1;
    }

    fn report(&self, out: &mut Vec<MetricsProblem>, message: impl FnOnce(usize) -> String) {
        if self.count > 0 {
            out.push(MetricsProblem { line: self.first_line, message: message(self.count) });
        }
    }
}

impl UpstreamMetrics {
    /// Reads a metrics page.
    pub fn parse(text: &str) -> Self {
        Self::parse_only(text, |_| true)
    }

    /// Reads a metrics page, keeping only the upstreams `wanted` accepts (in stack mode, the
    /// pool's): the others are skipped without counting against [`MAX_UPSTREAMS`], so no
    /// number of other series can crowd the wanted ones out.
    pub fn parse_only(text: &str, wanted: impl Fn(&str) -> bool) -> Self {
        let mut out = Self::default();
        let (mut upstreams, mut long_labels, mut unreported) =
            (Overflow::default(), Overflow::default(), Overflow::default());
        for (i, raw) in text.split('\n').enumerate() {
            let line = i + 1;
            match parse_line(raw) {
                Ok(None) => {}
                Ok(Some((upstream, _))) if !wanted(&upstream) => {}
                Ok(Some((upstream, health))) => {
                    let known = out.health.len();
                    match out.health.get_mut(upstream.as_ref()) {
                        Some(slot) => {
                            if health == UpstreamHealth::Unhealthy {
                                *slot = health;
                            }
                        }
                        None if known >= MAX_UPSTREAMS => upstreams.note(line),
                        None => {
                            out.health.insert(upstream.into_owned(), health);
                        }
                    }
                }
                Err(LineProblem::LongLabel) => long_labels.note(line),
                Err(LineProblem::Unreadable(_)) if out.problems.len() >= MAX_PROBLEMS => unreported.note(line),
                Err(LineProblem::Unreadable(message)) => out.problems.push(MetricsProblem { line, message }),
            }
        }
        unreported.report(&mut out.problems, |n| {
            format!("{n} more unreadable series of {UPSTREAM_HEALTH_METRIC} from this line on, not listed")
        });
        long_labels.report(&mut out.problems, |n| {
            format!("{n} series with a label longer than {MAX_LABEL_BYTES} bytes skipped, from this line on")
        });
        upstreams.report(&mut out.problems, |n| {
            format!("more than {MAX_UPSTREAMS} upstreams on the page: {n} series of further upstreams skipped, from this line on")
        });
        out
    }

    /// Reads a metrics page that may not be valid UTF-8.
    pub fn parse_bytes(bytes: &[u8]) -> Self {
        Self::parse(&String::from_utf8_lossy(bytes))
    }

    /// [`UpstreamMetrics::parse_only`] for a page that may not be valid UTF-8.
    pub fn parse_bytes_only(bytes: &[u8], wanted: impl Fn(&str) -> bool) -> Self {
        Self::parse_only(&String::from_utf8_lossy(bytes), wanted)
    }
}

/// Why a series of the metric was not read.
enum LineProblem {
    /// A label name or value is longer than [`MAX_LABEL_BYTES`].
    LongLabel,
    /// Anything else, said in words.
    Unreadable(String),
}

impl From<String> for LineProblem {
    fn from(message: String) -> Self {
        Self::Unreadable(message)
    }
}

/// One line: `Ok(None)` when it is not a sample of the metric.
fn parse_line(raw: &str) -> Result<Option<(Cow<'_, str>, UpstreamHealth)>, LineProblem> {
    let mut c = Cursor { rest: raw.trim_end_matches('\r') };
    c.skip_ws();
    let name = c.take_while(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':');
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
            let label = c.take_while(|b| b.is_ascii_alphanumeric() || b == b'_');
            if label.is_empty() {
                return Err(format!("expected a label name, found {:?}", c.excerpt()).into());
            }
            if label.len() > MAX_LABEL_BYTES {
                return Err(LineProblem::LongLabel);
            }
            c.skip_ws();
            if !c.eat('=') {
                return Err(format!("expected = after label {label}").into());
            }
            c.skip_ws();
            if !c.eat('"') {
                return Err(format!("expected a quoted value for label {label}").into());
            }
            let value = match c.quoted() {
                Ok(value) => value,
                Err(Quoted::TooLong) => return Err(LineProblem::LongLabel),
                Err(Quoted::Unterminated) => return Err(format!("unterminated value of label {label}").into()),
            };
            if label == "upstream" && upstream.replace(value).is_some() {
                return Err("two upstream labels in one series".to_owned().into());
            }
            c.skip_ws();
            if c.eat(',') {
                continue;
            }
            if c.eat('}') {
                break;
            }
            return Err(format!("expected , or }} after label {label}, found {:?}", c.excerpt()).into());
        }
    }
    c.skip_ws();
    let value = c.take_while(|b| !matches!(b, b' ' | b'\t'));
    if value.is_empty() {
        return Err("missing sample value".to_owned().into());
    }
    let number: f64 = value.parse().map_err(|_| format!("invalid sample value {:?}", excerpt(value)))?;
    c.skip_ws();
    let timestamp = c.take_while(|b| !matches!(b, b' ' | b'\t'));
    if !timestamp.is_empty() && !timestamp.starts_with('#') && timestamp.parse::<i64>().is_err() {
        return Err(format!("invalid timestamp {:?}", excerpt(timestamp)).into());
    }
    c.skip_ws();
    // An OpenMetrics exemplar (`# {...} v`) may follow; anything else is not a sample.
    if !c.rest.is_empty() && !timestamp.starts_with('#') && !c.rest.starts_with('#') {
        return Err(format!("unexpected text {:?} after the sample", c.excerpt()).into());
    }
    let upstream = upstream.ok_or_else(|| "series without an upstream label".to_owned())?;
    let health = if number == 1.0 {
        UpstreamHealth::Healthy
    } else if number == 0.0 {
        UpstreamHealth::Unhealthy
    } else {
        return Err(format!("value {} for upstream {upstream:?} is neither 0 nor 1", excerpt(value)).into());
    };
    Ok(Some((upstream, health)))
}

/// At most [`EXCERPT_CHARS`] characters of `text`.
fn excerpt(text: &str) -> String {
    let mut chars = text.chars();
    let mut out: String = chars.by_ref().take(EXCERPT_CHARS).collect();
    if chars.next().is_some() {
        out.push('…');
    }
    out
}

/// Why a quoted label value was not read.
enum Quoted {
    Unterminated,
    TooLong,
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

    /// The longest prefix whose bytes `keep` accepts. `keep` decides on ASCII bytes only
    /// (it accepts all or none of the bytes of other characters), so the cut is a char boundary.
    fn take_while(&mut self, keep: impl Fn(u8) -> bool) -> &'a str {
        let end = self.rest.bytes().position(|b| !keep(b)).unwrap_or(self.rest.len());
        let (taken, rest) = self.rest.split_at(end);
        self.rest = rest;
        taken
    }

    /// The rest of a quoted label value (after its opening quote), unescaped; at most
    /// [`MAX_LABEL_BYTES`] are read.
    fn quoted(&mut self) -> Result<Cow<'a, str>, Quoted> {
        // Most values have no escape: borrow them.
        if let Some(end) = self.rest.find(['"', '\\'])
            && self.rest.as_bytes()[end] == b'"'
        {
            if end > MAX_LABEL_BYTES {
                return Err(Quoted::TooLong);
            }
            let value = &self.rest[..end];
            self.rest = &self.rest[end + 1..];
            return Ok(Cow::Borrowed(value));
        }
        let mut out = String::new();
        let mut chars = self.rest.char_indices();
        while let Some((i, ch)) = chars.next() {
            if out.len() > MAX_LABEL_BYTES {
                return Err(Quoted::TooLong);
            }
            match ch {
                '"' => {
                    self.rest = &self.rest[i + 1..];
                    return Ok(Cow::Owned(out));
                }
                '\\' => match chars.next().ok_or(Quoted::Unterminated)?.1 {
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
        Err(Quoted::Unterminated)
    }

    fn excerpt(&self) -> String {
        self.rest.chars().take(EXCERPT_CHARS).collect()
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

    #[test]
    fn problems_never_quote_more_than_an_excerpt() {
        let m = UPSTREAM_HEALTH_METRIC;
        let long = "9".repeat(100);
        check(
            &format!("{m}{{upstream=\"u\"}} {long}\n"),
            &[],
            &[(1, "value 99999999999999999999… for upstream \"u\" is neither 0 nor 1")],
        );
        check(
            &format!("{m}{{upstream=\"u\"}} 1 x{long}\n"),
            &[],
            &[(1, "invalid timestamp \"x9999999999999999999…\"")],
        );
    }

    #[test]
    fn upstreams_over_the_cap_are_skipped_and_reported_once() {
        let m = UPSTREAM_HEALTH_METRIC;
        let mut page: String = (0..MAX_UPSTREAMS + 10).map(|i| format!("{m}{{upstream=\"u{i}:80\"}} 1\n")).collect();
        // A known upstream is still read past the cap: unhealthy wins.
        page.push_str(&format!("{m}{{upstream=\"u0:80\"}} 0\n"));
        let got = UpstreamMetrics::parse(&page);
        assert_eq!(got.health.len(), MAX_UPSTREAMS);
        assert_eq!(got.health.get("u0:80"), Some(&Unhealthy));
        assert!(!got.health.contains_key(&format!("u{MAX_UPSTREAMS}:80")));
        assert_eq!(
            got.problems,
            [MetricsProblem {
                line: MAX_UPSTREAMS + 1,
                message: format!(
                    "more than {MAX_UPSTREAMS} upstreams on the page: 10 series of further upstreams skipped, from this line on"
                ),
            }]
        );
    }

    #[test]
    fn only_wanted_upstreams_are_kept_and_others_never_crowd_them_out() {
        let m = UPSTREAM_HEALTH_METRIC;
        let mut page: String = (0..2 * MAX_UPSTREAMS).map(|i| format!("{m}{{upstream=\"u{i}:80\"}} 0\n")).collect();
        page.push_str(&format!("{m}{{upstream=\"pool:1\"}} 1\n{m} 1\n"));
        let got = UpstreamMetrics::parse_only(&page, |u| u == "pool:1");
        assert_eq!(got.health, BTreeMap::from([("pool:1".to_owned(), Healthy)]));
        assert_eq!(
            got.problems,
            [MetricsProblem { line: 2 * MAX_UPSTREAMS + 2, message: "series without an upstream label".into() }]
        );
        // Everything wanted: the pool member came too late.
        assert!(!UpstreamMetrics::parse(&page).health.contains_key("pool:1"));
    }

    #[test]
    fn long_labels_are_skipped_and_reported_once() {
        let m = UPSTREAM_HEALTH_METRIC;
        let huge = "h".repeat(5 << 20);
        let just = "j".repeat(MAX_LABEL_BYTES);
        let page = format!(
            "{m}{{upstream=\"{huge}:1\"}} 0\n{m}{{upstream=\"{just}\"}} 1\n{m}{{upstream=\"u\",x=\"{huge}\"}} 0\n\
             {m}{{{huge}=\"1\",upstream=\"v\"}} 0\n{m}{{upstream=\"w\"}} 1\n"
        );
        check(
            &page,
            &[(just.as_str(), Healthy), ("w", Healthy)],
            &[(1, &format!("3 series with a label longer than {MAX_LABEL_BYTES} bytes skipped, from this line on"))],
        );
    }

    #[test]
    fn unreadable_series_are_listed_up_to_the_cap_then_counted() {
        let m = UPSTREAM_HEALTH_METRIC;
        let page: String = (0..MAX_PROBLEMS + 5).map(|_| format!("{m} 1\n")).collect();
        let got = UpstreamMetrics::parse(&page);
        assert_eq!(got.problems.len(), MAX_PROBLEMS + 1);
        assert!(got.problems[..MAX_PROBLEMS].iter().all(|p| p.message == "series without an upstream label"));
        assert_eq!(
            got.problems[MAX_PROBLEMS],
            MetricsProblem {
                line: MAX_PROBLEMS + 1,
                message: format!("5 more unreadable series of {m} from this line on, not listed"),
            }
        );
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
        fn what_is_kept_stays_within_the_caps(lines in proptest::collection::vec(sample(), 0..40), long in 0usize..3) {
            let long = "x".repeat(MAX_LABEL_BYTES + long);
            let page: String = lines.iter().map(|(_, _, l)| format!("{l}\n{UPSTREAM_HEALTH_METRIC}{{upstream=\"{long}\"}} 1\n")).collect();
            let got = UpstreamMetrics::parse(&page);
            prop_assert!(got.health.len() <= MAX_UPSTREAMS);
            prop_assert!(got.health.keys().all(|u| u.len() <= MAX_LABEL_BYTES));
            prop_assert!(got.problems.len() <= MAX_PROBLEMS + 3);
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
