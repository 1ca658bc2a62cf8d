//! The admin listener: `/metrics` (Prometheus text), `/healthz` (the process is up),
//! `/readyz` (it accepts traffic; 503 while shutting down).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use super::Shared;
use super::connection::{self, Activity, Limits};

/// The admin listener's state: the same timeouts as the main listener, and its own small
/// connection limit, so idle admin connections can neither pile up nor take the descriptors
/// the main listener needs.
pub(super) struct Admin {
    pub(super) shared: Arc<Shared>,
    pub(super) limits: Limits,
    pub(super) connections: Arc<Semaphore>,
}

impl Admin {
    pub(super) async fn serve(self, listener: TcpListener, mut stop: watch::Receiver<bool>) {
        let builder = Arc::new(connection::builder(self.limits));
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(error) => {
                        tracing::warn!(target: "lenscap::server", %error, "admin accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = stop.changed() => return,
            };
            let Ok(permit) = self.connections.clone().try_acquire_owned() else {
                tracing::debug!(target: "lenscap::server", %peer, "admin connection limit reached; closed");
                drop(stream);
                continue;
            };
            let shared = self.shared.clone();
            let builder = builder.clone();
            let limits = self.limits;
            let mut stop = stop.clone();
            tokio::spawn(async move {
                let _permit = permit;
                if !connection::first_byte(&stream, limits.header_read_timeout, &mut stop).await {
                    return;
                }
                let activity = Arc::new(Activity::default());
                let tracked = activity.clone();
                let service = hyper::service::service_fn(move |request| {
                    let shared = shared.clone();
                    connection::track(&tracked, async move {
                        Ok::<_, Infallible>(answer(&shared, &request))
                    })
                });
                let serve =
                    connection::serve(stream, service, &builder, &activity, limits, stop.clone());
                tokio::select! {
                    _ = serve => {}
                    // The admin listener does not wait for the grace period.
                    _ = stop.changed() => {}
                }
            });
        }
    }
}

fn answer(shared: &Shared, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    if request.uri().path() == "/metrics" {
        for site in &shared.router.sites {
            site.sync_limit_metrics();
        }
    }
    let (status, content_type, body) = match request.uri().path() {
        "/metrics" => (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Bytes::from(shared.metrics.encode()),
        ),
        "/healthz" => (StatusCode::OK, "text/plain", Bytes::from_static(b"ok\n")),
        "/readyz" if shared.ready.load(Ordering::Relaxed) => {
            (StatusCode::OK, "text/plain", Bytes::from_static(b"ready\n"))
        }
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            Bytes::from_static(b"shutting down\n"),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            Bytes::from_static(b"not found: try /metrics, /healthz, /readyz\n"),
        ),
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
