//! Inbound: each message committed to the bridge's store (its media
//! downloaded first) before WhatsApp is told it arrived.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use whatsapp_rust::anyhow;
use whatsapp_rust::prelude::*;

use super::{InboundSink, convert, download};
use crate::store::Store;

/// Commits inbound messages before WhatsApp is told they arrived.
pub(super) struct Hook {
    pub(super) sink: Arc<dyn InboundSink>,
    pub(super) store: Store,
    pub(super) limits: crate::media::MediaLimits,
    /// Where downloads are streamed to (unnamed temporary files).
    pub(super) tmp: PathBuf,
}

/// Where media downloads are streamed: the data folder (beside the device
/// store), private to the bridge; the files there have no names.
pub(super) fn media_tmp(device_db: &std::path::Path) -> PathBuf {
    device_db
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(|p| p.to_path_buf())
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Longest a media download may take before the message goes on without
/// it ("media not available", with the reason).
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(120);

/// Downloads a message's media, unless the sender announced a size over
/// the kind's limit (then intake refuses it by the announced size, and
/// nothing is fetched); a download is refused as soon as more than the
/// limit has arrived (then `bytes` becomes what had arrived, and intake
/// refuses it by that). A failure is the reason, never an error: the
/// message is kept without its file.
async fn download(
    fetch: &dyn download::Fetch,
    message: &wa::Message,
    media: &mut crate::model::InboundMedia,
    limits: &crate::media::MediaLimits,
    tmp: &std::path::Path,
) -> Result<(), String> {
    let Some((info, part)) = convert::media(message) else {
        return Ok(());
    };
    let limit = limits.of(info.kind);
    if info.bytes > limit {
        // Stand-in bytes are not fetched: intake sees the announced size.
        return Err(format!(
            "not downloaded: the sender announced {}, over the limit of {} (PB_MEDIA_MAX_BYTES)",
            crate::media::human_size(info.bytes),
            crate::media::human_size(limit)
        ));
    }
    match download::fetch_capped(fetch, part, limit, tmp, DOWNLOAD_TIMEOUT).await {
        Ok(data) => {
            media.data = Ok(data);
            Ok(())
        }
        Err(missed) => {
            if let Some(n) = missed.over {
                media.info.bytes = n;
            }
            Err(missed.reason)
        }
    }
}

impl Hook {
    /// Commits a batch; media of registered chats is downloaded first
    /// (through `fetch`), and nothing is downloaded for any other chat.
    pub(super) async fn commit(
        &self,
        fetch: &dyn download::Fetch,
        batch: &[InboundMessage],
    ) -> anyhow::Result<()> {
        for m in batch {
            match convert::inbound(&m.info, &m.message) {
                Ok(mut c) => {
                    self.store
                        .record_aliases(std::mem::take(&mut c.aliases))
                        .await
                        .map_err(|e| anyhow::anyhow!(e.to_string()))?;
                    if let Some(media) = c.inbound.media.as_mut() {
                        let registered = self
                            .store
                            .registered(&c.inbound.chat)
                            .await
                            .map_err(|e| anyhow::anyhow!(e.to_string()))?
                            .is_some();
                        let got = if registered {
                            download(fetch, &m.message, media, &self.limits, &self.tmp).await
                        } else {
                            tracing::debug!(id = %m.info.id, chat = %c.inbound.chat, kind = %media.info.kind, "media of an unregistered chat not downloaded");
                            Err("not downloaded: the chat is not registered".into())
                        };
                        if let Err(why) = got {
                            if registered {
                                tracing::warn!(id = %m.info.id, kind = %media.info.kind, error = %why, "media not downloaded; the message is kept without it");
                            }
                            media.data = Err(why);
                        }
                    }
                    self.sink
                        .accept(c.inbound)
                        .await
                        .map_err(|e| anyhow::anyhow!(e.to_string()))?;
                }
                Err(skip) => {
                    tracing::debug!(id = %m.info.id, ?skip, "WhatsApp message not passed on")
                }
            }
        }
        Ok(())
    }
}

#[whatsapp_rust::async_trait]
impl whatsapp_rust::InboundDurabilityHook for Hook {
    async fn on_messages(
        &self,
        client: Arc<Client>,
        batch: &[InboundMessage],
    ) -> anyhow::Result<()> {
        self.commit(client.as_ref(), batch).await
    }
}
