//! Where limiter and tracker state lives: the [`StateStore`] trait and the in-process default.
//!
//! One entry per client holds its tracker and its limiter cells, so a request costs one map
//! lookup per key (the client, then its subnet). The in-process store is 64 mutex-guarded
//! tables keyed by a seeded 64-bit fingerprint, each bounded to its share of
//! `max_tracked_clients`: inserting into a full shard first evicts its stalest eighth.
//!
//! A shard keeps its records side by side in a vector that grows at most to its share of the
//! cap, found through a hash index of 4-byte positions (`Table`): a hash map of whole
//! records sits at a load of 0.44–0.88 (a million clients in 64 shards: 0.48), so it would
//! cost each record twice its size.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::distinct::DistinctPhotos;
use super::rate::{Millis, is_idle};
use crate::signals::behaviour::{BEHAVIOUR_BYTES, Behaviour};

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

/// Leading little-endian `u32` GCRA cells of an encoded [`ClientRecord`]: a shared store
/// merges concurrent writes by adding up what each charged to them.
pub const CLIENT_CELLS: usize = 5;

/// Leading `u32` GCRA cells of an encoded [`SubnetRecord`].
pub const SUBNET_CELLS: usize = 3;

/// Bytes of an encoded [`ClientRecord`]: its five cells, then its tracker (whose trap mark
/// comes first, at byte 20), then the address's visitor set and the visitor's first page.
pub const CLIENT_BYTES: usize = 4 * CLIENT_CELLS + BEHAVIOUR_BYTES + 8;

/// Bytes of an encoded [`SubnetRecord`]: its three cells, then when it was last seen.
pub const SUBNET_BYTES: usize = 4 * SUBNET_CELLS + 4;

// === impl ClientRecord, SubnetRecord: the one encoding (a shared store's wire form) ===

impl ClientRecord {
    /// The record as bytes: a new field is one line here and one in [`decode`](Self::decode).
    pub fn encode(&self) -> [u8; CLIENT_BYTES] {
        let mut out = [0u8; CLIENT_BYTES];
        put_cells(
            &mut out,
            [
                self.tat_pages,
                self.tat_pace,
                self.tat_images,
                self.tat_address_pages,
                self.tat_address_photos,
            ],
        );
        let tracker = 4 * CLIENT_CELLS;
        let tail = tracker + BEHAVIOUR_BYTES;
        out[tracker..tail].copy_from_slice(&self.behaviour.encode());
        out[tail..tail + 4].copy_from_slice(&self.members.to_le_bytes());
        out[tail + 4..].copy_from_slice(&self.first_page.to_le_bytes());
        out
    }

    /// The record [`encode`](Self::encode) wrote; `None` for bytes of another length (a
    /// record written by another version).
    pub fn decode(bytes: &[u8]) -> Option<ClientRecord> {
        let bytes: &[u8; CLIENT_BYTES] = bytes.try_into().ok()?;
        let [
            tat_pages,
            tat_pace,
            tat_images,
            tat_address_pages,
            tat_address_photos,
        ] = cells(bytes);
        let tracker = 4 * CLIENT_CELLS;
        let tail = tracker + BEHAVIOUR_BYTES;
        let behaviour = Behaviour::decode(bytes[tracker..tail].try_into().ok()?);
        let word = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        Some(ClientRecord {
            tat_pages,
            tat_pace,
            tat_images,
            behaviour,
            tat_address_pages,
            tat_address_photos,
            members: word(tail),
            first_page: word(tail + 4),
        })
    }
}

impl SubnetRecord {
    /// The record as bytes.
    pub fn encode(&self) -> [u8; SUBNET_BYTES] {
        let mut out = [0u8; SUBNET_BYTES];
        put_cells(
            &mut out,
            [self.tat_pages, self.tat_images, self.tat_vouched],
        );
        out[4 * SUBNET_CELLS..].copy_from_slice(&self.last_ms.to_le_bytes());
        out
    }

    /// The record [`encode`](Self::encode) wrote; `None` for bytes of another length.
    pub fn decode(bytes: &[u8]) -> Option<SubnetRecord> {
        let bytes: &[u8; SUBNET_BYTES] = bytes.try_into().ok()?;
        let [tat_pages, tat_images, tat_vouched] = cells(bytes);
        Some(SubnetRecord {
            tat_pages,
            tat_images,
            tat_vouched,
            last_ms: u32::from_le_bytes(bytes[4 * SUBNET_CELLS..].try_into().ok()?),
        })
    }
}

fn put_cells<const N: usize>(out: &mut [u8], cells: [Millis; N]) {
    for (chunk, cell) in out.chunks_exact_mut(4).zip(cells) {
        chunk.copy_from_slice(&cell.to_le_bytes());
    }
}

fn cells<const N: usize>(bytes: &[u8]) -> [Millis; N] {
    let mut out = [0; N];
    for (cell, chunk) in out.iter_mut().zip(bytes.chunks_exact(4)) {
        *cell = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
    out
}

/// The records one request reads: its address's, its visitor's (when it holds a valid
/// cookie), its pass holder's (when it carries a valid pass) and its subnet's, by store key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordKeys {
    /// The address's client record.
    pub client: u64,
    /// The cookie visitor's client record.
    pub visitor: Option<u64>,
    /// The pass holder's client record.
    pub pass: Option<u64>,
    /// The subnet's record.
    pub subnet: u64,
    /// The records in the subnets' map that count the way-through passes held on the
    /// address and on the subnet (a cookieless crowd is read from the address's).
    pub pass_counts: [u64; 2],
    /// The site's one shared client record (the `unrendered_images` budget every
    /// non-rendering client draws on).
    pub site: u64,
}

/// What a shared store's [`prefetch`](StateStore::prefetch) returns: resolves once the
/// request's records are at hand (or the store gave up waiting for them).
pub type Prefetching = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

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

    /// Runs `f` on the site's GCRA cell for images no page view vouches for.
    fn site(&self, now: Millis, f: &mut dyn FnMut(&mut Millis));

    /// Runs `f` on the record of the distinct photos served to the address whose client
    /// record is `key` (`None` when it has none; a record `f` leaves is kept). `cap` bounds
    /// the number of such records.
    fn distinct(
        &self,
        key: u64,
        now: Millis,
        cap: usize,
        f: &mut dyn FnMut(&mut Option<DistinctPhotos>),
    );

    /// Whether the store is shared with other instances: each request then awaits
    /// [`prefetch`](StateStore::prefetch) before it is decided.
    fn shared(&self) -> bool {
        false
    }

    /// Brings the records of one request close, so that the synchronous calls above find
    /// them: `None` when there is nothing to wait for (the in-process store).
    fn prefetch(&self, keys: RecordKeys) -> Option<Prefetching> {
        let _ = keys;
        None
    }

    /// The seed every instance sharing this store hashes identities into keys with, once
    /// known (a shared store learns it from the other instances).
    fn key_seed(&self) -> Option<Arc<AtomicU64>> {
        None
    }

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

/// At most one record of distinct photos (2 KiB) for this many client records (a million
/// clients: 15,625 crowds, 32 MiB).
const DISTINCT_SHARE: usize = 64;

/// One shard's records, dense: `keys[i]` and `values[i]` belong together, and `index` holds
/// each record's position, hashed by its key (keys are already seeded hashes: used as they
/// are). The vectors grow by doubling, never past the shard's share of the cap.
struct Table<V> {
    index: hashbrown::HashTable<u32>,
    keys: Vec<u64>,
    values: Vec<V>,
}

impl<V> Default for Table<V> {
    fn default() -> Self {
        Table {
            index: hashbrown::HashTable::new(),
            keys: Vec::new(),
            values: Vec::new(),
        }
    }
}

impl<V> Table<V> {
    fn len(&self) -> usize {
        self.values.len()
    }

    fn get_mut(&mut self, key: u64) -> Option<&mut V> {
        let keys = &self.keys;
        let at = *self.index.find(key, |&at| keys[at as usize] == key)?;
        self.values.get_mut(at as usize)
    }

    /// Adds a record for a key the table does not hold; `cap` bounds the vectors' growth.
    fn insert_new(&mut self, key: u64, value: V, cap: usize) {
        let len = self.len();
        if len == self.values.capacity() {
            let more = len.max(4).min(cap.saturating_sub(len)).max(1);
            self.values.reserve_exact(more);
            self.keys.reserve_exact(more);
        }
        let at = u32::try_from(len).expect("a shard holds fewer than 2^32 records");
        self.keys.push(key);
        self.values.push(value);
        let keys = &self.keys;
        self.index.insert_unique(key, at, |&at| keys[at as usize]);
    }

    /// Removes the record at `at`; the last record takes its place.
    fn remove_at(&mut self, at: usize) {
        let last = self.len() - 1;
        let keys = &self.keys;
        let (gone, moved) = (keys[at], keys[last]);
        if let Ok(entry) = self.index.find_entry(gone, |&i| i as usize == at) {
            entry.remove();
        }
        if at != last
            && let Some(position) = self.index.find_mut(moved, |&i| i as usize == last)
        {
            *position = at as u32;
        }
        self.keys.swap_remove(at);
        self.values.swap_remove(at);
    }

    /// Keeps the records `keep` says yes to; returns how many went.
    fn retain(&mut self, mut keep: impl FnMut(&V) -> bool) -> usize {
        let before = self.len();
        let mut at = 0;
        while at < self.len() {
            if keep(&self.values[at]) {
                at += 1;
            } else {
                self.remove_at(at);
            }
        }
        before - self.len()
    }

    fn shrink_to_fit(&mut self) {
        let keys = &self.keys;
        self.index.shrink_to_fit(|&at| keys[at as usize]);
        self.keys.shrink_to_fit();
        self.values.shrink_to_fit();
    }
}

type Shard<V> = Mutex<Table<V>>;

/// hashbrown indexes buckets by the low bits and tags them by the top seven, so shards are
/// chosen by bits in between.
fn shard_of(key: u64) -> usize {
    ((key >> 40) as usize) & (SHARDS - 1)
}

/// A shard's share of `cap` records.
fn shard_cap(cap: usize) -> usize {
    (cap / SHARDS).clamp(1, u32::MAX as usize)
}

/// The in-process store.
pub struct MemoryStore {
    clients: Box<[Shard<ClientRecord>]>,
    subnets: Box<[Shard<SubnetRecord>]>,
    /// Addresses with more than one established visitor: the photos served to them.
    distincts: Box<[Shard<DistinctPhotos>]>,
    site_images: Mutex<Millis>,
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
            distincts: (0..SHARDS).map(|_| Shard::default()).collect(),
            site_images: Mutex::new(0),
            tracked: AtomicUsize::new(0),
            evictions: AtomicU64::new(0),
        }
    }
}

fn lock<V>(shard: &Shard<V>) -> std::sync::MutexGuard<'_, Table<V>> {
    // A panic while holding a shard leaves plain data behind: keep using it.
    shard
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Removes the stalest eighth of a full shard; returns how many went.
fn evict_stalest<V>(table: &mut Table<V>, age: impl Fn(&V) -> u32) -> usize {
    let mut ages: Vec<u32> = table.values.iter().map(&age).collect();
    let n = (ages.len() / 8).max(1);
    let (_, threshold, _) = ages.select_nth_unstable_by(n - 1, |a, b| b.cmp(a));
    let threshold = *threshold;
    let mut left = n;
    table.retain(|v| {
        if left > 0 && age(v) >= threshold {
            left -= 1;
            false
        } else {
            true
        }
    })
}

impl MemoryStore {
    #[cfg(feature = "cli")]
    /// Puts `record` in place of the client's (a shared store's copy, just loaded).
    pub(crate) fn put_client(&self, key: u64, now: Millis, cap: usize, record: ClientRecord) {
        let mut put = Some(record);
        self.client(key, now, cap, &mut |held, _| {
            if let Some(record) = put.take() {
                *held = record;
            }
            true
        });
    }

    #[cfg(feature = "cli")]
    /// Puts `record` in place of the subnet's.
    pub(crate) fn put_subnet(&self, key: u64, now: Millis, cap: usize, record: SubnetRecord) {
        self.subnet(key, now, cap, &mut |held| *held = record);
    }

    #[cfg(feature = "cli")]
    /// Puts `record` in place of the address's distinct photos.
    pub(crate) fn put_distinct(&self, key: u64, now: Millis, cap: usize, record: DistinctPhotos) {
        self.distinct(key, now, cap, &mut |held| *held = Some(record));
    }
}

impl StateStore for MemoryStore {
    fn client(
        &self,
        key: u64,
        now: Millis,
        cap: usize,
        f: &mut dyn FnMut(&mut ClientRecord, bool) -> bool,
    ) -> bool {
        let mut table = lock(&self.clients[shard_of(key)]);
        if let Some(record) = table.get_mut(key) {
            f(record, false);
            return true;
        }
        let mut record = ClientRecord::new(now);
        if !f(&mut record, true) {
            return false;
        }
        let shard_cap = shard_cap(cap);
        if table.len() >= shard_cap {
            let gone = evict_stalest(&mut table, |r| r.age(now));
            self.tracked.fetch_sub(gone, Ordering::Relaxed);
            self.evictions.fetch_add(gone as u64, Ordering::Relaxed);
        }
        table.insert_new(key, record, shard_cap);
        self.tracked.fetch_add(1, Ordering::Relaxed);
        true
    }

    fn subnet(&self, key: u64, now: Millis, cap: usize, f: &mut dyn FnMut(&mut SubnetRecord)) {
        let mut table = lock(&self.subnets[shard_of(key)]);
        if let Some(record) = table.get_mut(key) {
            record.last_ms = now;
            f(record);
            return;
        }
        let shard_cap = shard_cap(cap);
        if table.len() >= shard_cap {
            evict_stalest(&mut table, |r| now.wrapping_sub(r.last_ms));
        }
        let mut record = SubnetRecord {
            last_ms: now,
            ..SubnetRecord::default()
        };
        f(&mut record);
        table.insert_new(key, record, shard_cap);
    }

    fn site(&self, now: Millis, f: &mut dyn FnMut(&mut Millis)) {
        let _ = now;
        f(&mut self
            .site_images
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()));
    }

    fn distinct(
        &self,
        key: u64,
        now: Millis,
        cap: usize,
        f: &mut dyn FnMut(&mut Option<DistinctPhotos>),
    ) {
        let mut table = lock(&self.distincts[shard_of(key)]);
        if let Some(record) = table.get_mut(key) {
            let mut slot = Some(*record);
            f(&mut slot);
            if let Some(changed) = slot {
                *record = changed;
            }
            return;
        }
        let mut slot = None;
        f(&mut slot);
        let Some(record) = slot else { return };
        let shard_cap = shard_cap((cap / DISTINCT_SHARE).max(SHARDS));
        if table.len() >= shard_cap {
            evict_stalest(&mut table, |r| now.wrapping_sub(r.last_seen()));
        }
        table.insert_new(key, record, shard_cap);
    }

    fn tracked_clients(&self) -> usize {
        self.tracked.load(Ordering::Relaxed)
    }

    fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    fn retain_recent(&self, now: Millis, idle_ms: u32) {
        for shard in self.clients.iter() {
            // An address's budgets outlive its idle client: a pause must not refill them.
            let gone = lock(shard).retain(|r| {
                r.age(now) < idle_ms
                    || r.behaviour.trap_marked(now)
                    || !(is_idle(r.tat_address_pages, now) && is_idle(r.tat_address_photos, now))
            });
            self.tracked.fetch_sub(gone, Ordering::Relaxed);
        }
        for shard in self.subnets.iter() {
            lock(shard).retain(|r| {
                now.wrapping_sub(r.last_ms) < idle_ms
                    || !(is_idle(r.tat_pages, now)
                        && is_idle(r.tat_images, now)
                        && is_idle(r.tat_vouched, now))
            });
        }
        for shard in self.distincts.iter() {
            lock(shard).retain(|r| !r.idle(now, idle_ms));
        }
    }

    fn shrink_to_fit(&self) {
        for shard in self.clients.iter() {
            lock(shard).shrink_to_fit();
        }
        for shard in self.subnets.iter() {
            lock(shard).shrink_to_fit();
        }
        for shard in self.distincts.iter() {
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
        assert_eq!(std::mem::size_of::<SubnetRecord>(), 16);
    }

    #[test]
    fn a_full_shard_holds_its_share_exactly() {
        let mut table = Table::default();
        for key in 0..1000u64 {
            table.insert_new(key << 20, key as u32, 1000);
        }
        assert_eq!(table.values.capacity(), 1000);
        assert_eq!(table.keys.capacity(), 1000);
    }

    #[test]
    fn removed_records_leave_the_others_findable() {
        let mut table = Table::default();
        let key = |i: u64| i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for i in 0..5000u64 {
            table.insert_new(key(i), i, 5000);
        }
        // Drop every third record, then the first, then the last.
        assert_eq!(table.retain(|&v| v % 3 != 0), 1667);
        for i in 0..5000u64 {
            assert_eq!(
                table.get_mut(key(i)).copied(),
                (i % 3 != 0).then_some(i),
                "{i}"
            );
        }
        table.remove_at(0);
        table.remove_at(table.len() - 1);
        assert_eq!(table.len(), 3331);
        let held: Vec<u64> = table.values.clone();
        for v in held {
            assert_eq!(table.get_mut(key(v)).copied(), Some(v));
        }
        table.shrink_to_fit();
        assert_eq!(table.values.capacity(), 3331);
        assert_eq!(table.get_mut(key(0)), None);
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
    fn records_come_back_from_their_encoding() {
        let store = MemoryStore::default();
        let mut seen = ClientRecord::default();
        store.client(9, 1234, 100, &mut |record, _| {
            record.tat_pages = 7;
            record.tat_pace = 0xdead_beef;
            record.tat_images = 9;
            record.tat_address_pages = 11;
            record.tat_address_photos = 13;
            record.members = 0x3000_0005;
            record.first_page = 1200;
            record.behaviour.mark_trap(1234, 60_000);
            seen = *record;
            true
        });
        assert_eq!(ClientRecord::decode(&seen.encode()), Some(seen));
        assert_eq!(&seen.encode()[..4], &7u32.to_le_bytes());
        // Every cell a shared store merges by adding charges leads the encoding.
        assert_eq!(&seen.encode()[16..20], &13u32.to_le_bytes());
        assert_eq!(ClientRecord::decode(&seen.encode()[1..]), None);
        let subnet = SubnetRecord {
            tat_pages: 1,
            tat_images: 2,
            tat_vouched: 3,
            last_ms: 4,
        };
        assert_eq!(SubnetRecord::decode(&subnet.encode()), Some(subnet));
    }

    #[test]
    fn a_refused_fresh_record_is_not_kept() {
        let store = MemoryStore::default();
        assert!(!store.client(7, 1, 100, &mut |_, _| false));
        assert_eq!(store.tracked_clients(), 0);
    }
}
