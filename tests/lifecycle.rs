//! The bridge's life outside a conversation: start-up while OpenCode is
//! away, and what an idle bridge costs.

mod support;

use std::time::Duration;

use support::*;

const DM: &str = "491511111111@s.whatsapp.net";
const T: Duration = Duration::from_secs(120);

/// CPU time (user + system) a process has used so far, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 here.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// Bug: the IPC watcher woke itself (listing its folder raised an inotify
/// event, which started another listing), so an idle bridge used a whole
/// core. Idle, it must sleep: under a tenth of a core over three seconds
/// is a generous bound (the loop used all of it; a sleeping bridge uses
/// next to nothing).
#[tokio::test]
async fn an_idle_bridge_sleeps() {
    let mut w = World::new().await;
    w.model.always(|_| true, Reply::text("Hello."));
    w.register(DM, "Ann", &[]);
    w.start_bridge().await;
    // One message through everything first, tool plugin loaded included.
    w.say(DM, "A1", "hi").await;
    assert_eq!(w.wait_outbox(DM, 1, T).await, vec!["Andy: Hello."]);
    w.wait_idle(T).await;

    let pid = w.bridge.as_ref().unwrap().child.id();
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    let before = cpu_ticks(pid);
    let window = Duration::from_secs(3);
    tokio::time::sleep(window).await;
    let used = cpu_ticks(pid) - before;
    let limit = hz * window.as_secs() / 10;
    assert!(
        used < limit,
        "an idle bridge used {used} ticks of CPU in {window:?} (limit {limit}, {hz} ticks/s)"
    );
}

/// Bug: `serve` waited up to a minute for OpenCode before serving HTTP, so
/// health said nothing exactly when something was wrong. Now health
/// answers at once, says OpenCode is unreachable, and the message sent
/// meanwhile is answered once OpenCode comes up.
#[tokio::test]
async fn health_answers_while_opencode_is_down_and_messages_wait_for_it() {
    let mut w = World::without_opencode().await;
    let port = free_port();
    w.set_env("PB_OPENCODE_URL", &format!("http://127.0.0.1:{port}"));
    w.model.always(|_| true, Reply::text("Back."));
    w.register(DM, "Ann", &[]);
    w.start_bridge().await;

    let h = w.health().await;
    assert_eq!(h["checks"]["opencode"], "opencode-unreachable", "{h}");
    assert_eq!(h["status"], "degraded", "{h}");
    assert!(
        h["codes"]
            .as_array()
            .unwrap()
            .contains(&"opencode-unreachable".into()),
        "{h}"
    );
    // The fake channel takes messages meanwhile; nothing is lost.
    w.say(DM, "A1", "are you there?").await;

    w.restart_opencode(port);
    w.wait_health(T, |h| h["checks"]["opencode"] == "opencode-ok")
        .await;
    assert_eq!(w.wait_outbox(DM, 1, T).await, vec!["Andy: Back."]);
}
