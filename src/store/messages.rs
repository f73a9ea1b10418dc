//! Messages and cursors: recording what arrives, and reading what the agent
//! has not seen yet. A chat's cursor is the seq of the last message a run
//! covered; "pending" means after the cursor and not the bridge's own echo.

use rusqlite::{Connection, OptionalExtension, params};

use super::{Result, Store, jid, now_ms, registry::registered_in};
use crate::ids::{ChatJid, MessageId};
use crate::model::{Inbound, StoredMessage};

/// What recording an inbound message found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundOutcome {
    /// The (chat, id) pair was already stored: nothing was written.
    pub duplicate: bool,
    /// The bridge's own outbound message, seen again.
    pub echo: bool,
    /// The chat is registered (so the agent may answer).
    pub registered: bool,
    /// The chat the message was stored under: the registered form when the
    /// chat is registered by its other JID (LID or phone number).
    pub chat: ChatJid,
}

impl Store {
    /// Records an inbound message and the chat it came from. Duplicates
    /// (same chat and id) change nothing. `own_number`: the assistant has its
    /// own WhatsApp number, so everything sent "from me" is the assistant.
    pub async fn record_inbound(
        &self,
        mut msg: Inbound,
        own_number: bool,
    ) -> Result<InboundOutcome> {
        self.tx(move |tx| {
            // One person or chat, one identity: a chat registered by its other
            // form keeps its messages, cursor, session and outbox together.
            let registered = registered_in(tx, &msg.chat)?;
            if let Some(reg) = &registered {
                msg.chat = reg.jid.clone();
            }
            let echo = msg.from_me
                && (own_number
                    || tx
                        .query_row(
                            // Any part of a split reply is ours too.
                            "SELECT 1 FROM outbox WHERE id = ?1 AND chat = ?2",
                            params![MessageId::base_of(msg.id.as_str()), msg.chat.as_str()],
                            |_| Ok(()),
                        )
                        .optional()?
                        .is_some());
            tx.execute(
                "INSERT INTO chats (jid, name, is_group, last_activity) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (jid) DO UPDATE SET
                   name = COALESCE(excluded.name, chats.name),
                   last_activity = MAX(chats.last_activity, excluded.last_activity)",
                params![msg.chat.as_str(), msg.chat_name, msg.chat.is_group(), now_ms()],
            )?;
            let inserted = tx.execute(
                "INSERT INTO messages (chat, id, sender, sender_name, text, timestamp, from_me, is_echo)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (chat, id) DO NOTHING",
                params![
                    msg.chat.as_str(),
                    msg.id.as_str(),
                    msg.sender,
                    msg.sender_name,
                    msg.text,
                    msg.timestamp_ms,
                    msg.from_me,
                    echo
                ],
            )?;
            Ok(InboundOutcome {
                duplicate: inserted == 0,
                echo,
                registered: registered.is_some(),
                chat: msg.chat,
            })
        })
        .await
    }

    /// Messages after the chat's cursor that are not the bridge's own
    /// echoes, oldest first; at most the newest `limit` of them.
    pub async fn pending_messages(
        &self,
        chat: &ChatJid,
        limit: usize,
    ) -> Result<Vec<StoredMessage>> {
        let chat = chat.clone();
        self.call(move |c| pending_in(c, &chat, limit)).await
    }

    /// Whether a person wrote in `chat` after message `seq` (echoes aside).
    pub async fn has_message_after(&self, chat: &ChatJid, seq: i64) -> Result<bool> {
        let chat = chat.clone();
        self.call(move |c| {
            Ok(c.query_row(
                "SELECT EXISTS (SELECT 1 FROM messages WHERE chat = ?1 AND seq > ?2 AND is_echo = 0 AND handled = 0)",
                params![chat.as_str(), seq],
                |r| r.get(0),
            )?)
        })
        .await
    }

    /// Registered chats with messages after their cursor (start-up scan).
    pub async fn chats_with_pending(&self) -> Result<Vec<ChatJid>> {
        self.call(|c| {
            let mut stmt = c.prepare(
                "SELECT r.jid FROM registered_chats r
                 WHERE EXISTS (SELECT 1 FROM messages m WHERE m.chat = r.jid AND m.is_echo = 0 AND m.handled = 0
                   AND m.seq > COALESCE((SELECT seq FROM cursors WHERE chat = r.jid), 0))",
            )?;
            let rows = stmt
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.into_iter().map(|j| Ok(jid(j)?)).collect()
        })
        .await
    }
}

/// Messages after the chat's cursor that are not the bridge's own echoes,
/// oldest first; at most the newest `limit` of them.
pub(crate) fn pending_in(
    c: &Connection,
    chat: &ChatJid,
    limit: usize,
) -> Result<Vec<StoredMessage>> {
    let mut stmt = c.prepare_cached(
        "SELECT seq, id, sender, sender_name, text, timestamp, from_me FROM (
           SELECT * FROM messages
           WHERE chat = ?1 AND is_echo = 0 AND handled = 0
             AND seq > COALESCE((SELECT seq FROM cursors WHERE chat = ?1), 0)
           ORDER BY seq DESC LIMIT ?2)
         ORDER BY seq",
    )?;
    let rows = stmt
        .query_map(params![chat.as_str(), limit as i64], |r| {
            Ok(StoredMessage {
                seq: r.get(0)?,
                id: MessageId::new(r.get::<_, String>(1)?),
                sender: r.get(2)?,
                sender_name: r.get(3)?,
                text: r.get(4)?,
                timestamp_ms: r.get(5)?,
                from_me: r.get(6)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}
