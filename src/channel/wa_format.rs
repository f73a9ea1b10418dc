//! Markdown → WhatsApp text, and cutting long text into sendable chunks.
//!
//! The agent answers in Markdown; WhatsApp understands a smaller, different
//! syntax. [`to_whatsapp`] rewrites one into the other, [`chunk`] cuts text
//! into messages of bounded length, and [`render`] does both. Everything
//! here is pure: no I/O, no Markdown crate.
//!
//! # Conversion rules ([`to_whatsapp`])
//!
//! A line-based pass recognises blocks; an inline pass rewrites the text of
//! each line (spans never cross a line).
//!
//! Blocks:
//! - Code fences (```` ``` ```` or `~~~`, any indentation) become
//!   ```` ``` ```` lines: the language tag is dropped, the content is copied
//!   verbatim (only the fence's own indentation is removed from each line),
//!   and an unclosed fence is closed at the end of the text.
//! - A GitHub pipe table (a header row followed by a `|---|:--:|` separator
//!   row with as many cells) becomes one line per body row:
//!   `Header: cell, Header: cell`. Empty cells are skipped, cells beyond the
//!   header are given without a label, and a table with no body rows gives
//!   its header cells joined by `, `. Cells split at pipes that are neither
//!   escaped (`\|`) nor inside a code span. Pipe lines with no separator row
//!   are left as they are (inline rules still apply).
//! - Headings `#` … `######` become `*text*` (bold) on their own line. A
//!   closing sequence of `#`s (one preceded by a space, as in CommonMark) is
//!   removed, so `## C#` keeps its `#`. Bold inside a heading is merged into
//!   the heading's bold.
//! - Horizontal rules (`---`, `***`, `___`, `- - -`, … alone on a line)
//!   become `———`. A `---` under a paragraph is also a rule (setext headings
//!   are not recognised).
//! - List items `* x`, `+ x`, `- x` become `- x`, keeping the indentation;
//!   numbered items `1. x` / `1) x` are kept. Task items become `☐ x` /
//!   `☑ x` (`- [ ] x`, `- [x] x`), or `1. ☐ x` when numbered.
//! - Blockquotes are kept as `> ` (nesting as `> > `); their content goes
//!   through the heading, rule, list and inline rules.
//! - Trailing whitespace is removed from every line outside code, runs of
//!   two or more blank lines (three or more newlines) become one blank line,
//!   and the whole text is trimmed.
//!
//! Inline (never inside code spans or blocks):
//! - `**b**`, `__b__` → `*b*`; `*i*`, `_i_` → `_i_`; `***x***` → `*_x_*`;
//!   `~~s~~` → `~s~` (a single `~` is left alone). A marker opens only
//!   before a non-space and closes only after one; `_` does not open or
//!   close inside a word, so `snake_case` is safe. Unmatched markers stay.
//!   The same style nested in itself is not doubled.
//! - `` `code` `` is kept verbatim (a span whose content holds a backtick
//!   keeps its original delimiters).
//! - `[text](url "title")` → `text (url)`; just `url` when the text is the
//!   url, ignoring an `http(s)://` prefix and a trailing `/`, and just the
//!   address for `[a@b.c](mailto:a@b.c)`. `![alt](url)` → `alt (url)`, or
//!   `url` without alt. Autolinks `<https://x>` → `https://x`. Bare
//!   `http(s)://` URLs are copied untouched. A link whose bare url holds
//!   `[` or `]` is not recognised (real urls encode them; `<url>` works).
//! - Backslash escapes of ASCII punctuation (`\*`, `\_`, `\#`, …) give the
//!   character itself.
//! - HTML-like tags are left alone.
//!
//! # Chunking rules ([`chunk`])
//!
//! Lengths are in `char`s. Each chunk is at most `limit` long (a `limit` of
//! 0 counts as 1). A chunk ends at the last break that fits, preferring, in
//! this order: a paragraph break (a whitespace run holding a blank line), a
//! line break, a space — all outside any formatting span — then a line
//! break, then a space inside a ```` ``` ```` block, then a space inside an
//! inline span (`*bold*`, `_italic_`, `~strike~`, `` `code` ``,
//! ```` ```mono``` ````), then a no-break space, and only when the window
//! holds no whitespace at all is a single over-long word cut (never between
//! a character and the combining marks, variation selectors, skin tones or
//! joiner glued to it, unless that cluster alone is longer than the limit).
//! A break outside every span always wins over one inside, so a span is cut
//! only when no boundary outside it fits in the chunk.
//!
//! A ```` ``` ```` block cut in two gets a closing fence line appended to
//! the first part (```` "\n```" ````) and an opening one prepended to the
//! next (```` "```\n" ````), so every chunk is well-formed. When `limit` is
//! below 16 there is no room for that, and blocks are cut like any other
//! protected span.
//!
//! What is removed is whitespace at the cuts, and nothing else. Every chunk
//! is `[fence] body [fence]`, where the optional fences are the ones added
//! as above (a chunk ends with an added fence exactly when the next one
//! starts with one), the bodies are non-blank substrings of the input in
//! order, and what lies between two bodies (and before the first and after
//! the last) is only whitespace (`char::is_whitespace`). Hence: the chunks
//! joined, with whitespace removed, equal the input with whitespace
//! removed plus six backticks at each cut inside a code block. A body keeps
//! its first line's indentation only when it continues a code block. Text
//! that is empty or only whitespace gives no chunks.

use std::collections::HashMap;

/// Opens and closes a WhatsApp monospace block.
const FENCE: &str = "```";
/// What an added fence costs: three backticks and a newline.
const FENCE_COST: usize = 4;
/// Below this limit code blocks are not re-fenced when split.
const MIN_FENCED_LIMIT: usize = 16;
/// What a horizontal rule becomes.
const RULE: &str = "———";
/// Deepest nesting of emphasis and links interpreted; deeper stays literal.
const MAX_DEPTH: u8 = 16;
/// Longest link text, or link title, looked at when matching a link.
const MAX_LINK_TEXT: usize = 2_000;

/// Markdown → WhatsApp text, by the rules in the module documentation.
pub fn to_whatsapp(markdown: &str) -> String {
    let text = markdown.replace("\r\n", "\n").replace('\r', "\n");
    let lines: Vec<&str> = text.split('\n').collect();
    let mut out = Vec::with_capacity(lines.len());
    let mut i = 0;
    while i < lines.len() {
        if let Some(fence) = Fence::open(lines[i]) {
            i = fence.convert(&lines, i, &mut out);
        } else if let Some(next) = table(&lines, i, &mut out) {
            i = next;
        } else {
            out.push(Line::Text(convert_line(lines[i])));
            i += 1;
        }
    }
    assemble(out)
}

/// Splits text into chunks of at most `limit` characters (chars, not
/// bytes), preferring paragraph, then line, then word boundaries, and never
/// cutting inside a formatting span while a boundary outside it fits. A
/// code block longer than the limit is cut at line boundaries and each part
/// is closed and reopened with ```` ``` ````. Only whitespace at the cuts is
/// dropped; see the module documentation for the exact guarantee.
pub fn chunk(text: &str, limit: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    plan(&chars, limit)
        .iter()
        .map(|piece| piece.render(&chars))
        .collect()
}

/// [`to_whatsapp`], then [`chunk`].
pub fn render(markdown: &str, limit: usize) -> Vec<String> {
    chunk(&to_whatsapp(markdown), limit)
}

// ---------------------------------------------------------------------------
// Blocks
// ---------------------------------------------------------------------------

/// One output line: text is trimmed and blank-collapsed, code is not.
enum Line {
    Text(String),
    Code(String),
}

fn assemble(lines: Vec<Line>) -> String {
    let mut out = String::new();
    let mut blank = false;
    for line in lines {
        let text = match line {
            Line::Text(text) if text.trim().is_empty() => {
                blank = true;
                continue;
            }
            Line::Text(text) => text.trim_end().to_string(),
            Line::Code(code) => code,
        };
        if !out.is_empty() {
            out.push('\n');
            if blank {
                out.push('\n');
            }
        }
        out.push_str(&text);
        blank = false;
    }
    out.trim().to_string()
}

/// An opening code fence.
struct Fence {
    ch: char,
    len: usize,
    indent: usize,
}

impl Fence {
    fn open(line: &str) -> Option<Fence> {
        let body = line.trim_start_matches([' ', '\t']);
        let indent = line.len() - body.len();
        let ch = body.chars().next().filter(|c| matches!(c, '`' | '~'))?;
        let len = body.chars().take_while(|&c| c == ch).count();
        if len < 3 || (ch == '`' && body[len..].contains('`')) {
            return None;
        }
        Some(Fence { ch, len, indent })
    }

    fn closes(&self, line: &str) -> bool {
        let t = line.trim();
        t.chars().count() >= self.len && t.chars().all(|c| c == self.ch)
    }

    /// Emits the block that opens at `lines[start]`; returns the index of
    /// the first line after it.
    fn convert(&self, lines: &[&str], start: usize, out: &mut Vec<Line>) -> usize {
        out.push(Line::Code(FENCE.to_string()));
        let mut i = start + 1;
        while let Some(line) = lines.get(i) {
            i += 1;
            if self.closes(line) {
                break;
            }
            let strip = line
                .bytes()
                .take(self.indent)
                .take_while(|b| matches!(b, b' ' | b'\t'))
                .count();
            out.push(Line::Code(line[strip..].to_string()));
        }
        out.push(Line::Code(FENCE.to_string()));
        i
    }
}

/// Converts the pipe table starting at `lines[i]`, if there is one; returns
/// the index of the first line after it.
fn table(lines: &[&str], i: usize, out: &mut Vec<Line>) -> Option<usize> {
    let header = lines[i];
    let separator = *lines.get(i + 1)?;
    if !header.contains('|') || !separator.contains('|') || header.trim_start().starts_with('>') {
        return None;
    }
    let labels = split_row(header);
    let separators = split_row(separator);
    if labels.len() != separators.len() || !separators.iter().all(|c| is_separator_cell(c)) {
        return None;
    }
    let labels: Vec<String> = labels
        .iter()
        .map(|label| inline(label.trim(), Ctx::default()))
        .collect();
    let mut j = i + 2;
    while let Some(row) = lines
        .get(j)
        .filter(|l| l.contains('|') && Fence::open(l).is_none())
    {
        let parts: Vec<String> = split_row(row)
            .iter()
            .enumerate()
            .filter_map(|(k, cell)| {
                let value = inline(cell.trim(), Ctx::default());
                if value.is_empty() {
                    return None;
                }
                Some(match labels.get(k) {
                    Some(label) if !label.is_empty() => format!("{label}: {value}"),
                    _ => value,
                })
            })
            .collect();
        if !parts.is_empty() {
            out.push(Line::Text(parts.join(", ")));
        }
        j += 1;
    }
    if j == i + 2 {
        let head: Vec<&str> = labels
            .iter()
            .map(String::as_str)
            .filter(|l| !l.is_empty())
            .collect();
        out.push(Line::Text(head.join(", ")));
    }
    Some(j)
}

/// The cells of a table row, split at pipes that are neither escaped nor
/// inside a code span; escapes are kept for the inline pass to resolve.
fn split_row(line: &str) -> Vec<String> {
    let mut t = line.trim();
    t = t.strip_prefix('|').unwrap_or(t);
    if t.ends_with('|') && !t.ends_with("\\|") {
        t = &t[..t.len() - 1];
    }
    let c: Vec<char> = t.chars().collect();
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut k = 0;
    while k < c.len() {
        match c[k] {
            '\\' => {
                cell.extend(&c[k..c.len().min(k + 2)]);
                k += 2;
            }
            '`' => {
                let n = run_len(&c, k, '`');
                let end = find_tick_run(&c, k + n, n, c.len()).map_or(k + n, |j| j + n);
                cell.extend(&c[k..end]);
                k = end;
            }
            '|' => {
                cells.push(std::mem::take(&mut cell));
                k += 1;
            }
            x => {
                cell.push(x);
                k += 1;
            }
        }
    }
    cells.push(cell);
    cells
}

fn is_separator_cell(cell: &str) -> bool {
    let t = cell.trim();
    let t = t.strip_prefix(':').unwrap_or(t);
    let t = t.strip_suffix(':').unwrap_or(t);
    !t.is_empty() && t.chars().all(|c| c == '-')
}

/// One line outside code blocks and tables.
fn convert_line(line: &str) -> String {
    let (depth, rest) = quote_prefix(line);
    let body = convert_body(rest);
    if depth == 0 {
        return body;
    }
    let prefix = "> ".repeat(depth);
    if body.is_empty() {
        prefix.trim_end().to_string()
    } else {
        prefix + &body
    }
}

/// How many `>` quote levels open the line, and what follows them.
fn quote_prefix(line: &str) -> (usize, &str) {
    let mut rest = line.trim_start_matches([' ', '\t']);
    if !rest.starts_with('>') {
        return (0, line);
    }
    let mut depth = 0;
    while let Some(after) = rest.strip_prefix('>') {
        depth += 1;
        let after = after.strip_prefix(' ').unwrap_or(after);
        let trimmed = after.trim_start_matches([' ', '\t']);
        rest = if trimmed.starts_with('>') {
            trimmed
        } else {
            after
        };
    }
    (depth, rest)
}

fn convert_body(line: &str) -> String {
    if line.trim().is_empty() {
        return String::new();
    }
    if is_rule(line) {
        return RULE.to_string();
    }
    if let Some(heading) = heading(line) {
        return heading;
    }
    if let Some(item) = list_item(line) {
        return item;
    }
    inline(line, Ctx::default())
}

fn is_rule(line: &str) -> bool {
    let t = line.trim();
    let Some(mark) = t.chars().next().filter(|c| matches!(c, '-' | '*' | '_')) else {
        return false;
    };
    t.chars().filter(|&c| c == mark).count() >= 3
        && t.chars().all(|c| c == mark || c == ' ' || c == '\t')
}

fn heading(line: &str) -> Option<String> {
    let body = line.trim_start_matches(' ');
    if line.len() - body.len() > 3 {
        return None;
    }
    let level = body.bytes().take_while(|&b| b == b'#').count();
    if !(1..=6).contains(&level) {
        return None;
    }
    let rest = &body[level..];
    if !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
        return None;
    }
    let mut text = rest.trim();
    let unclosed = text.trim_end_matches('#');
    if unclosed.is_empty() {
        text = "";
    } else if unclosed.ends_with([' ', '\t']) {
        text = unclosed.trim_end();
    }
    let ctx = Ctx {
        bold: true,
        ..Ctx::default()
    };
    let text = inline(text, ctx);
    Some(if text.is_empty() {
        String::new()
    } else {
        format!("*{text}*")
    })
}

fn list_item(line: &str) -> Option<String> {
    let body = line.trim_start_matches([' ', '\t']);
    let indent = &line[..line.len() - body.len()];
    let (marker, rest) = if let Some(rest) = body.strip_prefix(['-', '*', '+']) {
        (None, rest)
    } else {
        let digits = body.bytes().take_while(u8::is_ascii_digit).count();
        if !(1..=9).contains(&digits) || !body[digits..].starts_with(['.', ')']) {
            return None;
        }
        (Some(&body[..=digits]), &body[digits + 1..])
    };
    if !rest.starts_with([' ', '\t']) {
        return None;
    }
    let (task, rest) = task_box(rest.trim_start());
    let text = inline(rest, Ctx::default());
    Some(match (marker, task) {
        (None, Some(task)) => format!("{indent}{task} {text}"),
        (None, None) => format!("{indent}- {text}"),
        (Some(number), Some(task)) => format!("{indent}{number} {task} {text}"),
        (Some(number), None) => format!("{indent}{number} {text}"),
    })
}

fn task_box(rest: &str) -> (Option<char>, &str) {
    for (pattern, task) in [("[ ]", '☐'), ("[x]", '☑'), ("[X]", '☑')] {
        if let Some(after) = rest.strip_prefix(pattern)
            && (after.is_empty() || after.starts_with([' ', '\t']))
        {
            return (Some(task), after.trim_start());
        }
    }
    (None, rest)
}

// ---------------------------------------------------------------------------
// Inline spans
// ---------------------------------------------------------------------------

/// The styles already open around the text being converted.
#[derive(Debug, Clone, Copy, Default)]
struct Ctx {
    bold: bool,
    italic: bool,
    strike: bool,
    depth: u8,
}

fn inline(text: &str, ctx: Ctx) -> String {
    let chars: Vec<char> = text.chars().collect();
    Inline {
        c: &chars,
        ctx,
        dead: HashMap::new(),
    }
    .convert()
}

struct Inline<'a> {
    c: &'a [char],
    ctx: Ctx,
    /// (delimiter, run length) → the position from which a search for its
    /// closer has failed; later searches from there on are skipped, which
    /// keeps pathological input from going quadratic.
    dead: HashMap<(char, usize), usize>,
}

impl Inline<'_> {
    fn convert(mut self) -> String {
        let c = self.c;
        let mut out = String::with_capacity(c.len());
        let mut i = 0;
        while i < c.len() {
            let ch = c[i];
            match ch {
                '\\' => match c.get(i + 1) {
                    Some(&p) if p.is_ascii_punctuation() => {
                        out.push(p);
                        i += 2;
                    }
                    _ => {
                        out.push('\\');
                        i += 1;
                    }
                },
                '`' => {
                    let n = run_len(c, i, '`');
                    match self.code_close(i + n, n) {
                        Some(j) => {
                            out.push_str(&code_span(&c[i + n..j], n));
                            i = j + n;
                        }
                        None => {
                            out.extend(&c[i..i + n]);
                            i += n;
                        }
                    }
                }
                '*' | '_' | '~' => match self.emphasis(i) {
                    Some((text, end)) => {
                        out.push_str(&text);
                        i = end;
                    }
                    None => {
                        let n = run_len(c, i, ch);
                        out.extend(&c[i..i + n]);
                        i += n;
                    }
                },
                '[' | '!' => {
                    let at = if ch == '!' { i + 1 } else { i };
                    let link = (c.get(at) == Some(&'['))
                        .then(|| parse_link(c, at))
                        .flatten();
                    match link {
                        Some(link) => {
                            out.push_str(&self.link(&link));
                            i = link.end;
                        }
                        None => {
                            out.push(ch);
                            i += 1;
                        }
                    }
                }
                '<' => match autolink(c, i) {
                    Some(end) => {
                        out.extend(&c[i + 1..end - 1]);
                        i = end;
                    }
                    None => {
                        out.push('<');
                        i += 1;
                    }
                },
                _ => match bare_url(c, i) {
                    Some(end) => {
                        out.extend(&c[i..end]);
                        i = end;
                    }
                    None => {
                        out.push(ch);
                        i += 1;
                    }
                },
            }
        }
        out
    }

    fn mark_dead(&mut self, key: (char, usize), from: usize) {
        self.dead
            .entry(key)
            .and_modify(|d| *d = (*d).min(from))
            .or_insert(from);
    }

    fn is_dead(&self, key: (char, usize), from: usize) -> bool {
        self.dead.get(&key).is_some_and(|&d| from >= d)
    }

    /// Where the backtick run of length `n` closing a code span opened
    /// before `from` starts.
    fn code_close(&mut self, from: usize, n: usize) -> Option<usize> {
        if self.is_dead(('`', n), from) {
            return None;
        }
        let found = find_tick_run(self.c, from, n, self.c.len());
        if found.is_none() {
            self.mark_dead(('`', n), from);
        }
        found
    }

    /// An emphasis or strikethrough span opening at `i`: its WhatsApp text
    /// and the index after it.
    fn emphasis(&mut self, i: usize) -> Option<(String, usize)> {
        let c = self.c;
        let ch = c[i];
        let n = run_len(c, i, ch);
        let fits = if ch == '~' { n == 2 } else { n <= 3 };
        if !fits || self.ctx.depth >= MAX_DEPTH {
            return None;
        }
        if c.get(i + n).is_none_or(|x| x.is_whitespace()) {
            return None;
        }
        if ch == '_' && i > 0 && c[i - 1].is_alphanumeric() {
            return None;
        }
        let j = self.closer(i + n, ch, n, 0)?;
        let inner: String = c[i + n..j].iter().collect();
        let mut ctx = self.ctx;
        ctx.depth += 1;
        let mut open = String::new();
        if ch == '~' {
            if !ctx.strike {
                open.push('~');
            }
            ctx.strike = true;
        } else {
            if n >= 2 {
                if !ctx.bold {
                    open.push('*');
                }
                ctx.bold = true;
            }
            if n != 2 {
                if !ctx.italic {
                    open.push('_');
                }
                ctx.italic = true;
            }
        }
        let close: String = open.chars().rev().collect();
        Some((format!("{open}{}{close}", inline(&inner, ctx)), j + n))
    }

    /// The start of the run of exactly `n` `ch`s that closes a span whose
    /// content starts at `from`, skipping escapes, code, links, URLs and
    /// nested spans of the same delimiter.
    fn closer(&mut self, from: usize, ch: char, n: usize, nest: u8) -> Option<usize> {
        if self.is_dead((ch, n), from) {
            return None;
        }
        let c = self.c;
        let mut k = from;
        while k < c.len() {
            if c[k] == ch {
                let m = run_len(c, k, ch);
                if m == n {
                    let right_flanking = !c[k - 1].is_whitespace()
                        && (ch != '_' || c.get(k + m).is_none_or(|x| !x.is_alphanumeric()));
                    if right_flanking {
                        return Some(k);
                    }
                    let left_flanking = c.get(k + m).is_some_and(|x| !x.is_whitespace())
                        && (ch != '_' || !c[k - 1].is_alphanumeric());
                    if left_flanking
                        && nest < MAX_DEPTH
                        && let Some(j) = self.closer(k + m, ch, n, nest + 1)
                    {
                        k = j + m;
                        continue;
                    }
                }
                k += m;
            } else if let Some(end) = self.atom_end(k) {
                k = end;
            } else {
                k += 1;
            }
        }
        self.mark_dead((ch, n), from);
        None
    }

    /// The end of an element at `k` that emphasis must not look into.
    fn atom_end(&mut self, k: usize) -> Option<usize> {
        let c = self.c;
        match c[k] {
            '\\' => c
                .get(k + 1)
                .filter(|p| p.is_ascii_punctuation())
                .map(|_| k + 2),
            '`' => {
                let n = run_len(c, k, '`');
                Some(self.code_close(k + n, n).map_or(k + n, |j| j + n))
            }
            '[' => parse_link(c, k).map(|l| l.end),
            '!' if c.get(k + 1) == Some(&'[') => parse_link(c, k + 1).map(|l| l.end),
            '<' => autolink(c, k),
            _ => bare_url(c, k),
        }
    }

    fn link(&self, link: &Link) -> String {
        let raw: String = self.c[link.text.0..link.text.1].iter().collect();
        let raw = raw.trim();
        let url = link.url.trim();
        let mut ctx = self.ctx;
        ctx.depth += 1;
        let text = if ctx.depth > MAX_DEPTH {
            raw.to_string()
        } else {
            inline(raw, ctx)
        };
        if url.is_empty() {
            return text;
        }
        if url.strip_prefix("mailto:") == Some(raw) {
            return raw.to_string();
        }
        if text.trim().is_empty() || same_target(raw, url) {
            return url.to_string();
        }
        format!("{text} ({url})")
    }
}

/// Whether a link's text just repeats its url.
fn same_target(text: &str, url: &str) -> bool {
    fn norm(s: &str) -> &str {
        let s = s
            .strip_prefix("https://")
            .or_else(|| s.strip_prefix("http://"))
            .unwrap_or(s);
        s.trim_end_matches('/')
    }
    text == url || (!norm(url).is_empty() && norm(text) == norm(url))
}

fn code_span(content: &[char], n: usize) -> String {
    let raw: String = content.iter().collect();
    let padded = raw.len() >= 2 && raw.starts_with(' ') && raw.ends_with(' ');
    let inner = if padded && !raw.trim().is_empty() {
        &raw[1..raw.len() - 1]
    } else {
        &raw[..]
    };
    if inner.contains('`') {
        let ticks = "`".repeat(n);
        format!("{ticks}{raw}{ticks}")
    } else {
        format!("`{inner}`")
    }
}

/// A parsed `[text](url)`: text bounds (exclusive of brackets), url, and
/// the index after the closing parenthesis.
struct Link {
    text: (usize, usize),
    url: String,
    end: usize,
}

fn parse_link(c: &[char], open: usize) -> Option<Link> {
    let stop = c.len().min(open + MAX_LINK_TEXT);
    let mut depth = 0usize;
    let mut k = open;
    let close = loop {
        if k >= stop {
            return None;
        }
        match c[k] {
            '\\' => {
                k += 2;
                continue;
            }
            '`' => {
                let n = run_len(c, k, '`');
                k = find_tick_run(c, k + n, n, stop).map_or(k + n, |j| j + n);
                continue;
            }
            '[' => depth += 1,
            ']' => {
                depth -= 1;
                if depth == 0 {
                    break k;
                }
            }
            _ => {}
        }
        k += 1;
    };
    if c.get(close + 1) != Some(&'(') {
        return None;
    }
    let mut k = skip_spaces(c, close + 2);
    let mut url = String::new();
    if c.get(k) == Some(&'<') {
        let start = k + 1;
        let end = (start..c.len()).find(|&x| matches!(c[x], '>' | '<'))?;
        if c[end] != '>' {
            return None;
        }
        url.extend(&c[start..end]);
        k = end + 1;
    } else {
        let mut parens = 0usize;
        while let Some(&x) = c.get(k) {
            if x.is_whitespace() {
                break;
            }
            if matches!(x, '[' | ']') {
                // Not in real URLs (they are percent-encoded); stopping here
                // keeps runs of `[a](` from going quadratic.
                return None;
            }
            if x == '\\' && c.get(k + 1).is_some_and(char::is_ascii_punctuation) {
                url.push(c[k + 1]);
                k += 2;
                continue;
            }
            if x == '(' {
                parens += 1;
            } else if x == ')' {
                if parens == 0 {
                    break;
                }
                parens -= 1;
            }
            url.push(x);
            k += 1;
        }
    }
    k = skip_spaces(c, k);
    if let Some(&quote) = c.get(k)
        && matches!(quote, '"' | '\'' | '(')
    {
        let end_quote = if quote == '(' { ')' } else { quote };
        let stop = c.len().min(k + 1 + MAX_LINK_TEXT);
        let end = (k + 1..stop).find(|&x| c[x] == end_quote)?;
        k = skip_spaces(c, end + 1);
    }
    (c.get(k) == Some(&')')).then(|| Link {
        text: (open + 1, close),
        url,
        end: k + 1,
    })
}

/// `<scheme:…>` or `<a@b.c>` at `i`: the index after the `>`.
fn autolink(c: &[char], i: usize) -> Option<usize> {
    let end = (i + 1..c.len()).find(|&k| matches!(c[k], '>' | '<') || c[k].is_whitespace())?;
    if c[end] != '>' || end == i + 1 {
        return None;
    }
    let inner = &c[i + 1..end];
    let uri = inner.iter().position(|&x| x == ':').is_some_and(|p| {
        (2..=32).contains(&p)
            && inner[0].is_ascii_alphabetic()
            && inner[..p]
                .iter()
                .all(|x| x.is_ascii_alphanumeric() || matches!(x, '+' | '.' | '-'))
    });
    let email = {
        let at = inner.iter().filter(|&&x| x == '@').count();
        let pos = inner.iter().position(|&x| x == '@');
        at == 1
            && pos.is_some_and(|p| p > 0 && p + 1 < inner.len())
            && inner
                .iter()
                .all(|x| x.is_ascii_alphanumeric() || ".!#$%&'*+/=?^_{|}~-@".contains(*x))
    };
    (uri || email).then_some(end + 1)
}

/// A bare `http(s)://` URL starting at `i`: the index after it, with
/// trailing punctuation (and unbalanced `)`) left out.
fn bare_url(c: &[char], i: usize) -> Option<usize> {
    if !matches!(c[i], 'h' | 'H') || (i > 0 && c[i - 1].is_alphanumeric()) {
        return None;
    }
    let starts = |p: &str| {
        p.chars()
            .enumerate()
            .all(|(k, pc)| c.get(i + k).is_some_and(|x| x.eq_ignore_ascii_case(&pc)))
    };
    let prefix = if starts("https://") {
        8
    } else if starts("http://") {
        7
    } else {
        return None;
    };
    let mut end = i;
    while end < c.len() && !c[end].is_whitespace() && !matches!(c[end], '<' | '>' | '`') {
        end += 1;
    }
    while end > i + prefix {
        let last = c[end - 1];
        let unbalanced = last == ')'
            && c[i..end].iter().filter(|&&x| x == ')').count()
                > c[i..end].iter().filter(|&&x| x == '(').count();
        if unbalanced || ".,;:!?'\"*_~]".contains(last) {
            end -= 1;
        } else {
            break;
        }
    }
    (end > i + prefix).then_some(end)
}

fn run_len(c: &[char], i: usize, ch: char) -> usize {
    c[i..].iter().take_while(|&&x| x == ch).count()
}

/// The start of the first run of exactly `n` backticks in `from..stop`.
fn find_tick_run(c: &[char], from: usize, n: usize, stop: usize) -> Option<usize> {
    let mut k = from;
    while k < stop {
        if c[k] == '`' {
            let m = run_len(c, k, '`');
            if m == n {
                return Some(k);
            }
            k += m;
        } else {
            k += 1;
        }
    }
    None
}

fn skip_spaces(c: &[char], mut k: usize) -> usize {
    while c.get(k).is_some_and(|x| matches!(x, ' ' | '\t')) {
        k += 1;
    }
    k
}

// ---------------------------------------------------------------------------
// Chunking
// ---------------------------------------------------------------------------

/// Break preferences, best first.
const P_PARA: u8 = 0;
const P_LINE: u8 = 1;
const P_WORD: u8 = 2;
const P_CODE_LINE: u8 = 3;
const P_CODE_WORD: u8 = 4;
const P_SPAN: u8 = 5;
const P_GLUE: u8 = 6;
const PRIORITIES: usize = 7;

/// One chunk: `chars[start..end]`, with a fence added before and/or after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Piece {
    start: usize,
    end: usize,
    reopen: bool,
    close: bool,
}

impl Piece {
    fn render(&self, chars: &[char]) -> String {
        let mut out = String::new();
        if self.reopen {
            out.push_str(FENCE);
            out.push('\n');
        }
        out.extend(&chars[self.start..self.end]);
        if self.close {
            out.push('\n');
            out.push_str(FENCE);
        }
        out
    }
}

/// Whitespace, as trimmed at the cuts.
fn is_ws(c: char) -> bool {
    c.is_whitespace()
}

/// No-break spaces: cut at only when nothing better fits.
fn is_glue(c: char) -> bool {
    matches!(c, '\u{a0}' | '\u{2007}' | '\u{202f}')
}

/// Characters that belong to the one before them.
fn is_extend(c: char) -> bool {
    matches!(c as u32,
        0x0300..=0x036F | 0x0483..=0x0489 | 0x0591..=0x05BD | 0x0610..=0x061A
        | 0x064B..=0x065F | 0x0E31 | 0x0E34..=0x0E3A | 0x1AB0..=0x1AFF
        | 0x1DC0..=0x1DFF | 0x200C..=0x200D | 0x20D0..=0x20FF | 0xFE00..=0xFE0F
        | 0xFE20..=0xFE2F | 0x1F3FB..=0x1F3FF | 0xE0020..=0xE007F | 0xE0100..=0xE01EF)
}

/// A ```` ``` ```` block: first backtick of the opening fence, the newline
/// ending that line, first backtick of the closing fence, and the index
/// after it (the last two are the text's end when unclosed).
#[derive(Debug, Clone, Copy)]
struct Region {
    start: usize,
    open_end: usize,
    close: usize,
    end: usize,
}

/// A maximal whitespace run `s..e`, with its break priority (`None`: never
/// cut here) and whether cutting here splits a code block.
#[derive(Debug, Clone, Copy)]
struct Run {
    s: usize,
    e: usize,
    priority: Option<u8>,
    code: bool,
}

struct Layout {
    runs: Vec<Run>,
    regions: Vec<Region>,
}

impl Layout {
    fn new(c: &[char], fenced: bool) -> Layout {
        let n = c.len();
        let mut regions = Vec::new();
        let mut spans = Vec::new();
        let mut open: Option<(usize, usize)> = None;
        let mut ls = 0;
        loop {
            let le = c[ls..]
                .iter()
                .position(|&x| x == '\n')
                .map_or(n, |p| ls + p);
            let t = ls
                + c[ls..le]
                    .iter()
                    .take_while(|x| matches!(x, ' ' | '\t'))
                    .count();
            let ticks = run_len(&c[..le], t, '`');
            match open {
                None if ticks >= 3 && !c[t + ticks..le].contains(&'`') => open = Some((t, le)),
                None => wa_spans(c, ls, le, &mut spans),
                Some((start, open_end)) => {
                    if ticks >= 3 && c[t + ticks..le].iter().all(|x| x.is_whitespace()) {
                        regions.push(Region {
                            start,
                            open_end,
                            close: t,
                            end: t + ticks,
                        });
                        open = None;
                    }
                }
            }
            if le >= n {
                break;
            }
            ls = le + 1;
        }
        if let Some((start, open_end)) = open {
            regions.push(Region {
                start,
                open_end,
                close: n,
                end: n,
            });
        }

        let mut runs = Vec::new();
        let (mut ri, mut si) = (0, 0);
        let mut k = 0;
        while k < n {
            if !is_ws(c[k]) {
                k += 1;
                continue;
            }
            let s = k;
            while k < n && is_ws(c[k]) {
                k += 1;
            }
            let e = k;
            let newlines = c[s..e].iter().filter(|&&x| x == '\n').count();
            while regions.get(ri).is_some_and(|r| r.end <= s) {
                ri += 1;
            }
            while spans.get(si).is_some_and(|&(_, end)| end <= s) {
                si += 1;
            }
            let (priority, code) = if let Some(r) = regions.get(ri).filter(|r| r.start < s) {
                if !fenced {
                    (Some(P_SPAN), false)
                } else if s > r.open_end && e < r.close {
                    let p = if newlines > 0 {
                        P_CODE_LINE
                    } else {
                        P_CODE_WORD
                    };
                    (Some(p), true)
                } else {
                    (None, false)
                }
            } else if spans.get(si).is_some_and(|&(start, _)| start < s) {
                (Some(P_SPAN), false)
            } else {
                let p = match newlines {
                    0 => P_WORD,
                    1 => P_LINE,
                    _ => P_PARA,
                };
                (Some(p), false)
            };
            let glued = c[s..e].iter().all(|&x| is_glue(x));
            runs.push(Run {
                s,
                e,
                priority: priority.map(|p| if glued { P_GLUE } else { p }),
                code,
            });
        }
        Layout { runs, regions }
    }

    /// For a body whose first non-space is at `first` and that would end at
    /// `p`: where it ends and whether it stops inside a code block's content
    /// (so it needs a closing fence). A `p` inside a closing fence moves to
    /// the fence's start when that leaves a non-blank body.
    fn code_split(&self, first: usize, p: usize) -> (usize, bool) {
        let at = self.regions.partition_point(|r| r.end <= p);
        match self.regions.get(at) {
            Some(r) if r.start < p && p > r.open_end => {
                if p <= r.close {
                    (p, true)
                } else if r.close > first {
                    (r.close, true)
                } else {
                    (p, false)
                }
            }
            _ => (p, false),
        }
    }
}

/// WhatsApp formatting spans on the line `ls..le`, as `(start, end)`.
fn wa_spans(c: &[char], ls: usize, le: usize, spans: &mut Vec<(usize, usize)>) {
    const MARKERS: [char; 3] = ['*', '_', '~'];
    let mut no_closer = [usize::MAX; 3];
    let mut no_ticks = [usize::MAX; 3];
    let mut i = ls;
    while i < le {
        let ch = c[i];
        if ch == '`' {
            let n = run_len(&c[..le], i, '`');
            match wa_tick_end(c, i, n, le, &mut no_ticks) {
                Some(end) => {
                    spans.push((i, end));
                    i = end;
                }
                None => i += n,
            }
            continue;
        }
        if let Some(m) = MARKERS.iter().position(|&x| x == ch) {
            let opener =
                (i == ls || !c[i - 1].is_alphanumeric()) && i + 1 < le && !c[i + 1].is_whitespace();
            if opener && i + 1 < no_closer[m] {
                match wa_closer(c, i, le, &mut no_ticks) {
                    Some(j) => {
                        spans.push((i, j + 1));
                        i = j + 1;
                        continue;
                    }
                    None => no_closer[m] = i + 1,
                }
            }
        }
        i += 1;
    }
}

/// The end of the backtick span opened by the run of `n` at `i`: a single
/// or double run closes with the same, three or more with three or more.
fn wa_tick_end(c: &[char], i: usize, n: usize, le: usize, dead: &mut [usize; 3]) -> Option<usize> {
    let key = n.min(3) - 1;
    let from = i + n;
    if from >= dead[key] {
        return None;
    }
    let mut k = from;
    while k < le {
        if c[k] == '`' {
            let m = run_len(&c[..le], k, '`');
            if m == n || (n >= 3 && m >= 3) {
                return Some(k + m);
            }
            k += m;
        } else {
            k += 1;
        }
    }
    dead[key] = from;
    None
}

/// The closing marker for the one opening at `i`.
fn wa_closer(c: &[char], i: usize, le: usize, no_ticks: &mut [usize; 3]) -> Option<usize> {
    let ch = c[i];
    let mut k = i + 1;
    while k < le {
        let x = c[k];
        if x == '`' {
            let n = run_len(&c[..le], k, '`');
            k = wa_tick_end(c, k, n, le, no_ticks).unwrap_or(k + n);
            continue;
        }
        if x == ch
            && k > i + 1
            && !c[k - 1].is_whitespace()
            && (k + 1 >= le || !c[k + 1].is_alphanumeric())
        {
            return Some(k);
        }
        k += 1;
    }
    None
}

/// Where the chunks are, as pieces of `chars`.
fn plan(c: &[char], limit: usize) -> Vec<Piece> {
    let limit = limit.max(1);
    let fenced = limit >= MIN_FENCED_LIMIT;
    let layout = Layout::new(c, fenced);
    let runs = &layout.runs;
    let mut rest_end = c.len();
    while rest_end > 0 && is_ws(c[rest_end - 1]) {
        rest_end -= 1;
    }
    let mut pieces = Vec::new();
    let mut pos = 0;
    let mut reopen = false;
    loop {
        let budget = limit - if reopen { FENCE_COST } else { 0 };
        let mut first = pos;
        while first < rest_end && is_ws(c[first]) {
            first += 1;
        }
        if first >= rest_end {
            break;
        }
        if reopen {
            // Keep a continued code line's indentation, unless it is huge.
            if let Some(nl) = c[pos..first].iter().rposition(|&x| x == '\n') {
                pos += nl + 1;
            }
            if first - pos >= budget / 2 {
                pos = first;
            }
        } else {
            pos = first;
        }
        if rest_end - pos <= budget {
            pieces.push(Piece {
                start: pos,
                end: rest_end,
                reopen,
                close: false,
            });
            break;
        }

        let mut best: [Option<Run>; PRIORITIES] = [None; PRIORITIES];
        let from = runs.partition_point(|r| r.s <= pos);
        for run in &runs[from..] {
            if run.s - pos > budget {
                break;
            }
            let cost = if run.code { FENCE_COST } else { 0 };
            if let Some(p) = run.priority
                && run.s - pos + cost <= budget
            {
                best[usize::from(p)] = Some(*run);
            }
        }
        if let Some(run) = best.into_iter().flatten().next() {
            pieces.push(Piece {
                start: pos,
                end: run.s,
                reopen,
                close: run.code,
            });
            reopen = run.code;
            pos = if run.code { run.s } else { run.e };
            continue;
        }

        // No whitespace to cut at: cut the word, keeping clusters whole.
        let back_off = |mut p: usize| {
            while p > first + 1 && (is_extend(c[p]) || c[p - 1] == '\u{200d}') {
                p -= 1;
            }
            p
        };
        let (mut p, mut close) = layout.code_split(first, back_off(pos + budget));
        if !fenced {
            close = false;
        }
        if close && p - pos + FENCE_COST > budget {
            (p, close) = layout.code_split(first, back_off(pos + budget - FENCE_COST));
        }
        debug_assert!(p > first, "empty piece at {pos}");
        pieces.push(Piece {
            start: pos,
            end: p,
            reopen,
            close,
        });
        reopen = close;
        pos = p;
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn wa(md: &str) -> String {
        to_whatsapp(md)
    }

    // ---- to_whatsapp: inline ------------------------------------------

    #[test]
    fn bold_both_spellings() {
        assert_eq!(wa("a **bold** b"), "a *bold* b");
        assert_eq!(wa("a __bold__ b"), "a *bold* b");
        assert_eq!(wa("**Note:** read"), "*Note:* read");
    }

    #[test]
    fn italic_both_spellings() {
        assert_eq!(wa("an *italic* word"), "an _italic_ word");
        assert_eq!(wa("an _italic_ word"), "an _italic_ word");
    }

    #[test]
    fn bold_italic_and_nesting() {
        assert_eq!(wa("***both***"), "*_both_*");
        assert_eq!(wa("**bold *and italic* here**"), "*bold _and italic_ here*");
        assert_eq!(wa("*italic **bold** more*"), "_italic *bold* more_");
        assert_eq!(wa("**outer **inner** outer**"), "*outer inner outer*");
    }

    #[test]
    fn strikethrough() {
        assert_eq!(wa("~~gone~~ here"), "~gone~ here");
        assert_eq!(wa("about ~5 min"), "about ~5 min");
        assert_eq!(wa("~~**both**~~"), "~*both*~");
    }

    #[test]
    fn markers_that_are_not_emphasis_stay() {
        assert_eq!(wa("snake_case_name"), "snake_case_name");
        assert_eq!(wa("2 * 3 * 4"), "2 * 3 * 4");
        assert_eq!(wa("**unclosed"), "**unclosed");
        assert_eq!(wa("a ** b"), "a ** b");
        assert_eq!(wa("use __init__ here"), "use *init* here");
    }

    #[test]
    fn escapes() {
        assert_eq!(wa(r"\*not italic\*"), "*not italic*");
        assert_eq!(wa(r"\_x\_ and \# and \\"), r"_x_ and # and \");
        assert_eq!(wa(r"\# not a heading"), "# not a heading");
        assert_eq!(wa(r"C:\path"), r"C:\path");
    }

    #[test]
    fn inline_code_is_untouched() {
        assert_eq!(wa("run `cargo **test**` now"), "run `cargo **test**` now");
        assert_eq!(wa("a `[x](y)` b"), "a `[x](y)` b");
        assert_eq!(wa("``a ` b``"), "``a ` b``");
        assert_eq!(wa("`` `x` ``"), "`` `x` ``");
        assert_eq!(wa("`` plain ``"), "`plain`");
        assert_eq!(wa("a `unclosed"), "a `unclosed");
        assert_eq!(wa("**`x`**"), "*`x`*");
    }

    #[test]
    fn links() {
        assert_eq!(
            wa("see [the docs](https://x.dev/docs)"),
            "see the docs (https://x.dev/docs)"
        );
        assert_eq!(wa("[https://x.dev](https://x.dev)"), "https://x.dev");
        assert_eq!(wa("[x.dev](https://x.dev/)"), "https://x.dev/");
        assert_eq!(wa("[a@b.io](mailto:a@b.io)"), "a@b.io");
        assert_eq!(wa("[t](https://x.dev \"Title\")"), "t (https://x.dev)");
        assert_eq!(
            wa("[wiki](https://en.wikipedia.org/wiki/Rust_(language))"),
            "wiki (https://en.wikipedia.org/wiki/Rust_(language))"
        );
        assert_eq!(wa("[t](<https://x.dev/a b>)"), "t (https://x.dev/a b)");
        assert_eq!(
            wa("[**bold** text](https://x.dev)"),
            "*bold* text (https://x.dev)"
        );
        assert_eq!(wa("[empty]()"), "empty");
        assert_eq!(wa("[not a link] (x)"), "[not a link] (x)");
        assert_eq!(wa("[ref][1]"), "[ref][1]");
        assert_eq!(wa("[v6](http://[::1]/)"), "[v6](http://[::1]/)");
    }

    #[test]
    fn images() {
        assert_eq!(
            wa("![a cat](https://x.dev/c.png)"),
            "a cat (https://x.dev/c.png)"
        );
        assert_eq!(wa("![](https://x.dev/c.png)"), "https://x.dev/c.png");
        assert_eq!(wa("wow!"), "wow!");
    }

    #[test]
    fn urls() {
        assert_eq!(wa("<https://x.dev/a_b>"), "https://x.dev/a_b");
        assert_eq!(wa("<me@x.dev>"), "me@x.dev");
        assert_eq!(
            wa("at https://x.dev/*star*/_u_ ok"),
            "at https://x.dev/*star*/_u_ ok"
        );
        assert_eq!(wa("**https://x.dev**"), "*https://x.dev*");
        assert_eq!(wa("(see https://x.dev/a)."), "(see https://x.dev/a).");
    }

    #[test]
    fn html_like_tags_stay() {
        assert_eq!(wa("a <b>tag</b> <br/> x"), "a <b>tag</b> <br/> x");
        assert_eq!(wa("Vec<u8> and <T>"), "Vec<u8> and <T>");
    }

    // ---- to_whatsapp: blocks ------------------------------------------

    #[test]
    fn headings() {
        assert_eq!(wa("# Title"), "*Title*");
        assert_eq!(wa("###### Six"), "*Six*");
        assert_eq!(wa("## Closed ##"), "*Closed*");
        assert_eq!(wa("## C#"), "*C#*");
        assert_eq!(wa("## The **key** point"), "*The key point*");
        assert_eq!(wa("### An *aside*"), "*An _aside_*");
        assert_eq!(wa("#hashtag"), "#hashtag");
        assert_eq!(wa("####### seven"), "####### seven");
        assert_eq!(wa("Intro\n## Next\nbody"), "Intro\n*Next*\nbody");
    }

    #[test]
    fn bullet_lists() {
        assert_eq!(wa("* one\n+ two\n- three"), "- one\n- two\n- three");
        assert_eq!(
            wa("- a\n  * nested\n    + deeper"),
            "- a\n  - nested\n    - deeper"
        );
        assert_eq!(wa("* **Name**: desc"), "- *Name*: desc");
    }

    #[test]
    fn numbered_lists_are_kept() {
        assert_eq!(
            wa("1. one\n2. **two**\n10) ten"),
            "1. one\n2. *two*\n10) ten"
        );
        assert_eq!(wa("1. a\n   1. nested"), "1. a\n   1. nested");
    }

    #[test]
    fn task_lists() {
        assert_eq!(
            wa("- [ ] todo\n- [x] done\n- [X] also"),
            "☐ todo\n☑ done\n☑ also"
        );
        assert_eq!(wa("- a\n  * [ ] nested"), "- a\n  ☐ nested");
        assert_eq!(wa("1. [x] first"), "1. ☑ first");
        assert_eq!(wa("- [link](https://x.dev)"), "- link (https://x.dev)");
    }

    #[test]
    fn code_fences() {
        let md = "Run:\n```rust\nlet x = **y**;\n\n\n# not a heading\n```\nDone";
        assert_eq!(
            wa(md),
            "Run:\n```\nlet x = **y**;\n\n\n# not a heading\n```\nDone"
        );
        assert_eq!(wa("~~~\n* a\n~~~"), "```\n* a\n```");
        assert_eq!(wa("````md\n```\nx\n```\n````"), "```\n```\nx\n```\n```");
        assert_eq!(wa("```\nunclosed *x*"), "```\nunclosed *x*\n```");
        assert_eq!(
            wa("1. step\n   ```sh\n   ls  -la\n     indented\n   ```"),
            "1. step\n```\nls  -la\n  indented\n```"
        );
    }

    #[test]
    fn tables() {
        let md = "| Name | Age |\n|---|---|\n| Ann | 31 |\n| Bob | 42 |";
        assert_eq!(wa(md), "Name: Ann, Age: 31\nName: Bob, Age: 42");
        let md = "Name | Age\n:--- | ---:\nAnn | 31";
        assert_eq!(wa(md), "Name: Ann, Age: 31");
        let md =
            "| **Key** | Value |\n| :-: | - |\n| a | `x|y` |\n| b |  |\n| c | d \\| e | extra |";
        assert_eq!(
            wa(md),
            "*Key*: a, Value: `x|y`\n*Key*: b\n*Key*: c, Value: d | e, extra"
        );
        let md = "| A | B |\n|---|---|";
        assert_eq!(wa(md), "A, B");
        let md = "Before\n\n| A | B |\n|---|---|\n| 1 | 2 |\nAfter";
        assert_eq!(wa(md), "Before\n\nA: 1, B: 2\nAfter");
    }

    #[test]
    fn tables_without_separator_stay() {
        assert_eq!(wa("| a | **b** |\n| c | d |"), "| a | *b* |\n| c | d |");
        assert_eq!(wa("| a | b |\n|---|"), "| a | b |\n|---|");
    }

    #[test]
    fn horizontal_rules() {
        assert_eq!(wa("a\n\n---\n\nb"), "a\n\n———\n\nb");
        assert_eq!(wa("***"), "———");
        assert_eq!(wa("___"), "———");
        assert_eq!(wa("- - -"), "———");
        assert_eq!(wa(" * * * "), "———");
        assert_eq!(wa("--"), "--");
    }

    #[test]
    fn blockquotes() {
        assert_eq!(wa("> quoted **text**"), "> quoted *text*");
        assert_eq!(wa(">no space"), "> no space");
        assert_eq!(wa("> a\n>\n> b"), "> a\n>\n> b");
        assert_eq!(wa(">> nested"), "> > nested");
        assert_eq!(wa("> ## Title\n> * item"), "> *Title*\n> - item");
        assert_eq!(wa("a -> b"), "a -> b");
    }

    #[test]
    fn blank_lines_and_trimming() {
        assert_eq!(wa("\n\n  a  \n\n\n\n\nb\n\nc\n\n\n"), "a\n\nb\n\nc");
        assert_eq!(wa("a\n \t \n\nb"), "a\n\nb");
        assert_eq!(wa("line one  \nline two"), "line one\nline two");
        assert_eq!(wa("a\r\n\r\n\r\n\r\nb"), "a\n\nb");
        assert_eq!(wa(""), "");
        assert_eq!(wa(" \n\n "), "");
    }

    #[test]
    fn realistic_summary() {
        let md = "\
## Summary of the week

Here's what happened:

* **Monday**: shipped the *beta*
* **Tuesday**: fixed [issue #12](https://git.example/issues/12)
  - [x] wrote tests
  - [ ] docs



### Numbers

| Metric | Value |
|--------|------:|
| Users  | 1,204 |
| Churn  | 2.1%  |

```python
def total(xs):
    return sum(x**2 for x in xs)  # __not__ bold
```

---

> Keep going! ~~No~~ Some blockers.
";
        let expected = "\
*Summary of the week*

Here's what happened:

- *Monday*: shipped the _beta_
- *Tuesday*: fixed issue #12 (https://git.example/issues/12)
  ☑ wrote tests
  ☐ docs

*Numbers*

Metric: Users, Value: 1,204
Metric: Churn, Value: 2.1%

```
def total(xs):
    return sum(x**2 for x in xs)  # __not__ bold
```

———

> Keep going! ~No~ Some blockers.";
        assert_eq!(wa(md), expected);
    }

    #[test]
    fn realistic_steps() {
        let md = "\
# Setup

1. Install:
   ```bash
   cargo install pocketbrain
   ```
2. Set `POCKETBRAIN_TOKEN` (see <https://docs.example/env>).
3. ***Restart*** the service.

**Tip:** run `pocketbrain status` \\*after\\* restarting.";
        let expected = "\
*Setup*

1. Install:
```
cargo install pocketbrain
```
2. Set `POCKETBRAIN_TOKEN` (see https://docs.example/env).
3. *_Restart_* the service.

*Tip:* run `pocketbrain status` *after* restarting.";
        assert_eq!(wa(md), expected);
    }

    // ---- chunk ------------------------------------------------------------

    fn lens(chunks: &[String]) -> Vec<usize> {
        chunks.iter().map(|c| c.chars().count()).collect()
    }

    #[test]
    fn short_text_is_one_trimmed_chunk() {
        assert_eq!(chunk("  hello world \n", 100), vec!["hello world"]);
        assert_eq!(chunk("exactly10!", 10), vec!["exactly10!"]);
    }

    #[test]
    fn empty_text_gives_no_chunks() {
        assert!(chunk("", 10).is_empty());
        assert!(chunk(" \n\n\t ", 10).is_empty());
        assert!(render("\n\n", 10).is_empty());
    }

    #[test]
    fn prefers_paragraphs() {
        let text = "first para\nline two\n\nsecond para\nline four";
        assert_eq!(
            chunk(text, 35),
            vec!["first para\nline two", "second para\nline four"]
        );
    }

    #[test]
    fn then_lines() {
        let text = "alpha beta gamma\ndelta epsilon\nzeta";
        assert_eq!(
            chunk(text, 32),
            vec!["alpha beta gamma\ndelta epsilon", "zeta"]
        );
        assert_eq!(
            chunk(text, 20),
            vec!["alpha beta gamma", "delta epsilon\nzeta"]
        );
    }

    #[test]
    fn then_words() {
        let text = "one two three four five six";
        assert_eq!(chunk(text, 10), vec!["one two", "three four", "five six"]);
    }

    #[test]
    fn hard_splits_only_an_overlong_word() {
        assert_eq!(chunk("abcdefghij", 4), vec!["abcd", "efgh", "ij"]);
        assert_eq!(chunk("ab cdefghijkl", 5), vec!["ab", "cdefg", "hijkl"]);
    }

    #[test]
    fn counts_chars_not_bytes() {
        let text = "ж".repeat(10) + " " + &"😀".repeat(5);
        assert_eq!(chunk(&text, 10), vec!["ж".repeat(10), "😀".repeat(5)]);
    }

    #[test]
    fn no_break_spaces_are_a_last_resort() {
        assert_eq!(
            chunk("aaaa\u{a0}bbbb cccc", 10),
            vec!["aaaa\u{a0}bbbb", "cccc"]
        );
        assert_eq!(chunk("aaaa\u{a0}bbbb", 6), vec!["aaaa", "bbbb"]);
    }

    #[test]
    fn hard_split_keeps_clusters_whole() {
        let text = "e\u{301}".repeat(4);
        assert_eq!(
            chunk(&text, 3),
            vec!["e\u{301}", "e\u{301}", "e\u{301}", "e\u{301}"]
        );
        let family = "👨\u{200d}👩\u{200d}👧";
        assert_eq!(chunk(&format!("ab{family}"), 5), vec!["ab", family]);
    }

    #[test]
    fn does_not_split_inline_spans() {
        let text = "word *bold words here* _it alic_ ~str ike~ `co de` tail";
        assert_eq!(
            chunk(text, 21),
            vec![
                "word",
                "*bold words here*",
                "_it alic_ ~str ike~",
                "`co de` tail"
            ]
        );
        assert_eq!(
            chunk("a ```mono spaced``` b", 17),
            vec!["a", "```mono spaced```", "b"]
        );
    }

    #[test]
    fn splits_a_span_only_when_it_alone_is_too_long() {
        assert_eq!(
            chunk("*bold that is far too long*", 12),
            vec!["*bold that", "is far too", "long*"]
        );
    }

    #[test]
    fn keeps_a_fitting_code_block_whole() {
        let text = "intro line\n```\nlet a = 1;\nlet b = 2;\n```\noutro";
        assert_eq!(
            chunk(text, 35),
            vec!["intro line", "```\nlet a = 1;\nlet b = 2;\n```\noutro"]
        );
    }

    #[test]
    fn splits_a_long_code_block_with_fences() {
        let code = (1..=6)
            .map(|i| format!("  line {i};"))
            .collect::<Vec<_>>()
            .join("\n");
        let text = format!("Here:\n```\n{code}\n```\nEnd.");
        // The line break before the block is outside it, so it wins.
        let chunks = chunk(&text, 40);
        assert_eq!(
            chunks,
            vec![
                "Here:",
                "```\n  line 1;\n  line 2;\n  line 3;\n```",
                "```\n  line 4;\n  line 5;\n  line 6;\n```",
                "End.",
            ]
        );
        // A block that starts the text is cut inside at once.
        let chunks = chunk(&format!("```\n{code}\n```\nEnd."), 42);
        assert_eq!(
            chunks,
            vec![
                "```\n  line 1;\n  line 2;\n  line 3;\n```",
                "```\n  line 4;\n  line 5;\n  line 6;\n```\nEnd.",
            ]
        );
        for c in &chunks {
            assert_eq!(c.matches("```").count() % 2, 0, "{c:?}");
        }
    }

    #[test]
    fn splits_an_overlong_code_line() {
        let text = format!("```\n{}\n```", "x".repeat(30));
        let chunks = chunk(&text, 20);
        assert!(lens(&chunks).iter().all(|&l| l <= 20), "{chunks:?}");
        for c in &chunks {
            assert!(c.starts_with("```\n") && c.ends_with("\n```"), "{c:?}");
        }
        let joined: String = chunks.concat().chars().filter(|&c| c != '`').collect();
        assert_eq!(joined.replace('\n', ""), "x".repeat(30));
    }

    #[test]
    fn tiny_limits_still_work() {
        assert_eq!(chunk("abc", 0), vec!["a", "b", "c"]);
        assert_eq!(chunk("```\nab\n```", 4), vec!["```", "ab", "```"]);
    }

    #[test]
    fn render_converts_then_chunks() {
        let md = "# Title\n\nSome **bold** text.\n\n- item one\n- item two";
        assert_eq!(
            render(md, 30),
            vec!["*Title*\n\nSome *bold* text.", "- item one\n- item two"]
        );
    }

    // ---- property tests ---------------------------------------------------

    /// Checks the exact no-loss guarantee on the plan, and that each chunk
    /// is its piece rendered.
    fn check_lossless(text: &str, limit: usize) -> Result<(), TestCaseError> {
        let chars: Vec<char> = text.chars().collect();
        let pieces = plan(&chars, limit);
        let chunks = chunk(text, limit);
        prop_assert_eq!(pieces.len(), chunks.len());
        let mut at = 0;
        for (k, piece) in pieces.iter().enumerate() {
            prop_assert_eq!(&piece.render(&chars), &chunks[k]);
            prop_assert!(piece.start >= at && piece.start < piece.end);
            prop_assert!(chars[at..piece.start].iter().all(|&c| is_ws(c)));
            let reopened = k > 0 && pieces[k - 1].close;
            prop_assert_eq!(piece.reopen, reopened);
            at = piece.end;
        }
        prop_assert!(chars[at..].iter().all(|&c| is_ws(c)));
        if let Some(last) = pieces.last() {
            prop_assert!(!last.close);
        }
        Ok(())
    }

    fn no_ws(s: &str) -> String {
        s.chars().filter(|&c| !is_ws(c)).collect()
    }

    fn markdownish() -> impl Strategy<Value = String> {
        let token = prop_oneof![
            4 => "[a-zA-Z0-9]{1,12}",
            3 => Just(" ".to_string()),
            2 => Just("\n".to_string()),
            1 => Just("\n\n".to_string()),
            1 => Just("\n```\n".to_string()),
            1 => Just("```".to_string()),
            1 => prop_oneof![Just("*"), Just("**"), Just("_"), Just("__"), Just("~~"), Just("~"), Just("`")]
                .prop_map(str::to_string),
            1 => prop_oneof![
                Just("é"), Just("e\u{301}"), Just("😀"), Just("👍🏽"), Just("👨\u{200d}👩\u{200d}👧"),
                Just("\u{a0}"), Just("\t"), Just("# "), Just("- [ ] "), Just("> "), Just("1. "),
                Just("[x](https://y.z/a_b)"), Just("| a | b |\n|---|---|\n| 1 | 2 |\n"), Just("\\*"),
            ]
            .prop_map(str::to_string),
            1 => "\\PC{1,6}",
        ];
        prop::collection::vec(token, 0..300).prop_map(|t| t.concat())
    }

    fn any_text() -> impl Strategy<Value = String> {
        prop_oneof![markdownish(), any::<String>(), "(\\PC|\\s){0,600}"]
    }

    fn limit() -> impl Strategy<Value = usize> {
        prop_oneof![20usize..120, 20usize..5000]
    }

    fn word() -> impl Strategy<Value = String> {
        (
            "[a-zA-Z0-9é😀]{1,3}",
            prop_oneof![Just(""), Just("\u{301}")],
        )
            .prop_map(|(w, mark)| format!("{w}{mark}"))
    }

    fn words(max: usize) -> impl Strategy<Value = String> {
        prop::collection::vec(word(), 1..=max).prop_map(|w| w.join(" "))
    }

    /// Words, whole spans no longer than 19 chars, and code blocks.
    fn spanned() -> impl Strategy<Value = String> {
        let item = prop_oneof![
            4 => word(),
            2 => words(3).prop_map(|w| format!("*{w}*")),
            2 => words(3).prop_map(|w| format!("_{w}_")),
            1 => words(3).prop_map(|w| format!("~{w}~")),
            1 => "[a-z*_~ ]{1,12}".prop_map(|w| format!("`{w}`")),
            1 => (word(), word(), word()).prop_map(|(a, b, c)| format!("*{a} _{b}_ {c}*")),
            1 => prop::collection::vec("[a-z*_~ ]{0,30}", 1..12)
                .prop_map(|lines| format!("\n```\n{}\n```\n", lines.join("\n"))),
        ];
        let sep = prop_oneof![3 => Just(" "), 1 => Just("\n"), 1 => Just("\n\n")];
        prop::collection::vec((item, sep), 0..200).prop_map(|parts| {
            parts
                .into_iter()
                .map(|(item, sep)| item + sep)
                .collect::<String>()
        })
    }

    /// Every marker outside code comes in pairs, and fences too.
    fn balanced(chunk: &str) -> bool {
        let mut fences = 0;
        let mut in_code = false;
        let mut outside = String::new();
        for line in chunk.split('\n') {
            if line.trim().starts_with(FENCE) {
                fences += 1;
                in_code = !in_code;
            } else if !in_code {
                outside.push_str(line);
                outside.push('\n');
            }
        }
        let parts: Vec<&str> = outside.split('`').collect();
        let even = |m: char| {
            parts
                .iter()
                .step_by(2)
                .map(|p| p.matches(m).count())
                .sum::<usize>()
                % 2
                == 0
        };
        fences % 2 == 0 && parts.len() % 2 == 1 && even('*') && even('_') && even('~')
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn chunks_fit_are_nonempty_and_lose_nothing(text in any_text(), limit in limit()) {
            let chunks = chunk(&text, limit);
            for c in &chunks {
                prop_assert!(c.chars().count() <= limit, "{} > {limit}: {c:?}", c.chars().count());
                prop_assert!(!c.trim().is_empty());
            }
            // Public view: whitespace aside, only backticks (whole fences) are added.
            let joined = no_ws(&chunks.concat());
            let input = no_ws(&text);
            prop_assert_eq!(joined.replace('`', ""), input.replace('`', ""));
            let added = joined.matches('`').count() - input.matches('`').count();
            prop_assert_eq!(added % 6, 0);
            // Exact view: bodies in order, separated only by whitespace.
            check_lossless(&text, limit)?;
        }

        #[test]
        fn tiny_limits_keep_the_invariants(text in markdownish(), limit in 0usize..20) {
            for c in chunk(&text, limit) {
                prop_assert!(c.chars().count() <= limit.max(1));
                prop_assert!(!c.trim().is_empty());
            }
            check_lossless(&text, limit)?;
        }

        #[test]
        fn whole_spans_are_never_split(text in spanned(), limit in limit()) {
            prop_assert!(balanced(&text), "generator made unbalanced text");
            let chunks = chunk(&text, limit);
            for c in &chunks {
                prop_assert!(c.chars().count() <= limit);
                prop_assert!(balanced(c), "unbalanced chunk {c:?}\nof {text:?}");
            }
            check_lossless(&text, limit)?;
        }

        #[test]
        fn render_never_panics_and_fits(md in any_text(), limit in limit()) {
            for c in render(&md, limit) {
                prop_assert!(c.chars().count() <= limit);
                prop_assert!(!c.trim().is_empty());
            }
        }

        #[test]
        fn text_that_fits_is_one_chunk(text in any_text()) {
            let trimmed = text.trim_matches(is_ws);
            let limit = trimmed.chars().count().max(1);
            let chunks = chunk(&text, limit);
            if trimmed.is_empty() {
                prop_assert!(chunks.is_empty());
            } else {
                prop_assert_eq!(chunks, vec![trimmed.to_string()]);
            }
        }
    }
}
