//! The domain types every layer shares: what arrives from a channel, the
//! chats the agent answers, stored messages, trigger rules, and the states
//! that rows move through.
//!
//! A leaf module: it knows only [`crate::ids`], so the store, the router,
//! the queue and the edges can all speak it without importing each other.
//! Each state enum is stored as a short string; `as_str` and `FromStr` are
//! the one place that maps between the two, and the SQLite conversions
//! (`ToSql`/`FromSql`) and serde use them, so the stored strings (and the
//! JSON the CLI and tools print) stay exactly what they were.

use std::fmt;
use std::str::FromStr;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

use crate::ids::{ChatJid, Folder, MessageId};

/// A message as it arrives from a channel, already validated.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub chat: ChatJid,
    /// The chat's display name when the channel knows it (group subject).
    pub chat_name: Option<String>,
    pub id: MessageId,
    pub sender: String,
    pub sender_name: Option<String>,
    pub text: String,
    pub timestamp_ms: i64,
    pub from_me: bool,
    /// A photo, voice note, file... with the message (the text is then its
    /// caption, possibly empty).
    pub media: Option<InboundMedia>,
}

/// A media attachment as a channel hands it over: what it is, and its bytes
/// or why they could not be had. Intake saves it and keeps only the
/// [`MediaInfo`].
#[derive(Clone)]
pub struct InboundMedia {
    pub info: MediaInfo,
    /// The downloaded file, or why there is none ("download failed: ...").
    pub data: Result<MediaData, String>,
}

/// A downloaded file: bytes in memory (the fake channel, bounded by its
/// request size), or an unnamed temporary file a channel streamed it into
/// (WhatsApp), read from its start.
#[derive(Clone)]
pub enum MediaData {
    Bytes(Vec<u8>),
    File(std::sync::Arc<std::fs::File>),
}

impl MediaData {
    /// Its size in bytes, as it is now.
    pub fn size(&self) -> std::io::Result<u64> {
        match self {
            MediaData::Bytes(b) => Ok(b.len() as u64),
            MediaData::File(f) => Ok(f.metadata()?.len()),
        }
    }
}

impl From<Vec<u8>> for MediaData {
    fn from(bytes: Vec<u8>) -> Self {
        MediaData::Bytes(bytes)
    }
}

impl fmt::Debug for InboundMedia {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InboundMedia")
            .field("info", &self.info)
            .field("data", &self.data.as_ref().map(|d| d.size().ok()))
            .finish()
    }
}

/// What is stored with a message about its media (as JSON in
/// `messages.media`), and what the prompt says about it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MediaInfo {
    pub kind: MediaKind,
    pub mime: String,
    /// The sender's file name (documents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// Size in bytes (as saved, or as announced when not saved).
    pub bytes: u64,
    /// Length of a voice note, audio or video, when the channel says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<u32>,
    /// Where it was saved, relative to the chat's folder
    /// (`media/<date>/<id>.<ext>`); `None`: not available, see `note`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Why the media is not available, or what went wrong with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// A voice note's or audio's transcript, once made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcript: Option<String>,
}

/// The kinds of media the bridge carries.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum MediaKind {
    #[default]
    Image,
    /// A voice note (push-to-talk audio).
    Voice,
    Audio,
    Document,
    Video,
    Sticker,
}

impl MediaKind {
    pub const ALL: [MediaKind; 6] = [
        MediaKind::Image,
        MediaKind::Voice,
        MediaKind::Audio,
        MediaKind::Document,
        MediaKind::Video,
        MediaKind::Sticker,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            MediaKind::Image => "image",
            MediaKind::Voice => "voice",
            MediaKind::Audio => "audio",
            MediaKind::Document => "document",
            MediaKind::Video => "video",
            MediaKind::Sticker => "sticker",
        }
    }

    /// How a person calls it ("photo", "voice note", ...).
    pub const fn noun(self) -> &'static str {
        match self {
            MediaKind::Image => "photo",
            MediaKind::Voice => "voice note",
            MediaKind::Audio => "audio file",
            MediaKind::Document => "document",
            MediaKind::Video => "video",
            MediaKind::Sticker => "sticker",
        }
    }
}

impl FromStr for MediaKind {
    type Err = UnknownState;
    fn from_str(s: &str) -> Result<Self, UnknownState> {
        MediaKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownState {
                kind: "media kind",
                value: s.to_owned(),
            })
    }
}

impl fmt::Display for MediaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// A file to send, as an outbox row carries it (JSON in `outbox.media`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OutboxMedia {
    /// Inside the chat's folder, relative to it (`reports/june.pdf`).
    pub path: String,
    pub kind: MediaKind,
    pub mime: String,
    /// The name the recipient sees (the file's own name).
    pub filename: String,
}

/// A stored message, as the prompt needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub seq: i64,
    pub id: MessageId,
    pub sender: String,
    pub sender_name: Option<String>,
    pub text: String,
    pub timestamp_ms: i64,
    pub from_me: bool,
    pub media: Option<MediaInfo>,
}

/// A chat the agent answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredChat {
    pub jid: ChatJid,
    pub name: String,
    pub folder: Folder,
    pub is_main: bool,
    pub trigger: TriggerRule,
    /// What its agent may do (see [`Profile`]).
    pub profile: Profile,
}

/// When a registered group's messages start a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TriggerRule {
    /// The message starts with `@<PB_ASSISTANT_NAME>` (case-insensitive).
    Mention,
    /// Every message.
    Always,
    /// The message starts with this text (case-insensitive).
    Prefix(String),
}

/// Why a trigger rule string is invalid.
#[derive(Debug, thiserror::Error)]
#[error("invalid trigger rule {0:?}: use \"mention\", \"always\" or \"prefix:<text>\"")]
pub struct TriggerRuleError(String);

impl TriggerRule {
    /// Parses `mention`, `always` or `prefix:<text>`.
    pub fn parse(value: &str) -> Result<Self, TriggerRuleError> {
        match value {
            "mention" => Ok(Self::Mention),
            "always" => Ok(Self::Always),
            _ => match value.strip_prefix("prefix:") {
                Some(p) if !p.trim().is_empty() && p.len() <= 64 => Ok(Self::Prefix(p.to_owned())),
                _ => Err(TriggerRuleError(value.chars().take(80).collect())),
            },
        }
    }

    pub fn to_db(&self) -> String {
        self.to_string()
    }

    pub fn from_db(value: &str) -> Result<Self, TriggerRuleError> {
        Self::parse(value)
    }

    /// Whether `text` fires this rule.
    pub fn matches(&self, text: &str, assistant_name: &str) -> bool {
        let text = text.trim_start();
        match self {
            Self::Always => true,
            Self::Mention => {
                let Some(rest) =
                    strip_prefix_ci(text, "@").and_then(|t| strip_prefix_ci(t, assistant_name))
                else {
                    return false;
                };
                // "@Andy," and "@Andy" fire; "@Andyson" does not.
                rest.chars()
                    .next()
                    .is_none_or(|c| !c.is_alphanumeric() && c != '_')
            }
            Self::Prefix(p) => strip_prefix_ci(text, p).is_some(),
        }
    }
}

impl fmt::Display for TriggerRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Mention => f.write_str("mention"),
            Self::Always => f.write_str("always"),
            Self::Prefix(p) => write!(f, "prefix:{p}"),
        }
    }
}

fn strip_prefix_ci<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let mut chars = text.char_indices();
    for p in prefix.chars() {
        let (_, c) = chars.next()?;
        if !c.to_lowercase().eq(p.to_lowercase()) {
            return None;
        }
    }
    Some(chars.as_str())
}

/// A stored state string that names no known state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?}")]
pub struct UnknownState {
    pub kind: &'static str,
    pub value: String,
}

/// Declares a state enum stored as a fixed string: `as_str`, `FromStr`,
/// `Display` (padding honoured, for column output), serde as the string,
/// and the SQLite conversions.
macro_rules! stored_enum {
    (
        $(#[$meta:meta])*
        $name:ident ($kind:literal) {
            $( $(#[$vmeta:meta])* $variant:ident = $s:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// The string stored in the database.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( Self::$variant => $s, )+
                }
            }
        }

        impl FromStr for $name {
            type Err = UnknownState;
            fn from_str(s: &str) -> Result<Self, UnknownState> {
                match s {
                    $( $s => Ok(Self::$variant), )+
                    _ => Err(UnknownState { kind: $kind, value: s.to_owned() }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }

        impl FromSql for $name {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                value
                    .as_str()?
                    .parse()
                    .map_err(|e: UnknownState| FromSqlError::Other(Box::new(e)))
            }
        }
    };
}

stored_enum! {
    /// A chat's run record (`runs.state`).
    RunState ("run state") {
        /// A prompt was sent and its answer not yet committed.
        Running = "running",
        /// Given up on until the chat's next message.
        Parked = "parked",
    }
}

stored_enum! {
    /// An outbox row's delivery state (`outbox.state`). Receipts move a
    /// sent row forward only: sent → delivered → read.
    OutboxState ("outbox state") {
        Pending = "pending",
        Sent = "sent",
        Delivered = "delivered",
        Read = "read",
        /// Refused, or failed permanently; `last_error` says why.
        Failed = "failed",
    }
}

stored_enum! {
    /// What a chat's agent may do (`registered_chats.profile`). Each is an
    /// OpenCode agent definition the bridge installs into the workspace and
    /// names in every prompt of the chat (see `crate::profiles`).
    Profile ("profile") {
        /// The owner's chat: everything allowed, as OpenCode is configured.
        Main = "main",
        /// A person the owner trusts somewhat (default for other DMs): its own
        /// folder, the web; shell commands ask the owner, who may allow a
        /// command pattern for good.
        Member = "member",
        /// Other people in a group (default for groups): like `member`, but
        /// "always" allows only the exact command, never a pattern.
        Guest = "guest",
    }
}

impl Profile {
    /// Every profile, in order of trust.
    pub const ALL: [Profile; 3] = [Profile::Main, Profile::Member, Profile::Guest];

    /// The default for a chat: main for the main chat, guest for groups,
    /// member for other direct chats.
    pub fn default_for(jid: &ChatJid, is_main: bool) -> Self {
        if is_main {
            Profile::Main
        } else if jid.is_group() {
            Profile::Guest
        } else {
            Profile::Member
        }
    }
}

stored_enum! {
    /// An approval request's state (`approvals.state`).
    ApprovalState ("approval state") {
        /// Sent to the main chat; OpenCode waits for the answer.
        Pending = "pending",
        /// Answered yes (once or always).
        Approved = "approved",
        /// Answered no.
        Rejected = "rejected",
        /// Nobody answered within `PB_APPROVAL_TIMEOUT`; rejected.
        Expired = "expired",
        /// OpenCode no longer had the request (it restarted).
        Gone = "gone",
    }
}

stored_enum! {
    /// A scheduled task's status (`tasks.status`).
    TaskStatus ("task status") {
        Active = "active",
        Paused = "paused",
        Completed = "completed",
    }
}

stored_enum! {
    /// One task run's status (`task_runs.status`).
    TaskRunStatus ("task run status") {
        Queued = "queued",
        Running = "running",
        Ok = "ok",
        Error = "error",
    }
}

stored_enum! {
    /// Where a task runs (`tasks.context_mode`): in the chat's own session,
    /// or in a fresh session of its own.
    ContextMode ("context mode") {
        Group = "group",
        Isolated = "isolated",
    }
}

stored_enum! {
    /// How a task's schedule value reads (`tasks.schedule_type`).
    ScheduleKind ("schedule type") {
        Cron = "cron",
        Interval = "interval",
        Once = "once",
    }
}

#[cfg(test)]
mod tests;
