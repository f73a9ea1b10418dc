//! The commands that ask the running bridge: `health`, `status`,
//! `doctor`, and the client they share ([`Api`]).

use super::CliError;
use super::open_store;
use crate::config::Config;

/// The running bridge's HTTP API: its address (what it wrote at start,
/// else the setting) and its token (`PB_HTTP_TOKEN`, else the file the
/// bridge wrote).
pub struct Api {
    pub addr: String,
    pub token: Option<crate::config::Secret>,
    http: reqwest::Client,
}

impl Api {
    pub fn new(config: &Config, timeout: std::time::Duration) -> Self {
        let token = config.http_token.clone().or_else(|| {
            std::fs::read_to_string(config.token_file())
                .ok()
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
                .map(crate::config::Secret::new)
        });
        Api {
            addr: bridge_addr(config),
            token,
            http: reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .expect("a client with a timeout builds"),
        }
    }

    pub(super) fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self
            .http
            .request(method, format!("http://{}{path}", self.addr));
        match &self.token {
            Some(t) => r.bearer_auth(t.expose()),
            None => r,
        }
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::GET, path)
    }

    /// `GET path` as JSON, if the bridge answers with a success.
    pub(super) async fn get_json(&self, path: &str) -> Option<serde_json::Value> {
        let r = self.get(path).send().await.ok()?;
        if !r.status().is_success() {
            return None;
        }
        r.json().await.ok()
    }
}

pub(super) async fn doctor(config: &Config, json: bool) -> Result<(), CliError> {
    let api = Api::new(config, std::time::Duration::from_secs(5));
    let running = api.get_json("/status").await;
    let checks = crate::doctor::run(
        config,
        &crate::doctor::BridgeApi {
            addr: api.addr.clone(),
            token: api.token.clone(),
        },
        running,
    )
    .await;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&checks).unwrap_or_default()
        );
    } else {
        print!("{}", crate::doctor::render(&checks));
    }
    if crate::doctor::broken(&checks) {
        Err(CliError::Broken)
    } else {
        Ok(())
    }
}

pub(super) async fn health(config: &Config) -> Result<(), CliError> {
    let api = Api::new(config, std::time::Duration::from_secs(3));
    let addr = api.addr.clone();
    let unhealthy = |why: String| CliError::Unhealthy(format!("bridge at {addr}: {why}"));
    let response = api
        .get("/health")
        .send()
        .await
        .map_err(|e| unhealthy(format!("no answer ({e})")))?;
    let ok = response.status().is_success();
    let h: serde_json::Value = response
        .json()
        .await
        .map_err(|e| unhealthy(format!("unreadable answer ({e})")))?;
    let codes: Vec<&str> = h["codes"]
        .as_array()
        .map(|c| c.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    println!(
        "{} {}",
        h["status"].as_str().unwrap_or("?"),
        codes.join(" ")
    );
    if ok {
        Ok(())
    } else {
        Err(unhealthy(format!("status {}", h["status"])))
    }
}

pub(super) async fn status(config: &Config, json: bool) -> Result<(), CliError> {
    let api = Api::new(config, std::time::Duration::from_secs(3));
    let from_bridge = api
        .get_json("/status")
        .await
        .and_then(|v| serde_json::from_value::<crate::status::Status>(v).ok());
    let st = match from_bridge {
        Some(st) => st,
        None => crate::status::from_store(&open_store(config)?).await?,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&st).unwrap_or_default());
    } else {
        print!("{}", crate::status::render_text(&st, config.tz));
    }
    Ok(())
}

/// The running bridge's `/health`, if it answers.
pub(super) async fn live_health(config: &Config) -> Option<serde_json::Value> {
    Api::new(config, std::time::Duration::from_secs(3))
        .get("/health")
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

/// The running bridge's HTTP address: what it wrote at start, else the setting.
pub(super) fn bridge_addr(config: &Config) -> String {
    std::fs::read_to_string(config.data_dir.join(crate::HTTP_ADDR_FILE))
        .ok()
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| config.http_addr.to_string())
}
