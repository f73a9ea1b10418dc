//! The API channel: conversations over the local API (`api:<name>` chats).
//!
//! Its link is always up: there is no remote end to lose. [`Channel::send`]
//! hands each outbox row to whoever listens right now (the streaming
//! routes, WebSocket subscribers) through a broadcast channel and always
//! succeeds: the row itself stays in the outbox, marked sent, and is what
//! `GET /api/v1/conversations/{id}` and the synchronous routes read, so a
//! reply nobody was listening for is not lost.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use tokio::sync::{broadcast, watch};

use super::{Channel, ChannelError, LinkStatus, Outgoing};
use crate::ids::{ChatJid, MessageId};

/// How many delivered messages a slow listener may fall behind before it
/// misses some (it is then told it lagged, and reads the store).
const BACKLOG: usize = 1024;

/// One message the bridge delivered to an API conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub chat: ChatJid,
    pub id: MessageId,
    pub text: String,
}

/// The API channel; cheap to clone.
#[derive(Clone)]
pub struct ApiChannel {
    tx: broadcast::Sender<Delivered>,
    link: Arc<watch::Sender<LinkStatus>>,
}

impl Default for ApiChannel {
    fn default() -> Self {
        Self::new()
    }
}

impl ApiChannel {
    pub fn new() -> Self {
        Self {
            tx: broadcast::channel(BACKLOG).0,
            link: Arc::new(watch::Sender::new(LinkStatus {
                up: true,
                code: "api-ready",
                message: "the local API is served".into(),
                qr: None,
                pair_code: None,
            })),
        }
    }

    /// Messages delivered from now on, to every API conversation.
    pub fn subscribe(&self) -> broadcast::Receiver<Delivered> {
        self.tx.subscribe()
    }
}

impl Channel for ApiChannel {
    fn send<'a>(&'a self, msg: &'a Outgoing) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            if !msg.chat.is_api() {
                return Err(ChannelError::Rejected(format!(
                    "{} is not an API conversation",
                    msg.chat
                )));
            }
            // A file is named, not carried: the API has no file transfer
            // yet; the file stays in the conversation's folder.
            let text = match &msg.media {
                None => msg.text.clone(),
                Some(m) => {
                    let note = format!(
                        "[file: {} ({}, {} bytes)]",
                        m.filename,
                        m.mime,
                        m.data.len()
                    );
                    if msg.text.is_empty() {
                        note
                    } else {
                        format!("{}\n{note}", msg.text)
                    }
                }
            };
            // No listener is fine: the row stays in the outbox.
            let _ = self.tx.send(Delivered {
                chat: msg.chat.clone(),
                id: msg.id.clone(),
                text,
            });
            Ok(())
        })
    }

    fn link(&self) -> watch::Receiver<LinkStatus> {
        self.link.subscribe()
    }

    fn new_message_id(&self) -> MessageId {
        new_id()
    }
}

/// A new id for a message in an API conversation.
pub fn new_id() -> MessageId {
    use rand::RngExt;
    let n: u64 = rand::rng().random();
    MessageId::new(format!("API{n:016X}"))
}

/// The channels of a bridge that serves the API beside its main channel
/// (WhatsApp or the fake one): each call goes to the channel of its chat.
/// Its link, ids and events are the main channel's; the sender delivers
/// each channel's rows on its own (see `crate::sender::run`), so neither
/// waits for the other.
pub struct Channels {
    pub main: Arc<dyn Channel>,
    pub api: ApiChannel,
}

impl Channels {
    fn of(&self, chat: &ChatJid) -> &dyn Channel {
        if chat.is_api() {
            &self.api
        } else {
            self.main.as_ref()
        }
    }
}

impl Channel for Channels {
    fn send<'a>(&'a self, msg: &'a Outgoing) -> BoxFuture<'a, Result<(), ChannelError>> {
        self.of(&msg.chat).send(msg)
    }
    fn link(&self) -> watch::Receiver<LinkStatus> {
        self.main.link()
    }
    fn new_message_id(&self) -> MessageId {
        self.main.new_message_id()
    }
    fn take_events(&self) -> Option<tokio::sync::mpsc::Receiver<super::ChannelEvent>> {
        self.main.take_events()
    }
    fn mark_read<'a>(
        &'a self,
        chat: &'a ChatJid,
        messages: &'a [(MessageId, String)],
    ) -> BoxFuture<'a, ()> {
        self.of(chat).mark_read(chat, messages)
    }
    fn react<'a>(
        &'a self,
        chat: &'a ChatJid,
        id: &'a MessageId,
        sender: &'a str,
        emoji: &'a str,
    ) -> BoxFuture<'a, ()> {
        self.of(chat).react(chat, id, sender, emoji)
    }
    fn set_typing<'a>(&'a self, chat: &'a ChatJid, on: bool) -> BoxFuture<'a, ()> {
        self.of(chat).set_typing(chat, on)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn delivers_to_listeners_and_refuses_other_chats() {
        let api = ApiChannel::new();
        let mut rx = api.subscribe();
        let chat = ChatJid::parse("api:notes").unwrap();
        let msg = Outgoing {
            chat: chat.clone(),
            id: MessageId::new("A1"),
            text: "hi".into(),
            media: None,
        };
        api.send(&msg).await.unwrap();
        assert_eq!(rx.recv().await.unwrap().text, "hi");
        let wa = Outgoing {
            chat: ChatJid::parse("1@s.whatsapp.net").unwrap(),
            ..msg
        };
        assert!(api.send(&wa).await.unwrap_err().is_permanent());
        // Nobody listening: still delivered (the outbox keeps the row).
        drop(rx);
        let again = Outgoing {
            chat,
            id: MessageId::new("A2"),
            text: "x".into(),
            media: None,
        };
        api.send(&again).await.unwrap();
    }
}
