//! Task rows. Functions take a `&Connection` so callers can combine them in
//! one transaction (a tool's action and its IPC ledger entry; a scheduler
//! claim and its run record).
//!
//! Schedule arithmetic is not done here: [`claim_due`] asks its caller for
//! each due task's next run, so the store never parses a schedule.

use rusqlite::{Connection, OptionalExtension, params};

use super::{Result, jid};
use crate::ids::ChatJid;
use crate::model::{ContextMode, ScheduleKind, TaskRunStatus, TaskStatus};

/// A scheduled task.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Task {
    pub id: String,
    pub chat: ChatJid,
    pub prompt: String,
    pub schedule_type: ScheduleKind,
    pub schedule_value: String,
    pub context_mode: ContextMode,
    pub tz: String,
    pub status: TaskStatus,
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
    status: TaskStatus,
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

/// A task run claimed by the scheduler.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TaskRun {
    pub id: i64,
    pub task_id: String,
    pub chat: ChatJid,
    pub due_at: i64,
    pub queued_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub status: TaskRunStatus,
    pub session_id: Option<String>,
    pub prompt_id: Option<String>,
    pub result: Option<String>,
    pub error: Option<String>,
}

const RUN_COLUMNS: &str = "id, task_id, chat, due_at, queued_at, started_at, finished_at, status, session_id, prompt_id, result, error";

fn run_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TaskRun> {
    Ok(TaskRun {
        id: r.get(0)?,
        task_id: r.get(1)?,
        chat: jid(r.get(2)?)?,
        due_at: r.get(3)?,
        queued_at: r.get(4)?,
        started_at: r.get(5)?,
        finished_at: r.get(6)?,
        status: r.get(7)?,
        session_id: r.get(8)?,
        prompt_id: r.get(9)?,
        result: r.get(10)?,
        error: r.get(11)?,
    })
}

/// What one claim did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// A run was queued for the chat.
    Queued {
        task_id: String,
        chat: ChatJid,
        due_at: i64,
    },
    /// The task was paused instead (its chat is gone, or its schedule broken).
    Paused { task_id: String, reason: String },
}

/// Claims every active task due at `now_ms`: in one transaction, advances
/// its next run (or completes it) and queues a run record. A task whose
/// `next_run` changed meanwhile is left alone, so no due time fires twice.
///
/// `next_after(task, due_at)` computes the task's next run (Unix ms) after
/// the run due at `due_at`, `None` when the schedule has no further run,
/// or `Err` with the reason its stored schedule is no longer valid.
pub fn claim_due(
    c: &Connection,
    now_ms: i64,
    next_after: impl Fn(&Task, i64) -> std::result::Result<Option<i64>, String>,
) -> Result<Vec<Claim>> {
    let due: Vec<Task> = {
        let mut stmt = c.prepare(&format!(
            "SELECT {COLUMNS} FROM tasks WHERE status = 'active' AND next_run IS NOT NULL AND next_run <= ?1 ORDER BY next_run, id"
        ))?;
        stmt.query_map(params![now_ms], row)?
            .collect::<rusqlite::Result<Vec<_>>>()?
    };
    let mut claims = Vec::new();
    for t in due {
        let due_at = t.next_run.unwrap_or(now_ms);
        let pause = |reason: String| -> Result<Claim> {
            c.execute(
                "UPDATE tasks SET status = 'paused', status_reason = ?2, next_run = NULL, updated_at = ?3 WHERE id = ?1",
                params![t.id, reason, now_ms],
            )?;
            Ok(Claim::Paused {
                task_id: t.id.clone(),
                reason,
            })
        };
        if super::registered_in(c, &t.chat)?.is_none() {
            claims.push(pause(format!("chat {} is no longer registered", t.chat))?);
            continue;
        }
        let next = match next_after(&t, due_at) {
            Ok(next) => next,
            Err(e) => {
                claims.push(pause(format!("schedule no longer valid: {e}"))?);
                continue;
            }
        };
        let status = if next.is_some() {
            TaskStatus::Active
        } else {
            TaskStatus::Completed
        };
        let changed = c.execute(
            "UPDATE tasks SET next_run = ?2, status = ?3, status_reason = NULL, updated_at = ?4
             WHERE id = ?1 AND status = 'active' AND next_run = ?5",
            params![t.id, next, status, now_ms, due_at],
        )?;
        if changed == 0 {
            continue;
        }
        c.execute(
            "INSERT INTO task_runs (task_id, chat, due_at, queued_at, status) VALUES (?1, ?2, ?3, ?4, 'queued')",
            params![t.id, t.chat.as_str(), due_at, now_ms],
        )?;
        claims.push(Claim::Queued {
            task_id: t.id.clone(),
            chat: t.chat.clone(),
            due_at,
        });
    }
    Ok(claims)
}

/// The chat's oldest task run that is queued or was left running.
pub fn next_run_for(c: &Connection, chat: &ChatJid) -> Result<Option<TaskRun>> {
    Ok(c
        .query_row(
            &format!("SELECT {RUN_COLUMNS} FROM task_runs WHERE chat = ?1 AND status IN ('queued', 'running') ORDER BY id LIMIT 1"),
            params![chat.as_str()],
            run_row,
        )
        .optional()?)
}

impl super::Store {
    /// Whether the chat has a task run queued (or interrupted) still.
    pub async fn has_task_run_waiting(&self, chat: &ChatJid) -> Result<bool> {
        let chat = chat.clone();
        self.call(move |c| {
            Ok(c.query_row(
                "SELECT EXISTS (SELECT 1 FROM task_runs WHERE chat = ?1 AND status IN ('queued', 'running'))",
                params![chat.as_str()],
                |r| r.get(0),
            )?)
        })
        .await
    }
}

/// Chats with task runs waiting (start-up scan).
pub fn chats_with_open_runs(c: &Connection) -> Result<Vec<ChatJid>> {
    let mut stmt =
        c.prepare("SELECT DISTINCT chat FROM task_runs WHERE status IN ('queued', 'running')")?;
    let rows = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter().map(|j| Ok(jid(j)?)).collect()
}

/// A chat that is no longer registered: its open task runs end with that
/// reason and its active tasks are paused with it, so nothing waits for a
/// chat the bridge will not run. Returns (runs ended, tasks paused).
pub fn abandon_unregistered(c: &Connection, chat: &ChatJid) -> Result<(usize, usize)> {
    let now = super::now_ms();
    let reason = format!("chat {chat} is no longer registered");
    let runs = c.execute(
        "UPDATE task_runs SET status = 'error', finished_at = ?2, error = ?3
         WHERE chat = ?1 AND status IN ('queued', 'running')",
        params![chat.as_str(), now, reason],
    )?;
    let paused = c.execute(
        "UPDATE tasks SET status = 'paused', status_reason = ?2, next_run = NULL, updated_at = ?3
         WHERE chat = ?1 AND status = 'active'",
        params![chat.as_str(), reason, now],
    )?;
    Ok((runs, paused))
}

/// Marks a run started with its session and prompt.
pub fn start_run(c: &Connection, run: i64, session: &str, prompt: &str) -> Result<()> {
    c.execute(
        "UPDATE task_runs SET status = 'running', started_at = ?2, session_id = ?3, prompt_id = ?4 WHERE id = ?1",
        params![run, super::now_ms(), session, prompt],
    )?;
    Ok(())
}

/// Ends a run: `Ok(result)` or `Err(error)`.
pub fn finish_run(
    c: &Connection,
    run: i64,
    outcome: std::result::Result<&str, &str>,
) -> Result<()> {
    let (status, result, error) = match outcome {
        Ok(r) => (TaskRunStatus::Ok, Some(r), None),
        Err(e) => (TaskRunStatus::Error, None, Some(e)),
    };
    c.execute(
        "UPDATE task_runs SET status = ?2, finished_at = ?3, result = ?4, error = ?5 WHERE id = ?1",
        params![run, status, super::now_ms(), result, error],
    )?;
    Ok(())
}

/// The last `limit` runs of a task, newest first.
pub fn runs(c: &Connection, task_id: &str, limit: usize) -> Result<Vec<TaskRun>> {
    let mut stmt = c.prepare(&format!(
        "SELECT {RUN_COLUMNS} FROM task_runs WHERE task_id = ?1 ORDER BY id DESC LIMIT ?2"
    ))?;
    let rows = stmt
        .query_map(params![task_id, limit as i64], run_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

/// Remembers an isolated run's session, so its tool calls map to the chat.
pub fn add_task_session(
    c: &Connection,
    session: &str,
    chat: &ChatJid,
    task_id: &str,
) -> Result<()> {
    c.execute(
        "INSERT OR REPLACE INTO task_sessions (session_id, chat, task_id, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![session, chat.as_str(), task_id, super::now_ms()],
    )?;
    Ok(())
}

/// Whether `chat` has an active task whose prompt starts with `prefix`.
pub fn active_with_prompt_prefix(c: &Connection, chat: &ChatJid, prefix: &str) -> Result<bool> {
    Ok(c.query_row(
        "SELECT EXISTS (SELECT 1 FROM tasks WHERE chat = ?1 AND status = 'active' AND prompt LIKE ?2)",
        params![chat.as_str(), format!("{prefix}%")],
        |r| r.get(0),
    )?)
}
