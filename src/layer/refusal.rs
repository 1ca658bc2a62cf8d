//! The answers Lenscap gives instead of calling the inner service: a block, a 429 over
//! quota, a trap page.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body::Body;

use super::ResponseBody;
use crate::documents::{CRAWLER_PRICE, LicenseTerms};
use crate::limit::{Enforcement, Exceeded};

/// The block status with its short plain-text body.
pub(super) fn block<B: Body>(enforcement: &Enforcement) -> Response<ResponseBody<B>> {
    let mut response = Response::new(ResponseBody::full(enforcement.block_body.clone()));
    *response.status_mut() = enforcement.block_status;
    plain_no_store(response, "text/plain; charset=utf-8")
}

/// `429 Too Many Requests` with `Retry-After` and the IETF rate-limit fields.
pub(super) fn too_many_requests<B: Body>(exceeded: Exceeded) -> Response<ResponseBody<B>> {
    let seconds = exceeded.retry_after_secs();
    let mut response = Response::new(ResponseBody::full(Bytes::from(format!(
        "Too many requests. Please slow down and retry in {seconds} s.\n"
    ))));
    *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    let headers = response.headers_mut();
    let value = |text: String| HeaderValue::try_from(text).expect("ASCII header value");
    headers.insert(header::RETRY_AFTER, value(seconds.to_string()));
    headers.insert(
        "ratelimit-policy",
        value(format!(
            "\"{}\";q={};w={}",
            exceeded.quota,
            exceeded.rate.burst(),
            exceeded.rate.window_secs().max(1)
        )),
    );
    headers.insert(
        "ratelimit",
        value(format!("\"{}\";r=0;t={seconds}", exceeded.quota)),
    );
    plain_no_store(response, "text/plain; charset=utf-8")
}

/// `402 Payment Required` with the licence terms: a `Link` to the licence, `crawler-price`
/// when a price is set, and the terms in plain words.
pub(super) fn payment_required<B: Body>(terms: &LicenseTerms) -> Response<ResponseBody<B>> {
    let mut response = Response::new(ResponseBody::full(terms.body.clone()));
    *response.status_mut() = StatusCode::PAYMENT_REQUIRED;
    let headers = response.headers_mut();
    if let Some(link) = &terms.link {
        headers.insert(header::LINK, link.clone());
    }
    if let Some(price) = &terms.price_header {
        headers.insert(CRAWLER_PRICE, price.clone());
    }
    plain_no_store(response, "text/plain; charset=utf-8")
}

/// The small harmless page a trap path answers.
pub(super) fn trap<B: Body>() -> Response<ResponseBody<B>> {
    let response = Response::new(ResponseBody::full(Bytes::from_static(
        b"<!doctype html><title>Nothing here</title><p>Nothing here.</p>\n",
    )));
    let mut response = plain_no_store(response, "text/html; charset=utf-8");
    response.headers_mut().insert(
        "x-robots-tag",
        HeaderValue::from_static("noindex, nofollow"),
    );
    response
}

fn plain_no_store<B>(mut response: Response<B>, content_type: &'static str) -> Response<B> {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
