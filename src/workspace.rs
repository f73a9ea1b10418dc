//! The workspace OpenCode works in: one folder per registered chat under
//! `PB_WORKSPACE/chats/<folder>/`, each with the `AGENTS.md` memory file
//! OpenCode puts into the chat's system prompt.
//!
//! The agent can write here, so the bridge's own writes go through
//! [`SafeDir`]: a symlink planted as `chats/`, as a chat folder or as
//! `AGENTS.md` is replaced, never followed; removing a purged chat's folder
//! ([`remove_chat_dir`]) removes links as links, never what they point to.
//!
//! Chats are kept apart by OpenCode's `external_directory` rule, and that
//! rule only holds while a chat folder is its own project. OpenCode looks
//! for a `.git` (folder or file) from the session's directory upwards, and
//! when it finds one it takes that repository's work tree as the project
//! of every folder inside it: then every chat's folder, the workspace
//! root and the plugin count as inside the project and no rule asks.
//! [`enclosing_git`] finds such a `.git`, and the bridge refuses to start
//! on a workspace inside a repository (`doctor` reports the same).

use std::path::{Path, PathBuf};

use crate::ids::{ChatJid, Folder};
use crate::model::RegisteredChat;
use crate::safe_dir::{Kind, ReadError, SafeDir};

/// The memory file a registered chat starts with.
pub fn agents_md(name: &str, jid: &ChatJid) -> String {
    format!(
        "# {name}\n\n\
         You are the assistant in the WhatsApp chat \"{name}\" ({jid}).\n\
         This folder is yours for this chat: keep notes and files here.\n\
         Write what you should remember about this chat (people, preferences,\n\
         ongoing topics) into this file; it is read at the start of every run.\n\
         Text inside <internal>...</internal> is never sent to the chat.\n\n\
         ## Memory\n"
    )
}

/// Creates a chat's folder and its `AGENTS.md` when missing.
pub fn ensure_chat_dir(
    workspace: &Path,
    folder: &Folder,
    name: &str,
    jid: &ChatJid,
) -> std::io::Result<PathBuf> {
    let dir = workspace.join("chats").join(folder.as_str());
    let safe = SafeDir::open_path(workspace, &["chats", folder.as_str()])?;
    let memory = std::ffi::OsStr::new("AGENTS.md");
    match safe.stat(memory)? {
        Some(s) if s.kind == Kind::File => {}
        found => {
            if found.is_some() {
                tracing::warn!(folder = %folder.as_str(), "AGENTS.md was not a regular file (a planted symlink?); replaced");
            }
            safe.write("AGENTS.md", agents_md(name, jid).as_bytes())?;
        }
    }
    std::path::absolute(&dir)
}

/// A registered chat's OpenCode directory (absolute), created with its
/// memory file when missing.
pub fn chat_dir(workspace: &Path, reg: &RegisteredChat) -> std::io::Result<PathBuf> {
    ensure_chat_dir(workspace, &reg.folder, &reg.name, &reg.jid)
}

/// Removes a chat's folder (`<workspace>/chats/<folder>`) and everything
/// in it, without following any symlink: a chat folder, or anything in it,
/// that is a link to somewhere else is removed as the link, and what it
/// points to is untouched; a `chats` that is not a real folder is left
/// alone (logged). Returns whether there was a folder.
pub fn remove_chat_dir(workspace: &Path, folder: &Folder) -> std::io::Result<bool> {
    let chats = match SafeDir::open_root(workspace)?.descend("chats") {
        Ok(dir) => dir,
        Err(ReadError::NotFound) => return Ok(false),
        Err(ReadError::Io(e)) => return Err(e),
        Err(e) => {
            tracing::warn!(folder = %folder.as_str(), error = %e, "the workspace's chats folder is not a real folder (a planted symlink?); nothing removed through it");
            return Ok(false);
        }
    };
    let name = std::ffi::OsStr::new(folder.as_str());
    let existed = chats.stat(name)?.is_some();
    chats.remove_tree(name)?;
    Ok(existed)
}

/// What is wrong with a workspace inside the repository of `git`, as the
/// start-up error and `doctor` say it.
pub fn inside_git(workspace: &Path, git: &Path) -> String {
    format!(
        "the workspace {} is inside the git repository {} ({} found): OpenCode would take that repository as every chat's project, and chats could read each other's folders",
        workspace.display(),
        git.parent().unwrap_or(git).display(),
        git.display()
    )
}

/// How to mend [`inside_git`].
pub const INSIDE_GIT_FIX: &str =
    "move the workspace out of the repository, or set PB_WORKSPACE to a folder outside it";

/// The `.git` (a folder or a file) that would make OpenCode treat the
/// workspace as part of a git repository: one in `chats/`, in the workspace
/// or in any folder above it, along the absolute path as given and along
/// the path with symlinks resolved (OpenCode may see either).
///
/// Any `.git` counts, even one git itself would reject: it is cheaper to
/// move a workspace than to prove a stray `.git` harmless.
pub fn enclosing_git(workspace: &Path) -> Option<PathBuf> {
    let absolute = std::path::absolute(workspace).unwrap_or_else(|_| workspace.to_path_buf());
    let mut chats = vec![absolute.join("chats")];
    if let Ok(real) = std::fs::canonicalize(&absolute)
        && real != absolute
    {
        chats.push(real.join("chats"));
    }
    chats
        .iter()
        .flat_map(|chats| chats.ancestors())
        .map(|dir| dir.join(".git"))
        .find(|git| git.symlink_metadata().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_planted_agents_md_symlink_is_replaced_and_its_target_untouched() {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("device.sqlite3");
        std::fs::write(&outside, "keys").unwrap();
        let ws = t.path().join("ws");
        std::fs::create_dir_all(ws.join("chats/ann")).unwrap();
        std::os::unix::fs::symlink(&outside, ws.join("chats/ann/AGENTS.md")).unwrap();
        let jid = ChatJid::parse("491511111111@s.whatsapp.net").unwrap();
        let folder = Folder::parse("ann").unwrap();
        ensure_chat_dir(&ws, &folder, "Ann", &jid).unwrap();
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "keys");
        let memory = ws.join("chats/ann/AGENTS.md");
        assert!(!memory.is_symlink());
        assert!(std::fs::read_to_string(&memory).unwrap().contains("Ann"));
        // An existing memory file is kept as it is.
        std::fs::write(&memory, "my notes").unwrap();
        ensure_chat_dir(&ws, &folder, "Ann", &jid).unwrap();
        assert_eq!(std::fs::read_to_string(&memory).unwrap(), "my notes");
    }

    #[test]
    fn removing_a_chat_folder_never_follows_a_symlink_out_of_the_workspace() {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside");
        std::fs::create_dir_all(outside.join("deep")).unwrap();
        std::fs::write(outside.join("keep.txt"), "mine").unwrap();
        std::fs::write(outside.join("deep/keep.txt"), "mine too").unwrap();
        let ws = t.path().join("ws");
        let link = |target: &Path, at: &str| {
            std::os::unix::fs::symlink(target, ws.join(at)).unwrap();
        };

        // Links inside a real chat folder: removed as links.
        std::fs::create_dir_all(ws.join("chats/ann/media")).unwrap();
        std::fs::write(ws.join("chats/ann/media/a.png"), "png").unwrap();
        link(&outside, "chats/ann/media/elsewhere");
        link(&outside.join("keep.txt"), "chats/ann/notes.txt");
        assert!(remove_chat_dir(&ws, &Folder::parse("ann").unwrap()).unwrap());
        assert!(!ws.join("chats/ann").exists());

        // A chat folder that is itself a link: the link goes.
        link(&outside, "chats/bob");
        assert!(remove_chat_dir(&ws, &Folder::parse("bob").unwrap()).unwrap());
        assert!(std::fs::symlink_metadata(ws.join("chats/bob")).is_err());

        // `chats` itself a link: nothing is removed through it.
        std::fs::remove_dir_all(ws.join("chats")).unwrap();
        std::fs::create_dir_all(t.path().join("other/deep")).unwrap();
        link(&t.path().join("other"), "chats");
        assert!(!remove_chat_dir(&ws, &Folder::parse("deep").unwrap()).unwrap());
        assert!(t.path().join("other/deep").is_dir());

        assert_eq!(
            std::fs::read_to_string(outside.join("keep.txt")).unwrap(),
            "mine"
        );
        assert_eq!(
            std::fs::read_to_string(outside.join("deep/keep.txt")).unwrap(),
            "mine too"
        );
        // Gone already is fine.
        assert!(!remove_chat_dir(&ws, &Folder::parse("cat").unwrap()).unwrap());
    }

    #[test]
    fn a_git_repository_around_the_workspace_is_found_wherever_it_sits() {
        let t = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(t.path()).unwrap();
        let ws = root.join("outer/ws");
        std::fs::create_dir_all(ws.join("chats/ann")).unwrap();
        assert_eq!(enclosing_git(&ws), None);
        // A chat's own repository does not widen anything.
        std::fs::create_dir_all(ws.join("chats/ann/.git")).unwrap();
        assert_eq!(enclosing_git(&ws), None);
        for git in ["outer/.git", "outer/ws/.git", "outer/ws/chats/.git"] {
            let git = root.join(git);
            // A worktree's `.git` is a file.
            std::fs::write(&git, "gitdir: /elsewhere\n").unwrap();
            assert_eq!(enclosing_git(&ws), Some(git.clone()));
            std::fs::remove_file(&git).unwrap();
        }
        std::fs::create_dir(root.join("outer/.git")).unwrap();
        assert_eq!(enclosing_git(&ws), Some(root.join("outer/.git")));
        // Reached through a symlink from outside the repository.
        let link = root.join("link");
        std::os::unix::fs::symlink(&ws, &link).unwrap();
        assert_eq!(enclosing_git(&link), Some(root.join("outer/.git")));
    }
}
