//! A run: the prompt sent, then followed on the event stream and the
//! transcript until it is answered, fails or times out.

use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;

use super::client::{self, Prompted, TranscriptMessage, error_message};
use super::events::HubEvent;
use super::streamed::StreamedAnswer;
use super::{OpenCode, TAIL};
use crate::agent::{AgentError, RunSpec};

/// How often a waiting run checks the transcript even without events.
const RECONCILE_EVERY: Duration = Duration::from_secs(15);
/// How long a streamed run ([`RunSpec::streamed`]) whose answer the prompt
/// call returned waits for the event stream to show it too.
const STREAM_CATCH_UP: Duration = Duration::from_secs(3);

impl OpenCode {
    /// Where the run stands, from the transcript: its newest messages
    /// first (a run's prompt and answers are at its end, and a chat's
    /// transcript grows for as long as the chat lives), the whole of it
    /// only when the prompt is not among them.
    pub(super) async fn check(&self, spec: &RunSpec) -> Result<Progress, AgentError> {
        let (dir, session) = (&spec.dir, &spec.session);
        let tail = self.note(self.client.messages(dir, session, Some(TAIL)).await)?;
        if tail_holds_the_run(&tail, TAIL, spec.prompt_id.as_str()) {
            return Ok(progress(&tail, spec.prompt_id.as_str()));
        }
        let transcript = self.note(self.client.messages(dir, session, None).await)?;
        Ok(progress(&transcript, spec.prompt_id.as_str()))
    }

    /// Sends the prompt with OpenCode's blocking call and waits for its
    /// answer: from that call, or from the event stream and transcript,
    /// whichever shows it first. The call runs in a task of its own, so a
    /// run that ends by the stream never cuts it off in OpenCode.
    pub(super) async fn prompt_and_follow(&self, spec: &RunSpec) -> Result<String, AgentError> {
        let rx = self.hub.subscribe();
        let client = self.client.clone();
        let (dir, session, prompt_id) = (
            spec.dir.clone(),
            spec.session.clone(),
            spec.prompt_id.clone(),
        );
        let parts = client::Client::prompt_parts(&spec.text, &spec.files);
        let model = self.model_for(spec).await;
        let agent = spec.agent.clone();
        // The run's deadline aborts the turn, which ends the call; this
        // bound is only for a call OpenCode never ends.
        let timeout = spec.timeout + Duration::from_secs(60);
        let (tx, answer) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let prompted = client
                .prompt(
                    &dir,
                    &session,
                    &prompt_id,
                    parts,
                    model.as_ref(),
                    agent.as_deref(),
                    timeout,
                )
                .await;
            let _ = tx.send(prompted);
        });
        crate::stage!("prompt_sent", spec.session);
        self.follow(spec, rx, Some(answer)).await
    }

    /// Waits for the run of `spec.prompt_id` to finish. `rx` must have been
    /// subscribed before the prompt was sent; `answer` is the blocking
    /// prompt call's outcome, when this run made one.
    pub(super) async fn follow(
        &self,
        spec: &RunSpec,
        mut rx: tokio::sync::broadcast::Receiver<HubEvent>,
        mut answer: Option<tokio::sync::oneshot::Receiver<Prompted>>,
    ) -> Result<String, AgentError> {
        let deadline = tokio::time::Instant::now() + spec.timeout;
        let session = spec.session.as_str();
        let mut seen_user = false;
        // Timer checks that found the answer unfinished while OpenCode said
        // the session was idle: twice in a row means nobody works on it.
        let mut stalled = 0;
        let mut tick = tokio::time::interval_at(
            tokio::time::Instant::now() + RECONCILE_EVERY,
            RECONCILE_EVERY,
        );
        // After an idle whose transcript did not yet show the end (OpenCode
        // can announce idle before the failed message is written), look again soon.
        let mut recheck: Option<tokio::time::Instant> = None;
        // The answer's text as the stream shows it, and the answer once
        // the stream showed all of it.
        let mut streamed = StreamedAnswer::default();
        let mut ready: Option<String> = None;
        // The prompt call ended without an answer (why): a transcript
        // without the prompt then means it never got there.
        let mut call_ended: Option<String> = None;
        // A streamed run's answer as the call returned it, and until when
        // it waits for the stream.
        let mut returned: Option<(String, tokio::time::Instant)> = None;
        // The answer the stream showed finished before it showed all its
        // text: a streamed run waits for the rest (its deltas) too.
        let mut answer_id: Option<String> = None;
        loop {
            let mut from_timer = false;
            let should_check = tokio::select! {
                prompted = async { answer.as_mut().unwrap().await }, if answer.is_some() => {
                    answer = None;
                    match prompted {
                        Ok(Prompted::Answer(m)) => {
                            let text = answered_text(&m, spec.prompt_id.as_str());
                            if text.is_some() {
                                self.keep_answer(&spec.session, super::agent::turn_info(&m.info));
                            }
                            match text {
                                Some(text) if !spec.streamed => {
                                    crate::stage!("answer_returned", spec.session);
                                    return Ok(text);
                                }
                                Some(text) => {
                                    returned = Some((text, tokio::time::Instant::now() + STREAM_CATCH_UP));
                                    false
                                }
                                // Failed, or stopped on a refused tool: the transcript decides.
                                None => true,
                            }
                        }
                        Ok(Prompted::Refused(e)) => return self.note(Err(e)),
                        Ok(Prompted::Ended(why)) => {
                            tracing::debug!(session, prompt = %spec.prompt_id, %why, "prompt call ended without an answer; following the transcript");
                            call_ended = Some(why);
                            true
                        }
                        // The call's task is gone (the runtime is stopping).
                        Err(_) => true,
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(session, prompt = %spec.prompt_id, "run timed out; aborting");
                    if let Err(e) = self.client.abort(&spec.dir, &spec.session).await {
                        tracing::warn!(session, error = %e, "abort failed");
                    }
                    return Err(AgentError::Timeout(spec.timeout));
                }
                _ = async { tokio::time::sleep_until(returned.as_ref().unwrap().1).await }, if returned.is_some() => {
                    tracing::debug!(session, prompt = %spec.prompt_id, "the stream did not show the returned answer in time");
                    crate::stage!("answer_returned", spec.session);
                    return Ok(returned.take().unwrap().0);
                }
                _ = tick.tick() => {
                    from_timer = true;
                    true
                }
                _ = async { tokio::time::sleep_until(recheck.unwrap()).await }, if recheck.is_some() => {
                    recheck = None;
                    true
                }
                ev = rx.recv() => match ev {
                    Ok(HubEvent::Reconnected) | Err(RecvError::Lagged(_)) => {
                        streamed.missed();
                        true
                    }
                    Err(RecvError::Closed) => return Err(AgentError::Unreachable("event hub stopped".into())),
                    Ok(HubEvent::Event(ev)) if ev.kind == "message.part.updated" => {
                        streamed.observe(session, &ev.properties);
                        if returned.is_some() && let Some(id) = &answer_id {
                            ready = streamed.text_of(id);
                        }
                        false
                    }
                    Ok(HubEvent::Event(ev)) if ev.session_id() == Some(session) => match ev.kind.as_str() {
                        "message.updated" => {
                            let info = &ev.properties["info"];
                            if info["id"].as_str() == Some(spec.prompt_id.as_str()) {
                                seen_user = true;
                            }
                            let ours = info["role"] == "assistant"
                                && info["parentID"].as_str() == Some(spec.prompt_id.as_str());
                            let completed = !info["time"]["completed"].is_null();
                            let errored = !info["error"].is_null();
                            // The turn's last answer is written: read it now
                            // rather than after OpenCode's idle, which comes
                            // later. (A failed one waits for the idle:
                            // OpenCode may still retry it.)
                            let answered = ours
                                && completed
                                && !errored
                                && info["finish"].as_str().is_some_and(|f| f != "tool-calls");
                            let mut waits_for_text = false;
                            if answered {
                                crate::stage!("answer_seen", spec.session);
                                let id = info["id"].as_str().unwrap_or_default();
                                ready = streamed.text_of(id);
                                // The call returned it already: wait for the
                                // stream to show the rest of its text (bounded
                                // by the catch-up deadline), not the transcript.
                                if ready.is_none() && returned.is_some() {
                                    answer_id = Some(id.to_owned());
                                    waits_for_text = true;
                                }
                            }
                            // An idle announced before the answer was written:
                            // look again as soon as an answer to our prompt
                            // is finished, not only on the recheck timer.
                            (answered && !waits_for_text)
                                || (recheck.is_some() && ours && (completed || errored))
                        }
                        "session.idle" => {
                            if seen_user {
                                crate::stage!("idle_seen", spec.session);
                            }
                            seen_user
                        }
                        "session.error" => true,
                        _ => false,
                    },
                    Ok(HubEvent::Event(_)) => false,
                },
            };
            if let Some(text) = ready.take() {
                crate::stage!("answer_streamed", spec.session);
                return Ok(text);
            }
            if !should_check {
                continue;
            }
            let progress = self.check(spec).await?;
            if let (Progress::NotSent, Some(why)) = (&progress, &call_ended) {
                return self.note(Err(AgentError::Unreachable(format!(
                    "the prompt did not reach OpenCode: {why}"
                ))));
            }
            match progress {
                Progress::Answered(text) => {
                    crate::stage!("transcript_read", spec.session);
                    return Ok(text);
                }
                Progress::Failed { refused, why } => return Err(failure(refused, why)),
                Progress::Running if from_timer => {
                    if self.note(self.client.session_busy(&spec.dir, &spec.session).await)? {
                        stalled = 0;
                    } else {
                        stalled += 1;
                        if stalled >= 2 {
                            return Err(AgentError::Run(
                                "OpenCode stopped working on the prompt without an answer".into(),
                            ));
                        }
                    }
                }
                Progress::Halted(reply) => {
                    if !self.note(self.client.session_busy(&spec.dir, &spec.session).await)? {
                        tracing::warn!(session, prompt = %spec.prompt_id, "the agent stopped: a tool was refused permission (PB_PERMISSION=reject)");
                        return Ok(reply);
                    }
                    recheck = Some(tokio::time::Instant::now() + Duration::from_millis(300));
                }
                Progress::NotSent | Progress::Running => {
                    recheck = Some(tokio::time::Instant::now() + Duration::from_millis(300));
                }
            }
        }
    }
}

/// The text of `m` when it is the finished answer to `prompt` (what
/// [`progress`] calls answered), else `None`.
pub(super) fn answered_text(m: &TranscriptMessage, prompt: &str) -> Option<String> {
    let ours = m.info.role == "assistant" && m.info.parent_id.as_deref() == Some(prompt);
    let finished = m.info.time.completed.is_some()
        && m.info.error.is_none()
        && m.info.finish.as_deref().is_some_and(|f| f != "tool-calls");
    (ours && finished).then(|| m.text())
}

/// Whether the newest `asked` messages of a transcript show all of the
/// run of `prompt`: they hold the prompt (and so every answer after it),
/// or they are the whole transcript.
pub(super) fn tail_holds_the_run(tail: &[TranscriptMessage], asked: usize, prompt: &str) -> bool {
    tail.len() < asked || tail.iter().any(|m| m.info.id == prompt)
}

/// A run's state as the transcript shows it.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Progress {
    NotSent,
    Running,
    Answered(String),
    /// The run failed; `refused`: the provider refused the key or model.
    Failed {
        refused: bool,
        why: String,
    },
    /// The agent stopped after a tool call was refused permission; OpenCode
    /// ends the turn there. Final once the session is idle. Carries the
    /// reply for the chat.
    Halted(String),
}

/// A failed run: the model provider refusing the key or not knowing the
/// model is the owner's to fix (retrying cannot help); anything else may
/// pass.
pub(super) fn run_failed(err: &serde_json::Value) -> Progress {
    let name = err["name"].as_str().unwrap_or_default();
    let status = err["data"]["statusCode"].as_u64();
    let message = error_message(err);
    if let Some(code @ (401 | 403)) = status {
        Progress::Failed {
            refused: true,
            why: format!("the model provider refused the request ({code}): {message}"),
        }
    } else if name.contains("ModelNotFound") {
        Progress::Failed {
            refused: true,
            why: format!("the configured model is not known: {message}"),
        }
    } else {
        Progress::Failed {
            refused: false,
            why: message,
        }
    }
}

pub(super) fn failure(refused: bool, why: String) -> AgentError {
    if refused {
        AgentError::ModelRefused(why)
    } else {
        AgentError::Run(why)
    }
}

pub(super) fn progress(transcript: &[TranscriptMessage], prompt: &str) -> Progress {
    if !transcript.iter().any(|m| m.info.id == prompt) {
        return Progress::NotSent;
    }
    let children: Vec<_> = transcript
        .iter()
        .filter(|m| m.info.role == "assistant" && m.info.parent_id.as_deref() == Some(prompt))
        .collect();
    let Some(last) = children.last() else {
        return Progress::Running;
    };
    if let Some(err) = &last.info.error {
        return run_failed(err);
    }
    match (&last.info.time.completed, last.info.finish.as_deref()) {
        (Some(_), Some("tool-calls")) => {
            let refused = refused_tools(last);
            if refused.is_empty() {
                return Progress::Running;
            }
            let said: Vec<String> = children
                .iter()
                .map(|m| m.text())
                .filter(|t| !t.trim().is_empty())
                .collect();
            let mut reply = said.join("\n\n");
            if !reply.is_empty() {
                reply.push_str("\n\n");
            }
            reply.push_str(&format!(
                "(I stopped: I am not allowed to use {} here.)",
                refused.join(", ")
            ));
            Progress::Halted(reply)
        }
        (Some(_), Some(_)) => Progress::Answered(last.text()),
        _ => Progress::Running,
    }
}

/// Tools of `msg` whose call was refused permission.
fn refused_tools(msg: &TranscriptMessage) -> Vec<String> {
    let mut tools: Vec<String> = msg
        .parts
        .iter()
        .filter(|p| p["type"] == "tool" && p["state"]["status"] == "error")
        .filter(|p| {
            p["state"]["error"]
                .as_str()
                .is_some_and(|e| e.contains("rejected permission"))
        })
        .filter_map(|p| p["tool"].as_str().map(str::to_owned))
        .collect();
    tools.sort();
    tools.dedup();
    tools
}
