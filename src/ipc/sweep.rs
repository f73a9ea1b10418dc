//! Keeping the IPC folders small: answers nobody took, failed requests
//! past their age or count.

use std::ffi::OsString;
use std::time::{Duration, SystemTime};

use crate::safe_dir::{Kind, SafeDir};

/// Removes the entries of `dir` older than `ttl`, then the oldest beyond
/// `max` (names that cannot be read are skipped).
pub(super) fn prune(dir: &SafeDir, now: SystemTime, ttl: Duration, max: usize) {
    let Ok(names) = dir.names() else {
        return;
    };
    let mut kept: Vec<(SystemTime, OsString)> = Vec::new();
    for name in names {
        let Ok(Some(stat)) = dir.stat(&name) else {
            continue;
        };
        if stat.kind == Kind::Dir {
            continue;
        }
        let old = now.duration_since(stat.modified).is_ok_and(|age| age > ttl);
        if old {
            let _ = dir.remove(&name);
        } else {
            kept.push((stat.modified, name));
        }
    }
    if kept.len() > max {
        kept.sort();
        for (_, name) in &kept[..kept.len() - max] {
            let _ = dir.remove(name);
        }
    }
}
