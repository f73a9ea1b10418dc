//! The guards that keep a headless bridge from hanging on OpenCode: the
//! event-stream watchdog and the answers to permission requests.

mod support;

use std::time::Duration;

use serde_json::json;
use support::proxy::StallProxy;
use support::*;

const DM: &str = "491511111111@s.whatsapp.net";
// Generous: the first run in a chat boots an OpenCode instance, slow on a busy machine.
const T: Duration = Duration::from_secs(120);

#[tokio::test]
async fn a_stream_that_goes_quiet_is_reopened_and_the_run_still_finishes() {
    let mut w = World::new().await;
    let proxy = StallProxy::start(&w.opencode_url()).await;
    w.set_env("PB_OPENCODE_URL", &proxy.url());
    // Longer than OpenCode's 10 s heartbeat, so a live stream never trips it.
    w.set_env("PB_STREAM_WATCHDOG", "15s");
    w.model.always(
        |r| r.last_user_text().contains("ping"),
        Reply::delayed(Duration::from_secs(1), Reply::text("pong")),
    );
    w.register(DM, "Ann", &[]);
    w.start_bridge().await;
    w.say(DM, "P1", "ping one").await;
    assert_eq!(w.wait_outbox(DM, 1, T).await, vec!["Andy: pong"]);
    let opened = proxy.streams_opened();
    assert!(opened >= 1);

    // The stream stays open but OpenCode's heartbeats and events no longer
    // arrive: only the watchdog can tell.
    assert!(proxy.silence_streams() >= 1);
    w.say(DM, "P2", "ping two").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while proxy.streams_opened() <= opened {
        assert!(
            std::time::Instant::now() < deadline,
            "the quiet stream was never reopened"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The run that lost its events reconciles and answers once.
    assert_eq!(
        w.wait_outbox(DM, 2, T).await,
        vec!["Andy: pong", "Andy: pong"]
    );
    w.wait_health(T, |h| h["checks"]["opencode"] == "opencode-ok")
        .await;
    // The new stream carries the next run.
    w.say(DM, "P3", "ping three").await;
    assert_eq!(w.wait_outbox(DM, 3, T).await.len(), 3);
    assert_quiet(&w, DM, 3, Duration::from_secs(1)).await;
}

/// OpenCode configured to ask before running bash, and a model that runs a
/// bash command leaving a marker file, then reports the command's output.
async fn asking_world(policy: &str) -> World {
    let mut w = World::with_opencode_config(json!({"permission": {"bash": "ask"}})).await;
    w.set_env("PB_PERMISSION", policy);
    runs_marker_bash(&w.model);
    // PB_PERMISSION answers the owner's own chat (other profiles ask the owner).
    w.register(DM, "Ann", &["--profile", "main"]);
    w.start_bridge().await;
    w
}

#[tokio::test]
async fn a_permission_request_is_allowed_when_configured_so() {
    let w = asking_world("allow").await;
    w.say(DM, "Q1", "please run it").await;
    let texts = w.wait_outbox(DM, 1, T).await;
    assert!(texts[0].contains("MARKER_42"), "{texts:?}");
    assert!(w.workspace().join("chats/ann/marker.txt").is_file());
}

#[tokio::test]
async fn a_permission_request_is_rejected_when_configured_so() {
    let w = asking_world("reject").await;
    w.say(DM, "Q1", "please run it").await;
    // The run ends instead of waiting on a person, and says why it stopped.
    let texts = w.wait_outbox(DM, 1, T).await;
    assert_eq!(
        texts,
        vec!["Andy: (I stopped: I am not allowed to use bash here.)"]
    );
    assert!(
        !w.workspace().join("chats/ann/marker.txt").exists(),
        "the command did not run"
    );
    // A refusal is an answer, not a failure: no retry asks again.
    assert_quiet(&w, DM, 1, Duration::from_secs(3)).await;
    let asked = w
        .agent_requests()
        .iter()
        .filter(|r| r.last_role() == "user")
        .count();
    assert_eq!(asked, 1, "the prompt was sent once");
    let h = w.health().await;
    assert!(h["codes"].as_array().unwrap().is_empty(), "{h}");
}
