//! Direct photo opens are people too: a guest opening shared photo links one after another in
//! browser tabs, at human pace, is never refused; a script pulling images is, as before.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use lenscap::limit::ManualClock;
use lenscap::{LenscapLayer, PeerAddr, Policy, Tls};
use tower::{Service, ServiceExt};

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:150.0) Gecko/20100101 Firefox/150.0";
const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36";

type App = tower::util::BoxCloneService<
    Request<()>,
    Response<lenscap::ResponseBody<Full<Bytes>>>,
    Infallible,
>;

/// The photo, with the layer's verdict on it (as `x-test-action`) for the assertions.
async fn photo(request: Request<()>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut response = Response::new(Full::new(Bytes::from_static(b"jpeg bytes")));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg"));
    if let Some(verdict) = request.extensions().get::<lenscap::Verdict>() {
        let seen = format!(
            "{} {}",
            verdict.action.as_str(),
            verdict.reasons.names().collect::<Vec<_>>().join(",")
        );
        response
            .headers_mut()
            .insert("x-test-action", HeaderValue::from_str(&seen).unwrap());
    }
    Ok(response)
}

fn app() -> (App, ManualClock) {
    let clock = ManualClock::new();
    let layer = LenscapLayer::new(Policy::embedded().unwrap()).with_clock(clock.clone());
    let app = tower::ServiceBuilder::new()
        .layer(layer)
        .service(tower::service_fn(photo));
    (tower::util::BoxCloneService::new(app), clock)
}

/// The gaps between two opens: a person tapping through links in a chat, 2 to 8 seconds,
/// never regular.
fn human_gaps() -> impl Iterator<Item = Duration> {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    std::iter::repeat_with(move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        Duration::from_millis(2_000 + seed % 6_000)
    })
}

/// One open of a shared link: what a browser sends for a new tab on an image URL.
fn open(n: usize, https: bool, browser: &str, cookie: Option<&str>) -> Request<()> {
    let mut request = Request::get(format!("/events/quiz%20night/IMG_{n:04}.JPG"))
        .header(header::HOST, "thecrown.test")
        .header(header::USER_AGENT, browser)
        .header(
            header::ACCEPT,
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        )
        .header(header::ACCEPT_LANGUAGE, "en-GB,en;q=0.8")
        .header(header::ACCEPT_ENCODING, "gzip, deflate, br");
    if https {
        request = request
            .header("sec-fetch-dest", "document")
            .header("sec-fetch-mode", "navigate")
            .header("sec-fetch-site", "cross-site")
            .header("sec-fetch-user", "?1")
            .header(
                "sec-ch-ua",
                "\"Chromium\";v=\"142\", \"Google Chrome\";v=\"142\"",
            )
            .header("sec-ch-ua-mobile", "?0")
            .header("sec-ch-ua-platform", "\"Windows\"")
            .header("upgrade-insecure-requests", "1");
    }
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    let mut request = request.body(()).unwrap();
    let peer: SocketAddr = "198.51.100.7:40000".parse().unwrap();
    request.extensions_mut().insert(PeerAddr(peer));
    if https {
        request.extensions_mut().insert(Tls);
    }
    request
}

async fn guest_opens_thirty_links(https: bool, browser: &str, keeps_cookies: bool) {
    let (mut app, clock) = app();
    let mut jar: Option<String> = None;
    for (n, gap) in (1..=30).zip(human_gaps()) {
        clock.advance(gap);
        let request = open(n, https, browser, jar.as_deref());
        let response = app.ready().await.unwrap().call(request).await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "open {n} of 30 (https: {https}) refused: {:?}",
            response.headers()
        );
        // Not refused, and not even held as a suspect.
        let action = response.headers()["x-test-action"].to_str().unwrap();
        assert!(action.starts_with("allow"), "open {n}: {action}");
        if keeps_cookies && let Some(set) = response.headers().get(header::SET_COOKIE) {
            jar = Some(set.to_str().unwrap().split(';').next().unwrap().to_owned());
        }
    }
}

#[tokio::test]
async fn a_guest_opening_thirty_shared_photo_links_gets_all_thirty() {
    guest_opens_thirty_links(false, FIREFOX, true).await;
    guest_opens_thirty_links(false, FIREFOX, false).await;
    guest_opens_thirty_links(true, CHROME, true).await;
    guest_opens_thirty_links(true, CHROME, false).await;
}

#[tokio::test]
async fn images_fetched_as_images_are_still_limited_at_the_same_pace() {
    let (mut app, clock) = app();
    let mut refused = 0;
    for (n, gap) in (1..=30).zip(human_gaps()) {
        clock.advance(gap);
        let mut request = Request::get(format!("/events/quiz%20night/IMG_{n:04}.JPG"))
            .header(header::HOST, "thecrown.test")
            .header(header::USER_AGENT, FIREFOX)
            .header(header::ACCEPT, "image/avif,image/webp,*/*")
            .header(header::ACCEPT_LANGUAGE, "en-GB,en;q=0.8")
            .header(header::ACCEPT_ENCODING, "gzip, deflate, br")
            .body(())
            .unwrap();
        request
            .extensions_mut()
            .insert(PeerAddr("198.51.100.7:40000".parse().unwrap()));
        let response = app.ready().await.unwrap().call(request).await.unwrap();
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            refused += 1;
        }
    }
    assert!(
        refused > 0,
        "a script pulling 30 images it never saw on a page was never refused"
    );
}
