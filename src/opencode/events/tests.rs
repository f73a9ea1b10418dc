use super::*;

#[tokio::test(start_paused = true)]
async fn a_call_the_request_got_ahead_of_is_waited_for_briefly() {
    let hub = EventHub::new();
    let grace = Duration::from_millis(30);
    // Stream down: no wait at all.
    let t = tokio::time::Instant::now();
    assert!(
        hub.wait_running_call("ses_1", "msg_1", "call_1", grace)
            .await
            .is_none()
    );
    assert_eq!(t.elapsed(), Duration::ZERO);

    hub.connected.store(true, Ordering::Relaxed);
    let part = serde_json::json!({"part": {"type": "tool", "sessionID": "ses_1",
        "messageID": "msg_1", "callID": "call_1", "tool": "pocketbrain_list_tasks",
        "state": {"status": "running", "input": {}}}});
    let shown = {
        let hub = hub.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            hub.note_part(&part);
        })
    };
    let t = tokio::time::Instant::now();
    let call = hub
        .wait_running_call("ses_1", "msg_1", "call_1", grace)
        .await;
    assert_eq!(
        call.map(|c| c.tool).as_deref(),
        Some("pocketbrain_list_tasks")
    );
    assert_eq!(
        t.elapsed(),
        Duration::from_millis(5),
        "woken by the part, not the timer"
    );
    shown.await.unwrap();

    // A call the stream never shows: given up after the grace.
    let t = tokio::time::Instant::now();
    assert!(
        hub.wait_running_call("ses_1", "msg_1", "call_9", grace)
            .await
            .is_none()
    );
    assert_eq!(t.elapsed(), grace);
}

#[test]
fn parses_global_frames() {
    let ev = OcEvent::parse(r#"{"directory":"/w/chats/a","project":"global","payload":{"type":"session.idle","properties":{"sessionID":"ses_1"},"id":"evt_1"}}"#).unwrap();
    assert_eq!(ev.kind, "session.idle");
    assert_eq!(ev.session_id(), Some("ses_1"));
    assert_eq!(ev.directory.as_deref(), Some("/w/chats/a"));
    let hb =
        OcEvent::parse(r#"{"payload":{"id":"evt_2","type":"server.heartbeat","properties":{}}}"#)
            .unwrap();
    assert_eq!(hb.kind, "server.heartbeat");
    assert!(hb.directory.is_none());
    assert!(OcEvent::parse("not json").is_none());
    assert!(OcEvent::parse(r#"{"type":"x"}"#).is_none());
}

#[test]
fn reads_what_a_streamed_reply_needs() {
    let ev = |frame: &str| OcEvent::parse(frame).unwrap();
    assert_eq!(
        agent_event(&ev(
            r#"{"payload":{"type":"message.part.delta","properties":{"sessionID":"ses_1","messageID":"msg_1","partID":"prt_1","field":"text","delta":"Hel"}}}"#
        )),
        Some(AgentEvent::Text {
            session: SessionId::new("ses_1"),
            part: "prt_1".into(),
            delta: "Hel".into(),
        })
    );
    assert_eq!(
        agent_event(&ev(
            r#"{"payload":{"type":"message.part.delta","properties":{"sessionID":"ses_1","partID":"prt_1","field":"input","delta":"{"}}}"#
        )),
        None,
        "only text deltas"
    );
    assert_eq!(
        agent_event(&ev(
            r#"{"payload":{"type":"message.part.updated","properties":{"part":{"id":"prt_2","sessionID":"ses_1","type":"reasoning"}}}}"#
        )),
        Some(AgentEvent::NotText {
            session: SessionId::new("ses_1"),
            part: "prt_2".into(),
            tool: None,
        })
    );
    assert_eq!(
        agent_event(&ev(
            r#"{"payload":{"type":"message.part.updated","properties":{"part":{"id":"prt_3","sessionID":"ses_1","type":"tool","tool":"bash","callID":"c1","state":{"status":"running","input":{}}}}}}"#
        )),
        Some(AgentEvent::NotText {
            session: SessionId::new("ses_1"),
            part: "prt_3".into(),
            tool: Some(crate::agent::ToolStep {
                name: "bash".into(),
                status: "running".into(),
            }),
        })
    );
    assert_eq!(
        agent_event(&ev(
            r#"{"payload":{"type":"message.part.updated","properties":{"part":{"id":"prt_1","sessionID":"ses_1","type":"text"}}}}"#
        )),
        None
    );
    assert_eq!(
        agent_event(&ev(
            r#"{"payload":{"type":"session.idle","properties":{"sessionID":"ses_1"}}}"#
        )),
        Some(AgentEvent::Idle {
            session: SessionId::new("ses_1")
        })
    );
    assert_eq!(
        agent_event(&ev(
            r#"{"payload":{"type":"session.status","properties":{"sessionID":"ses_1"}}}"#
        )),
        None
    );
}

#[test]
fn reads_a_permission_request() {
    let v: Value = serde_json::from_str(r#"{"id":"per_1","sessionID":"ses_1","permission":"bash","patterns":["echo hi","ls /tmp"],"metadata":{"command":"echo hi; ls /tmp"},"always":["echo *","ls *"],"tool":{"messageID":"msg_1","callID":"call_2"}}"#).unwrap();
    let ask = permission_ask(&v, Path::new("/w/chats/a")).unwrap();
    assert_eq!(ask.id, "per_1");
    assert_eq!(ask.session.as_str(), "ses_1");
    assert_eq!(ask.permission, "bash");
    assert_eq!(ask.patterns, ["echo hi", "ls /tmp"]);
    assert_eq!(ask.always, ["echo *", "ls *"]);
    assert_eq!(ask.detail, "echo hi; ls /tmp");
    assert_eq!(ask.dir, Path::new("/w/chats/a"));
    assert!(permission_ask(&serde_json::json!({"id": "per_2"}), Path::new("/w")).is_none());
}

/// A server that accepts the connection and never answers (as a starting
/// OpenCode can): the stream is reopened after the open timeout, not
/// after the (much longer) watchdog.
#[tokio::test]
async fn a_stream_that_never_opens_is_reopened() {
    use std::sync::atomic::AtomicUsize;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            counter.fetch_add(1, Ordering::SeqCst);
            held.push(conn);
        }
    });
    let hub = EventHub::new();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(hub.clone().run(
        Client::new(url.parse().unwrap(), None),
        Duration::from_secs(600),
        cancel.clone(),
    ));
    let deadline = std::time::Instant::now() + OPEN_TIMEOUT * 4;
    while accepted.load(Ordering::SeqCst) < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the hanging stream was not reopened"
        );
        assert!(
            !hub.connected(),
            "a stream that never opened is not connected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cancel.cancel();
    task.await.unwrap();
}
