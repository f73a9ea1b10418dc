//! Approvals: the owner decides, in the main chat, what a chat's profile
//! says to ask.
//!
//! OpenCode raises a permission request when an agent rule says `ask` (for
//! `member` and `guest`: shell commands). For a session of the bridge's own
//! (a chat's session, an isolated task's, or a subagent of one of them):
//!
//! - a `main` chat's request is answered by `PB_PERMISSION` (the main chat is
//!   headless, as before profiles);
//! - a request every pattern of which the owner allowed for good is allowed;
//! - otherwise it is recorded with a four-digit code and sent to the main
//!   chat: `Reply "yes 4821", "always 4821" or "no 4821"`; the asking chat is
//!   told it waits. The owner's reply in the main chat (and only there)
//!   answers OpenCode; `always` also stores the pattern for that chat (a
//!   `member` gets OpenCode's suggested pattern, such as `ls *`; a `guest`
//!   only the exact command). No answer within `PB_APPROVAL_TIMEOUT`
//!   rejects it with a note the model sees.
//!
//! Requests of sessions that are not the bridge's are left alone. Pending
//! requests survive a bridge restart (OpenCode keeps them); at start and
//! after the event stream was reopened, OpenCode's pending list is read
//! again (for the chats with a pending request or a run in flight): requests
//! it no longer has are closed, ones missed are asked.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use wildmatch::WildMatch;

use crate::agent::{Agent, AskEvent, PermissionAsk, PermissionReply};
use crate::channel::Channel;
use crate::config::PermissionPolicy;
use crate::ids::{ChatJid, SessionId};
use crate::model::{ApprovalState, Profile, RegisteredChat};
use crate::outbound::Persona;
use crate::store::approvals::{Approval, NewApproval};
use crate::store::{Store, now_ms};

/// What the approvals service needs to know.
#[derive(Debug, Clone)]
pub struct ApprovalSettings {
    /// `PB_APPROVAL_TIMEOUT`.
    pub timeout: Duration,
    /// `PB_PERMISSION`: the answer to the main chat's own requests.
    pub main_policy: PermissionPolicy,
    pub persona: Persona,
    /// Where chat folders live, to list OpenCode's pending requests per chat.
    pub workspace: std::path::PathBuf,
}

/// The owner's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Yes,
    Always,
    No,
}

/// `yes 4821`, `always 4821`, `no 4821` (any case, an optional `#` before
/// the code, trailing punctuation ignored).
pub fn parse_answer(text: &str) -> Option<(Decision, String)> {
    let t = text
        .trim()
        .trim_end_matches(['.', '!'])
        .to_ascii_lowercase();
    let mut words = t.split_whitespace();
    let decision = match words.next()? {
        "yes" => Decision::Yes,
        "always" => Decision::Always,
        "no" => Decision::No,
        _ => return None,
    };
    let code = words.next()?.trim_start_matches('#');
    if words.next().is_some() || code.len() != 4 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((decision, code.to_owned()))
}

/// The approvals service; cheap to clone.
#[derive(Clone)]
pub struct Approvals {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    agent: Arc<dyn Agent>,
    channel: Arc<dyn Channel>,
    outbox_wake: Arc<Notify>,
    settings: ApprovalSettings,
    /// A new pending request: the expiry timer looks again.
    changed: Notify,
}

#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Agent(#[from] crate::agent::AgentError),
}

type Result<T> = std::result::Result<T, ApprovalError>;

impl Approvals {
    pub fn new(
        store: Store,
        agent: Arc<dyn Agent>,
        channel: Arc<dyn Channel>,
        outbox_wake: Arc<Notify>,
        settings: ApprovalSettings,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                agent,
                channel,
                outbox_wake,
                settings,
                changed: Notify::new(),
            }),
        }
    }

    /// Handles requests from `asks` and expires unanswered ones until `cancel`.
    pub async fn run(self, mut asks: mpsc::Receiver<AskEvent>, cancel: CancellationToken) {
        let timer = tokio::spawn(self.clone().expire_loop(cancel.clone()));
        loop {
            let ev = tokio::select! {
                _ = cancel.cancelled() => break,
                ev = asks.recv() => ev,
            };
            let result = match ev {
                None => break,
                Some(AskEvent::Asked(ask)) => self.on_ask(ask).await,
                Some(AskEvent::Resync) => self.resync().await,
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "approval handling failed; OpenCode's pending list is read again after the next reconnect");
            }
        }
        let _ = timer.await;
    }

    /// The chat a session belongs to: its own, an isolated task's, or (for a
    /// subagent's session) its parent's.
    async fn chat_of(&self, ask: &PermissionAsk) -> Result<Option<ChatJid>> {
        let store = &self.inner.store;
        if let Some(chat) = store.chat_for_session(&ask.session).await? {
            return Ok(Some(chat));
        }
        let mut session: SessionId = ask.session.clone();
        for _ in 0..4 {
            match self.inner.agent.session_parent(&ask.dir, &session).await? {
                Some(parent) => {
                    if let Some(chat) = store.chat_for_session(&parent).await? {
                        return Ok(Some(chat));
                    }
                    session = parent;
                }
                None => break,
            }
        }
        Ok(None)
    }

    /// One permission request from OpenCode.
    pub async fn on_ask(&self, ask: PermissionAsk) -> Result<()> {
        let inner = &self.inner;
        if inner.store.approval_known(&ask.id).await? {
            return Ok(());
        }
        let Some(chat) = self.chat_of(&ask).await? else {
            tracing::debug!(id = %ask.id, session = %ask.session, "permission request of a session that is not the bridge's; left alone");
            return Ok(());
        };
        let Some(reg) = inner.store.registered(&chat).await? else {
            tracing::info!(id = %ask.id, %chat, "permission request of a chat no longer registered; rejected");
            return self
                .answer(
                    &ask,
                    PermissionReply::Reject,
                    Some("This chat is no longer registered."),
                )
                .await;
        };
        if reg.profile == Profile::Main {
            let reply = match inner.settings.main_policy {
                PermissionPolicy::Allow => PermissionReply::Once,
                PermissionPolicy::Reject => PermissionReply::Reject,
            };
            tracing::info!(id = %ask.id, chat = %reg.jid, permission = %ask.permission, reply = reply.as_str(), "main chat's permission request answered by PB_PERMISSION");
            return self.answer(&ask, reply, None).await;
        }
        let rules = inner
            .store
            .approval_rules(&reg.jid, &ask.permission)
            .await?;
        if !ask.patterns.is_empty()
            && ask
                .patterns
                .iter()
                .all(|p| rules.iter().any(|r| rule_matches(r, p)))
        {
            tracing::info!(id = %ask.id, chat = %reg.jid, permission = %ask.permission, detail = %ask.detail, "allowed by the owner's earlier \"always\"");
            crate::metrics::approval("by_rule");
            return self.answer(&ask, PermissionReply::Once, None).await;
        }
        let Some(main) = inner.store.main_chat().await? else {
            tracing::warn!(id = %ask.id, chat = %reg.jid, "no main chat is registered to ask; permission request rejected");
            return self
                .answer(
                    &ask,
                    PermissionReply::Reject,
                    Some("There is no owner's chat to ask for approval, so this is not allowed."),
                )
                .await;
        };
        let timeout = inner.settings.timeout;
        let Some(approval) = inner
            .store
            .add_approval(NewApproval {
                request_id: ask.id.clone(),
                chat: reg.jid.clone(),
                session: ask.session.clone(),
                directory: ask.dir.display().to_string(),
                permission: ask.permission.clone(),
                patterns: ask.patterns.clone(),
                always: always_rules(&reg, &ask),
                expires_at: now_ms() + timeout.as_millis() as i64,
            })
            .await?
        else {
            return Ok(());
        };
        tracing::info!(code = %approval.code, chat = %reg.jid, permission = %ask.permission, detail = %ask.detail, "approval asked in the main chat");
        crate::metrics::approval("asked");
        self.send(&main, &ask_text(&reg, &ask, &approval, timeout))
            .await?;
        self.send(
            &reg.jid,
            &format!(
                "Waiting for the owner's approval to {}.",
                what(&ask.permission)
            ),
        )
        .await?;
        inner.changed.notify_one();
        Ok(())
    }

    /// A message in a registered chat that may answer an approval. `true`
    /// when the bridge handled it (it is then not the agent's).
    pub async fn on_message(&self, reg: &RegisteredChat, text: &str) -> Result<bool> {
        let Some((decision, code)) = parse_answer(text) else {
            return Ok(false);
        };
        if !reg.is_main {
            return Ok(false);
        }
        let store = &self.inner.store;
        let Some(approval) = store.approval_by_code(&code).await? else {
            let pending = store.pending_approvals().await?;
            if pending.is_empty() {
                return Ok(false);
            }
            let codes: Vec<_> = pending.iter().map(|a| a.code.as_str()).collect();
            self.send(
                &reg.jid,
                &format!(
                    "No request has the code {code}. Waiting for an answer: {}.",
                    codes.join(", ")
                ),
            )
            .await?;
            return Ok(true);
        };
        if approval.state != ApprovalState::Pending {
            self.send(
                &reg.jid,
                &format!("Request {code} is closed already ({}).", approval.state),
            )
            .await?;
            return Ok(true);
        }
        let (state, reply, rules, message) = match decision {
            Decision::Yes => (ApprovalState::Approved, PermissionReply::Once, vec![], None),
            Decision::Always => (
                ApprovalState::Approved,
                PermissionReply::Once,
                approval.always.clone(),
                None,
            ),
            Decision::No => (
                ApprovalState::Rejected,
                PermissionReply::Reject,
                vec![],
                Some("The owner did not approve this."),
            ),
        };
        if !store
            .settle_approval(approval.id, state, rules.clone())
            .await?
        {
            return Ok(true);
        }
        let dir = std::path::PathBuf::from(&approval.directory);
        if let Err(e) = self
            .inner
            .agent
            .answer_permission(&dir, &approval.request_id, reply, message)
            .await
        {
            tracing::warn!(code = %code, error = %e, "OpenCode did not take the owner's answer (the request may be gone)");
        }
        tracing::info!(code = %code, chat = %approval.chat, decision = ?decision, "approval answered by the owner");
        crate::metrics::approval(match decision {
            Decision::Yes => "approved",
            Decision::Always => "always",
            Decision::No => "rejected",
        });
        let confirm = match decision {
            Decision::Yes => format!("Allowed once ({code})."),
            Decision::Always => format!(
                "Allowed ({code}), and from now on also: {}.",
                rules_text(&rules)
            ),
            Decision::No => format!("Refused ({code})."),
        };
        self.send(&reg.jid, &confirm).await?;
        Ok(true)
    }

    /// Rejects what was not answered in time; sleeps until the next expiry.
    async fn expire_loop(self, cancel: CancellationToken) {
        loop {
            let wait = match self.expire_due().await {
                Ok(Some(next_ms)) => Duration::from_millis((next_ms - now_ms()).max(0) as u64),
                Ok(None) => Duration::from_secs(24 * 3600),
                Err(e) => {
                    tracing::warn!(error = %e, "expiring approvals failed; trying again in a minute");
                    Duration::from_secs(60)
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = self.inner.changed.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Expires the overdue pending requests; the next expiry, if any.
    async fn expire_due(&self) -> Result<Option<i64>> {
        let pending = self.inner.store.pending_approvals().await?;
        let now = now_ms();
        let mut next = None::<i64>;
        for a in pending {
            if a.expires_at > now {
                next = Some(next.map_or(a.expires_at, |n| n.min(a.expires_at)));
                continue;
            }
            if !self
                .inner
                .store
                .settle_approval(a.id, ApprovalState::Expired, vec![])
                .await?
            {
                continue;
            }
            tracing::info!(code = %a.code, chat = %a.chat, "approval not answered in time; rejected");
            crate::metrics::approval("expired");
            let dir = std::path::PathBuf::from(&a.directory);
            if let Err(e) = self
                .inner
                .agent
                .answer_permission(
                    &dir,
                    &a.request_id,
                    PermissionReply::Reject,
                    Some("The owner did not approve in time."),
                )
                .await
            {
                tracing::warn!(code = %a.code, error = %e, "OpenCode did not take the rejection (the request may be gone)");
            }
            if let Some(main) = self.inner.store.main_chat().await? {
                self.send(
                    &main,
                    &format!(
                        "Request {} was not answered in time and is refused.",
                        a.code
                    ),
                )
                .await?;
            }
        }
        Ok(next)
    }

    /// Compares the pending requests with OpenCode's: closes those it no
    /// longer has, asks those that were missed.
    pub async fn resync(&self) -> Result<()> {
        let store = &self.inner.store;
        let pending = store.pending_approvals().await?;
        let mut dirs: Vec<std::path::PathBuf> = pending
            .iter()
            .map(|a| std::path::PathBuf::from(&a.directory))
            .collect();
        // Only where a run is in flight can a request wait (reading an idle
        // chat's list would boot its OpenCode instance for nothing).
        let mut busy: Vec<ChatJid> = store
            .runs()
            .await?
            .into_iter()
            .filter(|r| r.state == crate::model::RunState::Running)
            .map(|r| r.chat)
            .collect();
        busy.extend(
            store
                .call(|c| crate::store::tasks::chats_with_open_runs(c))
                .await?,
        );
        for chat in busy {
            if let Some(r) = store.registered(&chat).await? {
                dirs.push(
                    self.inner
                        .settings
                        .workspace
                        .join("chats")
                        .join(r.folder.as_str()),
                );
            }
        }
        dirs.sort();
        dirs.dedup();
        let mut open = std::collections::HashSet::new();
        let mut asks = Vec::new();
        for dir in dirs.iter().filter(|d| d.is_dir()) {
            let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.clone());
            for ask in self.inner.agent.pending_permissions(&dir).await? {
                open.insert(ask.id.clone());
                asks.push(ask);
            }
        }
        for a in pending {
            if !open.contains(&a.request_id)
                && store
                    .settle_approval(a.id, ApprovalState::Gone, vec![])
                    .await?
            {
                tracing::info!(code = %a.code, chat = %a.chat, "OpenCode no longer has the request (it restarted); closed");
            }
        }
        for ask in asks {
            self.on_ask(ask).await?;
        }
        Ok(())
    }

    async fn answer(
        &self,
        ask: &PermissionAsk,
        reply: PermissionReply,
        message: Option<&str>,
    ) -> Result<()> {
        self.inner
            .agent
            .answer_permission(&ask.dir, &ask.id, reply, message)
            .await?;
        Ok(())
    }

    /// Queues a message from the assistant to `chat`.
    async fn send(&self, chat: &ChatJid, text: &str) -> Result<()> {
        let Some(text) = self.inner.settings.persona.reply(text) else {
            return Ok(());
        };
        self.inner
            .store
            .enqueue_outbox(chat, &self.inner.channel.new_message_id(), &text)
            .await?;
        self.inner.outbox_wake.notify_one();
        Ok(())
    }
}

/// What "always" allows for good: OpenCode's suggested patterns for a
/// `member`, the exact request for a `guest` (a group's other people must not
/// widen it).
fn always_rules(reg: &RegisteredChat, ask: &PermissionAsk) -> Vec<String> {
    if reg.profile == Profile::Member && !ask.always.is_empty() {
        ask.always.clone()
    } else {
        ask.patterns.iter().map(|p| format!("={p}")).collect()
    }
}

/// Whether a stored rule covers `pattern`: `=text` only that exact text,
/// anything else an OpenCode wildcard (`*` any run of characters, `?` one).
fn rule_matches(rule: &str, pattern: &str) -> bool {
    match rule.strip_prefix('=') {
        Some(exact) => exact == pattern,
        None => WildMatch::new(rule).matches(pattern),
    }
}

/// Rules as the owner reads them (an exact rule without its `=`).
fn rules_text(rules: &[String]) -> String {
    rules
        .iter()
        .map(|r| r.strip_prefix('=').unwrap_or(r))
        .collect::<Vec<_>>()
        .join(", ")
}

/// "run a shell command", for people.
fn what(permission: &str) -> String {
    match permission {
        "bash" => "run a shell command".into(),
        "edit" => "change a file".into(),
        "read" => "read a file".into(),
        "webfetch" => "fetch a web page".into(),
        "external_directory" => "reach outside its folder".into(),
        other => format!("use {other}"),
    }
}

/// Cuts `s` to about `max` characters, on a character boundary.
fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let cut: String = s.chars().take(max).collect();
    format!("{cut}…")
}

/// The message the owner gets.
fn ask_text(
    reg: &RegisteredChat,
    ask: &PermissionAsk,
    approval: &Approval,
    timeout: Duration,
) -> String {
    let code = &approval.code;
    let minutes = timeout.as_secs().div_ceil(60).max(1);
    let always = if approval.always.is_empty() {
        String::new()
    } else {
        format!(
            "\n\"always {code}\" also allows from now on: {}",
            shorten(&rules_text(&approval.always), 200)
        )
    };
    format!(
        "Approval needed: chat \"{}\" ({}) wants to {}:\n{}\n\nReply \"yes {code}\", \"always {code}\" or \"no {code}\" within {minutes} min.{always}",
        reg.name,
        reg.profile,
        what(&ask.permission),
        shorten(&ask.detail, 400),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_strictly() {
        assert_eq!(
            parse_answer("yes 4821"),
            Some((Decision::Yes, "4821".into()))
        );
        assert_eq!(
            parse_answer("  Always #4821. "),
            Some((Decision::Always, "4821".into()))
        );
        assert_eq!(parse_answer("NO 0042"), Some((Decision::No, "0042".into())));
        for not in [
            "yes",
            "yes 482",
            "yes 48211",
            "yes 4821 please",
            "ok 4821",
            "yes abcd",
            "",
        ] {
            assert_eq!(parse_answer(not), None, "{not:?}");
        }
    }

    #[test]
    fn always_widens_for_members_only() {
        let ask = PermissionAsk {
            id: "per_1".into(),
            session: SessionId::new("ses_1"),
            dir: "/w/chats/a".into(),
            permission: "bash".into(),
            patterns: vec!["ls -la *".into()],
            always: vec!["ls *".into()],
            detail: "ls -la *".into(),
        };
        let mut reg = RegisteredChat {
            jid: ChatJid::parse("491511111111@s.whatsapp.net").unwrap(),
            name: "Ann".into(),
            folder: crate::ids::Folder::parse("ann").unwrap(),
            is_main: false,
            trigger: crate::model::TriggerRule::Always,
            profile: Profile::Member,
        };
        assert_eq!(always_rules(&reg, &ask), ["ls *"]);
        reg.profile = Profile::Guest;
        // A guest's "always" is the exact command: its own `*` matches only itself.
        let rules = always_rules(&reg, &ask);
        assert_eq!(rules, ["=ls -la *"]);
        assert!(rule_matches(&rules[0], "ls -la *"));
        assert!(!rule_matches(&rules[0], "ls -la /etc/passwd"));
        assert!(rule_matches("ls *", "ls /tmp"));
        assert!(!rule_matches("ls *", "rm -rf /"));
    }
}
