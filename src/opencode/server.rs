//! A managed `opencode serve`, for when `PB_OPENCODE_URL` is not given.
//!
//! Started on a free loopback port chosen by the bridge (`--port 0` would
//! try 4096 first), with the workspace as its working directory and
//! headless settings: `OPENCODE_CLIENT=serve` and a permission config that
//! never asks a person. On Linux the child gets `PR_SET_PDEATHSIG`, so a
//! `kill -9` of the bridge does not leave an orphan server behind. Stopped
//! with SIGTERM on shutdown, then killed after a grace period.
//!
//! Secrets. The child gets an allow-list of the bridge's environment
//! ([`child_env`]), never the whole of it: no `PB_*` setting, no path to
//! the bridge's data. And it always requires a password: the configured
//! one, or a random one made per bridge start ([`random_password`]), kept
//! for restarts of the child so the bridge's client keeps working.

use std::collections::BTreeSet;
use std::ffi::OsString;
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
        "no opencode binary found (looked at PB_OPENCODE_BIN, PATH and .tools/node_modules/.bin/opencode); \
         run scripts/install-tools.sh or set PB_OPENCODE_URL to a running server"
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

/// Names passed as they are: what a program needs to run at all (paths,
/// user, locale, terminal, time zone, temp folder, certificates, proxies).
const PASSED: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "TZ",
    "TERM",
    "COLORTERM",
    "NO_COLOR",
    "TMPDIR",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "NODE_EXTRA_CA_CERTS",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
];
/// Prefixes passed: locale categories, XDG folders, OpenCode's own settings.
const PASSED_PREFIXES: &[&str] = &["LC_", "XDG_", "OPENCODE_"];
/// `OPENCODE_*` names that are the bridge's settings (their old names, still
/// read), or set explicitly.
const BRIDGE_OPENCODE_VARS: &[&str] = &[
    "OPENCODE_URL",
    "OPENCODE_BIN",
    "OPENCODE_MODEL",
    "OPENCODE_SERVER_PASSWORD",
    "OPENCODE_SERVER_USERNAME",
    "OPENCODE_CONFIG_CONTENT",
];

/// Whether the managed OpenCode gets the bridge's variable `name`: the
/// allow-list, provider keys (`*_API_KEY`, the names OpenCode's providers
/// read), and the `extra` names (those its config references as
/// `{env:NAME}`, and `PB_OPENCODE_ENV`). Never a bridge setting (`PB_*`).
pub fn passes(name: &str, extra: &BTreeSet<String>) -> bool {
    if name.starts_with("PB_") || BRIDGE_OPENCODE_VARS.contains(&name) {
        return false;
    }
    PASSED.contains(&name)
        || PASSED_PREFIXES.iter().any(|p| name.starts_with(p))
        || name.ends_with("_API_KEY")
        || extra.contains(name)
}

/// The managed OpenCode's environment, from the bridge's `vars`.
pub fn child_env(
    vars: impl IntoIterator<Item = (OsString, OsString)>,
    extra: &BTreeSet<String>,
) -> Vec<(OsString, OsString)> {
    vars.into_iter()
        .filter(|(k, _)| k.to_str().is_some_and(|k| passes(k, extra)))
        .collect()
}

/// The names written as `{env:NAME}` in an OpenCode config text.
pub fn env_references(config: &str) -> BTreeSet<String> {
    config
        .split("{env:")
        .skip(1)
        .filter_map(|rest| {
            let name = &rest[..rest.find('}')?];
            let ok =
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            ok.then(|| name.to_owned())
        })
        .collect()
}

/// The variables the user's OpenCode config references (`{env:NAME}`), in
/// `OPENCODE_CONFIG_CONTENT`, the file `OPENCODE_CONFIG`, the workspace's
/// `opencode.json[c]` (also in its `.opencode/`), and the user's global
/// config folder; bridge settings (`PB_*`) are left out.
pub fn config_env_references(workspace: &Path) -> BTreeSet<String> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    let mut texts: Vec<String> = var("OPENCODE_CONFIG_CONTENT")
        .and_then(|v| v.into_string().ok())
        .into_iter()
        .collect();
    let mut files: Vec<PathBuf> = var("OPENCODE_CONFIG")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    let global = var("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".config")))
        .map(|c| c.join("opencode"));
    for dir in [
        Some(workspace.to_owned()),
        Some(workspace.join(".opencode")),
        global,
    ]
    .into_iter()
    .flatten()
    {
        for name in ["opencode.json", "opencode.jsonc", "config.json"] {
            files.push(dir.join(name));
        }
    }
    for f in files {
        // A config is small; a huge file is not one we want to scan.
        if std::fs::metadata(&f).is_ok_and(|m| m.is_file() && m.len() < 4 << 20)
            && let Ok(t) = std::fs::read_to_string(&f)
        {
            texts.push(t);
        }
    }
    texts
        .iter()
        .flat_map(|t| env_references(t))
        .filter(|n| !n.starts_with("PB_"))
        .collect()
}

/// A fresh password for the managed OpenCode: 256 random bits, hex.
pub fn random_password() -> String {
    (0..4)
        .map(|_| format!("{:016x}", rand::random::<u64>()))
        .collect()
}

/// The running child.
pub struct ManagedServer {
    child: Child,
    pub url: Url,
    /// How to start it again (same port, so the client's URL holds).
    bin: PathBuf,
    workspace: PathBuf,
    auth: (String, String),
    /// Extra variable names passed besides the allow-list.
    extra_env: BTreeSet<String>,
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
        auth: (&str, &str),
        extra_env: BTreeSet<String>,
    ) -> Result<Self, ServerError> {
        let port = std::net::TcpListener::bind(("127.0.0.1", 0))
            .and_then(|l| l.local_addr())
            .map_err(ServerError::NoPort)?
            .port();
        let url = Url::parse(&format!("http://127.0.0.1:{port}")).expect("a valid url");
        let auth = (auth.0.to_owned(), auth.1.to_owned());
        let child = Self::start_child(bin, workspace, &auth, &extra_env, port)?;
        tracing::info!(%url, bin = %bin.display(), "started opencode serve");
        Ok(Self {
            child,
            url,
            bin: bin.to_owned(),
            workspace: workspace.to_owned(),
            auth,
            extra_env,
        })
    }

    /// Starts it again on the same port, after it exited.
    pub fn respawn(&mut self) -> Result<(), ServerError> {
        let port = self.url.port().expect("a managed server's url has a port");
        self.child = Self::start_child(
            &self.bin,
            &self.workspace,
            &self.auth,
            &self.extra_env,
            port,
        )?;
        tracing::info!(url = %self.url, "started opencode serve again");
        Ok(())
    }

    fn start_child(
        bin: &Path,
        workspace: &Path,
        auth: &(String, String),
        extra_env: &BTreeSet<String>,
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
        .env_clear()
        .envs(child_env(std::env::vars_os(), extra_env))
        .env("OPENCODE_CLIENT", "serve")
        .env("OPENCODE_CONFIG_CONTENT", config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
        // The child asks for exactly the credentials the bridge's client sends.
        cmd.env("OPENCODE_SERVER_USERNAME", &auth.0)
            .env("OPENCODE_SERVER_PASSWORD", &auth.1);
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

    fn env_of(pairs: &[(&str, &str)], extra: &[&str]) -> Vec<String> {
        let extra = extra.iter().map(|s| s.to_string()).collect();
        child_env(
            pairs
                .iter()
                .map(|(k, v)| (OsString::from(k), OsString::from(v))),
            &extra,
        )
        .into_iter()
        .map(|(k, _)| k.into_string().unwrap())
        .collect()
    }

    #[test]
    fn the_child_gets_the_allow_list_and_no_bridge_setting() {
        let bridge = [
            ("PATH", "/bin"),
            ("HOME", "/home/pb"),
            ("LC_ALL", "C.UTF-8"),
            ("XDG_CONFIG_HOME", "/x"),
            ("HTTPS_PROXY", "http://proxy"),
            ("OPENCODE_DISABLE_MODELS_FETCH", "1"),
            ("OPENCODE_CONFIG", "/etc/oc.json"),
            ("ANTHROPIC_API_KEY", "sk-a"),
            ("OPENROUTER_API_KEY", "sk-o"),
            ("MY_PROVIDER_SECRET", "s"),
            ("AWS_REGION", "eu"),
            ("PB_DATA_DIR", "/data"),
            ("PB_WORKSPACE", "/ws"),
            ("PB_HTTP_ADDR", "127.0.0.1:8787"),
            ("OPENCODE_URL", "http://x"),
            ("OPENCODE_SERVER_PASSWORD", "from-bridge-env"),
            ("GITHUB_TOKEN", "ghp"),
            ("DATABASE_URL", "postgres://"),
        ];
        assert_eq!(
            env_of(&bridge, &["MY_PROVIDER_SECRET", "PB_DATA_DIR"]),
            vec![
                "PATH",
                "HOME",
                "LC_ALL",
                "XDG_CONFIG_HOME",
                "HTTPS_PROXY",
                "OPENCODE_DISABLE_MODELS_FETCH",
                "OPENCODE_CONFIG",
                "ANTHROPIC_API_KEY",
                "OPENROUTER_API_KEY",
                "MY_PROVIDER_SECRET",
            ],
            "a PB_* name is never passed, even when named"
        );
    }

    #[test]
    fn env_references_are_found_in_a_config() {
        let refs = env_references(
            r#"{"provider":{"a":{"options":{"apiKey":"{env:MY_KEY}","baseURL":"{env:BASE_1}"}}},
               "x":"{env:}","y":"{env:bad name}","z":"{env:MY_KEY}"}"#,
        );
        assert_eq!(
            refs.into_iter().collect::<Vec<_>>(),
            vec!["BASE_1", "MY_KEY"]
        );
        assert!(passes("MY_KEY", &env_references("{env:MY_KEY}")));
    }

    #[test]
    fn random_passwords_are_long_and_differ() {
        let (a, b) = (random_password(), random_password());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }

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
