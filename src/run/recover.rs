//! After a restart: reconciling a run the last process left in flight, and
//! queueing every chat that still has work.

use std::path::Path;

use super::{RunError, Runner};
use crate::agent::{Recovered, RunSpec};
use crate::ids::ChatJid;
use crate::model::{RegisteredChat, RunState};
use crate::queue::{ChatQueue, Wake};
use crate::store::{RunRecord, Store, tasks};

impl Runner {
    /// Reconciles a run left by a crash: an answer that exists is delivered
    /// (the prompt is not sent again); a prompt that never arrived or failed
    /// is dropped so the messages go into a fresh run.
    pub(super) async fn recover(
        &self,
        reg: &RegisteredChat,
        dir: &Path,
        run: RunRecord,
    ) -> Result<(), RunError> {
        let store = &self.ctx.store;
        let (Some(session), Some(prompt_id), Some(up_to)) =
            (run.session_id, run.prompt_id, run.up_to_seq)
        else {
            store.clear_run(&reg.jid).await?;
            return Ok(());
        };
        tracing::info!(chat = %reg.jid, session = %session, prompt = %prompt_id, "reconciling run left by the last process");
        let spec = RunSpec {
            dir: dir.to_owned(),
            session,
            prompt_id,
            text: String::new(),
            files: Vec::new(),
            timeout: self.ctx.settings.run_timeout,
            agent: Some(crate::profiles::agent_name(reg.profile).to_owned()),
            model: self.chat_model(reg).await?,
            streamed: reg.jid.is_api(),
        };
        match self.ctx.agent.recover(spec).await {
            Ok(Recovered::Answered(answer)) => {
                self.finish(&reg.jid, up_to, &answer).await?;
                tracing::info!(chat = %reg.jid, "recovered the answer of the interrupted run");
            }
            Ok(Recovered::NotSent) => store.clear_run(&reg.jid).await?,
            Err(e) => {
                tracing::warn!(chat = %reg.jid, error = %e, "interrupted run cannot be recovered; its messages will be sent again");
                store.clear_run(&reg.jid).await?;
            }
        }
        Ok(())
    }
}

/// Queues every chat that has work after a start: runs left in flight by a
/// crash, task runs waiting, and messages not yet answered. A chat parked
/// before the stop stays parked until its next message, unless that came
/// meanwhile. Returns how many chats were queued.
pub async fn resume_pending(store: &Store, queue: &ChatQueue) -> crate::store::Result<usize> {
    let mut chats = store.chats_with_pending().await?;
    for chat in store.call(|c| tasks::chats_with_open_runs(c)).await? {
        if !chats.contains(&chat) {
            chats.push(chat);
        }
    }
    let runs = store.runs().await?;
    for run in &runs {
        if run.state == RunState::Running && !chats.contains(&run.chat) {
            chats.push(run.chat.clone());
        }
    }
    for parked in restore_parked(store, queue).await? {
        chats.retain(|c| *c != parked);
    }
    for chat in &chats {
        queue.notify(chat, Wake::MoreWork);
    }
    Ok(chats.len())
}

/// Puts the chats parked before the stop back in the queue's parked state
/// (unless a message came meanwhile); returns them. Runs before `/health`
/// can be asked, and again (a no-op for chats the queue knows) in
/// [`resume_pending`].
pub async fn restore_parked(
    store: &Store,
    queue: &ChatQueue,
) -> crate::store::Result<Vec<ChatJid>> {
    let mut parked = Vec::new();
    for run in store.runs().await? {
        if run.state != RunState::Parked
            || store
                .has_message_after(&run.chat, run.up_to_seq.unwrap_or(0))
                .await?
        {
            continue;
        }
        let reason = run.reason.unwrap_or_default();
        tracing::info!(chat = %run.chat, %reason, "chat stays parked until its next message");
        queue.restore_parked(&run.chat, run.attempts.max(0) as u32, reason);
        parked.push(run.chat);
    }
    Ok(parked)
}
