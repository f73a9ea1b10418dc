//! Markdown → WhatsApp text, and cutting long text into sendable chunks.
//!
//! The agent answers in Markdown; WhatsApp understands a smaller, different
//! syntax. [`to_whatsapp`] rewrites one into the other, [`chunk`] cuts text
//! into messages of bounded length, and [`render`] does both. Everything
//! here is pure: no I/O.
//!
//! # Conversion rules ([`to_whatsapp`])
//!
//! The Markdown is parsed by `pulldown-cmark` (CommonMark, plus GitHub's
//! tables, strikethrough and task lists); the small renderer below turns its
//! events into WhatsApp text. Whatever the parser reads as plain text comes
//! out as that text: `snake_case`, a lone `*`, `\*` (as `*`), `&amp;` (as
//! `&`). Line endings `\r\n` and `\r` are read as `\n`.
//!
//! Blocks:
//! - Blocks keep the author's spacing: two blocks are separated by a blank
//!   line when the source had one between them, else by a line break. Soft
//!   and hard line breaks stay line breaks. Outside code, trailing spaces
//!   are removed from every line; the whole text is trimmed.
//! - Headings (`#` … `######`, or a line underlined with `===` or `---`)
//!   become `*text*` (bold) on their own line; bold inside a heading is
//!   merged into the heading's bold, and an empty heading disappears.
//! - Thematic breaks (`---`, `***`, `___`, `- - -`, …) become `———`.
//! - Bullet items become `- x`; ordered items `N. x` or `N) x`, numbered on
//!   from the list's first number. Task items become `☐ x` / `☑ x`, or
//!   `N. ☐ x` when numbered. A nested list is indented by the width of its
//!   parent's marker (2 for `- `, 3 for `1. `), and so are an item's
//!   continuation lines.
//! - Quotes become `> ` lines (nested: `> > `); a blank line inside a quote
//!   is `>`.
//! - Code blocks (fenced or indented) become ```` ``` ```` lines at the
//!   start of a line, even inside a list or quote: the language tag is
//!   dropped and the content is copied verbatim. An unclosed fence runs to
//!   the end of the text and is closed there.
//! - A table becomes one line per body row: `Header: cell, Header: cell`.
//!   Empty cells are skipped, and a table with no body rows gives its
//!   header cells joined by `, `. As in GitHub's tables, a row's cells
//!   beyond the header's are dropped, a `|` inside a cell (code spans
//!   included) must be escaped as `\|`, and a line right under a table is
//!   one more row unless it starts another block.
//! - HTML blocks pass through as text.
//!
//! Inline:
//! - Strong → `*b*`, emphasis → `_i_`, strikethrough (`~~s~~` or `~s~`) →
//!   `~s~`. A style nested in itself is not doubled; `***x***` is emphasis
//!   around strong, `_*x*_`. Emphasis delimiters inside a bare
//!   `http(s)://` URL are kept as they were, so such a URL stays intact
//!   (CommonMark does not see bare URLs).
//! - Code spans → `` `code` ``; code holding a backtick gets a longer
//!   backtick fence (``` ``a ` b`` ```).
//! - Links → `text (url)`; just `url` when the text is empty or repeats the
//!   url (ignoring an `http(s)://` prefix and a trailing `/`); just the text
//!   when the url is empty, or for `[a@b.c](mailto:a@b.c)`. Autolinks
//!   `<https://x>` → `https://x`. Reference links resolve to their
//!   definitions (which disappear); an undefined `[ref][1]` stays text.
//!   Images → `alt (url)`, or `url` without alt.
//! - Inline HTML passes through as text.
//!
//! # Chunking rules ([`chunk`])
//!
//! Lengths are in `char`s. Each chunk is at most `limit` long (a `limit` of
//! 0 counts as 1). Cuts fall only between grapheme clusters (extended, as
//! segmented by `unicode-segmentation`), so a flag, an emoji with its skin
//! tone, a ZWJ sequence or a letter with its combining marks is never cut in
//! half, unless that one cluster alone is longer than the limit. Whitespace
//! means a cluster made only of whitespace (a space carrying a combining
//! mark is not one).
//!
//! A chunk ends at the last break that fits, preferring, in this order: a
//! paragraph break (a whitespace run holding a blank line), a line break, a
//! space — all outside any formatting span — then a line break, then a
//! space inside a ```` ``` ```` block, then a space inside an inline span
//! (`*bold*`, `_italic_`, `~strike~`, `` `code` ``, ```` ```mono``` ````),
//! then a no-break space, and only when the window holds no whitespace at
//! all is a single over-long word cut, at the last cluster boundary that
//! fits. A break outside every span always wins over one inside, so a span
//! is cut only when no boundary outside it fits in the chunk.
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

use std::ops::Range;

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};
use unicode_segmentation::UnicodeSegmentation;

/// Opens and closes a WhatsApp monospace block.
const FENCE: &str = "```";
/// What an added fence costs: three backticks and a newline.
const FENCE_COST: usize = 4;
/// Below this limit code blocks are not re-fenced when split.
const MIN_FENCED_LIMIT: usize = 16;
/// What a thematic break becomes.
const RULE: &str = "———";

/// Markdown → WhatsApp text, by the rules in the module documentation.
pub fn to_whatsapp(markdown: &str) -> String {
    let text = markdown.replace("\r\n", "\n").replace('\r', "\n");
    let options =
        Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    let mut writer = Writer::new(&text);
    for (event, range) in Parser::new_ext(&text, options).into_offset_iter() {
        writer.event(event, range);
    }
    writer.out.trim().to_string()
}

/// Splits text into chunks of at most `limit` characters (chars, not
/// bytes), preferring paragraph, then line, then word boundaries, never
/// cutting a grapheme cluster, and never cutting inside a formatting span
/// while a boundary outside it fits. A code block longer than the limit is
/// cut at line boundaries and each part is closed and reopened with
/// ```` ``` ````. Only whitespace at the cuts is dropped; see the module
/// documentation for the exact guarantee.
pub fn chunk(text: &str, limit: usize) -> Vec<String> {
    let text = Chars::new(text);
    plan(&text, limit)
        .iter()
        .map(|piece| piece.render(&text.c))
        .collect()
}

/// [`to_whatsapp`], then [`chunk`].
pub fn render(markdown: &str, limit: usize) -> Vec<String> {
    chunk(&to_whatsapp(markdown), limit)
}

// ---------------------------------------------------------------------------
// Rendering parser events
// ---------------------------------------------------------------------------

/// A quote or list item around the lines being written.
enum Container {
    Quote,
    /// A list item: its marker until its first line is written, and the
    /// indentation of its later lines.
    Item {
        marker: Option<String>,
        width: usize,
    },
}

/// An open emphasis-like span.
enum Span {
    /// A WhatsApp style: `*`, `_` or `~`.
    Style(char),
    /// Delimiters kept as they were (inside a bare URL).
    Literal(String),
}

/// Text collected instead of written: a link's or image's text, or a
/// table cell.
struct Capture {
    text: String,
    link: Option<Target>,
}

/// Where a link or image points, and its text without formatting.
struct Target {
    url: String,
    plain: String,
}

#[derive(Default)]
struct Table {
    head: Vec<String>,
    row: Vec<String>,
    rows: usize,
}

#[derive(Default)]
struct Writer<'s> {
    /// The Markdown (line endings normalised); event ranges index it.
    src: &'s str,
    /// Bare `http(s)://` URLs in `src`, in order.
    urls: Vec<Range<usize>>,
    out: String,
    containers: Vec<Container>,
    /// For each open list, the next item's number (`None`: bullets).
    lists: Vec<Option<u64>>,
    /// Whether the current output line has been started (prefix written).
    line_open: bool,
    /// Line breaks owed before the next text: 1, or 2 for a blank line.
    breaks: usize,
    /// Where, in `src`, the last text or block ended.
    last_end: usize,
    /// Whether a block has ended since the last text.
    after_block: bool,
    spans: Vec<Span>,
    /// How many spans of each WhatsApp style are open: `*`, `_`, `~`.
    styles: [usize; 3],
    /// Opening markers not written yet: they go out with the next text, and
    /// a span that closes before any text leaves nothing.
    pending: String,
    captures: Vec<Capture>,
    /// The code block being collected.
    code: Option<String>,
    table: Option<Table>,
}

impl<'s> Writer<'s> {
    fn new(src: &'s str) -> Self {
        Writer {
            src,
            urls: bare_urls(src),
            out: String::with_capacity(src.len()),
            ..Writer::default()
        }
    }

    fn event(&mut self, event: Event<'_>, range: Range<usize>) {
        match event {
            Event::Start(tag) => self.start(tag, &range),
            Event::End(tag) => self.end(tag, &range),
            Event::Text(text) => {
                if let Some(code) = &mut self.code {
                    code.push_str(&text);
                } else {
                    self.content(&range);
                    self.add_plain(&text);
                    self.put(&text);
                }
            }
            Event::Code(code) => {
                self.content(&range);
                self.add_plain(&code);
                self.put(&code_span(&code));
            }
            Event::SoftBreak | Event::HardBreak => self.put("\n"),
            Event::Rule => {
                self.block_start(range.start);
                self.put(RULE);
                self.block_end(&range);
            }
            Event::TaskListMarker(done) => self.task(done),
            // Math and footnotes are not enabled; were they, their text
            // would do.
            Event::Html(text)
            | Event::InlineHtml(text)
            | Event::InlineMath(text)
            | Event::DisplayMath(text)
            | Event::FootnoteReference(text) => {
                self.content(&range);
                self.put(&text);
            }
        }
    }

    fn start(&mut self, tag: Tag<'_>, range: &Range<usize>) {
        if is_block(&tag) {
            self.block_start(range.start);
        }
        match tag {
            Tag::Heading { .. } => self.open_style('*'),
            Tag::BlockQuote(_) => {
                // A blank line before the quote is not part of it.
                self.flush_breaks();
                self.containers.push(Container::Quote);
            }
            Tag::CodeBlock(_) => self.code = Some(String::new()),
            Tag::List(first) => self.lists.push(first),
            Tag::Item => {
                let marker = self.item_marker(range.start);
                self.containers.push(Container::Item {
                    width: marker.chars().count(),
                    marker: Some(marker),
                });
            }
            Tag::Table(_) => self.table = Some(Table::default()),
            Tag::TableCell => self.captures.push(Capture {
                text: String::new(),
                link: None,
            }),
            Tag::Emphasis => self.open_span(range.start, '_', 1),
            Tag::Strong => self.open_span(range.start, '*', 2),
            Tag::Strikethrough => self.open_span(range.start, '~', 2),
            Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. } => {
                self.resume(range.start);
                self.flush_pending();
                self.captures.push(Capture {
                    text: String::new(),
                    link: Some(Target {
                        url: dest_url.to_string(),
                        plain: String::new(),
                    }),
                });
            }
            _ => {}
        }
    }

    fn end(&mut self, tag: TagEnd, range: &Range<usize>) {
        match tag {
            TagEnd::Heading(_) | TagEnd::Emphasis | TagEnd::Strong | TagEnd::Strikethrough => {
                self.close_span();
            }
            TagEnd::BlockQuote(_) => {
                self.containers.pop();
            }
            TagEnd::CodeBlock => {
                let code = self.code.take().unwrap_or_default();
                self.code_block(&code);
            }
            TagEnd::List(_) => {
                self.lists.pop();
            }
            TagEnd::Item => {
                if let Some(Container::Item {
                    marker: Some(_), ..
                }) = self.containers.last()
                {
                    // An empty item still shows its marker.
                    self.start_line();
                }
                self.containers.pop();
            }
            TagEnd::TableCell => {
                let cell = self.captures.pop().map(|c| c.text).unwrap_or_default();
                if let Some(table) = &mut self.table {
                    table.row.push(cell.trim().to_string());
                }
            }
            TagEnd::TableHead => {
                if let Some(table) = &mut self.table {
                    table.head = std::mem::take(&mut table.row);
                }
            }
            TagEnd::TableRow => self.table_row(),
            TagEnd::Table => {
                if let Some(table) = self.table.take()
                    && table.rows == 0
                {
                    let head: Vec<&str> = table
                        .head
                        .iter()
                        .map(String::as_str)
                        .filter(|h| !h.is_empty())
                        .collect();
                    self.table_line(&head.join(", "));
                }
            }
            TagEnd::Link | TagEnd::Image => self.link_end(),
            _ => {}
        }
        if matches!(
            tag,
            TagEnd::Paragraph
                | TagEnd::Heading(_)
                | TagEnd::BlockQuote(_)
                | TagEnd::CodeBlock
                | TagEnd::HtmlBlock
                | TagEnd::List(_)
                | TagEnd::Item
                | TagEnd::Table
        ) {
            self.block_end(range);
        }
    }

    // ---- layout -----------------------------------------------------------

    /// A block starts at `at`: it goes on a new line, after a blank one when
    /// the source has a blank line since the last text or block.
    fn block_start(&mut self, at: usize) {
        if self.line_open {
            let between = self.src.get(self.last_end..at).unwrap_or("");
            let blank_line = between.matches('\n').count() >= 2;
            self.breaks = self.breaks.max(1 + usize::from(blank_line));
        }
        self.after_block = false;
    }

    fn block_end(&mut self, range: &Range<usize>) {
        self.ended(range);
        self.after_block = true;
    }

    /// Text or a block at `range` has been written: blank lines after it
    /// (and quote markers on them) are gaps, not its own.
    fn ended(&mut self, range: &Range<usize>) {
        let body =
            self.src[range.clone()].trim_end_matches(|c: char| c.is_whitespace() || c == '>');
        self.last_end = self.last_end.max(range.start + body.len());
    }

    /// Inline content at `at`. In a tight list item text follows a nested
    /// block with no paragraph of its own, so it starts a block itself.
    fn resume(&mut self, at: usize) {
        if self.after_block {
            self.block_start(at);
        }
    }

    fn content(&mut self, range: &Range<usize>) {
        self.resume(range.start);
        self.ended(range);
    }

    /// Writes owed line breaks; blank lines get the quote markers around
    /// them.
    fn flush_breaks(&mut self) {
        if self.out.is_empty() {
            self.breaks = 0;
        }
        for k in 0..self.breaks {
            if k > 0 {
                let prefix = self.prefix(true);
                self.out.push_str(&prefix);
            }
            let kept = self.out.trim_end_matches([' ', '\t']).len();
            self.out.truncate(kept);
            self.out.push('\n');
            self.line_open = false;
        }
        self.breaks = 0;
    }

    /// Gets the output ready for text on the current line.
    fn start_line(&mut self) {
        self.flush_breaks();
        if !self.line_open {
            let prefix = self.prefix(false);
            self.out.push_str(&prefix);
            self.line_open = true;
        }
    }

    /// What starts a line: quote markers, and list markers or indentation.
    /// A list item's marker is used once, on its first line.
    fn prefix(&mut self, blank: bool) -> String {
        let mut prefix = String::new();
        for container in &mut self.containers {
            match container {
                Container::Quote => prefix.push_str("> "),
                Container::Item { marker, width } => {
                    if !blank && let Some(marker) = marker.take() {
                        prefix.push_str(&marker);
                    } else {
                        prefix.extend(std::iter::repeat_n(' ', *width));
                    }
                }
            }
        }
        prefix
    }

    /// Writes inline text; `\n` in it breaks the line.
    fn put(&mut self, text: &str) {
        if let Some(capture) = self.captures.last_mut() {
            capture.text.push_str(&self.pending);
            capture.text.push_str(text);
            self.pending.clear();
            return;
        }
        for (k, line) in text.split('\n').enumerate() {
            if k > 0 {
                self.breaks = self.breaks.max(1);
            }
            if !line.is_empty() {
                self.start_line();
                self.out.push_str(&self.pending);
                self.out.push_str(line);
                self.pending.clear();
            }
        }
    }

    fn flush_pending(&mut self) {
        if !self.pending.is_empty() {
            let pending = std::mem::take(&mut self.pending);
            self.put(&pending);
        }
    }

    // ---- blocks -----------------------------------------------------------

    fn item_marker(&mut self, at: usize) -> String {
        match self.lists.last_mut() {
            Some(Some(next)) => {
                let number = *next;
                *next += 1;
                let after_digits = self.src[at..]
                    .trim_start()
                    .trim_start_matches(|c: char| c.is_ascii_digit());
                let delimiter = if after_digits.starts_with(')') {
                    ')'
                } else {
                    '.'
                };
                format!("{number}{delimiter} ")
            }
            _ => "- ".to_string(),
        }
    }

    fn task(&mut self, done: bool) {
        let mark = if done { '☑' } else { '☐' };
        match self.containers.last_mut() {
            Some(Container::Item {
                marker: Some(marker),
                ..
            }) => {
                if marker == "- " {
                    marker.clear();
                }
                marker.push(mark);
                marker.push(' ');
            }
            _ => self.put(&format!("{mark} ")),
        }
    }

    /// A code block, its fences at the start of their lines.
    fn code_block(&mut self, code: &str) {
        let marker_pending = self.containers.iter().any(|c| {
            matches!(
                c,
                Container::Item {
                    marker: Some(_),
                    ..
                }
            )
        });
        if marker_pending {
            // An item that opens with code: its marker gets a line.
            self.start_line();
        }
        if self.line_open {
            self.breaks = self.breaks.max(1);
        }
        self.flush_breaks();
        let body = code.strip_suffix('\n').unwrap_or(code);
        self.out.push_str(FENCE);
        self.out.push('\n');
        if !body.is_empty() {
            self.out.push_str(body);
            self.out.push('\n');
        }
        self.out.push_str(FENCE);
        self.line_open = true;
    }

    fn table_row(&mut self) {
        let Some(table) = &mut self.table else {
            return;
        };
        table.rows += 1;
        let parts: Vec<String> = table
            .row
            .iter()
            .enumerate()
            .filter(|(_, value)| !value.is_empty())
            .map(|(k, value)| match table.head.get(k) {
                Some(label) if !label.is_empty() => format!("{label}: {value}"),
                _ => value.clone(),
            })
            .collect();
        table.row.clear();
        self.table_line(&parts.join(", "));
    }

    fn table_line(&mut self, line: &str) {
        if line.is_empty() {
            return;
        }
        if self.line_open {
            self.breaks = self.breaks.max(1);
        }
        self.put(line);
    }

    // ---- inline -----------------------------------------------------------

    /// Opens emphasis (`_`, delimiter length 1), strong (`*`, 2) or
    /// strikethrough (`~`, up to 2) whose source starts at `at`.
    fn open_span(&mut self, at: usize, style: char, len: usize) {
        self.resume(at);
        if self.in_url(at) {
            let rest = &self.src[at..];
            let lead = rest.chars().next().unwrap_or(style);
            let delimiter: String = rest.chars().take_while(|&c| c == lead).take(len).collect();
            self.pending.push_str(&delimiter);
            self.spans.push(Span::Literal(delimiter));
        } else {
            self.open_style(style);
        }
    }

    fn open_style(&mut self, style: char) {
        let open = &mut self.styles[style_index(style)];
        *open += 1;
        if *open == 1 {
            self.pending.push(style);
        }
        self.spans.push(Span::Style(style));
    }

    fn close_span(&mut self) {
        match self.spans.pop() {
            Some(Span::Style(style)) => {
                let open = &mut self.styles[style_index(style)];
                *open -= 1;
                if *open == 0 {
                    if self.pending.ends_with(style) {
                        self.pending.pop();
                    } else {
                        self.put(&style.to_string());
                    }
                }
            }
            Some(Span::Literal(delimiter)) => self.put(&delimiter),
            None => {}
        }
    }

    fn in_url(&self, at: usize) -> bool {
        let k = self.urls.partition_point(|url| url.end <= at);
        self.urls.get(k).is_some_and(|url| url.start < at)
    }

    /// Adds text to the innermost link's plain text.
    fn add_plain(&mut self, text: &str) {
        if let Some(target) = self.captures.iter_mut().rev().find_map(|c| c.link.as_mut()) {
            target.plain.push_str(text);
        }
    }

    fn link_end(&mut self) {
        let Some(Capture {
            text,
            link: Some(Target { url, plain }),
        }) = self.captures.pop()
        else {
            return;
        };
        let (text, plain, url) = (text.trim(), plain.trim(), url.trim());
        let shown = if url.is_empty() || url.strip_prefix("mailto:") == Some(plain) {
            text.to_string()
        } else if text.is_empty() || same_target(plain, url) {
            url.to_string()
        } else {
            format!("{text} ({url})")
        };
        self.put(&shown);
    }
}

/// The blocks whose start begins a new line (table rows and cells are
/// laid out by the table).
fn is_block(tag: &Tag<'_>) -> bool {
    matches!(
        tag,
        Tag::Paragraph
            | Tag::Heading { .. }
            | Tag::BlockQuote(_)
            | Tag::CodeBlock(_)
            | Tag::HtmlBlock
            | Tag::List(_)
            | Tag::Item
            | Tag::Table(_)
    )
}

fn style_index(style: char) -> usize {
    match style {
        '*' => 0,
        '_' => 1,
        _ => 2,
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

/// A code span: between single backticks, or between a longer run than
/// any inside (padded with spaces when the code starts or ends with one).
fn code_span(code: &str) -> String {
    let longest = code.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    if longest == 0 {
        return format!("`{code}`");
    }
    let ticks = "`".repeat(longest + 1);
    let pad = if code.starts_with('`') || code.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{ticks}{pad}{code}{pad}{ticks}")
}

/// The bare `http(s)://` URLs in `src`, as byte ranges: up to whitespace,
/// `<`, `>` or a backtick, without trailing punctuation or an unbalanced
/// `)`.
fn bare_urls(src: &str) -> Vec<Range<usize>> {
    let lower = src.to_ascii_lowercase();
    let mut urls = Vec::new();
    let mut from = 0;
    while let Some(found) = lower[from..].find("http") {
        let start = from + found;
        from = start + 4;
        let rest = &lower[start..];
        let scheme = if rest.starts_with("https://") {
            8
        } else if rest.starts_with("http://") {
            7
        } else {
            continue;
        };
        if src[..start]
            .chars()
            .next_back()
            .is_some_and(char::is_alphanumeric)
        {
            continue;
        }
        let len = src[start..]
            .find(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '`'))
            .unwrap_or(src.len() - start);
        let mut end = start + len;
        let opened = src[start..end].matches('(').count();
        let mut closed = src[start..end].matches(')').count();
        while end > start + scheme {
            let last = src[..end].chars().next_back().unwrap_or(' ');
            if last == ')' && closed > opened {
                closed -= 1;
            } else if !".,;:!?'\"*_~]".contains(last) {
                break;
            }
            end -= last.len_utf8();
        }
        if end > start + scheme {
            urls.push(start..end);
            from = end;
        }
    }
    urls
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
const P_NO_BREAK: u8 = 6;
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

/// The text to cut, as chars, with its grapheme clusters.
struct Chars {
    c: Vec<char>,
    /// `edge[k]`: whether a cluster starts at `k` (or `k` is the end).
    edge: Vec<bool>,
    /// `ws[k]`: whether `c[k]` is in a cluster of whitespace only; such
    /// clusters are what the cuts may drop.
    ws: Vec<bool>,
}

impl Chars {
    fn new(text: &str) -> Chars {
        let mut c = Vec::with_capacity(text.len());
        let mut edge = Vec::with_capacity(text.len() + 1);
        let mut ws = Vec::with_capacity(text.len());
        for cluster in text.graphemes(true) {
            let blank = cluster.chars().all(char::is_whitespace);
            for (k, ch) in cluster.chars().enumerate() {
                c.push(ch);
                edge.push(k == 0);
                ws.push(blank);
            }
        }
        edge.push(true);
        Chars { c, edge, ws }
    }
}

/// No-break spaces: cut at only when nothing better fits.
fn is_no_break_space(c: char) -> bool {
    matches!(c, '\u{a0}' | '\u{2007}' | '\u{202f}')
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
    fn new(text: &Chars, fenced: bool) -> Layout {
        let (c, ws) = (&text.c, &text.ws);
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
            if !ws[k] {
                k += 1;
                continue;
            }
            let s = k;
            while k < n && ws[k] {
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
            let no_break = c[s..e].iter().all(|&x| is_no_break_space(x));
            runs.push(Run {
                s,
                e,
                priority: priority.map(|p| if no_break { P_NO_BREAK } else { p }),
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
fn plan(text: &Chars, limit: usize) -> Vec<Piece> {
    let (c, ws) = (&text.c, &text.ws);
    let limit = limit.max(1);
    let fenced = limit >= MIN_FENCED_LIMIT;
    let layout = Layout::new(text, fenced);
    let runs = &layout.runs;
    let mut rest_end = c.len();
    while rest_end > 0 && ws[rest_end - 1] {
        rest_end -= 1;
    }
    let mut pieces = Vec::new();
    let mut pos = 0;
    let mut reopen = false;
    loop {
        let budget = limit - if reopen { FENCE_COST } else { 0 };
        let mut first = pos;
        while first < rest_end && ws[first] {
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

        // No whitespace to cut at: cut the word at the last cluster edge
        // that fits, or inside the first cluster when it alone is longer.
        let back_off = |end: usize| {
            (first + 1..=end)
                .rev()
                .find(|&p| text.edge[p])
                .unwrap_or(end)
        };
        let (mut p, mut close) = layout.code_split(first, back_off(pos + budget));
        if !fenced {
            close = false;
        }
        if close && p - pos + FENCE_COST > budget {
            (p, close) = layout.code_split(first, back_off(pos + budget - FENCE_COST));
        }
        debug_assert!(p > first, "empty piece at {pos}");
        if !reopen && c[pos..p].iter().all(|x| x.is_whitespace()) {
            // A cut inside a cluster that starts with a space (one carrying
            // combining marks) would leave a blank chunk: drop the space.
            pos = p;
            continue;
        }
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

fn run_len(c: &[char], i: usize, ch: char) -> usize {
    c[i..].iter().take_while(|&&x| x == ch).count()
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
        // CommonMark reads `***x***` as emphasis around strong.
        assert_eq!(wa("***both***"), "_*both*_");
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
        assert_eq!(wa("AT&T &amp; &copy;"), "AT&T & ©");
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
        // Brackets are allowed in a CommonMark link destination.
        assert_eq!(wa("[v6](http://[::1]/)"), "v6 (http://[::1]/)");
        assert_eq!(wa("[ref][1]\n\n[1]: https://r.dev"), "ref (https://r.dev)");
        assert_eq!(
            wa("[a\nb](https://u.dev) **[c](https://c.dev)**"),
            "a\nb (https://u.dev) *c (https://c.dev)*"
        );
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
        assert_eq!(
            wa("see https://x.dev/a_(b)_ ok"),
            "see https://x.dev/a_(b)_ ok"
        );
        assert_eq!(wa("https://x.dev/~a~ and ~b~"), "https://x.dev/~a~ and ~b~");
    }

    #[test]
    fn html_like_tags_stay() {
        assert_eq!(wa("a <b>tag</b> <br/> x"), "a <b>tag</b> <br/> x");
        assert_eq!(wa("Vec<u8> and <T>"), "Vec<u8> and <T>");
        assert_eq!(
            wa("<div>\nhi\n</div>\n\nafter"),
            "<div>\nhi\n</div>\n\nafter"
        );
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
        assert_eq!(wa("a\n\n#\n\nb"), "a\n\nb");
        // Setext headings: a `---` right under text underlines it.
        assert_eq!(wa("Title\n==="), "*Title*");
        assert_eq!(wa("text\n---\nmore"), "*text*\nmore");
    }

    #[test]
    fn bullet_lists() {
        assert_eq!(wa("* one\n+ two\n- three"), "- one\n- two\n- three");
        assert_eq!(
            wa("- a\n  * nested\n    + deeper"),
            "- a\n  - nested\n    - deeper"
        );
        assert_eq!(wa("* **Name**: desc"), "- *Name*: desc");
        // Nesting is by CommonMark's rules, indented by the parent marker.
        assert_eq!(wa("- a\n    - b"), "- a\n  - b");
        assert_eq!(wa("1. a\n  - b"), "1. a\n- b");
        assert_eq!(wa("- a\n\n  b\n- c"), "- a\n\n  b\n- c");
        assert_eq!(wa("- a\n  continued"), "- a\n  continued");
        assert_eq!(wa("-\n- b"), "-\n- b");
    }

    #[test]
    fn numbered_lists_are_kept() {
        assert_eq!(
            wa("1. one\n2. **two**\n10) ten"),
            "1. one\n2. *two*\n10) ten"
        );
        assert_eq!(wa("1. a\n   1. nested"), "1. a\n   1. nested");
        assert_eq!(wa("1. a\n1. b\n1. c"), "1. a\n2. b\n3. c");
        assert_eq!(wa("3. x\n4. y"), "3. x\n4. y");
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
        assert_eq!(
            wa("- a\n  ```\n  x\n  ```\n  after"),
            "- a\n```\nx\n```\n  after"
        );
        assert_eq!(wa("- ```\n  code\n  ```"), "-\n```\ncode\n```");
        assert_eq!(wa("> ```\n> code\n> ```"), "```\ncode\n```");
        assert_eq!(
            wa("text\n\n    indented code\n    more"),
            "text\n\n```\nindented code\nmore\n```"
        );
    }

    #[test]
    fn tables() {
        let md = "| Name | Age |\n|---|---|\n| Ann | 31 |\n| Bob | 42 |";
        assert_eq!(wa(md), "Name: Ann, Age: 31\nName: Bob, Age: 42");
        let md = "Name | Age\n:--- | ---:\nAnn | 31";
        assert_eq!(wa(md), "Name: Ann, Age: 31");
        // As on GitHub, a pipe in a cell is escaped even in code, and
        // cells beyond the header's are dropped.
        let md =
            "| **Key** | Value |\n| :-: | - |\n| a | `x\\|y` |\n| b |  |\n| c | d \\| e | extra |";
        assert_eq!(
            wa(md),
            "*Key*: a, Value: `x|y`\n*Key*: b\n*Key*: c, Value: d | e"
        );
        assert_eq!(wa("| A | B |\n|---|---|\n| `x|y` |"), "A: `x, B: y`");
        let md = "| A | B |\n|---|---|";
        assert_eq!(wa(md), "A, B");
        let md = "Before\n\n| A | B |\n|---|---|\n| 1 | 2 |\n\nAfter";
        assert_eq!(wa(md), "Before\n\nA: 1, B: 2\n\nAfter");
        // As on GitHub, a line right under a table is one more row.
        let md = "| A | B |\n|---|---|\n| 1 | 2 |\nAfter";
        assert_eq!(wa(md), "A: 1, B: 2\nA: After");
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
        assert_eq!(wa("> a\nlazy"), "> a\n> lazy");
        assert_eq!(wa("x\n\n> q\n\ny"), "x\n\n> q\n\ny");
        assert_eq!(wa("> - a\n>\n> - b"), "> - a\n>\n> - b");
        assert_eq!(wa("- > q\n  > r"), "- > q\n  > r");
    }

    #[test]
    fn blank_lines_and_trimming() {
        assert_eq!(wa("\n\n  a  \n\n\n\n\nb\n\nc\n\n\n"), "a\n\nb\n\nc");
        assert_eq!(wa("a\n \t \n\nb"), "a\n\nb");
        assert_eq!(wa("line one  \nline two"), "line one\nline two");
        assert_eq!(wa("line one\\\nline two"), "line one\nline two");
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
3. _*Restart*_ the service.

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
        assert_eq!(chunk("🇩🇪🇫🇷🇯🇵", 3), vec!["🇩🇪", "🇫🇷", "🇯🇵"]);
        assert_eq!(chunk("👍🏽👋🏿", 3), vec!["👍🏽", "👋🏿"]);
    }

    #[test]
    fn a_space_carrying_a_mark_is_not_a_break() {
        assert_eq!(chunk("ab \u{301}cd", 3), vec!["ab", " \u{301}c", "d"]);
        assert_eq!(chunk("ab \u{301}cd ef", 6), vec!["ab \u{301}cd", "ef"]);
    }

    #[test]
    fn a_cluster_longer_than_the_limit_is_cut() {
        let long = format!("e{}", "\u{301}".repeat(5));
        assert_eq!(
            chunk(&format!("{long} xy"), 4),
            vec![
                format!("e{}", "\u{301}".repeat(3)),
                "\u{301}".repeat(2),
                "xy".to_string()
            ]
        );
        // A space starting such a cluster is not left alone in a chunk.
        assert_eq!(chunk(" \u{301}", 1), vec!["\u{301}"]);
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

    fn is_ws(c: char) -> bool {
        c.is_whitespace()
    }

    /// Checks the exact no-loss guarantee on the plan, that each chunk is
    /// its piece rendered, and that pieces start and end between clusters
    /// unless a cluster is longer than fits in a chunk.
    fn check_lossless(text: &str, limit: usize) -> Result<(), TestCaseError> {
        let t = Chars::new(text);
        let chars = &t.c;
        let pieces = plan(&t, limit);
        let chunks = chunk(text, limit);
        prop_assert_eq!(pieces.len(), chunks.len());
        let mut at = 0;
        for (k, piece) in pieces.iter().enumerate() {
            prop_assert_eq!(&piece.render(chars), &chunks[k]);
            prop_assert!(piece.start >= at && piece.start < piece.end);
            prop_assert!(chars[at..piece.start].iter().all(|&c| is_ws(c)));
            let reopened = k > 0 && pieces[k - 1].close;
            prop_assert_eq!(piece.reopen, reopened);
            for p in [piece.start, piece.end] {
                if !t.edge[p] {
                    let s = (0..p).rev().find(|&q| t.edge[q]).unwrap_or(0);
                    let e = (p..=chars.len()).find(|&q| t.edge[q]).unwrap_or(p);
                    let room = limit.max(1).saturating_sub(2 * FENCE_COST);
                    prop_assert!(e - s > room, "cut at {p} inside a cluster {s}..{e}");
                }
            }
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

    /// `text` without the clusters of whitespace only at either end.
    fn trim_blank_clusters(text: &str) -> &str {
        let blank = |g: &str| g.chars().all(char::is_whitespace);
        let start = text
            .grapheme_indices(true)
            .find(|(_, g)| !blank(g))
            .map_or(text.len(), |(i, _)| i);
        let end = text
            .grapheme_indices(true)
            .rev()
            .find(|(_, g)| !blank(g))
            .map_or(start, |(i, g)| i + g.len());
        &text[start..end]
    }

    /// Words, spaces and line breaks, flags, emoji with skin tones, ZWJ
    /// sequences, and letters or spaces carrying combining marks.
    fn clustered() -> impl Strategy<Value = String> {
        use prop::sample::select;
        let token = prop_oneof![
            4 => "[a-zA-Z0-9]{1,8}",
            3 => Just(" ".to_string()),
            1 => Just("\n".to_string()),
            1 => Just("\n\n".to_string()),
            2 => select(vec!["🇩🇪", "🇫🇷", "🇯🇵", "🇧🇷", "🇺🇳"]).prop_map(str::to_string),
            2 => (
                select(vec!["👍", "👋", "🧑", "👩", "✌"]),
                select(vec!["\u{1f3fb}", "\u{1f3fc}", "\u{1f3fd}", "\u{1f3fe}", "\u{1f3ff}"]),
            )
                .prop_map(|(emoji, tone)| format!("{emoji}{tone}")),
            2 => select(vec![
                "👨\u{200d}👩\u{200d}👧",
                "👨\u{200d}👩\u{200d}👧\u{200d}👦",
                "👩🏽\u{200d}💻",
                "🏳\u{fe0f}\u{200d}🌈",
                "🧑🏿\u{200d}🤝\u{200d}🧑🏻",
            ])
            .prop_map(str::to_string),
            2 => (
                "[a-z ]",
                prop::collection::vec(select(vec!['\u{301}', '\u{308}', '\u{323}', '\u{20dd}']), 1..4),
            )
                .prop_map(|(base, marks)| base + &marks.into_iter().collect::<String>()),
        ];
        prop::collection::vec(token, 0..150).prop_map(|t| t.concat())
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
        fn chunks_never_split_a_cluster(
            text in clustered(),
            limit in prop_oneof![0usize..24, 24usize..400],
        ) {
            let chunks = chunk(&text, limit);
            let limit = limit.max(1);
            let edges: std::collections::HashSet<usize> = text
                .grapheme_indices(true)
                .map(|(i, _)| i)
                .chain([text.len()])
                .collect();
            let longer = |at: usize| {
                text.grapheme_indices(true)
                    .any(|(i, g)| i < at && at < i + g.len() && g.chars().count() > limit)
            };
            // Each chunk is the next piece of the text, after whitespace
            // only (nothing here makes a code block, so no fences are added).
            let mut at = 0;
            for c in &chunks {
                let size = c.chars().count();
                prop_assert!(size <= limit || c.graphemes(true).count() == 1, "{size} > {limit}");
                prop_assert!(!c.trim().is_empty());
                let rest = &text[at..];
                let start = std::iter::once(0)
                    .chain(
                        rest.char_indices()
                            .take_while(|(_, ch)| ch.is_whitespace())
                            .map(|(i, ch)| i + ch.len_utf8()),
                    )
                    .find(|&i| rest[i..].starts_with(c.as_str()));
                prop_assert!(start.is_some(), "{c:?} is not next in {rest:?}");
                let start = at + start.unwrap_or(0);
                let end = start + c.len();
                for cut in [start, end] {
                    prop_assert!(
                        edges.contains(&cut) || longer(cut),
                        "cut at byte {cut} splits a cluster of {text:?}"
                    );
                }
                at = end;
            }
            prop_assert!(text[at..].chars().all(char::is_whitespace));
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
            let trimmed = trim_blank_clusters(&text);
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
