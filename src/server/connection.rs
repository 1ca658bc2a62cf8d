//! One accepted connection, main or admin listener alike: the wait for its first byte, hyper
//! with its limits and timeouts, an idle timer, and graceful or forced close.
//!
//! hyper bounds an HTTP/1 connection by its header-read timeout, keep-alive idle time
//! included, but an HTTP/2 connection has no such bound: a client that sends the preface and
//! then nothing, stops halfway through a header block, or never reads its answer would hold
//! the connection (and a place under `max_connections`) for ever. Two timers close those:
//!
//! - hyper's HTTP/2 keep-alive: a connection silent for `http2_keep_alive_interval` is pinged,
//!   and closed when the answer takes longer than `http2_keep_alive_timeout` (a client that
//!   does not read does not answer);
//! - the idle timer here: a connection with no request in progress (no stream open) for
//!   `idle_timeout` is shut down gracefully (GOAWAY), and cut if it has not closed after
//!   another `idle_timeout`. It is what closes a client that answers pings and asks nothing.
//!
//! A client that asks for a large answer and then does not read it (HTTP/1), or reads but never
//! opens its flow-control window (HTTP/2), stalls the server's writes: hyper stops asking the
//! response body for more. The send timer cuts a connection on which a response body has
//! waited for hyper to ask for its next piece longer than `send_timeout` (a body waiting on its
//! own source, such as a slow upstream, does not count: that has its own timeouts).
//!
//! A request is in progress from the moment hyper hands it to the service until its response
//! body has been sent (or dropped): [`track`] marks the start, [`TrackedBody`] the end.
//!
//! On a TLS connection that negotiated `h2`, [`H2Recorder`] reads the client's opening frames
//! as they pass (SETTINGS, WINDOW_UPDATE, PRIORITY, the first HEADERS' pseudo-header order)
//! into the connection's [`TransportSlot`], then gets out of the way.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::{self, HttpServerConnExec};
use pin_project_lite::pin_project;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::signals::transport::{H2Fingerprint, H2Reading, TlsFingerprint, Transport};
use tower::BoxError;

/// The limits every connection is served under.
#[derive(Clone, Copy, Debug)]
pub(super) struct Limits {
    pub(super) header_read_timeout: Duration,
    pub(super) max_header_bytes: usize,
    pub(super) grace_period: Duration,
    pub(super) idle_timeout: Duration,
    pub(super) keep_alive_interval: Duration,
    pub(super) keep_alive_timeout: Duration,
    pub(super) send_timeout: Duration,
}

/// hyper's connection builder with `limits`.
pub(super) fn builder(limits: Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // hyper's smallest read buffer is 8 KiB; a request head must fit in it.
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(256)
        .keep_alive_interval(limits.keep_alive_interval)
        .keep_alive_timeout(limits.keep_alive_timeout);
    builder
}

/// Waits for a plain connection's first byte: hyper's header-read timeout starts only once it
/// reads a request head, so before that a silent client would hold the connection for ever.
/// `false` when the client sent nothing in time, closed, or the server is stopping.
pub(super) async fn first_byte(
    stream: &TcpStream,
    timeout: Duration,
    stopping: &mut watch::Receiver<bool>,
) -> bool {
    if *stopping.borrow() {
        return false;
    }
    let mut probe = [0u8; 1];
    tokio::select! {
        peeked = tokio::time::timeout(timeout, stream.peek(&mut probe)) => {
            matches!(peeked, Ok(Ok(n)) if n > 0)
        }
        _ = stopping.changed() => false,
    }
}

/// Serves one connection until it closes, is idle past the idle timeout, or the server stops
/// (then it is shut down gracefully; the caller cuts it when the grace period ends).
pub(super) async fn serve<I, S, B>(
    io: I,
    service: S,
    builder: &auto::Builder<TokioExecutor>,
    activity: &Activity,
    limits: Limits,
    stopping: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    TokioExecutor: HttpServerConnExec<S::Future, B>,
{
    let nothing = std::future::pending::<()>();
    serve_driving(io, service, builder, activity, limits, stopping, nothing).await;
}

/// [`serve`], polling `driven` in the same task alongside the connection (the upstream
/// connection it keeps: its exchanges then wake no other task). `driven` never completes.
pub(super) async fn serve_driving<I, S, B>(
    io: I,
    service: S,
    builder: &auto::Builder<TokioExecutor>,
    activity: &Activity,
    limits: Limits,
    mut stopping: watch::Receiver<bool>,
    driven: impl Future<Output = ()>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    TokioExecutor: HttpServerConnExec<S::Future, B>,
{
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::pin!(driven);
    let idle = activity.idle_for(limits.idle_timeout);
    tokio::pin!(idle);
    let mut stop_seen = false;
    // Made once: a new `changed()` each time round would register with the channel and leave
    // it again at every wake-up, several times a request.
    let stop = stopping.changed();
    tokio::pin!(stop);
    let mut closing: Option<Pin<Box<tokio::time::Sleep>>> = None;
    let mut send_check =
        tokio::time::interval((limits.send_timeout / 4).max(Duration::from_millis(10)));
    send_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The timers and the stop signal are polled only after they woke the task (see
    // [`Rarely`]): it wakes several times a request for the connection.
    let timers = Rarely::new();
    std::future::poll_fn(|cx| {
        loop {
            // The kept upstream connection first: what it reads is then taken up by the
            // client connection in the same pass.
            let _ = driven.as_mut().poll(cx);
            if conn.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
            let Some(mut timers_cx) = timers.woke(cx) else {
                return Poll::Pending;
            };
            while send_check.poll_tick(&mut timers_cx).is_ready() {
                if activity.send_stalled_for() > limits.send_timeout {
                    tracing::debug!(target: "lenscap::server", "the client does not take its answer: cut");
                    return Poll::Ready(());
                }
            }
            if let Some(timer) = closing.as_mut()
                && timer.as_mut().poll(&mut timers_cx).is_ready()
            {
                tracing::debug!(target: "lenscap::server", "idle connection did not close: cut");
                return Poll::Ready(());
            }
            let mut shutting = false;
            if !stop_seen && stop.as_mut().poll(&mut timers_cx).is_ready() {
                stop_seen = true;
                shutting = true;
            }
            if closing.is_none() && idle.as_mut().poll(&mut timers_cx).is_ready() {
                tracing::debug!(target: "lenscap::server", "idle connection: shutting down");
                shutting = true;
                let mut timer = Box::pin(tokio::time::sleep(limits.idle_timeout));
                // Polled once, so that it wakes the task when it goes off.
                let _ = timer.as_mut().poll(&mut timers_cx);
                closing = Some(timer);
            }
            if !shutting {
                return Poll::Pending;
            }
            // The connection is polled again: it has its shutdown to begin.
            conn.as_mut().graceful_shutdown();
        }
    })
    .await
}

/// `work`, or nothing once `cut` completes; `cut` is polled only after it woke the task.
pub(super) async fn unless<W: Future, C: Future>(work: W, cut: C) -> Option<W::Output> {
    let (mut work, mut cut) = (std::pin::pin!(work), std::pin::pin!(cut));
    let rarely = Rarely::new();
    std::future::poll_fn(|cx| {
        if let Poll::Ready(done) = work.as_mut().poll(cx) {
            return Poll::Ready(Some(done));
        }
        if let Some(mut cut_cx) = rarely.woke(cx)
            && cut.as_mut().poll(&mut cut_cx).is_ready()
        {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}

/// Futures that seldom wake a task (timers, a stop signal) beside one that wakes it often
/// (a connection, several times a request): polled with a waker of their own, and only
/// after it fired, instead of each time the task runs. Polling a timer or a watch channel
/// that has not fired costs a clock read or a coop budget check and a waker comparison;
/// four of them, several times a request, cost more than the rest of the loop.
pub(super) struct Rarely {
    woken: Arc<Woken>,
    waker: std::task::Waker,
}

impl Rarely {
    /// Woken to begin with: what it guards is polled once, to start it.
    pub(super) fn new() -> Self {
        let woken = Arc::new(Woken {
            woken: AtomicBool::new(true),
            task: atomic_waker::AtomicWaker::new(),
        });
        let waker = std::task::Waker::from(woken.clone());
        Rarely { woken, waker }
    }

    /// A context to poll the seldom futures with, when they woke the task since the last
    /// call; `cx`'s task is the one their wakers wake.
    pub(super) fn woke(&self, cx: &Context<'_>) -> Option<Context<'_>> {
        self.woken.task.register(cx.waker());
        self.woken
            .woken
            .swap(false, Ordering::AcqRel)
            .then(|| Context::from_waker(&self.waker))
    }
}

/// [`Rarely`]'s waker: marks itself, then wakes the task.
struct Woken {
    woken: AtomicBool,
    task: atomic_waker::AtomicWaker,
}

impl std::task::Wake for Woken {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

// === impl Activity ===

/// The requests in progress on one connection.
#[derive(Debug)]
pub(super) struct Activity {
    open: AtomicUsize,
    /// When the last request in progress ended, in milliseconds since `epoch` (nothing else
    /// is told: the idle timer reads it when it goes off, so a request wakes nobody).
    ended_at: AtomicU64,
    /// Response bodies hyper owes a poll (their last poll gave a frame, or none came yet).
    owed: AtomicUsize,
    /// When a response body was last polled, in milliseconds since `epoch`.
    last_poll: AtomicU64,
    epoch: Instant,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            open: AtomicUsize::new(0),
            ended_at: AtomicU64::new(0),
            owed: AtomicUsize::new(0),
            last_poll: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }
}

impl Activity {
    fn millis_now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn polled_now(&self) {
        self.last_poll.store(self.millis_now(), Ordering::Relaxed);
    }

    /// How long hyper has owed a response body a poll (zero when it owes none).
    fn send_stalled_for(&self) -> Duration {
        if self.owed.load(Ordering::Acquire) == 0 {
            return Duration::ZERO;
        }
        let last = Duration::from_millis(self.last_poll.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last)
    }

    fn begin(self: &Arc<Self>) -> InProgress {
        self.open.fetch_add(1, Ordering::AcqRel);
        InProgress {
            activity: self.clone(),
            owed: false,
        }
    }

    /// Since when no request has been in progress (`None` while one is).
    fn idle_since(&self) -> Option<Instant> {
        if self.open.load(Ordering::Acquire) > 0 {
            return None;
        }
        let ended = Duration::from_millis(self.ended_at.load(Ordering::Acquire));
        Some(self.epoch + ended)
    }

    /// Completes once no request has been in progress for `idle`. One timer, reset when it
    /// goes off too early: requests neither wake it nor re-arm it.
    async fn idle_for(&self, idle: Duration) {
        let timer = tokio::time::sleep(idle);
        tokio::pin!(timer);
        loop {
            timer.as_mut().await;
            let next = match self.idle_since() {
                Some(since) if since + idle <= Instant::now() => return,
                Some(since) => since + idle,
                None => Instant::now() + idle,
            };
            timer.as_mut().reset(next);
        }
    }
}

/// One request in progress; ends when dropped.
#[derive(Debug)]
pub(super) struct InProgress {
    activity: Arc<Activity>,
    /// Whether its response body is owed a poll.
    owed: bool,
}

impl InProgress {
    /// Records a poll of the response body; `owed` says whether hyper owes it another one
    /// (it gave a frame) or not (it waits on its own source).
    fn polled(&mut self, owed: bool) {
        self.activity.polled_now();
        if owed != self.owed {
            self.owed = owed;
            if owed {
                self.activity.owed.fetch_add(1, Ordering::AcqRel);
            } else {
                self.activity.owed.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        if self.owed {
            self.activity.owed.fetch_sub(1, Ordering::AcqRel);
        }
        // Written before the count falls, so the idle timer never reads an older end.
        let now = self.activity.millis_now();
        self.activity.ended_at.fetch_max(now, Ordering::AcqRel);
        self.activity.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Counts `response` as in progress on `activity` until its body is done.
pub(super) fn track<F, B>(
    activity: &Arc<Activity>,
    response: F,
) -> impl Future<Output = Result<Response<TrackedBody<B>>, Infallible>> + use<F, B>
where
    F: Future<Output = Result<Response<B>, Infallible>>,
{
    let mut in_progress = activity.begin();
    async move {
        let response = response.await?;
        // From here on hyper owes the body its first poll.
        in_progress.polled(true);
        Ok(response.map(|body| TrackedBody {
            body,
            in_progress: Some(in_progress),
        }))
    }
}

pin_project! {
    /// A response body that ends its request's [`InProgress`] when it ends.
    pub(super) struct TrackedBody<B> {
        #[pin]
        body: B,
        in_progress: Option<InProgress>,
    }
}

impl<B: Body> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let polled = this.body.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(_))) => {
                if let Some(in_progress) = this.in_progress.as_mut() {
                    in_progress.polled(true);
                }
            }
            Poll::Pending => {
                if let Some(in_progress) = this.in_progress.as_mut() {
                    in_progress.polled(false);
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => {
                this.in_progress.take();
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

// === impl TransportSlot ===

/// Most bytes of an HTTP/2 opening read for its fingerprint (a browser's first HEADERS frame
/// ends within the first kilobyte).
const H2_BOUND: usize = 16 * 1024;

/// One TLS connection's fingerprints: the ClientHello's from the handshake, the HTTP/2
/// opening's once its first HEADERS frame has passed (before hyper hands on the request).
#[derive(Debug, Default)]
pub(super) struct TransportSlot {
    tls: Option<TlsFingerprint>,
    h2: OnceLock<H2Fingerprint>,
}

impl TransportSlot {
    pub(super) fn new(tls: Option<TlsFingerprint>) -> Arc<Self> {
        Arc::new(TransportSlot {
            tls,
            h2: OnceLock::new(),
        })
    }

    /// What a request on this connection carries to the layer.
    pub(super) fn transport(&self) -> Transport {
        Transport {
            tls: self.tls,
            h2: self.h2.get().copied(),
        }
    }
}

/// What a [`ReadTap`] does with the bytes a client sends.
pub(super) trait Tap {
    /// Sees the next bytes read; `false` once it has seen enough (the tap is then dropped).
    fn saw(&mut self, bytes: &[u8]) -> bool;
}

pin_project! {
    /// A stream that shows what the client sends to a [`Tap`] until the tap has seen enough,
    /// then only passes bytes on; writes always pass straight through.
    pub(super) struct ReadTap<IO, T> {
        #[pin]
        io: IO,
        tap: Option<T>,
    }
}

impl<IO, T> ReadTap<IO, T> {
    /// `io` shown to `tap`; with `None`, a plain pass-through.
    pub(super) fn new(io: IO, tap: Option<T>) -> Self {
        ReadTap { io, tap }
    }

    /// The tap, if it has not seen enough yet; it sees nothing more.
    pub(super) fn take_tap(&mut self) -> Option<T> {
        self.tap.take()
    }
}

impl<IO: tokio::io::AsyncRead, T: Tap> tokio::io::AsyncRead for ReadTap<IO, T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let polled = this.io.poll_read(cx, buf);
        if let Some(tap) = this.tap.as_mut()
            && !tap.saw(&buf.filled()[before..])
        {
            *this.tap = None;
        }
        polled
    }
}

impl<IO: tokio::io::AsyncWrite, T> tokio::io::AsyncWrite for ReadTap<IO, T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.project().io.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.project().io.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// The decrypted stream under hyper: on an HTTP/2 connection it reads the opening frames as
/// they pass, up to the first HEADERS frame (at most [`H2_BOUND`] bytes), then only passes
/// bytes on.
pub(super) type H2Recorder<IO> = ReadTap<IO, H2Opening>;

/// The HTTP/2 opening read so far, and where its fingerprint goes.
pub(super) struct H2Opening {
    seen: Vec<u8>,
    slot: Arc<TransportSlot>,
}

impl H2Opening {
    /// Records when `h2` (the negotiated ALPN protocol); passes bytes on untouched otherwise.
    pub(super) fn on<IO>(io: IO, slot: Arc<TransportSlot>, h2: bool) -> H2Recorder<IO> {
        ReadTap::new(
            io,
            h2.then(|| H2Opening {
                seen: Vec::with_capacity(512),
                slot,
            }),
        )
    }
}

impl Tap for H2Opening {
    fn saw(&mut self, bytes: &[u8]) -> bool {
        self.seen.extend_from_slice(bytes);
        match H2Fingerprint::read(&self.seen) {
            H2Reading::Incomplete => self.seen.len() < H2_BOUND,
            H2Reading::Done(fingerprint) => {
                let _ = self.slot.h2.set(fingerprint);
                false
            }
            H2Reading::Unreadable => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_counts_from_the_last_request_that_ended() {
        let activity = Arc::new(Activity::default());
        let started = tokio::time::Instant::now();
        let request = activity.begin();
        let overlapping = activity.begin();
        let waiting = {
            let activity = activity.clone();
            tokio::spawn(async move { activity.idle_for(Duration::from_secs(5)).await })
        };
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(request);
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(
            !waiting.is_finished(),
            "idle while a request was in progress"
        );
        drop(overlapping);
        waiting.await.unwrap();
        assert_eq!(started.elapsed(), Duration::from_secs(65));
    }
}
