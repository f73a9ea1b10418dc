//! The little Markdown replies use, as styled terminal lines: `**bold**`,
//! `` `code` ``, fenced code blocks, `-`/`*` lists and `#` headings. Any
//! other text is shown as it is; nothing is dropped.

use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};

/// Styled lines of `text`, each with `base` under its own styles.
pub fn lines(text: &str, base: Style) -> Vec<Line<'static>> {
    let mut out = Vec::new();
    let mut in_code = false;
    let code = base.add_modifier(Modifier::REVERSED);
    for raw in text.lines() {
        if raw.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            out.push(Line::from(Span::styled(format!(" {raw} "), code)));
            continue;
        }
        let trimmed = raw.trim_start();
        let indent = &raw[..raw.len() - trimmed.len()];
        if let Some(rest) = trimmed
            .strip_prefix("- ")
            .or_else(|| trimmed.strip_prefix("* "))
        {
            let mut spans = vec![Span::styled(format!("{indent}• "), base)];
            spans.extend(inline(rest, base));
            out.push(Line::from(spans));
        } else if let Some(rest) = trimmed.strip_prefix('#') {
            let head = rest.trim_start_matches('#').trim_start();
            out.push(Line::from(Span::styled(
                head.to_owned(),
                base.add_modifier(Modifier::BOLD | Modifier::UNDERLINED),
            )));
        } else {
            out.push(Line::from(inline(raw, base)));
        }
    }
    if out.is_empty() {
        out.push(Line::from(""));
    }
    out
}

/// `**bold**` and `` `code` `` within one line; an unclosed marker is
/// shown as typed.
fn inline(text: &str, base: Style) -> Vec<Span<'static>> {
    let mut spans = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let bold = rest.find("**");
        let tick = rest.find('`');
        let (at, marker, style) = match (bold, tick) {
            (Some(b), Some(t)) if t < b => (t, "`", base.add_modifier(Modifier::REVERSED)),
            (Some(b), _) => (b, "**", base.add_modifier(Modifier::BOLD)),
            (None, Some(t)) => (t, "`", base.add_modifier(Modifier::REVERSED)),
            (None, None) => break,
        };
        let after = &rest[at + marker.len()..];
        let Some(end) = after.find(marker) else {
            break;
        };
        if at > 0 {
            spans.push(Span::styled(rest[..at].to_owned(), base));
        }
        spans.push(Span::styled(after[..end].to_owned(), style));
        rest = &after[end + marker.len()..];
    }
    if !rest.is_empty() {
        spans.push(Span::styled(rest.to_owned(), base));
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(l: &Line) -> String {
        l.spans.iter().map(|s| s.content.as_ref()).collect()
    }

    #[test]
    fn bold_code_lists_and_blocks_are_styled_and_no_text_is_lost() {
        let base = Style::default();
        let ls = lines(
            "Use **care** with `rm`\n- one\n  * two\n```\nls -la\n```\n# Title\nhalf **open",
            base,
        );
        let text: Vec<String> = ls.iter().map(plain).collect();
        assert_eq!(
            text,
            vec![
                "Use care with rm",
                "• one",
                "  • two",
                " ls -la ",
                "Title",
                "half **open"
            ]
        );
        let first = &ls[0].spans;
        assert_eq!(first[1].content, "care");
        assert!(first[1].style.add_modifier.contains(Modifier::BOLD));
        assert_eq!(first[3].content, "rm");
        assert!(first[3].style.add_modifier.contains(Modifier::REVERSED));
        assert!(
            ls[3].spans[0]
                .style
                .add_modifier
                .contains(Modifier::REVERSED)
        );
    }
}
