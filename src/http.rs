//! The bridge's HTTP server: `/health` always, `/fake/*` when the fake
//! channel is selected.
//!
//! Every request body is validated here, at the boundary: a refusal is a
//! `4xx {"error": "<why>"}` naming the field or limit, it is logged, and
//! nothing else is disturbed.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Notify;
use tower_http::limit::RequestBodyLimitLayer;

use crate::agent::Agent;
use crate::channel::Channel;
use crate::channel::fake::FakeChannel;
use crate::ids::{ChatJid, MessageId};
use crate::intake::Intake;
use crate::queue::ChatQueue;
use crate::store::Inbound;
use crate::store::Store;

/// Largest request body read at all; text limits are checked after parsing
/// so the error can name them.
const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// What the routes read and call.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub agent: Arc<dyn Agent>,
    pub channel: Arc<dyn Channel>,
    pub queue: ChatQueue,
    pub intake: Intake,
    /// Notified when the CLI changed tasks (the scheduler sleeps on it).
    pub tasks_wake: Arc<Notify>,
    /// `PB_MAX_TEXT_BYTES`.
    pub max_text_bytes: usize,
    pub fake: Option<FakeChannel>,
}

/// A refusal: status and reason.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl ApiError {
    fn bad(why: impl Into<String>) -> Self {
        Self(StatusCode::BAD_REQUEST, why.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        tracing::warn!(status = self.0.as_u16(), reason = %self.1, "request refused");
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

pub fn router(state: AppState) -> Router {
    let mut r = Router::new()
        .route("/health", get(health))
        .route("/tasks/changed", post(tasks_changed));
    if state.fake.is_some() {
        r = r
            .route("/fake/inbox", post(fake_inbox))
            .route("/fake/outbox", get(fake_outbox).delete(fake_clear))
            .route("/fake/link", post(fake_link))
            .route("/fake/receipt", post(fake_receipt));
    }
    limit_bodies(r).with_state(state)
}

/// Caps request bodies at [`MAX_BODY_BYTES`] with tower-http: a body whose
/// declared length is over the limit is refused before any of it is read,
/// so a well-behaved client gets its 413 instead of a reset connection; an
/// undeclared (chunked) one fails once the limit is read, which
/// [`parse_body`] reports as a 413. axum's own limit is off: this one
/// replaces it.
fn limit_bodies<S: Clone + Send + Sync + 'static>(r: Router<S>) -> Router<S> {
    r.layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(DefaultBodyLimit::disable())
        .layer(axum::middleware::map_response(json_refusal))
}

/// tower-http refuses a declared oversize body in plain text; every refusal
/// here is `{"error": ...}`.
async fn json_refusal(res: Response) -> Response {
    let plain = res
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/plain"));
    if res.status() == StatusCode::PAYLOAD_TOO_LARGE && plain {
        ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is over the limit of {MAX_BODY_BYTES} bytes"),
        )
        .into_response()
    } else {
        res
    }
}

async fn health(State(s): State<AppState>) -> Response {
    let summary = s.store.summary().await;
    let (store_code, summary) = match summary {
        Ok(sum) => ("store-ok", Some(sum)),
        Err(e) => {
            tracing::error!(error = %e, "health: store check failed");
            ("store-error", None)
        }
    };
    let opencode = s.agent.health_code();
    let link = s.channel.link().borrow().clone();
    let queue = s.queue.snapshot();
    let parked = queue
        .iter()
        .filter(|(_, p)| matches!(p, crate::queue::ChatPhase::Parked { .. }))
        .count();
    let mut problems = Vec::new();
    if store_code != "store-ok" {
        problems.push(store_code);
    }
    if opencode != "opencode-ok" {
        problems.push(opencode);
    }
    if !link.up {
        problems.push(link.code);
    }
    if parked > 0 {
        problems.push("runs-parked");
    }
    let status = if problems.is_empty() {
        "ok"
    } else {
        "degraded"
    };
    let body = json!({
        "status": status,
        "codes": problems,
        "version": env!("CARGO_PKG_VERSION"),
        "checks": {
            "store": store_code,
            "opencode": opencode,
            "channel": { "code": link.code, "message": link.message },
        },
        "queue": {
            "running": s.queue.running(),
            "chats": queue.iter().map(|(jid, p)| json!({ "chat": jid, "phase": p })).collect::<Vec<_>>(),
        },
        "store": summary,
    });
    let code = if store_code == "store-ok" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

/// Wakes the scheduler after the CLI changed tasks in the database.
async fn tasks_changed(State(s): State<AppState>) -> StatusCode {
    s.tasks_wake.notify_one();
    StatusCode::NO_CONTENT
}

fn parse_body<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let bytes = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body is over the limit of {MAX_BODY_BYTES} bytes"),
            )
        } else {
            ApiError::bad(format!("cannot read body: {e}"))
        }
    })?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::bad(format!("malformed JSON: {e}")))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FakeInbox {
    chat: String,
    sender: String,
    sender_name: Option<String>,
    chat_name: Option<String>,
    text: String,
    id: Option<String>,
    timestamp: Option<Value>,
    from_me: Option<bool>,
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
    if req.text.trim().is_empty() {
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
    let outcome = s.intake.accept(msg).await.map_err(|e| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("store unavailable, try again: {e}"),
        )
    })?;
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
    let fake = s.fake.expect("route exists only with the fake channel");
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

async fn fake_clear(State(s): State<AppState>) -> Result<StatusCode, ApiError> {
    let fake = s.fake.expect("route exists only with the fake channel");
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
        .expect("route exists only with the fake channel")
        .report(event)
        .await;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// Serves until `shutdown` resolves; lets open requests finish for up to 5 s.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    let done = shutdown.clone();
    let server =
        axum::serve(listener, app).with_graceful_shutdown(async move { done.cancelled().await });
    tokio::select! {
        r = server => r,
        _ = async { shutdown.cancelled().await; tokio::time::sleep(Duration::from_secs(5)).await } => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: Value) -> FakeInbox {
        serde_json::from_value(v).unwrap()
    }

    fn id() -> MessageId {
        MessageId::new("GEN")
    }

    #[test]
    fn valid_message_passes_with_defaults() {
        let m = validate_inbox(req(json!({"chat":"1-2@g.us","sender":"49151@s.whatsapp.net","text":"hi","timestamp":1763700000})), 100, id).unwrap();
        assert_eq!(m.id.as_str(), "GEN");
        assert_eq!(m.timestamp_ms, 1_763_700_000_000);
        assert!(!m.from_me);
    }

    #[test]
    fn refusals_name_the_field_or_limit() {
        let cases = [
            (
                json!({"chat":"nope","sender":"1@s.whatsapp.net","text":"x"}),
                "chat: invalid JID",
            ),
            (
                json!({"chat":"1@s.whatsapp.net","sender":"1-2@g.us","text":"x"}),
                "sender: a group",
            ),
            (
                json!({"chat":"1@s.whatsapp.net","sender":"1@s.whatsapp.net","text":"  "}),
                "text: must not be empty",
            ),
            (
                json!({"chat":"1@s.whatsapp.net","sender":"1@s.whatsapp.net","text":"x".repeat(101)}),
                "over the limit of 100 bytes (PB_MAX_TEXT_BYTES)",
            ),
            (
                json!({"chat":"1@s.whatsapp.net","sender":"1@s.whatsapp.net","text":"x","id":"a b"}),
                "id: use",
            ),
            (
                json!({"chat":"1@s.whatsapp.net","sender":"1@s.whatsapp.net","text":"x","timestamp":-1}),
                "timestamp:",
            ),
            (
                json!({"chat":"1@s.whatsapp.net","sender":"1@s.whatsapp.net","text":"x","timestamp":"yesterday"}),
                "timestamp:",
            ),
            (
                json!({"chat":"1@s.whatsapp.net","sender":"1@s.whatsapp.net","text":"x","sender_name":"a\u{0}b"}),
                "sender_name: control",
            ),
        ];
        for (body, want) in cases {
            let e = validate_inbox(req(body.clone()), 100, id).unwrap_err();
            assert!(e.1.contains(want), "{body}: {}", e.1);
        }
    }

    /// A route that reads its body like the fake channel's, behind the
    /// same limit; the flag tells whether the handler ran.
    fn limited_echo() -> (Router, std::sync::Arc<std::sync::atomic::AtomicBool>) {
        let ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = ran.clone();
        let echo = move |body: Result<Bytes, BytesRejection>| async move {
            seen.store(true, std::sync::atomic::Ordering::SeqCst);
            parse_body::<Value>(body).map(Json)
        };
        (limit_bodies(Router::new().route("/", post(echo))), ran)
    }

    async fn send(app: Router, req: axum::extract::Request) -> (StatusCode, Value) {
        use tower::ServiceExt;
        let res = app.oneshot(req).await.unwrap();
        let status = res.status();
        let body = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn a_declared_oversize_body_is_refused_unread() {
        let (app, ran) = limited_echo();
        let req = axum::http::Request::post("/")
            .header("content-length", MAX_BODY_BYTES + 1)
            .body(axum::body::Body::from("{}"))
            .unwrap();
        let (status, body) = send(app, req).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            body["error"],
            "request body is over the limit of 2097152 bytes"
        );
        assert!(!ran.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[tokio::test]
    async fn an_undeclared_oversize_body_is_refused_while_read() {
        let (app, ran) = limited_echo();
        // Chunked: no length is declared, 3 MiB arrive in 64 KiB pieces.
        let chunks = (0..48).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b' '; 64 << 10])));
        let req = axum::http::Request::post("/")
            .body(axum::body::Body::from_stream(futures_util::stream::iter(
                chunks,
            )))
            .unwrap();
        let (status, body) = send(app, req).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            body["error"],
            "request body is over the limit of 2097152 bytes"
        );
        assert!(ran.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[tokio::test]
    async fn a_body_at_the_limit_is_read() {
        let (app, _) = limited_echo();
        let mut json = vec![b' '; MAX_BODY_BYTES - 2];
        json.extend_from_slice(b"{}");
        let req = axum::http::Request::post("/")
            .body(axum::body::Body::from(json))
            .unwrap();
        assert_eq!(send(app, req).await, (StatusCode::OK, json!({})));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let e = parse_body::<FakeInbox>(Ok(Bytes::from_static(
            br#"{"chat":"1@lid","sender":"1@lid","text":"x","txt":"y"}"#,
        )))
        .unwrap_err();
        assert!(e.1.contains("unknown field `txt`"), "{}", e.1);
        let e = parse_body::<FakeInbox>(Ok(Bytes::from_static(b"{not json"))).unwrap_err();
        assert!(e.1.starts_with("malformed JSON"), "{}", e.1);
    }
}
