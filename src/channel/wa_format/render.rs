//! Markdown parser events → WhatsApp text: the [`Writer`] behind
//! [`super::to_whatsapp`]. Blocks (lists, code, tables) are laid out in
//! [`blocks`]; where bare URLs are, and what a link shows, in
//! [`super::links`].

mod blocks;

use std::ops::Range;

use pulldown_cmark::{Event, Tag, TagEnd};

use super::links::{bare_urls, same_target};
use blocks::Table;

/// What a thematic break becomes.
const RULE: &str = "———";

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
pub(super) struct Writer<'s> {
    /// The Markdown (line endings normalised); event ranges index it.
    src: &'s str,
    /// Bare `http(s)://` URLs in `src`, in order.
    urls: Vec<Range<usize>>,
    pub(super) out: String,
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
    pub(super) fn new(src: &'s str) -> Self {
        Writer {
            src,
            urls: bare_urls(src),
            out: String::with_capacity(src.len()),
            ..Writer::default()
        }
    }

    pub(super) fn event(&mut self, event: Event<'_>, range: Range<usize>) {
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
