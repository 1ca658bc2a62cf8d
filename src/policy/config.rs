//! The policy file as written: serde types with defaults, so an empty file is a valid policy.
//!
//! Every table denies unknown keys, so a typo is an error naming the key and its line rather
//! than a setting silently ignored.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_spanned::Spanned;

use crate::catalog::Category;
use crate::client::ForwardedHeader;
use crate::verdict::Action;

/// `enforce` or `report-only`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Verdicts are carried out.
    #[default]
    Enforce,
    /// Verdicts are computed, logged and counted, and every request is let through.
    ReportOnly,
}

impl Mode {
    /// The name as written in config.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::ReportOnly => "report-only",
        }
    }
}

/// The whole policy file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `enforce` (default) or `report-only`.
    pub mode: Mode,
    /// How clients are identified.
    pub client: ClientConfig,
    /// Where the crawler catalog comes from.
    pub catalog: CatalogConfig,
    /// Verified-ranges files by name, overriding or adding to the embedded ones.
    pub ranges: BTreeMap<String, PathBuf>,
    /// Weight of each signal.
    pub signals: SignalWeights,
    /// Score thresholds and the spoofer action.
    pub verdict: VerdictConfig,
    /// Action per category.
    pub actions: CategoryActions,
    /// Action per catalog agent, overriding its category's.
    pub agents: BTreeMap<Spanned<String>, CategoryAction>,
    /// What a block looks like.
    pub block: BlockConfig,
    /// How tarpitting behaves.
    pub tarpit: TarpitConfig,
    /// What counts as an image request.
    pub images: ImagesConfig,
    /// What is passed on to the inner service.
    pub forward: ForwardConfig,
    /// What the site reserves, and the documents that declare it.
    pub reservation: crate::documents::ReservationConfig,
    /// Opt-out headers on image and HTML responses.
    pub headers: crate::stamp::headers::OptOutHeadersConfig,
    /// The XMP stamp and location scrub written into images.
    pub stamp: crate::stamp::StampConfig,
    /// `[server]`: listeners, limits, TLS, the default site (`lenscap serve` only).
    pub server: crate::server::config::ServerSection,
    /// `[proxy]`: upstream timeouts and connection pool.
    pub proxy: crate::server::config::ProxySection,
    /// `[[site]]`: sites chosen by Host, each with its own content and policy overrides.
    pub site: Vec<crate::server::config::SiteSection>,
    /// Rate limits per client and per subnet.
    pub limits: LimitsConfig,
    /// Thresholds of the behaviour signals.
    pub behaviour: BehaviourConfig,
    /// Trap paths.
    pub traps: TrapsConfig,
    /// The visitor cookie.
    pub cookie: CookieConfig,
}

/// `[client]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientConfig {
    /// Proxies whose forwarding headers are believed (CIDR list; empty by default).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// `x-forwarded-for` (default) or `forwarded`.
    pub forwarded_header: ForwardedHeader,
    /// Prefix length grouping IPv4 clients into a subnet.
    pub subnet_v4: Spanned<u8>,
    /// Prefix length grouping IPv6 clients into a subnet.
    pub subnet_v6: Spanned<u8>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            trusted_proxies: Vec::new(),
            forwarded_header: ForwardedHeader::default(),
            subnet_v4: Spanned::new(0..0, 24),
            subnet_v6: Spanned::new(0..0, 64),
        }
    }
}

/// `[catalog]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogConfig {
    /// A catalog file replacing the embedded one.
    pub file: Option<PathBuf>,
    /// Catalog files whose entries are added (same name replaces).
    pub extra: Vec<PathBuf>,
}

macro_rules! weights {
    ($($field:ident = $default:literal,)*) => {
        /// `[signals]`: the weight each signal adds to the score (0 turns it off).
        #[derive(Clone, Debug, Deserialize)]
        #[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
        pub struct SignalWeights {
            $(
                #[allow(missing_docs)]
                pub $field: u32,
            )*
        }

        impl Default for SignalWeights {
            fn default() -> Self {
                SignalWeights { $($field: $default,)* }
            }
        }

        impl SignalWeights {
            /// `(name, weight)` for every signal.
            pub fn iter(&self) -> impl Iterator<Item = (&'static str, u32)> {
                [$((stringify!($field), self.$field),)*].into_iter()
            }
        }
    };
}

weights! {
    no_user_agent = 40,
    non_browser_user_agent = 30,
    bot_like_user_agent = 30,
    no_accept = 20,
    no_accept_language = 15,
    no_accept_encoding = 10,
    identity_encoding = 20,
    http_1_0 = 15,
    connection_close = 5,
    outdated_browser = 10,
    missing_client_hints = 15,
    missing_fetch_metadata = 15,
    known_agent = 0,
    verified_agent = 0,
    spoofed_agent = 100,
    no_referer_images = 15,
    referer_not_viewed = 20,
    images_without_fetch_dest = 10,
    images_without_pages = 20,
    many_distinct_images = 10,
    sequential_enumeration = 15,
    originals_only = 20,
    machine_regular_timing = 20,
    robots_ignored = 60,
    trap_hit = 100,
    over_quota = 0,
    address_churn = 40,
}

/// `[verdict]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerdictConfig {
    /// Score from which an otherwise allowed client is throttled (0 = never).
    pub throttle_at: u32,
    /// Score from which it is tarpitted (0 = never).
    pub tarpit_at: u32,
    /// Score from which it is blocked (0 = never).
    pub block_at: u32,
    /// Action for a client claiming a verified crawler from outside its ranges.
    pub spoofed: Action,
}

impl Default for VerdictConfig {
    fn default() -> Self {
        VerdictConfig {
            throttle_at: 30,
            tarpit_at: 0,
            block_at: 60,
            spoofed: Action::Block,
        }
    }
}

/// What to do with an agent's page requests and its image requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CategoryAction {
    /// For everything that is not an image.
    pub pages: Action,
    /// For image requests.
    pub images: Action,
}

impl CategoryAction {
    /// The same action for pages and images.
    pub const fn both(action: Action) -> Self {
        CategoryAction {
            pages: action,
            images: action,
        }
    }

    const fn split(pages: Action, images: Action) -> Self {
        CategoryAction { pages, images }
    }

    /// The action for a page or an image request.
    pub fn for_request(&self, image: bool) -> Action {
        if image { self.images } else { self.pages }
    }
}

/// Accepts `"block"` or `{ pages = "allow", images = "block" }`.
impl<'de> Deserialize<'de> for CategoryAction {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CategoryAction;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"an action ("allow", "throttle", "tarpit", "block") or { pages = …, images = … }"#)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<CategoryAction, E> {
                Action::deserialize(de::value::StrDeserializer::<E>::new(v))
                    .map(CategoryAction::both)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<CategoryAction, A::Error> {
                let (mut pages, mut images) = (None, None);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "pages" => pages = Some(map.next_value::<Action>()?),
                        "images" => images = Some(map.next_value::<Action>()?),
                        other => return Err(de::Error::unknown_field(other, &["pages", "images"])),
                    }
                }
                let pages = pages.ok_or_else(|| de::Error::missing_field("pages"))?;
                let images = images.ok_or_else(|| de::Error::missing_field("images"))?;
                Ok(CategoryAction { pages, images })
            }
        }
        d.deserialize_any(V)
    }
}

/// `[actions]`: what each category gets. Defaults suit a gallery that reserves its photos
/// against AI: every AI category and bulk downloaders are kept off images.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
#[allow(missing_docs)]
pub struct CategoryActions {
    pub ai_training: CategoryAction,
    pub ai_assistant: CategoryAction,
    pub ai_search: CategoryAction,
    pub ai_agent: CategoryAction,
    pub search_engine: CategoryAction,
    pub seo: CategoryAction,
    pub archiver: CategoryAction,
    pub social_preview: CategoryAction,
    pub monitor: CategoryAction,
    pub feed_reader: CategoryAction,
    pub bulk_downloader: CategoryAction,
    pub http_library: CategoryAction,
    pub headless_browser: CategoryAction,
    pub scraper: CategoryAction,
    pub other: CategoryAction,
    pub browser: CategoryAction,
    pub unknown: CategoryAction,
}

impl Default for CategoryActions {
    fn default() -> Self {
        use Action::*;
        let pages_only = CategoryAction::split(Allow, Block);
        CategoryActions {
            ai_training: CategoryAction::both(Block),
            ai_assistant: pages_only,
            ai_search: pages_only,
            ai_agent: pages_only,
            search_engine: CategoryAction::both(Allow),
            seo: pages_only,
            archiver: pages_only,
            social_preview: CategoryAction::both(Allow),
            monitor: CategoryAction::both(Allow),
            feed_reader: CategoryAction::both(Allow),
            bulk_downloader: CategoryAction::both(Block),
            http_library: CategoryAction::split(Throttle, Block),
            headless_browser: CategoryAction::split(Throttle, Block),
            scraper: CategoryAction::both(Block),
            other: CategoryAction::split(Allow, Throttle),
            browser: CategoryAction::both(Allow),
            unknown: CategoryAction::both(Allow),
        }
    }
}

impl CategoryActions {
    /// The action table for `category`.
    pub fn get(&self, category: Category) -> CategoryAction {
        match category {
            Category::AiTraining => self.ai_training,
            Category::AiAssistant => self.ai_assistant,
            Category::AiSearch => self.ai_search,
            Category::AiAgent => self.ai_agent,
            Category::SearchEngine => self.search_engine,
            Category::Seo => self.seo,
            Category::Archiver => self.archiver,
            Category::SocialPreview => self.social_preview,
            Category::Monitor => self.monitor,
            Category::FeedReader => self.feed_reader,
            Category::BulkDownloader => self.bulk_downloader,
            Category::HttpLibrary => self.http_library,
            Category::HeadlessBrowser => self.headless_browser,
            Category::Scraper => self.scraper,
            Category::Other => self.other,
            Category::Browser => self.browser,
            Category::Unknown => self.unknown,
        }
    }
}

/// `[block]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BlockConfig {
    /// Status code of a block (default 403).
    pub status: Spanned<u16>,
    /// Short text in the body; the policy page's path (`reservation.policy_path`) is appended.
    pub message: String,
}

impl Default for BlockConfig {
    fn default() -> Self {
        BlockConfig {
            status: Spanned::new(0..0, 403),
            message: "This site does not allow automated collection of its photos.".into(),
        }
    }
}

/// `[tarpit]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TarpitConfig {
    /// How long a tarpitted request is held, e.g. `"5s"` or `"800ms"`.
    pub delay: Spanned<String>,
    /// How many requests may be held at once; beyond that they are blocked.
    pub max_held: usize,
}

impl Default for TarpitConfig {
    fn default() -> Self {
        TarpitConfig {
            delay: Spanned::new(0..0, "5s".into()),
            max_held: 256,
        }
    }
}

/// `[images]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImagesConfig {
    /// Path extensions that make a request an image request (case-insensitive).
    pub extensions: Vec<String>,
}

impl Default for ImagesConfig {
    fn default() -> Self {
        ImagesConfig {
            extensions: [
                "jpg", "jpeg", "png", "webp", "avif", "gif", "svg", "heic", "heif", "jxl", "bmp",
                "tif", "tiff",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

/// `[forward]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardConfig {
    /// Add an `x-lenscap-verdict` request header for the upstream.
    pub verdict_header: bool,
}

/// A rate as written: `{ rate = "120/min", burst = 20 }`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateConfig {
    /// `"N/s"`, `"N/min"`, `"N/h"` or `"N/day"`.
    pub rate: Spanned<String>,
    /// Requests allowed at once (default: N).
    #[serde(default)]
    pub burst: Option<u32>,
}

impl RateConfig {
    fn new(rate: &str, burst: u32) -> Self {
        RateConfig {
            rate: Spanned::new(0..0, rate.to_owned()),
            burst: Some(burst),
        }
    }
}

/// What happens to a request over quota.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OverQuota {
    /// `429 Too Many Requests` with `Retry-After` and the `RateLimit` fields.
    #[default]
    Reject,
    /// Served after the `[tarpit]` delay (bounded by `tarpit.max_held`).
    Tarpit,
}

/// `[limits]`: GCRA rate limits per client (a visitor cookie, or an IP without one) and per
/// subnet, separate for pages and images.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Turns rate limiting and behaviour tracking on (default) or off.
    pub enabled: bool,
    /// `reject` (429) or `tarpit`.
    pub over_quota: OverQuota,
    /// Most clients tracked at once; the stalest are evicted beyond it.
    pub max_tracked_clients: usize,
    /// A client unseen this long is forgotten by the cleanup task.
    pub idle_after: Spanned<String>,
    /// How often the cleanup task runs.
    pub cleanup_every: Spanned<String>,
    /// Page views per client.
    pub pages: RateConfig,
    /// Images per client that no page view of the client vouches for.
    pub images: RateConfig,
    /// Page views per client whose verdict is throttle.
    pub suspect_pages: RateConfig,
    /// Images per client whose verdict is throttle (vouched or not).
    pub suspect_images: RateConfig,
    /// Page views per subnet.
    pub subnet_pages: RateConfig,
    /// Unvouched images per subnet.
    pub subnet_images: RateConfig,
    /// Vouched images per subnet: the ceiling for a crowd behind one address.
    pub subnet_vouched_images: RateConfig,
    /// Optional budget for unvouched images served to anyone, per site.
    pub unknown_images: Option<RateConfig>,
    /// Images a page view vouches for (when their Referer is that page).
    pub credit_per_page: u16,
    /// Most page-view credit a client can hold.
    pub max_credit: u16,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            enabled: true,
            over_quota: OverQuota::Reject,
            max_tracked_clients: 1_000_000,
            idle_after: Spanned::new(0..0, "10m".into()),
            cleanup_every: Spanned::new(0..0, "30s".into()),
            pages: RateConfig::new("120/min", 60),
            images: RateConfig::new("30/min", 10),
            suspect_pages: RateConfig::new("20/min", 5),
            suspect_images: RateConfig::new("6/min", 3),
            subnet_pages: RateConfig::new("600/min", 200),
            subnet_images: RateConfig::new("60/min", 20),
            subnet_vouched_images: RateConfig::new("6000/min", 4000),
            unknown_images: None,
            credit_per_page: 100,
            max_credit: 300,
        }
    }
}

/// `[behaviour]`: when each behaviour signal fires (its weight is in `[signals]`; 0 here
/// turns a signal off).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BehaviourConfig {
    /// Length of the sliding window.
    pub window: Spanned<String>,
    /// Images without Referer in the window.
    pub no_referer_images: u32,
    /// Images whose Referer is not one of the client's last two pages.
    pub unviewed_referer_images: u32,
    /// Images with no page view in the window.
    pub images_without_pages: u32,
    /// Images on a secure origin without `Sec-Fetch-Dest: image`.
    pub missing_fetch_dest_images: u32,
    /// Distinct images in the window (estimated; at most about 100).
    pub distinct_images: u32,
    /// Numbers in sequence (`IMG_0001`, `IMG_0002`, … or `?page=1`, `?page=2`, …).
    pub enumeration_run: u8,
    /// Images in the window, all of them originals.
    pub originals_only: u32,
    /// Path or query fragments naming original or full-size variants.
    pub original_markers: Vec<String>,
    /// Equal intervals (±10%) in a row.
    pub regular_timing_run: u8,
    /// Shortest interval the timing signal considers.
    pub regular_timing_min_interval: Spanned<String>,
    /// Address changes of one cookie visitor in the window (0 turns the signal off).
    pub address_changes: u32,
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
            original_markers: crate::signals::behaviour::default_original_markers(),
            regular_timing_run: 8,
            regular_timing_min_interval: Spanned::new(0..0, "200ms".into()),
            address_changes: 3,
        }
    }
}

/// `[traps]`: paths no person visits. robots.txt disallows them for every agent; pages may
/// link them invisibly. A client fetching one gets a small harmless page and is marked.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrapsConfig {
    /// Path prefixes answered as traps.
    pub paths: Vec<String>,
    /// More path prefixes robots.txt disallows: requesting one after fetching robots.txt
    /// raises `robots-ignored`.
    pub disallowed: Vec<String>,
    /// How long a trapped client stays marked.
    pub mark_for: Spanned<String>,
}

impl Default for TrapsConfig {
    fn default() -> Self {
        TrapsConfig {
            paths: vec!["/lenscap-trap/".into()],
            disallowed: Vec::new(),
            mark_for: Spanned::new(0..0, "1h".into()),
        }
    }
}

/// `[cookie]`: the signed visitor cookie that tells people behind one address apart.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CookieConfig {
    /// Issue and read the cookie (default on).
    pub enabled: bool,
    /// Cookie name.
    pub name: String,
    /// Lifetime (`Max-Age`).
    pub lifetime: Spanned<String>,
    /// Signing secret shared by instances; when unset a random key is made each time the
    /// policy is loaded, so cookies are rotated with the policy.
    pub secret: Option<Spanned<String>>,
}

impl Default for CookieConfig {
    fn default() -> Self {
        CookieConfig {
            enabled: true,
            name: "lenscap".into(),
            lifetime: Spanned::new(0..0, "30m".into()),
            secret: None,
        }
    }
}
