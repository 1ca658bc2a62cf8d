//! Prometheus metrics: requests by site, verdict action and category, responses by status
//! class, a latency histogram, the counters the other stages bump (images served, stamped and
//! scrubbed, blocks, rate-limit refusals, trap answers, tracked clients, evictions), and the
//! process's own CPU, memory, descriptors and start time (Linux).
//!
//! One meaning per counter: `requests_total{action}` is what was *decided* (the verdict, also
//! under `report-only`); `blocks_total`, `rate_limited_total` and `traps_total` count what was
//! *done* instead of serving (a 403 block, a 429, the trap page). The word "throttle" only
//! ever names the verdict action (served under the suspects' quotas).
//!
//! Labels are bounded sets only: the site name, the action, the category, a status class, an
//! outcome. Never an IP address or a User-Agent: those would make the series count grow with
//! the attack.
//!
//! Besides the counters, each site keeps the dashboard's bounded aggregates ([`board`]): fixed
//! time buckets for the last hour and day, top-k agents and clients, the latest verdicts.
//!
//! ```
//! use lenscap::metrics::Metrics;
//! use lenscap::{LenscapLayer, Policy};
//!
//! let metrics = Metrics::new();
//! let layer = LenscapLayer::new(Policy::embedded().unwrap()).with_metrics(&metrics, "gallery");
//! # let _ = layer;
//! let text = metrics.encode();
//! assert!(text.contains("lenscap_connections_open"));
//! ```

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::catalog::Category;
use crate::verdict::Action;

pub mod board;
mod process;

pub use board::{Named, Period, RecentVerdict, SiteSummary, Slot, Summary};

/// A site name as a label value: cheap to clone.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct SiteName(Arc<str>);

impl EncodeLabelValue for SiteName {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelValueEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&&*self.0, encoder)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SiteLabels {
    site: SiteName,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    site: SiteName,
    action: &'static str,
    category: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    site: SiteName,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    site: SiteName,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 100 µs to ~14 min: past the 5 s tarpit and the proxy's 10 min total timeout, so a slow
    // answer lands in a bucket of its own rather than in +Inf.
    Histogram::new(exponential_buckets(0.0001, 2.0, 24))
}

/// The status class label of a response status.
fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

#[cfg_attr(not(feature = "cli"), allow(dead_code))]
struct Inner {
    registry: Registry,
    process: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: HistogramFamily<SiteLabels>,
    images_served: Family<SiteLabels, Counter>,
    images_stamped: Family<SiteLabels, Counter>,
    images_scrubbed: Family<SiteLabels, Counter>,
    blocks: Family<SiteLabels, Counter>,
    payment_required: Family<SiteLabels, Counter>,
    licensed: Family<SiteLabels, Counter>,
    rate_limited: Family<SiteLabels, Counter>,
    traps: Family<SiteLabels, Counter>,
    responses: Family<StatusLabels, Counter>,
    tracked_clients: Family<SiteLabels, Gauge>,
    evictions: Family<SiteLabels, Counter>,
    upstream_errors: Family<OutcomeLabels, Counter>,
    connections_open: Gauge,
    connections_total: Counter,
    connections_rejected: Counter,
    reloads: Family<ResultLabels, Counter>,
    access_log_dropped: Counter,
    /// Unix seconds of the last reload and whether it succeeded (0: none yet).
    last_reload: std::sync::atomic::AtomicU64,
    last_reload_ok: std::sync::atomic::AtomicBool,
    boards: std::sync::Mutex<Vec<(Arc<str>, Arc<board::Board>)>>,
    clock: board::BoardClock,
    /// The clock's seconds, kept current by a ticker task (0 until it runs), so recording a
    /// request reads one atomic instead of the clock.
    now: std::sync::atomic::AtomicU64,
    ticker_started: std::sync::atomic::AtomicBool,
    full_addresses: std::sync::atomic::AtomicBool,
}

/// The metrics registry of one Lenscap process. Cloning shares it.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// An empty registry with every Lenscap metric registered.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("lenscap");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests by site, verdict action and client category",
            requests.clone(),
        );
        let latency: HistogramFamily<SiteLabels> =
            Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register(
            "request_duration_seconds",
            "Time from request to response headers",
            latency.clone(),
        );
        let mut site_counter = |name: &str, help: &str| {
            let family = Family::<SiteLabels, Counter>::default();
            registry.register(name, help, family.clone());
            family
        };
        let images_served = site_counter("images_served", "Image responses with a 2xx status");
        let images_stamped = site_counter(
            "images_stamped",
            "Images stamped with the XMP data-mining reservation",
        );
        let images_scrubbed =
            site_counter("images_scrubbed", "Images with metadata (GPS) scrubbed");
        let blocks = site_counter(
            "blocks",
            "Requests answered with the block status (a block verdict, or a full tarpit)",
        );
        let payment_required = site_counter(
            "payment_required",
            "Requests answered with 402 Payment Required and the licence terms",
        );
        let licensed = site_counter(
            "licensed",
            "Requests from verified crawlers that accepted the licence price, served",
        );
        let rate_limited = site_counter(
            "rate_limited",
            "Requests refused with 429 Too Many Requests: over a rate limit",
        );
        let traps = site_counter(
            "traps",
            "Requests for a trap path, answered with the trap page",
        );
        let evictions = site_counter(
            "evictions",
            "Tracked clients evicted to stay within max_tracked_clients",
        );
        let tracked_clients = Family::<SiteLabels, Gauge>::default();
        registry.register(
            "tracked_clients",
            "Clients with behaviour or limiter state",
            tracked_clients.clone(),
        );
        let upstream_errors = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "upstream_errors",
            "Proxied requests that failed: refused, timeout, body",
            upstream_errors.clone(),
        );
        let connections_open = Gauge::default();
        registry.register(
            "connections_open",
            "Client connections open now",
            connections_open.clone(),
        );
        let connections_total = Counter::default();
        registry.register(
            "connections",
            "Client connections accepted",
            connections_total.clone(),
        );
        let connections_rejected = Counter::default();
        registry.register(
            "connections_rejected",
            "Connections closed at once because server.max_connections was reached",
            connections_rejected.clone(),
        );
        let responses = Family::<StatusLabels, Counter>::default();
        registry.register(
            "responses",
            "Responses sent by the server, by site and status class (1xx to 5xx)",
            responses.clone(),
        );
        let access_log_dropped = Counter::default();
        registry.register(
            "access_log_dropped",
            "Access log lines dropped because the writer fell behind (its buffer was full)",
            access_log_dropped.clone(),
        );
        // The process metrics keep their standard names, without the `lenscap_` prefix.
        let mut process = Registry::default();
        process.register_collector(Box::new(process::ProcessCollector::new()));
        let reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "config_reloads",
            "Configuration reloads by result (ok, error)",
            reloads.clone(),
        );
        Metrics {
            inner: Arc::new(Inner {
                registry,
                process,
                requests,
                latency,
                images_served,
                images_stamped,
                images_scrubbed,
                blocks,
                payment_required,
                licensed,
                rate_limited,
                traps,
                responses,
                tracked_clients,
                evictions,
                upstream_errors,
                connections_open,
                connections_total,
                connections_rejected,
                reloads,
                access_log_dropped,
                last_reload: Default::default(),
                last_reload_ok: Default::default(),
                boards: Default::default(),
                clock: board::BoardClock::new(),
                now: Default::default(),
                ticker_started: Default::default(),
                full_addresses: Default::default(),
            }),
        }
    }

    /// The metrics in the Prometheus text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode_registry(&mut out, &self.inner.registry)
            .and_then(|()| {
                prometheus_client::encoding::text::encode_registry(&mut out, &self.inner.process)
            })
            .and_then(|()| prometheus_client::encoding::text::encode_eof(&mut out))
            .expect("writing to a String cannot fail");
        out
    }

    /// The handle one site's layer and server use. Asking twice for one name shares its
    /// counters and its dashboard aggregates.
    pub fn site(&self, name: &str) -> SiteMetrics {
        let site = SiteName(Arc::from(name));
        let labels = SiteLabels { site: site.clone() };
        let inner = &self.inner;
        let board = {
            let mut boards = inner.boards.lock().unwrap_or_else(|e| e.into_inner());
            match boards.iter().find(|(n, _)| **n == *name) {
                Some((_, board)) => board.clone(),
                None => {
                    let board = Arc::new(board::Board::new());
                    boards.push((site.0.clone(), board.clone()));
                    board
                }
            }
        };
        let responses = ["1xx", "2xx", "3xx", "4xx", "5xx"].map(|status| {
            inner.responses.get_or_create_owned(&StatusLabels {
                site: site.clone(),
                status,
            })
        });
        SiteMetrics {
            board,
            responses: Arc::new(responses),
            metrics: self.clone(),
            requests: Arc::new(std::array::from_fn(|_| {
                std::array::from_fn(|_| OnceLock::new())
            })),
            latency: inner.latency.get_or_create_owned(&labels),
            images_served: inner.images_served.get_or_create_owned(&labels),
            images_stamped: inner.images_stamped.get_or_create_owned(&labels),
            images_scrubbed: inner.images_scrubbed.get_or_create_owned(&labels),
            blocks: inner.blocks.get_or_create_owned(&labels),
            payment_required: inner.payment_required.get_or_create_owned(&labels),
            licensed: inner.licensed.get_or_create_owned(&labels),
            rate_limited: inner.rate_limited.get_or_create_owned(&labels),
            traps: inner.traps.get_or_create_owned(&labels),
            tracked_clients: inner.tracked_clients.get_or_create_owned(&labels),
            evictions: inner.evictions.get_or_create_owned(&labels),
            site,
        }
    }

    #[cfg_attr(not(feature = "cli"), allow(dead_code))]
    pub(crate) fn connection_opened(&self) {
        self.inner.connections_total.inc();
        self.inner.connections_open.inc();
    }

    #[cfg_attr(not(feature = "cli"), allow(dead_code))]
    pub(crate) fn connection_closed(&self) {
        self.inner.connections_open.dec();
    }

    #[cfg_attr(not(feature = "cli"), allow(dead_code))]
    pub(crate) fn connection_rejected(&self) {
        self.inner.connections_rejected.inc();
    }

    #[cfg_attr(not(feature = "cli"), allow(dead_code))]
    pub(crate) fn reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.inner
            .reloads
            .get_or_create(&ResultLabels { result })
            .inc();
        self.inner
            .last_reload
            .store(self.inner.clock.now_secs(), Ordering::Relaxed);
        self.inner.last_reload_ok.store(ok, Ordering::Relaxed);
    }

    #[cfg_attr(not(feature = "cli"), allow(dead_code))]
    pub(crate) fn access_log_dropped(&self) {
        self.inner.access_log_dropped.inc();
    }

    /// Keeps whole client addresses in the dashboard's aggregates instead of their /24
    /// (IPv4) or /48 (IPv6). Applies to what is recorded from now on.
    pub fn set_full_addresses(&self, full: bool) {
        self.inner.full_addresses.store(full, Ordering::Relaxed);
    }

    /// The clock's seconds for recording: the ticker's copy (at most about a second behind),
    /// or the clock itself until the ticker runs (started here, inside a Tokio runtime).
    fn now_secs(&self) -> u64 {
        let now = self.inner.now.load(Ordering::Relaxed);
        if now != 0 {
            return now;
        }
        self.start_ticker();
        self.inner.clock.now_secs()
    }

    fn start_ticker(&self) {
        let inner = &self.inner;
        if inner.ticker_started.load(Ordering::Relaxed)
            || inner.ticker_started.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime: the clock is read on every request.
            return;
        };
        let weak = Arc::downgrade(inner);
        runtime.spawn(async move {
            loop {
                let Some(inner) = weak.upgrade() else { return };
                inner.now.store(inner.clock.now_secs(), Ordering::Relaxed);
                drop(inner);
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        });
    }

    /// The dashboard's figures now: every site, and all of them together.
    pub fn summary(&self) -> Summary {
        let now = self.inner.clock.now_secs();
        let boards: Vec<_> = self
            .inner
            .boards
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let last_reload = self.inner.last_reload.load(Ordering::Relaxed);
        board::summarise(
            &boards,
            now,
            self.inner.clock.started(),
            (last_reload > 0).then(|| {
                (
                    last_reload,
                    self.inner.last_reload_ok.load(Ordering::Relaxed),
                )
            }),
            self.inner.full_addresses.load(Ordering::Relaxed),
        )
    }
}

const ACTIONS: usize = 5;
const CATEGORIES: usize = Category::ALL.len();

/// One site's metrics. Counters are resolved once, so bumping one is an atomic add.
#[derive(Clone)]
pub struct SiteMetrics {
    metrics: Metrics,
    board: Arc<board::Board>,
    responses: Arc<[Counter; 5]>,
    site: SiteName,
    requests: Arc<[[OnceLock<Counter>; CATEGORIES]; ACTIONS]>,
    latency: Histogram,
    images_served: Counter,
    images_stamped: Counter,
    images_scrubbed: Counter,
    blocks: Counter,
    payment_required: Counter,
    licensed: Counter,
    rate_limited: Counter,
    traps: Counter,
    tracked_clients: Gauge,
    evictions: Counter,
}

impl std::fmt::Debug for SiteMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SiteMetrics")
            .field("site", &self.site.0)
            .finish_non_exhaustive()
    }
}

fn action_index(action: Action) -> usize {
    match action {
        Action::Allow => 0,
        Action::Throttle => 1,
        Action::Tarpit => 2,
        Action::Block => 3,
        Action::License => 4,
    }
}

#[allow(dead_code)] // Bumped by the stages that are built in parallel (limit, stamp).
impl SiteMetrics {
    /// Counts one request with its verdict.
    pub(crate) fn request(&self, action: Action, category: Category) {
        let index = Category::ALL
            .iter()
            .position(|c| *c == category)
            .unwrap_or(0);
        self.requests[action_index(action)][index]
            .get_or_init(|| {
                self.metrics
                    .inner
                    .requests
                    .get_or_create_owned(&RequestLabels {
                        site: self.site.clone(),
                        action: action.as_str(),
                        category: category.as_str(),
                    })
            })
            .inc();
    }

    /// Records the time from request to response headers.
    pub(crate) fn observe_latency(&self, elapsed: std::time::Duration) {
        self.latency.observe(elapsed.as_secs_f64());
    }

    pub(crate) fn image_served(&self) {
        self.images_served.inc();
    }

    pub(crate) fn image_stamped(&self) {
        self.images_stamped.inc();
    }

    pub(crate) fn image_scrubbed(&self) {
        self.images_scrubbed.inc();
    }

    pub(crate) fn block(&self) {
        self.blocks.inc();
    }

    pub(crate) fn payment_required(&self) {
        self.payment_required.inc();
    }

    pub(crate) fn licensed(&self) {
        self.licensed.inc();
    }

    pub(crate) fn rate_limited(&self) {
        self.rate_limited.inc();
    }

    pub(crate) fn trap(&self) {
        self.traps.inc();
    }

    /// Counts one response by its status class.
    pub(crate) fn response(&self, status: u16) {
        let class = match status_class(status) {
            "1xx" => 0,
            "2xx" => 1,
            "3xx" => 2,
            "4xx" => 3,
            _ => 4,
        };
        self.responses[class].inc();
    }

    /// The site's name.
    pub(crate) fn name(&self) -> &Arc<str> {
        &self.site.0
    }

    /// Adds one judged request to the dashboard's aggregates.
    pub(crate) fn board(&self, entry: &board::Entry<'_>) {
        let inner = &self.metrics.inner;
        self.board.record(
            self.metrics.now_secs(),
            entry,
            inner.full_addresses.load(Ordering::Relaxed),
        );
    }

    pub(crate) fn set_tracked_clients(&self, count: usize) {
        self.tracked_clients
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    pub(crate) fn evicted(&self, count: u64) {
        self.evictions.inc_by(count);
    }

    pub(crate) fn upstream_error(&self, outcome: &'static str) {
        self.metrics
            .inner
            .upstream_errors
            .get_or_create(&OutcomeLabels {
                site: self.site.clone(),
                outcome,
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_site_action_and_category() {
        let metrics = Metrics::new();
        let site = metrics.site("pub");
        site.request(Action::Block, Category::AiTraining);
        site.request(Action::Block, Category::AiTraining);
        site.request(Action::Allow, Category::Browser);
        site.image_served();
        let text = metrics.encode();
        assert!(
            text.contains(
                r#"lenscap_requests_total{site="pub",action="block",category="ai-training"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"lenscap_requests_total{site="pub",action="allow",category="browser"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"lenscap_images_served_total{site="pub"} 1"#),
            "{text}"
        );
    }
}
