//! Newtype identifiers that cross module boundaries.
//!
//! JIDs are made and parsed by small paired functions (`parse` / `as_str`),
//! so a string that reached the core has already been checked once, at the
//! boundary where it came in.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest JID we accept; WhatsApp's are far shorter.
const MAX_JID_LEN: usize = 128;

/// Which of WhatsApp's address forms a chat JID uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JidKind {
    /// `<digits>@s.whatsapp.net`: a person, by phone number.
    User,
    /// `<id>@lid`: a person, by WhatsApp's privacy id.
    Lid,
    /// `<id>@g.us`: a group.
    Group,
    /// `api:<name>`: a conversation over the local API (not WhatsApp).
    Api,
}

/// The prefix of an API conversation's chat id.
pub const API_PREFIX: &str = "api:";

/// Longest API conversation name.
const MAX_CONVERSATION_LEN: usize = 48;

/// A chat address in one of WhatsApp's forms, or an API conversation
/// (`api:<name>`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ChatJid(String);

/// Why a string is not a chat JID.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "invalid JID {value:?}: {why} (expected <digits>@s.whatsapp.net, <id>@g.us, <id>@lid or api:<name>)"
)]
pub struct JidError {
    value: String,
    why: &'static str,
}

impl ChatJid {
    /// Parses and validates a chat JID.
    pub fn parse(value: &str) -> Result<Self, JidError> {
        let err = |why| JidError {
            value: value.chars().take(64).collect(),
            why,
        };
        if value.len() > MAX_JID_LEN {
            return Err(err("too long"));
        }
        if let Some(name) = value.strip_prefix(API_PREFIX) {
            return Self::api(name).map_err(|_| err(CONVERSATION_RULE));
        }
        let (user, server) = value.split_once('@').ok_or_else(|| err("missing '@'"))?;
        if user.is_empty() {
            return Err(err("empty user part"));
        }
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        match server {
            "s.whatsapp.net" | "lid" if !digits(user) => Err(err("user part must be digits")),
            "g.us" if !user.bytes().all(|b| b.is_ascii_digit() || b == b'-') => {
                Err(err("group id must be digits and '-'"))
            }
            "s.whatsapp.net" | "lid" | "g.us" => Ok(Self(value.to_owned())),
            _ => Err(err("unknown server part")),
        }
    }

    /// The chat of the API conversation `name` (see [`CONVERSATION_RULE`]).
    pub fn api(name: &str) -> Result<Self, ConversationError> {
        let ok = !name.is_empty()
            && name.len() <= MAX_CONVERSATION_LEN
            && name.as_bytes()[0].is_ascii_alphanumeric()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(format!("{API_PREFIX}{name}")))
        } else {
            Err(ConversationError(name.chars().take(64).collect()))
        }
    }

    /// The conversation name of an API chat (`api:<name>` → `<name>`).
    pub fn conversation(&self) -> Option<&str> {
        self.0.strip_prefix(API_PREFIX)
    }

    /// Whether this is an API conversation.
    pub fn is_api(&self) -> bool {
        self.kind() == JidKind::Api
    }

    /// The address form.
    pub fn kind(&self) -> JidKind {
        if self.0.starts_with(API_PREFIX) {
            JidKind::Api
        } else if self.0.ends_with("@g.us") {
            JidKind::Group
        } else if self.0.ends_with("@lid") {
            JidKind::Lid
        } else {
            JidKind::User
        }
    }

    /// Whether this is a group chat.
    pub fn is_group(&self) -> bool {
        self.kind() == JidKind::Group
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What an API conversation name may be.
pub const CONVERSATION_RULE: &str =
    "a conversation name is 1 to 48 of a-z, 0-9, '-' and '_', starting with a letter or digit";

/// Why a string is not an API conversation name.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid conversation {0:?}: {CONVERSATION_RULE}")]
pub struct ConversationError(String);

impl TryFrom<String> for ChatJid {
    type Error = JidError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<ChatJid> for String {
    fn from(value: ChatJid) -> Self {
        value.0
    }
}

impl fmt::Display for ChatJid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_id!(
    /// An OpenCode session id (`ses_...`).
    SessionId
);
string_id!(
    /// An OpenCode message id that the bridge chose for a prompt (`msg_...`).
    PromptId
);
string_id!(
    /// A channel message id (WhatsApp's message key id, or the fake channel's).
    MessageId
);

impl MessageId {
    /// The id part `i` of a split outbound message is sent with: the first
    /// part keeps the outbox row's id, later ones add `-<i>`.
    pub fn part(&self, i: usize) -> String {
        if i == 0 {
            self.0.clone()
        } else {
            format!("{}-{i}", self.0)
        }
    }

    /// The outbox row id behind a sent part's id (see [`MessageId::part`]).
    pub fn base_of(id: &str) -> &str {
        match id.rsplit_once('-') {
            Some((base, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => base,
            _ => id,
        }
    }
}

/// A registered chat's folder under `PB_WORKSPACE/chats/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Folder(String);

/// Why a string is not a folder name.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid folder {0:?}: use 1 to 64 of a-z, 0-9, '-' and '_', not starting with '-' or '_'")]
pub struct FolderError(String);

impl Folder {
    pub fn parse(value: &str) -> Result<Self, FolderError> {
        let ok = !value.is_empty()
            && value.len() <= 64
            && value
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            && value.as_bytes()[0].is_ascii_alphanumeric();
        if ok {
            Ok(Self(value.to_owned()))
        } else {
            Err(FolderError(value.chars().take(64).collect()))
        }
    }

    /// A folder name derived from a display name ("Family Chat!" → "family-chat").
    pub fn from_name(name: &str) -> Self {
        let mut out = String::new();
        for c in name.chars().flat_map(char::to_lowercase) {
            if c.is_ascii_alphanumeric() {
                out.push(c);
            } else if !out.is_empty() && !out.ends_with('-') {
                out.push('-');
            }
        }
        let mut out = out.trim_end_matches('-').to_owned();
        out.truncate(48);
        let out = out.trim_end_matches('-').to_owned();
        if out.is_empty() {
            Self("chat".into())
        } else {
            Self(out)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Folder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_whatsapp_jid_forms() {
        assert_eq!(
            ChatJid::parse("4915112345678@s.whatsapp.net")
                .unwrap()
                .kind(),
            JidKind::User
        );
        assert_eq!(
            ChatJid::parse("120363012345@g.us").unwrap().kind(),
            JidKind::Group
        );
        assert_eq!(
            ChatJid::parse("4915-1600000000@g.us").unwrap().kind(),
            JidKind::Group
        );
        assert_eq!(
            ChatJid::parse("123456789012345@lid").unwrap().kind(),
            JidKind::Lid
        );
    }

    #[test]
    fn api_conversations_are_chats_of_their_own_form() {
        let c = ChatJid::parse("api:work-notes_2").unwrap();
        assert_eq!(c.kind(), JidKind::Api);
        assert!(c.is_api() && !c.is_group());
        assert_eq!(c.conversation(), Some("work-notes_2"));
        assert_eq!(ChatJid::api("work-notes_2").unwrap(), c);
        assert_eq!(ChatJid::parse("1@lid").unwrap().conversation(), None);
        for bad in [
            "api:", "api:Caps", "api:-x", "api:a b", "api:../x", "api:a:b",
        ] {
            let err = ChatJid::parse(bad).unwrap_err().to_string();
            assert!(err.contains("conversation name"), "{bad}: {err}");
        }
        assert!(ChatJid::api(&"a".repeat(49)).is_err());
        assert!(Folder::parse(&format!("api-{}", "a".repeat(48))).is_ok());
    }

    #[test]
    fn rejects_malformed_jids_with_reason() {
        for bad in [
            "",
            "abc",
            "@s.whatsapp.net",
            "12ab@s.whatsapp.net",
            "1@example.com",
            "x y@g.us",
        ] {
            let err = ChatJid::parse(bad).unwrap_err().to_string();
            assert!(err.contains("invalid JID"), "{bad}: {err}");
        }
        assert!(ChatJid::parse(&format!("{}@lid", "1".repeat(200))).is_err());
    }

    #[test]
    fn folder_from_name_is_a_valid_folder() {
        for name in [
            "Family Chat!",
            "  ",
            "Ünïcode ☃ group",
            "a--b",
            &"x".repeat(100),
        ] {
            let folder = Folder::from_name(name);
            assert!(Folder::parse(folder.as_str()).is_ok(), "{name} -> {folder}");
        }
        assert_eq!(Folder::from_name("Family Chat!").as_str(), "family-chat");
        assert!(Folder::parse("../etc").is_err());
        assert!(Folder::parse("_x").is_err());
    }
}
