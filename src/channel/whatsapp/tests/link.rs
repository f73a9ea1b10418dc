//! The link's faults, injected through the transport seam: a server that
//! accepts the connection and then says nothing, a logged-out end, a new
//! link asked for while the bridge runs. Time is tokio's paused clock.
//!
//! No test here can complete WhatsApp's handshake (the server proves itself
//! with a certificate chain signed by WhatsApp), so "connected" is what the
//! crate's own `Connected` event makes it, handed to the channel's handler
//! as the crate would.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use whatsapp_rust::anyhow;
use whatsapp_rust::transport::{Transport, TransportEvent, TransportFactory};
use whatsapp_rust::types::events;

use super::{NoNetwork, NullSink, offline};
use crate::channel::whatsapp::watchdog::Quiet;
use crate::channel::whatsapp::*;

/// A server that accepts every connection and then never sends a byte.
/// Counts connections, and when each was made.
#[derive(Default)]
struct Mute {
    opened: Mutex<Vec<Instant>>,
}

struct MuteLink {
    // Held so the event stream stays open (silent, not closed).
    events: Mutex<Option<whatsapp_rust::async_channel::Sender<TransportEvent>>>,
}

#[whatsapp_rust::async_trait]
impl Transport for MuteLink {
    async fn send(&self, _data: bytes::Bytes) -> Result<(), anyhow::Error> {
        Ok(())
    }
    async fn disconnect(&self) {
        self.events.lock().unwrap().take();
    }
}

#[whatsapp_rust::async_trait]
impl TransportFactory for Mute {
    async fn create_transport(
        &self,
    ) -> Result<
        (
            Arc<dyn Transport>,
            whatsapp_rust::async_channel::Receiver<TransportEvent>,
        ),
        anyhow::Error,
    > {
        self.opened.lock().unwrap().push(Instant::now());
        let (tx, rx) = whatsapp_rust::async_channel::unbounded();
        tx.send(TransportEvent::Connected).await?;
        Ok((
            Arc::new(MuteLink {
                events: Mutex::new(Some(tx)),
            }),
            rx,
        ))
    }
}

impl Mute {
    fn count(&self) -> usize {
        self.opened.lock().unwrap().len()
    }
}

/// Answers the crate's version lookup, so a connection gets as far as the
/// handshake.
struct VersionOnly;

#[whatsapp_rust::async_trait]
impl whatsapp_rust::http::HttpClient for VersionOnly {
    async fn execute(
        &self,
        _r: whatsapp_rust::http::HttpRequest,
    ) -> anyhow::Result<whatsapp_rust::http::HttpResponse> {
        Ok(whatsapp_rust::http::HttpResponse {
            status_code: 200,
            body: br#"{"client_revision":1026131876}"#.to_vec(),
        })
    }
}

async fn with_transport(
    dir: &std::path::Path,
    transport: Arc<dyn TransportFactory>,
    silence: Duration,
) -> WhatsAppChannel {
    let (_store, ch) = with_store(dir, transport, silence).await;
    ch
}

async fn with_store(
    dir: &std::path::Path,
    transport: Arc<dyn TransportFactory>,
    silence: Duration,
) -> (Store, WhatsAppChannel) {
    let (store, mut ch) = offline(dir, Arc::default()).await;
    let opts = &mut Arc::get_mut(&mut ch.shared).unwrap().opts;
    opts.transport = Some(transport);
    opts.http = Some(Arc::new(VersionOnly));
    opts.silence = silence;
    (store, ch)
}

const TOKEN: &str = "0123456789abcdef-token";

/// The bridge's HTTP routes over this channel, as `serve` builds them.
fn bridge(store: Store, ch: &WhatsAppChannel) -> axum::Router {
    let state = crate::http::AppState::new(crate::http::AppParts {
        store,
        agent: Arc::new(crate::agent::fake::FakeAgent::default()),
        channel: Arc::new(ch.clone()),
        queue: crate::queue::ChatQueue::new(
            2,
            crate::queue::RetryPolicy {
                base: Duration::from_secs(5),
                max_delay: Duration::from_secs(40),
                attempts: 5,
            },
        ),
        inbound: Arc::new(NullSink),
        tasks_wake: Arc::default(),
        max_text_bytes: 10_000,
        fake: None,
        whatsapp: Some(ch.clone()),
        token: Some(crate::config::Secret::new(TOKEN)),
        opencode_url: "http://127.0.0.1:1".into(),
    });
    crate::http::router(state, None, vec![])
}

/// `method path` on the bridge, with the owner's token or none.
async fn call(
    app: &axum::Router,
    method: &str,
    path: &str,
    owner: bool,
) -> (u16, serde_json::Value) {
    use tower::ServiceExt;
    let mut req = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "127.0.0.1");
    if owner {
        req = req.header("authorization", format!("Bearer {TOKEN}"));
    }
    let res = app
        .clone()
        .oneshot(req.body(axum::body::Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status().as_u16();
    let body = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, serde_json::from_slice(&body).unwrap_or_default())
}

/// `/health` answers (200) and lists `code` among its problems.
async fn health_shows(app: &axum::Router, code: &str) {
    let (status, body) = call(app, "GET", "/health", false).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "degraded", "{body}");
    assert!(
        body["codes"].as_array().unwrap().iter().any(|c| c == code),
        "{code} in {body}"
    );
}

/// Waits until `done`, at most `limit` on tokio's clock: virtual time on a
/// paused clock (so it costs no real time), real time otherwise.
async fn until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn code(ch: &WhatsAppChannel) -> &'static str {
    ch.link().borrow().code
}

/// A connection that opens and then stays silent before the link is up is
/// the crate's to handle: its handshake gives up after 20 s and it
/// connects again. The bridge's watchdog stays out of it.
#[tokio::test(start_paused = true)]
async fn a_silent_server_during_the_handshake_is_dropped_by_the_crate() {
    let dir = tempfile::tempdir().unwrap();
    let mute = Arc::new(Mute::default());
    let ch = with_transport(dir.path(), mute.clone(), Duration::from_secs(5)).await;
    let silent_before = crate::metrics::link_restarts("silent");
    let cancel = CancellationToken::new();
    let task = tokio::spawn(ch.clone().supervise(Arc::new(NullSink), cancel.clone()));

    until(Duration::from_secs(60), "a first connection", || {
        mute.count() >= 1
    })
    .await;
    until(Duration::from_secs(120), "a second connection", || {
        mute.count() >= 2
    })
    .await;
    let opened = mute.opened.lock().unwrap().clone();
    assert!(
        opened[1] - opened[0] >= Duration::from_secs(20),
        "the crate waits out its handshake deadline: {:?}",
        opened[1] - opened[0]
    );
    assert!(!ch.link().borrow().up);
    assert_eq!(crate::metrics::link_restarts("silent"), silent_before);
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("stops on shutdown")
        .unwrap();
}

/// A link reported connected that then receives nothing is restarted by
/// the watchdog after the configured silence: a new client and a new
/// connection, the `whatsapp-silent` code meanwhile, counted in metrics.
#[tokio::test(start_paused = true)]
async fn a_connected_link_that_goes_silent_is_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let mute = Arc::new(Mute::default());
    let silence = Duration::from_secs(5);
    let (store, ch) = with_store(dir.path(), mute.clone(), silence).await;
    let app = bridge(store, &ch);
    let silent_before = crate::metrics::link_restarts("silent");
    let cancel = CancellationToken::new();
    let task = tokio::spawn(ch.clone().supervise(Arc::new(NullSink), cancel.clone()));

    until(Duration::from_secs(60), "a connection", || {
        mute.count() >= 1
    })
    .await;
    let first = ch.client().expect("a client runs");
    let up_at = Instant::now();
    ch.on_event(
        &Event::Connected(events::Connected::builder().build()),
        first.clone(),
    )
    .await;
    assert_eq!(code(&ch), "whatsapp-connected");

    let mut codes = vec![];
    until(Duration::from_secs(60), "the watchdog's restart", || {
        let c = code(&ch);
        if codes.last() != Some(&c) {
            codes.push(c);
        }
        mute.count() >= 2
    })
    .await;
    // Before the crate's own 20 s handshake deadline could have done it.
    assert!(
        up_at.elapsed() < Duration::from_secs(20),
        "{:?}",
        up_at.elapsed()
    );
    assert!(codes.contains(&"whatsapp-silent"), "{codes:?}");
    assert_eq!(crate::metrics::link_restarts("silent"), silent_before + 1);
    let second = ch.client().expect("a new client runs");
    assert!(!Arc::ptr_eq(&first, &second), "a fresh client");
    assert!(!ch.link().borrow().up);
    let message = ch.link().borrow().message.clone();
    assert!(message.contains("nothing arrived"), "{message}");
    // The bridge answered throughout, and says why the link is down.
    health_shows(&app, "whatsapp-silent").await;

    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("stops on shutdown")
        .unwrap();
}

/// The watchdog's count: any frame, or the link being down, starts it
/// again; only silence while up adds up.
#[test]
fn silence_counts_only_while_up_and_without_frames() {
    let t0 = Instant::now();
    let s = Duration::from_secs;
    let mut q = Quiet::new(7, t0);
    assert_eq!(q.observe(7, true, t0 + s(10)), s(10));
    assert_eq!(q.observe(8, true, t0 + s(20)), s(0), "a frame arrived");
    assert_eq!(q.observe(8, true, t0 + s(50)), s(30));
    assert_eq!(
        q.observe(8, false, t0 + s(60)),
        s(0),
        "down: the crate's turn"
    );
    assert_eq!(q.observe(8, true, t0 + s(70)), s(10));
}

/// After a logged-out end the supervisor never connects again by itself;
/// asking for a new link (as `pocketbrain whatsapp link` does) starts a
/// fresh client on a fresh device store while the bridge runs.
#[tokio::test(start_paused = true)]
async fn logged_out_waits_and_a_new_link_starts_a_fresh_client() {
    let dir = tempfile::tempdir().unwrap();
    let attempts = Arc::new(AtomicUsize::new(0));
    let ch = with_transport(
        dir.path(),
        Arc::new(NoNetwork(attempts.clone())),
        Duration::from_secs(120),
    )
    .await;
    let relinks_before = crate::metrics::link_restarts("relink");
    let cancel = CancellationToken::new();
    let task = tokio::spawn(ch.clone().supervise(Arc::new(NullSink), cancel.clone()));
    until(Duration::from_secs(60), "a connection attempt", || {
        attempts.load(Ordering::SeqCst) >= 1
    })
    .await;

    // Not ended: a new link is refused (it would throw the device away).
    assert_eq!(
        ch.relink(None),
        Err(RelinkRefused::Active("whatsapp-connecting"))
    );

    // The crate's own logout: it sends `LoggedOut` and stops its run loop.
    let first = ch.client().unwrap();
    first.logout().await;
    until(Duration::from_secs(10), "the logged-out state", || {
        code(&ch) == "whatsapp-logged-out"
    })
    .await;
    let message = ch.link().borrow().message.clone();
    assert!(
        message.contains("not reconnecting: link again with `pocketbrain whatsapp link`"),
        "{message}"
    );
    until(Duration::from_secs(10), "the client gone", || {
        ch.client().is_none()
    })
    .await;
    // No reconnect loop: an hour later nothing has tried again.
    let tried = attempts.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(attempts.load(Ordering::SeqCst), tried);
    assert!(ch.client().is_none());
    assert_eq!(code(&ch), "whatsapp-logged-out");

    // A new link, without restarting anything.
    let device = dir.path().join("wa/device.sqlite3");
    assert!(device.exists());
    std::fs::write(dir.path().join("wa/device.sqlite3-wal"), b"old").unwrap();
    assert_eq!(ch.relink(None), Ok(Relink::Started));
    until(Duration::from_secs(30), "a new client connecting", || {
        attempts.load(Ordering::SeqCst) > tried && ch.client().is_some()
    })
    .await;
    assert_eq!(code(&ch), "whatsapp-connecting");
    assert!(!Arc::ptr_eq(&first, &ch.client().unwrap()));
    assert_eq!(crate::metrics::link_restarts("relink"), relinks_before + 1);
    assert!(
        !dir.path().join("wa/device.sqlite3-wal").exists()
            || std::fs::read(dir.path().join("wa/device.sqlite3-wal")).unwrap() != b"old",
        "the old device store is gone"
    );
    // The new client's code to link with is what the CLI shows.
    let client = ch.client().unwrap();
    ch.on_event(
        &Event::PairingQrCode(
            events::PairingQrCode::builder()
                .code("2@fresh,code".into())
                .timeout(Duration::from_secs(60))
                .build(),
        ),
        client,
    )
    .await;
    assert_eq!(code(&ch), "whatsapp-pairing");
    assert_eq!(ch.pairing(), Some(Pairing::Qr("2@fresh,code".into())));
    assert_eq!(ch.relink(None), Ok(Relink::AlreadyPairing));

    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("stops on shutdown")
        .unwrap();
}

/// Through a logged-out end and a new link, the bridge keeps answering
/// `/health` and its API; the new link is asked for over HTTP, with the
/// owner's token, and the code to link with is read back the same way.
#[tokio::test(start_paused = true)]
async fn the_bridge_answers_through_a_logout_and_a_new_link_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let attempts = Arc::new(AtomicUsize::new(0));
    let (store, ch) = with_store(
        dir.path(),
        Arc::new(NoNetwork(attempts.clone())),
        Duration::from_secs(120),
    )
    .await;
    let app = bridge(store, &ch);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(ch.clone().supervise(Arc::new(NullSink), cancel.clone()));
    until(Duration::from_secs(60), "a connection attempt", || {
        attempts.load(Ordering::SeqCst) >= 1
    })
    .await;
    health_shows(&app, "whatsapp-connecting").await;

    // The owner's: without the token, 401.
    let (status, _) = call(&app, "POST", "/api/v1/whatsapp/link", false).await;
    assert_eq!(status, 401);
    let (status, body) = call(&app, "POST", "/api/v1/whatsapp/link", true).await;
    assert_eq!(status, 409, "not ended: {body}");
    assert!(body["error"].as_str().unwrap().contains("has not ended"));

    let first = ch.client().unwrap();
    first.logout().await;
    until(Duration::from_secs(10), "the logged-out state", || {
        code(&ch) == "whatsapp-logged-out" && ch.client().is_none()
    })
    .await;
    health_shows(&app, "whatsapp-logged-out").await;
    let (status, body) = call(&app, "GET", "/api/v1/whatsapp/link", true).await;
    assert_eq!(status, 200);
    assert_eq!(body["code"], "whatsapp-logged-out");
    assert_eq!(body["up"], false);
    assert!(body["pairing"].is_null());

    let tried = attempts.load(Ordering::SeqCst);
    let (status, body) = call(&app, "POST", "/api/v1/whatsapp/link", true).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["started"], true);
    until(Duration::from_secs(30), "a new client connecting", || {
        attempts.load(Ordering::SeqCst) > tried && ch.client().is_some()
    })
    .await;
    health_shows(&app, "whatsapp-connecting").await;
    ch.on_event(
        &Event::PairingQrCode(
            events::PairingQrCode::builder()
                .code("2@fresh,code".into())
                .timeout(Duration::from_secs(60))
                .build(),
        ),
        ch.client().unwrap(),
    )
    .await;
    let (status, body) = call(&app, "GET", "/api/v1/whatsapp/link", true).await;
    assert_eq!(status, 200);
    assert_eq!(body["code"], "whatsapp-pairing");
    assert_eq!(
        body["pairing"],
        serde_json::json!({"kind": "qr", "code": "2@fresh,code"})
    );
    // Asking again while pairing changes nothing.
    let (status, body) = call(&app, "POST", "/api/v1/whatsapp/link", true).await;
    assert_eq!((status, &body["started"]), (200, &serde_json::json!(false)));
    // The API beside it still answers.
    let (status, _) = call(&app, "GET", "/status", true).await;
    assert_eq!(status, 200);

    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("stops on shutdown")
        .unwrap();
}

/// A server that refuses every connection; records when each was tried.
#[derive(Default)]
struct Refusing(Mutex<Vec<Instant>>);

#[whatsapp_rust::async_trait]
impl TransportFactory for Refusing {
    async fn create_transport(
        &self,
    ) -> Result<
        (
            Arc<dyn Transport>,
            whatsapp_rust::async_channel::Receiver<TransportEvent>,
        ),
        anyhow::Error,
    > {
        self.0.lock().unwrap().push(Instant::now());
        Err(anyhow::anyhow!("connection refused (test)"))
    }
}

/// Failed connections (and the stream errors the crate reconnects after)
/// are retried by the crate with its own backoff: never sooner than about
/// a second (its floor, less 10 % jitter), growing, and jittered.
#[tokio::test(start_paused = true)]
async fn the_crate_backs_off_between_failed_connections_with_jitter() {
    let dir = tempfile::tempdir().unwrap();
    let refusing = Arc::new(Refusing::default());
    let ch = with_transport(dir.path(), refusing.clone(), Duration::from_secs(120)).await;
    let cancel = CancellationToken::new();
    let task = tokio::spawn(ch.clone().supervise(Arc::new(NullSink), cancel.clone()));
    until(Duration::from_secs(600), "eight tries", || {
        refusing.0.lock().unwrap().len() >= 8
    })
    .await;
    let times = refusing.0.lock().unwrap().clone();
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.iter().all(|g| *g >= Duration::from_millis(900)),
        "{gaps:?}"
    );
    // Fibonacci: the seventh wait is about 13 s (±10 %).
    assert!(gaps[6] >= Duration::from_millis(11_700), "{gaps:?}");
    assert!(
        gaps.iter().any(|g| g.subsec_millis() != 0),
        "jittered: {gaps:?}"
    );
    assert!(!ch.link().borrow().up);
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("stops on shutdown")
        .unwrap();
}

/// The supervisor's own rebuilds after unexpected ends: never sooner than
/// the floor, spread by jitter, growing to the ceiling (plus jitter), and
/// back to the floor after a client that had connected.
#[test]
fn rebuilds_after_unexpected_ends_respect_the_floor_and_spread() {
    let floor = UNEXPECTED_FLOOR;
    let mut firsts = std::collections::HashSet::new();
    for _ in 0..20 {
        let mut p = Pacer::default();
        let first = p.wait(floor, &Ending::Unexpected, false);
        assert!(first >= floor && first < floor * 2, "{first:?}");
        firsts.insert(first);
        let mut waits = vec![first];
        for _ in 0..12 {
            waits.push(p.wait(floor, &Ending::Unexpected, false));
        }
        assert!(waits.iter().all(|w| *w >= floor), "{waits:?}");
        assert!(
            waits.iter().all(|w| *w < UNEXPECTED_CEILING * 2),
            "{waits:?}"
        );
        assert!(waits[12] >= UNEXPECTED_CEILING, "{waits:?}");
        // A client that had connected: the next end waits the floor again.
        let again = p.wait(floor, &Ending::Unexpected, true);
        assert!(again >= floor && again < floor * 2, "{again:?}");
        // Other ends keep their own delay.
        let qr = Duration::from_secs(1);
        assert_eq!(p.wait(qr, &Ending::QrExhausted, false), qr);
    }
    assert!(
        firsts.len() > 1,
        "jitter spreads the first wait: {firsts:?}"
    );
}

/// What the CLI printed, readable while it still runs.
#[derive(Clone, Default)]
struct Screen(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Screen {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Screen {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// `pocketbrain whatsapp link` against a running bridge (its routes on a
/// real port, found through the address file, with the owner's token):
/// it asks for the new link, shows the QR code the new client offers, and
/// returns once the link is up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whatsapp_link_asks_the_running_bridge_and_shows_the_qr_code() {
    let dir = tempfile::tempdir().unwrap();
    let attempts = Arc::new(AtomicUsize::new(0));
    let (store, ch) = with_store(
        dir.path(),
        Arc::new(NoNetwork(attempts.clone())),
        Duration::from_secs(120),
    )
    .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cancel = CancellationToken::new();
    let server = tokio::spawn(crate::http::serve(
        listener,
        bridge(store, &ch),
        cancel.clone(),
    ));
    let supervisor = tokio::spawn(ch.clone().supervise(Arc::new(NullSink), cancel.clone()));
    until(Duration::from_secs(20), "a connection attempt", || {
        attempts.load(Ordering::SeqCst) >= 1
    })
    .await;
    ch.client().unwrap().logout().await;
    until(Duration::from_secs(20), "the logged-out end", || {
        code(&ch) == "whatsapp-logged-out" && ch.client().is_none()
    })
    .await;

    let mut config = crate::config::Config::defaults_for_tests();
    config.data_dir = dir.path().join("data");
    std::fs::create_dir_all(&config.data_dir).unwrap();
    std::fs::write(
        config.data_dir.join(crate::HTTP_ADDR_FILE),
        addr.to_string(),
    )
    .unwrap();
    config.http_token = Some(crate::config::Secret::new(TOKEN));
    let screen = Screen::default();
    let mut out = screen.clone();
    let cli = tokio::spawn(async move {
        crate::cli::whatsapp_link(&config, None, Duration::from_secs(60), &mut out)
            .await
            .map_err(|e| e.to_string())
    });

    until(Duration::from_secs(20), "the new client", || {
        ch.client().is_some() && code(&ch) == "whatsapp-connecting"
    })
    .await;
    assert!(screen.text().contains("starting a new WhatsApp link"));
    let client = ch.client().unwrap();
    ch.on_event(
        &Event::PairingQrCode(
            events::PairingQrCode::builder()
                .code("2@fresh,code".into())
                .timeout(Duration::from_secs(60))
                .build(),
        ),
        client.clone(),
    )
    .await;
    until(Duration::from_secs(20), "the QR code on the screen", || {
        screen.text().contains("Scan this QR code")
    })
    .await;
    let block = render_qr("2@fresh,code").unwrap();
    assert!(screen.text().contains(&block), "{}", screen.text());
    ch.on_event(
        &Event::Connected(events::Connected::builder().build()),
        client,
    )
    .await;
    let done = tokio::time::timeout(Duration::from_secs(20), cli)
        .await
        .expect("the CLI returns once linked")
        .unwrap();
    assert_eq!(done, Ok(()));
    assert!(screen.text().ends_with("Linked: WhatsApp is connected.\n"));

    cancel.cancel();
    supervisor.await.unwrap();
    server.await.unwrap().unwrap();
}

/// A new link asked for the moment the logged-out event arrives, while the
/// old client is still winding down, is not lost: the supervisor starts
/// the new client as soon as the old one has ended.
#[tokio::test(start_paused = true)]
async fn a_new_link_asked_for_while_the_client_winds_down_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let attempts = Arc::new(AtomicUsize::new(0));
    let ch = with_transport(
        dir.path(),
        Arc::new(NoNetwork(attempts.clone())),
        Duration::from_secs(120),
    )
    .await;
    let cancel = CancellationToken::new();
    let task = tokio::spawn(ch.clone().supervise(Arc::new(NullSink), cancel.clone()));
    until(Duration::from_secs(60), "a connection attempt", || {
        attempts.load(Ordering::SeqCst) >= 1
    })
    .await;
    let first = ch.client().unwrap();
    // The crate's event, as its logout sends it, before its run loop ends.
    ch.on_event(
        &Event::LoggedOut(
            events::LoggedOut::builder()
                .on_connect(false)
                .reason(events::ConnectFailureReason::LoggedOut)
                .build(),
        ),
        first.clone(),
    )
    .await;
    assert!(ch.client().is_some(), "the old client still runs");
    assert_eq!(ch.relink(None), Ok(Relink::Started));
    first.disconnect().await;
    until(Duration::from_secs(30), "the new client", || {
        ch.client().is_some_and(|c| !Arc::ptr_eq(&c, &first))
    })
    .await;
    assert_eq!(code(&ch), "whatsapp-connecting");
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("stops on shutdown")
        .unwrap();
}

/// `POST path` on the bridge with the owner's token and a JSON body.
async fn post_json(
    app: &axum::Router,
    path: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    use tower::ServiceExt;
    let req = axum::http::Request::builder()
        .method("POST")
        .uri(path)
        .header("host", "127.0.0.1")
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.to_string()))
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status().as_u16();
    let body = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, serde_json::from_slice(&body).unwrap_or_default())
}

/// Pairing by phone number, asked over HTTP (as `whatsapp link --phone`
/// and the terminal app ask) while the link pairs by QR code: the pairing
/// client is replaced by one configured for a pairing code (the crate
/// itself asks WhatsApp for one; with no network it reports, after its
/// 30 s wait for a socket, that none is coming), and the code the crate's
/// `PairingCode` event brings is the link's, shown as the QR text was.
#[tokio::test(start_paused = true)]
async fn a_new_link_by_phone_number_replaces_qr_pairing_with_a_pairing_code() {
    let dir = tempfile::tempdir().unwrap();
    let attempts = Arc::new(AtomicUsize::new(0));
    let (store, ch) = with_store(
        dir.path(),
        Arc::new(NoNetwork(attempts.clone())),
        Duration::from_secs(120),
    )
    .await;
    let app = bridge(store, &ch);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(ch.clone().supervise(Arc::new(NullSink), cancel.clone()));
    until(Duration::from_secs(60), "a connection attempt", || {
        attempts.load(Ordering::SeqCst) >= 1
    })
    .await;
    const LINK: &str = "/api/v1/whatsapp/link";

    // A number that is not one: 400, said why, nothing changed.
    let first = ch.client().unwrap();
    for (bad, why) in [
        (serde_json::json!({"phone": "12ab"}), "not a digit"),
        (serde_json::json!({"phone": "0151 1234567"}), "not 0"),
        (serde_json::json!({"phone": "123"}), "7 to 15 digits"),
        (
            serde_json::json!({"phone": 4915112345678u64}),
            "malformed JSON",
        ),
        (
            serde_json::json!({"number": "4915112345678"}),
            "unknown field",
        ),
    ] {
        let (status, body) = post_json(&app, LINK, bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains(why),
            "{bad}: {body}"
        );
    }
    assert_eq!(code(&ch), "whatsapp-connecting");
    assert!(Arc::ptr_eq(&first, &ch.client().unwrap()));
    // Not pairing yet (connecting): refused with a number too.
    let (status, _) = post_json(&app, LINK, serde_json::json!({"phone": "+4915112345678"})).await;
    assert_eq!(status, 409);

    // The crate offers a QR code: the link pairs by QR.
    ch.on_event(
        &Event::PairingQrCode(
            events::PairingQrCode::builder()
                .code("2@qr,code".into())
                .timeout(Duration::from_secs(60))
                .build(),
        ),
        first.clone(),
    )
    .await;
    assert_eq!(ch.pairing(), Some(Pairing::Qr("2@qr,code".into())));

    // By phone number instead: switched, not "already pairing".
    let (status, body) = post_json(
        &app,
        LINK,
        serde_json::json!({"phone": "+49 151-1234 5678"}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["started"], true);
    assert_eq!(body["code"], "whatsapp-pairing");
    assert!(body["pairing"].is_null(), "the QR code is gone: {body}");
    assert!(
        body["message"].as_str().unwrap().contains("+4915112345678"),
        "{body}"
    );
    until(Duration::from_secs(30), "a new client", || {
        ch.client().is_some_and(|c| !Arc::ptr_eq(&c, &first))
    })
    .await;
    // The same number again while it asks: nothing changes.
    let second = ch.client().unwrap();
    let (status, body) = post_json(&app, LINK, serde_json::json!({"phone": "4915112345678"})).await;
    assert_eq!((status, &body["started"]), (200, &serde_json::json!(false)));
    // The new client asks for a pairing code by itself: no network here,
    // so the crate says none is coming, and the link says so.
    until(
        Duration::from_secs(60),
        "the pairing code request's end",
        || {
            ch.link()
                .borrow()
                .message
                .contains("WhatsApp gave no pairing code")
        },
    )
    .await;
    assert!(Arc::ptr_eq(&second, &ch.client().unwrap()));
    // Asked again with the same number after that: a fresh client asks.
    let (status, _) = post_json(&app, LINK, serde_json::json!({"phone": "4915112345678"})).await;
    assert_eq!(status, 202);
    until(Duration::from_secs(30), "a third client", || {
        ch.client().is_some_and(|c| !Arc::ptr_eq(&c, &second))
    })
    .await;

    // WhatsApp's code arrives: it is the link's, on GET and on the link's
    // state (the socket's `link` frame), as the QR text was.
    let third = ch.client().unwrap();
    ch.on_event(
        &Event::PairingCode(
            events::PairingCode::builder()
                .code("ABCD1234".into())
                .timeout(Duration::from_secs(180))
                .build(),
        ),
        third.clone(),
    )
    .await;
    let (status, body) = call(&app, "GET", LINK, true).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["pairing"],
        serde_json::json!({"kind": "phone_code", "code": "ABCD1234"})
    );
    assert_eq!(ch.link().borrow().pair_code.as_deref(), Some("ABCD1234"));
    assert_eq!(ch.link().borrow().qr, None);
    // The crate's QR codes beside it are not shown over the code.
    ch.on_event(
        &Event::PairingQrCode(
            events::PairingQrCode::builder()
                .code("2@other,qr".into())
                .timeout(Duration::from_secs(20))
                .build(),
        ),
        third.clone(),
    )
    .await;
    assert_eq!(ch.pairing(), Some(Pairing::PhoneCode("ABCD1234".into())));
    // Without a number while pairing: nothing changes.
    let (status, _) = call(&app, "POST", LINK, true).await;
    assert_eq!(status, 200);
    assert!(Arc::ptr_eq(&third, &ch.client().unwrap()));

    // The phone entered it: linked, and a new link is refused again.
    ch.on_event(
        &Event::Connected(events::Connected::builder().build()),
        third,
    )
    .await;
    assert_eq!(ch.pairing(), None);
    let (status, _) = post_json(&app, LINK, serde_json::json!({"phone": "4915112345678"})).await;
    assert_eq!(status, 409);

    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("stops on shutdown")
        .unwrap();
}

/// After a logged-out end, a new link with a phone number starts a client
/// on a fresh device store that pairs by code with it (the crate asks for
/// the code, and says so when none can come).
#[tokio::test(start_paused = true)]
async fn after_a_logout_a_new_link_can_pair_by_phone_number() {
    let dir = tempfile::tempdir().unwrap();
    let attempts = Arc::new(AtomicUsize::new(0));
    let ch = with_transport(
        dir.path(),
        Arc::new(NoNetwork(attempts.clone())),
        Duration::from_secs(120),
    )
    .await;
    let cancel = CancellationToken::new();
    let task = tokio::spawn(ch.clone().supervise(Arc::new(NullSink), cancel.clone()));
    until(Duration::from_secs(60), "a connection attempt", || {
        attempts.load(Ordering::SeqCst) >= 1
    })
    .await;
    // Pairing by QR code (no number configured): no code request comes.
    tokio::time::sleep(Duration::from_secs(40)).await;
    assert!(!ch.link().borrow().message.contains("pairing code"));
    let first = ch.client().unwrap();
    first.logout().await;
    until(Duration::from_secs(10), "the logged-out end", || {
        code(&ch) == "whatsapp-logged-out" && ch.client().is_none()
    })
    .await;
    assert_eq!(ch.relink(Some("4915112345678".into())), Ok(Relink::Started));
    until(Duration::from_secs(30), "a new client", || {
        ch.client().is_some()
    })
    .await;
    until(
        Duration::from_secs(60),
        "its pairing code request's end",
        || {
            ch.link()
                .borrow()
                .message
                .contains("WhatsApp gave no pairing code")
        },
    )
    .await;
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("stops on shutdown")
        .unwrap();
}
