//! The API's conversations: created on first use, listed, shown and
//! forgotten.

use super::*;

/// Registers `chat` as an API conversation with `profile` unless it is
/// registered already (then it is kept as it is).
pub async fn ensure_conversation(
    s: &ApiState,
    chat: &ChatJid,
    profile: Profile,
) -> Result<RegisteredChat, ApiError> {
    if let Some(reg) = s.store.registered(chat).await.map_err(unavailable)? {
        return Ok(reg);
    }
    let name = chat.conversation().expect("an API chat").to_owned();
    let reg = RegisteredChat {
        jid: chat.clone(),
        name: name.clone(),
        folder: Folder::parse(&format!("api-{name}")).expect("conversation names fit folders"),
        is_main: false,
        trigger: TriggerRule::Always,
        profile,
    };
    match s.store.register(reg.clone()).await {
        Ok(()) => {
            tracing::info!(chat = %chat, profile = %profile, "API conversation registered");
            Ok(reg)
        }
        Err(crate::store::StoreError::Conflict(why)) => Err(ApiError(
            StatusCode::CONFLICT,
            format!("conversation: {why}"),
        )),
        Err(e) => Err(unavailable(e)),
    }
}

/// The conversation named in a path, checked against the caller, and its
/// registration.
pub(super) async fn path_conversation(
    s: &ApiState,
    caller: &Caller,
    id: &str,
) -> Result<RegisteredChat, ApiError> {
    let chat = ChatJid::api(id).map_err(|e| ApiError::bad(format!("id: {e}")))?;
    if !caller.may_use(&chat) {
        return Err(forbidden("this API key may not use that conversation"));
    }
    s.store
        .registered(&chat)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no conversation {id:?}")))
}

pub(super) fn conversation_json(reg: &RegisteredChat) -> serde_json::Value {
    json!({
        "id": reg.jid.conversation(),
        "chat": reg.jid,
        "profile": reg.profile,
        "folder": reg.folder,
    })
}

pub(super) async fn list_conversations(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    let chats = s.store.api_chats().await.map_err(unavailable)?;
    let list: Vec<_> = chats
        .iter()
        .filter(|r| caller.may_use(&r.jid))
        .map(conversation_json)
        .collect();
    Ok(Json(json!({ "conversations": list })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ShowQuery {
    limit: Option<usize>,
}

impl ShowQuery {
    /// The number of messages asked for: 50 unless said, 1 to 500.
    pub(super) fn limit(&self) -> Result<usize, ApiError> {
        let limit = self.limit.unwrap_or(50);
        if !(1..=500).contains(&limit) {
            return Err(ApiError::bad("limit: 1 to 500"));
        }
        Ok(limit)
    }
}

pub(super) async fn show_conversation(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    q: Result<Query<ShowQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let limit = q
        .map_err(|e| ApiError::bad(format!("query: {e}")))?
        .0
        .limit()?;
    let reg = path_conversation(&s, &caller, &id).await?;
    let messages = s
        .store
        .recent_messages(&reg.jid, limit)
        .await
        .map_err(unavailable)?;
    let mut body = conversation_json(&reg);
    body["messages"] = json!(messages);
    Ok(Json(body).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ForgetQuery {
    purge: Option<bool>,
}

/// Forgets a conversation's session and history; with `?purge=true` its
/// OpenCode sessions are deleted too (first: if OpenCode fails, nothing is
/// forgotten) and its folder removed, never through a symlink. Refused
/// while a reply is being written.
pub(super) async fn forget_conversation(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    q: Result<Query<ForgetQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let purge = q
        .map_err(|e| ApiError::bad(format!("query: {e} (purge=true or false)")))?
        .0
        .purge
        .unwrap_or(false);
    let reg = path_conversation(&s, &caller, &id).await?;
    let running = s.store.run_of(&reg.jid).await.map_err(unavailable)?;
    if running.is_some_and(|r| r.state == crate::model::RunState::Running) {
        return Err(ApiError(
            StatusCode::CONFLICT,
            "a reply is being written in this conversation; try again when it is done".into(),
        ));
    }
    if purge {
        // OpenCode keeps a session's whole history: delete it first, so a
        // failure leaves everything as it was, to be tried again.
        let dir = std::path::absolute(s.settings.workspace.join("chats").join(reg.folder.as_str()))
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        for session in s.store.sessions_of(&reg.jid).await.map_err(unavailable)? {
            if let Err(e) = s.agent.delete_session(&dir, &session).await {
                tracing::error!(chat = %reg.jid, session = %session, error = %e, "cannot delete a purged conversation's OpenCode session");
                return Err(ApiError(
                    StatusCode::BAD_GATEWAY,
                    format!(
                        "OpenCode could not delete the conversation's session ({e}); nothing was forgotten, try again"
                    ),
                ));
            }
            tracing::info!(chat = %reg.jid, session = %session, "OpenCode session deleted");
        }
    }
    s.store.forget_chat(&reg.jid).await.map_err(unavailable)?;
    let mut purged = false;
    if purge {
        let (workspace, folder) = (s.settings.workspace.clone(), reg.folder.clone());
        let removed = tokio::task::spawn_blocking(move || {
            crate::workspace::remove_chat_dir(&workspace, &folder)
        })
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|r| r);
        match removed {
            Ok(was) => purged = was,
            Err(e) => {
                tracing::error!(chat = %reg.jid, folder = %reg.folder.as_str(), error = %e, "cannot remove a forgotten conversation's folder");
                return Err(ApiError(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!(
                        "the conversation is forgotten, but its folder could not be removed: {e}"
                    ),
                ));
            }
        }
    }
    tracing::info!(chat = %reg.jid, purged, "API conversation forgotten");
    Ok(Json(json!({ "id": id, "forgotten": true, "purged": purged })).into_response())
}
