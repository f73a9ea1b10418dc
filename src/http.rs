//! The bridge's HTTP server: `/health`, `/metrics`, `/status` always,
//! `/fake/*` when the fake channel is selected.
//!
//! Every request body is validated here, at the boundary: a refusal is a
//! `4xx {"error": "<why>"}` naming the field or limit, it is logged, and
//! nothing else is disturbed.
//!
//! Access. With `PB_HTTP_TOKEN` set, every route but `/health` needs
//! `Authorization: Bearer <token>` (compared in constant time; 401
//! otherwise), and `/health` shows an unauthenticated caller only its
//! status and codes: no chat ids, no counts. A JSON body is read only when
//! it is declared `application/json` (415 otherwise): a web page can post a
//! form or plain text to a loopback address without asking, but not JSON.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
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
use crate::config::Secret;
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
    /// `PB_HTTP_TOKEN`.
    pub token: Option<Secret>,
    /// OpenCode's base URL (no credentials), for `/status` and doctor.
    pub opencode_url: String,
}

/// A refusal: status and reason.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl ApiError {
    pub fn bad(why: impl Into<String>) -> Self {
        Self(StatusCode::BAD_REQUEST, why.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        tracing::warn!(status = self.0.as_u16(), reason = %self.1, "request refused");
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

/// The bridge's routes; `api` (the local API's, with their own state and
/// guards) are served beside them, under the same body limit and the same
/// `Host` rule ([`host_allowed`], with `hosts` the names of `PB_HTTP_HOSTS`).
pub fn router(state: AppState, api: Option<Router>, hosts: Vec<String>) -> Router {
    let mut r = Router::new()
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .route("/tasks/changed", post(tasks_changed));
    if state.fake.is_some() {
        r = r
            .route("/fake/inbox", post(fake_inbox))
            .route("/fake/outbox", get(fake_outbox).delete(fake_clear))
            .route("/fake/link", post(fake_link))
            .route("/fake/reactions", get(fake_reactions))
            .route("/fake/receipt", post(fake_receipt));
    }
    let r = guard(r, state.token.clone())
        .route("/health", get(health))
        .with_state(state);
    let r = match api {
        Some(api) => r.merge(api),
        None => r,
    };
    only_known_hosts(limit_bodies(r), hosts.into())
}

/// Refuses, on every route (unknown paths too), a request whose `Host` is
/// not one [`host_allowed`] accepts.
fn only_known_hosts<S: Clone + Send + Sync + 'static>(
    r: Router<S>,
    hosts: Arc<[String]>,
) -> Router<S> {
    r.layer(axum::middleware::from_fn(move |req: Request, next: Next| {
        let hosts = hosts.clone();
        async move {
            let host = req
                .headers()
                .get(header::HOST)
                .map(|h| h.to_str().unwrap_or("\u{fffd}").to_owned())
                .or_else(|| req.uri().authority().map(|a| a.to_string()));
            match host {
                Some(h) if host_allowed(&h, &hosts) => next.run(req).await,
                Some(h) => ApiError(
                    StatusCode::MISDIRECTED_REQUEST,
                    format!(
                        "this bridge does not answer to the host name {h:?}: use localhost or an IP address, or add the name to PB_HTTP_HOSTS"
                    ),
                )
                .into_response(),
                None => ApiError::bad("the request has no Host header").into_response(),
            }
        }
    }))
}

/// Whether a `Host` header value (`name[:port]`) names this bridge: an IP
/// address, `localhost` or a name under `.localhost`, or one of `extra`.
/// A web page can point a name it controls at 127.0.0.1 (DNS rebinding) and
/// then read the bridge with the browser's same-origin blessing; the `Host`
/// header still carries that name, so it is refused here.
pub(crate) fn host_allowed(host: &str, extra: &[String]) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        // An IPv6 literal, `[addr]` or `[addr]:port`.
        return rest.split_once(']').is_some_and(|(addr, port)| {
            addr.parse::<std::net::Ipv6Addr>().is_ok()
                && (port.is_empty() || port.strip_prefix(':').is_some_and(valid_port))
        });
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if valid_port(port) => name,
            Some(_) => return false,
            None => host,
        }
    };
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return true;
    }
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost") || extra.contains(&name)
}

fn valid_port(port: &str) -> bool {
    !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit())
}

/// Puts `r`'s routes behind the token (when there is one) and the JSON
/// content-type rule.
fn guard<S: Clone + Send + Sync + 'static>(r: Router<S>, token: Option<Secret>) -> Router<S> {
    r.route_layer(axum::middleware::from_fn(json_only))
        .route_layer(axum::middleware::from_fn(
            move |req: Request, next: Next| {
                let token = token.clone();
                async move {
                    if authorized(token.as_ref(), req.headers()) {
                        next.run(req).await
                    } else {
                        ApiError(
                            StatusCode::UNAUTHORIZED,
                            "missing or wrong bearer token (Authorization: Bearer <PB_HTTP_TOKEN>)"
                                .into(),
                        )
                        .into_response()
                    }
                }
            },
        ))
}

/// Whether `headers` carry the token; always, when none is set. The
/// comparison takes the same time wherever the first difference is.
pub(crate) fn authorized(token: Option<&Secret>, headers: &HeaderMap) -> bool {
    use subtle::ConstantTimeEq;
    let Some(token) = token else { return true };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    bool::from(given.as_bytes().ct_eq(token.expose().as_bytes()))
}

/// Refuses a body sent with a method that carries one unless it is
/// declared `application/json`. A request with no body at all passes.
pub(crate) async fn json_only(req: Request, next: Next) -> Response {
    let has_body = matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH)
        && (req.headers().contains_key(header::CONTENT_TYPE)
            || req
                .headers()
                .get(header::CONTENT_LENGTH)
                .is_some_and(|l| l.as_bytes() != b"0")
            || req.headers().contains_key(header::TRANSFER_ENCODING));
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if has_body && !json {
        return ApiError(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the body as JSON with Content-Type: application/json".into(),
        )
        .into_response();
    }
    next.run(req).await
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

async fn health(State(s): State<AppState>, headers: HeaderMap) -> Response {
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
    let (status, problems) = problems(&s, store_code == "store-ok");
    let code = if store_code == "store-ok" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    if !authorized(s.token.as_ref(), &headers) {
        // Anyone may ask whether the bridge is up; only the owner sees more.
        return (code, Json(json!({ "status": status, "codes": problems }))).into_response();
    }
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
    (code, Json(body)).into_response()
}

/// The problems `/health` lists, and the overall status they make.
fn problems(s: &AppState, store_ok: bool) -> (&'static str, Vec<&'static str>) {
    let mut problems = Vec::new();
    if !store_ok {
        problems.push("store-error");
    }
    let opencode = s.agent.health_code();
    if opencode != "opencode-ok" {
        problems.push(opencode);
    }
    let link = s.channel.link().borrow().clone();
    if !link.up {
        problems.push(link.code);
    }
    if s.queue
        .snapshot()
        .iter()
        .any(|(_, p)| matches!(p, crate::queue::ChatPhase::Parked { .. }))
    {
        problems.push("runs-parked");
    }
    let status = if problems.is_empty() {
        "ok"
    } else {
        "degraded"
    };
    (status, problems)
}

/// Every metric in the OpenMetrics text format, the state gauges read now.
async fn metrics(State(s): State<AppState>) -> Response {
    use crate::queue::ChatPhase;
    let outbox = match crate::status::outbox_by_state(&s.store).await {
        Ok(rows) => rows
            .into_iter()
            .filter_map(|(state, n)| {
                crate::metrics::OUTBOX_STATES
                    .iter()
                    .find(|s| **s == state)
                    .map(|s| (*s, n))
            })
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "metrics: cannot count outbox rows");
            Vec::new()
        }
    };
    let queue = s
        .queue
        .snapshot()
        .into_iter()
        .map(|(_, p)| {
            let state = match p {
                ChatPhase::Queued => "queued",
                ChatPhase::Running => "running",
                ChatPhase::WaitingRetry { .. } => "waiting_retry",
                ChatPhase::Parked { .. } => "parked",
            };
            (state, 1)
        })
        .collect();
    let link = s.channel.link().borrow().clone();
    let text = crate::metrics::render(&crate::metrics::Snapshot {
        queue,
        runs_active: s.queue.running() as i64,
        outbox,
        link_up: link.up,
        link_code: link.code,
    });
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response()
}

/// What the bridge is doing: see [`crate::status`].
async fn status(State(s): State<AppState>) -> Result<Response, ApiError> {
    let mut st = crate::status::from_store(&s.store).await.map_err(|e| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("store unavailable: {e}"),
        )
    })?;
    let (overall, codes) = problems(&s, true);
    let link = s.channel.link().borrow().clone();
    st.live = Some(crate::status::Live {
        status: overall.into(),
        codes: codes.into_iter().map(str::to_owned).collect(),
        version: env!("CARGO_PKG_VERSION").into(),
        link: crate::status::LinkState {
            up: link.up,
            code: link.code.into(),
            message: link.message,
        },
        opencode: s.agent.health_code().into(),
        opencode_url: s.opencode_url.clone(),
        runs_active: s.queue.running(),
        queue: s
            .queue
            .snapshot()
            .into_iter()
            .map(|(chat, phase)| crate::status::QueueEntry {
                chat: chat.to_string(),
                phase: serde_json::to_value(phase).unwrap_or_default(),
            })
            .collect(),
    });
    Ok(Json(st).into_response())
}

/// Wakes the scheduler after the CLI changed tasks in the database.
async fn tasks_changed(State(s): State<AppState>) -> StatusCode {
    s.tasks_wake.notify_one();
    StatusCode::NO_CONTENT
}

pub(crate) fn parse_body<T: serde::de::DeserializeOwned>(
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

/// Validates one inbound message at the boundary.
/// The inbox route's parsing and validation of a raw body, for the fuzz
/// tests: the message when accepted.
#[cfg(test)]
pub(crate) fn fuzz_inbox(body: &[u8], max_text: usize) -> Option<Inbound> {
    let req: FakeInbox = parse_body(Ok(Bytes::copy_from_slice(body))).ok()?;
    validate_inbox(req, max_text, || MessageId::new("FUZZ")).ok()
}

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
    let outcome = s.intake.accept(msg).await.map_err(inbound_refused)?;
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

/// Why an inbound message could not be kept, for any HTTP route that
/// takes one: a full disk is 507, anything else 503. Refused, not lost: the
/// sender keeps the message and sends it again.
pub(crate) fn inbound_refused(e: crate::store::StoreError) -> ApiError {
    match e {
        crate::store::StoreError::Full => ApiError(
            StatusCode::INSUFFICIENT_STORAGE,
            "the bridge's disk is full: the message was not kept; send it again once there is space".into(),
        ),
        e => ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("store unavailable, try again: {e}"),
        ),
    }
}

/// `GET /fake/reactions`: the reactions the bridge sent, in order
/// (`emoji` empty: taken back).
async fn fake_reactions(State(s): State<AppState>) -> Result<Response, ApiError> {
    let fake = s.fake.expect("route exists only with the fake channel");
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

    /// A guarded POST route that echoes JSON, and the status of a request.
    async fn guarded(
        token: Option<&str>,
        req: axum::http::request::Builder,
        body: &str,
    ) -> StatusCode {
        use tower::ServiceExt;
        let echo = |body: Result<Bytes, BytesRejection>| async move {
            parse_body::<Value>(body).map(Json)
        };
        let app = guard(
            Router::new().route("/x", post(echo).get(|| async { "ok" })),
            token.map(Secret::new),
        );
        let req = req.body(axum::body::Body::from(body.to_owned())).unwrap();
        app.oneshot(req).await.unwrap().status()
    }

    #[tokio::test]
    async fn with_a_token_every_guarded_route_needs_it() {
        let token = Some("0123456789abcdef-token");
        let get = || axum::http::Request::get("/x");
        assert_eq!(guarded(token, get(), "").await, StatusCode::UNAUTHORIZED);
        let wrong = get().header("authorization", "Bearer 0123456789abcdef-tokeN");
        assert_eq!(guarded(token, wrong, "").await, StatusCode::UNAUTHORIZED);
        let basic = get().header("authorization", "Basic 0123456789abcdef-token");
        assert_eq!(guarded(token, basic, "").await, StatusCode::UNAUTHORIZED);
        let right = get().header("authorization", "Bearer 0123456789abcdef-token");
        assert_eq!(guarded(token, right, "").await, StatusCode::OK);
        // Without a token (loopback only) nothing is asked.
        assert_eq!(guarded(None, get(), "").await, StatusCode::OK);
    }

    #[tokio::test]
    async fn a_body_is_read_only_when_declared_json() {
        let post = |ct: Option<&str>| {
            let r = axum::http::Request::post("/x");
            match ct {
                Some(ct) => r.header("content-type", ct),
                None => r.header("content-length", "2"),
            }
        };
        for refused in [
            None,
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data; boundary=x"),
        ] {
            assert_eq!(
                guarded(None, post(refused), "{}").await,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{refused:?}"
            );
        }
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
        ] {
            assert_eq!(
                guarded(None, post(Some(ok)), "{}").await,
                StatusCode::OK,
                "{ok}"
            );
        }
    }

    #[test]
    fn host_names_other_than_ours_are_refused() {
        let extra = ["pocketbrain.lan".to_owned()];
        for ok in [
            "127.0.0.1:8787",
            "127.0.0.1",
            "192.168.1.20:8787",
            "[::1]:8787",
            "[::1]",
            "localhost:8787",
            "LocalHost",
            "localhost.",
            "app.localhost:3000",
            "pocketbrain.lan:8787",
            "PocketBrain.LAN",
        ] {
            assert!(host_allowed(ok, &extra), "{ok} refused");
        }
        for bad in [
            "evil.example:8787",
            "evil.example",
            "localhost.evil.example",
            "pocketbrain.lan.evil.example",
            "127.0.0.1.nip.io",
            "[::1",
            "[not-an-ip]:80",
            "localhost:http",
            "localhost:",
            "",
            "\u{fffd}",
        ] {
            assert!(!host_allowed(bad, &extra), "{bad} allowed");
        }
        assert!(!host_allowed("pocketbrain.lan", &[]));
    }

    #[tokio::test]
    async fn every_route_refuses_a_foreign_host() {
        use tower::ServiceExt;
        let app = only_known_hosts(
            Router::new().route("/x", get(|| async { "ok" })),
            vec!["box.lan".to_owned()].into(),
        );
        let call = |host: Option<&'static str>, path: &'static str| {
            let app = app.clone();
            async move {
                let mut req = axum::http::Request::get(path);
                if let Some(h) = host {
                    req = req.header(header::HOST, h);
                }
                app.oneshot(req.body(axum::body::Body::empty()).unwrap())
                    .await
                    .unwrap()
                    .status()
            }
        };
        assert_eq!(call(Some("127.0.0.1:1"), "/x").await, StatusCode::OK);
        assert_eq!(call(Some("box.lan:1"), "/x").await, StatusCode::OK);
        assert_eq!(
            call(Some("rebind.evil:1"), "/x").await,
            StatusCode::MISDIRECTED_REQUEST
        );
        assert_eq!(
            call(Some("rebind.evil:1"), "/nope").await,
            StatusCode::MISDIRECTED_REQUEST
        );
        assert_eq!(call(None, "/x").await, StatusCode::BAD_REQUEST);
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
