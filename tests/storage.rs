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

/// A data folder on a read-only file system stops `serve` at once with one
/// line naming the folder and the fix.
#[tokio::test]
async fn a_read_only_data_folder_stops_the_bridge_with_one_clear_line() {
    let mut w = World::without_opencode().await;
    w.set_env(
        "PB_OPENCODE_URL",
        &format!("http://127.0.0.1:{}", free_port()),
    );
    let ro = w.dir.path().join("ro");
    let _mount = mount_tmpfs(&ro, "1m");
    std::fs::create_dir(ro.join("data")).unwrap();
    // One already owner-only: then the lock file is the first write.
    std::fs::create_dir(ro.join("private")).unwrap();
    std::fs::set_permissions(
        ro.join("private"),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let remount = Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(&ro)
        .status()
        .unwrap();
    assert!(remount.success());
    for data in [ro.join("data"), ro.join("private"), ro.join("missing/data")] {
        w.set_env("PB_DATA_DIR", data.to_str().unwrap());
        let (ok, _, err) = w.cli_ending(&["serve"], Duration::from_secs(60));
        assert!(!ok, "served on a read-only data folder");
        let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(lines.len(), 1, "{err}");
        assert!(
            lines[0].contains(data.to_str().unwrap())
                && lines[0].contains("Read-only file system")
                && lines[0].contains("PB_DATA_DIR"),
            "{err}"
        );
    }
}
