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

mod act;
mod dirs;
mod fair;
pub mod protocol;
pub mod socket;
mod sweep;
pub mod watch;

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::agent::Agent;
use crate::channel::Channel;
use crate::metrics::{ToolEnd, Via};
use crate::outbound::Persona;
use crate::safe_dir::{Kind, Limited, ReadError};
use crate::store::Store;
pub use dirs::IpcDirs;
use dirs::OpenDirs;
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
        let (order, more) = fair::fair_order(keyed, PER_SESSION_PER_PASS);
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
        sweep::prune(&dirs.responses, now, RESPONSE_TTL, usize::MAX);
        sweep::prune(&dirs.failed, now, FAILED_TTL, FAILED_MAX_FILES);
    }
}

enum Acted {
    Answer(Response),
    Refused(&'static str, String),
}

#[cfg(test)]
mod tests;
