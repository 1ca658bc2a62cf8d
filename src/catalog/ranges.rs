//! Verified crawler IP ranges.
//!
//! Google, Bing, OpenAI and Apple publish the addresses their crawlers use as JSON:
//! `{"creationTime": "…", "prefixes": [{"ipv4Prefix": "a.b.c.d/n"}, {"ipv6Prefix": "x::/n"}]}`.
//! Each file compiles once into a prefix table. A request whose User-Agent claims an agent that
//! has a ranges file, sent from outside those ranges, is a spoofer.
//!
//! ```
//! use lenscap::catalog::ranges::RangeTable;
//!
//! let table = RangeTable::parse("example", r#"{"prefixes":[{"ipv4Prefix":"192.0.2.0/24"}]}"#).unwrap();
//! assert!(table.contains("192.0.2.7".parse().unwrap()));
//! assert!(!table.contains("198.51.100.1".parse().unwrap()));
//! ```

use std::collections::BTreeMap;
use std::net::IpAddr;

use ip_network::IpNetwork;
use ip_network_table::IpNetworkTable;
use serde::Deserialize;

/// The ranges files shipped in `config/ranges/`, by name.
pub const EMBEDDED_RANGES: &[(&str, &str)] = &[
    (
        "applebot",
        include_str!("../../config/ranges/applebot.json"),
    ),
    ("bingbot", include_str!("../../config/ranges/bingbot.json")),
    (
        "chatgpt-user",
        include_str!("../../config/ranges/chatgpt-user.json"),
    ),
    (
        "googlebot",
        include_str!("../../config/ranges/googlebot.json"),
    ),
    ("gptbot", include_str!("../../config/ranges/gptbot.json")),
    (
        "searchbot",
        include_str!("../../config/ranges/searchbot.json"),
    ),
];

/// A problem with a ranges file.
#[derive(Debug, thiserror::Error)]
pub enum RangesError {
    /// Not the published JSON shape.
    #[error("ranges file {name:?}: not a valid ranges JSON document: {message}")]
    Json {
        /// The ranges name.
        name: String,
        /// The JSON parser's message (with line and column).
        message: String,
    },
    /// A prefix that is not a CIDR.
    #[error("ranges file {name:?}: prefix {prefix:?} is not a valid CIDR")]
    Prefix {
        /// The ranges name.
        name: String,
        /// The bad value.
        prefix: String,
    },
    /// The file could not be read.
    #[error("ranges file {name:?}: reading {path}: {source}")]
    Io {
        /// The ranges name.
        name: String,
        /// Path.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}

#[derive(Deserialize)]
struct RangesFile {
    #[serde(default, rename = "creationTime")]
    creation_time: Option<String>,
    prefixes: Vec<Prefix>,
}

#[derive(Deserialize)]
struct Prefix {
    #[serde(default, rename = "ipv4Prefix")]
    ipv4: Option<String>,
    #[serde(default, rename = "ipv6Prefix")]
    ipv6: Option<String>,
}

/// One compiled ranges file.
pub struct RangeTable {
    table: IpNetworkTable<()>,
    creation_time: Option<String>,
    len: usize,
}

impl std::fmt::Debug for RangeTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RangeTable")
            .field("prefixes", &self.len)
            .field("creation_time", &self.creation_time)
            .finish()
    }
}

impl RangeTable {
    /// Parses a published ranges document.
    pub fn parse(name: &str, json: &str) -> Result<RangeTable, RangesError> {
        let file: RangesFile = serde_json::from_str(json).map_err(|e| RangesError::Json {
            name: name.to_owned(),
            message: e.to_string(),
        })?;
        let mut table = IpNetworkTable::new();
        let mut len = 0;
        for prefix in file.prefixes {
            for text in [prefix.ipv4, prefix.ipv6].into_iter().flatten() {
                let net: ipnet::IpNet = text.trim().parse().map_err(|_| RangesError::Prefix {
                    name: name.to_owned(),
                    prefix: text.clone(),
                })?;
                let network =
                    IpNetwork::new_truncate(net.addr(), net.prefix_len()).map_err(|_| {
                        RangesError::Prefix {
                            name: name.to_owned(),
                            prefix: text.clone(),
                        }
                    })?;
                table.insert(network, ());
                len += 1;
            }
        }
        Ok(RangeTable {
            table,
            creation_time: file.creation_time,
            len,
        })
    }

    /// Whether `ip` is inside one of the prefixes.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.table.longest_match(ip).is_some()
    }

    /// Number of prefixes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no prefixes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The file's `creationTime`, if given.
    pub fn creation_time(&self) -> Option<&str> {
        self.creation_time.as_deref()
    }
}

/// All ranges tables by name.
#[derive(Debug, Default)]
pub struct VerifiedRanges {
    tables: BTreeMap<String, RangeTable>,
}

impl VerifiedRanges {
    /// The embedded tables with `overrides` (name → path) replacing or adding files.
    pub fn load(
        overrides: &BTreeMap<String, std::path::PathBuf>,
    ) -> Result<VerifiedRanges, RangesError> {
        let mut tables = BTreeMap::new();
        for (name, json) in EMBEDDED_RANGES {
            if !overrides.contains_key(*name) {
                tables.insert((*name).to_owned(), RangeTable::parse(name, json)?);
            }
        }
        for (name, path) in overrides {
            let json = std::fs::read_to_string(path).map_err(|source| RangesError::Io {
                name: name.clone(),
                path: path.display().to_string(),
                source,
            })?;
            tables.insert(name.clone(), RangeTable::parse(name, &json)?);
        }
        Ok(VerifiedRanges { tables })
    }

    /// The table called `name`.
    pub fn get(&self, name: &str) -> Option<&RangeTable> {
        self.tables.get(name)
    }

    /// Every table by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &RangeTable)> {
        self.tables.iter().map(|(k, v)| (k.as_str(), v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_v4_and_v6_and_truncates_host_bits() {
        let t = RangeTable::parse(
            "x",
            r#"{"creationTime":"2026-01-01","prefixes":[{"ipv4Prefix":"66.249.64.5/27"},{"ipv6Prefix":"2001:4860:4801:10::/64"}]}"#,
        )
        .unwrap();
        assert_eq!(t.len(), 2);
        assert!(t.contains("66.249.64.31".parse().unwrap()));
        assert!(!t.contains("66.249.64.32".parse().unwrap()));
        assert!(t.contains("2001:4860:4801:10::1".parse().unwrap()));
        assert_eq!(t.creation_time(), Some("2026-01-01"));
    }

    #[test]
    fn not_json_is_an_error_naming_the_file() {
        let err = RangeTable::parse("googlebot", "<html>").unwrap_err();
        assert!(err.to_string().contains("googlebot"), "{err}");
        let err =
            RangeTable::parse("bing", r#"{"prefixes":[{"ipv4Prefix":"1.2.3/99"}]}"#).unwrap_err();
        assert!(err.to_string().contains("1.2.3/99"), "{err}");
    }
}
