//! The response body of a [`Lenscap`](super::Lenscap) service.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::limit::PageEmbeds;
use crate::stamp::StampBody;
use crate::tag::range::Sliced;
use crate::tag::{HtmlBody, TaggedBody};

pin_project! {
    /// The inner service's body (passed through, stamped, or with meta tags injected) or a body
    /// Lenscap wrote itself (a block, a document).
    pub struct ResponseBody<B: Body> {
        #[pin]
        kind: Kind<B>,
        // Reads the images an HTML page embeds as it streams out (the limit stage's).
        embeds: Option<Box<PageEmbeds>>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B: Body> {
        Inner { #[pin] body: B },
        Stamped { #[pin] body: Sliced<StampBody<B>> },
        Sliced { #[pin] body: Sliced<B> },
        Html { #[pin] body: HtmlBody<B> },
        Full { data: Option<Bytes> },
    }
}

impl<B: Body> ResponseBody<B> {
    /// Wraps the inner body.
    pub fn inner(body: B) -> Self {
        ResponseBody {
            kind: Kind::Inner { body },
            embeds: None,
        }
    }

    pub(crate) fn stamped(body: Sliced<StampBody<B>>) -> Self {
        ResponseBody {
            kind: Kind::Stamped { body },
            embeds: None,
        }
    }

    pub(crate) fn tagged(body: TaggedBody<B>) -> Self {
        let kind = match body {
            TaggedBody::Inner(body) => Kind::Inner { body },
            TaggedBody::Html(body) => Kind::Html { body },
            TaggedBody::Sliced(body) => Kind::Sliced { body },
        };
        ResponseBody { kind, embeds: None }
    }

    /// The same body, its bytes read for the images the page embeds.
    pub(crate) fn with_embeds(mut self, embeds: Option<Box<PageEmbeds>>) -> Self {
        self.embeds = embeds;
        self
    }

    /// A body of fixed bytes.
    pub fn full(data: Bytes) -> Self {
        ResponseBody {
            kind: Kind::Full {
                data: (!data.is_empty()).then_some(data),
            },
            embeds: None,
        }
    }

    /// An empty body.
    pub fn empty() -> Self {
        ResponseBody {
            kind: Kind::Full { data: None },
            embeds: None,
        }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body + Unpin,
    B::Data: Buf,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let mut this = self.project();
        let polled = poll_kind(this.kind.as_mut(), cx);
        if this.embeds.is_some() {
            if let Poll::Ready(Some(Ok(frame))) = &polled
                && let Some(data) = frame.data_ref()
                && let Some(embeds) = this.embeds.as_deref_mut()
            {
                embeds.feed(data);
            }
            // The page is complete: at its end, or when its last frame says so (a server may
            // never poll again after that).
            let ended = matches!(polled, Poll::Ready(None))
                || (matches!(polled, Poll::Ready(Some(Ok(_))))
                    && kind_is_end_stream(&this.kind.as_ref()));
            if ended && let Some(embeds) = this.embeds.take() {
                embeds.finish();
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        kind_is_end_stream(&self.kind)
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Stamped { body } => body.size_hint(),
            Kind::Sliced { body } => body.size_hint(),
            Kind::Html { body } => body.size_hint(),
            Kind::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}

fn poll_kind<B>(
    kind: Pin<&mut Kind<B>>,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Frame<Bytes>, B::Error>>>
where
    B: Body + Unpin,
    B::Data: Buf,
{
    match kind.project() {
        KindProj::Inner { body } => body.poll_frame(cx).map(|frame| {
            frame.map(|result| {
                result.map(|f| f.map_data(|mut data| data.copy_to_bytes(data.remaining())))
            })
        }),
        KindProj::Stamped { body } => body.poll_frame(cx),
        KindProj::Sliced { body } => body.poll_frame(cx),
        KindProj::Html { body } => body.poll_frame(cx),
        KindProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
    }
}

fn kind_is_end_stream<B>(kind: &Kind<B>) -> bool
where
    B: Body + Unpin,
    B::Data: Buf,
{
    match kind {
        Kind::Inner { body } => body.is_end_stream(),
        Kind::Stamped { body } => body.is_end_stream(),
        Kind::Sliced { body } => body.is_end_stream(),
        Kind::Html { body } => body.is_end_stream(),
        Kind::Full { data } => data.is_none(),
    }
}
