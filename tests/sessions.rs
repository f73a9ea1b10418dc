//! One OpenCode session per chat: kept across restarts and hiccups,
//! replaced only when OpenCode says it is gone.

mod support;

use std::time::Duration;

use support::*;

const DM: &str = "491511111111@s.whatsapp.net";
const DM2: &str = "491512222222@s.whatsapp.net";
// Generous: the first run in a chat boots an OpenCode instance, slow on a busy machine.
const T: Duration = Duration::from_secs(120);

#[tokio::test]
async fn session_and_memory_survive_a_restart_and_stay_per_chat() {
    let mut w = World::new().await;
    w.model.always(
        |r| r.last_user_text().contains("name is"),
        Reply::text("Nice to meet you, Kim."),
    );
    w.model.set_default(Reply::text("noted"));
    w.register(DM, "Kim", &[]);
    w.register(DM2, "Lee", &[]);
    w.start_bridge().await;
    w.say(DM, "S1", "my name is Kim").await;
    w.wait_outbox(DM, 1, T).await;
    assert_eq!(
        w.stop_bridge().await.code(),
        Some(0),
        "clean exit on SIGTERM"
    );

    w.start_bridge().await;
    w.say(DM, "S2", "what is my name?").await;
    w.say(DM2, "S3", "hello").await;
    w.wait_outbox(DM, 2, T).await;
    w.wait_outbox(DM2, 1, T).await;
    let reqs = w.agent_requests();
    let kim = reqs
        .iter()
        .find(|r| r.last_user_text().contains("what is my name?"))
        .unwrap();
    assert!(
        kim.all_text().contains("Nice to meet you, Kim."),
        "history resumed"
    );
    let lee = reqs
        .iter()
        .find(|r| r.last_user_text().contains(">hello<"))
        .unwrap();
    assert!(
        !lee.all_text().contains("Kim"),
        "chats do not share sessions"
    );
    // Each chat runs in its own folder with its own memory file.
    assert!(kim.system_text().contains("chats/kim"));
    assert!(lee.system_text().contains("chats/lee"));
    assert!(w.workspace().join("chats/kim/AGENTS.md").is_file());
}

#[tokio::test]
async fn opencode_outage_is_retried_and_keeps_the_conversation() {
    let mut w = World::new().await;
    w.model.always(
        |r| r.last_user_text().contains("remember 42"),
        Reply::text("I will remember 42."),
    );
    w.model.set_default(Reply::text("still here"));
    w.register(DM, "Ann", &[]);
    w.start_bridge().await;
    w.say(DM, "O1", "remember 42").await;
    w.wait_outbox(DM, 1, T).await;

    let port = w.stop_opencode();
    w.say(DM, "O2", "are you there?").await;
    w.wait_health(T, |h| {
        h["queue"]["chats"][0]["phase"]["state"] == "waiting_retry"
            && h["checks"]["opencode"] == "opencode-unreachable"
    })
    .await;
    // That an outage longer than every retry never parks the chat is shown
    // on a paused clock (queue::tests::an_agent_outage_is_waited_out_without_parking,
    // bridge::tests::an_unreachable_agent_is_an_outage_and_keeps_the_messages).
    w.restart_opencode(port);
    assert_eq!(w.wait_outbox(DM, 2, T).await[1], "Andy: still here");
    let last = w.agent_requests().last().unwrap().clone();
    assert!(
        last.all_text().contains("I will remember 42."),
        "same session after the outage"
    );
    w.wait_health(T, |h| h["status"] == "ok").await;
}

#[tokio::test]
async fn a_session_opencode_lost_is_replaced() {
    let mut w = World::new().await;
    w.model.set_default(Reply::text("fresh start"));
    w.register(DM, "Ann", &[]);
    w.start_bridge().await;
    w.say(DM, "G1", "first").await;
    w.wait_outbox(DM, 1, T).await;

    // Delete the chat's session behind the bridge's back.
    let url = w.opencode_url();
    let dir = w.workspace().join("chats/ann");
    let sessions = w.opencode_get("/session", "ann").await;
    let id = sessions[0]["id"].as_str().unwrap().to_owned();
    let r = reqwest::Client::new()
        .delete(format!("{url}/session/{id}"))
        .query(&[("directory", dir.to_str().unwrap())])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());

    w.say(DM, "G2", "second").await;
    assert_eq!(w.wait_outbox(DM, 2, T).await[1], "Andy: fresh start");
    let last = w.agent_requests().last().unwrap().clone();
    assert!(
        !last.all_text().contains(">first</message>"),
        "a new session has no old history"
    );
}

/// Past `PB_OPENCODE_MAX_INSTANCES` chat folders, the least recently used
/// folder's OpenCode instance is freed (counted in the metrics), and that
/// chat's next message boots it again and goes on in the same conversation.
#[tokio::test]
async fn a_chat_whose_instance_was_freed_goes_on_where_it_was() {
    let mut w = World::new().await;
    w.set_env("PB_OPENCODE_MAX_INSTANCES", "1");
    w.model.always(
        |r| r.last_user_text().contains("name is"),
        Reply::text("Nice to meet you, Kim."),
    );
    w.model.set_default(Reply::text("noted"));
    w.register(DM, "Kim", &[]);
    w.register(DM2, "Lee", &[]);
    w.start_bridge().await;
    let disposed = |m: &str| {
        m.lines()
            .find_map(|l| l.strip_prefix("pocketbrain_opencode_instances_disposed_total "))
            .map(|v| v.trim().parse::<u64>().unwrap())
    };
    w.say(DM, "S1", "my name is Kim").await;
    w.wait_outbox(DM, 1, T).await;
    assert_eq!(disposed(&w.http_get_text("/metrics").await), Some(0));

    // Lee's run needs a second folder: Kim's idle one is freed.
    w.say(DM2, "S2", "hello").await;
    w.wait_outbox(DM2, 1, T).await;
    let deadline = std::time::Instant::now() + T;
    while disposed(&w.http_get_text("/metrics").await) != Some(1) {
        assert!(
            std::time::Instant::now() < deadline,
            "Kim's instance was never freed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Kim again: a new instance, the same session and its history.
    w.say(DM, "S3", "what is my name?").await;
    w.wait_outbox(DM, 2, T).await;
    let kim = w
        .agent_requests()
        .into_iter()
        .find(|r| r.last_user_text().contains("what is my name?"))
        .unwrap();
    assert!(
        kim.all_text().contains("Nice to meet you, Kim."),
        "history resumed after the instance was freed"
    );
}
