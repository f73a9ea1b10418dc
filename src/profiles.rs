//! Chat profiles as OpenCode agents: what a chat's agent may do.
//!
//! Each [`Profile`] is an agent definition (`pocketbrain-main`,
//! `pocketbrain-member`, `pocketbrain-guest`) written into the workspace's
//! `.opencode/opencode.json`, which OpenCode finds from every chat folder
//! below it. Every prompt names its chat's agent, so the rules hold on a
//! separately run OpenCode whose own config allows everything: an agent's
//! `permission` rules are applied after the server's.
//!
//! OpenCode treats the chat folder (the session's directory) as the
//! project: `external_directory` covers every path outside it (other chats,
//! the workspace root, the plugin, the bridge's data folder). `member` and
//! `guest` deny it outright; their shell commands ask the owner (see
//! `crate::approvals`). A chat's own `.opencode/` and `opencode.json` would
//! let its agent rewrite its own rules, so editing them is denied too.

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

/// The permission rules of a profile's agent (OpenCode's `permission`
/// shape; for pattern objects the last matching pattern wins).
pub fn permissions(profile: Profile) -> Value {
    match profile {
        // As OpenCode is configured (the managed one allows everything;
        // what it still asks, PB_PERMISSION answers): only the question
        // tool, which would wait on a person, is off.
        Profile::Main => json!({
            "question": "deny",
        }),
        Profile::Member | Profile::Guest => json!({
            "*": "allow",
            // Only the chat's own folder.
            "external_directory": "deny",
            // Its own rules and plugins are not its to write.
            "edit": {
                "*": "allow",
                "*.opencode*": "deny",
                "*opencode.json*": "deny",
            },
            // The owner decides, in the main chat.
            "bash": "ask",
            // A subagent would run with another agent's rules; skills and
            // questions reach outside the chat.
            "task": "deny",
            "skill": "deny",
            "question": "deny",
            "doom_loop": "deny",
            // The web, read-only.
            "webfetch": "allow",
            "websearch": "allow",
        }),
    }
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

/// The workspace's OpenCode config: one agent per profile.
pub fn workspace_config() -> Value {
    let agents: serde_json::Map<String, Value> = Profile::ALL
        .iter()
        .map(|&p| {
            (
                agent_name(p).to_owned(),
                json!({
                    "description": description(p),
                    "mode": "primary",
                    "permission": permissions(p),
                }),
            )
        })
        .collect();
    json!({
        "$schema": "https://opencode.ai/config.json",
        "agent": agents,
    })
}

/// The file the agent definitions live in.
pub const CONFIG_FILE: &str = ".opencode/opencode.json";

/// Writes the agent definitions into `workspace` (the bridge owns this file:
/// it is rewritten at every start, never through a planted symlink).
pub fn install(workspace: &Path) -> std::io::Result<()> {
    let content = serde_json::to_string_pretty(&workspace_config()).expect("static json");
    crate::safe_dir::SafeDir::open_path(workspace, &[".opencode"])?
        .write("opencode.json", content.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_profile_is_an_agent_and_outsiders_are_fenced_in() {
        let c = workspace_config();
        for p in Profile::ALL {
            let a = &c["agent"][agent_name(p)];
            assert_eq!(a["mode"], "primary", "{p}");
            assert_eq!(a["permission"]["question"], "deny", "{p}");
        }
        for p in [Profile::Member, Profile::Guest] {
            let perm = &c["agent"][agent_name(p)]["permission"];
            assert_eq!(perm["external_directory"], "deny");
            assert_eq!(perm["bash"], "ask");
            assert_eq!(perm["task"], "deny");
            assert_eq!(perm["edit"]["*.opencode*"], "deny");
        }
        // The owner's chat keeps OpenCode's own configuration.
        assert!(
            c["agent"]["pocketbrain-main"]["permission"]
                .get("external_directory")
                .is_none()
        );
    }

    #[test]
    fn install_writes_the_config_and_replaces_a_planted_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside.txt");
        std::fs::write(&outside, "keep").unwrap();
        let ws = dir.path().join("ws");
        std::fs::create_dir_all(ws.join(".opencode")).unwrap();
        std::os::unix::fs::symlink(&outside, ws.join(CONFIG_FILE)).unwrap();
        install(&ws).unwrap();
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "keep");
        let written: Value =
            serde_json::from_str(&std::fs::read_to_string(ws.join(CONFIG_FILE)).unwrap()).unwrap();
        assert_eq!(written, workspace_config());
        assert!(!ws.join(CONFIG_FILE).is_symlink());
    }
}
