//! The load generator: a survey of the site, then every profile's sessions side by side, each
//! with its own pooled hyper client (its own connections, as a browser or a crawler has),
//! under one gate that bounds the whole run in time, in requests and in requests in flight.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::io::Read as _;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until, timeout_at};

use super::Target;
use super::discovery::{Robots, ScannedPage, is_image_path, resolve, scan_html, way_through_link};
use super::profile::{Identity, ImageChoice, ProfileKind, ProfileSettings, Rotation, Strategy};
use super::report::{ProfileReport, Report, percentile_ms};
use super::scenario::{MAX_ROTATING_ADDRESSES, Scenario};
use super::signing::{AgentSigning, FETCH_WAIT};

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// Pages are read up to this size; images are counted, not kept.
const MAX_PAGE_BYTES: usize = 8 << 20;

/// Runs `scenario` against `target`. `urls`, when given, replaces the survey: its image URLs
/// are what the dataset builder fetches and what counts as available.
pub(crate) async fn run(target: &Target, scenario: &Scenario, urls: Option<Vec<String>>) -> Report {
    let started = Instant::now();
    let deadline = started + scenario.duration;
    let site_host = scenario
        .host
        .clone()
        .unwrap_or_else(|| target.authority().to_owned());
    let visible_scheme = scenario
        .forwarded_proto
        .clone()
        .unwrap_or_else(|| target.scheme().to_owned());
    let secure = visible_scheme == "https" || is_localhost_name(&site_host);
    let shared = Arc::new(Shared {
        base_uris: target
            .addrs()
            .iter()
            .map(|addr| format!("http://{addr}"))
            .collect(),
        next_base: AtomicUsize::new(0),
        host: HeaderValue::from_str(&site_host).unwrap_or(HeaderValue::from_static("localhost")),
        origin: format!("{visible_scheme}://{site_host}"),
        site_scheme: visible_scheme.clone(),
        site_host,
        secure,
        forwarded_proto: scenario
            .forwarded_proto
            .as_deref()
            .and_then(|p| HeaderValue::from_str(p).ok()),
        forward_addresses: scenario.forward_addresses,
        gate: Gate {
            deadline,
            remaining: AtomicU64::new(scenario.max_requests),
            in_flight: Semaphore::new(scenario.concurrency),
        },
        request_timeout: scenario.request_timeout,
        blocked: scenario.blocked_statuses.clone(),
        throttled: scenario.throttled_statuses.clone(),
        start: scenario.start.clone(),
        sessions_started: AtomicU32::new(0),
        subnets_started: AtomicU32::new(0),
        undecodable: AtomicU64::new(0),
        not_images: AtomicU64::new(0),
        site: Mutex::new(SiteMap::default()),
    });

    let mut report = Report::empty(target.url());
    report.scenario = scenario.name.clone();

    // The survey: what the site offers (or the URL list, when given).
    let site = match urls {
        Some(list) => {
            let mut map = SiteMap::default();
            for url in list {
                let Some(path) = resolve("/", &url, &shared.site_scheme, &shared.site_host) else {
                    report
                        .notes
                        .push(format!("URL list: {url} is not on the target; skipped"));
                    continue;
                };
                if is_image_path(&path) {
                    map.images.push(path);
                } else {
                    map.pages.push(path);
                }
            }
            map.images.dedup();
            map
        }
        None => {
            let survey = Arc::new(ProfileRun::new(
                survey_settings(scenario.max_pages),
                usize::MAX,
                &shared,
            ));
            let mut session = Session::new(&shared, &survey, 0, scenario.seed, &[SURVEYOR]);
            session.crawl(false).await;
            report.survey_requests = session.log.requests;
            if session.log.refused {
                report.notes.push(
                    "the survey was refused at least once: images available may be undercounted"
                        .into(),
                );
            }
            session.site
        }
    };
    report.images_available = site.images.len() as u64;
    report.pages_surveyed = site.pages.len() as u64;
    *shared.site.lock().expect("site lock") = site;

    // Every profile's sessions, side by side.
    let runs: Vec<Arc<ProfileRun>> = scenario
        .profiles
        .iter()
        .enumerate()
        .map(|(index, settings)| Arc::new(ProfileRun::new(settings.clone(), index, &shared)))
        .collect();
    for run in &runs {
        match &run.signing {
            Some(Err(error)) => report.notes.push(format!("unsigned: {error}")),
            Some(Ok(signing)) if !signing.published().await => report.notes.push(format!(
                "{}: the target did not fetch the key directory {} within {} s",
                run.settings.kind,
                signing.origin(),
                FETCH_WAIT.as_secs()
            )),
            _ => {}
        }
    }
    let mut tasks = JoinSet::new();
    for run in &runs {
        for session_index in 0..run.settings.sessions {
            let shared = shared.clone();
            let run = run.clone();
            let seed = scenario
                .seed
                .wrapping_mul(1_000_003)
                .wrapping_add((run.index as u64) << 32 | u64::from(session_index));
            tasks.spawn(async move {
                let identities = run.settings.kind.identities();
                let mut session = Session::new(&shared, &run, session_index, seed, identities);
                session.play().await;
                session.finish();
            });
        }
    }
    while let Some(result) = tasks.join_next().await {
        if let Err(error) = result {
            report.notes.push(format!("a session failed: {error}"));
        }
    }

    report.elapsed = started.elapsed();
    let mut total = report.survey_requests;
    for run in &runs {
        let profile = run.report();
        total += profile.requests;
        report.profiles.push(profile);
    }
    report.requests_per_s = total as f64 / report.elapsed.as_secs_f64().max(1e-9);
    let undecodable = shared.undecodable.load(Ordering::Relaxed);
    if undecodable > 0 {
        report.notes.push(format!(
            "{undecodable} pages came with a Content-Encoding the simulator cannot decode (br or zstd); their links were not followed"
        ));
    }
    let not_images = shared.not_images.load(Ordering::Relaxed);
    if not_images > 0 {
        report.notes.push(format!(
            "{not_images} image requests were answered 2xx with a Content-Type that is not an image (a challenge or error page?); they do not count as images obtained"
        ));
    }
    report.compute_detection();
    report
}

/// Whether a 2xx answer to an image request carries an image: an `image/*` type, or a type
/// that says nothing (missing, `application/octet-stream`, as some servers send for any file).
fn is_image_content_type(content_type: Option<&str>) -> bool {
    let Some(value) = content_type else {
        return true;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    essence.is_empty()
        || essence.starts_with("image/")
        || essence == "application/octet-stream"
        || essence == "binary/octet-stream"
}

fn survey_settings(max_pages: usize) -> ProfileSettings {
    ProfileSettings {
        pages: max_pages,
        concurrency: 1,
        give_up_after: 5,
        // It turns pages far faster than a person: with a visitor cookie it would be one
        // visitor over its page pace (the way-through page); without, its pages are an
        // address's arrivals, which are served.
        keeps_cookies: false,
        // It maps the site without a person's pauses.
        think: (Duration::ZERO, Duration::ZERO),
        ..ProfileKind::Human.defaults()
    }
}

/// The survey reads pages as a plain Firefox would.
const SURVEYOR: Identity = Identity {
    user_agent: "Mozilla/5.0 (X11; Linux x86_64; rv:145.0) Gecko/20100101 Firefox/145.0",
    robots_token: "Firefox",
    document: &[
        (
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ),
        ("accept-language", "en-GB,en;q=0.5"),
        ("accept-encoding", "gzip, deflate"),
    ],
    image: &[],
    fetch_metadata: true,
    client_hints: &[],
};

fn is_localhost_name(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    let name = name.to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost") || name.starts_with("127.") || name == "::1"
}

// === impl Gate ===

/// Bounds the whole run: a deadline, a request budget, and requests in flight.
struct Gate {
    deadline: Instant,
    remaining: AtomicU64,
    in_flight: Semaphore,
}

impl Gate {
    /// A ticket for one request, or `None` once the run's time or request budget is spent.
    async fn enter(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        if Instant::now() >= self.deadline {
            return None;
        }
        self.remaining
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |r| r.checked_sub(1))
            .ok()?;
        timeout_at(self.deadline, self.in_flight.acquire())
            .await
            .ok()?
            .ok()
    }

    fn closed(&self) -> bool {
        Instant::now() >= self.deadline || self.remaining.load(Ordering::Acquire) == 0
    }
}

struct Shared {
    /// `http://ADDR:PORT`: connections go to the addresses resolved and checked once, in
    /// turn (a fleet behind a round-robin balancer).
    base_uris: Vec<String>,
    next_base: AtomicUsize,
    host: HeaderValue,
    /// `scheme://host` as a browser on the site sees it (for Referer).
    origin: String,
    site_scheme: String,
    site_host: String,
    secure: bool,
    forwarded_proto: Option<HeaderValue>,
    forward_addresses: bool,
    gate: Gate,
    request_timeout: Duration,
    blocked: Vec<u16>,
    throttled: Vec<u16>,
    start: String,
    sessions_started: AtomicU32,
    subnets_started: AtomicU32,
    undecodable: AtomicU64,
    /// Image requests answered 2xx with a body that is not an image.
    not_images: AtomicU64,
    site: Mutex<SiteMap>,
}

/// What the survey found: pages and every image URL (all srcset candidates).
#[derive(Clone, Debug, Default)]
struct SiteMap {
    pages: Vec<String>,
    images: Vec<String>,
}

// === impl ProfileRun ===

/// One profile's settings and the counters its sessions share.
struct ProfileRun {
    settings: ProfileSettings,
    index: usize,
    /// Responses so far, across sessions (numbers `first_stop_at`).
    ordinal: AtomicU64,
    first_stop: AtomicU64,
    rotation: AtomicU64,
    shared_address: Ipv4Addr,
    totals: Mutex<Totals>,
    /// Signing profiles: the key and its directory (or why they could not be made).
    signing: Option<Result<AgentSigning, String>>,
}

#[derive(Default)]
struct Totals {
    sessions: u32,
    requests: u64,
    images_requested: u64,
    images_obtained: u64,
    opted_out: u64,
    skipped_by_robots: u64,
    throttled: u64,
    blocked: u64,
    statuses: BTreeMap<String, u64>,
    latencies: Vec<u32>,
    stopped: u32,
    hindered: u32,
    addresses: HashSet<IpAddr>,
    rotated: bool,
    way_through: u64,
}

impl ProfileRun {
    fn new(settings: ProfileSettings, index: usize, shared: &Shared) -> ProfileRun {
        let settings_signs = settings.kind.signs();
        let settings_for_signing = settings.clone();
        let shared_address =
            session_address(shared.sessions_started.fetch_add(1, Ordering::Relaxed));
        ProfileRun {
            settings,
            index,
            ordinal: AtomicU64::new(0),
            first_stop: AtomicU64::new(u64::MAX),
            rotation: AtomicU64::new(0),
            shared_address,
            totals: Mutex::new(Totals::default()),
            signing: settings_signs.then(|| AgentSigning::start(&settings_for_signing)),
        }
    }

    fn report(&self) -> ProfileReport {
        let mut totals = self.totals.lock().expect("totals lock");
        totals.latencies.sort_unstable();
        let first_stop = self.first_stop.load(Ordering::Acquire);
        // A rotating session takes an address for every request it prepares; one stopped by
        // the run's bounds before it was sent used none.
        let addresses = if totals.rotated {
            self.rotation
                .load(Ordering::Acquire)
                .min(u64::from(self.settings.addresses))
                .min(totals.requests)
        } else {
            totals.addresses.len() as u64
        };
        ProfileReport {
            profile: self.settings.kind,
            sessions: totals.sessions,
            requests: totals.requests,
            images_requested: totals.images_requested,
            images_obtained: totals.images_obtained,
            images_opted_out: totals.opted_out,
            images_skipped_by_robots: totals.skipped_by_robots,
            throttled: totals.throttled,
            blocked: totals.blocked,
            first_stop_at: (first_stop != u64::MAX).then_some(first_stop),
            p50_ms: percentile_ms(&totals.latencies, 0.5),
            p99_ms: percentile_ms(&totals.latencies, 0.99),
            statuses: std::mem::take(&mut totals.statuses),
            sessions_stopped: totals.stopped,
            sessions_hindered: totals.hindered,
            addresses,
            way_through_pages: totals.way_through,
        }
    }
}

/// The `n`th session's own address, in 198.18.0.0/15 (the benchmarking range).
/// The `n`-th session's own address: each in its own /24 of 198.18.0.0/15 (as households
/// are), so sessions never share a subnet budget by accident.
fn session_address(n: u32) -> Ipv4Addr {
    let n = n % (512 * 254);
    let (subnet, host) = (n % 512, n / 512);
    Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 1)) + (subnet << 8) + host)
}

/// An address inside Google's published Googlebot ranges (for the search-engine profile).
fn googlebot_address(n: u32) -> Option<Ipv4Addr> {
    let (_, text) = crate::catalog::ranges::EMBEDDED_RANGES
        .iter()
        .find(|(name, _)| *name == "googlebot")?;
    let json: serde_json::Value = serde_json::from_str(text).ok()?;
    let prefix = json["prefixes"]
        .as_array()?
        .iter()
        .find_map(|p| p["ipv4Prefix"].as_str())?;
    let network: ipnet::Ipv4Net = prefix.parse().ok()?;
    let hosts = (1u32 << (32 - network.prefix_len()))
        .saturating_sub(2)
        .max(1);
    Some(Ipv4Addr::from(u32::from(network.network()) + 1 + n % hosts))
}

// === impl Session ===

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Robots,
    /// A page; `navigated` is false for the first page of a session (typed or bookmarked).
    Document {
        navigated: bool,
    },
    Image,
    /// A stylesheet the page links (fetched by renderers).
    Style,
    /// The way-through page's pass URL.
    Pass,
    /// A photo link opened as a page of its own: counted as an image.
    Opened,
}

impl Kind {
    /// Whether an answer to it counts as an image obtained.
    fn is_image(self) -> bool {
        matches!(self, Kind::Image | Kind::Opened)
    }
}

enum Outcome {
    /// The run's bounds refused a ticket.
    NotSent,
    /// Still in flight when the run's time ran out.
    Cut,
    Timeout,
    Error,
    Status(u16),
}

struct Fetched {
    path: String,
    kind: Kind,
    outcome: Outcome,
    elapsed: Duration,
    body: Option<Bytes>,
    /// The body arrived whole.
    complete: bool,
    x_robots_tag: Vec<String>,
    content_encoding: Option<String>,
    content_type: Option<String>,
    set_cookie: Vec<String>,
    /// `Location` of a redirect.
    location: Option<String>,
}

impl Fetched {
    /// The way-through page's wait and pass URL, when this is one (a 429 page for a page view).
    fn way_through(&self) -> Option<(u64, String)> {
        let Outcome::Status(429) = self.outcome else {
            return None;
        };
        if !matches!(self.kind, Kind::Document { .. }) {
            return None;
        }
        way_through_link(&decode_body(self)?)
    }
}

#[derive(Default)]
struct SessionLog {
    requests: u64,
    statuses: BTreeMap<String, u64>,
    latencies: Vec<u32>,
    images_requested: HashSet<String>,
    images_obtained: HashSet<String>,
    opted_out: u64,
    skipped_by_robots: u64,
    throttled: u64,
    blocked: u64,
    refused: bool,
    failed: bool,
    /// robots.txt or `X-Robots-Tag` kept it off something.
    kept_off: bool,
    /// Way-through pages answered instead of a page.
    way_through: u64,
    addresses: HashSet<IpAddr>,
}

struct Session {
    shared: Arc<Shared>,
    run: Arc<ProfileRun>,
    index: u32,
    identity: &'static Identity,
    user_agent: HeaderValue,
    extra: Vec<(HeaderName, HeaderValue)>,
    client: HttpClient,
    address: Ipv4Addr,
    subnet: u32,
    rng: fastrand::Rng,
    log: SessionLog,
    sent: u64,
    refusals_in_row: u32,
    done: bool,
    /// What this session found (the survey's result).
    site: SiteMap,
    /// Cookies the site set (`name`, `value`), for profiles that keep them.
    cookies: Vec<(String, String)>,
    /// The address of the page view under way, for profiles that move only between pages.
    page_address: Option<Ipv4Addr>,
}

impl Session {
    fn new(
        shared: &Arc<Shared>,
        run: &Arc<ProfileRun>,
        index: u32,
        seed: u64,
        identities: &'static [Identity],
    ) -> Session {
        let settings = &run.settings;
        let identity = &identities[index as usize % identities.len()];
        let user_agent = settings
            .user_agent
            .as_deref()
            .and_then(|ua| HeaderValue::from_str(ua).ok())
            .unwrap_or(HeaderValue::from_static(identity.user_agent));
        let extra = settings
            .headers
            .iter()
            .filter_map(|(n, v)| {
                Some((
                    HeaderName::from_bytes(n.as_bytes()).ok()?,
                    HeaderValue::from_str(v).ok()?,
                ))
            })
            .collect();
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(shared.request_timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(settings.concurrency)
            .build(connector);
        let n = shared.sessions_started.fetch_add(1, Ordering::Relaxed);
        let address = match (settings.kind, settings.rotate) {
            (_, Rotation::Shared) => run.shared_address,
            (ProfileKind::SearchEngine, _) => {
                googlebot_address(index).unwrap_or(session_address(n))
            }
            _ => session_address(n),
        };
        Session {
            shared: shared.clone(),
            run: run.clone(),
            index,
            identity,
            user_agent,
            extra,
            client,
            address,
            subnet: shared.subnets_started.fetch_add(1, Ordering::Relaxed) % 256,
            rng: fastrand::Rng::with_seed(seed),
            log: SessionLog::default(),
            sent: 0,
            refusals_in_row: 0,
            done: false,
            site: SiteMap::default(),
            cookies: Vec::new(),
            page_address: None,
        }
    }
}

impl Session {
    async fn play(&mut self) {
        match self.run.settings.kind.strategy() {
            Strategy::Browse => self.browse().await,
            Strategy::OpenLinks => self.open_links().await,
            Strategy::Crawl => self.crawl(true).await,
            Strategy::List => self.fetch_list().await,
        }
    }

    fn stopped(&self) -> bool {
        self.done
            || self.shared.gate.closed()
            || (self.run.settings.max_requests > 0 && self.sent >= self.run.settings.max_requests)
    }

    /// A person: a page, its images as the browser picks them, a pause, a link.
    async fn browse(&mut self) {
        let mut path = self.shared.start.clone();
        let mut referer: Option<String> = None;
        let mut cache: HashSet<String> = HashSet::new();
        for _ in 0..self.run.settings.pages {
            if self.stopped() {
                break;
            }
            let kind = Kind::Document {
                navigated: referer.is_some(),
            };
            let Some((opened, page)) = self.open_page(&path, kind, referer.clone()).await else {
                break;
            };
            path = opened;
            let images: Vec<String> = page
                .images
                .iter()
                .filter(|element| !element.source)
                .filter_map(|element| element.browser_choice())
                .filter_map(|src| self.resolve(&path, src))
                .filter(|src| cache.insert(src.clone()))
                .collect();
            let page_url = format!("{}{path}", self.shared.origin);
            // A browser asks for the head's stylesheets first (Chromium's render proof request
            // was the first after the page in every view measured), then the images.
            let stylesheets = self.stylesheets_of(&path, &page);
            self.fetch_batch(stylesheets).await;
            let batch = images
                .into_iter()
                .map(|src| (src, Kind::Image, Some(page_url.clone())))
                .collect();
            self.fetch_batch(batch).await;
            let Some(next) = self.random_link(&path, &page) else {
                break;
            };
            let think = self.think();
            self.pause(think).await;
            referer = Some(page_url);
            path = next;
        }
    }

    /// A crawler: robots.txt if it reads it, then pages breadth-first and every image found.
    /// With `images` false it only maps the site (the survey).
    async fn crawl(&mut self, images: bool) {
        let settings = self.run.settings.clone();
        let mut robots: Option<Robots> = None;
        let mut delay = settings.delay;
        if images && settings.fetch_robots {
            let fetched = self
                .fetch_batch(vec![("/robots.txt".into(), Kind::Robots, None)])
                .await;
            if let Some(f) = fetched.into_iter().next()
                && settings.obey_robots
            {
                robots = match f.outcome {
                    Outcome::Status(s) if (200..300).contains(&s) => {
                        let text = decode_body(&f).unwrap_or_default();
                        Some(Robots::parse(&text, self.identity.robots_token))
                    }
                    // RFC 9309: unreachable (5xx, no answer) means assume complete disallow.
                    Outcome::Status(500..) | Outcome::Timeout | Outcome::Error => {
                        Some(Robots::parse("User-agent: *\nDisallow: /\n", "*"))
                    }
                    _ => None,
                };
                if let Some(seconds) = robots.as_ref().and_then(|r| r.crawl_delay) {
                    delay = delay.max(Duration::from_secs_f64(seconds.clamp(0.0, 5.0)));
                }
            }
        }
        let allowed =
            |robots: &Option<Robots>, path: &str| robots.as_ref().is_none_or(|r| r.allows(path));

        let mut queue = VecDeque::from([self.shared.start.clone()]);
        let mut seen_pages: HashSet<String> = queue.iter().cloned().collect();
        let mut seen_images: HashSet<String> = HashSet::new();
        let mut all_images: Vec<String> = Vec::new();
        let mut visited = 0;
        let choice = settings.kind.image_choice();
        while let Some(path) = queue.pop_front() {
            if visited >= settings.pages || self.stopped() {
                break;
            }
            if !allowed(&robots, &path) {
                self.log.kept_off = true;
                continue;
            }
            if visited > 0 && !delay.is_zero() {
                self.pause(delay).await;
            }
            if visited > 0 {
                let think = self.think();
                self.pause(think).await;
            }
            visited += 1;
            // A stealth scraper arrives as if from a search result.
            let referer = (settings.kind == ProfileKind::Stealth && visited == 1)
                .then(|| "https://www.google.com/".to_owned());
            let Some(page) = self
                .fetch_page(
                    &path,
                    Kind::Document {
                        navigated: visited > 1,
                    },
                    referer,
                )
                .await
            else {
                continue;
            };
            self.site.pages.push(path.clone());
            let mut found: Vec<String> = Vec::new();
            // Scrapers follow every link, hidden ones too (a person never sees those); the
            // survey, which only counts what a person can reach, does not.
            let hidden = if images {
                page.hidden_links.as_slice()
            } else {
                &[]
            };
            for href in page.links.iter().chain(hidden) {
                let Some(link) = self.resolve(&path, href) else {
                    continue;
                };
                if is_image_path(&link) {
                    found.push(link);
                } else if seen_pages.insert(link.clone()) {
                    queue.push_back(link);
                }
            }
            for element in &page.images {
                match (images, choice) {
                    (false, _) | (true, ImageChoice::All) => {
                        found.extend(element.all().filter_map(|src| self.resolve(&path, src)));
                    }
                    (true, ImageChoice::Largest) if !element.source => {
                        found.extend(element.largest().and_then(|src| self.resolve(&path, src)));
                    }
                    (true, ImageChoice::Browser) if !element.source => {
                        found.extend(
                            element
                                .browser_choice()
                                .and_then(|src| self.resolve(&path, src)),
                        );
                    }
                    _ => {}
                }
            }
            let mut batch = Vec::new();
            if images && settings.kind.renders() {
                let page_url = format!("{}{path}", self.shared.origin);
                for sheet in &page.stylesheets {
                    if let Some(sheet) = self.resolve(&path, sheet)
                        && seen_images.insert(sheet.clone())
                    {
                        batch.push((sheet, Kind::Style, Some(page_url.clone())));
                    }
                }
            }
            for image in found {
                if !seen_images.insert(image.clone()) {
                    continue;
                }
                self.site.images.push(image.clone());
                if !images {
                    continue;
                }
                if !allowed(&robots, &image) {
                    self.log.skipped_by_robots += 1;
                    self.log.kept_off = true;
                    continue;
                }
                all_images.push(image.clone());
                batch.push((
                    image,
                    Kind::Image,
                    Some(format!("{}{path}", self.shared.origin)),
                ));
            }
            if images {
                self.fetch_batch_paced(batch, delay).await;
            }
        }
        if images && settings.repeat && !all_images.is_empty() {
            while !self.stopped() {
                let batch = all_images
                    .iter()
                    .map(|i| (i.clone(), Kind::Image, None))
                    .collect();
                self.fetch_batch_paced(batch, delay).await;
            }
        }
    }

    /// A pause between two pages, uniform in the profile's `think` range.
    fn think(&mut self) -> Duration {
        let (low, high) = self.run.settings.think;
        low + high.saturating_sub(low).mul_f64(self.rng.f64())
    }

    /// A link of page `path` to another page (not an image, not itself), picked at random as
    /// a person picks one; `None` when it has none.
    fn random_link(&mut self, path: &str, page: &ScannedPage) -> Option<String> {
        let links: Vec<String> = page
            .links
            .iter()
            .filter_map(|href| self.resolve(path, href))
            .filter(|link| !is_image_path(link) && link != path)
            .collect();
        (!links.is_empty()).then(|| links[self.rng.usize(..links.len())].clone())
    }

    /// A guest: pages as a person reaches them (a random link each time), and every photo link
    /// on them opened as a page of its own, one after another, a pause between two.
    async fn open_links(&mut self) {
        let mut path = self.shared.start.clone();
        let mut referer: Option<String> = None;
        let mut opened: HashSet<String> = HashSet::new();
        let mut pages_seen = 0;
        while opened.len() < self.run.settings.pages && pages_seen < 50 && !self.stopped() {
            pages_seen += 1;
            let kind = Kind::Document {
                navigated: referer.is_some(),
            };
            let Some((at, page)) = self.open_page(&path, kind, referer.clone()).await else {
                break;
            };
            path = at;
            let page_url = format!("{}{path}", self.shared.origin);
            let stylesheets = self.stylesheets_of(&path, &page);
            self.fetch_batch(stylesheets).await;
            let photos: Vec<String> = page
                .links
                .iter()
                .filter_map(|href| self.resolve(&path, href))
                .filter(|link| is_image_path(link) && !opened.contains(link))
                .collect();
            for photo in photos {
                if opened.len() >= self.run.settings.pages || self.stopped() {
                    break;
                }
                opened.insert(photo.clone());
                self.fetch_batch(vec![(photo, Kind::Opened, Some(page_url.clone()))])
                    .await;
                let think = self.think();
                self.pause(think).await;
            }
            let Some(next) = self.random_link(&path, &page) else {
                break;
            };
            referer = Some(page_url);
            path = next;
        }
    }

    /// A page as a person gets it: when the site answers its way-through page instead, waits
    /// out the refresh and follows it (the pass URL, then its redirect back to the page with
    /// the pass in the URL). The path finally shown, and the page.
    async fn open_page(
        &mut self,
        path: &str,
        kind: Kind,
        referer: Option<String>,
    ) -> Option<(String, ScannedPage)> {
        let fetched = self.fetch_document(path, kind, referer.clone()).await?;
        let Some((wait, pass_url)) = fetched.way_through() else {
            return Some((path.to_owned(), self.scan(&fetched)?));
        };
        if self.run.settings.kind.role() != super::profile::Role::Human {
            return None;
        }
        self.pause(Duration::from_secs(wait)).await;
        let here = format!("{}{path}", self.shared.origin);
        let pass_path = self.resolve(path, &pass_url)?;
        let redeemed = self
            .fetch_document(&pass_path, Kind::Pass, Some(here.clone()))
            .await?;
        let back = self.resolve(path, redeemed.location.as_deref()?)?;
        let page = self
            .fetch_document(&back, Kind::Document { navigated: true }, Some(here))
            .await?;
        Some((back, self.scan(&page)?))
    }

    /// The stylesheets page `path` links, as a renderer asks for them (none for a profile
    /// that does not render).
    fn stylesheets_of(
        &self,
        path: &str,
        page: &ScannedPage,
    ) -> Vec<(String, Kind, Option<String>)> {
        if !self.run.settings.kind.renders() {
            return Vec::new();
        }
        let page_url = format!("{}{path}", self.shared.origin);
        page.stylesheets
            .iter()
            .filter_map(|sheet| self.resolve(path, sheet))
            .map(|sheet| (sheet, Kind::Style, Some(page_url.clone())))
            .collect()
    }

    /// img2dataset: its share of the URL list, many at once.
    async fn fetch_list(&mut self) {
        let images = self.shared.site.lock().expect("site lock").images.clone();
        let sessions = self.run.settings.sessions.max(1) as usize;
        let mine: Vec<String> = images
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % sessions == self.index as usize)
            .map(|(_, url)| url)
            .collect();
        loop {
            let batch = mine
                .iter()
                .map(|u| (u.clone(), Kind::Image, None))
                .collect();
            let delay = self.run.settings.delay;
            self.fetch_batch_paced(batch, delay).await;
            if !self.run.settings.repeat || mine.is_empty() || self.stopped() {
                break;
            }
        }
    }

    async fn fetch_page(
        &mut self,
        path: &str,
        kind: Kind,
        referer: Option<String>,
    ) -> Option<ScannedPage> {
        let fetched = self.fetch_document(path, kind, referer).await?;
        self.scan(&fetched)
    }

    /// One request whose body is kept.
    async fn fetch_document(
        &mut self,
        path: &str,
        kind: Kind,
        referer: Option<String>,
    ) -> Option<Fetched> {
        self.fetch_batch(vec![(path.to_owned(), kind, referer)])
            .await
            .into_iter()
            .next()
    }

    /// The links and images of a 2xx page.
    fn scan(&self, fetched: &Fetched) -> Option<ScannedPage> {
        match fetched.outcome {
            Outcome::Status(s) if (200..300).contains(&s) => {}
            _ => return None,
        }
        Some(scan_html(&decode_body(fetched).or_else(|| {
            self.shared.undecodable.fetch_add(1, Ordering::Relaxed);
            None
        })?))
    }

    fn resolve(&self, base: &str, reference: &str) -> Option<String> {
        resolve(
            base,
            reference,
            &self.shared.site_scheme,
            &self.shared.site_host,
        )
    }

    async fn pause(&self, duration: Duration) {
        sleep_until((Instant::now() + duration).min(self.shared.gate.deadline)).await;
    }

    async fn fetch_batch(&mut self, items: Vec<(String, Kind, Option<String>)>) -> Vec<Fetched> {
        self.fetch_batch_paced(items, Duration::ZERO).await
    }

    /// Fetches `items` with up to the profile's concurrency in flight, `delay` between starts,
    /// recording each answer as it arrives.
    async fn fetch_batch_paced(
        &mut self,
        items: Vec<(String, Kind, Option<String>)>,
        delay: Duration,
    ) -> Vec<Fetched> {
        let concurrency = self.run.settings.concurrency.max(1);
        let mut set: JoinSet<Fetched> = JoinSet::new();
        let mut out = Vec::new();
        for (position, (path, kind, referer)) in items.into_iter().enumerate() {
            while set.len() >= concurrency {
                if let Some(Ok(fetched)) = set.join_next().await {
                    self.record(&fetched);
                    out.push(fetched);
                }
            }
            if self.stopped() {
                break;
            }
            if position > 0 && !delay.is_zero() {
                self.pause(delay).await;
            }
            let request = match self.prepare(&path, kind, referer.as_deref()) {
                Some(request) => request,
                None => continue,
            };
            self.sent += 1;
            let keep_body = !matches!(kind, Kind::Image | Kind::Opened | Kind::Style);
            set.spawn(fetch(
                self.shared.clone(),
                self.client.clone(),
                request,
                path,
                kind,
                keep_body,
            ));
        }
        while let Some(result) = set.join_next().await {
            if let Ok(fetched) = result {
                self.record(&fetched);
                out.push(fetched);
            }
        }
        out
    }

    /// The request as this identity sends it.
    fn prepare(
        &mut self,
        path: &str,
        kind: Kind,
        referer: Option<&str>,
    ) -> Option<Request<Empty<Bytes>>> {
        let identity = self.identity;
        let shared = &self.shared;
        let turn = shared.next_base.fetch_add(1, Ordering::Relaxed);
        let base = &shared.base_uris[turn % shared.base_uris.len()];
        let mut builder =
            Request::get(format!("{base}{path}")).header(header::HOST, shared.host.clone());
        let claims_secure = self.run.settings.kind.claims_secure();
        let secure = shared.secure || claims_secure;
        if secure {
            for (name, value) in identity.client_hints {
                builder = builder.header(*name, *value);
            }
        }
        builder = builder.header(header::USER_AGENT, self.user_agent.clone());
        let set = match kind {
            Kind::Image | Kind::Style => identity.image,
            Kind::Document { .. } | Kind::Robots | Kind::Pass | Kind::Opened => identity.document,
        };
        for (name, value) in set {
            let value = match (kind, *name) {
                (Kind::Style, "accept") => "text/css,*/*;q=0.1",
                _ => *value,
            };
            builder = builder.header(*name, value);
        }
        if secure && identity.fetch_metadata {
            let (site, mode, dest) = match kind {
                Kind::Document { navigated: false } => ("none", "navigate", "document"),
                Kind::Document { navigated: true } | Kind::Pass | Kind::Opened => {
                    ("same-origin", "navigate", "document")
                }
                Kind::Image => ("same-origin", "no-cors", "image"),
                Kind::Style => ("same-origin", "no-cors", "style"),
                Kind::Robots => ("none", "navigate", "document"),
            };
            let site = if referer.is_some_and(|r| !r.starts_with(&shared.origin)) {
                "cross-site"
            } else {
                site
            };
            builder = builder
                .header("sec-fetch-site", site)
                .header("sec-fetch-mode", mode)
                .header("sec-fetch-dest", dest);
            if mode == "navigate" {
                builder = builder.header("sec-fetch-user", "?1");
            }
        }
        if let Some(referer) = referer {
            builder = builder.header(header::REFERER, referer);
        }
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self
                .cookies
                .iter()
                .map(|(n, v)| format!("{n}={v}"))
                .collect();
            builder = builder.header(header::COOKIE, jar.join("; "));
        }
        for (name, value) in &self.extra {
            builder = builder.header(name.clone(), value.clone());
        }
        if let Some(Ok(signing)) = &self.run.signing {
            let offer = self.run.settings.kind.price_offer();
            let authority = shared.host.to_str().unwrap_or("localhost");
            for (name, value) in signing.headers(authority, offer) {
                builder = builder.header(name, value);
            }
            if let Some((name, value)) = offer {
                builder = builder.header(name, value);
            }
        }
        if let Some(proto) = &shared.forwarded_proto {
            builder = builder.header("x-forwarded-proto", proto.clone());
        } else if claims_secure {
            builder = builder.header("x-forwarded-proto", "https");
        }
        if shared.forward_addresses {
            let address = IpAddr::V4(self.address_for(kind));
            // Rotating profiles are counted from the rotation counter: a flood's million
            // addresses are not kept in a set.
            if matches!(
                self.run.settings.rotate,
                Rotation::PerSession | Rotation::Shared
            ) {
                self.log.addresses.insert(address);
            }
            builder = builder.header("x-forwarded-for", address.to_string());
        }
        builder.body(Empty::new()).ok()
    }

    /// The address a request of `kind` comes from: a new one per page view for profiles that
    /// move only between pages, else the rotation's next.
    fn address_for(&mut self, kind: Kind) -> Ipv4Addr {
        if !self.run.settings.kind.moves_per_page() {
            return self.next_address();
        }
        match (kind, self.page_address) {
            (Kind::Document { .. }, _) | (_, None) => {
                let address = self.next_address();
                self.page_address = Some(address);
                address
            }
            (_, Some(address)) => address,
        }
    }

    fn next_address(&mut self) -> Ipv4Addr {
        let settings = &self.run.settings;
        match settings.rotate {
            Rotation::PerSession | Rotation::Shared => self.address,
            Rotation::Subnet => {
                let n = self.run.rotation.fetch_add(1, Ordering::Relaxed);
                let span = u64::from(settings.addresses.clamp(1, 254));
                Ipv4Addr::new(198, 19, self.subnet as u8, 1 + (n % span) as u8)
            }
            Rotation::Wide => {
                let n = self.run.rotation.fetch_add(1, Ordering::Relaxed);
                let span = u64::from(settings.addresses.clamp(1, MAX_ROTATING_ADDRESSES));
                let block = (self.run.index as u32 % 16) << 20;
                Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 0)) + block + (n % span) as u32)
            }
            Rotation::Subnets => {
                let n = self.run.rotation.fetch_add(1, Ordering::Relaxed);
                // Up to 2^12 /24s inside the profile's own /12 of 10.0.0.0/8.
                let span = u64::from(settings.addresses.clamp(1, 1 << 12));
                let block = (self.run.index as u32 % 16) << 20;
                let subnet = ((n % span) as u32) << 8;
                Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 0)) + block + subnet + 1)
            }
        }
    }

    /// Counts one answer and decides whether the session gives up.
    fn record(&mut self, f: &Fetched) {
        if self.run.settings.keeps_cookies {
            for line in &f.set_cookie {
                store_cookie(&mut self.cookies, line);
            }
        }
        let settings = &self.run.settings;
        let log = &mut self.log;
        let status = match f.outcome {
            Outcome::NotSent => {
                self.done = true;
                return;
            }
            Outcome::Cut => {
                log.requests += 1;
                *log.statuses.entry("cut".into()).or_default() += 1;
                self.done = true;
                return;
            }
            Outcome::Timeout | Outcome::Error => {
                log.requests += 1;
                let key = if matches!(f.outcome, Outcome::Timeout) {
                    "timeout"
                } else {
                    "error"
                };
                *log.statuses.entry(key.into()).or_default() += 1;
                log.failed = true;
                if f.kind.is_image() {
                    log.images_requested.insert(f.path.clone());
                }
                return;
            }
            Outcome::Status(status) => status,
        };
        log.requests += 1;
        log.latencies
            .push(f.elapsed.as_micros().min(u128::from(u32::MAX)) as u32);
        *log.statuses.entry(status.to_string()).or_default() += 1;
        let ordinal = self.run.ordinal.fetch_add(1, Ordering::AcqRel) + 1;
        if f.kind.is_image() {
            log.images_requested.insert(f.path.clone());
        }
        if f.way_through().is_some() {
            log.way_through += 1;
            // A person follows it (hindered only past one per session); a scraper is stopped.
            if settings.kind.role() == super::profile::Role::Human {
                return;
            }
        }
        if f.kind == Kind::Pass && status >= 400 {
            log.failed = true;
        }
        let throttled = self.shared.throttled.contains(&status);
        let blocked = self.shared.blocked.contains(&status);
        if throttled || blocked {
            if throttled {
                log.throttled += 1;
            } else {
                log.blocked += 1;
            }
            log.refused = true;
            self.run.first_stop.fetch_min(ordinal, Ordering::AcqRel);
            self.refusals_in_row += 1;
            if settings.give_up_after > 0 && self.refusals_in_row >= settings.give_up_after {
                self.done = true;
            }
            return;
        }
        self.refusals_in_row = 0;
        if f.kind.is_image() && (200..300).contains(&status) && f.complete {
            if !is_image_content_type(f.content_type.as_deref()) {
                // A challenge or error page served with a 2xx is not the photo.
                self.shared.not_images.fetch_add(1, Ordering::Relaxed);
            } else if settings.honor_noai
                && x_robots_tag_forbids(&f.x_robots_tag, self.identity.robots_token)
            {
                log.opted_out += 1;
            } else {
                log.images_obtained.insert(f.path.clone());
            }
        }
    }

    /// Adds this session to its profile's totals.
    fn finish(self) {
        let log = self.log;
        let mut totals = self.run.totals.lock().expect("totals lock");
        totals.sessions += 1;
        totals.requests += log.requests;
        totals.images_requested += log.images_requested.len() as u64;
        totals.images_obtained += log.images_obtained.len() as u64;
        totals.opted_out += log.opted_out;
        totals.skipped_by_robots += log.skipped_by_robots;
        totals.throttled += log.throttled;
        totals.blocked += log.blocked;
        totals.way_through += log.way_through;
        for (status, count) in log.statuses {
            *totals.statuses.entry(status).or_default() += count;
        }
        totals.latencies.extend(log.latencies);
        let kept_off = log.kept_off || log.opted_out > 0;
        if log.refused || (kept_off && log.images_obtained.is_empty()) {
            totals.stopped += 1;
        }
        if log.refused
            || log.failed
            || log.way_through > 1
            || log.images_obtained.len() < log.images_requested.len()
        {
            totals.hindered += 1;
        }
        totals.rotated |= matches!(
            self.run.settings.rotate,
            Rotation::Subnet | Rotation::Wide | Rotation::Subnets
        );
        if !totals.rotated {
            totals.addresses.extend(log.addresses);
        }
    }
}

/// Sends one request and reads the answer, within the run's bounds.
async fn fetch(
    shared: Arc<Shared>,
    client: HttpClient,
    request: Request<Empty<Bytes>>,
    path: String,
    kind: Kind,
    keep_body: bool,
) -> Fetched {
    let mut fetched = Fetched {
        path,
        kind,
        outcome: Outcome::NotSent,
        elapsed: Duration::ZERO,
        body: None,
        complete: false,
        x_robots_tag: Vec::new(),
        content_encoding: None,
        content_type: None,
        set_cookie: Vec::new(),
        location: None,
    };
    let Some(_permit) = shared.gate.enter().await else {
        return fetched;
    };
    let started = Instant::now();
    let request_deadline = started + shared.request_timeout;
    let limit = request_deadline.min(shared.gate.deadline);
    let exchange = async {
        let response = client.request(request).await?;
        let status = response.status().as_u16();
        fetched.x_robots_tag = response
            .headers()
            .get_all("x-robots-tag")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect();
        fetched.content_encoding = response
            .headers()
            .get(header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_ascii_lowercase());
        fetched.set_cookie = response
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect();
        fetched.location = response
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        fetched.content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_ascii_lowercase());
        let mut body = response.into_body();
        let mut kept: Vec<u8> = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame?;
            if let Some(data) = frame.data_ref()
                && keep_body
                && kept.len() < MAX_PAGE_BYTES
            {
                kept.extend_from_slice(data);
            }
        }
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>((status, kept))
    };
    match timeout_at(limit, exchange).await {
        Ok(Ok((status, kept))) => {
            fetched.outcome = Outcome::Status(status);
            fetched.complete = true;
            if keep_body {
                fetched.body = Some(Bytes::from(kept));
            }
        }
        Ok(Err(_)) => fetched.outcome = Outcome::Error,
        Err(_) if limit < request_deadline => fetched.outcome = Outcome::Cut,
        Err(_) => fetched.outcome = Outcome::Timeout,
    }
    fetched.elapsed = started.elapsed();
    fetched
}

/// Keeps the `name=value` of one `Set-Cookie` line (attributes ignored: one host, one path);
/// an empty value or `Max-Age=0` deletes the cookie.
fn store_cookie(jar: &mut Vec<(String, String)>, line: &str) {
    let mut parts = line.split(';');
    let Some((name, value)) = parts.next().and_then(|p| p.split_once('=')) else {
        return;
    };
    let (name, value) = (name.trim(), value.trim());
    if name.is_empty() {
        return;
    }
    jar.retain(|(n, _)| n != name);
    let expired = parts.any(|a| a.trim().eq_ignore_ascii_case("max-age=0"));
    if !value.is_empty() && !expired {
        jar.push((name.to_owned(), value.to_owned()));
    }
}

/// The body as text, gzip and deflate decoded; `None` for an encoding it cannot decode.
fn decode_body(f: &Fetched) -> Option<String> {
    let body = f.body.as_ref()?;
    let mut decoded = Vec::new();
    let limit = MAX_PAGE_BYTES as u64;
    match f.content_encoding.as_deref() {
        None | Some("identity") | Some("") => decoded.extend_from_slice(body),
        Some("gzip") | Some("x-gzip") => {
            flate2::read::GzDecoder::new(&body[..])
                .take(limit)
                .read_to_end(&mut decoded)
                .ok()?;
        }
        Some("deflate") => {
            if flate2::read::ZlibDecoder::new(&body[..])
                .take(limit)
                .read_to_end(&mut decoded)
                .is_err()
            {
                decoded.clear();
                flate2::read::DeflateDecoder::new(&body[..])
                    .take(limit)
                    .read_to_end(&mut decoded)
                    .ok()?;
            }
        }
        Some(_) => return None,
    }
    Some(String::from_utf8_lossy(&decoded).into_owned())
}

/// img2dataset's rule: each `X-Robots-Tag` value is split at the first `:`; a left part names
/// the bot it is for. `noai`, `noimageai`, `noindex` or `noimageindex` for everyone or for
/// this token means the image is not kept.
fn x_robots_tag_forbids(values: &[String], token: &str) -> bool {
    values.iter().any(|value| {
        let (agent, directives) = match value.split_once(':') {
            Some((agent, directives)) => (Some(agent.trim()), directives),
            None => (None, value.as_str()),
        };
        agent.is_none_or(|a| a.eq_ignore_ascii_case(token))
            && directives.split(',').any(|d| {
                let d = d.trim().to_ascii_lowercase();
                matches!(
                    d.as_str(),
                    "noai" | "noimageai" | "noindex" | "noimageindex"
                )
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_image_bodies_count_as_images() {
        for yes in [
            None,
            Some("image/jpeg"),
            Some("image/webp"),
            Some("image/svg+xml; charset=utf-8"),
            Some("application/octet-stream"),
            Some(""),
        ] {
            assert!(is_image_content_type(yes), "{yes:?}");
        }
        for no in [
            Some("text/html; charset=utf-8"),
            Some("text/plain"),
            Some("application/json"),
        ] {
            assert!(!is_image_content_type(no), "{no:?}");
        }
    }

    #[test]
    fn x_robots_tag_is_read_as_img2dataset_reads_it() {
        let v = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(x_robots_tag_forbids(
            &v(&["noai, noimageai"]),
            "img2dataset"
        ));
        assert!(x_robots_tag_forbids(&v(&["NoImageIndex"]), "img2dataset"));
        assert!(x_robots_tag_forbids(
            &v(&["img2dataset: noai"]),
            "img2dataset"
        ));
        assert!(!x_robots_tag_forbids(
            &v(&["otherbot: noai"]),
            "img2dataset"
        ));
        // A scoped directive on the same line hides the unscoped ones from img2dataset.
        assert!(!x_robots_tag_forbids(
            &v(&["googlebot: nofollow, noai"]),
            "img2dataset"
        ));
        assert!(!x_robots_tag_forbids(&v(&["nofollow"]), "img2dataset"));
    }

    #[test]
    fn addresses() {
        assert_eq!(session_address(0), Ipv4Addr::new(198, 18, 0, 1));
        assert_eq!(session_address(1), Ipv4Addr::new(198, 18, 1, 1));
        assert_eq!(session_address(511), Ipv4Addr::new(198, 19, 255, 1));
        assert_eq!(session_address(512), Ipv4Addr::new(198, 18, 0, 2));
        let google = googlebot_address(0).unwrap();
        let table = crate::catalog::ranges::RangeTable::parse(
            "googlebot",
            crate::catalog::ranges::EMBEDDED_RANGES
                .iter()
                .find(|(n, _)| *n == "googlebot")
                .unwrap()
                .1,
        )
        .unwrap();
        assert!(table.contains(IpAddr::V4(google)));
        assert!(!table.contains(IpAddr::V4(session_address(3))));
    }

    #[test]
    fn cookies_are_kept_replaced_and_deleted() {
        let mut jar = Vec::new();
        store_cookie(&mut jar, "lenscap=abc; HttpOnly; SameSite=Lax; Path=/");
        store_cookie(&mut jar, "other=1");
        assert_eq!(
            jar,
            [
                ("lenscap".to_owned(), "abc".to_owned()),
                ("other".to_owned(), "1".to_owned())
            ]
        );
        store_cookie(&mut jar, "lenscap=def; Max-Age=1800");
        store_cookie(&mut jar, "other=; Max-Age=0");
        assert_eq!(jar, [("lenscap".to_owned(), "def".to_owned())]);
        store_cookie(&mut jar, "garbage");
        assert_eq!(jar.len(), 1);
    }

    #[test]
    fn localhost_names() {
        assert!(is_localhost_name("127.0.0.1:8080"));
        assert!(is_localhost_name("localhost"));
        assert!(is_localhost_name("[::1]:80"));
        assert!(!is_localhost_name("pub.example:8080"));
    }
}
