//! The IPC file format, version 1, mirrored by the plugin's
//! `opencode-plugin/pocketbrain/ipc.ts`.
//!
//! The constants below are the bridge's one definition of what both sides
//! agree on; the plugin's is `opencode-plugin/pocketbrain/contract.ts`. The
//! plugin writes its definition to `opencode-plugin/fixtures/contract.json`
//! (its tests check that file is current) and the tests here check these
//! constants against it. Shared request and response fixtures in
//! `opencode-plugin/fixtures/ipc/` pin the format on both sides.

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const VERSION: u32 = 1;
/// The tools and their argument limits are defined with the tools.
pub use crate::tools::{MAX_CAPTION_CHARS, MAX_PATH_CHARS, MAX_PROMPT_CHARS, MAX_TEXT_CHARS};
/// Largest request file read.
pub const MAX_REQUEST_BYTES: u64 = 256 * 1024;
/// Longest request id, in characters.
pub const MAX_REQUEST_ID_CHARS: usize = 80;

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
    id.len() <= MAX_REQUEST_ID_CHARS
        && id.starts_with("req_")
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Why a request could not be read: its id when one could be read (so the
/// plugin can be answered), a stable code, and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub id: Option<String>,
    pub code: &'static str,
    pub why: String,
}

/// Reads one request (a file's bytes or one line from the socket): JSON,
/// a valid id, this protocol version, the request's shape.
pub fn read_request(bytes: &[u8]) -> Result<Request, Unreadable> {
    let bad = |id: Option<&str>, code, why: String| Unreadable {
        id: id.map(str::to_owned),
        code,
        why,
    };
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| bad(None, "malformed", format!("malformed JSON: {e}")))?;
    let Some(id) = value["id"].as_str().filter(|i| valid_id(i)) else {
        return Err(bad(
            None,
            "malformed",
            "no valid request id (req_...)".into(),
        ));
    };
    let id = id.to_owned();
    if value["version"].as_u64() != Some(VERSION as u64) {
        let why = format!(
            "unsupported protocol version {}; this bridge speaks version {VERSION}",
            value["version"]
        );
        return Err(bad(Some(&id), "unsupported_version", why));
    }
    serde_json::from_value(value)
        .map_err(|e| bad(Some(&id), "malformed", format!("malformed request: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/opencode-plugin/fixtures");

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!("{FIXTURES}/ipc/{name}")).unwrap()
    }

    /// The IPC fixtures whose name starts with `prefix`, with their content.
    fn fixtures(prefix: &str) -> Vec<(String, String)> {
        let mut names: Vec<String> = std::fs::read_dir(format!("{FIXTURES}/ipc"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with(prefix) && n.ends_with(".json"))
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|n| {
                let text = fixture(&n);
                (n, text)
            })
            .collect()
    }

    #[test]
    fn constants_match_the_plugins_contract() {
        let contract: Value = serde_json::from_str(
            &std::fs::read_to_string(format!("{FIXTURES}/contract.json")).unwrap(),
        )
        .unwrap();
        let ours = serde_json::json!({
            "protocol_version": VERSION,
            "socket": crate::ipc::socket::SOCKET_NAME,
            "tools": crate::tools::names().collect::<Vec<_>>(),
            "args": crate::tools::SPECS
                .iter()
                .map(|s| (s.name.to_owned(), s.contract_json()))
                .collect::<serde_json::Map<_, _>>(),
            "limits": {
                "max_request_bytes": MAX_REQUEST_BYTES,
                "max_request_id_chars": MAX_REQUEST_ID_CHARS,
                "send_message_text_chars": MAX_TEXT_CHARS,
                "schedule_task_prompt_chars": MAX_PROMPT_CHARS,
                "send_file_path_chars": MAX_PATH_CHARS,
                "send_file_caption_chars": MAX_CAPTION_CHARS,
            },
        });
        assert_eq!(
            ours, contract,
            "the bridge (src/ipc/protocol.rs, the tools' specs in src/tools/) and the plugin \
             (opencode-plugin/pocketbrain/contract.ts, the tools' zod schemas in pocketbrain/tools/) disagree; \
             opencode-plugin/fixtures/contract.json is written from the plugin by `npm run contract`"
        );
    }

    #[test]
    fn every_request_fixture_is_a_request_for_a_known_tool() {
        let all = fixtures("request-");
        let mut tools: Vec<String> = Vec::new();
        for (name, text) in &all {
            let r: Request = serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(r.version, VERSION, "{name}");
            assert!(valid_id(&r.id), "{name}: {}", r.id);
            assert!(crate::tools::spec(&r.tool).is_some(), "{name}: {}", r.tool);
            assert!(r.args.is_object(), "{name}");
            assert!(text.len() as u64 <= MAX_REQUEST_BYTES, "{name}");
            // Nothing is lost or added by our types: they write it back the same.
            assert_eq!(
                serde_json::to_value(&r).unwrap(),
                serde_json::from_str::<Value>(text).unwrap(),
                "{name}"
            );
            tools.push(r.tool);
        }
        tools.sort();
        let mut expected: Vec<&str> = crate::tools::names().collect();
        expected.sort();
        assert_eq!(tools, expected, "one request fixture per tool");
    }

    #[test]
    fn every_response_fixture_is_written_as_the_bridge_writes_it() {
        let all = fixtures("response-");
        assert!(all.len() >= 2);
        for (name, text) in &all {
            let r: Response = serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(r.version, VERSION, "{name}");
            assert!(valid_id(&r.id), "{name}");
            let rebuilt = match (&r.result, &r.error) {
                (Some(result), None) if r.ok => {
                    assert!(result["text"].is_string(), "{name}: results carry text");
                    Response::ok(&r.id, result.clone())
                }
                (None, Some(e)) if !r.ok => Response::error(&r.id, &e.code, e.message.clone()),
                _ => panic!("{name}: ok with a result, or not ok with an error"),
            };
            assert_eq!(
                serde_json::to_value(rebuilt).unwrap(),
                serde_json::from_str::<Value>(text).unwrap(),
                "{name}"
            );
        }
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
            &format!("req_{}", "a".repeat(MAX_REQUEST_ID_CHARS)),
        ] {
            assert!(!valid_id(bad), "{bad}");
        }
    }
}
