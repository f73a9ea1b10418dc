//! Inbound rules: which chats are answered and when a run starts.
//!
//! Every chat is recorded; only registered chats are answered. The main chat
//! and registered DMs start a run on any message. In a group a run starts
//! only when a message since the last run matches the chat's trigger rule,
//! and then the prompt carries every message since that run, so the agent
//! sees the conversation it is being pulled into.

use crate::model::{RegisteredChat, StoredMessage};

/// Whether a batch of new messages in a registered chat starts a run.
pub fn should_run(chat: &RegisteredChat, batch: &[StoredMessage], assistant_name: &str) -> bool {
    batch
        .iter()
        .any(|m| starts_run(chat, &m.text, assistant_name))
}

/// Whether one message with `text` in a registered chat starts a run: the
/// main chat and DMs on anything, a group on its trigger. Intake wakes the
/// chat's queue only for these; the others wait, stored, as the context a
/// later run's prompt carries.
pub fn starts_run(chat: &RegisteredChat, text: &str, assistant_name: &str) -> bool {
    chat.is_main || !chat.jid.is_group() || chat.trigger.matches(text, assistant_name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ChatJid, Folder, MessageId};
    use crate::model::TriggerRule;

    fn msg(text: &str) -> StoredMessage {
        StoredMessage {
            seq: 1,
            id: MessageId::new("m1"),
            sender: "1@s.whatsapp.net".into(),
            sender_name: None,
            text: text.into(),
            timestamp_ms: 0,
            from_me: false,
            media: None,
        }
    }

    fn chat(jid: &str, is_main: bool, trigger: TriggerRule) -> RegisteredChat {
        RegisteredChat {
            jid: ChatJid::parse(jid).unwrap(),
            name: "x".into(),
            folder: Folder::parse("x").unwrap(),
            is_main,
            trigger,
            profile: crate::model::Profile::Member,
        }
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
