//! What a chat's owner steers from the chat (see [`crate::commands`]): its
//! own model, the senders allowed to steer it, and fresh sessions (`/new`)
//! that keep the old ones on record.

use rusqlite::{OptionalExtension, params};

use super::{Result, Store, now_ms};
use crate::ids::{ChatJid, SessionId};

impl Store {
    /// The chat's own model (`provider/model`), if one is set.
    pub async fn chat_model(&self, chat: &ChatJid) -> Result<Option<String>> {
        let chat = chat.clone();
        self.quick(move |c| {
            Ok(
                c.prepare_cached("SELECT model FROM chat_models WHERE chat = ?1")?
                    .query_row(params![chat.as_str()], |r| r.get(0))
                    .optional()?,
            )
        })
        .await
    }

    /// Sets (`Some`) or clears (`None`) the chat's own model.
    pub async fn set_chat_model(&self, chat: &ChatJid, model: Option<&str>) -> Result<()> {
        let (chat, model) = (chat.clone(), model.map(str::to_owned));
        self.call(move |c| {
            match model {
                Some(m) => c.execute(
                    "INSERT INTO chat_models (chat, model) VALUES (?1, ?2)
                     ON CONFLICT (chat) DO UPDATE SET model = excluded.model",
                    params![chat.as_str(), m],
                )?,
                None => c.execute(
                    "DELETE FROM chat_models WHERE chat = ?1",
                    params![chat.as_str()],
                )?,
            };
            Ok(())
        })
        .await
    }

    /// The senders allowed to steer the chat, sorted.
    pub async fn allowed_senders(&self, chat: &ChatJid) -> Result<Vec<String>> {
        let chat = chat.clone();
        self.call(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT sender FROM chat_senders WHERE chat = ?1 ORDER BY sender",
            )?;
            Ok(stmt
                .query_map(params![chat.as_str()], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?)
        })
        .await
    }

    /// Whether `sender`'s message may start a run in `chat`: the chat has
    /// no sender list, or `sender` is on it.
    pub async fn sender_may_start(&self, chat: &ChatJid, sender: &str) -> Result<bool> {
        let (chat, sender) = (chat.clone(), sender.to_owned());
        self.call(move |c| {
            Ok(c.prepare_cached(
                "SELECT NOT EXISTS (SELECT 1 FROM chat_senders WHERE chat = ?1)
                     OR EXISTS (SELECT 1 FROM chat_senders WHERE chat = ?1 AND sender = ?2)",
            )?
            .query_row(params![chat.as_str(), sender], |r| r.get(0))?)
        })
        .await
    }

    /// Adds (`allow`) or removes senders from the chat's list; returns the
    /// list after.
    pub async fn set_senders(
        &self,
        chat: &ChatJid,
        senders: Vec<String>,
        allow: bool,
    ) -> Result<Vec<String>> {
        let chat2 = chat.clone();
        self.tx(move |tx| {
            for s in &senders {
                if allow {
                    tx.execute(
                        "INSERT OR IGNORE INTO chat_senders (chat, sender) VALUES (?1, ?2)",
                        params![chat2.as_str(), s],
                    )?;
                } else {
                    tx.execute(
                        "DELETE FROM chat_senders WHERE chat = ?1 AND sender = ?2",
                        params![chat2.as_str(), s],
                    )?;
                }
            }
            Ok(())
        })
        .await?;
        self.allowed_senders(chat).await
    }

    /// Leaves the chat's session for a fresh one at its next run: the old
    /// one is kept on record as the chat's (and in OpenCode). Returns it.
    pub async fn retire_session(&self, chat: &ChatJid) -> Result<Option<SessionId>> {
        let chat = chat.clone();
        self.tx(move |tx| {
            let old: Option<String> = tx
                .query_row(
                    "SELECT session_id FROM sessions WHERE chat = ?1",
                    params![chat.as_str()],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(id) = &old {
                tx.execute(
                    "INSERT OR IGNORE INTO retired_sessions (session_id, chat, retired_at) VALUES (?1, ?2, ?3)",
                    params![id, chat.as_str(), now_ms()],
                )?;
                tx.execute(
                    "DELETE FROM sessions WHERE chat = ?1",
                    params![chat.as_str()],
                )?;
            }
            Ok(old.map(SessionId::new))
        })
        .await
    }

    /// When the chat's current session was made (ms), if it has one.
    pub async fn session_created_at(&self, chat: &ChatJid) -> Result<Option<i64>> {
        let chat = chat.clone();
        self.call(move |c| {
            Ok(c.query_row(
                "SELECT created_at FROM sessions WHERE chat = ?1",
                params![chat.as_str()],
                |r| r.get(0),
            )
            .optional()?)
        })
        .await
    }

    /// Messages of the chat not yet answered (after its cursor).
    pub async fn pending_count(&self, chat: &ChatJid) -> Result<i64> {
        let chat = chat.clone();
        self.call(move |c| {
            Ok(c.query_row(
                "SELECT COUNT(*) FROM messages m
                 WHERE m.chat = ?1 AND m.handled = 0 AND m.is_echo = 0
                   AND m.seq > COALESCE((SELECT seq FROM cursors WHERE chat = ?1), 0)",
                params![chat.as_str()],
                |r| r.get(0),
            )?)
        })
        .await
    }

    /// Drops the chat's unanswered messages (`/stop all`): the cursor moves
    /// past them; they stay stored. Returns how many there were.
    pub async fn skip_pending(&self, chat: &ChatJid) -> Result<i64> {
        let chat = chat.clone();
        self.tx(move |tx| {
            let (n, top): (i64, Option<i64>) = tx.query_row(
                "SELECT COUNT(*), MAX(m.seq) FROM messages m
                 WHERE m.chat = ?1 AND m.handled = 0 AND m.is_echo = 0
                   AND m.seq > COALESCE((SELECT seq FROM cursors WHERE chat = ?1), 0)",
                params![chat.as_str()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            if let Some(top) = top {
                tx.execute(
                    "INSERT INTO cursors (chat, seq) VALUES (?1, ?2)
                     ON CONFLICT (chat) DO UPDATE SET seq = MAX(cursors.seq, excluded.seq)",
                    params![chat.as_str(), top],
                )?;
            }
            Ok(n)
        })
        .await
    }

    /// Moves the chat's read mark forward to `seq` (never back): the
    /// owner has read the chat up to that message. The mark as it now is.
    pub async fn mark_read(&self, chat: &ChatJid, seq: i64) -> Result<i64> {
        let chat = chat.clone();
        self.call(move |c| {
            Ok(c.query_row(
                "INSERT INTO read_marks (chat, seq) VALUES (?1, ?2)
                 ON CONFLICT (chat) DO UPDATE SET seq = MAX(read_marks.seq, excluded.seq)
                 RETURNING seq",
                params![chat.as_str(), seq],
                |r| r.get(0),
            )?)
        })
        .await
    }

    /// The chat's read mark, its unread messages (from others, after the
    /// mark) and the seq of its newest message: `(mark, unread, newest)`.
    pub async fn read_state(&self, chat: &ChatJid) -> Result<(i64, i64, i64)> {
        let chat = chat.clone();
        self.call(move |c| {
            Ok(c.query_row(
                "SELECT mark,
                        (SELECT COUNT(*) FROM messages
                          WHERE chat = ?1 AND from_me = 0 AND is_echo = 0 AND seq > mark),
                        (SELECT COALESCE(MAX(seq), 0) FROM messages WHERE chat = ?1)
                   FROM (SELECT COALESCE((SELECT seq FROM read_marks WHERE chat = ?1), 0) AS mark)",
                params![chat.as_str()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?)
        })
        .await
    }
}
