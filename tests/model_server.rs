//! Tests for the scripted OpenAI-compatible model server in `support/model.rs`.

#[path = "support/model.rs"]
mod model;

use std::time::Duration;

use futures_util::StreamExt;
use model::{ChatRequest, Reply, ScriptedModel};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(5);

fn request_body(user: &str, stream: bool) -> Value {
    json!({
        "model": "scripted-1",
        "stream": stream,
        "messages": [
            {"role": "system", "content": "You are a test assistant."},
            {"role": "user", "content": [{"type": "text", "text": user}]},
        ],
        "tools": [
            {"type": "function", "function": {"name": "read", "parameters": {"type": "object"}}},
            {"type": "function", "function": {"name": "bash", "parameters": {"type": "object"}}},
        ],
    })
}

async fn post(model: &ScriptedModel, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/chat/completions", model.base_url()))
        .bearer_auth("x")
        .json(body)
        .send()
        .await
        .expect("request sent")
}

/// The `data:` payloads of an SSE response, in order (including "[DONE]").
async fn sse_events(response: reqwest::Response) -> Vec<String> {
    let mut raw = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        raw.extend_from_slice(&chunk.expect("body chunk"));
    }
    let text = String::from_utf8(raw).expect("utf-8 body");
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            e.strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not a data event: {e:?}"))
                .to_string()
        })
        .collect()
}

/// Parse the chunks of a streamed answer, checking it ends with `[DONE]`.
async fn chunks(response: reqwest::Response) -> Vec<Value> {
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap();
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    let events = sse_events(response).await;
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{events:?}"
    );
    events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str::<Value>(e).expect("chunk is JSON"))
        .inspect(|c| assert_eq!(c["object"], "chat.completion.chunk"))
        .collect()
}

/// Streamed chat request → reassembled text.
async fn ask_text(model: &ScriptedModel, user: &str) -> String {
    let chunks = chunks(post(model, &request_body(user, true)).await).await;
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect()
}

#[tokio::test]
async fn text_reply_is_streamed_and_reassembles() {
    let model = ScriptedModel::start().await;
    model.on(
        |r| r.last_user_text() == "hello",
        vec![Reply::Text(
            "Hello there, this is the scripted model!".into(),
        )],
    );

    let chunks = chunks(post(&model, &request_body("hello", true)).await).await;
    let content_chunks = chunks
        .iter()
        .filter(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|s| !s.is_empty())
        })
        .count();
    assert!(content_chunks >= 2, "text split into deltas: {chunks:#?}");
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Hello there, this is the scripted model!");

    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    let usage = &last["usage"];
    assert!(usage["prompt_tokens"].as_u64().unwrap() > 0);
    assert!(usage["completion_tokens"].as_u64().unwrap() > 0);
    assert_eq!(
        usage["total_tokens"].as_u64().unwrap(),
        usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
    );
    // Every chunk but the last has no finish reason.
    for c in &chunks[..chunks.len() - 1] {
        assert!(c["choices"][0]["finish_reason"].is_null(), "{c}");
    }

    let requests = model.wait_for_requests(1, WAIT).await;
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.last_role(), "user");
    assert_eq!(r.system_text(), "You are a test assistant.");
    assert_eq!(r.tool_names(), vec!["read", "bash"]);
    assert!(r.contains("hello"));
    model.wait_until_idle(WAIT).await;
}

#[tokio::test]
async fn tool_call_chunk_shape() {
    let model = ScriptedModel::start().await;
    model.on(
        |r| r.tool_names().iter().any(|t| t == "bash"),
        vec![
            Reply::ToolCall {
                name: "bash".into(),
                arguments: json!({"command": "ls -la"}),
            },
            Reply::ToolCall {
                name: "read".into(),
                arguments: json!({"path": "/tmp/x"}),
            },
        ],
    );

    let mut ids = Vec::new();
    for (name, args) in [
        ("bash", json!({"command": "ls -la"})),
        ("read", json!({"path": "/tmp/x"})),
    ] {
        let chunks = chunks(post(&model, &request_body("run it", true)).await).await;
        let calls: Vec<&Value> = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].as_array())
            .flatten()
            .collect();
        assert_eq!(calls.len(), 1, "{chunks:#?}");
        let call = calls[0];
        assert_eq!(call["index"], 0);
        assert_eq!(call["type"], "function");
        assert_eq!(call["function"]["name"], name);
        let id = call["id"].as_str().unwrap().to_string();
        assert!(id.starts_with("call_"), "{id}");
        ids.push(id);
        // Arguments are a JSON-encoded string, as in the OpenAI API.
        let arguments: Value =
            serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(arguments, args);
        let last = chunks.last().unwrap();
        assert_eq!(last["choices"][0]["finish_reason"], "tool_calls");
        assert!(last["usage"]["total_tokens"].as_u64().unwrap() > 0);
    }
    assert_ne!(ids[0], ids[1], "call ids are unique");
}

#[tokio::test]
async fn error_reply_has_status_and_openai_body() {
    let model = ScriptedModel::start().await;
    model.set_default(Reply::Error {
        status: 429,
        message: "slow down".into(),
    });

    let response = post(&model, &request_body("hi", true)).await;
    assert_eq!(response.status(), 429);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["message"], "slow down");
    assert!(body["error"]["type"].is_string());
    assert!(!body["error"]["code"].is_null());

    model.set_default(Reply::error(500, "boom"));
    let response = post(&model, &request_body("hi", false)).await;
    assert_eq!(response.status(), 500);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["message"], "boom");
    assert_eq!(model.request_count(), 2);
    model.wait_until_idle(WAIT).await;
}

#[tokio::test]
async fn rules_in_order_with_exhaustion_and_default() {
    let model = ScriptedModel::start().await;
    // First rule: two replies for "alpha", then it stops matching.
    model.on(
        |r| r.last_user_text().contains("alpha"),
        vec![Reply::text("a1"), Reply::text("a2")],
    );
    // A later rule that also matches "alpha": takes over once the first is used up.
    model.always(|r| r.contains("alpha"), Reply::text("a-forever"));
    // Never reached for "alpha" while the earlier rules match.
    model.always(|_| true, Reply::text("catch-all"));
    // An empty rule never matches.
    model.on(|_| true, vec![]);

    assert_eq!(ask_text(&model, "alpha 1").await, "a1");
    assert_eq!(ask_text(&model, "alpha 2").await, "a2");
    assert_eq!(ask_text(&model, "alpha 3").await, "a-forever");
    assert_eq!(ask_text(&model, "alpha 4").await, "a-forever");
    assert_eq!(ask_text(&model, "beta").await, "catch-all");

    // Without a catch-all, the default answers.
    let model = ScriptedModel::start().await;
    model.on(|r| r.contains("x"), vec![Reply::text("once")]);
    assert_eq!(ask_text(&model, "x").await, "once");
    assert_eq!(ask_text(&model, "x").await, "ok");
    model.set_default(Reply::text("new default"));
    assert_eq!(ask_text(&model, "x").await, "new default");

    let users: Vec<String> = model
        .requests()
        .iter()
        .map(ChatRequest::last_user_text)
        .collect();
    assert_eq!(users, vec!["x", "x", "x"]);
}

#[tokio::test]
async fn max_in_flight_counts_concurrent_delayed_requests() {
    let model = ScriptedModel::start().await;
    model.always(
        |_| true,
        Reply::Delayed(Duration::from_millis(400), Box::new(Reply::text("late"))),
    );
    assert_eq!(model.in_flight(), 0);

    let answers = futures_util::future::join_all((0..3).map(|i| {
        let model = &model;
        async move { ask_text(model, &format!("req {i}")).await }
    }));
    let watcher = async {
        model.wait_for_requests(3, WAIT).await;
        // All three are sleeping now.
        assert_eq!(model.in_flight(), 3);
    };
    let (answers, ()) = tokio::join!(answers, watcher);
    assert_eq!(answers, vec!["late"; 3]);
    assert_eq!(model.max_in_flight(), 3);
    model.wait_until_idle(WAIT).await;
    assert_eq!(model.in_flight(), 0);
    assert_eq!(model.max_in_flight(), 3);
}

#[tokio::test]
async fn disconnect_cancels_hang_and_delay() {
    let model = ScriptedModel::start().await;
    model.on(
        |_| true,
        vec![
            Reply::Hang,
            Reply::Delayed(Duration::from_secs(3600), Box::new(Reply::text("never"))),
        ],
    );
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    for _ in 0..2 {
        let result = client
            .post(format!("{}/chat/completions", model.base_url()))
            .json(&request_body("wait", true))
            .send()
            .await;
        assert!(result.unwrap_err().is_timeout());
        // The client gave up: the server stops waiting and the count drops.
        model.wait_until_idle(Duration::from_secs(3)).await;
        assert_eq!(model.in_flight(), 0);
    }
    assert_eq!(model.max_in_flight(), 1);
    assert_eq!(model.request_count(), 2);
}

#[tokio::test]
async fn non_stream_request_gets_plain_completion() {
    let model = ScriptedModel::start().await;
    model.on(
        |_| true,
        vec![
            Reply::text("plain answer"),
            Reply::tool_call("read", json!({"path": "a.txt"})),
        ],
    );

    let response = post(&model, &request_body("q", false)).await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "scripted-1");
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(body["choices"][0]["message"]["content"], "plain answer");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert!(body["usage"]["total_tokens"].as_u64().unwrap() > 0);

    let body: Value = post(&model, &request_body("q", false))
        .await
        .json()
        .await
        .unwrap();
    let call = &body["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "read");
    assert!(call["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
}

#[tokio::test]
async fn models_endpoint_lists_scripted_model() {
    let model = ScriptedModel::start().await;
    let body: Value = reqwest::get(format!("{}/models", model.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(ids, vec!["scripted-1"]);
    assert_eq!(model.request_count(), 0, "only chat requests are recorded");
}

#[test]
fn chat_request_helpers() {
    let r = ChatRequest {
        body: json!({
            "model": "scripted-1",
            "messages": [
                {"role": "system", "content": "sys one"},
                {"role": "system", "content": [{"type": "text", "text": "sys two"}]},
                {"role": "user", "content": "first question"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "read", "arguments": "{}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "file contents"},
                {"role": "user", "content": [
                    {"type": "text", "text": "second"},
                    {"type": "image_url", "image_url": {"url": "data:"}},
                    {"type": "text", "text": "question"},
                ]},
                {"role": "tool", "tool_call_id": "call_2", "content": "result two"},
            ],
            "tools": [{"type": "function", "function": {"name": "read"}}],
        }),
        authorization: None,
    };
    assert_eq!(r.system_text(), "sys one\nsys two");
    assert_eq!(r.last_role(), "tool");
    assert_eq!(r.last_user_text(), "second\nquestion");
    assert!(r.contains("file contents"));
    assert!(r.contains("first question"));
    assert!(!r.contains("call_1"));
    assert_eq!(r.tool_names(), vec!["read"]);
    assert!(!r.is_title_request());
    let title = ChatRequest {
        body: json!({"messages": [
            {"role": "system", "content": "You are a title generator. You output ONLY a thread title."},
            {"role": "user", "content": "Generate a title for this conversation:\n"},
        ]}),
        authorization: None,
    };
    assert!(title.is_title_request());
    assert_eq!(
        r.all_text(),
        "sys one\nsys two\nfirst question\n\nfile contents\nsecond\nquestion\nresult two"
    );

    let empty = ChatRequest {
        body: json!({}),
        authorization: None,
    };
    assert_eq!(empty.last_role(), "");
    assert_eq!(empty.last_user_text(), "");
    assert!(empty.tool_names().is_empty());
}

#[tokio::test]
#[should_panic(expected = "timed out")]
async fn wait_for_requests_panics_on_timeout() {
    let model = ScriptedModel::start().await;
    model.wait_for_requests(1, Duration::from_millis(100)).await;
}
