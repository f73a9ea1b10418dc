//! `resume_task`: a paused task runs again from its next due time.

use chrono_tz::Tz;
use rusqlite::Connection;
use serde::Deserialize;
use serde_json::{Value, json};

use super::contract::{Arg, Spec};
use super::{Caller, Effects, Tool, ToolEnv, ToolError, fail, local, own_task};
use crate::model::TaskStatus;
use crate::schedule::Schedule;
use crate::store::tasks;

#[derive(Debug, Deserialize)]
pub struct ResumeTask {
    task_id: String,
}

impl Tool for ResumeTask {
    const SPEC: Spec = Spec {
        name: "resume_task",
        args: &[Arg::required("task_id")],
    };

    fn run(
        self,
        c: &Connection,
        caller: Caller<'_>,
        env: &ToolEnv<'_>,
    ) -> Result<(Value, Effects), ToolError> {
        let t = own_task(c, caller, &self.task_id)?;
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
        Ok((
            json!({ "task_id": t.id, "text": format!("Resumed task {}. Next run: {}.", t.id, local(tz, next.timestamp_millis())) }),
            Effects {
                tasks: true,
                ..Effects::default()
            },
        ))
    }
}
