//! `pause_task`: stops a task from running until it is resumed.

use rusqlite::Connection;
use serde::Deserialize;
use serde_json::{Value, json};

use super::contract::{Arg, Spec};
use super::{Caller, Effects, Tool, ToolEnv, ToolError, fail, own_task};
use crate::model::TaskStatus;
use crate::store::tasks;

#[derive(Debug, Deserialize)]
pub struct PauseTask {
    task_id: String,
}

impl Tool for PauseTask {
    const SPEC: Spec = Spec {
        name: "pause_task",
        args: &[Arg::required("task_id")],
    };

    fn run(
        self,
        c: &Connection,
        caller: Caller<'_>,
        _env: &ToolEnv<'_>,
    ) -> Result<(Value, Effects), ToolError> {
        let t = own_task(c, caller, &self.task_id)?;
        if t.status == TaskStatus::Completed {
            return Err(fail(
                "invalid_arguments",
                format!("task {} has completed; nothing to pause", t.id),
            ));
        }
        let why = format!("paused by {}", caller.who());
        tasks::set_state(c, &t.id, TaskStatus::Paused, Some(&why), None)?;
        Ok((
            json!({ "task_id": t.id, "text": format!("Paused task {}. Resume it with pocketbrain_resume_task.", t.id) }),
            Effects {
                tasks: true,
                ..Effects::default()
            },
        ))
    }
}
