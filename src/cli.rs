//! The command line: `serve`, `chats list|register|unregister`, `tasks`,
//! `whatsapp logout`, `health`, `status`, `doctor`, `backup`, `restore`,
//! `api-keys`, `chat` (the terminal client, [`crate::chat`]).
//!
//! The management commands work on the database directly (WAL lets them run
//! beside a running bridge), and the bridge reads registrations per message,
//! so registering or unregistering takes effect without a restart. Commands
//! that ask the running bridge find its address and token in the data
//! folder ([`Api`]).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Command as ClapCommand, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::config::Config;
use crate::ids::{ChatJid, Folder};
use crate::model::{ContextMode, Profile, RegisteredChat, TriggerRule};
use crate::store::Store;

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
}

impl Cli {
    /// Parses the process's arguments and environment; on a refused value
    /// prints clap's message, which names the setting, and exits.
    pub fn parse_args() -> Self {
        Self::try_parse_args(std::env::args_os()).unwrap_or_else(|e| e.exit())
    }

    /// Parses `args` (the program name first) and the environment, where a
    /// blank variable counts as unset.
    pub fn try_parse_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        Self::parse_with(crate::config::unset_blank_env(Self::command()), args)
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

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the bridge.
    Serve,
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
}

#[derive(Debug, Subcommand)]
pub enum MemoryCommand {
    /// Print it.
    Show {
        /// A registered chat's JID, or "global" (default).
        #[arg(default_value = "global")]
        target: String,
    },
    /// Open it in $EDITOR (vi when unset); the next message reads it.
    Edit {
        #[arg(default_value = "global")]
        target: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SkillsCommand {
    /// One line each: name, source (shipped or workspace), profiles.
    List,
}

#[derive(Debug, Subcommand)]
pub enum PairCommand {
    /// The codes waiting, with who got each.
    List,
    /// Register the person who got CODE (profile member), as `pair CODE`
    /// in the main chat does.
    Approve { code: String },
}

#[derive(Debug, Subcommand)]
pub enum ApiKeysCommand {
    /// Make a key; it is printed once and only its hash is kept.
    Create {
        /// The key's name (1 to 48 of a-z, 0-9, '-', '_').
        name: String,
        /// The API conversation the key may use (default: its name).
        #[arg(long)]
        conversation: Option<String>,
        /// The profile its conversation gets when the key creates it:
        /// main, member (default) or guest.
        #[arg(long)]
        profile: Option<String>,
    },
    /// Every key (never the keys themselves).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Refuse a key from now on.
    Revoke { name: String },
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
        /// What its agent may do: main, member or guest (default: main for
        /// the main chat, guest for groups, member for other chats).
        #[arg(long)]
        profile: Option<String>,
    },
    /// Change what a registered chat's agent may do; its next prompt uses it.
    SetProfile {
        /// The chat's JID.
        jid: String,
        /// main, member or guest.
        profile: String,
    },
    /// Stop answering in a chat (its memory is kept).
    Unregister { jid: String },
    /// Set the model a chat's prompts use (as `/model` does in the chat).
    SetModel {
        /// The chat's JID.
        jid: String,
        /// provider/model, or "default" for OPENCODE_MODEL / OpenCode's own.
        model: String,
    },
    /// Let senders steer a chat (`/new`, `/stop`, `/model`, `/compact`,
    /// `/tasks`); in a group with a list, only they start the assistant.
    Allow {
        /// The chat's JID.
        jid: String,
        /// Each sender's JID (<digits>@s.whatsapp.net or <id>@lid).
        #[arg(required = true)]
        senders: Vec<String>,
    },
    /// Take senders off a chat's list (an empty list: anyone may start it).
    Disallow {
        /// The chat's JID.
        jid: String,
        #[arg(required = true)]
        senders: Vec<String>,
    },
}

fn parse_profile(s: &str) -> Result<Profile, CliError> {
    s.trim()
        .to_ascii_lowercase()
        .parse()
        .map_err(|_| CliError::Usage(format!("unknown profile {s:?}: use main, member or guest")))
}

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

#[derive(Debug, Subcommand)]
pub enum WhatsappCommand {
    /// Unlink this device from WhatsApp and remove its local store (stop the bridge first).
    Logout {
        /// Remove the local store even if WhatsApp cannot be reached to unlink
        /// (then also remove the device in the phone's Linked devices).
        #[arg(long)]
        force: bool,
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
        Command::Chats { command } => chats(&config, command).await,
        Command::Tasks { command } => tasks_cmd(&config, command).await,
        Command::Whatsapp {
            command: WhatsappCommand::Logout { force },
        } => whatsapp_logout(&config, force).await,
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
            let skills = crate::profiles::Skills::from_config(&config);
            let list = crate::memory::list(&config.workspace);
            for s in &list {
                let mut who = vec!["main"];
                if skills.member.allows(&s.name) {
                    who.push("member");
                }
                if skills.guest.allows(&s.name) {
                    who.push("guest");
                }
                println!(
                    "{:<20} {:<9} {:<18} {}",
                    s.name,
                    s.source,
                    who.join(","),
                    s.description
                );
            }
            if list.is_empty() {
                println!("No skills.");
            }
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
    }
}

/// The running bridge's HTTP API: its address (what it wrote at start,
/// else the setting) and its token (`PB_HTTP_TOKEN`, else the file the
/// bridge wrote).
pub struct Api {
    pub addr: String,
    pub token: Option<crate::config::Secret>,
    http: reqwest::Client,
}

impl Api {
    pub fn new(config: &Config, timeout: std::time::Duration) -> Self {
        let token = config.http_token.clone().or_else(|| {
            std::fs::read_to_string(config.token_file())
                .ok()
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
                .map(crate::config::Secret::new)
        });
        Api {
            addr: bridge_addr(config),
            token,
            http: reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .expect("a client with a timeout builds"),
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self
            .http
            .request(method, format!("http://{}{path}", self.addr));
        match &self.token {
            Some(t) => r.bearer_auth(t.expose()),
            None => r,
        }
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::GET, path)
    }

    /// `GET path` as JSON, if the bridge answers with a success.
    async fn get_json(&self, path: &str) -> Option<serde_json::Value> {
        let r = self.get(path).send().await.ok()?;
        if !r.status().is_success() {
            return None;
        }
        r.json().await.ok()
    }
}

async fn doctor(config: &Config, json: bool) -> Result<(), CliError> {
    let api = Api::new(config, std::time::Duration::from_secs(5));
    let running = api.get_json("/status").await;
    let checks = crate::doctor::run(
        config,
        &crate::doctor::BridgeApi {
            addr: api.addr.clone(),
            token: api.token.clone(),
        },
        running,
    )
    .await;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&checks).unwrap_or_default()
        );
    } else {
        print!("{}", crate::doctor::render(&checks));
    }
    if crate::doctor::broken(&checks) {
        Err(CliError::Broken)
    } else {
        Ok(())
    }
}

async fn backup(config: Config, file: PathBuf, verify: bool) -> Result<(), CliError> {
    let (manifest, verified) = tokio::task::spawn_blocking(move || {
        let m = crate::backup::backup(&config, &file)?;
        let v = if verify {
            Some(crate::backup::verify(&config, &file)?)
        } else {
            None
        };
        Ok::<_, crate::backup::BackupError>((m, v))
    })
    .await
    .map_err(|e| CliError::Usage(format!("backup task failed: {e}")))??;
    println!(
        "Backed up the store (schema {}){}, {} file(s) of the chats' folders.",
        manifest.schema_version,
        if manifest.device_store {
            ", the WhatsApp device keys"
        } else {
            ""
        },
        manifest.chat_files
    );
    if let Some(v) = verified {
        println!(
            "Verified: integrity ok, schema version {}, {} registered chat(s), {} message(s).",
            v.manifest.schema_version, v.chats_registered, v.messages
        );
    }
    Ok(())
}

async fn restore(config: Config, file: PathBuf, force: bool) -> Result<(), CliError> {
    let v = tokio::task::spawn_blocking(move || crate::backup::restore(&config, &file, force))
        .await
        .map_err(|e| CliError::Usage(format!("restore task failed: {e}")))??;
    println!(
        "Restored the backup of {} (schema {}): {} registered chat(s), {} message(s){}. Start the bridge.",
        chrono::DateTime::from_timestamp_millis(v.manifest.created_at_ms)
            .map(|t| t.to_rfc3339())
            .unwrap_or_default(),
        v.manifest.schema_version,
        v.chats_registered,
        v.messages,
        if v.manifest.device_store {
            ", the WhatsApp device keys"
        } else {
            ""
        }
    );
    Ok(())
}

async fn health(config: &Config) -> Result<(), CliError> {
    let api = Api::new(config, std::time::Duration::from_secs(3));
    let addr = api.addr.clone();
    let unhealthy = |why: String| CliError::Unhealthy(format!("bridge at {addr}: {why}"));
    let response = api
        .get("/health")
        .send()
        .await
        .map_err(|e| unhealthy(format!("no answer ({e})")))?;
    let ok = response.status().is_success();
    let h: serde_json::Value = response
        .json()
        .await
        .map_err(|e| unhealthy(format!("unreadable answer ({e})")))?;
    let codes: Vec<&str> = h["codes"]
        .as_array()
        .map(|c| c.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    println!(
        "{} {}",
        h["status"].as_str().unwrap_or("?"),
        codes.join(" ")
    );
    if ok {
        Ok(())
    } else {
        Err(unhealthy(format!("status {}", h["status"])))
    }
}

async fn api_keys(config: &Config, command: ApiKeysCommand) -> Result<(), CliError> {
    let store = open_store(config)?;
    match command {
        ApiKeysCommand::Create {
            name,
            conversation,
            profile,
        } => {
            ChatJid::api(&name).map_err(|_| {
                CliError::Usage(format!(
                    "invalid key name {name:?}: {}",
                    crate::ids::CONVERSATION_RULE
                ))
            })?;
            let conversation = conversation.unwrap_or_else(|| name.clone());
            ChatJid::api(&conversation).map_err(|e| CliError::Usage(e.to_string()))?;
            let profile = match profile {
                Some(p) => parse_profile(&p)?,
                None => Profile::Member,
            };
            let key = store.create_api_key(&name, &conversation, profile).await?;
            println!("{key}");
            eprintln!(
                "API key {name:?} for the conversation api:{conversation} (profile {profile}). It is shown only now: keep it. Use it as: Authorization: Bearer <key>"
            );
            Ok(())
        }
        ApiKeysCommand::List { json } => {
            let keys = store.api_keys().await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&keys).unwrap_or_default()
                );
                return Ok(());
            }
            if keys.is_empty() {
                println!("No API keys.");
                return Ok(());
            }
            let when = |ms: Option<i64>| {
                ms.and_then(chrono::DateTime::from_timestamp_millis)
                    .map(|t| {
                        t.with_timezone(&config.tz)
                            .format("%Y-%m-%d %H:%M")
                            .to_string()
                    })
                    .unwrap_or_else(|| "-".into())
            };
            println!(
                "{:<20} {:<12} {:<24} {:<8} {:<17} {:<17} STATE",
                "NAME", "PREFIX", "CONVERSATION", "PROFILE", "CREATED", "LAST USED"
            );
            for k in keys {
                let state = if k.revoked_at.is_some() {
                    "revoked"
                } else {
                    "live"
                };
                println!(
                    "{:<20} {:<12} {:<24} {:<8} {:<17} {:<17} {state}",
                    k.name,
                    k.prefix,
                    format!("api:{}", k.conversation),
                    k.profile,
                    when(Some(k.created_at)),
                    when(k.last_used_at)
                );
            }
            Ok(())
        }
        ApiKeysCommand::Revoke { name } => {
            if store.revoke_api_key(&name).await? {
                println!("Revoked the API key {name:?}; it is refused from now on.");
                Ok(())
            } else {
                Err(CliError::Usage(format!("no live API key named {name:?}")))
            }
        }
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
            let mut models = std::collections::HashMap::new();
            for c in chats.iter().filter(|c| c.registered.is_some()) {
                if let Some(m) = store.chat_model(&c.jid).await? {
                    models.insert(c.jid.clone(), m);
                }
            }
            if json {
                let rows: Vec<_> = chats
                    .iter()
                    .map(|c| {
                        serde_json::json!({
                            "jid": c.jid, "name": c.name, "is_group": c.is_group,
                            "last_activity_ms": c.last_activity_ms,
                            "registered": c.registered.as_ref().map(|r| serde_json::json!({
                                "name": r.name, "folder": r.folder, "main": r.is_main, "trigger": r.trigger.to_string(), "profile": r.profile,
                                "model": models.get(&c.jid),
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
                let model = models
                    .get(&c.jid)
                    .map(|m| format!(", {m}"))
                    .unwrap_or_default();
                let reg = match &c.registered {
                    Some(r) if r.is_main => format!("main ({}, {}{model})", r.folder, r.profile),
                    Some(r) => format!("yes ({}, {}, {}{model})", r.folder, r.trigger, r.profile),
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
            profile,
        } => {
            let jid = ChatJid::parse(&jid).map_err(|e| CliError::Usage(e.to_string()))?;
            let profile = match profile {
                Some(p) => parse_profile(&p)?,
                None => Profile::default_for(&jid, main),
            };
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
                profile,
            };
            store.register(reg).await?;
            let dir = crate::workspace::ensure_chat_dir(&config.workspace, &folder, &name, &jid)?;
            println!(
                "Registered {jid} as {name:?}{} with profile {profile} in {}",
                if main { " (main)" } else { "" },
                dir.display()
            );
            Ok(())
        }
        ChatsCommand::SetProfile { jid, profile } => {
            let jid = ChatJid::parse(&jid).map_err(|e| CliError::Usage(e.to_string()))?;
            let profile = parse_profile(&profile)?;
            if store.set_profile(&jid, profile).await? {
                println!("{jid} now has profile {profile}; its next prompt uses it.");
                Ok(())
            } else {
                Err(CliError::Usage(format!("{jid} is not registered")))
            }
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
        ChatsCommand::SetModel { jid, model } => {
            let jid = registered_jid(&store, &jid).await?;
            let model = model.trim();
            if model.eq_ignore_ascii_case("default") {
                store.set_chat_model(&jid, None).await?;
                println!("{jid} uses the default model again.");
            } else {
                let m: crate::config::ModelRef =
                    model.parse().map_err(|e: String| CliError::Usage(e))?;
                store.set_chat_model(&jid, Some(model)).await?;
                println!(
                    "{jid} now uses {}/{} from its next prompt (`/model` in the chat lists what OpenCode offers).",
                    m.provider, m.model
                );
            }
            Ok(())
        }
        ChatsCommand::Allow { jid, senders } => set_senders(&store, &jid, senders, true).await,
        ChatsCommand::Disallow { jid, senders } => set_senders(&store, &jid, senders, false).await,
    }
}

/// `pocketbrain memory`.
async fn memory_cmd(config: &Config, command: MemoryCommand) -> Result<(), CliError> {
    let (MemoryCommand::Show { target } | MemoryCommand::Edit { target }) = &command;
    let path = if target.eq_ignore_ascii_case("global") {
        crate::memory::install(&config.workspace)?
    } else {
        let store = open_store(config)?;
        let jid = registered_jid(&store, target).await?;
        let reg = store
            .registered(&jid)
            .await?
            .ok_or_else(|| CliError::Usage(format!("{jid} is not registered")))?;
        crate::workspace::chat_dir(&config.workspace, &reg)?.join("AGENTS.md")
    };
    match command {
        MemoryCommand::Show { .. } => {
            print!("{}", std::fs::read_to_string(&path)?);
            Ok(())
        }
        MemoryCommand::Edit { .. } => {
            let editor = std::env::var("VISUAL")
                .or_else(|_| std::env::var("EDITOR"))
                .unwrap_or_else(|_| "vi".into());
            // The editor may be a command with arguments ("code -w").
            let status = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("{editor} \"$1\""))
                .arg("editor")
                .arg(&path)
                .status()?;
            if !status.success() {
                return Err(CliError::Usage(format!("{editor} exited with {status}")));
            }
            println!("Saved {}; the next message reads it.", path.display());
            Ok(())
        }
    }
}

/// `pocketbrain pair`.
async fn pair_cmd(config: &Config, command: PairCommand) -> Result<(), CliError> {
    let store = open_store(config)?;
    match command {
        PairCommand::List => {
            let open = store.open_pairings().await?;
            if open.is_empty() {
                println!("No pairing codes are waiting.");
            }
            for p in open {
                let until = chrono::DateTime::from_timestamp_millis(p.expires_at)
                    .map(|t| t.with_timezone(&config.tz).format("%H:%M").to_string())
                    .unwrap_or_default();
                println!(
                    "{}  {}  {}  (until {until})",
                    p.code,
                    p.chat,
                    p.sender_name.unwrap_or_default()
                );
            }
            Ok(())
        }
        PairCommand::Approve { code } => {
            let (name, reg) =
                crate::commands::pair_by_code(&store, &config.workspace, &code)
                    .await
                    .map_err(CliError::Usage)?
                    .ok_or_else(|| {
                        CliError::Usage(format!(
                            "no pairing code {code:?} is waiting (codes last an hour; `pocketbrain pair list`)"
                        ))
                    })?;
            println!(
                "Paired: {name} ({}) may now talk to the assistant (profile member, folder {}).",
                reg.jid, reg.folder
            );
            Ok(())
        }
    }
}

/// A registered chat's JID from the command line.
async fn registered_jid(store: &Store, jid: &str) -> Result<ChatJid, CliError> {
    let jid = ChatJid::parse(jid).map_err(|e| CliError::Usage(e.to_string()))?;
    match store.registered(&jid).await? {
        Some(r) => Ok(r.jid),
        None => Err(CliError::Usage(format!("{jid} is not registered"))),
    }
}

/// `chats allow` / `chats disallow`.
async fn set_senders(
    store: &Store,
    jid: &str,
    senders: Vec<String>,
    allow: bool,
) -> Result<(), CliError> {
    let jid = registered_jid(store, jid).await?;
    let mut checked = Vec::new();
    for s in senders {
        let sender = ChatJid::parse(s.trim())
            .ok()
            .filter(|j| !j.is_group() && !j.is_api())
            .ok_or_else(|| {
                CliError::Usage(format!(
                    "{s:?} is not a person's JID (<digits>@s.whatsapp.net or <id>@lid)"
                ))
            })?;
        checked.push(sender.as_str().to_owned());
    }
    let list = store.set_senders(&jid, checked, allow).await?;
    if list.is_empty() {
        println!("{jid} has no sender list: its owner alone steers it, and anyone may start it.");
    } else {
        println!("{jid} may be steered by: {}", list.join(", "));
        if jid.is_group() {
            println!(
                "Only they (and you) start the assistant there; others' messages are kept as context."
            );
        }
    }
    Ok(())
}

/// The operator's tool calls: the same code the agent's tools run, acting
/// with the main chat's reach.
async fn operator(
    config: &Config,
    store: &Store,
    caller: RegisteredChat,
    tool: &'static str,
    args: serde_json::Value,
) -> Result<serde_json::Value, CliError> {
    let tz = config.tz;
    let max_tasks_per_chat = config.max_tasks_per_chat;
    let caller = RegisteredChat {
        is_main: true,
        ..caller
    };
    let result =
        crate::tools::execute_outside_session(store, caller, tool, args, tz, max_tasks_per_chat)
            .await?
            .map_err(|e| CliError::Usage(e.message))?;
    poke_scheduler(config).await;
    Ok(result)
}

/// Tells a running bridge that tasks changed (best effort).
async fn poke_scheduler(config: &Config) {
    let api = Api::new(config, std::time::Duration::from_secs(2));
    let _ = api
        .request(reqwest::Method::POST, "/tasks/changed")
        .send()
        .await;
}

/// A task's chat, as the caller for operator commands.
async fn task_owner(store: &Store, id: &str) -> Result<RegisteredChat, CliError> {
    let id2 = id.to_owned();
    let task = store
        .call(move |c| crate::store::tasks::get(c, &id2))
        .await?;
    let task = task
        .ok_or_else(|| CliError::Usage(format!("no task {id:?}; see `pocketbrain tasks list`")))?;
    Ok(RegisteredChat {
        jid: task.chat.clone(),
        name: "operator".into(),
        folder: Folder::from_name("operator"),
        is_main: true,
        trigger: TriggerRule::Mention,
        profile: Profile::Main,
    })
}

async fn tasks_cmd(config: &Config, command: TasksCommand) -> Result<(), CliError> {
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
            let caller = store.registered(&jid).await?.ok_or_else(|| {
                CliError::Usage(format!("{jid} is not registered; register it first"))
            })?;
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
            });
            let v = operator(config, &store, caller, "schedule_task", args).await?;
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

async fn simple_task_op(
    config: &Config,
    store: &Store,
    tool: &'static str,
    id: String,
) -> Result<(), CliError> {
    let caller = task_owner(store, &id).await?;
    let v = operator(
        config,
        store,
        caller,
        tool,
        serde_json::json!({ "task_id": id }),
    )
    .await?;
    println!("{}", v["text"].as_str().unwrap_or_default());
    Ok(())
}

async fn whatsapp_logout(config: &Config, force: bool) -> Result<(), CliError> {
    if live_health(config).await.is_some() {
        return Err(CliError::Usage(
            "the bridge is running and holds the WhatsApp session; stop it first (docker compose stop bridge)".into(),
        ));
    }
    let db = config.whatsapp_db();
    if !db.exists() {
        println!(
            "No WhatsApp device store at {}; nothing to do.",
            db.display()
        );
        return Ok(());
    }
    let unlinked = crate::channel::whatsapp::unlink(&db, std::time::Duration::from_secs(30)).await;
    match (&unlinked, force) {
        (Ok(()), _) => println!("Unlinked this device from WhatsApp."),
        (Err(e), true) => println!(
            "Could not unlink through WhatsApp ({e}); removing the local store anyway. Remove the device in the phone's Linked devices."
        ),
        (Err(e), false) => {
            return Err(CliError::Usage(format!(
                "could not reach WhatsApp to unlink ({e}); the store was kept. Use --force to remove it anyway"
            )));
        }
    }
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let f = std::path::PathBuf::from(format!("{}{suffix}", db.display()));
        if f.exists() {
            std::fs::remove_file(&f)?;
        }
    }
    println!(
        "Removed {}. The next start shows a new QR code.",
        db.display()
    );
    Ok(())
}

async fn status(config: &Config, json: bool) -> Result<(), CliError> {
    let api = Api::new(config, std::time::Duration::from_secs(3));
    let from_bridge = api
        .get_json("/status")
        .await
        .and_then(|v| serde_json::from_value::<crate::status::Status>(v).ok());
    let st = match from_bridge {
        Some(st) => st,
        None => crate::status::from_store(&open_store(config)?).await?,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&st).unwrap_or_default());
    } else {
        print!("{}", crate::status::render_text(&st, config.tz));
    }
    Ok(())
}

/// The running bridge's `/health`, if it answers.
async fn live_health(config: &Config) -> Option<serde_json::Value> {
    Api::new(config, std::time::Duration::from_secs(3))
        .get("/health")
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

/// The running bridge's HTTP address: what it wrote at start, else the setting.
fn bridge_addr(config: &Config) -> String {
    std::fs::read_to_string(config.data_dir.join(crate::HTTP_ADDR_FILE))
        .ok()
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| config.http_addr.to_string())
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
