mod link;

use crate::store::InboundOutcome;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::inbound::Hook;
use super::outbound::classify;
use super::*;
use crate::ids::Folder;
use crate::ids::{ChatJid, MessageId};
use crate::model::{Inbound, RegisteredChat, TriggerRule};
use futures_util::future::BoxFuture;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use whatsapp_rust::anyhow;
use whatsapp_rust::types::events;
use whatsapp_rust::types::presence::ReceiptType;

/// A transport that never connects, counting attempts.
pub(super) struct NoNetwork(pub(super) Arc<AtomicUsize>);

#[whatsapp_rust::async_trait]
impl whatsapp_rust::transport::TransportFactory for NoNetwork {
    async fn create_transport(
        &self,
    ) -> Result<
        (
            Arc<dyn whatsapp_rust::transport::Transport>,
            whatsapp_rust::async_channel::Receiver<whatsapp_rust::transport::TransportEvent>,
        ),
        anyhow::Error,
    > {
        self.0.fetch_add(1, Ordering::SeqCst);
        Err(anyhow::anyhow!("offline test: no network"))
    }
}

pub(super) struct NoHttp;

#[whatsapp_rust::async_trait]
impl whatsapp_rust::http::HttpClient for NoHttp {
    async fn execute(
        &self,
        _r: whatsapp_rust::http::HttpRequest,
    ) -> anyhow::Result<whatsapp_rust::http::HttpResponse> {
        Err(anyhow::anyhow!("offline test: no http"))
    }
}

pub(super) struct NullSink;

/// What a sink that keeps everything says of `msg`.
pub(super) fn kept(msg: &Inbound) -> InboundOutcome {
    InboundOutcome {
        duplicate: false,
        echo: false,
        registered: false,
        registration: None,
        chat: msg.chat.clone(),
    }
}

impl InboundSink for NullSink {
    fn accept(&self, msg: Inbound) -> BoxFuture<'_, crate::store::Result<InboundOutcome>> {
        Box::pin(async move { Ok(kept(&msg)) })
    }
}

pub(super) const ANN: &str = "15551234567@s.whatsapp.net";

pub(super) async fn offline(
    dir: &std::path::Path,
    attempts: Arc<AtomicUsize>,
) -> (Store, WhatsAppChannel) {
    let store = Store::open(&dir.join("pb.sqlite3")).unwrap();
    store
        .register(RegisteredChat {
            jid: ChatJid::parse(ANN).unwrap(),
            name: "Ann".into(),
            folder: Folder::parse("ann").unwrap(),
            is_main: false,
            trigger: TriggerRule::Mention,
            profile: crate::model::Profile::Member,
        })
        .await
        .unwrap();
    let opts = WhatsAppOptions {
        device_db: dir.join("wa/device.sqlite3"),
        pair_phone: None,
        chunk_limit: 4000,
        read_receipts: true,
        governor: Governor {
            per_chat_per_minute: 12,
            per_minute: 40,
            jitter: Duration::ZERO,
        },
        media_limits: crate::media::MediaLimits::default(),
        silence: Duration::from_secs(120),
        transport: Some(Arc::new(NoNetwork(attempts))),
        http: Some(Arc::new(NoHttp)),
    };
    (store.clone(), WhatsAppChannel::new(store, opts))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_client_builds_retries_and_shuts_down_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let attempts = Arc::new(AtomicUsize::new(0));
    let (_store, ch) = offline(dir.path(), attempts.clone()).await;
    let cancel = CancellationToken::new();
    let task = tokio::spawn(ch.clone().supervise(Arc::new(NullSink), cancel.clone()));

    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while attempts.load(Ordering::SeqCst) < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "the client kept retrying: {}",
            attempts.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let link = ch.link().borrow().clone();
    assert_eq!((link.up, link.code), (false, "whatsapp-connecting"));
    assert!(
        dir.path().join("wa/device.sqlite3").exists(),
        "device store in its own file"
    );

    // Sends wait in the outbox while offline. (Who may be sent to is the
    // core's rule: see the sender's tests.)
    let msg = Outgoing {
        chat: ChatJid::parse(ANN).unwrap(),
        id: ch.new_message_id(),
        text: "hi".into(),
        media: None,
    };
    assert!(matches!(
        ch.send(&msg).await,
        Err(ChannelError::Disconnected)
    ));

    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("stops on shutdown")
        .unwrap();

    // A restart reuses the device store.
    let cancel = CancellationToken::new();
    let task = tokio::spawn(ch.clone().supervise(Arc::new(NullSink), cancel.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
}

#[test]
fn qr_exhaustion_rebuilds_permanent_ends_wait() {
    assert!(matches!(after(&Ending::QrExhausted), Step::Rebuild(d) if d <= Duration::from_secs(1)));
    assert!(matches!(after(&Ending::Unexpected), Step::Rebuild(_)));
    // Whatever the code, a permanent end is never retried.
    assert_eq!(
        after(&Ending::Permanent {
            code: "whatsapp-banned",
            message: String::new()
        }),
        Step::Wait
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_become_stable_health_codes() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, ch) = offline(dir.path(), Arc::default()).await;
    let client = ch.build(Arc::new(NullSink)).await.unwrap().client();
    // (event, the link code it sets (None: unchanged), permanent end)
    let cases: Vec<(Event, Option<&str>, bool)> = vec![
        (
            Event::StreamReplaced(events::StreamReplaced::builder().build()),
            Some("whatsapp-stream-replaced"),
            true,
        ),
        (
            Event::ClientOutdated(events::ClientOutdated::builder().build()),
            Some("whatsapp-outdated"),
            true,
        ),
        (
            Event::TemporaryBan(
                events::TemporaryBan::builder()
                    .code(events::TempBanReason::SentToTooManyPeople)
                    .expire(chrono::Duration::seconds(3600))
                    .build(),
            ),
            Some("whatsapp-banned"),
            true,
        ),
        // Out of codes: the supervisor rebuilds and shows fresh ones.
        (
            Event::PairingQrCodesExhausted(
                events::PairingQrCodesExhausted::builder()
                    .disconnected(true)
                    .build(),
            ),
            None,
            false,
        ),
    ];
    for (ev, code, permanent) in cases {
        let before = ch.link().borrow().code;
        ch.on_event(&ev, client.clone()).await;
        let now = ch.link().borrow().code;
        assert_eq!(now, code.unwrap_or(before));
        let ending = ch.shared.ending.lock().unwrap().take();
        let message = ch.link().borrow().message.clone();
        if now == "whatsapp-outdated" {
            assert!(
                message.ends_with("not reconnecting: upgrade PocketBrain, then restart it"),
                "{message}"
            );
        }
        if now == "whatsapp-banned" {
            assert!(
                message.contains("for 3600 s; not reconnecting: retrying would prolong the ban"),
                "{message}"
            );
        }
        if now == "whatsapp-stream-replaced" {
            assert!(
                message.contains("link again with `pocketbrain whatsapp link`"),
                "{message}"
            );
        }
        if permanent {
            assert!(matches!(ending, Some(Ending::Permanent { code: c, .. }) if c == now));
        } else {
            assert_eq!(ending, Some(Ending::QrExhausted));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_qr_code_is_in_the_link_status_until_paired() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, ch) = offline(dir.path(), Arc::default()).await;
    let client = ch.build(Arc::new(NullSink)).await.unwrap().client();
    for code in ["2@first,a=,b=", "2@second,a=,b="] {
        let ev = Event::PairingQrCode(
            events::PairingQrCode::builder()
                .code(code.to_owned())
                .timeout(std::time::Duration::from_secs(20))
                .build(),
        );
        ch.on_event(&ev, client.clone()).await;
        let link = ch.link().borrow().clone();
        assert_eq!(
            (link.code, link.qr.as_deref()),
            ("whatsapp-pairing", Some(code))
        );
    }
    ch.on_event(
        &Event::StreamReplaced(events::StreamReplaced::builder().build()),
        client.clone(),
    )
    .await;
    assert_eq!(ch.link().borrow().qr, None);
}

#[tokio::test(start_paused = true)]
async fn governor_spaces_sends_per_chat_and_overall() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, mut ch) = offline(dir.path(), Arc::default()).await;
    Arc::get_mut(&mut ch.shared).unwrap().opts.governor = Governor {
        per_chat_per_minute: 2,
        per_minute: 3,
        jitter: Duration::ZERO,
    };
    let a = ChatJid::parse(ANN).unwrap();
    let b = ChatJid::parse("15552222222@s.whatsapp.net").unwrap();
    let start = tokio::time::Instant::now();
    ch.govern(&a, true).await.unwrap();
    ch.govern(&a, true).await.unwrap();
    // a's third within a minute: refused at once with the wait, so the
    // sender can go on with other chats.
    let wait = ch.govern(&a, true).await.unwrap_err();
    assert!(
        wait > Duration::from_secs(59) && wait <= Duration::from_secs(60),
        "{wait:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(1));
    ch.govern(&b, true).await.unwrap(); // third overall: within the global limit
    assert!(start.elapsed() < Duration::from_secs(1));
    // The global window is full now: every chat is told to wait.
    let c = ChatJid::parse("15553333333@s.whatsapp.net").unwrap();
    assert!(ch.govern(&c, true).await.is_err());
    // A later part of a message already begun waits for the window instead.
    ch.govern(&a, false).await.unwrap();
    assert!(
        start.elapsed() >= Duration::from_secs(60),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn send_errors_are_classified_by_what_the_server_said() {
    use whatsapp_rust::{ClientError, IqError, SendError};
    let server = |code: u16, backoff: Option<u32>| {
        SendError::Iq(IqError::ServerError {
            code,
            text: "why".into(),
            error_type: None,
            backoff,
        })
    };
    let kind = |e: SendError| match classify(e) {
        ChannelError::Disconnected => "wait for link".to_owned(),
        ChannelError::RetryAfter(d) => format!("retry after {}s", d.as_secs()),
        ChannelError::Transient(_) => "retry".to_owned(),
        ChannelError::Rejected(why) => format!("refused: {why}"),
    };
    assert_eq!(kind(SendError::NotLoggedIn), "wait for link");
    assert_eq!(kind(SendError::Iq(IqError::NotConnected)), "wait for link");
    assert_eq!(
        kind(SendError::Client(ClientError::NotConnected)),
        "wait for link"
    );
    assert_eq!(
        kind(SendError::Client(ClientError::Iq(IqError::NotConnected))),
        "wait for link"
    );
    assert_eq!(
        kind(server(403, None)),
        "refused: WhatsApp refused the message: 403 why"
    );
    assert_eq!(
        kind(server(404, None)),
        "refused: WhatsApp refused the message: 404 why"
    );
    assert_eq!(kind(server(500, Some(30))), "retry after 30s");
    assert_eq!(kind(server(429, None)), "retry after 60s");
    assert_eq!(kind(server(408, None)), "retry");
    assert_eq!(kind(server(503, None)), "retry");
    assert_eq!(kind(SendError::Iq(IqError::Timeout)), "retry");
    assert_eq!(
        kind(SendError::InvalidRequest("newsletter".into())),
        "refused: newsletter"
    );
    assert_eq!(
        kind(SendError::Internal(whatsapp_rust::anyhow::anyhow!(
            "signal"
        ))),
        "retry"
    );
}

#[test]
fn qr_code_renders_as_a_block_with_a_quiet_zone() {
    let block = render_qr("2@AbCdEfGh0123456789,xyz=,abc=,def=").unwrap();
    let lines: Vec<&str> = block.lines().collect();
    assert!(lines.len() > 10);
    let width = lines[0].chars().count();
    assert!(
        lines.iter().all(|l| l.chars().count() == width),
        "a rectangle"
    );
    // The quiet zone: the first line is all light (rendered as full blocks on dark terminals' light squares).
    assert!(
        lines[0]
            .chars()
            .all(|c| c == lines[0].chars().next().unwrap())
    );
    assert!(
        block.chars().any(|c| c == ' ') && block.chars().any(|c| c == '█' || c == '▀' || c == '▄')
    );
}

#[test]
fn part_ids_keep_the_outbox_id_recognisable() {
    let id = MessageId::new("3EB0ABCDEF0123456789AB");
    assert_eq!(id.part(0), "3EB0ABCDEF0123456789AB");
    assert_eq!(id.part(2), "3EB0ABCDEF0123456789AB-2");
    assert_eq!(
        MessageId::base_of("3EB0ABCDEF0123456789AB-2"),
        "3EB0ABCDEF0123456789AB"
    );
    assert_eq!(
        MessageId::base_of("3EB0ABCDEF0123456789AB"),
        "3EB0ABCDEF0123456789AB"
    );
    assert_eq!(MessageId::base_of("odd-id"), "odd-id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_move_outbox_rows_forward_only() {
    let dir = tempfile::tempdir().unwrap();
    let (store, ch) = offline(dir.path(), Arc::default()).await;
    let client = ch.build(Arc::new(NullSink)).await.unwrap().client();
    // The channel reports; the core (the sender) applies each report.
    let mut events = ch.take_events().unwrap();
    let mut apply = async |store: &Store| {
        while let Ok(ev) = events.try_recv() {
            crate::sender::apply_event(store, &ev).await.unwrap();
        }
    };
    let chat = ChatJid::parse(ANN).unwrap();
    store
        .enqueue_outbox(&chat, &MessageId::new("3EB0AAAA"), "two parts")
        .await
        .unwrap();
    let seq = store.outbox_pending().await.unwrap()[0].seq;
    store.outbox_record(seq, Ok(())).await.unwrap();
    let state = |store: Store| async move { store.outbox_state(seq).await.unwrap() };
    let receipt = |kind: ReceiptType, id: &str| {
        Event::Receipt(
            events::Receipt::builder()
                .source(whatsapp_rust::types::message::MessageSource {
                    chat: ANN.parse().unwrap(),
                    ..Default::default()
                })
                .message_ids(vec![id.into()])
                .timestamp(chrono::Utc::now())
                .r#type(kind)
                .offline(false)
                .build(),
        )
    };
    // A receipt for the second part counts for the row.
    ch.on_event(
        &receipt(ReceiptType::Delivered, "3EB0AAAA-1"),
        client.clone(),
    )
    .await;
    apply(&store).await;
    assert_eq!(state(store.clone()).await, "delivered -");
    ch.on_event(&receipt(ReceiptType::Read, "3EB0AAAA"), client.clone())
        .await;
    apply(&store).await;
    assert_eq!(state(store.clone()).await, "read -");
    // A late "delivered" does not move it back.
    ch.on_event(&receipt(ReceiptType::Delivered, "3EB0AAAA"), client.clone())
        .await;
    apply(&store).await;
    assert_eq!(state(store.clone()).await, "read -");

    // A part the server refuses after sending marks its row failed, with
    // the code; a plain ack and a nack of another stanza class do not.
    let ack = |id: &str, class: &str, error: Option<&str>| {
        Event::ServerAck(
            events::ServerAck::builder()
                .id(id.into())
                .class(class.into())
                .maybe_error(error.map(Into::into))
                .build(),
        )
    };
    store
        .enqueue_outbox(&chat, &MessageId::new("3EB0BBBB"), "refused")
        .await
        .unwrap();
    let seq = store.outbox_pending().await.unwrap()[0].seq;
    store.outbox_record(seq, Ok(())).await.unwrap();
    let state = |store: Store| async move { store.outbox_state(seq).await.unwrap() };
    for ev in [
        ack("3EB0BBBB", "message", None),
        ack("3EB0BBBB", "receipt", Some("479")),
    ] {
        ch.on_event(&ev, client.clone()).await;
        apply(&store).await;
        assert_eq!(state(store.clone()).await, "sent -");
    }
    ch.on_event(&ack("3EB0BBBB-1", "message", Some("479")), client.clone())
        .await;
    apply(&store).await;
    assert_eq!(
        state(store.clone()).await,
        "failed refused by WhatsApp (code 479)"
    );
}

/// Pairing tells the core whose account this is: its own chat without the
/// device part, and its LID as the other form.
#[tokio::test]
async fn pairing_reports_the_accounts_own_chat() {
    struct Recorder(Mutex<Vec<(ChatJid, Option<ChatJid>)>>);
    impl InboundSink for Recorder {
        fn accept(&self, msg: Inbound) -> BoxFuture<'_, crate::store::Result<InboundOutcome>> {
            Box::pin(async move { Ok(kept(&msg)) })
        }
        fn paired(&self, own: ChatJid, lid: Option<ChatJid>) -> BoxFuture<'_, ()> {
            self.0.lock().unwrap().push((own, lid));
            Box::pin(async {})
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let (_store, ch) = offline(dir.path(), Arc::default()).await;
    let sink = Recorder(Mutex::default());
    let ev = events::PairSuccess::builder()
        .id("491511234567:12@s.whatsapp.net".parse().unwrap())
        .lid("100000000000001:12@lid".parse().unwrap())
        .business_name(String::new())
        .platform("android".into())
        .build();
    ch.paired(&ev, &sink).await;
    assert_eq!(
        *sink.0.lock().unwrap(),
        vec![(
            ChatJid::parse("491511234567@s.whatsapp.net").unwrap(),
            Some(ChatJid::parse("100000000000001@lid").unwrap())
        )]
    );
}

/// A link state is recorded (and logged) once; the same state again is not
/// a change, so watchers such as the sender are not woken for nothing.
#[tokio::test]
async fn the_same_link_state_twice_is_one_change() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, ch) = offline(dir.path(), Arc::default()).await;
    let mut link = ch.link();
    link.mark_unchanged();
    let down = || status(false, "whatsapp-reconnecting", "disconnected: stream error");
    ch.set_link(down());
    assert!(link.has_changed().unwrap());
    link.mark_unchanged();
    ch.set_link(down());
    assert!(
        !link.has_changed().unwrap(),
        "a repeated state is no change"
    );
    ch.set_link(status(true, "whatsapp-connected", "connected"));
    assert!(link.has_changed().unwrap());
}

/// A media source that records what it is asked for and serves a PNG.
#[derive(Default)]
struct RecordingFetch(Mutex<Vec<String>>);

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

impl download::Fetch for RecordingFetch {
    fn fetch<'a>(
        &'a self,
        part: &'a dyn whatsapp_rust::download::Downloadable,
        mut sink: download::Capped,
    ) -> BoxFuture<'a, anyhow::Result<download::Capped>> {
        Box::pin(async move {
            use std::io::Write;
            self.0
                .lock()
                .unwrap()
                .push(part.direct_path().unwrap_or_default().to_owned());
            sink.write_all(PNG)?;
            Ok(sink)
        })
    }
}

/// Keeps what it is handed.
#[derive(Default)]
struct KeepSink(Mutex<Vec<Inbound>>);

impl InboundSink for KeepSink {
    fn accept(&self, msg: Inbound) -> BoxFuture<'_, crate::store::Result<InboundOutcome>> {
        let outcome = kept(&msg);
        self.0.lock().unwrap().push(msg);
        Box::pin(async move { Ok(outcome) })
    }
}

fn photo_from(chat: &str, id: &str, path: &str) -> InboundMessage {
    use whatsapp_rust::prelude::MessageField;
    use whatsapp_rust::types::message::{MessageInfo, MessageSource};
    let jid: Jid = chat.parse().unwrap();
    let info = MessageInfo {
        id: id.into(),
        timestamp: chrono::DateTime::from_timestamp(1_763_700_000, 0).unwrap(),
        source: MessageSource {
            chat: jid.clone(),
            sender: jid,
            ..Default::default()
        },
        ..Default::default()
    };
    let message = wa::Message {
        image_message: MessageField::some(wa::message::ImageMessage {
            mimetype: Some("image/png".into()),
            file_length: Some(PNG.len() as u64),
            direct_path: Some(path.into()),
            media_key: Some(vec![7; 32]),
            ..Default::default()
        }),
        ..Default::default()
    };
    InboundMessage::builder()
        .info(Arc::new(info))
        .message(Arc::new(message))
        .build()
}

#[tokio::test]
async fn media_of_an_unregistered_chat_is_not_downloaded() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _ch) = offline(dir.path(), Arc::new(AtomicUsize::new(0))).await;
    let sink = Arc::new(KeepSink::default());
    let hook = Hook {
        sink: sink.clone(),
        store,
        limits: crate::media::MediaLimits::default(),
        tmp: dir.path().join("tmp"),
    };
    let fetch = RecordingFetch::default();
    let stranger = "15559876543@s.whatsapp.net";
    hook.commit(
        &fetch,
        &[
            photo_from(stranger, "S1", "/v/stranger"),
            photo_from(ANN, "A1", "/v/ann"),
        ],
    )
    .await
    .unwrap();

    // Only the registered chat's photo was fetched.
    assert_eq!(*fetch.0.lock().unwrap(), ["/v/ann"]);
    let got = sink.0.lock().unwrap();
    assert_eq!(got.len(), 2, "both messages are kept");
    let media = |i: usize| got[i].media.as_ref().unwrap().data.as_ref();
    assert_eq!(
        media(0).err().map(String::as_str),
        Some("not downloaded: the chat is not registered")
    );
    let Ok(crate::model::MediaData::File(file)) = media(1) else {
        panic!("the registered chat's photo arrives as a file");
    };
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut &**file, &mut bytes).unwrap();
    assert_eq!(bytes, PNG);
}
