//! Opt-out `<meta>` tags streamed into HTML pages.
//!
//! ```
//! use std::sync::Arc;
//! use http_body_util::{BodyExt, Full};
//! use lenscap::documents::ReservationConfig;
//! use lenscap::tag::html::{MetaTags, inject_meta};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let tags = Arc::new(MetaTags::from_config(&ReservationConfig::default()));
//! let page = http::Response::builder()
//!     .header("content-type", "text/html; charset=utf-8")
//!     .header("content-length", "52")
//!     .body(Full::new(bytes::Bytes::from_static(
//!         b"<html><head><title>Terrace</title></head><body></body></html>",
//!     )))
//!     .unwrap();
//! let page = inject_meta(page, tags);
//! assert!(page.headers().get("content-length").is_none());
//! let html = page.into_body().collect().await.unwrap().to_bytes();
//! assert_eq!(
//!     html,
//!     "<html><head><meta name=\"robots\" content=\"noai, noimageai\">\
//!      <meta name=\"tdm-reservation\" content=\"1\"><title>Terrace</title></head><body></body></html>"
//! );
//! # });
//! ```
//!
//! # Which responses
//!
//! Only `200` responses whose `Content-Type` is `text/html` are rewritten (not XHTML, where an
//! unclosed `<meta>` would break the XML). Responses with a
//! `Content-Encoding` other than `identity` pass through untouched: decompressing and
//! recompressing every page costs more than the tags are worth, so a site that compresses its
//! own pages should add the tags itself, or let Lenscap's server compress after this layer.
//! `Cache-Control: no-transform` is honoured (RFC 9110 §7.7) and leaves the page alone too.
//!
//! # Where the tags go
//!
//! The tags become the first children of `<head>`, or follow a `<meta charset>` there, which
//! browsers only look for in the first 1024 bytes. A tag the page already carries is not
//! repeated: a robots meta whose content has the `noai` token skips ours, and so does a
//! `tdm-reservation` meta (the page's own value wins, with its `tdm-policy` if any). Since those
//! metas come after `<head>`, the bytes after `<head>` are held back (never more than 64 KiB)
//! until `</head>`, `<body>` or any other body element shows the head is over; then the missing
//! tags are spliced in and everything held is released. After that the body streams through,
//! and once the parser holds no partial tag it is dropped and chunks are passed on as they come.
//!
//! The parser itself may hold no more than 64 KiB either: a start tag split across chunks is
//! buffered whole, so a page with a huge tag in its head (a megabyte `data:` favicon, or an
//! attack) would otherwise grow memory without bound. Past the limit the rewrite is given up:
//! everything the parser had taken is passed on unchanged, the rest of the page streams through
//! untouched, and the event is logged and counted ([`pages_given_up`]).
//!
//! Without a `<head>` the tags go right after `<html>`, or, without that either, before the
//! first element. HTML parsers put a `<meta>` found there into the implied `<head>`, so the
//! result reads exactly as if the page had written a `<head>`. A document with no element at
//! all gets nothing.
//!
//! # Headers
//!
//! `Content-Length` is removed, since the length changes. A strong `ETag` becomes weak
//! (`"x"` → `W/"x"`): the page is semantically the same resource, and a weak validator still
//! works with `If-None-Match` (weak comparison) against the inner service, while a suffixed
//! strong tag would never match there again. Nothing else changes.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use lol_html::html_content::ContentType;
use lol_html::send::{Element, HtmlRewriter, Settings};
use lol_html::{OutputSink, element};
use pin_project_lite::pin_project;

use crate::documents::{ReservationConfig, escape_html};

const ROBOTS_META: &str = "<meta name=\"robots\" content=\"noai, noimageai\">";
const TDM_META: &str = "<meta name=\"tdm-reservation\" content=\"1\">";

/// Most bytes held back while waiting for the end of `<head>`, and most bytes the parser may
/// buffer (a start tag split over chunks is buffered whole: a huge attribute would otherwise
/// grow without bound).
const HOLD_LIMIT: usize = 64 * 1024;

/// Pages whose rewriting was given up (a tag longer than [`HOLD_LIMIT`], or a parser error).
static GIVEN_UP: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many pages this process stopped rewriting part-way because the parser would have had
/// to hold more than 64 KiB: each one was passed on with every byte intact, from that point on
/// untouched.
pub fn pages_given_up() -> u64 {
    GIVEN_UP.load(std::sync::atomic::Ordering::Relaxed)
}

/// Elements allowed in `<head>`: anything else means the head is over.
const HEAD_CONTENT: [&str; 8] = [
    "meta", "title", "link", "style", "script", "base", "noscript", "template",
];

// === impl MetaTags ===

/// The opt-out tags to add to pages, built once from the config.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetaTags {
    robots: bool,
    tdm_reservation: bool,
    /// The whole `<meta name="tdm-policy" …>` tag, value escaped.
    tdm_policy: Option<String>,
}

impl MetaTags {
    /// The tags the config asks for: none unless `html_meta` and `reserve_training` are on.
    pub fn from_config(cfg: &ReservationConfig) -> Self {
        if !cfg.html_meta || !cfg.reserve_training {
            return Self::default();
        }
        Self {
            robots: true,
            tdm_reservation: true,
            tdm_policy: cfg.policy_url.as_deref().map(|url| {
                format!(
                    "<meta name=\"tdm-policy\" content=\"{}\">",
                    escape_html(url)
                )
            }),
        }
    }

    /// Whether there is nothing to add (pages then pass through untouched).
    pub fn is_empty(&self) -> bool {
        !self.robots && !self.tdm_reservation
    }

    /// The tags still missing, given what the page already has.
    fn render(&self, seen: Seen) -> String {
        let mut out = String::new();
        if self.robots && !seen.robots_noai {
            out.push_str(ROBOTS_META);
        }
        if self.tdm_reservation && !seen.tdm_reservation {
            out.push_str(TDM_META);
            if let Some(policy) = &self.tdm_policy {
                out.push_str(policy);
            }
        }
        out
    }
}

// === inject_meta ===

/// Streams the opt-out tags into an HTML page; any other response passes through untouched.
///
/// See the [module docs](self) for which responses are rewritten and where the tags go.
pub fn inject_meta<B>(response: Response<B>, tags: Arc<MetaTags>) -> Response<HtmlBody<B>>
where
    B: Body,
    B::Data: Buf,
{
    inject_meta_and_pass(response, tags, None)
}

/// [`inject_meta`], and when `pass` is given (the query pair `lc-pass=…` of a way-through pass
/// the page was asked with in its URL, by a browser that may keep no cookies), every
/// same-origin `<a href>` of the page carries it on, so the next page is the pass holder's too.
pub fn inject_meta_and_pass<B>(
    response: Response<B>,
    tags: Arc<MetaTags>,
    pass: Option<Arc<str>>,
) -> Response<HtmlBody<B>>
where
    B: Body,
    B::Data: Buf,
{
    let (mut parts, body) = response.into_parts();
    if (tags.is_empty() && pass.is_none()) || !is_rewritable(parts.status, &parts.headers) {
        return Response::from_parts(parts, HtmlBody::passthrough(body));
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    if let Some(etag) = parts.headers.get_mut(header::ETAG)
        && etag.as_bytes().first() == Some(&b'"')
    {
        let mut weak = Vec::with_capacity(etag.len() + 2);
        weak.extend_from_slice(b"W/");
        weak.extend_from_slice(etag.as_bytes());
        if let Ok(value) = HeaderValue::from_bytes(&weak) {
            *etag = value;
        }
    }
    Response::from_parts(parts, HtmlBody::rewrite(body, tags, pass))
}

fn is_rewritable(status: StatusCode, headers: &HeaderMap) -> bool {
    if status != StatusCode::OK {
        return false;
    }
    let is_html = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("text/html"));
    let encoded = headers.get_all(header::CONTENT_ENCODING).iter().any(|v| {
        v.to_str().map_or(true, |v| {
            v.split(',')
                .any(|c| !c.trim().is_empty() && !c.trim().eq_ignore_ascii_case("identity"))
        })
    });
    let no_transform = headers.get_all(header::CACHE_CONTROL).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|d| d.trim().eq_ignore_ascii_case("no-transform"))
        })
    });
    is_html && !encoded && !no_transform
}

// === impl HtmlBody ===

pin_project! {
    /// A response body, with the opt-out tags streamed into it when it is an HTML page.
    pub struct HtmlBody<B> {
        #[pin]
        inner: B,
        rewrite: Option<Box<Rewrite>>,
    }
}

impl<B> HtmlBody<B> {
    fn passthrough(inner: B) -> Self {
        Self {
            inner,
            rewrite: None,
        }
    }

    fn rewrite(inner: B, tags: Arc<MetaTags>, pass: Option<Arc<str>>) -> Self {
        Self {
            inner,
            rewrite: Some(Box::new(Rewrite::new(tags, pass))),
        }
    }

    /// Whether this body is being rewritten (an HTML page) or passed through.
    pub fn is_rewriting(&self) -> bool {
        self.rewrite.is_some()
    }
}

impl<B> std::fmt::Debug for HtmlBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HtmlBody")
            .field("rewriting", &self.is_rewriting())
            .finish_non_exhaustive()
    }
}

impl<B> Body for HtmlBody<B>
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
        let Some(rw) = this.rewrite.as_deref_mut() else {
            let frame = ready!(this.inner.poll_frame(cx));
            return Poll::Ready(
                frame.map(|r| r.map(|f| f.map_data(|mut d| d.copy_to_bytes(d.remaining())))),
            );
        };
        loop {
            if let Some(ready) = rw.take_ready() {
                return Poll::Ready(Some(Ok(Frame::data(ready))));
            }
            if rw.inner_done {
                return Poll::Ready(rw.trailers.take().map(|t| Ok(Frame::trailers(t))));
            }
            match ready!(this.inner.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(mut data) if rw.rewriter.is_none() => {
                        // Tags are in and the parser is drained: chunks go out as they come.
                        let data = data.copy_to_bytes(data.remaining());
                        if !data.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(data))));
                        }
                    }
                    Ok(data) => rw.feed(data),
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            rw.finish();
                            rw.trailers = Some(trailers);
                            rw.inner_done = true;
                        }
                    }
                },
                Some(Err(err)) => return Poll::Ready(Some(Err(err))),
                None => {
                    rw.finish();
                    rw.inner_done = true;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.rewrite {
            None => self.inner.is_end_stream(),
            Some(rw) => rw.inner_done && rw.trailers.is_none() && rw.lock().out.is_empty(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.rewrite {
            None => self.inner.size_hint(),
            Some(_) => {
                let mut hint = SizeHint::new();
                hint.set_lower(self.inner.size_hint().lower());
                hint
            }
        }
    }
}

// === impl Rewrite ===

/// Where the tags will go, decided as elements arrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Anchor {
    /// No element yet.
    None,
    /// Right after `<html>`: moves to after `<head>` if one comes.
    AfterHtml,
    /// Right after `<head>`.
    AfterHead,
    /// Before the first element, a head element, in a page without `<html>` or `<head>`.
    BeforeFirst,
}

/// Opt-out metas the page already has.
#[derive(Clone, Copy, Debug, Default)]
struct Seen {
    robots_noai: bool,
    tdm_reservation: bool,
}

/// State shared by the rewriter's output sink and its element handlers.
struct Shared {
    tags: Arc<MetaTags>,
    /// Links are being rewritten: the parser stays to the end of the page.
    keep_parsing: bool,
    /// Output not yet handed on.
    out: BytesMut,
    /// Bytes the rewriter emitted in all, our own tags included when it emitted them.
    emitted: u64,
    /// Bytes of our own tags the rewriter emitted (when they went in before a body element).
    inserted: u64,
    anchor: Anchor,
    /// Offset in `out` where the tags go; bytes from there on are held back.
    hold: Option<usize>,
    seen: Seen,
    done: bool,
}

impl Shared {
    /// Splices the missing tags in at the anchor and releases everything held.
    fn finalize(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        let tags = self.tags.render(self.seen);
        let at = self.hold.take().unwrap_or(self.out.len());
        let tail = self.out.split_off(at);
        self.out.extend_from_slice(tags.as_bytes());
        self.out.extend_from_slice(&tail);
    }

    fn note_meta(&mut self, el: &Element<'_, '_>) {
        let Some(name) = el.get_attribute("name") else {
            return;
        };
        let name = name.trim();
        if name.eq_ignore_ascii_case("robots") {
            let content = el.get_attribute("content").unwrap_or_default();
            // Case-sensitive, as img2dataset and datadiligence read it.
            if content.split([',', ' ', '\t']).any(|t| t == "noai") {
                self.seen.robots_noai = true;
            }
        } else if name.eq_ignore_ascii_case("tdm-reservation") {
            self.seen.tdm_reservation = true;
        }
    }
}

type SharedRef = Arc<Mutex<Shared>>;

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Sink(SharedRef);

impl OutputSink for Sink {
    fn handle_chunk(&mut self, chunk: &[u8]) {
        if !chunk.is_empty() {
            let mut s = lock(&self.0);
            s.out.extend_from_slice(chunk);
            s.emitted += chunk.len() as u64;
        }
    }
}

/// Records the current end of the output as the anchor, at the moment lol_html emits it.
fn mark_anchor(shared: &SharedRef) -> Box<dyn lol_html::html_content::StreamingHandler + Send> {
    let shared = Arc::clone(shared);
    Box::new(
        move |_: &mut lol_html::html_content::StreamingHandlerSink<'_>| {
            let mut s = lock(&shared);
            if !s.done {
                s.hold = Some(s.out.len());
            }
            Ok(())
        },
    )
}

/// `<meta charset>` or `<meta http-equiv="content-type">`.
fn declares_charset(el: &Element<'_, '_>) -> bool {
    el.has_attribute("charset")
        || el
            .get_attribute("http-equiv")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("content-type"))
}

/// Called for every element until the tags are in.
fn on_element(shared: &SharedRef, el: &mut Element<'_, '_>) {
    let mut s = lock(shared);
    if s.done {
        return;
    }
    let name = el.tag_name();
    match name.as_str() {
        "html" if s.anchor == Anchor::None => {
            s.anchor = Anchor::AfterHtml;
            el.streaming_prepend(mark_anchor(shared));
        }
        "head" if matches!(s.anchor, Anchor::None | Anchor::AfterHtml) => {
            s.anchor = Anchor::AfterHead;
            el.streaming_prepend(mark_anchor(shared));
            let end = Arc::clone(shared);
            // `</head>` absent: the next body element or the end of input finalizes instead.
            let _ = el.on_end_tag(Box::new(move |_| {
                lock(&end).finalize();
                Ok(())
            }));
        }
        "html" | "head" => {}
        name if HEAD_CONTENT.contains(&name) => {
            if s.anchor == Anchor::None {
                s.anchor = Anchor::BeforeFirst;
                el.streaming_before(mark_anchor(shared));
            }
            if name == "meta" {
                s.note_meta(el);
                if declares_charset(el) {
                    // Browsers look for it in the first 1024 bytes: don't push it out.
                    el.streaming_after(mark_anchor(shared));
                }
            }
        }
        _ if s.anchor == Anchor::None => {
            // A body element first: nothing to wait for.
            s.done = true;
            let tags = s.tags.render(s.seen);
            s.inserted += tags.len() as u64;
            el.before(&tags, ContentType::Html);
        }
        _ => s.finalize(),
    }
}

/// Appends the pass to a same-origin link: a path (`/album/2`) or a relative reference
/// (`album/2`, `?page=2`), never another origin, a fragment alone or another scheme.
fn carry_pass(shared: &SharedRef, el: &mut Element<'_, '_>, pair: &str) {
    let Some(href) = el.get_attribute("href") else {
        return;
    };
    let href = href.trim();
    let before_query = href.split(['?', '#']).next().unwrap_or(href);
    let same_origin = !href.is_empty()
        && !href.starts_with('#')
        && !href.starts_with("//")
        && !href.starts_with("\\")
        && !before_query.contains(':');
    if !same_origin {
        return;
    }
    let carried = crate::documents::with_query_pair(href, pair);
    // Counted as our own bytes, so the rewriter's bookkeeping of what it holds stays right
    // (to the quotes lol_html may add around a value that had none).
    lock(shared).inserted += carried.len().saturating_sub(href.len()) as u64;
    let _ = el.set_attribute("href", &carried);
}

struct Rewrite {
    rewriter: Option<HtmlRewriter<'static, Sink>>,
    shared: SharedRef,
    /// Bytes fed to the rewriter: when `emitted` catches up, it holds nothing back.
    fed: u64,
    /// The input the rewriter has taken but not yet emitted (at most what it may buffer), so
    /// that giving up loses no byte.
    pending: BytesMut,
    trailers: Option<HeaderMap>,
    inner_done: bool,
}

impl Rewrite {
    fn new(tags: Arc<MetaTags>, pass: Option<Arc<str>>) -> Self {
        let keep_parsing = pass.is_some();
        let shared = Arc::new(Mutex::new(Shared {
            keep_parsing,
            tags,
            out: BytesMut::new(),
            emitted: 0,
            inserted: 0,
            anchor: Anchor::None,
            hold: None,
            seen: Seen::default(),
            done: false,
        }));
        let on_el = Arc::clone(&shared);
        let mut handlers = vec![element!("*", move |el| {
            on_element(&on_el, el);
            Ok(())
        })];
        if let Some(pass) = pass {
            let on_link = Arc::clone(&shared);
            handlers.push(element!("a[href]", move |el| {
                carry_pass(&on_link, el, &pass);
                Ok(())
            }));
        }
        let settings = Settings {
            element_content_handlers: handlers,
            // Never fail on ambiguous markup (`<select><xmp>`): we only add, never match text.
            strict: false,
            memory_settings: lol_html::MemorySettings {
                preallocated_parsing_buffer_size: 1024,
                max_allowed_memory_usage: HOLD_LIMIT,
            },
            ..Settings::new_send()
        };
        let rewriter = HtmlRewriter::new(settings, Sink(Arc::clone(&shared)));
        Self {
            rewriter: Some(rewriter),
            shared,
            fed: 0,
            pending: BytesMut::new(),
            trailers: None,
            inner_done: false,
        }
    }

    #[cfg(test)]
    fn new_for_test(tags: Arc<MetaTags>) -> Self {
        Rewrite::new(tags, None)
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        lock(&self.shared)
    }

    fn feed(&mut self, mut data: impl Buf) {
        let Some(rewriter) = self.rewriter.as_mut() else {
            return;
        };
        while data.has_remaining() {
            let chunk = data.chunk();
            let len = chunk.len();
            self.pending.extend_from_slice(chunk);
            let written = rewriter.write(chunk);
            self.fed += len as u64;
            data.advance(len);
            // What the rewriter emitted of the input (even of a chunk it then failed on) no
            // longer needs keeping.
            let s = lock(&self.shared);
            let held = self.fed.saturating_sub(s.emitted - s.inserted) as usize;
            drop(s);
            let emitted = self.pending.len() - held.min(self.pending.len());
            let _ = self.pending.split_to(emitted);
            if let Err(err) = written {
                self.fail(&err);
                let rest = data.copy_to_bytes(data.remaining());
                self.lock().out.extend_from_slice(&rest);
                return;
            }
        }
        let mut s = self.lock();
        if s.hold.is_some_and(|at| s.out.len() - at > HOLD_LIMIT) {
            s.finalize();
        }
        if s.done && !s.keep_parsing && s.emitted == self.fed {
            drop(s);
            self.rewriter = None;
        }
    }

    fn finish(&mut self) {
        if let Some(rewriter) = self.rewriter.take()
            && let Err(err) = rewriter.end()
        {
            self.fail(&err);
        }
        let mut s = self.lock();
        if s.anchor != Anchor::None {
            s.finalize();
        }
    }

    /// The parser would hold more than [`HOLD_LIMIT`] (a huge tag) or failed: stop rewriting
    /// and pass the rest on as it comes, starting with the input it had taken and not emitted.
    fn fail(&mut self, err: &lol_html::errors::RewritingError) {
        GIVEN_UP.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::warn!(
            target: "lenscap::tag",
            error = %err,
            limit = HOLD_LIMIT,
            "HTML rewriting given up; the rest of the page passes through untouched"
        );
        self.rewriter = None;
        let pending = std::mem::take(&mut self.pending);
        let mut s = self.lock();
        s.out.extend_from_slice(&pending);
        s.hold = None;
        s.done = true;
    }

    /// The output that may go on now: everything before the anchor while holding.
    fn take_ready(&mut self) -> Option<Bytes> {
        let mut s = self.lock();
        let n = s.hold.unwrap_or(s.out.len());
        if n == 0 {
            return None;
        }
        if let Some(at) = s.hold.as_mut() {
            *at = 0;
        }
        Some(s.out.split_to(n).freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `html` in `chunk`-byte pieces, taking the output as a client would, and returns
    /// it with the most bytes Lenscap held (parser input kept plus output not yet taken).
    fn rewrite_bounded(html: &[u8], chunk: usize) -> (Vec<u8>, usize) {
        let mut rw = Rewrite::new_for_test(Arc::new(MetaTags::from_config(
            &ReservationConfig::default(),
        )));
        let (mut out, mut most) = (Vec::new(), 0);
        for piece in html.chunks(chunk) {
            if rw.rewriter.is_none() {
                // As `HtmlBody` does: once the parser is gone, chunks go straight on.
                while let Some(ready) = rw.take_ready() {
                    out.extend_from_slice(&ready);
                }
                out.extend_from_slice(piece);
                continue;
            }
            rw.feed(Bytes::copy_from_slice(piece));
            most = most.max(rw.pending.len() + rw.lock().out.len());
            while let Some(ready) = rw.take_ready() {
                out.extend_from_slice(&ready);
            }
        }
        rw.finish();
        while let Some(ready) = rw.take_ready() {
            out.extend_from_slice(&ready);
        }
        (out, most)
    }

    #[test]
    fn a_huge_tag_is_never_buffered_whole_and_no_byte_is_lost() {
        let before = pages_given_up();
        let icon = "A".repeat(8 * 1024 * 1024);
        let html = format!(
            "<!doctype html><html><head><link rel=\"icon\" href=\"data:image/png;base64,{icon}\"><title>Pub</title></head><body><img src=\"/p/1.jpg\"></body></html>"
        );
        let (out, most) = rewrite_bounded(html.as_bytes(), 16 * 1024);
        assert!(most <= HOLD_LIMIT + 2 * 16 * 1024, "held {most} bytes");
        // Given up inside the tag, before anything was inserted: the page, byte for byte.
        assert!(
            out == html.as_bytes(),
            "{} bytes out of {}, first difference at {:?}",
            out.len(),
            html.len(),
            out.iter().zip(html.as_bytes()).position(|(a, b)| a != b)
        );
        assert!(pages_given_up() > before);
    }

    #[test]
    fn a_long_page_after_head_is_rewritten_within_the_bound() {
        let body = "<p>terrace</p>".repeat(100_000);
        let html = format!("<html><head><title>Pub</title></head><body>{body}</body></html>");
        let (out, most) = rewrite_bounded(html.as_bytes(), 16 * 1024);
        assert!(most <= HOLD_LIMIT + 2 * 16 * 1024, "held {most} bytes");
        let expected = html.replacen("<head>", &format!("<head>{ROBOTS_META}{TDM_META}"), 1);
        assert!(
            out == expected.as_bytes(),
            "{} bytes out of {}, first difference at {:?}",
            out.len(),
            expected.len(),
            out.iter()
                .zip(expected.as_bytes())
                .position(|(a, b)| a != b)
        );
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    header::HeaderName::from_static(k),
                    HeaderValue::from_static(v),
                )
            })
            .collect()
    }

    #[test]
    fn which_responses_are_rewritten() {
        let ok = StatusCode::OK;
        assert!(is_rewritable(
            ok,
            &headers(&[("content-type", "text/html")])
        ));
        assert!(is_rewritable(
            ok,
            &headers(&[("content-type", "Text/HTML ; charset=utf-8")])
        ));
        assert!(is_rewritable(
            ok,
            &headers(&[
                ("content-type", "text/html"),
                ("content-encoding", "identity")
            ])
        ));
        assert!(!is_rewritable(
            ok,
            &headers(&[("content-type", "text/html"), ("content-encoding", "gzip")])
        ));
        assert!(!is_rewritable(
            ok,
            &headers(&[
                ("content-type", "text/html"),
                ("cache-control", "public, no-transform")
            ])
        ));
        assert!(!is_rewritable(
            ok,
            &headers(&[("content-type", "text/plain")])
        ));
        assert!(!is_rewritable(
            ok,
            &headers(&[("content-type", "application/xhtml+xml")])
        ));
        assert!(!is_rewritable(ok, &headers(&[])));
        assert!(!is_rewritable(
            StatusCode::NOT_FOUND,
            &headers(&[("content-type", "text/html")])
        ));
        assert!(!is_rewritable(
            StatusCode::PARTIAL_CONTENT,
            &headers(&[("content-type", "text/html")])
        ));
    }

    #[test]
    fn parser_is_dropped_once_the_tags_are_in() {
        let mut rw = Rewrite::new_for_test(Arc::new(MetaTags::from_config(
            &ReservationConfig::default(),
        )));
        rw.feed(&b"<html><head><title>x</title></head><bo"[..]);
        assert!(
            rw.rewriter.is_some(),
            "a partial tag is still inside the parser"
        );
        rw.feed(&b"dy><p>"[..]);
        assert!(
            rw.rewriter.is_none(),
            "tags in, nothing pending: plain pass-through from here"
        );
        let out = rw.take_ready().unwrap();
        assert_eq!(
            out,
            format!("<html><head>{ROBOTS_META}{TDM_META}<title>x</title></head><body><p>")
                .as_bytes()
        );
    }

    #[test]
    fn holds_back_only_after_the_anchor() {
        let mut rw = Rewrite::new_for_test(Arc::new(MetaTags::from_config(
            &ReservationConfig::default(),
        )));
        rw.feed(&b"<!doctype html><html><head><title>x</title>"[..]);
        assert_eq!(
            rw.take_ready().unwrap(),
            &b"<!doctype html><html><head>"[..]
        );
        assert_eq!(
            rw.take_ready(),
            None,
            "the head's content waits for its end"
        );
        rw.feed(&b"</head>"[..]);
        let out = rw.take_ready().unwrap();
        assert_eq!(
            out,
            format!("{ROBOTS_META}{TDM_META}<title>x</title></head>").as_bytes()
        );
    }

    #[test]
    fn tags_follow_config() {
        assert!(
            MetaTags::from_config(&ReservationConfig {
                html_meta: false,
                ..Default::default()
            })
            .is_empty()
        );
        assert!(
            MetaTags::from_config(&ReservationConfig {
                reserve_training: false,
                ..Default::default()
            })
            .is_empty()
        );
        let cfg = ReservationConfig {
            policy_url: Some("https://e.com/?a=1&b=\"".into()),
            ..Default::default()
        };
        let tags = MetaTags::from_config(&cfg);
        assert_eq!(
            tags.render(Seen::default()),
            format!(
                "{ROBOTS_META}{TDM_META}<meta name=\"tdm-policy\" content=\"https://e.com/?a=1&amp;b=&quot;\">"
            )
        );
        assert_eq!(
            tags.render(Seen {
                robots_noai: true,
                tdm_reservation: true
            }),
            ""
        );
    }
}
