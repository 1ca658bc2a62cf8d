//! What each detection signal of the human envelope costs on the requests that pay for it,
//! measured as differences between two services that differ only in that signal, on the same
//! requests, in the same run:
//!
//! - per page view: the embed scan of the page's HTML (`embedded_only` on against off, at two
//!   page sizes, so the cost per KB is the slope) and the render-proof link (`render_proof` on
//!   against off, both scanning);
//! - the render-proof request itself (`/.well-known/lenscap/r.css?t=…`), whole;
//! - per anonymous click (no cookie, no pass, a same-site Referer): the cookieless-crowd
//!   lookup, as the click against the same page view arriving without a Referer;
//! - per image with a same-site Referer: the embed lookup (`embedded_only` on against off).
//!
//! Instructions per request (repeatable on a shared machine):
//! `cargo bench --bench signals --no-run`, then
//! `valgrind --tool=callgrind --callgrind-out-file=cg.out target/release/deps/signals-…` and
//! `callgrind_annotate --inclusive=yes cg.out | grep 'signals::drive_'`: each `drive_*`
//! function sends [`REQUESTS`] requests (`LENSCAP_BENCH_REQUESTS` to change it) (and drops their answers, bodies read to the end).
//! Run natively it prints nanoseconds per request and the differences (noisy when shared).

use std::convert::Infallible;
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Instant;

use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use futures_util::FutureExt;
use http::{Request, Response, header};
use http_body_util::BodyExt;
use lenscap::{LenscapLayer, Policy};
use tower::{Service, ServiceExt};

mod support;

const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36";
const PEER: &str = "203.0.113.9:50000";
const HOST: &str = "gallery.test";
/// Requests per contender and round, unless `LENSCAP_BENCH_REQUESTS` says otherwise.
const REQUESTS: usize = 5_000;

fn requests_per_round() -> usize {
    std::env::var("LENSCAP_BENCH_REQUESTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(REQUESTS)
}

/// Limits generous enough that every measured request stays on the allow path (no pace, no
/// budget is met however often the bench repeats a request); the signals keep their defaults.
const POLICY: &str = support::GENEROUS_LIMITS;

/// A page of about `kb` KiB: a head with a stylesheet, then photos in links, as a gallery.
fn page_html(kb: usize) -> Bytes {
    let mut html = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Gallery</title>\
         <link rel=\"stylesheet\" href=\"/style.css\"></head><body><main><div class=\"grid\">\n",
    );
    let mut i = 1;
    while html.len() < kb * 1024 - 40 {
        html.push_str(&format!(
            "<a href=\"/photos/IMG_{i:04}.jpg\"><img src=\"/photos/IMG_{i:04}.jpg\" alt=\"photo {i}\" width=\"128\" height=\"96\"></a>\n"
        ));
        i += 1;
    }
    html.push_str("</div></main></body></html>\n");
    Bytes::from(html)
}

fn pages() -> &'static [Bytes; 2] {
    static PAGES: OnceLock<[Bytes; 2]> = OnceLock::new();
    PAGES.get_or_init(|| [page_html(4), page_html(16)])
}

/// The inner service: `/s/….html` a 4 KiB page, `/l/….html` a 16 KiB one, anything else a
/// ten-byte JPEG.
async fn site(request: Request<()>) -> Result<Response<Body>, Infallible> {
    let path = request.uri().path();
    let (kind, body) = if path.ends_with(".html") {
        let big = path.starts_with("/l/");
        (
            "text/html; charset=utf-8",
            pages()[usize::from(big)].clone(),
        )
    } else {
        ("image/jpeg", Bytes::from_static(b"jpeg bytes"))
    };
    let mut response = Response::new(Body::from(body));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, http::HeaderValue::from_static(kind));
    Ok(response)
}

/// What a request is.
#[derive(Clone, Copy)]
enum Ask {
    /// A navigation to a page.
    Page,
    /// An image of a page.
    Image,
    /// The page's render-proof stylesheet.
    Style,
}

fn request(target: &str, ask: Ask, cookie: Option<&str>, referer: Option<&str>) -> Request<()> {
    let accept = match ask {
        Ask::Page => "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        Ask::Image => "image/avif,image/webp,image/apng,image/*,*/*;q=0.8",
        Ask::Style => "text/css,*/*;q=0.1",
    };
    let mut b = Request::get(target)
        .header(header::HOST, HOST)
        .header(header::USER_AGENT, CHROME)
        .header(header::ACCEPT, accept)
        .header(header::ACCEPT_LANGUAGE, "en-GB,en;q=0.9")
        .header(header::ACCEPT_ENCODING, "gzip, deflate, br, zstd");
    if let Some(r) = referer {
        b = b.header(header::REFERER, format!("http://{HOST}{r}"));
    }
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    let mut r = b.body(()).unwrap();
    r.extensions_mut()
        .insert(ConnectInfo(PEER.parse::<SocketAddr>().unwrap()));
    r
}

/// The service's answer to one request (every contender answers at once).
fn respond<S: Service<Request<()>, Error = Infallible>>(
    service: &mut S,
    request: Request<()>,
) -> S::Response {
    let ready = service.ready().now_or_never().unwrap().unwrap();
    ready
        .call(request)
        .now_or_never()
        .expect("answers at once")
        .unwrap()
}

/// A response's body read to the end (a page's body is where the scan and the link run).
fn read<B: http_body::Body>(body: B) -> Bytes
where
    B::Error: std::fmt::Debug,
{
    let collected = body.collect().now_or_never().expect("a body at once");
    collected.unwrap().to_bytes()
}

/// One answer's status and body length.
fn call<S, B>(service: &mut S, request: Request<()>) -> (u16, usize)
where
    S: Service<Request<()>, Response = Response<B>, Error = Infallible>,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let (parts, body) = respond(service, request).into_parts();
    if parts.status != 200 {
        // Says which quota refused it (`drive` then fails: every request must be served).
        eprintln!(
            "refused: {}",
            support::refusal(parts.status, &parts.headers)
        );
    }
    (parts.status.as_u16(), read(body).len())
}

type Lenscap =
    tower::util::BoxCloneService<Request<()>, Response<lenscap::ResponseBody<Body>>, Infallible>;

/// A Lenscap service under [`POLICY`] plus `extra`, and the cookie of a person who viewed
/// `page` on it (and so whose photos of it are vouched).
fn lenscap(extra: &str, page: &str) -> (Lenscap, String, Response<()>) {
    let policy = Policy::from_toml_str(&format!("{POLICY}{extra}"), None).unwrap();
    let mut service = tower::util::BoxCloneService::new(
        tower::ServiceBuilder::new()
            .layer(LenscapLayer::new(policy))
            .service(tower::service_fn(site)),
    );
    let (parts, body) = respond(&mut service, request(page, Ask::Page, None, None)).into_parts();
    let html = read(body);
    let cookie = support::visitor_cookie(&parts.headers);
    let mut head = Response::new(());
    *head.headers_mut() = parts.headers;
    // Keep the page's render-proof link for the proof contender.
    if let Some(at) = find(&html, b"/.well-known/lenscap/r.css?t=") {
        let end = at + html[at..].iter().position(|&b| b == b'"').unwrap();
        let link = String::from_utf8(html[at..end].to_vec()).unwrap();
        head.headers_mut()
            .insert(header::LINK, link.parse().unwrap());
    }
    (service, cookie, head)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Sends every request, drops every answer; asserts that all were served whole.
#[inline(always)]
fn drive(service: &mut Lenscap, requests: Vec<Request<()>>) {
    let mut refused = 0;
    for r in requests {
        let (status, len) = call(service, r);
        refused += usize::from(status != 200 || len == 0);
        black_box(len);
    }
    assert_eq!(refused, 0, "every request is on the allow path");
}

// One named function per contender, so callgrind attributes instructions to each (the
// `black_box`ed tags keep the linker from folding them into one).
macro_rules! drivers {
    ($($name:ident = $tag:literal),* $(,)?) => {$(
        #[inline(never)]
        fn $name(s: &mut Lenscap, r: Vec<Request<()>>) {
            black_box($tag);
            drive(s, r)
        }
    )*};
}

drivers! {
    drive_page_4k_no_scan = 0,
    drive_page_16k_no_scan = 1,
    drive_page_4k_scan = 2,
    drive_page_16k_scan = 3,
    drive_page_4k_scan_proof = 4,
    drive_page_16k_scan_proof = 5,
    drive_render_proof_request = 6,
    drive_anonymous_arrival = 7,
    drive_anonymous_click = 8,
    drive_image_no_lookup = 9,
    drive_image_embed_lookup = 10,
}

const NO_SCAN: &str = "embedded_only = false\nrender_proof = false\n";
const SCAN: &str = "render_proof = false\n";

/// One contender: a name, its service and the requests it is sent.
struct Contender {
    name: &'static str,
    drive: fn(&mut Lenscap, Vec<Request<()>>),
    service: Lenscap,
    make: Box<dyn Fn() -> Request<()>>,
    /// Sent before each round, untimed (an image's page view, so the page is a recent one).
    before_round: Option<Box<dyn Fn() -> Request<()>>>,
}

fn page_contender(
    name: &'static str,
    drive: fn(&mut Lenscap, Vec<Request<()>>),
    extra: &str,
    page: &'static str,
) -> Contender {
    let (service, cookie, _) = lenscap(extra, page);
    Contender {
        name,
        drive,
        service,
        make: Box::new(move || request(page, Ask::Page, Some(&cookie), Some(page))),
        before_round: None,
    }
}

fn contenders() -> Vec<Contender> {
    let mut all = vec![
        page_contender(
            "page view 4 KiB, no scan",
            drive_page_4k_no_scan,
            NO_SCAN,
            "/s/1.html",
        ),
        page_contender(
            "page view 16 KiB, no scan",
            drive_page_16k_no_scan,
            NO_SCAN,
            "/l/1.html",
        ),
        page_contender(
            "page view 4 KiB, embed scan",
            drive_page_4k_scan,
            SCAN,
            "/s/1.html",
        ),
        page_contender(
            "page view 16 KiB, embed scan",
            drive_page_16k_scan,
            SCAN,
            "/l/1.html",
        ),
        page_contender(
            "page view 4 KiB, scan + proof link",
            drive_page_4k_scan_proof,
            "",
            "/s/1.html",
        ),
        page_contender(
            "page view 16 KiB, scan + proof link",
            drive_page_16k_scan_proof,
            "",
            "/l/1.html",
        ),
    ];
    let (service, cookie, head) = lenscap("", "/s/1.html");
    let proof = head.headers()[header::LINK].to_str().unwrap().to_owned();
    all.push(Contender {
        name: "render-proof request",
        drive: drive_render_proof_request,
        service,
        make: Box::new(move || request(&proof, Ask::Style, Some(&cookie), Some("/s/1.html"))),
        before_round: None,
    });
    for (name, drive, referer) in [
        (
            "anonymous page view, arriving (no Referer)",
            drive_anonymous_arrival as fn(&mut Lenscap, Vec<Request<()>>),
            None,
        ),
        (
            "anonymous page view, a click (same-site Referer)",
            drive_anonymous_click,
            Some("/s/2.html"),
        ),
    ] {
        let (service, _, _) = lenscap(SCAN, "/s/1.html");
        all.push(Contender {
            name,
            drive,
            service,
            make: Box::new(move || request("/s/1.html", Ask::Page, None, referer)),
            before_round: None,
        });
    }
    for (name, drive, extra) in [
        (
            "image of a viewed page, no embed lookup",
            drive_image_no_lookup as fn(&mut Lenscap, Vec<Request<()>>),
            NO_SCAN,
        ),
        (
            "image of a viewed page, embed lookup",
            drive_image_embed_lookup,
            SCAN,
        ),
    ] {
        let (service, cookie, _) = lenscap(extra, "/s/1.html");
        let page_cookie = cookie.clone();
        all.push(Contender {
            name,
            drive,
            service,
            make: Box::new(move || {
                request(
                    "/photos/IMG_0001.jpg",
                    Ask::Image,
                    Some(&cookie),
                    Some("/s/1.html"),
                )
            }),
            before_round: Some(Box::new(move || {
                request(
                    "/s/1.html",
                    Ask::Page,
                    Some(&page_cookie),
                    Some("/s/1.html"),
                )
            })),
        });
    }
    all
}

fn main() {
    let mut all = contenders();
    // LENSCAP_BENCH_ONLY=image: only the contenders whose name holds it (no differences).
    let only = std::env::var("LENSCAP_BENCH_ONLY").ok();
    if let Some(only) = &only {
        all.retain(|c| c.name.contains(only.as_str()));
    }
    let mut ns = Vec::new();
    let n = requests_per_round();
    for c in &mut all {
        // A warm-up round, then the measured one.
        for measured in [false, true] {
            // A page view earns its page's credit (about 40 photos of the 4 KiB page).
            let views = c.before_round.as_ref().map_or(0, |_| n / 20 + 1);
            for page in c.before_round.iter().cycle().take(views) {
                let status = call(&mut c.service, page()).0;
                assert_eq!(status, 200, "{}: its page view", c.name);
            }
            let requests: Vec<_> = (0..n).map(|_| (c.make)()).collect();
            let start = Instant::now();
            (c.drive)(&mut c.service, requests);
            if measured {
                ns.push(start.elapsed().as_nanos() as f64 / n as f64);
            }
        }
    }
    println!("per request (the whole service, answers read to the end and dropped):");
    for (c, t) in all.iter().zip(&ns) {
        println!("  {:<52} {t:8.1} ns", c.name);
    }
    if only.is_some() {
        return;
    }
    let d = |a: usize, b: usize| ns[a] - ns[b];
    println!(
        "embed scan: {:.1} ns a 4 KiB page, {:.1} ns a 16 KiB page ({:.1} ns per KiB)",
        d(2, 0),
        d(3, 1),
        (d(3, 1) - d(2, 0)) / 12.0
    );
    println!(
        "render-proof link: {:.1} ns (4 KiB), {:.1} ns (16 KiB); cookieless-crowd lookup: {:.1} ns; embed lookup: {:.1} ns",
        d(4, 2),
        d(5, 3),
        d(8, 7),
        d(10, 9)
    );
}
