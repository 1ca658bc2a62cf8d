//! The layer declares the reservation on the way out: documents answered before the app,
//! opt-out headers on images and pages, XMP stamped into images, meta tags in HTML.

mod stamp_support;

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use lenscap::{LenscapLayer, PeerAddr, Policy};
use tower::{ServiceBuilder, ServiceExt, service_fn};

const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36";
const PAGE: &str = "<!doctype html><html><head><title>Terrace</title></head><body><img src=\"/p/1.jpg\"></body></html>";

/// A tiny gallery app: one page, one JPEG (with an ETag), honouring If-None-Match.
async fn app(request: Request<()>) -> Result<Response<Full<Bytes>>, Infallible> {
    let jpeg = stamp_support::jpeg_baseline(16, 12);
    let response = match request.uri().path() {
        "/p/1.jpg"
            if request
                .headers()
                .get("if-none-match")
                .is_some_and(|v| v == "\"v1\"") =>
        {
            Response::builder()
                .status(304)
                .header("etag", "\"v1\"")
                .body(Full::default())
        }
        "/p/1.jpg" => Response::builder()
            .header("content-type", "image/jpeg")
            .header("content-length", jpeg.len())
            .header("etag", "\"v1\"")
            .body(Full::new(Bytes::from(jpeg))),
        "/robots.txt" => Response::builder().body(Full::new(Bytes::from_static(b"app robots"))),
        _ => Response::builder()
            .header("content-type", "text/html; charset=utf-8")
            .body(Full::new(Bytes::from_static(PAGE.as_bytes()))),
    };
    Ok(response.unwrap())
}

fn request(path: &str, ua: &str) -> Request<()> {
    let mut r = Request::get(path)
        .header("user-agent", ua)
        .header("accept", "*/*")
        .header("accept-language", "en")
        .header("accept-encoding", "gzip")
        .body(())
        .unwrap();
    r.extensions_mut()
        .insert(PeerAddr("198.51.100.9:1234".parse::<SocketAddr>().unwrap()));
    r
}

async fn send(request: Request<()>) -> (http::response::Parts, Bytes) {
    let service = ServiceBuilder::new()
        .layer(LenscapLayer::new(Policy::embedded().unwrap()))
        .service(service_fn(app));
    let (parts, body) = service.oneshot(request).await.unwrap().into_parts();
    (parts, body.collect().await.unwrap().to_bytes())
}

#[tokio::test]
async fn images_carry_headers_and_an_xmp_stamp_with_the_same_pixels() {
    let original = stamp_support::jpeg_baseline(16, 12);
    let (parts, body) = send(request("/p/1.jpg", CHROME)).await;
    assert_eq!(parts.status, StatusCode::OK);
    let robots: Vec<_> = parts.headers.get_all("x-robots-tag").iter().collect();
    assert_eq!(robots, ["noai, noimageai"]);
    assert_eq!(parts.headers["tdm-reservation"], "1");
    assert_eq!(parts.headers["content-usage"], "train-ai=n");
    assert_ne!(parts.headers["etag"], "\"v1\"");
    assert_eq!(
        parts.headers["content-length"],
        body.len().to_string().as_str()
    );
    assert!(body.len() > original.len());
    assert!(
        stamp_support::jpeg_xmp(&body)
            .iter()
            .any(|p| p.contains("DMI-PROHIBITED-AIMLTRAINING"))
    );
    assert_eq!(
        stamp_support::frames(&body),
        stamp_support::frames(&original)
    );
}

#[tokio::test]
async fn a_stamped_etag_revalidates_against_the_app() {
    let (parts, _) = send(request("/p/1.jpg", CHROME)).await;
    let stamped_etag = parts.headers["etag"].to_str().unwrap().to_owned();
    let mut again = request("/p/1.jpg", CHROME);
    again
        .headers_mut()
        .insert("if-none-match", stamped_etag.parse().unwrap());
    let (parts, body) = send(again).await;
    assert_eq!(parts.status, StatusCode::NOT_MODIFIED);
    assert_eq!(parts.headers["etag"], stamped_etag.as_str());
    assert!(body.is_empty());
}

#[tokio::test]
async fn pages_get_meta_tags() {
    let (parts, body) = send(request("/", CHROME)).await;
    assert_eq!(parts.status, StatusCode::OK);
    let html = String::from_utf8(body.to_vec()).unwrap();
    assert!(
        html.contains(r#"<meta name="robots" content="noai, noimageai">"#),
        "{html}"
    );
    assert!(
        html.contains(r#"<meta name="tdm-reservation" content="1">"#),
        "{html}"
    );
    assert!(html.contains("<title>Terrace</title>"));
}

#[tokio::test]
async fn documents_are_answered_before_the_app_even_for_blocked_crawlers() {
    let gptbot = "Mozilla/5.0 (compatible; GPTBot/1.2; +https://openai.com/gptbot)";
    let (parts, body) = send(request("/robots.txt", gptbot)).await;
    assert_eq!(parts.status, StatusCode::OK);
    assert_eq!(parts.headers["content-type"], "text/plain; charset=utf-8");
    let text = String::from_utf8(body.to_vec()).unwrap();
    let robot = texting_robots::Robot::new("GPTBot", text.as_bytes()).unwrap();
    assert!(!robot.allowed("/p/1.jpg") && !robot.allowed("/"));
    let robot = texting_robots::Robot::new("PerplexityBot", text.as_bytes()).unwrap();
    assert!(!robot.allowed("/p/1.jpg") && robot.allowed("/"));
    let robot = texting_robots::Robot::new("Googlebot", text.as_bytes()).unwrap();
    assert!(robot.allowed("/p/1.jpg"));

    for (path, content_type) in [
        ("/ai.txt", "text/plain; charset=utf-8"),
        ("/.well-known/tdmrep.json", "application/json"),
        ("/ai-policy", "text/html; charset=utf-8"),
    ] {
        let (parts, _) = send(request(path, gptbot)).await;
        assert_eq!(parts.status, StatusCode::OK, "{path}");
        assert_eq!(parts.headers["content-type"], content_type, "{path}");
    }
    // The image itself stays blocked.
    assert_eq!(
        send(request("/p/1.jpg", gptbot)).await.0.status,
        StatusCode::FORBIDDEN
    );
}
