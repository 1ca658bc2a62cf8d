//! The [`Lenscap`] service.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use bytes::Buf;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, Version, header};
use http_body::Body;
use tower_service::Service;

use super::future::{ResponseFuture, TarpitSlot};
use super::tag::Tagging;
use super::{ResponseBody, Shared};
use crate::client::{ClientId, PeerAddr, Tls};
use crate::policy::{Mode, Policy};
use crate::signals::{RequestView, fetch_dest_is_image, is_localhost};
use crate::stamp::StampHint;
use crate::verdict::{Action, Verdict, decide};

/// Name of the request header that carries the verdict to an upstream, when enabled.
pub const VERDICT_HEADER: &str = "x-lenscap-verdict";
const VERDICT: HeaderName = HeaderName::from_static(VERDICT_HEADER);

/// Lenscap wrapped around an inner service. Made by [`LenscapLayer`](super::LenscapLayer).
#[derive(Clone, Debug)]
pub struct Lenscap<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Lenscap<S> {
    pub(crate) fn from_shared(inner: S, shared: Arc<Shared>) -> Self {
        Lenscap { inner, shared }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The limiter and tracker state shared with the layer (tracked clients, evictions).
    pub fn limits(&self) -> &crate::limit::Limits {
        &self.shared.limits
    }
}

/// The peer address from the server's extensions (ours or axum's).
fn peer_ip<B>(request: &Request<B>) -> Option<IpAddr> {
    if let Some(PeerAddr(addr)) = request.extensions().get::<PeerAddr>() {
        return Some(addr.ip());
    }
    #[cfg(feature = "axum")]
    if let Some(info) = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
    {
        return Some(info.0.ip());
    }
    None
}

/// Classifies a request under `policy`: identity, secure-origin detection, verdict.
pub fn classify_request<B>(policy: &Policy, request: &Request<B>) -> (ClientId, Verdict) {
    let classified = classify(policy, request);
    (classified.client, classified.verdict)
}

/// Like [`classify_request`], from the parts of a request (used by `replay`).
pub fn classify_parts(
    policy: &Policy,
    peer: Option<IpAddr>,
    method: &Method,
    path: &str,
    version: Version,
    headers: &HeaderMap,
    tls: bool,
) -> (ClientId, Verdict) {
    let classified = classify_from_parts(policy, peer, method, path, version, headers, tls);
    (classified.client, classified.verdict)
}

/// What classifying a request found, with what the later stages need of it so they do not
/// work it out again.
#[derive(Debug)]
pub(crate) struct Classified {
    pub(crate) client: ClientId,
    pub(crate) verdict: Verdict,
    /// Browsers treat the origin as secure (TLS, a trusted proxy's `https`, localhost).
    pub(crate) secure: bool,
    /// The path ends in an image extension.
    pub(crate) image_path: bool,
    /// `Sec-Fetch-Dest: image`.
    pub(crate) fetch_dest_image: bool,
}

pub(crate) fn classify<B>(policy: &Policy, request: &Request<B>) -> Classified {
    let tls = request.extensions().get::<Tls>().is_some()
        || request.uri().scheme() == Some(&http::uri::Scheme::HTTPS);
    classify_from_parts(
        policy,
        peer_ip(request),
        request.method(),
        request.uri().path(),
        request.version(),
        request.headers(),
        tls,
    )
}

fn classify_from_parts(
    policy: &Policy,
    peer: Option<IpAddr>,
    method: &Method,
    path: &str,
    version: Version,
    headers: &HeaderMap,
    tls: bool,
) -> Classified {
    let identity = policy.proxies.identify(peer, headers);
    let secure = tls || identity.forwarded_https || is_localhost(headers);
    let image_path = policy.is_image_path(path);
    let fetch_dest_image = fetch_dest_is_image(headers);
    let view = RequestView {
        method,
        path,
        version,
        headers,
        secure,
        image: image_path || fetch_dest_image,
    };
    Classified {
        client: identity.client,
        verdict: decide(policy, &view, identity.client),
        secure,
        image_path,
        fetch_dest_image,
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Lenscap<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body + Unpin,
    ResBody::Data: Buf,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        // A guard, not a clone: the response path takes its own reference only if it tags.
        let policy = self.shared.policy.current.load();
        // A client must never be able to hand the upstream a verdict of its own.
        request.headers_mut().remove(VERDICT);

        let mut classified = classify(&policy, &request);
        let enforce = policy.mode == Mode::Enforce;
        let after = match crate::limit::admit(
            &self.shared.limits,
            &policy,
            &request,
            &mut classified,
            enforce,
        ) {
            Ok(after) => after,
            Err(response) => {
                let limited = response.status() == http::StatusCode::TOO_MANY_REQUESTS;
                let note = if limited { "over quota" } else { "trap" };
                log_verdict(
                    classified.client,
                    &classified.verdict,
                    request.uri().path(),
                    enforce,
                    note,
                );
                if let Some(metrics) = self.shared.metrics.get()
                    && limited
                {
                    metrics.throttle();
                }
                return ResponseFuture::ready(response);
            }
        };
        // Lenscap's own documents are answered for everyone, blocked clients included: a
        // crawler that reads robots.txt should learn what the site reserves. (The tracker has
        // seen the request: fetching robots.txt is part of a client's behaviour.)
        if let Some(document) =
            policy
                .documents
                .answer(request.method(), request.uri().path(), request.headers())
        {
            return ResponseFuture::ready(document.map(ResponseBody::full));
        }
        let Classified {
            client,
            verdict,
            image_path,
            ..
        } = classified;
        if verdict.action != Action::Allow {
            log_verdict(client, &verdict, request.uri().path(), enforce, "verdict");
        }
        let action = if enforce {
            verdict.action
        } else {
            Action::Allow
        };
        let metrics = self.shared.metrics.get();
        if let Some(metrics) = metrics {
            metrics.request(verdict.action, verdict.category);
            if action == Action::Block {
                metrics.block();
            }
        }

        let mut tarpit = None;
        match action {
            Action::Block => return ResponseFuture::ready(block_response(&policy)),
            Action::Tarpit => match TarpitSlot::acquire(&self.shared, policy.tarpit_max_held) {
                Some(slot) => tarpit = Some((slot, policy.tarpit_delay)),
                // A full tarpit must not hold more connections open: refuse outright.
                None => {
                    if let Some(metrics) = metrics {
                        metrics.block();
                    }
                    return ResponseFuture::ready(block_response(&policy));
                }
            },
            Action::Throttle | Action::Allow => {}
        }

        if policy.verdict_header
            && let Ok(value) = HeaderValue::from_str(&verdict_header_value(&verdict))
        {
            request.headers_mut().insert(VERDICT, value);
        }
        request.extensions_mut().insert(verdict);
        let head = request.method() == Method::HEAD;
        if image_path
            && request.method() == Method::GET
            && let Some(stamp) = &policy.stamp
        {
            // Lets an inner service that caches stamped images answer with them.
            request.extensions_mut().insert(StampHint(stamp.clone()));
        }
        let tagging = Tagging::new(
            arc_swap::Guard::into_inner(policy),
            head,
            image_path,
            request.headers_mut(),
        );
        ResponseFuture::inner(self.inner.call(request), Some(tagging), tarpit).after(after)
    }
}

/// One structured event per non-allow verdict (never for the allow path).
fn log_verdict(
    client: ClientId,
    verdict: &Verdict,
    path: &str,
    enforced: bool,
    message: &'static str,
) {
    tracing::info!(
        target: "lenscap::verdict",
        %client,
        agent = verdict.agent.as_deref().unwrap_or("-"),
        category = %verdict.category,
        action = %verdict.action,
        score = verdict.score,
        reasons = %verdict.reasons,
        path,
        enforced,
        "{message}"
    );
}

fn block_response<B: Body>(policy: &Policy) -> Response<ResponseBody<B>> {
    let mut response = Response::new(ResponseBody::full(policy.block_body.clone()));
    *response.status_mut() = policy.block_status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `action=block; score=40; category=ai-training; agent="GPTBot"`.
fn verdict_header_value(verdict: &Verdict) -> String {
    let mut value = format!(
        "action={}; score={}; category={}",
        verdict.action, verdict.score, verdict.category
    );
    if let Some(agent) = &verdict.agent {
        let clean: String = agent
            .chars()
            .filter(|c| c.is_ascii_graphic() || *c == ' ')
            .filter(|c| *c != '"')
            .collect();
        value.push_str(&format!("; agent=\"{clean}\""));
    }
    value
}

impl TarpitSlot {
    fn acquire(shared: &Arc<Shared>, max_held: usize) -> Option<TarpitSlot> {
        let held = &shared.tarpit_held;
        let mut current = held.load(Ordering::Relaxed);
        loop {
            if current >= max_held {
                return None;
            }
            match held.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(TarpitSlot::new(shared.clone())),
                Err(now) => current = now,
            }
        }
    }
}
