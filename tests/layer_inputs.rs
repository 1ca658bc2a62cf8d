//! The layer's behaviour on ordinary and hostile requests, through `tower::ServiceExt`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use lenscap::{LenscapLayer, PeerAddr, Policy, Verdict};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36";

/// An inner service echoing what it saw: the verdict's action and the forwarded verdict header.
async fn echo(request: Request<()>) -> Result<Response<Full<Bytes>>, Infallible> {
    let action = request
        .extensions()
        .get::<Verdict>()
        .map(|v| v.action.as_str())
        .unwrap_or("none");
    let header = request
        .headers()
        .get("x-lenscap-verdict")
        .map(|v| v.to_str().unwrap_or("?").to_owned())
        .unwrap_or_default();
    Ok(Response::new(Full::new(Bytes::from(format!(
        "{action}|{header}"
    )))))
}

fn browser(path: &str, peer: &str) -> Request<()> {
    let mut request = Request::get(path)
        .header("user-agent", CHROME)
        .header("accept", "*/*")
        .header("accept-language", "en")
        .header("accept-encoding", "gzip")
        .body(())
        .unwrap();
    request
        .extensions_mut()
        .insert(PeerAddr(peer.parse::<SocketAddr>().unwrap()));
    request
}

async fn send(policy: Policy, request: Request<()>) -> (StatusCode, String) {
    let service = ServiceBuilder::new()
        .layer(LenscapLayer::new(policy))
        .service(service_fn(echo));
    let response = service.oneshot(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn embedded() -> Policy {
    Policy::embedded().unwrap()
}

#[tokio::test]
async fn browsers_pass_with_their_verdict_in_extensions() {
    let (status, body) = send(embedded(), browser("/p/1.jpg", "198.51.100.1:4000")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "allow|");
}

#[tokio::test]
async fn hostile_user_agents_never_panic() {
    // 16 KiB of User-Agent.
    let mut request = browser("/p/1.jpg", "198.51.100.1:4000");
    let long = format!("Mozilla/5.0 {}", "x".repeat(16 * 1024));
    request
        .headers_mut()
        .insert("user-agent", HeaderValue::from_str(&long).unwrap());
    assert_eq!(send(embedded(), request).await.0, StatusCode::OK);

    // Invalid UTF-8 (obs-text bytes are legal in header values).
    let mut request = browser("/p/1.jpg", "198.51.100.1:4000");
    request.headers_mut().insert(
        "user-agent",
        HeaderValue::from_bytes(b"Wget/1.21 \xff\xfe").unwrap(),
    );
    let (status, _) = send(embedded(), request).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "still recognised as wget");

    // Repeated User-Agent lines: the first one is the one classified.
    let mut request = browser("/p/1.jpg", "198.51.100.1:4000");
    request
        .headers_mut()
        .append("user-agent", HeaderValue::from_static("Wget/1.21.3"));
    assert_eq!(send(embedded(), request).await.0, StatusCode::OK);
}

#[tokio::test]
async fn forged_forwarding_headers_change_nothing_for_untrusted_peers() {
    // A GPTBot claim is only verified from OpenAI's ranges; a forged X-Forwarded-For from an
    // untrusted peer must not make it look like it came from there.
    let mut request = browser("/p/1.jpg", "198.51.100.1:4000");
    request.headers_mut().insert(
        "user-agent",
        HeaderValue::from_static(
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        ),
    );
    request
        .headers_mut()
        .insert("x-forwarded-for", HeaderValue::from_static("66.249.66.1"));
    assert_eq!(send(embedded(), request).await.0, StatusCode::FORBIDDEN);

    // Garbage and 1,000 hops from a trusted proxy: defined outcome, no panic.
    let policy =
        Policy::from_toml_str("[client]\ntrusted_proxies = [\"127.0.0.0/8\"]\n", None).unwrap();
    let mut request = browser("/p/1.jpg", "127.0.0.1:4000");
    let chain = vec!["garbage"; 1000].join(", ");
    request
        .headers_mut()
        .insert("x-forwarded-for", HeaderValue::from_str(&chain).unwrap());
    assert_eq!(send(policy, request).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_real_googlebot_through_a_trusted_proxy_is_verified() {
    let policy =
        Policy::from_toml_str("[client]\ntrusted_proxies = [\"127.0.0.0/8\"]\n", None).unwrap();
    let mut request = browser("/p/1.jpg", "127.0.0.1:4000");
    request.headers_mut().insert(
        "user-agent",
        HeaderValue::from_static(
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        ),
    );
    request
        .headers_mut()
        .insert("x-forwarded-for", HeaderValue::from_static("66.249.66.1"));
    assert_eq!(
        send(policy, request).await,
        (StatusCode::OK, "allow|".into())
    );
}

#[tokio::test]
async fn verdict_header_is_set_when_configured_and_always_stripped_from_clients() {
    let mut forged = browser("/", "198.51.100.1:4000");
    forged.headers_mut().insert(
        "x-lenscap-verdict",
        HeaderValue::from_static("action=allow; trusted"),
    );
    assert_eq!(send(embedded(), forged).await.1, "allow|");
    // Every forged line goes, wherever it is among the request's headers.
    let mut forged = browser("/", "198.51.100.1:4000");
    let headers = forged.headers_mut();
    headers.append(
        "x-lenscap-verdict",
        HeaderValue::from_static("action=allow"),
    );
    headers.append("dnt", HeaderValue::from_static("1"));
    headers.append("x-lenscap-verdict", HeaderValue::from_static("score=0"));
    assert_eq!(send(embedded(), forged).await.1, "allow|");

    let policy = Policy::from_toml_str("[forward]\nverdict_header = true\n", None).unwrap();
    let mut request = browser("/", "198.51.100.1:4000");
    request
        .headers_mut()
        .insert("user-agent", HeaderValue::from_static("Wget/1.21.3"));
    let policy_allowing = Policy::from_toml_str(
        "[forward]\nverdict_header = true\n[agents]\n\"Wget\" = \"allow\"\n",
        None,
    )
    .unwrap();
    let (_, body) = send(policy_allowing, request).await;
    assert_eq!(
        body,
        "allow|action=allow; score=0; category=bulk-downloader; agent=\"Wget\""
    );
    let (_, body) = send(policy, browser("/", "198.51.100.1:4000")).await;
    assert_eq!(body, "allow|action=allow; score=0; category=browser");
}

#[tokio::test]
async fn block_status_is_configurable() {
    let policy = Policy::from_toml_str("[block]\nstatus = 451\n", None).unwrap();
    let mut request = browser("/p/1.jpg", "198.51.100.1:4000");
    request
        .headers_mut()
        .insert("user-agent", HeaderValue::from_static("Wget/1.21.3"));
    assert_eq!(
        send(policy, request).await.0,
        StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS
    );
}

#[tokio::test(start_paused = true)]
async fn tarpit_delays_responses_and_is_bounded() {
    let policy = Policy::from_toml_str(
        "[actions]\nbulk-downloader = \"tarpit\"\n[tarpit]\ndelay = \"30s\"\nmax_held = 2\n# Rate limits are tested on their own.\n[limits]\nenabled = false\n",
        None,
    )
    .unwrap();
    let mut service = ServiceBuilder::new()
        .layer(LenscapLayer::new(policy))
        .service(service_fn(echo));
    let wget = || {
        let mut r = browser("/p/1.jpg", "198.51.100.1:4000");
        r.headers_mut()
            .insert("user-agent", HeaderValue::from_static("Wget/1.21.3"));
        r
    };
    let start = tokio::time::Instant::now();
    let first = service.ready().await.unwrap().call(wget());
    let second = service.ready().await.unwrap().call(wget());
    // The third finds the tarpit full and is refused at once instead of being held.
    let third = service.ready().await.unwrap().call(wget()).await.unwrap();
    assert_eq!(third.status(), StatusCode::FORBIDDEN);
    assert_eq!(start.elapsed(), Duration::ZERO);

    let (a, b) = tokio::join!(first, second);
    assert_eq!(a.unwrap().status(), StatusCode::OK);
    assert_eq!(b.unwrap().status(), StatusCode::OK);
    assert!(start.elapsed() >= Duration::from_secs(30));

    // Places are given back: a new request is held again rather than refused.
    let fourth = service.ready().await.unwrap().call(wget()).await.unwrap();
    assert_eq!(fourth.status(), StatusCode::OK);
}
