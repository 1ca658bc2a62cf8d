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
    table: IpNetworkTable<u8>,
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
        self.table
            .longest_match(ip.to_canonical())
            .map(|(_, &index)| index)
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
