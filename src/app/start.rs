//! [`App::start`]: the parts built, and what can fail for good reported.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::channel::Channel;
use crate::channel::api::{ApiChannel, Channels};
use crate::channel::fake::FakeChannel;
use crate::channel::whatsapp::WhatsAppChannel;
use crate::config::{ChannelKind, Config, Secret};
use crate::ipc::IpcDirs;
use crate::opencode::client::Client;
use crate::opencode::server::{self, ManagedServer, ServerError};
use crate::store::{Store, StoreError};

use super::{App, StartError};

impl App {
    /// Opens the store, binds the HTTP port (before anything is spawned, so
    /// a port clash is reported at once), opens the channel, installs the
    /// plugin and, without `PB_OPENCODE_URL`, spawns OpenCode.
    pub async fn start(config: Config) -> Result<Self, StartError> {
        config.check_http_bind()?;
        crate::metrics::set_channel(match config.channel {
            ChannelKind::WhatsApp => "whatsapp",
            ChannelKind::Fake => "fake",
        });
        // Owner-only, whatever the umask or an older install left.
        crate::owner_only::dir(&config.data_dir).map_err(|source| StartError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let lock = crate::backup::DataLock::try_acquire(&config.data_dir)
            .map_err(|source| StartError::Lock {
                path: config.data_dir.clone(),
                source,
            })?
            .ok_or_else(|| StartError::Locked(config.data_dir.clone()))?;
        let db = config.db_path();
        let store = tokio::task::spawn_blocking(move || Store::open(&db))
            .await
            .map_err(|e| StoreError::Join(e.to_string()))??;
        let workspace_err = |path: PathBuf| move |source| StartError::Workspace { path, source };
        std::fs::create_dir_all(&config.workspace)
            .map_err(workspace_err(config.workspace.clone()))?;
        let workspace = std::path::absolute(&config.workspace)
            .map_err(workspace_err(config.workspace.clone()))?;
        // Chats are kept apart only while each chat folder is its own
        // OpenCode project (see `crate::workspace`).
        if let Some(git) = crate::workspace::enclosing_git(&workspace) {
            return Err(StartError::InsideGit { workspace, git });
        }

        let listen_err = |source| StartError::Listen {
            addr: config.http_addr,
            source,
        };
        let listener = tokio::net::TcpListener::bind(config.http_addr)
            .await
            .map_err(listen_err)?;
        let addr = listener.local_addr().map_err(listen_err)?;
        write_token_file(&config)?;

        let (main_channel, fake, whatsapp): (Arc<dyn Channel>, _, _) = match config.channel {
            ChannelKind::WhatsApp => {
                let wa = WhatsAppChannel::new(store.clone(), whatsapp_options(&config));
                (Arc::new(wa.clone()), None, Some(wa))
            }
            ChannelKind::Fake => {
                let path = config.data_dir.join("fake-phone.sqlite3");
                let fake = FakeChannel::open(&path)
                    .map_err(|source| StartError::FakeChannel { path, source })?;
                (Arc::new(fake.clone()), Some(fake), None)
            }
        };
        // The local API beside it: each chat's messages go through its own
        // channel.
        let api = ApiChannel::new();
        let channel: Arc<dyn Channel> = Arc::new(Channels {
            main: main_channel.clone(),
            api: api.clone(),
        });

        // The agent's tools: the plugin in the workspace, requests through PB_IPC_DIR.
        let ipc_dirs = IpcDirs::new(
            std::path::absolute(config.ipc_dir()).map_err(workspace_err(config.ipc_dir()))?,
        );
        ipc_dirs
            .create()
            .map_err(workspace_err(ipc_dirs.root.clone()))?;
        // Variables OpenCode's config reads, and those named in
        // PB_OPENCODE_ENV: passed to a managed OpenCode, and hidden from
        // the agent's shell by the plugin (which reads the list from its
        // config file).
        let mut extra_env = server::config_env_references(&workspace);
        extra_env.extend(config.opencode_env.iter().cloned());
        let secret_env: Vec<String> = extra_env.iter().cloned().collect();
        crate::plugin::install(&workspace, &ipc_dirs.root, config.ipc_timeout, &secret_env)
            .map_err(workspace_err(workspace.join(".opencode")))?;
        // The chat profiles, as OpenCode agents every prompt names.
        // Memory every chat shares, and the shipped skills.
        crate::memory::install(&workspace)
            .map_err(workspace_err(workspace.join(crate::memory::GLOBAL_DIR)))?;
        crate::profiles::install(&workspace, &crate::profiles::Skills::from_config(&config))
            .map_err(workspace_err(workspace.join(crate::profiles::CONFIG_FILE)))?;
        if config.approval_timeout >= config.run_timeout {
            tracing::warn!(
                approval_timeout = ?config.approval_timeout,
                run_timeout = ?config.run_timeout,
                "PB_APPROVAL_TIMEOUT is not shorter than PB_RUN_TIMEOUT: a run waiting for the owner's approval is aborted before the approval expires"
            );
        }

        let mut password = config.opencode_password.clone();
        let (managed, url) = match &config.opencode_url {
            Some(url) => (None, url.clone()),
            None => {
                let bin = server::find_binary(config.opencode_bin.as_deref())
                    .ok_or(ServerError::NotFound)?;
                // Never unauthenticated: without a configured password, a
                // random one for this start (restarts of the child reuse it).
                let pass = password
                    .get_or_insert_with(|| Secret::new(server::random_password()))
                    .clone();
                let auth = (config.opencode_username.as_str(), pass.expose());
                let server = ManagedServer::spawn(&bin, &workspace, auth, extra_env)?;
                let url = server.url.clone();
                (Some(server), url)
            }
        };
        let auth = password.map(|p| (config.opencode_username.clone(), p));
        let client = Client::new(url, auth);
        Ok(Self {
            config,
            store,
            listener,
            addr,
            channel,
            main_channel,
            api,
            fake,
            whatsapp,
            ipc_dirs,
            managed,
            client,
            _lock: lock,
        })
    }
}

/// Writes `PB_HTTP_TOKEN` to [`Config::token_file`], readable by its owner
/// only, so the CLI finds it; without a token, removes a stale file.
fn write_token_file(config: &Config) -> Result<(), StartError> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let path = config.token_file();
    let err = |source| StartError::TokenFile {
        path: path.clone(),
        source,
    };
    let Some(token) = &config.http_token else {
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(err(e)),
            _ => return Ok(()),
        }
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .map_err(err)?;
    // An older file keeps its mode through open: narrow it first.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(err)?;
    f.write_all(token.expose().as_bytes()).map_err(err)?;
    Ok(())
}

/// The WhatsApp channel's settings from the configuration.
fn whatsapp_options(config: &Config) -> crate::channel::whatsapp::WhatsAppOptions {
    use crate::channel::whatsapp::{Governor, WhatsAppOptions};
    WhatsAppOptions {
        device_db: config.whatsapp_db(),
        pair_phone: config.whatsapp_phone.clone(),
        chunk_limit: config.wa_chunk_limit,
        read_receipts: config.read_receipts,
        governor: Governor {
            per_chat_per_minute: config.wa_per_chat_per_minute,
            per_minute: config.wa_per_minute,
            jitter: Duration::from_millis(800),
        },
        media_limits: config.media_max_bytes,
        silence: config.whatsapp_silence,
        transport: None,
        http: None,
    }
}
