//! The visitor cookie: a random id, its issue time and the page it was issued on, signed
//! with SipHash-2-4-128 over those bytes and the client's subnet, under a key derived from
//! the policy's HMAC-SHA256 key (ring).
//!
//! No personal data: the id is random. Binding the subnet means a cookie copied to another
//! network is worthless; a cookie shared by many clients on one network makes them one client.
//!
//! The tag is checked on every request, so its MAC must be cheap for a 32-byte message:
//! SipHash-2-4 is a pseudorandom function under a secret 128-bit key, made as a MAC for short
//! inputs; a forger who has seen any number of cookies still has to guess a 96-bit tag for a
//! new one (a chance of 2⁻⁹⁶ a try), and recovering the key is as hard as searching 2¹²⁸ keys.
//! The key is HMAC-SHA256 of a fixed label under the policy's (or the fleet's) key, so it is as
//! secret as the configured secret. One SipHash of 32 bytes costs a few hundred instructions,
//! an HMAC-SHA256 several thousand.
//!
//! In a fleet, a policy without `[cookie] secret` signs with the fleet's secret once the shared
//! store has it ([`share_fleet_secret`]), so a cookie one instance issued is honoured by all.
//!
//! A visitor sends the same cookie with every request: each thread remembers the cookies it
//! verified lately (their whole text, the subnet and the key they verified for), so the next
//! request with byte-identical text for the same subnet and key skips the decoding and the
//! MAC. Any other text is decoded and verified; only verified cookies are remembered.

use std::cell::RefCell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use http::HeaderValue;
use ring::hmac;
use siphasher::sip128::SipHasher24;

use crate::request_headers::RequestHeaders;

/// The fleet's cookie key: one process serves one fleet, and a policy compiled before the
/// shared store answered must still sign with it once it is known.
static FLEET_KEY: OnceLock<CookieKey> = OnceLock::new();

/// Makes `secret` the cookie key of every policy without `[cookie] secret`, from now on.
/// The first call wins (the fleet's secret never changes while the process runs).
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) fn share_fleet_secret(secret: &[u8]) {
    let _ = FLEET_KEY.set(CookieKey::of(&hmac::Key::new(hmac::HMAC_SHA256, secret)));
}

/// The SipHash key visitor cookies are tagged with.
#[derive(Clone, Copy)]
struct CookieKey(u64, u64);

impl CookieKey {
    /// The cookie key belonging to an HMAC key: HMAC-SHA256 of a label, its first 16 bytes.
    fn of(key: &hmac::Key) -> CookieKey {
        let derived = hmac::sign(key, b"lenscap visitor cookie: siphash-2-4-128 key");
        let half = |at: usize| {
            let mut word = [0u8; 8];
            word.copy_from_slice(&derived.as_ref()[at..at + 8]);
            u64::from_le_bytes(word)
        };
        CookieKey(half(0), half(8))
    }

    /// The truncated tag of a cookie's payload for `subnet`.
    fn tag(self, payload: &[u8], subnet: u128) -> [u8; TAG] {
        let mut message = [0u8; PAYLOAD + 16];
        message[..PAYLOAD].copy_from_slice(payload);
        message[PAYLOAD..].copy_from_slice(&subnet.to_le_bytes());
        let full = u128::from(SipHasher24::new_with_keys(self.0, self.1).hash(&message));
        let mut tag = [0u8; TAG];
        tag.copy_from_slice(&full.to_le_bytes()[..TAG]);
        tag
    }
}

const PAYLOAD: usize = 16;
/// Bytes of a truncated HMAC tag.
pub(crate) const TAG: usize = 12;
const RAW: usize = PAYLOAD + TAG;
const ENCODED: usize = (RAW * 4).div_ceil(3);

/// Slots of each thread's table of cookies verified lately (a cookie's slot is chosen by its
/// tag's last characters).
const VERIFIED_SLOTS: usize = 64;

/// One cookie a thread verified: its text, for `subnet`, under the key numbered `key`.
#[derive(Clone, Copy)]
struct Verified {
    key: u64,
    subnet: u128,
    text: [u8; ENCODED],
    visitor: Visitor,
}

thread_local! {
    static VERIFIED: RefCell<[Option<Verified>; VERIFIED_SLOTS]> =
        const { RefCell::new([None; VERIFIED_SLOTS]) };
}

/// Numbers each [`CookieSettings`], so a cookie verified under one key is never taken for
/// one verified under another.
static SETTINGS_SERIAL: AtomicU64 = AtomicU64::new(0);

/// The slot of a cookie's text (`ENCODED` bytes, not yet checked): from its last characters,
/// which encode the tag.
fn verified_slot(text: &[u8]) -> usize {
    let value = |c: u8| usize::from(VALUES[usize::from(c)]);
    (value(text[ENCODED - 1]) ^ (value(text[ENCODED - 2]) << 2)) % VERIFIED_SLOTS
}

/// The visitor of `text` if this thread verified exactly that text for `subnet` under `key`.
fn remembered(key: u64, subnet: u128, text: &[u8]) -> Option<Visitor> {
    VERIFIED
        .try_with(|slots| {
            let slots = slots.try_borrow().ok()?;
            let entry = slots[verified_slot(text)].as_ref()?;
            (entry.key == key && entry.subnet == subnet && entry.text[..] == *text)
                .then_some(entry.visitor)
        })
        .ok()
        .flatten()
}

/// Remembers that `text` verified for `subnet` under `key` as `visitor`.
fn remember(key: u64, subnet: u128, text: &[u8], visitor: Visitor) {
    let Ok(text) = <[u8; ENCODED]>::try_from(text) else {
        return;
    };
    let _ = VERIFIED.try_with(|slots| {
        if let Ok(mut slots) = slots.try_borrow_mut() {
            slots[verified_slot(&text)] = Some(Verified {
                key,
                subnet,
                text,
                visitor,
            });
        }
    });
}

/// A visitor cookie as read from a request, its signature checked ([`CookieSettings::read`]
/// checks it on every request: the issue time and the page are signed with the id).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Visitor {
    pub(crate) id: u64,
    pub(crate) issued: u32,
    pub(crate) page: u16,
}

/// `[cookie]`, compiled.
pub(crate) struct CookieSettings {
    pub(crate) enabled: bool,
    name: String,
    pub(crate) lifetime_secs: u64,
    /// Signs the way-through pass.
    key: hmac::Key,
    /// Tags visitor cookies (derived from `key`).
    cookie_key: CookieKey,
    /// `[cookie] secret` was set: the fleet's secret does not replace it.
    configured: bool,
    /// This settings' number (see [`SETTINGS_SERIAL`]).
    serial: u64,
}

impl std::fmt::Debug for CookieSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CookieSettings")
            .field("enabled", &self.enabled)
            .field("name", &self.name)
            .field("lifetime_secs", &self.lifetime_secs)
            .finish_non_exhaustive()
    }
}

impl CookieSettings {
    pub(crate) fn new(
        enabled: bool,
        name: String,
        lifetime_secs: u64,
        secret: Option<&str>,
    ) -> Self {
        let key = match secret {
            Some(secret) => hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()),
            None => hmac::Key::generate(hmac::HMAC_SHA256, &ring::rand::SystemRandom::new())
                .expect("the system has randomness"),
        };
        CookieSettings {
            enabled,
            name,
            lifetime_secs,
            cookie_key: CookieKey::of(&key),
            key,
            configured: secret.is_some(),
            serial: SETTINGS_SERIAL.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// The key cookies are tagged with: the configured secret's, else the fleet's once known,
    /// else this policy's own random one.
    fn cookie_key(&self) -> CookieKey {
        self.key_in_use().0
    }

    /// The key cookies are tagged with, and its number: two per settings, its own and the
    /// fleet's.
    fn key_in_use(&self) -> (CookieKey, u64) {
        match FLEET_KEY.get() {
            Some(fleet) if !self.configured => (*fleet, self.serial << 1 | 1),
            _ => (self.cookie_key, self.serial << 1),
        }
    }

    /// The cookie's name (the server's access log hashes its value into a visitor id).
    #[cfg_attr(not(feature = "cli"), allow(dead_code))]
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The visitor cookie of a request, if present, well formed, signed by this policy's key
    /// for `subnet`, and not expired. The signature covers the id, the issue time and the
    /// page, so none of them can be rewritten, and it is checked on every request.
    pub(crate) fn read(
        &self,
        headers: &RequestHeaders<'_>,
        now_unix: u64,
        subnet: u128,
    ) -> Option<Visitor> {
        if !self.enabled {
            return None;
        }
        for line in headers.cookie_lines() {
            for pair in line.as_bytes().split(|&b| b == b';') {
                let pair = pair.trim_ascii();
                let Some(value) = pair
                    .strip_prefix(self.name.as_bytes())
                    .and_then(|rest| rest.strip_prefix(b"="))
                else {
                    continue;
                };
                let visitor = self.verified(value, subnet)?;
                let age = now_unix.checked_sub(u64::from(visitor.issued))?;
                if age > self.lifetime_secs {
                    return None;
                }
                return Some(visitor);
            }
        }
        None
    }

    /// The visitor of a cookie value whose tag is this policy's for `subnet`: remembered by
    /// this thread when it verified the same text before, else decoded and verified.
    fn verified(&self, value: &[u8], subnet: u128) -> Option<Visitor> {
        if value.len() != ENCODED {
            return None;
        }
        let (key, key_number) = self.key_in_use();
        if let Some(visitor) = remembered(key_number, subnet, value) {
            return Some(visitor);
        }
        let raw = decode(value)?;
        if !verify(key, &raw, subnet) {
            return None;
        }
        let visitor = Visitor {
            id: u64::from_le_bytes(raw[0..8].try_into().ok()?),
            issued: u32::from_le_bytes(raw[8..12].try_into().ok()?),
            page: u16::from_le_bytes(raw[12..14].try_into().ok()?),
        };
        remember(key_number, subnet, value, visitor);
        Some(visitor)
    }

    /// The truncated HMAC tag of `parts` under this policy's key (the way-through pass signs
    /// with it too; its parts start with a label of their own, so a pass never verifies as a
    /// cookie nor a cookie as a pass).
    pub(crate) fn sign_parts(&self, parts: &[&[u8]]) -> [u8; TAG] {
        let mut ctx = hmac::Context::with_key(&self.key);
        for part in parts {
            ctx.update(part);
        }
        let mut tag = [0u8; TAG];
        tag.copy_from_slice(&ctx.sign().as_ref()[..TAG]);
        tag
    }

    /// Whether `tag` is [`sign_parts`](Self::sign_parts) of `parts` (compared in constant time).
    pub(crate) fn verify_parts(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        let expected = self.sign_parts(parts);
        tag.len() == TAG
            && expected
                .iter()
                .zip(tag)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }

    /// A `Set-Cookie` value for a new visitor first seen on `page`.
    pub(crate) fn issue(
        &self,
        id: u64,
        now_unix: u64,
        page: u16,
        subnet: u128,
        secure: bool,
    ) -> HeaderValue {
        let mut raw = [0u8; RAW];
        raw[0..8].copy_from_slice(&id.to_le_bytes());
        raw[8..12].copy_from_slice(&(now_unix as u32).to_le_bytes());
        raw[12..14].copy_from_slice(&page.to_le_bytes());
        let tag = self.cookie_key().tag(&raw[..PAYLOAD], subnet);
        raw[PAYLOAD..].copy_from_slice(&tag);
        let mut value = String::with_capacity(self.name.len() + ENCODED + 64);
        value.push_str(&self.name);
        value.push('=');
        encode(&raw, &mut value);
        value.push_str("; Path=/; Max-Age=");
        value.push_str(&self.lifetime_secs.to_string());
        value.push_str("; HttpOnly; SameSite=Lax");
        if secure {
            value.push_str("; Secure");
        }
        HeaderValue::try_from(value).expect("cookie text is visible ASCII")
    }
}

/// Whether the cookie bytes were tagged by `key` for this subnet.
fn verify(key: CookieKey, raw: &[u8; RAW], subnet: u128) -> bool {
    let tag = key.tag(&raw[..PAYLOAD], subnet);
    // Constant-time comparison of the truncated tag.
    let diff = tag
        .iter()
        .zip(&raw[PAYLOAD..])
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    diff == 0
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn encode(raw: &[u8; RAW], out: &mut String) {
    let mut bits = 0u32;
    let mut held = 0;
    for &byte in raw {
        bits = (bits << 8) | u32::from(byte);
        held += 8;
        while held >= 6 {
            held -= 6;
            out.push(ALPHABET[((bits >> held) & 63) as usize] as char);
        }
    }
    if held > 0 {
        out.push(ALPHABET[((bits << (6 - held)) & 63) as usize] as char);
    }
}

/// The value of each alphabet byte, 255 for every other byte.
const VALUES: [u8; 256] = {
    let mut values = [255u8; 256];
    let mut i = 0;
    while i < ALPHABET.len() {
        values[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    values
};

// Nine groups of four characters make 27 bytes; the last two characters make the 28th.
const _: () = assert!(RAW == 28 && ENCODED == 38);

fn decode(text: &[u8]) -> Option<[u8; RAW]> {
    if text.len() != ENCODED {
        return None;
    }
    let value = |c: u8| u32::from(VALUES[usize::from(c)]);
    let mut raw = [0u8; RAW];
    // Out-of-alphabet bytes decode to 255, which sets bits no valid value has.
    let mut bad = 0;
    for (chars, bytes) in text.chunks_exact(4).zip(raw.chunks_exact_mut(3)) {
        let (a, b, c, d) = (
            value(chars[0]),
            value(chars[1]),
            value(chars[2]),
            value(chars[3]),
        );
        bad |= a | b | c | d;
        let n = (a << 18) | (b << 12) | (c << 6) | d;
        bytes.copy_from_slice(&n.to_be_bytes()[1..]);
    }
    let (a, b) = (value(text[36]), value(text[37]));
    bad |= a | b;
    raw[27] = ((a << 2) | (b >> 4)) as u8;
    // The last character's low four bits are padding: zero in every cookie issued, so one
    // cookie has one spelling only.
    (bad < 64 && b & 0x0F == 0).then_some(raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, header};

    fn settings() -> CookieSettings {
        CookieSettings::new(true, "lenscap".into(), 1800, None)
    }

    fn headers(set_cookie: &HeaderValue) -> HeaderMap {
        let pair = set_cookie.to_str().unwrap().split(';').next().unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            format!("theme=dark; {pair}").parse().unwrap(),
        );
        h
    }

    #[test]
    fn issued_cookies_verify_on_their_subnet_only() {
        let s = settings();
        let set = s.issue(42, 1_000_000, 7, 99, true);
        let text = set.to_str().unwrap();
        for attr in [
            "HttpOnly",
            "SameSite=Lax",
            "Max-Age=1800",
            "Secure",
            "Path=/",
        ] {
            assert!(text.contains(attr), "{text}");
        }
        let v = s
            .read(&RequestHeaders::of(&headers(&set)), 1_000_100, 99)
            .unwrap();
        assert_eq!((v.id, v.page), (42, 7));
        assert!(
            s.read(&RequestHeaders::of(&headers(&set)), 1_000_100, 100)
                .is_none()
        );
        assert!(
            s.read(&RequestHeaders::of(&headers(&set)), 1_000_000 + 1801, 99)
                .is_none()
        );
    }

    #[test]
    fn forged_and_foreign_cookies_fail() {
        let s = settings();
        let other = settings();
        let set = other.issue(42, 1_000_000, 7, 99, false);
        assert!(
            s.read(&RequestHeaders::of(&headers(&set)), 1_000_000, 99)
                .is_none()
        );
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, "lenscap=not-a-cookie".parse().unwrap());
        assert!(s.read(&RequestHeaders::of(&h), 1_000_000, 99).is_none());
        // The right length, one byte outside the alphabet.
        let good = s.issue(42, 1_000_000, 7, 99, false);
        let pair = good.to_str().unwrap().split(';').next().unwrap().to_owned();
        for bad in [".", "=", "+", "/"] {
            let forged = format!("{}{bad}", &pair[..pair.len() - 1]);
            h.insert(header::COOKIE, forged.parse().unwrap());
            assert!(
                s.read(&RequestHeaders::of(&h), 1_000_000, 99).is_none(),
                "{forged}"
            );
        }
        h.insert(header::COOKIE, pair.parse().unwrap());
        assert!(s.read(&RequestHeaders::of(&h), 1_000_000, 99).is_some());
    }

    /// A cookie this thread verified is remembered by its exact text, for its subnet and its
    /// key: every changed character, another subnet, another policy's key and an expired issue
    /// time are refused as before.
    #[test]
    fn a_remembered_cookie_lends_nothing_to_a_changed_one() {
        let s = settings();
        let set = s.issue(42, 1_000_000, 7, 99, false);
        let pair = set.to_str().unwrap().split(';').next().unwrap().to_owned();
        let value = pair.strip_prefix("lenscap=").unwrap().to_owned();
        let with = |text: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::COOKIE, format!("lenscap={text}").parse().unwrap());
            h
        };
        let read = |s: &CookieSettings, text: &str, now: u64, subnet: u128| {
            s.read(&RequestHeaders::of(&with(text)), now, subnet)
        };
        assert_eq!(read(&s, &value, 1_000_100, 99).map(|v| v.id), Some(42));
        let (_, number) = s.key_in_use();
        assert_eq!(
            remembered(number, 99, value.as_bytes()).map(|v| v.id),
            Some(42),
            "a verified cookie is remembered"
        );
        for at in 0..value.len() {
            for c in *ALPHABET {
                if value.as_bytes()[at] == c {
                    continue;
                }
                let mut changed = value.clone().into_bytes();
                changed[at] = c;
                let changed = String::from_utf8(changed).unwrap();
                assert!(read(&s, &changed, 1_000_100, 99).is_none(), "{changed}");
            }
        }
        assert!(read(&s, &value, 1_000_100, 100).is_none(), "another subnet");
        assert!(
            read(&settings(), &value, 1_000_100, 99).is_none(),
            "another key"
        );
        assert!(read(&s, &value, 1_000_000 + 1801, 99).is_none(), "expired");
        assert_eq!(read(&s, &value, 1_000_100, 99).map(|v| v.page), Some(7));
    }

    /// A cookie with its fields rewritten or its signature zeroed is refused on every
    /// request, not only when its visitor is first seen.
    #[test]
    fn rewritten_and_unsigned_cookies_fail_every_time() {
        let s = settings();
        let set = s.issue(42, 1_000_000, 7, 99, false);
        let pair = set.to_str().unwrap().split(';').next().unwrap().to_owned();
        let value = pair.strip_prefix("lenscap=").unwrap();
        let raw = decode(value.as_bytes()).unwrap();
        let cookie = |raw: &[u8; RAW]| {
            let mut text = String::from("lenscap=");
            encode(raw, &mut text);
            let mut h = HeaderMap::new();
            h.insert(header::COOKIE, text.parse().unwrap());
            h
        };
        assert!(
            s.read(&RequestHeaders::of(&cookie(&raw)), 1_000_100, 99)
                .is_some()
        );
        let mut zeroed = raw;
        zeroed[PAYLOAD..].fill(0);
        assert!(
            s.read(&RequestHeaders::of(&cookie(&zeroed)), 1_000_100, 99)
                .is_none()
        );
        // Expired, then "revived" by rewriting its issue time: refused.
        let now = 1_000_000 + 3600;
        assert!(
            s.read(&RequestHeaders::of(&cookie(&raw)), now, 99)
                .is_none()
        );
        let mut revived = raw;
        revived[8..12].copy_from_slice(&(now as u32).to_le_bytes());
        assert!(
            s.read(&RequestHeaders::of(&cookie(&revived)), now, 99)
                .is_none()
        );
        let mut other_page = raw;
        other_page[12..14].copy_from_slice(&8u16.to_le_bytes());
        assert!(
            s.read(&RequestHeaders::of(&cookie(&other_page)), 1_000_100, 99)
                .is_none()
        );
    }
}
