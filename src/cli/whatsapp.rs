//! `pocketbrain whatsapp logout`.

use clap::Subcommand;

use super::CliError;
use super::bridge::live_health;
use crate::config::Config;

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

pub(super) async fn whatsapp_logout(config: &Config, force: bool) -> Result<(), CliError> {
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
