//! The sections the limit stage reads — `[limits]`, `[traps]`, `[cookie]`, `[tarpit]` and
//! `[block]` — and their compilation into [`LimitSettings`] and [`Enforcement`].

use std::time::Duration;

use serde::Deserialize;
use serde_spanned::Spanned;

use super::cookie::CookieSettings;
use super::pass::PassSettings;
use super::rate::Rate;
use super::render::RenderSettings;
use crate::settings::{ConfigError, Source};
use crate::signals::behaviour::{BehaviourConfig, BehaviourSettings};

/// A rate as written: `{ rate = "120/min", burst = 20 }`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RateConfig {
    /// `"N/s"`, `"N/min"`, `"N/h"` or `"N/day"`.
    rate: Spanned<String>,
    /// Requests allowed at once (default: N).
    #[serde(default)]
    burst: Option<u32>,
}

impl RateConfig {
    fn new(rate: &str, burst: u32) -> Self {
        RateConfig {
            rate: Spanned::new(0..0, rate.to_owned()),
            burst: Some(burst),
        }
    }

    fn compile(&self, key: &str, source: &Source<'_>) -> Result<Rate, ConfigError> {
        let rate = Rate::parse(self.rate.get_ref(), self.burst)
            .map_err(|e| source.invalid(Some(self.rate.span()), format!("{key}: {e}")))?;
        let span_days = rate.period().as_secs_f64() * f64::from(rate.burst()) / 86_400.0;
        if span_days > MAX_SPAN_DAYS {
            return Err(source.invalid(
                Some(self.rate.span()),
                format!(
                    "{key}: a burst of {} at {} takes {span_days:.0} days to refill; at most {MAX_SPAN_DAYS} (the limiters' millisecond clock wraps after 49 days)",
                    rate.burst(),
                    self.rate.get_ref()
                ),
            ));
        }
        Ok(rate)
    }
}

/// Longest time a rate's whole burst may take to refill.
const MAX_SPAN_DAYS: f64 = 24.0;

/// What happens to a request over quota.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum OverQuota {
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
pub(crate) struct LimitsConfig {
    /// Turns rate limiting and behaviour tracking on (default) or off.
    enabled: bool,
    /// `reject` (429) or `tarpit`.
    over_quota: OverQuota,
    /// Most clients tracked at once; the stalest are evicted beyond it.
    max_tracked_clients: usize,
    /// A client unseen this long is forgotten by the cleanup task.
    idle_after: Spanned<String>,
    /// How often the cleanup task runs.
    cleanup_every: Spanned<String>,
    /// Page navigations per cookie visitor, at a person's pace: a short burst, then a human
    /// rate. A navigation beyond it earns no image credit and raises `fast-navigation`.
    page_pace: RateConfig,
    /// The same for an address without cookies, which a crowd may share.
    anonymous_page_pace: RateConfig,
    /// Page views per client: the long-horizon budget (a burst for a visit, then a daily rate).
    pages: RateConfig,
    /// Images per client that no page view of the client vouches for.
    images: RateConfig,
    /// Page views per client whose verdict is throttle.
    suspect_pages: RateConfig,
    /// Images per client whose verdict is throttle (vouched or not).
    suspect_images: RateConfig,
    /// Page views per subnet.
    subnet_pages: RateConfig,
    /// Unvouched images per subnet.
    subnet_images: RateConfig,
    /// Vouched images per subnet: the ceiling for a crowd behind one address.
    subnet_vouched_images: RateConfig,
    /// Page views per address, every client on it together (cookie visitors and pass holders
    /// included): one share; the address gets a share for each visitor established on it.
    address_pages: RateConfig,
    /// Vouched photos per address, every client on it together: one share, as above.
    address_photos: RateConfig,
    /// Distinct photos per address once it has more than one established visitor: the
    /// ceiling on what a crowd's extra shares can take (they buy repeat views).
    address_distinct_photos: RateConfig,
    /// Most shares an address gets, however many visitors it has.
    address_max_shares: u32,
    /// A visitor adds a share to its address once it has been served pages this long.
    address_established_after: Spanned<String>,
    /// Optional budget for unvouched images served to anyone, per site.
    unknown_images: Option<RateConfig>,
    /// Inject the render proof into HTML pages and hold clients that never fetch it.
    render_proof: bool,
    /// Images of a page vouched before its viewer has proved rendering.
    unrendered_grace: u8,
    /// The site's budget for other images of render-proof pages from clients without a proof.
    unrendered_images: RateConfig,
    /// Images a page view vouches for (when their Referer is that page).
    credit_per_page: u16,
    /// Most page-view credit a client can hold.
    max_credit: u16,
    /// A page view vouches only for the images its HTML embeds (off for galleries that add
    /// their images by script after the page has loaded).
    embedded_only: bool,
    /// Answer a person's refused page view with the way-through page (a pass after a short
    /// wait) instead of a bare 429.
    way_through: bool,
    /// How long a new pass waits before it is valid (the first of an address; each pass the
    /// address still holds adds as much again).
    pass_wait: Spanned<String>,
    /// How long a pass stays valid.
    pass_lifetime: Spanned<String>,
    /// Passes issued per address.
    passes: RateConfig,
    /// Passes issued per subnet.
    subnet_passes: RateConfig,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            enabled: true,
            over_quota: OverQuota::Reject,
            max_tracked_clients: 1_000_000,
            idle_after: Spanned::new(0..0, "10m".into()),
            cleanup_every: Spanned::new(0..0, "30s".into()),
            page_pace: RateConfig::new("15/min", 3),
            anonymous_page_pace: RateConfig::new("20/min", 3),
            pages: RateConfig::new("40/day", 40),
            images: RateConfig::new("30/min", 10),
            suspect_pages: RateConfig::new("20/min", 5),
            suspect_images: RateConfig::new("6/min", 3),
            subnet_pages: RateConfig::new("2000/day", 1000),
            subnet_images: RateConfig::new("60/min", 20),
            subnet_vouched_images: RateConfig::new("20000/day", 10000),
            address_pages: RateConfig::new("150/day", 150),
            address_photos: RateConfig::new("200/day", 400),
            address_distinct_photos: RateConfig::new("50/day", 700),
            address_max_shares: 28,
            address_established_after: Spanned::new(0..0, "0s".into()),
            unknown_images: None,
            render_proof: true,
            unrendered_grace: 2,
            unrendered_images: RateConfig::new("60/h", 10),
            credit_per_page: 100,
            max_credit: 300,
            embedded_only: true,
            way_through: true,
            pass_wait: Spanned::new(0..0, "3s".into()),
            pass_lifetime: Spanned::new(0..0, "30m".into()),
            passes: RateConfig::new("6/h", 8),
            subnet_passes: RateConfig::new("40/h", 24),
        }
    }
}

/// `[traps]`: paths no person visits. robots.txt disallows them for every agent; pages may
/// link them invisibly. A client fetching one gets a small harmless page and is marked.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct TrapsConfig {
    /// Path prefixes answered as traps.
    paths: Vec<String>,
    /// More path prefixes robots.txt disallows: requesting one after fetching robots.txt
    /// raises `robots-ignored`.
    disallowed: Vec<String>,
    /// How long a trapped client stays marked.
    mark_for: Spanned<String>,
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
pub(crate) struct CookieConfig {
    /// Issue and read the cookie (default on).
    enabled: bool,
    /// Cookie name.
    name: String,
    /// Lifetime (`Max-Age`).
    lifetime: Spanned<String>,
    /// Signing secret shared by instances; when unset a random key is made each time the
    /// policy is loaded, so cookies are rotated with the policy.
    secret: Option<Spanned<String>>,
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

/// `[block]`: what a block looks like.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct BlockConfig {
    /// Status code of a block (default 403).
    status: Spanned<u16>,
    /// Short text in the body; the policy page's path (`reservation.policy_path`) is appended.
    message: String,
}

impl Default for BlockConfig {
    fn default() -> Self {
        BlockConfig {
            status: Spanned::new(0..0, 403),
            message: "This site does not allow automated collection of its photos.".into(),
        }
    }
}

/// `[tarpit]`: how tarpitting behaves.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct TarpitConfig {
    /// How long a tarpitted request is held, e.g. `"5s"` or `"800ms"`.
    delay: Spanned<String>,
    /// How many requests may be held at once; beyond that they are blocked.
    max_held: usize,
}

impl Default for TarpitConfig {
    fn default() -> Self {
        TarpitConfig {
            delay: Spanned::new(0..0, "5s".into()),
            max_held: 256,
        }
    }
}

/// The sections this stage reads, borrowed from the policy file.
pub(crate) struct LimitConfig<'a> {
    pub(crate) limits: &'a LimitsConfig,
    pub(crate) behaviour: &'a BehaviourConfig,
    pub(crate) traps: &'a TrapsConfig,
    pub(crate) cookie: &'a CookieConfig,
}

/// `[limits]`, `[behaviour]`, `[traps]` and `[cookie]`, compiled.
#[derive(Debug)]
pub(crate) struct LimitSettings {
    pub(crate) enabled: bool,
    pub(crate) over_quota: OverQuota,
    pub(crate) max_tracked_clients: usize,
    pub(crate) idle_after: Duration,
    pub(crate) cleanup_every: Duration,
    pub(crate) embedded_only: bool,
    pub(crate) page_pace: Rate,
    pub(crate) anonymous_page_pace: Rate,
    pub(crate) pages: Rate,
    pub(crate) images: Rate,
    pub(crate) suspect_pages: Rate,
    pub(crate) suspect_images: Rate,
    pub(crate) subnet_pages: Rate,
    pub(crate) subnet_images: Rate,
    pub(crate) subnet_vouched_images: Rate,
    pub(crate) address_pages: Rate,
    pub(crate) address_photos: Rate,
    pub(crate) address_distinct_photos: Rate,
    pub(crate) address_max_shares: u32,
    pub(crate) address_established_after: Duration,
    pub(crate) unknown_images: Option<Rate>,
    /// Proof of rendering: on, and the site's budget for images without it.
    pub(crate) render: RenderSettings,
    pub(crate) behaviour: BehaviourSettings,
    pub(crate) trap_paths: Vec<String>,
    pub(crate) disallowed: Vec<String>,
    pub(crate) trap_mark: Duration,
    pub(crate) cookie: CookieSettings,
    pub(crate) pass: PassSettings,
}

impl LimitSettings {
    #[cfg(feature = "cli")]
    /// Whether a request over a quota is refused (`over_quota = "reject"`), not tarpitted.
    pub(crate) fn rejects_over_quota(&self) -> bool {
        self.over_quota == OverQuota::Reject
    }

    /// Compiles the four sections.
    pub(crate) fn compile(
        config: LimitConfig<'_>,
        source: &Source<'_>,
    ) -> Result<LimitSettings, ConfigError> {
        let l = config.limits;
        let mut behaviour = config
            .behaviour
            .compile(l.credit_per_page, l.max_credit, source)?;
        behaviour.unrendered_grace = match l.unrendered_grace {
            grace @ 0..=crate::signals::behaviour::MAX_UNRENDERED_GRACE => grace,
            n => {
                return Err(source.invalid(
                    None,
                    format!(
                        "limits.unrendered_grace = {n}: from 0 to {}",
                        crate::signals::behaviour::MAX_UNRENDERED_GRACE
                    ),
                ));
            }
        };
        for path in config.traps.paths.iter().chain(&config.traps.disallowed) {
            if !path.starts_with('/') {
                return Err(source.invalid(
                    None,
                    format!("traps: {path:?} must be a path starting with /"),
                ));
            }
        }
        let c = config.cookie;
        if c.name.is_empty()
            || !c
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(source.invalid(
                None,
                format!("cookie.name = {:?}: letters, digits, - and _ only", c.name),
            ));
        }
        let lifetime = source.duration("cookie.lifetime", &c.lifetime)?;
        let pass = compile_pass(l, &c.name, source)?;
        Ok(LimitSettings {
            enabled: l.enabled,
            over_quota: l.over_quota,
            max_tracked_clients: l.max_tracked_clients.max(1),
            idle_after: source.duration("limits.idle_after", &l.idle_after)?,
            cleanup_every: source.duration("limits.cleanup_every", &l.cleanup_every)?,
            embedded_only: l.embedded_only,
            page_pace: l.page_pace.compile("limits.page_pace", source)?,
            anonymous_page_pace: l
                .anonymous_page_pace
                .compile("limits.anonymous_page_pace", source)?,
            pages: l.pages.compile("limits.pages", source)?,
            images: l.images.compile("limits.images", source)?,
            suspect_pages: l.suspect_pages.compile("limits.suspect_pages", source)?,
            suspect_images: l.suspect_images.compile("limits.suspect_images", source)?,
            subnet_pages: l.subnet_pages.compile("limits.subnet_pages", source)?,
            subnet_images: l.subnet_images.compile("limits.subnet_images", source)?,
            subnet_vouched_images: l
                .subnet_vouched_images
                .compile("limits.subnet_vouched_images", source)?,
            address_pages: l.address_pages.compile("limits.address_pages", source)?,
            address_photos: l.address_photos.compile("limits.address_photos", source)?,
            address_distinct_photos: l
                .address_distinct_photos
                .compile("limits.address_distinct_photos", source)?,
            address_max_shares: match l.address_max_shares {
                1..=28 => l.address_max_shares,
                n => {
                    return Err(source.invalid(
                        None,
                        format!("limits.address_max_shares = {n}: from 1 to 28"),
                    ));
                }
            },
            address_established_after: source.duration(
                "limits.address_established_after",
                &l.address_established_after,
            )?,
            unknown_images: l
                .unknown_images
                .as_ref()
                .map(|r| r.compile("limits.unknown_images", source))
                .transpose()?,
            render: RenderSettings {
                enabled: l.render_proof,
                unrendered_images: l
                    .unrendered_images
                    .compile("limits.unrendered_images", source)?,
            },
            behaviour,
            trap_paths: config.traps.paths.clone(),
            disallowed: config.traps.disallowed.clone(),
            trap_mark: {
                let mark = source.duration("traps.mark_for", &config.traps.mark_for)?;
                if mark > crate::signals::behaviour::MAX_TRAP_MARK {
                    return Err(source.invalid(
                        Some(config.traps.mark_for.span()),
                        format!(
                            "traps.mark_for: at most {}s",
                            crate::signals::behaviour::MAX_TRAP_MARK.as_secs()
                        ),
                    ));
                }
                mark
            },
            cookie: CookieSettings::new(
                c.enabled,
                c.name.clone(),
                lifetime.as_secs().max(1),
                c.secret.as_ref().map(|s| s.get_ref().as_str()),
            ),
            pass,
        })
    }

    pub(crate) fn is_trap(&self, path: &str) -> bool {
        self.trap_paths.iter().any(|t| path.starts_with(t.as_str()))
    }

    pub(crate) fn is_disallowed(&self, path: &str) -> bool {
        self.disallowed.iter().any(|t| path.starts_with(t.as_str()))
    }

    /// Every path prefix robots.txt should disallow for every agent: the trap paths and
    /// `[traps] disallowed`.
    pub(crate) fn robots_disallowed(&self) -> impl Iterator<Item = &str> {
        self.trap_paths
            .iter()
            .chain(&self.disallowed)
            .map(String::as_str)
    }
}

/// The way-through settings of `[limits]`, checked: a wait of 1 to 255 seconds, a lifetime
/// longer than the wait and at most a day.
fn compile_pass(
    l: &LimitsConfig,
    cookie_name: &str,
    source: &Source<'_>,
) -> Result<PassSettings, ConfigError> {
    let wait = source.duration("limits.pass_wait", &l.pass_wait)?;
    if !(1..=255).contains(&wait.as_secs()) {
        return Err(source.invalid(
            Some(l.pass_wait.span()),
            format!(
                "limits.pass_wait = {:?}: between 1s and 255s",
                l.pass_wait.get_ref()
            ),
        ));
    }
    let lifetime = source.duration("limits.pass_lifetime", &l.pass_lifetime)?;
    if lifetime <= wait || lifetime > Duration::from_secs(86_400) {
        return Err(source.invalid(
            Some(l.pass_lifetime.span()),
            format!(
                "limits.pass_lifetime = {:?}: longer than pass_wait, at most 1 day",
                l.pass_lifetime.get_ref()
            ),
        ));
    }
    Ok(PassSettings {
        enabled: l.way_through,
        wait_secs: wait.as_secs() as u32,
        lifetime_secs: lifetime.as_secs() as u32,
        per_address: l.passes.compile("limits.passes", source)?,
        per_subnet: l.subnet_passes.compile("limits.subnet_passes", source)?,
        cookie_name: format!("{cookie_name}-pass"),
    })
}

/// `[block]` and `[tarpit]`, compiled: how a blocked or tarpitted request is answered.
#[derive(Debug)]
pub(crate) struct Enforcement {
    pub(crate) block_status: http::StatusCode,
    pub(crate) block_body: bytes::Bytes,
    pub(crate) tarpit_delay: Duration,
    pub(crate) tarpit_max_held: usize,
    /// The way-through page's last line, HTML: the policy page's link and the site's contact.
    pub(crate) way_footer: String,
}

impl Enforcement {
    /// Compiles `[block]` and `[tarpit]`; the block body names the policy page at `policy_path`,
    /// the way-through page links it and the site's `contact` (`[reservation]`).
    pub(crate) fn compile(
        block: &BlockConfig,
        tarpit: &TarpitConfig,
        policy_path: &str,
        contact: Option<&str>,
        source: &Source<'_>,
    ) -> Result<Enforcement, ConfigError> {
        let status = &block.status;
        let block_status = http::StatusCode::from_u16(*status.get_ref())
            .ok()
            .filter(|s| s.is_client_error() || s.is_server_error())
            .ok_or_else(|| {
                source.invalid(
                    Some(status.span()),
                    format!(
                        "block.status = {} is not a 4xx or 5xx status",
                        status.get_ref()
                    ),
                )
            })?;
        Ok(Enforcement {
            block_status,
            block_body: bytes::Bytes::from(format!(
                "{}\nWhy, and whom to contact: {policy_path}\n",
                block.message.trim_end(),
            )),
            tarpit_delay: source.duration("tarpit.delay", &tarpit.delay)?,
            tarpit_max_held: tarpit.max_held,
            way_footer: way_footer(policy_path, contact),
        })
    }
}

/// `<p><a href="/ai-policy">Why this page</a> · Contact: <a href="mailto:…">…</a></p>`.
fn way_footer(policy_path: &str, contact: Option<&str>) -> String {
    use crate::documents::{contact_link, escape_html};
    let mut footer = format!(
        "<p><a href=\"{}\">Why this page, and what this site allows</a>",
        escape_html(policy_path)
    );
    if let Some(contact) = contact
        && let Some(link) = contact_link(contact)
    {
        footer.push_str(&format!(
            " · Contact: <a href=\"{}\">{}</a>",
            escape_html(&link.href()),
            escape_html(contact.trim())
        ));
    }
    footer.push_str("</p>");
    footer
}
