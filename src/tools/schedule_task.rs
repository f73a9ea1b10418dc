//! `schedule_task`: a prompt that runs later in this chat (or, from the
//! main chat, another registered one).

use chrono::DateTime;
use rusqlite::Connection;
use serde::Deserialize;
use serde_json::{Value, json};

use super::contract::{Arg, CHAT, Spec};
use super::{Caller, Effects, Tool, ToolEnv, ToolError, chat_label, fail, local, target};
use crate::model::{ContextMode, TaskStatus};
use crate::schedule::Schedule;
use crate::store::tasks::{self, Task};

/// Longest `prompt`, in characters.
pub const MAX_PROMPT_CHARS: usize = 20_000;

#[derive(Debug, Deserialize)]
pub struct ScheduleTask {
    prompt: String,
    schedule_type: String,
    schedule_value: String,
    context_mode: String,
    chat: Option<String>,
}

fn new_task_id() -> String {
    use rand::RngExt;
    let n: u32 = rand::rng().random();
    format!("task-{n:08x}")
}

impl Tool for ScheduleTask {
    const SPEC: Spec = Spec {
        name: "schedule_task",
        args: &[
            Arg::required("prompt").max(MAX_PROMPT_CHARS, ""),
            Arg::required("schedule_type").one_of(&["cron", "interval", "once"]),
            Arg::required("schedule_value"),
            Arg::required("context_mode").one_of(&["group", "isolated"]),
            CHAT,
        ],
    };

    fn run(
        self,
        c: &Connection,
        caller: Caller<'_>,
        env: &ToolEnv<'_>,
    ) -> Result<(Value, Effects), ToolError> {
        let chat = target(c, caller, self.chat.as_deref())?;
        let (kind, value) = (self.schedule_type.as_str(), self.schedule_value.as_str());
        let mode: ContextMode = self.context_mode.parse().map_err(|_| {
            fail(
                "invalid_arguments",
                "`context_mode` must be \"group\" or \"isolated\"",
            )
        })?;
        let schedule = Schedule::parse(kind, value, env.tz, env.now)
            .map_err(|e| fail("invalid_schedule", e.0))?;
        let next = schedule
            .first_run(env.tz, env.now)
            .map(|t| t.timestamp_millis());
        let stored_value = match &schedule {
            Schedule::Once(at) => at.to_rfc3339(),
            _ => value.trim().to_owned(),
        };
        // Finished (completed) tasks do not count; cancelled ones are gone.
        let open = tasks::list(c, Some(&chat.jid))?
            .iter()
            .filter(|t| matches!(t.status, TaskStatus::Active | TaskStatus::Paused))
            .count();
        if open >= env.max_tasks_per_chat {
            return Err(fail(
                "limit_reached",
                format!(
                    "not scheduled: {} already has {open} active or paused tasks, the most a chat may have (PB_MAX_TASKS_PER_CHAT = {}). Cancel one that is no longer needed with pocketbrain_cancel_task (pocketbrain_list_tasks shows their ids), then schedule this one again.",
                    chat_label(caller, &chat),
                    env.max_tasks_per_chat
                ),
            ));
        }
        let task = Task {
            id: new_task_id(),
            chat: chat.jid.clone(),
            prompt: self.prompt.clone(),
            schedule_type: schedule.kind(),
            schedule_value: stored_value,
            context_mode: mode,
            tz: env.tz.name().to_owned(),
            status: TaskStatus::Active,
            status_reason: None,
            next_run: next,
            created_at: env.now.timestamp_millis(),
        };
        tasks::insert(c, &task)?;
        let when = next
            .map(|ms| local(env.tz, ms))
            .unwrap_or_else(|| "never".into());
        Ok((
            json!({
                "task_id": task.id,
                "next_run": next.and_then(DateTime::from_timestamp_millis).map(|t| t.with_timezone(&env.tz).to_rfc3339()),
                "text": format!("Scheduled task {} ({kind} {value:?}, {mode} context). Next run: {when} ({}).", task.id, env.tz),
            }),
            Effects {
                tasks: true,
                ..Effects::default()
            },
        ))
    }
}
