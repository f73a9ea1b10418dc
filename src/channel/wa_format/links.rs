//! Links: where bare `http(s)://` URLs are in the Markdown, and whether a
//! link's text just repeats its url.

use std::ops::Range;

use linkify::{LinkFinder, LinkKind};

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

/// The bare `http(s)://` URLs in `src` (scheme in any case), as byte
/// ranges, as `linkify` finds them: up to whitespace, `<`, `>`, `"`, `|` or
/// a backtick, without trailing punctuation or an unbalanced closing
/// bracket. It wants a plausible host: `http://a.b/` (a one-letter top-level
/// domain) and `http://[::1]/` are not links to it.
pub(super) fn bare_urls(src: &str) -> Vec<Range<usize>> {
    let mut finder = LinkFinder::new();
    finder.kinds(&[LinkKind::Url]);
    finder
        .links(src)
        .filter(|link| {
            let url = link.as_str().as_bytes();
            [&b"https://"[..], b"http://"].iter().any(|scheme| {
                url.len() > scheme.len() && url[..scheme.len()].eq_ignore_ascii_case(scheme)
            })
        })
        .map(|link| link.start()..link.end())
        .collect()
}
