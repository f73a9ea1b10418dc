//! Every branch of a run, against the fake agent and a real SQLite file, on
//! tokio's paused clock: no Node, no OpenCode.

use std::sync::atomic::Ordering;

use std::path::Path;

use super::*;
use crate::agent::Recovered;
use crate::agent::fake::FakeAgent;
use crate::channel::fake::FakeChannel;
use crate::ids::PromptId;
use crate::ids::{Folder, MessageId};
use crate::intake::Intake;
use crate::model::Inbound;
use crate::model::TriggerRule;
use crate::queue::RetryPolicy;

const DM: &str = "491511111111@s.whatsapp.net";
const MAIN: &str = "491510000000@s.whatsapp.net";

struct Rig {
    _dir: tempfile::TempDir,
    store: Store,
    intake: Intake,
    runner: Runner,
    queue: ChatQueue,
    agent: Arc<FakeAgent>,
}

fn jid(s: &str) -> ChatJid {
    ChatJid::parse(s).unwrap()
}

async fn rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::defaults_for_tests();
    config.data_dir = dir.path().join("data");
    config.workspace = dir.path().join("workspace");
    config.assistant_has_own_number = true;
    let store = Store::open(&dir.path().join("pb.sqlite3")).unwrap();
    let fake = FakeChannel::open(&dir.path().join("fake.sqlite3")).unwrap();
    let agent = Arc::new(FakeAgent::default());
    let new_queue = || {
        ChatQueue::new(
            2,
            RetryPolicy {
                base: std::time::Duration::from_secs(1),
                max_delay: std::time::Duration::from_secs(60),
                attempts: 3,
            },
        )
    };
    // The runner's queue sees only what the runner asks for; messages wake
    // a queue of their own (no dispatcher runs in these tests).
    let queue = new_queue();
    let intake = Intake::new(
        store.clone(),
        new_queue(),
        RunSettings::from_config(&config).persona,
    );
    let runner = Runner::new(
        RunSettings::from_config(&config),
        store.clone(),
        agent.clone(),
        Arc::new(fake),
        queue.clone(),
        Arc::new(Notify::new()),
    );
    for (j, folder, main) in [(DM, "ann", false), (MAIN, "main", true)] {
        store
            .register(RegisteredChat {
                jid: jid(j),
                name: folder.into(),
                folder: Folder::parse(folder).unwrap(),
                is_main: main,
                trigger: TriggerRule::Always,
                profile: crate::model::Profile::default_for(&jid(j), main),
            })
            .await
            .unwrap();
    }
    Rig {
        _dir: dir,
        store,
        intake,
        runner,
        queue,
        agent,
    }
}

impl Rig {
    async fn say(&self, chat: &str, id: &str, text: &str) {
        self.intake
            .accept(Inbound {
                chat: jid(chat),
                chat_name: None,
                id: MessageId::new(id),
                sender: chat.into(),
                sender_name: Some("Ann".into()),
                text: text.into(),
                timestamp_ms: crate::store::now_ms(),
                from_me: false,
                media: None,
            })
            .await
            .unwrap();
    }

    async fn run(&self, chat: &str) -> Outcome {
        Worker::run(&self.runner, jid(chat), 1).await
    }

    async fn pending(&self, chat: &str) -> usize {
        self.store
            .pending_messages(&jid(chat), 100)
            .await
            .unwrap()
            .len()
    }

    async fn outbox(&self, chat: &str) -> Vec<String> {
        let chat = jid(chat);
        self.store
            .call(move |c| {
                let mut s = c.prepare("SELECT text FROM outbox WHERE chat = ?1 ORDER BY seq")?;
                let rows = s.query_map([chat.as_str()], |r| r.get(0))?;
                Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
            })
            .await
            .unwrap()
    }
}

/// A tool call recorded in the ledger, as the IPC processor records one
/// that sent a message.
async fn record_tool_send(store: &Store, session: &SessionId, to: &ChatJid, n: u32) {
    let (session, to) = (session.clone(), to.clone());
    store
        .tx(move |tx| {
            tx.execute(
                "INSERT INTO ipc_requests (id, session_id, call_id, tool, chat, ok, response, created_at)
                 VALUES (?1, ?2, ?3, 'send_message', ?4, 1, ?5, 0)",
                rusqlite::params![
                    format!("req_{n}"),
                    session.as_str(),
                    format!("call_{n}"),
                    to.as_str(),
                    r#"{"version":1,"id":"x","ok":true,"result":{"sent":true}}"#
                ],
            )?;
            crate::store::insert_outbox(tx, &to, &MessageId::new(format!("T{n}")), "from a tool")?;
            Ok(())
        })
        .await
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_answer_is_queued_and_the_cursor_moves() {
    let r = rig().await;
    r.say(DM, "A1", "hi").await;
    r.agent.answer("Hello!");
    assert_eq!(r.run(DM).await, Outcome::Done);
    assert_eq!(r.outbox(DM).await, vec!["Hello!"]);
    assert_eq!(r.pending(DM).await, 0);
}

/// Bug: a failed run counted as done when the chat's outbox grew during it,
/// even when another chat's agent had sent that message.
#[tokio::test(start_paused = true)]
async fn a_failed_run_is_retried_even_when_another_chat_sent_into_it() {
    let r = rig().await;
    // The main chat's session, which sends into the DM meanwhile.
    let main_session = r
        .agent
        .create_session(Path::new("/"), "main")
        .await
        .unwrap();
    r.say(DM, "A1", "hi").await;
    let store = r.store.clone();
    r.agent.then(move |_| {
        Box::pin(async move {
            record_tool_send(&store, &main_session, &jid(DM), 1).await;
            Err(AgentError::Run("model said 500".into()))
        })
    });
    assert!(matches!(r.run(DM).await, Outcome::Retry(_)));
    assert_eq!(r.pending(DM).await, 1, "the message is still unanswered");

    r.agent.answer("Now it works.");
    assert_eq!(r.run(DM).await, Outcome::Done);
    assert_eq!(r.outbox(DM).await, vec!["from a tool", "Now it works."]);
}

/// A run whose own tool call already sent a message is not retried (the
/// message would be sent twice); its messages count as answered.
#[tokio::test(start_paused = true)]
async fn a_failed_run_that_sent_with_its_own_tool_is_done() {
    let r = rig().await;
    r.say(DM, "A1", "hi").await;
    let store = r.store.clone();
    r.agent.then(move |spec| {
        Box::pin(async move {
            record_tool_send(&store, &spec.session, &jid(DM), 1).await;
            Err(AgentError::Run("model said 500".into()))
        })
    });
    assert_eq!(r.run(DM).await, Outcome::Done);
    assert_eq!(r.pending(DM).await, 0);
    assert_eq!(r.outbox(DM).await, vec!["from a tool"]);
}

#[tokio::test(start_paused = true)]
async fn a_gone_session_is_replaced_on_the_retry() {
    let r = rig().await;
    r.say(DM, "A1", "hi").await;
    r.agent.answer("first");
    assert_eq!(r.run(DM).await, Outcome::Done);
    let first = r.agent.runs()[0].session.clone();

    // OpenCode loses the session between the check and the prompt.
    r.say(DM, "A2", "again").await;
    let agent = r.agent.clone();
    r.agent.then(move |spec| {
        Box::pin(async move {
            agent.drop_session(&spec.session);
            Err(AgentError::SessionGone(spec.session))
        })
    });
    assert!(matches!(r.run(DM).await, Outcome::Retry(_)));
    assert_eq!(r.store.session(&jid(DM)).await.unwrap(), None);

    r.agent.answer("second");
    assert_eq!(r.run(DM).await, Outcome::Done);
    let runs = r.agent.runs();
    assert_ne!(runs[2].session, first, "a new session");
    assert_eq!(r.outbox(DM).await, vec!["first", "second"]);
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_agent_is_an_outage_and_keeps_the_messages() {
    let r = rig().await;
    r.say(DM, "A1", "hi").await;
    r.agent.down.store(true, Ordering::Relaxed);
    assert!(matches!(r.run(DM).await, Outcome::Outage(_)));
    assert_eq!(r.pending(DM).await, 1);
    r.agent.down.store(false, Ordering::Relaxed);
    r.agent.answer("back");
    assert_eq!(r.run(DM).await, Outcome::Done);
    assert_eq!(r.outbox(DM).await, vec!["back"]);
}

/// A run left in flight by a crash: an answer that exists is delivered and
/// the prompt is not sent again.
#[tokio::test(start_paused = true)]
async fn a_run_left_by_a_crash_is_recovered_without_resending() {
    let r = rig().await;
    r.say(DM, "A1", "hi").await;
    let store = &r.store;
    let session = r.agent.create_session(Path::new("/"), "dm").await.unwrap();
    store.set_session(&jid(DM), &session).await.unwrap();
    let up_to = store.pending_messages(&jid(DM), 10).await.unwrap()[0].seq;
    store
        .begin_run(&jid(DM), &session, &PromptId::new("msg_lost"), up_to, 1)
        .await
        .unwrap();
    r.agent
        .recovers(Ok(Recovered::Answered("answered before the crash".into())));
    assert_eq!(r.run(DM).await, Outcome::Done);
    assert_eq!(r.outbox(DM).await, vec!["answered before the crash"]);
    assert!(r.agent.runs().is_empty(), "the prompt was not sent again");
    assert_eq!(r.pending(DM).await, 0);
}

/// A chat unregistered after its message was queued is not answered.
#[tokio::test(start_paused = true)]
async fn an_unregistered_chat_is_not_run() {
    let r = rig().await;
    r.say(DM, "A1", "hi").await;
    r.store.unregister(&jid(DM)).await.unwrap();
    assert_eq!(r.run(DM).await, Outcome::Done);
    assert!(r.agent.runs().is_empty());
    assert!(r.outbox(DM).await.is_empty());
}

/// A provider that refuses the key: one clear message in the chat, and the
/// chat parked at once (no retries); the next message tries again.
#[tokio::test(start_paused = true)]
async fn a_refused_model_is_told_to_the_chat_once_and_parks() {
    let r = rig().await;
    r.say(DM, "A1", "hi").await;
    r.agent.fail(AgentError::ModelRefused(
        "the model provider refused the request (401): APIError: Incorrect API key provided".into(),
    ));
    assert!(matches!(r.run(DM).await, Outcome::Park(_)));
    let out = r.outbox(DM).await;
    assert_eq!(out.len(), 1);
    assert!(
        out[0].starts_with("I can't answer right now: the model provider refused"),
        "{out:?}"
    );
    assert_eq!(r.pending(DM).await, 1, "the message is kept");

    r.agent.answer("fixed");
    assert_eq!(r.run(DM).await, Outcome::Done);
    assert_eq!(r.outbox(DM).await[1], "fixed");
}

/// A conversation goes first; a task run already waiting then gets a round
/// of its own (the chat is queued again), and runs in it.
#[tokio::test(start_paused = true)]
async fn a_waiting_task_run_gets_the_next_round() {
    let r = rig().await;
    r.say(DM, "A1", "hi").await;
    r.store
        .call(|c| {
            c.execute(
                "INSERT INTO task_runs (task_id, chat, due_at, queued_at, status) VALUES ('t-gone', ?1, 0, 0, 'queued')",
                [DM],
            )?;
            Ok(())
        })
        .await
        .unwrap();
    r.agent.answer("answered");
    assert!(r.queue.snapshot().is_empty());
    assert_eq!(r.run(DM).await, Outcome::Done);
    assert_eq!(r.outbox(DM).await, vec!["answered"]);
    assert_eq!(
        r.queue.snapshot(),
        vec![(jid(DM), crate::queue::ChatPhase::Queued)],
        "queued again for the task run"
    );

    // The next round takes the task run (its task is gone: it ends so).
    assert_eq!(r.run(DM).await, Outcome::Done);
    assert!(!r.store.has_task_run_waiting(&jid(DM)).await.unwrap());
    assert_eq!(r.agent.runs().len(), 1, "no prompt for a cancelled task");
}
