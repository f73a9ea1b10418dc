//! The kill -9 soak: many chats talking at once while the bridge is killed
//! at random moments and started again. Every message is answered exactly
//! once, in order, in its own chat. And a flood: thousands of tiny
//! messages into one chat stay bounded and leave the others alone.
//!
//! The suite runs a small size (4 chats, 3 rounds). `scripts/soak.sh` runs
//! the full one (20 chats, 8 messages each) and longer ones:
//! `PB_SOAK_CHATS`, `PB_SOAK_ROUNDS`, and `PB_SOAK_SEED` to replay a run
//! (each run prints its seed).

mod support;

use std::time::Duration;

use rand::{RngExt, SeedableRng};
use serde_json::json;
use support::*;

// Generous: the first run in a chat boots an OpenCode instance, slow on a busy machine.
const T: Duration = Duration::from_secs(180);

fn env_or(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

fn chat(i: u64) -> String {
    format!("49152{i:07}@s.whatsapp.net")
}

/// The question and its answer for chat `c`, round `r`: delimited (by
/// letters: the prompt escapes `<` and `>`), so no question contains another.
fn question(c: u64, r: u64) -> String {
    format!("question q{c}x{r}q")
}
fn answer(c: u64, r: u64) -> String {
    format!("answer a{c}x{r}a")
}

#[tokio::test]
async fn random_kills_lose_and_repeat_nothing_across_chats() {
    let chats = env_or("PB_SOAK_CHATS", 4);
    let rounds = env_or("PB_SOAK_ROUNDS", 3);
    let seed = env_or("PB_SOAK_SEED", rand::rng().random());
    eprintln!("soak: {chats} chats, {rounds} rounds, PB_SOAK_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

    let mut w = World::new().await;
    for c in 0..chats {
        for r in 0..rounds {
            let (q, a) = (question(c, r), answer(c, r));
            w.model.always(
                move |req| req.last_user_text().contains(&q),
                Reply::text(a.clone()),
            );
        }
        w.register(&chat(c), &format!("Chat {c}"), &[]);
    }
    w.start_bridge().await;

    for r in 0..rounds {
        // Every chat gets its next message at once; the bridge is killed
        // somewhere in the runs that follow (or before they start).
        for c in 0..chats {
            let jid = chat(c);
            let (status, body) = w
                .inbox(
                    json!({"chat": jid, "sender": jid, "sender_name": format!("Chat {c}"),
                    "text": question(c, r), "id": format!("S{c}x{r}")}),
                )
                .await;
            assert_eq!(status, 202, "{body}");
        }
        let delay = Duration::from_millis(rng.random_range(0..1500));
        eprintln!("soak: round {r}: kill -9 after {delay:?}");
        tokio::time::sleep(delay).await;
        w.kill9();
        w.start_bridge().await;
        for c in 0..chats {
            w.wait_outbox(&chat(c), r as usize + 1, T).await;
        }
    }

    // Nothing is left that could send another reply: no run in flight or
    // parked, no outbox row pending, every chat's cursor past its last
    // message (read from the store with the bridge stopped).
    w.stop_bridge().await;
    let db = rusqlite::Connection::open(w.data_dir().join("pocketbrain.sqlite3")).unwrap();
    let count = |sql: &str| db.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
    assert_eq!(count("SELECT count(*) FROM runs"), 0, "runs left");
    assert_eq!(
        count("SELECT count(*) FROM outbox WHERE state = 'pending'"),
        0,
        "replies still to send"
    );
    assert_eq!(
        count(
            "SELECT count(*) FROM messages m WHERE m.seq > \
             coalesce((SELECT seq FROM cursors c WHERE c.chat = m.chat), 0) \
             AND m.is_echo = 0 AND m.chat IN (SELECT jid FROM registered_chats)"
        ),
        0,
        "messages not yet answered"
    );
    drop(db);
    w.start_bridge().await;
    for c in 0..chats {
        let want: Vec<String> = (0..rounds)
            .map(|r| format!("Andy: {}", answer(c, r)))
            .collect();
        assert_eq!(
            w.outbox_texts(&chat(c)).await,
            want,
            "chat {c} (PB_SOAK_SEED={seed})"
        );
    }
    // Just started: health says "degraded" until the bridge has seen
    // OpenCode answer and its event stream connect.
    w.wait_health(T, |h| h["status"] == "ok").await;
}

/// Thousands of tiny messages to one chat within a second or two: every
/// one stored, none refused; no prompt carries more than `PB_MAX_BATCH`
/// (the newest win: the chat's queue stays bounded, the rest is history),
/// the newest is answered; another chat's message meanwhile is answered
/// on its own.
#[tokio::test]
async fn a_flood_into_one_chat_is_bounded_and_leaves_others_alone() {
    use futures_util::StreamExt;
    const FLOOD: usize = 2000;
    const BATCH: usize = 50;
    let (a, b) = (chat(1), chat(2));
    let mut w = World::new().await;
    w.model.set_default(Reply::text("ok"));
    w.set_env("PB_MAX_BATCH", &BATCH.to_string());
    w.register(&a, "Flooded", &[]);
    w.register(&b, "Bystander", &[]);
    w.start_bridge().await;

    let started = std::time::Instant::now();
    let statuses: Vec<u16> = futures_util::stream::iter(0..FLOOD)
        .map(|i| {
            w.inbox(json!({"chat": a, "sender": a, "text": format!("tiny t{i}t"), "id": format!("F{i}")}))
        })
        .buffer_unordered(16)
        .map(|(status, _)| status)
        .collect()
        .await;
    eprintln!("flood: {FLOOD} messages posted in {:?}", started.elapsed());
    assert!(statuses.iter().all(|&s| s == 202), "every message accepted");
    let (status, body) = w
        .inbox(json!({"chat": b, "sender": b, "text": "bystander b0b", "id": "B0"}))
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(w.wait_outbox(&b, 1, T).await, vec!["Andy: ok"]);

    // The flooded chat is done once its cursor is past its last message
    // and no run of it is left (the store read beside the running bridge).
    let db = rusqlite::Connection::open_with_flags(
        w.data_dir().join("pocketbrain.sqlite3"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let one = |sql: &str| -> i64 { db.query_row(sql, [a.as_str()], |r| r.get(0)).unwrap() };
    let deadline = std::time::Instant::now() + T;
    while one("SELECT count(*) FROM messages WHERE chat = ?1 AND seq > \
         coalesce((SELECT seq FROM cursors WHERE chat = ?1), 0)")
        + one("SELECT count(*) FROM runs WHERE chat = ?1")
        > 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the flooded chat never caught up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        one("SELECT count(*) FROM messages WHERE chat = ?1") as usize,
        FLOOD,
        "all stored"
    );
    let newest: String = db
        .query_row(
            "SELECT text FROM messages WHERE chat = ?1 ORDER BY seq DESC LIMIT 1",
            [a.as_str()],
            |r| r.get(0),
        )
        .unwrap();

    let prompts: Vec<String> = w
        .model
        .requests()
        .iter()
        .filter(|r| !r.is_title_request())
        .map(|r| r.last_user_text())
        .collect();
    for p in &prompts {
        let n = p.matches("tiny t").count();
        assert!(
            n <= BATCH,
            "a prompt carried {n} messages (PB_MAX_BATCH={BATCH})"
        );
    }
    assert!(
        prompts.iter().any(|p| p.contains(&newest)),
        "the newest flooded message ({newest}) was put before the agent"
    );
    let bystander: Vec<&String> = prompts
        .iter()
        .filter(|p| p.contains("bystander b0b"))
        .collect();
    assert_eq!(bystander.len(), 1);
    assert!(
        !bystander[0].contains("tiny t"),
        "the bystander's prompt is its own"
    );
    assert_eq!(w.health().await["status"], "ok");
}

/// Hostile wire text: a lone surrogate is refused as malformed JSON, a
/// mebibyte of text as over the limit (413, naming the setting); text
/// full of control characters (NUL,
/// escape sequences, bidi overrides) is stored and reaches the agent as
/// sent. Nothing of it disturbs another chat.
#[tokio::test]
async fn hostile_wire_text_is_refused_or_carried_and_others_are_unaffected() {
    let (a, b) = (chat(1), chat(2));
    let mut w = World::new().await;
    w.model.set_default(Reply::text("ok"));
    w.model.always(
        |req| req.last_user_text().contains("ctl c1c"),
        Reply::text("seen"),
    );
    w.register(&a, "Hostile", &[]);
    w.register(&b, "Bystander", &[]);
    w.start_bridge().await;

    let (s, body) = w
        .post_raw(
            "/fake/inbox",
            format!(r#"{{"chat":"{a}","sender":"{a}","text":"x \ud800 y","id":"L1"}}"#),
        )
        .await;
    assert_eq!(s, 400, "{body}");
    let why = body["error"].as_str().unwrap();
    assert!(
        why.starts_with("malformed JSON") && why.contains("escape"),
        "{why}"
    );

    let mib = "m".repeat(1 << 20);
    let (s, body) = w
        .inbox(json!({"chat": a, "sender": a, "text": mib, "id": "M1"}))
        .await;
    assert_eq!(s, 413, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("PB_MAX_TEXT_BYTES"),
        "{body}"
    );
    // (A body over the HTTP limit is refused unread: src/http/tests.rs.)

    let hostile = "ctl c1c \u{0} nul \u{1b}[31m red \u{7} bell \u{202e} rtl \u{feff} bom \r\n end";
    let (s, body) = w
        .inbox(json!({"chat": a, "sender": a, "text": hostile, "id": "C1"}))
        .await;
    assert_eq!(s, 202, "{body}");
    let (s, body) = w
        .inbox(json!({"chat": b, "sender": b, "text": "bystander b1b", "id": "B1"}))
        .await;
    assert_eq!(s, 202, "{body}");
    assert_eq!(w.wait_outbox(&a, 1, T).await, vec!["Andy: seen"]);
    assert_eq!(w.wait_outbox(&b, 1, T).await, vec!["Andy: ok"]);
    let prompt = w
        .model
        .requests()
        .iter()
        .map(|r| r.last_user_text())
        .find(|t| t.contains("ctl c1c"))
        .unwrap();
    assert!(
        prompt.contains(hostile),
        "the text reaches the agent as sent: {prompt:?}"
    );
    // Only the one accepted message was stored for the hostile chat.
    let db = rusqlite::Connection::open_with_flags(
        w.data_dir().join("pocketbrain.sqlite3"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let stored: Vec<String> = db
        .prepare("SELECT text FROM messages WHERE chat = ?1")
        .unwrap()
        .query_map([a.as_str()], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(stored, vec![hostile.to_string()]);
    w.wait_health(T, |h| h["status"] == "ok").await;
}
