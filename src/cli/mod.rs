//! The command line: `serve`, `chats list|register|unregister`, `tasks`,
//! `whatsapp logout|link`, `health`, `status`, `doctor`, `backup`, `restore`,
//! `api-keys`, `chat` (the terminal client, [`crate::chat`]), `tui` (the
//! full-screen one, [`crate::tui`]).
//!
//! The management commands work on the database directly (WAL lets them run
//! beside a running bridge), and the bridge reads registrations per message,
//! so registering or unregistering takes effect without a restart. Commands
//! that ask the running bridge find its address and token in the data
//! folder ([`Api`]).

mod backup;
mod bridge;
mod chats;
mod keys;
mod memory;
mod pair;
mod tasks;
#[cfg(test)]
mod tests;
mod whatsapp;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Command as ClapCommand, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::config::Config;
use crate::store::Store;

pub use bridge::Api;
pub use chats::ChatsCommand;
pub use keys::ApiKeysCommand;
pub use memory::{MemoryCommand, SkillsCommand};
pub use pair::PairCommand;
pub use tasks::TasksCommand;
pub use whatsapp::WhatsappCommand;

use backup::{backup, restore};
use bridge::{doctor, health, status};
use chats::chats;
use keys::api_keys;
use memory::{memory_cmd, skills_list};
use pair::pair_cmd;
use tasks::tasks_cmd;
pub(crate) use whatsapp::whatsapp_link;
use whatsapp::whatsapp_logout;

#[derive(Debug, Parser)]
#[command(
    name = "pocketbrain",
    version,
    about = "A personal AI assistant on WhatsApp, powered by OpenCode"
)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,
    #[command(subcommand)]
    pub command: Command,
    /// Old setting names found in the environment, warned about once
    /// logging is set up ([`run`]).
    #[arg(skip)]
    pub old_names: Vec<crate::config::OldName>,
}

impl Cli {
    /// Parses the process's arguments and environment; on a refused value
    /// prints clap's message, which names the setting, and exits.
    pub fn parse_args() -> Self {
        Self::try_parse_args(std::env::args_os()).unwrap_or_else(|e| e.exit())
    }

    /// Parses `args` (the program name first) and the environment, where a
    /// blank variable counts as unset and a setting's old name stands in
    /// for its unset new one.
    pub fn try_parse_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let old = crate::config::old_names(|k| std::env::var_os(k));
        let cmd = crate::config::accept_old_names(Self::command(), &old);
        let cmd = settings_layout(crate::config::unset_blank_env(cmd));
        let mut cli = Self::parse_with(cmd, args)?;
        cli.old_names = old;
        Ok(cli)
    }

    pub(crate) fn parse_with<I, T>(mut cmd: ClapCommand, args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let mut matches = cmd.try_get_matches_from_mut(args)?;
        Self::from_arg_matches_mut(&mut matches).map_err(|e| e.format(&mut cmd))
    }
}

/// Lays out the settings ([`Config`]'s arguments, already given their
/// variables) as every command expects them: each named after its
/// variable (`--run-timeout <PB_RUN_TIMEOUT>`, so clap's message names the
/// variable whether the value came from a flag or the environment), its
/// value never shown, accepted before or after any command, and listed by
/// `pocketbrain serve --help` alone, under its heading.
///
/// Every command reads every setting (doctor checks them all, the others
/// take the data folder, the address, the time zone...), so they stay
/// global: hidden on the top level and on the other commands, and given
/// to `serve` as visible copies, which clap's global propagation then
/// leaves alone (it skips an argument a subcommand already has).
pub fn settings_layout(cmd: ClapCommand) -> ClapCommand {
    use clap::Args;
    let settings = Config::augment_args(ClapCommand::new("settings"));
    let is_setting = |a: &clap::Arg| settings.get_arguments().any(|s| s.get_id() == a.get_id());
    // The variable as defined (the one given may be an old name, or none).
    let laid_out = |a: clap::Arg| {
        let name = settings
            .get_arguments()
            .find(|s| s.get_id() == a.get_id())
            .and_then(|s| s.get_env())
            .map(|e| e.to_string_lossy().into_owned())
            .unwrap_or_else(|| a.get_id().to_string());
        a.global(true).hide_env_values(true).value_name(name)
    };
    let shown: Vec<clap::Arg> = cmd
        .get_arguments()
        .filter(|a| is_setting(a))
        .map(|a| laid_out(a.clone()))
        .collect();
    cmd.mut_args(|a| {
        if is_setting(&a) {
            laid_out(a).hide(true)
        } else {
            a
        }
    })
    .mut_subcommand("serve", |serve| serve.args(shown))
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the bridge. Its settings come from flags or environment
    /// variables (docs/configuration.md); every command reads them.
    Serve,
    /// Print the configuration reference (docs/configuration.md), made from
    /// the settings' own definitions.
    #[command(hide = true)]
    ConfigReference,
    /// List, register and unregister chats.
    Chats {
        #[command(subcommand)]
        command: ChatsCommand,
    },
    /// List, add, pause, resume and cancel scheduled tasks; show their runs.
    Tasks {
        #[command(subcommand)]
        command: TasksCommand,
    },
    /// The WhatsApp device link.
    Whatsapp {
        #[command(subcommand)]
        command: WhatsappCommand,
    },
    /// Ask the running bridge whether it is up (for container health
    /// checks): prints its status and codes; exits non-zero when it does
    /// not answer or its store fails.
    Health,
    /// Show what the bridge is doing: link, OpenCode, chats, parked chats,
    /// outbox backlog, next tasks, pending approvals.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check the settings, folders, port, OpenCode, plugin and WhatsApp
    /// pairing; print a fix for each problem; exit non-zero when one is broken.
    Doctor {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a consistent copy of the store, the WhatsApp device keys and
    /// the chats' folders to one archive, while the bridge runs.
    Backup {
        /// The archive to write (a tar file).
        file: PathBuf,
        /// Then open the copy: integrity check and schema version.
        #[arg(long)]
        verify: bool,
    },
    /// Restore an archive written by `backup` (the bridge must be stopped).
    Restore {
        file: PathBuf,
        /// Replace an existing database.
        #[arg(long)]
        force: bool,
    },
    /// Create, list and revoke keys for the local API.
    ApiKeys {
        #[command(subcommand)]
        command: ApiKeysCommand,
    },
    /// Show or edit memory: a chat's AGENTS.md, or the global one every
    /// chat reads.
    Memory {
        #[command(subcommand)]
        command: MemoryCommand,
    },
    /// The skills OpenCode finds, where each came from, and which profiles
    /// may load it.
    Skills {
        #[command(subcommand)]
        command: SkillsCommand,
    },
    /// Pairing codes given to people who wrote without being registered
    /// (PB_UNKNOWN_DM=pair): list them, or approve one.
    Pair {
        #[command(subcommand)]
        command: PairCommand,
    },
    /// Talk to the assistant in the terminal, through the running bridge's
    /// WebSocket: replies stream in, tool messages, task results and
    /// approval requests arrive; `yes|always|no CODE` answers a request.
    Chat {
        /// The conversation (default: the key's, or "default" with the
        /// owner's token).
        conversation: Option<String>,
        /// An API key (default: the owner's PB_HTTP_TOKEN or its file).
        #[arg(long, env = "PB_API_KEY", hide_env_values = true)]
        key: Option<String>,
    },
    /// The full-screen terminal app: conversations, streamed replies and
    /// approvals in one screen, through the running bridge's API (`?`
    /// shows its keys). It reconnects by itself when the bridge restarts.
    Tui {
        /// The API conversation to open (default: "tui", or the key's own).
        conversation: Option<String>,
        /// An API key (default: the owner's PB_HTTP_TOKEN or its file).
        #[arg(long, env = "PB_API_KEY", hide_env_values = true)]
        key: Option<String>,
    },
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
    Serve(#[from] crate::StartError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("unhealthy: {0}")]
    Unhealthy(String),
    #[error(transparent)]
    Backup(#[from] crate::backup::BackupError),
    /// Doctor found problems; it has printed them.
    #[error("doctor found problems")]
    Broken,
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> ExitCode {
    for old in &cli.old_names {
        old.warn();
    }
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
    cli.config.validate()?;
    let config = cli.config;
    match cli.command {
        Command::Serve => Ok(crate::App::start(config)
            .await?
            .run(shutdown_signal())
            .await?),
        Command::ConfigReference => {
            print!("{}", crate::config::reference_markdown());
            Ok(())
        }
        Command::Chats { command } => chats(&config, command).await,
        Command::Tasks { command } => tasks_cmd(&config, command).await,
        Command::Whatsapp {
            command: WhatsappCommand::Logout { force },
        } => whatsapp_logout(&config, force).await,
        Command::Whatsapp {
            command: WhatsappCommand::Link { phone, wait },
        } => whatsapp_link(&config, phone.as_deref(), wait, &mut std::io::stdout()).await,
        Command::Status { json } => status(&config, json).await,
        Command::Health => health(&config).await,
        Command::Doctor { json } => doctor(&config, json).await,
        Command::Backup { file, verify } => backup(config, file, verify).await,
        Command::Restore { file, force } => restore(config, file, force).await,
        Command::ApiKeys { command } => api_keys(&config, command).await,
        Command::Pair { command } => pair_cmd(&config, command).await,
        Command::Memory { command } => memory_cmd(&config, command).await,
        Command::Skills {
            command: SkillsCommand::List,
        } => {
            skills_list(&config);
            Ok(())
        }
        Command::Chat { conversation, key } => {
            let api = Api::new(&config, std::time::Duration::from_secs(10));
            let credential = key
                .map(crate::config::Secret::new)
                .or(api.token.clone())
                .ok_or_else(|| {
                    CliError::Usage(
                        "no credential: pass --key (PB_API_KEY), or set PB_HTTP_TOKEN for the owner".into(),
                    )
                })?;
            crate::chat::run(&api.addr, &credential, conversation.as_deref())
                .await
                .map_err(|e| CliError::Usage(e.to_string()))
        }
        Command::Tui { conversation, key } => {
            let api = Api::new(&config, std::time::Duration::from_secs(10));
            let key_given = key.is_some();
            let credential = key
                .map(crate::config::Secret::new)
                .or(api.token.clone())
                .ok_or_else(|| {
                    CliError::Usage(
                        "no credential: pass --key (PB_API_KEY), or set PB_HTTP_TOKEN for the owner".into(),
                    )
                })?;
            // A key's own conversation is named by the bridge (empty here).
            let conversation = conversation.unwrap_or_else(|| {
                if key_given {
                    String::new()
                } else {
                    crate::tui::DEFAULT_CONVERSATION.to_owned()
                }
            });
            // Asked before each connection: a restarted bridge may listen
            // on another port.
            let resolve = Box::new(move || bridge::bridge_addr(&config));
            Ok(crate::tui::run(resolve, credential, &conversation).await?)
        }
    }
}

pub(super) fn open_store(config: &Config) -> Result<Store, CliError> {
    Ok(Store::open(&config.db_path())?)
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
