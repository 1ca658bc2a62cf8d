//! The [`ResponseFuture`] of a [`Lenscap`](super::Lenscap) service.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Buf;
use http::Response;
use http_body::Body;
use pin_project_lite::pin_project;
use tokio::time::Sleep;

use super::{ResponseBody, Shared};
use crate::limit::AfterResponse;
use crate::stamp::StampFuture;
use crate::tag::range::Slicing;
use crate::tag::{Tagged, TaggedBody, Tagging, finish_stamped};

/// One request held in the tarpit; frees its place when dropped.
#[derive(Debug)]
pub(crate) struct TarpitSlot {
    shared: Arc<Shared>,
}

impl TarpitSlot {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        TarpitSlot { shared }
    }
}

impl Drop for TarpitSlot {
    fn drop(&mut self) {
        self.shared.tarpit_held.fetch_sub(1, Ordering::AcqRel);
    }
}

pin_project! {
    /// Response future of [`Lenscap`](super::Lenscap): the inner call, an answer Lenscap gave
    /// itself, or a response being held in the tarpit. Never boxed.
    pub struct ResponseFuture<F, B: Body> {
        #[pin]
        state: State<F, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B: Body> {
        Inner { #[pin] future: F, tagging: Option<Tagging>, tarpit: Option<(TarpitSlot, Duration)>, after: AfterResponse },
        Stamping { #[pin] future: StampFuture<B>, tarpit: Option<(TarpitSlot, Duration)>, slicing: Slicing },
        Held { #[pin] sleep: Sleep, response: Option<Response<ResponseBody<B>>>, slot: Option<TarpitSlot> },
        Ready { response: Option<Response<ResponseBody<B>>> },
    }
}

impl<F, B: Body> ResponseFuture<F, B> {
    /// The inner call, with the limiter work left for its response (`after`: a cookie to set,
    /// a Content-Type to check) and the tagging.
    pub(crate) fn inner(
        future: F,
        tagging: Option<Tagging>,
        tarpit: Option<(TarpitSlot, Duration)>,
        after: AfterResponse,
    ) -> Self {
        ResponseFuture {
            state: State::Inner {
                future,
                tagging,
                tarpit,
                after,
            },
        }
    }

    pub(crate) fn ready(response: Response<ResponseBody<B>>) -> Self {
        ResponseFuture {
            state: State::Ready {
                response: Some(response),
            },
        }
    }
}

/// The state that holds `response` in the tarpit for `delay`.
fn held<F, B: Body>(
    response: Response<ResponseBody<B>>,
    slot: TarpitSlot,
    delay: Duration,
) -> State<F, B> {
    State::Held {
        sleep: tokio::time::sleep(delay),
        response: Some(response),
        slot: Some(slot),
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body + Unpin,
    B::Data: Buf,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Inner {
                    future,
                    tagging,
                    tarpit,
                    after,
                } => {
                    let mut response = ready!(future.poll(cx))?;
                    after.apply(&mut response);
                    let embeds = after.take_embeds(&response);
                    let tagged = match tagging.take() {
                        Some(tagging) => tagging.tag(response),
                        None => Tagged::Done(response.map(TaggedBody::Inner)),
                    };
                    let tarpit = tarpit.take();
                    let body = |b| ResponseBody::tagged(b).with_embeds(embeds);
                    match (tagged, tarpit) {
                        (Tagged::Done(response), None) => {
                            return Poll::Ready(Ok(response.map(body)));
                        }
                        (Tagged::Done(response), Some((slot, delay))) => {
                            this.state.set(held(response.map(body), slot, delay))
                        }
                        (Tagged::Stamping(future, slicing), tarpit) => {
                            this.state.set(State::Stamping {
                                future,
                                tarpit,
                                slicing,
                            })
                        }
                    }
                }
                StateProj::Stamping {
                    future,
                    tarpit,
                    slicing,
                } => {
                    let response =
                        finish_stamped(ready!(future.poll(cx)), slicing).map(ResponseBody::stamped);
                    match tarpit.take() {
                        None => return Poll::Ready(Ok(response)),
                        Some((slot, delay)) => this.state.set(held(response, slot, delay)),
                    }
                }
                StateProj::Held {
                    sleep,
                    response,
                    slot,
                } => {
                    ready!(sleep.poll(cx));
                    slot.take();
                    let response = response.take().expect("polled after completion");
                    return Poll::Ready(Ok(response));
                }
                StateProj::Ready { response } => {
                    return Poll::Ready(Ok(response.take().expect("polled after completion")));
                }
            }
        }
    }
}
