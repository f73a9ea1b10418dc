//! One typed configuration, from flags and environment (a flag wins over
//! its variable; a variable that is set but blank counts as unset).
//!
//! clap parses every value, with its ranges and enums, and refuses a bad one
//! at start-up. Each value is named after its variable
//! (`--run-timeout <PB_RUN_TIMEOUT>`), so clap's message names the variable
//! whether the value came from a flag or from the environment.
//! [`Config::validate`] adds the rules clap cannot check without echoing the
//! value. Secrets are wrapped so `Debug` and logs never show them.

mod duration;
mod kinds;
mod model_pins;
mod names;
mod reference;
mod secret;
mod settings;
#[cfg(test)]
mod tests;
mod values;

use std::path::PathBuf;
use std::time::Duration;

pub use duration::{parse_duration, parse_silence};
pub use kinds::{ChannelKind, LogFormat, ModelRef, PermissionPolicy, UnknownDm};
pub use model_pins::ModelPins;
pub use names::{OldName, RENAMED, accept_old_names, old_name, old_names};
pub use reference::reference_markdown;
pub use secret::{MIN_TOKEN_LEN, Secret, weak_secret};
pub use settings::Config;
pub use values::parse_phone;

/// `<XDG_DATA_HOME or ~/.local/share>/pocketbrain/<leaf>`: where every
/// command (serve, the CLI, scripts/run.sh) finds the bridge's state unless
/// PB_DATA_DIR / PB_WORKSPACE say otherwise (the image sets both).
pub(crate) fn state_dir(leaf: &str) -> PathBuf {
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

/// A setting that failed validation; the message names it.
#[derive(Debug, thiserror::Error)]
#[error("invalid {setting} ({flag}): {why}")]
pub struct ConfigError {
    pub setting: &'static str,
    pub flag: &'static str,
    pub why: String,
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

/// The transcription endpoint's settings (`PB_TRANSCRIBE_*`), for
/// [`crate::transcribe`].
#[derive(Debug, Clone)]
pub struct TranscribeSettings {
    /// The full URL of the route, or a base ending in `/v1` (the route is
    /// then appended).
    pub url: String,
    pub model: String,
    pub api_key: Option<Secret>,
    pub timeout: Duration,
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
            setting: "PB_OPENCODE_URL",
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
    pub fn transcribe(&self) -> Option<TranscribeSettings> {
        self.transcribe_url.as_ref().map(|url| TranscribeSettings {
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
        let cmd = crate::cli::settings_layout(cmd);
        crate::cli::Cli::parse_with(cmd, ["pocketbrain", "serve"])
            .expect("the defaults parse")
            .config
    }
}
