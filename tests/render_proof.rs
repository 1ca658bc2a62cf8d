//! Proof of rendering through the layer: the stylesheet link each HTML page gets after its
//! `</head>`, the layer's answer to it, and what a client that never fetches it is allowed:
//! the first two photos of each page vouched, the rest from one site-wide budget, however
//! many addresses the client rotates through. A client that fetches the proof is untouched.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use lenscap::limit::ManualClock;
use lenscap::{LenscapLayer, PeerAddr, Policy};
use tower::{Service, ServiceExt};

const HOST: &str = "pub.example";
const CHROME: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36";
const PHOTOS: usize = 20;

type App = tower::util::BoxCloneService<
    Request<()>,
    Response<lenscap::ResponseBody<Full<Bytes>>>,
    Infallible,
>;

/// `/album/N` embeds 20 photos; `/gzip/N` is the same page compressed; `/frozen/N` says
/// `no-transform`; photos are photos.
async fn site(request: Request<()>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path();
    if path.ends_with(".jpg") {
        let mut response = Response::new(Full::new(Bytes::from_static(b"\xff\xd8\xff\xd9")));
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg"));
        return Ok(response);
    }
    let n = path.rsplit('/').next().unwrap_or("0");
    let images: String = (0..PHOTOS)
        .map(|i| format!("<img src=\"/p/{n}-{i}.jpg\">"))
        .collect();
    let html = format!(
        "<!doctype html><html><head><title>Album {n}</title></head><body>{images}</body></html>"
    );
    let mut response = Response::new(Full::new(Bytes::from(html.clone())));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(html.len()));
    headers.insert(header::ETAG, HeaderValue::from_static("\"album\""));
    if path.starts_with("/gzip/") {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    if path.starts_with("/frozen/") {
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-transform"),
        );
    }
    Ok(response)
}

fn app() -> (App, ManualClock) {
    let clock = ManualClock::new();
    let policy = Policy::from_toml_str("", None).unwrap();
    let layer = LenscapLayer::new(policy).with_clock(clock.clone());
    let app = tower::ServiceBuilder::new()
        .layer(layer)
        .service(tower::service_fn(site));
    (tower::util::BoxCloneService::new(app), clock)
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

/// Chrome's headers from `peer`, with the cookies it was given.
struct Browser {
    peer: SocketAddr,
    jar: Option<String>,
}

impl Browser {
    fn at(peer: &str) -> Browser {
        Browser {
            peer: peer.parse().unwrap(),
            jar: None,
        }
    }

    async fn get(&mut self, app: &mut App, target: &str, referer: Option<&str>) -> Answer {
        let accept = if target.ends_with(".jpg") {
            "image/avif,image/webp,image/apng,image/*,*/*;q=0.8"
        } else if target.contains(".css") {
            "text/css,*/*;q=0.1"
        } else {
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        };
        let mut b = Request::get(target)
            .header(header::HOST, HOST)
            .header(header::USER_AGENT, CHROME)
            .header(header::ACCEPT, accept)
            .header(header::ACCEPT_LANGUAGE, "en-GB,en;q=0.9")
            .header(header::ACCEPT_ENCODING, "gzip, deflate, br");
        if let Some(r) = referer {
            b = b.header(header::REFERER, format!("http://{HOST}{r}"));
        }
        if let Some(cookie) = &self.jar {
            b = b.header(header::COOKIE, cookie.as_str());
        }
        let mut request = b.body(()).unwrap();
        request.extensions_mut().insert(PeerAddr(self.peer));
        let response = app.ready().await.unwrap().call(request).await.unwrap();
        let (parts, body) = response.into_parts();
        if let Some(set) = parts.headers.get(header::SET_COOKIE) {
            self.jar = Some(set.to_str().unwrap().split(';').next().unwrap().to_owned());
        }
        let body = body.collect().await.unwrap().to_bytes();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    /// A page, its render proof when `renders`, then its photos: how many were served.
    async fn view(&mut self, app: &mut App, page: &str, renders: bool) -> usize {
        let answer = self.get(app, page, None).await;
        assert_eq!(answer.status, StatusCode::OK, "{page}");
        if renders {
            let proof = proof_of(&answer).expect("the page carries the render proof");
            let served = self.get(app, &proof, Some(page)).await;
            assert_eq!(served.status, StatusCode::OK, "{}", served.body);
        }
        let n = page.rsplit('/').next().unwrap();
        let mut served = 0;
        for i in 0..PHOTOS {
            let photo = self.get(app, &format!("/p/{n}-{i}.jpg"), Some(page)).await;
            served += usize::from(photo.status == StatusCode::OK);
        }
        served
    }
}

/// The render proof a page links, if any.
fn proof_of(page: &Answer) -> Option<String> {
    common::render_proof_link(&page.body).map(str::to_owned)
}

#[tokio::test]
async fn pages_get_the_proof_after_their_head_and_the_layer_answers_it() {
    let (mut app, _clock) = app();
    let mut person = Browser::at("198.51.100.7:4000");
    let page = person.get(&mut app, "/album/1", None).await;
    let proof = proof_of(&page).expect("a render proof");
    assert!(
        page.body.contains(&format!(
            "</head><link rel=\"stylesheet\" href=\"{proof}\"><body>"
        )),
        "{}",
        page.body
    );
    assert!(page.headers.get(header::CONTENT_LENGTH).is_none());
    assert_eq!(page.headers[header::ETAG], "W/\"album\"");

    let sheet = person.get(&mut app, &proof, Some("/album/1")).await;
    assert_eq!(sheet.status, StatusCode::OK);
    assert_eq!(
        sheet.headers[header::CONTENT_TYPE],
        "text/css; charset=utf-8"
    );
    assert_eq!(sheet.headers[header::CACHE_CONTROL], "no-store");
    assert!(sheet.body.len() < 32, "{}", sheet.body);

    let forged = person
        .get(
            &mut app,
            "/.well-known/lenscap/r.css?t=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            None,
        )
        .await;
    assert_eq!(forged.status, StatusCode::BAD_REQUEST);
    assert!(
        forged.body.contains("not made by this site"),
        "{}",
        forged.body
    );
    let bare = person
        .get(&mut app, "/.well-known/lenscap/r.css", None)
        .await;
    assert_eq!(bare.status, StatusCode::BAD_REQUEST);
    assert!(bare.body.contains("no render proof token"), "{}", bare.body);
}

#[tokio::test]
async fn compressed_and_no_transform_pages_are_left_alone_and_hold_nobody() {
    let (mut app, clock) = app();
    for (n, page) in ["/gzip/1", "/frozen/2"].into_iter().enumerate() {
        clock.set(Duration::from_secs(60 * n as u64 + 1));
        let mut script = Browser::at(&format!("203.0.113.{}:4000", 10 + n));
        let answer = script.get(&mut app, page, None).await;
        assert!(proof_of(&answer).is_none(), "{page}: {}", answer.body);
        assert!(
            answer.headers.get(header::CONTENT_LENGTH).is_some(),
            "{page}"
        );
        // A second view, once the page's images are known: no proof to fetch, no hold.
        clock.set(Duration::from_secs(60 * n as u64 + 10));
        assert_eq!(script.view(&mut app, page, false).await, PHOTOS, "{page}");
    }
}

#[tokio::test]
async fn a_client_that_renders_gets_every_photo_and_one_that_does_not_gets_two_a_page() {
    let (mut app, clock) = app();
    // Someone has viewed the pages before: their images are known.
    for page in 1..=15 {
        clock.set(Duration::from_secs(page));
        Browser::at("192.0.2.1:4000")
            .get(&mut app, &format!("/album/{page}"), None)
            .await;
    }
    // A person who renders, on pages at a person's pace.
    let mut person = Browser::at("198.51.100.7:4000");
    let mut t = 100;
    for page in 1..=3 {
        t += 20;
        clock.set(Duration::from_secs(t));
        let served = person.view(&mut app, &format!("/album/{page}"), true).await;
        assert_eq!(served, PHOTOS, "the person's page {page}");
    }
    // A script that never renders, each page from a new /24 with a fresh cookie jar.
    let mut taken = Vec::new();
    for page in 1..=15u64 {
        t += 1;
        clock.set(Duration::from_secs(t));
        let mut script = Browser::at(&format!("10.{page}.0.9:4000"));
        taken.push(
            script
                .view(&mut app, &format!("/album/{page}"), false)
                .await,
        );
    }
    let total: usize = taken.iter().sum();
    eprintln!("non-rendering script rotating /24s: {taken:?}, {total} of 300");
    // Two a page vouched, and the site's unrendered_images burst (10) shared by all.
    assert_eq!(total, 15 * 2 + 10, "{taken:?}");
    // The person is still untouched: the site's budget is the non-renderers' alone.
    t += 20;
    clock.set(Duration::from_secs(t));
    assert_eq!(person.view(&mut app, "/album/4", true).await, PHOTOS);
    // A newcomer on the person's address (the pub's Wi-Fi) whose photos all outrun its own
    // proof, the site's budget empty: someone on the address renders, so nothing is held.
    t += 20;
    clock.set(Duration::from_secs(t));
    let mut newcomer = Browser::at("198.51.100.7:4001");
    assert_eq!(newcomer.view(&mut app, "/album/5", false).await, PHOTOS);
}
