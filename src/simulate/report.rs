//! The report: per profile what got through and when the target first pushed back; overall,
//! detection precision and recall and the request rate sustained. A table for people, one JSON
//! object for machines, and the list of thresholds a run broke.
//!
//! A session is **stopped** when the target refused it at least once (a blocked or throttled
//! status), or when it obtained no image while robots.txt or `X-Robots-Tag` kept it off some.
//! A human session is **hindered** when it was refused, timed out, or missed an image it asked
//! for. (robots.txt keeping a crawler off pages counts as keeping it off.) Precision is stopped scraper sessions over every session stopped or hindered; recall is
//! stopped scraper sessions over scraper sessions.
//!
//! ```
//! use lenscap::simulate::Report;
//!
//! let report = Report::empty("http://127.0.0.1:8080/");
//! let json = report.to_json();
//! assert_eq!(json["target"], "http://127.0.0.1:8080/");
//! assert!(json["precision"].is_null());
//! assert!(report.table().contains("requests/s"));
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{Value, json};

use super::profile::{ProfileKind, ProfileSettings, Role};
use super::scenario::Scenario;

/// What one profile did and got.
#[derive(Clone, Debug, PartialEq)]
pub struct ProfileReport {
    /// The profile.
    pub profile: ProfileKind,
    /// Sessions run.
    pub sessions: u32,
    /// Requests sent (robots.txt, pages and images), failed ones included.
    pub requests: u64,
    /// Distinct images asked for, summed over sessions.
    pub images_requested: u64,
    /// Distinct images received whole with a 2xx and kept, summed over sessions.
    pub images_obtained: u64,
    /// Images received and then discarded because `X-Robots-Tag` opted them out.
    pub images_opted_out: u64,
    /// Images skipped because robots.txt disallowed them.
    pub images_skipped_by_robots: u64,
    /// Responses with a throttling status (429, 503 by default).
    pub throttled: u64,
    /// Responses with a blocking status (401, 402, 403, 451 by default).
    pub blocked: u64,
    /// The profile's request number (counted across its sessions, in completion order) that
    /// first got a throttling or blocking status.
    pub first_stop_at: Option<u64>,
    /// Median latency to the end of the body.
    pub p50_ms: Option<f64>,
    /// 99th percentile latency.
    pub p99_ms: Option<f64>,
    /// Status mix: `"200"`, `"429"`, … plus `"timeout"`, `"error"` and `"cut"` (in flight
    /// when the run's time ran out).
    pub statuses: BTreeMap<String, u64>,
    /// Sessions stopped (see the module docs).
    pub sessions_stopped: u32,
    /// Sessions hindered (see the module docs).
    pub sessions_hindered: u32,
    /// Distinct client addresses the profile used (0 when addresses were not forwarded).
    pub addresses: u64,
    /// Way-through pages the site answered instead of a page (people follow them).
    pub way_through_pages: u64,
}

impl ProfileReport {
    /// Whether it should get through or be stopped.
    pub fn role(&self) -> Role {
        self.profile.role()
    }

    fn to_json(&self) -> Value {
        json!({
            "profile": self.profile.as_str(),
            "sessions": self.sessions,
            "requests": self.requests,
            "images_requested": self.images_requested,
            "images_obtained": self.images_obtained,
            "throttled": self.throttled,
            "blocked": self.blocked,
            "first_stop_at": self.first_stop_at,
            "p50_ms": self.p50_ms.map(round1),
            "p99_ms": self.p99_ms.map(round1),
        })
    }
}

/// The whole run.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// The target URL as given.
    pub target: String,
    /// The scenario's name.
    pub scenario: String,
    /// One entry per profile, in scenario order.
    pub profiles: Vec<ProfileReport>,
    /// Stopped scrapers over everything stopped or hindered (`None` when nothing was).
    pub precision: Option<f64>,
    /// Stopped scraper sessions over scraper sessions (`None` without scrapers).
    pub recall: Option<f64>,
    /// Requests answered (or failed) per second of the run.
    pub requests_per_s: f64,
    /// Wall-clock time of the run, survey included.
    pub elapsed: Duration,
    /// Images the survey (or the URL list) found on the site.
    pub images_available: u64,
    /// Pages the survey visited.
    pub pages_surveyed: u64,
    /// Requests the survey sent.
    pub survey_requests: u64,
    /// Things a reader should know (pages that could not be decoded, a survey that was refused).
    pub notes: Vec<String>,
}

impl Report {
    /// A report of a run that did nothing.
    pub fn empty(target: &str) -> Report {
        Report {
            target: target.to_owned(),
            scenario: String::new(),
            profiles: Vec::new(),
            precision: None,
            recall: None,
            requests_per_s: 0.0,
            elapsed: Duration::ZERO,
            images_available: 0,
            pages_surveyed: 0,
            survey_requests: 0,
            notes: Vec::new(),
        }
    }

    /// Fills in precision and recall from the profiles' sessions.
    pub(crate) fn compute_detection(&mut self) {
        let (mut true_positives, mut false_positives, mut scrapers) = (0u64, 0u64, 0u64);
        for p in &self.profiles {
            match p.role() {
                Role::Scraper => {
                    true_positives += u64::from(p.sessions_stopped);
                    scrapers += u64::from(p.sessions);
                }
                Role::Human | Role::Welcome => false_positives += u64::from(p.sessions_hindered),
            }
        }
        let flagged = true_positives + false_positives;
        self.precision = (flagged > 0).then(|| true_positives as f64 / flagged as f64);
        self.recall = (scrapers > 0).then(|| true_positives as f64 / scrapers as f64);
    }

    /// The one JSON object `--json` prints.
    pub fn to_json(&self) -> Value {
        json!({
            "target": self.target,
            "profiles": self.profiles.iter().map(ProfileReport::to_json).collect::<Vec<_>>(),
            "precision": self.precision.map(round3),
            "recall": self.recall.map(round3),
            "requests_per_s": round1(self.requests_per_s),
        })
    }

    /// The thresholds of `scenario` this run broke, one sentence each.
    pub fn violations(&self, scenario: &Scenario) -> Vec<String> {
        let mut out = Vec::new();
        let t = &scenario.thresholds;
        if let Some(max) = t.max_humans_hindered {
            let hindered: u64 = self
                .profiles
                .iter()
                .filter(|p| p.role() == Role::Human)
                .map(|p| u64::from(p.sessions_hindered))
                .sum();
            if hindered > max {
                out.push(format!(
                    "{hindered} human sessions were hindered (threshold max_humans_hindered = {max})"
                ));
            }
        }
        for p in &self.profiles {
            let settings = scenario.profiles.iter().find(|s| s.kind == p.profile);
            let share = settings.and_then(|s| s.max_share);
            let share_checked = settings.is_none_or(|s| self.share_applies(s));
            if let Some(share) = share.filter(|_| share_checked) {
                let max = (share * self.images_available as f64).floor() as u64;
                if p.images_obtained > max {
                    out.push(format!(
                        "{} obtained {} of {} images (its max_share = {share}: at most {max})",
                        p.profile, p.images_obtained, self.images_available
                    ));
                }
            }
            if let Some(max) = t.max_scraper_images
                && share.is_none()
                && share_checked
                && p.role() == Role::Scraper
                && p.images_obtained > max
            {
                out.push(format!(
                    "{} obtained {} images (threshold max_scraper_images = {max})",
                    p.profile, p.images_obtained
                ));
            }
            if let Some(max) = settings.and_then(|s| s.max_images)
                && p.images_obtained > max
            {
                out.push(format!(
                    "{} obtained {} images (its max_images = {max})",
                    p.profile, p.images_obtained
                ));
            }
            if settings.is_some_and(|s| s.expect_stopped) && p.sessions_stopped < p.sessions {
                out.push(format!(
                    "{}: {} of {} sessions were stopped (expect_stopped = true)",
                    p.profile, p.sessions_stopped, p.sessions
                ));
            }
        }
        if let Some(min) = t.min_precision {
            match self.precision {
                Some(v) if v < min => {
                    out.push(format!("precision {v:.3} is below min_precision = {min}"))
                }
                _ => {}
            }
        }
        if let Some(min) = t.min_recall {
            match self.recall {
                Some(v) if v < min => {
                    out.push(format!("recall {v:.3} is below min_recall = {min}"))
                }
                _ => {}
            }
        }
        out
    }

    /// The share thresholds of `scenario` this run could not check, one sentence each: the
    /// profiles whose `share_min_pages` is more than the pages the survey found.
    pub fn unchecked(&self, scenario: &Scenario) -> Vec<String> {
        self.profiles
            .iter()
            .filter_map(|p| scenario.profiles.iter().find(|s| s.kind == p.profile))
            .filter(|s| s.max_share.is_some() && !self.share_applies(s))
            .map(|s| {
                format!(
                    "{}'s max_share: the survey found {} pages, fewer than its share_min_pages = \
                     {} (on a gallery this small a person's share is all of it)",
                    s.kind, self.pages_surveyed, s.share_min_pages
                )
            })
            .collect()
    }

    /// Whether the survey found enough pages for `settings`' share threshold to mean anything.
    fn share_applies(&self, settings: &ProfileSettings) -> bool {
        self.pages_surveyed >= settings.share_min_pages
    }

    /// The table for people.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "target {}  scenario {}  {:.1}s  {} images available ({} pages surveyed in {} requests)",
            self.target,
            if self.scenario.is_empty() {
                "-"
            } else {
                &self.scenario
            },
            self.elapsed.as_secs_f64(),
            self.images_available,
            self.pages_surveyed,
            self.survey_requests,
        );
        let _ = writeln!(
            out,
            "{:<18} {:>5} {:>8} {:>15} {:>6} {:>6} {:>7} {:>8} {:>8} {:>8}  statuses",
            "profile",
            "sess",
            "requests",
            "images got/asked",
            "thrott",
            "block",
            "1st stop",
            "p50 ms",
            "p99 ms",
            "stopped"
        );
        for p in &self.profiles {
            let statuses: Vec<String> =
                p.statuses.iter().map(|(k, v)| format!("{k}×{v}")).collect();
            let stopped = match p.role() {
                Role::Scraper => format!("{}/{}", p.sessions_stopped, p.sessions),
                _ => format!("{} hind.", p.sessions_hindered),
            };
            let _ = writeln!(
                out,
                "{:<18} {:>5} {:>8} {:>15} {:>6} {:>6} {:>7} {:>8} {:>8} {:>8}  {}",
                p.profile.as_str(),
                p.sessions,
                p.requests,
                format!("{}/{}", p.images_obtained, p.images_requested),
                p.throttled,
                p.blocked,
                p.first_stop_at.map_or("-".into(), |n| n.to_string()),
                p.p50_ms.map_or("-".into(), |v| format!("{v:.1}")),
                p.p99_ms.map_or("-".into(), |v| format!("{v:.1}")),
                stopped,
                statuses.join(" "),
            );
            let mut extra = Vec::new();
            if p.images_opted_out > 0 {
                extra.push(format!(
                    "{} images discarded for X-Robots-Tag",
                    p.images_opted_out
                ));
            }
            if p.images_skipped_by_robots > 0 {
                extra.push(format!(
                    "{} images skipped for robots.txt",
                    p.images_skipped_by_robots
                ));
            }
            if p.addresses > 1 {
                extra.push(format!("{} addresses", p.addresses));
            }
            if p.way_through_pages > 0 {
                extra.push(format!("{} way-through pages", p.way_through_pages));
            }
            if !extra.is_empty() {
                let _ = writeln!(out, "{:<18} ({})", "", extra.join(", "));
            }
        }
        let pct = |v: Option<f64>| v.map_or("n/a".into(), |v| format!("{:.1}%", v * 100.0));
        let stopped: u32 = self
            .profiles
            .iter()
            .filter(|p| p.role() == Role::Scraper)
            .map(|p| p.sessions_stopped)
            .sum();
        let scrapers: u32 = self
            .profiles
            .iter()
            .filter(|p| p.role() == Role::Scraper)
            .map(|p| p.sessions)
            .sum();
        let hindered: u32 = self
            .profiles
            .iter()
            .filter(|p| p.role() != Role::Scraper)
            .map(|p| p.sessions_hindered)
            .sum();
        let _ = writeln!(
            out,
            "scrapers stopped {stopped}/{scrapers}, humans and welcome crawlers hindered {hindered}; precision {}, recall {}; {:.1} requests/s",
            pct(self.precision),
            pct(self.recall),
            self.requests_per_s
        );
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        out
    }
}

/// The `q`-quantile (0..=1) of sorted latencies, in milliseconds.
pub(crate) fn percentile_ms(sorted_micros: &[u32], q: f64) -> Option<f64> {
    if sorted_micros.is_empty() {
        return None;
    }
    let rank = (q * sorted_micros.len() as f64).ceil() as usize;
    let index = rank.clamp(1, sorted_micros.len()) - 1;
    Some(f64::from(sorted_micros[index]) / 1000.0)
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(kind: ProfileKind, sessions: u32, stopped: u32, hindered: u32) -> ProfileReport {
        ProfileReport {
            profile: kind,
            sessions,
            requests: 10,
            images_requested: 5,
            images_obtained: 5,
            images_opted_out: 0,
            images_skipped_by_robots: 0,
            throttled: 0,
            blocked: 0,
            first_stop_at: None,
            p50_ms: Some(1.04),
            p99_ms: None,
            statuses: BTreeMap::new(),
            sessions_stopped: stopped,
            sessions_hindered: hindered,
            addresses: 1,
            way_through_pages: 0,
        }
    }

    #[test]
    fn precision_and_recall_count_sessions() {
        let mut r = Report::empty("t");
        r.profiles = vec![
            profile(ProfileKind::Human, 4, 0, 1),
            profile(ProfileKind::BulkDownloader, 4, 3, 0),
            profile(ProfileKind::SearchEngine, 1, 0, 0),
        ];
        r.compute_detection();
        assert_eq!(r.precision, Some(0.75));
        assert_eq!(r.recall, Some(0.75));
    }

    #[test]
    fn json_has_exactly_the_documented_keys() {
        let mut r = Report::empty("http://127.0.0.1:1/");
        r.profiles = vec![profile(ProfileKind::Human, 1, 0, 0)];
        let json = r.to_json();
        let keys: Vec<_> = json.as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            keys,
            [
                "target",
                "profiles",
                "precision",
                "recall",
                "requests_per_s"
            ]
        );
        let keys: Vec<_> = json["profiles"][0]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(
            keys,
            [
                "profile",
                "sessions",
                "requests",
                "images_requested",
                "images_obtained",
                "throttled",
                "blocked",
                "first_stop_at",
                "p50_ms",
                "p99_ms"
            ]
        );
        assert_eq!(json["profiles"][0]["p50_ms"], 1.0);
        assert!(json["profiles"][0]["first_stop_at"].is_null());
    }

    #[test]
    fn thresholds_are_checked() {
        let scenario = Scenario::from_toml_str(
            "[[profile]]\nname = \"human\"\n[[profile]]\nname = \"fake-googlebot\"\n\
             [[profile]]\nname = \"ai-crawler-polite\"\nmax_images = 0\n\
             [thresholds]\nmax_humans_hindered = 0\nmax_scraper_images = 4\nmin_recall = 1.0\n",
            "t",
        )
        .unwrap();
        let mut r = Report::empty("t");
        r.profiles = vec![
            profile(ProfileKind::Human, 2, 0, 1),
            profile(ProfileKind::FakeGooglebot, 1, 0, 0),
            profile(ProfileKind::AiCrawlerPolite, 1, 1, 0),
        ];
        r.compute_detection();
        let v = r.violations(&scenario).join("\n");
        assert!(v.contains("1 human sessions were hindered"), "{v}");
        assert!(v.contains("fake-googlebot obtained 5 images"), "{v}");
        assert!(
            v.contains("fake-googlebot: 0 of 1 sessions were stopped"),
            "{v}"
        );
        assert!(v.contains("its max_images = 0"), "{v}");
        assert!(v.contains("recall 0.500"), "{v}");
        r.profiles.truncate(0);
        r.compute_detection();
        assert!(r.violations(&scenario).is_empty());
    }

    #[test]
    fn a_share_is_checked_only_on_a_gallery_of_enough_pages() {
        let scenario = Scenario::from_toml_str(
            "[[profile]]\nname = \"headless-fast\"\nmax_share = 0.2\nshare_min_pages = 15\n\
             [[profile]]\nname = \"page-then-images\"\nmax_share = 0.2\n\
             [thresholds]\nmax_scraper_images = 1\n",
            "t",
        )
        .unwrap();
        let mut r = Report::empty("t");
        r.images_available = 10;
        r.profiles = vec![
            profile(ProfileKind::HeadlessFast, 1, 0, 0),
            profile(ProfileKind::PageThenImages, 1, 0, 0),
        ];
        r.pages_surveyed = 6;
        let v = r.violations(&scenario).join("\n");
        assert!(!v.contains("headless-fast"), "{v}");
        assert!(v.contains("page-then-images obtained 5 of 10"), "{v}");
        let u = r.unchecked(&scenario);
        assert_eq!(u.len(), 1, "{u:?}");
        assert!(u[0].starts_with("headless-fast's max_share: the survey found 6 pages"));
        r.pages_surveyed = 15;
        let v = r.violations(&scenario).join("\n");
        assert!(v.contains("headless-fast obtained 5 of 10 images"), "{v}");
        assert!(r.unchecked(&scenario).is_empty());
    }

    #[test]
    fn percentiles() {
        let v: Vec<u32> = (1..=100).map(|ms| ms * 1000).collect();
        assert_eq!(percentile_ms(&v, 0.5), Some(50.0));
        assert_eq!(percentile_ms(&v, 0.99), Some(99.0));
        assert_eq!(percentile_ms(&[7000], 0.99), Some(7.0));
        assert_eq!(percentile_ms(&[], 0.5), None);
    }
}
