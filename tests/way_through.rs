//! The way-through page, through the real layer in its own time (a manual clock): a person
//! refused a page view gets a small HTML page and a pass valid after a short wait, with cookies
//! or without; passes are bound to the client, bounded per address, and never given to images,
//! catalogued crawlers or trap-marked clients.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use lenscap::limit::{Clock, ManualClock};
use lenscap::{LenscapLayer, PeerAddr, Policy};
use tower::{Service, ServiceExt};

const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36";
const HOST: &str = "gallery.test";

type App = tower::util::BoxCloneService<
    Request<()>,
    Response<lenscap::ResponseBody<Full<Bytes>>>,
    Infallible,
>;

/// Pages link the next page and embed three photos; photos are photos.
async fn site(request: Request<()>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path();
    let (kind, body) = if path.ends_with(".jpg") {
        ("image/jpeg", Bytes::from_static(b"\xff\xd8\xff\xd9"))
    } else {
        let n: usize = path
            .strip_prefix("/album/")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let html = format!(
            "<!doctype html><html><head><title>Album {n}</title></head><body>\
             <img src=\"/p/{n}-1.jpg\"><img src=\"/p/{n}-2.jpg\"><img src=\"/p/{n}-3.jpg\">\
             <a href=\"/album/{}\">next</a> <a href=\"https://elsewhere.example/\">away</a></body></html>",
            n + 1
        );
        ("text/html; charset=utf-8", Bytes::from(html))
    };
    let mut response = Response::new(Full::new(body));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    Ok(response)
}

fn app(policy: &str) -> (App, ManualClock) {
    let clock = ManualClock::new();
    let policy = Policy::from_toml_str(policy, None).unwrap();
    let layer = LenscapLayer::new(policy).with_clock(clock.clone());
    let app = tower::ServiceBuilder::new()
        .layer(layer)
        .service(tower::service_fn(site));
    (tower::util::BoxCloneService::new(app), clock)
}

/// A small page budget, so a person runs out of it in a few page views.
const SMALL_BUDGET: &str = "[limits]\npages = { rate = \"2/day\", burst = 2 }\n";

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

/// A browser: Chrome's headers from one address, a cookie jar when it keeps cookies.
struct Browser {
    peer: SocketAddr,
    user_agent: &'static str,
    keeps_cookies: bool,
    jar: Vec<String>,
}

impl Browser {
    fn new(peer: &str, keeps_cookies: bool) -> Browser {
        Browser {
            peer: peer.parse().unwrap(),
            user_agent: CHROME,
            keeps_cookies,
            jar: Vec::new(),
        }
    }

    async fn get(&mut self, app: &mut App, target: &str, referer: Option<&str>) -> Answer {
        let image = target.split('?').next().unwrap().ends_with(".jpg");
        let accept = if image {
            "image/avif,image/webp,image/apng,image/*,*/*;q=0.8"
        } else {
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        };
        let mut b = Request::get(target)
            .header(header::HOST, HOST)
            .header(header::USER_AGENT, self.user_agent)
            .header(header::ACCEPT, accept)
            .header(header::ACCEPT_LANGUAGE, "en-GB,en;q=0.9")
            .header(header::ACCEPT_ENCODING, "gzip, deflate, br");
        if let Some(r) = referer {
            b = b.header(header::REFERER, format!("http://{HOST}{r}"));
        }
        if !self.jar.is_empty() {
            b = b.header(header::COOKIE, self.jar.join("; "));
        }
        let mut request = b.body(()).unwrap();
        request.extensions_mut().insert(PeerAddr(self.peer));
        let response = app.ready().await.unwrap().call(request).await.unwrap();
        let (parts, body) = response.into_parts();
        if self.keeps_cookies {
            for set in parts.headers.get_all(header::SET_COOKIE) {
                let pair = set.to_str().unwrap().split(';').next().unwrap().to_owned();
                let name = pair.split('=').next().unwrap().to_owned();
                self.jar.retain(|c| !c.starts_with(&format!("{name}=")));
                self.jar.push(pair);
            }
        }
        let body = body.collect().await.unwrap().to_bytes();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }
}

/// The pass URL of a way-through page (its `<meta http-equiv=refresh>`), unescaped.
fn refresh_url(page: &Answer) -> String {
    let at = page.body.find(";url=").expect("a refresh to the pass URL") + 5;
    let end = at + page.body[at..].find('"').unwrap();
    page.body[at..end].replace("&amp;", "&")
}

fn assert_way_through(page: &Answer) {
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS, "{}", page.body);
    assert_eq!(page.headers[header::CACHE_CONTROL], "no-store");
    assert!(
        page.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let retry: u64 = page.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    assert!(
        page.body
            .contains("<meta http-equiv=\"refresh\" content=\"")
    );
    assert!(
        page.body.contains("<button type=\"submit\">"),
        "{}",
        page.body
    );
    assert!(page.body.contains("href=\"/ai-policy\""), "{}", page.body);
    assert!(!page.body.contains("<script"), "no JavaScript needed");
}

#[tokio::test]
async fn a_person_out_of_page_views_gets_a_pass_after_a_short_wait_with_cookies() {
    let policy = format!("{SMALL_BUDGET}[reservation]\ncontact = \"owner@pub.example\"\n");
    let (mut app, clock) = app(&policy);
    let mut person = Browser::new("203.0.113.20:40000", true);
    let mut t = 1_000;
    let mut refused = None;
    for n in 1..=6 {
        clock.set(Duration::from_millis(t));
        let page = person.get(&mut app, &format!("/album/{n}"), None).await;
        if page.status != StatusCode::OK {
            refused = Some((n, page));
            break;
        }
        t += 20_000;
    }
    let (n, page) = refused.expect("the small page budget runs out");
    assert_way_through(&page);
    assert!(
        page.body.contains("mailto:owner@pub.example"),
        "{}",
        page.body
    );
    let pass_url = refresh_url(&page);
    assert!(
        pass_url.starts_with("/.well-known/lenscap/pass?t="),
        "{pass_url}"
    );
    assert!(
        pass_url.contains(&format!("to=%2Falbum%2F{n}")),
        "{pass_url}"
    );

    // Before the wait is over the pass is refused: the same page again, for the time left.
    let early = person.get(&mut app, &pass_url, None).await;
    assert_way_through(&early);
    assert!(person.jar.iter().all(|c| !c.starts_with("lenscap-pass=")));

    // After it: back to the page, the pass in its URL and in a cookie.
    clock.set(Duration::from_millis(t + 3_000));
    let accepted = person.get(&mut app, &pass_url, None).await;
    assert_eq!(accepted.status, StatusCode::SEE_OTHER, "{}", accepted.body);
    let location = accepted.headers[header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        location.starts_with(&format!("/album/{n}?lc-pass=")),
        "{location}"
    );
    assert!(person.jar.iter().any(|c| c.starts_with("lenscap-pass=")));
    let back = person.get(&mut app, &location, None).await;
    assert_eq!(back.status, StatusCode::OK, "{}", back.body);
    for i in 1..=3 {
        let photo = person
            .get(&mut app, &format!("/p/{n}-{i}.jpg"), Some(&location))
            .await;
        assert_eq!(photo.status, StatusCode::OK);
    }
    // The pass is a person's share again, not unlimited: the pass holder's own page budget
    // runs out too, and then it is offered the way through once more.
    let mut statuses = Vec::new();
    for m in 1..=4 {
        clock.set(Duration::from_millis(t + 3_000 + m * 20_000));
        statuses.push(
            person
                .get(&mut app, &format!("/album/{}", n + m), None)
                .await
                .status,
        );
    }
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn a_pass_is_bound_to_its_browser_and_network_and_expires() {
    let (mut app, clock) = app(SMALL_BUDGET);
    let mut person = Browser::new("203.0.113.21:40000", true);
    // The first page view is a newcomer's (charged to the subnet), then two of the budget.
    for n in 1..=3 {
        clock.set(Duration::from_millis(n * 15_000));
        assert_eq!(
            person
                .get(&mut app, &format!("/album/{n}"), None)
                .await
                .status,
            StatusCode::OK
        );
    }
    clock.set(Duration::from_millis(60_000));
    let page = person.get(&mut app, "/album/4", None).await;
    assert_way_through(&page);
    let pass_url = refresh_url(&page);
    clock.set(Duration::from_millis(70_000));

    // Another network, another browser, a forged pass: refused, saying why.
    let mut elsewhere = Browser::new("198.51.100.9:40000", true);
    elsewhere.jar = person.jar.clone();
    let other_net = elsewhere.get(&mut app, &pass_url, None).await;
    assert_eq!(other_net.status, StatusCode::BAD_REQUEST);
    assert!(
        other_net.body.contains("another browser or network"),
        "{}",
        other_net.body
    );
    let mut firefox = Browser::new("203.0.113.21:40001", true);
    firefox.jar = person.jar.clone();
    firefox.user_agent = "Mozilla/5.0 (X11; Linux x86_64; rv:150.0) Gecko/20100101 Firefox/150.0";
    assert_eq!(
        firefox.get(&mut app, &pass_url, None).await.status,
        StatusCode::BAD_REQUEST
    );
    let forged = pass_url.replace("t=", "t=A");
    let answer = person.get(&mut app, &forged, None).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(answer.body.contains("not a pass"), "{}", answer.body);

    // The pass URL never sends anyone to another site.
    let away = pass_url.replace("to=%2Falbum%2F4", "to=%2F%2Fevil.example%2F");
    let answer = person.get(&mut app, &away, None).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    assert!(
        answer.headers[header::LOCATION]
            .to_str()
            .unwrap()
            .starts_with("/?lc-pass=")
    );

    // After its lifetime (30 minutes) it is worth nothing.
    clock.set(Duration::from_millis(60_000 + 31 * 60_000));
    let late = person.get(&mut app, &pass_url, None).await;
    assert_eq!(late.status, StatusCode::BAD_REQUEST);
    assert!(late.body.contains("expired"), "{}", late.body);
}

#[tokio::test]
async fn passes_are_bounded_per_address_and_their_wait_grows() {
    let (mut app, clock) = app(SMALL_BUDGET);
    // A script on one address, a fresh cookie jar for every page, never redeeming: each page
    // beyond the budget of its visitor asks for a pass.
    let mut waits = Vec::new();
    let mut bare = 0;
    let mut t = 1_000;
    for _ in 0..30 {
        let mut script = Browser::new("203.0.113.30:40000", true);
        for n in 1..=4 {
            clock.set(Duration::from_millis(t));
            t += 20_000;
            let page = script.get(&mut app, &format!("/album/{n}"), None).await;
            if page.status != StatusCode::TOO_MANY_REQUESTS {
                continue;
            }
            if page.body.contains("http-equiv=\"refresh\"") {
                waits.push(
                    page.headers[header::RETRY_AFTER]
                        .to_str()
                        .unwrap()
                        .parse::<u64>()
                        .unwrap(),
                );
            } else {
                bare += 1;
            }
        }
    }
    eprintln!(
        "passes issued: {} (waits {waits:?}), bare 429s: {bare}",
        waits.len()
    );
    // The default: 8 passes at once per address, then 6 an hour (40 minutes here).
    assert!((8..=12).contains(&waits.len()), "{waits:?}");
    assert!(bare > 0);
    assert!(waits.windows(2).take(7).all(|w| w[1] > w[0]), "{waits:?}");
}

#[tokio::test]
async fn images_crawlers_and_trapped_clients_never_get_the_page() {
    let (mut app, clock) = app(SMALL_BUDGET);
    // Images: a bare 429, never a page an <img> cannot show.
    let mut grabber = Browser::new("203.0.113.40:40000", true);
    let mut last = None;
    for i in 0..40 {
        clock.set(Duration::from_millis(1_000 + i * 10));
        last = Some(grabber.get(&mut app, &format!("/p/x-{i}.jpg"), None).await);
    }
    let last = last.unwrap();
    assert_eq!(last.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        last.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );

    // A trap-marked client: no pass.
    let mut trapped = Browser::new("203.0.113.41:40000", true);
    clock.set(Duration::from_millis(10_000));
    trapped.get(&mut app, "/album/1", None).await;
    trapped.get(&mut app, "/lenscap-trap/x", None).await;
    for n in 2..=4 {
        clock.set(Duration::from_millis(10_000 + n * 20_000));
        let page = trapped.get(&mut app, &format!("/album/{n}"), None).await;
        assert!(
            !page.body.contains("http-equiv=\"refresh\""),
            "{}",
            page.body
        );
    }

    // A catalogued crawler: its category's action, never a pass.
    let mut bot = Browser::new("203.0.113.42:40000", true);
    bot.user_agent = "Mozilla/5.0 (compatible; Bytespider; spider-feedback@bytedance.com)";
    for n in 1..=4 {
        clock.set(Duration::from_millis(100_000 + n * 20_000));
        let page = bot.get(&mut app, &format!("/album/{n}"), None).await;
        assert!(
            !page.body.contains("http-equiv=\"refresh\""),
            "{}",
            page.body
        );
    }
}

/// The `next` link of an album page, as served (unescaped).
fn next_link(page: &Answer) -> String {
    let end = page.body.find("\">next</a>").expect("a next link");
    let start = page.body[..end].rfind("href=\"").unwrap() + 6;
    page.body[start..end].replace("&amp;", "&")
}

/// The render proof a page links (`/.well-known/lenscap/r.css?t=…`), if any.
fn render_proof(page: &Answer) -> Option<String> {
    common::render_proof_link(&page.body).map(str::to_owned)
}

/// A person: opens `target` from the page `from` (a click on a link: the Referer); when
/// offered the way through, waits as the page says and follows its refresh, as a browser
/// does. Then loads the page's photos with the page as Referer. Returns the page as served,
/// its URL, whether the way-through page was shown, and how many photos were refused.
async fn view(
    person: &mut Browser,
    app: &mut App,
    clock: &ManualClock,
    target: &str,
    from: Option<&str>,
) -> (Answer, String, bool, usize) {
    let mut page = person.get(app, target, from).await;
    let mut url = target.to_owned();
    let mut offered = false;
    if page.status == StatusCode::TOO_MANY_REQUESTS && page.body.contains("http-equiv") {
        offered = true;
        eprintln!(
            "{target}: way through for {:?}",
            page.headers.get("ratelimit-policy")
        );
        let wait: u64 = page.headers[header::RETRY_AFTER]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        clock.advance(Duration::from_secs(wait));
        let accepted = person.get(app, &refresh_url(&page), None).await;
        assert_eq!(accepted.status, StatusCode::SEE_OTHER, "{}", accepted.body);
        url = accepted.headers[header::LOCATION]
            .to_str()
            .unwrap()
            .to_owned();
        page = person.get(app, &url, None).await;
    }
    assert_eq!(page.status, StatusCode::OK, "{url}: {}", page.body);
    if let Some(proof) = render_proof(&page) {
        // A browser fetches the page's stylesheets, Lenscap's render proof among them.
        let answer = person.get(app, &proof, Some(&url)).await;
        assert_eq!(answer.status, StatusCode::OK, "the render proof of {url}");
    }
    let n = url
        .trim_start_matches("/album/")
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    let mut refused = 0;
    for i in 1..=3 {
        let photo = person
            .get(app, &format!("/p/{n}-{i}.jpg"), Some(&url))
            .await;
        if photo.status != StatusCode::OK {
            eprintln!(
                "{url} photo {i}: {} {:?}",
                photo.status,
                photo.headers.get("ratelimit-policy")
            );
        }
        refused += usize::from(photo.status != StatusCode::OK);
    }
    (page, url, offered, refused)
}

#[tokio::test]
async fn a_cookieless_person_clicking_fast_gets_through_once_and_the_links_carry_the_pass() {
    let (mut app, clock) = app("");
    let mut person = Browser::new("198.51.100.50:40000", false);
    let mut target = "/album/1".to_owned();
    let mut from: Option<String> = None;
    let mut offered = 0;
    // Six quick clicks (index, album, next, next, …), then a page every 6 s.
    let mut t = 1_000;
    for step in 0..14u64 {
        t += if step < 6 { 1_000 } else { 6_000 };
        clock.set(Duration::from_millis(t));
        let (page, url, way, refused) =
            view(&mut person, &mut app, &clock, &target, from.as_deref()).await;
        offered += usize::from(way);
        assert_eq!(refused, 0, "photos of {url} refused");
        target = next_link(&page);
        from = Some(url.clone());
        if url.contains("lc-pass=") {
            assert!(target.contains("lc-pass="), "{target}");
            assert!(
                page.body.contains("href=\"https://elsewhere.example/\""),
                "{}",
                page.body
            );
        }
    }
    assert_eq!(offered, 1);
}

#[tokio::test]
async fn six_people_without_cookies_on_one_address_get_through_at_most_once_each() {
    let (mut app, clock) = app("");
    let mut crowd: Vec<Browser> = (0..6)
        .map(|_| Browser::new("198.51.100.60:40000", false))
        .collect();
    let mut targets: Vec<String> = (0..6).map(|who| format!("/album/{}", who * 20)).collect();
    let mut from: Vec<Option<String>> = vec![None; 6];
    let mut offered = [0usize; 6];
    // They arrive about 5 s apart (an arrival without a Referer cannot be told from a crowd's
    // newcomer who keeps cookies, so it is served as one); once in, each navigates every 4.2 s
    // (the six together: one every 0.7 s), also after a wait.
    let mut t = 1_000;
    for tick in 0..96u64 {
        let who = (tick % 6) as usize;
        t = t.max(u64::from(clock.now_ms())) + 700;
        clock.set(Duration::from_millis(t));
        if tick < who as u64 * 7 {
            continue;
        }
        let (page, url, way, refused) = view(
            &mut crowd[who],
            &mut app,
            &clock,
            &targets[who],
            from[who].as_deref(),
        )
        .await;
        assert_eq!(refused, 0, "person {who}: photos of {url} refused");
        offered[who] += usize::from(way);
        targets[who] = next_link(&page);
        from[who] = Some(url);
    }
    eprintln!("way-through pages shown: {offered:?}");
    assert!(offered.iter().all(|&n| n <= 1), "{offered:?}");
}

#[tokio::test]
async fn a_walker_that_waits_out_every_way_through_page_gets_a_persons_pace_and_no_more() {
    let (mut app, clock) = app("");
    // A headless browser that lets every refresh run: one page a second for ten minutes,
    // cookies kept.
    let mut walker = Browser::new("203.0.113.90:40000", true);
    let (mut pages, mut waits, mut refused) = (0u64, 0u64, 0u64);
    let mut t = 1_000u64;
    let mut n = 1;
    while t < 601_000 {
        clock.set(Duration::from_millis(t));
        let mut page = walker.get(&mut app, &format!("/album/{n}"), None).await;
        if page.body.contains("http-equiv=\"refresh\"") {
            waits += 1;
            let wait: u64 = page.headers[header::RETRY_AFTER]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            clock.advance(Duration::from_secs(wait));
            let accepted = walker.get(&mut app, &refresh_url(&page), None).await;
            let location = accepted.headers[header::LOCATION]
                .to_str()
                .unwrap()
                .to_owned();
            page = walker.get(&mut app, &location, None).await;
        }
        if page.status == StatusCode::OK {
            pages += 1;
            n += 1;
        } else {
            if refused == 0 {
                eprintln!(
                    "first refusal: {} {:?}",
                    page.status,
                    page.headers.get("ratelimit-policy")
                );
            }
            refused += 1;
        }
        t = t.max(u64::from(clock.now_ms())) + 1_000;
    }
    eprintln!(
        "walker waiting out the way through: {pages} pages in 10 min, {waits} waits, {refused} refused"
    );
    // A person's pace is 15 pages a minute after a burst of 3: each pass gives the burst back
    // (8 passes at once for the address, then 6 an hour), nothing more.
    assert!(pages <= 150 + 3 * (1 + 8 + 1), "{pages} pages");
    assert!(refused > 0);
}
