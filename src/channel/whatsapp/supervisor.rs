//! The supervisor: builds a client, runs it, and acts on how it ends;
//! and `whatsapp logout`'s unlinking.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use whatsapp_rust::anyhow;
use whatsapp_rust::prelude::*;

use super::inbound::{Hook, media_tmp};
use super::{InboundSink, WhatsAppChannel, convert, status};

/// How a client's run ended, as the supervisor sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    QrExhausted,
    Permanent {
        code: &'static str,
        message: String,
    },
    /// Connected, but nothing arrived for the configured silence: the
    /// supervisor stopped the client itself.
    Silent,
    /// Pairing, and a new link by phone number was asked for: the
    /// supervisor stopped the client to start one that pairs by code.
    Switched,
    Unexpected,
}

/// What the supervisor does after an ending. An unexpected end is rebuilt
/// after [`UNEXPECTED_FLOOR`] at the earliest ([`Pacer`] spaces repeated
/// ones further apart).
pub fn after(ending: &Ending) -> Step {
    match ending {
        Ending::QrExhausted | Ending::Silent => Step::Rebuild(Duration::from_secs(1)),
        Ending::Switched => Step::Rebuild(Duration::ZERO),
        Ending::Permanent { .. } => Step::Wait,
        Ending::Unexpected => Step::Rebuild(UNEXPECTED_FLOOR),
    }
}

/// The shortest wait before a client that ended unexpectedly is rebuilt.
pub const UNEXPECTED_FLOOR: Duration = Duration::from_secs(10);
/// The longest.
pub const UNEXPECTED_CEILING: Duration = Duration::from_secs(5 * 60);

/// Spaces rebuilds after unexpected ends: each wait at least the step's
/// own delay, doubling up to [`UNEXPECTED_CEILING`] while ends keep coming,
/// with up to as much again of random jitter on top (so several bridges do
/// not come back in step), and back to the floor once a client has been
/// connected.
pub struct Pacer(backon::ExponentialBackoff);

impl Default for Pacer {
    fn default() -> Self {
        use backon::BackoffBuilder;
        Self(
            backon::ExponentialBuilder::default()
                .with_min_delay(UNEXPECTED_FLOOR)
                .with_max_delay(UNEXPECTED_CEILING)
                .with_jitter()
                .without_max_times()
                .build(),
        )
    }
}

impl Pacer {
    /// The wait before the next rebuild after `step`'s delay was asked for:
    /// never shorter than that delay. `linked`: the client that ended had
    /// been connected, so the count starts again.
    pub fn wait(&mut self, step: Duration, ending: &Ending, linked: bool) -> Duration {
        if linked {
            *self = Self::default();
        }
        if *ending != Ending::Unexpected {
            return step;
        }
        self.0.next().unwrap_or(UNEXPECTED_CEILING).max(step)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Build a fresh client after this delay.
    Rebuild(Duration),
    /// Stay up, report, and wait for a new link to be asked for.
    Wait,
}

/// What a request for a new link did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relink {
    /// The link had ended for good: a new client is starting on a fresh
    /// device store, and shows a code to link with.
    Started,
    /// The link is pairing already: its code is the one to use.
    AlreadyPairing,
    /// The link was pairing (by QR code, or by another number): a new
    /// client is starting on the same, still unlinked, device store, and
    /// pairs by the phone number asked for.
    Switched,
}

/// Why a new link was not started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelinkRefused {
    /// The device is linked (or linking): a new link would throw that away.
    #[error(
        "the WhatsApp link has not ended ({0}): a new link is only started after a permanent end (logged out, banned, replaced); to link another account, stop the bridge and run `pocketbrain whatsapp logout`"
    )]
    Active(&'static str),
}

impl WhatsAppChannel {
    /// Asks the supervisor for a new link: after a permanent end it starts
    /// a client on a fresh device store (the old one is removed: its session
    /// has ended) and the client shows a code to link with, without a
    /// restart of the bridge. `phone` (digits with country code, see
    /// [`crate::config::parse_phone`]): the client pairs by code with that
    /// number; without, by QR code (or by `PB_WHATSAPP_PHONE` if set).
    ///
    /// While pairing already: without a phone number, or with the one it
    /// pairs with, nothing changes; with another number (or while it pairs
    /// by QR code) the pairing client is replaced by one that pairs with
    /// that number (the device store is kept: nothing is linked to it yet).
    /// While the link is up or being re-established, it is refused.
    pub fn relink(&self, phone: Option<String>) -> Result<Relink, RelinkRefused> {
        use std::sync::atomic::Ordering;
        if self.shared.waiting.swap(false, Ordering::SeqCst) {
            self.set_phone(phone.or_else(|| self.shared.opts.pair_phone.clone()));
            self.shared.relink.notify_one();
            return Ok(Relink::Started);
        }
        let code = self.shared.link.borrow().code;
        if code != "whatsapp-pairing" {
            return Err(RelinkRefused::Active(code));
        }
        match phone {
            // Another number, or the same again after its request failed.
            Some(p)
                if self.phone().as_ref() != Some(&p)
                    || !self.shared.by_phone.load(Ordering::SeqCst) =>
            {
                tracing::info!(
                    "pairing by phone number asked for; starting a client that pairs by code"
                );
                self.set_phone(Some(p.clone()));
                self.shared.by_phone.store(true, Ordering::SeqCst);
                self.set_pairing(None);
                self.set_link(status(
                    false,
                    "whatsapp-pairing",
                    format!("asking WhatsApp for a pairing code for +{p}"),
                ));
                // Wakes the supervisor's wait on the client it started
                // (none stored for later: a client built after this reads
                // the new number anyway).
                self.shared.switch.notify_waiters();
                Ok(Relink::Switched)
            }
            _ => Ok(Relink::AlreadyPairing),
        }
    }

    /// How the client's run ended. The crate sends the event that says why
    /// (logged out, QR codes exhausted) just before its run loop returns,
    /// and the event handler may still be on its way: it gets a moment.
    async fn ending(&self) -> Ending {
        let take = || {
            self.shared
                .ending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
        };
        for _ in 0..100 {
            if let Some(e) = take() {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        take().unwrap_or(Ending::Unexpected)
    }

    /// Runs clients until `cancel`, rebuilding or waiting per [`after`].
    pub async fn supervise(self, sink: Arc<dyn InboundSink>, cancel: CancellationToken) {
        let mut pacer = Pacer::default();
        loop {
            *self.shared.ending.lock().unwrap_or_else(|p| p.into_inner()) = None;
            self.shared
                .linked
                .store(false, std::sync::atomic::Ordering::SeqCst);
            // Listening before the number is read: a switch asked for
            // while the client is built still stops it.
            let switched = self.shared.switch.notified();
            tokio::pin!(switched);
            switched.as_mut().enable();
            let handle = match self.build(sink.clone()).await {
                Ok(bot) => bot.spawn(),
                Err(e) => {
                    self.set_link(status(
                        false,
                        "whatsapp-store-error",
                        format!("cannot open the device store: {e}"),
                    ));
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(30)) => continue,
                    }
                }
            };
            let client = handle.client();
            *self.shared.client.lock().unwrap_or_else(|p| p.into_inner()) = Some(client.clone());
            let mut handle = handle;
            tokio::select! {
                _ = cancel.cancelled() => {
                    handle.shutdown().await;
                    *self.shared.client.lock().unwrap_or_else(|p| p.into_inner()) = None;
                    tracing::info!("WhatsApp client stopped");
                    return;
                }
                _ = &mut handle => {}
                _ = &mut switched => {
                    stop(&client, &mut handle).await;
                    self.end(Ending::Switched);
                }
                quiet = self.silent(&client) => {
                    crate::metrics::link_restart("silent");
                    self.set_link(status(
                        false,
                        "whatsapp-silent",
                        format!(
                            "connected, but nothing arrived from WhatsApp for {} s; starting a new client",
                            quiet.as_secs()
                        ),
                    ));
                    stop(&client, &mut handle).await;
                    self.end(Ending::Silent);
                }
            }
            *self.shared.client.lock().unwrap_or_else(|p| p.into_inner()) = None;
            drop(client);
            let ending = self.ending().await;
            match after(&ending) {
                Step::Rebuild(step) => {
                    let linked = self.shared.linked.load(std::sync::atomic::Ordering::SeqCst);
                    let delay = pacer.wait(step, &ending, linked);
                    match ending {
                        Ending::QrExhausted => {
                            tracing::info!("the pairing QR codes ran out; showing fresh ones")
                        }
                        // The link state says why (`whatsapp-silent`, or
                        // the code asked for) until the new client reports.
                        Ending::Silent | Ending::Switched => {}
                        _ => self.set_link(status(
                            false,
                            "whatsapp-reconnecting",
                            "client stopped; starting a new one",
                        )),
                    }
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
                Step::Wait => {
                    // The link state (logged once, with its code) says why
                    // and what to do; no retry: retrying after a ban or an
                    // account lock prolongs it. `permanent` has already
                    // opened the door for a new link (`relink`), which may
                    // even have been asked for while the client wound down.
                    self.set_pairing(None);
                    loop {
                        tokio::select! {
                            _ = cancel.cancelled() => return,
                            _ = self.shared.relink.notified() => {}
                        }
                        crate::metrics::link_restart("relink");
                        tracing::info!(
                            "a new WhatsApp link was asked for; starting a client on a fresh device store"
                        );
                        match remove_device_store(&self.shared.opts.device_db) {
                            Ok(()) => break,
                            Err(e) => {
                                self.set_link(status(
                                    false,
                                    "whatsapp-store-error",
                                    format!("cannot remove the old device store: {e}"),
                                ));
                                self.shared
                                    .waiting
                                    .store(true, std::sync::atomic::Ordering::SeqCst);
                            }
                        }
                    }
                    self.set_link(status(false, "whatsapp-connecting", "starting a new link"));
                }
            }
        }
    }

    pub(super) async fn build(&self, sink: Arc<dyn InboundSink>) -> anyhow::Result<Bot> {
        let opts = &self.shared.opts;
        if let Some(dir) = opts.device_db.parent() {
            crate::owner_only::dir(dir)?;
        }
        // The device's keys: owner-only before the store writes them.
        crate::owner_only::sqlite(&opts.device_db)?;
        let backend = SqliteStore::new(&opts.device_db.to_string_lossy()).await?;
        let me = self.clone();
        let paired_sink = sink.clone();
        let hook = Hook {
            sink,
            store: self.shared.store.clone(),
            limits: opts.media_limits,
            tmp: media_tmp(&opts.device_db),
        };
        let mut b = Bot::builder()
            .with_backend(backend)
            .with_event_delivery(EventDelivery::Ordered { capacity: 1024 })
            .skip_history_sync()
            .with_inbound_durability_hook(hook)
            .on_event(move |ev, client| {
                let (me, sink) = (me.clone(), paired_sink.clone());
                async move {
                    if let Event::PairSuccess(p) = &*ev {
                        me.paired(p, sink.as_ref()).await;
                    }
                    me.on_event(&ev, client).await
                }
            });
        if let Some(t) = &opts.transport {
            b = b.with_transport_factory(DynTransport(t.clone()));
        }
        if let Some(h) = &opts.http {
            b = b.with_http_client(DynHttp(h.clone()));
        }
        let phone = self.phone();
        self.shared
            .by_phone
            .store(phone.is_some(), std::sync::atomic::Ordering::SeqCst);
        if let Some(phone) = phone {
            b = b.with_pair_code(whatsapp_rust::pair_code::PairCodeOptions {
                phone_number: phone,
                ..Default::default()
            });
        }
        Ok(b.build().await?)
    }

    /// The phone linked this device: tell the core whose account it is
    /// (its own "Message yourself" chat, and that chat's LID).
    pub(super) async fn paired(
        &self,
        p: &whatsapp_rust::types::events::PairSuccess,
        sink: &dyn InboundSink,
    ) {
        match convert::chat_jid(&p.id) {
            Ok(own) => {
                let lid = convert::chat_jid(&p.lid).ok().filter(|l| *l != own);
                sink.paired(own, lid).await;
            }
            Err(e) => tracing::warn!(?e, "paired, but the account's JID is not understood"),
        }
    }
}

/// Stops a client that will not stop by itself: asks it to disconnect and
/// waits a little, then aborts it (a client stuck in a silent handshake
/// only notices a disconnect after its own 20 s deadline).
async fn stop(client: &Arc<Client>, handle: &mut BotHandle) {
    let bounded = Duration::from_secs(5);
    let _ = tokio::time::timeout(bounded, client.disconnect()).await;
    if tokio::time::timeout(bounded, &mut *handle).await.is_err() {
        handle.abort();
    }
}

/// Removes the device store at `db` (and SQLite's side files), so the next
/// client starts unlinked.
pub(super) fn remove_device_store(db: &std::path::Path) -> std::io::Result<()> {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let f = std::path::PathBuf::from(format!("{}{suffix}", db.display()));
        match std::fs::remove_file(&f) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// Connects with the device store at `db` and unlinks the device (used by
/// `pocketbrain whatsapp logout`). Fails if it cannot connect within `wait`.
pub async fn unlink(db: &std::path::Path, wait: Duration) -> anyhow::Result<()> {
    let backend = SqliteStore::new(&db.to_string_lossy()).await?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<bool>(4);
    let bot = Bot::builder()
        .with_backend(backend)
        .skip_history_sync()
        .on_event(move |ev, _client| {
            let tx = tx.clone();
            async move {
                match &*ev {
                    Event::Connected(_) => {
                        let _ = tx.send(true).await;
                    }
                    Event::PairingQrCode(_) | Event::LoggedOut(_) => {
                        let _ = tx.send(false).await;
                    }
                    _ => {}
                }
            }
        })
        .build()
        .await?;
    let handle = bot.spawn();
    let client = handle.client();
    let outcome = tokio::time::timeout(wait, rx.recv()).await;
    let result = match outcome {
        Ok(Some(true)) => {
            client.logout().await;
            Ok(())
        }
        Ok(Some(false)) => Err(anyhow::anyhow!(
            "this device is not paired (or already logged out)"
        )),
        _ => Err(anyhow::anyhow!(
            "no connection to WhatsApp within {} s",
            wait.as_secs()
        )),
    };
    handle.shutdown().await;
    result
}

struct DynTransport(Arc<dyn whatsapp_rust::transport::TransportFactory>);

#[whatsapp_rust::async_trait]
impl whatsapp_rust::transport::TransportFactory for DynTransport {
    async fn create_transport(
        &self,
    ) -> Result<
        (
            Arc<dyn whatsapp_rust::transport::Transport>,
            whatsapp_rust::async_channel::Receiver<whatsapp_rust::transport::TransportEvent>,
        ),
        anyhow::Error,
    > {
        self.0.create_transport().await
    }
}

struct DynHttp(Arc<dyn whatsapp_rust::http::HttpClient>);

#[whatsapp_rust::async_trait]
impl whatsapp_rust::http::HttpClient for DynHttp {
    async fn execute(
        &self,
        request: whatsapp_rust::http::HttpRequest,
    ) -> anyhow::Result<whatsapp_rust::http::HttpResponse> {
        self.0.execute(request).await
    }

    fn supports_streaming(&self) -> bool {
        self.0.supports_streaming()
    }

    fn execute_streaming(
        &self,
        request: whatsapp_rust::http::HttpRequest,
    ) -> anyhow::Result<whatsapp_rust::wacore::net::StreamingHttpResponse> {
        self.0.execute_streaming(request)
    }

    fn supports_upload_streaming(&self) -> bool {
        self.0.supports_upload_streaming()
    }

    fn execute_upload(
        &self,
        request: whatsapp_rust::http::HttpRequest,
        body: whatsapp_rust::wacore::net::UploadBody,
        content_length: u64,
    ) -> anyhow::Result<whatsapp_rust::http::HttpResponse> {
        self.0.execute_upload(request, body, content_length)
    }
}
