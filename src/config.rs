//! One typed configuration, from flags and environment (a flag wins over
//! its variable), validated at start-up with errors that name the setting.
//! Secrets are wrapped so `Debug` and logs never show them.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use chrono_tz::Tz;
use clap::Args;

/// Raw settings as given; `Config::from_args` validates them.
#[derive(Debug, Clone, Default, Args)]
pub struct ConfigArgs {
    /// Directory for the bridge's database and state [env: PB_DATA_DIR; default ./data]
    #[arg(long, env = "PB_DATA_DIR", global = true, hide_env = true)]
    pub data_dir: Option<String>,
    /// Workspace OpenCode works in; chats get PB_WORKSPACE/chats/<folder> [env: PB_WORKSPACE; default ./workspace]
    #[arg(long, env = "PB_WORKSPACE", global = true, hide_env = true)]
    pub workspace: Option<String>,
    /// Address of the health/metrics (and fake channel) HTTP server [env: PB_HTTP_ADDR; default 127.0.0.1:8787]
    #[arg(long, env = "PB_HTTP_ADDR", global = true, hide_env = true)]
    pub http_addr: Option<String>,
    /// Channel: whatsapp or fake [env: PB_CHANNEL; default whatsapp]
    #[arg(long, env = "PB_CHANNEL", global = true, hide_env = true)]
    pub channel: Option<String>,
    /// The assistant's name, used for the group trigger "@<name>" [env: ASSISTANT_NAME; default Andy]
    #[arg(long, env = "ASSISTANT_NAME", global = true, hide_env = true)]
    pub assistant_name: Option<String>,
    /// true when the assistant has its own WhatsApp number [env: ASSISTANT_HAS_OWN_NUMBER; default false]
    #[arg(long, env = "ASSISTANT_HAS_OWN_NUMBER", global = true, hide_env = true)]
    pub assistant_has_own_number: Option<String>,
    /// Most chats with a run at the same time [env: MAX_CONCURRENT_SESSIONS; default 5]
    #[arg(long, env = "MAX_CONCURRENT_SESSIONS", global = true, hide_env = true)]
    pub max_concurrent_sessions: Option<String>,
    /// URL of a running `opencode serve`; unset: the bridge starts one [env: OPENCODE_URL]
    #[arg(long, env = "OPENCODE_URL", global = true, hide_env = true)]
    pub opencode_url: Option<String>,
    /// OpenCode server password (HTTP basic auth) [env: OPENCODE_SERVER_PASSWORD]
    #[arg(long, env = "OPENCODE_SERVER_PASSWORD", global = true, hide_env = true)]
    pub opencode_password: Option<String>,
    /// OpenCode server user name [env: OPENCODE_SERVER_USERNAME; default opencode]
    #[arg(long, env = "OPENCODE_SERVER_USERNAME", global = true, hide_env = true)]
    pub opencode_username: Option<String>,
    /// Model as provider/model; unset: OpenCode's configured default [env: OPENCODE_MODEL]
    #[arg(long, env = "OPENCODE_MODEL", global = true, hide_env = true)]
    pub opencode_model: Option<String>,
    /// The opencode binary to start when OPENCODE_URL is unset [env: OPENCODE_BIN; default: PATH, then .tools/]
    #[arg(long, env = "OPENCODE_BIN", global = true, hide_env = true)]
    pub opencode_bin: Option<String>,
    /// IANA time zone for prompts and schedules [env: TZ; default UTC]
    #[arg(long, env = "TZ", global = true, hide_env = true)]
    pub tz: Option<String>,
    /// Longest a run may take before it is aborted [env: PB_RUN_TIMEOUT; default 10m]
    #[arg(long, env = "PB_RUN_TIMEOUT", global = true, hide_env = true)]
    pub run_timeout: Option<String>,
    /// First retry delay of a failed run, doubling per attempt [env: PB_RETRY_BASE; default 5s]
    #[arg(long, env = "PB_RETRY_BASE", global = true, hide_env = true)]
    pub retry_base: Option<String>,
    /// Attempts before a failing run is parked [env: PB_RETRY_ATTEMPTS; default 5]
    #[arg(long, env = "PB_RETRY_ATTEMPTS", global = true, hide_env = true)]
    pub retry_attempts: Option<String>,
    /// Answer to OpenCode permission requests: allow or reject [env: PB_PERMISSION; default allow]
    #[arg(long, env = "PB_PERMISSION", global = true, hide_env = true)]
    pub permission: Option<String>,
    /// Largest inbound message text in bytes [env: PB_MAX_TEXT_BYTES; default 65536]
    #[arg(long, env = "PB_MAX_TEXT_BYTES", global = true, hide_env = true)]
    pub max_text_bytes: Option<String>,
    /// Most messages one prompt carries (the newest win) [env: PB_MAX_BATCH; default 100]
    #[arg(long, env = "PB_MAX_BATCH", global = true, hide_env = true)]
    pub max_batch: Option<String>,
    /// How long an agent tool waits for the bridge before telling the model it is queued [env: PB_IPC_TIMEOUT; default 30s]
    #[arg(long, env = "PB_IPC_TIMEOUT", global = true, hide_env = true)]
    pub ipc_timeout: Option<String>,
    /// Phone number (digits, with country code) to pair with a code instead of a QR code [env: PB_WHATSAPP_PHONE]
    #[arg(long, env = "PB_WHATSAPP_PHONE", global = true, hide_env = true)]
    pub whatsapp_phone: Option<String>,
    /// Longest WhatsApp message before a reply is split, in characters [env: PB_WA_CHUNK_LIMIT; default 4000]
    #[arg(long, env = "PB_WA_CHUNK_LIMIT", global = true, hide_env = true)]
    pub wa_chunk_limit: Option<String>,
    /// Send read receipts for processed messages: true or false [env: PB_READ_RECEIPTS; default true]
    #[arg(long, env = "PB_READ_RECEIPTS", global = true, hide_env = true)]
    pub read_receipts: Option<String>,
    /// Most WhatsApp messages per minute to one chat [env: PB_WA_PER_CHAT_PER_MINUTE; default 12]
    #[arg(
        long,
        env = "PB_WA_PER_CHAT_PER_MINUTE",
        global = true,
        hide_env = true
    )]
    pub wa_per_chat_per_minute: Option<String>,
    /// Most WhatsApp messages per minute overall [env: PB_WA_PER_MINUTE; default 40]
    #[arg(long, env = "PB_WA_PER_MINUTE", global = true, hide_env = true)]
    pub wa_per_minute: Option<String>,
    /// Event stream silence after which it is reconnected [env: PB_STREAM_WATCHDOG; default 30s]
    #[arg(long, env = "PB_STREAM_WATCHDOG", global = true, hide_env = true)]
    pub stream_watchdog: Option<String>,
}

/// A secret string: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelKind {
    WhatsApp,
    Fake,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub workspace: PathBuf,
    pub http_addr: SocketAddr,
    pub channel: ChannelKind,
    pub assistant_name: String,
    pub assistant_has_own_number: bool,
    pub max_concurrent_sessions: usize,
    pub opencode_url: Option<reqwest::Url>,
    pub opencode_username: String,
    pub opencode_password: Option<Secret>,
    pub opencode_model: Option<ModelRef>,
    pub opencode_bin: Option<PathBuf>,
    pub tz: Tz,
    pub run_timeout: Duration,
    pub retry_base: Duration,
    pub retry_attempts: u32,
    pub permission: PermissionPolicy,
    pub max_text_bytes: usize,
    pub max_batch: usize,
    pub stream_watchdog: Duration,
    pub ipc_timeout: Duration,
    pub whatsapp_phone: Option<String>,
    pub wa_chunk_limit: usize,
    pub read_receipts: bool,
    pub wa_per_chat_per_minute: u32,
    pub wa_per_minute: u32,
}

/// A setting that failed validation; the message names it.
#[derive(Debug, thiserror::Error)]
#[error("invalid {setting} ({flag}): {why}")]
pub struct ConfigError {
    pub setting: &'static str,
    pub flag: &'static str,
    pub why: String,
}

/// Parses `90s`, `5m`, `2h`, `1d`, `250ms`; a bare number is milliseconds.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let v = value.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    if num.is_empty() {
        return Err(format!(
            "{value:?} is not a duration (examples: 90s, 5m, 2h, 1d, 500ms)"
        ));
    }
    let n: u64 = num.parse().map_err(|_| format!("{value:?} is too large"))?;
    let ms = match unit.trim() {
        "" | "ms" => Some(n),
        "s" => n.checked_mul(1_000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        "d" => n.checked_mul(86_400_000),
        other => {
            return Err(format!(
                "unknown unit {other:?} in {value:?} (use ms, s, m, h or d)"
            ));
        }
    }
    .ok_or_else(|| format!("{value:?} is too large"))?;
    if ms == 0 {
        return Err(format!("{value:?} must be greater than zero"));
    }
    Ok(Duration::from_millis(ms))
}

fn non_empty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

impl Config {
    /// Validates raw settings.
    pub fn from_args(a: &ConfigArgs) -> Result<Self, ConfigError> {
        fn err(setting: &'static str, flag: &'static str, why: impl Into<String>) -> ConfigError {
            ConfigError {
                setting,
                flag,
                why: why.into(),
            }
        }
        fn number<T: std::str::FromStr + PartialOrd + fmt::Display>(
            v: Option<&str>,
            default: T,
            min: T,
            max: T,
            setting: &'static str,
            flag: &'static str,
        ) -> Result<T, ConfigError> {
            let Some(v) = v else { return Ok(default) };
            match v.parse::<T>() {
                Ok(n) if n >= min && n <= max => Ok(n),
                _ => Err(err(
                    setting,
                    flag,
                    format!("expected a whole number from {min} to {max}, got {v:?}"),
                )),
            }
        }
        let duration = |v: Option<&str>, default: Duration, setting, flag| match v {
            None => Ok(default),
            Some(v) => parse_duration(v).map_err(|why| err(setting, flag, why)),
        };

        let http_addr = non_empty(&a.http_addr).unwrap_or("127.0.0.1:8787");
        let http_addr = http_addr.parse().map_err(|_| {
            err(
                "PB_HTTP_ADDR",
                "--http-addr",
                format!("expected host:port such as 127.0.0.1:8787, got {http_addr:?}"),
            )
        })?;
        let channel = match non_empty(&a.channel).unwrap_or("whatsapp") {
            "whatsapp" => ChannelKind::WhatsApp,
            "fake" => ChannelKind::Fake,
            other => {
                return Err(err(
                    "PB_CHANNEL",
                    "--channel",
                    format!("expected whatsapp or fake, got {other:?}"),
                ));
            }
        };
        let assistant_name = non_empty(&a.assistant_name).unwrap_or("Andy").to_owned();
        if assistant_name.len() > 64
            || assistant_name
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(err(
                "ASSISTANT_NAME",
                "--assistant-name",
                "use one word of at most 64 bytes, without spaces",
            ));
        }
        let assistant_has_own_number = match non_empty(&a.assistant_has_own_number)
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("false" | "0" | "no") => false,
            Some("true" | "1" | "yes") => true,
            Some(other) => {
                return Err(err(
                    "ASSISTANT_HAS_OWN_NUMBER",
                    "--assistant-has-own-number",
                    format!("expected true or false, got {other:?}"),
                ));
            }
        };
        let opencode_url = match non_empty(&a.opencode_url) {
            None => None,
            Some(u) => {
                let url = reqwest::Url::parse(u).map_err(|e| {
                    err(
                        "OPENCODE_URL",
                        "--opencode-url",
                        format!("{u:?} is not a URL: {e}"),
                    )
                })?;
                if !matches!(url.scheme(), "http" | "https") {
                    return Err(err(
                        "OPENCODE_URL",
                        "--opencode-url",
                        "use an http:// or https:// URL",
                    ));
                }
                // Credentials in the URL would be logged with it.
                if !url.username().is_empty() || url.password().is_some() {
                    return Err(err(
                        "OPENCODE_URL",
                        "--opencode-url",
                        "leave the user and password out of the URL; set OPENCODE_SERVER_USERNAME and OPENCODE_SERVER_PASSWORD",
                    ));
                }
                Some(url)
            }
        };
        let opencode_model = match non_empty(&a.opencode_model) {
            None => None,
            Some(m) => match m.split_once('/') {
                Some((p, model)) if !p.is_empty() && !model.is_empty() => Some(ModelRef {
                    provider: p.into(),
                    model: model.into(),
                }),
                _ => {
                    return Err(err(
                        "OPENCODE_MODEL",
                        "--opencode-model",
                        format!("expected provider/model, got {m:?}"),
                    ));
                }
            },
        };
        let tz_name = non_empty(&a.tz).unwrap_or("UTC");
        let tz: Tz = tz_name.trim_start_matches(':').parse().map_err(|_| {
            err(
                "TZ",
                "--tz",
                format!("{tz_name:?} is not an IANA time zone (example: Europe/Berlin)"),
            )
        })?;
        let permission = match non_empty(&a.permission).unwrap_or("allow") {
            "allow" => PermissionPolicy::Allow,
            "reject" => PermissionPolicy::Reject,
            other => {
                return Err(err(
                    "PB_PERMISSION",
                    "--permission",
                    format!("expected allow or reject, got {other:?}"),
                ));
            }
        };

        Ok(Config {
            data_dir: PathBuf::from(non_empty(&a.data_dir).unwrap_or("./data")),
            workspace: PathBuf::from(non_empty(&a.workspace).unwrap_or("./workspace")),
            http_addr,
            channel,
            assistant_name,
            assistant_has_own_number,
            max_concurrent_sessions: number(
                non_empty(&a.max_concurrent_sessions),
                5,
                1,
                64,
                "MAX_CONCURRENT_SESSIONS",
                "--max-concurrent-sessions",
            )?,
            opencode_url,
            opencode_username: non_empty(&a.opencode_username)
                .unwrap_or("opencode")
                .to_owned(),
            opencode_password: non_empty(&a.opencode_password).map(|p| Secret(p.to_owned())),
            opencode_model,
            opencode_bin: non_empty(&a.opencode_bin).map(PathBuf::from),
            tz,
            run_timeout: duration(
                non_empty(&a.run_timeout),
                Duration::from_secs(600),
                "PB_RUN_TIMEOUT",
                "--run-timeout",
            )?,
            retry_base: duration(
                non_empty(&a.retry_base),
                Duration::from_secs(5),
                "PB_RETRY_BASE",
                "--retry-base",
            )?,
            retry_attempts: number(
                non_empty(&a.retry_attempts),
                5,
                1,
                20,
                "PB_RETRY_ATTEMPTS",
                "--retry-attempts",
            )?,
            permission,
            max_text_bytes: number(
                non_empty(&a.max_text_bytes),
                65_536,
                1,
                1_048_576,
                "PB_MAX_TEXT_BYTES",
                "--max-text-bytes",
            )?,
            max_batch: number(
                non_empty(&a.max_batch),
                100,
                1,
                10_000,
                "PB_MAX_BATCH",
                "--max-batch",
            )?,
            stream_watchdog: duration(
                non_empty(&a.stream_watchdog),
                Duration::from_secs(30),
                "PB_STREAM_WATCHDOG",
                "--stream-watchdog",
            )?,
            whatsapp_phone: match non_empty(&a.whatsapp_phone) {
                None => None,
                Some(p) => {
                    let digits: String = p
                        .chars()
                        .filter(|c| !matches!(c, '+' | ' ' | '-'))
                        .collect();
                    if digits.len() < 7
                        || digits.len() > 15
                        || !digits.bytes().all(|b| b.is_ascii_digit())
                    {
                        return Err(err(
                            "PB_WHATSAPP_PHONE",
                            "--whatsapp-phone",
                            "expected a phone number with country code, digits only (e.g. 4915112345678)",
                        ));
                    }
                    Some(digits)
                }
            },
            wa_chunk_limit: number(
                non_empty(&a.wa_chunk_limit),
                4000,
                200,
                60_000,
                "PB_WA_CHUNK_LIMIT",
                "--wa-chunk-limit",
            )?,
            read_receipts: match non_empty(&a.read_receipts)
                .map(str::to_ascii_lowercase)
                .as_deref()
            {
                None | Some("true" | "1" | "yes") => true,
                Some("false" | "0" | "no") => false,
                Some(other) => {
                    return Err(err(
                        "PB_READ_RECEIPTS",
                        "--read-receipts",
                        format!("expected true or false, got {other:?}"),
                    ));
                }
            },
            wa_per_chat_per_minute: number(
                non_empty(&a.wa_per_chat_per_minute),
                12,
                1,
                600,
                "PB_WA_PER_CHAT_PER_MINUTE",
                "--wa-per-chat-per-minute",
            )?,
            wa_per_minute: number(
                non_empty(&a.wa_per_minute),
                40,
                1,
                3000,
                "PB_WA_PER_MINUTE",
                "--wa-per-minute",
            )?,
            ipc_timeout: duration(
                non_empty(&a.ipc_timeout),
                Duration::from_secs(30),
                "PB_IPC_TIMEOUT",
                "--ipc-timeout",
            )?,
        })
    }

    /// The bridge's database file.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("pocketbrain.sqlite3")
    }

    /// The folder both the bridge and the plugin use for tool calls.
    pub fn ipc_dir(&self) -> PathBuf {
        self.data_dir.join("ipc")
    }

    /// WhatsApp's device store (its own file, apart from the bridge's database).
    pub fn whatsapp_db(&self) -> PathBuf {
        self.data_dir.join("whatsapp-device.sqlite3")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let c = Config::from_args(&ConfigArgs::default()).unwrap();
        assert_eq!(c.channel, ChannelKind::WhatsApp);
        assert_eq!(c.max_concurrent_sessions, 5);
        assert_eq!(c.assistant_name, "Andy");
        assert_eq!(c.http_addr.to_string(), "127.0.0.1:8787");
        assert_eq!(c.retry_base, Duration::from_secs(5));
    }

    #[test]
    fn errors_name_the_setting() {
        let cases: Vec<(ConfigArgs, &str)> = vec![
            (
                ConfigArgs {
                    max_concurrent_sessions: Some("0".into()),
                    ..Default::default()
                },
                "MAX_CONCURRENT_SESSIONS",
            ),
            (
                ConfigArgs {
                    tz: Some("Mars/Olympus".into()),
                    ..Default::default()
                },
                "TZ",
            ),
            (
                ConfigArgs {
                    opencode_model: Some("gpt".into()),
                    ..Default::default()
                },
                "OPENCODE_MODEL",
            ),
            (
                ConfigArgs {
                    channel: Some("telegram".into()),
                    ..Default::default()
                },
                "PB_CHANNEL",
            ),
            (
                ConfigArgs {
                    http_addr: Some("nope".into()),
                    ..Default::default()
                },
                "PB_HTTP_ADDR",
            ),
            (
                ConfigArgs {
                    opencode_url: Some("ftp://x".into()),
                    ..Default::default()
                },
                "OPENCODE_URL",
            ),
            (
                ConfigArgs {
                    run_timeout: Some("0s".into()),
                    ..Default::default()
                },
                "PB_RUN_TIMEOUT",
            ),
        ];
        for (args, setting) in cases {
            let e = Config::from_args(&args).unwrap_err().to_string();
            assert!(e.starts_with(&format!("invalid {setting} ")), "{e}");
        }
    }

    #[test]
    fn password_never_shows_in_debug() {
        let c = Config::from_args(&ConfigArgs {
            opencode_password: Some("hunter2".into()),
            ..Default::default()
        })
        .unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(c.opencode_password.unwrap().expose(), "hunter2");
        // Nor can it ride in OPENCODE_URL, which is logged.
        let e = Config::from_args(&ConfigArgs {
            opencode_url: Some("http://opencode:hunter2@127.0.0.1:4096".into()),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("invalid OPENCODE_URL ") && !e.contains("hunter2"),
            "{e}"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86400)));
        assert_eq!(parse_duration("1500"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("5 weeks").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
    }
}
