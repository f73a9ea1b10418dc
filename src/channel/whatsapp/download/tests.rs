//! Downloads through the crate's own streaming path (`MediaDownloader`,
//! which `Client::download_to_writer` shares), with a media host that
//! serves a real encrypted blob and counts what is read from it.

use std::io::Read;
use std::sync::Mutex;

use super::*;
use whatsapp_rust::download::{MediaDownloader, MediaHost, MediaRoute};
use whatsapp_rust::http::{HttpClient, HttpRequest, HttpResponse};
use whatsapp_rust::wacore::net::StreamingHttpResponse;
use whatsapp_rust::waproto::whatsapp as wa;

const KIB: usize = 1024;

/// A media host: every request gets the same body, read in small pieces,
/// each byte read counted.
#[derive(Default)]
struct Cdn {
    body: Arc<Vec<u8>>,
    read: Arc<AtomicU64>,
    urls: Mutex<Vec<String>>,
}

struct Counting {
    body: Arc<Vec<u8>>,
    at: usize,
    read: Arc<AtomicU64>,
}

impl Read for Counting {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(4 * KIB).min(self.body.len() - self.at);
        buf[..n].copy_from_slice(&self.body[self.at..self.at + n]);
        self.at += n;
        self.read.fetch_add(n as u64, Ordering::SeqCst);
        Ok(n)
    }
}

#[whatsapp_rust::async_trait]
impl HttpClient for Cdn {
    async fn execute(&self, _r: HttpRequest) -> anyhow::Result<HttpResponse> {
        Err(anyhow::anyhow!(
            "a buffered download would hold the whole file"
        ))
    }

    fn supports_streaming(&self) -> bool {
        true
    }

    fn execute_streaming(&self, r: HttpRequest) -> anyhow::Result<StreamingHttpResponse> {
        self.urls.lock().unwrap().push(r.url);
        Ok(StreamingHttpResponse {
            status_code: 200,
            body: Box::new(Counting {
                body: self.body.clone(),
                at: 0,
                read: self.read.clone(),
            }),
        })
    }
}

/// Two hosts, as WhatsApp's server names them.
fn downloader(cdn: Arc<Cdn>) -> MediaDownloader {
    MediaDownloader::new(
        cdn,
        Arc::new(whatsapp_rust::TokioRuntime),
        MediaRoute::unauthenticated(vec![MediaHost::new("a.test"), MediaHost::new("b.test")]),
    )
}

impl Fetch for MediaDownloader {
    fn fetch<'a>(
        &'a self,
        part: &'a dyn Downloadable,
        sink: Capped,
    ) -> BoxFuture<'a, anyhow::Result<Capped>> {
        Box::pin(async move { Ok(self.download_to_writer(part, sink).await?) })
    }
}

/// Bytes that do not repeat in 16-byte blocks.
fn plaintext(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + i / 251) as u8).collect()
}

/// An encrypted photo as a sender sends it, announcing `announced` bytes;
/// the host's body is its ciphertext and MAC.
fn photo(plain: &[u8], announced: u64) -> (wa::message::ImageMessage, Vec<u8>) {
    let enc = whatsapp_rust::wacore::upload::encrypt_media(plain, MediaType::Image).unwrap();
    let msg = wa::message::ImageMessage {
        mimetype: Some("image/jpeg".into()),
        direct_path: Some("/v/t62/photo".into()),
        media_key: Some(enc.media_key.to_vec()),
        file_sha256: Some(enc.file_sha256.to_vec()),
        file_enc_sha256: Some(enc.file_enc_sha256.to_vec()),
        file_length: Some(announced),
        ..Default::default()
    };
    (msg, enc.data_to_upload)
}

fn names(dir: &Path) -> Vec<std::ffi::OsString> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect()
}

const TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_file_over_the_limit_is_refused_while_it_streams_whatever_was_announced() {
    let tmp = tempfile::tempdir().unwrap();
    let limit = 256 * KIB as u64;
    // Four megabytes, announced as one kilobyte.
    let (msg, body) = photo(&plaintext(4096 * KIB), 1024);
    let cdn = Arc::new(Cdn {
        body: Arc::new(body),
        ..Cdn::default()
    });
    let got = fetch_capped(&downloader(cdn.clone()), &msg, limit, tmp.path(), TIMEOUT).await;
    let missed = got.err().expect("refused");
    let over = missed.over.expect("refused for its size");
    assert!(over > limit, "{over}");
    assert!(missed.reason.contains("256 KB"), "{}", missed.reason);
    // Reading stopped at the limit: one read chunk past it on the first
    // host, and the second host's first chunk, not four megabytes.
    let read = cdn.read.load(Ordering::SeqCst);
    assert!(read <= limit + 32 * KIB as u64, "read {read} bytes");
    // Nothing is left behind.
    assert!(names(tmp.path()).is_empty());
}

#[tokio::test]
async fn a_file_within_the_limit_arrives_decrypted_and_verified_in_an_unnamed_file() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = plaintext(100 * KIB);
    let (msg, body) = photo(&plain, plain.len() as u64);
    let cdn = Arc::new(Cdn {
        body: Arc::new(body.clone()),
        ..Cdn::default()
    });
    let got = fetch_capped(
        &downloader(cdn),
        &msg,
        256 * KIB as u64,
        tmp.path(),
        TIMEOUT,
    )
    .await;
    let Ok(MediaData::File(file)) = got else {
        panic!("a file: {got:?}", got = got.err());
    };
    let mut saved = Vec::new();
    (&*file).read_to_end(&mut saved).unwrap();
    assert!(saved == plain, "the decrypted photo");
    assert!(names(tmp.path()).is_empty(), "the file has no name");

    // A body that fails its MAC is refused, not kept.
    let mut forged = body;
    forged[10] ^= 1;
    let cdn = Arc::new(Cdn {
        body: Arc::new(forged),
        ..Cdn::default()
    });
    let missed = fetch_capped(
        &downloader(cdn),
        &msg,
        256 * KIB as u64,
        tmp.path(),
        TIMEOUT,
    )
    .await
    .err()
    .expect("refused");
    assert_eq!(missed.over, None);
    assert!(
        missed.reason.starts_with("download failed"),
        "{}",
        missed.reason
    );
}

#[tokio::test]
async fn a_senders_static_url_is_never_fetched() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = plaintext(KIB);
    let (mut msg, body) = photo(&plain, plain.len() as u64);
    msg.static_url = Some("http://127.0.0.1:8787/status".into());
    let cdn = Arc::new(Cdn {
        body: Arc::new(body),
        ..Cdn::default()
    });
    let got = fetch_capped(
        &downloader(cdn.clone()),
        &msg,
        256 * KIB as u64,
        tmp.path(),
        TIMEOUT,
    )
    .await;
    assert!(got.is_ok());
    let urls = cdn.urls.lock().unwrap().clone();
    assert_eq!(urls.len(), 1);
    assert!(
        urls[0].starts_with("https://a.test/v/t62/photo?"),
        "{urls:?}"
    );
}

#[test]
fn the_sink_refuses_the_write_that_passes_the_limit_and_every_later_one() {
    let tmp = tempfile::tempdir().unwrap();
    let far = Instant::now() + TIMEOUT;
    let (mut sink, tally) = Capped::new(tmp.path(), 10, far).unwrap();
    sink.write_all(b"0123456789").unwrap();
    let e = sink.write_all(b"x").unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::FileTooLarge);
    assert!(tally.over());
    assert_eq!(tally.most(), 11);
    // Emptied for another host: still refused.
    sink.truncate(0).unwrap();
    sink.rewind().unwrap();
    assert!(sink.write_all(b"a").is_err());

    // A deadline passed stops the writes too.
    let past = Instant::now() - Duration::from_millis(1);
    let (mut late, tally) = Capped::new(tmp.path(), 10, past).unwrap();
    assert_eq!(
        late.write_all(b"a").unwrap_err().kind(),
        io::ErrorKind::TimedOut
    );
    assert!(!tally.over());
}
