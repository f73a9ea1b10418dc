//! Stage timestamps for the benchmark's breakdown of one message and one
//! tool call (`benches/core.rs`, `docs/BENCHMARKS.md`).
//!
//! [`stage!`](crate::stage) emits a `trace` event with target
//! `pocketbrain::timing`, the stage's name, a key (chat, session or request
//! id) and the wall clock in microseconds. Tracing evaluates the fields only
//! when that target is enabled (`PB_LOG=...,pocketbrain::timing=trace`), so
//! a bridge with ordinary log settings pays one disabled-callsite check per
//! stage and reads no clock.

/// The tracing target of stage events.
pub const TARGET: &str = "pocketbrain::timing";

/// Microseconds since the Unix epoch (the benchmark lines these up with
/// its own clock and OpenCode's millisecond timestamps).
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or_default()
}

/// `stage!("name", key)`: records that `key` reached stage `name` now.
#[macro_export]
macro_rules! stage {
    ($name:expr, $key:expr) => {
        ::tracing::trace!(
            target: "pocketbrain::timing",
            stage = $name,
            key = %$key,
            t_us = $crate::timing::now_us()
        )
    };
}
