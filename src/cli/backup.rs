//! `pocketbrain backup` and `pocketbrain restore`.

use std::path::PathBuf;

use super::CliError;
use crate::config::Config;

pub(super) async fn backup(config: Config, file: PathBuf, verify: bool) -> Result<(), CliError> {
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

pub(super) async fn restore(config: Config, file: PathBuf, force: bool) -> Result<(), CliError> {
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
