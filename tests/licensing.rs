//! The licensing answer through the real layer: an AI crawler under `license` gets `402` with
//! the terms; a verified one (signed, or from its published ranges) that accepts the price
//! gets the image, a `crawler-charged` header, and is counted apart; robots.txt carries RSL's
//! `License:` line, read by two real parsers.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use lenscap::metrics::Metrics;
use lenscap::signals::web_bot_auth::{Signer, Signing};
use lenscap::{LenscapLayer, PeerAddr, Policy};
use tower::{ServiceBuilder, ServiceExt, service_fn};

const LICENSE_URL: &str = "https://thecrown.example/license.xml";
const GPTBOT: &str = "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)";
const CCBOT: &str = "CCBot/2.0 (https://commoncrawl.org/faq/)";
/// Inside OpenAI's published GPTBot ranges (config/ranges/gptbot.json).
const GPTBOT_ADDRESS: &str = "132.196.86.10:40000";
const ELSEWHERE: &str = "203.0.113.50:40000";
const DIRECTORY: &str = "https://crawler.example";
const PHOTO: &[u8] = b"jpeg bytes";

async fn photo(_request: Request<()>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::builder()
        .header("content-type", "image/jpeg")
        .body(Full::new(Bytes::from_static(PHOTO)))
        .unwrap())
}

fn policy(price: Option<&str>) -> Policy {
    let licensing = price
        .map(|p| format!("[licensing]\nprice = \"{p}\"\n"))
        .unwrap_or_default();
    Policy::from_toml_str(
        &format!(
            "[reservation]\nlicense_url = \"{LICENSE_URL}\"\ncontact = \"owner@thecrown.example\"\n\
             {licensing}[actions]\nai-training = \"license\"\n\
             [web_bot_auth]\nenabled = true\ndirectories = {{ \"{DIRECTORY}\" = \"GPTBot\" }}\n"
        ),
        None,
    )
    .unwrap()
}

fn request(user_agent: &str, peer: &str, headers: &[(&str, String)]) -> Request<()> {
    let mut builder = Request::get("/photos/1.jpg")
        .header("host", "thecrown.example")
        .header("user-agent", user_agent);
    for (name, value) in headers {
        builder = builder.header(*name, value);
    }
    let mut request = builder.body(()).unwrap();
    request
        .extensions_mut()
        .insert(PeerAddr(peer.parse::<SocketAddr>().unwrap()));
    request
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

async fn send(layer: LenscapLayer, request: Request<()>) -> Answer {
    let service = ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(photo));
    let response = service.oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn price_offer(name: &str, value: &str) -> Vec<(&'static str, String)> {
    let name: &'static str = if name == "crawler-exact-price" {
        "crawler-exact-price"
    } else {
        "crawler-max-price"
    };
    vec![(name, value.to_owned())]
}

#[tokio::test]
async fn an_ai_crawler_under_license_gets_402_with_the_terms() {
    let answer = send(
        LenscapLayer::new(policy(Some("USD 0.01"))),
        request(CCBOT, ELSEWHERE, &[]),
    )
    .await;
    assert_eq!(answer.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(
        answer.headers["link"],
        format!("<{LICENSE_URL}>; rel=\"license\"")
    );
    assert_eq!(answer.headers["crawler-price"], "USD 0.01");
    assert_eq!(answer.headers["content-type"], "text/plain; charset=utf-8");
    assert!(
        answer.body.starts_with("Payment required."),
        "{}",
        answer.body
    );
    assert!(answer.body.contains(LICENSE_URL), "{}", answer.body);
    assert!(answer.body.contains("USD 0.01"), "{}", answer.body);
    assert!(
        answer.body.contains("owner@thecrown.example"),
        "{}",
        answer.body
    );
}

#[tokio::test]
async fn without_a_price_the_402_carries_the_terms_only() {
    let answer = send(
        LenscapLayer::new(policy(None)),
        request(
            GPTBOT,
            GPTBOT_ADDRESS,
            &price_offer("crawler-exact-price", "USD 0.01"),
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::PAYMENT_REQUIRED);
    assert!(answer.headers.get("crawler-price").is_none());
    assert!(answer.headers.contains_key("link"));
    assert!(answer.body.contains("No price"), "{}", answer.body);
}

#[tokio::test]
async fn a_range_verified_crawler_that_accepts_the_price_gets_the_image() {
    let metrics = Metrics::new();
    let layer = LenscapLayer::new(policy(Some("USD 0.01"))).with_metrics(&metrics, "crown");
    for offer in [
        price_offer("crawler-exact-price", "USD 0.01"),
        price_offer("crawler-max-price", "USD 0.05"),
    ] {
        let answer = send(layer.clone(), request(GPTBOT, GPTBOT_ADDRESS, &offer)).await;
        assert_eq!(answer.status, StatusCode::OK, "{offer:?}: {}", answer.body);
        assert_eq!(answer.body.as_bytes(), PHOTO);
        assert_eq!(answer.headers["crawler-charged"], "USD 0.01");
    }
    // Too little, another currency, or no offer: the terms again.
    for offer in [
        price_offer("crawler-max-price", "USD 0.005"),
        price_offer("crawler-exact-price", "EUR 0.01"),
        price_offer("crawler-exact-price", "a penny"),
        vec![],
    ] {
        let answer = send(layer.clone(), request(GPTBOT, GPTBOT_ADDRESS, &offer)).await;
        assert_eq!(answer.status, StatusCode::PAYMENT_REQUIRED, "{offer:?}");
        assert!(answer.headers.get("crawler-charged").is_none());
    }
    let text = metrics.encode();
    assert!(
        text.contains("lenscap_licensed_total{site=\"crown\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("lenscap_payment_required_total{site=\"crown\"} 4"),
        "{text}"
    );
}

#[tokio::test]
async fn an_unverified_or_spoofing_crawler_cannot_pay_its_way_in() {
    let layer = LenscapLayer::new(policy(Some("USD 0.01")));
    let offer = price_offer("crawler-exact-price", "USD 0.01");
    // CCBot publishes no ranges and does not sign: nothing proves the offer is its operator's.
    let answer = send(layer.clone(), request(CCBOT, ELSEWHERE, &offer)).await;
    assert_eq!(answer.status, StatusCode::PAYMENT_REQUIRED);
    // GPTBot claimed from outside OpenAI's ranges is a spoofer: blocked, not offered terms.
    let answer = send(layer, request(GPTBOT, ELSEWHERE, &offer)).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn a_signed_crawler_must_sign_its_offer() {
    let signer = Signer::generate(Some(DIRECTORY)).unwrap();
    let policy = policy(Some("USD 0.01"));
    policy
        .agent_keys()
        .set(DIRECTORY, vec![signer.key().clone()]);
    let layer = LenscapLayer::new(policy);
    let now = now();
    let signing = |nonce: &'static str, covered: &'static [(&'static str, &'static str)]| Signing {
        authority: "thecrown.example",
        created: now,
        expires: now + 60,
        nonce: Some(nonce),
        covered,
    };
    const OFFER: &[(&str, &str)] = &[("crawler-exact-price", "USD 0.01")];
    let mut headers = signer.sign(&signing("pay-1", OFFER)).unwrap();
    headers.push(("crawler-exact-price", "USD 0.01".into()));
    // A signed crawler from an address outside any range: the signature is what verifies it.
    let answer = send(layer.clone(), request(CCBOT, ELSEWHERE, &headers)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.headers["crawler-charged"], "USD 0.01");

    // The offer sent beside a signature that does not cover it is not the signer's word.
    let mut headers = signer.sign(&signing("pay-2", &[])).unwrap();
    headers.push(("crawler-exact-price", "USD 0.01".into()));
    let answer = send(layer, request(CCBOT, ELSEWHERE, &headers)).await;
    assert_eq!(answer.status, StatusCode::PAYMENT_REQUIRED);
}

#[test]
fn license_needs_a_licence_url_and_a_readable_price() {
    let e = Policy::from_toml_str("[actions]\nai-training = \"license\"\n", None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("license_url"), "{e}");
    let e = Policy::from_toml_str(
        &format!(
            "[reservation]\nlicense_url = \"{LICENSE_URL}\"\n[licensing]\nprice = \"cheap\"\n"
        ),
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("line 4") && e.contains("licensing.price"), "{e}");
    let e = Policy::from_toml_str("[reservation]\nlicense_url = \"license.xml\"\n", None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("license_url"), "{e}");
}

fn robots_txt(policy: &Policy) -> String {
    let answer = policy
        .documents()
        .answer(&http::Method::GET, "/robots.txt", &HeaderMap::new())
        .unwrap();
    String::from_utf8(answer.body().to_vec()).unwrap()
}

#[test]
fn robots_txt_names_the_licence_and_real_parsers_still_read_it() {
    let licensed = robots_txt(&policy(Some("USD 0.01")));
    assert!(
        licensed
            .lines()
            .any(|l| l == format!("License: {LICENSE_URL}")),
        "{licensed}"
    );
    let plain = robots_txt(&Policy::embedded().unwrap());
    assert!(!plain.contains("License:"), "{plain}");
    // The line is outside every group: both parsers answer as they do without it.
    let without = licensed.replace(&format!("License: {LICENSE_URL}\n"), "");
    for agent in ["CCBot", "GPTBot", "Googlebot", "ClaudeBot", "SomeBrowser"] {
        for path in ["/", "/photos/1.jpg", "/gallery/"] {
            let texting = |text: &str| {
                texting_robots::Robot::new(agent, text.as_bytes())
                    .unwrap()
                    .allowed(path)
            };
            let google = |text: &str| {
                robotstxt::DefaultMatcher::default().one_agent_allowed_by_robots(
                    text,
                    agent,
                    &format!("https://thecrown.example{path}"),
                )
            };
            assert_eq!(texting(&licensed), texting(&without), "{agent} {path}");
            assert_eq!(google(&licensed), google(&without), "{agent} {path}");
        }
    }
    // Licensed crawlers are not told to stay away (they may pay); those kept off images are.
    let allowed = |agent: &str| {
        robotstxt::DefaultMatcher::default().one_agent_allowed_by_robots(
            &licensed,
            agent,
            "https://thecrown.example/photos/1.jpg",
        )
    };
    assert!(allowed("ClaudeBot"), "{licensed}");
    assert!(!allowed("PerplexityBot"), "{licensed}");
}

#[test]
fn the_policy_page_explains_the_offer() {
    let policy = policy(Some("USD 0.01"));
    let page = policy
        .documents()
        .answer(&http::Method::GET, "/ai-policy", &HeaderMap::new())
        .unwrap();
    let page = String::from_utf8(page.body().to_vec()).unwrap();
    assert!(page.contains("<h2>Licensing</h2>"), "{page}");
    assert!(page.contains(LICENSE_URL), "{page}");
    assert!(page.contains("402 Payment Required"), "{page}");
    assert!(page.contains("crawler-exact-price"), "{page}");
}
