//! Opt-out meta tags streamed into HTML pages.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use lenscap::documents::ReservationConfig;
use lenscap::tag::html::{HtmlBody, MetaTags, inject_meta};
use proptest::prelude::*;

const ROBOTS: &str = r#"<meta name="robots" content="noai, noimageai">"#;
const TDM: &str = r#"<meta name="tdm-reservation" content="1">"#;
const POLICY: &str = r#"<meta name="tdm-policy" content="https://redlion.example/terms">"#;

// === test bodies ===

/// A body handing out preset chunks, then optional trailers.
struct Chunks {
    chunks: VecDeque<Bytes>,
    trailers: Option<HeaderMap>,
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(match self.chunks.pop_front() {
            Some(chunk) => Some(Ok(Frame::data(chunk))),
            None => self.trailers.take().map(|t| Ok(Frame::trailers(t))),
        })
    }
}

fn chunked(html: &[u8], size: usize) -> Chunks {
    Chunks {
        chunks: html
            .chunks(size.max(1))
            .map(Bytes::copy_from_slice)
            .collect(),
        trailers: None,
    }
}

/// A body fed through a channel, to watch output appear while input is still coming.
struct Channel(tokio::sync::mpsc::Receiver<Bytes>);

impl Body for Channel {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| Ok(Frame::data(c))))
    }
}

fn tags() -> Arc<MetaTags> {
    Arc::new(MetaTags::from_config(&ReservationConfig::default()))
}

fn tags_with_policy() -> Arc<MetaTags> {
    Arc::new(MetaTags::from_config(&ReservationConfig {
        policy_url: Some("https://redlion.example/terms".into()),
        ..Default::default()
    }))
}

fn page<B>(body: B) -> Response<B> {
    Response::builder()
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .body(body)
        .unwrap()
}

async fn collect<B: Body<Data = Bytes>>(body: B) -> Vec<u8>
where
    B::Error: std::fmt::Debug,
{
    body.collect().await.unwrap().to_bytes().to_vec()
}

/// The page after injection, fed in chunks of `size` bytes.
async fn rewrite_with(html: &str, size: usize, tags: Arc<MetaTags>) -> String {
    let res = inject_meta(page(chunked(html.as_bytes(), size)), tags);
    String::from_utf8(collect(res.into_body()).await).unwrap()
}

async fn rewrite(html: &str) -> String {
    // Every page is checked at 1-byte chunks too: the result must not depend on chunking.
    let whole = rewrite_with(html, usize::MAX, tags()).await;
    assert_eq!(
        rewrite_with(html, 1, tags()).await,
        whole,
        "1-byte chunks differ for {html:?}"
    );
    assert_eq!(
        rewrite_with(html, 7, tags()).await,
        whole,
        "7-byte chunks differ for {html:?}"
    );
    whole
}

// === where the tags go ===

#[tokio::test]
async fn first_children_of_head() {
    let html = "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>Terrace</title>\n</head>\n<body><img src=\"/a.jpg\"></body>\n</html>\n";
    let expected = html.replacen(
        "<meta charset=\"utf-8\">",
        &format!("<meta charset=\"utf-8\">{ROBOTS}{TDM}"),
        1,
    );
    assert_eq!(rewrite(html).await, expected);

    let html = "<html><head><title>Terrace</title></head><body></body></html>";
    let expected = html.replacen("<head>", &format!("<head>{ROBOTS}{TDM}"), 1);
    assert_eq!(rewrite(html).await, expected);
}

#[tokio::test]
async fn charset_declarations_stay_first() {
    let html = "<html><head><META HTTP-EQUIV=\"Content-Type\" CONTENT=\"text/html; charset=windows-1252\"><title>x</title></head></html>";
    let expected = html.replacen("1252\">", &format!("1252\">{ROBOTS}{TDM}"), 1);
    assert_eq!(rewrite(html).await, expected);
    // Without a head too.
    let html = "<meta charset=utf-8><title>x</title><p>y";
    assert_eq!(
        rewrite(html).await,
        format!("<meta charset=utf-8>{ROBOTS}{TDM}<title>x</title><p>y")
    );
}

#[tokio::test]
async fn tdm_policy_when_configured() {
    let html = "<html><head><title>x</title></head><body></body></html>";
    let out = rewrite_with(html, 1, tags_with_policy()).await;
    assert_eq!(
        out,
        format!("<html><head>{ROBOTS}{TDM}{POLICY}<title>x</title></head><body></body></html>")
    );
}

#[tokio::test]
async fn head_in_capitals_with_attributes() {
    let html =
        "<HTML><HEAD PROFILE=\"x\" data-note='a > b'><TITLE>T</TITLE></HEAD><BODY></BODY></HTML>";
    let expected = html.replacen(
        "<HEAD PROFILE=\"x\" data-note='a > b'>",
        &format!("<HEAD PROFILE=\"x\" data-note='a > b'>{ROBOTS}{TDM}"),
        1,
    );
    assert_eq!(rewrite(html).await, expected);
}

#[tokio::test]
async fn head_without_end_tag() {
    let html = "<html><head><title>T</title><body><p>hi</p></body></html>";
    assert_eq!(
        rewrite(html).await,
        format!("<html><head>{ROBOTS}{TDM}<title>T</title><body><p>hi</p></body></html>")
    );
}

#[tokio::test]
async fn no_head_goes_after_html() {
    let html = "<!doctype html><html lang=\"en\"><body><p>hi</p></body></html>";
    assert_eq!(
        rewrite(html).await,
        format!("<!doctype html><html lang=\"en\">{ROBOTS}{TDM}<body><p>hi</p></body></html>")
    );
}

#[tokio::test]
async fn no_html_no_head_goes_before_the_first_element() {
    assert_eq!(
        rewrite("<!doctype html>\n<title>T</title>\n<p>hi").await,
        format!("<!doctype html>\n{ROBOTS}{TDM}<title>T</title>\n<p>hi")
    );
    assert_eq!(
        rewrite("<p>hi</p><p>there</p>").await,
        format!("{ROBOTS}{TDM}<p>hi</p><p>there</p>")
    );
    assert_eq!(
        rewrite("just some text, no element").await,
        "just some text, no element"
    );
    assert_eq!(rewrite("").await, "");
}

#[tokio::test]
async fn decoy_heads_in_comments_and_scripts() {
    let html = "<!-- <head> --><html><head><script>var s = '<head><meta name=\"robots\" content=\"noai\">';</script></head><body></body></html>";
    let expected = html.replacen("<html><head>", &format!("<html><head>{ROBOTS}{TDM}"), 1);
    assert_eq!(rewrite(html).await, expected);
}

#[tokio::test]
async fn a_second_head_gets_nothing() {
    let html = "<html><head></head><body><head></head><meta name=\"robots\" content=\"noai\"></body></html>";
    let expected = html.replacen("<html><head>", &format!("<html><head>{ROBOTS}{TDM}"), 1);
    assert_eq!(rewrite(html).await, expected);
}

// === tags already present ===

#[tokio::test]
async fn existing_robots_noai_skips_ours() {
    let html = "<html><head><meta name=\"ROBOTS\" content=\"index,noai,noimageai\"><title>x</title></head><body></body></html>";
    let expected = html.replacen("<head>", &format!("<head>{TDM}"), 1);
    assert_eq!(rewrite(html).await, expected);
}

#[tokio::test]
async fn robots_without_noai_keeps_ours() {
    for content in ["index, follow", "NOAI", "noimageai"] {
        let html = format!(
            "<html><head><meta name=\"robots\" content=\"{content}\"></head><body></body></html>"
        );
        let expected = html.replacen("<head>", &format!("<head>{ROBOTS}{TDM}"), 1);
        assert_eq!(rewrite(&html).await, expected, "{content}");
    }
}

#[tokio::test]
async fn existing_tdm_reservation_skips_ours_and_the_policy() {
    let html = "<html><head><title>x</title><meta name=\"tdm-reservation\" content=\"0\"></head><body></body></html>";
    let out = rewrite_with(html, 3, tags_with_policy()).await;
    assert_eq!(out, html.replacen("<head>", &format!("<head>{ROBOTS}"), 1));
}

#[tokio::test]
async fn page_with_everything_is_byte_identical() {
    let html = "<html><head>\n<meta name=robots content=noai>\n<meta name=\"tdm-reservation\" content=\"1\">\n</head><body></body></html>";
    assert_eq!(rewrite(html).await, html);
}

#[tokio::test]
async fn existing_metas_in_a_head_without_end_tag() {
    let html = "<head><meta name=\"robots\" content=\"noai\"><p>body starts</p>";
    assert_eq!(
        rewrite(html).await,
        format!("<head>{TDM}<meta name=\"robots\" content=\"noai\"><p>body starts</p>")
    );
}

#[tokio::test]
async fn a_huge_head_stops_holding_back() {
    let style = "x".repeat(200 * 1024);
    let html = format!(
        "<html><head><style>{style}</style><meta name=\"robots\" content=\"noai\"></head><body></body></html>"
    );
    let out = rewrite_with(&html, 4096, tags()).await;
    // Past the hold limit the tags go in with what was seen so far: a harmless duplicate.
    assert_eq!(
        out,
        html.replacen("<head>", &format!("<head>{ROBOTS}{TDM}"), 1)
    );
}

// === responses left alone ===

#[tokio::test]
async fn non_html_and_compressed_pass_through() {
    let cases: Vec<(StatusCode, Vec<(&str, &str)>)> = vec![
        (StatusCode::OK, vec![("content-type", "image/jpeg")]),
        (
            StatusCode::OK,
            vec![("content-type", "text/html"), ("content-encoding", "gzip")],
        ),
        (
            StatusCode::OK,
            vec![("content-type", "text/html"), ("content-encoding", "br")],
        ),
        (
            StatusCode::OK,
            vec![
                ("content-type", "text/html"),
                ("cache-control", "no-transform"),
            ],
        ),
        (StatusCode::NOT_FOUND, vec![("content-type", "text/html")]),
        (
            StatusCode::PARTIAL_CONTENT,
            vec![("content-type", "text/html")],
        ),
        (StatusCode::OK, vec![]),
    ];
    let body = b"<html><head></head><body></body></html>";
    for (status, headers) in cases {
        let mut res = Response::new(chunked(body, 5));
        *res.status_mut() = status;
        for (k, v) in &headers {
            res.headers_mut().insert(*k, HeaderValue::from_static(v));
        }
        res.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        res.headers_mut()
            .insert(header::ETAG, HeaderValue::from_static("\"v1\""));
        let before = res.headers().clone();
        let out = inject_meta(res, tags());
        assert!(!out.body().is_rewriting(), "{status} {headers:?}");
        assert_eq!(out.headers(), &before, "{status} {headers:?}");
        assert_eq!(collect(out.into_body()).await, body, "{status} {headers:?}");
    }
}

#[tokio::test]
async fn nothing_to_add_passes_through() {
    let none = Arc::new(MetaTags::from_config(&ReservationConfig {
        html_meta: false,
        ..Default::default()
    }));
    let res = inject_meta(page(chunked(b"<html><head></head></html>", 4)), none);
    assert!(!res.body().is_rewriting());
    assert_eq!(
        collect(res.into_body()).await,
        b"<html><head></head></html>"
    );
}

// === headers and trailers ===

#[tokio::test]
async fn length_removed_strong_etag_weakened() {
    let mut res = page(chunked(b"<html><head></head></html>", 64));
    let h = res.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("26"));
    h.insert(header::ETAG, HeaderValue::from_static("\"abc\""));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=60"),
    );
    h.insert("x-custom", HeaderValue::from_static("kept"));
    let out = inject_meta(res, tags());
    assert!(out.body().is_rewriting());
    let h = out.headers();
    assert!(h.get(header::CONTENT_LENGTH).is_none());
    assert_eq!(h[header::ETAG], "W/\"abc\"");
    assert_eq!(h[header::CACHE_CONTROL], "max-age=60");
    assert_eq!(h["x-custom"], "kept");
    assert_eq!(h[header::CONTENT_TYPE], "text/html; charset=utf-8");
    assert_eq!(h.len(), 4);

    let mut res = page(chunked(b"<p>x</p>", 64));
    res.headers_mut()
        .insert(header::ETAG, HeaderValue::from_static("W/\"abc\""));
    assert_eq!(
        inject_meta(res, tags()).headers()[header::ETAG],
        "W/\"abc\""
    );
}

#[tokio::test]
async fn trailers_pass_through() {
    let mut trailers = HeaderMap::new();
    trailers.insert("x-checksum", HeaderValue::from_static("42"));
    for content_type in ["text/html", "image/png"] {
        let mut body = chunked(b"<html><head></head><body>x</body></html>", 3);
        body.trailers = Some(trailers.clone());
        let res = Response::builder()
            .header(header::CONTENT_TYPE, content_type)
            .body(body)
            .unwrap();
        let collected = inject_meta(res, tags())
            .into_body()
            .collect()
            .await
            .unwrap();
        assert_eq!(collected.trailers(), Some(&trailers), "{content_type}");
        let bytes = collected.to_bytes();
        assert!(bytes.ends_with(b"<body>x</body></html>"), "{content_type}");
    }
}

#[tokio::test]
async fn body_errors_pass_through() {
    let frames: Vec<Result<Frame<Bytes>, &'static str>> = vec![
        Ok(Frame::data(Bytes::from_static(b"<html><head>"))),
        Err("upstream reset"),
    ];
    let body = http_body_util::StreamBody::new(futures_util::stream::iter(frames));
    let mut out = inject_meta(page(body), tags()).into_body();
    let mut seen_error = false;
    while let Some(frame) = out.frame().await {
        if let Err(err) = frame {
            assert_eq!(err, "upstream reset");
            seen_error = true;
            break;
        }
    }
    assert!(seen_error);
}

#[test]
fn html_body_is_send() {
    fn send<T: Send>(_: &T) {}
    let res = inject_meta(page(chunked(b"<html>", 1)), tags());
    send(res.body());
    fn sync_free_send<T: Send + 'static>() {}
    sync_free_send::<HtmlBody<Chunks>>();
}

// === streaming ===

#[tokio::test]
async fn five_megabytes_stream_through() {
    const CHUNK: usize = 64 * 1024;
    let head = "<!doctype html><html><head><title>Gallery</title></head><body>\n";
    let row = "<figure><img src=\"/photos/terrace-0001.jpg\" alt=\"Guests on the terrace\"><figcaption>Terrace</figcaption></figure>\n";
    let mut html = String::from(head);
    while html.len() < 5 * 1024 * 1024 {
        html.push_str(row);
    }
    html.push_str("</body></html>\n");
    let input: Vec<Bytes> = html
        .as_bytes()
        .chunks(CHUNK)
        .map(Bytes::copy_from_slice)
        .collect();
    let last = input.len() - 1;

    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let mut body = inject_meta(page(Channel(rx)), tags()).into_body();
    let mut output = Vec::with_capacity(html.len() + 128);
    let mut first_output_at = None;
    for (i, chunk) in input.into_iter().enumerate() {
        tx.send(chunk).await.unwrap();
        // Take whatever the body has ready now, without waiting for more input.
        while let Ok(Some(frame)) =
            tokio::time::timeout(Duration::from_millis(20), body.frame()).await
        {
            let data = frame.unwrap().into_data().unwrap();
            first_output_at.get_or_insert(i);
            output.extend_from_slice(&data);
        }
    }
    drop(tx);
    while let Some(frame) = body.frame().await {
        output.extend_from_slice(&frame.unwrap().into_data().unwrap());
    }
    let first = first_output_at.expect("output before the end of input");
    assert!(
        first < last,
        "first output after input chunk {first} of {last}"
    );
    assert_eq!(
        first, 0,
        "the head fits in the first chunk, so output starts there"
    );
    let expected = html.replacen("<head>", &format!("<head>{ROBOTS}{TDM}"), 1);
    assert!(
        output == expected.as_bytes(),
        "output differs from input plus tags"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Any chunking gives the same bytes as feeding the page whole.
    #[test]
    fn chunking_never_changes_the_output(
        page_index in 0usize..5,
        cuts in prop::collection::vec(1usize..40, 1..64),
    ) {
        let pages = [
            "<!doctype html><html><head><meta charset=utf-8><title>x</title></head><body><p>a</p></body></html>",
            "<HTML><HEAD lang=en><META NAME=robots CONTENT=noai></HEAD><BODY>é ü 🍺</BODY></HTML>",
            "<title>t</title><meta name=tdm-reservation content=1><div>d</div>",
            "<html><body><script>document.write('<head>')</script></body></html>",
            "<head><style>p{}</style><script>if (a < b) {}</script><link rel=x href=y><body>z",
        ];
        let html = pages[page_index].as_bytes();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let whole = rt.block_on(collect(inject_meta(page(chunked(html, usize::MAX)), tags()).into_body()));
        let mut chunks = VecDeque::new();
        let mut at = 0;
        for cut in cuts.iter().cycle() {
            if at >= html.len() { break; }
            let end = (at + cut).min(html.len());
            chunks.push_back(Bytes::copy_from_slice(&html[at..end]));
            at = end;
        }
        let body = Chunks { chunks, trailers: None };
        let pieces = rt.block_on(collect(inject_meta(page(body), tags()).into_body()));
        prop_assert_eq!(&pieces, &whole);
        // Nothing of the page is lost or changed: removing our tags gives the input back.
        let stripped = String::from_utf8(whole).unwrap().replacen(ROBOTS, "", 1).replacen(TDM, "", 1);
        prop_assert_eq!(stripped.as_bytes(), html);
    }
}
