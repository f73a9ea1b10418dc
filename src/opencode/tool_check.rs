//! Whether OpenCode offers PocketBrain's tools in a directory.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use super::OpenCode;

/// What [`OpenCode::check_tools`] found.
#[derive(Default)]
pub(super) struct ToolsSeen {
    pub(super) present: HashMap<PathBuf, u64>,
    pub(super) missing: BTreeSet<PathBuf>,
}

/// PocketBrain's tool ids (as OpenCode names them) that `ids` lacks.
pub fn missing_tools(ids: &[String]) -> Vec<String> {
    crate::tools::names()
        .map(|t| format!("pocketbrain_{t}"))
        .filter(|t| !ids.contains(t))
        .collect()
}

impl OpenCode {
    pub(super) fn tools_seen(&self) -> std::sync::MutexGuard<'_, ToolsSeen> {
        self.tools.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether OpenCode offers PocketBrain's tools in `dir`, asked once per
    /// directory and stream epoch while they are there, at every call while
    /// they are missing. Only a wrong answer raises `opencode-tools-missing`;
    /// a failed request is logged and asked again next time (the prompt
    /// that follows meets the same trouble and reports it).
    pub async fn check_tools(&self, dir: &Path) {
        let epoch = self.hub.epoch();
        if epoch != 0 && self.tools_seen().present.get(dir) == Some(&epoch) {
            return;
        }
        let ids = match self.note(self.client.tool_ids(dir).await) {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot list OpenCode's tools; checking again at the next run");
                return;
            }
        };
        let missing = missing_tools(&ids);
        let mut seen = self.tools_seen();
        if missing.is_empty() {
            if seen.missing.remove(dir) {
                tracing::info!(code = "opencode-tools-missing", dir = %dir.display(), "OpenCode offers the PocketBrain tools again");
            }
            seen.present.retain(|_, e| *e == epoch);
            if epoch != 0 {
                seen.present.insert(dir.to_owned(), epoch);
            }
        } else {
            seen.present.remove(dir);
            if seen.missing.insert(dir.to_owned()) {
                tracing::error!(
                    code = "opencode-tools-missing",
                    dir = %dir.display(),
                    missing = %missing.join(","),
                    "OpenCode did not load the PocketBrain plugin for this folder: the agent runs without its tools (see `pocketbrain doctor` and OpenCode's log)"
                );
            }
        }
    }
}
