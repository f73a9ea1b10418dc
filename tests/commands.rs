//! Commands in the chat, end to end: the fake channel, a real OpenCode
//! with two scripted models, the bridge answering `/new`, `/stop`,
//! `/model`, `/compact`, `/status`, `/tasks` and `/help` itself; who may
//! use them; a group's sender list; the same commands on the API.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

const MAIN: &str = OWNER;
const ANN: &str = "491511111111@s.whatsapp.net";
const BOB: &str = "491512222222@s.whatsapp.net";
const ALICE: &str = "491513333333@s.whatsapp.net";
const GROUP: &str = "120363000000009@g.us";
const T: Duration = Duration::from_secs(120);
const TOKEN: &str = "commands-test-token-5c2e81f0";

/// A world whose OpenCode offers `scripted/scripted-1` (the default) and
/// `scripted/scripted-2`.
async fn two_models() -> World {
    let mut w = World::without_opencode().await;
    let mut config: Value = serde_json::from_str(&opencode_config(&w.model)).unwrap();
    config["provider"]["scripted"]["models"]["scripted-2"] =
        json!({"name": "Scripted two", "tool_call": true});
    w.opencode = Some(OpenCode::start_with(
        &w.workspace(),
        &w.home(),
        &w.model,
        0,
        config.to_string(),
    ));
    w
}

/// A message from `sender` in `chat`.
async fn from(w: &World, chat: &str, sender: &str, id: &str, text: &str) {
    let (status, body) = w
        .inbox(json!({"chat": chat, "sender": sender, "text": text, "id": id}))
        .await;
    assert_eq!(status, 202, "{body}");
}

/// The `n`th reply in `chat` (1-based), waiting for it.
async fn reply(w: &World, chat: &str, n: usize) -> String {
    w.wait_outbox(chat, n, T).await[n - 1].clone()
}

/// Requests the model got whose last user message contains `needle`.
fn asked(w: &World, needle: &str) -> Vec<ChatRequest> {
    w.agent_requests()
        .into_iter()
        .filter(|r| r.last_user_text().contains(needle))
        .collect()
}

#[tokio::test]
async fn the_owner_steers_the_main_chat_new_model_compact_stop_status_tasks() {
    let mut w = two_models().await;
    w.model.compute(
        |r| r.last_role() == "user",
        |r| {
            let last = prompt_messages(&r.last_user_text())
                .last()
                .cloned()
                .unwrap_or_default();
            if last.contains("take your time") {
                Reply::delayed(Duration::from_secs(90), Reply::text("too late"))
            } else {
                Reply::text(format!("{} says hi", r.model()))
            }
        },
    );
    w.register(MAIN, "Me", &["--main"]);
    w.start_bridge().await;

    w.say(MAIN, "m1", "remember the word walnut").await;
    assert_eq!(reply(&w, MAIN, 1).await, "Andy: scripted-1 says hi");
    let first_session = w.opencode_get("/session", "me").await;

    // /help: every command, one line each; never the model's.
    let before = w.agent_requests().len();
    w.say(MAIN, "c1", "/help").await;
    let help = reply(&w, MAIN, 2).await;
    for c in [
        "/new", "/stop", "/status", "/model", "/compact", "/tasks", "/help",
    ] {
        assert!(help.contains(c), "{c} missing from {help}");
    }

    // /new: the next turn is a fresh session that no longer carries walnut.
    w.say(MAIN, "c2", "/new").await;
    assert!(reply(&w, MAIN, 3).await.contains("New session"));
    w.say(MAIN, "m2", "what was the word?").await;
    assert_eq!(reply(&w, MAIN, 4).await, "Andy: scripted-1 says hi");
    let fresh = asked(&w, "what was the word?").pop().unwrap();
    assert!(!fresh.all_text().contains("walnut"), "the old turn leaked");
    let sessions = w.opencode_get("/session", "me").await;
    assert!(
        sessions.as_array().map_or(0, Vec::len) > first_session.as_array().map_or(0, Vec::len),
        "no new OpenCode session: {sessions}"
    );

    // /model: lists both, sets one (the model field OpenCode sends), back.
    w.say(MAIN, "c3", "/model").await;
    let list = reply(&w, MAIN, 5).await;
    assert!(
        list.contains("scripted/scripted-1") && list.contains("scripted/scripted-2"),
        "{list}"
    );
    w.say(MAIN, "c4", "/model scripted/nope").await;
    assert!(reply(&w, MAIN, 6).await.contains("no model"));
    w.say(MAIN, "c5", "/model scripted/scripted-2").await;
    assert!(reply(&w, MAIN, 7).await.contains("scripted/scripted-2"));
    w.say(MAIN, "m3", "and now?").await;
    assert_eq!(reply(&w, MAIN, 8).await, "Andy: scripted-2 says hi");
    let (ok, list, err) = w.cli(&["chats", "list"]);
    assert!(ok && list.contains("scripted/scripted-2"), "{list}{err}");

    // /status: profile, this chat's model, session, queue, last turn, link.
    w.say(MAIN, "c6", "/status").await;
    let status = reply(&w, MAIN, 9).await;
    for part in [
        "Profile: main",
        "Model: scripted/scripted-2 (this chat's)",
        "Session: ses_",
        "Queue: 0 waiting",
        "Last turn:",
        "tokens in",
        "Link: fake-connected",
    ] {
        assert!(status.contains(part), "{part} missing from {status}");
    }
    w.say(MAIN, "c7", "/model default").await;
    assert!(reply(&w, MAIN, 10).await.contains("default"));

    // /compact: OpenCode summarises the session with the chat's model.
    let n = w.model.requests().len();
    w.say(MAIN, "c8", "/compact").await;
    assert_eq!(
        reply(&w, MAIN, 11).await,
        "Andy: Compacted: the session goes on from a summary."
    );
    assert!(
        w.model.requests().len() > n,
        "OpenCode asked no model to summarise"
    );

    // /tasks: the chat's tasks.
    w.say(MAIN, "c9", "/tasks").await;
    assert_eq!(reply(&w, MAIN, 12).await, "Andy: No scheduled tasks.");

    // /stop: a long turn ends within 2 s, is not retried, and the chat
    // answers the next message.
    w.say(MAIN, "m4", "take your time").await;
    w.wait_agent_request("take your time", T).await;
    let asked_at = Instant::now();
    w.say(MAIN, "c10", "/stop").await;
    assert_eq!(reply(&w, MAIN, 13).await, "Andy: Stopped.");
    assert!(
        asked_at.elapsed() < Duration::from_secs(2),
        "/stop took {:?}",
        asked_at.elapsed()
    );
    // The chat's turns go one at a time: this one runs once the stopped
    // one has ended.
    w.say(MAIN, "m5", "still there?").await;
    assert_eq!(reply(&w, MAIN, 14).await, "Andy: scripted-1 says hi");
    assert_eq!(
        asked(&w, "take your time").len(),
        1,
        "the stopped turn was sent again"
    );
    assert!(
        !w.outbox_texts(MAIN)
            .await
            .iter()
            .any(|t| t.contains("too late")),
        "the stopped turn's answer was delivered"
    );
    w.say(MAIN, "c11", "/stop").await;
    assert_eq!(reply(&w, MAIN, 15).await, "Andy: Nothing is running.");

    // No command reached the model, and an unknown /word does.
    assert_eq!(
        w.agent_requests()
            .iter()
            .filter(
                |r| r.last_user_text().contains("/help") || r.last_user_text().contains("/status")
            )
            .count(),
        0
    );
    assert!(before > 0);
    w.say(MAIN, "m6", "/weather in Berlin").await;
    assert_eq!(reply(&w, MAIN, 16).await, "Andy: scripted-1 says hi");
    assert_eq!(asked(&w, "/weather in Berlin").len(), 1);
}

#[tokio::test]
async fn others_may_read_but_only_allowed_senders_steer_and_start_a_group() {
    let mut w = two_models().await;
    w.model.set_default(Reply::text("ok"));
    // Member chats may choose the first model only.
    w.set_env("PB_MODELS_MEMBER", "scripted/scripted-1");
    w.register(MAIN, "Me", &["--main"]);
    w.register(ANN, "Ann", &[]);
    w.register(GROUP, "Family", &[]);
    w.start_bridge().await;

    // A DM's person may read, not steer, until the owner allows them.
    from(&w, ANN, ANN, "a1", "/help").await;
    let help = reply(&w, ANN, 1).await;
    assert!(help.contains("/status") && !help.contains("/new"), "{help}");
    from(&w, ANN, ANN, "a2", "/new").await;
    assert!(reply(&w, ANN, 2).await.contains("Only the owner"));
    from(&w, ANN, ANN, "a3", "/status").await;
    assert!(reply(&w, ANN, 3).await.contains("Profile: member"));
    let (ok, out, err) = w.cli(&["chats", "allow", ANN, ANN]);
    assert!(ok, "{out}{err}");
    from(&w, ANN, ANN, "a4", "/new").await;
    assert!(reply(&w, ANN, 4).await.contains("New session"));
    let (ok, _, err) = w.cli(&["chats", "allow", ANN, "not-a-jid"]);
    assert!(!ok && err.contains("not a person's JID"), "{err}");
    // The member profile's pin: only scripted-1 is offered and taken.
    from(&w, ANN, ANN, "a6", "/model").await;
    let list = reply(&w, ANN, 5).await;
    assert!(
        list.contains("scripted/scripted-1") && !list.contains("scripted/scripted-2"),
        "{list}"
    );
    from(&w, ANN, ANN, "a7", "/model scripted/scripted-2").await;
    assert!(reply(&w, ANN, 6).await.contains("PB_MODELS_MEMBER"));

    // A group with a list: Bob's trigger is kept as context, Alice's runs
    // the turn and carries Bob's message along.
    let (ok, out, err) = w.cli(&["chats", "allow", GROUP, ALICE]);
    assert!(ok, "{out}{err}");
    from(&w, GROUP, BOB, "g1", "@Andy what is the capital of Peru?").await;
    from(&w, GROUP, BOB, "g2", "@Andy /new").await;
    assert!(reply(&w, GROUP, 1).await.contains("Only the owner"));
    assert_quiet(&w, GROUP, 1, Duration::from_secs(2)).await;
    assert!(asked(&w, "capital of Peru").is_empty(), "Bob started a run");
    from(&w, GROUP, ALICE, "g3", "@Andy please answer Bob").await;
    assert_eq!(reply(&w, GROUP, 2).await, "Andy: ok");
    let turn = asked(&w, "please answer Bob").pop().unwrap();
    assert!(
        turn.last_user_text().contains("capital of Peru"),
        "Bob's message was not context"
    );
    from(&w, GROUP, ALICE, "g4", "@Andy /stop").await;
    assert_eq!(reply(&w, GROUP, 3).await, "Andy: Nothing is running.");
    // Off the list, anyone starts it again.
    let (ok, out, err) = w.cli(&["chats", "disallow", GROUP, ALICE]);
    assert!(ok && out.contains("no sender list"), "{out}{err}");
    from(&w, GROUP, BOB, "g5", "@Andy hello again").await;
    assert_eq!(reply(&w, GROUP, 4).await, "Andy: ok");

    // `chats set-model` is `/model` from the terminal (a guest group: no pin).
    let (ok, out, err) = w.cli(&["chats", "set-model", GROUP, "scripted/scripted-2"]);
    assert!(ok, "{out}{err}");
    from(&w, GROUP, BOB, "g6", "@Andy /status").await;
    let status = reply(&w, GROUP, 5).await;
    assert!(
        status.contains("Model: scripted/scripted-2 (this chat's)"),
        "{status}"
    );
    from(&w, GROUP, BOB, "g7", "@Andy which model?").await;
    reply(&w, GROUP, 6).await;
    assert_eq!(
        asked(&w, "which model?").pop().unwrap().model(),
        "scripted-2"
    );
    let (ok, _, err) = w.cli(&["chats", "set-model", ANN, "no-slash"]);
    assert!(!ok, "{err}");
}

#[tokio::test]
async fn commands_work_on_the_api_too() {
    let mut w = two_models().await;
    w.set_env("PB_HTTP_TOKEN", TOKEN);
    w.model.set_default(Reply::text("api ok"));
    w.start_bridge().await;
    let http = reqwest::Client::new();
    let chat = |text: &str| {
        http.post(format!("{}/api/v1/chat", w.base_url()))
            .bearer_auth(TOKEN)
            .json(&json!({"conversation": "desk", "text": text}))
            .send()
    };
    let body: Value = chat("hello").await.unwrap().json().await.unwrap();
    assert_eq!(body["reply"], "api ok", "{body}");
    let body: Value = chat("/status").await.unwrap().json().await.unwrap();
    let text = body["reply"].as_str().unwrap_or_default();
    assert!(
        text.contains("Profile:") && text.contains("Session: ses_"),
        "{body}"
    );
    let body: Value = chat("/new").await.unwrap().json().await.unwrap();
    assert!(
        body["reply"]
            .as_str()
            .unwrap_or_default()
            .contains("New session"),
        "{body}"
    );
    // `/model` sets the conversation's own model: its next turn asks it.
    let body: Value = chat("/model scripted/scripted-2")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        body["reply"]
            .as_str()
            .unwrap_or_default()
            .contains("scripted/scripted-2"),
        "{body}"
    );
    let body: Value = chat("which model now?")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["reply"], "api ok", "{body}");
    assert_eq!(
        asked(&w, "which model now?").pop().unwrap().model(),
        "scripted-2"
    );

    // The WebSocket `pocketbrain chat` uses: the answer is a message frame.
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};
    let url = format!("{}/api/v1/ws", w.base_url().replace("http://", "ws://"));
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    ws.send(Message::Text(
        json!({"type": "send", "conversation": "desk", "text": "/help"})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    // The conversation's earlier rows may still be going out to listeners
    // (the `/new` answer above): the help is the message frame naming commands.
    let help = tokio::time::timeout(T, async {
        loop {
            if let Some(Ok(Message::Text(t))) = ws.next().await {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                let text = v["text"].as_str().unwrap_or_default();
                if v["type"] == "message" && !text.starts_with("New session") {
                    return text.to_owned();
                }
            }
        }
    })
    .await
    .expect("an answer on the socket");
    assert!(
        help.contains("/compact") && help.contains("/stop"),
        "{help}"
    );
}

/// A stranger's direct message (the assistant on its own number): one reply
/// with a pairing code an hour and a notice in the main chat; nothing of
/// theirs reaches the model; the owner's `pair CODE` registers them, and
/// their next message is answered without the ones from before.
#[tokio::test]
async fn a_stranger_gets_one_pairing_code_and_the_owner_pairs_them() {
    const STRANGER: &str = "491514444444@s.whatsapp.net";
    const OTHER: &str = "491515555555@s.whatsapp.net";
    let mut w = World::new().await;
    w.set_env("PB_ASSISTANT_HAS_OWN_NUMBER", "true");
    w.model.set_default(Reply::text("hello there"));
    w.register(MAIN, "Me", &["--main"]);
    w.start_bridge().await;

    let (status, _) = w
        .inbox(
            json!({"chat": STRANGER, "sender": STRANGER, "sender_name": "Sam",
                      "text": "hi, secret plans inside", "id": "s1"}),
        )
        .await;
    assert_eq!(status, 202);
    let offer = reply(&w, STRANGER, 1).await;
    let code: String = offer
        .split("pairing code is ")
        .nth(1)
        .expect("a code in the reply")
        .chars()
        .take(6)
        .collect();
    assert_eq!(code.len(), 6, "{offer}");
    let notice = reply(&w, MAIN, 1).await;
    assert!(
        notice.contains("Sam") && notice.contains(STRANGER) && !notice.contains(&code),
        "{notice}"
    );
    // More messages within the hour: no second code.
    from(&w, STRANGER, STRANGER, "s2", "hello??").await;
    assert_quiet(&w, STRANGER, 1, Duration::from_secs(2)).await;
    assert!(
        w.agent_requests().is_empty(),
        "a stranger reached the model"
    );

    w.say(MAIN, "p1", "pair ZZZZZZ").await;
    assert!(reply(&w, MAIN, 2).await.contains("No pairing code ZZZZZZ"));
    w.say(MAIN, "p2", &format!("pair {}", code.to_lowercase()))
        .await;
    let paired = reply(&w, MAIN, 3).await;
    assert!(
        paired.contains("Paired: Sam") && paired.contains(STRANGER),
        "{paired}"
    );
    assert!(reply(&w, STRANGER, 2).await.contains("approved"));
    from(&w, STRANGER, STRANGER, "s3", "so, can we talk now?").await;
    assert_eq!(reply(&w, STRANGER, 3).await, "hello there");
    let turn = asked(&w, "can we talk now").pop().unwrap();
    assert!(
        !turn.all_text().contains("secret plans"),
        "an earlier message leaked"
    );
    let (ok, list, _) = w.cli(&["chats", "list"]);
    assert!(
        ok && list.contains(STRANGER) && list.contains("member"),
        "{list}"
    );
    // With no code waiting, "pair ..." is the owner talking to the
    // assistant (and pairs nobody).
    w.say(MAIN, "p3", &format!("pair {code}")).await;
    assert_eq!(reply(&w, MAIN, 4).await, "hello there");

    // From the terminal: list and approve; a used code cannot pair again.
    from(&w, OTHER, OTHER, "o1", "hey").await;
    reply(&w, OTHER, 1).await;
    reply(&w, MAIN, 5).await; // the notice
    w.say(MAIN, "p4", &format!("pair {code}")).await;
    assert!(reply(&w, MAIN, 6).await.contains("No pairing code"));
    let (ok, list, _) = w.cli(&["pair", "list"]);
    assert!(ok && list.contains(OTHER), "{list}");
    let other_code = list.split_whitespace().next().unwrap().to_owned();
    let (ok, out, err) = w.cli(&["pair", "approve", &other_code]);
    assert!(ok && out.contains("Paired"), "{out}{err}");
    let (ok, list, _) = w.cli(&["pair", "list"]);
    assert!(ok && list.contains("No pairing codes"), "{list}");
}

/// On a shared number a DM from someone not registered is one of the
/// owner's own conversations: never answered, whatever PB_UNKNOWN_DM says;
/// and PB_UNKNOWN_DM=ignore keeps an own number silent too.
#[tokio::test]
async fn strangers_get_nothing_on_a_shared_number_or_when_ignored() {
    const STRANGER: &str = "491514444444@s.whatsapp.net";
    for own_number in ["false", "true"] {
        let mut w = World::without_opencode().await;
        w.set_env(
            "PB_OPENCODE_URL",
            &format!("http://127.0.0.1:{}", free_port()),
        );
        w.set_env("PB_ASSISTANT_HAS_OWN_NUMBER", own_number);
        if own_number == "true" {
            w.set_env("PB_UNKNOWN_DM", "ignore");
        }
        w.register(MAIN, "Me", &["--main"]);
        w.start_bridge().await;
        from(&w, STRANGER, STRANGER, "s1", "hi").await;
        assert_quiet(&w, STRANGER, 0, Duration::from_secs(2)).await;
        assert_quiet(&w, MAIN, 0, Duration::from_millis(200)).await;
    }
}

/// PB_ACK_REACTION: the message a turn works on gets the emoji while the
/// agent works, taken back once the answer is there; a bad value is refused.
#[tokio::test]
async fn the_message_being_worked_on_gets_the_ack_reaction() {
    let mut w = World::new().await;
    w.set_env("PB_ACK_REACTION", "👀");
    w.model.set_default(Reply::delayed(
        Duration::from_secs(2),
        Reply::text("done thinking"),
    ));
    w.register(ANN, "Ann", &[]);
    w.start_bridge().await;
    let reactions = |w: &World| {
        let w_url = w.base_url();
        async move {
            let v: Value = reqwest::get(format!("{w_url}/fake/reactions"))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["reactions"].as_array().cloned().unwrap_or_default()
        }
    };
    from(&w, ANN, ANN, "r1", "think about it").await;
    w.wait_agent_request("think about it", T).await;
    let shown = reactions(&w).await;
    assert_eq!(
        shown,
        vec![json!({"chat": ANN, "id": "r1", "emoji": "👀"})],
        "while the agent works"
    );
    assert!(w.outbox_texts(ANN).await.is_empty());
    assert_eq!(reply(&w, ANN, 1).await, "Andy: done thinking");
    let deadline = Instant::now() + T;
    while reactions(&w).await.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "the reaction was never taken back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        reactions(&w).await[1],
        json!({"chat": ANN, "id": "r1", "emoji": ""})
    );

    w.set_env("PB_ACK_REACTION", "ok");
    let (ok, _, err) = w.cli(&["chats", "list"]);
    assert!(!ok && err.contains("PB_ACK_REACTION"), "{err}");
}
