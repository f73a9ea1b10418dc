//! `cancel_task`: deletes a task.

use rusqlite::Connection;
use serde::Deserialize;
use serde_json::{Value, json};

use super::contract::{Arg, Spec};
use super::{Caller, Effects, Tool, ToolEnv, ToolError, own_task};
use crate::store::tasks;

#[derive(Debug, Deserialize)]
pub struct CancelTask {
    task_id: String,
}

impl Tool for CancelTask {
    const SPEC: Spec = Spec {
        name: "cancel_task",
        args: &[Arg::required("task_id")],
    };

    fn run(
        self,
        c: &Connection,
        caller: Caller<'_>,
        _env: &ToolEnv<'_>,
    ) -> Result<(Value, Effects), ToolError> {
        let t = own_task(c, caller, &self.task_id)?;
        tasks::delete(c, &t.id)?;
        Ok((
            json!({ "task_id": t.id, "text": format!("Cancelled task {}.", t.id) }),
            Effects {
                tasks: true,
                ..Effects::default()
            },
        ))
    }
}
