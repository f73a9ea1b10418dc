//! The bridge: where a message comes in, becomes a run, and leaves as a reply.
//!
//! ```text
//! channel ──accept──▶ store (messages) ──notify──▶ queue ──run──▶ agent
//!                                                    │              │
//!   channel ◀──send── sender ◀──outbox── store ◀─────┴── reply + cursor (one tx)
//! ```
//!
//! A run takes the chat's messages after its cursor, decides whether they
//! start a run (trigger rules), formats the prompt, makes sure the chat has
//! a live OpenCode session, records the run (so a crash can be reconciled),
//! and waits for the answer. The visible part of the answer enters the
//! outbox in the same transaction that moves the cursor: after a crash,
//! either both happened or neither did.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::future::BoxFuture;
use tokio::sync::Notify;

use crate::agent::{Agent, AgentError, Recovered, RunSpec};
use crate::channel::Channel;
use crate::config::Config;
use crate::ids::{ChatJid, Folder, PromptId, SessionId};
use crate::model::{ContextMode, Inbound, RegisteredChat, RunState, StoredMessage, TaskRunStatus};
use crate::queue::{ChatQueue, Outcome, Wake, Worker};
use crate::router::should_run;
use crate::store::tasks::{self, TaskRun};
use crate::store::{InboundOutcome, RunRecord, Store};
use crate::{outbound, prompt};

/// The bridge's moving parts; cheap to clone.
#[derive(Clone)]
pub struct Bridge {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    store: Store,
    channel: Arc<dyn Channel>,
    agent: Arc<dyn Agent>,
    queue: ChatQueue,
    outbox_wake: Arc<Notify>,
    tasks_wake: Arc<Notify>,
}

/// The memory file a registered chat starts with.
pub fn agents_md(name: &str, jid: &ChatJid) -> String {
    format!(
        "# {name}\n\n\
         You are the assistant in the WhatsApp chat \"{name}\" ({jid}).\n\
         This folder is yours for this chat: keep notes and files here.\n\
         Write what you should remember about this chat (people, preferences,\n\
         ongoing topics) into this file; it is read at the start of every run.\n\
         Text inside <internal>...</internal> is never sent to the chat.\n\n\
         ## Memory\n"
    )
}

/// Creates a chat's folder and its `AGENTS.md` when missing.
pub fn ensure_chat_dir(
    workspace: &Path,
    folder: &Folder,
    name: &str,
    jid: &ChatJid,
) -> std::io::Result<PathBuf> {
    let dir = workspace.join("chats").join(folder.as_str());
    std::fs::create_dir_all(&dir)?;
    let memory = dir.join("AGENTS.md");
    if !memory.exists() {
        std::fs::write(&memory, agents_md(name, jid))?;
    }
    std::path::absolute(&dir)
}

impl Bridge {
    pub fn new(
        config: Config,
        store: Store,
        channel: Arc<dyn Channel>,
        agent: Arc<dyn Agent>,
        queue: ChatQueue,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                store,
                channel,
                agent,
                queue,
                outbox_wake: Arc::new(Notify::new()),
                tasks_wake: Arc::new(Notify::new()),
            }),
        }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }
    pub fn config(&self) -> &Config {
        &self.inner.config
    }
    pub fn queue(&self) -> &ChatQueue {
        &self.inner.queue
    }
    pub fn channel(&self) -> &Arc<dyn Channel> {
        &self.inner.channel
    }
    pub fn agent(&self) -> &Arc<dyn Agent> {
        &self.inner.agent
    }
    pub fn outbox_wake(&self) -> Arc<Notify> {
        self.inner.outbox_wake.clone()
    }
    /// Notified whenever tasks change (the scheduler sleeps on it).
    pub fn tasks_wake(&self) -> Arc<Notify> {
        self.inner.tasks_wake.clone()
    }

    /// A registered chat's OpenCode directory (absolute), created with its
    /// memory file when missing.
    pub fn chat_dir(&self, reg: &RegisteredChat) -> std::io::Result<PathBuf> {
        ensure_chat_dir(
            &self.inner.config.workspace,
            &reg.folder,
            &reg.name,
            &reg.jid,
        )
    }

    /// What is sent for an agent text: `<internal>` notes stripped, trimmed,
    /// prefixed with the assistant's name on a shared number; `None` when
    /// nothing is left.
    pub fn outgoing_text(&self, text: &str) -> Option<String> {
        let cfg = &self.inner.config;
        outbound::visible_text(text).map(|t| {
            if cfg.assistant_has_own_number {
                t
            } else {
                format!("{}: {t}", cfg.assistant_name)
            }
        })
    }

    /// Takes one validated inbound message: stores it, and wakes the chat's
    /// queue when it is registered, new, and not our own echo.
    pub async fn accept(&self, msg: Inbound) -> crate::store::Result<InboundOutcome> {
        let id = msg.id.clone();
        let outcome = self
            .inner
            .store
            .record_inbound(msg, self.inner.config.assistant_has_own_number)
            .await?;
        let chat = &outcome.chat;
        if outcome.duplicate {
            tracing::info!(chat = %chat, id = %id, "duplicate message ignored");
        } else if outcome.echo {
            tracing::debug!(chat = %chat, id = %id, "own message echoed back; not answered");
        } else if !outcome.registered {
            tracing::info!(chat = %chat, id = %id, "message from unregistered chat recorded, not answered");
        } else {
            self.inner.queue.notify(chat, Wake::Message);
        }
        Ok(outcome)
    }

    /// Queues every chat that has work after a start: runs left in flight by
    /// a crash and messages not yet answered. A chat parked before the stop
    /// stays parked until its next message, unless that came meanwhile.
    pub async fn resume_pending(&self) -> crate::store::Result<usize> {
        let mut chats = self.inner.store.chats_with_pending().await?;
        for chat in self
            .inner
            .store
            .call(|c| tasks::chats_with_open_runs(c))
            .await?
        {
            if !chats.contains(&chat) {
                chats.push(chat);
            }
        }
        let runs = self.inner.store.runs().await?;
        for run in &runs {
            if run.state == RunState::Running && !chats.contains(&run.chat) {
                chats.push(run.chat.clone());
            }
        }
        for run in runs {
            if run.state != RunState::Parked
                || self
                    .inner
                    .store
                    .has_message_after(&run.chat, run.up_to_seq.unwrap_or(0))
                    .await?
            {
                continue;
            }
            let reason = run.reason.unwrap_or_default();
            tracing::info!(chat = %run.chat, %reason, "chat stays parked until its next message");
            self.inner
                .queue
                .restore_parked(&run.chat, run.attempts.max(0) as u32, reason);
            chats.retain(|c| *c != run.chat);
        }
        for chat in &chats {
            self.inner.queue.notify(chat, Wake::MoreWork);
        }
        Ok(chats.len())
    }

    /// One run for `chat`.
    async fn run_chat(&self, chat: ChatJid, attempt: u32) -> Outcome {
        match self.try_run(&chat, attempt).await {
            Ok(()) => Outcome::Done,
            Err(RunError::Store(e)) => Outcome::Retry(format!("store: {e}")),
            Err(RunError::Agent(e)) => {
                if let Err(e) = self.inner.store.clear_run(&chat).await {
                    tracing::error!(chat = %chat, error = %e, "cannot clear run record");
                }
                match e {
                    AgentError::Unreachable(_) => Outcome::Outage(e.to_string()),
                    _ => Outcome::Retry(e.to_string()),
                }
            }
            Err(RunError::Io(e)) => Outcome::Retry(format!("chat folder: {e}")),
        }
    }

    /// The chat's registration. When there is none, no task run may wait
    /// for it: its open runs end and its tasks are paused, with the reason.
    async fn registration(&self, chat: &ChatJid) -> Result<Option<RegisteredChat>, RunError> {
        let store = &self.inner.store;
        let reg = store.registered(chat).await?;
        if reg.is_none() {
            let c2 = chat.clone();
            let (runs, paused) = store
                .tx(move |tx| tasks::abandon_unregistered(tx, &c2))
                .await?;
            if runs + paused > 0 {
                tracing::info!(chat = %chat, runs, paused, "chat no longer registered: its task runs ended, its tasks paused");
            }
        }
        Ok(reg)
    }

    async fn try_run(&self, chat: &ChatJid, attempt: u32) -> Result<(), RunError> {
        let cfg = &self.inner.config;
        let store = &self.inner.store;
        let Some(reg) = self.registration(chat).await? else {
            return Ok(()); // unregistered since it was queued
        };
        let dir = self.chat_dir(&reg)?;

        // A run the last process left in flight: find out what became of it.
        if let Some(run) = store.run_of(chat).await?
            && run.state == RunState::Running
        {
            self.recover(&reg, &dir, run).await?;
        }

        let batch = store.pending_messages(chat, cfg.max_batch).await?;
        if should_run(&reg, &batch, &cfg.assistant_name) {
            self.converse(&reg, dir.clone(), &batch, attempt).await?;
        } else {
            store.clear_run(chat).await?;
            // Conversation first; then one scheduled task run.
            let next = store.call({
                let chat = chat.clone();
                move |c| tasks::next_run_for(c, &chat)
            });
            if let Some(run) = next.await? {
                self.run_task(&reg, &dir, run).await?;
            }
        }
        // More task runs waiting: go round again (behind other chats).
        let more = store.call({
            let chat = chat.clone();
            move |c| tasks::next_run_for(c, &chat)
        });
        if more.await?.is_some() {
            self.inner.queue.notify(chat, Wake::MoreWork);
        }
        Ok(())
    }

    /// One conversation turn over a batch of new messages.
    async fn converse(
        &self,
        reg: &RegisteredChat,
        dir: PathBuf,
        batch: &[StoredMessage],
        attempt: u32,
    ) -> Result<(), RunError> {
        let (cfg, store, chat) = (&self.inner.config, &self.inner.store, &reg.jid);
        let up_to = batch.last().map(|m| m.seq).unwrap_or_default();
        let text = prompt::format_prompt(
            &prompt::ChatContext {
                name: &reg.name,
                jid: chat.as_str(),
                tz: cfg.tz,
                now: chrono::Utc::now(),
            },
            batch,
        );
        let session = self.session_for(reg, &dir).await?;
        let prompt_id = self.inner.agent.new_prompt_id();
        let ledger_mark = store
            .begin_run(chat, &session, &prompt_id, up_to, attempt)
            .await?;
        tracing::info!(chat = %chat, session = %session, prompt = %prompt_id, messages = batch.len(), attempt, "run started");
        let started = std::time::Instant::now();
        self.inner.channel.set_typing(chat, true).await;
        let spec = RunSpec {
            dir,
            session: session.clone(),
            prompt_id,
            text,
            timeout: cfg.run_timeout,
        };
        let result = self.inner.agent.run(spec).await;
        self.inner.channel.set_typing(chat, false).await;
        let answer = match result {
            Ok(a) => a,
            // This run's own tool calls already sent messages: a retry would
            // repeat them, so the run counts as done.
            Err(e) if store.tools_sent_since(&session, ledger_mark).await? => {
                tracing::warn!(chat = %chat, error = %e, "run failed after sending messages; not retried");
                store.complete_run(chat, up_to, None).await?;
                return Ok(());
            }
            Err(AgentError::SessionGone(_)) => {
                // Gone for good: forget it so the retry makes a new one.
                tracing::warn!(chat = %chat, session = %session, "OpenCode session is gone; a new one will be created");
                store.clear_session(chat).await?;
                return Err(RunError::Agent(AgentError::SessionGone(session)));
            }
            Err(e) => return Err(RunError::Agent(e)),
        };
        let sent = self.finish(chat, up_to, &answer).await?;
        tracing::info!(chat = %chat, ms = started.elapsed().as_millis() as u64, replied = sent, "run finished");
        let read: Vec<(crate::ids::MessageId, String)> = batch
            .iter()
            .map(|m| (m.id.clone(), m.sender.clone()))
            .collect();
        self.inner.channel.mark_read(chat, &read).await;
        Ok(())
    }

    /// One scheduled task run. Its failures are recorded on the run, not
    /// retried: the task's next due time is the retry.
    async fn run_task(
        &self,
        reg: &RegisteredChat,
        dir: &Path,
        run: TaskRun,
    ) -> Result<(), RunError> {
        let (cfg, store, agent) = (&self.inner.config, &self.inner.store, &self.inner.agent);
        let run_id = run.id;
        let task_id = run.task_id.clone();
        let task = store.call(move |c| tasks::get(c, &task_id)).await?;
        let Some(task) = task else {
            self.end_task_run(run_id, Err("the task was cancelled before it ran".into()))
                .await?;
            return Ok(());
        };
        let spec = |session: SessionId, prompt_id: PromptId, text: String| RunSpec {
            dir: dir.to_owned(),
            session,
            prompt_id,
            text,
            timeout: cfg.run_timeout,
        };
        // Left running by the last process: take its answer if it has one.
        if run.status == TaskRunStatus::Running
            && let (Some(s), Some(p)) = (run.session_id.clone(), run.prompt_id.clone())
        {
            match agent
                .recover(spec(SessionId::new(s), PromptId::new(p), String::new()))
                .await
            {
                Ok(Recovered::Answered(answer)) => {
                    return self.commit_task_run(reg, run_id, &answer).await;
                }
                Ok(Recovered::NotSent) => {}
                Err(e) => {
                    self.end_task_run(run_id, Err(format!("interrupted: {e}")))
                        .await?;
                    return Ok(());
                }
            }
        }
        let isolated = task.context_mode == ContextMode::Isolated;
        let session = if isolated {
            let title: String = format!("Task {}: {}", task.id, task.prompt)
                .chars()
                .take(60)
                .collect();
            match agent.create_session(dir, &title).await {
                Ok(s) => {
                    let (sid, chat, tid) = (s.clone(), reg.jid.clone(), task.id.clone());
                    store
                        .call(move |c| tasks::add_task_session(c, sid.as_str(), &chat, &tid))
                        .await?;
                    s
                }
                Err(e) => {
                    self.end_task_run(run_id, Err(e.to_string())).await?;
                    return Ok(());
                }
            }
        } else {
            match self.session_for(reg, dir).await {
                Ok(s) => s,
                Err(RunError::Agent(e)) => {
                    self.end_task_run(run_id, Err(e.to_string())).await?;
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        };
        let prompt_id = agent.new_prompt_id();
        let text = prompt::format_task_prompt(
            &prompt::ChatContext {
                name: &reg.name,
                jid: reg.jid.as_str(),
                tz: cfg.tz,
                now: chrono::Utc::now(),
            },
            &prompt::TaskInfo {
                id: &task.id,
                schedule: &format!("{} {}", task.schedule_type, task.schedule_value),
                due_ms: run.due_at,
                prompt: &task.prompt,
            },
        );
        let (sid, pid) = (session.to_string(), prompt_id.to_string());
        store
            .call(move |c| tasks::start_run(c, run_id, &sid, &pid))
            .await?;
        tracing::info!(chat = %reg.jid, task = %task.id, session = %session, isolated, late_ms = crate::store::now_ms() - run.due_at, "task run started");
        match agent.run(spec(session.clone(), prompt_id, text)).await {
            Ok(answer) => self.commit_task_run(reg, run_id, &answer).await,
            Err(e) => {
                if !isolated && matches!(e, AgentError::SessionGone(_)) {
                    store.clear_session(&reg.jid).await?;
                }
                tracing::warn!(chat = %reg.jid, task = %task.id, error = %e, "task run failed");
                self.end_task_run(run_id, Err(e.to_string())).await
            }
        }
    }

    /// The task's answer to the outbox and the run's result, together.
    async fn commit_task_run(
        &self,
        reg: &RegisteredChat,
        run_id: i64,
        answer: &str,
    ) -> Result<(), RunError> {
        let reply = self
            .outgoing_text(answer)
            .map(|t| (self.inner.channel.new_message_id(), t));
        let chat = reg.jid.clone();
        let sent = reply.is_some();
        self.inner
            .store
            .tx(move |tx| {
                let result = match &reply {
                    Some((id, text)) => {
                        crate::store::insert_outbox(tx, &chat, id, text)?;
                        text.clone()
                    }
                    None => "(nothing visible to send)".to_owned(),
                };
                tasks::finish_run(tx, run_id, Ok(&result))
            })
            .await?;
        if sent {
            self.inner.outbox_wake.notify_one();
        }
        tracing::info!(chat = %reg.jid, run = run_id, replied = sent, "task run finished");
        Ok(())
    }

    async fn end_task_run(
        &self,
        run_id: i64,
        outcome: Result<String, String>,
    ) -> Result<(), RunError> {
        self.inner
            .store
            .call(move |c| tasks::finish_run(c, run_id, outcome.as_deref().map_err(String::as_str)))
            .await?;
        Ok(())
    }

    /// Reconciles a run left by a crash: an answer that exists is delivered
    /// (the prompt is not sent again); a prompt that never arrived or failed
    /// is dropped so the messages go into a fresh run.
    async fn recover(
        &self,
        reg: &RegisteredChat,
        dir: &Path,
        run: RunRecord,
    ) -> Result<(), RunError> {
        let (Some(session), Some(prompt_id), Some(up_to)) =
            (run.session_id, run.prompt_id, run.up_to_seq)
        else {
            self.inner.store.clear_run(&reg.jid).await?;
            return Ok(());
        };
        tracing::info!(chat = %reg.jid, session = %session, prompt = %prompt_id, "reconciling run left by the last process");
        let spec = RunSpec {
            dir: dir.to_owned(),
            session,
            prompt_id,
            text: String::new(),
            timeout: self.inner.config.run_timeout,
        };
        match self.inner.agent.recover(spec).await {
            Ok(Recovered::Answered(answer)) => {
                self.finish(&reg.jid, up_to, &answer).await?;
                tracing::info!(chat = %reg.jid, "recovered the answer of the interrupted run");
            }
            Ok(Recovered::NotSent) => self.inner.store.clear_run(&reg.jid).await?,
            Err(e) => {
                tracing::warn!(chat = %reg.jid, error = %e, "interrupted run cannot be recovered; its messages will be sent again");
                self.inner.store.clear_run(&reg.jid).await?;
            }
        }
        Ok(())
    }

    /// Commits a run's answer: outbox row (if anything is visible) and cursor
    /// in one transaction. Returns whether a reply was queued.
    async fn finish(&self, chat: &ChatJid, up_to: i64, answer: &str) -> Result<bool, RunError> {
        let reply = self
            .outgoing_text(answer)
            .map(|text| (self.inner.channel.new_message_id(), text));
        let queued = reply.is_some();
        self.inner.store.complete_run(chat, up_to, reply).await?;
        if queued {
            self.inner.outbox_wake.notify_one();
        } else {
            tracing::info!(chat = %chat, "answer had nothing visible; nothing sent");
        }
        Ok(queued)
    }

    /// The chat's OpenCode session: the stored one if OpenCode still has it,
    /// else a new one. A transient error keeps the stored one (the run fails
    /// and is retried), so a hiccup never throws a conversation away.
    async fn session_for(&self, reg: &RegisteredChat, dir: &Path) -> Result<SessionId, RunError> {
        let store = &self.inner.store;
        if let Some(id) = store.session(&reg.jid).await? {
            if self.inner.agent.session_exists(dir, &id).await? {
                return Ok(id);
            }
            tracing::warn!(chat = %reg.jid, session = %id, "OpenCode no longer has the chat's session; creating a new one");
        }
        let title = format!("WhatsApp: {}", reg.name);
        let id = self.inner.agent.create_session(dir, &title).await?;
        store.set_session(&reg.jid, &id).await?;
        tracing::info!(chat = %reg.jid, session = %id, "created OpenCode session");
        Ok(id)
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

impl crate::channel::whatsapp::InboundSink for Bridge {
    fn accept(&self, msg: Inbound) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            Bridge::accept(self, msg)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }
}

impl Worker for Bridge {
    fn run(&self, chat: ChatJid, attempt: u32) -> BoxFuture<'static, Outcome> {
        let me = self.clone();
        Box::pin(async move { me.run_chat(chat, attempt).await })
    }

    fn parked(&self, chat: ChatJid, attempts: u32, reason: String) -> BoxFuture<'static, ()> {
        let store = self.inner.store.clone();
        Box::pin(async move {
            if let Err(e) = store.park_run(&chat, attempts, &reason).await {
                tracing::error!(chat = %chat, error = %e, "cannot record parked run");
            }
        })
    }
}

#[cfg(test)]
mod tests;
