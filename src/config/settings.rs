//! The settings themselves: one clap argument per setting, each with its
//! variable, default and help text (the configuration reference is
//! generated from them). What every setting shares (a `PB_*` value name,
//! hidden values, accepted before or after the command, shown by
//! `pocketbrain serve --help` only) is added by `cli::settings_layout`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use chrono_tz::Tz;
use clap::Args;
use clap::builder::{BoolishValueParser, RangedU64ValueParser};

use super::values::{
    parse_assistant_name, parse_env_name, parse_host_name, parse_model_pattern, parse_phone,
    parse_reaction, parse_share, parse_skill_name, parse_tz,
};
use super::{
    ChannelKind, LogFormat, ModelRef, PermissionPolicy, Secret, UnknownDm, parse_duration,
    parse_silence, state_dir,
};

/// Validated configuration: parsed by clap, then [`Config::validate`].
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Directory for the bridge's database and state [default:
    /// $XDG_DATA_HOME/pocketbrain/data, else ~/.local/share/pocketbrain/data]
    #[arg(
        long,
        help_heading = "Storage",
        env = "PB_DATA_DIR",
        default_value_os_t = state_dir("data"),
        hide_default_value = true
    )]
    pub data_dir: PathBuf,
    /// Workspace OpenCode works in; chats get PB_WORKSPACE/chats/<folder>
    /// [default: beside the data folder's default, .../pocketbrain/workspace]
    #[arg(
        long,
        help_heading = "Storage",
        env = "PB_WORKSPACE",
        default_value_os_t = state_dir("workspace"),
        hide_default_value = true
    )]
    pub workspace: PathBuf,
    /// Folder for the agent's tool calls. OpenCode must see it at the same
    /// path: with OpenCode in another container, a volume both mount
    /// there (never the data folder itself) [default: PB_DATA_DIR/ipc]
    #[arg(long = "ipc-dir", help_heading = "Storage", env = "PB_IPC_DIR")]
    pub ipc_dir_setting: Option<PathBuf>,
    /// Address of the health/metrics (and fake channel) HTTP server
    #[arg(
        long,
        help_heading = "HTTP API",
        env = "PB_HTTP_ADDR",
        default_value = "127.0.0.1:8787"
    )]
    pub http_addr: SocketAddr,
    /// Bearer token every HTTP route but /health requires; needed when
    /// PB_HTTP_ADDR is not a loopback address
    #[arg(
        long,
        help_heading = "HTTP API",
        env = "PB_HTTP_TOKEN",
        value_parser = Secret::parse
    )]
    pub http_token: Option<Secret>,
    /// Host names (besides localhost and IP addresses) the HTTP server
    /// answers to, comma separated, e.g. "pocketbrain.lan"; a request for
    /// any other name is refused (DNS rebinding)
    #[arg(
        long,
        help_heading = "HTTP API",
        env = "PB_HTTP_HOSTS",
        value_delimiter = ',',
        value_parser = parse_host_name
    )]
    pub http_hosts: Vec<String>,
    /// Log format: human (default) or json (one JSON object per line)
    #[arg(
        long,
        help_heading = "Logging",
        env = "PB_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Human
    )]
    pub log_format: LogFormat,
    /// Channel: WhatsApp, or fake (an HTTP stand-in for trying it out, /fake/*)
    #[arg(
        long,
        help_heading = "WhatsApp",
        env = "PB_CHANNEL",
        value_enum,
        default_value_t = ChannelKind::WhatsApp
    )]
    pub channel: ChannelKind,
    /// The assistant's name, used for the group trigger "@<name>"
    #[arg(
        long,
        help_heading = "Assistant",
        env = "PB_ASSISTANT_NAME",
        value_parser = parse_assistant_name,
        default_value = "Andy"
    )]
    pub assistant_name: String,
    /// true when the assistant has its own WhatsApp number
    #[arg(
        long,
        help_heading = "Assistant",
        env = "PB_ASSISTANT_HAS_OWN_NUMBER",
        action = clap::ArgAction::Set,
        value_parser = BoolishValueParser::new(),
        default_value = "false"
    )]
    pub assistant_has_own_number: bool,
    /// Most chats with a run at the same time
    #[arg(
        long,
        help_heading = "Runs",
        env = "PB_MAX_CONCURRENT_SESSIONS",
        value_parser = RangedU64ValueParser::<usize>::new().range(1..=64),
        default_value = "5"
    )]
    pub max_concurrent_sessions: usize,
    /// URL of a running `opencode serve`; unset: the bridge starts one
    #[arg(long, help_heading = "OpenCode", env = "PB_OPENCODE_URL")]
    pub opencode_url: Option<reqwest::Url>,
    /// OpenCode server password (HTTP basic auth)
    #[arg(
        long,
        help_heading = "OpenCode",
        env = "OPENCODE_SERVER_PASSWORD",
        value_parser = Secret::parse
    )]
    pub opencode_password: Option<Secret>,
    /// OpenCode server user name
    #[arg(
        long,
        help_heading = "OpenCode",
        env = "OPENCODE_SERVER_USERNAME",
        default_value = "opencode"
    )]
    pub opencode_username: String,
    /// Extra environment variables (names, comma-separated) a managed
    /// OpenCode gets besides its allow-list; the agent's shell never sees them
    #[arg(
        long,
        help_heading = "OpenCode",
        env = "PB_OPENCODE_ENV",
        value_delimiter = ',',
        value_parser = parse_env_name
    )]
    pub opencode_env: Vec<String>,
    /// Model as provider/model; unset: OpenCode's configured default
    #[arg(long, help_heading = "OpenCode", env = "PB_OPENCODE_MODEL")]
    pub opencode_model: Option<ModelRef>,
    /// The opencode binary to start when PB_OPENCODE_URL is unset; unset: PATH, then .tools/
    #[arg(long, help_heading = "OpenCode", env = "PB_OPENCODE_BIN")]
    pub opencode_bin: Option<PathBuf>,
    /// Chat folders whose OpenCode instance is kept (tens of MiB each): past this the least recently used idle one is freed, to boot again at its next run; 0: keep every one
    #[arg(
        long,
        help_heading = "OpenCode",
        env = "PB_OPENCODE_MAX_INSTANCES",
        value_parser = RangedU64ValueParser::<usize>::new().range(0..=100_000),
        default_value = "16"
    )]
    pub opencode_max_instances: usize,
    /// IANA time zone for prompts and schedules
    #[arg(
        long,
        help_heading = "Assistant",
        env = "TZ",
        value_parser = parse_tz,
        default_value = "UTC"
    )]
    pub tz: Tz,
    /// Longest a run may take before it is aborted
    #[arg(
        long,
        help_heading = "Runs",
        env = "PB_RUN_TIMEOUT",
        value_parser = parse_duration,
        default_value = "20m"
    )]
    pub run_timeout: Duration,
    /// How long an approval request waits for the owner's answer before it
    /// is refused (a run waiting for one keeps running: keep PB_RUN_TIMEOUT longer)
    #[arg(
        long,
        help_heading = "Assistant",
        env = "PB_APPROVAL_TIMEOUT",
        value_parser = parse_duration,
        default_value = "10m"
    )]
    pub approval_timeout: Duration,
    /// First retry delay of a failed run, doubling per attempt
    #[arg(
        long,
        help_heading = "Runs",
        env = "PB_RETRY_BASE",
        value_parser = parse_duration,
        default_value = "5s"
    )]
    pub retry_base: Duration,
    /// Attempts before a failing run is parked
    #[arg(
        long,
        help_heading = "Runs",
        env = "PB_RETRY_ATTEMPTS",
        value_parser = clap::value_parser!(u32).range(1..=20),
        default_value = "5"
    )]
    pub retry_attempts: u32,
    /// Answer to permission requests of the main chat's agent (other chats'
    /// requests go to the owner: see PB_APPROVAL_TIMEOUT)
    #[arg(
        long,
        help_heading = "Assistant",
        env = "PB_PERMISSION",
        value_enum,
        default_value_t = PermissionPolicy::Allow
    )]
    pub permission: PermissionPolicy,
    /// A direct message from a number that is not registered: ignore it, or
    /// pair (one reply with a pairing code an hour, a notice in the main
    /// chat; the owner sends `pair CODE`). Only with PB_ASSISTANT_HAS_OWN_NUMBER:
    /// on a shared number such chats are the owner's own
    #[arg(
        long,
        help_heading = "Assistant",
        env = "PB_UNKNOWN_DM",
        value_enum,
        default_value_t = UnknownDm::Pair
    )]
    pub unknown_dm: UnknownDm,
    /// An emoji the assistant reacts with to the message it starts working
    /// on (taken back when it has answered); unset: no reaction
    #[arg(
        long,
        help_heading = "Assistant",
        env = "PB_ACK_REACTION",
        value_parser = parse_reaction
    )]
    pub ack_reaction: Option<String>,
    /// Models a member chat may choose with /model (comma separated
    /// provider/model, provider/* or *); unset: any OpenCode offers
    #[arg(
        long,
        help_heading = "Profiles",
        env = "PB_MODELS_MEMBER",
        value_delimiter = ',',
        value_parser = parse_model_pattern
    )]
    pub models_member: Vec<String>,
    /// Models a guest chat may choose with /model (as PB_MODELS_MEMBER)
    #[arg(
        long,
        help_heading = "Profiles",
        env = "PB_MODELS_GUEST",
        value_delimiter = ',',
        value_parser = parse_model_pattern
    )]
    pub models_guest: Vec<String>,
    /// Skills a member chat's agent may load (comma separated names, or *);
    /// unset: none. The main chat may load every skill
    #[arg(
        long,
        help_heading = "Profiles",
        env = "PB_SKILLS_MEMBER",
        value_delimiter = ',',
        value_parser = parse_skill_name
    )]
    pub skills_member: Vec<String>,
    /// Skills a guest (group) chat's agent may load (as PB_SKILLS_MEMBER)
    #[arg(
        long,
        help_heading = "Profiles",
        env = "PB_SKILLS_GUEST",
        value_delimiter = ',',
        value_parser = parse_skill_name
    )]
    pub skills_guest: Vec<String>,
    /// Compact a chat's session (OpenCode's summary) once its last turn used
    /// this share of the model's context window (0 turns it off)
    #[arg(
        long,
        help_heading = "OpenCode",
        env = "PB_COMPACT_AT",
        value_parser = parse_share,
        default_value = "0.8"
    )]
    pub compact_at: f64,
    /// Largest a memory file (a chat's AGENTS.md, the global one) may grow
    /// before the agent is given a task to condense it (K/M suffixes)
    #[arg(
        long,
        help_heading = "Limits",
        env = "PB_MEMORY_MAX_BYTES",
        value_parser = crate::media::parse_size,
        default_value = "16K"
    )]
    pub memory_max_bytes: u64,
    /// Largest inbound message text in bytes
    #[arg(
        long,
        help_heading = "Limits",
        env = "PB_MAX_TEXT_BYTES",
        value_parser = RangedU64ValueParser::<usize>::new().range(1..=1_048_576),
        default_value = "65536"
    )]
    pub max_text_bytes: usize,
    /// Most messages one prompt carries (the newest win)
    #[arg(
        long,
        help_heading = "Limits",
        env = "PB_MAX_BATCH",
        value_parser = RangedU64ValueParser::<usize>::new().range(1..=10_000),
        default_value = "100"
    )]
    pub max_batch: usize,
    /// Most active or paused scheduled tasks one chat may have; the agent
    /// is told to cancel one to schedule another
    #[arg(
        long,
        help_heading = "Limits",
        env = "PB_MAX_TASKS_PER_CHAT",
        value_parser = RangedU64ValueParser::<usize>::new().range(1..=10_000),
        default_value = "50"
    )]
    pub max_tasks_per_chat: usize,
    /// How long an agent tool waits for the bridge before telling the model it is queued
    #[arg(
        long,
        help_heading = "Runs",
        env = "PB_IPC_TIMEOUT",
        value_parser = parse_duration,
        default_value = "30s"
    )]
    pub ipc_timeout: Duration,
    /// Phone number (digits, with country code) to pair with a code instead of a QR code
    #[arg(
        long,
        help_heading = "WhatsApp",
        env = "PB_WHATSAPP_PHONE",
        value_parser = parse_phone
    )]
    pub whatsapp_phone: Option<String>,
    /// Longest WhatsApp message before a reply is split, in characters
    #[arg(
        long,
        help_heading = "WhatsApp",
        env = "PB_WA_CHUNK_LIMIT",
        value_parser = RangedU64ValueParser::<usize>::new().range(200..=60_000),
        default_value = "4000"
    )]
    pub wa_chunk_limit: usize,
    /// Send read receipts for processed messages
    #[arg(
        long,
        help_heading = "WhatsApp",
        env = "PB_READ_RECEIPTS",
        action = clap::ArgAction::Set,
        value_parser = BoolishValueParser::new(),
        default_value = "true"
    )]
    pub read_receipts: bool,
    /// After pairing, make the account's own chat ("Message yourself") the
    /// main chat, unless a main chat is registered already
    #[arg(
        long,
        help_heading = "WhatsApp",
        env = "PB_AUTO_MAIN",
        action = clap::ArgAction::Set,
        value_parser = BoolishValueParser::new(),
        default_value = "true"
    )]
    pub auto_main: bool,
    /// Most WhatsApp messages per minute to one chat
    #[arg(
        long,
        help_heading = "WhatsApp",
        env = "PB_WA_PER_CHAT_PER_MINUTE",
        value_parser = clap::value_parser!(u32).range(1..=600),
        default_value = "12"
    )]
    pub wa_per_chat_per_minute: u32,
    /// Most WhatsApp messages per minute overall
    #[arg(
        long,
        help_heading = "WhatsApp",
        env = "PB_WA_PER_MINUTE",
        value_parser = clap::value_parser!(u32).range(1..=3000),
        default_value = "40"
    )]
    pub wa_per_minute: u32,
    /// How long a connected WhatsApp link may go without a single frame
    /// from the server (message, receipt, keepalive answer) before the
    /// client is restarted (`whatsapp-silent`); at least 30s
    #[arg(
        long,
        help_heading = "WhatsApp",
        env = "PB_WHATSAPP_SILENCE",
        value_parser = parse_silence,
        default_value = "2m"
    )]
    pub whatsapp_silence: Duration,
    /// Event stream silence after which it is reconnected
    #[arg(
        long,
        help_heading = "OpenCode",
        env = "PB_STREAM_WATCHDOG",
        value_parser = parse_duration,
        default_value = "30s"
    )]
    pub stream_watchdog: Duration,
    /// Largest inbound or outbound file per kind: one size for all
    /// (`20M`) or `kind=size` pairs (`image=8M,document=50M`; kinds image,
    /// voice, audio, document, video, sticker; K/M/G are 1024-based)
    #[arg(
        long,
        help_heading = "Media",
        env = "PB_MEDIA_MAX_BYTES",
        value_parser = crate::media::MediaLimits::parse,
        default_value = "image=16M,voice=16M,audio=16M,document=100M,video=64M,sticker=1M"
    )]
    pub media_max_bytes: crate::media::MediaLimits,
    /// OpenAI-compatible speech-to-text endpoint for voice notes
    /// (`http://127.0.0.1:8080/v1` or the full `/v1/audio/transcriptions`
    /// URL); unset: voice notes reach the agent as files only
    #[arg(long, help_heading = "Media", env = "PB_TRANSCRIBE_URL")]
    pub transcribe_url: Option<reqwest::Url>,
    /// The transcription model the endpoint is asked for
    #[arg(
        long,
        help_heading = "Media",
        env = "PB_TRANSCRIBE_MODEL",
        default_value = "whisper-1"
    )]
    pub transcribe_model: String,
    /// API key for the transcription endpoint (sent as a bearer token)
    #[arg(
        long,
        help_heading = "Media",
        env = "PB_TRANSCRIBE_API_KEY",
        value_parser = Secret::parse
    )]
    pub transcribe_api_key: Option<Secret>,
    /// Longest a transcription may take before the voice note goes to the
    /// agent with a note instead
    #[arg(
        long,
        help_heading = "Media",
        env = "PB_TRANSCRIBE_TIMEOUT",
        value_parser = parse_duration,
        default_value = "60s"
    )]
    pub transcribe_timeout: Duration,
    /// Requests per minute each API key may make (a burst of as many is
    /// allowed; 429 with Retry-After beyond). The admin token is not limited
    #[arg(
        long,
        help_heading = "HTTP API",
        env = "PB_API_RATE_PER_MINUTE",
        value_parser = clap::value_parser!(u32).range(1..=100_000),
        default_value = "60"
    )]
    pub api_rate_per_minute: u32,
    /// Web origins allowed to call the local API from a browser (comma
    /// separated, e.g. "http://localhost:5173"); none by default
    #[arg(
        long,
        help_heading = "HTTP API",
        env = "PB_API_CORS_ORIGINS",
        value_delimiter = ','
    )]
    pub api_cors_origins: Vec<String>,
    /// How long a synchronous API request waits for the reply (the message
    /// is kept and answered later when it runs out)
    #[arg(
        long,
        help_heading = "HTTP API",
        env = "PB_API_REPLY_TIMEOUT",
        value_parser = parse_duration,
        default_value = "5m"
    )]
    pub api_reply_timeout: Duration,
}
