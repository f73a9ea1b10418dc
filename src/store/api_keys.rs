//! The local API's keys and the conversation queries its routes need.
//!
//! A key is shown once, when it is made; only its SHA-256 is stored, so a
//! copy of the database does not hand out working keys. Each key is pinned
//! to one API conversation and carries the profile that conversation gets
//! when the key first creates it.

use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

use super::{Result, Store, StoreError, jid, now_ms};
use crate::ids::ChatJid;
use crate::model::Profile;

/// Every key starts with this, so a leaked one is recognisable.
pub const KEY_PREFIX: &str = "pb_";

/// One API key, as stored (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ApiKey {
    pub name: String,
    /// The key's first characters, to tell keys apart.
    pub prefix: String,
    /// The API conversation the key may use (`api:<conversation>`).
    pub conversation: String,
    pub profile: Profile,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl ApiKey {
    /// The key's conversation as a chat.
    pub fn chat(&self) -> ChatJid {
        ChatJid::api(&self.conversation).expect("stored conversation names were checked")
    }
}

/// The hex SHA-256 of a key, as stored.
pub fn hash_key(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A fresh random key: [`KEY_PREFIX`] and 40 hex digits (160 bits).
pub fn new_key() -> String {
    use rand::RngExt;
    let mut rng = rand::rng();
    let (a, b): (u128, u32) = (rng.random(), rng.random());
    format!("{KEY_PREFIX}{a:032x}{b:08x}")
}

/// One message of an API conversation, either way.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConversationMessage {
    /// `in` (to the assistant) or `out` (from it).
    pub direction: &'static str,
    pub id: String,
    pub text: String,
    /// Unix milliseconds.
    pub at: i64,
    /// For `out`: the outbox state (pending, sent, ..., failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// For `in`: the message's place in the store's arrival order (what a
    /// read mark names, `POST /api/v1/chats/{chat}/read`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<i64>,
}

fn key_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApiKey> {
    Ok(ApiKey {
        name: r.get(0)?,
        prefix: r.get(1)?,
        conversation: r.get(2)?,
        profile: r.get(3)?,
        created_at: r.get(4)?,
        last_used_at: r.get(5)?,
        revoked_at: r.get(6)?,
    })
}

const KEY_COLUMNS: &str =
    "name, prefix, conversation, profile, created_at, last_used_at, revoked_at";

impl Store {
    /// Makes a key named `name` for `conversation`; returns the key, which
    /// is not stored and cannot be shown again.
    pub async fn create_api_key(
        &self,
        name: &str,
        conversation: &str,
        profile: Profile,
    ) -> Result<String> {
        let key = new_key();
        let (name, conversation, hash) = (name.to_owned(), conversation.to_owned(), hash_key(&key));
        let prefix = key[..KEY_PREFIX.len() + 6].to_owned();
        self.tx(move |tx| {
            let exists: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM api_keys WHERE name = ?1)",
                params![name],
                |r| r.get(0),
            )?;
            if exists {
                return Err(StoreError::Conflict(format!(
                    "an API key named {name:?} exists already (revoked keys keep their name)"
                )));
            }
            tx.execute(
                "INSERT INTO api_keys (name, hash, prefix, conversation, profile, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![name, hash, prefix, conversation, profile, now_ms()],
            )?;
            Ok(())
        })
        .await?;
        Ok(key)
    }

    /// Every key, newest first.
    pub async fn api_keys(&self) -> Result<Vec<ApiKey>> {
        self.call(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at DESC, name"
            ))?;
            Ok(stmt
                .query_map([], key_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    /// Revokes a key; returns whether a live key had that name.
    pub async fn revoke_api_key(&self, name: &str) -> Result<bool> {
        let name = name.to_owned();
        self.call(move |c| {
            Ok(c.execute(
                "UPDATE api_keys SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
                params![name, now_ms()],
            )? > 0)
        })
        .await
    }

    /// Whether the key named `name` is still live (not revoked). Only
    /// reads: an open WebSocket asks this every second.
    pub async fn api_key_live(&self, name: &str) -> Result<bool> {
        let name = name.to_owned();
        self.call(move |c| {
            Ok(c.query_row(
                "SELECT EXISTS (SELECT 1 FROM api_keys WHERE name = ?1 AND revoked_at IS NULL)",
                params![name],
                |r| r.get(0),
            )?)
        })
        .await
    }

    /// The live key `key` is, noting its use; `None` for an unknown or
    /// revoked key.
    pub async fn api_key_for(&self, key: &str) -> Result<Option<ApiKey>> {
        let hash = hash_key(key);
        self.call(move |c| {
            let found = c
                .query_row(
                    &format!(
                        "SELECT {KEY_COLUMNS} FROM api_keys WHERE hash = ?1 AND revoked_at IS NULL"
                    ),
                    params![hash],
                    key_row,
                )
                .optional()?;
            if found.is_some() {
                c.execute(
                    "UPDATE api_keys SET last_used_at = ?2 WHERE hash = ?1",
                    params![hash, now_ms()],
                )?;
            }
            Ok(found)
        })
        .await
    }

    /// The highest outbox seq so far (0 when empty): rows queued after a
    /// moment are those above it.
    pub async fn outbox_mark(&self) -> Result<i64> {
        self.call(
            |c| Ok(c.query_row("SELECT COALESCE(MAX(seq), 0) FROM outbox", [], |r| r.get(0))?),
        )
        .await
    }

    /// Whether the agent has taken message `seq` of `chat` (its cursor is
    /// at or past it), and the chat's outbox rows above `mark`, in order
    /// (`(id, text, state)`), read together.
    pub async fn answered_since(
        &self,
        chat: &ChatJid,
        seq: i64,
        mark: i64,
    ) -> Result<(bool, Vec<(String, String, String)>)> {
        let chat = chat.clone();
        self.call(move |c| {
            let cursor: i64 = c
                .query_row(
                    "SELECT seq FROM cursors WHERE chat = ?1",
                    params![chat.as_str()],
                    |r| r.get(0),
                )
                .optional()?
                .unwrap_or(0);
            let mut stmt = c.prepare_cached(
                "SELECT id, text, state FROM outbox WHERE chat = ?1 AND seq > ?2 ORDER BY seq",
            )?;
            let rows = stmt
                .query_map(params![chat.as_str(), mark], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            // A message the bridge handled itself (a chat command) moves no
            // cursor: it is answered once its answer is queued.
            let handled: bool = c
                .query_row(
                    "SELECT handled FROM messages WHERE chat = ?1 AND seq = ?2",
                    params![chat.as_str(), seq],
                    |r| r.get(0),
                )
                .optional()?
                .unwrap_or(false);
            Ok((cursor >= seq || (handled && !rows.is_empty()), rows))
        })
        .await
    }

    /// The seq a stored message got.
    pub async fn message_seq(&self, chat: &ChatJid, id: &str) -> Result<Option<i64>> {
        let (chat, id) = (chat.clone(), id.to_owned());
        self.call(move |c| {
            Ok(c.query_row(
                "SELECT seq FROM messages WHERE chat = ?1 AND id = ?2",
                params![chat.as_str(), id],
                |r| r.get(0),
            )
            .optional()?)
        })
        .await
    }

    /// The registered API conversations.
    pub async fn api_chats(&self) -> Result<Vec<crate::model::RegisteredChat>> {
        self.call(|c| {
            let mut stmt =
                c.prepare("SELECT jid FROM registered_chats WHERE jid LIKE 'api:%' ORDER BY jid")?;
            let jids = stmt
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut out = Vec::new();
            for j in jids {
                if let Some(reg) = super::registered_in(c, &jid(j)?)? {
                    out.push(reg);
                }
            }
            Ok(out)
        })
        .await
    }

    /// The newest `limit` messages of `chat` both ways, oldest first.
    pub async fn recent_messages(
        &self,
        chat: &ChatJid,
        limit: usize,
    ) -> Result<Vec<ConversationMessage>> {
        let chat = chat.clone();
        self.call(move |c| recent_in(c, &chat, limit)).await
    }

    /// Forgets an API conversation: registration, messages, cursor,
    /// session, outbox, run record, tasks and approval rules. Returns
    /// whether it was registered.
    pub async fn forget_chat(&self, chat: &ChatJid) -> Result<bool> {
        let chat = chat.clone();
        self.tx(move |tx| {
            let was = super::registered_in(tx, &chat)?.is_some();
            let c = chat.as_str();
            for sql in [
                "DELETE FROM registered_chats WHERE jid = ?1",
                "DELETE FROM chats WHERE jid = ?1",
                "DELETE FROM messages WHERE chat = ?1",
                "DELETE FROM cursors WHERE chat = ?1",
                "DELETE FROM sessions WHERE chat = ?1",
                "DELETE FROM outbox WHERE chat = ?1",
                "DELETE FROM runs WHERE chat = ?1",
                "DELETE FROM task_runs WHERE chat = ?1",
                "DELETE FROM task_sessions WHERE task_id IN (SELECT id FROM tasks WHERE chat = ?1)",
                "DELETE FROM tasks WHERE chat = ?1",
                "DELETE FROM approval_rules WHERE chat = ?1",
                "DELETE FROM read_marks WHERE chat = ?1",
            ] {
                tx.execute(sql, params![c])?;
            }
            Ok(was)
        })
        .await
    }
}

fn recent_in(c: &Connection, chat: &ChatJid, limit: usize) -> Result<Vec<ConversationMessage>> {
    let mut stmt = c.prepare_cached(
        "SELECT * FROM (
           SELECT 'in' AS dir, id, text, timestamp AS at, NULL AS state, seq, 0 AS side
             FROM messages WHERE chat = ?1 AND is_echo = 0
           UNION ALL
           SELECT 'out', id, text, created_at, state, seq, 1 FROM outbox WHERE chat = ?1
           ORDER BY at DESC, side DESC, seq DESC LIMIT ?2)
         ORDER BY at, side, seq",
    )?;
    let rows = stmt
        .query_map(params![chat.as_str(), limit as i64], |r| {
            let dir: String = r.get(0)?;
            let inbound = dir == "in";
            Ok(ConversationMessage {
                direction: if inbound { "in" } else { "out" },
                id: r.get(1)?,
                text: r.get(2)?,
                at: r.get(3)?,
                state: r.get(4)?,
                seq: if inbound { Some(r.get(5)?) } else { None },
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keys_are_stored_hashed_found_by_key_and_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("pb.sqlite3")).unwrap();
        let key = store
            .create_api_key("laptop", "notes", Profile::Guest)
            .await
            .unwrap();
        assert!(key.starts_with(KEY_PREFIX) && key.len() == KEY_PREFIX.len() + 40);
        // Nothing stored equals the key.
        let raw: Vec<String> = store
            .call(|c| {
                let mut s = c.prepare("SELECT hash || prefix FROM api_keys")?;
                Ok(s.query_map([], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?)
            })
            .await
            .unwrap();
        assert!(!raw[0].contains(&key));
        let found = store.api_key_for(&key).await.unwrap().unwrap();
        assert_eq!(
            (found.name.as_str(), found.profile),
            ("laptop", Profile::Guest)
        );
        assert_eq!(found.chat().as_str(), "api:notes");
        assert!(store.api_key_for("pb_wrong").await.unwrap().is_none());
        assert!(matches!(
            store.create_api_key("laptop", "x", Profile::Member).await,
            Err(StoreError::Conflict(_))
        ));
        assert!(store.revoke_api_key("laptop").await.unwrap());
        assert!(!store.revoke_api_key("laptop").await.unwrap());
        assert!(store.api_key_for(&key).await.unwrap().is_none());
        let listed = store.api_keys().await.unwrap();
        assert!(listed[0].revoked_at.is_some() && listed[0].last_used_at.is_some());
    }
}
