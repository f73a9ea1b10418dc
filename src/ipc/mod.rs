//! Tool calls from the OpenCode plugin, through files.
//!
//! The plugin writes `requests/<id>.json` atomically (temp file + rename) in
//! `PB_DATA_DIR/ipc/`; this module picks it up at once (inotify through
//! `notify`, see [`watch`]; a request postponed because OpenCode or the
//! store was unavailable is tried again every few seconds), acts, and
//! writes `responses/<id>.json` for the plugin to read. Requests are handled
//! one at a time, round-robin across the sessions that made them (oldest
//! first within each), a bounded share per session and pass, so a flood
//! from one session cannot hold up another's. The agent can write in this
//! folder: every file is opened through [`SafeDir`] (no symlink followed,
//! regular files only, read up to the size limit through one handle).
//!
//! Trust. The calling chat is the chat the bridge itself mapped to the
//! request's OpenCode session, never anything in the arguments. And because
//! the agent can also write files (it has bash), every request is checked
//! against OpenCode before anything happens: that session must be running
//! this call (by its call id) of this tool, in that message, with these
//! arguments; a finished call counts only for a request file left from
//! before this bridge started. A request that fails the check is refused,
//! logged and counted as forged.
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
pub mod socket;
pub mod watch;

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::agent::Agent;
use crate::agent::{AgentError, ToolCall};
use crate::channel::Channel;
use crate::ids::SessionId;
use crate::metrics::{ToolEnd, Via};
use crate::outbound::Persona;
use crate::safe_dir::{Kind, Limited, ReadError, SafeDir};
use crate::store::LedgerEntry;
use crate::store::Store;
use crate::tools::{self, ToolEnv};
use protocol::{MAX_REQUEST_BYTES, Request, Response, VERSION, valid_id};

/// How soon a postponed request is tried again (and how often the folder
/// is polled when it cannot be watched).
const RESCAN: Duration = Duration::from_secs(3);
/// How often responses nobody picked up, and old failed requests, are looked for.
const SWEEP: Duration = Duration::from_secs(600);
/// Responses nobody picked up are removed after this long.
const RESPONSE_TTL: Duration = Duration::from_secs(3600);
/// Failed requests (and their `.reason` files) are kept this long...
const FAILED_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// ...and at most this many files, the oldest removed first.
const FAILED_MAX_FILES: usize = 2000;
/// Most requests of one OpenCode session acted on in one pass; the rest
/// wait for the next pass, which follows at once.
const PER_SESSION_PER_PASS: usize = 4;
/// The IPC folders.
#[derive(Debug, Clone)]
pub struct IpcDirs {
    pub root: PathBuf,
    pub requests: PathBuf,
    pub responses: PathBuf,
    pub failed: PathBuf,
}

/// The IPC folders, opened without following a symlink below the root
/// (the agent can write in the tool-call folder).
struct OpenDirs {
    requests: SafeDir,
    responses: SafeDir,
    failed: SafeDir,
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
        self.open().map(drop)
    }

    /// Opens (creating, or replacing a planted symlink) the three folders.
    fn open(&self) -> std::io::Result<OpenDirs> {
        let root = SafeDir::open_root(&self.root)?;
        Ok(OpenDirs {
            requests: root.subdir("requests")?,
            responses: root.subdir("responses")?,
            failed: root.subdir("failed")?,
        })
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
    /// Largest file per kind `send_file` takes.
    pub media_limits: crate::media::MediaLimits,
    /// `PB_MAX_TASKS_PER_CHAT`, for `schedule_task`.
    pub max_tasks_per_chat: usize,
    pub outbox_wake: Arc<Notify>,
    pub tasks_wake: Arc<Notify>,
}

/// A request file, by name and inode (a file renamed over it is another).
type FileKey = (OsString, u64);
/// A request file's inode, size and mtime, and the session it named then.
type SeenSession = (u64, u64, SystemTime, String);

/// The request processor.
#[derive(Clone)]
pub struct Ipc {
    dirs: IpcDirs,
    deps: Arc<IpcDeps>,
    /// Request files already there when this processor was made: left from
    /// before a restart, so their tool calls may have finished meanwhile.
    leftover: Arc<HashSet<FileKey>>,
    /// Which session each request file (by name, inode, size and mtime)
    /// belongs to, so a file left for a later pass is not read again
    /// only to be scheduled.
    sessions: Arc<Mutex<HashMap<OsString, SeenSession>>>,
    /// Requests refused as forged since start.
    forged: Arc<AtomicU64>,
}

/// What one pass over the request folder left.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    /// A request was postponed (to be tried again on a timer).
    pub postponed: bool,
    /// Requests were left for the next pass (a session over its share).
    pub more: bool,
}

impl Ipc {
    pub fn new(dirs: IpcDirs, deps: IpcDeps) -> Self {
        let leftover = dirs
            .open()
            .and_then(|d| {
                let names = d.requests.names()?;
                Ok(names
                    .into_iter()
                    .filter_map(|n| {
                        let ino = d.requests.stat(&n).ok()??.inode;
                        Some((n, ino))
                    })
                    .collect())
            })
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, dir = %dirs.requests.display(), "cannot read the IPC request folder");
                HashSet::new()
            });
        Self {
            dirs,
            deps: Arc::new(deps),
            leftover: Arc::new(leftover),
            sessions: Arc::default(),
            forged: Arc::default(),
        }
    }

    /// Watches and processes until `cancel`. Idle, it sleeps: it wakes for
    /// a new request file, to retry postponed requests every few seconds,
    /// and to sweep old responses and failed requests now and then.
    pub async fn run(self, cancel: CancellationToken) {
        match socket::bind(&self.dirs.root) {
            Ok((listener, path)) => {
                tracing::debug!(socket = %path.display(), "IPC socket listening");
                tokio::spawn(self.clone().serve_socket(listener, cancel.clone()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot offer the IPC socket; tool calls come through the request folder only");
            }
        }
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
            let pass = self.scan_once().await;
            if pass.more {
                // Work left over: the next pass at once (new requests of
                // other sessions join it), unless we are stopping.
                if cancel.is_cancelled() {
                    return;
                }
                tokio::task::yield_now().await;
                continue;
            }
            let rescan = async {
                match &mut watcher {
                    Some(w) if !pass.postponed => w.changed().await,
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
                _ = sweep.tick() => self.sweep(),
            }
        }
    }

    /// Handles every request file present now (passes until none is left
    /// over). Returns whether one was postponed.
    pub async fn scan(&self) -> bool {
        loop {
            let pass = self.scan_once().await;
            if !pass.more {
                return pass.postponed;
            }
        }
    }

    /// One pass, fair across OpenCode sessions. Files that cannot be a
    /// request of a session (unreadable, malformed, symlinks) are set aside
    /// as they are met: each costs one bounded read and no OpenCode call.
    /// The rest are grouped by session and acted on round-robin, oldest
    /// first, at most [`PER_SESSION_PER_PASS`] per session: a session that
    /// floods the folder delays another session's request by at most one
    /// request per flooding session.
    pub async fn scan_once(&self) -> Pass {
        let dirs = match self.dirs.open() {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, dir = %self.dirs.requests.display(), "cannot open the IPC folders");
                return Pass {
                    postponed: true,
                    more: false,
                };
            }
        };
        let mut names: Vec<OsString> = match dirs.requests.names() {
            Ok(n) => n
                .into_iter()
                .filter(|n| watch::visible_name(Path::new(n)))
                .collect(),
            Err(e) => {
                tracing::error!(error = %e, dir = %self.dirs.requests.display(), "cannot read the IPC request folder");
                return Pass {
                    postponed: true,
                    more: false,
                };
            }
        };
        names.sort();
        let mut pass = Pass::default();
        let mut keyed = Vec::new();
        for name in names {
            match self.session_of(&dirs, &name) {
                Some(session) => keyed.push((session, name)),
                // Not a request of any session: set aside now (cheap).
                None => {
                    if let Err(Skip::Later(why)) = self.handle(&dirs, &name).await {
                        tracing::warn!(file = ?name, %why, "IPC request postponed");
                        pass.postponed = true;
                    }
                }
            }
        }
        {
            let present: HashSet<&OsString> = keyed.iter().map(|(_, n)| n).collect();
            let mut cache = self.sessions.lock().expect("ipc session cache");
            cache.retain(|n, _| present.contains(n));
        }
        let (order, more) = fair_order(keyed, PER_SESSION_PER_PASS);
        pass.more = more;
        for name in order {
            if let Err(Skip::Later(why)) = self.handle(&dirs, &name).await {
                tracing::warn!(file = ?name, %why, "IPC request postponed");
                pass.postponed = true;
            }
        }
        pass
    }

    /// The session a request file names, for scheduling only (the file is
    /// read again, and checked in full, when it is acted on). `None`: not
    /// a readable request.
    fn session_of(&self, dirs: &OpenDirs, name: &OsStr) -> Option<String> {
        let stat = dirs.requests.stat(name).ok()??;
        if stat.kind != Kind::File {
            return None;
        }
        let mut cache = self.sessions.lock().expect("ipc session cache");
        if let Some((ino, len, mtime, session)) = cache.get(name)
            && (*ino, *len, *mtime) == (stat.inode, stat.len, stat.modified)
        {
            return Some(session.clone());
        }
        let Ok(Limited::Whole(bytes)) = dirs.requests.read_limited(name, MAX_REQUEST_BYTES) else {
            return None;
        };
        let req: Request = serde_json::from_slice(&bytes).ok()?;
        if req.version != VERSION || !valid_id(&req.id) {
            return None;
        }
        let session = req.context.session_id;
        cache.insert(
            name.to_owned(),
            (
                stat.inode,
                bytes.len() as u64,
                stat.modified,
                session.clone(),
            ),
        );
        Some(session)
    }

    async fn handle(&self, dirs: &OpenDirs, name: &OsStr) -> Result<(), Skip> {
        let Some(stat) = dirs
            .requests
            .stat(name)
            .map_err(|e| Skip::Later(format!("cannot stat: {e}")))?
        else {
            return Ok(()); // taken meanwhile
        };
        let bytes = match dirs.requests.read_limited(name, MAX_REQUEST_BYTES) {
            Ok(Limited::Whole(b)) => b,
            Ok(Limited::TooLarge(size)) => {
                self.refuse_unread(
                    dirs,
                    name,
                    None,
                    "too_large",
                    &format!(
                        "request file is {size} bytes or more; the limit is {MAX_REQUEST_BYTES}"
                    ),
                );
                return Ok(());
            }
            Err(ReadError::NotFound) => return Ok(()), // taken meanwhile
            Err(ReadError::Symlink) => {
                self.refuse_unread(
                    dirs,
                    name,
                    None,
                    "symlink",
                    "request file is a symlink: not followed, not read",
                );
                return Ok(());
            }
            Err(ReadError::NotAFile) => {
                self.refuse_unread(
                    dirs,
                    name,
                    None,
                    "not_a_file",
                    "request is not a regular file: not read",
                );
                return Ok(());
            }
            Err(ReadError::Io(e)) => return Err(Skip::Later(format!("cannot read: {e}"))),
        };
        let req = match protocol::read_request(&bytes) {
            Ok(r) => r,
            Err(bad) => {
                self.refuse_unread(dirs, name, bad.id.as_deref(), bad.code, &bad.why);
                return Ok(());
            }
        };
        let leftover = self.leftover.contains(&(name.to_owned(), stat.inode));
        match self.answer(&req, leftover, Via::Folder).await? {
            Acted::Answer(resp) => self.respond(dirs, name, &resp),
            Acted::Refused(code, why) => self.refuse(dirs, name, Some(&req.id), code, &why),
        }
        Ok(())
    }

    /// One request, read and well formed (from a file or the socket): its
    /// recorded answer when it was handled before, else acted on now.
    async fn answer(&self, req: &Request, leftover: bool, via: Via) -> Result<Acted, Skip> {
        crate::stage!("tool_read", req.id);
        if let Some(recorded) = self.recorded(&req.id).await? {
            tracing::info!(id = %req.id, "IPC request already handled; answering again");
            return Ok(Acted::Answer(recorded));
        }
        let acted = self.act(req, leftover).await?;
        let end = match &acted {
            Acted::Answer(r) if r.ok => ToolEnd::Ok,
            Acted::Answer(_) => ToolEnd::Error,
            Acted::Refused("forged", _) => ToolEnd::Forged,
            Acted::Refused(..) => ToolEnd::Refused,
        };
        crate::metrics::tool_call(&req.tool, end, via);
        Ok(acted)
    }

    /// The answer recorded in the ledger for request `id`, if any.
    async fn recorded(&self, id: &str) -> Result<Option<Response>, Skip> {
        Ok(self
            .deps
            .store
            .ipc_response(id)
            .await
            .map_err(|e| Skip::Later(e.to_string()))?
            .and_then(|raw| serde_json::from_str::<Response>(&raw).ok()))
    }

    /// Identity, provenance, then the action and its ledger row in one
    /// transaction. `leftover`: the request file was there before this
    /// bridge started, so its call may have finished while it was down.
    async fn act(&self, req: &Request, leftover: bool) -> Result<Acted, Skip> {
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
            let forged = self.forged.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(id = %req.id, session = %session, forged_total = forged, "IPC request from a session PocketBrain does not know: refused as forged");
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
        crate::stage!("tool_identified", req.id);

        // Provenance: the call must exist in OpenCode, as described. First
        // what the event stream showed running (no request to OpenCode;
        // waiting a few ms for a stream that is behind the request);
        // when it showed nothing that matches, OpenCode's own record of the
        // message. A leftover request's call may have finished meanwhile,
        // which only the record can show.
        let streamed = match req.context.call_id.as_deref() {
            Some(call_id) if !leftover => {
                self.deps
                    .agent
                    .streamed_tool_call(&session, &req.context.message_id, call_id)
                    .await
            }
            _ => None,
        }
        .filter(|c| matching_call(std::slice::from_ref(c), req, false).is_some());
        let via_stream = streamed.is_some();
        let calls = match streamed {
            Some(c) => vec![c],
            None => match self
                .deps
                .agent
                .tool_calls(&dir, &session, &req.context.message_id)
                .await
            {
                Ok(c) => c,
                Err(AgentError::SessionGone(_)) => Vec::new(),
                Err(e) => return Err(Skip::Later(format!("cannot verify with OpenCode: {e}"))),
            },
        };
        let Some(call) = matching_call(&calls, req, leftover) else {
            let forged = self.forged.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(
                id = %req.id, chat = %chat, session = %session, tool = %req.tool,
                call = ?req.context.call_id, leftover, forged_total = forged,
                "IPC request has no running tool call with this call id and these arguments in OpenCode: refused as forged"
            );
            return Ok(Acted::Refused(
                "forged",
                "no running tool call with this call id and these arguments in this session: requests must come from the PocketBrain tools".into(),
            ));
        };

        if via_stream {
            crate::stage!("tool_checked_stream", req.id);
        } else {
            crate::stage!("tool_checked_http", req.id);
        }

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
                    workspace: Some(&deps.workspace),
                    media_limits: deps.media_limits,
                    max_tasks_per_chat: deps.max_tasks_per_chat,
                };
                let (resp, effects) = match tools::execute(
                    tx,
                    tools::Caller::Chat(&caller2),
                    &req2.tool,
                    &req2.args,
                    &env,
                ) {
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
        crate::stage!("tool_committed", req.id);
        let Some((resp, effects)) = outcome else {
            // The same request, carried both ways (the plugin fell back to
            // a file while the socket's answer was on its way): its answer.
            if let Some(recorded) = self.recorded(&req.id).await? {
                return Ok(Acted::Answer(recorded));
            }
            let forged = self.forged.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(id = %req.id, call = %call.call_id, forged_total = forged, "a second request for an already handled tool call: refused as forged");
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

    fn respond(&self, dirs: &OpenDirs, request: &OsStr, resp: &Response) {
        if let Err(e) = dirs.responses.write(
            &format!("{}.json", resp.id),
            &serde_json::to_vec(resp).unwrap_or_default(),
        ) {
            tracing::error!(id = %resp.id, error = %e, "cannot write IPC response");
            return;
        }
        crate::stage!("tool_responded", resp.id);
        let _ = dirs.requests.remove(request);
    }

    /// [`Self::refuse`] for a request refused before its tool was known.
    fn refuse_unread(
        &self,
        dirs: &OpenDirs,
        name: &OsStr,
        id: Option<&str>,
        code: &str,
        why: &str,
    ) {
        crate::metrics::tool_call("unknown", ToolEnd::Refused, Via::Folder);
        self.refuse(dirs, name, id, code, why);
    }

    /// Logs, answers with an error when an id is known, and moves the file
    /// aside (a symlink is moved as the link, never read).
    fn refuse(&self, dirs: &OpenDirs, name: &OsStr, id: Option<&str>, code: &str, why: &str) {
        tracing::warn!(file = ?name, id = ?id, code, reason = why, "IPC request refused");
        if let Some(id) = id {
            let resp = Response::error(id, code, why);
            let _ = dirs.responses.write(
                &format!("{id}.json"),
                &serde_json::to_vec(&resp).unwrap_or_default(),
            );
        }
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3f");
        let dest = format!("{stamp}-{}", name.to_string_lossy());
        if dirs
            .requests
            .rename_to(name, &dirs.failed, OsStr::new(&dest))
            .is_ok()
        {
            let reason = Path::new(&dest).with_extension("reason");
            let _ = dirs.failed.write(
                &reason.to_string_lossy(),
                format!("{code}: {why}\n").as_bytes(),
            );
        } else {
            let _ = dirs.requests.remove(name);
        }
    }

    /// Removes responses nobody picked up, and failed requests past their
    /// age or beyond the count kept.
    fn sweep(&self) {
        let Ok(dirs) = self.dirs.open() else {
            return;
        };
        let now = SystemTime::now();
        prune(&dirs.responses, now, RESPONSE_TTL, usize::MAX);
        prune(&dirs.failed, now, FAILED_TTL, FAILED_MAX_FILES);
    }
}

/// Removes the entries of `dir` older than `ttl`, then the oldest beyond
/// `max` (names that cannot be read are skipped).
fn prune(dir: &SafeDir, now: SystemTime, ttl: Duration, max: usize) {
    let Ok(names) = dir.names() else {
        return;
    };
    let mut kept: Vec<(SystemTime, OsString)> = Vec::new();
    for name in names {
        let Ok(Some(stat)) = dir.stat(&name) else {
            continue;
        };
        if stat.kind == Kind::Dir {
            continue;
        }
        let old = now.duration_since(stat.modified).is_ok_and(|age| age > ttl);
        if old {
            let _ = dir.remove(&name);
        } else {
            kept.push((stat.modified, name));
        }
    }
    if kept.len() > max {
        kept.sort();
        for (_, name) in &kept[..kept.len() - max] {
            let _ = dir.remove(name);
        }
    }
}

/// The order in which one pass acts: round-robin over the keys (sessions)
/// in the order each first appears, taking each key's items in the order
/// given, at most `per_key` of each. Returns whether items were left out.
fn fair_order<K: Eq + std::hash::Hash + Clone, T>(
    items: Vec<(K, T)>,
    per_key: usize,
) -> (Vec<T>, bool) {
    let mut keys: Vec<K> = Vec::new();
    let mut queues: HashMap<K, std::collections::VecDeque<T>> = HashMap::new();
    let mut more = false;
    for (k, item) in items {
        let q = queues.entry(k.clone()).or_insert_with(|| {
            keys.push(k);
            Default::default()
        });
        if q.len() < per_key {
            q.push_back(item);
        } else {
            more = true;
        }
    }
    let mut out = Vec::new();
    loop {
        let before = out.len();
        for k in &keys {
            if let Some(item) = queues.get_mut(k).and_then(|q| q.pop_front()) {
                out.push(item);
            }
        }
        if out.len() == before {
            return (out, more);
        }
    }
}

enum Acted {
    Answer(Response),
    Refused(&'static str, String),
}

/// The tool call in OpenCode that this request stands for: same tool, the
/// request's call id in the given message, and the arguments the model
/// gave (every argument the request carries equal to the call's input, and
/// no tool argument in the input that the request lacks). The call must be
/// running, as it is while the plugin waits for the answer; a finished one
/// (completed or error) is accepted only for a request left from before
/// this bridge started (`leftover`), whose call may have timed out
/// meanwhile.
fn matching_call<'a>(calls: &'a [ToolCall], req: &Request, leftover: bool) -> Option<&'a ToolCall> {
    let tool = format!("pocketbrain_{}", req.tool);
    let spec = tools::spec(&req.tool)?;
    let call_id = req.context.call_id.as_deref()?;
    calls.iter().find(|c| {
        let status_ok = match c.status.as_str() {
            "running" => true,
            "completed" | "error" => leftover,
            _ => false,
        };
        c.tool == tool
            && c.call_id == call_id
            && status_ok
            && tools::same_call(spec, &req.args, &c.input)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

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
        let ok = |r: &Request| matching_call(&calls, r, false).is_some();
        assert!(ok(&req("send_message", json!({"text": "hi"}), Some("c1"))));
        assert!(
            !ok(&req("send_message", json!({"text": "hi"}), None)),
            "a request without a call id"
        );
        assert!(
            !ok(&req("send_message", json!({"text": "bye"}), Some("c1"))),
            "other args"
        );
        assert!(
            !ok(&req(
                "send_message",
                json!({"text": "hi", "chat": "1@g.us"}),
                Some("c1")
            )),
            "added args"
        );
        assert!(
            !ok(&req("send_message", json!({"text": "hi"}), Some("c9"))),
            "other call"
        );
        assert!(
            !ok(&req("cancel_task", json!({"text": "hi"}), Some("c1"))),
            "other tool"
        );
        assert!(
            !ok(&req("send_message", json!({}), Some("c1"))),
            "a tool argument left out"
        );
        let pending = vec![call(
            "pocketbrain_send_message",
            "c1",
            "pending",
            json!({"text": "hi"}),
        )];
        let r = req("send_message", json!({"text": "hi"}), Some("c1"));
        assert!(matching_call(&pending, &r, false).is_none());
        assert!(matching_call(&pending, &r, true).is_none());
        // A stray key the model added (the plugin's schema dropped it) is
        // not an argument of any tool: tolerated.
        let stray = vec![call(
            "pocketbrain_send_message",
            "c1",
            "running",
            json!({"text": "hi", "mood": "happy"}),
        )];
        assert!(matching_call(&stray, &r, false).is_some());
    }

    /// Regression: the check compared a fixed list of argument names that
    /// lacked `send_file`'s `path` and `caption`, so a request could drop
    /// the caption of a real call, or carry one the call never had. Every
    /// argument of the tool's own spec is compared now.
    #[test]
    fn provenance_compares_every_argument_of_send_file() {
        let calls = vec![call(
            "pocketbrain_send_file",
            "c1",
            "running",
            json!({"path": "report.pdf", "caption": "Q3"}),
        )];
        let ok = |args: Value| {
            matching_call(&calls, &req("send_file", args, Some("c1")), false).is_some()
        };
        assert!(ok(json!({"path": "report.pdf", "caption": "Q3"})));
        assert!(!ok(json!({"path": "report.pdf"})), "caption dropped");
        assert!(
            !ok(json!({"path": "report.pdf", "caption": "pay now"})),
            "caption changed"
        );
        assert!(
            !ok(json!({"path": "secret.pdf", "caption": "Q3"})),
            "another file"
        );
        assert!(!ok(json!({"caption": "Q3"})), "path dropped");
        let bare = vec![call(
            "pocketbrain_send_file",
            "c2",
            "running",
            json!({"path": "a.png"}),
        )];
        let r = |args: Value| req("send_file", args, Some("c2"));
        assert!(matching_call(&bare, &r(json!({"path": "a.png"})), false).is_some());
        assert!(
            matching_call(&bare, &r(json!({"path": "a.png", "caption": null})), false).is_some(),
            "null and absent are the same"
        );
        assert!(
            matching_call(
                &bare,
                &r(json!({"path": "a.png", "caption": "added"})),
                false
            )
            .is_none(),
            "a caption the call never had"
        );
        // Every tool's every argument counts, whatever the tool.
        for spec in tools::SPECS {
            for arg in spec.args {
                let input = json!({ arg.name: "model's value" });
                let calls = vec![call(
                    &format!("pocketbrain_{}", spec.name),
                    "c3",
                    "running",
                    input,
                )];
                let forged = req(spec.name, json!({ arg.name: "other value" }), Some("c3"));
                assert!(
                    matching_call(&calls, &forged, false).is_none(),
                    "{}: `{}` not compared",
                    spec.name,
                    arg.name
                );
                let dropped = req(spec.name, json!({}), Some("c3"));
                assert!(
                    matching_call(&calls, &dropped, false).is_none(),
                    "{}: `{}` may be left out",
                    spec.name,
                    arg.name
                );
            }
        }
    }

    /// The stream's index of running calls answers the provenance check by
    /// the same rules: a running call with the same tool, call id, message
    /// and arguments is accepted; a finished one is not (for a live
    /// request); other arguments are refused.
    #[test]
    fn provenance_from_the_streams_running_calls() {
        use crate::opencode::calls::RunningCalls;
        let event = |status: &str, input: Value| {
            json!({"part": {"type": "tool", "sessionID": "ses_1", "messageID": "msg_1",
                "callID": "c1", "tool": "pocketbrain_send_message",
                "state": {"status": status, "input": input}}})
        };
        let r = req("send_message", json!({"text": "hi"}), Some("c1"));
        let accepted = |idx: &RunningCalls, r: &Request| {
            idx.get("ses_1", &r.context.message_id, "c1")
                .is_some_and(|c| matching_call(std::slice::from_ref(&c), r, false).is_some())
        };
        let mut idx = RunningCalls::default();
        assert!(!accepted(&idx, &r), "not shown yet: ask OpenCode");
        idx.observe(&event("running", json!({"text": "hi"})));
        assert!(accepted(&idx, &r), "running, same tool and arguments");
        let other_args = req("send_message", json!({"text": "bye"}), Some("c1"));
        assert!(!accepted(&idx, &other_args), "other arguments");
        let added = req(
            "send_message",
            json!({"text": "hi", "chat": "1@g.us"}),
            Some("c1"),
        );
        assert!(!accepted(&idx, &added), "added arguments");
        let other_tool = req("cancel_task", json!({"text": "hi"}), Some("c1"));
        assert!(!accepted(&idx, &other_tool), "other tool");
        idx.observe(&event("completed", json!({"text": "hi"})));
        assert!(
            !accepted(&idx, &r),
            "a finished call is not accepted for a live request"
        );
    }

    #[test]
    fn a_finished_call_counts_only_for_a_request_left_from_before_the_restart() {
        let r = req("send_message", json!({"text": "hi"}), Some("c1"));
        for status in ["completed", "error"] {
            let calls = vec![call(
                "pocketbrain_send_message",
                "c1",
                status,
                json!({"text": "hi"}),
            )];
            assert!(
                matching_call(&calls, &r, false).is_none(),
                "{status}: a forged replay of a finished call"
            );
            assert!(
                matching_call(&calls, &r, true).is_some(),
                "{status}: left over"
            );
            let other = req("send_message", json!({"text": "other"}), Some("c1"));
            assert!(
                matching_call(&calls, &other, true).is_none(),
                "{status}: left over, other args"
            );
        }
    }

    #[test]
    fn one_pass_is_round_robin_over_sessions_with_a_share_each() {
        // Session "a" floods 500 requests before "b" makes one.
        let mut items: Vec<(&str, String)> = (0..500).map(|i| ("a", format!("a{i:03}"))).collect();
        items.push(("b", "b000".into()));
        items.push(("c", "c000".into()));
        items.push(("a", "a500".into()));
        let (order, more) = fair_order(items, 4);
        assert!(more, "a's surplus waits for the next pass");
        assert_eq!(
            order,
            vec!["a000", "b000", "c000", "a001", "a002", "a003"],
            "b and c are acted on after one of a's requests"
        );
        let (order, more) = fair_order(vec![("x", 1), ("x", 2), ("y", 3)], 4);
        assert_eq!((order, more), (vec![1, 3, 2], false));
    }

    #[test]
    fn failed_requests_are_pruned_by_age_and_count() {
        let t = tempfile::tempdir().unwrap();
        let dir = SafeDir::open_root(t.path()).unwrap();
        let now = SystemTime::now();
        let set_age = |name: &str, age: Duration| {
            let f = std::fs::File::options()
                .write(true)
                .open(t.path().join(name))
                .unwrap();
            f.set_modified(now - age).unwrap();
        };
        for i in 0..6 {
            let name = format!("f{i}.json");
            dir.write(&name, b"{}").unwrap();
            set_age(&name, Duration::from_secs(3600 * (i + 1)));
        }
        dir.write("ancient.json", b"{}").unwrap();
        set_age("ancient.json", Duration::from_secs(8 * 24 * 3600));
        prune(&dir, now, FAILED_TTL, 4);
        let mut left: Vec<String> = dir
            .names()
            .unwrap()
            .into_iter()
            .map(|n| n.into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            vec!["f0.json", "f1.json", "f2.json", "f3.json"],
            "past the age limit, then the oldest beyond the count, are gone"
        );
    }
}
