//! `pocketbrain pair`: pairing codes of people who wrote unregistered.

use clap::Subcommand;

use super::{CliError, open_store};
use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum PairCommand {
    /// The codes waiting, with who got each.
    List,
    /// Register the person who got CODE (profile member), as `pair CODE`
    /// in the main chat does.
    Approve { code: String },
}

/// `pocketbrain pair`.
pub(super) async fn pair_cmd(config: &Config, command: PairCommand) -> Result<(), CliError> {
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
