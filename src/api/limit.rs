//! The per-key rate limit: a generic cell rate algorithm (GCRA) per key on
//! tokio's clock, so tests prove it on a paused clock.
//!
//! Each key may make `per_minute` requests a minute, and as many at once
//! after a quiet minute. A refused request is told how long to wait for
//! the next one (`Retry-After`) and does not count.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Keys a limiter forgets once they have been quiet this long (their
/// allowance is then full anyway).
const FORGET_AFTER: Duration = Duration::from_secs(120);

/// Rate limits by key; shared, each check takes a short std lock.
pub struct Limiter {
    /// Time between requests at the steady rate.
    interval: Duration,
    /// How far ahead of now a key's schedule may run (the burst).
    tolerance: Duration,
    /// Per key: the theoretical arrival time of its next request.
    tat: Mutex<HashMap<String, Instant>>,
}

impl Limiter {
    pub fn per_minute(n: u32) -> Self {
        let n = n.max(1);
        let interval = Duration::from_secs(60) / n;
        Self {
            interval,
            tolerance: interval * (n - 1),
            tat: Mutex::default(),
        }
    }

    /// Counts one request of `key` now; `Err(wait)` when it is over its rate.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let mut tat = self.tat.lock().unwrap_or_else(|p| p.into_inner());
        if tat.len() > 1024 {
            tat.retain(|_, t| *t + FORGET_AFTER > now);
        }
        let next = tat.get(key).copied().unwrap_or(now).max(now);
        let ahead = next - now;
        if ahead > self.tolerance {
            return Err(ahead - self.tolerance);
        }
        tat.insert(key.to_owned(), next + self.interval);
        Ok(())
    }
}

/// `Retry-After` in whole seconds, never 0.
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_then_the_steady_rate_per_key() {
        let l = Limiter::per_minute(3);
        for _ in 0..3 {
            l.check("a").unwrap();
        }
        // The fourth waits for one interval (20 s), whole.
        let wait = l.check("a").unwrap_err();
        assert_eq!(wait, Duration::from_secs(20));
        assert_eq!(retry_after_secs(wait), 20);
        // Another key has its own allowance.
        l.check("b").unwrap();
        // A refused request does not count: 20 s later one passes, then
        // the next waits 20 s again.
        tokio::time::advance(Duration::from_millis(19_999)).await;
        assert_eq!(l.check("a").unwrap_err(), Duration::from_millis(1));
        tokio::time::advance(Duration::from_millis(1)).await;
        l.check("a").unwrap();
        assert_eq!(l.check("a").unwrap_err(), Duration::from_secs(20));
        // After a quiet minute the whole burst is back.
        tokio::time::advance(Duration::from_secs(60)).await;
        for _ in 0..3 {
            l.check("a").unwrap();
        }
        assert!(l.check("a").is_err());
    }

    #[test]
    fn retry_after_rounds_up_and_is_never_zero() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(3)), 3);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}
