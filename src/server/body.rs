//! The body of every response a site gives: a file, an upstream's streamed body (with its
//! deadlines), or a short text the server wrote itself.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower::BoxError;
use tower_http::services::fs::ServeFileSystemResponseBody;

use super::client_body::ClientBody;
use super::upstream_pool::PooledSender;
use crate::metrics::SiteMetrics;

pin_project! {
    /// The body of a site's response: a file, an upstream's body, or a short text the server
    /// wrote itself (an error page).
    pub struct SiteBody {
        #[pin]
        kind: Kind,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind {
        File { #[pin] body: ServeFileSystemResponseBody },
        Upstream { #[pin] body: UpstreamBody },
        Full { #[pin] body: Full<Bytes> },
    }
}

impl SiteBody {
    pub(crate) fn file(body: ServeFileSystemResponseBody) -> Self {
        SiteBody {
            kind: Kind::File { body },
        }
    }

    pub(crate) fn upstream(body: UpstreamBody) -> Self {
        SiteBody {
            kind: Kind::Upstream { body },
        }
    }

    pub(crate) fn full(bytes: impl Into<Bytes>) -> Self {
        SiteBody {
            kind: Kind::Full {
                body: Full::new(bytes.into()),
            },
        }
    }
}

impl Body for SiteBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().kind.project() {
            KindProj::File { body } => body.poll_frame(cx).map_err(Into::into),
            KindProj::Upstream { body } => body.poll_frame(cx),
            KindProj::Full { body } => body.poll_frame(cx).map_err(|never| match never {}),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::File { body } => body.is_end_stream(),
            Kind::Upstream { body } => body.is_end_stream(),
            Kind::Full { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::File { body } => body.size_hint(),
            Kind::Upstream { body } => body.size_hint(),
            Kind::Full { body } => body.size_hint(),
        }
    }
}

/// A short plain-text response written by the server itself.
pub(crate) fn text_response(status: StatusCode, text: &'static str) -> Response<SiteBody> {
    let mut response = Response::new(SiteBody::full(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The site a response body belongs to, for its error metrics and logs.
pub(crate) struct BodyContext {
    pub(crate) site: String,
    pub(crate) metrics: SiteMetrics,
}

/// The body-idle and total deadlines of an upstream's response body, and the exchange's one
/// timer (reset for each wait).
pub(crate) struct BodyDeadlines {
    /// `proxy.body_idle_timeout`.
    pub(crate) idle: Duration,
    /// The exchange's end at the latest (`proxy.total_timeout` after it began).
    pub(crate) total: Instant,
    // Boxed so the body is Unpin, which response stamping needs to take it over.
    pub(crate) timer: Pin<Box<Sleep>>,
}

pin_project! {
    /// An upstream's response body with the body-idle and total deadlines; its first frame may
    /// have been read already (to answer 502 rather than cut a reply that never began). Its
    /// connection goes back to the pool once the body has ended, and is closed if the body
    /// fails or is dropped before its end.
    pub(crate) struct UpstreamBody {
        #[pin]
        body: Incoming,
        first: Option<Frame<Bytes>>,
        sender: Option<PooledSender<ClientBody>>,
        deadlines: BodyDeadlines,
        // When the timer should go off if the next piece is waited for: the timer itself is
        // reset only then (a reset of a timer not yet registered registers it).
        wake_at: Instant,
        context: Arc<BodyContext>,
        failed: bool,
    }
}

impl UpstreamBody {
    pub(crate) fn new(
        body: Incoming,
        first: Option<Frame<Bytes>>,
        sender: PooledSender<ClientBody>,
        deadlines: BodyDeadlines,
        context: Arc<BodyContext>,
    ) -> Self {
        let wake_at = (Instant::now() + deadlines.idle).min(deadlines.total);
        let mut sender = Some(sender);
        release_when_ended(&body, &mut sender);
        UpstreamBody {
            body,
            first,
            sender,
            deadlines,
            wake_at,
            context,
            failed: false,
        }
    }
}

/// Gives the connection back once the upstream's body has been read to its end.
fn release_when_ended(body: &Incoming, sender: &mut Option<PooledSender<ClientBody>>) {
    if body.is_end_stream()
        && let Some(sender) = sender.take()
    {
        sender.release();
    }
}

/// The upstream body stalled past `proxy.body_idle_timeout` or `proxy.total_timeout`.
#[derive(Debug, thiserror::Error)]
#[error("upstream response body timed out")]
pub(crate) struct BodyTimeout;

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        if *this.failed {
            return Poll::Ready(None);
        }
        let deadlines = this.deadlines;
        if let Some(frame) = this.first.take() {
            *this.wake_at = (Instant::now() + deadlines.idle).min(deadlines.total);
            return Poll::Ready(Some(Ok(frame)));
        }
        match this.body.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                release_when_ended(this.body.as_ref().get_ref(), this.sender);
                *this.wake_at = (Instant::now() + deadlines.idle).min(deadlines.total);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                *this.failed = true;
                this.sender.take();
                this.context.metrics.upstream_error("body");
                tracing::warn!(
                    target: "lenscap::proxy",
                    site = %this.context.site,
                    %error,
                    "upstream response body failed; the client's response is cut short"
                );
                Poll::Ready(Some(Err(error.into())))
            }
            Poll::Ready(None) => {
                if let Some(sender) = this.sender.take() {
                    sender.release();
                }
                Poll::Ready(None)
            }
            Poll::Pending => {
                if deadlines.timer.deadline() != *this.wake_at {
                    deadlines.timer.as_mut().reset(*this.wake_at);
                }
                ready!(deadlines.timer.as_mut().poll(cx));
                *this.failed = true;
                this.sender.take();
                this.context.metrics.upstream_error("timeout");
                tracing::warn!(
                    target: "lenscap::proxy",
                    site = %this.context.site,
                    "upstream response body stalled past its timeout; the client's response is cut short"
                );
                Poll::Ready(Some(Err(BodyTimeout.into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let mut hint = self.body.size_hint();
        let held = self
            .first
            .as_ref()
            .and_then(Frame::data_ref)
            .map_or(0, |data| data.len() as u64);
        if held > 0 {
            if let Some(upper) = hint.upper() {
                hint.set_upper(upper.saturating_add(held));
            }
            hint.set_lower(hint.lower().saturating_add(held));
        }
        hint
    }
}
