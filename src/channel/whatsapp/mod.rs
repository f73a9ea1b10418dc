//! The WhatsApp channel, on `whatsapp-rust` 0.7.0.
//!
//! Lifecycle. A supervisor task builds a client (device store: its own
//! SQLite file in the data directory), spawns it, and watches how it ends.
//! The crate reconnects by itself after a dropped connection (backoff with
//! jitter) and finds dead sockets with its own keepalive (a ping every 15
//! to 30 s on an idle link; a socket silent 20 s after a send, or a
//! handshake unanswered for 20 s, is dropped and reconnected). The
//! supervisor acts when the client's run loop *returns*: when the pairing
//! QR codes ran out it builds a fresh client and shows fresh codes (the
//! bridge never exits to ask for a QR); after a permanent end (logged out,
//! banned, stream replaced, client outdated, connect failure) it never
//! retries by itself: it reports the stable health code and waits until
//! the owner asks for a new link ([`WhatsAppChannel::relink`]: `pocketbrain
//! whatsapp link`, `POST /api/v1/whatsapp/link`), then starts a client on a
//! fresh device store and shows its QR code (or, asked with a phone number,
//! the pairing code WhatsApp sends for it; asked while pairing by QR code,
//! the pairing client is replaced by one that pairs by that number). Any
//! other end is retried with
//! backoff. Beside the crate's keepalive, a watchdog ([`watchdog`]) restarts
//! the client when a link reported connected has received no frame at all
//! for `PB_WHATSAPP_SILENCE` (`whatsapp-silent`).
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
mod events;
mod inbound;
mod outbound;
mod supervisor;
mod watchdog;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use whatsapp_rust::prelude::*;

pub use super::InboundSink;
use super::{Channel, ChannelError, ChannelEvent, LinkStatus, Outgoing};
use crate::store::Store;

pub use outbound::Governor;
use outbound::SendLog;
pub use supervisor::{
    Ending, Pacer, Relink, RelinkRefused, Step, UNEXPECTED_CEILING, UNEXPECTED_FLOOR, after, unlink,
};

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
    /// A connected link with no frame from the server for this long is
    /// restarted (`PB_WHATSAPP_SILENCE`).
    pub silence: Duration,
    /// Test seams: a transport and HTTP client to use instead of the network.
    pub transport: Option<Arc<dyn whatsapp_rust::transport::TransportFactory>>,
    pub http: Option<Arc<dyn whatsapp_rust::http::HttpClient>>,
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
    /// The link ended for good: a new link may be asked for (the supervisor
    /// waits for one, or will once the client has wound down).
    waiting: AtomicBool,
    /// The current client has been connected (its supervisor's backoff
    /// starts again after it ends).
    linked: AtomicBool,
    /// Wakes a waiting supervisor to link again.
    relink: tokio::sync::Notify,
    /// The code to link with while pairing (QR text or pairing code).
    pairing: Mutex<Option<Pairing>>,
    /// The phone number the next client pairs with by code (`None`: by QR
    /// code): `PB_WHATSAPP_PHONE`, or the one a new link asked for.
    phone: Mutex<Option<String>>,
    /// The current client pairs by phone number: its QR codes are not
    /// shown (the pairing code is), until its code request failed.
    by_phone: AtomicBool,
    /// Wakes the supervisor to replace a client that is pairing with one
    /// that pairs by the phone number in `phone`.
    switch: tokio::sync::Notify,
}

/// What to link the device with, while pairing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "code")]
pub enum Pairing {
    /// Scan this QR code's text (render it with [`render_qr`]).
    Qr(String),
    /// Enter this code in WhatsApp → Linked devices → Link with phone number.
    PhoneCode(String),
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
        qr: None,
        pair_code: None,
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

/// A pairing code as the phone shows its boxes: `ABCD-EFGH`.
pub fn group_code(code: &str) -> String {
    let chars: Vec<char> = code.chars().collect();
    if chars.len() == 8 {
        format!(
            "{}-{}",
            chars[..4].iter().collect::<String>(),
            chars[4..].iter().collect::<String>()
        )
    } else {
        code.to_owned()
    }
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
                sent: Mutex::default(),
                events,
                events_rx: Mutex::new(Some(events_rx)),
                waiting: AtomicBool::new(false),
                linked: AtomicBool::new(false),
                relink: tokio::sync::Notify::new(),
                pairing: Mutex::new(None),
                phone: Mutex::new(opts.pair_phone.clone()),
                by_phone: AtomicBool::new(false),
                switch: tokio::sync::Notify::new(),
                opts,
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

    /// The code to link with, while the link is pairing.
    pub fn pairing(&self) -> Option<Pairing> {
        self.shared
            .pairing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_pairing(&self, p: Option<Pairing>) {
        *self
            .shared
            .pairing
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = p;
    }

    /// The phone number the next client pairs with, if by code.
    fn phone(&self) -> Option<String> {
        self.shared
            .phone
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_phone(&self, phone: Option<String>) {
        *self.shared.phone.lock().unwrap_or_else(|p| p.into_inner()) = phone;
    }

    fn client(&self) -> Option<Arc<Client>> {
        self.shared
            .client
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Hands an event to the core (which applies it to the outbox).
    async fn report(&self, event: ChannelEvent) {
        let _ = self.shared.events.send(event).await;
    }

    fn end(&self, ending: Ending) {
        *self.shared.ending.lock().unwrap_or_else(|p| p.into_inner()) = Some(ending);
    }

    /// A permanent end: the link state (logged once) says what happened and
    /// how to link again; the supervisor will not retry.
    fn permanent(&self, code: &'static str, message: impl Into<String>) {
        let then = match code {
            "whatsapp-outdated" => "upgrade PocketBrain, then restart it",
            "whatsapp-banned" => {
                "retrying would prolong the ban; once it has ended, link again with `pocketbrain whatsapp link` (or POST /api/v1/whatsapp/link)"
            }
            _ => "link again with `pocketbrain whatsapp link` (or POST /api/v1/whatsapp/link)",
        };
        let message = format!("{}; not reconnecting: {then}", message.into());
        self.set_pairing(None);
        // The supervisor will wait for a new link: it may be asked for now.
        self.shared
            .waiting
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.set_link(status(false, code, message.clone()));
        self.end(Ending::Permanent { code, message });
    }
}

#[cfg(test)]
mod tests;
