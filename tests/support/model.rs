//! A scripted, OpenAI-compatible model server for integration tests.
//!
//! It answers `POST /v1/chat/completions` (streamed `text/event-stream` of
//! `chat.completion.chunk` objects ending in `data: [DONE]`, or a plain
//! `chat.completion` when `stream` is false) and `GET /v1/models`.
//! Replies are chosen by rules registered with [`ScriptedModel::on`] and
//! [`ScriptedModel::always`], checked in insertion order.
//!
//! It also answers `POST /v1/audio/transcriptions` (OpenAI's speech-to-text
//! route): every upload is recorded ([`ScriptedModel::transcriptions`]) and
//! answered as [`ScriptedModel::set_transcription`] says.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// The model id served by `GET /v1/models`.
pub const MODEL_ID: &str = "scripted-1";

/// What the scripted model answers to one request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// Text, streamed in about three content deltas.
    Text(String),
    /// One tool call (id `call_<n>`), then `finish_reason: "tool_calls"`.
    ToolCall { name: String, arguments: Value },
    /// An HTTP error with an OpenAI-style body `{"error":{"message","type","code"}}`.
    Error { status: u16, message: String },
    /// Sleep, then answer with the inner reply. The sleep stops if the client disconnects.
    Delayed(Duration, Box<Reply>),
    /// Accept the request and never answer (until the client disconnects).
    Hang,
}

impl Reply {
    /// Shorthand for `Reply::Text(text.into())`.
    pub fn text(text: impl Into<String>) -> Self {
        Reply::Text(text.into())
    }

    /// Shorthand for `Reply::ToolCall { .. }`.
    pub fn tool_call(name: impl Into<String>, arguments: Value) -> Self {
        Reply::ToolCall {
            name: name.into(),
            arguments,
        }
    }

    /// Shorthand for `Reply::Error { .. }`.
    pub fn error(status: u16, message: impl Into<String>) -> Self {
        Reply::Error {
            status,
            message: message.into(),
        }
    }

    /// Shorthand for `Reply::Delayed(delay, Box::new(reply))`.
    pub fn delayed(delay: Duration, reply: Reply) -> Self {
        Reply::Delayed(delay, Box::new(reply))
    }
}

/// A view of one incoming request, for matching and assertions.
#[derive(Clone, Debug)]
pub struct ChatRequest {
    pub body: Value,
    /// The `Authorization` header, if any (the provider key OpenCode sent).
    pub authorization: Option<String>,
}

impl ChatRequest {
    /// The `messages` array (empty if missing).
    pub fn messages(&self) -> &[Value] {
        self.body
            .get("messages")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The `model` field ("" if missing).
    pub fn model(&self) -> String {
        self.body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    }

    /// Whether the client asked for a streamed answer (`stream: true`).
    pub fn is_stream(&self) -> bool {
        self.body
            .get("stream")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// The text of every system (or developer) message, joined with "\n".
    pub fn system_text(&self) -> String {
        self.messages()
            .iter()
            .filter(|m| matches!(role_of(m), "system" | "developer"))
            .map(message_text)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The role of the last message ("" if there are no messages).
    pub fn last_role(&self) -> String {
        self.messages()
            .last()
            .map(|m| role_of(m).to_string())
            .unwrap_or_default()
    }

    /// The text of the last message with role "user" ("" if none).
    pub fn last_user_text(&self) -> String {
        self.messages()
            .iter()
            .rev()
            .find(|m| role_of(m) == "user")
            .map(message_text)
            .unwrap_or_default()
    }

    /// Every message's text, joined with "\n".
    pub fn all_text(&self) -> String {
        self.messages()
            .iter()
            .map(message_text)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The function names offered in `tools`.
    pub fn tool_names(&self) -> Vec<String> {
        self.body
            .get("tools")
            .and_then(Value::as_array)
            .map(|tools| {
                tools
                    .iter()
                    .filter_map(|t| {
                        t.pointer("/function/name")
                            .or_else(|| t.get("name"))
                            .and_then(Value::as_str)
                            .map(str::to_string)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether this is OpenCode's session-title request (system prompt
    /// "You are a title generator", no tools). OpenCode sends it alongside the
    /// first turn of a session, so rules meant for the agent turn often exclude it.
    pub fn is_title_request(&self) -> bool {
        self.system_text().contains("You are a title generator")
    }

    /// The non-text content parts of user messages (`image_url`, `file`,
    /// ...), as the provider sent them.
    pub fn media_parts(&self) -> Vec<Value> {
        self.messages()
            .iter()
            .filter(|m| role_of(m) == "user")
            .filter_map(|m| m.get("content").and_then(Value::as_array))
            .flatten()
            .filter(|p| p.get("type").and_then(Value::as_str) != Some("text"))
            .cloned()
            .collect()
    }

    /// Whether `all_text()` contains `needle`.
    pub fn contains(&self, needle: &str) -> bool {
        self.all_text().contains(needle)
    }
}

fn role_of(message: &Value) -> &str {
    message
        .get("role")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The text of a message: `content` as a string, or its text parts joined.
fn message_text(message: &Value) -> String {
    match message.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| match p {
                Value::String(s) => Some(s.as_str()),
                _ => p.get("text").and_then(Value::as_str),
            })
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

type Matcher = Box<dyn Fn(&ChatRequest) -> bool + Send + Sync>;

struct Rule {
    matcher: Matcher,
    /// Replies handed out one per matching request.
    replies: VecDeque<Reply>,
    /// If set, the rule answers this forever (after any queued replies).
    always: Option<Reply>,
    /// If set, the rule answers what this computes from the request, forever.
    compute: Option<Computer>,
}

type Computer = Box<dyn Fn(&ChatRequest) -> Reply + Send + Sync>;

impl Rule {
    fn is_live(&self) -> bool {
        !self.replies.is_empty() || self.always.is_some() || self.compute.is_some()
    }

    fn take(&mut self) -> Reply {
        match self.replies.pop_front() {
            Some(reply) => reply,
            None => self.always.clone().expect("rule checked live"),
        }
    }
}

struct Script {
    rules: Vec<Rule>,
    default: Reply,
    requests: Vec<ChatRequest>,
    transcription: Transcription,
    transcriptions: Vec<Upload>,
}

/// What the transcription route answers.
#[derive(Clone, Debug)]
pub enum Transcription {
    /// `{"text": ...}`
    Text(String),
    /// An error status with an OpenAI-style body.
    Error(u16),
    /// Never answers (until the client gives up).
    Hang,
}

/// One upload to the transcription route.
#[derive(Clone, Debug)]
pub struct Upload {
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    pub content_type: String,
    /// The raw multipart body.
    pub body: Vec<u8>,
}

impl Upload {
    /// Whether the body contains `needle` (a field value, the file bytes).
    pub fn contains(&self, needle: &[u8]) -> bool {
        self.body.windows(needle.len()).any(|w| w == needle)
    }
}

struct Inner {
    state: Mutex<Script>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    next_call_id: AtomicU64,
    next_completion_id: AtomicU64,
    arrived: Notify,
    idle: Notify,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Script> {
        // A panicking matcher must not wedge every later test assertion.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Counts one request as in flight for as long as it lives.
struct InFlightGuard(Arc<Inner>);

impl InFlightGuard {
    fn new(inner: Arc<Inner>) -> Self {
        let now = inner.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        inner.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlightGuard(inner)
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// A scripted OpenAI-compatible model server on 127.0.0.1. Stops when dropped.
pub struct ScriptedModel {
    inner: Arc<Inner>,
    addr: SocketAddr,
    server: JoinHandle<()>,
}

impl ScriptedModel {
    /// Start a server on 127.0.0.1 with an OS-chosen port.
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0").await
    }

    /// Start a server on `addr` (a container's model service listens on
    /// every interface). It also answers `GET /__requests`: what it
    /// received, for a test that runs it in another process.
    pub async fn start_on(addr: &str) -> Self {
        let inner = Arc::new(Inner {
            state: Mutex::new(Script {
                rules: Vec::new(),
                default: Reply::Text("ok".to_string()),
                requests: Vec::new(),
                transcription: Transcription::Text("transcribed".into()),
                transcriptions: Vec::new(),
            }),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            next_call_id: AtomicU64::new(1),
            next_completion_id: AtomicU64::new(1),
            arrived: Notify::new(),
            idle: Notify::new(),
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(chat_completions))
            .route("/chat/completions", post(chat_completions))
            .route("/v1/models", get(models))
            .route("/models", get(models))
            .route("/v1/audio/transcriptions", post(transcriptions))
            .route("/__requests", get(recorded))
            .layer(DefaultBodyLimit::disable())
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("scripted model: bind {addr}: {e}"));
        let addr = listener.local_addr().expect("scripted model: local_addr");
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("[scripted-model] server error: {e}");
            }
        });
        ScriptedModel {
            inner,
            addr,
            server,
        }
    }

    /// The OpenAI-style base URL, e.g. "http://127.0.0.1:PORT/v1".
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Add a rule that hands out `replies` one per matching request; once they
    /// are used up the rule stops matching and later rules get their turn.
    /// Matchers run under an internal lock: they must not call back into this model.
    pub fn on(
        &self,
        matcher: impl Fn(&ChatRequest) -> bool + Send + Sync + 'static,
        replies: Vec<Reply>,
    ) {
        self.inner.lock().rules.push(Rule {
            matcher: Box::new(matcher),
            replies: replies.into(),
            always: None,
            compute: None,
        });
    }

    /// Add a rule that answers `reply` to every matching request, forever.
    pub fn always(
        &self,
        matcher: impl Fn(&ChatRequest) -> bool + Send + Sync + 'static,
        reply: Reply,
    ) {
        self.inner.lock().rules.push(Rule {
            matcher: Box::new(matcher),
            replies: VecDeque::new(),
            always: Some(reply),
            compute: None,
        });
    }

    /// Add a rule that answers every matching request with what `reply`
    /// computes from it (e.g. echoing an id the model learned from a tool).
    pub fn compute(
        &self,
        matcher: impl Fn(&ChatRequest) -> bool + Send + Sync + 'static,
        reply: impl Fn(&ChatRequest) -> Reply + Send + Sync + 'static,
    ) {
        self.inner.lock().rules.push(Rule {
            matcher: Box::new(matcher),
            replies: VecDeque::new(),
            always: None,
            compute: Some(Box::new(reply)),
        });
    }

    /// What the transcription route answers from now on (default: the
    /// text "transcribed").
    pub fn set_transcription(&self, t: Transcription) {
        self.inner.lock().transcription = t;
    }

    /// Every upload to the transcription route, in arrival order.
    pub fn transcriptions(&self) -> Vec<Upload> {
        self.inner.lock().transcriptions.clone()
    }

    /// The reply used when no rule matches. Default: `Text("ok")`.
    pub fn set_default(&self, reply: Reply) {
        self.inner.lock().default = reply;
    }

    /// Every request seen, in arrival order.
    pub fn requests(&self) -> Vec<ChatRequest> {
        self.inner.lock().requests.clone()
    }

    /// How many chat requests have arrived.
    pub fn request_count(&self) -> usize {
        self.inner.lock().requests.len()
    }

    /// Requests currently being answered (including delays and streaming).
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::SeqCst)
    }

    /// The highest number of requests that were in flight at once.
    pub fn max_in_flight(&self) -> usize {
        self.inner.max_in_flight.load(Ordering::SeqCst)
    }

    /// Wait until at least `n` requests have arrived and return all requests
    /// seen so far. Panics with a summary of what did arrive on timeout.
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> Vec<ChatRequest> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.inner.arrived.notified();
            {
                let state = self.inner.lock();
                if state.requests.len() >= n {
                    return state.requests.clone();
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let requests = self.requests();
                if requests.len() >= n {
                    return requests;
                }
                let summary = requests
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        format!(
                            "  #{} last_role={} last_user={:?}",
                            i + 1,
                            r.last_role(),
                            preview(&r.last_user_text(), 80)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
                panic!(
                    "scripted model: timed out after {timeout:?} waiting for {n} request(s); \
                     got {}:\n{summary}",
                    requests.len()
                );
            }
        }
    }

    /// Wait until no request is in flight. Panics on timeout.
    pub async fn wait_until_idle(&self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.inner.idle.notified();
            if self.in_flight() == 0 {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() && self.in_flight() != 0 {
                panic!(
                    "scripted model: timed out after {timeout:?} waiting for idle; \
                     {} request(s) still in flight",
                    self.in_flight()
                );
            }
        }
    }
}

/// `GET /__requests`: each chat request's `Authorization`, model and
/// last user text.
async fn recorded(State(inner): State<Arc<Inner>>) -> Response {
    let list: Vec<Value> = inner
        .lock()
        .requests
        .iter()
        .map(|r| {
            json!({
                "authorization": r.authorization,
                "model": r.model(),
                "last_user": r.last_user_text(),
                "last_role": r.last_role(),
            })
        })
        .collect();
    Json(json!({ "requests": list })).into_response()
}

async fn transcriptions(
    State(inner): State<Arc<Inner>>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let answer = {
        let mut state = inner.lock();
        state.transcriptions.push(Upload {
            authorization: header(header::AUTHORIZATION),
            content_type: header(header::CONTENT_TYPE).unwrap_or_default(),
            body: body.to_vec(),
        });
        state.transcription.clone()
    };
    match answer {
        Transcription::Text(text) => Json(json!({ "text": text })).into_response(),
        Transcription::Error(status) => (
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            Json(json!({"error": {"message": "scripted transcription failure", "type": "server_error"}})),
        )
            .into_response(),
        Transcription::Hang => std::future::pending().await,
    }
}

impl Drop for ScriptedModel {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn preview(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

async fn models() -> Json<Value> {
    Json(json!({
        "object": "list",
        "data": [{
            "id": MODEL_ID,
            "object": "model",
            "created": 0,
            "owned_by": "scripted",
        }],
    }))
}

async fn chat_completions(
    State(inner): State<Arc<Inner>>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    // Counted from arrival until the response body is finished or dropped
    // (client gone). Dropping the handler future also drops the guard.
    let guard = InFlightGuard::new(inner.clone());

    let body: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("[scripted-model] bad request body: {e}");
            return error_response(400, &format!("invalid JSON body: {e}"));
        }
    };
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let request = ChatRequest {
        body,
        authorization,
    };

    let (number, reply) = {
        let mut state = inner.lock();
        state.requests.push(request.clone());
        let number = state.requests.len();
        let reply = match state
            .rules
            .iter_mut()
            .find(|rule| rule.is_live() && (rule.matcher)(&request))
        {
            Some(Rule {
                compute: Some(f), ..
            }) => f(&request),
            Some(rule) => rule.take(),
            None => state.default.clone(),
        };
        (number, reply)
    };
    inner.arrived.notify_waiters();

    eprintln!(
        "[scripted-model] #{number} model={} stream={} last_role={} last_user={:?} -> {}",
        request.model(),
        request.is_stream(),
        request.last_role(),
        preview(&request.last_user_text(), 80),
        describe(&reply),
    );

    // Delays and hangs happen inside this future: hyper drops it when the
    // client disconnects, which stops the sleep and drops the guard.
    let mut reply = reply;
    loop {
        match reply {
            Reply::Delayed(delay, next) => {
                tokio::time::sleep(delay).await;
                reply = *next;
            }
            Reply::Hang => std::future::pending::<()>().await,
            _ => break,
        }
    }

    let completion = match reply {
        Reply::Error { status, message } => return error_response(status, &message),
        Reply::Text(text) => Completion::Text(text),
        Reply::ToolCall { name, arguments } => {
            let id = format!("call_{}", inner.next_call_id.fetch_add(1, Ordering::SeqCst));
            let arguments = match arguments {
                Value::String(s) => s,
                other => other.to_string(),
            };
            Completion::ToolCall {
                id,
                name,
                arguments,
            }
        }
        Reply::Delayed(..) | Reply::Hang => unreachable!("resolved above"),
    };

    let meta = Meta {
        id: format!(
            "chatcmpl-{}",
            inner.next_completion_id.fetch_add(1, Ordering::SeqCst)
        ),
        created: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        model: match request.model() {
            m if m.is_empty() => MODEL_ID.to_string(),
            m => m,
        },
        usage: usage(&request, &completion),
    };

    if request.is_stream() {
        stream_response(meta, completion, guard)
    } else {
        drop(guard);
        Json(plain_completion(&meta, &completion)).into_response()
    }
}

fn describe(reply: &Reply) -> String {
    match reply {
        Reply::Text(t) => format!("Text({:?})", preview(t, 40)),
        Reply::ToolCall { name, .. } => format!("ToolCall({name})"),
        Reply::Error { status, .. } => format!("Error({status})"),
        Reply::Delayed(d, r) => format!("Delayed({d:?}, {})", describe(r)),
        Reply::Hang => "Hang".to_string(),
    }
}

enum Completion {
    Text(String),
    ToolCall {
        id: String,
        name: String,
        arguments: String,
    },
}

impl Completion {
    fn finish_reason(&self) -> &'static str {
        match self {
            Completion::Text(_) => "stop",
            Completion::ToolCall { .. } => "tool_calls",
        }
    }
}

struct Meta {
    id: String,
    created: u64,
    model: String,
    usage: Value,
}

impl Meta {
    fn chunk(&self, delta: Value, finish_reason: Option<&str>, usage: bool) -> Value {
        let mut chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{
                "index": 0,
                "delta": delta,
                "finish_reason": finish_reason,
            }],
        });
        if usage {
            chunk["usage"] = self.usage.clone();
        }
        chunk
    }
}

/// Rough token estimate: about four characters per token, at least one.
fn estimate_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4).max(1)
}

fn usage(request: &ChatRequest, completion: &Completion) -> Value {
    let prompt = estimate_tokens(&request.all_text());
    let completion = match completion {
        Completion::Text(t) => estimate_tokens(t),
        Completion::ToolCall {
            name, arguments, ..
        } => estimate_tokens(name) + estimate_tokens(arguments),
    };
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    })
}

/// Split text into up to three pieces on char boundaries.
fn split_text(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return Vec::new();
    }
    let size = chars.len().div_ceil(3);
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

fn stream_response(meta: Meta, completion: Completion, guard: InFlightGuard) -> Response {
    let mut chunks = vec![meta.chunk(json!({"role": "assistant", "content": ""}), None, false)];
    match &completion {
        Completion::Text(text) => {
            for piece in split_text(text) {
                chunks.push(meta.chunk(json!({"content": piece}), None, false));
            }
        }
        Completion::ToolCall {
            id,
            name,
            arguments,
        } => chunks.push(meta.chunk(
            json!({
                "tool_calls": [{
                    "index": 0,
                    "id": id,
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                }],
            }),
            None,
            false,
        )),
    }
    chunks.push(meta.chunk(json!({}), Some(completion.finish_reason()), true));

    let mut events: Vec<Bytes> = chunks
        .into_iter()
        .map(|c| Bytes::from(format!("data: {c}\n\n")))
        .collect();
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));

    let stream = futures_util::stream::unfold(
        (events.into_iter(), guard),
        |(mut events, guard)| async move {
            let event = events.next()?;
            // Give each event its own write so clients see a real stream.
            tokio::task::yield_now().await;
            Some((Ok::<_, Infallible>(event), (events, guard)))
        },
    );

    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .expect("valid response")
}

fn plain_completion(meta: &Meta, completion: &Completion) -> Value {
    let message = match completion {
        Completion::Text(text) => json!({"role": "assistant", "content": text}),
        Completion::ToolCall {
            id,
            name,
            arguments,
        } => json!({
            "role": "assistant",
            "content": null,
            "tool_calls": [{
                "id": id,
                "type": "function",
                "function": {"name": name, "arguments": arguments},
            }],
        }),
    };
    json!({
        "id": meta.id,
        "object": "chat.completion",
        "created": meta.created,
        "model": meta.model,
        "choices": [{
            "index": 0,
            "message": message,
            "finish_reason": completion.finish_reason(),
        }],
        "usage": meta.usage,
    })
}

fn error_response(status: u16, message: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let kind = match status.as_u16() {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        s if s >= 500 => "server_error",
        _ => "api_error",
    };
    let body = json!({
        "error": {
            "message": message,
            "type": kind,
            "code": status.as_u16().to_string(),
        }
    });
    (status, Json(body)).into_response()
}
