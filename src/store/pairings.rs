//! Pairing codes for direct messages from people not registered (see
//! [`crate::commands`], `PB_UNKNOWN_DM`).

use rusqlite::{Connection, OptionalExtension, params};

use super::{Result, Store, jid, now_ms};
use crate::ids::ChatJid;

/// How long a code is valid, and how often one chat may be offered one.
pub const PAIRING_TTL_MS: i64 = 3_600_000;

/// A pairing code waiting for the owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pairing {
    pub code: String,
    pub chat: ChatJid,
    pub sender_name: Option<String>,
    pub expires_at: i64,
}

/// Whether `chat` holds a code still valid (its one reply may be sent).
pub(crate) fn offer_open(c: &Connection, chat: &ChatJid) -> Result<bool> {
    Ok(c
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM pairings WHERE chat = ?1 AND expires_at > ?2 AND approved_at IS NULL)",
        )?
        .query_row(params![chat.as_str(), now_ms()], |r| r.get(0))?)
}

impl Store {
    /// Offers `chat` a pairing code, unless it was offered one in the last
    /// hour: `Some(code)` when a new one was made. Codes are six
    /// characters from an alphabet without look-alikes, never reused.
    pub async fn offer_pairing(
        &self,
        chat: &ChatJid,
        sender_name: Option<String>,
    ) -> Result<Option<String>> {
        let chat = chat.clone();
        self.tx(move |tx| {
            let now = now_ms();
            let recent: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM pairings WHERE chat = ?1 AND created_at > ?2)",
                params![chat.as_str(), now - PAIRING_TTL_MS],
                |r| r.get(0),
            )?;
            if recent {
                return Ok(None);
            }
            let code = loop {
                let code = new_code();
                let taken: bool = tx.query_row(
                    "SELECT EXISTS (SELECT 1 FROM pairings WHERE code = ?1)",
                    params![code],
                    |r| r.get(0),
                )?;
                if !taken {
                    break code;
                }
            };
            tx.execute(
                "INSERT INTO pairings (code, chat, sender_name, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![code, chat.as_str(), sender_name, now, now + PAIRING_TTL_MS],
            )?;
            Ok(Some(code))
        })
        .await
    }

    /// Takes a valid code (any case): its pairing, marked approved; `None`
    /// for an unknown, expired or used code.
    pub async fn take_pairing(&self, code: &str) -> Result<Option<Pairing>> {
        let code = code.trim().to_ascii_uppercase();
        self.tx(move |tx| {
            let now = now_ms();
            let found = tx
                .query_row(
                    "SELECT chat, sender_name, expires_at FROM pairings
                     WHERE code = ?1 AND expires_at > ?2 AND approved_at IS NULL",
                    params![code, now],
                    |r| Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            let Some((chat, sender_name, expires_at)) = found else {
                return Ok(None);
            };
            tx.execute(
                "UPDATE pairings SET approved_at = ?2 WHERE code = ?1",
                params![code, now],
            )?;
            Ok(Some(Pairing {
                code,
                chat: jid(chat)?,
                sender_name,
                expires_at,
            }))
        })
        .await
    }

    /// Codes still waiting for the owner, newest first.
    pub async fn open_pairings(&self) -> Result<Vec<Pairing>> {
        self.call(|c| {
            let mut stmt = c.prepare(
                "SELECT code, chat, sender_name, expires_at FROM pairings
                 WHERE expires_at > ?1 AND approved_at IS NULL ORDER BY created_at DESC",
            )?;
            let rows = stmt
                .query_map(params![now_ms()], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get(2)?,
                        r.get(3)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.into_iter()
                .map(|(code, chat, sender_name, expires_at)| {
                    Ok(Pairing {
                        code,
                        chat: jid(chat)?,
                        sender_name,
                        expires_at,
                    })
                })
                .collect()
        })
        .await
    }
}

/// Six characters from 32 that cannot be mistaken for one another.
fn new_code() -> String {
    use rand::RngExt;
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..6)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}
