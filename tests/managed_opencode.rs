//! Without PB_OPENCODE_URL the bridge starts `opencode serve` itself and
//! stops it again, even when the bridge is killed.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

const DM: &str = "491511111111@s.whatsapp.net";
// Generous: the first run in a chat boots an OpenCode instance, slow on a busy machine.
const T: Duration = Duration::from_secs(120);

async fn wait_no_processes_in(w: &World) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pids_with_cwd(&w.workspace()).is_empty() {
        assert!(
            Instant::now() < deadline,
            "opencode still running: {:?}",
            pids_with_cwd(&w.workspace())
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn bridge_runs_its_own_opencode_and_stops_it() {
    let mut w = World::without_opencode().await;
    w.model.set_default(Reply::text("from my own server"));
    w.register(DM, "Ann", &[]);
    w.start_bridge().await;
    assert_eq!(
        pids_with_cwd(&w.workspace()).len(),
        1,
        "one opencode serve in the workspace"
    );
    w.say(DM, "A1", "hi").await;
    assert_eq!(
        w.wait_outbox(DM, 1, T).await,
        vec!["Andy: from my own server"]
    );
    assert_eq!(w.stop_bridge().await.code(), Some(0));
    wait_no_processes_in(&w).await;
}

#[tokio::test]
async fn kill9_takes_the_managed_opencode_down_and_a_restart_reruns_the_lost_prompt() {
    let mut w = World::without_opencode().await;
    w.model.on(
        |r| r.last_user_text().contains("slow"),
        vec![Reply::delayed(
            Duration::from_secs(5),
            Reply::text("never seen"),
        )],
    );
    w.model.set_default(Reply::text("answer after restart"));
    w.register(DM, "Ann", &[]);
    w.start_bridge().await;
    w.say(DM, "A1", "slow question").await;
    w.model.wait_for_requests(1, T).await;
    w.kill9();
    wait_no_processes_in(&w).await;

    w.start_bridge().await;
    assert_eq!(
        w.wait_outbox(DM, 1, T).await,
        vec!["Andy: answer after restart"]
    );
    assert_quiet(&w, DM, 1, Duration::from_secs(2)).await;
}

#[tokio::test]
async fn with_a_server_password_every_call_uses_basic_auth() {
    let mut w = World::without_opencode().await;
    // The managed server requires it on every route; the bridge must send it.
    w.set_env("OPENCODE_SERVER_PASSWORD", "s3cret-pass-7Hq2xZ");
    w.set_env("OPENCODE_SERVER_USERNAME", "pb-user");
    w.model.set_default(Reply::text("authenticated"));
    w.register(DM, "Ann", &[]);
    w.start_bridge().await;
    w.say(DM, "P1", "hi").await;
    assert_eq!(w.wait_outbox(DM, 1, T).await, vec!["Andy: authenticated"]);
    // Health is eventually consistent: the event stream may still be reopening.
    let h = w
        .wait_health(T, |h| h["checks"]["opencode"] == "opencode-ok")
        .await;
    assert!(
        !h.to_string().contains("s3cret-pass-7Hq2xZ"),
        "the password never shows"
    );
    assert_eq!(w.stop_bridge().await.code(), Some(0));
}

#[tokio::test]
async fn a_taken_http_port_is_refused_before_opencode_is_started() {
    let mut w = World::without_opencode().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    w.set_env("PB_HTTP_ADDR", &taken.local_addr().unwrap().to_string());
    let (ok, _, err) = w.cli(&["serve"]);
    assert!(!ok, "serve must fail on a taken port");
    assert!(
        err.contains("cannot listen on") && err.contains("PB_HTTP_ADDR"),
        "{err}"
    );
    assert!(
        !err.contains("started opencode serve"),
        "OpenCode was started before the port was checked:\n{err}"
    );
    assert!(pids_with_cwd(&w.workspace()).is_empty());
}

/// A managed OpenCode that dies on its own is started again on the same
/// port, and the chat is answered once it is back.
#[tokio::test]
async fn a_managed_opencode_that_dies_is_started_again() {
    let mut w = World::without_opencode().await;
    w.model.set_default(Reply::text("still here"));
    w.register(DM, "Ann", &[]);
    w.start_bridge().await;
    w.say(DM, "A1", "hi").await;
    w.wait_outbox(DM, 1, T).await;

    let pids = pids_with_cwd(&w.workspace());
    assert_eq!(pids.len(), 1);
    unsafe {
        libc::kill(pids[0] as i32, libc::SIGKILL);
    }
    // A new process takes its place (on the same port: the bridge's
    // client keeps its address).
    let deadline = Instant::now() + T;
    loop {
        let now = pids_with_cwd(&w.workspace());
        if now.len() == 1 && now != pids {
            break;
        }
        assert!(Instant::now() < deadline, "not started again: {now:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    w.say(DM, "A2", "are you back?").await;
    assert_eq!(w.wait_outbox(DM, 2, T).await[1], "Andy: still here");
    assert_eq!(w.stop_bridge().await.code(), Some(0));
    wait_no_processes_in(&w).await;
}

/// The managed OpenCode gets an allow-list of the bridge's environment and
/// a random password of its own (nothing configured); the agent's shell
/// sees neither the password nor keys.
#[tokio::test]
async fn the_managed_opencode_gets_no_bridge_settings_and_a_random_password() {
    let mut w = World::without_opencode().await;
    w.set_env("PB_PROBE_SETTING", "bridge-only");
    w.set_env("UNLISTED_VARIABLE", "not-for-opencode");
    w.set_env("PROBE_API_KEY", "sk-probe-key");
    w.set_env("PROBE_EXTRA", "extra-value");
    w.set_env("PB_OPENCODE_ENV", "PROBE_EXTRA");
    w.model.on(
        |r| r.last_role() == "user" && r.last_user_text().contains("show env"),
        vec![Reply::tool_call(
            "bash",
            json!({"command": "env", "description": "Shows the environment"}),
        )],
    );
    w.model
        .on(|r| r.last_role() == "tool", vec![Reply::text("seen")]);
    // The owner's own chat: its shell runs without asking (other profiles ask).
    w.register(DM, "Ann", &["--profile", "main"]);
    w.start_bridge().await;

    // Between fork and exec the child still shows the bridge's own
    // environment: wait until it runs the opencode binary.
    let deadline = Instant::now() + T;
    let pid = loop {
        let pids = pids_with_cwd(&w.workspace());
        let bridge = std::fs::canonicalize(env!("CARGO_BIN_EXE_pocketbrain")).unwrap();
        let exec =
            |p: &u32| std::fs::read_link(format!("/proc/{p}/exe")).is_ok_and(|e| e != bridge);
        if let [pid] = pids.as_slice()
            && exec(pid)
        {
            break *pid;
        }
        assert!(Instant::now() < deadline, "no opencode process: {pids:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let pids = [pid];
    let environ = std::fs::read(format!("/proc/{}/environ", pids[0])).unwrap();
    let vars: Vec<String> = environ
        .split(|b| *b == 0)
        .filter(|v| !v.is_empty())
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    assert!(
        vars.iter().all(|v| !v.starts_with("PB_")),
        "no bridge setting: {vars:?}"
    );
    assert!(!vars.iter().any(|v| v.starts_with("UNLISTED_VARIABLE=")));
    assert!(vars.contains(&"PROBE_API_KEY=sk-probe-key".to_owned()));
    assert!(vars.contains(&"PROBE_EXTRA=extra-value".to_owned()));
    assert!(vars.iter().any(|v| v.starts_with("HOME=")));
    let password = vars
        .iter()
        .find_map(|v| v.strip_prefix("OPENCODE_SERVER_PASSWORD="))
        .expect("a password is always set")
        .to_owned();
    assert_eq!(password.len(), 64, "a random one");

    // The bridge works with it; a caller without it is refused.
    w.say(DM, "E1", "show env").await;
    assert_eq!(w.wait_outbox(DM, 1, T).await, vec!["Andy: seen"]);
    let cmdline = std::fs::read_to_string(format!("/proc/{}/cmdline", pids[0])).unwrap();
    let args: Vec<&str> = cmdline.split('\0').collect();
    let port = args[args.iter().position(|a| *a == "--port").unwrap() + 1];
    let health = format!("http://127.0.0.1:{port}/global/health");
    let http = reqwest::Client::new();
    assert_eq!(http.get(&health).send().await.unwrap().status(), 401);
    let authed = http
        .get(&health)
        .basic_auth("opencode", Some(&password))
        .send()
        .await
        .unwrap();
    assert_eq!(authed.status(), 200);

    // What the agent's bash saw.
    let request = w
        .agent_requests()
        .into_iter()
        .rev()
        .find(|r| r.last_role() == "tool")
        .expect("the tool result went back to the model");
    let seen: String = request
        .messages()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| match &m["content"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect();
    assert!(seen.contains("HOME="), "the command ran: {seen}");
    for hidden in [
        "OPENCODE_SERVER_PASSWORD",
        password.as_str(),
        "sk-probe-key",
        "PROBE_EXTRA",
    ] {
        assert!(!seen.contains(hidden), "the shell saw {hidden}: {seen}");
    }
    let h = w.health().await;
    assert!(!h.to_string().contains(&password), "health never shows it");
    assert_eq!(w.stop_bridge().await.code(), Some(0));
}

/// A provider key can stay out of every process's environment: written to
/// a file only its owner reads and named in OpenCode's config as
/// `{file:…}` (what docs/security.md recommends), the managed
/// OpenCode sends it to the provider, and neither the bridge's nor
/// OpenCode's environment holds it.
#[tokio::test]
async fn a_provider_key_from_a_file_reaches_the_provider_and_no_environment() {
    use std::os::unix::fs::OpenOptionsExt;
    let mut w = World::without_opencode().await;
    let key = "sk-from-a-file-5b1e9c0d7a";
    let key_file = w.home().join("provider.key");
    std::fs::create_dir_all(w.home()).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&key_file)
        .unwrap();
    std::io::Write::write_all(&mut f, key.as_bytes()).unwrap();
    let mut config: Value = serde_json::from_str(&opencode_config(&w.model)).unwrap();
    config["provider"]["scripted"]["options"]["apiKey"] =
        json!(format!("{{file:{}}}", key_file.display()));
    w.set_env("OPENCODE_CONFIG_CONTENT", &config.to_string());
    w.model.set_default(Reply::text("keyed"));
    w.register(DM, "Ann", &[]);
    w.start_bridge().await;
    w.say(DM, "K1", "hi").await;
    assert_eq!(w.wait_outbox(DM, 1, T).await, vec!["Andy: keyed"]);
    let request = w.agent_requests().pop().expect("the model was asked");
    assert_eq!(
        request.authorization.as_deref(),
        Some(format!("Bearer {key}").as_str())
    );
    for pid in pids_with_cwd(&w.workspace()) {
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&environ).contains(key),
            "process {pid}'s environment holds the key"
        );
    }
    assert_eq!(w.stop_bridge().await.code(), Some(0));
}
