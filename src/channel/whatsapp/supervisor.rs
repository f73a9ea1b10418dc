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
    Permanent { code: &'static str, message: String },
    Unexpected,
}

/// What the supervisor does after an ending.
pub fn after(ending: &Ending) -> Step {
    match ending {
        Ending::QrExhausted => Step::Rebuild(Duration::from_secs(1)),
        Ending::Permanent { .. } => Step::Wait,
        Ending::Unexpected => Step::Rebuild(Duration::from_secs(10)),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Build a fresh client after this delay.
    Rebuild(Duration),
    /// Stay up, report, and wait for a restart.
    Wait,
}

impl WhatsAppChannel {
    /// Runs clients until `cancel`, rebuilding or waiting per [`after`].
    pub async fn supervise(self, sink: Arc<dyn InboundSink>, cancel: CancellationToken) {
        loop {
            *self.shared.ending.lock().unwrap_or_else(|p| p.into_inner()) = None;
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
            *self.shared.client.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle.client());
            let mut handle = handle;
            tokio::select! {
                _ = cancel.cancelled() => {
                    handle.shutdown().await;
                    *self.shared.client.lock().unwrap_or_else(|p| p.into_inner()) = None;
                    tracing::info!("WhatsApp client stopped");
                    return;
                }
                _ = &mut handle => {}
            }
            *self.shared.client.lock().unwrap_or_else(|p| p.into_inner()) = None;
            let ending = self
                .shared
                .ending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .unwrap_or(Ending::Unexpected);
            match after(&ending) {
                Step::Rebuild(delay) => {
                    if ending == Ending::QrExhausted {
                        tracing::info!("the pairing QR codes ran out; showing fresh ones");
                    } else {
                        self.set_link(status(
                            false,
                            "whatsapp-reconnecting",
                            "client stopped; starting a new one",
                        ));
                    }
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
                Step::Wait => {
                    tracing::error!(
                        ?ending,
                        "WhatsApp ended for good; not reconnecting. Re-pair (pocketbrain whatsapp logout, then restart) and restart the bridge."
                    );
                    cancel.cancelled().await;
                    return;
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
        if let Some(phone) = &opts.pair_phone {
            b = b.with_pair_code(whatsapp_rust::pair_code::PairCodeOptions {
                phone_number: phone.clone(),
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
