//! One typed configuration, from flags and environment (a flag wins over
//! its variable; a variable that is set but blank counts as unset).
//!
//! clap parses every value, with its ranges and enums, and refuses a bad one
//! at start-up. Each value is named after its variable
//! (`--run-timeout <PB_RUN_TIMEOUT>`), so clap's message names the variable
//! whether the value came from a flag or from the environment.
//! [`Config::validate`] adds the rules clap cannot check without echoing the
//! value. Secrets are wrapped so `Debug` and logs never show them.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use chrono_tz::Tz;
use clap::builder::{BoolishValueParser, RangedU64ValueParser};
use clap::{Args, ValueEnum};

/// Validated configuration: parsed by clap, then [`Config::validate`].
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Directory for the bridge's database and state [default:
    /// $XDG_DATA_HOME/pocketbrain/data, else ~/.local/share/pocketbrain/data]
    #[arg(
        long,
        env = "PB_DATA_DIR",
        value_name = "PB_DATA_DIR",
        default_value_os_t = state_dir("data"),
        hide_default_value = true,
        global = true,
        hide_env_values = true
    )]
    pub data_dir: PathBuf,
    /// Workspace OpenCode works in; chats get PB_WORKSPACE/chats/<folder>
    /// [default: beside the data folder's default, .../pocketbrain/workspace]
    #[arg(
        long,
        env = "PB_WORKSPACE",
        value_name = "PB_WORKSPACE",
        default_value_os_t = state_dir("workspace"),
        hide_default_value = true,
        global = true,
        hide_env_values = true
    )]
    pub workspace: PathBuf,
    /// Folder for the agent's tool calls. OpenCode must see it at the same
    /// path: with OpenCode in another container, a volume both mount
    /// there (never the data folder itself) [default: PB_DATA_DIR/ipc]
    #[arg(
        long = "ipc-dir",
        env = "PB_IPC_DIR",
        value_name = "PB_IPC_DIR",
        global = true,
        hide_env_values = true
    )]
    pub ipc_dir_setting: Option<PathBuf>,
    /// Address of the health/metrics (and fake channel) HTTP server
    #[arg(
        long,
        env = "PB_HTTP_ADDR",
        value_name = "PB_HTTP_ADDR",
        default_value = "127.0.0.1:8787",
        global = true,
        hide_env_values = true
    )]
    pub http_addr: SocketAddr,
    /// Bearer token every HTTP route but /health requires; needed when
    /// PB_HTTP_ADDR is not a loopback address
    #[arg(
        long,
        env = "PB_HTTP_TOKEN",
        value_name = "PB_HTTP_TOKEN",
        value_parser = Secret::parse,
        global = true,
        hide_env_values = true
    )]
    pub http_token: Option<Secret>,
    /// Host names (besides localhost and IP addresses) the HTTP server
    /// answers to, comma separated, e.g. "pocketbrain.lan"; a request for
    /// any other name is refused (DNS rebinding)
    #[arg(
        long,
        env = "PB_HTTP_HOSTS",
        value_name = "PB_HTTP_HOSTS",
        value_delimiter = ',',
        value_parser = parse_host_name,
        global = true,
        hide_env_values = true
    )]
    pub http_hosts: Vec<String>,
    /// Log format: human (default) or json (one JSON object per line)
    #[arg(
        long,
        env = "PB_LOG_FORMAT",
        value_name = "PB_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Human,
        global = true,
        hide_env_values = true
    )]
    pub log_format: LogFormat,
    /// Channel: WhatsApp, or fake (an HTTP stand-in for trying it out, /fake/*)
    #[arg(
        long,
        env = "PB_CHANNEL",
        value_name = "PB_CHANNEL",
        value_enum,
        default_value_t = ChannelKind::WhatsApp,
        global = true,
        hide_env_values = true
    )]
    pub channel: ChannelKind,
    /// The assistant's name, used for the group trigger "@<name>"
    #[arg(
        long,
        env = "ASSISTANT_NAME",
        value_name = "ASSISTANT_NAME",
        value_parser = parse_assistant_name,
        default_value = "Andy",
        global = true,
        hide_env_values = true
    )]
    pub assistant_name: String,
    /// true when the assistant has its own WhatsApp number
    #[arg(
        long,
        env = "ASSISTANT_HAS_OWN_NUMBER",
        value_name = "ASSISTANT_HAS_OWN_NUMBER",
        action = clap::ArgAction::Set,
        value_parser = BoolishValueParser::new(),
        default_value = "false",
        global = true,
        hide_env_values = true
    )]
    pub assistant_has_own_number: bool,
    /// Most chats with a run at the same time
    #[arg(
        long,
        env = "MAX_CONCURRENT_SESSIONS",
        value_name = "MAX_CONCURRENT_SESSIONS",
        value_parser = RangedU64ValueParser::<usize>::new().range(1..=64),
        default_value = "5",
        global = true,
        hide_env_values = true
    )]
    pub max_concurrent_sessions: usize,
    /// URL of a running `opencode serve`; unset: the bridge starts one
    #[arg(
        long,
        env = "OPENCODE_URL",
        value_name = "OPENCODE_URL",
        global = true,
        hide_env_values = true
    )]
    pub opencode_url: Option<reqwest::Url>,
    /// OpenCode server password (HTTP basic auth)
    #[arg(
        long,
        env = "OPENCODE_SERVER_PASSWORD",
        value_name = "OPENCODE_SERVER_PASSWORD",
        value_parser = Secret::parse,
        global = true,
        hide_env_values = true
    )]
    pub opencode_password: Option<Secret>,
    /// OpenCode server user name
    #[arg(
        long,
        env = "OPENCODE_SERVER_USERNAME",
        value_name = "OPENCODE_SERVER_USERNAME",
        default_value = "opencode",
        global = true,
        hide_env_values = true
    )]
    pub opencode_username: String,
    /// Extra environment variables (names, comma-separated) a managed
    /// OpenCode gets besides its allow-list; the agent's shell never sees them
    #[arg(
        long,
        env = "PB_OPENCODE_ENV",
        value_name = "PB_OPENCODE_ENV",
        value_delimiter = ',',
        value_parser = parse_env_name,
        global = true,
        hide_env_values = true
    )]
    pub opencode_env: Vec<String>,
    /// Model as provider/model; unset: OpenCode's configured default
    #[arg(
        long,
        env = "OPENCODE_MODEL",
        value_name = "OPENCODE_MODEL",
        global = true,
        hide_env_values = true
    )]
    pub opencode_model: Option<ModelRef>,
    /// The opencode binary to start when OPENCODE_URL is unset; unset: PATH, then .tools/
    #[arg(
        long,
        env = "OPENCODE_BIN",
        value_name = "OPENCODE_BIN",
        global = true,
        hide_env_values = true
    )]
    pub opencode_bin: Option<PathBuf>,
    /// IANA time zone for prompts and schedules
    #[arg(
        long,
        env = "TZ",
        value_name = "TZ",
        value_parser = parse_tz,
        default_value = "UTC",
        global = true,
        hide_env_values = true
    )]
    pub tz: Tz,
    /// Longest a run may take before it is aborted
    #[arg(
        long,
        env = "PB_RUN_TIMEOUT",
        value_name = "PB_RUN_TIMEOUT",
        value_parser = parse_duration,
        default_value = "20m",
        global = true,
        hide_env_values = true
    )]
    pub run_timeout: Duration,
    /// How long an approval request waits for the owner's answer before it
    /// is refused (a run waiting for one keeps running: keep PB_RUN_TIMEOUT longer)
    #[arg(
        long,
        env = "PB_APPROVAL_TIMEOUT",
        value_name = "PB_APPROVAL_TIMEOUT",
        value_parser = parse_duration,
        default_value = "10m",
        global = true,
        hide_env_values = true
    )]
    pub approval_timeout: Duration,
    /// First retry delay of a failed run, doubling per attempt
    #[arg(
        long,
        env = "PB_RETRY_BASE",
        value_name = "PB_RETRY_BASE",
        value_parser = parse_duration,
        default_value = "5s",
        global = true,
        hide_env_values = true
    )]
    pub retry_base: Duration,
    /// Attempts before a failing run is parked
    #[arg(
        long,
        env = "PB_RETRY_ATTEMPTS",
        value_name = "PB_RETRY_ATTEMPTS",
        value_parser = clap::value_parser!(u32).range(1..=20),
        default_value = "5",
        global = true,
        hide_env_values = true
    )]
    pub retry_attempts: u32,
    /// Answer to permission requests of the main chat's agent (other chats'
    /// requests go to the owner: see PB_APPROVAL_TIMEOUT)
    #[arg(
        long,
        env = "PB_PERMISSION",
        value_name = "PB_PERMISSION",
        value_enum,
        default_value_t = PermissionPolicy::Allow,
        global = true,
        hide_env_values = true
    )]
    pub permission: PermissionPolicy,
    /// A direct message from a number that is not registered: ignore it, or
    /// pair (one reply with a pairing code an hour, a notice in the main
    /// chat; the owner sends `pair CODE`). Only with ASSISTANT_HAS_OWN_NUMBER:
    /// on a shared number such chats are the owner's own
    #[arg(
        long,
        env = "PB_UNKNOWN_DM",
        value_name = "PB_UNKNOWN_DM",
        value_enum,
        default_value_t = UnknownDm::Pair,
        global = true,
        hide_env_values = true
    )]
    pub unknown_dm: UnknownDm,
    /// An emoji the assistant reacts with to the message it starts working
    /// on (taken back when it has answered); unset: no reaction
    #[arg(
        long,
        env = "PB_ACK_REACTION",
        value_name = "PB_ACK_REACTION",
        value_parser = parse_reaction,
        global = true,
        hide_env_values = true
    )]
    pub ack_reaction: Option<String>,
    /// Models a member chat may choose with /model (comma separated
    /// provider/model, provider/* or *); unset: any OpenCode offers
    #[arg(
        long,
        env = "PB_MODELS_MEMBER",
        value_name = "PB_MODELS_MEMBER",
        value_delimiter = ',',
        value_parser = parse_model_pattern,
        global = true,
        hide_env_values = true
    )]
    pub models_member: Vec<String>,
    /// Models a guest chat may choose with /model (as PB_MODELS_MEMBER)
    #[arg(
        long,
        env = "PB_MODELS_GUEST",
        value_name = "PB_MODELS_GUEST",
        value_delimiter = ',',
        value_parser = parse_model_pattern,
        global = true,
        hide_env_values = true
    )]
    pub models_guest: Vec<String>,
    /// Skills a member chat's agent may load (comma separated names, or *);
    /// unset: none. The main chat may load every skill
    #[arg(
        long,
        env = "PB_SKILLS_MEMBER",
        value_name = "PB_SKILLS_MEMBER",
        value_delimiter = ',',
        value_parser = parse_skill_name,
        global = true,
        hide_env_values = true
    )]
    pub skills_member: Vec<String>,
    /// Skills a guest (group) chat's agent may load (as PB_SKILLS_MEMBER)
    #[arg(
        long,
        env = "PB_SKILLS_GUEST",
        value_name = "PB_SKILLS_GUEST",
        value_delimiter = ',',
        value_parser = parse_skill_name,
        global = true,
        hide_env_values = true
    )]
    pub skills_guest: Vec<String>,
    /// Compact a chat's session (OpenCode's summary) once its last turn used
    /// this share of the model's context window (0 turns it off)
    #[arg(
        long,
        env = "PB_COMPACT_AT",
        value_name = "PB_COMPACT_AT",
        value_parser = parse_share,
        default_value = "0.8",
        global = true,
        hide_env_values = true
    )]
    pub compact_at: f64,
    /// Largest a memory file (a chat's AGENTS.md, the global one) may grow
    /// before the agent is given a task to condense it (K/M suffixes)
    #[arg(
        long,
        env = "PB_MEMORY_MAX_BYTES",
        value_name = "PB_MEMORY_MAX_BYTES",
        value_parser = crate::media::parse_size,
        default_value = "16K",
        global = true,
        hide_env_values = true
    )]
    pub memory_max_bytes: u64,
    /// Largest inbound message text in bytes
    #[arg(
        long,
        env = "PB_MAX_TEXT_BYTES",
        value_name = "PB_MAX_TEXT_BYTES",
        value_parser = RangedU64ValueParser::<usize>::new().range(1..=1_048_576),
        default_value = "65536",
        global = true,
        hide_env_values = true
    )]
    pub max_text_bytes: usize,
    /// Most messages one prompt carries (the newest win)
    #[arg(
        long,
        env = "PB_MAX_BATCH",
        value_name = "PB_MAX_BATCH",
        value_parser = RangedU64ValueParser::<usize>::new().range(1..=10_000),
        default_value = "100",
        global = true,
        hide_env_values = true
    )]
    pub max_batch: usize,
    /// Most active or paused scheduled tasks one chat may have; the agent
    /// is told to cancel one to schedule another
    #[arg(
        long,
        env = "PB_MAX_TASKS_PER_CHAT",
        value_name = "PB_MAX_TASKS_PER_CHAT",
        value_parser = RangedU64ValueParser::<usize>::new().range(1..=10_000),
        default_value = "50",
        global = true,
        hide_env_values = true
    )]
    pub max_tasks_per_chat: usize,
    /// How long an agent tool waits for the bridge before telling the model it is queued
    #[arg(
        long,
        env = "PB_IPC_TIMEOUT",
        value_name = "PB_IPC_TIMEOUT",
        value_parser = parse_duration,
        default_value = "30s",
        global = true,
        hide_env_values = true
    )]
    pub ipc_timeout: Duration,
    /// Phone number (digits, with country code) to pair with a code instead of a QR code
    #[arg(
        long,
        env = "PB_WHATSAPP_PHONE",
        value_name = "PB_WHATSAPP_PHONE",
        value_parser = parse_phone,
        global = true,
        hide_env_values = true
    )]
    pub whatsapp_phone: Option<String>,
    /// Longest WhatsApp message before a reply is split, in characters
    #[arg(
        long,
        env = "PB_WA_CHUNK_LIMIT",
        value_name = "PB_WA_CHUNK_LIMIT",
        value_parser = RangedU64ValueParser::<usize>::new().range(200..=60_000),
        default_value = "4000",
        global = true,
        hide_env_values = true
    )]
    pub wa_chunk_limit: usize,
    /// Send read receipts for processed messages
    #[arg(
        long,
        env = "PB_READ_RECEIPTS",
        value_name = "PB_READ_RECEIPTS",
        action = clap::ArgAction::Set,
        value_parser = BoolishValueParser::new(),
        default_value = "true",
        global = true,
        hide_env_values = true
    )]
    pub read_receipts: bool,
    /// After pairing, make the account's own chat ("Message yourself") the
    /// main chat, unless a main chat is registered already
    #[arg(
        long,
        env = "PB_AUTO_MAIN",
        value_name = "PB_AUTO_MAIN",
        action = clap::ArgAction::Set,
        value_parser = BoolishValueParser::new(),
        default_value = "true",
        global = true,
        hide_env_values = true
    )]
    pub auto_main: bool,
    /// Most WhatsApp messages per minute to one chat
    #[arg(
        long,
        env = "PB_WA_PER_CHAT_PER_MINUTE",
        value_name = "PB_WA_PER_CHAT_PER_MINUTE",
        value_parser = clap::value_parser!(u32).range(1..=600),
        default_value = "12",
        global = true,
        hide_env_values = true
    )]
    pub wa_per_chat_per_minute: u32,
    /// Most WhatsApp messages per minute overall
    #[arg(
        long,
        env = "PB_WA_PER_MINUTE",
        value_name = "PB_WA_PER_MINUTE",
        value_parser = clap::value_parser!(u32).range(1..=3000),
        default_value = "40",
        global = true,
        hide_env_values = true
    )]
    pub wa_per_minute: u32,
    /// Event stream silence after which it is reconnected
    #[arg(
        long,
        env = "PB_STREAM_WATCHDOG",
        value_name = "PB_STREAM_WATCHDOG",
        value_parser = parse_duration,
        default_value = "30s",
        global = true,
        hide_env_values = true
    )]
    pub stream_watchdog: Duration,
    /// Largest inbound or outbound file per kind: one size for all
    /// (`20M`) or `kind=size` pairs (`image=8M,document=50M`; kinds image,
    /// voice, audio, document, video, sticker; K/M/G are 1024-based)
    #[arg(
        long,
        env = "PB_MEDIA_MAX_BYTES",
        value_name = "PB_MEDIA_MAX_BYTES",
        value_parser = crate::media::MediaLimits::parse,
        default_value = "image=16M,voice=16M,audio=16M,document=100M,video=64M,sticker=1M",
        global = true,
        hide_env_values = true
    )]
    pub media_max_bytes: crate::media::MediaLimits,
    /// OpenAI-compatible speech-to-text endpoint for voice notes
    /// (`http://127.0.0.1:8080/v1` or the full `/v1/audio/transcriptions`
    /// URL); unset: voice notes reach the agent as files only
    #[arg(
        long,
        env = "PB_TRANSCRIBE_URL",
        value_name = "PB_TRANSCRIBE_URL",
        global = true,
        hide_env_values = true
    )]
    pub transcribe_url: Option<reqwest::Url>,
    /// The transcription model the endpoint is asked for
    #[arg(
        long,
        env = "PB_TRANSCRIBE_MODEL",
        value_name = "PB_TRANSCRIBE_MODEL",
        default_value = "whisper-1",
        global = true,
        hide_env_values = true
    )]
    pub transcribe_model: String,
    /// API key for the transcription endpoint (sent as a bearer token)
    #[arg(
        long,
        env = "PB_TRANSCRIBE_API_KEY",
        value_name = "PB_TRANSCRIBE_API_KEY",
        value_parser = Secret::parse,
        global = true,
        hide_env_values = true
    )]
    pub transcribe_api_key: Option<Secret>,
    /// Longest a transcription may take before the voice note goes to the
    /// agent with a note instead
    #[arg(
        long,
        env = "PB_TRANSCRIBE_TIMEOUT",
        value_name = "PB_TRANSCRIBE_TIMEOUT",
        value_parser = parse_duration,
        default_value = "60s",
        global = true,
        hide_env_values = true
    )]
    pub transcribe_timeout: Duration,
    /// Requests per minute each API key may make (a burst of as many is
    /// allowed; 429 with Retry-After beyond). The admin token is not limited
    #[arg(
        long,
        env = "PB_API_RATE_PER_MINUTE",
        value_name = "PB_API_RATE_PER_MINUTE",
        value_parser = clap::value_parser!(u32).range(1..=100_000),
        default_value = "60",
        global = true,
        hide_env_values = true
    )]
    pub api_rate_per_minute: u32,
    /// Web origins allowed to call the local API from a browser (comma
    /// separated, e.g. "http://localhost:5173"); none by default
    #[arg(
        long,
        env = "PB_API_CORS_ORIGINS",
        value_name = "PB_API_CORS_ORIGINS",
        value_delimiter = ',',
        global = true,
        hide_env_values = true
    )]
    pub api_cors_origins: Vec<String>,
    /// How long a synchronous API request waits for the reply (the message
    /// is kept and answered later when it runs out)
    #[arg(
        long,
        env = "PB_API_REPLY_TIMEOUT",
        value_name = "PB_API_REPLY_TIMEOUT",
        value_parser = parse_duration,
        default_value = "5m",
        global = true,
        hide_env_values = true
    )]
    pub api_reply_timeout: Duration,
}

/// `<XDG_DATA_HOME or ~/.local/share>/pocketbrain/<leaf>`: where every
/// command (serve, the CLI, scripts/run.sh) finds the bridge's state unless
/// PB_DATA_DIR / PB_WORKSPACE say otherwise (the image sets both).
fn state_dir(leaf: &str) -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".local/share"))
        })
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("pocketbrain").join(leaf)
}

/// Shortest `PB_HTTP_TOKEN` or `OPENCODE_SERVER_PASSWORD` accepted.
pub const MIN_TOKEN_LEN: usize = 16;

/// Words that mark a value as a placeholder left from an example, compared
/// with the value lower-cased and stripped of everything but letters and
/// digits (`change-me`, `Change_Me_Now`, `changeme123` are all placeholders).
const PLACEHOLDER_WORDS: [&str; 9] = [
    "changeme",
    "replaceme",
    "placeholder",
    "yourtoken",
    "yourpassword",
    "yoursecret",
    "longrandomstring",
    "randomstring",
    "example",
];

/// Why `value` cannot be a token or password, or `None` when it may: it is
/// shorter than [`MIN_TOKEN_LEN`], names a placeholder, or is made of a few
/// characters repeated (`aaaa…`, `12121212…`). The value itself is never
/// part of the reason.
pub fn weak_secret(value: &str) -> Option<String> {
    let chars = value.chars().count();
    if chars < MIN_TOKEN_LEN {
        return Some(format!(
            "it is {chars} characters long, shorter than {MIN_TOKEN_LEN}"
        ));
    }
    let folded: String = value
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if let Some(word) = PLACEHOLDER_WORDS.iter().find(|w| folded.contains(*w)) {
        return Some(format!(
            "it is a placeholder (it contains {word:?}), not a secret"
        ));
    }
    let distinct: std::collections::BTreeSet<char> = value.chars().collect();
    if distinct.len() < 6 {
        return Some(format!(
            "it is made of only {} different characters",
            distinct.len()
        ));
    }
    None
}

/// A skill's name (lower-case letters, digits, `-`), or `*`.
fn parse_skill_name(value: &str) -> Result<String, String> {
    let v = value.trim();
    let ok = v == "*"
        || (!v.is_empty()
            && v.len() <= 64
            && v.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
    if ok {
        Ok(v.to_owned())
    } else {
        Err(format!(
            "{value:?} is not a skill name (a-z, 0-9, '-') or *"
        ))
    }
}

/// A share between 0 and 0.95.
fn parse_share(value: &str) -> Result<f64, String> {
    match value.trim().parse::<f64>() {
        Ok(v) if (0.0..=0.95).contains(&v) => Ok(v),
        _ => Err(format!(
            "{value:?} is not a share from 0 to 0.95 (e.g. 0.8)"
        )),
    }
}

/// A model pattern: `provider/model`, `provider/*` or `*`.
fn parse_model_pattern(value: &str) -> Result<String, String> {
    let v = value.trim();
    if v == "*" {
        return Ok(v.to_owned());
    }
    match v.split_once('/') {
        Some((p, m))
            if !p.is_empty()
                && !m.is_empty()
                && !p.contains('*')
                && (m == "*" || !m.contains('*')) =>
        {
            Ok(v.to_owned())
        }
        _ => Err(format!("{value:?} is not provider/model, provider/* or *")),
    }
}

/// The models each profile's chats may choose (`PB_MODELS_MEMBER`,
/// `PB_MODELS_GUEST`; the main chat may choose any).
#[derive(Debug, Clone, Default)]
pub struct ModelPins {
    pub member: Vec<String>,
    pub guest: Vec<String>,
}

impl ModelPins {
    pub fn from_config(config: &Config) -> Self {
        Self {
            member: config.models_member.clone(),
            guest: config.models_guest.clone(),
        }
    }

    /// Whether a chat of `profile` may use `model` (`provider/model`).
    pub fn allows(&self, profile: crate::model::Profile, model: &str) -> bool {
        let list = match profile {
            crate::model::Profile::Main => return true,
            crate::model::Profile::Member => &self.member,
            crate::model::Profile::Guest => &self.guest,
        };
        list.is_empty()
            || list.iter().any(|p| {
                p == "*"
                    || p == model
                    || p.strip_suffix("/*")
                        .is_some_and(|prov| model.split_once('/').is_some_and(|(mp, _)| mp == prov))
            })
    }

    /// The setting that pins `profile`'s models.
    pub fn setting(profile: crate::model::Profile) -> &'static str {
        match profile {
            crate::model::Profile::Guest => "PB_MODELS_GUEST",
            _ => "PB_MODELS_MEMBER",
        }
    }
}

/// A reaction for `PB_ACK_REACTION`: one emoji (a few code points at
/// most: skin tones and joiners), no letters, digits or spaces.
fn parse_reaction(value: &str) -> Result<String, String> {
    let v = value.trim();
    let ok = !v.is_empty()
        && v.chars().count() <= 8
        && v.chars()
            .all(|c| !c.is_alphanumeric() && !c.is_whitespace() && !c.is_control());
    if ok {
        Ok(v.to_owned())
    } else {
        Err(format!("{value:?} is not one emoji (e.g. 👀)"))
    }
}

/// A host name for `PB_HTTP_HOSTS`: letters, digits, `-` and `.`, matched
/// case-insensitively.
fn parse_host_name(value: &str) -> Result<String, String> {
    let v = value.trim().trim_end_matches('.').to_ascii_lowercase();
    let ok = !v.is_empty()
        && v.len() <= 253
        && v.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if ok {
        Ok(v)
    } else {
        Err(format!(
            "{value:?} is not a host name (letters, digits, '-' and '.'; no port, no scheme)"
        ))
    }
}

/// A secret string: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret read from somewhere other than the command line.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// clap's parser: never fails, so clap never echoes the value.
    fn parse(value: &str) -> Result<Secret, std::convert::Infallible> {
        Ok(Secret(value.to_owned()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

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

/// A setting that failed validation; the message names it.
#[derive(Debug, thiserror::Error)]
#[error("invalid {setting} ({flag}): {why}")]
pub struct ConfigError {
    pub setting: &'static str,
    pub flag: &'static str,
    pub why: String,
}

/// Parses a duration with `humantime` (`90s`, `10m`, `1h30m`, `2h 5m`,
/// `1d`, `500ms`); a bare number is milliseconds. Zero is refused.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let v = value.trim();
    let d = if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        Duration::from_millis(v.parse().map_err(|_| "is too large".to_owned())?)
    } else {
        humantime::parse_duration(v).map_err(|e| match e {
            humantime::DurationError::UnknownUnit { unit, .. } => format!(
                "unknown unit {unit:?} (examples: 90s, 10m, 1h30m, 1d, 500ms; a bare number is ms)"
            ),
            humantime::DurationError::NumberOverflow => "is too large".to_owned(),
            _ => "is not a duration (examples: 90s, 10m, 1h30m, 1d, 500ms)".to_owned(),
        })?
    };
    if d.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(d)
}

fn parse_assistant_name(value: &str) -> Result<String, String> {
    let name = value.trim();
    if name.is_empty()
        || name.len() > 64
        || name.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err("use one word of at most 64 bytes, without spaces".into());
    }
    Ok(name.to_owned())
}

/// An IANA name; a leading `:` (POSIX's "implementation-defined" form, as in
/// `TZ=:Europe/Berlin`) is ignored.
fn parse_tz(value: &str) -> Result<Tz, String> {
    value
        .trim()
        .trim_start_matches(':')
        .parse()
        .map_err(|_| "not an IANA time zone (example: Europe/Berlin)".into())
}

/// Digits with country code; `+`, spaces and dashes are dropped.
/// An environment variable name: letters, digits and `_`, not starting
/// with a digit; never one of the bridge's own `PB_*` settings.
fn parse_env_name(value: &str) -> Result<String, String> {
    let name = value.trim();
    let shaped = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !shaped {
        return Err(format!("{name:?} is not an environment variable name"));
    }
    if name.starts_with("PB_") {
        return Err(format!(
            "{name} is a bridge setting; it is never passed to OpenCode"
        ));
    }
    Ok(name.to_owned())
}

fn parse_phone(value: &str) -> Result<String, String> {
    let digits: String = value
        .chars()
        .filter(|c| !matches!(c, '+' | ' ' | '-'))
        .collect();
    if digits.len() < 7 || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(
            "expected a phone number with country code, digits only (e.g. 4915112345678)".into(),
        );
    }
    Ok(digits)
}

/// Drops the environment variable of every argument whose variable is set
/// but blank, so it counts as unset, as `${VAR:-}` in docker-compose.yml leaves
/// it (clap would parse the empty string and refuse it).
pub fn unset_blank_env(cmd: clap::Command) -> clap::Command {
    cmd.mut_args(|a| {
        let blank = a
            .get_env()
            .and_then(std::env::var_os)
            .is_some_and(|v| v.to_str().is_some_and(|s| s.trim().is_empty()));
        if blank {
            a.env(None::<&'static str>)
        } else {
            a
        }
    })
}

impl Config {
    /// What clap does not check: an OpenCode URL is http(s) and carries no
    /// credentials (a URL is logged; clap would echo a refused one); an
    /// HTTP token is long enough to guess no better than a key and fits in
    /// a header.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(token) = &self.http_token {
            let t = token.expose();
            if !t.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(ConfigError {
                    setting: "PB_HTTP_TOKEN",
                    flag: "--http-token",
                    why: format!(
                        "use at least {MIN_TOKEN_LEN} printable ASCII characters without spaces (e.g. 32 random bytes in hex)"
                    ),
                });
            }
            weak_secret(t).map_or(Ok(()), |why| {
                Err(ConfigError {
                    setting: "PB_HTTP_TOKEN",
                    flag: "--http-token",
                    why: format!("{why}: use at least {MIN_TOKEN_LEN} random characters (e.g. `openssl rand -hex 32`)"),
                })
            })?;
        }
        if let Some(password) = &self.opencode_password {
            weak_secret(password.expose()).map_or(Ok(()), |why| {
                Err(ConfigError {
                    setting: "OPENCODE_SERVER_PASSWORD",
                    flag: "--opencode-password",
                    why: format!(
                        "{why}: use at least {MIN_TOKEN_LEN} random characters (e.g. `openssl rand -hex 32`), the same for OpenCode and the bridge; unset it to have the bridge's own OpenCode use a random one"
                    ),
                })
            })?;
        }
        let err = |why: &str| ConfigError {
            setting: "OPENCODE_URL",
            flag: "--opencode-url",
            why: why.into(),
        };
        if let Some(url) = &self.transcribe_url
            && (!matches!(url.scheme(), "http" | "https")
                || !url.username().is_empty()
                || url.password().is_some())
        {
            return Err(ConfigError {
                setting: "PB_TRANSCRIBE_URL",
                flag: "--transcribe-url",
                why: "use an http:// or https:// URL without a user or password (the key goes in PB_TRANSCRIBE_API_KEY)".into(),
            });
        }
        for origin in &self.api_cors_origins {
            let ok = (origin.starts_with("http://") || origin.starts_with("https://"))
                && !origin.ends_with('/')
                && axum::http::HeaderValue::from_str(origin).is_ok();
            if !ok {
                return Err(ConfigError {
                    setting: "PB_API_CORS_ORIGINS",
                    flag: "--api-cors-origins",
                    why: format!(
                        "{origin:?} is not an origin: use scheme://host[:port] with no path or trailing slash"
                    ),
                });
            }
        }
        if let Some(url) = &self.opencode_url {
            if !matches!(url.scheme(), "http" | "https") {
                return Err(err("use an http:// or https:// URL"));
            }
            if !url.username().is_empty() || url.password().is_some() {
                return Err(err(
                    "leave the user and password out of the URL; set OPENCODE_SERVER_USERNAME and OPENCODE_SERVER_PASSWORD",
                ));
            }
        }
        Ok(())
    }

    /// The rule for serving: an HTTP address other people can reach needs
    /// `PB_HTTP_TOKEN`.
    pub fn check_http_bind(&self) -> Result<(), ConfigError> {
        if !self.http_addr.ip().is_loopback() && self.http_token.is_none() {
            return Err(ConfigError {
                setting: "PB_HTTP_ADDR",
                flag: "--http-addr",
                why: format!(
                    "{} is not a loopback address, so every route but /health needs a token: set PB_HTTP_TOKEN (at least {MIN_TOKEN_LEN} characters), or bind to 127.0.0.1",
                    self.http_addr
                ),
            });
        }
        Ok(())
    }

    /// The file the running bridge writes its token to (owner-only), for
    /// the CLI.
    pub fn token_file(&self) -> PathBuf {
        self.data_dir.join("http-token")
    }

    /// The bridge's database file.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("pocketbrain.sqlite3")
    }

    /// The folder both the bridge and the plugin use for tool calls.
    pub fn ipc_dir(&self) -> PathBuf {
        self.ipc_dir_setting
            .clone()
            .unwrap_or_else(|| self.data_dir.join("ipc"))
    }

    /// The transcription endpoint's settings, when one is configured.
    pub fn transcribe(&self) -> Option<crate::transcribe::TranscribeSettings> {
        self.transcribe_url
            .as_ref()
            .map(|url| crate::transcribe::TranscribeSettings {
                url: url.to_string(),
                model: self.transcribe_model.clone(),
                api_key: self.transcribe_api_key.clone(),
                timeout: self.transcribe_timeout,
            })
    }

    /// WhatsApp's device store (its own file, apart from the bridge's database).
    pub fn whatsapp_db(&self) -> PathBuf {
        self.data_dir.join("whatsapp-device.sqlite3")
    }
}

#[cfg(test)]
impl Config {
    /// The defaults `pocketbrain serve` has with no environment, for unit
    /// tests of other modules.
    pub fn defaults_for_tests() -> Config {
        use clap::CommandFactory;
        let cmd = crate::cli::Cli::command().mut_args(|a| a.env(None::<&'static str>));
        crate::cli::Cli::parse_with(cmd, ["pocketbrain", "serve"])
            .expect("the defaults parse")
            .config
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Mutex, PoisonError};

    use clap::CommandFactory;

    use super::*;
    use crate::cli::Cli;

    /// The environment is process-wide: tests that set it take turns.
    static ENV: Mutex<()> = Mutex::new(());

    /// Parses `pocketbrain <args>` as `main` does, with `env` as the only
    /// settings in the environment (the caller's own are ignored), then
    /// validates. An error reads as the user would see it.
    fn parse(env: &[(&str, &str)], args: &[&str]) -> Result<Config, String> {
        let cmd = {
            let _turn = ENV.lock().unwrap_or_else(PoisonError::into_inner);
            let before: Vec<_> = env.iter().map(|(k, _)| std::env::var_os(k)).collect();
            for (k, v) in env {
                // SAFETY: the variables are set and restored under ENV, and
                // only these tests read them. Other threads of the test
                // binary read the environment through std, which locks it.
                unsafe { std::env::set_var(k, v) };
            }
            // clap reads each variable here, when the argument is built.
            let cmd = Cli::command().mut_args(|a| {
                let given = a
                    .get_env()
                    .is_some_and(|name| env.iter().any(|(k, _)| name == *k));
                if given {
                    a
                } else {
                    a.env(None::<&'static str>)
                }
            });
            let cmd = unset_blank_env(cmd);
            for ((k, _), old) in env.iter().zip(before) {
                // SAFETY: as above.
                unsafe {
                    match old {
                        Some(v) => std::env::set_var(k, v),
                        None => std::env::remove_var(k),
                    }
                }
            }
            cmd
        };
        let argv = std::iter::once("pocketbrain").chain(args.iter().copied());
        let cli = Cli::parse_with(cmd, argv).map_err(|e| e.to_string())?;
        cli.config.validate().map_err(|e| e.to_string())?;
        Ok(cli.config)
    }

    fn refused(env: &[(&str, &str)], args: &[&str]) -> String {
        match parse(env, args) {
            Ok(c) => panic!("{env:?} {args:?} was accepted: {c:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn opencode_env_takes_variable_names_but_no_bridge_setting() {
        let c = parse(&[("PB_OPENCODE_ENV", "AWS_REGION, MY_KEY")], &["serve"]).unwrap();
        assert_eq!(c.opencode_env, vec!["AWS_REGION", "MY_KEY"]);
        assert!(
            refused(&[("PB_OPENCODE_ENV", "PB_DATA_DIR")], &["serve"]).contains("bridge setting")
        );
        assert!(refused(&[("PB_OPENCODE_ENV", "A-B")], &["serve"]).contains("PB_OPENCODE_ENV"));
    }

    #[test]
    fn media_limits_and_the_transcription_endpoint_are_checked() {
        let c = parse(&[], &["serve"]).unwrap();
        assert_eq!(c.media_max_bytes, crate::media::MediaLimits::default());
        assert!(c.transcribe().is_none());
        let c = parse(
            &[
                ("PB_MEDIA_MAX_BYTES", "image=8M"),
                ("PB_TRANSCRIBE_URL", "http://127.0.0.1:8080/v1"),
                ("PB_TRANSCRIBE_API_KEY", "sk-secret"),
            ],
            &["serve"],
        )
        .unwrap();
        assert_eq!(c.media_max_bytes.image, 8 * 1024 * 1024);
        let t = c.transcribe().unwrap();
        assert_eq!(
            (t.url.as_str(), t.model.as_str()),
            ("http://127.0.0.1:8080/v1", "whisper-1")
        );
        assert!(!format!("{c:?}").contains("sk-secret"));
        let e = refused(&[("PB_MEDIA_MAX_BYTES", "photo=1M")], &["serve"]);
        assert!(
            e.contains("PB_MEDIA_MAX_BYTES") && e.contains("not a media kind"),
            "{e}"
        );
        let e = refused(&[("PB_TRANSCRIBE_URL", "ftp://x")], &["serve"]);
        assert!(e.starts_with("invalid PB_TRANSCRIBE_URL"), "{e}");
    }

    #[test]
    fn defaults_are_valid() {
        let c = parse(&[], &["serve"]).unwrap();
        // One default for every command, the one scripts/run.sh uses.
        assert_eq!(c.data_dir, state_dir("data"));
        assert!(c.data_dir.ends_with("pocketbrain/data"), "{:?}", c.data_dir);
        assert_eq!(c.workspace, state_dir("workspace"));
        let run_sh =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/run.sh"))
                .unwrap();
        assert!(
            run_sh.contains(r#"state="${XDG_DATA_HOME:-$HOME/.local/share}/pocketbrain""#)
                && run_sh.contains("$state/data")
                && run_sh.contains("$state/workspace"),
            "scripts/run.sh's defaults differ"
        );
        assert_eq!(c.http_addr.to_string(), "127.0.0.1:8787");
        assert_eq!(c.channel, ChannelKind::WhatsApp);
        assert_eq!(c.assistant_name, "Andy");
        assert!(!c.assistant_has_own_number);
        assert_eq!(c.max_concurrent_sessions, 5);
        assert_eq!(c.opencode_url, None);
        assert_eq!(c.opencode_password, None);
        assert_eq!(c.opencode_username, "opencode");
        assert_eq!(c.opencode_model, None);
        assert_eq!(c.opencode_bin, None);
        assert!(c.opencode_env.is_empty());
        assert_eq!(c.tz, Tz::UTC);
        assert_eq!(c.run_timeout, Duration::from_secs(1200));
        assert_eq!(c.approval_timeout, Duration::from_secs(600));
        assert_eq!(c.retry_base, Duration::from_secs(5));
        assert_eq!(c.retry_attempts, 5);
        assert_eq!(c.permission, PermissionPolicy::Allow);
        assert_eq!(c.max_text_bytes, 65_536);
        assert_eq!(c.max_batch, 100);
        assert_eq!(c.ipc_timeout, Duration::from_secs(30));
        assert_eq!(c.whatsapp_phone, None);
        assert_eq!(c.wa_chunk_limit, 4000);
        assert!(c.read_receipts);
        assert_eq!(c.wa_per_chat_per_minute, 12);
        assert_eq!(c.wa_per_minute, 40);
        assert_eq!(c.stream_watchdog, Duration::from_secs(30));
    }

    #[test]
    fn a_bad_variable_is_refused_by_name() {
        let cases = [
            ("PB_RUN_TIMEOUT", "ten minutes", "is not a duration"),
            ("PB_RUN_TIMEOUT", "0s", "must be greater than zero"),
            (
                "PB_RETRY_BASE",
                "5 fortnights",
                "unknown unit \"fortnights\"",
            ),
            ("MAX_CONCURRENT_SESSIONS", "0", "0 is not in 1..=64"),
            ("PB_MAX_BATCH", "lots", "invalid digit"),
            (
                "PB_CHANNEL",
                "telegram",
                "[possible values: whatsapp, fake]",
            ),
            ("PB_PERMISSION", "ask", "[possible values: allow, reject]"),
            ("PB_READ_RECEIPTS", "maybe", "value was not a boolean"),
            ("PB_HTTP_ADDR", "nope", "invalid socket address"),
            ("OPENCODE_MODEL", "gpt", "expected provider/model"),
            ("PB_WHATSAPP_PHONE", "12ab", "digits only"),
            ("ASSISTANT_NAME", "Andy Bot", "one word"),
        ];
        for (var, value, why) in cases {
            let e = refused(&[(var, value)], &["serve"]);
            let flag = format!(
                "--{}",
                var.trim_start_matches("PB_")
                    .to_lowercase()
                    .replace('_', "-")
            );
            assert!(
                e.contains(&format!("invalid value '{value}' for '{flag} <{var}>'"))
                    && e.contains(why),
                "{var}={value}: {e}"
            );
        }
    }

    #[test]
    fn ranges_hold_at_both_ends() {
        let cases: [(&str, u64, u64); 7] = [
            ("MAX_CONCURRENT_SESSIONS", 1, 64),
            ("PB_RETRY_ATTEMPTS", 1, 20),
            ("PB_MAX_TEXT_BYTES", 1, 1_048_576),
            ("PB_MAX_BATCH", 1, 10_000),
            ("PB_WA_CHUNK_LIMIT", 200, 60_000),
            ("PB_WA_PER_CHAT_PER_MINUTE", 1, 600),
            ("PB_WA_PER_MINUTE", 1, 3000),
        ];
        for (var, min, max) in cases {
            for ok in [min, max] {
                assert!(
                    parse(&[(var, &ok.to_string())], &["serve"]).is_ok(),
                    "{var}={ok}"
                );
            }
            for bad in [min - 1, max + 1] {
                let e = refused(&[(var, &bad.to_string())], &["serve"]);
                assert!(
                    e.contains(&format!("<{var}>'"))
                        && e.contains(&format!("{bad} is not in {min}..={max}")),
                    "{var}={bad}: {e}"
                );
            }
        }
    }

    #[test]
    fn a_flag_wins_over_its_variable_before_or_after_the_command() {
        let env = [("PB_MAX_BATCH", "7")];
        assert_eq!(parse(&env, &["serve"]).unwrap().max_batch, 7);
        assert_eq!(
            parse(&env, &["--max-batch", "9", "serve"])
                .unwrap()
                .max_batch,
            9
        );
        assert_eq!(
            parse(&env, &["chats", "list", "--max-batch", "9"])
                .unwrap()
                .max_batch,
            9
        );
        let e = refused(&[], &["status", "--max-batch", "0"]);
        assert!(e.contains("'--max-batch <PB_MAX_BATCH>'"), "{e}");
        let e = refused(&[], &["serve", "--tz", "Mars/Olympus"]);
        assert!(
            e.contains("'--tz <TZ>'") && e.contains("not an IANA time zone"),
            "{e}"
        );
    }

    #[test]
    fn a_blank_variable_counts_as_unset() {
        let env = [
            ("OPENCODE_MODEL", ""),
            ("PB_WHATSAPP_PHONE", ""),
            ("MAX_CONCURRENT_SESSIONS", " "),
            ("PB_READ_RECEIPTS", ""),
        ];
        let c = parse(&env, &["serve"]).unwrap();
        assert_eq!(c.opencode_model, None);
        assert_eq!(c.whatsapp_phone, None);
        assert_eq!(c.max_concurrent_sessions, 5);
        assert!(c.read_receipts);
    }

    #[test]
    fn values_are_parsed_into_their_types() {
        let c = parse(
            &[
                ("OPENCODE_MODEL", "anthropic/claude-sonnet-4-5"),
                ("PB_WHATSAPP_PHONE", "+49 151-1234 5678"),
                ("PB_CHANNEL", "fake"),
                ("PB_PERMISSION", "reject"),
                ("ASSISTANT_HAS_OWN_NUMBER", "yes"),
                ("PB_READ_RECEIPTS", "0"),
                ("PB_RUN_TIMEOUT", "1h30m"),
                ("PB_IPC_TIMEOUT", "2500"),
                ("OPENCODE_URL", "http://127.0.0.1:4096"),
            ],
            // TZ is not set here: other tests' clocks may read it.
            &["--tz", ":Europe/Berlin", "serve"],
        )
        .unwrap();
        assert_eq!(
            c.opencode_model,
            Some(ModelRef {
                provider: "anthropic".into(),
                model: "claude-sonnet-4-5".into()
            })
        );
        assert_eq!(c.whatsapp_phone.as_deref(), Some("4915112345678"));
        assert_eq!(c.tz, Tz::Europe__Berlin);
        assert_eq!(c.channel, ChannelKind::Fake);
        assert_eq!(c.permission, PermissionPolicy::Reject);
        assert!(c.assistant_has_own_number);
        assert!(!c.read_receipts);
        assert_eq!(c.run_timeout, Duration::from_secs(5400));
        assert_eq!(c.ipc_timeout, Duration::from_millis(2500));
        assert_eq!(c.opencode_url.unwrap().as_str(), "http://127.0.0.1:4096/");
    }

    #[test]
    fn opencode_url_rules_keep_their_messages() {
        assert_eq!(
            refused(&[("OPENCODE_URL", "ftp://x")], &["serve"]),
            "invalid OPENCODE_URL (--opencode-url): use an http:// or https:// URL"
        );
        // Credentials would be logged with the URL; the refusal never shows them.
        let e = refused(
            &[("OPENCODE_URL", "http://opencode:hunter2@127.0.0.1:4096")],
            &["serve"],
        );
        assert!(
            e.starts_with("invalid OPENCODE_URL (--opencode-url): leave the user and password out")
                && !e.contains("hunter2"),
            "{e}"
        );
    }

    #[test]
    fn a_public_address_needs_a_token_and_a_token_must_be_long() {
        let public = [("PB_HTTP_ADDR", "0.0.0.0:8787")];
        let e = parse(&public, &["serve"])
            .unwrap()
            .check_http_bind()
            .unwrap_err();
        assert!(
            e.to_string().starts_with(
                "invalid PB_HTTP_ADDR (--http-addr): 0.0.0.0:8787 is not a loopback address"
            ) && e.to_string().contains("set PB_HTTP_TOKEN"),
            "{e}"
        );
        let with = [
            ("PB_HTTP_ADDR", "0.0.0.0:8787"),
            ("PB_HTTP_TOKEN", "0123456789abcdef0123"),
        ];
        let c = parse(&with, &["serve"]).unwrap();
        c.check_http_bind().unwrap();
        assert!(!format!("{c:?}").contains("0123456789abcdef0123"));
        for local in ["127.0.0.1:8787", "[::1]:8787"] {
            parse(&[("PB_HTTP_ADDR", local)], &["serve"])
                .unwrap()
                .check_http_bind()
                .unwrap();
        }
        let e = refused(&[("PB_HTTP_TOKEN", "short")], &["serve"]);
        assert!(
            e.starts_with(
                "invalid PB_HTTP_TOKEN (--http-token): it is 5 characters long, shorter than 16"
            ),
            "{e}"
        );
        assert!(!e.contains("short\""), "{e}");
    }

    /// Placeholders and short or repetitive values are refused as the
    /// bridge's token and as OpenCode's password, the example file's own
    /// values first; the value never shows in the message.
    #[test]
    fn placeholder_and_weak_secrets_are_refused() {
        // Read at run time: the image's build context holds what the crate
        // compiles in, and the example file is not part of it.
        let example =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.env.example")).unwrap();
        let value_of = |name: &str| {
            example
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("{name} is not set in .env.example"))
                .to_owned()
        };
        let from_example = [
            value_of("PB_HTTP_TOKEN"),
            value_of("OPENCODE_SERVER_PASSWORD"),
        ];
        let weak = [
            "change-me",
            "changeme",
            "Change_Me_Please_Now_1234",
            "replace-me-with-something-long",
            "aaaaaaaaaaaaaaaaaaaaaaaa",
            "121212121212121212121212",
            "0123456789",
            "your-password-goes-here-xyz",
        ];
        for (setting, flag) in [
            ("PB_HTTP_TOKEN", "--http-token"),
            ("OPENCODE_SERVER_PASSWORD", "--opencode-password"),
        ] {
            for value in from_example.iter().map(String::as_str).chain(weak) {
                let e = refused(&[(setting, value)], &["serve"]);
                assert!(
                    e.starts_with(&format!("invalid {setting} ({flag}): ")),
                    "{e}"
                );
                assert!(!e.contains(value), "the value shows in {e}");
            }
            let strong = "9f2c4e1ab37d5068e4c1f0a2b9d37e65";
            let c = parse(&[(setting, strong)], &["serve"]).unwrap();
            assert!(c.http_token.is_some() || c.opencode_password.is_some());
        }
        assert_eq!(weak_secret("9f2c4e1ab37d5068"), None);
    }

    #[test]
    fn model_pins_hold_per_profile() {
        use crate::model::Profile;
        let c = parse(
            &[
                ("PB_MODELS_MEMBER", "openai/*,anthropic/claude-haiku"),
                ("PB_MODELS_GUEST", "local/small"),
            ],
            &["serve"],
        )
        .unwrap();
        let pins = ModelPins::from_config(&c);
        assert!(pins.allows(Profile::Main, "anything/at-all"));
        assert!(pins.allows(Profile::Member, "openai/gpt-5"));
        assert!(pins.allows(Profile::Member, "anthropic/claude-haiku"));
        assert!(!pins.allows(Profile::Member, "anthropic/claude-opus"));
        assert!(!pins.allows(Profile::Member, "openaix/gpt-5"));
        assert!(pins.allows(Profile::Guest, "local/small"));
        assert!(!pins.allows(Profile::Guest, "openai/gpt-5"));
        assert!(ModelPins::default().allows(Profile::Guest, "x/y"));
        for bad in ["openai", "*/gpt", "a/b*", "/x"] {
            let e = refused(&[("PB_MODELS_GUEST", bad)], &["serve"]);
            assert!(e.contains("PB_MODELS_GUEST"), "{e}");
        }
    }

    #[test]
    fn host_names_are_checked_and_folded() {
        let c = parse(&[("PB_HTTP_HOSTS", "PocketBrain.LAN, box.")], &["serve"]).unwrap();
        assert_eq!(c.http_hosts, ["pocketbrain.lan", "box"]);
        for bad in ["http://x", "x:8787", "a..b", "-"] {
            let e = refused(&[("PB_HTTP_HOSTS", bad)], &["serve"]);
            assert!(e.contains("PB_HTTP_HOSTS"), "{e}");
        }
    }

    #[test]
    fn log_format_is_human_unless_json_is_asked_for() {
        assert_eq!(parse(&[], &["serve"]).unwrap().log_format, LogFormat::Human);
        assert_eq!(
            parse(&[("PB_LOG_FORMAT", "json")], &["serve"])
                .unwrap()
                .log_format,
            LogFormat::Json
        );
        let e = refused(&[("PB_LOG_FORMAT", "xml")], &["serve"]);
        assert!(e.contains("[possible values: human, json]"), "{e}");
    }

    #[test]
    fn password_never_shows_in_debug() {
        let pw = "hunter2-but-longer-7c1f";
        let c = parse(&[("OPENCODE_SERVER_PASSWORD", pw)], &["serve"]).unwrap();
        assert!(!format!("{c:?}").contains(pw));
        assert_eq!(c.opencode_password.unwrap().expose(), pw);
    }

    #[test]
    fn durations() {
        let ok = [
            ("90s", 90_000),
            ("5m", 300_000),
            ("2h", 7_200_000),
            ("1d", 86_400_000),
            ("250ms", 250),
            ("1h30m", 5_400_000),
            ("1h 30m", 5_400_000),
            (" 10m ", 600_000),
            ("1500", 1500),
        ];
        for (v, ms) in ok {
            assert_eq!(parse_duration(v), Ok(Duration::from_millis(ms)), "{v}");
        }
        let bad = [
            ("0", "greater than zero"),
            ("0s", "greater than zero"),
            ("", "not a duration"),
            ("-5s", "not a duration"),
            ("5 fortnights", "unknown unit"),
            ("99999999999999999999", "too large"),
            ("99999999999999999999d", "too large"),
        ];
        for (v, why) in bad {
            let e = parse_duration(v).unwrap_err();
            assert!(e.contains(why), "{v}: {e}");
        }
    }
}
