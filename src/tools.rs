//! The agent's tools, as the bridge carries them out.
//!
//! The caller is the registered chat the bridge itself mapped to the calling
//! OpenCode session; nothing in the arguments can change it. A chat may act
//! only on itself and its own tasks; the main chat may name any registered
//! chat. Each action runs inside the caller's transaction, so it and the IPC
//! ledger entry commit together (a request acts at most once). Results carry
//! `text`, written for the model: what happened, or what to do instead.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use rusqlite::Connection;
use serde_json::{Value, json};

use crate::ids::{ChatJid, MessageId};
use crate::model::{ContextMode, RegisteredChat, TaskStatus};
use crate::schedule::Schedule;
use crate::store::Result as StoreResult;
use crate::store::tasks::{self, Task};

/// A tool failure the model can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ToolError {
    /// Stable code: `invalid_arguments`, `unauthorized`, `not_found`,
    /// `invalid_schedule`, `invalid_path` and `too_large` (`send_file`),
    /// `limit_reached` (`schedule_task`: the chat has as many tasks as it
    /// may),
    /// `unavailable`, `unknown_tool`, `internal`, and `storage` (the
    /// database failed: passing, so callers roll back and try again).
    pub code: &'static str,
    pub message: String,
}

/// The code of a database failure inside a tool.
pub const STORAGE: &str = "storage";

fn fail(code: &'static str, message: impl Into<String>) -> ToolError {
    ToolError {
        code,
        message: message.into(),
    }
}

impl From<crate::store::StoreError> for ToolError {
    fn from(e: crate::store::StoreError) -> Self {
        fail(
            STORAGE,
            format!("PocketBrain could not save this ({e}); try again later"),
        )
    }
}

/// What the tools need from around them.
pub struct ToolEnv<'a> {
    pub tz: Tz,
    pub now: DateTime<Utc>,
    /// Turns an agent text into what is sent (strip `<internal>`, prefix).
    pub outgoing: &'a dyn Fn(&str) -> Option<String>,
    pub new_message_id: &'a dyn Fn() -> MessageId,
    /// Where the chats' folders are (`<workspace>/chats/<folder>`), for
    /// `send_file`; `None` where no file can be sent (the CLI).
    pub workspace: Option<&'a std::path::Path>,
    pub media_limits: crate::media::MediaLimits,
    /// Most active or paused tasks one chat may have (`PB_MAX_TASKS_PER_CHAT`).
    pub max_tasks_per_chat: usize,
}

/// Effects the caller must trigger after the transaction commits.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Effects {
    pub outbox: bool,
    pub tasks: bool,
}

/// The tools the plugin may ask for, without OpenCode's `pocketbrain_`
/// prefix (the plugin's own list is checked against this one).
pub const TOOLS: &[&str] = &[
    "send_message",
    "schedule_task",
    "list_tasks",
    "pause_task",
    "resume_task",
    "cancel_task",
    "send_file",
];
/// `send_file`: longest `path`, in characters.
pub const MAX_PATH_CHARS: usize = 1_024;
/// `send_file`: longest `caption`, in characters.
pub const MAX_CAPTION_CHARS: usize = 4_000;
/// `send_message`: longest `text`, in characters.
pub const MAX_TEXT_CHARS: usize = 60_000;
/// `schedule_task`: longest `prompt`, in characters.
pub const MAX_PROMPT_CHARS: usize = 20_000;

fn str_arg<'a>(args: &'a Value, name: &str) -> Result<Option<&'a str>, ToolError> {
    match args.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(fail(
            "invalid_arguments",
            format!("`{name}` must be a string"),
        )),
    }
}

fn required<'a>(args: &'a Value, name: &str) -> Result<&'a str, ToolError> {
    str_arg(args, name)?
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| fail("invalid_arguments", format!("`{name}` is required")))
}

fn registered(c: &Connection, chat: &ChatJid) -> StoreResult<Option<RegisteredChat>> {
    crate::store::registered_in(c, chat)
}

/// The chat a request acts on: the caller's own, or (main only) another registered one.
fn target(
    c: &Connection,
    caller: &RegisteredChat,
    args: &Value,
) -> Result<RegisteredChat, ToolError> {
    let Some(raw) = str_arg(args, "chat")? else {
        return Ok(caller.clone());
    };
    let jid = ChatJid::parse(raw).map_err(|e| fail("invalid_arguments", format!("`chat`: {e}")))?;
    if jid == caller.jid {
        return Ok(caller.clone());
    }
    if !caller.is_main {
        return Err(fail(
            "unauthorized",
            "only the main chat may address another chat; omit `chat` to act on this chat",
        ));
    }
    registered(c, &jid)?.ok_or_else(|| fail("not_found", format!("{jid} is not a registered chat")))
}

/// A task the caller may manage.
fn own_task(c: &Connection, caller: &RegisteredChat, args: &Value) -> Result<Task, ToolError> {
    let id = required(args, "task_id")?;
    match tasks::get(c, id)? {
        Some(t) if caller.is_main || t.chat == caller.jid => Ok(t),
        // Another chat's task is "not found", so ids cannot be probed.
        _ => Err(fail(
            "not_found",
            format!("no task {id:?} in this chat; use pocketbrain_list_tasks to see task ids"),
        )),
    }
}

fn local(tz: Tz, ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .map(|t| {
            t.with_timezone(&tz)
                .format("%a %Y-%m-%d %H:%M %Z")
                .to_string()
        })
        .unwrap_or_else(|| "?".into())
}

fn describe(t: &Task, tz: Tz, with_chat: bool) -> String {
    let next = match (t.status, t.next_run) {
        (TaskStatus::Active, Some(ms)) => format!("next {}", local(tz, ms)),
        (s, _) => match &t.status_reason {
            Some(r) => format!("{s}: {r}"),
            None => s.to_string(),
        },
    };
    let mut prompt: String = t.prompt.chars().take(80).collect();
    if t.prompt.chars().count() > 80 {
        prompt.push('…');
    }
    let chat = if with_chat {
        format!(" in {}", t.chat)
    } else {
        String::new()
    };
    format!(
        "- {} [{}]{chat} {} {:?}, {} context, {next}: {prompt}",
        t.id, t.status, t.schedule_type, t.schedule_value, t.context_mode
    )
}

fn new_task_id() -> String {
    use rand::RngExt;
    let n: u32 = rand::rng().random();
    format!("task-{n:08x}")
}

/// Carries out `tool` for `caller` outside an agent's session (the CLI's
/// task commands, the chat's `/tasks`), in one transaction: nothing is sent
/// and no file is read, so those parts of the environment are inert.
pub async fn execute_outside_session(
    store: &crate::store::Store,
    caller: RegisteredChat,
    tool: &'static str,
    args: Value,
    tz: Tz,
    max_tasks_per_chat: usize,
) -> StoreResult<Result<Value, ToolError>> {
    store
        .tx(move |tx| {
            let outgoing = |t: &str| Some(t.to_owned());
            let new_id = || MessageId::new("unused");
            let env = ToolEnv {
                tz,
                now: Utc::now(),
                outgoing: &outgoing,
                new_message_id: &new_id,
                workspace: None,
                media_limits: crate::media::MediaLimits::default(),
                max_tasks_per_chat,
            };
            Ok(execute(tx, &caller, tool, &args, &env).map(|(v, _)| v))
        })
        .await
}

/// Carries out one tool request for `caller`.
pub fn execute(
    c: &Connection,
    caller: &RegisteredChat,
    tool: &str,
    args: &Value,
    env: &ToolEnv<'_>,
) -> Result<(Value, Effects), ToolError> {
    if !args.is_object() {
        return Err(fail("invalid_arguments", "arguments must be an object"));
    }
    let mut effects = Effects::default();
    let result = match tool {
        "send_message" => {
            let chat = target(c, caller, args)?;
            let text = required(args, "text")?;
            // Characters, as the plugin's schema counts them.
            if text.chars().count() > MAX_TEXT_CHARS {
                return Err(fail(
                    "invalid_arguments",
                    format!("`text` is over {MAX_TEXT_CHARS} characters; send it in parts"),
                ));
            }
            let Some(out) = (env.outgoing)(text) else {
                return Ok((
                    json!({ "sent": false, "text": "Nothing to send: the text was empty or only <internal> notes." }),
                    effects,
                ));
            };
            let id = (env.new_message_id)();
            crate::store::insert_outbox(c, &chat.jid, &id, &out)?;
            effects.outbox = true;
            let to = if chat.jid == caller.jid {
                "this chat".to_owned()
            } else {
                format!("{} ({})", chat.name, chat.jid)
            };
            json!({ "sent": true, "id": id, "text": format!("Sent to {to}. It arrives before your final answer.") })
        }
        "send_file" => {
            use crate::media::PathError;
            let path = required(args, "path")?;
            if path.chars().count() > MAX_PATH_CHARS {
                return Err(fail(
                    "invalid_arguments",
                    format!("`path` is over {MAX_PATH_CHARS} characters"),
                ));
            }
            let caption = str_arg(args, "caption")?.unwrap_or_default();
            if caption.chars().count() > MAX_CAPTION_CHARS {
                return Err(fail(
                    "invalid_arguments",
                    format!(
                        "`caption` is over {MAX_CAPTION_CHARS} characters; send the text with pocketbrain_send_message"
                    ),
                ));
            }
            let Some(workspace) = env.workspace else {
                return Err(fail(
                    "unavailable",
                    "files can only be sent by the agent of a chat",
                ));
            };
            // Only the caller's own folder: a path can never reach another
            // chat's files, whatever the profile.
            let dir = workspace.join("chats").join(caller.folder.as_str());
            let (media, size) = crate::media::resolve_outgoing(&dir, path, &env.media_limits)
                .map_err(|e| {
                    let code = match &e {
                        PathError::NotFound(_) => "not_found",
                        PathError::TooLarge { .. } => "too_large",
                        PathError::Io(..) => "internal",
                        _ => "invalid_path",
                    };
                    fail(code, format!("{e}. Give a path relative to this chat's folder (your working directory), e.g. reports/summary.pdf"))
                })?;
            let text = if caption.trim().is_empty() {
                String::new()
            } else {
                (env.outgoing)(caption).unwrap_or_default()
            };
            let id = (env.new_message_id)();
            crate::store::insert_outbox_media(c, &caller.jid, &id, &text, Some(&media))?;
            effects.outbox = true;
            json!({
                "sent": true,
                "id": id,
                "kind": media.kind,
                "text": format!(
                    "Sending {} to this chat as a {} ({}, {}). It arrives before your final answer, in the order you sent things.",
                    media.path, media.kind.noun(), media.mime, crate::media::human_size(size)
                ),
            })
        }
        "schedule_task" => {
            let chat = target(c, caller, args)?;
            let prompt = required(args, "prompt")?;
            // Characters, as the plugin's schema counts them.
            if prompt.chars().count() > MAX_PROMPT_CHARS {
                return Err(fail(
                    "invalid_arguments",
                    format!("`prompt` is over {MAX_PROMPT_CHARS} characters"),
                ));
            }
            let kind = required(args, "schedule_type")?;
            let value = required(args, "schedule_value")?;
            let mode: ContextMode = required(args, "context_mode")?.parse().map_err(|_| {
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
            let task = Task {
                id: new_task_id(),
                chat: chat.jid.clone(),
                prompt: prompt.to_owned(),
                schedule_type: schedule.kind(),
                schedule_value: stored_value,
                context_mode: mode,
                tz: env.tz.name().to_owned(),
                status: TaskStatus::Active,
                status_reason: None,
                next_run: next,
                created_at: env.now.timestamp_millis(),
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
                        if chat.jid == caller.jid {
                            "this chat".to_owned()
                        } else {
                            format!("{} ({})", chat.name, chat.jid)
                        },
                        env.max_tasks_per_chat
                    ),
                ));
            }
            tasks::insert(c, &task)?;
            effects.tasks = true;
            let when = next
                .map(|ms| local(env.tz, ms))
                .unwrap_or_else(|| "never".into());
            json!({
                "task_id": task.id,
                "next_run": next.and_then(DateTime::from_timestamp_millis).map(|t| t.with_timezone(&env.tz).to_rfc3339()),
                "text": format!("Scheduled task {} ({kind} {value:?}, {mode} context). Next run: {when} ({}).", task.id, env.tz),
            })
        }
        "list_tasks" => {
            let scope = match str_arg(args, "chat")? {
                Some(_) => Some(target(c, caller, args)?.jid),
                None if caller.is_main => None,
                None => Some(caller.jid.clone()),
            };
            let list = tasks::list(c, scope.as_ref())?;
            let text = if list.is_empty() {
                "No scheduled tasks.".to_owned()
            } else {
                let lines: Vec<String> = list
                    .iter()
                    .map(|t| describe(t, env.tz, scope.is_none()))
                    .collect();
                format!("{} task(s):\n{}", list.len(), lines.join("\n"))
            };
            json!({ "tasks": list, "text": text })
        }
        "pause_task" => {
            let t = own_task(c, caller, args)?;
            if t.status == TaskStatus::Completed {
                return Err(fail(
                    "invalid_arguments",
                    format!("task {} has completed; nothing to pause", t.id),
                ));
            }
            tasks::set_state(
                c,
                &t.id,
                TaskStatus::Paused,
                Some("paused by the agent"),
                None,
            )?;
            effects.tasks = true;
            json!({ "task_id": t.id, "text": format!("Paused task {}. Resume it with pocketbrain_resume_task.", t.id) })
        }
        "resume_task" => {
            let t = own_task(c, caller, args)?;
            let schedule: Schedule = format!("{}:{}", t.schedule_type, t.schedule_value)
                .parse()
                .map_err(|e: crate::schedule::ScheduleError| fail("internal", e.0))?;
            let tz: Tz = t.tz.parse().unwrap_or(env.tz);
            let next = schedule.first_run(tz, env.now).filter(|n| *n > env.now);
            let Some(next) = next else {
                return Err(fail(
                    "invalid_arguments",
                    format!(
                        "task {} has no future run (a one-off time that has passed); schedule a new one",
                        t.id
                    ),
                ));
            };
            tasks::set_state(
                c,
                &t.id,
                TaskStatus::Active,
                None,
                Some(next.timestamp_millis()),
            )?;
            effects.tasks = true;
            json!({ "task_id": t.id, "text": format!("Resumed task {}. Next run: {}.", t.id, local(tz, next.timestamp_millis())) })
        }
        "cancel_task" => {
            let t = own_task(c, caller, args)?;
            tasks::delete(c, &t.id)?;
            effects.tasks = true;
            json!({ "task_id": t.id, "text": format!("Cancelled task {}.", t.id) })
        }
        other => {
            return Err(fail(
                "unknown_tool",
                format!("unknown tool {other:?}; available: {}", TOOLS.join(", ")),
            ));
        }
    };
    Ok((result, effects))
}

#[cfg(test)]
mod tests;
