//! Exactly-once under `kill -9`: every accepted message in a registered chat
//! is answered, and no reply is delivered twice.

mod support;

use std::time::Duration;

use support::*;

const DM: &str = "491511111111@s.whatsapp.net";
// Generous: the first run in a chat boots an OpenCode instance, slow on a busy machine.
const T: Duration = Duration::from_secs(120);

#[tokio::test]
async fn kill9_mid_run_then_restart_delivers_the_answer_once_without_reprompting() {
    let mut w = World::new().await;
    w.model.on(
        |r| r.last_user_text().contains("slow"),
        vec![Reply::delayed(
            Duration::from_secs(3),
            Reply::text("slow answer"),
        )],
    );
    w.register(DM, "Ann", &[]);
    w.start_bridge().await;
    w.say(DM, "K1", "slow question").await;
    w.model.wait_for_requests(1, T).await;
    w.kill9();

    w.start_bridge().await;
    assert_eq!(w.wait_outbox(DM, 1, T).await, vec!["Andy: slow answer"]);
    assert_quiet(&w, DM, 1, Duration::from_secs(3)).await;
    assert_eq!(
        w.agent_requests().len(),
        1,
        "OpenCode finished the run; the prompt was not sent again"
    );
}

#[tokio::test]
async fn kill9_with_a_reply_waiting_in_the_outbox_delivers_it_once() {
    let mut w = World::new().await;
    w.model.set_default(Reply::text("kept safe"));
    w.register(DM, "Ann", &[]);
    w.start_bridge().await;
    w.set_link(false).await;
    w.say(DM, "K1", "hello").await;
    w.wait_health(T, |h| h["store"]["outbox_pending"] == 1)
        .await;
    w.kill9();

    w.start_bridge().await; // the phone is reachable again
    assert_eq!(w.wait_outbox(DM, 1, T).await, vec!["Andy: kept safe"]);
    assert_quiet(&w, DM, 1, Duration::from_secs(2)).await;
    assert_eq!(w.agent_requests().len(), 1);
}

#[tokio::test]
async fn kill9_right_after_delivery_does_not_resend_or_rerun() {
    let mut w = World::new().await;
    w.model.set_default(Reply::text("once only"));
    w.register(DM, "Ann", &[]);
    w.start_bridge().await;
    w.say(DM, "K1", "hello").await;
    w.wait_outbox(DM, 1, T).await;
    w.kill9();
    w.start_bridge().await;
    assert_quiet(&w, DM, 1, Duration::from_secs(3)).await;
    assert_eq!(w.agent_requests().len(), 1);
}

/// kill -9 at many points of a run's life, one message at a time: each is
/// answered exactly once, in order.
#[tokio::test]
async fn kill9_at_any_point_keeps_exactly_once() {
    let mut w = World::new().await;
    let delays_ms = [0u64, 30, 120, 300, 600, 900, 1300, 2000];
    for i in 0..delays_ms.len() {
        let (q, a) = (format!("question-{i}"), format!("answer-{i}"));
        w.model.always(
            move |r| r.last_user_text().contains(&q),
            Reply::text(a.clone()),
        );
    }
    w.register(DM, "Ann", &[]);
    w.start_bridge().await;
    for (i, delay) in delays_ms.iter().enumerate() {
        w.say(DM, &format!("Q{i}"), &format!("question-{i}")).await;
        tokio::time::sleep(Duration::from_millis(*delay)).await;
        w.kill9();
        w.start_bridge().await;
        w.wait_outbox(DM, i + 1, T).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let want: Vec<String> = (0..delays_ms.len())
        .map(|i| format!("Andy: answer-{i}"))
        .collect();
    assert_eq!(w.outbox_texts(DM).await, want);
}
