//! Chats and who the agent answers: the chats seen, their registration,
//! LID/phone-number aliases (one person, one identity), and each chat's
//! OpenCode session.

use rusqlite::{Connection, OptionalExtension, params};

use super::{Result, Store, StoreError, jid, now_ms};
use crate::ids::{ChatJid, Folder, SessionId};
use crate::model::{Profile, RegisteredChat, TriggerRule};

/// A chat the bridge has seen, registered or not.
#[derive(Debug, Clone)]
pub struct ChatRow {
    pub jid: ChatJid,
    pub name: Option<String>,
    pub is_group: bool,
    pub last_activity_ms: i64,
    pub registered: Option<RegisteredChat>,
}

impl Store {
    /// The registration of `chat`, if any.
    pub async fn registered(&self, chat: &ChatJid) -> Result<Option<RegisteredChat>> {
        let chat = chat.clone();
        self.call(move |c| registered_in(c, &chat)).await
    }

    /// Registers a chat. The agent's cursor starts at the newest stored
    /// message, so history from before the registration is not dumped on it.
    pub async fn register(&self, reg: RegisteredChat) -> Result<()> {
        self.tx(move |tx| {
            if let Some(other) = tx
                .query_row(
                    "SELECT jid FROM registered_chats WHERE folder = ?1 AND jid != ?2",
                    params![reg.folder.as_str(), reg.jid.as_str()],
                    |r| r.get::<_, String>(0),
                )
                .optional()?
            {
                return Err(StoreError::Conflict(format!(
                    "folder {:?} is already used by {other}; pass --folder",
                    reg.folder.as_str()
                )));
            }
            if reg.is_main
                && let Some(other) = tx
                    .query_row(
                        "SELECT jid FROM registered_chats WHERE is_main = 1 AND jid != ?1",
                        params![reg.jid.as_str()],
                        |r| r.get::<_, String>(0),
                    )
                    .optional()?
            {
                return Err(StoreError::Conflict(format!(
                    "{other} is already the main chat; unregister it first"
                )));
            }
            tx.execute(
                "INSERT INTO registered_chats (jid, name, folder, is_main, trigger_rule, registered_at, profile)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (jid) DO UPDATE SET name = excluded.name, folder = excluded.folder,
                   is_main = excluded.is_main, trigger_rule = excluded.trigger_rule,
                   profile = excluded.profile",
                params![
                    reg.jid.as_str(),
                    reg.name,
                    reg.folder.as_str(),
                    reg.is_main,
                    reg.trigger.to_db(),
                    now_ms(),
                    reg.profile.as_str()
                ],
            )?;
            tx.execute(
                "INSERT INTO chats (jid, name, is_group, last_activity) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (jid) DO UPDATE SET name = COALESCE(chats.name, excluded.name)",
                params![reg.jid.as_str(), reg.name, reg.jid.is_group(), now_ms()],
            )?;
            tx.execute(
                "INSERT INTO cursors (chat, seq)
                 SELECT ?1, COALESCE(MAX(seq), 0) FROM messages WHERE chat = ?1
                 ON CONFLICT (chat) DO NOTHING",
                params![reg.jid.as_str()],
            )?;
            Ok(())
        })
        .await
    }

    /// The main chat, if one is registered.
    pub async fn main_chat(&self) -> Result<Option<ChatJid>> {
        self.call(|c| {
            c.query_row(
                "SELECT jid FROM registered_chats WHERE is_main = 1",
                [],
                |r| r.get::<_, String>(0),
            )
            .optional()?
            .map(jid)
            .transpose()
            .map_err(Into::into)
        })
        .await
    }

    /// Changes a registered chat's profile; returns whether it is registered.
    /// The next prompt of the chat uses it.
    pub async fn set_profile(&self, chat: &ChatJid, profile: Profile) -> Result<bool> {
        let chat = chat.clone();
        self.call(move |c| {
            let Some(reg) = registered_in(c, &chat)? else {
                return Ok(false);
            };
            c.execute(
                "UPDATE registered_chats SET profile = ?2 WHERE jid = ?1",
                params![reg.jid.as_str(), profile.as_str()],
            )?;
            Ok(true)
        })
        .await
    }

    /// Unregisters a chat; returns whether it was registered. Its messages,
    /// cursor and session stay, so registering again resumes its memory.
    pub async fn unregister(&self, chat: &ChatJid) -> Result<bool> {
        let chat = chat.clone();
        self.tx(move |tx| {
            tx.execute("DELETE FROM runs WHERE chat = ?1", params![chat.as_str()])?;
            Ok(tx.execute(
                "DELETE FROM registered_chats WHERE jid = ?1",
                params![chat.as_str()],
            )? > 0)
        })
        .await
    }

    /// Every chat seen or registered, most recently active first.
    pub async fn list_chats(&self) -> Result<Vec<ChatRow>> {
        self.call(|c| {
            let mut stmt = c.prepare(
                "SELECT jid, name, is_group, last_activity FROM chats ORDER BY last_activity DESC, jid",
            )?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, bool>(2)?,
                        r.get::<_, i64>(3)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut out = Vec::with_capacity(rows.len());
            for (j, name, is_group, last) in rows {
                let jid = jid(j)?;
                let registered = registered_in(c, &jid)?;
                out.push(ChatRow {
                    jid,
                    name,
                    is_group,
                    last_activity_ms: last,
                    registered,
                });
            }
            Ok(out)
        })
        .await
    }

    pub async fn session(&self, chat: &ChatJid) -> Result<Option<SessionId>> {
        let chat = chat.clone();
        self.call(move |c| session_in(c, &chat)).await
    }

    pub async fn set_session(&self, chat: &ChatJid, session: &SessionId) -> Result<()> {
        let (chat, session) = (chat.clone(), session.clone());
        self.call(move |c| {
            c.execute(
                "INSERT INTO sessions (chat, session_id, created_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (chat) DO UPDATE SET session_id = excluded.session_id,
                   created_at = excluded.created_at",
                params![chat.as_str(), session.as_str(), now_ms()],
            )?;
            Ok(())
        })
        .await
    }

    /// Forgets the chat's session (OpenCode said it is gone).
    pub async fn clear_session(&self, chat: &ChatJid) -> Result<()> {
        let chat = chat.clone();
        self.call(move |c| {
            c.execute(
                "DELETE FROM sessions WHERE chat = ?1",
                params![chat.as_str()],
            )?;
            Ok(())
        })
        .await
    }

    /// The chat a session belongs to: its conversation session, or an
    /// isolated task session made for it.
    pub async fn chat_for_session(&self, session: &SessionId) -> Result<Option<ChatJid>> {
        let session = session.clone();
        self.call(move |c| {
            let found = c
                .query_row(
                    "SELECT chat FROM sessions WHERE session_id = ?1
                     UNION ALL SELECT chat FROM task_sessions WHERE session_id = ?1
                     UNION ALL SELECT chat FROM retired_sessions WHERE session_id = ?1 LIMIT 1",
                    params![session.as_str()],
                    |r| r.get::<_, String>(0),
                )
                .optional()?;
            Ok(found.map(jid).transpose()?)
        })
        .await
    }

    /// Every OpenCode session the bridge made for a chat: its conversation
    /// session, those it left with `/new`, and its isolated tasks' sessions.
    pub async fn sessions_of(&self, chat: &ChatJid) -> Result<Vec<SessionId>> {
        let chat = chat.clone();
        self.call(move |c| {
            let mut stmt = c.prepare(
                "SELECT session_id FROM sessions WHERE chat = ?1
                 UNION SELECT session_id FROM task_sessions WHERE chat = ?1
                 UNION SELECT session_id FROM retired_sessions WHERE chat = ?1",
            )?;
            let ids = stmt
                .query_map(params![chat.as_str()], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(ids.into_iter().map(SessionId::new).collect())
        })
        .await
    }

    /// Records that `alias` (a LID) and `canonical` (a phone number) are one
    /// person or chat.
    pub async fn record_aliases(&self, pairs: Vec<(ChatJid, ChatJid)>) -> Result<()> {
        if pairs.is_empty() {
            return Ok(());
        }
        self.call(move |c| {
            for (alias, canonical) in pairs {
                c.execute(
                    "INSERT INTO jid_aliases (alias, canonical, seen_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (alias) DO UPDATE SET canonical = excluded.canonical, seen_at = excluded.seen_at",
                    params![alias.as_str(), canonical.as_str(), now_ms()],
                )?;
            }
            Ok(())
        })
        .await
    }

    /// Sets a chat's display name (group subjects discovered by the channel).
    pub async fn set_chat_name(&self, chat: &ChatJid, name: &str) -> Result<()> {
        let (chat, name) = (chat.clone(), name.to_owned());
        self.call(move |c| {
            c.execute(
                "INSERT INTO chats (jid, name, is_group, last_activity) VALUES (?1, ?2, ?3, 0)
                 ON CONFLICT (jid) DO UPDATE SET name = excluded.name",
                params![chat.as_str(), name, chat.is_group()],
            )?;
            Ok(())
        })
        .await
    }
}

pub(crate) fn registered_in(c: &Connection, chat: &ChatJid) -> Result<Option<RegisteredChat>> {
    // The chat itself, or a registration made with its other form (LID or
    // phone number), in either direction.
    let row = c
        .prepare_cached(
            "SELECT jid, name, folder, is_main, trigger_rule, profile FROM registered_chats WHERE jid = ?1
             UNION ALL
             SELECT r.jid, r.name, r.folder, r.is_main, r.trigger_rule, r.profile FROM registered_chats r
               JOIN jid_aliases a ON (a.alias = r.jid AND a.canonical = ?1) OR (a.canonical = r.jid AND a.alias = ?1)
             LIMIT 1",
        )?
        .query_row(params![chat.as_str()], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, bool>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, Profile>(5)?,
            ))
        })
        .optional()?;
    let Some((jid, name, folder, is_main, trigger, profile)) = row else {
        return Ok(None);
    };
    let conv = |e: Box<dyn std::error::Error + Send + Sync>| {
        StoreError::Sqlite(rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            e,
        ))
    };
    Ok(Some(RegisteredChat {
        jid: ChatJid::parse(&jid).map_err(|e| conv(Box::new(e)))?,
        name,
        folder: Folder::parse(&folder).map_err(|e| conv(Box::new(e)))?,
        is_main,
        trigger: TriggerRule::from_db(&trigger).map_err(|e| conv(e.into()))?,
        profile,
    }))
}

/// The chat's OpenCode session, if it has one.
pub(crate) fn session_in(c: &Connection, chat: &ChatJid) -> Result<Option<SessionId>> {
    Ok(c.query_row(
        "SELECT session_id FROM sessions WHERE chat = ?1",
        params![chat.as_str()],
        |r| r.get::<_, String>(0),
    )
    .optional()?
    .map(SessionId::new))
}
