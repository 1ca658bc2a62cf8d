//! The behaviour tracker: what one client has been doing over a sliding window.
//!
//! Header shape says what a request looks like; behaviour says what the client does. A person
//! views a page and then that page's images, with the page as Referer, and pauses to look. A
//! harvester pulls images without pages, names them in order (`IMG_0001.jpg`, `IMG_0002.jpg`),
//! asks only for originals, keeps a metronome's rhythm, walks every page before fetching any
//! image, or reads robots.txt and then goes exactly where it says not to. Each of these is a
//! named [`Reason`] with a weight in `[signals]`; thresholds live in `[behaviour]`.
//!
//! State per client is [`Behaviour`], 44 bytes: two half-window buckets of small counters
//! (a sliding window estimated as in Cloudflare's sliding-window counters), a 32-bit
//! linear-counting sketch of distinct images, the last two pages viewed (16-bit hashes), the
//! image credit those page views earned, and a few bytes for enumeration, timing and marks.
//!
//! ```
//! use std::convert::Infallible;
//! use std::sync::{Arc, Mutex};
//! use http::{Request, Response};
//! use lenscap::limit::ManualClock;
//! use lenscap::{LenscapLayer, PeerAddr, Policy, Reason, Reasons, Verdict};
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let seen = Arc::new(Mutex::new(Reasons::default()));
//! let clock = ManualClock::new();
//! let inner = {
//!     let seen = seen.clone();
//!     service_fn(move |request: Request<()>| {
//!         // The inner service reads the verdict Lenscap put in the request.
//!         *seen.lock().unwrap() = request.extensions().get::<Verdict>().unwrap().reasons;
//!         async { Ok::<_, Infallible>(Response::new(http_body_util::Empty::<bytes::Bytes>::new())) }
//!     })
//! };
//! let mut app = ServiceBuilder::new()
//!     .layer(LenscapLayer::new(Policy::embedded().unwrap()).with_clock(clock.clone()))
//!     .service(inner);
//! // Photos one after another, no page, no Referer, a few milliseconds apart.
//! for i in 0..8u32 {
//!     let mut request = Request::get(format!("/photos/IMG_{i:04}.jpg"))
//!         .header("user-agent", "Mozilla/5.0 (X11; Linux x86_64; rv:150.0) Gecko/20100101 Firefox/150.0")
//!         .header("accept", "image/avif,image/webp,*/*")
//!         .header("accept-language", "en")
//!         .header("accept-encoding", "gzip, br")
//!         .body(())
//!         .unwrap();
//!     request.extensions_mut().insert(PeerAddr("203.0.113.9:5555".parse().unwrap()));
//!     app.ready().await.unwrap().call(request).await.unwrap();
//!     clock.advance(std::time::Duration::from_millis(5));
//! }
//! assert!(seen.lock().unwrap().contains(Reason::NoRefererImages));
//! # });
//! ```

use std::hash::BuildHasher;
use std::time::Duration;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder};
use http::{HeaderMap, HeaderValue, header};

use serde_spanned::Spanned;

use crate::request_headers::RequestHeaders;
use crate::settings::{ConfigError, Source};
use crate::verdict::{Reason, Reasons};

/// What a request is, for the tracker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A page view (HTML, or a path without an asset extension).
    Page,
    /// An image.
    Image,
    /// `/robots.txt`.
    Robots,
    /// Anything else (styles, scripts, fonts, API calls): not tracked.
    Other,
}

/// Where an image request says it was embedded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Referer {
    /// No Referer header.
    None,
    /// A page of this site: the hash of its path and query.
    Here(u16),
    /// Another site.
    Elsewhere,
}

/// What the tracker needs from one request; read once, without allocating.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Facts {
    /// Page, image or other.
    pub(crate) kind: Kind,
    /// Hash of the path and query (pages are remembered by it, referers matched against it).
    pub(crate) target: u16,
    /// The path and query's [`embed_key`](super::embeds::embed_key) (pages and images; 0 otherwise).
    pub(crate) key: u64,
    /// The same-site Referer's [`embed_key`](super::embeds::embed_key) (0: none).
    pub(crate) referer_key: u64,
    /// The Referer.
    pub(crate) referer: Referer,
    /// The request came to a secure origin without `Sec-Fetch-Dest: image` (images only).
    pub(crate) no_fetch_dest: bool,
    /// The path or query names an original or full-size variant.
    pub(crate) original: bool,
    /// The last number in the path or query, and a hash of what surrounds it.
    pub(crate) number: Option<(u8, u16)>,
    /// The path is disallowed by robots.txt (a trap or a configured disallowed prefix).
    pub(crate) disallowed: bool,
    /// A browser navigation (`Accept: text/html…` or `Sec-Fetch-Dest: document`): only these
    /// page views earn image credit.
    pub(crate) navigation: bool,
    /// A hash of the client's address (0: not known). A visitor known by its cookie whose
    /// address keeps changing is one script rotating addresses, not a phone changing network.
    pub(crate) address: u16,
    /// A navigation faster than the client's page pace allows (set by the limit stage): it
    /// earns no credit and is not remembered as a page the client viewed.
    pub(crate) over_pace: bool,
    /// An anonymous navigation from elsewhere beyond the pace, served as a crowd's newcomer
    /// arriving (set by the limit stage): a view of a page the client already viewed earns
    /// that page's credit again, as another person's view of it.
    pub(crate) newcomer: bool,
    /// The credit this page view earns: the images its page embeds when the limit stage knows
    /// them, `credit_per_page` otherwise.
    pub(crate) page_credit: Option<u16>,
    /// For an image whose Referer is a page of this site: whether that page embeds it (`None`:
    /// the page's images are not known).
    pub(crate) embedded: Option<bool>,
    /// For an image whose Referer is a page of this site: that page carries the render proof
    /// (set by the limit stage), so a browser showing it has fetched or will fetch the proof.
    pub(crate) render_page: bool,
}

/// Hash of a path and query (or a Referer's), shared by pages and referers.
#[cfg(test)]
pub(crate) fn target_hash(path_and_query: &[u8]) -> u16 {
    target_of(super::embeds::embed_key(path_and_query))
}

/// The target hash of a path whose [`embed_key`](super::embeds::embed_key) is `key`: its top
/// 16 bits (the embed sets read the low bits of each half), so one hash of the path serves
/// both.
fn target_of(key: u64) -> u16 {
    (key >> 48) as u16
}

impl Facts {
    /// Reads the facts of a request.
    #[cfg(test)]
    pub(crate) fn read(
        kind: Kind,
        path_and_query: &str,
        headers: &HeaderMap,
        secure: bool,
        settings: &BehaviourSettings,
        disallowed: bool,
    ) -> Facts {
        let no_fetch_dest = secure && !crate::signals::fetch_dest_is_image(headers);
        Facts::read_with(
            kind,
            path_and_query,
            &RequestHeaders::of(headers),
            no_fetch_dest,
            settings,
            disallowed,
        )
    }

    /// Like [`Facts::read`], with `no_fetch_dest` (a secure origin, no `Sec-Fetch-Dest:
    /// image`) already known.
    pub(crate) fn read_with(
        kind: Kind,
        path_and_query: &str,
        headers: &RequestHeaders<'_>,
        no_fetch_dest: bool,
        settings: &BehaviourSettings,
        disallowed: bool,
    ) -> Facts {
        let tracked = matches!(kind, Kind::Page | Kind::Image);
        let image = kind == Kind::Image;
        let (referer, referer_key) = if image {
            read_referer(headers.referer, headers.host)
        } else {
            (Referer::None, 0)
        };
        let key = if tracked {
            super::embeds::embed_key(path_and_query.as_bytes())
        } else {
            0
        };
        Facts {
            kind,
            target: if tracked { target_of(key) } else { 0 },
            key,
            referer,
            referer_key,
            no_fetch_dest: image && no_fetch_dest,
            original: image && settings.originals.is_match(path_and_query),
            number: if tracked {
                last_number(path_and_query.as_bytes())
            } else {
                None
            },
            disallowed,
            navigation: kind == Kind::Page && is_navigation(headers),
            address: 0,
            over_pace: false,
            newcomer: false,
            page_credit: None,
            embedded: None,
            render_page: false,
        }
    }

    /// Facts for a plain request with an optional same-site Referer (for tests).
    #[cfg(test)]
    pub(crate) fn for_test(kind: Kind, path: &str, referer: Option<&str>) -> Facts {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, "text/html,*/*;q=0.8".parse().unwrap());
        if let Some(r) = referer {
            headers.insert(
                header::REFERER,
                format!("http://gallery.test{r}").parse().unwrap(),
            );
            headers.insert(header::HOST, "gallery.test".parse().unwrap());
        }
        Facts::read(
            kind,
            path,
            &headers,
            false,
            &BehaviourSettings::default(),
            false,
        )
    }
}

fn is_navigation(headers: &RequestHeaders<'_>) -> bool {
    headers.sec_fetch_dest.map_or_else(
        || {
            headers
                .accept
                .is_some_and(|a| memchr::memmem::find(a.as_bytes(), b"text/html").is_some())
        },
        |d| d.as_bytes() == b"document" || d.as_bytes() == b"iframe",
    )
}

/// Whether the request's Referer is a page of this site (a navigation by a click on a link
/// here, rather than an arrival from elsewhere).
pub(crate) fn from_this_site(headers: &HeaderMap) -> bool {
    let referer = read_referer(headers.get(header::REFERER), headers.get(header::HOST));
    matches!(referer.0, Referer::Here(_))
}

/// The Referer of a request: same host as `Host`, another site, or none; and for a page of
/// this site, its [`embed_key`](super::embeds::embed_key).
fn read_referer(referer: Option<&HeaderValue>, host: Option<&HeaderValue>) -> (Referer, u64) {
    let Some(referer) = referer else {
        return (Referer::None, 0);
    };
    let referer = referer.as_bytes();
    let Some(scheme_end) = referer
        .iter()
        .position(|&b| b == b':')
        .filter(|&i| referer[i..].starts_with(b"://"))
    else {
        return (Referer::Elsewhere, 0);
    };
    let rest = &referer[scheme_end + 3..];
    // A Referer is short: a plain loop finds a byte sooner than memchr starts up.
    let (authority, target) = match rest.iter().position(|&b| b == b'/') {
        Some(i) => rest.split_at(i),
        None => (rest, &b"/"[..]),
    };
    let target = match target.iter().position(|&b| b == b'#') {
        Some(i) => &target[..i],
        None => target,
    };
    let same = host.is_none_or(|host| host.as_bytes().eq_ignore_ascii_case(authority));
    if same {
        let key = super::embeds::embed_key(target);
        (Referer::Here(target_of(key)), key)
    } else {
        (Referer::Elsewhere, 0)
    }
}

/// The last run of digits (at most 9) and a hash of the text around it.
fn last_number(bytes: &[u8]) -> Option<(u8, u16)> {
    let end = bytes.iter().rposition(u8::is_ascii_digit)? + 1;
    let start = bytes[..end]
        .iter()
        .rposition(|b| !b.is_ascii_digit())
        .map_or(0, |i| i + 1);
    let digits = &bytes[start.max(end.saturating_sub(9))..end];
    let value = digits
        .iter()
        .fold(0u32, |v, d| v * 10 + u32::from(d - b'0'));
    let around =
        foldhash::fast::FixedState::with_seed(0x0e_4a77).hash_one((&bytes[..start], &bytes[end..]));
    Some(((around >> 56) as u8, value as u16))
}

/// `[behaviour]`: when each behaviour signal fires (its weight is in `[signals]`; 0 here
/// turns a signal off).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct BehaviourConfig {
    /// Length of the sliding window.
    window: Spanned<String>,
    /// Images without Referer in the window.
    no_referer_images: u32,
    /// Images whose Referer is not one of the client's last two pages.
    unviewed_referer_images: u32,
    /// Images with no page view in the window.
    images_without_pages: u32,
    /// Images on a secure origin without `Sec-Fetch-Dest: image`.
    missing_fetch_dest_images: u32,
    /// Distinct images in the window (estimated; at most about 100).
    distinct_images: u32,
    /// Numbers in sequence (`IMG_0001`, `IMG_0002`, … or `?page=1`, `?page=2`, …).
    enumeration_run: u8,
    /// Images in the window, all of them originals.
    originals_only: u32,
    /// Path or query fragments naming original or full-size variants.
    original_markers: Vec<String>,
    /// Equal intervals (±10%) in a row.
    regular_timing_run: u8,
    /// Shortest interval the timing signal considers.
    regular_timing_min_interval: Spanned<String>,
    /// Address changes of one cookie visitor in the window (0 turns the signal off).
    address_changes: u32,
}

impl Default for BehaviourConfig {
    fn default() -> Self {
        BehaviourConfig {
            window: Spanned::new(0..0, "60s".into()),
            no_referer_images: 5,
            unviewed_referer_images: 5,
            images_without_pages: 10,
            missing_fetch_dest_images: 5,
            distinct_images: 80,
            enumeration_run: 16,
            originals_only: 10,
            original_markers: default_original_markers(),
            regular_timing_run: 8,
            regular_timing_min_interval: Spanned::new(0..0, "200ms".into()),
            address_changes: 3,
        }
    }
}

impl BehaviourConfig {
    /// Compiles the section; a page view earns `credit_per_page` image credit, up to
    /// `max_credit` (both from `[limits]`).
    pub(crate) fn compile(
        &self,
        credit_per_page: u16,
        max_credit: u16,
        source: &Source<'_>,
    ) -> Result<BehaviourSettings, ConfigError> {
        let window = source.duration("behaviour.window", &self.window)?;
        if window < Duration::from_secs(2) {
            return Err(source.invalid(
                Some(self.window.span()),
                "behaviour.window must be at least 2s",
            ));
        }
        if self.distinct_images > 100 {
            return Err(source.invalid(
                None,
                format!(
                    "behaviour.distinct_images = {} is above what the tracker can count (100)",
                    self.distinct_images
                ),
            ));
        }
        let mut settings =
            BehaviourSettings::new(window, self.distinct_images, &self.original_markers);
        settings.no_referer_images = self.no_referer_images;
        settings.unviewed_referer_images = self.unviewed_referer_images;
        settings.images_without_pages = self.images_without_pages;
        settings.missing_fetch_dest_images = self.missing_fetch_dest_images;
        settings.enumeration_run = self.enumeration_run;
        settings.originals_only = self.originals_only;
        settings.regular_run = self.regular_timing_run;
        settings.address_changes = self.address_changes;
        settings.regular_min_ms = source
            .duration(
                "behaviour.regular_timing_min_interval",
                &self.regular_timing_min_interval,
            )?
            .as_millis()
            .min(60_000) as u32;
        settings.credit_per_page = credit_per_page;
        settings.max_credit = max_credit.max(credit_per_page);
        Ok(settings)
    }
}

/// `[behaviour]`, compiled.
#[derive(Clone, Debug)]
pub(crate) struct BehaviourSettings {
    /// Half the sliding window, in milliseconds.
    pub(crate) bucket_ms: u32,
    /// Images without Referer in the window that raise `no-referer-images`.
    pub(crate) no_referer_images: u32,
    /// Images whose Referer is not a page this client viewed, for `referer-not-viewed`.
    pub(crate) unviewed_referer_images: u32,
    /// Images with no page view in the window, for `images-without-pages`.
    pub(crate) images_without_pages: u32,
    /// Images on a secure origin without `Sec-Fetch-Dest: image`, for `images-without-fetch-dest`.
    pub(crate) missing_fetch_dest_images: u32,
    /// Most zero bits left in the distinct-image sketch before `many-distinct-images`.
    pub(crate) distinct_zero_bits: u32,
    /// Consecutive numbers that raise `sequential-enumeration`.
    pub(crate) enumeration_run: u8,
    /// Images (all originals) that raise `originals-only`.
    pub(crate) originals_only: u32,
    /// Equal intervals in a row that raise `machine-regular-timing`.
    pub(crate) regular_run: u8,
    /// Shortest interval considered for timing, in milliseconds.
    pub(crate) regular_min_ms: u32,
    /// Address changes of one visitor in the window that raise `address-churn`.
    pub(crate) address_changes: u32,
    /// Image credit earned by a page view.
    pub(crate) credit_per_page: u16,
    /// Images of a page vouched before its viewer proved rendering (`[limits]`).
    pub(crate) unrendered_grace: u8,
    /// Most credit a client can hold.
    pub(crate) max_credit: u16,
    /// Markers of original or full-size variants in a path or query.
    pub(crate) originals: OriginalMarkers,
}

impl Default for BehaviourSettings {
    fn default() -> Self {
        BehaviourSettings::new(Duration::from_secs(60), 80, &default_original_markers())
    }
}

/// Path markers of original or full-size image variants.
pub(crate) fn default_original_markers() -> Vec<String> {
    [
        "/original/",
        "/originals/",
        "/full/",
        "/fullsize/",
        "_original.",
        "_full.",
        "-original.",
        "-full.",
        "size=original",
        "size=full",
    ]
    .map(String::from)
    .to_vec()
}

impl BehaviourSettings {
    /// Settings with the default thresholds for a window, a distinct-image threshold and
    /// the markers of originals.
    pub(crate) fn new(window: Duration, distinct_images: u32, markers: &[String]) -> Self {
        let bucket_ms = (window.as_millis() as u32 / 2).max(1);
        // Linear counting over 32 bits: n ≈ -32 ln(zeros / 32).
        let zeros = (32.0 * (-(f64::from(distinct_images)) / 32.0).exp()).floor() as u32;
        BehaviourSettings {
            bucket_ms,
            no_referer_images: 5,
            unviewed_referer_images: 5,
            address_changes: 3,
            images_without_pages: 10,
            missing_fetch_dest_images: 5,
            distinct_zero_bits: zeros,
            enumeration_run: 16,
            originals_only: 10,
            regular_run: 8,
            regular_min_ms: 200,
            credit_per_page: 100,
            unrendered_grace: 2,
            max_credit: 300,
            originals: OriginalMarkers::new(markers),
        }
    }
}

/// The markers of originals in a path, found by a byte prefilter before the automaton: every
/// default marker holds an `l`, most photo paths hold none, and `memchr` over a path costs a
/// few dozen instructions where the automaton costs several hundred.
#[derive(Clone, Debug)]
pub(crate) struct OriginalMarkers {
    automaton: AhoCorasick,
    /// Bytes one of which every marker holds (a letter in both cases); empty when no three
    /// bytes do, and then every path goes to the automaton.
    anchors: Vec<u8>,
}

impl OriginalMarkers {
    fn new(markers: &[String]) -> Self {
        OriginalMarkers {
            automaton: AhoCorasickBuilder::new()
                .ascii_case_insensitive(true)
                // A handful of short markers searched in a path: a DFA is the fastest, and
                // over a path's few bytes the automaton's own prefilter costs more to start
                // than it saves.
                .kind(Some(aho_corasick::AhoCorasickKind::DFA))
                .prefilter(false)
                .build(markers)
                .expect("plain markers build"),
            anchors: anchor_bytes(markers),
        }
    }

    /// Whether `haystack` holds a marker (ASCII case ignored).
    pub(crate) fn is_match(&self, haystack: &str) -> bool {
        let bytes = haystack.as_bytes();
        let may_hold = match *self.anchors.as_slice() {
            [a] => memchr::memchr(a, bytes).is_some(),
            [a, b] => memchr::memchr2(a, b, bytes).is_some(),
            [a, b, c] => memchr::memchr3(a, b, c, bytes).is_some(),
            _ => true,
        };
        may_hold && self.automaton.is_match(haystack)
    }
}

/// Bytes common in paths, the most common first: a marker's anchor is chosen among its
/// rarer bytes when several cover as many markers.
const COMMON_PATH_BYTES: &[u8] = b"/.-_0123456789eaoitnsrlcpgmhdufbjwykvxzq=?&";

/// At most three bytes (a letter counts as both its cases) such that every marker holds one
/// of them, chosen greedily: the byte the most markers not yet covered hold, the rarer in paths
/// on a tie. Empty when there is no such set, or a marker is empty (it matches everywhere).
fn anchor_bytes(markers: &[String]) -> Vec<u8> {
    let mut uncovered: Vec<&[u8]> = markers.iter().map(|m| m.as_bytes()).collect();
    if uncovered.iter().any(|m| m.is_empty()) {
        return Vec::new();
    }
    let commonness = |b: u8| {
        COMMON_PATH_BYTES
            .iter()
            .position(|&c| c == b)
            .map_or(0, |i| COMMON_PATH_BYTES.len() - i)
    };
    let mut anchors = Vec::new();
    while !uncovered.is_empty() {
        let mut holders = [0usize; 256];
        for marker in &uncovered {
            let mut held = [false; 256];
            for &b in *marker {
                held[usize::from(b.to_ascii_lowercase())] = true;
            }
            for (count, held) in holders.iter_mut().zip(held) {
                *count += usize::from(held);
            }
        }
        let Some(best) = (0..=255u8)
            .filter(|&b| holders[usize::from(b)] > 0)
            .max_by_key(|&b| (holders[usize::from(b)], std::cmp::Reverse(commonness(b))))
        else {
            break;
        };
        anchors.push(best);
        if best.is_ascii_lowercase() {
            anchors.push(best.to_ascii_uppercase());
        }
        if anchors.len() > 3 {
            return Vec::new();
        }
        uncovered.retain(|m| !m.iter().any(|b| b.to_ascii_lowercase() == best));
    }
    anchors
}

const PAGES: usize = 0;
const IMAGES: usize = 1;
const NO_REFERER: usize = 2;
const UNVIEWED: usize = 3;
const NO_FETCH_DEST: usize = 4;
const ORIGINALS: usize = 5;
const ADDRESS_CHANGES: usize = 6;
const COUNTERS: usize = 7;

const ROBOTS_FETCHED: u8 = 1;
const ROBOTS_IGNORED: u8 = 2;
const LATE_IMAGES: u8 = 4;
/// The last navigation came faster than the page pace allows.
const FAST_NAVIGATION: u8 = 8;
/// The last navigation was answered with the way-through page.
const WAY_OFFERED: u8 = 16;
/// The client fetched a render proof (a stylesheet only a renderer reads).
const RENDERED: u8 = 32;
/// Two bits: images vouched since the last navigation without a render proof.
const UNPROVEN_SHIFT: u32 = 6;
const UNPROVEN: u8 = 3 << UNPROVEN_SHIFT;

/// Most images of a page that can be vouched before its viewer proves rendering.
pub(crate) const MAX_UNRENDERED_GRACE: u8 = 3;

/// Trap marks are kept in units of 1024 ms (a u16 covers about 18 hours; marks up to half).
const TRAP_UNIT_SHIFT: u32 = 10;

/// Longest trap mark the tracker can hold.
pub(crate) const MAX_TRAP_MARK: Duration = Duration::from_secs((1 << 15) * 1024 / 1000);

/// One client's behaviour over the window. 44 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Behaviour {
    last_ms: u32,
    distinct: [u32; 2],
    counts: [[u8; COUNTERS]; 2],
    pages: [u16; 2],
    address: u16,
    credit: u16,
    number: u16,
    interval: u16,
    /// When the trap mark ends, in 1024 ms units (0: none).
    trap_until: u16,
    around: u8,
    run: u8,
    regular: u8,
    flags: u8,
}

/// What observing a request found.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Observed {
    /// The behaviour signals now raised for this client.
    pub(crate) reasons: Reasons,
    /// An image this client viewed the page of, paid for with page-view credit.
    pub(crate) vouched: bool,
    /// An image of a render-proof page from a client without a proof, beyond the page's
    /// grace: it must also pass the site's `unrendered_images` budget.
    pub(crate) unrendered: bool,
}

/// Bytes of [`Behaviour::encode`]. The trap mark comes first (a shared store merges it).
pub(crate) const BEHAVIOUR_BYTES: usize = 44;

/// Writes little-endian fields one after the other.
struct Wire<'a> {
    bytes: &'a mut [u8],
    at: usize,
}

impl Wire<'_> {
    fn bytes(&mut self, b: &[u8]) {
        self.bytes[self.at..self.at + b.len()].copy_from_slice(b);
        self.at += b.len();
    }
    fn u16(&mut self, v: u16) {
        self.bytes(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.bytes(&v.to_le_bytes());
    }
}

/// Reads what [`Wire`] wrote.
struct Unwire<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Unwire<'_> {
    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        out.copy_from_slice(&self.bytes[self.at..self.at + N]);
        self.at += N;
        out
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.array())
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.array())
    }
}

// === impl Behaviour: the one encoding (a shared store's wire form) ===

impl Behaviour {
    /// The record as bytes, little-endian, the trap mark first: a new field is one line here
    /// and one in [`decode`](Self::decode).
    pub(crate) fn encode(&self) -> [u8; BEHAVIOUR_BYTES] {
        let mut out = [0u8; BEHAVIOUR_BYTES];
        let mut w = Wire {
            bytes: &mut out,
            at: 0,
        };
        w.u16(self.trap_until);
        w.u32(self.last_ms);
        self.distinct.iter().for_each(|&d| w.u32(d));
        self.counts.iter().for_each(|c| w.bytes(c));
        self.pages.iter().for_each(|&p| w.u16(p));
        for v in [self.address, self.credit, self.number, self.interval] {
            w.u16(v);
        }
        w.bytes(&[self.around, self.run, self.regular, self.flags]);
        out
    }

    /// The record [`encode`](Self::encode) wrote.
    pub(crate) fn decode(bytes: &[u8; BEHAVIOUR_BYTES]) -> Behaviour {
        let mut r = Unwire { bytes, at: 0 };
        let trap_until = r.u16();
        let last_ms = r.u32();
        let distinct = [r.u32(), r.u32()];
        let counts = [r.array(), r.array()];
        let pages = [r.u16(), r.u16()];
        let [address, credit, number, interval] = [r.u16(), r.u16(), r.u16(), r.u16()];
        let [around, run, regular, flags] = r.array();
        Behaviour {
            last_ms,
            distinct,
            counts,
            pages,
            address,
            credit,
            number,
            interval,
            trap_until,
            around,
            run,
            regular,
            flags,
        }
    }
}

impl Behaviour {
    /// A client first seen at `now` (milliseconds).
    pub fn new(now: u32) -> Behaviour {
        Behaviour {
            last_ms: now,
            ..Behaviour::default()
        }
    }

    /// When the client was last seen.
    pub fn last_seen(&self) -> u32 {
        self.last_ms
    }

    /// Whether a trap mark is still in force at `now`.
    pub(crate) fn trap_marked(&self, now: u32) -> bool {
        let now = (now >> TRAP_UNIT_SHIFT) as u16;
        self.trap_until != 0 && (self.trap_until.wrapping_sub(now) as i16) > 0
    }

    /// Marks the client as a robots-ignoring scraper until `now + for_ms` (at most
    /// [`MAX_TRAP_MARK`]).
    pub(crate) fn mark_trap(&mut self, now: u32, for_ms: u32) {
        let max = MAX_TRAP_MARK.as_millis() as u32;
        let until = now
            .wrapping_add(for_ms.min(max))
            .wrapping_add((1 << TRAP_UNIT_SHIFT) - 1);
        self.trap_until = ((until >> TRAP_UNIT_SHIFT) as u16).max(1);
        if self.flags & ROBOTS_FETCHED != 0 {
            self.flags |= ROBOTS_IGNORED;
        }
    }

    /// Starts a visitor from the page its cookie was issued on.
    pub(crate) fn seed_page(&mut self, page: u16, credit: u16) {
        self.pages[0] = page;
        self.credit = credit;
        self.counts[0][PAGES] = 1;
    }

    /// The pages viewed and the credit held, to be put back with [`unview`](Self::unview).
    pub(crate) fn viewed(&self) -> ([u16; 2], u16) {
        (self.pages, self.credit)
    }

    /// Takes back what a page view earned when the page was refused after all.
    pub(crate) fn unview(&mut self, (pages, credit): ([u16; 2], u16)) {
        self.pages = pages;
        self.credit = credit;
    }

    /// Counts a response that turned out to be an image (by its Content-Type).
    pub(crate) fn late_image(&mut self) {
        bump(&mut self.counts[0][IMAGES]);
        self.flags |= LATE_IMAGES;
    }

    /// Whether the client's last navigation came faster than its page pace allows.
    pub(crate) fn fast_navigation(&self) -> bool {
        self.flags & FAST_NAVIGATION != 0
    }

    /// Notes that the client's last navigation was answered with the way-through page: until
    /// it navigates at pace again, it was given no page whose photos it could want.
    pub(crate) fn offer_way(&mut self) {
        self.flags |= WAY_OFFERED;
    }

    /// Whether the client's last navigation was answered with the way-through page.
    pub(crate) fn way_offered(&self) -> bool {
        self.flags & WAY_OFFERED != 0
    }

    /// Notes that the client fetched a render proof: from now on it is a renderer.
    pub(crate) fn prove_render(&mut self) {
        self.flags = (self.flags | RENDERED) & !UNPROVEN;
    }

    /// Whether the client has fetched a render proof.
    pub(crate) fn rendered(&self) -> bool {
        self.flags & RENDERED != 0
    }

    /// Whether this client has fetched images from paths that look like pages: its page
    /// views are then also charged as images.
    pub(crate) fn late_images(&self) -> bool {
        self.flags & LATE_IMAGES != 0
    }

    /// Records one request at `now` and returns the signals the client now raises.
    pub(crate) fn observe(&mut self, facts: &Facts, now: u32, s: &BehaviourSettings) -> Observed {
        self.rotate(now, s.bucket_ms);
        self.time(now, s);
        let mut vouched = false;
        let mut unrendered = false;
        let c = &mut self.counts[0];
        match facts.kind {
            Kind::Page => {
                bump(&mut c[PAGES]);
                if facts.navigation {
                    // Each page view has its own grace before the proof arrives.
                    self.flags &= !UNPROVEN;
                }
                let earned = facts.page_credit.unwrap_or(s.credit_per_page);
                if facts.navigation && facts.over_pace {
                    self.flags |= FAST_NAVIGATION;
                    if facts.newcomer && self.pages.contains(&facts.target) {
                        // Another person arriving on a page the address is on (six at once
                        // on a gallery's index): only that page's photos, once more.
                        self.earn(earned, s.max_credit.saturating_mul(2));
                    }
                } else if facts.navigation {
                    self.flags &= !(FAST_NAVIGATION | WAY_OFFERED);
                    if self.pages[0] != facts.target {
                        self.pages = [facts.target, self.pages[0]];
                    }
                    self.earn(earned, s.max_credit);
                }
            }
            Kind::Image => {
                bump(&mut c[IMAGES]);
                self.distinct[0] |= 1 << (facts.target & 31);
                match facts.referer {
                    Referer::None => bump(&mut c[NO_REFERER]),
                    Referer::Here(page)
                        if self.pages.contains(&page) && facts.embedded != Some(false) =>
                    {
                        let vouchable = self.credit > 0;
                        if vouchable {
                            self.credit -= 1;
                            vouched = true;
                        }
                        // Beyond the page's grace, without a proof, it must also pass the
                        // site's budget for non-renderers (the limit stage's).
                        unrendered = facts.render_page
                            && self.flags & RENDERED == 0
                            && beyond_render_grace(&mut self.flags, vouchable, s.unrendered_grace);
                    }
                    Referer::Here(_) if facts.render_page && self.flags & RENDERED == 0 => {
                        bump(&mut c[UNVIEWED]);
                        unrendered = true;
                    }
                    Referer::Here(_) | Referer::Elsewhere => bump(&mut c[UNVIEWED]),
                }
                if facts.no_fetch_dest {
                    bump(&mut c[NO_FETCH_DEST]);
                }
                if facts.original {
                    bump(&mut c[ORIGINALS]);
                }
            }
            Kind::Robots => self.flags |= ROBOTS_FETCHED,
            Kind::Other => {}
        }
        // People load the photos a page embeds in its order and click "next" through an
        // album: neither is enumeration. What counts is numbers walked without a page to
        // vouch for them, or by navigations beyond a person's pace.
        let at_pace_navigation = facts.navigation && !facts.over_pace;
        if matches!(facts.kind, Kind::Page | Kind::Image)
            && !vouched
            && !at_pace_navigation
            && let Some((around, number)) = facts.number
        {
            if around == self.around && number == self.number.wrapping_add(1) {
                self.run = self.run.saturating_add(1);
            } else if around != self.around || number != self.number {
                self.run = 1;
            }
            (self.around, self.number) = (around, number);
        }
        if facts.address != 0 && facts.address != self.address {
            if self.address != 0 {
                bump(&mut self.counts[0][ADDRESS_CHANGES]);
            }
            self.address = facts.address;
        }
        if facts.disallowed && self.flags & ROBOTS_FETCHED != 0 {
            self.flags |= ROBOTS_IGNORED;
        }
        let mut reasons = self.reasons(now, s, facts.kind == Kind::Image);
        if unrendered {
            reasons.insert(Reason::NoRender);
        }
        Observed {
            reasons,
            vouched,
            unrendered,
        }
    }

    /// Adds a page view's credit, up to `cap` (never taking away what is held beyond it).
    fn earn(&mut self, earned: u16, cap: u16) {
        self.credit = self.credit.max(self.credit.saturating_add(earned).min(cap));
    }

    /// The signals raised by the state at `now`.
    fn reasons(&self, now: u32, s: &BehaviourSettings, image: bool) -> Reasons {
        let mut reasons = Reasons::default();
        let into = now % s.bucket_ms;
        let est = |i: usize| -> u32 {
            let previous = u32::from(self.counts[1][i]) * (s.bucket_ms - into) / s.bucket_ms;
            u32::from(self.counts[0][i]) + previous
        };
        let at_least = |n: u32, threshold: u32| threshold > 0 && n >= threshold;
        let images = est(IMAGES);
        if at_least(est(NO_REFERER), s.no_referer_images) {
            reasons.insert(Reason::NoRefererImages);
        }
        if at_least(est(UNVIEWED), s.unviewed_referer_images) {
            reasons.insert(Reason::UnviewedReferer);
        }
        // Any page view in either bucket counts: the estimate rounds one page in the previous
        // bucket down to none, and a person's images often follow their page across the boundary.
        let no_pages = self.counts[0][PAGES] == 0 && self.counts[1][PAGES] == 0;
        if at_least(images, s.images_without_pages) && no_pages {
            reasons.insert(Reason::ImagesWithoutPages);
        }
        if at_least(est(NO_FETCH_DEST), s.missing_fetch_dest_images) {
            reasons.insert(Reason::MissingFetchDestImages);
        }
        if images > 0 && (self.distinct[0] | self.distinct[1]).count_zeros() <= s.distinct_zero_bits
        {
            reasons.insert(Reason::ManyDistinctImages);
        }
        if s.enumeration_run > 0 && self.run >= s.enumeration_run {
            reasons.insert(Reason::SequentialEnumeration);
        }
        if at_least(images, s.originals_only) && est(ORIGINALS) * 10 >= images * 9 {
            reasons.insert(Reason::OriginalsOnly);
        }
        if s.regular_run > 0 && self.regular >= s.regular_run {
            reasons.insert(Reason::RegularTiming);
        }
        if at_least(est(ADDRESS_CHANGES), s.address_changes) {
            reasons.insert(Reason::AddressChurn);
        }
        if self.flags & ROBOTS_IGNORED != 0 {
            reasons.insert(Reason::RobotsIgnored);
        }
        // Images only: the pages of an address's record are a crowd's first page views too.
        if image && self.flags & FAST_NAVIGATION != 0 {
            reasons.insert(Reason::FastNavigation);
        }
        if self.trap_marked(now) {
            reasons.insert(Reason::TrapHit);
        }
        reasons
    }

    fn rotate(&mut self, now: u32, bucket_ms: u32) {
        let current = now / bucket_ms;
        let last = self.last_ms / bucket_ms;
        if current == last {
            return;
        }
        if current == last.wrapping_add(1) {
            self.counts[1] = self.counts[0];
            self.distinct[1] = self.distinct[0];
        } else {
            self.counts[1] = [0; COUNTERS];
            self.distinct[1] = 0;
        }
        self.counts[0] = [0; COUNTERS];
        self.distinct[0] = 0;
    }

    fn time(&mut self, now: u32, s: &BehaviourSettings) {
        let interval = now.wrapping_sub(self.last_ms);
        self.last_ms = now;
        if interval < s.regular_min_ms {
            if interval > 0 {
                self.regular = 0;
            }
            return;
        }
        let interval = interval.min(u32::from(u16::MAX)) as u16;
        let previous = self.interval;
        let tolerance = previous / 10 + 5;
        if previous != 0 && interval.abs_diff(previous) <= tolerance {
            self.regular = self.regular.saturating_add(1);
        } else {
            self.regular = 0;
        }
        self.interval = interval;
    }
}

/// An image of a render-proof page by a client without a proof: whether it is beyond the
/// page's grace (its `vouchable` images up to `grace` are counted into `flags`).
fn beyond_render_grace(flags: &mut u8, vouchable: bool, grace: u8) -> bool {
    let counted = (*flags & UNPROVEN) >> UNPROVEN_SHIFT;
    if vouchable && counted < grace {
        *flags = (*flags & !UNPROVEN) | ((counted + 1) << UNPROVEN_SHIFT);
        return false;
    }
    true
}

fn bump(counter: &mut u8) {
    *counter = counter.saturating_add(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The prefilter never hides a marker the automaton alone finds, with the default markers
    /// (one anchor letter) and with markers no three bytes cover (no prefilter).
    #[test]
    fn the_originals_prefilter_finds_what_the_automaton_finds() {
        let owned = |list: &[&str]| list.iter().map(|m| m.to_string()).collect::<Vec<_>>();
        let defaults = OriginalMarkers::new(&default_original_markers());
        assert_eq!(defaults.anchors, b"lL");
        let scattered = OriginalMarkers::new(&owned(&["ab", "cd", "ef", "gh"]));
        assert!(scattered.anchors.is_empty());
        let symbols = OriginalMarkers::new(&owned(&["~1", "~2", "^x", "@y"]));
        assert_eq!(symbols.anchors.len(), 3);
        let paths = [
            "/photos/IMG_0001.jpg",
            "/photos/ORIGINAL/IMG_0001.jpg",
            "/photos/original/1.jpg",
            "/p/IMG_0001_FULL.JPG",
            "/p/1.jpg?size=Full",
            "/gallery/1/fullsize/2.webp",
            "/gallery/2.jpg",
            "/a/b-full.png",
            "/x~1/y",
            "/ab/cd.jpg",
            "/GH",
            "/@y",
            "",
        ];
        for markers in [defaults, scattered, symbols] {
            for path in paths {
                assert_eq!(
                    markers.is_match(path),
                    markers.automaton.is_match(path),
                    "{path} with anchors {:?}",
                    markers.anchors
                );
            }
        }
        assert!(OriginalMarkers::new(&default_original_markers()).is_match("/P/A_FULL.JPG"));
        assert!(!OriginalMarkers::new(&default_original_markers()).is_match("/photos/1.jpg"));
        assert!(OriginalMarkers::new(&owned(&["", "x"])).anchors.is_empty());
    }

    #[test]
    fn the_encoding_gives_back_every_field() {
        let b = Behaviour {
            last_ms: 0x0102_0304,
            distinct: [5, 0x0607_0809],
            counts: [[1, 2, 3, 4, 5, 6, 7], [8, 9, 10, 11, 12, 13, 14]],
            pages: [15, 0x1617],
            address: 18,
            credit: 19,
            number: 20,
            interval: 21,
            trap_until: 0x2223,
            around: 24,
            run: 25,
            regular: 26,
            flags: 27,
        };
        let bytes = b.encode();
        assert_eq!(
            &bytes[..2],
            &0x2223u16.to_le_bytes(),
            "the trap mark comes first"
        );
        assert_eq!(Behaviour::decode(&bytes), b);
    }

    fn run(client: &mut Behaviour, facts: &[(u32, Facts)]) -> Observed {
        let s = BehaviourSettings::default();
        let mut last = Observed::default();
        for (t, f) in facts {
            last = client.observe(f, *t, &s);
        }
        last
    }

    #[test]
    fn state_fits_its_budget() {
        assert_eq!(std::mem::size_of::<Behaviour>(), 44);
    }

    #[test]
    fn a_person_raises_nothing() {
        let mut c = Behaviour::new(1);
        let mut t = 1;
        for page in 0..4 {
            let url = format!("/gallery/{page}");
            let mut steps = vec![(t, Facts::for_test(Kind::Page, &url, None))];
            for i in 0..12 {
                t += 7 + (i * 13) % 40;
                let img = format!("/photos/p{page}-{}.jpg", (i * 7) % 12);
                steps.push((t, Facts::for_test(Kind::Image, &img, Some(&url))));
            }
            let observed = run(&mut c, &steps);
            assert!(observed.reasons.is_empty(), "{:?}", observed.reasons);
            assert!(observed.vouched);
            t += 20_000 + page * 3_000;
        }
    }

    /// Photos of `page` until one is not vouched: how many were.
    fn vouched_photos(c: &mut Behaviour, t: u32, page: &str, most: u32) -> u32 {
        let s = BehaviourSettings::default();
        (0..most)
            .take_while(|i| {
                let photo = Facts::for_test(Kind::Image, &format!("/p/{}.jpg", i % 66), Some(page));
                c.observe(&photo, t + i, &s).vouched
            })
            .count() as u32
    }

    #[test]
    fn a_newcomer_arriving_on_a_page_already_viewed_earns_its_photos_once_more() {
        let s = BehaviourSettings::default();
        let view = |target: &str, newcomer: bool| {
            let mut f = Facts::for_test(Kind::Page, target, None);
            (f.over_pace, f.newcomer, f.page_credit) = (newcomer, newcomer, Some(84));
            f
        };
        let mut address = Behaviour::new(1);
        for _ in 0..3 {
            address.observe(&view("/", false), 1, &s);
        }
        // Three more people arrive on the index beyond the address's pace.
        for _ in 0..3 {
            address.observe(&view("/", true), 2, &s);
        }
        assert!(address.fast_navigation());
        assert_eq!(vouched_photos(&mut address, 3, "/", 1_000), 6 * 84);
        // Beyond the pace on a page the address never viewed: nothing, and not remembered.
        let mut other = Behaviour::new(1);
        other.observe(&view("/", false), 1, &s);
        other.observe(&view("/gallery/2", true), 2, &s);
        assert_eq!(vouched_photos(&mut other, 3, "/gallery/2", 1_000), 0);
        assert_eq!(vouched_photos(&mut other, 3, "/", 1_000), 84);
        // Arrivals bank at most twice `max_credit`, and a view at pace never takes it away.
        let mut many = Behaviour::new(1);
        many.observe(&view("/", false), 1, &s);
        for _ in 0..20 {
            many.observe(&view("/", true), 2, &s);
        }
        many.observe(&view("/", false), 3, &s);
        assert_eq!(
            vouched_photos(&mut many, 4, "/", 1_000),
            2 * u32::from(s.max_credit)
        );
    }

    /// A page view, then `images` of it, on a page that carries the render proof.
    fn proof_page_then_images(c: &mut Behaviour, t: u32, page: &str, images: u32) -> Vec<Observed> {
        let s = BehaviourSettings::default();
        let mut seen = vec![c.observe(&Facts::for_test(Kind::Page, page, None), t, &s)];
        for i in 0..images {
            let mut image = Facts::for_test(Kind::Image, &format!("{page}/{i}.jpg"), Some(page));
            image.render_page = true;
            seen.push(c.observe(&image, t + 10 + i, &s));
        }
        seen
    }

    #[test]
    fn without_a_render_proof_a_pages_images_beyond_its_first_two_are_held() {
        let mut script = Behaviour::new(1);
        let seen = proof_page_then_images(&mut script, 1, "/g/1", 6);
        let held: Vec<bool> = seen[1..].iter().map(|o| o.unrendered).collect();
        assert_eq!(held, [false, false, true, true, true, true]);
        assert!(seen[1..3].iter().all(|o| o.vouched && o.reasons.is_empty()));
        assert!(
            seen[3..]
                .iter()
                .all(|o| o.reasons.contains(Reason::NoRender))
        );
        // The next page has a grace of its own.
        let seen = proof_page_then_images(&mut script, 30_000, "/g/2", 3);
        assert_eq!(seen.iter().filter(|o| o.unrendered).count(), 1);
        assert!(!script.rendered());
    }

    #[test]
    fn a_renderer_gets_every_image_and_a_late_proof_lifts_the_hold() {
        let mut person = Behaviour::new(1);
        person.prove_render();
        let seen = proof_page_then_images(&mut person, 1, "/g/1", 20);
        assert!(seen[1..].iter().all(|o| o.vouched && !o.unrendered));
        assert!(seen.iter().all(|o| o.reasons.is_empty()));
        // A proof that arrives after the page's grace: the rest of its images are vouched.
        let mut late = Behaviour::new(1);
        let seen = proof_page_then_images(&mut late, 1, "/g/1", 3);
        assert!(seen[3].unrendered);
        late.prove_render();
        let mut image = Facts::for_test(Kind::Image, "/g/1/4.jpg", Some("/g/1"));
        image.render_page = true;
        let after = late.observe(&image, 100, &BehaviourSettings::default());
        assert!(after.vouched && !after.unrendered);
        assert!(late.rendered());
    }

    #[test]
    fn images_of_a_proof_page_never_viewed_are_unrendered_from_the_first() {
        // A client rotating its address with every request: a new record per image.
        let mut fresh = Behaviour::new(1);
        let mut image = Facts::for_test(Kind::Image, "/g/1/0.jpg", Some("/g/1"));
        image.render_page = true;
        let seen = fresh.observe(&image, 5, &BehaviourSettings::default());
        assert!(seen.unrendered && !seen.vouched);
        // A page without the proof (another site's HTML, compressed pages) holds nothing.
        image.render_page = false;
        let seen = Behaviour::new(1).observe(&image, 5, &BehaviourSettings::default());
        assert!(!seen.unrendered);
    }

    #[test]
    fn a_visitor_rotating_addresses_raises_address_churn() {
        let settings = BehaviourSettings::default();
        let at = |address: u16, t: u32| {
            let mut facts = Facts::for_test(Kind::Image, &format!("/p/{t}.jpg"), Some("/"));
            facts.address = address;
            (t, facts)
        };
        // A phone moving from Wi-Fi to mobile data and back: two changes, nothing raised.
        let mut phone = Behaviour::new(1);
        let steps = [at(7, 10), at(7, 400), at(9, 900), at(9, 1500), at(7, 2500)];
        for (t, facts) in &steps {
            let observed = phone.observe(facts, *t, &settings);
            assert!(!observed.reasons.contains(Reason::AddressChurn));
        }
        // One script sending each request from another address of its /24.
        let mut script = Behaviour::new(1);
        let mut raised = false;
        for n in 0..6u16 {
            let (t, facts) = at(100 + n, 10 + u32::from(n) * 300);
            raised = script
                .observe(&facts, t, &settings)
                .reasons
                .contains(Reason::AddressChurn);
        }
        assert!(raised);
    }

    #[test]
    fn images_of_pages_viewed_long_ago_are_not_vouched() {
        let mut c = Behaviour::new(1);
        let mut steps = Vec::new();
        for page in 0..8 {
            steps.push((
                1 + page,
                Facts::for_test(Kind::Page, &format!("/g/{page}"), None),
            ));
        }
        run(&mut c, &steps);
        let old = run(
            &mut c,
            &[(20, Facts::for_test(Kind::Image, "/p/1.jpg", Some("/g/0")))],
        );
        assert!(!old.vouched);
        let recent = run(
            &mut c,
            &[(21, Facts::for_test(Kind::Image, "/p/9.jpg", Some("/g/7")))],
        );
        assert!(recent.vouched);
    }

    #[test]
    fn numbers_and_their_surroundings() {
        let (a, n) = last_number(b"/photos/IMG_0017.jpg").unwrap();
        assert_eq!(n, 17);
        let (b, m) = last_number(b"/photos/IMG_0018.jpg").unwrap();
        assert_eq!((a, m), (b, 18));
        assert_eq!(last_number(b"/gallery?page=3").unwrap().1, 3);
        assert_eq!(last_number(b"/about"), None);
    }

    #[test]
    fn referers_are_matched_by_host() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "pub.example".parse().unwrap());
        h.insert(
            header::REFERER,
            "https://pub.example/gallery?x=1#top".parse().unwrap(),
        );
        assert_eq!(
            read_referer(h.get(header::REFERER), h.get(header::HOST)).0,
            Referer::Here(target_hash(b"/gallery?x=1"))
        );
        h.insert(
            header::REFERER,
            "https://elsewhere.example/".parse().unwrap(),
        );
        let elsewhere = read_referer(h.get(header::REFERER), h.get(header::HOST));
        assert_eq!(elsewhere.0, Referer::Elsewhere);
    }

    #[test]
    fn regular_timing_and_the_window() {
        let s = BehaviourSettings::default();
        let mut c = Behaviour::new(1);
        let mut r = Reasons::default();
        for i in 0..12 {
            let f = Facts::for_test(Kind::Page, &format!("/a?q={}", i * 7 % 5), None);
            r = c.observe(&f, 1 + i * 1000, &s).reasons;
        }
        assert!(r.contains(Reason::RegularTiming));
        // Ten minutes later the window has forgotten everything but the rhythm's end.
        let f = Facts::for_test(Kind::Image, "/x.jpg", None);
        let r = c.observe(&f, 600_000, &s).reasons;
        assert!(r.is_empty(), "{r:?}");
    }

    #[test]
    fn photos_in_page_order_and_next_clicks_are_not_enumeration() {
        let s = BehaviourSettings::default();
        let mut person = Behaviour::new(1);
        let mut t = 1;
        for page in 1..=20u32 {
            let url = format!("/album?page={page}");
            let r = person.observe(&Facts::for_test(Kind::Page, &url, None), t, &s);
            assert!(!r.reasons.contains(Reason::SequentialEnumeration));
            for i in 0..20 {
                t += 15;
                let photo = format!("/photos/IMG_{:04}.jpg", page * 20 + i);
                let r = person.observe(&Facts::for_test(Kind::Image, &photo, Some(&url)), t, &s);
                assert!(r.vouched);
                assert!(
                    !r.reasons.contains(Reason::SequentialEnumeration),
                    "{photo}"
                );
            }
            t += 5_000;
        }
        // The same numbers without a page: enumeration.
        let mut script = Behaviour::new(1);
        let mut raised = false;
        for n in 0..20 {
            let photo = format!("/photos/IMG_{n:04}.jpg");
            raised |= script
                .observe(&Facts::for_test(Kind::Image, &photo, None), 10 + n * 10, &s)
                .reasons
                .contains(Reason::SequentialEnumeration);
        }
        assert!(raised);
    }

    #[test]
    fn robots_then_disallowed() {
        let s = BehaviourSettings::default();
        let mut c = Behaviour::new(1);
        let mut robots = Facts::for_test(Kind::Robots, "/robots.txt", None);
        c.observe(&robots, 2, &s);
        robots.kind = Kind::Page;
        robots.disallowed = true;
        let r = c.observe(&robots, 3, &s).reasons;
        assert!(r.contains(Reason::RobotsIgnored));
    }
}
