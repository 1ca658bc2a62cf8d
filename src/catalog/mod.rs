//! The crawler catalog and the user-agent matcher.
//!
//! The catalog is data (`config/crawlers.toml`, embedded in the binary): one entry per agent
//! with its product tokens, operator, [`Category`], whether it obeys robots.txt and, for
//! crawlers that publish them, the name of a verified IP-ranges file. It compiles once into a
//! single case-insensitive Aho-Corasick automaton; a token only counts when the bytes around it
//! are not ASCII letters or digits, so `LCC` never matches inside `SLCC2` and `Java` never
//! inside `JavaScript`. When several tokens match, the longest wins (`Googlebot-Image` over
//! `Googlebot`).
//!
//! ```
//! use lenscap::catalog::{Catalog, Category};
//!
//! let catalog = Catalog::embedded().unwrap();
//! let agent = catalog
//!     .classify(b"Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)")
//!     .unwrap();
//! assert_eq!(agent.name(), "GPTBot");
//! assert_eq!(agent.category(), Category::AiTraining);
//!
//! let firefox = b"Mozilla/5.0 (X11; Linux x86_64; rv:150.0) Gecko/20100101 Firefox/150.0";
//! assert!(catalog.classify(firefox).is_none());
//! ```

pub mod datacenter;
pub mod ranges;

use std::fmt;
use std::sync::Arc;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use serde::{Deserialize, Serialize};

/// The catalog shipped with Lenscap (`config/crawlers.toml`).
pub const EMBEDDED_CATALOG: &str = include_str!("../../config/crawlers.toml");

/// What kind of client an agent is. Every per-category action in the policy keys on this.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    /// Collects content to train AI models.
    AiTraining,
    /// Fetches pages on behalf of a person's question to an AI assistant.
    AiAssistant,
    /// Builds the index behind an AI search product.
    AiSearch,
    /// An autonomous AI agent browsing for someone.
    AiAgent,
    /// A classic web search engine.
    SearchEngine,
    /// Search-engine-optimisation and backlink tools.
    Seo,
    /// Web archives.
    Archiver,
    /// Fetches a page's title and image to show a link preview.
    SocialPreview,
    /// Uptime and performance monitors.
    Monitor,
    /// RSS and Atom readers.
    FeedReader,
    /// Tools that mirror sites or download images in bulk.
    BulkDownloader,
    /// Generic HTTP client libraries (often in scripts).
    HttpLibrary,
    /// Automated, headless browsers.
    HeadlessBrowser,
    /// Scraping services and frameworks.
    Scraper,
    /// A catalogued agent that fits no other category.
    Other,
    /// Not in the catalog and shaped like a web browser.
    Browser,
    /// Not in the catalog and not shaped like a browser.
    Unknown,
}

impl Category {
    /// Every category, in declaration order.
    pub const ALL: [Category; 17] = [
        Category::AiTraining,
        Category::AiAssistant,
        Category::AiSearch,
        Category::AiAgent,
        Category::SearchEngine,
        Category::Seo,
        Category::Archiver,
        Category::SocialPreview,
        Category::Monitor,
        Category::FeedReader,
        Category::BulkDownloader,
        Category::HttpLibrary,
        Category::HeadlessBrowser,
        Category::Scraper,
        Category::Other,
        Category::Browser,
        Category::Unknown,
    ];

    /// The kebab-case name used in config files, logs and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::AiTraining => "ai-training",
            Category::AiAssistant => "ai-assistant",
            Category::AiSearch => "ai-search",
            Category::AiAgent => "ai-agent",
            Category::SearchEngine => "search-engine",
            Category::Seo => "seo",
            Category::Archiver => "archiver",
            Category::SocialPreview => "social-preview",
            Category::Monitor => "monitor",
            Category::FeedReader => "feed-reader",
            Category::BulkDownloader => "bulk-downloader",
            Category::HttpLibrary => "http-library",
            Category::HeadlessBrowser => "headless-browser",
            Category::Scraper => "scraper",
            Category::Other => "other",
            Category::Browser => "browser",
            Category::Unknown => "unknown",
        }
    }

    /// Whether this is one of the AI categories.
    pub fn is_ai(self) -> bool {
        matches!(
            self,
            Category::AiTraining | Category::AiAssistant | Category::AiSearch | Category::AiAgent
        )
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One catalog entry as written in `crawlers.toml`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentEntry {
    /// Unique display name.
    pub name: String,
    /// Substrings searched for in the User-Agent.
    pub tokens: Vec<String>,
    /// robots.txt product tokens; defaults to the name when it is a valid token.
    #[serde(default)]
    pub robots: Option<Vec<String>>,
    /// Who runs it.
    #[serde(default)]
    pub operator: String,
    /// What it is.
    pub category: Category,
    /// Known to obey robots.txt.
    #[serde(default)]
    pub obeys_robots: bool,
    /// Name of a verified IP-ranges file (`config/ranges/<name>.json`).
    #[serde(default)]
    pub ranges: Option<String>,
    /// Known to sign its requests (Web Bot Auth): a request naming it without a valid
    /// signature is a spoofer.
    #[serde(default)]
    pub signs: bool,
    /// One line about the agent.
    #[serde(default)]
    pub description: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    #[serde(default)]
    agent: Vec<AgentEntry>,
}

/// A compiled catalog agent.
#[derive(Debug)]
pub struct Agent {
    name: Arc<str>,
    robots: Vec<String>,
    operator: String,
    category: Category,
    obeys_robots: bool,
    ranges: Option<String>,
    signs: bool,
    description: String,
}

impl Agent {
    /// Display name, as in the catalog.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name as a shared string (cheap to clone into a verdict).
    pub fn shared_name(&self) -> &Arc<str> {
        &self.name
    }

    /// robots.txt product tokens that address this agent (may be empty).
    pub fn robots_tokens(&self) -> &[String] {
        &self.robots
    }

    /// Who runs the agent.
    pub fn operator(&self) -> &str {
        &self.operator
    }

    /// What kind of agent it is.
    pub fn category(&self) -> Category {
        self.category
    }

    /// Whether it is known to obey robots.txt.
    pub fn obeys_robots(&self) -> bool {
        self.obeys_robots
    }

    /// Name of its verified-ranges file, if it publishes one.
    pub fn ranges(&self) -> Option<&str> {
        self.ranges.as_deref()
    }

    /// Whether it is known to sign its requests (Web Bot Auth).
    pub fn signs(&self) -> bool {
        self.signs
    }

    /// One-line description.
    pub fn description(&self) -> &str {
        &self.description
    }
}

/// A problem in a catalog file.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The file is not valid TOML or has an unknown or mistyped key.
    #[error("{source_name}: {message}")]
    Parse {
        /// File name (or `embedded crawlers.toml`).
        source_name: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// An entry is unusable.
    #[error("{source_name}: agent {agent:?}: {problem}")]
    Entry {
        /// File name.
        source_name: String,
        /// The agent's name.
        agent: String,
        /// What is wrong.
        problem: String,
    },
    /// The automaton could not be built.
    #[error("building the user-agent matcher: {0}")]
    Matcher(String),
}

/// `[catalog]`: where the crawler catalog comes from.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct CatalogConfig {
    /// A catalog file replacing the embedded one.
    pub(crate) file: Option<std::path::PathBuf>,
    /// Catalog files whose entries are added (same name replaces).
    pub(crate) extra: Vec<std::path::PathBuf>,
}

impl CatalogConfig {
    /// Reads and compiles the catalog this section names; `resolve` makes paths absolute.
    pub(crate) fn load(
        &self,
        resolve: &dyn Fn(&std::path::Path) -> std::path::PathBuf,
    ) -> Result<Catalog, crate::settings::ConfigError> {
        let mut entries = match &self.file {
            Some(path) => {
                let path = resolve(path);
                parse_entries(
                    &path.display().to_string(),
                    &crate::settings::read_file(&path)?,
                )?
            }
            None => parse_entries("embedded crawlers.toml", EMBEDDED_CATALOG)?,
        };
        for extra in &self.extra {
            let path = resolve(extra);
            entries.extend(parse_entries(
                &path.display().to_string(),
                &crate::settings::read_file(&path)?,
            )?);
        }
        Ok(Catalog::build(entries, "catalog")?)
    }
}

impl From<CatalogError> for crate::settings::ConfigError {
    fn from(error: CatalogError) -> Self {
        crate::settings::ConfigError::Data(Box::new(error))
    }
}

impl From<ranges::RangesError> for crate::settings::ConfigError {
    fn from(error: ranges::RangesError) -> Self {
        crate::settings::ConfigError::Data(Box::new(error))
    }
}

/// The compiled crawler catalog: agents plus one automaton over all their tokens.
#[derive(Debug)]
pub struct Catalog {
    agents: Vec<Agent>,
    matcher: AhoCorasick,
    /// For each automaton pattern: (agent index, token length).
    patterns: Vec<(u32, u32)>,
    /// For each automaton pattern: the token as written.
    tokens: Vec<Box<str>>,
}

/// RFC 9309 product token: letters, `-` and `_` only.
pub fn is_product_token(token: &str) -> bool {
    !token.is_empty()
        && token
            .bytes()
            .all(|b| b.is_ascii_alphabetic() || b == b'-' || b == b'_')
}

/// Parses the entries of one catalog file.
pub fn parse_entries(source_name: &str, text: &str) -> Result<Vec<AgentEntry>, CatalogError> {
    let file: CatalogFile = toml::from_str(text).map_err(|e| CatalogError::Parse {
        source_name: source_name.to_owned(),
        message: crate::settings::describe_toml_error(&e, text),
    })?;
    Ok(file.agent)
}

impl Catalog {
    /// The embedded catalog.
    pub fn embedded() -> Result<Catalog, CatalogError> {
        Catalog::build(
            parse_entries("embedded crawlers.toml", EMBEDDED_CATALOG)?,
            "embedded crawlers.toml",
        )
    }

    /// Compiles entries (later entries with the same name replace earlier ones).
    pub fn build(entries: Vec<AgentEntry>, source_name: &str) -> Result<Catalog, CatalogError> {
        let mut agents: Vec<Agent> = Vec::with_capacity(entries.len());
        let mut tokens: Vec<Vec<String>> = Vec::with_capacity(entries.len());
        for entry in entries {
            let bad = |problem: String| CatalogError::Entry {
                source_name: source_name.to_owned(),
                agent: entry.name.clone(),
                problem,
            };
            if entry.name.trim().is_empty() {
                return Err(bad("empty name".into()));
            }
            if entry.tokens.is_empty() {
                return Err(bad(
                    "`tokens` is empty: give at least one user-agent token".into()
                ));
            }
            if let Some(t) = entry.tokens.iter().find(|t| t.trim().is_empty()) {
                return Err(bad(format!("empty token {t:?} in `tokens`")));
            }
            let robots = match &entry.robots {
                Some(list) => {
                    if let Some(t) = list.iter().find(|t| !is_product_token(t)) {
                        return Err(bad(format!(
                            "robots token {t:?} is not an RFC 9309 product token (letters, '-', '_')"
                        )));
                    }
                    list.clone()
                }
                None if is_product_token(&entry.name) => vec![entry.name.clone()],
                None => Vec::new(),
            };
            let agent = Agent {
                name: Arc::from(entry.name.as_str()),
                robots,
                operator: entry.operator,
                category: entry.category,
                obeys_robots: entry.obeys_robots,
                ranges: entry.ranges,
                signs: entry.signs,
                description: entry.description,
            };
            match agents.iter().position(|a| a.name == agent.name) {
                Some(i) => {
                    agents[i] = agent;
                    tokens[i] = entry.tokens;
                }
                None => {
                    agents.push(agent);
                    tokens.push(entry.tokens);
                }
            }
        }
        let mut pattern_strings: Vec<Box<str>> = Vec::new();
        let mut patterns = Vec::new();
        for (i, list) in tokens.iter().enumerate() {
            for token in list {
                pattern_strings.push(token.as_str().into());
                patterns.push((i as u32, token.len() as u32));
            }
        }
        let matcher = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .build(pattern_strings.iter().map(|t| t.as_bytes()))
            .map_err(|e| CatalogError::Matcher(e.to_string()))?;
        Ok(Catalog {
            agents,
            matcher,
            patterns,
            tokens: pattern_strings,
        })
    }

    /// All agents, in file order.
    pub fn agents(&self) -> &[Agent] {
        &self.agents
    }

    /// Number of agents.
    pub fn len(&self) -> usize {
        self.agents.len()
    }

    /// Whether the catalog has no agents.
    pub fn is_empty(&self) -> bool {
        self.agents.is_empty()
    }

    /// Every token with the index of its agent, in file order (the order
    /// [`Catalog::classify`] breaks ties in).
    pub(crate) fn tokens(&self) -> impl Iterator<Item = (&str, usize)> {
        self.tokens
            .iter()
            .zip(&self.patterns)
            .map(|(token, &(agent, _))| (&**token, agent as usize))
    }

    /// Looks an agent up by name (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&Agent> {
        self.agents
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
    }

    /// The agent whose token appears, word-bounded, in `user_agent`; the longest token wins.
    pub fn classify(&self, user_agent: &[u8]) -> Option<&Agent> {
        self.classify_index(user_agent).map(|i| &self.agents[i])
    }

    /// Like [`Catalog::classify`], returning the agent's index in [`Catalog::agents`].
    pub fn classify_index(&self, user_agent: &[u8]) -> Option<usize> {
        let mut best: Option<(u32, u32)> = None;
        for m in self.matcher.find_overlapping_iter(user_agent) {
            let (start, end) = (m.start(), m.end());
            if !is_boundary(user_agent, start.checked_sub(1)) || !is_boundary(user_agent, Some(end))
            {
                continue;
            }
            let (agent, len) = self.patterns[m.pattern().as_usize()];
            if best.is_none_or(|(_, best_len)| len > best_len) {
                best = Some((agent, len));
            }
        }
        best.map(|(agent, _)| agent as usize)
    }
}

/// True when the byte at `at` (if any) does not continue a word.
fn is_boundary(haystack: &[u8], at: Option<usize>) -> bool {
    match at.and_then(|i| haystack.get(i)) {
        Some(b) => !b.is_ascii_alphanumeric(),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog(text: &str) -> Result<Catalog, CatalogError> {
        Catalog::build(parse_entries("test", text)?, "test")
    }

    const SMALL: &str = r#"
[[agent]]
name = "Googlebot"
tokens = ["Googlebot"]
category = "search-engine"

[[agent]]
name = "Googlebot-Image"
tokens = ["Googlebot-Image"]
category = "search-engine"

[[agent]]
name = "LCC"
tokens = ["LCC"]
category = "ai-training"
"#;

    #[test]
    fn longest_token_wins() {
        let c = catalog(SMALL).unwrap();
        assert_eq!(
            c.classify(b"Googlebot-Image/1.0").unwrap().name(),
            "Googlebot-Image"
        );
        assert_eq!(
            c.classify(b"Mozilla/5.0 (compatible; Googlebot/2.1)")
                .unwrap()
                .name(),
            "Googlebot"
        );
    }

    #[test]
    fn tokens_need_word_boundaries() {
        let c = catalog(SMALL).unwrap();
        let ie = b"Mozilla/5.0 (compatible; MSIE 9.0; Windows NT 6.1; WOW64; Trident/5.0; SLCC2; .NET CLR 2.0.50727)";
        assert!(c.classify(ie).is_none());
        assert_eq!(c.classify(b"lcc").unwrap().name(), "LCC");
        assert!(c.classify(b"GooglebotX/1").is_none());
    }

    #[test]
    fn matching_is_case_insensitive() {
        let c = catalog(SMALL).unwrap();
        assert_eq!(c.classify(b"GOOGLEBOT/2.1").unwrap().name(), "Googlebot");
    }

    #[test]
    fn invalid_utf8_and_huge_user_agents_are_fine() {
        let c = catalog(SMALL).unwrap();
        let mut ua = vec![0xffu8; 16 * 1024];
        assert!(c.classify(&ua).is_none());
        ua.extend_from_slice(b" Googlebot/2.1");
        assert_eq!(c.classify(&ua).unwrap().name(), "Googlebot");
    }

    #[test]
    fn empty_tokens_are_rejected_with_the_agent_name() {
        let err = catalog("[[agent]]\nname = \"X\"\ntokens = [\"\"]\ncategory = \"other\"\n")
            .unwrap_err();
        assert!(err.to_string().contains("\"X\""), "{err}");
        let err =
            catalog("[[agent]]\nname = \"Y\"\ntokens = []\ncategory = \"other\"\n").unwrap_err();
        assert!(err.to_string().contains("tokens"), "{err}");
    }

    #[test]
    fn unknown_keys_and_categories_are_rejected_with_a_line() {
        let err = catalog("[[agent]]\nname = \"X\"\ntokens = [\"X\"]\ncategory = \"robot\"\n")
            .unwrap_err();
        assert!(err.to_string().contains("line 4"), "{err}");
        let err = catalog(
            "[[agent]]\nname = \"X\"\ntokens = [\"X\"]\ncategory = \"other\"\ncolour = 1\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
    }

    #[test]
    fn robots_tokens_default_to_valid_names_only() {
        let c = catalog(
            "[[agent]]\nname = \"AI2Bot\"\ntokens = [\"AI2Bot\"]\ncategory = \"ai-training\"\n\
             [[agent]]\nname = \"CCBot\"\ntokens = [\"CCBot\"]\ncategory = \"ai-training\"\n",
        )
        .unwrap();
        assert!(c.get("AI2Bot").unwrap().robots_tokens().is_empty());
        assert_eq!(c.get("ccbot").unwrap().robots_tokens(), ["CCBot"]);
    }
}
