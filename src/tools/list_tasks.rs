//! `list_tasks`: this chat's tasks (the main chat's and the owner's: every
//! chat's, or one named chat's).

use chrono_tz::Tz;
use rusqlite::Connection;
use serde::Deserialize;
use serde_json::{Value, json};

use super::contract::{CHAT, Spec};
use super::{Caller, Effects, Tool, ToolEnv, ToolError, local, target};
use crate::model::TaskStatus;
use crate::store::tasks::{self, Task};

#[derive(Debug, Deserialize)]
pub struct ListTasks {
    chat: Option<String>,
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

impl Tool for ListTasks {
    const SPEC: Spec = Spec {
        name: "list_tasks",
        args: &[CHAT],
    };

    fn run(
        self,
        c: &Connection,
        caller: Caller<'_>,
        env: &ToolEnv<'_>,
    ) -> Result<(Value, Effects), ToolError> {
        let scope = match (&self.chat, caller) {
            (Some(chat), _) => Some(target(c, caller, Some(chat))?.jid),
            (None, Caller::Chat(own)) if !own.is_main => Some(own.jid.clone()),
            (None, _) => None,
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
        Ok((json!({ "tasks": list, "text": text }), Effects::default()))
    }
}
