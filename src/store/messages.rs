//! Messages and cursors: recording what arrives, and reading what the agent
//! has not seen yet. A chat's cursor is the seq of the last message a run
//! covered; "pending" means after the cursor and not the bridge's own echo.

use rusqlite::{Connection, OptionalExtension, params};

use super::{Result, Store, jid, now_ms, registry::registered_in};
use crate::ids::{ChatJid, MessageId};
use crate::model::{Inbound, MediaInfo, RegisteredChat, StoredMessage};

/// What recording an inbound message found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundOutcome {
    /// The (chat, id) pair was already stored: nothing was written.
    pub duplicate: bool,
    /// The bridge's own outbound message, seen again.
    pub echo: bool,
    /// The chat is registered (so the agent may answer).
    pub registered: bool,
    /// The chat's registration, when it is registered: what intake needs
    /// to tell whether the message can start a run.
    pub registration: Option<RegisteredChat>,
    /// The chat the message was stored under: the registered form when the
    /// chat is registered by its other JID (LID or phone number).
    pub chat: ChatJid,
}

/// Batches the writer that starts on a caller's thread writes there
/// before it hands the rest to the blocking pool, and the most messages in
/// each: in a burst from many callers the writing stays on the threads
/// that parse the requests, without two thread wakes a batch (20-30% more
/// messages a second in `docs/BENCHMARKS.md`, run 21), and the runtime
/// thread it holds is held for at most 512 messages (about 15 ms).
const INLINE_BATCHES: usize = 8;
const INLINE_BATCH: usize = 64;

/// Most inbound messages written in one transaction.
const MAX_INBOUND_BATCH: usize = 512;

/// Inbound messages waiting for the writer, and whether one is running.
#[derive(Default)]
pub(crate) struct InboundQueue {
    pending: Vec<(Inbound, bool, InboundReply)>,
    flushing: bool,
}

type InboundReply = tokio::sync::oneshot::Sender<Result<InboundOutcome>>;

/// Records one inbound message (see [`Store::record_inbound`]).
fn record_one(tx: &Connection, msg: &Inbound, own_number: bool) -> Result<InboundOutcome> {
    // One person or chat, one identity: a chat registered by its other
    // form keeps its messages, cursor, session and outbox together.
    let registered = registered_in(tx, &msg.chat)?;
    let chat = registered
        .as_ref()
        .map_or_else(|| msg.chat.clone(), |reg| reg.jid.clone());
    let echo = msg.from_me
        && (own_number
            || tx
                .prepare_cached(
                    // Any part of a split reply is ours too.
                    "SELECT 1 FROM outbox WHERE id = ?1 AND chat = ?2",
                )?
                .query_row(
                    params![MessageId::base_of(msg.id.as_str()), chat.as_str()],
                    |_| Ok(()),
                )
                .optional()?
                .is_some());
    tx.prepare_cached(
        "INSERT INTO chats (jid, name, is_group, last_activity) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (jid) DO UPDATE SET
           name = COALESCE(excluded.name, chats.name),
           last_activity = MAX(chats.last_activity, excluded.last_activity)",
    )?
    .execute(params![
        chat.as_str(),
        msg.chat_name,
        chat.is_group(),
        now_ms()
    ])?;
    let inserted = tx
        .prepare_cached(
            "INSERT INTO messages (chat, id, sender, sender_name, text, timestamp, from_me, is_echo, media)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (chat, id) DO NOTHING",
        )?
        .execute(params![
            chat.as_str(),
            msg.id.as_str(),
            msg.sender,
            msg.sender_name,
            msg.text,
            msg.timestamp_ms,
            msg.from_me,
            echo,
            media_json(msg.media.as_ref().map(|m| &m.info)),
        ])?;
    Ok(InboundOutcome {
        duplicate: inserted == 0,
        echo,
        registered: registered.is_some(),
        registration: registered,
        chat,
    })
}

/// Writes `batch` in one transaction: each message's own outcome, or the
/// error that kept the whole batch from being committed.
///
/// First all of it plainly; only when a message fails, the batch again
/// with each message in its own savepoint, so that one failing leaves the
/// others. (A savepoint per message every time costs two statements and a
/// copy of every page the message touches into the sub-journal: in a
/// burst, more than the inserts themselves.)
pub(super) fn write_batch(
    conn: &mut Connection,
    batch: &[(Inbound, bool)],
) -> Result<Vec<Result<InboundOutcome>>> {
    {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let outcomes: Result<Vec<_>> = batch
            .iter()
            .map(|(msg, own_number)| record_one(&tx, msg, *own_number))
            .collect();
        if let Ok(outcomes) = outcomes {
            tx.commit()?;
            return Ok(outcomes.into_iter().map(Ok).collect());
        } // else dropped: rolled back, nothing of the batch written
    }
    let mut tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut outcomes = Vec::with_capacity(batch.len());
    for (msg, own_number) in batch {
        let sp = tx.savepoint()?;
        let out = record_one(&sp, msg, *own_number);
        if out.is_ok() {
            sp.commit()?;
        } // else dropped: rolled back
        outcomes.push(out);
    }
    tx.commit()?;
    Ok(outcomes)
}

impl Store {
    /// Records an inbound message and the chat it came from. Duplicates
    /// (same chat and id) change nothing. `own_number`: the assistant has its
    /// own WhatsApp number, so everything sent "from me" is the assistant.
    ///
    /// Group commit: messages arriving together are written in one
    /// transaction (one failing leaves the others, see [`write_batch`]),
    /// and each caller returns only once its message is committed.
    /// A burst then costs one commit per batch instead of one per message.
    pub async fn record_inbound(&self, msg: Inbound, own_number: bool) -> Result<InboundOutcome> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let start = {
            let mut q = self.inbound.lock().unwrap_or_else(|p| p.into_inner());
            q.pending.push((msg, own_number, tx));
            !std::mem::replace(&mut q.flushing, true)
        };
        if start && !self.write_here() {
            // Runs until the queue is empty, then ends; the next message
            // starts another. Nothing long-lived to stop.
            let store = self.clone();
            tokio::task::spawn_blocking(move || store.flush_inbound());
        }
        rx.await
            .map_err(|_| super::StoreError::Join("inbound writer stopped".into()))?
    }

    /// The writer's start without a thread: when the connection is free,
    /// the message that found no writer running (and any that came with
    /// it) is written on this thread, as [`Store::quick`] does, sparing a
    /// lone message two thread wakes, and so are the next batches, up to
    /// [`INLINE_BATCHES`]. What is left then goes to the pool. `false`:
    /// the connection was busy, nothing done.
    fn write_here(&self) -> bool {
        let Some(mut conn) = self.try_conn() else {
            return false;
        };
        for _ in 0..INLINE_BATCHES {
            match self.take_inbound(INLINE_BATCH) {
                Some(batch) => self.write_inbound(&mut conn, batch),
                None => return true,
            }
        }
        drop(conn);
        if self.take_inbound_more() {
            let store = self.clone();
            tokio::task::spawn_blocking(move || store.flush_inbound());
        }
        true
    }

    /// Whether messages came while the writer wrote; if none, the writer
    /// is done (the next message starts another).
    fn take_inbound_more(&self) -> bool {
        let mut q = self.inbound.lock().unwrap_or_else(|p| p.into_inner());
        if q.pending.is_empty() {
            q.flushing = false;
            return false;
        }
        true
    }

    /// The next batch; `None` (and the writer done) when none is left.
    fn take_inbound(&self, most: usize) -> Option<Vec<(Inbound, bool, InboundReply)>> {
        let mut q = self.inbound.lock().unwrap_or_else(|p| p.into_inner());
        if q.pending.is_empty() {
            q.flushing = false;
            return None;
        }
        let n = q.pending.len().min(most);
        Some(q.pending.drain(..n).collect())
    }

    /// Writes queued inbound messages, a batch per transaction, until none is left.
    fn flush_inbound(&self) {
        while let Some(batch) = self.take_inbound(MAX_INBOUND_BATCH) {
            let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
            self.write_inbound(&mut conn, batch);
        }
    }

    /// Writes one batch and answers its callers.
    fn write_inbound(&self, conn: &mut Connection, batch: Vec<(Inbound, bool, InboundReply)>) {
        let (batch, replies): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .map(|(msg, own_number, reply)| ((msg, own_number), reply))
            .unzip();
        let committed = write_batch(conn, &batch);
        self.checkpointer.after_commit(conn);
        {
            match committed {
                Ok(outcomes) => {
                    for (reply, out) in replies.into_iter().zip(outcomes) {
                        let _ = reply.send(out);
                    }
                }
                Err(e) => {
                    // Nothing of the batch stayed: every caller fails (a
                    // channel withholds its ack, so the message comes again).
                    let why = e.to_string();
                    for reply in replies {
                        let _ = reply.send(Err(match e {
                            super::StoreError::Busy => super::StoreError::Busy,
                            super::StoreError::Full => super::StoreError::Full,
                            _ => super::StoreError::Conflict(why.clone()),
                        }));
                    }
                }
            }
        }
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

    /// Replaces the media description of message `seq` (a transcript made).
    pub async fn set_media(&self, seq: i64, info: MediaInfo) -> Result<()> {
        self.call(move |c| {
            c.execute(
                "UPDATE messages SET media = ?2 WHERE seq = ?1",
                params![seq, media_json(Some(&info))],
            )?;
            Ok(())
        })
        .await
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

/// A message's media as stored (JSON of [`MediaInfo`]).
fn media_json(info: Option<&MediaInfo>) -> Option<String> {
    info.map(|i| serde_json::to_string(i).expect("media info serializes"))
}

/// Reads stored media; a value this build cannot read is logged and shown
/// to the agent as unreadable, never fails the whole read.
fn media_from(value: Option<String>) -> Option<MediaInfo> {
    let value = value?;
    Some(serde_json::from_str(&value).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "stored media description unreadable");
        MediaInfo {
            mime: "application/octet-stream".into(),
            kind: crate::model::MediaKind::Document,
            note: Some(format!("stored description unreadable: {e}")),
            ..MediaInfo::default()
        }
    }))
}

/// Messages after the chat's cursor that are not the bridge's own echoes,
/// oldest first; at most the newest `limit` of them.
pub(crate) fn pending_in(
    c: &Connection,
    chat: &ChatJid,
    limit: usize,
) -> Result<Vec<StoredMessage>> {
    let mut stmt = c.prepare_cached(
        "SELECT seq, id, sender, sender_name, text, timestamp, from_me, media FROM (
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
                media: media_from(r.get::<_, Option<String>>(7)?),
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}
