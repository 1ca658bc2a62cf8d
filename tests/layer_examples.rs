//! The two examples — an axum app and a plain hyper server — work with Lenscap in front.

mod common;

#[path = "../examples/axum_app.rs"]
#[allow(dead_code)]
mod axum_app;
#[path = "../examples/hyper_app.rs"]
#[allow(dead_code)]
mod hyper_app;

use std::net::SocketAddr;

use common::{BROWSER_IMAGE, get};
use http::StatusCode;
use lenscap::{LenscapLayer, Policy};

const GPTBOT: &str = "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)";

async fn start_axum(policy: Policy) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum_app::app(policy).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

async fn start_hyper(policy: Policy) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(hyper_app::serve(listener, LenscapLayer::new(policy)));
    addr
}

#[tokio::test]
async fn axum_app_serves_browsers_and_blocks_ai_crawlers() {
    let addr = start_axum(Policy::embedded().unwrap()).await;

    let photo = get(addr, "/photos/terrace.jpg", BROWSER_IMAGE).await;
    assert_eq!(photo.status, StatusCode::OK);
    assert_eq!(&photo.body[..], b"jpeg bytes of terrace.jpg");

    // The verdict reaches the handler through the request extensions.
    let page = get(addr, "/", BROWSER_IMAGE).await;
    assert!(String::from_utf8_lossy(&page.body).contains("You are seen as: browser"));

    let blocked = get(addr, "/photos/terrace.jpg", &[("user-agent", GPTBOT)]).await;
    assert_eq!(blocked.status, StatusCode::FORBIDDEN);
    assert_eq!(blocked.headers["content-type"], "text/plain; charset=utf-8");
    assert!(String::from_utf8_lossy(&blocked.body).contains("/ai-policy"));
}

#[tokio::test]
async fn hyper_app_serves_browsers_and_blocks_downloaders() {
    let addr = start_hyper(Policy::embedded().unwrap()).await;
    assert_eq!(
        get(addr, "/photos/1.jpg", BROWSER_IMAGE).await.status,
        StatusCode::OK
    );
    let wget = get(
        addr,
        "/photos/1.jpg",
        &[("user-agent", "Wget/1.21.3"), ("accept", "*/*")],
    )
    .await;
    assert_eq!(wget.status, StatusCode::FORBIDDEN);
    // No User-Agent, no Accept, no Accept-Language (wrk's shape) scores past the block line.
    assert_eq!(
        get(addr, "/photos/1.jpg", &[]).await.status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn report_only_lets_everything_through() {
    let policy = Policy::from_toml_str("mode = \"report-only\"\n", None).unwrap();
    let addr = start_hyper(policy).await;
    let wget = get(addr, "/photos/1.jpg", &[("user-agent", "Wget/1.21.3")]).await;
    assert_eq!(wget.status, StatusCode::OK);
    assert_eq!(&wget.body[..], b"jpeg bytes");
}
