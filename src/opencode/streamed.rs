//! A run's answer as the event stream shows it, so the run need not read
//! the transcript back once OpenCode says the answer is finished.
//!
//! OpenCode publishes each text part of an answer twice over: empty when it
//! starts, then as `message.part.delta`s, then whole (`message.part.updated`
//! with `time.end` set) before the `message.updated` that completes its
//! message. [`StreamedAnswer`] keeps the last whole form of every text part
//! of one session, by part id (OpenCode's ids sort in creation order, the
//! order the transcript lists them in).
//!
//! It only answers when it can be sure: nothing was missed (the follower
//! calls [`StreamedAnswer::missed`] on a reconnect or a lag), the message
//! has at least one text part, and every one of them has ended. Otherwise
//! the run reads the transcript, as it always could.

use std::collections::BTreeMap;

use serde_json::Value;

/// Most text parts kept for one run; past it the run reads the transcript.
const MAX_PARTS: usize = 256;

/// One text part as last seen.
#[derive(Debug)]
struct TextPart {
    message_id: String,
    text: String,
    /// Counted in the answer: neither `synthetic` nor `ignored` (the same
    /// rule as the transcript's [`super::client::TranscriptMessage::text`]).
    counted: bool,
    ended: bool,
}

/// The text parts one session's stream showed since the run subscribed.
#[derive(Debug, Default)]
pub struct StreamedAnswer {
    parts: BTreeMap<String, TextPart>,
    /// Events may have been missed: only the transcript can tell.
    gap: bool,
}

impl StreamedAnswer {
    /// Events may have been missed (the stream reopened or the run lagged).
    pub fn missed(&mut self) {
        self.gap = true;
        self.parts.clear();
    }

    /// Takes note of a `message.part.updated` event's properties, if it is
    /// a text part of `session`.
    pub fn observe(&mut self, session: &str, properties: &Value) {
        let part = &properties["part"];
        if self.gap || part["type"] != "text" || part["sessionID"].as_str() != Some(session) {
            return;
        }
        let (Some(id), Some(message_id)) = (part["id"].as_str(), part["messageID"].as_str()) else {
            return;
        };
        if self.parts.len() >= MAX_PARTS && !self.parts.contains_key(id) {
            self.missed();
            return;
        }
        self.parts.insert(
            id.to_owned(),
            TextPart {
                message_id: message_id.to_owned(),
                text: part["text"].as_str().unwrap_or_default().to_owned(),
                counted: part["synthetic"] != true && part["ignored"] != true,
                ended: !part["time"]["end"].is_null(),
            },
        );
    }

    /// The text of message `message_id`, when the stream showed all of it.
    pub fn text_of(&self, message_id: &str) -> Option<String> {
        if self.gap {
            return None;
        }
        let parts: Vec<&TextPart> = self
            .parts
            .values()
            .filter(|p| p.message_id == message_id)
            .collect();
        if parts.is_empty() || parts.iter().any(|p| !p.ended) {
            return None;
        }
        Some(
            parts
                .iter()
                .filter(|p| p.counted)
                .map(|p| p.text.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn part(id: &str, msg: &str, text: &str, ended: bool) -> Value {
        let time = if ended {
            json!({"start": 1, "end": 2})
        } else {
            json!({"start": 1})
        };
        json!({"part": {"id": id, "sessionID": "ses_a", "messageID": msg,
            "type": "text", "text": text, "time": time}})
    }

    #[test]
    fn the_answer_is_its_ended_text_parts_in_id_order() {
        let mut s = StreamedAnswer::default();
        s.observe("ses_a", &part("prt_2", "msg_b", "", false));
        assert_eq!(s.text_of("msg_b"), None, "a part still streaming");
        s.observe("ses_a", &part("prt_2", "msg_b", "second", true));
        s.observe("ses_a", &part("prt_1", "msg_b", "first", true));
        // Another message's text, another session's, and a tool part.
        s.observe("ses_a", &part("prt_0", "msg_a", "earlier step", true));
        let mut other = part("prt_3", "msg_b", "not ours", true);
        other["part"]["sessionID"] = json!("ses_z");
        s.observe("ses_a", &other);
        s.observe(
            "ses_a",
            &json!({"part": {"id": "prt_4", "sessionID": "ses_a", "messageID": "msg_b",
                "type": "tool", "tool": "bash", "state": {"status": "running"}}}),
        );
        let mut synthetic = part("prt_5", "msg_b", "hidden", true);
        synthetic["part"]["synthetic"] = json!(true);
        s.observe("ses_a", &synthetic);
        assert_eq!(s.text_of("msg_b").as_deref(), Some("first\nsecond"));
        assert_eq!(s.text_of("msg_a").as_deref(), Some("earlier step"));
    }

    #[test]
    fn without_text_parts_or_after_a_gap_the_transcript_decides() {
        let mut s = StreamedAnswer::default();
        assert_eq!(s.text_of("msg_b"), None);
        s.observe("ses_a", &part("prt_1", "msg_b", "hello", true));
        s.missed();
        s.observe("ses_a", &part("prt_2", "msg_b", "after", true));
        assert_eq!(s.text_of("msg_b"), None);
    }

    #[test]
    fn too_many_parts_count_as_a_gap() {
        let mut s = StreamedAnswer::default();
        for i in 0..=MAX_PARTS {
            s.observe("ses_a", &part(&format!("prt_{i:04}"), "msg_b", "x", true));
        }
        assert_eq!(s.text_of("msg_b"), None);
    }
}
