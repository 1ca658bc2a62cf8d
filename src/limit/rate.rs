//! Rates as people write them (`"120/min"` with a burst) and the GCRA check, done by governor.
//!
//! Each limiter cell is one `u32` inside a client's record: the theoretical arrival time (TAT)
//! in milliseconds on the store's clock, `0` for "never used". governor's GCRA does the
//! arithmetic through a [`StateStore`] that borrows that cell, so a client's tracker and all
//! its limiter cells live in one map entry and one lookup serves them all.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use governor::clock::Clock as GovernorClock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{NotKeyed, StateStore};
use governor::{Quota, RateLimiter};

/// Milliseconds on a store's clock. Wraps after 49 days; only differences are compared.
pub type Millis = u32;

/// A parsed rate: `burst` requests at once, then one every `period`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    quota: Quota,
    per: u32,
    unit: &'static str,
}

impl Rate {
    /// Parses `"120/min"` (units `s`, `min`, `h`, `day`, with their long forms) and a burst
    /// (default: the count, a whole unit's worth at once). At most 100/s.
    ///
    /// ```
    /// use lenscap::limit::Rate;
    /// let rate = Rate::parse("120/min", Some(20)).unwrap();
    /// assert_eq!(rate.burst(), 20);
    /// assert_eq!(rate.period(), std::time::Duration::from_millis(500));
    /// assert!(Rate::parse("lots", None).is_err());
    /// ```
    pub fn parse(text: &str, burst: Option<u32>) -> Result<Rate, String> {
        let (count, unit) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?} is not a rate like \"120/min\""))?;
        let count: u32 = count
            .trim()
            .parse()
            .ok()
            .filter(|c| *c > 0)
            .ok_or_else(|| format!("{text:?}: the count must be a whole number above 0"))?;
        let (seconds, unit) = match unit.trim() {
            "s" | "sec" | "second" => (1, "s"),
            "m" | "min" | "minute" => (60, "min"),
            "h" | "hour" => (3600, "h"),
            "d" | "day" => (86_400, "day"),
            other => return Err(format!("{text:?}: unknown unit {other:?} (s, min, h, day)")),
        };
        let period = Duration::from_secs(seconds) / count;
        if period < Duration::from_millis(10) {
            return Err(format!("{text:?} is faster than 100/s"));
        }
        let burst = burst.unwrap_or(count);
        let burst = std::num::NonZeroU32::new(burst)
            .ok_or_else(|| "burst must be at least 1".to_owned())?;
        let quota = Quota::with_period(period)
            .expect("period is above zero")
            .allow_burst(burst);
        Ok(Rate {
            quota,
            per: count,
            unit,
        })
    }

    /// How many requests may come at once.
    pub fn burst(&self) -> u32 {
        self.quota.burst_size().get()
    }

    /// Time to earn back one request.
    pub fn period(&self) -> Duration {
        self.quota.replenish_interval()
    }

    /// The rate shared by `shares` people: each request costs a `shares`-th of a period, and
    /// the bucket holds `shares` times the burst (the same span of time).
    pub(crate) fn shared(&self, shares: u32) -> Rate {
        let shares = shares.max(1);
        let Some(quota) = Quota::with_period(self.period() / shares) else {
            return *self;
        };
        let burst = self.burst().saturating_mul(shares);
        Rate {
            quota: quota
                .allow_burst(std::num::NonZeroU32::new(burst).unwrap_or(self.quota.burst_size())),
            per: self.per.saturating_mul(shares),
            unit: self.unit,
        }
    }

    /// Seconds for an empty bucket to fill up again (the `w` of `RateLimit-Policy`).
    pub fn window_secs(&self) -> u64 {
        self.quota.burst_size_replenished_in().as_secs_f64().ceil() as u64
    }

    /// Tests one request against `tat` at `now`, updating it when allowed. Over quota, returns
    /// how long until the request would be allowed, as governor computes it.
    pub(crate) fn check(&self, tat: &mut Millis, now: Millis) -> Result<(), Duration> {
        let cell = CellStore {
            tat: Cell::from_mut(tat),
            now,
        };
        let limiter: RateLimiter<NotKeyed, _, _, NoOpMiddleware<Duration>> =
            RateLimiter::new(self.quota, cell, Frozen);
        let checked = limiter
            .check()
            .map_err(|not_until| not_until.wait_time_from(Duration::ZERO));
        checked?;
        note_admission(*tat, self);
        Ok(())
    }

    /// A request refused by [`check`](Rate::check) that came anyway: the cell is set the
    /// bucket's whole span ahead of `now` (where the burst's last request leaves it), so the
    /// next request is allowed one period after this one, not earlier; returns that wait. A
    /// client that keeps asking while refused is held back until it pauses; one that waits
    /// is not.
    pub(crate) fn hold_back(&self, tat: &mut Millis, now: Millis) -> Duration {
        let held = now.wrapping_add(self.span_ms());
        *tat = if held == 0 { 1 } else { held };
        self.period()
    }

    /// The most a cell may be ahead of now right after an admitted request: the bucket's
    /// whole span (burst × period), in milliseconds, rounded up.
    pub(crate) fn span_ms(&self) -> u32 {
        let span = self.quota.burst_size_replenished_in().as_nanos();
        span.div_ceil(1_000_000).min(u128::from(u32::MAX / 2)) as u32
    }
}

/// Admissions made while [`admissions_during`] runs: each admitted cell's new value and the
/// most it may be ahead of now ([`Rate::span_ms`]).
pub(crate) type Admissions = Vec<(Millis, u32)>;

thread_local! {
    /// The admissions of the record being decided on this thread, when a shared store asked.
    static ADMISSIONS: RefCell<Option<Admissions>> = const { RefCell::new(None) };
}

/// Set once a shared store has asked for admissions: until then (the in-process store) no
/// check reaches the thread-local at all.
static NOTING: AtomicBool = AtomicBool::new(false);

fn note_admission(tat: Millis, rate: &Rate) {
    if !NOTING.load(Ordering::Relaxed) {
        return;
    }
    ADMISSIONS.with(|noted| {
        if let Some(noted) = noted.borrow_mut().as_mut() {
            noted.push((tat, rate.span_ms()));
        }
    });
}

#[cfg(feature = "cli")]
/// Runs `decide` and returns the admissions its checks made, so that a shared store can
/// check each one again, atomically, against the fleet's copy of the cell.
pub(crate) fn admissions_during<R>(decide: impl FnOnce() -> R) -> (R, Admissions) {
    NOTING.store(true, Ordering::Relaxed);
    let outer = ADMISSIONS.with(|noted| noted.borrow_mut().replace(Vec::new()));
    let out = decide();
    let noted = ADMISSIONS.with(|noted| std::mem::replace(&mut *noted.borrow_mut(), outer));
    (out, noted.unwrap_or_default())
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{} (burst {})", self.per, self.unit, self.burst())
    }
}

/// Whether the cell's TAT is in the past (the limiter is back to full burst).
pub(crate) fn is_idle(tat: Millis, now: Millis) -> bool {
    tat == 0 || (tat.wrapping_sub(now) as i32) <= 0
}

/// governor's clock for one check: the check happens at its own start.
struct Frozen;

impl GovernorClock for Frozen {
    type Instant = Duration;

    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

/// One TAT cell seen from `now`: governor reads and writes times relative to `now`.
struct CellStore<'a> {
    tat: &'a Cell<Millis>,
    now: Millis,
}

impl StateStore for CellStore<'_> {
    type Key = NotKeyed;

    fn measure_and_replace<T, F, E>(&self, _key: &NotKeyed, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let stored = self.tat.get();
        let ahead = stored.wrapping_sub(self.now) as i32;
        // A TAT in the past means a full bucket: the same as a fresh one to GCRA.
        let previous = (stored != 0 && ahead > 0).then(|| Nanos::new(ahead as u64 * 1_000_000));
        let (outcome, next) = f(previous)?;
        // Rounded down to the millisecond: a burst at one instant stays whole, and with
        // periods of 10 ms or more the leniency is under a tenth of a period.
        let ahead = (next.as_u64() / 1_000_000).min(i32::MAX as u64) as u32;
        let tat = self.now.wrapping_add(ahead);
        self.tat.set(if tat == 0 { 1 } else { tat });
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rates_people_write() {
        let r = Rate::parse("120/min", Some(20)).unwrap();
        assert_eq!((r.burst(), r.period()), (20, Duration::from_millis(500)));
        assert_eq!(r.window_secs(), 10);
        assert_eq!(Rate::parse("10/s", None).unwrap().burst(), 10);
        assert_eq!(
            Rate::parse("1/hour", None).unwrap().period(),
            Duration::from_secs(3600)
        );
        assert!(Rate::parse("0/min", None).is_err());
        assert!(Rate::parse("5/fortnight", None).is_err());
        assert!(Rate::parse("5000/s", None).is_err());
        assert!(Rate::parse("5/min", Some(0)).is_err());
    }

    #[test]
    fn gcra_allows_the_burst_then_spaces_requests() {
        let r = Rate::parse("30/min", Some(3)).unwrap();
        let mut tat = 0;
        let now = 10_000;
        for _ in 0..3 {
            r.check(&mut tat, now).unwrap();
        }
        assert_eq!(r.check(&mut tat, now), Err(Duration::from_secs(2)));
        assert_eq!(
            r.check(&mut tat, now + 1500),
            Err(Duration::from_millis(500))
        );
        r.check(&mut tat, now + 2000).unwrap();
        assert!(r.check(&mut tat, now + 2000).is_err());
        assert!(!is_idle(tat, now + 2000));
        assert!(is_idle(tat, now + 10_000));
    }

    #[test]
    fn a_request_held_back_waits_a_period_from_itself() {
        let r = Rate::parse("15/min", Some(3)).unwrap();
        let mut tat = 0;
        let now = 10_000;
        for _ in 0..3 {
            r.check(&mut tat, now).unwrap();
        }
        // Refused three times while the bucket refills: each try restarts the wait.
        for tried in [now + 300, now + 3_000, now + 3_900] {
            assert!(r.check(&mut tat, tried).is_err());
            assert_eq!(r.hold_back(&mut tat, tried), r.period());
        }
        assert!(r.check(&mut tat, now + 7_899).is_err());
        r.check(&mut tat, now + 7_900).unwrap();
        // Without the holding back the period after the burst would have been enough.
        let mut plain = 0;
        for _ in 0..3 {
            r.check(&mut plain, now).unwrap();
        }
        r.check(&mut plain, now + 4_000).unwrap();
        // Never further ahead than an admitted burst leaves the cell.
        let mut fresh = 0;
        let _ = r.hold_back(&mut fresh, now);
        assert_eq!(fresh, now + r.span_ms());
    }

    #[test]
    fn admissions_are_noted_only_while_asked_for() {
        let r = Rate::parse("30/min", Some(3)).unwrap();
        let mut tat = 0;
        r.check(&mut tat, 10_000).unwrap();
        let ((), noted) = admissions_during(|| {
            r.check(&mut tat, 10_000).unwrap();
            r.check(&mut tat, 10_000).unwrap();
            assert!(r.check(&mut tat, 10_000).is_err());
        });
        // Two admitted (the refused one changes nothing); a 3-burst of 2 s periods spans 6 s.
        assert_eq!(noted, vec![(14_000, 6_000), (16_000, 6_000)]);
        assert_eq!(r.span_ms(), 6_000);
    }

    #[test]
    fn survives_the_clock_wrapping() {
        let r = Rate::parse("60/min", Some(1)).unwrap();
        let mut tat = 0;
        let now = u32::MAX - 100;
        r.check(&mut tat, now).unwrap();
        assert_eq!(
            r.check(&mut tat, now.wrapping_add(500)),
            Err(Duration::from_millis(500))
        );
        r.check(&mut tat, now.wrapping_add(1000)).unwrap();
    }
}
