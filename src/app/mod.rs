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

mod run;
mod start;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::channel::Channel;
use crate::channel::api::ApiChannel;
use crate::channel::fake::FakeChannel;
use crate::channel::whatsapp::WhatsAppChannel;
use crate::config::Config;
use crate::ipc::IpcDirs;
use crate::opencode::client::Client;
use crate::opencode::server::{ManagedServer, ServerError};
use crate::store::{Store, StoreError};

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
