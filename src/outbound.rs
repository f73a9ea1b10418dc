//! Outbound text: what of the agent's answer reaches the chat.
//!
//! `<internal>…</internal>` blocks are the agent's private notes and are
//! removed (an unclosed block hides everything after it: a note cut short
//! must not leak). The rest is trimmed; nothing is sent when nothing is left.
//! [`Persona::reply`] adds the assistant's name on a shared number.
//!
//! The bridge's own texts (approval requests, confirmations) are not agent
//! answers: [`Persona::say_to`] sends them as written, with the name but
//! without any stripping (an approval must show the command it is about,
//! `<internal>` and all). Streamed text is cleaned as it comes by
//! [`InternalFilter`], which hides a block whose tags arrive split over
//! several deltas just as [`visible_text`] hides it in the whole answer.

/// Who the assistant speaks as.
#[derive(Debug, Clone)]
pub struct Persona {
    /// `PB_ASSISTANT_NAME`.
    pub name: String,
    /// `PB_ASSISTANT_HAS_OWN_NUMBER`: without one, replies carry the name.
    pub own_number: bool,
}

impl Persona {
    /// What is sent for an agent text: `<internal>` notes stripped, trimmed,
    /// prefixed with the assistant's name on a shared number; `None` when
    /// nothing is left.
    pub fn reply(&self, answer: &str) -> Option<String> {
        visible_text(answer).map(|t| {
            if self.own_number {
                t
            } else {
                format!("{}: {t}", self.name)
            }
        })
    }

    /// [`Persona::reply`] for a message to `chat`: an API conversation
    /// talks to the assistant alone, so its replies never carry the name.
    pub fn reply_to(&self, chat: &crate::ids::ChatJid, answer: &str) -> Option<String> {
        if chat.is_api() {
            visible_text(answer)
        } else {
            self.reply(answer)
        }
    }
}

impl Persona {
    /// A text of the bridge's own to `chat`, sent as written: nothing is
    /// stripped; the name is put in front on a shared number, except in an
    /// API conversation.
    pub fn say_to(&self, chat: &crate::ids::ChatJid, text: &str) -> String {
        if self.own_number || chat.is_api() {
            text.to_owned()
        } else {
            format!("{}: {text}", self.name)
        }
    }
}

/// Cleans streamed text: fed the deltas of one text part in order, it
/// returns what of each may be shown. Text inside `<internal>…</internal>`
/// is dropped, tags split across deltas included; a tag's possible start at
/// the end of a delta is held back until the next delta shows what it is;
/// an unclosed block hides everything after it.
#[derive(Debug, Default, Clone)]
pub struct InternalFilter {
    inside: bool,
    /// The end of the text so far that may be the start of a tag.
    held: String,
}

impl InternalFilter {
    const OPEN: &'static str = "<internal>";
    const CLOSE: &'static str = "</internal>";

    /// The part of `delta` (with what was held back) that may be shown.
    pub fn push(&mut self, delta: &str) -> String {
        let mut buf = std::mem::take(&mut self.held);
        buf.push_str(delta);
        let mut out = String::new();
        let mut rest = buf.as_str();
        loop {
            let tag = if self.inside { Self::CLOSE } else { Self::OPEN };
            match find_ci(rest, tag) {
                Some(at) => {
                    if !self.inside {
                        out.push_str(&rest[..at]);
                    }
                    rest = &rest[at + tag.len()..];
                    self.inside = !self.inside;
                }
                None => {
                    let keep = partial_tag_len(rest, tag);
                    let (done, held) = rest.split_at(rest.len() - keep);
                    if !self.inside {
                        out.push_str(done);
                    }
                    self.held = held.to_owned();
                    return out;
                }
            }
        }
    }
}

/// The length of the longest end of `text` that is a proper start of `tag`
/// (ASCII case ignored).
fn partial_tag_len(text: &str, tag: &str) -> usize {
    (1..tag.len().min(text.len() + 1))
        .rev()
        .find(|&n| {
            text.is_char_boundary(text.len() - n)
                && text.as_bytes()[text.len() - n..].eq_ignore_ascii_case(&tag.as_bytes()[..n])
        })
        .unwrap_or(0)
}

/// The text to send for an agent answer, or `None` when nothing remains.
pub fn visible_text(answer: &str) -> Option<String> {
    const OPEN: &str = "<internal>";
    const CLOSE: &str = "</internal>";
    let mut out = String::with_capacity(answer.len());
    let mut rest = answer;
    while let Some(start) = find_ci(rest, OPEN) {
        out.push_str(&rest[..start]);
        let after = &rest[start + OPEN.len()..];
        match find_ci(after, CLOSE) {
            Some(end) => rest = &after[end + CLOSE.len()..],
            None => {
                rest = "";
                break;
            }
        }
    }
    out.push_str(rest);
    let trimmed = out.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
}

fn find_ci(haystack: &str, needle: &str) -> Option<usize> {
    haystack
        .as_bytes()
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_internal_blocks_and_trims() {
        assert_eq!(
            visible_text("<internal>plan: be nice</internal>\n  Hello!  <INTERNAL>x</Internal>\n")
                .as_deref(),
            Some("Hello!")
        );
        assert_eq!(
            visible_text("a <internal>b</internal> c").as_deref(),
            Some("a  c")
        );
    }

    #[test]
    fn internal_only_or_blank_sends_nothing() {
        assert_eq!(visible_text("<internal>only notes</internal>"), None);
        assert_eq!(visible_text("  \n\t "), None);
        assert_eq!(visible_text(""), None);
    }

    #[test]
    fn unclosed_block_hides_the_rest() {
        assert_eq!(
            visible_text("Hi <internal>secret plans").as_deref(),
            Some("Hi")
        );
    }

    #[test]
    fn bridge_texts_keep_everything() {
        let p = Persona {
            name: "Andy".into(),
            own_number: false,
        };
        let chat = crate::ids::ChatJid::parse("491511111111@s.whatsapp.net").unwrap();
        assert_eq!(
            p.say_to(&chat, "run <internal>x</internal>"),
            "Andy: run <internal>x</internal>"
        );
        let api = crate::ids::ChatJid::api("default").unwrap();
        assert_eq!(p.say_to(&api, "hi"), "hi");
    }

    /// Every way of cutting a text into deltas shows what `visible_text`
    /// shows (before trimming).
    #[test]
    fn streamed_deltas_hide_internal_blocks_split_anywhere() {
        let texts = [
            "Hi <internal>secret</internal> there",
            "a<INTERNAL>x</Internal>b<internal>y",
            "<internal>all</internal>",
            "less < than <b> and </internal> stray",
            "ü<internal>ö</internal>☃ <inter",
        ];
        for text in texts {
            let expected = {
                let mut f = InternalFilter::default();
                f.push(text)
            };
            assert!(
                !expected.contains("secret") && !expected.contains('x'),
                "{expected}"
            );
            let chars: Vec<char> = text.chars().collect();
            for a in 0..=chars.len() {
                for b in a..=chars.len() {
                    let d1: String = chars[..a].iter().collect();
                    let d2: String = chars[a..b].iter().collect();
                    let d3: String = chars[b..].iter().collect();
                    let mut f = InternalFilter::default();
                    let got = f.push(&d1) + &f.push(&d2) + &f.push(&d3);
                    assert_eq!(got, expected, "{d1:?} {d2:?} {d3:?}");
                }
            }
        }
        let mut f = InternalFilter::default();
        assert_eq!(f.push("Hi <inte"), "Hi ");
        assert_eq!(f.push("rnal>plan</inter"), "");
        assert_eq!(f.push("nal> there"), " there");
        assert_eq!(f.push(" <b>"), " <b>");
        let mut f = InternalFilter::default();
        assert_eq!(f.push("a <internal>never closed"), "a ");
        assert_eq!(f.push(" still hidden </intern"), "");
    }

    #[test]
    fn multibyte_text_survives() {
        assert_eq!(
            visible_text("Grüße ☃ <internal>ü</internal>🙂").as_deref(),
            Some("Grüße ☃ 🙂")
        );
    }
}
