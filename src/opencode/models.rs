//! The model a prompt names, and OpenCode's model list as last read.

use std::path::Path;

use super::{MODELS_FRESH, OpenCode};
use crate::agent::RunSpec;
use crate::config::ModelRef;

impl OpenCode {
    /// The model a prompt names: the chat's own, else `PB_OPENCODE_MODEL`,
    /// else OpenCode's configured default (read once). Always named when
    /// known: OpenCode otherwise keeps the model a session used last, so a
    /// chat that went back to the default (`/model default`) would not.
    pub(super) async fn model_for(&self, spec: &RunSpec) -> Option<ModelRef> {
        if let Some(m) = spec.model.clone().or_else(|| self.model.clone()) {
            return Some(m);
        }
        self.models_cached(&spec.dir)
            .await?
            .default
            .and_then(|m| m.parse().ok())
    }

    /// OpenCode's models, read at most every [`MODELS_FRESH`] (so an
    /// OpenCode restarted with another default is seen within a minute);
    /// `None` when it cannot be read.
    pub(super) async fn models_cached(&self, dir: &Path) -> Option<crate::agent::Models> {
        let mut seen = self.models_seen.lock().await;
        if let Some((at, m)) = &*seen
            && at.elapsed() < MODELS_FRESH
        {
            return Some(m.clone());
        }
        let m = self.client.models(dir).await.ok()?;
        *seen = Some((tokio::time::Instant::now(), m.clone()));
        Some(m)
    }
}
