//! The bridge's SQLite store: chats, registrations, messages, cursors,
//! sessions, the outbox and run records.
//!
//! One connection behind a mutex, used from `spawn_blocking`, so SQLite
//! never blocks the async runtime and writes are serialized in-process.
//! The few point statements on a message's path (its write when no writer
//! runs, a run's plan and record, the reply's commit, the send's record)
//! go through [`Store::quick`] instead: run in place when the connection
//! is free, sparing two thread wakes each, and on the pool when not. WAL
//! and a busy timeout let the CLI (another process) read and register chats
//! while the bridge runs. Schema changes are numbered migration files; the
//! version lives in `PRAGMA user_version`, each step runs in its own
//! transaction, and a database newer than this code is refused.
//!
//! The invariants that make delivery exactly-once live here: a reply enters
//! the outbox in the same transaction that advances the chat's cursor, and
//! every outbox row carries the channel message id chosen before its first
//! send attempt, so a resend after a crash is recognisably the same message.
//!
//! This file holds the handle, opening, migrations and the `call`/`tx`
//! helpers; the queries live beside their tables, each file adding an
//! `impl Store` block: `messages` (messages and cursors), `registry`
//! (chats, registration, aliases, sessions), `outbox`, `runs`, [`tasks`]
//! (functions on a connection, to combine in one transaction), `ipc`
//! (the tool-call ledger) and `overview` (what status shows); [`ops`]
//! works on database files by path (backup copies, checks). The store speaks only
//! [`crate::ids`] and [`crate::model`]; whatever needs the IPC protocol or
//! schedule arithmetic is done by the caller, which passes plain values.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, Transaction};

use crate::ids::ChatJid;

pub mod api_keys;
pub mod approvals;
mod chat_controls;
mod checkpoint;
mod ipc;
mod messages;
pub mod ops;
mod outbox;
mod overview;
mod pairings;
mod registry;
mod runs;
pub mod tasks;

pub use ipc::LedgerEntry;
pub(crate) use ipc::{ipc_call_seen, ipc_record};
pub use messages::InboundOutcome;
pub use outbox::OutboxRow;
pub(crate) use outbox::{insert_outbox, insert_outbox_media};
pub use overview::{NextTask, OutboxBacklog, Overview, ParkedChat, PendingApproval};
pub use registry::ChatRow;
pub(crate) use registry::registered_in;
pub use runs::{RunPlan, RunRecord};

/// The model types the store reads and writes, re-exported for callers that
/// only deal with the store.
pub use crate::model::{Inbound, RegisteredChat, StoredMessage};

/// Numbered migrations, each with the schema version it brings the
/// database to, in increasing order: each step whose version is above the
/// database's runs, in order.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("migrations/0001_chats_messages.sql")),
    (2, include_str!("migrations/0002_outbox_runs.sql")),
    (3, include_str!("migrations/0003_tasks_ipc.sql")),
    (4, include_str!("migrations/0004_jid_aliases.sql")),
    (5, include_str!("migrations/0005_profiles_approvals.sql")),
    (6, include_str!("migrations/0006_media.sql")),
    (7, include_str!("migrations/0007_api_keys.sql")),
    (8, include_str!("migrations/0008_chat_controls.sql")),
    (9, include_str!("migrations/0009_pairings.sql")),
    (10, include_str!("migrations/0010_approval_detail.sql")),
    (11, include_str!("migrations/0011_read_marks.sql")),
];

/// The schema version this code writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

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
    /// The disk (or the file system's quota) is full: nothing new can be
    /// kept until space returns; what is kept stays.
    #[error("the disk holding the database is full")]
    Full,
    #[error("{0}")]
    Conflict(String),
    #[error("cannot create {path} or make it owner-only: {source}")]
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
            Some(rusqlite::ErrorCode::DiskFull) => StoreError::Full,
            _ => StoreError::Sqlite(e),
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

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
    /// Inbound messages waiting to be written together.
    inbound: Arc<Mutex<messages::InboundQueue>>,
    /// Copies the WAL into the database off the writer's path.
    checkpointer: Arc<checkpoint::Checkpointer>,
}

/// `f` inside one immediate transaction on `conn`, committed if it succeeds.
fn in_tx<T>(conn: &mut Connection, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let out = f(&tx)?;
    tx.commit()?;
    Ok(out)
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
            crate::owner_only::dir(dir).map_err(|source| StoreError::Dir {
                path: dir.to_owned(),
                source,
            })?;
        }
        // Messages and keys: owner-only before SQLite writes a byte.
        crate::owner_only::sqlite(path).map_err(|source| StoreError::Dir {
            path: path.to_owned(),
            source,
        })?;
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // NORMAL is durable against a process crash (kill -9) in WAL mode;
        // only a power loss can drop the last transactions.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // A checkpoint copies the WAL's pages into the database and syncs
        // both files: not in the writer's commits but on a thread of its
        // own, every 32 MiB of WAL (see `checkpoint`). Durability is the
        // same: a commit is in the WAL either way.
        let checkpointer = checkpoint::Checkpointer::start(&conn, path)?;
        migrate(&mut conn, path)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            path: Arc::new(path.to_owned()),
            inbound: Arc::default(),
            checkpointer: Arc::new(checkpointer),
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
        let checkpointer = self.checkpointer.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            let out = f(&mut guard);
            checkpointer.after_commit(&guard);
            out
        })
        .await
        .map_err(|e| StoreError::Join(e.to_string()))?
    }

    /// Runs `f` with the connection on this thread when nobody holds it,
    /// else on the blocking pool as [`Store::call`] does. Only for the
    /// few statements on indexed rows a message's path takes (tens of
    /// µs): the hop to the pool and back is two thread wakes, on this
    /// 2-core VM 0.1-0.3 ms, more than such a statement costs.
    pub async fn quick<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        match self.inline(f) {
            Ok(out) => out,
            Err(f) => self.call(f).await,
        }
    }

    /// `f` run here if the connection is free; `f` back if it is not.
    fn inline<T, F>(&self, f: F) -> std::result::Result<Result<T>, F>
    where
        F: FnOnce(&mut Connection) -> Result<T>,
    {
        let Some(mut guard) = self.try_conn() else {
            return Err(f);
        };
        let out = f(&mut guard);
        self.checkpointer.after_commit(&guard);
        Ok(out)
    }

    /// The connection, if nobody holds it now.
    fn try_conn(&self) -> Option<std::sync::MutexGuard<'_, Connection>> {
        match self.conn.try_lock() {
            Ok(g) => Some(g),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// [`Store::tx`] by way of [`Store::quick`].
    pub async fn tx_quick<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T> + Send + 'static,
    {
        self.quick(move |conn| in_tx(conn, f)).await
    }

    /// Runs `f` inside one transaction on the blocking pool.
    pub async fn tx<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T> + Send + 'static,
    {
        self.call(move |conn| in_tx(conn, f)).await
    }

    /// Counts of chats, messages, outbox rows and runs by state.
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

/// Where the copy of a database at schema `version` goes before it is
/// migrated: `<db>.v<version>.bak`.
pub fn upgrade_backup(path: &Path, version: i64) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(format!(".v{version}.bak"));
    PathBuf::from(p)
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
    if found > 0 && found < SCHEMA_VERSION {
        // An older database: copy it whole before the first change, so an
        // upgrade that goes wrong (or a downgrade wanted later) loses
        // nothing. SQLite's online backup, into a 0600 file beside it.
        let copy = upgrade_backup(path, found);
        crate::owner_only::file(&copy).map_err(|source| StoreError::Dir {
            path: copy.clone(),
            source,
        })?;
        conn.backup(rusqlite::MAIN_DB, &copy, None)?;
        tracing::info!(from = found, to = SCHEMA_VERSION, backup = %copy.display(), "migrating the store; its old form is kept as a backup");
    }
    for &(version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > found) {
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
