//! Datacenter addresses through the real layer: harvesting images without page views from a
//! published cloud range is a strong signal (`datacenter-images`), a cloud address alone is
//! a weak one (`datacenter`) that never stops a person (people use VPNs), and an address
//! outside the ranges raises neither.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use lenscap::limit::ManualClock;
use lenscap::{Action, LenscapLayer, PeerAddr, Policy, Reason, Verdict};
use tower::{Service, ServiceExt};

const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36";
/// In Amazon's published ranges (3.0.0.0/15) in the embedded list.
const AWS: &str = "3.1.2.3";
/// Documentation space: in nobody's ranges.
const ELSEWHERE: &str = "198.51.100.7";

/// The inner service answers with the verdict the layer handed it, as a header.
async fn echo_verdict(request: Request<()>) -> Result<Response<Full<Bytes>>, Infallible> {
    let reasons = request
        .extensions()
        .get::<Verdict>()
        .map(|v| v.reasons.to_string())
        .unwrap_or_default();
    let kind = if request.uri().path().ends_with(".jpg") {
        "image/jpeg"
    } else {
        "text/html"
    };
    let mut response = Response::new(Full::new(Bytes::from_static(b"content")));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    headers.insert("x-reasons", HeaderValue::from_str(&reasons).unwrap());
    Ok(response)
}

type App = tower::util::BoxCloneService<
    Request<()>,
    Response<lenscap::ResponseBody<Full<Bytes>>>,
    Infallible,
>;

fn app(policy: &str) -> (App, ManualClock) {
    let clock = ManualClock::new();
    let layer =
        LenscapLayer::new(Policy::from_toml_str(policy, None).unwrap()).with_clock(clock.clone());
    let app = tower::ServiceBuilder::new()
        .layer(layer)
        .service(tower::service_fn(echo_verdict));
    (tower::util::BoxCloneService::new(app), clock)
}

fn request(ip: &str, path: &str, referer: Option<&str>) -> Request<()> {
    let accept = if path.ends_with(".jpg") {
        "image/avif,image/webp,image/apng,image/*,*/*;q=0.8"
    } else {
        "text/html,application/xhtml+xml,*/*;q=0.8"
    };
    let mut builder = Request::get(path)
        .header(header::HOST, "gallery.test")
        .header(header::USER_AGENT, CHROME)
        .header(header::ACCEPT, accept)
        .header(header::ACCEPT_LANGUAGE, "en-GB,en;q=0.9")
        .header(header::ACCEPT_ENCODING, "gzip, deflate, br");
    if let Some(referer) = referer {
        builder = builder.header(header::REFERER, referer);
    }
    let mut request = builder.body(()).unwrap();
    request
        .extensions_mut()
        .insert(PeerAddr(SocketAddr::new(ip.parse().unwrap(), 40000)));
    request
}

/// Sends one request: the status and the reasons the inner service saw (empty when refused).
async fn send(app: &mut App, request: Request<()>) -> (StatusCode, String) {
    let response = app.ready().await.unwrap().call(request).await.unwrap();
    let reasons = response
        .headers()
        .get("x-reasons")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (response.status(), reasons)
}

/// Images fetched straight from a URL list, with no page view: what an image harvester does.
async fn harvest(ip: &str, policy: &str) -> Vec<(StatusCode, String)> {
    let (mut app, clock) = app(policy);
    let mut seen = Vec::new();
    for i in 0..20 {
        let path = format!("/photos/IMG_{:04}.jpg", 1000 + i * 7);
        seen.push(send(&mut app, request(ip, &path, None)).await);
        clock.advance(std::time::Duration::from_millis(1500));
    }
    seen
}

const REPORT_ONLY: &str = "mode = \"report-only\"\n";

#[tokio::test]
async fn image_harvesting_from_a_datacenter_is_a_strong_signal() {
    // Report-only: every verdict reaches the inner service, so its reasons can be read.
    let from_aws = harvest(AWS, REPORT_ONLY).await;
    let elsewhere = harvest(ELSEWHERE, REPORT_ONLY).await;
    let first = |seen: &[(StatusCode, String)], reason: &str| {
        seen.iter()
            .position(|(_, r)| r.split(',').any(|n| n == reason))
    };
    let without_pages = first(&from_aws, "images-without-pages").expect("the behaviour fires");
    assert_eq!(
        first(&from_aws, "datacenter-images"),
        Some(without_pages),
        "{from_aws:?}"
    );
    assert!(
        from_aws.iter().all(|(_, r)| r.contains("datacenter")),
        "{from_aws:?}"
    );
    assert!(
        first(&elsewhere, "images-without-pages").is_some(),
        "{elsewhere:?}"
    );
    assert!(
        elsewhere.iter().all(|(_, r)| !r.contains("datacenter")),
        "{elsewhere:?}"
    );

    // Enforced: from the datacenter every image from then on is refused outright; the same
    // harvest from elsewhere is only slowed (throttled, rate-limited) and takes more.
    let from_aws = harvest(AWS, "").await;
    let elsewhere = harvest(ELSEWHERE, "").await;
    assert!(
        from_aws[without_pages..]
            .iter()
            .all(|(s, _)| *s == StatusCode::FORBIDDEN),
        "{from_aws:?}"
    );
    let served =
        |seen: &[(StatusCode, String)]| seen.iter().filter(|(s, _)| s.is_success()).count();
    assert_eq!(served(&from_aws), without_pages, "{from_aws:?}");
    assert!(served(&elsewhere) > served(&from_aws), "{elsewhere:?}");
    assert!(
        elsewhere.iter().all(|(s, _)| *s != StatusCode::FORBIDDEN),
        "{elsewhere:?}"
    );
}

#[tokio::test]
async fn a_person_on_a_datacenter_address_is_not_hindered() {
    let (mut app, clock) = app("");
    for page in 1..=3 {
        let page_path = format!("/gallery/{page}");
        let (status, reasons) = send(&mut app, request(AWS, &page_path, None)).await;
        assert_eq!(status, StatusCode::OK, "page {page}: {reasons}");
        assert_eq!(reasons, "datacenter", "page {page}");
        let referer = format!("http://gallery.test{page_path}");
        for i in 0..6 {
            let image = format!("/photos/IMG_{:04}.jpg", page * 10 + i);
            let (status, reasons) = send(&mut app, request(AWS, &image, Some(&referer))).await;
            assert_eq!(status, StatusCode::OK, "{image}: {reasons}");
            assert!(!reasons.contains("datacenter-images"), "{image}: {reasons}");
        }
        clock.advance(std::time::Duration::from_secs(20));
    }
}

#[test]
fn a_datacenter_address_alone_never_blocks() {
    let policy = Policy::embedded().unwrap();
    let weight = policy.weight(Reason::Datacenter);
    assert!(weight > 0, "the signal is on by default");
    // Even with every other weak header signal a person might show, it stays below a block.
    let (_, verdict) = policy.verdict_for(&request(AWS, "/", None));
    assert!(verdict.reasons.contains(Reason::Datacenter), "{verdict:?}");
    assert_eq!(verdict.action, Action::Allow, "{verdict:?}");
    assert_eq!(
        policy.datacenter_provider(AWS.parse().unwrap()),
        Some("aws")
    );
    assert_eq!(policy.datacenter_provider(ELSEWHERE.parse().unwrap()), None);
}

#[test]
fn ranges_datacenter_replaces_the_embedded_list() {
    let dir = std::env::temp_dir().join(format!("lenscap-datacenter-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("datacenter.json");
    std::fs::write(
        &file,
        r#"{"providers": {"example-cloud": {"prefixes": ["192.0.2.0/24", "2001:db8::/32"]}}}"#,
    )
    .unwrap();
    let policy = Policy::from_toml_str(
        &format!("[ranges]\ndatacenter = {:?}\n", file.display().to_string()),
        None,
    )
    .unwrap();
    assert_eq!(
        policy.datacenter_provider("192.0.2.9".parse().unwrap()),
        Some("example-cloud")
    );
    assert_eq!(policy.datacenter_provider(AWS.parse().unwrap()), None);
    // The verified crawler ranges are untouched.
    assert!(policy.ranges().get("googlebot").is_some());

    std::fs::write(
        &file,
        r#"{"providers": {"x": {"prefixes": ["192.0.2.0/33"]}}}"#,
    )
    .unwrap();
    let error = Policy::from_toml_str(
        &format!("[ranges]\ndatacenter = {:?}\n", file.display().to_string()),
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("192.0.2.0/33"), "{error}");
    let _ = std::fs::remove_dir_all(&dir);
}
