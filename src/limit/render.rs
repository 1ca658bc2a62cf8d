//! Proof of rendering: a tiny stylesheet every browser fetches and a script that only reads
//! `<img>` tags does not.
//!
//! As an HTML page streams out, the layer puts a stylesheet link before its `</head>`
//! ([`link`]): `<link rel="stylesheet" href="/.well-known/lenscap/r.css?t=…">`. The token is
//! 24 bytes, base64url: the page's key, the time the page was served, and a 12-byte
//! HMAC-SHA256 tag (the visitor cookie's key) over both, so a proof names a page this site
//! served, lately. It is not bound to the client: a page a cache or CDN keeps for others still
//! carries a proof that works for them (each client must fetch it itself, which is the point).
//!
//! The layer answers [`RENDER_PATH`] itself, before any limit (`Cache-Control: no-store`, a
//! one-line body), and marks the client that asked as a renderer. A client that views pages
//! carrying the proof and never fetches it gets only the first few of each page's images
//! vouched (`[limits] unrendered_grace`); its other images of such pages are charged to one
//! site-wide budget (`unrendered_images`) that every non-rendering client shares, however many
//! addresses it rotates through. Never a block on that alone.

use data_encoding::BASE64URL_NOPAD;

use super::cookie::{CookieSettings, TAG};
use super::rate::Rate;

/// Where a page's render proof points (the query carries its token).
pub const RENDER_PATH: &str = "/.well-known/lenscap/r.css";

/// Signed first: a proof never verifies as a cookie or a pass, nor they as a proof.
const LABEL: &[u8] = b"lenscap render proof 1";
const PAYLOAD: usize = 12;
const RAW: usize = PAYLOAD + TAG;
/// A proof is accepted this long after its page was served (a page kept in a cache).
const LIFETIME_SECS: u64 = 24 * 3600;

/// The proof part of `[limits]`, compiled.
#[derive(Debug)]
pub(crate) struct RenderSettings {
    /// Inject the proof into pages, and hold clients that never fetch it.
    pub(crate) enabled: bool,
    /// The site's budget for the images of proof pages from clients without a proof.
    pub(crate) unrendered_images: Rate,
}

/// Why a render proof was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RenderError {
    /// No `t=` in the query, or not a token at all (wrong length or alphabet).
    Malformed,
    /// Not signed by this site.
    NotHere,
    /// Older than a day.
    Expired,
}

impl std::fmt::Display for RenderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RenderError::Malformed => f.write_str("the query has no render proof token (t=)"),
            RenderError::NotHere => f.write_str("the token was not made by this site"),
            RenderError::Expired => f.write_str("the token is more than a day old"),
        }
    }
}

/// The `<link>` a page served now carries: the proof for page `page`.
pub(crate) fn link(key: &CookieSettings, page: u64, now_unix: u64) -> Box<[u8]> {
    let mut raw = [0u8; RAW];
    raw[..8].copy_from_slice(&page.to_le_bytes());
    raw[8..PAYLOAD].copy_from_slice(&(now_unix as u32).to_le_bytes());
    let tag = key.sign_parts(&[LABEL, &raw[..PAYLOAD]]);
    raw[PAYLOAD..].copy_from_slice(&tag);
    format!(
        "<link rel=\"stylesheet\" href=\"{RENDER_PATH}?t={}\">",
        BASE64URL_NOPAD.encode(&raw)
    )
    .into_bytes()
    .into_boxed_slice()
}

/// Checks the proof in a query (`t=<token>`) at `now_unix`.
pub(crate) fn verify(
    key: &CookieSettings,
    query: Option<&str>,
    now_unix: u64,
) -> Result<(), RenderError> {
    let token = query
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix("t="))
        .ok_or(RenderError::Malformed)?;
    let raw = BASE64URL_NOPAD
        .decode(token.as_bytes())
        .ok()
        .filter(|raw| raw.len() == RAW)
        .ok_or(RenderError::Malformed)?;
    if !key.verify_parts(&[LABEL, &raw[..PAYLOAD]], &raw[PAYLOAD..]) {
        return Err(RenderError::NotHere);
    }
    let issued = u64::from(u32::from_le_bytes(
        raw[8..PAYLOAD].try_into().expect("4 bytes"),
    ));
    if now_unix > issued + LIFETIME_SECS {
        return Err(RenderError::Expired);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> CookieSettings {
        CookieSettings::new(true, "lenscap".into(), 1800, Some("render test secret"))
    }

    fn token_of(link: &[u8]) -> String {
        let link = std::str::from_utf8(link).unwrap();
        let start = link.find("?t=").unwrap() + 3;
        link[start..link.len() - 2].to_owned()
    }

    #[test]
    fn a_link_made_here_verifies_for_a_day() {
        let key = key();
        let link = link(&key, 42, 1_000_000);
        let link_text = std::str::from_utf8(&link).unwrap();
        assert!(
            link_text.starts_with("<link rel=\"stylesheet\" href=\"/.well-known/lenscap/r.css?t=")
        );
        let query = format!("t={}", token_of(&link));
        assert_eq!(verify(&key, Some(&query), 1_000_000), Ok(()));
        assert_eq!(
            verify(&key, Some(&query), 1_000_000 + LIFETIME_SECS),
            Ok(())
        );
        assert_eq!(
            verify(&key, Some(&query), 1_000_001 + LIFETIME_SECS),
            Err(RenderError::Expired)
        );
    }

    #[test]
    fn forged_or_missing_tokens_are_refused_with_their_reason() {
        let key = key();
        let other = CookieSettings::new(true, "lenscap".into(), 1800, Some("another site"));
        let query = format!("t={}", token_of(&link(&other, 42, 1_000_000)));
        assert_eq!(
            verify(&key, Some(&query), 1_000_000),
            Err(RenderError::NotHere)
        );
        assert_eq!(verify(&key, None, 1), Err(RenderError::Malformed));
        assert_eq!(verify(&key, Some("t=abc"), 1), Err(RenderError::Malformed));
        assert_eq!(verify(&key, Some("x=1"), 1), Err(RenderError::Malformed));
        let mut tampered = token_of(&link(&key, 42, 1_000_000)).into_bytes();
        tampered[0] = if tampered[0] == b'A' { b'B' } else { b'A' };
        let query = format!("t={}", String::from_utf8(tampered).unwrap());
        assert_eq!(
            verify(&key, Some(&query), 1_000_000),
            Err(RenderError::NotHere)
        );
    }
}
