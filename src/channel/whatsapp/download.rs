//! Inbound media, streamed to disk and refused by the bytes that arrive.
//!
//! The size a sender announces is only a hint: the file is fetched with the
//! crate's streaming download (`Client::download_to_writer`, which decrypts
//! AES-CBC chunk by chunk and checks the HMAC over the whole file before it
//! reports success) into a [`Capped`] sink: an unnamed temporary file that
//! counts what is written and fails the write that would pass the kind's
//! limit, or the deadline. The crate stops reading the HTTP body at that
//! failure, so an oversized file costs at most the limit plus one read
//! chunk per media host, and never a whole file in memory. The temporary
//! file has no name (`O_TMPFILE` where the file system has it), so nothing
//! is left behind whatever happens; intake copies it into the chat's folder.
//!
//! A sender's `static_url` (meant for newsletter media) is ignored: a file
//! is only ever fetched from the hosts WhatsApp's server names.

use std::io::{self, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use whatsapp_rust::Client;
use whatsapp_rust::anyhow;
use whatsapp_rust::download::{DownloadWriter, Downloadable, MediaType};

use crate::media::human_size;
use crate::model::MediaData;

/// What a [`Capped`] sink saw, shared with the caller (the crate keeps the
/// sink itself on failure).
#[derive(Debug, Default)]
pub struct Tally {
    /// A write would have passed the limit.
    over: AtomicBool,
    /// The most bytes the file held or was asked to hold, over the limit
    /// included.
    most: AtomicU64,
}

impl Tally {
    pub fn over(&self) -> bool {
        self.over.load(Ordering::Relaxed)
    }

    pub fn most(&self) -> u64 {
        self.most.load(Ordering::Relaxed)
    }
}

/// A download sink that refuses to grow past `limit` bytes or past its
/// deadline. Once over the limit it refuses every later write too, so a
/// retry on another host stops at its first chunk.
pub struct Capped {
    file: std::fs::File,
    pos: u64,
    limit: u64,
    deadline: Instant,
    tally: Arc<Tally>,
}

impl Capped {
    /// A sink over an unnamed temporary file in `dir`.
    pub fn new(dir: &Path, limit: u64, deadline: Instant) -> io::Result<(Self, Arc<Tally>)> {
        std::fs::create_dir_all(dir)?;
        let file = tempfile::tempfile_in(dir)?;
        Ok(Self::over_file(file, limit, deadline))
    }

    fn over_file(file: std::fs::File, limit: u64, deadline: Instant) -> (Self, Arc<Tally>) {
        let tally = Arc::new(Tally::default());
        let sink = Self {
            file,
            pos: 0,
            limit,
            deadline,
            tally: tally.clone(),
        };
        (sink, tally)
    }

    /// The file, rewound.
    pub fn into_file(mut self) -> io::Result<std::fs::File> {
        self.file.rewind()?;
        Ok(self.file)
    }
}

impl Write for Capped {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let end = self.pos.saturating_add(buf.len() as u64);
        if self.tally.over() || end > self.limit {
            self.tally.over.store(true, Ordering::Relaxed);
            self.tally.most.fetch_max(end, Ordering::Relaxed);
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                format!("over the limit of {}", human_size(self.limit)),
            ));
        }
        if Instant::now() > self.deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the download took too long",
            ));
        }
        let n = self.file.write(buf)?;
        self.pos += n as u64;
        self.tally.most.fetch_max(self.pos, Ordering::Relaxed);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Seek for Capped {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.pos = self.file.seek(to)?;
        Ok(self.pos)
    }
}

impl DownloadWriter for Capped {
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
}

/// Where media comes from: the WhatsApp client, or a stand-in in tests.
pub trait Fetch: Send + Sync {
    /// Streams `part` into `sink`, decrypted and verified; the sink back on
    /// success.
    fn fetch<'a>(
        &'a self,
        part: &'a dyn Downloadable,
        sink: Capped,
    ) -> BoxFuture<'a, anyhow::Result<Capped>>;
}

impl Fetch for Client {
    fn fetch<'a>(
        &'a self,
        part: &'a dyn Downloadable,
        sink: Capped,
    ) -> BoxFuture<'a, anyhow::Result<Capped>> {
        Box::pin(self.download_to_writer(part, sink))
    }
}

/// A message's media part without its `static_url`, so the file is
/// fetched from WhatsApp's media hosts, never from an address the sender
/// wrote into the message.
struct HostsOnly<'a>(&'a dyn Downloadable);

impl Downloadable for HostsOnly<'_> {
    fn direct_path(&self) -> Option<&str> {
        self.0.direct_path()
    }
    fn media_key(&self) -> Option<&[u8]> {
        self.0.media_key()
    }
    fn file_enc_sha256(&self) -> Option<&[u8]> {
        self.0.file_enc_sha256()
    }
    fn file_sha256(&self) -> Option<&[u8]> {
        self.0.file_sha256()
    }
    fn file_length(&self) -> Option<u64> {
        self.0.file_length()
    }
    fn app_info(&self) -> MediaType {
        self.0.app_info()
    }
}

/// Why there is no file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missed {
    pub reason: String,
    /// Set when the file passed the limit: how many bytes had arrived
    /// when it was refused (more than the limit).
    pub over: Option<u64>,
}

impl Missed {
    fn because(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            over: None,
        }
    }
}

/// Downloads `part` into an unnamed temporary file in `tmp`, refusing it
/// as soon as more than `limit` bytes arrive, or after `timeout`.
pub async fn fetch_capped(
    fetch: &dyn Fetch,
    part: &dyn Downloadable,
    limit: u64,
    tmp: &Path,
    timeout: Duration,
) -> Result<MediaData, Missed> {
    let (sink, tally) = Capped::new(tmp, limit, Instant::now() + timeout)
        .map_err(|e| Missed::because(format!("no temporary file for the download: {e}")))?;
    let part = HostsOnly(part);
    let outcome = tokio::time::timeout(timeout, fetch.fetch(&part, sink)).await;
    if tally.over() {
        return Err(Missed {
            reason: format!(
                "not downloaded: it passed the limit of {} while downloading (PB_MEDIA_MAX_BYTES)",
                human_size(limit)
            ),
            over: Some(tally.most().max(limit + 1)),
        });
    }
    match outcome {
        Ok(Ok(sink)) => sink
            .into_file()
            .map(|f| MediaData::File(Arc::new(f)))
            .map_err(|e| Missed::because(format!("the downloaded file cannot be read: {e}"))),
        Ok(Err(e)) => Err(Missed::because(format!("download failed: {e}"))),
        Err(_) => Err(Missed::because(format!(
            "download took longer than {} s",
            timeout.as_secs()
        ))),
    }
}

#[cfg(test)]
mod tests;
