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

mod chunk;
mod links;
mod render;
#[cfg(test)]
mod tests;

use pulldown_cmark::{Options, Parser};

#[cfg(test)]
use chunk::FENCE_COST;
use chunk::{Chars, plan};
use render::Writer;

/// Opens and closes a WhatsApp monospace block.
const FENCE: &str = "```";

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
