//! People without cookies sharing one address, through the real layer in its own time (a
//! manual clock), against a generated gallery of 300 photos on 15 pages with an index: the
//! shape of `tests/real_clients.rs`'s six cookieless Chromium people, played fast enough to
//! try many arrivals. Each person types the index's address, clicks its first page, then
//! "next" every 3–6 s; a way-through page is waited out and its refresh followed, as a
//! browser does; each page's photos load with the page's URL (pass and all) as Referer.
//! Nobody may be refused a photo or see the way-through page more than once.
//!
//! And what a pass is worth to a script: a script that waits out one way-through page and
//! then puts the pass in every request's Referer gets no more than the budgets
//! `docs/DETECTION.md` documents.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use lenscap::limit::ManualClock;
use lenscap::{LenscapLayer, PeerAddr, Policy};
use tower::{Service, ServiceExt};

const CHROME: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36";
const HOST: &str = "gallery.test";
const ADDRESS: &str = "198.51.100.77:40000";

/// A gallery's shape.
#[derive(Clone, Copy, Debug)]
struct Shape {
    /// Album pages (the index not counted).
    pages: usize,
    /// Photos on an album page.
    per_page: usize,
    /// The index shows every photo of every album, as the demo gallery's does.
    index_embeds: bool,
    /// The last album's "next" link goes back to the index.
    round: bool,
}

/// The issue's gallery: 300 photos on 15 pages, an index of links only.
const ISSUE: Shape = Shape {
    pages: 15,
    per_page: 20,
    index_embeds: false,
    round: false,
};

/// The bundled demo gallery's shape: 66 photos on 6 pages of 11, all of them on the index
/// too, and people who reach the last page go round again.
const DEMO: Shape = Shape {
    pages: 6,
    per_page: 11,
    index_embeds: true,
    round: true,
};

const PAGES: usize = ISSUE.pages;
const PER_PAGE: usize = ISSUE.per_page;

fn page_path(page: usize) -> String {
    format!("/gallery/{page}.html")
}

fn photo_path(shape: Shape, page: usize, i: usize) -> String {
    format!("/photos/IMG_{:04}.jpg", (page - 1) * shape.per_page + i + 1)
}

/// The album a gallery path shows (`None`: the index, or not an album).
fn album(path: &str) -> Option<usize> {
    path.strip_prefix("/gallery/")
        .and_then(|p| p.strip_suffix(".html"))
        .and_then(|n| n.parse().ok())
}

/// Links and images of one album, as `<a href><img src></a>`.
fn push_photos(body: &mut String, shape: Shape, page: usize) {
    for i in 0..shape.per_page {
        let src = photo_path(shape, page, i);
        body.push_str(&format!("<a href=\"{src}\"><img src=\"{src}\"></a>"));
    }
}

/// The index links every page (and shows their photos when `index_embeds`); a page embeds its
/// photos and links the next page.
fn html(shape: Shape, path: &str) -> String {
    let mut body = String::from("<!doctype html><html><head><title>Gallery</title></head><body>");
    match album(path) {
        None => {
            for p in 1..=shape.pages {
                body.push_str(&format!(
                    "<a class=\"page\" href=\"{}\">{p}</a>",
                    page_path(p)
                ));
                if shape.index_embeds {
                    push_photos(&mut body, shape, p);
                }
            }
        }
        Some(page) => {
            push_photos(&mut body, shape, page);
            let next = if shape.round && page >= shape.pages {
                "/".to_owned()
            } else {
                page_path(page + 1)
            };
            body.push_str(&format!("<a id=\"next\" href=\"{next}\">next</a>"));
        }
    }
    body.push_str("</body></html>");
    body
}

async fn gallery(shape: Shape, request: Request<()>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path();
    let (kind, body) = if path.ends_with(".jpg") {
        ("image/jpeg", Bytes::from_static(b"\xff\xd8\xff\xd9"))
    } else {
        ("text/html; charset=utf-8", Bytes::from(html(shape, path)))
    };
    let mut response = Response::new(Full::new(body));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    Ok(response)
}

type App = tower::util::BoxCloneService<
    Request<()>,
    Response<lenscap::ResponseBody<Full<Bytes>>>,
    Infallible,
>;

fn app(shape: Shape) -> (App, ManualClock) {
    app_with(shape, "")
}

/// The app serving a gallery of `shape` under the default policy with `policy`'s changes.
fn app_with(shape: Shape, policy: &str) -> (App, ManualClock) {
    let clock = ManualClock::new();
    let policy = Policy::from_toml_str(policy, None).unwrap();
    let layer = LenscapLayer::new(policy).with_clock(clock.clone());
    let app = tower::ServiceBuilder::new()
        .layer(layer)
        .service(tower::service_fn(move |request| gallery(shape, request)));
    (tower::util::BoxCloneService::new(app), clock)
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

/// A request with Chromium's headers on plain HTTP, no cookies, from the shared address.
async fn get(app: &mut App, target: &str, referer: Option<&str>) -> Answer {
    let image = target.split('?').next().unwrap().ends_with(".jpg");
    let accept = if image {
        "image/avif,image/webp,image/apng,image/*,*/*;q=0.8"
    } else {
        "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
    };
    let mut b = Request::get(target)
        .header(header::HOST, HOST)
        .header(header::USER_AGENT, CHROME)
        .header(header::ACCEPT, accept)
        .header(header::ACCEPT_LANGUAGE, "en-US,en;q=0.9")
        .header(header::ACCEPT_ENCODING, "gzip, deflate");
    if let Some(r) = referer {
        b = b.header(header::REFERER, format!("http://{HOST}{r}"));
    }
    let mut request = b.body(()).unwrap();
    request
        .extensions_mut()
        .insert(PeerAddr(ADDRESS.parse::<SocketAddr>().unwrap()));
    let response = app.ready().await.unwrap().call(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// The `href` of the first link whose text follows `marker` in the page, unescaped.
fn link_after(page: &Answer, marker: &str) -> String {
    let at = page.body.find(marker).expect("the link") + marker.len();
    let end = at + page.body[at..].find('"').unwrap();
    page.body[at..end].replace("&amp;", "&")
}

/// The pass URL of a way-through page (its refresh), unescaped.
fn refresh_url(page: &Answer) -> String {
    link_after(page, ";url=")
}

/// Fetches the render proof a page links, as a browser fetches a page's stylesheets before
/// its photos.
async fn render(app: &mut App, page: &Answer, target: &str) {
    let Some(proof) = common::render_proof_link(&page.body) else {
        return;
    };
    let answer = get(app, proof, Some(target)).await;
    assert_eq!(
        answer.status,
        StatusCode::OK,
        "the render proof of {target}"
    );
}

fn is_way_through(page: &Answer) -> bool {
    page.status == StatusCode::TOO_MANY_REQUESTS && page.body.contains("http-equiv=\"refresh\"")
}

fn retry_after(page: &Answer) -> u64 {
    page.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// What happens next, in time order.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// Open `target` (typed when `from` is `None`, a click otherwise).
    Open {
        target: String,
        from: Option<String>,
    },
    /// Load a photo of the page at `from`.
    Photo { path: String, from: String },
    /// The way-through page's refresh: open the pass URL, then follow its redirect.
    Refresh { url: String, from: String },
}

/// One person's visit so far.
#[derive(Default, Debug)]
struct Visit {
    /// Gallery pages reached (the index not counted).
    pages: usize,
    last_navigation: u64,
    step: u64,
    way_through: usize,
    refused_photos: usize,
    photos: usize,
    refused_pages: Vec<String>,
    /// Photos this person's browser has loaded already (it does not ask again).
    cache: HashSet<String>,
}

/// The gap from one navigation to the next, as `tests/real_clients.rs` pauses: 3–6 s.
fn gap(who: usize, step: u64) -> u64 {
    3_000 + (who as u64 * 733 + step * 389) % 3_000
}

/// The event queue: by time, then person, then order of scheduling.
#[derive(Default)]
struct Queue {
    events: BTreeMap<(u64, usize, u64), Event>,
    seq: u64,
}

impl Queue {
    fn push(&mut self, at: u64, who: usize, event: Event) {
        self.seq += 1;
        self.events.insert((at, who, self.seq), event);
    }
}

/// The `src` of every `<img>` of a page.
fn images_of(page: &Answer) -> Vec<String> {
    let marker = "<img src=\"";
    page.body
        .match_indices(marker)
        .map(|(at, _)| {
            let at = at + marker.len();
            page.body[at..at + page.body[at..].find('"').unwrap()].to_owned()
        })
        .collect()
}

/// Six people without cookies on one address, arriving `apart_ms` apart, each reading a
/// gallery of `shape` from its index by its links until they have seen `albums` album pages.
async fn six_cookieless(shape: Shape, apart_ms: u64, albums: usize) -> Vec<Visit> {
    let (mut app, clock) = app(shape);
    let mut visits: Vec<Visit> = (0..6).map(|_| Visit::default()).collect();
    let mut queue = Queue::default();
    for (who, visit) in visits.iter_mut().enumerate() {
        let at = 1_000 + who as u64 * apart_ms;
        visit.last_navigation = at;
        let target = "/".to_owned();
        queue.push(at, who, Event::Open { target, from: None });
    }
    while let Some(((at, who, _), event)) = queue.events.pop_first() {
        clock.set(Duration::from_millis(at));
        let visit = &mut visits[who];
        let (target, from, answer) = match event {
            Event::Photo { path, from } => {
                visit.photos += 1;
                let photo = get(&mut app, &path, Some(&from)).await;
                if photo.status != StatusCode::OK {
                    visit.refused_photos += 1;
                    eprintln!(
                        "{at} ms, person {who}: {path} (from {from}) answered {} {:?}",
                        photo.status,
                        photo.headers.get("ratelimit-policy")
                    );
                }
                continue;
            }
            Event::Open { target, from } => {
                let answer = get(&mut app, &target, from.as_deref()).await;
                (target, from, answer)
            }
            Event::Refresh { url, from } => {
                let accepted = get(&mut app, &url, Some(&from)).await;
                assert_eq!(accepted.status, StatusCode::SEE_OTHER, "{}", accepted.body);
                let target = accepted.headers[header::LOCATION]
                    .to_str()
                    .unwrap()
                    .to_owned();
                let answer = get(&mut app, &target, Some(&from)).await;
                (target, Some(from), answer)
            }
        };
        if is_way_through(&answer) {
            visit.way_through += 1;
            eprintln!(
                "{at} ms, person {who}: way through at {target} ({:?}), wait {} s",
                answer.headers.get("ratelimit-policy"),
                retry_after(&answer)
            );
            let url = refresh_url(&answer);
            queue.push(
                at + retry_after(&answer) * 1_000 + 100,
                who,
                Event::Refresh { url, from: target },
            );
            continue;
        }
        if answer.status != StatusCode::OK {
            visit
                .refused_pages
                .push(format!("{target}: {}", answer.status));
            eprintln!("{at} ms, person {who}: {target} answered {}", answer.status);
            continue;
        }
        let _ = from;
        render(&mut app, &answer, &target).await;
        let fresh = images_of(&answer)
            .into_iter()
            .filter(|src| visit.cache.insert(src.clone()));
        for (i, path) in fresh.enumerate() {
            let when = at + 120 + (i as u64 * 37 + who as u64 * 11) % 900;
            let from = target.clone();
            queue.push(when, who, Event::Photo { path, from });
        }
        let next = match album(target.split('?').next().unwrap()) {
            None => link_after(&answer, "<a class=\"page\" href=\""),
            Some(_) => {
                visit.pages += 1;
                if visit.pages >= albums {
                    continue;
                }
                link_after(&answer, "<a id=\"next\" href=\"")
            }
        };
        visit.step += 1;
        let when = (visit.last_navigation + gap(who, visit.step)).max(at + 1_000);
        visit.last_navigation = when;
        queue.push(
            when,
            who,
            Event::Open {
                target: next,
                from: Some(target),
            },
        );
    }
    visits
}

/// The crowd's table line and whether nobody was hindered.
fn report(name: &str, visits: &[Visit], albums: usize) -> bool {
    let way: Vec<usize> = visits.iter().map(|v| v.way_through).collect();
    let refused: Vec<usize> = visits.iter().map(|v| v.refused_photos).collect();
    let pages: Vec<usize> = visits.iter().map(|v| v.pages).collect();
    eprintln!("{name}: pages {pages:?}, way-through {way:?}, photos refused {refused:?}");
    visits.iter().all(|v| {
        v.way_through <= 1
            && v.refused_photos == 0
            && v.refused_pages.is_empty()
            && v.pages == albums
    })
}

#[tokio::test]
async fn six_people_without_cookies_on_one_address_are_never_hindered() {
    let mut all = true;
    // Spacings from 0 to 14.5 s every 0.5 s all pass; these are the ones that failed before
    // (4 to 9.25 s) and a spread around them.
    for apart in [
        0, 700, 2_000, 4_000, 5_000, 5_750, 6_000, 8_000, 8_750, 9_250, 12_000,
    ] {
        let visits = six_cookieless(ISSUE, apart, PAGES).await;
        all &= report(&format!("arriving {apart} ms apart"), &visits, PAGES);
    }
    assert!(all, "a cookieless person was hindered (see above)");
}

/// The demo gallery's shape: the index shows all 66 photos, so six people arriving together
/// ask for 396 photos of one page on the address's one record before any of them has a pass;
/// then they go round the six albums twice (their browsers have every photo by then).
#[tokio::test]
async fn six_people_without_cookies_arriving_together_on_the_demo_gallery_are_never_hindered() {
    let mut all = true;
    for apart in [0, 5, 300, 1_000, 2_500, 4_000] {
        let visits = six_cookieless(DEMO, apart, 2 * DEMO.pages).await;
        let photos: usize = visits.iter().map(|v| v.photos).sum();
        all &= report(
            &format!("demo, arriving {apart} ms apart, {photos} photos asked"),
            &visits,
            2 * DEMO.pages,
        );
    }
    assert!(all, "a cookieless person was hindered (see above)");
}

/// A script on the crowd's kind of address, no cookies, Chrome's headers: each page (its
/// Referer the page before, as a click), then its 20 photos with the page's URL as Referer,
/// 10 ms apart. With `redeem`, it waits out the first way-through page it is shown and from
/// then on puts that pass in every URL and every Referer. The photos it got.
async fn cookieless_script(redeem: bool) -> (usize, usize) {
    let (mut app, clock) = app(ISSUE);
    let mut t = 1_000u64;
    let mut pass: Option<String> = None;
    let mut from: Option<String> = None;
    let (mut photos, mut ways) = (0, 0);
    let with_pass = |target: &str, pass: &Option<String>| match pass {
        Some(p) => format!("{target}?lc-pass={p}"),
        None => target.to_owned(),
    };
    for page in 1..=PAGES {
        clock.set(Duration::from_millis(t));
        let target = with_pass(&page_path(page), &pass);
        let answer = get(&mut app, &target, from.as_deref()).await;
        if is_way_through(&answer) {
            ways += 1;
            if redeem && pass.is_none() {
                t += retry_after(&answer) * 1_000;
                clock.set(Duration::from_millis(t));
                let accepted = get(&mut app, &refresh_url(&answer), Some(&target)).await;
                let location = accepted.headers[header::LOCATION].to_str().unwrap();
                pass = location.split_once("lc-pass=").map(|(_, p)| p.to_owned());
                get(&mut app, location, Some(&target)).await;
            }
        }
        // Whatever the page said: the script knows the photos' names.
        let referer = with_pass(&page_path(page), &pass);
        for i in 0..PER_PAGE {
            t += 10;
            clock.set(Duration::from_millis(t));
            let photo = get(&mut app, &photo_path(ISSUE, page, i), Some(&referer)).await;
            photos += usize::from(photo.status == StatusCode::OK);
        }
        from = Some(referer);
        t += 10;
    }
    (photos, ways)
}

#[tokio::test]
async fn a_cookieless_script_gains_nothing_from_a_crowd_or_a_pass_in_every_referer() {
    let (plain, plain_ways) = cookieless_script(false).await;
    let (passed, passed_ways) = cookieless_script(true).await;
    eprintln!(
        "cookieless page-then-images script with Referers: {plain} of 300 photos \
         ({plain_ways} way-through pages ignored); redeeming one pass and sending it in every \
         Referer: {passed} of 300 ({passed_ways} way-through pages)"
    );
    // The issue's target for the page-then-images script, and a pass is a person's share:
    // its own pace (3 pages at once), so a few pages' photos more at most.
    assert!(plain <= 60, "{plain} of 300");
    assert!(passed <= 60 + 3 * PER_PAGE, "{passed} of 300");
}

/// A script without cookies that types each page's address `arrivals` times in a row (no
/// Referer: a crowd's newcomers, served beyond the address's pace), then takes the page's 20
/// photos, 10 ms apart. The distinct photos it got.
async fn arriving_script(arrivals: usize) -> usize {
    let (mut app, clock) = app(ISSUE);
    let mut t = 1_000u64;
    let mut got = HashSet::new();
    for page in 1..=PAGES {
        for _ in 0..arrivals {
            t += 10;
            clock.set(Duration::from_millis(t));
            get(&mut app, &page_path(page), None).await;
        }
        for i in 0..PER_PAGE {
            t += 10;
            clock.set(Duration::from_millis(t));
            let path = photo_path(ISSUE, page, i);
            if get(&mut app, &path, Some(&page_path(page))).await.status == StatusCode::OK {
                got.insert(path);
            }
        }
    }
    got.len()
}

#[tokio::test]
async fn arriving_on_a_page_again_and_again_buys_a_script_no_photo() {
    let once = arriving_script(1).await;
    let thrice = arriving_script(3).await;
    let often = arriving_script(10).await;
    eprintln!(
        "cookieless script typing each page's address once: {once} of 300 photos; three times: \
         {thrice}; ten times: {often}"
    );
    // Arriving again on a page earns credit only for a page the address viewed at its pace.
    assert!(thrice <= once && often <= once, "{once}, {thrice}, {often}");
    assert!(once <= 60, "{once} of 300");
}

/// Way-through pages a cookieless script clicking a link every 200 ms from `start_ms` is
/// shown in `clicks` clicks (it never redeems them).
async fn passes_offered(app: &mut App, clock: &ManualClock, start_ms: u64, clicks: u64) -> usize {
    let mut offered = 0;
    for n in 0..clicks {
        clock.set(Duration::from_millis(start_ms + n * 200));
        let page = 1 + (n as usize % PAGES);
        let answer = get(app, &page_path(page), Some(&page_path(page.max(2) - 1))).await;
        offered += usize::from(is_way_through(&answer));
    }
    offered
}

#[tokio::test]
async fn an_address_that_goes_quiet_does_not_get_its_burst_of_passes_back() {
    // The cleanup runs every 100 ms of real time here, reading the manual clock.
    let (mut app, clock) = app_with(ISSUE, "[limits]\ncleanup_every = \"100ms\"\n");
    let first = passes_offered(&mut app, &clock, 1_000, 40).await;
    // Eleven minutes later, past `idle_after` (10 min): every idle record is dropped.
    let later = 1_000 + 11 * 60_000;
    clock.set(Duration::from_millis(later));
    tokio::time::sleep(Duration::from_millis(400)).await;
    let again = passes_offered(&mut app, &clock, later, 40).await;
    eprintln!("passes offered to one address: {first} at once, {again} eleven minutes later");
    // The default: 8 at once per address, then 6 an hour (one every 10 minutes).
    assert_eq!(first, 8);
    assert!(again <= 2, "{again} passes eleven minutes later");
}
