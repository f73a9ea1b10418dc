//! The order of one pass over the request folder: fair across sessions.

use std::collections::HashMap;

/// The order in which one pass acts: round-robin over the keys (sessions)
/// in the order each first appears, taking each key's items in the order
/// given, at most `per_key` of each. Returns whether items were left out.
pub(super) fn fair_order<K: Eq + std::hash::Hash + Clone, T>(
    items: Vec<(K, T)>,
    per_key: usize,
) -> (Vec<T>, bool) {
    let mut keys: Vec<K> = Vec::new();
    let mut queues: HashMap<K, std::collections::VecDeque<T>> = HashMap::new();
    let mut more = false;
    for (k, item) in items {
        let q = queues.entry(k.clone()).or_insert_with(|| {
            keys.push(k);
            Default::default()
        });
        if q.len() < per_key {
            q.push_back(item);
        } else {
            more = true;
        }
    }
    let mut out = Vec::new();
    loop {
        let before = out.len();
        for k in &keys {
            if let Some(item) = queues.get_mut(k).and_then(|q| q.pop_front()) {
                out.push(item);
            }
        }
        if out.len() == before {
            return (out, more);
        }
    }
}
