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
pub mod range;

use std::sync::Arc;

use http::{HeaderMap, Method, Response, StatusCode, header};
use http_body::Body;

use crate::request_headers::Present;
use crate::stamp::{Prestamped, Stamp, StampBody, StampFuture, stamp_response};
use headers::OptOutHeaders;
use range::{Sliced, Slicing};

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
    /// An image answered over its stamped bytes (a range, a HEAD, a prestamped answer).
    Sliced(Sliced<B>),
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
    /// The inner service was asked a `HEAD`.
    head: bool,
    /// The request's validators had the stamp's ETag suffix removed for the inner service.
    stripped: bool,
    /// A stamped image path: the client's range and method, answered over the stamped bytes.
    slicing: Option<Slicing>,
    /// The way-through pass (`lc-pass=…`) a page's same-origin links carry on.
    link_pass: Option<Arc<str>>,
}

/// A tagged response, or one still being stamped (and then cut by its [`Slicing`]).
pub(crate) enum Tagged<B: Body> {
    Done(Response<TaggedBody<B>>),
    Stamping(StampFuture<B>, Slicing),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Image,
    Html,
    Other,
}

impl Tagging {
    /// Prepares tagging for a request; removes stamped ETag suffixes from its validators so
    /// the inner service recognises its own tags. For an image path with stamping on, the
    /// inner service is asked for the whole image (`Range` and `If-Range` taken off, `HEAD`
    /// made `GET`): ranges and HEAD are answered over the stamped bytes ([`range`]).
    /// `present`: which of those headers the request carries.
    pub(crate) fn new(
        settings: Arc<TagSettings>,
        method: &mut Method,
        image_path: bool,
        headers: &mut HeaderMap,
        present: Present,
    ) -> Self {
        let slicing = (settings.stamp.is_some() && image_path)
            .then(|| Slicing::take(method, headers, present.range));
        let head = *method == Method::HEAD;
        let stripped = match &settings.stamp {
            Some(stamp) if present.validators => stamp.strip_conditional(headers),
            _ => false,
        };
        Tagging {
            settings,
            image_path,
            head,
            stripped,
            slicing,
            link_pass: None,
        }
    }

    /// Makes an HTML page's same-origin links carry `pair` (`lc-pass=…`), for a pass holder
    /// that may keep no cookies.
    pub(crate) fn carry_pass(mut self, pair: Option<&str>) -> Self {
        self.link_pass = pair.map(Arc::from);
        self
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

    pub(crate) fn tag<B>(mut self, mut response: Response<B>) -> Tagged<B>
    where
        B: Body + Unpin,
    {
        let status = response.status();
        if status == StatusCode::PARTIAL_CONTENT
            && self.settings.stamp.is_some()
            && self.kind(&response) == Kind::Image
        {
            // No range was asked of the inner service for a stamped path: this slice of the
            // stored file cannot be stamped, and might carry a location.
            return Tagged::Done(Slicing::refuse_unstamped(response).map(TaggedBody::Sliced));
        }
        if !(status.is_success() || status == StatusCode::NOT_MODIFIED) {
            return match self.slicing.take() {
                Some(slicing) => Tagged::Done(slicing.answer(response).map(TaggedBody::Sliced)),
                None => Tagged::Done(response.map(TaggedBody::Inner)),
            };
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
                        // The inner service answered with bytes it stamped earlier (the
                        // static server's cache; under this stamp, or a reload's newer one):
                        // stamping again would add a second suffix to the ETag.
                        let slicing = self.slicing.take().unwrap_or_default();
                        if response.extensions().get::<Prestamped>().is_some() {
                            return Tagged::Done(slicing.answer(response).map(TaggedBody::Sliced));
                        }
                        Tagged::Stamping(stamp_response(response, stamp.clone()), slicing)
                    }
                    _ => match self.slicing.take() {
                        // A HEAD made GET (or a range) answered otherwise: no body of it.
                        Some(slicing) => {
                            Tagged::Done(slicing.answer(response).map(TaggedBody::Sliced))
                        }
                        None => Tagged::Done(response.map(TaggedBody::Inner)),
                    },
                }
            }
            Kind::Html => {
                settings.optout_headers.apply(response.headers_mut());
                #[cfg(feature = "html")]
                if (settings.meta_tags.is_some() || self.link_pass.is_some())
                    && !self.head
                    && status == StatusCode::OK
                {
                    let tags = settings.meta_tags.clone().unwrap_or_default();
                    return Tagged::Done(
                        html::inject_meta_and_pass(response, tags, self.link_pass.take())
                            .map(TaggedBody::Html),
                    );
                }
                Tagged::Done(response.map(TaggedBody::Inner))
            }
            Kind::Other => Tagged::Done(response.map(TaggedBody::Inner)),
        }
    }
}

/// A stamped image cut as the client asked: a range of the stamped bytes, or none for HEAD.
pub(crate) fn finish_stamped<B: Body>(
    response: Response<StampBody<B>>,
    slicing: &Slicing,
) -> Response<Sliced<StampBody<B>>> {
    slicing.answer(response)
}

/// Whether `haystack` starts with `prefix`, ASCII case ignored (header values).
pub(crate) fn starts_with_ignore_case(haystack: &[u8], prefix: &[u8]) -> bool {
    haystack.len() >= prefix.len() && haystack[..prefix.len()].eq_ignore_ascii_case(prefix)
}
