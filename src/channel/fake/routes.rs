//! The fake channel's HTTP contract: the `/fake/*` routes a test (or a
//! person with curl) drives the fake phone with, and the validation of what
//! they are sent. They are served by the bridge's own server
//! ([`crate::http`]), behind its guards, only when the fake channel is
//! selected.

use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::http::contract::{ApiError, AppState, inbound_refused, parse_body};
use crate::ids::{ChatJid, MessageId};
use crate::store::Inbound;

/// The `/fake/*` routes, for [`crate::http::router`] to serve.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/fake/inbox", post(fake_inbox))
        .route("/fake/outbox", get(fake_outbox).delete(fake_clear))
        .route("/fake/link", post(fake_link))
        .route("/fake/reactions", get(fake_reactions))
        .route("/fake/receipt", post(fake_receipt))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FakeInbox {
    chat: String,
    sender: String,
    sender_name: Option<String>,
    chat_name: Option<String>,
    /// The text, or the caption of `media` (then it may be left out).
    #[serde(default)]
    text: String,
    id: Option<String>,
    timestamp: Option<Value>,
    from_me: Option<bool>,
    media: Option<FakeMedia>,
}

/// A file with a fake inbound message, as WhatsApp would deliver it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FakeMedia {
    kind: String,
    mime: String,
    /// The bytes, base64 (standard alphabet, padded).
    data: String,
    filename: Option<String>,
    /// A voice note's or video's length, as WhatsApp says it.
    seconds: Option<u32>,
}

/// Validates a fake message's media: a known kind, a mime type, base64
/// bytes, a plain file name. Its size is checked by intake, which answers
/// the person.
fn validate_media(m: FakeMedia) -> Result<crate::model::InboundMedia, ApiError> {
    use base64::Engine;
    let kind: crate::model::MediaKind = m.kind.parse().map_err(|_| {
        ApiError::bad(format!(
            "media.kind: {:?} is not one of image, voice, audio, document, video, sticker",
            m.kind.chars().take(40).collect::<String>()
        ))
    })?;
    let mime = m.mime.trim();
    let ok_mime = mime.len() <= 127
        && mime.split_once('/').is_some_and(|(t, s)| {
            !t.is_empty()
                && !s.is_empty()
                && mime.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
        });
    if !ok_mime {
        return Err(ApiError::bad("media.mime: expected a type like image/png"));
    }
    let data = base64::engine::general_purpose::STANDARD
        .decode(m.data.trim())
        .map_err(|e| ApiError::bad(format!("media.data: not valid base64 ({e})")))?;
    let filename = match m.filename {
        Some(f) if f.len() > 255 || f.chars().any(|c| c.is_control() || c == '/') => {
            return Err(ApiError::bad(
                "media.filename: at most 255 bytes, no '/' or control characters",
            ));
        }
        Some(f) if f.trim().is_empty() => None,
        f => f,
    };
    Ok(crate::model::InboundMedia {
        info: crate::model::MediaInfo {
            kind,
            mime: mime.to_owned(),
            filename,
            bytes: data.len() as u64,
            seconds: m.seconds,
            ..Default::default()
        },
        data: Ok(data.into()),
    })
}

/// The inbox route's parsing and validation of a raw body, for the fuzz
/// tests: the message when accepted.
#[cfg(test)]
pub(crate) fn fuzz_inbox(body: &[u8], max_text: usize) -> Option<Inbound> {
    let req: FakeInbox = parse_body(Ok(Bytes::copy_from_slice(body))).ok()?;
    validate_inbox(req, max_text, || MessageId::new("FUZZ")).ok()
}

/// Validates one inbound message at the boundary.
fn validate_inbox(
    req: FakeInbox,
    max_text: usize,
    new_id: impl FnOnce() -> MessageId,
) -> Result<Inbound, ApiError> {
    let chat = ChatJid::parse(&req.chat).map_err(|e| ApiError::bad(format!("chat: {e}")))?;
    let sender = ChatJid::parse(&req.sender).map_err(|e| ApiError::bad(format!("sender: {e}")))?;
    if sender.is_group() {
        return Err(ApiError::bad("sender: a group cannot be a sender"));
    }
    let media = req.media.map(validate_media).transpose()?;
    if req.text.trim().is_empty() && media.is_none() {
        return Err(ApiError::bad("text: must not be empty"));
    }
    if req.text.len() > max_text {
        return Err(ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "text: {} bytes is over the limit of {max_text} bytes (PB_MAX_TEXT_BYTES)",
                req.text.len()
            ),
        ));
    }
    let short = |field: &str, v: Option<String>, max: usize| -> Result<Option<String>, ApiError> {
        match v {
            Some(s) if s.len() > max => Err(ApiError::bad(format!(
                "{field}: over the limit of {max} bytes"
            ))),
            Some(s) if s.chars().any(char::is_control) => {
                Err(ApiError::bad(format!("{field}: control characters")))
            }
            Some(s) if s.trim().is_empty() => Ok(None),
            v => Ok(v),
        }
    };
    let sender_name = short("sender_name", req.sender_name, 256)?;
    let chat_name = short("chat_name", req.chat_name, 256)?;
    let id = match req.id {
        None => new_id(),
        Some(id) => {
            let ok = !id.is_empty()
                && id.len() <= 128
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
            if !ok {
                return Err(ApiError::bad(
                    "id: use 1 to 128 of A-Z, a-z, 0-9, '-', '_', '.', ':'",
                ));
            }
            MessageId::new(id)
        }
    };
    let timestamp_ms = match req.timestamp {
        None | Some(Value::Null) => crate::store::now_ms(),
        Some(Value::Number(n)) => match n.as_i64() {
            // Unix seconds, as WhatsApp gives them.
            Some(s) if (0..=4_102_444_800).contains(&s) => s * 1000,
            _ => {
                return Err(ApiError::bad(
                    "timestamp: expected unix seconds between 1970 and 2100",
                ));
            }
        },
        Some(Value::String(s)) => chrono::DateTime::parse_from_rfc3339(&s)
            .map_err(|e| ApiError::bad(format!("timestamp: {s:?} is not RFC 3339 ({e})")))?
            .timestamp_millis(),
        Some(_) => {
            return Err(ApiError::bad(
                "timestamp: expected unix seconds or an RFC 3339 string",
            ));
        }
    };
    Ok(Inbound {
        chat,
        chat_name,
        id,
        sender: sender.to_string(),
        sender_name,
        text: req.text,
        timestamp_ms,
        from_me: req.from_me.unwrap_or(false),
        media,
    })
}

async fn fake_inbox(
    State(s): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: FakeInbox = parse_body(body)?;
    let channel = s.channel.clone();
    let msg = validate_inbox(req, s.max_text_bytes, || channel.new_message_id())?;
    let id = msg.id.clone();
    let outcome = s.inbound.accept(msg).await.map_err(inbound_refused)?;
    Ok(if outcome.duplicate {
        (StatusCode::OK, Json(json!({ "id": id, "duplicate": true }))).into_response()
    } else {
        (
            StatusCode::ACCEPTED,
            Json(json!({ "id": id, "registered": outcome.registered })),
        )
            .into_response()
    })
}

#[derive(Deserialize)]
struct OutboxQuery {
    chat: Option<String>,
}

async fn fake_outbox(
    State(s): State<AppState>,
    q: Result<Query<OutboxQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let fake = s
        .fake
        .as_ref()
        .expect("route exists only with the fake channel");
    let chat = match q.map_err(|e| ApiError::bad(format!("query: {e}")))?.0.chat {
        Some(c) => Some(ChatJid::parse(&c).map_err(|e| ApiError::bad(format!("chat: {e}")))?),
        None => None,
    };
    let messages = fake
        .received(chat)
        .await
        .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    Ok(Json(json!({ "messages": messages })).into_response())
}

/// `GET /fake/reactions`: the reactions the bridge sent, in order
/// (`emoji` empty: taken back).
async fn fake_reactions(State(s): State<AppState>) -> Result<Response, ApiError> {
    let fake = s
        .fake
        .as_ref()
        .expect("route exists only with the fake channel");
    let rows = fake
        .reactions()
        .await
        .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    let list: Vec<Value> = rows
        .into_iter()
        .map(|(chat, id, emoji)| json!({ "chat": chat, "id": id, "emoji": emoji }))
        .collect();
    Ok(Json(json!({ "reactions": list })).into_response())
}

async fn fake_clear(State(s): State<AppState>) -> Result<StatusCode, ApiError> {
    let fake = s
        .fake
        .as_ref()
        .expect("route exists only with the fake channel");
    fake.clear()
        .await
        .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkReq {
    connected: bool,
}

async fn fake_link(
    State(s): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: LinkReq = parse_body(body)?;
    s.fake
        .as_ref()
        .expect("route exists only with the fake channel")
        .set_connected(req.connected);
    Ok(Json(json!({ "connected": req.connected })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReceiptReq {
    /// The id of a message the fake phone received.
    id: String,
    /// `delivered`, `read` or `refused`.
    state: String,
    reason: Option<String>,
}

/// The fake phone reports on a message it received, as WhatsApp does.
async fn fake_receipt(
    State(s): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    use crate::channel::{ChannelEvent, Receipt};
    let req: ReceiptReq = parse_body(body)?;
    if req.id.is_empty() || req.id.len() > 128 {
        return Err(ApiError::bad("id: 1 to 128 bytes"));
    }
    let id = MessageId::new(MessageId::base_of(&req.id));
    let event = match req.state.as_str() {
        "delivered" => ChannelEvent::Receipt {
            id,
            receipt: Receipt::Delivered,
        },
        "read" => ChannelEvent::Receipt {
            id,
            receipt: Receipt::Read,
        },
        "refused" => ChannelEvent::Refused {
            id,
            reason: req
                .reason
                .unwrap_or_else(|| "refused by the fake phone".into()),
        },
        other => {
            return Err(ApiError::bad(format!(
                "state: {other:?} is not delivered, read or refused"
            )));
        }
    };
    s.fake
        .as_ref()
        .expect("route exists only with the fake channel")
        .report(event)
        .await;
    Ok(StatusCode::ACCEPTED.into_response())
}

#[cfg(test)]
mod tests;
