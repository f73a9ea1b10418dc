//! The owner's approvals through the API: the waiting list and answers.

use super::*;

pub(super) async fn list_approvals(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    if !caller.is_owner() {
        return Err(forbidden(
            "approvals are the owner's: use PB_HTTP_TOKEN or a key with the main profile",
        ));
    }
    let pending = s.store.pending_approvals().await.map_err(unavailable)?;
    let list: Vec<_> = pending
        .iter()
        .map(|a| {
            json!({
                "code": a.code, "chat": a.chat, "permission": a.permission,
                "patterns": a.patterns, "detail": a.detail, "always": a.always,
                "created_at": a.created_at, "expires_at": a.expires_at,
            })
        })
        .collect();
    Ok(Json(json!({ "approvals": list })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AnswerReq {
    /// `yes`, `always` or `no`.
    answer: String,
}

/// Answers a pending approval as the owner would in the main chat
/// (`yes|always|no CODE`), with the same rules.
pub(super) async fn answer_approval(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(code): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: AnswerReq = parse_body(body)?;
    if !caller.is_owner() {
        return Err(forbidden(
            "approvals are the owner's: use PB_HTTP_TOKEN or a key with the main profile",
        ));
    }
    let answer = req.answer.trim().to_ascii_lowercase();
    if !matches!(answer.as_str(), "yes" | "always" | "no") {
        return Err(ApiError::bad("answer: yes, always or no"));
    }
    if !crate::approvals::is_code(&code) {
        return Err(ApiError::bad("code: four, six or eight digits"));
    }
    let approval = s
        .store
        .approval_by_code(&code)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| {
            ApiError(
                StatusCode::NOT_FOUND,
                format!("no request has the code {code}"),
            )
        })?;
    if approval.state != crate::model::ApprovalState::Pending {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!("request {code} is closed already ({})", approval.state),
        ));
    }
    let main = match s.store.main_chat().await.map_err(unavailable)? {
        Some(jid) => s.store.registered(&jid).await.map_err(unavailable)?,
        None => None,
    };
    let (Some(approvals), Some(main)) = (&s.approvals, main) else {
        return Err(ApiError(
            StatusCode::CONFLICT,
            "no main chat is registered to answer approvals for".into(),
        ));
    };
    let handled = approvals
        // The caller is the owner (the token or a `main` key).
        .on_message(&main, &format!("{answer} {code}"), true)
        .await
        .map_err(|e| {
            tracing::error!(code = %code, error = %e, "API: cannot answer an approval");
            ApiError(
                StatusCode::BAD_GATEWAY,
                format!("the answer could not be passed on: {e}"),
            )
        })?;
    if !handled {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!("request {code} could not be answered"),
        ));
    }
    tracing::info!(code = %code, answer = %answer, by = %caller.sender(), "approval answered over the API");
    Ok(Json(json!({ "code": code, "answer": answer })).into_response())
}
