//! Memory every chat shares, and skills.
//!
//! **Global memory** is `PB_WORKSPACE/global/AGENTS.md`. The workspace's
//! OpenCode config names it in `instructions` (see
//! [`crate::profiles::workspace_config`]), so OpenCode puts it into every
//! chat's system prompt beside the chat's own `AGENTS.md`, read again at
//! every turn: an edit counts from the next message. Only the main chat's
//! agent can write it: the folder is outside every chat folder, and
//! `member` and `guest` agents deny `external_directory`.
//!
//! **Skills** are folders with a `SKILL.md` (OpenCode's format: a name and
//! a description in front matter, instructions below). The ones shipped in
//! this repository's `skills/` are compiled in and written to
//! `PB_WORKSPACE/.opencode/skills/` at every start; the user's own live in
//! `PB_WORKSPACE/skills/`, which the config names in `skills.paths`, so
//! OpenCode reads them where they are. A profile's agent may load only the
//! skills its `skill` permission allows ([`SkillPolicy`]).

use std::path::{Path, PathBuf};

use crate::safe_dir::SafeDir;

/// The folder of the global memory, under the workspace.
pub const GLOBAL_DIR: &str = "global";
/// The user's own skills, under the workspace.
pub const USER_SKILLS_DIR: &str = "skills";

/// The skills shipped with PocketBrain: (name, SKILL.md).
pub const SHIPPED: &[(&str, &str)] = &[
    (
        "daily-briefing",
        include_str!("../skills/daily-briefing/SKILL.md"),
    ),
    (
        "memory-keeper",
        include_str!("../skills/memory-keeper/SKILL.md"),
    ),
];

/// The global memory file.
pub fn global_memory(workspace: &Path) -> PathBuf {
    workspace.join(GLOBAL_DIR).join("AGENTS.md")
}

/// What a new global memory file says.
const GLOBAL_TEMPLATE: &str = "# Global memory\n\n\
This file is read in every chat, before the chat's own AGENTS.md.\n\
Only the owner's own chat may change it. Keep here what every chat should\n\
know: who the owner is, how they like answers, standing rules.\n\n\
## Memory\n";

/// Creates the global memory file when missing (never through a planted
/// symlink) and writes the shipped skills; returns the global file's path.
pub fn install(workspace: &Path) -> std::io::Result<PathBuf> {
    let global = SafeDir::open_path(workspace, &[GLOBAL_DIR])?;
    match global.stat(std::ffi::OsStr::new("AGENTS.md"))? {
        Some(s) if s.kind == crate::safe_dir::Kind::File => {}
        found => {
            if found.is_some() {
                tracing::warn!(
                    "global/AGENTS.md was not a regular file (a planted symlink?); replaced"
                );
            }
            global.write("AGENTS.md", GLOBAL_TEMPLATE.as_bytes())?;
        }
    }
    SafeDir::open_path(workspace, &[USER_SKILLS_DIR])?;
    for (name, text) in SHIPPED {
        SafeDir::open_path(workspace, &[".opencode", "skills", name])?
            .write("SKILL.md", text.as_bytes())?;
    }
    Ok(global_memory(workspace))
}

/// Which skills a profile's chats may load: every one, none, or those named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkillPolicy {
    All,
    Named(Vec<String>),
}

impl SkillPolicy {
    /// From a setting's list: `*` is every skill; empty is none.
    pub fn from_list(list: &[String]) -> Self {
        if list.iter().any(|s| s == "*") {
            SkillPolicy::All
        } else {
            SkillPolicy::Named(list.to_vec())
        }
    }

    pub fn allows(&self, name: &str) -> bool {
        match self {
            SkillPolicy::All => true,
            SkillPolicy::Named(names) => names.iter().any(|n| n == name),
        }
    }

    /// The agent's `skill` permission: the last matching rule wins, so
    /// `*` comes first.
    pub fn permission(&self) -> serde_json::Value {
        match self {
            SkillPolicy::All => serde_json::json!("allow"),
            SkillPolicy::Named(names) if names.is_empty() => serde_json::json!("deny"),
            SkillPolicy::Named(names) => {
                let mut rules = serde_json::Map::new();
                rules.insert("*".into(), serde_json::json!("deny"));
                for n in names {
                    rules.insert(n.clone(), serde_json::json!("allow"));
                }
                serde_json::Value::Object(rules)
            }
        }
    }
}

/// A skill as `pocketbrain skills list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skill {
    pub name: String,
    pub description: String,
    /// `shipped` or `workspace`.
    pub source: &'static str,
}

/// The skills OpenCode finds: shipped ones, then the user's (a user skill
/// with a shipped one's name is listed as the user's).
pub fn list(workspace: &Path) -> Vec<Skill> {
    let mut out: Vec<Skill> = Vec::new();
    let dir = workspace.join(USER_SKILLS_DIR);
    let mut user: Vec<Skill> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let text = std::fs::read_to_string(e.path().join("SKILL.md")).ok()?;
            let (name, description) = front_matter(&text);
            Some(Skill {
                name: name.unwrap_or_else(|| e.file_name().to_string_lossy().into_owned()),
                description: description.unwrap_or_default(),
                source: "workspace",
            })
        })
        .collect();
    user.sort_by(|a, b| a.name.cmp(&b.name));
    for (name, text) in SHIPPED {
        if user.iter().any(|u| u.name == *name) {
            continue;
        }
        let (_, description) = front_matter(text);
        out.push(Skill {
            name: (*name).to_owned(),
            description: description.unwrap_or_default(),
            source: "shipped",
        });
    }
    out.extend(user);
    out
}

/// `name` and `description` from a SKILL.md's front matter.
fn front_matter(text: &str) -> (Option<String>, Option<String>) {
    let Some(rest) = text.strip_prefix("---") else {
        return (None, None);
    };
    let block = rest.split("\n---").next().unwrap_or_default();
    let field = |key: &str| {
        block.lines().find_map(|l| {
            l.strip_prefix(key)
                .and_then(|v| v.strip_prefix(':'))
                .map(|v| v.trim().trim_matches('"').to_owned())
        })
    };
    (field("name"), field("description"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_skills_have_their_names_and_descriptions() {
        for (name, text) in SHIPPED {
            let (n, d) = front_matter(text);
            assert_eq!(n.as_deref(), Some(*name));
            assert!(d.is_some_and(|d| d.len() > 20), "{name}");
        }
    }

    #[test]
    fn install_writes_global_memory_once_and_the_shipped_skills() {
        let tmp = tempfile::tempdir().unwrap();
        let ws = tmp.path();
        let g = install(ws).unwrap();
        assert!(
            std::fs::read_to_string(&g)
                .unwrap()
                .starts_with("# Global memory")
        );
        std::fs::write(&g, "mine").unwrap();
        install(ws).unwrap();
        assert_eq!(std::fs::read_to_string(&g).unwrap(), "mine", "kept");
        assert!(ws.join(".opencode/skills/memory-keeper/SKILL.md").is_file());
        std::fs::create_dir_all(ws.join("skills/recipes")).unwrap();
        std::fs::write(
            ws.join("skills/recipes/SKILL.md"),
            "---\nname: recipes\ndescription: Cook things\n---\nSteps.\n",
        )
        .unwrap();
        let names: Vec<(String, &str)> = list(ws).into_iter().map(|s| (s.name, s.source)).collect();
        assert_eq!(
            names,
            [
                ("daily-briefing".to_owned(), "shipped"),
                ("memory-keeper".to_owned(), "shipped"),
                ("recipes".to_owned(), "workspace"),
            ]
        );
    }

    #[test]
    fn a_policy_becomes_a_skill_permission() {
        assert_eq!(SkillPolicy::from_list(&["*".into()]), SkillPolicy::All);
        assert_eq!(SkillPolicy::from_list(&[]).permission(), "deny");
        let p = SkillPolicy::from_list(&["recipes".into()]);
        assert!(p.allows("recipes") && !p.allows("other"));
        assert_eq!(
            p.permission(),
            serde_json::json!({"*": "deny", "recipes": "allow"})
        );
    }
}
