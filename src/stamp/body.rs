//! The http glue: [`stamp_response`], its future and the body that streams the result.
//!
//! The future polls only the first frames of the body, until the header parser decides,
//! then resolves to the response with corrected headers. It needs `B: Unpin` because the
//! body is polled before it is moved into [`StampBody`]; wrap a `!Unpin` body with
//! `http_body_util::BodyExt::boxed_unsync` (or `Box::pin`) first.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::walk::Walker;
use super::{Decision, PassReason, Pieces, Stamp, StampOutcome, Stamper};

/// Wraps an image response so its body is stamped and scrubbed as it streams.
///
/// Resolves to the same response with [`StampBody`] as its body, `Content-Length` grown by
/// the inserted bytes, a strong `ETag` suffixed with [`Stamp::etag_suffix`] (weak tags are
/// kept), and a [`StampOutcome`] in the extensions. Responses that are not `200`, carry a
/// `Content-Encoding` other than `identity` or a `Content-Range`, or whose `Content-Type`
/// is neither `image/*` nor `application/octet-stream` are not polled at all and pass
/// through untouched. Any `image/*` body is sniffed (the declared subtype is not trusted):
/// one that may carry a location Lenscap cannot remove is answered with a `403` instead,
/// marked [`Withheld`](super::Withheld).
pub fn stamp_response<B>(response: Response<B>, stamp: Arc<Stamp>) -> StampFuture<B>
where
    B: Body + Unpin,
    B::Data: Buf,
{
    let (parts, body) = response.into_parts();
    let FirstLook { skip, expected_len } = first_look(&parts.status, &parts.headers, &stamp);
    StampFuture {
        pending: Some(Pending {
            parts,
            body,
            skip,
            stamper: Stamper::new(expected_len),
        }),
        stamp,
    }
}

/// What the stamp reads of a response before its body.
struct FirstLook {
    /// Why the body is passed through without being looked at, if it is.
    skip: Option<PassReason>,
    /// Its `Content-Length`, when it holds one number (read only for a body to look at).
    expected_len: Option<u64>,
}

fn first_look(status: &StatusCode, headers: &HeaderMap, stamp: &Stamp) -> FirstLook {
    let skip = |reason| FirstLook {
        skip: Some(reason),
        expected_len: None,
    };
    if !stamp.enabled() {
        return skip(PassReason::Disabled);
    }
    if *status != StatusCode::OK {
        return skip(PassReason::Status);
    }
    // One walk over the response's few headers instead of a lookup by name of each.
    let (mut ranged, mut encoded, mut foreign) = (false, false, false);
    let mut length = None;
    for (name, value) in headers {
        if *name == CONTENT_RANGE {
            ranged = true;
        } else if *name == CONTENT_ENCODING {
            encoded |= is_encoded(value);
        } else if *name == CONTENT_TYPE {
            foreign |= !is_image_type(value);
        } else if *name == CONTENT_LENGTH && length.is_none() {
            length = Some(value);
        }
    }
    if ranged {
        skip(PassReason::ContentRange)
    } else if encoded {
        skip(PassReason::ContentEncoding)
    } else if foreign {
        skip(PassReason::ContentType)
    } else {
        FirstLook {
            skip: None,
            expected_len: length.and_then(length_of),
        }
    }
}

/// A `Content-Encoding` line naming a coding other than `identity`.
fn is_encoded(value: &HeaderValue) -> bool {
    value.to_str().map_or(true, |v| {
        v.split(',')
            .any(|c| !c.trim().eq_ignore_ascii_case("identity") && !c.trim().is_empty())
    })
}

/// A `Content-Type` line the bytes may decide on: an image type, or octet-stream.
fn is_image_type(value: &HeaderValue) -> bool {
    // Visible ASCII only, as `to_str` has it; then bytes (a `str` split starts a memchr).
    let text = value.to_str().unwrap_or("").as_bytes();
    let essence = match text.iter().position(|&b| b == b';') {
        Some(end) => &text[..end],
        None => text,
    }
    .trim_ascii();
    let image = essence.len() > 6 && essence[..6].eq_ignore_ascii_case(b"image/");
    image || essence.eq_ignore_ascii_case(b"application/octet-stream")
}

/// The `Content-Length` of a message, when it holds one number.
pub(crate) fn content_length(headers: &HeaderMap) -> Option<u64> {
    length_of(headers.get(CONTENT_LENGTH)?)
}

/// A `Content-Length` value, when it is one number: digits only (RFC 9110 §8.6), so not
/// `+5`, which `u64::from_str` takes.
fn length_of(value: &HeaderValue) -> Option<u64> {
    let digits = value.as_bytes().trim_ascii();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// `"abc"` becomes `"abc-lc…"`; `W/"abc"` stays; anything unparsable is dropped, since a
/// validator that might match the unstamped bytes must not survive.
pub(crate) fn stamped_etag(value: &HeaderValue, suffix: &str) -> Option<HeaderValue> {
    let bytes = value.as_bytes();
    if bytes.starts_with(b"W/") {
        return Some(value.clone());
    }
    let inner = bytes.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    if inner.contains(&b'"') {
        return None;
    }
    let mut tag = Vec::with_capacity(inner.len() + suffix.len() + 2);
    tag.push(b'"');
    tag.extend_from_slice(inner);
    tag.extend_from_slice(suffix.as_bytes());
    tag.push(b'"');
    // Checked, not copied again.
    HeaderValue::from_maybe_shared(Bytes::from(tag)).ok()
}

// === impl StampFuture ===

struct Pending<B: Body> {
    parts: http::response::Parts,
    body: B,
    skip: Option<PassReason>,
    stamper: Stamper,
}

pin_project! {
    /// The future returned by [`stamp_response`].
    pub struct StampFuture<B: Body> {
        pending: Option<Pending<B>>,
        stamp: Arc<Stamp>,
    }
}

impl<B> Future for StampFuture<B>
where
    B: Body + Unpin,
    B::Data: Buf,
{
    type Output = Response<StampBody<B>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let p = this
            .pending
            .as_mut()
            .expect("StampFuture polled after completion");
        if let Some(reason) = p.skip {
            let Pending { parts, body, .. } = this.pending.take().expect("checked above");
            return Poll::Ready(finish_skip(parts, body, reason));
        }
        let mut trailers = None;
        let mut error = None;
        let mut inner_done = false;
        let decision = loop {
            match Pin::new(&mut p.body).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(mut data) => {
                        let bytes = data.copy_to_bytes(data.remaining());
                        if let Some(d) = p.stamper.push(this.stamp, bytes) {
                            break d;
                        }
                    }
                    Err(frame) => {
                        trailers = frame.into_trailers().ok();
                        inner_done = true;
                        break p.stamper.finish(this.stamp);
                    }
                },
                Poll::Ready(Some(Err(e))) => {
                    error = Some(e);
                    break p.stamper.finish(this.stamp);
                }
                Poll::Ready(None) => {
                    inner_done = true;
                    break p.stamper.finish(this.stamp);
                }
            }
        };
        let Pending {
            mut parts,
            body,
            stamper,
            ..
        } = this.pending.take().expect("checked above");
        if decision.withheld {
            return Poll::Ready(withhold(parts, body));
        }
        apply_headers(&mut parts, &decision, this.stamp, stamper.expected_len());
        tracing::debug!(outcome = ?decision.outcome, added = decision.added, "image stamp");
        let Decision {
            head,
            walker,
            outcome,
            ..
        } = decision;
        parts.extensions.insert(outcome);
        let mut body = StampBody::new(body, head, walker);
        body.trailers = trailers;
        body.error = error;
        body.inner_done = inner_done;
        if inner_done && let Some(w) = body.walker.as_mut() {
            w.finish(&mut body.head);
            body.walker = None;
        }
        Poll::Ready(Response::from_parts(parts, body))
    }
}

const WITHHELD: &str = "403 Forbidden: this image is not served, because its format may carry a location that Lenscap cannot remove.\n";

/// The `403` that replaces an image which may carry a location we cannot remove.
fn withhold<B: Body>(mut parts: http::response::Parts, body: B) -> Response<StampBody<B>> {
    tracing::warn!(
        content_type = ?parts.headers.get(CONTENT_TYPE),
        "image withheld: it may carry a location that cannot be removed"
    );
    parts.status = StatusCode::FORBIDDEN;
    for name in [
        ETAG,
        http::header::LAST_MODIFIED,
        http::header::ACCEPT_RANGES,
    ] {
        parts.headers.remove(name);
    }
    parts.headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    parts.headers.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    parts
        .headers
        .insert(CONTENT_LENGTH, HeaderValue::from(WITHHELD.len()));
    parts.extensions.insert(StampOutcome::Scrubbed);
    parts.extensions.insert(super::Withheld);
    let mut out = StampBody::new(
        body,
        Pieces::one(Bytes::from_static(WITHHELD.as_bytes())),
        None,
    );
    out.inner_done = true;
    Response::from_parts(parts, out)
}

fn finish_skip<B: Body>(
    mut parts: http::response::Parts,
    body: B,
    reason: PassReason,
) -> Response<StampBody<B>> {
    parts.extensions.insert(StampOutcome::PassedThrough(reason));
    Response::from_parts(parts, StampBody::new(body, Pieces::default(), None))
}

fn apply_headers(
    parts: &mut http::response::Parts,
    decision: &Decision,
    stamp: &Stamp,
    content_length: Option<u64>,
) {
    if !decision.outcome.is_modified() {
        return;
    }
    if decision.added > 0 {
        match content_length {
            Some(len) => {
                let total = len.saturating_add(decision.added);
                parts
                    .headers
                    .insert(CONTENT_LENGTH, HeaderValue::from(total));
            }
            // A length that is not one number cannot be grown: it must not stay, declaring
            // fewer bytes than the stamped body has.
            None => {
                parts.headers.remove(CONTENT_LENGTH);
            }
        }
    }
    if let Some(tag) = parts.headers.get(ETAG) {
        match stamped_etag(tag, stamp.etag_suffix()) {
            Some(new) => {
                parts.headers.insert(ETAG, new);
            }
            None => {
                parts.headers.remove(ETAG);
            }
        }
    }
}

// === impl StampBody ===

pin_project! {
    /// A response body that yields the rewritten header first, then the rest of the inner
    /// body (through the WebP chunk walker when one is needed), then its trailers.
    pub struct StampBody<B: Body> {
        #[pin]
        inner: B,
        head: Pieces,
        // Boxed: only stamped images have one, and it would otherwise double the body's size.
        walker: Option<Box<Walker>>,
        trailers: Option<HeaderMap>,
        error: Option<B::Error>,
        inner_done: bool,
    }
}

impl<B: Body> StampBody<B> {
    fn new(inner: B, head: Pieces, walker: Option<Walker>) -> Self {
        StampBody {
            inner,
            head,
            walker: walker.map(Box::new),
            trailers: None,
            error: None,
            inner_done: false,
        }
    }

    /// Wraps a body that is passed through untouched.
    pub fn passthrough(inner: B) -> Self {
        StampBody::new(inner, Pieces::default(), None)
    }

    /// The inner body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    fn held(&self) -> u64 {
        let head: u64 = self.head.iter().map(|b| b.len() as u64).sum();
        head + self.walker.as_ref().map_or(0, |w| w.held())
    }
}

impl<B> Body for StampBody<B>
where
    B: Body,
    B::Data: Buf,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let mut this = self.project();
        loop {
            if let Some(bytes) = this.head.pop_front() {
                if bytes.is_empty() {
                    continue;
                }
                return Poll::Ready(Some(Ok(Frame::data(bytes))));
            }
            if let Some(error) = this.error.take() {
                return Poll::Ready(Some(Err(error)));
            }
            if let Some(trailers) = this.trailers.take() {
                return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
            }
            if *this.inner_done {
                return Poll::Ready(None);
            }
            match ready!(this.inner.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(mut data) => {
                        let bytes = data.copy_to_bytes(data.remaining());
                        match this.walker.as_mut() {
                            Some(walker) => walker.push(bytes, this.head),
                            None => return Poll::Ready(Some(Ok(Frame::data(bytes)))),
                        }
                    }
                    Err(frame) => {
                        *this.inner_done = true;
                        if let Some(mut walker) = this.walker.take() {
                            walker.finish(this.head);
                        }
                        *this.trailers = frame.into_trailers().ok();
                    }
                },
                Some(Err(error)) => return Poll::Ready(Some(Err(error))),
                None => {
                    *this.inner_done = true;
                    if let Some(mut walker) = this.walker.take() {
                        walker.finish(this.head);
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.head.is_empty()
            && self.error.is_none()
            && self.trailers.is_none()
            && self.walker.as_ref().is_none_or(|w| w.is_drained())
            && (self.inner_done || self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let held = self.held();
        if self.inner_done {
            return SizeHint::with_exact(held);
        }
        let inner = self.inner.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower().saturating_add(held));
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper.saturating_add(held));
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etag_rules() {
        let s = "-lc00000001";
        let v = |x: &'static str| HeaderValue::from_static(x);
        assert_eq!(
            stamped_etag(&v("\"abc\""), s),
            Some(v("\"abc-lc00000001\""))
        );
        assert_eq!(stamped_etag(&v("W/\"abc\""), s), Some(v("W/\"abc\"")));
        assert_eq!(stamped_etag(&v("abc"), s), None);
    }

    #[test]
    fn skip_rules() {
        let stamp = Stamp::compile(&super::super::StampConfig::default()).unwrap();
        let mut h = HeaderMap::new();
        assert_eq!(first_look(&StatusCode::OK, &h, &stamp).skip, None);
        assert_eq!(
            first_look(&StatusCode::PARTIAL_CONTENT, &h, &stamp).skip,
            Some(PassReason::Status)
        );
        h.insert(CONTENT_ENCODING, v("identity"));
        assert_eq!(first_look(&StatusCode::OK, &h, &stamp).skip, None);
        h.insert(CONTENT_ENCODING, v("gzip"));
        assert_eq!(
            first_look(&StatusCode::OK, &h, &stamp).skip,
            Some(PassReason::ContentEncoding)
        );
        h.remove(CONTENT_ENCODING);
        h.insert(CONTENT_TYPE, v("text/html; charset=utf-8"));
        assert_eq!(
            first_look(&StatusCode::OK, &h, &stamp).skip,
            Some(PassReason::ContentType)
        );
        h.insert(CONTENT_TYPE, v("application/octet-stream"));
        assert_eq!(first_look(&StatusCode::OK, &h, &stamp).skip, None);
        // Any image type is sniffed: a HEIC or a TIFF may carry a location too.
        h.insert(CONTENT_TYPE, v("image/heic"));
        assert_eq!(first_look(&StatusCode::OK, &h, &stamp).skip, None);
        // The length is read in the same walk: the first line's, when it is a number.
        assert_eq!(first_look(&StatusCode::OK, &h, &stamp).expected_len, None);
        h.append(CONTENT_LENGTH, v("1234"));
        h.append(CONTENT_LENGTH, v("99"));
        assert_eq!(
            first_look(&StatusCode::OK, &h, &stamp).expected_len,
            Some(1234)
        );
        for not_a_length in [
            "many",
            "+5",
            "-5",
            "",
            " ",
            "5 5",
            "99999999999999999999999",
        ] {
            h.insert(CONTENT_LENGTH, HeaderValue::from_str(not_a_length).unwrap());
            let look = first_look(&StatusCode::OK, &h, &stamp);
            assert_eq!(look.expected_len, None, "{not_a_length:?}");
        }
        h.insert(CONTENT_LENGTH, v(" 77 "));
        assert_eq!(
            first_look(&StatusCode::OK, &h, &stamp).expected_len,
            Some(77)
        );

        fn v(x: &'static str) -> HeaderValue {
            HeaderValue::from_static(x)
        }
    }
}
