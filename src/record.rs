//! Record: one structured `tracing` event for every verdict that is not a plain allow, the
//! Prometheus counters and the dashboard's aggregates (with the `metrics` feature), and the
//! decision handed to the server's access log when the request asks for it.
//!
//! Events go to the target `lenscap::verdict` with the fields `site` (the name given to
//! `with_metrics`, else `-`), `host`, `client`, `agent`, `category`, `action`, `score`,
//! `reasons`, `path`, `enforced`, and where known `ja4` and `h2` (the connection's TLS and
//! HTTP/2 fingerprints, when the server terminated TLS), `datacenter` (the cloud or hosting
//! provider of the client's address) and `quota` (the quota that refused the request, as in
//! `RateLimit-Policy`), `-` otherwise; the allow path logs nothing.
//!
//! ```
//! # #[cfg(feature = "metrics")] {
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use lenscap::metrics::Metrics;
//! use lenscap::{LenscapLayer, PeerAddr, Policy};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let metrics = Metrics::new();
//! let app = ServiceBuilder::new()
//!     .layer(LenscapLayer::new(Policy::embedded().unwrap()).with_metrics(&metrics, "pub"))
//!     .service(service_fn(|_req: Request<()>| async {
//!         Ok::<_, Infallible>(Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
//!     }));
//! let mut request = Request::get("/photos/1.jpg")
//!     .header("user-agent", "Mozilla/5.0 (compatible; GPTBot/1.2; +https://openai.com/gptbot)")
//!     .body(())
//!     .unwrap();
//! request.extensions_mut().insert(PeerAddr("203.0.113.9:5555".parse().unwrap()));
//! app.oneshot(request).await.unwrap();
//! let text = metrics.encode();
//! assert!(text.contains("lenscap_requests_total{site=\"pub\",action=\"block\",category=\"ai-training\"} 1"), "{text}");
//! # });
//! # }
//! ```

use std::sync::OnceLock;

use http::Request;

use crate::client::ClientId;
use crate::signals::transport::Transport;
use crate::verdict::{Action, Reason, Verdict};

/// What a request met, as enforcement has it (what `lenscap replay` reports too).
// Read by the metrics and the access log only.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Outcome {
    /// Served.
    Allowed,
    /// Served, under the suspects' quotas (or after a tarpit delay).
    Throttled,
    /// Refused: over a rate limit (429).
    Limited,
    /// Refused: blocked, or answered by a trap.
    Blocked,
    /// Refused with `402 Payment Required` and the licence terms.
    PaymentRequired,
    /// Served to a verified crawler that accepted the licence price.
    Licensed,
}

#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
impl Outcome {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Throttled => "throttled",
            Outcome::Limited => "limited",
            Outcome::Blocked => "blocked",
            Outcome::PaymentRequired => "payment-required",
            Outcome::Licensed => "licensed",
        }
    }

    /// What a verdict that was not refused meets.
    pub(crate) fn of(action: Action) -> Outcome {
        match action {
            Action::Allow => Outcome::Allowed,
            Action::Throttle | Action::Tarpit => Outcome::Throttled,
            Action::License => Outcome::PaymentRequired,
            Action::Block => Outcome::Blocked,
        }
    }
}

/// Why the layer answered a request itself instead of serving it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// A block verdict.
    Block,
    /// A tarpit verdict with the tarpit full.
    TarpitFull,
    /// Over a rate limit (429).
    RateLimit,
    /// A license verdict: 402 with the terms.
    License,
    /// A trap path.
    Trap,
}

/// One request the layer has dealt with, as the record stage reads it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Seen<'a> {
    pub(crate) client: ClientId,
    pub(crate) verdict: &'a Verdict,
    /// An image request.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) image: bool,
    /// Answered by the layer instead of the inner service.
    pub(crate) refused: Option<Refused>,
    /// One of Lenscap's documents (robots.txt, …): not counted as browsing.
    pub(crate) document: bool,
    /// The policy enforces (not `report-only`).
    pub(crate) enforced: bool,
    /// The cloud or hosting provider of the client's address.
    pub(crate) datacenter: Option<&'a str>,
    /// The quota that refused the request (`images`, `address-photos`, …).
    pub(crate) quota: Option<&'static str>,
}

#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
impl Seen<'_> {
    /// What the request met under enforcement.
    pub(crate) fn outcome(&self) -> Outcome {
        match self.refused {
            Some(Refused::RateLimit) => Outcome::Limited,
            Some(Refused::Block | Refused::TarpitFull | Refused::Trap) => Outcome::Blocked,
            Some(Refused::License) => Outcome::PaymentRequired,
            None if self.document => Outcome::Allowed,
            None if self.verdict.reasons.contains(Reason::LicensePaid) => Outcome::Licensed,
            None => Outcome::of(self.verdict.action),
        }
    }
}

/// What the layer decided about one request, for the server's access log: the server puts
/// an empty slot in the request's extensions and reads it once the response is ready.
#[cfg(feature = "cli")]
#[derive(Clone, Debug, Default)]
pub(crate) struct DecisionSlot(std::sync::Arc<std::sync::Mutex<Option<Decision>>>);

/// One filled [`DecisionSlot`].
#[cfg(feature = "cli")]
#[derive(Clone, Debug)]
pub(crate) struct Decision {
    pub(crate) client: ClientId,
    pub(crate) verdict: Verdict,
    pub(crate) outcome: Outcome,
    pub(crate) enforced: bool,
    /// The cloud or hosting provider of the client's address.
    pub(crate) datacenter: Option<String>,
}

#[cfg(feature = "cli")]
impl DecisionSlot {
    /// What was put in it, if anything.
    pub(crate) fn take(&self) -> Option<Decision> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    fn fill(&self, decision: Decision) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(decision);
    }
}

/// Where one layer's requests are counted: nowhere, or one site's metrics.
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    #[cfg(feature = "metrics")]
    metrics: OnceLock<crate::metrics::SiteMetrics>,
    /// The site's name, for the verdict events.
    site: OnceLock<std::sync::Arc<str>>,
    /// Requests may carry a [`DecisionSlot`] (the server's access log is on): look for it.
    #[cfg(feature = "cli")]
    slots: std::sync::atomic::AtomicBool,
}

impl Recorder {
    /// Counts into `site` from now on. The first call wins: a layer belongs to one site.
    #[cfg(feature = "metrics")]
    pub(crate) fn set(&self, site: crate::metrics::SiteMetrics) {
        let _ = self.site.set(site.name().clone());
        let _ = self.metrics.set(site);
    }

    /// Names the site in the verdict events. The first name wins.
    pub(crate) fn set_site(&self, name: &str) {
        let _ = self.site.set(std::sync::Arc::from(name));
    }

    /// Fills the [`DecisionSlot`] of requests that carry one from now on.
    #[cfg(feature = "cli")]
    pub(crate) fn fill_slots(&self) {
        self.slots.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    #[cfg(feature = "cli")]
    fn slot<'r, B>(&self, request: &'r Request<B>) -> Option<&'r DecisionSlot> {
        // Looked up only when asked for: the allow path of a layer without an access log
        // does not pay for the extensions lookup.
        if !self.slots.load(std::sync::atomic::Ordering::Relaxed) {
            return None;
        }
        request.extensions().get::<DecisionSlot>()
    }

    /// Whether a document request should be judged for the record: only when the server's
    /// access log waits for its decision (documents are otherwise not judged at all).
    pub(crate) fn wants_document<B>(&self, request: &Request<B>) -> bool {
        #[cfg(feature = "cli")]
        return self.slot(request).is_some();
        #[cfg(not(feature = "cli"))]
        {
            let _ = request;
            false
        }
    }

    /// Records one request: counters, the dashboard, the access log's slot, and the verdict
    /// event (`message`) when it was not a plain allow.
    pub(crate) fn seen<B>(&self, seen: Seen<'_>, request: &Request<B>, message: &'static str) {
        #[cfg(feature = "metrics")]
        let outcome = seen.outcome();
        #[cfg(feature = "metrics")]
        if !seen.document
            && let Some(metrics) = self.metrics.get()
        {
            metrics.request(seen.verdict.action, seen.verdict.category);
            match seen.refused {
                Some(Refused::Block | Refused::TarpitFull) => metrics.block(),
                Some(Refused::RateLimit) => metrics.rate_limited(),
                Some(Refused::Trap) => metrics.trap(),
                Some(Refused::License) => metrics.payment_required(),
                None if outcome == Outcome::Licensed => metrics.licensed(),
                None => {}
            }
            metrics.board(&crate::metrics::board::Entry {
                client: seen.client,
                verdict: seen.verdict,
                outcome: outcome.as_str(),
                stopped: matches!(
                    outcome,
                    Outcome::Limited | Outcome::Blocked | Outcome::PaymentRequired
                ),
                image: seen.image,
                path: request.uri().path(),
            });
        }
        #[cfg(feature = "cli")]
        if let Some(slot) = self.slot(request) {
            slot.fill(Decision {
                client: seen.client,
                verdict: seen.verdict.clone(),
                outcome,
                enforced: seen.enforced,
                datacenter: seen.datacenter.map(str::to_owned),
            });
        }
        if !seen.document && (seen.verdict.action != Action::Allow || seen.refused.is_some()) {
            self.event(&seen, request, message);
        }
    }

    /// One structured event per non-allow verdict (never for the allow path).
    fn event<B>(&self, seen: &Seen<'_>, request: &Request<B>, message: &'static str) {
        let (client, verdict, enforced) = (seen.client, seen.verdict, seen.enforced);
        let transport = request.extensions().get::<Transport>();
        let ja4 = transport
            .and_then(|t| t.tls.as_ref())
            .map_or("-", |t| t.ja4());
        let h2 = transport
            .and_then(|t| t.h2.as_ref())
            .map_or("-", |h| h.akamai());
        let host = request
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| request.uri().host())
            .unwrap_or("-");
        tracing::info!(
            target: "lenscap::verdict",
            site = self.site.get().map_or("-", |s| &**s),
            host,
            %client,
            agent = verdict.agent.as_deref().unwrap_or("-"),
            category = %verdict.category,
            action = %verdict.action,
            score = verdict.score,
            reasons = %verdict.reasons,
            path = request.uri().path(),
            enforced,
            ja4,
            h2,
            datacenter = seen.datacenter.unwrap_or("-"),
            quota = seen.quota.unwrap_or("-"),
            "{message}"
        );
    }
}

#[cfg(all(test, feature = "cli"))]
pub(crate) mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::catalog::Category;
    use crate::verdict::Reasons;

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    pub(crate) struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Captured {
        /// A plain-text subscriber writing here.
        pub(crate) fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync + use<> {
            let writer = self.clone();
            tracing_subscriber::fmt()
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .finish()
        }

        /// What was written so far.
        pub(crate) fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn verdict_events_name_the_site_and_the_host_and_allows_log_nothing() {
        let captured = Captured::default();
        let subscriber = captured.subscriber();
        let recorder = Recorder::default();
        recorder.set_site("crown");
        let request = Request::get("/photos/1.jpg")
            .header("host", "thecrown.example")
            .body(())
            .unwrap();
        let verdict = |action| Verdict {
            action,
            score: 40,
            category: Category::AiTraining,
            agent: Some("GPTBot".into()),
            reasons: Reasons::default(),
        };
        fn seen(verdict: &Verdict) -> Seen<'_> {
            Seen {
                client: ClientId::new("203.0.113.9".parse().unwrap()),
                verdict,
                image: true,
                refused: None,
                document: false,
                enforced: true,
                datacenter: Some("aws"),
                quota: None,
            }
        }
        let (allow, block) = (verdict(Action::Allow), verdict(Action::Block));
        tracing::subscriber::with_default(subscriber, || {
            recorder.seen(seen(&allow), &request, "verdict");
            assert!(captured.0.lock().unwrap().is_empty(), "an allow logged");
            recorder.seen(seen(&block), &request, "verdict");
        });
        let text = captured.text();
        assert!(text.contains("site=\"crown\""), "{text}");
        assert!(text.contains("host=\"thecrown.example\""), "{text}");
        assert!(text.contains("agent=\"GPTBot\""), "{text}");
        assert!(!text.contains('\u{1b}'), "colour codes: {text}");
    }
}
