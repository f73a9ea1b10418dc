//! `pocketbrain whatsapp logout` and `pocketbrain whatsapp link`.

use std::time::Duration;

use clap::Subcommand;

use super::CliError;
use super::bridge::{Api, live_health};
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
    /// Link WhatsApp again while the bridge runs (after it was logged out,
    /// banned or replaced): the running bridge starts a new device and this
    /// shows its QR code (or pairing code) until the phone has linked.
    Link {
        /// Pair by phone number instead of QR code (country code first, e.g.
        /// +49 151 12345678): shows a code to enter on the phone (WhatsApp →
        /// Linked devices → Link a device → Link with phone number instead).
        /// While the bridge pairs by QR code already, it switches to this.
        #[arg(long, value_parser = crate::config::parse_phone)]
        phone: Option<String>,
        /// Give up waiting for the phone after this long.
        #[arg(long, value_parser = crate::config::parse_duration, default_value = "5m")]
        wait: Duration,
    },
}

const LINK: &str = "/api/v1/whatsapp/link";

/// `pocketbrain whatsapp link`: asks the running bridge for a new link,
/// then follows the link's state, showing each code to link with on `out`.
pub(crate) async fn whatsapp_link(
    config: &Config,
    phone: Option<&str>,
    wait: Duration,
    out: &mut (dyn std::io::Write + Send),
) -> Result<(), CliError> {
    let api = Api::new(config, Duration::from_secs(10));
    let unreachable = |e: reqwest::Error| {
        CliError::Usage(format!(
            "the bridge does not answer at {} ({e}); start it (`pocketbrain serve`): an unlinked bridge shows its QR code in its log",
            api.addr
        ))
    };
    let mut req = api.request(reqwest::Method::POST, LINK);
    if let Some(p) = phone {
        req = req.json(&serde_json::json!({ "phone": p }));
    }
    let res = req.send().await.map_err(unreachable)?;
    let status = res.status();
    let body: serde_json::Value = res.json().await.unwrap_or_default();
    if !status.is_success() {
        let why = body["error"].as_str().unwrap_or("no reason given");
        return Err(CliError::Usage(format!(
            "the bridge refused a new link ({status}): {why}"
        )));
    }
    if body["started"] == true && phone.is_some() {
        writeln!(
            out,
            "The bridge is asking WhatsApp for a pairing code for +{}.",
            phone.unwrap_or_default()
        )?;
    } else if body["started"] == true {
        writeln!(out, "The bridge is starting a new WhatsApp link.")?;
    } else {
        writeln!(out, "The bridge is pairing already.")?;
    }
    let deadline = tokio::time::Instant::now() + wait;
    let mut shown = serde_json::Value::Null;
    loop {
        let Some(link) = api.get_json(LINK).await else {
            return Err(CliError::Usage(format!(
                "the bridge stopped answering at {}",
                api.addr
            )));
        };
        if link["up"] == true {
            writeln!(out, "Linked: WhatsApp is connected.")?;
            return Ok(());
        }
        let pairing = &link["pairing"];
        if !pairing.is_null() && *pairing != shown {
            show_pairing(pairing, out)?;
            shown = pairing.clone();
        }
        let code = link["code"].as_str().unwrap_or("");
        if !matches!(
            code,
            "whatsapp-connecting" | "whatsapp-pairing" | "fake-pairing"
        ) {
            return Err(CliError::Usage(format!(
                "the link did not come up: {code}: {}",
                link["message"].as_str().unwrap_or("")
            )));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(CliError::Usage(format!(
                "not linked within {} s; the bridge keeps showing fresh codes in its log (`pocketbrain whatsapp link` again to see them here)",
                wait.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Prints a code to link with: a QR code as a block, or a pairing code.
fn show_pairing(
    pairing: &serde_json::Value,
    out: &mut (dyn std::io::Write + Send),
) -> std::io::Result<()> {
    let code = pairing["code"].as_str().unwrap_or("");
    if pairing["kind"] == "qr" {
        let block = crate::channel::whatsapp::render_qr(code).unwrap_or_default();
        writeln!(
            out,
            "Scan this QR code with WhatsApp (Settings → Linked devices → Link a device):\n{block}"
        )
    } else {
        writeln!(
            out,
            "Pairing code: {}  (on the phone: WhatsApp → Settings → Linked devices → Link a device → Link with phone number instead, and type it)",
            crate::channel::whatsapp::group_code(code)
        )
    }
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
