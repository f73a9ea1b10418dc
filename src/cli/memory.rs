//! `pocketbrain memory` and `pocketbrain skills`.

use clap::Subcommand;

use super::chats::registered_jid;
use super::{CliError, open_store};
use crate::config::Config;

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

/// `pocketbrain memory`.
pub(super) async fn memory_cmd(config: &Config, command: MemoryCommand) -> Result<(), CliError> {
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

/// `pocketbrain skills list`.
pub(super) fn skills_list(config: &Config) {
    let skills = crate::profiles::Skills::from_config(config);
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
}
