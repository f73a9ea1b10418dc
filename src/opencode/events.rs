//! One event stream for the whole bridge: `GET /global/event`, fanned out to
//! runs through a broadcast channel, and read once more into the typed
//! [`AgentEvent`]s the API streams (so OpenCode's event format stays here).
//!
//! The stream is not trusted alone. OpenCode sends `server.heartbeat` every
//! 10 s; when nothing arrives for the watchdog period the stream is dropped
//! and reopened, and subscribers get [`HubEvent::Reconnected`] so they
//! reconcile through the REST routes (SSE frames carry no ids, so a dropped
//! stream cannot be resumed). A stream that has not opened within
//! [`OPEN_TIMEOUT`] is dropped too: a connection accepted at the instant
//! OpenCode starts listening can hang without ever answering. Permission
//! requests are passed on by [`forward_asks`] to the approvals service,
//! which answers those of the bridge's own sessions.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::BackoffBuilder;
use futures_util::StreamExt;
use reqwest_eventsource::{Event as SseEvent, EventSource};
use serde_json::Value;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::calls::RunningCalls;
use super::client::Client;
use crate::agent::{AgentEvent, AskEvent, PermissionAsk};
use crate::ids::SessionId;

/// How long a new stream may take to open (OpenCode answers at once with
/// `server.connected`), capped by the watchdog.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// One OpenCode event.
#[derive(Debug, Clone)]
pub struct OcEvent {
    pub directory: Option<String>,
    pub kind: String,
    pub properties: Value,
}

impl OcEvent {
    /// Parses a `/global/event` frame (`{directory?, payload:{type, properties}}`).
    pub fn parse(frame: &str) -> Option<Self> {
        let v: Value = serde_json::from_str(frame).ok()?;
        let payload = v.get("payload")?;
        Some(Self {
            directory: v["directory"].as_str().map(str::to_owned),
            kind: payload["type"].as_str()?.to_owned(),
            properties: payload.get("properties").cloned().unwrap_or(Value::Null),
        })
    }

    pub fn session_id(&self) -> Option<&str> {
        self.properties["sessionID"].as_str()
    }
}

/// What an event means to a caller streaming a reply: a `text` delta of a
/// part, a part that is not text, a session gone idle. `None`: nothing.
pub fn agent_event(ev: &OcEvent) -> Option<AgentEvent> {
    let props = &ev.properties;
    match ev.kind.as_str() {
        "message.part.delta" => {
            if props["field"].as_str() != Some("text") {
                return None;
            }
            Some(AgentEvent::Text {
                session: SessionId::new(props["sessionID"].as_str()?),
                part: props["partID"].as_str().unwrap_or_default().to_owned(),
                delta: props["delta"].as_str()?.to_owned(),
            })
        }
        "message.part.updated" => {
            let part = &props["part"];
            if part["type"].as_str() == Some("text") {
                return None;
            }
            let tool = (part["type"].as_str() == Some("tool")).then(|| crate::agent::ToolStep {
                name: part["tool"].as_str().unwrap_or("?").to_owned(),
                status: part["state"]["status"].as_str().unwrap_or("?").to_owned(),
            });
            Some(AgentEvent::NotText {
                session: SessionId::new(part["sessionID"].as_str()?),
                part: part["id"].as_str().unwrap_or_default().to_owned(),
                tool,
            })
        }
        "session.idle" => Some(AgentEvent::Idle {
            session: SessionId::new(props["sessionID"].as_str()?),
        }),
        _ => None,
    }
}

/// What subscribers receive.
#[derive(Debug, Clone)]
pub enum HubEvent {
    Event(Arc<OcEvent>),
    /// The stream was (re)opened: events may have been missed.
    Reconnected,
}

/// Handle to the stream's fan-out.
#[derive(Clone)]
pub struct EventHub {
    tx: broadcast::Sender<HubEvent>,
    /// The same events as [`agent_event`] reads them, each sent before
    /// its raw form (a reply's text is out before the run that ends on it
    /// can hear its end).
    agent_tx: broadcast::Sender<AgentEvent>,
    connected: Arc<AtomicBool>,
    /// How many times the stream has opened: a server that restarted
    /// (and may have lost its sessions) is only seen through a reopen.
    opens: Arc<AtomicU64>,
    /// The tool calls the stream shows running, kept by the reader itself
    /// (so it never lags behind it), cleared whenever the stream reopens
    /// or stops.
    running: Arc<Mutex<RunningCalls>>,
    /// Woken whenever the stream shows a tool part, for a check waiting on
    /// a call the plugin's request got ahead of.
    parts_seen: Arc<tokio::sync::Notify>,
}

impl EventHub {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(4096);
        let (agent_tx, _) = broadcast::channel(4096);
        Self {
            tx,
            agent_tx,
            connected: Arc::new(AtomicBool::new(false)),
            opens: Arc::new(AtomicU64::new(0)),
            running: Arc::default(),
            parts_seen: Arc::default(),
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<HubEvent> {
        self.tx.subscribe()
    }

    /// The stream's events as [`AgentEvent`]s.
    pub fn agent_events(&self) -> broadcast::Receiver<AgentEvent> {
        self.agent_tx.subscribe()
    }

    /// Passes `ev` on to both kinds of subscriber, the typed one first.
    fn dispatch(&self, ev: OcEvent) {
        if self.agent_tx.receiver_count() > 0
            && let Some(typed) = agent_event(&ev)
        {
            let _ = self.agent_tx.send(typed);
        }
        let _ = self.tx.send(HubEvent::Event(Arc::new(ev)));
    }

    /// Whether the stream is open and has not gone quiet.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Which opening of the stream is current; 0 before the first and
    /// while the stream is down.
    pub fn epoch(&self) -> u64 {
        if self.connected() {
            self.opens.load(Ordering::Relaxed)
        } else {
            0
        }
    }

    /// The call `call_id` of `session` in message `message_id`, if the
    /// stream showed it running and not finishing since it last opened.
    pub fn running_call(
        &self,
        session: &str,
        message_id: &str,
        call_id: &str,
    ) -> Option<crate::agent::ToolCall> {
        self.calls().get(session, message_id, call_id)
    }

    /// The call `call_id` as [`EventHub::running_call`] finds it, waiting
    /// up to `grace` for the stream to show it. The plugin writes its
    /// request as soon as OpenCode starts the tool, and the request can
    /// reach the bridge a few milliseconds before the stream's event that
    /// announced the call: waiting that long is cheaper than asking
    /// OpenCode. `None` at once while the stream is down.
    pub async fn wait_running_call(
        &self,
        session: &str,
        message_id: &str,
        call_id: &str,
        grace: Duration,
    ) -> Option<crate::agent::ToolCall> {
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            // Made before the look, so a part shown in between still wakes it.
            let shown = self.parts_seen.notified();
            if let Some(call) = self.running_call(session, message_id, call_id) {
                return Some(call);
            }
            if !self.connected() {
                return None;
            }
            tokio::time::timeout_at(deadline, shown).await.ok()?;
        }
    }

    /// Takes note of a `message.part.updated` event (running tool calls).
    fn note_part(&self, properties: &Value) {
        self.calls().observe(properties);
        self.parts_seen.notify_waiters();
    }

    fn calls(&self) -> std::sync::MutexGuard<'_, RunningCalls> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads the stream until `cancel`, reopening it when it fails or goes quiet.
    pub async fn run(self, client: Client, watchdog: Duration, cancel: CancellationToken) {
        let mut backoff = reconnect_backoff();
        let mut first = true;
        // One warning per outage, not one per reconnect attempt.
        let mut told_down = false;
        while !cancel.is_cancelled() {
            let mut es = match EventSource::new(client.global_events()) {
                Ok(es) => es,
                Err(e) => {
                    tracing::error!(error = %e, "cannot build OpenCode event request");
                    return;
                }
            };
            let mut opened = false;
            loop {
                let wait = if opened {
                    watchdog
                } else {
                    watchdog.min(OPEN_TIMEOUT)
                };
                let next = tokio::select! {
                    _ = cancel.cancelled() => break,
                    n = tokio::time::timeout(wait, es.next()) => n,
                };
                match next {
                    Err(_) if !opened => {
                        tracing::warn!(
                            code = "opencode-stream-down",
                            secs = wait.as_secs(),
                            "OpenCode event stream did not open in time; reconnecting"
                        );
                        break;
                    }
                    Err(_) => {
                        tracing::warn!(
                            code = "opencode-stream-quiet",
                            secs = wait.as_secs(),
                            "OpenCode event stream went quiet; reconnecting"
                        );
                        break;
                    }
                    Ok(None) => break,
                    Ok(Some(Err(e))) => {
                        if told_down {
                            tracing::debug!(error = %e, "OpenCode event stream still down");
                        } else {
                            tracing::warn!(code = "opencode-stream-down", error = %e, "OpenCode event stream failed; reconnecting until it is back");
                            told_down = true;
                        }
                        break;
                    }
                    Ok(Some(Ok(SseEvent::Open))) => {
                        opened = true;
                        told_down = false;
                        self.calls().clear();
                        self.opens.fetch_add(1, Ordering::Relaxed);
                        self.connected.store(true, Ordering::Relaxed);
                        backoff = reconnect_backoff();
                        if !first {
                            tracing::info!("OpenCode event stream reconnected");
                        }
                        // Also the first time: what happened before it opened
                        // (a run started while OpenCode was coming up, a
                        // permission request made while the bridge was down)
                        // is read through the REST routes.
                        let _ = self.agent_tx.send(AgentEvent::Reopened);
                        let _ = self.tx.send(HubEvent::Reconnected);
                        first = false;
                    }
                    Ok(Some(Ok(SseEvent::Message(m)))) => {
                        let Some(ev) = OcEvent::parse(&m.data) else {
                            tracing::debug!(frame = %m.data.chars().take(200).collect::<String>(), "unreadable OpenCode event ignored");
                            continue;
                        };
                        match ev.kind.as_str() {
                            "server.heartbeat" | "server.connected" | "sync" => continue,
                            "message.part.updated" => self.note_part(&ev.properties),
                            _ => {}
                        }
                        self.dispatch(ev);
                    }
                }
            }
            es.close();
            self.connected.store(false, Ordering::Relaxed);
            self.calls().clear();
            if cancel.is_cancelled() {
                break;
            }
            let delay = if opened {
                Duration::from_millis(200)
            } else {
                backoff.next().unwrap_or(Duration::from_secs(10))
            };
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }
}

impl Default for EventHub {
    fn default() -> Self {
        Self::new()
    }
}

fn reconnect_backoff() -> impl Iterator<Item = Duration> {
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(250))
        .with_max_delay(Duration::from_secs(10))
        .with_jitter()
        .without_max_times()
        .build()
}

/// A permission request as OpenCode sends it (`permission.asked`
/// properties, or one entry of `GET /permission`), in instance `dir`.
pub fn permission_ask(v: &Value, dir: &Path) -> Option<PermissionAsk> {
    let strings = |key: &str| -> Vec<String> {
        v[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| p.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let patterns = strings("patterns");
    let detail = v["metadata"]["command"]
        .as_str()
        .or(v["metadata"]["filepath"].as_str())
        .or(v["metadata"]["url"].as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| patterns.join(", "));
    Some(PermissionAsk {
        id: v["id"].as_str()?.to_owned(),
        session: SessionId::new(v["sessionID"].as_str()?),
        dir: dir.to_owned(),
        permission: v["permission"].as_str()?.to_owned(),
        always: strings("always"),
        patterns,
        detail,
    })
}

/// Passes the hub's permission requests on to `tx` (and a resync after a
/// reconnect or a lag, when some may have been missed) until `cancel`.
pub async fn forward_asks(
    hub: EventHub,
    tx: tokio::sync::mpsc::Sender<AskEvent>,
    cancel: CancellationToken,
) {
    let mut rx = hub.subscribe();
    loop {
        let ev = tokio::select! {
            _ = cancel.cancelled() => return,
            ev = rx.recv() => ev,
        };
        let out = match ev {
            Ok(HubEvent::Event(ev)) if ev.kind == "permission.asked" => {
                let dir = ev.directory.as_deref().filter(|d| d.starts_with('/'));
                match dir.and_then(|d| permission_ask(&ev.properties, Path::new(d))) {
                    Some(ask) => AskEvent::Asked(ask),
                    None => {
                        tracing::warn!(properties = %ev.properties, "unreadable permission request ignored");
                        continue;
                    }
                }
            }
            Ok(HubEvent::Event(_)) => continue,
            Ok(HubEvent::Reconnected) | Err(broadcast::error::RecvError::Lagged(_)) => {
                AskEvent::Resync
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if tx.send(out).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests;
