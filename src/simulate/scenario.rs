//! Scenarios: a mix of profiles, the run's bounds and the thresholds a pipeline gates on, as
//! TOML (`config/scenarios/*.toml`).
//!
//! Every table denies unknown keys; errors name the file, the key and its line.
//!
//! ```
//! use lenscap::simulate::{ProfileKind, Scenario};
//!
//! let scenario = Scenario::from_toml_str(
//!     "duration = \"5s\"\n[[profile]]\nname = \"pub-wifi\"\nsessions = 12\nthink = \"1s..3s\"\n",
//!     "example.toml",
//! ).unwrap();
//! assert_eq!(scenario.profiles[0].kind, ProfileKind::PubWifi);
//! assert_eq!(scenario.profiles[0].sessions, 12);
//!
//! let error = Scenario::from_toml_str("[[profile]]\nname = \"human\"\nsesions = 3\n", "typo.toml").unwrap_err();
//! assert!(error.to_string().contains("line 3") && error.to_string().contains("sesions"));
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde_spanned::Spanned;

use super::profile::{ProfileKind, ProfileSettings, Rotation};
use crate::settings::{ConfigError, parse_duration};

/// The scenarios shipped in `config/scenarios/`, by name.
pub const BUILTIN_SCENARIOS: &[(&str, &str)] = &[
    (
        "default",
        include_str!("../../config/scenarios/default.toml"),
    ),
    (
        "pub-gallery",
        include_str!("../../config/scenarios/pub-gallery.toml"),
    ),
    ("flood", include_str!("../../config/scenarios/flood.toml")),
];

/// Addresses one wide-rotating profile may use at most (each profile gets its own block of
/// 10.0.0.0/8).
pub const MAX_ROTATING_ADDRESSES: u32 = 1 << 20;

/// A compiled scenario: bounds, profiles with their settings, thresholds.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// The file or builtin name it came from.
    pub name: String,
    /// One line saying what it plays.
    pub description: String,
    /// The run stops after this long.
    pub duration: Duration,
    /// The run sends at most this many requests.
    pub max_requests: u64,
    /// Requests in flight at once across every session.
    pub concurrency: usize,
    /// One request (headers and body) may take this long.
    pub request_timeout: Duration,
    /// Where discovery starts.
    pub start: String,
    /// Pages the survey visits at most.
    pub max_pages: usize,
    /// Send each session's address as `X-Forwarded-For`.
    pub forward_addresses: bool,
    /// The `Host` header to send instead of the target's authority.
    pub host: Option<String>,
    /// `X-Forwarded-Proto` to send (`https` plays a TLS-terminating proxy).
    pub forwarded_proto: Option<String>,
    /// Statuses that count as a block.
    pub blocked_statuses: Vec<u16>,
    /// Statuses that count as throttling.
    pub throttled_statuses: Vec<u16>,
    /// Seeds think times and link choices.
    pub seed: u64,
    /// The profiles, in the order written.
    pub profiles: Vec<ProfileSettings>,
    /// What makes the run fail.
    pub thresholds: Thresholds,
}

/// `[thresholds]`: a run that breaks one exits non-zero.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Thresholds {
    /// Human sessions (human, pub-wifi) that may be hindered: refused, timed out or missing
    /// an image they asked for.
    pub max_humans_hindered: Option<u64>,
    /// Images any one scraper profile may obtain.
    pub max_scraper_images: Option<u64>,
    /// Detection precision at least (stopped scrapers / all sessions stopped or hindered).
    pub min_precision: Option<f64>,
    /// Detection recall at least (stopped scraper sessions / scraper sessions).
    pub min_recall: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    description: Option<String>,
    duration: Option<Spanned<String>>,
    max_requests: Option<Spanned<u64>>,
    concurrency: Option<Spanned<usize>>,
    request_timeout: Option<Spanned<String>>,
    start: Option<Spanned<String>>,
    max_pages: Option<usize>,
    forward_addresses: Option<bool>,
    host: Option<String>,
    forwarded_proto: Option<Spanned<String>>,
    blocked_statuses: Option<Vec<Spanned<u16>>>,
    throttled_statuses: Option<Vec<Spanned<u16>>>,
    seed: Option<u64>,
    #[serde(default)]
    profile: Vec<ProfileEntry>,
    thresholds: Option<ThresholdsFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileEntry {
    name: Spanned<String>,
    sessions: Option<u32>,
    concurrency: Option<Spanned<usize>>,
    pages: Option<usize>,
    think: Option<Spanned<String>>,
    delay: Option<Spanned<String>>,
    max_requests: Option<u64>,
    rotate: Option<Spanned<String>>,
    addresses: Option<Spanned<u32>>,
    user_agent: Option<Spanned<String>>,
    headers: Option<BTreeMap<Spanned<String>, Spanned<String>>>,
    obey_robots: Option<bool>,
    fetch_robots: Option<bool>,
    honor_noai: Option<bool>,
    repeat: Option<bool>,
    give_up_after: Option<u32>,
    max_images: Option<u64>,
    max_share: Option<Spanned<f64>>,
    share_min_pages: Option<u64>,
    expect_stopped: Option<bool>,
    /// Signing profiles: the loopback address their key directory is served on.
    key_directory: Option<std::net::SocketAddr>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ThresholdsFile {
    max_humans_hindered: Option<u64>,
    max_scraper_images: Option<u64>,
    min_precision: Option<Spanned<f64>>,
    min_recall: Option<Spanned<f64>>,
}

impl Scenario {
    /// A builtin scenario by name (`default`, `pub-gallery`, `flood`).
    pub fn builtin(name: &str) -> Option<Result<Scenario, ConfigError>> {
        BUILTIN_SCENARIOS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(n, text)| Scenario::from_toml_str(text, n))
    }

    /// Reads and compiles a scenario file.
    pub fn from_file(path: &Path) -> Result<Scenario, ConfigError> {
        let text = crate::settings::read_file(path)?;
        Scenario::from_toml_str(&text, &path.display().to_string())
    }

    /// Compiles scenario text; `source_name` names it in errors and reports.
    pub fn from_toml_str(text: &str, source_name: &str) -> Result<Scenario, ConfigError> {
        let file: ScenarioFile =
            toml::from_str(text).map_err(|error| ConfigError::toml(source_name, text, &error))?;
        let invalid =
            |span: std::ops::Range<usize>, key: &str, message: String| ConfigError::Invalid {
                source_name: source_name.to_owned(),
                message: format!("line {}: `{key}`: {message}", line_of(text, span.start)),
            };
        let duration_key = |value: &Option<Spanned<String>>, key: &str, default: Duration| {
            value.as_ref().map_or(Ok(default), |v| {
                parse_duration(v.get_ref()).ok_or_else(|| {
                    invalid(
                        v.span(),
                        key,
                        format!("{:?} is not a duration like 30s, 250ms, 2m", v.get_ref()),
                    )
                })
            })
        };

        let duration = duration_key(&file.duration, "duration", Duration::from_secs(30))?;
        if duration.is_zero() || duration > Duration::from_secs(24 * 3600) {
            let span = file.duration.as_ref().map_or(0..0, |d| d.span());
            return Err(invalid(
                span,
                "duration",
                "must be more than 0 and at most 24h".into(),
            ));
        }
        let request_timeout = duration_key(
            &file.request_timeout,
            "request_timeout",
            Duration::from_secs(10),
        )?;
        let max_requests = match &file.max_requests {
            Some(v) if *v.get_ref() == 0 => {
                return Err(invalid(
                    v.span(),
                    "max_requests",
                    "must be at least 1: every run is bounded".into(),
                ));
            }
            Some(v) => *v.get_ref(),
            None => 100_000,
        };
        let concurrency = match &file.concurrency {
            Some(v) if *v.get_ref() == 0 || *v.get_ref() > 100_000 => {
                return Err(invalid(
                    v.span(),
                    "concurrency",
                    "must be between 1 and 100000".into(),
                ));
            }
            Some(v) => *v.get_ref(),
            None => 64,
        };
        let start = match &file.start {
            Some(v) if !v.get_ref().starts_with('/') => {
                return Err(invalid(
                    v.span(),
                    "start",
                    "must be a path starting with /".into(),
                ));
            }
            Some(v) => v.get_ref().clone(),
            None => "/".into(),
        };
        let forwarded_proto = match &file.forwarded_proto {
            Some(v) if !matches!(v.get_ref().as_str(), "http" | "https") => {
                return Err(invalid(
                    v.span(),
                    "forwarded_proto",
                    format!("{:?}: expected \"http\" or \"https\"", v.get_ref()),
                ));
            }
            v => v.as_ref().map(|v| v.get_ref().clone()),
        };
        let statuses = |list: &Option<Vec<Spanned<u16>>>, key: &str, default: &[u16]| {
            let Some(list) = list else {
                return Ok(default.to_vec());
            };
            list.iter()
                .map(|s| {
                    if (100..=599).contains(s.get_ref()) {
                        Ok(*s.get_ref())
                    } else {
                        Err(invalid(
                            s.span(),
                            key,
                            format!("{} is not an HTTP status", s.get_ref()),
                        ))
                    }
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let blocked_statuses = statuses(
            &file.blocked_statuses,
            "blocked_statuses",
            &[401, 402, 403, 451],
        )?;
        let throttled_statuses =
            statuses(&file.throttled_statuses, "throttled_statuses", &[429, 503])?;

        let mut profiles: Vec<ProfileSettings> = Vec::new();
        for entry in &file.profile {
            let kind: ProfileKind =
                entry
                    .name
                    .get_ref()
                    .parse()
                    .map_err(|e: super::profile::UnknownProfile| {
                        invalid(entry.name.span(), "profile.name", e.to_string())
                    })?;
            if profiles.iter().any(|p| p.kind == kind) {
                return Err(invalid(
                    entry.name.span(),
                    "profile.name",
                    format!("profile {kind} is listed twice"),
                ));
            }
            let mut settings = kind.defaults();
            if let Some(v) = entry.sessions {
                settings.sessions = v;
            }
            if let Some(v) = &entry.concurrency {
                if *v.get_ref() == 0 {
                    return Err(invalid(
                        v.span(),
                        "profile.concurrency",
                        "must be at least 1".into(),
                    ));
                }
                settings.concurrency = *v.get_ref();
            }
            if let Some(v) = entry.pages {
                settings.pages = v;
            }
            if let Some(v) = &entry.think {
                settings.think = parse_range(v.get_ref()).ok_or_else(|| {
                    invalid(
                        v.span(),
                        "profile.think",
                        format!("{:?} is not a duration or a range like 2s..8s", v.get_ref()),
                    )
                })?;
            }
            if let Some(v) = &entry.delay {
                settings.delay = parse_duration(v.get_ref()).ok_or_else(|| {
                    invalid(
                        v.span(),
                        "profile.delay",
                        format!("{:?} is not a duration like 250ms", v.get_ref()),
                    )
                })?;
            }
            if let Some(v) = entry.max_requests {
                settings.max_requests = v;
            }
            if let Some(v) = &entry.rotate {
                settings.rotate = Rotation::parse(v.get_ref()).ok_or_else(|| {
                    invalid(
                        v.span(),
                        "profile.rotate",
                        format!(
                            "{:?}: expected \"session\", \"shared\", \"subnet\", \"subnets\" or \"wide\"",
                            v.get_ref()
                        ),
                    )
                })?;
            }
            if let Some(v) = &entry.addresses {
                if *v.get_ref() == 0 || *v.get_ref() > MAX_ROTATING_ADDRESSES {
                    return Err(invalid(
                        v.span(),
                        "profile.addresses",
                        format!("must be between 1 and {MAX_ROTATING_ADDRESSES}"),
                    ));
                }
                settings.addresses = *v.get_ref();
            }
            if let Some(v) = &entry.user_agent {
                if http::HeaderValue::from_str(v.get_ref()).is_err() {
                    return Err(invalid(
                        v.span(),
                        "profile.user_agent",
                        "not a valid header value".into(),
                    ));
                }
                settings.user_agent = Some(v.get_ref().clone());
            }
            for (name, value) in entry.headers.iter().flatten() {
                if http::HeaderName::from_bytes(name.get_ref().as_bytes()).is_err() {
                    return Err(invalid(
                        name.span(),
                        "profile.headers",
                        format!("{:?} is not a header name", name.get_ref()),
                    ));
                }
                if http::HeaderValue::from_str(value.get_ref()).is_err() {
                    return Err(invalid(
                        value.span(),
                        "profile.headers",
                        format!("the value of {:?} is not a header value", name.get_ref()),
                    ));
                }
                settings
                    .headers
                    .push((name.get_ref().to_ascii_lowercase(), value.get_ref().clone()));
            }
            let flags = [
                (entry.obey_robots, &mut settings.obey_robots),
                (entry.fetch_robots, &mut settings.fetch_robots),
                (entry.honor_noai, &mut settings.honor_noai),
                (entry.repeat, &mut settings.repeat),
                (entry.expect_stopped, &mut settings.expect_stopped),
            ];
            for (value, slot) in flags {
                if let Some(value) = value {
                    *slot = value;
                }
            }
            settings.fetch_robots |= settings.obey_robots;
            if let Some(v) = entry.give_up_after {
                settings.give_up_after = v;
            }
            if let Some(v) = &entry.max_share {
                let share = *v.get_ref();
                if !(0.0..=1.0).contains(&share) {
                    return Err(invalid(
                        v.span(),
                        "profile.max_share",
                        format!("{share} is not a share between 0 and 1"),
                    ));
                }
                settings.max_share = Some(share);
            }
            if let Some(pages) = entry.share_min_pages {
                settings.share_min_pages = pages;
            }
            if entry.max_images.is_some() {
                settings.max_images = entry.max_images;
            }
            if entry.key_directory.is_some() {
                settings.key_directory = entry.key_directory;
            }
            profiles.push(settings);
        }

        let mut thresholds = Thresholds::default();
        if let Some(t) = &file.thresholds {
            thresholds.max_humans_hindered = t.max_humans_hindered;
            thresholds.max_scraper_images = t.max_scraper_images;
            for (value, key, slot) in [
                (
                    &t.min_precision,
                    "thresholds.min_precision",
                    &mut thresholds.min_precision,
                ),
                (
                    &t.min_recall,
                    "thresholds.min_recall",
                    &mut thresholds.min_recall,
                ),
            ] {
                if let Some(v) = value {
                    if !(0.0..=1.0).contains(v.get_ref()) {
                        return Err(invalid(v.span(), key, "must be between 0 and 1".into()));
                    }
                    *slot = Some(*v.get_ref());
                }
            }
        }

        Ok(Scenario {
            name: source_name.to_owned(),
            description: file.description.unwrap_or_default(),
            duration,
            max_requests,
            concurrency,
            request_timeout,
            start,
            max_pages: file.max_pages.unwrap_or(50),
            forward_addresses: file.forward_addresses.unwrap_or(true),
            host: file.host,
            forwarded_proto,
            blocked_statuses,
            throttled_statuses,
            seed: file.seed.unwrap_or(1),
            profiles,
            thresholds,
        })
    }

    /// Keeps only `kinds` (in the order given), adding those the scenario lacks with their
    /// defaults.
    pub fn restrict_to(&mut self, kinds: &[ProfileKind]) {
        let mut kept = Vec::new();
        for kind in kinds {
            if kept.iter().any(|p: &ProfileSettings| p.kind == *kind) {
                continue;
            }
            let settings = self
                .profiles
                .iter()
                .find(|p| p.kind == *kind)
                .cloned()
                .unwrap_or_else(|| kind.defaults());
            kept.push(settings);
        }
        self.profiles = kept;
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    crate::settings::line_col(text, offset).0
}

/// `2s..8s` or a single duration.
fn parse_range(text: &str) -> Option<(Duration, Duration)> {
    match text.split_once("..") {
        Some((low, high)) => {
            let (low, high) = (parse_duration(low)?, parse_duration(high)?);
            (low <= high).then_some((low, high))
        }
        None => parse_duration(text).map(|d| (d, d)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> String {
        Scenario::from_toml_str(text, "t.toml")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn builtin_scenarios_compile() {
        for (name, _) in BUILTIN_SCENARIOS {
            let scenario = Scenario::builtin(name).unwrap().unwrap();
            assert!(!scenario.profiles.is_empty(), "{name}");
            assert!(!scenario.description.is_empty(), "{name}");
        }
        let default = Scenario::builtin("default").unwrap().unwrap();
        for kind in ProfileKind::ALL {
            assert!(
                default.profiles.iter().any(|p| p.kind == kind),
                "default lacks {kind}"
            );
        }
        let flood = Scenario::builtin("flood").unwrap().unwrap();
        assert!(flood.profiles.iter().any(|p| p.addresses == 1_000_000));
    }

    #[test]
    fn errors_name_the_key_and_line() {
        let e = error("duration = \"5s\"\ncolour = 1\n");
        assert!(e.contains("line 2") && e.contains("colour"), "{e}");
        let e = error("duration = \"soon\"\n");
        assert!(e.contains("line 1") && e.contains("duration"), "{e}");
        let e = error("\n[[profile]]\nname = \"googlebot\"\n");
        assert!(e.contains("line 3") && e.contains("googlebot"), "{e}");
        let e = error("[[profile]]\nname = \"stealth\"\nrotate = \"often\"\n");
        assert!(e.contains("line 3") && e.contains("profile.rotate"), "{e}");
        let e = error("[[profile]]\nname = \"stealth\"\nmax_share = 1.5\n");
        assert!(
            e.contains("line 3") && e.contains("profile.max_share"),
            "{e}"
        );
        let e = error("[[profile]]\nname = \"stealth\"\naddresses = 0\n");
        assert!(e.contains("line 3") && e.contains("addresses"), "{e}");
        let e = error("max_requests = 0\n");
        assert!(e.contains("line 1") && e.contains("max_requests"), "{e}");
        let e = error("[thresholds]\nmin_recall = 2.0\n");
        assert!(e.contains("line 2") && e.contains("min_recall"), "{e}");
        let e = error("[[profile]]\nname = \"human\"\n[[profile]]\nname = \"human\"\n");
        assert!(e.contains("line 4") && e.contains("twice"), "{e}");
        let e = error("[[profile]]\nname = \"human\"\n[profile.headers]\n\"bad header\" = \"x\"\n");
        assert!(e.contains("line 4") && e.contains("bad header"), "{e}");
    }

    #[test]
    fn overrides_apply_on_defaults() {
        let s = Scenario::from_toml_str(
            "[[profile]]\nname = \"stealth\"\nrotate = \"wide\"\naddresses = 1000\ndelay = \"0ms\"\n\
             [profile.headers]\nX-Test = \"1\"\n",
            "t",
        )
        .unwrap();
        let p = &s.profiles[0];
        assert_eq!(p.rotate, Rotation::Wide);
        assert_eq!(p.addresses, 1000);
        assert_eq!(p.delay, Duration::ZERO);
        assert_eq!(p.concurrency, ProfileKind::Stealth.defaults().concurrency);
        assert_eq!(p.headers, [("x-test".to_owned(), "1".to_owned())]);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("2"), None);
        assert_eq!(parse_duration("s"), None);
        assert_eq!(
            parse_range("1s..2s"),
            Some((Duration::from_secs(1), Duration::from_secs(2)))
        );
        assert_eq!(parse_range("2s..1s"), None);
    }

    #[test]
    fn restricting_keeps_settings_and_adds_defaults() {
        let mut s = Scenario::builtin("pub-gallery").unwrap().unwrap();
        let crowd = s
            .profiles
            .iter()
            .find(|p| p.kind == ProfileKind::PubWifi)
            .cloned()
            .unwrap();
        s.restrict_to(&[ProfileKind::PubWifi, ProfileKind::FakeGooglebot]);
        assert_eq!(s.profiles.len(), 2);
        assert_eq!(s.profiles[0], crowd);
        assert_eq!(s.profiles[1], ProfileKind::FakeGooglebot.defaults());
    }
}
