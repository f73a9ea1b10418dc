//! What keeps chats apart, end to end: the bridge refuses a workspace that
//! OpenCode would fold into one git project.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::*;

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
