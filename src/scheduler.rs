//! The scheduler: fires tasks on time, through the per-chat queue.
//!
//! Design notes. There is no polling tick. The loop claims whatever is due,
//! then sleeps until the next due time, or until it is told that tasks
//! changed (a tool call, the CLI through `POST /tasks/changed`), whichever
//! comes first; a long sleep is capped at a few minutes only as a safety
//! net against a missed wake-up. Claiming happens in one transaction per
//! pass: the task's next run is advanced (or the task completed) and a
//! `queued` run record is written together, guarded by the old due time, so
//! a due time fires once even if two passes race. The run itself goes
//! through the chat's queue (never overlapping the chat's conversation) and
//! is carried out by the bridge.
//!
//! Time comes from a [`Clock`], so tests drive the loop with tokio's paused
//! clock: wall time there is a fixed start plus tokio's virtual elapsed time.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::ids::ChatJid;
use crate::schedule::{Schedule, ScheduleError};
use crate::store::Store;
use crate::store::tasks::{self, Claim, Task};

/// Longest sleep without a wake-up (a safety net, not a tick).
const MAX_SLEEP: Duration = Duration::from_secs(300);

/// Wall-clock time for the scheduler.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The system's clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Wall time as `start` plus tokio's elapsed time (virtual under a paused clock).
pub struct TokioClock {
    start: DateTime<Utc>,
    at: tokio::time::Instant,
}

impl TokioClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            start,
            at: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        self.start + chrono::Duration::from_std(self.at.elapsed()).unwrap_or_default()
    }
}

/// Hands a claimed run to the chat's queue.
pub type Dispatch = Arc<dyn Fn(&ChatJid) + Send + Sync>;

pub struct Scheduler {
    store: Store,
    wake: Arc<Notify>,
    clock: Arc<dyn Clock>,
    dispatch: Dispatch,
}

impl Scheduler {
    pub fn new(store: Store, wake: Arc<Notify>, clock: Arc<dyn Clock>, dispatch: Dispatch) -> Self {
        Self {
            store,
            wake,
            clock,
            dispatch,
        }
    }

    /// Claims and dispatches until `cancel`.
    pub async fn run(self, cancel: CancellationToken) {
        loop {
            let sleep_for = match self.pass().await {
                Ok(Some(next)) => (next - self.clock.now())
                    .to_std()
                    .unwrap_or(Duration::ZERO)
                    .min(MAX_SLEEP),
                Ok(None) => MAX_SLEEP,
                Err(e) => {
                    tracing::error!(error = %e, "scheduler pass failed; retrying shortly");
                    Duration::from_secs(1)
                }
            };
            if sleep_for.is_zero() {
                continue;
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(sleep_for) => {}
            }
        }
    }

    /// One pass: claim what is due, dispatch it; returns the next due time.
    pub async fn pass(&self) -> crate::store::Result<Option<DateTime<Utc>>> {
        let now = self.clock.now();
        let (claims, next) = self
            .store
            .tx(move |tx| {
                let claims =
                    tasks::claim_due(tx, now.timestamp_millis(), |t, due| next_run(t, due, now))?;
                let next = tasks::next_due(tx)?.and_then(|t| t.next_run);
                Ok((claims, next))
            })
            .await?;
        for claim in claims {
            match claim {
                Claim::Queued {
                    task_id,
                    chat,
                    due_at,
                } => {
                    let late_ms = now.timestamp_millis() - due_at;
                    tracing::info!(task = %task_id, chat = %chat, late_ms, "task due; queued");
                    crate::metrics::scheduled_run(std::time::Duration::from_millis(
                        late_ms.max(0) as u64
                    ));
                    (self.dispatch)(&chat);
                }
                Claim::Paused { task_id, reason } => {
                    tracing::warn!(task = %task_id, %reason, "task paused");
                }
            }
        }
        Ok(next.and_then(DateTime::from_timestamp_millis))
    }
}

/// A task's next run (Unix ms) after its run due at `due_at`, dispatched at
/// `now` (runs missed during downtime are skipped); `None` when the task is
/// done, `Err` when its stored schedule no longer parses.
fn next_run(t: &Task, due_at: i64, now: DateTime<Utc>) -> Result<Option<i64>, String> {
    let tz: chrono_tz::Tz = t.tz.parse().unwrap_or(chrono_tz::Tz::UTC);
    let schedule: Schedule = format!("{}:{}", t.schedule_type, t.schedule_value)
        .parse()
        .map_err(|e: ScheduleError| e.to_string())?;
    let due_time = DateTime::from_timestamp_millis(due_at).unwrap_or(now);
    Ok(schedule
        .next_after(tz, due_time, now)
        .map(|n| n.timestamp_millis()))
}

#[cfg(test)]
mod tests;
