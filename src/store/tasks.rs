//! Task rows. Functions take a `&Connection` so callers can combine them in
//! one transaction (a tool's action and its IPC ledger entry; a scheduler
//! claim and its run record).

use rusqlite::{Connection, OptionalExtension, params};

use super::{Result, jid};
use crate::ids::ChatJid;

/// A scheduled task.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Task {
    pub id: String,
    pub chat: ChatJid,
    pub prompt: String,
    pub schedule_type: String,
    pub schedule_value: String,
    pub context_mode: String,
    pub tz: String,
    pub status: String,
    pub status_reason: Option<String>,
    /// Unix ms; `None` unless active.
    pub next_run: Option<i64>,
    pub created_at: i64,
}

const COLUMNS: &str = "id, chat, prompt, schedule_type, schedule_value, context_mode, tz, status, status_reason, next_run, created_at";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Task> {
    Ok(Task {
        id: r.get(0)?,
        chat: jid(r.get(1)?)?,
        prompt: r.get(2)?,
        schedule_type: r.get(3)?,
        schedule_value: r.get(4)?,
        context_mode: r.get(5)?,
        tz: r.get(6)?,
        status: r.get(7)?,
        status_reason: r.get(8)?,
        next_run: r.get(9)?,
        created_at: r.get(10)?,
    })
}

pub fn insert(c: &Connection, t: &Task) -> Result<()> {
    c.execute(
        &format!("INSERT INTO tasks ({COLUMNS}, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11)"),
        params![
            t.id,
            t.chat.as_str(),
            t.prompt,
            t.schedule_type,
            t.schedule_value,
            t.context_mode,
            t.tz,
            t.status,
            t.status_reason,
            t.next_run,
            t.created_at
        ],
    )?;
    Ok(())
}

pub fn get(c: &Connection, id: &str) -> Result<Option<Task>> {
    Ok(c.query_row(
        &format!("SELECT {COLUMNS} FROM tasks WHERE id = ?1"),
        params![id],
        row,
    )
    .optional()?)
}

/// Tasks of one chat, or of all chats, oldest first.
pub fn list(c: &Connection, chat: Option<&ChatJid>) -> Result<Vec<Task>> {
    let mut stmt = c.prepare(&format!(
        "SELECT {COLUMNS} FROM tasks WHERE ?1 IS NULL OR chat = ?1 ORDER BY created_at, id"
    ))?;
    let rows = stmt
        .query_map(params![chat.map(ChatJid::as_str)], row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// Sets status, reason and next run (`updated_at` too).
pub fn set_state(
    c: &Connection,
    id: &str,
    status: &str,
    reason: Option<&str>,
    next_run: Option<i64>,
) -> Result<bool> {
    Ok(c.execute(
        "UPDATE tasks SET status = ?2, status_reason = ?3, next_run = ?4, updated_at = ?5 WHERE id = ?1",
        params![id, status, reason, next_run, super::now_ms()],
    )? > 0)
}

pub fn delete(c: &Connection, id: &str) -> Result<bool> {
    Ok(c.execute("DELETE FROM tasks WHERE id = ?1", params![id])? > 0)
}

/// The active task due soonest.
pub fn next_due(c: &Connection) -> Result<Option<Task>> {
    Ok(c
        .query_row(
            &format!("SELECT {COLUMNS} FROM tasks WHERE status = 'active' AND next_run IS NOT NULL ORDER BY next_run, id LIMIT 1"),
            [],
            row,
        )
        .optional()?)
}
