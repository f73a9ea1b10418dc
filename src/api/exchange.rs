//! One message over the API and its reply: `POST /api/v1/chat` (sync) and
//! `POST /api/v1/chat/stream` (Server-Sent Events).
//!
//! [`submit`] hands the message to the intake the way every channel does
//! (stored, then the conversation's queue woken) and notes where the
//! outbox stood. A [`Waiter`] then follows the run: the agent's text
//! events ([`AgentEvent::Text`]) of the conversation's session are the
//! streamed text; the run is answered once the
//! conversation's cursor has passed the message, and the reply is the
//! outbox rows queued for it since (tool sends first, the answer last),
//! read from the store: exactly what was stored. Streamed text is cleaned
//! as it comes (per part, by [`crate::outbound::InternalFilter`]): the
//! agent's `<internal>` notes never reach the caller. A delivered row, the
//! session going idle or, failing both, a one-second tick makes it look again.

use std::collections::HashSet;
use std::convert::Infallible;
use std::time::Duration;

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::broadcast;
use tokio::time::Instant;

use super::{ApiState, Caller, ensure_conversation, unavailable};
use crate::agent::AgentEvent;
use crate::channel::api::Delivered;
use crate::http::{ApiError, parse_body};
use crate::ids::{ChatJid, MessageId};
use crate::model::Inbound;

/// A message accepted and waiting for its reply.
pub struct Pending {
    pub chat: ChatJid,
    pub id: MessageId,
    seq: i64,
    mark: i64,
    delivered: broadcast::Receiver<Delivered>,
}

/// One outbound message of a reply.
#[derive(Debug, Clone, Serialize)]
pub struct OutMessage {
    pub id: String,
    pub text: String,
}

/// The reply to one message, as stored.
#[derive(Debug, Clone, Serialize)]
pub struct Reply {
    pub conversation: String,
    /// The id the message was stored under.
    pub id: String,
    /// The run's answer (the last message queued for it; empty when the
    /// answer had nothing to show).
    pub reply: String,
    /// Everything queued for the conversation since the message, in order:
    /// tool sends, then the answer.
    pub messages: Vec<OutMessage>,
}

/// Validates and accepts one message from `caller`; the conversation is
/// registered first if it is new.
pub async fn submit(
    s: &ApiState,
    caller: &Caller,
    conversation: Option<&str>,
    text: String,
) -> Result<Pending, ApiError> {
    let (chat, profile) = caller.resolve(conversation)?;
    if text.trim().is_empty() {
        return Err(ApiError::bad("text: must not be empty"));
    }
    let max = s.settings.max_text_bytes;
    if text.len() > max {
        return Err(ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "text: {} bytes is over the limit of {max} bytes (PB_MAX_TEXT_BYTES)",
                text.len()
            ),
        ));
    }
    let reg = ensure_conversation(s, &chat, profile).await?;
    let delivered = s.channel.subscribe();
    let mark = s.store.outbox_mark().await.map_err(unavailable)?;
    let id = crate::channel::api::new_id();
    let msg = Inbound {
        chat: chat.clone(),
        chat_name: Some(reg.name.clone()),
        id: id.clone(),
        sender: caller.sender(),
        sender_name: None,
        text,
        timestamp_ms: crate::store::now_ms(),
        from_me: false,
        media: None,
    };
    s.inbound
        .accept(msg)
        .await
        .map_err(crate::http::inbound_refused)?;
    let seq = s
        .store
        .message_seq(&chat, id.as_str())
        .await
        .map_err(unavailable)?
        .ok_or_else(|| unavailable("the message was not stored"))?;
    tracing::info!(chat = %chat, id = %id, by = %caller.sender(), "API message accepted");
    Ok(Pending {
        chat,
        id,
        seq,
        mark,
        delivered,
    })
}

/// What a [`Waiter`] yields.
#[derive(Debug)]
pub enum Step {
    /// Text of the reply as OpenCode produces it.
    Delta(String),
    /// The run answered; the reply as stored.
    Done(Reply),
    /// No reply within `PB_API_REPLY_TIMEOUT`; the message is kept.
    TimedOut(Duration),
}

/// Follows one message's run until its reply is stored.
pub struct Waiter {
    s: ApiState,
    p: Pending,
    /// Present when the text is streamed.
    events: Option<broadcast::Receiver<AgentEvent>>,
    session: Option<String>,
    /// Sessions seen that are not the conversation's.
    others: HashSet<String>,
    /// Parts of the session that are not answer text (reasoning, tools).
    not_text: HashSet<String>,
    /// Each text part's `<internal>` filter: notes never reach the stream.
    filters: std::collections::HashMap<String, crate::outbound::InternalFilter>,
    deadline: Instant,
    done: bool,
    /// Text already broadcast when the reply was found, still to yield.
    tail: std::collections::VecDeque<String>,
    reply: Option<Reply>,
}

impl Waiter {
    /// Waits for `p`'s reply; `stream` taps the text as it is produced.
    /// The events are subscribed to before anything of the run can have
    /// happened only if the caller subscribed before [`submit`]: the
    /// streaming routes do.
    pub fn new(s: &ApiState, p: Pending, events: Option<broadcast::Receiver<AgentEvent>>) -> Self {
        Self {
            deadline: Instant::now() + s.settings.reply_timeout,
            s: s.clone(),
            p,
            events,
            session: None,
            others: HashSet::new(),
            not_text: HashSet::new(),
            filters: Default::default(),
            done: false,
            tail: Default::default(),
            reply: None,
        }
    }

    /// The chat waited on.
    pub fn chat(&self) -> &ChatJid {
        &self.p.chat
    }

    /// The reply, if the run has answered.
    async fn check(&self) -> Result<Option<Reply>, ApiError> {
        let (answered, rows) = self
            .s
            .store
            .answered_since(&self.p.chat, self.p.seq, self.p.mark)
            .await
            .map_err(unavailable)?;
        if !answered {
            return Ok(None);
        }
        let messages: Vec<OutMessage> = rows
            .into_iter()
            .map(|(id, text, _)| OutMessage { id, text })
            .collect();
        Ok(Some(Reply {
            conversation: self.p.chat.conversation().unwrap_or_default().to_owned(),
            id: self.p.id.to_string(),
            reply: messages.last().map(|m| m.text.clone()).unwrap_or_default(),
            messages,
        }))
    }

    /// Whether `session` is the conversation's (looked up once it exists).
    async fn ours(&mut self, session: &str) -> bool {
        if self.session.as_deref() == Some(session) {
            return true;
        }
        if self.others.contains(session) {
            return false;
        }
        if let Ok(Some(id)) = self.s.store.session(&self.p.chat).await
            && id.as_str() == session
        {
            self.session = Some(session.to_owned());
            return true;
        }
        self.others.insert(session.to_owned());
        false
    }

    /// What an agent event means for this run: text to stream, a reason
    /// to look at the store, or nothing.
    async fn on_event(&mut self, ev: AgentEvent) -> Option<Option<String>> {
        match ev {
            AgentEvent::Text {
                session,
                part,
                delta,
            } => {
                if !self.ours(session.as_str()).await || self.not_text.contains(&part) {
                    return None;
                }
                let shown = self.filters.entry(part).or_default().push(&delta);
                (!shown.is_empty()).then_some(Some(shown))
            }
            AgentEvent::NotText { session, part, .. } => {
                if self.ours(session.as_str()).await {
                    self.not_text.insert(part);
                }
                None
            }
            AgentEvent::Idle { session } => self.ours(session.as_str()).await.then_some(None),
            AgentEvent::Reopened => Some(None),
        }
    }

    /// The next step; `None` after the last.
    pub async fn next(&mut self) -> Result<Option<Step>, ApiError> {
        if let Some(text) = self.tail.pop_front() {
            return Ok(Some(Step::Delta(text)));
        }
        if let Some(reply) = self.reply.take() {
            self.done = true;
            return Ok(Some(Step::Done(reply)));
        }
        if self.done {
            return Ok(None);
        }
        loop {
            if let Some(reply) = self.check().await? {
                // The run ended after its text was broadcast: what is
                // still buffered goes out first.
                while let Some(ev) = self.events.as_mut().and_then(|rx| rx.try_recv().ok()) {
                    if let Some(Some(text)) = self.on_event(ev).await {
                        self.tail.push_back(text);
                    }
                }
                self.reply = Some(reply);
                return Box::pin(self.next()).await;
            }
            let tick = tokio::time::sleep(Duration::from_secs(1));
            tokio::pin!(tick);
            loop {
                let ev = tokio::select! {
                    _ = tokio::time::sleep_until(self.deadline) => {
                        self.done = true;
                        return Ok(Some(Step::TimedOut(self.s.settings.reply_timeout)));
                    }
                    _ = &mut tick => break,
                    d = self.p.delivered.recv() => match d {
                        Ok(d) if d.chat != self.p.chat => continue,
                        Err(broadcast::error::RecvError::Closed) => {
                            // Never: the channel lives as long as the state.
                            tokio::time::sleep_until(self.deadline).await;
                            continue;
                        }
                        _ => break,
                    },
                    ev = recv_event(&mut self.events) => ev,
                };
                match self.on_event(ev).await {
                    Some(Some(text)) => return Ok(Some(Step::Delta(text))),
                    Some(None) => break,
                    None => {}
                }
            }
        }
    }
}

/// The next agent event, or never when not streaming.
async fn recv_event(events: &mut Option<broadcast::Receiver<AgentEvent>>) -> AgentEvent {
    match events {
        Some(rx) => next_event(rx).await,
        None => std::future::pending().await,
    }
}

/// The next agent event; missed events read as [`AgentEvent::Reopened`]
/// (look at the store); never once the agent has no stream.
pub async fn next_event(rx: &mut broadcast::Receiver<AgentEvent>) -> AgentEvent {
    match rx.recv().await {
        Ok(ev) => ev,
        Err(broadcast::error::RecvError::Lagged(_)) => AgentEvent::Reopened,
        Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
    }
}

/// `POST /api/v1/chat` and `/api/v1/chat/stream`'s body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatReq {
    /// The conversation's name (default: the key's, or `default`).
    conversation: Option<String>,
    text: String,
}

/// The refusal for a reply that did not come in time.
pub fn timed_out(chat: &ChatJid, after: Duration) -> ApiError {
    ApiError(
        StatusCode::GATEWAY_TIMEOUT,
        format!(
            "no reply within {} (PB_API_REPLY_TIMEOUT); the message is kept and answered later: GET /api/v1/conversations/{}",
            humantime::format_duration(after),
            chat.conversation().unwrap_or_default()
        ),
    )
}

/// Waits for the reply and returns it.
pub async fn chat(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: ChatReq = parse_body(body)?;
    let p = submit(&s, &caller, req.conversation.as_deref(), req.text).await?;
    let mut w = Waiter::new(&s, p, None);
    loop {
        match w.next().await? {
            Some(Step::Done(reply)) => return Ok(Json(reply).into_response()),
            Some(Step::TimedOut(after)) => return Err(timed_out(w.chat(), after)),
            Some(Step::Delta(_)) => {}
            None => return Err(unavailable("the wait ended without a reply")),
        }
    }
}

/// Streams the reply: `delta` events (`{"text"}`) as it is produced, then
/// one `reply` event (the [`Reply`] as stored), or one `error` event.
pub async fn chat_stream(
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: ChatReq = parse_body(body)?;
    let events = s.agent.events();
    let p = submit(&s, &caller, req.conversation.as_deref(), req.text).await?;
    let w = Waiter::new(&s, p, Some(events));
    let stream = futures_util::stream::unfold(Some(w), |state| async move {
        let mut w = state?;
        let (event, data, next) = match w.next().await {
            Ok(Some(Step::Delta(text))) => ("delta", json!({ "text": text }), true),
            Ok(Some(Step::Done(reply))) => ("reply", json!(reply), false),
            Ok(Some(Step::TimedOut(after))) => {
                let e = timed_out(w.chat(), after);
                ("error", json!({ "error": e.1 }), false)
            }
            Ok(None) => return None,
            Err(e) => ("error", json!({ "error": e.1 }), false),
        };
        let event = Event::default().event(event).data(data.to_string());
        Some((Ok::<_, Infallible>(event), next.then_some(w)))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}
