//! The keep-alive connections to one upstream: HTTP/1 senders (hyper's
//! `client::conn::http1`), each checked for readiness before use, reconnected when the
//! upstream closed them, and kept at most `proxy.pool_max_idle` at a time for at most
//! `proxy.pool_idle_timeout`.
//!
//! A request takes the most recently returned idle sender (its connection is the warmest), or
//! connects anew; its response body gives the sender back once the upstream's body has ended
//! ([`PooledSender::release`]), so a connection carries one exchange at a time, as HTTP/1
//! does. A request that a reused connection refused before it was written (the upstream had
//! just closed it while idle) is sent again on another connection, as hyper-util's pool did.
//! This replaces hyper-util's legacy `Client`, whose checkout went through its pool key, a
//! boxed response future and a task spawned per request to wait for the connection to be
//! ready again.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use http_body::Body;

use tower::BoxError;

/// Where an upstream is and how its connections are kept.
#[derive(Clone, Debug)]
pub(crate) struct PoolSettings {
    /// The host as the upstream's address names it (brackets of an IPv6 literal removed).
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) connect_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) max_idle: usize,
    /// The most header fields read in a response head.
    pub(crate) max_headers: usize,
}

/// Why no response came from the upstream.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    /// The TCP connection could not be made.
    #[error("cannot connect to {authority}")]
    Connect {
        /// `host:port`.
        authority: String,
        #[source]
        error: std::io::Error,
    },
    /// The TCP connection took longer than `proxy.connect_timeout`.
    #[error("connecting to {authority} took longer than {timeout:?}")]
    ConnectTimeout {
        /// `host:port`.
        authority: String,
        /// `proxy.connect_timeout`.
        timeout: Duration,
    },
    /// The exchange failed once the connection was there.
    #[error("the exchange with the upstream failed")]
    Exchange(#[source] hyper::Error),
}

impl UpstreamError {
    /// The connection was never made (refused, unreachable, or timed out).
    pub(crate) fn is_connect(&self) -> bool {
        matches!(
            self,
            UpstreamError::Connect { .. } | UpstreamError::ConnectTimeout { .. }
        )
    }

    /// The connection was not made in time (`proxy.connect_timeout`, or the system's own).
    pub(crate) fn is_timeout(&self) -> bool {
        match self {
            UpstreamError::ConnectTimeout { .. } => true,
            UpstreamError::Connect { error, .. } => error.kind() == std::io::ErrorKind::TimedOut,
            UpstreamError::Exchange(_) => false,
        }
    }
}

/// An idle connection's sender, and since when it has been idle.
struct Idle<B> {
    sender: SendRequest<B>,
    since: Instant,
}

/// The idle connections to one upstream.
pub(crate) struct UpstreamPool<B> {
    settings: PoolSettings,
    /// Most recently returned last.
    idle: Mutex<IdleStack<B>>,
}

struct IdleStack<B> {
    senders: Vec<Idle<B>>,
    /// Whether a task is closing connections idle past the timeout.
    reaping: bool,
}

/// A sender taken from the pool (or newly connected) for one exchange.
pub(crate) struct PooledSender<B> {
    sender: SendRequest<B>,
    pool: Arc<UpstreamPool<B>>,
}

impl<B> PooledSender<B>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    /// Gives the connection back for the next request: the response it carried has ended.
    pub(crate) fn release(self) {
        self.pool.put(self.sender);
    }
}

impl<B> UpstreamPool<B> {
    fn lock(&self) -> std::sync::MutexGuard<'_, IdleStack<B>> {
        // The stack stays consistent whatever panicked while it was held.
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<B> UpstreamPool<B>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    pub(crate) fn new(settings: PoolSettings) -> Arc<Self> {
        Arc::new(UpstreamPool {
            settings,
            idle: Mutex::new(IdleStack {
                senders: Vec::new(),
                reaping: false,
            }),
        })
    }

    /// Sends `request` on an idle connection, or a new one; the sender comes back with the
    /// response, for its body to release.
    pub(crate) async fn send(
        self: &Arc<Self>,
        mut request: Request<B>,
    ) -> Result<(Response<Incoming>, PooledSender<B>), UpstreamError> {
        while let Some(mut sender) = self.take_ready().await {
            match sender.try_send_request(request).await {
                Ok(response) => return Ok((response, self.pooled(sender))),
                Err(mut failed) => match failed.take_message() {
                    // Never written: the connection had closed; try the next one.
                    Some(unsent) => request = unsent,
                    None => return Err(UpstreamError::Exchange(failed.into_error())),
                },
            }
        }
        let mut sender = self.connect().await?;
        let response = sender
            .send_request(request)
            .await
            .map_err(UpstreamError::Exchange)?;
        Ok((response, self.pooled(sender)))
    }

    fn pooled(self: &Arc<Self>, sender: SendRequest<B>) -> PooledSender<B> {
        PooledSender {
            sender,
            pool: self.clone(),
        }
    }

    /// The most recent idle sender that is still open and not past the idle timeout.
    async fn take_ready(&self) -> Option<SendRequest<B>> {
        loop {
            let Idle { mut sender, since } = self.lock().senders.pop()?;
            if sender.is_closed() || since.elapsed() > self.settings.idle_timeout {
                continue;
            }
            // A sender comes back when its body ended; its connection may still be finishing
            // the exchange for an instant. It says it is ready, or that it closed.
            if sender.is_ready() || sender.ready().await.is_ok() {
                return Some(sender);
            }
        }
    }

    fn put(self: &Arc<Self>, sender: SendRequest<B>) {
        if sender.is_closed() || self.settings.max_idle == 0 {
            return;
        }
        let start_reaper = {
            let mut idle = self.lock();
            if idle.senders.len() >= self.settings.max_idle {
                // The oldest goes: the newest connections are the ones reused.
                idle.senders.remove(0);
            }
            idle.senders.push(Idle {
                sender,
                since: Instant::now(),
            });
            !std::mem::replace(&mut idle.reaping, true)
        };
        if start_reaper {
            tokio::spawn(reap(Arc::downgrade(self), self.settings.idle_timeout));
        }
    }

    /// A new connection to the upstream, its exchange driven by a task of its own.
    async fn connect(&self) -> Result<SendRequest<B>, UpstreamError> {
        let settings = &self.settings;
        let authority = || format!("{}:{}", settings.host, settings.port);
        let stream = tokio::time::timeout(
            settings.connect_timeout,
            TcpStream::connect((settings.host.as_str(), settings.port)),
        )
        .await
        .map_err(|_| UpstreamError::ConnectTimeout {
            authority: authority(),
            timeout: settings.connect_timeout,
        })?
        .map_err(|error| UpstreamError::Connect {
            authority: authority(),
            error,
        })?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::Builder::new()
            .max_headers(settings.max_headers)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(UpstreamError::Exchange)?;
        tokio::spawn(async move {
            if let Err(error) = connection.with_upgrades().await {
                tracing::debug!(target: "lenscap::proxy", %error, "upstream connection ended");
            }
        });
        Ok(sender)
    }
}

/// Closes connections idle past `timeout`, until none is left idle (the next one returned
/// starts it again) or the pool is gone.
async fn reap<B>(pool: Weak<UpstreamPool<B>>, timeout: Duration) {
    let tick = timeout.max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(tick).await;
        let Some(pool) = pool.upgrade() else { return };
        let mut idle = pool.lock();
        idle.senders
            .retain(|entry| !entry.sender.is_closed() && entry.since.elapsed() <= timeout);
        if idle.senders.is_empty() {
            idle.reaping = false;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::Empty;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn settings(port: u16) -> PoolSettings {
        PoolSettings {
            host: "127.0.0.1".to_owned(),
            port,
            connect_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(60),
            max_idle: 4,
            max_headers: 100,
        }
    }

    /// An upstream answering every request on a connection with `ok`, counting connections;
    /// with `close_after_one`, each connection closes after its first answer.
    async fn upstream(close_after_one: bool) -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut seen = Vec::new();
                    loop {
                        let Ok(n) = stream.read(&mut buf).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        seen.extend_from_slice(&buf[..n]);
                        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            seen.drain(..end + 4);
                            let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            if stream.write_all(reply).await.is_err() {
                                return;
                            }
                            if close_after_one {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (port, accepted)
    }

    type Pool = Arc<UpstreamPool<Empty<Bytes>>>;

    fn request() -> Request<Empty<Bytes>> {
        Request::get("/")
            .header(http::header::HOST, "up")
            .body(Empty::new())
            .unwrap()
    }

    async fn exchange(pool: &Pool) -> String {
        use http_body_util::BodyExt;
        let (response, sender) = pool.send(request()).await.unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        sender.release();
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn one_connection_carries_consecutive_requests() {
        let (port, accepted) = upstream(false).await;
        let pool: Pool = UpstreamPool::new(settings(port));
        for _ in 0..5 {
            assert_eq!(exchange(&pool).await, "ok");
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_connection_the_upstream_closed_is_replaced() {
        let (port, accepted) = upstream(true).await;
        let pool: Pool = UpstreamPool::new(settings(port));
        for _ in 0..3 {
            assert_eq!(exchange(&pool).await, "ok");
            // Let the close reach the idle sender, as it would between visitors.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn idle_connections_past_the_timeout_are_not_reused() {
        let (port, accepted) = upstream(false).await;
        let pool: Pool = UpstreamPool::new(PoolSettings {
            idle_timeout: Duration::from_millis(50),
            ..settings(port)
        });
        assert_eq!(exchange(&pool).await, "ok");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(pool.lock().senders.is_empty(), "the reaper closed it");
        assert_eq!(exchange(&pool).await, "ok");
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn no_more_than_max_idle_are_kept() {
        let (port, _) = upstream(false).await;
        let pool: Pool = UpstreamPool::new(PoolSettings {
            max_idle: 2,
            ..settings(port)
        });
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(pool.send(request()).await.unwrap());
        }
        for (response, sender) in held {
            drop(response);
            sender.release();
        }
        assert_eq!(pool.lock().senders.len(), 2);
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pool: Pool = UpstreamPool::new(settings(port));
        let error = pool.send(request()).await.err().expect("nothing listens");
        assert!(error.is_connect() && !error.is_timeout(), "{error:?}");
        assert!(error.to_string().contains(&format!("127.0.0.1:{port}")));
    }
}
