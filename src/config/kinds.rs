//! The settings' small types: channel, log format, unknown-DM policy,
//! permission policy, and `provider/model`.

use std::str::FromStr;

use clap::ValueEnum;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ChannelKind {
    #[value(name = "whatsapp")]
    WhatsApp,
    Fake,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Readable lines (colours on a terminal).
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

/// What a direct message from someone not registered gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UnknownDm {
    /// Recorded, never answered.
    Ignore,
    /// One reply with a pairing code; the owner registers them by it.
    Pair,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PermissionPolicy {
    Allow,
    Reject,
}

/// `provider/model`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRef {
    pub provider: String,
    pub model: String,
}

impl FromStr for ModelRef {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        match value.trim().split_once('/') {
            Some((p, model)) if !p.is_empty() && !model.is_empty() => Ok(ModelRef {
                provider: p.into(),
                model: model.into(),
            }),
            _ => Err("expected provider/model".into()),
        }
    }
}
