//! Chat profiles as OpenCode agents: what a chat's agent may do.
//!
//! Each [`Profile`] is an agent definition (`pocketbrain-main`,
//! `pocketbrain-member`, `pocketbrain-guest`) written into the workspace's
//! `.opencode/opencode.json`, which OpenCode finds from every chat folder
//! below it. Every prompt names its chat's agent, so the rules hold on a
//! separately run OpenCode whose own config allows everything: an agent's
//! `permission` rules are applied after the server's.
//!
//! `member` and `guest` get an allow-list: `"*": "deny"` comes first, then
//! exactly the tools a chat needs. OpenCode (1.18.33) evaluates an agent's
//! rules after its own defaults and the server's `permission`, and the last
//! matching rule wins; a tool whose last matching rule is a `deny` for
//! every pattern is not even offered to the model. So any tool the owner
//! adds (an MCP server, a custom tool, another plugin) stays the owner's:
//! only the built-in read, search, edit and to-do tools, the PocketBrain
//! tools (`pocketbrain_*`), the web (a fetch asks the owner first, see
//! `crate::approvals`) and the shell (every command asks the owner) are
//! theirs.
//!
//! OpenCode treats the chat folder (the session's directory) as the
//! project: `external_directory` covers every path outside it (other chats,
//! the workspace root, the plugin, the bridge's data folder). `member` and
//! `guest` deny it outright. That holds only while the chat folder is its
//! own project: a git repository around the workspace would make the whole
//! repository every chat's project, so the bridge refuses to start there
//! (see `crate::workspace`). Inside its folder a chat may write anything
//! but `.git` (a repository's config runs commands for git) and
//! `.opencode/` or `opencode.json` (its own rules and plugins): OpenCode
//! matches `edit` patterns against the path relative to the project root,
//! with `*` matching across `/`, so the patterns cover these names at any
//! depth.

use std::path::Path;

use serde_json::{Value, json};

use crate::model::Profile;

/// The OpenCode agent a profile's prompts run with.
pub fn agent_name(profile: Profile) -> &'static str {
    match profile {
        Profile::Main => "pocketbrain-main",
        Profile::Member => "pocketbrain-member",
        Profile::Guest => "pocketbrain-guest",
    }
}

/// Which skills each profile's chats may load (`PB_SKILLS_MEMBER`,
/// `PB_SKILLS_GUEST`; the main chat may load every one).
#[derive(Debug, Clone)]
pub struct Skills {
    pub member: crate::memory::SkillPolicy,
    pub guest: crate::memory::SkillPolicy,
}

impl Default for Skills {
    /// None for members and guests.
    fn default() -> Self {
        Self {
            member: crate::memory::SkillPolicy::Named(Vec::new()),
            guest: crate::memory::SkillPolicy::Named(Vec::new()),
        }
    }
}

impl Skills {
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self {
            member: crate::memory::SkillPolicy::from_list(&config.skills_member),
            guest: crate::memory::SkillPolicy::from_list(&config.skills_guest),
        }
    }

    pub fn of(&self, profile: Profile) -> crate::memory::SkillPolicy {
        match profile {
            Profile::Main => crate::memory::SkillPolicy::All,
            Profile::Member => self.member.clone(),
            Profile::Guest => self.guest.clone(),
        }
    }
}

/// The permission rules of a profile's agent (OpenCode's `permission`
/// shape; for pattern objects the last matching pattern wins).
pub fn permissions(profile: Profile, skills: &Skills) -> Value {
    let mut rules = base_permissions(profile);
    rules["skill"] = skills.of(profile).permission();
    rules
}

fn base_permissions(profile: Profile) -> Value {
    match profile {
        // As OpenCode is configured (the managed one allows everything;
        // what it still asks, PB_PERMISSION answers): only the question
        // tool, which would wait on a person, is off.
        Profile::Main => json!({
            "question": "deny",
        }),
        // The object's keys are written in sorted order, so `"*"` (sorting
        // before every letter and dot) comes first, as it must: the last
        // matching rule wins.
        Profile::Member | Profile::Guest => json!({
            // Anything not named below: no tool the owner adds reaches a chat.
            "*": "deny",
            "read": "allow",
            "list": "allow",
            "glob": "allow",
            "grep": "allow",
            // Also `write` and `apply_patch`, which OpenCode checks as `edit`.
            "edit": edit_rules(),
            "todowrite": "allow",
            // `list` and `todoread` are tools of other OpenCode versions
            // (1.18.33 lists a folder with `read`).
            "todoread": "allow",
            // The bridge's own tools: messages, tasks, memory of this chat.
            "pocketbrain_*": "allow",
            // OpenCode's stand-in for a malformed tool call (it answers the
            // model with the error).
            "invalid": "allow",
            // The owner decides, in the main chat.
            "bash": "ask",
            "webfetch": "ask",
            "websearch": "allow",
            // Only the chat's own folder.
            "external_directory": "deny",
            // Denied by "*" already; named so that a reader sees it. A
            // subagent would run with another agent's rules; questions
            // wait on a person. (`skill` is set from the profile's skills.)
            "task": "deny",
            "question": "deny",
            "doom_loop": "deny",
        }),
    }
}

/// Names a chat may not write in its folder, at any depth.
const PROTECTED: [&str; 4] = [".git", ".opencode", "opencode.json", "opencode.jsonc"];

/// The `edit` rules of `member` and `guest`: anything in the chat's folder
/// (the folder itself is enforced by `external_directory`) but the
/// [`PROTECTED`] names and what is below them. Patterns are matched against
/// the path relative to OpenCode's project root (`*` matches across `/`).
fn edit_rules() -> Value {
    let mut rules = serde_json::Map::new();
    rules.insert("*".into(), json!("allow"));
    for name in PROTECTED {
        for pattern in [
            name.to_owned(),
            format!("{name}/*"),
            format!("*/{name}"),
            format!("*/{name}/*"),
        ] {
            rules.insert(pattern, json!("deny"));
        }
    }
    Value::Object(rules)
}

/// What the agent definitions say about themselves (OpenCode shows it).
fn description(profile: Profile) -> &'static str {
    match profile {
        Profile::Main => "PocketBrain: the owner's own chat",
        Profile::Member => {
            "PocketBrain: a direct chat; its own folder only, shell commands need the owner's approval"
        }
        Profile::Guest => {
            "PocketBrain: a group; its own folder only, shell commands need the owner's approval"
        }
    }
}

/// The workspace's OpenCode config: one agent per profile; the global
/// memory as instructions for every chat; the user's skills folder (see
/// [`crate::memory`]). Paths are absolute: OpenCode reads this file from
/// every chat folder below it.
pub fn workspace_config(workspace: &Path, skills: &Skills) -> Value {
    let agents: serde_json::Map<String, Value> = Profile::ALL
        .iter()
        .map(|&p| {
            (
                agent_name(p).to_owned(),
                json!({
                    "description": description(p),
                    "mode": "primary",
                    "permission": permissions(p, skills),
                }),
            )
        })
        .collect();
    json!({
        "$schema": "https://opencode.ai/config.json",
        "agent": agents,
        "instructions": [crate::memory::global_memory(workspace)],
        "skills": {"paths": [workspace.join(crate::memory::USER_SKILLS_DIR)]},
    })
}

/// The file the agent definitions live in.
pub const CONFIG_FILE: &str = ".opencode/opencode.json";

/// Writes the agent definitions into `workspace` (the bridge owns this file:
/// it is rewritten at every start, never through a planted symlink).
pub fn install(workspace: &Path, skills: &Skills) -> std::io::Result<()> {
    let content =
        serde_json::to_string_pretty(&workspace_config(workspace, skills)).expect("static json");
    crate::safe_dir::SafeDir::open_path(workspace, &[".opencode"])?
        .write("opencode.json", content.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_profile_is_an_agent_and_outsiders_are_fenced_in() {
        let c = workspace_config(Path::new("/ws"), &Skills::default());
        for p in Profile::ALL {
            let a = &c["agent"][agent_name(p)];
            assert_eq!(a["mode"], "primary", "{p}");
            assert_eq!(a["permission"]["question"], "deny", "{p}");
        }
        for p in [Profile::Member, Profile::Guest] {
            let perm = &c["agent"][agent_name(p)]["permission"];
            assert_eq!(perm["*"], "deny");
            assert_eq!(perm["external_directory"], "deny");
            assert_eq!(perm["bash"], "ask");
            assert_eq!(perm["webfetch"], "ask");
            assert_eq!(perm["task"], "deny");
            assert_eq!(perm["pocketbrain_*"], "allow");
            assert_eq!(perm["edit"]["*"], "allow");
        }
        // The owner's chat keeps OpenCode's own configuration.
        assert!(
            c["agent"]["pocketbrain-main"]["permission"]
                .get("external_directory")
                .is_none()
        );
    }

    /// OpenCode's pattern match (1.18.33, `Wildcard.match`): `*` is any
    /// run of characters, `/` included; `?` one character; the whole path.
    fn wildcard(path: &str, pattern: &str) -> bool {
        fn go(p: &[u8], s: &[u8]) -> bool {
            match p.split_first() {
                None => s.is_empty(),
                Some((b'*', rest)) => (0..=s.len()).any(|i| go(rest, &s[i..])),
                Some((b'?', rest)) => !s.is_empty() && go(rest, &s[1..]),
                Some((c, rest)) => s.first() == Some(c) && go(rest, &s[1..]),
            }
        }
        go(pattern.as_bytes(), path.as_bytes())
    }

    /// The action of the last rule matching `path` in an `edit` object, as
    /// OpenCode picks it.
    fn edit_action(path: &str) -> String {
        let text = serde_json::to_string(&edit_rules()).unwrap();
        // In written order, which is the order OpenCode reads.
        let rules: Vec<(String, String)> = text
            .trim_matches(|c| c == '{' || c == '}')
            .split(',')
            .map(|kv| {
                let (k, v) = kv.split_once(':').unwrap();
                (
                    k.trim_matches('"').to_owned(),
                    v.trim_matches('"').to_owned(),
                )
            })
            .collect();
        assert_eq!(rules[0], ("*".to_owned(), "allow".to_owned()));
        rules
            .iter()
            .rev()
            .find(|(pattern, _)| wildcard(path, pattern))
            .map(|(_, action)| action.clone())
            .unwrap()
    }

    #[test]
    fn a_chat_writes_its_files_but_not_git_or_opencode_config_at_any_depth() {
        // Paths relative to the project root: the chat folder itself, or
        // "/" (without the slash) when the workspace is not in a repository.
        for allowed in [
            "notes.md",
            "tmp/ws/chats/ann/notes.md",
            "tmp/ws/chats/ann/.gitignore",
            "tmp/ws/chats/ann/docs/git/x.md",
            "tmp/ws/chats/ann/AGENTS.md",
        ] {
            assert_eq!(edit_action(allowed), "allow", "{allowed}");
        }
        for denied in [
            ".git",
            ".git/config",
            "tmp/ws/chats/ann/.git",
            "tmp/ws/chats/ann/.git/config",
            "tmp/ws/chats/ann/sub/repo/.git/hooks/pre-commit",
            ".opencode/plugin/x.ts",
            "tmp/ws/chats/ann/.opencode/plugin/x.ts",
            "tmp/ws/chats/ann/.opencode",
            "opencode.json",
            "tmp/ws/chats/ann/opencode.json",
            "tmp/ws/chats/ann/deep/opencode.jsonc",
        ] {
            assert_eq!(edit_action(denied), "deny", "{denied}");
        }
    }

    #[test]
    fn the_deny_everything_rule_comes_first_in_the_written_config() {
        // OpenCode applies the last matching rule, in the order the file
        // lists them: a "*" after the allow-list would deny every tool.
        let skills = Skills {
            guest: crate::memory::SkillPolicy::Named(vec!["recipes".into()]),
            ..Skills::default()
        };
        let text = serde_json::to_string(&permissions(Profile::Guest, &skills)).unwrap();
        assert!(text.starts_with(r#"{"*":"deny","#), "{text}");
    }

    #[test]
    fn install_writes_the_config_and_replaces_a_planted_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside.txt");
        std::fs::write(&outside, "keep").unwrap();
        let ws = dir.path().join("ws");
        std::fs::create_dir_all(ws.join(".opencode")).unwrap();
        std::os::unix::fs::symlink(&outside, ws.join(CONFIG_FILE)).unwrap();
        install(&ws, &Skills::default()).unwrap();
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "keep");
        let written: Value =
            serde_json::from_str(&std::fs::read_to_string(ws.join(CONFIG_FILE)).unwrap()).unwrap();
        assert_eq!(written, workspace_config(&ws, &Skills::default()));
        assert_eq!(
            written["instructions"][0],
            ws.join("global/AGENTS.md").to_str().unwrap()
        );
        assert!(!ws.join(CONFIG_FILE).is_symlink());
    }
}
