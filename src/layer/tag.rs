//! Tagging responses on their way out: opt-out headers on images and pages, the XMP stamp and
//! location scrub on images, opt-out meta tags in HTML.

use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use http_body::Body;

use super::ResponseBody;
use crate::policy::Policy;
use crate::stamp::html::inject_meta;
use crate::stamp::{Prestamped, StampFuture, StampOutcome, stamp_response};

/// What the response path needs to know about the request.
pub(crate) struct Tagging {
    policy: Arc<Policy>,
    image_path: bool,
    head: bool,
    /// The request's validators had the stamp's ETag suffix removed for the inner service.
    stripped: bool,
}

/// A tagged response, or one still being stamped.
pub(crate) enum Tagged<B: Body> {
    Done(Response<ResponseBody<B>>),
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
        policy: Arc<Policy>,
        head: bool,
        image_path: bool,
        headers: &mut HeaderMap,
    ) -> Self {
        // A resumed download must not splice an unstamped slice onto stamped bytes: with a
        // validator attached, the whole (stamped) image is sent instead of the range.
        if policy.stamp.is_some() && image_path && headers.contains_key(header::IF_RANGE) {
            headers.remove(header::IF_RANGE);
            headers.remove(header::RANGE);
        }
        let stripped = match &policy.stamp {
            Some(stamp)
                if headers.contains_key(header::IF_NONE_MATCH)
                    || headers.contains_key(header::IF_MATCH) =>
            {
                stamp.strip_conditional(headers)
            }
            _ => false,
        };
        Tagging {
            policy,
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
            return Tagged::Done(response.map(ResponseBody::inner));
        }
        let policy = &self.policy;
        match self.kind(&response) {
            Kind::Image => {
                policy.optout_headers.apply(response.headers_mut());
                match &policy.stamp {
                    Some(stamp) if status == StatusCode::NOT_MODIFIED && self.stripped => {
                        stamp.mark_etag(response.headers_mut());
                        Tagged::Done(response.map(ResponseBody::inner))
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
                            return Tagged::Done(finish_stamped(response).map(ResponseBody::inner));
                        }
                        Tagged::Stamping(stamp_response(response, stamp.clone()))
                    }
                    _ => Tagged::Done(response.map(ResponseBody::inner)),
                }
            }
            Kind::Html => {
                policy.optout_headers.apply(response.headers_mut());
                if policy.reservation.html_meta && !self.head && status == StatusCode::OK {
                    Tagged::Done(
                        inject_meta(response, policy.meta_tags.clone()).map(ResponseBody::html),
                    )
                } else {
                    Tagged::Done(response.map(ResponseBody::inner))
                }
            }
            Kind::Other => Tagged::Done(response.map(ResponseBody::inner)),
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

fn starts_with_ignore_case(haystack: &[u8], prefix: &[u8]) -> bool {
    haystack.len() >= prefix.len() && haystack[..prefix.len()].eq_ignore_ascii_case(prefix)
}
