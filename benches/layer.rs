//! Cost per request of the whole Lenscap layer on an allowed image request from a known
//! person, against a bare service and against tower_governor's `GovernorLayer` with
//! `PeerIpKeyExtractor`, on the same request, in the same run. Prints the ratio at the end.
//!
//! Two Lenscap contenders: the default settings (opt-out headers and the XMP stamp on image
//! responses; the bench's body is not a real JPEG, so the stamp passes it through after a
//! look) and the same policy with headers and stamp off — classification, tracking and limits
//! only, the job tower_governor does.
//!
//! `cargo bench --bench layer`. Instructions per request:
//! `LENSCAP_BENCH_ROUNDS=4 valgrind --tool=callgrind target/release/deps/layer-…`, then
//! `callgrind_annotate --inclusive=yes` on the `drive_*` functions (one per contender, each
//! (rounds − 3) × 20 000 requests, counted and dropped with their responses). A counting
//! allocator prints the allocations per request of each contender too.

use std::alloc::{GlobalAlloc, Layout, System};
use std::convert::Infallible;
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use criterion::{BatchSize, Criterion};
use futures_util::FutureExt;
use http::{Request, Response, header};
use lenscap::{LenscapLayer, Policy};
use tower::{Service, ServiceExt};

mod support;

/// Counts allocations (and growing reallocations), so each contender's are known.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36";
const PEER: &str = "203.0.113.9:50000";

/// Limits generous enough that the measured request stays on the allow path however many
/// times the bench repeats it; everything else is the embedded default policy.
const POLICY: &str = support::GENEROUS_LIMITS;

/// Added to [`POLICY`] for the plain contender: no opt-out headers, no stamp.
const PLAIN: &str = r#"
[headers]
x_robots_tag = false
tdm_reservation = false
tdm_policy = false
content_usage = false

[stamp]
xmp = false
scrub_gps = false
scrub_serials = false
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

/// A Lenscap service, and the cookie its person got on a page view.
#[allow(clippy::type_complexity)]
fn lenscap_with(
    policy: &str,
) -> (
    impl Service<Request<()>, Response = Response<lenscap::ResponseBody<Body>>, Error = Infallible>
    + Clone
    + use<>,
    String,
) {
    let policy = Policy::from_toml_str(policy, None).unwrap();
    let mut lenscap = tower::ServiceBuilder::new()
        .layer(LenscapLayer::new(policy))
        .service(tower::service_fn(photo));
    // The person views the gallery page, keeps the cookie, then loads the page's images.
    let page = call(&mut lenscap, request("/gallery/1", None, true));
    let cookie = support::visitor_cookie(page.headers());
    (lenscap, cookie)
}

fn governor() -> impl Service<Request<()>, Response = Response<Body>, Error = Infallible> + Clone {
    let config = tower_governor::governor::GovernorConfigBuilder::default()
        .per_nanosecond(1)
        .burst_size(u32::MAX)
        .finish()
        .unwrap();
    tower::ServiceBuilder::new()
        .layer(tower_governor::GovernorLayer::new(config))
        .service(tower::service_fn(photo))
}

const IMAGE: &str = "/photos/IMG_0001.jpg";

fn benches(c: &mut Criterion) {
    let (mut lenscap, cookie) = lenscap_with(POLICY);
    let (mut plain, plain_cookie) = lenscap_with(&format!("{POLICY}{PLAIN}"));
    let mut governor = governor();
    let mut bare = tower::service_fn(photo);
    for (service, cookie) in [(&mut lenscap, &cookie), (&mut plain, &plain_cookie)] {
        assert_eq!(
            call(service, request(IMAGE, Some(cookie), false)).status(),
            200
        );
    }
    assert_eq!(
        call(&mut governor, request(IMAGE, None, false)).status(),
        200
    );

    let mut group = c.benchmark_group("allowed image from a known person");
    group.bench_function("bare service", |b| {
        b.iter_batched(
            || request(IMAGE, Some(&cookie), false),
            |r| call(&mut bare, r),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("tower_governor GovernorLayer (PeerIpKeyExtractor)", |b| {
        b.iter_batched(
            || request(IMAGE, Some(&cookie), false),
            |r| call(&mut governor, r),
            BatchSize::SmallInput,
        )
    });
    for (name, service, cookie) in [
        (
            "Lenscap layer, headers+stamp off",
            &mut plain,
            &plain_cookie,
        ),
        ("Lenscap layer, default settings", &mut lenscap, &cookie),
    ] {
        let mut served = 0u32;
        let mut topper = service.clone();
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    // Untimed: a page view now and then keeps the person's credit topped up.
                    served += 1;
                    if served.is_multiple_of(50_000) {
                        call(&mut topper, request("/gallery/1", Some(cookie), true));
                    }
                    request(IMAGE, Some(cookie), false)
                },
                |r| call(service, r),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

/// Calls `service` with every request, dropping each response; asserts that all were served.
#[inline(always)]
fn drive<S, B>(service: &mut S, requests: Vec<Request<()>>)
where
    S: Service<Request<()>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    let mut refused = 0;
    for r in requests {
        let response = call(service, r);
        if response.status() != 200 && refused == 0 {
            eprintln!(
                "refused: {}",
                support::refusal(response.status(), response.headers())
            );
        }
        refused += usize::from(response.status() != 200);
        drop(black_box(response));
    }
    assert_eq!(refused, 0, "every request is on the allow path");
}

// One named function per contender, so callgrind can attribute instructions to each (the
// `black_box`ed tags keep the linker from folding the two Lenscap ones into one).
#[inline(never)]
fn drive_bare<S, B>(s: &mut S, r: Vec<Request<()>>)
where
    S: Service<Request<()>, Response = Response<B>, Error = Infallible>,
{
    black_box(0);
    drive(s, r)
}
#[inline(never)]
fn drive_governor<S, B>(s: &mut S, r: Vec<Request<()>>)
where
    S: Service<Request<()>, Response = Response<B>, Error = Infallible>,
{
    black_box(1);
    drive(s, r)
}
#[inline(never)]
fn drive_lenscap_plain<S, B>(s: &mut S, r: Vec<Request<()>>)
where
    S: Service<Request<()>, Response = Response<B>, Error = Infallible>,
{
    black_box(2);
    drive(s, r)
}
#[inline(never)]
fn drive_lenscap_default<S, B>(s: &mut S, r: Vec<Request<()>>)
where
    S: Service<Request<()>, Response = Response<B>, Error = Infallible>,
{
    black_box(3);
    drive(s, r)
}

/// Interleaved A/B timing of the same request through each service, for the ratio lines.
fn ratio() {
    let (mut lenscap, cookie) = lenscap_with(POLICY);
    let (mut plain, plain_cookie) = lenscap_with(&format!("{POLICY}{PLAIN}"));
    let mut governor = governor();
    let mut bare = tower::service_fn(photo);
    const BATCH: usize = 20_000;
    // LENSCAP_BENCH_ROUNDS=4 for a short run under callgrind.
    let rounds: u32 = std::env::var("LENSCAP_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(30)
        .max(4);
    let mut totals = [Duration::ZERO; 4];
    let mut allocations = [0u64; 4];
    for round in 0..rounds {
        // Untimed page views keep the people's credit topped up (they may meet the page
        // quota themselves; the images below must not).
        call(&mut lenscap, request("/gallery/1", Some(&cookie), true));
        call(&mut plain, request("/gallery/1", Some(&plain_cookie), true));
        for (i, total) in totals.iter_mut().enumerate() {
            let c = if i == 2 { &plain_cookie } else { &cookie };
            let requests: Vec<_> = (0..BATCH).map(|_| request(IMAGE, Some(c), false)).collect();
            let allocated = ALLOCATIONS.load(Ordering::Relaxed);
            let start = Instant::now();
            match i {
                0 => drive_bare(&mut bare, requests),
                1 => drive_governor(&mut governor, requests),
                2 => drive_lenscap_plain(&mut plain, requests),
                _ => drive_lenscap_default(&mut lenscap, requests),
            }
            if round > 2 {
                *total += start.elapsed();
                allocations[i] += ALLOCATIONS.load(Ordering::Relaxed) - allocated;
            }
        }
    }
    // Still on the allow path after all that.
    assert_eq!(
        call(&mut plain, request(IMAGE, Some(&plain_cookie), false)).status(),
        200
    );
    assert_eq!(
        call(&mut lenscap, request(IMAGE, Some(&cookie), false)).status(),
        200
    );
    let per = |d: Duration| d.as_nanos() as f64 / ((rounds - 3) as usize * BATCH) as f64;
    let [bare, governor, plain, lenscap] = totals.map(per);
    println!(
        "\nper request (incl. the bare service and dropping request and response):\n  bare service                      {bare:7.1} ns\n  tower_governor                    {governor:7.1} ns  (+{:.1} ns over bare)\n  Lenscap, headers+stamp off        {plain:7.1} ns  (+{:.1} ns over bare)\n  Lenscap, default settings         {lenscap:7.1} ns  (+{:.1} ns over bare)",
        governor - bare,
        plain - bare,
        lenscap - bare,
    );
    let [bare_allocs, governor_allocs, plain_allocs, lenscap_allocs] =
        allocations.map(|n| n as f64 / ((rounds - 3) as usize * BATCH) as f64);
    println!(
        "allocations per request (the call, then dropping request and response): bare {bare_allocs:.2}, tower_governor {governor_allocs:.2}, Lenscap headers+stamp off {plain_allocs:.2}, Lenscap default {lenscap_allocs:.2}"
    );
    for (name, value) in [("headers+stamp off", plain), ("default settings", lenscap)] {
        println!(
            "  ratio Lenscap ({name}) / tower_governor: {:.2} (whole service), {:.2} (layer cost over bare)",
            value / governor,
            (value - bare) / (governor - bare)
        );
    }
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
