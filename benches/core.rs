//! PocketBrain core benchmark: `cargo bench --bench core`.
//!
//! Prints a Markdown report to stdout. Speed lives here, never in tests:
//! the machines are shared and noisy, so everything is reported as a
//! distribution (p50/p90/p99/max) and as ratios measured within one run.
//!
//! 1. Store hot paths on a temp-file SQLite database (WAL), through the
//!    async API (each call hops to the blocking pool, as in the bridge).
//! 2. `prompt::format_prompt` on a 100-message batch that needs escaping.
//! 3. End to end: the real bridge binary and a real `opencode serve` with the
//!    scripted model answering at once, against bare OpenCode on the same
//!    server (prompt_async + transcript polling), interleaved A/B.
//! 4. Agent tool round trip: the scripted model calls `pocketbrain_list_tasks`
//!    many times in one run; each call's execute time (plugin writes the
//!    request file → reads the response file) is read from OpenCode's
//!    transcript (`state.time.end - state.time.start` of the tool part), and
//!    split using the bridge's IPC ledger (`ipc_requests.created_at`, the
//!    action's commit) against the request id's creation time.
//!    `PB_BENCH_SHOW_PART=1` prints one tool part and every call to stderr.
//! 5. Scheduler lateness: one-off tasks created with the CLI, due a second
//!    apart; due → queued and due → started (just before the prompt is sent
//!    to OpenCode), read from the bridge's `task_runs` table.
//! 6. Burst (`burst`, in `core/burst.rs`): one message into each of 1,000
//!    registered chats at once; per chat wait and reply time, runs in
//!    flight against the cap, memory of the bridge and of OpenCode
//!    (`PB_BENCH_BURST_CHATS`, `PB_BENCH_BURST_CAP`: another size or cap).

#[path = "core/burst.rs"]
mod burst;
#[path = "core/lean_http.rs"]
mod lean_http;
#[path = "../tests/support/mod.rs"]
mod support;

use std::hint::black_box;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use serde_json::{Value, json};

use pocketbrain::ids::{ChatJid, Folder, MessageId};
use pocketbrain::model::{Inbound, RegisteredChat, StoredMessage, TriggerRule};
use pocketbrain::prompt::{ChatContext, format_prompt};
use pocketbrain::store::Store;
use support::{Reply, StageEvent, World, read_stages};

const PENDING: usize = 100;
const PROMPT_BATCH: usize = 100;
const WARMUP: usize = 3;
const POLL: Duration = Duration::from_millis(5);
const E2E_TIMEOUT: Duration = Duration::from_secs(60);
const DM: &str = "491511111111@s.whatsapp.net";
const TOOL_WARMUP: usize = 3;
/// Issue 26's target for a tool's round trip as OpenCode times it.
const TOOL_TARGET: Duration = Duration::from_millis(10);
const TOOL: &str = "pocketbrain_list_tasks";
/// Plugin tools beside the bridge's, timed as OpenCode times the bridge's:
/// OpenCode's floors. (tool, word in the prompt that calls it, what it does).
const FLOORS: &[(&str, &str, &str)] = &[
    ("bench_noop", "noop", "a plugin tool that returns at once"),
    (
        "bench_echo",
        "sockonce",
        "a plugin tool that connects to a Unix socket, writes a line and reads its echo (a connection per call, as the plugin made before run 15)",
    ),
    (
        "bench_echo_kept",
        "sockkept",
        "the same echo over one connection kept open between calls",
    ),
];
/// The floors' plugin (`PB_BENCH_ECHO`: the echo socket's path).
const FLOOR_PLUGIN: &str = r#"import { createConnection } from "node:net"
const path = process.env.PB_BENCH_ECHO
function once() {
  return new Promise((resolve) => {
    let got = ""
    const s = createConnection(path)
    s.setEncoding("utf8")
    s.on("connect", () => s.write("ping\n"))
    s.on("data", (c) => { got += c; if (got.includes("\n")) { s.destroy(); resolve(got.trim()) } })
    s.on("error", (e) => resolve(`error: ${e.message}`))
  })
}
let kept
const waiting = []
let buf = ""
function viaKept() {
  return new Promise((resolve) => {
    if (!kept || kept.destroyed) {
      kept = createConnection(path)
      kept.setEncoding("utf8")
      kept.on("data", (c) => {
        buf += c
        let i
        while ((i = buf.indexOf("\n")) >= 0) { const line = buf.slice(0, i); buf = buf.slice(i + 1); waiting.shift()?.(line) }
      })
      kept.on("error", (e) => { kept = undefined; for (const w of waiting.splice(0)) w(`error: ${e.message}`) })
    }
    waiting.push(resolve)
    kept.write("ping\n")
  })
}
export const BenchFloors = async () => ({ tool: {
  bench_noop: { description: "Answers at once.", args: {}, execute: async () => "ok" },
  bench_echo: { description: "Echoes through a socket.", args: {}, execute: once },
  bench_echo_kept: { description: "Echoes through a kept socket.", args: {}, execute: viaKept },
} })
"#;
const FLOOR_DM: &str = "491519999999@s.whatsapp.net";

/// Seconds between due times (`--once` has seconds resolution).
const TASK_SPACING_S: i64 = 1;
const SCHED_TARGET: Duration = Duration::from_millis(10);
/// The tests' time zone (the harness sets TZ for the bridge and the CLI).
const TZ: &str = "Europe/Berlin";

/// How much each part runs: full, or a smoke run (`PB_BENCH_SMOKE=1`, run
/// by `scripts/test.sh` so the harness cannot rot; its numbers mean nothing).
#[derive(Clone, Copy)]
struct Sizes {
    smoke: bool,
    inbound_n: usize,
    chats: usize,
    pending_iters: usize,
    complete_iters: usize,
    prompt_iters: usize,
    e2e_iters: usize,
    tool_calls: usize,
    fetches: usize,
    tasks: usize,
    /// Seconds from now (rounded up to a whole second) to the first task's due time.
    task_lead_s: i64,
    idle_window: Duration,
    ingest_msgs: usize,
    /// Registered chats per row of the scale table.
    scale_chats: &'static [usize],
    scale_pairs: usize,
    scale_idle: Duration,
    scale_ingest: usize,
    /// Bridge starts timed by the cold start part.
    cold_starts: usize,
    /// Registered chats the burst part posts into.
    burst_chats: usize,
}

fn sz() -> &'static Sizes {
    static SIZES: std::sync::OnceLock<Sizes> = std::sync::OnceLock::new();
    SIZES.get_or_init(|| {
        if std::env::var_os("PB_BENCH_SMOKE").is_some_and(|v| v != "0") {
            Sizes {
                smoke: true,
                inbound_n: 200,
                chats: 10,
                pending_iters: 20,
                complete_iters: 20,
                prompt_iters: 20,
                e2e_iters: 5,
                tool_calls: 5,
                fetches: 2,
                tasks: 2,
                task_lead_s: 4,
                idle_window: Duration::from_secs(1),
                ingest_msgs: 400,
                scale_chats: &[1, 4],
                scale_pairs: 2,
                scale_idle: Duration::from_secs(1),
                scale_ingest: 200,
                cold_starts: 2,
                burst_chats: 8,
            }
        } else {
            Sizes {
                smoke: false,
                inbound_n: 5000,
                chats: 50,
                pending_iters: 2000,
                complete_iters: 2000,
                prompt_iters: 2000,
                e2e_iters: 100,
                tool_calls: 60,
                fetches: 20,
                tasks: 30,
                task_lead_s: 8,
                idle_window: Duration::from_secs(10),
                ingest_msgs: 20_000,
                scale_chats: &[1, 10, 100, 1000],
                scale_pairs: 15,
                scale_idle: Duration::from_secs(5),
                scale_ingest: 10_000,
                cold_starts: 20,
                burst_chats: 1000,
            }
        }
    })
}

/// A latency distribution (nearest-rank percentiles).
struct Dist {
    sorted: Vec<Duration>,
}

impl Dist {
    fn new(mut samples: Vec<Duration>) -> Self {
        assert!(!samples.is_empty());
        samples.sort();
        Self { sorted: samples }
    }

    fn n(&self) -> usize {
        self.sorted.len()
    }

    fn pct(&self, p: f64) -> Duration {
        let n = self.sorted.len();
        let rank = ((p / 100.0) * n as f64).ceil() as usize;
        self.sorted[rank.clamp(1, n) - 1]
    }

    fn max(&self) -> Duration {
        *self.sorted.last().unwrap()
    }

    fn mean(&self) -> Duration {
        self.sorted.iter().sum::<Duration>() / self.sorted.len() as u32
    }
}

fn us(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

fn jid(i: usize) -> ChatJid {
    ChatJid::parse(&format!("4915100{i:05}@s.whatsapp.net")).unwrap()
}

fn registration(chat: &ChatJid, folder: &str) -> RegisteredChat {
    RegisteredChat {
        jid: chat.clone(),
        name: folder.to_owned(),
        folder: Folder::parse(folder).unwrap(),
        is_main: false,
        trigger: TriggerRule::Always,
        profile: pocketbrain::model::Profile::Member,
    }
}

/// About 200 bytes of chat text with every character `escape` rewrites.
fn message_text(i: usize) -> String {
    let mut t = format!(
        "Msg {i}: Tom & Jerry's \"plan\" <b>tonight</b> at 8 > 7? Bring snacks & drinks; \
         don't forget the <charger> & \"tickets\"! Ümlaut, emoji 🎉, and more text to pad it out."
    );
    while t.len() < 200 {
        t.push_str(" & <x>");
    }
    t
}

fn inbound(chat: &ChatJid, id: String, i: usize) -> Inbound {
    Inbound {
        chat: chat.clone(),
        chat_name: None,
        id: MessageId::new(id),
        sender: chat.as_str().to_owned(),
        sender_name: Some("Ann \"A\" <ann>".into()),
        text: message_text(i),
        timestamp_ms: 1_763_700_000_000 + i as i64 * 1000,
        from_me: false,
        media: None,
    }
}

fn open_store(dir: &Path, name: &str) -> Store {
    Store::open(&dir.join(name)).unwrap()
}

/// Spins the blocking pool up so the first measured call does not pay for it.
async fn warm(store: &Store) {
    for _ in 0..100 {
        store.registered(&jid(0)).await.unwrap();
    }
}

struct StoreRow {
    name: String,
    dist: Dist,
    per_sec: Option<f64>,
}

async fn bench_store(dir: &Path) -> Vec<StoreRow> {
    let Sizes {
        inbound_n,
        chats: n_chats,
        pending_iters,
        complete_iters,
        ..
    } = *sz();
    let mut rows = Vec::new();
    let chats: Vec<ChatJid> = (0..n_chats).map(jid).collect();

    // record_inbound, sequential: one message at a time, round-robin over chats.
    {
        let store = open_store(dir, "inbound-seq.sqlite3");
        for (i, chat) in chats.iter().enumerate().step_by(5) {
            store
                .register(registration(chat, &format!("chat-{i}")))
                .await
                .unwrap();
        }
        warm(&store).await;
        let mut samples = Vec::with_capacity(inbound_n);
        let start = Instant::now();
        for i in 0..inbound_n {
            let msg = inbound(&chats[i % n_chats], format!("IN{i}"), i);
            let t = Instant::now();
            let out = store.record_inbound(msg, false).await.unwrap();
            samples.push(t.elapsed());
            assert!(!out.duplicate);
        }
        let wall = start.elapsed();
        rows.push(StoreRow {
            name: format!("record_inbound, sequential ({inbound_n} msgs, {n_chats} chats)"),
            dist: Dist::new(samples),
            per_sec: Some(inbound_n as f64 / wall.as_secs_f64()),
        });
    }

    // record_inbound, concurrent: one task per chat, as a burst across chats.
    {
        let store = open_store(dir, "inbound-conc.sqlite3");
        warm(&store).await;
        let per_chat = inbound_n / n_chats;
        let start = Instant::now();
        let tasks: Vec<_> = chats
            .iter()
            .cloned()
            .map(|chat| {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut samples = Vec::with_capacity(per_chat);
                    for i in 0..per_chat {
                        let msg = inbound(&chat, format!("C{i}"), i);
                        let t = Instant::now();
                        store.record_inbound(msg, false).await.unwrap();
                        samples.push(t.elapsed());
                    }
                    samples
                })
            })
            .collect();
        let mut samples = Vec::with_capacity(inbound_n);
        for t in tasks {
            samples.extend(t.await.unwrap());
        }
        let wall = start.elapsed();
        rows.push(StoreRow {
            name: format!("record_inbound, {n_chats} concurrent tasks ({inbound_n} msgs)"),
            dist: Dist::new(samples),
            per_sec: Some(inbound_n as f64 / wall.as_secs_f64()),
        });
    }

    // pending_messages and complete_run on a database holding other chats' traffic.
    {
        let store = open_store(dir, "runs.sqlite3");
        for i in 0..inbound_n {
            store
                .record_inbound(inbound(&chats[i % n_chats], format!("BG{i}"), i), false)
                .await
                .unwrap();
        }
        let chat = jid(90_000);
        store
            .register(registration(&chat, "pending"))
            .await
            .unwrap();
        for i in 0..PENDING {
            store
                .record_inbound(inbound(&chat, format!("P{i}"), i), false)
                .await
                .unwrap();
        }
        warm(&store).await;
        assert_eq!(
            store.pending_messages(&chat, 100).await.unwrap().len(),
            PENDING
        );
        let mut samples = Vec::with_capacity(pending_iters);
        let start = Instant::now();
        for _ in 0..pending_iters {
            let t = Instant::now();
            let batch = store.pending_messages(&chat, 100).await.unwrap();
            samples.push(t.elapsed());
            black_box(batch);
        }
        let wall = start.elapsed();
        rows.push(StoreRow {
            name: format!("pending_messages ({PENDING} pending, limit 100)"),
            dist: Dist::new(samples),
            per_sec: Some(pending_iters as f64 / wall.as_secs_f64()),
        });

        let mut samples = Vec::with_capacity(complete_iters);
        let start = Instant::now();
        for i in 0..complete_iters {
            let reply = Some((
                MessageId::new(format!("OUT{i}")),
                format!("Andy: here is answer number {i}, with a few words of text in it."),
            ));
            let t = Instant::now();
            store
                .complete_run(&chat, (PENDING + i) as i64, reply)
                .await
                .unwrap();
            samples.push(t.elapsed());
        }
        let wall = start.elapsed();
        rows.push(StoreRow {
            name: "complete_run (outbox insert + cursor, one tx)".into(),
            dist: Dist::new(samples),
            per_sec: Some(complete_iters as f64 / wall.as_secs_f64()),
        });
    }
    rows
}

struct PromptResult {
    dist: Dist,
    bytes: usize,
    input_bytes: usize,
}

fn bench_prompt() -> PromptResult {
    let prompt_iters = sz().prompt_iters;
    let batch: Vec<StoredMessage> = (0..PROMPT_BATCH)
        .map(|i| StoredMessage {
            seq: i as i64 + 1,
            id: MessageId::new(format!("M{i}")),
            sender: "491510000001@s.whatsapp.net".into(),
            sender_name: Some(if i % 2 == 0 {
                "Ann \"A\" <ann>".into()
            } else {
                "Bob & Co".into()
            }),
            text: message_text(i),
            timestamp_ms: 1_763_700_000_000 + i as i64 * 1000,
            from_me: false,
            media: None,
        })
        .collect();
    let input_bytes = batch.iter().map(|m| m.text.len()).sum();
    let ctx = ChatContext {
        name: "Family <&> \"Chat\"",
        jid: "120363000000001@g.us",
        tz: "Europe/Berlin".parse().unwrap(),
        now: Utc.timestamp_millis_opt(1_763_700_000_000).unwrap(),
    };
    let bytes = format_prompt(&ctx, &batch).len();
    for _ in 0..100 {
        black_box(format_prompt(black_box(&ctx), black_box(&batch)));
    }
    let samples = (0..prompt_iters)
        .map(|_| {
            let t = Instant::now();
            black_box(format_prompt(black_box(&ctx), black_box(&batch)));
            t.elapsed()
        })
        .collect();
    PromptResult {
        dist: Dist::new(samples),
        bytes,
        input_bytes,
    }
}

struct E2eResult {
    /// The fake channel's own share of each bridged message.
    fake_channel: Dist,
    bridge: Dist,
    bare: Dist,
    /// OpenCode's blocking prompt call (`POST /session/{id}/message`), as a
    /// user would compare: sent → its response read.
    direct: Dist,
    /// The blocking call with the bridge's message id and model named.
    direct_named: Dist,
    /// Median of per-triple ratios bridge ÷ direct.
    paired_direct_p50: f64,
    /// Each turn inside OpenCode by its own clock (the prompt's user
    /// message created → the answer completed): the bridge's session, the
    /// direct side's.
    inside_bridge: Dist,
    inside_direct: Dist,
    inside_named: Dist,
    inbox_post: Dist,
    paired_ratio_p50: f64,
    opencode_version: String,
    /// Where one message's time goes, stage by stage.
    breakdown: Breakdown,
    /// `/fake/inbox` burst: messages per second, per-POST latency.
    ingest: (f64, Dist),
    /// Bridge RSS (KiB) after the runs, and after the burst.
    rss_idle: u64,
    rss_after_ingest: u64,
    /// CPU the idle bridge used after the runs, as a share of one core.
    idle_cpu: f64,
    idle_window: Duration,
}

/// The log level and format under which the bridge writes stage events.
fn log_stages(world: &mut World, name: &str) -> std::path::PathBuf {
    let path = world.dir.path().join(format!("{name}-bridge.log"));
    world.set_env("PB_LOG", "info,pocketbrain::timing=trace");
    world.set_env("PB_LOG_FORMAT", "json");
    world.bridge_log = Some(path.clone());
    path
}

fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// Steps between consecutive stages seen, each a distribution over the
/// samples that have both ends. A stage a sample skipped (e.g. the answer
/// taken from the stream, so no transcript read) makes its own step, named
/// for the stage it really started from.
struct Breakdown {
    steps: Vec<(String, Dist)>,
}

impl Breakdown {
    /// `samples`: for each sample, the time (µs) of each named point, in
    /// path order (`None`: not seen in that sample).
    fn new(names: &[&str], samples: &[Vec<Option<u64>>]) -> Self {
        let mut steps = Vec::new();
        for end in 1..names.len() {
            // By the stage each sample last passed before this one.
            let mut by_start: Vec<Vec<Duration>> = vec![Vec::new(); end];
            for s in samples {
                let Some(t_end) = s[end] else { continue };
                let Some((start, t_start)) = s[..end]
                    .iter()
                    .enumerate()
                    .rev()
                    .find_map(|(i, t)| t.map(|t| (i, t)))
                else {
                    continue;
                };
                by_start[start].push(Duration::from_micros(t_end.saturating_sub(t_start)));
            }
            for (start, d) in by_start.into_iter().enumerate() {
                if !d.is_empty() {
                    steps.push((format!("{} → {}", names[start], names[end]), Dist::new(d)));
                }
            }
        }
        Self { steps }
    }

    fn print(&self) {
        println!("| step | n | p50 ms | p90 ms | p99 ms | max ms | mean ms |");
        println!("|---|---:|---:|---:|---:|---:|---:|");
        for (name, d) in &self.steps {
            println!(
                "| {name} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
                d.n(),
                d.pct(50.0).as_secs_f64() * 1e3,
                d.pct(90.0).as_secs_f64() * 1e3,
                d.pct(99.0).as_secs_f64() * 1e3,
                d.max().as_secs_f64() * 1e3,
                d.mean().as_secs_f64() * 1e3,
            );
        }
    }
}

/// The stages of one message, in path order, as the bridge logs them.
const MESSAGE_STAGES: &[&str] = &[
    "accepted",
    "stored",
    "queued",
    "run_began",
    "run_started",
    "session_checked",
    "run_recorded",
    "prompt_sent",
    "answer_seen",
    "answer_returned",
    "answer_streamed",
    "idle_seen",
    "transcript_read",
    "outbox_committed",
    "sent",
    "delivered",
];

/// RSS of a process, in KiB (0 once it is gone).
fn rss_kib(pid: u32) -> u64 {
    support::proc_status_kib(pid, "VmRSS:").unwrap_or(0)
}

/// Inbound burst: messages `0..n` (`message(i)` is the i-th body),
/// posted to `/fake/inbox` over `conns` connections. Returns (messages per
/// second, per-POST latency).
async fn burst(
    bridge: &str,
    n: usize,
    conns: usize,
    message: fn(usize, usize) -> Value,
    spread: usize,
) -> (f64, Dist) {
    burst_from(bridge, 0, n, conns, message, spread).await
}

/// Like [`burst`], for messages `first..first + n`.
async fn burst_from(
    bridge: &str,
    first: usize,
    n: usize,
    conns: usize,
    message: fn(usize, usize) -> Value,
    spread: usize,
) -> (f64, Dist) {
    let t = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..conns {
        let url = format!("{bridge}/fake/inbox");
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap();
            let mut lat = Vec::new();
            for i in (first + c..first + n).step_by(conns) {
                let t = Instant::now();
                let r = http
                    .post(&url)
                    .json(&message(i, spread))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status().as_u16(), 202, "ingest POST");
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    (n as f64 / t.elapsed().as_secs_f64(), Dist::new(lat))
}

/// Like [`burst_from`], with the lean client ([`lean_http`]): each
/// connection's requests are made before the clock starts.
async fn lean_burst_from(bridge: &str, per_conn: Vec<Vec<Vec<u8>>>) -> (f64, Dist) {
    let host = bridge.trim_start_matches("http://").to_owned();
    let n: usize = per_conn.iter().map(Vec::len).sum();
    let t = Instant::now();
    let tasks: Vec<_> = per_conn
        .into_iter()
        .map(|reqs| {
            let host = host.clone();
            tokio::spawn(async move { lean_http::run(&host, reqs, 202).await })
        })
        .collect();
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    (n as f64 / t.elapsed().as_secs_f64(), Dist::new(lat))
}

/// The requests of messages `first..first + n`, dealt to `conns` connections.
fn lean_requests(
    bridge: &str,
    first: usize,
    n: usize,
    conns: usize,
    message: fn(usize, usize) -> Value,
    spread: usize,
) -> Vec<Vec<Vec<u8>>> {
    let host = bridge.trim_start_matches("http://");
    (0..conns)
        .map(|c| {
            (first + c..first + n)
                .step_by(conns)
                .map(|i| {
                    let body = serde_json::to_vec(&message(i, spread)).unwrap();
                    lean_http::post(host, "/fake/inbox", &body)
                })
                .collect()
        })
        .collect()
}

/// The i-th message of a burst into `chats` unregistered chats.
fn ingest_message(i: usize, chats: usize) -> Value {
    let chat = format!("4930{:08}@s.whatsapp.net", i % chats);
    json!({"chat": chat, "sender": chat, "text": format!("burst {i}"), "id": format!("I{i}")})
}

/// Burst into `chats` chats that are not registered, so no run starts.
async fn ingest(bridge: &str, n: usize, chats: usize, conns: usize) -> (f64, Dist) {
    burst(bridge, n, conns, ingest_message, chats).await
}

/// One round of the ingest part: rate, per-POST latency, and the CPU
/// seconds the bridge and this process (the client) used over it.
struct IngestRound {
    /// `lean` (wrk-like, requests made beforehand) or `reqwest`.
    client: &'static str,
    rate: f64,
    lat: Dist,
    bridge_cpu: f64,
    client_cpu: f64,
    wall: f64,
}

struct IngestResult {
    rounds: Vec<IngestRound>,
    rss_idle: u64,
    rss_after: u64,
}

/// Only the e2e part's inbound burst (100 unregistered chats, 16
/// connections, one message per POST), on a bridge set up as there, a few
/// rounds back to back (`PB_BENCH_INGEST_ROUNDS`, 3 by default).
async fn bench_ingest() -> IngestResult {
    let mut world = World::new().await;
    // Logging as an operator's bridge has it (info, text, into a file): the
    // other parts' stage events cost two JSON lines per message, which
    // ordinary settings never write.
    world.bridge_log = Some(world.dir.path().join("ingest-bridge.log"));
    world.register(DM, "Bench", &[]);
    world.start_bridge().await;
    let bridge = world.bridge.as_ref().unwrap().base.clone();
    let pid = world.bridge.as_ref().unwrap().child.id();
    eprintln!("ingest: bridge pid {pid}");
    let rounds_n: usize = std::env::var("PB_BENCH_INGEST_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let n = sz().ingest_msgs;
    // Warm-up: connections, the blocking pool, SQLite's page cache.
    burst_from(&bridge, 10 * n, n / 10, 16, ingest_message, 100).await;
    let rss_idle = rss_kib(pid);
    let mut rounds = Vec::new();
    // The lean client's rounds, then one with reqwest for comparison.
    for r in 0..=rounds_n {
        let client = if r < rounds_n { "lean" } else { "reqwest" };
        let requests =
            (client == "lean").then(|| lean_requests(&bridge, r * n, n, 16, ingest_message, 100));
        let (b0, c0) = (cpu_seconds(pid), cpu_seconds(std::process::id()));
        let t = Instant::now();
        let (rate, lat) = match requests {
            Some(requests) => lean_burst_from(&bridge, requests).await,
            None => burst_from(&bridge, r * n, n, 16, ingest_message, 100).await,
        };
        let wall = t.elapsed().as_secs_f64();
        rounds.push(IngestRound {
            client,
            rate,
            lat,
            bridge_cpu: cpu_seconds(pid) - b0,
            client_cpu: cpu_seconds(std::process::id()) - c0,
            wall,
        });
    }
    let rss_after = rss_kib(pid);
    let _ = world.stop_bridge().await;
    IngestResult {
        rounds,
        rss_idle,
        rss_after,
    }
}

fn print_ingest(r: &IngestResult) {
    println!(
        "\n## Inbound burst only (`POST /fake/inbox`, {} messages per round over 100 \
         unregistered chats, 16 connections, one message per POST; bridge logging as in \
         production: info, text, no stage events; target ≥ 20,000 msgs/s)\n",
        sz().ingest_msgs
    );
    println!(
        "| round | client | msgs/s | p50 ms | p99 ms | max ms | bridge CPU s | bridge µs/msg | client CPU s | wall s |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let n = sz().ingest_msgs as f64;
    for (i, x) in r.rounds.iter().enumerate() {
        println!(
            "| {} | {} | {:.0} | {} | {} | {} | {:.2} | {:.0} | {:.2} | {:.2} |",
            i + 1,
            x.client,
            x.rate,
            ms(x.lat.pct(50.0)),
            ms(x.lat.pct(99.0)),
            ms(x.lat.max()),
            x.bridge_cpu,
            x.bridge_cpu / n * 1e6,
            x.client_cpu,
            x.wall,
        );
    }
    println!(
        "\nBridge RSS {} MiB after a warm-up burst, {} MiB after the rounds.",
        r.rss_idle / 1024,
        r.rss_after / 1024
    );
}

/// CPU time (user + system) a process has used, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    ticks as f64 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

async fn bench_e2e() -> E2eResult {
    let e2e_iters = sz().e2e_iters;
    let mut world = World::new().await;
    world.model.set_default(Reply::text("ok"));
    let log = log_stages(&mut world, "e2e");
    world.register(DM, "Bench", &[]);
    world.start_bridge().await;

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let oc = world
        .opencode
        .as_ref()
        .unwrap()
        .url
        .trim_end_matches('/')
        .to_owned();
    let bridge = world.bridge.as_ref().unwrap().base.clone();
    let health: Value = http
        .get(format!("{oc}/global/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let opencode_version = health["version"].as_str().unwrap_or("?").to_owned();

    let mut bare = Bare::new(&http, &oc, &world).await;

    let mut bare_samples = Vec::with_capacity(e2e_iters);
    let mut direct_samples = Vec::with_capacity(e2e_iters);
    let mut named_samples = Vec::with_capacity(e2e_iters);
    let mut post_samples = Vec::with_capacity(e2e_iters);
    // When each bridge message was posted, wall clock µs: its stages and
    // its reply are found in the bridge's stage log from there on.
    let mut posted = Vec::with_capacity(e2e_iters);
    for i in 0..e2e_iters {
        // The four sides in another of their 24 orders every message, so
        // that each follows each other alike: whatever OpenCode, or the
        // bridge, still does after a turn falls on every side the same.
        for side in nth_order(i) {
            match side {
                // A: through the bridge, POST sent -> reply stored by the fake phone.
                0 => {
                    posted.push(unix_us());
                    let (post, _) = bridge_turn(&http, &bridge, &format!("B{i}"), i).await;
                    post_samples.push(post);
                }
                // B: bare OpenCode, prompt_async -> finished answer on the stream.
                1 => bare_samples.push(bare.turn(i).await),
                // C: OpenCode's blocking prompt call, sent -> response read.
                2 => direct_samples.push(bare.direct_turn(i, false).await),
                _ => named_samples.push(bare.direct_turn(i, true).await),
            }
        }
    }

    // Inside OpenCode, by its own clock, for the bridge's session and the
    // direct side's: what of the difference is OpenCode's turn itself.
    let (bridge_session, folder): (String, String) = rusqlite::Connection::open_with_flags(
        world.data_dir().join("pocketbrain.sqlite3"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap()
    .query_row(
        "SELECT s.session_id, r.folder FROM sessions s JOIN registered_chats r ON r.jid = s.chat
         WHERE s.chat = ?1",
        [DM],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .unwrap();
    let bridge_dir = std::path::absolute(world.workspace().join("chats").join(folder)).unwrap();
    let inside_bridge =
        turns_inside(&http, &oc, &bridge_dir.to_string_lossy(), &bridge_session).await;
    let inside_direct = turns_inside(&http, &oc, &bare.dir, &bare.direct_session).await;
    let inside_named = turns_inside(&http, &oc, &bare.dir, &bare.named_session).await;

    // Idle: no traffic, OpenCode up, everything warmed.
    let pid = world.bridge.as_ref().unwrap().child.id();
    let idle_window = sz().idle_window;
    let before = cpu_seconds(pid);
    tokio::time::sleep(idle_window).await;
    let idle_cpu = (cpu_seconds(pid) - before) / idle_window.as_secs_f64();
    let rss_idle = rss_kib(pid);

    // Burst: 100 chats, 16 connections.
    let burst_from = unix_us();
    let ingest = ingest(&bridge, sz().ingest_msgs, 100, 16).await;
    let rss_after_ingest = rss_kib(pid);

    let _ = world.stop_bridge().await;
    let events: Vec<StageEvent> = read_stages(&log)
        .into_iter()
        .filter(|e| e.t_us < burst_from)
        .collect();
    let bridge_samples = replies_from_stages(&events, DM, &posted)[WARMUP..].to_vec();
    let mut ratios: Vec<f64> = bridge_samples
        .iter()
        .zip(&bare_samples[WARMUP..])
        .map(|(a, b)| a.as_secs_f64() / b.as_secs_f64())
        .collect();
    ratios.sort_by(f64::total_cmp);
    let paired_ratio_p50 = ratios[ratios.len().div_ceil(2) - 1];
    let mut ratios: Vec<f64> = bridge_samples
        .iter()
        .zip(&direct_samples[WARMUP..])
        .map(|(a, b)| a.as_secs_f64() / b.as_secs_f64())
        .collect();
    ratios.sort_by(f64::total_cmp);
    let paired_direct_p50 = ratios[ratios.len().div_ceil(2) - 1];

    let mut names = vec!["POST sent (bench)"];
    names.extend(MESSAGE_STAGES);
    let samples: Vec<Vec<Option<u64>>> = (WARMUP..posted.len())
        .map(|i| {
            let (from, to) = (posted[i], posted.get(i + 1).copied().unwrap_or(u64::MAX));
            let mut points = vec![Some(from)];
            for stage in MESSAGE_STAGES {
                points.push(
                    events
                        .iter()
                        .find(|e| e.stage == *stage && (from..to).contains(&e.t_us))
                        .map(|e| e.t_us),
                );
            }
            points
        })
        .collect();
    let breakdown = Breakdown::new(&names, &samples);
    // What the fake channel itself adds to a message: its HTTP intake up
    // to intake's `accepted`, and the fake phone's write of the reply
    // (`outbox_committed → sent`).
    let at = |name: &str| names.iter().position(|n| *n == name).unwrap();
    let (accepted, committed, sent) = (at("accepted"), at("outbox_committed"), at("sent"));
    let fake_channel = Dist::new(
        samples
            .iter()
            .filter_map(|p| {
                let intake = p[accepted]?.checked_sub(p[0]?)?;
                let send = p[sent]?.checked_sub(p[committed]?)?;
                Some(Duration::from_micros(intake + send))
            })
            .collect(),
    );
    E2eResult {
        fake_channel,
        idle_cpu,
        idle_window,
        bridge: Dist::new(bridge_samples),
        bare: Dist::new(bare_samples[WARMUP..].to_vec()),
        direct: Dist::new(direct_samples[WARMUP..].to_vec()),
        direct_named: Dist::new(named_samples[WARMUP..].to_vec()),
        paired_direct_p50,
        inside_bridge,
        inside_direct,
        inside_named,
        inbox_post: Dist::new(post_samples[WARMUP..].to_vec()),
        paired_ratio_p50,
        opencode_version,
        breakdown,
        ingest,
        rss_idle,
        rss_after_ingest,
    }
}

/// The `k`th of the 24 orders of four sides (`k` mod 24, lexicographic).
fn nth_order(k: usize) -> [usize; 4] {
    let mut left = vec![0, 1, 2, 3];
    let mut k = k % 24;
    let mut out = [0; 4];
    for (i, slot) in out.iter_mut().enumerate() {
        let f = [6, 2, 1, 1][i];
        *slot = left.remove(k / f);
        k %= f;
    }
    out
}

/// A session's turns as OpenCode timed them: each user message's creation
/// to the completion of the last answer to it, warm-up turns left out.
async fn turns_inside(http: &reqwest::Client, oc: &str, dir: &str, session: &str) -> Dist {
    let messages: Vec<Value> = http
        .get(format!("{oc}/session/{session}/message"))
        .query(&[("directory", dir)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut turns = Vec::new();
    for user in messages.iter().filter(|m| m["info"]["role"] == "user") {
        let created = user["info"]["time"]["created"].as_u64().unwrap_or(0);
        let done = messages
            .iter()
            .filter(|m| m["info"]["parentID"] == user["info"]["id"])
            .filter_map(|m| m["info"]["time"]["completed"].as_u64())
            .max();
        if let Some(done) = done {
            turns.push(Duration::from_millis(done.saturating_sub(created)));
        }
    }
    Dist::new(turns.split_off(WARMUP.min(turns.len())))
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A GET on OpenCode's API with `?directory=`, as JSON.
async fn opencode_get(http: &reqwest::Client, oc: &str, path: &str, dir: &Path) -> Value {
    let r = http
        .get(format!("{}{path}", oc.trim_end_matches('/')))
        .query(&[("directory", dir.to_string_lossy().as_ref())])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "GET {path}: {}", r.status());
    r.json().await.unwrap()
}

/// The number of tool results since the last user message in this request.
fn tool_results_since_user(r: &support::ChatRequest) -> usize {
    r.messages()
        .iter()
        .rev()
        .take_while(|m| m["role"] != "user")
        .filter(|m| m["role"] == "tool")
        .count()
}

/// The number of tool results the model has been given in this request.
fn tool_results(r: &support::ChatRequest) -> usize {
    r.messages().iter().filter(|m| m["role"] == "tool").count()
}

struct ToolResult {
    /// Execute times after warm-up, in call order.
    in_order: Vec<Duration>,
    dist: Dist,
    /// Request created (plugin) → action committed (bridge), same calls.
    bridge: Dist,
    /// Execute time minus the bridge's part: the plugin's polling for the
    /// response file, its file writes, and OpenCode's own overhead.
    rest: Dist,
    /// `GET /session/{id}/message/{messageID}` (one message), from the bench.
    fetch_one: Dist,
    /// `GET /session/{id}/message` (the finished transcript), from the bench.
    fetch_all: Dist,
    transcript_messages: usize,
    /// Where one call's time goes, stage by stage.
    breakdown: Breakdown,
    /// Calls whose provenance came from the event stream / from OpenCode's REST route.
    via_stream: usize,
    via_http: usize,
    /// Message accepted → final answer in the outbox, for the whole run.
    run_wall: Duration,
    /// Tool parts of other statuses than completed (should be none).
    not_completed: usize,
    /// Plugin tools with no bridge, timed the same way (see [`FLOORS`]):
    /// what OpenCode's own bookkeeping and a socket round trip in its
    /// event loop cost. A floor whose tool did not run is left out.
    floors: Vec<(&'static str, Dist)>,
}

async fn bench_tools() -> ToolResult {
    let Sizes {
        tool_calls,
        fetches,
        ..
    } = *sz();
    // OpenCode with the plugin's own timing marks on (PB_PLUGIN_TRACE).
    let mut world = World::without_opencode().await;
    let trace = world.dir.path().join("plugin-trace.jsonl");
    // The echo floors' socket: each line written comes back.
    let echo = world.dir.path().join("echo.sock");
    let listener = tokio::net::UnixListener::bind(&echo).unwrap();
    let echo_server = tokio::spawn(async move {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = tokio::io::BufReader::new(read).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if write
                        .write_all(format!("{line}\n").as_bytes())
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            });
        }
    });
    world.opencode = Some(support::OpenCode::start_with_env(
        &world.workspace(),
        &world.home(),
        &world.model,
        0,
        support::opencode_config(&world.model),
        &[
            ("PB_PLUGIN_TRACE".into(), trace.display().to_string()),
            ("PB_BENCH_ECHO".into(), echo.display().to_string()),
        ],
    ));
    let log = log_stages(&mut world, "tools");
    world.model.on(
        |r| r.last_role() == "user" && !r.is_title_request() && r.last_user_text().contains("list"),
        vec![Reply::tool_call(TOOL, json!({}))],
    );
    world.model.compute(
        |r| r.last_role() == "tool" && r.last_user_text().contains("list my tasks"),
        move |r| {
            if tool_results(r) < tool_calls {
                Reply::tool_call(TOOL, json!({}))
            } else {
                Reply::text("Listed.")
            }
        },
    );
    // OpenCode's own floors: plugin tools with no bridge, one user message
    // each in the main chat's session (so results are counted since it).
    for &(tool, word, _) in FLOORS {
        world.model.on(
            move |r| {
                r.last_role() == "user"
                    && !r.is_title_request()
                    && r.last_user_text().contains(word)
            },
            vec![Reply::tool_call(tool, json!({}))],
        );
        world.model.compute(
            move |r| r.last_role() == "tool" && r.last_user_text().contains(word),
            move |r| {
                if tool_results_since_user(r) < tool_calls {
                    Reply::tool_call(tool, json!({}))
                } else {
                    Reply::text("Done.")
                }
            },
        );
    }
    let plugins = world.workspace().join(".opencode/plugin");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::write(plugins.join("bench-floors.js"), FLOOR_PLUGIN).unwrap();
    world.register(DM, "Tools", &["--folder", "bench-tools"]);
    // The main chat: only its profile offers tools beside PocketBrain's.
    world.register(FLOOR_DM, "Floor", &["--folder", "bench-floor", "--main"]);
    world.start_bridge().await;

    let t = Instant::now();
    world
        .say(DM, "T1", &format!("list my tasks {tool_calls} times"))
        .await;
    let texts = world.wait_outbox(DM, 1, Duration::from_secs(600)).await;
    let run_wall = t.elapsed();
    assert_eq!(texts, vec!["Andy: Listed."]);
    for (i, &(_, word, _)) in FLOORS.iter().enumerate() {
        world
            .say(
                FLOOR_DM,
                &format!("F{i}"),
                &format!("call {word} {tool_calls} times"),
            )
            .await;
        let texts = world
            .wait_outbox(FLOOR_DM, i + 1, Duration::from_secs(600))
            .await;
        assert_eq!(texts, vec!["Andy: Done."; i + 1]);
    }
    echo_server.abort();

    let http = http_client();
    let oc = world.opencode.as_ref().unwrap().url.clone();
    let dir = world.workspace().join("chats/bench-floor");
    let sessions = opencode_get(&http, &oc, "/session", &dir).await;
    let id = sessions[0]["id"]
        .as_str()
        .expect("the floor chat's session")
        .to_owned();
    let transcript = opencode_get(&http, &oc, &format!("/session/{id}/message"), &dir).await;
    let mut floors = Vec::new();
    for &(tool, _, what) in FLOORS {
        let times: Vec<Duration> = transcript
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|m| m["parts"].as_array().into_iter().flatten())
            .filter(|p| {
                p["type"] == "tool" && p["tool"] == tool && p["state"]["status"] == "completed"
            })
            .map(|p| {
                let time = &p["state"]["time"];
                let ms = time["end"].as_f64().unwrap() - time["start"].as_f64().unwrap();
                Duration::from_secs_f64(ms.max(0.0) / 1e3)
            })
            .collect();
        if times.len() == tool_calls {
            floors.push((what, Dist::new(times[TOOL_WARMUP..].to_vec())));
        } else {
            let states: Vec<&Value> = transcript
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|m| m["parts"].as_array().into_iter().flatten())
                .filter(|p| p["type"] == "tool" && p["tool"] == tool)
                .take(1)
                .collect();
            eprintln!(
                "bench: the floor's tool {tool} did not run ({} of {tool_calls} completed): {states:?}",
                times.len()
            );
        }
    }
    let dir = world.workspace().join("chats/bench-tools");
    let sessions = opencode_get(&http, &oc, "/session", &dir).await;
    let sessions = sessions.as_array().expect("session list");
    assert_eq!(
        sessions.len(),
        1,
        "one session in the chat folder: {sessions:?}"
    );
    let id = sessions[0]["id"].as_str().unwrap();
    let path = format!("/session/{id}/message");
    let transcript = opencode_get(&http, &oc, &path, &dir).await;
    let transcript_messages = transcript.as_array().map_or(0, Vec::len);
    let parts: Vec<&Value> = transcript
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| m["parts"].as_array().into_iter().flatten())
        .filter(|p| p["type"] == "tool" && p["tool"] == TOOL)
        .collect();
    assert_eq!(parts.len(), tool_calls, "tool parts in the transcript");
    // For reference, OpenCode otherwise idle: the provenance check's fetch of
    // the one message holding the call, and the whole transcript.
    let last_message = parts[tool_calls - 1]["messageID"].as_str().unwrap();
    let one = format!("{path}/{last_message}");
    let mut fetch_one = Vec::with_capacity(fetches);
    let mut fetch_all = Vec::with_capacity(fetches);
    for i in 0..fetches {
        let mut pair = [(&one, &mut fetch_one), (&path, &mut fetch_all)];
        if i % 2 == 1 {
            pair.reverse(); // no order bias between the two
        }
        for (path, out) in pair {
            let t = Instant::now();
            black_box(opencode_get(&http, &oc, path, &dir).await);
            out.push(t.elapsed());
        }
    }
    if std::env::var_os("PB_BENCH_SHOW_PART").is_some() {
        eprintln!("{}", serde_json::to_string_pretty(parts[0]).unwrap());
    }
    let not_completed = parts
        .iter()
        .filter(|p| p["state"]["status"] != "completed")
        .count();
    let samples: Vec<Duration> = parts
        .iter()
        .map(|p| {
            let time = &p["state"]["time"];
            let (start, end) = (time["start"].as_f64(), time["end"].as_f64());
            let (Some(start), Some(end)) = (start, end) else {
                panic!("tool part without state.time.start/end: {p}");
            };
            Duration::from_secs_f64((end - start).max(0.0) / 1e3)
        })
        .collect();
    let _ = world.stop_bridge().await;

    // The bridge's part, from its IPC ledger: `created_at` is written in the
    // action's transaction, just before the response file; the request id is
    // `req_<Date.now() in base 36>_<random>`, made when the plugin's call starts.
    let db = rusqlite::Connection::open_with_flags(
        world.data_dir().join("pocketbrain.sqlite3"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let ids: std::collections::HashMap<String, String> = db
        .prepare("SELECT id, call_id FROM ipc_requests")
        .unwrap()
        .query_map([], |r| Ok((r.get::<_, String>(1)?, r.get::<_, String>(0)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let events = read_stages(&log);
    // The plugin's marks per call id (ms with a fraction → µs).
    let marks: std::collections::HashMap<String, Value> = std::fs::read_to_string(&trace)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|m| Some((m["call"].as_str()?.to_owned(), m)))
        .collect();
    let mark = |call: &str, name: &str| {
        marks
            .get(call)
            .and_then(|m| m[name].as_f64())
            .map(|ms| (ms * 1e3) as u64)
    };
    let tool_stages = [
        "tool_read",
        "tool_identified",
        "tool_checked",
        "tool_committed",
        "tool_responded",
    ];
    let (mut via_stream, mut via_http) = (0, 0);
    let stage_samples: Vec<Vec<Option<u64>>> = parts[TOOL_WARMUP..]
        .iter()
        .map(|p| {
            let id = &ids[p["callID"].as_str().expect("callID")];
            let ms = |v: &Value| v.as_u64().map(|m| m * 1000);
            let stamp = id.split('_').nth(1).expect("req_<time>_<random>");
            let made = u64::from_str_radix(stamp, 36).expect("base-36 time") * 1000;
            let call = p["callID"].as_str().unwrap_or_default();
            let mut points = vec![
                ms(&p["state"]["time"]["start"]),
                mark(call, "start").or(Some(made)),
                mark(call, "connected"),
                mark(call, "written"),
            ];
            for stage in tool_stages {
                let e = events
                    .iter()
                    .find(|e| &e.key == id && e.stage.starts_with(stage));
                match e.map(|e| e.stage.as_str()) {
                    Some("tool_checked_stream") => via_stream += 1,
                    Some("tool_checked_http") => via_http += 1,
                    _ => {}
                }
                points.push(e.map(|e| e.t_us));
            }
            points.push(mark(call, "answered"));
            points.push(mark(call, "returned"));
            points.push(ms(&p["state"]["time"]["end"]));
            points
        })
        .collect();
    let breakdown = Breakdown::new(
        &[
            "tool part started (OpenCode, ms)",
            "execute started (plugin)",
            "socket connected (plugin)",
            "request written (plugin)",
            "request read by the bridge",
            "caller identified (store)",
            "provenance checked",
            "action committed",
            "response written",
            "answer read (plugin)",
            "execute returned (plugin)",
            "tool part ended (OpenCode, ms)",
        ],
        &stage_samples,
    );
    let ledger: std::collections::HashMap<String, Duration> = db
        .prepare("SELECT id, call_id, created_at FROM ipc_requests")
        .unwrap()
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })
        .unwrap()
        .map(|row| {
            let (id, call, committed) = row.unwrap();
            let stamp = id.split('_').nth(1).expect("req_<time>_<random>");
            let made = i64::from_str_radix(stamp, 36).expect("base-36 time");
            (
                call,
                Duration::from_millis((committed - made).max(0) as u64),
            )
        })
        .collect();
    let bridge: Vec<Duration> = parts[TOOL_WARMUP..]
        .iter()
        .map(|p| ledger[p["callID"].as_str().expect("callID")])
        .collect();
    let in_order = samples[TOOL_WARMUP..].to_vec();
    if std::env::var_os("PB_BENCH_SHOW_PART").is_some() {
        for (e, b) in in_order.iter().zip(&bridge) {
            eprintln!(
                "tool execute {} ms, bridge {} ms",
                e.as_millis(),
                b.as_millis()
            );
        }
    }
    let rest = in_order
        .iter()
        .zip(&bridge)
        .map(|(e, b)| e.saturating_sub(*b))
        .collect();
    ToolResult {
        dist: Dist::new(in_order.clone()),
        bridge: Dist::new(bridge),
        rest: Dist::new(rest),
        fetch_one: Dist::new(fetch_one),
        fetch_all: Dist::new(fetch_all),
        transcript_messages,
        breakdown,
        via_stream,
        via_http,
        in_order,
        run_wall,
        not_completed,
        floors,
    }
}

struct SchedResult {
    queued: Dist,
    started: Dist,
    /// Run statuses other than "ok".
    failed: usize,
    /// Slack between the last task created and the first one due.
    slack: Duration,
}

/// A local time in the tests' time zone, as `--once` takes it.
fn local_time(unix_ms: i64) -> String {
    let tz: chrono_tz::Tz = TZ.parse().unwrap();
    chrono::DateTime::from_timestamp_millis(unix_ms)
        .unwrap()
        .with_timezone(&tz)
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string()
}

async fn bench_scheduler() -> SchedResult {
    let Sizes {
        tasks, task_lead_s, ..
    } = *sz();
    let mut world = World::new().await;
    world.set_env("PB_LOG", "info");
    world.register(DM, "Sched", &["--folder", "bench-sched"]);
    world.start_bridge().await;
    // The chat's session exists already, as it would in a chat in use.
    world.say(DM, "W1", "hello").await;
    world.wait_outbox(DM, 1, E2E_TIMEOUT).await;

    let first_due = (Utc::now().timestamp() + task_lead_s) * 1000;
    for i in 0..tasks {
        let due = first_due + i as i64 * TASK_SPACING_S * 1000;
        let (ok, out, err) = world.cli(&[
            "tasks",
            "add",
            DM,
            "--prompt",
            &format!("bench task {i}"),
            "--once",
            &local_time(due),
        ]);
        assert!(ok, "tasks add: {out}{err}");
    }
    let slack_ms = first_due - Utc::now().timestamp_millis();
    // A smoke run asserts nothing about time: on a loaded machine the
    // tasks may simply fire late.
    assert!(
        slack_ms > 0 || sz().smoke,
        "tasks were created too slowly: raise task_lead_s"
    );
    let slack = Duration::from_millis(slack_ms.max(0) as u64);

    let span = Duration::from_secs((task_lead_s + tasks as i64 * TASK_SPACING_S) as u64);
    world.wait_outbox(DM, 1 + tasks, span + E2E_TIMEOUT).await;
    let db = rusqlite::Connection::open_with_flags(
        world.data_dir().join("pocketbrain.sqlite3"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let deadline = Instant::now() + E2E_TIMEOUT;
    loop {
        let done: i64 = db
            .query_row(
                "SELECT count(*) FROM task_runs WHERE finished_at IS NOT NULL",
                [],
                |r| r.get(0),
            )
            .unwrap();
        if done as usize >= tasks {
            break;
        }
        assert!(Instant::now() < deadline, "only {done} task runs finished");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rows: Vec<(i64, i64, Option<i64>, String)> = db
        .prepare("SELECT due_at, queued_at, started_at, status FROM task_runs ORDER BY due_at")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    drop(db);
    let _ = world.stop_bridge().await;
    assert_eq!(rows.len(), tasks, "one run per task");
    let late = |at: i64, due: i64| {
        assert!(at >= due, "a run recorded before its due time");
        Duration::from_millis((at - due) as u64)
    };
    SchedResult {
        queued: Dist::new(rows.iter().map(|r| late(r.1, r.0)).collect()),
        started: Dist::new(
            rows.iter()
                .map(|r| late(r.2.expect("every run started"), r.0))
                .collect(),
        ),
        failed: rows.iter().filter(|r| r.3 != "ok").count(),
        slack,
    }
}

fn command_line(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

/// The 1/5/15-minute load averages (Linux), to judge how shared the machine was.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// A table row of a millisecond distribution: n, p50, p90, p99, max, mean.
fn ms_row(name: &str, d: &Dist) -> String {
    format!(
        "| {name} | {} | {} | {} | {} | {} | {} |",
        d.n(),
        ms(d.pct(50.0)),
        ms(d.pct(90.0)),
        ms(d.pct(99.0)),
        ms(d.max()),
        ms(d.mean()),
    )
}

fn verdict(d: &Dist, target: Duration) -> String {
    let p99 = d.pct(99.0);
    if p99 < target {
        format!("**holds** (p99 {} ms < {} ms)", ms(p99), target.as_millis())
    } else {
        format!(
            "**missed** (p99 {} ms ≥ {} ms)",
            ms(p99),
            target.as_millis()
        )
    }
}

fn main() {
    let load_before = loadavg();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let workers = rt.metrics().num_workers();
    let tmp = tempfile::tempdir().unwrap();

    // `PB_BENCH_ONLY=e2e,tools` runs only the named parts (store, prompt,
    // e2e, ingest, tools, scheduler, scale, coldstart, burst); all by default.
    let only = std::env::var("PB_BENCH_ONLY").ok();
    let want = |part: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|p| p.trim() == part))
    };
    let store_rows = want("store").then(|| rt.block_on(bench_store(tmp.path())));
    let prompt = want("prompt").then(bench_prompt);
    let e2e = want("e2e").then(|| rt.block_on(bench_e2e()));
    let ingest_only = want("ingest").then(|| rt.block_on(bench_ingest()));
    let tools = want("tools").then(|| rt.block_on(bench_tools()));
    let sched = want("scheduler").then(|| rt.block_on(bench_scheduler()));
    let scale = want("scale").then(|| rt.block_on(bench_scale()));
    let cold = want("coldstart").then(|| rt.block_on(bench_cold_start()));
    let burst = want("burst").then(|| rt.block_on(burst::bench_burst()));
    let load_after = loadavg();

    let dirty = if command_line("git", &["status", "--porcelain"]).is_empty() {
        ""
    } else {
        " (working tree has uncommitted changes)"
    };
    println!("# PocketBrain core benchmark\n");
    if sz().smoke {
        println!("SMOKE RUN (PB_BENCH_SMOKE): tiny sizes, the numbers mean nothing.\n");
    }
    println!("- date: {}", Utc::now().format("%Y-%m-%d %H:%M:%S UTC"));
    println!("- rustc: `{}`", command_line("rustc", &["--version"]));
    println!(
        "- commit: `{}`{dirty}",
        command_line("git", &["rev-parse", "--short", "HEAD"])
    );
    println!(
        "- machine: {} CPUs visible, tokio multi-thread runtime with {workers} workers",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("- load average (1/5/15 min): {load_before} at start, {load_after} at end");
    if let Some(e2e) = &e2e {
        println!("- opencode: {}", e2e.opencode_version);
    }
    if let Some(o) = &only {
        println!("- parts run (PB_BENCH_ONLY): {o}");
    }
    println!();
    if let Some(store_rows) = &store_rows {
        print_store(store_rows);
    }
    if let Some(prompt) = &prompt {
        print_prompt(prompt);
    }
    if let Some(e2e) = &e2e {
        print_e2e(e2e);
    }
    if let Some(ingest) = &ingest_only {
        print_ingest(ingest);
    }
    if let Some(tools) = &tools {
        print_tools(tools);
    }
    if let Some(sched) = &sched {
        print_sched(sched);
    }
    if let Some(scale) = &scale {
        print_scale(scale);
    }
    if let Some(cold) = &cold {
        println!(
            "\n## Cold start (OpenCode up, one registered chat, the data folder of the last \
             start; spawn → first `/health` answer, the harness looking every 2 ms; target \
             < 50 ms)\n"
        );
        println!("| measure | n | p50 ms | p90 ms | p99 ms | max ms | mean ms |");
        println!("|---|---:|---:|---:|---:|---:|---:|");
        println!("{}", ms_row("start → /health", cold));
    }
    if let Some(burst) = &burst {
        burst::print_burst(burst);
    }
}

/// Starts and stops the bridge `cold_starts` times against one OpenCode,
/// timing spawn → `/health` (the first start, which creates the data
/// folder, is not counted).
async fn bench_cold_start() -> Dist {
    let mut world = World::new().await;
    world.register(DM, "Bench", &[]);
    world.start_bridge().await;
    let _ = world.stop_bridge().await;
    let mut starts = Vec::new();
    for _ in 0..sz().cold_starts {
        let t = Instant::now();
        world.start_bridge().await;
        starts.push(t.elapsed());
        let _ = world.stop_bridge().await;
    }
    Dist::new(starts)
}

fn print_store(store_rows: &[StoreRow]) {
    println!("## Store (SQLite WAL on a temp file, async API via the blocking pool)\n");
    println!("| operation | n | p50 µs | p90 µs | p99 µs | max µs | ops/s |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for r in store_rows {
        let d = &r.dist;
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.name,
            d.n(),
            us(d.pct(50.0)),
            us(d.pct(90.0)),
            us(d.pct(99.0)),
            us(d.max()),
            r.per_sec.map_or("-".into(), |p| format!("{p:.0}")),
        );
    }
}

fn print_prompt(prompt: &PromptResult) {
    println!("\n## Prompt formatting\n");
    println!("| operation | n | p50 µs | p90 µs | p99 µs | max µs |");
    println!("|---|---:|---:|---:|---:|---:|");
    let d = &prompt.dist;
    println!(
        "| format_prompt, {PROMPT_BATCH} msgs ({} B text in, {} B prompt out) | {} | {} | {} | {} | {} |",
        prompt.input_bytes,
        prompt.bytes,
        d.n(),
        us(d.pct(50.0)),
        us(d.pct(90.0)),
        us(d.pct(99.0)),
        us(d.max()),
    );
}

fn print_e2e(e2e: &E2eResult) {
    let e2e_iters = sz().e2e_iters;
    println!(
        "\n## End to end (scripted model answers at once; {e2e_iters} sequential messages, \
         first {WARMUP} discarded as warm-up, A/B interleaved; both ends are events, no \
         polling: the bridge's from its stage log, the bare side's from OpenCode's event \
         stream)\n"
    );
    println!("| path | n | p50 ms | p90 ms | p99 ms | max ms | mean ms |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (name, d) in [
        (
            "bridge: POST /fake/inbox sent → reply stored by the fake phone (`sent`)",
            &e2e.bridge,
        ),
        (
            "bare OpenCode: prompt_async sent → answer finished (event stream)",
            &e2e.bare,
        ),
        (
            "direct: OpenCode's blocking `POST /session/{id}/message` sent → response read",
            &e2e.direct,
        ),
        (
            "direct, named: the same with the fields the bridge adds (its own `messageID`, the model named)",
            &e2e.direct_named,
        ),
        (
            "POST /fake/inbox round trip (for reference)",
            &e2e.inbox_post,
        ),
        (
            "the fake channel's own share of a bridged message (POST sent → `accepted`, plus `outbox_committed → sent`)",
            &e2e.fake_channel,
        ),
    ] {
        println!("{}", ms_row(name, d));
    }
    println!(
        "\nInside OpenCode, by its own clock (the prompt's user message created → the \
         answer completed, whole ms), the same turns:\n"
    );
    println!("| session | n | p50 ms | p90 ms | p99 ms | max ms | mean ms |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    println!("{}", ms_row("the bridge's chat", &e2e.inside_bridge));
    println!("{}", ms_row("the direct side's", &e2e.inside_direct));
    println!("{}", ms_row("the direct, named side's", &e2e.inside_named));
    let ratio = e2e.bridge.pct(50.0).as_secs_f64() / e2e.bare.pct(50.0).as_secs_f64();
    println!(
        "\nRatio of p50s, bridge / bare OpenCode: **{ratio:.2}×** \
         (median of per-pair ratios: {:.2}×; bridge overhead at p50: {} ms)",
        e2e.paired_ratio_p50,
        ms(e2e.bridge.pct(50.0).saturating_sub(e2e.bare.pct(50.0))),
    );
    let ratio = e2e.bridge.pct(50.0).as_secs_f64() / e2e.direct.pct(50.0).as_secs_f64();
    println!(
        "\nRatio of p50s, bridge / direct (OpenCode's blocking call): **{ratio:.2}×** \
         (median of per-triple ratios: {:.2}×; target ≤ 1.05)",
        e2e.paired_direct_p50,
    );
    println!(
        "\nWith n = {} samples (nearest-rank percentiles), p99 is the maximum.",
        e2e.bridge.n()
    );
    println!(
        "\nIdle bridge after the runs (fake channel, OpenCode up, no traffic), \
         /proc CPU time over {} s: **{:.2}% of one core** (target < 1%).",
        e2e.idle_window.as_secs(),
        e2e.idle_cpu * 100.0
    );
    println!(
        "\n### Where one message's time goes (bridge stage events, wall clock µs; \
         {} messages after warm-up)\n",
        e2e_iters - WARMUP
    );
    e2e.breakdown.print();
    println!(
        "\nOpenCode's own turn is `prompt_sent → answer_seen`; the bare side's whole \
         round trip is its counterpart. `answer_streamed`: the answer's text came whole \
         from the event stream; `idle_seen → transcript_read`: it was read back instead."
    );
    let (rate, lat) = &e2e.ingest;
    println!(
        "\n### Inbound burst (stage events on; the `ingest` part measures it with production \
         logging)\n\n`POST /fake/inbox`, {} messages over 100 unregistered chats, \
         16 connections: **{rate:.0} msgs/s** (target ≥ 20,000); per POST p50 {} ms, \
         p99 {} ms, max {} ms. Bridge RSS {} MiB idle, {} MiB after the burst.",
        sz().ingest_msgs,
        ms(lat.pct(50.0)),
        ms(lat.pct(99.0)),
        ms(lat.max()),
        e2e.rss_idle / 1024,
        e2e.rss_after_ingest / 1024,
    );
}

fn print_tools(tools: &ToolResult) {
    let tool_calls = sz().tool_calls;
    println!(
        "\n## Agent tool round trip ({TOOL}, {tool_calls} sequential calls in one run, \
         first {TOOL_WARMUP} discarded; target p99 < {} ms)\n",
        TOOL_TARGET.as_millis()
    );
    println!("| measure | n | p50 ms | p90 ms | p99 ms | max ms | mean ms |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    println!(
        "{}",
        ms_row(
            "tool execute in OpenCode (state.time.end − state.time.start)",
            &tools.dist
        )
    );
    for (what, floor) in &tools.floors {
        println!(
            "{}",
            ms_row(&format!("OpenCode's floor: {what}, same timing"), floor)
        );
    }
    println!(
        "{}",
        ms_row(
            "↳ bridge: request made (plugin) → action committed (ipc_requests.created_at)",
            &tools.bridge
        )
    );
    println!(
        "{}",
        ms_row(
            "↳ the rest: plugin's polling for the response file, file writes, OpenCode",
            &tools.rest
        )
    );
    let window = (tools.in_order.len() / 6).max(1);
    let first = Dist::new(tools.in_order[..window].to_vec());
    let last = Dist::new(tools.in_order[tools.in_order.len() - window..].to_vec());
    println!(
        "{}",
        ms_row(
            &format!(
                "calls {}–{} (early in the run)",
                TOOL_WARMUP + 1,
                TOOL_WARMUP + window
            ),
            &first
        )
    );
    println!(
        "{}",
        ms_row(
            &format!(
                "calls {}–{tool_calls} (late in the run)",
                tool_calls - window + 1
            ),
            &last
        )
    );
    println!(
        "{}",
        ms_row(
            "for reference, OpenCode idle: GET /session/{id}/message/{messageID} (one message)",
            &tools.fetch_one
        )
    );
    println!(
        "{}",
        ms_row(
            &format!(
                "for reference, OpenCode idle: GET /session/{{id}}/message (whole transcript, \
                 {} messages)",
                tools.transcript_messages
            ),
            &tools.fetch_all
        )
    );
    println!(
        "\nTarget p99 < {} ms: {}. The whole run (message accepted → final answer in the \
         outbox) took {} ms, {} ms per model step; tool parts not completed: {}. With n = {}, \
         p99 is the maximum.",
        TOOL_TARGET.as_millis(),
        verdict(&tools.dist, TOOL_TARGET),
        ms(tools.run_wall),
        ms(tools.run_wall / (tool_calls as u32 + 1)),
        tools.not_completed,
        tools.dist.n(),
    );

    println!(
        "\n### Where one tool call's time goes ({} calls; OpenCode's and the plugin's \
         stamps are whole ms, the bridge's µs)\n",
        tools.in_order.len()
    );
    tools.breakdown.print();
    println!(
        "\nProvenance from the event stream's running calls: {} calls; from OpenCode's \
         REST route (the stream had not shown the call yet): {}.",
        tools.via_stream, tools.via_http
    );
}

fn print_sched(sched: &SchedResult) {
    let tasks = sz().tasks;
    println!(
        "\n## Scheduler lateness ({tasks} one-off tasks in one chat, due {TASK_SPACING_S} s apart, \
         scripted model answers at once; target p99 < {} ms)\n",
        SCHED_TARGET.as_millis()
    );
    println!("| measure | n | p50 ms | p90 ms | p99 ms | max ms | mean ms |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    println!(
        "{}",
        ms_row("due → queued (claimed by the scheduler)", &sched.queued)
    );
    println!(
        "{}",
        ms_row(
            "due → started (just before the prompt is sent to OpenCode)",
            &sched.started
        )
    );
    println!(
        "\nTarget p99 < {} ms (due → started): {}. Runs not ok: {}. The last task was \
         created {} ms before the first was due.",
        SCHED_TARGET.as_millis(),
        verdict(&sched.started, SCHED_TARGET),
        sched.failed,
        ms(sched.slack),
    );
}

/// One row of the scale table.
struct ScaleRow {
    chats: usize,
    /// Burst into the registered groups (no mention: stored as context).
    ingest: (f64, Dist),
    bridge: Dist,
    bare: Dist,
    paired_ratio_p50: f64,
    idle_cpu: f64,
    rss_idle: u64,
    rss_after_ingest: u64,
    start_to_health: Duration,
}

/// One message through the bridge: posted to the fake inbox, until the
/// chat's `done + 1`-th reply is in the fake outbox. Returns (POST round
/// trip, accepted → reply seen).
async fn bridge_turn(
    http: &reqwest::Client,
    bridge: &str,
    id: &str,
    done: usize,
) -> (Duration, Duration) {
    let body = json!({"chat": DM, "sender": DM, "sender_name": "Ann",
        "text": format!("hello {done}, how are you?"), "id": id});
    let t_post = Instant::now();
    let r = http
        .post(format!("{bridge}/fake/inbox"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let accepted = Instant::now();
    loop {
        let v: Value = http
            .get(format!("{bridge}/fake/outbox"))
            .query(&[("chat", DM)])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["messages"].as_array().map_or(0, Vec::len) > done {
            break;
        }
        assert!(accepted.elapsed() < E2E_TIMEOUT, "no reply to {id}");
        tokio::time::sleep(POLL).await;
    }
    (accepted - t_post, accepted.elapsed())
}

/// A through the bridge, B straight to OpenCode, `count` times in turn;
/// message ids and texts are numbered from `from`. Returns, per pair, when
/// the bridge's message was posted (wall clock µs; see
/// [`replies_from_stages`]) and the bare side's round trip.
async fn ab_pairs(
    http: &reqwest::Client,
    bridge: &str,
    bare: &mut Bare,
    from: usize,
    count: usize,
) -> (Vec<u64>, Vec<Duration>) {
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for i in from..from + count {
        a.push(unix_us());
        bridge_turn(http, bridge, &format!("S{i}"), i).await;
        b.push(bare.turn(i).await);
    }
    (a, b)
}

/// The bare-OpenCode side of the A/B pairs: the same prompt straight to
/// OpenCode. A chat folder of its own made as the bridge makes one (its
/// `AGENTS.md`), the text the bridge would send for the same message, with
/// the same agent (the DM's profile), and the answer followed on OpenCode's
/// event stream (as the bridge follows it), so neither side's number holds
/// a polling interval.
struct Bare {
    http: reqwest::Client,
    oc: String,
    session: String,
    /// A second session in the same folder, for the blocking call.
    direct_session: String,
    /// A third, for the blocking call with the fields the bridge sends
    /// beside the prompt (its own message id, the model named).
    named_session: String,
    dir: String,
    /// Parent ids of the session's finished answers, as the stream shows them.
    answered: tokio::sync::mpsc::UnboundedReceiver<String>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Bare {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Bare {
    async fn new(http: &reqwest::Client, oc: &str, world: &World) -> Self {
        use futures_util::StreamExt;
        use reqwest_eventsource::{Event, EventSource};
        let folder = Folder::parse("bench-bare").unwrap();
        let jid = ChatJid::parse(DM).unwrap();
        let scratch =
            pocketbrain::workspace::ensure_chat_dir(&world.workspace(), &folder, "Bench", &jid)
                .unwrap();
        let dir = std::path::absolute(scratch)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        // A new folder boots its OpenCode instance first: seconds, and on a
        // loaded machine more than a normal request's timeout.
        let new_session = |title: &'static str| {
            let req = http
                .post(format!("{oc}/session"))
                .query(&[("directory", &dir)])
                .json(&json!({ "title": title }))
                .timeout(Duration::from_secs(180));
            async move {
                let created: Value = req.send().await.unwrap().json().await.unwrap();
                created["id"].as_str().expect("session id").to_owned()
            }
        };
        let session = new_session("bench").await;
        let direct_session = new_session("bench direct").await;
        let named_session = new_session("bench direct named").await;

        // The folder's own event stream (no request timeout: it stays open).
        let stream = reqwest::Client::new()
            .get(format!("{oc}/event"))
            .query(&[("directory", &dir)]);
        let mut es = EventSource::new(stream).unwrap();
        let (tx, answered) = tokio::sync::mpsc::unbounded_channel();
        let (open_tx, open_rx) = tokio::sync::oneshot::channel();
        let ours = session.clone();
        let reader = tokio::spawn(async move {
            let mut open_tx = Some(open_tx);
            while let Some(ev) = es.next().await {
                let m = match ev {
                    Ok(Event::Open) => {
                        if let Some(o) = open_tx.take() {
                            let _ = o.send(());
                        }
                        continue;
                    }
                    Ok(Event::Message(m)) => m,
                    Err(e) => panic!("bare OpenCode event stream failed: {e}"),
                };
                let Ok(v) = serde_json::from_str::<Value>(&m.data) else {
                    continue;
                };
                let ev = v.get("payload").unwrap_or(&v);
                let info = &ev["properties"]["info"];
                let finished = ev["type"] == "message.updated"
                    && info["sessionID"] == ours.as_str()
                    && info["role"] == "assistant"
                    && !info["time"]["completed"].is_null()
                    && info["finish"].as_str().is_some_and(|f| f != "tool-calls");
                if let (true, Some(parent)) = (finished, info["parentID"].as_str()) {
                    let _ = tx.send(parent.to_owned());
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(30), open_rx)
            .await
            .expect("bare OpenCode event stream opened")
            .unwrap();
        Self {
            http: http.clone(),
            oc: oc.to_owned(),
            session,
            direct_session,
            named_session,
            dir,
            answered,
            reader,
        }
    }

    /// The prompt the bridge would send for its `done`-th message, and the
    /// agent it would use.
    fn prompt(done: usize) -> (String, &'static str) {
        let message = StoredMessage {
            seq: done as i64 + 1,
            id: MessageId::new(format!("B{done}")),
            sender: DM.into(),
            sender_name: Some("Ann".into()),
            text: format!("hello {done}, how are you?"),
            timestamp_ms: Utc::now().timestamp_millis(),
            from_me: false,
            media: None,
        };
        let ctx = ChatContext {
            name: "Bench",
            jid: DM,
            tz: TZ.parse().unwrap(),
            now: Utc::now(),
        };
        let text = format_prompt(&ctx, &[message]);
        let agent = pocketbrain::profiles::agent_name(pocketbrain::model::Profile::Member);
        (text, agent)
    }

    /// OpenCode's blocking prompt call: `POST /session/{id}/message`, which
    /// answers when the turn is complete; sent → response body read.
    async fn direct_turn(&mut self, done: usize, named: bool) -> Duration {
        let (text, agent) = Self::prompt(done);
        let mut body = json!({"agent": agent, "parts": [{"type": "text", "text": text}]});
        let session = if named {
            body["messageID"] = json!(pocketbrain::opencode::new_message_id().as_str());
            body["model"] = json!({"providerID": "scripted", "modelID": "scripted-1"});
            &self.named_session
        } else {
            &self.direct_session
        };
        let t = Instant::now();
        let r = self
            .http
            .post(format!("{}/session/{}/message", self.oc, session))
            .query(&[("directory", &self.dir)])
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "blocking prompt: {}", r.status());
        let body: Value = r.json().await.unwrap();
        let elapsed = t.elapsed();
        assert!(
            body["parts"].as_array().is_some_and(|p| !p.is_empty()),
            "blocking prompt answered without parts: {body}"
        );
        elapsed
    }

    /// One prompt, until the stream shows its answer finished (`done`
    /// answers came before it).
    async fn turn(&mut self, done: usize) -> Duration {
        let (text, agent) = Self::prompt(done);
        let id = pocketbrain::opencode::new_message_id();
        let t = Instant::now();
        let r = self
            .http
            .post(format!("{}/session/{}/prompt_async", self.oc, self.session))
            .query(&[("directory", &self.dir)])
            .json(&json!({"messageID": id.as_str(), "agent": agent,
                "parts": [{"type": "text", "text": text}]}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "prompt_async: {}", r.status());
        let deadline = tokio::time::Instant::now() + E2E_TIMEOUT;
        loop {
            let parent = tokio::time::timeout_at(deadline, self.answered.recv())
                .await
                .unwrap_or_else(|_| panic!("no bare reply {done}"))
                .expect("bare event stream open");
            if parent == id.as_str() {
                return t.elapsed();
            }
        }
    }
}

/// The bridge's side of each A/B pair, from its stage events: the bench's
/// POST sent (`posted`, wall clock µs) → the bridge's `sent` for `chat`
/// (the fake phone has stored the reply; with WhatsApp, its server took
/// it). Taken from the stage log rather than from the bench's polling of
/// the fake outbox, which would add up to a polling interval.
fn replies_from_stages(events: &[StageEvent], chat: &str, posted: &[u64]) -> Vec<Duration> {
    posted
        .iter()
        .enumerate()
        .map(|(i, &from)| {
            let to = posted.get(i + 1).copied().unwrap_or(u64::MAX);
            let sent = events
                .iter()
                .find(|e| e.stage == "sent" && e.key == chat && (from..to).contains(&e.t_us))
                .unwrap_or_else(|| panic!("no `sent` stage for message {i}"));
            Duration::from_micros(sent.t_us - from)
        })
        .collect()
}

fn group_jid(i: usize) -> String {
    format!("120363{i:012}@g.us")
}

/// The bridge with `chats` registered chats: the DM that is measured and
/// `chats - 1` groups that answer only a mention.
async fn bench_scale_one(chats: usize) -> ScaleRow {
    let s = sz();
    let mut world = World::new().await;
    world.model.set_default(Reply::text("ok"));
    let log = log_stages(&mut world, &format!("scale-{chats}"));
    world.register(DM, "Bench", &[]);
    {
        let cfg_db = world.data_dir().join("pocketbrain.sqlite3");
        let store = pocketbrain::store::Store::open(&cfg_db).unwrap();
        for i in 1..chats {
            let name = format!("Group {i}");
            let folder = pocketbrain::ids::Folder::from_name(&name);
            let jid = pocketbrain::ids::ChatJid::parse(&group_jid(i)).unwrap();
            store
                .register(pocketbrain::model::RegisteredChat {
                    jid: jid.clone(),
                    name: name.clone(),
                    folder: folder.clone(),
                    is_main: false,
                    trigger: pocketbrain::model::TriggerRule::Mention,
                    profile: pocketbrain::model::Profile::default_for(&jid, false),
                })
                .await
                .unwrap();
            pocketbrain::workspace::ensure_chat_dir(&world.workspace(), &folder, &name, &jid)
                .unwrap();
        }
    }
    let t = Instant::now();
    world.start_bridge().await;
    let start_to_health = t.elapsed();
    let http = http_client();
    let oc = world
        .opencode
        .as_ref()
        .unwrap()
        .url
        .trim_end_matches('/')
        .to_owned();
    let bridge = world.bridge.as_ref().unwrap().base.clone();
    let mut bare = Bare::new(&http, &oc, &world).await;
    // Warm-up: the chat's session and OpenCode's instances.
    ab_pairs(&http, &bridge, &mut bare, 0, WARMUP).await;
    let (posted, b) = ab_pairs(&http, &bridge, &mut bare, WARMUP, s.scale_pairs).await;
    drop(bare);
    let measured_to = unix_us();

    let pid = world.bridge.as_ref().unwrap().child.id();
    let before = cpu_seconds(pid);
    tokio::time::sleep(s.scale_idle).await;
    let idle_cpu = (cpu_seconds(pid) - before) / s.scale_idle.as_secs_f64();
    let rss_idle = rss_kib(pid);
    let ingest = if chats > 1 {
        ingest_groups(&bridge, s.scale_ingest, chats - 1, 16).await
    } else {
        ingest(&bridge, s.scale_ingest, 100, 16).await
    };
    let rss_after_ingest = rss_kib(pid);
    let _ = world.stop_bridge().await;
    let events: Vec<StageEvent> = read_stages(&log)
        .into_iter()
        .filter(|e| e.t_us < measured_to)
        .collect();
    let a = replies_from_stages(&events, DM, &posted);
    let mut ratios: Vec<f64> = a
        .iter()
        .zip(&b)
        .map(|(a, b)| a.as_secs_f64() / b.as_secs_f64())
        .collect();
    ratios.sort_by(f64::total_cmp);
    let paired_ratio_p50 = ratios[ratios.len().div_ceil(2) - 1];
    ScaleRow {
        chats,
        ingest,
        bridge: Dist::new(a),
        bare: Dist::new(b),
        paired_ratio_p50,
        idle_cpu,
        rss_idle,
        rss_after_ingest,
        start_to_health,
    }
}

/// Burst into the registered groups `1..=groups`, without a mention:
/// every message is stored as context and starts no run.
async fn ingest_groups(bridge: &str, n: usize, groups: usize, conns: usize) -> (f64, Dist) {
    fn message(i: usize, groups: usize) -> Value {
        let sender = format!("4917{:08}@s.whatsapp.net", i % 50);
        json!({"chat": group_jid(1 + i % groups), "sender": sender,
            "text": format!("chatter {i}"), "id": format!("G{i}")})
    }
    burst(bridge, n, conns, message, groups).await
}

async fn bench_scale() -> Vec<ScaleRow> {
    let mut rows = Vec::new();
    for &n in sz().scale_chats {
        rows.push(bench_scale_one(n).await);
    }
    rows
}

fn print_scale(rows: &[ScaleRow]) {
    let s = sz();
    println!(
        "\n## Scale (registered chats: one DM measured, the rest groups that answer only a \
         mention; {} A/B pairs after {WARMUP} warm-up; idle over {} s; burst of {} \
         `/fake/inbox` messages from 16 connections into the groups, stored as context, or \
         into 100 unregistered chats when there are none)\n",
        s.scale_pairs,
        s.scale_idle.as_secs(),
        s.scale_ingest,
    );
    println!(
        "| registered chats | start → /health ms | bridge p50 ms | bare p50 ms | added p50 ms | \
         ratio of p50s | paired ratio p50 | idle CPU % of a core | RSS idle MiB | burst msgs/s | \
         RSS after burst MiB |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.1} | {:.0} | {:.1} |",
            r.chats,
            ms(r.start_to_health),
            ms(r.bridge.pct(50.0)),
            ms(r.bare.pct(50.0)),
            ms(r.bridge.pct(50.0).saturating_sub(r.bare.pct(50.0))),
            r.bridge.pct(50.0).as_secs_f64() / r.bare.pct(50.0).as_secs_f64(),
            r.paired_ratio_p50,
            r.idle_cpu * 100.0,
            r.rss_idle as f64 / 1024.0,
            r.ingest.0,
            r.rss_after_ingest as f64 / 1024.0,
        );
    }
}
