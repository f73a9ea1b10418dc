//! `send_file`: a file from the calling chat's own folder to that chat.

use rusqlite::Connection;
use serde::Deserialize;
use serde_json::{Value, json};

use super::contract::{Arg, Spec};
use super::{Caller, Effects, Tool, ToolEnv, ToolError, fail};

/// Longest `path`, in characters.
pub const MAX_PATH_CHARS: usize = 1_024;
/// Longest `caption`, in characters.
pub const MAX_CAPTION_CHARS: usize = 4_000;

#[derive(Debug, Deserialize)]
pub struct SendFile {
    path: String,
    caption: Option<String>,
}

impl Tool for SendFile {
    const SPEC: Spec = Spec {
        name: "send_file",
        args: &[
            Arg::required("path").max(MAX_PATH_CHARS, ""),
            Arg::optional("caption").max(
                MAX_CAPTION_CHARS,
                "; send the text with pocketbrain_send_message",
            ),
        ],
    };

    fn run(
        self,
        c: &Connection,
        caller: Caller<'_>,
        env: &ToolEnv<'_>,
    ) -> Result<(Value, Effects), ToolError> {
        use crate::media::PathError;
        let (Some(workspace), Caller::Chat(chat)) = (env.workspace, caller) else {
            return Err(fail(
                "unavailable",
                "files can only be sent by the agent of a chat",
            ));
        };
        // Only the caller's own folder: a path can never reach another
        // chat's files, whatever the profile.
        let dir = workspace.join("chats").join(chat.folder.as_str());
        let (media, size) = crate::media::resolve_outgoing(&dir, &self.path, &env.media_limits)
            .map_err(|e| {
                let code = match &e {
                    PathError::NotFound(_) => "not_found",
                    PathError::TooLarge { .. } => "too_large",
                    PathError::Io(..) => "internal",
                    _ => "invalid_path",
                };
                fail(code, format!("{e}. Give a path relative to this chat's folder (your working directory), e.g. reports/summary.pdf"))
            })?;
        let caption = self.caption.unwrap_or_default();
        let text = if caption.trim().is_empty() {
            String::new()
        } else {
            (env.outgoing)(&caption).unwrap_or_default()
        };
        let id = (env.new_message_id)();
        crate::store::insert_outbox_media(c, &chat.jid, &id, &text, Some(&media))?;
        Ok((
            json!({
                "sent": true,
                "id": id,
                "kind": media.kind,
                "text": format!(
                    "Sending {} to this chat as a {} ({}, {}). It arrives before your final answer, in the order you sent things.",
                    media.path, media.kind.noun(), media.mime, crate::media::human_size(size)
                ),
            }),
            Effects {
                outbox: true,
                ..Effects::default()
            },
        ))
    }
}
