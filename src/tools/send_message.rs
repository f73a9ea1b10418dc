//! `send_message`: a message to this chat (or, from the main chat, another
//! registered one) before the final answer.

use rusqlite::Connection;
use serde::Deserialize;
use serde_json::{Value, json};

use super::contract::{Arg, CHAT, Spec};
use super::{Caller, Effects, Tool, ToolEnv, ToolError, chat_label, target};

/// Longest `text`, in characters.
pub const MAX_TEXT_CHARS: usize = 60_000;

#[derive(Debug, Deserialize)]
pub struct SendMessage {
    text: String,
    chat: Option<String>,
}

impl Tool for SendMessage {
    const SPEC: Spec = Spec {
        name: "send_message",
        args: &[
            Arg::required("text").max(MAX_TEXT_CHARS, "; send it in parts"),
            CHAT,
        ],
    };

    fn run(
        self,
        c: &Connection,
        caller: Caller<'_>,
        env: &ToolEnv<'_>,
    ) -> Result<(Value, Effects), ToolError> {
        let chat = target(c, caller, self.chat.as_deref())?;
        let Some(out) = (env.outgoing)(&self.text) else {
            return Ok((
                json!({ "sent": false, "text": "Nothing to send: the text was empty or only <internal> notes." }),
                Effects::default(),
            ));
        };
        let id = (env.new_message_id)();
        crate::store::insert_outbox(c, &chat.jid, &id, &out)?;
        let to = chat_label(caller, &chat);
        Ok((
            json!({ "sent": true, "id": id, "text": format!("Sent to {to}. It arrives before your final answer.") }),
            Effects {
                outbox: true,
                ..Effects::default()
            },
        ))
    }
}
