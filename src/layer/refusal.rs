//! The answers Lenscap gives instead of calling the inner service: a block, a 429 over
//! quota, the way-through page (and the answers of its pass URL), a trap page.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body::Body;

use super::ResponseBody;
use crate::documents::{CRAWLER_PRICE, LicenseTerms, escape_html};
use crate::limit::{Enforcement, Exceeded, PASS_PATH, PassError, RenderError, WayThrough};

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
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    rate_limit_fields(response.headers_mut(), exceeded, seconds);
    plain_no_store(response, "text/plain; charset=utf-8")
}

/// The IETF `RateLimit-Policy` and `RateLimit` fields naming the quota `exceeded`.
fn rate_limit_fields(headers: &mut http::HeaderMap, exceeded: Exceeded, seconds: u64) {
    let value = |text: String| HeaderValue::try_from(text).expect("ASCII header value");
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
}

/// The way-through page: `429` with `Retry-After` (the pass's wait), no JavaScript, a
/// `<meta http-equiv=refresh>` to the pass URL after the wait and the same as one button, the
/// policy page's link and the site's contact.
pub(super) fn way_through(way: &WayThrough, enforcement: &Enforcement) -> Response<Bytes> {
    let wait = way.wait_secs.max(1);
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("t", &way.token)
        .append_pair("to", &way.to)
        .finish();
    let url = escape_html(&format!("{PASS_PATH}?{query}"));
    let (token, to) = (escape_html(&way.token), escape_html(&way.to));
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex, nofollow\">\
         <meta http-equiv=\"refresh\" content=\"{wait};url={url}\">\
         <title>One moment</title></head><body>\
         <h1>One moment</h1>\
         <p>This site slows down programs that collect its photos in bulk, and you were \
         browsing quickly. Your page opens by itself in {wait} seconds.</p>\
         <form method=\"get\" action=\"{PASS_PATH}\">\
         <input type=\"hidden\" name=\"t\" value=\"{token}\">\
         <input type=\"hidden\" name=\"to\" value=\"{to}\">\
         <button type=\"submit\">Continue to the page</button></form>\
         {footer}</body></html>\n",
        footer = enforcement.way_footer,
    );
    let mut response = Response::new(Bytes::from(body));
    *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    let headers = response.headers_mut();
    headers.insert(header::RETRY_AFTER, HeaderValue::from(wait));
    if let Some(exceeded) = way.exceeded {
        rate_limit_fields(headers, exceeded, u64::from(wait));
    }
    headers.insert(
        "x-robots-tag",
        HeaderValue::from_static("noindex, nofollow"),
    );
    plain_no_store(response, "text/html; charset=utf-8")
}

/// A valid pass: `303 See Other` back to the page (the pass in its URL) with the pass cookie.
pub(super) fn pass_accepted(location: &str, set_cookie: HeaderValue) -> Response<Bytes> {
    let mut response = Response::new(Bytes::new());
    *response.status_mut() = StatusCode::SEE_OTHER;
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::try_from(location) {
        headers.insert(header::LOCATION, location);
    }
    headers.insert(header::SET_COOKIE, set_cookie);
    plain_no_store(response, "text/plain; charset=utf-8")
}

/// The render proof's stylesheet: one comment line, never stored; `400` naming why when its
/// token is not good (a browser ignores a stylesheet that fails).
pub(super) fn render_proof(proved: Result<(), RenderError>) -> Response<Bytes> {
    match proved {
        Ok(()) => plain_no_store(
            Response::new(Bytes::from_static(b"/* lenscap */\n")),
            "text/css; charset=utf-8",
        ),
        Err(error) => {
            let mut response = Response::new(Bytes::from(format!(
                "This is not a render proof of this site: {error}.\n"
            )));
            *response.status_mut() = StatusCode::BAD_REQUEST;
            plain_no_store(response, "text/plain; charset=utf-8")
        }
    }
}

/// A pass that is not valid: `400` naming why, and the way back.
pub(super) fn pass_refused(error: PassError) -> Response<Bytes> {
    let mut response = Response::new(Bytes::from(format!(
        "This pass is not valid: {error}. Open the page you wanted again to get a new one.\n"
    )));
    *response.status_mut() = StatusCode::BAD_REQUEST;
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
