//! The IPC ledger: one row per tool call the bridge acted on, with the
//! response it gave. It makes tool calls idempotent (a request seen again is
//! answered from the ledger, a second request for the same call is refused)
//! and tells a run whether its own tool calls sent anything. The store keeps
//! plain values; the IPC module owns the request and response formats.

use rusqlite::{Connection, OptionalExtension, params};

use super::{Result, Store, now_ms};
use crate::ids::{ChatJid, SessionId};

impl Store {
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

    /// The response recorded for an IPC request id, if it was acted on, as
    /// the JSON it was stored as.
    pub async fn ipc_response(&self, id: &str) -> Result<Option<String>> {
        let id = id.to_owned();
        self.call(move |c| {
            Ok(c.query_row(
                "SELECT response FROM ipc_requests WHERE id = ?1",
                params![id],
                |r| r.get::<_, String>(0),
            )
            .optional()?)
        })
        .await
    }
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

/// One ledger row: an acted-on IPC request and the response it got.
#[derive(Debug, Clone, Copy)]
pub struct LedgerEntry<'a> {
    /// The request id (`req_...`).
    pub id: &'a str,
    /// The OpenCode session the tool call was made in.
    pub session_id: &'a str,
    /// The tool call's id in that session.
    pub call_id: &'a str,
    /// Tool name without the `pocketbrain_` prefix.
    pub tool: &'a str,
    /// The chat the call was made for.
    pub chat: &'a ChatJid,
    /// Whether the response was a success.
    pub ok: bool,
    /// The response, serialized as it is answered again.
    pub response_json: &'a str,
}

/// Records an acted-on IPC request and its response.
pub(crate) fn ipc_record(c: &Connection, e: &LedgerEntry<'_>) -> Result<()> {
    c.execute(
        "INSERT INTO ipc_requests (id, session_id, call_id, tool, chat, ok, response, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            e.id,
            e.session_id,
            e.call_id,
            e.tool,
            e.chat.as_str(),
            e.ok,
            e.response_json,
            now_ms()
        ],
    )?;
    Ok(())
}
