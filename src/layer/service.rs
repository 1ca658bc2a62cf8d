//! The [`Lenscap`] service.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::{HeaderName, HeaderValue, Request, Response};
use http_body::Body;
use tower_service::Service;

use super::future::{ResponseFuture, TarpitSlot};
use super::{ResponseBody, Shared, refusal};
use crate::classify::{Classification, RequestParts};
#[cfg(feature = "cli")]
use crate::client::ClientId;
use crate::client::peer_ip;
use crate::limit::{AfterResponse, Inputs, Limits, Redeemed, Refusal};
use crate::policy::{Mode, Policy};
#[cfg(feature = "cli")]
pub(crate) use crate::record::Outcome;
use crate::record::{Refused, Seen};
use crate::signals::behaviour::Kind;
use crate::tag::Tagging;
use crate::verdict::{Action, Reason, Verdict};

pub use crate::request_headers::VERDICT_HEADER;
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
    pub fn limits(&self) -> &Limits {
        &self.shared.limits
    }

    /// With a shared store (Redis), what to await before [`call`](Service::call): the
    /// request's records brought close, in one round trip. `None` with the in-process store.
    pub fn prefetch<B>(&self, request: &Request<B>) -> Option<crate::limit::Prefetching> {
        let limits = &self.shared.limits;
        if !limits.store().shared() {
            return None;
        }
        let policy = self.shared.policy.current.load();
        let identity = policy
            .identify
            .proxies
            .identify(peer_ip(request), request.headers());
        let inputs = limit_inputs(&policy, policy.mode == Mode::Enforce);
        limits.prefetch(inputs, request, identity.client)
    }
}

/// What the stages before the inner service make of one request.
pub(crate) enum Pass {
    /// One of Lenscap's documents, answered to everyone before any limit.
    Document(Response<Bytes>),
    /// Classified and decided; the limit stage refused it (a trap, or over quota).
    Refused {
        found: Classification,
        verdict: Verdict,
        refusal: Refusal,
    },
    /// Classified, decided and admitted: what the response path must still do.
    Admitted {
        found: Classification,
        verdict: Verdict,
        after: AfterResponse,
    },
}

/// Identify → answer → classify → decide → limit, for one request (`parts` are its own),
/// without calling anything.
pub(crate) fn pass<B>(
    limits: &Limits,
    policy: &Policy,
    request: &Request<B>,
    parts: &RequestParts<'_>,
    enforce: bool,
) -> Pass {
    let peer = peer_ip(request);
    if parts.path == crate::limit::PASS_PATH && policy.limits.pass.enabled {
        // The way-through page's pass URL: answered here, never charged, never forwarded.
        let (found, _) = policy.judge(peer, parts);
        let inputs = limit_inputs(policy, enforce);
        let answer = match crate::limit::redeem(limits, inputs, request, &found) {
            Redeemed::Go {
                location,
                set_cookie,
            } => refusal::pass_accepted(&location, set_cookie),
            Redeemed::Wait(way) => refusal::way_through(&way, &policy.enforcement),
            Redeemed::Invalid(error) => refusal::pass_refused(error),
        };
        return Pass::Document(answer);
    }
    if parts.path == crate::limit::RENDER_PATH && policy.limits.render.enabled {
        // A page's render proof: answered here, never charged, never forwarded.
        let (found, _) = policy.judge(peer, parts);
        let proved =
            crate::limit::prove_render(limits, limit_inputs(policy, enforce), request, &found);
        return Pass::Document(refusal::render_proof(proved));
    }
    // Lenscap's own documents are answered for everyone, blocked clients included, before any
    // limit: a crawler that reads robots.txt should learn what the site reserves, and nobody
    // is charged a page view for reading the policy.
    if let Some(document) = policy
        .documents
        .answer(parts.method, parts.path, parts.headers)
    {
        if parts.path == "/robots.txt" {
            // Reading robots.txt is behaviour (then ignoring it is a signal): note it, uncharged.
            let (found, mut verdict) = policy.judge(peer, parts);
            let _ = crate::limit::admit(
                limits,
                limit_inputs(policy, enforce),
                request,
                &parts.known,
                &found,
                &mut verdict,
            );
        }
        return Pass::Document(document);
    }
    let (found, mut verdict) = policy.judge(peer, parts);
    match crate::limit::admit(
        limits,
        limit_inputs(policy, enforce),
        request,
        &parts.known,
        &found,
        &mut verdict,
    ) {
        Ok(after) => Pass::Admitted {
            found,
            verdict,
            after,
        },
        Err(refusal) => Pass::Refused {
            found,
            verdict,
            refusal,
        },
    }
}

fn limit_inputs(policy: &Policy, enforce: bool) -> Inputs<'_> {
    Inputs {
        settings: &policy.limits,
        scoring: &policy.decider.scoring,
        subnets: policy.identify.subnets,
        enforce,
    }
}

#[cfg(feature = "cli")]
/// Runs the stages before the inner service as the layer would under enforcement, without
/// calling anything: the client, its verdict, what the request would have met, whether it
/// was an image, and the visitor cookie the response would set. The work left for the
/// response is done for a response of `content_type` (what the live one had, when known),
/// without building one. Lenscap's documents count as allowed.
pub(crate) fn judge<B>(
    limits: &Limits,
    policy: &Policy,
    request: &Request<B>,
    content_type: Option<&HeaderValue>,
) -> (ClientId, Verdict, Outcome, bool, Option<HeaderValue>) {
    match pass(limits, policy, request, &RequestParts::of(request), true) {
        Pass::Document(_) => {
            let (client, verdict) = policy.verdict_for(request);
            (client, verdict, Outcome::Allowed, false, None)
        }
        Pass::Refused {
            found,
            verdict,
            refusal,
        } => {
            let outcome = match refusal {
                Refusal::OverQuota(_) | Refusal::WayThrough(_) => Outcome::Limited,
                Refusal::Trap => Outcome::Blocked,
            };
            (
                found.client,
                verdict,
                outcome,
                found.kind == Kind::Image,
                None,
            )
        }
        Pass::Admitted {
            found,
            verdict,
            after,
        } => {
            let outcome = Outcome::of(verdict.action);
            // A blocked request's response is the block page: nothing is left for it.
            let set_cookie = (outcome != Outcome::Blocked)
                .then(|| after.settle(content_type))
                .flatten();
            (
                found.client,
                verdict,
                outcome,
                found.kind == Kind::Image,
                set_cookie,
            )
        }
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
        let enforce = policy.mode == Mode::Enforce;
        let record = &self.shared.record;
        let mut asked = RequestParts::of(&request);
        if asked.known.present.verdict {
            // A client must never be able to hand the upstream a verdict of its own.
            request.headers_mut().remove(VERDICT);
            asked = RequestParts::of(&request);
        }
        let present = asked.known.present;
        let (found, verdict, mut after) =
            match pass(&self.shared.limits, &policy, &request, &asked, enforce) {
                Pass::Document(document) => {
                    if record.wants_document(&request) {
                        let (client, verdict) = policy.verdict_for(&request);
                        let seen = Seen {
                            client,
                            verdict: &verdict,
                            image: false,
                            refused: None,
                            document: true,
                            enforced: enforce,
                            datacenter: None,
                            quota: None,
                        };
                        record.seen(seen, &request, "document");
                    }
                    return ResponseFuture::ready(document.map(ResponseBody::full));
                }
                Pass::Refused {
                    found,
                    verdict,
                    refusal,
                } => {
                    let (refused, message, quota) = match &refusal {
                        Refusal::OverQuota(over) => {
                            (Refused::RateLimit, "over quota", Some(over.quota))
                        }
                        Refusal::WayThrough(way) => (
                            Refused::RateLimit,
                            "way through",
                            way.exceeded.map(|over| over.quota),
                        ),
                        Refusal::Trap => (Refused::Trap, "trap", None),
                    };
                    let seen = Seen {
                        client: found.client,
                        verdict: &verdict,
                        image: found.kind == Kind::Image,
                        refused: Some(refused),
                        document: false,
                        enforced: enforce,
                        datacenter: found
                            .datacenter
                            .and_then(|i| policy.classifier.datacenter_name(i)),
                        quota,
                    };
                    record.seen(seen, &request, message);
                    return ResponseFuture::ready(match refusal {
                        Refusal::OverQuota(exceeded) => refusal::too_many_requests(exceeded),
                        Refusal::Trap => refusal::trap(),
                        Refusal::WayThrough(way) => {
                            refusal::way_through(&way, &policy.enforcement).map(ResponseBody::full)
                        }
                    });
                }
                Pass::Admitted {
                    found,
                    verdict,
                    after,
                } => (found, verdict, after),
            };
        let action = if enforce {
            verdict.action
        } else {
            Action::Allow
        };
        let enforcement = &policy.enforcement;
        let mut tarpit = None;
        let refused = match action {
            Action::Block => Some(Refused::Block),
            Action::License => Some(Refused::License),
            Action::Tarpit => {
                match TarpitSlot::acquire(&self.shared, enforcement.tarpit_max_held) {
                    Some(slot) => {
                        tarpit = Some((slot, enforcement.tarpit_delay));
                        None
                    }
                    // A full tarpit must not hold more connections open: refuse outright.
                    None => Some(Refused::TarpitFull),
                }
            }
            Action::Throttle | Action::Allow => None,
        };
        let seen = Seen {
            client: found.client,
            verdict: &verdict,
            image: found.kind == Kind::Image,
            refused,
            document: false,
            enforced: enforce,
            datacenter: found
                .datacenter
                .and_then(|i| policy.classifier.datacenter_name(i)),
            quota: None,
        };
        record.seen(seen, &request, "verdict");
        match refused {
            Some(Refused::License) => {
                return ResponseFuture::ready(refusal::payment_required(&policy.license));
            }
            Some(_) => return ResponseFuture::ready(refusal::block(enforcement)),
            None => {}
        }
        let charged = verdict.reasons.contains(Reason::LicensePaid);

        if policy.verdict_header
            && let Ok(value) = HeaderValue::from_str(&verdict_header_value(&verdict))
        {
            request.headers_mut().insert(VERDICT, value);
        }
        request.extensions_mut().insert(verdict);
        let (mut parts, body) = request.into_parts();
        let tagging = Tagging::new(
            policy.tag.clone(),
            &mut parts.method,
            found.image_path,
            &mut parts.headers,
            present,
        )
        .carry_pass(after.link_pass());
        let request = Request::from_parts(parts, body);
        if charged && let Some(value) = &policy.license.price_header {
            after.charge(value.clone());
        }
        ResponseFuture::inner(self.inner.call(request), Some(tagging), tarpit, after)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The event of a request refused over quota names the quota, as `RateLimit-Policy` does.
    #[cfg(feature = "cli")]
    #[test]
    fn an_over_quota_event_names_the_quota() {
        use futures_util::FutureExt;
        use tower_layer::Layer;

        let captured = crate::record::tests::Captured::default();
        let layer = super::super::LenscapLayer::new(Policy::embedded().unwrap())
            .with_clock(crate::limit::ManualClock::new());
        let mut service = layer.layer(tower::service_fn(|_: Request<()>| async {
            Ok::<_, std::convert::Infallible>(Response::new(http_body_util::Empty::<Bytes>::new()))
        }));
        let mut policy_field = None;
        tracing::subscriber::with_default(captured.subscriber(), || {
            // A script pulling photos no page showed it, until it is refused.
            for n in 1..=40 {
                let mut request = Request::get(format!("/photos/IMG_{n:04}.jpg"))
                    .header(
                        "user-agent",
                        "Mozilla/5.0 (X11; Linux x86_64; rv:150.0) Gecko/20100101 Firefox/150.0",
                    )
                    .header("accept", "image/avif,image/webp,*/*")
                    .header("accept-language", "en")
                    .header("accept-encoding", "gzip, br")
                    .body(())
                    .unwrap();
                request
                    .extensions_mut()
                    .insert(crate::PeerAddr("203.0.113.9:5555".parse().unwrap()));
                let response = service.call(request).now_or_never().unwrap().unwrap();
                if response.status() == http::StatusCode::TOO_MANY_REQUESTS {
                    policy_field = response.headers().get("ratelimit-policy").cloned();
                    break;
                }
            }
        });
        let policy_field = policy_field.expect("the script was refused over quota");
        let quota = policy_field.to_str().unwrap().split(';').next().unwrap();
        let quota = quota.trim_matches('"');
        let text = captured.text();
        let line = text
            .lines()
            .find(|line| line.contains("over quota"))
            .unwrap_or_else(|| panic!("no over-quota event in {text}"));
        assert!(line.contains(&format!("quota=\"{quota}\"")), "{line}");
    }
}
