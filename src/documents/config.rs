//! The `[reservation]` table: what the site reserves and which documents say so.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The site's reservation against AI/TDM use, and which declarations Lenscap publishes.
///
/// Every field has a default, so an empty `[reservation]` table is a complete, safe policy:
/// AI training reserved, search allowed, every document and signal on.
///
/// ```
/// let cfg: lenscap::documents::ReservationConfig = serde_json::from_str("{}").unwrap();
/// assert!(cfg.reserve_training && !cfg.reserve_search);
/// assert_eq!(cfg.policy_path, "/ai-policy");
/// assert!(cfg.validate().is_ok());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReservationConfig {
    /// The site's name, shown on the policy page and in document headers.
    pub site_name: Option<String>,
    /// Who to ask about the reservation or a photo: an email address, a `mailto:` URI or an
    /// http(s) URL.
    pub contact: Option<String>,
    /// The site's own licensing/TDM policy, an absolute http(s) URL: published as `tdm-policy`.
    pub policy_url: Option<String>,
    /// The site's machine-readable licence terms (RSL), an absolute http(s) URL: named by
    /// robots.txt's `License:` line, the policy page, and the `402` a `license` action answers.
    pub license_url: Option<String>,
    /// Where Lenscap serves its own policy page.
    pub policy_path: String,
    /// Reserve AI training and text-and-data mining (TDMRep, `train-ai=n`, `ai-train=no`, `noai`).
    pub reserve_training: bool,
    /// Also reserve search indexing (`search=n` / `search=no`). Off: search stays allowed.
    pub reserve_search: bool,
    /// The Content-Signal `ai-input` key (use as input to AI answers): `true` → `ai-input=no`,
    /// `false` → `ai-input=yes`, unset → no preference stated.
    pub reserve_ai_input: Option<bool>,
    /// `Crawl-delay` in seconds for the `*` group and the agents kept off images only.
    pub crawl_delay: Option<u32>,
    /// Answer `/robots.txt`.
    pub robots_txt: bool,
    /// Answer `/ai.txt`.
    pub ai_txt: bool,
    /// Answer `/.well-known/tdmrep.json`.
    pub tdmrep: bool,
    /// Answer the policy page at `policy_path`.
    pub policy_page: bool,
    /// Put `Content-Signal` lines (Cloudflare's content signals) in robots.txt.
    pub content_signal: bool,
    /// Put `Content-Usage` lines (IETF aipref) in robots.txt.
    pub content_usage: bool,
    /// Add opt-out `<meta>` tags to HTML pages.
    pub html_meta: bool,
    /// A short note from the site owner shown on the policy page (plain text, escaped), e.g.
    /// how to ask for a photo to be taken down.
    pub policy_note: Option<String>,
}

impl Default for ReservationConfig {
    fn default() -> Self {
        Self {
            site_name: None,
            contact: None,
            policy_url: None,
            license_url: None,
            policy_path: "/ai-policy".to_owned(),
            reserve_training: true,
            reserve_search: false,
            reserve_ai_input: None,
            crawl_delay: None,
            robots_txt: true,
            ai_txt: true,
            tdmrep: true,
            policy_page: true,
            content_signal: true,
            content_usage: true,
            html_meta: true,
            policy_note: None,
        }
    }
}

/// Longest accepted `crawl_delay`: one day.
const MAX_CRAWL_DELAY: u32 = 86_400;

/// Paths Lenscap answers itself, which the policy page must not shadow.
const RESERVED_PATHS: [&str; 3] = ["/robots.txt", "/ai.txt", "/.well-known/tdmrep.json"];

impl ReservationConfig {
    /// Checks every key; returns all problems found, each naming its key.
    pub fn validate(&self) -> Result<(), Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut fail =
            |key: &'static str, message: String| errors.push(ConfigError { key, message });

        for (key, value) in [
            ("site_name", &self.site_name),
            ("contact", &self.contact),
            ("policy_url", &self.policy_url),
            ("license_url", &self.license_url),
        ] {
            if let Some(v) = value {
                if v.trim().is_empty() {
                    fail(key, "must not be empty (leave the key out instead)".into());
                } else if v.chars().any(char::is_control) {
                    fail(
                        key,
                        "must not contain control characters or line breaks".into(),
                    );
                }
            }
        }
        if let Some(note) = &self.policy_note
            && note.chars().any(|c| c.is_control() && c != '\n')
        {
            fail("policy_note", "must not contain control characters".into());
        }
        if let Some(url) = &self.policy_url
            && !is_http_url(url)
        {
            fail(
                "policy_url",
                format!(
                    "{url:?} is not an absolute http(s) URL (e.g. \"https://example.com/licensing\")"
                ),
            );
        }
        if let Some(url) = &self.license_url
            && !is_http_url(url)
        {
            fail(
                "license_url",
                format!(
                    "{url:?} is not an absolute http(s) URL (e.g. \"https://example.com/license.xml\")"
                ),
            );
        }
        if let Some(contact) = &self.contact
            && !contact.trim().is_empty()
            && contact_link(contact).is_none()
        {
            fail(
                "contact",
                format!("{contact:?} is neither an email address nor an http(s) or mailto: URL"),
            );
        }
        let path = &self.policy_path;
        if !path.starts_with('/') {
            fail("policy_path", format!("{path:?} must start with '/'"));
        } else if path.len() == 1 {
            fail("policy_path", "must not be the site root \"/\"".into());
        } else if path
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '?' | '#'))
        {
            fail(
                "policy_path",
                format!("{path:?} must be a plain path: no spaces, '?' or '#'"),
            );
        } else if RESERVED_PATHS.contains(&path.as_str()) {
            fail(
                "policy_path",
                format!("{path:?} is already answered by Lenscap"),
            );
        }
        if let Some(delay) = self.crawl_delay
            && !(1..=MAX_CRAWL_DELAY).contains(&delay)
        {
            fail(
                "crawl_delay",
                format!("{delay} must be between 1 and {MAX_CRAWL_DELAY} seconds"),
            );
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// One problem in the `[reservation]` table.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("reservation.{key}: {message}")]
pub struct ConfigError {
    key: &'static str,
    message: String,
}

impl ConfigError {
    /// The offending key inside `[reservation]`, e.g. `"policy_url"`.
    pub fn key(&self) -> &'static str {
        self.key
    }
}

/// How the contact is linked: an `href` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ContactLink {
    /// `mailto:` + address.
    Email(String),
    /// An http(s) URL, as written.
    Url(String),
}

impl ContactLink {
    pub(crate) fn href(&self) -> String {
        match self {
            Self::Email(addr) => format!("mailto:{addr}"),
            Self::Url(url) => url.clone(),
        }
    }
}

impl fmt::Display for ContactLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Email(addr) | Self::Url(addr) => f.write_str(addr),
        }
    }
}

/// Reads `contact` as an email address or a URL; `None` when it is neither.
pub(crate) fn contact_link(contact: &str) -> Option<ContactLink> {
    let contact = contact.trim();
    if is_http_url(contact) {
        return Some(ContactLink::Url(contact.to_owned()));
    }
    let addr = contact
        .strip_prefix("mailto:")
        .or_else(|| contact.strip_prefix("MAILTO:"))
        .unwrap_or(contact);
    let (local, domain) = addr.split_once('@')?;
    let plain = |s: &str| {
        !s.is_empty()
            && !s.chars().any(|c| {
                c.is_whitespace() || c.is_control() || matches!(c, '@' | '<' | '>' | '"' | '/')
            })
    };
    (plain(local) && plain(domain) && domain.contains('.') && !domain.ends_with('.'))
        .then(|| ContactLink::Email(addr.to_owned()))
}

/// An absolute `http://` or `https://` URL with a host and no whitespace.
pub(crate) fn is_http_url(url: &str) -> bool {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    let rest = if lower.starts_with("https://") {
        &url[8..]
    } else if lower.starts_with("http://") {
        &url[7..]
    } else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    !host.is_empty()
        && !host.starts_with(':')
        && !url
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(is_http_url("https://example.com"));
        assert!(is_http_url("HTTP://example.com/a?b#c"));
        assert!(!is_http_url("ftp://example.com"));
        assert!(!is_http_url("/relative"));
        assert!(!is_http_url("https://"));
        assert!(!is_http_url("https:///path"));
        assert!(!is_http_url("https://exa mple.com"));
        assert!(!is_http_url("https://a.com/\"><script>"));
    }

    #[test]
    fn contacts() {
        assert_eq!(
            contact_link("pub@example.com"),
            Some(ContactLink::Email("pub@example.com".into()))
        );
        assert_eq!(
            contact_link("mailto:pub@example.com"),
            Some(ContactLink::Email("pub@example.com".into()))
        );
        assert_eq!(
            contact_link("https://example.com/contact"),
            Some(ContactLink::Url("https://example.com/contact".into()))
        );
        assert_eq!(contact_link("call us"), None);
        assert_eq!(contact_link("a@b"), None);
        assert_eq!(contact_link("<x>@evil.com"), None);
    }

    #[test]
    fn validate_names_keys() {
        let cfg = ReservationConfig {
            policy_url: Some("example.com/policy".into()),
            contact: Some("nobody".into()),
            policy_path: "/robots.txt".into(),
            crawl_delay: Some(0),
            site_name: Some("A\nUser-agent: *".into()),
            ..Default::default()
        };
        let errors = cfg.validate().unwrap_err();
        let keys: Vec<_> = errors.iter().map(ConfigError::key).collect();
        assert_eq!(
            keys,
            [
                "site_name",
                "policy_url",
                "contact",
                "policy_path",
                "crawl_delay"
            ]
        );
        assert!(
            errors[1]
                .to_string()
                .starts_with("reservation.policy_url: ")
        );
    }

    #[test]
    fn policy_path_rules() {
        for bad in ["ai-policy", "/", "/a b", "/a?x", "/.well-known/tdmrep.json"] {
            let cfg = ReservationConfig {
                policy_path: bad.into(),
                ..Default::default()
            };
            assert_eq!(cfg.validate().unwrap_err()[0].key(), "policy_path", "{bad}");
        }
    }
}
