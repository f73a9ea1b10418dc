//! The outbox: every outbound message, its channel id chosen before the
//! first send attempt, and its delivery state. Rows are delivered in seq
//! order per chat; a row that fails permanently is marked failed with its
//! reason so it no longer blocks its chat.

use rusqlite::{Connection, params};

use super::{Result, Store, jid, now_ms};
use crate::ids::{ChatJid, MessageId};
use crate::model::{OutboxMedia, OutboxState};

/// One outbound message and its delivery state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    pub seq: i64,
    pub chat: ChatJid,
    pub id: MessageId,
    /// The text, or a file's caption.
    pub text: String,
    /// A file to send, inside the chat's folder.
    pub media: Option<OutboxMedia>,
    pub state: OutboxState,
    pub attempts: i64,
    pub last_error: Option<String>,
    /// Its chat is registered (under this or its other form) now.
    pub registered: bool,
    /// The registered chat's folder (where a file to send lives).
    pub folder: Option<crate::ids::Folder>,
}

impl Store {
    /// Queues a message for delivery outside a run (tools, scheduler).
    pub async fn enqueue_outbox(&self, chat: &ChatJid, id: &MessageId, text: &str) -> Result<i64> {
        let (chat, id, text) = (chat.clone(), id.clone(), text.to_owned());
        self.tx(move |tx| insert_outbox(tx, &chat, &id, &text))
            .await
    }

    /// Outbox rows still to deliver, in delivery order, each saying whether
    /// its chat is still registered (read in the same call: the sender
    /// needs both).
    pub async fn outbox_pending(&self) -> Result<Vec<OutboxRow>> {
        self.call(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT seq, chat, id, text, state, attempts, last_error, media FROM outbox
                 WHERE state = 'pending' ORDER BY seq",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(OutboxRow {
                    seq: r.get(0)?,
                    chat: jid(r.get(1)?)?,
                    id: MessageId::new(r.get::<_, String>(2)?),
                    text: r.get(3)?,
                    state: r.get(4)?,
                    attempts: r.get(5)?,
                    last_error: r.get(6)?,
                    media: match r.get::<_, Option<String>>(7)? {
                        None => None,
                        Some(j) => Some(serde_json::from_str(&j).map_err(|e| {
                            rusqlite::Error::FromSqlConversionFailure(
                                7,
                                rusqlite::types::Type::Text,
                                Box::new(e),
                            )
                        })?),
                    },
                    registered: false,
                    folder: None,
                })
            })?;
            let mut rows = rows.collect::<rusqlite::Result<Vec<_>>>()?;
            for row in &mut rows {
                let reg = super::registry::registered_in(c, &row.chat)?;
                // A stranger offered a pairing code may get that one reply.
                row.registered = reg.is_some() || super::pairings::offer_open(c, &row.chat)?;
                row.folder = reg.map(|r| r.folder);
            }
            Ok(rows)
        })
        .await
    }

    /// Records the result of one delivery attempt: `Ok` marks the row sent;
    /// `Err((reason, permanent))` counts the attempt and, when permanent,
    /// marks the row failed so it no longer blocks its chat.
    pub async fn outbox_record(
        &self,
        seq: i64,
        result: std::result::Result<(), (String, bool)>,
    ) -> Result<()> {
        self.quick(move |c| {
            match result {
                Ok(()) => c.execute(
                    "UPDATE outbox SET state = 'sent', attempts = attempts + 1, last_error = NULL, sent_at = ?2
                     WHERE seq = ?1",
                    params![seq, now_ms()],
                )?,
                Err((reason, permanent)) => c.execute(
                    "UPDATE outbox SET attempts = attempts + 1, last_error = ?2,
                       state = CASE WHEN ?3 THEN 'failed' ELSE state END WHERE seq = ?1",
                    params![seq, reason, permanent],
                )?,
            };
            Ok(())
        })
        .await
    }

    /// Records a delivery receipt for an outbound message id; states only
    /// move forward (sent → delivered → read). Returns whether a row changed.
    pub async fn outbox_receipt(&self, id: &str, state: OutboxState) -> Result<bool> {
        let id = id.to_owned();
        self.call(move |c| {
            let rank = |s: OutboxState| match s {
                OutboxState::Sent => 1,
                OutboxState::Delivered => 2,
                OutboxState::Read => 3,
                _ => 0,
            };
            let changed = c.execute(
                "UPDATE outbox SET state = ?2 WHERE id = ?1 AND
                   (CASE state WHEN 'sent' THEN 1 WHEN 'delivered' THEN 2 WHEN 'read' THEN 3 ELSE 9 END) < ?3",
                params![id, state, rank(state)],
            )?;
            Ok(changed > 0)
        })
        .await
    }

    /// Marks an outbound message failed because the server refused it after
    /// sending (a nack). Returns whether a row changed.
    pub async fn outbox_refused(&self, id: &str, reason: &str) -> Result<bool> {
        let (id, reason) = (id.to_owned(), reason.to_owned());
        self.call(move |c| {
            Ok(c.execute(
                "UPDATE outbox SET state = 'failed', last_error = ?2 WHERE id = ?1",
                params![id, reason],
            )? > 0)
        })
        .await
    }

    /// An outbox row's state and last error, as `"<state> <error or ->"`.
    #[cfg(test)]
    pub async fn outbox_state(&self, seq: i64) -> Result<String> {
        self.call(move |c| {
            Ok(c.query_row(
                "SELECT state || ' ' || COALESCE(last_error, '-') FROM outbox WHERE seq = ?1",
                [seq],
                |r| r.get(0),
            )?)
        })
        .await
    }
}

pub(crate) fn insert_outbox(
    tx: &Connection,
    chat: &ChatJid,
    id: &MessageId,
    text: &str,
) -> Result<i64> {
    insert_outbox_media(tx, chat, id, text, None)
}

/// Queues a message that may carry a file (`text` is then its caption).
/// A file row takes its place in the chat's order like any text.
pub(crate) fn insert_outbox_media(
    tx: &Connection,
    chat: &ChatJid,
    id: &MessageId,
    text: &str,
    media: Option<&OutboxMedia>,
) -> Result<i64> {
    let media = media.map(|m| serde_json::to_string(m).expect("outbox media serializes"));
    tx.execute(
        "INSERT INTO outbox (chat, id, text, created_at, media) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![chat.as_str(), id.as_str(), text, now_ms(), media],
    )?;
    Ok(tx.last_insert_rowid())
}
