//! The local API end to end: the real bridge binary (fake channel beside
//! the API), a real `opencode serve` and the scripted model.

mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use support::*;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const TOKEN: &str = "owner-token-0123456789abcdef";
const DM: &str = "491511111111@s.whatsapp.net";
// Generous: the first run in a chat boots an OpenCode instance.
const T: Duration = Duration::from_secs(120);

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(180))
        .build()
        .unwrap()
}

/// `pocketbrain api-keys create <args>`; the key.
fn create_key(w: &World, args: &[&str]) -> String {
    let mut all = vec!["api-keys", "create"];
    all.extend_from_slice(args);
    let (ok, out, err) = w.cli(&all);
    assert!(ok, "{out}{err}");
    out.trim().to_owned()
}

async fn call(
    method: reqwest::Method,
    url: String,
    auth: Option<&str>,
    body: Option<Value>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut r = http().request(method, url);
    if let Some(a) = auth {
        r = r.bearer_auth(a);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let res = r.send().await.unwrap();
    let (status, headers) = (res.status().as_u16(), res.headers().clone());
    (status, headers, res.json().await.unwrap_or(Value::Null))
}

/// The (event, data) pairs of a finished Server-Sent Events body.
fn sse_events(body: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for block in body.split("\n\n") {
        let mut event = String::from("message");
        let mut data = Vec::new();
        for line in block.lines() {
            if let Some(e) = line.strip_prefix("event:") {
                event = e.trim().to_owned();
            } else if let Some(d) = line.strip_prefix("data:") {
                data.push(d.strip_prefix(' ').unwrap_or(d).to_owned());
            }
        }
        if !data.is_empty() {
            out.push((event, data.join("\n")));
        }
    }
    out
}

/// A world whose model echoes each message; with the owner's token set
/// unless `token` is false (the fake phone's routes then need none).
async fn api_world(token: bool) -> World {
    let mut w = World::new().await;
    if token {
        w.set_env("PB_HTTP_TOKEN", TOKEN);
    }
    w.model.compute(
        |r| r.last_role() == "user" && !r.last_user_text().contains("<scheduled_task "),
        echo_reply,
    );
    w
}

#[tokio::test]
async fn sync_streamed_and_openai_replies_are_the_stored_ones() {
    let mut w = api_world(true).await;
    let key = create_key(&w, &["laptop"]);
    w.start_bridge().await;
    let base = w.base_url();

    // Sync: the reply as stored.
    let (status, _, body) = call(
        reqwest::Method::POST,
        format!("{base}/api/v1/chat"),
        Some(&key),
        Some(json!({"text": "hello sync"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["conversation"], "laptop");
    assert_eq!(body["reply"], "echo: hello sync");
    assert_eq!(body["messages"].as_array().unwrap().len(), 1);

    // Streamed: deltas as produced, then the reply; they join to it.
    let res = http()
        .post(format!("{base}/api/v1/chat/stream"))
        .bearer_auth(&key)
        .json(&json!({"conversation": "laptop", "text": "stream please"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let events = sse_events(&res.text().await.unwrap());
    let deltas: Vec<String> = events
        .iter()
        .filter(|(e, _)| e == "delta")
        .map(|(_, d)| {
            serde_json::from_str::<Value>(d).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let (last_event, last) = events.last().expect("a final event");
    assert_eq!(last_event, "reply", "{events:?}");
    let reply: Value = serde_json::from_str(last).unwrap();
    assert_eq!(reply["reply"], STREAMED);
    assert!(deltas.len() > 1, "streamed in pieces: {deltas:?}");
    assert_eq!(deltas.concat().trim(), STREAMED);

    // The conversation holds both turns, both ways, in order.
    let (status, _, conv) = call(
        reqwest::Method::GET,
        format!("{base}/api/v1/conversations/laptop"),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(status, 200, "{conv}");
    let seen: Vec<(String, String)> = conv["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["direction"].as_str().unwrap().into(),
                m["text"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("in".into(), "hello sync".into()),
            ("out".into(), "echo: hello sync".into()),
            ("in".into(), "stream please".into()),
            ("out".into(), STREAMED.into()),
        ]
    );
    // The prompt of an API conversation has the same shape as any chat's.
    let req = w
        .agent_requests()
        .into_iter()
        .find(|r| r.last_user_text().contains("hello sync"))
        .unwrap();
    assert!(req.last_user_text().contains("jid=\"api:laptop\""));

    // OpenAI-compatible, as a plain HTTP client uses it; the owner's token
    // and the `user` field name the conversation.
    let (status, _, body) = call(
        reqwest::Method::POST,
        format!("{base}/v1/chat/completions"),
        Some(TOKEN),
        Some(json!({"model": "anything", "user": "oa", "messages": [
            {"role": "system", "content": "ignored"},
            {"role": "user", "content": "hi openai"}]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["content"], "echo: hi openai");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");

    let res = http()
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(TOKEN)
        .json(&json!({"model": "x", "user": "oa", "stream": true,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "stream please"}]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let events = sse_events(&res.text().await.unwrap());
    assert_eq!(events.last().unwrap().1, "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|(_, d)| serde_json::from_str(d).unwrap())
        .collect();
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text.trim(), STREAMED);
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );

    // The owner lists every API conversation; a key only its own.
    let (_, _, all) = call(
        reqwest::Method::GET,
        format!("{base}/api/v1/conversations"),
        Some(TOKEN),
        None,
    )
    .await;
    let ids: Vec<&str> = all["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["laptop", "oa"]);
    let (_, _, mine) = call(
        reqwest::Method::GET,
        format!("{base}/api/v1/conversations"),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(mine["conversations"].as_array().unwrap().len(), 1);
    let (status, _, _) = call(
        reqwest::Method::GET,
        format!("{base}/api/v1/conversations/oa"),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(status, 403);

    // Forget with purge: history, folder and OpenCode session gone; the
    // next message starts over.
    let folder = w.workspace().join("chats/api-laptop");
    assert!(folder.is_dir());
    let db = rusqlite::Connection::open(w.data_dir().join("pocketbrain.sqlite3")).unwrap();
    let session: String = db
        .query_row(
            "SELECT session_id FROM sessions WHERE chat = 'api:laptop'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    drop(db);
    let in_opencode = w
        .opencode_get(&format!("/session/{session}"), "api-oa")
        .await;
    assert_eq!(in_opencode["id"], session.as_str(), "{in_opencode}");
    // A link the agent planted to a folder outside: removed as a link.
    let outside = w.home().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("keep.txt"), "mine").unwrap();
    std::os::unix::fs::symlink(&outside, folder.join("elsewhere")).unwrap();
    let (status, _, body) = call(
        reqwest::Method::DELETE,
        format!("{base}/api/v1/conversations/laptop?purge=true"),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(
        (status, body["purged"].as_bool()),
        (200, Some(true)),
        "{body}"
    );
    assert!(!folder.exists());
    assert_eq!(
        std::fs::read_to_string(outside.join("keep.txt")).unwrap(),
        "mine"
    );
    let gone = w
        .opencode_get(&format!("/session/{session}"), "api-oa")
        .await;
    assert_eq!(gone["name"], "NotFoundError", "{gone}");
    let (status, _, _) = call(
        reqwest::Method::GET,
        format!("{base}/api/v1/conversations/laptop"),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (_, _, body) = call(
        reqwest::Method::POST,
        format!("{base}/api/v1/chat"),
        Some(&key),
        Some(json!({"text": "again"})),
    )
    .await;
    assert_eq!(body["reply"], "echo: again");
}

#[tokio::test]
async fn a_purge_never_removes_anything_through_a_symlink() {
    let mut w = World::without_opencode().await;
    // No session exists, so OpenCode is never asked.
    w.set_env(
        "PB_OPENCODE_URL",
        &format!("http://127.0.0.1:{}", free_port()),
    );
    w.set_env("PB_HTTP_TOKEN", TOKEN);
    w.register("api:notes", "Notes", &["--folder", "api-notes"]);
    w.start_bridge().await;
    // The agent replaced `chats` with a link to a folder of the owner's
    // that has a folder named like the conversation's.
    let outside = w.home().join("outside");
    std::fs::create_dir_all(outside.join("api-notes/deep")).unwrap();
    std::fs::write(outside.join("api-notes/keep.txt"), "mine").unwrap();
    std::fs::write(outside.join("api-notes/deep/keep.txt"), "mine too").unwrap();
    let chats = w.workspace().join("chats");
    if chats.exists() {
        std::fs::remove_dir_all(&chats).unwrap();
    }
    std::os::unix::fs::symlink(&outside, &chats).unwrap();

    let (status, _, body) = call(
        reqwest::Method::DELETE,
        format!("{}/api/v1/conversations/notes?purge=true", w.base_url()),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["forgotten"], true, "{body}");
    assert_eq!(
        std::fs::read_to_string(outside.join("api-notes/keep.txt")).unwrap(),
        "mine"
    );
    assert_eq!(
        std::fs::read_to_string(outside.join("api-notes/deep/keep.txt")).unwrap(),
        "mine too"
    );
}

#[tokio::test]
async fn keys_are_checked_rate_limited_and_web_origins_refused() {
    let mut w = World::without_opencode().await;
    // No run happens here: OpenCode is never asked.
    w.set_env(
        "PB_OPENCODE_URL",
        &format!("http://127.0.0.1:{}", free_port()),
    );
    w.set_env("PB_HTTP_TOKEN", TOKEN);
    w.set_env("PB_API_RATE_PER_MINUTE", "3");
    w.set_env("PB_API_CORS_ORIGINS", "http://localhost:5173");
    let key = create_key(
        &w,
        &["phone", "--conversation", "notes", "--profile", "guest"],
    );
    let old = create_key(&w, &["old"]);
    let (ok, out, _) = w.cli(&["api-keys", "revoke", "old"]);
    assert!(ok, "{out}");
    let (ok, list, _) = w.cli(&["api-keys", "list"]);
    assert!(
        ok && list.contains("api:notes") && list.contains("revoked"),
        "{list}"
    );
    assert!(
        !list.contains(&key) && !list.contains(&old),
        "keys are never shown again"
    );
    w.start_bridge().await;
    let base = w.base_url();
    let list_url = format!("{base}/api/v1/conversations");

    for (auth, why) in [
        (None, "missing credentials"),
        (
            Some("pb_0000000000000000000000000000000000000000"),
            "unknown or revoked",
        ),
        (Some(old.as_str()), "unknown or revoked"),
    ] {
        let (status, _, body) = call(reqwest::Method::GET, list_url.clone(), auth, None).await;
        assert_eq!(status, 401, "{auth:?}: {body}");
        assert!(body["error"].as_str().unwrap().contains(why), "{body}");
    }
    // The owner's token is not limited.
    for _ in 0..5 {
        let (status, _, _) = call(reqwest::Method::GET, list_url.clone(), Some(TOKEN), None).await;
        assert_eq!(status, 200);
    }
    // A key: three a minute, then 429 with Retry-After.
    for _ in 0..3 {
        let (status, _, body) =
            call(reqwest::Method::GET, list_url.clone(), Some(&key), None).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, headers, body) =
        call(reqwest::Method::GET, list_url.clone(), Some(&key), None).await;
    assert_eq!(status, 429, "{body}");
    let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=20).contains(&wait), "{wait}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("PB_API_RATE_PER_MINUTE")
    );

    // A key may use its own conversation only (checked before anything runs).
    let (status, _, body) = call(
        reqwest::Method::POST,
        format!("{base}/api/v1/chat"),
        Some(TOKEN),
        Some(json!({"conversation": "Bad Name", "text": "x"})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, _, body) = call(
        reqwest::Method::POST,
        format!("{base}/api/v1/chat"),
        Some(TOKEN),
        Some(json!({"text": "x", "extra": 1})),
    )
    .await;
    assert!(
        status == 400 && body["error"].as_str().unwrap().contains("unknown field"),
        "{body}"
    );

    // CORS: a preflight from an origin not allowed is refused; an allowed
    // one is answered with its origin.
    let preflight = |origin: &str| {
        http()
            .request(reqwest::Method::OPTIONS, format!("{base}/api/v1/chat"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .send()
    };
    let res = preflight("https://evil.example").await.unwrap();
    assert_eq!(res.status(), 403);
    assert!(res.headers().get("access-control-allow-origin").is_none());
    let res = preflight("http://localhost:5173").await.unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "http://localhost:5173"
    );
    // A page elsewhere cannot use even the owner's token.
    let res = http()
        .get(&list_url)
        .bearer_auth(TOKEN)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);

    // The OpenAPI document needs no credential and lists every route.
    let (status, _, doc) = call(
        reqwest::Method::GET,
        format!("{base}/api/v1/openapi.json"),
        None,
        None,
    )
    .await;
    assert_eq!(status, 200);
    for path in [
        "/api/v1/chat",
        "/api/v1/chat/stream",
        "/api/v1/conversations",
        "/api/v1/conversations/{id}",
        "/api/v1/approvals",
        "/api/v1/approvals/{code}",
        "/api/v1/chats",
        "/api/v1/chats/{chat}",
        "/api/v1/ws",
        "/v1/chat/completions",
        "/v1/models",
        "/api/v1/whatsapp/link",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from the document"
        );
    }
}

#[tokio::test]
async fn two_api_conversations_and_a_whatsapp_chat_at_once_each_answered_once_in_order() {
    let mut w = api_world(false).await;
    w.register(DM, "Ann", &["--trigger", "always"]);
    let keys = [create_key(&w, &["alpha"]), create_key(&w, &["beta"])];
    w.start_bridge().await;
    let base = w.base_url();
    let conversation = |name: &'static str| {
        let base = base.clone();
        let key = keys[usize::from(name == "beta")].clone();
        async move {
            let mut replies = Vec::new();
            for i in 1..=3 {
                let (status, _, body) = call(
                    reqwest::Method::POST,
                    format!("{base}/api/v1/chat"),
                    Some(&key),
                    Some(json!({"conversation": name, "text": format!("{name} {i}")})),
                )
                .await;
                assert_eq!(status, 200, "{body}");
                replies.push(body["reply"].as_str().unwrap().to_owned());
            }
            replies
        }
    };
    let whatsapp = async {
        for i in 1..=3 {
            w.say(DM, &format!("W{i}"), &format!("wa {i}")).await;
            w.wait_outbox(DM, i, T).await;
        }
    };
    let (a, b, ()) = tokio::join!(conversation("alpha"), conversation("beta"), whatsapp);
    assert_eq!(a, ["echo: alpha 1", "echo: alpha 2", "echo: alpha 3"]);
    assert_eq!(b, ["echo: beta 1", "echo: beta 2", "echo: beta 3"]);
    assert_eq!(
        w.outbox_texts(DM).await,
        ["Andy: echo: wa 1", "Andy: echo: wa 2", "Andy: echo: wa 3"]
    );
    // Nothing of the API went to the fake phone, and each conversation
    // holds its own three answers once.
    assert!(w.outbox(None).await.iter().all(|m| m["chat"] == DM));
    for (name, key) in ["alpha", "beta"].iter().zip(&keys) {
        let (_, _, conv) = call(
            reqwest::Method::GET,
            format!("{base}/api/v1/conversations/{name}"),
            Some(key),
            None,
        )
        .await;
        let out: Vec<&str> = conv["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["direction"] == "out")
            .map(|m| m["text"].as_str().unwrap())
            .collect();
        assert_eq!(out.len(), 3, "{conv}");
    }
}

#[tokio::test]
async fn the_owner_lists_every_registered_chat_and_reads_a_whatsapp_chats_history() {
    let mut w = api_world(true).await;
    w.register(DM, "Ann", &[]);
    let key = create_key(&w, &["laptop"]);
    w.start_bridge().await;
    let base = w.base_url();
    w.say(DM, "W1", "hello from the phone").await;
    let (status, _, body) = call(
        reqwest::Method::POST,
        format!("{base}/api/v1/chat"),
        Some(TOKEN),
        Some(json!({"conversation": "desk", "text": "hi desk"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let (status, _, body) = call(
        reqwest::Method::GET,
        format!("{base}/api/v1/chats"),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let chats = body["chats"].as_array().unwrap();
    let ann = chats.iter().find(|c| c["chat"] == DM).expect("Ann listed");
    assert_eq!(ann["name"], "Ann");
    assert_eq!(ann["kind"], "whatsapp");
    assert_eq!(ann["profile"], "member");
    assert!(ann["last_activity"].as_i64().unwrap() > 0, "{ann}");
    // No model of its own (`/model`): the default, and which one it is
    // (OpenCode's configured model: this world sets no PB_OPENCODE_MODEL).
    assert_eq!(ann["model"], Value::Null, "{ann}");
    assert_eq!(ann["default_model"], "scripted/scripted-1", "{ann}");
    assert!(ann["pending"].as_i64().is_some(), "{ann}");
    let desk = chats
        .iter()
        .find(|c| c["chat"] == "api:desk")
        .expect("desk listed");
    assert_eq!(
        (&desk["kind"], &desk["conversation"]),
        (&json!("api"), &json!("desk"))
    );

    // A WhatsApp chat's history, both ways, oldest first (the fake
    // phone's outbox needs the token this world sets: the history is
    // what is waited on).
    let end = std::time::Instant::now() + T;
    let body = loop {
        let (status, _, body) = call(
            reqwest::Method::GET,
            format!("{base}/api/v1/chats/{DM}?limit=10"),
            Some(TOKEN),
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        if body["messages"].as_array().unwrap().len() >= 2 {
            break body;
        }
        assert!(std::time::Instant::now() < end, "no reply in {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let texts: Vec<(&str, &str)> = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["direction"].as_str().unwrap(),
                m["text"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        texts,
        vec![
            ("in", "hello from the phone"),
            ("out", "Andy: echo: hello from the phone")
        ]
    );

    // A model of its own (`/model`): that one, and no default to show.
    let (ok, out, err) = w.cli(&["chats", "set-model", "api:desk", "scripted/scripted-2"]);
    assert!(ok, "{out}{err}");
    let (_, _, body) = call(
        reqwest::Method::GET,
        format!("{base}/api/v1/chats"),
        Some(TOKEN),
        None,
    )
    .await;
    let desk = body["chats"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["chat"] == "api:desk")
        .cloned()
        .unwrap();
    assert_eq!(
        (&desk["model"], &desk["default_model"]),
        (&json!("scripted/scripted-2"), &Value::Null),
        "{desk}"
    );

    // Not a registered chat, not a JID, not the owner.
    for (path, auth, want) in [
        ("/api/v1/chats/491519999999@s.whatsapp.net", TOKEN, 404),
        ("/api/v1/chats/not-a-jid", TOKEN, 400),
        ("/api/v1/chats", key.as_str(), 403),
        (&format!("/api/v1/chats/{DM}") as &str, key.as_str(), 403),
        (&format!("/api/v1/chats/{DM}?limit=0") as &str, TOKEN, 400),
    ] {
        let (status, _, body) = call(
            reqwest::Method::GET,
            format!("{base}{path}"),
            Some(auth),
            None,
        )
        .await;
        assert_eq!(status, want, "{path}: {body}");
        assert!(body["error"].is_string(), "{path}: {body}");
    }
}

async fn ws_connect(
    base: &str,
    auth: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let url = format!("{}/api/v1/ws", base.replace("http://", "ws://"));
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {auth}").parse().unwrap());
    tokio_tungstenite::connect_async(req).await.unwrap().0
}

/// Frames until one matches; all of them.
async fn ws_until(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    done: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    let mut seen = Vec::new();
    let end = tokio::time::Instant::now() + T;
    loop {
        let frame = tokio::time::timeout_at(end, ws.next())
            .await
            .unwrap_or_else(|_| panic!("no matching frame; saw {seen:?}"))
            .expect("socket open")
            .unwrap();
        if let Message::Text(t) = frame {
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            let stop = done(&v);
            seen.push(v);
            if stop {
                return seen;
            }
        }
    }
}

// Several threads: the test waits for the terminal client's output on
// blocking reads while the scripted model (on this runtime) answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_streams_replies_and_a_task_result_and_the_terminal_client_talks() {
    let mut w = api_world(true).await;
    w.model.always(
        |r| r.last_user_text().contains("<scheduled_task "),
        Reply::text("Time to stretch!"),
    );
    w.start_bridge().await;
    let base = w.base_url();
    let mut ws = ws_connect(&base, TOKEN).await;
    ws.send(Message::Text(
        json!({"type": "send", "conversation": "desk", "text": "stream please"})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let frames = ws_until(&mut ws, |v| v["type"] == "message").await;
    // The owner hears of the main channel's link, once on connecting.
    let links: Vec<&Value> = frames.iter().filter(|f| f["type"] == "link").collect();
    assert_eq!(links.len(), 1, "{frames:?}");
    assert_eq!(
        (&links[0]["up"], &links[0]["code"]),
        (&json!(true), &json!("fake-connected"))
    );
    let frames: Vec<Value> = frames.into_iter().filter(|f| f["type"] != "link").collect();
    assert_eq!(frames[0]["type"], "accepted");
    let streamed: String = frames
        .iter()
        .filter(|f| f["type"] == "delta")
        .map(|f| f["text"].as_str().unwrap())
        .collect();
    assert_eq!(streamed.trim(), STREAMED);
    assert_eq!(frames.last().unwrap()["text"], STREAMED);
    assert_eq!(frames.last().unwrap()["conversation"], "desk");

    // The terminal client, as a person uses it, in another conversation
    // the socket above subscribes to as well.
    ws.send(Message::Text(
        json!({"type": "subscribe", "conversation": "term"})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    ws_until(&mut ws, |v| v["type"] == "subscribed").await;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pocketbrain"))
        .args(["chat", "term"])
        .env_clear()
        .env("PB_DATA_DIR", w.data_dir())
        .env("PB_HTTP_TOKEN", TOKEN)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut stdout = stdout;
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0
                || tx
                    .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                    .is_err()
            {
                break;
            }
        }
    });
    let mut printed = String::new();
    let mut wait_for = |needle: &str| {
        let end = std::time::Instant::now() + T;
        while !printed.contains(needle) {
            let left = end.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(s) => printed.push_str(&s),
                Err(_) => panic!("{needle:?} never printed; got {printed:?}"),
            }
        }
        printed.clone()
    };
    wait_for("Talking in term");
    use std::io::Write;
    writeln!(stdin, "from the terminal").unwrap();
    let shown = wait_for("echo: from the terminal");
    assert!(shown.contains("[term] echo: from the terminal"), "{shown}");
    writeln!(stdin, "/quit").unwrap();
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < end, "chat did not quit");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The other subscriber saw that exchange too.
    let frames = ws_until(&mut ws, |v| v["type"] == "message").await;
    assert_eq!(frames.last().unwrap()["text"], "echo: from the terminal");
    // A scheduled task's result arrives on the socket.
    let at = (chrono::Utc::now() + chrono::Duration::seconds(2))
        .with_timezone(&chrono_tz::Europe::Berlin)
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string();
    let (ok, out, err) = w.cli(&[
        "tasks",
        "add",
        "api:desk",
        "--prompt",
        "stretch reminder",
        "--once",
        &at,
    ]);
    assert!(ok, "{out}{err}");
    let frames = ws_until(&mut ws, |v| v["type"] == "message").await;
    assert_eq!(frames.last().unwrap()["text"], "Time to stretch!");
}

/// The pinned schemathesis, installed by scripts/install-tools.sh.
fn schemathesis_bin() -> std::path::PathBuf {
    let bin = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/venv/bin/schemathesis");
    assert!(
        bin.is_file(),
        "{} is missing: run scripts/install-tools.sh (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// The OpenAPI document drives a schema fuzzer for a short while: every
/// route answers as the document says, and nothing answers with a 5xx.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_holds_under_a_schema_fuzzer() {
    let mut w = api_world(false).await;
    w.set_env("PB_API_RATE_PER_MINUTE", "100000");
    let key = create_key(&w, &["fuzz"]);
    w.start_bridge().await;
    let base = w.base_url();
    // Its cache goes into the test's folder, not the repository.
    let scratch = w.dir.path().to_owned();
    // The conversation's OpenCode instance boots before the fuzzer hurries.
    let (status, _, body) = call(
        reqwest::Method::POST,
        format!("{base}/api/v1/chat"),
        Some(&key),
        Some(json!({"text": "warm up"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(schemathesis_bin())
            .args([
                "run",
                &format!("{base}/api/v1/openapi.json"),
                "--url",
                &base,
                "--header",
                &format!("Authorization: Bearer {key}"),
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
                "--max-examples",
                "5",
                "--phases",
                "examples,coverage,fuzzing",
                "--request-timeout",
                "60",
                "--no-color",
            ])
            .env("SCHEMATHESIS_TELEMETRY", "false")
            .current_dir(&scratch)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{report}");
}

/// A key's WebSocket is held to the key's rules: each frame counts against
/// its rate (a refused frame says when to retry and is not acted on), and
/// the socket is closed soon after the key is revoked; a revoked key
/// cannot open another.
#[tokio::test]
async fn a_keys_websocket_is_rate_limited_and_closed_when_the_key_is_revoked() {
    let mut w = World::without_opencode().await;
    // No run happens here: OpenCode is never asked.
    w.set_env(
        "PB_OPENCODE_URL",
        &format!("http://127.0.0.1:{}", free_port()),
    );
    w.set_env("PB_HTTP_TOKEN", TOKEN);
    w.set_env("PB_API_RATE_PER_MINUTE", "3");
    let key = create_key(&w, &["tablet", "--conversation", "notes"]);
    w.start_bridge().await;
    let base = w.base_url();

    // The upgrade is the first request of three; two frames pass.
    let mut ws = ws_connect(&base, &key).await;
    let subscribe = || Message::Text(json!({"type": "subscribe"}).to_string().into());
    for _ in 0..2 {
        ws.send(subscribe()).await.unwrap();
        ws_until(&mut ws, |v| v["type"] == "subscribed").await;
    }
    ws.send(subscribe()).await.unwrap();
    let frames = ws_until(&mut ws, |v| v["type"] == "error").await;
    let refusal = frames.last().unwrap();
    assert!(
        refusal["error"]
            .as_str()
            .unwrap()
            .contains("PB_API_RATE_PER_MINUTE"),
        "{refusal}"
    );
    let wait = refusal["retry_after"].as_u64().unwrap();
    assert!((1..=20).contains(&wait), "{refusal}");
    assert!(
        !frames.iter().any(|v| v["type"] == "subscribed"),
        "the refused frame was acted on: {frames:?}"
    );
    // The owner's socket is not limited.
    let mut owner = ws_connect(&base, TOKEN).await;
    for _ in 0..5 {
        owner.send(subscribe()).await.unwrap();
        ws_until(&mut owner, |v| v["type"] == "subscribed").await;
    }

    // Revoked (by the CLI, another process): the key's socket is closed
    // with a reason; the owner's stays open.
    let (ok, out, err) = w.cli(&["api-keys", "revoke", "tablet"]);
    assert!(ok, "{out}{err}");
    let closed = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => continue,
                other => panic!("the socket ended without a close frame: {other:?}"),
            }
        }
    })
    .await
    .expect("the revoked key's socket was closed within 20 s")
    .expect("a close frame with a reason");
    assert_eq!(u16::from(closed.code), 1008);
    assert_eq!(closed.reason.as_str(), "API key revoked");
    owner.send(subscribe()).await.unwrap();
    ws_until(&mut owner, |v| v["type"] == "subscribed").await;

    let url = format!("{}/api/v1/ws", base.replace("http://", "ws://"));
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
            assert_eq!(res.status(), 401)
        }
        other => panic!("a revoked key opened a socket: {other:?}"),
    }
}

/// A new link by phone number through the API, against the fake phone:
/// refused while the link is up and for a number that is not one; while
/// it is down, the made-up pairing code is the link's, on GET and in the
/// owner's `link` frames, as a QR code's text is; a number asked for while
/// it pairs by QR code switches to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_link_by_phone_number_shows_its_pairing_code_on_get_and_the_socket() {
    let mut w = api_world(true).await;
    w.start_bridge().await;
    let base = w.base_url();
    let link = format!("{base}/api/v1/whatsapp/link");
    let post = |body: Option<Value>| call(reqwest::Method::POST, link.clone(), Some(TOKEN), body);
    let mut ws = ws_connect(&base, TOKEN).await;
    ws_until(&mut ws, |v| {
        v["type"] == "link" && v["code"] == "fake-connected"
    })
    .await;

    // The owner's only.
    let key = create_key(&w, &["laptop"]);
    let phone = json!({"phone": "+49 151-1234 5678"});
    let (status, _, _) = call(
        reqwest::Method::POST,
        link.clone(),
        Some(&key),
        Some(phone.clone()),
    )
    .await;
    assert_eq!(status, 401);
    // Up: a new link would throw it away.
    let (status, _, body) = post(Some(phone.clone())).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("has not ended"),
        "{body}"
    );
    w.set_link(false).await;
    // Not a number: 400, said why, nothing changed.
    for (bad, why) in [
        (json!({"phone": "12"}), "7 to 15 digits"),
        (json!({"phone": "49 151 abc"}), "not a digit"),
        (json!({"phone": ""}), "7 to 15 digits"),
        (json!({"phone": null, "extra": 1}), "unknown field"),
        (json!(["4915112345678"]), "malformed JSON"),
    ] {
        let (status, _, body) = post(Some(bad.clone())).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains(why),
            "{bad}: {body}"
        );
    }
    let (status, _, body) = call(reqwest::Method::GET, link.clone(), Some(TOKEN), None).await;
    assert_eq!(status, 200);
    assert_eq!(
        (&body["code"], &body["pairing"]),
        (&json!("fake-disconnected"), &Value::Null)
    );

    // No number: a QR code; then a number: switched to its pairing code.
    let (status, _, body) = post(None).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["pairing"]["kind"], "qr", "{body}");
    let qr = body["pairing"]["code"].as_str().unwrap().to_owned();
    ws_until(&mut ws, |v| v["type"] == "link" && v["qr"] == qr.as_str()).await;
    let (status, _, body) = post(Some(phone.clone())).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["started"], true);
    assert_eq!(body["code"], "fake-pairing");
    assert_eq!(
        body["pairing"],
        json!({"kind": "phone_code", "code": "FAKE5678"})
    );
    let frames = ws_until(&mut ws, |v| {
        v["type"] == "link" && v["pair_code"] == "FAKE5678"
    })
    .await;
    let last = frames.last().unwrap();
    assert_eq!(
        (&last["up"], &last["qr"]),
        (&json!(false), &Value::Null),
        "{last}"
    );
    let (_, _, body) = call(reqwest::Method::GET, link.clone(), Some(TOKEN), None).await;
    assert_eq!(
        body["pairing"],
        json!({"kind": "phone_code", "code": "FAKE5678"})
    );
    // The same number again, or none: pairing already, nothing changes.
    for again in [Some(json!({"phone": "4915112345678"})), None] {
        let (status, _, body) = post(again).await;
        assert_eq!((status, &body["started"]), (200, &json!(false)), "{body}");
        assert_eq!(body["pairing"]["code"], "FAKE5678");
    }
    // Another number: its own code.
    let (status, _, body) = post(Some(json!({"phone": "+1 555 010 0000"}))).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["pairing"]["code"], "FAKE0000");

    // The phone entered it: up, and no code any more.
    w.set_link(true).await;
    ws_until(&mut ws, |v| {
        v["type"] == "link" && v["up"] == true && v["pair_code"].is_null()
    })
    .await;
    let (_, _, body) = call(reqwest::Method::GET, link.clone(), Some(TOKEN), None).await;
    assert_eq!(
        (&body["up"], &body["pairing"]),
        (&json!(true), &Value::Null)
    );
}

/// Ann's row in the owner's chat list.
async fn ann_row(base: &str) -> Value {
    let (status, _, body) = call(
        reqwest::Method::GET,
        format!("{base}/api/v1/chats"),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["chats"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["chat"] == DM)
        .cloned()
        .expect("Ann listed")
}

/// A WhatsApp chat's unread count is its messages from others after the
/// owner's read mark, which `POST /api/v1/chats/{chat}/read` moves forward
/// only, and which outlives a restart of the bridge.
#[tokio::test]
async fn unread_counts_follow_the_owners_read_mark_which_only_moves_forward() {
    let mut w = api_world(true).await;
    w.register(DM, "Ann", &[]);
    let key = create_key(&w, &["laptop"]);
    w.start_bridge().await;
    let base = w.base_url();
    let ann = ann_row(&base).await;
    assert_eq!(
        (&ann["unread"], &ann["read_seq"]),
        (&json!(0), &json!(0)),
        "{ann}"
    );
    for (id, text, from_me) in [
        ("R1", "one", false),
        ("R2", "mine", true),
        ("R3", "two", false),
    ] {
        let (status, body) = w
            .inbox(json!({"chat": DM, "sender": DM, "text": text, "id": id, "from_me": from_me}))
            .await;
        assert_eq!(status, 202, "{body}");
    }
    // Two from Ann; the owner's own (from the phone) is not unread.
    let ann = ann_row(&base).await;
    assert_eq!(ann["unread"], 2, "{ann}");
    // The history says each incoming message's seq, the mark's unit.
    let (_, _, body) = call(
        reqwest::Method::GET,
        format!("{base}/api/v1/chats/{DM}?limit=50"),
        Some(TOKEN),
        None,
    )
    .await;
    let seqs: Vec<(String, i64)> = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["direction"] == "in")
        .map(|m| {
            (
                m["text"].as_str().unwrap().to_owned(),
                m["seq"].as_i64().unwrap(),
            )
        })
        .collect();
    let seq_of = |t: &str| seqs.iter().find(|(x, _)| x == t).unwrap().1;
    assert_eq!(
        ann["last_seq"].as_i64(),
        seqs.iter().map(|s| s.1).max(),
        "{ann} {seqs:?}"
    );
    let read_at = |path: String, body: Value, auth: String| async move {
        call(reqwest::Method::POST, path, Some(&auth), Some(body)).await
    };
    let read = |seq: Value| {
        read_at(
            format!("{base}/api/v1/chats/{DM}/read"),
            json!({ "seq": seq }),
            TOKEN.into(),
        )
    };
    let (status, _, body) = read(json!(seq_of("one"))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["read_seq"], &body["unread"]),
        (&json!(seq_of("one")), &json!(1))
    );
    // Never back.
    let (status, _, body) = read(json!(0)).await;
    assert_eq!(
        (status, &body["read_seq"]),
        (200, &json!(seq_of("one"))),
        "{body}"
    );

    // The mark outlives the bridge.
    assert_eq!(w.stop_bridge().await.code(), Some(0));
    w.start_bridge().await;
    let base = w.base_url();
    let ann = ann_row(&base).await;
    assert_eq!(
        (&ann["unread"], &ann["read_seq"]),
        (&json!(1), &json!(seq_of("one"))),
        "{ann}"
    );
    let (status, _, body) = read_at(
        format!("{base}/api/v1/chats/{DM}/read"),
        json!({"seq": seq_of("two")}),
        TOKEN.into(),
    )
    .await;
    assert_eq!((status, &body["unread"]), (200, &json!(0)), "{body}");

    // Refused, and nothing changed: an unknown chat, a bad body, a seq
    // that is not the chat's, an API key.
    let newest = seq_of("two");
    let dm_read = format!("{base}/api/v1/chats/{DM}/read");
    for (path, body, auth, want) in [
        (
            format!("{base}/api/v1/chats/491519999999@s.whatsapp.net/read"),
            json!({"seq": 1}),
            TOKEN,
            404,
        ),
        (
            format!("{base}/api/v1/chats/not-a-jid/read"),
            json!({"seq": 1}),
            TOKEN,
            400,
        ),
        (dm_read.clone(), json!({"seq": "1"}), TOKEN, 400),
        (dm_read.clone(), json!({}), TOKEN, 400),
        (dm_read.clone(), json!({"seq": 1, "more": true}), TOKEN, 400),
        (dm_read.clone(), json!({"seq": -1}), TOKEN, 400),
        (dm_read.clone(), json!({"seq": newest + 1000}), TOKEN, 400),
        (dm_read.clone(), json!({"seq": newest}), key.as_str(), 403),
    ] {
        let (status, _, res) = read_at(path.clone(), body.clone(), auth.into()).await;
        assert_eq!(status, want, "{path} {body}: {res}");
        assert!(res["error"].is_string(), "{path} {body}: {res}");
    }
    let ann = ann_row(&base).await;
    assert_eq!(
        (&ann["unread"], &ann["read_seq"]),
        (&json!(0), &json!(newest)),
        "{ann}"
    );
}
