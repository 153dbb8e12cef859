//! Template source → tera source, line for line.
//!
//! Three passes over the template's segments (text, `{{ }}`, `{% %}`, `{# #}`):
//! 1. legacy mustache blocks become tera tags (`{{#if X}}` → `{% if X %}`,
//!    `{{else}}`, `{{/if}}`, `{{#unless X}}`, `{{^X}}`, `{{! comment }}`);
//! 2. a line holding only block tags produces no output line (like Jinja's
//!    `trim_blocks` + `lstrip_blocks`): its newline moves inside the last tag;
//! 3. every `{{ expr }}` is wrapped in a filter section that escapes the value
//!    for the lexical context it stands in: inside a JSON string or outside,
//!    a whole YAML scalar or part of one, a bare or quoted Caddyfile token...
//!    A placeholder that is part of a bare token (`image: repo:{{ TAG }}`)
//!    turns that whole token into a quoted one.
//!
//! No pass adds or removes a line, so tera's line numbers are the template's.

use edge_core::TemplateFormat;

/// Filters the renderer registers; an expression whose last filter is one of these is left alone.
pub(crate) const EXPLICIT_FILTERS: &[&str] = &["safe", "json", "yaml", "caddy", "systemd", "env"];

/// Translates a template source for tera.
pub(crate) fn translate(source: &str, format: TemplateFormat) -> String {
    let segments = trim_block_lines(legacy(scan(source)));
    match format {
        TemplateFormat::Json => Json::default().run(&segments),
        TemplateFormat::Yaml => Yaml::default().run(&segments),
        TemplateFormat::Caddyfile => Caddy::default().run(&segments),
        TemplateFormat::Env => Env::default().run(&segments),
        TemplateFormat::Systemd => wrap_all(&segments, "escape_systemd_word"),
        TemplateFormat::Text => segments.iter().map(Seg::text).collect(),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Seg {
    /// Literal text.
    Text(String),
    /// `{{ expr }}`: the expression, its whitespace-control dashes and its 1-based line.
    Expr { expr: String, trim_left: bool, trim_right: bool, line: usize },
    /// A block tag, a comment or a raw block, copied as is.
    Tag(String),
}

impl Seg {
    fn text(&self) -> String {
        match self {
            Seg::Text(t) | Seg::Tag(t) => t.clone(),
            Seg::Expr { expr, trim_left, trim_right, .. } => {
                format!("{{{{{} {expr} {}}}}}", if *trim_left { "-" } else { "" }, if *trim_right { "-" } else { "" })
            }
        }
    }
}

/// Splits a source into segments. An unclosed tag stays text: tera reports it.
fn scan(source: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    let mut rest = source;
    let mut line = 1;
    while let Some(start) = find_open(rest) {
        let (text, tail) = rest.split_at(start);
        if !text.is_empty() {
            out.push(Seg::Text(text.to_owned()));
        }
        line += text.matches('\n').count();
        let Some((seg, len)) = read_tag(tail, line) else {
            out.push(Seg::Text(tail.to_owned()));
            return out;
        };
        line += tail[..len].matches('\n').count();
        out.push(seg);
        rest = &tail[len..];
    }
    if !rest.is_empty() {
        out.push(Seg::Text(rest.to_owned()));
    }
    out
}

fn find_open(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    (0..bytes.len().saturating_sub(1)).find(|&i| bytes[i] == b'{' && matches!(bytes[i + 1], b'{' | b'%' | b'#'))
}

/// Reads the tag at the start of `text`: the segment and its length.
fn read_tag(text: &str, line: usize) -> Option<(Seg, usize)> {
    if let Some(body) = text.strip_prefix("{#") {
        let end = body.find("#}")?;
        return Some((Seg::Tag(text[..end + 4].to_owned()), end + 4));
    }
    if let Some(body) = text.strip_prefix("{{{") {
        // Mustache's unescaped variable: escaped like any other here.
        let end = body.find("}}}")?;
        let expr = body[..end].trim().to_owned();
        return Some((Seg::Expr { expr, trim_left: false, trim_right: false, line }, end + 6));
    }
    let close = if text.starts_with("{{") { "}}" } else { "%}" };
    let end = 2 + find_close(&text[2..], close)?;
    let len = end + 2;
    if close == "%}" {
        let inner = text[2..end].trim_matches(|c: char| c == '-' || c.is_whitespace());
        if inner == "raw" {
            // Raw blocks are opaque up to their end tag.
            let after = &text[len..];
            let mut pos = 0;
            while let Some(i) = after[pos..].find("{%") {
                let at = pos + i;
                let tag_end = at + 2 + find_close(&after[at + 2..], "%}")?;
                if after[at + 2..tag_end].trim_matches(|c: char| c == '-' || c.is_whitespace()) == "endraw" {
                    let total = len + tag_end + 2;
                    return Some((Seg::Tag(text[..total].to_owned()), total));
                }
                pos = tag_end + 2;
            }
            return None;
        }
        return Some((Seg::Tag(text[..len].to_owned()), len));
    }
    let mut inner = &text[2..end];
    let trim_left = inner.starts_with('-');
    if trim_left {
        inner = &inner[1..];
    }
    let trim_right = inner.ends_with('-');
    if trim_right {
        inner = &inner[..inner.len() - 1];
    }
    Some((Seg::Expr { expr: inner.trim().to_owned(), trim_left, trim_right, line }, len))
}

/// Position of `close` in a tag body, skipping string literals.
fn find_close(body: &str, close: &str) -> Option<usize> {
    let bytes = body.as_bytes();
    let mut quote: Option<u8> = None;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if matches!(b, b'"' | b'\'' | b'`') => quote = Some(b),
            None if body[i..].starts_with(close) => return Some(i),
            None => {}
        }
        i += 1;
    }
    None
}

/// Pass 1: mustache blocks to tera tags, keeping each segment's newlines.
fn legacy(segments: Vec<Seg>) -> Vec<Seg> {
    segments
        .into_iter()
        .map(|seg| {
            let Seg::Expr { expr, .. } = &seg else { return seg };
            let newlines = "\n".repeat(expr.matches('\n').count());
            let words: Vec<&str> = expr.split_whitespace().collect();
            let tag = |body: String| Seg::Tag(format!("{{% {body} {newlines}%}}"));
            match words.as_slice() {
                ["else"] => tag("else".to_owned()),
                ["#if", cond @ ..] if !cond.is_empty() => tag(format!("if {}", cond.join(" "))),
                ["#unless", cond @ ..] if !cond.is_empty() => tag(format!("if not ({})", cond.join(" "))),
                [w] if w.starts_with('/') && w.len() > 1 => tag("endif".to_owned()),
                [w] if (w.starts_with('#') || w.starts_with('^')) && is_path(&w[1..]) => {
                    let not = if w.starts_with('^') { "not " } else { "" };
                    tag(format!("if {not}{}", &w[1..]))
                }
                _ if expr.starts_with('!') => Seg::Tag(format!("{{# legacy comment {newlines}#}}")),
                _ => seg,
            }
        })
        .collect()
}

fn is_path(s: &str) -> bool {
    !s.is_empty() && s.split('.').all(crate::variables::is_var_name)
}

/// Pass 2: lines holding only block tags (and blanks) produce no output line.
fn trim_block_lines(segments: Vec<Seg>) -> Vec<Seg> {
    // Split text so that a newline only ever ends a text segment.
    let mut flat = Vec::new();
    for seg in segments {
        match seg {
            Seg::Text(t) => {
                for piece in t.split_inclusive('\n') {
                    flat.push(Seg::Text(piece.to_owned()));
                }
            }
            other => flat.push(other),
        }
    }
    let mut out = Vec::with_capacity(flat.len());
    let mut line = Vec::new();
    for seg in flat {
        let ends_line = matches!(&seg, Seg::Text(t) if t.ends_with('\n'));
        line.push(seg);
        if ends_line {
            flush_line(&mut out, std::mem::take(&mut line));
        }
    }
    flush_line(&mut out, line);
    out
}

fn flush_line(out: &mut Vec<Seg>, line: Vec<Seg>) {
    let is_block_tag =
        |s: &Seg| matches!(s, Seg::Tag(t) if !t.contains('\n') && !t.contains("{% raw") && !t.contains("{%- raw"));
    let blank = |s: &Seg| matches!(s, Seg::Text(t) if t.trim().is_empty());
    let standalone =
        line.iter().any(is_block_tag) && line.iter().all(|s| is_block_tag(s) || blank(s)) && !line.is_empty();
    if !standalone {
        out.extend(line);
        return;
    }
    let newline = matches!(line.last(), Some(Seg::Text(t)) if t.ends_with('\n'));
    let mut tags: Vec<String> =
        line.into_iter().filter_map(|s| if let Seg::Tag(t) = s { Some(t) } else { None }).collect();
    if newline && let Some(last) = tags.last_mut() {
        // `{% endif %}` → `{% endif \n%}`: the newline is consumed as tag whitespace.
        let at = last.len() - 2;
        last.insert(at, '\n');
    }
    out.extend(tags.into_iter().map(Seg::Tag));
}

/// Whether an expression already ends with an escaping (or `safe`) filter.
fn explicitly_filtered(expr: &str) -> bool {
    let Some((_, last)) = expr.rsplit_once('|') else { return false };
    let name = last.trim().split(|c: char| c == '(' || c.is_whitespace()).next().unwrap_or("");
    EXPLICIT_FILTERS.contains(&name)
}

/// `{{ expr }}` wrapped in the escaping filter section for its context.
fn wrapped(seg: &Seg, filter: &str) -> String {
    let Seg::Expr { expr, trim_left, trim_right, line } = seg else { return seg.text() };
    if explicitly_filtered(expr) {
        return seg.text();
    }
    let l = if *trim_left { "-" } else { "" };
    let r = if *trim_right { "-" } else { "" };
    format!("{{%{l} filter {filter}(line={line}) %}}{{{{ {expr} }}}}{{% endfilter {r}%}}")
}

fn wrap_all(segments: &[Seg], filter: &str) -> String {
    segments.iter().map(|s| if matches!(s, Seg::Expr { .. }) { wrapped(s, filter) } else { s.text() }).collect()
}

/// The output being built: a filter section can be opened where a token began, after the fact.
#[derive(Default)]
struct Out {
    pieces: Vec<(bool, String)>,
}

impl Out {
    /// Appends template text (true) or generated tera (false).
    fn push(&mut self, literal: bool, s: &str) {
        match self.pieces.last_mut() {
            Some((l, last)) if *l == literal => last.push_str(s),
            _ => self.pieces.push((literal, s.to_owned())),
        }
    }
    /// Starts a new piece so that a later re-quote can begin here; returns its index.
    fn mark(&mut self) -> usize {
        self.pieces.push((true, String::new()));
        self.pieces.len() - 1
    }
    /// Opens a filter section at piece `from`, so the token from there on is escaped as a whole.
    fn open_section_at(&mut self, from: usize, open: String) {
        self.pieces.insert(from, (false, open));
    }
    fn finish(self) -> String {
        self.pieces.into_iter().map(|(_, s)| s).collect()
    }
}

/// The opening tag of a filter section escaping a whole token or scalar.
fn section_open(filter: &str, seg: &Seg) -> String {
    let line = if let Seg::Expr { line, .. } = seg { *line } else { 0 };
    format!("{{% filter {filter}(line={line}) %}}")
}

const SECTION_CLOSE: &str = "{% endfilter %}";

/// Where a block tag met inside a token-wide section goes.
#[derive(Debug, PartialEq, Eq)]
enum AtTag {
    /// Inside the section (its block is nested in it, or it is not a block tag).
    Inside,
    /// The section closes before the tag: the tag belongs to a block opened outside it,
    /// or it opens a block right where the token ends.
    CloseBefore,
}

/// Keeps tera's blocks and a section properly nested; `depth` counts blocks opened inside the section.
fn section_tag(depth: &mut usize, tag: &str, token_ends_after: bool) -> AtTag {
    let word =
        tag.strip_prefix("{%").map(|t| t.trim_start_matches('-').split_whitespace().next().unwrap_or("")).unwrap_or("");
    match word {
        "if" | "for" | "filter" | "macro" | "block" if *depth == 0 && token_ends_after => AtTag::CloseBefore,
        "if" | "for" | "filter" | "macro" | "block" => {
            *depth += 1;
            AtTag::Inside
        }
        "elif" | "else" | "endif" | "endfor" | "endfilter" | "endmacro" | "endblock" if *depth == 0 => {
            AtTag::CloseBefore
        }
        "endif" | "endfor" | "endfilter" | "endmacro" | "endblock" => {
            *depth -= 1;
            AtTag::Inside
        }
        _ => AtTag::Inside,
    }
}

#[derive(Default)]
struct Json {
    in_string: bool,
    escaped: bool,
}

impl Json {
    fn run(mut self, segments: &[Seg]) -> String {
        let mut out = String::new();
        for seg in segments {
            match seg {
                Seg::Text(t) => {
                    for c in t.chars() {
                        if self.escaped {
                            self.escaped = false;
                        } else if self.in_string && c == '\\' {
                            self.escaped = true;
                        } else if c == '"' {
                            self.in_string = !self.in_string;
                        }
                    }
                    out.push_str(t);
                }
                Seg::Expr { .. } => out
                    .push_str(&wrapped(seg, if self.in_string { "escape_json_content" } else { "escape_json_value" })),
                Seg::Tag(t) => out.push_str(t),
            }
        }
        out
    }
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum YamlState {
    /// Outside quotes; `start` is where the current plain scalar began (None: between scalars).
    #[default]
    Plain,
    Double,
    Single,
    Comment,
    /// A plain scalar holding a placeholder, inside a filter section that escapes it whole.
    Section,
}

#[derive(Default)]
struct Yaml {
    state: YamlState,
    /// Piece where the current plain scalar starts; None between scalars.
    start: Option<usize>,
    /// Nesting of `[` / `{` flow collections.
    flow: usize,
    prev: Option<char>,
    escaped: bool,
    /// Whitespace held back inside a section: a plain scalar does not end with it.
    pending_ws: String,
    /// Blocks opened inside the current section.
    depth: usize,
}

impl Yaml {
    fn run(mut self, segments: &[Seg]) -> String {
        let mut out = Out::default();
        for (i, seg) in segments.iter().enumerate() {
            match seg {
                Seg::Text(t) => {
                    let chars: Vec<char> = t.chars().collect();
                    for (j, &c) in chars.iter().enumerate() {
                        let next = chars.get(j + 1).copied().or_else(|| following_chars(segments, i).next());
                        self.text_char(&mut out, c, next);
                    }
                }
                Seg::Tag(t) => {
                    if t.contains('\n') {
                        self.close_section(&mut out);
                        self.newline();
                    } else if self.state == YamlState::Section
                        && section_tag(&mut self.depth, t, yaml_scalar_ends_after(segments, i, self.flow))
                            == AtTag::CloseBefore
                    {
                        self.close_section(&mut out);
                        out.push(false, t);
                        self.start = Some(out.mark());
                        continue;
                    }
                    out.push(false, t);
                }
                Seg::Expr { .. } => {
                    let ends = yaml_scalar_ends_after(segments, i, self.flow);
                    self.expr(&mut out, seg, ends)
                }
            }
        }
        self.close_section(&mut out);
        out.finish()
    }

    fn newline(&mut self) {
        self.state = YamlState::Plain;
        self.start = None;
        self.prev = Some('\n');
    }

    fn close_section(&mut self, out: &mut Out) {
        if self.state == YamlState::Section {
            self.depth = 0;
            out.push(false, SECTION_CLOSE);
            out.push(true, &std::mem::take(&mut self.pending_ws));
            self.state = YamlState::Plain;
            self.start = None;
        }
    }

    fn text_char(&mut self, out: &mut Out, c: char, next: Option<char>) {
        let ws_or_end = |n: Option<char>| n.is_none_or(char::is_whitespace);
        match self.state {
            YamlState::Comment => {
                out.push(true, &c.to_string());
                if c == '\n' {
                    self.newline();
                }
                return;
            }
            YamlState::Double => {
                if self.escaped {
                    self.escaped = false;
                } else if c == '\\' {
                    self.escaped = true;
                } else if c == '"' {
                    self.state = YamlState::Plain;
                }
                out.push(true, &c.to_string());
                self.prev = Some(c);
                return;
            }
            YamlState::Single => {
                // `''` inside is a quote: the second one reopens the scalar.
                if c == '\'' {
                    self.state = YamlState::Plain;
                }
                out.push(true, &c.to_string());
                self.prev = Some(c);
                return;
            }
            YamlState::Section => {
                let ends = c == '\n'
                    || (c == '#' && self.prev.is_some_and(char::is_whitespace))
                    || (c == ':' && ws_or_end(next))
                    || (self.flow > 0 && matches!(c, ',' | ']' | '}'));
                if !ends {
                    if c == ' ' || c == '\t' {
                        self.pending_ws.push(c);
                    } else {
                        let ws = std::mem::take(&mut self.pending_ws);
                        out.push(true, &ws);
                        out.push(true, &c.to_string());
                    }
                    self.prev = Some(c);
                    return;
                }
                self.close_section(out);
            }
            YamlState::Plain => {}
        }
        // Plain context.
        let at_boundary = self.start.is_none();
        match c {
            '\n' => {
                out.push(true, "\n");
                self.newline();
                return;
            }
            '#' if self.prev.is_none_or(char::is_whitespace) => self.state = YamlState::Comment,
            ':' if ws_or_end(next) => self.start = None,
            ',' if self.flow > 0 => self.start = None,
            '[' | '{' if at_boundary => self.flow += 1,
            ']' | '}' if self.flow > 0 => {
                self.flow -= 1;
                self.start = None;
            }
            '"' if at_boundary => self.state = YamlState::Double,
            '\'' if at_boundary => self.state = YamlState::Single,
            '-' | '?' if at_boundary && ws_or_end(next) => {}
            ' ' | '\t' => {}
            _ if at_boundary => {
                self.start = Some(out.mark());
            }
            _ => {}
        }
        out.push(true, &c.to_string());
        self.prev = Some(c);
    }

    fn expr(&mut self, out: &mut Out, seg: &Seg, ends_scalar: bool) {
        if explicitly_filtered_seg(seg) {
            out.push(false, &seg.text());
            self.after_value();
            return;
        }
        let filter = match self.state {
            YamlState::Double | YamlState::Comment => "escape_yaml_dq_content",
            YamlState::Single => "escape_yaml_sq_content",
            YamlState::Section => {
                // Already inside the scalar's section: the value goes in raw and is escaped with the rest.
                out.push(false, &seg.text());
                self.prev = Some('x');
                return;
            }
            YamlState::Plain => {
                if self.start.is_none() && ends_scalar {
                    out.push(false, &wrapped(seg, "escape_yaml_value"));
                    self.after_value();
                    return;
                }
                // Part of a plain scalar: the whole scalar is escaped as one value.
                let open = section_open("escape_yaml_value", seg);
                match self.start {
                    Some(from) => out.open_section_at(from, open),
                    None => out.push(false, &open),
                }
                out.push(false, &seg.text());
                self.state = YamlState::Section;
                self.prev = Some('x');
                return;
            }
        };
        out.push(false, &wrapped(seg, filter));
        self.prev = Some('x');
    }

    fn after_value(&mut self) {
        // A whole scalar was written: what follows is outside it.
        self.start = None;
        self.prev = Some('x');
    }
}

fn explicitly_filtered_seg(seg: &Seg) -> bool {
    matches!(seg, Seg::Expr { expr, .. } if explicitly_filtered(expr))
}

/// The literal characters after segment `i`: block tags are skipped, a
/// placeholder reads as `x` and a tag holding a line break as `\n`.
fn following_chars(segments: &[Seg], i: usize) -> impl Iterator<Item = char> + '_ {
    segments[i + 1..].iter().flat_map(|seg| -> Box<dyn Iterator<Item = char> + '_> {
        match seg {
            Seg::Text(t) => Box::new(t.chars()),
            Seg::Expr { .. } => Box::new(std::iter::once('x')),
            Seg::Tag(t) if t.contains('\n') => Box::new(std::iter::once('\n')),
            Seg::Tag(_) => Box::new(std::iter::empty()),
        }
    })
}

/// Whether a YAML plain scalar ends right after segment `i` (so a placeholder there is a whole scalar).
fn yaml_scalar_ends_after(segments: &[Seg], i: usize, flow: usize) -> bool {
    let mut chars = following_chars(segments, i).peekable();
    let mut saw_space = false;
    while let Some(&c) = chars.peek() {
        if c == ' ' || c == '\t' {
            saw_space = true;
            chars.next();
        } else {
            break;
        }
    }
    match chars.next() {
        None | Some('\n' | '\r') => true,
        Some('#') => saw_space,
        Some(':') => chars.next().is_none_or(char::is_whitespace),
        Some(',' | ']' | '}') => flow > 0,
        Some(_) => false,
    }
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum CaddyState {
    #[default]
    Between,
    Bare,
    Double,
    Back,
    Comment,
    /// A bare token holding a placeholder, inside a filter section that escapes it whole.
    Section,
}

#[derive(Default)]
struct Caddy {
    state: CaddyState,
    /// Piece where the current bare token starts.
    start: usize,
    escaped: bool,
    /// Blocks opened inside the current section.
    depth: usize,
}

impl Caddy {
    fn run(mut self, segments: &[Seg]) -> String {
        let mut out = Out::default();
        for (i, seg) in segments.iter().enumerate() {
            match seg {
                Seg::Text(t) => {
                    for c in t.chars() {
                        self.text_char(&mut out, c);
                    }
                }
                Seg::Tag(t) => {
                    if t.contains('\n') {
                        self.line_break_in_tag(&mut out);
                    } else if self.state == CaddyState::Section {
                        let ends = following_chars(segments, i).next().is_none_or(char::is_whitespace);
                        if section_tag(&mut self.depth, t, ends) == AtTag::CloseBefore {
                            self.close_section(&mut out);
                            out.push(false, t);
                            self.start = out.mark();
                            self.state = CaddyState::Bare;
                            continue;
                        }
                    }
                    out.push(false, t);
                }
                Seg::Expr { .. } => self.expr(&mut out, seg, following_chars(segments, i).next()),
            }
        }
        self.close_section(&mut out);
        out.finish()
    }

    fn close_section(&mut self, out: &mut Out) {
        if self.state == CaddyState::Section {
            self.depth = 0;
            out.push(false, SECTION_CLOSE);
            self.state = CaddyState::Between;
        }
    }

    /// A line break hidden in a tag ends a bare token and a comment.
    fn line_break_in_tag(&mut self, out: &mut Out) {
        match self.state {
            CaddyState::Section => self.close_section(out),
            CaddyState::Bare | CaddyState::Comment => self.state = CaddyState::Between,
            _ => {}
        }
    }

    fn text_char(&mut self, out: &mut Out, c: char) {
        match self.state {
            CaddyState::Between => match c {
                '#' => self.state = CaddyState::Comment,
                '"' => self.state = CaddyState::Double,
                '`' => self.state = CaddyState::Back,
                c if c.is_whitespace() => {}
                _ => {
                    self.start = out.mark();
                    self.state = CaddyState::Bare;
                }
            },
            CaddyState::Bare => {
                if self.escaped {
                    self.escaped = false;
                } else if c == '\\' {
                    self.escaped = true;
                } else if c.is_whitespace() {
                    self.state = CaddyState::Between;
                }
            }
            CaddyState::Double => {
                if self.escaped {
                    self.escaped = false;
                } else if c == '\\' {
                    self.escaped = true;
                } else if c == '"' {
                    self.state = CaddyState::Between;
                }
            }
            CaddyState::Back => {
                if c == '`' {
                    self.state = CaddyState::Between;
                }
            }
            CaddyState::Comment => {
                if c == '\n' {
                    self.state = CaddyState::Between;
                }
            }
            CaddyState::Section => {
                if c.is_whitespace() {
                    self.close_section(out);
                }
            }
        }
        out.push(true, &c.to_string());
    }

    fn expr(&mut self, out: &mut Out, seg: &Seg, next: Option<char>) {
        if explicitly_filtered_seg(seg) {
            out.push(false, &seg.text());
            if self.state == CaddyState::Between {
                self.start = out.mark();
                self.state = CaddyState::Bare;
            }
            return;
        }
        let filter = match self.state {
            CaddyState::Double => "escape_caddy_dq_content",
            CaddyState::Back => "escape_caddy_bq_content",
            CaddyState::Comment => "escape_caddy_comment",
            CaddyState::Section => {
                // Already inside the token's section: the value goes in raw and is escaped with the rest.
                out.push(false, &seg.text());
                return;
            }
            CaddyState::Between if next.is_none_or(char::is_whitespace) => "escape_caddy_token",
            CaddyState::Between | CaddyState::Bare => {
                // Part of a bare token: the whole token is escaped as one value.
                let open = section_open("escape_caddy_token", seg);
                if self.state == CaddyState::Bare {
                    out.open_section_at(self.start, open);
                } else {
                    out.push(false, &open);
                }
                out.push(false, &seg.text());
                self.state = CaddyState::Section;
                return;
            }
        };
        out.push(false, &wrapped(seg, filter));
    }
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum EnvState {
    #[default]
    Bare,
    Single,
    Double,
    Comment,
}

#[derive(Default)]
struct Env {
    state: EnvState,
    escaped: bool,
    line_start: bool,
}

impl Env {
    fn run(mut self, segments: &[Seg]) -> String {
        let mut out = String::new();
        self.line_start = true;
        for seg in segments {
            match seg {
                Seg::Text(t) => {
                    for c in t.chars() {
                        self.text_char(c);
                    }
                    out.push_str(t);
                }
                Seg::Tag(t) => out.push_str(t),
                Seg::Expr { .. } => {
                    let filter = match self.state {
                        EnvState::Bare => "escape_env_word",
                        EnvState::Single => "escape_env_sq_content",
                        EnvState::Double => "escape_env_dq_content",
                        EnvState::Comment => "escape_line",
                    };
                    out.push_str(&wrapped(seg, filter));
                    self.line_start = false;
                }
            }
        }
        out
    }

    fn text_char(&mut self, c: char) {
        match self.state {
            EnvState::Bare => match c {
                '#' if self.line_start => self.state = EnvState::Comment,
                '\'' => self.state = EnvState::Single,
                '"' => self.state = EnvState::Double,
                _ => {}
            },
            EnvState::Single => {
                if c == '\'' {
                    self.state = EnvState::Bare;
                }
            }
            EnvState::Double => {
                if self.escaped {
                    self.escaped = false;
                } else if c == '\\' {
                    self.escaped = true;
                } else if c == '"' {
                    self.state = EnvState::Bare;
                }
            }
            EnvState::Comment => {
                if c == '\n' {
                    self.state = EnvState::Bare;
                }
            }
        }
        self.line_start = c == '\n' || (self.line_start && c.is_whitespace());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(format: TemplateFormat, input: &str, expected: &str) {
        let got = translate(input, format);
        assert_eq!(got, expected, "input {input:?}");
        assert_eq!(got.matches('\n').count(), input.matches('\n').count(), "line count changed for {input:?}");
    }

    const J: TemplateFormat = TemplateFormat::Json;
    const Y: TemplateFormat = TemplateFormat::Yaml;
    const C: TemplateFormat = TemplateFormat::Caddyfile;
    const T: TemplateFormat = TemplateFormat::Text;

    #[test]
    fn legacy_blocks_become_tera() {
        check(T, "a{{#if X}}b{{else}}c{{/if}}", "a{% if X %}b{% else %}c{% endif %}");
        check(T, "{{#unless X}}b{{/unless}}", "{% if not (X) %}b{% endif %}");
        check(T, "{{^X}}b{{/X}}{{#Y}}c{{/Y}}", "{% if not X %}b{% endif %}{% if Y %}c{% endif %}");
        check(T, "{{! note }}x", "{# legacy comment #}x");
        check(T, "{{VAR}} {{{RAW}}}", "{{ VAR }} {{ RAW }}");
    }

    #[test]
    fn block_lines_leave_no_line() {
        check(T, "a\n  {{#if X}}\n  b\n  {{/if}}\nc\n", "a\n{% if X \n%}  b\n{% endif \n%}c\n");
        check(T, "{% for s in l %} {# c #}\nx\n", "{% for s in l %}{# c \n#}x\n");
        check(T, "a {% if x %}\n", "a {% if x %}\n");
    }

    #[test]
    fn json_contexts() {
        check(
            J,
            r#"{"a": {{ A }}, "b": "x{{B}}"}"#,
            r#"{"a": {% filter escape_json_value(line=1) %}{{ A }}{% endfilter %}, "b": "x{% filter escape_json_content(line=1) %}{{ B }}{% endfilter %}"}"#,
        );
        check(
            J,
            r#"{"a": "\"{{ A }}"}"#,
            r#"{"a": "\"{% filter escape_json_content(line=1) %}{{ A }}{% endfilter %}"}"#,
        );
        check(J, "{{ A | json }}\n{{ B | safe }}", "{{ A | json }}\n{{ B | safe }}");
    }

    #[test]
    fn yaml_contexts() {
        let f = |name: &str, expr: &str, line: usize| {
            format!("{{% filter {name}(line={line}) %}}{{{{ {expr} }}}}{{% endfilter %}}")
        };
        check(Y, "a: {{ A }}\n", &format!("a: {}\n", f("escape_yaml_value", "A", 1)));
        check(
            Y,
            "- {{ A }} # c {{ B }}\n",
            &format!("- {} # c {}\n", f("escape_yaml_value", "A", 1), f("escape_yaml_dq_content", "B", 1)),
        );
        check(Y, "{{ K }}: v\n", &format!("{}: v\n", f("escape_yaml_value", "K", 1)));
        check(
            Y,
            "a: \"x{{ A }}\"\nb: 'y{{ B }}'\n",
            &format!(
                "a: \"x{}\"\nb: 'y{}'\n",
                f("escape_yaml_dq_content", "A", 1),
                f("escape_yaml_sq_content", "B", 2)
            ),
        );
        // A placeholder inside a plain scalar: the whole scalar is escaped as one value.
        let s = "{% filter escape_yaml_value(line=1) %}";
        let e = "{% endfilter %}";
        check(Y, "image: re\"po:{{ TAG }}-x  # c\n", &format!("image: {s}re\"po:{{{{ TAG }}}}-x{e}  # c\n"));
        check(Y, "a: {{ H }}:{{ P }}\n", &format!("a: {s}{{{{ H }}}}:{{{{ P }}}}{e}\n"));
        let a = f("escape_yaml_value", "A", 1);
        check(Y, "a: [{{ A }}, x{{ B }}]\n", &format!("a: [{a}, {s}x{{{{ B }}}}{e}]\n"));
    }

    #[test]
    fn caddy_contexts() {
        let f = |name: &str, expr: &str| format!("{{% filter {name}(line=1) %}}{{{{ {expr} }}}}{{% endfilter %}}");
        check(C, "{{ SITE }} {", &format!("{} {{", f("escape_caddy_token", "SITE")));
        let s = "{% filter escape_caddy_token(line=1) %}";
        check(C, "to http://{{ H }}:80 x", &format!("to {s}http://{{{{ H }}}}:80{{% endfilter %}} x"));
        check(C, "to {{ H }}:80", &format!("to {s}{{{{ H }}}}:80{{% endfilter %}}"));
        // Sections and tera blocks stay nested.
        check(
            C,
            "to a:{{ A }}{% if N %} b:{{ B }}{% endif %}\n",
            &format!(
                "to {s}a:{{{{ A }}}}{{% endfilter %}}{{% if N %}} {s}b:{{{{ B }}}}{{% endfilter %}}{{% endif %}}\n"
            ),
        );
        check(
            C,
            "x {{ A }}{% if R %}:ro{% endif %} y\n",
            &format!("x {s}{{{{ A }}}}{{% if R %}}:ro{{% endif %}}{{% endfilter %}} y\n"),
        );
        check(
            C,
            "respond \"a {{ B }}\" `{{ C }}` # {{ D }}",
            &format!(
                "respond \"a {}\" `{}` # {}",
                f("escape_caddy_dq_content", "B"),
                f("escape_caddy_bq_content", "C"),
                f("escape_caddy_comment", "D")
            ),
        );
    }
}
