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
//! time and the page it was issued on, signed (HMAC-SHA256) together with the client's subnet;
//! `HttpOnly`, `SameSite=Lax`, a short lifetime (`[cookie] lifetime`), no personal data. The key
//! is made afresh each time the policy is loaded unless `[cookie] secret` is set. A forged
//! cookie fails the signature and the request stays anonymous; a cookie copied to another
//! network fails too (the subnet is signed); a cookie shared by many clients on one network
//! makes them one client with one budget. Either way it earns nothing. The signature is
//! checked when a visitor is first tracked; later requests find the visitor's record by its
//! (unguessable) id.
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
//! **Images by Content-Type.** A request is an image by its path extension, by
//! `Sec-Fetch-Dest: image` or by an `image/…` Accept; a page-looking request whose response
//! turns out to be `image/…` is counted as an image afterwards, and from then on that client's
//! page-looking requests are charged to its image quota too (`/photo?id=17` harvesting).
//!
//! **Behaviour.** Every request also passes the tracker
//! ([`signals::behaviour`](crate::signals::behaviour)); the signals it raises join the
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
//! is marked (`trap-hit`) for `mark_for`. Trap paths and `[traps] disallowed` are what
//! robots.txt disallows: a client that fetched robots.txt and then requests one raises
//! `robots-ignored`.
//!
//! **Memory.** One record per client (64 bytes in the map) holds its tracker and limiter
//! cells; one per subnet (24 bytes). `max_tracked_clients` bounds them, evicting the stalest;
//! a cleanup task (started with the first request inside a tokio runtime) drops idle entries
//! (`retain_recent`) and gives memory back (`shrink_to_fit`). The GCRA arithmetic is
//! governor's ([`Rate`]), run over cells held in these records rather than in one governor
//! map per quota: one lookup per key instead of one per quota, and a quarter of the memory.

mod clock;
mod cookie;
mod rate;
mod store;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};

pub use clock::{Clock, ManualClock, SystemClock};
pub(crate) use cookie::CookieSettings;
pub use rate::{Millis, Rate};
pub use store::{ClientRecord, MemoryStore, StateStore, SubnetRecord};

use crate::client::ClientId;
use crate::layer::{Classified, LenscapLayer, ResponseBody};
use crate::policy::Policy;
use crate::policy::config::OverQuota;
use crate::signals::behaviour::{BehaviourSettings, Facts, Kind};
use crate::verdict::{Action, Reason, Reasons, Verdict};

/// A page view's cookie seeds its visitor's credit only this soon after issue.
const SEED_WITHIN_SECS: u64 = 60;

/// `[limits]`, `[behaviour]`, `[traps]` and `[cookie]`, compiled.
#[derive(Debug)]
pub(crate) struct LimitSettings {
    pub(crate) enabled: bool,
    pub(crate) over_quota: OverQuota,
    pub(crate) max_tracked_clients: usize,
    pub(crate) idle_after: Duration,
    pub(crate) cleanup_every: Duration,
    pub(crate) pages: Rate,
    pub(crate) images: Rate,
    pub(crate) suspect_pages: Rate,
    pub(crate) suspect_images: Rate,
    pub(crate) subnet_pages: Rate,
    pub(crate) subnet_images: Rate,
    pub(crate) subnet_vouched_images: Rate,
    pub(crate) unknown_images: Option<Rate>,
    pub(crate) behaviour: BehaviourSettings,
    pub(crate) trap_paths: Vec<String>,
    pub(crate) disallowed: Vec<String>,
    pub(crate) trap_mark: Duration,
    pub(crate) cookie: CookieSettings,
}

impl LimitSettings {
    /// Compiles the four sections; `invalid` turns a span and a message into the error.
    pub(crate) fn compile(
        config: &crate::policy::Config,
        invalid: &dyn Fn(Option<std::ops::Range<usize>>, String) -> crate::policy::PolicyError,
    ) -> Result<LimitSettings, crate::policy::PolicyError> {
        use serde_spanned::Spanned;
        let duration = |key: &str, value: &Spanned<String>| {
            crate::policy::parse_duration(value.get_ref()).ok_or_else(|| {
                invalid(
                    Some(value.span()),
                    format!(
                        "{key} = {:?} is not a duration like \"30s\" or \"10m\"",
                        value.get_ref()
                    ),
                )
            })
        };
        let rate = |key: &str, value: &crate::policy::config::RateConfig| {
            Rate::parse(value.rate.get_ref(), value.burst)
                .map_err(|e| invalid(Some(value.rate.span()), format!("{key}: {e}")))
        };
        let l = &config.limits;
        let b = &config.behaviour;
        let window = duration("behaviour.window", &b.window)?;
        if window < Duration::from_secs(2) {
            return Err(invalid(
                Some(b.window.span()),
                "behaviour.window must be at least 2s".into(),
            ));
        }
        let mut behaviour = BehaviourSettings::new(window, b.distinct_images, &b.original_markers);
        behaviour.no_referer_images = b.no_referer_images;
        behaviour.unviewed_referer_images = b.unviewed_referer_images;
        behaviour.images_without_pages = b.images_without_pages;
        behaviour.missing_fetch_dest_images = b.missing_fetch_dest_images;
        behaviour.enumeration_run = b.enumeration_run;
        behaviour.originals_only = b.originals_only;
        behaviour.regular_run = b.regular_timing_run;
        behaviour.address_changes = b.address_changes;
        behaviour.regular_min_ms = duration(
            "behaviour.regular_timing_min_interval",
            &b.regular_timing_min_interval,
        )?
        .as_millis()
        .min(60_000) as u32;
        behaviour.credit_per_page = l.credit_per_page;
        behaviour.max_credit = l.max_credit.max(l.credit_per_page);
        if b.distinct_images > 100 {
            return Err(invalid(
                None,
                format!(
                    "behaviour.distinct_images = {} is above what the tracker can count (100)",
                    b.distinct_images
                ),
            ));
        }
        for path in config.traps.paths.iter().chain(&config.traps.disallowed) {
            if !path.starts_with('/') {
                return Err(invalid(
                    None,
                    format!("traps: {path:?} must be a path starting with /"),
                ));
            }
        }
        let c = &config.cookie;
        if c.name.is_empty()
            || !c
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(invalid(
                None,
                format!("cookie.name = {:?}: letters, digits, - and _ only", c.name),
            ));
        }
        let lifetime = duration("cookie.lifetime", &c.lifetime)?;
        Ok(LimitSettings {
            enabled: l.enabled,
            over_quota: l.over_quota,
            max_tracked_clients: l.max_tracked_clients.max(1),
            idle_after: duration("limits.idle_after", &l.idle_after)?,
            cleanup_every: duration("limits.cleanup_every", &l.cleanup_every)?,
            pages: rate("limits.pages", &l.pages)?,
            images: rate("limits.images", &l.images)?,
            suspect_pages: rate("limits.suspect_pages", &l.suspect_pages)?,
            suspect_images: rate("limits.suspect_images", &l.suspect_images)?,
            subnet_pages: rate("limits.subnet_pages", &l.subnet_pages)?,
            subnet_images: rate("limits.subnet_images", &l.subnet_images)?,
            subnet_vouched_images: rate("limits.subnet_vouched_images", &l.subnet_vouched_images)?,
            unknown_images: l
                .unknown_images
                .as_ref()
                .map(|r| rate("limits.unknown_images", r))
                .transpose()?,
            behaviour,
            trap_paths: config.traps.paths.clone(),
            disallowed: config.traps.disallowed.clone(),
            trap_mark: duration("traps.mark_for", &config.traps.mark_for)?,
            cookie: CookieSettings::new(
                c.enabled,
                c.name.clone(),
                lifetime.as_secs().max(1),
                c.secret.as_ref().map(|s| s.get_ref().as_str()),
            ),
        })
    }

    fn is_trap(&self, path: &str) -> bool {
        self.trap_paths.iter().any(|t| path.starts_with(t.as_str()))
    }

    fn is_disallowed(&self, path: &str) -> bool {
        self.disallowed.iter().any(|t| path.starts_with(t.as_str()))
    }
}

/// Per-request state the limiters keep across requests: the store, the clock, the cleanup
/// task. Shared by every clone of a layer, and kept when the policy is swapped.
#[derive(Debug)]
pub struct Limits {
    store: Arc<dyn StateStore>,
    clock: Arc<dyn Clock>,
    keys: foldhash::quality::RandomState,
    site_images: Mutex<Millis>,
    cleanup_started: AtomicBool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits::new(MemoryStore::default(), SystemClock::default())
    }
}

impl Limits {
    /// Limits keeping state in `store` and reading time from `clock`.
    pub fn new(store: impl StateStore, clock: impl Clock) -> Limits {
        Limits {
            store: Arc::new(store),
            clock: Arc::new(clock),
            keys: foldhash::quality::RandomState::default(),
            site_images: Mutex::new(0),
            cleanup_started: AtomicBool::new(false),
        }
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
        self.keys.hash_one(value)
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

impl LenscapLayer {
    /// Reads time from `clock` (tests, replays). Call before cloning the layer.
    pub fn with_clock(self, clock: impl Clock) -> LenscapLayer {
        self.with_limits(|limits| limits.clock = Arc::new(clock))
    }

    /// Keeps limiter and tracker state in `store`. Call before cloning the layer.
    pub fn with_store(self, store: impl StateStore) -> LenscapLayer {
        self.with_limits(|limits| limits.store = Arc::new(store))
    }

    fn with_limits(mut self, f: impl FnOnce(&mut Limits)) -> LenscapLayer {
        let shared = Arc::get_mut(&mut self.shared)
            .expect("with_clock / with_store are called on a fresh layer, before it is cloned");
        f(&mut shared.limits);
        self
    }

    /// The limiter state: tracked clients, evictions.
    pub fn limits(&self) -> &Limits {
        &self.shared.limits
    }
}

/// Work left for the response: a cookie to set, a late look at its Content-Type.
#[derive(Debug, Default)]
pub struct AfterResponse {
    set_cookie: Option<HeaderValue>,
    late: Option<Box<LateImage>>,
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
    /// Applies the leftover work to the inner service's response.
    pub fn apply<B>(&mut self, response: &mut Response<B>) {
        if let Some(cookie) = self.set_cookie.take() {
            response.headers_mut().append(header::SET_COOKIE, cookie);
        }
        if let Some(late) = self.late.take()
            && response
                .headers()
                .get(header::CONTENT_TYPE)
                .is_some_and(|t| t.as_bytes().starts_with(b"image/"))
        {
            // What looked like a page was an image: count it as one, after the fact.
            late.store
                .client(late.key, late.now, late.cap, &mut |record, fresh| {
                    if !fresh {
                        record.behaviour.late_image();
                        let _ = late.images.check(&mut record.tat_images, late.now);
                    }
                    !fresh
                });
            late.store
                .subnet(late.subnet, late.now, late.cap, &mut |record| {
                    let _ = late.subnet_images.check(&mut record.tat_images, late.now);
                });
        }
    }
}

/// Which quota refused a request, and for how long.
#[derive(Clone, Copy, Debug)]
struct Refusal {
    quota: &'static str,
    rate: Rate,
    wait: Duration,
}

/// What the tracker and the limiters make of one request: runs before the inner service.
///
/// Behaviour signals are added to `verdict`. `Err` is a response to send instead of calling
/// the inner service (a trap answer, or a 429 when `enforce`). Over quota with
/// `over_quota = "tarpit"`, the verdict's action becomes `tarpit` and the caller holds it.
// The response goes straight into the response future: boxing it would only add an allocation.
#[allow(clippy::result_large_err)]
pub(crate) fn admit<B, R: http_body::Body>(
    limits: &Limits,
    policy: &Policy,
    request: &Request<B>,
    classified: &mut Classified,
    enforce: bool,
) -> Result<AfterResponse, Response<ResponseBody<R>>> {
    let ls = &policy.limits;
    if !ls.enabled {
        return Ok(AfterResponse::default());
    }
    let (now, unix) = limits.clock.now();
    limits.start_cleanup(ls);
    let client = classified.client;
    let secure = classified.secure;
    let verdict = &mut classified.verdict;
    let headers = request.headers();
    let uri = request.uri();
    let path = uri.path();
    let target = uri.path_and_query().map_or(path, |p| p.as_str());
    let trap = ls.is_trap(path);
    let kind = request_kind(
        request.method(),
        path,
        headers,
        classified.image_path || classified.fetch_dest_image,
    );
    let mut facts = Facts::read_with(
        kind,
        target,
        headers,
        secure && !classified.fetch_dest_image,
        &ls.behaviour,
        trap || ls.is_disallowed(path),
    );
    facts.address = address_hash(client);
    let cap = ls.max_tracked_clients;
    let ip_key = limits.key((1u8, client.key()));

    if trap {
        limits.store.client(ip_key, now, cap, &mut |record, _| {
            record.behaviour.observe(&facts, now, &ls.behaviour);
            record.behaviour.mark_trap(
                now,
                ls.trap_mark.as_millis().min(u128::from(u32::MAX / 2)) as u32,
            );
            true
        });
        let mut trap_hit = Reasons::default();
        trap_hit.insert(Reason::TrapHit);
        verdict.add_signals(policy, trap_hit);
        return Err(trap_response());
    }

    let subnet = client.subnet_key(policy.subnets);
    let mut vouched = false;
    let mut refusal: Option<Refusal> = None;
    let mut track = |record: &mut ClientRecord, verdict: &mut Verdict| {
        let observed = record.behaviour.observe(&facts, now, &ls.behaviour);
        verdict.add_signals(policy, observed.reasons);
        vouched = observed.vouched;
        if verdict.action == Action::Block {
            return;
        }
        let suspect = verdict.action >= Action::Throttle;
        if kind == Kind::Page
            && record.behaviour.late_images()
            && let Err(wait) = ls.images.check(&mut record.tat_images, now)
        {
            refusal = Some(Refusal {
                quota: "images",
                rate: ls.images,
                wait,
            });
            return;
        }
        let (quota, rate, cell) = match (kind, suspect, vouched) {
            (Kind::Page, false, _) => ("pages", ls.pages, &mut record.tat_pages),
            (Kind::Page, true, _) => ("suspect-pages", ls.suspect_pages, &mut record.tat_pages),
            (Kind::Image, true, _) => ("suspect-images", ls.suspect_images, &mut record.tat_images),
            (Kind::Image, false, false) => ("images", ls.images, &mut record.tat_images),
            _ => return,
        };
        if let Err(wait) = rate.check(cell, now) {
            refusal = Some(Refusal { quota, rate, wait });
        }
    };

    let visitor = ls.cookie.read(headers, unix);
    let mut tracked_key = ip_key;
    let as_visitor = visitor.is_some_and(|v| {
        let key = limits.key((2u8, v.id, subnet));
        let kept = limits.store.client(key, now, cap, &mut |record, fresh| {
            if fresh {
                if !ls.cookie.verify(&v, subnet) {
                    return false;
                }
                if unix.saturating_sub(u64::from(v.issued)) <= SEED_WITHIN_SECS {
                    record
                        .behaviour
                        .seed_page(v.page, ls.behaviour.credit_per_page);
                }
            }
            track(record, verdict);
            true
        });
        if kept {
            tracked_key = key;
        }
        kept
    });
    if !as_visitor {
        limits.store.client(ip_key, now, cap, &mut |record, _| {
            track(record, verdict);
            true
        });
    }

    let charged = verdict.action != Action::Block && matches!(kind, Kind::Page | Kind::Image);
    let subnet_key = limits.key((3u8, subnet));
    if charged && refusal.is_none() {
        limits.store.subnet(subnet_key, now, cap, &mut |record| {
            let (quota, rate, cell) = match (kind, vouched) {
                (Kind::Page, _) => ("subnet-pages", ls.subnet_pages, &mut record.tat_pages),
                (_, true) => (
                    "subnet-vouched-images",
                    ls.subnet_vouched_images,
                    &mut record.tat_vouched,
                ),
                (_, false) => ("subnet-images", ls.subnet_images, &mut record.tat_images),
            };
            if let Err(wait) = rate.check(cell, now) {
                refusal = Some(Refusal { quota, rate, wait });
            }
        });
    }
    if charged
        && refusal.is_none()
        && kind == Kind::Image
        && !vouched
        && let Some(rate) = ls.unknown_images
    {
        let mut cell = limits
            .site_images
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Err(wait) = rate.check(&mut cell, now) {
            refusal = Some(Refusal {
                quota: "site-images",
                rate,
                wait,
            });
        }
    }

    if let Some(refusal) = refusal {
        let mut over = Reasons::default();
        over.insert(Reason::OverQuota);
        verdict.add_signals(policy, over);
        verdict.action = verdict.action.max(Action::Throttle);
        match ls.over_quota {
            OverQuota::Tarpit => verdict.action = verdict.action.max(Action::Tarpit),
            OverQuota::Reject if enforce => return Err(too_many_requests(refusal)),
            OverQuota::Reject => {}
        }
    }

    let mut after = AfterResponse::default();
    if kind == Kind::Page && verdict.action < Action::Block {
        if !as_visitor && ls.cookie.enabled {
            let mut id = [0u8; 8];
            if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut id).is_ok() {
                let id = u64::from_le_bytes(id);
                after.set_cookie = Some(ls.cookie.issue(id, unix, facts.target, subnet, secure));
            }
        }
        after.late = Some(Box::new(LateImage {
            store: limits.store.clone(),
            key: tracked_key,
            subnet: subnet_key,
            now,
            cap,
            images: ls.images,
            subnet_images: ls.subnet_images,
        }));
    }
    Ok(after)
}

/// A 16-bit hash of the client's address, never 0 (0 means unknown).
fn address_hash(client: ClientId) -> u16 {
    let key = client.key();
    let folded = (key ^ (key >> 64)) as u64;
    let h = (folded ^ (folded >> 32) ^ (folded >> 16)) as u16;
    h.max(1)
}

/// What a request would have met, for `lenscap replay`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Outcome {
    /// Served.
    Allowed,
    /// Served, under the suspects' quotas (or after a tarpit delay).
    Throttled,
    /// Refused: over a rate limit (429).
    Limited,
    /// Refused: blocked, or answered by a trap.
    Blocked,
}

impl Outcome {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Throttled => "throttled",
            Outcome::Limited => "limited",
            Outcome::Blocked => "blocked",
        }
    }
}

/// Classifies, tracks and limits one request as the layer would under enforcement, without
/// calling anything: the verdict and what it would have met.
pub(crate) fn judge<B>(
    limits: &Limits,
    policy: &Policy,
    request: &Request<B>,
) -> (ClientId, Verdict, Outcome, bool) {
    let mut classified = crate::layer::classify(policy, request);
    let image = request_kind(
        request.method(),
        request.uri().path(),
        request.headers(),
        classified.image_path || classified.fetch_dest_image,
    ) == Kind::Image;
    let outcome = match admit::<B, http_body_util::Empty<bytes::Bytes>>(
        limits,
        policy,
        request,
        &mut classified,
        true,
    ) {
        Err(response) if response.status() == StatusCode::TOO_MANY_REQUESTS => Outcome::Limited,
        Err(_) => Outcome::Blocked,
        Ok(_) => match classified.verdict.action {
            Action::Allow => Outcome::Allowed,
            Action::Throttle | Action::Tarpit => Outcome::Throttled,
            Action::Block => Outcome::Blocked,
        },
    };
    (classified.client, classified.verdict, outcome, image)
}

/// Page, image, robots.txt or other, from the request alone. `image`: an image extension or
/// `Sec-Fetch-Dest: image`, as classification found.
fn request_kind(method: &Method, path: &str, headers: &HeaderMap, image: bool) -> Kind {
    if path == "/robots.txt" {
        return Kind::Robots;
    }
    if image
        || headers
            .get(header::ACCEPT)
            .is_some_and(|a| a.as_bytes().starts_with(b"image/"))
    {
        return Kind::Image;
    }
    if method != Method::GET && method != Method::HEAD {
        return Kind::Other;
    }
    let file = path.rsplit('/').next().unwrap_or(path);
    match file.rsplit_once('.') {
        None => Kind::Page,
        Some((_, ext))
            if ["html", "htm", "php", "asp", "aspx", "shtml"]
                .iter()
                .any(|e| e.eq_ignore_ascii_case(ext)) =>
        {
            Kind::Page
        }
        Some(_) => Kind::Other,
    }
}

/// `429 Too Many Requests` with `Retry-After` and the IETF rate-limit fields.
fn too_many_requests<R: http_body::Body>(refusal: Refusal) -> Response<ResponseBody<R>> {
    let seconds = retry_after_secs(refusal.wait);
    let mut response = Response::new(ResponseBody::full(Bytes::from(format!(
        "Too many requests. Please slow down and retry in {seconds} s.\n"
    ))));
    *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    let headers = response.headers_mut();
    let value = |text: String| HeaderValue::try_from(text).expect("ASCII header value");
    headers.insert(header::RETRY_AFTER, value(seconds.to_string()));
    headers.insert(
        "ratelimit-policy",
        value(format!(
            "\"{}\";q={};w={}",
            refusal.quota,
            refusal.rate.burst(),
            refusal.rate.window_secs().max(1)
        )),
    );
    headers.insert(
        "ratelimit",
        value(format!("\"{}\";r=0;t={seconds}", refusal.quota)),
    );
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Whole seconds, rounded up, never 0.
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_nanos().div_ceil(1_000_000_000).max(1) as u64
}

/// The small harmless page a trap path answers.
fn trap_response<R: http_body::Body>() -> Response<ResponseBody<R>> {
    let mut response = Response::new(ResponseBody::full(Bytes::from_static(
        b"<!doctype html><title>Nothing here</title><p>Nothing here.</p>\n",
    )));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        "x-robots-tag",
        HeaderValue::from_static("noindex, nofollow"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_and_is_never_zero() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1000)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
    }
}
