//! Operations: metrics, status, doctor, backup and restore, the API token
//! and the JSON-only rule, JSON logs. Two tests start a real OpenCode (the
//! round trip); the others need none.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

const T: Duration = Duration::from_secs(120);
const STRANGER: &str = "491519999999@s.whatsapp.net";
const TOKEN: &str = "ops-test-token-0123456789abcdef";

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// `GET /metrics` until `check` holds; returns the text.
async fn wait_metrics(w: &World, timeout: Duration, check: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let r = client()
            .get(format!("{}/metrics", w.base_url()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/openmetrics-text"),
        );
        let text = r.text().await.unwrap();
        if check(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "metrics never matched:\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A metric's value: the first line starting with `series`.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// One message through a real OpenCode shows in metrics and status;
/// doctor finds nothing broken; a backup taken while messages flow
/// verifies, a restore is refused while the bridge runs, and the restore
/// into a fresh data folder brings back the chats and messages, and the
/// restored bridge answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_status_doctor_backup_and_restore_round_trip() {
    let mut w = World::new().await;
    w.model.always(|_| true, Reply::text("Hello back."));
    w.register(OWNER, "Me", &["--main"]);
    w.start_bridge().await;
    w.say(OWNER, "M1", "hi").await;
    assert_eq!(w.wait_outbox(OWNER, 1, T).await, vec!["Andy: Hello back."]);

    let text = wait_metrics(&w, T, |t| {
        value(
            t,
            r#"pocketbrain_messages_out_total{channel="fake",outcome="sent"}"#,
        ) == Some(1.0)
    })
    .await;
    let want = [
        (
            r#"pocketbrain_messages_in_total{channel="fake",outcome="accepted"}"#,
            1.0,
        ),
        (
            r#"pocketbrain_runs_started_total{kind="conversation"}"#,
            1.0,
        ),
        (
            r#"pocketbrain_run_duration_seconds_count{kind="conversation"}"#,
            1.0,
        ),
        ("pocketbrain_bridge_latency_seconds_count", 1.0),
        (r#"pocketbrain_link_up{channel="fake"}"#, 1.0),
    ];
    for (series, v) in want {
        assert_eq!(value(&text, series), Some(v), "{series} in\n{text}");
    }
    assert!(
        value(
            &text,
            r#"pocketbrain_run_duration_seconds_sum{kind="conversation"}"#
        )
        .unwrap()
            > 0.0
    );

    // Status, for scripts and for people.
    let (ok, out, err) = w.cli(&["status", "--json"]);
    assert!(ok, "{err}");
    let st: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(st["live"]["link"]["code"], "fake-connected", "{st}");
    assert_eq!(st["chats"][0]["jid"], OWNER, "{st}");
    assert!(
        st["chats"][0]["last_activity_ms"].as_i64().unwrap() > 0,
        "{st}"
    );
    assert!(st["chats"][0].get("profile").is_some(), "{st}");
    assert_eq!(st["approvals"], json!([]), "{st}");
    let (ok, out, _) = w.cli(&["status"]);
    assert!(
        ok && out.contains("fake-connected") && out.contains(OWNER),
        "{out}"
    );

    // Doctor against the running bridge and its OpenCode.
    let (ok, out, err) = w.cli(&["doctor"]);
    assert!(ok, "doctor failed:\n{out}{err}");
    for line in [
        "[ok  ] file modes",
        "[ok  ] opencode",
        "[ok  ] plugin",
        "[ok  ] shared folders",
        "[skip] whatsapp",
    ] {
        assert!(out.contains(line), "{line} missing:\n{out}");
    }

    // A backup while messages keep arriving. The first of them is
    // committed (202) before the backup starts, so the backup holds at
    // least it and the owner's message, however the rest interleave.
    let file = w.dir.path().join("backup.tar");
    let (status, body) = w
        .inbox(json!({"chat": STRANGER, "sender": STRANGER, "text": "flow 0", "id": "F0"}))
        .await;
    assert_eq!(status, 202, "{body}");
    let flow = {
        let (base, http) = (w.base_url(), client());
        tokio::spawn(async move {
            for i in 1..40 {
                let body = json!({"chat": STRANGER, "sender": STRANGER, "text": format!("flow {i}"), "id": format!("F{i}")});
                let r = http
                    .post(format!("{base}/fake/inbox"))
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 202);
            }
        })
    };
    let (ok, out, err) = {
        let args = ["backup", file.to_str().unwrap(), "--verify"];
        w.cli(&args)
    };
    flow.await.unwrap();
    assert!(ok, "backup failed: {out}{err}");
    assert!(out.contains("Verified: integrity ok"), "{out}");
    let backed_up: i64 = out
        .split(" message(s)")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no message count in {out}"));
    assert!(backed_up >= 2, "{out}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode, 0o600,
        "the archive holds the device keys and the messages"
    );

    // Never while the bridge runs on the folder.
    let (ok, _, err) = w.cli(&["restore", file.to_str().unwrap(), "--force"]);
    assert!(!ok && err.contains("a bridge is running"), "{err}");

    // Into a fresh data folder and workspace (the old ones moved aside).
    w.stop_bridge().await;
    std::fs::rename(w.data_dir(), w.dir.path().join("data.old")).unwrap();
    let chats = w.workspace().join("chats");
    std::fs::rename(&chats, w.dir.path().join("chats.old")).unwrap();
    let (ok, out, err) = w.cli(&["restore", file.to_str().unwrap()]);
    assert!(ok, "restore failed: {out}{err}");
    let folders: Vec<_> = std::fs::read_dir(w.dir.path().join("chats.old"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(!folders.is_empty());
    for f in folders {
        assert!(
            chats.join(&f).join("AGENTS.md").is_file(),
            "{f:?} not restored"
        );
    }
    let (ok, out, _) = w.cli(&["chats", "list", "--json"]);
    assert!(ok);
    let list: Value = serde_json::from_str(&out).unwrap();
    let me = list
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["jid"] == OWNER)
        .unwrap();
    assert_eq!(me["registered"]["main"], true, "{list}");

    w.start_bridge().await;
    assert_eq!(w.health().await["store"]["messages"], backed_up);
    w.say(OWNER, "M2", "still there?").await;
    // The fake phone's own file stayed in the old folder: this one is new,
    // and the reply sent before the backup is not sent again.
    assert_eq!(w.wait_outbox(OWNER, 1, T).await, vec!["Andy: Hello back."]);
}

/// Off loopback the bridge needs a token; with one, every route but a
/// minimal /health needs it, the CLI finds it in the data folder, and a
/// body is read only as JSON. Logs can be JSON lines.
#[tokio::test]
async fn token_guards_every_route_but_a_minimal_health() {
    let mut w = World::without_opencode().await;
    // The setting's old name, still read (with one warning) while
    // PB_OPENCODE_URL is unset.
    w.set_env("OPENCODE_URL", &format!("http://127.0.0.1:{}", free_port()));
    w.set_env("PB_HTTP_ADDR", "0.0.0.0:0");
    w.set_env("PB_LOG_FORMAT", "json");
    let (ok, _, err) = w.cli_ending(&["serve"], Duration::from_secs(60));
    let renamed: Vec<Value> = err
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["fields"]["old"] == "OPENCODE_URL")
        .collect();
    assert_eq!(renamed.len(), 1, "{err}");
    assert_eq!(renamed[0]["level"], "WARN", "{err}");
    assert_eq!(renamed[0]["fields"]["new"], "PB_OPENCODE_URL", "{err}");
    assert!(!ok, "served on 0.0.0.0 without a token");
    assert!(
        err.contains("is not a loopback address") && err.contains("PB_HTTP_TOKEN"),
        "{err}"
    );
    let line = err
        .lines()
        .find(|l| l.starts_with('{') && l.contains("ERROR"))
        .unwrap_or_else(|| panic!("no JSON log line in {err}"));
    let log: Value = serde_json::from_str(line).unwrap();
    assert_eq!(log["level"], "ERROR", "{log}");
    assert_eq!(log["fields"]["message"], "command failed", "{log}");

    w.set_env("PB_HTTP_TOKEN", TOKEN);
    w.register(OWNER, "Me", &["--main"]);
    w.start_bridge().await;
    use std::os::unix::fs::PermissionsExt;
    let token_file = w.data_dir().join("http-token");
    assert_eq!(std::fs::read_to_string(&token_file).unwrap(), TOKEN);
    assert_eq!(
        std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let (base, http) = (w.base_url(), client());
    let health: Value = http
        .get(format!("{base}/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let keys: Vec<&String> = health.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["codes", "status"], "{health}");
    let full: Value = http
        .get(format!("{base}/health"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(full["queue"].is_object(), "{full}");

    for path in ["/metrics", "/status", "/fake/outbox"] {
        let url = format!("{base}{path}");
        assert_eq!(http.get(&url).send().await.unwrap().status(), 401, "{path}");
        let wrong = http
            .get(&url)
            .bearer_auth("ops-test-token-0123456789abcdeX");
        assert_eq!(wrong.send().await.unwrap().status(), 401, "{path}");
        assert_eq!(
            http.get(&url)
                .bearer_auth(TOKEN)
                .send()
                .await
                .unwrap()
                .status(),
            200,
            "{path}"
        );
    }
    // The WhatsApp link's routes are the owner's too; with the fake
    // channel the fake phone's link answers them: while it is up a new
    // link is refused, and `pocketbrain whatsapp link` says so.
    let link = format!("{base}/api/v1/whatsapp/link");
    assert_eq!(http.post(&link).send().await.unwrap().status(), 401);
    assert_eq!(http.get(&link).send().await.unwrap().status(), 401);
    let r = http.post(&link).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 409);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("has not ended (fake-connected)"),
        "{body}"
    );
    let (ok, out, err) = w.cli(&["whatsapp", "link"]);
    assert!(!ok, "{out}");
    assert!(
        err.contains("refused a new link") && err.contains("has not ended"),
        "{err}"
    );
    let (ok, out, err) = w.cli(&["whatsapp", "link", "--phone", "12ab"]);
    assert!(!ok, "{out}");
    assert!(err.contains("not a digit"), "{err}");
    let inbox = format!("{base}/fake/inbox");
    let msg = json!({"chat": OWNER, "sender": OWNER, "text": "hi", "id": "T1"}).to_string();
    assert_eq!(
        http.post(&inbox)
            .body(msg.clone())
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    for ct in ["text/plain", "application/x-www-form-urlencoded"] {
        let r = http
            .post(&inbox)
            .bearer_auth(TOKEN)
            .header("content-type", ct)
            .body(msg.clone());
        assert_eq!(r.send().await.unwrap().status(), 415, "{ct}");
    }
    let r = http
        .post(format!("{base}/fake/link"))
        .bearer_auth(TOKEN)
        .header("content-type", "text/plain")
        .body(r#"{"connected":false}"#);
    assert_eq!(r.send().await.unwrap().status(), 415);
    let r = http
        .post(&inbox)
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(msg);
    assert_eq!(r.send().await.unwrap().status(), 202);

    // The CLI reads the token the bridge wrote.
    w.env.retain(|(k, _)| k != "PB_HTTP_TOKEN");
    let (ok, out, err) = w.cli(&["status", "--json"]);
    assert!(ok, "{err}");
    let st: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(st["live"]["opencode"], "opencode-unreachable", "{st}");
    let (ok, out, err) = w.cli(&["health"]);
    assert!(ok, "{out}{err}");
}

/// With OpenCode down, doctor names the failure, says how to fix it, and
/// exits non-zero.
#[tokio::test]
async fn doctor_reports_opencode_down_with_its_fix() {
    let mut w = World::without_opencode().await;
    w.set_env(
        "PB_OPENCODE_URL",
        &format!("http://127.0.0.1:{}", free_port()),
    );
    w.set_env("PB_HTTP_ADDR", &format!("127.0.0.1:{}", free_port()));
    w.register(OWNER, "Me", &["--main"]);
    let (ok, out, err) = w.cli(&["doctor"]);
    assert!(!ok, "doctor passed with OpenCode down:\n{out}");
    assert!(out.contains("[FAIL] opencode"), "{out}{err}");
    assert!(out.contains("fix: start OpenCode"), "{out}");
    assert!(out.contains("[skip] plugin"), "{out}");
    assert!(
        out.contains("[skip] whatsapp        not applicable (PB_CHANNEL=fake)"),
        "{out}"
    );
    assert!(out.contains("1 problem(s) found."), "{out}");
}

/// DNS rebinding: a page on a name its owner points at 127.0.0.1 reaches
/// the bridge with that name in `Host`. Every route refuses it, /health
/// and unknown paths too, before the token is even looked at; localhost,
/// an IP address and a name in PB_HTTP_HOSTS pass.
#[tokio::test]
async fn a_request_for_a_foreign_host_name_is_refused_on_every_route() {
    let mut w = World::without_opencode().await;
    w.set_env(
        "PB_OPENCODE_URL",
        &format!("http://127.0.0.1:{}", free_port()),
    );
    w.set_env("PB_HTTP_HOSTS", "pocketbrain.lan");
    w.start_bridge().await;
    let raw = |host: &str, method: &str, path: &str| {
        format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
             Content-Length: 2\r\nConnection: close\r\n\r\n{{}}"
        )
    };
    for (method, path) in [
        ("GET", "/health"),
        ("GET", "/status"),
        ("GET", "/metrics"),
        ("GET", "/fake/outbox"),
        ("POST", "/fake/inbox"),
        ("POST", "/fake/link"),
        ("GET", "/api/v1/conversations"),
        ("GET", "/nowhere"),
    ] {
        for host in ["rebind.evil.example:8787", "localhost.evil.example"] {
            let res = w.raw_exchange(&raw(host, method, path)).await;
            assert!(
                res.starts_with("HTTP/1.1 421"),
                "{method} {path} for {host}: {res}"
            );
            assert!(res.contains("PB_HTTP_HOSTS"), "{res}");
        }
    }
    for host in [
        "127.0.0.1:8787",
        "localhost:8787",
        "[::1]",
        "pocketbrain.lan:8787",
    ] {
        let res = w.raw_exchange(&raw(host, "GET", "/status")).await;
        assert!(res.starts_with("HTTP/1.1 200"), "{host}: {res}");
    }
}

/// The data folder ends 0700 and the database, its journal files and the
/// token file 0600, with the most permissive umask and over an older
/// install's wide modes; doctor reports the modes, and names a file that a
/// hand widened later, with its fix.
#[tokio::test]
async fn data_files_are_owner_only_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    // SAFETY: umask has no preconditions; each test runs in its own
    // process (nextest), whose children inherit it.
    unsafe { libc::umask(0) };
    let mut w = World::without_opencode().await;
    w.set_env(
        "PB_OPENCODE_URL",
        &format!("http://127.0.0.1:{}", free_port()),
    );
    w.set_env("PB_HTTP_TOKEN", TOKEN);
    let data = w.data_dir();
    std::fs::create_dir_all(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o777)).unwrap();
    w.register(OWNER, "Me", &["--main"]);
    let db = data.join("pocketbrain.sqlite3");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o666)).unwrap();
    w.start_bridge().await;
    w.say(OWNER, "m1", "hello").await;
    let mode = |name: &str| {
        std::fs::metadata(data.join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(
        std::fs::metadata(&data).unwrap().permissions().mode() & 0o777,
        0o700
    );
    for f in [
        "pocketbrain.sqlite3",
        "pocketbrain.sqlite3-wal",
        "pocketbrain.sqlite3-shm",
        "fake-phone.sqlite3",
        "http-token",
    ] {
        assert_eq!(mode(f), 0o600, "{f}");
    }
    let (_, out, _) = w.cli(&["doctor"]);
    assert!(out.contains("[ok  ] file modes"), "{out}");

    std::fs::set_permissions(
        data.join("fake-phone.sqlite3"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let (ok, out, _) = w.cli(&["doctor"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("[FAIL] file modes") && out.contains("fake-phone.sqlite3 is 644"),
        "{out}"
    );
    assert!(out.contains("chmod 600"), "{out}");
}

/// A placeholder left from .env.example, or a short password, stops the
/// bridge at start with one line naming the setting, never the value.
#[tokio::test]
async fn placeholder_secrets_stop_the_bridge_at_start() {
    let mut w = World::without_opencode().await;
    w.set_env(
        "PB_OPENCODE_URL",
        &format!("http://127.0.0.1:{}", free_port()),
    );
    for (setting, value) in [
        ("OPENCODE_SERVER_PASSWORD", "change-me"),
        ("OPENCODE_SERVER_PASSWORD", "hunter2"),
        ("PB_HTTP_TOKEN", "change-me-to-a-long-random-string"),
    ] {
        let mut w2 = World::without_opencode().await;
        w2.env = w.env.clone();
        w2.set_env(setting, value);
        let (ok, _, err) = w2.cli_ending(&["serve"], Duration::from_secs(60));
        assert!(!ok, "{setting}={value} was accepted");
        assert!(err.contains(&format!("invalid {setting}")), "{err}");
        assert!(!err.contains(value), "the value is shown: {err}");
    }
    w.set_env("OPENCODE_SERVER_PASSWORD", "d81f3a09c2b7e456");
    w.start_bridge().await;
}
