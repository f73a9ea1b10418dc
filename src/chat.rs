//! `pocketbrain chat`: a terminal client of the local API's WebSocket
//! (`/api/v1/ws`, see [`crate::api::ws`]).
//!
//! Each line typed is a message; the reply streams in as it is produced
//! and is then confirmed (or, when the stored reply differs from what was
//! streamed, printed whole). Tool messages, task results and approval
//! requests arrive between turns. `yes|always|no CODE` answers an approval
//! request; `/quit` (or end of input and Ctrl-C) leaves.

use std::io::Write;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::config::Secret;

/// Why the client stopped.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error(
        "cannot reach the bridge's WebSocket at {url}: {why} (is `pocketbrain serve` running?)"
    )]
    Connect { url: String, why: String },
    #[error("the connection failed: {0}")]
    Socket(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// What the client prints for one server frame, given the text streamed
/// so far in this turn (which it updates).
pub fn render(frame: &Value, streamed: &mut String) -> String {
    let conv = frame["conversation"].as_str().unwrap_or("");
    match frame["type"].as_str().unwrap_or("") {
        "delta" => {
            let t = frame["text"].as_str().unwrap_or("");
            let head = if streamed.is_empty() {
                format!("[{conv}] ")
            } else {
                String::new()
            };
            streamed.push_str(t);
            format!("{head}{t}")
        }
        "message" => {
            let text = frame["text"].as_str().unwrap_or("");
            let was = std::mem::take(streamed);
            if !was.is_empty() && was.trim() == text.trim() {
                "\n".into()
            } else if was.is_empty() {
                format!("[{conv}] {text}\n")
            } else {
                format!("\n[{conv}] {text}\n")
            }
        }
        "approval" => format!(
            "[approval {code}] {chat} asks to use {perm}: {patterns}\n  answer: yes {code} | always {code} | no {code}\n",
            code = frame["code"].as_str().unwrap_or("?"),
            chat = frame["chat"].as_str().unwrap_or("?"),
            perm = frame["permission"].as_str().unwrap_or("?"),
            patterns = frame["patterns"]
                .as_array()
                .map(|p| p
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default(),
        ),
        "subscribed" => {
            format!("Talking in {conv}. Type a message and press Enter; /quit leaves.\n")
        }
        "answered" => "(answer passed on)\n".into(),
        "error" => format!("error: {}\n", frame["error"].as_str().unwrap_or("?")),
        _ => String::new(),
    }
}

/// What to send for one typed line; `None` for nothing (blank) and
/// `Some(None)` to quit.
pub fn frame_for(line: &str, conversation: Option<&str>) -> Option<Option<Value>> {
    let line = line.trim();
    if line.is_empty() {
        return None;
    }
    if line == "/quit" {
        return Some(None);
    }
    if let Some((decision, code)) = crate::approvals::parse_answer(line) {
        let answer = match decision {
            crate::approvals::Decision::Yes => "yes",
            crate::approvals::Decision::Always => "always",
            crate::approvals::Decision::No => "no",
        };
        return Some(Some(
            json!({"type": "answer", "code": code, "answer": answer}),
        ));
    }
    Some(Some(
        json!({"type": "send", "conversation": conversation, "text": line}),
    ))
}

/// Runs the client against the bridge at `addr` until the user leaves or
/// the bridge closes the socket.
pub async fn run(
    addr: &str,
    credential: &Secret,
    conversation: Option<&str>,
) -> Result<(), ChatError> {
    let url = format!("ws://{addr}/api/v1/ws");
    let connect_err = |why: String| ChatError::Connect {
        url: url.clone(),
        why,
    };
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| connect_err(e.to_string()))?;
    let auth = format!("Bearer {}", credential.expose())
        .parse()
        .map_err(|_| connect_err("the credential is not a valid header value".into()))?;
    request.headers_mut().insert("authorization", auth);
    let (mut ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .map_err(|e| connect_err(e.to_string()))?;
    let subscribe = json!({"type": "subscribe", "conversation": conversation});
    ws.send(Message::Text(subscribe.to_string().into()))
        .await
        .map_err(|e| ChatError::Socket(e.to_string()))?;

    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    let mut streamed = String::new();
    let mut out = std::io::stdout();
    loop {
        tokio::select! {
            line = lines.next_line(), if stdin_open => match line? {
                None => stdin_open = false,
                Some(line) => match frame_for(&line, conversation) {
                    None => {}
                    Some(None) => break,
                    Some(Some(frame)) => ws
                        .send(Message::Text(frame.to_string().into()))
                        .await
                        .map_err(|e| ChatError::Socket(e.to_string()))?,
                },
            },
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap_or_default();
                    write!(out, "{}", render(&v, &mut streamed))?;
                    out.flush()?;
                }
                Some(Ok(Message::Close(_))) | None => {
                    writeln!(out, "(the bridge closed the connection)")?;
                    break;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(ChatError::Socket(e.to_string())),
            },
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    let _ = ws.close(None).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_streamed_reply_is_confirmed_not_repeated() {
        let mut s = String::new();
        let d = |t: &str| json!({"type": "delta", "conversation": "c", "text": t});
        assert_eq!(render(&d("Hel"), &mut s), "[c] Hel");
        assert_eq!(render(&d("lo"), &mut s), "lo");
        let m = |t: &str| json!({"type": "message", "conversation": "c", "text": t});
        assert_eq!(render(&m("Hello"), &mut s), "\n");
        // Not streamed (a task result, a tool message): printed whole.
        assert_eq!(render(&m("Reminder"), &mut s), "[c] Reminder\n");
        // Stored differently from the stream: the stored text follows.
        render(&d("<internal>x</internal>Hi"), &mut s);
        assert_eq!(render(&m("Hi"), &mut s), "\n[c] Hi\n");
    }

    #[test]
    fn typed_lines_become_frames() {
        assert_eq!(frame_for("  ", None), None);
        assert_eq!(frame_for("/quit", None), Some(None));
        assert_eq!(
            frame_for("yes 1234", Some("c")),
            Some(Some(
                json!({"type": "answer", "code": "1234", "answer": "yes"})
            ))
        );
        assert_eq!(
            frame_for("hello", Some("c")),
            Some(Some(
                json!({"type": "send", "conversation": "c", "text": "hello"})
            ))
        );
    }
}
