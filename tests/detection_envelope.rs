//! The human envelope through the real layer, in its own time (a manual clock), against a
//! generated gallery of 300 photos on 15 pages: a script with Chrome's headers, a cookie jar and
//! correct Referers that fetches each page and then its images gets at most 60 photos; people
//! — alone, or twelve with cookies behind one address — are never hindered.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http::{HeaderValue, Request, StatusCode, header};
use http_body_util::BodyExt;
use lenscap::limit::ManualClock;
use lenscap::{LenscapLayer, PeerAddr, Policy, Tls};
use tower::{Service, ServiceExt};

use common::gallery::{App, CHROME, HOST, PER_PAGE, gallery, page_path, photo};

const PAGES: usize = 15;

fn app() -> (App, ManualClock) {
    let clock = ManualClock::new();
    let layer = LenscapLayer::new(Policy::embedded().unwrap()).with_clock(clock.clone());
    let app = tower::ServiceBuilder::new()
        .layer(layer)
        .service(tower::service_fn(gallery));
    (tower::util::BoxCloneService::new(app), clock)
}

/// A client with Chrome's headers, maybe a cookie jar, maybe on HTTPS.
struct Client {
    ip: IpAddr,
    https: bool,
    keeps_cookies: bool,
    jar: Option<String>,
}

impl Client {
    fn new(ip: &str, https: bool, keeps_cookies: bool) -> Client {
        Client {
            ip: ip.parse().unwrap(),
            https,
            keeps_cookies,
            jar: None,
        }
    }

    fn request(&self, path: &str, page: bool, referer: Option<&str>) -> Request<()> {
        let mut b = Request::get(path)
            .header(header::HOST, HOST)
            .header(header::USER_AGENT, CHROME)
            .header(header::ACCEPT_LANGUAGE, "en-GB,en;q=0.9")
            .header(header::ACCEPT_ENCODING, "gzip, deflate, br, zstd");
        b = if page {
            b.header(
                header::ACCEPT,
                "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            )
        } else {
            b.header(
                header::ACCEPT,
                "image/avif,image/webp,image/apng,image/*,*/*;q=0.8",
            )
        };
        if let Some(r) = referer {
            let scheme = if self.https { "https" } else { "http" };
            b = b.header(header::REFERER, format!("{scheme}://{HOST}{r}"));
        }
        if self.https {
            b = b
                .header("sec-ch-ua", "\"Chromium\";v=\"142\"")
                .header("sec-ch-ua-mobile", "?0")
                .header("sec-fetch-dest", if page { "document" } else { "image" })
                .header("sec-fetch-mode", if page { "navigate" } else { "no-cors" })
                .header("sec-fetch-site", "same-origin");
        }
        if let Some(cookie) = &self.jar {
            b = b.header(header::COOKIE, cookie.as_str());
        }
        let mut r = b.body(()).unwrap();
        r.extensions_mut()
            .insert(PeerAddr(SocketAddr::new(self.ip, 50_000)));
        if self.https {
            r.extensions_mut().insert(Tls);
        }
        r
    }

    /// Sends a request and reads the whole body, as a browser or a script does.
    async fn get(
        &mut self,
        app: &mut App,
        path: &str,
        page: bool,
        referer: Option<&str>,
    ) -> StatusCode {
        let request = self.request(path, page, referer);
        let response = app.ready().await.unwrap().call(request).await.unwrap();
        if self.keeps_cookies
            && let Some(set) = response.headers().get(header::SET_COOKIE)
        {
            self.jar = Some(set.to_str().unwrap().split(';').next().unwrap().to_owned());
        }
        let status = response.status();
        if status == StatusCode::TOO_MANY_REQUESTS && std::env::var_os("DEBUG_429").is_some() {
            eprintln!("{path}: {:?}", response.headers().get("ratelimit-policy"));
        }
        let body = response.into_body().collect().await.unwrap().to_bytes();
        if page {
            self.render(app, path, &body).await;
        }
        status
    }

    /// Fetches the render proof a page links, as a browser does (every client here renders:
    /// the scripts that do not are played in tests/real_clients.rs and the simulator).
    async fn render(&mut self, app: &mut App, page: &str, body: &[u8]) {
        let body = String::from_utf8_lossy(body);
        let Some(proof) = common::render_proof_link(&body) else {
            return;
        };
        let mut request = self.request(proof, false, Some(page));
        request.headers_mut().insert(
            header::ACCEPT,
            HeaderValue::from_static("text/css,*/*;q=0.1"),
        );
        let response = app.ready().await.unwrap().call(request).await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "the render proof of {page}"
        );
        response.into_body().collect().await.unwrap();
    }
}

/// One request of a scripted session, at a time in milliseconds.
struct Step {
    at: u64,
    who: usize,
    path: String,
    referer: Option<String>,
    page: bool,
}

/// A person: a page, then its photos a few milliseconds apart, then a pause to look at them
/// (10–40 s), through `pages` pages.
fn person(who: usize, start: u64, pages: std::ops::RangeInclusive<usize>) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut t = start;
    for page in pages {
        steps.push(Step {
            at: t,
            who,
            path: page_path(page),
            referer: None,
            page: true,
        });
        t += 150;
        for i in 0..PER_PAGE {
            t += 2 + ((who * 7 + i * 13) % 30) as u64;
            steps.push(Step {
                at: t,
                who,
                path: photo(page, i),
                referer: Some(page_path(page)),
                page: false,
            });
        }
        t += 10_000 + ((who * 3_331 + page * 1_777) % 30_000) as u64;
    }
    steps
}

/// Plays the steps in time order; the statuses per client.
async fn play(
    app: &mut App,
    clock: &ManualClock,
    clients: &mut [Client],
    mut steps: Vec<Step>,
) -> Vec<Vec<(bool, StatusCode)>> {
    steps.sort_by_key(|s| (s.at, s.who));
    let mut out: Vec<Vec<(bool, StatusCode)>> = clients.iter().map(|_| Vec::new()).collect();
    for step in steps {
        clock.set(Duration::from_millis(step.at));
        let client = &mut clients[step.who];
        let status = client
            .get(app, &step.path, step.page, step.referer.as_deref())
            .await;
        out[step.who].push((step.page, status));
    }
    out
}

fn photos_served(statuses: &[(bool, StatusCode)]) -> usize {
    statuses
        .iter()
        .filter(|(page, s)| !page && *s == StatusCode::OK)
        .count()
}

/// The script of the issue: each page, then its 20 photos with the page as Referer, no pauses
/// (10 ms a request), keeping cookies.
fn page_then_images_script() -> Vec<Step> {
    let mut steps = Vec::new();
    let mut t = 1_000;
    for page in 1..=PAGES {
        steps.push(Step {
            at: t,
            who: 0,
            path: page_path(page),
            referer: None,
            page: true,
        });
        for i in 0..PER_PAGE {
            t += 10;
            steps.push(Step {
                at: t,
                who: 0,
                path: photo(page, i),
                referer: Some(page_path(page)),
                page: false,
            });
        }
        t += 10;
    }
    steps
}

#[tokio::test]
async fn the_page_then_images_script_gets_at_most_60_of_300_photos() {
    for (https, keeps_cookies) in [(false, true), (true, true), (false, false)] {
        let (mut app, clock) = app();
        let mut clients = [Client::new("203.0.113.50", https, keeps_cookies)];
        let out = play(&mut app, &clock, &mut clients, page_then_images_script()).await;
        let served = photos_served(&out[0]);
        eprintln!(
            "page-then-images script (https={https}, cookies={keeps_cookies}): {served} of 300 photos"
        );
        // The target is for the script of the issue (a cookie jar). Without cookies every page
        // lands on the address's record, whose pace is wider (a crowd's first page views share
        // it): three pages' photos and the suspects' small image burst.
        let most = if keeps_cookies { 60 } else { 63 };
        assert!(
            served <= most,
            "https={https} cookies={keeps_cookies}: {served} of 300 photos"
        );
    }
}

#[tokio::test]
async fn a_page_view_vouches_only_for_the_images_that_page_embeds() {
    let (mut app, clock) = app();
    // Someone has viewed page 1 before: its images are known.
    let mut earlier = Client::new("198.51.100.1", false, true);
    clock.set(Duration::from_millis(1));
    assert_eq!(
        earlier.get(&mut app, &page_path(1), true, None).await,
        StatusCode::OK
    );
    // A script views page 1, then pulls every photo of the gallery with page 1 as Referer.
    let mut script = Client::new("203.0.113.60", false, true);
    let mut t = 5_000;
    clock.set(Duration::from_millis(t));
    assert_eq!(
        script.get(&mut app, &page_path(1), true, None).await,
        StatusCode::OK
    );
    let mut served = 0;
    for page in 1..=PAGES {
        for i in 0..PER_PAGE {
            t += 50;
            clock.set(Duration::from_millis(t));
            if script
                .get(&mut app, &photo(page, i), false, Some("/gallery/1"))
                .await
                == StatusCode::OK
            {
                served += 1;
            }
        }
    }
    eprintln!("one page view, every photo: {served} of 300");
    // Page 1's own 20 photos, and no more than the small budget for images nobody vouched for.
    assert!((20..=40).contains(&served), "{served} of 300 photos");
}

#[tokio::test]
async fn people_are_never_hindered_alone_or_twelve_with_cookies_on_one_address() {
    for https in [false, true] {
        let (mut app, clock) = app();
        let mut alone = [Client::new("203.0.113.10", https, true)];
        let out = play(&mut app, &clock, &mut alone, person(0, 0, 1..=PAGES)).await;
        assert!(
            out[0].iter().all(|(_, s)| *s == StatusCode::OK),
            "alone, https={https}: {:?}",
            out[0]
        );
        assert_eq!(photos_served(&out[0]), 300);
    }
    let (mut app, clock) = app();
    let mut crowd: Vec<Client> = (0..12)
        .map(|_| Client::new("198.51.100.7", false, true))
        .collect();
    let steps: Vec<Step> = (0..12)
        .flat_map(|who| person(who, who as u64 * 2_500, 1..=PAGES))
        .collect();
    let out = play(&mut app, &clock, &mut crowd, steps).await;
    for (who, statuses) in out.iter().enumerate() {
        assert!(
            statuses.iter().all(|(_, s)| *s == StatusCode::OK),
            "person {who}: {:?}",
            statuses
                .iter()
                .enumerate()
                .filter(|(_, (_, s))| *s != StatusCode::OK)
                .collect::<Vec<_>>()
        );
    }
}

#[tokio::test]
async fn a_patient_browser_perfect_client_gets_a_persons_share_and_no_more() {
    // A 3,000-photo gallery: 150 pages of 20. One page every 5 s (inside the page pace), each
    // page's photos with its Referer, cookies kept, for 25 minutes (inside one cookie's life).
    let (mut app, clock) = app();
    let mut client = Client::new("203.0.113.70", false, true);
    let mut t = 1_000;
    let mut pages = 0;
    let mut photos = 0;
    for page in 1..=300usize {
        clock.set(Duration::from_millis(t));
        let path = format!("/gallery/{}", (page - 1) % PAGES + 1);
        if client.get(&mut app, &path, true, None).await == StatusCode::OK {
            pages += 1;
        }
        for i in 0..PER_PAGE {
            t += 20;
            clock.set(Duration::from_millis(t));
            let image = photo((page - 1) % PAGES + 1, i);
            if client.get(&mut app, &image, false, Some(&path)).await == StatusCode::OK {
                photos += 1;
            }
        }
        t += 5_000;
    }
    eprintln!("patient client, 25 minutes: {pages} pages, {photos} photos");
    // The documented budget: 41 page views in an hour, each vouching for its 20 photos; the
    // photos of the pages refused after that are held to the suspects' per-minute quota (6 a
    // minute after a burst of 3; 20 minutes of it here).
    assert!(pages <= 41, "{pages} pages");
    assert!(photos <= 41 * PER_PAGE + 3 + 6 * 25, "{photos} photos");
}

#[tokio::test]
async fn six_people_without_cookies_on_one_address_are_never_hindered() {
    let (mut app, clock) = app();
    let mut crowd: Vec<Client> = (0..6)
        .map(|_| Client::new("198.51.100.8", false, false))
        .collect();
    let steps: Vec<Step> = (0..6)
        // Each on pages of their own: person k starts at page 2k + 1.
        .flat_map(|who| person(who, who as u64 * 4_000, (2 * who + 1)..=PAGES))
        .collect();
    let out = play(&mut app, &clock, &mut crowd, steps).await;
    for (who, statuses) in out.iter().enumerate() {
        let refused = statuses
            .iter()
            .filter(|(_, s)| *s != StatusCode::OK)
            .count();
        eprintln!(
            "cookieless person {who}: {refused} of {} refused",
            statuses.len()
        );
    }
    for (who, statuses) in out.iter().enumerate() {
        assert!(
            statuses.iter().all(|(_, s)| *s == StatusCode::OK),
            "cookieless person {who}"
        );
    }
}

#[tokio::test]
async fn pages_that_say_nothing_of_their_images_never_take_credit_away() {
    let (mut app, clock) = app();
    // A link checker sends HEAD for every page first: no body, so nothing is learnt from it.
    for page in 1..=PAGES {
        let mut head = Client::new("192.0.2.5", false, false).request(&page_path(page), true, None);
        *head.method_mut() = http::Method::HEAD;
        let response = app.ready().await.unwrap().call(head).await.unwrap();
        response.into_body().collect().await.unwrap();
    }
    let mut person_steps = person(0, 1_000, 1..=PAGES);
    // And a gallery built by script: its HTML names no image, its photos still come with it.
    person_steps.push(Step {
        at: 900_000,
        who: 0,
        path: "/js/gallery".into(),
        referer: None,
        page: true,
    });
    for i in 0..PER_PAGE {
        person_steps.push(Step {
            at: 900_200 + i as u64 * 20,
            who: 0,
            path: format!("/js/photo-{i}.jpg"),
            referer: Some("/js/gallery".into()),
            page: false,
        });
    }
    let mut clients = [Client::new("203.0.113.11", false, true)];
    let out = play(&mut app, &clock, &mut clients, person_steps).await;
    assert!(
        out[0].iter().all(|(_, s)| *s == StatusCode::OK),
        "{:?}",
        out[0]
    );
}

/// A headless browser walking the gallery: each page, its 20 photos as a renderer fetches
/// them (a few milliseconds apart, the page as Referer), then the next page after `pause`;
/// cookies kept. It never waits on the way-through page (a driver script opens the next URL).
fn headless_walker(pause_ms: u64) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut t = 1_000;
    for page in 1..=PAGES {
        steps.push(Step {
            at: t,
            who: 0,
            path: page_path(page),
            referer: None,
            page: true,
        });
        t += 40;
        for i in 0..PER_PAGE {
            t += 3;
            steps.push(Step {
                at: t,
                who: 0,
                path: photo(page, i),
                referer: Some(page_path(page)),
                page: false,
            });
        }
        t += pause_ms;
    }
    steps
}

#[tokio::test]
async fn a_headless_walker_gets_at_most_80_without_pauses_and_150_with_a_second_between_pages() {
    for (pause, most) in [(0, 80), (1_000, 150)] {
        for https in [false, true] {
            let (mut app, clock) = app();
            let mut walker = [Client::new("203.0.113.60", https, true)];
            let out = play(&mut app, &clock, &mut walker, headless_walker(pause)).await;
            let served = photos_served(&out[0]);
            eprintln!("headless walker, {pause} ms between pages, https={https}: {served} of 300");
            assert!(served <= most, "{pause} ms, https={https}: {served} of 300");
        }
    }
}

/// A patient browser-perfect client on a 3,000-photo gallery (150 pages of 20): one page every
/// `every_ms`, each served page's photos with its Referer, and a fresh cookie whenever a page
/// is refused (it never waits out the way-through page). Pages and photos served in the first
/// hour and in `hours`.
async fn fresh_cookie_rotator(every_ms: u64, hours: u64) -> ((usize, usize), (usize, usize)) {
    let (mut app, clock) = app();
    let mut client = Client::new("203.0.113.71", false, true);
    let (mut pages, mut photos, mut first_hour) = (0, 0, (0, 0));
    let end = hours * 3_600_000;
    let mut t = 1_000;
    let mut page = 0usize;
    while t < end {
        if t >= 3_600_000 && first_hour == (0, 0) {
            first_hour = (pages, photos);
        }
        clock.set(Duration::from_millis(t));
        let n = page % 150 + 1;
        let path = page_path(n);
        if client.get(&mut app, &path, true, None).await == StatusCode::OK {
            pages += 1;
            page += 1;
            for i in 0..PER_PAGE {
                t += 20;
                clock.set(Duration::from_millis(t));
                let image = photo(n, i);
                if client.get(&mut app, &image, false, Some(&path)).await == StatusCode::OK {
                    photos += 1;
                }
            }
        } else {
            client.jar = None;
        }
        t += every_ms;
    }
    if first_hour == (0, 0) {
        first_hour = (pages, photos);
    }
    (first_hour, (pages, photos))
}

#[tokio::test]
async fn fresh_cookies_buy_no_fresh_budget_beyond_the_addresss() {
    for every_ms in [5_000, 20_000] {
        let (hour, day) = fresh_cookie_rotator(every_ms, 24).await;
        eprintln!(
            "fresh cookie whenever refused, a page every {every_ms} ms: first hour {} pages {} photos; a day {} pages {} photos",
            hour.0, hour.1, day.0, day.1
        );
        // The documented address budget (docs/DETECTION.md): one share, 400 photos at once
        // then 200 a day, and its ceiling on distinct photos (700 at once, 50 a day) while a
        // fresh cookie and the one before it are both in the address's 2-minute window; the
        // photos counted here include repeat views, which cost the address a 28th of a share.
        assert!(hour.1 <= 1_300, "{} photos in the first hour", hour.1);
        assert!(day.1 <= 1_900, "{} photos in a day", day.1);
    }
}
