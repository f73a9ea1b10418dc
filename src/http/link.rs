//! `GET|POST /api/v1/whatsapp/link`: the WhatsApp link's state and the code
//! to link with, and a new link after a permanent end (logged out, banned,
//! replaced) without restarting the bridge. Behind the owner's token like
//! `/status`; `pocketbrain whatsapp link` is its client.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::json;

use super::{ApiError, AppState};
use crate::channel::whatsapp::{Relink, WhatsAppChannel};

/// The routes, for the guarded part of the bridge's router.
pub(super) fn routes(r: Router<AppState>) -> Router<AppState> {
    r.route(
        "/api/v1/whatsapp/link",
        axum::routing::get(show).post(relink),
    )
}

fn channel(s: &AppState) -> Result<&WhatsAppChannel, ApiError> {
    s.whatsapp.as_ref().ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            "this bridge runs without WhatsApp (PB_CHANNEL is not whatsapp)".into(),
        )
    })
}

/// The link: `up`, `code`, `message`, and `pairing` (the QR code's text
/// or the phone pairing code) while it is pairing.
fn state(wa: &WhatsAppChannel) -> serde_json::Value {
    use crate::channel::Channel;
    let link = wa.link().borrow().clone();
    json!({
        "up": link.up,
        "code": link.code,
        "message": link.message,
        "pairing": wa.pairing(),
    })
}

async fn show(State(s): State<AppState>) -> Result<Response, ApiError> {
    Ok(Json(state(channel(&s)?)).into_response())
}

async fn relink(State(s): State<AppState>) -> Result<Response, ApiError> {
    let wa = channel(&s)?;
    match wa.relink() {
        Ok(how) => {
            let mut body = state(wa);
            body["started"] = json!(how == Relink::Started);
            let status = match how {
                Relink::Started => StatusCode::ACCEPTED,
                Relink::AlreadyPairing => StatusCode::OK,
            };
            Ok((status, Json(body)).into_response())
        }
        Err(refused) => Err(ApiError(StatusCode::CONFLICT, refused.to_string())),
    }
}
