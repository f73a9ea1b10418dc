//! Checkpoints off the writer's path.
//!
//! In WAL mode every commit appends the pages it changed to the WAL; a
//! checkpoint copies them into the database file and syncs both files.
//! SQLite's own automatic checkpoint runs inside the commit that crosses
//! its threshold, so the one thread that writes for the whole bridge would
//! stall there for the checkpoint's syncs (tens of milliseconds in an
//! inbound burst, with every caller waiting behind it). Instead the
//! store's connection only notes how large the WAL has grown (a WAL hook,
//! on the committing thread), and a thread of its own with its own
//! connection runs passive checkpoints, which never block the writer.
//! Should that thread fall behind by [`INLINE_FRAMES`], the writer
//! checkpoints itself, so the WAL stays bounded whatever happens.
//!
//! Idle costs nothing: the thread sleeps on a channel and wakes only when
//! a commit left the WAL over [`WAKE_FRAMES`]. It ends when the last
//! handle of the store is dropped (its connection then, being the last,
//! folds the WAL into the database as SQLite does on close).

use std::cell::Cell;
use std::os::raw::c_int;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::Duration;

use rusqlite::Connection;

/// WAL frames (pages) after which the checkpoint thread is woken: 32 MiB
/// of WAL, so each hot page of a burst is copied once per many commits.
/// (Small in unit tests, so that they cross it.)
#[cfg(not(test))]
pub(super) const WAKE_FRAMES: c_int = 8192;
#[cfg(test)]
pub(super) const WAKE_FRAMES: c_int = 64;

/// WAL frames at which the writer checkpoints itself (the thread is
/// behind, or cannot open the database).
pub(super) const INLINE_FRAMES: c_int = 4 * WAKE_FRAMES;

/// The WAL's truncation size once it is reset (a burst may have grown it).
const WAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

thread_local! {
    /// Frames in the WAL after the last commit on this thread.
    static WAL_FRAMES: Cell<c_int> = const { Cell::new(0) };
}

/// The WAL hook: keeps the WAL's size for [`Checkpointer::after_commit`].
/// Installing it turns SQLite's automatic checkpoint off.
fn note_frames(_: &rusqlite::hooks::Wal, frames: c_int) -> rusqlite::Result<()> {
    WAL_FRAMES.with(|f| f.set(frames));
    Ok(())
}

/// The store's side of the checkpoint thread.
pub(super) struct Checkpointer {
    wake: Option<SyncSender<()>>,
    /// The WAL's frames the last checkpoint copied (0 once the WAL started over).
    copied: Arc<AtomicI32>,
    /// The WAL's frames after the last commit, and when the thread was last woken.
    last: AtomicI32,
    woke_at: AtomicI32,
    /// Wakes sent to the thread.
    woken: AtomicU64,
}

impl Checkpointer {
    /// Installs the hook on `conn` (the store's connection) and starts the
    /// thread on a connection of its own to `path`. Without a thread (it
    /// could not be started), the writer checkpoints at [`WAKE_FRAMES`].
    pub(super) fn start(conn: &Connection, path: &Path) -> rusqlite::Result<Self> {
        conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
        conn.wal_hook(Some(note_frames));
        let copied = Arc::new(AtomicI32::new(0));
        let wake = match Connection::open(path).and_then(|c| {
            c.busy_timeout(Duration::from_secs(5))?;
            c.pragma_update(None, "synchronous", "NORMAL")?;
            Ok(c)
        }) {
            Ok(own) => {
                let (tx, rx) = sync_channel(1);
                let copied = copied.clone();
                match std::thread::Builder::new()
                    .name("pb-checkpoint".into())
                    .spawn(move || run(own, rx, &copied))
                {
                    Ok(_) => Some(tx),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot start the checkpoint thread; commits checkpoint themselves");
                        None
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot open the database for checkpoints; commits checkpoint themselves");
                None
            }
        };
        Ok(Self {
            wake,
            copied,
            last: AtomicI32::new(0),
            woke_at: AtomicI32::new(0),
            woken: AtomicU64::new(0),
        })
    }

    /// After a write on this thread with the store's connection `conn`
    /// (locked by the caller): wakes the thread each time the WAL has
    /// grown by [`WAKE_FRAMES`] since the last wake, and checkpoints here
    /// when [`INLINE_FRAMES`] of it are not copied yet (or [`WAKE_FRAMES`]
    /// with no thread).
    ///
    /// The WAL starts over only at a commit that finds all of it copied,
    /// which in a long burst may not happen for a while: waking the thread
    /// whenever the WAL is large would have it checkpoint (and sync) back
    /// to back for the whole burst, a quarter of the bridge's CPU.
    pub(super) fn after_commit(&self, conn: &Connection) {
        let frames = WAL_FRAMES.with(|f| f.replace(0));
        if frames == 0 {
            return;
        }
        if frames < self.last.swap(frames, Ordering::Relaxed) {
            // Started over: none of this WAL is copied yet.
            self.copied.store(0, Ordering::Relaxed);
            self.woke_at.store(0, Ordering::Relaxed);
        }
        let behind = frames - self.copied.load(Ordering::Relaxed).min(frames);
        let inline = match &self.wake {
            Some(wake) => {
                if frames - self.woke_at.load(Ordering::Relaxed) >= WAKE_FRAMES {
                    self.woke_at.store(frames, Ordering::Relaxed);
                    self.woken.fetch_add(1, Ordering::Relaxed);
                    // Full: a wake is pending already, which is enough.
                    let _ = wake.try_send(());
                }
                behind >= INLINE_FRAMES
            }
            None => behind >= WAKE_FRAMES,
        };
        if inline {
            tracing::debug!(frames, "the WAL is large; checkpointing on the writer");
            match checkpoint(conn) {
                Ok((_, done)) => self.copied.store(done as c_int, Ordering::Relaxed),
                Err(e) => {
                    tracing::warn!(error = %e, "checkpoint failed; the WAL keeps the data and is copied later")
                }
            }
        }
    }
}

/// The checkpoint thread: a passive checkpoint per wake, until the store is gone.
fn run(conn: Connection, wake: Receiver<()>, copied: &AtomicI32) {
    while wake.recv().is_ok() {
        match checkpoint(&conn) {
            Ok((log, done)) => {
                copied.store(done as c_int, Ordering::Relaxed);
                tracing::trace!(log, done, "checkpoint")
            }
            Err(e) => {
                tracing::warn!(error = %e, "checkpoint failed; the WAL keeps the data and is copied later")
            }
        }
    }
}

/// A passive checkpoint on `conn`: (frames in the WAL, frames copied).
fn checkpoint(conn: &Connection) -> rusqlite::Result<(i64, i64)> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((r.get(1)?, r.get(2)?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(dir: &Path) -> (Connection, std::path::PathBuf) {
        let path = dir.join("c.sqlite3");
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.execute_batch("CREATE TABLE t (x BLOB)").unwrap();
        (conn, path)
    }

    /// Commits a row of most of a page; returns the WAL's frames after it.
    fn commit_row(conn: &Connection) -> c_int {
        conn.execute("INSERT INTO t VALUES (?1)", [vec![7u8; 3000]])
            .unwrap();
        WAL_FRAMES.with(|f| f.get())
    }

    /// Once a commit leaves the WAL over the wake threshold, the thread
    /// copies it into the database while the writer goes on, and the WAL
    /// starts over at a later commit, far below the writer's own bound.
    #[test]
    fn the_thread_checkpoints_and_the_wal_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let (conn, path) = table(dir.path());
        let ck = Checkpointer::start(&conn, &path).unwrap();
        assert!(ck.wake.is_some());
        let mut rows = 0i64;
        let mut frames = 0;
        while frames < WAKE_FRAMES {
            frames = commit_row(&conn);
            rows += 1;
            ck.after_commit(&conn);
        }
        // The thread is awake now; commits go on, slowly, until one finds
        // the WAL copied and starts it over.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            std::thread::sleep(Duration::from_millis(5));
            let now = commit_row(&conn);
            rows += 1;
            ck.after_commit(&conn);
            assert!(now < INLINE_FRAMES, "the writer never had to checkpoint");
            if now < frames {
                break;
            }
            frames = now;
            assert!(
                std::time::Instant::now() < deadline,
                "the WAL never started over"
            );
        }
        let n: i64 = conn
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, rows);
    }

    /// In a burst the thread is woken once per [`WAKE_FRAMES`] the WAL
    /// grew, however many commits there were: not at every commit once
    /// the WAL is large (it may not start over while commits keep coming).
    #[test]
    fn a_burst_wakes_the_thread_once_per_wake_frames_not_per_commit() {
        let dir = tempfile::tempdir().unwrap();
        let (conn, path) = table(dir.path());
        let ck = Checkpointer::start(&conn, &path).unwrap();
        let (mut grown, mut before, mut commits) = (0, 0, 0);
        while grown < 8 * WAKE_FRAMES {
            let frames = commit_row(&conn);
            grown += if frames >= before {
                frames - before
            } else {
                frames
            };
            before = frames;
            commits += 1;
            ck.after_commit(&conn);
        }
        let woken = ck.woken.load(Ordering::Relaxed) as c_int;
        assert!(
            (1..=grown / WAKE_FRAMES + 1).contains(&woken),
            "{woken} wakes for {grown} frames in {commits} commits"
        );
    }

    /// The writer checkpoints itself: at the wake threshold when there is
    /// no thread, at the inline bound when the thread does not come.
    #[test]
    fn the_writer_bounds_the_wal_itself_when_the_thread_does_not_help() {
        let dir = tempfile::tempdir().unwrap();
        let (conn, path) = table(dir.path());
        let mut ck = Checkpointer::start(&conn, &path).unwrap();
        for (wake, bound) in [(None, WAKE_FRAMES), (Some(sync_channel(1)), INLINE_FRAMES)] {
            // No thread, then one that never runs (its receiver held here).
            let (tx, _held) = wake.unzip();
            ck.wake = tx;
            let mut most = 0;
            let mut reset = false;
            for _ in 0..(bound + bound / 2) {
                let frames = commit_row(&conn);
                reset |= frames < most;
                most = most.max(frames);
                ck.after_commit(&conn);
            }
            assert!(reset, "the WAL started over");
            assert!(
                most <= bound + 4,
                "largest WAL: {most} frames, bound {bound}"
            );
        }
    }
}
