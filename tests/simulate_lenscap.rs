//! `simulate` against the real Lenscap server serving the demo gallery (issue 6's CI test).
//!
//! The server runs in-process ([`Server::bind`]) on an ephemeral loopback port, serving
//! `examples/gallery` with the embedded policy plus one change: 127.0.0.1 and ::1 are trusted
//! proxies, so each simulated session is identified by the address the simulator forwards in
//! `X-Forwarded-For` (without that, every session would share one client address, and the
//! verified search engine would look like a spoofer from 127.0.0.1). The simulator runs through
//! its library API, bounded in time and in requests.
//!
//! What the issue asks, and where it is checked:
//! - humans and the pub crowd obtain 100% of the images they request with no 429/403;
//! - polite AI crawlers obtain none; the fake Googlebot is stopped;
//! - each scraper profile obtains at most 20 images: those the static classification stops
//!   (catalog, header shape, verified ranges) in the short tests, and `stealth` (a full current
//!   Chrome header set, keeping cookies, from addresses rotating within a /24) in the last
//!   test, where the rate limits and the behaviour tracker (`address-churn`) have to stop it.
//!
//! No timing assertions: the durations only bound the runs.

use std::path::PathBuf;
use std::time::Duration;

use lenscap::server::{Overrides, RunningServer, ServeOptions, Server};
use lenscap::simulate::{ProfileKind, ProfileReport, Report, Scenario, Target};

/// Played on a bigger gallery in `tests/simulate_envelope.rs`.
const ENVELOPE_PROFILES: [ProfileKind; 8] = [
    ProfileKind::PageThenImages,
    ProfileKind::HeadlessFast,
    ProfileKind::HeadlessPaced,
    ProfileKind::ForgedFetchMetadata,
    ProfileKind::RotatingSubnets,
    ProfileKind::CookielessCrowd,
    ProfileKind::DirectLinkOpener,
    ProfileKind::CarrierNat,
];

/// The threshold the issue sets for every scraper profile.
const MAX_SCRAPER_IMAGES: u64 = 20;

/// Lenscap serving the demo gallery on 127.0.0.1:0, trusting loopback as a proxy.
async fn start_lenscap(name: &str) -> (RunningServer, PathBuf) {
    // Tests run in parallel and may play the same scenario: each server gets its own folder.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("lenscap-sim-{}-{name}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("lenscap.toml");
    std::fs::write(
        &config,
        "[client]\ntrusted_proxies = [\"127.0.0.1/32\", \"::1/128\"]\n",
    )
    .unwrap();
    let server = Server::bind(ServeOptions {
        config: Some(config),
        overrides: Overrides {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            admin: Some(None),
            root: Some(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/gallery").into()),
            ..Overrides::default()
        },
    })
    .await
    .expect("lenscap serve starts");
    (server, dir)
}

/// Runs a builtin scenario against a fresh server for `duration` (and at most 5,000 requests).
async fn simulate(name: &str, duration: Duration) -> (Report, Scenario) {
    let (server, dir) = start_lenscap(name).await;
    let target = Target::resolve(&format!("http://{}/", server.local_addr()), false)
        .await
        .unwrap();
    let mut scenario = Scenario::builtin(name).unwrap().unwrap();
    scenario.duration = duration;
    // The human-envelope profiles need a gallery of the size (on 6 pages a person's
    // share is the whole gallery): `tests/simulate_envelope.rs` plays them on 300 photos.
    let kinds: Vec<ProfileKind> = scenario
        .profiles
        .iter()
        .map(|p| p.kind)
        .filter(|k| !ENVELOPE_PROFILES.contains(k))
        .collect();
    scenario.restrict_to(&kinds);
    scenario.max_requests = scenario.max_requests.min(5_000);
    let report = lenscap::simulate::run(&target, &scenario, None).await;
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
    // Whatever else happens, the survey must have seen the whole gallery: 6 events × 11 photos.
    assert_eq!(report.images_available, 66, "{}", report.table());
    assert!(report.notes.is_empty(), "{:?}", report.notes);
    (report, scenario)
}

fn profile(report: &Report, kind: ProfileKind) -> &ProfileReport {
    report
        .profiles
        .iter()
        .find(|p| p.profile == kind)
        .unwrap_or_else(|| panic!("no {kind} in\n{}", report.table()))
}

/// Humans and the pub crowd: every image they asked for, never a 429 or a 403.
fn assert_people_get_everything(report: &Report) {
    for kind in [ProfileKind::Human, ProfileKind::PubWifi] {
        let p = profile(report, kind);
        let table = report.table();
        assert!(p.images_requested > 0, "{kind} asked for no image\n{table}");
        assert_eq!(p.images_obtained, p.images_requested, "{kind}\n{table}");
        assert_eq!(p.throttled, 0, "{kind}\n{table}");
        assert_eq!(p.blocked, 0, "{kind}\n{table}");
        assert_eq!(p.first_stop_at, None, "{kind}\n{table}");
        assert_eq!(p.statuses.get("429"), None, "{kind}\n{table}");
        assert_eq!(p.statuses.get("403"), None, "{kind}\n{table}");
        assert_eq!(p.sessions_hindered, 0, "{kind}\n{table}");
    }
}

/// Each of these scraper profiles obtained at most 20 images.
fn assert_scrapers_capped(report: &Report, kinds: &[ProfileKind]) {
    for &kind in kinds {
        let p = profile(report, kind);
        assert!(
            p.images_obtained <= MAX_SCRAPER_IMAGES,
            "{kind} obtained {} images (at most {MAX_SCRAPER_IMAGES})\n{}",
            p.images_obtained,
            report.table()
        );
    }
}

fn assert_polite_crawlers_get_nothing(report: &Report) {
    let p = profile(report, ProfileKind::AiCrawlerPolite);
    assert_eq!(p.images_obtained, 0, "{}", report.table());
    // They read robots.txt and kept off: stopped without a single refusal.
    assert_eq!(p.sessions_stopped, p.sessions, "{}", report.table());
}

/// The scraper profiles the static classification stops today (catalog, header shape, ranges).
const STOPPED_WITHOUT_LIMITS: [ProfileKind; 5] = [
    ProfileKind::AiCrawlerPolite,
    ProfileKind::AiCrawlerRude,
    ProfileKind::BulkDownloader,
    ProfileKind::DatasetBuilder,
    ProfileKind::FakeGooglebot,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_scenario_against_the_demo_gallery() {
    let (report, _) = simulate("default", Duration::from_secs(5)).await;
    let table = report.table();

    assert_people_get_everything(&report);
    assert_polite_crawlers_get_nothing(&report);
    assert_scrapers_capped(&report, &STOPPED_WITHOUT_LIMITS);

    let fake = profile(&report, ProfileKind::FakeGooglebot);
    assert!(fake.first_stop_at.is_some(), "{table}");
    assert_eq!(fake.sessions_stopped, fake.sessions, "{table}");
    assert_eq!(fake.images_obtained, 0, "{table}");

    // The real Googlebot (forwarded from inside Google's ranges) is let through: proof that the
    // server believes the simulator's forwarded addresses, which every other check relies on.
    let google = profile(&report, ProfileKind::SearchEngine);
    assert!(google.images_requested > 0, "{table}");
    assert_eq!(google.images_obtained, google.images_requested, "{table}");
    assert_eq!(google.sessions_hindered, 0, "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pub_crowd_on_one_address_gets_every_photo() {
    // Thirty phones behind the venue's one address, people at home, and the crawlers.
    let (report, _) = simulate("pub-gallery", Duration::from_secs(5)).await;
    assert!(profile(&report, ProfileKind::PubWifi).sessions >= 30);
    assert_people_get_everything(&report);
    assert_polite_crawlers_get_nothing(&report);
    assert_scrapers_capped(
        &report,
        &[
            ProfileKind::AiCrawlerPolite,
            ProfileKind::AiCrawlerRude,
            ProfileKind::BulkDownloader,
            ProfileKind::DatasetBuilder,
        ],
    );
}

/// The whole list, stealth included, and both scenarios' own thresholds (what
/// `lenscap simulate` gates its exit code on). Without rate limits stealth took every image it
/// asked for (33 of 33 in 10 s of the default scenario). The runs are 10 s so that an unstopped
/// stealth (one request per 300 ms) would ask for well over 20 images: shortening them would
/// let it pass vacuously.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scraper_profile_including_stealth_is_capped() {
    let all_scrapers: Vec<ProfileKind> = ProfileKind::ALL
        .into_iter()
        .filter(|k| k.role() == lenscap::simulate::Role::Scraper && !ENVELOPE_PROFILES.contains(k))
        .collect();
    assert!(all_scrapers.contains(&ProfileKind::Stealth));
    for name in ["default", "pub-gallery"] {
        let (report, scenario) = simulate(name, Duration::from_secs(10)).await;
        let present: Vec<ProfileKind> = all_scrapers
            .iter()
            .copied()
            .filter(|k| report.profiles.iter().any(|p| p.profile == *k))
            .collect();
        assert!(present.contains(&ProfileKind::Stealth), "{name}");
        // The cap means something only if stealth asked for more than it.
        let stealth = profile(&report, ProfileKind::Stealth);
        assert!(
            stealth.images_requested > MAX_SCRAPER_IMAGES,
            "{name}: stealth asked for only {} images\n{}",
            stealth.images_requested,
            report.table()
        );
        assert_people_get_everything(&report);
        assert_polite_crawlers_get_nothing(&report);
        assert_scrapers_capped(&report, &present);
        let violations = report.violations(&scenario);
        assert!(
            violations.is_empty(),
            "{name}: {violations:?}\n{}",
            report.table()
        );
    }
}
