//! The bridge's HTTP server: `/health`, `/metrics`, `/status` and the
//! WhatsApp link's `/api/v1/whatsapp/link` ([`link`]) always, the fake
//! channel's `/fake/*` ([`crate::channel::fake::routes`]) when it is
//! selected, and the guards every route passes: the `Host` allow-list, the
//! token, the JSON content type and the body limit.
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

pub mod contract;
mod link;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tower_http::limit::RequestBodyLimitLayer;

pub use contract::{ApiError, AppParts, AppState};
pub(crate) use contract::{MAX_BODY_BYTES, inbound_refused, parse_body};

use crate::config::Secret;

/// The bridge's routes; `api` (the local API's, with their own state and
/// guards) are served beside them, under the same body limit and the same
/// `Host` rule ([`host_allowed`], with `hosts` the names of `PB_HTTP_HOSTS`).
pub fn router(state: AppState, api: Option<Router>, hosts: Vec<String>) -> Router {
    let r = Router::new()
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .route("/tasks/changed", post(tasks_changed));
    let mut r = link::routes(r);
    if state.fake.is_some() {
        r = r.merge(crate::channel::fake::routes::router());
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

/// Serves until `shutdown` resolves; lets open requests finish for up to 5 s.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let done = shutdown.clone();
    // Replies and streamed frames go out when written, not held back by
    // Nagle's algorithm for the ack of the previous segment.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    let server =
        axum::serve(listener, app).with_graceful_shutdown(async move { done.cancelled().await });
    tokio::select! {
        r = server => r,
        _ = async { shutdown.cancelled().await; tokio::time::sleep(Duration::from_secs(5)).await } => Ok(()),
    }
}

#[cfg(test)]
mod tests;
