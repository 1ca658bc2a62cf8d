//! `simulate` against a small gallery served in-process on 127.0.0.1:0: an allow-all server for
//! what humans obtain, and a rule-based one (block a User-Agent, 429 after N images per client
//! address, `X-Robots-Tag: noai`) for the report's counting. No timing assertions.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use lenscap::simulate::{ProfileKind, ProfileReport, Report, Scenario, Target};
use serde_json::Value;

const PAGES: usize = 3;
const IMAGES_PER_PAGE: usize = 4;
/// Every image is offered at 1x and 2x.
const IMAGES_AVAILABLE: u64 = (PAGES * IMAGES_PER_PAGE * 2) as u64;

// === the test gallery ===

#[derive(Default)]
struct Rules {
    /// 403 for a User-Agent containing any of these.
    block_ua: Vec<&'static str>,
    /// 429 for every image request after this many from one client address.
    images_per_client: Option<u64>,
    /// `X-Robots-Tag: noai, noimageai` on images.
    noai: bool,
}

#[derive(Default)]
struct Seen {
    images_per_client: HashMap<String, u64>,
    /// (path, headers) of every request, in arrival order.
    requests: Vec<(String, http::HeaderMap)>,
}

struct Gallery {
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
}

impl Gallery {
    async fn start(rules: Rules) -> Gallery {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let rules = Arc::new(rules);
        let seen = Arc::new(Mutex::new(Seen::default()));
        let state = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else {
                    continue;
                };
                let (rules, seen) = (rules.clone(), state.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let response = answer(&rules, &seen, peer, request);
                        async move { Ok::<_, Infallible>(response) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Gallery { addr, seen }
    }

    fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    async fn target(&self) -> Target {
        Target::resolve(&self.url(), false).await.unwrap()
    }
}

fn answer(
    rules: &Rules,
    seen: &Mutex<Seen>,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_owned();
    let headers = request.headers().clone();
    let client = headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .map_or(peer.ip().to_string(), str::to_owned);
    let ua = headers
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut seen = seen.lock().unwrap();
    seen.requests.push((path.clone(), headers.clone()));
    let respond = |status: StatusCode, content_type: &str, body: String| {
        Response::builder()
            .status(status)
            .header("content-type", content_type)
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    };
    if rules.block_ua.iter().any(|b| ua.contains(b)) {
        return respond(StatusCode::FORBIDDEN, "text/plain", "blocked".into());
    }
    if path == "/robots.txt" {
        let robots = "User-agent: GPTBot\nUser-agent: CCBot\nUser-agent: ClaudeBot\nDisallow: /\n\nUser-agent: *\nAllow: /\n";
        return respond(StatusCode::OK, "text/plain", robots.into());
    }
    if path == "/" {
        let mut html = String::from("<!doctype html><title>Terrace</title><h1>The terrace</h1>\n");
        for page in 1..=PAGES {
            html += &format!("<a href=\"/g/{page}\">Evening {page}</a>\n");
        }
        html += "<a href=\"https://elsewhere.example/\">elsewhere</a> <a href=\"mailto:pub@example.org\">mail</a>";
        return respond(StatusCode::OK, "text/html; charset=utf-8", html);
    }
    if let Some(page) = path
        .strip_prefix("/g/")
        .and_then(|n| n.parse::<usize>().ok())
    {
        if !(1..=PAGES).contains(&page) {
            return respond(StatusCode::NOT_FOUND, "text/plain", "no".into());
        }
        let mut html =
            format!("<!doctype html><title>Evening {page}</title><a href=\"/\">home</a>\n");
        for i in 1..=IMAGES_PER_PAGE {
            html += &format!(
                "<img src=\"/p/{page}-{i}.jpg\" srcset=\"/p/{page}-{i}.jpg 1x, /p/{page}-{i}@2x.jpg 2x\" alt=\"\">\n"
            );
        }
        let next = page % PAGES + 1;
        html += &format!("<a href=\"../g/{next}\">next</a>");
        return respond(StatusCode::OK, "text/html; charset=utf-8", html);
    }
    if path.starts_with("/p/") && path.ends_with(".jpg") {
        let count = seen.images_per_client.entry(client).or_default();
        *count += 1;
        if rules.images_per_client.is_some_and(|max| *count > max) {
            let mut response = respond(
                StatusCode::TOO_MANY_REQUESTS,
                "text/plain",
                "slow down".into(),
            );
            response
                .headers_mut()
                .insert("retry-after", "1".parse().unwrap());
            return response;
        }
        let mut response = respond(StatusCode::OK, "image/jpeg", format!("JPEG {path}"));
        if rules.noai {
            response
                .headers_mut()
                .insert("x-robots-tag", "noai, noimageai".parse().unwrap());
        }
        return response;
    }
    respond(StatusCode::NOT_FOUND, "text/plain", "no".into())
}

// === helpers ===

/// A scenario with short bounds, for tests.
fn scenario(profiles: &str) -> Scenario {
    let text = format!(
        "description = \"test\"\nduration = \"20s\"\nmax_requests = 2000\nconcurrency = 16\n{profiles}"
    );
    Scenario::from_toml_str(&text, "test.toml").unwrap()
}

fn profile(report: &Report, kind: ProfileKind) -> &ProfileReport {
    report.profiles.iter().find(|p| p.profile == kind).unwrap()
}

// === tests ===

#[tokio::test]
async fn humans_and_the_pub_crowd_obtain_every_image_they_request() {
    let gallery = Gallery::start(Rules::default()).await;
    let scenario = scenario(
        "[[profile]]\nname = \"human\"\nsessions = 3\nthink = \"0ms..5ms\"\npages = 4\n\
         [[profile]]\nname = \"pub-wifi\"\nsessions = 5\nthink = \"0ms..5ms\"\npages = 4\n\
         [thresholds]\nmax_humans_hindered = 0\n",
    );
    let report = lenscap::simulate::run(&gallery.target().await, &scenario, None).await;
    assert_eq!(report.images_available, IMAGES_AVAILABLE);
    assert_eq!(report.pages_surveyed, 1 + PAGES as u64);
    for kind in [ProfileKind::Human, ProfileKind::PubWifi] {
        let p = profile(&report, kind);
        assert!(p.images_requested > 0, "{kind}: {p:?}");
        assert_eq!(p.images_obtained, p.images_requested, "{kind}: {p:?}");
        assert_eq!(
            (p.throttled, p.blocked, p.first_stop_at),
            (0, 0, None),
            "{kind}"
        );
        assert_eq!(p.sessions_hindered, 0, "{kind}");
        assert_eq!(p.statuses.keys().collect::<Vec<_>>(), ["200"], "{kind}");
    }
    assert_eq!(profile(&report, ProfileKind::PubWifi).addresses, 1);
    assert_eq!(profile(&report, ProfileKind::Human).addresses, 3);
    assert!(report.violations(&scenario).is_empty());
    assert_eq!(report.precision, None);

    // Browsers ask for images the way browsers do: one candidate each, with the page as
    // Referer and, on a localhost origin, fetch metadata.
    let seen = gallery.seen.lock().unwrap();
    let images: Vec<_> = seen
        .requests
        .iter()
        .filter(|(path, _)| path.starts_with("/p/"))
        .collect();
    assert!(!images.is_empty());
    for (path, headers) in images {
        assert!(
            !path.contains("@2x"),
            "{path}: a 1x screen takes the 1x candidate"
        );
        let referer = headers["referer"].to_str().unwrap();
        assert!(
            referer.starts_with(&format!("http://{}/g/", gallery.addr)),
            "{referer}"
        );
        assert_eq!(headers["sec-fetch-dest"], "image");
        assert!(headers["accept"].to_str().unwrap().starts_with("image/"));
        assert!(headers.contains_key("accept-language"));
    }
}

#[tokio::test]
async fn the_report_counts_statuses_images_and_the_first_stop() {
    let gallery = Gallery::start(Rules {
        block_ua: vec!["GPTBot"],
        images_per_client: Some(5),
        noai: false,
    })
    .await;
    let scenario = scenario(
        "[[profile]]\nname = \"bulk-downloader\"\nconcurrency = 1\n\
         [[profile]]\nname = \"ai-crawler-rude\"\n\
         [[profile]]\nname = \"fake-googlebot\"\n\
         [thresholds]\nmax_scraper_images = 5\nmin_recall = 1.0\n",
    );
    let report = lenscap::simulate::run(&gallery.target().await, &scenario, None).await;

    // wget: robots.txt (1), / (2), /g/1 (3), five images (4-8), the sixth is refused (9).
    let bulk = profile(&report, ProfileKind::BulkDownloader);
    assert_eq!(bulk.images_requested, IMAGES_AVAILABLE);
    assert_eq!(bulk.images_obtained, 5);
    assert_eq!(bulk.throttled, IMAGES_AVAILABLE - 5);
    assert_eq!(bulk.blocked, 0);
    assert_eq!(bulk.first_stop_at, Some(9));
    assert_eq!(bulk.requests, 1 + 1 + PAGES as u64 + IMAGES_AVAILABLE);
    assert_eq!(bulk.statuses["200"], 1 + 1 + PAGES as u64 + 5);
    assert_eq!(bulk.statuses["429"], IMAGES_AVAILABLE - 5);
    assert_eq!(bulk.sessions_stopped, 1);

    // GPTBot is refused its first page and has nothing else to go on.
    let rude = profile(&report, ProfileKind::AiCrawlerRude);
    assert_eq!(
        (rude.requests, rude.blocked, rude.first_stop_at),
        (1, 1, Some(1))
    );
    assert_eq!(rude.images_obtained, 0);
    assert_eq!(rude.sessions_stopped, 1);

    let fake = profile(&report, ProfileKind::FakeGooglebot);
    assert_eq!(fake.images_obtained, 5);
    assert!(fake.first_stop_at.is_some());
    assert_eq!(fake.sessions_stopped, 1);

    assert_eq!(report.recall, Some(1.0));
    assert_eq!(report.precision, Some(1.0));
    assert!(
        report.violations(&scenario).is_empty(),
        "{:?}",
        report.violations(&scenario)
    );
}

#[tokio::test]
async fn polite_crawlers_obey_robots_and_the_dataset_builder_honours_noai() {
    let gallery = Gallery::start(Rules {
        noai: true,
        ..Rules::default()
    })
    .await;
    let scenario = scenario(
        "[[profile]]\nname = \"ai-crawler-polite\"\nsessions = 3\ndelay = \"0ms\"\nmax_images = 0\n\
         [[profile]]\nname = \"dataset-builder\"\nsessions = 2\n\
         [[profile]]\nname = \"search-engine\"\ndelay = \"0ms\"\n",
    );
    let report = lenscap::simulate::run(&gallery.target().await, &scenario, None).await;
    let polite = profile(&report, ProfileKind::AiCrawlerPolite);
    assert_eq!(polite.requests, 3, "robots.txt only: {polite:?}");
    assert_eq!(polite.images_requested, 0);
    assert_eq!(polite.sessions_stopped, 3);

    let builder = profile(&report, ProfileKind::DatasetBuilder);
    assert_eq!(builder.images_requested, IMAGES_AVAILABLE);
    assert_eq!(builder.images_obtained, 0);
    assert_eq!(builder.images_opted_out, IMAGES_AVAILABLE);
    assert_eq!(builder.sessions_stopped, 2);

    // Googlebot is allowed by robots.txt and welcome.
    let search = profile(&report, ProfileKind::SearchEngine);
    assert!(search.images_obtained > 0);
    assert_eq!(search.images_obtained, search.images_requested);
    assert_eq!(search.sessions_hindered, 0);
    assert!(report.violations(&scenario).is_empty());

    {
        // img2dataset's header shape reached the server as sent.
        let seen = gallery.seen.lock().unwrap();
        let (_, headers) = seen
            .requests
            .iter()
            .find(|(_, h)| h["user-agent"].to_str().unwrap().contains("rv:72.0"))
            .unwrap();
        assert_eq!(headers["accept-encoding"], "identity");
        assert_eq!(headers["connection"], "close");
        assert!(!headers.contains_key("accept"));
        assert!(!headers.contains_key("accept-language"));
    }

    let ignoring = scenario_with("[[profile]]\nname = \"dataset-builder\"\nhonor_noai = false\n");
    let report = lenscap::simulate::run(&gallery.target().await, &ignoring, None).await;
    let builder = profile(&report, ProfileKind::DatasetBuilder);
    assert_eq!(builder.images_obtained, IMAGES_AVAILABLE);
}

fn scenario_with(profiles: &str) -> Scenario {
    scenario(profiles)
}

#[tokio::test]
async fn a_url_list_replaces_the_survey_and_rotation_spreads_addresses() {
    let gallery = Gallery::start(Rules {
        images_per_client: Some(1),
        ..Rules::default()
    })
    .await;
    let base = gallery.url();
    let urls = vec![
        format!("{base}p/1-1.jpg"),
        "/p/1-2.jpg".to_owned(),
        "/p/2-1.jpg".to_owned(),
        "http://elsewhere.example/p/9.jpg".to_owned(),
    ];
    let scenario = Scenario::from_toml_str(
        "duration = \"20s\"\nmax_requests = 40\n\
         [[profile]]\nname = \"dataset-builder\"\nconcurrency = 1\nrotate = \"wide\"\naddresses = 1000\nrepeat = true\n",
        "list.toml",
    )
    .unwrap();
    let report = lenscap::simulate::run(&gallery.target().await, &scenario, Some(urls)).await;
    assert_eq!(report.images_available, 3);
    assert_eq!(report.survey_requests, 0);
    let builder = profile(&report, ProfileKind::DatasetBuilder);
    // Bounded by max_requests; a new address each time, so the per-address limit never bites.
    assert_eq!(builder.requests, 40);
    assert_eq!(builder.throttled, 0);
    assert_eq!(builder.images_obtained, 3);
    assert_eq!(builder.addresses, 40);
    assert!(report.notes.iter().any(|n| n.contains("elsewhere.example")));
    let seen = gallery.seen.lock().unwrap();
    let distinct: HashSet<_> = seen
        .requests
        .iter()
        .map(|(_, h)| h["x-forwarded-for"].clone())
        .collect();
    assert_eq!(distinct.len(), 40);
}

// === the binary ===

fn lenscap(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lenscap"))
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test]
async fn json_output_and_exit_code_follow_the_thresholds() {
    let gallery = Gallery::start(Rules::default()).await;
    let dir = std::env::temp_dir().join(format!("lenscap-sim-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, threshold: u64| {
        let path = dir.join(name);
        std::fs::write(
            &path,
            format!(
                "duration = \"20s\"\nmax_requests = 500\n\
                 [[profile]]\nname = \"human\"\nthink = \"0ms\"\n\
                 [[profile]]\nname = \"bulk-downloader\"\n\
                 [thresholds]\nmax_scraper_images = {threshold}\nmax_humans_hindered = 0\n"
            ),
        )
        .unwrap();
        path.display().to_string()
    };
    let strict = write("strict.toml", 20);
    let lenient = write("lenient.toml", 1000);
    let url = gallery.url();

    let (strict_out, lenient_out) = tokio::task::spawn_blocking(move || {
        (
            lenscap(&[
                "simulate",
                "--target",
                &url,
                "--scenario",
                &strict,
                "--json",
            ]),
            lenscap(&[
                "simulate",
                "--target",
                &url,
                "--scenario",
                &lenient,
                "--json",
            ]),
        )
    })
    .await
    .unwrap();

    // An allow-all gallery lets the bulk downloader take all 24 images: over 20, exit 1.
    assert_eq!(strict_out.status.code(), Some(1), "{strict_out:?}");
    let stderr = String::from_utf8_lossy(&strict_out.stderr);
    assert!(
        stderr.contains("bulk-downloader obtained 24 images"),
        "{stderr}"
    );
    assert_eq!(lenient_out.status.code(), Some(0), "{lenient_out:?}");

    let json: Value = serde_json::from_slice(&lenient_out.stdout).unwrap();
    let keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
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
    assert_eq!(json["target"], gallery.url());
    let bulk = &json["profiles"][1];
    let keys: Vec<&str> = bulk
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
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
    assert_eq!(bulk["profile"], "bulk-downloader");
    assert_eq!(bulk["images_obtained"], IMAGES_AVAILABLE);
    assert!(bulk["first_stop_at"].is_null());
    assert!(bulk["p50_ms"].is_number());
    assert_eq!(json["profiles"][0]["profile"], "human");
    // Nobody was stopped: precision undefined, recall 0.
    assert!(json["precision"].is_null());
    assert_eq!(json["recall"], 0.0);
    assert!(json["requests_per_s"].as_f64().unwrap() > 0.0);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn non_loopback_targets_are_refused() {
    for target in [
        "http://192.0.2.1/",
        "http://[2001:db8::1]/",
        "http://10.1.2.3:8080/",
    ] {
        let out = lenscap(&["simulate", "--target", target, "--duration", "1s"]);
        assert_eq!(out.status.code(), Some(2), "{target}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("not a loopback address"), "{stderr}");
        assert!(stderr.contains("--allow-remote"), "{stderr}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn scenario_errors_name_the_key_and_line() {
    let dir = std::env::temp_dir().join(format!("lenscap-sim-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(
        &path,
        "duration = \"5s\"\n[[profile]]\nname = \"human\"\nsesions = 2\n",
    )
    .unwrap();
    let out = lenscap(&[
        "simulate",
        "--target",
        "http://127.0.0.1:9/",
        "--scenario",
        path.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("line 4") && stderr.contains("sesions"),
        "{stderr}"
    );
    let out = lenscap(&[
        "simulate",
        "--target",
        "http://127.0.0.1:9/",
        "--profile",
        "googlebot",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown profile"));
    std::fs::remove_dir_all(&dir).ok();
}
