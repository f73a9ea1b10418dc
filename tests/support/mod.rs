//! Test harness: a real `opencode serve` (the pinned npm package in
//! `.tools/`) configured to use the scripted model, and the real
//! `pocketbrain` binary driven through the fake channel's HTTP contract.
#![allow(dead_code)]

pub mod model;
pub mod proxy;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub use model::{ChatRequest, Reply, ScriptedModel};

pub const OWNER: &str = "491510000001@s.whatsapp.net";

/// The pinned OpenCode binary, installed by scripts/install-tools.sh.
pub fn opencode_bin() -> PathBuf {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/node_modules/.bin/opencode");
    assert!(
        bin.is_file(),
        "{} is missing: run scripts/install-tools.sh (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// The OPENCODE_CONFIG_CONTENT pointing OpenCode at the scripted model.
pub fn opencode_config(model: &ScriptedModel) -> String {
    json!({
        "provider": {"scripted": {"npm": "@ai-sdk/openai-compatible", "name": "Scripted",
            "options": {"baseURL": model.base_url(), "apiKey": "x"},
            "models": {"scripted-1": {"name": "Scripted", "tool_call": true}}}},
        "model": "scripted/scripted-1",
        "permission": {"*": "allow", "external_directory": "allow", "doom_loop": "allow", "question": "deny"},
        "autoupdate": false,
        "share": "disabled",
    })
    .to_string()
}

/// `opencode_config` with `patch` merged in: top-level objects key by key,
/// anything else replaced.
pub fn opencode_config_patched(model: &ScriptedModel, patch: &Value) -> String {
    let mut config: Value = serde_json::from_str(&opencode_config(model)).unwrap();
    if let Some(patch) = patch.as_object() {
        for (k, v) in patch {
            match (config.get_mut(k), v) {
                (Some(Value::Object(base)), Value::Object(add)) => {
                    base.extend(add.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
                _ => config[k] = v.clone(),
            }
        }
    }
    config.to_string()
}

/// OpenCode's own config folder in `home` as docker-compose.yml gives it
/// to the OpenCode container: an empty `node_modules/` and the lock that
/// names `@opencode-ai/plugin`, so OpenCode finds nothing to install there
/// (it installs that package into every config folder it reads, and loads
/// no plugin before the install has ended). The workspace's `.opencode/`
/// gets the same from the bridge.
pub fn opencode_home(home: &Path) {
    let config = home.join(".config/opencode");
    std::fs::create_dir_all(config.join("node_modules")).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("opencode-plugin/runtime/package-lock.json"),
        config.join("package-lock.json"),
    )
    .unwrap();
}

/// Environment that leaves a process no package registry: npm's and Bun's
/// registry settings and the proxies all point at `closed` (a URL nobody
/// listens on); loopback stays direct, for the scripted model.
pub fn no_registry(closed: &str) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        "npm_config_registry",
        "NPM_CONFIG_REGISTRY",
        "BUN_CONFIG_REGISTRY",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "http_proxy",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ]
    .iter()
    .map(|k| ((*k).to_owned(), closed.to_owned()))
    .collect();
    for k in ["NO_PROXY", "no_proxy"] {
        env.push((k.to_owned(), "127.0.0.1,localhost".to_owned()));
    }
    env
}

/// Environment that isolates an OpenCode process in `home` (prepared by
/// [`opencode_home`]).
pub fn opencode_env(cmd: &mut Command, home: &Path, model: &ScriptedModel) {
    opencode_home(home);
    cmd.env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_DATA_HOME", home.join(".local/share"))
        .env("XDG_CACHE_HOME", home.join(".cache"))
        .env("XDG_STATE_HOME", home.join(".local/state"))
        .env("OPENCODE_DISABLE_MODELS_FETCH", "1")
        .env("OPENCODE_DISABLE_AUTOUPDATE", "1")
        .env("OPENCODE_CLIENT", "serve")
        .env("OPENCODE_CONFIG_CONTENT", opencode_config(model));
}

/// A running `opencode serve`, killed on drop.
pub struct OpenCode {
    child: Child,
    pub url: String,
}

/// A free loopback port from the kernel's ephemeral range.
///
/// OpenCode's own `--port 0` tries 4096 first, so tests that let it choose
/// would race each other for 4096: a test restarting its server on the old
/// port could find another test's server there. Ports from this function are
/// never 4096, and every test server gets one.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

impl OpenCode {
    pub fn start(workspace: &Path, home: &Path, model: &ScriptedModel) -> Self {
        Self::start_on(workspace, home, model, 0)
    }

    /// Starts on a given port (0: a fresh one from `free_port`).
    pub fn start_on(workspace: &Path, home: &Path, model: &ScriptedModel, port: u16) -> Self {
        Self::start_with(workspace, home, model, port, opencode_config(model))
    }

    /// Starts with a given `OPENCODE_CONFIG_CONTENT`. A server that exits
    /// before listening (its port was taken meanwhile) is started again: on
    /// a fresh port, or for a given port, again on that one for up to 10 s.
    /// OpenCode's stderr goes to `home/opencode.log`.
    pub fn start_with(
        workspace: &Path,
        home: &Path,
        model: &ScriptedModel,
        port: u16,
        config: String,
    ) -> Self {
        Self::start_with_env(workspace, home, model, port, config, &[])
    }

    /// Like `start_with`, with `extra` added to the server's environment.
    pub fn start_with_env(
        workspace: &Path,
        home: &Path,
        model: &ScriptedModel,
        port: u16,
        config: String,
        extra: &[(String, String)],
    ) -> Self {
        std::fs::create_dir_all(workspace).unwrap();
        std::fs::create_dir_all(home).unwrap();
        let log = home.join("opencode.log");
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let try_port = if port == 0 { free_port() } else { port };
            match Self::spawn(workspace, home, model, try_port, &config, &log, extra) {
                Ok(oc) => return oc,
                Err(why) if attempt < 5 && Instant::now() < deadline => {
                    eprintln!("opencode serve on port {try_port} did not start ({why}); again");
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(why) => {
                    let tail = std::fs::read_to_string(&log).unwrap_or_default();
                    let tail = &tail[tail.len().saturating_sub(4000)..];
                    panic!("opencode serve did not start on port {try_port}: {why}\n{tail}");
                }
            }
        }
    }

    fn spawn(
        workspace: &Path,
        home: &Path,
        model: &ScriptedModel,
        port: u16,
        config: &str,
        log: &Path,
        extra: &[(String, String)],
    ) -> Result<Self, String> {
        use std::io::{BufRead, BufReader};
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let mut cmd = Command::new(opencode_bin());
        cmd.args([
            "serve",
            "--hostname",
            "127.0.0.1",
            "--port",
            &port.to_string(),
        ])
        .current_dir(workspace)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr);
        opencode_env(&mut cmd, home, model);
        cmd.env("OPENCODE_CONFIG_CONTENT", config)
            .envs(extra.iter().map(|(k, v)| (k, v)));
        let mut child = cmd.spawn().expect("spawn opencode serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.split("listening on ").nth(1) {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => Ok(Self { child, url }),
            Err(e) => {
                let _ = child.kill();
                let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
                Err(format!("{e}; {status}"))
            }
        }
    }
}

impl OpenCode {
    /// The server's process id (to read its memory from `/proc`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for OpenCode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test's world: temp folders, the scripted model, OpenCode, and the bridge.
pub struct World {
    pub dir: tempfile::TempDir,
    pub model: ScriptedModel,
    pub opencode: Option<OpenCode>,
    pub bridge: Option<Bridge>,
    pub env: Vec<(String, String)>,
    /// Where bridges started later write their stderr (inherited when unset).
    pub bridge_log: Option<PathBuf>,
    http: reqwest::Client,
}

impl World {
    /// Model and OpenCode up; the bridge is started with `start_bridge`.
    pub async fn new() -> Self {
        let mut w = Self::without_opencode().await;
        w.opencode = Some(OpenCode::start(&w.workspace(), &w.home(), &w.model));
        w
    }

    /// Like `new`, with `patch` merged into OpenCode's config.
    pub async fn with_opencode_config(patch: Value) -> Self {
        let mut w = Self::without_opencode().await;
        let config = opencode_config_patched(&w.model, &patch);
        w.opencode = Some(OpenCode::start_with(
            &w.workspace(),
            &w.home(),
            &w.model,
            0,
            config,
        ));
        w
    }

    /// Model only: the bridge will start its own OpenCode.
    pub async fn without_opencode() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let model = ScriptedModel::start().await;
        Self {
            dir,
            model,
            opencode: None,
            bridge: None,
            env: Vec::new(),
            bridge_log: None,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
    pub fn workspace(&self) -> PathBuf {
        self.dir.path().join("workspace")
    }
    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// Stops the test's OpenCode; returns its port.
    pub fn stop_opencode(&mut self) -> u16 {
        let oc = self.opencode.as_mut().expect("test-managed opencode");
        let _ = oc.child.kill();
        let _ = oc.child.wait();
        oc.url
            .rsplit(':')
            .next()
            .unwrap()
            .trim_end_matches('/')
            .parse()
            .unwrap()
    }

    /// Starts the test's OpenCode again on `port`, with the same state.
    pub fn restart_opencode(&mut self, port: u16) {
        let oc = OpenCode::start_on(&self.workspace(), &self.home(), &self.model, port);
        self.opencode = Some(oc);
    }

    /// Extra environment for every bridge process started later.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pocketbrain"));
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("PB_DATA_DIR", self.data_dir())
            .env("PB_WORKSPACE", self.workspace())
            .env("PB_CHANNEL", "fake")
            .env("PB_HTTP_ADDR", "127.0.0.1:0")
            .env("PB_LOG", "info,pocketbrain=debug")
            .env("TZ", "Europe/Berlin")
            .env("PB_RETRY_BASE", "1s");
        match &self.opencode {
            Some(oc) => {
                cmd.env("PB_OPENCODE_URL", &oc.url);
            }
            // The bridge starts OpenCode itself: give it the test's isolation.
            None => opencode_env(&mut cmd, &self.home(), &self.model),
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs a CLI command to completion; returns (success, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let out = self.command(args).output().expect("run pocketbrain");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Like `cli`, for a command that should end by itself (a `serve` that
    /// must refuse to start): killed, and the test failed, past `timeout`.
    pub fn cli_ending(&self, args: &[&str], timeout: Duration) -> (bool, String, String) {
        let mut child = self
            .command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run pocketbrain");
        let deadline = Instant::now() + timeout;
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("pocketbrain {args:?} still ran after {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub fn register(&self, jid: &str, name: &str, extra: &[&str]) {
        let mut args = vec!["chats", "register", jid, "--name", name];
        args.extend_from_slice(extra);
        let (ok, out, err) = self.cli(&args);
        assert!(ok, "register failed: {out}{err}");
    }

    /// Registers every `(jid, name)` straight in the store, with its folder
    /// made as `chats register` makes it (the CLI's process per chat is
    /// what makes a thousand registrations slow), before the bridge starts.
    /// A group answers a mention (`@Andy`), a DM any message.
    pub async fn register_many(&self, chats: &[(String, String)]) {
        use pocketbrain::ids::{ChatJid, Folder};
        use pocketbrain::model::{Profile, RegisteredChat, TriggerRule};
        assert!(self.bridge.is_none(), "register before the bridge starts");
        std::fs::create_dir_all(self.data_dir()).unwrap();
        let store =
            pocketbrain::store::Store::open(&self.data_dir().join("pocketbrain.sqlite3")).unwrap();
        for (jid, name) in chats {
            let jid = ChatJid::parse(jid).unwrap();
            let folder = Folder::from_name(name);
            pocketbrain::workspace::ensure_chat_dir(&self.workspace(), &folder, name, &jid)
                .unwrap();
            store
                .register(RegisteredChat {
                    profile: Profile::default_for(&jid, false),
                    trigger: if jid.is_group() {
                        TriggerRule::Mention
                    } else {
                        TriggerRule::Always
                    },
                    jid,
                    name: name.clone(),
                    folder,
                    is_main: false,
                })
                .await
                .unwrap();
        }
    }

    /// Starts the bridge and waits until its health answers.
    pub async fn start_bridge(&mut self) {
        assert!(self.bridge.is_none(), "bridge already running");
        let addr_file = self.data_dir().join("http-addr");
        let _ = std::fs::remove_file(&addr_file);
        let mut cmd = self.command(&["serve"]);
        cmd.stdin(Stdio::null());
        if let Some(path) = &self.bridge_log {
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .expect("bridge log file");
            cmd.stderr(log);
        }
        let child = cmd.spawn().expect("spawn bridge");
        let mut bridge = Bridge {
            child,
            base: String::new(),
        };
        let started = Instant::now();
        let deadline = started + Duration::from_secs(60);
        loop {
            if let Ok(addr) = std::fs::read_to_string(&addr_file) {
                bridge.base = format!("http://{}", addr.trim());
                if let Ok(r) = self
                    .http
                    .get(format!("{}/health", bridge.base))
                    .send()
                    .await
                    && r.status().is_success()
                {
                    break;
                }
            }
            if let Ok(Some(status)) = bridge.child.try_wait() {
                panic!("bridge exited during start-up: {status}");
            }
            assert!(Instant::now() < deadline, "bridge did not become healthy");
            // Look often while a normal start could end (the benchmark times
            // spawn -> health with this loop: a 50 ms step alone read as a
            // 50 ms start), then slow down.
            let step = if started.elapsed() < Duration::from_secs(2) {
                Duration::from_millis(2)
            } else {
                Duration::from_millis(50)
            };
            tokio::time::sleep(step).await;
        }
        self.bridge = Some(bridge);
    }

    fn base(&self) -> &str {
        &self.bridge.as_ref().expect("bridge running").base
    }

    /// `GET <path>` on the bridge; the body as text.
    pub async fn http_get_text(&self, path: &str) -> String {
        self.http
            .get(format!("{}{path}", self.base()))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The running bridge's base URL (`http://host:port`).
    pub fn base_url(&self) -> String {
        self.base().to_owned()
    }

    /// `kill -9` the bridge.
    pub fn kill9(&mut self) {
        let mut b = self.bridge.take().expect("bridge running");
        b.child.kill().unwrap(); // SIGKILL
        b.child.wait().unwrap();
    }

    /// SIGTERM and wait for a clean exit.
    pub async fn stop_bridge(&mut self) -> std::process::ExitStatus {
        let mut b = self.bridge.take().expect("bridge running");
        unsafe {
            libc::kill(b.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = b.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "bridge did not stop on SIGTERM");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// POST /fake/inbox with a raw body (with the owner's token, when the
    /// world sets one); returns (status, json).
    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let mut r = self
            .http
            .post(format!("{}{path}", self.base()))
            .header("content-type", "application/json")
            .body(body);
        if let Some((_, token)) = self.env.iter().find(|(k, _)| k == "PB_HTTP_TOKEN") {
            r = r.bearer_auth(token);
        }
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Writes `request` verbatim to the bridge's HTTP port and returns all
    /// it answers before closing (the request should say `Connection: close`).
    pub async fn raw_exchange(&self, request: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = self.base().trim_start_matches("http://").to_owned();
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
            .await
            .expect("the bridge answered within 10 s")
            .unwrap();
        String::from_utf8_lossy(&out).into_owned()
    }

    /// A message from `sender` in `chat`; returns (status, json).
    pub async fn inbox(&self, body: Value) -> (u16, Value) {
        self.post_raw("/fake/inbox", body.to_string()).await
    }

    /// A text from the owner in `chat` with a given id; asserts it was accepted.
    pub async fn say(&self, chat: &str, id: &str, text: &str) {
        let (status, body) = self.inbox(json!({"chat": chat, "sender": OWNER, "sender_name": "Owner", "text": text, "id": id})).await;
        assert_eq!(status, 202, "{body}");
    }

    pub async fn outbox(&self, chat: Option<&str>) -> Vec<Value> {
        let mut req = self.http.get(format!("{}/fake/outbox", self.base()));
        if let Some(c) = chat {
            req = req.query(&[("chat", c)]);
        }
        let v: Value = req.send().await.unwrap().json().await.unwrap();
        v["messages"].as_array().cloned().unwrap_or_default()
    }

    pub async fn outbox_texts(&self, chat: &str) -> Vec<String> {
        self.outbox(Some(chat))
            .await
            .iter()
            .map(|m| m["text"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Waits until `chat` has received at least `n` messages; returns their texts.
    pub async fn wait_outbox(&self, chat: &str, n: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let texts = self.outbox_texts(chat).await;
            if texts.len() >= n {
                return texts;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} messages in {chat} within {timeout:?}, got {texts:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn set_link(&self, up: bool) {
        let (status, _) = self
            .post_raw("/fake/link", json!({"connected": up}).to_string())
            .await;
        assert_eq!(status, 200);
    }

    pub async fn health(&self) -> Value {
        self.http
            .get(format!("{}/health", self.base()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Waits until `check(health)` holds.
    pub async fn wait_health(&self, timeout: Duration, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let h = self.health().await;
            if check(&h) {
                return h;
            }
            assert!(Instant::now() < deadline, "health never matched: {h}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until no run is in progress (a run that ends silently leaves
    /// nothing in the outbox to wait for).
    pub async fn wait_idle(&self, timeout: Duration) {
        self.wait_health(timeout, |h| h["queue"]["running"] == 0)
            .await;
    }

    /// Agent-turn requests the model received (title requests excluded).
    pub fn agent_requests(&self) -> Vec<ChatRequest> {
        self.model
            .requests()
            .into_iter()
            .filter(|r| !r.is_title_request())
            .collect()
    }

    /// Waits until the model has received an agent turn whose last user
    /// message contains `needle`.
    pub async fn wait_agent_request(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self
            .agent_requests()
            .iter()
            .any(|r| r.last_user_text().contains(needle))
        {
            assert!(
                Instant::now() < deadline,
                "no agent request containing {needle:?} within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The test's OpenCode base URL, without a trailing slash.
    pub fn opencode_url(&self) -> String {
        let url = &self.opencode.as_ref().expect("test-managed opencode").url;
        url.trim_end_matches('/').to_owned()
    }

    /// `GET <path>` on OpenCode's API for a chat folder's instance, for
    /// checks the bridge cannot show (`path` starts with `/`).
    pub async fn opencode_get(&self, path: &str, folder: &str) -> Value {
        let dir = self.workspace().join("chats").join(folder);
        self.http
            .get(format!("{}{path}", self.opencode_url()))
            .query(&[("directory", dir.to_str().unwrap())])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(mut b) = self.bridge.take() {
            let _ = b.child.kill();
            let _ = b.child.wait();
        }
    }
}

/// The tool messages the model has seen so far in this request.
pub fn tool_messages(r: &ChatRequest) -> Vec<String> {
    r.messages()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| match &m["content"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}

/// Processes whose working directory is `dir` (Linux).
pub fn pids_with_cwd(dir: &Path) -> Vec<u32> {
    let dir = std::fs::canonicalize(dir).unwrap();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|c| c == dir))
        .collect()
}

pub struct Bridge {
    pub child: Child,
    pub base: String,
}

/// The longer reply a "stream please" message gets from [`echo_reply`].
pub const STREAMED: &str =
    "The quick brown fox jumps over the lazy dog, told in many small pieces.";

/// Echoes the prompt's last message ("echo: <text>"); "stream please"
/// gets [`STREAMED`] instead.
pub fn echo_reply(r: &ChatRequest) -> Reply {
    let msgs = prompt_messages(&r.last_user_text());
    let last = msgs.last().cloned().unwrap_or_default();
    // The text after the message tag's attributes.
    let last = last.split_once('>').map(|(_, t)| t).unwrap_or("");
    if last.contains("stream please") {
        Reply::text(STREAMED)
    } else {
        Reply::text(format!("echo: {last}"))
    }
}

/// Scripts `model` to run a bash command leaving `marker.txt` on "run it",
/// then to report the command's output ("tool said: ...").
pub fn runs_marker_bash(model: &ScriptedModel) {
    model.on(
        |r| r.last_role() == "user" && r.last_user_text().contains("run it"),
        vec![Reply::tool_call(
            "bash",
            json!({"command": "echo ran > marker.txt && echo MARKER_$((6*7))",
                   "description": "Leaves a marker file"}),
        )],
    );
    model.compute(
        |r| r.last_role() == "tool",
        |r| Reply::text(format!("tool said: {}", tool_messages(r).join(" | "))),
    );
}

/// Pulls the `<message ...>` elements out of a prompt.
pub fn prompt_messages(prompt: &str) -> Vec<String> {
    prompt
        .split("<message ")
        .skip(1)
        .map(|s| s.split("</message>").next().unwrap_or("").to_owned())
        .collect()
}

/// Asserts nothing more arrives in `chat` for `quiet`.
pub async fn assert_quiet(world: &World, chat: &str, expected: usize, quiet: Duration) {
    tokio::time::sleep(quiet).await;
    let texts = world.outbox_texts(chat).await;
    assert_eq!(
        texts.len(),
        expected,
        "unexpected messages in {chat}: {texts:?}"
    );
}

/// A request of the chat whose memory file names `name` (its `AGENTS.md`
/// says `WhatsApp chat "<name>"`), title requests aside.
pub fn of_chat(name: &'static str) -> impl Fn(&ChatRequest) -> bool + Send + Sync + 'static {
    move |r: &ChatRequest| {
        !r.is_title_request()
            && r.system_text()
                .contains(&format!("WhatsApp chat \"{name}\""))
    }
}

/// Waits (up to two minutes: a chat's first run boots an OpenCode instance,
/// slow on a busy machine) for a message in `chat` containing `needle`;
/// returns it.
pub async fn wait_text(w: &World, chat: &str, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let texts = w.outbox_texts(chat).await;
        if let Some(t) = texts.iter().find(|t| t.contains(needle)) {
            return t.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no message with {needle:?} in {chat}: {texts:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One stage event of the bridge's JSON log (`PB_LOG_FORMAT=json`,
/// `pocketbrain::timing=trace`): the stage, its key (chat, session or
/// request) and the wall clock in µs.
#[derive(Debug, Clone)]
pub struct StageEvent {
    pub stage: String,
    pub key: String,
    pub t_us: u64,
}

/// The stage events of the bridge log at `path`, in log order (none when
/// it cannot be read).
pub fn read_stages(path: &Path) -> Vec<StageEvent> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "pocketbrain::timing")
        .filter_map(|v| {
            let f = &v["fields"];
            Some(StageEvent {
                stage: f["stage"].as_str()?.to_owned(),
                key: f["key"].as_str()?.to_owned(),
                t_us: f["t_us"].as_u64()?,
            })
        })
        .collect()
}

/// A KiB figure of `/proc/PID/status` (`field` as `"VmRSS:"`); `None`
/// when the process or the line is gone.
pub fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
}

/// The most runs in flight at one moment: a sweep over the queue's
/// `run_began`/`run_ended` stage events, given as `(stage, time)` (an end
/// at the same microsecond as a begin counts first).
pub fn max_in_flight<'a>(events: impl IntoIterator<Item = (&'a str, u64)>) -> usize {
    let mut edges: Vec<(u64, i32)> = events
        .into_iter()
        .filter_map(|(stage, t)| match stage {
            "run_began" => Some((t, 1)),
            "run_ended" => Some((t, -1)),
            _ => None,
        })
        .collect();
    edges.sort();
    let (mut now, mut max) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        max = max.max(now);
    }
    max as usize
}
