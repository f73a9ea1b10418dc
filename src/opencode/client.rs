//! Typed calls to OpenCode's HTTP API (`opencode serve`). Every route takes
//! the OpenCode instance's directory as `?directory=`. Shapes were read from
//! the server's own `GET /doc` and from observed runs (see REFERENCE.md).

use std::path::Path;
use std::time::Duration;

use reqwest::{Method, RequestBuilder, StatusCode, Url};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::agent::AgentError;
use crate::config::{ModelRef, Secret};
use crate::ids::{PromptId, SessionId};

/// HTTP client for one OpenCode server.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    auth: Option<(String, Secret)>,
}

/// What became of a blocking prompt call ([`Client::prompt`]).
#[derive(Debug)]
pub enum Prompted {
    /// OpenCode's answer: the turn's last assistant message.
    Answer(Box<TranscriptMessage>),
    /// Not run: OpenCode could not be reached, the session is gone, or the
    /// request was refused.
    Refused(AgentError),
    /// The call ended without an answer (it broke, timed out, or OpenCode
    /// failed it): the transcript tells whether the prompt is there.
    Ended(String),
}

/// One message of a session transcript.
#[derive(Debug, Clone, Deserialize)]
pub struct TranscriptMessage {
    pub info: MessageInfo,
    #[serde(default)]
    pub parts: Vec<Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct MessageInfo {
    pub id: String,
    pub role: String,
    #[serde(rename = "parentID")]
    pub parent_id: Option<String>,
    pub finish: Option<String>,
    #[serde(default)]
    pub time: MessageTime,
    pub error: Option<Value>,
    /// An assistant message's model, tokens and cost.
    #[serde(rename = "providerID")]
    pub provider_id: Option<String>,
    #[serde(rename = "modelID")]
    pub model_id: Option<String>,
    #[serde(default)]
    pub tokens: Option<Value>,
    pub cost: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct MessageTime {
    pub created: Option<i64>,
    pub completed: Option<i64>,
}

impl TranscriptMessage {
    /// The text the user would see: text parts that are neither synthetic
    /// nor ignored, joined.
    pub fn text(&self) -> String {
        self.parts
            .iter()
            .filter(|p| p["type"] == "text" && p["synthetic"] != true && p["ignored"] != true)
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A readable message from an OpenCode error object (`{name, data:{message}}`).
pub fn error_message(err: &Value) -> String {
    let name = err["name"].as_str().unwrap_or("Error");
    match err["data"]["message"].as_str() {
        Some(m) => format!("{name}: {m}"),
        None => name.to_owned(),
    }
}

impl Client {
    pub fn new(base: Url, auth: Option<(String, Secret)>) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .expect("reqwest client builds with static settings");
        Self { http, base, auth }
    }

    /// The server's address.
    pub fn base(&self) -> &Url {
        &self.base
    }

    fn url(&self, path: &str) -> Url {
        let mut url = self.base.clone();
        url.set_path(path);
        url
    }

    fn request(&self, method: Method, path: &str, dir: Option<&Path>) -> RequestBuilder {
        let mut req = self.http.request(method, self.url(path));
        if let Some(dir) = dir {
            req = req.query(&[("directory", dir.to_string_lossy())]);
        }
        if let Some((user, pass)) = &self.auth {
            req = req.basic_auth(user, Some(pass.expose()));
        }
        req
    }

    /// A streaming `GET /global/event` request (no overall timeout).
    pub fn global_events(&self) -> RequestBuilder {
        self.request(Method::GET, "/global/event", None)
            .header("accept", "text/event-stream")
    }

    async fn send(
        &self,
        what: &'static str,
        req: RequestBuilder,
        timeout: Duration,
    ) -> Result<reqwest::Response, AgentError> {
        let resp = req
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| AgentError::Unreachable(format!("{what}: {}", without_url(&e))))?;
        Ok(resp)
    }

    async fn expect_ok(
        what: &'static str,
        resp: reqwest::Response,
    ) -> Result<reqwest::Response, AgentError> {
        if resp.status().is_success() {
            return Ok(resp);
        }
        Err(Self::http_error(what, resp).await)
    }

    /// A refused request's error: its status and the start of its body.
    async fn http_error(what: &'static str, resp: reqwest::Response) -> AgentError {
        let status = resp.status();
        let body: String = resp
            .text()
            .await
            .unwrap_or_default()
            .chars()
            .take(500)
            .collect();
        AgentError::Http {
            what,
            status: status.as_u16(),
            body,
        }
    }

    async fn json<T: serde::de::DeserializeOwned>(
        what: &'static str,
        resp: reqwest::Response,
    ) -> Result<T, AgentError> {
        let resp = Self::expect_ok(what, resp).await?;
        resp.json().await.map_err(|e| AgentError::Protocol {
            what,
            why: without_url(&e),
        })
    }

    /// `GET /global/health`: the server's version when healthy.
    pub async fn health(&self) -> Result<String, AgentError> {
        let resp = self
            .send(
                "health",
                self.request(Method::GET, "/global/health", None),
                Duration::from_secs(5),
            )
            .await?;
        let v: Value = Self::json("health", resp).await?;
        if v["healthy"] == true {
            Ok(v["version"].as_str().unwrap_or("unknown").to_owned())
        } else {
            Err(AgentError::Protocol {
                what: "health",
                why: format!("server says {v}"),
            })
        }
    }

    /// `POST /session`: a new session with a title (saves a title LLM call).
    pub async fn create_session(&self, dir: &Path, title: &str) -> Result<SessionId, AgentError> {
        // The first request for a directory boots its instance: allow time.
        let req = self
            .request(Method::POST, "/session", Some(dir))
            .json(&json!({ "title": title }));
        let v: Value = Self::json(
            "create session",
            self.send("create session", req, Duration::from_secs(60))
                .await?,
        )
        .await?;
        v["id"]
            .as_str()
            .map(SessionId::new)
            .ok_or_else(|| AgentError::Protocol {
                what: "create session",
                why: "no id in response".into(),
            })
    }

    /// `GET /session/{id}`: `Ok(false)` when OpenCode says it is gone (404).
    pub async fn session_exists(&self, dir: &Path, id: &SessionId) -> Result<bool, AgentError> {
        let req = self.request(Method::GET, &format!("/session/{id}"), Some(dir));
        let resp = self
            .send("get session", req, Duration::from_secs(60))
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(false);
        }
        Self::expect_ok("get session", resp).await?;
        Ok(true)
    }

    /// `DELETE /session/{id}`: the session and its messages, for good;
    /// `Ok(false)` when OpenCode says it was gone already (404).
    pub async fn delete_session(&self, dir: &Path, id: &SessionId) -> Result<bool, AgentError> {
        let req = self.request(Method::DELETE, &format!("/session/{id}"), Some(dir));
        let resp = self
            .send("delete session", req, Duration::from_secs(60))
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(false);
        }
        Self::expect_ok("delete session", resp).await?;
        Ok(true)
    }

    /// A prompt's parts: the text, then each file (images as `data:` URLs).
    /// OpenCode hands a file part to the model as image input when the
    /// model's config declares image input, else it replaces it by a note.
    pub fn prompt_parts(text: &str, files: &[crate::media::FilePart]) -> Vec<Value> {
        let mut parts = vec![json!({ "type": "text", "text": text })];
        parts.extend(files.iter().map(
            |f| json!({ "type": "file", "mime": f.mime, "filename": f.filename, "url": f.url }),
        ));
        parts
    }

    /// `POST /session/{id}/message` with our own message id: OpenCode's
    /// blocking prompt call, which answers with the turn's last assistant
    /// message when the turn is complete. (It beat `prompt_async` and the
    /// event stream's `message.updated` by tens of ms in docs/BENCHMARKS.md,
    /// run 15.) `timeout` bounds the whole call.
    #[allow(clippy::too_many_arguments)]
    pub async fn prompt(
        &self,
        dir: &Path,
        session: &SessionId,
        prompt: &PromptId,
        parts: Vec<Value>,
        model: Option<&ModelRef>,
        agent: Option<&str>,
        timeout: Duration,
    ) -> Prompted {
        let mut body = json!({
            "messageID": prompt.as_str(),
            "parts": parts,
        });
        if let Some(a) = agent {
            body["agent"] = json!(a);
        }
        if let Some(m) = model {
            body["model"] = json!({ "providerID": m.provider, "modelID": m.model });
        }
        let req = self
            .request(
                Method::POST,
                &format!("/session/{session}/message"),
                Some(dir),
            )
            .json(&body)
            .timeout(timeout);
        let resp = match req.send().await {
            Ok(r) => r,
            // Nothing reached OpenCode.
            Err(e) if e.is_connect() => {
                return Prompted::Refused(AgentError::Unreachable(format!(
                    "prompt: {}",
                    without_url(&e)
                )));
            }
            Err(e) => return Prompted::Ended(without_url(&e)),
        };
        match resp.status() {
            StatusCode::NOT_FOUND => {
                return Prompted::Refused(AgentError::SessionGone(session.clone()));
            }
            // A request OpenCode would not take: nothing ran.
            s if s.is_client_error() => {
                return Prompted::Refused(Self::http_error("prompt", resp).await);
            }
            s if !s.is_success() => return Prompted::Ended(format!("prompt: HTTP {s}")),
            _ => {}
        }
        match resp.json::<TranscriptMessage>().await {
            Ok(m) => Prompted::Answer(Box::new(m)),
            Err(e) => Prompted::Ended(format!("prompt: {}", without_url(&e))),
        }
    }

    /// `GET /session/{id}/message`: the transcript, oldest first; with
    /// `last`, only its newest `last` messages (still oldest first).
    pub async fn messages(
        &self,
        dir: &Path,
        session: &SessionId,
        last: Option<usize>,
    ) -> Result<Vec<TranscriptMessage>, AgentError> {
        let mut req = self.request(
            Method::GET,
            &format!("/session/{session}/message"),
            Some(dir),
        );
        if let Some(n) = last {
            req = req.query(&[("limit", n)]);
        }
        let resp = self.send("messages", req, Duration::from_secs(30)).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(AgentError::SessionGone(session.clone()));
        }
        Self::json("messages", resp).await
    }

    /// `GET /session/{id}/message/{messageID}`: one message; `None` when
    /// OpenCode has no such message (or session).
    pub async fn message(
        &self,
        dir: &Path,
        session: &SessionId,
        message_id: &str,
    ) -> Result<Option<TranscriptMessage>, AgentError> {
        let req = self.request(
            Method::GET,
            &format!("/session/{session}/message/{message_id}"),
            Some(dir),
        );
        let resp = self.send("message", req, Duration::from_secs(30)).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        Self::json("message", resp).await.map(Some)
    }

    /// `GET /session/status`: whether the session is working (busy or
    /// waiting to retry). Idle sessions are absent from the map.
    pub async fn session_busy(&self, dir: &Path, session: &SessionId) -> Result<bool, AgentError> {
        let req = self.request(Method::GET, "/session/status", Some(dir));
        let v: Value = Self::json(
            "session status",
            self.send("session status", req, Duration::from_secs(30))
                .await?,
        )
        .await?;
        Ok(v.get(session.as_str()).is_some())
    }

    /// `GET /config/providers`: every model on offer as `provider/model`,
    /// sorted; and `GET /config`'s `model`, the default.
    pub async fn models(&self, dir: &Path) -> Result<crate::agent::Models, AgentError> {
        let req = self.request(Method::GET, "/config/providers", Some(dir));
        let v: Value = Self::json(
            "providers",
            self.send("providers", req, Duration::from_secs(30)).await?,
        )
        .await?;
        let mut available = Vec::new();
        let mut context = std::collections::HashMap::new();
        for p in v["providers"].as_array().into_iter().flatten() {
            let (Some(id), Some(models)) = (p["id"].as_str(), p["models"].as_object()) else {
                continue;
            };
            for (m, info) in models {
                let name = format!("{id}/{m}");
                if let Some(limit) = info["limit"]["context"].as_u64().filter(|l| *l > 0) {
                    context.insert(name.clone(), limit);
                }
                available.push(name);
            }
        }
        available.sort();
        let req = self.request(Method::GET, "/config", Some(dir));
        let config: Value = Self::json(
            "config",
            self.send("config", req, Duration::from_secs(30)).await?,
        )
        .await?;
        Ok(crate::agent::Models {
            available,
            default: config["model"].as_str().map(str::to_owned),
            context,
        })
    }

    /// `POST /session/{id}/summarize` with the model that writes the summary.
    pub async fn summarize(
        &self,
        dir: &Path,
        session: &SessionId,
        model: &crate::config::ModelRef,
    ) -> Result<(), AgentError> {
        let req = self
            .request(
                Method::POST,
                &format!("/session/{session}/summarize"),
                Some(dir),
            )
            .json(&json!({ "providerID": model.provider, "modelID": model.model }));
        let resp = self
            .send("summarize", req, Duration::from_secs(600))
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(AgentError::SessionGone(session.clone()));
        }
        Self::expect_ok("summarize", resp).await?;
        Ok(())
    }

    /// `POST /session/{id}/abort`.
    pub async fn abort(&self, dir: &Path, session: &SessionId) -> Result<(), AgentError> {
        let req = self.request(
            Method::POST,
            &format!("/session/{session}/abort"),
            Some(dir),
        );
        Self::expect_ok(
            "abort",
            self.send("abort", req, Duration::from_secs(10)).await?,
        )
        .await?;
        Ok(())
    }

    /// `POST /instance/dispose`: frees `dir`'s instance (it boots again
    /// when next asked about).
    pub async fn dispose_instance(&self, dir: &Path) -> Result<(), AgentError> {
        let req = self.request(Method::POST, "/instance/dispose", Some(dir));
        Self::expect_ok(
            "dispose",
            self.send("dispose", req, Duration::from_secs(30)).await?,
        )
        .await?;
        Ok(())
    }

    /// `POST /permission/{id}/reply` (in the request's own instance: other
    /// instances answer 404).
    pub async fn reply_permission(
        &self,
        dir: Option<&Path>,
        id: &str,
        reply: &str,
        message: Option<&str>,
    ) -> Result<(), AgentError> {
        let mut body = json!({ "reply": reply });
        if let Some(m) = message {
            body["message"] = json!(m);
        }
        let req = self
            .request(Method::POST, &format!("/permission/{id}/reply"), dir)
            .json(&body);
        Self::expect_ok(
            "permission reply",
            self.send("permission reply", req, Duration::from_secs(10))
                .await?,
        )
        .await?;
        Ok(())
    }
}

impl Client {
    /// `GET /permission`: the instance's pending permission requests.
    pub async fn permissions(&self, dir: &Path) -> Result<Vec<Value>, AgentError> {
        let req = self.request(Method::GET, "/permission", Some(dir));
        Self::json(
            "permissions",
            self.send("permissions", req, Duration::from_secs(30))
                .await?,
        )
        .await
    }

    /// `GET /experimental/tool/ids`: the ids of the tools the instance of
    /// `dir` offers the model, plugins' tools included. The first request
    /// for a directory boots its instance and loads its plugins: allow time.
    pub async fn tool_ids(&self, dir: &Path) -> Result<Vec<String>, AgentError> {
        let req = self.request(Method::GET, "/experimental/tool/ids", Some(dir));
        Self::json(
            "tool ids",
            self.send("tool ids", req, Duration::from_secs(60)).await?,
        )
        .await
    }

    /// `GET /session/{id}`: its `parentID` (a subagent's session has one).
    pub async fn session_parent(
        &self,
        dir: &Path,
        id: &SessionId,
    ) -> Result<Option<SessionId>, AgentError> {
        let req = self.request(Method::GET, &format!("/session/{id}"), Some(dir));
        let resp = self
            .send("get session", req, Duration::from_secs(30))
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let v: Value = Self::json("get session", resp).await?;
        Ok(v["parentID"].as_str().map(SessionId::new))
    }
}

/// reqwest errors print the URL, which may carry credentials; keep the cause.
fn without_url(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    if let Some(url) = e.url() {
        msg = msg.replace(url.as_str(), url.path());
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}
