//! The server's wall clock: every decision that depends on the date (expiry of tokens and
//! sessions, leases, lost nodes, time limits, award windows, audit checkpoints, the
//! controller's scheduling time, write rate limits) reads it from one [`Clock`], so that tests
//! can move time instead of sleeping through it. Timeouts of I/O (a slow client, a
//! connection's idle time, a long poll) stay on Tokio's clock: they bound real waits.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Now, as Unix milliseconds in UTC (the integer time of the store and the engine).
pub trait Clock: Send + Sync + fmt::Debug {
    fn now_ms(&self) -> i64;

    /// Time since an arbitrary origin on a scale that never goes back, for rates: the
    /// system's wall clock can be set back, its monotonic clock cannot.
    fn monotonic(&self) -> Duration;

    /// Now as a timestamp, for the I/O layers that format or convert it.
    fn now(&self) -> jiff::Timestamp {
        jiff::Timestamp::from_millisecond(self.now_ms()).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
    }
}

/// The clock a server shares between its parts.
pub type SharedClock = Arc<dyn Clock>;

/// The system's real-time clock, for production.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }

    fn monotonic(&self) -> Duration {
        static ORIGIN: OnceLock<Instant> = OnceLock::new();
        ORIGIN.get_or_init(Instant::now).elapsed()
    }
}

/// A clock that stands still until told to move; clones share one time, so a test keeps one
/// and hands the others to the server.
#[derive(Clone)]
pub struct ManualClock {
    ms: Arc<AtomicI64>,
}

impl ManualClock {
    /// A clock standing at `ms` (Unix milliseconds).
    pub fn at(ms: i64) -> Self {
        ManualClock {
            ms: Arc::new(AtomicI64::new(ms)),
        }
    }

    /// A clock standing at the real time of its creation, so that dates look like today's.
    pub fn starting_now() -> Self {
        Self::at(SystemClock.now_ms())
    }

    /// Moves time forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.ms
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| {
                Some(t.saturating_add(by))
            })
            .ok();
    }

    /// Sets the time to `ms` (Unix milliseconds), backwards as well as forwards.
    pub fn set(&self, ms: i64) {
        self.ms.store(ms, Ordering::SeqCst);
    }

    /// The same clock behind the server's shared handle.
    pub fn shared(&self) -> SharedClock {
        Arc::new(self.clone())
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ManualClock").field(&self.now_ms()).finish()
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.ms.load(Ordering::SeqCst)
    }

    /// Its own time: a test that sets it back sees rates as if no time had passed.
    fn monotonic(&self) -> Duration {
        Duration::from_millis(u64::try_from(self.now_ms()).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told_and_its_clones_share_it() {
        let c = ManualClock::at(1_000);
        let shared = c.shared();
        assert_eq!(shared.now_ms(), 1_000);
        c.advance(Duration::from_millis(1_500));
        assert_eq!(shared.now_ms(), 2_500);
        c.set(500);
        assert_eq!(shared.now_ms(), 500);
        assert_eq!(shared.now().as_millisecond(), 500);
        assert_eq!(shared.monotonic(), Duration::from_millis(500));
    }

    #[test]
    fn the_system_clock_reads_todays_date() {
        // 2024-01-01 in Unix milliseconds: a clock before it is not the real one.
        assert!(SystemClock.now_ms() > 1_704_067_200_000);
    }
}
