//! The http glue: headers, pass-through rules, body plumbing, trailers and errors.

mod stamp_support;

use std::convert::Infallible;

use bytes::Bytes;
use futures_util::stream;
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full, StreamBody};
use lenscap::stamp::{PassReason, StampConfig, StampOutcome, stamp_response};
use stamp_support::*;

fn response(bytes: &[u8]) -> http::response::Builder {
    http::Response::builder()
        .header("content-type", "image/jpeg")
        .header("content-length", bytes.len())
        .header("etag", "\"v1\"")
        .header("cache-control", "public, max-age=60")
        .header("x-other", "kept")
        .status(200)
}

#[tokio::test]
async fn range_206_encoding_and_foreign_types_pass_byte_identical() {
    let stamp = stamp();
    let input = jpeg_baseline(32, 32);
    let cases: Vec<(http::Response<TestBody>, PassReason)> = vec![
        (
            response(&input)
                .status(206)
                .header(
                    "content-range",
                    format!("bytes 0-{}/{}", input.len() - 1, input.len()),
                )
                .body(body(split(&input, &Chunking::Fixed(7))))
                .unwrap(),
            PassReason::Status,
        ),
        (
            response(&input)
                .header(
                    "content-range",
                    format!("bytes 0-{}/{}", input.len() - 1, input.len()),
                )
                .body(body(split(&input, &Chunking::Fixed(7))))
                .unwrap(),
            PassReason::ContentRange,
        ),
        (
            response(&input)
                .header("content-encoding", "gzip")
                .body(body(split(&input, &Chunking::Fixed(7))))
                .unwrap(),
            PassReason::ContentEncoding,
        ),
        (
            response(&input)
                .header("content-type", "text/html")
                .body(body(split(&input, &Chunking::Fixed(7))))
                .unwrap(),
            PassReason::ContentType,
        ),
        (
            response(&input)
                .status(404)
                .body(body(split(&input, &Chunking::Fixed(7))))
                .unwrap(),
            PassReason::Status,
        ),
    ];
    for (resp, reason) in cases {
        let headers = resp.headers().clone();
        let status = resp.status();
        let served = serve_response(&stamp, resp).await;
        assert_eq!(served.outcome, StampOutcome::PassedThrough(reason));
        assert_eq!(served.body, input, "{reason}");
        assert_eq!(served.headers, headers, "{reason}");
        assert_eq!(served.status, status);
    }
}

#[tokio::test]
async fn headers_other_than_length_and_etag_untouched() {
    let stamp = stamp();
    let input = jpeg_baseline(16, 16);
    let resp = response(&input)
        .body(body(vec![Bytes::from(input.clone())]))
        .unwrap();
    let served = serve_response(&stamp, resp).await;
    assert_eq!(served.outcome, StampOutcome::Stamped);
    assert_eq!(served.headers["cache-control"], "public, max-age=60");
    assert_eq!(served.headers["x-other"], "kept");
    assert_eq!(served.headers["content-type"], "image/jpeg");
    assert_eq!(
        served.headers["content-length"],
        served.body.len().to_string().as_str()
    );
    assert_eq!(
        served.headers["etag"],
        format!("\"v1{}\"", stamp.etag_suffix()).as_str()
    );
}

#[tokio::test]
async fn weak_etag_kept_and_chunked_responses_get_no_length() {
    let stamp = stamp();
    let input = png_encode(8, 8, false);
    let resp = http::Response::builder()
        .header("etag", "W/\"weak\"")
        .body(body(split(&input, &Chunking::Fixed(7))))
        .unwrap();
    let served = serve_response(&stamp, resp).await;
    assert_eq!(served.outcome, StampOutcome::Stamped);
    assert_eq!(served.headers["etag"], "W/\"weak\"");
    assert!(!served.headers.contains_key("content-length"));
    assert_eq!(png_xmp(&served.body).len(), 1);
}

#[tokio::test]
async fn a_length_that_is_not_a_number_does_not_outlive_the_stamp() {
    let stamp = stamp();
    let input = jpeg_baseline(16, 16);
    for length in ["many", "12, 12"] {
        let resp = http::Response::builder()
            .header("content-type", "image/jpeg")
            .header("content-length", length)
            .body(body(vec![Bytes::from(input.clone())]))
            .unwrap();
        let served = serve_response(&stamp, resp).await;
        assert_eq!(served.outcome, StampOutcome::Stamped, "{length}");
        assert!(served.body.len() > input.len(), "{length}");
        assert!(
            !served.headers.contains_key("content-length"),
            "{length}: a length that does not match the stamped body was kept"
        );
    }
}

#[tokio::test]
async fn size_hint_and_end_of_stream_are_exact_for_full_bodies() {
    let stamp = stamp();
    for input in [
        jpeg_baseline(16, 16),
        png_encode(8, 8, true),
        webp_lossless(9, 9, true),
    ] {
        let resp = http::Response::builder()
            .body(Full::new(Bytes::from(input.clone())))
            .unwrap();
        let out = stamp_response(resp, stamp.clone()).await;
        let mut body = out.into_body();
        let hint = body.size_hint();
        let exact = hint.exact().expect("exact size hint");
        assert!(!body.is_end_stream());
        let mut total = Vec::new();
        while let Some(frame) = body.frame().await {
            total.extend_from_slice(&frame.unwrap().into_data().unwrap());
        }
        assert!(body.is_end_stream());
        assert_eq!(exact, total.len() as u64);
        assert_eq!(frames(&input), frames(&total));
    }
}

#[tokio::test]
async fn empty_body_and_head_like_responses_pass() {
    let stamp = stamp();
    let resp = http::Response::builder()
        .header("content-type", "image/png")
        .header("content-length", "1234")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let out = stamp_response(resp, stamp.clone()).await;
    assert_eq!(
        out.extensions().get::<StampOutcome>(),
        Some(&StampOutcome::PassedThrough(PassReason::Truncated))
    );
    assert_eq!(out.headers()["content-length"], "1234");
    assert!(
        out.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .is_empty()
    );
}

#[tokio::test]
async fn trailers_pass_through_after_the_data() {
    let stamp = stamp();
    let input = jpeg_baseline(16, 16);
    let mut trailers = HeaderMap::new();
    trailers.insert("x-checksum", HeaderValue::from_static("abc"));
    for chunk in [5usize, 4096] {
        let mut frames_in: Vec<Result<Frame<Bytes>, Infallible>> =
            split(&input, &Chunking::Fixed(chunk))
                .into_iter()
                .map(|b| Ok(Frame::data(b)))
                .collect();
        frames_in.push(Ok(Frame::trailers(trailers.clone())));
        let resp = http::Response::builder()
            .body(StreamBody::new(stream::iter(frames_in)))
            .unwrap();
        let out = stamp_response(resp, stamp.clone()).await;
        let collected = out.into_body().collect().await.unwrap();
        assert_eq!(collected.trailers(), Some(&trailers));
        let bytes = collected.to_bytes();
        assert_eq!(jpeg_xmp(&bytes).len(), 1);
    }
}

#[tokio::test]
async fn inner_error_during_header_is_reported_after_buffered_bytes() {
    let stamp = stamp();
    let input = jpeg_baseline(16, 16);
    let frames_in: Vec<Result<Frame<Bytes>, &'static str>> = vec![
        Ok(Frame::data(Bytes::copy_from_slice(&input[..10]))),
        Err("upstream reset"),
    ];
    let resp = http::Response::builder()
        .body(StreamBody::new(stream::iter(frames_in)))
        .unwrap();
    let out = stamp_response(resp, stamp.clone()).await;
    assert_eq!(
        out.extensions().get::<StampOutcome>(),
        Some(&StampOutcome::PassedThrough(PassReason::Truncated))
    );
    let mut body = out.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(&first[..], &input[..10]);
    assert_eq!(body.frame().await.unwrap().unwrap_err(), "upstream reset");
}

#[tokio::test]
async fn disabled_config_never_polls_the_body() {
    let stamp = stamp_with(StampConfig {
        xmp: false,
        scrub_gps: false,
        scrub_serials: false,
        ..StampConfig::default()
    });
    let input = jpeg_baseline(16, 16);
    let served = serve(&stamp, &input, "image/jpeg", Chunking::Fixed(3)).await;
    assert_eq!(
        served.outcome,
        StampOutcome::PassedThrough(PassReason::Disabled)
    );
    assert_eq!(served.body, input);
    assert_eq!(served.status, StatusCode::OK);
}

#[tokio::test]
async fn content_type_is_only_a_gate_the_bytes_decide() {
    // A PNG served as image/jpeg is stamped as the PNG it is.
    let stamp = stamp();
    let input = png_encode(8, 8, false);
    let served = serve_all(&stamp, &input, "image/jpeg").await;
    assert_eq!(png_xmp(&served.body).len(), 1);
    let served = serve_all(&stamp, &input, "application/octet-stream").await;
    assert_eq!(png_xmp(&served.body).len(), 1);
}
