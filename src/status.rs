//! What the bridge is doing, for `/status` and `pocketbrain status`.
//!
//! Two halves: what the database knows ([`from_store`], one read on the
//! store's connection: registered chats with their last activity, parked
//! chats with their reasons, the outbox backlog, the next scheduled runs,
//! approvals waiting for an answer) and what only the running process
//! knows ([`Live`]: the link, OpenCode, the queue). The bridge serves both
//! at `/status`; the CLI asks it, and when no bridge answers it reads the
//! database half itself and says the bridge is not running.

use serde::{Deserialize, Serialize};

use crate::model::RegisteredChat;
pub use crate::store::{NextTask, OutboxBacklog, ParkedChat, PendingApproval};
use crate::store::{Store, StoreError};

/// How many upcoming task runs status lists.
pub const NEXT_TASKS: usize = 5;

/// Everything status shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    /// The running process's view; `None` when no bridge answered.
    pub live: Option<Live>,
    pub chats: Vec<ChatStatus>,
    pub parked: Vec<ParkedChat>,
    pub outbox: OutboxBacklog,
    pub next_tasks: Vec<NextTask>,
    /// Approvals waiting for the owner's answer, oldest first.
    pub approvals: Vec<PendingApproval>,
}

/// What only the running bridge knows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Live {
    /// `ok` or `degraded`, as `/health` says.
    pub status: String,
    pub codes: Vec<String>,
    pub version: String,
    pub link: LinkState,
    /// OpenCode's health code (`opencode-ok`, `opencode-unreachable`, ...).
    pub opencode: String,
    /// OpenCode's base URL.
    pub opencode_url: String,
    pub runs_active: usize,
    /// Chats that are not idle, with their queue state.
    pub queue: Vec<QueueEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LinkState {
    pub up: bool,
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueueEntry {
    pub chat: String,
    pub phase: serde_json::Value,
}

/// A registered chat.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatStatus {
    pub jid: String,
    pub name: String,
    pub folder: String,
    pub main: bool,
    /// The chat's profile: [`profile_of`] its registration.
    pub profile: Option<String>,
    /// Unix ms of the chat's last message, if it had one.
    pub last_activity_ms: Option<i64>,
}

/// The profile status shows for a chat.
pub fn profile_of(reg: &RegisteredChat) -> Option<String> {
    Some(reg.profile.to_string())
}

/// The database half of status, in one read.
pub async fn from_store(store: &Store) -> Result<Status, StoreError> {
    let o = store.overview(NEXT_TASKS).await?;
    let chats = o
        .chats
        .into_iter()
        .map(|(reg, last)| ChatStatus {
            profile: profile_of(&reg),
            jid: reg.jid.to_string(),
            name: reg.name,
            folder: reg.folder.as_str().to_owned(),
            main: reg.is_main,
            last_activity_ms: last,
        })
        .collect();
    Ok(Status {
        live: None,
        chats,
        parked: o.parked,
        outbox: o.outbox,
        next_tasks: o.next_tasks,
        approvals: o.approvals,
    })
}

/// Outbox rows by state, for the metrics.
pub async fn outbox_by_state(store: &Store) -> Result<Vec<(String, i64)>, StoreError> {
    store.outbox_by_state().await
}

/// Status for a person: one line per fact, times in `tz`.
pub fn render_text(s: &Status, tz: chrono_tz::Tz) -> String {
    use std::fmt::Write;
    let when = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .map(|t| t.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_else(|| "?".into())
    };
    let mut o = String::new();
    match &s.live {
        Some(l) => {
            let _ = writeln!(o, "bridge:   running ({}), version {}", l.status, l.version);
            let _ = writeln!(
                o,
                "link:     {} ({})",
                l.link.code,
                if l.link.message.is_empty() {
                    if l.link.up { "up" } else { "down" }
                } else {
                    &l.link.message
                }
            );
            let _ = writeln!(o, "opencode: {} at {}", l.opencode, l.opencode_url);
            let _ = writeln!(o, "runs:     {} active", l.runs_active);
        }
        None => {
            let _ = writeln!(o, "bridge:   not running (no answer on its HTTP address)");
        }
    }
    let _ = writeln!(
        o,
        "outbox:   {} pending{}, {} failed",
        s.outbox.pending,
        s.outbox
            .oldest_pending_ms
            .map(|ms| format!(" (oldest queued {})", when(ms)))
            .unwrap_or_default(),
        s.outbox.failed
    );
    let _ = writeln!(o, "chats:    {} registered", s.chats.len());
    for c in &s.chats {
        let phase = s
            .live
            .as_ref()
            .and_then(|l| l.queue.iter().find(|q| q.chat == c.jid))
            .and_then(|q| q.phase["state"].as_str().map(str::to_owned));
        let _ = writeln!(
            o,
            "  {:<36} {:<20} {:<6} profile {:<10} last {}{}",
            c.jid,
            c.name,
            if c.main { "main" } else { "" },
            c.profile.as_deref().unwrap_or("-"),
            c.last_activity_ms.map(when).unwrap_or_else(|| "-".into()),
            phase.map(|p| format!("  [{p}]")).unwrap_or_default()
        );
    }
    if !s.parked.is_empty() {
        let _ = writeln!(
            o,
            "parked:   {} (the chat's next message tries again)",
            s.parked.len()
        );
        for p in &s.parked {
            let _ = writeln!(
                o,
                "  {} after {} attempts: {}",
                p.chat,
                p.attempts,
                p.reason.as_deref().unwrap_or("?")
            );
        }
    }
    let _ = writeln!(o, "next tasks: {}", s.next_tasks.len());
    for t in &s.next_tasks {
        let _ = writeln!(
            o,
            "  {} {} in {} ({})",
            when(t.next_run_ms),
            t.id,
            t.chat,
            t.schedule
        );
    }
    let _ = writeln!(o, "approvals waiting: {}", s.approvals.len());
    for a in &s.approvals {
        let _ = writeln!(
            o,
            "  {} {} asked {}: {}",
            a.id,
            a.chat,
            when(a.asked_at_ms),
            a.what
        );
    }
    o
}
