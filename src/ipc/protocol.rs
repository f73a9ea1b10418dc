//! The IPC file format, version 1, mirrored by the plugin's
//! `opencode-plugin/pocketbrain/ipc.ts`. Shared fixtures in
//! `opencode-plugin/fixtures/ipc/` pin both sides.

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const VERSION: u32 = 1;
/// Largest request file read.
pub const MAX_REQUEST_BYTES: u64 = 256 * 1024;

/// A tool call, as the plugin writes it to `requests/<id>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub version: u32,
    pub id: String,
    /// Tool name without the `pocketbrain_` prefix.
    pub tool: String,
    pub args: Value,
    pub context: CallContext,
    pub created_at: String,
}

/// OpenCode's tool context, as the plugin saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallContext {
    pub session_id: String,
    pub message_id: String,
    pub call_id: Option<String>,
    #[serde(default)]
    pub agent: Option<String>,
}

/// The bridge's answer in `responses/<id>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub version: u32,
    pub id: String,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
}

impl Response {
    pub fn ok(id: &str, result: Value) -> Self {
        Self {
            version: VERSION,
            id: id.to_owned(),
            ok: true,
            result: Some(result),
            error: None,
        }
    }
    pub fn error(id: &str, code: &str, message: impl Into<String>) -> Self {
        Self {
            version: VERSION,
            id: id.to_owned(),
            ok: false,
            result: None,
            error: Some(ErrorBody {
                code: code.to_owned(),
                message: message.into(),
            }),
        }
    }
}

/// Whether `id` is safe as a file name and looks like a request id.
pub fn valid_id(id: &str) -> bool {
    id.len() <= 80
        && id.starts_with("req_")
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!(
            "{}/opencode-plugin/fixtures/ipc/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    #[test]
    fn request_fixtures_parse() {
        let r: Request = serde_json::from_str(&fixture("request-send_message.json")).unwrap();
        assert_eq!((r.version, r.tool.as_str()), (1, "send_message"));
        assert_eq!(r.args["text"], "Working on it…");
        assert!(valid_id(&r.id));
        assert!(r.context.call_id.is_some());
        let r: Request = serde_json::from_str(&fixture("request-schedule_task.json")).unwrap();
        assert_eq!(r.args["schedule_type"], "cron");
        assert_eq!(r.context.agent.as_deref(), Some("build"));
    }

    #[test]
    fn responses_serialize_as_the_fixtures() {
        let ok: Value = serde_json::to_value(Response::ok(
            "req_mfz1k2_0011223344556677",
            serde_json::json!({"text": "Sent to this chat."}),
        ))
        .unwrap();
        assert_eq!(
            ok,
            serde_json::from_str::<Value>(&fixture("response-ok.json")).unwrap()
        );
        let err: Value = serde_json::to_value(Response::error(
            "req_mfz1k2_0011223344556677",
            "unauthorized",
            "only the main chat may address another chat",
        ))
        .unwrap();
        assert_eq!(
            err,
            serde_json::from_str::<Value>(&fixture("response-error.json")).unwrap()
        );
    }

    #[test]
    fn ids_must_be_safe_file_names() {
        assert!(valid_id("req_mfz1k2_0011223344556677"));
        for bad in [
            "",
            "../etc/passwd",
            "req_a/b",
            "x_1",
            &format!("req_{}", "a".repeat(90)),
        ] {
            assert!(!valid_id(bad), "{bad}");
        }
    }
}
