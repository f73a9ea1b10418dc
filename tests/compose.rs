//! `docker-compose.yml`, tested without Docker.
//!
//! The file is read here, not restated: the services' commands, environment
//! and volumes come from it, so the test breaks when the file drifts.
//!
//! A container is imitated with what it can see. Every container path `P`
//! is a folder `<tmp>/c/P` on this machine; a volume both services mount is
//! one such folder, seen at the same path by both. OpenCode runs in its own
//! mount namespace (`unshare -m`, as root: CI runs as root) in which every
//! folder that only the bridge mounts is hidden under an empty tmpfs, as
//! compose hides it. Then a message and a `send_message` tool call must
//! pass through, with the plugin in OpenCode finding the bridge only
//! through what compose shares, and every package registry unreachable
//! from OpenCode.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;
use yaml_rust2::{Yaml, YamlLoader};

const DM: &str = "491511111111@s.whatsapp.net";
// Generous: the first run boots an OpenCode instance (plugin included),
// slow on a loaded machine; this is a deadline, not a timing target.
const T: Duration = Duration::from_secs(300);

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// One service as compose would run it, after `${...}` interpolation.
#[derive(Debug)]
struct Service {
    command: Vec<String>,
    working_dir: Option<String>,
    environment: BTreeMap<String, String>,
    /// (source: a host path or a volume name, container path).
    volumes: Vec<(String, String)>,
    yaml: Yaml,
}

/// Compose's interpolation: `${V}`, `${V:-default}`, `${V:?error}`, `$$`.
fn interpolate(text: &str, env: &BTreeMap<&str, &str>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            out.push('$');
            rest = r;
            continue;
        }
        let body_end = rest.find('}').expect("a closed ${...}");
        let body = &rest[1..body_end];
        rest = &rest[body_end + 1..];
        let (name, default) = if let Some((n, d)) = body.split_once(":-") {
            (n, Some(d.to_owned()))
        } else if let Some((n, msg)) = body.split_once(":?") {
            let v = env.get(n).filter(|v| !v.is_empty());
            assert!(v.is_some(), "compose would refuse to start: {msg}");
            (n, None)
        } else {
            (body, None)
        };
        match env.get(name).filter(|v| !v.is_empty()) {
            Some(v) => out.push_str(v),
            None => out.push_str(&default.unwrap_or_default()),
        }
    }
    out.push_str(rest);
    out
}

fn load(env: &BTreeMap<&str, &str>) -> (Yaml, BTreeMap<String, Service>) {
    let text = std::fs::read_to_string(root().join("docker-compose.yml")).unwrap();
    let doc = YamlLoader::load_from_str(&text).unwrap().remove(0);
    let mut services = BTreeMap::new();
    for (name, s) in doc["services"].as_hash().expect("services") {
        let str_of = |y: &Yaml| match y {
            Yaml::String(s) => interpolate(s, env),
            Yaml::Integer(i) => i.to_string(),
            Yaml::Boolean(b) => b.to_string(),
            other => panic!("unexpected value {other:?}"),
        };
        let command = s["command"]
            .as_vec()
            .map(|v| v.iter().map(str_of).collect())
            .unwrap_or_default();
        let environment = s["environment"]
            .as_hash()
            .map(|h| {
                h.iter()
                    .map(|(k, v)| (k.as_str().unwrap().to_owned(), str_of(v)))
                    .collect()
            })
            .unwrap_or_default();
        let volumes = s["volumes"]
            .as_vec()
            .map(|v| {
                v.iter()
                    .map(|m| {
                        let m = str_of(m);
                        let mut parts = m.split(':');
                        let source = parts.next().unwrap().to_owned();
                        let target = parts.next().expect("source:target").to_owned();
                        (source, target)
                    })
                    .collect()
            })
            .unwrap_or_default();
        services.insert(
            name.as_str().unwrap().to_owned(),
            Service {
                command,
                working_dir: s["working_dir"].as_str().map(str::to_owned),
                environment,
                volumes,
                yaml: s.clone(),
            },
        );
    }
    (doc, services)
}

fn test_env() -> BTreeMap<&'static str, &'static str> {
    BTreeMap::from([
        ("OPENCODE_SERVER_PASSWORD", "compose-test-secret"),
        ("PB_HTTP_TOKEN", "compose-test-token-0123456789"),
        ("PB_CHANNEL", "fake"),
        ("TZ", "Europe/Berlin"),
    ])
}

/// The rules the file must keep, read from it.
#[test]
fn the_compose_file_wires_the_two_containers_safely() {
    let (doc, services) = load(&test_env());
    let oc = &services["opencode"];
    let bridge = &services["bridge"];

    // OpenCode is the official image at the version the tests run.
    let install = std::fs::read_to_string(root().join("scripts/install-tools.sh")).unwrap();
    let pin = install
        .lines()
        .find_map(|l| l.strip_prefix("OPENCODE_VERSION="))
        .expect("install-tools.sh pins OpenCode");
    assert_eq!(
        oc.yaml["image"].as_str(),
        Some(format!("ghcr.io/anomalyco/opencode:{pin}").as_str())
    );
    // A password is required, and the bridge uses the same one.
    let text = std::fs::read_to_string(root().join("docker-compose.yml")).unwrap();
    assert!(text.contains("OPENCODE_SERVER_PASSWORD: ${OPENCODE_SERVER_PASSWORD:?"));
    assert_eq!(
        oc.environment["OPENCODE_SERVER_PASSWORD"],
        bridge.environment["OPENCODE_SERVER_PASSWORD"]
    );
    // No JSON in the environment: the model lives in a mounted opencode.json.
    for (k, v) in oc.environment.iter().chain(&bridge.environment) {
        assert!(!v.trim_start().starts_with('{'), "{k} holds JSON");
    }
    assert!(
        oc.volumes
            .iter()
            .any(|(s, t)| s == "./opencode.json" && t == "/root/.config/opencode/opencode.json"),
        "{:?}",
        oc.volumes
    );
    assert!(root().join("opencode.json.example").is_file());

    // The data folder (store, WhatsApp keys) is the bridge's alone.
    let data = &bridge.environment["PB_DATA_DIR"];
    assert!(bridge.volumes.iter().any(|(_, t)| t == data));
    for (source, target) in &oc.volumes {
        assert!(
            !Path::new(target).starts_with(data) && !Path::new(data).starts_with(target),
            "OpenCode mounts {target}, which holds or is inside the data folder {data}"
        );
        let bridge_source = bridge.volumes.iter().find(|(_, t)| t == target);
        if let Some((bs, _)) = bridge_source {
            assert_eq!(bs, source, "{target} is a different volume in each");
        }
        assert!(
            bridge
                .volumes
                .iter()
                .all(|(bs, bt)| bs != source || bt == target),
            "{source} is mounted at different paths in the two containers"
        );
    }
    // The workspace and the tool channel are shared at the same paths.
    for key in ["PB_WORKSPACE", "PB_IPC_DIR"] {
        let path = &bridge.environment[key];
        assert!(
            oc.volumes.iter().any(|(_, t)| t == path),
            "{key}={path} is not mounted in OpenCode"
        );
    }
    assert_eq!(
        oc.working_dir.as_deref(),
        Some(bridge.environment["PB_WORKSPACE"].as_str())
    );

    // Health checks, start order, restarts, and the port on loopback only.
    let oc_health = format!("{:?}", oc.yaml["healthcheck"]["test"]);
    assert!(oc_health.contains("/global/health"), "{oc_health}");
    let bridge_health: Vec<&str> = bridge.yaml["healthcheck"]["test"]
        .as_vec()
        .unwrap()
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert_eq!(bridge_health, ["CMD", "pocketbrain", "health"]);
    assert_eq!(
        bridge.yaml["depends_on"]["opencode"]["condition"].as_str(),
        Some("service_healthy")
    );
    for s in [oc, bridge] {
        assert_eq!(s.yaml["restart"].as_str(), Some("unless-stopped"));
    }
    let ports: Vec<&str> = bridge.yaml["ports"]
        .as_vec()
        .unwrap()
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert!(!ports.is_empty());
    for p in ports {
        assert!(
            p.starts_with("127.0.0.1:"),
            "{p} is published beyond loopback"
        );
    }
    assert!(oc.yaml["ports"].is_badvalue(), "OpenCode is not published");
    // Settings come from files: the bridge's .env, OpenCode's opencode.env
    // (provider keys), neither in the other container.
    assert_eq!(bridge.yaml["env_file"].as_str(), Some(".env"));
    assert_eq!(oc.yaml["env_file"].as_str(), Some("opencode.env"));
    assert!(
        !oc.environment.keys().any(|k| k.ends_with("_API_KEY")),
        "provider keys are listed in the compose file: {:?}",
        oc.environment.keys()
    );
    // BusyBox's wget has no --password: credentials go in the URL.
    assert!(!oc_health.contains("--password"), "{oc_health}");
    // The stop grace outlasts the bridge's 15 s drain.
    let grace = bridge.yaml["stop_grace_period"].as_str().unwrap_or("10s");
    let secs: u64 = grace.trim_end_matches('s').parse().unwrap();
    assert!(secs > 15, "stop_grace_period {grace}");
    assert!(bridge.yaml["build"].as_str() == Some("."));
    assert!(doc["volumes"].as_hash().is_some());
}

/// A compose implementation that needs no engine parses the file
/// (Debian's docker-compose, installed by scripts/install-tools.sh).
#[test]
fn docker_compose_validates_the_file() {
    // Not the developer's own .env: a copy of the file in a folder holding
    // only what the test writes (the two env files it names, empty).
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        root().join("docker-compose.yml"),
        dir.path().join("docker-compose.yml"),
    )
    .unwrap();
    let empty = dir.path().join("empty.env");
    for f in [".env", "opencode.env", "empty.env"] {
        std::fs::write(dir.path().join(f), "").unwrap();
    }
    let compose = || {
        let mut cmd = Command::new("docker-compose");
        cmd.arg("--env-file")
            .arg(&empty)
            .args(["-f", "docker-compose.yml", "config", "-q"])
            .current_dir(dir.path());
        cmd
    };
    let out = compose()
        .env("OPENCODE_SERVER_PASSWORD", "x")
        .env("PB_HTTP_TOKEN", "compose-test-token-0123456789")
        .output()
        .expect("docker-compose (scripts/install-tools.sh installs it)");
    assert!(
        out.status.success(),
        "docker-compose config: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without the password compose refuses to start, naming it.
    let out = compose()
        .env_remove("OPENCODE_SERVER_PASSWORD")
        .env("PB_HTTP_TOKEN", "compose-test-token-0123456789")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("OPENCODE_SERVER_PASSWORD"));
    // Nor without the bridge's HTTP token (it listens on the compose network).
    let out = compose()
        .env("OPENCODE_SERVER_PASSWORD", "x")
        .env_remove("PB_HTTP_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("PB_HTTP_TOKEN"));
    // Nor without OpenCode's own env file (the provider keys).
    std::fs::remove_file(dir.path().join("opencode.env")).unwrap();
    let out = compose()
        .env("OPENCODE_SERVER_PASSWORD", "x")
        .env("PB_HTTP_TOKEN", "compose-test-token-0123456789")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("opencode.env"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A child killed on drop.
struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_message_and_a_tool_call_pass_through_opencode_seeing_only_what_compose_gives_it() {
    assert!(
        unsafe { libc::geteuid() } == 0,
        "this test imitates containers with mount namespaces and needs root (CI runs as root)"
    );
    let env = test_env();
    let (_, services) = load(&env);
    let (oc, bridge) = (&services["opencode"], &services["bridge"]);
    let tmp = tempfile::tempdir().unwrap();
    let c = tmp.path().join("c");
    // A container path, as a folder on this machine.
    let at = |p: &str| -> PathBuf { c.join(p.trim_start_matches('/')) };

    let model = ScriptedModel::start().await;
    model.on(
        |r| r.last_role() == "user" && r.last_user_text().contains("wiring"),
        vec![Reply::tool_call(
            "pocketbrain_send_message",
            json!({"text": "sent by the tool"}),
        )],
    );
    model.on(
        |r| r.last_role() == "tool",
        vec![Reply::text("And the answer.")],
    );

    // Volumes: every container path gets its folder; opencode.json is the
    // person's copy of the template, here pointing at the scripted model;
    // other files come from the repository, as compose mounts them.
    for s in [oc, bridge] {
        for (source, target) in &s.volumes {
            if source == "./opencode.json" {
                std::fs::create_dir_all(at(target).parent().unwrap()).unwrap();
                std::fs::write(at(target), opencode_config(&model)).unwrap();
            } else if source.starts_with("./") && root().join(source).is_file() {
                std::fs::create_dir_all(at(target).parent().unwrap()).unwrap();
                std::fs::copy(root().join(source), at(target)).unwrap();
            } else {
                std::fs::create_dir_all(at(target)).unwrap();
            }
        }
    }
    // No package registry: every setting OpenCode's npm (or Bun) could use
    // points at a port nobody listens on.
    let closed = format!("http://127.0.0.1:{}", free_port());

    // OpenCode: its compose command on a test port, in a namespace where
    // each folder only the bridge mounts is an empty tmpfs.
    let port = free_port();
    let mut args = oc.command.clone();
    let i = args.iter().position(|a| a == "--port").unwrap();
    args[i + 1] = port.to_string();
    let h = args.iter().position(|a| a == "--hostname").unwrap();
    args[h + 1] = "127.0.0.1".into();
    let hidden: Vec<PathBuf> = bridge
        .volumes
        .iter()
        .filter(|(_, t)| !oc.volumes.iter().any(|(_, ot)| ot == t))
        .map(|(_, t)| at(t))
        .collect();
    assert!(!hidden.is_empty(), "the bridge has a folder of its own");
    let mut script = String::from("set -e\n");
    for dir in &hidden {
        script.push_str(&format!("mount -t tmpfs tmpfs '{}'\n", dir.display()));
    }
    script.push_str("exec \"$@\"\n");
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "--propagation", "private", "sh", "-c", &script, "sh"])
        .arg(opencode_bin())
        .args(&args)
        .current_dir(at(oc.working_dir.as_deref().unwrap()))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        // The image runs as root; its home is where opencode.json is mounted.
        .env("HOME", at("/root"))
        .env("OPENCODE_DISABLE_MODELS_FETCH", "1")
        .envs(no_registry(&closed))
        .envs(&oc.environment)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(tmp.path().join("opencode.log")).unwrap());
    let _opencode = Proc(cmd.spawn().expect("unshare"));

    // The bridge: its compose environment, container paths mapped, on the
    // test's loopback instead of the compose network.
    let mapped = |k: &str, v: &str| -> String {
        match k {
            "PB_DATA_DIR" | "PB_WORKSPACE" | "PB_IPC_DIR" => at(v).display().to_string(),
            "PB_HTTP_ADDR" => "127.0.0.1:0".into(),
            "PB_OPENCODE_URL" => v.replace("opencode:4096", &format!("127.0.0.1:{port}")),
            _ => v.into(),
        }
    };
    let bridge_cmd = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pocketbrain"));
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("PB_LOG", "info,pocketbrain=debug")
            .env("PB_RETRY_BASE", "1s");
        for (k, v) in &bridge.environment {
            if !v.is_empty() {
                cmd.env(k, mapped(k, v));
            }
        }
        cmd
    };
    let out = bridge_cmd(&["chats", "register", DM, "--name", "Ann"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let data = at(&bridge.environment["PB_DATA_DIR"]);
    let _bridge = Proc(
        bridge_cmd(&["serve"])
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(tmp.path().join("bridge.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let http = reqwest::Client::new();
    // Compose binds the bridge to its network, so it runs with a token.
    let token = bridge.environment["PB_HTTP_TOKEN"].clone();
    let deadline = Instant::now() + T;
    let base = loop {
        if let Ok(addr) = std::fs::read_to_string(data.join("http-addr")) {
            break format!("http://{}", addr.trim());
        }
        assert!(Instant::now() < deadline, "the bridge did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let r = http
        .post(format!("{base}/fake/inbox"))
        .bearer_auth(&token)
        .json(&json!({"chat": DM, "sender": DM, "text": "check the wiring", "id": "W1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);

    let texts = loop {
        let v: Value = http
            .get(format!("{base}/fake/outbox"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let texts: Vec<String> = v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["text"].as_str().unwrap().to_owned())
            .collect();
        if texts.len() >= 2 {
            break texts;
        }
        if Instant::now() > deadline {
            let log = |f: &str| std::fs::read_to_string(tmp.path().join(f)).unwrap_or_default();
            panic!(
                "got {texts:?}\n--- bridge\n{}\n--- opencode\n{}",
                log("bridge.log"),
                log("opencode.log")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(texts, ["Andy: sent by the tool", "Andy: And the answer."]);
    // The data folder really was hidden from OpenCode: the tool call came
    // through the shared channel, not through the bridge's own folders.
    assert!(
        !data.join("ipc").exists(),
        "the bridge used PB_DATA_DIR/ipc instead of the shared PB_IPC_DIR"
    );
}

/// The image's entrypoint hands the mounted folders to the bridge's user and
/// runs the command as that user, never as root (run here as root, as
/// Docker starts it, with `nobody` standing in for `pocketbrain`).
#[test]
fn the_entrypoint_drops_root_after_handing_over_the_folders() {
    assert!(unsafe { libc::geteuid() } == 0, "needs root, as in CI");
    let tmp = tempfile::tempdir().unwrap();
    let (data, ipc, ws) = (
        tmp.path().join("data"),
        tmp.path().join("ipc"),
        tmp.path().join("workspace"),
    );
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("left-by-root.sqlite3"), b"").unwrap();
    let out = Command::new(root().join("scripts/docker-entrypoint.sh"))
        .args([
            "sh",
            "-c",
            "id -u; touch \"$PB_DATA_DIR/mine\" \"$PB_IPC_DIR/mine\"",
        ])
        .env("PB_RUN_AS", "nobody")
        .env("PB_DATA_DIR", &data)
        .env("PB_IPC_DIR", &ipc)
        .env("PB_WORKSPACE", &ws)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let uid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert_ne!(uid, 0, "the command ran as root");
    use std::os::unix::fs::MetadataExt;
    for p in [
        &data,
        &ipc,
        &ws,
        &data.join("left-by-root.sqlite3"),
        &data.join("mine"),
    ] {
        assert_eq!(std::fs::metadata(p).unwrap().uid(), uid, "{}", p.display());
    }
}
