//! Tool calls from the OpenCode plugin, through files.
//!
//! The plugin writes `requests/<id>.json` atomically (temp file + rename) in
//! `PB_DATA_DIR/ipc/`; this module picks it up at once (inotify through
//! `notify`, see [`watch`]; a request postponed because OpenCode or the
//! store was unavailable is tried again every few seconds), acts, and
//! writes `responses/<id>.json` for the plugin to read. Requests are handled
//! one at a time in the order they were made.
//!
//! Trust. The calling chat is the chat the bridge itself mapped to the
//! request's OpenCode session, never anything in the arguments. And because
//! the agent can also write files (it has bash), every request is checked
//! against OpenCode before anything happens: that session must hold a call
//! of this tool, in that message, with these arguments. A request that fails
//! the check is refused and logged as forged.
//!
//! At most once. Each action commits in one transaction with its ledger row
//! (`ipc_requests`: request id, and session + call id). A request seen again
//! (a crash between acting and deleting the file) gets its recorded answer;
//! a second request for the same call is refused.
//!
//! Bad files (too large, malformed, unknown version) get an error response
//! when an id can be read, are moved to `failed/` with a `.reason` file
//! beside them, and are logged; processing goes on.

pub mod protocol;
pub mod watch;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::agent::Agent;
use crate::agent::{AgentError, ToolCall};
use crate::channel::Channel;
use crate::ids::SessionId;
use crate::metrics::ToolEnd;
use crate::outbound::Persona;
use crate::store::LedgerEntry;
use crate::store::Store;
use crate::tools::{self, ToolEnv};
use protocol::{MAX_REQUEST_BYTES, Request, Response, VERSION, valid_id};

/// How soon a postponed request is tried again (and how often the folder
/// is polled when it cannot be watched).
const RESCAN: Duration = Duration::from_secs(3);
/// How often responses nobody picked up are looked for.
const SWEEP: Duration = Duration::from_secs(600);
/// Responses nobody picked up are removed after this long.
const RESPONSE_TTL: Duration = Duration::from_secs(3600);

/// The IPC folders.
#[derive(Debug, Clone)]
pub struct IpcDirs {
    pub root: PathBuf,
    pub requests: PathBuf,
    pub responses: PathBuf,
    pub failed: PathBuf,
}

impl IpcDirs {
    pub fn new(root: PathBuf) -> Self {
        Self {
            requests: root.join("requests"),
            responses: root.join("responses"),
            failed: root.join("failed"),
            root,
        }
    }

    pub fn create(&self) -> std::io::Result<()> {
        for d in [&self.requests, &self.responses, &self.failed] {
            std::fs::create_dir_all(d)?;
        }
        Ok(())
    }
}

/// Why a request was not acted on now.
enum Skip {
    /// Try again on the next scan (OpenCode unreachable, store busy).
    Later(String),
}

/// What carrying out a tool call needs.
#[derive(Clone)]
pub struct IpcDeps {
    pub store: Store,
    /// For provenance: the tool calls OpenCode recorded.
    pub agent: Arc<dyn Agent>,
    /// For the ids of messages the tools send.
    pub channel: Arc<dyn Channel>,
    pub persona: Persona,
    pub tz: chrono_tz::Tz,
    pub workspace: PathBuf,
    pub outbox_wake: Arc<Notify>,
    pub tasks_wake: Arc<Notify>,
}

/// The request processor.
#[derive(Clone)]
pub struct Ipc {
    dirs: IpcDirs,
    deps: Arc<IpcDeps>,
}

impl Ipc {
    pub fn new(dirs: IpcDirs, deps: IpcDeps) -> Self {
        Self {
            dirs,
            deps: Arc::new(deps),
        }
    }

    /// Watches and processes until `cancel`. Idle, it sleeps: it wakes for
    /// a new request file, to retry postponed requests every few seconds,
    /// and to sweep old responses now and then.
    pub async fn run(self, cancel: CancellationToken) {
        let mut watcher = match watch::RequestWatcher::start(&self.dirs.requests) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the IPC folder; polling it every {RESCAN:?}");
                None
            }
        };
        let mut sweep = tokio::time::interval(SWEEP);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let postponed = self.scan().await;
            let rescan = async {
                match &mut watcher {
                    Some(w) if !postponed => w.changed().await,
                    Some(w) => {
                        tokio::select! {
                            _ = w.changed() => {}
                            _ = tokio::time::sleep(RESCAN) => {}
                        }
                    }
                    None => tokio::time::sleep(RESCAN).await,
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = rescan => {}
                _ = sweep.tick() => self.sweep_responses(),
            }
        }
    }

    /// Handles every request file present now, oldest first. Returns
    /// whether one was postponed (to be tried again on a timer).
    pub async fn scan(&self) -> bool {
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&self.dirs.requests) {
            Ok(rd) => rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| watch::visible_name(p) && p.is_file())
                .collect(),
            Err(e) => {
                tracing::error!(error = %e, dir = %self.dirs.requests.display(), "cannot read the IPC request folder");
                return true;
            }
        };
        files.sort();
        let mut postponed = false;
        for path in files {
            if let Err(Skip::Later(why)) = self.handle(&path).await {
                tracing::warn!(file = %path.display(), %why, "IPC request postponed");
                postponed = true;
            }
        }
        postponed
    }

    async fn handle(&self, path: &Path) -> Result<(), Skip> {
        let size = match std::fs::metadata(path) {
            Ok(m) => m.len(),
            Err(_) => return Ok(()), // taken meanwhile
        };
        if size > MAX_REQUEST_BYTES {
            self.refuse_unread(
                path,
                None,
                "too_large",
                &format!("request file is {size} bytes; the limit is {MAX_REQUEST_BYTES}"),
            );
            return Ok(());
        }
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => return Err(Skip::Later(format!("cannot read: {e}"))),
        };
        let value: Value = match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(e) => {
                self.refuse_unread(path, None, "malformed", &format!("malformed JSON: {e}"));
                return Ok(());
            }
        };
        let id = value["id"]
            .as_str()
            .filter(|i| valid_id(i))
            .map(str::to_owned);
        let Some(id) = id else {
            self.refuse_unread(path, None, "malformed", "no valid request id (req_...)");
            return Ok(());
        };
        if value["version"].as_u64() != Some(VERSION as u64) {
            let why = format!(
                "unsupported protocol version {}; this bridge speaks version {VERSION}",
                value["version"]
            );
            self.refuse_unread(path, Some(&id), "unsupported_version", &why);
            return Ok(());
        }
        let req: Request = match serde_json::from_value(value) {
            Ok(r) => r,
            Err(e) => {
                self.refuse_unread(
                    path,
                    Some(&id),
                    "malformed",
                    &format!("malformed request: {e}"),
                );
                return Ok(());
            }
        };
        let store = &self.deps.store;
        if let Some(recorded) = store
            .ipc_response(&req.id)
            .await
            .map_err(|e| Skip::Later(e.to_string()))?
            .and_then(|raw| serde_json::from_str::<Response>(&raw).ok())
        {
            tracing::info!(id = %req.id, "IPC request already handled; answering again");
            self.respond(path, &recorded);
            return Ok(());
        }
        let response = self.act(&req).await?;
        match response {
            Acted::Answer(resp) => {
                let end = if resp.ok { ToolEnd::Ok } else { ToolEnd::Error };
                crate::metrics::tool_call(&req.tool, end);
                self.respond(path, &resp)
            }
            Acted::Refused(code, why) => {
                let end = if code == "forged" {
                    ToolEnd::Forged
                } else {
                    ToolEnd::Refused
                };
                crate::metrics::tool_call(&req.tool, end);
                self.refuse(path, Some(&req.id), code, &why)
            }
        }
        Ok(())
    }

    /// Identity, provenance, then the action and its ledger row in one transaction.
    async fn act(&self, req: &Request) -> Result<Acted, Skip> {
        let store = &self.deps.store;
        // These go into OpenCode URLs: only OpenCode's own id shapes.
        let oc_id = |id: &str, prefix: &str| {
            id.starts_with(prefix)
                && id.len() <= 64
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        };
        if !oc_id(&req.context.session_id, "ses_") || !oc_id(&req.context.message_id, "msg_") {
            return Ok(Acted::Refused(
                "malformed",
                "session_id or message_id is not an OpenCode id".into(),
            ));
        }
        let session = SessionId::new(&req.context.session_id);
        let chat = store
            .chat_for_session(&session)
            .await
            .map_err(|e| Skip::Later(e.to_string()))?;
        let Some(chat) = chat else {
            tracing::warn!(id = %req.id, session = %session, "IPC request from a session PocketBrain does not know: refused as forged");
            return Ok(Acted::Refused(
                "forged",
                "this session does not belong to a PocketBrain chat".into(),
            ));
        };
        let Some(caller) = store
            .registered(&chat)
            .await
            .map_err(|e| Skip::Later(e.to_string()))?
        else {
            return Ok(Acted::Answer(Response::error(
                &req.id,
                "unauthorized",
                format!("{chat} is no longer registered"),
            )));
        };
        let dir = crate::workspace::chat_dir(&self.deps.workspace, &caller)
            .map_err(|e| Skip::Later(e.to_string()))?;

        // Provenance: the call must exist in OpenCode, as described.
        let calls = match self
            .deps
            .agent
            .tool_calls(&dir, &session, &req.context.message_id)
            .await
        {
            Ok(c) => c,
            Err(AgentError::SessionGone(_)) => Vec::new(),
            Err(e) => return Err(Skip::Later(format!("cannot verify with OpenCode: {e}"))),
        };
        let Some(call) = matching_call(&calls, req) else {
            tracing::warn!(
                id = %req.id, chat = %chat, session = %session, tool = %req.tool,
                call = ?req.context.call_id, "IPC request has no matching tool call in OpenCode: refused as forged"
            );
            return Ok(Acted::Refused(
                "forged",
                "no matching tool call in this session: requests must come from the PocketBrain tools".into(),
            ));
        };

        let tz = self.deps.tz;
        let deps = self.deps.clone();
        let (req2, caller2, call_id) = (req.clone(), caller.clone(), call.call_id.clone());
        let outcome = store
            .tx(move |tx| {
                if crate::store::ipc_call_seen(tx, &req2.context.session_id, &call_id)? {
                    return Ok(None);
                }
                let outgoing = |t: &str| deps.persona.reply(t);
                let new_id = || deps.channel.new_message_id();
                let env = ToolEnv {
                    tz,
                    now: chrono::Utc::now(),
                    outgoing: &outgoing,
                    new_message_id: &new_id,
                };
                let (resp, effects) =
                    match tools::execute(tx, &caller2, &req2.tool, &req2.args, &env) {
                        Ok((result, effects)) => (Response::ok(&req2.id, result), effects),
                        // A passing database failure is not the answer: roll
                        // back (nothing half-done stays) and try again later.
                        Err(e) if e.code == tools::STORAGE => {
                            return Err(crate::store::StoreError::Conflict(e.message));
                        }
                        Err(e) => (
                            Response::error(&req2.id, e.code, e.message),
                            tools::Effects::default(),
                        ),
                    };
                let response_json = serde_json::to_string(&resp).unwrap_or_default();
                crate::store::ipc_record(
                    tx,
                    &LedgerEntry {
                        id: &req2.id,
                        session_id: &req2.context.session_id,
                        call_id: &call_id,
                        tool: &req2.tool,
                        chat: &caller2.jid,
                        ok: resp.ok,
                        response_json: &response_json,
                    },
                )?;
                Ok(Some((resp, effects)))
            })
            .await
            .map_err(|e| Skip::Later(e.to_string()))?;
        let Some((resp, effects)) = outcome else {
            tracing::warn!(id = %req.id, call = %call.call_id, "a second request for an already handled tool call: refused as forged");
            return Ok(Acted::Refused(
                "forged",
                "this tool call was already handled".into(),
            ));
        };
        tracing::info!(id = %req.id, chat = %chat, tool = %req.tool, call = %call.call_id, from_plugin = req.context.call_id.is_some(), ok = resp.ok, "IPC request handled");
        if effects.outbox {
            self.deps.outbox_wake.notify_one();
        }
        if effects.tasks {
            self.deps.tasks_wake.notify_one();
        }
        Ok(Acted::Answer(resp))
    }

    fn respond(&self, request: &Path, resp: &Response) {
        if let Err(e) = write_atomic(
            &self.dirs.responses,
            &format!("{}.json", resp.id),
            &serde_json::to_vec(resp).unwrap_or_default(),
        ) {
            tracing::error!(id = %resp.id, error = %e, "cannot write IPC response");
            return;
        }
        let _ = std::fs::remove_file(request);
    }

    /// [`Self::refuse`] for a request refused before its tool was known.
    fn refuse_unread(&self, path: &Path, id: Option<&str>, code: &str, why: &str) {
        crate::metrics::tool_call("unknown", ToolEnd::Refused);
        self.refuse(path, id, code, why);
    }

    /// Logs, answers with an error when an id is known, and moves the file aside.
    fn refuse(&self, path: &Path, id: Option<&str>, code: &str, why: &str) {
        tracing::warn!(file = %path.display(), id = ?id, code, reason = why, "IPC request refused");
        if let Some(id) = id {
            let resp = Response::error(id, code, why);
            let _ = write_atomic(
                &self.dirs.responses,
                &format!("{id}.json"),
                &serde_json::to_vec(&resp).unwrap_or_default(),
            );
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3f");
        let dest = self.dirs.failed.join(format!("{stamp}-{name}"));
        if std::fs::rename(path, &dest).is_ok() {
            let _ = std::fs::write(dest.with_extension("reason"), format!("{code}: {why}\n"));
        } else {
            let _ = std::fs::remove_file(path);
        }
    }

    fn sweep_responses(&self) {
        let Ok(rd) = std::fs::read_dir(&self.dirs.responses) else {
            return;
        };
        for e in rd.flatten() {
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > RESPONSE_TTL);
            if old {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

enum Acted {
    Answer(Response),
    Refused(&'static str, String),
}

/// The tool call in OpenCode that this request stands for: same tool, in the
/// given message, with the given call id (when the plugin knew it), and
/// arguments the model really gave (every key the request carries must
/// equal the call's input; OpenCode may keep keys the schema dropped).
fn matching_call<'a>(calls: &'a [ToolCall], req: &Request) -> Option<&'a ToolCall> {
    let tool = format!("pocketbrain_{}", req.tool);
    let args = req.args.as_object()?;
    calls.iter().find(|c| {
        c.tool == tool
            && req
                .context
                .call_id
                .as_deref()
                .is_none_or(|id| id == c.call_id)
            && matches!(c.status.as_str(), "running" | "completed" | "error")
            && args.iter().all(|(k, v)| c.input.get(k) == Some(v))
    })
}

fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, dir.join(name))
}

/// What OpenCode needs of the plugin package (`opencode-plugin/`) at run
/// time, embedded so the workspace always has the plugin that matches this
/// bridge: its entry, the modules the entry imports (OpenCode runs the `.ts`
/// sources as they are), and the manifest and lock of `@opencode-ai/plugin`
/// (the package's own `package.json` also lists its test tools). Paths are
/// relative to `<workspace>/.opencode/`; the package keeps the same layout,
/// so the relative imports hold in both places.
const PLUGIN_FILES: &[(&str, &str)] = &[
    (
        "plugin/pocketbrain.ts",
        include_str!("../../opencode-plugin/plugin/pocketbrain.ts"),
    ),
    (
        "pocketbrain/contract.ts",
        include_str!("../../opencode-plugin/pocketbrain/contract.ts"),
    ),
    (
        "pocketbrain/ipc.ts",
        include_str!("../../opencode-plugin/pocketbrain/ipc.ts"),
    ),
    (
        "pocketbrain/spec.ts",
        include_str!("../../opencode-plugin/pocketbrain/spec.ts"),
    ),
    (
        "pocketbrain/tools.ts",
        include_str!("../../opencode-plugin/pocketbrain/tools.ts"),
    ),
    (
        "pocketbrain/tools/cancel_task.ts",
        include_str!("../../opencode-plugin/pocketbrain/tools/cancel_task.ts"),
    ),
    (
        "pocketbrain/tools/list_tasks.ts",
        include_str!("../../opencode-plugin/pocketbrain/tools/list_tasks.ts"),
    ),
    (
        "pocketbrain/tools/pause_task.ts",
        include_str!("../../opencode-plugin/pocketbrain/tools/pause_task.ts"),
    ),
    (
        "pocketbrain/tools/resume_task.ts",
        include_str!("../../opencode-plugin/pocketbrain/tools/resume_task.ts"),
    ),
    (
        "pocketbrain/tools/schedule_task.ts",
        include_str!("../../opencode-plugin/pocketbrain/tools/schedule_task.ts"),
    ),
    (
        "pocketbrain/tools/send_message.ts",
        include_str!("../../opencode-plugin/pocketbrain/tools/send_message.ts"),
    ),
    (
        "package.json",
        include_str!("../../opencode-plugin/runtime/package.json"),
    ),
    (
        "package-lock.json",
        include_str!("../../opencode-plugin/runtime/package-lock.json"),
    ),
];

/// Writes the plugin and its config into `<workspace>/.opencode/`,
/// touching only files whose content changed.
pub fn install_plugin(workspace: &Path, ipc_root: &Path, timeout: Duration) -> std::io::Result<()> {
    let base = workspace.join(".opencode");
    let config =
        serde_json::json!({ "ipc_dir": ipc_root, "timeout_ms": timeout.as_millis() as u64 })
            .to_string();
    let files = PLUGIN_FILES
        .iter()
        .map(|(p, c)| (*p, c.to_string()))
        .chain(std::iter::once(("pocketbrain.json", config)));
    for (rel, content) in files {
        let path = base.join(rel);
        if std::fs::read_to_string(&path).is_ok_and(|c| c == content) {
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let tmp = path.with_extension("pbtmp");
        std::fs::write(&tmp, content)?;
        std::fs::rename(&tmp, &path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(tool: &str, args: Value, call: Option<&str>) -> Request {
        Request {
            version: 1,
            id: "req_x_1".into(),
            tool: tool.into(),
            args,
            context: protocol::CallContext {
                session_id: "ses_1".into(),
                message_id: "msg_1".into(),
                call_id: call.map(Into::into),
                agent: None,
            },
            created_at: String::new(),
        }
    }

    fn call(tool: &str, id: &str, status: &str, input: Value) -> ToolCall {
        ToolCall {
            tool: tool.into(),
            call_id: id.into(),
            status: status.into(),
            input,
        }
    }

    #[test]
    fn provenance_needs_same_tool_call_and_arguments() {
        let calls = vec![
            call("bash", "c0", "completed", json!({"command": "echo"})),
            call(
                "pocketbrain_send_message",
                "c1",
                "running",
                json!({"text": "hi"}),
            ),
        ];
        assert!(
            matching_call(
                &calls,
                &req("send_message", json!({"text": "hi"}), Some("c1"))
            )
            .is_some()
        );
        assert!(
            matching_call(&calls, &req("send_message", json!({"text": "hi"}), None)).is_some(),
            "without a call id: by tool and args"
        );
        assert!(
            matching_call(
                &calls,
                &req("send_message", json!({"text": "bye"}), Some("c1"))
            )
            .is_none(),
            "other args"
        );
        assert!(
            matching_call(
                &calls,
                &req(
                    "send_message",
                    json!({"text": "hi", "chat": "1@g.us"}),
                    Some("c1")
                )
            )
            .is_none(),
            "added args"
        );
        assert!(
            matching_call(
                &calls,
                &req("send_message", json!({"text": "hi"}), Some("c9"))
            )
            .is_none(),
            "other call"
        );
        assert!(
            matching_call(
                &calls,
                &req("cancel_task", json!({"text": "hi"}), Some("c1"))
            )
            .is_none(),
            "other tool"
        );
        let pending = vec![call(
            "pocketbrain_send_message",
            "c1",
            "pending",
            json!({"text": "hi"}),
        )];
        assert!(
            matching_call(
                &pending,
                &req("send_message", json!({"text": "hi"}), Some("c1"))
            )
            .is_none()
        );
    }

    #[test]
    fn plugin_install_writes_once_and_config_points_at_ipc() {
        let dir = tempfile::tempdir().unwrap();
        install_plugin(dir.path(), Path::new("/data/ipc"), Duration::from_secs(30)).unwrap();
        let cfg: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join(".opencode/pocketbrain.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(cfg, json!({"ipc_dir": "/data/ipc", "timeout_ms": 30000}));
        let plugin = dir.path().join(".opencode/plugin/pocketbrain.ts");
        let before = std::fs::metadata(&plugin).unwrap().modified().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        install_plugin(dir.path(), Path::new("/data/ipc"), Duration::from_secs(30)).unwrap();
        assert_eq!(
            std::fs::metadata(&plugin).unwrap().modified().unwrap(),
            before,
            "unchanged files are not rewritten"
        );
    }

    /// The `.ts` files under `dir`, relative to `base`.
    fn ts_files(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                ts_files(base, &path, out);
            } else if path.extension().is_some_and(|e| e == "ts") {
                let rel = path.strip_prefix(base).unwrap();
                out.push(rel.to_str().unwrap().to_owned());
            }
        }
    }

    #[test]
    fn every_runtime_module_of_the_plugin_package_is_embedded() {
        let package = Path::new(env!("CARGO_MANIFEST_DIR")).join("opencode-plugin");
        let mut on_disk = Vec::new();
        for dir in ["plugin", "pocketbrain"] {
            ts_files(&package, &package.join(dir), &mut on_disk);
        }
        on_disk.sort();
        let mut embedded: Vec<&str> = PLUGIN_FILES
            .iter()
            .map(|(p, _)| *p)
            .filter(|p| p.ends_with(".ts"))
            .collect();
        embedded.sort();
        assert_eq!(
            embedded, on_disk,
            "PLUGIN_FILES must list every module in opencode-plugin/plugin and opencode-plugin/pocketbrain"
        );
    }

    /// Module specifiers in `import ... from "x"`, `export ... from "x"`
    /// (also where a long list of names ends a line `} from "x"`) and `import "x"`.
    fn specifiers(source: &str) -> Vec<&str> {
        let mut out = Vec::new();
        for line in source.lines().map(str::trim_start) {
            if !["import ", "export ", "} "]
                .iter()
                .any(|p| line.starts_with(p))
            {
                continue;
            }
            let tail = match line.rfind(" from \"") {
                Some(i) => &line[i + 7..],
                None if line.starts_with("import \"") => &line[8..],
                None => continue,
            };
            if let Some(end) = tail.find('"') {
                out.push(&tail[..end]);
            }
        }
        out
    }

    #[test]
    fn the_installed_plugin_finds_all_it_imports() {
        let dir = tempfile::tempdir().unwrap();
        install_plugin(dir.path(), Path::new("/data/ipc"), Duration::from_secs(30)).unwrap();
        let base = dir.path().join(".opencode");
        let manifest: Value =
            serde_json::from_str(&std::fs::read_to_string(base.join("package.json")).unwrap())
                .unwrap();
        let mut imports = 0;
        for (rel, source) in PLUGIN_FILES.iter().filter(|(p, _)| p.ends_with(".ts")) {
            for spec in specifiers(source) {
                imports += 1;
                if spec.starts_with('.') {
                    let target = base.join(rel).parent().unwrap().join(spec);
                    assert!(
                        target.is_file(),
                        "{rel} imports {spec}, which is not installed"
                    );
                } else if !spec.starts_with("node:") {
                    assert!(
                        manifest["dependencies"][spec].is_string(),
                        "{rel} imports {spec}, which the installed package.json does not list"
                    );
                }
            }
        }
        assert!(imports > 10, "the import scan found {imports} imports");
        let entry = std::fs::read_to_string(base.join("plugin/pocketbrain.ts")).unwrap();
        assert!(entry.contains("export const PocketBrain"));
    }
}
