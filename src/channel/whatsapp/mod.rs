//! The WhatsApp channel, on `whatsapp-rust` 0.7.0.
//!
//! Lifecycle. A supervisor task builds a client (device store: its own
//! SQLite file in the data directory), spawns it, and watches how it ends.
//! The crate reconnects by itself after a dropped connection; the supervisor
//! only acts when the client's run loop *returns*: when the pairing QR codes
//! ran out it builds a fresh client and shows fresh codes (the bridge never
//! exits to ask for a QR); after a permanent end (logged out, banned, stream
//! replaced, client outdated, connect failure) it never retries: it reports
//! the stable health code and waits for a restart after re-pairing. Any
//! other end is retried with backoff.
//!
//! Inbound. The crate's inbound durability hook commits each message to the
//! bridge's store (through the [`InboundSink`]) before WhatsApp is told it
//! arrived; an error leaves it unacknowledged so WhatsApp redelivers it.
//! Duplicates are dropped by the store (unique chat + id). Media is
//! downloaded before that, for registered chats only, streamed to disk and
//! refused by the bytes that arrive ([`download`]).
//!
//! Outbound. Markdown becomes WhatsApp formatting and long texts are split
//! (`wa_format`); each part goes out with an id derived from the outbox row's
//! id, so a resend after a crash is recognised by WhatsApp as the same
//! message. A governor spaces sends per chat and globally, with jitter.
//! Receipts and server refusals are reported as [`ChannelEvent`]s; the core
//! applies them (and decides who may be sent to).

pub mod convert;
pub mod download;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use whatsapp_rust::anyhow;
use whatsapp_rust::prelude::*;
use whatsapp_rust::wacore_binary::JidExt;

pub use super::InboundSink;
use super::{Channel, ChannelError, ChannelEvent, LinkStatus, Outgoing};
use crate::ids::{ChatJid, MessageId};
use crate::store::Store;

/// Send-rate limits.
#[derive(Debug, Clone, Copy)]
pub struct Governor {
    /// Most messages per minute to one chat.
    pub per_chat_per_minute: u32,
    /// Most messages per minute overall.
    pub per_minute: u32,
    /// Up to this much random extra delay before each send.
    pub jitter: Duration,
}

/// Settings for the channel.
#[derive(Clone)]
pub struct WhatsAppOptions {
    pub device_db: PathBuf,
    /// Ask for a pairing code for this phone number instead of a QR code.
    pub pair_phone: Option<String>,
    pub chunk_limit: usize,
    pub read_receipts: bool,
    pub governor: Governor,
    /// Largest inbound file per kind: a larger one is not downloaded.
    pub media_limits: crate::media::MediaLimits,
    /// Test seams: a transport and HTTP client to use instead of the network.
    pub transport: Option<Arc<dyn whatsapp_rust::transport::TransportFactory>>,
    pub http: Option<Arc<dyn whatsapp_rust::http::HttpClient>>,
}

/// How a client's run ended, as the supervisor sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    QrExhausted,
    Permanent { code: &'static str, message: String },
    Unexpected,
}

/// What the supervisor does after an ending.
pub fn after(ending: &Ending) -> Step {
    match ending {
        Ending::QrExhausted => Step::Rebuild(Duration::from_secs(1)),
        Ending::Permanent { .. } => Step::Wait,
        Ending::Unexpected => Step::Rebuild(Duration::from_secs(10)),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Build a fresh client after this delay.
    Rebuild(Duration),
    /// Stay up, report, and wait for a restart.
    Wait,
}

struct Shared {
    client: Mutex<Option<Arc<Client>>>,
    link: watch::Sender<LinkStatus>,
    ending: Mutex<Option<Ending>>,
    store: Store,
    opts: WhatsAppOptions,
    /// Send times in the last minute, for the governor.
    sent: Mutex<SendLog>,
    events: tokio::sync::mpsc::Sender<ChannelEvent>,
    events_rx: Mutex<Option<tokio::sync::mpsc::Receiver<ChannelEvent>>>,
}

/// Recent send times, per chat and overall.
#[derive(Default)]
struct SendLog {
    per_chat: HashMap<ChatJid, Vec<tokio::time::Instant>>,
    all: Vec<tokio::time::Instant>,
}

/// The channel; cheap to clone.
#[derive(Clone)]
pub struct WhatsAppChannel {
    shared: Arc<Shared>,
}

fn status(up: bool, code: &'static str, message: impl Into<String>) -> LinkStatus {
    LinkStatus {
        up,
        code,
        message: message.into(),
    }
}

/// Renders a QR code as a block of Unicode half-blocks: dark modules on a
/// light background, with a quiet zone, scannable from a terminal or a log.
pub fn render_qr(code: &str) -> Option<String> {
    use qrcode::render::unicode::Dense1x2;
    let qr = qrcode::QrCode::new(code.as_bytes()).ok()?;
    Some(
        qr.render::<Dense1x2>()
            .dark_color(Dense1x2::Light)
            .light_color(Dense1x2::Dark)
            .quiet_zone(true)
            .build(),
    )
}

impl WhatsAppChannel {
    pub fn new(store: Store, opts: WhatsAppOptions) -> Self {
        let (events, events_rx) = super::event_stream();
        Self {
            shared: Arc::new(Shared {
                client: Mutex::new(None),
                link: watch::Sender::new(status(false, "whatsapp-connecting", "starting")),
                ending: Mutex::new(None),
                store,
                opts,
                sent: Mutex::default(),
                events,
                events_rx: Mutex::new(Some(events_rx)),
            }),
        }
    }

    /// Records the link state; logs one line when it changed.
    fn set_link(&self, s: LinkStatus) {
        if *self.shared.link.borrow() == s {
            return;
        }
        let level_warn = !s.up && s.code != "whatsapp-connecting" && s.code != "whatsapp-pairing";
        if level_warn {
            tracing::warn!(code = s.code, message = %s.message, "WhatsApp link");
        } else {
            tracing::info!(code = s.code, message = %s.message, "WhatsApp link");
        }
        self.shared.link.send_replace(s);
    }

    fn client(&self) -> Option<Arc<Client>> {
        self.shared
            .client
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Runs clients until `cancel`, rebuilding or waiting per [`after`].
    pub async fn supervise(self, sink: Arc<dyn InboundSink>, cancel: CancellationToken) {
        loop {
            *self.shared.ending.lock().unwrap_or_else(|p| p.into_inner()) = None;
            let handle = match self.build(sink.clone()).await {
                Ok(bot) => bot.spawn(),
                Err(e) => {
                    self.set_link(status(
                        false,
                        "whatsapp-store-error",
                        format!("cannot open the device store: {e}"),
                    ));
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(30)) => continue,
                    }
                }
            };
            *self.shared.client.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle.client());
            let mut handle = handle;
            tokio::select! {
                _ = cancel.cancelled() => {
                    handle.shutdown().await;
                    *self.shared.client.lock().unwrap_or_else(|p| p.into_inner()) = None;
                    tracing::info!("WhatsApp client stopped");
                    return;
                }
                _ = &mut handle => {}
            }
            *self.shared.client.lock().unwrap_or_else(|p| p.into_inner()) = None;
            let ending = self
                .shared
                .ending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .unwrap_or(Ending::Unexpected);
            match after(&ending) {
                Step::Rebuild(delay) => {
                    if ending == Ending::QrExhausted {
                        tracing::info!("the pairing QR codes ran out; showing fresh ones");
                    } else {
                        self.set_link(status(
                            false,
                            "whatsapp-reconnecting",
                            "client stopped; starting a new one",
                        ));
                    }
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
                Step::Wait => {
                    tracing::error!(
                        ?ending,
                        "WhatsApp ended for good; not reconnecting. Re-pair (pocketbrain whatsapp logout, then restart) and restart the bridge."
                    );
                    cancel.cancelled().await;
                    return;
                }
            }
        }
    }

    async fn build(&self, sink: Arc<dyn InboundSink>) -> anyhow::Result<Bot> {
        let opts = &self.shared.opts;
        if let Some(dir) = opts.device_db.parent() {
            crate::owner_only::dir(dir)?;
        }
        // The device's keys: owner-only before the store writes them.
        crate::owner_only::sqlite(&opts.device_db)?;
        let backend = SqliteStore::new(&opts.device_db.to_string_lossy()).await?;
        let me = self.clone();
        let paired_sink = sink.clone();
        let hook = Hook {
            sink,
            store: self.shared.store.clone(),
            limits: opts.media_limits,
            tmp: media_tmp(&opts.device_db),
        };
        let mut b = Bot::builder()
            .with_backend(backend)
            .with_event_delivery(EventDelivery::Ordered { capacity: 1024 })
            .skip_history_sync()
            .with_inbound_durability_hook(hook)
            .on_event(move |ev, client| {
                let (me, sink) = (me.clone(), paired_sink.clone());
                async move {
                    if let Event::PairSuccess(p) = &*ev {
                        me.paired(p, sink.as_ref()).await;
                    }
                    me.on_event(&ev, client).await
                }
            });
        if let Some(t) = &opts.transport {
            b = b.with_transport_factory(DynTransport(t.clone()));
        }
        if let Some(h) = &opts.http {
            b = b.with_http_client(DynHttp(h.clone()));
        }
        if let Some(phone) = &opts.pair_phone {
            b = b.with_pair_code(whatsapp_rust::pair_code::PairCodeOptions {
                phone_number: phone.clone(),
                ..Default::default()
            });
        }
        Ok(b.build().await?)
    }

    async fn on_event(&self, ev: &Event, client: Arc<Client>) {
        match ev {
            Event::Connected(_) => {
                self.set_link(status(true, "whatsapp-connected", "connected"));
                let store = self.shared.store.clone();
                // Group names for `chats list`, without holding up events.
                tokio::spawn(async move {
                    match client.groups().get_participating().await {
                        Ok(groups) => {
                            for (jid, meta) in groups {
                                if let Ok(chat) = convert::chat_jid(&jid)
                                    && !meta.subject.is_empty()
                                {
                                    let _ = store.set_chat_name(&chat, &meta.subject).await;
                                }
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot list WhatsApp groups"),
                    }
                });
            }
            Event::Disconnected(d) => self.set_link(status(
                false,
                "whatsapp-reconnecting",
                format!("disconnected: {}", d.reason),
            )),
            Event::PairingQrCode(q) => {
                self.set_link(status(
                    false,
                    "whatsapp-pairing",
                    "waiting for the QR code to be scanned",
                ));
                let block = render_qr(&q.code).unwrap_or_default();
                tracing::info!(
                    "Scan this QR code with WhatsApp (Settings → Linked devices → Link a device); valid {} s:\n{block}\nQR code as text: {}",
                    q.timeout.as_secs(),
                    q.code
                );
            }
            Event::PairingCode(p) => {
                self.set_link(status(
                    false,
                    "whatsapp-pairing",
                    "waiting for the pairing code to be entered",
                ));
                tracing::info!(
                    "Pairing code: {}  (WhatsApp → Linked devices → Link with phone number; valid {} s)",
                    p.code,
                    p.timeout.as_secs()
                );
            }
            Event::PairSuccess(_) => tracing::info!("paired with WhatsApp"),
            Event::PairingQrCodesExhausted(_) => self.end(Ending::QrExhausted),
            Event::LoggedOut(l) => {
                let message = format!("logged out ({:?}); link the device again", l.reason);
                self.permanent("whatsapp-logged-out", message);
            }
            Event::TemporaryBan(b) => self.permanent(
                "whatsapp-banned",
                format!(
                    "temporarily banned ({:?}) for {} s",
                    b.code,
                    b.expire.num_seconds()
                ),
            ),
            Event::StreamReplaced(_) => self.permanent(
                "whatsapp-stream-replaced",
                "another client took over this session",
            ),
            Event::ClientOutdated(_) => self.permanent(
                "whatsapp-outdated",
                "WhatsApp says this client is outdated; upgrade PocketBrain",
            ),
            Event::ConnectFailure(f) => self.permanent(
                "whatsapp-connect-failed",
                format!(
                    "connect failure {:?}: {}",
                    f.reason,
                    f.message.as_deref().unwrap_or("no message")
                ),
            ),
            Event::Receipt(r) => {
                if let Some(receipt) = convert::receipt(r.r#type.clone()) {
                    for id in &r.message_ids {
                        self.report(ChannelEvent::Receipt {
                            id: MessageId::new(MessageId::base_of(id)),
                            receipt,
                        })
                        .await;
                    }
                }
            }
            Event::ServerAck(a) if a.class.as_deref().is_none_or(|c| c == "message") => {
                if let Some(code) = &a.error {
                    tracing::warn!(id = %a.id, %code, "WhatsApp refused a message");
                    self.report(ChannelEvent::Refused {
                        id: MessageId::new(MessageId::base_of(&a.id)),
                        reason: format!("refused by WhatsApp (code {code})"),
                    })
                    .await;
                }
            }
            _ => {}
        }
    }

    /// The phone linked this device: tell the core whose account it is
    /// (its own "Message yourself" chat, and that chat's LID).
    async fn paired(&self, p: &whatsapp_rust::types::events::PairSuccess, sink: &dyn InboundSink) {
        match convert::chat_jid(&p.id) {
            Ok(own) => {
                let lid = convert::chat_jid(&p.lid).ok().filter(|l| *l != own);
                sink.paired(own, lid).await;
            }
            Err(e) => tracing::warn!(?e, "paired, but the account's JID is not understood"),
        }
    }

    /// Hands an event to the core (which applies it to the outbox).
    async fn report(&self, event: ChannelEvent) {
        let _ = self.shared.events.send(event).await;
    }

    fn end(&self, ending: Ending) {
        *self.shared.ending.lock().unwrap_or_else(|p| p.into_inner()) = Some(ending);
    }

    fn permanent(&self, code: &'static str, message: impl Into<String>) {
        let message = message.into();
        self.set_link(status(false, code, message.clone()));
        self.end(Ending::Permanent { code, message });
    }

    /// Takes a send slot for `chat` as the governor allows. When the window
    /// is full, the first part of a message is refused at once with the wait
    /// (`Err`), so the sender goes on with other chats and comes back; a later
    /// part of a message already begun waits here, so no message is cut in
    /// two.
    async fn govern(&self, chat: &ChatJid, first_part: bool) -> Result<(), Duration> {
        let g = self.shared.opts.governor;
        loop {
            let wait = {
                let mut sent = self.shared.sent.lock().unwrap_or_else(|p| p.into_inner());
                let now = tokio::time::Instant::now();
                let minute = Duration::from_secs(60);
                let SendLog { per_chat, all } = &mut *sent;
                let mine = per_chat.entry(chat.clone()).or_default();
                mine.retain(|t| now.duration_since(*t) < minute);
                all.retain(|t| now.duration_since(*t) < minute);
                let full = |v: &Vec<tokio::time::Instant>, max: u32| {
                    (v.len() as u32 >= max.max(1)).then(|| minute - now.duration_since(v[0]))
                };
                match full(mine, g.per_chat_per_minute).max(full(all, g.per_minute)) {
                    Some(d) => d,
                    None => {
                        mine.push(now);
                        all.push(now);
                        break;
                    }
                }
            };
            tracing::debug!(chat = %chat, wait_ms = wait.as_millis() as u64, first_part, "send rate limit");
            if first_part {
                return Err(wait);
            }
            tokio::time::sleep(wait).await;
        }
        if !g.jitter.is_zero() {
            use rand::RngExt;
            let ms = rand::rng().random_range(0..=g.jitter.as_millis() as u64);
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        Ok(())
    }
}

/// What a failed send means for the outbox row.
///
/// Logged out or not connected: wait for the link. A server error with a
/// `backoff` (or 429): retry after it. Any other 4xx from the server (403
/// for a group the account has left, 404 for an unknown recipient, 400 for a
/// request it will never accept) and an invalid request: refused for good,
/// so the row is marked failed and stops blocking its chat. Everything else
/// (timeouts, 5xx, socket and encryption failures): passing, retried.
pub(crate) fn classify(e: SendError) -> ChannelError {
    fn iq(e: &IqError) -> Option<ChannelError> {
        Some(match e {
            IqError::NotConnected | IqError::Disconnected(_) => ChannelError::Disconnected,
            IqError::ServerError {
                backoff: Some(s), ..
            } => ChannelError::RetryAfter(Duration::from_secs(u64::from(*s).max(1))),
            IqError::ServerError { code: 429, .. } => {
                ChannelError::RetryAfter(Duration::from_secs(60))
            }
            IqError::ServerError { code, text, .. }
                if (400..500).contains(code) && *code != 408 =>
            {
                ChannelError::Rejected(format!("WhatsApp refused the message: {code} {text}"))
            }
            IqError::ClientState(c) => return client(c),
            _ => return None,
        })
    }
    fn client(e: &ClientError) -> Option<ChannelError> {
        match e {
            ClientError::NotConnected | ClientError::NotLoggedIn => {
                Some(ChannelError::Disconnected)
            }
            ClientError::Iq(e) => iq(e),
            _ => None,
        }
    }
    let known = match &e {
        SendError::NotLoggedIn => Some(ChannelError::Disconnected),
        SendError::InvalidRequest(why) => Some(ChannelError::Rejected(why.clone())),
        SendError::Iq(e) => iq(e),
        SendError::Client(e) => client(e),
        _ => None,
    };
    known.unwrap_or_else(|| ChannelError::Transient(e.to_string()))
}

impl WhatsAppChannel {
    /// Uploads a file and sends it as its kind, the caption with it (as a
    /// second message for audio, which has none in WhatsApp).
    async fn send_media(
        &self,
        client: &Client,
        to: Jid,
        msg: &Outgoing,
        media: &super::OutgoingMedia,
    ) -> Result<(), ChannelError> {
        self.govern(&msg.chat, true)
            .await
            .map_err(ChannelError::RetryAfter)?;
        let up = client
            .upload(
                media.data.to_vec(),
                convert::media_type(media.kind),
                whatsapp_rust::UploadOptions::default(),
            )
            .await
            .map_err(|e| ChannelError::Transient(format!("upload failed: {e}")))?;
        let caption = super::wa_format::render(&msg.text, 60_000).join("\n");
        let audio = matches!(
            media.kind,
            crate::model::MediaKind::Audio | crate::model::MediaKind::Voice
        );
        let m = convert::media_message(
            media.kind,
            &media.mime,
            &media.filename,
            if audio { "" } else { &caption },
            &convert::Uploaded::from(&up),
        );
        let opts = SendOptions::default().with_message_id(msg.id.part(0));
        client
            .send_message_with_options(to.clone(), m, opts)
            .await
            .map_err(classify)?;
        if audio && !caption.trim().is_empty() {
            let opts = SendOptions::default().with_message_id(msg.id.part(1));
            client
                .send_message_with_options(to, wa::Message::text(caption), opts)
                .await
                .map_err(classify)?;
        }
        Ok(())
    }
}

impl Channel for WhatsAppChannel {
    fn send<'a>(&'a self, msg: &'a Outgoing) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            let client = self
                .client()
                .filter(|c| c.is_logged_in())
                .ok_or(ChannelError::Disconnected)?;
            let to = convert::to_jid(&msg.chat)
                .ok_or_else(|| ChannelError::Rejected(format!("bad JID {}", msg.chat)))?;
            if let Some(media) = &msg.media {
                return self.send_media(&client, to, msg, media).await;
            }
            let parts = super::wa_format::render(&msg.text, self.shared.opts.chunk_limit);
            for (i, part) in parts.into_iter().enumerate() {
                self.govern(&msg.chat, i == 0)
                    .await
                    .map_err(ChannelError::RetryAfter)?;
                let opts = SendOptions::default().with_message_id(msg.id.part(i));
                client
                    .send_message_with_options(to.clone(), wa::Message::text(part), opts)
                    .await
                    .map_err(classify)?;
            }
            Ok(())
        })
    }

    fn take_events(&self) -> Option<tokio::sync::mpsc::Receiver<ChannelEvent>> {
        self.shared
            .events_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    fn link(&self) -> watch::Receiver<LinkStatus> {
        self.shared.link.subscribe()
    }

    fn new_message_id(&self) -> MessageId {
        // WhatsApp's own format (3EB0 + hex), made without a client.
        use rand::RngExt;
        let n: u128 = rand::rng().random();
        MessageId::new(format!("3EB0{:018X}", n & ((1u128 << 72) - 1)))
    }

    fn set_typing<'a>(&'a self, chat: &'a ChatJid, on: bool) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let (Some(client), Some(jid)) = (self.client(), convert::to_jid(chat)) else {
                return;
            };
            let r = if on {
                client.chatstate().send_composing(&jid).await
            } else {
                client.chatstate().send_paused(&jid).await
            };
            if let Err(e) = r {
                tracing::debug!(chat = %chat, error = %e, "typing indicator not sent");
            }
        })
    }

    fn react<'a>(
        &'a self,
        chat: &'a ChatJid,
        id: &'a MessageId,
        sender: &'a str,
        emoji: &'a str,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let (Some(client), Some(jid)) = (self.client(), convert::to_jid(chat)) else {
                return;
            };
            let key = whatsapp_rust::waproto::whatsapp::MessageKey {
                remote_jid: Some(jid.to_string()),
                from_me: Some(false),
                id: Some(id.to_string()),
                // Groups name the message's sender.
                participant: jid.is_group().then(|| sender.to_owned()),
            };
            if let Err(e) = client.send_reaction(jid, key, emoji).await {
                tracing::debug!(chat = %chat, error = %e, "reaction not sent");
            }
        })
    }

    fn mark_read<'a>(
        &'a self,
        chat: &'a ChatJid,
        messages: &'a [(MessageId, String)],
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if !self.shared.opts.read_receipts || messages.is_empty() {
                return;
            }
            let (Some(client), Some(jid)) = (self.client(), convert::to_jid(chat)) else {
                return;
            };
            // Groups need the sender of each message.
            let mut by_sender: HashMap<Option<String>, Vec<&str>> = HashMap::new();
            for (id, sender) in messages {
                let key = jid.is_group().then(|| sender.clone());
                by_sender.entry(key).or_default().push(id.as_str());
            }
            for (sender, ids) in by_sender {
                let sender_jid: Option<Jid> = sender.and_then(|s| s.parse().ok());
                if let Err(e) = client.mark_as_read(&jid, sender_jid.as_ref(), &ids).await {
                    tracing::debug!(chat = %chat, error = %e, "read receipts not sent");
                }
            }
        })
    }
}

/// Connects with the device store at `db` and unlinks the device (used by
/// `pocketbrain whatsapp logout`). Fails if it cannot connect within `wait`.
pub async fn unlink(db: &std::path::Path, wait: Duration) -> anyhow::Result<()> {
    let backend = SqliteStore::new(&db.to_string_lossy()).await?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<bool>(4);
    let bot = Bot::builder()
        .with_backend(backend)
        .skip_history_sync()
        .on_event(move |ev, _client| {
            let tx = tx.clone();
            async move {
                match &*ev {
                    Event::Connected(_) => {
                        let _ = tx.send(true).await;
                    }
                    Event::PairingQrCode(_) | Event::LoggedOut(_) => {
                        let _ = tx.send(false).await;
                    }
                    _ => {}
                }
            }
        })
        .build()
        .await?;
    let handle = bot.spawn();
    let client = handle.client();
    let outcome = tokio::time::timeout(wait, rx.recv()).await;
    let result = match outcome {
        Ok(Some(true)) => {
            client.logout().await;
            Ok(())
        }
        Ok(Some(false)) => Err(anyhow::anyhow!(
            "this device is not paired (or already logged out)"
        )),
        _ => Err(anyhow::anyhow!(
            "no connection to WhatsApp within {} s",
            wait.as_secs()
        )),
    };
    handle.shutdown().await;
    result
}

/// Commits inbound messages before WhatsApp is told they arrived.
struct Hook {
    sink: Arc<dyn InboundSink>,
    store: Store,
    limits: crate::media::MediaLimits,
    /// Where downloads are streamed to (unnamed temporary files).
    tmp: PathBuf,
}

/// Where media downloads are streamed: the data folder (beside the device
/// store), private to the bridge; the files there have no names.
fn media_tmp(device_db: &std::path::Path) -> PathBuf {
    device_db
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(|p| p.to_path_buf())
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Longest a media download may take before the message goes on without
/// it ("media not available", with the reason).
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(120);

/// Downloads a message's media, unless the sender announced a size over
/// the kind's limit (then intake refuses it by the announced size, and
/// nothing is fetched); a download is refused as soon as more than the
/// limit has arrived (then `bytes` becomes what had arrived, and intake
/// refuses it by that). A failure is the reason, never an error: the
/// message is kept without its file.
async fn download(
    fetch: &dyn download::Fetch,
    message: &wa::Message,
    media: &mut crate::model::InboundMedia,
    limits: &crate::media::MediaLimits,
    tmp: &std::path::Path,
) -> Result<(), String> {
    let Some((info, part)) = convert::media(message) else {
        return Ok(());
    };
    let limit = limits.of(info.kind);
    if info.bytes > limit {
        // Stand-in bytes are not fetched: intake sees the announced size.
        return Err(format!(
            "not downloaded: the sender announced {}, over the limit of {} (PB_MEDIA_MAX_BYTES)",
            crate::media::human_size(info.bytes),
            crate::media::human_size(limit)
        ));
    }
    match download::fetch_capped(fetch, part, limit, tmp, DOWNLOAD_TIMEOUT).await {
        Ok(data) => {
            media.data = Ok(data);
            Ok(())
        }
        Err(missed) => {
            if let Some(n) = missed.over {
                media.info.bytes = n;
            }
            Err(missed.reason)
        }
    }
}

impl Hook {
    /// Commits a batch; media of registered chats is downloaded first
    /// (through `fetch`), and nothing is downloaded for any other chat.
    async fn commit(
        &self,
        fetch: &dyn download::Fetch,
        batch: &[InboundMessage],
    ) -> anyhow::Result<()> {
        for m in batch {
            match convert::inbound(&m.info, &m.message) {
                Ok(mut c) => {
                    self.store
                        .record_aliases(std::mem::take(&mut c.aliases))
                        .await
                        .map_err(|e| anyhow::anyhow!(e.to_string()))?;
                    if let Some(media) = c.inbound.media.as_mut() {
                        let registered = self
                            .store
                            .registered(&c.inbound.chat)
                            .await
                            .map_err(|e| anyhow::anyhow!(e.to_string()))?
                            .is_some();
                        let got = if registered {
                            download(fetch, &m.message, media, &self.limits, &self.tmp).await
                        } else {
                            tracing::debug!(id = %m.info.id, chat = %c.inbound.chat, kind = %media.info.kind, "media of an unregistered chat not downloaded");
                            Err("not downloaded: the chat is not registered".into())
                        };
                        if let Err(why) = got {
                            if registered {
                                tracing::warn!(id = %m.info.id, kind = %media.info.kind, error = %why, "media not downloaded; the message is kept without it");
                            }
                            media.data = Err(why);
                        }
                    }
                    self.sink
                        .accept(c.inbound)
                        .await
                        .map_err(|e| anyhow::anyhow!(e))?;
                }
                Err(skip) => {
                    tracing::debug!(id = %m.info.id, ?skip, "WhatsApp message not passed on")
                }
            }
        }
        Ok(())
    }
}

#[whatsapp_rust::async_trait]
impl whatsapp_rust::InboundDurabilityHook for Hook {
    async fn on_messages(
        &self,
        client: Arc<Client>,
        batch: &[InboundMessage],
    ) -> anyhow::Result<()> {
        self.commit(client.as_ref(), batch).await
    }
}

struct DynTransport(Arc<dyn whatsapp_rust::transport::TransportFactory>);

#[whatsapp_rust::async_trait]
impl whatsapp_rust::transport::TransportFactory for DynTransport {
    async fn create_transport(
        &self,
    ) -> Result<
        (
            Arc<dyn whatsapp_rust::transport::Transport>,
            whatsapp_rust::async_channel::Receiver<whatsapp_rust::transport::TransportEvent>,
        ),
        anyhow::Error,
    > {
        self.0.create_transport().await
    }
}

struct DynHttp(Arc<dyn whatsapp_rust::http::HttpClient>);

#[whatsapp_rust::async_trait]
impl whatsapp_rust::http::HttpClient for DynHttp {
    async fn execute(
        &self,
        request: whatsapp_rust::http::HttpRequest,
    ) -> anyhow::Result<whatsapp_rust::http::HttpResponse> {
        self.0.execute(request).await
    }

    fn supports_streaming(&self) -> bool {
        self.0.supports_streaming()
    }

    fn execute_streaming(
        &self,
        request: whatsapp_rust::http::HttpRequest,
    ) -> anyhow::Result<whatsapp_rust::wacore::net::StreamingHttpResponse> {
        self.0.execute_streaming(request)
    }

    fn supports_upload_streaming(&self) -> bool {
        self.0.supports_upload_streaming()
    }

    fn execute_upload(
        &self,
        request: whatsapp_rust::http::HttpRequest,
        body: whatsapp_rust::wacore::net::UploadBody,
        content_length: u64,
    ) -> anyhow::Result<whatsapp_rust::http::HttpResponse> {
        self.0.execute_upload(request, body, content_length)
    }
}

#[cfg(test)]
mod tests;
