//! `/robots.txt`: Lenscap's groups, merged with the site's own file.
//!
//! See the [module docs](super) for the merge rules; this file is laid out as
//! parse (the site's file) → plan (who ends up in which group) → render.

use std::collections::HashSet;
use std::fmt::Write as _;

use super::config::ReservationConfig;
use super::{DocumentError, IMAGE_EXTENSIONS, comment_safe};

/// Google's (and RFC 9309's minimum) size limit: crawlers ignore anything past it.
pub(crate) const MAX_ROBOTS_LEN: usize = 500 * 1024;

/// One crawler Lenscap names in robots.txt.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RobotsAgent {
    /// The RFC 9309 product token, e.g. `GPTBot` (matched case-insensitively by crawlers).
    pub token: String,
    /// What the agent is kept off.
    pub scope: Disallow,
}

impl RobotsAgent {
    /// An agent kept off `scope`.
    pub fn new(token: impl Into<String>, scope: Disallow) -> Self {
        Self {
            token: token.into(),
            scope,
        }
    }
}

/// What a named agent is disallowed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Disallow {
    /// The whole site (`Disallow: /`): AI training crawlers, dataset builders.
    Everything,
    /// Image files only (`Disallow: /*.jpg$`, …): AI search and assistant agents may read pages.
    Images,
}

// === parse: the site's own file ===

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Allow,
    Disallow,
    CrawlDelay,
    ContentSignal,
    ContentUsage,
    Comment,
    Other,
}

/// One line of the site's file that belongs to a group (or to the preamble).
#[derive(Clone, Copy, Debug)]
struct SiteLine<'a> {
    kind: Kind,
    /// The value, inline comment stripped, trimmed.
    value: &'a str,
    /// The whole line, trimmed, as the site wrote it.
    raw: &'a str,
}

#[derive(Debug, Default)]
struct SiteGroup<'a> {
    agents: Vec<&'a str>,
    lines: Vec<SiteLine<'a>>,
}

#[derive(Debug, Default)]
struct SiteFile<'a> {
    /// Lines before the first `User-agent`: comments and non-rule lines (`Host:` …).
    preamble: Vec<String>,
    groups: Vec<SiteGroup<'a>>,
    sitemaps: Vec<&'a str>,
}

enum Parsed<'a> {
    Blank,
    UserAgent(&'a str),
    Sitemap(&'a str),
    Line(SiteLine<'a>),
}

fn parse_line(raw: &str) -> Parsed<'_> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Parsed::Blank;
    }
    if raw.starts_with('#') {
        return Parsed::Line(SiteLine {
            kind: Kind::Comment,
            value: "",
            raw,
        });
    }
    let Some((key, rest)) = raw.split_once(':') else {
        return Parsed::Line(SiteLine {
            kind: Kind::Other,
            value: "",
            raw,
        });
    };
    let value = rest.split('#').next().unwrap_or("").trim();
    let key = key.trim();
    let is = |names: &[&str]| names.iter().any(|n| key.eq_ignore_ascii_case(n));
    if is(&["user-agent", "useragent", "user agent"]) {
        return Parsed::UserAgent(value);
    }
    if is(&["sitemap", "site-map"]) {
        // A sitemap URL may legitimately contain '#'; keep everything after the colon.
        return Parsed::Sitemap(rest.trim());
    }
    let kind = if is(&["allow"]) {
        Kind::Allow
    } else if is(&[
        "disallow",
        "dissallow",
        "dissalow",
        "disalow",
        "diasllow",
        "disallaw",
    ]) {
        Kind::Disallow
    } else if is(&["crawl-delay"]) {
        Kind::CrawlDelay
    } else if is(&["content-signal"]) {
        Kind::ContentSignal
    } else if is(&["content-usage"]) {
        Kind::ContentUsage
    } else {
        Kind::Other
    };
    Parsed::Line(SiteLine { kind, value, raw })
}

/// Reads a robots.txt the way crawlers do, forgiving BOMs, CRLF, odd case and unknown lines.
fn parse_site(text: &str) -> SiteFile<'_> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut file = SiteFile::default();
    // True while consecutive `User-agent` lines still add to the current group.
    let mut collecting_agents = false;
    for line in text.split(['\n', '\r']) {
        match parse_line(line) {
            Parsed::Blank => {}
            Parsed::Sitemap(url) => {
                if !url.is_empty() && !file.sitemaps.contains(&url) {
                    file.sitemaps.push(url);
                }
            }
            Parsed::UserAgent(agent) => {
                if !collecting_agents {
                    file.groups.push(SiteGroup::default());
                    collecting_agents = true;
                }
                if let Some(group) = file.groups.last_mut()
                    && !agent.is_empty()
                {
                    group.agents.push(agent);
                }
            }
            Parsed::Line(line) => match file.groups.last_mut() {
                Some(group) => {
                    if line.kind != Kind::Comment {
                        collecting_agents = false;
                    }
                    group.lines.push(line);
                }
                None => file.preamble.push(match line.kind {
                    Kind::Comment | Kind::Other => line.raw.to_owned(),
                    // Rules outside any group apply to nobody (RFC 9309 §2.1); keep them visible.
                    _ => format!("# ignored, outside any group: {}", line.raw),
                }),
            },
        }
    }
    file
}

// === plan: one group per agent ===

/// Rules the site gave one agent (or `*`), gathered over every group naming it.
#[derive(Debug)]
struct SiteAgent<'a> {
    name: &'a str,
    lines: Vec<SiteLine<'a>>,
}

fn take_agent<'a>(agents: &mut Vec<SiteAgent<'a>>, token: &str) -> Option<SiteAgent<'a>> {
    let at = agents
        .iter()
        .position(|a| a.name.eq_ignore_ascii_case(token))?;
    Some(agents.remove(at))
}

/// Lenscap's declarations, rendered once and added to every group.
struct Declarations {
    traps: Vec<String>,
    signals: Vec<String>,
}

impl Declarations {
    fn new(cfg: &ReservationConfig, traps: &[String]) -> Self {
        let mut signals = Vec::new();
        if cfg.content_usage {
            let mut usage = Vec::new();
            if cfg.reserve_training {
                usage.push("train-ai=n");
            }
            if cfg.reserve_search {
                usage.push("search=n");
            }
            if !usage.is_empty() {
                signals.push(format!("Content-Usage: {}", usage.join(", ")));
            }
        }
        if cfg.content_signal {
            let mut signal = vec![if cfg.reserve_search {
                "search=no"
            } else {
                "search=yes"
            }];
            match cfg.reserve_ai_input {
                Some(true) => signal.push("ai-input=no"),
                Some(false) => signal.push("ai-input=yes"),
                None => {}
            }
            if cfg.reserve_training {
                signal.push("ai-train=no");
            }
            signals.push(format!("Content-Signal: {}", signal.join(", ")));
        }
        Self {
            traps: traps.iter().map(|t| format!("Disallow: {t}")).collect(),
            signals,
        }
    }

    /// Whether a site line is superseded by Lenscap's own declaration of the same kind.
    fn replaces(&self, cfg: &ReservationConfig, line: &SiteLine<'_>) -> bool {
        match line.kind {
            Kind::ContentSignal => cfg.content_signal,
            // A path-scoped `Content-Usage: /blog/ train-ai=y` refines ours: keep it.
            Kind::ContentUsage => cfg.content_usage && !line.value.starts_with('/'),
            _ => false,
        }
    }
}

/// A group being assembled: agents plus lines, deduplicated.
#[derive(Debug, Default)]
struct Group {
    agents: Vec<String>,
    lines: Vec<String>,
    /// [`normalize`]d lines, for deduplication.
    seen: HashSet<String>,
    crawl_delay: Option<u32>,
}

impl Group {
    fn push(&mut self, line: impl Into<String>) {
        let line = line.into();
        if self.seen.insert(normalize(&line)) {
            self.lines.push(line);
        }
    }

    fn delay_at_least(&mut self, delay: Option<u32>) {
        self.crawl_delay = self.crawl_delay.max(delay);
    }

    fn push_site(&mut self, cfg: &ReservationConfig, decl: &Declarations, line: &SiteLine<'_>) {
        match line.kind {
            Kind::CrawlDelay => match line.value.parse::<f64>() {
                // Keep the slowest of the site's and Lenscap's delays, as one line.
                Ok(d) if d.is_finite() && d >= 0.0 => self.delay_at_least(Some(d.ceil() as u32)),
                _ => self.push(line.raw),
            },
            // Matches nothing (RFC 9309), but texting_robots reads it as "allow all", which
            // would beat our `Disallow: /` on a tie. A group left without rules gets one back.
            Kind::Disallow if line.value.is_empty() => {}
            _ if decl.replaces(cfg, line) => {}
            _ => self.push(line.raw),
        }
    }

    fn push_traps(&mut self, decl: &Declarations) {
        for trap in &decl.traps {
            self.push(trap.clone());
        }
    }

    fn finish(&mut self, decl: &Declarations) {
        self.push_traps(decl);
        if let Some(delay) = self.crawl_delay {
            self.push(format!("Crawl-delay: {delay}"));
        }
        for signal in &decl.signals {
            self.push(signal.clone());
        }
    }

    fn render(&self, out: &mut String) {
        for agent in &self.agents {
            let _ = writeln!(out, "User-agent: {agent}");
        }
        if self.lines.iter().all(|l| l.starts_with('#')) {
            // A group needs one rule to be a group for every parser; an empty Disallow allows all.
            out.push_str("Disallow:\n");
        }
        for line in &self.lines {
            out.push_str(line);
            out.push('\n');
        }
        out.push('\n');
    }
}

/// Comparison key for deduplication: `key:value`, key lower-cased, comment and spaces dropped.
fn normalize(line: &str) -> String {
    if line.starts_with('#') {
        return line.to_owned();
    }
    match line.split_once(':') {
        Some((k, v)) => format!(
            "{}:{}",
            k.trim().to_ascii_lowercase(),
            v.split('#').next().unwrap_or("").trim()
        ),
        None => line.to_owned(),
    }
}

fn scope_lines(scope: Disallow) -> Vec<String> {
    match scope {
        Disallow::Everything => vec!["Disallow: /".to_owned()],
        Disallow::Images => {
            let mut lines = Vec::with_capacity(IMAGE_EXTENSIONS.len() * 4);
            for ext in IMAGE_EXTENSIONS {
                // Paths match case-sensitively: name both spellings, and the query-string form.
                for ext in [ext.to_owned(), ext.to_ascii_uppercase()] {
                    lines.push(format!("Disallow: /*.{ext}$"));
                    lines.push(format!("Disallow: /*.{ext}?"));
                }
            }
            lines
        }
    }
}

/// Checks what the lead hands in: tokens and trap paths end up verbatim in robots.txt lines.
fn check_inputs(agents: &[RobotsAgent], traps: &[String]) -> Result<(), DocumentError> {
    for agent in agents {
        let t = &agent.token;
        if t.is_empty()
            || t == "*"
            || t.chars()
                .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '#' | ':'))
        {
            return Err(DocumentError::InvalidAgentToken { token: t.clone() });
        }
    }
    for trap in traps {
        if !trap.starts_with('/')
            || trap
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '#')
        {
            return Err(DocumentError::InvalidTrapPath { path: trap.clone() });
        }
    }
    Ok(())
}

// === render ===

/// Renders `/robots.txt`.
pub(crate) fn render(
    cfg: &ReservationConfig,
    agents: &[RobotsAgent],
    traps: &[String],
    site: Option<&str>,
) -> Result<String, DocumentError> {
    check_inputs(agents, traps)?;
    let decl = Declarations::new(cfg, traps);
    let site = site.map(parse_site).unwrap_or_default();

    // Every agent the site names, with its rules from every group that names it (RFC 9309 §2.2.1).
    let mut site_agents: Vec<SiteAgent<'_>> = Vec::new();
    for group in &site.groups {
        for &name in &group.agents {
            match site_agents
                .iter_mut()
                .find(|a| a.name.eq_ignore_ascii_case(name))
            {
                Some(known) => known.lines.extend_from_slice(&group.lines),
                None => site_agents.push(SiteAgent {
                    name,
                    lines: group.lines.clone(),
                }),
            }
        }
    }
    let site_star = take_agent(&mut site_agents, "*");

    // Lenscap's agents, deduplicated case-insensitively; the stricter scope wins.
    let mut ours: Vec<(&str, Disallow)> = Vec::new();
    for agent in agents {
        match ours
            .iter_mut()
            .find(|(t, _)| t.eq_ignore_ascii_case(&agent.token))
        {
            Some((_, scope)) => *scope = (*scope).min(agent.scope),
            None => ours.push((&agent.token, agent.scope)),
        }
    }

    // Agents with the same scope and the same site rules share a group.
    let mut planned: Vec<(Disallow, Vec<SiteLine<'_>>, Group)> = Vec::new();
    for (token, scope) in ours {
        let lines: Vec<SiteLine<'_>> = match take_agent(&mut site_agents, token) {
            Some(named) => named.lines,
            // `Disallow: /` already covers whatever `*` disallowed.
            None if scope == Disallow::Everything => Vec::new(),
            // The agent used to follow `*`: keep what `*` kept it off, not what `*` allowed,
            // so a broad `Allow` there cannot reopen the images we close.
            None => site_star
                .iter()
                .flat_map(|s| &s.lines)
                .filter(|l| matches!(l.kind, Kind::Disallow | Kind::CrawlDelay))
                .copied()
                .collect(),
        };
        let same = |(s, l, _): &&mut (Disallow, Vec<SiteLine<'_>>, Group)| {
            *s == scope
                && l.len() == lines.len()
                && l.iter().zip(&lines).all(|(a, b)| a.raw == b.raw)
        };
        match planned.iter_mut().find(same) {
            Some((_, _, group)) => group.agents.push(token.to_owned()),
            None => {
                let group = Group {
                    agents: vec![token.to_owned()],
                    ..Group::default()
                };
                planned.push((scope, lines, group));
            }
        }
    }

    let mut out = String::with_capacity(4096);
    let site_name = cfg.site_name.as_deref().map(comment_safe);
    let _ = writeln!(
        out,
        "# robots.txt for {}",
        site_name.as_deref().unwrap_or("this site")
    );
    if cfg.reserve_training {
        out.push_str(
            "# The site reserves its content, photos above all, against AI training and\n",
        );
        out.push_str("# text and data mining (TDMRep, Content-Usage, Content-Signal).\n");
    }
    if cfg.policy_page {
        let _ = writeln!(out, "# Policy: {}", comment_safe(&cfg.policy_path));
    }
    if let Some(contact) = &cfg.contact {
        let _ = writeln!(out, "# Contact: {}", comment_safe(contact));
    }
    out.push_str("# Generated by Lenscap.\n");
    if let Some(url) = &cfg.license_url {
        // RSL 1.0: the machine-readable licence terms, for every agent (outside any group).
        let _ = writeln!(out, "\nLicense: {url}");
    }
    if !site.preamble.is_empty() {
        out.push('\n');
    }
    for line in &site.preamble {
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');

    for (scope, site_lines, group) in &mut planned {
        for line in scope_lines(*scope) {
            group.push(line);
        }
        group.push_traps(&decl);
        if *scope == Disallow::Images {
            group.delay_at_least(cfg.crawl_delay);
        }
        for line in site_lines.iter() {
            group.push_site(cfg, &decl, line);
        }
        group.finish(&decl);
        group.render(&mut out);
    }

    let mut star = Group {
        agents: vec!["*".to_owned()],
        ..Group::default()
    };
    star.push_traps(&decl);
    star.delay_at_least(cfg.crawl_delay);
    for line in site_star.iter().flat_map(|s| &s.lines) {
        star.push_site(cfg, &decl, line);
    }
    star.finish(&decl);
    if !star.lines.is_empty() {
        star.render(&mut out);
    }

    // The site's other agents, one group per distinct rule set.
    let mut theirs: Vec<(Vec<SiteLine<'_>>, Group)> = Vec::new();
    for agent in site_agents {
        let same = |(l, _): &&mut (Vec<SiteLine<'_>>, Group)| {
            l.len() == agent.lines.len() && l.iter().zip(&agent.lines).all(|(a, b)| a.raw == b.raw)
        };
        match theirs.iter_mut().find(same) {
            Some((_, group)) => group.agents.push(agent.name.to_owned()),
            None => {
                let group = Group {
                    agents: vec![agent.name.to_owned()],
                    ..Group::default()
                };
                theirs.push((agent.lines, group));
            }
        }
    }
    if !theirs.is_empty() {
        out.push_str("# The site's own groups.\n");
    }
    for (lines, group) in &mut theirs {
        for line in lines.iter() {
            group.push_site(cfg, &decl, line);
        }
        group.finish(&decl);
        group.render(&mut out);
    }

    for sitemap in &site.sitemaps {
        let _ = writeln!(out, "Sitemap: {sitemap}");
    }
    while out.ends_with("\n\n") {
        out.pop();
    }

    if out.len() > MAX_ROBOTS_LEN {
        return Err(DocumentError::RobotsTooLarge {
            size: out.len(),
            limit: MAX_ROBOTS_LEN,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups(text: &str) -> Vec<(Vec<String>, Vec<String>)> {
        parse_site(text)
            .groups
            .into_iter()
            .map(|g| {
                (
                    g.agents.iter().map(|a| a.to_string()).collect(),
                    g.lines.iter().map(|l| l.raw.to_string()).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn parses_tolerantly() {
        let text = "\u{feff}# hello\r\nHost: example.com\r\nDisallow: /nobody\r\nuser-agent: A\r\n\r\n# between\r\nUSER-AGENT: B # note\r\ndisallow: /x # why\r\nFoo: bar\r\nSitemap: https://e.com/s.xml#frag\r\nuseragent: C\r\nallow: /\r\n";
        let file = parse_site(text);
        assert_eq!(
            file.preamble,
            [
                "# hello",
                "Host: example.com",
                "# ignored, outside any group: Disallow: /nobody"
            ]
        );
        assert_eq!(file.sitemaps, ["https://e.com/s.xml#frag"]);
        assert_eq!(
            groups(text),
            [
                (
                    vec!["A".into(), "B".into()],
                    vec![
                        "# between".into(),
                        "disallow: /x # why".into(),
                        "Foo: bar".into()
                    ]
                ),
                (vec!["C".into()], vec!["allow: /".into()]),
            ]
        );
        assert_eq!(parse_site(text).groups[0].lines[1].value, "/x");
    }

    #[test]
    fn old_mac_line_endings() {
        assert_eq!(groups("User-agent: A\rDisallow: /a\r").len(), 1);
    }

    #[test]
    fn rejects_tokens_that_would_break_lines() {
        for token in ["", "*", "Bad Bot", "Bad\nBot", "a#b", "a:b"] {
            let err = check_inputs(&[RobotsAgent::new(token, Disallow::Images)], &[]).unwrap_err();
            assert!(
                matches!(err, DocumentError::InvalidAgentToken { .. }),
                "{token:?}"
            );
        }
        for trap in ["trap", "/a b", "/a\n", "/a#"] {
            let err = check_inputs(&[], &[trap.to_owned()]).unwrap_err();
            assert!(
                matches!(err, DocumentError::InvalidTrapPath { .. }),
                "{trap:?}"
            );
        }
    }

    #[test]
    fn signals_follow_config() {
        let cfg = ReservationConfig {
            reserve_search: true,
            reserve_ai_input: Some(true),
            ..Default::default()
        };
        assert_eq!(
            Declarations::new(&cfg, &[]).signals,
            [
                "Content-Usage: train-ai=n, search=n",
                "Content-Signal: search=no, ai-input=no, ai-train=no"
            ]
        );
        let cfg = ReservationConfig {
            reserve_training: false,
            ..Default::default()
        };
        assert_eq!(
            Declarations::new(&cfg, &[]).signals,
            ["Content-Signal: search=yes"]
        );
    }
}
