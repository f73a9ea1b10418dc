//! A burst across many registered chats: one message into each at once,
//! the scripted model answering at once, so what is measured is the queue.
//! Every chat is answered exactly once, with its own answer; runs in
//! flight never exceed `PB_MAX_CONCURRENT_SESSIONS` (exactly, from the
//! queue's own stage events); no chat is overtaken by more than the chats
//! that could run or be queued beside it; the bridge's peak memory stays
//! under a bound.
//!
//! The suite runs 24 chats (two of them groups, woken by a mention) behind
//! a cap of 4: each chat's first run boots an OpenCode instance for its
//! folder, seconds of OpenCode's one event loop on a busy machine, so the
//! size is set by OpenCode, not by the bridge. `PB_BURST_CHATS` sets
//! another size. The 1,000-chat figures are the benchmark's `burst` part
//! (docs/BENCHMARKS.md).

mod support;

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use support::*;

const CAP: usize = 4;
/// Connections the burst is posted from.
const CONNS: usize = 16;
/// The bridge's peak resident memory (`VmHWM`), debug build. Measured:
/// 38 MiB with 8 or 20 chats; the bound leaves room for the allocator and
/// a larger `PB_BURST_CHATS`, and still catches state that grows with
/// every message or every chat without being freed.
const PEAK_RSS_MIB: u64 = 96;
/// Generous: each chat's first run boots an OpenCode instance for its
/// folder, up to 4 s a chat on a loaded 2-core machine.
const T: Duration = Duration::from_secs(600);

fn chats() -> Vec<(String, String)> {
    let n: usize = std::env::var("PB_BURST_CHATS")
        .ok()
        .map(|v| v.parse().expect("PB_BURST_CHATS is a number"))
        .unwrap_or(24);
    (0..n)
        .map(|i| {
            if i % 10 == 9 {
                (format!("120363{i:012}@g.us"), format!("Group {i}"))
            } else {
                (format!("4915300{i:05}@s.whatsapp.net"), format!("Chat {i}"))
            }
        })
        .collect()
}

#[tokio::test]
async fn a_burst_across_chats_answers_each_once_within_the_cap() {
    let chats = chats();
    let mut w = World::new().await;
    w.model.compute(|_| true, echo_reply);
    let log = w.dir.path().join("bridge.log");
    w.set_env("PB_LOG", "info,pocketbrain::timing=trace");
    w.set_env("PB_LOG_FORMAT", "json");
    w.set_env("PB_MAX_CONCURRENT_SESSIONS", &CAP.to_string());
    w.bridge_log = Some(log.clone());
    w.register_many(&chats).await;
    w.start_bridge().await;
    let pid = w.bridge.as_ref().unwrap().child.id();

    let started = std::time::Instant::now();
    let statuses: Vec<u16> = futures_util::stream::iter(chats.iter().enumerate())
        .map(|(i, (jid, _))| {
            let sender = format!("4917700{i:05}@s.whatsapp.net");
            w.inbox(json!({"chat": jid, "sender": sender, "sender_name": "Ann",
                "text": format!("@Andy burst m{i}m"), "id": format!("B{i}")}))
        })
        .buffer_unordered(CONNS)
        .map(|(status, _)| status)
        .collect()
        .await;
    assert!(statuses.iter().all(|&s| s == 202), "every message accepted");
    eprintln!(
        "burst: {} messages posted in {:?}",
        chats.len(),
        started.elapsed()
    );

    // Every chat answered: then nothing is left to run.
    let deadline = std::time::Instant::now() + T;
    loop {
        let n = w.outbox(None).await.len();
        if n >= chats.len() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {n} of {} chats answered",
            chats.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("burst: all answered after {:?}", started.elapsed());
    w.wait_idle(T).await;
    let kib = |field| proc_status_kib(pid, field).unwrap_or_else(|| panic!("{field} of {pid}"));
    let peak = kib("VmHWM:") / 1024;
    let now = kib("VmRSS:") / 1024;
    eprintln!("burst: bridge RSS peak {peak} MiB, {now} MiB at the end");

    // Exactly one reply per chat, its own.
    let mut replies: HashMap<String, Vec<String>> = HashMap::new();
    for m in w.outbox(None).await {
        replies
            .entry(m["chat"].as_str().unwrap().to_owned())
            .or_default()
            .push(m["text"].as_str().unwrap().to_owned());
    }
    for (i, (jid, _)) in chats.iter().enumerate() {
        assert_eq!(
            replies.get(jid).map(Vec::as_slice),
            Some(&[format!("Andy: echo: @Andy burst m{i}m")][..]),
            "chat {jid}"
        );
    }
    assert_eq!(replies.len(), chats.len(), "no reply to another chat");
    w.stop_bridge().await;

    let events = read_stages(&log);
    let began: Vec<&StageEvent> = events.iter().filter(|e| e.stage == "run_began").collect();
    assert_eq!(began.len(), chats.len(), "one run per chat");
    assert_eq!(
        events.iter().filter(|e| e.stage == "run_ended").count(),
        chats.len()
    );
    let max = max_in_flight(events.iter().map(|e| (e.stage.as_str(), e.t_us)));
    eprintln!("burst: at most {max} runs in flight (cap {CAP})");
    assert!(max <= CAP, "{max} runs in flight, over the cap of {CAP}");
    // The burst filled every slot: the bound above was really tested.
    assert_eq!(max, CAP, "the burst never filled the cap");
    assert!(
        w.model.max_in_flight() <= CAP,
        "model requests over the cap"
    );

    // First come, first served: a chat's run starts no later than its
    // place in the queue, give or take the CAP runs one dispatch starts
    // together (their `run_began` in any order) and the intakes that
    // stamp `queued` just after waking the queue, on other threads. A
    // queue that served the newest first, or let a chat wait while later
    // ones ran, would be off by most of the burst.
    let rank = |stage: &str| -> HashMap<&str, usize> {
        let mut v: Vec<&StageEvent> = events.iter().filter(|e| e.stage == stage).collect();
        v.sort_by_key(|e| e.t_us);
        v.iter()
            .enumerate()
            .map(|(r, e)| (e.key.as_str(), r))
            .collect()
    };
    let (queued, ran) = (rank("queued"), rank("run_began"));
    let overtaken = queued
        .iter()
        .map(|(chat, q)| ran[chat].saturating_sub(*q))
        .max()
        .unwrap();
    eprintln!("burst: a chat started at most {overtaken} places after its place in the queue");
    assert!(
        overtaken < 2 * CAP,
        "a chat started {overtaken} places later than it was queued"
    );
    assert!(
        peak < PEAK_RSS_MIB,
        "the bridge's peak RSS was {peak} MiB (bound {PEAK_RSS_MIB} MiB)"
    );
}
