//! The per-key rate limit: the `governor` crate's generic cell rate
//! algorithm (GCRA) per key, on tokio's clock, so tests prove it on a paused
//! clock.
//!
//! Each key may make `per_minute` requests a minute, and as many at once
//! after a quiet minute. A refused request is told how long to wait for
//! the next one (`Retry-After`) and does not count.

use std::num::NonZeroU32;
use std::ops::Add;
use std::time::Duration;

use governor::clock::{Clock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};

/// How many keys a limiter holds before it forgets those whose allowance
/// is full again (a quiet key is then the same as a new one).
const FORGET_OVER: usize = 1024;

/// Rate limits by key; shared, each check takes a short lock.
pub struct Limiter(
    RateLimiter<String, HashMapStateStore<String>, TokioClock, NoOpMiddleware<TokioInstant>>,
);

impl Limiter {
    pub fn per_minute(n: u32) -> Self {
        let n = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        Self(RateLimiter::hashmap_with_clock(
            Quota::per_minute(n),
            TokioClock,
        ))
    }

    /// Counts one request of `key` now; `Err(wait)` when it is over its rate.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        if self.0.len() > FORGET_OVER {
            self.0.retain_recent();
        }
        self.0
            .check_key(&key.to_owned())
            .map_err(|refused| refused.wait_time_from(TokioClock.now()))
    }
}

/// tokio's clock for `governor` (its own reads the system's), so a paused
/// test clock moves the limits too.
#[derive(Debug, Clone, Copy, Default)]
struct TokioClock;

impl Clock for TokioClock {
    type Instant = TokioInstant;
    fn now(&self) -> TokioInstant {
        TokioInstant(tokio::time::Instant::now())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct TokioInstant(tokio::time::Instant);

impl Add<Nanos> for TokioInstant {
    type Output = Self;
    fn add(self, d: Nanos) -> Self {
        Self(self.0 + Duration::from(d))
    }
}

impl Reference for TokioInstant {
    fn duration_since(&self, earlier: Self) -> Nanos {
        self.0.saturating_duration_since(earlier.0).into()
    }
    fn saturating_sub(&self, d: Nanos) -> Self {
        Self(self.0.checked_sub(d.into()).unwrap_or(self.0))
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
