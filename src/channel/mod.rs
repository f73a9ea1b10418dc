//! The channel seam: how the bridge reaches people. WhatsApp, the fake
//! channel and the local API ([`api`]) implement [`Channel`]; the core never
//! sees any protocol. The API runs beside one of the others
//! ([`api::Channels`] sends each chat's messages through its own channel).
//!
//! Every channel hands its inbound messages, typed, to the one
//! [`InboundSink`] (the intake) and gets back what became of each (stored,
//! a duplicate, a full disk); outbound messages are pulled from the outbox
//! by the sender and handed to [`Channel::send`] one at a time, in order per chat.
//! What a channel learns about messages already sent (delivery and read
//! receipts, a refusal after sending) comes back as [`ChannelEvent`]s, which
//! the core applies to the outbox: policy lives in the core, so every
//! channel, the fake one included, obeys the same rules.

pub mod api;
pub mod fake;
pub mod wa_format;
pub mod whatsapp;

use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::{mpsc, watch};

use crate::ids::{ChatJid, MessageId};
use crate::model::MediaKind;

/// One message to deliver. `id` is chosen before the first attempt and kept
/// across retries, so the receiving side can recognise a resend.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub chat: ChatJid,
    pub id: MessageId,
    /// The text, or the file's caption (may be empty with a file).
    pub text: String,
    /// A file to send as its WhatsApp kind, read by the sender just now.
    pub media: Option<OutgoingMedia>,
}

/// A file going out.
#[derive(Clone)]
pub struct OutgoingMedia {
    pub kind: MediaKind,
    pub mime: String,
    pub filename: String,
    pub data: bytes::Bytes,
}

impl std::fmt::Debug for OutgoingMedia {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutgoingMedia")
            .field("kind", &self.kind)
            .field("mime", &self.mime)
            .field("filename", &self.filename)
            .field("bytes", &self.data.len())
            .finish()
    }
}

/// Send failures; each says whether and when to retry.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The link is down; retry when it is back.
    #[error("channel is not connected")]
    Disconnected,
    /// Slow down; retry after the given time.
    #[error("rate limited; retry in {0:?}")]
    RetryAfter(Duration),
    /// A passing failure; retry with backoff.
    #[error("send failed: {0}")]
    Transient(String),
    /// This message can never be delivered (bad recipient, too large, ...).
    #[error("message refused: {0}")]
    Rejected(String),
}

impl ChannelError {
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Rejected(_))
    }
}

/// The link's state, as health shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkStatus {
    pub up: bool,
    /// Stable code, such as `fake-connected` or `whatsapp-logged-out`.
    pub code: &'static str,
    pub message: String,
    /// While pairing by QR code: the code's text, to be rendered and
    /// scanned (WhatsApp rotates it; each new one is a new status).
    pub qr: Option<String>,
    /// While pairing by phone number: the pairing code to enter on the
    /// phone (WhatsApp → Linked devices → Link with phone number).
    pub pair_code: Option<String>,
}

/// Where a channel hands inbound messages (the core's intake).
pub trait InboundSink: Send + Sync + 'static {
    /// Stores the message durably and says what became of it; an error
    /// means "do not acknowledge" (a full disk is `StoreError::Full`).
    fn accept(
        &self,
        msg: crate::model::Inbound,
    ) -> BoxFuture<'_, crate::store::Result<crate::store::InboundOutcome>>;
    /// The channel was linked to an account: `own` is its own chat
    /// ("Message yourself"), `lid` that chat's other form if known.
    fn paired(&self, _own: ChatJid, _lid: Option<ChatJid>) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// How far a sent message got, as the recipient's side reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receipt {
    Delivered,
    Read,
}

/// What a channel reports about a message it sent. `id` is the outbox
/// row's id (a split message's parts report their base id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelEvent {
    Receipt {
        id: MessageId,
        receipt: Receipt,
    },
    /// The server refused a message after taking it (a nack).
    Refused {
        id: MessageId,
        reason: String,
    },
}

/// How many channel events may wait for the core before a channel's event
/// handler waits too.
pub const EVENT_BACKLOG: usize = 1024;

/// The sending half a channel keeps, and the stream the core reads.
pub fn event_stream() -> (mpsc::Sender<ChannelEvent>, mpsc::Receiver<ChannelEvent>) {
    mpsc::channel(EVENT_BACKLOG)
}

/// A way to reach people.
pub trait Channel: Send + Sync + 'static {
    /// Delivers one message. Sending the same `id` twice must not show the
    /// recipient two messages.
    fn send<'a>(&'a self, msg: &'a Outgoing) -> BoxFuture<'a, Result<(), ChannelError>>;
    /// The link state, watched by the sender to flush when it comes back.
    fn link(&self) -> watch::Receiver<LinkStatus>;
    /// A new message id in the channel's own format.
    fn new_message_id(&self) -> MessageId;
    /// The channel's event stream, taken once by the core (later calls and
    /// channels with nothing to report give `None`).
    fn take_events(&self) -> Option<mpsc::Receiver<ChannelEvent>> {
        None
    }
    /// Sends read receipts for processed messages `(id, sender)`. Best effort.
    fn mark_read<'a>(
        &'a self,
        _chat: &'a ChatJid,
        _messages: &'a [(MessageId, String)],
    ) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
    /// Shows or clears "typing…" in a chat. Best effort.
    fn set_typing<'a>(&'a self, _chat: &'a ChatJid, _on: bool) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
    /// Reacts to message `id` (from `sender`) in `chat` with `emoji`; an
    /// empty `emoji` takes the reaction back. Best effort.
    fn react<'a>(
        &'a self,
        _chat: &'a ChatJid,
        _id: &'a MessageId,
        _sender: &'a str,
        _emoji: &'a str,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}
