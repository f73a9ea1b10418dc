//! The IPC folders: `requests/`, `responses/` and `failed/` under the root,
//! always opened through [`SafeDir`] (the agent can write there).

use std::path::PathBuf;

use crate::safe_dir::SafeDir;

/// The IPC folders.
#[derive(Debug, Clone)]
pub struct IpcDirs {
    pub root: PathBuf,
    pub requests: PathBuf,
    pub responses: PathBuf,
    pub failed: PathBuf,
}

/// The IPC folders, opened without following a symlink below the root
/// (the agent can write in the tool-call folder).
pub(super) struct OpenDirs {
    pub(super) requests: SafeDir,
    pub(super) responses: SafeDir,
    pub(super) failed: SafeDir,
}

impl IpcDirs {
    pub fn new(root: PathBuf) -> Self {
        Self {
            requests: root.join("requests"),
            responses: root.join("responses"),
            failed: root.join("failed"),
            root,
        }
    }

    pub fn create(&self) -> std::io::Result<()> {
        self.open().map(drop)
    }

    /// Opens (creating, or replacing a planted symlink) the three folders.
    pub(super) fn open(&self) -> std::io::Result<OpenDirs> {
        let root = SafeDir::open_root(&self.root)?;
        Ok(OpenDirs {
            requests: root.subdir("requests")?,
            responses: root.subdir("responses")?,
            failed: root.subdir("failed")?,
        })
    }
}
