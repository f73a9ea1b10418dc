//! Storage that fails loudly and loses nothing: a full disk refuses new
//! messages (the fake phone gets 507 and keeps them) while the bridge keeps
//! answering `/health`, and once there is space again every message is
//! taken and answered. Root only (CI runs as root): the data folder is a
//! small tmpfs mounted for the test.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

const DM: &str = "491511111111@s.whatsapp.net";
const T: Duration = Duration::from_secs(120);

/// A tmpfs mounted at a folder, unmounted on drop.
struct Mount(PathBuf);
impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn mount_tmpfs(at: &Path, size: &str) -> Mount {
    std::fs::create_dir_all(at).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(at)
        .status()
        .unwrap()
        .success();
    assert!(
        ok,
        "mount a tmpfs (the storage tests run as root, as CI does)"
    );
    Mount(at.to_owned())
}

/// Writes zeros into `file` until the file system refuses.
fn fill(file: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(file).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while f.write_all(&chunk).and_then(|()| f.sync_all()).is_ok() {}
}

#[tokio::test]
async fn a_full_disk_refuses_messages_and_loses_none() {
    let mut w = World::new().await;
    let _mount = mount_tmpfs(&w.data_dir(), "16m");
    w.model.set_default(Reply::text("got it"));
    w.register(DM, "Ann", &[]);
    w.start_bridge().await;
    w.say(DM, "m1", "before").await;
    assert_eq!(w.wait_outbox(DM, 1, T).await, ["Andy: got it"]);

    let filler = w.data_dir().join("filler");
    fill(&filler);
    // New messages are refused, named as such, and not kept; the bridge
    // keeps running and answering its health.
    let mut refused = 0;
    for i in 0..20 {
        let (status, body) = w
            .inbox(json!({"chat": DM, "sender": DM, "text": format!("during {i}"), "id": format!("f{i}")}))
            .await;
        if status == 507 {
            refused += 1;
            assert!(
                body["error"].as_str().unwrap().contains("disk is full"),
                "{body}"
            );
        }
    }
    assert!(refused > 0, "a full disk refused nothing");
    let health = w.http_get_text("/health").await;
    assert!(!health.is_empty(), "the bridge stopped answering");

    // Space again: the phone sends the refused ones again; every message
    // is kept and answered, none twice.
    std::fs::remove_file(&filler).unwrap();
    for i in 0..20 {
        let (status, body) = w
            .inbox(json!({"chat": DM, "sender": DM, "text": format!("during {i}"), "id": format!("f{i}")}))
            .await;
        assert!(status == 202 || status == 200, "{status} {body}");
    }
    let deadline = Instant::now() + T;
    loop {
        let answered = w
            .agent_requests()
            .iter()
            .flat_map(|r| prompt_messages(&r.last_user_text()))
            .filter(|m| m.contains("during "))
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        if answered >= 20 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {answered} of 20 reached the agent"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(w.stop_bridge().await.code(), Some(0));
}
