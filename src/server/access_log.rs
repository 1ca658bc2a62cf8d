//! The access log (`[server] access_log = "FILE"` or `"-"`): one JSON line per request that
//! reached a site, in the input format of `lenscap replay --format jsonl`, plus what happened.
//!
//! ```json
//! {"t":1764590000.123,"ip":"127.0.0.1","method":"GET","path":"/photos/1.jpg","scheme":"http",
//!  "version":"HTTP/1.1","headers":{"user-agent":"…","accept":"…"},"site":"default",
//!  "host":"pub.example","status":403,"bytes":212,"duration_ms":0.41,"action":"block",
//!  "outcome":"blocked","category":"ai-training","agent":"GPTBot","score":40,
//!  "reasons":["known-agent"],"client":"127.0.0.1","visitor":null,"enforced":true}
//! ```
//!
//! Over TLS terminated here a line also carries `ja4`, `tls_traits` and (HTTP/2) `h2`, the
//! connection's fingerprints; a client on a cloud or hosting address carries `datacenter`.
//!
//! - `ip` is the peer (the connection's address); `client` is who Lenscap judged (the
//!   forwarded hop behind a trusted proxy). `headers` are the ones the stages read, and
//!   nothing else: no cookies, no authorisation. `visitor` is an opaque id (a hash of the
//!   visitor cookie) when the request carried one.
//! - `t` is the limiter's own reading of the clock for that request, in Unix seconds to the
//!   millisecond. The layer's clock counts from the start of the UTC day, so replay (which
//!   aligns its clock the same way) sees the same milliseconds the live limiter saw.
//! - Written off the request path: the request side formats the line and offers it to a
//!   bounded channel (`access_log_buffer` lines); a full channel drops the line and counts it
//!   in `lenscap_access_log_dropped_total`. A writer thread appends and flushes; SIGHUP and
//!   SIGUSR1 make it reopen the file (for logrotate).
//! - Lines are written as responses are ready, so concurrent requests may appear out of
//!   decision order; replay follows the file's order.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::{Request, Response, header};
use serde::Serialize;
use tokio::sync::mpsc;

use super::config::AccessLogTarget;
use crate::fingerprint::fnv1a64;
use crate::limit::{Clock, Millis};
use crate::metrics::Metrics;
use crate::record::{Decision, DecisionSlot};
use crate::signals::transport::Transport;

/// The headers a line keeps: every one a stage reads to judge a request.
const LOGGED_HEADERS: [&str; 13] = [
    "host",
    "user-agent",
    "accept",
    "accept-language",
    "accept-encoding",
    "connection",
    "referer",
    "sec-fetch-dest",
    "sec-fetch-mode",
    "sec-ch-ua",
    "x-forwarded-for",
    "x-forwarded-proto",
    "forwarded",
];

const DAY_MS: u64 = 86_400_000;

// === impl LogClock ===

thread_local! {
    /// The last reading of a [`LogClock`] on this thread, in milliseconds since its origin.
    static LAST_READING: Cell<Option<u64>> = const { Cell::new(None) };
}

/// The layer's clock when the access log is on: monotonic milliseconds counted from the
/// start of the UTC day the server started, remembering each reading on its thread so the
/// log line carries exactly the time the limiter used.
#[derive(Debug)]
pub(crate) struct LogClock {
    start: Instant,
    /// Unix milliseconds of the UTC midnight before the start.
    day_origin: u64,
    /// Milliseconds from that midnight to the start.
    offset: u64,
}

impl LogClock {
    pub(crate) fn new() -> LogClock {
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        LogClock {
            start: Instant::now(),
            day_origin: unix_ms / DAY_MS * DAY_MS,
            offset: unix_ms % DAY_MS,
        }
    }

    fn read(&self) -> u64 {
        let ms = self.offset + self.start.elapsed().as_millis() as u64;
        LAST_READING.with(|last| last.set(Some(ms)));
        ms
    }

    /// Forgets this thread's last reading (before a request is judged).
    pub(crate) fn forget() {
        LAST_READING.with(|last| last.set(None));
    }

    /// The time the limiter read for the request just judged on this thread (or now, when
    /// it read none), as Unix milliseconds.
    pub(crate) fn judged_at(&self) -> u64 {
        let ms = LAST_READING
            .with(|last| last.take())
            .unwrap_or_else(|| self.read());
        self.day_origin + ms
    }
}

impl Clock for LogClock {
    fn now_ms(&self) -> Millis {
        self.read().wrapping_add(1) as Millis
    }

    fn unix_secs(&self) -> u64 {
        (self.day_origin + self.read()) / 1000
    }

    fn now(&self) -> (Millis, u64) {
        let ms = self.read();
        (ms.wrapping_add(1) as Millis, (self.day_origin + ms) / 1000)
    }
}

/// One [`LogClock`] shared by every site's layer.
#[derive(Clone, Debug)]
pub(crate) struct SharedLogClock(pub(crate) Arc<LogClock>);

impl Clock for SharedLogClock {
    fn now_ms(&self) -> Millis {
        self.0.now_ms()
    }

    fn unix_secs(&self) -> u64 {
        self.0.unix_secs()
    }

    fn now(&self) -> (Millis, u64) {
        self.0.now()
    }
}

// === impl AccessLog ===

/// The request side of the access log.
#[derive(Debug)]
pub(crate) struct AccessLog {
    lines: mpsc::Sender<String>,
    metrics: Metrics,
    reopen: Arc<AtomicBool>,
    pub(crate) clock: Arc<LogClock>,
}

/// What a line needs from the request, taken before the request is handed on.
pub(crate) struct Pending {
    peer: SocketAddr,
    tls: bool,
    /// The connection's fingerprints (TLS terminated here).
    transport: Option<Transport>,
    method: String,
    path: String,
    version: &'static str,
    headers: BTreeMap<&'static str, Vec<String>>,
    host: Option<String>,
    visitor: Option<String>,
    cookie_name: String,
    slot: DecisionSlot,
    started: Instant,
}

#[derive(Serialize)]
struct Line<'a> {
    t: f64,
    ip: String,
    method: &'a str,
    path: &'a str,
    scheme: &'static str,
    version: &'static str,
    headers: BTreeMap<&'static str, HeaderField<'a>>,
    site: &'a str,
    host: Option<&'a str>,
    status: u16,
    bytes: Option<u64>,
    duration_ms: f64,
    action: Option<&'static str>,
    outcome: Option<&'static str>,
    category: Option<&'static str>,
    agent: Option<&'a str>,
    score: Option<u32>,
    reasons: Vec<&'static str>,
    client: Option<String>,
    visitor: Option<&'a str>,
    set_visitor: Option<String>,
    content_type: Option<&'a str>,
    enforced: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ja4: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_traits: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    h2: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    datacenter: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum HeaderField<'a> {
    One(&'a str),
    Many(&'a [String]),
}

impl AccessLog {
    /// Opens the log (a file is created if missing and appended to) and starts its writer.
    pub(crate) fn open(
        target: &AccessLogTarget,
        buffer: usize,
        metrics: Metrics,
    ) -> std::io::Result<AccessLog> {
        let mut sink = Sink::open(target)?;
        let (lines, mut rx) = mpsc::channel::<String>(buffer);
        let reopen = Arc::new(AtomicBool::new(false));
        let reopen_flag = reopen.clone();
        let target = target.clone();
        std::thread::Builder::new()
            .name("lenscap-access-log".into())
            .spawn(move || {
                while let Some(line) = rx.blocking_recv() {
                    if reopen_flag.swap(false, Ordering::AcqRel) {
                        match Sink::open(&target) {
                            Ok(fresh) => sink = fresh,
                            Err(error) => tracing::warn!(
                                target: "lenscap::server",
                                %error,
                                "access log: reopening failed; still writing to the old file"
                            ),
                        }
                    }
                    let mut batch = line;
                    // Whatever else is waiting goes in the same write.
                    while let Ok(more) = rx.try_recv() {
                        batch.push_str(&more);
                        if batch.len() > 1 << 16 {
                            break;
                        }
                    }
                    if let Err(error) = sink.write(batch.as_bytes()) {
                        tracing::warn!(target: "lenscap::server", %error, "access log: write failed");
                    }
                }
            })?;
        Ok(AccessLog {
            lines,
            metrics,
            reopen,
            clock: Arc::new(LogClock::new()),
        })
    }

    /// The flag a signal handler sets to reopen the file.
    pub(crate) fn reopen_flag(&self) -> Arc<AtomicBool> {
        self.reopen.clone()
    }

    /// Takes what the line needs from `request` and leaves the slot the layer fills.
    pub(crate) fn begin<B>(
        &self,
        request: &mut Request<B>,
        peer: SocketAddr,
        tls: bool,
        cookie_name: &str,
    ) -> Pending {
        let slot = DecisionSlot::default();
        request.extensions_mut().insert(slot.clone());
        let headers = request.headers();
        let mut kept = BTreeMap::new();
        for name in LOGGED_HEADERS {
            let values: Vec<String> = headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(str::to_owned)
                .collect();
            if !values.is_empty() {
                kept.insert(name, values);
            }
        }
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| request.uri().authority().map(|a| a.as_str()))
            .map(str::to_owned);
        let version = match request.version() {
            http::Version::HTTP_09 => "HTTP/0.9",
            http::Version::HTTP_10 => "HTTP/1.0",
            http::Version::HTTP_2 => "HTTP/2",
            http::Version::HTTP_3 => "HTTP/3",
            _ => "HTTP/1.1",
        };
        Pending {
            peer,
            tls,
            transport: request.extensions().get::<Transport>().copied(),
            method: request.method().as_str().to_owned(),
            path: request.uri().path_and_query().map_or_else(
                || request.uri().path().to_owned(),
                |p| p.as_str().to_owned(),
            ),
            version,
            headers: kept,
            host,
            visitor: visitor_id(headers.get_all(header::COOKIE), cookie_name),
            cookie_name: cookie_name.to_owned(),
            slot,
            started: Instant::now(),
        }
    }

    /// Formats the line for `response` and offers it to the writer.
    pub(crate) fn finish<B: http_body::Body>(
        &self,
        pending: Pending,
        judged_at_ms: u64,
        site: &str,
        response: &Response<B>,
    ) {
        let decision: Option<Decision> = pending.slot.take();
        let decision = decision.as_ref();
        let bytes = response.body().size_hint().exact().or_else(|| {
            response
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
        });
        let headers = pending
            .headers
            .iter()
            .map(|(name, values)| {
                let field = match values.as_slice() {
                    [one] => HeaderField::One(one),
                    many => HeaderField::Many(many),
                };
                (*name, field)
            })
            .collect();
        let elapsed: Duration = pending.started.elapsed();
        let tls_fingerprint = pending.transport.as_ref().and_then(|t| t.tls.as_ref());
        let h2_fingerprint = pending.transport.as_ref().and_then(|t| t.h2.as_ref());
        let line = Line {
            // Whole milliseconds, so replay reads back the limiter's millisecond exactly.
            t: judged_at_ms as f64 / 1000.0,
            ip: pending.peer.ip().to_string(),
            method: &pending.method,
            path: &pending.path,
            scheme: if pending.tls { "https" } else { "http" },
            version: pending.version,
            headers,
            site,
            host: pending.host.as_deref(),
            status: response.status().as_u16(),
            bytes,
            duration_ms: (elapsed.as_secs_f64() * 1e6).round() / 1e3,
            action: decision.map(|d| d.verdict.action.as_str()),
            outcome: decision.map(|d| d.outcome.as_str()),
            category: decision.map(|d| d.verdict.category.as_str()),
            agent: decision.and_then(|d| d.verdict.agent.as_deref()),
            score: decision.map(|d| d.verdict.score),
            reasons: decision.map_or_else(Vec::new, |d| d.verdict.reasons.names().collect()),
            client: decision.map(|d| d.client.to_string()),
            visitor: pending.visitor.as_deref(),
            set_visitor: visitor_id(
                response.headers().get_all(header::SET_COOKIE),
                &pending.cookie_name,
            ),
            content_type: response
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
            enforced: decision.map(|d| d.enforced),
            ja4: tls_fingerprint.map(|t| t.ja4()),
            tls_traits: tls_fingerprint.map(|t| t.traits()),
            h2: h2_fingerprint.map(|h| h.akamai()),
            datacenter: decision.and_then(|d| d.datacenter.as_deref()),
        };
        let Ok(mut text) = serde_json::to_string(&line) else {
            return;
        };
        text.push('\n');
        if self.lines.try_send(text).is_err() {
            self.metrics.access_log_dropped();
        }
    }
}

/// An opaque id for the visitor cookie named `name`, in `Cookie` lines (every pair) or
/// `Set-Cookie` lines (the first pair of each), when there is one.
fn visitor_id(lines: http::header::GetAll<'_, http::HeaderValue>, name: &str) -> Option<String> {
    for line in lines {
        for pair in line.as_bytes().split(|&b| b == b';') {
            let pair = pair.trim_ascii();
            if let Some(value) = pair
                .strip_prefix(name.as_bytes())
                .and_then(|rest| rest.strip_prefix(b"="))
            {
                return Some(format!("{:016x}", fnv1a64(&[b"visitor", value])));
            }
        }
    }
    None
}

/// Where the writer thread writes.
enum Sink {
    Stdout,
    File(std::fs::File),
}

impl Sink {
    fn open(target: &AccessLogTarget) -> std::io::Result<Sink> {
        match target {
            AccessLogTarget::Stdout => Ok(Sink::Stdout),
            AccessLogTarget::File(path) => std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map(Sink::File)
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        }
    }

    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(bytes)?;
                out.flush()
            }
            Sink::File(file) => file.write_all(bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_counts_from_midnight_and_remembers_its_reading() {
        let clock = LogClock::new();
        LogClock::forget();
        let (ms, unix) = clock.now();
        let at = clock.judged_at();
        assert_eq!(at, clock.day_origin + u64::from(ms) - 1);
        assert_eq!(unix, at / 1000);
        assert_eq!(clock.day_origin % DAY_MS, 0);
    }

    #[test]
    fn visitor_ids_are_opaque_and_stable() {
        let mut headers = http::HeaderMap::new();
        headers.insert(header::COOKIE, "theme=dark; lenscap=AbCd".parse().unwrap());
        let id = visitor_id(headers.get_all(header::COOKIE), "lenscap").unwrap();
        assert_eq!(id.len(), 16);
        assert!(!id.contains("AbCd"));
        assert_eq!(visitor_id(headers.get_all(header::COOKIE), "other"), None);
        // The id of the cookie a response sets is the id of the cookie sent back.
        headers.insert(
            header::SET_COOKIE,
            "lenscap=AbCd; Path=/; HttpOnly; SameSite=Lax"
                .parse()
                .unwrap(),
        );
        assert_eq!(
            visitor_id(headers.get_all(header::SET_COOKIE), "lenscap"),
            Some(id)
        );
    }
}
