//! Global memory, skills and compaction against a real OpenCode: the
//! global `AGENTS.md` reaches every chat's model and only the main chat can
//! change it; a skill in `PB_WORKSPACE/skills/` is offered by the skill tool
//! to the profiles allowed it; a session past `PB_COMPACT_AT` of its
//! model's context window is compacted before the next turn.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

const MAIN: &str = OWNER;
const GROUP: &str = "120363000000077@g.us";
const BOB: &str = "491512222222@s.whatsapp.net";
const T: Duration = Duration::from_secs(120);

async fn group_says(w: &World, id: &str, text: &str) {
    let (status, body) = w
        .inbox(json!({"chat": GROUP, "sender": BOB, "text": text, "id": id}))
        .await;
    assert_eq!(status, 202, "{body}");
}

/// The request whose last user message contains `needle`.
async fn request_with(w: &World, needle: &str) -> ChatRequest {
    w.wait_agent_request(needle, T).await;
    w.agent_requests()
        .into_iter()
        .rev()
        .find(|r| r.last_user_text().contains(needle))
        .unwrap()
}

/// The tool descriptions a request offered, by name.
fn tool_description(r: &ChatRequest, name: &str) -> Option<String> {
    r.body["tools"].as_array()?.iter().find_map(|t| {
        (t["function"]["name"] == name).then(|| {
            t["function"]["description"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
    })
}

#[tokio::test]
async fn global_memory_reaches_every_chat_and_only_the_main_chat_changes_it() {
    let mut w = World::new().await;
    let global = w.workspace().join("global/AGENTS.md");
    let g = global.display().to_string();
    let attack = g.clone();
    w.model.on(
        move |r| {
            r.last_role() == "user" && r.last_user_text().contains("rewrite the global memory")
        },
        vec![Reply::tool_call(
            "write",
            json!({"filePath": attack, "content": "HIJACKED"}),
        )],
    );
    let own = g.clone();
    w.model.on(
        move |r| r.last_role() == "user" && r.last_user_text().contains("note that Kim likes tea"),
        vec![Reply::tool_call(
            "write",
            json!({"filePath": own, "content": "# Global memory\nGLOBAL-MARK-3 Kim likes tea\n"}),
        )],
    );
    w.model
        .always(|r| r.last_role() == "tool", Reply::text("tried"));
    w.model.set_default(Reply::text("noted"));
    w.register(MAIN, "Me", &["--main"]);
    w.register(GROUP, "Family", &[]);
    w.start_bridge().await;
    assert!(
        std::fs::read_to_string(&global)
            .unwrap()
            .starts_with("# Global memory"),
        "the bridge creates the file"
    );

    std::fs::write(&global, "GLOBAL-MARK-1 the owner is called Kim\n").unwrap();
    w.say(MAIN, "m1", "who am I?").await;
    let r = request_with(&w, "who am I?").await;
    assert!(
        r.system_text().contains("GLOBAL-MARK-1"),
        "main chat lacks it"
    );
    group_says(&w, "g1", "@Andy who is the owner?").await;
    let r = request_with(&w, "who is the owner?").await;
    assert!(
        r.system_text().contains("GLOBAL-MARK-1"),
        "the group lacks it"
    );

    // An edit counts from the next message, without a restart.
    std::fs::write(&global, "GLOBAL-MARK-2 the owner moved to Lisbon\n").unwrap();
    group_says(&w, "g2", "@Andy where does the owner live?").await;
    let r = request_with(&w, "where does the owner live?").await;
    assert!(
        r.system_text().contains("GLOBAL-MARK-2") && !r.system_text().contains("GLOBAL-MARK-1"),
        "the edit did not count"
    );

    // A guest's agent cannot write it (its write is refused by OpenCode).
    group_says(&w, "g3", "@Andy please rewrite the global memory").await;
    w.wait_outbox(GROUP, 3, T).await;
    // OpenCode refused the write and told the model so.
    let results: Vec<String> = w
        .agent_requests()
        .iter()
        .filter(|r| r.last_user_text().contains("rewrite the global memory"))
        .flat_map(tool_messages)
        .collect();
    assert!(
        // OpenCode 1.18.33's answer to a denied tool call.
        results
            .iter()
            .any(|t| t.contains("a rule which prevents you from using this specific tool call")),
        "the guest's write was not refused: {results:?}"
    );
    assert_eq!(
        std::fs::read_to_string(&global).unwrap(),
        "GLOBAL-MARK-2 the owner moved to Lisbon\n",
        "a guest changed the global memory"
    );
    // The main chat's agent can.
    w.say(MAIN, "m2", "note that Kim likes tea").await;
    let deadline = Instant::now() + T;
    while !std::fs::read_to_string(&global)
        .unwrap()
        .contains("GLOBAL-MARK-3")
    {
        assert!(
            Instant::now() < deadline,
            "the main chat could not write it"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The CLI shows it.
    let (ok, out, err) = w.cli(&["memory", "show"]);
    assert!(ok && out.contains("GLOBAL-MARK-3"), "{out}{err}");
    let (ok, out, err) = w.cli(&["memory", "show", MAIN]);
    assert!(ok && out.contains("# Me"), "{out}{err}");
}

#[tokio::test]
async fn a_workspace_skill_is_offered_to_the_profiles_allowed_it() {
    let mut w = World::new().await;
    let skill = w.workspace().join("skills/recipes");
    std::fs::create_dir_all(&skill).unwrap();
    std::fs::write(
        skill.join("SKILL.md"),
        "---\nname: recipes\ndescription: Plan a week of family dinners from what is in the fridge.\n---\n\nAsk what is in the fridge first.\n",
    )
    .unwrap();
    w.set_env("PB_SKILLS_GUEST", "recipes");
    w.model.set_default(Reply::text("ok"));
    w.register(MAIN, "Me", &["--main"]);
    w.register(GROUP, "Family", &[]);
    w.register(BOB, "Bob", &[]);
    w.start_bridge().await;

    // OpenCode lists the skills an agent may load in its system prompt and
    // offers the skill tool to load them.
    w.say(MAIN, "m1", "what can you do?").await;
    let main = request_with(&w, "what can you do?").await;
    assert!(
        tool_description(&main, "skill").is_some(),
        "the main chat has the skill tool"
    );
    let listed = main.system_text();
    for name in ["recipes", "memory-keeper", "daily-briefing"] {
        assert!(
            listed.contains(name),
            "{name} missing from the main chat's prompt"
        );
    }
    assert!(
        listed.contains("family dinners"),
        "the skill's description is missing"
    );
    // A guest allowed only recipes sees only it.
    group_says(&w, "g1", "@Andy what can you do?").await;
    let guest = request_with(&w, "@Andy what can you do?").await;
    assert!(
        tool_description(&guest, "skill").is_some(),
        "the guest has recipes"
    );
    let listed = guest.system_text();
    assert!(
        listed.contains("recipes") && !listed.contains("memory-keeper"),
        "the guest's prompt lists the wrong skills"
    );
    // A member allowed none has no skill tool at all.
    let (status, _) = w
        .inbox(json!({"chat": BOB, "sender": BOB, "text": "member: what can you do?", "id": "b1"}))
        .await;
    assert_eq!(status, 202);
    let member = request_with(&w, "member: what can you do?").await;
    assert!(tool_description(&member, "skill").is_none());
    assert!(!member.system_text().contains("family dinners"));

    let (ok, out, err) = w.cli(&["skills", "list"]);
    assert!(ok, "{err}");
    let line = out.lines().find(|l| l.starts_with("recipes")).unwrap();
    assert!(
        line.contains("workspace") && line.contains("main,guest"),
        "{out}"
    );
    let line = out
        .lines()
        .find(|l| l.starts_with("memory-keeper"))
        .unwrap();
    assert!(line.contains("shipped") && !line.contains("guest"), "{out}");
}

#[tokio::test]
async fn a_session_past_the_threshold_is_compacted_before_the_next_turn() {
    let mut w = World::without_opencode().await;
    let mut config: Value = serde_json::from_str(&opencode_config(&w.model)).unwrap();
    config["provider"]["scripted"]["models"]["scripted-1"]["limit"] =
        json!({"context": 24000, "output": 2000});
    // OpenCode's own compaction stays out of the way: this is the bridge's.
    w.opencode = Some(OpenCode::start_with_env(
        &w.workspace(),
        &w.home(),
        &w.model,
        0,
        config.to_string(),
        &[("OPENCODE_DISABLE_AUTOCOMPACT".to_owned(), "1".to_owned())],
    ));
    w.set_env("PB_COMPACT_AT", "0.5");
    w.model.set_default(Reply::text("fine"));
    w.register(MAIN, "Me", &["--main"]);
    w.start_bridge().await;

    // About 14,000 tokens: past half of 24,000 with the system prompt.
    let long = format!("remember this list: {}", "zebra ".repeat(9000));
    w.say(MAIN, "m1", &long).await;
    w.wait_outbox(MAIN, 1, T).await;
    let before = w.model.requests().len();
    let deadline = Instant::now() + T;
    while w.model.requests().len() == before {
        assert!(
            Instant::now() < deadline,
            "no compaction request reached the model"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    w.say(MAIN, "m2", "what now?").await;
    w.wait_outbox(MAIN, 2, T).await;
    let next = request_with(&w, "what now?").await;
    assert!(
        !next.all_text().contains("zebra zebra zebra"),
        "the next turn still carries the whole session"
    );
    let metrics = w.http_get_text("/metrics").await;
    assert!(
        metrics.contains(r#"pocketbrain_runs_started_total{kind="compaction"} 1"#),
        "{metrics}"
    );
}

/// A memory file past PB_MEMORY_MAX_BYTES gets a maintenance task: the
/// agent is asked, in a fresh session, to condense it, and nothing of that
/// reaches the chat.
#[tokio::test]
async fn a_memory_file_past_its_cap_is_condensed_by_a_task() {
    let mut w = World::new().await;
    w.set_env("PB_MEMORY_MAX_BYTES", "2K");
    w.register(MAIN, "Me", &["--main"]);
    let memory = w.workspace().join("chats/me/AGENTS.md");
    let target = memory.display().to_string();
    w.model.on(
        |r| r.last_role() == "user" && r.last_user_text().contains("[memory upkeep]"),
        vec![Reply::tool_call(
            "write",
            json!({"filePath": target, "content": "# Me\n\n## Memory\n- condensed\n"}),
        )],
    );
    w.model.always(
        |r| r.last_role() == "tool",
        Reply::text("<internal>done</internal>"),
    );
    w.model.set_default(Reply::text("hi"));
    w.start_bridge().await;
    std::fs::write(
        &memory,
        format!("# Me\n\n## Memory\n{}", "- a fact\n".repeat(400)),
    )
    .unwrap();

    w.say(MAIN, "m1", "hello").await;
    assert_eq!(w.wait_outbox(MAIN, 1, T).await, ["Andy: hi"]);
    let deadline = Instant::now() + T;
    while std::fs::read_to_string(&memory).unwrap().len() > 2048 {
        assert!(
            Instant::now() < deadline,
            "the memory file was never condensed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        std::fs::read_to_string(&memory)
            .unwrap()
            .contains("condensed")
    );
    // The upkeep said nothing in the chat, and is not scheduled twice.
    assert_quiet(&w, MAIN, 1, Duration::from_secs(2)).await;
    let upkeep = w
        .agent_requests()
        .iter()
        .filter(|r| r.last_role() == "user" && r.last_user_text().contains("[memory upkeep]"))
        .count();
    assert_eq!(upkeep, 1);
}
