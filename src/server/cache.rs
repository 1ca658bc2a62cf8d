//! The one byte-budgeted map behind the server's in-memory caches (small files, stamped
//! images): entries cost bytes, and inserting past the budget evicts arbitrary entries.
//! Arbitrary is enough: a gallery's working set fits, and an attacker walking many paths
//! only churns the cache, never grows it.

use std::collections::HashMap;
use std::hash::Hash;

/// Most bytes each cache holds.
pub(crate) const MAX_TOTAL_BYTES: u64 = 64 * 1024 * 1024;

/// What an entry costs against the budget.
pub(crate) trait Cost {
    fn cost(&self) -> u64;
}

/// A map kept under [`MAX_TOTAL_BYTES`].
pub(crate) struct Budgeted<K, V> {
    pub(crate) by_path: HashMap<K, V>,
    pub(crate) total: u64,
}

impl<K, V> Default for Budgeted<K, V> {
    fn default() -> Self {
        Budgeted {
            by_path: HashMap::new(),
            total: 0,
        }
    }
}

impl<K: Hash + Eq + Clone, V: Cost> Budgeted<K, V> {
    /// Keeps `value` under `key`, evicting others until it fits; a value larger than the
    /// whole budget is not kept.
    pub(crate) fn insert(&mut self, key: K, value: V) {
        let cost = value.cost();
        if cost > MAX_TOTAL_BYTES {
            return;
        }
        if let Some(old) = self.by_path.remove(&key) {
            self.total -= old.cost();
        }
        while self.total + cost > MAX_TOTAL_BYTES {
            let Some(victim) = self.by_path.keys().next().cloned() else {
                break;
            };
            if let Some(old) = self.by_path.remove(&victim) {
                self.total -= old.cost();
            }
        }
        self.total += cost;
        self.by_path.insert(key, value);
    }
}
