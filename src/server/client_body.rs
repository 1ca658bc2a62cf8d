//! A client's request body on its way upstream, held to an idle timeout and a minimum rate.
//!
//! In proxy mode a request body is streamed to the upstream as it arrives, so a client that
//! drips it (a byte a second) holds a client connection and an upstream connection for as
//! long as it likes. [`ClientBody`] cuts it when the next piece takes longer than
//! `proxy.request_body_idle_timeout`, or when the body falls below
//! `proxy.request_body_min_rate` bytes per second once it has been waited on for that long in
//! all. Only time spent waiting on the client counts: while the upstream is not reading, the
//! body is not polled and its clock does not run.
//!
//! A failed body also says why in its [`BodyFault`], so that the proxy answers the client
//! (408 for a slow body, 400 for a malformed one) instead of blaming the upstream with a 502.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

use tower::BoxError;

/// Why a client's request body ended early, shared between the body and the proxy.
#[derive(Debug, Default)]
pub(crate) struct BodyFault(AtomicU8);

/// What [`BodyFault`] records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Idle past the timeout, or below the minimum rate.
    TooSlow,
    /// Not a valid body (a bad chunk, a length it does not keep).
    Malformed,
}

impl BodyFault {
    fn set(&self, fault: Fault) {
        let code = match fault {
            Fault::TooSlow => 1,
            Fault::Malformed => 2,
        };
        self.0.store(code, Ordering::Release);
    }

    pub(crate) fn get(&self) -> Option<Fault> {
        match self.0.load(Ordering::Acquire) {
            1 => Some(Fault::TooSlow),
            2 => Some(Fault::Malformed),
            _ => None,
        }
    }
}

/// The request body stalled past the idle timeout or fell below the minimum rate.
#[derive(Debug, thiserror::Error)]
#[error("the client's request body came too slowly")]
pub(crate) struct TooSlow;

/// The client's body, with its clocks.
pub(crate) struct ClientBody {
    body: Incoming,
    // Boxed so the body is Unpin, which the upstream client needs; made at the first wait
    // (most requests have no body and never wait).
    timer: Option<Pin<Box<Sleep>>>,
    idle: Duration,
    min_rate: u64,
    received: u64,
    /// Time spent waiting on the client, completed waits only.
    waited: Duration,
    /// When the current wait began.
    waiting_since: Option<Instant>,
    /// `None` for a body that had ended before it was sent (it cannot fail).
    fault: Option<Arc<BodyFault>>,
    failed: bool,
}

impl ClientBody {
    pub(crate) fn new(
        body: Incoming,
        idle: Duration,
        min_rate: u64,
        fault: Option<Arc<BodyFault>>,
    ) -> ClientBody {
        ClientBody {
            body,
            timer: None,
            idle,
            min_rate,
            received: 0,
            waited: Duration::ZERO,
            waiting_since: None,
            fault,
            failed: false,
        }
    }

    fn record(&self, fault: Fault) {
        if let Some(record) = &self.fault {
            record.set(fault);
        }
    }

    /// When a wait that starts at `since` is over: after the idle timeout, or once the time
    /// waited in all exceeds the allowance (`idle` plus `received / min_rate`).
    fn deadline(&self, since: Instant) -> Instant {
        let idle = since + self.idle;
        if self.min_rate == 0 {
            return idle;
        }
        let earned = Duration::from_secs_f64(self.received as f64 / self.min_rate as f64);
        let allowance = self.idle.saturating_add(earned).saturating_sub(self.waited);
        idle.min(since + allowance)
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(since) = this.waiting_since.take() {
                    this.waited += since.elapsed();
                }
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                this.failed = true;
                this.record(Fault::Malformed);
                Poll::Ready(Some(Err(error.into())))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                if this.waiting_since.is_none() {
                    let now = Instant::now();
                    this.waiting_since = Some(now);
                    let deadline = this.deadline(now);
                    match this.timer.as_mut() {
                        Some(timer) => timer.as_mut().reset(deadline),
                        None => this.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
                    }
                }
                let timer = this.timer.as_mut().expect("set when the wait began");
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.failed = true;
                        this.record(Fault::TooSlow);
                        Poll::Ready(Some(Err(TooSlow.into())))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
