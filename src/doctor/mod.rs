//! `pocketbrain doctor`: checks what a working bridge needs, one check at a
//! time, each with a fix when it fails.
//!
//! The checks, in order: the settings; the data folder's owner (it holds
//! the messages and the WhatsApp keys); the modes of the folder and of the
//! files in it that hold secrets (0700 and 0600); the database; the chats'
//! isolation (no git repository around the workspace, which would make
//! OpenCode treat all chat folders as one project); the HTTP port;
//! OpenCode reachable and at the pinned version; the plugin loaded for a
//! chat folder (OpenCode lists the `pocketbrain_*` tools there); the
//! workspace and the tool-call folder visible to OpenCode at the bridge's
//! paths (a probe file written by us, read back through OpenCode's file
//! API); the WhatsApp device paired. A check that cannot run because an
//! earlier one failed is skipped, saying why. Doctor only reads, apart
//! from its probe files, which it removes.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::config::{ChannelKind, Config};

mod host;
mod opencode;

use host::*;
use opencode::*;

/// The OpenCode version this bridge is built and tested against.
pub const OPENCODE_VERSION: &str = "1.18.33";

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ok,
    /// Works, but something is worth a look.
    Warn,
    /// Broken: the fix says what to do.
    Fail,
    /// Not applicable, or could not run.
    Skip,
}

/// One check's result.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub verdict: Verdict,
    pub detail: String,
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            verdict: Verdict::Ok,
            detail: detail.into(),
            fix: None,
        }
    }
    fn warn(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            name,
            verdict: Verdict::Warn,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
    fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            name,
            verdict: Verdict::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
    fn skip(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            verdict: Verdict::Skip,
            detail: detail.into(),
            fix: None,
        }
    }
}

/// Where the bridge's HTTP API is and how to call it.
pub struct BridgeApi {
    pub addr: String,
    pub token: Option<crate::config::Secret>,
}

/// Runs every check. `bridge` is the running bridge's `/status`, if one
/// answered.
pub async fn run(
    config: &Config,
    api: &BridgeApi,
    bridge: Option<serde_json::Value>,
) -> Vec<Check> {
    let mut out = vec![
        settings(config),
        data_folder(config),
        file_modes(config),
        database(config),
        isolation(config),
    ];
    out.push(http_port(config, api, bridge.is_some()));
    let url = config
        .opencode_url
        .as_ref()
        .map(|u| u.as_str().trim_end_matches('/').to_owned())
        .or_else(|| {
            bridge.as_ref().and_then(|b| {
                b["live"]["opencode_url"]
                    .as_str()
                    .map(|u| u.trim_end_matches('/').to_owned())
            })
        });
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("a client with a timeout builds");
    let oc = OpenCodeProbe {
        http,
        url,
        auth: config
            .opencode_password
            .as_ref()
            .map(|p| (config.opencode_username.clone(), p.expose().to_owned())),
    };
    let reachable = opencode(config, &oc).await;
    let up = reachable.verdict == Verdict::Ok;
    out.push(reachable);
    let chat_dir = first_chat_dir(config).await;
    if up {
        out.push(plugin(&oc, &chat_dir).await);
        out.push(shared_folders(config, &oc, &chat_dir).await);
    } else {
        out.push(Check::skip("plugin", "OpenCode is not reachable"));
        out.push(Check::skip("shared folders", "OpenCode is not reachable"));
    }
    out.push(whatsapp(config));
    out
}

/// Whether any check failed.
pub fn broken(checks: &[Check]) -> bool {
    checks.iter().any(|c| c.verdict == Verdict::Fail)
}

/// The checks for a person: one line each, the fix indented below.
pub fn render(checks: &[Check]) -> String {
    let mut o = String::new();
    for c in checks {
        let mark = match c.verdict {
            Verdict::Ok => "ok  ",
            Verdict::Warn => "warn",
            Verdict::Fail => "FAIL",
            Verdict::Skip => "skip",
        };
        o.push_str(&format!("[{mark}] {:<15} {}\n", c.name, c.detail));
        if let Some(fix) = &c.fix {
            o.push_str(&format!("       fix: {fix}\n"));
        }
    }
    let failed = checks.iter().filter(|c| c.verdict == Verdict::Fail).count();
    if failed == 0 {
        o.push_str("No problems found.\n");
    } else {
        o.push_str(&format!("{failed} problem(s) found.\n"));
    }
    o
}
