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

/// A stand-in for OpenCode's HTTP API: the blocking prompt call answers
/// `prompt` (status, body) and the transcript is `transcript`.
async fn fake_opencode(
    prompt: (u16, serde_json::Value),
    transcript: serde_json::Value,
) -> (OpenCode, tokio::task::JoinHandle<()>) {
    use axum::routing::post;
    let app = axum::Router::new().route(
        "/session/{id}/message",
        post(move || {
            let (status, body) = prompt.clone();
            async move {
                (
                    axum::http::StatusCode::from_u16(status).unwrap(),
                    axum::Json(body),
                )
            }
        })
        .get(move || {
            let t = transcript.clone();
            async move { axum::Json(t) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    let client = client::Client::new(base.parse().unwrap(), None);
    (OpenCode::new(client, EventHub::new(), None), server)
}

fn spec(streamed: bool) -> crate::agent::RunSpec {
    crate::agent::RunSpec {
        dir: std::env::temp_dir(),
        session: crate::ids::SessionId::new("ses_test"),
        prompt_id: crate::ids::PromptId::new("msg_prompt"),
        text: "hello".into(),
        files: Vec::new(),
        timeout: std::time::Duration::from_secs(60),
        agent: None,
        model: Some("p/m".parse().unwrap()),
        streamed,
    }
}

fn answer_to_prompt() -> serde_json::Value {
    json!({"info": {"id": "msg_answer", "role": "assistant", "parentID": "msg_prompt",
        "finish": "stop", "time": {"created": 1, "completed": 2}},
        "parts": [{"type": "text", "text": "the answer"}]})
}

#[tokio::test]
async fn the_blocking_calls_answer_ends_the_run() {
    let (oc, server) = fake_opencode((200, answer_to_prompt()), json!([])).await;
    assert_eq!(
        oc.prompt_and_follow(&spec(false)).await.unwrap(),
        "the answer"
    );
    server.abort();
}

#[tokio::test]
async fn a_call_that_failed_without_the_prompt_in_the_transcript_is_unreachable() {
    let (oc, server) = fake_opencode((500, json!({"error": "boom"})), json!([])).await;
    match oc.prompt_and_follow(&spec(false)).await {
        Err(AgentError::Unreachable(why)) => {
            assert!(why.contains("did not reach OpenCode"), "{why}")
        }
        other => panic!("{other:?}"),
    }
    server.abort();
}

#[tokio::test]
async fn a_session_opencode_does_not_know_is_gone() {
    let (oc, server) = fake_opencode((404, json!({})), json!([])).await;
    assert!(matches!(
        oc.prompt_and_follow(&spec(false)).await,
        Err(AgentError::SessionGone(_))
    ));
    server.abort();
}

/// Someone streams the answer: with no stream showing it, the returned
/// answer still ends the run, after the bounded wait.
#[tokio::test]
async fn a_streamed_run_takes_the_returned_answer_when_the_stream_stays_silent() {
    let (oc, server) = fake_opencode((200, answer_to_prompt()), json!([])).await;
    let t = std::time::Instant::now();
    assert_eq!(
        oc.prompt_and_follow(&spec(true)).await.unwrap(),
        "the answer"
    );
    assert!(
        t.elapsed() >= std::time::Duration::from_secs(3),
        "{:?}",
        t.elapsed()
    );
    server.abort();
}

/// The size check after a turn takes the answer the prompt call returned:
/// no second read of the transcript (which here says something else). A
/// second look, with nothing kept, reads the transcript.
#[tokio::test]
async fn the_turn_after_an_answer_is_the_returned_one_not_a_transcript_read() {
    use crate::agent::Agent;
    let mut answer = answer_to_prompt();
    answer["info"]["tokens"] = json!({"input": 1234, "output": 5, "reasoning": 0,
        "cache": {"read": 6, "write": 0}});
    answer["info"]["providerID"] = json!("p");
    answer["info"]["modelID"] = json!("m");
    let transcript = json!([{"info": {"id": "msg_other", "role": "assistant",
        "parentID": "msg_x", "finish": "stop", "time": {"created": 1, "completed": 2},
        "providerID": "p", "modelID": "m", "tokens": {"input": 7, "output": 1}},
        "parts": []}]);
    let (oc, server) = fake_opencode((200, answer), transcript).await;
    let s = spec(false);
    oc.prompt_and_follow(&s).await.unwrap();
    let turn = oc.last_turn(&s.dir, &s.session).await.unwrap().unwrap();
    assert_eq!(
        (
            turn.model.as_str(),
            turn.input_tokens,
            turn.cache_read_tokens
        ),
        ("p/m", 1234, 6)
    );
    let turn = oc.last_turn(&s.dir, &s.session).await.unwrap().unwrap();
    assert_eq!(turn.input_tokens, 7, "the kept answer is taken once");
    server.abort();
}
