//! The silence watchdog: a link reported connected that receives nothing.
//!
//! The crate's keepalive already drops a socket that stays silent 20 s
//! after a send, and a handshake nobody answers; this is the bridge's own
//! backstop, independent of how the crate's connection state could be
//! wedged. On a healthy link the server sends a frame at least every 15 to
//! 50 s (a message, a receipt, or the answer to the crate's keepalive ping
//! on an idle link), so a link that is "connected" but has received no
//! frame for `PB_WHATSAPP_SILENCE` is dead: the supervisor stops that client
//! and starts a fresh one (`whatsapp-silent`, counted in
//! `link_restarts_total{reason="silent"}`).
//!
//! Time is tokio's, so tests run it on a paused clock.

use std::time::Duration;

use tokio::time::Instant;
use whatsapp_rust::prelude::*;

use super::WhatsAppChannel;

/// Counts how long the link has been up without a frame arriving.
#[derive(Debug)]
pub(super) struct Quiet {
    frames: u64,
    since: Instant,
}

impl Quiet {
    pub(super) fn new(frames: u64, now: Instant) -> Self {
        Self { frames, since: now }
    }

    /// Takes a reading: the count of frames received so far and whether the
    /// link is up. Returns how long it has been silent while up; any frame,
    /// or the link being down (the crate is reconnecting or pairing), starts
    /// the count again.
    pub(super) fn observe(&mut self, frames: u64, up: bool, now: Instant) -> Duration {
        if frames != self.frames || !up {
            self.frames = frames;
            self.since = now;
        }
        now.duration_since(self.since)
    }
}

impl WhatsAppChannel {
    /// Returns once `client`'s link has been up for the configured silence
    /// without a frame from the server; never otherwise.
    pub(super) async fn silent(&self, client: &Client) -> Duration {
        let silence = self.shared.opts.silence;
        let tick = (silence / 6).max(Duration::from_millis(100));
        let mut quiet = Quiet::new(client.stats().frames_received, Instant::now());
        loop {
            tokio::time::sleep(tick).await;
            let up = self.shared.link.borrow().up;
            let quiet_for = quiet.observe(client.stats().frames_received, up, Instant::now());
            if quiet_for >= silence {
                return quiet_for;
            }
        }
    }
}
