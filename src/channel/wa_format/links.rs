//! Links: where bare `http(s)://` URLs are in the Markdown, and whether a
//! link's text just repeats its url.

use std::ops::Range;

/// Whether a link's text just repeats its url.
pub(super) fn same_target(text: &str, url: &str) -> bool {
    fn norm(s: &str) -> &str {
        let s = s
            .strip_prefix("https://")
            .or_else(|| s.strip_prefix("http://"))
            .unwrap_or(s);
        s.trim_end_matches('/')
    }
    text == url || (!norm(url).is_empty() && norm(text) == norm(url))
}

/// The bare `http(s)://` URLs in `src`, as byte ranges: up to whitespace,
/// `<`, `>` or a backtick, without trailing punctuation or an unbalanced
/// `)`.
pub(super) fn bare_urls(src: &str) -> Vec<Range<usize>> {
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
