//! `GET|POST /api/v1/whatsapp/link`: the WhatsApp link's state and the code
//! to link with, and a new link after a permanent end (logged out, banned,
//! replaced) without restarting the bridge, by QR code or by phone number
//! (`{"phone": "+49 151 ..."}`: a pairing code to enter on the phone).
//! Behind the owner's token like `/status`; `pocketbrain whatsapp link` and
//! the terminal app are its clients. With the fake channel, the fake
//! phone's link answers the same way (with made-up codes).

use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, AppState, parse_body};
use crate::channel::whatsapp::{Pairing, Relink, RelinkRefused};

/// The routes, for the guarded part of the bridge's router.
pub(super) fn routes(r: Router<AppState>) -> Router<AppState> {
    r.route(
        "/api/v1/whatsapp/link",
        axum::routing::get(show).post(relink),
    )
}

/// The channel whose link this is: WhatsApp's, or the fake phone's.
enum Linkable<'a> {
    WhatsApp(&'a crate::channel::whatsapp::WhatsAppChannel),
    Fake(&'a crate::channel::fake::FakeChannel),
}

impl Linkable<'_> {
    fn of(s: &AppState) -> Result<Linkable<'_>, ApiError> {
        match (&s.whatsapp, &s.fake) {
            (Some(wa), _) => Ok(Linkable::WhatsApp(wa)),
            (None, Some(fake)) => Ok(Linkable::Fake(fake)),
            (None, None) => Err(ApiError(
                StatusCode::NOT_FOUND,
                "this bridge runs without WhatsApp (PB_CHANNEL is not whatsapp)".into(),
            )),
        }
    }

    fn pairing(&self) -> Option<Pairing> {
        match self {
            Linkable::WhatsApp(wa) => wa.pairing(),
            Linkable::Fake(f) => f.pairing(),
        }
    }

    fn relink(&self, phone: Option<String>) -> Result<Relink, RelinkRefused> {
        match self {
            Linkable::WhatsApp(wa) => wa.relink(phone),
            Linkable::Fake(f) => f.relink(phone),
        }
    }

    /// The link: `up`, `code`, `message`, and `pairing` (the QR code's
    /// text or the phone pairing code) while it is pairing.
    fn state(&self) -> serde_json::Value {
        use crate::channel::Channel;
        let link = match self {
            Linkable::WhatsApp(wa) => wa.link().borrow().clone(),
            Linkable::Fake(f) => f.link().borrow().clone(),
        };
        json!({
            "up": link.up,
            "code": link.code,
            "message": link.message,
            "pairing": self.pairing(),
        })
    }
}

async fn show(State(s): State<AppState>) -> Result<Response, ApiError> {
    Ok(Json(Linkable::of(&s)?.state()).into_response())
}

/// `POST`'s body, all optional (no body at all: pair by QR code).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkReq {
    /// Pair by code with this number (country code first).
    phone: Option<String>,
}

async fn relink(
    State(s): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let ch = Linkable::of(&s)?;
    let req: LinkReq = match body {
        Ok(b) if b.iter().all(u8::is_ascii_whitespace) => LinkReq::default(),
        body => {
            // An object only (serde would take a list for the struct).
            let v: serde_json::Value = parse_body(body)?;
            if !v.is_object() {
                return Err(ApiError::bad(
                    "malformed JSON: expected an object such as {\"phone\": \"+49 151 12345678\"}",
                ));
            }
            serde_json::from_value(v).map_err(|e| ApiError::bad(format!("malformed JSON: {e}")))?
        }
    };
    let phone = req
        .phone
        .map(|p| crate::config::parse_phone(&p).map_err(|e| ApiError::bad(format!("phone: {e}"))))
        .transpose()?;
    match ch.relink(phone) {
        Ok(how) => {
            let mut body = ch.state();
            body["started"] = json!(how != Relink::AlreadyPairing);
            let status = match how {
                Relink::Started | Relink::Switched => StatusCode::ACCEPTED,
                Relink::AlreadyPairing => StatusCode::OK,
            };
            Ok((status, Json(body)).into_response())
        }
        Err(refused) => Err(ApiError(StatusCode::CONFLICT, refused.to_string())),
    }
}
