//! One scheduled task run. Its failures are recorded on the run, not
//! retried: the task's next due time is the retry.

use std::path::Path;

use super::{RunError, Runner};
use crate::agent::{AgentError, Recovered, RunSpec};
use crate::ids::{PromptId, SessionId};
use crate::model::{ContextMode, RegisteredChat, TaskRunStatus};
use crate::prompt;
use crate::store::tasks::{self, TaskRun};

impl Runner {
    /// Runs `run` in the chat's session (`stored_session`, checked) or, for
    /// an isolated task, in a new session of its own.
    pub(super) async fn run_task(
        &self,
        reg: &RegisteredChat,
        dir: &Path,
        stored_session: Option<SessionId>,
        run: TaskRun,
    ) -> Result<(), RunError> {
        let (settings, store, agent) = (&self.ctx.settings, &self.ctx.store, &self.ctx.agent);
        let run_id = run.id;
        let task_id = run.task_id.clone();
        let task = store.call(move |c| tasks::get(c, &task_id)).await?;
        let Some(task) = task else {
            self.end_task_run(run_id, Err("the task was cancelled before it ran".into()))
                .await?;
            return Ok(());
        };
        let model = self.chat_model(reg).await?;
        let spec = |session: SessionId, prompt_id: PromptId, text: String| RunSpec {
            dir: dir.to_owned(),
            session,
            prompt_id,
            text,
            files: Vec::new(),
            timeout: settings.run_timeout,
            agent: Some(crate::profiles::agent_name(reg.profile).to_owned()),
            model: model.clone(),
            streamed: reg.jid.is_api(),
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
            match self.session_for(reg, dir, stored_session).await {
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
                tz: settings.tz,
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
        crate::metrics::run_started("task");
        let started = std::time::Instant::now();
        let result = agent.run(spec(session.clone(), prompt_id, text)).await;
        crate::metrics::run_duration("task", started.elapsed());
        match result {
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
            .ctx
            .settings
            .persona
            .reply_to(&reg.jid, answer)
            .map(|t| (self.ctx.channel.new_message_id(), t));
        let chat = reg.jid.clone();
        let sent = reply.is_some();
        self.ctx
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
            self.ctx.outbox_wake.notify_one();
        }
        tracing::info!(chat = %reg.jid, run = run_id, replied = sent, "task run finished");
        Ok(())
    }

    async fn end_task_run(
        &self,
        run_id: i64,
        outcome: Result<String, String>,
    ) -> Result<(), RunError> {
        self.ctx
            .store
            .call(move |c| tasks::finish_run(c, run_id, outcome.as_deref().map_err(String::as_str)))
            .await?;
        Ok(())
    }
}
