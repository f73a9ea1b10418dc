//! A run: from a chat's pending messages (or a due task) to an outbox row.
//!
//! ```text
//! intake ──▶ store (messages) ──Wake──▶ queue ──Worker::run──▶ Runner ──▶ agent
//!                                                               │
//!   channel ◀── sender ◀── outbox ◀── reply + cursor (one tx) ◀─┘
//! ```
//!
//! [`Runner`] is the queue's [`Worker`]. One run reads its plan in one store
//! transaction ([`Store::plan_run`]: registration, a run left in flight,
//! the pending messages, the session, the next task run), then:
//!
//! - reconciles a run the last process left in flight ([`recover`]);
//! - answers the conversation if the batch starts a run (trigger rules):
//!   formats the prompt, makes sure the chat has a live session, records the
//!   run, waits for the answer, and commits the visible part of it to the
//!   outbox in the one transaction that moves the cursor ([`conversation`]);
//! - otherwise carries out one scheduled task run ([`task`]).
//!
//! It depends on narrow things only: the store, the [`Agent`] trait, the
//! [`Channel`] trait (message ids, typing, read receipts), the queue (to ask
//! for another round) and its [`RunSettings`].

mod conversation;
pub mod recover;
mod task;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::Notify;

use crate::agent::{Agent, AgentError};
use crate::channel::Channel;
use crate::config::Config;
use crate::ids::{ChatJid, SessionId};
use crate::model::{RegisteredChat, RunState};
use crate::outbound::Persona;
use crate::queue::{ChatQueue, Outcome, Wake, Worker};
use crate::router::should_run;
use crate::store::Store;

/// The settings a run uses.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// Chat folders live in `workspace/chats/<folder>/`.
    pub workspace: PathBuf,
    pub persona: Persona,
    pub tz: chrono_tz::Tz,
    pub run_timeout: Duration,
    pub max_batch: usize,
    /// Largest file per kind (images read for the prompt).
    pub media_limits: crate::media::MediaLimits,
    /// `PB_ACK_REACTION`: shown on the message a turn works on.
    pub ack_reaction: Option<String>,
    /// The models each profile may use (a chat's own model outside them,
    /// after the pins changed, is not used).
    pub pins: crate::config::ModelPins,
    /// `PB_COMPACT_AT`: the share of the context window past which a
    /// session is compacted after its turn (0: never).
    pub compact_at: f64,
    /// `PB_MEMORY_MAX_BYTES`: a memory file past it gets a maintenance task.
    pub memory_max_bytes: u64,
}

impl RunSettings {
    pub fn from_config(config: &Config) -> Self {
        Self {
            workspace: config.workspace.clone(),
            persona: Persona {
                name: config.assistant_name.clone(),
                own_number: config.assistant_has_own_number,
            },
            tz: config.tz,
            run_timeout: config.run_timeout,
            max_batch: config.max_batch,
            media_limits: config.media_max_bytes,
            ack_reaction: config.ack_reaction.clone(),
            pins: crate::config::ModelPins::from_config(config),
            compact_at: config.compact_at,
            memory_max_bytes: config.memory_max_bytes,
        }
    }
}

/// How a memory upkeep task's prompt starts (one waits per chat at most).
const MEMORY_UPKEEP: &str = "[memory upkeep]";

/// Runs chats' work; the queue's [`Worker`]. Cheap to clone.
#[derive(Clone)]
pub struct Runner {
    ctx: Arc<Ctx>,
}

struct Ctx {
    settings: RunSettings,
    store: Store,
    agent: Arc<dyn Agent>,
    channel: Arc<dyn Channel>,
    queue: ChatQueue,
    outbox_wake: Arc<Notify>,
    /// Voice notes and audio to text; `None`: not configured.
    transcriber: Option<Arc<dyn crate::media::Transcriber>>,
    /// Wakes the scheduler when a run schedules a task (memory upkeep).
    tasks_wake: Option<Arc<Notify>>,
    /// Chats whose running turn `/stop` ended.
    stops: Stops,
}

/// Chats whose running turn was stopped on purpose (`/stop`): their run's
/// failure is the stop, not a fault to retry. Shared by the commands and
/// the runner; cheap to clone.
#[derive(Clone, Default)]
pub struct Stops(Arc<std::sync::Mutex<std::collections::HashSet<ChatJid>>>);

impl Stops {
    /// Marks `chat`'s running turn as stopped on purpose.
    pub fn mark(&self, chat: &ChatJid) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(chat.clone());
    }

    /// Whether `chat` was marked (and forgets the mark).
    pub fn take(&self, chat: &ChatJid) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(chat)
    }
}

#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Agent(#[from] AgentError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl Runner {
    pub fn new(
        settings: RunSettings,
        store: Store,
        agent: Arc<dyn Agent>,
        channel: Arc<dyn Channel>,
        queue: ChatQueue,
        outbox_wake: Arc<Notify>,
    ) -> Self {
        Self {
            ctx: Arc::new(Ctx {
                settings,
                store,
                agent,
                channel,
                queue,
                outbox_wake,
                transcriber: None,
                tasks_wake: None,
                stops: Stops::default(),
            }),
        }
    }

    /// Wakes `wake` when a run schedules a task. Call before the runner
    /// is cloned.
    pub fn with_tasks_wake(mut self, wake: Arc<Notify>) -> Self {
        Arc::get_mut(&mut self.ctx)
            .expect("with_tasks_wake is called before the runner is shared")
            .tasks_wake = Some(wake);
        self
    }

    /// Shares `stops` with the `/stop` command. Call before the runner is
    /// cloned.
    pub fn with_stops(mut self, stops: Stops) -> Self {
        Arc::get_mut(&mut self.ctx)
            .expect("with_stops is called before the runner is shared")
            .stops = stops;
        self
    }

    /// Compacts the chat's session (OpenCode's summary) once its last turn
    /// used `PB_COMPACT_AT` of the model's context window, so the next turn
    /// starts from a summary instead of failing for length or slowing down.
    /// Runs after the answer is committed; a failure only logs.
    async fn keep_sharp(&self, reg: &RegisteredChat, dir: &Path, session: &SessionId) {
        let share = self.ctx.settings.compact_at;
        if share <= 0.0 {
            return;
        }
        let agent = &self.ctx.agent;
        let turn = match agent.last_turn(dir, session).await {
            Ok(Some(t)) => t,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(chat = %reg.jid, error = %e, "cannot read the last turn's size");
                return;
            }
        };
        let Some(limit) = agent.context_limit(dir, &turn.model).await else {
            return;
        };
        let used =
            turn.input_tokens + turn.cache_read_tokens + turn.output_tokens + turn.reasoning_tokens;
        if (used as f64) < share * limit as f64 {
            return;
        }
        tracing::info!(chat = %reg.jid, session = %session, used, limit, "session past PB_COMPACT_AT of the context window; compacting");
        self.compact_now(reg, dir, session).await;
    }

    /// Gives the agent a task to condense the chat's memory file (and, in
    /// the main chat, the global one) once it is past
    /// `PB_MEMORY_MAX_BYTES`, unless such a task is already waiting. The
    /// task runs in a fresh session and answers nothing visible.
    async fn keep_memory_small(&self, reg: &RegisteredChat, dir: &Path) {
        let max = self.ctx.settings.memory_max_bytes;
        let mut files = vec![dir.join("AGENTS.md")];
        if reg.is_main {
            files.push(crate::memory::global_memory(&self.ctx.settings.workspace));
        }
        let big: Vec<(PathBuf, u64)> = files
            .into_iter()
            .filter_map(|f| {
                let len = std::fs::symlink_metadata(&f).ok()?.len();
                (len > max).then_some((f, len))
            })
            .collect();
        if big.is_empty() {
            return;
        }
        let list = big
            .iter()
            .map(|(f, len)| format!("{} ({len} bytes)", f.display()))
            .collect::<Vec<_>>()
            .join(", ");
        let prompt = format!(
            "{MEMORY_UPKEEP} These memory files are over the limit of {max} bytes: {list}. \
             Read each one whole, then write it back condensed to well under half the limit: \
             merge related points, drop what expired or no longer matters, keep the first lines \
             (who you are) and every standing instruction. Answer only <internal>done</internal>."
        );
        let (chat, tz) = (reg.jid.clone(), self.ctx.settings.tz);
        let scheduled = self
            .ctx
            .store
            .tx(move |tx| {
                let waiting =
                    crate::store::tasks::active_with_prompt_prefix(tx, &chat, MEMORY_UPKEEP)?;
                if waiting {
                    return Ok(false);
                }
                let now = chrono::Utc::now();
                use rand::RngExt;
                let n: u32 = rand::rng().random();
                crate::store::tasks::insert(
                    tx,
                    &crate::store::tasks::Task {
                        id: format!("task-{n:08x}"),
                        chat: chat.clone(),
                        prompt,
                        schedule_type: crate::model::ScheduleKind::Once,
                        // As stored schedules are: RFC 3339.
                        schedule_value: now.to_rfc3339(),
                        context_mode: crate::model::ContextMode::Isolated,
                        tz: tz.to_string(),
                        status: crate::model::TaskStatus::Active,
                        status_reason: None,
                        next_run: Some(now.timestamp_millis()),
                        created_at: now.timestamp_millis(),
                    },
                )?;
                Ok(true)
            })
            .await;
        match scheduled {
            Ok(true) => {
                tracing::info!(chat = %reg.jid, files = %list, "memory past PB_MEMORY_MAX_BYTES; the agent is asked to condense it");
                if let Some(w) = &self.ctx.tasks_wake {
                    w.notify_one();
                }
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(chat = %reg.jid, error = %e, "cannot schedule memory upkeep"),
        }
    }

    /// Summarises the session with the chat's model (else OpenCode's
    /// default). A failure only logs.
    async fn compact_now(&self, reg: &RegisteredChat, dir: &Path, session: &SessionId) {
        let agent = &self.ctx.agent;
        let model = match self.chat_model(reg).await {
            Ok(Some(m)) => Some(m),
            _ => agent
                .models(dir)
                .await
                .ok()
                .and_then(|m| m.default)
                .and_then(|m| m.parse().ok()),
        };
        let Some(model) = model else {
            tracing::warn!(chat = %reg.jid, "cannot compact: no model is known (set PB_OPENCODE_MODEL or a model in opencode.json)");
            return;
        };
        match agent.compact(dir, session, &model).await {
            Ok(()) => {
                crate::metrics::run_started("compaction");
                tracing::info!(chat = %reg.jid, session = %session, "session compacted");
            }
            Err(e) => {
                tracing::warn!(chat = %reg.jid, error = %e, "compaction failed; the next turn carries the whole session")
            }
        }
    }

    /// The chat's own model (`/model`), if it set one that parses.
    async fn chat_model(
        &self,
        reg: &RegisteredChat,
    ) -> Result<Option<crate::config::ModelRef>, RunError> {
        let chat = &reg.jid;
        Ok(match self.ctx.store.chat_model(chat).await? {
            Some(m) if !self.ctx.settings.pins.allows(reg.profile, &m) => {
                tracing::warn!(chat = %chat, model = %m, profile = %reg.profile, "the chat's model is outside its profile's models; using the default");
                None
            }
            Some(m) => match m.parse() {
                Ok(m) => Some(m),
                Err(e) => {
                    tracing::warn!(chat = %chat, model = %m, error = %e, "the chat's model is not provider/model; using the default");
                    None
                }
            },
            None => None,
        })
    }

    /// Transcribes voice notes and audio before they reach the agent.
    /// Call before the runner is cloned.
    pub fn with_transcriber(mut self, t: Arc<dyn crate::media::Transcriber>) -> Self {
        Arc::get_mut(&mut self.ctx)
            .expect("with_transcriber is called before the runner is shared")
            .transcriber = Some(t);
        self
    }

    /// One run for `chat`, as the queue sees its end.
    async fn run_chat(&self, chat: ChatJid, attempt: u32) -> Outcome {
        match self.try_run(&chat, attempt).await {
            Ok(()) => Outcome::Done,
            Err(RunError::Store(e)) => Outcome::Retry(format!("store: {e}")),
            Err(RunError::Agent(e)) => {
                if let Err(e) = self.ctx.store.clear_run(&chat).await {
                    tracing::error!(chat = %chat, error = %e, "cannot clear run record");
                }
                match e {
                    AgentError::Unreachable(_) => Outcome::Outage(e.to_string()),
                    AgentError::ModelRefused(_) => Outcome::Park(e.to_string()),
                    _ => Outcome::Retry(e.to_string()),
                }
            }
            Err(RunError::Io(e)) => Outcome::Retry(format!("chat folder: {e}")),
        }
    }

    async fn try_run(&self, chat: &ChatJid, attempt: u32) -> Result<(), RunError> {
        let (settings, store) = (&self.ctx.settings, &self.ctx.store);
        let Some(mut plan) = store.plan_run(chat, settings.max_batch).await? else {
            return Ok(()); // unregistered since it was queued
        };
        let dir = crate::workspace::chat_dir(&settings.workspace, &plan.reg)?;

        // A run the last process left in flight: find out what became of
        // it, then plan again (its answer may have moved the cursor).
        if let Some(run) = plan.run.take_if(|r| r.state == RunState::Running) {
            self.recover(&plan.reg, &dir, run).await?;
            match store.plan_run(chat, settings.max_batch).await? {
                Some(p) => plan = p,
                None => return Ok(()),
            }
        }

        // Whether task runs wait after this run. One claimed while it runs
        // wakes the queue itself (the chat is then marked dirty).
        // In a group with a sender list, only its senders' (and the
        // owner's own) messages can start the turn; the rest ride along.
        let allowed = if plan.reg.jid.is_group() {
            store.allowed_senders(chat).await?
        } else {
            Vec::new()
        };
        let starters: Vec<_> = plan
            .batch
            .iter()
            .filter(|m| allowed.is_empty() || m.from_me || allowed.contains(&m.sender))
            .cloned()
            .collect();
        let more_tasks = if should_run(&plan.reg, &starters, &settings.persona.name) {
            self.converse(&plan.reg, dir, &plan.batch, plan.session, attempt)
                .await?;
            plan.next_task.is_some()
        } else {
            if plan.run.is_some() {
                store.clear_run(chat).await?;
            }
            // Conversation first; then one scheduled task run.
            match plan.next_task {
                Some(run) => {
                    self.run_task(&plan.reg, &dir, plan.session, run).await?;
                    store.has_task_run_waiting(chat).await?
                }
                None => false,
            }
        };
        if more_tasks {
            // Go round again, behind other chats.
            self.ctx.queue.notify(chat, Wake::MoreWork);
        }
        Ok(())
    }

    /// Commits a conversation run's answer: outbox row (if anything is
    /// visible) and cursor in one transaction. Returns whether a reply was
    /// queued.
    async fn finish(&self, chat: &ChatJid, up_to: i64, answer: &str) -> Result<bool, RunError> {
        let reply = self
            .ctx
            .settings
            .persona
            .reply_to(chat, answer)
            .map(|text| (self.ctx.channel.new_message_id(), text));
        let queued = reply.is_some();
        self.ctx.store.complete_run(chat, up_to, reply).await?;
        if queued {
            self.ctx.outbox_wake.notify_one();
        } else {
            tracing::info!(chat = %chat, "answer had nothing visible; nothing sent");
        }
        Ok(queued)
    }

    /// The chat's OpenCode session: `stored` if OpenCode still has it, else
    /// a new one. A transient error keeps the stored one (the run fails and
    /// is retried), so a hiccup never throws a conversation away.
    async fn session_for(
        &self,
        reg: &RegisteredChat,
        dir: &Path,
        stored: Option<SessionId>,
    ) -> Result<SessionId, RunError> {
        let agent = &self.ctx.agent;
        if let Some(id) = stored {
            if agent.session_exists(dir, &id).await? {
                return Ok(id);
            }
            tracing::warn!(chat = %reg.jid, session = %id, "OpenCode no longer has the chat's session; creating a new one");
        }
        let title = format!("WhatsApp: {}", reg.name);
        let id = agent.create_session(dir, &title).await?;
        self.ctx.store.set_session(&reg.jid, &id).await?;
        tracing::info!(chat = %reg.jid, session = %id, "created OpenCode session");
        Ok(id)
    }
}

impl Worker for Runner {
    fn run(&self, chat: ChatJid, attempt: u32) -> BoxFuture<'static, Outcome> {
        let me = self.clone();
        Box::pin(async move { me.run_chat(chat, attempt).await })
    }

    fn parked(&self, chat: ChatJid, attempts: u32, reason: String) -> BoxFuture<'static, ()> {
        let store = self.ctx.store.clone();
        Box::pin(async move {
            if let Err(e) = store.park_run(&chat, attempts, &reason).await {
                tracing::error!(chat = %chat, error = %e, "cannot record parked run");
            }
        })
    }
}

#[cfg(test)]
mod tests;
