//! Inbound rules: which chats are answered and when a run starts.
//!
//! Every chat is recorded; only registered chats are answered. The main chat
//! and registered DMs start a run on any message. In a group a run starts
//! only when a message since the last run matches the chat's trigger rule,
//! and then the prompt carries every message since that run, so the agent
//! sees the conversation it is being pulled into.

use std::fmt;

use crate::store::{RegisteredChat, StoredMessage};

/// When a registered group's messages start a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TriggerRule {
    /// The message starts with `@<ASSISTANT_NAME>` (case-insensitive).
    Mention,
    /// Every message.
    Always,
    /// The message starts with this text (case-insensitive).
    Prefix(String),
}

/// Why a trigger rule string is invalid.
#[derive(Debug, thiserror::Error)]
#[error("invalid trigger rule {0:?}: use \"mention\", \"always\" or \"prefix:<text>\"")]
pub struct TriggerRuleError(String);

impl TriggerRule {
    /// Parses `mention`, `always` or `prefix:<text>`.
    pub fn parse(value: &str) -> Result<Self, TriggerRuleError> {
        match value {
            "mention" => Ok(Self::Mention),
            "always" => Ok(Self::Always),
            _ => match value.strip_prefix("prefix:") {
                Some(p) if !p.trim().is_empty() && p.len() <= 64 => Ok(Self::Prefix(p.to_owned())),
                _ => Err(TriggerRuleError(value.chars().take(80).collect())),
            },
        }
    }

    pub fn to_db(&self) -> String {
        self.to_string()
    }

    pub fn from_db(value: &str) -> Result<Self, TriggerRuleError> {
        Self::parse(value)
    }

    /// Whether `text` fires this rule.
    pub fn matches(&self, text: &str, assistant_name: &str) -> bool {
        let text = text.trim_start();
        match self {
            Self::Always => true,
            Self::Mention => {
                let Some(rest) =
                    strip_prefix_ci(text, "@").and_then(|t| strip_prefix_ci(t, assistant_name))
                else {
                    return false;
                };
                // "@Andy," and "@Andy" fire; "@Andyson" does not.
                rest.chars()
                    .next()
                    .is_none_or(|c| !c.is_alphanumeric() && c != '_')
            }
            Self::Prefix(p) => strip_prefix_ci(text, p).is_some(),
        }
    }
}

impl fmt::Display for TriggerRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Mention => f.write_str("mention"),
            Self::Always => f.write_str("always"),
            Self::Prefix(p) => write!(f, "prefix:{p}"),
        }
    }
}

fn strip_prefix_ci<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let mut chars = text.char_indices();
    for p in prefix.chars() {
        let (_, c) = chars.next()?;
        if !c.to_lowercase().eq(p.to_lowercase()) {
            return None;
        }
    }
    Some(chars.as_str())
}

/// Whether a batch of new messages in a registered chat starts a run.
pub fn should_run(chat: &RegisteredChat, batch: &[StoredMessage], assistant_name: &str) -> bool {
    if batch.is_empty() {
        return false;
    }
    if chat.is_main || !chat.jid.is_group() {
        return true;
    }
    batch
        .iter()
        .any(|m| chat.trigger.matches(&m.text, assistant_name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ChatJid, Folder, MessageId};

    fn msg(text: &str) -> StoredMessage {
        StoredMessage {
            seq: 1,
            id: MessageId::new("m1"),
            sender: "1@s.whatsapp.net".into(),
            sender_name: None,
            text: text.into(),
            timestamp_ms: 0,
            from_me: false,
        }
    }

    fn chat(jid: &str, is_main: bool, trigger: TriggerRule) -> RegisteredChat {
        RegisteredChat {
            jid: ChatJid::parse(jid).unwrap(),
            name: "x".into(),
            folder: Folder::parse("x").unwrap(),
            is_main,
            trigger,
        }
    }

    #[test]
    fn mention_is_case_insensitive_and_word_bounded() {
        let r = TriggerRule::Mention;
        assert!(r.matches("@Andy what's up", "Andy"));
        assert!(r.matches("  @andy, hi", "Andy"));
        assert!(r.matches("@ANDY", "Andy"));
        assert!(!r.matches("@Andyson hi", "Andy"));
        assert!(!r.matches("hey @Andy", "Andy"));
        assert!(!r.matches("Andy hi", "Andy"));
        assert!(r.matches("@Ünal hallo", "ünal"));
    }

    #[test]
    fn prefix_and_always_rules() {
        assert!(TriggerRule::Prefix("!bot".into()).matches("!BOT do it", "Andy"));
        assert!(!TriggerRule::Prefix("!bot".into()).matches("bot", "Andy"));
        assert!(TriggerRule::Always.matches("anything", "Andy"));
    }

    #[test]
    fn rule_strings_round_trip() {
        for s in ["mention", "always", "prefix:!ai"] {
            assert_eq!(TriggerRule::parse(s).unwrap().to_db(), s);
        }
        assert!(TriggerRule::parse("prefix:").is_err());
        assert!(TriggerRule::parse("sometimes").is_err());
    }

    #[test]
    fn groups_need_a_trigger_dms_and_main_do_not() {
        let group = chat("1-2@g.us", false, TriggerRule::Mention);
        assert!(!should_run(
            &group,
            &[msg("hello"), msg("how are you")],
            "Andy"
        ));
        assert!(should_run(
            &group,
            &[msg("hello"), msg("@Andy summarise")],
            "Andy"
        ));
        assert!(should_run(
            &chat("12@s.whatsapp.net", false, TriggerRule::Mention),
            &[msg("hi")],
            "Andy"
        ));
        assert!(should_run(
            &chat("1-2@g.us", true, TriggerRule::Mention),
            &[msg("hi")],
            "Andy"
        ));
        assert!(!should_run(
            &chat("12@s.whatsapp.net", false, TriggerRule::Mention),
            &[],
            "Andy"
        ));
    }
}
