//! The local API: a second way to talk to the assistant, beside WhatsApp.
//!
//! A conversation over the API is a chat like any other: `api:<name>`,
//! registered on first use with a profile and its own folder, answered
//! through the same intake, queue, run, cursor and outbox (see
//! [`crate::channel::api`] for how its outbox rows are delivered). The
//! routes, all described by the OpenAPI document at
//! `/api/v1/openapi.json`:
//!
//! - `POST /api/v1/chat` (the reply, synchronously), `POST
//!   /api/v1/chat/stream` (Server-Sent Events: the reply's text as OpenCode
//!   produces it, then the reply as stored) ([`exchange`]);
//! - `GET|DELETE /api/v1/conversations[/{id}]`, `GET /api/v1/approvals`,
//!   `POST /api/v1/approvals/{code}`;
//! - `GET /api/v1/chats[/{chat}]`: the owner's list of every registered
//!   chat (with its unread count) and a chat's history, `POST
//!   /api/v1/chats/{chat}/read` the owner's read mark ([`chats`]);
//! - `POST /v1/chat/completions` and `GET /v1/models`, OpenAI-compatible
//!   ([`openai`]);
//! - `GET /api/v1/ws`, a WebSocket ([`ws`]).
//!
//! Access. Every route but the document needs a credential: an API key
//! (`pocketbrain api-keys create`; only its hash is stored) or, as the
//! owner, `PB_HTTP_TOKEN`. A key is pinned to one conversation and rate
//! limited ([`limit`]: 429 with `Retry-After`); the token may use any API
//! conversation and is not limited. A request from a web page (it carries
//! an `Origin`) is refused unless its origin is in `PB_API_CORS_ORIGINS`.

pub mod exchange;
pub mod limit;
pub mod openai;
pub mod ws;

mod approvals;
mod chats;
mod conversations;

use approvals::*;
use chats::*;
pub use conversations::*;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;

use crate::approvals::Approvals;
use crate::channel::InboundSink;
use crate::channel::api::ApiChannel;
use crate::config::Secret;
use crate::http::{ApiError, parse_body};
use crate::ids::{ChatJid, Folder};
use crate::model::{Profile, RegisteredChat, TriggerRule};
use crate::store::Store;
use crate::store::api_keys::ApiKey;

/// The OpenAPI document of these routes.
pub const OPENAPI: &str = include_str!("openapi.json");

/// The conversation the owner's token uses when a request names none.
pub const DEFAULT_CONVERSATION: &str = "default";

/// What the API is set to.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// `PB_HTTP_TOKEN`: the owner's credential.
    pub token: Option<Secret>,
    /// `PB_API_RATE_PER_MINUTE`.
    pub rate_per_minute: u32,
    /// `PB_API_CORS_ORIGINS`.
    pub cors_origins: Vec<String>,
    /// `PB_API_REPLY_TIMEOUT`.
    pub reply_timeout: Duration,
    /// `PB_MAX_TEXT_BYTES`.
    pub max_text_bytes: usize,
    /// `PB_WORKSPACE` (chat folders are under `chats/`).
    pub workspace: PathBuf,
}

/// What the routes use; cheap to clone.
#[derive(Clone)]
pub struct ApiState(Arc<Inner>);

pub struct Inner {
    pub store: Store,
    /// For deleting a purged conversation's sessions, and its runs' events
    /// (a reply's text as it is produced).
    pub agent: Arc<dyn crate::agent::Agent>,
    /// Where a submitted message goes: the one inbound sink every channel uses.
    pub inbound: Arc<dyn InboundSink>,
    pub channel: ApiChannel,
    pub approvals: Option<Approvals>,
    pub settings: ApiSettings,
    /// The bridge's shutdown: open WebSockets close on it.
    pub cancel: tokio_util::sync::CancellationToken,
    /// The main channel's link (WhatsApp's, or the fake phone's): the
    /// WebSocket tells its changes.
    pub link: tokio::sync::watch::Receiver<crate::channel::LinkStatus>,
    limiter: limit::Limiter,
    /// The model each chat folder's turns use when the chat has none of
    /// its own, as lately read.
    default_models: DefaultModels,
}

impl std::ops::Deref for ApiState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl ApiState {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Store,
        agent: Arc<dyn crate::agent::Agent>,
        inbound: Arc<dyn InboundSink>,
        channel: ApiChannel,
        approvals: Option<Approvals>,
        settings: ApiSettings,
        cancel: tokio_util::sync::CancellationToken,
        link: tokio::sync::watch::Receiver<crate::channel::LinkStatus>,
    ) -> Self {
        let limiter = limit::Limiter::per_minute(settings.rate_per_minute);
        Self(Arc::new(Inner {
            store,
            agent,
            inbound,
            channel,
            approvals,
            settings,
            cancel,
            link,
            limiter,
            default_models: DefaultModels::default(),
        }))
    }
}

/// Who is asking.
#[derive(Debug, Clone)]
pub enum Caller {
    /// The owner, with `PB_HTTP_TOKEN`.
    Owner,
    Key(ApiKey),
}

impl Caller {
    /// The sender recorded on its messages.
    pub fn sender(&self) -> String {
        match self {
            Caller::Owner => "api:owner".into(),
            Caller::Key(k) => format!("api-key:{}", k.name),
        }
    }

    /// The chat a request names (`requested`, else the caller's default),
    /// and the profile it gets if the caller creates it. A key may use its
    /// own conversation only.
    pub fn resolve(&self, requested: Option<&str>) -> Result<(ChatJid, Profile), ApiError> {
        match self {
            Caller::Owner => {
                let name = requested.unwrap_or(DEFAULT_CONVERSATION);
                let chat =
                    ChatJid::api(name).map_err(|e| ApiError::bad(format!("conversation: {e}")))?;
                Ok((chat, Profile::Member))
            }
            Caller::Key(k) => match requested {
                Some(name) if name != k.conversation => Err(forbidden(format!(
                    "this API key may use the conversation {:?} only",
                    k.conversation
                ))),
                _ => Ok((k.chat(), k.profile)),
            },
        }
    }

    /// Whether the caller may read or forget `chat`.
    pub fn may_use(&self, chat: &ChatJid) -> bool {
        match self {
            Caller::Owner => chat.is_api(),
            Caller::Key(k) => *chat == k.chat(),
        }
    }

    /// Whether the caller may see and answer approval requests: the owner,
    /// or a key with the main profile.
    pub fn is_owner(&self) -> bool {
        match self {
            Caller::Owner => true,
            Caller::Key(k) => k.profile == Profile::Main,
        }
    }
}

fn forbidden(why: impl Into<String>) -> ApiError {
    ApiError(StatusCode::FORBIDDEN, why.into())
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "API: store failed");
    ApiError(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("store unavailable, try again: {e}"),
    )
}

/// The API's routes, with their state, credentials and origin rules.
pub fn router(state: ApiState) -> Router {
    let guarded = Router::new()
        .route("/api/v1/chat", post(exchange::chat))
        .route("/api/v1/chat/stream", post(exchange::chat_stream))
        .route("/api/v1/conversations", get(list_conversations))
        .route(
            "/api/v1/conversations/{id}",
            get(show_conversation).delete(forget_conversation),
        )
        .route("/api/v1/chats", get(list_chats))
        .route("/api/v1/chats/{chat}", get(show_chat))
        .route("/api/v1/chats/{chat}/read", post(mark_chat_read))
        .route("/api/v1/approvals", get(list_approvals))
        .route("/api/v1/approvals/{code}", post(answer_approval))
        .route("/api/v1/ws", get(ws::upgrade))
        .route("/v1/chat/completions", post(openai::completions))
        .route("/v1/models", get(openai::models))
        .route_layer(axum::middleware::from_fn(crate::http::json_only))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authenticate,
        ));
    let origins = Arc::new(state.settings.cors_origins.clone());
    let mut r = guarded
        .route("/api/v1/openapi.json", get(openapi))
        .with_state(state);
    if !origins.is_empty() {
        let list: Vec<HeaderValue> = origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        r = r.layer(
            tower_http::cors::CorsLayer::new()
                .allow_origin(list)
                .allow_methods([Method::GET, Method::POST, Method::DELETE])
                .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
                .max_age(Duration::from_secs(600)),
        );
    }
    r.layer(axum::middleware::from_fn(
        move |req: Request, next: Next| {
            let origins = origins.clone();
            async move { origin_guard(&origins, req, next).await }
        },
    ))
}

/// Refuses a request from a web page whose origin is not allowed, before
/// anything else looks at it (a preflight included).
async fn origin_guard(allowed: &[String], req: Request, next: Next) -> Response {
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let ok = origin
            .to_str()
            .is_ok_and(|o| allowed.iter().any(|a| a.eq_ignore_ascii_case(o)));
        if !ok {
            return ApiError(
                StatusCode::FORBIDDEN,
                format!(
                    "requests from the web origin {:?} are not allowed (PB_API_CORS_ORIGINS)",
                    origin.to_str().unwrap_or("?")
                ),
            )
            .into_response();
        }
    }
    next.run(req).await
}

/// The bearer credential of a request.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// Finds the caller (owner token or live API key) and applies the key's
/// rate limit; the caller goes into the request's extensions.
async fn authenticate(State(s): State<ApiState>, mut req: Request, next: Next) -> Response {
    let Some(given) = bearer(req.headers()) else {
        return ApiError(
            StatusCode::UNAUTHORIZED,
            "missing credentials: send Authorization: Bearer <API key or PB_HTTP_TOKEN>".into(),
        )
        .into_response();
    };
    let caller = if s.settings.token.is_some()
        && crate::http::authorized(s.settings.token.as_ref(), req.headers())
    {
        Caller::Owner
    } else {
        match s.store.api_key_for(given).await {
            Ok(Some(key)) => Caller::Key(key),
            Ok(None) => {
                return ApiError(
                    StatusCode::UNAUTHORIZED,
                    "unknown or revoked API key".into(),
                )
                .into_response();
            }
            Err(e) => return unavailable(e).into_response(),
        }
    };
    if let Caller::Key(key) = &caller
        && let Err(wait) = s.limiter.check(&key.name)
    {
        let secs = limit::retry_after_secs(wait);
        let mut res = ApiError(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "API key {:?} is over {} requests a minute (PB_API_RATE_PER_MINUTE); retry in {secs} s",
                key.name, s.settings.rate_per_minute
            ),
        )
        .into_response();
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        return res;
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        OPENAPI.to_owned(),
    )
        .into_response()
}
