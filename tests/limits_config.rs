//! The `[limits]`, `[behaviour]`, `[traps]` and `[cookie]` sections: defaults, errors naming
//! key and line, and the options that change what a client meets.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use lenscap::limit::ManualClock;
use lenscap::{LenscapLayer, PeerAddr, Policy};
use tower::{Service, ServiceExt};

fn err(text: &str) -> String {
    Policy::from_toml_str(text, None).unwrap_err().to_string()
}

#[test]
fn mistakes_name_the_key_and_the_line() {
    let e = err("mode = \"enforce\"\n[limits]\nimages = { rate = \"lots\", burst = 3 }\n");
    assert!(e.contains("line 3") && e.contains("limits.images"), "{e}");
    let e = err("[limits]\npages = { rate = \"10/fortnight\" }\n");
    assert!(e.contains("line 2") && e.contains("fortnight"), "{e}");
    let e = err("[limits]\nimage = { rate = \"10/min\" }\n");
    assert!(e.contains("line 2") && e.contains("image"), "{e}");
    let e = err("[limits]\nidle_after = \"a while\"\n");
    assert!(
        e.contains("line 2") && e.contains("limits.idle_after"),
        "{e}"
    );
    let e = err("\n[behaviour]\nwindow = \"1s\"\n");
    assert!(
        e.contains("line 3") && e.contains("behaviour.window"),
        "{e}"
    );
    let e = err("[traps]\nmark_for = \"forever\"\n");
    assert!(e.contains("line 2") && e.contains("traps.mark_for"), "{e}");
    let e = err("[cookie]\nflavour = \"oat\"\n");
    assert!(e.contains("line 2") && e.contains("flavour"), "{e}");
    let e = err("[traps]\npaths = [\"no-slash\"]\n");
    assert!(e.contains("no-slash"), "{e}");
}

#[test]
fn the_embedded_policy_spells_out_every_default() {
    // The commented default file and an empty file must mean the same limits.
    let embedded = Policy::embedded().unwrap();
    let empty = Policy::from_toml_str("", None).unwrap();
    assert_eq!(embedded.trap_paths(), empty.trap_paths());
    assert_eq!(embedded.trap_paths(), ["/lenscap-trap/"]);
    let extra = Policy::from_toml_str("[traps]\ndisallowed = [\"/private/\"]\n", None).unwrap();
    assert_eq!(
        extra.disallowed_paths().collect::<Vec<_>>(),
        ["/lenscap-trap/", "/private/"]
    );
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
    let svc = tower::ServiceBuilder::new()
        .layer(layer)
        .service(tower::service_fn(|r: Request<()>| async move {
            // `/photo?id=N` is an image only by its Content-Type.
            let image = r.uri().path().starts_with("/photo");
            let mut response = Response::new(Full::new(Bytes::from_static(b"x")));
            let kind = if image { "image/jpeg" } else { "text/html" };
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
            Ok::<_, Infallible>(response)
        }));
    (tower::util::BoxCloneService::new(svc), clock)
}

fn get(path: &str, ip: &str) -> Request<()> {
    let mut r = Request::get(path)
        .header(
            header::USER_AGENT,
            "Mozilla/5.0 (X11; Linux x86_64; rv:150.0) Gecko/20100101 Firefox/150.0",
        )
        .header(header::ACCEPT, "*/*")
        .header(header::ACCEPT_LANGUAGE, "en")
        .header(header::ACCEPT_ENCODING, "gzip")
        .body(())
        .unwrap();
    r.extensions_mut()
        .insert(PeerAddr(format!("{ip}:1000").parse().unwrap()));
    r
}

async fn statuses(
    app: &mut App,
    clock: &ManualClock,
    paths: impl Iterator<Item = (String, String)>,
) -> Vec<StatusCode> {
    let mut out = Vec::new();
    for (path, ip) in paths {
        clock.advance(Duration::from_millis(50));
        out.push(
            app.ready()
                .await
                .unwrap()
                .call(get(&path, &ip))
                .await
                .unwrap()
                .status(),
        );
    }
    out
}

#[tokio::test]
async fn images_known_only_by_content_type_are_limited_as_images() {
    let (mut app, clock) = app("");
    let out = statuses(
        &mut app,
        &clock,
        (1..=60).map(|n| (format!("/photo?id={n}"), "192.0.2.10".to_owned())),
    )
    .await;
    let first = out.iter().position(|s| *s != StatusCode::OK);
    assert!(first.is_some_and(|i| i < 30), "{out:?}");
}

#[tokio::test]
async fn the_site_budget_caps_unvouched_images_from_everyone() {
    let (mut app, clock) = app("[limits]\nunknown_images = { rate = \"1/min\", burst = 5 }\n");
    // Five different networks, one image each, twice over: the sixth is refused.
    let out = statuses(
        &mut app,
        &clock,
        (0..10).map(|n| (format!("/p/{n}.jpg"), format!("198.51.{n}.1"))),
    )
    .await;
    assert_eq!(&out[..5], &[StatusCode::OK; 5]);
    assert!(
        out[5..].iter().all(|s| *s == StatusCode::TOO_MANY_REQUESTS),
        "{out:?}"
    );
}

#[tokio::test]
async fn over_quota_can_tarpit_instead_of_refusing() {
    let (mut app, clock) = app(
        "[limits]\nover_quota = \"tarpit\"\nimages = { rate = \"1/min\", burst = 1 }\n[tarpit]\ndelay = \"1ms\"\n",
    );
    let out = statuses(
        &mut app,
        &clock,
        (1..=3).map(|n| (format!("/p/{n}.jpg"), "192.0.2.20".to_owned())),
    )
    .await;
    // Served, late, rather than refused.
    assert_eq!(out, [StatusCode::OK; 3]);
}

#[tokio::test]
async fn limits_can_be_turned_off() {
    let (mut app, clock) = app("[limits]\nenabled = false\n");
    let out = statuses(
        &mut app,
        &clock,
        (1..=100).map(|n| (format!("/p/{n}.jpg"), "192.0.2.30".to_owned())),
    )
    .await;
    assert!(out.iter().all(|s| *s == StatusCode::OK));
}

#[tokio::test]
async fn documents_are_answered_before_any_limit_and_never_charged() {
    // Two page views a minute for the subnet (a newcomer's page views are charged there), no
    // burst: the third page is over quota.
    let (mut app, _clock) = app("[limits]\nsubnet_pages = { rate = \"2/min\", burst = 2 }\n");
    let mut call = async |path: &str| {
        app.ready()
            .await
            .unwrap()
            .call(get(path, "203.0.113.9"))
            .await
            .unwrap()
            .status()
    };
    assert_eq!(call("/gallery/1").await, StatusCode::OK);
    // Reading the policy page in between costs nothing: the second page is still served.
    for _ in 0..5 {
        assert_eq!(call("/ai-policy").await, StatusCode::OK);
    }
    assert_eq!(call("/gallery/2").await, StatusCode::OK);
    assert_eq!(call("/gallery/3").await, StatusCode::TOO_MANY_REQUESTS);
    // Over its page quota, the client still reads every document Lenscap owns.
    for path in [
        "/ai-policy",
        "/robots.txt",
        "/ai.txt",
        "/.well-known/tdmrep.json",
    ] {
        assert_eq!(call(path).await, StatusCode::OK, "{path}");
    }
    assert_eq!(call("/gallery/4").await, StatusCode::TOO_MANY_REQUESTS);
}
