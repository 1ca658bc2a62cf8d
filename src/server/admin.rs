//! The admin listener: `/` (the dashboard, HTML), `/api/summary` (its figures as JSON),
//! `/metrics` (Prometheus text), `/healthz` (the process is up), `/readyz` (it accepts
//! traffic; 503 while shutting down; with a shared store, `store="ok"` or `store="degraded"`
//! in its body, still 200 when degraded).
//!
//! With `admin_token` or `admin_user`/`admin_password` set, every path but `/healthz` and
//! `/readyz` asks for them (`Authorization: Bearer …` or basic auth, which a browser prompts
//! for); the configuration refuses an admin listener off the loopback without them.

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
use super::config::AdminAuth;
use super::connection::{self, Activity, Limits};
use super::dashboard;

/// The admin listener's state: the same timeouts as the main listener, and its own small
/// connection limit, so idle admin connections can neither pile up nor take the descriptors
/// the main listener needs.
pub(super) struct Admin {
    pub(super) shared: Arc<Shared>,
    pub(super) limits: Limits,
    pub(super) connections: Arc<Semaphore>,
    pub(super) auth: Arc<Credentials>,
}

/// The `Authorization` values the admin listener accepts, worked out once.
pub(super) struct Credentials {
    accepted: Vec<Vec<u8>>,
}

impl Credentials {
    pub(super) fn new(auth: &AdminAuth) -> Credentials {
        let mut accepted = Vec::new();
        if let Some(token) = &auth.token {
            accepted.push(format!("Bearer {token}").into_bytes());
        }
        if let Some((user, password)) = &auth.basic {
            accepted.push(
                format!("Basic {}", base64(format!("{user}:{password}").as_bytes())).into_bytes(),
            );
        }
        Credentials { accepted }
    }

    /// Whether `request` may see the admin pages.
    fn admit(&self, request: &Request<Incoming>) -> bool {
        if self.accepted.is_empty() {
            return true;
        }
        let Some(given) = request.headers().get(header::AUTHORIZATION) else {
            return false;
        };
        // Every accepted value is compared, in time independent of where they differ.
        self.accepted
            .iter()
            .fold(false, |ok, expected| ok | same(given.as_bytes(), expected))
    }

    fn basic(&self) -> bool {
        self.accepted.iter().any(|a| a.starts_with(b"Basic "))
    }
}

/// Constant-time equality (for equal lengths).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Standard base64 with padding (RFC 4648), for the basic-auth value.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
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
            let auth = self.auth.clone();
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
                    let auth = auth.clone();
                    connection::track(&tracked, async move {
                        Ok::<_, Infallible>(answer(&shared, &auth, &request))
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

fn answer(
    shared: &Shared,
    auth: &Credentials,
    request: &Request<Incoming>,
) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    if !matches!(path, "/healthz" | "/readyz") && !auth.admit(request) {
        let mut response = Response::new(Full::new(Bytes::from_static(
            b"401 Unauthorized: this admin listener needs its token or user and password.\n",
        )));
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        let challenge = if auth.basic() {
            "Basic realm=\"lenscap admin\", charset=\"UTF-8\""
        } else {
            "Bearer realm=\"lenscap admin\""
        };
        headers.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
        return response;
    }
    if path == "/metrics" {
        for site in &shared.router.sites {
            site.sync_limit_metrics();
        }
    }
    let (status, content_type, body) = match path {
        "/" => (
            StatusCode::OK,
            "text/html; charset=utf-8",
            Bytes::from(dashboard::html(&summary(shared), request.uri().query())),
        ),
        "/api/summary" => (
            StatusCode::OK,
            "application/json",
            Bytes::from(serde_json::to_vec_pretty(&summary(shared)).unwrap_or_default()),
        ),
        "/metrics" => (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Bytes::from(with_store_metrics(shared.metrics.encode(), shared)),
        ),
        "/healthz" => (StatusCode::OK, "text/plain", Bytes::from_static(b"ok\n")),
        "/readyz" if shared.ready.load(Ordering::Relaxed) => (
            StatusCode::OK,
            "text/plain",
            match store_state(shared) {
                // Still ready: a fleet whose Redis is gone must go on serving.
                Some(state) => Bytes::from(format!("ready\nstore=\"{state}\"\n")),
                None => Bytes::from_static(b"ready\n"),
            },
        ),
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            Bytes::from_static(b"shutting down\n"),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            Bytes::from_static(b"not found: try /, /api/summary, /metrics, /healthz, /readyz\n"),
        ),
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `ok` or `degraded` with a shared store; `None` with the in-process one.
fn store_state(shared: &Shared) -> Option<&'static str> {
    let fleet = shared.fleet.as_ref()?;
    Some(if fleet.degraded() { "degraded" } else { "ok" })
}

/// The registry's text with the shared store's state and fallbacks added before `# EOF`.
fn with_store_metrics(mut text: String, shared: &Shared) -> String {
    let (Some(fleet), Some(state)) = (&shared.fleet, store_state(shared)) else {
        return text;
    };
    let at = text.rfind("# EOF").unwrap_or(text.len());
    let degraded = u8::from(state == "degraded");
    let lines = format!(
        "# HELP lenscap_store_state The shared store's state: 1 for the state it is in.\n\
         # TYPE lenscap_store_state gauge\n\
         lenscap_store_state{{backend=\"redis\",store=\"ok\"}} {}\n\
         lenscap_store_state{{backend=\"redis\",store=\"degraded\"}} {degraded}\n\
         # HELP lenscap_store_fallbacks Decisions made from local state because the shared store did not answer in time.\n\
         # TYPE lenscap_store_fallbacks counter\n\
         lenscap_store_fallbacks_total {}\n\
         # HELP lenscap_store_dropped_writes Record writes dropped because the queue to the shared store was full.\n\
         # TYPE lenscap_store_dropped_writes counter\n\
         lenscap_store_dropped_writes_total {}\n\
         # HELP lenscap_store_late_refusals Requests refused because another instance used their budget up while this one decided.\n\
         # TYPE lenscap_store_late_refusals counter\n\
         lenscap_store_late_refusals_total {}\n",
        1 - degraded,
        fleet.fallbacks(),
        fleet.dropped_writes(),
        fleet.late_refusals(),
    );
    text.insert_str(at, &lines);
    text
}

/// The dashboard's figures, with each site's mode from its policy in force.
fn summary(shared: &Shared) -> crate::metrics::Summary {
    let mut summary = shared.metrics.summary();
    let mut modes = Vec::new();
    for site in &mut summary.sites {
        let mode = shared
            .router
            .sites
            .iter()
            .find(|s| **s.metrics.name() == *site.site)
            .map(|s| s.policy.load().mode().as_str().to_owned());
        modes.extend(mode.clone());
        site.mode = mode;
    }
    modes.dedup();
    summary.all.mode = match modes.as_slice() {
        [one] => Some(one.clone()),
        [] => None,
        _ => Some("mixed".to_owned()),
    };
    summary
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648() {
        for (given, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("Aladdin:open sesame", "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
        ] {
            assert_eq!(base64(given.as_bytes()), expected, "{given}");
        }
    }

    #[test]
    fn credentials_accept_the_configured_values_only() {
        let auth = Credentials::new(&AdminAuth {
            token: Some("s3cret".into()),
            basic: Some(("owner".into(), "pint".into())),
        });
        assert!(auth.accepted.contains(&b"Bearer s3cret".to_vec()));
        assert!(
            auth.accepted
                .contains(&format!("Basic {}", base64(b"owner:pint")).into_bytes())
        );
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
    }
}
