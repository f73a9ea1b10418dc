//! A managed `opencode serve`, for when `OPENCODE_URL` is not given.
//!
//! Started on a free loopback port chosen by the bridge (`--port 0` would
//! try 4096 first), with the workspace as its working directory and
//! headless settings: `OPENCODE_CLIENT=serve` and a permission config that
//! never asks a person. On Linux the child gets `PR_SET_PDEATHSIG`, so a
//! `kill -9` of the bridge does not leave an orphan server behind. Stopped
//! with SIGTERM on shutdown, then killed after a grace period.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use reqwest::Url;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Why the server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(
        "no opencode binary found (looked at OPENCODE_BIN, PATH and .tools/node_modules/.bin/opencode); \
         run scripts/install-tools.sh or set OPENCODE_URL to a running server"
    )]
    NotFound,
    #[error("cannot start {bin}: {source}")]
    Spawn {
        bin: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot find a free loopback port for opencode serve: {0}")]
    NoPort(std::io::Error),
    #[error("OPENCODE_CONFIG_CONTENT is not a JSON object: {0}")]
    BadConfig(String),
}

/// The running child.
pub struct ManagedServer {
    child: Child,
    pub url: Url,
    /// How to start it again (same port, so the client's URL holds).
    bin: PathBuf,
    workspace: PathBuf,
    auth: Option<(String, String)>,
}

/// Finds the opencode binary: explicit setting, then PATH, then the
/// project's tools folder (relative to the working directory and to the
/// running executable's ancestors).
pub fn find_binary(explicit: Option<&Path>) -> Option<PathBuf> {
    // Absolute, because the child runs with the workspace as its cwd.
    if let Some(p) = explicit {
        return std::path::absolute(p).ok();
    }
    let rel = Path::new(".tools/node_modules/.bin/opencode");
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("opencode"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let exe_ancestors = std::env::current_exe()
        .ok()
        .map(|e| {
            e.ancestors()
                .skip(1)
                .map(|a| a.join(rel))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain(std::iter::once(rel.to_owned()))
        .chain(exe_ancestors)
        .find(|p| p.is_file())
        .and_then(|p| std::path::absolute(p).ok())
}

/// The config given to the server: the user's `OPENCODE_CONFIG_CONTENT` (if
/// any) with headless permission defaults filled in where it says nothing.
pub fn headless_config(user: Option<&str>) -> Result<String, ServerError> {
    let mut cfg: Value = match user.filter(|s| !s.trim().is_empty()) {
        Some(s) => serde_json::from_str(s).map_err(|e| ServerError::BadConfig(e.to_string()))?,
        None => json!({}),
    };
    let Some(obj) = cfg.as_object_mut() else {
        return Err(ServerError::BadConfig("top level must be an object".into()));
    };
    let perm = obj.entry("permission").or_insert_with(|| json!({}));
    if let Some(p) = perm.as_object_mut() {
        for (k, v) in [
            ("*", "allow"),
            ("external_directory", "allow"),
            ("doom_loop", "allow"),
            ("question", "deny"),
        ] {
            p.entry(k).or_insert_with(|| json!(v));
        }
    }
    Ok(cfg.to_string())
}

impl ManagedServer {
    /// Starts `opencode serve` in `workspace` on a free loopback port and
    /// returns at once: the caller finds out that it answers through its
    /// health route. (`--port 0` would try 4096 first, so the port is
    /// chosen here.) Its output goes to our logs.
    pub fn spawn(
        bin: &Path,
        workspace: &Path,
        auth: Option<(&str, &str)>,
    ) -> Result<Self, ServerError> {
        let port = std::net::TcpListener::bind(("127.0.0.1", 0))
            .and_then(|l| l.local_addr())
            .map_err(ServerError::NoPort)?
            .port();
        let url = Url::parse(&format!("http://127.0.0.1:{port}")).expect("a valid url");
        let auth = auth.map(|(u, p)| (u.to_owned(), p.to_owned()));
        let child = Self::start_child(bin, workspace, auth.as_ref(), port)?;
        tracing::info!(%url, bin = %bin.display(), "started opencode serve");
        Ok(Self {
            child,
            url,
            bin: bin.to_owned(),
            workspace: workspace.to_owned(),
            auth,
        })
    }

    /// Starts it again on the same port, after it exited.
    pub fn respawn(&mut self) -> Result<(), ServerError> {
        let port = self.url.port().expect("a managed server's url has a port");
        self.child = Self::start_child(&self.bin, &self.workspace, self.auth.as_ref(), port)?;
        tracing::info!(url = %self.url, "started opencode serve again");
        Ok(())
    }

    fn start_child(
        bin: &Path,
        workspace: &Path,
        auth: Option<&(String, String)>,
        port: u16,
    ) -> Result<Child, ServerError> {
        let config = headless_config(std::env::var("OPENCODE_CONFIG_CONTENT").ok().as_deref())?;
        let mut cmd = Command::new(bin);
        cmd.args([
            "serve",
            "--hostname",
            "127.0.0.1",
            "--port",
            &port.to_string(),
        ])
        .current_dir(workspace)
        .env("OPENCODE_CLIENT", "serve")
        .env("OPENCODE_CONFIG_CONTENT", config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
        // The child asks for exactly the credentials the bridge's client sends.
        match auth {
            Some((user, password)) => cmd
                .env("OPENCODE_SERVER_USERNAME", user)
                .env("OPENCODE_SERVER_PASSWORD", password),
            None => cmd
                .env_remove("OPENCODE_SERVER_USERNAME")
                .env_remove("OPENCODE_SERVER_PASSWORD"),
        };
        #[cfg(target_os = "linux")]
        // SAFETY: prctl is async-signal-safe and touches no shared state.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|source| ServerError::Spawn {
            bin: bin.to_owned(),
            source,
        })?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        // Drain its output into our logs; both end with the child.
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("listening on ") {
                    tracing::info!(target: "opencode", "{line}");
                } else {
                    tracing::debug!(target: "opencode", "{line}");
                }
            }
        });
        tokio::spawn(async move {
            let mut err = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = err.next_line().await {
                tracing::info!(target: "opencode", "{line}");
            }
        });
        Ok(child)
    }

    /// Resolves when the server process has exited, with its status.
    pub async fn exited(&mut self) -> std::io::Result<std::process::ExitStatus> {
        self.child.wait().await
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub async fn stop(mut self, grace: Duration) {
        if let Some(pid) = self.child.id() {
            // SAFETY: plain kill(2) on our own child's pid.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGTERM);
            }
        }
        if tokio::time::timeout(grace, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
        tracing::info!("stopped opencode serve");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headless_config_fills_only_gaps() {
        let c: Value = serde_json::from_str(&headless_config(None).unwrap()).unwrap();
        assert_eq!(c["permission"]["*"], "allow");
        assert_eq!(c["permission"]["question"], "deny");
        let c: Value = serde_json::from_str(
            &headless_config(Some(
                r#"{"model":"a/b","permission":{"bash":"deny","*":"ask"}}"#,
            ))
            .unwrap(),
        )
        .unwrap();
        assert_eq!(c["model"], "a/b");
        assert_eq!(c["permission"]["bash"], "deny");
        assert_eq!(c["permission"]["*"], "ask");
        assert_eq!(c["permission"]["doom_loop"], "allow");
        assert!(headless_config(Some("[1]")).is_err());
        assert!(headless_config(Some("{nope")).is_err());
    }
}
