//! Reverse proxy to one upstream origin: pooled keep-alive, streaming bodies both ways,
//! hop-by-hop headers stripped, forwarding headers set, upgrades passed through, timeouts.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use super::KeptUpstream;
use super::body::{BodyContext, BodyDeadlines, SiteBody, UpstreamBody, text_response};
use super::client_body::{BodyFault, ClientBody, Fault};
use super::config::ProxySettings;
use super::upstream_pool::{PoolSettings, UpstreamError, UpstreamPool};
use crate::client::{PeerAddr, Tls};
use crate::layer::PolicyHandle;
use crate::metrics::SiteMetrics;

const HOP_COUNT: usize = 8;
/// Headers that describe one connection, never forwarded (RFC 9110 §7.6.1). A `static`, not a
/// `const`: a const array is built and dropped again at every use, on every request.
static HOP_BY_HOP: [HeaderName; HOP_COUNT] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Headers through which proxies and CDNs tell an origin who the client is. A client that is
/// not a trusted proxy may not say it about itself: they are removed, and `X-Real-IP` is set
/// to the address Lenscap sees.
static CLIENT_IDENTITY: [HeaderName; 15] = [
    X_REAL_IP,
    HeaderName::from_static("true-client-ip"),
    HeaderName::from_static("cf-connecting-ip"),
    HeaderName::from_static("cf-connecting-ipv6"),
    HeaderName::from_static("x-client-ip"),
    HeaderName::from_static("x-cluster-client-ip"),
    HeaderName::from_static("fastly-client-ip"),
    HeaderName::from_static("x-original-forwarded-for"),
    HeaderName::from_static("client-ip"),
    HeaderName::from_static("x-forwarded"),
    HeaderName::from_static("forwarded-for"),
    HeaderName::from_static("x-envoy-external-address"),
    HeaderName::from_static("x-azure-clientip"),
    HeaderName::from_static("x-azure-socketip"),
    HeaderName::from_static("x-appengine-user-ip"),
];

/// The most header fields read in an upstream's response head (hyper's default, said here so
/// the log can say it).
const UPSTREAM_MAX_HEADERS: usize = 100;

/// One upstream origin and the pooled connections reaching it.
pub(crate) struct Upstream {
    pool: Arc<UpstreamPool<ClientBody>>,
    authority: http::uri::Authority,
    /// Base path without trailing slash ("" for none).
    base_path: String,
    settings: ProxySettings,
    policy: PolicyHandle,
    metrics: SiteMetrics,
    site: String,
    /// What every response body needs, shared: cloning it per request is one atomic add.
    body_context: Arc<BodyContext>,
}

impl Upstream {
    pub(crate) fn new(
        origin: &Uri,
        settings: ProxySettings,
        policy: PolicyHandle,
        metrics: SiteMetrics,
        site: String,
    ) -> Upstream {
        let authority = origin.authority().cloned().expect("checked when parsed");
        let pool = UpstreamPool::new(PoolSettings {
            host: authority
                .host()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port: authority.port_u16().unwrap_or(80),
            connect_timeout: settings.connect_timeout,
            idle_timeout: settings.pool_idle_timeout,
            max_idle: settings.pool_max_idle,
            max_headers: UPSTREAM_MAX_HEADERS,
        });
        let body_context = Arc::new(BodyContext {
            site: site.clone(),
            metrics: metrics.clone(),
        });
        Upstream {
            pool,
            authority,
            base_path: origin.path().trim_end_matches('/').to_owned(),
            settings,
            policy,
            metrics,
            site,
            body_context,
        }
    }

    /// The request target upstream, in origin form (`/base/path?query`), as an HTTP/1
    /// request to an origin server is written.
    fn target(&self, uri: &Uri) -> Result<Uri, http::Error> {
        let path_and_query = match (uri.path_and_query(), self.base_path.is_empty()) {
            (Some(path), true) => path.clone(),
            (None, true) => http::uri::PathAndQuery::from_static("/"),
            (path, false) => {
                let path = path.map_or("/", |p| p.as_str());
                format!("{}{path}", self.base_path).parse()?
            }
        };
        Ok(Uri::from(path_and_query))
    }

    /// Forwards `request` and answers with the upstream's response, or 502/504.
    ///
    /// `kept`: the upstream connection the client connection keeps, if it keeps one.
    pub(crate) async fn forward(
        &self,
        mut request: Request<Incoming>,
        kept: Option<KeptUpstream>,
    ) -> Response<SiteBody> {
        let started = Instant::now();
        let deadline = started + self.settings.total_timeout;
        let found = Found::in_headers(request.headers());
        // Only a request with `Connection` can ask for one.
        let upgrade = match found.any(Found::CONNECTION) {
            true => upgrade_protocol(request.headers()),
            false => None,
        };
        let client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut request));

        let (mut parts, body) = request.into_parts();
        // The connection this client connection keeps; never for an upgrade, whose upstream
        // connection leaves the pool once switched.
        let kept = kept.filter(|_| upgrade.is_none());
        let client_version = parts.version;
        let head_only = parts.method == http::Method::HEAD;
        // A body that has ended already cannot fail: most requests need no fault record.
        let fault =
            (!http_body::Body::is_end_stream(&body)).then(|| Arc::new(BodyFault::default()));
        let body = ClientBody::new(
            body,
            self.settings.request_body_idle_timeout,
            self.settings.request_body_min_rate,
            fault.clone(),
        );
        let peer = parts.extensions.get::<PeerAddr>().map(|p| p.0);
        let tls = parts.extensions.get::<Tls>().is_some();
        let original_host = parts.headers.get(header::HOST).cloned().or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        let uri = match self.target(&parts.uri) {
            Ok(uri) => uri,
            Err(_) => return text_response(StatusCode::BAD_REQUEST, "400 Bad Request\n"),
        };

        strip_found_hop_by_hop(&mut parts.headers, found);
        if let Some(protocol) = &upgrade {
            parts
                .headers
                .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            parts.headers.insert(header::UPGRADE, protocol.clone());
        }
        let trusted = peer.is_some_and(|p| self.policy.load().trusted_proxies().is_trusted(p.ip()));
        let address = set_forwarding_headers(
            &mut parts.headers,
            peer,
            tls,
            original_host.as_ref(),
            trusted,
        );
        if !trusted {
            set_identity_headers(&mut parts.headers, found, address);
        }
        match (&original_host, self.settings.preserve_host) {
            (Some(host), true) => {
                parts.headers.insert(header::HOST, host.clone());
            }
            _ => {
                if let Ok(value) = HeaderValue::from_str(self.authority.as_str()) {
                    parts.headers.insert(header::HOST, value);
                }
            }
        }
        parts.uri = uri;
        parts.version = Version::HTTP_11;
        let request = Request::from_parts(parts, body);

        // One timer for the whole exchange, reset for each wait: the response head, the first
        // piece of the body, then each next piece (`UpstreamBody`).
        let head_by = (started + self.settings.response_timeout).min(deadline);
        let mut timer = Box::pin(tokio::time::sleep_until(head_by));
        let kept = kept.as_ref().map(|kept| &kept.0);
        let (mut response, sender) = match before(&mut timer, self.pool.send(request, kept)).await {
            Some(Ok(exchange)) => exchange,
            Some(Err(error)) => match fault.as_ref().and_then(|fault| fault.get()) {
                Some(fault) => return self.client_fault(fault, started),
                None => return self.failed(&error, started),
            },
            None => {
                return self.timed_out(started, "upstream sent no response head in time: 504");
            }
        };

        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(client_upgrade) = client_upgrade {
                let upstream_upgrade = hyper::upgrade::on(&mut response);
                let site = self.site.clone();
                tokio::spawn(async move {
                    let (client, upstream) = match tokio::try_join!(
                        client_upgrade,
                        upstream_upgrade
                    ) {
                        Ok(pair) => pair,
                        Err(error) => {
                            tracing::debug!(target: "lenscap::proxy", %site, %error, "upgrade failed");
                            return;
                        }
                    };
                    let mut client = TokioIo::new(client);
                    let mut upstream = TokioIo::new(upstream);
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                });
            }
            return response.map(|_| SiteBody::full(Bytes::new()));
        }

        strip_hop_by_hop(response.headers_mut());
        // hyper writes the head the upstream sent; the client gets its own version.
        *response.version_mut() = client_version;
        let idle = self.settings.body_idle_timeout;
        let (parts, mut body) = response.into_parts();
        // Wait for the first piece of the body before the head goes out: once it has, a body
        // that fails can only be cut short, and one failing at once would be an empty reply.
        let first = if head_only || !may_have_body(&parts) {
            None
        } else {
            timer.as_mut().reset((Instant::now() + idle).min(deadline));
            match before(&mut timer, http_body_util::BodyExt::frame(&mut body)).await {
                Some(Some(Ok(frame))) => Some(frame),
                Some(None) => None,
                Some(Some(Err(error))) => {
                    self.metrics.upstream_error("body");
                    let error = format_error_chain(&error);
                    tracing::warn!(
                        target: "lenscap::proxy",
                        site = %self.site,
                        upstream = %self.authority,
                        %error,
                        "upstream response body failed before its first byte: 502"
                    );
                    return text_response(
                        StatusCode::BAD_GATEWAY,
                        "502 Bad Gateway: the site's server sent a broken answer.\n",
                    );
                }
                None => {
                    return self.timed_out(
                        started,
                        "upstream sent a response head but no body in time: 504",
                    );
                }
            }
        };
        let context = self.body_context.clone();
        let deadlines = BodyDeadlines {
            idle,
            total: deadline,
            timer,
        };
        let body = UpstreamBody::new(body, first, sender, deadlines, context);
        Response::from_parts(parts, SiteBody::upstream(body))
    }

    /// The upstream did not answer in time (`why` says what it had not sent): 504.
    fn timed_out(&self, started: Instant, why: &'static str) -> Response<SiteBody> {
        self.metrics.upstream_error("timeout");
        tracing::warn!(
            target: "lenscap::proxy",
            site = %self.site,
            upstream = %self.authority,
            waited_ms = started.elapsed().as_millis() as u64,
            "{why}"
        );
        text_response(
            StatusCode::GATEWAY_TIMEOUT,
            "504 Gateway Timeout: the site's server did not answer in time.\n",
        )
    }

    /// The client's own request body failed: 408 when too slow, 400 when malformed.
    fn client_fault(&self, fault: Fault, started: Instant) -> Response<SiteBody> {
        let (status, body, why): (_, &'static str, _) = match fault {
            Fault::TooSlow => (
                StatusCode::REQUEST_TIMEOUT,
                "408 Request Timeout: the request body came too slowly.\n",
                "request body too slow",
            ),
            Fault::Malformed => (
                StatusCode::BAD_REQUEST,
                "400 Bad Request: the request body is malformed.\n",
                "request body malformed",
            ),
        };
        tracing::info!(
            target: "lenscap::proxy",
            site = %self.site,
            status = status.as_u16(),
            waited_ms = started.elapsed().as_millis() as u64,
            "{why}: the upstream request was abandoned"
        );
        let mut response = text_response(status, body);
        // The rest of the body is never read: the connection cannot carry another request.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        response
    }

    fn failed(&self, error: &UpstreamError, started: Instant) -> Response<SiteBody> {
        let timed_out = error.is_timeout() || error_chain_timed_out(error);
        let (outcome, status, body): (_, _, &'static str) = if timed_out {
            (
                "timeout",
                StatusCode::GATEWAY_TIMEOUT,
                "504 Gateway Timeout: the site's server could not be reached in time.\n",
            )
        } else if error.is_connect() {
            (
                "refused",
                StatusCode::BAD_GATEWAY,
                "502 Bad Gateway: the site's server refused the connection.\n",
            )
        } else {
            (
                "failed",
                StatusCode::BAD_GATEWAY,
                "502 Bad Gateway: the site's server closed the connection without an answer.\n",
            )
        };
        self.metrics.upstream_error(outcome);
        let why = if error_chain_head_too_large(error) {
            Some(format!(
                "its response head has more than {UPSTREAM_MAX_HEADERS} header fields, or is too large"
            ))
        } else {
            None
        };
        let error = format_error_chain(error);
        match why {
            Some(why) => tracing::warn!(
                target: "lenscap::proxy",
                site = %self.site,
                upstream = %self.authority,
                outcome,
                status = status.as_u16(),
                waited_ms = started.elapsed().as_millis() as u64,
                %error,
                "upstream request failed: {why}"
            ),
            None => tracing::warn!(
                target: "lenscap::proxy",
                site = %self.site,
                upstream = %self.authority,
                outcome,
                status = status.as_u16(),
                waited_ms = started.elapsed().as_millis() as u64,
                %error,
                "upstream request failed"
            ),
        }
        text_response(status, body)
    }
}

/// `work`'s output, or `None` when `timer` goes off first. The timer is polled (and so
/// registered with the runtime) only when `work` has to wait.
fn before<F: Future>(timer: &mut Pin<Box<Sleep>>, work: F) -> Before<'_, F> {
    Before { timer, work }
}

pin_project! {
    /// What [`before`] returns: `work` held once, not moved again into a second future.
    struct Before<'a, F> {
        timer: &'a mut Pin<Box<Sleep>>,
        #[pin]
        work: F,
    }
}

impl<F: Future> Future for Before<'_, F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(done) = this.work.poll(cx) {
            return Poll::Ready(Some(done));
        }
        this.timer.as_mut().poll(cx).map(|()| None)
    }
}

fn format_error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(next) = source {
        text.push_str(": ");
        text.push_str(&next.to_string());
        source = next.source();
    }
    text
}

/// Whether hyper refused the upstream's response head as too large (too many header fields,
/// or too many bytes).
fn error_chain_head_too_large(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_parse_too_large)
        {
            return true;
        }
        current = e.source();
    }
    false
}

/// Whether a response with this head can carry a body (RFC 9110 §6.4.1); event streams are
/// relayed at once, as they may wait long for their first event.
fn may_have_body(parts: &http::response::Parts) -> bool {
    let status = parts.status;
    if status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return false;
    }
    if parts
        .headers
        .get(header::CONTENT_LENGTH)
        .is_some_and(|v| v == "0")
    {
        return false;
    }
    const EVENT_STREAM: &[u8] = b"text/event-stream";
    !parts.headers.get(header::CONTENT_TYPE).is_some_and(|v| {
        let v = v.as_bytes().trim_ascii_start();
        v.get(..EVENT_STREAM.len())
            .is_some_and(|start| start.eq_ignore_ascii_case(EVENT_STREAM))
    })
}

fn error_chain_timed_out(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return true;
        }
        current = e.source();
    }
    false
}

/// The protocol asked for in `Upgrade`, when `Connection` lists `upgrade`.
fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    if asks {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    }
}

/// The header fields of one message that the proxy removes, found in one pass over its
/// names (a removal hashes its name, and most messages carry at most `Connection` of these).
/// Bit `i` stands for `HOP_BY_HOP[i]`; then `Upgrade`, then any of `CLIENT_IDENTITY`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Found(u16);

impl Found {
    /// `HOP_BY_HOP[0]`.
    const CONNECTION: u16 = 1;
    const UPGRADE: u16 = 1 << HOP_COUNT;
    const IDENTITY: u16 = 1 << (HOP_COUNT + 1);
    /// Everything [`strip_hop_by_hop`] removes.
    const HOP_BY_HOP: u16 = Found::UPGRADE | ((1 << HOP_COUNT) - 1);

    fn in_headers(headers: &HeaderMap) -> Found {
        Found(headers.keys().fold(0, |bits, name| bits | Found::bit(name)))
    }

    /// The bit of a name the proxy removes, 0 for any other: one `match` on the text rather
    /// than a comparison with each of the two dozen names (a test holds it to the lists).
    fn bit(name: &HeaderName) -> u16 {
        match name.as_str() {
            "connection" => Found::CONNECTION,
            "keep-alive" => 1 << 1,
            "proxy-connection" => 1 << 2,
            "proxy-authenticate" => 1 << 3,
            "proxy-authorization" => 1 << 4,
            "te" => 1 << 5,
            "trailer" => 1 << 6,
            "transfer-encoding" => 1 << 7,
            "upgrade" => Found::UPGRADE,
            "x-real-ip"
            | "true-client-ip"
            | "cf-connecting-ip"
            | "cf-connecting-ipv6"
            | "x-client-ip"
            | "x-cluster-client-ip"
            | "fastly-client-ip"
            | "x-original-forwarded-for"
            | "client-ip"
            | "x-forwarded"
            | "forwarded-for"
            | "x-envoy-external-address"
            | "x-azure-clientip"
            | "x-azure-socketip"
            | "x-appengine-user-ip" => Found::IDENTITY,
            _ => 0,
        }
    }

    fn any(self, bits: u16) -> bool {
        self.0 & bits != 0
    }
}

/// Removes hop-by-hop headers, those named in `Connection` included.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let found = Found::in_headers(headers);
    strip_found_hop_by_hop(headers, found);
}

/// [`strip_hop_by_hop`] with the names present found already.
fn strip_found_hop_by_hop(headers: &mut HeaderMap, found: Found) {
    if !found.any(Found::HOP_BY_HOP) {
        return;
    }
    // Names in `Connection` that are not hop-by-hop already (rarely any: no allocation then).
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|token| !is_removed_anyway(token))
        .filter_map(|token| HeaderName::from_bytes(token.as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if found.any(1 << i) {
            headers.remove(name);
        }
    }
    if found.any(Found::UPGRADE) {
        headers.remove(header::UPGRADE);
    }
}

/// A `Connection` token naming a header that is removed anyway.
fn is_removed_anyway(token: &str) -> bool {
    token.eq_ignore_ascii_case("upgrade")
        || HOP_BY_HOP
            .iter()
            .any(|hop| token.eq_ignore_ascii_case(hop.as_str()))
}

/// An address as text, on the stack (it is on every proxied request); IPv4 without the
/// formatting machinery.
struct IpText {
    bytes: [u8; IpText::MAX],
    len: usize,
}

impl IpText {
    /// The longest text of an IPv6 address (`ffff:ffff:…:255.255.255.255`).
    const MAX: usize = 45;

    fn new(ip: IpAddr) -> Self {
        let mut text = IpText {
            bytes: [0; IpText::MAX],
            len: 0,
        };
        match ip {
            IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        text.push(b'.');
                    }
                    if octet >= 100 {
                        text.push(b'0' + octet / 100);
                    }
                    if octet >= 10 {
                        text.push(b'0' + octet / 10 % 10);
                    }
                    text.push(b'0' + octet % 10);
                }
            }
            IpAddr::V6(v6) => {
                use std::io::Write;
                let mut rest = &mut text.bytes[..];
                // Always fits: MAX is the longest form.
                let _ = write!(rest, "{v6}");
                text.len = IpText::MAX - rest.len();
            }
        }
        text
    }

    fn push(&mut self, byte: u8) {
        self.bytes[self.len] = byte;
        self.len += 1;
    }

    fn as_str(&self) -> &str {
        // Only ASCII digits, dots, colons and hex letters were written.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

/// `X-Forwarded-For`, `X-Forwarded-Proto`, `X-Forwarded-Host` and `Forwarded`: appended to
/// when the peer is a trusted proxy, replaced otherwise (a client's own claims are dropped).
/// Returns the peer's address as a header value, for `X-Real-IP`.
fn set_forwarding_headers(
    headers: &mut HeaderMap,
    peer: Option<SocketAddr>,
    tls: bool,
    host: Option<&HeaderValue>,
    trusted: bool,
) -> Option<HeaderValue> {
    let proto = if tls { "https" } else { "http" };
    let ip_text = peer.map(|p| IpText::new(p.ip().to_canonical()));

    // `Forwarded` is made first: the address values are slices of its text (one allocation
    // for the three of them).
    let host_text = host.and_then(|h| h.to_str().ok());
    let (element, ip_at) = forwarded_element(ip_text.as_ref(), host_text, proto);
    let previous = match trusted {
        true => headers.get(header::FORWARDED).and_then(|v| v.to_str().ok()),
        false => None,
    };
    let (forwarded, ip_at) = match previous {
        Some(previous) => (format!("{previous}, {element}"), previous.len() + 2 + ip_at),
        None => (element, ip_at),
    };
    // Exactly as long as its capacity, the text becomes the value without a copy.
    let forwarded = Bytes::from(forwarded);
    let address = ip_text
        .as_ref()
        .and_then(|ip| HeaderValue::from_maybe_shared(forwarded.slice(ip_at..ip_at + ip.len)).ok());

    if let Some(ip_text) = &ip_text {
        let previous = match trusted {
            true => headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()),
            false => None,
        };
        let value = match previous {
            Some(previous) => {
                HeaderValue::from_str(&format!("{previous}, {}", ip_text.as_str())).ok()
            }
            None => address.clone(),
        };
        if let Some(value) = value {
            headers.insert(X_FORWARDED_FOR, value);
        }
    } else if !trusted {
        headers.remove(X_FORWARDED_FOR);
    }
    if !(trusted && headers.contains_key(&X_FORWARDED_PROTO)) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    }
    if !(trusted && headers.contains_key(&X_FORWARDED_HOST)) {
        match host {
            Some(host) => {
                headers.insert(X_FORWARDED_HOST, host.clone());
            }
            None => {
                headers.remove(X_FORWARDED_HOST);
            }
        }
    }
    if let Ok(value) = HeaderValue::from_maybe_shared(forwarded) {
        headers.insert(header::FORWARDED, value);
    }
    address
}

/// One `Forwarded` element (RFC 7239): `for=…;host="…";proto=…`, in a string of exactly its
/// length (quotes and backslashes left out of the host), and where the address starts in it.
fn forwarded_element(ip: Option<&IpText>, host: Option<&str>, proto: &str) -> (String, usize) {
    let dropped = |b: &u8| matches!(b, b'"' | b'\\');
    let (open, close) = match ip.map(|ip| ip.as_str().contains(':')) {
        Some(true) => ("for=\"[", "]\";"),
        Some(false) => ("for=", ";"),
        None => ("", ""),
    };
    let ip = ip.map_or("", IpText::as_str);
    let host_len = host.map_or(0, |h| {
        "host=\"\";".len() + h.len() - h.bytes().filter(dropped).count()
    });
    let len = open.len() + ip.len() + close.len() + host_len + "proto=".len() + proto.len();
    let mut element = String::with_capacity(len);
    element.push_str(open);
    element.push_str(ip);
    element.push_str(close);
    if let Some(host) = host {
        element.push_str("host=\"");
        // By runs between the dropped characters (ASCII, so each cut is between characters),
        // not one character at a time.
        let mut rest = host;
        while let Some(at) = rest.bytes().position(|b| dropped(&b)) {
            element.push_str(&rest[..at]);
            rest = &rest[at + 1..];
        }
        element.push_str(rest);
        element.push_str("\";");
    }
    element.push_str("proto=");
    element.push_str(proto);
    (element, open.len())
}

/// Without a trusted proxy in front, identity headers are Lenscap's to say (`found`: the
/// names present, rather than a hashed lookup of each of the fifteen; `address`: the peer's).
fn set_identity_headers(headers: &mut HeaderMap, found: Found, address: Option<HeaderValue>) {
    if found.any(Found::IDENTITY) {
        for name in &CLIENT_IDENTITY {
            headers.remove(name);
        }
    }
    if let Some(address) = address {
        headers.insert(X_REAL_IP, address);
    }
}

/// Largest upstream robots.txt read for merging (crawlers read no more than 500 KiB).
const MAX_UPSTREAM_ROBOTS: usize = 500 * 1024;
/// How long fetching an upstream's robots.txt may take at start-up or reload.
const UPSTREAM_ROBOTS_TIMEOUT: Duration = Duration::from_secs(5);

/// Fetches each proxied site's own `/robots.txt` and merges it into the robots.txt Lenscap
/// serves for that site (at start-up and on every reload, so the merged copy is cached until
/// the next one). An upstream without one, unreachable, or answering something unusable is
/// logged and leaves Lenscap's own robots.txt alone.
pub(crate) async fn merge_upstream_robots(settings: &mut super::Settings) {
    for spec in &mut settings.sites {
        let super::Content::Proxy(origin) = &spec.content else {
            continue;
        };
        match fetch_upstream_robots(origin).await {
            Ok(Some(text)) => {
                if let Err(error) = spec.policy.set_site_robots(&text) {
                    tracing::warn!(target: "lenscap::server", site = %spec.name, %error, "the upstream's robots.txt was not merged");
                }
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(target: "lenscap::server", site = %spec.name, %error, "could not fetch the upstream's robots.txt; serving Lenscap's own")
            }
        }
    }
}

/// The upstream's robots.txt: `Ok(None)` when it has none (4xx).
async fn fetch_upstream_robots(origin: &http::Uri) -> Result<Option<String>, String> {
    use http_body_util::BodyExt;
    let base = origin.path().trim_end_matches('/');
    let uri: http::Uri = format!(
        "{}://{}{base}/robots.txt",
        origin.scheme_str().unwrap_or("http"),
        origin.authority().map(|a| a.as_str()).unwrap_or_default()
    )
    .parse()
    .map_err(|e| format!("bad robots.txt address: {e}"))?;
    let client = Client::builder(TokioExecutor::new()).build_http::<http_body_util::Empty<Bytes>>();
    let request = Request::get(uri.clone())
        .header(http::header::USER_AGENT, "lenscap (robots.txt merge)")
        .body(http_body_util::Empty::new())
        .map_err(|e| e.to_string())?;
    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| format!("{uri}: {e}"))?;
        let status = response.status();
        if status.is_client_error() {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(format!("{uri}: status {status}"));
        }
        let body = http_body_util::Limited::new(response.into_body(), MAX_UPSTREAM_ROBOTS)
            .collect()
            .await
            .map_err(|e| format!("{uri}: {e}"))?
            .to_bytes();
        String::from_utf8(body.to_vec())
            .map(Some)
            .map_err(|_| format!("{uri}: not UTF-8 text"))
    };
    tokio::time::timeout(UPSTREAM_ROBOTS_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("{uri}: no answer within {UPSTREAM_ROBOTS_TIMEOUT:?}"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_those_named_in_connection_are_stripped() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, "keep-alive, X-Secret".parse().unwrap());
        headers.insert("keep-alive", "timeout=5".parse().unwrap());
        headers.insert("x-secret", "1".parse().unwrap());
        headers.insert(header::TE, "trailers".parse().unwrap());
        headers.insert(header::ACCEPT, "*/*".parse().unwrap());
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1, "{headers:?}");
        assert!(headers.contains_key(header::ACCEPT));
    }

    #[test]
    fn upgrade_and_every_header_named_in_connection_are_stripped() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, "close, Upgrade".parse().unwrap());
        headers.insert(header::UPGRADE, "websocket".parse().unwrap());
        headers.insert("close", "named in Connection, so removed".parse().unwrap());
        headers.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        headers.insert(header::CONTENT_TYPE, "image/webp".parse().unwrap());
        strip_hop_by_hop(&mut headers);
        let left: Vec<_> = headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["content-type"], "{headers:?}");
    }

    #[test]
    fn each_removed_name_has_its_own_bit_and_no_other_name_has_one() {
        for (i, name) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(Found::bit(name), 1 << i, "{name}");
        }
        assert_eq!(Found::bit(&header::UPGRADE), Found::UPGRADE);
        for name in &CLIENT_IDENTITY {
            assert_eq!(Found::bit(name), Found::IDENTITY, "{name}");
        }
        for name in [
            header::HOST,
            header::ACCEPT,
            header::FORWARDED,
            X_FORWARDED_FOR,
        ] {
            assert_eq!(Found::bit(&name), 0, "{name}");
        }
    }

    #[test]
    fn identity_headers_from_an_untrusted_peer_are_replaced_by_its_address() {
        let mut headers = HeaderMap::new();
        headers.insert("cf-connecting-ip", "6.6.6.6".parse().unwrap());
        headers.insert("x-appengine-user-ip", "6.6.6.7".parse().unwrap());
        headers.insert(X_REAL_IP, "6.6.6.8".parse().unwrap());
        headers.insert(header::ACCEPT, "*/*".parse().unwrap());
        let found = Found::in_headers(&headers);
        set_identity_headers(
            &mut headers,
            found,
            Some(HeaderValue::from_static("203.0.113.9")),
        );
        assert_eq!(headers.len(), 2, "{headers:?}");
        assert_eq!(headers[header::ACCEPT], "*/*");
        assert_eq!(headers[X_REAL_IP], "203.0.113.9");
    }

    #[test]
    fn addresses_are_written_as_std_writes_them() {
        for text in [
            "0.0.0.0",
            "9.10.99.100",
            "203.0.113.9",
            "255.255.255.255",
            "127.0.0.1",
            "::1",
            "2001:db8::7",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "::ffff:255.255.255.255",
        ] {
            let ip: IpAddr = text.parse().unwrap();
            assert_eq!(IpText::new(ip).as_str(), ip.to_string());
        }
    }

    #[test]
    fn forwarded_elements_fill_their_strings_exactly() {
        let v4 = IpText::new("203.0.113.9".parse().unwrap());
        let v6 = IpText::new("2001:db8::7".parse().unwrap());
        for (ip, host, expected) in [
            (
                Some(&v4),
                Some("pub.example"),
                "for=203.0.113.9;host=\"pub.example\";proto=http",
            ),
            (Some(&v6), None, "for=\"[2001:db8::7]\";proto=http"),
            (None, Some("a\"b\\c"), "host=\"abc\";proto=http"),
            (None, None, "proto=http"),
        ] {
            let (element, ip_at) = forwarded_element(ip, host, "http");
            assert_eq!(element, expected);
            if let Some(ip) = ip {
                assert_eq!(&element[ip_at..ip_at + ip.len], ip.as_str());
            }
            // Anything else and the header value would be copied again.
            assert_eq!(element.len(), element.capacity(), "{element}");
        }
    }

    #[test]
    fn a_host_with_quotes_loses_them_in_forwarded() {
        let mut headers = HeaderMap::new();
        let host = HeaderValue::from_static("pub\"\\.example");
        set_forwarding_headers(&mut headers, None, true, Some(&host), false);
        assert_eq!(
            headers[header::FORWARDED],
            "host=\"pub.example\";proto=https"
        );
    }

    #[test]
    fn forwarding_headers_from_an_untrusted_peer_are_replaced() {
        let mut headers = HeaderMap::new();
        headers.insert(X_FORWARDED_FOR, "6.6.6.6".parse().unwrap());
        headers.insert(header::FORWARDED, "for=6.6.6.6".parse().unwrap());
        let host = HeaderValue::from_static("pub.example");
        let address = set_forwarding_headers(
            &mut headers,
            Some("203.0.113.9:5000".parse().unwrap()),
            false,
            Some(&host),
            false,
        );
        assert_eq!(address.unwrap(), "203.0.113.9");
        assert_eq!(headers[X_FORWARDED_FOR], "203.0.113.9");
        assert_eq!(headers[X_FORWARDED_PROTO], "http");
        assert_eq!(headers[X_FORWARDED_HOST], "pub.example");
        assert_eq!(
            headers[header::FORWARDED],
            "for=203.0.113.9;host=\"pub.example\";proto=http"
        );
    }

    #[test]
    fn forwarding_headers_from_a_trusted_peer_are_appended() {
        let mut headers = HeaderMap::new();
        headers.insert(X_FORWARDED_FOR, "198.51.100.7".parse().unwrap());
        headers.insert(X_FORWARDED_PROTO, "https".parse().unwrap());
        headers.insert(header::FORWARDED, "for=198.51.100.7".parse().unwrap());
        let address = set_forwarding_headers(
            &mut headers,
            Some("[::1]:5000".parse().unwrap()),
            false,
            None,
            true,
        );
        assert_eq!(address.unwrap(), "::1");
        assert_eq!(headers[X_FORWARDED_FOR], "198.51.100.7, ::1");
        assert_eq!(headers[X_FORWARDED_PROTO], "https");
        assert_eq!(
            headers[header::FORWARDED],
            "for=198.51.100.7, for=\"[::1]\";proto=http"
        );
    }
}
