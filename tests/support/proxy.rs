//! A TCP proxy in front of OpenCode that can silence its event streams.
//!
//! Every connection is forwarded both ways. A connection that carries
//! `GET /global/event` is counted as a stream; `silence_streams` makes the
//! open ones stop forwarding what OpenCode sends (heartbeats and events are
//! dropped) while the socket stays open: a stream that went quiet without
//! failing, which only a watchdog notices.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Default)]
struct Conn {
    is_stream: AtomicBool,
    silenced: AtomicBool,
}

#[derive(Default)]
struct State {
    conns: Mutex<Vec<Arc<Conn>>>,
    streams_opened: AtomicUsize,
}

pub struct StallProxy {
    addr: SocketAddr,
    state: Arc<State>,
    accept: tokio::task::JoinHandle<()>,
}

impl StallProxy {
    /// Proxies to `upstream` (`http://host:port`, as OpenCode printed it).
    pub async fn start(upstream: &str) -> Self {
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let st = state.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                let conn = Arc::new(Conn::default());
                st.conns.lock().unwrap().push(conn.clone());
                tokio::spawn(pump(client, server, conn, st.clone()));
            }
        });
        Self {
            addr,
            state,
            accept,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many event-stream requests have passed through.
    pub fn streams_opened(&self) -> usize {
        self.state.streams_opened.load(Ordering::SeqCst)
    }

    /// Stops forwarding OpenCode's side of every open event stream.
    pub fn silence_streams(&self) -> usize {
        let conns = self.state.conns.lock().unwrap();
        let mut n = 0;
        for c in conns.iter().filter(|c| c.is_stream.load(Ordering::SeqCst)) {
            c.silenced.store(true, Ordering::SeqCst);
            n += 1;
        }
        n
    }
}

impl Drop for StallProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn pump(client: TcpStream, server: TcpStream, conn: Arc<Conn>, state: Arc<State>) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up_conn = conn.clone();
    let up = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            // A request line starts a chunk; a keep-alive connection may
            // carry the stream after other requests.
            if buf[..n].starts_with(b"GET /global/event")
                && !up_conn.is_stream.swap(true, Ordering::SeqCst)
            {
                state.streams_opened.fetch_add(1, Ordering::SeqCst);
            }
            if sw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = sw.shutdown().await;
    };
    let down = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match sr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if conn.silenced.load(Ordering::SeqCst) {
                continue; // dropped: the client hears nothing
            }
            if cw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = cw.shutdown().await;
    };
    // The client closing ends the connection even while OpenCode's side is
    // silenced and never closes.
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}
