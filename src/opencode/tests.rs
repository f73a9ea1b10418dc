use super::client::TranscriptMessage;
use super::run::{Progress, failure, progress, run_failed, tail_holds_the_run};
use super::*;
use serde_json::json;

fn msg(v: serde_json::Value) -> TranscriptMessage {
    serde_json::from_value(v).unwrap()
}

#[test]
fn message_ids_are_well_formed_and_increase() {
    let ids: Vec<_> = (0..1000)
        .map(|_| new_message_id().as_str().to_owned())
        .collect();
    for w in ids.windows(2) {
        assert!(w[0][..16] < w[1][..16], "{} !< {}", w[0], w[1]);
    }
    assert!(ids.iter().all(|i| i.len() == 30 && i.starts_with("msg_")));
}

#[test]
fn a_transcript_tail_is_enough_only_when_it_holds_the_prompt() {
    let m = |id: &str| msg(json!({"info":{"id":id,"role":"user"},"parts":[]}));
    let tail = [m("msg_p"), m("msg_a")];
    assert!(tail_holds_the_run(&tail, 2, "msg_p"));
    assert!(
        tail_holds_the_run(&tail[1..], 2, "msg_p"),
        "whole transcript"
    );
    assert!(!tail_holds_the_run(&[m("msg_a"), m("msg_b")], 2, "msg_p"));
}

#[test]
fn progress_reads_the_transcript() {
    let user = json!({"info":{"id":"msg_u","role":"user"},"parts":[{"type":"text","text":"hi"}]});
    let tools = json!({"info":{"id":"msg_a1","role":"assistant","parentID":"msg_u","finish":"tool-calls","time":{"completed":1}},
        "parts":[{"type":"text","text":"let me check"}]});
    let fin = json!({"info":{"id":"msg_a2","role":"assistant","parentID":"msg_u","finish":"stop","time":{"completed":2}},
        "parts":[{"type":"step-start"},{"type":"text","text":"Hello"},{"type":"text","text":"hidden","synthetic":true},{"type":"text","text":"there"}]});
    let failed = json!({"info":{"id":"msg_a3","role":"assistant","parentID":"msg_u","time":{"completed":2},
        "error":{"name":"APIError","data":{"message":"bad"}}},"parts":[]});
    assert_eq!(progress(&[], "msg_u"), Progress::NotSent);
    assert_eq!(progress(&[msg(user.clone())], "msg_u"), Progress::Running);
    assert_eq!(
        progress(&[msg(user.clone()), msg(tools.clone())], "msg_u"),
        Progress::Running
    );
    assert_eq!(
        progress(&[msg(user.clone()), msg(tools.clone()), msg(fin)], "msg_u"),
        Progress::Answered("Hello\nthere".into())
    );
    assert_eq!(
        progress(&[msg(user.clone()), msg(failed)], "msg_u"),
        Progress::Failed {
            refused: false,
            why: "APIError: bad".into()
        }
    );
    let refused = json!({"info":{"id":"msg_a4","role":"assistant","parentID":"msg_u","finish":"tool-calls","time":{"completed":3}},
        "parts":[{"type":"tool","tool":"bash","state":{"status":"error",
            "error":"The user rejected permission to use this specific tool call."}}]});
    assert_eq!(
        progress(&[msg(user.clone()), msg(tools), msg(refused)], "msg_u"),
        Progress::Halted("let me check\n\n(I stopped: I am not allowed to use bash here.)".into())
    );
    // Each refused tool is named once.
    let rejected = json!({"status":"error","error":"The user rejected permission to use this specific tool call."});
    let many = json!({"info":{"id":"msg_a6","role":"assistant","parentID":"msg_u","finish":"tool-calls","time":{"completed":3}},
        "parts":[{"type":"tool","tool":"bash","state":rejected},{"type":"tool","tool":"edit","state":rejected},
                 {"type":"tool","tool":"bash","state":rejected}]});
    assert_eq!(
        progress(&[msg(user.clone()), msg(many)], "msg_u"),
        Progress::Halted("(I stopped: I am not allowed to use bash, edit here.)".into())
    );
    // A tool that merely failed lets the agent go on.
    let failed_tool = json!({"info":{"id":"msg_a5","role":"assistant","parentID":"msg_u","finish":"tool-calls","time":{"completed":3}},
        "parts":[{"type":"tool","tool":"bash","state":{"status":"error","error":"exit 1"}}]});
    assert_eq!(
        progress(&[msg(user), msg(failed_tool)], "msg_u"),
        Progress::Running
    );
}

/// A provider refusing the key (OpenCode's `APIError` with status 401
/// or 403) or an unknown model is the owner's to fix; other failures
/// (a 400, a 500) may pass and are retried.
#[test]
fn a_refused_key_or_unknown_model_is_told_apart() {
    let api = |status: u64| json!({"name":"APIError","data":{"message":"Incorrect API key provided","statusCode":status,"isRetryable":false}});
    assert_eq!(
        run_failed(&api(401)),
        Progress::Failed {
            refused: true,
            why:
                "the model provider refused the request (401): APIError: Incorrect API key provided"
                    .into()
        }
    );
    assert!(matches!(
        run_failed(&api(403)),
        Progress::Failed { refused: true, .. }
    ));
    assert!(matches!(
        run_failed(&api(400)),
        Progress::Failed { refused: false, .. }
    ));
    assert!(matches!(
        run_failed(&api(500)),
        Progress::Failed { refused: false, .. }
    ));
    let unknown =
        json!({"name":"ProviderModelNotFoundError","data":{"providerID":"x","modelID":"y"}});
    assert!(matches!(
        run_failed(&unknown),
        Progress::Failed { refused: true, .. }
    ));
    assert!(matches!(
        failure(true, "x".into()),
        AgentError::ModelRefused(_)
    ));
}
