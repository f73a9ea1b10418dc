use rusqlite::Connection;

use super::*;
use crate::ids::{ChatJid, Folder, MessageId, PromptId, SessionId};
use crate::model::{RunState, TriggerRule};

fn temp_db() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("pb.sqlite3")).unwrap();
    (dir, store)
}

fn chat(s: &str) -> ChatJid {
    ChatJid::parse(s).unwrap()
}

fn inbound(chat_jid: &str, id: &str, text: &str, from_me: bool) -> Inbound {
    Inbound {
        chat: chat(chat_jid),
        chat_name: None,
        id: MessageId::new(id),
        sender: "491511111111@s.whatsapp.net".into(),
        sender_name: Some("Ann".into()),
        text: text.into(),
        timestamp_ms: 1_763_700_000_000,
        from_me,
        media: None,
    }
}

fn reg(jid: &str, folder: &str, main: bool) -> RegisteredChat {
    RegisteredChat {
        jid: chat(jid),
        name: folder.into(),
        folder: Folder::parse(folder).unwrap(),
        is_main: main,
        trigger: TriggerRule::Mention,
        profile: crate::model::Profile::default_for(&chat(jid), main),
    }
}

const DM: &str = "491511111111@s.whatsapp.net";
const GROUP: &str = "120363000000001@g.us";

#[tokio::test]
async fn upgrades_a_version_1_database_keeping_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.sqlite3");
    {
        let c = Connection::open(&path).unwrap();
        c.execute_batch(include_str!("fixtures/v1.sql")).unwrap();
    }
    let store = Store::open(&path).unwrap();
    let version: i64 = store
        .call(|c| Ok(c.pragma_query_value(None, "user_version", |r| r.get(0))?))
        .await
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    let me = chat("491511234567@s.whatsapp.net");
    assert_eq!(
        store.session(&me).await.unwrap(),
        Some(SessionId::new("ses_old"))
    );
    let pending = store.pending_messages(&me, 10).await.unwrap();
    assert_eq!(
        pending.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(),
        vec!["still pending"]
    );
    assert!(store.registered(&me).await.unwrap().unwrap().is_main);
    // The version 1 database was copied whole, owner-only, before the
    // first change.
    let backup = crate::store::upgrade_backup(&path, 1);
    {
        use std::os::unix::fs::PermissionsExt;
        let old = Connection::open(&backup).unwrap();
        let v: i64 = old
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, 1);
        let pending: i64 = old
            .query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))
            .unwrap();
        assert!(pending > 0);
        let mode = std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    // The tables version 2 added work.
    store
        .complete_run(
            &me,
            pending[0].seq,
            Some((MessageId::new("OUT1"), "hi".into())),
        )
        .await
        .unwrap();
    assert_eq!(store.outbox_pending().await.unwrap().len(), 1);
    // Opening again is a no-op.
    drop(store);
    Store::open(&path).unwrap();
}

#[tokio::test]
async fn refuses_a_database_newer_than_the_code() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.sqlite3");
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let err = Store::open(&path).err().unwrap();
    assert!(matches!(err, StoreError::TooNew { found: 99, .. }), "{err}");
    assert!(err.to_string().contains("newer than this build"));
}

#[tokio::test]
async fn duplicates_are_recorded_once() {
    let (_d, store) = temp_db();
    let first = store
        .record_inbound(inbound(DM, "X1", "hi", false), false)
        .await
        .unwrap();
    let again = store
        .record_inbound(inbound(DM, "X1", "hi (resent)", false), false)
        .await
        .unwrap();
    assert!(!first.duplicate && again.duplicate);
    assert!(!first.registered);
    // Same id in another chat is another message.
    assert!(
        !store
            .record_inbound(inbound(GROUP, "X1", "hi", false), false)
            .await
            .unwrap()
            .duplicate
    );
    assert_eq!(store.summary().await.unwrap().messages, 2);
}

/// A burst from many tasks at once (written in shared transactions): every
/// message is committed once, each caller learns its own outcome, and a
/// duplicate inside the same burst is still one message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_is_committed_once_per_message() {
    let (_d, store) = temp_db();
    let mut tasks = Vec::new();
    for i in 0..400 {
        let store = store.clone();
        // Ids 0..200 twice: each pair races, within a batch or across two.
        let id = format!("B{}", i % 200);
        let chat = if i % 2 == 0 { DM } else { GROUP };
        tasks.push(tokio::spawn(async move {
            let out = store
                .record_inbound(inbound(chat, &id, "burst", false), false)
                .await
                .unwrap();
            (chat, id, out.duplicate)
        }));
    }
    let mut fresh = std::collections::HashMap::new();
    for t in tasks {
        let (chat, id, duplicate) = t.await.unwrap();
        if !duplicate {
            *fresh.entry((chat, id)).or_insert(0) += 1;
        }
    }
    // i and i + 200 have the same id and the same chat parity: 200 messages.
    assert_eq!(fresh.len(), 200);
    assert!(
        fresh.values().all(|n| *n == 1),
        "one caller per message saw it new"
    );
    assert_eq!(store.summary().await.unwrap().messages, 200);
}

/// The message path's statements run on the caller's thread when the
/// connection is free, and are handed back untouched when it is not.
#[tokio::test]
async fn quick_runs_here_when_the_connection_is_free_and_not_when_it_is_held() {
    let (_d, store) = temp_db();
    let here = std::thread::current().id();
    let ran_on = store
        .quick(|_| Ok(std::thread::current().id()))
        .await
        .unwrap();
    assert_eq!(ran_on, here);
    let guard = store.conn.lock().unwrap();
    let ran = std::sync::atomic::AtomicBool::new(false);
    let back = store.inline(|_| {
        ran.store(true, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    });
    assert!(back.is_err(), "a held connection gives the statement back");
    assert!(!ran.load(std::sync::atomic::Ordering::SeqCst));
    drop(guard);
    assert!(store.inline(|_| Ok(())).is_ok());
}

/// A lone message whose writer finds the connection held waits for it on
/// the pool: it never blocks the caller's thread (on this single-threaded
/// runtime that would hang the test), and it is written once it is free.
#[tokio::test]
#[allow(clippy::await_holding_lock)] // the point: the connection stays held meanwhile
async fn a_message_waits_for_a_held_connection_off_the_callers_thread() {
    let (_d, store) = temp_db();
    let guard = store.conn.lock().unwrap();
    let writer = tokio::spawn({
        let store = store.clone();
        async move {
            store
                .record_inbound(inbound(DM, "W1", "held", false), false)
                .await
        }
    });
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(
        !writer.is_finished(),
        "written while the connection was held"
    );
    drop(guard);
    assert!(!writer.await.unwrap().unwrap().duplicate);
    assert_eq!(store.summary().await.unwrap().messages, 1);
}

/// A message the database refuses fails alone: the others of its batch are
/// committed, each with its own outcome, and a duplicate is still one.
#[tokio::test]
async fn a_refused_message_fails_alone_in_its_batch() {
    let (_d, store) = temp_db();
    {
        let mut conn = store.conn.lock().unwrap();
        conn.execute_batch(
            "CREATE TEMP TRIGGER refuse_bad BEFORE INSERT ON messages WHEN NEW.id = 'BAD'
             BEGIN SELECT RAISE(ABORT, 'refused'); END",
        )
        .unwrap();
        let batch: Vec<_> = ["A1", "BAD", "A2", "A1"]
            .iter()
            .map(|id| (inbound(DM, id, "burst", false), false))
            .collect();
        let outcomes = messages::write_batch(&mut conn, &batch).unwrap();
        let seen: Vec<_> = outcomes
            .iter()
            .map(|o| o.as_ref().map(|o| o.duplicate).map_err(|_| ()))
            .collect();
        assert_eq!(seen, [Ok(false), Err(()), Ok(false), Ok(true)]);
        // Without a refused message the batch goes through as a whole.
        let batch = vec![(inbound(DM, "A3", "burst", false), false)];
        assert!(
            !messages::write_batch(&mut conn, &batch).unwrap()[0]
                .as_ref()
                .unwrap()
                .duplicate
        );
    }
    let ids: Vec<_> = store
        .pending_messages(&chat(DM), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.id.to_string())
        .collect();
    assert_eq!(ids, ["A1", "A2", "A3"]);
}

#[tokio::test]
async fn echo_is_recognised_by_sent_id_not_by_text() {
    let (_d, store) = temp_db();
    store.register(reg(DM, "ann", false)).await.unwrap();
    store
        .enqueue_outbox(&chat(DM), &MessageId::new("SENT1"), "Andy: hello")
        .await
        .unwrap();
    let echo = store
        .record_inbound(inbound(DM, "SENT1", "Andy: hello", true), false)
        .await
        .unwrap();
    assert!(echo.echo);
    // So is a later part of a reply that was split for sending.
    let part = store
        .record_inbound(
            inbound(DM, &MessageId::new("SENT1").part(2), "…rest", true),
            false,
        )
        .await
        .unwrap();
    assert!(part.echo);
    // The user typing "Andy:" on the shared number is not an echo.
    let typed = store
        .record_inbound(inbound(DM, "USER1", "Andy: do this", true), false)
        .await
        .unwrap();
    assert!(!typed.echo);
    // With its own number, everything from_me is the assistant.
    let own = store
        .record_inbound(inbound(DM, "OWN1", "anything", true), true)
        .await
        .unwrap();
    assert!(own.echo);
    let pending = store.pending_messages(&chat(DM), 10).await.unwrap();
    assert_eq!(
        pending.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        vec!["USER1"]
    );
}

#[tokio::test]
async fn registration_starts_after_existing_history_and_guards_conflicts() {
    let (_d, store) = temp_db();
    store
        .record_inbound(inbound(GROUP, "OLD", "before registration", false), false)
        .await
        .unwrap();
    store.register(reg(GROUP, "family", false)).await.unwrap();
    assert!(
        store
            .pending_messages(&chat(GROUP), 10)
            .await
            .unwrap()
            .is_empty()
    );
    store
        .record_inbound(inbound(GROUP, "NEW", "after", false), false)
        .await
        .unwrap();
    assert_eq!(
        store
            .pending_messages(&chat(GROUP), 10)
            .await
            .unwrap()
            .len(),
        1
    );

    let e = store.register(reg(DM, "family", false)).await.unwrap_err();
    assert!(
        e.to_string().contains("folder \"family\" is already used"),
        "{e}"
    );
    store.register(reg(DM, "ann", true)).await.unwrap();
    let e = store
        .register(reg("491512222222@s.whatsapp.net", "bob", true))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("already the main chat"), "{e}");
    // Re-registering the same chat updates it.
    store.register(reg(DM, "ann2", true)).await.unwrap();
    assert_eq!(
        store
            .registered(&chat(DM))
            .await
            .unwrap()
            .unwrap()
            .folder
            .as_str(),
        "ann2"
    );

    assert!(store.unregister(&chat(GROUP)).await.unwrap());
    assert!(!store.unregister(&chat(GROUP)).await.unwrap());
    assert!(store.registered(&chat(GROUP)).await.unwrap().is_none());
}

#[tokio::test]
async fn a_chat_registered_by_its_lid_is_one_chat_with_its_phone_number() {
    const LID: &str = "100000012345678@lid";
    let (_d, store) = temp_db();
    // History under the phone number, from before the registration.
    store
        .record_inbound(inbound(DM, "OLD", "before registration", false), false)
        .await
        .unwrap();
    store.register(reg(LID, "ann", false)).await.unwrap();
    store
        .record_aliases(vec![(chat(LID), chat(DM))])
        .await
        .unwrap();

    // A message under the phone number lands in the LID-registered chat.
    let out = store
        .record_inbound(inbound(DM, "NEW", "after", false), false)
        .await
        .unwrap();
    assert!(out.registered && !out.duplicate && !out.echo);
    assert_eq!(out.chat, chat(LID));
    let reg = store.registered(&chat(DM)).await.unwrap().unwrap();
    assert_eq!(reg.jid, chat(LID), "the registration names its own form");
    let pending: Vec<String> = store
        .pending_messages(&chat(LID), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(
        pending,
        vec!["after"],
        "no history from before registration"
    );

    // The same message seen again under the LID form is a duplicate.
    let again = store
        .record_inbound(inbound(LID, "NEW", "after", false), false)
        .await
        .unwrap();
    assert!(again.duplicate);
    // An unregistered chat keeps its own form.
    let other = store
        .record_inbound(inbound(GROUP, "G1", "hi", false), false)
        .await
        .unwrap();
    assert_eq!(other.chat, chat(GROUP));
    assert!(!other.registered);
}

#[tokio::test]
async fn complete_run_moves_cursor_and_queues_reply_together() {
    let (_d, store) = temp_db();
    store.register(reg(DM, "ann", false)).await.unwrap();
    for i in 0..3 {
        store
            .record_inbound(inbound(DM, &format!("M{i}"), "x", false), false)
            .await
            .unwrap();
    }
    let batch = store.pending_messages(&chat(DM), 2).await.unwrap();
    assert_eq!(
        batch.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        vec!["M1", "M2"],
        "newest win when capped"
    );
    store
        .begin_run(
            &chat(DM),
            &SessionId::new("ses_1"),
            &PromptId::new("msg_1"),
            batch[1].seq,
            1,
        )
        .await
        .unwrap();
    assert_eq!(store.runs().await.unwrap()[0].state, RunState::Running);
    assert_eq!(store.chats_with_pending().await.unwrap(), vec![chat(DM)]);

    store
        .complete_run(
            &chat(DM),
            batch[1].seq,
            Some((MessageId::new("R1"), "answer".into())),
        )
        .await
        .unwrap();
    assert!(
        store
            .pending_messages(&chat(DM), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.runs().await.unwrap().is_empty());
    assert!(store.chats_with_pending().await.unwrap().is_empty());
    let out = store.outbox_pending().await.unwrap();
    assert_eq!((out[0].id.as_str(), out[0].text.as_str()), ("R1", "answer"));

    store
        .outbox_record(out[0].seq, Err(("link down".into(), false)))
        .await
        .unwrap();
    assert_eq!(store.outbox_pending().await.unwrap()[0].attempts, 1);
    store.outbox_record(out[0].seq, Ok(())).await.unwrap();
    assert!(store.outbox_pending().await.unwrap().is_empty());

    // A reply id can only be queued once.
    assert!(
        store
            .enqueue_outbox(&chat(DM), &MessageId::new("R1"), "again")
            .await
            .is_err()
    );
}

#[tokio::test]
async fn parked_runs_are_listed_with_reason() {
    let (_d, store) = temp_db();
    store
        .park_run(&chat(DM), 5, "agent run failed: APIError: bad")
        .await
        .unwrap();
    let s = store.summary().await.unwrap();
    assert_eq!((s.runs_parked, s.runs_in_flight), (1, 0));
    let runs = store.runs().await.unwrap();
    assert_eq!(
        runs[0].reason.as_deref(),
        Some("agent run failed: APIError: bad")
    );
    store.clear_run(&chat(DM)).await.unwrap();
    assert!(store.runs().await.unwrap().is_empty());
}

#[tokio::test]
async fn media_descriptions_are_kept_with_their_message_and_updated() {
    use crate::model::{InboundMedia, MediaInfo, MediaKind};
    let (_d, store) = temp_db();
    store.register(reg(DM, "ann", false)).await.unwrap();
    let info = MediaInfo {
        kind: MediaKind::Voice,
        mime: "audio/ogg".into(),
        bytes: 42,
        seconds: Some(7),
        path: Some("media/2026-12-01/V1.ogg".into()),
        ..MediaInfo::default()
    };
    let mut msg = inbound(DM, "V1", "", false);
    msg.media = Some(InboundMedia {
        info: info.clone(),
        data: Ok(b"bytes are not stored".to_vec().into()),
    });
    store.record_inbound(msg, false).await.unwrap();
    store
        .record_inbound(inbound(DM, "T1", "plain", false), false)
        .await
        .unwrap();
    let pending = store.pending_messages(&chat(DM), 10).await.unwrap();
    assert_eq!(pending[0].media.as_ref(), Some(&info));
    assert_eq!(pending[1].media, None);
    let transcribed = MediaInfo {
        transcript: Some("hello".into()),
        ..info
    };
    store
        .set_media(pending[0].seq, transcribed.clone())
        .await
        .unwrap();
    let pending = store.pending_messages(&chat(DM), 10).await.unwrap();
    assert_eq!(pending[0].media, Some(transcribed));
}

#[tokio::test]
async fn a_snapshot_of_a_live_store_is_checked_and_counted_by_path() {
    let (dir, store) = temp_db();
    store
        .register(reg("491511111111@s.whatsapp.net", "ann", false))
        .await
        .unwrap();
    store
        .register(reg("491522222222@s.whatsapp.net", "boss", true))
        .await
        .unwrap();
    let copy = dir.path().join("copy.sqlite3");
    assert!(ops::snapshot(store.path(), &copy).unwrap());
    assert_eq!(ops::integrity_check(&copy).unwrap(), "ok");
    assert_eq!(ops::schema_version_at(&copy).unwrap(), SCHEMA_VERSION);
    assert_eq!(ops::counts_at(&copy).unwrap(), (2, 0));
    assert_eq!(
        ops::quick_check(&copy).unwrap(),
        (SCHEMA_VERSION, "ok".to_owned())
    );
    // The main chat first.
    assert_eq!(
        ops::first_chat_folder(&copy).unwrap().as_deref(),
        Some("boss")
    );
    let overview = store.overview(5).await.unwrap();
    assert_eq!(overview.chats.len(), 2);
    assert_eq!(overview.outbox.pending, 0);
}
