//! `pocketbrain chats`: list, register, unregister and steer chats.

use clap::Subcommand;

use super::{CliError, open_store};
use crate::config::Config;
use crate::ids::{ChatJid, Folder};
use crate::model::{Profile, RegisteredChat, TriggerRule};
use crate::store::Store;

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
        /// provider/model, or "default" for PB_OPENCODE_MODEL / OpenCode's own.
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

pub(super) fn parse_profile(s: &str) -> Result<Profile, CliError> {
    s.trim()
        .to_ascii_lowercase()
        .parse()
        .map_err(|_| CliError::Usage(format!("unknown profile {s:?}: use main, member or guest")))
}

pub(super) async fn chats(config: &Config, command: ChatsCommand) -> Result<(), CliError> {
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

/// A registered chat's JID from the command line.
pub(super) async fn registered_jid(store: &Store, jid: &str) -> Result<ChatJid, CliError> {
    let jid = ChatJid::parse(jid).map_err(|e| CliError::Usage(e.to_string()))?;
    match store.registered(&jid).await? {
        Some(r) => Ok(r.jid),
        None => Err(CliError::Usage(format!("{jid} is not registered"))),
    }
}

/// `chats allow` / `chats disallow`.
pub(super) async fn set_senders(
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
