//! `lenscap simulate`: plays realistic humans and crawlers against a site and reports what got
//! through.
//!
//! A run has three parts. A **survey** walks the site's pages (following links, `<img>` and
//! `srcset`) to count the images on offer — or a URL list stands in for it. Then every
//! **profile** of the [`Scenario`] runs its sessions side by side, each session with its own
//! pooled hyper client, its identity's real header set, its pacing and its client address
//! (sent as `X-Forwarded-For`, for targets that trust the simulator as a proxy). One gate bounds
//! the whole run in time, in requests and in requests in flight. The [`Report`] says, per
//! profile, how many images each got out of those it asked for and when the target first
//! pushed back, and overall how precise and complete the target's detection was.
//!
//! The simulator only targets loopback addresses unless told otherwise: [`Target::resolve`]
//! refuses anything else without `allow_remote`.
//!
//! ```
//! use lenscap::simulate::{Scenario, Target};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let target = Target::resolve("http://127.0.0.1:9/", false).await.unwrap();
//! assert_eq!(target.authority(), "127.0.0.1:9");
//!
//! let refused = Target::resolve("http://192.0.2.10/", false).await.unwrap_err();
//! assert!(refused.to_string().contains("--allow-remote"));
//!
//! // Nothing listens on port 9: every request fails, and the run still ends, bounded.
//! let mut scenario = Scenario::builtin("default").unwrap().unwrap();
//! scenario.duration = std::time::Duration::from_secs(2);
//! scenario.restrict_to(&["fake-googlebot".parse().unwrap()]);
//! let report = lenscap::simulate::run(&target, &scenario, None).await;
//! assert_eq!(report.profiles[0].images_obtained, 0);
//! assert!(report.to_json()["profiles"][0]["first_stop_at"].is_null());
//! # });
//! ```

pub mod discovery;
pub mod profile;
pub mod report;
mod runner;
pub mod scenario;
mod signing;

use std::net::{IpAddr, SocketAddr};

pub use profile::{ProfileKind, ProfileSettings, Role, Rotation};
pub use report::{ProfileReport, Report};
pub use scenario::{BUILTIN_SCENARIOS, Scenario, Thresholds};

/// Runs `scenario` against `target` and reports. `urls`, when given, replaces the survey
/// (absolute URLs on the target, or paths): its image URLs are what the dataset builder
/// fetches and what counts as available.
pub async fn run(target: &Target, scenario: &Scenario, urls: Option<Vec<String>>) -> Report {
    runner::run(target, scenario, urls).await
}

/// A target that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// Not an `http://host[:port][/path]` URL.
    #[error("--target {url:?}: {reason}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The host name did not resolve.
    #[error("--target {url:?}: cannot resolve {host}: {source}")]
    Resolve {
        /// The URL as given.
        url: String,
        /// The host.
        host: String,
        /// The resolver's error.
        source: std::io::Error,
    },
    /// A non-loopback target without `allow_remote`.
    #[error(
        "--target {url:?}: {addr} is not a loopback address; simulate only loads sites you run: pass --allow-remote to point it at one elsewhere"
    )]
    NotLoopback {
        /// The URL as given.
        url: String,
        /// The address it resolved to.
        addr: IpAddr,
    },
}

/// The site under test: its URL, and the one address every connection goes to (resolved and
/// checked once, so a name cannot later resolve somewhere else).
#[derive(Clone, Debug)]
pub struct Target {
    url: String,
    authority: String,
    /// Where connections go, in turn: one address, or a fleet's instances.
    addrs: Vec<SocketAddr>,
}

impl Target {
    /// Parses `url` (`http://host[:port][/…]`), resolves the host and refuses a non-loopback
    /// address unless `allow_remote`.
    pub async fn resolve(url: &str, allow_remote: bool) -> Result<Target, TargetError> {
        let bad = |reason| TargetError::BadUrl {
            url: url.to_owned(),
            reason,
        };
        let rest = if let Some(rest) = url.strip_prefix("http://") {
            rest
        } else if url.starts_with("https://") {
            return Err(bad(
                "https targets are not supported: point simulate at the plain-HTTP side and set `forwarded_proto = \"https\"` in the scenario",
            ));
        } else {
            return Err(bad("expected a URL starting with http://"));
        };
        let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
        if authority.is_empty() {
            return Err(bad("no host"));
        }
        if authority.contains('@') {
            return Err(bad("user names and passwords in the URL are not supported"));
        }
        let (host, port) = split_host_port(authority).ok_or_else(|| bad("bad host or port"))?;
        let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((host, port))
                .await
                .map_err(|source| TargetError::Resolve {
                    url: url.to_owned(),
                    host: host.to_owned(),
                    source,
                })?
                .collect(),
        };
        let Some(&addr) = addrs.first() else {
            return Err(bad("the host resolved to no address"));
        };
        if !allow_remote && let Some(remote) = addrs.iter().find(|a| !is_loopback(a.ip())) {
            return Err(TargetError::NotLoopback {
                url: url.to_owned(),
                addr: remote.ip(),
            });
        }
        Ok(Target {
            url: url.to_owned(),
            authority: authority.to_owned(),
            addrs: vec![addr],
        })
    }

    /// One site served by several instances: requests go to `self` and `others` in turn
    /// (round-robin, as a load balancer would), all naming `self`'s host.
    pub fn spread_over(mut self, others: &[Target]) -> Target {
        for other in others {
            self.addrs.extend(&other.addrs);
            self.url.push_str(&format!(", {}", other.url));
        }
        self
    }

    /// The URL as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `host[:port]` as given (the `Host` header the simulator sends).
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The address connections go to (the first, for a fleet).
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// The addresses connections go to, in turn.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Always `http` (TLS targets are not supported).
    pub fn scheme(&self) -> &str {
        "http"
    }
}

/// 127.0.0.0/8, ::1, and ::ffff:127.0.0.0/104.
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

fn split_host_port(authority: &str) -> Option<(&str, u16)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => 80,
            None => return None,
        };
        return Some((host, port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => Some((host, port.parse().ok()?)),
        Some(_) => None,
        None => Some((authority, 80)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_loopback_targets_without_allow_remote() {
        for url in [
            "http://127.0.0.1:8080/",
            "http://127.1.2.3",
            "http://[::1]:8080/x",
            "http://localhost:8080/",
        ] {
            let target = Target::resolve(url, false).await;
            assert!(target.is_ok(), "{url}: {:?}", target.err());
        }
        for url in [
            "http://192.0.2.1/",
            "http://[2001:db8::1]:80/",
            "http://10.0.0.1:8080",
        ] {
            let error = Target::resolve(url, false).await.unwrap_err();
            assert!(matches!(error, TargetError::NotLoopback { .. }), "{url}");
            assert!(Target::resolve(url, true).await.is_ok(), "{url}");
        }
        for url in [
            "https://127.0.0.1/",
            "ftp://x",
            "http://",
            "http://u:p@127.0.0.1/",
            "http://127.0.0.1:x/",
        ] {
            assert!(
                matches!(
                    Target::resolve(url, false).await,
                    Err(TargetError::BadUrl { .. })
                ),
                "{url}"
            );
        }
        let fleet = Target::resolve("http://127.0.0.1:81/", false)
            .await
            .unwrap()
            .spread_over(&[Target::resolve("http://127.0.0.2:82/", false)
                .await
                .unwrap()]);
        assert_eq!(fleet.authority(), "127.0.0.1:81");
        assert_eq!(
            fleet.addrs(),
            [
                "127.0.0.1:81".parse().unwrap(),
                "127.0.0.2:82".parse().unwrap()
            ]
        );
        let t = Target::resolve("http://[::1]:81/a", false).await.unwrap();
        assert_eq!(t.addr(), "[::1]:81".parse().unwrap());
        assert_eq!(t.authority(), "[::1]:81");
    }

    #[test]
    fn mapped_loopback_is_loopback() {
        assert!(is_loopback("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!is_loopback("::ffff:192.0.2.1".parse().unwrap()));
    }
}
