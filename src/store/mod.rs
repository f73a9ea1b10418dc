//! The bridge's SQLite store: chats, registrations, messages, cursors,
//! sessions, the outbox and run records.
//!
//! One connection behind a mutex, used only from `spawn_blocking`, so SQLite
//! never blocks the async runtime and writes are serialized in-process. WAL
//! and a busy timeout let the CLI (another process) read and register chats
//! while the bridge runs. Schema changes are numbered migration files; the
//! version lives in `PRAGMA user_version`, each step runs in its own
//! transaction, and a database newer than this code is refused.
//!
//! The invariants that make delivery exactly-once live here: a reply enters
//! the outbox in the same transaction that advances the chat's cursor, and
//! every outbox row carries the channel message id chosen before its first
//! send attempt, so a resend after a crash is recognisably the same message.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::ids::{ChatJid, Folder, MessageId, PromptId, SessionId};
use crate::router::TriggerRule;

pub mod tasks;

/// Numbered migrations; index + 1 is the schema version after the step.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_chats_messages.sql"),
    include_str!("migrations/0002_outbox_runs.sql"),
    include_str!("migrations/0003_tasks_ipc.sql"),
    include_str!("migrations/0004_jid_aliases.sql"),
];

/// The schema version this code writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Store failures. None of them is fixed by retrying the same call, except
/// `Busy` (another process holds the write lock for longer than the timeout).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "database {path} has schema version {found}, newer than this build's {supported}; upgrade PocketBrain"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("database is busy (locked by another process)")]
    Busy,
    #[error("{0}")]
    Conflict(String),
    #[error("cannot create data directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("sqlite: {0}")]
    Sqlite(rusqlite::Error),
    #[error("store worker failed: {0}")]
    Join(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                StoreError::Busy
            }
            _ => StoreError::Sqlite(e),
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// A message as it arrives from a channel, already validated.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub chat: ChatJid,
    /// The chat's display name when the channel knows it (group subject).
    pub chat_name: Option<String>,
    pub id: MessageId,
    pub sender: String,
    pub sender_name: Option<String>,
    pub text: String,
    pub timestamp_ms: i64,
    pub from_me: bool,
}

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

/// A stored message, as the prompt needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub seq: i64,
    pub id: MessageId,
    pub sender: String,
    pub sender_name: Option<String>,
    pub text: String,
    pub timestamp_ms: i64,
    pub from_me: bool,
}

/// A chat the agent answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredChat {
    pub jid: ChatJid,
    pub name: String,
    pub folder: Folder,
    pub is_main: bool,
    pub trigger: TriggerRule,
}

/// A chat the bridge has seen, registered or not.
#[derive(Debug, Clone)]
pub struct ChatRow {
    pub jid: ChatJid,
    pub name: Option<String>,
    pub is_group: bool,
    pub last_activity_ms: i64,
    pub registered: Option<RegisteredChat>,
}

/// One outbound message and its delivery state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    pub seq: i64,
    pub chat: ChatJid,
    pub id: MessageId,
    pub text: String,
    pub state: String,
    pub attempts: i64,
    pub last_error: Option<String>,
}

/// A run in flight (left by a crash when found at start-up) or parked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    pub chat: ChatJid,
    pub state: String,
    pub session_id: Option<SessionId>,
    pub prompt_id: Option<PromptId>,
    pub up_to_seq: Option<i64>,
    pub attempts: i64,
    pub reason: Option<String>,
}

/// Counts for `status` and `/health`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StoreSummary {
    pub chats_seen: i64,
    pub chats_registered: i64,
    pub messages: i64,
    pub outbox_pending: i64,
    pub outbox_failed: i64,
    pub outbox_delivered: i64,
    pub outbox_read: i64,
    pub runs_in_flight: i64,
    pub runs_parked: i64,
}

/// Cheap-to-clone handle to the store.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    path: Arc<PathBuf>,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub(crate) fn jid(s: String) -> rusqlite::Result<ChatJid> {
    ChatJid::parse(&s).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

impl Store {
    /// Opens (creating if needed) the database at `path` and migrates it.
    /// Blocking: call before the runtime is busy, or from `spawn_blocking`.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
                path: dir.to_owned(),
                source,
            })?;
        }
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // NORMAL is durable against a process crash (kill -9) in WAL mode;
        // only a power loss can drop the last transactions.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        migrate(&mut conn, path)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            path: Arc::new(path.to_owned()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` with the connection on the blocking pool.
    pub async fn call<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Join(e.to_string()))?
    }

    /// Runs `f` inside one transaction on the blocking pool.
    pub async fn tx<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T> + Send + 'static,
    {
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        })
        .await
    }

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

    /// The registration of `chat`, if any.
    pub async fn registered(&self, chat: &ChatJid) -> Result<Option<RegisteredChat>> {
        let chat = chat.clone();
        self.call(move |c| registered_in(c, &chat)).await
    }

    /// Registers a chat. The agent's cursor starts at the newest stored
    /// message, so history from before the registration is not dumped on it.
    pub async fn register(&self, reg: RegisteredChat) -> Result<()> {
        self.tx(move |tx| {
            if let Some(other) = tx
                .query_row(
                    "SELECT jid FROM registered_chats WHERE folder = ?1 AND jid != ?2",
                    params![reg.folder.as_str(), reg.jid.as_str()],
                    |r| r.get::<_, String>(0),
                )
                .optional()?
            {
                return Err(StoreError::Conflict(format!(
                    "folder {:?} is already used by {other}; pass --folder",
                    reg.folder.as_str()
                )));
            }
            if reg.is_main
                && let Some(other) = tx
                    .query_row(
                        "SELECT jid FROM registered_chats WHERE is_main = 1 AND jid != ?1",
                        params![reg.jid.as_str()],
                        |r| r.get::<_, String>(0),
                    )
                    .optional()?
            {
                return Err(StoreError::Conflict(format!(
                    "{other} is already the main chat; unregister it first"
                )));
            }
            tx.execute(
                "INSERT INTO registered_chats (jid, name, folder, is_main, trigger_rule, registered_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (jid) DO UPDATE SET name = excluded.name, folder = excluded.folder,
                   is_main = excluded.is_main, trigger_rule = excluded.trigger_rule",
                params![
                    reg.jid.as_str(),
                    reg.name,
                    reg.folder.as_str(),
                    reg.is_main,
                    reg.trigger.to_db(),
                    now_ms()
                ],
            )?;
            tx.execute(
                "INSERT INTO chats (jid, name, is_group, last_activity) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (jid) DO UPDATE SET name = COALESCE(chats.name, excluded.name)",
                params![reg.jid.as_str(), reg.name, reg.jid.is_group(), now_ms()],
            )?;
            tx.execute(
                "INSERT INTO cursors (chat, seq)
                 SELECT ?1, COALESCE(MAX(seq), 0) FROM messages WHERE chat = ?1
                 ON CONFLICT (chat) DO NOTHING",
                params![reg.jid.as_str()],
            )?;
            Ok(())
        })
        .await
    }

    /// Unregisters a chat; returns whether it was registered. Its messages,
    /// cursor and session stay, so registering again resumes its memory.
    pub async fn unregister(&self, chat: &ChatJid) -> Result<bool> {
        let chat = chat.clone();
        self.tx(move |tx| {
            tx.execute("DELETE FROM runs WHERE chat = ?1", params![chat.as_str()])?;
            Ok(tx.execute(
                "DELETE FROM registered_chats WHERE jid = ?1",
                params![chat.as_str()],
            )? > 0)
        })
        .await
    }

    /// Every chat seen or registered, most recently active first.
    pub async fn list_chats(&self) -> Result<Vec<ChatRow>> {
        self.call(|c| {
            let mut stmt = c.prepare(
                "SELECT jid, name, is_group, last_activity FROM chats ORDER BY last_activity DESC, jid",
            )?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, bool>(2)?,
                        r.get::<_, i64>(3)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut out = Vec::with_capacity(rows.len());
            for (j, name, is_group, last) in rows {
                let jid = jid(j)?;
                let registered = registered_in(c, &jid)?;
                out.push(ChatRow {
                    jid,
                    name,
                    is_group,
                    last_activity_ms: last,
                    registered,
                });
            }
            Ok(out)
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
        self.call(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT seq, id, sender, sender_name, text, timestamp, from_me FROM (
                   SELECT * FROM messages
                   WHERE chat = ?1 AND is_echo = 0
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
        })
        .await
    }

    /// Registered chats with messages after their cursor (start-up scan).
    /// Whether a person wrote in `chat` after message `seq` (echoes aside).
    pub async fn has_message_after(&self, chat: &ChatJid, seq: i64) -> Result<bool> {
        let chat = chat.clone();
        self.call(move |c| {
            Ok(c.query_row(
                "SELECT EXISTS (SELECT 1 FROM messages WHERE chat = ?1 AND seq > ?2 AND is_echo = 0)",
                params![chat.as_str(), seq],
                |r| r.get(0),
            )?)
        })
        .await
    }

    pub async fn chats_with_pending(&self) -> Result<Vec<ChatJid>> {
        self.call(|c| {
            let mut stmt = c.prepare(
                "SELECT r.jid FROM registered_chats r
                 WHERE EXISTS (SELECT 1 FROM messages m WHERE m.chat = r.jid AND m.is_echo = 0
                   AND m.seq > COALESCE((SELECT seq FROM cursors WHERE chat = r.jid), 0))",
            )?;
            let rows = stmt
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.into_iter().map(|j| Ok(jid(j)?)).collect()
        })
        .await
    }

    pub async fn session(&self, chat: &ChatJid) -> Result<Option<SessionId>> {
        let chat = chat.clone();
        self.call(move |c| {
            Ok(c.query_row(
                "SELECT session_id FROM sessions WHERE chat = ?1",
                params![chat.as_str()],
                |r| r.get::<_, String>(0),
            )
            .optional()?
            .map(SessionId::new))
        })
        .await
    }

    pub async fn set_session(&self, chat: &ChatJid, session: &SessionId) -> Result<()> {
        let (chat, session) = (chat.clone(), session.clone());
        self.call(move |c| {
            c.execute(
                "INSERT INTO sessions (chat, session_id, created_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (chat) DO UPDATE SET session_id = excluded.session_id,
                   created_at = excluded.created_at",
                params![chat.as_str(), session.as_str(), now_ms()],
            )?;
            Ok(())
        })
        .await
    }

    /// Forgets the chat's session (OpenCode said it is gone).
    pub async fn clear_session(&self, chat: &ChatJid) -> Result<()> {
        let chat = chat.clone();
        self.call(move |c| {
            c.execute(
                "DELETE FROM sessions WHERE chat = ?1",
                params![chat.as_str()],
            )?;
            Ok(())
        })
        .await
    }

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
        self.call(move |c| {
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

    /// Whether a tool call made in `session` and recorded after the ledger
    /// position `mark` sent a message (to any chat). Only the session's own
    /// calls count: another chat's agent sending into this chat does not.
    pub async fn tools_sent_since(&self, session: &SessionId, mark: i64) -> Result<bool> {
        let session = session.clone();
        self.call(move |c| {
            Ok(c.query_row(
                "SELECT EXISTS (SELECT 1 FROM ipc_requests WHERE rowid > ?2 AND session_id = ?1
                   AND ok = 1 AND tool = 'send_message'
                   AND json_extract(response, '$.result.sent') = 1)",
                params![session.as_str(), mark],
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
        self.tx(move |tx| {
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

    /// Queues a message for delivery outside a run (tools, scheduler).
    pub async fn enqueue_outbox(&self, chat: &ChatJid, id: &MessageId, text: &str) -> Result<i64> {
        let (chat, id, text) = (chat.clone(), id.clone(), text.to_owned());
        self.tx(move |tx| insert_outbox(tx, &chat, &id, &text))
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
        self.call(move |c| {
            Ok(c.prepare_cached(&format!("{RUN_SELECT} WHERE chat = ?1"))?
                .query_row(params![chat.as_str()], run_record)
                .optional()?)
        })
        .await
    }

    /// Outbox rows still to deliver, in delivery order.
    pub async fn outbox_pending(&self) -> Result<Vec<OutboxRow>> {
        self.call(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT seq, chat, id, text, state, attempts, last_error FROM outbox
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
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
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
        self.call(move |c| {
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

    /// The chat a session belongs to: its conversation session, or an
    /// isolated task session made for it.
    pub async fn chat_for_session(&self, session: &SessionId) -> Result<Option<ChatJid>> {
        let session = session.clone();
        self.call(move |c| {
            let found = c
                .query_row(
                    "SELECT chat FROM sessions WHERE session_id = ?1
                     UNION ALL SELECT chat FROM task_sessions WHERE session_id = ?1 LIMIT 1",
                    params![session.as_str()],
                    |r| r.get::<_, String>(0),
                )
                .optional()?;
            Ok(found.map(jid).transpose()?)
        })
        .await
    }

    /// The response recorded for an IPC request id, if it was acted on.
    pub async fn ipc_response(&self, id: &str) -> Result<Option<crate::ipc::protocol::Response>> {
        let id = id.to_owned();
        self.call(move |c| {
            let raw = c
                .query_row(
                    "SELECT response FROM ipc_requests WHERE id = ?1",
                    params![id],
                    |r| r.get::<_, String>(0),
                )
                .optional()?;
            Ok(raw.and_then(|r| serde_json::from_str(&r).ok()))
        })
        .await
    }

    /// Records that `alias` (a LID) and `canonical` (a phone number) are one
    /// person or chat.
    pub async fn record_aliases(&self, pairs: Vec<(ChatJid, ChatJid)>) -> Result<()> {
        if pairs.is_empty() {
            return Ok(());
        }
        self.call(move |c| {
            for (alias, canonical) in pairs {
                c.execute(
                    "INSERT INTO jid_aliases (alias, canonical, seen_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (alias) DO UPDATE SET canonical = excluded.canonical, seen_at = excluded.seen_at",
                    params![alias.as_str(), canonical.as_str(), now_ms()],
                )?;
            }
            Ok(())
        })
        .await
    }

    /// Records a delivery receipt for an outbound message id; states only
    /// move forward (sent → delivered → read). Returns whether a row changed.
    pub async fn outbox_receipt(&self, id: &str, state: &'static str) -> Result<bool> {
        let id = id.to_owned();
        self.call(move |c| {
            let rank = |s: &str| match s {
                "sent" => 1,
                "delivered" => 2,
                "read" => 3,
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

    /// Sets a chat's display name (group subjects discovered by the channel).
    pub async fn set_chat_name(&self, chat: &ChatJid, name: &str) -> Result<()> {
        let (chat, name) = (chat.clone(), name.to_owned());
        self.call(move |c| {
            c.execute(
                "INSERT INTO chats (jid, name, is_group, last_activity) VALUES (?1, ?2, ?3, 0)
                 ON CONFLICT (jid) DO UPDATE SET name = excluded.name",
                params![chat.as_str(), name, chat.is_group()],
            )?;
            Ok(())
        })
        .await
    }

    /// The newest outbox seq of a chat (0 when none).
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

    pub async fn summary(&self) -> Result<StoreSummary> {
        self.call(|c| {
            Ok(c.query_row(
                "SELECT (SELECT COUNT(*) FROM chats), (SELECT COUNT(*) FROM registered_chats),
                        (SELECT COUNT(*) FROM messages),
                        (SELECT COUNT(*) FROM outbox WHERE state = 'pending'),
                        (SELECT COUNT(*) FROM outbox WHERE state = 'failed'),
                        (SELECT COUNT(*) FROM runs WHERE state = 'running'),
                        (SELECT COUNT(*) FROM runs WHERE state = 'parked'),
                        (SELECT COUNT(*) FROM outbox WHERE state = 'delivered'),
                        (SELECT COUNT(*) FROM outbox WHERE state = 'read')",
                [],
                |r| {
                    Ok(StoreSummary {
                        chats_seen: r.get(0)?,
                        chats_registered: r.get(1)?,
                        messages: r.get(2)?,
                        outbox_pending: r.get(3)?,
                        outbox_failed: r.get(4)?,
                        runs_in_flight: r.get(5)?,
                        runs_parked: r.get(6)?,
                        outbox_delivered: r.get(7)?,
                        outbox_read: r.get(8)?,
                    })
                },
            )?)
        })
        .await
    }
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

pub(crate) fn registered_in(c: &Connection, chat: &ChatJid) -> Result<Option<RegisteredChat>> {
    // The chat itself, or a registration made with its other form (LID or
    // phone number), in either direction.
    let row = c
        .prepare_cached(
            "SELECT jid, name, folder, is_main, trigger_rule FROM registered_chats WHERE jid = ?1
             UNION ALL
             SELECT r.jid, r.name, r.folder, r.is_main, r.trigger_rule FROM registered_chats r
               JOIN jid_aliases a ON (a.alias = r.jid AND a.canonical = ?1) OR (a.canonical = r.jid AND a.alias = ?1)
             LIMIT 1",
        )?
        .query_row(params![chat.as_str()], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, bool>(3)?,
                r.get::<_, String>(4)?,
            ))
        })
        .optional()?;
    let Some((jid, name, folder, is_main, trigger)) = row else {
        return Ok(None);
    };
    let conv = |e: Box<dyn std::error::Error + Send + Sync>| {
        StoreError::Sqlite(rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            e,
        ))
    };
    Ok(Some(RegisteredChat {
        jid: ChatJid::parse(&jid).map_err(|e| conv(Box::new(e)))?,
        name,
        folder: Folder::parse(&folder).map_err(|e| conv(Box::new(e)))?,
        is_main,
        trigger: TriggerRule::from_db(&trigger).map_err(|e| conv(e.into()))?,
    }))
}

pub(crate) fn insert_outbox(
    tx: &Connection,
    chat: &ChatJid,
    id: &MessageId,
    text: &str,
) -> Result<i64> {
    tx.execute(
        "INSERT INTO outbox (chat, id, text, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![chat.as_str(), id.as_str(), text, now_ms()],
    )?;
    Ok(tx.last_insert_rowid())
}

/// Whether a tool call (session + call id) already has a ledger row.
pub(crate) fn ipc_call_seen(c: &Connection, session: &str, call_id: &str) -> Result<bool> {
    Ok(c.query_row(
        "SELECT 1 FROM ipc_requests WHERE session_id = ?1 AND call_id = ?2",
        params![session, call_id],
        |_| Ok(()),
    )
    .optional()?
    .is_some())
}

/// Records an acted-on IPC request and its response.
pub(crate) fn ipc_record(
    c: &Connection,
    req: &crate::ipc::protocol::Request,
    call_id: &str,
    chat: &ChatJid,
    resp: &crate::ipc::protocol::Response,
) -> Result<()> {
    c.execute(
        "INSERT INTO ipc_requests (id, session_id, call_id, tool, chat, ok, response, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            req.id,
            req.context.session_id,
            call_id,
            req.tool,
            chat.as_str(),
            resp.ok,
            serde_json::to_string(resp).unwrap_or_default(),
            now_ms()
        ],
    )?;
    Ok(())
}

/// Brings the schema to `SCHEMA_VERSION`, one transaction per step.
fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: path.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let version = i as i64 + 1;
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
        tracing::info!(version, "store migrated");
    }
    Ok(())
}

#[cfg(test)]
mod tests;
