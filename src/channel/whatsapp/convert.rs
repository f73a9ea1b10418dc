//! From WhatsApp to the bridge: pure functions over whatsapp-rust's own
//! types, so every case is tested without a phone.
//!
//! - Text comes from plain and extended text, media captions, and the
//!   ephemeral / view-once wrappers (`text_content` unwraps them).
//! - Status broadcasts, newsletters, reactions and protocol messages
//!   (revokes, edits, key shares) never become bridge messages.
//! - One person or chat has one identity: a phone-number JID where one is
//!   known (the chat itself, or `sender_alt` for a LID-addressed message),
//!   else the LID. Every LID ↔ phone pair seen is returned as an alias so
//!   the store can resolve registrations made with either form.

use whatsapp_rust::prelude::{Jid, MessageExt, MessageInfo, wa};
use whatsapp_rust::wacore_binary::JidExt;

use crate::ids::{ChatJid, MessageId};
use crate::store::Inbound;

/// Why a WhatsApp message is not passed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    StatusBroadcast,
    Newsletter,
    Reaction,
    Protocol,
    /// Media without a caption, stickers, polls, calls...
    NoText,
    /// A chat address the bridge cannot represent.
    Unsupported(String),
}

/// A converted message and the LID → phone pairs it revealed.
#[derive(Debug, Clone)]
pub struct Converted {
    pub inbound: Inbound,
    pub aliases: Vec<(ChatJid, ChatJid)>,
}

/// A chat-level JID (no device or agent part) as the bridge's `ChatJid`.
pub fn chat_jid(jid: &Jid) -> Result<ChatJid, Skip> {
    let s = jid.to_non_ad_string();
    ChatJid::parse(&s).map_err(|_| Skip::Unsupported(s))
}

/// The bridge's `ChatJid` as a WhatsApp `Jid`.
pub fn to_jid(chat: &ChatJid) -> Option<Jid> {
    chat.as_str().parse().ok()
}

/// The phone-number form of a person if the message reveals it, with the
/// LID alias it replaces.
fn person(jid: &Jid, alt: Option<&Jid>) -> Result<(ChatJid, Option<(ChatJid, ChatJid)>), Skip> {
    let own = chat_jid(jid)?;
    match alt {
        Some(alt) if jid.is_lid() && alt.is_pn() => {
            let pn = chat_jid(alt)?;
            Ok((pn.clone(), Some((own, pn))))
        }
        Some(alt) if jid.is_pn() && alt.is_lid() => {
            let lid = chat_jid(alt)?;
            Ok((own.clone(), Some((lid, own))))
        }
        _ => Ok((own, None)),
    }
}

/// Converts one WhatsApp message.
pub fn inbound(info: &MessageInfo, message: &wa::Message) -> Result<Converted, Skip> {
    let src = &info.source;
    if src.chat.is_status_broadcast() {
        return Err(Skip::StatusBroadcast);
    }
    if src.chat.to_non_ad_string().ends_with("@newsletter") {
        return Err(Skip::Newsletter);
    }
    let base = message.get_base_message();
    if base.reaction_message.is_set() {
        return Err(Skip::Reaction);
    }
    if base.protocol_message.is_set() {
        return Err(Skip::Protocol);
    }
    let text = message
        .text_content()
        .map(str::to_owned)
        .or_else(|| message.get_caption().map(str::to_owned))
        .filter(|t| !t.trim().is_empty())
        .ok_or(Skip::NoText)?;

    let mut aliases = Vec::new();
    let (sender, alias) = person(&src.sender, src.sender_alt.as_ref())?;
    aliases.extend(alias);
    // In a DM from someone else the chat is that person, in the form the
    // sender resolved to; groups and our own messages keep the chat as given.
    let chat = if !src.chat.is_group()
        && !src.is_from_me
        && chat_jid(&src.chat)? == chat_jid(&src.sender)?
    {
        sender.clone()
    } else {
        chat_jid(&src.chat)?
    };
    let push_name = info.push_name.trim();
    Ok(Converted {
        inbound: Inbound {
            chat,
            chat_name: None,
            id: MessageId::new(info.id.clone()),
            sender: sender.to_string(),
            sender_name: (!push_name.is_empty()).then(|| push_name.to_owned()),
            text,
            timestamp_ms: info.timestamp.timestamp_millis(),
            from_me: src.is_from_me,
        },
        aliases,
    })
}

/// The receipt a WhatsApp receipt type stands for, if it moves an outbox row.
pub fn receipt(
    kind: whatsapp_rust::types::presence::ReceiptType,
) -> Option<crate::channel::Receipt> {
    use whatsapp_rust::types::presence::ReceiptType;
    match kind {
        ReceiptType::Delivered => Some(crate::channel::Receipt::Delivered),
        ReceiptType::Read | ReceiptType::Played => Some(crate::channel::Receipt::Read),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use whatsapp_rust::prelude::{MessageBuilderExt, MessageField};
    use whatsapp_rust::types::message::{AddressingMode, MessageSource};

    fn jid(s: &str) -> Jid {
        s.parse().unwrap()
    }

    fn info(id: &str, chat: &str, sender: &str, from_me: bool) -> MessageInfo {
        let chat = jid(chat);
        MessageInfo {
            id: id.into(),
            push_name: "Alice".into(),
            timestamp: chrono::DateTime::from_timestamp(1_763_700_000, 0).unwrap(),
            source: MessageSource {
                is_group: chat.is_group(),
                chat,
                sender: jid(sender),
                is_from_me: from_me,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    const ALICE: &str = "15551234567@s.whatsapp.net";
    const ALICE_LID: &str = "100000012345678@lid";
    const ME: &str = "15550000000@s.whatsapp.net";
    const GROUP: &str = "120363000000000001@g.us";

    fn wrap(kind: &str, inner: wa::Message) -> wa::Message {
        let fp = wa::message::FutureProofMessage {
            message: MessageField::some(inner),
        };
        match kind {
            "ephemeral" => wa::Message {
                ephemeral_message: MessageField::some(fp),
                ..Default::default()
            },
            _ => wa::Message {
                view_once_message: MessageField::some(fp),
                ..Default::default()
            },
        }
    }

    #[test]
    fn dm_text_becomes_a_message_from_that_chat() {
        let c = inbound(
            &info("A1", ALICE, ALICE, false),
            &wa::Message::text("hello dm"),
        )
        .unwrap();
        let m = c.inbound;
        assert_eq!(
            (m.chat.as_str(), m.sender.as_str(), m.text.as_str()),
            (ALICE, ALICE, "hello dm")
        );
        assert_eq!(
            (m.id.as_str(), m.sender_name.as_deref(), m.from_me),
            ("A1", Some("Alice"), false)
        );
        assert_eq!(m.timestamp_ms, 1_763_700_000_000);
        assert!(c.aliases.is_empty());
    }

    #[test]
    fn group_text_keeps_group_and_sender_apart() {
        let m = inbound(
            &info("A2", GROUP, ALICE, false),
            &wa::Message::text("hello group"),
        )
        .unwrap()
        .inbound;
        assert_eq!((m.chat.as_str(), m.sender.as_str()), (GROUP, ALICE));
        assert!(m.chat.is_group());
    }

    #[test]
    fn device_suffixes_are_dropped() {
        let m = inbound(
            &info("A2", GROUP, "15551234567:12@s.whatsapp.net", false),
            &wa::Message::text("x"),
        )
        .unwrap()
        .inbound;
        assert_eq!(m.sender, ALICE);
    }

    #[test]
    fn extended_text_captions_and_wrappers_give_text() {
        let ext = wa::Message {
            extended_text_message: MessageField::some(wa::message::ExtendedTextMessage {
                text: Some("see https://example.com".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let img = wa::Message {
            image_message: MessageField::some(wa::message::ImageMessage {
                caption: Some("a caption".into()),
                mimetype: Some("image/jpeg".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let i = info("A3", ALICE, ALICE, false);
        assert_eq!(
            inbound(&i, &ext).unwrap().inbound.text,
            "see https://example.com"
        );
        assert_eq!(inbound(&i, &img).unwrap().inbound.text, "a caption");
        assert_eq!(
            inbound(&i, &wrap("ephemeral", wa::Message::text("vanishing")))
                .unwrap()
                .inbound
                .text,
            "vanishing"
        );
        assert_eq!(
            inbound(&i, &wrap("view_once", wa::Message::text("once")))
                .unwrap()
                .inbound
                .text,
            "once"
        );
    }

    #[test]
    fn reactions_protocol_status_and_textless_media_are_skipped() {
        let key = || {
            MessageField::some(wa::MessageKey {
                remote_jid: Some(ALICE.into()),
                from_me: Some(true),
                id: Some("OUT1".into()),
                participant: None,
            })
        };
        let reaction = wa::Message {
            reaction_message: MessageField::some(wa::message::ReactionMessage {
                key: key(),
                text: Some("👍".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let revoke = wa::Message {
            protocol_message: MessageField::some(wa::message::ProtocolMessage {
                key: key(),
                r#type: Some(wa::message::protocol_message::Type::Revoke),
                ..Default::default()
            }),
            ..Default::default()
        };
        let photo = wa::Message {
            image_message: MessageField::some(wa::message::ImageMessage {
                mimetype: Some("image/jpeg".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let i = info("A7", ALICE, ALICE, false);
        assert_eq!(inbound(&i, &reaction).unwrap_err(), Skip::Reaction);
        assert_eq!(inbound(&i, &revoke).unwrap_err(), Skip::Protocol);
        assert_eq!(inbound(&i, &photo).unwrap_err(), Skip::NoText);
        assert_eq!(
            inbound(&i, &wa::Message::text("   ")).unwrap_err(),
            Skip::NoText
        );
        let status = info("A9", "status@broadcast", ALICE, false);
        assert_eq!(
            inbound(&status, &wa::Message::text("my status")).unwrap_err(),
            Skip::StatusBroadcast
        );
    }

    #[test]
    fn from_me_echo_is_marked_from_me_in_the_other_chat() {
        let m = inbound(
            &info("A10", ALICE, ME, true),
            &wa::Message::text("sent from phone"),
        )
        .unwrap()
        .inbound;
        assert_eq!(
            (m.chat.as_str(), m.sender.as_str(), m.from_me),
            (ALICE, ME, true)
        );
        // "Message yourself": the chat is the owner's own number.
        let m = inbound(
            &info("A11", ME, ME, true),
            &wa::Message::text("note to self"),
        )
        .unwrap()
        .inbound;
        assert_eq!((m.chat.as_str(), m.from_me), (ME, true));
    }

    #[test]
    fn lid_addressed_group_sender_resolves_to_the_phone_number() {
        let mut i = info("A12", GROUP, ALICE_LID, false);
        i.source.sender_alt = Some(jid(ALICE));
        i.source.addressing_mode = Some(AddressingMode::Lid);
        let c = inbound(&i, &wa::Message::text("lid group msg")).unwrap();
        assert_eq!(
            (c.inbound.chat.as_str(), c.inbound.sender.as_str()),
            (GROUP, ALICE)
        );
        assert_eq!(
            c.aliases,
            vec![(
                ChatJid::parse(ALICE_LID).unwrap(),
                ChatJid::parse(ALICE).unwrap()
            )]
        );
    }

    #[test]
    fn lid_dm_becomes_the_phone_number_chat_when_known() {
        let mut i = info("A13", ALICE_LID, ALICE_LID, false);
        i.source.sender_alt = Some(jid(ALICE));
        let c = inbound(&i, &wa::Message::text("hi via lid")).unwrap();
        assert_eq!(
            (c.inbound.chat.as_str(), c.inbound.sender.as_str()),
            (ALICE, ALICE)
        );
        assert!(c.aliases.contains(&(
            ChatJid::parse(ALICE_LID).unwrap(),
            ChatJid::parse(ALICE).unwrap()
        )));
        // Without the alternative, the LID is the identity.
        let m = inbound(
            &info("A14", ALICE_LID, ALICE_LID, false),
            &wa::Message::text("hi"),
        )
        .unwrap()
        .inbound;
        assert_eq!(m.chat.as_str(), ALICE_LID);
    }

    #[test]
    fn jids_round_trip() {
        for s in [ALICE, ALICE_LID, GROUP] {
            let c = ChatJid::parse(s).unwrap();
            assert_eq!(chat_jid(&to_jid(&c).unwrap()).unwrap(), c);
        }
    }
}
