//! The per-chat queue: one run per chat at a time, a bounded number of chats
//! at once, fairly.
//!
//! Design notes. Each chat is a small state machine (idle → queued → running
//! → idle, with waiting-for-retry and parked on the side). Chats ready to run
//! wait in one FIFO; the dispatcher starts them while fewer than `cap` are
//! running. A chat that gets new messages while it runs is marked dirty and,
//! when its run ends, goes to the *back* of the FIFO: a busy chat cannot
//! starve the others, and every message lands in exactly one run because a
//! run takes what is after the chat's cursor when it starts.
//!
//! A failed run is retried with capped exponential backoff (`backon`'s
//! exponential schedule: base, doubling, up to `attempts` tries); after the
//! last it is parked with its reason until the chat's next message. The
//! queue never runs a chat's work itself: it calls a [`Worker`], so the
//! policy is tested here with a fake one under tokio's paused clock.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::BackoffBuilder;
use futures_util::future::BoxFuture;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::ids::ChatJid;

/// How one run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Finished (answered, or nothing to do).
    Done,
    /// Failed before anything reached the user; retrying may help.
    Retry(String),
    /// Failed in a way retrying will not fix.
    Park(String),
    /// The agent server could not be reached: not this run's fault, so it
    /// never parks the chat. Retried like `Retry`, but the delay stops
    /// growing at the last retry's, until the server is back.
    Outage(String),
}

/// Does a chat's work; the bridge implements it, tests fake it.
pub trait Worker: Send + Sync + 'static {
    /// One run for `chat`. `attempt` is 1 for a first try.
    fn run(&self, chat: ChatJid, attempt: u32) -> BoxFuture<'static, Outcome>;
    /// The chat was parked after `attempts` tries (persist it for status).
    fn parked(&self, chat: ChatJid, attempts: u32, reason: String) -> BoxFuture<'static, ()>;
}

/// Why a chat is woken. Only a person's message releases a parked chat:
/// a due task or leftover work waits until then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// A person wrote in the chat.
    Message,
    /// One of the chat's scheduled tasks is due.
    TaskDue,
    /// The chat has more work (left from a restart, or queued behind a run).
    MoreWork,
}

/// Retry schedule for failed runs.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub base: Duration,
    pub max_delay: Duration,
    /// Total tries, the first included.
    pub attempts: u32,
}

impl RetryPolicy {
    /// Delay before try `failures + 1`, after `failures` failed tries.
    pub fn delay(&self, failures: u32) -> Duration {
        backon::ExponentialBuilder::default()
            .with_min_delay(self.base)
            .with_max_delay(self.max_delay)
            .with_factor(2.0)
            .without_max_times()
            .build()
            .nth(failures.saturating_sub(1) as usize)
            .unwrap_or(self.max_delay)
    }
}

/// Where a chat is, as status shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ChatPhase {
    Queued,
    Running,
    WaitingRetry {
        attempt: u32,
        in_ms: u64,
        last_error: String,
    },
    Parked {
        attempts: u32,
        reason: String,
    },
}

#[derive(Debug)]
enum Phase {
    Queued,
    Running,
    Waiting(Instant, String),
    Parked(String),
}

#[derive(Debug)]
struct ChatState {
    phase: Phase,
    dirty: bool,
    failures: u32,
}

#[derive(Default)]
struct State {
    chats: HashMap<ChatJid, ChatState>,
    ready: VecDeque<ChatJid>,
    running: usize,
}

struct Inner {
    state: Mutex<State>,
    wake: Notify,
    cap: usize,
    retry: RetryPolicy,
}

/// Handle to the queue; cheap to clone.
#[derive(Clone)]
pub struct ChatQueue {
    inner: Arc<Inner>,
}

impl ChatQueue {
    pub fn new(cap: usize, retry: RetryPolicy) -> Self {
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                wake: Notify::new(),
                cap: cap.max(1),
                retry,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Says `chat` may have work; see [`Wake`] for what releases a parked chat.
    pub fn notify(&self, chat: &ChatJid, why: Wake) {
        let mut st = self.lock();
        let State { chats, ready, .. } = &mut *st;
        match chats.get_mut(chat) {
            None => {
                chats.insert(
                    chat.clone(),
                    ChatState {
                        phase: Phase::Queued,
                        dirty: false,
                        failures: 0,
                    },
                );
                ready.push_back(chat.clone());
            }
            Some(c) => match c.phase {
                Phase::Queued | Phase::Waiting(..) => {}
                Phase::Running => c.dirty = true,
                Phase::Parked(_) if why == Wake::Message => {
                    c.phase = Phase::Queued;
                    c.failures = 0;
                    ready.push_back(chat.clone());
                }
                Phase::Parked(_) => {}
            },
        }
        drop(st);
        self.inner.wake.notify_one();
    }

    /// Puts `chat` back in the parked state it had before a restart (its
    /// next message releases it). A chat the queue already knows is left alone.
    pub fn restore_parked(&self, chat: &ChatJid, attempts: u32, reason: String) {
        self.lock().chats.entry(chat.clone()).or_insert(ChatState {
            phase: Phase::Parked(reason),
            dirty: false,
            failures: attempts,
        });
    }

    /// Every chat that is not idle.
    pub fn snapshot(&self) -> Vec<(ChatJid, ChatPhase)> {
        let st = self.lock();
        let now = Instant::now();
        let mut out: Vec<_> = st
            .chats
            .iter()
            .map(|(jid, c)| {
                let phase = match &c.phase {
                    Phase::Queued => ChatPhase::Queued,
                    Phase::Running => ChatPhase::Running,
                    Phase::Waiting(at, e) => ChatPhase::WaitingRetry {
                        attempt: c.failures + 1,
                        in_ms: at.saturating_duration_since(now).as_millis() as u64,
                        last_error: e.clone(),
                    },
                    Phase::Parked(r) => ChatPhase::Parked {
                        attempts: c.failures,
                        reason: r.clone(),
                    },
                };
                (jid.clone(), phase)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Number of runs in progress.
    pub fn running(&self) -> usize {
        self.lock().running
    }

    /// The dispatcher: starts runs until `cancel`. Runs are spawned on
    /// `tracker`; a cancelled run is dropped where it stands (its run record
    /// lets the next start reconcile it).
    pub async fn run(
        self,
        worker: Arc<dyn Worker>,
        cancel: CancellationToken,
        tracker: TaskTracker,
    ) {
        loop {
            let (start, next_due) = self.take_ready();
            for (chat, attempt) in start {
                let (queue, worker, cancel) = (self.clone(), worker.clone(), cancel.clone());
                tracker.spawn(async move {
                    let started = Instant::now();
                    // Inside the slot this run holds (taken before the
                    // spawn, given back in `finish`), so the benchmark's
                    // overlap of these pairs never counts more runs than
                    // the queue held at once.
                    crate::stage!("run_began", chat);
                    let outcome = tokio::select! {
                        _ = cancel.cancelled() => return,
                        o = worker.run(chat.clone(), attempt) => o,
                    };
                    crate::stage!("run_ended", chat);
                    let done = outcome == Outcome::Done;
                    let parked = queue.finish(&chat, outcome);
                    crate::metrics::run_finished(
                        match (done, &parked) {
                            (true, _) => crate::metrics::RunEnd::Succeeded,
                            (false, None) => crate::metrics::RunEnd::Retried,
                            (false, Some(_)) => crate::metrics::RunEnd::Parked,
                        },
                        started.elapsed(),
                    );
                    if let Some((attempts, reason)) = parked {
                        worker.parked(chat, attempts, reason).await;
                    }
                });
            }
            let sleep = async {
                match next_due {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = self.inner.wake.notified() => {}
                _ = sleep => {}
            }
        }
    }

    /// Promotes due retries and takes as many ready chats as the cap allows.
    fn take_ready(&self) -> (Vec<(ChatJid, u32)>, Option<Instant>) {
        let mut st = self.lock();
        let now = Instant::now();
        let State {
            chats,
            ready,
            running,
        } = &mut *st;
        let mut next_due: Option<Instant> = None;
        for (jid, c) in chats.iter_mut() {
            if let Phase::Waiting(at, _) = c.phase {
                if at <= now {
                    c.phase = Phase::Queued;
                    ready.push_back(jid.clone());
                } else {
                    next_due = Some(next_due.map_or(at, |n| n.min(at)));
                }
            }
        }
        let mut start = Vec::new();
        while *running < self.inner.cap {
            let Some(jid) = ready.pop_front() else { break };
            let Some(c) = chats.get_mut(&jid) else {
                continue;
            };
            if !matches!(c.phase, Phase::Queued) {
                continue;
            }
            c.phase = Phase::Running;
            c.dirty = false;
            *running += 1;
            start.push((jid, c.failures + 1));
        }
        (start, next_due)
    }

    /// Records a run's end; returns `(attempts, reason)` when it parked.
    fn finish(&self, chat: &ChatJid, outcome: Outcome) -> Option<(u32, String)> {
        let mut st = self.lock();
        st.running -= 1;
        let retry = self.inner.retry;
        let State { chats, ready, .. } = &mut *st;
        let c = chats.get_mut(chat)?;
        let mut parked = None;
        match outcome {
            Outcome::Done => {
                c.failures = 0;
                if c.dirty {
                    c.dirty = false;
                    c.phase = Phase::Queued;
                    ready.push_back(chat.clone());
                } else {
                    chats.remove(chat);
                }
            }
            Outcome::Retry(reason) => {
                c.failures += 1;
                c.dirty = false;
                if c.failures >= retry.attempts {
                    tracing::warn!(chat = %chat, attempts = c.failures, %reason, "run parked after retries");
                    parked = Some((c.failures, reason.clone()));
                    c.phase = Phase::Parked(reason);
                } else {
                    let delay = retry.delay(c.failures);
                    tracing::warn!(chat = %chat, attempt = c.failures, retry_in_ms = delay.as_millis() as u64, %reason, "run failed; will retry");
                    c.phase = Phase::Waiting(Instant::now() + delay, reason);
                }
            }
            Outcome::Outage(reason) => {
                c.failures = (c.failures + 1).min(retry.attempts.saturating_sub(1).max(1));
                c.dirty = false;
                let delay = retry.delay(c.failures);
                tracing::warn!(chat = %chat, retry_in_ms = delay.as_millis() as u64, %reason, "agent unreachable; will retry until it is back");
                c.phase = Phase::Waiting(Instant::now() + delay, reason);
            }
            Outcome::Park(reason) => {
                c.failures += 1;
                c.dirty = false;
                tracing::warn!(chat = %chat, %reason, "run parked");
                parked = Some((c.failures, reason.clone()));
                c.phase = Phase::Parked(reason);
            }
        }
        drop(st);
        self.inner.wake.notify_one();
        parked
    }
}

#[cfg(test)]
mod tests;
