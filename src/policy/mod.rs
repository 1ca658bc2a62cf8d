//! The policy: the TOML file, its validation, and its compilation into an immutable [`Policy`].
//!
//! `config/lenscap.toml` is the default policy, embedded in the binary. An empty file is a valid
//! policy (every key has a default). A file compiles once — catalog automaton, verified-range
//! tables, trusted-proxy table, action tables — and the hot path only reads the result. On
//! reload a new `Policy` is compiled off the hot path and swapped in whole.
//!
//! ```
//! use lenscap::policy::{Mode, Policy};
//!
//! let policy = Policy::from_toml_str("mode = \"report-only\"\n", None).unwrap();
//! assert_eq!(policy.mode(), Mode::ReportOnly);
//!
//! let err = Policy::from_toml_str("[client]\ntrusted_proxy = []\n", None).unwrap_err();
//! assert!(err.to_string().contains("line 2"));
//! assert!(err.to_string().contains("trusted_proxy"));
//! ```

pub mod config;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use config::{CategoryAction, Config, Mode};

use crate::catalog::ranges::{RangeTable, RangesError, VerifiedRanges};
use crate::catalog::{Catalog, CatalogError, Category};
use crate::client::{SubnetPrefixes, TrustedProxies};
use crate::documents::{Disallow, Documents, ReservationConfig, RobotsAgent};
use crate::stamp::Stamp;
use crate::stamp::headers::OptOutHeaders;
use crate::stamp::html::MetaTags;
use crate::verdict::{Action, Reason};

/// The default policy shipped with Lenscap (`config/lenscap.toml`).
pub const EMBEDDED_POLICY: &str = include_str!("../../config/lenscap.toml");

/// A policy that could not be loaded. Every variant names the file and, where it can, the key
/// and line.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Not valid TOML, an unknown key, or a bad value.
    #[error("{source_name}: {message}")]
    Parse {
        /// The file.
        source_name: String,
        /// What is wrong, with line and column.
        message: String,
    },
    /// A value that parsed but makes no sense.
    #[error("{source_name}: {message}")]
    Invalid {
        /// The file.
        source_name: String,
        /// What is wrong, naming the key (and line when known).
        message: String,
    },
    /// A catalog file is wrong.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// A ranges file is wrong.
    #[error(transparent)]
    Ranges(#[from] RangesError),
}

/// Renders a TOML error as `line L, column C: message` plus the offending line.
pub fn describe_toml_error(error: &toml::de::Error, text: &str) -> String {
    let Some(span) = error.span() else {
        return error.message().to_owned();
    };
    let (line, column) = line_col(text, span.start);
    let source_line = text.lines().nth(line - 1).unwrap_or("").trim();
    let mut out = format!("line {line}, column {column}: {}", error.message());
    if !source_line.is_empty() {
        let _ = write!(out, " (in `{source_line}`)");
    }
    out
}

pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..offset.min(text.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
    (line, column)
}

/// Parses `"5s"`, `"800ms"`, `"1.5s"`, `"2m"`, `"1h"`. The unit is required: a bare number
/// is ambiguous.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    let seconds = match unit.trim() {
        "s" | "sec" | "secs" => value,
        "ms" => value / 1000.0,
        "m" | "min" | "mins" => value * 60.0,
        "h" | "hour" | "hours" => value * 3600.0,
        _ => return None,
    };
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds))
}

/// The compiled, immutable policy used by the hot path.
#[derive(Debug)]
pub struct Policy {
    pub(crate) mode: Mode,
    pub(crate) proxies: TrustedProxies,
    pub(crate) subnets: SubnetPrefixes,
    pub(crate) catalog: Catalog,
    pub(crate) ranges: VerifiedRanges,
    /// Per catalog agent: its range table's name, when it has one.
    pub(crate) agent_ranges: Vec<Option<String>>,
    /// Per catalog agent: an action override.
    pub(crate) agent_actions: Vec<Option<CategoryAction>>,
    pub(crate) weights: [u32; Reason::ALL.len()],
    pub(crate) verdict: config::VerdictConfig,
    pub(crate) actions: config::CategoryActions,
    pub(crate) block_status: http::StatusCode,
    pub(crate) block_body: bytes::Bytes,
    pub(crate) tarpit_delay: Duration,
    pub(crate) tarpit_max_held: usize,
    pub(crate) image_extensions: Vec<String>,
    pub(crate) verdict_header: bool,
    pub(crate) reservation: ReservationConfig,
    pub(crate) documents: Documents,
    /// The catalog agents robots.txt names, kept to rebuild it around the site's own file.
    pub(crate) robots_agents: Vec<RobotsAgent>,
    pub(crate) meta_tags: Arc<MetaTags>,
    pub(crate) optout_headers: OptOutHeaders,
    pub(crate) stamp: Option<Arc<Stamp>>,
    pub(crate) limits: crate::limit::LimitSettings,
    /// User-Agents read so far under this policy's catalog.
    pub(crate) user_agents: crate::signals::UserAgentCache,
}

impl Policy {
    /// The embedded default policy.
    pub fn embedded() -> Result<Policy, PolicyError> {
        Policy::from_toml_str(EMBEDDED_POLICY, None)
    }

    /// Loads and compiles a policy file. Relative paths inside it are relative to its folder.
    pub fn from_file(path: &Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Policy::compile_text(&text, &path.display().to_string(), path.parent())
    }

    /// Compiles a policy from TOML text; `base` resolves relative paths.
    pub fn from_toml_str(text: &str, base: Option<&Path>) -> Result<Policy, PolicyError> {
        Policy::compile_text(text, "policy", base)
    }

    /// Compiles a policy from TOML text read from `source_name` (named in errors).
    pub(crate) fn compile_named(
        text: &str,
        source_name: &str,
        base: Option<&Path>,
    ) -> Result<Policy, PolicyError> {
        Policy::compile_text(text, source_name, base)
    }

    fn compile_text(
        text: &str,
        source_name: &str,
        base: Option<&Path>,
    ) -> Result<Policy, PolicyError> {
        let config: Config = toml::from_str(text).map_err(|e| PolicyError::Parse {
            source_name: source_name.to_owned(),
            message: describe_toml_error(&e, text),
        })?;
        Policy::compile(config, text, source_name, base)
    }

    /// Compiles parsed config (`text` is used to point at lines in errors).
    pub fn compile(
        config: Config,
        text: &str,
        source_name: &str,
        base: Option<&Path>,
    ) -> Result<Policy, PolicyError> {
        let invalid = |span: Option<std::ops::Range<usize>>, message: String| {
            let message = match span.filter(|s| s.end > 0) {
                Some(span) => format!("line {}: {message}", line_col(text, span.start).0),
                None => message,
            };
            PolicyError::Invalid {
                source_name: source_name.to_owned(),
                message,
            }
        };
        let resolve = |p: &Path| -> PathBuf {
            match base {
                Some(base) if p.is_relative() => base.join(p),
                _ => p.to_path_buf(),
            }
        };

        let v4 = &config.client.subnet_v4;
        if *v4.get_ref() > 32 {
            return Err(invalid(
                Some(v4.span()),
                format!(
                    "client.subnet_v4 = {} is not a prefix length (0–32)",
                    v4.get_ref()
                ),
            ));
        }
        let v6 = &config.client.subnet_v6;
        if *v6.get_ref() > 128 {
            return Err(invalid(
                Some(v6.span()),
                format!(
                    "client.subnet_v6 = {} is not a prefix length (0–128)",
                    v6.get_ref()
                ),
            ));
        }

        let limits = crate::limit::LimitSettings::compile(&config, &invalid)?;

        let mut entries = match &config.catalog.file {
            Some(path) => {
                let path = resolve(path);
                let text = read(&path)?;
                crate::catalog::parse_entries(&path.display().to_string(), &text)?
            }
            None => crate::catalog::parse_entries(
                "embedded crawlers.toml",
                crate::catalog::EMBEDDED_CATALOG,
            )?,
        };
        for extra in &config.catalog.extra {
            let path = resolve(extra);
            let text = read(&path)?;
            entries.extend(crate::catalog::parse_entries(
                &path.display().to_string(),
                &text,
            )?);
        }
        let catalog = Catalog::build(entries, "catalog")?;

        let overrides = config
            .ranges
            .iter()
            .map(|(k, v)| (k.clone(), resolve(v)))
            .collect();
        let ranges = VerifiedRanges::load(&overrides)?;
        let mut agent_ranges = Vec::with_capacity(catalog.len());
        for agent in catalog.agents() {
            if let Some(name) = agent.ranges()
                && ranges.get(name).is_none()
            {
                return Err(invalid(
                    None,
                    format!(
                        "catalog agent {:?} names ranges file {name:?}, which is neither embedded nor set in [ranges]",
                        agent.name()
                    ),
                ));
            }
            agent_ranges.push(agent.ranges().map(str::to_owned));
        }

        let mut agent_actions = vec![None; catalog.len()];
        for (name, action) in &config.agents {
            let index = catalog
                .agents()
                .iter()
                .position(|a| a.name().eq_ignore_ascii_case(name.get_ref()))
                .ok_or_else(|| {
                    invalid(
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

        let status = &config.block.status;
        let block_status = http::StatusCode::from_u16(*status.get_ref())
            .ok()
            .filter(|s| s.is_client_error() || s.is_server_error())
            .ok_or_else(|| {
                invalid(
                    Some(status.span()),
                    format!(
                        "block.status = {} is not a 4xx or 5xx status",
                        status.get_ref()
                    ),
                )
            })?;
        let block_body = bytes::Bytes::from(format!(
            "{}\nWhy, and whom to contact: {}\n",
            config.block.message.trim_end(),
            config.reservation.policy_path
        ));

        let robots_agents = robots_agents(&catalog, &config.actions, &agent_actions);
        let robots_disallowed: Vec<String> = limits
            .trap_paths
            .iter()
            .chain(&limits.disallowed)
            .cloned()
            .collect();
        let documents = Documents::build(
            &config.reservation,
            &robots_agents,
            &robots_disallowed,
            None,
        )
        .map_err(|e| invalid(section_span(text, "reservation"), e.to_string()))?;
        let meta_tags = Arc::new(MetaTags::from_config(&config.reservation));
        let stamp = Stamp::compile(&config.stamp)
            .map_err(|e| invalid(section_span(text, "stamp"), format!("[stamp]: {e}")))?;
        let stamp = stamp.is_enabled().then(|| Arc::new(stamp));
        let optout_headers =
            OptOutHeaders::new(&config.headers, config.reservation.policy_url.as_deref())
                .map_err(|e| invalid(section_span(text, "reservation"), e.to_string()))?;

        let delay = &config.tarpit.delay;
        let tarpit_delay = parse_duration(delay.get_ref()).ok_or_else(|| {
            invalid(
                Some(delay.span()),
                format!(
                    "tarpit.delay = {:?} is not a duration like \"5s\" or \"800ms\"",
                    delay.get_ref()
                ),
            )
        })?;

        let image_extensions = config
            .images
            .extensions
            .iter()
            .map(|e| e.trim_start_matches('.').to_ascii_lowercase())
            .collect();

        Ok(Policy {
            mode: config.mode,
            proxies: TrustedProxies::new(
                config.client.trusted_proxies.iter().copied(),
                config.client.forwarded_header,
            ),
            subnets: SubnetPrefixes {
                v4: *config.client.subnet_v4.get_ref(),
                v6: *config.client.subnet_v6.get_ref(),
            },
            catalog,
            ranges,
            agent_ranges,
            agent_actions,
            weights,
            verdict: config.verdict,
            actions: config.actions,
            block_status,
            block_body,
            tarpit_delay,
            tarpit_max_held: config.tarpit.max_held,
            image_extensions,
            verdict_header: config.forward.verdict_header,
            reservation: config.reservation,
            documents,
            robots_agents,
            meta_tags,
            optout_headers,
            stamp,
            limits,
            user_agents: Default::default(),
        })
    }

    /// `enforce` or `report-only`.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The crawler catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The verified-ranges tables.
    pub fn ranges(&self) -> &VerifiedRanges {
        &self.ranges
    }

    /// The trusted proxies.
    pub fn trusted_proxies(&self) -> &TrustedProxies {
        &self.proxies
    }

    /// Subnet prefix lengths.
    pub fn subnets(&self) -> SubnetPrefixes {
        self.subnets
    }

    /// The weight of a signal.
    pub fn weight(&self, reason: Reason) -> u32 {
        self.weights[reason as usize]
    }

    /// The action for a category's pages and images.
    pub fn category_action(&self, category: Category) -> CategoryAction {
        self.actions.get(category)
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
    /// the robots.txt this policy serves.
    pub fn set_site_robots(&mut self, site_robots: &str) -> Result<(), PolicyError> {
        let disallowed: Vec<String> = self.disallowed_paths().map(str::to_owned).collect();
        self.documents = Documents::build(
            &self.reservation,
            &self.robots_agents,
            &disallowed,
            Some(site_robots),
        )
        .map_err(|e| PolicyError::Invalid {
            source_name: "the site's robots.txt".into(),
            message: e.to_string(),
        })?;
        Ok(())
    }

    pub(crate) fn range_table(&self, agent_index: usize) -> Option<&RangeTable> {
        self.agent_ranges
            .get(agent_index)?
            .as_deref()
            .and_then(|name| self.ranges.get(name))
    }

    /// Whether `path` (without query) ends in an image extension.
    pub fn is_image_path(&self, path: &str) -> bool {
        let path = path.as_bytes();
        // The extension: after the last dot, when no slash follows it.
        let Some(dot) = memchr::memrchr2(b'.', b'/', path).filter(|&i| path[i] == b'.') else {
            return false;
        };
        let ext = &path[dot + 1..];
        self.image_extensions
            .iter()
            .any(|e| e.len() == ext.len() && e.as_bytes().eq_ignore_ascii_case(ext))
    }

    /// Trap path prefixes (`[traps] paths`): robots.txt must disallow them for every agent.
    pub fn trap_paths(&self) -> &[String] {
        &self.limits.trap_paths
    }

    /// Every path prefix robots.txt should disallow for every agent: the trap paths and
    /// `[traps] disallowed`.
    pub fn disallowed_paths(&self) -> impl Iterator<Item = &str> {
        self.limits
            .trap_paths
            .iter()
            .chain(&self.limits.disallowed)
            .map(String::as_str)
    }

    /// A short, human-readable summary (for `lenscap check-config` and start-up logs).
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "mode: {}", self.mode.as_str());
        let _ = writeln!(out, "catalog: {} agents", self.catalog.len());
        let mut by_category = std::collections::BTreeMap::new();
        for agent in self.catalog.agents() {
            *by_category.entry(agent.category()).or_insert(0usize) += 1;
        }
        let _ = writeln!(
            out,
            "actions per category (pages / images, catalog agents):"
        );
        for category in Category::ALL {
            let action = self.actions.get(category);
            let count = by_category.get(&category).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "  {:<17} {:<8} / {:<8} {count:>4}",
                category.as_str(),
                action.pages.as_str(),
                action.images.as_str()
            );
        }
        let overrides = self.agent_actions.iter().filter(|a| a.is_some()).count();
        let _ = writeln!(out, "agent overrides: {overrides}");
        let _ = writeln!(
            out,
            "thresholds: throttle at {}, tarpit at {}, block at {} (0 = never); spoofed agents: {}",
            self.verdict.throttle_at,
            self.verdict.tarpit_at,
            self.verdict.block_at,
            self.verdict.spoofed
        );
        let ranges: Vec<String> = self
            .ranges
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

/// The robots.txt groups that declare what enforcement does: agents whose pages are blocked
/// are disallowed everywhere, agents kept off images only are disallowed from images. Agents
/// without an RFC 9309 token cannot be named there and are left to enforcement.
fn robots_agents(
    catalog: &Catalog,
    actions: &config::CategoryActions,
    overrides: &[Option<CategoryAction>],
) -> Vec<RobotsAgent> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (index, agent) in catalog.agents().iter().enumerate() {
        let action = overrides
            .get(index)
            .copied()
            .flatten()
            .unwrap_or_else(|| actions.get(agent.category()));
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

/// The span of a `[section]` header, to point errors at it.
fn section_span(text: &str, section: &str) -> Option<std::ops::Range<usize>> {
    let header = format!("[{section}]");
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if line.trim() == header {
            return Some(offset..offset + line.len());
        }
        offset += line.len();
    }
    None
}

fn read(path: &Path) -> Result<String, PolicyError> {
    std::fs::read_to_string(path).map_err(|source| PolicyError::Io {
        path: path.display().to_string(),
        source,
    })
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
    fn durations() {
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("800ms"), Some(Duration::from_millis(800)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), None);
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("soon"), None);
        assert_eq!(parse_duration("-1s"), None);
    }

    #[test]
    fn image_paths() {
        let p = Policy::from_toml_str("", None).unwrap();
        assert!(p.is_image_path("/photos/IMG_0001.JPG"));
        assert!(p.is_image_path("/a.webp"));
        assert!(!p.is_image_path("/gallery/"));
        assert!(!p.is_image_path("/jpg"));
        assert!(!p.is_image_path("/index.html"));
    }
}
