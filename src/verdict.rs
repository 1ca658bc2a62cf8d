//! The verdict's vocabulary: what Lenscap can decide about a request ([`Action`]), the named
//! signals behind it ([`Reason`], [`Reasons`]) and the decision itself ([`Verdict`]). The
//! deciding is done by the decide stage (`src/decide.rs`); this module only names things, so every
//! stage can speak of reasons without importing the stage that weighs them.
//!
//! A [`Verdict`] carries the [`Action`] (allow, throttle, tarpit, block), the summed score of
//! the signals that fired, the client's [`Category`], the catalog agent if one matched, and the
//! [`Reasons`] — a bit set, so building a verdict never allocates.
//!
//! ```
//! use lenscap::{Action, Reason, Reasons};
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
    /// Answer `402 Payment Required` with the site's licence terms (a verified crawler that
    /// accepts the price is let through instead, its verdict turned to `allow`).
    License,
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
            Action::License => "license",
            Action::Block => "block",
        }
    }

    /// Whether the layer answers the request itself instead of passing it on (`license`,
    /// `block`): such a request is not charged to quotas.
    pub fn refuses(self) -> bool {
        self >= Action::License
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
    /// Behaviour: the last page navigation came faster than a person pages (`[limits]
    /// page_pace`); it earned no image credit.
    FastNavigation = "fast-navigation",
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
    /// A valid Web Bot Auth signature from a directory the site accepts.
    SignedAgent = "signed-agent",
    /// A User-Agent naming an agent known to sign, without a valid signature: a spoofer.
    UnsignedAgent = "unsigned-agent",
    /// Signature headers that cannot be read as a Web Bot Auth signature.
    SignatureMalformed = "signature-malformed",
    /// A signature outside its validity window (expired, or created in the future).
    SignatureExpired = "signature-expired",
    /// A signature from a key directory the site does not accept (unlisted, or not https).
    SignatureUnlisted = "signature-unlisted",
    /// A signature by a key its directory does not hold (or whose directory is not fetched).
    SignatureUnknownKey = "signature-unknown-key",
    /// A signature that does not verify against the request.
    SignatureInvalid = "signature-invalid",
    /// A signature (nonce) seen before: a replay.
    SignatureReplayed = "signature-replayed",
    /// A verified crawler under `license` that accepted the price: let through, charged.
    LicensePaid = "license-paid",
    /// A browser User-Agent over a TLS ClientHello or HTTP/2 opening that browser never sends
    /// (Chrome's name over OpenSSL's or Go's handshake): read when Lenscap terminates TLS.
    TransportMismatch = "transport-mismatch",
    /// From a published cloud or hosting range (VPNs live there too: weak alone).
    Datacenter = "datacenter",
    /// Behaviour: images without page views, from a cloud or hosting address.
    DatacenterImages = "datacenter-images",
    /// Behaviour: images of pages that carry the render proof, from a client that never
    /// fetched it (a script that reads `<img>` tags and nothing else). Lowers credit only.
    NoRender = "no-render",
}

/// A set of [`Reason`]s.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Reasons(u64);

impl Reasons {
    /// Adds a reason.
    pub fn insert(&mut self, reason: Reason) {
        self.0 |= 1 << reason as u8;
    }

    /// Takes a reason out.
    pub fn remove(&mut self, reason: Reason) {
        self.0 &= !(1 << reason as u8);
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
