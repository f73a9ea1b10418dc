//! OpenAI-compatible routes: `POST /v1/chat/completions` (streamed or not)
//! and `GET /v1/models`, so any OpenAI client can talk to the assistant.
//!
//! The assistant keeps the conversation itself (its OpenCode session), so
//! only the last `user` message of a request is sent; earlier messages a
//! client repeats are not. The conversation is the API key's; with the
//! owner's token, the request's `user` field names it (default `openai`).

use std::convert::Infallible;

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use super::exchange::{Step, Waiter, submit, timed_out};
use super::{ApiState, Caller};
use crate::http::{ApiError, parse_body};

/// The model name the routes report (any name a client sends is accepted).
pub const MODEL: &str = "pocketbrain";

/// The owner's conversation when a request has no `user`.
pub const DEFAULT_CONVERSATION: &str = "openai";

/// The part of a chat completion request the assistant uses; other fields
/// (temperature, tools, ...) are accepted and ignored.
#[derive(Debug, Deserialize)]
pub struct CompletionReq {
    model: Option<String>,
    messages: Vec<ReqMessage>,
    #[serde(default)]
    stream: bool,
    user: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ReqMessage {
    role: String,
    #[serde(default)]
    content: Value,
}

/// The text of the last `user` message: a string, or the text parts of an
/// array of parts.
fn last_user_text(messages: &[ReqMessage]) -> Result<String, ApiError> {
    let m = messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .ok_or_else(|| ApiError::bad("messages: no message with role \"user\""))?;
    match &m.content {
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let texts: Vec<&str> = parts
                .iter()
                .filter(|p| p["type"] == "text")
                .filter_map(|p| p["text"].as_str())
                .collect();
            if texts.is_empty() {
                return Err(ApiError::bad(
                    "messages: the last user message has no text part",
                ));
            }
            Ok(texts.join("\n"))
        }
        _ => Err(ApiError::bad(
            "messages: content must be a string or an array of parts",
        )),
    }
}

fn completion_id(msg: &str) -> String {
    format!("chatcmpl-{msg}")
}

pub async fn completions(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: CompletionReq = parse_body(body)?;
    let text = last_user_text(&req.messages)?;
    let conversation = match &caller {
        Caller::Owner => Some(req.user.as_deref().unwrap_or(DEFAULT_CONVERSATION)),
        Caller::Key(_) => None,
    };
    let model = req.model.clone().unwrap_or_else(|| MODEL.to_owned());
    let created = chrono::Utc::now().timestamp();
    let events = req.stream.then(|| s.agent.events());
    let p = submit(&s, &caller, conversation, text).await?;
    let id = completion_id(p.id.as_str());
    let mut w = Waiter::new(&s, p, events);
    if !req.stream {
        let reply = loop {
            match w.next().await? {
                Some(Step::Done(r)) => break r,
                Some(Step::TimedOut(after)) => return Err(timed_out(w.chat(), after)),
                Some(Step::Delta(_)) => {}
                None => return Err(super::unavailable("the wait ended without a reply")),
            }
        };
        return Ok(Json(json!({
            "id": id, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.reply},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        }))
        .into_response());
    }
    let chunk = move |delta: Value, finish: Option<&str>| {
        json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        })
    };
    // States: the role chunk first, then text, then the end and [DONE].
    enum At {
        Start,
        Text { streamed: bool },
        Done,
        End,
    }
    let stream = futures_util::stream::unfold((w, At::Start), move |(mut w, at)| {
        let chunk = chunk.clone();
        async move {
            let data = match at {
                At::Start => {
                    let c = chunk(json!({"role": "assistant", "content": ""}), None);
                    return Some((sse(c.to_string()), (w, At::Text { streamed: false })));
                }
                At::Done => return Some((sse("[DONE]".into()), (w, At::End))),
                At::End => return None,
                At::Text { streamed } => match w.next().await {
                    Ok(Some(Step::Delta(t))) => {
                        let c = chunk(json!({ "content": t }), None);
                        return Some((sse(c.to_string()), (w, At::Text { streamed: true })));
                    }
                    // Nothing was streamed (the text came some other way):
                    // send the stored answer whole, then the end.
                    Ok(Some(Step::Done(r))) if !streamed && !r.reply.is_empty() => {
                        let c = chunk(json!({ "content": r.reply }), None);
                        return Some((sse(c.to_string()), (w, At::Text { streamed: true })));
                    }
                    Ok(Some(Step::Done(_))) | Ok(None) => chunk(json!({}), Some("stop")),
                    Ok(Some(Step::TimedOut(after))) => {
                        json!({"error": {"message": timed_out(w.chat(), after).1, "type": "timeout"}})
                    }
                    Err(e) => json!({"error": {"message": e.1, "type": "server_error"}}),
                },
            };
            Some((sse(data.to_string()), (w, At::Done)))
        }
    });
    Ok(Sse::new(stream).into_response())
}

fn sse(data: String) -> Result<Event, Infallible> {
    Ok(Event::default().data(data))
}

pub async fn models() -> Response {
    Json(json!({
        "object": "list",
        "data": [{"id": MODEL, "object": "model", "created": 0, "owned_by": "pocketbrain"}],
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(v: Value) -> Vec<ReqMessage> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn the_last_user_message_is_the_text() {
        let m = msgs(json!([
            {"role": "system", "content": "be nice"},
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url"}, {"type": "text", "text": "b"}]},
        ]));
        assert_eq!(last_user_text(&m).unwrap(), "a\nb");
        let none = msgs(json!([{"role": "system", "content": "x"}]));
        assert!(
            last_user_text(&none)
                .unwrap_err()
                .1
                .contains("role \"user\"")
        );
        let bad = msgs(json!([{"role": "user", "content": 3}]));
        assert!(last_user_text(&bad).is_err());
    }
}
