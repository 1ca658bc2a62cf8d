//! What the record stage costs on the allow path: the default Lenscap layer alone against the
//! same layer counting into Prometheus metrics and the dashboard's aggregates
//! (`with_metrics`), on the same allowed image request from a known person, interleaved in
//! one run. Prints both and the ratio.
//!
//! `cargo bench --bench record`. Instructions per request: `LENSCAP_BENCH_ROUNDS=4 valgrind
//! --tool=callgrind target/release/deps/record-…`, then `callgrind_annotate --inclusive=yes`
//! on `drive_alone` and `drive_recorded` ((rounds − 3) × 20 000 requests each, plus three
//! warm-up rounds).

use std::convert::Infallible;
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::FutureExt;
use http::{Request, Response, header};
use http_body_util::Full;
use lenscap::metrics::Metrics;
use lenscap::{LenscapLayer, PeerAddr, Policy};
use tower::{Service, ServiceExt};

mod support;

const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36";

/// Limits generous enough that every measured request stays on the allow path.
const POLICY: &str = support::GENEROUS_LIMITS;

async fn photo(_request: Request<()>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut response = Response::new(Full::new(Bytes::from_static(b"jpeg bytes")));
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
        b.header(header::ACCEPT, "image/avif,image/webp,*/*;q=0.8")
            .header(header::REFERER, "http://gallery.test/gallery/1")
    };
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    let mut r = b.body(()).unwrap();
    r.extensions_mut()
        .insert(PeerAddr("203.0.113.9:50000".parse::<SocketAddr>().unwrap()));
    r
}

fn call<S: Service<Request<()>>>(service: &mut S, request: Request<()>) -> S::Response
where
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

#[allow(clippy::type_complexity)]
fn service(
    metrics: Option<&Metrics>,
) -> (
    impl Service<
        Request<()>,
        Response = Response<lenscap::ResponseBody<Full<Bytes>>>,
        Error = Infallible,
    > + use<>,
    String,
) {
    let mut layer = LenscapLayer::new(Policy::from_toml_str(POLICY, None).unwrap());
    if let Some(metrics) = metrics {
        layer = layer.with_metrics(metrics, "bench");
    }
    let mut service = tower::ServiceBuilder::new()
        .layer(layer)
        .service(tower::service_fn(photo));
    let page = call(&mut service, request("/gallery/1", None, true));
    let cookie = support::visitor_cookie(page.headers());
    (service, cookie)
}

#[inline(always)]
fn drive<S, B>(service: &mut S, requests: Vec<Request<()>>)
where
    S: Service<Request<()>, Response = Response<B>, Error = Infallible>,
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

// One named function per contender, so callgrind can attribute instructions to each.
#[inline(never)]
fn drive_alone<S, B>(s: &mut S, r: Vec<Request<()>>)
where
    S: Service<Request<()>, Response = Response<B>, Error = Infallible>,
{
    black_box(0);
    drive(s, r)
}
#[inline(never)]
fn drive_recorded<S, B>(s: &mut S, r: Vec<Request<()>>)
where
    S: Service<Request<()>, Response = Response<B>, Error = Infallible>,
{
    black_box(1);
    drive(s, r)
}

fn main() {
    // Inside a runtime, as in a server: the metrics' clock ticker and the limiter's cleanup
    // run on its worker.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_time()
        .build()
        .unwrap();
    let _inside = runtime.enter();
    let metrics = Metrics::new();
    let (mut alone, alone_cookie) = service(None);
    let (mut recorded, recorded_cookie) = service(Some(&metrics));
    const BATCH: usize = 20_000;
    let rounds: usize = std::env::var("LENSCAP_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(30)
        .max(4);
    let mut totals = [Duration::ZERO; 2];
    for round in 0..rounds {
        call(&mut alone, request("/gallery/1", Some(&alone_cookie), true));
        call(
            &mut recorded,
            request("/gallery/1", Some(&recorded_cookie), true),
        );
        for (i, total) in totals.iter_mut().enumerate() {
            let cookie = if i == 0 {
                &alone_cookie
            } else {
                &recorded_cookie
            };
            let requests: Vec<_> = (0..BATCH)
                .map(|_| request("/photos/IMG_0001.jpg", Some(cookie), false))
                .collect();
            let start = Instant::now();
            if i == 0 {
                drive_alone(&mut alone, requests);
            } else {
                drive_recorded(&mut recorded, requests);
            }
            if round > 2 {
                *total += start.elapsed();
            }
        }
    }
    let per = |d: Duration| d.as_nanos() as f64 / ((rounds - 3) * BATCH) as f64;
    let [alone, recorded] = totals.map(per);
    let summary = metrics.summary();
    assert!(summary.all.hour.people >= ((rounds - 3) * BATCH) as u64);
    println!(
        "per request:\n  Lenscap layer, default settings           {alone:7.1} ns\n  the same with_metrics (counters+dashboard) {recorded:7.1} ns  ({:+.1} ns)\n  ratio with_metrics / alone: {:.3}",
        recorded - alone,
        recorded / alone
    );
}
