//! Decide: turn what classification found into a [`Verdict`].
//!
//! A catalogued agent gets its category's action (or its per-agent override): honest crawlers
//! are governed by policy, not by how their headers look. A claim of an agent with published
//! ranges from outside them carries `spoofed-agent` and gets at least the `spoofed` action.
//! Everyone else — browsers and unknown clients — gets the stricter of its category's action
//! and the action its score reaches. Later signals (behaviour, over quota) are added with
//! [`Scoring::add_signals`], which applies the thresholds again.
//!
//! ```
//! use http::Request;
//! use lenscap::{Action, PeerAddr, Policy};
//!
//! // Thresholds are the policy's: a score of 60 blocks by default.
//! let policy = Policy::from_toml_str("[verdict]\nblock_at = 200\n", None).unwrap();
//! let mut request = Request::get("/p/1.jpg").header("user-agent", "curl/8.5.0").body(()).unwrap();
//! request.extensions_mut().insert(PeerAddr("203.0.113.9:5555".parse().unwrap()));
//! let (_client, verdict) = policy.verdict_for(&request);
//! // curl is a catalogued HTTP library: kept off images by its category, whatever its score.
//! assert_eq!(verdict.action, Action::Block);
//! ```

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_spanned::Spanned;

use crate::catalog::{Catalog, Category};
use crate::classify::{Classification, Classifier};
use crate::documents::{LicensingConfig, Price};
use crate::settings::{ConfigError, Source};
use crate::verdict::{Action, Reason, Reasons, Verdict};

macro_rules! weights {
    ($($field:ident = $default:literal,)*) => {
        /// `[signals]`: the weight each signal adds to the score (0 turns it off).
        #[derive(Clone, Debug, Deserialize)]
        #[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
        pub(crate) struct SignalWeights {
            $(
                pub(crate) $field: u32,
            )*
        }

        impl Default for SignalWeights {
            fn default() -> Self {
                SignalWeights { $($field: $default,)* }
            }
        }

        impl SignalWeights {
            /// `(name, weight)` for every signal.
            fn iter(&self) -> impl Iterator<Item = (&'static str, u32)> {
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
    fast_navigation = 20,
    signed_agent = 0,
    unsigned_agent = 0,
    signature_malformed = 60,
    signature_expired = 60,
    signature_unlisted = 0,
    signature_unknown_key = 60,
    signature_invalid = 60,
    signature_replayed = 60,
    license_paid = 0,
    transport_mismatch = 40,
    datacenter = 5,
    datacenter_images = 40,
    no_render = 5,
}

/// `[verdict]`: score thresholds and the spoofer action.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Thresholds {
    /// Score from which an otherwise allowed client is throttled (0 = never).
    pub(crate) throttle_at: u32,
    /// Score from which it is tarpitted (0 = never).
    pub(crate) tarpit_at: u32,
    /// Score from which it is blocked (0 = never).
    pub(crate) block_at: u32,
    /// Action for a client claiming a verified crawler from outside its ranges.
    pub(crate) spoofed: Action,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            throttle_at: 30,
            tarpit_at: 0,
            block_at: 60,
            spoofed: Action::Block,
        }
    }
}

impl Thresholds {
    fn action(&self, score: u32) -> Action {
        let reached = |at: u32| at > 0 && score >= at;
        if reached(self.block_at) {
            Action::Block
        } else if reached(self.tarpit_at) {
            Action::Tarpit
        } else if reached(self.throttle_at) {
            Action::Throttle
        } else {
            Action::Allow
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
                f.write_str(r#"an action ("allow", "throttle", "tarpit", "license", "block") or { pages = …, images = … }"#)
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
pub(crate) struct CategoryActions {
    ai_training: CategoryAction,
    ai_assistant: CategoryAction,
    ai_search: CategoryAction,
    ai_agent: CategoryAction,
    search_engine: CategoryAction,
    seo: CategoryAction,
    archiver: CategoryAction,
    social_preview: CategoryAction,
    monitor: CategoryAction,
    feed_reader: CategoryAction,
    bulk_downloader: CategoryAction,
    http_library: CategoryAction,
    headless_browser: CategoryAction,
    scraper: CategoryAction,
    other: CategoryAction,
    browser: CategoryAction,
    unknown: CategoryAction,
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
    /// Whether any category gets `action`, for pages or images.
    pub(crate) fn uses(&self, action: Action) -> bool {
        Category::ALL.iter().any(|c| {
            let a = self.get(*c);
            a.pages == action || a.images == action
        })
    }

    /// The action table for `category`.
    pub(crate) fn get(&self, category: Category) -> CategoryAction {
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

/// The sections this stage reads: `[signals]`, `[verdict]`, `[actions]`, `[agents]`.
#[derive(Debug)]
pub(crate) struct DecideConfig<'a> {
    pub(crate) signals: &'a SignalWeights,
    pub(crate) verdict: Thresholds,
    pub(crate) actions: &'a CategoryActions,
    pub(crate) agents: &'a BTreeMap<Spanned<String>, CategoryAction>,
    pub(crate) licensing: &'a LicensingConfig,
}

/// Signal weights and score thresholds: what any later stage needs to add signals to a
/// verdict. Small and shared by reference.
#[derive(Clone, Debug)]
pub(crate) struct Scoring {
    weights: [u32; Reason::ALL.len()],
    pub(crate) thresholds: Thresholds,
}

impl Scoring {
    /// The weight of a signal.
    pub(crate) fn weight(&self, reason: Reason) -> u32 {
        self.weights[reason as usize]
    }

    /// Adds signals raised after classification (behaviour, over quota): their weights join
    /// the score and the thresholds apply again, to every client but verified crawlers (which
    /// are governed by their category).
    pub(crate) fn add_signals(&self, verdict: &mut Verdict, mut extra: Reasons) {
        if extra.is_empty() {
            return;
        }
        // Harvesting images without pages is worse from a rented server than from a phone.
        if extra.contains(Reason::ImagesWithoutPages)
            && verdict.reasons.contains(Reason::Datacenter)
        {
            extra.insert(Reason::DatacenterImages);
        }
        for reason in extra.iter() {
            if !verdict.reasons.contains(reason) {
                verdict.score += self.weight(reason);
            }
        }
        verdict.reasons = verdict.reasons.union(extra);
        if !verdict.reasons.contains(Reason::VerifiedAgent) {
            verdict.action = verdict.action.max(self.thresholds.action(verdict.score));
        }
    }
}

/// The decide stage, compiled.
#[derive(Debug)]
pub(crate) struct Decider {
    pub(crate) scoring: Scoring,
    pub(crate) actions: CategoryActions,
    /// Per catalog agent: an action override.
    agent_actions: Vec<Option<CategoryAction>>,
    /// `[licensing] price`: what a `license` action lets a verified crawler pay.
    pub(crate) price: Option<Price>,
    /// Some category or agent gets `license` (so price offers are worth reading).
    pub(crate) licenses: bool,
}

impl Decider {
    /// Compiles the sections against the catalog (agent overrides must name its agents).
    pub(crate) fn compile(
        config: DecideConfig<'_>,
        catalog: &Catalog,
        source: &Source<'_>,
    ) -> Result<Decider, ConfigError> {
        let mut agent_actions = vec![None; catalog.len()];
        for (name, action) in config.agents {
            let index = catalog
                .agents()
                .iter()
                .position(|a| a.name().eq_ignore_ascii_case(name.get_ref()))
                .ok_or_else(|| {
                    source.invalid(
                        Some(name.span()),
                        format!(
                            "agents.{:?}: no catalog agent has this name",
                            name.get_ref()
                        ),
                    )
                })?;
            agent_actions[index] = Some(*action);
        }
        let mut weights = [0u32; Reason::ALL.len()];
        for (field, weight) in config.signals.iter() {
            let name = field.replace('_', "-");
            let reason = Reason::from_name(&name).expect("every weight names a reason");
            weights[reason as usize] = weight;
        }
        let price =
            match &config.licensing.price {
                Some(text) => Some(text.get_ref().parse::<Price>().map_err(|e| {
                    source.invalid(Some(text.span()), format!("licensing.price: {e}"))
                })?),
                None => None,
            };
        let mut decider = Decider {
            scoring: Scoring {
                weights,
                thresholds: config.verdict,
            },
            actions: config.actions.clone(),
            agent_actions,
            price,
            licenses: false,
        };
        decider.licenses = decider.uses(Action::License);
        Ok(decider)
    }

    /// The action table of catalog agent `index` (its override, or its category's).
    pub(crate) fn agent_action(&self, index: usize, category: Category) -> CategoryAction {
        self.agent_actions
            .get(index)
            .copied()
            .flatten()
            .unwrap_or_else(|| self.actions.get(category))
    }

    /// Whether any category or agent override gets `action`.
    pub(crate) fn uses(&self, action: Action) -> bool {
        self.actions.uses(action)
            || self
                .agent_actions
                .iter()
                .flatten()
                .any(|a| a.pages == action || a.images == action)
    }

    /// Whether a request under `license` pays the price: a verified crawler (signed, or from
    /// its published ranges) whose offer meets the price. A signed one must have signed the
    /// offer's header, so the offer is its operator's, not a relay's.
    fn pays(&self, found: &Classification) -> bool {
        let Some(price) = &self.price else {
            return false;
        };
        let verified = found.reasons.contains(Reason::VerifiedAgent)
            && !found.reasons.contains(Reason::SpoofedAgent);
        let Ok(Some(offer)) = &found.offer else {
            return false;
        };
        let signed_offer = match &found.signature {
            Some(Ok(signed)) => signed.covers(offer.header()),
            _ => true,
        };
        verified && signed_offer && offer.accepts(price)
    }

    /// How many catalog agents have an action of their own.
    pub(crate) fn overrides(&self) -> usize {
        self.agent_actions.iter().filter(|a| a.is_some()).count()
    }

    /// Decides one classified request. Pure: the same facts always give the same verdict.
    pub(crate) fn decide(&self, classifier: &Classifier, found: &Classification) -> Verdict {
        let image = found.image();
        let mut reasons = found.reasons;
        let (agent, action) = match found.agent {
            Some(index) => {
                let mut action = self.agent_action(index, found.category).for_request(image);
                if reasons.contains(Reason::SpoofedAgent) {
                    action = action.max(self.scoring.thresholds.spoofed);
                }
                (Some(classifier.agent_name(index)), action)
            }
            None => (None, self.actions.get(found.category).for_request(image)),
        };
        let score: u32 = reasons.iter().map(|r| self.scoring.weight(r)).sum();
        let mut action = if agent.is_none() {
            action.max(self.scoring.thresholds.action(score))
        } else {
            action
        };
        if action == Action::License && self.pays(found) {
            action = Action::Allow;
            reasons.insert(Reason::LicensePaid);
        }
        Verdict {
            action,
            score,
            category: found.category,
            agent,
            reasons,
        }
    }
}

/// `[forward]`: what is passed on to the inner service.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ForwardConfig {
    /// Add an `x-lenscap-verdict` request header for the upstream.
    pub(crate) verdict_header: bool,
}
