//! The running bridge: [`App::start`] builds its parts, [`App::run`] runs
//! them until shutdown.
//!
//! Start-up does only what can fail for good and must be reported at once:
//! open the store, refuse a workspace inside a git repository (it would
//! join every chat folder into one OpenCode project), bind the HTTP port,
//! open the channel, install the plugin, spawn a managed OpenCode. Nothing in it waits for OpenCode:
//! `/health` is served from the moment `run` begins and reports
//! `opencode-unreachable` until OpenCode answers, while runs that need it
//! are retried by the queue.
//!
//! `run` starts, in order: the HTTP server (so health answers first), the
//! OpenCode event hub and readiness check, the queue, the sender, the IPC
//! processor (tool calls left from before a restart go first, so their
//! messages precede the final answers of the runs they belong to), the
//! scheduler and the WhatsApp link; then it queues every chat with work
//! left. Every task is on one tracker under one cancellation token.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use backon::Retryable;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::agent::Agent;
use crate::approvals::{ApprovalSettings, Approvals};
use crate::channel::Channel;
use crate::channel::api::{ApiChannel, Channels};
use crate::channel::fake::FakeChannel;
use crate::channel::whatsapp::WhatsAppChannel;
use crate::config::{ChannelKind, Config, Secret};
use crate::intake::{Intake, OwnerChat};
use crate::ipc::{self, IpcDirs};
use crate::opencode::OpenCode;
use crate::opencode::client::Client;
use crate::opencode::events::EventHub;
use crate::opencode::server::{self, ManagedServer, ServerError};
use crate::queue::{ChatQueue, RetryPolicy, Wake};
use crate::run::{RunSettings, Runner};
use crate::store::{Store, StoreError};
use crate::{http, scheduler, sender};

/// Why the bridge could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(
        "another bridge is running on the data folder {0} (it holds bridge.lock); stop it first"
    )]
    Locked(PathBuf),
    #[error(
        "cannot create the data folder {path} or make it owner-only (0700): {source}; make it writable by this user (a read-only mount?) or set PB_DATA_DIR to a folder this user owns"
    )]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cannot lock the data folder {path}: {source}; the bridge writes there: make it writable by this user (a read-only mount?) or set PB_DATA_DIR to another folder"
    )]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the token file {path}: {source}")]
    TokenFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("fake channel store {path}: {source}")]
    FakeChannel {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("workspace {path}: {source}")]
    Workspace {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{}; {}",
        crate::workspace::inside_git(workspace, git),
        crate::workspace::INSIDE_GIT_FIX
    )]
    InsideGit { workspace: PathBuf, git: PathBuf },
    #[error("starting opencode: {0}")]
    OpenCode(#[from] ServerError),
    #[error("cannot listen on {addr} (PB_HTTP_ADDR): {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// File in the data directory holding the HTTP address of the running bridge.
pub const HTTP_ADDR_FILE: &str = "http-addr";

/// The bridge, started and ready to run.
pub struct App {
    config: Config,
    store: Store,
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    /// Both channels, each chat's calls routed to its own.
    channel: Arc<dyn Channel>,
    main_channel: Arc<dyn Channel>,
    api: ApiChannel,
    fake: Option<FakeChannel>,
    whatsapp: Option<WhatsAppChannel>,
    ipc_dirs: IpcDirs,
    managed: Option<ManagedServer>,
    client: Client,
    /// Held while the bridge runs: `restore` and a second bridge wait for it.
    _lock: crate::backup::DataLock,
}

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

    /// Runs until `shutdown` resolves, then stops every task (waiting up to
    /// 15 s), the OpenCode server it started included.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), StartError> {
        let Self {
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
            _lock,
        } = self;
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();

        let hub = EventHub::new();
        tracker.spawn(
            hub.clone()
                .run(client.clone(), config.stream_watchdog, cancel.clone()),
        );
        let (asks_tx, asks_rx) = tokio::sync::mpsc::channel(256);
        tracker.spawn(crate::opencode::events::forward_asks(
            hub.clone(),
            asks_tx.clone(),
            cancel.clone(),
        ));
        let opencode = Arc::new(OpenCode::new(
            client.clone(),
            hub.clone(),
            config.opencode_model.clone(),
        ));
        let agent: Arc<dyn Agent> = opencode.clone();
        let queue = ChatQueue::new(
            config.max_concurrent_sessions,
            RetryPolicy {
                base: config.retry_base,
                max_delay: Duration::from_secs(300),
                attempts: config.retry_attempts,
            },
        );
        let outbox_wake = Arc::new(Notify::new());
        let tasks_wake = Arc::new(Notify::new());
        let settings = RunSettings::from_config(&config);
        let approvals = Approvals::new(
            store.clone(),
            agent.clone(),
            channel.clone(),
            outbox_wake.clone(),
            ApprovalSettings {
                timeout: config.approval_timeout,
                main_policy: config.permission,
                persona: settings.persona.clone(),
                workspace: config.workspace.clone(),
                message_limit: config.wa_chunk_limit,
            },
        );
        // (Each time the stream opens, OpenCode's pending requests are read
        // again: what was asked while the bridge was down, what it forgot.)
        drop(asks_tx);
        tracker.spawn(approvals.clone().run(asks_rx, cancel.clone()));
        let api_approvals = approvals.clone();
        let stops = crate::run::Stops::default();
        let mut intake = Intake::new(store.clone(), queue.clone(), settings.persona.clone())
            .with_approvals(approvals)
            .with_commands(crate::commands::Commands {
                store: store.clone(),
                agent: agent.clone(),
                channel: channel.clone(),
                outbox_wake: outbox_wake.clone(),
                persona: settings.persona.clone(),
                workspace: config.workspace.clone(),
                tz: config.tz,
                max_tasks_per_chat: config.max_tasks_per_chat,
                stops: stops.clone(),
                unknown_dm: config.unknown_dm,
                pins: crate::config::ModelPins::from_config(&config),
            })
            .with_media(crate::intake::MediaIntake {
                workspace: config.workspace.clone(),
                limits: config.media_max_bytes,
                persona: settings.persona.clone(),
                channel: channel.clone(),
                outbox_wake: outbox_wake.clone(),
            });
        if config.auto_main {
            intake = intake.with_owner_chat(OwnerChat {
                workspace: config.workspace.clone(),
            });
        }

        let api_routes = crate::api::router(crate::api::ApiState::new(
            store.clone(),
            agent.clone(),
            intake.clone(),
            api.clone(),
            Some(api_approvals),
            crate::api::ApiSettings {
                token: config.http_token.clone(),
                rate_per_minute: config.api_rate_per_minute,
                cors_origins: config.api_cors_origins.clone(),
                reply_timeout: config.api_reply_timeout,
                max_text_bytes: config.max_text_bytes,
                workspace: config.workspace.clone(),
            },
            cancel.clone(),
        ));
        // Health first: it answers while everything else comes up.
        let app = http::router(
            http::AppState {
                store: store.clone(),
                agent: agent.clone(),
                channel: main_channel.clone(),
                queue: queue.clone(),
                intake: intake.clone(),
                tasks_wake: tasks_wake.clone(),
                max_text_bytes: config.max_text_bytes,
                fake,
                token: config.http_token.clone(),
                opencode_url: client.base().to_string(),
            },
            Some(api_routes),
            config.http_hosts.clone(),
        );
        // The chats parked before the stop are known before /health can be
        // asked about them. (Work to resume is queued at the end, once the
        // tool-call processor runs: a tool request left from before the
        // stop is carried out before the run it belongs to is reconciled.)
        crate::run::recover::restore_parked(&store, &queue).await?;
        tracker.spawn({
            let cancel = cancel.clone();
            async move {
                if let Err(e) = http::serve(listener, app, cancel).await {
                    tracing::error!(error = %e, "HTTP server failed");
                }
            }
        });
        if let Err(e) = std::fs::write(config.data_dir.join(HTTP_ADDR_FILE), addr.to_string()) {
            tracing::warn!(error = %e, "cannot write the http-addr file (status will not find the bridge)");
        }
        tracker.spawn(wait_for_opencode(opencode, cancel.clone()));
        if let Some(server) = managed {
            tracker.spawn(supervise_managed(server, cancel.clone()));
        }

        let mut runner = Runner::new(
            settings.clone(),
            store.clone(),
            agent.clone(),
            channel.clone(),
            queue.clone(),
            outbox_wake.clone(),
        )
        .with_stops(stops)
        .with_tasks_wake(tasks_wake.clone());
        match config.transcribe() {
            Some(t) => {
                let t = crate::transcribe::HttpTranscriber::new(t);
                tracing::info!(url = t.url(), model = %config.transcribe_model, "voice notes are transcribed");
                runner = runner.with_transcriber(Arc::new(t));
            }
            None => tracing::info!(
                "no transcription endpoint (PB_TRANSCRIBE_URL): voice notes reach the agent as files"
            ),
        }
        tracker.spawn(
            queue
                .clone()
                .run(Arc::new(runner), cancel.clone(), tracker.clone()),
        );
        if let Some(events) = channel.take_events() {
            tracker.spawn(sender::apply_events(store.clone(), events, cancel.clone()));
        }
        // One sender per channel: WhatsApp does not wait for the API, nor
        // the reverse.
        let (main_wake, api_wake) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        tracker.spawn(sender::run(
            store.clone(),
            main_channel,
            |chat| !chat.is_api(),
            main_wake.clone(),
            config.workspace.clone(),
            config.media_max_bytes,
            cancel.clone(),
        ));
        tracker.spawn(sender::run(
            store.clone(),
            Arc::new(api),
            crate::ids::ChatJid::is_api,
            api_wake.clone(),
            config.workspace.clone(),
            config.media_max_bytes,
            cancel.clone(),
        ));
        // Rows are added with one wake; both senders look.
        tracker.spawn(fan_out(
            outbox_wake.clone(),
            [main_wake, api_wake],
            cancel.clone(),
        ));

        let ipc = ipc::Ipc::new(
            ipc_dirs,
            ipc::IpcDeps {
                store: store.clone(),
                agent,
                channel,
                persona: settings.persona,
                tz: settings.tz,
                workspace: settings.workspace,
                media_limits: config.media_max_bytes,
                max_tasks_per_chat: config.max_tasks_per_chat,
                outbox_wake,
                tasks_wake: tasks_wake.clone(),
            },
        );
        ipc.scan().await;
        tracker.spawn(ipc.run(cancel.clone()));

        let dispatch_queue = queue.clone();
        let scheduler = scheduler::Scheduler::new(
            store.clone(),
            tasks_wake,
            Arc::new(scheduler::SystemClock),
            Arc::new(move |chat: &crate::ids::ChatJid| dispatch_queue.notify(chat, Wake::TaskDue)),
        );
        tracker.spawn(scheduler.run(cancel.clone()));

        if let Some(wa) = whatsapp {
            tracker.spawn(wa.supervise(Arc::new(intake), cancel.clone()));
        }

        let resumed = crate::run::recover::resume_pending(&store, &queue).await?;
        tracing::info!(http = %addr, opencode = %client.base(), channel = ?config.channel, resumed, "pocketbrain is running");
        if config.channel == ChannelKind::Fake {
            tracing::warn!(
                "PB_CHANNEL=fake: no WhatsApp; send messages with POST http://{addr}/fake/inbox and read replies at GET /fake/outbox"
            );
        }

        shutdown.await;
        tracing::info!("shutting down");
        cancel.cancel();
        tracker.close();
        if tokio::time::timeout(Duration::from_secs(15), tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("some tasks did not stop within 15 s");
        }
        let _ = std::fs::remove_file(config.data_dir.join(HTTP_ADDR_FILE));
        Ok(())
    }
}

/// Passes each wake of `from` on to every sender's own wake (a wake is a
/// stored permit: one waiter takes it, so each sender needs its own).
async fn fan_out<const N: usize>(
    from: Arc<Notify>,
    to: [Arc<Notify>; N],
    cancel: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = from.notified() => to.iter().for_each(|n| n.notify_one()),
        }
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
        transport: None,
        http: None,
    }
}

/// Checks OpenCode's health until it answers (backing off up to 5 s
/// between tries), so health turns `opencode-ok` without waiting for a run.
/// Logs once when it starts waiting and once when OpenCode answers.
async fn wait_for_opencode(opencode: Arc<OpenCode>, cancel: CancellationToken) {
    let backoff = backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .without_max_times();
    let mut told = false;
    let check = (|| opencode.check_health()).retry(backoff).notify(|e, _| {
        if !told {
            told = true;
            tracing::warn!(code = "opencode-unreachable", error = %e, "waiting for OpenCode; messages are kept and answered once it is up");
        }
    });
    tokio::select! {
        _ = cancel.cancelled() => {}
        r = check => {
            if let Ok(version) = r {
                tracing::info!(%version, "OpenCode is healthy");
            }
        }
    }
}

/// Holds the managed OpenCode: stops it on shutdown, and starts it again
/// (same port, backing off up to a minute) when it exits by itself; health
/// reports it unreachable meanwhile.
async fn supervise_managed(mut server: ManagedServer, cancel: CancellationToken) {
    let fresh = || {
        backon::BackoffBuilder::build(
            backon::ExponentialBuilder::default()
                .with_min_delay(Duration::from_secs(1))
                .with_max_delay(Duration::from_secs(60))
                .without_max_times(),
        )
    };
    let mut backoff = fresh();
    loop {
        let started = tokio::time::Instant::now();
        tokio::select! {
            _ = cancel.cancelled() => {
                server.stop(Duration::from_secs(5)).await;
                return;
            }
            status = server.exited() => {
                tracing::error!(code = "opencode-unreachable", status = ?status, "the managed opencode serve exited; starting it again");
            }
        }
        // It ran for a while: a new crash starts the backoff over.
        if started.elapsed() > Duration::from_secs(300) {
            backoff = fresh();
        }
        let delay = backoff.next().unwrap_or(Duration::from_secs(60));
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        if let Err(e) = server.respawn() {
            tracing::error!(error = %e, "cannot start opencode serve again; the bridge keeps running without it");
            return;
        }
    }
}
