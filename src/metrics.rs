//! The bridge's metrics, served at `/metrics` in the OpenMetrics text
//! format (which Prometheus scrapes).
//!
//! Design notes. One process-wide [`Metrics`] (a `LazyLock`), so the core
//! records an event with one call to a named helper here (`message_in`,
//! `run_finished`, `tool_call`, ...) without a handle threaded through
//! every constructor; the helpers are the only names the rest of the crate
//! uses, so a metric's name, help text and labels live in one place.
//! Counters start at zero with the process. Every label value comes from a
//! closed set (`&'static str`), never from a chat, a person or a request, so
//! the number of series stays bounded and nothing identifies anyone.
//!
//! Gauges that describe state rather than events (queue depth, active runs,
//! outbox rows by state, the link) are set by `http` right before each
//! render, from the queue, the store and the channel: [`Snapshot`].
//!
//! Adding a counter: a field, its registration in [`Metrics::new`], and a
//! helper function.

use std::sync::{LazyLock, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The outbox states a row can be in, as stored.
pub const OUTBOX_STATES: &[&str] = &["pending", "sent", "delivered", "read", "failed"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelOutcome {
    channel: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ToolOutcome {
    tool: &'static str,
    outcome: &'static str,
    via: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct State {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Link {
    channel: &'static str,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelOnly {
    channel: &'static str,
}

/// Every metric, and the registry that renders them.
struct Metrics {
    registry: Registry,
    messages_in: Family<ChannelOutcome, Counter>,
    messages_out: Family<ChannelOutcome, Counter>,
    runs_started: Family<Kind, Counter>,
    runs_succeeded: Counter,
    runs_failed: Counter,
    runs_retried: Counter,
    runs_parked: Counter,
    run_duration: Family<Kind, Histogram>,
    bridge_latency: Histogram,
    tool_calls: Family<ToolOutcome, Counter>,
    scheduled_runs: Counter,
    instances_disposed: Counter,
    schedule_lateness: Histogram,
    queue_chats: Family<State, Gauge>,
    runs_active: Gauge,
    outbox_rows: Family<State, Gauge>,
    link_up: Family<ChannelOnly, Gauge>,
    link_state: Family<Link, Gauge>,
    approvals: Family<Outcome, Counter>,
    link_restarts: Family<Reason, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    channel: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

/// Seconds, from 5 ms to about 1.5 h: a run takes seconds to minutes, the
/// bridge's own part milliseconds.
fn seconds_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.005, 2.5, 16)
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("pocketbrain");
        let m = Metrics {
            messages_in: Family::default(),
            messages_out: Family::default(),
            runs_started: Family::default(),
            runs_succeeded: Counter::default(),
            runs_failed: Counter::default(),
            runs_retried: Counter::default(),
            runs_parked: Counter::default(),
            run_duration: Family::new_with_constructor(|| Histogram::new(seconds_buckets())),
            bridge_latency: Histogram::new(seconds_buckets()),
            tool_calls: Family::default(),
            scheduled_runs: Counter::default(),
            instances_disposed: Counter::default(),
            schedule_lateness: Histogram::new(seconds_buckets()),
            queue_chats: Family::default(),
            runs_active: Gauge::default(),
            outbox_rows: Family::default(),
            link_up: Family::default(),
            link_state: Family::default(),
            approvals: Family::default(),
            link_restarts: Family::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "messages_in",
            "Inbound messages by channel and outcome (accepted, context, unregistered, echo, duplicate, media_refused)",
            m.messages_in.clone(),
        );
        r.register(
            "messages_out",
            "Outbound message attempts by channel and outcome (sent, retry, failed, unregistered)",
            m.messages_out.clone(),
        );
        r.register(
            "runs_started",
            "Runs started, by kind (conversation, task)",
            m.runs_started.clone(),
        );
        r.register(
            "runs_succeeded",
            "Runs that ended done",
            m.runs_succeeded.clone(),
        );
        r.register(
            "runs_failed",
            "Runs that ended in a failure (each attempt)",
            m.runs_failed.clone(),
        );
        r.register(
            "runs_retried",
            "Failed runs scheduled for another attempt",
            m.runs_retried.clone(),
        );
        r.register(
            "runs_parked",
            "Chats parked after their last attempt",
            m.runs_parked.clone(),
        );
        r.register(
            "run_duration_seconds",
            "Duration of a run from start to end, by kind",
            m.run_duration.clone(),
        );
        r.register(
            "bridge_latency_seconds",
            "The bridge's own time in a conversation run: from its start to the prompt, and from the answer to the outbox commit",
            m.bridge_latency.clone(),
        );
        r.register(
            "tool_calls",
            "Agent tool calls by tool, outcome (ok, error, refused, forged) and way in (socket, folder)",
            m.tool_calls.clone(),
        );
        r.register(
            "scheduled_runs",
            "Scheduled task runs queued",
            m.scheduled_runs.clone(),
        );
        r.register(
            "opencode_instances_disposed",
            "OpenCode instances of chat folders not used lately that the bridge freed (PB_OPENCODE_MAX_INSTANCES)",
            m.instances_disposed.clone(),
        );
        r.register(
            "schedule_lateness_seconds",
            "How late a scheduled task run was queued after its due time",
            m.schedule_lateness.clone(),
        );
        r.register(
            "queue_chats",
            "Chats in the queue by state (queued, running, waiting_retry, parked)",
            m.queue_chats.clone(),
        );
        r.register("runs_active", "Runs in progress", m.runs_active.clone());
        r.register(
            "outbox_rows",
            "Outbox rows by delivery state",
            m.outbox_rows.clone(),
        );
        r.register(
            "link_up",
            "1 when the channel's link is up",
            m.link_up.clone(),
        );
        r.register(
            "link_state",
            "The channel's link state as a health code (1 for the current one)",
            m.link_state.clone(),
        );
        r.register(
            "approvals",
            "Permission requests of non-main chats, by outcome (asked, approved, always, rejected, expired, by_rule)",
            m.approvals.clone(),
        );
        r.register(
            "link_restarts",
            "Link clients the bridge restarted itself, by reason (silent: connected but no frame from the server for PB_WHATSAPP_SILENCE; relink: a new link asked for after a permanent end)",
            m.link_restarts.clone(),
        );
        Metrics { registry, ..m }
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
static CHANNEL: OnceLock<&'static str> = OnceLock::new();

/// Names the process's channel (`whatsapp`, `fake`) for the `channel`
/// label; set once at start-up. Unset (unit tests): `none`.
pub fn set_channel(name: &'static str) {
    let _ = CHANNEL.set(name);
}

fn channel() -> &'static str {
    CHANNEL.get().copied().unwrap_or("none")
}

fn m() -> &'static Metrics {
    &METRICS
}

/// An inbound message was handed to intake: `accepted` (it wakes its
/// chat), `context` (a group message without the trigger), `unregistered`,
/// `echo`, `duplicate` or `media_refused`.
pub fn message_in(outcome: &'static str) {
    m().messages_in
        .get_or_create(&ChannelOutcome {
            channel: channel(),
            outcome,
        })
        .inc();
}

/// One delivery attempt of an outbox row: `sent`, `retry`, `failed` or
/// `unregistered`.
pub fn message_out(outcome: &'static str) {
    m().messages_out
        .get_or_create(&ChannelOutcome {
            channel: channel(),
            outcome,
        })
        .inc();
}

/// A run began (`conversation` or `task`).
pub fn run_started(kind: &'static str) {
    m().runs_started.get_or_create(&Kind { kind }).inc();
}

/// How a run ended, as the queue applies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    Succeeded,
    /// Failed; another attempt is scheduled.
    Retried,
    /// Failed; the chat is parked.
    Parked,
}

/// A run ended after `took` (the whole queue turn, kind `any`).
pub fn run_finished(end: RunEnd, took: Duration) {
    let m = m();
    match end {
        RunEnd::Succeeded => m.runs_succeeded.inc(),
        RunEnd::Retried => {
            m.runs_failed.inc();
            m.runs_retried.inc()
        }
        RunEnd::Parked => {
            m.runs_failed.inc();
            m.runs_parked.inc()
        }
    };
    m.run_duration
        .get_or_create(&Kind { kind: "any" })
        .observe(took.as_secs_f64());
}

/// A conversation or task run's own duration, from start to commit.
pub fn run_duration(kind: &'static str, took: Duration) {
    m().run_duration
        .get_or_create(&Kind { kind })
        .observe(took.as_secs_f64());
}

/// The bridge's own part of a conversation run (not the agent's).
pub fn bridge_latency(took: Duration) {
    m().bridge_latency.observe(took.as_secs_f64());
}

/// How a tool call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolEnd {
    Ok,
    /// The tool ran and answered with an error (bad arguments, not allowed).
    Error,
    /// Refused before it ran: malformed, too large, unknown version.
    Refused,
    /// Refused as forged: no matching call in OpenCode, or an unknown session.
    Forged,
}

/// How a tool request reached the bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The IPC socket (the fast way).
    Socket,
    /// A request file (the durable way).
    Folder,
}

/// An agent tool call, by tool name (`unknown` for a name that is not one
/// of ours, or a request that could not be read).
pub fn tool_call(tool: &str, end: ToolEnd, via: Via) {
    let tool = crate::tools::names()
        .find(|t| *t == tool)
        .unwrap_or("unknown");
    let outcome = match end {
        ToolEnd::Ok => "ok",
        ToolEnd::Error => "error",
        ToolEnd::Refused => "refused",
        ToolEnd::Forged => "forged",
    };
    let via = match via {
        Via::Socket => "socket",
        Via::Folder => "folder",
    };
    m().tool_calls
        .get_or_create(&ToolOutcome { tool, outcome, via })
        .inc();
}

/// An approval request asked in the main chat, or how one ended
/// (`asked`, `approved`, `always`, `rejected`, `expired`, `by_rule`).
pub fn approval(outcome: &'static str) {
    m().approvals.get_or_create(&Outcome { outcome }).inc();
}

/// The bridge restarted the channel's link client: `silent` (connected, but
/// nothing arrived for too long) or `relink` (a new link after a permanent
/// end).
pub fn link_restart(reason: &'static str) {
    m().link_restarts
        .get_or_create(&Reason {
            channel: channel(),
            reason,
        })
        .inc();
}

/// How many link restarts with `reason` were counted so far.
pub fn link_restarts(reason: &'static str) -> u64 {
    m().link_restarts
        .get_or_create(&Reason {
            channel: channel(),
            reason,
        })
        .get()
}

/// The bridge freed a chat folder's OpenCode instance.
pub fn instance_disposed() {
    m().instances_disposed.inc();
}

/// A scheduled task run was queued `late` after its due time.
pub fn scheduled_run(late: Duration) {
    let m = m();
    m.scheduled_runs.inc();
    m.schedule_lateness.observe(late.as_secs_f64());
}

/// The state gauges, read right before a render.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// Chats by queue state (`queued`, `running`, `waiting_retry`, `parked`).
    pub queue: Vec<(&'static str, i64)>,
    pub runs_active: i64,
    /// Outbox rows by state; a state absent here is set to 0.
    pub outbox: Vec<(&'static str, i64)>,
    pub link_up: bool,
    pub link_code: &'static str,
}

/// Sets the state gauges from `snap` and renders every metric.
pub fn render(snap: &Snapshot) -> String {
    let m = m();
    for state in ["queued", "running", "waiting_retry", "parked"] {
        let n = snap
            .queue
            .iter()
            .filter(|(s, _)| *s == state)
            .map(|(_, n)| n)
            .sum();
        m.queue_chats.get_or_create(&State { state }).set(n);
    }
    m.runs_active.set(snap.runs_active);
    for state in OUTBOX_STATES {
        let n = snap
            .outbox
            .iter()
            .find(|(s, _)| s == state)
            .map_or(0, |(_, n)| *n);
        m.outbox_rows.get_or_create(&State { state }).set(n);
    }
    let channel = channel();
    m.link_up
        .get_or_create(&ChannelOnly { channel })
        .set(i64::from(snap.link_up));
    m.link_state.clear();
    m.link_state
        .get_or_create(&Link {
            channel,
            code: snap.link_code,
        })
        .set(1);
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &m.registry);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers_show_in_the_rendering() {
        message_in("accepted");
        run_finished(RunEnd::Succeeded, Duration::from_millis(1200));
        tool_call("send_message", ToolEnd::Forged, Via::Socket);
        tool_call("rm -rf /", ToolEnd::Refused, Via::Folder);
        let text = render(&Snapshot {
            queue: vec![("queued", 2)],
            runs_active: 1,
            outbox: vec![("pending", 3)],
            link_up: true,
            link_code: "fake-connected",
        });
        for line in [
            "pocketbrain_messages_in_total{channel=\"none\",outcome=\"accepted\"}",
            "pocketbrain_run_duration_seconds_count{kind=\"any\"}",
            "pocketbrain_tool_calls_total{tool=\"send_message\",outcome=\"forged\",via=\"socket\"}",
            "pocketbrain_tool_calls_total{tool=\"unknown\",outcome=\"refused\",via=\"folder\"}",
            "pocketbrain_queue_chats{state=\"queued\"} 2",
            "pocketbrain_runs_active 1",
            "pocketbrain_outbox_rows{state=\"pending\"} 3",
            "pocketbrain_outbox_rows{state=\"failed\"} 0",
            "pocketbrain_link_up{channel=\"none\"} 1",
            "pocketbrain_link_state{channel=\"none\",code=\"fake-connected\"} 1",
            "# EOF",
        ] {
            assert!(text.contains(line), "{line} missing in:\n{text}");
        }
    }
}
