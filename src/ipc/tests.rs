use super::act::matching_call;
use super::fair::fair_order;
use super::sweep::prune;
use super::*;
use crate::agent::ToolCall;
use crate::safe_dir::SafeDir;
use crate::tools;
use serde_json::{Value, json};

fn req(tool: &str, args: Value, call: Option<&str>) -> Request {
    Request {
        version: 1,
        id: "req_x_1".into(),
        tool: tool.into(),
        args,
        context: protocol::CallContext {
            session_id: "ses_1".into(),
            message_id: "msg_1".into(),
            call_id: call.map(Into::into),
            agent: None,
        },
        created_at: String::new(),
    }
}

fn call(tool: &str, id: &str, status: &str, input: Value) -> ToolCall {
    ToolCall {
        tool: tool.into(),
        call_id: id.into(),
        status: status.into(),
        input,
    }
}

#[test]
fn provenance_needs_same_tool_call_and_arguments() {
    let calls = vec![
        call("bash", "c0", "completed", json!({"command": "echo"})),
        call(
            "pocketbrain_send_message",
            "c1",
            "running",
            json!({"text": "hi"}),
        ),
    ];
    let ok = |r: &Request| matching_call(&calls, r, false).is_some();
    assert!(ok(&req("send_message", json!({"text": "hi"}), Some("c1"))));
    assert!(
        !ok(&req("send_message", json!({"text": "hi"}), None)),
        "a request without a call id"
    );
    assert!(
        !ok(&req("send_message", json!({"text": "bye"}), Some("c1"))),
        "other args"
    );
    assert!(
        !ok(&req(
            "send_message",
            json!({"text": "hi", "chat": "1@g.us"}),
            Some("c1")
        )),
        "added args"
    );
    assert!(
        !ok(&req("send_message", json!({"text": "hi"}), Some("c9"))),
        "other call"
    );
    assert!(
        !ok(&req("cancel_task", json!({"text": "hi"}), Some("c1"))),
        "other tool"
    );
    assert!(
        !ok(&req("send_message", json!({}), Some("c1"))),
        "a tool argument left out"
    );
    let pending = vec![call(
        "pocketbrain_send_message",
        "c1",
        "pending",
        json!({"text": "hi"}),
    )];
    let r = req("send_message", json!({"text": "hi"}), Some("c1"));
    assert!(matching_call(&pending, &r, false).is_none());
    assert!(matching_call(&pending, &r, true).is_none());
    // A stray key the model added (the plugin's schema dropped it) is
    // not an argument of any tool: tolerated.
    let stray = vec![call(
        "pocketbrain_send_message",
        "c1",
        "running",
        json!({"text": "hi", "mood": "happy"}),
    )];
    assert!(matching_call(&stray, &r, false).is_some());
}

/// Regression: the check compared a fixed list of argument names that
/// lacked `send_file`'s `path` and `caption`, so a request could drop
/// the caption of a real call, or carry one the call never had. Every
/// argument of the tool's own spec is compared now.
#[test]
fn provenance_compares_every_argument_of_send_file() {
    let calls = vec![call(
        "pocketbrain_send_file",
        "c1",
        "running",
        json!({"path": "report.pdf", "caption": "Q3"}),
    )];
    let ok =
        |args: Value| matching_call(&calls, &req("send_file", args, Some("c1")), false).is_some();
    assert!(ok(json!({"path": "report.pdf", "caption": "Q3"})));
    assert!(!ok(json!({"path": "report.pdf"})), "caption dropped");
    assert!(
        !ok(json!({"path": "report.pdf", "caption": "pay now"})),
        "caption changed"
    );
    assert!(
        !ok(json!({"path": "secret.pdf", "caption": "Q3"})),
        "another file"
    );
    assert!(!ok(json!({"caption": "Q3"})), "path dropped");
    let bare = vec![call(
        "pocketbrain_send_file",
        "c2",
        "running",
        json!({"path": "a.png"}),
    )];
    let r = |args: Value| req("send_file", args, Some("c2"));
    assert!(matching_call(&bare, &r(json!({"path": "a.png"})), false).is_some());
    assert!(
        matching_call(&bare, &r(json!({"path": "a.png", "caption": null})), false).is_some(),
        "null and absent are the same"
    );
    assert!(
        matching_call(
            &bare,
            &r(json!({"path": "a.png", "caption": "added"})),
            false
        )
        .is_none(),
        "a caption the call never had"
    );
    // Every tool's every argument counts, whatever the tool.
    for spec in tools::SPECS {
        for arg in spec.args {
            let input = json!({ arg.name: "model's value" });
            let calls = vec![call(
                &format!("pocketbrain_{}", spec.name),
                "c3",
                "running",
                input,
            )];
            let forged = req(spec.name, json!({ arg.name: "other value" }), Some("c3"));
            assert!(
                matching_call(&calls, &forged, false).is_none(),
                "{}: `{}` not compared",
                spec.name,
                arg.name
            );
            let dropped = req(spec.name, json!({}), Some("c3"));
            assert!(
                matching_call(&calls, &dropped, false).is_none(),
                "{}: `{}` may be left out",
                spec.name,
                arg.name
            );
        }
    }
}

/// The stream's index of running calls answers the provenance check by
/// the same rules: a running call with the same tool, call id, message
/// and arguments is accepted; a finished one is not (for a live
/// request); other arguments are refused.
#[test]
fn provenance_from_the_streams_running_calls() {
    use crate::opencode::calls::RunningCalls;
    let event = |status: &str, input: Value| {
        json!({"part": {"type": "tool", "sessionID": "ses_1", "messageID": "msg_1",
            "callID": "c1", "tool": "pocketbrain_send_message",
            "state": {"status": status, "input": input}}})
    };
    let r = req("send_message", json!({"text": "hi"}), Some("c1"));
    let accepted = |idx: &RunningCalls, r: &Request| {
        idx.get("ses_1", &r.context.message_id, "c1")
            .is_some_and(|c| matching_call(std::slice::from_ref(&c), r, false).is_some())
    };
    let mut idx = RunningCalls::default();
    assert!(!accepted(&idx, &r), "not shown yet: ask OpenCode");
    idx.observe(&event("running", json!({"text": "hi"})));
    assert!(accepted(&idx, &r), "running, same tool and arguments");
    let other_args = req("send_message", json!({"text": "bye"}), Some("c1"));
    assert!(!accepted(&idx, &other_args), "other arguments");
    let added = req(
        "send_message",
        json!({"text": "hi", "chat": "1@g.us"}),
        Some("c1"),
    );
    assert!(!accepted(&idx, &added), "added arguments");
    let other_tool = req("cancel_task", json!({"text": "hi"}), Some("c1"));
    assert!(!accepted(&idx, &other_tool), "other tool");
    idx.observe(&event("completed", json!({"text": "hi"})));
    assert!(
        !accepted(&idx, &r),
        "a finished call is not accepted for a live request"
    );
}

#[test]
fn a_finished_call_counts_only_for_a_request_left_from_before_the_restart() {
    let r = req("send_message", json!({"text": "hi"}), Some("c1"));
    for status in ["completed", "error"] {
        let calls = vec![call(
            "pocketbrain_send_message",
            "c1",
            status,
            json!({"text": "hi"}),
        )];
        assert!(
            matching_call(&calls, &r, false).is_none(),
            "{status}: a forged replay of a finished call"
        );
        assert!(
            matching_call(&calls, &r, true).is_some(),
            "{status}: left over"
        );
        let other = req("send_message", json!({"text": "other"}), Some("c1"));
        assert!(
            matching_call(&calls, &other, true).is_none(),
            "{status}: left over, other args"
        );
    }
}

#[test]
fn one_pass_is_round_robin_over_sessions_with_a_share_each() {
    // Session "a" floods 500 requests before "b" makes one.
    let mut items: Vec<(&str, String)> = (0..500).map(|i| ("a", format!("a{i:03}"))).collect();
    items.push(("b", "b000".into()));
    items.push(("c", "c000".into()));
    items.push(("a", "a500".into()));
    let (order, more) = fair_order(items, 4);
    assert!(more, "a's surplus waits for the next pass");
    assert_eq!(
        order,
        vec!["a000", "b000", "c000", "a001", "a002", "a003"],
        "b and c are acted on after one of a's requests"
    );
    let (order, more) = fair_order(vec![("x", 1), ("x", 2), ("y", 3)], 4);
    assert_eq!((order, more), (vec![1, 3, 2], false));
}

#[test]
fn failed_requests_are_pruned_by_age_and_count() {
    let t = tempfile::tempdir().unwrap();
    let dir = SafeDir::open_root(t.path()).unwrap();
    let now = SystemTime::now();
    let set_age = |name: &str, age: Duration| {
        let f = std::fs::File::options()
            .write(true)
            .open(t.path().join(name))
            .unwrap();
        f.set_modified(now - age).unwrap();
    };
    for i in 0..6 {
        let name = format!("f{i}.json");
        dir.write(&name, b"{}").unwrap();
        set_age(&name, Duration::from_secs(3600 * (i + 1)));
    }
    dir.write("ancient.json", b"{}").unwrap();
    set_age("ancient.json", Duration::from_secs(8 * 24 * 3600));
    prune(&dir, now, FAILED_TTL, 4);
    let mut left: Vec<String> = dir
        .names()
        .unwrap()
        .into_iter()
        .map(|n| n.into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(
        left,
        vec!["f0.json", "f1.json", "f2.json", "f3.json"],
        "past the age limit, then the oldest beyond the count, are gone"
    );
}
