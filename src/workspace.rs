//! The workspace OpenCode works in: one folder per registered chat under
//! `PB_WORKSPACE/chats/<folder>/`, each with the `AGENTS.md` memory file
//! OpenCode puts into the chat's system prompt.

use std::path::{Path, PathBuf};

use crate::ids::{ChatJid, Folder};
use crate::model::RegisteredChat;

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
    std::fs::create_dir_all(&dir)?;
    let memory = dir.join("AGENTS.md");
    if !memory.exists() {
        std::fs::write(&memory, agents_md(name, jid))?;
    }
    std::path::absolute(&dir)
}

/// A registered chat's OpenCode directory (absolute), created with its
/// memory file when missing.
pub fn chat_dir(workspace: &Path, reg: &RegisteredChat) -> std::io::Result<PathBuf> {
    ensure_chat_dir(workspace, &reg.folder, &reg.name, &reg.jid)
}

/// Writes a file the bridge owns into a folder the agent can write: through
/// a fresh temporary file (never an existing one, never through a symlink)
/// renamed over `path`, so a symlink planted at `path` is replaced, not
/// followed. Unchanged content is left alone.
pub fn write_owned_file(path: &Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let unchanged = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file())
        && std::fs::read_to_string(path).is_ok_and(|c| c == content);
    if unchanged {
        return Ok(());
    }
    let parent = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = parent.join(format!(".{name}.{}.pbtmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    f.write_all(content.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}
