//! Outbound text: what of the agent's answer reaches the chat.
//!
//! `<internal>…</internal>` blocks are the agent's private notes and are
//! removed (an unclosed block hides everything after it: a note cut short
//! must not leak). The rest is trimmed; nothing is sent when nothing is left.
//! [`Persona::reply`] adds the assistant's name on a shared number.

/// Who the assistant speaks as.
#[derive(Debug, Clone)]
pub struct Persona {
    /// `ASSISTANT_NAME`.
    pub name: String,
    /// `ASSISTANT_HAS_OWN_NUMBER`: without one, replies carry the name.
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
    fn multibyte_text_survives() {
        assert_eq!(
            visible_text("Grüße ☃ <internal>ü</internal>🙂").as_deref(),
            Some("Grüße ☃ 🙂")
        );
    }
}
