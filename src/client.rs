//! Client identity: who is asking, and through which proxies.
//!
//! The client is the peer address, unless the peer is a trusted proxy: then it is the rightmost
//! address in `X-Forwarded-For` (or RFC 7239 `Forwarded`, when configured) that is not itself a
//! trusted proxy. Walking from the right means a client cannot forge its identity by sending
//! its own `X-Forwarded-For`: the addresses it wrote sit left of the one the trusted proxy
//! appended. A peer that is not trusted cannot change its identity at all.
//!
//! ```
//! use http::HeaderMap;
//! use lenscap::client::{ForwardedHeader, TrustedProxies};
//!
//! let proxies = TrustedProxies::new(["10.0.0.0/8".parse().unwrap()], ForwardedHeader::XForwardedFor);
//! let mut headers = HeaderMap::new();
//! headers.insert("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.0.0.2".parse().unwrap());
//!
//! let from_proxy = proxies.identify(Some("10.0.0.1".parse().unwrap()), &headers);
//! assert_eq!(from_proxy.client.ip().to_string(), "203.0.113.9");
//!
//! let direct = proxies.identify(Some("198.51.100.4".parse().unwrap()), &headers);
//! assert_eq!(direct.client.ip().to_string(), "198.51.100.4");
//! ```

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use http::HeaderMap;
use ip_network::IpNetwork;
use ip_network_table::IpNetworkTable;
use serde::Deserialize;
use serde_spanned::Spanned;

use crate::settings::{ConfigError, Source};

/// Most forwarding hops examined from the right before giving up.
const MAX_HOPS: usize = 32;

/// The address of the connection's peer, put in request extensions by the server.
///
/// axum's `ConnectInfo<SocketAddr>` is read as well (with the default `axum` feature).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// Marks a request that arrived over TLS, put in request extensions by the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tls;

/// Who a request comes from: one IP address, IPv4-mapped IPv6 addresses normalised to IPv4.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientId {
    ip: IpAddr,
}

impl ClientId {
    /// The client for `ip` (normalised).
    pub fn new(ip: IpAddr) -> ClientId {
        ClientId {
            ip: ip.to_canonical(),
        }
    }

    /// Stand-in when the peer address is unknown (no `PeerAddr` in the request).
    pub const UNKNOWN: ClientId = ClientId {
        ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    };

    /// The client's address.
    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    /// A compact key for maps: IPv4 as IPv4-mapped IPv6.
    pub fn key(&self) -> u128 {
        ip_key(self.ip)
    }

    /// The key of the client's subnet (`v4` and `v6` are prefix lengths).
    pub fn subnet_key(&self, prefixes: SubnetPrefixes) -> u128 {
        match self.ip {
            IpAddr::V4(v4) => {
                let bits = u32::from(v4) & mask32(prefixes.v4);
                ip_key(IpAddr::V4(Ipv4Addr::from(bits)))
            }
            IpAddr::V6(v6) => u128::from(v6) & mask128(prefixes.v6),
        }
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.ip.fmt(f)
    }
}

fn ip_key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn mask32(prefix: u8) -> u32 {
    match prefix {
        0 => 0,
        p if p >= 32 => u32::MAX,
        p => u32::MAX << (32 - p),
    }
}

fn mask128(prefix: u8) -> u128 {
    match prefix {
        0 => 0,
        p if p >= 128 => u128::MAX,
        p => u128::MAX << (128 - p),
    }
}

/// Prefix lengths that group clients into subnets for shared budgets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubnetPrefixes {
    /// IPv4 prefix length (default 24).
    pub v4: u8,
    /// IPv6 prefix length (default 64).
    pub v6: u8,
}

impl Default for SubnetPrefixes {
    fn default() -> Self {
        SubnetPrefixes { v4: 24, v6: 64 }
    }
}

/// The peer address a server put in the request's extensions: Lenscap's [`PeerAddr`], or
/// axum's `ConnectInfo<SocketAddr>` (with the `axum` feature).
///
/// With neither, every visitor is the same unknown client and shares one budget: that is
/// logged once, as a warning, the first time it happens.
pub(crate) fn peer_ip<B>(request: &http::Request<B>) -> Option<IpAddr> {
    if let Some(PeerAddr(addr)) = request.extensions().get::<PeerAddr>() {
        return Some(addr.ip());
    }
    #[cfg(feature = "axum")]
    if let Some(info) = request
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
    {
        return Some(info.0.ip());
    }
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        tracing::warn!(
            "a request reached Lenscap without a peer address (neither lenscap::PeerAddr nor axum's ConnectInfo in its extensions): every visitor counts as one client; see the crate docs"
        );
    }
    None
}

/// `[client]`: how clients are identified.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ClientConfig {
    /// Proxies whose forwarding headers are believed (CIDR list; empty by default).
    pub(crate) trusted_proxies: Vec<ipnet::IpNet>,
    /// `x-forwarded-for` (default) or `forwarded`.
    pub(crate) forwarded_header: ForwardedHeader,
    /// Prefix length grouping IPv4 clients into a subnet.
    pub(crate) subnet_v4: Spanned<u8>,
    /// Prefix length grouping IPv6 clients into a subnet.
    pub(crate) subnet_v6: Spanned<u8>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            trusted_proxies: Vec::new(),
            forwarded_header: ForwardedHeader::default(),
            subnet_v4: Spanned::new(0..0, 24),
            subnet_v6: Spanned::new(0..0, 64),
        }
    }
}

/// The identify stage, compiled: the trusted proxies and the subnet prefixes.
#[derive(Debug)]
pub(crate) struct Identify {
    pub(crate) proxies: TrustedProxies,
    pub(crate) subnets: SubnetPrefixes,
}

impl Identify {
    pub(crate) fn compile(
        config: &ClientConfig,
        source: &Source<'_>,
    ) -> Result<Identify, ConfigError> {
        let prefix = |value: &Spanned<u8>, key: &str, max: u8| {
            if *value.get_ref() > max {
                Err(source.invalid(
                    Some(value.span()),
                    format!(
                        "client.{key} = {} is not a prefix length (0–{max})",
                        value.get_ref()
                    ),
                ))
            } else {
                Ok(*value.get_ref())
            }
        };
        Ok(Identify {
            subnets: SubnetPrefixes {
                v4: prefix(&config.subnet_v4, "subnet_v4", 32)?,
                v6: prefix(&config.subnet_v6, "subnet_v6", 128)?,
            },
            proxies: TrustedProxies::new(
                config.trusted_proxies.iter().copied(),
                config.forwarded_header,
            ),
        })
    }
}

/// Which header trusted proxies use to pass the client address on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardedHeader {
    /// `X-Forwarded-For` (and `X-Forwarded-Proto`).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded` (`for=` and `proto=`).
    Forwarded,
}

/// The result of identifying a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The client.
    pub client: ClientId,
    /// Whether the peer is a trusted proxy.
    pub via_trusted_proxy: bool,
    /// `https` as reported by a trusted proxy.
    pub forwarded_https: bool,
}

/// The trusted proxy table, compiled once.
pub struct TrustedProxies {
    table: IpNetworkTable<()>,
    empty: bool,
    header: ForwardedHeader,
}

impl fmt::Debug for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustedProxies")
            .field("empty", &self.empty)
            .field("header", &self.header)
            .finish()
    }
}

impl TrustedProxies {
    /// A table of trusted proxy networks.
    pub fn new(networks: impl IntoIterator<Item = ipnet::IpNet>, header: ForwardedHeader) -> Self {
        let mut table = IpNetworkTable::new();
        let mut empty = true;
        for net in networks {
            if let Ok(n) = IpNetwork::new_truncate(net.addr(), net.prefix_len()) {
                table.insert(n, ());
                empty = false;
            }
        }
        TrustedProxies {
            table,
            empty,
            header,
        }
    }

    /// Whether `ip` is a trusted proxy.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        !self.empty && self.table.longest_match(ip.to_canonical()).is_some()
    }

    /// Works out the client of a request from its peer address and headers.
    pub fn identify(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Identity {
        let Some(peer) = peer.map(|p| p.to_canonical()) else {
            return Identity {
                client: ClientId::UNKNOWN,
                via_trusted_proxy: false,
                forwarded_https: false,
            };
        };
        if !self.is_trusted(peer) {
            return Identity {
                client: ClientId::new(peer),
                via_trusted_proxy: false,
                forwarded_https: false,
            };
        }
        let (client, forwarded_https) = match self.header {
            ForwardedHeader::XForwardedFor => {
                let hops = header_items(headers, "x-forwarded-for").map(parse_hop);
                let client = self.rightmost_untrusted(peer, hops);
                let https = last_item(headers, "x-forwarded-proto")
                    .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"));
                (client, https)
            }
            ForwardedHeader::Forwarded => {
                let hops = header_items(headers, "forwarded")
                    .map(|element| forwarded_param(element, "for").and_then(parse_hop));
                let client = self.rightmost_untrusted(peer, hops);
                let https = last_item(headers, "forwarded")
                    .and_then(|e| forwarded_param(e, "proto"))
                    .is_some_and(|p| p.eq_ignore_ascii_case("https"));
                (client, https)
            }
        };
        Identity {
            client: ClientId::new(client),
            via_trusted_proxy: true,
            forwarded_https,
        }
    }

    /// Walks hops right to left; stops at the first untrusted one. An unparsable hop ends the
    /// walk at the last address a trusted party vouched for.
    fn rightmost_untrusted<'a>(
        &self,
        peer: IpAddr,
        hops: impl DoubleEndedIterator<Item = Option<IpAddr>> + 'a,
    ) -> IpAddr {
        let mut current = peer;
        for hop in hops.rev().take(MAX_HOPS) {
            let Some(ip) = hop else { return current };
            current = ip.to_canonical();
            if !self.is_trusted(current) {
                return current;
            }
        }
        current
    }
}

/// Comma-separated items of every line of `name`, in order.
fn header_items<'a>(
    headers: &'a HeaderMap,
    name: &str,
) -> impl DoubleEndedIterator<Item = &'a str> {
    let lines: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    lines
        .into_iter()
        .flat_map(|line| line.split(','))
        .map(str::trim)
}

fn last_item<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    header_items(headers, name).next_back()
}

/// Value of `key=` in one `Forwarded` element (quotes removed).
fn forwarded_param<'a>(element: &'a str, key: &str) -> Option<&'a str> {
    element.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(key)
            .then(|| v.trim().trim_matches('"'))
    })
}

/// Parses `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]:80`.
fn parse_hop(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = text.strip_prefix('[') {
        let inner = rest.split(']').next()?;
        return inner.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    text.parse::<SocketAddr>().ok().map(|s| s.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(header: ForwardedHeader) -> TrustedProxies {
        TrustedProxies::new(
            ["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()],
            header,
        )
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn client(p: &TrustedProxies, peer: &str, h: &HeaderMap) -> String {
        p.identify(Some(peer.parse().unwrap()), h)
            .client
            .to_string()
    }

    #[test]
    fn untrusted_peer_cannot_change_identity() {
        let p = proxies(ForwardedHeader::XForwardedFor);
        let h = headers(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-proto", "https"),
        ]);
        let id = p.identify(Some("198.51.100.1".parse().unwrap()), &h);
        assert_eq!(id.client.to_string(), "198.51.100.1");
        assert!(!id.forwarded_https);
    }

    #[test]
    fn rightmost_untrusted_hop_across_repeated_headers() {
        let p = proxies(ForwardedHeader::XForwardedFor);
        let h = headers(&[
            ("x-forwarded-for", "9.9.9.9, 203.0.113.5"),
            ("x-forwarded-for", "10.1.1.1"),
            ("x-forwarded-proto", "https"),
        ]);
        let id = p.identify(Some("10.0.0.1".parse().unwrap()), &h);
        assert_eq!(id.client.to_string(), "203.0.113.5");
        assert!(id.forwarded_https);
    }

    #[test]
    fn garbage_hop_stops_at_the_last_vouched_address() {
        let p = proxies(ForwardedHeader::XForwardedFor);
        let h = headers(&[("x-forwarded-for", "1.2.3.4, not-an-ip, 10.2.2.2")]);
        assert_eq!(client(&p, "10.0.0.1", &h), "10.2.2.2");
        let h = headers(&[("x-forwarded-for", "%%%")]);
        assert_eq!(client(&p, "10.0.0.1", &h), "10.0.0.1");
    }

    #[test]
    fn thousand_hops_are_bounded() {
        let p = proxies(ForwardedHeader::XForwardedFor);
        let chain = vec!["10.0.0.7"; 1000].join(", ");
        let h = headers(&[("x-forwarded-for", &chain)]);
        assert_eq!(client(&p, "10.0.0.1", &h), "10.0.0.7");
        let chain = format!("{}, 203.0.113.1", vec!["8.8.8.8"; 999].join(","));
        let h = headers(&[("x-forwarded-for", &chain)]);
        assert_eq!(client(&p, "10.0.0.1", &h), "203.0.113.1");
    }

    #[test]
    fn ports_brackets_and_mapped_addresses() {
        let p = proxies(ForwardedHeader::XForwardedFor);
        let h = headers(&[("x-forwarded-for", "[2001:db8::5]:443")]);
        assert_eq!(client(&p, "10.0.0.1", &h), "2001:db8::5");
        let h = headers(&[("x-forwarded-for", "203.0.113.1:8080")]);
        assert_eq!(client(&p, "::ffff:10.0.0.1", &h), "203.0.113.1");
        assert_eq!(
            client(&p, "::ffff:198.51.100.2", &HeaderMap::new()),
            "198.51.100.2"
        );
    }

    #[test]
    fn rfc7239_forwarded() {
        let p = proxies(ForwardedHeader::Forwarded);
        let h = headers(&[(
            "forwarded",
            r#"for=192.0.2.60;proto=http, for="[2001:db8:cafe::17]:4711";proto=https"#,
        )]);
        let id = p.identify(Some("fd00::1".parse().unwrap()), &h);
        assert_eq!(id.client.to_string(), "2001:db8:cafe::17");
        assert!(id.forwarded_https);
        let h = headers(&[("forwarded", "for=unknown")]);
        assert_eq!(client(&p, "10.0.0.1", &h), "10.0.0.1");
    }

    #[test]
    fn subnet_keys() {
        let prefixes = SubnetPrefixes::default();
        let a = ClientId::new("203.0.113.1".parse().unwrap());
        let b = ClientId::new("203.0.113.200".parse().unwrap());
        let c = ClientId::new("203.0.114.1".parse().unwrap());
        assert_eq!(a.subnet_key(prefixes), b.subnet_key(prefixes));
        assert_ne!(a.subnet_key(prefixes), c.subnet_key(prefixes));
        let x = ClientId::new("2001:db8:1:2:aaaa::1".parse().unwrap());
        let y = ClientId::new("2001:db8:1:2:bbbb::1".parse().unwrap());
        assert_eq!(x.subnet_key(prefixes), y.subnet_key(prefixes));
        assert_ne!(a.key(), b.key());
    }
}
