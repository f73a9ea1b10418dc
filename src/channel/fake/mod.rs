//! The fake channel: a stand-in for the other phone, driven over HTTP
//! (`/fake/*`, see [`routes`]).
//!
//! What it "received" lives in its own SQLite file beside the bridge's
//! database, so it survives bridge restarts the way a real phone would, and
//! a resend of an already received message id is ignored, the way WhatsApp
//! ignores a message id it has seen. `POST /fake/link` takes the link down
//! and up: while down, sends fail and replies wait in the outbox.
//! A new link (`POST /api/v1/whatsapp/link`) while it is down pairs the
//! way WhatsApp does, with made-up codes: a QR code's text, or for a phone
//! number the pairing code `FAKE` and the number's last four digits; the
//! link is up again on `POST /fake/link {"connected":true}` (the "phone"
//! entered it). `POST /fake/receipt` reports a delivery or read receipt, or a refusal,
//! the way WhatsApp's server does.

pub mod routes;

use std::path::Path;
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use rusqlite::{Connection, params};
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use super::whatsapp::{Pairing, Relink, RelinkRefused};
use super::{Channel, ChannelError, ChannelEvent, LinkStatus, Outgoing};
use crate::ids::{ChatJid, MessageId};

/// One message the fake phone received.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Received {
    pub seq: i64,
    pub chat: String,
    pub text: String,
    pub id: String,
    /// Unix milliseconds when it arrived.
    pub timestamp: i64,
    /// A file it carried (the text is then its caption).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media: Option<ReceivedMedia>,
}

/// A file the fake phone received: what it was, and a digest of its bytes.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ReceivedMedia {
    pub kind: String,
    pub mime: String,
    pub filename: String,
    pub bytes: u64,
    /// SHA-256 of the bytes, lower-case hex.
    pub sha256: String,
}

/// A pairing under way: its code, and the phone number it is for.
type FakePairing = (Pairing, Option<String>);

/// The fake channel; cheap to clone.
#[derive(Clone)]
pub struct FakeChannel {
    conn: Arc<Mutex<Connection>>,
    link: Arc<watch::Sender<LinkStatus>>,
    events: mpsc::Sender<ChannelEvent>,
    events_rx: Arc<Mutex<Option<mpsc::Receiver<ChannelEvent>>>>,
    /// The code to link with while pairing, and the number it is for.
    pairing: Arc<Mutex<Option<FakePairing>>>,
}

fn status(up: bool) -> LinkStatus {
    if up {
        LinkStatus {
            up,
            code: "fake-connected",
            message: "fake link is up".into(),
            qr: None,
            pair_code: None,
        }
    } else {
        LinkStatus {
            up,
            code: "fake-disconnected",
            message: "fake link is down (POST /fake/link)".into(),
            qr: None,
            pair_code: None,
        }
    }
}

impl FakeChannel {
    /// Opens (creating) the fake phone's store at `path`.
    pub fn open(path: &Path) -> rusqlite::Result<Self> {
        crate::owner_only::sqlite(path).map_err(|e| {
            rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                Some(format!("{}: {e}", path.display())),
            )
        })?;
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // A stand-in phone must outlive a bridge crash (kill -9), which the
        // page cache covers, not a power loss: no fsync. Synced, creating
        // the file cost seven fsyncs, most of the bridge's cold start.
        conn.pragma_update(None, "synchronous", "OFF")?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS received (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                chat TEXT NOT NULL, id TEXT NOT NULL UNIQUE, text TEXT NOT NULL, timestamp INTEGER NOT NULL,
                media TEXT)",
        )?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS reactions (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                chat TEXT NOT NULL, id TEXT NOT NULL, emoji TEXT NOT NULL)",
        )?;
        // A phone file from before media: add the column.
        let has_media: bool = conn.query_row(
            "SELECT COUNT(*) FROM pragma_table_info('received') WHERE name = 'media'",
            [],
            |r| r.get(0),
        )?;
        if !has_media {
            conn.execute_batch("ALTER TABLE received ADD COLUMN media TEXT")?;
        }
        let (events, rx) = super::event_stream();
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            link: Arc::new(watch::Sender::new(status(true))),
            events,
            events_rx: Arc::new(Mutex::new(Some(rx))),
            pairing: Arc::default(),
        })
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> rusqlite::Result<T> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || f(&conn.lock().unwrap_or_else(|p| p.into_inner())))
            .await
            .expect("fake channel store task panicked")
    }

    /// Everything received, in delivery order, optionally for one chat.
    pub async fn received(&self, chat: Option<ChatJid>) -> rusqlite::Result<Vec<Received>> {
        self.with(move |c| {
            let mut stmt = c.prepare(
                "SELECT seq, chat, text, id, timestamp, media FROM received WHERE ?1 IS NULL OR chat = ?1 ORDER BY seq",
            )?;
            stmt.query_map(params![chat.as_ref().map(ChatJid::as_str)], |r| {
                let media: Option<String> = r.get(5)?;
                Ok(Received {
                    seq: r.get(0)?,
                    chat: r.get(1)?,
                    text: r.get(2)?,
                    id: r.get(3)?,
                    timestamp: r.get(4)?,
                    media: media.and_then(|m| serde_json::from_str(&m).ok()),
                })
            })?
            .collect()
        })
        .await
    }

    /// Every reaction the bridge sent (`emoji` empty: taken back), in
    /// order, as `(chat, message id, emoji)`.
    pub async fn reactions(&self) -> rusqlite::Result<Vec<(String, String, String)>> {
        self.with(|c| {
            let mut stmt = c.prepare("SELECT chat, id, emoji FROM reactions ORDER BY seq")?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect()
        })
        .await
    }

    /// Forgets everything received.
    pub async fn clear(&self) -> rusqlite::Result<()> {
        self.with(|c| c.execute("DELETE FROM received", []).map(|_| ()))
            .await
    }

    /// The phone reports a receipt for a message it received, as WhatsApp
    /// would. Waits while the core is behind.
    pub async fn report(&self, event: ChannelEvent) {
        let _ = self.events.send(event).await;
    }

    /// Takes the link up or down (either ends a pairing).
    pub fn set_connected(&self, up: bool) {
        *self.pairing.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.link.send_replace(status(up));
        tracing::info!(code = status(up).code, "fake link changed");
    }
}

/// The fake pairing code for `phone`: clearly not WhatsApp's, and the same
/// for the same number.
pub fn fake_pair_code(phone: &str) -> String {
    let tail = &phone[phone.len().saturating_sub(4)..];
    format!("FAKE{tail:0>4}")
}

impl FakeChannel {
    /// The code to link with, while pairing.
    pub fn pairing(&self) -> Option<Pairing> {
        self.pairing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|(p, _)| p.clone())
    }

    /// A new link, as [`crate::channel::whatsapp::WhatsAppChannel::relink`]
    /// does it: refused while the link is up; while down, pairing starts
    /// (by QR code, or by code for `phone`); while pairing, another number
    /// switches to it, anything else changes nothing.
    pub fn relink(&self, phone: Option<String>) -> Result<Relink, RelinkRefused> {
        let mut pairing = self.pairing.lock().unwrap_or_else(|p| p.into_inner());
        let link = self.link.borrow().clone();
        if link.up {
            return Err(RelinkRefused::Active(link.code));
        }
        let how = match (&*pairing, &phone) {
            (None, _) => Relink::Started,
            (Some((_, was)), Some(p)) if was.as_ref() != Some(p) => Relink::Switched,
            (Some(_), _) => return Ok(Relink::AlreadyPairing),
        };
        let (code, status) = match &phone {
            Some(p) => {
                let code = fake_pair_code(p);
                let status = LinkStatus {
                    up: false,
                    code: "fake-pairing",
                    message: format!(
                        "waiting for pairing code {code} to be entered (POST /fake/link)"
                    ),
                    qr: None,
                    pair_code: Some(code.clone()),
                };
                (Pairing::PhoneCode(code), status)
            }
            None => {
                use rand::RngExt;
                let n: u64 = rand::rng().random();
                let code = format!("fake-qr:{n:016x}");
                let status = LinkStatus {
                    up: false,
                    code: "fake-pairing",
                    message: "waiting for the QR code to be scanned (POST /fake/link)".into(),
                    qr: Some(code.clone()),
                    pair_code: None,
                };
                (Pairing::Qr(code), status)
            }
        };
        *pairing = Some((code, phone));
        tracing::info!(message = %status.message, "fake link pairing");
        self.link.send_replace(status);
        Ok(how)
    }
}

impl Channel for FakeChannel {
    fn react<'a>(
        &'a self,
        chat: &'a ChatJid,
        id: &'a MessageId,
        _sender: &'a str,
        emoji: &'a str,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let (chat, id, emoji) = (chat.to_string(), id.to_string(), emoji.to_owned());
            let r = self
                .with(move |c| {
                    c.execute(
                        "INSERT INTO reactions (chat, id, emoji) VALUES (?1, ?2, ?3)",
                        params![chat, id, emoji],
                    )
                    .map(|_| ())
                })
                .await;
            if let Err(e) = r {
                tracing::warn!(error = %e, "fake phone: reaction not kept");
            }
        })
    }

    fn send<'a>(&'a self, msg: &'a Outgoing) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            if !self.link.borrow().up {
                return Err(ChannelError::Disconnected);
            }
            let (chat, id, text) = (msg.chat.to_string(), msg.id.to_string(), msg.text.clone());
            let media = msg.media.as_ref().map(|m| {
                use sha2::Digest;
                let digest = sha2::Sha256::digest(&m.data);
                let sha256: String = digest.iter().map(|b| format!("{b:02x}")).collect();
                serde_json::to_string(&ReceivedMedia {
                    kind: m.kind.to_string(),
                    mime: m.mime.clone(),
                    filename: m.filename.clone(),
                    bytes: m.data.len() as u64,
                    sha256,
                })
                .expect("serializes")
            });
            self.with(move |c| {
                c.execute(
                    "INSERT INTO received (chat, id, text, timestamp, media) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (id) DO NOTHING",
                    params![chat, id, text, crate::store::now_ms(), media],
                )
            })
            .await
            .map_err(|e| ChannelError::Transient(e.to_string()))?;
            Ok(())
        })
    }

    fn link(&self) -> watch::Receiver<LinkStatus> {
        self.link.subscribe()
    }

    fn take_events(&self) -> Option<mpsc::Receiver<ChannelEvent>> {
        self.events_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    fn new_message_id(&self) -> MessageId {
        use rand::RngExt;
        let n: u64 = rand::rng().random();
        MessageId::new(format!("FAKE{n:016X}"))
    }
}
