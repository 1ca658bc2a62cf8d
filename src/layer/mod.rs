//! The Tower layer: [`LenscapLayer`] and the [`Lenscap`] service it wraps around an app.
//!
//! The layer only wires the stages together, in request order: identify the client, answer
//! Lenscap's own documents, classify, decide, limit (block, tarpit, throttle), call the inner
//! service, tag the response, record. The verdict is put in the request's extensions so the
//! inner service can read it.
//!
//! ```
//! use std::convert::Infallible;
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use lenscap::{LenscapLayer, PeerAddr, Policy};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # tokio_test_block_on(async {
//! let app = ServiceBuilder::new()
//!     .layer(LenscapLayer::new(Policy::embedded().unwrap()))
//!     .service(service_fn(|_req: Request<()>| async {
//!         Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"photo"))))
//!     }));
//!
//! let mut request = Request::get("/photos/1.jpg")
//!     .header("user-agent", "Mozilla/5.0 (compatible; GPTBot/1.2; +https://openai.com/gptbot)")
//!     .body(())
//!     .unwrap();
//! request.extensions_mut().insert(PeerAddr("203.0.113.9:5555".parse().unwrap()));
//! let response = app.oneshot(request).await.unwrap();
//! assert_eq!(response.status(), StatusCode::FORBIDDEN);
//! # });
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
//! # }
//! ```

mod body;
mod future;
mod refusal;
mod service;

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use arc_swap::ArcSwap;

pub use body::ResponseBody;
pub use future::ResponseFuture;
pub use service::{Lenscap, VERDICT_HEADER};
#[cfg(feature = "cli")]
pub(crate) use service::{Outcome, judge};

use crate::limit::{Clock, Limits, StateStore};
use crate::policy::Policy;
use crate::record::Recorder;

/// A handle on the running policy: cloneable, and swappable whole (hot reload).
#[derive(Clone, Debug)]
pub struct PolicyHandle {
    pub(crate) current: Arc<ArcSwap<Policy>>,
}

impl PolicyHandle {
    /// A handle holding `policy`.
    pub fn new(policy: Policy) -> PolicyHandle {
        PolicyHandle {
            current: Arc::new(ArcSwap::from_pointee(policy)),
        }
    }

    /// The policy in force now.
    pub fn load(&self) -> Arc<Policy> {
        self.current.load_full()
    }

    /// Replaces the policy; requests already in flight finish under the old one. The new
    /// policy keeps the old one's Web Bot Auth keys and seen nonces.
    pub fn store(&self, mut policy: Policy) {
        policy.share_agent_keys(&self.current.load());
        self.current.store(Arc::new(policy));
    }
}

/// State shared by every clone of the service.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) policy: PolicyHandle,
    /// Requests currently held in the tarpit.
    pub(crate) tarpit_held: AtomicUsize,
    /// Where requests are counted.
    pub(crate) record: Recorder,
    /// Limiter and tracker state (kept across policy swaps).
    pub(crate) limits: Limits,
}

/// Adds Lenscap to a service: `ServiceBuilder::new().layer(LenscapLayer::new(policy))` or
/// `Router::layer(LenscapLayer::new(policy))`.
#[derive(Clone, Debug)]
pub struct LenscapLayer {
    pub(crate) shared: Arc<Shared>,
}

impl LenscapLayer {
    /// A layer enforcing `policy`.
    pub fn new(policy: Policy) -> LenscapLayer {
        LenscapLayer::with_handle(PolicyHandle::new(policy))
    }

    /// A layer reading its policy from `handle`, so the policy can be swapped at run time.
    pub fn with_handle(handle: PolicyHandle) -> LenscapLayer {
        LenscapLayer {
            shared: Arc::new(Shared {
                policy: handle,
                tarpit_held: AtomicUsize::new(0),
                record: Recorder::default(),
                limits: Limits::default(),
            }),
        }
    }

    /// Counts this layer's requests in `metrics` under the site label `site`. The first call
    /// wins: a layer belongs to one site.
    #[cfg(feature = "metrics")]
    pub fn with_metrics(self, metrics: &crate::metrics::Metrics, site: &str) -> LenscapLayer {
        self.shared.record.set(metrics.site(site));
        self
    }

    /// Names this layer's site in its verdict events (`site` field) without counting metrics;
    /// [`with_metrics`](Self::with_metrics) names it too. The first name wins.
    pub fn with_site_name(self, site: &str) -> LenscapLayer {
        self.shared.record.set_site(site);
        self
    }

    /// Hands each decision to the server's access log through the request's
    /// [`DecisionSlot`](crate::record::DecisionSlot).
    #[cfg(feature = "cli")]
    pub(crate) fn with_decision_slots(self) -> LenscapLayer {
        self.shared.record.fill_slots();
        self
    }

    /// Reads time from `clock` (tests, replays). Call before cloning the layer.
    pub fn with_clock(self, clock: impl Clock) -> LenscapLayer {
        self.with_limits(|limits| limits.set_clock(clock))
    }

    /// Keeps limiter and tracker state in `store`. Call before cloning the layer.
    pub fn with_store(self, store: impl StateStore) -> LenscapLayer {
        self.with_limits(|limits| limits.set_store(store))
    }

    fn with_limits(mut self, f: impl FnOnce(&mut Limits)) -> LenscapLayer {
        let shared = Arc::get_mut(&mut self.shared)
            .expect("with_clock / with_store are called on a fresh layer, before it is cloned");
        f(&mut shared.limits);
        self
    }

    /// The limiter state: tracked clients, evictions.
    pub fn limits(&self) -> &Limits {
        &self.shared.limits
    }

    /// The policy handle (for hot reload).
    pub fn policy(&self) -> &PolicyHandle {
        &self.shared.policy
    }
}

impl<S> tower_layer::Layer<S> for LenscapLayer {
    type Service = Lenscap<S>;

    fn layer(&self, inner: S) -> Lenscap<S> {
        Lenscap::from_shared(inner, self.shared.clone())
    }
}
