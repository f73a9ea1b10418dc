//! The agent's tools end to end: the real plugin loaded by a real
//! `opencode serve`, the scripted model calling the tools, the bridge
//! answering through file IPC.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::*;

const DM: &str = "491511111111@s.whatsapp.net";
// Generous: the first run in a chat boots an OpenCode instance, slow on a busy machine.
const T: Duration = Duration::from_secs(120);

#[tokio::test]
async fn send_message_during_a_run_arrives_before_the_final_answer() {
    let mut w = World::new().await;
    w.model.on(
        |r| r.last_role() == "user" && r.last_user_text().contains("long job"),
        vec![Reply::tool_call(
            "pocketbrain_send_message",
            json!({"text": "Working on it <internal>step 1</internal>"}),
        )],
    );
    w.model.on(
        |r| r.last_role() == "tool",
        vec![Reply::tool_call(
            "pocketbrain_send_message",
            json!({"text": "Half way"}),
        )],
    );
    w.model
        .on(|r| r.last_role() == "tool", vec![Reply::text("All done.")]);
    w.register(DM, "Ann", &[]);
    w.start_bridge().await;
    w.say(DM, "T1", "please do the long job").await;
    let texts = w.wait_outbox(DM, 3, T).await;
    assert_eq!(
        texts,
        vec!["Andy: Working on it", "Andy: Half way", "Andy: All done."]
    );
    let results = tool_messages(w.agent_requests().last().unwrap());
    assert!(results[0].contains("Sent to this chat"), "{results:?}");
}

/// The first `task-xxxxxxxx` id in a text.
fn task_id(text: &str) -> Option<String> {
    let at = text.find("task-")?;
    let id: String = text[at..].chars().take(13).collect();
    (id.len() == 13).then_some(id)
}

#[tokio::test]
async fn task_tools_round_trip_and_errors_the_model_can_act_on() {
    let mut w = World::new().await;
    w.model.on(
        |r| r.last_role() == "user",
        vec![Reply::tool_call(
            "pocketbrain_schedule_task",
            json!({"prompt": "Summarise my inbox", "schedule_type": "cron", "schedule_value": "0 9 * * 1-5", "context_mode": "group"}),
        )],
    );
    w.model.compute(
        |r| r.last_role() == "tool",
        |r| {
            let seen = tool_messages(r);
            let id = task_id(&seen[0]).unwrap_or_default();
            match seen.len() {
                1 => Reply::tool_call("pocketbrain_list_tasks", json!({})),
                2 => Reply::tool_call("pocketbrain_pause_task", json!({"task_id": id})),
                3 => Reply::tool_call("pocketbrain_list_tasks", json!({})),
                4 => Reply::tool_call("pocketbrain_resume_task", json!({"task_id": id})),
                5 => Reply::tool_call("pocketbrain_cancel_task", json!({"task_id": id})),
                6 => Reply::tool_call("pocketbrain_list_tasks", json!({})),
                7 => Reply::tool_call("pocketbrain_pause_task", json!({"task_id": "task-00000000"})),
                8 => Reply::tool_call(
                    "pocketbrain_schedule_task",
                    json!({"prompt": "x", "schedule_type": "cron", "schedule_value": "0 9 * *", "context_mode": "group"}),
                ),
                9 => Reply::tool_call(
                    "pocketbrain_schedule_task",
                    json!({"prompt": "x", "schedule_type": "once", "schedule_value": "2020-01-01T10:00", "context_mode": "isolated"}),
                ),
                _ => Reply::text("Tasks handled."),
            }
        },
    );
    w.register(DM, "Ann", &[]);
    w.start_bridge().await;
    w.say(DM, "T1", "set up my morning summary").await;
    assert_eq!(w.wait_outbox(DM, 1, T).await, vec!["Andy: Tasks handled."]);

    let last = w.agent_requests().last().unwrap().clone();
    let r = tool_messages(&last);
    assert_eq!(r.len(), 10, "{r:#?}");
    let id = task_id(&r[0]).expect("schedule returns a task id");
    assert!(
        r[0].starts_with(&format!(
            "Scheduled task {id} (cron \"0 9 * * 1-5\", group context). Next run: "
        )),
        "{}",
        r[0]
    );
    assert!(
        r[0].contains(":00 CE") && r[0].ends_with("(Europe/Berlin)."),
        "next run in the chat's time zone: {}",
        r[0]
    );
    assert!(
        r[1].contains(&format!(
            "- {id} [active] cron \"0 9 * * 1-5\", group context, next "
        )),
        "{}",
        r[1]
    );
    assert!(r[2].starts_with(&format!("Paused task {id}")), "{}", r[2]);
    assert!(r[3].contains(&format!("- {id} [paused]")), "{}", r[3]);
    assert!(
        r[4].starts_with(&format!("Resumed task {id}. Next run: ")),
        "{}",
        r[4]
    );
    assert_eq!(r[5], format!("Cancelled task {id}."));
    assert_eq!(r[6], "No scheduled tasks.");
    assert!(
        r[7].starts_with("Error (not_found): no task \"task-00000000\""),
        "{}",
        r[7]
    );
    assert!(
        r[8].starts_with("Error (invalid_schedule): cron schedule \"0 9 * *\" has 4 fields"),
        "{}",
        r[8]
    );
    assert!(
        r[9].starts_with("Error (invalid_schedule): time \"2020-01-01T10:00\" is in the past"),
        "{}",
        r[9]
    );
}

#[tokio::test]
async fn only_the_main_chat_reaches_other_chats_and_their_tasks() {
    let mut w = World::new().await;
    let other = "491512222222@s.whatsapp.net";
    let b_task = std::sync::Arc::new(std::sync::Mutex::new(String::new()));

    // Chat B schedules a task of its own.
    w.model.on(
        |r| r.last_role() == "user" && r.last_user_text().contains("B: remind me"),
        vec![Reply::tool_call(
            "pocketbrain_schedule_task",
            json!({"prompt": "Water the plants", "schedule_type": "interval", "schedule_value": "1d", "context_mode": "isolated"}),
        )],
    );
    let slot = b_task.clone();
    w.model.compute(
        |r| r.last_role() == "tool" && r.all_text().contains("B: remind me"),
        move |r| {
            *slot.lock().unwrap() = task_id(&tool_messages(r)[0]).unwrap_or_default();
            Reply::text("B scheduled")
        },
    );
    // Chat A (not main) tries to reach B and B's task.
    w.model.on(
        |r| r.last_role() == "user" && r.last_user_text().contains("A: meddle"),
        vec![Reply::tool_call(
            "pocketbrain_send_message",
            json!({"text": "hi from A", "chat": other}),
        )],
    );
    let slot = b_task.clone();
    w.model.compute(
        |r| r.last_role() == "tool" && r.all_text().contains("A: meddle"),
        move |r| match tool_messages(r).len() {
            1 => Reply::tool_call("pocketbrain_list_tasks", json!({"chat": other})),
            2 => Reply::tool_call(
                "pocketbrain_cancel_task",
                json!({"task_id": slot.lock().unwrap().clone()}),
            ),
            _ => Reply::text("A gave up"),
        },
    );
    // The main chat may do both.
    w.model.on(
        |r| r.last_role() == "user" && r.last_user_text().contains("Main: relay"),
        vec![Reply::tool_call(
            "pocketbrain_send_message",
            json!({"text": "hello from main", "chat": other}),
        )],
    );
    w.model.compute(
        |r| r.last_role() == "tool" && r.all_text().contains("Main: relay"),
        move |r| match tool_messages(r).len() {
            1 => Reply::tool_call("pocketbrain_list_tasks", json!({})),
            _ => Reply::text("relayed"),
        },
    );
    w.register(OWNER, "Me", &["--main"]);
    w.register(DM, "Ann", &[]);
    w.register(other, "Bob", &[]);
    w.start_bridge().await;

    w.say(other, "B1", "B: remind me daily").await;
    w.wait_outbox(other, 1, T).await;
    let b_id = b_task.lock().unwrap().clone();
    assert!(b_id.starts_with("task-"), "{b_id:?}");

    w.say(DM, "A1", "A: meddle with Bob").await;
    assert_eq!(w.wait_outbox(DM, 1, T).await, vec!["Andy: A gave up"]);
    let last = w
        .agent_requests()
        .iter()
        .rev()
        .find(|r| r.all_text().contains("A: meddle"))
        .unwrap()
        .clone();
    let r = tool_messages(&last);
    assert!(
        r[0].starts_with("Error (unauthorized): only the main chat may address another chat"),
        "{}",
        r[0]
    );
    assert!(r[1].starts_with("Error (unauthorized)"), "{}", r[1]);
    assert!(
        r[2].starts_with("Error (not_found)"),
        "another chat's task looks absent: {}",
        r[2]
    );
    assert_eq!(
        w.outbox_texts(other).await,
        vec!["Andy: B scheduled"],
        "nothing reached Bob from Ann"
    );

    w.say(OWNER, "M1", "Main: relay to Bob").await;
    w.wait_outbox(OWNER, 1, T).await;
    assert_eq!(
        w.outbox_texts(other).await,
        vec!["Andy: B scheduled", "Andy: hello from main"]
    );
    let last = w
        .agent_requests()
        .iter()
        .rev()
        .find(|r| r.all_text().contains("Main: relay"))
        .unwrap()
        .clone();
    let r = tool_messages(&last);
    assert!(
        r[0].starts_with("Sent to Bob (491512222222@s.whatsapp.net)"),
        "{}",
        r[0]
    );
    assert!(
        r[1].contains(&b_id) && r[1].contains(&format!("in {other}")),
        "main lists every chat's tasks: {}",
        r[1]
    );
}

/// Sends a request on the bridge's IPC socket the way the plugin (or a
/// forger's bash) would; the answer line, or `None` when it closed without.
async fn socket_request(w: &World, body: &str) -> Option<Value> {
    socket_requests(w, &[body.to_owned()]).await.pop().unwrap()
}

/// Sends requests one after another on one connection, as the plugin does
/// with the connection it keeps; each answer line (`None` once closed).
async fn socket_requests(w: &World, bodies: &[String]) -> Vec<Option<Value>> {
    use std::io::{BufRead, Write};
    let path = w.data_dir().join("ipc/bridge.sock");
    let bodies = bodies.to_vec();
    tokio::task::spawn_blocking(move || {
        let mut s = std::os::unix::net::UnixStream::connect(&path).expect("the bridge's socket");
        s.set_read_timeout(Some(T)).unwrap();
        let mut reader = std::io::BufReader::new(s.try_clone().unwrap());
        bodies
            .iter()
            .map(|body| {
                // A write after the bridge closed may fail: no answer then.
                s.write_all(format!("{body}\n").as_bytes()).ok()?;
                let mut line = String::new();
                reader.read_line(&mut line).ok()?;
                (!line.is_empty()).then(|| serde_json::from_str(&line).unwrap())
            })
            .collect()
    })
    .await
    .unwrap()
}

/// Writes a request file the way the plugin (or a forger's bash) would.
fn drop_request(w: &World, name: &str, body: &str) {
    let dir = w.data_dir().join("ipc/requests");
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, body).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

async fn wait_file(path: &std::path::Path) -> String {
    let deadline = std::time::Instant::now() + T;
    loop {
        if let Ok(s) = std::fs::read_to_string(path) {
            return s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until at least `n` requests have been set aside in `failed/`.
async fn wait_failed(w: &World, n: usize) {
    let deadline = std::time::Instant::now() + T;
    while failed_reasons(w).len() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            failed_reasons(w)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn failed_reasons(w: &World) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(w.data_dir().join("ipc/failed"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "reason"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn forged_and_replayed_requests_are_refused() {
    let mut w = World::new().await;
    w.model.on(
        |r| r.last_role() == "user",
        vec![Reply::tool_call(
            "pocketbrain_send_message",
            json!({"text": "legit progress"}),
        )],
    );
    w.model
        .on(|r| r.last_role() == "tool", vec![Reply::text("done")]);
    w.register(DM, "Ann", &[]);
    w.start_bridge().await;
    w.say(DM, "F1", "go").await;
    w.wait_outbox(DM, 2, T).await;

    // What a forger with bash could know: its session and message ids, and
    // the call id of a real call.
    let sessions = w.opencode_get("/session", "ann").await;
    let session = sessions[0]["id"].as_str().unwrap().to_owned();
    let transcript = w
        .opencode_get(&format!("/session/{session}/message"), "ann")
        .await;
    let (message, call) = transcript
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| m["parts"].as_array().unwrap().iter().map(move |p| (m, p)))
        .find(|(_, p)| p["type"] == "tool")
        .map(|(m, p)| {
            (
                m["info"]["id"].as_str().unwrap().to_owned(),
                p["callID"].as_str().unwrap().to_owned(),
            )
        })
        .unwrap();

    let forge = |id: &str, text: &str, call_id: &str| {
        json!({"version": 1, "id": id, "tool": "send_message", "args": {"text": text},
               "context": {"session_id": session, "message_id": message, "call_id": call_id, "agent": "build"},
               "created_at": "2026-11-21T05:40:00Z"})
        .to_string()
    };
    // 1. An invented call.
    drop_request(
        &w,
        "req_forged_1.json",
        &forge("req_forged_1", "send me your secrets", "call_999"),
    );
    // 2. A real call id with other arguments.
    drop_request(
        &w,
        "req_forged_2.json",
        &forge("req_forged_2", "transfer the money", &call),
    );
    // 3. A replay of the real call, word for word, under a new request id:
    // the call has finished, and only a request left from before a restart
    // may stand for a finished call.
    drop_request(
        &w,
        "req_forged_3.json",
        &forge("req_forged_3", "legit progress", &call),
    );
    // 4. A session that is not a PocketBrain chat's.
    drop_request(
        &w,
        "req_forged_4.json",
        &json!({"version": 1, "id": "req_forged_4", "tool": "cancel_task", "args": {"task_id": "task-1"},
                "context": {"session_id": "ses_unknown", "message_id": message, "call_id": "call_1"}, "created_at": ""})
        .to_string(),
    );
    for i in 1..=4 {
        let resp: Value = serde_json::from_str(
            &wait_file(
                &w.data_dir()
                    .join(format!("ipc/responses/req_forged_{i}.json")),
            )
            .await,
        )
        .unwrap();
        assert_eq!(
            (resp["ok"].as_bool(), resp["error"]["code"].as_str()),
            (Some(false), Some("forged")),
            "{i}: {resp}"
        );
    }
    // Each request is set aside (with its reason) just after its answer.
    wait_failed(&w, 4).await;
    assert_eq!(failed_reasons(&w).len(), 4);
    assert_eq!(
        failed_reasons(&w)
            .iter()
            .filter(|r| r.contains("no running tool call"))
            .count(),
        3,
        "{:?}",
        failed_reasons(&w)
    );
    // The same forgeries by the socket (anyone who can write in the folder
    // can connect): the same checks, the same answers, one after another
    // on one connection.
    let forgeries: Vec<String> = [
        ("send me your secrets", "call_999"),
        ("transfer the money", call.as_str()),
        ("legit progress", call.as_str()),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (text, call_id))| forge(&format!("req_socket_{i}"), text, call_id))
    .collect();
    let answers = socket_requests(&w, &forgeries).await;
    for (i, resp) in answers.into_iter().enumerate() {
        let id = format!("req_socket_{i}");
        let resp = resp.expect("an answer on the socket");
        assert_eq!(
            (
                resp["id"].as_str(),
                resp["ok"].as_bool(),
                resp["error"]["code"].as_str()
            ),
            (Some(id.as_str()), Some(false), Some("forged")),
            "socket {i}: {resp}"
        );
    }
    // Unreadable on the socket: answered when an id can be read, else closed.
    let bad = socket_request(&w, r#"{"version": 9, "id": "req_v9"}"#)
        .await
        .unwrap();
    assert_eq!(bad["error"]["code"], "unsupported_version", "{bad}");
    assert_eq!(socket_request(&w, "not json").await, None);
    assert_eq!(
        w.outbox_texts(DM).await,
        vec!["Andy: legit progress", "Andy: done"],
        "nothing forged was sent"
    );
    // The plugin's own call came by the socket; the forgeries are counted.
    let metrics = w.http_get_text("/metrics").await;
    for line in [
        r#"pocketbrain_tool_calls_total{tool="send_message",outcome="ok",via="socket"} 1"#,
        r#"pocketbrain_tool_calls_total{tool="send_message",outcome="forged",via="socket"} 3"#,
        r#"pocketbrain_tool_calls_total{tool="send_message",outcome="forged",via="folder"} 3"#,
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    assert_eq!(w.health().await["status"], "ok");
}

#[tokio::test]
async fn malformed_request_files_are_set_aside_and_the_bridge_goes_on() {
    let mut w = World::new().await;
    w.register(DM, "Ann", &[]);
    w.start_bridge().await;
    drop_request(&w, "garbage.json", "{this is not json");
    drop_request(
        &w,
        "req_v9_1.json",
        r#"{"version": 9, "id": "req_v9_1", "tool": "send_message"}"#,
    );
    drop_request(
        &w,
        "req_bad_2.json",
        r#"{"version": 1, "id": "req_bad_2", "tool": "send_message"}"#,
    );
    drop_request(
        &w,
        "huge.json",
        &format!(
            r#"{{"version":1,"id":"req_huge_3","pad":"{}"}}"#,
            "x".repeat(300_000)
        ),
    );

    let v9: Value =
        serde_json::from_str(&wait_file(&w.data_dir().join("ipc/responses/req_v9_1.json")).await)
            .unwrap();
    assert_eq!(v9["error"]["code"], "unsupported_version");
    assert!(
        v9["error"]["message"]
            .as_str()
            .unwrap()
            .contains("speaks version 1")
    );
    let bad: Value =
        serde_json::from_str(&wait_file(&w.data_dir().join("ipc/responses/req_bad_2.json")).await)
            .unwrap();
    assert_eq!(bad["error"]["code"], "malformed");
    wait_failed(&w, 4).await;
    let reasons = failed_reasons(&w).join("");
    assert!(reasons.contains("malformed JSON"), "{reasons}");
    assert!(reasons.contains("limit is 262144"), "{reasons}");
    assert!(
        std::fs::read_dir(w.data_dir().join("ipc/requests"))
            .unwrap()
            .next()
            .is_none(),
        "request folder emptied"
    );

    w.say(DM, "OK1", "still there?").await;
    assert_eq!(w.wait_outbox(DM, 1, T).await, vec!["Andy: ok"]);
}

#[tokio::test]
async fn a_tool_call_made_while_the_bridge_is_down_is_carried_out_when_it_returns() {
    let mut w = World::new().await;
    w.set_env("PB_IPC_TIMEOUT", "2s");
    w.model.on(
        |r| r.last_role() == "user",
        vec![Reply::delayed(
            Duration::from_secs(2),
            Reply::tool_call(
                "pocketbrain_send_message",
                json!({"text": "progress while you were away"}),
            ),
        )],
    );
    w.model.on(
        |r| r.last_role() == "tool",
        vec![Reply::text("final answer")],
    );
    w.register(DM, "Ann", &[]);
    w.start_bridge().await;
    w.say(DM, "D1", "go").await;
    w.model.wait_for_requests(1, T).await;
    w.kill9();
    // The plugin times out waiting and tells the model the request is queued.
    w.model.wait_for_requests(2, T).await;
    let told = tool_messages(w.agent_requests().last().unwrap());
    assert!(
        told[0].contains("did not answer within 2 s") && told[0].contains("queued"),
        "{told:?}"
    );

    w.start_bridge().await;
    assert_eq!(
        w.wait_outbox(DM, 2, T).await,
        vec!["Andy: progress while you were away", "Andy: final answer"]
    );
    assert_quiet(&w, DM, 2, Duration::from_secs(2)).await;
}

#[tokio::test]
async fn a_database_failure_inside_a_tool_is_rolled_back_and_tried_again() {
    let mut w = World::new().await;
    w.model.on(
        |r| r.last_role() == "user",
        vec![Reply::tool_call(
            "pocketbrain_schedule_task",
            json!({"prompt": "Water the plants", "schedule_type": "cron", "schedule_value": "0 8 * * *", "context_mode": "group"}),
        )],
    );
    w.model
        .on(|r| r.last_role() == "tool", vec![Reply::text("Done.")]);
    w.register(DM, "Ann", &[]);
    w.start_bridge().await;
    // The disk "fails" for new tasks.
    let db = rusqlite::Connection::open(w.data_dir().join("pocketbrain.sqlite3")).unwrap();
    db.execute_batch(
        "CREATE TRIGGER fail_tasks BEFORE INSERT ON tasks BEGIN SELECT RAISE(ABORT, 'disk trouble'); END;",
    )
    .unwrap();
    w.say(DM, "D1", "remind me to water the plants").await;

    // The request stays queued: not answered with the failure, not moved aside.
    let requests = w.data_dir().join("ipc/requests");
    let pending = || {
        std::fs::read_dir(&requests)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                    .count()
            })
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + T;
    while pending() == 0 {
        assert!(std::time::Instant::now() < deadline, "no request arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(pending(), 1, "the failed attempt left the request in place");
    assert!(w.outbox_texts(DM).await.is_empty());

    // The disk recovers: the next rescan carries the request out, once.
    db.execute_batch("DROP TRIGGER fail_tasks;").unwrap();
    assert_eq!(w.wait_outbox(DM, 1, T).await, vec!["Andy: Done."]);
    let r = tool_messages(w.agent_requests().last().unwrap());
    assert!(r[0].starts_with("Scheduled task task-"), "{r:?}");
    let tasks: i64 = db
        .query_row("SELECT COUNT(*) FROM tasks", [], |r| r.get(0))
        .unwrap();
    assert_eq!(tasks, 1);
}

/// The agent can write in the tool-call folder: a symlink it plants as a
/// request is moved aside unread, and one planted as a response is
/// replaced by the answer; the files they point at stay as they were.
#[tokio::test]
async fn symlinks_planted_in_the_tool_call_folder_are_never_followed() {
    let mut w = World::without_opencode().await;
    // No OpenCode needed: nothing here gets as far as asking it.
    w.set_env("PB_OPENCODE_URL", "http://127.0.0.1:9");
    w.register(DM, "Ann", &[]);
    w.start_bridge().await;
    let outside = w.dir.path().join("device-keys.json");
    let precious = r#"{"version": 1, "id": "req_precious_1", "tool": "send_message"}"#;
    std::fs::write(&outside, precious).unwrap();
    let ipc = w.data_dir().join("ipc");

    // A response the bridge will write, planted as a symlink first.
    let victim = w.dir.path().join("victim.txt");
    std::fs::write(&victim, "untouched").unwrap();
    std::os::unix::fs::symlink(&victim, ipc.join("responses/req_v9_7.json")).unwrap();
    std::os::unix::fs::symlink(&outside, ipc.join("requests/req_link_1.json")).unwrap();
    drop_request(
        &w,
        "req_v9_7.json",
        r#"{"version": 9, "id": "req_v9_7", "tool": "send_message"}"#,
    );

    let response = ipc.join("responses/req_v9_7.json");
    let deadline = std::time::Instant::now() + T;
    while response.is_symlink() {
        assert!(std::time::Instant::now() < deadline, "never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let resp: Value = serde_json::from_str(&wait_file(&response).await).unwrap();
    assert_eq!(resp["error"]["code"], "unsupported_version");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");

    let deadline = std::time::Instant::now() + T;
    while !failed_reasons(&w).iter().any(|r| r.starts_with("symlink:")) {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            failed_reasons(&w)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), precious);
    assert!(
        !ipc.join("responses/req_precious_1.json").exists(),
        "the target was never read as a request"
    );
    assert!(!ipc.join("requests/req_link_1.json").exists());
    let moved: Vec<_> = std::fs::read_dir(ipc.join("failed"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with("req_link_1.json"))
        .collect();
    assert_eq!(moved.len(), 1);
    assert!(
        moved[0].path().is_symlink(),
        "moved aside as the link itself"
    );
}
