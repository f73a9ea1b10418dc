//! Approvals: permission requests sent to the owner with a code, and the
//! rules the owner allowed for good ("always").

use rand::RngExt;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{Result, Store, jid, now_ms};
use crate::ids::{ChatJid, MessageId, SessionId};
use crate::model::ApprovalState;

/// One approval request.
#[derive(Debug, Clone, PartialEq)]
pub struct Approval {
    pub id: i64,
    pub code: String,
    pub request_id: String,
    pub chat: ChatJid,
    pub session: SessionId,
    pub directory: String,
    pub permission: String,
    pub patterns: Vec<String>,
    /// The whole request as the owner is shown it (`None`: recorded by an
    /// older version).
    pub detail: Option<String>,
    pub always: Vec<String>,
    pub state: ApprovalState,
    pub created_at: i64,
    pub expires_at: i64,
}

/// A new approval request, before it has a code.
#[derive(Debug, Clone)]
pub struct NewApproval {
    pub request_id: String,
    pub chat: ChatJid,
    pub session: SessionId,
    pub directory: String,
    pub permission: String,
    pub patterns: Vec<String>,
    /// The whole request (a bash command as typed).
    pub detail: String,
    pub always: Vec<String>,
    pub expires_at: i64,
}

const COLUMNS: &str = "id, code, request_id, chat, session_id, directory, permission, patterns, always, state, created_at, expires_at, detail";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Approval> {
    let list = |i: usize| -> rusqlite::Result<Vec<String>> {
        let s: String = r.get(i)?;
        serde_json::from_str(&s).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into())
        })
    };
    Ok(Approval {
        id: r.get(0)?,
        code: r.get(1)?,
        request_id: r.get(2)?,
        chat: jid(r.get(3)?)?,
        session: SessionId::new(r.get::<_, String>(4)?),
        directory: r.get(5)?,
        permission: r.get(6)?,
        patterns: list(7)?,
        always: list(8)?,
        state: r.get(9)?,
        created_at: r.get(10)?,
        expires_at: r.get(11)?,
        detail: r.get(12)?,
    })
}

impl Store {
    /// Records a new request with a fresh code: one no request ever had, so
    /// a late answer can never be taken for a newer request. Four digits
    /// while fewer than half of those were used, then six, then eight (see
    /// [`code_digits`]). `None` when the request is known already.
    pub async fn add_approval(&self, new: NewApproval) -> Result<Option<Approval>> {
        self.tx(move |tx| {
            let known: Option<i64> = tx
                .query_row(
                    "SELECT id FROM approvals WHERE request_id = ?1",
                    params![new.request_id],
                    |r| r.get(0),
                )
                .optional()?;
            if known.is_some() {
                return Ok(None);
            }
            let used: i64 = tx.query_row("SELECT COUNT(*) FROM approvals", [], |r| r.get(0))?;
            let digits = code_digits(used.max(0) as u64);
            let (low, high) = (10u64.pow(digits - 1), 10u64.pow(digits));
            let code = loop {
                let code = rand::rng().random_range(low..high).to_string();
                let taken: bool = tx.query_row(
                    "SELECT EXISTS (SELECT 1 FROM approvals WHERE code = ?1)",
                    params![code],
                    |r| r.get(0),
                )?;
                if !taken {
                    break code;
                }
            };
            tx.execute(
                "INSERT INTO approvals (code, request_id, chat, session_id, directory, permission,
                   patterns, always, state, created_at, expires_at, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![
                    code,
                    new.request_id,
                    new.chat.as_str(),
                    new.session.as_str(),
                    new.directory,
                    new.permission,
                    serde_json::to_string(&new.patterns).expect("strings"),
                    serde_json::to_string(&new.always).expect("strings"),
                    ApprovalState::Pending,
                    now_ms(),
                    new.expires_at,
                    new.detail,
                ],
            )?;
            let id = tx.last_insert_rowid();
            Ok(Some(tx.query_row(
                &format!("SELECT {COLUMNS} FROM approvals WHERE id = ?1"),
                params![id],
                from_row,
            )?))
        })
        .await
    }

    /// The newest request with `code`, pending ones first.
    pub async fn approval_by_code(&self, code: &str) -> Result<Option<Approval>> {
        let code = code.to_owned();
        self.call(move |c| {
            Ok(c.query_row(
                &format!(
                    "SELECT {COLUMNS} FROM approvals WHERE code = ?1
                     ORDER BY state = 'pending' DESC, id DESC LIMIT 1"
                ),
                params![code],
                from_row,
            )
            .optional()?)
        })
        .await
    }

    /// Every pending request, oldest first.
    pub async fn pending_approvals(&self) -> Result<Vec<Approval>> {
        self.call(|c| pending_in(c)).await
    }

    /// Whether OpenCode's request `request_id` is recorded already.
    pub async fn approval_known(&self, request_id: &str) -> Result<bool> {
        let id = request_id.to_owned();
        self.call(move |c| {
            Ok(c.query_row(
                "SELECT EXISTS (SELECT 1 FROM approvals WHERE request_id = ?1)",
                params![id],
                |r| r.get(0),
            )?)
        })
        .await
    }

    /// Moves a pending request to `state`; `false` when it was not pending
    /// any more (answered meanwhile). With `rules`, the chat's allowed
    /// patterns are added in the same transaction.
    pub async fn settle_approval(
        &self,
        id: i64,
        state: ApprovalState,
        rules: Vec<String>,
    ) -> Result<bool> {
        self.tx(move |tx| {
            let changed = tx.execute(
                "UPDATE approvals SET state = ?2, answered_at = ?3 WHERE id = ?1 AND state = 'pending'",
                params![id, state, now_ms()],
            )? > 0;
            if changed && !rules.is_empty() {
                let (chat, permission): (String, String) = tx.query_row(
                    "SELECT chat, permission FROM approvals WHERE id = ?1",
                    params![id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                for pattern in rules {
                    tx.execute(
                        "INSERT OR IGNORE INTO approval_rules (chat, permission, pattern, created_at)
                         VALUES (?1, ?2, ?3, ?4)",
                        params![chat, permission, pattern, now_ms()],
                    )?;
                }
            }
            Ok(changed)
        })
        .await
    }

    /// The patterns the owner allowed `chat` for good for `permission`.
    pub async fn approval_rules(&self, chat: &ChatJid, permission: &str) -> Result<Vec<String>> {
        let (chat, permission) = (chat.clone(), permission.to_owned());
        self.call(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT pattern FROM approval_rules WHERE chat = ?1 AND permission = ?2 ORDER BY pattern",
            )?;
            let rows = stmt
                .query_map(params![chat.as_str(), permission], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?;
            Ok(rows)
        })
        .await
    }

    /// Marks a stored message as handled by the bridge itself: it never goes
    /// into a prompt.
    pub async fn mark_handled(&self, chat: &ChatJid, id: &MessageId) -> Result<()> {
        let (chat, id) = (chat.clone(), id.clone());
        self.call(move |c| {
            c.execute(
                "UPDATE messages SET handled = 1 WHERE chat = ?1 AND id = ?2",
                params![chat.as_str(), id.as_str()],
            )?;
            Ok(())
        })
        .await
    }
}

/// How many digits a new code has when `used` requests were recorded: the
/// fewest (4, 6 or 8) whose codes are at most half used, so that picking an
/// unused one at random takes a couple of tries.
pub fn code_digits(used: u64) -> u32 {
    [4, 6]
        .into_iter()
        .find(|&d| used < 9 * 10u64.pow(d - 1) / 2)
        .unwrap_or(8)
}

pub(crate) fn pending_in(c: &Connection) -> Result<Vec<Approval>> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM approvals WHERE state = 'pending' ORDER BY id"
    ))?;
    let rows = stmt
        .query_map([], from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(request_id: &str) -> NewApproval {
        NewApproval {
            request_id: request_id.into(),
            chat: ChatJid::parse("120363000000001@g.us").unwrap(),
            session: SessionId::new("ses_1"),
            directory: "/w/chats/family".into(),
            permission: "bash".into(),
            patterns: vec!["ls".into()],
            detail: "ls".into(),
            always: vec![],
            expires_at: 0,
        }
    }

    /// Records closed requests with the codes `codes`.
    async fn closed(store: &Store, codes: impl Iterator<Item = u64> + Send + 'static) {
        store
            .tx(move |tx| {
                for code in codes {
                    tx.execute(
                        "INSERT INTO approvals (code, request_id, chat, session_id, directory, permission,
                           patterns, always, state, created_at, expires_at)
                         VALUES (?1, ?2, 'x@g.us', 's', '/w', 'bash', '[]', '[]', 'expired', 0, 0)",
                        params![code.to_string(), format!("old_{code}")],
                    )?;
                }
                Ok(())
            })
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_code_is_never_used_twice_even_after_its_request_closed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("pb.sqlite3")).unwrap();
        // Most four-digit codes belong to requests answered or expired long ago.
        closed(&store, 1000..5400).await;
        let mut seen = std::collections::HashSet::new();
        for i in 0..40 {
            let a = store
                .add_approval(new(&format!("per_{i}")))
                .await
                .unwrap()
                .unwrap();
            let n: u64 = a.code.parse().unwrap();
            assert_eq!(a.code.len(), 4, "{}", a.code);
            assert!(n >= 5400, "code {} was used before", a.code);
            assert!(seen.insert(a.code.clone()), "code {} given twice", a.code);
            assert!(crate::approvals::parse_answer(&format!("yes {}", a.code)).is_some());
        }
    }

    #[tokio::test]
    async fn codes_grow_longer_when_four_digits_run_short() {
        assert_eq!(code_digits(0), 4);
        assert_eq!(code_digits(4499), 4);
        assert_eq!(code_digits(4500), 6);
        assert_eq!(code_digits(449_999), 6);
        assert_eq!(code_digits(450_000), 8);
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("pb.sqlite3")).unwrap();
        closed(&store, 1000..10_000).await;
        let a = store.add_approval(new("per_new")).await.unwrap().unwrap();
        assert_eq!(a.code.len(), 6, "{}", a.code);
        assert_eq!(
            crate::approvals::parse_answer(&format!("always {}", a.code)),
            Some((crate::approvals::Decision::Always, a.code.clone()))
        );
        assert_eq!(
            store
                .approval_by_code(&a.code)
                .await
                .unwrap()
                .unwrap()
                .request_id,
            "per_new"
        );
    }
}
