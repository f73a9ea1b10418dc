//! The owner's view of every registered chat through the API: the list
//! (WhatsApp chats and API conversations, most recently active first, each
//! with its unread count) and a chat's stored history. Read-only but for
//! the owner's read mark (`POST /api/v1/chats/{chat}/read`, forward only):
//! messages to a WhatsApp chat come from its people, not from the API.

use super::*;

use std::collections::HashMap;

fn owners_only(caller: &Caller) -> Result<(), ApiError> {
    if caller.is_owner() {
        Ok(())
    } else {
        Err(forbidden(
            "the chat list is the owner's: use PB_HTTP_TOKEN or a key with the main profile",
        ))
    }
}

/// How long the default model is kept before it is asked again (the
/// terminal app asks for the list every 2 s).
const DEFAULT_MODEL_FRESH: Duration = Duration::from_secs(60);
/// The longest wait for OpenCode to say it: the list is not held up longer.
const DEFAULT_MODEL_WAIT: Duration = Duration::from_secs(3);

/// The model a chat's turns use when it has none of its own, per folder
/// asked (the workspace), as lately read (`None`: OpenCode did not say).
#[derive(Default)]
pub(super) struct DefaultModels(
    tokio::sync::Mutex<HashMap<PathBuf, (tokio::time::Instant, Option<String>)>>,
);

impl ApiState {
    /// The model a turn in `dir` runs with when the chat names none: what
    /// the run names too, `PB_OPENCODE_MODEL`, else OpenCode's configured
    /// default for that folder (`GET /config`'s `model`).
    async fn default_model(&self, dir: PathBuf) -> Option<String> {
        if let Some((at, m)) = self.default_models.0.lock().await.get(&dir)
            && at.elapsed() < DEFAULT_MODEL_FRESH
        {
            return m.clone();
        }
        let m = match tokio::time::timeout(DEFAULT_MODEL_WAIT, self.agent.models(&dir)).await {
            Ok(Ok(models)) => models.default,
            _ => None,
        };
        self.default_models
            .0
            .lock()
            .await
            .insert(dir, (tokio::time::Instant::now(), m.clone()));
        m
    }
}

/// `GET /api/v1/chats`: every registered chat.
pub(super) async fn list_chats(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    owners_only(&caller)?;
    let rows = s.store.list_chats().await.map_err(unavailable)?;
    let mut models = Vec::new();
    for row in &rows {
        let own = match row.registered.as_ref() {
            Some(_) => s.store.chat_model(&row.jid).await.map_err(unavailable)?,
            None => None,
        };
        models.push(own);
    }
    // The default is asked of the workspace, once: every chat folder takes
    // its configuration from there (none has its own), and asking each
    // folder would make OpenCode boot an instance for every chat listed,
    // tens of MiB each, never freed.
    let default = match models.iter().any(Option::is_none) {
        true => s.default_model(s.settings.workspace.clone()).await,
        false => None,
    };
    let mut list = Vec::new();
    for (row, model) in rows.iter().zip(models) {
        let Some(reg) = row.registered.as_ref() else {
            continue;
        };
        let default_model = if model.is_none() {
            default.clone()
        } else {
            None
        };
        let pending = s.store.pending_count(&row.jid).await.map_err(unavailable)?;
        let (read, unread, newest) = s.store.read_state(&row.jid).await.map_err(unavailable)?;
        list.push(json!({
                "chat": row.jid,
                "name": reg.name,
                "kind": if row.jid.is_api() { "api" } else { "whatsapp" },
                "conversation": row.jid.conversation(),
                "profile": reg.profile,
                "main": reg.is_main,
                "group": row.is_group,
                "last_activity": row.last_activity_ms,
                "model": model,
                "default_model": default_model,
                "pending": pending,
                "unread": unread,
                "read_seq": read,
                "last_seq": newest,
        }));
    }
    Ok(Json(json!({ "chats": list })).into_response())
}

/// A registered chat named in a path, or 404.
async fn registered_chat(
    s: &ApiState,
    chat: &str,
) -> Result<(ChatJid, crate::model::RegisteredChat), ApiError> {
    let jid = ChatJid::parse(chat).map_err(|e| ApiError::bad(format!("chat: {e}")))?;
    let reg = s
        .store
        .registered(&jid)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| {
            ApiError(
                StatusCode::NOT_FOUND,
                format!("no registered chat {chat:?}"),
            )
        })?;
    Ok((jid, reg))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReadReq {
    /// The seq of the last message read (a history's `seq`).
    seq: i64,
}

/// `POST /api/v1/chats/{chat}/read` `{"seq": N}`: the owner has read the
/// chat up to message `N`. The mark moves forward only (an older `N`
/// leaves it); a seq past the chat's newest message is refused.
pub(super) async fn mark_chat_read(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(chat): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    owners_only(&caller)?;
    let (jid, _) = registered_chat(&s, &chat).await?;
    let req: ReadReq = parse_body(body)?;
    let (_, _, newest) = s.store.read_state(&jid).await.map_err(unavailable)?;
    if req.seq < 0 || req.seq > newest {
        return Err(ApiError::bad(format!(
            "seq: {} is not a message of this chat (its newest is {newest})",
            req.seq
        )));
    }
    s.store
        .mark_read(&jid, req.seq)
        .await
        .map_err(unavailable)?;
    let (read, unread, _) = s.store.read_state(&jid).await.map_err(unavailable)?;
    Ok(Json(json!({ "chat": jid, "read_seq": read, "unread": unread })).into_response())
}

/// `GET /api/v1/chats/{chat}?limit=N`: a registered chat's last `N`
/// messages (default 50, at most 500), either way, oldest first.
pub(super) async fn show_chat(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(chat): Path<String>,
    q: Result<Query<ShowQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    owners_only(&caller)?;
    let limit = q
        .map_err(|e| ApiError::bad(format!("query: {e}")))?
        .0
        .limit()?;
    let (jid, reg) = registered_chat(&s, &chat).await?;
    let messages = s
        .store
        .recent_messages(&jid, limit)
        .await
        .map_err(unavailable)?;
    Ok(Json(json!({
        "chat": jid, "name": reg.name, "profile": reg.profile, "messages": messages,
    }))
    .into_response())
}
