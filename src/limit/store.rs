//! Where limiter and tracker state lives: the [`StateStore`] trait and the in-process default.
//!
//! One entry per client holds its tracker and its limiter cells, so a request costs one map
//! lookup per key (the client, then its subnet). The in-process store is 64 mutex-guarded
//! hash maps keyed by a seeded 64-bit fingerprint, each bounded to its share of
//! `max_tracked_clients`: inserting into a full shard first evicts its stalest eighth.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::rate::{Millis, is_idle};
use crate::signals::behaviour::Behaviour;

/// A client's state: its page, pace and image limiter cells and its tracker. 72 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientRecord {
    /// GCRA cell for page views (the long-horizon budget).
    pub tat_pages: Millis,
    /// GCRA cell for the pace of page navigations.
    pub tat_pace: Millis,
    /// GCRA cell for images.
    pub tat_images: Millis,
    /// What the client has been doing.
    pub behaviour: Behaviour,
    /// An address's record: GCRA cell for every page view from the address (its anonymous
    /// client, its cookie visitors, its pass holders), shared by the visitors it has seen.
    pub tat_address_pages: Millis,
    /// An address's record: GCRA cell for every vouched photo from the address.
    pub tat_address_photos: Millis,
    /// An address's record: the visitors seen on it in the current window (a 28-bit set,
    /// the window's number in the top 4 bits).
    pub members: u32,
    /// A visitor's record: when it was first served a page (0: not yet).
    pub first_page: Millis,
}

impl ClientRecord {
    fn new(now: Millis) -> Self {
        ClientRecord {
            behaviour: Behaviour::new(now),
            ..ClientRecord::default()
        }
    }

    fn age(&self, now: Millis) -> u32 {
        now.wrapping_sub(self.behaviour.last_seen())
    }
}

/// A subnet's limiter cells. 16 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubnetRecord {
    /// GCRA cell for page views.
    pub tat_pages: Millis,
    /// GCRA cell for images no page view vouches for.
    pub tat_images: Millis,
    /// GCRA cell for vouched images.
    pub tat_vouched: Millis,
    last_ms: Millis,
}

/// Storage for per-client and per-subnet state, shared by every clone of a layer and kept
/// across policy reloads. Keys are seeded 64-bit fingerprints of client, visitor and subnet
/// identities. The in-process [`MemoryStore`] is the default; a shared store (Redis) for
/// fleets implements the same trait.
pub trait StateStore: Send + Sync + fmt::Debug + 'static {
    /// Runs `f` on the client's record, made fresh (`true` as second argument) when missing.
    /// When `f` returns `false` for a fresh record, the record is dropped. `cap` bounds the
    /// number of client records. Returns whether a record was kept.
    fn client(
        &self,
        key: u64,
        now: Millis,
        cap: usize,
        f: &mut dyn FnMut(&mut ClientRecord, bool) -> bool,
    ) -> bool;

    /// Runs `f` on the subnet's record, made fresh when missing.
    fn subnet(&self, key: u64, now: Millis, cap: usize, f: &mut dyn FnMut(&mut SubnetRecord));

    /// Client records held now.
    fn tracked_clients(&self) -> usize;

    /// Records evicted to stay under the cap, since start.
    fn evictions(&self) -> u64;

    /// Drops what carries no information any more: clients unseen for `idle_ms` (unless
    /// trap-marked) and subnets whose limiters are full again.
    fn retain_recent(&self, now: Millis, idle_ms: u32);

    /// Gives memory back after [`retain_recent`](StateStore::retain_recent).
    fn shrink_to_fit(&self);
}

const SHARDS: usize = 64;

/// Keys are already seeded hashes: the map uses them as they are.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Shard<V> = Mutex<HashMap<u64, V, BuildHasherDefault<KeyHasher>>>;

/// hashbrown indexes buckets by the low bits and tags them by the top seven, so shards are
/// chosen by bits in between.
fn shard_of(key: u64) -> usize {
    ((key >> 40) as usize) & (SHARDS - 1)
}

/// The in-process store.
pub struct MemoryStore {
    clients: Box<[Shard<ClientRecord>]>,
    subnets: Box<[Shard<SubnetRecord>]>,
    tracked: AtomicUsize,
    evictions: AtomicU64,
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("tracked_clients", &self.tracked_clients())
            .field("evictions", &self.evictions())
            .finish()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore {
            clients: (0..SHARDS).map(|_| Shard::default()).collect(),
            subnets: (0..SHARDS).map(|_| Shard::default()).collect(),
            tracked: AtomicUsize::new(0),
            evictions: AtomicU64::new(0),
        }
    }
}

fn lock<V>(
    shard: &Shard<V>,
) -> std::sync::MutexGuard<'_, HashMap<u64, V, BuildHasherDefault<KeyHasher>>> {
    // A panic while holding a shard leaves plain data behind: keep using it.
    shard
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Removes the stalest eighth of a full shard; returns how many went.
fn evict_stalest<V>(
    map: &mut HashMap<u64, V, BuildHasherDefault<KeyHasher>>,
    age: impl Fn(&V) -> u32,
) -> usize {
    let mut ages: Vec<u32> = map.values().map(&age).collect();
    let n = (ages.len() / 8).max(1);
    let (_, threshold, _) = ages.select_nth_unstable_by(n - 1, |a, b| b.cmp(a));
    let threshold = *threshold;
    let before = map.len();
    let mut left = n;
    map.retain(|_, v| {
        if left > 0 && age(v) >= threshold {
            left -= 1;
            false
        } else {
            true
        }
    });
    before - map.len()
}

impl StateStore for MemoryStore {
    fn client(
        &self,
        key: u64,
        now: Millis,
        cap: usize,
        f: &mut dyn FnMut(&mut ClientRecord, bool) -> bool,
    ) -> bool {
        let mut map = lock(&self.clients[shard_of(key)]);
        if let Some(record) = map.get_mut(&key) {
            f(record, false);
            return true;
        }
        let mut record = ClientRecord::new(now);
        if !f(&mut record, true) {
            return false;
        }
        let shard_cap = (cap / SHARDS).max(1);
        if map.len() >= shard_cap {
            let gone = evict_stalest(&mut map, |r| r.age(now));
            self.tracked.fetch_sub(gone, Ordering::Relaxed);
            self.evictions.fetch_add(gone as u64, Ordering::Relaxed);
        }
        map.insert(key, record);
        self.tracked.fetch_add(1, Ordering::Relaxed);
        true
    }

    fn subnet(&self, key: u64, now: Millis, cap: usize, f: &mut dyn FnMut(&mut SubnetRecord)) {
        let mut map = lock(&self.subnets[shard_of(key)]);
        if let Some(record) = map.get_mut(&key) {
            record.last_ms = now;
            f(record);
            return;
        }
        let shard_cap = (cap / SHARDS).max(1);
        if map.len() >= shard_cap {
            evict_stalest(&mut map, |r| now.wrapping_sub(r.last_ms));
        }
        let mut record = SubnetRecord {
            last_ms: now,
            ..SubnetRecord::default()
        };
        f(&mut record);
        map.insert(key, record);
    }

    fn tracked_clients(&self) -> usize {
        self.tracked.load(Ordering::Relaxed)
    }

    fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    fn retain_recent(&self, now: Millis, idle_ms: u32) {
        for shard in self.clients.iter() {
            let mut map = lock(shard);
            let before = map.len();
            map.retain(|_, r| r.age(now) < idle_ms || r.behaviour.trap_marked(now));
            self.tracked
                .fetch_sub(before - map.len(), Ordering::Relaxed);
        }
        for shard in self.subnets.iter() {
            lock(shard).retain(|_, r| {
                now.wrapping_sub(r.last_ms) < idle_ms
                    || !(is_idle(r.tat_pages, now)
                        && is_idle(r.tat_images, now)
                        && is_idle(r.tat_vouched, now))
            });
        }
    }

    fn shrink_to_fit(&self) {
        for shard in self.clients.iter() {
            lock(shard).shrink_to_fit();
        }
        for shard in self.subnets.iter() {
            lock(shard).shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_fit_the_memory_budget() {
        assert_eq!(std::mem::size_of::<ClientRecord>(), 72);
        assert_eq!(std::mem::size_of::<(u64, ClientRecord)>(), 80);
        assert_eq!(std::mem::size_of::<(u64, SubnetRecord)>(), 24);
    }

    #[test]
    fn the_cap_holds_and_the_stalest_go_first() {
        let store = MemoryStore::default();
        let cap = 1024;
        let hash = |i: u64| foldhash::fast::FixedState::with_seed(1).hash_one(i);
        use std::hash::BuildHasher;
        for i in 0..20_000u64 {
            store.client(hash(i), i as u32 + 1, cap, &mut |_, _| true);
            assert!(store.tracked_clients() <= cap);
        }
        assert!(store.evictions() >= 20_000 - cap as u64);
        // The most recent clients are still there.
        let mut fresh = false;
        store.client(hash(19_999), 20_001, cap, &mut |_, new| {
            fresh = new;
            true
        });
        assert!(!fresh);
        store.retain_recent(20_001 + 600_000, 600_000);
        assert_eq!(store.tracked_clients(), 0);
        store.shrink_to_fit();
    }

    #[test]
    fn a_refused_fresh_record_is_not_kept() {
        let store = MemoryStore::default();
        assert!(!store.client(7, 1, 100, &mut |_, _| false));
        assert_eq!(store.tracked_clients(), 0);
    }
}
