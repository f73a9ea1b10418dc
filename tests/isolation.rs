//! What keeps chats apart, end to end: the bridge refuses a workspace that
//! OpenCode would fold into one git project, and a guest chat's agent gets
//! only its allow-listed tools and cannot write `.git` or `.opencode` in
//! its own folder. A real OpenCode with the agent definitions the bridge
//! installs; the scripted model asks for the tools.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::json;
use support::*;

const MAIN: &str = "491510000001@s.whatsapp.net";
const GROUP: &str = "120363000000001@g.us";

/// The tool results the model saw in `chat`'s last request (each request
/// carries the whole conversation so far).
fn tool_results_of(w: &World, chat: &'static str) -> Vec<String> {
    w.agent_requests()
        .iter()
        .rfind(|r| of_chat(chat)(r))
        .map(tool_messages)
        .unwrap_or_default()
}

fn git_init(dir: &Path) {
    let out = Command::new("git")
        .args(["init", "-q"])
        .arg(dir)
        .output()
        .expect("run git");
    assert!(out.status.success(), "git init: {out:?}");
}

#[tokio::test]
async fn serve_refuses_a_workspace_inside_a_git_repository_and_doctor_reports_it() {
    let w = World::without_opencode().await;
    // The test's temp folder (never inside the repository's checkout) holds
    // the workspace; make it a repository.
    let repo = w.dir.path();
    git_init(repo);
    let git = repo.join(".git");

    let (ok, out, err) = w.cli_ending(&["serve"], Duration::from_secs(60));
    assert!(!ok, "serve started inside a git repository: {out}{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line: {err}"));
    assert!(
        line.contains("is inside the git repository")
            && line.contains(&git.display().to_string())
            && line.contains("PB_WORKSPACE"),
        "{line}"
    );
    // Nothing of the bridge's was installed for OpenCode to load.
    assert!(!w.workspace().join(".opencode/opencode.json").exists());

    let (ok, out, err) = w.cli(&["doctor"]);
    assert!(!ok, "doctor found nothing: {out}{err}");
    let check = out
        .lines()
        .find(|l| l.contains("isolation"))
        .unwrap_or_else(|| panic!("no isolation check: {out}"));
    assert!(
        check.starts_with("[FAIL]") && check.contains(&git.display().to_string()),
        "{out}"
    );
    assert!(
        out.contains("set PB_WORKSPACE to a folder outside it"),
        "{out}"
    );

    // Out of the repository, both are content.
    std::fs::remove_dir_all(&git).unwrap();
    let (_, out, _) = w.cli(&["doctor"]);
    assert!(
        out.lines()
            .any(|l| l.starts_with("[ok  ] isolation") && l.contains("no git repository")),
        "{out}"
    );
}

#[tokio::test]
async fn a_guest_is_offered_only_its_tools_and_not_the_owners_custom_tool() {
    let mut w = World::new().await;
    w.register(MAIN, "Me", &["--main"]);
    w.register(GROUP, "Family", &["--trigger", "always"]);
    // A tool the owner added to OpenCode: a second plugin in the workspace.
    std::fs::create_dir_all(w.workspace().join(".opencode/plugin")).unwrap();
    std::fs::write(
        w.workspace().join(".opencode/plugin/owner_tool.ts"),
        r#"export const OwnerTool = async () => ({
  tool: {
    owner_secret: {
      description: "Returns the owner's secret",
      args: {},
      async execute() {
        return "OWNER-SECRET-4711"
      },
    },
  },
})
"#,
    )
    .unwrap();
    w.model.on(
        of_chat("Family"),
        vec![
            Reply::tool_call("owner_secret", json!({})),
            Reply::text("family done"),
        ],
    );
    w.model.on(
        of_chat("Me"),
        vec![
            Reply::tool_call("owner_secret", json!({})),
            Reply::text("main done"),
        ],
    );
    w.start_bridge().await;
    w.say(GROUP, "G1", "tell me the secret").await;
    wait_text(&w, GROUP, "family done").await;
    w.say(MAIN, "M1", "tell me the secret").await;
    wait_text(&w, MAIN, "main done").await;

    let offered = |chat: &'static str| {
        w.agent_requests()
            .iter()
            .find(|r| of_chat(chat)(r))
            .unwrap_or_else(|| panic!("no request of {chat}"))
            .tool_names()
    };
    let guest = offered("Family");
    assert!(
        !guest.iter().any(|t| t == "owner_secret"),
        "the owner's tool was offered to a guest: {guest:?}"
    );
    for needed in ["read", "glob", "grep", "edit", "write", "bash", "webfetch"] {
        assert!(guest.iter().any(|t| t == needed), "{needed}: {guest:?}");
    }
    for tool in ["send_message", "schedule_task", "send_file"] {
        let name = format!("pocketbrain_{tool}");
        assert!(guest.contains(&name), "{name}: {guest:?}");
    }
    assert!(
        !guest.iter().any(|t| t == "task" || t == "skill"),
        "{guest:?}"
    );
    // The guest's call was refused; the owner's own chat still has the tool.
    let guest_results = tool_results_of(&w, "Family");
    assert!(!guest_results.is_empty(), "the guest's call got no answer");
    assert!(
        !guest_results
            .iter()
            .any(|t| t.contains("OWNER-SECRET-4711")),
        "{guest_results:?}"
    );
    assert!(
        offered("Me").iter().any(|t| t == "owner_secret"),
        "{:?}",
        offered("Me")
    );
    assert!(
        tool_results_of(&w, "Me")
            .iter()
            .any(|t| t.contains("OWNER-SECRET-4711")),
        "the main chat's call did not run"
    );
}

#[tokio::test]
async fn a_guest_cannot_write_git_or_opencode_files_in_its_own_folder() {
    let mut w = World::new().await;
    w.register(MAIN, "Me", &["--main"]);
    w.register(GROUP, "Family", &["--trigger", "always"]);
    let write = |path: &str, content: &str| {
        Reply::tool_call("write", json!({"filePath": path, "content": content}))
    };
    w.model.on(
        of_chat("Family"),
        vec![
            write(".git/config", "[core]\n\tfsmonitor = touch /tmp/owned\n"),
            write("sub/.git/HEAD", "ref: refs/heads/main\n"),
            write(
                ".opencode/plugin/x.ts",
                "export const X = async () => ({})\n",
            ),
            write("opencode.json", "{}\n"),
            write("notes/ok.md", "FINE\n"),
            Reply::text("family done"),
        ],
    );
    w.start_bridge().await;
    w.say(GROUP, "G1", "write some files").await;
    wait_text(&w, GROUP, "family done").await;

    let folder = w.workspace().join("chats/family");
    for refused in [
        ".git/config",
        "sub/.git/HEAD",
        ".opencode/plugin/x.ts",
        "opencode.json",
    ] {
        assert!(
            !folder.join(refused).exists(),
            "{refused} was written in the guest's folder"
        );
    }
    assert_eq!(
        std::fs::read_to_string(folder.join("notes/ok.md")).unwrap(),
        "FINE\n"
    );
    let results = tool_results_of(&w, "Family");
    let denied = results
        .iter()
        .filter(|t| t.contains("rule which prevents"))
        .count();
    assert_eq!(denied, 4, "{results:?}");
}

/// A guest's web fetch of the bridge's own port, of the cloud metadata
/// address and of a loopback address written as a number is refused by the
/// bridge, through OpenCode's real permission request, and the owner is not
/// asked.
#[tokio::test]
async fn a_guests_web_fetch_never_reaches_local_or_private_addresses() {
    let mut w = World::new().await;
    w.register(MAIN, "Me", &["--main"]);
    w.register(GROUP, "Family", &["--trigger", "always"]);
    w.start_bridge().await;
    let fetch = |url: String| Reply::tool_call("webfetch", json!({"url": url, "format": "text"}));
    let status = format!("{}/status", w.base_url());
    w.model.on(
        of_chat("Family"),
        vec![
            fetch(status),
            fetch("http://169.254.169.254/latest/meta-data/".into()),
            fetch("http://2130706433/".into()),
            Reply::text("fetch done"),
        ],
    );
    w.say(GROUP, "G1", "fetch some pages").await;
    wait_text(&w, GROUP, "fetch done").await;

    let results = tool_results_of(&w, "Family");
    let refused = results
        .iter()
        .filter(|t| t.contains("Private and local addresses are not reachable from this chat"))
        .count();
    assert_eq!(refused, 3, "{results:?}");
    let owner = w.outbox_texts(MAIN).await;
    assert!(
        !owner.iter().any(|t| t.contains("Approval needed")),
        "{owner:?}"
    );
}
