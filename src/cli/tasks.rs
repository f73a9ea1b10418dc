//! `pocketbrain tasks`: the operator's scheduled-task commands, through
//! the same code the agent's tools run.

use clap::Subcommand;

use super::bridge::Api;
use super::{CliError, open_store};
use crate::config::Config;
use crate::ids::ChatJid;
use crate::model::ContextMode;
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub enum TasksCommand {
    /// Every task, or one chat's.
    List {
        #[arg(long)]
        chat: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Schedule a prompt for a registered chat.
    Add {
        /// The chat's JID.
        chat: String,
        /// What the agent should do when the task runs.
        #[arg(long)]
        prompt: String,
        /// Five-field cron, in TZ ("0 9 * * 1-5").
        #[arg(long, group = "schedule", allow_hyphen_values = true)]
        cron: Option<String>,
        /// Repeat every duration ("90s", "5m", "2h", "1d").
        #[arg(long, group = "schedule", allow_hyphen_values = true)]
        interval: Option<String>,
        /// Once, at an ISO 8601 time ("2026-12-24T18:00").
        #[arg(long, group = "schedule", allow_hyphen_values = true)]
        once: Option<String>,
        /// A fresh session each run (default: the chat's conversation).
        #[arg(long)]
        isolated: bool,
    },
    /// Pause a task.
    Pause { id: String },
    /// Resume a task; its next run is computed from now.
    Resume { id: String },
    /// Delete a task.
    Cancel { id: String },
    /// A task's last runs.
    Runs {
        id: String,
        #[arg(long, default_value_t = 10)]
        limit: usize,
    },
}

/// The owner's task commands: the same typed operations the agent's tools
/// run, as [`crate::tools::Caller::Owner`] (any registered chat, any task).
pub(super) async fn operator(
    config: &Config,
    store: &Store,
    tool: &'static str,
    args: serde_json::Value,
) -> Result<serde_json::Value, CliError> {
    let result =
        crate::tools::execute_as_owner(store, tool, args, config.tz, config.max_tasks_per_chat)
            .await?
            .map_err(|e| CliError::Usage(e.message))?;
    poke_scheduler(config).await;
    Ok(result)
}

/// Tells a running bridge that tasks changed (best effort).
pub(super) async fn poke_scheduler(config: &Config) {
    let api = Api::new(config, std::time::Duration::from_secs(2));
    let _ = api
        .request(reqwest::Method::POST, "/tasks/changed")
        .send()
        .await;
}

pub(super) async fn tasks_cmd(config: &Config, command: TasksCommand) -> Result<(), CliError> {
    let store = open_store(config)?;
    match command {
        TasksCommand::List { chat, json } => {
            let chat = chat
                .map(|c| ChatJid::parse(&c))
                .transpose()
                .map_err(|e| CliError::Usage(e.to_string()))?;
            let list = store
                .call(move |c| crate::store::tasks::list(c, chat.as_ref()))
                .await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&list).unwrap_or_default()
                );
                return Ok(());
            }
            if list.is_empty() {
                println!("No tasks.");
            }
            for t in list {
                let next = t
                    .next_run
                    .and_then(chrono::DateTime::from_timestamp_millis)
                    .map(|n| {
                        n.with_timezone(&config.tz)
                            .format("%Y-%m-%d %H:%M %Z")
                            .to_string()
                    })
                    .unwrap_or_else(|| t.status_reason.clone().unwrap_or_else(|| "-".into()));
                println!(
                    "{}  {:<9} {:<36} {:<8} {:<16} {:<8} next: {}\n    {}",
                    t.id,
                    t.status,
                    t.chat,
                    t.schedule_type,
                    t.schedule_value,
                    t.context_mode,
                    next,
                    t.prompt
                );
            }
            Ok(())
        }
        TasksCommand::Add {
            chat,
            prompt,
            cron,
            interval,
            once,
            isolated,
        } => {
            let jid = ChatJid::parse(&chat).map_err(|e| CliError::Usage(e.to_string()))?;
            let (kind, value) = match (cron, interval, once) {
                (Some(v), None, None) => ("cron", v),
                (None, Some(v), None) => ("interval", v),
                (None, None, Some(v)) => ("once", v),
                _ => {
                    return Err(CliError::Usage(
                        "give one of --cron, --interval or --once".into(),
                    ));
                }
            };
            let args = serde_json::json!({
                "prompt": prompt, "schedule_type": kind, "schedule_value": value,
                "context_mode": if isolated { ContextMode::Isolated } else { ContextMode::Group },
                "chat": jid,
            });
            let v = operator(config, &store, "schedule_task", args).await?;
            println!("{}", v["text"].as_str().unwrap_or_default());
            Ok(())
        }
        TasksCommand::Pause { id } => simple_task_op(config, &store, "pause_task", id).await,
        TasksCommand::Resume { id } => simple_task_op(config, &store, "resume_task", id).await,
        TasksCommand::Cancel { id } => simple_task_op(config, &store, "cancel_task", id).await,
        TasksCommand::Runs { id, limit } => {
            let id2 = id.clone();
            let runs = store
                .call(move |c| crate::store::tasks::runs(c, &id2, limit))
                .await?;
            if runs.is_empty() {
                println!("No runs of {id} yet.");
            }
            let when = |ms: i64| {
                chrono::DateTime::from_timestamp_millis(ms)
                    .map(|t| {
                        t.with_timezone(&config.tz)
                            .format("%Y-%m-%d %H:%M:%S")
                            .to_string()
                    })
                    .unwrap_or_default()
            };
            for r in runs {
                let took = match (r.started_at, r.finished_at) {
                    (Some(s), Some(f)) => format!("{:.1}s", (f - s) as f64 / 1000.0),
                    _ => "-".into(),
                };
                let detail = r.error.as_deref().or(r.result.as_deref()).unwrap_or("");
                let detail: String = detail.chars().take(100).collect();
                println!(
                    "{}  due {}  {:<7} took {:<7} {}",
                    r.id,
                    when(r.due_at),
                    r.status,
                    took,
                    detail
                );
            }
            Ok(())
        }
    }
}

pub(super) async fn simple_task_op(
    config: &Config,
    store: &Store,
    tool: &'static str,
    id: String,
) -> Result<(), CliError> {
    let v = operator(config, store, tool, serde_json::json!({ "task_id": id })).await?;
    println!("{}", v["text"].as_str().unwrap_or_default());
    Ok(())
}
