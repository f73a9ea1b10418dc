use super::*;
use crate::ids::Folder;
use crate::model::TaskStatus;
use crate::model::TriggerRule;
use crate::store::Store;
use serde_json::json;

const MAIN: &str = "491510000001@s.whatsapp.net";
const ANN: &str = "491511111111@s.whatsapp.net";
const BOB: &str = "491512222222@s.whatsapp.net";

fn reg(jid: &str, name: &str, main: bool) -> RegisteredChat {
    RegisteredChat {
        jid: ChatJid::parse(jid).unwrap(),
        name: name.into(),
        folder: Folder::parse(&name.to_lowercase()).unwrap(),
        is_main: main,
        trigger: TriggerRule::Mention,
        profile: crate::model::Profile::default_for(&ChatJid::parse(jid).unwrap(), main),
    }
}

async fn setup() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("t.sqlite3")).unwrap();
    for r in [
        reg(MAIN, "Main", true),
        reg(ANN, "Ann", false),
        reg(BOB, "Bob", false),
    ] {
        store.register(r).await.unwrap();
    }
    (dir, store)
}

fn run(
    store: &Store,
    caller: &str,
    tool: &str,
    args: Value,
) -> Result<(Value, Effects), ToolError> {
    run_capped(store, caller, tool, args, 50)
}

/// [`run`] with `PB_MAX_TASKS_PER_CHAT` at `max_tasks`.
fn run_capped(
    store: &Store,
    caller: &str,
    tool: &str,
    args: Value,
    max_tasks: usize,
) -> Result<(Value, Effects), ToolError> {
    let caller = match caller {
        MAIN => reg(MAIN, "Main", true),
        ANN => reg(ANN, "Ann", false),
        _ => reg(BOB, "Bob", false),
    };
    let (tool, args) = (tool.to_owned(), args);
    let store = store.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(store.call(move |c| {
            let outgoing = |t: &str| crate::outbound::visible_text(t).map(|t| format!("Andy: {t}"));
            static IDS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let new_id = || {
                MessageId::new(format!(
                    "M{}",
                    IDS.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                ))
            };
            let env = ToolEnv {
                tz: "Europe/Berlin".parse().unwrap(),
                now: "2026-11-21T10:00:00Z".parse().unwrap(),
                outgoing: &outgoing,
                new_message_id: &new_id,
                workspace: None,
                media_limits: crate::media::MediaLimits::default(),
                max_tasks_per_chat: max_tasks,
            };
            Ok(execute(c, Caller::Chat(&caller), &tool, &args, &env))
        }))
        .unwrap()
    })
    .join()
    .unwrap()
}

fn schedule(store: &Store, caller: &str, chat: Option<&str>) -> String {
    let mut args = json!({"prompt": "p", "schedule_type": "interval", "schedule_value": "1h", "context_mode": "group"});
    if let Some(c) = chat {
        args["chat"] = json!(c);
    }
    run(store, caller, "schedule_task", args).unwrap().0["task_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn send_message_goes_to_own_chat_or_main_chooses() {
    let (_d, store) = setup().await;
    let (v, fx) = run(
        &store,
        ANN,
        "send_message",
        json!({"text": "hi <internal>x</internal>"}),
    )
    .unwrap();
    assert!(fx.outbox && v["sent"] == true);
    let e = run(
        &store,
        ANN,
        "send_message",
        json!({"text": "hi", "chat": BOB}),
    )
    .unwrap_err();
    assert_eq!(e.code, "unauthorized");
    run(
        &store,
        MAIN,
        "send_message",
        json!({"text": "relay", "chat": BOB}),
    )
    .unwrap();
    let e = run(
        &store,
        MAIN,
        "send_message",
        json!({"text": "x", "chat": "491519999999@s.whatsapp.net"}),
    )
    .unwrap_err();
    assert_eq!(e.code, "not_found");
    let (v, fx) = run(
        &store,
        ANN,
        "send_message",
        json!({"text": "<internal>only notes</internal>"}),
    )
    .unwrap();
    assert!(!fx.outbox && v["sent"] == false);
    let out: Vec<(String, String)> = store
        .outbox_pending()
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.chat.to_string(), r.text))
        .collect();
    assert_eq!(
        out,
        vec![
            (ANN.into(), "Andy: hi".into()),
            (BOB.into(), "Andy: relay".into())
        ]
    );
}

#[tokio::test]
async fn tasks_are_managed_only_by_their_chat_or_main() {
    let (_d, store) = setup().await;
    let bobs = schedule(&store, BOB, None);
    for tool in ["pause_task", "resume_task", "cancel_task"] {
        let e = run(&store, ANN, tool, json!({"task_id": bobs})).unwrap_err();
        assert_eq!(e.code, "not_found", "{tool}");
    }
    let e = run(&store, ANN, "schedule_task", json!({"prompt": "p", "schedule_type": "interval", "schedule_value": "1h", "context_mode": "group", "chat": BOB})).unwrap_err();
    assert_eq!(e.code, "unauthorized");
    let (v, _) = run(&store, ANN, "list_tasks", json!({})).unwrap();
    assert_eq!(v["text"], "No scheduled tasks.");
    // Main sees and manages everything.
    let mains = schedule(&store, MAIN, Some(ANN));
    let (v, _) = run(&store, MAIN, "list_tasks", json!({})).unwrap();
    assert_eq!(v["tasks"].as_array().unwrap().len(), 2);
    let (v, _) = run(&store, ANN, "list_tasks", json!({})).unwrap();
    assert_eq!(
        v["tasks"][0]["id"],
        mains.as_str(),
        "a task main made for Ann is Ann's"
    );
    run(&store, MAIN, "pause_task", json!({"task_id": bobs})).unwrap();
    run(&store, BOB, "resume_task", json!({"task_id": bobs})).unwrap();
    run(&store, BOB, "cancel_task", json!({"task_id": bobs})).unwrap();
    assert_eq!(
        run(&store, BOB, "cancel_task", json!({"task_id": bobs}))
            .unwrap_err()
            .code,
        "not_found"
    );
}

#[tokio::test]
async fn arguments_are_validated_with_actionable_errors() {
    let (_d, store) = setup().await;
    let cases = [
        (
            "send_message",
            json!({}),
            "invalid_arguments",
            "`text` is required",
        ),
        (
            "send_message",
            json!({"text": 5}),
            "invalid_arguments",
            "`text` must be a string",
        ),
        (
            "send_message",
            json!({"text": "x", "chat": "bob"}),
            "invalid_arguments",
            "`chat`: invalid JID",
        ),
        (
            "schedule_task",
            json!({"prompt": "p", "schedule_type": "cron", "schedule_value": "x", "context_mode": "group"}),
            "invalid_schedule",
            "has 1 fields",
        ),
        (
            "schedule_task",
            json!({"prompt": "p", "schedule_type": "interval", "schedule_value": "1h", "context_mode": "shared"}),
            "invalid_arguments",
            "context_mode",
        ),
        (
            "pause_task",
            json!({}),
            "invalid_arguments",
            "`task_id` is required",
        ),
        (
            "delete_everything",
            json!({}),
            "unknown_tool",
            "available: send_message",
        ),
        (
            "send_message",
            json!("text"),
            "invalid_arguments",
            "must be an object",
        ),
    ];
    for (tool, args, code, msg) in cases {
        let e = run(&store, ANN, tool, args.clone()).unwrap_err();
        assert_eq!(e.code, code, "{tool} {args}");
        assert!(e.message.contains(msg), "{tool} {args}: {}", e.message);
    }
    // The prompt limit counts characters, as the plugin's schema does:
    // 20000 two-byte characters pass, one more does not.
    let prompt = |n| json!({"prompt": "ä".repeat(n), "schedule_type": "interval", "schedule_value": "1h", "context_mode": "group"});
    run(&store, ANN, "schedule_task", prompt(20_000)).unwrap();
    let e = run(&store, ANN, "schedule_task", prompt(20_001)).unwrap_err();
    assert!(e.message.contains("over 20000 characters"), "{}", e.message);
    // So does the text limit.
    let text = |n| json!({"text": "ä".repeat(n)});
    let (sent, _) = run(&store, ANN, "send_message", text(MAX_TEXT_CHARS)).unwrap();
    assert_eq!(sent["sent"], true);
    let e = run(&store, ANN, "send_message", text(MAX_TEXT_CHARS + 1)).unwrap_err();
    assert_eq!(e.code, "invalid_arguments");
    assert!(e.message.contains("over 60000 characters"), "{}", e.message);
}

#[tokio::test]
async fn schedule_reports_next_run_in_the_chat_time_zone() {
    let (_d, store) = setup().await;
    let (v, _) = run(&store, ANN, "schedule_task", json!({"prompt": "p", "schedule_type": "cron", "schedule_value": "0 9 * * 1-5", "context_mode": "isolated"})).unwrap();
    // Saturday 2026-11-21 10:00 UTC: next weekday 9:00 Berlin is Monday 08:00 UTC.
    assert_eq!(v["next_run"], "2026-11-23T09:00:00+01:00");
    assert!(
        v["text"]
            .as_str()
            .unwrap()
            .ends_with("Next run: Mon 2026-11-23 09:00 CET (Europe/Berlin)."),
        "{v}"
    );
    let (v, _) = run(&store, ANN, "schedule_task", json!({"prompt": "p", "schedule_type": "once", "schedule_value": "2026-12-24T18:00", "context_mode": "group"})).unwrap();
    assert_eq!(v["next_run"], "2026-12-24T18:00:00+01:00");
    let once = v["task_id"].as_str().unwrap().to_owned();
    let (v, _) = run(&store, ANN, "list_tasks", json!({})).unwrap();
    assert!(
        v["text"].as_str().unwrap().contains(&format!(
            "- {once} [active] once \"2026-12-24T17:00:00+00:00\""
        )),
        "{v}"
    );
}

#[tokio::test]
async fn send_file_needs_a_chat_folder_and_short_arguments() {
    let (_d, store) = setup().await;
    let e = run(&store, ANN, "send_file", json!({"path": "a.pdf"})).unwrap_err();
    assert_eq!(e.code, "unavailable");
    let e = run(&store, ANN, "send_file", json!({})).unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        ("invalid_arguments", "`path` is required")
    );
    let long = "x".repeat(MAX_CAPTION_CHARS + 1);
    let e = run(
        &store,
        ANN,
        "send_file",
        json!({"path": "a.pdf", "caption": long}),
    )
    .unwrap_err();
    assert!(e.message.contains("`caption` is over"), "{e}");
}

#[tokio::test]
async fn a_chat_may_have_only_so_many_open_tasks() {
    let (_d, store) = setup().await;
    let task = json!({"prompt": "p", "schedule_type": "interval", "schedule_value": "1h", "context_mode": "group"});
    let capped = |caller: &str, args: Value| run_capped(&store, caller, "schedule_task", args, 3);
    let first = capped(ANN, task.clone()).unwrap().0["task_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let second = capped(ANN, task.clone()).unwrap().0["task_id"]
        .as_str()
        .unwrap()
        .to_owned();
    capped(ANN, task.clone()).unwrap();
    // A paused task still counts.
    run(&store, ANN, "pause_task", json!({"task_id": second})).unwrap();
    let e = capped(ANN, task.clone()).unwrap_err();
    assert_eq!(e.code, "limit_reached");
    assert!(
        e.message
            .contains("this chat already has 3 active or paused tasks")
            && e.message.contains("PB_MAX_TASKS_PER_CHAT = 3")
            && e.message.contains("pocketbrain_cancel_task"),
        "{}",
        e.message
    );
    // The main chat scheduling for Ann meets the same limit, named.
    let mut for_ann = task.clone();
    for_ann["chat"] = json!(ANN);
    let e = capped(MAIN, for_ann).unwrap_err();
    assert_eq!(e.code, "limit_reached");
    assert!(e.message.contains("Ann ("), "{}", e.message);
    // Other chats have their own count.
    capped(BOB, task.clone()).unwrap();

    // A cancelled task frees its place, and so does a finished one.
    run(&store, ANN, "cancel_task", json!({"task_id": first})).unwrap();
    let third = capped(ANN, task.clone()).unwrap().0["task_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(capped(ANN, task.clone()).is_err());
    store
        .call(move |c| crate::store::tasks::set_state(c, &third, TaskStatus::Completed, None, None))
        .await
        .unwrap();
    capped(ANN, task).unwrap();
}

/// Each tool's spec and its argument type agree: every argument the spec
/// names, filled in, reads into the type; a required one left out, an
/// unknown one added, a value that is not allowed, are refused by the spec
/// with the argument's name.
#[test]
fn every_spec_reads_into_its_type_and_refuses_what_it_does_not_name() {
    assert_eq!(names().count(), 7);
    for spec in SPECS {
        let full: serde_json::Map<String, Value> = spec
            .args
            .iter()
            .map(|a| {
                let v = a.one_of.first().copied().unwrap_or("x");
                (a.name.to_owned(), Value::from(v))
            })
            .collect();
        let full = Value::Object(full);
        assert_eq!(parses(spec.name, &full), Some(Ok(())), "{}", spec.name);
        let mut extra = full.clone();
        extra["mood"] = "happy".into();
        let e = parses(spec.name, &extra).unwrap().unwrap_err();
        assert!(
            e.message.contains("unknown argument `mood`"),
            "{}: {e}",
            spec.name
        );
        for arg in spec.args {
            let mut without = full.clone();
            without.as_object_mut().unwrap().remove(arg.name);
            let got = parses(spec.name, &without).unwrap();
            if arg.required {
                let e = got.unwrap_err();
                assert_eq!(
                    e.message,
                    format!("`{}` is required", arg.name),
                    "{}",
                    spec.name
                );
            } else {
                assert_eq!(got, Ok(()), "{}: `{}` is optional", spec.name, arg.name);
            }
            if !arg.one_of.is_empty() {
                let mut other = full.clone();
                other[arg.name] = "something else".into();
                let e = parses(spec.name, &other).unwrap().unwrap_err();
                assert!(
                    e.message.starts_with(&format!("`{}` must be", arg.name)),
                    "{e}"
                );
            }
            if let Some(max) = arg.max_chars {
                let mut long = full.clone();
                long[arg.name] = "ä".repeat(max + 1).into();
                let e = parses(spec.name, &long).unwrap().unwrap_err();
                assert!(
                    e.message
                        .starts_with(&format!("`{}` is over {max}", arg.name)),
                    "{e}"
                );
            }
        }
    }
    assert_eq!(parses("nope", &json!({})), None);
}
