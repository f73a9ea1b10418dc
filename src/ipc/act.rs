//! Acting on one request: who calls (identity), whether OpenCode really
//! runs that call (provenance), then the tool and its ledger row in one
//! transaction.

use std::sync::atomic::Ordering;

use super::protocol::Request;
use super::{Acted, Ipc, Response, Skip};
use crate::agent::{AgentError, ToolCall};
use crate::ids::SessionId;
use crate::store::LedgerEntry;
use crate::tools::{self, ToolEnv};

impl Ipc {
    /// Identity, provenance, then the action and its ledger row in one
    /// transaction. `leftover`: the request file was there before this
    /// bridge started, so its call may have finished while it was down.
    pub(super) async fn act(&self, req: &Request, leftover: bool) -> Result<Acted, Skip> {
        let store = &self.deps.store;
        // These go into OpenCode URLs: only OpenCode's own id shapes.
        let oc_id = |id: &str, prefix: &str| {
            id.starts_with(prefix)
                && id.len() <= 64
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        };
        if !oc_id(&req.context.session_id, "ses_") || !oc_id(&req.context.message_id, "msg_") {
            return Ok(Acted::Refused(
                "malformed",
                "session_id or message_id is not an OpenCode id".into(),
            ));
        }
        let session = SessionId::new(&req.context.session_id);
        let chat = store
            .chat_for_session(&session)
            .await
            .map_err(|e| Skip::Later(e.to_string()))?;
        let Some(chat) = chat else {
            let forged = self.forged.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(id = %req.id, session = %session, forged_total = forged, "IPC request from a session PocketBrain does not know: refused as forged");
            return Ok(Acted::Refused(
                "forged",
                "this session does not belong to a PocketBrain chat".into(),
            ));
        };
        let Some(caller) = store
            .registered(&chat)
            .await
            .map_err(|e| Skip::Later(e.to_string()))?
        else {
            return Ok(Acted::Answer(Response::error(
                &req.id,
                "unauthorized",
                format!("{chat} is no longer registered"),
            )));
        };
        let dir = crate::workspace::chat_dir(&self.deps.workspace, &caller)
            .map_err(|e| Skip::Later(e.to_string()))?;
        crate::stage!("tool_identified", req.id);

        // Provenance: the call must exist in OpenCode, as described. First
        // what the event stream showed running (no request to OpenCode;
        // waiting a few ms for a stream that is behind the request);
        // when it showed nothing that matches, OpenCode's own record of the
        // message. A leftover request's call may have finished meanwhile,
        // which only the record can show.
        let streamed = match req.context.call_id.as_deref() {
            Some(call_id) if !leftover => {
                self.deps
                    .agent
                    .streamed_tool_call(&session, &req.context.message_id, call_id)
                    .await
            }
            _ => None,
        }
        .filter(|c| matching_call(std::slice::from_ref(c), req, false).is_some());
        let via_stream = streamed.is_some();
        let calls = match streamed {
            Some(c) => vec![c],
            None => match self
                .deps
                .agent
                .tool_calls(&dir, &session, &req.context.message_id)
                .await
            {
                Ok(c) => c,
                Err(AgentError::SessionGone(_)) => Vec::new(),
                Err(e) => return Err(Skip::Later(format!("cannot verify with OpenCode: {e}"))),
            },
        };
        let Some(call) = matching_call(&calls, req, leftover) else {
            let forged = self.forged.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(
                id = %req.id, chat = %chat, session = %session, tool = %req.tool,
                call = ?req.context.call_id, leftover, forged_total = forged,
                "IPC request has no running tool call with this call id and these arguments in OpenCode: refused as forged"
            );
            return Ok(Acted::Refused(
                "forged",
                "no running tool call with this call id and these arguments in this session: requests must come from the PocketBrain tools".into(),
            ));
        };

        if via_stream {
            crate::stage!("tool_checked_stream", req.id);
        } else {
            crate::stage!("tool_checked_http", req.id);
        }

        let tz = self.deps.tz;
        let deps = self.deps.clone();
        let (req2, caller2, call_id) = (req.clone(), caller.clone(), call.call_id.clone());
        let outcome = store
            .tx(move |tx| {
                if crate::store::ipc_call_seen(tx, &req2.context.session_id, &call_id)? {
                    return Ok(None);
                }
                let outgoing = |t: &str| deps.persona.reply(t);
                let new_id = || deps.channel.new_message_id();
                let env = ToolEnv {
                    tz,
                    now: chrono::Utc::now(),
                    outgoing: &outgoing,
                    new_message_id: &new_id,
                    workspace: Some(&deps.workspace),
                    media_limits: deps.media_limits,
                    max_tasks_per_chat: deps.max_tasks_per_chat,
                };
                let (resp, effects) = match tools::execute(
                    tx,
                    tools::Caller::Chat(&caller2),
                    &req2.tool,
                    &req2.args,
                    &env,
                ) {
                    Ok((result, effects)) => (Response::ok(&req2.id, result), effects),
                    // A passing database failure is not the answer: roll
                    // back (nothing half-done stays) and try again later.
                    Err(e) if e.code == tools::STORAGE => {
                        return Err(crate::store::StoreError::Conflict(e.message));
                    }
                    Err(e) => (
                        Response::error(&req2.id, e.code, e.message),
                        tools::Effects::default(),
                    ),
                };
                let response_json = serde_json::to_string(&resp).unwrap_or_default();
                crate::store::ipc_record(
                    tx,
                    &LedgerEntry {
                        id: &req2.id,
                        session_id: &req2.context.session_id,
                        call_id: &call_id,
                        tool: &req2.tool,
                        chat: &caller2.jid,
                        ok: resp.ok,
                        response_json: &response_json,
                    },
                )?;
                Ok(Some((resp, effects)))
            })
            .await
            .map_err(|e| Skip::Later(e.to_string()))?;
        crate::stage!("tool_committed", req.id);
        let Some((resp, effects)) = outcome else {
            // The same request, carried both ways (the plugin fell back to
            // a file while the socket's answer was on its way): its answer.
            if let Some(recorded) = self.recorded(&req.id).await? {
                return Ok(Acted::Answer(recorded));
            }
            let forged = self.forged.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(id = %req.id, call = %call.call_id, forged_total = forged, "a second request for an already handled tool call: refused as forged");
            return Ok(Acted::Refused(
                "forged",
                "this tool call was already handled".into(),
            ));
        };
        tracing::info!(id = %req.id, chat = %chat, tool = %req.tool, call = %call.call_id, from_plugin = req.context.call_id.is_some(), ok = resp.ok, "IPC request handled");
        if effects.outbox {
            self.deps.outbox_wake.notify_one();
        }
        if effects.tasks {
            self.deps.tasks_wake.notify_one();
        }
        Ok(Acted::Answer(resp))
    }
}

/// The tool call in OpenCode that this request stands for: same tool, the
/// request's call id in the given message, and the arguments the model
/// gave (every argument the request carries equal to the call's input, and
/// no tool argument in the input that the request lacks). The call must be
/// running, as it is while the plugin waits for the answer; a finished one
/// (completed or error) is accepted only for a request left from before
/// this bridge started (`leftover`), whose call may have timed out
/// meanwhile.
pub(super) fn matching_call<'a>(
    calls: &'a [ToolCall],
    req: &Request,
    leftover: bool,
) -> Option<&'a ToolCall> {
    let tool = format!("pocketbrain_{}", req.tool);
    let spec = tools::spec(&req.tool)?;
    let call_id = req.context.call_id.as_deref()?;
    calls.iter().find(|c| {
        let status_ok = match c.status.as_str() {
            "running" => true,
            "completed" | "error" => leftover,
            _ => false,
        };
        c.tool == tool
            && c.call_id == call_id
            && status_ok
            && tools::same_call(spec, &req.args, &c.input)
    })
}
