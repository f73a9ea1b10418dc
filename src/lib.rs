//! PocketBrain: a personal AI assistant on WhatsApp, as a bridge between a
//! chat channel and a separately running `opencode serve`.
//!
//! The map (see `docs/ARCHITECTURE.md` for how one message flows):
//!
//! - [`config`]: one typed configuration from flags and environment.
//! - [`ids`]: newtype identifiers (`ChatJid`, `SessionId`, ...).
//! - [`store`]: SQLite (messages, chats, cursors, sessions, outbox, runs).
//! - [`channel`]: the `Channel` trait, WhatsApp (`channel::whatsapp`) and the
//!   fake channel.
//! - [`router`]: which messages start a run (registration, triggers).
//! - [`queue`]: the per-chat queue: one run per chat, a global cap, retries.
//! - [`prompt`]: the escaped prompt block a run sends.
//! - [`agent`]: the `Agent` trait; [`opencode`] implements it over HTTP + SSE.
//! - [`bridge`]: a run from pending messages to an outbox row.
//! - [`outbound`]: what of an answer is visible; [`sender`] delivers the outbox.
//! - [`http`]: health and the fake channel's HTTP contract.
//! - [`ipc`]: tool calls from the OpenCode plugin, through files; [`tools`]
//!   carries them out; [`schedule`] parses task schedules and [`scheduler`]
//!   fires them through the queue.
//! - [`cli`]: the command line (`serve`, `chats`, `status`).
//!
//! [`serve`] wires them together and runs until its shutdown future resolves.

pub mod agent;
pub mod bridge;
pub mod channel;
pub mod cli;
pub mod config;
pub mod http;
pub mod ids;
pub mod ipc;
pub mod opencode;
pub mod outbound;
pub mod prompt;
pub mod queue;
pub mod router;
pub mod schedule;
pub mod scheduler;
pub mod sender;
pub mod store;
pub mod tools;

use std::sync::Arc;
use std::time::Duration;

use backon::Retryable;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::agent::Agent;
use crate::bridge::Bridge;
use crate::channel::Channel;
use crate::channel::fake::FakeChannel;
use crate::channel::whatsapp::WhatsAppChannel;
use crate::config::{ChannelKind, Config};
use crate::opencode::OpenCode;
use crate::opencode::client::Client;
use crate::opencode::events::EventHub;
use crate::opencode::server::{ManagedServer, ServerError};
use crate::queue::{ChatQueue, RetryPolicy};
use crate::store::{Store, StoreError};

/// Why the bridge could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("fake channel store {path}: {source}")]
    FakeChannel {
        path: std::path::PathBuf,
        source: rusqlite::Error,
    },
    #[error("workspace {path}: {source}")]
    Workspace {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("starting opencode: {0}")]
    OpenCode(#[from] ServerError),
    #[error("cannot listen on {addr} (PB_HTTP_ADDR): {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// File in the data directory holding the HTTP address of the running bridge.
pub const HTTP_ADDR_FILE: &str = "http-addr";

/// Runs the bridge until `shutdown` resolves, then stops every task (waiting
/// up to 10 s) and the OpenCode server it started, if any.
pub async fn serve(
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServeError> {
    let db = config.db_path();
    let store = tokio::task::spawn_blocking(move || Store::open(&db))
        .await
        .map_err(|e| StoreError::Join(e.to_string()))??;
    std::fs::create_dir_all(&config.workspace).map_err(|source| ServeError::Workspace {
        path: config.workspace.clone(),
        source,
    })?;
    let workspace =
        std::path::absolute(&config.workspace).map_err(|source| ServeError::Workspace {
            path: config.workspace.clone(),
            source,
        })?;

    // Bound first, so a port clash is reported before OpenCode is started;
    // connections wait in the backlog until the server runs below.
    let listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .map_err(|source| ServeError::Listen {
            addr: config.http_addr,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Listen {
        addr: config.http_addr,
        source,
    })?;

    let (channel, fake, whatsapp): (
        Arc<dyn Channel>,
        Option<FakeChannel>,
        Option<WhatsAppChannel>,
    ) = match config.channel {
        ChannelKind::WhatsApp => {
            let wa = WhatsAppChannel::new(store.clone(), whatsapp_options(&config));
            (Arc::new(wa.clone()), None, Some(wa))
        }
        ChannelKind::Fake => {
            let path = config.data_dir.join("fake-phone.sqlite3");
            let fake = FakeChannel::open(&path)
                .map_err(|source| ServeError::FakeChannel { path, source })?;
            (Arc::new(fake.clone()), Some(fake), None)
        }
    };

    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();

    // The agent's tools: the plugin shim in the workspace, IPC through data/ipc.
    let ipc_dirs = ipc::IpcDirs::new(std::path::absolute(config.ipc_dir()).map_err(|source| {
        ServeError::Workspace {
            path: config.ipc_dir(),
            source,
        }
    })?);
    ipc_dirs.create().map_err(|source| ServeError::Workspace {
        path: ipc_dirs.root.clone(),
        source,
    })?;
    ipc::install_plugin(&workspace, &ipc_dirs.root, config.ipc_timeout).map_err(|source| {
        ServeError::Workspace {
            path: workspace.join(".opencode"),
            source,
        }
    })?;

    let (managed, url) = match &config.opencode_url {
        Some(url) => (None, url.clone()),
        None => {
            let bin = opencode::server::find_binary(config.opencode_bin.as_deref())
                .ok_or(ServerError::NotFound)?;
            let auth = config
                .opencode_password
                .as_ref()
                .map(|p| (config.opencode_username.as_str(), p.expose()));
            let server = ManagedServer::start(&bin, &workspace, auth).await?;
            let url = server.url.clone();
            (Some(server), url)
        }
    };
    let auth = config
        .opencode_password
        .clone()
        .map(|p| (config.opencode_username.clone(), p));
    let client = Client::new(url.clone(), auth);
    wait_for_opencode(&client).await;

    let hub = EventHub::new();
    tracker.spawn(hub.clone().run(
        client.clone(),
        config.stream_watchdog,
        config.permission,
        cancel.clone(),
    ));
    let agent: Arc<dyn Agent> = Arc::new(OpenCode::new(client, hub, config.opencode_model.clone()));

    let queue = ChatQueue::new(
        config.max_concurrent_sessions,
        RetryPolicy {
            base: config.retry_base,
            max_delay: Duration::from_secs(300),
            attempts: config.retry_attempts,
        },
    );
    let bridge = Bridge::new(
        config.clone(),
        store.clone(),
        channel.clone(),
        agent,
        queue.clone(),
    );
    tracker.spawn(queue.run(Arc::new(bridge.clone()), cancel.clone(), tracker.clone()));
    tracker.spawn(sender::run(
        store.clone(),
        channel,
        bridge.outbox_wake(),
        cancel.clone(),
    ));

    let app = http::router(http::AppState {
        bridge: bridge.clone(),
        fake,
    });
    let http_cancel = cancel.clone();
    tracker.spawn(async move {
        if let Err(e) = http::serve(listener, app, http_cancel).await {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });
    if let Err(e) = std::fs::write(config.data_dir.join(HTTP_ADDR_FILE), addr.to_string()) {
        tracing::warn!(error = %e, "cannot write the http-addr file (status will not find the bridge)");
    }

    // Tool calls left while the bridge was down go first, so their messages
    // precede the final answers of the runs they belong to.
    let ipc = ipc::Ipc::new(ipc_dirs, bridge.clone());
    ipc.scan().await;
    tracker.spawn(ipc.run(cancel.clone()));

    let dispatch_queue = bridge.queue().clone();
    let scheduler = scheduler::Scheduler::new(
        store.clone(),
        bridge.tasks_wake(),
        Arc::new(scheduler::SystemClock),
        Arc::new(move |chat: &ids::ChatJid| dispatch_queue.notify(chat, true)),
    );
    tracker.spawn(scheduler.run(cancel.clone()));

    if let Some(wa) = whatsapp {
        tracker.spawn(wa.supervise(Arc::new(bridge.clone()), cancel.clone()));
    }

    let resumed = bridge.resume_pending().await?;
    tracing::info!(http = %addr, opencode = %url, channel = ?config.channel, resumed, "pocketbrain is running");
    if config.channel == ChannelKind::Fake {
        tracing::warn!(
            "PB_CHANNEL=fake: no WhatsApp; send messages with POST http://{addr}/fake/inbox and read replies at GET /fake/outbox"
        );
    }

    shutdown.await;
    tracing::info!("shutting down");
    cancel.cancel();
    tracker.close();
    if tokio::time::timeout(Duration::from_secs(10), tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("some tasks did not stop within 10 s");
    }
    if let Some(server) = managed {
        server.stop(Duration::from_secs(5)).await;
    }
    let _ = std::fs::remove_file(config.data_dir.join(HTTP_ADDR_FILE));
    Ok(())
}

/// The WhatsApp channel's settings from the configuration.
pub fn whatsapp_options(config: &Config) -> channel::whatsapp::WhatsAppOptions {
    channel::whatsapp::WhatsAppOptions {
        device_db: config.whatsapp_db(),
        pair_phone: config.whatsapp_phone.clone(),
        chunk_limit: config.wa_chunk_limit,
        read_receipts: config.read_receipts,
        governor: channel::whatsapp::Governor {
            per_chat_per_minute: config.wa_per_chat_per_minute,
            per_minute: config.wa_per_minute,
            jitter: Duration::from_millis(800),
        },
        transport: None,
        http: None,
    }
}

/// Waits (up to about a minute) for OpenCode to say it is healthy. Never
/// fails: if it stays away, runs fail and are retried, and health says so.
async fn wait_for_opencode(client: &Client) {
    let check = || async { client.health().await };
    let backoff = backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .with_max_times(20)
        .with_total_delay(Some(Duration::from_secs(60)));
    match check
        .retry(backoff)
        .notify(|e, d| tracing::info!(error = %e, retry_in_ms = d.as_millis() as u64, "waiting for OpenCode"))
        .await
    {
        Ok(version) => tracing::info!(%version, "OpenCode is healthy"),
        Err(e) => tracing::error!(code = "opencode-unreachable", error = %e, "OpenCode is not reachable; runs will be retried"),
    }
}
