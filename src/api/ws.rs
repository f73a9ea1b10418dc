//! `GET /api/v1/ws`: a WebSocket for a live conversation (what
//! `pocketbrain chat` uses). JSON text frames both ways.
//!
//! From the client:
//! - `{"type":"subscribe","conversation":"c"}`: receive what `c` receives;
//! - `{"type":"send","conversation":"c","text":"..."}`: a message to the
//!   assistant (subscribes too); answered `{"type":"accepted","id"}`;
//! - `{"type":"answer","code":"1234","answer":"yes|always|no"}`: answer an
//!   approval request (the owner only, same rules as in the main chat).
//!
//! To the client, for its subscribed conversations:
//! - `{"type":"delta","conversation","text"}`: reply text as produced
//!   (the agent's `<internal>` notes hidden);
//! - `{"type":"message","conversation","id","text"}`: every message the
//!   bridge delivers there (replies, tool sends, task results), as stored;
//! - `{"type":"tool","conversation","part","tool","status"}`: a tool call
//!   of the agent there, once per status (`pending`, `running`,
//!   `completed`, `error`);
//! - `{"type":"approval","code","chat","permission","patterns","detail"}`:
//!   a request waiting for the owner (the owner sees every chat's, a key
//!   its own); `detail` is the whole request (a command as typed);
//! - `{"type":"link","up","code","message"}`, to the owner: the main
//!   channel's link (WhatsApp's: `whatsapp-connected`,
//!   `whatsapp-reconnecting`, `whatsapp-logged-out`, ...), once on
//!   connecting and on every change; while pairing, `qr` is the QR
//!   code's text to render and scan (a new frame as WhatsApp rotates it),
//!   or, pairing by phone number, `pair_code` the code to enter on the
//!   phone;
//! - `{"type":"error","error"}`: a refused frame (the socket stays open);
//!   over the key's rate, also `"retry_after"` (seconds).
//!
//! A key's socket is held to the same rules as its REST calls: each frame
//! counts against the key's rate limit (`PB_API_RATE_PER_MINUTE`), and the
//! socket is closed (code 1008, "API key revoked") within a second of the
//! key being revoked, and before any frame sent after it is acted on.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::{ApiState, Caller, ensure_conversation};
use crate::agent::AgentEvent;
use crate::ids::ChatJid;

/// How often pending approvals are looked at for the socket.
const APPROVALS_EVERY: Duration = Duration::from_secs(1);

pub async fn upgrade(
    ws: WebSocketUpgrade,
    State(s): State<ApiState>,
    Extension(caller): Extension<Caller>,
) -> Response {
    ws.on_upgrade(move |socket| serve(socket, s, caller))
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum ClientMsg {
    Subscribe {
        conversation: Option<String>,
    },
    Send {
        conversation: Option<String>,
        text: String,
    },
    Answer {
        code: String,
        answer: String,
    },
}

/// One socket's state.
struct Conn {
    s: ApiState,
    caller: Caller,
    subscribed: HashSet<ChatJid>,
    /// Session id → its chat, when subscribed (`None`: not one of ours).
    sessions: HashMap<String, Option<ChatJid>>,
    /// Approval codes already shown.
    shown: HashSet<String>,
    /// The `<internal>` filter of each text part streamed lately (the
    /// oldest is forgotten past [`FILTERS_KEPT`]).
    filters: HashMap<String, crate::outbound::InternalFilter>,
    filter_order: std::collections::VecDeque<String>,
}

/// How many text parts' filters a socket keeps.
const FILTERS_KEPT: usize = 256;

async fn serve(mut socket: WebSocket, s: ApiState, caller: Caller) {
    let mut delivered = s.channel.subscribe();
    let mut events = s.agent.events();
    let mut conn = Conn {
        s: s.clone(),
        caller,
        subscribed: HashSet::new(),
        sessions: HashMap::new(),
        shown: HashSet::new(),
        filters: HashMap::new(),
        filter_order: Default::default(),
    };
    let mut approvals = tokio::time::interval(APPROVALS_EVERY);
    let mut link = s.link.clone();
    link.mark_changed();
    // The link is the owner's to see (as on `/status`).
    let mut link_open = conn.caller.is_owner();
    loop {
        // Biased, the agent's events first: a reply's deltas are out before
        // the run that ends on them stores the reply, so draining them
        // first sends every delta before the reply's `message` frame.
        let out: Vec<Value> = tokio::select! {
            biased;
            _ = s.cancel.cancelled() => {
                let _ = socket.send(Message::Close(None)).await;
                return;
            }
            ev = super::exchange::next_event(&mut events) => match ev {
                AgentEvent::Text { session, part, delta } => conn.on_delta(&session, &part, &delta).await,
                AgentEvent::NotText { session, part, tool: Some(tool) } => conn.on_tool(&session, &part, tool).await,
                _ => vec![],
            },
            frame = socket.recv() => match frame {
                Some(Ok(Message::Text(t))) => match conn.admit().await {
                    Admit::Yes => conn.on_frame(t.as_str()).await,
                    Admit::Limited(out) => out,
                    Admit::Revoked => return close_revoked(socket).await,
                },
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => vec![],
            },
            d = delivered.recv() => match d {
                Ok(d) if conn.subscribed.contains(&d.chat) => vec![json!({
                    "type": "message", "conversation": d.chat.conversation(),
                    "id": d.id, "text": d.text,
                })],
                Ok(_) => vec![],
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    vec![json!({"type": "error", "error": format!("{n} messages were missed; read GET /api/v1/conversations/{{id}}")})]
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            changed = link.changed(), if link_open => match changed {
                Ok(()) => {
                    let l = link.borrow_and_update().clone();
                    vec![json!({"type": "link", "up": l.up, "code": l.code, "message": l.message, "qr": l.qr, "pair_code": l.pair_code})]
                }
                // The channel is gone: the bridge is stopping.
                Err(_) => {
                    link_open = false;
                    vec![]
                }
            },
            _ = approvals.tick() => {
                if !conn.key_live().await {
                    return close_revoked(socket).await;
                }
                conn.new_approvals().await
            }
        };
        for v in out {
            if socket
                .send(Message::Text(v.to_string().into()))
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

fn error(why: impl Into<String>) -> Vec<Value> {
    vec![json!({"type": "error", "error": why.into()})]
}

/// Whether a client frame may be acted on.
enum Admit {
    Yes,
    /// Over the key's rate: the frames to send instead.
    Limited(Vec<Value>),
    Revoked,
}

/// Ends a socket whose key was revoked, telling the client why.
async fn close_revoked(mut socket: WebSocket) {
    tracing::info!("closing a WebSocket: its API key was revoked");
    let _ = socket
        .send(Message::Close(Some(axum::extract::ws::CloseFrame {
            code: axum::extract::ws::close_code::POLICY,
            reason: "API key revoked".into(),
        })))
        .await;
}

impl Conn {
    /// Whether the caller's key is still live (the owner always is). A
    /// store error keeps the socket: it is not a revocation.
    async fn key_live(&self) -> bool {
        match &self.caller {
            Caller::Owner => true,
            Caller::Key(k) => self.s.store.api_key_live(&k.name).await.unwrap_or(true),
        }
    }

    /// Checks a client frame against the key: revoked, or over its rate
    /// (a refused frame does not count).
    async fn admit(&self) -> Admit {
        let Caller::Key(k) = &self.caller else {
            return Admit::Yes;
        };
        if !self.key_live().await {
            return Admit::Revoked;
        }
        match self.s.limiter.check(&k.name) {
            Ok(()) => Admit::Yes,
            Err(wait) => {
                let secs = super::limit::retry_after_secs(wait);
                Admit::Limited(vec![json!({
                    "type": "error",
                    "error": format!(
                        "API key {:?} is over {} requests a minute (PB_API_RATE_PER_MINUTE); retry in {secs} s",
                        k.name, self.s.settings.rate_per_minute
                    ),
                    "retry_after": secs,
                })])
            }
        }
    }

    async fn on_frame(&mut self, text: &str) -> Vec<Value> {
        let msg: ClientMsg = match serde_json::from_str(text) {
            Ok(m) => m,
            Err(e) => return error(format!("malformed frame: {e}")),
        };
        match msg {
            ClientMsg::Subscribe { conversation } => {
                match self.caller.resolve(conversation.as_deref()) {
                    Ok((chat, _)) => {
                        let conversation = chat.conversation().map(str::to_owned);
                        self.subscribed.insert(chat);
                        vec![json!({"type": "subscribed", "conversation": conversation})]
                    }
                    Err(e) => error(e.1),
                }
            }
            ClientMsg::Send { conversation, text } => {
                match self.caller.resolve(conversation.as_deref()) {
                    Ok((chat, profile)) => {
                        if let Err(e) = ensure_conversation(&self.s, &chat, profile).await {
                            return error(e.1);
                        }
                        self.subscribed.insert(chat);
                    }
                    Err(e) => return error(e.1),
                }
                match super::exchange::submit(&self.s, &self.caller, conversation.as_deref(), text)
                    .await
                {
                    Ok(p) => vec![json!({
                        "type": "accepted", "conversation": p.chat.conversation(), "id": p.id,
                    })],
                    Err(e) => error(e.1),
                }
            }
            ClientMsg::Answer { code, answer } => {
                let body = json!({ "answer": answer }).to_string();
                match super::answer_approval(
                    State(self.s.clone()),
                    Extension(self.caller.clone()),
                    axum::extract::Path(code),
                    Ok(body.into()),
                )
                .await
                {
                    Ok(_) => vec![json!({"type": "answered"})],
                    Err(e) => error(e.1),
                }
            }
        }
    }

    /// The subscribed chat `session` belongs to, if any.
    async fn subscribed_chat(&mut self, session: &crate::ids::SessionId) -> Option<ChatJid> {
        if self.subscribed.is_empty() {
            return None;
        }
        let chat = match self.sessions.get(session.as_str()) {
            Some(c) => c.clone(),
            None => {
                let found = self.s.store.chat_for_session(session).await.ok().flatten();
                // A conversation subscribed later looks again.
                if found.as_ref().is_some_and(|c| self.subscribed.contains(c)) {
                    self.sessions
                        .insert(session.as_str().to_owned(), found.clone());
                }
                found
            }
        };
        chat.filter(|c| self.subscribed.contains(c))
    }

    /// A tool call of a subscribed conversation, once per status.
    async fn on_tool(
        &mut self,
        session: &crate::ids::SessionId,
        part: &str,
        tool: crate::agent::ToolStep,
    ) -> Vec<Value> {
        let Some(chat) = self.subscribed_chat(session).await else {
            return vec![];
        };
        let key = format!("{part}\n{}", tool.status);
        if self.filters.contains_key(&key) {
            return vec![];
        }
        // Remembered among the text filters (bounded the same way).
        self.filter(&key, "");
        vec![json!({
            "type": "tool", "conversation": chat.conversation(), "part": part,
            "tool": tool.name, "status": tool.status,
        })]
    }

    /// Streamed text of a subscribed conversation's session.
    async fn on_delta(
        &mut self,
        session: &crate::ids::SessionId,
        part: &str,
        delta: &str,
    ) -> Vec<Value> {
        let Some(c) = self.subscribed_chat(session).await else {
            return vec![];
        };
        let shown = self.filter(part, delta);
        if shown.is_empty() {
            return vec![];
        }
        vec![json!({
            "type": "delta", "conversation": c.conversation(), "text": shown,
        })]
    }

    /// What of `delta` of text part `part` may be shown (`<internal>`
    /// notes hidden, tags split over deltas included).
    fn filter(&mut self, part: &str, delta: &str) -> String {
        if !self.filters.contains_key(part) {
            if self.filter_order.len() >= FILTERS_KEPT
                && let Some(old) = self.filter_order.pop_front()
            {
                self.filters.remove(&old);
            }
            self.filter_order.push_back(part.to_owned());
        }
        self.filters.entry(part.to_owned()).or_default().push(delta)
    }

    /// Approval requests not shown yet that this caller may see.
    async fn new_approvals(&mut self) -> Vec<Value> {
        if self.subscribed.is_empty() && !self.caller.is_owner() {
            return vec![];
        }
        let Ok(pending) = self.s.store.pending_approvals().await else {
            return vec![];
        };
        let live: HashSet<String> = pending.iter().map(|a| a.code.clone()).collect();
        self.shown.retain(|c| live.contains(c));
        let mut out = vec![];
        for a in pending {
            let visible = self.caller.is_owner() || self.subscribed.contains(&a.chat);
            if visible && self.shown.insert(a.code.clone()) {
                out.push(json!({
                    "type": "approval", "code": a.code, "chat": a.chat,
                    "permission": a.permission, "patterns": a.patterns,
                    "detail": a.detail, "expires_at": a.expires_at,
                }));
            }
        }
        out
    }
}
