//! Read-only overviews of the store for `/status`, `pocketbrain status`
//! and the metrics: registered chats with their last activity, parked
//! chats with their reasons, the outbox backlog, the next scheduled runs
//! and the approvals waiting for an answer, read in one go.

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::{Result, Store, registered_in};
use crate::ids::ChatJid;
use crate::model::RegisteredChat;

/// A chat whose runs are parked, with why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ParkedChat {
    pub chat: String,
    pub attempts: i64,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OutboxBacklog {
    pub pending: i64,
    pub failed: i64,
    /// Unix ms at which the oldest pending row was queued.
    pub oldest_pending_ms: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NextTask {
    pub id: String,
    pub chat: String,
    pub next_run_ms: i64,
    pub schedule: String,
}

/// An approval the owner has not answered yet.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingApproval {
    pub id: String,
    pub chat: String,
    pub what: String,
    pub asked_at_ms: i64,
}

/// What the database knows for status, in one read.
#[derive(Debug, Clone)]
pub struct Overview {
    /// Registered chats with the Unix ms of their last message, most
    /// recently active first.
    pub chats: Vec<(RegisteredChat, Option<i64>)>,
    pub parked: Vec<ParkedChat>,
    pub outbox: OutboxBacklog,
    pub next_tasks: Vec<NextTask>,
    /// Approvals waiting for the owner's answer, oldest first.
    pub approvals: Vec<PendingApproval>,
}

/// Approvals waiting for the owner's answer, oldest first: the code, the
/// asking chat, what it wants (permission and patterns).
fn pending_approvals(c: &Connection) -> rusqlite::Result<Vec<PendingApproval>> {
    let mut stmt = c.prepare_cached(
        "SELECT code, chat, permission, patterns, created_at FROM approvals
         WHERE state = 'pending' ORDER BY id",
    )?;
    stmt.query_map([], |r| {
        let patterns: Vec<String> =
            serde_json::from_str(&r.get::<_, String>(3)?).unwrap_or_default();
        Ok(PendingApproval {
            id: r.get(0)?,
            chat: r.get(1)?,
            what: format!("{}: {}", r.get::<_, String>(2)?, patterns.join(", ")),
            asked_at_ms: r.get(4)?,
        })
    })?
    .collect()
}

const REGISTERED: &str = "SELECT r.jid, c.last_activity FROM registered_chats r
     LEFT JOIN chats c ON c.jid = r.jid ORDER BY c.last_activity DESC, r.jid";
const PARKED: &str = "SELECT chat, attempts, reason FROM runs WHERE state = 'parked' ORDER BY chat";
const BACKLOG: &str = "SELECT (SELECT COUNT(*) FROM outbox WHERE state = 'pending'),
            (SELECT COUNT(*) FROM outbox WHERE state = 'failed'),
            (SELECT MIN(created_at) FROM outbox WHERE state = 'pending')";
const NEXT: &str = "SELECT id, chat, next_run, schedule_type || ' ' || schedule_value FROM tasks
     WHERE status = 'active' AND next_run IS NOT NULL ORDER BY next_run, id LIMIT ?1";
const OUTBOX_BY_STATE: &str = "SELECT state, COUNT(*) FROM outbox GROUP BY state";

impl Store {
    /// The database half of status, in one read; at most `next_tasks`
    /// upcoming task runs.
    pub async fn overview(&self, next_tasks: usize) -> Result<Overview> {
        self.call(move |c| {
            let regs: Vec<(String, Option<i64>)> = c
                .prepare(REGISTERED)?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            let mut chats = Vec::with_capacity(regs.len());
            for (jid, last) in regs {
                let Ok(parsed) = ChatJid::parse(&jid) else {
                    continue;
                };
                let Some(reg) = registered_in(c, &parsed)? else {
                    continue;
                };
                chats.push((reg, last));
            }
            let parked = c
                .prepare(PARKED)?
                .query_map([], |r| {
                    Ok(ParkedChat {
                        chat: r.get(0)?,
                        attempts: r.get(1)?,
                        reason: r.get(2)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            let outbox = c.query_row(BACKLOG, [], |r| {
                Ok(OutboxBacklog {
                    pending: r.get(0)?,
                    failed: r.get(1)?,
                    oldest_pending_ms: r.get(2)?,
                })
            })?;
            let next_tasks = c
                .prepare(NEXT)?
                .query_map(params![next_tasks as i64], |r| {
                    Ok(NextTask {
                        id: r.get(0)?,
                        chat: r.get(1)?,
                        next_run_ms: r.get(2)?,
                        schedule: r.get(3)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(Overview {
                chats,
                parked,
                outbox,
                next_tasks,
                approvals: pending_approvals(c)?,
            })
        })
        .await
    }

    /// Outbox rows by state, for the metrics.
    pub async fn outbox_by_state(&self) -> Result<Vec<(String, i64)>> {
        self.call(|c| {
            Ok(c.prepare(OUTBOX_BY_STATE)?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?)
        })
        .await
    }
}

/// The schema version of the database at `c` (`PRAGMA user_version`).
pub(crate) fn schema_version(c: &Connection) -> rusqlite::Result<i64> {
    c.query_row("PRAGMA user_version", [], |r| r.get(0))
        .optional()
        .map(Option::unwrap_or_default)
}
