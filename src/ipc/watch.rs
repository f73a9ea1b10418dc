//! Waking the IPC processor when a request may have arrived, and only then.
//!
//! The plugin writes a request as a dot-named temp file and renames it into
//! place, so a new request shows up as a file created or moved into the
//! folder under a visible name. Every other inotify event (opening the
//! folder to list it, reading a file, deleting one) is ignored: reacting to
//! them made the processor's own scan wake it again, a loop that kept an
//! idle bridge at a full core. A kernel queue overflow (`need_rescan`) wakes
//! it too, since events may have been lost.

use std::path::Path;

use notify::event::{CreateKind, ModifyKind, RenameMode};
use notify::{Event, EventKind, Watcher};
use tokio::sync::mpsc;

/// Whether `event` can mean a new request file.
pub fn may_be_new_request(event: &Event) -> bool {
    if event.need_rescan() {
        return true;
    }
    let arrived = matches!(
        event.kind,
        EventKind::Create(CreateKind::File | CreateKind::Any)
            | EventKind::Modify(ModifyKind::Name(
                RenameMode::To | RenameMode::Both | RenameMode::Any
            ))
    );
    arrived && event.paths.iter().any(|p| visible_name(p))
}

/// Request files have visible names; temp files start with a dot.
pub fn visible_name(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| !n.starts_with('.'))
}

/// Watches one folder and reports when a request may have arrived.
pub struct RequestWatcher {
    _watcher: notify::RecommendedWatcher,
    rx: mpsc::Receiver<()>,
}

impl RequestWatcher {
    pub fn start(dir: &Path) -> notify::Result<Self> {
        let (tx, rx) = mpsc::channel::<()>(1);
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<Event>| {
            match res {
                // A full channel already holds a wake-up: nothing is lost.
                Ok(ev) if may_be_new_request(&ev) => {
                    let _ = tx.try_send(());
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "IPC folder watch error; rescanning");
                    let _ = tx.try_send(());
                }
            }
        })?;
        watcher.watch(dir, notify::RecursiveMode::NonRecursive)?;
        Ok(Self {
            _watcher: watcher,
            rx,
        })
    }

    /// Resolves when a request may have arrived since the last call.
    pub async fn changed(&mut self) {
        if self.rx.recv().await.is_none() {
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn woke(w: &mut RequestWatcher, within: Duration) -> bool {
        tokio::time::timeout(within, w.changed()).await.is_ok()
    }

    /// Listing the folder, reading and deleting files (what a scan does)
    /// never wakes the watcher; a file renamed or created into it does.
    #[tokio::test]
    async fn only_a_new_request_file_wakes_the_watcher() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let mut w = RequestWatcher::start(&path).unwrap();

        // What a scan does, over and over: none of it may wake us.
        std::fs::write(path.join(".req_1.json.tmp"), b"{}").unwrap();
        std::fs::rename(path.join(".req_1.json.tmp"), path.join(".hidden")).unwrap();
        let mut woken = 0;
        for _ in 0..20 {
            let names: Vec<_> = std::fs::read_dir(&path).unwrap().flatten().collect();
            for e in names {
                let _ = std::fs::read(e.path());
            }
            if woke(&mut w, Duration::from_millis(20)).await {
                woken += 1;
            }
        }
        assert_eq!(woken, 0, "scanning woke the watcher: a busy loop");

        // The plugin's atomic write: temp file, then rename into place.
        std::fs::write(path.join(".req_2.json.tmp"), b"{}").unwrap();
        std::fs::rename(path.join(".req_2.json.tmp"), path.join("req_2.json")).unwrap();
        assert!(
            woke(&mut w, Duration::from_secs(10)).await,
            "rename into place"
        );
        while woke(&mut w, Duration::from_millis(100)).await {}

        std::fs::remove_file(path.join("req_2.json")).unwrap();
        assert!(
            !woke(&mut w, Duration::from_millis(300)).await,
            "a deletion"
        );

        std::fs::write(path.join("req_3.json"), b"{}").unwrap();
        assert!(
            woke(&mut w, Duration::from_secs(10)).await,
            "a plain create"
        );
    }
}
