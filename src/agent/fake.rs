//! An in-memory agent for unit tests: sessions are names in a set, and each
//! run is answered by a script the test gives, which may act on the world
//! (record a tool call, fail, take time on tokio's paused clock).

use std::collections::{HashSet, VecDeque};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::future::BoxFuture;

use super::{Agent, AgentError, Recovered, RunSpec, ToolCall};
use crate::ids::{PromptId, SessionId};

/// What one scripted run does.
pub type Script = Box<dyn FnOnce(RunSpec) -> BoxFuture<'static, Result<String, AgentError>> + Send>;

/// The fake agent. Runs without a script left answer `"ok"`.
#[derive(Default)]
pub struct FakeAgent {
    sessions: Mutex<HashSet<SessionId>>,
    next: AtomicU64,
    scripts: Mutex<VecDeque<Script>>,
    recovered: Mutex<VecDeque<Result<Recovered, AgentError>>>,
    runs: Mutex<Vec<RunSpec>>,
    /// Answers to permission requests: id, reply, message.
    answers: Mutex<Vec<(String, crate::agent::PermissionReply, Option<String>)>>,
    /// When set, every call fails as if OpenCode were down.
    pub down: std::sync::atomic::AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl FakeAgent {
    /// The next run does `script`.
    pub fn then(
        &self,
        script: impl FnOnce(RunSpec) -> BoxFuture<'static, Result<String, AgentError>> + Send + 'static,
    ) {
        lock(&self.scripts).push_back(Box::new(script));
    }

    /// The next run answers `text`.
    pub fn answer(&self, text: &str) {
        let text = text.to_owned();
        self.then(move |_| Box::pin(async move { Ok(text) }));
    }

    /// The next run fails with `error`.
    pub fn fail(&self, error: AgentError) {
        self.then(move |_| Box::pin(async move { Err(error) }));
    }

    /// The next `recover` call returns `r`.
    pub fn recovers(&self, r: Result<Recovered, AgentError>) {
        lock(&self.recovered).push_back(r);
    }

    /// Forgets a session, as OpenCode does when its data is removed.
    pub fn drop_session(&self, id: &SessionId) {
        lock(&self.sessions).remove(id);
    }

    /// Every run started so far.
    pub fn runs(&self) -> Vec<RunSpec> {
        lock(&self.runs).clone()
    }

    /// Every permission request answered so far: id, reply, message.
    pub fn permission_answers(
        &self,
    ) -> Vec<(String, crate::agent::PermissionReply, Option<String>)> {
        lock(&self.answers).clone()
    }

    fn check_up(&self) -> Result<(), AgentError> {
        if self.down.load(Ordering::Relaxed) {
            Err(AgentError::Unreachable("fake agent is down".into()))
        } else {
            Ok(())
        }
    }
}

impl Agent for FakeAgent {
    fn create_session<'a>(
        &'a self,
        _dir: &'a Path,
        _title: &'a str,
    ) -> BoxFuture<'a, Result<SessionId, AgentError>> {
        Box::pin(async move {
            self.check_up()?;
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            let id = SessionId::new(format!("ses_fake{n}"));
            lock(&self.sessions).insert(id.clone());
            Ok(id)
        })
    }

    fn session_exists<'a>(
        &'a self,
        _dir: &'a Path,
        id: &'a SessionId,
    ) -> BoxFuture<'a, Result<bool, AgentError>> {
        Box::pin(async move {
            self.check_up()?;
            Ok(lock(&self.sessions).contains(id))
        })
    }

    fn delete_session<'a>(
        &'a self,
        _dir: &'a Path,
        id: &'a SessionId,
    ) -> BoxFuture<'a, Result<bool, AgentError>> {
        Box::pin(async move {
            self.check_up()?;
            Ok(lock(&self.sessions).remove(id))
        })
    }

    fn new_prompt_id(&self) -> PromptId {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        PromptId::new(format!("msg_fake{n:08}"))
    }

    fn run(&self, spec: RunSpec) -> BoxFuture<'_, Result<String, AgentError>> {
        Box::pin(async move {
            self.check_up()?;
            if !lock(&self.sessions).contains(&spec.session) {
                return Err(AgentError::SessionGone(spec.session));
            }
            lock(&self.runs).push(spec.clone());
            let script = lock(&self.scripts).pop_front();
            match script {
                Some(s) => s(spec).await,
                None => Ok("ok".into()),
            }
        })
    }

    fn recover(&self, _spec: RunSpec) -> BoxFuture<'_, Result<Recovered, AgentError>> {
        Box::pin(async move {
            self.check_up()?;
            lock(&self.recovered)
                .pop_front()
                .unwrap_or(Ok(Recovered::NotSent))
        })
    }

    fn tool_calls<'a>(
        &'a self,
        _dir: &'a Path,
        _session: &'a SessionId,
        _message_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ToolCall>, AgentError>> {
        Box::pin(async move {
            self.check_up()?;
            Ok(Vec::new())
        })
    }

    fn answer_permission<'a>(
        &'a self,
        _dir: &'a Path,
        id: &'a str,
        reply: crate::agent::PermissionReply,
        message: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), AgentError>> {
        Box::pin(async move {
            self.check_up()?;
            lock(&self.answers).push((id.to_owned(), reply, message.map(str::to_owned)));
            Ok(())
        })
    }

    fn pending_permissions<'a>(
        &'a self,
        _dir: &'a Path,
    ) -> BoxFuture<'a, Result<Vec<crate::agent::PermissionAsk>, AgentError>> {
        Box::pin(async move {
            self.check_up()?;
            Ok(Vec::new())
        })
    }

    fn session_parent<'a>(
        &'a self,
        _dir: &'a Path,
        _id: &'a SessionId,
    ) -> BoxFuture<'a, Result<Option<SessionId>, AgentError>> {
        Box::pin(async move {
            self.check_up()?;
            Ok(None)
        })
    }

    fn health_code(&self) -> &'static str {
        if self.down.load(Ordering::Relaxed) {
            "opencode-unreachable"
        } else {
            "opencode-ok"
        }
    }
}
