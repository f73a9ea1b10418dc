//! The terminal app's network task: holds the WebSocket to the bridge,
//! connecting again by itself when it drops (the bridge restarted), and
//! makes the REST calls the app asks for. It turns everything it sees
//! into [`Event`]s for the app and does what the app's [`Action`]s say.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::app::{Action, Event, Target};
use crate::config::Secret;

/// The first wait before connecting again, and the longest.
const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// How often the owner's status (link, queue, chats) is fetched.
const STATUS_EVERY: Duration = Duration::from_secs(2);

/// Where the bridge is, asked again before each connection (a restarted
/// bridge may listen elsewhere).
pub type Resolve = Box<dyn Fn() -> String + Send + Sync>;

/// Runs until the app quits (its action channel closes or says so).
pub async fn run(
    resolve: Resolve,
    credential: Secret,
    events: mpsc::Sender<Event>,
    mut actions: mpsc::UnboundedReceiver<Action>,
) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("a client with a timeout builds");
    let mut wait = RETRY_FIRST;
    loop {
        let addr = resolve();
        let rest = Rest {
            http: http.clone(),
            addr: addr.clone(),
            credential: credential.clone(),
            events: events.clone(),
        };
        let why = match connect(&addr, &credential).await {
            Ok(ws) => {
                wait = RETRY_FIRST;
                if events.send(Event::Online).await.is_err() {
                    return;
                }
                match serve(ws, &rest, &events, &mut actions).await {
                    Some(why) => why,
                    None => return,
                }
            }
            Err(why) => why,
        };
        if events.send(Event::Offline(why)).await.is_err() {
            return;
        }
        // Wait before the next try; the app may quit meanwhile. Other
        // actions have nothing to reach: the app sends none while offline,
        // and a fetch waits for the next connection's own.
        let sleep = tokio::time::sleep(wait);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => break,
                a = actions.recv() => match a {
                    None | Some(Action::Quit) => return,
                    Some(_) => {}
                },
            }
        }
        wait = (wait * 2).min(RETRY_MAX);
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(addr: &str, credential: &Secret) -> Result<Socket, String> {
    let mut request = format!("ws://{addr}/api/v1/ws")
        .into_client_request()
        .map_err(|e| e.to_string())?;
    let auth = format!("Bearer {}", credential.expose())
        .parse()
        .map_err(|_| "the credential is not a valid header value".to_owned())?;
    request.headers_mut().insert("authorization", auth);
    match tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(request),
    )
    .await
    {
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(e)) => Err(short(&e.to_string())),
        Err(_) => Err("no answer in 10 s".into()),
    }
}

/// The first clause of an error, short enough for the status bar.
fn short(why: &str) -> String {
    let first = why.split(':').next_back().unwrap_or(why).trim();
    first.chars().take(60).collect()
}

/// Serves one connection; `Some(why)` when it dropped, `None` to quit.
async fn serve(
    mut ws: Socket,
    rest: &Rest,
    events: &mpsc::Sender<Event>,
    actions: &mut mpsc::UnboundedReceiver<Action>,
) -> Option<String> {
    let mut status = tokio::time::interval(STATUS_EVERY);
    loop {
        tokio::select! {
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap_or_default();
                    events.send(Event::Frame(v)).await.ok()?;
                }
                Some(Ok(Message::Close(c))) => {
                    return Some(match c {
                        Some(c) if !c.reason.is_empty() => format!("closed: {}", c.reason),
                        _ => "the bridge closed the connection".into(),
                    });
                }
                None => return Some("the bridge closed the connection".into()),
                Some(Err(e)) => return Some(short(&e.to_string())),
                Some(Ok(_)) => {}
            },
            a = actions.recv() => match a {
                None | Some(Action::Quit) => {
                    let _ = ws.close(None).await;
                    return None;
                }
                Some(Action::Send(v)) => {
                    if let Err(e) = ws.send(Message::Text(v.to_string().into())).await {
                        return Some(short(&e.to_string()));
                    }
                }
                Some(Action::Refresh) => rest.spawn_refresh(),
                Some(Action::History(t)) => rest.spawn_history(t),
                Some(Action::Link(phone)) => rest.spawn_link(phone),
                Some(Action::Read(t, seq)) => rest.spawn_read(t, seq),
            },
            _ = status.tick() => rest.spawn_status(),
        }
    }
}

/// REST calls, each in its own task so the socket is never held up.
#[derive(Clone)]
struct Rest {
    http: reqwest::Client,
    addr: String,
    credential: Secret,
    events: mpsc::Sender<Event>,
}

impl Rest {
    async fn get(&self, path: &str) -> Result<Value, String> {
        let r = self
            .http
            .get(format!("http://{}{path}", self.addr))
            .bearer_auth(self.credential.expose())
            .send()
            .await
            .map_err(|e| short(&e.to_string()))?;
        let status = r.status();
        let body: Value = r.json().await.unwrap_or_default();
        if !status.is_success() {
            return Err(format!(
                "{path}: {}",
                body["error"].as_str().unwrap_or(status.as_str())
            ));
        }
        Ok(body)
    }

    /// Asks the bridge for a new WhatsApp link (by `phone` if given); the
    /// answer, or its refusal, goes to the app as it is.
    fn spawn_link(&self, phone: Option<String>) {
        let me = self.clone();
        tokio::spawn(async move {
            let path = "/api/v1/whatsapp/link";
            let mut req = me
                .http
                .post(format!("http://{}{path}", me.addr))
                .bearer_auth(me.credential.expose());
            if let Some(p) = phone {
                req = req.json(&serde_json::json!({ "phone": p }));
            }
            let answer = match req.send().await {
                Ok(r) => {
                    let status = r.status();
                    let body: Value = r.json().await.unwrap_or_default();
                    if status.is_success() {
                        Ok(body)
                    } else {
                        Err(format!(
                            "refused ({status}): {}",
                            body["error"].as_str().unwrap_or("no reason given")
                        ))
                    }
                }
                Err(e) => Err(format!(
                    "the bridge did not answer: {}",
                    short(&e.to_string())
                )),
            };
            let _ = me.events.send(Event::Linked(answer)).await;
        });
    }

    /// Moves the owner's read mark of `target` to `seq`; a refusal is
    /// shown.
    fn spawn_read(&self, target: Target, seq: i64) {
        let me = self.clone();
        tokio::spawn(async move {
            let chat = match &target {
                Target::Api(name) => format!("api:{name}"),
                Target::Chat(jid) => jid.clone(),
            };
            let path = format!("/api/v1/chats/{chat}/read");
            let r = me
                .http
                .post(format!("http://{}{path}", me.addr))
                .bearer_auth(me.credential.expose())
                .json(&serde_json::json!({ "seq": seq }))
                .send()
                .await;
            let failed = match r {
                Ok(r) if r.status().is_success() => None,
                // An API key may not keep the owner's marks: nothing to say.
                Ok(r) if r.status() == reqwest::StatusCode::FORBIDDEN => None,
                Ok(r) => {
                    let status = r.status();
                    let body: Value = r.json().await.unwrap_or_default();
                    Some(format!(
                        "{path}: {}",
                        body["error"].as_str().unwrap_or(status.as_str())
                    ))
                }
                Err(e) => Some(short(&e.to_string())),
            };
            if let Some(why) = failed {
                let _ = me.events.send(Event::Failed(why)).await;
            }
        });
    }

    fn spawn_refresh(&self) {
        let me = self.clone();
        tokio::spawn(async move {
            let ev = match me.get("/api/v1/conversations").await {
                Ok(v) => Event::Conversations(
                    v["conversations"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|c| c["id"].as_str().map(str::to_owned))
                        .collect(),
                ),
                Err(e) => Event::Failed(e),
            };
            let _ = me.events.send(ev).await;
        });
        self.spawn_status();
    }

    /// The owner's `/status` and chat list; an API key may read neither,
    /// and nothing is shown then.
    fn spawn_status(&self) {
        let me = self.clone();
        tokio::spawn(async move {
            if let Ok(v) = me.get("/status").await {
                let _ = me.events.send(Event::Status(v)).await;
            }
            if let Ok(v) = me.get("/api/v1/chats").await {
                let list = v["chats"].as_array().cloned().unwrap_or_default();
                let _ = me.events.send(Event::Chats(list)).await;
            }
        });
    }

    fn spawn_history(&self, target: Target) {
        let me = self.clone();
        tokio::spawn(async move {
            let path = match &target {
                Target::Api(name) => format!("/api/v1/conversations/{name}?limit=200"),
                Target::Chat(jid) => format!("/api/v1/chats/{jid}?limit=200"),
            };
            let ev = match me.get(&path).await {
                Ok(v) => Event::History(
                    target,
                    v["messages"].as_array().cloned().unwrap_or_default(),
                ),
                // A conversation not written to yet has no history.
                Err(e) if e.contains("no conversation") => Event::History(target, vec![]),
                Err(e) => Event::Failed(e),
            };
            let _ = me.events.send(ev).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_cut_to_their_last_clause() {
        assert_eq!(
            short("IO error: Connection refused (os error 111)"),
            "Connection refused (os error 111)"
        );
        assert_eq!(short(&"x".repeat(100)).len(), 60);
    }
}
