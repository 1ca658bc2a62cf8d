//! The dashboard's figures: bounded in-memory aggregates per site, filled as requests are
//! judged and read by the admin listener's `/` and `/api/summary`.
//!
//! - Two windows of fixed time buckets: the last hour in twelve 5-minute buckets and the last
//!   day in twenty-four 1-hour buckets, each bucket aligned to the clock and reused when its
//!   time comes round again. Every bucket counts people and crawlers, images served and
//!   refused, and what was stopped by category — atomic adds, nothing else, on the allow path.
//! - Per bucket, the agents and the clients stopped most: a top-k table (the Space-Saving
//!   sketch, [`TOP`] entries, exact while a bucket sees no more distinct names than that)
//!   behind a lock that only a stopped request takes.
//! - The latest verdicts that were not a plain allow, with their reasons, in a ring of
//!   [`RECENT`].
//!
//! Addresses are shortened to their /24 (IPv4) or /48 (IPv6) before they are kept, unless
//! the server asks for full addresses. Memory is fixed: about 40 KB a site, whatever the
//! traffic.
//!
//! A person is a request shaped like a browser (category `browser`) that was allowed; every
//! other request counts as a crawler's. Stopped means refused: blocked, over a rate limit, or
//! answered by a trap (under `report-only`, what would have been).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::catalog::Category;
use crate::client::ClientId;
use crate::verdict::{Action, Reason, Reasons, Verdict};

/// Entries of each top-k table.
pub const TOP: usize = 12;
/// Verdicts kept in the recent ring.
pub const RECENT: usize = 40;
const CATEGORIES: usize = Category::ALL.len();
/// The longest path kept in a recent verdict.
const PATH_CHARS: usize = 120;

/// One judged request, as the board reads it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Entry<'a> {
    pub(crate) client: ClientId,
    pub(crate) verdict: &'a Verdict,
    /// What happened, by name (`allowed`, `throttled`, `limited`, `blocked`).
    pub(crate) outcome: &'static str,
    /// Refused rather than served.
    pub(crate) stopped: bool,
    pub(crate) image: bool,
    pub(crate) path: &'a str,
}

// === impl BoardClock ===

/// Wall-clock seconds read from the monotonic clock: one wall reading at start.
#[derive(Debug)]
pub(crate) struct BoardClock {
    start: Instant,
    start_unix: u64,
}

impl BoardClock {
    pub(crate) fn new() -> BoardClock {
        BoardClock {
            start: Instant::now(),
            start_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        }
    }

    pub(crate) fn now_secs(&self) -> u64 {
        self.start_unix + self.start.elapsed().as_secs()
    }

    pub(crate) fn started(&self) -> u64 {
        self.start_unix
    }
}

// === impl Board ===

/// One site's aggregates.
#[derive(Debug)]
pub(crate) struct Board {
    hour: Window<12>,
    day: Window<24>,
    recent: Mutex<Recent>,
}

/// `N` buckets of `width` seconds.
#[derive(Debug)]
struct Window<const N: usize> {
    width: u64,
    buckets: [Bucket; N],
}

#[derive(Debug, Default)]
struct Bucket {
    /// The bucket's number (`unix / width`) plus one; 0 while unused.
    epoch: AtomicU64,
    people: AtomicU64,
    crawlers: AtomicU64,
    images_served: AtomicU64,
    images_refused: AtomicU64,
    /// Served to verified crawlers that accepted the licence price.
    licensed: AtomicU64,
    stopped: [AtomicU64; CATEGORIES],
    top: Mutex<Tops>,
}

#[derive(Debug, Default)]
struct Tops {
    agents: TopK<AgentKey>,
    clients: TopK<IpAddr>,
}

/// Who a stopped request came from: its catalog agent, or what it looked like.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum AgentKey {
    Named(Arc<str>),
    Unnamed(Category),
}

impl AgentKey {
    fn label(&self) -> String {
        match self {
            AgentKey::Named(name) => name.to_string(),
            AgentKey::Unnamed(category) => unnamed(*category).to_owned(),
        }
    }
}

/// What to call a stopped client the catalog does not name.
fn unnamed(category: Category) -> &'static str {
    match category {
        Category::Browser => "browser-looking script",
        Category::Unknown => "unidentified client",
        _ => "uncatalogued agent",
    }
}

/// A Space-Saving top-k sketch: at most [`TOP`] names with counts; a new name when full
/// replaces the smallest and inherits its count (so counts are upper bounds once full).
#[derive(Debug)]
struct TopK<K> {
    entries: Vec<(K, u64)>,
}

impl<K> Default for TopK<K> {
    fn default() -> Self {
        TopK {
            entries: Vec::new(),
        }
    }
}

impl<K: PartialEq + Clone> TopK<K> {
    fn add(&mut self, key: &K) {
        if let Some(entry) = self.entries.iter_mut().find(|(k, _)| k == key) {
            entry.1 += 1;
        } else if self.entries.len() < TOP {
            if self.entries.capacity() == 0 {
                self.entries.reserve_exact(TOP);
            }
            self.entries.push((key.clone(), 1));
        } else if let Some(smallest) = self.entries.iter_mut().min_by_key(|(_, n)| *n) {
            *smallest = (key.clone(), smallest.1 + 1);
        }
    }
}

#[derive(Debug, Default)]
struct Recent {
    /// Oldest first once full; `next` is where the next one goes.
    ring: Vec<Kept>,
    next: usize,
}

#[derive(Clone, Debug)]
struct Kept {
    unix: u64,
    client: IpAddr,
    agent: Option<Arc<str>>,
    category: Category,
    action: Action,
    outcome: &'static str,
    reasons: Reasons,
    path: Box<str>,
}

impl<const N: usize> Window<N> {
    fn new(width: u64) -> Self {
        Window {
            width,
            buckets: std::array::from_fn(|_| Bucket::default()),
        }
    }

    /// The bucket for `unix`, emptied first if it last held an older time.
    fn bucket(&self, unix: u64) -> &Bucket {
        let number = unix / self.width;
        let bucket = &self.buckets[(number % N as u64) as usize];
        let epoch = number + 1;
        let seen = bucket.epoch.load(Ordering::Acquire);
        if seen != epoch
            && seen < epoch
            && bucket
                .epoch
                .compare_exchange(seen, epoch, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            // Adds racing with the reset may be lost: a dashboard, not a ledger.
            bucket.clear();
        }
        bucket
    }

    /// The buckets that hold times within the window ending at `unix`, oldest first, each
    /// with its start time (an empty bucket for a time nothing was recorded in).
    fn live(&self, unix: u64) -> impl Iterator<Item = (u64, Option<&Bucket>)> + '_ {
        let current = unix / self.width;
        (0..N as u64).rev().map(move |back| {
            let number = current.saturating_sub(back);
            let bucket = &self.buckets[(number % N as u64) as usize];
            let held = (bucket.epoch.load(Ordering::Acquire) == number + 1 && back <= current)
                .then_some(bucket);
            (number * self.width, held)
        })
    }
}

impl Bucket {
    fn clear(&self) {
        for counter in [
            &self.people,
            &self.crawlers,
            &self.images_served,
            &self.images_refused,
            &self.licensed,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
        for counter in &self.stopped {
            counter.store(0, Ordering::Relaxed);
        }
        let mut top = self.top.lock().unwrap_or_else(|e| e.into_inner());
        top.agents.entries.clear();
        top.clients.entries.clear();
    }

    fn add(&self, entry: &Entry<'_>, category: usize, stopped: Option<(&AgentKey, IpAddr)>) {
        let person = entry.verdict.category == Category::Browser
            && entry.verdict.action == Action::Allow
            && !entry.stopped;
        if person {
            self.people.fetch_add(1, Ordering::Relaxed);
        } else {
            self.crawlers.fetch_add(1, Ordering::Relaxed);
        }
        if entry.outcome == "licensed" {
            self.licensed.fetch_add(1, Ordering::Relaxed);
        }
        if entry.image {
            if entry.stopped {
                self.images_refused.fetch_add(1, Ordering::Relaxed);
            } else {
                self.images_served.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Some((agent, client)) = stopped {
            self.stopped[category].fetch_add(1, Ordering::Relaxed);
            let mut top = self.top.lock().unwrap_or_else(|e| e.into_inner());
            top.agents.add(agent);
            top.clients.add(&client);
        }
    }
}

/// `ip` kept as its /24 (IPv4) or /48 (IPv6), unless `full`.
pub(crate) fn shorten(ip: IpAddr, full: bool) -> IpAddr {
    if full {
        return ip;
    }
    match ip {
        IpAddr::V4(v4) => IpAddr::V4((u32::from(v4) & 0xFFFF_FF00).into()),
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 80) - 1)).into()),
    }
}

/// How a kept address is shown: `203.0.113.0/24`, `2001:db8:1::/48`, or the address.
fn shown(ip: IpAddr, full: bool) -> String {
    match (full, ip) {
        (true, _) => ip.to_string(),
        (false, IpAddr::V4(_)) => format!("{ip}/24"),
        (false, IpAddr::V6(_)) => format!("{ip}/48"),
    }
}

impl Board {
    pub(crate) fn new() -> Board {
        Board {
            hour: Window::new(300),
            day: Window::new(3600),
            recent: Mutex::new(Recent::default()),
        }
    }

    /// Adds one judged request at `unix`.
    pub(crate) fn record(&self, unix: u64, entry: &Entry<'_>, full_addresses: bool) {
        // `Category::ALL` is in declaration order (checked in the tests).
        let category = (entry.verdict.category as usize).min(CATEGORIES - 1);
        let stopped = entry.stopped;
        // Built only for a stopped request: the allow path does atomic adds and nothing else.
        let who = stopped.then(|| {
            let agent = match &entry.verdict.agent {
                Some(name) => AgentKey::Named(name.clone()),
                None => AgentKey::Unnamed(entry.verdict.category),
            };
            (agent, shorten(entry.client.ip(), full_addresses))
        });
        let who = who.as_ref().map(|(agent, client)| (agent, *client));
        self.hour.bucket(unix).add(entry, category, who);
        self.day.bucket(unix).add(entry, category, who);
        if entry.verdict.action != Action::Allow || entry.stopped {
            self.keep(unix, entry, full_addresses);
        }
    }

    fn keep(&self, unix: u64, entry: &Entry<'_>, full_addresses: bool) {
        let path: String = entry.path.chars().take(PATH_CHARS).collect();
        let kept = Kept {
            unix,
            client: shorten(entry.client.ip(), full_addresses),
            agent: entry.verdict.agent.clone(),
            category: entry.verdict.category,
            action: entry.verdict.action,
            outcome: entry.outcome,
            reasons: entry.verdict.reasons,
            path: path.into_boxed_str(),
        };
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.ring.len() < RECENT {
            recent.ring.push(kept);
        } else {
            let at = recent.next;
            recent.ring[at] = kept;
        }
        recent.next = (recent.next + 1) % RECENT;
    }

    fn period<const N: usize>(&self, window: &Window<N>, now: u64, full: bool) -> Period {
        let mut period = Period {
            seconds: window.width * N as u64,
            bucket_seconds: window.width,
            ..Period::default()
        };
        let mut stopped = [0u64; CATEGORIES];
        let mut agents: Vec<(String, u64)> = Vec::new();
        let mut clients: Vec<(IpAddr, u64)> = Vec::new();
        for (start, bucket) in window.live(now) {
            let mut slot = Slot {
                start,
                ..Slot::default()
            };
            if let Some(bucket) = bucket {
                slot.people = bucket.people.load(Ordering::Relaxed);
                slot.crawlers = bucket.crawlers.load(Ordering::Relaxed);
                slot.images_served = bucket.images_served.load(Ordering::Relaxed);
                slot.images_refused = bucket.images_refused.load(Ordering::Relaxed);
                slot.licensed = bucket.licensed.load(Ordering::Relaxed);
                for (sum, counter) in stopped.iter_mut().zip(&bucket.stopped) {
                    let n = counter.load(Ordering::Relaxed);
                    *sum += n;
                    slot.stopped += n;
                }
                let top = bucket.top.lock().unwrap_or_else(|e| e.into_inner());
                for (agent, n) in &top.agents.entries {
                    merge(&mut agents, agent.label(), *n);
                }
                for (client, n) in &top.clients.entries {
                    merge(&mut clients, *client, *n);
                }
            }
            period.people += slot.people;
            period.crawlers += slot.crawlers;
            period.images_served += slot.images_served;
            period.images_refused += slot.images_refused;
            period.licensed += slot.licensed;
            period.stopped += slot.stopped;
            period.buckets.push(slot);
        }
        period.stopped_by_category = Category::ALL
            .iter()
            .zip(stopped)
            .filter(|(_, n)| *n > 0)
            .map(|(c, n)| Named {
                name: c.as_str().to_owned(),
                count: n,
            })
            .collect();
        sort(&mut period.stopped_by_category);
        period.stopped_by_agent = agents
            .into_iter()
            .map(|(name, count)| Named { name, count })
            .collect();
        sort(&mut period.stopped_by_agent);
        period.top_clients = clients
            .into_iter()
            .map(|(ip, count)| Named {
                name: shown(ip, full),
                count,
            })
            .collect();
        sort(&mut period.top_clients);
        period.top_clients.truncate(TOP);
        period.stopped_by_agent.truncate(TOP);
        period
    }

    fn recent(&self, full: bool) -> Vec<RecentVerdict> {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let (newer, older) = recent.ring.split_at(recent.next.min(recent.ring.len()));
        older
            .iter()
            .chain(newer)
            .rev()
            .map(|k| RecentVerdict {
                unix: k.unix,
                site: String::new(),
                client: shown(k.client, full),
                agent: k
                    .agent
                    .as_deref()
                    .map_or_else(|| unnamed(k.category).to_owned(), str::to_owned),
                category: k.category.as_str(),
                action: k.action.as_str(),
                outcome: k.outcome,
                reasons: k.reasons.names().collect(),
                why: plain_words(k.reasons),
                path: k.path.to_string(),
            })
            .collect()
    }
}

fn merge<K: PartialEq>(into: &mut Vec<(K, u64)>, key: K, n: u64) {
    match into.iter_mut().find(|(k, _)| *k == key) {
        Some(entry) => entry.1 += n,
        None => into.push((key, n)),
    }
}

fn sort(list: &mut [Named]) {
    list.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
}

/// What a reason means, for a person who is not an engineer.
pub fn plain_reason(reason: Reason) -> &'static str {
    match reason {
        Reason::NoUserAgent => "sent no browser name at all",
        Reason::NonBrowserUserAgent => "named itself as something other than a browser",
        Reason::BotLikeUserAgent => "its name says it is a robot",
        Reason::NoAccept => "did not say what it accepts, as every browser does",
        Reason::NoAcceptLanguage => "sent no language, as every browser does",
        Reason::NoAcceptEncoding => "asked for no compression, unlike browsers",
        Reason::IdentityEncoding => "asked for uncompressed files, like download tools",
        Reason::Http10 => "spoke an HTTP version from the 1990s",
        Reason::ConnectionClose => "closed the connection after every request",
        Reason::OutdatedBrowser => "claimed a browser years out of date",
        Reason::MissingClientHints => "claimed Chrome but lacked Chrome's hints",
        Reason::MissingFetchMetadata => "fetched an image without what a browser sends with one",
        Reason::KnownAgent => "a known crawler",
        Reason::VerifiedAgent => "a crawler confirmed by its published addresses",
        Reason::SpoofedAgent => "claimed to be a search engine from an address that is not one",
        Reason::AddressChurn => "kept changing its address",
        Reason::FastNavigation => "turned pages faster than a person reads them",
        Reason::NoRefererImages => "took photos without coming from a page",
        Reason::UnviewedReferer => "took photos from pages it never viewed",
        Reason::MissingFetchDestImages => "took photos the way scripts do, not browsers",
        Reason::ImagesWithoutPages => "took photos without looking at any page",
        Reason::ManyDistinctImages => "took more photos than a person looks at",
        Reason::SequentialEnumeration => "went through photos in numbered order",
        Reason::OriginalsOnly => "took only the full-size originals",
        Reason::RegularTiming => "ticked along at a machine's steady rhythm",
        Reason::RobotsIgnored => "read the site's rules for robots, then ignored them",
        Reason::TrapHit => "followed a hidden link only robots see",
        Reason::OverQuota => "asked for too much too fast",
        Reason::SignedAgent => "proved who it is with a cryptographic signature",
        Reason::UnsignedAgent => "claimed an agent that signs its requests, without a signature",
        Reason::SignatureMalformed => "sent a signature that could not be read",
        Reason::SignatureExpired => "sent a signature outside its time limit",
        Reason::SignatureUnlisted => "was vouched for by a key directory this site does not accept",
        Reason::SignatureUnknownKey => "signed with a key its directory does not hold",
        Reason::SignatureInvalid => "sent a signature that does not match the request",
        Reason::SignatureReplayed => "replayed a signature already used",
        Reason::LicensePaid => "accepted the licence price and was served",
        Reason::TransportMismatch => "claimed a browser but connected like a script",
        Reason::Datacenter => "came from a cloud or hosting address",
        Reason::NoRender => "took photos without drawing the pages they are on",
        Reason::DatacenterImages => "took photos from a server without looking at any page",
    }
}

/// The reasons in plain words, joined: `"a known crawler; took photos without …"`.
pub fn plain_words(reasons: Reasons) -> String {
    let mut out = String::new();
    for reason in reasons.iter() {
        if !out.is_empty() {
            out.push_str("; ");
        }
        out.push_str(plain_reason(reason));
    }
    out
}

// === the summary ===

/// The dashboard's figures at one moment: each site and all sites together.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    /// Unix seconds when it was made.
    pub generated_at: u64,
    /// Unix seconds when the process started counting.
    pub started_at: u64,
    /// Unix seconds of the last configuration reload, if any.
    pub last_reload: Option<u64>,
    /// Whether that reload succeeded.
    pub last_reload_ok: Option<bool>,
    /// Every site together.
    pub all: SiteSummary,
    /// Each site, in the order the configuration names them.
    pub sites: Vec<SiteSummary>,
}

/// One site's figures (or all sites').
#[derive(Clone, Debug, Default, Serialize)]
pub struct SiteSummary {
    /// The site's name (`all` for the total).
    pub site: String,
    /// `enforce` or `report-only`, when the server knows it.
    pub mode: Option<String>,
    /// The last hour, in 5-minute buckets.
    pub hour: Period,
    /// The last day, in 1-hour buckets.
    pub day: Period,
    /// The latest verdicts that were not a plain allow, newest first.
    pub recent: Vec<RecentVerdict>,
}

/// One window's figures.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Period {
    /// The window's length.
    pub seconds: u64,
    /// Each bucket's length.
    pub bucket_seconds: u64,
    /// Allowed requests from browsers.
    pub people: u64,
    /// Every other request.
    pub crawlers: u64,
    /// Image requests served.
    pub images_served: u64,
    /// Image requests refused.
    pub images_refused: u64,
    /// Requests served to verified crawlers that accepted the licence price.
    pub licensed: u64,
    /// Requests refused: blocked, over a rate limit, or trapped.
    pub stopped: u64,
    /// The window's buckets, oldest first.
    pub buckets: Vec<Slot>,
    /// Stopped requests by category, most first.
    pub stopped_by_category: Vec<Named>,
    /// Stopped requests by agent (or what the client looked like), most first.
    pub stopped_by_agent: Vec<Named>,
    /// The clients (addresses shortened unless configured) stopped most, most first.
    pub top_clients: Vec<Named>,
}

/// One bucket of a window.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Slot {
    /// Unix seconds at the bucket's start.
    pub start: u64,
    /// Allowed requests from browsers.
    pub people: u64,
    /// Every other request.
    pub crawlers: u64,
    /// Image requests served.
    pub images_served: u64,
    /// Image requests refused.
    pub images_refused: u64,
    /// Requests served to crawlers that paid the licence price.
    pub licensed: u64,
    /// Requests refused.
    pub stopped: u64,
}

/// A name and a count.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Named {
    /// A category, an agent or a client.
    pub name: String,
    /// How many requests.
    pub count: u64,
}

/// One recent verdict.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RecentVerdict {
    /// Unix seconds.
    pub unix: u64,
    /// The site.
    pub site: String,
    /// The client (shortened unless configured).
    pub client: String,
    /// The catalog agent, or what the client looked like.
    pub agent: String,
    /// The category.
    pub category: &'static str,
    /// The verdict's action.
    pub action: &'static str,
    /// What happened: allowed, throttled, limited, blocked.
    pub outcome: &'static str,
    /// The reasons' names.
    pub reasons: Vec<&'static str>,
    /// The reasons in plain words.
    pub why: String,
    /// The path asked for.
    pub path: String,
}

/// Sums periods of several sites into one.
fn add_period(into: &mut Period, from: &Period) {
    into.seconds = from.seconds;
    into.bucket_seconds = from.bucket_seconds;
    into.people += from.people;
    into.crawlers += from.crawlers;
    into.images_served += from.images_served;
    into.images_refused += from.images_refused;
    into.licensed += from.licensed;
    into.stopped += from.stopped;
    if into.buckets.is_empty() {
        into.buckets = from.buckets.clone();
    } else {
        for (a, b) in into.buckets.iter_mut().zip(&from.buckets) {
            a.people += b.people;
            a.crawlers += b.crawlers;
            a.images_served += b.images_served;
            a.images_refused += b.images_refused;
            a.licensed += b.licensed;
            a.stopped += b.stopped;
        }
    }
    for (list, more) in [
        (&mut into.stopped_by_category, &from.stopped_by_category),
        (&mut into.stopped_by_agent, &from.stopped_by_agent),
        (&mut into.top_clients, &from.top_clients),
    ] {
        for named in more {
            match list.iter_mut().find(|n| n.name == named.name) {
                Some(n) => n.count += named.count,
                None => list.push(named.clone()),
            }
        }
        sort(list);
    }
}

/// The summary of `boards` at `now`. Addresses are shown as they were kept.
pub(crate) fn summarise(
    boards: &[(Arc<str>, Arc<Board>)],
    now: u64,
    started_at: u64,
    last_reload: Option<(u64, bool)>,
    full: bool,
) -> Summary {
    let mut all = SiteSummary {
        site: "all".to_owned(),
        ..SiteSummary::default()
    };
    let mut sites = Vec::with_capacity(boards.len());
    for (name, board) in boards {
        let mut recent = board.recent(full);
        for verdict in &mut recent {
            verdict.site = name.to_string();
        }
        let site = SiteSummary {
            site: name.to_string(),
            mode: None,
            hour: board.period(&board.hour, now, full),
            day: board.period(&board.day, now, full),
            recent,
        };
        add_period(&mut all.hour, &site.hour);
        add_period(&mut all.day, &site.day);
        all.recent.extend(site.recent.iter().cloned());
        sites.push(site);
    }
    all.recent.sort_by_key(|v| std::cmp::Reverse(v.unix));
    all.recent.truncate(RECENT);
    for period in [&mut all.hour, &mut all.day] {
        period.top_clients.truncate(TOP);
        period.stopped_by_agent.truncate(TOP);
    }
    Summary {
        generated_at: now,
        started_at,
        last_reload: last_reload.map(|(t, _)| t),
        last_reload_ok: last_reload.map(|(_, ok)| ok),
        all,
        sites,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(action: Action, category: Category, agent: Option<&str>) -> Verdict {
        Verdict {
            action,
            score: 0,
            category,
            agent: agent.map(Arc::from),
            reasons: Reasons::default(),
        }
    }

    fn add(board: &Board, unix: u64, ip: &str, v: &Verdict, outcome: &'static str, image: bool) {
        let entry = Entry {
            client: ClientId::new(ip.parse().unwrap()),
            verdict: v,
            outcome,
            stopped: matches!(outcome, "limited" | "blocked"),
            image,
            path: "/photos/1.jpg",
        };
        board.record(unix, &entry, false);
    }

    fn summary(board: Board, now: u64) -> SiteSummary {
        let boards = vec![(Arc::from("pub"), Arc::new(board))];
        summarise(&boards, now, 0, None, false).sites.remove(0)
    }

    #[test]
    fn counts_people_crawlers_images_and_what_was_stopped() {
        let board = Board::new();
        let t = 1_700_000_000;
        let person = verdict(Action::Allow, Category::Browser, None);
        let gpt = verdict(Action::Block, Category::AiTraining, Some("GPTBot"));
        let script = verdict(Action::Throttle, Category::Browser, None);
        for i in 0..5 {
            add(&board, t + i, "198.51.100.7", &person, "allowed", true);
        }
        for i in 0..3 {
            add(&board, t + i, "203.0.113.9", &gpt, "blocked", true);
        }
        add(&board, t, "203.0.113.10", &script, "limited", true);
        let s = summary(board, t + 10);
        assert_eq!(s.hour.people, 5);
        assert_eq!(s.hour.crawlers, 4);
        assert_eq!(s.hour.images_served, 5);
        assert_eq!(s.hour.images_refused, 4);
        assert_eq!(s.day.stopped, 4);
        assert_eq!(
            s.day.stopped_by_agent,
            [
                Named {
                    name: "GPTBot".into(),
                    count: 3
                },
                Named {
                    name: "browser-looking script".into(),
                    count: 1
                },
            ]
        );
        assert_eq!(
            s.day.stopped_by_category,
            [
                Named {
                    name: "ai-training".into(),
                    count: 3
                },
                Named {
                    name: "browser".into(),
                    count: 1
                },
            ]
        );
        // Both addresses share one /24.
        assert_eq!(
            s.hour.top_clients,
            [Named {
                name: "203.0.113.0/24".into(),
                count: 4
            }]
        );
        assert_eq!(s.recent.len(), 4);
        // Newest first: the last one recorded.
        assert_eq!(s.recent[0].outcome, "limited");
        assert_eq!(s.hour.buckets.len(), 12);
        assert_eq!(s.day.buckets.len(), 24);
    }

    #[test]
    fn old_buckets_leave_the_window_and_are_reused() {
        let board = Board::new();
        let t = 1_700_000_000 / 3600 * 3600;
        let gpt = verdict(Action::Block, Category::AiTraining, Some("GPTBot"));
        add(&board, t, "203.0.113.9", &gpt, "blocked", false);
        // Two hours on: out of the hour, still in the day.
        add(&board, t + 7200, "203.0.113.9", &gpt, "blocked", false);
        let s = summary(board, t + 7200);
        assert_eq!(s.hour.stopped, 1);
        assert_eq!(s.day.stopped, 2);
        assert_eq!(s.day.buckets.last().unwrap().stopped, 1);
        assert_eq!(s.day.buckets[21].stopped, 1);
        // A day on, the same bucket slot is emptied before it is used again.
        let board = Board::new();
        add(&board, t, "203.0.113.9", &gpt, "blocked", false);
        add(&board, t + 86_400, "203.0.113.9", &gpt, "blocked", false);
        assert_eq!(summary(board, t + 86_400).day.stopped, 1);
    }

    #[test]
    fn categories_index_by_their_discriminant() {
        for (i, category) in Category::ALL.iter().enumerate() {
            assert_eq!(*category as usize, i, "{category:?}");
        }
    }

    #[test]
    fn top_k_keeps_the_heaviest_and_stays_bounded() {
        let mut top = TopK::default();
        for n in 0..100u32 {
            top.add(&n);
        }
        for _ in 0..50 {
            top.add(&7);
        }
        assert_eq!(top.entries.len(), TOP);
        assert!(top.entries.iter().any(|(k, n)| *k == 7 && *n >= 50));
    }

    #[test]
    fn addresses_are_shortened() {
        assert_eq!(
            shorten("203.0.113.77".parse().unwrap(), false),
            "203.0.113.0".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            shorten("2001:db8:1:2:3::9".parse().unwrap(), false),
            "2001:db8:1::".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            shorten("203.0.113.77".parse().unwrap(), true),
            "203.0.113.77".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn the_recent_ring_is_bounded_newest_first() {
        let board = Board::new();
        let gpt = verdict(Action::Block, Category::AiTraining, Some("GPTBot"));
        for i in 0..(RECENT as u64 + 5) {
            add(
                &board,
                1_700_000_000 + i,
                "203.0.113.9",
                &gpt,
                "blocked",
                false,
            );
        }
        let s = summary(board, 1_700_000_100);
        assert_eq!(s.recent.len(), RECENT);
        assert_eq!(s.recent[0].unix, 1_700_000_000 + RECENT as u64 + 4);
        assert_eq!(s.recent[RECENT - 1].unix, 1_700_000_005);
    }
}
