//! The agent seam: what the bridge needs from an agent runtime. OpenCode
//! implements it (`crate::opencode`); the queue and the bridge only see this.

use std::path::PathBuf;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::broadcast;

use crate::ids::{PromptId, SessionId};

/// Agent failures, each saying whether a retry can help.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The agent server could not be reached or broke the connection.
    #[error("OpenCode unreachable: {0}")]
    Unreachable(String),
    /// The session no longer exists; a new one must be created.
    #[error("OpenCode session {0} is gone")]
    SessionGone(SessionId),
    /// The model (or the run) failed; OpenCode reported it.
    #[error("agent run failed: {0}")]
    Run(String),
    /// The model provider refused the key or does not know the model: the
    /// owner must fix the model settings; retrying cannot help until then.
    #[error("{0}")]
    ModelRefused(String),
    /// The run took longer than allowed and was aborted.
    #[error("agent run timed out after {0:?} and was aborted")]
    Timeout(Duration),
    /// OpenCode answered with an unexpected status.
    #[error("OpenCode answered {status} to {what}: {body}")]
    Http {
        what: &'static str,
        status: u16,
        body: String,
    },
    /// OpenCode answered with a body we could not read.
    #[error("unexpected OpenCode response to {what}: {why}")]
    Protocol { what: &'static str, why: String },
}

/// One prompt to run in a session.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// The chat's directory (OpenCode instance).
    pub dir: PathBuf,
    pub session: SessionId,
    pub prompt_id: PromptId,
    pub text: String,
    /// Files sent along as prompt parts (the batch's images).
    pub files: Vec<crate::media::FilePart>,
    pub timeout: Duration,
    /// The agent definition (chat profile) the prompt runs with; `None`:
    /// the server's default agent.
    pub agent: Option<String>,
    /// The chat's own model (`/model`); `None`: `PB_OPENCODE_MODEL`, else the
    /// server's default.
    pub model: Option<crate::config::ModelRef>,
    /// Someone follows the answer's text as it is produced (an API
    /// conversation): the run then ends only once the event stream has
    /// shown the whole answer (bounded), so every delta comes before the
    /// reply and none is left to show up in the next turn.
    pub streamed: bool,
}

/// The models a runtime offers, as `provider/model`, and the one a prompt
/// without a model uses.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Models {
    pub available: Vec<String>,
    pub default: Option<String>,
    /// Each model's context window in tokens, where the runtime says.
    pub context: std::collections::HashMap<String, u64>,
}

/// A session's last finished turn, as the runtime reports it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TurnInfo {
    /// `provider/model`.
    pub model: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub reasoning_tokens: u64,
    pub cache_read_tokens: u64,
    pub cost: f64,
    pub started_ms: i64,
    pub finished_ms: Option<i64>,
}

/// A permission request of the agent runtime: may a tool call go ahead?
#[derive(Debug, Clone, PartialEq)]
pub struct PermissionAsk {
    /// The runtime's request id (answered with it).
    pub id: String,
    pub session: SessionId,
    /// The instance (chat folder) the request lives in.
    pub dir: PathBuf,
    /// `bash`, `edit`, `webfetch`, `external_directory`, ...
    pub permission: String,
    /// What exactly: the commands or paths.
    pub patterns: Vec<String>,
    /// The patterns the runtime suggests for allowing it for good.
    pub always: Vec<String>,
    /// For a person: the whole command, or the patterns joined.
    pub detail: String,
}

/// An answer to a [`PermissionAsk`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PermissionReply {
    Once,
    Reject,
}

impl PermissionReply {
    pub fn as_str(self) -> &'static str {
        match self {
            PermissionReply::Once => "once",
            PermissionReply::Reject => "reject",
        }
    }
}

/// What the approvals service hears from the runtime.
#[derive(Debug, Clone)]
pub enum AskEvent {
    Asked(PermissionAsk),
    /// Events may have been missed (stream reopened): list what is pending.
    Resync,
}

/// What the agent's runs show as they happen, for callers that stream a
/// reply's text. The runtime's own event format stays behind the seam.
///
/// A receiver that lags (`RecvError::Lagged`) has missed events, as after
/// [`AgentEvent::Reopened`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentEvent {
    /// More text of part `part` of a session's answer. Parts that are not
    /// answer text (reasoning) stream text too: those are the parts
    /// [`AgentEvent::NotText`] names.
    Text {
        session: SessionId,
        part: String,
        delta: String,
    },
    /// Part `part` of a session is not answer text (reasoning, a tool call;
    /// for a tool call, which tool and how far it is).
    NotText {
        session: SessionId,
        part: String,
        tool: Option<ToolStep>,
    },
    /// The session's run stopped (answered, failed or aborted).
    Idle { session: SessionId },
    /// The stream was (re)opened: events may have been missed.
    Reopened,
}

/// A tool call as it goes: the tool's name and OpenCode's status of the
/// call (`pending`, `running`, `completed`, `error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolStep {
    pub name: String,
    pub status: String,
}

/// What became of a prompt the bridge sent before it stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovered {
    /// The prompt never reached the session: send it again.
    NotSent,
    /// The run finished with this answer text.
    Answered(String),
}

/// A tool call as OpenCode recorded it in a session.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub tool: String,
    pub call_id: String,
    /// `pending`, `running`, `completed` or `error`.
    pub status: String,
    pub input: serde_json::Value,
}

fn unsupported(what: &'static str) -> AgentError {
    AgentError::Protocol {
        what,
        why: "this agent runtime does not offer it".into(),
    }
}

/// An agent runtime with sessions.
pub trait Agent: Send + Sync + 'static {
    /// Creates a session in `dir`.
    fn create_session<'a>(
        &'a self,
        dir: &'a std::path::Path,
        title: &'a str,
    ) -> BoxFuture<'a, Result<SessionId, AgentError>>;
    /// Whether the session still exists (`Ok(false)`: gone for good).
    fn session_exists<'a>(
        &'a self,
        dir: &'a std::path::Path,
        id: &'a SessionId,
    ) -> BoxFuture<'a, Result<bool, AgentError>>;
    /// Deletes a session and its whole history for good (`Ok(false)`: it
    /// was gone already).
    fn delete_session<'a>(
        &'a self,
        dir: &'a std::path::Path,
        id: &'a SessionId,
    ) -> BoxFuture<'a, Result<bool, AgentError>>;
    /// A fresh prompt id, sorting after every earlier one.
    fn new_prompt_id(&self) -> PromptId;
    /// Sends the prompt and follows the run to its final answer text.
    fn run(&self, spec: RunSpec) -> BoxFuture<'_, Result<String, AgentError>>;
    /// Finds out what became of a prompt sent before a crash, following it
    /// to the end if it is still running.
    fn recover(&self, spec: RunSpec) -> BoxFuture<'_, Result<Recovered, AgentError>>;
    /// The tool calls in one message of a session (for provenance checks).
    fn tool_calls<'a>(
        &'a self,
        dir: &'a std::path::Path,
        session: &'a SessionId,
        message_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ToolCall>, AgentError>>;
    /// The call `call_id` of `session` in message `message_id`, if the
    /// agent's event stream has shown it running (and not finishing since,
    /// with no gap in what it saw), waiting briefly for a stream that is a
    /// little behind: a provenance check that needs no request. `None`:
    /// not known that way; ask [`Agent::tool_calls`].
    fn streamed_tool_call<'a>(
        &'a self,
        _session: &'a SessionId,
        _message_id: &'a str,
        _call_id: &'a str,
    ) -> BoxFuture<'a, Option<ToolCall>> {
        Box::pin(async { None })
    }
    /// Answers a permission request; `message` reaches the model with a rejection.
    fn answer_permission<'a>(
        &'a self,
        dir: &'a std::path::Path,
        id: &'a str,
        reply: PermissionReply,
        message: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), AgentError>>;
    /// The permission requests waiting for an answer in `dir`.
    fn pending_permissions<'a>(
        &'a self,
        dir: &'a std::path::Path,
    ) -> BoxFuture<'a, Result<Vec<PermissionAsk>, AgentError>>;
    /// The session that started `id` (a subagent's session), if any.
    fn session_parent<'a>(
        &'a self,
        dir: &'a std::path::Path,
        id: &'a SessionId,
    ) -> BoxFuture<'a, Result<Option<SessionId>, AgentError>>;
    /// Stops the session's running turn (`/stop`).
    fn abort<'a>(
        &'a self,
        _dir: &'a std::path::Path,
        _session: &'a SessionId,
    ) -> BoxFuture<'a, Result<(), AgentError>> {
        Box::pin(async { Err(unsupported("abort")) })
    }
    /// The models on offer in `dir` (`/model`).
    fn models<'a>(
        &'a self,
        _dir: &'a std::path::Path,
    ) -> BoxFuture<'a, Result<Models, AgentError>> {
        Box::pin(async { Err(unsupported("models")) })
    }
    /// Summarises the session with `model` so its next turn starts from
    /// the summary (`/compact`).
    fn compact<'a>(
        &'a self,
        _dir: &'a std::path::Path,
        _session: &'a SessionId,
        _model: &'a crate::config::ModelRef,
    ) -> BoxFuture<'a, Result<(), AgentError>> {
        Box::pin(async { Err(unsupported("compact")) })
    }
    /// The context window of `model` (`provider/model`) in tokens, when the
    /// runtime says.
    fn context_limit<'a>(
        &'a self,
        _dir: &'a std::path::Path,
        _model: &'a str,
    ) -> BoxFuture<'a, Option<u64>> {
        Box::pin(async { None })
    }
    /// The session's last turn's model, tokens, cost and times (`/status`).
    fn last_turn<'a>(
        &'a self,
        _dir: &'a std::path::Path,
        _session: &'a SessionId,
    ) -> BoxFuture<'a, Result<Option<TurnInfo>, AgentError>> {
        Box::pin(async { Ok(None) })
    }
    /// The runs' events as they happen, from now on. The default, for an
    /// agent without a stream, is a receiver closed at once.
    fn events(&self) -> broadcast::Receiver<AgentEvent> {
        broadcast::channel(1).1
    }
    /// A short health code: `opencode-ok`, `opencode-unreachable`,
    /// `opencode-stream-down`, `opencode-model-refused`, `opencode-tools-missing`.
    fn health_code(&self) -> &'static str;
}

#[cfg(test)]
pub mod fake;
