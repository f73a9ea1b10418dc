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

#[path = "../tests/support/mod.rs"]
mod support;

use std::hint::black_box;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use serde_json::{Value, json};

use pocketbrain::ids::{ChatJid, Folder, MessageId};
use pocketbrain::prompt::{ChatContext, format_prompt};
use pocketbrain::router::TriggerRule;
use pocketbrain::store::{Inbound, RegisteredChat, Store, StoredMessage};
use support::{Reply, World};

const INBOUND_N: usize = 5000;
const CHATS: usize = 50;
const PENDING: usize = 100;
const PENDING_ITERS: usize = 2000;
const COMPLETE_ITERS: usize = 2000;
const PROMPT_BATCH: usize = 100;
const PROMPT_ITERS: usize = 2000;
const E2E_ITERS: usize = 40;
const WARMUP: usize = 3;
const POLL: Duration = Duration::from_millis(5);
const E2E_TIMEOUT: Duration = Duration::from_secs(60);
const DM: &str = "491511111111@s.whatsapp.net";

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
    let mut rows = Vec::new();
    let chats: Vec<ChatJid> = (0..CHATS).map(jid).collect();

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
        let mut samples = Vec::with_capacity(INBOUND_N);
        let start = Instant::now();
        for i in 0..INBOUND_N {
            let msg = inbound(&chats[i % CHATS], format!("IN{i}"), i);
            let t = Instant::now();
            let out = store.record_inbound(msg, false).await.unwrap();
            samples.push(t.elapsed());
            assert!(!out.duplicate);
        }
        let wall = start.elapsed();
        rows.push(StoreRow {
            name: format!("record_inbound, sequential ({INBOUND_N} msgs, {CHATS} chats)"),
            dist: Dist::new(samples),
            per_sec: Some(INBOUND_N as f64 / wall.as_secs_f64()),
        });
    }

    // record_inbound, concurrent: one task per chat, as a burst across chats.
    {
        let store = open_store(dir, "inbound-conc.sqlite3");
        warm(&store).await;
        let per_chat = INBOUND_N / CHATS;
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
        let mut samples = Vec::with_capacity(INBOUND_N);
        for t in tasks {
            samples.extend(t.await.unwrap());
        }
        let wall = start.elapsed();
        rows.push(StoreRow {
            name: format!("record_inbound, {CHATS} concurrent tasks ({INBOUND_N} msgs)"),
            dist: Dist::new(samples),
            per_sec: Some(INBOUND_N as f64 / wall.as_secs_f64()),
        });
    }

    // pending_messages and complete_run on a database holding other chats' traffic.
    {
        let store = open_store(dir, "runs.sqlite3");
        for i in 0..INBOUND_N {
            store
                .record_inbound(inbound(&chats[i % CHATS], format!("BG{i}"), i), false)
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
        let mut samples = Vec::with_capacity(PENDING_ITERS);
        let start = Instant::now();
        for _ in 0..PENDING_ITERS {
            let t = Instant::now();
            let batch = store.pending_messages(&chat, 100).await.unwrap();
            samples.push(t.elapsed());
            black_box(batch);
        }
        let wall = start.elapsed();
        rows.push(StoreRow {
            name: format!("pending_messages ({PENDING} pending, limit 100)"),
            dist: Dist::new(samples),
            per_sec: Some(PENDING_ITERS as f64 / wall.as_secs_f64()),
        });

        let mut samples = Vec::with_capacity(COMPLETE_ITERS);
        let start = Instant::now();
        for i in 0..COMPLETE_ITERS {
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
            per_sec: Some(COMPLETE_ITERS as f64 / wall.as_secs_f64()),
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
    let samples = (0..PROMPT_ITERS)
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
    bridge: Dist,
    bare: Dist,
    inbox_post: Dist,
    paired_ratio_p50: f64,
    opencode_version: String,
}

/// Assistant messages in a transcript that have finished.
fn completed_assistant(transcript: &Value) -> usize {
    transcript.as_array().map_or(0, |msgs| {
        msgs.iter()
            .filter(|m| {
                m["info"]["role"] == "assistant"
                    && !m["info"]["time"]["completed"].is_null()
                    && m["info"]["finish"] != "tool-calls"
            })
            .count()
    })
}

async fn bench_e2e() -> E2eResult {
    let mut world = World::new().await;
    world.model.set_default(Reply::text("ok"));
    world.set_env("PB_LOG", "info"); // the binary's default level
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

    // The bare-OpenCode side: one session in a scratch directory.
    let scratch = std::path::absolute(world.workspace().join("bench-bare")).unwrap();
    std::fs::create_dir_all(&scratch).unwrap();
    let dir = scratch.to_string_lossy().into_owned();
    let session: Value = http
        .post(format!("{oc}/session"))
        .query(&[("directory", &dir)])
        .json(&json!({"title": "bench"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let session = session["id"].as_str().expect("session id").to_owned();

    let mut bridge_samples = Vec::with_capacity(E2E_ITERS);
    let mut bare_samples = Vec::with_capacity(E2E_ITERS);
    let mut post_samples = Vec::with_capacity(E2E_ITERS);
    for i in 0..E2E_ITERS {
        // A: through the bridge, message accepted (202) -> reply in the fake outbox.
        let body = json!({"chat": DM, "sender": DM, "sender_name": "Ann",
            "text": format!("hello {i}, how are you?"), "id": format!("B{i}")});
        let t_post = Instant::now();
        let r = http
            .post(format!("{bridge}/fake/inbox"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 202);
        let accepted = Instant::now();
        post_samples.push(accepted - t_post);
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
            if v["messages"].as_array().map_or(0, Vec::len) > i {
                break;
            }
            assert!(accepted.elapsed() < E2E_TIMEOUT, "no reply to B{i}");
            tokio::time::sleep(POLL).await;
        }
        bridge_samples.push(accepted.elapsed());

        // B: bare OpenCode, prompt_async -> finished assistant message in the transcript.
        let t = Instant::now();
        let r = http
            .post(format!("{oc}/session/{session}/prompt_async"))
            .query(&[("directory", &dir)])
            .json(&json!({"parts": [{"type": "text", "text": format!("hello {i}, how are you?")}]}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "prompt_async: {}", r.status());
        loop {
            let v: Value = http
                .get(format!("{oc}/session/{session}/message"))
                .query(&[("directory", &dir)])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if completed_assistant(&v) > i {
                break;
            }
            assert!(t.elapsed() < E2E_TIMEOUT, "no bare reply {i}");
            tokio::time::sleep(POLL).await;
        }
        bare_samples.push(t.elapsed());
    }

    let mut ratios: Vec<f64> = bridge_samples[WARMUP..]
        .iter()
        .zip(&bare_samples[WARMUP..])
        .map(|(a, b)| a.as_secs_f64() / b.as_secs_f64())
        .collect();
    ratios.sort_by(f64::total_cmp);
    let paired_ratio_p50 = ratios[ratios.len().div_ceil(2) - 1];

    let _ = world.stop_bridge().await;
    E2eResult {
        bridge: Dist::new(bridge_samples[WARMUP..].to_vec()),
        bare: Dist::new(bare_samples[WARMUP..].to_vec()),
        inbox_post: Dist::new(post_samples[WARMUP..].to_vec()),
        paired_ratio_p50,
        opencode_version,
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

fn main() {
    let load_before = loadavg();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let workers = rt.metrics().num_workers();
    let tmp = tempfile::tempdir().unwrap();

    let store_rows = rt.block_on(bench_store(tmp.path()));
    let prompt = bench_prompt();
    let e2e = rt.block_on(bench_e2e());
    let load_after = loadavg();

    let dirty = if command_line("git", &["status", "--porcelain"]).is_empty() {
        ""
    } else {
        " (working tree has uncommitted changes)"
    };
    println!("# PocketBrain core benchmark\n");
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
    println!("- opencode: {}\n", e2e.opencode_version);

    println!("## Store (SQLite WAL on a temp file, async API via the blocking pool)\n");
    println!("| operation | n | p50 µs | p90 µs | p99 µs | max µs | ops/s |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for r in &store_rows {
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

    println!(
        "\n## End to end (scripted model answers at once; {E2E_ITERS} sequential messages, \
         first {WARMUP} discarded as warm-up, A/B interleaved, polling every {} ms)\n",
        POLL.as_millis()
    );
    println!("| path | n | p50 ms | p90 ms | p99 ms | max ms | mean ms |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (name, d) in [
        (
            "bridge: inbox accepted (202) → reply in fake outbox",
            &e2e.bridge,
        ),
        (
            "bare OpenCode: prompt_async → completed assistant message",
            &e2e.bare,
        ),
        (
            "POST /fake/inbox round trip (for reference)",
            &e2e.inbox_post,
        ),
    ] {
        println!(
            "| {name} | {} | {} | {} | {} | {} | {} |",
            d.n(),
            ms(d.pct(50.0)),
            ms(d.pct(90.0)),
            ms(d.pct(99.0)),
            ms(d.max()),
            ms(d.mean()),
        );
    }
    let ratio = e2e.bridge.pct(50.0).as_secs_f64() / e2e.bare.pct(50.0).as_secs_f64();
    println!(
        "\nRatio of p50s, bridge / bare OpenCode: **{ratio:.2}×** \
         (median of per-pair ratios: {:.2}×; bridge overhead at p50: {} ms)",
        e2e.paired_ratio_p50,
        ms(e2e.bridge.pct(50.0).saturating_sub(e2e.bare.pct(50.0))),
    );
    println!(
        "\nWith n = {} samples (nearest-rank percentiles), p99 is the maximum.",
        e2e.bridge.n()
    );
}
