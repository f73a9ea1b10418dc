//! The burst part (`PB_BENCH_ONLY=burst`): many registered chats (a tenth
//! of them groups, woken by a mention) get one message each, as fast as
//! the bench can post them, twice: a cold round (each chat's first run:
//! its session is made and OpenCode boots the folder's instance) and a
//! warm one (sessions exist). The scripted model answers at once, so the
//! queue and its cap are what is measured.
//!
//! Per chat, from the bridge's stage log: `accepted` → `sent` (its reply
//! stored by the fake phone), `accepted` → `run_began` (the wait behind
//! other chats) and `run_began` → `run_ended` (its own turn). Runs in
//! flight come from the queue's `run_began`/`run_ended` pairs, which sit
//! inside the slot each run holds, so their overlap is an exact lower
//! bound of what the queue held and never over it. Memory: the bridge's
//! `VmHWM` (peak resident set, reset before each round through
//! `/proc/PID/clear_refs`) and `VmRSS`, and OpenCode's resident set (its
//! own process tree, sampled).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::support::{self, World};
use super::{Dist, StageEvent, log_stages, ms, read_stages, sz, unix_us};

/// Connections the burst is posted from.
const CONNS: usize = 16;
/// How often memory is sampled during a round.
const SAMPLE: Duration = Duration::from_millis(20);

pub struct Round {
    name: &'static str,
    /// First `accepted` → last `sent`.
    total: Duration,
    /// The bench posting every message (all `202`).
    posting: Duration,
    dm_reply: Dist,
    /// None when the round had no group (fewer than ten chats).
    group_reply: Option<Dist>,
    wait: Dist,
    turn: Dist,
    /// The most runs in flight at one moment (stage log) and the most
    /// model requests at once (the scripted model's own count, since the
    /// start).
    max_in_flight: usize,
    model_max: usize,
    /// Places a chat started later than it was queued, at most.
    overtaken: usize,
    /// Chats whose replies were not exactly their own, once per round.
    wrong: usize,
    bridge_peak_kib: u64,
    bridge_end_kib: u64,
    opencode_peak_kib: u64,
    opencode_end_kib: u64,
}

pub struct BurstResult {
    chats: usize,
    groups: usize,
    cap: usize,
    bridge_idle_kib: u64,
    opencode_idle_kib: u64,
    rounds: Vec<Round>,
}

fn jid(i: usize) -> String {
    if i % 10 == 9 {
        format!("120363{i:012}@g.us")
    } else {
        format!("4915300{i:05}@s.whatsapp.net")
    }
}

fn text(i: usize, round: usize) -> String {
    format!("@Andy burst m{i}x{round}m")
}

fn status_kib(pid: u32, field: &str) -> u64 {
    support::proc_status_kib(pid, field).unwrap_or(0)
}

/// Resident memory of `pid` and every process below it, in KiB.
fn tree_rss_kib(pid: u32) -> u64 {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        let rest = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
        if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|s| s.parse().ok()) {
            children.entry(ppid).or_default().push(p);
        }
    }
    let (mut todo, mut sum) = (vec![pid], 0);
    while let Some(p) = todo.pop() {
        sum += status_kib(p, "VmRSS:");
        todo.extend(children.get(&p).into_iter().flatten());
    }
    sum
}

/// Samples both processes' memory until `stop`; returns the peaks (KiB).
fn sample_memory(
    bridge: u32,
    opencode: u32,
    stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<(u64, u64)> {
    tokio::spawn(async move {
        let (mut b, mut o) = (0, 0);
        let mut tick = 0u32;
        while !*stop.borrow() {
            b = b.max(status_kib(bridge, "VmRSS:"));
            // The tree walk reads all of /proc: every tenth tick.
            if tick.is_multiple_of(10) {
                o = o.max(tree_rss_kib(opencode));
            }
            tick += 1;
            tokio::time::sleep(SAMPLE).await;
        }
        (b, o.max(tree_rss_kib(opencode)))
    })
}

/// Posts message `round` to every chat over [`CONNS`] connections.
async fn post_all(bridge: &str, chats: usize, round: usize) {
    use futures_util::StreamExt;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let url = format!("{bridge}/fake/inbox");
    futures_util::stream::iter(0..chats)
        .map(|i| {
            let body = json!({"chat": jid(i), "sender": format!("4917700{i:05}@s.whatsapp.net"),
                "sender_name": "Ann", "text": text(i, round), "id": format!("R{round}C{i}")});
            let req = http.post(&url).json(&body);
            async move {
                let r = req.send().await.unwrap();
                assert_eq!(r.status().as_u16(), 202, "burst POST");
            }
        })
        .buffer_unordered(CONNS)
        .collect::<Vec<()>>()
        .await;
}

/// Every chat's replies so far, by chat.
async fn replies(bridge: &str) -> HashMap<String, Vec<String>> {
    let v: Value = reqwest::Client::new()
        .get(format!("{bridge}/fake/outbox"))
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut by_chat: HashMap<String, Vec<String>> = HashMap::new();
    for m in v["messages"].as_array().into_iter().flatten() {
        by_chat
            .entry(m["chat"].as_str().unwrap_or_default().to_owned())
            .or_default()
            .push(m["text"].as_str().unwrap_or_default().to_owned());
    }
    by_chat
}

async fn round(
    world: &World,
    log: &std::path::Path,
    name: &'static str,
    number: usize,
    chats: usize,
    timeout: Duration,
) -> Round {
    let bridge = world.bridge.as_ref().unwrap().base.clone();
    let pid = world.bridge.as_ref().unwrap().child.id();
    let oc_pid = world.opencode.as_ref().unwrap().pid();
    // Peak resident set from here on (5: reset VmHWM to VmRSS).
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let sampler = sample_memory(pid, oc_pid, stop_rx);
    let from = unix_us();
    let t = Instant::now();
    post_all(&bridge, chats, number).await;
    let posting = t.elapsed();
    eprintln!("burst {name}: {chats} posted in {posting:?}");
    let deadline = Instant::now() + timeout;
    let mut told = Instant::now();
    let got = loop {
        let got = replies(&bridge).await;
        let n: usize = got.values().map(Vec::len).sum();
        if n >= chats * number {
            break got;
        }
        assert!(Instant::now() < deadline, "burst {name}: {n} replies");
        if told.elapsed() > Duration::from_secs(10) {
            eprintln!(
                "burst {name}: {} of {chats} answered after {:?}",
                n - chats * (number - 1),
                t.elapsed()
            );
            told = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    eprintln!("burst {name}: all answered after {:?}", t.elapsed());
    // Nothing more to come: no run in flight (a second reply would be a
    // run's), then the replies again.
    loop {
        let h: Value = reqwest::get(format!("{bridge}/health"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if h["queue"]["running"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(got);
    let got = replies(&bridge).await;
    let to = unix_us();
    stop_tx.send(true).unwrap();
    let (bridge_sampled, opencode_peak_kib) = sampler.await.unwrap();
    let bridge_peak_kib = status_kib(pid, "VmHWM:").max(bridge_sampled);
    let bridge_end_kib = status_kib(pid, "VmRSS:");
    let opencode_end_kib = tree_rss_kib(oc_pid);
    let wrong = (0..chats)
        .filter(|&i| {
            let want: Vec<String> = (1..=number)
                .map(|r| format!("Andy: echo: {}", text(i, r)))
                .collect();
            got.get(&jid(i)) != Some(&want)
        })
        .count();

    let all = read_stages(log);
    let events: Vec<&StageEvent> = all
        .iter()
        .filter(|e| (from..to).contains(&e.t_us))
        .collect();
    let first = |stage: &str| -> HashMap<&str, u64> {
        let mut m = HashMap::new();
        for e in events.iter().filter(|e| e.stage == stage) {
            m.entry(e.key.as_str()).or_insert(e.t_us);
        }
        m
    };
    let (accepted, began, ended, sent) = (
        first("accepted"),
        first("run_began"),
        first("run_ended"),
        first("sent"),
    );
    let span = |a: &HashMap<&str, u64>, b: &HashMap<&str, u64>, chat: &str| {
        let (Some(a), Some(b)) = (a.get(chat), b.get(chat)) else {
            panic!("burst {name}: chat {chat} lacks a stage");
        };
        Duration::from_micros(b.saturating_sub(*a))
    };
    let (mut dm, mut group, mut wait, mut turn) = (vec![], vec![], vec![], vec![]);
    for i in 0..chats {
        let chat = jid(i);
        let reply = span(&accepted, &sent, &chat);
        if chat.ends_with("@g.us") {
            group.push(reply);
        } else {
            dm.push(reply);
        }
        wait.push(span(&accepted, &began, &chat));
        turn.push(span(&began, &ended, &chat));
    }
    let rank = |stage: &str| -> HashMap<&str, usize> {
        let mut v: Vec<&&StageEvent> = events.iter().filter(|e| e.stage == stage).collect();
        v.sort_by_key(|e| e.t_us);
        v.iter()
            .enumerate()
            .map(|(r, e)| (e.key.as_str(), r))
            .collect()
    };
    let (queued, ran) = (rank("queued"), rank("run_began"));
    let overtaken = queued
        .iter()
        .map(|(chat, q)| ran.get(chat).map_or(usize::MAX, |r| r.saturating_sub(*q)))
        .max()
        .unwrap_or(0);
    Round {
        name,
        total: Duration::from_micros(
            sent.values().max().unwrap() - accepted.values().min().unwrap(),
        ),
        posting,
        dm_reply: Dist::new(dm),
        group_reply: (!group.is_empty()).then(|| Dist::new(group)),
        wait: Dist::new(wait),
        turn: Dist::new(turn),
        max_in_flight: support::max_in_flight(events.iter().map(|e| (e.stage.as_str(), e.t_us))),
        model_max: world.model.max_in_flight(),
        overtaken,
        wrong,
        bridge_peak_kib,
        bridge_end_kib,
        opencode_peak_kib,
        opencode_end_kib,
    }
}

pub async fn bench_burst() -> BurstResult {
    let chats: usize = std::env::var("PB_BENCH_BURST_CHATS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(sz().burst_chats);
    let cap: usize = std::env::var("PB_BENCH_BURST_CAP")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let mut world = World::new().await;
    world.model.compute(|_| true, support::echo_reply);
    let log = log_stages(&mut world, "burst");
    world.set_env("PB_MAX_CONCURRENT_SESSIONS", &cap.to_string());
    let list: Vec<(String, String)> = (0..chats).map(|i| (jid(i), format!("Burst {i}"))).collect();
    world.register_many(&list).await;
    world.start_bridge().await;
    let pid = world.bridge.as_ref().unwrap().child.id();
    let bridge_idle_kib = status_kib(pid, "VmRSS:");
    let opencode_idle_kib = tree_rss_kib(world.opencode.as_ref().unwrap().pid());
    let timeout = Duration::from_secs(60 + chats as u64 * 10);
    let mut rounds = Vec::new();
    for (number, name) in [(1, "cold"), (2, "warm")] {
        rounds.push(round(&world, &log, name, number, chats, timeout).await);
    }
    let _ = world.stop_bridge().await;
    BurstResult {
        chats,
        groups: (0..chats).filter(|i| i % 10 == 9).count(),
        cap,
        bridge_idle_kib,
        opencode_idle_kib,
        rounds,
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

fn s(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64())
}

pub fn print_burst(r: &BurstResult) {
    println!(
        "\n## Burst ({} registered chats, {} of them groups woken by a mention; one message \
         into each from {CONNS} connections, a cold round (each chat's first run) then a warm \
         one; scripted model answers at once; PB_MAX_CONCURRENT_SESSIONS={})\n",
        r.chats, r.groups, r.cap
    );
    println!(
        "| round | posting s | all answered s | chats / cap × mean turn s | max runs in flight \
         (cap {}) | max model requests at once | most places overtaken | chats not answered \
         exactly once |",
        r.cap
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for x in &r.rounds {
        let predicted = x.turn.mean().as_secs_f64() * r.chats as f64 / r.cap as f64;
        println!(
            "| {} | {} | {} | {predicted:.2} | {} | {} | {} | {} |",
            x.name,
            s(x.posting),
            s(x.total),
            x.max_in_flight,
            x.model_max,
            x.overtaken,
            x.wrong,
        );
    }
    println!("\n| round | measure | n | p50 ms | p90 ms | p99 ms | max ms | mean ms |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for x in &r.rounds {
        let rows = [
            ("DM: accepted → reply sent", Some(&x.dm_reply)),
            ("group: accepted → reply sent", x.group_reply.as_ref()),
            (
                "accepted → run began (waiting behind others)",
                Some(&x.wait),
            ),
            ("run began → run ended (own turn)", Some(&x.turn)),
        ];
        for (what, d) in rows.into_iter().filter_map(|(w, d)| Some((w, d?))) {
            println!(
                "| {} | {what} | {} | {} | {} | {} | {} | {} |",
                x.name,
                d.n(),
                ms(d.pct(50.0)),
                ms(d.pct(90.0)),
                ms(d.pct(99.0)),
                ms(d.max()),
                ms(d.mean()),
            );
        }
    }
    println!(
        "\n| round | bridge peak RSS MiB (VmHWM) | bridge RSS at end MiB | OpenCode peak RSS MiB \
         (sampled) | OpenCode RSS at end MiB |"
    );
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| idle, before | | {} | | {} |",
        mib(r.bridge_idle_kib),
        mib(r.opencode_idle_kib)
    );
    for x in &r.rounds {
        println!(
            "| {} | {} | {} | {} | {} |",
            x.name,
            mib(x.bridge_peak_kib),
            mib(x.bridge_end_kib),
            mib(x.opencode_peak_kib),
            mib(x.opencode_end_kib),
        );
    }
}
