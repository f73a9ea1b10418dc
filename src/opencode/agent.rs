//! [`Agent`] for [`OpenCode`]: each call of the bridge's agent contract
//! on OpenCode's HTTP API.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::run::{Progress, failure};
use super::{OpenCode, TAIL, events, new_message_id};
use crate::agent::{
    Agent, AgentError, PermissionAsk, PermissionReply, Recovered, RunSpec, ToolCall,
};
use crate::config::ModelRef;
use crate::ids::{PromptId, SessionId};

/// How long a tool request's provenance check waits for the event stream
/// to show its call before asking OpenCode (a REST read takes 7 to 16 ms).
const STREAM_GRACE: Duration = Duration::from_millis(30);

impl Agent for OpenCode {
    fn create_session<'a>(
        &'a self,
        dir: &'a Path,
        title: &'a str,
    ) -> BoxFuture<'a, Result<SessionId, AgentError>> {
        Box::pin(async move { self.note(self.client.create_session(dir, title).await) })
    }

    fn session_exists<'a>(
        &'a self,
        dir: &'a Path,
        id: &'a SessionId,
    ) -> BoxFuture<'a, Result<bool, AgentError>> {
        Box::pin(async move {
            let epoch = self.hub.epoch();
            if epoch != 0 && self.seen_sessions().get(id.as_str()) == Some(&epoch) {
                return Ok(true);
            }
            let exists = self.note(self.client.session_exists(dir, id).await)?;
            let mut seen = self.seen_sessions();
            seen.retain(|_, e| *e == epoch && epoch != 0);
            if exists && epoch != 0 {
                seen.insert(id.as_str().to_owned(), epoch);
            }
            Ok(exists)
        })
    }

    fn delete_session<'a>(
        &'a self,
        dir: &'a Path,
        id: &'a SessionId,
    ) -> BoxFuture<'a, Result<bool, AgentError>> {
        Box::pin(async move {
            self.seen_sessions().remove(id.as_str());
            self.note(self.client.delete_session(dir, id).await)
        })
    }

    fn abort<'a>(
        &'a self,
        dir: &'a Path,
        session: &'a SessionId,
    ) -> BoxFuture<'a, Result<(), AgentError>> {
        Box::pin(async move { self.note(self.client.abort(dir, session).await) })
    }

    fn models<'a>(
        &'a self,
        dir: &'a Path,
    ) -> BoxFuture<'a, Result<crate::agent::Models, AgentError>> {
        Box::pin(async move {
            let mut m = self.note(self.client.models(dir).await)?;
            if let Some(own) = &self.model {
                m.default = Some(format!("{}/{}", own.provider, own.model));
            }
            Ok(m)
        })
    }

    fn context_limit<'a>(&'a self, dir: &'a Path, model: &'a str) -> BoxFuture<'a, Option<u64>> {
        Box::pin(async move { self.models_cached(dir).await?.context.get(model).copied() })
    }

    fn compact<'a>(
        &'a self,
        dir: &'a Path,
        session: &'a SessionId,
        model: &'a ModelRef,
    ) -> BoxFuture<'a, Result<(), AgentError>> {
        Box::pin(async move {
            self.take_answer(session);
            self.note(self.client.summarize(dir, session, model).await)
        })
    }

    fn last_turn<'a>(
        &'a self,
        dir: &'a Path,
        session: &'a SessionId,
    ) -> BoxFuture<'a, Result<Option<crate::agent::TurnInfo>, AgentError>> {
        Box::pin(async move {
            if let Some(turn) = self.take_answer(session) {
                return Ok(Some(turn));
            }
            let tail = self.note(self.client.messages(dir, session, Some(TAIL)).await)?;
            Ok(tail
                .iter()
                .rev()
                .find(|m| m.info.role == "assistant")
                .map(|m| turn_info(&m.info)))
        })
    }

    fn new_prompt_id(&self) -> PromptId {
        new_message_id()
    }

    fn run(&self, spec: RunSpec) -> BoxFuture<'_, Result<String, AgentError>> {
        Box::pin(async move {
            let (_lease, dispose) = self.instances.begin(&spec.dir);
            for dir in dispose {
                // In the background: the run does not wait for it.
                let client = self.client.clone();
                tokio::spawn(async move {
                    match client.dispose_instance(&dir).await {
                        Ok(()) => {
                            crate::metrics::instance_disposed();
                            tracing::info!(dir = %dir.display(), "freed the OpenCode instance of a chat folder not used lately (PB_OPENCODE_MAX_INSTANCES); it boots again at its next run");
                        }
                        Err(e) => {
                            tracing::warn!(dir = %dir.display(), error = %e, "cannot free an OpenCode instance")
                        }
                    }
                });
            }
            self.check_tools(&spec.dir).await;
            crate::stage!("tools_checked", spec.session);
            let result = self.prompt_and_follow(&spec).await;
            match &result {
                Ok(_) => self.model_refused.store(false, Ordering::Relaxed),
                Err(AgentError::ModelRefused(_)) => {
                    self.model_refused.store(true, Ordering::Relaxed)
                }
                Err(AgentError::SessionGone(id)) => {
                    self.seen_sessions().remove(id.as_str());
                }
                Err(_) => {}
            }
            result
        })
    }

    fn recover(&self, spec: RunSpec) -> BoxFuture<'_, Result<Recovered, AgentError>> {
        Box::pin(async move {
            let rx = self.hub.subscribe();
            match self.check(&spec).await? {
                Progress::NotSent => Ok(Recovered::NotSent),
                Progress::Answered(text) => Ok(Recovered::Answered(text)),
                Progress::Failed { refused, why } => Err(failure(refused, why)),
                unfinished => {
                    if self.note(self.client.session_busy(&spec.dir, &spec.session).await)? {
                        return self.follow(&spec, rx, None).await.map(Recovered::Answered);
                    }
                    match unfinished {
                        Progress::Halted(reply) => Ok(Recovered::Answered(reply)),
                        // Unfinished and nobody working on it: the server that
                        // ran it stopped too. The messages go into a fresh run.
                        _ => Err(AgentError::Run(
                            "the interrupted run did not finish (OpenCode restarted?)".into(),
                        )),
                    }
                }
            }
        })
    }

    fn tool_calls<'a>(
        &'a self,
        dir: &'a Path,
        session: &'a SessionId,
        message_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ToolCall>, AgentError>> {
        Box::pin(async move {
            // Only the one message: the whole transcript grows with the chat.
            let message = self.note(self.client.message(dir, session, message_id).await)?;
            Ok(message
                .iter()
                .filter(|m| m.info.id == message_id)
                .flat_map(|m| m.parts.iter())
                .filter(|p| p["type"] == "tool")
                .map(|p| ToolCall {
                    tool: p["tool"].as_str().unwrap_or_default().to_owned(),
                    call_id: p["callID"].as_str().unwrap_or_default().to_owned(),
                    status: p["state"]["status"].as_str().unwrap_or_default().to_owned(),
                    input: p["state"]["input"].clone(),
                })
                .collect())
        })
    }

    fn streamed_tool_call<'a>(
        &'a self,
        session: &'a SessionId,
        message_id: &'a str,
        call_id: &'a str,
    ) -> BoxFuture<'a, Option<ToolCall>> {
        Box::pin(
            self.hub
                .wait_running_call(session.as_str(), message_id, call_id, STREAM_GRACE),
        )
    }

    fn answer_permission<'a>(
        &'a self,
        dir: &'a Path,
        id: &'a str,
        reply: PermissionReply,
        message: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), AgentError>> {
        Box::pin(async move {
            self.note(
                self.client
                    .reply_permission(Some(dir), id, reply.as_str(), message)
                    .await,
            )
        })
    }

    fn pending_permissions<'a>(
        &'a self,
        dir: &'a Path,
    ) -> BoxFuture<'a, Result<Vec<PermissionAsk>, AgentError>> {
        Box::pin(async move {
            let list = self.note(self.client.permissions(dir).await)?;
            Ok(list
                .iter()
                .filter_map(|v| events::permission_ask(v, dir))
                .collect())
        })
    }

    fn session_parent<'a>(
        &'a self,
        dir: &'a Path,
        id: &'a SessionId,
    ) -> BoxFuture<'a, Result<Option<SessionId>, AgentError>> {
        Box::pin(async move { self.note(self.client.session_parent(dir, id).await) })
    }

    fn events(&self) -> tokio::sync::broadcast::Receiver<crate::agent::AgentEvent> {
        self.hub.agent_events()
    }

    fn health_code(&self) -> &'static str {
        if !self.reachable.load(Ordering::Relaxed) {
            "opencode-unreachable"
        } else if !self.hub.connected() {
            "opencode-stream-down"
        } else if self.model_refused.load(Ordering::Relaxed) {
            "opencode-model-refused"
        } else if !self.tools_seen().missing.is_empty() {
            "opencode-tools-missing"
        } else {
            "opencode-ok"
        }
    }
}

/// An assistant message's model, tokens, cost and times.
pub(super) fn turn_info(i: &super::client::MessageInfo) -> crate::agent::TurnInfo {
    let n = |k: &str| i.tokens.as_ref().and_then(|t| t[k].as_u64()).unwrap_or(0);
    crate::agent::TurnInfo {
        model: format!(
            "{}/{}",
            i.provider_id.as_deref().unwrap_or("?"),
            i.model_id.as_deref().unwrap_or("?")
        ),
        input_tokens: n("input"),
        output_tokens: n("output"),
        reasoning_tokens: n("reasoning"),
        cache_read_tokens: i
            .tokens
            .as_ref()
            .and_then(|t| t["cache"]["read"].as_u64())
            .unwrap_or(0),
        cost: i.cost.unwrap_or(0.0),
        started_ms: i.time.created.unwrap_or(0),
        finished_ms: i.time.completed,
    }
}
