//! `simulate` plays the human-envelope profiles against the real Lenscap server serving a
//! generated gallery of the issue's shape (300 photos on 15 pages of 20, each photo also a
//! link), trusting loopback as a proxy so each session is the address the simulator forwards.
//! The scrapers' thresholds are the default scenario's `max_share` (the issue's 60, 80 and 150
//! of 300); people must not be hindered: no refusal, every image they asked for, at most one
//! way-through page per session.
//!
//! No timing assertions: the durations only bound the runs.

use std::time::Duration;

use lenscap::server::{Overrides, ServeOptions, Server};
use lenscap::simulate::{ProfileKind, ProfileReport, Report, Role, Scenario, Target};

/// Runs the default scenario restricted to `kinds` against a fresh server for `duration`.
async fn simulate(kinds: &[ProfileKind], duration: Duration, tag: &str) -> (Report, Scenario) {
    let dir = std::env::temp_dir().join(format!("lenscap-sim-env-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let root = dir.join("site");
    generate_gallery(&root);
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
            root: Some(root),
            ..Overrides::default()
        },
    })
    .await
    .expect("lenscap serve starts");
    let target = Target::resolve(&format!("http://{}/", server.local_addr()), false)
        .await
        .unwrap();
    let mut scenario = Scenario::builtin("default").unwrap().unwrap();
    scenario.duration = duration;
    scenario.restrict_to(kinds);
    let report = lenscap::simulate::run(&target, &scenario, None).await;
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
    assert_eq!(report.images_available, PHOTOS as u64, "{}", report.table());
    (report, scenario)
}

const PAGES: usize = 15;
const PER_PAGE: usize = 20;
const PHOTOS: usize = PAGES * PER_PAGE;

/// 15 pages of 20 photos (each an `<img>` inside a link to the photo), a stylesheet, an index.
fn generate_gallery(root: &std::path::Path) {
    let photo = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/gallery/photos/terrace-02.jpg"
    ))
    .unwrap();
    std::fs::create_dir_all(root.join("photos")).unwrap();
    std::fs::write(root.join("style.css"), "img { width: 128px }\n").unwrap();
    let head = |title: &str| {
        format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
             <link rel=\"stylesheet\" href=\"/style.css\"></head><body><h1>{title}</h1>\n"
        )
    };
    let mut index = head("Gallery");
    for page in 1..=PAGES {
        index += &format!("<a href=\"/p{page:02}.html\">Evening {page}</a>\n");
        let mut html = head(&format!("Evening {page}"));
        for i in 1..=PER_PAGE {
            let name = format!("p{page:02}-{i:02}.jpg");
            std::fs::write(root.join("photos").join(&name), &photo).unwrap();
            html += &format!(
                "<a href=\"/photos/{name}\"><img src=\"/photos/{name}\" alt=\"photo {i}\"></a>\n"
            );
        }
        let next = page % PAGES + 1;
        html += &format!(
            "<a href=\"/\">Gallery</a> <a href=\"/p{next:02}.html\">Next</a></body></html>\n"
        );
        std::fs::write(root.join(format!("p{page:02}.html")), html).unwrap();
    }
    index += "</body></html>\n";
    std::fs::write(root.join("index.html"), index).unwrap();
}

fn profile(report: &Report, kind: ProfileKind) -> &ProfileReport {
    report
        .profiles
        .iter()
        .find(|p| p.profile == kind)
        .unwrap_or_else(|| panic!("no {kind} in\n{}", report.table()))
}

/// The browser-shaped scrapers the policy holds to the issue's numbers.
const SCRAPERS: [ProfileKind; 4] = [
    ProfileKind::PageThenImages,
    ProfileKind::HeadlessFast,
    ProfileKind::HeadlessPaced,
    ProfileKind::ForgedFetchMetadata,
];

const PEOPLE: [ProfileKind; 3] = [
    ProfileKind::CookielessCrowd,
    ProfileKind::DirectLinkOpener,
    ProfileKind::CarrierNat,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_shaped_scrapers_are_held_to_the_issues_thresholds() {
    let (report, scenario) = simulate(&SCRAPERS, Duration::from_secs(20), "scrapers").await;
    let table = report.table();
    eprintln!("{table}");
    for kind in SCRAPERS {
        assert_eq!(kind.role(), Role::Scraper);
        let p = profile(&report, kind);
        let share = scenario
            .profiles
            .iter()
            .find(|s| s.kind == kind)
            .and_then(|s| s.max_share)
            .expect("a threshold in the default scenario");
        let most = (share * PHOTOS as f64).floor() as u64;
        // The threshold means something only if the profile asked for more than it, or was
        // refused the pages that would have shown it more.
        assert!(
            p.images_requested > most || p.sessions_stopped == p.sessions,
            "{kind} asked for only {} and was not stopped\n{table}",
            p.images_requested
        );
        assert!(
            p.first_stop_at.is_some(),
            "{kind} was never refused\n{table}"
        );
        assert!(
            p.images_obtained <= most,
            "{kind}: {} of {PHOTOS} (at most {most})\n{table}",
            p.images_obtained
        );
    }
    let violations = report.violations(&scenario);
    assert!(violations.is_empty(), "{violations:?}\n{table}");
}

/// The page-then-images script behind a trusted proxy, each request from another /24: every
/// request is a new client of a new subnet (its visitor cookie does not follow it across
/// subnets), so no client or subnet budget holds it. It never fetches the pages' render
/// proof, so its images come out of the site's `unrendered_images` budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_rotating_across_subnets_is_held_to_its_threshold() {
    let kind = ProfileKind::RotatingSubnets;
    let (report, scenario) = simulate(&[kind], Duration::from_secs(20), "rotating").await;
    let table = report.table();
    eprintln!("{table}");
    let p = profile(&report, kind);
    assert!(p.addresses > 50, "{table}");
    assert!(p.images_requested > 60, "{table}");
    let violations = report.violations(&scenario);
    assert!(violations.is_empty(), "{violations:?}\n{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookieless_crowds_link_openers_and_carrier_nat_people_are_untouched() {
    let (report, _) = simulate(&PEOPLE, Duration::from_secs(40), "people").await;
    let table = report.table();
    eprintln!("{table}");
    for kind in PEOPLE {
        assert_eq!(kind.role(), Role::Human);
        let p = profile(&report, kind);
        assert!(p.images_requested > 0, "{kind} asked for no image\n{table}");
        assert_eq!(p.images_obtained, p.images_requested, "{kind}\n{table}");
        assert_eq!(p.throttled + p.blocked, 0, "{kind}\n{table}");
        assert_eq!(p.sessions_hindered, 0, "{kind}\n{table}");
        assert!(
            p.way_through_pages <= u64::from(p.sessions),
            "{kind}\n{table}"
        );
    }
    // The cookieless crowd is six people on one address, each through the way-through page
    // at most once (more would count as hindered, above), and it took them there.
    let crowd = profile(&report, ProfileKind::CookielessCrowd);
    assert_eq!((crowd.sessions, crowd.addresses), (6, 1), "{table}");
    assert!(crowd.way_through_pages >= 1, "{table}");
    // The issue's guest opens 30 photo links one after another.
    let opener = profile(&report, ProfileKind::DirectLinkOpener);
    assert_eq!(opener.images_requested, 30, "{table}");
    assert!(
        profile(&report, ProfileKind::CarrierNat).addresses > 1,
        "{table}"
    );
}
