//! Commands in the chat: a message whose text (after the trigger, in a
//! group: `@Andy /new`) is `/` and a known word is the bridge's, never the
//! model's, and is answered at once in the same chat. An unknown `/word`
//! goes to the agent as text.
//!
//! | command | effect |
//! | --- | --- |
//! | `/help` | the commands this sender may use |
//! | `/new` | the next message starts a fresh OpenCode session (the old one is kept) |
//! | `/stop`, `/stop all` | aborts the running turn; `all` also drops what waits |
//! | `/status` | profile, model, session age, queue, last turn's tokens and cost, link |
//! | `/model`, `/model P/M`, `/model default` | lists, sets or clears the chat's model |
//! | `/compact` | has OpenCode summarise the session |
//! | `/tasks`, `/tasks cancel ID` | the chat's scheduled tasks |
//!
//! Who: `/help` and `/status` are everyone's. The others are the owner's
//! (their own messages: `from_me`, or the person of a direct main chat),
//! in an API conversation its writers' (the owner's token, the key issued
//! for it), and in any chat the senders the owner allowed with
//! `pocketbrain chats allow`; anyone else gets a one-line refusal.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::Notify;

use crate::agent::Agent;
use crate::channel::Channel;
use crate::config::ModelRef;
use crate::ids::{ChatJid, MessageId};
use crate::model::{RegisteredChat, TriggerRule};
use crate::outbound::Persona;
use crate::run::Stops;
use crate::store::Store;

mod pairing;
mod parse;

pub use pairing::*;
pub use parse::*;

/// What the commands act on; cheap to clone.
#[derive(Clone)]
pub struct Commands {
    pub store: Store,
    pub agent: Arc<dyn Agent>,
    pub channel: Arc<dyn Channel>,
    pub outbox_wake: Arc<Notify>,
    pub persona: Persona,
    pub workspace: PathBuf,
    pub tz: chrono_tz::Tz,
    pub max_tasks_per_chat: usize,
    pub stops: Stops,
    /// `PB_UNKNOWN_DM`.
    pub unknown_dm: crate::config::UnknownDm,
    /// The models each profile may choose.
    pub pins: crate::config::ModelPins,
}

/// A command and who sent it.
pub struct Request {
    pub reg: RegisteredChat,
    pub sender: String,
    pub from_me: bool,
    pub command: Result<Command, String>,
}

impl Commands {
    /// Carries out a command and queues its answer in the same chat. Slow
    /// ones (those that ask OpenCode) run on their own task, so the
    /// channel is never held up; `/new` and `/stop` are done before this
    /// returns, so a message right after them already sees their effect.
    pub async fn handle(&self, req: Request) {
        let chat = req.reg.jid.clone();
        let command = match req.command {
            Ok(c) => c,
            Err(usage) => return self.say(&chat, &usage).await,
        };
        let allowed = match self.may_steer(&req.reg, &req.sender, req.from_me).await {
            Ok(a) => a,
            Err(e) => {
                return self
                    .say(&chat, &format!("Cannot check who may do that: {e}"))
                    .await;
            }
        };
        if command.restricted() && !allowed {
            tracing::info!(chat = %chat, sender = %req.sender, ?command, "command refused: sender not allowed");
            return self
                .say(
                    &chat,
                    "Only the owner and the people they allowed may use that here (/help lists what you can use).",
                )
                .await;
        }
        tracing::info!(chat = %chat, ?command, "chat command");
        match command {
            Command::Help => {
                let lines: Vec<&str> = HELP
                    .iter()
                    .filter(|(_, _, restricted)| allowed || !restricted)
                    .map(|(_, line, _)| *line)
                    .collect();
                self.say(&chat, &lines.join("\n")).await
            }
            Command::New => {
                let text = match self.store.retire_session(&chat).await {
                    Ok(Some(old)) => format!(
                        "New session: your next message starts fresh (memory files stay; the old session {old} is kept)."
                    ),
                    Ok(None) => "New session: your next message starts fresh.".to_owned(),
                    Err(e) => format!("Cannot start a new session: {e}"),
                };
                self.say(&chat, &text).await
            }
            Command::Stop { all } => {
                let text = self.stop(&req.reg, all).await;
                self.say(&chat, &text).await
            }
            slow => {
                let me = self.clone();
                let reg = req.reg;
                tokio::spawn(async move {
                    let text = match slow {
                        Command::Status => me.status(&reg).await,
                        Command::Model(arg) => me.model(&reg, arg).await,
                        Command::Compact => me.compact(&reg).await,
                        Command::Tasks { cancel } => me.tasks(&reg, cancel).await,
                        _ => unreachable!("handled above"),
                    };
                    me.say(&reg.jid, &text).await;
                });
            }
        }
    }

    /// Whether `sender` may use the restricted commands in `reg`: the
    /// owner's own message, or a sender on the chat's list.
    async fn may_steer(
        &self,
        reg: &RegisteredChat,
        sender: &str,
        from_me: bool,
    ) -> crate::store::Result<bool> {
        // An API conversation is written only by the owner's token or the
        // key the owner issued for it.
        if from_me || crate::approvals::is_owner(reg, from_me) || reg.jid.is_api() {
            return Ok(true);
        }
        Ok(self
            .store
            .allowed_senders(&reg.jid)
            .await?
            .iter()
            .any(|s| s == sender))
    }

    /// Queues the bridge's own `text` in `chat`.
    pub async fn say(&self, chat: &ChatJid, text: &str) {
        let text = self.persona.say_to(chat, text);
        let id: MessageId = self.channel.new_message_id();
        match self.store.enqueue_outbox(chat, &id, &text).await {
            Ok(_) => self.outbox_wake.notify_one(),
            Err(e) => tracing::error!(chat = %chat, error = %e, "cannot queue a command's answer"),
        }
    }

    async fn stop(&self, reg: &RegisteredChat, all: bool) -> String {
        let chat = &reg.jid;
        let dropped = if all {
            match self.store.skip_pending(chat).await {
                Ok(n) => n,
                Err(e) => return format!("Cannot drop the waiting messages: {e}"),
            }
        } else {
            0
        };
        let run = match self.store.run_of(chat).await {
            Ok(r) => r,
            Err(e) => return format!("Cannot look up the running turn: {e}"),
        };
        let running = run.and_then(|r| {
            (r.state == crate::model::RunState::Running)
                .then_some(r.session_id)
                .flatten()
        });
        let dropped_note = match dropped {
            0 if all => " Nothing was waiting.".to_owned(),
            0 => String::new(),
            1 => " Dropped 1 waiting message.".to_owned(),
            n => format!(" Dropped {n} waiting messages."),
        };
        let Some(session) = running else {
            return format!("Nothing is running.{dropped_note}");
        };
        let dir = match crate::workspace::chat_dir(&self.workspace, reg) {
            Ok(d) => d,
            Err(e) => return format!("Cannot find the chat's folder: {e}"),
        };
        self.stops.mark(chat);
        match self.agent.abort(&dir, &session).await {
            Ok(()) => format!("Stopped.{dropped_note}"),
            Err(e) => {
                self.stops.take(chat);
                format!("Could not stop the turn: {e}.{dropped_note}")
            }
        }
    }

    async fn status(&self, reg: &RegisteredChat) -> String {
        let chat = &reg.jid;
        let mut lines = vec![format!("Profile: {}", reg.profile)];
        let own = self.store.chat_model(chat).await.ok().flatten();
        let dir = crate::workspace::chat_dir(&self.workspace, reg).ok();
        let model = match (&own, &dir) {
            (Some(m), _) => format!("{m} (this chat's)"),
            (None, Some(d)) => match self.agent.models(d).await {
                Ok(m) => match m.default {
                    Some(d) => format!("{d} (default)"),
                    None => "OpenCode's default".into(),
                },
                Err(_) => "OpenCode's default (OpenCode unreachable)".into(),
            },
            (None, None) => "OpenCode's default".into(),
        };
        lines.push(format!("Model: {model}"));
        let session = self.store.session(chat).await.ok().flatten();
        match (
            &session,
            self.store.session_created_at(chat).await.ok().flatten(),
        ) {
            (Some(s), Some(at)) => lines.push(format!(
                "Session: {s}, started {} ago",
                ago(crate::store::now_ms() - at)
            )),
            _ => lines.push("Session: none yet (the next message starts one)".into()),
        }
        let waiting = self.store.pending_count(chat).await.unwrap_or(0);
        let running = matches!(
            self.store.run_of(chat).await,
            Ok(Some(r)) if r.state == crate::model::RunState::Running
        );
        lines.push(format!(
            "Queue: {waiting} waiting{}",
            if running { ", a turn running" } else { "" }
        ));
        if let (Some(s), Some(d)) = (&session, &dir) {
            match self.agent.last_turn(d, s).await {
                Ok(Some(t)) => {
                    let took = t
                        .finished_ms
                        .map(|f| format!("{:.1} s", (f - t.started_ms) as f64 / 1000.0))
                        .unwrap_or_else(|| "still running".into());
                    lines.push(format!(
                        "Last turn: {took}, {}, {} tokens in, {} out{}, cost ${:.4}",
                        t.model,
                        t.input_tokens + t.cache_read_tokens,
                        t.output_tokens + t.reasoning_tokens,
                        if t.cache_read_tokens > 0 {
                            format!(" ({} from cache)", t.cache_read_tokens)
                        } else {
                            String::new()
                        },
                        t.cost
                    ));
                }
                Ok(None) => lines.push("Last turn: none yet".into()),
                Err(e) => lines.push(format!("Last turn: unknown ({e})")),
            }
        }
        let link = self.channel.link().borrow().clone();
        lines.push(format!("Link: {}", link.code));
        lines.join("\n")
    }

    async fn model(&self, reg: &RegisteredChat, arg: Option<String>) -> String {
        let chat = &reg.jid;
        if arg
            .as_deref()
            .is_some_and(|a| a.eq_ignore_ascii_case("default"))
        {
            return match self.store.set_chat_model(chat, None).await {
                Ok(()) => "This chat uses the default model again.".into(),
                Err(e) => format!("Cannot change the model: {e}"),
            };
        }
        let dir = match crate::workspace::chat_dir(&self.workspace, reg) {
            Ok(d) => d,
            Err(e) => return format!("Cannot find the chat's folder: {e}"),
        };
        let models = match self.agent.models(&dir).await {
            Ok(m) => m,
            Err(e) => return format!("Cannot list the models: {e}"),
        };
        let own = self.store.chat_model(chat).await.ok().flatten();
        let Some(wanted) = arg else {
            let current = own
                .or(models.default.clone())
                .unwrap_or_else(|| "OpenCode's default".into());
            let mut lines = vec![format!("This chat's model: {current}"), "Models:".into()];
            lines.extend(
                models
                    .available
                    .iter()
                    .filter(|m| self.pins.allows(reg.profile, m))
                    .map(|m| format!("- {m}")),
            );
            lines.push("Set one with /model provider/model; /model default goes back.".into());
            return lines.join("\n");
        };
        if let Err(e) = wanted.parse::<ModelRef>() {
            return format!("{e}; /model lists them");
        }
        if !models.available.contains(&wanted) {
            return format!("OpenCode offers no model {wanted:?}; /model lists them.");
        }
        if !self.pins.allows(reg.profile, &wanted) {
            return format!(
                "{wanted} is not among the models a {} chat may use ({}); /model lists them.",
                reg.profile,
                crate::config::ModelPins::setting(reg.profile)
            );
        }
        match self.store.set_chat_model(chat, Some(&wanted)).await {
            Ok(()) => format!("This chat now uses {wanted}."),
            Err(e) => format!("Cannot change the model: {e}"),
        }
    }

    async fn compact(&self, reg: &RegisteredChat) -> String {
        let chat = &reg.jid;
        let Ok(Some(session)) = self.store.session(chat).await else {
            return "Nothing to compact yet: this chat has no session.".into();
        };
        if matches!(
            self.store.run_of(chat).await,
            Ok(Some(r)) if r.state == crate::model::RunState::Running
        ) {
            return "A turn is running; try /compact after its answer.".into();
        }
        let dir = match crate::workspace::chat_dir(&self.workspace, reg) {
            Ok(d) => d,
            Err(e) => return format!("Cannot find the chat's folder: {e}"),
        };
        let own = self.store.chat_model(chat).await.ok().flatten();
        let model = match own {
            Some(m) => Some(m),
            None => self.agent.models(&dir).await.ok().and_then(|m| m.default),
        };
        let Some(model) = model.and_then(|m| m.parse::<ModelRef>().ok()) else {
            return "Cannot compact: no model is set (PB_OPENCODE_MODEL, opencode.json or /model)."
                .into();
        };
        match self.agent.compact(&dir, &session, &model).await {
            Ok(()) => "Compacted: the session goes on from a summary.".into(),
            Err(e) => format!("Could not compact: {e}"),
        }
    }

    async fn tasks(&self, reg: &RegisteredChat, cancel: Option<String>) -> String {
        // The chat's own reach (never another chat's tasks), as its agent has.
        let caller = RegisteredChat {
            is_main: false,
            ..reg.clone()
        };
        let (tool, args) = match cancel {
            Some(id) => ("cancel_task", serde_json::json!({ "task_id": id })),
            None => ("list_tasks", serde_json::json!({})),
        };
        let result = crate::tools::execute_outside_session(
            &self.store,
            caller,
            tool,
            args,
            self.tz,
            self.max_tasks_per_chat,
        )
        .await;
        match result {
            Ok(Ok(v)) => v["text"].as_str().unwrap_or("Done.").to_owned(),
            Ok(Err(e)) => e.message,
            Err(e) => format!("Cannot read the tasks: {e}"),
        }
    }
}

/// A duration in ms as a person says it: `42 s`, `5 min`, `3 h`, `2 days`.
fn ago(ms: i64) -> String {
    let s = (ms / 1000).max(0);
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86_400 => format!("{} h", s / 3600),
        _ => format!("{} days", s / 86_400),
    }
}

#[cfg(test)]
mod tests;
