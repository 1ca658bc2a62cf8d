//! The way through: a signed pass that gives a person who was refused a page their share again.
//!
//! When a page view by a client that looks like a person (not catalogued, not trap-marked,
//! score below `block_at`) would be refused by a quota or by the address's page pace, the layer
//! answers a small HTML page instead of a bare 429 (`layer::refusal::way_through`). The page
//! carries a pass made now that is only valid `pass_wait` later: a `<meta http-equiv=refresh>`
//! (or its one button) takes the browser to [`PASS_PATH`] after the wait, which sets the pass
//! as a cookie and sends the browser back to the page with the pass in its URL
//! (`?lc-pass=…`), for browsers that keep no cookies.
//!
//! A pass is 26 bytes, base64url: a random id, its issue time, the wait it was issued with and
//! a flag, then a 12-byte HMAC-SHA256 tag (the visitor cookie's key) over those bytes, the
//! client's subnet, a fingerprint of its `User-Agent` and `Accept-Language`, and its visitor
//! cookie's id when it had one. A pass copied to another network, another browser or another
//! visitor does not verify; a pass used before its wait is over, or after `pass_lifetime`,
//! does not either. A valid pass makes its holder a client of its own (like a visitor cookie):
//! a person's pace, credit and budgets afresh, never unlimited. Passes are bounded in issuance
//! per address and per subnet (`passes`, `subnet_passes`); the wait grows with every pass
//! the address already holds, so minting passes at scale costs time.
//!
//! People without cookies share their address's record until each holds a pass. Passes
//! issued to clients without a cookie are counted apart in the address's pass record; while
//! the address holds such passes (a cookieless crowd is visibly behind it), every anonymous
//! click on a link of this site is offered the way through, so each cookieless person takes
//! a pass of their own instead of sharing the address's pace and credit with the others.

use std::hash::BuildHasher;
use std::sync::LazyLock;

use data_encoding::BASE64URL_NOPAD;
use http::HeaderValue;
use memchr::memmem::Finder;

use super::cookie::{CookieSettings, TAG};
use super::rate::Rate;
use crate::request_headers::RequestHeaders;

/// Where a browser redeems its pass (the way-through page's refresh and button go there).
pub const PASS_PATH: &str = "/.well-known/lenscap/pass";

/// The query parameter that carries a pass in a page's URL.
pub const PASS_PARAM: &str = "lc-pass";

/// Signed first: a pass never verifies as a visitor cookie, nor a cookie as a pass.
const LABEL: &[u8] = b"lenscap way-through pass 1";
const PAYLOAD: usize = 14;
const RAW: usize = PAYLOAD + TAG;
const BOUND_TO_VISITOR: u8 = 1;

/// A pass whose signature, binding and time checked out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pass {
    /// Random: the pass holder's client key is made from it.
    pub(crate) id: u64,
}

/// Why a pass was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PassError {
    /// Not a pass at all (wrong length or alphabet).
    Malformed,
    /// Not signed by this site for this network, browser and visitor.
    NotHere,
    /// Its wait is not over yet: seconds left.
    TooEarly(u32),
    /// Older than `pass_lifetime`.
    Expired,
}

impl std::fmt::Display for PassError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PassError::Malformed => f.write_str("this is not a pass"),
            PassError::NotHere => {
                f.write_str("this pass was made for another browser or network, or another site")
            }
            PassError::TooEarly(secs) => write!(f, "this pass is valid in {secs} s"),
            PassError::Expired => f.write_str("this pass has expired"),
        }
    }
}

/// What a pass is bound to.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Binding {
    subnet: u128,
    headers: u64,
    visitor: Option<u64>,
}

impl Binding {
    /// The client's subnet, a fingerprint of the headers a browser sends the same on every
    /// request (`User-Agent`, `Accept-Language`), and its visitor cookie's id, if valid.
    pub(crate) fn of(headers: &RequestHeaders<'_>, subnet: u128, visitor: Option<u64>) -> Binding {
        fn value(found: Option<&HeaderValue>) -> &[u8] {
            found.map_or(&b""[..], HeaderValue::as_bytes)
        }
        let fingerprint = foldhash::fast::FixedState::with_seed(0x9a55_0b1d)
            .hash_one((value(headers.user_agent), value(headers.accept_language)));
        Binding {
            subnet,
            headers: fingerprint,
            visitor,
        }
    }
}

/// The pass part of `[limits]`, compiled.
#[derive(Debug)]
pub(crate) struct PassSettings {
    /// Answer refused page views with the way-through page.
    pub(crate) enabled: bool,
    /// Seconds a new pass waits before it is valid (the first pass of an address).
    pub(crate) wait_secs: u32,
    /// Seconds a pass stays valid.
    pub(crate) lifetime_secs: u32,
    /// Passes issued per address.
    pub(crate) per_address: Rate,
    /// Passes issued per subnet.
    pub(crate) per_subnet: Rate,
    /// The pass cookie's name (the visitor cookie's, with `-pass`).
    pub(crate) cookie_name: String,
}

impl PassSettings {
    /// A pass made at `now_unix` for `binding`, valid `wait_secs` later.
    pub(crate) fn issue(
        &self,
        key: &CookieSettings,
        id: u64,
        now_unix: u64,
        wait_secs: u32,
        binding: Binding,
    ) -> String {
        let mut raw = [0u8; RAW];
        raw[0..8].copy_from_slice(&id.to_le_bytes());
        raw[8..12].copy_from_slice(&(now_unix as u32).to_le_bytes());
        raw[12] = wait_secs.min(255) as u8;
        raw[13] = if binding.visitor.is_some() {
            BOUND_TO_VISITOR
        } else {
            0
        };
        let tag = key.sign_parts(&[LABEL, &signed(&raw[..PAYLOAD], &binding)]);
        raw[PAYLOAD..].copy_from_slice(&tag);
        BASE64URL_NOPAD.encode(&raw)
    }

    /// The pass `token` checked for `binding` at `now_unix`.
    pub(crate) fn verify(
        &self,
        key: &CookieSettings,
        token: &[u8],
        now_unix: u64,
        binding: Binding,
    ) -> Result<Pass, PassError> {
        let raw = BASE64URL_NOPAD
            .decode(token)
            .ok()
            .filter(|raw| raw.len() == RAW)
            .ok_or(PassError::Malformed)?;
        let issued = u64::from(u32::from_le_bytes(raw[8..12].try_into().expect("4 bytes")));
        // An expired pass says so even when its visitor cookie has expired with it.
        if now_unix > issued + u64::from(self.lifetime_secs) {
            return Err(PassError::Expired);
        }
        let mut bound = binding;
        if raw[13] & BOUND_TO_VISITOR == 0 {
            bound.visitor = None;
        } else if binding.visitor.is_none() {
            return Err(PassError::NotHere);
        }
        if !key.verify_parts(&[LABEL, &signed(&raw[..PAYLOAD], &bound)], &raw[PAYLOAD..]) {
            return Err(PassError::NotHere);
        }
        let id = u64::from_le_bytes(raw[0..8].try_into().expect("8 bytes"));
        let valid_from = issued + u64::from(raw[12]);
        if now_unix < valid_from {
            return Err(PassError::TooEarly((valid_from - now_unix) as u32));
        }
        Ok(Pass { id })
    }

    /// The request's valid pass: in its URL (`?lc-pass=`), in its pass cookie, or, for an
    /// image, in its Referer's URL (the page it was embedded in held the pass there). A
    /// request that names no pass anywhere costs a byte search of each place.
    pub(crate) fn read(
        &self,
        key: &CookieSettings,
        headers: &RequestHeaders<'_>,
        query: Option<&str>,
        image: bool,
        now_unix: u64,
        binding: impl Fn() -> Binding,
    ) -> Option<(Pass, PassSource)> {
        if !self.enabled {
            return None;
        }
        let check = |token: &[u8]| self.verify(key, token, now_unix, binding()).ok();
        if let Some(pass) = query
            .and_then(pass_in_query)
            .and_then(|t| check(t.as_bytes()))
        {
            return Some((pass, PassSource::Url));
        }
        if let Some(pass) = self.pass_cookie(headers).and_then(check) {
            return Some((pass, PassSource::Cookie));
        }
        if image
            && let Some(referer) = headers.referer
            && referer.as_bytes().contains(&b'?')
            && names_pass(referer.as_bytes())
            && let Some(query) = referer.to_str().ok().and_then(|r| r.split_once('?'))
            && let Some(pass) = pass_in_query(query.1).and_then(|t| check(t.as_bytes()))
        {
            return Some((pass, PassSource::Url));
        }
        None
    }

    fn pass_cookie<'h>(&self, headers: &RequestHeaders<'h>) -> Option<&'h [u8]> {
        headers.cookie_lines().find_map(|line| {
            let line = line.as_bytes();
            // The pass cookie's name ends in `-pass` (the visitor cookie's, with `-pass`).
            if !names_pass_cookie(line) {
                return None;
            }
            line.split(|&b| b == b';').find_map(|pair| {
                pair.trim_ascii()
                    .strip_prefix(self.cookie_name.as_bytes())?
                    .strip_prefix(b"=")
            })
        })
    }

    /// The `Set-Cookie` value that carries `token` for the pass's lifetime.
    pub(crate) fn set_cookie(&self, token: &str, secure: bool) -> HeaderValue {
        let secure = if secure { "; Secure" } else { "" };
        HeaderValue::try_from(format!(
            "{}={token}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax{secure}",
            self.cookie_name, self.lifetime_secs
        ))
        .expect("pass cookie text is visible ASCII")
    }
}

/// Where a request's pass came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PassSource {
    /// Its URL or its Referer's URL: the browser may keep no cookies, so the links of a page
    /// served with it carry it on.
    Url,
    /// The pass cookie.
    Cookie,
}

/// The bytes a pass's tag covers after its label: the payload, then what it is bound to.
fn signed(payload: &[u8], binding: &Binding) -> [u8; PAYLOAD + 32] {
    let mut bytes = [0u8; PAYLOAD + 32];
    bytes[..PAYLOAD].copy_from_slice(payload);
    bytes[PAYLOAD..PAYLOAD + 16].copy_from_slice(&binding.subnet.to_le_bytes());
    bytes[PAYLOAD + 16..PAYLOAD + 24].copy_from_slice(&binding.headers.to_le_bytes());
    bytes[PAYLOAD + 24..].copy_from_slice(&binding.visitor.unwrap_or(0).to_le_bytes());
    bytes
}

/// Searcher built once (building one per call cost more than the search).
static IN_URL: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"lc-pass="));

/// Whether a `Cookie` line holds `-pass=`: an `=` (a line has one a pair) with `-pass`
/// before it, cheaper to find than the whole string.
fn names_pass_cookie(line: &[u8]) -> bool {
    memchr::memchr_iter(b'=', line).any(|at| line[..at].ends_with(b"-pass"))
}

/// Whether `bytes` hold `lc-pass=` anywhere (checked before any parsing: most requests
/// carry no pass).
fn names_pass(bytes: &[u8]) -> bool {
    IN_URL.find(bytes).is_some()
}

/// The `lc-pass` value of a query string.
pub(crate) fn pass_in_query(query: &str) -> Option<&str> {
    if !names_pass(query.as_bytes()) {
        return None;
    }
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(PASS_PARAM)?.strip_prefix('='))
        .map(|value| value.split('#').next().unwrap_or(value))
}

/// `target` (a path and query, maybe with a fragment) with its pass set to `token`: any
/// `lc-pass` it had is replaced.
pub fn with_pass(target: &str, token: &str) -> String {
    crate::documents::with_query_pair(target, &format!("{PASS_PARAM}={token}"))
}

/// `target` without its pass (the page a pass holder asked for, as the site knows it).
pub(crate) fn without_pass(target: &str) -> std::borrow::Cow<'_, str> {
    if !target.contains("lc-pass") {
        return std::borrow::Cow::Borrowed(target);
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let kept: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty() && *p != PASS_PARAM && !p.starts_with("lc-pass="))
        .collect();
    if kept.is_empty() {
        std::borrow::Cow::Owned(path.to_owned())
    } else {
        std::borrow::Cow::Owned(format!("{path}?{}", kept.join("&")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cheap test for a pass cookie says yes exactly where `-pass=` is in the line.
    #[test]
    fn a_pass_cookie_is_found_where_its_name_is() {
        for line in [
            "lenscap-pass=abc",
            "theme=dark; lenscap-pass=abc",
            "lenscap=AAAA-pass; x=1",
            "lenscap=AAAA-pass=",
            "-pass=",
            "pass=1",
            "lenscap=abc-def; other-pas=1",
            "=",
            "",
            "a=b=c-pass",
        ] {
            let found = memchr::memmem::find(line.as_bytes(), b"-pass=").is_some();
            assert_eq!(names_pass_cookie(line.as_bytes()), found, "{line:?}");
        }
    }
}
