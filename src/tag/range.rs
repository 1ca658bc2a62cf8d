//! Ranges and HEAD over the stamped image, never over the stored file.
//!
//! A stamped image's bytes differ from the file the inner service holds: a slice of the file
//! would splice unscrubbed bytes (a GPS position) into a resumed download, and a HEAD of the
//! file would describe bytes nobody receives. So for an image path with stamping on, the
//! request's `Range` and `If-Range` are taken off before the inner service sees them (it
//! answers the whole image), a `HEAD` becomes a `GET`, and once the stamper has settled the
//! image's length and ETag the answer is cut here:
//!
//! - one satisfiable range (`bytes=a-b`, `bytes=a-`, `bytes=-n`), with no `If-Range` or one
//!   naming the stamped strong ETag: `206` with `Content-Range`, the slice streamed;
//! - a range starting past the end: `416` with `Content-Range: bytes */len`;
//! - several ranges, an `If-Range` date or another tag, an unknown length: the whole stamped
//!   `200` (RFC 9110 lets a server ignore `Range`);
//! - `HEAD`: the stamped `200`'s headers, no body.
//!
//! Only the header bytes the stamper needs are buffered; the slice is streamed.
//!
//! ```
//! use http::HeaderMap;
//! use lenscap::tag::range::ByteRange;
//!
//! assert_eq!(ByteRange::parse("bytes=0-", 1000), Some(ByteRange::Slice { start: 0, end: 999 }));
//! assert_eq!(ByteRange::parse("bytes=-100", 1000), Some(ByteRange::Slice { start: 900, end: 999 }));
//! assert_eq!(ByteRange::parse("bytes=2000-", 1000), Some(ByteRange::Unsatisfiable));
//! assert_eq!(ByteRange::parse("bytes=0-1,5-9", 1000), None); // the whole image instead
//! # let _ = HeaderMap::new();
//! ```

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::stamp::content_length;

/// What the client asked of an image, kept while the inner service answers the whole of it.
#[derive(Debug, Default)]
pub(crate) struct Slicing {
    range: Option<HeaderValue>,
    if_range: Option<HeaderValue>,
    head: bool,
}

impl Slicing {
    /// Takes `Range` and `If-Range` off the request and turns a `HEAD` into a `GET`.
    /// `ranged`: the request has either header (known from one pass over its headers; without
    /// them there is nothing to look up).
    pub(crate) fn take(method: &mut Method, headers: &mut HeaderMap, ranged: bool) -> Slicing {
        let head = *method == Method::HEAD;
        if head {
            *method = Method::GET;
        }
        let (range, if_range) = if ranged {
            (
                headers.remove(header::RANGE),
                headers.remove(header::IF_RANGE),
            )
        } else {
            (None, None)
        };
        Slicing {
            range,
            if_range,
            head,
        }
    }

    /// The client's answer cut from the whole (stamped) response.
    pub(crate) fn answer<B: Body>(&self, mut response: Response<B>) -> Response<Sliced<B>> {
        let len = content_length(response.headers());
        if response.status() != StatusCode::OK {
            return self.finish(response, 0, None);
        }
        if len.is_some() {
            response
                .headers_mut()
                .insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        } else {
            response.headers_mut().remove(header::ACCEPT_RANGES);
        }
        // Ranges are defined for GET only (RFC 9110 §14.2): a HEAD describes the whole.
        let (Some(range), Some(len), false) = (&self.range, len, self.head) else {
            return self.finish(response, 0, None);
        };
        if !self.if_range_holds(response.headers()) {
            return self.finish(response, 0, None);
        }
        let Some(range) = range.to_str().ok().and_then(|r| ByteRange::parse(r, len)) else {
            return self.finish(response, 0, None);
        };
        match range {
            ByteRange::Slice { start, end } => {
                *response.status_mut() = StatusCode::PARTIAL_CONTENT;
                let headers = response.headers_mut();
                headers.insert(
                    header::CONTENT_RANGE,
                    HeaderValue::from_str(&format!("bytes {start}-{end}/{len}"))
                        .expect("digits are a valid header value"),
                );
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start + 1));
                self.finish(response, start, Some(end - start + 1))
            }
            ByteRange::Unsatisfiable => {
                *response.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
                let headers = response.headers_mut();
                headers.insert(
                    header::CONTENT_RANGE,
                    HeaderValue::from_str(&format!("bytes */{len}"))
                        .expect("digits are a valid header value"),
                );
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
                self.finish(response, 0, Some(0))
            }
        }
    }

    /// A slice of the stored file the client asked no slice of (an upstream that answers
    /// ranges unasked): not stampable, so not sent.
    pub(crate) fn refuse_unstamped<B: Body>(response: Response<B>) -> Response<Sliced<B>> {
        let (mut parts, body) = response.into_parts();
        parts.status = StatusCode::BAD_GATEWAY;
        for name in [
            header::CONTENT_RANGE,
            header::CONTENT_TYPE,
            header::ETAG,
            header::LAST_MODIFIED,
        ] {
            parts.headers.remove(name);
        }
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(0));
        Response::from_parts(parts, Sliced::new(body, 0, Some(0)))
    }

    fn finish<B: Body>(
        &self,
        response: Response<B>,
        skip: u64,
        take: Option<u64>,
    ) -> Response<Sliced<B>> {
        let take = if self.head { Some(0) } else { take };
        response.map(|body| Sliced::new(body, skip, take))
    }

    /// No `If-Range`, or one naming the answer's strong ETag (a date is not trusted: the
    /// stamp can change while the file's modification time stays).
    fn if_range_holds(&self, headers: &HeaderMap) -> bool {
        let Some(wanted) = &self.if_range else {
            return true;
        };
        let wanted = wanted.as_bytes();
        wanted.starts_with(b"\"")
            && headers
                .get(header::ETAG)
                .is_some_and(|etag| etag.as_bytes() == wanted)
    }
}

/// One `Range` header read against a length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ByteRange {
    /// Bytes `start..=end`, both within the image.
    Slice {
        /// First byte.
        start: u64,
        /// Last byte (inclusive).
        end: u64,
    },
    /// A single range that starts past the end (`416`).
    Unsatisfiable,
}

impl ByteRange {
    /// Reads `value` against an image of `len` bytes; `None` means "send the whole image"
    /// (several ranges, another unit, or a header that does not parse).
    pub fn parse(value: &str, len: u64) -> Option<ByteRange> {
        let spec = value.trim().strip_prefix("bytes=")?.trim();
        if spec.contains(',') {
            return None;
        }
        let (first, last) = spec.split_once('-')?;
        let (first, last) = (first.trim(), last.trim());
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if first.is_empty() {
            // A suffix: the last `n` bytes.
            if !digits(last) {
                return None;
            }
            let n: u64 = last.parse().ok()?;
            if n == 0 || len == 0 {
                return Some(ByteRange::Unsatisfiable);
            }
            return Some(ByteRange::Slice {
                start: len.saturating_sub(n),
                end: len - 1,
            });
        }
        if !digits(first) || !(last.is_empty() || digits(last)) {
            return None;
        }
        let start: u64 = first.parse().ok()?;
        let end = if last.is_empty() {
            u64::MAX
        } else {
            last.parse().ok()?
        };
        if end < start {
            return None;
        }
        if start >= len {
            return Some(ByteRange::Unsatisfiable);
        }
        Some(ByteRange::Slice {
            start,
            end: end.min(len - 1),
        })
    }
}

pin_project! {
    /// A body with its first `skip` bytes dropped and at most `take` bytes after them.
    pub struct Sliced<B> {
        #[pin]
        inner: B,
        skip: u64,
        take: Option<u64>,
    }
}

impl<B> Sliced<B> {
    pub(crate) fn new(inner: B, skip: u64, take: Option<u64>) -> Self {
        Sliced { inner, skip, take }
    }
}

impl<B> Body for Sliced<B>
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
            if *this.take == Some(0) {
                return Poll::Ready(None);
            }
            let frame = match ready!(this.inner.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => frame,
                Some(Err(error)) => return Poll::Ready(Some(Err(error))),
                None => return Poll::Ready(None),
            };
            let mut data = match frame.into_data() {
                Ok(mut data) => data.copy_to_bytes(data.remaining()),
                // Trailers belong to the whole body only.
                Err(frame) if this.take.is_none() && *this.skip == 0 => {
                    return Poll::Ready(Some(Ok(
                        frame.map_data(|mut d| d.copy_to_bytes(d.remaining()))
                    )));
                }
                Err(_) => continue,
            };
            if *this.skip > 0 {
                let len = data.len() as u64;
                if len <= *this.skip {
                    *this.skip -= len;
                    continue;
                }
                data = data.slice(*this.skip as usize..);
                *this.skip = 0;
            }
            if let Some(left) = this.take.as_mut() {
                if (data.len() as u64) > *left {
                    data.truncate(*left as usize);
                }
                *left -= data.len() as u64;
            }
            if data.is_empty() {
                continue;
            }
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.take == Some(0) || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match self.take {
            Some(take) => {
                let mut hint = SizeHint::new();
                hint.set_upper(take);
                hint
            }
            None if self.skip == 0 => self.inner.size_hint(),
            None => SizeHint::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full, StreamBody};

    #[test]
    fn ranges_read_against_a_length() {
        let r = |s: &str| ByteRange::parse(s, 100);
        let slice = |start, end| Some(ByteRange::Slice { start, end });
        assert_eq!(r("bytes=0-"), slice(0, 99));
        assert_eq!(r("bytes=0-500"), slice(0, 99));
        assert_eq!(r("bytes=10-19"), slice(10, 19));
        assert_eq!(r("bytes=-10"), slice(90, 99));
        assert_eq!(r("bytes=-1000"), slice(0, 99));
        assert_eq!(r("bytes=99-99"), slice(99, 99));
        assert_eq!(r("bytes=100-"), Some(ByteRange::Unsatisfiable));
        assert_eq!(r("bytes=-0"), Some(ByteRange::Unsatisfiable));
        for whole in [
            "bytes=0-1,5-9",
            "bytes=5-1",
            "items=0-1",
            "bytes=a-",
            "bytes=-",
            "bytes=1",
        ] {
            assert_eq!(r(whole), None, "{whole}");
        }
    }

    async fn cut(slicing: &Slicing, body: &'static [u8], etag: &str) -> (StatusCode, Vec<u8>) {
        let chunks: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = body
            .chunks(3)
            .map(|c| Ok(Frame::data(Bytes::from_static(c))))
            .collect();
        let response = Response::builder()
            .header(header::CONTENT_LENGTH, body.len())
            .header(header::ETAG, etag)
            .body(StreamBody::new(futures_stream(chunks)))
            .unwrap();
        let answer = slicing.answer(response);
        let status = answer.status();
        let bytes = answer.into_body().collect().await.unwrap().to_bytes();
        (status, bytes.to_vec())
    }

    fn futures_stream<T: Unpin>(items: Vec<T>) -> impl futures_util::Stream<Item = T> + Unpin {
        futures_util::stream::iter(items)
    }

    fn asked(range: &str, if_range: Option<&str>, head: bool) -> Slicing {
        let mut headers = HeaderMap::new();
        headers.insert(header::RANGE, range.parse().unwrap());
        if let Some(tag) = if_range {
            headers.insert(header::IF_RANGE, tag.parse().unwrap());
        }
        let mut method = if head { Method::HEAD } else { Method::GET };
        let slicing = Slicing::take(&mut method, &mut headers, true);
        assert_eq!(method, Method::GET);
        assert!(headers.is_empty());
        slicing
    }

    #[tokio::test]
    async fn slices_stream_across_chunks() {
        let body = b"0123456789abcdefghij";
        let tag = "\"v1-lc\"";
        assert_eq!(
            cut(&asked("bytes=4-12", None, false), body, tag).await,
            (StatusCode::PARTIAL_CONTENT, b"456789abc".to_vec())
        );
        assert_eq!(
            cut(&asked("bytes=-2", Some(tag), false), body, tag).await,
            (StatusCode::PARTIAL_CONTENT, b"ij".to_vec())
        );
        assert_eq!(
            cut(&asked("bytes=4-12", Some("\"v1\""), false), body, tag).await,
            (StatusCode::OK, body.to_vec())
        );
        assert_eq!(
            cut(&asked("bytes=4-", None, true), body, tag).await,
            (StatusCode::OK, Vec::new())
        );
        assert_eq!(
            cut(&asked("bytes=40-", None, false), body, tag).await,
            (StatusCode::RANGE_NOT_SATISFIABLE, Vec::new())
        );
        let whole = Slicing::default().answer(Response::new(Full::new(Bytes::from_static(body))));
        assert_eq!(
            whole.into_body().collect().await.unwrap().to_bytes(),
            &body[..]
        );
    }
}
