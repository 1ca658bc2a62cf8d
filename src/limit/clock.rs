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
    /// Both, read together: what a request reads once. Clocks that can answer both from one
    /// reading override it.
    fn now(&self) -> (Millis, u64) {
        (self.now_ms(), self.unix_secs())
    }
}

/// How often [`SystemClock::now`] reads the wall clock again, in milliseconds.
const WALL_EVERY_MS: u64 = 1000;

/// The real clock.
#[derive(Debug)]
pub struct SystemClock {
    start: Instant,
    /// Unix time in milliseconds minus monotonic milliseconds since `start`, as last read,
    /// and the monotonic time of that reading: one wall-clock read a second serves every
    /// request in it.
    wall_offset: AtomicU64,
    wall_read_at: AtomicU64,
}

impl Default for SystemClock {
    fn default() -> Self {
        let clock = SystemClock {
            start: Instant::now(),
            wall_offset: AtomicU64::new(0),
            wall_read_at: AtomicU64::new(0),
        };
        clock.read_wall(0);
        clock
    }
}

impl SystemClock {
    fn elapsed_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn read_wall(&self, elapsed: u64) -> u64 {
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.wall_offset
            .store(unix_ms.wrapping_sub(elapsed), Ordering::Relaxed);
        self.wall_read_at.store(elapsed, Ordering::Relaxed);
        unix_ms / 1000
    }
}

/// Starts at 1: 0 marks an unused limiter cell.
fn millis(elapsed: u64) -> Millis {
    elapsed.wrapping_add(1) as Millis
}

impl Clock for SystemClock {
    fn now_ms(&self) -> Millis {
        millis(self.elapsed_ms())
    }

    fn unix_secs(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    fn now(&self) -> (Millis, u64) {
        let elapsed = self.elapsed_ms();
        // Within a second of the last wall-clock read, the monotonic clock carries it on;
        // after that it is read afresh, so a step of the wall clock shows within a second.
        let unix =
            if elapsed.saturating_sub(self.wall_read_at.load(Ordering::Relaxed)) < WALL_EVERY_MS {
                elapsed.wrapping_add(self.wall_offset.load(Ordering::Relaxed)) / 1000
            } else {
                self.read_wall(elapsed)
            };
        (millis(elapsed), unix)
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
    fn now(&self) -> (Millis, u64) {
        let ms = self.ms.load(Ordering::Relaxed);
        (ms.wrapping_add(1) as Millis, 1_700_000_000 + ms / 1000)
    }

    fn now_ms(&self) -> Millis {
        self.ms.load(Ordering::Relaxed).wrapping_add(1) as Millis
    }

    fn unix_secs(&self) -> u64 {
        1_700_000_000 + self.ms.load(Ordering::Relaxed) / 1000
    }
}
