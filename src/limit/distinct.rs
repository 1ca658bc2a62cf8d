//! The distinct photos an address's people have been served lately: what the extra shares
//! of a crowd may not buy.
//!
//! People on one address (a pub's Wi-Fi) mostly look at the same photos — last night's
//! album; a scraper running parallel sessions from one address splits the gallery and
//! fetches different photos in each. So once an address has more than one established
//! visitor, its vouched photos are also served through a [`DistinctPhotos`] record: a Bloom
//! filter of 16,384 bits (six per photo, from the photo's key) of the photos served to
//! anyone on the address today. A photo new to the address is charged one photo of its
//! `address_distinct_photos` budget; a repeat view (all four bits set) costs nothing there.
//! A lone client never gets a record: it costs nothing extra.
//!
//! A new photo mistaken for a repeat (all six of its bits set by others) is served
//! uncharged: about 1 in 11,000 at 650 photos in the filter, 1 in 5,000 at 750 (a scraper
//! asking for 10,000 new photos past the budget gets about two). The filter starts afresh
//! each day, or once it holds about 1,500 photos (1 in 175), and repeat views then count as
//! new again: never in a scraper's favour.

use super::rate::{Millis, Rate, is_idle};

/// Bits in the filter.
const BITS: u32 = 16_384;
/// Bits set per photo.
const HASHES: u32 = 6;
const WORDS: usize = (BITS / 64) as usize;
/// The filter starts afresh each window: a day.
const WINDOW_MS: u32 = 86_400_000;
/// Beyond this many photos the filter mistakes too many new photos for repeats.
const MOST_PHOTOS: u32 = 1_500;

/// Bytes of an encoded [`DistinctPhotos`]: its GCRA cell, when it was last seen, its
/// window, then the filter.
pub const DISTINCT_BYTES: usize = 12 + (BITS / 8) as usize;

/// Byte offset of the window in an encoded record; the filter follows it to the end.
pub(crate) const WINDOW_AT: usize = 8;

/// An address's record of the distinct photos its people have been served (kept only for an
/// address with more than one established visitor). 2,064 bytes in memory, 2,060 encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DistinctPhotos {
    /// GCRA cell of `address_distinct_photos`: one charge per photo new to the address.
    pub tat: Millis,
    last_ms: Millis,
    /// The day the filter belongs to.
    window: u32,
    bits: [u64; WORDS],
}

/// What [`DistinctPhotos::serve`] found for one photo.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Served {
    /// Someone on the address was served it already today.
    Repeat,
    /// A new photo, charged to the budget.
    New,
    /// A new photo beyond the budget: not served, not recorded; allowed after the wait.
    Over(std::time::Duration),
}

impl DistinctPhotos {
    /// An empty record at `now`, its budget already charged with `owed_ms` of its rate's
    /// time (what the address took before it was a crowd).
    pub(crate) fn new(now: Millis, owed_ms: u32) -> DistinctPhotos {
        DistinctPhotos {
            tat: if owed_ms == 0 {
                0
            } else {
                now.wrapping_add(owed_ms).max(1)
            },
            last_ms: now,
            window: now / WINDOW_MS,
            bits: [0; WORDS],
        }
    }

    /// The estimated number of distinct photos in the filter: `−(m/k)·ln(1 − X/m)` for `X`
    /// of its `m` bits set, `k` per photo.
    pub fn estimate(&self) -> u32 {
        let set = self.bits.iter().map(|w| w.count_ones()).sum::<u32>();
        let (m, k) = (f64::from(BITS), f64::from(HASHES));
        let clear = (m - f64::from(set)).max(1.0);
        (-(m / k) * (clear / m).ln()).round() as u32
    }

    /// When the record was last used.
    pub(crate) fn last_seen(&self) -> Millis {
        self.last_ms
    }

    /// Whether the record carries nothing any more: unseen for `idle_ms` and its budget full.
    pub(crate) fn idle(&self, now: Millis, idle_ms: u32) -> bool {
        now.wrapping_sub(self.last_ms) >= idle_ms && is_idle(self.tat, now)
    }

    /// The photo's bits, by double hashing the two halves of its key (a seeded hash
    /// already).
    fn slots(photo: u64) -> [(usize, u64); HASHES as usize] {
        let (first, step) = (photo as u32, (photo >> 32) as u32 | 1);
        std::array::from_fn(|i| {
            let bit = first.wrapping_add(step.wrapping_mul(i as u32)) % BITS;
            ((bit / 64) as usize, 1u64 << (bit % 64))
        })
    }

    /// A new day, or a filter too full to tell new photos: start it afresh (the budget
    /// stays).
    fn roll(&mut self, now: Millis) {
        let window = now / WINDOW_MS;
        if window != self.window || self.estimate() >= MOST_PHOTOS {
            self.window = window;
            self.bits = [0; WORDS];
        }
    }

    /// What [`serve`](Self::serve) would find, changing nothing.
    pub(crate) fn foresee(&self, photo: u64, rate: Rate, now: Millis) -> Served {
        let mut copy = *self;
        copy.serve(photo, rate, now)
    }

    /// Serves `photo` to the address at `now`: a repeat costs nothing; a new photo is charged
    /// one photo of `rate` and recorded, unless that is over the budget (then nothing changes
    /// but when the record was seen).
    pub(crate) fn serve(&mut self, photo: u64, rate: Rate, now: Millis) -> Served {
        self.last_ms = now;
        self.roll(now);
        let slots = Self::slots(photo);
        if slots
            .iter()
            .all(|&(word, mask)| self.bits[word] & mask != 0)
        {
            return Served::Repeat;
        }
        if let Err(wait) = rate.check(&mut self.tat, now) {
            return Served::Over(wait);
        }
        for (word, mask) in slots {
            self.bits[word] |= mask;
        }
        Served::New
    }

    /// The record as bytes (a shared store's wire form): the GCRA cell first, the window
    /// right before the filter, so a merge can add charges and unite filters of one day.
    pub fn encode(&self) -> [u8; DISTINCT_BYTES] {
        let mut out = [0u8; DISTINCT_BYTES];
        for (at, word) in [self.tat, self.last_ms, self.window]
            .into_iter()
            .enumerate()
        {
            out[4 * at..4 * at + 4].copy_from_slice(&word.to_le_bytes());
        }
        for (chunk, word) in out[WINDOW_AT + 4..].chunks_exact_mut(8).zip(self.bits) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        out
    }

    /// The record [`encode`](Self::encode) wrote; `None` for bytes of another length.
    pub fn decode(bytes: &[u8]) -> Option<DistinctPhotos> {
        let bytes: &[u8; DISTINCT_BYTES] = bytes.try_into().ok()?;
        let word = |at: usize| {
            let at = 4 * at;
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let mut bits = [0u64; WORDS];
        for (word, chunk) in bits.iter_mut().zip(bytes[WINDOW_AT + 4..].chunks_exact(8)) {
            let mut eight = [0u8; 8];
            eight.copy_from_slice(chunk);
            *word = u64::from_le_bytes(eight);
        }
        Some(DistinctPhotos {
            tat: word(0),
            last_ms: word(1),
            window: word(2),
            bits,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn photo(n: u64) -> u64 {
        use std::hash::BuildHasher;
        foldhash::quality::FixedState::with_seed(7).hash_one(n)
    }

    #[test]
    fn the_estimate_follows_the_distinct_photos_served() {
        let rate = Rate::parse("100/s", Some(10_000)).unwrap();
        for n in [50u64, 300, 600, 1_000, 1_400] {
            let mut record = DistinctPhotos::new(1, 0);
            for round in 0..3 {
                for i in 0..n {
                    let served = record.serve(photo(i), rate, 1);
                    if round > 0 {
                        assert_eq!(served, Served::Repeat, "photo {i} again");
                    }
                }
            }
            let estimate = f64::from(record.estimate());
            let error = (estimate - n as f64).abs() / n as f64;
            assert!(error < 0.05, "{n} photos: estimated {estimate}");
        }
    }

    #[test]
    fn past_the_budget_new_photos_are_refused_and_repeats_still_served() {
        let rate = Rate::parse("100/day", Some(600)).unwrap();
        let mut record = DistinctPhotos::new(1, 0);
        let (mut new, mut uncharged, mut over) = (0, 0, 0);
        for i in 0..3_000u64 {
            match record.serve(photo(i), rate, 1) {
                Served::New => new += 1,
                Served::Repeat => uncharged += 1,
                Served::Over(wait) => {
                    assert!(wait > std::time::Duration::from_secs(600));
                    over += 1;
                }
            }
        }
        assert_eq!(new, 600);
        // New photos mistaken for repeats: about one in five thousand.
        assert!(uncharged <= 3, "{uncharged} new photos served uncharged");
        assert_eq!(new + uncharged + over, 3_000);
        for i in 0..3_000u64 {
            if record.serve(photo(i), rate, 1) == Served::New {
                panic!("photo {i} charged twice");
            }
        }
        assert_eq!(record.serve(photo(0), rate, 1), Served::Repeat);
    }

    #[test]
    fn a_seeded_record_has_its_budget_partly_spent() {
        let rate = Rate::parse("10/day", Some(100)).unwrap();
        let period = rate.period().as_millis() as u32;
        let mut record = DistinctPhotos::new(1, 60 * period);
        let untouched = record;
        assert_eq!(record.foresee(photo(0), rate, 1), Served::New);
        assert_eq!(record, untouched, "foreseeing changes nothing");
        let new = (0..1_000u64)
            .take_while(|&i| !matches!(record.serve(photo(i), rate, 1), Served::Over(_)))
            .count();
        assert_eq!(new, 40);
    }

    #[test]
    fn a_new_day_starts_the_filter_afresh_and_keeps_the_budget() {
        let rate = Rate::parse("10/day", Some(100)).unwrap();
        let mut record = DistinctPhotos::new(1, 0);
        for i in 0..50 {
            record.serve(photo(i), rate, 1);
        }
        let tat = record.tat;
        assert_eq!(record.serve(photo(3), rate, 2), Served::Repeat);
        assert_eq!(record.serve(photo(3), rate, WINDOW_MS + 5), Served::New);
        assert!(record.tat.wrapping_sub(tat) as i32 > 0);
        assert_eq!(record.estimate(), 1);
    }

    #[test]
    fn records_come_back_from_their_encoding() {
        let rate = Rate::parse("100/s", Some(1_000)).unwrap();
        let mut record = DistinctPhotos::new(77, 5_000);
        for i in 0..123 {
            record.serve(photo(i), rate, 80);
        }
        let bytes = record.encode();
        assert_eq!(DistinctPhotos::decode(&bytes), Some(record));
        assert_eq!(&bytes[..4], &record.tat.to_le_bytes());
        assert_eq!(
            &bytes[WINDOW_AT..WINDOW_AT + 4],
            &record.window.to_le_bytes()
        );
        assert_eq!(DistinctPhotos::decode(&bytes[1..]), None);
        assert_eq!(DISTINCT_BYTES, 2_060);
        assert_eq!(std::mem::size_of::<DistinctPhotos>(), 2_064);
    }
}
