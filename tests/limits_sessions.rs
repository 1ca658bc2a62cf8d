//! Scripted sessions through the real layer, in their own time (a manual clock): people are
//! never throttled, harvesters are stopped early.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use lenscap::limit::ManualClock;
use lenscap::{LenscapLayer, PeerAddr, Policy, Tls};
use tower::{Service, ServiceExt};

const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36";
const PAGES: usize = 8;
const PER_PAGE: usize = 8;
const HOST: &str = "gallery.test";

fn page_path(page: usize) -> String {
    format!("/gallery/{page}")
}

fn image_path(page: usize, i: usize) -> String {
    format!("/photos/IMG_{:04}.jpg", (page - 1) * PER_PAGE + i + 1)
}

type App = tower::util::BoxCloneService<
    Request<()>,
    Response<lenscap::ResponseBody<Full<Bytes>>>,
    Infallible,
>;

async fn photo(request: Request<()>) -> Result<Response<Full<Bytes>>, Infallible> {
    let image = request.uri().path().ends_with(".jpg");
    let mut response = Response::new(Full::new(Bytes::from_static(b"content")));
    let kind = if image { "image/jpeg" } else { "text/html" };
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    Ok(response)
}

fn app_with(policy: &str) -> (App, ManualClock, LenscapLayer) {
    let clock = ManualClock::new();
    let layer =
        LenscapLayer::new(Policy::from_toml_str(policy, None).unwrap()).with_clock(clock.clone());
    let app = tower::ServiceBuilder::new()
        .layer(layer.clone())
        .service(tower::service_fn(photo));
    (tower::util::BoxCloneService::new(app), clock, layer)
}

fn app() -> (App, ManualClock) {
    let (app, clock, _) = app_with("");
    (app, clock)
}

/// A client: an address, plain HTTP or HTTPS, a browser's headers, maybe a cookie jar.
#[derive(Clone)]
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

    fn base(&self, path: &str) -> http::request::Builder {
        let mut b = Request::get(path)
            .header(header::HOST, HOST)
            .header(header::USER_AGENT, CHROME)
            .header(header::ACCEPT_LANGUAGE, "en-GB,en;q=0.9")
            .header(header::ACCEPT_ENCODING, "gzip, deflate, br, zstd");
        if self.https {
            b = b
                .header(
                    "sec-ch-ua",
                    "\"Chromium\";v=\"142\", \"Google Chrome\";v=\"142\"",
                )
                .header("sec-ch-ua-mobile", "?0")
                .header("sec-ch-ua-platform", "\"Windows\"");
        }
        if let Some(cookie) = &self.jar {
            b = b.header(header::COOKIE, cookie.as_str());
        }
        b
    }

    fn finish(&self, b: http::request::Builder) -> Request<()> {
        let mut r = b.body(()).unwrap();
        r.extensions_mut()
            .insert(PeerAddr(SocketAddr::new(self.ip, 50_000)));
        if self.https {
            r.extensions_mut().insert(Tls);
        }
        r
    }

    fn page(&self, path: &str) -> Request<()> {
        let mut b = self.base(path).header(
            header::ACCEPT,
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        );
        if self.https {
            b = b
                .header("sec-fetch-dest", "document")
                .header("sec-fetch-mode", "navigate")
                .header("sec-fetch-site", "same-origin");
        }
        self.finish(b)
    }

    fn image(&self, path: &str, referer: Option<&str>) -> Request<()> {
        let mut b = self.base(path).header(
            header::ACCEPT,
            "image/avif,image/webp,image/apng,image/*,*/*;q=0.8",
        );
        if let Some(r) = referer {
            let scheme = if self.https { "https" } else { "http" };
            b = b.header(header::REFERER, format!("{scheme}://{HOST}{r}"));
        }
        if self.https {
            b = b
                .header("sec-fetch-dest", "image")
                .header("sec-fetch-mode", "no-cors")
                .header("sec-fetch-site", "same-origin");
        }
        self.finish(b)
    }

    async fn send(
        &mut self,
        app: &mut App,
        request: Request<()>,
    ) -> Response<lenscap::ResponseBody<Full<Bytes>>> {
        let response = app.ready().await.unwrap().call(request).await.unwrap();
        if self.keeps_cookies
            && let Some(set) = response.headers().get(header::SET_COOKIE)
        {
            self.jar = Some(set.to_str().unwrap().split(';').next().unwrap().to_owned());
        }
        response
    }
}

/// One request of a scripted session, at a time in milliseconds.
#[derive(Clone)]
struct Step {
    at: u64,
    who: usize,
    path: String,
    referer: Option<String>,
    page: bool,
}

/// A person: a page, then its images a few milliseconds apart, then a pause to look.
fn person(who: usize, start: u64) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut t = start;
    for page in 1..=PAGES {
        steps.push(Step {
            at: t,
            who,
            path: page_path(page),
            referer: None,
            page: true,
        });
        t += 80;
        for i in 0..PER_PAGE {
            t += 3 + ((who * 7 + i * 13) % 40) as u64;
            steps.push(Step {
                at: t,
                who,
                path: image_path(page, i),
                referer: Some(page_path(page)),
                page: false,
            });
        }
        t += 12_000 + ((who * 3_331 + page * 1_777) % 30_000) as u64;
    }
    steps
}

/// A walker: every page, then every image (with the right Referer), 10 ms apart.
fn walker(who: usize, start: u64) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut t = start;
    for page in 1..=PAGES {
        steps.push(Step {
            at: t,
            who,
            path: page_path(page),
            referer: None,
            page: true,
        });
        t += 10;
    }
    for page in 1..=PAGES {
        for i in 0..PER_PAGE {
            steps.push(Step {
                at: t,
                who,
                path: image_path(page, i),
                referer: Some(page_path(page)),
                page: false,
            });
            t += 10;
        }
    }
    steps
}

/// Runs the steps in time order; returns the statuses per client, in order.
async fn play(
    app: &mut App,
    clock: &ManualClock,
    clients: &mut [Client],
    mut steps: Vec<Step>,
) -> Vec<Vec<(bool, StatusCode)>> {
    steps.sort_by_key(|s| s.at);
    let mut out = vec![Vec::new(); clients.len()];
    for step in steps {
        clock.set(Duration::from_millis(step.at));
        let client = &mut clients[step.who];
        let request = if step.page {
            client.page(&step.path)
        } else {
            client.image(&step.path, step.referer.as_deref())
        };
        let status = client.send(app, request).await.status();
        out[step.who].push((step.page, status));
    }
    out
}

fn images_served_before_stop(statuses: &[(bool, StatusCode)]) -> usize {
    statuses
        .iter()
        .filter(|(page, _)| !page)
        .take_while(|(_, s)| *s == StatusCode::OK)
        .count()
}

#[tokio::test]
async fn a_person_is_never_throttled_on_http_or_https() {
    for https in [false, true] {
        for keeps_cookies in [true, false] {
            let (mut app, clock) = app();
            let mut clients = [Client::new("203.0.113.10", https, keeps_cookies)];
            let out = play(&mut app, &clock, &mut clients, person(0, 0)).await;
            assert_eq!(out[0].len(), PAGES * (PER_PAGE + 1));
            assert!(
                out[0].iter().all(|(_, s)| *s == StatusCode::OK),
                "https={https} cookies={keeps_cookies}: {:?}",
                out[0]
            );
        }
    }
}

#[tokio::test]
async fn thirty_people_behind_one_address_are_never_throttled_and_a_walker_among_them_is_stopped() {
    for walker_keeps_cookies in [true, false] {
        let (mut app, clock) = app();
        let mut clients: Vec<Client> = (0..30)
            .map(|_| Client::new("198.51.100.7", false, true))
            .collect();
        clients.push(Client::new("198.51.100.7", false, walker_keeps_cookies));
        let mut steps: Vec<Step> = (0..30)
            .flat_map(|who| person(who, who as u64 * 1_500))
            .collect();
        steps.extend(walker(30, 20_000));
        let out = play(&mut app, &clock, &mut clients, steps).await;
        for (who, statuses) in out[..30].iter().enumerate() {
            assert!(
                statuses.iter().all(|(_, s)| *s == StatusCode::OK),
                "person {who}: {statuses:?}"
            );
        }
        let served = images_served_before_stop(&out[30]);
        assert!(
            served < 24,
            "walker (cookies: {walker_keeps_cookies}) got {served} of {} images before being stopped",
            PAGES * PER_PAGE
        );
        let refused = out[30].iter().filter(|(_, s)| *s != StatusCode::OK).count();
        assert!(
            refused > PAGES * PER_PAGE / 2,
            "walker refused only {refused} times"
        );
    }
}

fn script_image(ip: &str, n: usize) -> Request<()> {
    let c = Client::new(ip, true, false);
    c.image(&format!("/photos/IMG_{n:04}.jpg"), None)
}

/// A script pulling 500 numbered images with full Chrome headers and no page views, one
/// every 20 ms, from the address `ip_of(n)` gives for the `n`-th; the statuses in order.
async fn script_pulls_500_images(ip_of: impl Fn(usize) -> String) -> Vec<StatusCode> {
    let (mut app, clock) = app();
    let mut statuses = Vec::new();
    for n in 1..=500 {
        clock.advance(Duration::from_millis(20));
        let r = app
            .ready()
            .await
            .unwrap()
            .call(script_image(&ip_of(n), n))
            .await
            .unwrap();
        statuses.push(r.status());
    }
    statuses
}

#[tokio::test]
async fn a_script_with_chrome_headers_and_no_page_views_is_stopped_within_twenty_images() {
    let statuses = script_pulls_500_images(|_| "192.0.2.50".to_owned()).await;
    let first_refusal = statuses.iter().position(|s| *s != StatusCode::OK).unwrap();
    assert!(
        first_refusal < 20,
        "first refusal at image {}",
        first_refusal + 1
    );
    let served = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    assert!(served < 40, "{served} of 500 served");
}

#[tokio::test]
async fn rotating_through_a_subnet_buys_no_fresh_budget() {
    let statuses = script_pulls_500_images(|n| format!("192.0.2.{}", n % 254 + 1)).await;
    let first_refusal = statuses.iter().position(|s| *s != StatusCode::OK).unwrap();
    assert!(
        first_refusal <= 20,
        "first refusal at image {}",
        first_refusal + 1
    );
    let served = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    assert!(served < 40, "{served} of 500 served");
}

#[tokio::test]
async fn a_forged_cookie_earns_nothing() {
    let (mut app, clock) = app();
    let mut statuses = Vec::new();
    for n in 1..=100 {
        clock.advance(Duration::from_millis(20));
        let mut request = script_image("192.0.2.60", n);
        request.headers_mut().insert(
            header::COOKIE,
            HeaderValue::from_static("lenscap=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        );
        statuses.push(
            app.ready()
                .await
                .unwrap()
                .call(request)
                .await
                .unwrap()
                .status(),
        );
    }
    assert!(statuses.iter().position(|s| *s != StatusCode::OK).unwrap() < 20);
}

#[tokio::test]
async fn an_honest_ai_crawler_gets_no_image() {
    let (mut app, _clock) = app();
    for ua in [
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)",
        "CCBot/2.0 (https://commoncrawl.org/faq/)",
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; ClaudeBot/1.0; +claudebot@anthropic.com)",
    ] {
        for n in 1..=10 {
            let mut r = Request::get(format!("/photos/IMG_{n:04}.jpg"))
                .header(header::USER_AGENT, ua)
                .header(header::ACCEPT, "*/*")
                .body(())
                .unwrap();
            r.extensions_mut()
                .insert(PeerAddr("192.0.2.99:4000".parse().unwrap()));
            let status = app.ready().await.unwrap().call(r).await.unwrap().status();
            assert_ne!(status, StatusCode::OK, "{ua} got an image");
        }
    }
}

#[tokio::test]
async fn retry_after_is_the_limiters_wait_rounded_up_and_never_zero() {
    // 7/min: one request every 8.571… s.
    let (mut app, clock, _) = app_with("[limits]\nimages = { rate = \"7/min\", burst = 2 }\n");
    let ip = "192.0.2.70";
    let call = |app: &mut App, n| {
        let request = script_image(ip, n);
        let app = app.clone();
        async move { app.oneshot(request).await.unwrap() }
    };
    assert_eq!(call(&mut app, 1).await.status(), StatusCode::OK);
    assert_eq!(call(&mut app, 2).await.status(), StatusCode::OK);
    let refused = call(&mut app, 3).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    // Burst spent at t=0: the next cell is free after one period, 8.57 s: 9 whole seconds.
    assert_eq!(refused.headers()[header::RETRY_AFTER], "9");
    assert_eq!(refused.headers()["ratelimit-policy"], "\"images\";q=2;w=18");
    assert_eq!(refused.headers()["ratelimit"], "\"images\";r=0;t=9");
    // Honest: refused a second before Retry-After, served at it.
    clock.advance(Duration::from_secs(8));
    let refused = call(&mut app, 4).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers()[header::RETRY_AFTER], "1");
    clock.advance(Duration::from_secs(1));
    assert_eq!(call(&mut app, 5).await.status(), StatusCode::OK);

    // 30/min, burst 1: one request every 2 s exactly. A millisecond early is still 1 s.
    let (mut app, clock, _) = app_with("[limits]\nimages = { rate = \"30/min\", burst = 1 }\n");
    assert_eq!(call(&mut app, 1).await.status(), StatusCode::OK);
    clock.advance(Duration::from_millis(1_999));
    let refused = call(&mut app, 2).await;
    assert_eq!(refused.headers()[header::RETRY_AFTER], "1");
    clock.advance(Duration::from_millis(1));
    assert_eq!(call(&mut app, 3).await.status(), StatusCode::OK);
    let refused = call(&mut app, 4).await;
    assert_eq!(refused.headers()[header::RETRY_AFTER], "2");
}

#[tokio::test]
async fn eviction_holds_the_map_at_its_cap_and_the_layer_keeps_answering() {
    let (mut app, clock, layer) = app_with("[limits]\nmax_tracked_clients = 1024\n");
    for n in 0..20_000u32 {
        clock.advance(Duration::from_millis(1));
        let ip = std::net::Ipv4Addr::from(0x0a00_0000 + n * 7);
        let request = Client::new(&ip.to_string(), false, false).page("/");
        app.ready().await.unwrap().call(request).await.unwrap();
        assert!(layer.limits().tracked_clients() <= 1024);
    }
    assert!(layer.limits().evictions() >= 20_000 - 1024);
    let mut human = Client::new("203.0.113.200", false, true);
    let out = play(
        &mut app,
        &clock,
        std::slice::from_mut(&mut human),
        person(0, 30_000),
    )
    .await;
    assert!(out[0].iter().all(|(_, s)| *s == StatusCode::OK));
}

#[tokio::test]
async fn a_trap_answers_harmlessly_and_marks_the_client() {
    let (mut app, _clock) = app();
    let c = Client::new("192.0.2.80", false, false);
    let trap = app
        .ready()
        .await
        .unwrap()
        .call(c.page("/lenscap-trap/all-photos"))
        .await
        .unwrap();
    assert_eq!(trap.status(), StatusCode::OK);
    assert!(
        trap.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = app
        .ready()
        .await
        .unwrap()
        .call(c.page("/gallery/1"))
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::FORBIDDEN);
    let other = Client::new("192.0.3.80", false, false);
    let page = app
        .ready()
        .await
        .unwrap()
        .call(other.page("/gallery/1"))
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
}

#[tokio::test]
async fn robots_then_a_disallowed_path_blocks() {
    let (mut app, _clock, _) = app_with("[traps]\ndisallowed = [\"/private/\"]\n");
    let c = Client::new("192.0.2.81", false, false);
    let robots = app
        .ready()
        .await
        .unwrap()
        .call(c.finish(c.base("/robots.txt")))
        .await
        .unwrap();
    assert_eq!(robots.status(), StatusCode::OK);
    let page = app
        .ready()
        .await
        .unwrap()
        .call(c.page("/private/album"))
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn page_views_get_a_signed_visitor_cookie() {
    let (mut app, _clock) = app();
    let c = Client::new("192.0.2.82", true, true);
    let r = app
        .ready()
        .await
        .unwrap()
        .call(c.page("/gallery/1"))
        .await
        .unwrap();
    let set = r.headers()[header::SET_COOKIE].to_str().unwrap();
    for attr in [
        "lenscap=",
        "HttpOnly",
        "SameSite=Lax",
        "Max-Age=1800",
        "Secure",
    ] {
        assert!(set.contains(attr), "{set}");
    }
    let r = app
        .ready()
        .await
        .unwrap()
        .call(c.image("/photos/IMG_0001.jpg", Some("/gallery/1")))
        .await
        .unwrap();
    assert!(r.headers().get(header::SET_COOKIE).is_none());
}

#[tokio::test]
async fn a_trap_marks_the_cookie_visitor_that_followed_it_and_nobody_else_on_its_address() {
    let (mut app, clock) = app();
    let ip = "192.0.2.90";
    let mut crawler = Client::new(ip, false, true);
    let r = crawler.send(&mut app, crawler.page("/gallery/1")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(crawler.jar.is_some(), "the crawler holds a visitor cookie");
    clock.advance(Duration::from_secs(2));
    let trap = crawler
        .send(&mut app, crawler.page("/lenscap-trap/all-photos"))
        .await;
    assert_eq!(trap.status(), StatusCode::OK);
    // 75 s later, with its cookie and the right Referer, it gets no photo and no page.
    clock.advance(Duration::from_secs(75));
    for i in 0..PER_PAGE {
        let r = crawler
            .send(
                &mut app,
                crawler.image(&image_path(1, i), Some("/gallery/1")),
            )
            .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "image {i}");
    }
    let r = crawler.send(&mut app, crawler.page("/gallery/2")).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // A new visitor from the same address, with cookies and without, browses as before.
    for keeps_cookies in [true, false] {
        let mut clients = [Client::new(ip, false, keeps_cookies)];
        let start = u64::from(lenscap::limit::Clock::now_ms(&clock));
        let out = play(&mut app, &clock, &mut clients, person(0, start)).await;
        assert!(
            out[0].iter().all(|(_, s)| *s == StatusCode::OK),
            "cookies={keeps_cookies}: {:?}",
            out[0]
        );
    }
}
