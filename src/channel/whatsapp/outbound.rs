//! Outbound: the [`Channel`] implementation, the send governor, and what
//! a failed send means for the outbox row.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::watch;
use whatsapp_rust::prelude::*;
use whatsapp_rust::wacore_binary::JidExt;

use super::{Channel, ChannelError, ChannelEvent, LinkStatus, Outgoing, WhatsAppChannel, convert};
use crate::ids::{ChatJid, MessageId};

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

/// Recent send times, per chat and overall.
#[derive(Default)]
pub(super) struct SendLog {
    per_chat: HashMap<ChatJid, Vec<tokio::time::Instant>>,
    all: Vec<tokio::time::Instant>,
}

impl WhatsAppChannel {
    /// Takes a send slot for `chat` as the governor allows. When the window
    /// is full, the first part of a message is refused at once with the wait
    /// (`Err`), so the sender goes on with other chats and comes back; a later
    /// part of a message already begun waits here, so no message is cut in
    /// two.
    pub(super) async fn govern(&self, chat: &ChatJid, first_part: bool) -> Result<(), Duration> {
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
        media: &crate::channel::OutgoingMedia,
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
        let caption = crate::channel::wa_format::render(&msg.text, 60_000).join("\n");
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
            let parts = crate::channel::wa_format::render(&msg.text, self.shared.opts.chunk_limit);
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
