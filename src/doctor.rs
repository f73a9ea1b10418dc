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

fn settings(config: &Config) -> Check {
    const NAME: &str = "settings";
    match config.validate().and_then(|()| config.check_http_bind()) {
        Ok(()) => Check::ok(NAME, "valid"),
        Err(e) => Check::fail(
            NAME,
            e.to_string(),
            format!("change {} (see .env.example)", e.setting),
        ),
    }
}

fn data_folder(config: &Config) -> Check {
    const NAME: &str = "data folder";
    let dir = &config.data_dir;
    let meta = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Check::warn(
                NAME,
                format!("{} does not exist yet", dir.display()),
                "it is created at the bridge's first start; check PB_DATA_DIR if you expected data there",
            );
        }
        Err(e) => {
            return Check::fail(
                NAME,
                format!("{}: {e}", dir.display()),
                "make PB_DATA_DIR a folder the bridge's user can read and write",
            );
        }
    };
    let mode = meta.permissions().mode() & 0o777;
    // SAFETY: getuid has no preconditions and cannot fail.
    let me = unsafe { libc::getuid() };
    if meta.uid() != me {
        return Check::fail(
            NAME,
            format!(
                "{} belongs to uid {}, not to this user (uid {me})",
                dir.display(),
                meta.uid()
            ),
            format!(
                "run as the bridge's user, or chown -R it to that user: {}",
                dir.display()
            ),
        );
    }
    if mode & 0o022 != 0 {
        return Check::fail(
            NAME,
            format!("{} is writable by others (mode {mode:o})", dir.display()),
            format!("chmod 700 {}", dir.display()),
        );
    }
    Check::ok(NAME, format!("{} (mode {mode:o})", dir.display()))
}

/// The data folder 0700 and every file in it that holds messages, keys or
/// the token 0600: the bridge makes them so at each start, so a wider mode
/// is from an older install, a copy, or a hand.
fn file_modes(config: &Config) -> Check {
    const NAME: &str = "file modes";
    let dir = &config.data_dir;
    if !dir.exists() {
        return Check::skip(NAME, "the data folder does not exist yet");
    }
    let mut files = vec![config.token_file()];
    for db in [
        config.db_path(),
        config.whatsapp_db(),
        dir.join("fake-phone.sqlite3"),
    ] {
        files.extend(crate::owner_only::sqlite_companions(&db));
        files.push(db);
    }
    let mut wide = Vec::new();
    let mut checked = 0;
    let mode_of = |p: &Path| {
        std::fs::symlink_metadata(p)
            .ok()
            .map(|m| m.permissions().mode() & 0o777)
    };
    if let Some(mode) = mode_of(dir)
        && mode & !crate::owner_only::DIR_MODE != 0
    {
        wide.push((dir.clone(), mode, "700"));
    }
    for f in &files {
        if let Some(mode) = mode_of(f) {
            checked += 1;
            if mode & !crate::owner_only::FILE_MODE != 0 {
                wide.push((f.clone(), mode, "600"));
            }
        }
    }
    if wide.is_empty() {
        return Check::ok(
            NAME,
            format!("{} is 700, its {checked} secret files 600", dir.display()),
        );
    }
    let detail = wide
        .iter()
        .map(|(p, mode, _)| format!("{} is {mode:o}", p.display()))
        .collect::<Vec<_>>()
        .join(", ");
    let fix = wide
        .iter()
        .map(|(p, _, want)| format!("chmod {want} {}", p.display()))
        .collect::<Vec<_>>()
        .join("; ");
    Check::fail(
        NAME,
        format!("others may read what only you should: {detail}"),
        format!("{fix} (the bridge also narrows them at its next start)"),
    )
}

fn database(config: &Config) -> Check {
    const NAME: &str = "database";
    let path = config.db_path();
    if !path.exists() {
        return Check::warn(
            NAME,
            format!("{} does not exist yet", path.display()),
            "it is created at the bridge's first start",
        );
    }
    let checked = crate::store::ops::quick_check(&path);
    match checked {
        Ok((v, _)) if v > crate::store::SCHEMA_VERSION => Check::fail(
            NAME,
            format!(
                "schema version {v} is newer than this build's {}",
                crate::store::SCHEMA_VERSION
            ),
            "upgrade PocketBrain",
        ),
        Ok((v, quick)) if quick == "ok" => Check::ok(NAME, format!("schema version {v}, intact")),
        Ok((_, quick)) => Check::fail(
            NAME,
            format!("integrity check says: {quick}"),
            "restore the last good backup (pocketbrain restore FILE)",
        ),
        Err(e) => Check::fail(
            NAME,
            format!("{}: {e}", path.display()),
            "check the file's owner and permissions; restore a backup if it is damaged",
        ),
    }
}

fn isolation(config: &Config) -> Check {
    const NAME: &str = "isolation";
    let workspace = std::path::absolute(&config.workspace).unwrap_or(config.workspace.clone());
    match crate::workspace::enclosing_git(&workspace) {
        None => Check::ok(
            NAME,
            format!(
                "no git repository around {}: each chat folder is its own OpenCode project",
                workspace.display()
            ),
        ),
        Some(git) => Check::fail(
            NAME,
            format!(
                "{} (the bridge refuses to start)",
                crate::workspace::inside_git(&workspace, &git)
            ),
            crate::workspace::INSIDE_GIT_FIX,
        ),
    }
}

fn http_port(config: &Config, api: &BridgeApi, running: bool) -> Check {
    const NAME: &str = "http";
    if running {
        return Check::ok(NAME, format!("the bridge answers at {}", api.addr));
    }
    match std::net::TcpListener::bind(config.http_addr) {
        Ok(_) => Check::warn(
            NAME,
            format!("no bridge answers; {} is free for it", config.http_addr),
            "start the bridge (pocketbrain serve, docker compose up -d)",
        ),
        Err(e) => Check::fail(
            NAME,
            format!(
                "no bridge answers at {}, and {} cannot be bound: {e}",
                api.addr, config.http_addr
            ),
            "something else holds the port: stop it, or set PB_HTTP_ADDR to a free one",
        ),
    }
}

struct OpenCodeProbe {
    http: reqwest::Client,
    url: Option<String>,
    auth: Option<(String, String)>,
}

impl OpenCodeProbe {
    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        let url = self.url.as_deref().unwrap_or_default();
        let r = self.http.get(format!("{url}{path}"));
        match &self.auth {
            Some((u, p)) => r.basic_auth(u, Some(p)),
            None => r,
        }
    }
}

async fn opencode(config: &Config, oc: &OpenCodeProbe) -> Check {
    const NAME: &str = "opencode";
    let Some(url) = &oc.url else {
        // The bridge starts OpenCode itself, and is not running: check the binary.
        let Some(bin) = crate::opencode::server::find_binary(config.opencode_bin.as_deref())
            .filter(|b| b.is_file())
        else {
            return Check::fail(
                NAME,
                "OPENCODE_URL is unset and no opencode binary was found",
                format!(
                    "set OPENCODE_URL to a running opencode serve, or install opencode-ai@{OPENCODE_VERSION} (scripts/install-tools.sh) or set OPENCODE_BIN"
                ),
            );
        };
        let version = std::process::Command::new(&bin)
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
        return match version {
            Ok(v) if v == OPENCODE_VERSION => Check::warn(
                NAME,
                format!("{} is version {v}; the bridge starts it", bin.display()),
                "start the bridge and run doctor again to check the plugin and the shared folders",
            ),
            Ok(v) => Check::fail(
                NAME,
                format!("{} is version {v:?}, not {OPENCODE_VERSION}", bin.display()),
                format!("install opencode-ai@{OPENCODE_VERSION} (scripts/install-tools.sh)"),
            ),
            Err(e) => Check::fail(
                NAME,
                format!("cannot run {}: {e}", bin.display()),
                format!("install opencode-ai@{OPENCODE_VERSION} (scripts/install-tools.sh)"),
            ),
        };
    };
    let answer = oc
        .get("/global/health")
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    let resp = match answer {
        Ok(r) => r,
        Err(e) => {
            return Check::fail(
                NAME,
                format!("no answer from {url}: {e}"),
                "start OpenCode (docker compose up -d opencode), or set OPENCODE_URL to where it listens",
            );
        }
    };
    if resp.status() == reqwest::StatusCode::UNAUTHORIZED {
        return Check::fail(
            NAME,
            format!("{url} refused the password (401)"),
            "set OPENCODE_SERVER_PASSWORD (and OPENCODE_SERVER_USERNAME) to OpenCode's own",
        );
    }
    let v: serde_json::Value = resp.json().await.unwrap_or_default();
    match v["version"].as_str() {
        Some(OPENCODE_VERSION) if v["healthy"] == true => {
            Check::ok(NAME, format!("{url}, version {OPENCODE_VERSION}"))
        }
        Some(other) => Check::fail(
            NAME,
            format!("{url} runs version {other}, not {OPENCODE_VERSION}"),
            format!(
                "run opencode-ai@{OPENCODE_VERSION} (the image tag in docker-compose.yml, or scripts/install-tools.sh)"
            ),
        ),
        None => Check::fail(
            NAME,
            format!("{url} is not an OpenCode server (health said {v})"),
            "point OPENCODE_URL at opencode serve",
        ),
    }
}

/// The folder of the first registered chat (its own OpenCode instance, as
/// a run sees it), else the workspace itself.
async fn first_chat_dir(config: &Config) -> PathBuf {
    let workspace = std::path::absolute(&config.workspace).unwrap_or(config.workspace.clone());
    let first = crate::store::ops::first_chat_folder(&config.db_path());
    match first {
        Ok(Some(folder)) if workspace.join("chats").join(&folder).is_dir() => {
            workspace.join("chats").join(folder)
        }
        _ => workspace,
    }
}

async fn plugin(oc: &OpenCodeProbe, dir: &Path) -> Check {
    const NAME: &str = "plugin";
    let ids: Result<Vec<String>, String> = async {
        let r = oc
            .get("/experimental/tool/ids")
            .query(&[("directory", dir.to_string_lossy().as_ref())])
            .send()
            .await
            .map_err(|e| e.to_string())?;
        r.json().await.map_err(|e| e.to_string())
    }
    .await;
    match ids {
        Ok(ids) => {
            let missing = crate::opencode::missing_tools(&ids);
            if missing.is_empty() {
                Check::ok(
                    NAME,
                    format!("the pocketbrain tools are loaded for {}", dir.display()),
                )
            } else {
                Check::fail(
                    NAME,
                    format!(
                        "opencode-tools-missing: OpenCode lacks {} for {}",
                        missing.join(", "),
                        dir.display()
                    ),
                    "start the bridge once (it writes the plugin into <workspace>/.opencode/plugin/pocketbrain.js), \
                     then restart OpenCode; if they are still missing, OpenCode's log says why the plugin did not load",
                )
            }
        }
        Err(e) => Check::fail(
            NAME,
            format!("cannot list OpenCode's tools for {}: {e}", dir.display()),
            "check that OpenCode sees PB_WORKSPACE at the same path",
        ),
    }
}

/// Writes a probe file into each folder and reads it back through
/// OpenCode's file API with that folder as the instance directory.
async fn shared_folders(config: &Config, oc: &OpenCodeProbe, chat_dir: &Path) -> Check {
    const NAME: &str = "shared folders";
    let ipc = std::path::absolute(config.ipc_dir()).unwrap_or(config.ipc_dir());
    let mut problems = Vec::new();
    for (what, dir, dispose) in [
        ("workspace", chat_dir, false),
        ("tool-call folder", &ipc, true),
    ] {
        let nonce = format!("{:016x}", rand::random::<u64>());
        let name = format!(".pocketbrain-probe-{nonce}");
        let file = dir.join(&name);
        if let Err(e) = std::fs::write(&file, &nonce) {
            problems.push(format!(
                "cannot write into the {what} {}: {e}",
                dir.display()
            ));
            continue;
        }
        let seen: Result<serde_json::Value, String> = async {
            let r = oc
                .get("/file/content")
                .query(&[
                    ("directory", dir.to_string_lossy().as_ref()),
                    ("path", &name),
                ])
                .send()
                .await
                .map_err(|e| e.to_string())?;
            r.json().await.map_err(|e| e.to_string())
        }
        .await;
        let _ = std::fs::remove_file(&file);
        if dispose {
            // The probe booted an instance for this folder: free it.
            let url = oc.url.as_deref().unwrap_or_default();
            let mut r = oc
                .http
                .post(format!("{url}/instance/dispose"))
                .query(&[("directory", dir.to_string_lossy().as_ref())]);
            if let Some((u, p)) = &oc.auth {
                r = r.basic_auth(u, Some(p));
            }
            let _ = r.send().await;
        }
        match seen {
            Ok(v) if v["content"].as_str().map(str::trim) == Some(nonce.as_str()) => {}
            Ok(_) | Err(_) => problems.push(format!(
                "OpenCode does not see the {what} at {}",
                dir.display()
            )),
        }
    }
    if problems.is_empty() {
        Check::ok(
            NAME,
            format!(
                "OpenCode sees {} and {} as the bridge does",
                chat_dir.display(),
                ipc.display()
            ),
        )
    } else {
        Check::fail(
            NAME,
            problems.join("; "),
            "mount PB_WORKSPACE and PB_IPC_DIR at the same paths in OpenCode's container as in the bridge's (docker-compose.yml: /workspace and /ipc)",
        )
    }
}

fn whatsapp(config: &Config) -> Check {
    const NAME: &str = "whatsapp";
    if config.channel == ChannelKind::Fake {
        return Check::skip(NAME, "not applicable (PB_CHANNEL=fake)");
    }
    let path = config.whatsapp_db();
    let fix = "start the bridge and scan the QR code it logs (README: Pairing with WhatsApp)";
    if !path.exists() {
        return Check::fail(NAME, format!("no device store at {}", path.display()), fix);
    }
    let paired = crate::store::ops::device_paired(&path);
    match paired {
        Ok(true) => Check::ok(NAME, "device paired"),
        Ok(false) => Check::fail(NAME, "the device store has no paired identity", fix),
        Err(e) => Check::fail(
            NAME,
            format!("cannot read {}: {e}", path.display()),
            "stop the bridge, then pocketbrain whatsapp logout --force and pair again",
        ),
    }
}
