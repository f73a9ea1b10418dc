use std::collections::VecDeque;
use std::sync::Mutex;

use futures_util::future::BoxFuture;
use tokio::sync::watch;

use super::*;
use crate::channel::LinkStatus;
use crate::ids::{ChatJid, Folder, MessageId};
use crate::model::{Profile, RegisteredChat, TriggerRule};

/// A channel that answers each send to a chat with the next scripted
/// result for that chat (`Ok` when none is left) and records deliveries.
struct Scripted {
    script: Mutex<HashMap<String, VecDeque<ChannelError>>>,
    sent: Mutex<Vec<String>>,
    link: watch::Sender<LinkStatus>,
    /// When each send was tried.
    tries: Mutex<Vec<tokio::time::Instant>>,
}

impl Scripted {
    fn new() -> Self {
        let up = LinkStatus {
            up: true,
            code: "test-up",
            message: String::new(),
            qr: None,
            pair_code: None,
        };
        Self {
            script: Mutex::default(),
            sent: Mutex::default(),
            link: watch::channel(up).0,
            tries: Mutex::default(),
        }
    }
    fn then(&self, chat: &ChatJid, e: ChannelError) {
        let mut script = self.script.lock().unwrap();
        script.entry(chat.to_string()).or_default().push_back(e);
    }
    fn sent(&self) -> Vec<String> {
        self.sent.lock().unwrap().clone()
    }
}

impl Channel for Scripted {
    fn send<'a>(&'a self, msg: &'a Outgoing) -> BoxFuture<'a, Result<(), ChannelError>> {
        self.tries.lock().unwrap().push(tokio::time::Instant::now());
        let next = self
            .script
            .lock()
            .unwrap()
            .get_mut(msg.chat.as_str())
            .and_then(|q| q.pop_front());
        if next.is_none() {
            self.sent.lock().unwrap().push(match &msg.media {
                Some(m) => format!("{} {} {}", msg.id, m.kind, m.data.len()),
                None => msg.id.to_string(),
            });
        }
        Box::pin(async move { next.map_or(Ok(()), Err) })
    }
    fn link(&self) -> watch::Receiver<LinkStatus> {
        self.link.subscribe()
    }
    fn new_message_id(&self) -> MessageId {
        MessageId::new("unused")
    }
}

/// A store in which the test's chats are registered.
async fn store_with_chats(dir: &std::path::Path) -> Store {
    let path = dir.join("pb.sqlite3");
    let store = Store::open(&path).unwrap();
    for (i, jid) in ["15551111111@s.whatsapp.net", "15552222222@s.whatsapp.net"]
        .iter()
        .enumerate()
    {
        let reg = RegisteredChat {
            jid: ChatJid::parse(jid).unwrap(),
            name: "x".into(),
            folder: Folder::parse(&format!("c{i}")).unwrap(),
            is_main: false,
            trigger: TriggerRule::Mention,
            profile: Profile::Member,
        };
        store.register(reg).await.unwrap();
    }
    store
}

/// One sender pass over every chat, for rows without files.
async fn text_pass(
    store: &Store,
    ch: &dyn Channel,
    failing: &mut Failing,
) -> Option<Option<Duration>> {
    let no_files = (PathBuf::from("/nonexistent"), MediaLimits::default());
    deliver_pending(store, ch, all_chats, failing, &no_files)
        .await
        .unwrap()
}

fn pending_ids(rows: &[crate::store::OutboxRow]) -> Vec<&str> {
    rows.iter().map(|r| r.id.as_str()).collect()
}

#[tokio::test(start_paused = true)]
async fn a_row_that_keeps_failing_is_given_up_and_unblocks_its_chat() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_chats(dir.path()).await;
    let a = ChatJid::parse("15551111111@s.whatsapp.net").unwrap();
    let b = ChatJid::parse("15552222222@s.whatsapp.net").unwrap();
    for (chat, id) in [(&a, "A1"), (&a, "A2"), (&b, "B1")] {
        store
            .enqueue_outbox(chat, &MessageId::new(id), id)
            .await
            .unwrap();
    }
    let ch = Scripted::new();
    let mut failing = Failing::default();
    let minutes = |m: u64| Duration::from_secs(m * 60);
    let transient = || ChannelError::Transient("encrypt failed".into());

    // A1 fails: A2 waits behind it, B1 goes out.
    ch.then(&a, transient());
    let retry = text_pass(&store, &ch, &mut failing).await;
    assert_eq!(retry, Some(None));
    assert_eq!(ch.sent(), ["B1"]);
    let pending = store.outbox_pending().await.unwrap();
    assert_eq!(pending_ids(&pending), ["A1", "A2"]);

    // Rate limits do not count; 14 minutes of failures are not enough.
    tokio::time::advance(minutes(7)).await;
    ch.then(&a, ChannelError::RetryAfter(Duration::from_secs(30)));
    text_pass(&store, &ch, &mut failing).await;
    tokio::time::advance(minutes(7)).await;
    ch.then(&a, transient());
    text_pass(&store, &ch, &mut failing).await;
    assert_eq!(ch.sent(), ["B1"]);

    // Fifteen minutes after the first failure A1 is marked failed with
    // the reason, and A2 goes out in the same pass.
    tokio::time::advance(minutes(1)).await;
    ch.then(&a, transient());
    let retry = text_pass(&store, &ch, &mut failing).await;
    assert_eq!(retry, None);
    assert_eq!(ch.sent(), ["B1", "A2"]);
    assert!(store.outbox_pending().await.unwrap().is_empty());
    assert_eq!(
        store.outbox_state(pending[0].seq).await.unwrap(),
        "failed gave up after 15 min of failures: send failed: encrypt failed"
    );
    assert!(failing.0.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_lost_link_gives_failing_rows_a_fresh_allowance() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_chats(dir.path()).await;
    let a = ChatJid::parse("15551111111@s.whatsapp.net").unwrap();
    let seq = store
        .enqueue_outbox(&a, &MessageId::new("A1"), "hi")
        .await
        .unwrap();
    let ch = Scripted::new();
    let mut failing = Failing::default();
    let transient = || ChannelError::Transient("timeout".into());

    ch.then(&a, transient());
    text_pass(&store, &ch, &mut failing).await;
    tokio::time::advance(GIVE_UP_AFTER - Duration::from_secs(60)).await;
    ch.then(&a, ChannelError::Disconnected);
    text_pass(&store, &ch, &mut failing).await;
    tokio::time::advance(Duration::from_secs(120)).await;
    ch.then(&a, transient());
    text_pass(&store, &ch, &mut failing).await;
    assert_eq!(pending_ids(&store.outbox_pending().await.unwrap()), ["A1"]);

    // A link seen down clears the allowance too.
    tokio::time::advance(GIVE_UP_AFTER).await;
    ch.link.send_modify(|l| l.up = false);
    text_pass(&store, &ch, &mut failing).await;
    ch.link.send_modify(|l| l.up = true);
    ch.then(&a, transient());
    text_pass(&store, &ch, &mut failing).await;
    assert_eq!(pending_ids(&store.outbox_pending().await.unwrap()), ["A1"]);

    // Then, kept failing with the link up, it is given up.
    tokio::time::advance(GIVE_UP_AFTER).await;
    ch.then(&a, transient());
    text_pass(&store, &ch, &mut failing).await;
    assert!(store.outbox_pending().await.unwrap().is_empty());
    assert!(
        store
            .outbox_state(seq)
            .await
            .unwrap()
            .starts_with("failed gave up")
    );
    assert!(ch.sent().is_empty());
}

#[test]
fn the_retry_hint_does_not_depend_on_row_order() {
    let s = Duration::from_secs;
    assert_eq!(merge_retry(None, Some(s(30))), Some(s(30)));
    assert_eq!(merge_retry(Some(Some(s(30))), Some(s(5))), Some(s(5)));
    assert_eq!(merge_retry(Some(Some(s(30))), None), None);
    assert_eq!(merge_retry(Some(None), Some(s(30))), None);
}

/// A row whose chat is not (or no longer) registered is never handed
/// to the channel: it is marked failed and its chat's order is kept.
#[tokio::test(start_paused = true)]
async fn a_row_for_an_unregistered_chat_is_never_sent() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_chats(dir.path()).await;
    let a = ChatJid::parse("15551111111@s.whatsapp.net").unwrap();
    let stranger = ChatJid::parse("15559999999@s.whatsapp.net").unwrap();
    for (chat, id) in [(&stranger, "S1"), (&a, "A1")] {
        store
            .enqueue_outbox(chat, &MessageId::new(id), id)
            .await
            .unwrap();
    }
    let ch = Scripted::new();
    let mut failing = Failing::default();
    assert_eq!(text_pass(&store, &ch, &mut failing).await, None);
    assert_eq!(ch.sent(), ["A1"]);
    // Seqs 1 and 2, in the order queued.
    assert_eq!(
        store.outbox_state(1).await.unwrap(),
        "failed 15559999999@s.whatsapp.net is not a registered chat"
    );
    assert_eq!(store.outbox_state(2).await.unwrap(), "sent -");
}

#[tokio::test]
async fn a_file_goes_out_in_its_place_and_a_vanished_one_is_marked_failed() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_chats(dir.path()).await;
    let ws = dir.path().join("ws");
    std::fs::create_dir_all(ws.join("chats/c0/out")).unwrap();
    std::fs::write(ws.join("chats/c0/out/a.pdf"), b"%PDF-1 hello").unwrap();
    let chat = ChatJid::parse("15551111111@s.whatsapp.net").unwrap();
    let file = |path: &str| crate::model::OutboxMedia {
        path: path.into(),
        kind: crate::model::MediaKind::Document,
        mime: "application/pdf".into(),
        filename: "a.pdf".into(),
    };
    let (c2, f1, f2) = (chat.clone(), file("out/a.pdf"), file("out/gone.pdf"));
    store
        .tx(move |tx| {
            crate::store::insert_outbox(tx, &c2, &MessageId::new("T1"), "before")?;
            crate::store::insert_outbox_media(tx, &c2, &MessageId::new("F1"), "cap", Some(&f1))?;
            crate::store::insert_outbox_media(tx, &c2, &MessageId::new("F2"), "", Some(&f2))?;
            crate::store::insert_outbox(tx, &c2, &MessageId::new("T2"), "after")
        })
        .await
        .unwrap();
    let ch = Scripted::new();
    let mut failing = Failing::default();
    let files = (ws, MediaLimits::default());
    let retry = deliver_pending(&store, &ch, all_chats, &mut failing, &files)
        .await
        .unwrap();
    assert_eq!(retry, None);
    assert_eq!(ch.sent(), vec!["T1", "F1 document 12", "T2"]);
    let failed = store.outbox_state(3).await.unwrap();
    assert!(
        failed.starts_with("failed cannot send the file: out/gone.pdf does not exist"),
        "{failed}"
    );
    assert!(store.outbox_pending().await.unwrap().is_empty());
}

/// Throttled (WhatsApp's 429 becomes `RetryAfter(60 s)`, see the channel's
/// `send_errors_are_classified_by_what_the_server_said`) and then the link
/// lost: the rows wait in the outbox, none is failed or lost, a throttled
/// row is not tried again before the time the server asked for, and all go
/// out once, in order, when the link is back.
#[tokio::test(start_paused = true)]
async fn throttled_then_offline_the_outbox_keeps_every_row_and_respects_the_wait() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_chats(dir.path()).await;
    let a = ChatJid::parse("15551111111@s.whatsapp.net").unwrap();
    for id in ["A1", "A2", "A3"] {
        store
            .enqueue_outbox(&a, &MessageId::new(id), id)
            .await
            .unwrap();
    }
    let ch = Arc::new(Scripted::new());
    let throttled = Duration::from_secs(60);
    for _ in 0..3 {
        ch.then(&a, ChannelError::RetryAfter(throttled));
    }
    for _ in 0..4 {
        ch.then(&a, ChannelError::Disconnected);
    }
    let cancel = CancellationToken::new();
    let wake = Arc::new(Notify::new());
    let task = tokio::spawn(run(
        store.clone(),
        ch.clone(),
        all_chats,
        wake,
        dir.path().join("ws"),
        MediaLimits::default(),
        cancel.clone(),
    ));
    let start = tokio::time::Instant::now();
    let tries = |ch: &Scripted| ch.tries.lock().unwrap().len();

    // The three throttled tries, each at least the asked-for wait apart.
    while tries(&ch) < 4 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(start.elapsed() < Duration::from_secs(600), "stalled");
    }
    let times = ch.tries.lock().unwrap().clone();
    for pair in times[..4].windows(2) {
        assert!(pair[1] - pair[0] >= throttled, "{:?}", pair[1] - pair[0]);
    }
    // Now the link is down: rows keep waiting, whatever the time.
    ch.link.send_modify(|l| l.up = false);
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(
        pending_ids(&store.outbox_pending().await.unwrap()),
        ["A1", "A2", "A3"]
    );
    assert!(ch.sent().is_empty());
    let offline_tries = tries(&ch);
    assert!(
        offline_tries <= 3 + 4,
        "the script ran out early: {offline_tries}"
    );

    // The link comes back: everything goes out, once, in order.
    ch.link.send_modify(|l| l.up = true);
    while ch.sent().len() < 3 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(start.elapsed() < Duration::from_secs(3 * 3600), "stalled");
    }
    assert_eq!(ch.sent(), ["A1", "A2", "A3"]);
    for seq in 1..=3 {
        assert_eq!(store.outbox_state(seq).await.unwrap(), "sent -");
    }
    cancel.cancel();
    task.await.unwrap();
}
