//! One conversation turn over a batch of new messages.

use std::path::{Path, PathBuf};

use super::{RunError, Runner};
use crate::agent::{AgentError, RunSpec};
use crate::ids::{MessageId, SessionId};
use crate::media::{FilePart, image_part};
use crate::model::{MediaKind, RegisteredChat, StoredMessage};
use crate::prompt;

impl Runner {
    /// Sends the batch as one prompt and commits the answer. A failure
    /// leaves the cursor alone (the queue retries), unless this run's own
    /// tool calls already sent messages: then a retry would repeat them, and
    /// the run counts as done.
    pub(super) async fn converse(
        &self,
        reg: &RegisteredChat,
        dir: PathBuf,
        batch: &[StoredMessage],
        stored_session: Option<SessionId>,
        attempt: u32,
    ) -> Result<(), RunError> {
        let entered = std::time::Instant::now();
        crate::stage!("run_started", reg.jid);
        let (settings, store, chat) = (&self.ctx.settings, &self.ctx.store, &reg.jid);
        let (agent, channel) = (&self.ctx.agent, &self.ctx.channel);
        let up_to = batch.last().map(|m| m.seq).unwrap_or_default();
        let (batch, files) = self.prepare_media(&dir, batch).await?;
        let batch = &batch[..];
        let text = prompt::format_prompt(
            &prompt::ChatContext {
                name: &reg.name,
                jid: chat.as_str(),
                tz: settings.tz,
                now: chrono::Utc::now(),
            },
            batch,
        );
        let session = self.session_for(reg, &dir, stored_session).await?;
        crate::stage!("session_checked", chat);
        let prompt_id = agent.new_prompt_id();
        let ledger_mark = store
            .begin_run(chat, &session, &prompt_id, up_to, attempt)
            .await?;
        crate::stage!("run_recorded", chat);
        tracing::info!(chat = %chat, session = %session, prompt = %prompt_id, messages = batch.len(), attempt, "run started");
        crate::metrics::run_started("conversation");
        let started = std::time::Instant::now();
        let before_agent = started - entered;
        let spec_dir = dir.clone();
        let spec = RunSpec {
            dir,
            session: session.clone(),
            prompt_id,
            text,
            files,
            timeout: settings.run_timeout,
            agent: Some(crate::profiles::agent_name(reg.profile).to_owned()),
            model: self.chat_model(reg).await?,
            streamed: chat.is_api(),
        };
        // The person's newest message gets the acknowledgement, if one is set.
        let ack = settings
            .ack_reaction
            .as_deref()
            .zip(batch.iter().rev().find(|m| !m.from_me));
        if let Some((emoji, m)) = ack {
            channel.react(chat, &m.id, &m.sender, emoji).await;
        }
        // Typing is shown while the prompt goes out, not before it: on
        // WhatsApp it is a network round trip of its own.
        let ((), result) = tokio::join!(channel.set_typing(chat, true), agent.run(spec));
        channel.set_typing(chat, false).await;
        if let Some((_, m)) = ack {
            channel.react(chat, &m.id, &m.sender, "").await;
        }
        // A `/stop` mark is this run's alone: a finished answer that raced
        // it is still delivered.
        let stopped = self.ctx.stops.take(chat);
        let answer = match result {
            Ok(a) => a,
            Err(e) if stopped => {
                // `/stop`: the turn was ended on purpose; its messages count
                // as answered (nothing is retried) and the chat moves on.
                tracing::info!(chat = %chat, error = %e, "run stopped by /stop");
                store.complete_run(chat, up_to, None).await?;
                return Ok(());
            }
            Err(e) if store.tools_sent_since(&session, ledger_mark).await? => {
                tracing::warn!(chat = %chat, error = %e, "run failed after its tools sent messages; not retried");
                store.complete_run(chat, up_to, None).await?;
                return Ok(());
            }
            Err(AgentError::ModelRefused(why)) => {
                // Not the person's fault and not passing: tell them once,
                // and park the chat (its next message tries again).
                tracing::error!(chat = %chat, code = "opencode-model-refused", error = %why, "the model provider refused the run; fix the model settings (opencode.json)");
                let notice = format!(
                    "I can't answer right now: {why}. The owner needs to fix the model settings (opencode.json); your message is kept and answered when you write again."
                );
                if let Some(text) = settings.persona.reply(&notice) {
                    store
                        .enqueue_outbox(chat, &channel.new_message_id(), &text)
                        .await?;
                    self.ctx.outbox_wake.notify_one();
                }
                return Err(RunError::Agent(AgentError::ModelRefused(why)));
            }
            Err(AgentError::Run(why)) if context_too_long(&why) => {
                // The session outgrew the model: summarise it, and the
                // queue's retry runs the same messages on the summary.
                tracing::warn!(chat = %chat, error = %why, "the model's context window is full; compacting before the retry");
                self.compact_now(reg, &spec_dir, &session).await;
                return Err(RunError::Agent(AgentError::Run(why)));
            }
            Err(AgentError::SessionGone(_)) => {
                // Gone for good: forget it so the retry makes a new one.
                tracing::warn!(chat = %chat, session = %session, "OpenCode session is gone; a new one will be created");
                store.clear_session(chat).await?;
                return Err(RunError::Agent(AgentError::SessionGone(session)));
            }
            Err(e) => return Err(RunError::Agent(e)),
        };
        let answered = std::time::Instant::now();
        let sent = self.finish(chat, up_to, &answer).await?;
        crate::stage!("outbox_committed", chat);
        crate::metrics::bridge_latency(before_agent + answered.elapsed());
        crate::metrics::run_duration("conversation", entered.elapsed());
        tracing::info!(chat = %chat, ms = started.elapsed().as_millis() as u64, replied = sent, "run finished");
        let read: Vec<(MessageId, String)> = batch
            .iter()
            .map(|m| (m.id.clone(), m.sender.clone()))
            .collect();
        channel.mark_read(chat, &read).await;
        self.keep_sharp(reg, &spec_dir, &session).await;
        self.keep_memory_small(reg, &spec_dir).await;
        Ok(())
    }

    /// Readies the batch's media for the prompt: images become file parts
    /// (read from the chat's folder), voice notes and audio are
    /// transcribed (once: the transcript, or why there is none, is stored
    /// with the message). Runs in this chat's worker only, so a slow
    /// endpoint delays no other chat, and each call has a deadline.
    async fn prepare_media(
        &self,
        dir: &Path,
        batch: &[StoredMessage],
    ) -> Result<(Vec<StoredMessage>, Vec<FilePart>), RunError> {
        let mut out = batch.to_vec();
        let mut files = Vec::new();
        let limits = self.ctx.settings.media_limits;
        for m in &mut out {
            let seq = m.seq;
            let Some(info) = m.media.as_mut() else {
                continue;
            };
            let Some(path) = info.path.clone() else {
                continue;
            };
            match info.kind {
                MediaKind::Image | MediaKind::Sticker if info.note.is_none() => {
                    let (d, i, max) = (dir.to_owned(), info.clone(), limits.of(info.kind));
                    let part = tokio::task::spawn_blocking(move || image_part(&d, &i, max))
                        .await
                        .map_err(|e| std::io::Error::other(e.to_string()))?;
                    match part {
                        Ok(p) => files.push(p),
                        Err(e) => {
                            tracing::warn!(seq, error = %e, "saved image not attached");
                            info.note = Some(format!("could not attach the image: {e}"));
                        }
                    }
                }
                MediaKind::Voice | MediaKind::Audio
                    if info.transcript.is_none() && info.note.is_none() =>
                {
                    let Some(t) = self.ctx.transcriber.clone() else {
                        info.note = Some(
                            "not transcribed: no transcription service is configured (PB_TRANSCRIBE_URL); the file is at the path"
                                .into(),
                        );
                        continue;
                    };
                    let (d, max) = (dir.to_owned(), limits.of(info.kind));
                    let p = path.clone();
                    let bytes =
                        tokio::task::spawn_blocking(move || crate::media::read_in(&d, &p, max))
                            .await
                            .map_err(|e| std::io::Error::other(e.to_string()))?;
                    let name = path.rsplit('/').next().unwrap_or("audio").to_owned();
                    let result = match bytes {
                        Err(e) => Err(format!("cannot read the file: {e}")),
                        Ok(bytes) => {
                            match tokio::time::timeout(
                                t.timeout(),
                                t.transcribe(bytes, &info.mime, &name),
                            )
                            .await
                            {
                                Ok(Ok(text)) => Ok(text),
                                Ok(Err(e)) => Err(e.0),
                                Err(_) => {
                                    Err(format!("no answer within {} s", t.timeout().as_secs_f32()))
                                }
                            }
                        }
                    };
                    match result {
                        Ok(text) => {
                            tracing::info!(
                                seq,
                                chars = text.chars().count(),
                                "voice note transcribed"
                            );
                            info.transcript = Some(text);
                        }
                        Err(why) => {
                            tracing::warn!(seq, error = %why, "transcription failed; the message goes on with a note");
                            info.note = Some(format!(
                                "transcription failed: {why}; the file is at the path"
                            ));
                        }
                    }
                    self.ctx.store.set_media(seq, info.clone()).await?;
                }
                _ => {}
            }
        }
        Ok((out, files))
    }
}

/// Whether a model's refusal says the prompt is longer than its context
/// window (OpenAI, Anthropic and OpenAI-compatible servers' wordings).
fn context_too_long(why: &str) -> bool {
    let w = why.to_ascii_lowercase();
    [
        "context_length_exceeded",
        "maximum context length",
        "context window",
        "prompt is too long",
        "too many tokens",
        "context length",
    ]
    .iter()
    .any(|p| w.contains(p))
}

#[cfg(test)]
mod context_tests {
    #[test]
    fn context_length_refusals_are_recognised() {
        for why in [
            "This model's maximum context length is 8192 tokens",
            "Error: context_length_exceeded",
            "prompt is too long: 210000 tokens > 200000 maximum",
            "input exceeds the context window",
        ] {
            assert!(super::context_too_long(why), "{why}");
        }
        assert!(!super::context_too_long("rate limited, try again"));
    }
}
