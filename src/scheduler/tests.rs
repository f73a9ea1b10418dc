use std::sync::Mutex;

use super::*;
use crate::ids::Folder;
use crate::model::{ContextMode, RegisteredChat, TaskStatus, TriggerRule};
use crate::store::tasks::Task;

const CHAT: &str = "491511111111@s.whatsapp.net";

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

struct Rig {
    _dir: tempfile::TempDir,
    store: Store,
    clock: Arc<TokioClock>,
    wake: Arc<Notify>,
    fired: Arc<Mutex<Vec<DateTime<Utc>>>>,
    cancel: CancellationToken,
}

impl Rig {
    async fn new(start: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.sqlite3")).unwrap();
        store
            .register(RegisteredChat {
                jid: ChatJid::parse(CHAT).unwrap(),
                name: "Ann".into(),
                folder: Folder::parse("ann").unwrap(),
                is_main: false,
                trigger: TriggerRule::Mention,
                profile: crate::model::Profile::Member,
            })
            .await
            .unwrap();
        Self {
            _dir: dir,
            store,
            clock: Arc::new(TokioClock::new(utc(start))),
            wake: Arc::new(Notify::new()),
            fired: Arc::default(),
            cancel: CancellationToken::new(),
        }
    }

    fn start(&self) {
        let (fired, clock) = (self.fired.clone(), self.clock.clone());
        let dispatch: Dispatch =
            Arc::new(move |_chat: &ChatJid| fired.lock().unwrap().push(clock.now()));
        let s = Scheduler::new(
            self.store.clone(),
            self.wake.clone(),
            self.clock.clone(),
            dispatch,
        );
        tokio::spawn(s.run(self.cancel.clone()));
    }

    async fn add(&self, id: &str, kind: &str, value: &str, next_run: DateTime<Utc>) {
        let task = Task {
            id: id.into(),
            chat: ChatJid::parse(CHAT).unwrap(),
            prompt: "p".into(),
            schedule_type: kind.parse().unwrap(),
            schedule_value: value.into(),
            context_mode: ContextMode::Group,
            tz: "Europe/Berlin".into(),
            status: TaskStatus::Active,
            status_reason: None,
            next_run: Some(next_run.timestamp_millis()),
            created_at: 0,
        };
        self.store
            .call(move |c| tasks::insert(c, &task))
            .await
            .unwrap();
    }

    /// Due times of the runs queued so far, oldest first.
    async fn dues(&self, id: &str) -> Vec<DateTime<Utc>> {
        let id = id.to_owned();
        let mut runs = self
            .store
            .call(move |c| tasks::runs(c, &id, 100_000))
            .await
            .unwrap();
        runs.reverse();
        runs.iter()
            .map(|r| DateTime::from_timestamp_millis(r.due_at).unwrap())
            .collect()
    }

    async fn task(&self, id: &str) -> Task {
        let id = id.to_owned();
        self.store
            .call(move |c| tasks::get(c, &id))
            .await
            .unwrap()
            .unwrap()
    }
}

/// Lets virtual time pass in small steps, so the blocking store calls of
/// each pass finish before the clock moves on.
async fn pass_time(total: Duration) {
    pass_time_by(total, Duration::from_millis(250)).await
}

async fn pass_time_by(total: Duration, step: Duration) {
    let mut gone = Duration::ZERO;
    while gone < total {
        tokio::time::sleep(step).await;
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        gone += step;
    }
}

#[tokio::test(start_paused = true)]
async fn fires_within_a_second_of_due_and_interval_does_not_drift() {
    let rig = Rig::new("2026-01-01T00:00:00Z").await;
    rig.add("t1", "interval", "90s", utc("2026-01-01T00:01:30Z"))
        .await;
    rig.start();
    pass_time(Duration::from_secs(90 * 40 + 5)).await;
    let fired = rig.fired.lock().unwrap().clone();
    let dues = rig.dues("t1").await;
    assert_eq!(dues.len(), 40);
    for (i, (due, at)) in dues.iter().zip(&fired).enumerate() {
        assert_eq!(
            *due,
            utc("2026-01-01T00:00:00Z") + chrono::Duration::seconds(90 * (i as i64 + 1)),
            "anchored, no drift"
        );
        let late = (*at - *due).num_milliseconds();
        assert!(
            (0..1000).contains(&late),
            "run {i} fired {late} ms after due"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn after_downtime_a_task_catches_up_once_then_keeps_its_grid() {
    let rig = Rig::new("2026-01-01T10:00:00Z").await;
    // Due an hour ago (the bridge was down), every 5 minutes.
    rig.add("t1", "interval", "5m", utc("2026-01-01T09:00:00Z"))
        .await;
    rig.start();
    pass_time(Duration::from_secs(60)).await;
    assert_eq!(
        rig.fired.lock().unwrap().len(),
        1,
        "one catch-up run, not twelve"
    );
    assert_eq!(
        rig.task("t1").await.next_run,
        Some(utc("2026-01-01T10:05:00Z").timestamp_millis())
    );
    pass_time(Duration::from_secs(5 * 60)).await;
    assert_eq!(
        rig.dues("t1").await,
        vec![utc("2026-01-01T09:00:00Z"), utc("2026-01-01T10:05:00Z")]
    );
}

#[tokio::test(start_paused = true)]
async fn two_racing_schedulers_never_fire_a_due_time_twice() {
    let rig = Rig::new("2026-01-01T00:00:00Z").await;
    rig.add("t1", "interval", "30s", utc("2026-01-01T00:00:30Z"))
        .await;
    rig.start();
    rig.start();
    pass_time(Duration::from_secs(30 * 20 + 5)).await;
    let dues = rig.dues("t1").await;
    let mut unique = dues.clone();
    unique.dedup();
    assert_eq!(dues.len(), 20);
    assert_eq!(unique, dues, "each due time claimed once");
}

#[tokio::test(start_paused = true)]
async fn cron_follows_local_time_through_spring_forward_and_fall_back() {
    let rig = Rig::new("2026-03-27T12:00:00Z").await;
    rig.add("spring", "cron", "0 9 * * *", utc("2026-03-28T08:00:00Z"))
        .await;
    rig.start();
    pass_time_by(Duration::from_secs(3 * 86_400), Duration::from_secs(30)).await;
    assert_eq!(
        rig.dues("spring").await,
        vec![
            utc("2026-03-28T08:00:00Z"),
            utc("2026-03-29T07:00:00Z"),
            utc("2026-03-30T07:00:00Z")
        ],
        "9:00 Berlin on both sides of the change"
    );

    let rig = Rig::new("2026-10-24T12:00:00Z").await;
    // 2:30 happens twice on 25 October; it runs once.
    rig.add("fall", "cron", "30 2 * * *", utc("2026-10-25T00:30:00Z"))
        .await;
    rig.start();
    pass_time_by(Duration::from_secs(3 * 86_400), Duration::from_secs(30)).await;
    assert_eq!(
        rig.dues("fall").await,
        vec![
            utc("2026-10-25T00:30:00Z"),
            utc("2026-10-26T01:30:00Z"),
            utc("2026-10-27T01:30:00Z")
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_once_task_completes_and_stays_completed() {
    let rig = Rig::new("2026-01-01T00:00:00Z").await;
    rig.add(
        "t1",
        "once",
        "2026-01-01T00:00:10+00:00",
        utc("2026-01-01T00:00:10Z"),
    )
    .await;
    rig.start();
    pass_time(Duration::from_secs(20)).await;
    let t = rig.task("t1").await;
    assert_eq!((t.status, t.next_run), (TaskStatus::Completed, None));
    rig.cancel.cancel();
    // A new scheduler (a restart) does not run it again.
    let rig2 = Rig {
        cancel: CancellationToken::new(),
        fired: Arc::default(),
        ..rig
    };
    rig2.start();
    pass_time(Duration::from_secs(60)).await;
    assert_eq!(rig2.fired.lock().unwrap().len(), 0);
    assert_eq!(rig2.dues("t1").await.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_new_task_wakes_the_sleeping_scheduler() {
    let rig = Rig::new("2026-01-01T00:00:00Z").await;
    rig.start();
    pass_time(Duration::from_secs(2)).await; // asleep, nothing to do (up to 300 s)
    rig.add(
        "t1",
        "once",
        "2026-01-01T00:00:12+00:00",
        utc("2026-01-01T00:00:12Z"),
    )
    .await;
    rig.wake.notify_one();
    pass_time(Duration::from_secs(15)).await;
    let fired = rig.fired.lock().unwrap().clone();
    assert_eq!(fired.len(), 1);
    assert!(
        (fired[0] - utc("2026-01-01T00:00:12Z")).num_milliseconds() < 1000,
        "{fired:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_task_of_an_unregistered_chat_is_paused_not_retried() {
    let rig = Rig::new("2026-01-01T00:00:00Z").await;
    rig.add("t1", "interval", "1m", utc("2026-01-01T00:01:00Z"))
        .await;
    rig.store
        .unregister(&ChatJid::parse(CHAT).unwrap())
        .await
        .unwrap();
    rig.start();
    pass_time(Duration::from_secs(300)).await;
    let t = rig.task("t1").await;
    assert_eq!(t.status, TaskStatus::Paused);
    assert_eq!(
        t.status_reason.as_deref(),
        Some("chat 491511111111@s.whatsapp.net is no longer registered")
    );
    assert!(rig.fired.lock().unwrap().is_empty());
}
