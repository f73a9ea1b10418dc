use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

type Decide = dyn Fn(&ChatJid, u32) -> Outcome + Send + Sync;
type OnStart = Box<dyn Fn(&ChatJid) + Send + Sync>;

/// A worker that records every start, sleeps `work`, and answers `decide`.
struct FakeWorker {
    work: Duration,
    decide: Box<Decide>,
    starts: Mutex<Vec<(ChatJid, u32, Instant)>>,
    parked: Mutex<Vec<(ChatJid, u32, String)>>,
    now_running: Arc<AtomicUsize>,
    max_running: AtomicUsize,
    /// Called at the start of each run (to inject messages mid-run).
    on_start: Mutex<Option<OnStart>>,
}

impl FakeWorker {
    fn new(
        work: Duration,
        decide: impl Fn(&ChatJid, u32) -> Outcome + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Self {
            work,
            decide: Box::new(decide),
            starts: Mutex::default(),
            parked: Mutex::default(),
            now_running: Arc::new(AtomicUsize::new(0)),
            max_running: AtomicUsize::new(0),
            on_start: Mutex::new(None),
        })
    }
    fn starts(&self) -> Vec<(ChatJid, u32, Instant)> {
        self.starts.lock().unwrap().clone()
    }
}

impl Worker for FakeWorker {
    fn run(&self, chat: ChatJid, attempt: u32) -> BoxFuture<'static, Outcome> {
        self.starts
            .lock()
            .unwrap()
            .push((chat.clone(), attempt, Instant::now()));
        if let Some(f) = &*self.on_start.lock().unwrap() {
            f(&chat);
        }
        let n = self.now_running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(n, Ordering::SeqCst);
        let outcome = (self.decide)(&chat, attempt);
        let work = self.work;
        let running = self.now_running.clone();
        Box::pin(async move {
            tokio::time::sleep(work).await;
            running.fetch_sub(1, Ordering::SeqCst);
            outcome
        })
    }
    fn parked(&self, chat: ChatJid, attempts: u32, reason: String) -> BoxFuture<'static, ()> {
        self.parked.lock().unwrap().push((chat, attempts, reason));
        Box::pin(async {})
    }
}

fn jid(n: usize) -> ChatJid {
    ChatJid::parse(&format!("{}@s.whatsapp.net", 1000 + n)).unwrap()
}

const POLICY: RetryPolicy = RetryPolicy {
    base: Duration::from_secs(5),
    max_delay: Duration::from_secs(300),
    attempts: 5,
};

/// Seconds between consecutive starts.
fn gaps_s(starts: &[(ChatJid, u32, Instant)]) -> Vec<u64> {
    starts
        .windows(2)
        .map(|w| (w[1].2 - w[0].2).as_secs())
        .collect()
}

fn start(queue: &ChatQueue, worker: Arc<FakeWorker>) -> (CancellationToken, TaskTracker) {
    let (cancel, tracker) = (CancellationToken::new(), TaskTracker::new());
    tokio::spawn(queue.clone().run(worker, cancel.clone(), tracker.clone()));
    (cancel, tracker)
}

async fn settle(d: Duration) {
    tokio::time::sleep(d).await;
}

#[tokio::test(start_paused = true)]
async fn cap_is_never_exceeded_and_every_chat_runs() {
    let worker = FakeWorker::new(Duration::from_secs(1), |_, _| Outcome::Done);
    let queue = ChatQueue::new(3, POLICY);
    let _ = start(&queue, worker.clone());
    for i in 0..10 {
        queue.notify(&jid(i), Wake::Message);
    }
    settle(Duration::from_secs(10)).await;
    assert_eq!(worker.max_running.load(Ordering::SeqCst), 3);
    let mut ran: Vec<_> = worker.starts().into_iter().map(|s| s.0).collect();
    ran.sort();
    assert_eq!(ran, (0..10).map(jid).collect::<Vec<_>>());
    assert!(queue.snapshot().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_busy_chat_does_not_starve_others() {
    let worker = FakeWorker::new(Duration::from_secs(1), |_, _| Outcome::Done);
    let queue = ChatQueue::new(1, POLICY);
    // Chat 0 gets a new message during each of its first five runs.
    let q = queue.clone();
    let runs_of_0 = Arc::new(AtomicUsize::new(0));
    let r0 = runs_of_0.clone();
    *worker.on_start.lock().unwrap() = Some(Box::new(move |chat| {
        if *chat == jid(0) && r0.fetch_add(1, Ordering::SeqCst) < 5 {
            q.notify(chat, Wake::Message);
        }
    }));
    let _ = start(&queue, worker.clone());
    queue.notify(&jid(0), Wake::Message);
    tokio::task::yield_now().await;
    queue.notify(&jid(1), Wake::Message);
    queue.notify(&jid(2), Wake::Message);
    settle(Duration::from_secs(20)).await;
    let order: Vec<_> = worker.starts().into_iter().map(|s| s.0).collect();
    assert_eq!(&order[..4], &[jid(0), jid(1), jid(2), jid(0)]);
    assert_eq!(order.iter().filter(|c| **c == jid(0)).count(), 6);
}

#[tokio::test(start_paused = true)]
async fn messages_during_a_run_get_exactly_one_more_run() {
    let worker = FakeWorker::new(Duration::from_secs(2), |_, _| Outcome::Done);
    let queue = ChatQueue::new(5, POLICY);
    let _ = start(&queue, worker.clone());
    queue.notify(&jid(0), Wake::Message);
    settle(Duration::from_millis(500)).await;
    for _ in 0..3 {
        queue.notify(&jid(0), Wake::Message); // three messages while running
    }
    settle(Duration::from_secs(10)).await;
    let starts = worker.starts();
    assert_eq!(starts.len(), 2, "{starts:?}");
    assert!(
        starts[1].2 - starts[0].2 >= Duration::from_secs(2),
        "no overlap within a chat"
    );
}

#[tokio::test(start_paused = true)]
async fn failures_back_off_then_park_until_next_message() {
    let worker = FakeWorker::new(Duration::ZERO, |_, _| {
        Outcome::Retry("model said 500".into())
    });
    let queue = ChatQueue::new(5, POLICY);
    let _ = start(&queue, worker.clone());
    queue.notify(&jid(0), Wake::Message);
    settle(Duration::from_secs(100)).await; // 5 + 10 + 20 + 40 = 75 s of backoff
    let starts = worker.starts();
    let gaps = gaps_s(&starts);
    assert_eq!(gaps, vec![5, 10, 20, 40]);
    assert_eq!(
        starts.iter().map(|s| s.1).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    assert_eq!(
        *worker.parked.lock().unwrap(),
        vec![(jid(0), 5, "model said 500".to_string())]
    );
    assert_eq!(
        queue.snapshot(),
        vec![(
            jid(0),
            ChatPhase::Parked {
                attempts: 5,
                reason: "model said 500".into()
            }
        )]
    );

    // A wake-up that is not a new message leaves it parked: a due task
    // waits for the person's next message like everything else.
    queue.notify(&jid(0), Wake::MoreWork);
    queue.notify(&jid(0), Wake::TaskDue);
    settle(Duration::from_secs(120)).await;
    assert_eq!(worker.starts().len(), 5);

    // The chat's next message releases it with a fresh attempt count.
    queue.notify(&jid(0), Wake::Message);
    settle(Duration::from_secs(1)).await;
    let starts = worker.starts();
    assert_eq!(starts.len(), 6);
    assert_eq!(starts[5].1, 1);
}

#[tokio::test(start_paused = true)]
async fn an_agent_outage_is_waited_out_without_parking() {
    // Down for 10 minutes, then back.
    let down_until = Instant::now() + Duration::from_secs(600);
    let worker = FakeWorker::new(Duration::ZERO, move |_, _| {
        if Instant::now() < down_until {
            Outcome::Outage("OpenCode unreachable".into())
        } else {
            Outcome::Done
        }
    });
    let queue = ChatQueue::new(5, POLICY);
    let _ = start(&queue, worker.clone());
    queue.notify(&jid(0), Wake::Message);
    settle(Duration::from_secs(700)).await;
    let starts = worker.starts();
    let gaps = gaps_s(&starts);
    // The delay grows as for retries, then stays at the last retry's.
    assert_eq!(gaps[..6], [5, 10, 20, 40, 40, 40], "{gaps:?}");
    assert!(worker.parked.lock().unwrap().is_empty());
    assert!(queue.snapshot().is_empty(), "answered once it was back");
    assert!(
        starts.last().unwrap().2 - starts[0].2 <= Duration::from_secs(640),
        "retried within one delay of coming back"
    );
}

#[tokio::test(start_paused = true)]
async fn retry_recovers_and_resets() {
    let worker = FakeWorker::new(Duration::ZERO, |_, attempt| {
        if attempt < 3 {
            Outcome::Retry("flaky".into())
        } else {
            Outcome::Done
        }
    });
    let queue = ChatQueue::new(5, POLICY);
    let _ = start(&queue, worker.clone());
    queue.notify(&jid(0), Wake::Message);
    settle(Duration::from_secs(30)).await;
    assert_eq!(worker.starts().len(), 3);
    assert!(worker.parked.lock().unwrap().is_empty());
    assert!(queue.snapshot().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_waiting_retry_shows_in_status_and_does_not_block_others() {
    let worker = FakeWorker::new(Duration::from_secs(1), |chat, _| {
        if *chat == jid(0) {
            Outcome::Retry("boom".into())
        } else {
            Outcome::Done
        }
    });
    let queue = ChatQueue::new(1, POLICY);
    let _ = start(&queue, worker.clone());
    queue.notify(&jid(0), Wake::Message);
    settle(Duration::from_millis(1500)).await;
    queue.notify(&jid(1), Wake::Message);
    settle(Duration::from_millis(10)).await;
    let snap = queue.snapshot();
    assert!(
        matches!(&snap[0].1, ChatPhase::WaitingRetry { attempt: 2, last_error, .. } if last_error == "boom")
    );
    assert_eq!(snap[1], (jid(1), ChatPhase::Running));
}

#[tokio::test(start_paused = true)]
async fn cancel_stops_dispatching() {
    let worker = FakeWorker::new(Duration::from_secs(100), |_, _| Outcome::Done);
    let queue = ChatQueue::new(1, POLICY);
    let (cancel, tracker) = start(&queue, worker.clone());
    queue.notify(&jid(0), Wake::Message);
    queue.notify(&jid(1), Wake::Message);
    settle(Duration::from_secs(1)).await;
    cancel.cancel();
    tracker.close();
    tokio::time::timeout(Duration::from_secs(1), tracker.wait())
        .await
        .expect("runs stop on cancel");
    assert_eq!(worker.starts().len(), 1);
}

#[test]
fn retry_delays_double_and_cap() {
    let p = RetryPolicy {
        base: Duration::from_secs(5),
        max_delay: Duration::from_secs(30),
        attempts: 10,
    };
    let d: Vec<u64> = (1..=6).map(|f| p.delay(f).as_secs()).collect();
    assert_eq!(d, vec![5, 10, 20, 30, 30, 30]);
}

#[tokio::test(start_paused = true)]
async fn a_restored_parked_chat_waits_for_its_next_message() {
    let q = ChatQueue::new(2, POLICY);
    let w = FakeWorker::new(Duration::from_millis(10), |_, _| Outcome::Done);
    let _run = start(&q, w.clone());
    q.restore_parked(&jid(1), 5, "model down".into());
    // Work that is not a person's message does not release it.
    q.notify(&jid(1), Wake::MoreWork);
    settle(Duration::from_secs(60)).await;
    assert!(w.starts().is_empty());
    assert_eq!(
        q.snapshot(),
        vec![(
            jid(1),
            ChatPhase::Parked {
                attempts: 5,
                reason: "model down".into()
            }
        )]
    );
    // A chat the queue already knows is not overwritten.
    q.notify(&jid(2), Wake::Message);
    q.restore_parked(&jid(2), 1, "stale".into());
    q.notify(&jid(1), Wake::Message);
    settle(Duration::from_secs(1)).await;
    let started: Vec<_> = w.starts().into_iter().map(|s| (s.0, s.1)).collect();
    assert_eq!(started, vec![(jid(2), 1), (jid(1), 1)]);
}
