//! Opt-out response headers: `X-Robots-Tag: noai, noimageai`, TDMRep's `tdm-reservation` and
//! `tdm-policy`, and the IETF aipref `Content-Usage: train-ai=n`.
//!
//! `X-Robots-Tag` goes on a line of its own: img2dataset splits each line at the first `:` and
//! reads the left part as a bot name, so unscoped directives must never share a line with a
//! scoped one. Headers the inner service already sent are kept and never duplicated.
//!
//! ```
//! use http::HeaderMap;
//! use lenscap::tag::headers::{OptOutHeaders, OptOutHeadersConfig};
//!
//! let tags = OptOutHeaders::new(&OptOutHeadersConfig::default(), Some("https://pub.example/ai-policy")).unwrap();
//! let mut headers = HeaderMap::new();
//! headers.append("x-robots-tag", "googlebot: noindex".parse().unwrap());
//! tags.apply(&mut headers);
//! let lines: Vec<_> = headers.get_all("x-robots-tag").iter().collect();
//! assert_eq!(lines, ["googlebot: noindex", "noai, noimageai"]);
//! assert_eq!(headers["tdm-reservation"], "1");
//! assert_eq!(headers["tdm-policy"], "https://pub.example/ai-policy");
//! assert_eq!(headers["content-usage"], "train-ai=n");
//! ```

use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

/// `[headers]`: which opt-out headers image (and HTML) responses carry. All on by default.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptOutHeadersConfig {
    /// `X-Robots-Tag: noai, noimageai`.
    pub x_robots_tag: bool,
    /// `tdm-reservation: 1`.
    pub tdm_reservation: bool,
    /// `tdm-policy: <reservation.policy_url>` (only when a policy URL is set).
    pub tdm_policy: bool,
    /// `Content-Usage: train-ai=n`.
    pub content_usage: bool,
}

impl Default for OptOutHeadersConfig {
    fn default() -> Self {
        OptOutHeadersConfig {
            x_robots_tag: true,
            tdm_reservation: true,
            tdm_policy: true,
            content_usage: true,
        }
    }
}

const X_ROBOTS_TAG: HeaderName = HeaderName::from_static("x-robots-tag");
const TDM_RESERVATION: HeaderName = HeaderName::from_static("tdm-reservation");
const TDM_POLICY: HeaderName = HeaderName::from_static("tdm-policy");
const CONTENT_USAGE: HeaderName = HeaderName::from_static("content-usage");

/// The compiled header set, ready to copy onto responses.
#[derive(Clone, Debug, Default)]
pub struct OptOutHeaders {
    x_robots_tag: bool,
    tdm_reservation: bool,
    tdm_policy: Option<HeaderValue>,
    content_usage: bool,
    /// The lines to add to a response that has none of them yet, in order.
    lines: Vec<(HeaderName, HeaderValue)>,
}

/// A `tdm-policy` URL that cannot be a header value.
#[derive(Debug, thiserror::Error)]
#[error("reservation.policy_url {0:?} cannot be sent as a tdm-policy header")]
pub struct BadPolicyUrl(String);

impl OptOutHeaders {
    /// Compiles the header set; `policy_url` is the TDM policy URL, if the site has one.
    pub fn new(
        config: &OptOutHeadersConfig,
        policy_url: Option<&str>,
    ) -> Result<Self, BadPolicyUrl> {
        let tdm_policy = match policy_url.filter(|_| config.tdm_policy) {
            Some(url) => {
                Some(HeaderValue::from_str(url).map_err(|_| BadPolicyUrl(url.to_owned()))?)
            }
            None => None,
        };
        let lines = [
            config
                .x_robots_tag
                .then(|| (X_ROBOTS_TAG, HeaderValue::from_static("noai, noimageai"))),
            config
                .tdm_reservation
                .then(|| (TDM_RESERVATION, HeaderValue::from_static("1"))),
            tdm_policy.clone().map(|url| (TDM_POLICY, url)),
            config
                .content_usage
                .then(|| (CONTENT_USAGE, HeaderValue::from_static("train-ai=n"))),
        ]
        .into_iter()
        .flatten()
        .collect();
        Ok(OptOutHeaders {
            x_robots_tag: config.x_robots_tag,
            tdm_reservation: config.tdm_reservation,
            tdm_policy,
            content_usage: config.content_usage,
            lines,
        })
    }

    /// Adds the headers that are not already there.
    pub fn apply(&self, headers: &mut HeaderMap) {
        // The usual response carries none of them: a walk over its few names, then the
        // prebuilt lines, instead of a lookup by name of each.
        if !headers.keys().any(is_optout_name) {
            headers.reserve(self.lines.len());
            for (name, value) in &self.lines {
                headers.append(name.clone(), value.clone());
            }
            return;
        }
        self.apply_missing(headers);
    }

    /// [`apply`](Self::apply) on a response that already carries some of the headers.
    fn apply_missing(&self, headers: &mut HeaderMap) {
        if self.x_robots_tag && !has_unscoped_noai(headers) {
            headers.append(X_ROBOTS_TAG, HeaderValue::from_static("noai, noimageai"));
        }
        if self.tdm_reservation && !headers.contains_key(TDM_RESERVATION) {
            headers.insert(TDM_RESERVATION, HeaderValue::from_static("1"));
        }
        if let Some(url) = &self.tdm_policy
            && !headers.contains_key(TDM_POLICY)
        {
            headers.insert(TDM_POLICY, url.clone());
        }
        if self.content_usage && !headers.contains_key(CONTENT_USAGE) {
            headers.insert(CONTENT_USAGE, HeaderValue::from_static("train-ai=n"));
        }
    }
}

/// One of the names [`OptOutHeaders`] adds.
fn is_optout_name(name: &HeaderName) -> bool {
    static NAMES: [HeaderName; 4] = [X_ROBOTS_TAG, TDM_RESERVATION, TDM_POLICY, CONTENT_USAGE];
    NAMES.contains(name)
}

/// Whether some X-Robots-Tag line already carries unscoped `noai` and `noimageai`.
fn has_unscoped_noai(headers: &HeaderMap) -> bool {
    headers.get_all(X_ROBOTS_TAG).iter().any(|line| {
        let Ok(line) = line.to_str() else {
            return false;
        };
        // A scoped line starts with `botname:`; its directives are not for everyone.
        let scoped = line
            .split_once(':')
            .is_some_and(|(left, _)| !left.contains(','));
        if scoped {
            return false;
        }
        let mut noai = false;
        let mut noimageai = false;
        for directive in line.split(',').map(str::trim) {
            noai |= directive == "noai";
            noimageai |= directive == "noimageai";
        }
        noai && noimageai
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(
        existing: &[(&str, &str)],
        config: OptOutHeadersConfig,
        url: Option<&str>,
    ) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (k, v) in existing {
            headers.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        OptOutHeaders::new(&config, url)
            .unwrap()
            .apply(&mut headers);
        headers
    }

    #[test]
    fn existing_headers_are_kept_and_not_duplicated() {
        let h = apply(
            &[
                ("x-robots-tag", "noai, noimageai"),
                ("tdm-reservation", "0"),
                ("content-usage", "train-ai=y"),
            ],
            OptOutHeadersConfig::default(),
            None,
        );
        assert_eq!(h.get_all("x-robots-tag").iter().count(), 1);
        assert_eq!(h["tdm-reservation"], "0");
        assert_eq!(h["content-usage"], "train-ai=y");
        assert!(!h.contains_key("tdm-policy"));
    }

    #[test]
    fn scoped_lines_do_not_count_and_stay_separate() {
        let h = apply(
            &[("x-robots-tag", "otherbot: noai, noimageai")],
            OptOutHeadersConfig::default(),
            None,
        );
        let lines: Vec<_> = h.get_all("x-robots-tag").iter().collect();
        assert_eq!(lines, ["otherbot: noai, noimageai", "noai, noimageai"]);
    }

    #[test]
    fn each_header_can_be_turned_off() {
        let config = OptOutHeadersConfig {
            x_robots_tag: false,
            tdm_reservation: false,
            tdm_policy: false,
            content_usage: false,
        };
        assert!(apply(&[], config, Some("https://x.example/p")).is_empty());
    }

    #[test]
    fn policy_urls_that_are_not_header_values_are_errors() {
        assert!(
            OptOutHeaders::new(
                &OptOutHeadersConfig::default(),
                Some("https://x.example/\n")
            )
            .is_err()
        );
    }
}
