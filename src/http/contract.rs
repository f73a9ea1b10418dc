//! What every HTTP route shares: the state it reads, its refusals, how a
//! body is read. Below the routes (the bridge's own in `http`, the fake
//! channel's in `channel/fake/routes`), so neither imports the other's.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::json;
use tokio::sync::Notify;

use crate::agent::Agent;
use crate::channel::Channel;
use crate::channel::InboundSink;
use crate::channel::fake::FakeChannel;
use crate::config::Secret;
use crate::queue::ChatQueue;
use crate::store::Store;

/// Largest request body read at all; text limits are checked after parsing
/// so the error can name them.
pub(crate) const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// What the routes read and call: one shared [`AppParts`], so the clone
/// axum makes for every request and middleware is one reference count,
/// not a dozen (and two strings).
#[derive(Clone)]
pub struct AppState(Arc<AppParts>);

impl AppState {
    pub fn new(parts: AppParts) -> Self {
        Self(Arc::new(parts))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppParts;
    fn deref(&self) -> &AppParts {
        &self.0
    }
}

/// The parts of [`AppState`].
pub struct AppParts {
    pub store: Store,
    pub agent: Arc<dyn Agent>,
    pub channel: Arc<dyn Channel>,
    pub queue: ChatQueue,
    /// Where the fake channel hands its messages: the one inbound sink
    /// every channel uses.
    pub inbound: Arc<dyn InboundSink>,
    /// Notified when the CLI changed tasks (the scheduler sleeps on it).
    pub tasks_wake: Arc<Notify>,
    /// `PB_MAX_TEXT_BYTES`.
    pub max_text_bytes: usize,
    pub fake: Option<FakeChannel>,
    /// The WhatsApp channel, when it is the one selected (its link routes).
    pub whatsapp: Option<crate::channel::whatsapp::WhatsAppChannel>,
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
