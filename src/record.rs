//! Record: one structured `tracing` event for every verdict that is not a plain allow, and
//! the Prometheus counters (with the `metrics` feature).
//!
//! Events go to the target `lenscap::verdict` with the fields `client`, `agent`, `category`,
//! `action`, `score`, `reasons`, `path` and `enforced`; the allow path logs nothing.
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

use crate::catalog::Category;
use crate::client::ClientId;
use crate::verdict::{Action, Verdict};

/// Where one layer's requests are counted: nowhere, or one site's metrics.
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    #[cfg(feature = "metrics")]
    metrics: std::sync::OnceLock<crate::metrics::SiteMetrics>,
}

impl Recorder {
    /// Counts into `site` from now on. The first call wins: a layer belongs to one site.
    #[cfg(feature = "metrics")]
    pub(crate) fn set(&self, site: crate::metrics::SiteMetrics) {
        let _ = self.metrics.set(site);
    }

    /// A request that reached the decision, with its verdict's action and category.
    pub(crate) fn request(&self, action: Action, category: Category) {
        #[cfg(feature = "metrics")]
        if let Some(metrics) = self.metrics.get() {
            metrics.request(action, category);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = (action, category);
    }

    /// A request answered with the block status.
    pub(crate) fn block(&self) {
        #[cfg(feature = "metrics")]
        if let Some(metrics) = self.metrics.get() {
            metrics.block();
        }
    }

    /// A request refused over quota.
    pub(crate) fn throttle(&self) {
        #[cfg(feature = "metrics")]
        if let Some(metrics) = self.metrics.get() {
            metrics.throttle();
        }
    }
}

/// One structured event per non-allow verdict (never for the allow path).
pub(crate) fn verdict_event(
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
