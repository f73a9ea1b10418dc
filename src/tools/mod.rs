//! The agent's tools, as the bridge carries them out.
//!
//! The caller is the registered chat the bridge itself mapped to the calling
//! OpenCode session; nothing in the arguments can change it. A chat may act
//! only on itself and its own tasks; the main chat may name any registered
//! chat. Each action runs inside the caller's transaction, so it and the IPC
//! ledger entry commit together (a request acts at most once). Results carry
//! `text`, written for the model: what happened, or what to do instead.
//!
//! Each tool is one type in its own file: its arguments (read with serde
//! after [`contract::Spec::parse`] checked them) and what it does. The
//! list in [`tools!`] below is the one place that names them all.

mod cancel_task;
pub mod contract;
mod list_tasks;
mod pause_task;
mod resume_task;
mod schedule_task;
mod send_file;
mod send_message;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use rusqlite::Connection;
use serde_json::Value;

use crate::ids::{ChatJid, MessageId};
use crate::model::RegisteredChat;
use crate::store::Result as StoreResult;
use crate::store::tasks::{self, Task};
pub use contract::{Arg, Spec, same_call};
pub use schedule_task::MAX_PROMPT_CHARS;
pub use send_file::{MAX_CAPTION_CHARS, MAX_PATH_CHARS};
pub use send_message::MAX_TEXT_CHARS;

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

/// Who asks for a tool.
#[derive(Debug, Clone, Copy)]
pub enum Caller<'a> {
    /// A registered chat's agent (or a command in that chat): it acts on
    /// itself and its own tasks; the main chat may name any registered chat.
    Chat(&'a RegisteredChat),
    /// The owner at the terminal (`pocketbrain tasks ...`): any registered
    /// chat and any task, the chat always named.
    Owner,
}

impl Caller<'_> {
    /// May act on any registered chat.
    fn reaches_all(&self) -> bool {
        match self {
            Caller::Chat(c) => c.is_main,
            Caller::Owner => true,
        }
    }

    fn chat(&self) -> Option<&RegisteredChat> {
        match self {
            Caller::Chat(c) => Some(c),
            Caller::Owner => None,
        }
    }

    /// Who paused a task, as its status says.
    fn who(&self) -> &'static str {
        match self {
            Caller::Chat(_) => "the agent",
            Caller::Owner => "the owner",
        }
    }
}

/// One tool: its arguments' type (read from the request after [`Self::SPEC`]
/// checked them) and what it does for the caller, inside the caller's
/// transaction.
pub trait Tool: serde::de::DeserializeOwned {
    const SPEC: Spec;
    fn run(
        self,
        c: &Connection,
        caller: Caller<'_>,
        env: &ToolEnv<'_>,
    ) -> Result<(Value, Effects), ToolError>;
}

/// The tools: their specs in the order the plugin offers them, and the
/// dispatch by name. The one list of them on this side.
macro_rules! tools {
    ($($tool:ty),* $(,)?) => {
        /// Every tool's spec, in the plugin's order.
        pub const SPECS: &[Spec] = &[$(<$tool as Tool>::SPEC),*];

        fn dispatch(
            c: &Connection,
            caller: Caller<'_>,
            tool: &str,
            args: &Value,
            env: &ToolEnv<'_>,
        ) -> Option<Result<(Value, Effects), ToolError>> {
            $(
                if tool == <$tool as Tool>::SPEC.name {
                    return Some(
                        <$tool as Tool>::SPEC
                            .parse::<$tool>(args)
                            .and_then(|t| t.run(c, caller, env)),
                    );
                }
            )*
            None
        }

        /// Reads `args` into the named tool's type (tests: the spec and
        /// the type agree).
        #[cfg(test)]
        fn parses(tool: &str, args: &Value) -> Option<Result<(), ToolError>> {
            $(
                if tool == <$tool as Tool>::SPEC.name {
                    return Some(<$tool as Tool>::SPEC.parse::<$tool>(args).map(drop));
                }
            )*
            None
        }
    };
}

tools![
    send_message::SendMessage,
    schedule_task::ScheduleTask,
    list_tasks::ListTasks,
    pause_task::PauseTask,
    resume_task::ResumeTask,
    cancel_task::CancelTask,
    send_file::SendFile,
];

/// The spec of the tool named `name` (without the `pocketbrain_` prefix).
pub fn spec(name: &str) -> Option<&'static Spec> {
    SPECS.iter().find(|s| s.name == name)
}

/// Every tool's name, without the `pocketbrain_` prefix.
pub fn names() -> impl Iterator<Item = &'static str> {
    SPECS.iter().map(|s| s.name)
}

/// Carries out one tool request for `caller`.
pub fn execute(
    c: &Connection,
    caller: Caller<'_>,
    tool: &str,
    args: &Value,
    env: &ToolEnv<'_>,
) -> Result<(Value, Effects), ToolError> {
    dispatch(c, caller, tool, args, env).unwrap_or_else(|| {
        let known: Vec<&str> = names().collect();
        Err(fail(
            "unknown_tool",
            format!("unknown tool {tool:?}; available: {}", known.join(", ")),
        ))
    })
}

/// Carries out `tool` outside an agent's session (the CLI's task commands
/// as [`Caller::Owner`], the chat's `/tasks` as the chat), in one
/// transaction: nothing is sent and no file is read, so those parts of the
/// environment are inert.
pub async fn execute_outside_session(
    store: &crate::store::Store,
    caller: RegisteredChat,
    tool: &'static str,
    args: Value,
    tz: Tz,
    max_tasks_per_chat: usize,
) -> StoreResult<Result<Value, ToolError>> {
    execute_unsent(store, Some(caller), tool, args, tz, max_tasks_per_chat).await
}

/// [`execute_outside_session`] as [`Caller::Owner`].
pub async fn execute_as_owner(
    store: &crate::store::Store,
    tool: &'static str,
    args: Value,
    tz: Tz,
    max_tasks_per_chat: usize,
) -> StoreResult<Result<Value, ToolError>> {
    execute_unsent(store, None, tool, args, tz, max_tasks_per_chat).await
}

async fn execute_unsent(
    store: &crate::store::Store,
    caller: Option<RegisteredChat>,
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
            let caller = match &caller {
                Some(chat) => Caller::Chat(chat),
                None => Caller::Owner,
            };
            Ok(execute(tx, caller, tool, &args, &env).map(|(v, _)| v))
        })
        .await
}

/// The chat a request acts on: the caller's own, or (main chat and owner)
/// another registered one.
fn target(
    c: &Connection,
    caller: Caller<'_>,
    chat: Option<&str>,
) -> Result<RegisteredChat, ToolError> {
    let Some(raw) = chat else {
        return caller.chat().cloned().ok_or_else(|| {
            fail(
                "invalid_arguments",
                "`chat` is required: name the chat's JID",
            )
        });
    };
    let jid = ChatJid::parse(raw).map_err(|e| fail("invalid_arguments", format!("`chat`: {e}")))?;
    if let Some(own) = caller.chat()
        && own.jid == jid
    {
        return Ok(own.clone());
    }
    if !caller.reaches_all() {
        return Err(fail(
            "unauthorized",
            "only the main chat may address another chat; omit `chat` to act on this chat",
        ));
    }
    crate::store::registered_in(c, &jid)?
        .ok_or_else(|| fail("not_found", format!("{jid} is not a registered chat")))
}

/// How a chat is named in a result: "this chat" for the caller's own.
fn chat_label(caller: Caller<'_>, chat: &RegisteredChat) -> String {
    match caller.chat() {
        Some(own) if own.jid == chat.jid => "this chat".to_owned(),
        _ => format!("{} ({})", chat.name, chat.jid),
    }
}

/// A task the caller may manage.
fn own_task(c: &Connection, caller: Caller<'_>, id: &str) -> Result<Task, ToolError> {
    match tasks::get(c, id)? {
        Some(t) if caller.reaches_all() || caller.chat().is_some_and(|own| own.jid == t.chat) => {
            Ok(t)
        }
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

#[cfg(test)]
mod tests;
