//! The approvals' upkeep: expiring what was not answered in time, and
//! comparing the pending requests with OpenCode's after a restart or a
//! reopened event stream.

use super::*;

impl Approvals {
    /// Rejects what was not answered in time; sleeps until the next expiry.
    pub(super) async fn expire_loop(self, cancel: CancellationToken) {
        loop {
            let wait = match self.expire_due().await {
                Ok(Some(next_ms)) => Duration::from_millis((next_ms - now_ms()).max(0) as u64),
                Ok(None) => Duration::from_secs(24 * 3600),
                Err(e) => {
                    tracing::warn!(error = %e, "expiring approvals failed; trying again in a minute");
                    Duration::from_secs(60)
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = self.inner.changed.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Expires the overdue pending requests; the next expiry, if any.
    async fn expire_due(&self) -> Result<Option<i64>> {
        let pending = self.inner.store.pending_approvals().await?;
        let now = now_ms();
        let mut next = None::<i64>;
        for a in pending {
            if a.expires_at > now {
                next = Some(next.map_or(a.expires_at, |n| n.min(a.expires_at)));
                continue;
            }
            if !self
                .inner
                .store
                .settle_approval(a.id, ApprovalState::Expired, vec![])
                .await?
            {
                continue;
            }
            tracing::info!(code = %a.code, chat = %a.chat, "approval not answered in time; rejected");
            crate::metrics::approval("expired");
            let dir = std::path::PathBuf::from(&a.directory);
            if let Err(e) = self
                .inner
                .agent
                .answer_permission(
                    &dir,
                    &a.request_id,
                    PermissionReply::Reject,
                    Some("The owner did not approve in time."),
                )
                .await
            {
                tracing::warn!(code = %a.code, error = %e, "OpenCode did not take the rejection (the request may be gone)");
            }
            if let Some(main) = self.inner.store.main_chat().await? {
                self.send(
                    &main,
                    &format!(
                        "Request {} was not answered in time and is refused.",
                        a.code
                    ),
                )
                .await?;
            }
        }
        Ok(next)
    }

    /// Compares the pending requests with OpenCode's: closes those it no
    /// longer has, asks those that were missed.
    pub async fn resync(&self) -> Result<()> {
        let store = &self.inner.store;
        let pending = store.pending_approvals().await?;
        let mut dirs: Vec<std::path::PathBuf> = pending
            .iter()
            .map(|a| std::path::PathBuf::from(&a.directory))
            .collect();
        // Only where a run is in flight can a request wait (reading an idle
        // chat's list would boot its OpenCode instance for nothing).
        let mut busy: Vec<ChatJid> = store
            .runs()
            .await?
            .into_iter()
            .filter(|r| r.state == crate::model::RunState::Running)
            .map(|r| r.chat)
            .collect();
        busy.extend(
            store
                .call(|c| crate::store::tasks::chats_with_open_runs(c))
                .await?,
        );
        for chat in busy {
            if let Some(r) = store.registered(&chat).await? {
                dirs.push(
                    self.inner
                        .settings
                        .workspace
                        .join("chats")
                        .join(r.folder.as_str()),
                );
            }
        }
        dirs.sort();
        dirs.dedup();
        let mut open = std::collections::HashSet::new();
        let mut asks = Vec::new();
        for dir in dirs.iter().filter(|d| d.is_dir()) {
            let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.clone());
            for ask in self.inner.agent.pending_permissions(&dir).await? {
                open.insert(ask.id.clone());
                asks.push(ask);
            }
        }
        for a in pending {
            if !open.contains(&a.request_id)
                && store
                    .settle_approval(a.id, ApprovalState::Gone, vec![])
                    .await?
            {
                tracing::info!(code = %a.code, chat = %a.chat, "OpenCode no longer has the request (it restarted); closed");
            }
        }
        for ask in asks {
            self.on_ask(ask).await?;
        }
        Ok(())
    }
}
