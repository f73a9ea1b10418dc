use bytes::Bytes;
use serde_json::{Value, json};

use super::*;

#[test]
fn valid_message_passes_with_defaults() {
    let m = validate_inbox(req(json!({"chat":"1-2@g.us","sender":"49151@s.whatsapp.net","text":"hi","timestamp":1763700000})), 100, id).unwrap();
    assert_eq!(m.id.as_str(), "GEN");
    assert_eq!(m.timestamp_ms, 1_763_700_000_000);
    assert!(!m.from_me);
}

#[test]
fn refusals_name_the_field_or_limit() {
    let cases = [
        (
            json!({"chat":"nope","sender":"1@s.whatsapp.net","text":"x"}),
            "chat: invalid JID",
        ),
        (
            json!({"chat":"1@s.whatsapp.net","sender":"1-2@g.us","text":"x"}),
            "sender: a group",
        ),
        (
            json!({"chat":"1@s.whatsapp.net","sender":"1@s.whatsapp.net","text":"  "}),
            "text: must not be empty",
        ),
        (
            json!({"chat":"1@s.whatsapp.net","sender":"1@s.whatsapp.net","text":"x".repeat(101)}),
            "over the limit of 100 bytes (PB_MAX_TEXT_BYTES)",
        ),
        (
            json!({"chat":"1@s.whatsapp.net","sender":"1@s.whatsapp.net","text":"x","id":"a b"}),
            "id: use",
        ),
        (
            json!({"chat":"1@s.whatsapp.net","sender":"1@s.whatsapp.net","text":"x","timestamp":-1}),
            "timestamp:",
        ),
        (
            json!({"chat":"1@s.whatsapp.net","sender":"1@s.whatsapp.net","text":"x","timestamp":"yesterday"}),
            "timestamp:",
        ),
        (
            json!({"chat":"1@s.whatsapp.net","sender":"1@s.whatsapp.net","text":"x","sender_name":"a\u{0}b"}),
            "sender_name: control",
        ),
    ];
    for (body, want) in cases {
        let e = validate_inbox(req(body.clone()), 100, id).unwrap_err();
        assert!(e.1.contains(want), "{body}: {}", e.1);
    }
}

#[test]
fn unknown_fields_are_refused() {
    let e = parse_body::<FakeInbox>(Ok(Bytes::from_static(
        br#"{"chat":"1@lid","sender":"1@lid","text":"x","txt":"y"}"#,
    )))
    .unwrap_err();
    assert!(e.1.contains("unknown field `txt`"), "{}", e.1);
    let e = parse_body::<FakeInbox>(Ok(Bytes::from_static(b"{not json"))).unwrap_err();
    assert!(e.1.starts_with("malformed JSON"), "{}", e.1);
}

fn req(v: Value) -> FakeInbox {
    serde_json::from_value(v).unwrap()
}

fn id() -> MessageId {
    MessageId::new("GEN")
}
