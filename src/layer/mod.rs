//! The Tower layer: [`LenscapLayer`] and the [`Lenscap`] service it wraps around an app.
//!
//! One request takes one pass: identify the client, answer Lenscap's own documents, classify,
//! decide, enforce (block, tarpit, throttle), call the inner service, then tag the response.
//! The verdict is put in the request's extensions so the inner service can read it.
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
mod service;
mod tag;

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;

pub use body::ResponseBody;
pub use future::ResponseFuture;
pub(crate) use service::{Classified, classify};
pub use service::{Lenscap, VERDICT_HEADER, classify_parts, classify_request};

use crate::metrics::{Metrics, SiteMetrics};
use crate::policy::Policy;

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

    /// Replaces the policy; requests already in flight finish under the old one.
    pub fn store(&self, policy: Policy) {
        self.current.store(Arc::new(policy));
    }
}

/// State shared by every clone of the service.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) policy: PolicyHandle,
    /// Requests currently held in the tarpit.
    pub(crate) tarpit_held: AtomicUsize,
    /// Set once by [`LenscapLayer::with_metrics`].
    pub(crate) metrics: OnceLock<SiteMetrics>,
    /// Limiter and tracker state (kept across policy swaps).
    pub(crate) limits: crate::limit::Limits,
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
                metrics: OnceLock::new(),
                limits: crate::limit::Limits::default(),
            }),
        }
    }

    /// Counts this layer's requests in `metrics` under the site label `site`. The first call
    /// wins: a layer belongs to one site.
    pub fn with_metrics(self, metrics: &Metrics, site: &str) -> LenscapLayer {
        let _ = self.shared.metrics.set(metrics.site(site));
        self
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
