//! Run records: a chat's run in flight (so a crash can be reconciled at
//! start-up) or parked with its reason. Completing a run is the one
//! transaction that queues the reply and advances the cursor.

use rusqlite::{Connection, OptionalExtension, params};

use super::outbox::insert_outbox;
use super::{Result, Store, jid, now_ms};
use crate::ids::{ChatJid, MessageId, PromptId, SessionId};
use crate::model::{RegisteredChat, RunState, StoredMessage};

/// A run in flight (left by a crash when found at start-up) or parked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    pub chat: ChatJid,
    pub state: RunState,
    pub session_id: Option<SessionId>,
    pub prompt_id: Option<PromptId>,
    pub up_to_seq: Option<i64>,
    pub attempts: i64,
    pub reason: Option<String>,
}

impl Store {
    /// Records that a prompt covering messages up to `up_to_seq` is about
    /// to be sent, so a crash can be reconciled at start-up. Returns the
    /// tool ledger's position, from which [`Store::tools_sent_since`] counts
    /// what this run's own tool calls send.
    pub async fn begin_run(
        &self,
        chat: &ChatJid,
        session: &SessionId,
        prompt: &PromptId,
        up_to_seq: i64,
        attempts: u32,
    ) -> Result<i64> {
        let (chat, session, prompt) = (chat.clone(), session.clone(), prompt.clone());
        self.quick(move |c| {
            c.execute(
                "INSERT INTO runs (chat, state, session_id, prompt_id, up_to_seq, attempts, reason, updated_at)
                 VALUES (?1, 'running', ?2, ?3, ?4, ?5, NULL, ?6)
                 ON CONFLICT (chat) DO UPDATE SET state = 'running', session_id = excluded.session_id,
                   prompt_id = excluded.prompt_id, up_to_seq = excluded.up_to_seq,
                   attempts = excluded.attempts, reason = NULL, updated_at = excluded.updated_at",
                params![chat.as_str(), session.as_str(), prompt.as_str(), up_to_seq, attempts, now_ms()],
            )?;
            Ok(c.query_row(
                "SELECT COALESCE(MAX(rowid), 0) FROM ipc_requests",
                [],
                |r| r.get(0),
            )?)
        })
        .await
    }

    /// Finishes a run atomically: the reply (if any) enters the outbox, the
    /// cursor moves to `up_to_seq`, and the run record goes. Returns the
    /// outbox seq of the reply.
    pub async fn complete_run(
        &self,
        chat: &ChatJid,
        up_to_seq: i64,
        reply: Option<(MessageId, String)>,
    ) -> Result<Option<i64>> {
        let chat = chat.clone();
        self.tx_quick(move |tx| {
            let seq = match reply {
                Some((id, text)) => Some(insert_outbox(tx, &chat, &id, &text)?),
                None => None,
            };
            tx.execute(
                "INSERT INTO cursors (chat, seq) VALUES (?1, ?2)
                 ON CONFLICT (chat) DO UPDATE SET seq = MAX(cursors.seq, excluded.seq)",
                params![chat.as_str(), up_to_seq],
            )?;
            tx.execute("DELETE FROM runs WHERE chat = ?1", params![chat.as_str()])?;
            Ok(seq)
        })
        .await
    }

    /// Parks the chat's run with a reason (visible in status) until the
    /// chat's next message. `up_to_seq` records the chat's newest message
    /// at parking, so a restart can tell whether a later one released it.
    pub async fn park_run(&self, chat: &ChatJid, attempts: u32, reason: &str) -> Result<()> {
        let (chat, reason) = (chat.clone(), reason.to_owned());
        self.call(move |c| {
            c.execute(
                "INSERT INTO runs (chat, state, up_to_seq, attempts, reason, updated_at)
                 VALUES (?1, 'parked', (SELECT COALESCE(MAX(seq), 0) FROM messages WHERE chat = ?1), ?2, ?3, ?4)
                 ON CONFLICT (chat) DO UPDATE SET state = 'parked', session_id = NULL, prompt_id = NULL,
                   up_to_seq = excluded.up_to_seq, attempts = excluded.attempts, reason = excluded.reason,
                   updated_at = excluded.updated_at",
                params![chat.as_str(), attempts, reason, now_ms()],
            )?;
            Ok(())
        })
        .await
    }

    /// Forgets the chat's run record (failed attempt to be retried, or unparked).
    pub async fn clear_run(&self, chat: &ChatJid) -> Result<()> {
        let chat = chat.clone();
        self.call(move |c| {
            c.execute("DELETE FROM runs WHERE chat = ?1", params![chat.as_str()])?;
            Ok(())
        })
        .await
    }

    /// Every run record, in flight or parked.
    pub async fn runs(&self) -> Result<Vec<RunRecord>> {
        self.call(|c| {
            let mut stmt = c.prepare(&format!("{RUN_SELECT} ORDER BY chat"))?;
            let rows = stmt.query_map([], run_record)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    /// The chat's run record, if any.
    pub async fn run_of(&self, chat: &ChatJid) -> Result<Option<RunRecord>> {
        let chat = chat.clone();
        self.call(move |c| run_in(c, &chat)).await
    }

    /// Everything a run needs to decide what to do, read in one
    /// transaction: the registration, a run left in flight by the last
    /// process, the pending messages, the session and the next task run.
    /// A chat no longer registered gets no plan; in the same transaction
    /// its waiting task runs end and its tasks are paused, with the reason.
    pub async fn plan_run(&self, chat: &ChatJid, max_batch: usize) -> Result<Option<RunPlan>> {
        let chat = chat.clone();
        self.tx_quick(move |tx| {
            let Some(reg) = super::registry::registered_in(tx, &chat)? else {
                let (runs, paused) = super::tasks::abandon_unregistered(tx, &chat)?;
                if runs + paused > 0 {
                    tracing::info!(chat = %chat, runs, paused, "chat no longer registered: its task runs ended, its tasks paused");
                }
                return Ok(None);
            };
            Ok(Some(RunPlan {
                run: run_in(tx, &chat)?,
                batch: super::messages::pending_in(tx, &chat, max_batch)?,
                session: super::registry::session_in(tx, &chat)?,
                next_task: super::tasks::next_run_for(tx, &chat)?,
                reg,
            }))
        })
        .await
    }
}

/// What [`Store::plan_run`] read for one run.
#[derive(Debug, Clone)]
pub struct RunPlan {
    pub reg: RegisteredChat,
    /// The chat's run record: parked, or left running by the last process
    /// (to reconcile first).
    pub run: Option<RunRecord>,
    pub batch: Vec<StoredMessage>,
    pub session: Option<SessionId>,
    /// The oldest queued (or interrupted) task run of the chat.
    pub next_task: Option<super::tasks::TaskRun>,
}

fn run_in(c: &Connection, chat: &ChatJid) -> Result<Option<RunRecord>> {
    Ok(c.prepare_cached(&format!("{RUN_SELECT} WHERE chat = ?1"))?
        .query_row(params![chat.as_str()], run_record)
        .optional()?)
}

const RUN_SELECT: &str =
    "SELECT chat, state, session_id, prompt_id, up_to_seq, attempts, reason FROM runs";

fn run_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRecord> {
    Ok(RunRecord {
        chat: jid(r.get(0)?)?,
        state: r.get(1)?,
        session_id: r.get::<_, Option<String>>(2)?.map(SessionId::new),
        prompt_id: r.get::<_, Option<String>>(3)?.map(PromptId::new),
        up_to_seq: r.get(4)?,
        attempts: r.get(5)?,
        reason: r.get(6)?,
    })
}
