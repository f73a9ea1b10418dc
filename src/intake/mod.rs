//! Intake: where every channel hands over an inbound message.
//!
//! A message is stored first (one transaction: chat row, message, echo
//! check), and only then acknowledged to the channel; a new, non-echo
//! message in a registered chat that can start a run (any message in the
//! main chat or a DM, a group's trigger) wakes the chat's queue with
//! [`Wake::Message`], the one wake that also releases a parked chat. A
//! group's other messages wake nothing: they wait as context for the run
//! its next trigger starts, so group chatter costs a write, not a run.
//!
//! Media comes first: a photo, voice note or file is saved into the chat's
//! folder (see [`crate::media`]) before its message is stored, so the
//! message is acknowledged only once both are kept. A file refused (too
//! large, not a readable image) is stored as "media not available" with the
//! reason, and the person is told why; a refused file without a caption
//! starts no run.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use tokio::sync::Notify;

use crate::approvals::{Approvals, parse_answer};
use crate::channel::Channel;
use crate::ids::{ChatJid, Folder};
use crate::media::{MediaLimits, Refusal};
use crate::model::{Inbound, RegisteredChat, TriggerRule};
use crate::outbound::Persona;
use crate::queue::{ChatQueue, Wake};
use crate::router::starts_run;
use crate::store::{InboundOutcome, Store};

/// Takes inbound messages; cheap to clone.
#[derive(Clone)]
pub struct Intake {
    store: Store,
    queue: ChatQueue,
    /// Which unregistered chats were named at info level lately.
    unregistered: Arc<Mutex<Announced>>,
    /// `PB_ASSISTANT_HAS_OWN_NUMBER`: then every `from_me` message is our echo.
    persona: Persona,
    /// `PB_AUTO_MAIN`, and where the main chat's folder goes.
    owner: Option<OwnerChat>,
    /// Answers to approval requests, in the main chat.
    approvals: Option<Approvals>,
    /// Where media is saved, its limits, and how refusals are answered.
    media: Option<Arc<MediaIntake>>,
    /// Chat commands (`/new`, `/stop`, ...), the bridge's own.
    commands: Option<crate::commands::Commands>,
}

/// What intake needs to keep media and answer refusals.
pub struct MediaIntake {
    /// Chat folders live in `workspace/chats/<folder>/`.
    pub workspace: PathBuf,
    pub limits: MediaLimits,
    pub persona: Persona,
    /// Message ids for refusal replies.
    pub channel: Arc<dyn Channel>,
    pub outbox_wake: Arc<Notify>,
}

/// Unregistered chats whose message was logged at info level: the first
/// message of such a chat is, the rest go to debug (a burst from strangers
/// or a busy group nobody registered would otherwise write a line per
/// message). Forgotten every [`ANNOUNCE_AGAIN`] or past [`ANNOUNCE_MAX`]
/// chats, so a chat that keeps writing is named again and memory stays bounded.
struct Announced {
    chats: HashSet<ChatJid>,
    since: Instant,
}

/// How often an unregistered chat that keeps writing is named again at info.
const ANNOUNCE_AGAIN: Duration = Duration::from_secs(3600);
/// Most unregistered chats remembered as named.
const ANNOUNCE_MAX: usize = 4096;

impl Announced {
    fn new() -> Self {
        Self {
            chats: HashSet::new(),
            since: Instant::now(),
        }
    }

    /// Whether `chat` is to be named at `now` (and remembers that it was).
    fn first(&mut self, chat: &ChatJid, now: Instant) -> bool {
        if now.saturating_duration_since(self.since) >= ANNOUNCE_AGAIN
            || self.chats.len() >= ANNOUNCE_MAX
        {
            self.chats.clear();
            self.since = now;
        }
        if self.chats.contains(chat) {
            return false;
        }
        self.chats.insert(chat.clone());
        true
    }
}

/// Registering the account's own chat as the main chat after pairing.
#[derive(Clone, Debug)]
pub struct OwnerChat {
    pub workspace: PathBuf,
}

impl Intake {
    /// `persona`: the assistant's name (group triggers) and whether it has a
    /// number of its own (echoes).
    pub fn new(store: Store, queue: ChatQueue, persona: Persona) -> Self {
        Self {
            store,
            queue,
            unregistered: Arc::new(Mutex::new(Announced::new())),
            persona,
            owner: None,
            approvals: None,
            media: None,
            commands: None,
        }
    }

    /// Keeps inbound media (without it, media is recorded as not available).
    pub fn with_media(mut self, media: MediaIntake) -> Self {
        self.media = Some(Arc::new(media));
        self
    }

    /// The owner's `yes/always/no CODE` in the main chat answers approvals.
    /// Handles chat commands (see [`crate::commands`]).
    pub fn with_commands(mut self, commands: crate::commands::Commands) -> Self {
        self.commands = Some(commands);
        self
    }

    pub fn with_approvals(mut self, approvals: Approvals) -> Self {
        self.approvals = Some(approvals);
        self
    }

    /// After pairing, the account's own chat becomes the main chat (unless
    /// one is registered already).
    pub fn with_owner_chat(mut self, owner: OwnerChat) -> Self {
        self.owner = Some(owner);
        self
    }

    /// The channel was linked to an account whose own chat is `own`.
    /// Records `lid` as its other form, and registers `own` as the main
    /// chat when that is wanted and no main chat exists. Says in one log
    /// line what to do next.
    pub async fn paired(&self, own: ChatJid, lid: Option<ChatJid>) -> crate::store::Result<bool> {
        if let Some(lid) = lid {
            self.store.record_aliases(vec![(lid, own.clone())]).await?;
        }
        let Some(owner) = &self.owner else {
            tracing::info!(chat = %own, "paired. Next: register your main chat: pocketbrain chats register {own} --name Me --main");
            return Ok(false);
        };
        let chats = self.store.list_chats().await?;
        if let Some(main) = chats
            .iter()
            .filter_map(|c| c.registered.as_ref())
            .find(|r| r.is_main)
        {
            tracing::info!(chat = %own, main = %main.jid, "paired. The main chat is registered already; nothing changed");
            return Ok(false);
        }
        let folder = Folder::parse("main").expect("a valid folder");
        if chats
            .iter()
            .filter_map(|c| c.registered.as_ref())
            .any(|r| r.folder == folder || r.jid == own)
        {
            tracing::info!(chat = %own, "paired. Your own chat or the folder \"main\" is registered already; register the main chat yourself: pocketbrain chats register {own} --name Me --main");
            return Ok(false);
        }
        let reg = RegisteredChat {
            jid: own.clone(),
            name: "Me".into(),
            folder,
            is_main: true,
            trigger: TriggerRule::Always,
            profile: crate::model::Profile::Main,
        };
        if let Err(e) = crate::workspace::chat_dir(&owner.workspace, &reg) {
            tracing::warn!(error = %e, "cannot create the main chat's folder; it is made at its first run");
        }
        self.store.register(reg).await?;
        tracing::info!(chat = %own, "paired. Your own chat is the main chat: on your phone open \"Message yourself\" and write to the assistant (PB_AUTO_MAIN=false turns this off)");
        Ok(true)
    }

    /// Takes one validated inbound message: stores it, and wakes the chat's
    /// queue when it is registered, new, and not our own echo.
    pub async fn accept(&self, mut msg: Inbound) -> crate::store::Result<InboundOutcome> {
        let id = msg.id.clone();
        crate::stage!("accepted", msg.chat);
        let refusal = match msg.media.take() {
            Some(media) => {
                let (info, refusal) = self.keep_media(&msg, media).await?;
                // Only the description is stored; the bytes are in the file.
                msg.media = Some(crate::model::InboundMedia {
                    info,
                    data: Ok(Vec::new().into()),
                });
                refusal
            }
            None => None,
        };
        let captionless = msg.text.trim().is_empty();
        let from_me = msg.from_me;
        let answer = parse_answer(&msg.text).is_some().then(|| msg.text.clone());
        let text = msg.text.clone();
        let sender = msg.sender.clone();
        let sender_name = msg.sender_name.clone();
        let outcome = self
            .store
            .record_inbound(msg, self.persona.own_number)
            .await?;
        let chat = &outcome.chat;
        crate::stage!("stored", chat);
        if let Some(refusal) = refusal
            && outcome.registered
            && !outcome.duplicate
            && !outcome.echo
            && !from_me
        {
            self.tell_refusal(chat, &id, refusal, captionless).await?;
            if captionless {
                crate::metrics::message_in("media_refused");
                return Ok(outcome);
            }
        }
        if outcome.duplicate {
            crate::metrics::message_in("duplicate");
            tracing::info!(chat = %chat, id = %id, "duplicate message ignored");
        } else if outcome.echo {
            crate::metrics::message_in("echo");
            tracing::debug!(chat = %chat, id = %id, "own message echoed back; not answered");
        } else if !outcome.registered {
            crate::metrics::message_in("unregistered");
            let first = self
                .unregistered
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .first(chat, Instant::now());
            if first {
                tracing::info!(chat = %chat, id = %id, "message from unregistered chat recorded, not answered (its further messages are logged at debug level for an hour and counted in pocketbrain_messages_in_total{{outcome=\"unregistered\"}})");
            } else {
                tracing::debug!(chat = %chat, id = %id, "message from unregistered chat recorded, not answered");
            }
            if let Some(commands) = &self.commands {
                commands.stranger(chat, sender_name, from_me).await;
            }
        } else if let (Some(commands), Some(reg)) = (&self.commands, &outcome.registration)
            && reg.is_main
            && crate::approvals::is_owner(reg, from_me)
            && let Some(code) = crate::commands::parse_pair(&text)
            && !self.store.open_pairings().await?.is_empty()
        {
            // (Only while a code waits: otherwise "pair ribbon" is the
            // owner talking to the assistant.)
            // The owner's `pair CODE`: the bridge's, never the model's.
            crate::metrics::message_in("command");
            self.store.mark_handled(chat, &id).await?;
            let answer = match commands.pair(code).await {
                Ok(t) | Err(t) => t,
            };
            commands.say(chat, &answer).await;
        } else if self
            .answered_approval(chat, &id, answer.as_deref(), from_me)
            .await?
        {
            tracing::debug!(chat = %chat, id = %id, "the owner's answer to an approval; not the agent's");
        } else if let (Some(commands), Some(reg)) = (&self.commands, &outcome.registration)
            && let Some(command) = crate::commands::parse(reg, &text, &self.persona.name)
        {
            // The bridge's, never the model's: no prompt carries it.
            crate::metrics::message_in("command");
            self.store.mark_handled(chat, &id).await?;
            commands
                .handle(crate::commands::Request {
                    reg: reg.clone(),
                    sender,
                    from_me,
                    command,
                })
                .await;
        } else if let Some(reg) = &outcome.registration
            && !starts_run(reg, &text, &self.persona.name)
        {
            crate::metrics::message_in("context");
            tracing::debug!(chat = %chat, id = %id, "group message without the trigger; kept as context");
        } else if let Some(reg) = &outcome.registration
            && reg.jid.is_group()
            && !from_me
            && !self.store.sender_may_start(&reg.jid, &sender).await?
        {
            crate::metrics::message_in("context");
            tracing::debug!(chat = %chat, id = %id, "sender not on the group's list; kept as context");
        } else {
            crate::metrics::message_in("accepted");
            self.queue.notify(chat, Wake::Message);
            crate::stage!("queued", chat);
        }
        Ok(outcome)
    }

    /// Saves a message's media into its chat's folder (not kept for an
    /// unregistered chat); returns what to store and any refusal.
    async fn keep_media(
        &self,
        msg: &Inbound,
        media: crate::model::InboundMedia,
    ) -> crate::store::Result<(crate::model::MediaInfo, Option<Refusal>)> {
        let Some(m) = self.media.clone() else {
            let mut info = media.info;
            info.note = Some("media not available: this bridge does not keep media".into());
            return Ok((info, None));
        };
        let folder = self.store.registered(&msg.chat).await?.map(|r| r.folder);
        let id = msg.id.clone();
        let date = chrono::DateTime::from_timestamp_millis(msg.timestamp_ms)
            .unwrap_or_else(chrono::Utc::now)
            .format("%Y-%m-%d")
            .to_string();
        let chat = msg.chat.clone();
        let (info, refusal) = tokio::task::spawn_blocking(move || {
            crate::media::save_inbound(&m.workspace, folder.as_ref(), &id, &date, media, &m.limits)
        })
        .await
        .map_err(|e| crate::store::StoreError::Join(e.to_string()))?;
        match (&info.path, &info.note) {
            (Some(path), _) => {
                tracing::info!(chat = %chat, id = %msg.id, kind = %info.kind, bytes = info.bytes, path, "media saved")
            }
            (None, note) => {
                tracing::warn!(chat = %chat, id = %msg.id, kind = %info.kind, note = note.as_deref().unwrap_or("-"), "media not kept")
            }
        }
        Ok((info, refusal))
    }

    /// Tells the person why their file was refused; a refused file without
    /// a caption is then handled (no run for it).
    async fn tell_refusal(
        &self,
        chat: &ChatJid,
        id: &crate::ids::MessageId,
        refusal: Refusal,
        captionless: bool,
    ) -> crate::store::Result<()> {
        let Some(m) = &self.media else {
            return Ok(());
        };
        if let Some(text) = m.persona.reply(&refusal.reply) {
            self.store
                .enqueue_outbox(chat, &m.channel.new_message_id(), &text)
                .await?;
            m.outbox_wake.notify_one();
        }
        if captionless {
            self.store.mark_handled(chat, id).await?;
        }
        Ok(())
    }

    /// Whether `text` (in `chat`) answered an approval request; it is then
    /// marked handled so no prompt carries it. Only the owner's own message
    /// can (`from_me`, or in a direct main chat its person: see
    /// [`crate::approvals::is_owner`]).
    async fn answered_approval(
        &self,
        chat: &ChatJid,
        id: &crate::ids::MessageId,
        text: Option<&str>,
        from_me: bool,
    ) -> crate::store::Result<bool> {
        let (Some(approvals), Some(text)) = (&self.approvals, text) else {
            return Ok(false);
        };
        let Some(reg) = self.store.registered(chat).await? else {
            return Ok(false);
        };
        let by_owner = crate::approvals::is_owner(&reg, from_me);
        match approvals.on_message(&reg, text, by_owner).await {
            Ok(true) => {
                self.store.mark_handled(chat, id).await?;
                Ok(true)
            }
            Ok(false) => Ok(false),
            Err(e) => {
                // The message stays the agent's: nothing is lost.
                tracing::warn!(chat = %chat, error = %e, "cannot answer the approval; the message goes to the agent");
                Ok(false)
            }
        }
    }
}

impl crate::channel::InboundSink for Intake {
    fn accept(&self, msg: Inbound) -> BoxFuture<'_, crate::store::Result<InboundOutcome>> {
        Box::pin(Intake::accept(self, msg))
    }

    fn paired(&self, own: ChatJid, lid: Option<ChatJid>) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Err(e) = Intake::paired(self, own, lid).await {
                tracing::error!(error = %e, "cannot record the paired account's chat");
            }
        })
    }
}

#[cfg(test)]
mod tests;
