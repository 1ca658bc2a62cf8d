//! What a User-Agent says, worked out once per distinct User-Agent.
//!
//! Reading a User-Agent (the catalog automaton, the browser markers, the crawler words) was
//! most of what an allowed request cost, and a site's visitors send few distinct User-Agents,
//! each on every request. So the reading is kept in a table of sets of two entries, the set
//! chosen by a seeded hash of the bytes. An entry holds the bytes themselves: a collision
//! pushes an entry out but can never lend one User-Agent another's reading. The table belongs
//! to the compiled policy, so a reload (a new catalog) starts from an empty one.
//!
//! Its size: a day's log of a photo site carries thousands of distinct User-Agents (the replay
//! corpus of `scripts/replay-corpus.py`, 11,899 in 1,000,000 lines); over its first 100,000
//! lines a table of 512 read 59 % of them afresh, this one 11 %. An entry takes about 250
//! bytes with a browser's User-Agent: full, about 4 MB (at most 16,384 of [`MAX_KEPT`] bytes).

use std::hash::BuildHasher;
use std::sync::Arc;

use arc_swap::ArcSwapOption;

use super::BrowserUa;

/// Entries in the table (a power of two).
const SLOTS: usize = 16_384;

/// Entries in one set, side by side: a new reading goes first and pushes the oldest out.
const WAYS: usize = 2;

/// Longer User-Agents are read every time rather than kept (browsers send about 150 bytes).
const MAX_KEPT: usize = 512;

/// What one User-Agent says, independent of the rest of the request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct UserAgent {
    /// The catalog agent it names (index into [`Catalog::agents`](crate::catalog::Catalog::agents)).
    pub(crate) agent: Option<u32>,
    /// What it claims as a browser.
    pub(crate) browser: BrowserUa,
    /// Crawler words or a bot URL in it.
    pub(crate) bot_like: bool,
}

struct Entry {
    bytes: Box<[u8]>,
    reading: UserAgent,
}

/// The table of User-Agents read so far.
pub(crate) struct UserAgentCache {
    slots: Box<[ArcSwapOption<Entry>]>,
    hasher: foldhash::fast::RandomState,
}

impl std::fmt::Debug for UserAgentCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserAgentCache").finish_non_exhaustive()
    }
}

impl Default for UserAgentCache {
    fn default() -> Self {
        UserAgentCache {
            slots: (0..SLOTS).map(|_| ArcSwapOption::empty()).collect(),
            // Seeded per process: nobody can aim User-Agents at a popular one's slot.
            hasher: foldhash::fast::RandomState::default(),
        }
    }
}

impl UserAgentCache {
    /// The reading of `ua`: kept from an earlier request, or made by `read` and kept.
    pub(crate) fn get_or_read(
        &self,
        ua: &[u8],
        read: impl FnOnce(&[u8]) -> UserAgent,
    ) -> UserAgent {
        if ua.len() > MAX_KEPT {
            return read(ua);
        }
        let set = self.hasher.hash_one(ua) as usize & (SLOTS / WAYS - 1);
        let set = &self.slots[set * WAYS..][..WAYS];
        for slot in set {
            if let Some(entry) = &*slot.load()
                && *entry.bytes == *ua
            {
                return entry.reading;
            }
        }
        let reading = read(ua);
        let mut moved = Some(Arc::new(Entry {
            bytes: ua.into(),
            reading,
        }));
        for slot in set {
            moved = slot.swap(moved);
            if moved.is_none() {
                break;
            }
        }
        reading
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reading_is_made_once_and_only_for_the_same_bytes() {
        let cache = UserAgentCache::default();
        let mut reads = 0;
        let mut get = |ua: &[u8]| {
            cache.get_or_read(ua, |ua| {
                reads += 1;
                UserAgent {
                    agent: Some(ua.len() as u32),
                    ..UserAgent::default()
                }
            })
        };
        assert_eq!(get(b"Mozilla/5.0 a").agent, Some(13));
        assert_eq!(get(b"Mozilla/5.0 a").agent, Some(13));
        assert_eq!(get(b"curl/8").agent, Some(6));
        let long = vec![b'x'; MAX_KEPT + 1];
        get(&long);
        get(&long);
        assert_eq!(reads, 4);
    }

    #[test]
    fn a_set_keeps_its_two_newest_readings() {
        let cache = UserAgentCache::default();
        let set_of = |ua: &str| cache.hasher.hash_one(ua.as_bytes()) as usize & (SLOTS / WAYS - 1);
        // Three User-Agents of one set.
        let same: Vec<String> = (0..)
            .map(|i| format!("agent {i}"))
            .filter(|ua| set_of(ua) == set_of("agent 0"))
            .take(3)
            .collect();
        let mut read = Vec::new();
        let mut get = |ua: &str| {
            cache.get_or_read(ua.as_bytes(), |_| {
                read.push(ua.to_owned());
                UserAgent::default()
            });
        };
        for i in [0, 1, 0, 1, 2, 1, 0] {
            get(&same[i]);
        }
        // The third pushed the oldest (the first) out; the second stayed.
        assert_eq!(read, [0, 1, 2, 0].map(|i| same[i].clone()));
    }

    #[test]
    fn colliding_user_agents_never_share_a_reading() {
        let cache = UserAgentCache::default();
        // More distinct User-Agents than slots: many share a slot.
        for round in 0..2 {
            for i in 0..(SLOTS as u32 * 4) {
                let ua = format!("agent {i}");
                let got = cache.get_or_read(ua.as_bytes(), |_| UserAgent {
                    agent: Some(i),
                    ..UserAgent::default()
                });
                assert_eq!(got.agent, Some(i), "round {round}");
            }
        }
    }
}
