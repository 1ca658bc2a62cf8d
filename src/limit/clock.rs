//! Time for the limiters and the tracker: a monotonic clock in milliseconds, injectable so
//! tests and `lenscap replay` run in their own time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::rate::Millis;

/// Where the limiters and the tracker read the time.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// Milliseconds since the clock's own start (wrapping).
    fn now_ms(&self) -> Millis;
    /// Seconds since the Unix epoch (for cookie lifetimes).
    fn unix_secs(&self) -> u64;
}

/// The real clock.
#[derive(Debug)]
pub struct SystemClock {
    start: Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock {
            start: Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn now_ms(&self) -> Millis {
        // Starts at 1: 0 marks an unused limiter cell.
        (self.start.elapsed().as_millis() as u64).wrapping_add(1) as Millis
    }

    fn unix_secs(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

/// A clock that only moves when told to: for tests and for replaying logs in their own time.
///
/// ```
/// use std::time::Duration;
/// use lenscap::limit::{Clock, ManualClock};
/// let clock = ManualClock::new();
/// clock.advance(Duration::from_millis(1500));
/// assert_eq!(clock.now_ms(), 1501);
/// ```
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    ms: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock at its start.
    pub fn new() -> ManualClock {
        ManualClock::default()
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: std::time::Duration) {
        self.ms.fetch_add(by.as_millis() as u64, Ordering::Relaxed);
    }

    /// Sets the time since the clock's start (never backwards).
    pub fn set(&self, since_start: std::time::Duration) {
        self.ms
            .fetch_max(since_start.as_millis() as u64, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> Millis {
        self.ms.load(Ordering::Relaxed).wrapping_add(1) as Millis
    }

    fn unix_secs(&self) -> u64 {
        1_700_000_000 + self.ms.load(Ordering::Relaxed) / 1000
    }
}
