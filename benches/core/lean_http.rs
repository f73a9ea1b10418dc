//! A lean HTTP/1.1 load client for the ingest burst, in the manner of wrk:
//! one kept-alive connection per worker, one request in flight on each,
//! the request bytes made before the clock starts, the response read just
//! far enough to check its status and skip its body. The bridge shares the
//! machine's two cores with its client, so a client that spends 30 µs a
//! request (reqwest, JSON built per request) caps the rate the bridge can
//! show; this one spends a few.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `POST path` with a JSON `body`, as bytes ready to write.
pub fn post(host: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    req
}

/// Sends `requests` in turn on one connection to `addr`; each answer's
/// status must be `want`. Returns each request's latency.
pub async fn run(addr: &str, requests: Vec<Vec<u8>>, want: u16) -> Vec<Duration> {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.set_nodelay(true).unwrap();
    let mut buf = Vec::with_capacity(4096);
    let mut lat = Vec::with_capacity(requests.len());
    for req in requests {
        let t = Instant::now();
        s.write_all(&req).await.expect("write");
        let status = read_response(&mut s, &mut buf).await;
        assert_eq!(status, want, "lean client: unexpected status");
        lat.push(t.elapsed());
    }
    lat
}

/// Reads one response (headers, then `content-length` bytes of body) from
/// `s`, keeping any bytes past it in `buf`; returns its status.
async fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> u16 {
    loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end]).expect("ASCII head");
            let status: u16 = head
                .split(' ')
                .nth(1)
                .and_then(|c| c.parse().ok())
                .expect("status line");
            let len: usize = head
                .split("\r\n")
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .expect("content-length");
            let total = end + 4 + len;
            while buf.len() < total {
                fill(s, buf).await;
            }
            buf.drain(..total);
            return status;
        }
        fill(s, buf).await;
    }
}

async fn fill(s: &mut TcpStream, buf: &mut Vec<u8>) {
    let mut chunk = [0u8; 4096];
    let n = s.read(&mut chunk).await.expect("read");
    assert!(n > 0, "lean client: the server closed the connection");
    buf.extend_from_slice(&chunk[..n]);
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
