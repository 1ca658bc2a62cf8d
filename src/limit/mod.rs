//! Rate limits and behaviour: make bulk harvesting slow, and never hinder a person.
//!
//! ```
//! use std::convert::Infallible;
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use lenscap::limit::ManualClock;
//! use lenscap::{LenscapLayer, PeerAddr, Policy};
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let clock = ManualClock::new();
//! let mut app = ServiceBuilder::new()
//!     .layer(LenscapLayer::new(Policy::embedded().unwrap()).with_clock(clock.clone()))
//!     .service(service_fn(|_req: Request<()>| async {
//!         Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"photo"))))
//!     }));
//!
//! // A script with a browser's headers pulling photos it never saw on a page.
//! let mut statuses = Vec::new();
//! for n in 1..=20 {
//!     let mut request = Request::get(format!("/photos/IMG_{n:04}.jpg"))
//!         .header("user-agent", "Mozilla/5.0 (X11; Linux x86_64; rv:150.0) Gecko/20100101 Firefox/150.0")
//!         .header("accept", "image/avif,image/webp,*/*")
//!         .header("accept-language", "en")
//!         .header("accept-encoding", "gzip, br")
//!         .body(())
//!         .unwrap();
//!     request.extensions_mut().insert(PeerAddr("203.0.113.9:5555".parse().unwrap()));
//!     let response = app.ready().await.unwrap().call(request).await.unwrap();
//!     statuses.push(response.status());
//!     if response.status() == StatusCode::TOO_MANY_REQUESTS {
//!         assert!(response.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
//!     }
//! }
//! assert_eq!(statuses[0], StatusCode::OK);
//! assert_eq!(statuses[19], StatusCode::TOO_MANY_REQUESTS);
//! # });
//! ```
//!
//! ## The model
//!
//! **Who is a client.** A request carrying a valid visitor cookie is its own client; a request
//! without one is the anonymous client of its IP address. Every client also sits inside its
//! subnet (`/24` for IPv4, `/64` for IPv6, `[client]` prefixes), which has budgets of its own,
//! so rotating addresses inside a subnet buys no fresh budget.
//!
//! **The visitor cookie.** Page views without a valid cookie get one: a random id, its issue
//! time and the page it was issued on, signed (SipHash-2-4-128) together with the client's subnet;
//! `HttpOnly`, `SameSite=Lax`, a short lifetime (`[cookie] lifetime`), no personal data. The key
//! is made afresh each time the policy is loaded unless `[cookie] secret` is set. A forged
//! cookie fails the signature and the request stays anonymous; a cookie copied to another
//! network fails too (the subnet is signed); a cookie shared by many clients on one network
//! makes them one client with one budget. Either way it earns nothing. The signature (over the
//! id, the issue time and the page) is checked on every request, so a cookie cannot be revived
//! by rewriting its issue time, nor replayed with its signature stripped.
//!
//! **Credit.** A page view by a browser navigation (`Accept: text/html`, or
//! `Sec-Fetch-Dest: document`) earns its client `credit_per_page` image credit (up to
//! `max_credit`). An image whose Referer is one of the client's last two pages spends one
//! credit and is *vouched*: it is not charged to the client's tight image quota, only to the
//! subnet's generous `subnet_vouched_images` ceiling. Everything else — no Referer, a Referer the
//! client never viewed, credit spent — is charged to `images` (per client) and `subnet_images`
//! (per subnet). So a crowd behind one address, each person viewing pages and then their
//! images, has an image budget that grows with its page views, while a script pulling images
//! it never saw on a page runs into a small flat budget after a handful.
//!
//! **What the page embeds.** As an HTML page streams out, the layer reads the images it
//! embeds ([`signals::embeds`](crate::signals::embeds): `img src`/`srcset`, `picture source`,
//! links to image files) into a small set kept per page, site-wide. Once a page's set is known,
//! a view of it earns as much credit as it embeds (a little more for slack), and an image is
//! vouched only when the Referer page embeds it: an image nobody's page embedded earns
//! nothing.
//!
//! **Pace.** People page at a person's pace. Each client has a GCRA cell for navigations
//! (`page_pace` for a cookie visitor, a wider `anonymous_page_pace` for an address without
//! cookies, which every newcomer's first page shares): a navigation beyond it is served but
//! earns no credit and is not remembered as viewed, and the client's images raise
//! `fast-navigation` until it navigates at pace again. Once people without cookies on an
//! address hold passes, every anonymous click there gets the way-through page, so each of
//! them leaves the address's shared record with a pass of their own
//! (the way-through pass's module, `limit/pass.rs`, has the details).
//!
//! **Long horizons.** `pages`, `images`, `subnet_pages`, `subnet_images` and
//! `subnet_vouched_images` default to a burst sized for a visit and an hourly or daily rate
//! (see `config/lenscap.toml` for the numbers). A page view without a cookie — a newcomer's
//! first page — is charged to its subnet only. Every page view and vouched photo is also
//! charged to its address, a share for each visitor established on it; the extra shares buy
//! repeat views, not new photos: a crowd's photos new to the address are held to one ceiling
//! however many shares it has ([`DistinctPhotos`], `limit/distinct.rs`).
//!
//! **Images by Content-Type.** A request is an image by its path extension, by
//! `Sec-Fetch-Dest: image` or by an `image/…` Accept; a page-looking request whose response
//! turns out to be `image/…` is counted as an image afterwards, and from then on that client's
//! page-looking requests are charged to its image quota too (`/photo?id=17` harvesting).
//!
//! **Behaviour.** Every request also passes the tracker
//! (the behaviour tracker of the classify stage); the signals it raises join the
//! verdict's reasons and score, and a client whose score reaches `[verdict] throttle_at` is a
//! suspect: its pages and images are charged to `suspect_pages` and `suspect_images` (credit
//! no longer helps). At `block_at` it is blocked.
//!
//! **Over quota**: `429 Too Many Requests`, `Retry-After` in whole seconds rounded up from the
//! limiter's wait (never 0), and the IETF `RateLimit-Policy` / `RateLimit` fields naming the
//! quota; or, with `over_quota = "tarpit"`, the request is served after the `[tarpit]` delay
//! with at most `tarpit.max_held` held at once.
//!
//! **Traps.** `[traps] paths` are answered by the layer with a small harmless page; the client
//! is marked (`trap-hit`) for `mark_for`: the cookie visitor that asked when its cookie is
//! valid, the address otherwise (never the address for a visitor's hit: its other people
//! did nothing). Trap paths and `[traps] disallowed` are what
//! robots.txt disallows: a client that fetched robots.txt and then requests one raises
//! `robots-ignored`.
//!
//! **Memory.** One record per client (80 bytes in the map) holds its tracker and its page,
//! pace and image cells; one per subnet (24 bytes); one of distinct photos (2 KiB) per crowd
//! or heavy address, at most one per 64 clients. `max_tracked_clients` bounds them,
//! evicting the stalest; a cleanup task (started with the first request inside a tokio
//! runtime) drops idle entries (`retain_recent`) and gives memory back (`shrink_to_fit`).
//! The GCRA arithmetic is
//! governor's ([`Rate`]), run over cells held in these records rather than in one governor
//! map per quota: one lookup per key instead of one per quota, and a quarter of the memory.

mod clock;
mod config;
mod cookie;
mod distinct;
mod pass;
mod rate;
#[cfg(feature = "redis")]
mod redis;
mod render;
mod store;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Response, header};

pub use crate::signals::behaviour::Behaviour;
pub use clock::{Clock, ManualClock, SystemClock};
pub(crate) use config::{
    BlockConfig, CookieConfig, Enforcement, LimitConfig, LimitSettings, LimitsConfig, TarpitConfig,
    TrapsConfig,
};
pub use distinct::{DISTINCT_BYTES, DistinctPhotos};
pub(crate) use pass::PassError;
pub use pass::{PASS_PARAM, PASS_PATH, with_pass};
pub use rate::{Millis, Rate};
#[cfg(feature = "redis")]
pub use redis::{
    Fleet, FleetClock, Merged, Merging, RedisStore, Servers, StoreConfig, StoreSettings,
    hold_writes,
};
pub use render::RENDER_PATH;
pub(crate) use render::RenderError;
pub use store::{
    CLIENT_BYTES, CLIENT_CELLS, ClientRecord, MemoryStore, Prefetching, RecordKeys, SUBNET_BYTES,
    SUBNET_CELLS, StateStore, SubnetRecord,
};

use crate::classify::Classification;
use crate::client::{ClientId, SubnetPrefixes};
use crate::decide::Scoring;
use crate::request_headers::RequestHeaders;
use crate::signals::behaviour::{Facts, Kind};
use crate::signals::embeds::{EmbedScanner, EmbedTable};
use crate::verdict::{Action, Reason, Reasons, Verdict};
use distinct::Served;
use pass::{Binding, PassSource};

/// A page view's cookie seeds its visitor's credit only this soon after issue.
const SEED_WITHIN_SECS: u64 = 60;

/// Per-request state the limiters keep across requests: the store, the clock, the cleanup
/// task. Shared by every clone of a layer, and kept when the policy is swapped.
#[derive(Debug)]
pub struct Limits {
    store: Arc<dyn StateStore>,
    /// The images each page served lately embeds.
    embeds: Arc<EmbedTable>,
    clock: Arc<dyn Clock>,
    /// The seed of [`key`](Self::key): random, or the one a shared store's fleet uses.
    key_seed: Arc<AtomicU64>,
    cleanup_started: AtomicBool,
    /// Responses stream through the layer, so a page view's body can be read and added to.
    streams_bodies: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits::new(MemoryStore::default(), SystemClock::default())
    }
}

impl Limits {
    /// Limits keeping state in `store` and reading time from `clock`.
    pub fn new(store: impl StateStore, clock: impl Clock) -> Limits {
        use std::hash::BuildHasher;
        let key_seed = store.key_seed().unwrap_or_else(|| {
            Arc::new(AtomicU64::new(
                foldhash::quality::RandomState::default().hash_one(0u8),
            ))
        });
        Limits {
            store: Arc::new(store),
            embeds: Arc::default(),
            clock: Arc::new(clock),
            key_seed,
            cleanup_started: AtomicBool::new(false),
            streams_bodies: true,
        }
    }

    /// The same limits for requests whose responses never stream through the layer
    /// (`lenscap replay`): a page view gets no reader of the images its body embeds and no
    /// render proof link to put in it, which only a streamed body could use.
    #[cfg(feature = "cli")]
    pub(crate) fn without_bodies(mut self) -> Limits {
        self.streams_bodies = false;
        self
    }

    /// The same limits reading time from `clock` instead.
    pub(crate) fn set_clock(&mut self, clock: impl Clock) {
        self.clock = Arc::new(clock);
    }

    /// The same limits keeping state in `store` instead.
    pub(crate) fn set_store(&mut self, store: impl StateStore) {
        if let Some(seed) = store.key_seed() {
            self.key_seed = seed;
        }
        self.store = Arc::new(store);
    }

    /// Client records held now (the `tracked clients` metric).
    pub fn tracked_clients(&self) -> usize {
        self.store.tracked_clients()
    }

    /// Records evicted to stay under `max_tracked_clients` (the `evictions` metric).
    pub fn evictions(&self) -> u64 {
        self.store.evictions()
    }

    /// The state store.
    pub fn store(&self) -> &dyn StateStore {
        &*self.store
    }

    /// The clock.
    pub fn clock(&self) -> &dyn Clock {
        &*self.clock
    }

    fn key<T: std::hash::Hash>(&self, value: T) -> u64 {
        use std::hash::BuildHasher;
        foldhash::quality::FixedState::with_seed(self.key_seed.load(Ordering::Relaxed))
            .hash_one(value)
    }

    /// With a shared store, the request's records, fetched before it is decided (`None`
    /// with the in-process store, or with limits off): the address's, the cookie visitor's
    /// and the subnet's, as the limit stage will ask for them.
    pub(crate) fn prefetch<B>(
        &self,
        inputs: Inputs<'_>,
        request: &http::Request<B>,
        client: ClientId,
    ) -> Option<Prefetching> {
        if !self.store.shared() || !inputs.settings.enabled {
            return None;
        }
        let ls = inputs.settings;
        let headers = request.headers();
        let subnet = client.subnet_key(inputs.subnets);
        let unix = self.clock.unix_secs();
        let known = RequestHeaders::of(headers);
        let visitor = ls.cookie.read(&known, unix, subnet).map(|v| v.id);
        // Its Referer too, whatever the request turns out to be: a record more is no cost.
        let pass = ls.pass.read(
            &ls.cookie,
            &known,
            request.uri().query(),
            true,
            unix,
            || Binding::of(&known, subnet, visitor),
        );
        self.store.prefetch(RecordKeys {
            client: self.key((1u8, client.key())),
            visitor: visitor.map(|id| self.key((2u8, id, subnet))),
            pass: pass.map(|(pass, _)| self.key((4u8, pass.id, subnet))),
            subnet: self.key((3u8, subnet)),
            pass_counts: [
                self.address_passes_key(client),
                self.subnet_passes_key(subnet),
            ],
            site: self.unrendered_key(),
        })
    }

    /// The key of the record (in the subnets' map) counting the passes held on an address.
    fn address_passes_key(&self, client: ClientId) -> u64 {
        self.key((6u8, client.key()))
    }

    /// The key of the record (in the subnets' map) counting the passes held on a subnet.
    fn subnet_passes_key(&self, subnet: u128) -> u64 {
        self.key((7u8, subnet))
    }

    /// The key of the site's record of the `unrendered_images` budget.
    fn unrendered_key(&self) -> u64 {
        self.key((UNRENDERED_RECORD, 0u8))
    }

    fn start_cleanup(&self, settings: &LimitSettings) {
        if self.cleanup_started.load(Ordering::Relaxed)
            || self.cleanup_started.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let store = Arc::downgrade(&self.store);
        let clock = self.clock.clone();
        let every = settings.cleanup_every.max(Duration::from_millis(100));
        let idle = settings
            .idle_after
            .as_millis()
            .min(u128::from(u32::MAX / 2)) as u32;
        runtime.spawn(async move {
            let mut high_water = 0;
            loop {
                tokio::time::sleep(every).await;
                let Some(store) = store.upgrade() else { return };
                store.retain_recent(clock.now_ms(), idle);
                let now = store.tracked_clients();
                high_water = high_water.max(now);
                if now < high_water / 2 {
                    store.shrink_to_fit();
                    high_water = now;
                }
            }
        });
    }
}

/// Work left for the response: a cookie to set, a late look at its Content-Type.
#[derive(Debug, Default)]
pub(crate) struct AfterResponse {
    set_cookie: Option<HeaderValue>,
    /// The pass a page was asked with in its URL (`lc-pass=…`): its same-origin links carry
    /// it on.
    link_pass: Option<Box<str>>,
    late: Option<Box<LateImage>>,
    embeds: Option<Box<PageEmbeds>>,
    /// `crawler-charged`: what a licensed request was charged.
    charged: Option<HeaderValue>,
}

/// Reads the images a page embeds from its HTML as it streams out, and keeps them for the
/// page's key when the page is complete.
#[derive(Debug)]
pub(crate) struct PageEmbeds {
    table: Arc<EmbedTable>,
    page: u64,
    scanner: EmbedScanner,
    /// A view at pace: what the page embeds is worth remembering.
    remember: bool,
    /// The render proof's `<link>` to put before the page's `</head>`.
    render_link: Option<Box<[u8]>>,
    /// The link went in.
    render_injected: bool,
}

impl PageEmbeds {
    /// Reads the next bytes of the page.
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        self.scanner.feed(bytes);
    }

    /// The render proof's `<link>` still to put in the page, if any.
    pub(crate) fn render_link(&self) -> Option<&[u8]> {
        self.render_link
            .as_deref()
            .filter(|_| !self.render_injected)
    }

    /// The render proof's link went into the page.
    pub(crate) fn render_injected(&mut self) {
        self.render_injected = true;
    }

    /// A reader of a page that embeds nothing yet, with `link` to put in it (for tests).
    #[cfg(test)]
    pub(crate) fn for_test(link: &str) -> PageEmbeds {
        PageEmbeds {
            table: Arc::default(),
            page: 1,
            scanner: EmbedScanner::new("/"),
            remember: true,
            render_link: Some(link.as_bytes().into()),
            render_injected: false,
        }
    }

    /// Whether the render proof's link went into the page (for tests).
    #[cfg(test)]
    pub(crate) fn was_injected(&self) -> bool {
        self.render_injected
    }

    /// The page has no `</head>` where it was looked for: it goes without the proof.
    pub(crate) fn render_given_up(&mut self) {
        self.render_link = None;
    }

    /// The page is complete: remember what it embeds, and whether it carried the render
    /// proof. A page that embeds no image in its HTML (a gallery built by script) stays
    /// unknown: its views earn credit as before.
    pub(crate) fn finish(self) {
        let mut set = self.scanner.finish();
        if self.render_injected {
            set.mark_render_proof();
        }
        if self.remember && set.count() > 0 {
            self.table.store(self.page, set);
        }
    }
}

/// A `200` HTML page served as is (no `Content-Encoding`): one the layer can read and add to.
fn is_plain_html<B>(response: &Response<B>) -> bool {
    response.status() == http::StatusCode::OK
        && response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|t| t.as_bytes().starts_with(b"text/html"))
        && response
            .headers()
            .get(header::CONTENT_ENCODING)
            .is_none_or(|e| e.as_bytes().eq_ignore_ascii_case(b"identity"))
}

#[derive(Debug)]
struct LateImage {
    store: Arc<dyn StateStore>,
    key: u64,
    subnet: u64,
    now: Millis,
    cap: usize,
    images: Rate,
    subnet_images: Rate,
}

impl AfterResponse {
    /// The pass the page's same-origin links should carry (a pass holder that may keep no
    /// cookies asked for it with the pass in its URL).
    pub(crate) fn link_pass(&self) -> Option<&str> {
        self.link_pass.as_deref()
    }

    /// The reader of the page's images, when the response is an HTML page (call after
    /// [`apply`](Self::apply)).
    pub(crate) fn take_embeds<B>(&mut self, response: &Response<B>) -> Option<Box<PageEmbeds>> {
        let embeds = self.embeds.take()?;
        is_plain_html(response).then_some(embeds)
    }

    /// Applies the leftover work to the inner service's response.
    /// Says on the response what a licensed request was charged (`crawler-charged`).
    pub(crate) fn charge(&mut self, price: HeaderValue) {
        self.charged = Some(price);
    }

    pub(crate) fn apply<B>(&mut self, response: &mut Response<B>) {
        if let Some(price) = self.charged.take() {
            response
                .headers_mut()
                .insert(crate::documents::CRAWLER_CHARGED, price);
        }
        if let Some(cookie) = self.set_cookie.take() {
            response.headers_mut().append(header::SET_COOKIE, cookie);
        }
        if let Some(embeds) = self.embeds.as_mut()
            && embeds.render_link.is_some()
            && is_plain_html(response)
        {
            if forbids_transform(response.headers()) {
                // RFC 9110 §7.7: the page goes as it is, without the proof.
                embeds.render_link = None;
            } else {
                make_room_for_render_proof(response.headers_mut());
            }
        }
        if let Some(late) = self.late.take()
            && response
                .headers()
                .get(header::CONTENT_TYPE)
                .is_some_and(is_image_type)
        {
            late.count();
        }
    }

    /// The work left for a response known only by its Content-Type, with no body to stream
    /// (`lenscap replay`): the late look at the type; gives the visitor cookie it would set.
    #[cfg(feature = "cli")]
    pub(crate) fn settle(mut self, content_type: Option<&HeaderValue>) -> Option<HeaderValue> {
        if let Some(late) = self.late.take()
            && content_type.is_some_and(is_image_type)
        {
            late.count();
        }
        self.set_cookie
    }
}

/// An `image/…` Content-Type.
fn is_image_type(content_type: &HeaderValue) -> bool {
    content_type.as_bytes().starts_with(b"image/")
}

impl LateImage {
    /// What looked like a page was an image: count it as one, after the fact.
    fn count(self) {
        self.store
            .client(self.key, self.now, self.cap, &mut |record, fresh| {
                if !fresh {
                    record.behaviour.late_image();
                    let _ = self.images.check(&mut record.tat_images, self.now);
                }
                !fresh
            });
        self.store
            .subnet(self.subnet, self.now, self.cap, &mut |record| {
                let _ = self.subnet_images.check(&mut record.tat_images, self.now);
            });
    }
}

/// `Cache-Control: no-transform`.
fn forbids_transform(headers: &HeaderMap) -> bool {
    headers.get_all(header::CACHE_CONTROL).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|d| d.trim().eq_ignore_ascii_case("no-transform"))
        })
    })
}

/// A page that will carry the render proof changes length and, with its token, bytes: no
/// `Content-Length`, and a strong `ETag` becomes weak (the page means the same).
fn make_room_for_render_proof(headers: &mut HeaderMap) {
    headers.remove(header::CONTENT_LENGTH);
    if let Some(etag) = headers.get_mut(header::ETAG)
        && etag.as_bytes().first() == Some(&b'"')
    {
        let mut weak = Vec::with_capacity(etag.len() + 2);
        weak.extend_from_slice(b"W/");
        weak.extend_from_slice(etag.as_bytes());
        if let Ok(value) = HeaderValue::from_bytes(&weak) {
            *etag = value;
        }
    }
}

/// Why the limit stage answers a request itself instead of letting it through. The layer
/// renders it.
#[derive(Clone, Debug)]
pub(crate) enum Refusal {
    /// A trap path: answered with a small harmless page; the client is now marked.
    Trap,
    /// Over a quota (only when enforcing and `over_quota = "reject"`).
    OverQuota(Exceeded),
    /// A page view of a client that looks like a person, over a quota or the address's pace:
    /// answered with the way-through page and a new pass.
    WayThrough(Box<WayThrough>),
}

/// The way-through page's contents.
#[derive(Clone, Debug)]
pub(crate) struct WayThrough {
    /// The quota that refused the page (none when the page asked is the pass's own).
    pub(crate) exceeded: Option<Exceeded>,
    /// The pass, valid `wait_secs` from now.
    pub(crate) token: String,
    /// Seconds before the pass is valid.
    pub(crate) wait_secs: u32,
    /// The page the client asked for (path and query, without any old pass).
    pub(crate) to: String,
}

/// What redeeming a pass at [`PASS_PATH`] comes to.
#[derive(Debug)]
pub(crate) enum Redeemed {
    /// Valid: back to the page, the pass in its URL and in a cookie.
    Go {
        location: String,
        set_cookie: HeaderValue,
    },
    /// Not valid yet: the way-through page again, for the time left.
    Wait(WayThrough),
    /// Not valid at all.
    Invalid(PassError),
}

/// Which quota refused a request, and for how long.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Exceeded {
    /// The quota's name (`images`, `subnet-pages`, …), as in `RateLimit-Policy`.
    pub(crate) quota: &'static str,
    pub(crate) rate: Rate,
    pub(crate) wait: Duration,
}

impl Exceeded {
    /// `Retry-After`: whole seconds, rounded up, never 0.
    pub(crate) fn retry_after_secs(&self) -> u64 {
        retry_after_secs(self.wait)
    }
}

/// Whole seconds, rounded up, never 0.
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_nanos().div_ceil(1_000_000_000).max(1) as u64
}

/// What the limit stage reads besides the request: its settings, the weights to add
/// behaviour signals with, and the subnet prefixes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Inputs<'a> {
    pub(crate) settings: &'a LimitSettings,
    pub(crate) scoring: &'a Scoring,
    pub(crate) subnets: SubnetPrefixes,
    pub(crate) enforce: bool,
}

/// The request's facts, as the tracker and the limiters see them.
struct Request<'a> {
    facts: Facts,
    /// The request's path (without the query).
    path: &'a str,
    /// The request's query, if any.
    query: Option<&'a str>,
    /// The request's path and query.
    target: &'a str,
    /// A GET (only a GET's page body says what the page embeds).
    get: bool,
    kind: Kind,
    client: ClientId,
    secure: bool,
    headers: &'a HeaderMap,
    /// The headers the tracker, the cookie and the pass read, found once.
    known: RequestHeaders<'a>,
    now: Millis,
    unix: u64,
}

/// Tracks and limits one request; runs before the inner service.
///
/// Behaviour signals are added to `verdict`. `Err` is a refusal to answer instead of calling
/// the inner service (a trap, or over quota when enforcing). Over quota with
/// `over_quota = "tarpit"`, the verdict's action becomes `tarpit` and the caller holds it.
pub(crate) fn admit<'r, B>(
    limits: &Limits,
    inputs: Inputs<'_>,
    request: &'r http::Request<B>,
    known: &RequestHeaders<'r>,
    found: &Classification,
    verdict: &mut Verdict,
) -> Result<AfterResponse, Refusal> {
    let ls = inputs.settings;
    if !ls.enabled {
        return Ok(AfterResponse::default());
    }
    let (now, unix) = limits.clock.now();
    limits.start_cleanup(ls);
    let uri = request.uri();
    let path = uri.path();
    let target = uri.path_and_query().map_or(path, |p| p.as_str());
    let trap = ls.is_trap(path);
    let mut facts = Facts::read_with(
        found.kind,
        target,
        known,
        found.secure && !found.fetch_dest_image,
        &ls.behaviour,
        trap || ls.is_disallowed(path),
    );
    facts.address = address_hash(found.client);
    if ls.embedded_only && facts.kind == Kind::Image && facts.referer_key != 0 {
        let embedding = limits.embeds.embedding(facts.referer_key, facts.key);
        facts.embedded = embedding.map(|e| e.embedded);
        facts.render_page = ls.render.enabled && embedding.is_some_and(|e| e.render_proof);
    } else if ls.embedded_only && facts.navigation {
        // A little slack: a Bloom set may undercount, a browser may fetch a 2x variant.
        facts.page_credit = limits.embeds.count(facts.key).map(|n| {
            n.saturating_add(n / 4 + 2)
                .min(ls.behaviour.credit_per_page)
        });
    }
    let seen = Request {
        facts,
        path,
        query: uri.query(),
        target,
        get: request.method() == http::Method::GET,
        kind: found.kind,
        client: found.client,
        secure: found.secure,
        headers: request.headers(),
        known: *known,
        now,
        unix,
    };
    let subnet = found.client.subnet_key(inputs.subnets);
    if trap {
        mark_trap(limits, inputs, &seen, subnet, verdict);
        return Err(Refusal::Trap);
    }
    let mut tracked = track(limits, inputs, &seen, subnet, verdict);
    if tracked.unrendered && address_renders(limits, ls, now, &tracked) {
        tracked.unrendered = false;
    }
    let mut refusal = tracked.refusal;
    if let Some(over) = refusal.or(tracked.pace)
        && let Some(way) = way_through(limits, inputs, &seen, found, verdict, &tracked, over)
    {
        return Err(Refusal::WayThrough(Box::new(way)));
    }
    let charged = !verdict.action.refuses() && matches!(seen.kind, Kind::Page | Kind::Image);
    if charged && refusal.is_none() && (seen.kind == Kind::Page || tracked.vouched) {
        refusal = charge_address(limits, ls, &seen, &tracked);
        if let Some(over) = refusal
            && let Some(way) = way_through(limits, inputs, &seen, found, verdict, &tracked, over)
        {
            return Err(Refusal::WayThrough(Box::new(way)));
        }
    }
    let subnet_key = limits.key((3u8, subnet));
    if charged && refusal.is_none() {
        refusal = charge_subnet(limits, ls, &seen, subnet_key, tracked.vouched);
        if let Some(over) = refusal
            && let Some(way) = way_through(limits, inputs, &seen, found, verdict, &tracked, over)
        {
            return Err(Refusal::WayThrough(Box::new(way)));
        }
    }
    if charged && refusal.is_none() && seen.kind == Kind::Image && !tracked.vouched {
        refusal = charge_site(limits, ls, now);
    }
    if charged && refusal.is_none() && tracked.unrendered {
        refusal = charge_unrendered(limits, ls, now);
    }
    if let Some(over) = refusal {
        let mut reasons = Reasons::default();
        reasons.insert(Reason::OverQuota);
        inputs.scoring.add_signals(verdict, reasons);
        verdict.action = verdict.action.max(Action::Throttle);
        match ls.over_quota {
            config::OverQuota::Tarpit => verdict.action = verdict.action.max(Action::Tarpit),
            config::OverQuota::Reject if inputs.enforce => return Err(Refusal::OverQuota(over)),
            config::OverQuota::Reject => {}
        }
    }
    let after = after_response(limits, ls, &seen, verdict, &tracked, subnet, subnet_key);
    Ok(direct_open_stays_a_page(after, found))
}

/// A direct open of a photo (classify's `direct_open`: a browser tab on an image URL) is a
/// page view that answers with an image by design: it must not mark the client as one whose
/// "pages" are images (`/photo?id=17` harvesting), or a guest opening shared links would
/// have every later page charged as an image.
fn direct_open_stays_a_page(mut after: AfterResponse, found: &Classification) -> AfterResponse {
    if found.direct_open {
        after.late = None;
    }
    after
}

/// A trap path: observe it and mark the client that made it — its cookie visitor when it
/// holds a valid cookie, its address otherwise — so a crawler with a cookie never gets the
/// address's other people marked in its place.
fn mark_trap(
    limits: &Limits,
    inputs: Inputs<'_>,
    seen: &Request<'_>,
    subnet: u128,
    verdict: &mut Verdict,
) {
    let ls = inputs.settings;
    let for_ms = ls.trap_mark.as_millis().min(u128::from(u32::MAX / 2)) as u32;
    let mark = |record: &mut ClientRecord| {
        record
            .behaviour
            .observe(&seen.facts, seen.now, &ls.behaviour);
        record.behaviour.mark_trap(seen.now, for_ms);
    };
    let cap = ls.max_tracked_clients;
    let as_visitor = ls
        .cookie
        .read(&seen.known, seen.unix, subnet)
        .is_some_and(|v| {
            let visitor_key = limits.key((2u8, v.id, subnet));
            limits
                .store
                .client(visitor_key, seen.now, cap, &mut |record, _| {
                    mark(record);
                    true
                })
        });
    if !as_visitor {
        let key = limits.key((1u8, seen.client.key()));
        limits.store.client(key, seen.now, cap, &mut |record, _| {
            mark(record);
            true
        });
    }
    let mut trap_hit = Reasons::default();
    trap_hit.insert(Reason::TrapHit);
    inputs.scoring.add_signals(verdict, trap_hit);
}

/// What tracking the client found.
struct Tracked {
    /// The record the request was charged to (the visitor's, or the address's).
    key: u64,
    /// The address's record (its anonymous client's), which holds the address's budgets.
    address_key: u64,
    /// The visitor or pass holder, once established on the address: it adds a share.
    member: Option<u64>,
    /// Known by a valid visitor cookie.
    as_visitor: bool,
    /// An image one of the client's page views vouches for.
    vouched: bool,
    /// An image of a render-proof page, beyond its grace, from a client without a proof.
    unrendered: bool,
    /// A navigation beyond the client's page pace.
    over_pace: bool,
    /// A visitor's navigation beyond its pace, or an address's second in a row: served
    /// unless the client gets the way-through page (its images would be held to the
    /// suspects' quota).
    pace: Option<Exceeded>,
    /// The valid visitor cookie's id.
    visitor: Option<u64>,
    /// Where the client's valid pass came from.
    pass: Option<PassSource>,
    refusal: Option<Exceeded>,
}

/// Observes the request in the client's record (the visitor's when its cookie is valid, the
/// address's otherwise), adds the behaviour signals to `verdict`, and charges the client's
/// own quotas.
fn track(
    limits: &Limits,
    inputs: Inputs<'_>,
    seen: &Request<'_>,
    subnet: u128,
    verdict: &mut Verdict,
) -> Tracked {
    let ls = inputs.settings;
    let (now, kind) = (seen.now, seen.kind);
    let cap = ls.max_tracked_clients;
    let mut vouched = false;
    let mut unrendered = false;
    let mut over_pace = false;
    let mut pace: Option<Exceeded> = None;
    let mut refusal: Option<Exceeded> = None;
    let mut established = false;
    let established_ms = ls
        .address_established_after
        .as_millis()
        .min(u128::from(u32::MAX / 2)) as u32;
    let ip_key = limits.key((1u8, seen.client.key()));
    let visitor = ls.cookie.read(&seen.known, seen.unix, subnet);
    let pass = ls.pass.read(
        &ls.cookie,
        &seen.known,
        seen.query,
        kind == Kind::Image,
        seen.unix,
        || Binding::of(&seen.known, subnet, visitor.map(|v| v.id)),
    );
    let crowd_click = visitor.is_none()
        && pass.is_none()
        && seen.facts.navigation
        && crate::signals::behaviour::from_this_site(seen.headers)
        && cookieless_crowd(limits, ls, seen);
    let mut observe = |record: &mut ClientRecord, verdict: &mut Verdict, as_visitor: bool| {
        let mut facts = seen.facts;
        if facts.navigation && !as_visitor && crowd_click {
            // Another cookieless person of a crowd whose people hold passes, clicking on: the
            // way through, so they take a pass of their own instead of sharing this record.
            facts.over_pace = true;
            over_pace = true;
            pace = Some(Exceeded {
                quota: "cookieless-crowd",
                rate: ls.anonymous_page_pace,
                wait: Duration::from_secs(u64::from(ls.pass.wait_secs)),
            });
        } else if facts.navigation {
            let (quota, rate) = if as_visitor {
                ("page-pace", ls.page_pace)
            } else {
                ("anonymous-page-pace", ls.anonymous_page_pace)
            };
            let checked = rate.check(&mut record.tat_pace, now);
            facts.over_pace = checked.is_err();
            over_pace = facts.over_pace;
            // A visitor beyond its pace, or an anonymous navigation that came from a page of
            // this site (a person without cookies clicking on), is offered the way through
            // instead of a page whose photos would then be held to the suspects' quota. An
            // anonymous one from elsewhere is a crowd's newcomer arriving: its first page is
            // served (and its cookie, if it keeps one, seeds its own credit).
            match checked {
                Err(mut wait)
                    if as_visitor || crate::signals::behaviour::from_this_site(seen.headers) =>
                {
                    if as_visitor {
                        // One client asking for page after page while refused (a person
                        // reads the way-through page): its next page comes a pace interval
                        // after its last try. Not for an address's record: a crowd shares it.
                        wait = rate.hold_back(&mut record.tat_pace, now);
                    }
                    pace = Some(Exceeded { quota, rate, wait });
                }
                Err(_) => facts.newcomer = true,
                Ok(()) => {}
            }
        }
        let viewed = record.behaviour.viewed();
        let mut observed = record.behaviour.observe(&facts, now, &ls.behaviour);
        if !as_visitor && observed.vouched {
            // A photo of a page the address viewed at its pace: the address's fast navigation
            // was another of its people arriving, not this photo's page.
            observed.reasons.remove(Reason::FastNavigation);
        }
        inputs.scoring.add_signals(verdict, observed.reasons);
        vouched = observed.vouched;
        unrendered = observed.unrendered;
        if verdict.action.refuses() {
            return;
        }
        if kind == Kind::Image && !vouched && record.behaviour.way_offered() {
            // The client was shown the way-through page, not a page: a browser has no photo
            // of it to load. (Photos of the pages it was given before are still vouched.)
            refusal = Some(Exceeded {
                quota: "way-through",
                rate: ls.page_pace,
                wait: Duration::from_secs(u64::from(ls.pass.wait_secs)),
            });
            return;
        }
        // A page view without a cookie is how a newcomer gets one: it is charged to the subnet
        // only, never to the address's page budget or (when a scraper shares the address) to
        // the suspects' page quota. Its credit is still held to the address's pace.
        let newcomer = kind == Kind::Page && !as_visitor && ls.cookie.enabled;
        if newcomer && !record.behaviour.late_images() {
            return;
        }
        // Photos no page vouches for, fetched right after a navigation beyond the pace, are
        // held to the suspects' quota (fast-navigation alone does not make the client one).
        let hurried = kind == Kind::Image && !vouched && record.behaviour.fast_navigation();
        refusal = charge_client(
            ls,
            record,
            kind,
            (verdict.action >= Action::Throttle || hurried) && !newcomer,
            vouched,
            now,
        );
        if refusal.is_some() && kind == Kind::Page {
            // A refused page was not viewed: it vouches for nothing.
            record.behaviour.unview(viewed);
        } else if as_visitor
            && kind == Kind::Page
            && seen.facts.navigation
            && !over_pace
            && record.first_page == 0
        {
            record.first_page = now.max(1);
        }
        established = as_visitor
            && record.first_page != 0
            && now.wrapping_sub(record.first_page) >= established_ms;
    };

    let mut key = ip_key;
    let visitor_key = visitor.map(|v| limits.key((2u8, v.id, subnet)));
    let mut member = visitor_key;
    if let Some((pass, _)) = pass {
        member = Some(limits.key((4u8, pass.id, subnet)));
        // A pass holder is a client of its own, with a person's pace and budgets afresh.
        key = limits.key((4u8, pass.id, subnet));
        limits.store.client(key, now, cap, &mut |record, _| {
            observe(record, verdict, true);
            true
        });
    }
    let as_visitor = pass.is_some()
        || visitor.zip(visitor_key).is_some_and(|(v, visitor_key)| {
            let kept = limits
                .store
                .client(visitor_key, now, cap, &mut |record, fresh| {
                    if fresh {
                        seed_visitor(record, ls, v, seen.unix, seen.now);
                    }
                    observe(record, verdict, true);
                    true
                });
            if kept {
                key = visitor_key;
            }
            kept
        });
    if !as_visitor {
        limits.store.client(ip_key, now, cap, &mut |record, _| {
            observe(record, verdict, false);
            true
        });
    }
    Tracked {
        key,
        address_key: ip_key,
        member: member.filter(|_| as_visitor && established),
        as_visitor,
        vouched,
        unrendered,
        over_pace,
        pace,
        visitor: visitor.map(|v| v.id),
        pass: pass.map(|(_, source)| source),
        refusal,
    }
}

/// A visitor's new record, when its cookie is fresh: it starts from the page the cookie was
/// issued on (that page view was its first step, charged to its pace).
fn seed_visitor(
    record: &mut ClientRecord,
    ls: &LimitSettings,
    v: cookie::Visitor,
    unix: u64,
    now: Millis,
) {
    if unix.saturating_sub(u64::from(v.issued)) <= SEED_WITHIN_SECS {
        record
            .behaviour
            .seed_page(v.page, ls.behaviour.credit_per_page);
        let _ = ls.page_pace.check(&mut record.tat_pace, now);
        record.first_page = now.max(1);
    }
}

/// Charges the client's own page or image quota (the suspects' when `suspect`).
fn charge_client(
    ls: &LimitSettings,
    record: &mut ClientRecord,
    kind: Kind,
    suspect: bool,
    vouched: bool,
    now: Millis,
) -> Option<Exceeded> {
    if kind == Kind::Page
        && record.behaviour.late_images()
        && let Err(wait) = ls.images.check(&mut record.tat_images, now)
    {
        // This client's page-looking requests turned out to be images: charge them as such.
        return Some(Exceeded {
            quota: "images",
            rate: ls.images,
            wait,
        });
    }
    let (quota, rate, cell) = match (kind, suspect, vouched) {
        (Kind::Page, false, _) => ("pages", ls.pages, &mut record.tat_pages),
        (Kind::Page, true, _) => ("suspect-pages", ls.suspect_pages, &mut record.tat_pages),
        (Kind::Image, true, _) => ("suspect-images", ls.suspect_images, &mut record.tat_images),
        (Kind::Image, false, false) => ("images", ls.images, &mut record.tat_images),
        _ => return None,
    };
    rate.check(cell, now)
        .err()
        .map(|wait| Exceeded { quota, rate, wait })
}

/// The address's visitor window: 2 minutes. Visitors active together count; a client that
/// takes one fresh cookie after another has one established at a time.
const MEMBER_WINDOW_MS: u32 = 120_000;
/// Slots in the address's visitor set.
const MEMBER_SLOTS: u32 = 28;

/// An address that has used this fraction of its photo share keeps a record of its distinct
/// photos too, so that its repeat views cost little: a crowd without cookies is one client.
const HEAVY_SHARE: u32 = 4;

/// Charges the address's page or vouched-photo budget, which every client on the address
/// shares (fresh cookies and passes included), scaled by the visitors established on it.
/// An established visitor joins the address's set only when its request is served.
///
/// The extra shares buy repeat views, not new photos: once the address has more than one
/// established visitor (or has used a quarter of its share), its photos are also served through its
/// [`DistinctPhotos`] (see
/// `limit/distinct.rs`), where each photo new to the address is charged to
/// `address_distinct_photos`, and a repeat view costs the address the smallest fraction of a
/// share (`address_max_shares` of them).
fn charge_address(
    limits: &Limits,
    ls: &LimitSettings,
    seen: &Request<'_>,
    tracked: &Tracked,
) -> Option<Exceeded> {
    let (now, cap) = (seen.now, ls.max_tracked_clients);
    let photo = seen.kind != Kind::Page;
    let bit = tracked
        .member
        .map_or(0, |m| 1u32 << (m % u64::from(MEMBER_SLOTS)));
    // What the address's record (if it keeps one) would make of the photo: nothing is
    // charged until the address's share has admitted it too.
    let mut foreseen = None;
    if photo {
        limits
            .store
            .distinct(tracked.address_key, now, cap, &mut |slot| {
                foreseen = slot
                    .as_ref()
                    .map(|d| d.foresee(seen.facts.key, ls.address_distinct_photos, now));
            });
    }
    if let Some(Served::Over(wait)) = foreseen {
        return Some(over_distinct(ls, wait));
    }
    let repeat = foreseen == Some(Served::Repeat);
    let (refusal, record_owes) = charge_address_cell(limits, ls, seen, tracked, bit, repeat);
    if refusal.is_some() || !photo || repeat {
        return refusal;
    }
    // A new photo, admitted by the share: charged to the ceiling and recorded (a record begun
    // now, for a crowd or a heavy address, starts with what the address took before).
    let owed_ms = match foreseen {
        Some(_) => 0,
        None => record_owes?,
    };
    let mut over = None;
    limits
        .store
        .distinct(tracked.address_key, now, cap, &mut |slot| {
            let record = slot.get_or_insert_with(|| DistinctPhotos::new(now, owed_ms));
            if let Served::Over(wait) =
                record.serve(seen.facts.key, ls.address_distinct_photos, now)
            {
                over = Some(over_distinct(ls, wait));
            }
        });
    over
}

fn over_distinct(ls: &LimitSettings, wait: Duration) -> Exceeded {
    Exceeded {
        quota: "address-distinct-photos",
        rate: ls.address_distinct_photos,
        wait,
    }
}

/// Charges the address's page or photo cell: at the share its established visitors give it,
/// or, for a `repeat` view of a photo the address was served already, at the smallest.
/// Also returns, for a photo of an address that should keep a record of its distinct photos
/// — a crowd (more than one share), or past a quarter of its share (people without cookies
/// are one client however many they are) — the time of `address_distinct_photos` its photos so far
/// are worth (at one share each).
fn charge_address_cell(
    limits: &Limits,
    ls: &LimitSettings,
    seen: &Request<'_>,
    tracked: &Tracked,
    bit: u32,
    repeat: bool,
) -> (Option<Exceeded>, Option<u32>) {
    let mut refusal = None;
    let mut record_owes = None;
    let (now, cap) = (seen.now, ls.max_tracked_clients);
    limits
        .store
        .client(tracked.address_key, now, cap, &mut |record, _| {
            let window = (now / MEMBER_WINDOW_MS) & 0xF;
            if record.members >> MEMBER_SLOTS != window {
                record.members = window << MEMBER_SLOTS;
            }
            let set = (record.members | bit) & ((1 << MEMBER_SLOTS) - 1);
            let members = estimated_members(set).clamp(1, ls.address_max_shares);
            let shares = if repeat {
                ls.address_max_shares
            } else {
                members
            };
            let (quota, rate, cell) = match seen.kind {
                Kind::Page => (
                    "address-pages",
                    ls.address_pages,
                    &mut record.tat_address_pages,
                ),
                _ => (
                    "address-photos",
                    ls.address_photos,
                    &mut record.tat_address_photos,
                ),
            };
            let heavy = !rate::is_idle(*cell, now)
                && cell.wrapping_sub(now) >= ls.address_photos.span_ms() / HEAVY_SHARE;
            if seen.kind != Kind::Page && (members > 1 || heavy) {
                record_owes = Some(owed_at_one_share(
                    *cell,
                    now,
                    ls.address_photos,
                    ls.address_distinct_photos,
                ));
            }
            let shared = rate.shared(shares);
            match shared.check(cell, now) {
                Ok(()) => record.members |= bit,
                Err(wait) => {
                    refusal = Some(Exceeded {
                        quota,
                        rate: shared,
                        wait,
                    })
                }
            }
            true
        });
    (refusal, record_owes)
}

/// The photos an address's cell holds against it, counted at one share of `photos` each,
/// as time of `distinct` (at most its whole bucket).
fn owed_at_one_share(cell: Millis, now: Millis, photos: Rate, distinct: Rate) -> u32 {
    if rate::is_idle(cell, now) {
        return 0;
    }
    let ahead = u128::from(cell.wrapping_sub(now));
    let owed = ahead / photos.period().as_millis().max(1);
    let owed_ms = owed * distinct.period().as_millis();
    owed_ms.min(u128::from(distinct.span_ms())) as u32
}

/// Distinct visitors behind a set of hashed slots (linear counting).
fn estimated_members(set: u32) -> u32 {
    let slots = f64::from(MEMBER_SLOTS);
    let empty = f64::from(MEMBER_SLOTS - set.count_ones()).max(0.5);
    (-slots * (empty / slots).ln()).round() as u32
}

/// Charges the subnet's page, image or vouched-image quota.
fn charge_subnet(
    limits: &Limits,
    ls: &LimitSettings,
    seen: &Request<'_>,
    subnet_key: u64,
    vouched: bool,
) -> Option<Exceeded> {
    let mut refusal = None;
    limits.store.subnet(
        subnet_key,
        seen.now,
        ls.max_tracked_clients,
        &mut |record| {
            let (quota, rate, cell) = match (seen.kind, vouched) {
                (Kind::Page, _) => ("subnet-pages", ls.subnet_pages, &mut record.tat_pages),
                (_, true) => (
                    "subnet-vouched-images",
                    ls.subnet_vouched_images,
                    &mut record.tat_vouched,
                ),
                (_, false) => ("subnet-images", ls.subnet_images, &mut record.tat_images),
            };
            if let Err(wait) = rate.check(cell, seen.now) {
                refusal = Some(Exceeded { quota, rate, wait });
            }
        },
    );
    refusal
}

/// The key of the site's record whose image cell is the `unrendered_images` budget (a
/// client record of its own, so a shared store carries it like any other).
const UNRENDERED_RECORD: u8 = 8;

/// Charges the site-wide budget for images of render-proof pages from clients that never
/// fetched a proof: every such client shares it, whatever address it comes from.
fn charge_unrendered(limits: &Limits, ls: &LimitSettings, now: Millis) -> Option<Exceeded> {
    let rate = ls.render.unrendered_images;
    let mut refusal = None;
    let key = limits.unrendered_key();
    limits
        .store
        .client(key, now, ls.max_tracked_clients, &mut |record, _| {
            refusal = rate
                .check(&mut record.tat_images, now)
                .err()
                .map(|wait| Exceeded {
                    quota: "unrendered-images",
                    rate,
                    wait,
                });
            true
        });
    refusal
}

/// Answers the render proof of a page ([`RENDER_PATH`]): when its token is good, the client
/// that asked — its pass holder, its cookie visitor, or its address — is a renderer from now
/// on. Never charged.
pub(crate) fn prove_render<B>(
    limits: &Limits,
    inputs: Inputs<'_>,
    request: &http::Request<B>,
    found: &Classification,
) -> Result<(), RenderError> {
    let ls = inputs.settings;
    let (now, unix) = limits.clock.now();
    render::verify(&ls.cookie, request.uri().query(), unix)?;
    if !ls.enabled {
        return Ok(());
    }
    let subnet = found.client.subnet_key(inputs.subnets);
    let headers = RequestHeaders::of(request.headers());
    let visitor = ls.cookie.read(&headers, unix, subnet);
    let binding = || Binding::of(&headers, subnet, visitor.map(|v| v.id));
    // The stylesheet's Referer is its page, whose URL holds a cookieless holder's pass.
    let pass = ls
        .pass
        .read(&ls.cookie, &headers, None, true, unix, binding);
    let cap = ls.max_tracked_clients;
    let address_key = limits.key((1u8, found.client.key()));
    let key = match (pass, visitor) {
        (Some((pass, _)), _) => limits.key((4u8, pass.id, subnet)),
        (None, Some(v)) => limits.key((2u8, v.id, subnet)),
        (None, None) => address_key,
    };
    limits.store.client(key, now, cap, &mut |record, fresh| {
        if fresh
            && pass.is_none()
            && let Some(v) = visitor
        {
            seed_visitor(record, ls, v, unix, now);
        }
        record.behaviour.prove_render();
        true
    });
    if key != address_key {
        // The address renders too: its next newcomer's photos that outrun their own proof
        // (a crowd arriving at once) are not held to the site's budget.
        limits
            .store
            .client(address_key, now, cap, &mut |record, _| {
                record.behaviour.prove_render();
                true
            });
    }
    Ok(())
}

/// Whether someone on the client's address has fetched a render proof (read only when a
/// client's own proof is missing).
fn address_renders(limits: &Limits, ls: &LimitSettings, now: Millis, tracked: &Tracked) -> bool {
    if tracked.key == tracked.address_key {
        return false;
    }
    let mut renders = false;
    limits.store.client(
        tracked.address_key,
        now,
        ls.max_tracked_clients,
        &mut |record, fresh| {
            renders = record.behaviour.rendered();
            !fresh
        },
    );
    renders
}

/// Charges the optional site-wide budget for images no page view vouches for.
fn charge_site(limits: &Limits, ls: &LimitSettings, now: Millis) -> Option<Exceeded> {
    let rate = ls.unknown_images?;
    let mut refusal = None;
    limits.store.site(now, &mut |cell| {
        refusal = rate.check(cell, now).err().map(|wait| Exceeded {
            quota: "site-images",
            rate,
            wait,
        });
    });
    refusal
}

/// The work left for a page view's response: a visitor cookie for a client without one, and
/// a late look at its Content-Type (`/photo?id=17` answering with an image).
fn after_response(
    limits: &Limits,
    ls: &LimitSettings,
    seen: &Request<'_>,
    verdict: &Verdict,
    tracked: &Tracked,
    subnet: u128,
    subnet_key: u64,
) -> AfterResponse {
    let mut after = AfterResponse::default();
    if seen.kind != Kind::Page || verdict.action.refuses() {
        return after;
    }
    if !tracked.as_visitor
        && ls.cookie.enabled
        && let Some(id) = random_id()
    {
        // Seeded even beyond the address's pace: a crowd arriving at once must see its
        // first page's images (the visitor's own pace is charged for it when seeded).
        after.set_cookie =
            Some(
                ls.cookie
                    .issue(id, seen.unix, seen.facts.target, subnet, seen.secure),
            );
    }
    if tracked.pass == Some(PassSource::Url) {
        after.link_pass = seen
            .query
            .and_then(pass::pass_in_query)
            .map(|token| format!("{PASS_PARAM}={token}").into_boxed_str());
    }
    if ls.embedded_only && seen.get && seen.facts.navigation && limits.streams_bodies {
        after.embeds = Some(Box::new(PageEmbeds {
            table: limits.embeds.clone(),
            page: seen.facts.key,
            scanner: EmbedScanner::new(seen.path),
            remember: !tracked.over_pace,
            render_link: ls
                .render
                .enabled
                .then(|| render::link(&ls.cookie, seen.facts.key, seen.unix)),
            render_injected: false,
        }));
    }
    after.late = Some(Box::new(LateImage {
        store: limits.store.clone(),
        key: tracked.key,
        subnet: subnet_key,
        now: seen.now,
        cap: ls.max_tracked_clients,
        images: ls.images,
        subnet_images: ls.subnet_images,
    }));
    after
}

/// A random 64-bit id (a visitor's, a pass's); `None` only if the system has no randomness.
fn random_id() -> Option<u64> {
    let mut id = [0u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut id)
        .ok()
        .map(|()| u64::from_le_bytes(id))
}

/// The way-through page for a page view of a client that looks like a person (not
/// catalogued, not trap-marked, not blocked), refused by `over`: a new pass, when the
/// address and the subnet may still be issued one. `None`: the refusal stands.
fn way_through(
    limits: &Limits,
    inputs: Inputs<'_>,
    seen: &Request<'_>,
    found: &Classification,
    verdict: &Verdict,
    tracked: &Tracked,
    over: Exceeded,
) -> Option<WayThrough> {
    let ls = inputs.settings;
    let person = found.agent.is_none()
        && !verdict.reasons.contains(Reason::TrapHit)
        && verdict.action < Action::Block;
    // A photo opened in a tab is a navigation too, but its answer must stay the photo.
    let page = seen.get && seen.kind == Kind::Page && seen.facts.navigation && !found.direct_open;
    let rejecting = inputs.enforce && ls.over_quota == config::OverQuota::Reject;
    if !(ls.pass.enabled && person && page && rejecting) {
        return None;
    }
    let subnet = found.client.subnet_key(inputs.subnets);
    let wait_secs = issue_pass(limits, ls, seen, subnet, tracked.visitor.is_none())?;
    let binding = Binding::of(&seen.known, subnet, tracked.visitor);
    let token = ls
        .pass
        .issue(&ls.cookie, random_id()?, seen.unix, wait_secs, binding);
    limits.store.client(
        tracked.key,
        seen.now,
        ls.max_tracked_clients,
        &mut |record, fresh| {
            record.behaviour.offer_way();
            !fresh
        },
    );
    Some(WayThrough {
        exceeded: Some(over),
        token,
        wait_secs,
        to: pass::without_pass(seen.target).into_owned(),
    })
}

/// Charges one pass to the address and to the subnet; the wait the pass is issued with (it
/// grows with the passes the address holds), or `None` when either is out of passes. A pass
/// for a client without a cookie is also counted apart (the address's cookieless crowd).
fn issue_pass(
    limits: &Limits,
    ls: &LimitSettings,
    seen: &Request<'_>,
    subnet: u128,
    cookieless: bool,
) -> Option<u32> {
    let (now, cap) = (seen.now, ls.max_tracked_clients);
    let rate = ls.pass.per_address;
    let mut held = None;
    // The address's passes are counted in a small record of their own, in the subnets' map:
    // it lives as long as it holds passes (a client record is dropped when its client is
    // idle, which would give an idle address its burst of passes back).
    let address_key = limits.address_passes_key(seen.client);
    limits.store.subnet(address_key, now, cap, &mut |record| {
        if rate.check(&mut record.tat_pages, now).is_ok() {
            let ahead = u128::from(record.tat_pages.wrapping_sub(now));
            let period = rate.period().as_millis().max(1);
            held = Some(ahead.div_ceil(period).max(1) as u32);
            if cookieless {
                // Its image cell: passes held by people without cookies.
                let _ = rate.check(&mut record.tat_images, now);
            }
        }
    });
    let held = held?;
    let mut subnet_ok = false;
    limits
        .store
        .subnet(limits.subnet_passes_key(subnet), now, cap, &mut |record| {
            subnet_ok = ls.pass.per_subnet.check(&mut record.tat_pages, now).is_ok();
        });
    subnet_ok.then(|| ls.pass.wait_secs.saturating_mul(held).min(255))
}

/// Whether people without cookies on the request's address hold passes and the address may
/// still be issued one: its cookieless people are then visibly several, and each should hold
/// a pass of their own rather than share the address's record.
fn cookieless_crowd(limits: &Limits, ls: &LimitSettings, seen: &Request<'_>) -> bool {
    if !ls.pass.enabled {
        return false;
    }
    let mut crowd = false;
    let address_key = limits.address_passes_key(seen.client);
    limits.store.subnet(
        address_key,
        seen.now,
        ls.max_tracked_clients,
        &mut |record| {
            let mut passes = record.tat_pages;
            crowd = !rate::is_idle(record.tat_images, seen.now)
                && ls.pass.per_address.check(&mut passes, seen.now).is_ok();
        },
    );
    crowd
}

/// Redeems the pass of a request to [`PASS_PATH`] (`?t=<pass>&to=<page>`).
pub(crate) fn redeem<B>(
    limits: &Limits,
    inputs: Inputs<'_>,
    request: &http::Request<B>,
    found: &Classification,
) -> Redeemed {
    let ls = inputs.settings;
    let (_, unix) = limits.clock.now();
    let (mut token, mut to) = (String::new(), String::from("/"));
    for (name, value) in form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes()) {
        match &*name {
            "t" => token = value.into_owned(),
            "to" if is_local_target(&value) => to = value.into_owned(),
            _ => {}
        }
    }
    let to = pass::without_pass(&to).into_owned();
    let subnet = found.client.subnet_key(inputs.subnets);
    let headers = RequestHeaders::of(request.headers());
    let visitor = ls.cookie.read(&headers, unix, subnet).map(|v| v.id);
    let binding = Binding::of(&headers, subnet, visitor);
    match ls.pass.verify(&ls.cookie, token.as_bytes(), unix, binding) {
        Ok(_) => Redeemed::Go {
            location: with_pass(&to, &token),
            set_cookie: ls.pass.set_cookie(&token, found.secure),
        },
        Err(PassError::TooEarly(wait_secs)) => Redeemed::Wait(WayThrough {
            exceeded: None,
            token,
            wait_secs,
            to,
        }),
        Err(error) => Redeemed::Invalid(error),
    }
}

/// A path of this site (never another origin: `//host`, `/\host`), of sane length.
fn is_local_target(target: &str) -> bool {
    target.starts_with('/')
        && !target.starts_with("//")
        && !target.starts_with("/\\")
        && target.len() <= 2048
        && target.bytes().all(|b| b.is_ascii_graphic())
}

/// A 16-bit hash of the client's address, never 0 (0 means unknown).
fn address_hash(client: ClientId) -> u16 {
    let key = client.key();
    let folded = (key ^ (key >> 64)) as u64;
    let h = (folded ^ (folded >> 32) ^ (folded >> 16)) as u16;
    h.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_visitor_set_counts_distinct_visitors_roughly() {
        assert_eq!(estimated_members(0), 0);
        assert_eq!(estimated_members(1), 1);
        assert_eq!(estimated_members(0b1111), 4);
        // Full: beyond what 28 slots can tell apart, capped by address_max_shares.
        assert!(estimated_members((1 << MEMBER_SLOTS) - 1) >= 28);
    }

    #[test]
    fn a_shared_rate_costs_a_share_of_a_period_over_the_same_span() {
        let rate = Rate::parse("600/day", Some(1200)).unwrap();
        let shared = rate.shared(4);
        assert_eq!(shared.burst(), 4800);
        assert_eq!(shared.period(), rate.period() / 4);
        assert_eq!(rate.shared(0), rate.shared(1));
    }

    #[test]
    fn retry_after_rounds_up_and_is_never_zero() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1000)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
    }
}
