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
//! - a `webfetch` is never put to the owner: it runs once when every
//!   address its URL names or resolves to is public, and is refused with a
//!   note the model sees otherwise (loopback, private, link-local, ...:
//!   see [`is_public`]);
//! - otherwise it is recorded with a code never used before (four digits
//!   while most of those are free, then six, then eight) and sent to the
//!   main chat: `Reply "yes 4821", "always 4821" or "no 4821"`; the asking
//!   chat is told it waits. The owner's reply in the main chat (and only
//!   there, and only the owner's own: in a group registered as main, the
//!   account's own messages) answers OpenCode; `always` also stores a rule
//!   for that chat (a `member` gets OpenCode's suggested pattern, such as
//!   `ls *`; a `guest` only the exact command). No answer within
//!   `PB_APPROVAL_TIMEOUT` rejects it with a note the model sees.
//!
//! What the owner reads is what runs: the whole command, every character
//! of it, in a code block (see [`verbatim`]: backslashes, line breaks,
//! tabs, backticks, control, invisible and right-to-left characters are
//! shown as escapes), and so is every rule "always" would store. A request
//! too long for one message comes in numbered parts; one longer than
//! [`MAX_SHOWN`] characters as shown is refused without asking, and the
//! owner is told. A wildcard rule never allows a command holding shell
//! syntax (`;`, `|`, `&`, `<`, `>`, `$`, backticks, brackets, line
//! breaks, ...: see [`has_shell_syntax`]); such a command is only ever
//! allowed by an exact rule.
//!
//! Requests of sessions that are not the bridge's are left alone. Pending
//! requests survive a bridge restart (OpenCode keeps them); at start and
//! after the event stream was reopened, OpenCode's pending list is read
//! again (for the chats with a pending request or a run in flight): requests
//! it no longer has are closed, ones missed are asked.

use std::sync::Arc;
use std::time::Duration;

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use unicode_segmentation::UnicodeSegmentation;
use wildmatch::WildMatch;

use crate::agent::{Agent, AskEvent, PermissionAsk, PermissionReply};
use crate::channel::Channel;
use crate::config::PermissionPolicy;
use crate::ids::{ChatJid, SessionId};
use crate::model::{ApprovalState, Profile, RegisteredChat};
use crate::outbound::Persona;
use crate::store::approvals::{Approval, NewApproval};
use crate::store::{Store, now_ms};

mod render;
mod rules;
mod upkeep;
mod webfetch;

use render::*;
pub use render::{MAX_SHOWN, verbatim};
pub use rules::has_shell_syntax;
use rules::*;
use webfetch::*;
pub use webfetch::{is_public, public_url};

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
    /// The longest message the channel sends whole (`PB_WA_CHUNK_LIMIT`):
    /// an approval request is split into parts that each fit, so that no
    /// part of a command is ever cut by the sender.
    pub message_limit: usize,
}

/// The owner's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Yes,
    Always,
    No,
}

/// Whether `code` has the form of an approval code: four, six or eight
/// digits.
pub fn is_code(code: &str) -> bool {
    matches!(code.len(), 4 | 6 | 8) && code.bytes().all(|b| b.is_ascii_digit())
}

/// `yes 4821`, `always 4821`, `no 4821` (any case, an optional `#` before
/// the code, trailing punctuation ignored; longer codes too, see [`is_code`]).
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
    if words.next().is_some() || !is_code(code) {
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
        if ask.permission == "webfetch" {
            return self.on_webfetch(&reg, &ask).await;
        }
        let rules = inner
            .store
            .approval_rules(&reg.jid, &ask.permission)
            .await?;
        if allowed_by(&rules, &ask) {
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
        let always = always_rules(&reg, &ask);
        let shown = verbatim(&ask.detail).chars().count();
        let shown_rules = verbatim(&rules_lines(&always)).chars().count();
        if shown > MAX_SHOWN || shown_rules > MAX_SHOWN {
            tracing::warn!(id = %ask.id, chat = %reg.jid, permission = %ask.permission, chars = shown, rule_chars = shown_rules, "request too long to show the owner in full; refused without asking");
            crate::metrics::approval("too_long");
            self.answer(
                &ask,
                PermissionReply::Reject,
                Some(&format!(
                    "Refused without asking the owner: this request is {} characters long as shown, more than the {MAX_SHOWN} the owner can be shown in full. Use shorter commands.",
                    shown.max(shown_rules)
                )),
            )
            .await?;
            self.send(
                &main,
                &format!(
                    "Chat \"{}\" ({}) asked to {}, and it was refused without asking you: it is {} characters long, more than the {MAX_SHOWN} that can be shown in full.",
                    reg.name,
                    reg.profile,
                    what(&ask.permission),
                    shown.max(shown_rules)
                ),
            )
            .await?;
            return Ok(());
        }
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
                detail: ask.detail.clone(),
                always,
                expires_at: now_ms() + timeout.as_millis() as i64,
            })
            .await?
        else {
            return Ok(());
        };
        tracing::info!(code = %approval.code, chat = %reg.jid, permission = %ask.permission, detail = %ask.detail, "approval asked in the main chat");
        crate::metrics::approval("asked");
        let budget = inner
            .settings
            .message_limit
            .saturating_sub(inner.settings.persona.say_to(&main, "").chars().count());
        for text in ask_messages(&reg, &ask, &approval, timeout, budget) {
            self.send(&main, &text).await?;
        }
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

    /// A `webfetch` of a chat other than the main one: allowed once when
    /// every address it would reach is public, refused otherwise. The
    /// owner is not asked.
    async fn on_webfetch(&self, reg: &RegisteredChat, ask: &PermissionAsk) -> Result<()> {
        match fetch_verdict(ask).await {
            Ok(()) => {
                tracing::info!(id = %ask.id, chat = %reg.jid, url = %ask.detail, "web fetch of a public address allowed");
                crate::metrics::approval("public_fetch");
                self.answer(ask, PermissionReply::Once, None).await
            }
            Err(why) => {
                tracing::warn!(id = %ask.id, chat = %reg.jid, url = %ask.detail, reason = %why, "web fetch refused: not a public address");
                crate::metrics::approval("private_fetch");
                self.answer(
                    ask,
                    PermissionReply::Reject,
                    Some(&format!(
                        "Private and local addresses are not reachable from this chat ({why})."
                    )),
                )
                .await
            }
        }
    }

    /// A message in a registered chat that may answer an approval. `true`
    /// when the bridge handled it (it is then not the agent's). `by_owner`:
    /// the owner wrote it (see [`is_owner`]); nobody else's answer counts.
    pub async fn on_message(
        &self,
        reg: &RegisteredChat,
        text: &str,
        by_owner: bool,
    ) -> Result<bool> {
        let Some((decision, code)) = parse_answer(text) else {
            return Ok(false);
        };
        if !reg.is_main {
            return Ok(false);
        }
        if !by_owner {
            tracing::info!(chat = %reg.jid, code = %code, "an answer to an approval by someone other than the owner; ignored");
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
                "Allowed ({code}), and from now on also:\n```\n{}\n```",
                verbatim(&rules_lines(&rules))
            ),
            Decision::No => format!("Refused ({code})."),
        };
        self.send(&reg.jid, &confirm).await?;
        Ok(true)
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

    /// Queues a message of the bridge's own to `chat`, as written (no
    /// `<internal>` stripping: it may quote a command).
    async fn send(&self, chat: &ChatJid, text: &str) -> Result<()> {
        let text = self.inner.settings.persona.say_to(chat, text);
        self.inner
            .store
            .enqueue_outbox(chat, &self.inner.channel.new_message_id(), &text)
            .await?;
        self.inner.outbox_wake.notify_one();
        Ok(())
    }
}

/// Who may answer approvals in the main chat `reg`: the account's own
/// messages (`from_me`: the owner on a shared number), and in a direct chat
/// the person it is with (the owner, when the assistant has a number of its
/// own). In a group registered as main, nobody else.
pub fn is_owner(reg: &RegisteredChat, from_me: bool) -> bool {
    reg.is_main && (from_me || !reg.jid.is_group())
}

#[cfg(test)]
mod tests;
