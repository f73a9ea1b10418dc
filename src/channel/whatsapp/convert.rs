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
mod tests;
