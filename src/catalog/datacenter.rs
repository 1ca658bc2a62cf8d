//! Published cloud and hosting address ranges: where servers live, not people.
//!
//! A request from a cloud or hosting address is usually a program (a crawler rented by the
//! hour), sometimes a person behind a VPN or a corporate egress. The table says which
//! provider an address belongs to; the signals built on it weigh that lightly on its own
//! (`datacenter`) and heavily next to image harvesting without page views
//! (`datacenter-images`).
//!
//! The embedded list is `config/ranges/datacenter.json`, rebuilt by
//! `scripts/refresh-datacenter-ranges.py`; `[ranges] datacenter = "path"` replaces it.
//!
//! ```
//! use lenscap::catalog::datacenter::DatacenterRanges;
//!
//! let ranges = DatacenterRanges::parse(
//!     "example",
//!     r#"{"providers": {"aws": {"name": "Amazon Web Services", "prefixes": ["3.0.0.0/15"]}}}"#,
//! )
//! .unwrap();
//! assert_eq!(ranges.provider("3.1.2.3".parse().unwrap()), Some("aws"));
//! assert_eq!(ranges.provider("192.0.2.1".parse().unwrap()), None);
//! ```

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, LazyLock};

use ip_network::IpNetwork;
use ip_network_table::IpNetworkTable;
use serde::Deserialize;

use super::ranges::RangesError;

/// The embedded list (`config/ranges/datacenter.json`).
pub const EMBEDDED_DATACENTER: &str = include_str!("../../config/ranges/datacenter.json");

static EMBEDDED: LazyLock<Result<Arc<DatacenterRanges>, String>> = LazyLock::new(|| {
    DatacenterRanges::parse("datacenter", EMBEDDED_DATACENTER)
        .map(Arc::new)
        .map_err(|e| e.to_string())
});

#[derive(Deserialize)]
struct DatacenterFile {
    providers: BTreeMap<String, ProviderEntry>,
}

#[derive(Deserialize)]
struct ProviderEntry {
    #[serde(default)]
    published: Option<String>,
    prefixes: Vec<String>,
}

/// Which provider each cloud or hosting prefix belongs to, compiled once.
pub struct DatacenterRanges {
    /// Every prefix, longest match first (IPv6, and the source of `v4`).
    table: IpNetworkTable<u8>,
    /// IPv4 flattened into sorted, disjoint `(first, last, provider)` runs: a binary search
    /// costs a fraction of the prefix trie's walk, and it runs on every request.
    v4: Vec<(u32, u32, u8)>,
    /// Provider keys (`aws`, `azure`, …) by index, and when each list was published.
    providers: Vec<(String, Option<String>)>,
    len: usize,
}

impl std::fmt::Debug for DatacenterRanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatacenterRanges")
            .field("providers", &self.providers.len())
            .field("prefixes", &self.len)
            .finish()
    }
}

impl DatacenterRanges {
    /// The embedded list, parsed once per process and shared.
    pub fn embedded() -> Result<Arc<DatacenterRanges>, RangesError> {
        EMBEDDED.clone().map_err(|message| RangesError::Json {
            name: "datacenter".into(),
            message,
        })
    }

    /// Reads a list in the embedded file's shape from `path`.
    pub fn load(path: &Path) -> Result<DatacenterRanges, RangesError> {
        let json = std::fs::read_to_string(path).map_err(|source| RangesError::Io {
            name: "datacenter".into(),
            path: path.display().to_string(),
            source,
        })?;
        DatacenterRanges::parse("datacenter", &json)
    }

    /// Parses `{"providers": {"<key>": {"prefixes": ["a.b.c.d/n", …]}, …}}`.
    pub fn parse(name: &str, json: &str) -> Result<DatacenterRanges, RangesError> {
        let file: DatacenterFile = serde_json::from_str(json).map_err(|e| RangesError::Json {
            name: name.to_owned(),
            message: e.to_string(),
        })?;
        if file.providers.len() > usize::from(u8::MAX) {
            return Err(RangesError::Json {
                name: name.to_owned(),
                message: format!("{} providers; at most 255", file.providers.len()),
            });
        }
        let mut table = IpNetworkTable::new();
        let mut providers = Vec::with_capacity(file.providers.len());
        let mut len = 0;
        for (index, (key, entry)) in file.providers.into_iter().enumerate() {
            for text in &entry.prefixes {
                let network = network(text).ok_or_else(|| RangesError::Prefix {
                    name: format!("{name} ({key})"),
                    prefix: text.clone(),
                })?;
                table.insert(network, index as u8);
                len += 1;
            }
            providers.push((key, entry.published));
        }
        Ok(DatacenterRanges {
            v4: flatten_v4(&table),
            table,
            providers,
            len,
        })
    }

    /// The provider key (`aws`, `hetzner`, …) of the prefix holding `ip`.
    pub fn provider(&self, ip: IpAddr) -> Option<&str> {
        self.provider_index(ip)
            .map(|i| self.providers[usize::from(i)].0.as_str())
    }

    /// The index of the provider holding `ip` (for [`provider_name`](Self::provider_name)).
    pub fn provider_index(&self, ip: IpAddr) -> Option<u8> {
        match ip.to_canonical() {
            IpAddr::V4(v4) => {
                let ip = u32::from(v4);
                let at = self.v4.partition_point(|&(first, _, _)| first <= ip);
                let &(_, last, provider) = self.v4.get(at.checked_sub(1)?)?;
                (ip <= last).then_some(provider)
            }
            ip => self.table.longest_match(ip).map(|(_, &index)| index),
        }
    }

    /// The key of provider `index`.
    pub fn provider_name(&self, index: u8) -> Option<&str> {
        self.providers.get(usize::from(index)).map(|p| p.0.as_str())
    }

    /// Every provider key with the date its list was published, when known.
    pub fn providers(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.providers
            .iter()
            .map(|(key, published)| (key.as_str(), published.as_deref()))
    }

    /// Number of prefixes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no prefixes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The IPv4 part of `table` as sorted, disjoint runs with the provider its longest match
/// gives: between two consecutive prefix boundaries the longest match cannot change.
fn flatten_v4(table: &IpNetworkTable<u8>) -> Vec<(u32, u32, u8)> {
    let mut boundaries: Vec<u64> = table
        .iter()
        .filter_map(|(network, _)| match network {
            IpNetwork::V4(v4) => {
                let first = u64::from(u32::from(v4.network_address()));
                let size = 1u64 << (32 - u32::from(v4.netmask()));
                Some([first, first + size])
            }
            IpNetwork::V6(_) => None,
        })
        .flatten()
        .collect();
    boundaries.sort_unstable();
    boundaries.dedup();
    let mut runs: Vec<(u32, u32, u8)> = Vec::new();
    for pair in boundaries.windows(2) {
        let (first, last) = (pair[0] as u32, (pair[1] - 1) as u32);
        let Some((_, &provider)) = table.longest_match(std::net::Ipv4Addr::from(first)) else {
            continue;
        };
        match runs.last_mut() {
            Some(run) if run.2 == provider && u64::from(run.1) + 1 == u64::from(first) => {
                run.1 = last;
            }
            _ => runs.push((first, last, provider)),
        }
    }
    runs
}

fn network(text: &str) -> Option<IpNetwork> {
    let net: ipnet::IpNet = text.trim().parse().ok()?;
    IpNetwork::new_truncate(net.addr(), net.prefix_len()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_list_parses_and_names_its_providers() {
        let ranges = DatacenterRanges::embedded().unwrap();
        assert!(ranges.len() > 5000, "{ranges:?}");
        let keys: Vec<_> = ranges.providers().map(|(k, _)| k).collect();
        for key in ["aws", "azure", "digitalocean", "gcp", "oracle"] {
            assert!(keys.contains(&key), "{key} missing from {keys:?}");
        }
        // 3.0.0.0/15 is AWS in the snapshot; documentation and private space is nobody's.
        assert_eq!(ranges.provider("3.1.2.3".parse().unwrap()), Some("aws"));
        assert_eq!(ranges.provider("192.0.2.1".parse().unwrap()), None);
        assert_eq!(ranges.provider("10.1.2.3".parse().unwrap()), None);
        assert_eq!(ranges.provider("127.0.0.1".parse().unwrap()), None);
        assert_eq!(
            ranges.provider("::ffff:3.1.2.3".parse().unwrap()),
            Some("aws")
        );
    }

    #[test]
    fn the_flattened_v4_runs_answer_as_the_prefix_trie_does() {
        // Nested and adjacent prefixes of different providers, and the edges of the space.
        let ranges = DatacenterRanges::parse(
            "x",
            r#"{"providers": {
                "a": {"prefixes": ["10.0.0.0/8", "0.0.0.0/30", "255.255.255.0/24"]},
                "b": {"prefixes": ["10.1.0.0/16", "10.1.2.0/24", "11.0.0.0/8"]},
                "c": {"prefixes": ["10.1.2.128/25"]}}}"#,
        )
        .unwrap();
        let embedded = DatacenterRanges::embedded().unwrap();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut probes = vec![
            0u32,
            3,
            4,
            u32::MAX,
            0x0a00_0000,
            0x0a01_0280,
            0x0aff_ffff,
            0x0b00_0000,
        ];
        for _ in 0..200_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            probes.push(state as u32);
        }
        for table in [&ranges, &*embedded] {
            for &probe in &probes {
                let ip = std::net::Ipv4Addr::from(probe);
                let trie = table.table.longest_match(ip).map(|(_, &i)| i);
                assert_eq!(table.provider_index(ip.into()), trie, "{ip}");
            }
        }
        assert_eq!(ranges.provider("10.1.2.200".parse().unwrap()), Some("c"));
        assert_eq!(ranges.provider("10.1.3.1".parse().unwrap()), Some("b"));
        assert_eq!(ranges.provider("10.2.0.0".parse().unwrap()), Some("a"));
        assert_eq!(
            ranges.provider("255.255.255.255".parse().unwrap()),
            Some("a")
        );
    }

    #[test]
    fn bad_input_names_the_problem() {
        let err = DatacenterRanges::parse("x", "[]").unwrap_err();
        assert!(err.to_string().contains("\"x\""), "{err}");
        let err =
            DatacenterRanges::parse("x", r#"{"providers":{"aws":{"prefixes":["3.0.0/99"]}}}"#)
                .unwrap_err();
        assert!(err.to_string().contains("3.0.0/99"), "{err}");
        assert!(err.to_string().contains("aws"), "{err}");
    }
}
