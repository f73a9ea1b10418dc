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
//! - Media (photos, voice notes and audio, documents, video, stickers) is
//!   described by [`media`], which also hands back the part the client
//!   downloads; [`media_message`] builds the message for a file uploaded
//!   with `Client::upload`.

use whatsapp_rust::download::{Downloadable, MediaType};
use whatsapp_rust::prelude::{Jid, MessageExt, MessageInfo, wa};
use whatsapp_rust::wacore_binary::JidExt;

use crate::ids::{ChatJid, MessageId};
use crate::model::{InboundMedia, MediaInfo, MediaKind};
use crate::store::Inbound;

/// Why a WhatsApp message is not passed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    StatusBroadcast,
    Newsletter,
    Reaction,
    Protocol,
    /// No text and no media: polls, calls, contacts...
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
    let media = media(message).map(|(info, _)| info);
    let text = message
        .text_content()
        .map(str::to_owned)
        .or_else(|| message.get_caption().map(str::to_owned))
        .filter(|t| !t.trim().is_empty());
    let text = match (text, &media) {
        (Some(t), _) => t,
        (None, Some(_)) => String::new(),
        (None, None) => return Err(Skip::NoText),
    };

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
            // Downloaded by the channel before the message is handed over.
            media: media.map(|info| InboundMedia {
                info,
                data: Err("not downloaded".into()),
            }),
        },
        aliases,
    })
}

/// The media a message carries (inside any ephemeral or view-once
/// wrapper): its description, and the part `Client::download` takes.
/// The size is the one the sender announced.
pub fn media(message: &wa::Message) -> Option<(MediaInfo, &dyn Downloadable)> {
    let base = message.get_base_message();
    let describe = |kind, mime: &Option<String>, len: Option<u64>, seconds, filename| MediaInfo {
        kind,
        mime: mime
            .clone()
            .filter(|m| !m.trim().is_empty())
            .unwrap_or_else(|| default_mime(kind).into()),
        filename,
        bytes: len.unwrap_or(0),
        seconds,
        ..MediaInfo::default()
    };
    if let Some(m) = base.image_message.as_option() {
        return Some((
            describe(MediaKind::Image, &m.mimetype, m.file_length, None, None),
            m,
        ));
    }
    if let Some(m) = base.audio_message.as_option() {
        let kind = if m.ptt == Some(true) {
            MediaKind::Voice
        } else {
            MediaKind::Audio
        };
        return Some((
            describe(kind, &m.mimetype, m.file_length, m.seconds, None),
            m,
        ));
    }
    if let Some(m) = base.document_message.as_option() {
        let name = m.file_name.clone().or_else(|| m.title.clone());
        return Some((
            describe(MediaKind::Document, &m.mimetype, m.file_length, None, name),
            m,
        ));
    }
    if let Some(m) = base.video_message.as_option() {
        return Some((
            describe(
                MediaKind::Video,
                &m.mimetype,
                m.file_length,
                m.seconds,
                None,
            ),
            m,
        ));
    }
    if let Some(m) = base.sticker_message.as_option() {
        return Some((
            describe(MediaKind::Sticker, &m.mimetype, m.file_length, None, None),
            m,
        ));
    }
    None
}

fn default_mime(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Image => "image/jpeg",
        MediaKind::Voice | MediaKind::Audio => "audio/ogg; codecs=opus",
        MediaKind::Video => "video/mp4",
        MediaKind::Sticker => "image/webp",
        MediaKind::Document => "application/octet-stream",
    }
}

/// The kind WhatsApp's media servers take a file of `kind` as.
pub fn media_type(kind: MediaKind) -> MediaType {
    match kind {
        MediaKind::Image => MediaType::Image,
        MediaKind::Voice | MediaKind::Audio => MediaType::Audio,
        MediaKind::Video => MediaType::Video,
        MediaKind::Sticker => MediaType::Sticker,
        MediaKind::Document => MediaType::Document,
    }
}

/// What an upload gave back: the fields a media message needs (the
/// crate's `UploadResponse`, which cannot be built outside it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    pub url: String,
    pub direct_path: String,
    pub media_key: [u8; 32],
    pub file_enc_sha256: [u8; 32],
    pub file_sha256: [u8; 32],
    pub file_length: u64,
    pub media_key_timestamp: i64,
    pub streaming_sidecar: Option<Vec<u8>>,
}

impl From<&whatsapp_rust::upload::UploadResponse> for Uploaded {
    fn from(r: &whatsapp_rust::upload::UploadResponse) -> Self {
        Self {
            url: r.url.clone(),
            direct_path: r.direct_path.clone(),
            media_key: r.media_key,
            file_enc_sha256: r.file_enc_sha256,
            file_sha256: r.file_sha256,
            file_length: r.file_length,
            media_key_timestamp: r.media_key_timestamp,
            streaming_sidecar: r.streaming_sidecar.clone(),
        }
    }
}

/// The message for an uploaded file: a photo, audio, video or document
/// with its caption (audio has none in WhatsApp: the caller sends it as
/// text) and file name.
pub fn media_message(
    kind: MediaKind,
    mime: &str,
    filename: &str,
    caption: &str,
    up: &Uploaded,
) -> wa::Message {
    use whatsapp_rust::prelude::MessageField;
    let caption = (!caption.trim().is_empty()).then(|| caption.to_owned());
    let (url, direct_path) = (Some(up.url.clone()), Some(up.direct_path.clone()));
    let media_key = Some(up.media_key.to_vec());
    let (enc, sha) = (
        Some(up.file_enc_sha256.to_vec()),
        Some(up.file_sha256.to_vec()),
    );
    let (len, ts, mime) = (
        Some(up.file_length),
        Some(up.media_key_timestamp),
        Some(mime.to_owned()),
    );
    match kind {
        MediaKind::Image => wa::Message {
            image_message: MessageField::some(wa::message::ImageMessage {
                url,
                direct_path,
                media_key,
                file_enc_sha256: enc,
                file_sha256: sha,
                file_length: len,
                media_key_timestamp: ts,
                mimetype: mime,
                caption,
                ..Default::default()
            }),
            ..Default::default()
        },
        MediaKind::Voice | MediaKind::Audio => wa::Message {
            audio_message: MessageField::some(wa::message::AudioMessage {
                url,
                direct_path,
                media_key,
                file_enc_sha256: enc,
                file_sha256: sha,
                file_length: len,
                media_key_timestamp: ts,
                mimetype: mime,
                ptt: Some(kind == MediaKind::Voice),
                streaming_sidecar: up.streaming_sidecar.clone(),
                ..Default::default()
            }),
            ..Default::default()
        },
        MediaKind::Video => wa::Message {
            video_message: MessageField::some(wa::message::VideoMessage {
                url,
                direct_path,
                media_key,
                file_enc_sha256: enc,
                file_sha256: sha,
                file_length: len,
                media_key_timestamp: ts,
                mimetype: mime,
                caption,
                streaming_sidecar: up.streaming_sidecar.clone(),
                ..Default::default()
            }),
            ..Default::default()
        },
        MediaKind::Sticker => wa::Message {
            sticker_message: MessageField::some(wa::message::StickerMessage {
                url,
                direct_path,
                media_key,
                file_enc_sha256: enc,
                file_sha256: sha,
                file_length: len,
                media_key_timestamp: ts,
                mimetype: mime,
                ..Default::default()
            }),
            ..Default::default()
        },
        MediaKind::Document => wa::Message {
            document_message: MessageField::some(wa::message::DocumentMessage {
                url,
                direct_path,
                media_key,
                file_enc_sha256: enc,
                file_sha256: sha,
                file_length: len,
                media_key_timestamp: ts,
                mimetype: mime,
                caption,
                file_name: Some(filename.to_owned()),
                title: Some(filename.to_owned()),
                ..Default::default()
            }),
            ..Default::default()
        },
    }
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
    fn reactions_protocol_status_and_empty_texts_are_skipped() {
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
        // A photo without a caption is a message now (its media).
        let p = inbound(&i, &photo).unwrap().inbound;
        assert_eq!(p.text, "");
        assert_eq!(p.media.unwrap().info.kind, MediaKind::Image);
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

    #[test]
    fn photos_voice_notes_audio_documents_video_and_stickers_become_media() {
        let i = info("M1", ALICE, ALICE, false);
        let photo = wa::Message {
            image_message: MessageField::some(wa::message::ImageMessage {
                mimetype: Some("image/jpeg".into()),
                caption: Some("look at this".into()),
                file_length: Some(2048),
                direct_path: Some("/v/t62/abc".into()),
                media_key: Some(vec![7; 32]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let c = inbound(&i, &photo).unwrap().inbound;
        assert_eq!(c.text, "look at this");
        let m = c.media.unwrap();
        assert_eq!(
            m.info,
            MediaInfo {
                kind: MediaKind::Image,
                mime: "image/jpeg".into(),
                bytes: 2048,
                ..MediaInfo::default()
            }
        );
        assert!(m.data.is_err(), "downloaded by the channel, not here");
        // The part the client downloads is the image itself.
        let (_, part) = media(&photo).unwrap();
        assert_eq!(part.direct_path(), Some("/v/t62/abc"));
        assert_eq!(part.app_info(), MediaType::Image);

        let voice = wa::Message {
            audio_message: MessageField::some(wa::message::AudioMessage {
                mimetype: Some("audio/ogg; codecs=opus".into()),
                ptt: Some(true),
                seconds: Some(12),
                file_length: Some(9000),
                ..Default::default()
            }),
            ..Default::default()
        };
        // In a view-once wrapper too.
        let c = inbound(&i, &wrap("view_once", voice)).unwrap().inbound;
        assert_eq!(c.text, "");
        let m = c.media.unwrap().info;
        assert_eq!(
            (m.kind, m.seconds, m.bytes),
            (MediaKind::Voice, Some(12), 9000)
        );

        let song = wa::Message {
            audio_message: MessageField::some(wa::message::AudioMessage {
                mimetype: Some("audio/mpeg".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(media(&song).unwrap().0.kind, MediaKind::Audio);

        let doc = wa::Message {
            document_message: MessageField::some(wa::message::DocumentMessage {
                mimetype: Some("application/pdf".into()),
                file_name: Some("Contract.pdf".into()),
                caption: Some("sign this".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let c = inbound(&i, &doc).unwrap().inbound;
        assert_eq!(c.text, "sign this");
        let m = c.media.unwrap().info;
        assert_eq!(
            (m.kind, m.filename.as_deref(), m.mime.as_str()),
            (MediaKind::Document, Some("Contract.pdf"), "application/pdf")
        );

        let video = wa::Message {
            video_message: MessageField::some(wa::message::VideoMessage {
                seconds: Some(30),
                ..Default::default()
            }),
            ..Default::default()
        };
        let m = media(&video).unwrap().0;
        assert_eq!(
            (m.kind, m.mime.as_str(), m.seconds),
            (MediaKind::Video, "video/mp4", Some(30))
        );

        let sticker = wa::Message {
            sticker_message: MessageField::some(wa::message::StickerMessage::default()),
            ..Default::default()
        };
        let m = media(&sticker).unwrap().0;
        assert_eq!(
            (m.kind, m.mime.as_str()),
            (MediaKind::Sticker, "image/webp")
        );
        assert!(media(&wa::Message::text("hi")).is_none());
    }

    fn uploaded() -> Uploaded {
        Uploaded {
            url: "https://mmg.whatsapp.net/v/t62/x".into(),
            direct_path: "/v/t62/x".into(),
            media_key: [1; 32],
            file_enc_sha256: [2; 32],
            file_sha256: [3; 32],
            file_length: 1234,
            media_key_timestamp: 1_763_700_000,
            streaming_sidecar: None,
        }
    }

    #[test]
    fn an_uploaded_file_becomes_a_message_of_its_kind() {
        let up = uploaded();
        let m = media_message(MediaKind::Image, "image/png", "pic.png", "Here", &up);
        let img = m.image_message.as_option().unwrap();
        assert_eq!(img.url.as_deref(), Some("https://mmg.whatsapp.net/v/t62/x"));
        assert_eq!(img.direct_path.as_deref(), Some("/v/t62/x"));
        assert_eq!(img.media_key.as_deref(), Some(&[1u8; 32][..]));
        assert_eq!(img.file_enc_sha256.as_deref(), Some(&[2u8; 32][..]));
        assert_eq!(img.file_sha256.as_deref(), Some(&[3u8; 32][..]));
        assert_eq!(img.file_length, Some(1234));
        assert_eq!(img.media_key_timestamp, Some(1_763_700_000));
        assert_eq!(img.mimetype.as_deref(), Some("image/png"));
        assert_eq!(m.get_caption(), Some("Here"));
        // What we send is what a receiver reads back as media.
        assert_eq!(media(&m).unwrap().0.kind, MediaKind::Image);

        let m = media_message(MediaKind::Document, "application/pdf", "r.pdf", "", &up);
        let doc = m.document_message.as_option().unwrap();
        assert_eq!(doc.file_name.as_deref(), Some("r.pdf"));
        assert_eq!(doc.caption, None);
        assert_eq!(doc.direct_path.as_deref(), Some("/v/t62/x"));

        let m = media_message(MediaKind::Voice, "audio/ogg", "v.ogg", "", &up);
        assert_eq!(m.audio_message.as_option().unwrap().ptt, Some(true));
        let m = media_message(MediaKind::Audio, "audio/mpeg", "s.mp3", "", &up);
        assert_eq!(m.audio_message.as_option().unwrap().ptt, Some(false));
        let m = media_message(MediaKind::Video, "video/mp4", "c.mp4", "clip", &up);
        assert_eq!(
            m.video_message.as_option().unwrap().caption.as_deref(),
            Some("clip")
        );
        assert_eq!(media_type(MediaKind::Voice), MediaType::Audio);
        assert_eq!(media_type(MediaKind::Document), MediaType::Document);
    }
}
