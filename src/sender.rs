//! The sender: delivers outbox rows through the channel, in order per chat,
//! and records each result on its row.
//!
//! A row that fails for a passing reason blocks only its own chat (order is
//! kept) and is tried again with backoff, or as soon as the link comes back.
//! A row the channel refuses for good is marked failed with the reason and
//! no longer blocks its chat. Rows are read from the store on every pass, so
//! anything left by a crash goes out after a restart: the id chosen before
//! the first attempt lets the channel drop a duplicate.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use backon::BackoffBuilder;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::channel::{Channel, ChannelError, Outgoing};
use crate::store::Store;

/// Runs until `cancel`. `wake` is notified whenever rows are added.
pub async fn run(
    store: Store,
    channel: Arc<dyn Channel>,
    wake: Arc<Notify>,
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
    loop {
        let retry_in = match deliver_pending(&store, channel.as_ref()).await {
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

/// One pass over the pending rows. `Ok(None)`: all delivered.
/// `Ok(Some(hint))`: something must be retried (after `hint` if the channel
/// said when).
async fn deliver_pending(
    store: &Store,
    channel: &dyn Channel,
) -> crate::store::Result<Option<Option<Duration>>> {
    let rows = store.outbox_pending().await?;
    if rows.is_empty() {
        return Ok(None);
    }
    if !channel.link().borrow().up {
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
        let msg = Outgoing {
            chat: row.chat.clone(),
            id: row.id.clone(),
            text: row.text.clone(),
        };
        match channel.send(&msg).await {
            Ok(()) => {
                store.outbox_record(row.seq, Ok(())).await?;
                tracing::info!(chat = %row.chat, id = %row.id, seq = row.seq, "delivered");
            }
            Err(e) if e.is_permanent() => {
                tracing::error!(chat = %row.chat, id = %row.id, error = %e, "message refused by channel; marked failed");
                store
                    .outbox_record(row.seq, Err((e.to_string(), true)))
                    .await?;
            }
            Err(e) => {
                tracing::warn!(chat = %row.chat, id = %row.id, error = %e, "delivery failed; will retry");
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
mod tests {
    use super::*;

    #[test]
    fn the_retry_hint_does_not_depend_on_row_order() {
        let s = Duration::from_secs;
        assert_eq!(merge_retry(None, Some(s(30))), Some(s(30)));
        assert_eq!(merge_retry(Some(Some(s(30))), Some(s(5))), Some(s(5)));
        assert_eq!(merge_retry(Some(Some(s(30))), None), None);
        assert_eq!(merge_retry(Some(None), Some(s(30))), None);
    }
}
