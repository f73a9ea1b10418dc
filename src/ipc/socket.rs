//! The fast way in: a Unix socket beside the request folder.
//!
//! The plugin connects to `<ipc>/bridge.sock`, writes one request (the same
//! JSON as a request file) and a newline, and reads one response line. The
//! request goes through the same checks as a file (identity, provenance,
//! the ledger), so the socket trusts its callers no more than the folder
//! does: anything that can write in the folder can connect. A connection
//! the bridge cannot answer now (OpenCode unreachable, the store busy, too
//! many connections, the bridge stopping) is closed without an answer, and
//! the plugin puts the same request in the folder, the durable way: a
//! request is never lost because it went by the socket, and the ledger
//! answers a request that arrives both ways once.

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
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
/// How long a connection may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

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

    /// One request and its answer.
    async fn one_connection(&self, stream: UnixStream) {
        let (read, mut write) = stream.into_split();
        let mut line = Vec::new();
        let mut reader = BufReader::new(read).take(MAX_REQUEST_BYTES + 2);
        match tokio::time::timeout(READ_TIMEOUT, reader.read_until(b'\n', &mut line)).await {
            Ok(Ok(_)) if line.ends_with(b"\n") => {
                line.pop();
            }
            Ok(Ok(_)) if line.len() as u64 > MAX_REQUEST_BYTES => {
                crate::metrics::tool_call("unknown", ToolEnd::Refused, Via::Socket);
                tracing::warn!("IPC socket: request over {MAX_REQUEST_BYTES} bytes refused");
                return;
            }
            // Closed before a whole line, or too slow: nothing to answer.
            _ => return,
        }
        let req = match read_request(&line) {
            Ok(r) => r,
            Err(bad) => {
                crate::metrics::tool_call("unknown", ToolEnd::Refused, Via::Socket);
                tracing::warn!(id = ?bad.id, code = bad.code, reason = %bad.why, "IPC socket: request refused");
                if let Some(id) = &bad.id {
                    send(&mut write, &Response::error(id, bad.code, bad.why)).await;
                }
                return;
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
                return;
            }
        };
        send(&mut write, &resp).await;
        crate::stage!("tool_responded", resp.id);
    }
}

async fn send(write: &mut tokio::net::unix::OwnedWriteHalf, resp: &Response) {
    let mut body = serde_json::to_vec(resp).unwrap_or_default();
    body.push(b'\n');
    if let Err(e) = write.write_all(&body).await {
        // The plugin is gone (its call ended); the ledger keeps the answer
        // for a request that comes again.
        tracing::debug!(id = %resp.id, error = %e, "IPC socket: cannot send the answer");
    }
    let _ = write.shutdown().await;
}
