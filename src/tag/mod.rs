//! Tag: mark what goes out. Opt-out headers on images and pages ([`headers`]), the XMP stamp
//! and location scrub on images ([`stamp`](crate::stamp)), opt-out meta tags in HTML
//! ([`html`], with the `html` feature).
//!
//! ```
//! use http::HeaderMap;
//! use lenscap::tag::headers::{OptOutHeaders, OptOutHeadersConfig};
//!
//! let headers = OptOutHeaders::new(&OptOutHeadersConfig::default(), None).unwrap();
//! let mut out = HeaderMap::new();
//! headers.apply(&mut out);
//! assert_eq!(out["x-robots-tag"], "noai, noimageai");
//! ```

pub mod headers;
#[cfg(feature = "html")]
pub mod html;

use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use http_body::Body;

use crate::stamp::{Prestamped, Stamp, StampFuture, StampOutcome, stamp_response};
use headers::OptOutHeaders;

/// The tag stage, compiled: what goes on images and pages.
#[derive(Debug)]
pub(crate) struct TagSettings {
    pub(crate) optout_headers: OptOutHeaders,
    /// Opt-out meta tags for HTML pages (`[reservation] html_meta`); `None` when off.
    #[cfg(feature = "html")]
    pub(crate) meta_tags: Option<Arc<html::MetaTags>>,
    pub(crate) stamp: Option<Arc<Stamp>>,
}

/// A response once tagged: the inner body as it was, or with meta tags injected.
pub(crate) enum TaggedBody<B: Body> {
    Inner(B),
    #[cfg_attr(not(feature = "html"), allow(dead_code))]
    Html(HtmlBody<B>),
}

#[cfg(feature = "html")]
pub(crate) use html::HtmlBody;

/// Without the `html` feature no page is rewritten: a body that cannot exist.
#[cfg(not(feature = "html"))]
pub(crate) enum HtmlBody<B> {
    #[allow(dead_code)]
    Never(std::convert::Infallible, std::marker::PhantomData<B>),
}

#[cfg(not(feature = "html"))]
impl<B: Body> Body for HtmlBody<B> {
    type Data = bytes::Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, B::Error>>> {
        match self.as_ref().get_ref() {
            HtmlBody::Never(never, _) => match *never {},
        }
    }
}

/// What the response path needs to know about the request.
pub(crate) struct Tagging {
    settings: Arc<TagSettings>,
    image_path: bool,
    head: bool,
    /// The request's validators had the stamp's ETag suffix removed for the inner service.
    stripped: bool,
}

/// A tagged response, or one still being stamped.
pub(crate) enum Tagged<B: Body> {
    Done(Response<TaggedBody<B>>),
    Stamping(StampFuture<B>),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Image,
    Html,
    Other,
}

impl Tagging {
    /// Prepares tagging for a request; removes stamped ETag suffixes from its validators so
    /// the inner service recognises its own tags.
    pub(crate) fn new(
        settings: Arc<TagSettings>,
        head: bool,
        image_path: bool,
        headers: &mut HeaderMap,
    ) -> Self {
        // A resumed download must not splice an unstamped slice onto stamped bytes: with a
        // validator attached, the whole (stamped) image is sent instead of the range.
        if settings.stamp.is_some() && image_path && headers.contains_key(header::IF_RANGE) {
            headers.remove(header::IF_RANGE);
            headers.remove(header::RANGE);
        }
        let stripped = match &settings.stamp {
            Some(stamp)
                if headers.contains_key(header::IF_NONE_MATCH)
                    || headers.contains_key(header::IF_MATCH) =>
            {
                stamp.strip_conditional(headers)
            }
            _ => false,
        };
        Tagging {
            settings,
            image_path,
            head,
            stripped,
        }
    }

    fn kind<B>(&self, response: &Response<B>) -> Kind {
        match response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.as_bytes())
        {
            Some(ct) if starts_with_ignore_case(ct, b"image/") => Kind::Image,
            Some(ct) if starts_with_ignore_case(ct, b"text/html") => Kind::Html,
            Some(_) => Kind::Other,
            None if self.image_path => Kind::Image,
            None => Kind::Other,
        }
    }

    pub(crate) fn tag<B>(&self, mut response: Response<B>) -> Tagged<B>
    where
        B: Body + Unpin,
    {
        let status = response.status();
        if !(status.is_success() || status == StatusCode::NOT_MODIFIED) {
            return Tagged::Done(response.map(TaggedBody::Inner));
        }
        let settings = &self.settings;
        match self.kind(&response) {
            Kind::Image => {
                settings.optout_headers.apply(response.headers_mut());
                match &settings.stamp {
                    Some(stamp) if status == StatusCode::NOT_MODIFIED && self.stripped => {
                        stamp.mark_etag(response.headers_mut());
                        Tagged::Done(response.map(TaggedBody::Inner))
                    }
                    Some(stamp) if status == StatusCode::OK && !self.head => {
                        // The inner service answered with bytes it stamped earlier with this
                        // very stamp (the static server's cache): stamping again would add
                        // a second suffix to the ETag.
                        if response
                            .extensions()
                            .get::<Prestamped>()
                            .is_some_and(|done| Arc::ptr_eq(&done.0, stamp))
                        {
                            return Tagged::Done(finish_stamped(response).map(TaggedBody::Inner));
                        }
                        Tagged::Stamping(stamp_response(response, stamp.clone()))
                    }
                    _ => Tagged::Done(response.map(TaggedBody::Inner)),
                }
            }
            Kind::Html => {
                settings.optout_headers.apply(response.headers_mut());
                #[cfg(feature = "html")]
                if let Some(tags) = &settings.meta_tags
                    && !self.head
                    && status == StatusCode::OK
                {
                    return Tagged::Done(
                        html::inject_meta(response, tags.clone()).map(TaggedBody::Html),
                    );
                }
                Tagged::Done(response.map(TaggedBody::Inner))
            }
            Kind::Other => Tagged::Done(response.map(TaggedBody::Inner)),
        }
    }
}

/// A stamped image's bytes differ from the stored file's: offer no ranges of them.
pub(crate) fn finish_stamped<B>(mut response: Response<B>) -> Response<B> {
    if response
        .extensions()
        .get::<StampOutcome>()
        .is_some_and(StampOutcome::is_modified)
    {
        response
            .headers_mut()
            .insert(header::ACCEPT_RANGES, HeaderValue::from_static("none"));
    }
    response
}

/// Whether `haystack` starts with `prefix`, ASCII case ignored (header values).
pub(crate) fn starts_with_ignore_case(haystack: &[u8], prefix: &[u8]) -> bool {
    haystack.len() >= prefix.len() && haystack[..prefix.len()].eq_ignore_ascii_case(prefix)
}
