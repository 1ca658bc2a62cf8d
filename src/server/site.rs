//! One site: its content service (a static folder or an upstream) and the routing by Host.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response, Version, header};
use hyper::body::Incoming;
use tower_service::Service;

use super::KeptUpstream;
use super::body::{SiteBody, text_response};
use super::config::host_part;
use super::proxy::Upstream;
use super::stamped::{Lookup, Route, StaticSite};
use crate::layer::{Lenscap, PolicyHandle};
use crate::metrics::SiteMetrics;

/// What a site serves, as a Tower service behind the Lenscap layer.
#[derive(Clone)]
pub(crate) enum SiteService {
    Static(Arc<StaticSite>),
    /// An upstream, and the connection to it that the request's client connection keeps
    /// (set on the clone that serves one HTTP/1 request, `None` on the site's own).
    Proxy(Arc<Upstream>, Option<KeptUpstream>),
}

type SiteFuture = Pin<Box<dyn Future<Output = Result<Response<SiteBody>, Infallible>> + Send>>;

impl Service<Request<Incoming>> for SiteService {
    type Response = Response<SiteBody>;
    type Error = Infallible;
    type Future = SiteFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Incoming>) -> SiteFuture {
        match self {
            SiteService::Static(site) => match site.route(&request) {
                Route::NotFound => Box::pin(std::future::ready(Ok(text_response(
                    http::StatusCode::NOT_FOUND,
                    "404 Not Found\n",
                )))),
                Route::Page(folder, page, validator) => {
                    let site = site.clone();
                    Box::pin(async move { Ok(site.page(folder, page, validator).await) })
                }
                Route::Thumb(photo, size, validator) => {
                    let site = site.clone();
                    Box::pin(async move { Ok(site.thumb(photo, size, validator).await) })
                }
                Route::Files => Self::files(site, request),
            },
            SiteService::Proxy(upstream, kept) => {
                let upstream = upstream.clone();
                let kept = kept.take();
                Box::pin(async move { Ok(upstream.forward(request, kept).await) })
            }
        }
    }
}

impl SiteService {
    /// A static folder's files: the stamped cache, else `ServeDir`.
    fn files(site: &Arc<StaticSite>, request: Request<Incoming>) -> SiteFuture {
        match site.lookup(&request) {
            Lookup::Hit(response) => Box::pin(std::future::ready(Ok(response))),
            Lookup::Miss(miss) => {
                let site = site.clone();
                Box::pin(async move { Ok(site.fill(miss).await) })
            }
            Lookup::Pass => {
                let future = site.dir().clone().call(request);
                Box::pin(async move {
                    let response = future.await?;
                    Ok(response.map(SiteBody::file))
                })
            }
        }
    }
}

/// A running site.
pub(crate) struct Site {
    pub(crate) policy: PolicyHandle,
    pub(crate) service: Lenscap<SiteService>,
    pub(crate) metrics: SiteMetrics,
    /// Evictions already added to the metrics counter.
    pub(crate) evictions_seen: std::sync::atomic::AtomicU64,
}

impl Site {
    /// Copies the limiter's tracked-client count and new evictions into the metrics.
    pub(crate) fn sync_limit_metrics(&self) {
        let limits = self.service.limits();
        self.metrics.set_tracked_clients(limits.tracked_clients());
        let total = limits.evictions();
        let seen = self
            .evictions_seen
            .swap(total, std::sync::atomic::Ordering::Relaxed);
        self.metrics.evicted(total.saturating_sub(seen));
    }
}

/// Sites by Host.
pub(crate) struct Router {
    pub(crate) sites: Vec<Site>,
    by_host: HashMap<String, usize>,
    default: Option<usize>,
}

/// Why a request has no site.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NoSite {
    /// The Host header is missing (HTTP/1.1) or malformed: 400.
    BadHost,
    /// No site answers this host and there is no default: 421.
    Unknown,
}

impl Router {
    pub(crate) fn new(sites: Vec<Site>, hosts: Vec<Vec<String>>, default: Option<usize>) -> Self {
        let mut by_host = HashMap::new();
        for (index, hosts) in hosts.into_iter().enumerate() {
            for host in hosts {
                by_host.insert(host, index);
            }
        }
        Router {
            sites,
            by_host,
            default,
        }
    }

    /// The site for `request`.
    pub(crate) fn route<B>(&self, request: &Request<B>) -> Result<&Site, NoSite> {
        let host = match request.headers().get(header::HOST) {
            Some(value) => {
                let text = value.to_str().map_err(|_| NoSite::BadHost)?;
                Some(host_part(text).ok_or(NoSite::BadHost)?)
            }
            None => match request.uri().authority() {
                Some(authority) => Some(authority.host()),
                // RFC 9112 §3.2: an HTTP/1.1 request without Host is answered 400.
                None if request.version() == Version::HTTP_11 => return Err(NoSite::BadHost),
                None => None,
            },
        };
        let named = match host {
            Some(host) if !self.by_host.is_empty() => {
                if host.bytes().any(|b| b.is_ascii_uppercase()) {
                    self.by_host.get(&host.to_ascii_lowercase()).copied()
                } else {
                    self.by_host.get(host).copied()
                }
            }
            _ => None,
        };
        let index = named.or(self.default).ok_or(NoSite::Unknown)?;
        Ok(&self.sites[index])
    }
}
