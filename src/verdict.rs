//! Verdicts: what Lenscap decided about one request, and why.
//!
//! A [`Verdict`] carries the [`Action`] (allow, throttle, tarpit, block), the summed score of
//! the signals that fired, the client's [`Category`], the catalog agent if one matched, and the
//! [`Reasons`] — a bit set, so building a verdict never allocates.
//!
//! ```
//! use lenscap::verdict::{Action, Reason, Reasons};
//!
//! let mut reasons = Reasons::default();
//! reasons.insert(Reason::NoAccept);
//! reasons.insert(Reason::NoAcceptLanguage);
//! assert_eq!(reasons.names().collect::<Vec<_>>(), ["no-accept", "no-accept-language"]);
//! assert!(Action::Block > Action::Throttle);
//! ```

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::catalog::Category;
use crate::client::ClientId;
use crate::policy::Policy;
use crate::policy::config::VerdictConfig;
use crate::signals::{RequestView, read_user_agent, shape, user_agent_of};

/// What Lenscap does with a request.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Pass it on.
    #[default]
    Allow,
    /// Pass it on under the tighter quotas for suspects.
    Throttle,
    /// Pass it on after a delay.
    Tarpit,
    /// Answer it with the block status.
    Block,
}

impl Action {
    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Throttle => "throttle",
            Action::Tarpit => "tarpit",
            Action::Block => "block",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

macro_rules! reasons {
    ($($(#[$doc:meta])* $variant:ident = $name:literal,)*) => {
        /// One named signal that contributed to a verdict.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum Reason {
            $($(#[$doc])* $variant,)*
        }

        impl Reason {
            /// Every reason, in bit order.
            pub const ALL: &'static [Reason] = &[$(Reason::$variant,)*];

            /// The kebab-case name used in config, logs and JSON.
            pub fn name(self) -> &'static str {
                match self {
                    $(Reason::$variant => $name,)*
                }
            }

            /// The reason called `name`.
            pub fn from_name(name: &str) -> Option<Reason> {
                match name {
                    $($name => Some(Reason::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

reasons! {
    /// No User-Agent header at all.
    NoUserAgent = "no-user-agent",
    /// A User-Agent that is neither a browser nor in the catalog.
    NonBrowserUserAgent = "non-browser-user-agent",
    /// A User-Agent with crawler words or a bot URL in it.
    BotLikeUserAgent = "bot-like-user-agent",
    /// No Accept header (every browser sends one).
    NoAccept = "no-accept",
    /// No Accept-Language header (every browser sends one).
    NoAcceptLanguage = "no-accept-language",
    /// No Accept-Encoding header.
    NoAcceptEncoding = "no-accept-encoding",
    /// `Accept-Encoding: identity`, typical of download tools.
    IdentityEncoding = "identity-encoding",
    /// An HTTP/1.0 request.
    Http10 = "http-1-0",
    /// `Connection: close` on HTTP/1.1, which browsers do not send.
    ConnectionClose = "connection-close",
    /// A browser version years out of date, common in scraper defaults.
    OutdatedBrowser = "outdated-browser",
    /// A Chromium User-Agent without `sec-ch-ua` client hints on a secure origin.
    MissingClientHints = "missing-client-hints",
    /// An image request from a modern browser User-Agent without fetch metadata on a secure origin.
    MissingFetchMetadata = "missing-fetch-metadata",
    /// The User-Agent matched a catalog agent.
    KnownAgent = "known-agent",
    /// A catalog agent with published ranges, from inside them.
    VerifiedAgent = "verified-agent",
    /// A catalog agent with published ranges, from outside them: a spoofer.
    SpoofedAgent = "spoofed-agent",
    /// A visitor (known by its cookie) whose address keeps changing: one client rotating addresses.
    AddressChurn = "address-churn",
    /// Behaviour: images requested without a Referer.
    NoRefererImages = "no-referer-images",
    /// Behaviour: images whose Referer is not a page this client viewed recently.
    UnviewedReferer = "referer-not-viewed",
    /// Behaviour: images on a secure origin without `Sec-Fetch-Dest: image`.
    MissingFetchDestImages = "images-without-fetch-dest",
    /// Behaviour: images and no page view in the window.
    ImagesWithoutPages = "images-without-pages",
    /// Behaviour: more distinct images in the window than a person looks at.
    ManyDistinctImages = "many-distinct-images",
    /// Behaviour: names or parameters requested in sequence (`IMG_0001`, `IMG_0002`, …).
    SequentialEnumeration = "sequential-enumeration",
    /// Behaviour: only original or full-size variants requested.
    OriginalsOnly = "originals-only",
    /// Behaviour: requests at a metronome's rhythm.
    RegularTiming = "machine-regular-timing",
    /// Behaviour: robots.txt fetched, then a path it disallows requested.
    RobotsIgnored = "robots-ignored",
    /// Behaviour: a trap path was fetched (the mark lasts `traps.mark_for`).
    TrapHit = "trap-hit",
    /// Over a rate limit.
    OverQuota = "over-quota",
}

/// A set of [`Reason`]s.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Reasons(u64);

impl Reasons {
    /// Adds a reason.
    pub fn insert(&mut self, reason: Reason) {
        self.0 |= 1 << reason as u8;
    }

    /// Whether `reason` is in the set.
    pub fn contains(&self, reason: Reason) -> bool {
        self.0 & (1 << reason as u8) != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }

    /// The reasons, in bit order.
    pub fn iter(&self) -> impl Iterator<Item = Reason> + '_ {
        // Visits the set bits only: most sets are empty or hold one or two reasons.
        let mut bits = self.0;
        std::iter::from_fn(move || {
            if bits == 0 {
                return None;
            }
            let at = bits.trailing_zeros();
            bits &= bits - 1;
            Some(Reason::ALL[at as usize])
        })
    }

    /// Both sets together.
    pub fn union(self, other: Reasons) -> Reasons {
        Reasons(self.0 | other.0)
    }

    /// The reasons' names, in bit order.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.iter().map(Reason::name)
    }
}

impl fmt::Debug for Reasons {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl fmt::Display for Reasons {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, name) in self.names().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(name)?;
        }
        Ok(())
    }
}

/// The decision about one request. Inserted into the request's extensions for the inner
/// service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// What is done with the request (before `report-only` is applied).
    pub action: Action,
    /// Sum of the weights of the signals that fired.
    pub score: u32,
    /// What the client is.
    pub category: Category,
    /// The catalog agent, if the User-Agent matched one.
    pub agent: Option<Arc<str>>,
    /// The signals that fired.
    pub reasons: Reasons,
}

impl Verdict {
    /// The verdict as one JSON object:
    /// `{"action":"block","score":40,"category":"ai-training","agent":"GPTBot","reasons":[…]}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "action": self.action.as_str(),
            "score": self.score,
            "category": self.category.as_str(),
            "agent": self.agent.as_deref(),
            "reasons": self.reasons.names().collect::<Vec<_>>(),
        })
    }
}

impl Verdict {
    /// Adds behaviour signals: their weights join the score and the score thresholds apply
    /// again, to every client but verified crawlers (which are governed by their category).
    pub(crate) fn add_signals(&mut self, policy: &Policy, extra: Reasons) {
        if extra.is_empty() {
            return;
        }
        for reason in extra.iter() {
            if !self.reasons.contains(reason) {
                self.score += policy.weight(reason);
            }
        }
        self.reasons = self.reasons.union(extra);
        if !self.reasons.contains(Reason::VerifiedAgent) {
            self.action = self.action.max(score_action(&policy.verdict, self.score));
        }
    }
}

/// Decides one request: catalog match, verified ranges, header shape, category action and
/// score thresholds. Pure: the same policy and request always give the same verdict.
///
/// A catalogued agent gets its category's action (or its per-agent override): honest crawlers
/// are governed by policy, not by how their headers look. A claim of an agent with published
/// ranges from outside them adds `spoofed-agent` and at least the `spoofed` action. Everyone
/// else — browsers and unknown clients — gets the stricter of its category's action and the
/// action its score reaches.
pub fn decide(policy: &Policy, view: &RequestView<'_>, client: ClientId) -> Verdict {
    let ua = user_agent_of(view.headers);
    let reading = policy
        .user_agents
        .get_or_read(ua, |ua| read_user_agent(&policy.catalog, ua));
    let agent = reading.agent.map(|i| i as usize);
    let mut reasons = shape(view, ua.is_empty(), agent.is_some(), &reading);
    let (category, agent_name, mut action) = match agent {
        Some(index) => {
            let agent = &policy.catalog.agents()[index];
            reasons.insert(Reason::KnownAgent);
            let table = policy
                .agent_actions
                .get(index)
                .copied()
                .flatten()
                .unwrap_or_else(|| policy.actions.get(agent.category()));
            let mut action = table.for_request(view.image);
            if let Some(ranges) = policy.range_table(index) {
                if client != ClientId::UNKNOWN && ranges.contains(client.ip()) {
                    reasons.insert(Reason::VerifiedAgent);
                } else {
                    reasons.insert(Reason::SpoofedAgent);
                    action = action.max(policy.verdict.spoofed);
                }
            }
            (agent.category(), Some(agent.shared_name().clone()), action)
        }
        None => {
            let category = if reasons.contains(Reason::NoUserAgent)
                || reasons.contains(Reason::NonBrowserUserAgent)
            {
                Category::Unknown
            } else {
                Category::Browser
            };
            (
                category,
                None,
                policy.actions.get(category).for_request(view.image),
            )
        }
    };
    let score: u32 = reasons.iter().map(|r| policy.weight(r)).sum();
    if agent.is_none() {
        action = action.max(score_action(&policy.verdict, score));
    }
    Verdict {
        action,
        score,
        category,
        agent: agent_name,
        reasons,
    }
}

fn score_action(thresholds: &VerdictConfig, score: u32) -> Action {
    let reached = |at: u32| at > 0 && score >= at;
    if reached(thresholds.block_at) {
        Action::Block
    } else if reached(thresholds.tarpit_at) {
        Action::Tarpit
    } else if reached(thresholds.throttle_at) {
        Action::Throttle
    } else {
        Action::Allow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_names_round_trip_and_fit_the_bit_set() {
        assert!(Reason::ALL.len() <= 64);
        for r in Reason::ALL {
            assert_eq!(Reason::from_name(r.name()), Some(*r));
        }
    }

    #[test]
    fn json_shape() {
        let mut reasons = Reasons::default();
        reasons.insert(Reason::KnownAgent);
        let v = Verdict {
            action: Action::Block,
            score: 0,
            category: Category::AiTraining,
            agent: Some(Arc::from("GPTBot")),
            reasons,
        };
        assert_eq!(
            v.to_json().to_string(),
            r#"{"action":"block","score":0,"category":"ai-training","agent":"GPTBot","reasons":["known-agent"]}"#
        );
    }
}
