//! `docker compose up` on a real Docker engine (scripts/docker-engine.sh
//! installs and starts it from Debian's packages; test.sh runs it first).
//!
//! The project's own `docker-compose.yml` is copied unchanged into a fresh
//! project folder with `.env`, `opencode.env` and `opencode.json` as a user
//! writes them, plus one override file that:
//! - runs `opencode` from a stand-in for the official image, built here
//!   with that image's tools: the pinned `opencode` binary at
//!   `/usr/local/bin/opencode`, BusyBox as the only wget, no curl, no node,
//!   root;
//! - builds the bridge from the project's `Dockerfile` runtime stage, with
//!   the binary this test run built in place of the in-Docker compile (the
//!   full build is `docker compose build`, 20–30 min on 2 cores);
//! - adds this suite's scripted model as a third service (this very test
//!   binary, running [`scripted_model_service`]);
//! - sets `PB_CHANNEL=fake`.
//!
//! Then: both containers healthy; a message on the published port
//! answered; a tool call crossing containers; settings only in `.env`
//! (`PB_ASSISTANT_NAME`, `PB_LOG_FORMAT=json`) in effect; a provider key only
//! in `opencode.env` reaching the model; `down` then `up` keeping the
//! registration and the outbox; the CLI as the bridge's user.
//!
//! `PB_COMPOSE_E2E=skip` leaves it out (a machine without root); CI never
//! sets it.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

const DM: &str = "491511111111@s.whatsapp.net";
const PASSWORD: &str = "e2e0c4f1a9b27d365e8f";
const TOKEN: &str = "e2e-token-7f3a91c2d8b4e605";
const PROVIDER_KEY: &str = "sk-e2e-provider-4b8d21f0";
const MODEL_PORT: u16 = 9099;
/// Deadlines, not timing targets: images build and OpenCode boots here.
const T: Duration = Duration::from_secs(300);

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The scripted model as a compose service: run by the `model` container
/// as `<this binary> --exact scripted_model_service --ignored`.
#[tokio::test]
#[ignore = "a service the compose test starts in a container"]
async fn scripted_model_service() {
    let addr = std::env::var("PB_E2E_MODEL_ADDR").expect("PB_E2E_MODEL_ADDR");
    let model = ScriptedModel::start_on(&addr).await;
    model.on(
        |r| r.last_role() == "user" && r.last_user_text().contains("use the tool"),
        vec![Reply::tool_call(
            "pocketbrain_send_message",
            json!({"text": "sent through the tool"}),
        )],
    );
    model.always(|r| r.last_role() == "tool", Reply::text("tool done"));
    model.set_default(Reply::text("hello from the container"));
    eprintln!("scripted model listening on {}", model.addr());
    std::future::pending::<()>().await;
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `docker-compose` in the project folder.
struct Project {
    dir: PathBuf,
    name: String,
}

impl Project {
    fn compose(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("docker-compose");
        cmd.current_dir(&self.dir)
            .args(["-p", &self.name, "-f", "docker-compose.yml"])
            .args(["-f", "docker-compose.override.yml"])
            .args(args)
            .env_remove("OPENCODE_SERVER_PASSWORD")
            .env_remove("PB_HTTP_TOKEN");
        cmd
    }

    fn health(&self, service: &str) -> String {
        let id = run(&mut self.compose(&["ps", "-q", service]));
        let id = id.trim();
        if id.is_empty() {
            return "absent".into();
        }
        let out = Command::new("docker")
            .args(["inspect", "-f", "{{.State.Health.Status}}", id])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn wait_healthy(&self) {
        let deadline = Instant::now() + T;
        loop {
            let (oc, bridge) = (self.health("opencode"), self.health("bridge"));
            if oc == "healthy" && bridge == "healthy" {
                return;
            }
            if Instant::now() > deadline {
                let logs = run(&mut self.compose(&["logs", "--no-color", "--tail", "60"]));
                panic!("not healthy: opencode {oc}, bridge {bridge}\n{logs}");
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The CLI in the bridge container, as its user.
    fn cli(&self, args: &[&str]) -> String {
        let mut all = vec!["exec", "-T", "-u", "pocketbrain", "bridge", "pocketbrain"];
        all.extend_from_slice(args);
        run(&mut self.compose(&all))
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = self.compose(&["down", "-v", "-t", "5"]).output();
    }
}

fn docker_build(tag: &str, context: &Path) {
    run(Command::new("docker")
        .args(["build", "--network", "host", "-q", "-t", tag])
        .arg(context));
}

/// The OpenCode stand-in: the official image's tools on Debian.
fn build_opencode_image(tmp: &Path) {
    let ctx = tmp.join("opencode-image");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::copy(opencode_bin(), ctx.join("opencode")).unwrap();
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox (scripts/docker-engine.sh installs busybox-static)");
    std::fs::copy(busybox, ctx.join("busybox")).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM debian:bookworm-slim\n\
         COPY opencode /usr/local/bin/opencode\n\
         COPY busybox /bin/busybox\n\
         RUN [\"/bin/busybox\", \"ln\", \"-s\", \"/bin/busybox\", \"/usr/bin/wget\"]\n\
         WORKDIR /root\n\
         ENTRYPOINT [\"opencode\"]\n",
    )
    .unwrap();
    docker_build("pocketbrain-e2e/opencode", &ctx);
}

/// The bridge: the project's Dockerfile with its build stage replaced by
/// the binary this run built.
fn build_bridge_image(tmp: &Path) {
    let ctx = tmp.join("bridge-image");
    std::fs::create_dir_all(ctx.join("scripts")).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_pocketbrain"), ctx.join("pocketbrain")).unwrap();
    std::fs::copy(
        root().join("scripts/docker-entrypoint.sh"),
        ctx.join("scripts/docker-entrypoint.sh"),
    )
    .unwrap();
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let runtime = dockerfile
        .find("\nFROM debian:bookworm-slim")
        .expect("the Dockerfile's runtime stage");
    let text = format!(
        "FROM debian:bookworm-slim AS build\nCOPY pocketbrain /src/target/release/pocketbrain\n{}",
        &dockerfile[runtime..]
    );
    std::fs::write(ctx.join("Dockerfile"), text).unwrap();
    docker_build("pocketbrain-e2e/bridge", &ctx);
}

fn write_project(dir: &Path, port: u16, model_port: u16) {
    std::fs::create_dir_all(dir.join("opencode-plugin/runtime")).unwrap();
    std::fs::copy(
        root().join("docker-compose.yml"),
        dir.join("docker-compose.yml"),
    )
    .unwrap();
    std::fs::copy(
        root().join("opencode-plugin/runtime/package-lock.json"),
        dir.join("opencode-plugin/runtime/package-lock.json"),
    )
    .unwrap();
    // As a user writes them from the example files.
    std::fs::write(
        dir.join(".env"),
        format!(
            "OPENCODE_SERVER_PASSWORD={PASSWORD}\nPB_HTTP_TOKEN={TOKEN}\n\
             PB_ASSISTANT_NAME=Robo\nPB_LOG_FORMAT=json\nPB_PORT={port}\nTZ=Europe/Berlin\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("opencode.env"),
        format!("SCRIPTED_API_KEY={PROVIDER_KEY}\n"),
    )
    .unwrap();
    let config = json!({
        "provider": {"scripted": {"npm": "@ai-sdk/openai-compatible", "name": "Scripted",
            "options": {"baseURL": format!("http://model:{MODEL_PORT}/v1"), "apiKey": "{env:SCRIPTED_API_KEY}"},
            "models": {"scripted-1": {"name": "Scripted", "tool_call": true}}}},
        "model": "scripted/scripted-1",
        "permission": {"*": "allow", "external_directory": "deny", "doom_loop": "allow", "question": "deny"},
        "autoupdate": false,
        "share": "disabled",
    });
    std::fs::write(dir.join("opencode.json"), config.to_string()).unwrap();
    let test_binary = std::env::current_exe().unwrap();
    std::fs::write(
        dir.join("docker-compose.override.yml"),
        format!(
            r#"services:
  opencode:
    image: pocketbrain-e2e/opencode
    environment:
      OPENCODE_DISABLE_MODELS_FETCH: "1"
  bridge:
    image: pocketbrain-e2e/bridge
    environment:
      PB_CHANNEL: fake
  model:
    image: debian:bookworm-slim
    command: ["/model", "--exact", "scripted_model_service", "--ignored", "--nocapture"]
    environment:
      PB_E2E_MODEL_ADDR: 0.0.0.0:{MODEL_PORT}
    volumes:
      - {bin}:/model:ro
    ports:
      - "127.0.0.1:{model_port}:{MODEL_PORT}"
"#,
            bin = test_binary.display()
        ),
    )
    .unwrap();
}

async fn get(url: &str) -> Value {
    reqwest::Client::new()
        .get(url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn outbox(base: &str) -> Vec<String> {
    get(&format!("{base}/fake/outbox?chat={DM}")).await["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|m| m["text"].as_str().map(str::to_owned))
        .collect()
}

async fn wait_outbox(base: &str, n: usize) -> Vec<String> {
    let deadline = Instant::now() + T;
    loop {
        let got = outbox(base).await;
        if got.len() >= n {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{n} replies expected, have {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_compose_up_runs_opencode_and_the_bridge_side_by_side() {
    if std::env::var("PB_COMPOSE_E2E").as_deref() == Ok("skip") {
        eprintln!("PB_COMPOSE_E2E=skip: the compose test is left out");
        return;
    }
    let info = Command::new("docker").arg("info").output();
    assert!(
        info.is_ok_and(|o| o.status.success()),
        "no Docker engine answers: run scripts/docker-engine.sh (as root) first, or set PB_COMPOSE_E2E=skip"
    );
    let tmp = tempfile::tempdir().unwrap();
    build_opencode_image(tmp.path());
    build_bridge_image(tmp.path());
    let port = free_port();
    let model_port = free_port();
    let project = Project {
        dir: tmp.path().join("project"),
        name: format!("pbe2e{}", std::process::id()),
    };
    write_project(&project.dir, port, model_port);

    run(&mut project.compose(&["up", "-d", "--no-build"]));
    project.wait_healthy();
    let base = format!("http://127.0.0.1:{port}");

    // The CLI as the bridge's user; then a message and a tool call.
    project.cli(&["chats", "register", DM, "--name", "Ann"]);
    let send = |id: &'static str, text: &'static str| {
        let base = base.clone();
        async move {
            let r = reqwest::Client::new()
                .post(format!("{base}/fake/inbox"))
                .bearer_auth(TOKEN)
                .json(&json!({"chat": DM, "sender": DM, "text": text, "id": id}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 202);
        }
    };
    send("e1", "hello").await;
    // PB_ASSISTANT_NAME came from .env alone.
    assert_eq!(
        wait_outbox(&base, 1).await,
        ["Robo: hello from the container"]
    );
    send("e2", "please use the tool").await;
    let replies = wait_outbox(&base, 3).await;
    assert!(
        replies.contains(&"Robo: sent through the tool".to_owned()),
        "{replies:?}"
    );

    // The provider key from opencode.env reached the model; the bridge's
    // container never saw it.
    let seen = get(&format!("http://127.0.0.1:{model_port}/__requests")).await;
    let auths: Vec<&str> = seen["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["authorization"].as_str())
        .collect();
    assert!(
        !auths.is_empty() && auths.iter().all(|a| *a == format!("Bearer {PROVIDER_KEY}")),
        "{seen}"
    );
    let bridge_env = run(&mut project.compose(&["exec", "-T", "bridge", "env"]));
    assert!(
        !bridge_env.contains(PROVIDER_KEY),
        "the bridge sees the provider key"
    );
    // PB_LOG_FORMAT=json from .env: the bridge logs JSON lines.
    let logs = run(&mut project.compose(&["logs", "--no-color", "bridge"]));
    assert!(
        logs.lines()
            .filter_map(|l| l.split_once("| ").map(|(_, r)| r))
            .any(|l| l.starts_with('{') && l.contains("\"level\"")),
        "{logs}"
    );
    // The data folder is the bridge user's, 0700.
    let mode = run(&mut project.compose(&["exec", "-T", "bridge", "stat", "-c", "%a %U", "/data"]));
    assert_eq!(mode.trim(), "700 pocketbrain");

    // down, up: the registration and the outbox are kept.
    run(&mut project.compose(&["down", "-t", "30"]));
    run(&mut project.compose(&["up", "-d", "--no-build"]));
    project.wait_healthy();
    assert!(project.cli(&["chats", "list"]).contains(DM));
    assert_eq!(outbox(&base).await.len(), replies.len());
    send("e3", "again").await;
    assert_eq!(
        wait_outbox(&base, replies.len() + 1).await.last().unwrap(),
        "Robo: hello from the container"
    );
}
