//! `pocketbrain api-keys`: keys for the local API.

use clap::Subcommand;

use super::chats::parse_profile;
use super::{CliError, open_store};
use crate::config::Config;
use crate::ids::ChatJid;
use crate::model::Profile;

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

pub(super) async fn api_keys(config: &Config, command: ApiKeysCommand) -> Result<(), CliError> {
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
