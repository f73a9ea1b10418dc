//! Scheduled tasks end to end: created by the agent's tool or the CLI,
//! fired by the scheduler through the chat's queue, answered by a real
//! OpenCode, delivered through the outbox.

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;

const DM: &str = "491511111111@s.whatsapp.net";
// Generous: the first run in a chat boots an OpenCode instance, slow on a busy machine.
const T: Duration = Duration::from_secs(120);

/// A local (Europe/Berlin, the tests' TZ) time `secs` from now, ISO 8601.
fn in_secs(secs: i64) -> String {
    let tz: chrono_tz::Tz = "Europe/Berlin".parse().unwrap();
    (chrono::Utc::now() + chrono::Duration::seconds(secs))
        .with_timezone(&tz)
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string()
}

fn is_task(r: &ChatRequest) -> bool {
    r.last_user_text().contains("<scheduled_task ")
}

/// A bridge whose "long question" turn takes `secs` and whose tasks answer
/// "task answer".
async fn long_turn_world(secs: u64) -> World {
    let mut w = World::new().await;
    w.model.always(
        |r| r.last_user_text().contains("long question"),
        Reply::delayed(Duration::from_secs(secs), Reply::text("long answer")),
    );
    w.model.always(is_task, Reply::text("task answer"));
    w.register(DM, "Ann", &[]);
    w.start_bridge().await;
    w
}

/// `pocketbrain tasks add <args>`; returns the new task's id.
fn add_task(w: &World, args: &[&str]) -> String {
    let mut all = vec!["tasks", "add"];
    all.extend_from_slice(args);
    let (ok, out, err) = w.cli(&all);
    assert!(ok, "{out}{err}");
    out.split_whitespace().nth(2).unwrap().to_owned()
}

/// Polls `pocketbrain tasks runs <id>` until `done` holds; returns the output.
async fn wait_runs(w: &World, id: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + T;
    loop {
        let (_, runs, _) = w.cli(&["tasks", "runs", id]);
        if done(&runs) {
            return runs;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "runs never matched: {runs}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_task_made_with_the_tool_fires_and_its_answer_reaches_the_chat() {
    let mut w = World::new().await;
    // The time is computed when the model is asked, a few seconds ahead.
    w.model.compute(
        |r| r.last_role() == "user" && r.last_user_text().contains("remind me"),
        |_| {
            Reply::tool_call(
                "pocketbrain_schedule_task",
                json!({"prompt": "Tell the user to stretch.", "schedule_type": "once", "schedule_value": in_secs(3), "context_mode": "group"}),
            )
        },
    );
    w.model
        .on(|r| r.last_role() == "tool", vec![Reply::text("Scheduled.")]);
    w.model.always(
        is_task,
        Reply::text("<internal>task time</internal>Time to stretch!"),
    );
    w.register(DM, "Ann", &[]);
    w.start_bridge().await;
    w.say(DM, "R1", "remind me to stretch in a few seconds")
        .await;
    assert_eq!(
        w.wait_outbox(DM, 2, T).await,
        vec!["Andy: Scheduled.", "Andy: Time to stretch!"]
    );

    let task = w.agent_requests().into_iter().find(is_task).unwrap();
    let prompt = task.last_user_text();
    assert!(
        prompt.contains("Tell the user to stretch.</scheduled_task>"),
        "{prompt}"
    );
    assert!(
        prompt.contains("This is a scheduled task, not a new message"),
        "{prompt}"
    );

    let (ok, list, _) = w.cli(&["tasks", "list"]);
    assert!(ok && list.contains(" completed "), "{list}");
    let id = list.split_whitespace().next().unwrap().to_owned();
    let (ok, runs, _) = w.cli(&["tasks", "runs", &id]);
    assert!(
        ok && runs.contains(" ok ") && runs.contains("Andy: Time to stretch!"),
        "{runs}"
    );
    // Completed stays completed across a restart.
    w.stop_bridge().await;
    w.start_bridge().await;
    assert_quiet(&w, DM, 2, Duration::from_secs(3)).await;
}

#[tokio::test]
async fn group_tasks_see_the_conversation_isolated_tasks_do_not() {
    let mut w = World::new().await;
    w.model.always(
        |r| r.last_user_text().contains("secret word"),
        Reply::text("Noted: BANANA."),
    );
    w.model.always(
        |r| is_task(r) && r.last_user_text().contains("group check"),
        Reply::text("group task ran"),
    );
    w.model.always(
        |r| is_task(r) && r.last_user_text().contains("isolated check"),
        Reply::text("isolated task ran"),
    );
    w.register(DM, "Ann", &[]);
    w.start_bridge().await;
    w.say(DM, "S1", "my secret word is BANANA").await;
    w.wait_outbox(DM, 1, T).await;

    add_task(&w, &[DM, "--prompt", "group check", "--once", &in_secs(3)]);
    let (ok, out, err) = w.cli(&[
        "tasks",
        "add",
        DM,
        "--prompt",
        "isolated check",
        "--once",
        &in_secs(3),
        "--isolated",
    ]);
    assert!(ok, "{out}{err}");
    assert!(
        out.starts_with("Scheduled task task-") && out.contains("isolated context"),
        "{out}"
    );
    let texts = w.wait_outbox(DM, 3, T).await;
    assert!(
        texts.contains(&"Andy: group task ran".to_string())
            && texts.contains(&"Andy: isolated task ran".to_string()),
        "{texts:?}"
    );

    let reqs = w.agent_requests();
    let group = reqs
        .iter()
        .find(|r| is_task(r) && r.last_user_text().contains("group check"))
        .unwrap();
    let isolated = reqs
        .iter()
        .find(|r| is_task(r) && r.last_user_text().contains("isolated check"))
        .unwrap();
    assert!(
        group.all_text().contains("BANANA"),
        "a group task sees the chat's history"
    );
    assert!(
        !isolated.all_text().contains("BANANA"),
        "chat messages never leak into isolated tasks"
    );
    assert!(
        !isolated.all_text().contains("group check"),
        "nor do other tasks"
    );
}

#[tokio::test]
async fn a_task_due_mid_turn_waits_for_the_turn() {
    let w = long_turn_world(5).await;
    add_task(&w, &[DM, "--prompt", "ping", "--once", &in_secs(2)]);
    w.say(DM, "L1", "a long question").await;
    assert_eq!(
        w.wait_outbox(DM, 2, T).await,
        vec!["Andy: long answer", "Andy: task answer"]
    );
    assert_eq!(
        w.model.max_in_flight(),
        1,
        "the task never overlapped the turn"
    );
}

#[tokio::test]
async fn tasks_cli_validates_and_manages() {
    let mut w = World::new().await;
    w.register(DM, "Ann", &[]);
    w.start_bridge().await;
    let (ok, _, err) = w.cli(&["tasks", "add", DM, "--prompt", "x", "--cron", "0 9 * *"]);
    assert!(!ok && err.contains("has 4 fields"), "{err}");
    let (ok, _, err) = w.cli(&["tasks", "add", DM, "--prompt", "x", "--interval", "-5m"]);
    assert!(!ok && err.contains("negative"), "{err}");
    let (ok, _, err) = w.cli(&[
        "tasks",
        "add",
        "491519999999@s.whatsapp.net",
        "--prompt",
        "x",
        "--interval",
        "1h",
    ]);
    assert!(!ok && err.contains("is not a registered chat"), "{err}");
    let id = add_task(
        &w,
        &[DM, "--prompt", "weekday summary", "--cron", "0 9 * * 1-5"],
    );
    let (ok, out, _) = w.cli(&["tasks", "pause", &id]);
    assert!(ok && out.starts_with("Paused task"), "{out}");
    let (_, list, _) = w.cli(&["tasks", "list"]);
    // Paused as the owner, not as a pretend chat: the reason says who.
    assert!(
        list.contains(" paused ") && list.contains("paused by the owner"),
        "{list}"
    );
    let (ok, out, _) = w.cli(&["tasks", "resume", &id]);
    assert!(
        ok && out.contains("Next run: ") && out.contains(" 09:00 "),
        "{out}"
    );
    let (ok, out, _) = w.cli(&["tasks", "cancel", &id]);
    assert!(ok && out.starts_with("Cancelled task"), "{out}");
    let (ok, _, err) = w.cli(&["tasks", "cancel", &id]);
    assert!(!ok && err.contains("no task"), "{err}");
}

#[tokio::test]
async fn a_task_run_waiting_for_a_chat_unregistered_meanwhile_ends_with_the_reason() {
    let w = long_turn_world(6).await;
    w.say(DM, "U1", "a long question").await;
    w.wait_agent_request("long question", T).await;
    let hourly = add_task(&w, &[DM, "--prompt", "hourly", "--interval", "1h"]);
    let id = add_task(&w, &[DM, "--prompt", "ping", "--once", &in_secs(2)]);
    // The run is claimed mid-turn and waits; then the chat goes away.
    wait_runs(&w, &id, |r| r.contains(" queued ")).await;
    let (ok, out, _) = w.cli(&["chats", "unregister", DM]);
    assert!(ok, "{out}");

    let reason = format!("chat {DM} is no longer registered");
    let runs = wait_runs(&w, &id, |r| r.contains(" error ")).await;
    assert!(runs.contains(&reason), "{runs}");
    assert!(!runs.contains(" queued "), "{runs}");
    // The chat's other task, not yet due, is paused with the reason too.
    let (_, list, _) = w.cli(&["tasks", "list"]);
    let line = list
        .lines()
        .find(|l| l.contains(&hourly))
        .unwrap_or_default();
    assert!(
        line.contains(" paused ") && line.contains(&reason),
        "{list}"
    );
    w.wait_idle(T).await;
    assert!(
        !w.agent_requests().iter().any(is_task),
        "the task never reached the agent"
    );
}
