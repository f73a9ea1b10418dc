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
