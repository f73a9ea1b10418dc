//! The OpenCode driver: the [`Agent`] implementation on `opencode serve`.
//!
//! A run: subscribe to the event hub, send the prompt with OpenCode's
//! blocking call (`POST /session/{id}/message`, in a task of its own) and a
//! message id we chose, then wait. The run is complete when an answer
//! among the children of our message is finished (`time.completed` and a
//! `finish` other than `tool-calls`), whichever shows it first: the
//! blocking call's response (the turn's last message), or the stream's
//! `message.updated` with the stream's whole text parts ([`streamed`]) when
//! it showed all of them; otherwise (a reconnect, a lag, a part not seen
//! ending, the call broken) from the transcript
//! (`GET /session/{id}/message`), never from deltas. A call that ended
//! without an answer while the transcript lacks the prompt means it never
//! got there: the run fails as unreachable and is tried again. The transcript is also consulted on `session.idle`, on
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

mod agent;
pub mod instances;
mod models;
mod run;
mod tool_check;

pub use tool_check::missing_tools;

use rand::RngExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::agent::AgentError;
use crate::config::ModelRef;
use crate::ids::PromptId;
use client::Client;
use events::EventHub;
use tool_check::ToolsSeen;

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
    /// Which folders' instances are kept (see [`instances`]).
    instances: std::sync::Arc<instances::Instances>,
    /// Per session, the answer its last prompt call returned, as the turn
    /// [`crate::agent::Agent::last_turn`] reports: the size check after
    /// every turn takes it from here instead of reading the transcript
    /// again (10-20 ms of OpenCode's time a turn). Taken once; a session's
    /// compaction drops it.
    answers: std::sync::Mutex<std::collections::HashMap<String, crate::agent::TurnInfo>>,
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
            instances: instances::Instances::new(0),
            answers: Default::default(),
        }
    }

    /// Keeps `turn` as `session`'s last (see `answers`).
    fn keep_answer(&self, session: &crate::ids::SessionId, turn: crate::agent::TurnInfo) {
        let mut answers = self.answers.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded: sessions whose size nobody checks (PB_COMPACT_AT=0)
        // would pile up.
        if answers.len() >= 1024 {
            answers.clear();
        }
        answers.insert(session.as_str().to_owned(), turn);
    }

    /// `session`'s kept answer, taken.
    fn take_answer(&self, session: &crate::ids::SessionId) -> Option<crate::agent::TurnInfo> {
        self.answers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(session.as_str())
    }

    /// Keeps at most `max` chat folders' instances (0: all); see [`instances`].
    pub fn with_instance_limit(mut self, max: usize) -> Self {
        self.instances = instances::Instances::new(max);
        self
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
mod tests;
