//! The Lenscap server: the layer in front of a folder of photos (static gallery mode) or an
//! upstream site (reverse-proxy mode), one or several sites chosen by Host, with an admin
//! listener for metrics and health, hot reload, and graceful shutdown.
//!
//! [`Server::bind`] loads the configuration, binds every listener and returns at once with the
//! bound addresses; the server runs on the current Tokio runtime until
//! [`RunningServer::shutdown`].
//!
//! ```no_run
//! use lenscap::server::{Overrides, ServeOptions, Server};
//!
//! # async fn run() -> Result<(), lenscap::server::ServerError> {
//! let options = ServeOptions {
//!     config: None, // the embedded default policy
//!     overrides: Overrides {
//!         listen: Some("127.0.0.1:0".parse().unwrap()),
//!         admin: Some(None),
//!         root: Some("examples/gallery".into()),
//!         ..Overrides::default()
//!     },
//! };
//! let server = Server::bind(options).await?;
//! println!("serving on http://{}", server.local_addr());
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! Pieces: [`config`] (the `[server]`, `[proxy]`, `[[site]]` tables), `site` (routing by Host
//! and the content services), `proxy` (the upstream client), `admin` (`/metrics`, `/healthz`,
//! `/readyz`), `reload` (file watching), `tls` (rustls).

pub mod config;

mod admin;
mod body;
mod cache;
mod files;
mod proxy;
mod reload;
mod site;
mod stamped;
mod tls;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tower_service::Service;

pub use config::{Content, Overrides, Settings};

use crate::client::{PeerAddr, Tls};
use crate::layer::{LenscapLayer, PolicyHandle, ResponseBody};
use crate::metrics::Metrics;
use crate::policy::EMBEDDED_POLICY;
use crate::settings::{ConfigError, read_file};
use crate::stamp::StampOutcome;
use body::{SiteBody, text_response};
use site::{NoSite, Router, Site, SiteService};

/// Why the server could not start (or a reload was refused).
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The file (its policy or its server tables) or a flag is wrong; the error names the
    /// key and line.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A site's static folder does not exist.
    #[error("site {site:?}: static folder {} does not exist or is not a folder", path.display())]
    MissingRoot {
        /// The site.
        site: String,
        /// The folder.
        path: PathBuf,
    },
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {error}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error (in the message, not chained, so it is reported once).
        error: std::io::Error,
    },
    /// The certificate or key could not be loaded.
    #[error("TLS: {}: {message}", path.display())]
    Tls {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// What to serve: the config file and the command-line overrides.
#[derive(Clone, Debug, Default)]
pub struct ServeOptions {
    /// The policy file (with `[server]`, `[proxy]`, `[[site]]`); `None` is the embedded policy.
    pub config: Option<PathBuf>,
    /// Command-line values that win over the file.
    pub overrides: Overrides,
}

/// Reads and resolves the configuration (used at start-up and on every reload).
pub fn load_settings(options: &ServeOptions) -> Result<Settings, ServerError> {
    let (text, name, base) = match &options.config {
        Some(path) => {
            let text = read_file(path)?;
            (
                text,
                path.display().to_string(),
                path.parent().map(Path::to_path_buf),
            )
        }
        None => (
            EMBEDDED_POLICY.to_owned(),
            "embedded policy".to_owned(),
            None,
        ),
    };
    let file: config::ServerFile =
        toml::from_str(&text).map_err(|e| ConfigError::toml(&name, &text, &e))?;
    Settings::resolve(file, &text, &name, base.as_deref(), &options.overrides)
}

/// The server. See the [module docs](self).
#[derive(Debug)]
pub struct Server;

/// State shared by the connections of one server.
struct Shared {
    router: Router,
    metrics: Metrics,
    ready: AtomicBool,
}

/// A server that is running; dropping it does not stop it (call [`shutdown`](Self::shutdown)).
#[derive(Debug)]
pub struct RunningServer {
    local_addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    done: JoinHandle<()>,
    reloader: Arc<reload::Reloader>,
    metrics: Metrics,
}

impl RunningServer {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address of the admin listener, if any.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Reloads the config file now (what SIGHUP does): on success the sites' policies are
    /// swapped; on error the running policies stay and the error is returned (and logged).
    pub async fn reload(&self) -> Result<(), ServerError> {
        self.reloader.reload().await
    }

    /// A handle that reloads this server's config (for a SIGHUP handler).
    pub fn reload_handle(&self) -> ReloadHandle {
        ReloadHandle {
            reloader: self.reloader.clone(),
        }
    }

    /// Stops accepting, lets in-flight requests finish within the grace period, then returns.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.done.await;
    }

    /// A handle that starts the graceful shutdown (for a signal handler).
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle {
            stop: self.stop.clone(),
        }
    }

    /// Waits for the server to finish (after a [`StopHandle::stop`]).
    pub async fn wait(self) {
        let _ = self.done.await;
    }
}

/// Reloads a running server's config file.
#[derive(Clone, Debug)]
pub struct ReloadHandle {
    reloader: Arc<reload::Reloader>,
}

impl ReloadHandle {
    /// Same as [`RunningServer::reload`].
    pub async fn reload(&self) -> Result<(), ServerError> {
        self.reloader.reload().await
    }
}

/// Asks a running server to shut down gracefully (for signal handlers).
#[derive(Clone, Debug)]
pub struct StopHandle {
    stop: watch::Sender<bool>,
}

impl StopHandle {
    /// Starts the graceful shutdown.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

impl Server {
    /// Loads the configuration, binds the listeners and starts serving on the current Tokio
    /// runtime. Every configuration problem (a bad key, a missing static folder, an address in
    /// use, an unreadable certificate) is an error here, before anything is served.
    pub async fn bind(options: ServeOptions) -> Result<RunningServer, ServerError> {
        let mut settings = load_settings(&options)?;
        proxy::merge_upstream_robots(&mut settings).await;
        Server::bind_settings(settings, options).await
    }

    async fn bind_settings(
        settings: Settings,
        options: ServeOptions,
    ) -> Result<RunningServer, ServerError> {
        let metrics = Metrics::new();
        let tls = match &settings.tls {
            Some((cert, key)) => Some(tls::acceptor(cert, key)?),
            None => None,
        };
        let listener =
            TcpListener::bind(settings.listen)
                .await
                .map_err(|error| ServerError::Bind {
                    addr: settings.listen,
                    error,
                })?;
        let local_addr = listener.local_addr().map_err(|error| ServerError::Bind {
            addr: settings.listen,
            error,
        })?;
        let admin_listener = match settings.admin {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|error| ServerError::Bind { addr, error })?,
            ),
            None => None,
        };
        let admin_addr = admin_listener.as_ref().and_then(|l| l.local_addr().ok());

        let mut sites = Vec::with_capacity(settings.sites.len());
        let mut hosts = Vec::with_capacity(settings.sites.len());
        let mut handles = Vec::with_capacity(settings.sites.len());
        let scheme = if tls.is_some() { "https" } else { "http" };
        for spec in settings.sites {
            let handle = PolicyHandle::new(spec.policy);
            let site_metrics = metrics.site(&spec.name);
            let service = match &spec.content {
                Content::Static(root) => {
                    SiteService::Static(Arc::new(stamped::StaticSite::new(root)))
                }
                Content::Proxy(origin) => SiteService::Proxy(Arc::new(proxy::Upstream::new(
                    origin,
                    settings.proxy.clone(),
                    handle.clone(),
                    site_metrics.clone(),
                    spec.name.clone(),
                ))),
            };
            let layer =
                LenscapLayer::with_handle(handle.clone()).with_metrics(&metrics, &spec.name);
            let service = tower_layer::Layer::layer(&layer, service);
            let served_hosts = if spec.hosts.is_empty() {
                "any host".to_owned()
            } else {
                spec.hosts.join(", ")
            };
            tracing::info!(
                target: "lenscap::server",
                site = %spec.name,
                "serving {} for {served_hosts} at {scheme}://{local_addr} (policy: {})",
                spec.content,
                handle.load().mode().as_str(),
            );
            handles.push((spec.name.clone(), handle.clone(), spec.content.clone()));
            hosts.push(spec.hosts);
            sites.push(Site {
                policy: handle,
                service,
                metrics: site_metrics,
                evictions_seen: Default::default(),
            });
        }
        let shared = Arc::new(Shared {
            router: Router::new(sites, hosts, settings.default_site),
            metrics: metrics.clone(),
            ready: AtomicBool::new(true),
        });
        if let Some(addr) = admin_addr {
            tracing::info!(
                target: "lenscap::server",
                "admin: http://{addr}/metrics, /healthz, /readyz"
            );
        }

        let reloader = Arc::new(reload::Reloader::new(options, handles, metrics.clone()));
        let watch_task = if settings.watch {
            reloader.clone().watch()
        } else {
            None
        };

        let (stop, stop_rx) = watch::channel(false);
        let limits = Limits {
            header_read_timeout: settings.header_read_timeout,
            max_header_bytes: settings.max_header_bytes,
            grace_period: settings.grace_period,
        };
        let connections = Arc::new(Semaphore::new(settings.max_connections));
        let admin_task =
            admin_listener.map(|l| tokio::spawn(admin::serve(l, shared.clone(), stop_rx.clone())));
        let done = tokio::spawn(async move {
            accept_loop(listener, tls, shared, limits, connections, stop_rx).await;
            if let Some(task) = admin_task {
                let _ = task.await;
            }
            if let Some(task) = watch_task {
                task.abort();
            }
        });
        Ok(RunningServer {
            local_addr,
            admin_addr,
            stop,
            done,
            reloader,
            metrics,
        })
    }
}

#[derive(Clone, Copy)]
struct Limits {
    header_read_timeout: Duration,
    max_header_bytes: usize,
    grace_period: Duration,
}

fn builder(limits: Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // hyper's smallest read buffer is 8 KiB; a request head must fit in it.
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(256);
    builder
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
    limits: Limits,
    connections: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) {
    let builder = Arc::new(builder(limits));
    let graceful = GracefulShutdown::new();
    // Connections still open when the grace period ends are cut through this.
    let (cut, cut_rx) = watch::channel(false);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(target: "lenscap::server", %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            shared.metrics.connection_rejected();
            tracing::debug!(target: "lenscap::server", %peer, "connection limit reached; closed");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let watcher = graceful.watcher();
        let shared = shared.clone();
        let builder = builder.clone();
        let tls = tls.clone();
        let mut cut_rx = cut_rx.clone();
        let stopping = stop.clone();
        tokio::spawn(async move {
            shared.metrics.connection_opened();
            let context = Connection {
                shared: shared.clone(),
                builder,
                watcher,
                limits,
                stopping,
            };
            let serve = serve_connection(stream, peer, tls, context);
            tokio::select! {
                _ = serve => {}
                _ = cut_rx.changed() => {}
            }
            shared.metrics.connection_closed();
            drop(permit);
        });
    }
    drop(listener);
    shared.ready.store(false, Ordering::Relaxed);
    tracing::info!(
        target: "lenscap::server",
        grace_ms = limits.grace_period.as_millis() as u64,
        "shutting down: finishing in-flight requests"
    );
    let open = graceful.count();
    match tokio::time::timeout(limits.grace_period, graceful.shutdown()).await {
        Ok(()) => tracing::info!(target: "lenscap::server", connections = open, "stopped"),
        Err(_) => {
            let _ = cut.send(true);
            tracing::warn!(
                target: "lenscap::server",
                "grace period over: remaining connections cut"
            );
        }
    }
}

/// What one connection's task needs.
struct Connection {
    shared: Arc<Shared>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    watcher: hyper_util::server::graceful::Watcher,
    limits: Limits,
    /// Changes when shutdown starts.
    stopping: watch::Receiver<bool>,
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut context: Connection,
) {
    // hyper's header-read timeout starts once it reads a request head; before that (and
    // during a TLS handshake) a silent client would hold the connection forever, and hold
    // up a graceful shutdown.
    let timeout = context.limits.header_read_timeout;
    match tls {
        None => {
            let mut probe = [0u8; 1];
            tokio::select! {
                peeked = tokio::time::timeout(timeout, stream.peek(&mut probe)) => match peeked {
                    Ok(Ok(n)) if n > 0 => {}
                    _ => return,
                },
                _ = context.stopping.changed() => return,
            }
            let service = connection_service(context.shared, peer, false);
            let conn = context
                .builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service);
            let _ = context.watcher.watch(conn.into_owned()).await;
        }
        Some(acceptor) => {
            let stream = tokio::select! {
                accepted = tokio::time::timeout(timeout, acceptor.accept(stream)) => match accepted {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(error)) => {
                        tracing::debug!(target: "lenscap::server", %peer, %error, "TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                },
                _ = context.stopping.changed() => return,
            };
            let service = connection_service(context.shared, peer, true);
            let conn = context
                .builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service);
            let _ = context.watcher.watch(conn.into_owned()).await;
        }
    }
}

type ServerResponse = Response<ResponseBody<SiteBody>>;

fn connection_service(
    shared: Arc<Shared>,
    peer: SocketAddr,
    tls: bool,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = ServerResponse,
    Error = Infallible,
    Future = impl Future<Output = Result<ServerResponse, Infallible>> + Send,
> + Clone {
    hyper::service::service_fn(move |request| handle(shared.clone(), peer, tls, request))
}

async fn handle(
    shared: Arc<Shared>,
    peer: SocketAddr,
    tls: bool,
    mut request: Request<Incoming>,
) -> Result<ServerResponse, Infallible> {
    let site = match shared.router.route(&request) {
        Ok(site) => site,
        Err(NoSite::BadHost) => {
            tracing::debug!(target: "lenscap::server", %peer, "missing or malformed Host: 400");
            return Ok(text_response(
                StatusCode::BAD_REQUEST,
                "400 Bad Request: missing or malformed Host header.\n",
            )
            .map(ResponseBody::inner));
        }
        Err(NoSite::Unknown) => {
            tracing::debug!(target: "lenscap::server", %peer, "no site for this Host: 421");
            return Ok(text_response(
                StatusCode::MISDIRECTED_REQUEST,
                "421 Misdirected Request: this server has no site by that name.\n",
            )
            .map(ResponseBody::inner));
        }
    };
    request.extensions_mut().insert(PeerAddr(peer));
    if tls {
        request.extensions_mut().insert(Tls);
    }
    let started = Instant::now();
    let image = site
        .policy
        .current
        .load()
        .is_image_path(request.uri().path());
    let mut service = site.service.clone();
    let response = match service.call(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    site.metrics.observe_latency(started.elapsed());
    if image && response.status().is_success() {
        site.metrics.image_served();
    }
    match response.extensions().get::<StampOutcome>() {
        Some(StampOutcome::Stamped) => site.metrics.image_stamped(),
        Some(StampOutcome::Scrubbed) => site.metrics.image_scrubbed(),
        Some(StampOutcome::Both) => {
            site.metrics.image_stamped();
            site.metrics.image_scrubbed();
        }
        Some(StampOutcome::PassedThrough(_)) | None => {}
    }
    Ok(response)
}
