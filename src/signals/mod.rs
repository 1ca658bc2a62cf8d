//! Signals: what a request's headers say about the client.
//!
//! Header shape is the cheap, static part: browsers send `Accept`, `Accept-Language` and a
//! compressed `Accept-Encoding` on every request; download tools and scripts usually don't.
//! Signals that only hold on secure origins — fetch metadata (`Sec-Fetch-*`) and Chromium's
//! client hints (`sec-ch-ua`) — are only checked when the request came over TLS, through a
//! trusted proxy reporting `https`, or to `localhost`: browsers on plain HTTP never send them,
//! and a pub's site on plain HTTP must not punish its visitors for that.
//!
//! ```
//! use http::{HeaderMap, Method, Version};
//! use lenscap::signals::{header_shape, RequestView};
//! use lenscap::verdict::Reason;
//!
//! let mut headers = HeaderMap::new();
//! headers.insert("user-agent", "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:72.0) Gecko/20100101 Firefox/72.0".parse().unwrap());
//! headers.insert("accept-encoding", "identity".parse().unwrap());
//! let view = RequestView { method: &Method::GET, path: "/p/1.jpg", version: Version::HTTP_11, headers: &headers, secure: false, image: true };
//! let reasons = header_shape(&view, true);
//! assert!(reasons.contains(Reason::NoAccept));
//! assert!(reasons.contains(Reason::IdentityEncoding));
//! assert!(reasons.contains(Reason::OutdatedBrowser));
//! ```

pub(crate) mod behaviour;
pub mod embeds;
mod self_id;
pub mod transport;
mod user_agent;
pub mod web_bot_auth;

pub use self_id::self_identifies;
pub(crate) use self_id::{NeedleAutomaton, SelfIdNeedle, patterns as self_id_patterns};

pub(crate) use user_agent::{UserAgent, UserAgentCache};

use std::sync::LazyLock;

use http::{HeaderMap, HeaderValue, Method, Version, header};

use crate::request_headers::RequestHeaders;
pub(crate) use crate::request_headers::SEC_FETCH_DEST;
use crate::verdict::{Reason, Reasons};

/// The parts of a request the classifier looks at.
#[derive(Clone, Copy, Debug)]
pub struct RequestView<'a> {
    /// Request method.
    pub method: &'a Method,
    /// Path, without the query.
    pub path: &'a str,
    /// HTTP version.
    pub version: Version,
    /// All headers.
    pub headers: &'a HeaderMap,
    /// Whether the origin is secure (TLS, trusted `X-Forwarded-Proto: https`, or localhost).
    pub secure: bool,
    /// Whether this is an image request.
    pub image: bool,
}

/// The header-shape signals of a request. `known_agent` skips the User-Agent shape checks
/// (the catalog already said what it is).
pub fn header_shape(view: &RequestView<'_>, known_agent: bool) -> Reasons {
    let known = RequestHeaders::of(view.headers);
    let ua = known.user_agent_bytes();
    let reading = UserAgent {
        agent: None,
        browser: BrowserUa::parse(ua),
        bot_like: self_identifies(ua),
    };
    shape(view, &known, ua.is_empty(), known_agent, &reading)
}

/// Reads a User-Agent: the catalog agent it names, its browser claims, whether it names
/// itself a robot ([`self_identifies`]). The reference the classifier's one-pass reader
/// (`classify::reader`) is tested against.
#[cfg(test)]
pub(crate) fn read_user_agent(catalog: &crate::catalog::Catalog, ua: &[u8]) -> UserAgent {
    UserAgent {
        agent: catalog.classify_index(ua).map(|i| i as u32),
        browser: BrowserUa::parse(ua),
        bot_like: self_identifies(ua),
    }
}

/// [`header_shape`] from a User-Agent already read and the headers found in one pass.
pub(crate) fn shape(
    view: &RequestView<'_>,
    headers: &RequestHeaders<'_>,
    no_user_agent: bool,
    known_agent: bool,
    reading: &UserAgent,
) -> Reasons {
    let mut reasons = Reasons::default();
    let browser = reading.browser;

    if no_user_agent {
        reasons.insert(Reason::NoUserAgent);
    } else if !known_agent {
        if !browser.shaped {
            reasons.insert(Reason::NonBrowserUserAgent);
        }
        if reading.bot_like {
            reasons.insert(Reason::BotLikeUserAgent);
        }
    }
    if headers.accept.is_none() {
        reasons.insert(Reason::NoAccept);
    }
    if headers.accept_language.is_none() {
        reasons.insert(Reason::NoAcceptLanguage);
    }
    match headers.accept_encoding {
        None => reasons.insert(Reason::NoAcceptEncoding),
        Some(v) if v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"identity") => {
            reasons.insert(Reason::IdentityEncoding)
        }
        Some(_) => {}
    }
    match view.version {
        Version::HTTP_10 | Version::HTTP_09 => reasons.insert(Reason::Http10),
        Version::HTTP_11
            if headers
                .connection
                .is_some_and(|v| v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"close")) =>
        {
            reasons.insert(Reason::ConnectionClose)
        }
        _ => {}
    }
    if browser.outdated() {
        reasons.insert(Reason::OutdatedBrowser);
    }
    if view.secure {
        if browser.sends_client_hints() && headers.sec_ch_ua.is_none() {
            reasons.insert(Reason::MissingClientHints);
        }
        if view.image
            && browser.sends_fetch_metadata()
            && headers.sec_fetch_mode.is_none()
            && headers.sec_fetch_dest.is_none()
        {
            reasons.insert(Reason::MissingFetchMetadata);
        }
    }
    reasons
}

/// Whether the request is an image fetch by its headers alone (`Sec-Fetch-Dest: image`).
pub fn fetch_dest_is_image(headers: &HeaderMap) -> bool {
    is_image_dest(headers.get(SEC_FETCH_DEST))
}

/// Whether a `Sec-Fetch-Dest` value is `image`.
pub(crate) fn is_image_dest(value: Option<&HeaderValue>) -> bool {
    value.is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"image"))
}

/// Whether the Host names this machine: browsers treat localhost as a secure origin.
pub fn is_localhost(headers: &HeaderMap) -> bool {
    is_local_host(headers.get(header::HOST))
}

/// [`is_localhost`] of a `Host` value.
pub(crate) fn is_local_host(host: Option<&HeaderValue>) -> bool {
    let Some(host) = host.map(HeaderValue::as_bytes) else {
        return false;
    };
    let name = match host.strip_prefix(b"[") {
        Some(rest) => rest.split(|&b| b == b']').next().unwrap_or_default(),
        None => match memchr::memrchr(b':', host) {
            Some(colon) => &host[..colon],
            None => host,
        },
    };
    const SUFFIX: &[u8] = b".localhost";
    let local = name.eq_ignore_ascii_case(b"localhost")
        || (name.len() > SUFFIX.len()
            && name[name.len() - SUFFIX.len()..].eq_ignore_ascii_case(SUFFIX))
        || name.starts_with(b"127.")
        || name == b"::1";
    // Only visible ASCII makes a host name (checked last: almost every Host is not local).
    local
        && host
            .iter()
            .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
}

/// What a browser-like User-Agent claims to be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BrowserUa {
    /// Looks like a browser's (`Mozilla/…`, old `Opera/…`, feature phones).
    pub shaped: bool,
    /// `Chrome/N` major version (Chromium-based, not iOS).
    pub chrome: Option<u32>,
    /// `Firefox/N` major version.
    pub firefox: Option<u32>,
    /// Safari's `Version/N` major version.
    pub safari: Option<u32>,
    /// Android WebView or an in-app browser, which may not send fetch metadata or client hints.
    pub embedded: bool,
}

/// The markers a browser User-Agent is read by (case-sensitive), in the order
/// [`BrowserUa::read_with`] numbers them.
pub(crate) const BROWSER_MARKERS: [&[u8]; 9] = [
    b"Firefox/",
    b"Chrome/",
    b"Safari/",
    b"Version/",
    b"; wv)",
    b"FBAN/",
    b"FBAV/",
    b"Instagram",
    b"Profile/MIDP",
];

impl BrowserUa {
    /// Reads a User-Agent.
    pub fn parse(ua: &[u8]) -> BrowserUa {
        BrowserUa::read_with(ua, |marker| find(ua, BROWSER_MARKERS[marker]))
    }

    /// [`BrowserUa::parse`], with `first(i)` saying where [`BROWSER_MARKERS`]`[i]` first
    /// occurs in `ua` (the classifier finds them all in one pass).
    pub(crate) fn read_with(ua: &[u8], first: impl Fn(usize) -> Option<usize>) -> BrowserUa {
        let [
            firefox,
            chrome,
            safari,
            version,
            webview,
            fban,
            fbav,
            instagram,
            midp,
        ] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
        // Old feature phones (BlackBerry, J2ME) name the device first but carry a MIDP profile.
        let shaped = ua.starts_with(b"Mozilla/")
            || ua.starts_with(b"Opera/")
            || ua.starts_with(b"BlackBerry")
            || first(midp).is_some();
        if !shaped {
            return BrowserUa::default();
        }
        let version_of =
            |marker: usize| version_at(ua, first(marker)? + BROWSER_MARKERS[marker].len());
        let firefox = version_of(firefox);
        let chrome = if firefox.is_none() {
            version_of(chrome)
        } else {
            None
        };
        let safari = if chrome.is_none() && firefox.is_none() && first(safari).is_some() {
            version_of(version)
        } else {
            None
        };
        let embedded = [webview, fban, fbav, instagram]
            .into_iter()
            .any(|marker| first(marker).is_some());
        BrowserUa {
            shaped,
            chrome,
            firefox,
            safari,
            embedded,
        }
    }

    /// Years out of date (Chrome or Firefox before 100, both from early 2022).
    pub fn outdated(&self) -> bool {
        self.chrome.is_some_and(|v| v < 100) || self.firefox.is_some_and(|v| v < 100)
    }

    /// Chromium has sent `sec-ch-ua` on secure origins since version 89.
    pub fn sends_client_hints(&self) -> bool {
        !self.embedded && self.chrome.is_some_and(|v| v >= 90)
    }

    /// Chrome 80+, Firefox 90+ and Safari 17+ send `Sec-Fetch-*` on secure origins.
    pub fn sends_fetch_metadata(&self) -> bool {
        !self.embedded
            && (self.chrome.is_some_and(|v| v >= 80)
                || self.firefox.is_some_and(|v| v >= 90)
                || self.safari.is_some_and(|v| v >= 17))
    }
}

/// Searchers for the User-Agent markers, built once (building one per call cost more than
/// the search).
static MARKERS: LazyLock<
    std::collections::HashMap<&'static [u8], memchr::memmem::Finder<'static>>,
> = LazyLock::new(|| {
    BROWSER_MARKERS
        .into_iter()
        .map(|m| (m, memchr::memmem::Finder::new(m)))
        .collect()
});

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    match MARKERS.get(needle) {
        Some(finder) => finder.find(haystack),
        None => memchr::memmem::find(haystack, needle),
    }
}

/// The version number (at most six digits) starting at `start`.
fn version_at(ua: &[u8], start: usize) -> Option<u32> {
    let digits = ua[start..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .take(6);
    let mut value: u32 = 0;
    let mut any = false;
    for d in digits {
        value = value * 10 + u32::from(d - b'0');
        any = true;
    }
    any.then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36";

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

    fn shape(pairs: &[(&str, &str)], secure: bool, image: bool) -> Reasons {
        let h = headers(pairs);
        let view = RequestView {
            method: &Method::GET,
            path: "/x.jpg",
            version: Version::HTTP_11,
            headers: &h,
            secure,
            image,
        };
        header_shape(&view, false)
    }

    const BROWSER: &[(&str, &str)] = &[
        ("user-agent", CHROME),
        ("accept", "image/avif,image/webp,*/*"),
        ("accept-language", "en-GB,en;q=0.9"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
    ];

    #[test]
    fn a_browser_on_plain_http_raises_nothing() {
        assert!(shape(BROWSER, false, true).is_empty());
    }

    #[test]
    fn secure_origins_expect_client_hints_and_fetch_metadata() {
        let r = shape(BROWSER, true, true);
        assert!(r.contains(Reason::MissingClientHints));
        assert!(r.contains(Reason::MissingFetchMetadata));
        let mut full = BROWSER.to_vec();
        full.extend([
            ("sec-ch-ua", "\"Chromium\";v=\"142\""),
            ("sec-fetch-dest", "image"),
            ("sec-fetch-mode", "no-cors"),
        ]);
        assert!(shape(&full, true, true).is_empty());
    }

    #[test]
    fn webviews_are_not_expected_to_send_client_hints() {
        let ua = "Mozilla/5.0 (Linux; Android 14; Pixel 8; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/142.0.0.0 Mobile Safari/537.36";
        let mut h = BROWSER.to_vec();
        h[0] = ("user-agent", ua);
        assert!(shape(&h, true, true).is_empty());
    }

    #[test]
    fn scripts_look_like_scripts() {
        let r = shape(
            &[("user-agent", "MyHarvester/0.3 (+https://example.org)")],
            false,
            true,
        );
        assert!(r.contains(Reason::NonBrowserUserAgent));
        assert!(r.contains(Reason::BotLikeUserAgent));
        assert!(r.contains(Reason::NoAccept));
        assert!(r.contains(Reason::NoAcceptEncoding));
        let r = shape(&[], false, false);
        assert!(r.contains(Reason::NoUserAgent));
    }

    #[test]
    fn versions_parse() {
        let b = BrowserUa::parse(CHROME.as_bytes());
        assert_eq!(b.chrome, Some(142));
        let s = BrowserUa::parse(b"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.2 Safari/605.1.15");
        assert_eq!(s.safari, Some(18));
        assert_eq!(s.chrome, None);
        assert!(
            BrowserUa::parse(b"Mozilla/5.0 (X11; rv:72.0) Gecko/20100101 Firefox/72.0").outdated()
        );
        assert_eq!(version_at(b"Chrome/99999999999", 7), Some(999999));
    }

    #[test]
    fn localhost_hosts() {
        for host in [
            "localhost",
            "localhost:8080",
            "127.0.0.1:8080",
            "[::1]:80",
            "gallery.localhost",
        ] {
            assert!(is_localhost(&headers(&[("host", host)])), "{host}");
        }
        for host in ["example.com", "10.0.0.1:80", "localhost.example.com"] {
            assert!(!is_localhost(&headers(&[("host", host)])), "{host}");
        }
    }
}
