//! The command line: `serve`, `chats list|register|unregister`, `status`.
//!
//! The management commands work on the database directly (WAL lets them run
//! beside a running bridge), and the bridge reads registrations per message,
//! so registering or unregistering takes effect without a restart.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, ConfigArgs};
use crate::ids::{ChatJid, Folder};
use crate::router::TriggerRule;
use crate::store::{RegisteredChat, Store};

#[derive(Debug, Parser)]
#[command(
    name = "pocketbrain",
    version,
    about = "A personal AI assistant on WhatsApp, powered by OpenCode"
)]
pub struct Cli {
    #[command(flatten)]
    pub config: ConfigArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the bridge.
    Serve,
    /// List, register and unregister chats.
    Chats {
        #[command(subcommand)]
        command: ChatsCommand,
    },
    /// Show what the bridge is doing.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ChatsCommand {
    /// Every chat seen, registered or not.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Let the assistant answer in a chat.
    Register {
        /// The chat's JID: <digits>@s.whatsapp.net, <id>@g.us or <id>@lid.
        jid: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// Folder under PB_WORKSPACE/chats/ (default: from the name).
        #[arg(long)]
        folder: Option<String>,
        /// Make this the main chat (no trigger needed, may manage others).
        #[arg(long)]
        main: bool,
        /// When a group message starts a run: mention (default), always, prefix:<text>.
        #[arg(long, default_value = "mention")]
        trigger: String,
    },
    /// Stop answering in a chat (its memory is kept).
    Unregister { jid: String },
}

/// Why a command failed; printed as `error: ...`.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Serve(#[from] crate::ServeError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> ExitCode {
    match dispatch(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "command failed");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> Result<(), CliError> {
    let config = Config::from_args(&cli.config)?;
    match cli.command {
        Command::Serve => Ok(crate::serve(config, shutdown_signal()).await?),
        Command::Chats { command } => chats(&config, command).await,
        Command::Status { json } => status(&config, json).await,
    }
}

fn open_store(config: &Config) -> Result<Store, CliError> {
    Ok(Store::open(&config.db_path())?)
}

async fn chats(config: &Config, command: ChatsCommand) -> Result<(), CliError> {
    let store = open_store(config)?;
    match command {
        ChatsCommand::List { json } => {
            let chats = store.list_chats().await?;
            if json {
                let rows: Vec<_> = chats
                    .iter()
                    .map(|c| {
                        serde_json::json!({
                            "jid": c.jid, "name": c.name, "is_group": c.is_group,
                            "last_activity_ms": c.last_activity_ms,
                            "registered": c.registered.as_ref().map(|r| serde_json::json!({
                                "name": r.name, "folder": r.folder, "main": r.is_main, "trigger": r.trigger.to_string(),
                            })),
                        })
                    })
                    .collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&rows).unwrap_or_default()
                );
                return Ok(());
            }
            if chats.is_empty() {
                println!("No chats seen yet.");
                return Ok(());
            }
            println!(
                "{:<36} {:<6} {:<24} {:<26} LAST ACTIVITY",
                "JID", "KIND", "NAME", "REGISTERED"
            );
            for c in chats {
                let kind = if c.is_group { "group" } else { "dm" };
                let reg = match &c.registered {
                    Some(r) if r.is_main => format!("main ({})", r.folder),
                    Some(r) => format!("yes ({}, {})", r.folder, r.trigger),
                    None => "no".into(),
                };
                let name = c
                    .registered
                    .as_ref()
                    .map(|r| r.name.clone())
                    .or(c.name)
                    .unwrap_or_default();
                let when = chrono::DateTime::from_timestamp_millis(c.last_activity_ms)
                    .map(|t| {
                        t.with_timezone(&config.tz)
                            .format("%Y-%m-%d %H:%M")
                            .to_string()
                    })
                    .unwrap_or_default();
                println!("{:<36} {:<6} {:<24} {:<26} {when}", c.jid, kind, name, reg);
            }
            Ok(())
        }
        ChatsCommand::Register {
            jid,
            name,
            folder,
            main,
            trigger,
        } => {
            let jid = ChatJid::parse(&jid).map_err(|e| CliError::Usage(e.to_string()))?;
            let name = name.trim().to_owned();
            if name.is_empty() || name.len() > 128 {
                return Err(CliError::Usage("--name must be 1 to 128 bytes".into()));
            }
            let folder = match folder {
                Some(f) => Folder::parse(&f).map_err(|e| CliError::Usage(e.to_string()))?,
                None => Folder::from_name(&name),
            };
            let trigger =
                TriggerRule::parse(&trigger).map_err(|e| CliError::Usage(e.to_string()))?;
            let reg = RegisteredChat {
                jid: jid.clone(),
                name: name.clone(),
                folder: folder.clone(),
                is_main: main,
                trigger,
            };
            store.register(reg).await?;
            let dir = crate::bridge::ensure_chat_dir(&config.workspace, &folder, &name, &jid)?;
            println!(
                "Registered {jid} as {name:?}{} in {}",
                if main { " (main)" } else { "" },
                dir.display()
            );
            Ok(())
        }
        ChatsCommand::Unregister { jid } => {
            let jid = ChatJid::parse(&jid).map_err(|e| CliError::Usage(e.to_string()))?;
            if store.unregister(&jid).await? {
                println!("Unregistered {jid}; its folder and memory are kept.");
                Ok(())
            } else {
                Err(CliError::Usage(format!("{jid} is not registered")))
            }
        }
    }
}

async fn status(config: &Config, json: bool) -> Result<(), CliError> {
    let store = open_store(config)?;
    let summary = store.summary().await?;
    let runs = store.runs().await?;
    let live = live_health(config).await;
    if json {
        let out = serde_json::json!({
            "bridge": live,
            "store": summary,
            "runs": runs.iter().map(|r| serde_json::json!({
                "chat": r.chat, "state": r.state, "attempts": r.attempts, "reason": r.reason,
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return Ok(());
    }
    match &live {
        Some(h) => {
            let codes: Vec<String> = [
                h["checks"]["store"].as_str(),
                h["checks"]["opencode"].as_str(),
                h["checks"]["channel"]["code"].as_str(),
            ]
            .into_iter()
            .flatten()
            .map(str::to_owned)
            .collect();
            println!(
                "bridge: running, status {} ({})",
                h["status"].as_str().unwrap_or("?"),
                codes.join(", ")
            );
        }
        None => println!("bridge: not running (no answer on its HTTP address)"),
    }
    println!(
        "chats: {} seen, {} registered; messages: {}; outbox: {} pending, {} failed",
        summary.chats_seen,
        summary.chats_registered,
        summary.messages,
        summary.outbox_pending,
        summary.outbox_failed
    );
    println!(
        "runs: {} in flight, {} parked",
        summary.runs_in_flight, summary.runs_parked
    );
    for r in runs.iter().filter(|r| r.state == "parked") {
        println!(
            "  parked {} after {} attempts: {}",
            r.chat,
            r.attempts,
            r.reason.as_deref().unwrap_or("?")
        );
    }
    if let Some(h) = &live {
        for c in h["queue"]["chats"].as_array().into_iter().flatten() {
            println!("  {} {}", c["chat"].as_str().unwrap_or("?"), c["phase"]);
        }
    }
    Ok(())
}

/// The running bridge's `/health`, if it answers.
async fn live_health(config: &Config) -> Option<serde_json::Value> {
    let addr = std::fs::read_to_string(config.data_dir.join(crate::HTTP_ADDR_FILE))
        .ok()
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| config.http_addr.to_string());
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(3))
        .build()
        .ok()?;
    client
        .get(format!("http://{addr}/health"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
