//! The fast way in: a Unix socket beside the request folder.
//!
//! The plugin connects to `<ipc>/bridge.sock`, writes a request (the same
//! JSON as a request file) and a newline, and reads one response line; then
//! it may write the next request on the same connection, which it keeps
//! open between calls (connecting costs a turn of OpenCode's event loop,
//! measured in docs/BENCHMARKS.md). Requests on one connection are answered
//! one after another; a connection idle for [`IDLE`] is closed. Each
//! request goes through the same checks as a file (identity, provenance,
//! the ledger), so the socket trusts its callers no more than the folder
//! does: anything that can write in the folder can connect. A request the
//! bridge cannot answer now (OpenCode unreachable, the store busy, too
//! many connections, the bridge stopping) closes its connection without an
//! answer, and the plugin puts the same request in the folder, the durable
//! way: a request is never lost because it went by the socket, and the
//! ledger answers a request that arrives both ways once.

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::protocol::{MAX_REQUEST_BYTES, Response, read_request};
use super::{Acted, Ipc, Skip};
use crate::metrics::{ToolEnd, Via};

/// The socket's name in the IPC folder.
pub const SOCKET_NAME: &str = "bridge.sock";
/// Connections served at once; more are closed at once (the plugin then
/// uses the folder).
const MAX_CONNECTIONS: usize = 32;
/// How long a connection may wait before (or while) sending its next
/// request; then it is closed (the plugin opens a new one when it needs it).
pub const IDLE: Duration = Duration::from_secs(30);

/// Binds the socket at `<root>/bridge.sock`, replacing what an earlier run
/// (or anyone else) left there: a socket or a symlink is unlinked (never
/// followed); anything else is left and the socket not offered.
pub fn bind(root: &Path) -> std::io::Result<(UnixListener, PathBuf)> {
    let path = root.join(SOCKET_NAME);
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.file_type().is_socket() || m.file_type().is_symlink() => {
            std::fs::remove_file(&path)?;
        }
        Ok(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    Ok((UnixListener::bind(&path)?, path))
}

impl Ipc {
    /// Serves the socket until `cancel`.
    pub(super) async fn serve_socket(self, listener: UnixListener, cancel: CancellationToken) {
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        loop {
            let stream = tokio::select! {
                _ = cancel.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!(error = %e, "IPC socket: cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            // Over the limit: closed unanswered, the plugin uses the folder.
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                continue;
            };
            let me = self.clone();
            let cancel = cancel.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = cancel.cancelled() => {}
                    _ = me.one_connection(stream) => {}
                }
                drop(slot);
            });
        }
    }

    /// Requests and their answers, one after another, until the plugin
    /// closes the connection, it idles for [`IDLE`], or a request cannot be
    /// answered now.
    async fn one_connection(&self, stream: UnixStream) {
        let (read, mut write) = stream.into_split();
        let mut reader = BufReader::new(read);
        let mut line = Vec::new();
        loop {
            line.clear();
            let mut limited = (&mut reader).take(MAX_REQUEST_BYTES + 2);
            match tokio::time::timeout(IDLE, limited.read_until(b'\n', &mut line)).await {
                Ok(Ok(_)) if line.ends_with(b"\n") => {
                    line.pop();
                }
                Ok(Ok(_)) if line.len() as u64 > MAX_REQUEST_BYTES => {
                    crate::metrics::tool_call("unknown", ToolEnd::Refused, Via::Socket);
                    tracing::warn!("IPC socket: request over {MAX_REQUEST_BYTES} bytes refused");
                    break;
                }
                // Closed (before a whole line), or idle: nothing to answer.
                _ => break,
            }
            if !self.one_request(&line, &mut write).await {
                break;
            }
        }
        let _ = write.shutdown().await;
    }

    /// Answers one request line; `false` when the connection is to be
    /// closed (the request was unreadable, or cannot be answered now).
    async fn one_request(&self, line: &[u8], write: &mut OwnedWriteHalf) -> bool {
        let req = match read_request(line) {
            Ok(r) => r,
            Err(bad) => {
                crate::metrics::tool_call("unknown", ToolEnd::Refused, Via::Socket);
                tracing::warn!(id = ?bad.id, code = bad.code, reason = %bad.why, "IPC socket: request refused");
                if let Some(id) = &bad.id {
                    send(write, &Response::error(id, bad.code, bad.why)).await;
                }
                return false;
            }
        };
        let resp = match self.answer(&req, false, Via::Socket).await {
            Ok(Acted::Answer(resp)) => resp,
            Ok(Acted::Refused(code, why)) => {
                tracing::warn!(id = %req.id, code, reason = %why, "IPC request refused");
                Response::error(&req.id, code, why)
            }
            Err(Skip::Later(why)) => {
                tracing::info!(id = %req.id, %why, "IPC socket: cannot act now; the plugin queues the request in the folder");
                return false;
            }
        };
        let sent = send(write, &resp).await;
        crate::stage!("tool_responded", resp.id);
        sent
    }
}

/// Writes one answer line; `false` when the plugin is gone.
async fn send(write: &mut OwnedWriteHalf, resp: &Response) -> bool {
    let mut body = serde_json::to_vec(resp).unwrap_or_default();
    body.push(b'\n');
    match write.write_all(&body).await {
        Ok(()) => true,
        Err(e) => {
            // The plugin is gone (its call ended); the ledger keeps the
            // answer for a request that comes again.
            tracing::debug!(id = %resp.id, error = %e, "IPC socket: cannot send the answer");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::UnixStream;
    use tokio::sync::Notify;
    use tokio_util::sync::CancellationToken;

    use super::{IDLE, bind};
    use crate::ipc::{Ipc, IpcDeps, IpcDirs};

    fn ipc(dir: &std::path::Path) -> Ipc {
        let store = crate::store::Store::open(&dir.join("db.sqlite3")).unwrap();
        Ipc::new(
            IpcDirs::new(dir.join("ipc")),
            IpcDeps {
                store,
                agent: Arc::new(crate::agent::fake::FakeAgent::default()),
                channel: Arc::new(crate::channel::api::ApiChannel::new()),
                persona: crate::outbound::Persona {
                    name: "Andy".into(),
                    own_number: false,
                },
                tz: chrono_tz::UTC,
                workspace: dir.join("ws"),
                media_limits: crate::media::MediaLimits::default(),
                max_tasks_per_chat: 10,
                outbox_wake: Arc::new(Notify::new()),
                tasks_wake: Arc::new(Notify::new()),
            },
        )
    }

    /// A well-formed request from a session PocketBrain does not know: it
    /// is answered (refused as forged) without OpenCode being asked.
    fn stranger(id: &str) -> String {
        let v = serde_json::json!({
            "version": 1, "id": id, "tool": "list_tasks", "args": {},
            "context": {"session_id": "ses_stranger", "message_id": "msg_stranger",
                "call_id": "call_1", "agent": "build"},
            "created_at": "2026-11-21T05:40:02.000Z",
        });
        format!("{v}\n")
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_serves_requests_in_turn_until_it_idles() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("ipc")).unwrap();
        let (listener, path) = bind(&dir.path().join("ipc")).unwrap();
        let cancel = CancellationToken::new();
        tokio::spawn(ipc(dir.path()).serve_socket(listener, cancel.clone()));

        let (read, mut write) = UnixStream::connect(&path).await.unwrap().into_split();
        let mut lines = BufReader::new(read).lines();
        for id in ["req_a", "req_b", "req_c"] {
            write.write_all(stranger(id).as_bytes()).await.unwrap();
            let answer = lines.next_line().await.unwrap().expect("an answer");
            let v: serde_json::Value = serde_json::from_str(&answer).unwrap();
            assert_eq!(
                (v["id"].as_str(), v["error"]["code"].as_str()),
                (Some(id), Some("forged"))
            );
        }
        // Idle for the limit: closed by the bridge.
        let t = tokio::time::Instant::now();
        assert_eq!(lines.next_line().await.unwrap(), None);
        assert!(t.elapsed() >= IDLE, "closed after {:?}", t.elapsed());
        cancel.cancel();
    }
}
