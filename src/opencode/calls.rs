//! The tool calls the event stream shows running, so a tool request from
//! the plugin can be checked without asking OpenCode again.
//!
//! OpenCode announces every tool part on the stream (`message.part.updated`
//! with `part.type == "tool"`): `pending`, then `running` with its input
//! (before or around the moment the plugin's `execute` starts), then
//! `completed` or `error`. [`RunningCalls`] keeps the running ones, keyed by
//! session and call id, with their message, tool and input. A part seen
//! finishing leaves it. It is bounded (the oldest entry goes first) and
//! cleared whenever the stream (re)opens or stops: an index with a gap in
//! what it saw could still show a call as running after it finished, so
//! after a gap it starts empty and a lookup falls back to OpenCode's REST
//! routes, as it does for a call the stream has not shown yet.

use std::collections::{HashMap, VecDeque};

use serde_json::Value;

use crate::agent::ToolCall;

/// Most running calls remembered; beyond it the oldest is forgotten (a
/// lookup for it then asks OpenCode).
pub const MAX_RUNNING_CALLS: usize = 1024;

/// One running tool call, as the stream showed it.
#[derive(Debug, Clone)]
struct Running {
    message_id: String,
    call: ToolCall,
}

/// Running tool calls by (session, call id).
#[derive(Debug, Default)]
pub struct RunningCalls {
    calls: HashMap<(String, String), Running>,
    /// Insertion order, for eviction; may name keys already removed.
    order: VecDeque<(String, String)>,
}

impl RunningCalls {
    /// Takes note of a `message.part.updated` event's properties.
    pub fn observe(&mut self, properties: &Value) {
        let part = &properties["part"];
        if part["type"] != "tool" {
            return;
        }
        let (Some(session), Some(message), Some(call_id), Some(tool)) = (
            part["sessionID"].as_str(),
            part["messageID"].as_str(),
            part["callID"].as_str(),
            part["tool"].as_str(),
        ) else {
            return;
        };
        let key = (session.to_owned(), call_id.to_owned());
        let status = part["state"]["status"].as_str().unwrap_or_default();
        if status != "running" {
            // Pending (no input yet) or finished: not (or no longer) running.
            self.calls.remove(&key);
            return;
        }
        let entry = Running {
            message_id: message.to_owned(),
            call: ToolCall {
                tool: tool.to_owned(),
                call_id: call_id.to_owned(),
                status: status.to_owned(),
                input: part["state"]["input"].clone(),
            },
        };
        if self.calls.insert(key.clone(), entry).is_none() {
            self.order.push_back(key);
        }
        while self.calls.len() > MAX_RUNNING_CALLS {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            self.calls.remove(&old);
        }
        if self.order.len() > 2 * MAX_RUNNING_CALLS {
            // Keys of finished calls pile up in the order: drop them.
            let calls = &self.calls;
            self.order.retain(|k| calls.contains_key(k));
        }
    }

    /// The running call `call_id` of `session`, if the stream showed it
    /// running in message `message_id` and not finishing since.
    pub fn get(&self, session: &str, message_id: &str, call_id: &str) -> Option<ToolCall> {
        let r = self.calls.get(&(session.to_owned(), call_id.to_owned()))?;
        (r.message_id == message_id).then(|| r.call.clone())
    }

    /// Forgets everything (the stream reopened or stopped: events may be missed).
    pub fn clear(&mut self) {
        self.calls.clear();
        self.order.clear();
    }

    pub fn len(&self) -> usize {
        self.calls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn part(call: &str, status: &str, input: Value) -> Value {
        json!({"part": {"id": "prt_1", "sessionID": "ses_1", "messageID": "msg_1", "type": "tool",
            "callID": call, "tool": "pocketbrain_send_message",
            "state": {"status": status, "input": input}}})
    }

    #[test]
    fn running_calls_are_kept_until_they_finish() {
        let mut idx = RunningCalls::default();
        idx.observe(&part("call_1", "pending", json!({})));
        assert!(
            idx.get("ses_1", "msg_1", "call_1").is_none(),
            "pending is not running"
        );
        idx.observe(&part("call_1", "running", json!({"text": "hi"})));
        let c = idx.get("ses_1", "msg_1", "call_1").expect("running call");
        assert_eq!(c.status, "running");
        assert_eq!(c.input, json!({"text": "hi"}));
        assert_eq!(c.tool, "pocketbrain_send_message");
        // Another message, session or call id: not this call.
        assert!(idx.get("ses_1", "msg_2", "call_1").is_none());
        assert!(idx.get("ses_2", "msg_1", "call_1").is_none());
        assert!(idx.get("ses_1", "msg_1", "call_2").is_none());
        idx.observe(&part("call_1", "completed", json!({"text": "hi"})));
        assert!(
            idx.get("ses_1", "msg_1", "call_1").is_none(),
            "a finished call leaves"
        );
        idx.observe(&part("call_2", "running", json!({"text": "x"})));
        idx.observe(&part("call_2", "error", json!({"text": "x"})));
        assert!(idx.is_empty());
        // Text parts and other events are ignored.
        idx.observe(&json!({"part": {"type": "text", "sessionID": "ses_1"}}));
        assert!(idx.is_empty());
        idx.observe(&part("call_3", "running", json!({})));
        idx.clear();
        assert!(idx.get("ses_1", "msg_1", "call_3").is_none());
    }

    #[test]
    fn the_index_is_bounded() {
        let mut idx = RunningCalls::default();
        for i in 0..MAX_RUNNING_CALLS + 10 {
            idx.observe(&part(&format!("call_{i}"), "running", json!({})));
        }
        assert_eq!(idx.len(), MAX_RUNNING_CALLS);
        assert!(
            idx.get("ses_1", "msg_1", "call_0").is_none(),
            "the oldest went first"
        );
        assert!(
            idx.get("ses_1", "msg_1", &format!("call_{}", MAX_RUNNING_CALLS + 9))
                .is_some()
        );
        for i in 0..10 * MAX_RUNNING_CALLS {
            idx.observe(&part(&format!("x_{i}"), "running", json!({})));
            idx.observe(&part(&format!("x_{i}"), "completed", json!({})));
        }
        assert!(idx.order.len() <= 2 * MAX_RUNNING_CALLS + 1);
    }
}
