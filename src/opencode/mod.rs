//! The OpenCode driver: the [`Agent`] implementation on `opencode serve`.
//!
//! A run: subscribe to the event hub, send the prompt with `prompt_async`
//! and a message id we chose, then wait. The run is complete when an
//! answer among the children of our message is finished (`message.updated`
//! with `time.completed` and a `finish` other than `tool-calls`). Its text
//! comes from the stream's whole text parts ([`streamed`]) when the stream
//! showed all of them; otherwise (a reconnect, a lag, a part not seen
//! ending) from the transcript (`GET /session/{id}/message`), never from
//! deltas. The transcript is also consulted on `session.idle`, on
//! `session.error`, after the stream reconnects or lags, and on a slow
//! timer, so a quiet or broken stream cannot strand a run, and it alone
//! decides failures and refused tools. A run past its deadline is aborted.
//!
//! The tools. Before the first run in a directory (again after the event
//! stream reconnects, which an OpenCode restart makes it do), the driver
//! asks OpenCode for the tool ids it offers there. When PocketBrain's are
//! missing (the plugin failed to load: OpenCode says so nowhere else) the
//! health code is `opencode-tools-missing`, logged once, and checked again
//! at every run in that directory until the tools are back; the run goes
//! on, without them.

pub mod calls;
pub mod client;
pub mod events;
pub mod server;
pub mod streamed;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::future::BoxFuture;
use rand::RngExt;
use tokio::sync::broadcast::error::RecvError;

use crate::agent::{
    Agent, AgentError, PermissionAsk, PermissionReply, Recovered, RunSpec, ToolCall,
};
use crate::config::ModelRef;
use crate::ids::{PromptId, SessionId};
use client::{Client, TranscriptMessage, error_message};
use events::{EventHub, HubEvent};
use streamed::StreamedAnswer;

/// How often a waiting run checks the transcript even without events.
const RECONCILE_EVERY: Duration = Duration::from_secs(15);
/// How long a tool request's provenance check waits for the event stream
/// to show its call before asking OpenCode (a REST read takes 7 to 16 ms).
const STREAM_GRACE: Duration = Duration::from_millis(30);
/// How many of a transcript's newest messages a check reads first: a
/// prompt, and one answer per step of its turn (a tool call makes a step).
const TAIL: usize = 24;

/// How long OpenCode's model list (its default, the context windows) is
/// taken as read.
const MODELS_FRESH: Duration = Duration::from_secs(60);

/// OpenCode as the bridge's agent.
pub struct OpenCode {
    client: Client,
    hub: EventHub,
    model: Option<ModelRef>,
    /// OpenCode's own default model (`GET /config`'s `model`) and each
    /// model's context window, as last read (see [`MODELS_FRESH`]).
    models_seen: tokio::sync::Mutex<Option<(tokio::time::Instant, crate::agent::Models)>>,
    reachable: std::sync::atomic::AtomicBool,
    /// The last run ended with the provider refusing the key or model.
    model_refused: std::sync::atomic::AtomicBool,
    /// Sessions seen to exist, with the stream's epoch they were seen in:
    /// while the stream stays open, the server that has them is the same
    /// one, so a run need not ask again. One that is deleted meanwhile
    /// answers the prompt with 404, and the run starts over.
    sessions_seen: std::sync::Mutex<std::collections::HashMap<String, u64>>,
    /// The tools' check per directory: the stream's epoch in which each was
    /// found to have PocketBrain's tools, and those found without them.
    tools: std::sync::Mutex<ToolsSeen>,
}

/// What [`OpenCode::check_tools`] found.
#[derive(Default)]
struct ToolsSeen {
    present: HashMap<PathBuf, u64>,
    missing: BTreeSet<PathBuf>,
}

/// PocketBrain's tool ids (as OpenCode names them) that `ids` lacks.
pub fn missing_tools(ids: &[String]) -> Vec<String> {
    crate::tools::names()
        .map(|t| format!("pocketbrain_{t}"))
        .filter(|t| !ids.contains(t))
        .collect()
}

impl OpenCode {
    pub fn new(client: Client, hub: EventHub, model: Option<ModelRef>) -> Self {
        Self {
            client,
            hub,
            model,
            models_seen: tokio::sync::Mutex::new(None),
            // Unknown until the first call answers: health says unreachable.
            reachable: std::sync::atomic::AtomicBool::new(false),
            model_refused: std::sync::atomic::AtomicBool::new(false),
            sessions_seen: Default::default(),
            tools: Default::default(),
        }
    }

    fn tools_seen(&self) -> std::sync::MutexGuard<'_, ToolsSeen> {
        self.tools.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether OpenCode offers PocketBrain's tools in `dir`, asked once per
    /// directory and stream epoch while they are there, at every call while
    /// they are missing. Only a wrong answer raises `opencode-tools-missing`;
    /// a failed request is logged and asked again next time (the prompt
    /// that follows meets the same trouble and reports it).
    pub async fn check_tools(&self, dir: &Path) {
        let epoch = self.hub.epoch();
        if epoch != 0 && self.tools_seen().present.get(dir) == Some(&epoch) {
            return;
        }
        let ids = match self.note(self.client.tool_ids(dir).await) {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot list OpenCode's tools; checking again at the next run");
                return;
            }
        };
        let missing = missing_tools(&ids);
        let mut seen = self.tools_seen();
        if missing.is_empty() {
            if seen.missing.remove(dir) {
                tracing::info!(code = "opencode-tools-missing", dir = %dir.display(), "OpenCode offers the PocketBrain tools again");
            }
            seen.present.retain(|_, e| *e == epoch);
            if epoch != 0 {
                seen.present.insert(dir.to_owned(), epoch);
            }
        } else {
            seen.present.remove(dir);
            if seen.missing.insert(dir.to_owned()) {
                tracing::error!(
                    code = "opencode-tools-missing",
                    dir = %dir.display(),
                    missing = %missing.join(","),
                    "OpenCode did not load the PocketBrain plugin for this folder: the agent runs without its tools (see `pocketbrain doctor` and OpenCode's log)"
                );
            }
        }
    }

    /// `GET /global/health`: the server's version when it is healthy.
    pub async fn check_health(&self) -> Result<String, AgentError> {
        self.note(self.client.health().await)
    }

    fn seen_sessions(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, u64>> {
        self.sessions_seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn note<T>(&self, r: Result<T, AgentError>) -> Result<T, AgentError> {
        let unreachable = matches!(r, Err(AgentError::Unreachable(_)));
        self.reachable.store(!unreachable, Ordering::Relaxed);
        r
    }

    /// Where the run stands, from the transcript: its newest messages
    /// first (a run's prompt and answers are at its end, and a chat's
    /// transcript grows for as long as the chat lives), the whole of it
    /// only when the prompt is not among them.
    async fn check(&self, spec: &RunSpec) -> Result<Progress, AgentError> {
        let (dir, session) = (&spec.dir, &spec.session);
        let tail = self.note(self.client.messages(dir, session, Some(TAIL)).await)?;
        if tail_holds_the_run(&tail, TAIL, spec.prompt_id.as_str()) {
            return Ok(progress(&tail, spec.prompt_id.as_str()));
        }
        let transcript = self.note(self.client.messages(dir, session, None).await)?;
        Ok(progress(&transcript, spec.prompt_id.as_str()))
    }

    /// The model a prompt names: the chat's own, else `PB_OPENCODE_MODEL`,
    /// else OpenCode's configured default (read once). Always named when
    /// known: OpenCode otherwise keeps the model a session used last, so a
    /// chat that went back to the default (`/model default`) would not.
    async fn model_for(&self, spec: &RunSpec) -> Option<ModelRef> {
        if let Some(m) = spec.model.clone().or_else(|| self.model.clone()) {
            return Some(m);
        }
        self.models_cached(&spec.dir)
            .await?
            .default
            .and_then(|m| m.parse().ok())
    }

    /// OpenCode's models, read at most every [`MODELS_FRESH`] (so an
    /// OpenCode restarted with another default is seen within a minute);
    /// `None` when it cannot be read.
    async fn models_cached(&self, dir: &Path) -> Option<crate::agent::Models> {
        let mut seen = self.models_seen.lock().await;
        if let Some((at, m)) = &*seen
            && at.elapsed() < MODELS_FRESH
        {
            return Some(m.clone());
        }
        let m = self.client.models(dir).await.ok()?;
        *seen = Some((tokio::time::Instant::now(), m.clone()));
        Some(m)
    }

    /// Sends the prompt and waits for its answer.
    async fn prompt_and_follow(&self, spec: &RunSpec) -> Result<String, AgentError> {
        let rx = self.hub.subscribe();
        self.note(
            self.client
                .prompt_async(
                    &spec.dir,
                    &spec.session,
                    &spec.prompt_id,
                    client::Client::prompt_parts(&spec.text, &spec.files),
                    self.model_for(spec).await.as_ref(),
                    spec.agent.as_deref(),
                )
                .await,
        )?;
        crate::stage!("prompt_sent", spec.session);
        self.follow(spec, rx).await
    }

    /// Waits for the run of `spec.prompt_id` to finish. `rx` must have been
    /// subscribed before the prompt was sent.
    async fn follow(
        &self,
        spec: &RunSpec,
        mut rx: tokio::sync::broadcast::Receiver<HubEvent>,
    ) -> Result<String, AgentError> {
        let deadline = tokio::time::Instant::now() + spec.timeout;
        let session = spec.session.as_str();
        let mut seen_user = false;
        // Timer checks that found the answer unfinished while OpenCode said
        // the session was idle: twice in a row means nobody works on it.
        let mut stalled = 0;
        let mut tick = tokio::time::interval_at(
            tokio::time::Instant::now() + RECONCILE_EVERY,
            RECONCILE_EVERY,
        );
        // After an idle whose transcript did not yet show the end (OpenCode
        // can announce idle before the failed message is written), look again soon.
        let mut recheck: Option<tokio::time::Instant> = None;
        // The answer's text as the stream shows it, and the answer once
        // the stream showed all of it.
        let mut streamed = StreamedAnswer::default();
        let mut ready: Option<String> = None;
        loop {
            let mut from_timer = false;
            let should_check = tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(session, prompt = %spec.prompt_id, "run timed out; aborting");
                    if let Err(e) = self.client.abort(&spec.dir, &spec.session).await {
                        tracing::warn!(session, error = %e, "abort failed");
                    }
                    return Err(AgentError::Timeout(spec.timeout));
                }
                _ = tick.tick() => {
                    from_timer = true;
                    true
                }
                _ = async { tokio::time::sleep_until(recheck.unwrap()).await }, if recheck.is_some() => {
                    recheck = None;
                    true
                }
                ev = rx.recv() => match ev {
                    Ok(HubEvent::Reconnected) | Err(RecvError::Lagged(_)) => {
                        streamed.missed();
                        true
                    }
                    Err(RecvError::Closed) => return Err(AgentError::Unreachable("event hub stopped".into())),
                    Ok(HubEvent::Event(ev)) if ev.kind == "message.part.updated" => {
                        streamed.observe(session, &ev.properties);
                        false
                    }
                    Ok(HubEvent::Event(ev)) if ev.session_id() == Some(session) => match ev.kind.as_str() {
                        "message.updated" => {
                            let info = &ev.properties["info"];
                            if info["id"].as_str() == Some(spec.prompt_id.as_str()) {
                                seen_user = true;
                            }
                            let ours = info["role"] == "assistant"
                                && info["parentID"].as_str() == Some(spec.prompt_id.as_str());
                            let completed = !info["time"]["completed"].is_null();
                            let errored = !info["error"].is_null();
                            // The turn's last answer is written: read it now
                            // rather than after OpenCode's idle, which comes
                            // later. (A failed one waits for the idle:
                            // OpenCode may still retry it.)
                            let answered = ours
                                && completed
                                && !errored
                                && info["finish"].as_str().is_some_and(|f| f != "tool-calls");
                            if answered {
                                crate::stage!("answer_seen", spec.session);
                                ready = info["id"].as_str().and_then(|m| streamed.text_of(m));
                            }
                            // An idle announced before the answer was written:
                            // look again as soon as an answer to our prompt
                            // is finished, not only on the recheck timer.
                            answered || (recheck.is_some() && ours && (completed || errored))
                        }
                        "session.idle" => {
                            if seen_user {
                                crate::stage!("idle_seen", spec.session);
                            }
                            seen_user
                        }
                        "session.error" => true,
                        _ => false,
                    },
                    Ok(HubEvent::Event(_)) => false,
                },
            };
            if let Some(text) = ready.take() {
                crate::stage!("answer_streamed", spec.session);
                return Ok(text);
            }
            if !should_check {
                continue;
            }
            match self.check(spec).await? {
                Progress::Answered(text) => {
                    crate::stage!("transcript_read", spec.session);
                    return Ok(text);
                }
                Progress::Failed { refused, why } => return Err(failure(refused, why)),
                Progress::Running if from_timer => {
                    if self.note(self.client.session_busy(&spec.dir, &spec.session).await)? {
                        stalled = 0;
                    } else {
                        stalled += 1;
                        if stalled >= 2 {
                            return Err(AgentError::Run(
                                "OpenCode stopped working on the prompt without an answer".into(),
                            ));
                        }
                    }
                }
                Progress::Halted(reply) => {
                    if !self.note(self.client.session_busy(&spec.dir, &spec.session).await)? {
                        tracing::warn!(session, prompt = %spec.prompt_id, "the agent stopped: a tool was refused permission (PB_PERMISSION=reject)");
                        return Ok(reply);
                    }
                    recheck = Some(tokio::time::Instant::now() + Duration::from_millis(300));
                }
                Progress::NotSent | Progress::Running => {
                    recheck = Some(tokio::time::Instant::now() + Duration::from_millis(300));
                }
            }
        }
    }
}

/// Whether the newest `asked` messages of a transcript show all of the
/// run of `prompt`: they hold the prompt (and so every answer after it),
/// or they are the whole transcript.
fn tail_holds_the_run(tail: &[TranscriptMessage], asked: usize, prompt: &str) -> bool {
    tail.len() < asked || tail.iter().any(|m| m.info.id == prompt)
}

/// A run's state as the transcript shows it.
#[derive(Debug, PartialEq, Eq)]
enum Progress {
    NotSent,
    Running,
    Answered(String),
    /// The run failed; `refused`: the provider refused the key or model.
    Failed {
        refused: bool,
        why: String,
    },
    /// The agent stopped after a tool call was refused permission; OpenCode
    /// ends the turn there. Final once the session is idle. Carries the
    /// reply for the chat.
    Halted(String),
}

/// A failed run: the model provider refusing the key or not knowing the
/// model is the owner's to fix (retrying cannot help); anything else may
/// pass.
fn run_failed(err: &serde_json::Value) -> Progress {
    let name = err["name"].as_str().unwrap_or_default();
    let status = err["data"]["statusCode"].as_u64();
    let message = error_message(err);
    if let Some(code @ (401 | 403)) = status {
        Progress::Failed {
            refused: true,
            why: format!("the model provider refused the request ({code}): {message}"),
        }
    } else if name.contains("ModelNotFound") {
        Progress::Failed {
            refused: true,
            why: format!("the configured model is not known: {message}"),
        }
    } else {
        Progress::Failed {
            refused: false,
            why: message,
        }
    }
}

fn failure(refused: bool, why: String) -> AgentError {
    if refused {
        AgentError::ModelRefused(why)
    } else {
        AgentError::Run(why)
    }
}

fn progress(transcript: &[TranscriptMessage], prompt: &str) -> Progress {
    if !transcript.iter().any(|m| m.info.id == prompt) {
        return Progress::NotSent;
    }
    let children: Vec<_> = transcript
        .iter()
        .filter(|m| m.info.role == "assistant" && m.info.parent_id.as_deref() == Some(prompt))
        .collect();
    let Some(last) = children.last() else {
        return Progress::Running;
    };
    if let Some(err) = &last.info.error {
        return run_failed(err);
    }
    match (&last.info.time.completed, last.info.finish.as_deref()) {
        (Some(_), Some("tool-calls")) => {
            let refused = refused_tools(last);
            if refused.is_empty() {
                return Progress::Running;
            }
            let said: Vec<String> = children
                .iter()
                .map(|m| m.text())
                .filter(|t| !t.trim().is_empty())
                .collect();
            let mut reply = said.join("\n\n");
            if !reply.is_empty() {
                reply.push_str("\n\n");
            }
            reply.push_str(&format!(
                "(I stopped: I am not allowed to use {} here.)",
                refused.join(", ")
            ));
            Progress::Halted(reply)
        }
        (Some(_), Some(_)) => Progress::Answered(last.text()),
        _ => Progress::Running,
    }
}

/// Tools of `msg` whose call was refused permission.
fn refused_tools(msg: &TranscriptMessage) -> Vec<String> {
    let mut tools: Vec<String> = msg
        .parts
        .iter()
        .filter(|p| p["type"] == "tool" && p["state"]["status"] == "error")
        .filter(|p| {
            p["state"]["error"]
                .as_str()
                .is_some_and(|e| e.contains("rejected permission"))
        })
        .filter_map(|p| p["tool"].as_str().map(str::to_owned))
        .collect();
    tools.sort();
    tools.dedup();
    tools
}

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
        Box::pin(async move { self.note(self.client.summarize(dir, session, model).await) })
    }

    fn last_turn<'a>(
        &'a self,
        dir: &'a Path,
        session: &'a SessionId,
    ) -> BoxFuture<'a, Result<Option<crate::agent::TurnInfo>, AgentError>> {
        Box::pin(async move {
            let tail = self.note(self.client.messages(dir, session, Some(TAIL)).await)?;
            let Some(last) = tail.iter().rev().find(|m| m.info.role == "assistant") else {
                return Ok(None);
            };
            let i = &last.info;
            let n = |k: &str| i.tokens.as_ref().and_then(|t| t[k].as_u64()).unwrap_or(0);
            Ok(Some(crate::agent::TurnInfo {
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
            }))
        })
    }

    fn new_prompt_id(&self) -> PromptId {
        new_message_id()
    }

    fn run(&self, spec: RunSpec) -> BoxFuture<'_, Result<String, AgentError>> {
        Box::pin(async move {
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
                        return self.follow(&spec, rx).await.map(Recovered::Answered);
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

/// A message id OpenCode accepts and sorts after every earlier one:
/// `msg_` + 12 hex digits of the low 48 bits of (ms * 4096 + counter) +
/// 14 base62 characters.
pub fn new_message_id() -> PromptId {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = chrono::Utc::now().timestamp_millis().max(0) as u64 * 4096;
    let mut prev = LAST.load(Ordering::Relaxed);
    let value = loop {
        let next = now.max(prev + 1);
        match LAST.compare_exchange_weak(prev, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => break next,
            Err(p) => prev = p,
        }
    };
    const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    let tail: String = (0..14)
        .map(|_| BASE62[rng.random_range(0..62)] as char)
        .collect();
    PromptId::new(format!("msg_{:012x}{tail}", value & 0xffff_ffff_ffff))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn msg(v: serde_json::Value) -> TranscriptMessage {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn message_ids_are_well_formed_and_increase() {
        let ids: Vec<_> = (0..1000)
            .map(|_| new_message_id().as_str().to_owned())
            .collect();
        for w in ids.windows(2) {
            assert!(w[0][..16] < w[1][..16], "{} !< {}", w[0], w[1]);
        }
        assert!(ids.iter().all(|i| i.len() == 30 && i.starts_with("msg_")));
    }

    #[test]
    fn a_transcript_tail_is_enough_only_when_it_holds_the_prompt() {
        let m = |id: &str| msg(json!({"info":{"id":id,"role":"user"},"parts":[]}));
        let tail = [m("msg_p"), m("msg_a")];
        assert!(tail_holds_the_run(&tail, 2, "msg_p"));
        assert!(
            tail_holds_the_run(&tail[1..], 2, "msg_p"),
            "whole transcript"
        );
        assert!(!tail_holds_the_run(&[m("msg_a"), m("msg_b")], 2, "msg_p"));
    }

    #[test]
    fn progress_reads_the_transcript() {
        let user =
            json!({"info":{"id":"msg_u","role":"user"},"parts":[{"type":"text","text":"hi"}]});
        let tools = json!({"info":{"id":"msg_a1","role":"assistant","parentID":"msg_u","finish":"tool-calls","time":{"completed":1}},
            "parts":[{"type":"text","text":"let me check"}]});
        let fin = json!({"info":{"id":"msg_a2","role":"assistant","parentID":"msg_u","finish":"stop","time":{"completed":2}},
            "parts":[{"type":"step-start"},{"type":"text","text":"Hello"},{"type":"text","text":"hidden","synthetic":true},{"type":"text","text":"there"}]});
        let failed = json!({"info":{"id":"msg_a3","role":"assistant","parentID":"msg_u","time":{"completed":2},
            "error":{"name":"APIError","data":{"message":"bad"}}},"parts":[]});
        assert_eq!(progress(&[], "msg_u"), Progress::NotSent);
        assert_eq!(progress(&[msg(user.clone())], "msg_u"), Progress::Running);
        assert_eq!(
            progress(&[msg(user.clone()), msg(tools.clone())], "msg_u"),
            Progress::Running
        );
        assert_eq!(
            progress(&[msg(user.clone()), msg(tools.clone()), msg(fin)], "msg_u"),
            Progress::Answered("Hello\nthere".into())
        );
        assert_eq!(
            progress(&[msg(user.clone()), msg(failed)], "msg_u"),
            Progress::Failed {
                refused: false,
                why: "APIError: bad".into()
            }
        );
        let refused = json!({"info":{"id":"msg_a4","role":"assistant","parentID":"msg_u","finish":"tool-calls","time":{"completed":3}},
            "parts":[{"type":"tool","tool":"bash","state":{"status":"error",
                "error":"The user rejected permission to use this specific tool call."}}]});
        assert_eq!(
            progress(&[msg(user.clone()), msg(tools), msg(refused)], "msg_u"),
            Progress::Halted(
                "let me check\n\n(I stopped: I am not allowed to use bash here.)".into()
            )
        );
        // Each refused tool is named once.
        let rejected = json!({"status":"error","error":"The user rejected permission to use this specific tool call."});
        let many = json!({"info":{"id":"msg_a6","role":"assistant","parentID":"msg_u","finish":"tool-calls","time":{"completed":3}},
            "parts":[{"type":"tool","tool":"bash","state":rejected},{"type":"tool","tool":"edit","state":rejected},
                     {"type":"tool","tool":"bash","state":rejected}]});
        assert_eq!(
            progress(&[msg(user.clone()), msg(many)], "msg_u"),
            Progress::Halted("(I stopped: I am not allowed to use bash, edit here.)".into())
        );
        // A tool that merely failed lets the agent go on.
        let failed_tool = json!({"info":{"id":"msg_a5","role":"assistant","parentID":"msg_u","finish":"tool-calls","time":{"completed":3}},
            "parts":[{"type":"tool","tool":"bash","state":{"status":"error","error":"exit 1"}}]});
        assert_eq!(
            progress(&[msg(user), msg(failed_tool)], "msg_u"),
            Progress::Running
        );
    }

    /// A provider refusing the key (OpenCode's `APIError` with status 401
    /// or 403) or an unknown model is the owner's to fix; other failures
    /// (a 400, a 500) may pass and are retried.
    #[test]
    fn a_refused_key_or_unknown_model_is_told_apart() {
        let api = |status: u64| json!({"name":"APIError","data":{"message":"Incorrect API key provided","statusCode":status,"isRetryable":false}});
        assert_eq!(
            run_failed(&api(401)),
            Progress::Failed {
                refused: true,
                why: "the model provider refused the request (401): APIError: Incorrect API key provided".into()
            }
        );
        assert!(matches!(
            run_failed(&api(403)),
            Progress::Failed { refused: true, .. }
        ));
        assert!(matches!(
            run_failed(&api(400)),
            Progress::Failed { refused: false, .. }
        ));
        assert!(matches!(
            run_failed(&api(500)),
            Progress::Failed { refused: false, .. }
        ));
        let unknown =
            json!({"name":"ProviderModelNotFoundError","data":{"providerID":"x","modelID":"y"}});
        assert!(matches!(
            run_failed(&unknown),
            Progress::Failed { refused: true, .. }
        ));
        assert!(matches!(
            failure(true, "x".into()),
            AgentError::ModelRefused(_)
        ));
    }
}
