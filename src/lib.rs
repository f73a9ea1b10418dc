//! PocketBrain: a personal AI assistant on WhatsApp, as a bridge between a
//! chat channel and a separately running `opencode serve`.
//!
//! The map (see `docs/ARCHITECTURE.md` for how one message flows):
//!
//! - [`config`]: one typed configuration from flags and environment.
//! - [`ids`]: newtype identifiers (`ChatJid`, `SessionId`, ...).
//! - [`model`]: the domain types every layer shares (inbound and stored
//!   messages, registered chats, trigger rules, row states).
//! - [`store`]: SQLite (messages, chats, cursors, sessions, outbox, runs).
//! - [`channel`]: the `Channel` trait, WhatsApp (`channel::whatsapp`) and the
//!   fake channel.
//! - [`router`]: which messages start a run (registration, triggers).
//! - [`queue`]: the per-chat queue: one run per chat, a global cap, retries.
//! - [`prompt`]: the escaped prompt block a run sends.
//! - [`agent`]: the `Agent` trait; [`opencode`] implements it over HTTP + SSE.
//! - [`intake`]: where channels hand over inbound messages (stored, then
//!   the chat's queue woken).
//! - [`run`]: the queue's worker: a conversation run, a task run, crash
//!   recovery; [`workspace`]: the chat folders it runs in.
//! - [`outbound`]: what of an answer is visible; [`sender`] delivers the outbox.
//! - [`api`]: the local API (REST, streaming, OpenAI-compatible,
//!   WebSocket) whose conversations are chats of the API channel.
//! - [`http`]: health, metrics, status and the fake channel's HTTP
//!   contract; [`metrics`]: the counters, gauges and histograms;
//!   [`status`]: what `/status` and `pocketbrain status` show.
//! - [`ipc`]: tool calls from the OpenCode plugin, through files; [`tools`]
//!   carries them out; [`schedule`] parses task schedules and [`scheduler`]
//!   fires them through the queue.
//! - [`media`]: photos, voice notes and files in (saved into the chat's
//!   folder, described to the agent) and out (`pocketbrain_send_file`);
//!   [`transcribe`] turns voice notes into text over HTTP.
//! - [`safe_dir`]: reading and writing in folders the agent can write,
//!   never through a planted symlink; [`owner_only`]: the data folder
//!   0700 and its secret files 0600, whatever the umask.
//! - [`memory`]: the global memory every chat reads, and skills (shipped
//!   and the user's) with each profile's share of them.
//! - [`commands`]: `/new`, `/stop`, `/status`, `/model`, `/compact`,
//!   `/tasks`, `/help` typed in a chat, answered by the bridge.
//! - [`cli`]: the command line (`serve`, `chats`, `tasks`, `health`,
//!   `status`, `doctor`, `backup`, `restore`); [`doctor`] checks a set-up,
//!   [`backup`] writes and restores archives.
//!
//! [`timing`]: stage timestamps for the benchmark (off unless its log
//! target is enabled).
//!
//! [`app`] wires them together: `App::start` builds them, `App::run` runs
//! them until a shutdown future resolves.

pub mod agent;
pub mod api;
pub mod app;
pub mod approvals;
pub mod backup;
pub mod channel;
pub mod chat;
pub mod cli;
pub mod commands;
pub mod config;
pub mod doctor;
#[cfg(test)]
mod fuzz;
pub mod http;
pub mod ids;
pub mod intake;
pub mod ipc;
pub mod media;
pub mod memory;
pub mod metrics;
pub mod model;
pub mod opencode;
pub mod outbound;
pub mod owner_only;
pub mod plugin;
pub mod profiles;
pub mod prompt;
pub mod queue;
pub mod router;
pub mod run;
pub mod safe_dir;
pub mod schedule;
pub mod scheduler;
pub mod sender;
pub mod status;
pub mod store;
pub mod timing;
pub mod tools;
pub mod transcribe;
pub mod tui;
pub mod workspace;

pub use app::{App, HTTP_ADDR_FILE, StartError};
