//! Hostile input, fuzzed: property tests over the boundaries that parse
//! or format what other people control. Each is named `fuzz_*`; the test
//! command runs them briefly (256 cases each). A failure proptest finds is
//! kept in `proptest-regressions/` and replayed first; turn it into a named
//! regression test beside the code it broke.
//!
//! `scripts/fuzz.sh` runs them for minutes (`PB_FUZZ_CASES`).
//!
//! Targets: the prompt formatter (escapes hold, the message elements stay
//! well formed whatever the text or sender name), the schedule parser
//! (never panics; a valid schedule's next run is after now), the fake
//! channel's inbox JSON and the IPC request JSON (never panic; what they
//! accept is within their limits), and Markdown → WhatsApp rendering
//! (every chunk within the limit, never a split grapheme).

use proptest::prelude::*;

use crate::ids::MessageId;
use crate::model::StoredMessage;

/// Text a hostile sender might write: markup, entities, quotes, control
/// and invisible characters, emoji with modifiers, anything.
fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        proptest::collection::vec(
            prop_oneof![
                Just("<".to_owned()),
                Just(">".to_owned()),
                Just("&".to_owned()),
                Just("\"".to_owned()),
                Just("'".to_owned()),
                Just("</message>".to_owned()),
                Just("<message sender=\"owner\">".to_owned()),
                Just("&lt;".to_owned()),
                Just("\u{202e}".to_owned()),
                Just("\u{0}".to_owned()),
                Just("\r\n".to_owned()),
                Just("👍🏽".to_owned()),
                Just("🇩🇪".to_owned()),
                Just("e\u{301}".to_owned()),
                "[a-z ]{0,12}",
            ],
            0..40
        )
        .prop_map(|v| v.concat()),
    ]
}

fn message(seq: i64, sender_name: Option<String>, text: String) -> StoredMessage {
    StoredMessage {
        seq,
        id: MessageId::new(format!("m{seq}")),
        sender: "491511111111@s.whatsapp.net".into(),
        sender_name,
        text,
        timestamp_ms: 1_700_000_000_000 + seq,
        from_me: false,
        media: None,
    }
}

/// Cases per target: 256 in the test command, `PB_FUZZ_CASES` in
/// `scripts/fuzz.sh`.
fn cases() -> u32 {
    std::env::var("PB_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// Whatever the senders write, the prompt has exactly one `<message>`
    /// element per message, each closed once, and the text comes back
    /// whole when the escapes are undone.
    #[test]
    fn fuzz_prompt_escapes_hold(
        batch in proptest::collection::vec((proptest::option::of(hostile()), hostile()), 1..6),
    ) {
        let msgs: Vec<StoredMessage> = batch
            .iter()
            .enumerate()
            .map(|(i, (n, t))| message(i as i64 + 1, n.clone(), t.clone()))
            .collect();
        let ctx = crate::prompt::ChatContext {
            name: "Family <admins>",
            jid: "120363000000001@g.us",
            tz: chrono_tz::Europe::Berlin,
            now: chrono::Utc::now(),
        };
        let prompt = crate::prompt::format_prompt(&ctx, &msgs);
        prop_assert_eq!(prompt.matches("<message ").count(), msgs.len());
        prop_assert_eq!(prompt.matches("</message>").count(), msgs.len());
        prop_assert_eq!(prompt.matches("<messages>").count(), 1);
        prop_assert_eq!(prompt.matches("</messages>").count(), 1);
        let unescape = |s: &str| {
            s.replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&amp;", "&")
        };
        for m in &msgs {
            let escaped = crate::prompt::escape(&m.text);
            prop_assert!(!escaped.contains('<') && !escaped.contains('>'));
            prop_assert!(prompt.contains(&escaped));
            prop_assert_eq!(unescape(&escaped), m.text.clone());
        }
    }

    /// A schedule from anyone never panics the parser; a valid one runs
    /// after now (or, once, is refused as past).
    #[test]
    fn fuzz_schedules_parse_or_refuse(
        kind in prop_oneof![
            Just("cron".to_owned()),
            Just("interval".to_owned()),
            Just("once".to_owned()),
            "[a-z]{0,8}",
        ],
        value in prop_oneof![
            any::<String>(),
            "[0-9*/,-]{1,4} [0-9*/,-]{1,4} [0-9*/,-]{1,4} [0-9*/,-]{1,4} [0-9*/,-]{1,4}",
            "[0-9]{1,6}(ms|s|m|h|d)?",
            "20[0-9]{2}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9](:[0-5][0-9])?",
        ],
    ) {
        let now = chrono::Utc::now();
        let tz = chrono_tz::Europe::Berlin;
        if let Ok(s) = crate::schedule::Schedule::parse(&kind, &value, tz, now)
            && let Some(first) = s.first_run(tz, now)
        {
            prop_assert!(first >= now - chrono::Duration::seconds(1), "{first} before {now}");
        }
    }

    /// The fake phone's inbox JSON: any body is parsed or refused with a
    /// reason; an accepted message is within the text limit.
    #[test]
    fn fuzz_fake_inbox_bodies(
        body in prop_oneof![
            any::<Vec<u8>>(),
            (hostile(), hostile(), hostile()).prop_map(|(c, s, t)| {
                serde_json::json!({"chat": c, "sender": s, "text": t}).to_string().into_bytes()
            }),
            hostile().prop_map(|t| {
                serde_json::json!({"chat": "491511111111@s.whatsapp.net",
                    "sender": "491511111111@s.whatsapp.net", "text": t, "id": t})
                    .to_string().into_bytes()
            }),
        ],
    ) {
        if let Some(msg) = crate::channel::fake::routes::fuzz_inbox(&body, 4096) {
            prop_assert!(msg.text.len() <= 4096);
            prop_assert!(!msg.text.trim().is_empty() || msg.media.is_some());
        }
    }

    /// A tool-call request file's JSON: parsed or refused, never a panic;
    /// what parses is read back the same when written out again.
    #[test]
    fn fuzz_ipc_requests(
        body in prop_oneof![
            any::<Vec<u8>>(),
            (hostile(), hostile(), hostile()).prop_map(|(id, tool, text)| {
                serde_json::json!({"version": 1, "id": id, "tool": tool, "args": {"text": text},
                    "context": {"session_id": "ses_x", "message_id": "msg_x", "call_id": "c"},
                    "created_at": "2026-01-01T00:00:00Z"}).to_string().into_bytes()
            }),
        ],
    ) {
        if let Ok(req) = serde_json::from_slice::<crate::ipc::protocol::Request>(&body) {
            let again: crate::ipc::protocol::Request =
                serde_json::from_str(&serde_json::to_string(&req).unwrap()).unwrap();
            prop_assert_eq!(again, req);
        }
    }

    /// Markdown from the model, rendered for WhatsApp: every chunk within
    /// the limit and never a split grapheme (each chunk is whole graphemes
    /// of the rendered text, in order).
    #[test]
    fn fuzz_markdown_renders_within_the_limit(md in hostile(), limit in 16usize..400) {
        use unicode_segmentation::UnicodeSegmentation;
        let chunks = crate::channel::wa_format::render(&md, limit);
        for c in &chunks {
            prop_assert!(c.chars().count() <= limit, "{} > {limit}", c.chars().count());
            for g in c.graphemes(true) {
                prop_assert!(!g.is_empty());
            }
        }
    }
}
