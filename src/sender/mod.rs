//! The sender: delivers outbox rows through the channel, in order per chat,
//! and records each result on its row.
//!
//! A row that fails for a passing reason blocks only its own chat (order is
//! kept) and is tried again with backoff, or as soon as the link comes back.
//! A row the channel refuses for good, or one that has kept failing for
//! [`GIVE_UP_AFTER`] while the link was up, is marked failed with the reason
//! and no longer blocks its chat. Waiting for the link or for a rate limit
//! never counts towards giving up. Rows are read from the store on every pass, so
//! anything left by a crash goes out after a restart: the id chosen before
//! the first attempt lets the channel drop a duplicate.
//!
//! Policy is here, not in the channels: a row whose chat is no longer
//! registered is never sent (it is marked failed), and what a channel reports
//! about sent messages ([`ChannelEvent`]: receipts, refusals) is applied to
//! the outbox by [`apply_events`]. States only move forward:
//! sent → delivered → read.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use backon::BackoffBuilder;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::channel::{Channel, ChannelError, ChannelEvent, Outgoing, OutgoingMedia, Receipt};
use crate::media::MediaLimits;
use crate::model::OutboxState;
use crate::store::Store;

/// How long a row may keep failing for passing reasons, with the link up,
/// before it is marked failed so that its chat's later messages can go out.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(15 * 60);

/// When each row began failing for passing reasons (this process's view: a
/// restart gives every row a fresh allowance).
#[derive(Default)]
struct Failing(HashMap<i64, tokio::time::Instant>);

impl Failing {
    /// Notes a passing failure of row `seq`; true when it is time to give up.
    /// A rate limit neither counts nor resets; a lost link resets.
    fn note(&mut self, seq: i64) -> bool {
        let now = tokio::time::Instant::now();
        now.duration_since(*self.0.entry(seq).or_insert(now)) >= GIVE_UP_AFTER
    }
    fn clear(&mut self, seq: i64) {
        self.0.remove(&seq);
    }
}

/// Which chats' rows a sender delivers: a bridge runs one sender per
/// channel, so a channel whose link is down holds up only its own chats.
pub type Scope = fn(&crate::ids::ChatJid) -> bool;

/// Every chat.
pub fn all_chats(_: &crate::ids::ChatJid) -> bool {
    true
}

/// Runs until `cancel`, delivering the rows of the chats in `scope`.
/// `wake` is notified whenever rows are added. Files to send are read
/// from the chats' folders under `workspace`.
pub async fn run(
    store: Store,
    channel: Arc<dyn Channel>,
    scope: Scope,
    wake: Arc<Notify>,
    workspace: PathBuf,
    limits: MediaLimits,
    cancel: CancellationToken,
) {
    let mut link = channel.link();
    let fresh_backoff = || {
        backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(500))
            .with_max_delay(Duration::from_secs(60))
            .with_jitter()
            .without_max_times()
            .build()
    };
    let mut backoff = fresh_backoff();
    let mut failing = Failing::default();
    let files = (workspace, limits);
    loop {
        // Cancellable mid-pass: a row sent but not yet recorded goes again
        // after a restart, under the same id, which the channel drops.
        let pass = tokio::select! {
            _ = cancel.cancelled() => return,
            pass = deliver_pending(&store, channel.as_ref(), scope, &mut failing, &files) => pass,
        };
        let retry_in = match pass {
            Ok(None) => {
                backoff = fresh_backoff();
                None
            }
            Ok(Some(hint)) => {
                Some(hint.unwrap_or_else(|| backoff.next().unwrap_or(Duration::from_secs(60))))
            }
            Err(e) => {
                tracing::error!(error = %e, "outbox read failed");
                Some(Duration::from_secs(1))
            }
        };
        let sleep = async {
            match retry_in {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = wake.notified() => {}
            r = link.changed() => if r.is_err() { return },
            _ = sleep => {}
        }
    }
}

/// Applies the channel's reports to the outbox until the stream ends or
/// `cancel`.
pub async fn apply_events(
    store: Store,
    mut events: tokio::sync::mpsc::Receiver<ChannelEvent>,
    cancel: CancellationToken,
) {
    loop {
        let event = tokio::select! {
            _ = cancel.cancelled() => return,
            e = events.recv() => match e {
                Some(e) => e,
                None => return,
            },
        };
        if let Err(e) = apply_event(&store, &event).await {
            tracing::error!(error = %e, ?event, "cannot record a channel report");
        }
    }
}

/// Applies one report; returns whether an outbox row changed.
pub async fn apply_event(store: &Store, event: &ChannelEvent) -> crate::store::Result<bool> {
    match event {
        ChannelEvent::Receipt { id, receipt } => {
            let state = match receipt {
                Receipt::Delivered => OutboxState::Delivered,
                Receipt::Read => OutboxState::Read,
            };
            store.outbox_receipt(id.as_str(), state).await
        }
        ChannelEvent::Refused { id, reason } => {
            tracing::warn!(id = %id, %reason, "the channel refused a sent message; marked failed");
            store.outbox_refused(id.as_str(), reason).await
        }
    }
}

/// One pass over the pending rows. `Ok(None)`: all delivered.
/// `Ok(Some(hint))`: something must be retried (after `hint` if the channel
/// said when).
async fn deliver_pending(
    store: &Store,
    channel: &dyn Channel,
    scope: Scope,
    failing: &mut Failing,
    files: &(PathBuf, MediaLimits),
) -> crate::store::Result<Option<Option<Duration>>> {
    let mut rows = store.outbox_pending().await?;
    rows.retain(|r| scope(&r.chat));
    // Rows that left the pending set some other way (a receipt, a nack).
    failing
        .0
        .retain(|seq, _| rows.iter().any(|r| r.seq == *seq));
    if rows.is_empty() {
        return Ok(None);
    }
    if !channel.link().borrow().up {
        // Failures while the link was up start over once it is back.
        failing.0.clear();
        // Wait for the link to come back (the caller watches it), with a
        // slow safety retry in case a change is missed.
        return Ok(Some(Some(Duration::from_secs(30))));
    }
    let mut blocked = HashSet::new();
    let mut retry: Option<Option<Duration>> = None;
    for row in rows {
        if blocked.contains(&row.chat) {
            continue;
        }
        // Never start a conversation with a chat that is not registered
        // (it may have been unregistered after the row was queued).
        if !row.registered {
            tracing::warn!(chat = %row.chat, id = %row.id, "chat is not registered; message not sent, marked failed");
            let reason = format!("{} is not a registered chat", row.chat);
            crate::metrics::message_out("unregistered");
            store.outbox_record(row.seq, Err((reason, true))).await?;
            continue;
        }
        let media = match (&row.media, &row.folder) {
            (None, _) => None,
            (Some(m), folder) => match read_file(&files.0, folder.as_ref(), m, &files.1).await {
                Ok(media) => Some(media),
                Err(why) => {
                    // Gone, replaced by a symlink, grown too large: it can
                    // never be sent as it was asked for.
                    crate::metrics::message_out("failed");
                    tracing::error!(chat = %row.chat, id = %row.id, path = %m.path, error = %why, "file to send unreadable; marked failed");
                    store.outbox_record(row.seq, Err((why, true))).await?;
                    continue;
                }
            },
        };
        let msg = Outgoing {
            chat: row.chat.clone(),
            id: row.id.clone(),
            text: row.text.clone(),
            media,
        };
        let result = channel.send(&msg).await;
        let give_up = match &result {
            Err(ChannelError::Transient(_)) => failing.note(row.seq),
            Err(ChannelError::RetryAfter(_)) => false,
            _ => {
                failing.clear(row.seq);
                false
            }
        };
        match result {
            Ok(()) => {
                crate::metrics::message_out("sent");
                crate::stage!("sent", row.chat);
                store.outbox_record(row.seq, Ok(())).await?;
                crate::stage!("delivered", row.chat);
                tracing::info!(chat = %row.chat, id = %row.id, seq = row.seq, "delivered");
            }
            Err(e) if e.is_permanent() => {
                crate::metrics::message_out("failed");
                tracing::error!(chat = %row.chat, id = %row.id, error = %e, "message refused by channel; marked failed");
                store
                    .outbox_record(row.seq, Err((e.to_string(), true)))
                    .await?;
            }
            Err(e) if give_up => {
                crate::metrics::message_out("failed");
                failing.clear(row.seq);
                let reason = format!(
                    "gave up after {} min of failures: {e}",
                    GIVE_UP_AFTER.as_secs() / 60
                );
                tracing::error!(chat = %row.chat, id = %row.id, error = %e, "message kept failing; marked failed");
                store.outbox_record(row.seq, Err((reason, true))).await?;
            }
            Err(e) => {
                crate::metrics::message_out("retry");
                if let ChannelError::RetryAfter(_) = e {
                    tracing::info!(chat = %row.chat, id = %row.id, error = %e, "delivery deferred");
                } else {
                    tracing::warn!(chat = %row.chat, id = %row.id, error = %e, "delivery failed; will retry");
                }
                store
                    .outbox_record(row.seq, Err((e.to_string(), false)))
                    .await?;
                blocked.insert(row.chat);
                let hint = match e {
                    ChannelError::RetryAfter(d) => Some(d),
                    ChannelError::Disconnected => Some(Duration::from_secs(30)),
                    _ => None,
                };
                retry = Some(merge_retry(retry, hint));
            }
        }
    }
    Ok(retry)
}

/// Reads a file to send from its chat's folder, again through
/// [`crate::media::read_in`] (it may have changed since the tool call).
async fn read_file(
    workspace: &Path,
    folder: Option<&crate::ids::Folder>,
    m: &crate::model::OutboxMedia,
    limits: &MediaLimits,
) -> Result<OutgoingMedia, String> {
    let folder = folder.ok_or("the chat has no folder")?;
    let dir = workspace.join("chats").join(folder.as_str());
    let (path, max) = (m.path.clone(), limits.of(m.kind));
    let data = tokio::task::spawn_blocking(move || crate::media::read_in(&dir, &path, max))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot send the file: {e}"))?;
    Ok(OutgoingMedia {
        kind: m.kind,
        mime: m.mime.clone(),
        filename: m.filename.clone(),
        data: data.into(),
    })
}

/// Folds one failure's retry hint into the pass's: the earliest hint wins,
/// and a failure without a hint (retry on the backoff) wins over any hint,
/// whatever the order of the rows.
fn merge_retry(so_far: Option<Option<Duration>>, hint: Option<Duration>) -> Option<Duration> {
    match (so_far, hint) {
        (None, h) => h,
        (Some(None), _) | (_, None) => None,
        (Some(Some(a)), Some(b)) => Some(a.min(b)),
    }
}

#[cfg(test)]
mod tests;
