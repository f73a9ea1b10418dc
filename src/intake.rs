//! Intake: where every channel hands over an inbound message.
//!
//! A message is stored first (one transaction: chat row, message, echo
//! check), and only then acknowledged to the channel; a new, non-echo
//! message in a registered chat wakes the chat's queue with
//! [`Wake::Message`], the one wake that also releases a parked chat.

use futures_util::future::BoxFuture;

use crate::model::Inbound;
use crate::queue::{ChatQueue, Wake};
use crate::store::{InboundOutcome, Store};

/// Takes inbound messages; cheap to clone.
#[derive(Clone)]
pub struct Intake {
    store: Store,
    queue: ChatQueue,
    /// `ASSISTANT_HAS_OWN_NUMBER`: then every `from_me` message is our echo.
    own_number: bool,
}

impl Intake {
    pub fn new(store: Store, queue: ChatQueue, own_number: bool) -> Self {
        Self {
            store,
            queue,
            own_number,
        }
    }

    /// Takes one validated inbound message: stores it, and wakes the chat's
    /// queue when it is registered, new, and not our own echo.
    pub async fn accept(&self, msg: Inbound) -> crate::store::Result<InboundOutcome> {
        let id = msg.id.clone();
        let outcome = self.store.record_inbound(msg, self.own_number).await?;
        let chat = &outcome.chat;
        if outcome.duplicate {
            tracing::info!(chat = %chat, id = %id, "duplicate message ignored");
        } else if outcome.echo {
            tracing::debug!(chat = %chat, id = %id, "own message echoed back; not answered");
        } else if !outcome.registered {
            tracing::info!(chat = %chat, id = %id, "message from unregistered chat recorded, not answered");
        } else {
            self.queue.notify(chat, Wake::Message);
        }
        Ok(outcome)
    }
}

impl crate::channel::InboundSink for Intake {
    fn accept(&self, msg: Inbound) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            Intake::accept(self, msg)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }
}
