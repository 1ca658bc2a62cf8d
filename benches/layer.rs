//! Cost per request of the whole Lenscap layer on an allowed image request from a known
//! person, against a bare service and against tower_governor's `GovernorLayer` with
//! `PeerIpKeyExtractor`, on the same request, in the same run. Prints the ratio at the end.
//!
//! `cargo bench --bench layer`

use std::convert::Infallible;
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use criterion::{BatchSize, Criterion};
use futures_util::FutureExt;
use http::{Request, Response, header};
use lenscap::{LenscapLayer, Policy};
use tower::{Service, ServiceExt};

const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36";
const PEER: &str = "203.0.113.9:50000";

/// Limits generous enough that the measured request stays on the allow path however many
/// times the bench repeats it; everything else is the embedded default policy.
const POLICY: &str = r#"
[limits]
credit_per_page = 60000
max_credit = 60000
subnet_vouched_images = { rate = "100/s", burst = 4000000000 }
"#;

/// The same inner service under all three (tower_governor needs axum's body type).
async fn photo(_request: Request<()>) -> Result<Response<Body>, Infallible> {
    let mut response = Response::new(Body::from(Bytes::from_static(b"jpeg bytes")));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("image/jpeg"),
    );
    Ok(response)
}

fn request(path: &str, cookie: Option<&str>, page: bool) -> Request<()> {
    let mut b = Request::get(path)
        .header(header::HOST, "gallery.test")
        .header(header::USER_AGENT, CHROME)
        .header(header::ACCEPT_LANGUAGE, "en-GB,en;q=0.9")
        .header(header::ACCEPT_ENCODING, "gzip, deflate, br, zstd");
    b = if page {
        b.header(header::ACCEPT, "text/html,*/*;q=0.8")
    } else {
        b.header(
            header::ACCEPT,
            "image/avif,image/webp,image/apng,image/*,*/*;q=0.8",
        )
        .header(header::REFERER, "http://gallery.test/gallery/1")
    };
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    let mut r = b.body(()).unwrap();
    r.extensions_mut()
        .insert(ConnectInfo(PEER.parse::<SocketAddr>().unwrap()));
    r
}

fn call<S>(service: &mut S, request: Request<()>) -> S::Response
where
    S: Service<Request<()>>,
    S::Error: std::fmt::Debug,
{
    service
        .ready()
        .now_or_never()
        .unwrap()
        .unwrap()
        .call(request)
        .now_or_never()
        .expect("answers at once")
        .unwrap()
}

/// The three services, and the person's cookie.
struct Setup<L, G> {
    lenscap: L,
    governor: G,
    cookie: String,
}

#[allow(clippy::type_complexity)]
fn setup() -> Setup<
    impl Service<Request<()>, Response = Response<lenscap::ResponseBody<Body>>, Error = Infallible>
    + Clone,
    impl Service<Request<()>, Response = Response<Body>, Error = Infallible> + Clone,
> {
    let policy = Policy::from_toml_str(POLICY, None).unwrap();
    let mut lenscap = tower::ServiceBuilder::new()
        .layer(LenscapLayer::new(policy))
        .service(tower::service_fn(photo));
    // The person views the gallery page, keeps the cookie, then loads the page's images.
    let page = call(&mut lenscap, request("/gallery/1", None, true));
    let cookie = page.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let config = tower_governor::governor::GovernorConfigBuilder::default()
        .per_nanosecond(1)
        .burst_size(u32::MAX)
        .finish()
        .unwrap();
    let governor = tower::ServiceBuilder::new()
        .layer(tower_governor::GovernorLayer::new(config))
        .service(tower::service_fn(photo));
    Setup {
        lenscap,
        governor,
        cookie,
    }
}

fn benches(c: &mut Criterion) {
    let Setup {
        mut lenscap,
        mut governor,
        cookie,
    } = setup();
    let mut bare = tower::service_fn(photo);
    let image = "/photos/IMG_0001.jpg";
    assert_eq!(
        call(&mut lenscap, request(image, Some(&cookie), false)).status(),
        200
    );
    assert_eq!(
        call(&mut governor, request(image, None, false)).status(),
        200
    );

    let mut group = c.benchmark_group("allowed image from a known person");
    group.bench_function("bare service", |b| {
        b.iter_batched(
            || request(image, Some(&cookie), false),
            |r| call(&mut bare, r),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("tower_governor GovernorLayer (PeerIpKeyExtractor)", |b| {
        b.iter_batched(
            || request(image, Some(&cookie), false),
            |r| call(&mut governor, r),
            BatchSize::SmallInput,
        )
    });
    let mut served = 0u32;
    let mut topper = lenscap.clone();
    group.bench_function("Lenscap layer", |b| {
        b.iter_batched(
            || {
                // Untimed: a page view now and then keeps the person's credit topped up.
                served += 1;
                if served.is_multiple_of(50_000) {
                    call(&mut topper, request("/gallery/1", Some(&cookie), true));
                }
                request(image, Some(&cookie), false)
            },
            |r| call(&mut lenscap, r),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// Interleaved A/B timing of the same request through each service, for one ratio line.
fn ratio() {
    let Setup {
        mut lenscap,
        mut governor,
        cookie,
    } = setup();
    let mut bare = tower::service_fn(photo);
    let image = "/photos/IMG_0001.jpg";
    const BATCH: usize = 20_000;
    // LENSCAP_BENCH_ROUNDS=4 for a short run under callgrind.
    let rounds: u32 = std::env::var("LENSCAP_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(30)
        .max(4);
    let mut totals = [Duration::ZERO; 3];
    for round in 0..rounds {
        call(&mut lenscap, request("/gallery/1", Some(&cookie), true));
        for (i, total) in totals.iter_mut().enumerate() {
            let requests: Vec<_> = (0..BATCH)
                .map(|_| request(image, Some(&cookie), false))
                .collect();
            let start = Instant::now();
            match i {
                0 => requests
                    .into_iter()
                    .for_each(|r| drop(black_box(call(&mut bare, r)))),
                1 => requests
                    .into_iter()
                    .for_each(|r| drop(black_box(call(&mut governor, r)))),
                _ => requests.into_iter().for_each(|r| {
                    let response = call(&mut lenscap, r);
                    assert_eq!(response.status(), 200);
                    drop(black_box(response))
                }),
            }
            if round > 2 {
                *total += start.elapsed();
            }
        }
    }
    let per = |d: Duration| d.as_nanos() as f64 / ((rounds - 3) as usize * BATCH) as f64;
    let (bare, governor, lenscap) = (per(totals[0]), per(totals[1]), per(totals[2]));
    println!(
        "\nper request (incl. the bare service and dropping request and response):\n  bare service      {bare:7.1} ns\n  tower_governor    {governor:7.1} ns  (+{:.1} ns over bare)\n  Lenscap layer     {lenscap:7.1} ns  (+{:.1} ns over bare)\n  ratio Lenscap / tower_governor: {:.2} (whole service), {:.2} (layer cost over bare)",
        governor - bare,
        lenscap - bare,
        lenscap / governor,
        (lenscap - bare) / (governor - bare)
    );
}

fn main() {
    if std::env::var_os("LENSCAP_BENCH_ROUNDS").is_some() {
        ratio();
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
    ratio();
}
