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
//!    turns that whole token into a quoted one. The section also tells the
//!    escaper the placeholder's line and variable (for messages) and, in a
//!    Caddyfile, the token's position (a site address, a line's first token,
//!    a directive's first argument): Caddy reads some words as syntax there.
//!    In a systemd unit, the first word of an `Exec*=` line is a command,
//!    which must not start with one of systemd's prefixes.
//!
//! A placeholder whose last filter is `int`, `float` or `bool` is typed: its
//! value is converted (or refused) and written as that type's literal, the
//! only way a value becomes a JSON or YAML number or boolean.
//!
//! No pass adds or removes a line, so tera's line numbers are the template's.

use edge_core::TemplateFormat;

use crate::escape::{CaddyPosition, Typed};

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
        TemplateFormat::Systemd => Systemd::default().run(&segments),
        TemplateFormat::Wireguard => wireguard(&segments),
        TemplateFormat::Text => segments.iter().map(raw).collect(),
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
            // Bytes, not `body[i..]`: `i` may be inside a multi-byte character.
            None if bytes[i..].starts_with(close.as_bytes()) => return Some(i),
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

/// The variable an expression outputs (`m.upstream` in `m.upstream | default(value="x")`), for messages.
fn subject(expr: &str) -> Option<&str> {
    let e = expr.trim_start();
    let end = e.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.')).unwrap_or(e.len());
    let name = e[..end].trim_end_matches('.');
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_').then_some(name)
}

/// An expression whose last filter asks for a type (`PORT | int`): what to
/// convert, and the type. Alone, `| int` is taken off and the value itself
/// is converted (tera's own `int` turns a non-number into 0); with arguments
/// (`| int(default=443)`) tera's filter runs and its result is checked.
fn typed(expr: &str) -> Option<(&str, Typed)> {
    let pipe = last_pipe(expr)?;
    let filter = expr[pipe + 1..].trim();
    let name_end = filter.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(filter.len());
    let t = Typed::from_filter(&filter[..name_end])?;
    let args = filter[name_end..].trim_start();
    if args.is_empty() {
        Some((expr[..pipe].trim(), t))
    } else if args.starts_with('(') && args.ends_with(')') {
        Some((expr.trim(), t))
    } else {
        None
    }
}

/// Position of an expression's last `|` outside string literals and brackets.
fn last_pipe(expr: &str) -> Option<usize> {
    let mut quote = None;
    let mut depth = 0i32;
    let mut last = None;
    for (i, b) in expr.bytes().enumerate() {
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None => match b {
                b'"' | b'\'' | b'`' => quote = Some(b),
                b'(' | b'[' => depth += 1,
                b')' | b']' => depth -= 1,
                b'|' if depth == 0 => last = Some(i),
                _ => {}
            },
        }
    }
    last
}

/// A filter section's opening tag: the escaper, the placeholder's line, the
/// variables that end up in it (for messages) and the escaper's other arguments.
struct Section {
    filter: &'static str,
    line: usize,
    names: Vec<String>,
    args: String,
}

impl Section {
    fn new(filter: &'static str, seg: &Seg, args: String) -> Self {
        let mut section = Self { filter, line: 0, names: Vec::new(), args };
        if let Seg::Expr { line, .. } = seg {
            section.line = *line;
        }
        section.add(seg);
        section
    }

    /// Names one more placeholder's variable.
    fn add(&mut self, seg: &Seg) {
        if let Seg::Expr { expr, .. } = seg
            && let Some(name) = subject(typed(expr).map_or(expr.as_str(), |(inner, _)| inner))
            && !self.names.iter().any(|n| n == name)
        {
            self.names.push(name.to_owned());
        }
    }

    fn open(&self, trim_left: bool) -> String {
        let l = if trim_left { "-" } else { "" };
        let name = if self.names.is_empty() { String::new() } else { format!(", name=\"{}\"", self.names.join(", ")) };
        format!("{{%{l} filter {}(line={}{name}{}) %}}", self.filter, self.line, self.args)
    }
}

/// `{{ expr }}` in the section of the escaper for its context (`args`: the
/// escaper's arguments besides the line and the name, each after `, `); a
/// typed placeholder (`| int`) gets its conversion instead, whose literal
/// is safe in every context.
fn wrapped(seg: &Seg, filter: &'static str, args: &str) -> String {
    let Seg::Expr { expr, trim_left, trim_right, .. } = seg else { return seg.text() };
    if let Some(typed) = typed_section(seg) {
        return typed;
    }
    if explicitly_filtered(expr) {
        return seg.text();
    }
    let r = if *trim_right { "-" } else { "" };
    let open = Section::new(filter, seg, args.to_owned()).open(*trim_left);
    format!("{open}{{{{ {expr} }}}}{{% endfilter {r}%}}")
}

/// A placeholder inside a section that escapes its whole token or scalar:
/// the expression as it is, or its typed conversion.
fn raw(seg: &Seg) -> String {
    typed_section(seg).unwrap_or_else(|| seg.text())
}

/// `{{ PORT | int }}` → the `as_int` section converting the value to the literal of its type.
fn typed_section(seg: &Seg) -> Option<String> {
    let Seg::Expr { expr, trim_left, trim_right, .. } = seg else { return None };
    let (inner, t) = typed(expr)?;
    let r = if *trim_right { "-" } else { "" };
    let filter = match t {
        Typed::Int => "as_int",
        Typed::Float => "as_float",
        Typed::Bool => "as_bool",
    };
    let open = Section::new(filter, seg, String::new()).open(*trim_left);
    Some(format!("{open}{{{{ {inner} }}}}{{% endfilter {r}%}}"))
}

/// A piece of the output being built.
enum Piece {
    /// Template text (`literal`) or generated tera.
    Text { literal: bool, text: String },
    /// The opening tag of section `n` of [`Out::sections`], written at the end.
    Open(usize),
}

/// The output being built: a filter section can be opened where a token
/// began, after the fact, and name the variables met until it closes.
#[derive(Default)]
struct Out {
    pieces: Vec<Piece>,
    sections: Vec<Section>,
}

impl Out {
    /// Appends template text (true) or generated tera (false).
    fn push(&mut self, literal: bool, s: &str) {
        match self.pieces.last_mut() {
            Some(Piece::Text { literal: l, text }) if *l == literal => text.push_str(s),
            _ => self.pieces.push(Piece::Text { literal, text: s.to_owned() }),
        }
    }
    /// Starts a new piece so that a later re-quote can begin here; returns its index.
    fn mark(&mut self) -> usize {
        self.pieces.push(Piece::Text { literal: true, text: String::new() });
        self.pieces.len() - 1
    }
    /// Opens a section at piece `from` (or here), so the token from there on
    /// is escaped as a whole; returns the section's number.
    fn open_section(&mut self, from: Option<usize>, section: Section) -> usize {
        let n = self.sections.len();
        self.sections.push(section);
        match from {
            Some(from) => self.pieces.insert(from, Piece::Open(n)),
            None => self.pieces.push(Piece::Open(n)),
        }
        n
    }
    fn section(&mut self, n: usize) -> &mut Section {
        &mut self.sections[n]
    }
    fn finish(self) -> String {
        let sections = self.sections;
        self.pieces
            .into_iter()
            .map(|p| match p {
                Piece::Text { text, .. } => text,
                Piece::Open(n) => sections[n].open(false),
            })
            .collect()
    }
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
                Seg::Expr { .. } => out.push_str(&wrapped(
                    seg,
                    if self.in_string { "escape_json_content" } else { "escape_json_value" },
                    "",
                )),
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
    /// The current section's number in the output.
    section: Option<usize>,
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
                if let Some(n) = self.section {
                    out.section(n).add(seg);
                }
                out.push(false, &raw(seg));
                self.prev = Some('x');
                return;
            }
            YamlState::Plain => {
                if self.start.is_none() && ends_scalar {
                    out.push(false, &wrapped(seg, "escape_yaml_value", ""));
                    self.after_value();
                    return;
                }
                // Part of a plain scalar: the whole scalar is escaped as one value.
                let section = Section::new("escape_yaml_value", seg, String::new());
                self.section = Some(out.open_section(self.start, section));
                out.push(false, &raw(seg));
                self.state = YamlState::Section;
                self.prev = Some('x');
                return;
            }
        };
        out.push(false, &wrapped(seg, filter, ""));
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

/// What a Caddyfile block holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    /// The global options block: options, no matchers.
    Global,
    /// A site block, a snippet, or a `route`/`handle` block in one: directives, with matchers.
    Directives,
    /// Any other block (a directive's subdirectives, a `map`, a matcher set).
    Other,
}

/// Directives whose block holds directives again.
const DIRECTIVE_BLOCKS: &[&str] = &["route", "handle", "handle_path", "handle_errors"];

/// Where the scan stands in the Caddyfile's structure: the open blocks and
/// the tokens of the current line, so each token gets its [`CaddyPosition`].
#[derive(Debug, Clone, Default)]
struct Shape {
    blocks: Vec<Block>,
    /// Tokens begun on the current line.
    tokens: usize,
    /// The line's first token, when the template wrote all of it.
    first: Option<String>,
    /// The line's last ended token, when the template wrote all of it.
    last: Option<String>,
    /// A token came already: a `{` at the top no longer opens the global options.
    started: bool,
    /// The site has no braces: top-level lines after its address are its directives.
    bare_site: bool,
}

impl Shape {
    /// The position of a token beginning now; counts it.
    fn begin(&mut self) -> CaddyPosition {
        let directive = |i| match i {
            0 => CaddyPosition::LineStart,
            1 => CaddyPosition::Matcher,
            _ => CaddyPosition::Argument,
        };
        let at = match self.blocks.last() {
            None if self.bare_site => directive(self.tokens),
            None if self.tokens > 0 && self.first.as_deref() == Some("import") => CaddyPosition::Argument,
            None => CaddyPosition::Site,
            Some(Block::Directives) => directive(self.tokens),
            Some(_) if self.tokens == 0 => CaddyPosition::LineStart,
            Some(_) => CaddyPosition::Argument,
        };
        self.tokens += 1;
        at
    }

    /// A token ended: `literal` is its text when the template wrote all of it.
    fn end(&mut self, literal: Option<&str>) {
        if self.tokens == 1 {
            self.first = literal.map(str::to_owned);
        }
        self.last = literal.map(str::to_owned);
        match literal {
            Some("{") => {
                let first = self.first.as_deref().unwrap_or("");
                let block = match self.blocks.last() {
                    None if !self.started && self.tokens == 1 => Block::Global,
                    None => Block::Directives,
                    Some(Block::Directives) if DIRECTIVE_BLOCKS.contains(&first) => Block::Directives,
                    Some(_) => Block::Other,
                };
                self.blocks.push(block);
            }
            Some("}") => {
                self.blocks.pop();
            }
            _ => {}
        }
        self.started = true;
    }

    fn line_end(&mut self) {
        // A top-level line that opens no block is a site without braces (or an import).
        if self.blocks.is_empty()
            && !self.bare_site
            && self.tokens > 0
            && !matches!(self.last.as_deref(), Some("{" | "}"))
            && self.first.as_deref().is_none_or(|f| f != "import" && !f.starts_with('('))
        {
            self.bare_site = true;
        }
        self.tokens = 0;
        self.first = None;
        self.last = None;
    }
}

#[derive(Default)]
struct Caddy {
    state: CaddyState,
    /// Piece where the current bare token starts.
    start: usize,
    escaped: bool,
    /// Blocks opened inside the current section.
    depth: usize,
    /// The current section's number in the output.
    section: Option<usize>,
    shape: Shape,
    /// The shape at each open `{% if %}`: each of its branches starts from it.
    branches: Vec<Shape>,
    /// The current token's position; None for the rest of a token split by a block tag.
    token_at: Option<CaddyPosition>,
    /// The current bare token's text, while the template wrote all of it.
    token_text: Option<String>,
    /// Nothing written yet inside the current quotes.
    quote_empty: bool,
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
                            self.token_at = None;
                            self.token_text = None;
                            continue;
                        }
                    }
                    self.branch(t);
                    out.push(false, t);
                }
                Seg::Expr { .. } => self.expr(&mut out, seg, following_chars(segments, i).next()),
            }
        }
        self.close_section(&mut out);
        out.finish()
    }

    /// Each branch of an `{% if %}` starts from the shape the `if` saw, when it stands between tokens.
    fn branch(&mut self, tag: &str) {
        let word = tag.strip_prefix("{%").map(|t| t.trim_start_matches('-').split_whitespace().next().unwrap_or(""));
        match word {
            Some("if") => self.branches.push(self.shape.clone()),
            Some("elif" | "else") if self.state == CaddyState::Between => {
                if let Some(saved) = self.branches.last() {
                    self.shape = saved.clone();
                }
            }
            Some("endif") => {
                self.branches.pop();
            }
            _ => {}
        }
    }

    fn begin_token(&mut self) -> CaddyPosition {
        let at = self.shape.begin();
        self.token_at = Some(at);
        at
    }

    fn end_token(&mut self) {
        if self.token_at.take().is_some() {
            let literal = self.token_text.take();
            self.shape.end(literal.as_deref());
        }
        self.token_text = None;
    }

    fn close_section(&mut self, out: &mut Out) {
        if self.state == CaddyState::Section {
            self.depth = 0;
            self.section = None;
            out.push(false, SECTION_CLOSE);
            self.state = CaddyState::Between;
            self.end_token();
        }
    }

    /// A line break hidden in a tag ends a bare token and a comment.
    fn line_break_in_tag(&mut self, out: &mut Out) {
        match self.state {
            CaddyState::Section => self.close_section(out),
            CaddyState::Bare => {
                self.state = CaddyState::Between;
                self.end_token();
            }
            CaddyState::Comment => self.state = CaddyState::Between,
            _ => {}
        }
        if self.state == CaddyState::Between {
            self.shape.line_end();
        }
    }

    fn text_char(&mut self, out: &mut Out, c: char) {
        match self.state {
            CaddyState::Between => match c {
                '#' => self.state = CaddyState::Comment,
                '"' | '`' => {
                    self.state = if c == '"' { CaddyState::Double } else { CaddyState::Back };
                    self.begin_token();
                    self.quote_empty = true;
                }
                '\n' => self.shape.line_end(),
                c if c.is_whitespace() => {}
                _ => {
                    self.start = out.mark();
                    self.state = CaddyState::Bare;
                    self.begin_token();
                    self.token_text = Some(c.to_string());
                }
            },
            CaddyState::Bare => {
                if self.escaped {
                    self.escaped = false;
                } else if c == '\\' {
                    self.escaped = true;
                } else if c.is_whitespace() {
                    self.state = CaddyState::Between;
                    self.end_token();
                    if c == '\n' {
                        self.shape.line_end();
                    }
                }
                if let Some(text) = &mut self.token_text
                    && self.state == CaddyState::Bare
                {
                    text.push(c);
                }
            }
            CaddyState::Double | CaddyState::Back => {
                let close = if self.state == CaddyState::Double { '"' } else { '`' };
                if self.escaped {
                    self.escaped = false;
                } else if c == '\\' && close == '"' {
                    self.escaped = true;
                } else if c == close {
                    self.state = CaddyState::Between;
                    self.end_token();
                }
                self.quote_empty = false;
            }
            CaddyState::Comment => {
                if c == '\n' {
                    self.state = CaddyState::Between;
                    self.shape.line_end();
                }
            }
            CaddyState::Section => {
                if c.is_whitespace() {
                    self.close_section(out);
                    if c == '\n' {
                        self.shape.line_end();
                    }
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
                self.begin_token();
            }
            self.token_text = None;
            return;
        }
        let position = |at: Option<CaddyPosition>| match at {
            Some(at) if at != CaddyPosition::Argument => format!(", at=\"{}\"", at.name()),
            _ => String::new(),
        };
        let (filter, close) = match self.state {
            CaddyState::Double => ("escape_caddy_dq_content", '"'),
            CaddyState::Back => ("escape_caddy_bq_content", '`'),
            CaddyState::Comment => {
                out.push(false, &wrapped(seg, "escape_caddy_comment", ""));
                return;
            }
            CaddyState::Section => {
                // Already inside the token's section: the value goes in raw and is escaped with the rest.
                if let Some(n) = self.section {
                    out.section(n).add(seg);
                }
                out.push(false, &raw(seg));
                return;
            }
            CaddyState::Between if next.is_none_or(char::is_whitespace) => {
                let at = self.begin_token();
                out.push(false, &wrapped(seg, "escape_caddy_token", &format!("{}, start=true", position(Some(at)))));
                self.end_token();
                return;
            }
            CaddyState::Between | CaddyState::Bare => {
                // Part of a bare token: the whole token is escaped as one value.
                let from = if self.state == CaddyState::Bare {
                    Some(self.start)
                } else {
                    self.begin_token();
                    None
                };
                let args = format!("{}, start={}", position(self.token_at), from.is_none());
                self.section = Some(out.open_section(from, Section::new("escape_caddy_token", seg, args)));
                out.push(false, &raw(seg));
                self.state = CaddyState::Section;
                self.token_text = None;
                return;
            }
        };
        // Inside the template's quotes: the value is the token's start, maybe all of it.
        let start = self.quote_empty;
        let whole = start && next == Some(close);
        let args = format!("{}, start={start}, whole={whole}", position(self.token_at));
        out.push(false, &wrapped(seg, filter, &args));
        self.quote_empty = false;
    }
}

/// Systemd units: one word per placeholder, and the first word of an
/// `Exec*=` command line is checked for systemd's prefixes.
#[derive(Default)]
struct Systemd {
    /// The current line so far, a placeholder read as `x`.
    line: String,
}

/// Settings whose value is a command line.
const EXEC_KEYS: &[&str] =
    &["ExecStart", "ExecStartPre", "ExecStartPost", "ExecCondition", "ExecReload", "ExecStop", "ExecStopPost"];

impl Systemd {
    fn run(mut self, segments: &[Seg]) -> String {
        let mut out = String::new();
        for (i, seg) in segments.iter().enumerate() {
            match seg {
                Seg::Text(t) => {
                    for c in t.chars() {
                        if c == '\n' {
                            self.line.clear();
                        } else {
                            self.line.push(c);
                        }
                    }
                    out.push_str(t);
                }
                Seg::Tag(t) => {
                    if t.contains('\n') {
                        self.line.clear();
                    }
                    out.push_str(t);
                }
                Seg::Expr { .. } => {
                    if self.command_starts_here() {
                        let whole = following_chars(segments, i).next().is_none_or(char::is_whitespace);
                        out.push_str(&wrapped(seg, "escape_systemd_command", &format!(", whole={whole}")));
                    } else {
                        out.push_str(&wrapped(seg, "escape_systemd_word", ""));
                    }
                    self.line.push('x');
                }
            }
        }
        out
    }

    /// Whether the line so far is `ExecStart=` and maybe prefixes: a placeholder here starts the command.
    fn command_starts_here(&self) -> bool {
        let Some((key, value)) = self.line.split_once('=') else { return false };
        EXEC_KEYS.contains(&key.trim()) && value.trim_start().chars().all(|c| "-@:+!|".contains(c))
    }
}

/// wg-quick's hooks: their value is run by bash.
const WIREGUARD_HOOKS: &[&str] = &["PreUp", "PostUp", "PreDown", "PostDown"];

/// A WireGuard config: a value ends at its line and `#` starts a comment, so a value holds
/// neither; in a hook line it is a word bash cannot read as syntax.
fn wireguard(segments: &[Seg]) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for seg in segments {
        match seg {
            Seg::Text(t) | Seg::Tag(t) => {
                for c in t.chars() {
                    if c == '\n' {
                        line.clear();
                    } else if matches!(seg, Seg::Text(_)) {
                        line.push(c);
                    }
                }
                out.push_str(t);
            }
            Seg::Expr { .. } => {
                let key = line.split_once('=').map(|(k, _)| k.trim());
                let filter = if line.trim_start().starts_with(['#', ';']) {
                    "escape_line"
                } else if key.is_some_and(|k| WIREGUARD_HOOKS.contains(&k)) {
                    "escape_wireguard_hook"
                } else {
                    "escape_wireguard_value"
                };
                out.push_str(&wrapped(seg, filter, ""));
                line.push('x');
            }
        }
    }
    out
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
                    out.push_str(&wrapped(seg, filter, ""));
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

    #[test]
    fn a_tag_holding_multi_byte_characters_is_read() {
        // Found by `cargo xtask fuzz` (translate): looking for `%}` sliced inside the `é`.
        check(TemplateFormat::Text, "{% for v in s.volé %}{% endfor %}\n", "{% for v in s.volé %}{% endfor \n%}");
        check(TemplateFormat::Text, "{{ é }}\n", "{{ é }}\n");
    }
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

    /// `{{ expr }}` in the section of `filter` with arguments `args` (after the line).
    fn sec(filter: &str, line: usize, args: &str, expr: &str) -> String {
        format!("{{% filter {filter}(line={line}{args}) %}}{{{{ {expr} }}}}{{% endfilter %}}")
    }

    #[test]
    fn json_contexts() {
        let a = sec("escape_json_value", 1, ", name=\"A\"", "A");
        let b = sec("escape_json_content", 1, ", name=\"B\"", "B");
        check(J, r#"{"a": {{ A }}, "b": "x{{B}}"}"#, &format!(r#"{{"a": {a}, "b": "x{b}"}}"#));
        let a = sec("escape_json_content", 1, ", name=\"A\"", "A");
        check(J, r#"{"a": "\"{{ A }}"}"#, &format!(r#"{{"a": "\"{a}"}}"#));
        check(J, "{{ A | json }}\n{{ B | safe }}", "{{ A | json }}\n{{ B | safe }}");
    }

    #[test]
    fn typed_placeholders_convert_their_value() {
        let port = sec("as_int", 1, ", name=\"PORT\"", "PORT");
        check(J, r#"{"port": {{ PORT | int }}}"#, &format!(r#"{{"port": {port}}}"#));
        check(J, r#"{"port": "{{ PORT|int }}"}"#, &format!(r#"{{"port": "{port}"}}"#));
        let udp = sec("as_bool", 1, ", name=\"UDP\"", "UDP");
        check(Y, "udp: {{ UDP | bool }}\n", &format!("udp: {udp}\n"));
        let ratio = sec("as_float", 1, ", name=\"R\"", "R | default(value=\"1\")");
        check(Y, "r: {{ R | default(value=\"1\") | float }}\n", &format!("r: {ratio}\n"));
        // With arguments, tera's own filter runs first and its result is checked.
        let with_default = sec("as_int", 1, ", name=\"PORT\"", "PORT | int(default=443)");
        check(J, "{{ PORT | int(default=443) }}", &with_default);
        // Part of a bigger scalar: a string holding the number.
        let s = "{% filter escape_yaml_value(line=1, name=\"H, PORT\") %}";
        check(Y, "a: {{ H }}:{{ PORT | int }}\n", &format!("a: {s}{{{{ H }}}}:{port}{{% endfilter %}}\n"));
        // Whitespace control stays on the outside.
        check(T, "{{- PORT | int -}}", "{%- filter as_int(line=1, name=\"PORT\") %}{{ PORT }}{% endfilter -%}");
        // Not a typed filter: a pipe in a string, a filter after `int`, an operator after it.
        let x = sec("escape_json_value", 1, ", name=\"X\"", "X | default(value=\"a|int\")");
        check(J, "{{ X | default(value=\"a|int\") }}", &x);
        let y = sec("escape_json_value", 1, ", name=\"Y\"", "Y | int | string");
        check(J, "{{ Y | int | string }}", &y);
    }

    #[test]
    fn yaml_contexts() {
        let f = |name: &str, expr: &str, line: usize| sec(name, line, &format!(", name=\"{expr}\""), expr);
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
        // A placeholder inside a plain scalar: the whole scalar is escaped as one value, naming every variable in it.
        let s = |names: &str| format!("{{% filter escape_yaml_value(line=1, name=\"{names}\") %}}");
        let e = "{% endfilter %}";
        check(Y, "image: re\"po:{{ TAG }}-x  # c\n", &format!("image: {}re\"po:{{{{ TAG }}}}-x{e}  # c\n", s("TAG")));
        check(Y, "a: {{ H }}:{{ P }}\n", &format!("a: {}{{{{ H }}}}:{{{{ P }}}}{e}\n", s("H, P")));
        let a = f("escape_yaml_value", "A", 1);
        check(Y, "a: [{{ A }}, x{{ B }}]\n", &format!("a: [{a}, {}x{{{{ B }}}}{e}]\n", s("B")));
        check(Y, "a: {{ m.x }}\n", &format!("a: {}\n", sec("escape_yaml_value", 1, ", name=\"m.x\"", "m.x")));
    }

    #[test]
    fn caddy_contexts() {
        let f = |name: &str, expr: &str, args: &str| sec(name, 2, &format!(", name=\"{expr}\"{args}"), expr);
        let s = |name: &str, args: &str| format!("{{% filter escape_caddy_token(line=2, name=\"{name}\"{args}) %}}");
        let e = "{% endfilter %}";
        check(
            C,
            "# x\n{{ SITE }} {",
            &format!("# x\n{} {{", f("escape_caddy_token", "SITE", ", at=\"site\", start=true")),
        );
        check(
            C,
            "x {\nr a http://{{ H }}:80 x",
            &format!("x {{\nr a {}http://{{{{ H }}}}:80{e} x", s("H", ", start=false")),
        );
        check(C, "x {\na b {{ H }}:80", &format!("x {{\na b {}{{{{ H }}}}:80{e}", s("H", ", start=true")));
        // Sections and tera blocks stay nested.
        check(
            C,
            "x {\n\tto a:{{ A }}{% if N %} b:{{ B }}{% endif %}\n",
            &format!(
                "x {{\n\tto {}a:{{{{ A }}}}{e}{{% if N %}} {}b:{{{{ B }}}}{e}{{% endif %}}\n",
                s("A", ", at=\"matcher\", start=false"),
                s("B", ", start=false")
            ),
        );
        check(
            C,
            "x {\n\tx y {{ A }}{% if R %}:ro{% endif %} y\n",
            &format!("x {{\n\tx y {}{{{{ A }}}}{{% if R %}}:ro{{% endif %}}{e} y\n", s("A", ", start=true")),
        );
        check(
            C,
            "x {\nrespond \"a {{ B }}\" `{{ C }}` # {{ D }}",
            &format!(
                "x {{\nrespond \"a {}\" `{}` # {}",
                f("escape_caddy_dq_content", "B", ", at=\"matcher\", start=false, whole=false"),
                f("escape_caddy_bq_content", "C", ", start=true, whole=true"),
                f("escape_caddy_comment", "D", "")
            ),
        );
    }

    /// The position each placeholder `{{ V }}` of a Caddyfile gets, in order.
    fn caddy_positions(input: &str) -> Vec<String> {
        translate(input, C)
            .match_indices("filter escape_caddy_")
            .map(|(i, _)| {
                let tag = &translate(input, C)[i..];
                let tag = &tag[..tag.find(')').unwrap()];
                tag.split_once("at=\"").map_or("arg", |(_, r)| r.split('"').next().unwrap()).to_owned()
            })
            .collect()
    }

    #[test]
    fn caddy_token_positions() {
        let check = |input: &str, expected: &[&str]| assert_eq!(caddy_positions(input), expected, "{input:?}");
        check(
            "{\n\tadmin {{ A }}\n}\n{{ S }} {\n\t{{ D }} {{ M }} {{ X }}\n}\n",
            &["arg", "site", "line", "matcher", "arg"],
        );
        // The first top-level block with no address is the global options; later ones are sites.
        check("{{ S }}, {{ T }} {\n}\n{\n\t{{ D }} {{ M }}\n}\n", &["site", "site", "line", "matcher"]);
        // Subdirective blocks, maps and matcher sets take no matcher; route and handle blocks do.
        check(
            "s {\n\treverse_proxy {\n\t\tto {{ A }}\n\t\t{{ B }} {{ C }}\n\t}\n\thandle {\n\t\tr {{ D }}\n\t}\n}\n",
            &["arg", "line", "arg", "matcher"],
        );
        check(
            "s {\n\tmap {a} {b} {\n\t\t{{ K }} {{ V }}\n\t}\n\t@m {\n\t\tpath {{ P }}\n\t}\n}\n",
            &["line", "arg", "arg"],
        );
        // Snippets hold directives; an import's arguments are arguments.
        check("(snip) {\n\tr {{ M }}\n}\nimport snip {{ A }}\n", &["matcher", "arg"]);
        // A site without braces: the following lines are its directives.
        check("{{ S }}\nr {{ M }} {{ X }}\n", &["site", "matcher", "arg"]);
        // Block tags do not count as lines; `else` starts from where `if` stood.
        check("{% if A %}\n{{ S }} {\n{% else %}\n{{ T }} {\n{% endif %}\n\t{{ D }}\n}\n", &["site", "site", "line"]);
        // Quoted tokens get their position too; comments none.
        check("s {\n\t\"{{ D }}\" \"{{ M }}\" # {{ C }}\n}\n", &["line", "matcher", "arg"]);
        // Braces inside a token are not blocks.
        check("s {\n\tx {http.a} {{ A }}\n\t{{ B }}\n}\n", &["arg", "line"]);
    }

    #[test]
    fn systemd_command_words() {
        const S: TemplateFormat = TemplateFormat::Systemd;
        let cmd = |whole: bool| sec("escape_systemd_command", 1, &format!(", name=\"B\", whole={whole}"), "B");
        let word = |name: &str| sec("escape_systemd_word", 1, &format!(", name=\"{name}\""), name);
        check(S, "ExecStart={{ B }} --once", &format!("ExecStart={} --once", cmd(true)));
        check(S, "ExecStopPost = -{{ B }}", &format!("ExecStopPost = -{}", cmd(true)));
        check(S, "ExecStart={{ B }}/bin/x {{ A }}", &format!("ExecStart={}/bin/x {}", cmd(false), word("A")));
        check(S, "ExecStart=/bin/{{ A }}", &format!("ExecStart=/bin/{}", word("A")));
        check(S, "Description={{ A }}", &format!("Description={}", word("A")));
        check(S, "ExecSearchPath={{ A }}", &format!("ExecSearchPath={}", word("A")));
    }

    #[test]
    fn wireguard_values_hooks_and_comments() {
        const W: TemplateFormat = TemplateFormat::Wireguard;
        let value = |name: &str| sec("escape_wireguard_value", 1, &format!(", name=\"{name}\""), name);
        check(W, "Address = {{ A }}", &format!("Address = {}", value("A")));
        check(
            W,
            "PostUp = ip route add {{ A }}",
            &format!("PostUp = ip route add {}", sec("escape_wireguard_hook", 1, ", name=\"A\"", "A")),
        );
        check(W, "# peer {{ A }}", &format!("# peer {}", sec("escape_line", 1, ", name=\"A\"", "A")));
    }
}
