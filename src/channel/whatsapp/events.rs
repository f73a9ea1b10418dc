//! The client's events: the link state, receipts, and what the core hears.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use whatsapp_rust::prelude::*;

use super::{ChannelEvent, Ending, Pairing, WhatsAppChannel, convert, render_qr, status};
use crate::ids::MessageId;

impl WhatsAppChannel {
    pub(super) async fn on_event(&self, ev: &Event, client: Arc<Client>) {
        match ev {
            Event::Connected(_) => {
                self.set_pairing(None);
                self.shared
                    .linked
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                self.set_link(status(true, "whatsapp-connected", "connected"));
                let store = self.shared.store.clone();
                // Group names for `chats list`, without holding up events.
                tokio::spawn(async move {
                    match client.groups().get_participating().await {
                        Ok(groups) => {
                            for (jid, meta) in groups {
                                if let Ok(chat) = convert::chat_jid(&jid)
                                    && !meta.subject.is_empty()
                                {
                                    let _ = store.set_chat_name(&chat, &meta.subject).await;
                                }
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot list WhatsApp groups"),
                    }
                });
            }
            Event::Disconnected(d) => self.set_link(status(
                false,
                "whatsapp-reconnecting",
                format!("disconnected: {}", d.reason),
            )),
            // The crate shows QR codes beside a pairing code: one pairing
            // by phone number shows its code only.
            Event::PairingQrCode(_) if self.shared.by_phone.load(Ordering::SeqCst) => {
                tracing::debug!("a QR code while pairing by phone number; not shown")
            }
            Event::PairingQrCode(q) => {
                self.set_link(crate::channel::LinkStatus {
                    qr: Some(q.code.clone()),
                    ..status(
                        false,
                        "whatsapp-pairing",
                        "waiting for the QR code to be scanned",
                    )
                });
                self.set_pairing(Some(Pairing::Qr(q.code.clone())));
                let block = render_qr(&q.code).unwrap_or_default();
                tracing::info!(
                    "Scan this QR code with WhatsApp (Settings → Linked devices → Link a device); valid {} s:\n{block}\nQR code as text: {}",
                    q.timeout.as_secs(),
                    q.code
                );
            }
            Event::PairingCode(p) => {
                self.set_pairing(Some(Pairing::PhoneCode(p.code.clone())));
                self.set_link(crate::channel::LinkStatus {
                    pair_code: Some(p.code.clone()),
                    ..status(
                        false,
                        "whatsapp-pairing",
                        "waiting for the pairing code to be entered on the phone",
                    )
                });
                tracing::info!(
                    "Pairing code: {}  (WhatsApp → Linked devices → Link with phone number; valid {} s)",
                    p.code,
                    p.timeout.as_secs()
                );
            }
            // No code is coming: say so, and show the QR codes again.
            Event::PairingCodeError(e) => {
                self.shared.by_phone.store(false, Ordering::SeqCst);
                self.set_pairing(None);
                self.set_link(status(
                    false,
                    "whatsapp-pairing",
                    format!(
                        "WhatsApp gave no pairing code ({}); ask again, or scan the QR code",
                        e.error
                    ),
                ));
            }
            Event::PairSuccess(_) => {
                self.set_pairing(None);
                tracing::info!("paired with WhatsApp")
            }
            Event::PairingQrCodesExhausted(_) => self.end(Ending::QrExhausted),
            Event::LoggedOut(l) => {
                let message = format!("logged out ({:?})", l.reason);
                self.permanent("whatsapp-logged-out", message);
            }
            Event::TemporaryBan(b) => self.permanent(
                "whatsapp-banned",
                format!(
                    "temporarily banned ({:?}) for {} s",
                    b.code,
                    b.expire.num_seconds()
                ),
            ),
            Event::StreamReplaced(_) => self.permanent(
                "whatsapp-stream-replaced",
                "another client took over this session",
            ),
            Event::ClientOutdated(_) => {
                self.permanent("whatsapp-outdated", "WhatsApp says this client is outdated")
            }
            Event::ConnectFailure(f) => self.permanent(
                "whatsapp-connect-failed",
                format!(
                    "connect failure {:?}: {}",
                    f.reason,
                    f.message.as_deref().unwrap_or("no message")
                ),
            ),
            Event::Receipt(r) => {
                if let Some(receipt) = convert::receipt(r.r#type.clone()) {
                    for id in &r.message_ids {
                        self.report(ChannelEvent::Receipt {
                            id: MessageId::new(MessageId::base_of(id)),
                            receipt,
                        })
                        .await;
                    }
                }
            }
            Event::ServerAck(a) if a.class.as_deref().is_none_or(|c| c == "message") => {
                if let Some(code) = &a.error {
                    tracing::warn!(id = %a.id, %code, "WhatsApp refused a message");
                    self.report(ChannelEvent::Refused {
                        id: MessageId::new(MessageId::base_of(&a.id)),
                        reason: format!("refused by WhatsApp (code {code})"),
                    })
                    .await;
                }
            }
            _ => {}
        }
    }
}
