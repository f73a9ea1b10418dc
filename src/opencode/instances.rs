//! Which chat folders' OpenCode instances to keep.
//!
//! OpenCode boots an instance for every directory it is asked about (its
//! config, plugins, file watchers: tens of MiB each) and frees one only on
//! `POST /instance/dispose`. Every chat has a folder of its own, so without
//! this an assistant in many chats makes OpenCode grow by each chat that
//! ever ran, for good. The bridge keeps the instances of the
//! `PB_OPENCODE_MAX_INSTANCES` folders its runs used most recently and
//! disposes the least recently used one past that; never one a run is
//! using. A folder disposed boots again at its next run (seconds, as its
//! first run did); its sessions are kept by OpenCode on disk.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The folders runs used, most recent last.
pub struct Instances {
    /// Most folders kept; 0: no limit.
    max: usize,
    inner: Mutex<Vec<Folder>>,
}

struct Folder {
    dir: PathBuf,
    /// Runs using it now.
    busy: usize,
}

/// A run's hold on its folder: the folder is not disposed while held.
pub struct Lease {
    instances: Arc<Instances>,
    dir: PathBuf,
}

impl Instances {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            inner: Mutex::new(Vec::new()),
        })
    }

    /// A run begins in `dir`: its lease, and the folders to dispose now
    /// (least recently used first) to stay within the limit.
    pub fn begin(self: &Arc<Self>, dir: &Path) -> (Lease, Vec<PathBuf>) {
        let mut folders = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut this = match folders.iter().position(|f| f.dir == dir) {
            Some(i) => folders.remove(i),
            None => Folder {
                dir: dir.to_owned(),
                busy: 0,
            },
        };
        this.busy += 1;
        folders.push(this);
        let mut dispose = Vec::new();
        while self.max > 0 && folders.len() > self.max {
            match folders.iter().position(|f| f.busy == 0) {
                Some(i) => dispose.push(folders.remove(i).dir),
                None => break,
            }
        }
        let lease = Lease {
            instances: self.clone(),
            dir: dir.to_owned(),
        };
        (lease, dispose)
    }

    /// The folders kept, least recently used first.
    #[cfg(test)]
    fn kept(&self) -> Vec<PathBuf> {
        let folders = self.inner.lock().unwrap();
        folders.iter().map(|f| f.dir.clone()).collect()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut folders = self
            .instances
            .inner
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(i) = folders.iter().position(|f| f.dir == self.dir) {
            // Used until now: the most recent.
            let mut this = folders.remove(i);
            this.busy -= 1;
            folders.push(this);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(format!("/w/chats/{s}"))
    }

    #[test]
    fn past_the_limit_the_least_recently_used_idle_folder_goes() {
        let inst = Instances::new(2);
        let (a, none) = inst.begin(&p("a"));
        assert!(none.is_empty());
        drop(a);
        let (b, none) = inst.begin(&p("b"));
        assert!(none.is_empty());
        drop(b);
        // a ran again: b is now the least recent.
        drop(inst.begin(&p("a")).0);
        let (c, gone) = inst.begin(&p("c"));
        assert_eq!(gone, vec![p("b")]);
        drop(c);
        assert_eq!(inst.kept(), vec![p("a"), p("c")]);
    }

    #[test]
    fn a_folder_in_use_is_never_disposed() {
        let inst = Instances::new(1);
        let (a, _) = inst.begin(&p("a"));
        let (b, gone) = inst.begin(&p("b"));
        assert!(gone.is_empty(), "a is busy, b is busy: both stay");
        drop(a);
        // a ended; the next begin trims it (b still runs).
        let (c, gone) = inst.begin(&p("c"));
        assert_eq!(gone, vec![p("a")]);
        drop(b);
        drop(c);
        // Two runs of one folder hold it twice.
        let (d1, _) = inst.begin(&p("d"));
        let (d2, _) = inst.begin(&p("d"));
        drop(d1);
        let (e, gone) = inst.begin(&p("e"));
        assert!(!gone.contains(&p("d")), "d still runs: {gone:?}");
        drop((d2, e));
    }

    #[test]
    fn zero_keeps_every_folder() {
        let inst = Instances::new(0);
        for s in ["a", "b", "c", "d"] {
            let (l, gone) = inst.begin(&p(s));
            assert!(gone.is_empty());
            drop(l);
        }
        assert_eq!(inst.kept().len(), 4);
    }
}
