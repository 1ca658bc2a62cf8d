//! The policy: the TOML file, its validation, and its compilation into an immutable [`Policy`].
//!
//! `config/lenscap.toml` is the default policy, embedded in the binary. An empty file is a valid
//! policy (every key has a default). The policy only composes: each stage owns its section of
//! the file and compiles it (catalog automaton, verified-range tables, trusted-proxy table,
//! action tables, limits, the stamp), and the hot path only reads the result. On reload a new
//! `Policy` is compiled off the hot path and swapped in whole. A `Policy` is cheap to clone
//! (its compiled stages are shared), so sites that do not override it share one compile.
//!
//! ```
//! use lenscap::{Mode, Policy};
//!
//! let policy = Policy::from_toml_str("mode = \"report-only\"\n", None).unwrap();
//! assert_eq!(policy.mode(), Mode::ReportOnly);
//!
//! let err = Policy::from_toml_str("[client]\ntrusted_proxy = []\n", None).unwrap_err();
//! assert!(err.to_string().contains("line 2"));
//! assert!(err.to_string().contains("trusted_proxy"));
//! ```

pub(crate) mod config;

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::Request;

pub(crate) use config::Config;
pub use config::Mode;

use crate::catalog::ranges::VerifiedRanges;
use crate::catalog::{Catalog, Category};
use crate::classify::{Classification, Classifier, RequestParts};
use crate::client::{ClientId, Identify, Identity, TrustedProxies, peer_ip};
use crate::decide::{CategoryAction, DecideConfig, Decider};
use crate::documents::{Disallow, Documents, ReservationConfig, RobotsAgent};
use crate::limit::{Enforcement, LimitConfig, LimitSettings};
use crate::settings::{ConfigError, Source, read_file};
use crate::stamp::Stamp;
use crate::tag::TagSettings;
use crate::tag::headers::OptOutHeaders;
use crate::verdict::{Action, Reason, Verdict};

/// The default policy shipped with Lenscap (`config/lenscap.toml`).
pub const EMBEDDED_POLICY: &str = include_str!("../../config/lenscap.toml");

/// The compiled, immutable policy used by the hot path: one compiled part per stage.
#[derive(Clone, Debug)]
pub struct Policy {
    pub(crate) mode: Mode,
    pub(crate) identify: Arc<Identify>,
    pub(crate) documents: Arc<Documents>,
    /// The reservation and the catalog agents robots.txt names, kept to rebuild the
    /// documents around a site's own robots.txt.
    reservation: Arc<ReservationConfig>,
    robots_agents: Arc<[RobotsAgent]>,
    pub(crate) classifier: Arc<Classifier>,
    pub(crate) decider: Arc<Decider>,
    pub(crate) limits: Arc<LimitSettings>,
    pub(crate) enforcement: Arc<Enforcement>,
    /// `[forward] verdict_header`.
    pub(crate) verdict_header: bool,
    pub(crate) tag: Arc<TagSettings>,
}

impl Policy {
    /// The embedded default policy.
    pub fn embedded() -> Result<Policy, ConfigError> {
        Policy::from_toml_str(EMBEDDED_POLICY, None)
    }

    /// Loads and compiles a policy file. Relative paths inside it are relative to its folder.
    pub fn from_file(path: &Path) -> Result<Policy, ConfigError> {
        let text = read_file(path)?;
        Policy::compile_named(&text, &path.display().to_string(), path.parent())
    }

    /// Compiles a policy from TOML text; `base` resolves relative paths.
    pub fn from_toml_str(text: &str, base: Option<&Path>) -> Result<Policy, ConfigError> {
        Policy::compile_named(text, "policy", base)
    }

    /// Compiles a policy from TOML text read from `source_name` (named in errors).
    pub(crate) fn compile_named(
        text: &str,
        source_name: &str,
        base: Option<&Path>,
    ) -> Result<Policy, ConfigError> {
        let config: Config =
            toml::from_str(text).map_err(|e| ConfigError::toml(source_name, text, &e))?;
        Policy::compile(config, &Source::new(source_name, text), base)
    }

    /// Compiles parsed config, stage by stage, in request order.
    fn compile(
        config: Config,
        source: &Source<'_>,
        base: Option<&Path>,
    ) -> Result<Policy, ConfigError> {
        let resolve = |p: &Path| -> PathBuf {
            match base {
                Some(base) if p.is_relative() => base.join(p),
                _ => p.to_path_buf(),
            }
        };
        let identify = Identify::compile(&config.client, source)?;
        let classifier = Classifier::compile(
            &config.catalog,
            &config.ranges,
            &config.images,
            &resolve,
            source,
        )?;
        let decider = Decider::compile(
            DecideConfig {
                signals: &config.signals,
                verdict: config.verdict,
                actions: &config.actions,
                agents: &config.agents,
            },
            &classifier.catalog,
            source,
        )?;
        let limits = LimitSettings::compile(
            LimitConfig {
                limits: &config.limits,
                behaviour: &config.behaviour,
                traps: &config.traps,
                cookie: &config.cookie,
            },
            source,
        )?;
        let enforcement = Enforcement::compile(
            &config.block,
            &config.tarpit,
            &config.reservation.policy_path,
            config.reservation.contact.as_deref(),
            source,
        )?;
        let robots_agents: Arc<[RobotsAgent]> = robots_agents(&classifier.catalog, &decider).into();
        let disallowed: Vec<String> = limits.robots_disallowed().map(str::to_owned).collect();
        let documents = Documents::build(&config.reservation, &robots_agents, &disallowed, None)
            .map_err(|e| source.invalid(source.section("reservation"), e.to_string()))?;
        let tag = compile_tag(&config, source)?;
        Ok(Policy {
            mode: config.mode,
            identify: Arc::new(identify),
            documents: Arc::new(documents),
            reservation: Arc::new(config.reservation),
            robots_agents,
            classifier: Arc::new(classifier),
            decider: Arc::new(decider),
            limits: Arc::new(limits),
            enforcement: Arc::new(enforcement),
            verdict_header: config.forward.verdict_header,
            tag: Arc::new(tag),
        })
    }

    /// `enforce` or `report-only`.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The crawler catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.classifier.catalog
    }

    /// The verified-ranges tables.
    pub fn ranges(&self) -> &VerifiedRanges {
        &self.classifier.ranges
    }

    /// The trusted proxies.
    pub fn trusted_proxies(&self) -> &TrustedProxies {
        &self.identify.proxies
    }

    /// The weight of a signal.
    pub fn weight(&self, reason: Reason) -> u32 {
        self.decider.scoring.weight(reason)
    }

    /// The action for a category's pages and images.
    pub fn category_action(&self, category: Category) -> CategoryAction {
        self.decider.actions.get(category)
    }

    /// The reservation the site declares.
    pub fn reservation(&self) -> &ReservationConfig {
        &self.reservation
    }

    /// The documents Lenscap answers itself.
    pub fn documents(&self) -> &Documents {
        &self.documents
    }

    /// Merges the site's own robots.txt (its rules are kept; Lenscap's groups come first) into
    /// the robots.txt this policy serves. Other clones of the policy keep theirs.
    pub fn set_site_robots(&mut self, site_robots: &str) -> Result<(), ConfigError> {
        let disallowed: Vec<String> = self.disallowed_paths().map(str::to_owned).collect();
        let documents = Documents::build(
            &self.reservation,
            &self.robots_agents,
            &disallowed,
            Some(site_robots),
        )
        .map_err(|e| ConfigError::Invalid {
            source_name: "the site's robots.txt".into(),
            message: e.to_string(),
        })?;
        self.documents = Arc::new(documents);
        Ok(())
    }

    /// Whether `path` (without query) ends in one of `[images] extensions`.
    #[cfg(feature = "cli")]
    pub(crate) fn is_image_path(&self, path: &str) -> bool {
        self.classifier.is_image_path(path)
    }

    /// Trap path prefixes (`[traps] paths`): robots.txt must disallow them for every agent.
    pub fn trap_paths(&self) -> &[String] {
        &self.limits.trap_paths
    }

    /// Every path prefix robots.txt should disallow for every agent: the trap paths and
    /// `[traps] disallowed`.
    pub fn disallowed_paths(&self) -> impl Iterator<Item = &str> {
        self.limits.robots_disallowed()
    }

    /// Identifies, classifies and decides a request, without tracking or limiting it: the
    /// verdict its headers and address alone earn (what `lenscap explain` shows).
    pub fn verdict_for<B>(&self, request: &Request<B>) -> (ClientId, Verdict) {
        let (found, verdict) = self.judge(peer_ip(request), &RequestParts::of(request));
        (found.client, verdict)
    }

    /// The first stages in order: identify, classify, decide.
    pub(crate) fn judge(
        &self,
        peer: Option<IpAddr>,
        request: &RequestParts<'_>,
    ) -> (Classification, Verdict) {
        let identity: Identity = self.identify.proxies.identify(peer, request.headers);
        let found = self.classifier.classify(&identity, request);
        let verdict = self.decider.decide(&self.classifier, &found);
        (found, verdict)
    }

    /// A short, human-readable summary (for `lenscap check-config` and start-up logs).
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "mode: {}", self.mode.as_str());
        let catalog = self.catalog();
        let _ = writeln!(out, "catalog: {} agents", catalog.len());
        let mut by_category = std::collections::BTreeMap::new();
        for agent in catalog.agents() {
            *by_category.entry(agent.category()).or_insert(0usize) += 1;
        }
        let _ = writeln!(
            out,
            "actions per category (pages / images, catalog agents):"
        );
        for category in Category::ALL {
            let action = self.category_action(category);
            let count = by_category.get(&category).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "  {:<17} {:<8} / {:<8} {count:>4}",
                category.as_str(),
                action.pages.as_str(),
                action.images.as_str()
            );
        }
        let _ = writeln!(out, "agent overrides: {}", self.decider.overrides());
        let t = &self.decider.scoring.thresholds;
        let _ = writeln!(
            out,
            "thresholds: throttle at {}, tarpit at {}, block at {} (0 = never); spoofed agents: {}",
            t.throttle_at, t.tarpit_at, t.block_at, t.spoofed
        );
        let ranges: Vec<String> = self
            .ranges()
            .iter()
            .map(|(n, t)| format!("{n} ({})", t.len()))
            .collect();
        let _ = writeln!(
            out,
            "verified ranges: {}",
            if ranges.is_empty() {
                "none".into()
            } else {
                ranges.join(", ")
            }
        );
        out
    }
}

/// The tag stage's settings: opt-out headers, meta tags, the stamp.
fn compile_tag(config: &Config, source: &Source<'_>) -> Result<TagSettings, ConfigError> {
    let stamp = Stamp::compile(&config.stamp)
        .map_err(|e| source.invalid(source.section("stamp"), format!("[stamp]: {e}")))?;
    let optout_headers =
        OptOutHeaders::new(&config.headers, config.reservation.policy_url.as_deref())
            .map_err(|e| source.invalid(source.section("reservation"), e.to_string()))?;
    Ok(TagSettings {
        optout_headers,
        #[cfg(feature = "html")]
        meta_tags: config
            .reservation
            .html_meta
            .then(|| Arc::new(crate::tag::html::MetaTags::from_config(&config.reservation))),
        stamp: stamp.is_enabled().then(|| Arc::new(stamp)),
    })
}

/// The robots.txt groups that declare what enforcement does: agents whose pages are blocked
/// are disallowed everywhere, agents kept off images only are disallowed from images. Agents
/// without an RFC 9309 token cannot be named there and are left to enforcement.
fn robots_agents(catalog: &Catalog, decider: &Decider) -> Vec<RobotsAgent> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (index, agent) in catalog.agents().iter().enumerate() {
        let action = decider.agent_action(index, agent.category());
        let scope = if action.pages == Action::Block {
            Disallow::Everything
        } else if action.images == Action::Block {
            Disallow::Images
        } else {
            continue;
        };
        for token in agent.robots_tokens() {
            if seen.insert(token.to_ascii_lowercase()) {
                out.push(RobotsAgent::new(token.clone(), scope));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Policy::from_toml_str(text, None).unwrap_err().to_string()
    }

    #[test]
    fn empty_and_embedded_policies_compile() {
        Policy::from_toml_str("", None).unwrap();
        let p = Policy::embedded().unwrap();
        assert_eq!(p.mode(), Mode::Enforce);
    }

    #[test]
    fn unknown_keys_name_the_key_and_line() {
        let e = err("mode = \"enforce\"\n\n[verdict]\nblock_after = 3\n");
        assert!(e.contains("line 4") && e.contains("block_after"), "{e}");
    }

    #[test]
    fn bad_values_name_the_line() {
        let e = err("mode = \"sometimes\"\n");
        assert!(e.contains("line 1") && e.contains("sometimes"), "{e}");
        let e = err("[client]\ntrusted_proxies = [\"10.0.0.300/8\"]\n");
        assert!(e.contains("line 2") && e.contains("trusted_proxies"), "{e}");
        let e = err("[client]\nsubnet_v4 = 40\n");
        assert!(e.contains("line 2") && e.contains("subnet_v4"), "{e}");
        let e = err("[block]\nstatus = 200\n");
        assert!(e.contains("line 2") && e.contains("block.status"), "{e}");
        let e = err("[tarpit]\ndelay = \"soon\"\n");
        assert!(e.contains("line 2") && e.contains("tarpit.delay"), "{e}");
        let e = err("[actions]\nai-training = \"maybe\"\n");
        assert!(e.contains("line 2") && e.contains("maybe"), "{e}");
    }

    #[test]
    fn agent_overrides_must_name_catalog_agents() {
        let e = err("[agents]\n\"NoSuchBot\" = \"allow\"\n");
        assert!(e.contains("line 2") && e.contains("NoSuchBot"), "{e}");
    }

    #[test]
    fn category_actions_accept_both_forms() {
        let p = Policy::from_toml_str(
            "[actions]\nseo = \"block\"\nai-search = { pages = \"throttle\", images = \"block\" }\n",
            None,
        )
        .unwrap();
        assert_eq!(
            p.category_action(Category::Seo),
            CategoryAction::both(Action::Block)
        );
        assert_eq!(
            p.category_action(Category::AiSearch).pages,
            Action::Throttle
        );
    }

    #[test]
    fn ranges_file_that_is_not_json_is_an_error() {
        let dir = std::env::temp_dir().join(format!("lenscap-ranges-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("bad.json"), "not json").unwrap();
        let e = Policy::from_toml_str("[ranges]\nbad = \"bad.json\"\n", Some(&dir))
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad") && e.contains("JSON"), "{e}");
    }

    #[test]
    fn durations_too_large_for_the_clock_name_their_key() {
        for text in ["18446744073709551616s", "99999999999999999999h"] {
            let e = err(&format!("[limits]\nidle_after = \"{text}\"\n"));
            assert!(
                e.contains("line 2") && e.contains("limits.idle_after"),
                "{e}"
            );
        }
    }

    #[test]
    fn clones_share_one_compile_but_not_their_robots() {
        let a = Policy::embedded().unwrap();
        let mut b = a.clone();
        assert!(Arc::ptr_eq(&a.classifier, &b.classifier));
        b.set_site_robots("User-agent: *\nDisallow: /private/\n")
            .unwrap();
        let robots = |p: &Policy| {
            let r = p
                .documents()
                .answer(&http::Method::GET, "/robots.txt", &http::HeaderMap::new())
                .unwrap();
            String::from_utf8(r.body().to_vec()).unwrap()
        };
        assert!(robots(&b).contains("Disallow: /private/"));
        assert!(!robots(&a).contains("Disallow: /private/"));
    }
}
