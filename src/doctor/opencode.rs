//! The checks through OpenCode: reachable at the pinned version, the
//! plugin loaded for a chat folder, and the workspace and the tool-call
//! folder visible at the bridge's paths.

use super::*;

pub(super) struct OpenCodeProbe {
    pub(super) http: reqwest::Client,
    pub(super) url: Option<String>,
    pub(super) auth: Option<(String, String)>,
}

impl OpenCodeProbe {
    pub(super) fn get(&self, path: &str) -> reqwest::RequestBuilder {
        let url = self.url.as_deref().unwrap_or_default();
        let r = self.http.get(format!("{url}{path}"));
        match &self.auth {
            Some((u, p)) => r.basic_auth(u, Some(p)),
            None => r,
        }
    }
}

pub(super) async fn opencode(config: &Config, oc: &OpenCodeProbe) -> Check {
    const NAME: &str = "opencode";
    let Some(url) = &oc.url else {
        // The bridge starts OpenCode itself, and is not running: check the binary.
        let Some(bin) = crate::opencode::server::find_binary(config.opencode_bin.as_deref())
            .filter(|b| b.is_file())
        else {
            return Check::fail(
                NAME,
                "PB_OPENCODE_URL is unset and no opencode binary was found",
                format!(
                    "set PB_OPENCODE_URL to a running opencode serve, or install opencode-ai@{OPENCODE_VERSION} (scripts/install-tools.sh) or set PB_OPENCODE_BIN"
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
                "start OpenCode (docker compose up -d opencode), or set PB_OPENCODE_URL to where it listens",
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
            "point PB_OPENCODE_URL at opencode serve",
        ),
    }
}

/// The folder of the first registered chat (its own OpenCode instance, as
/// a run sees it), else the workspace itself.
pub(super) async fn first_chat_dir(config: &Config) -> PathBuf {
    let workspace = std::path::absolute(&config.workspace).unwrap_or(config.workspace.clone());
    let first = crate::store::ops::first_chat_folder(&config.db_path());
    match first {
        Ok(Some(folder)) if workspace.join("chats").join(&folder).is_dir() => {
            workspace.join("chats").join(folder)
        }
        _ => workspace,
    }
}

pub(super) async fn plugin(oc: &OpenCodeProbe, dir: &Path) -> Check {
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
pub(super) async fn shared_folders(config: &Config, oc: &OpenCodeProbe, chat_dir: &Path) -> Check {
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
