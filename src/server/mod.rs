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
//! and the content services), `proxy` (the upstream exchange) with `upstream_pool` (its
//! keep-alive connections) and `client_body` (the request body's idle timeout and minimum
//! rate), `connection` (one connection: timeouts, idle timer, shutdown), `descriptors` (the open-file limit and the default connection limit), `admin`
//! (`/metrics`, `/healthz`, `/readyz`), `reload` (file watching), `tls` (rustls and the
//! certificate resolver), `acme` (automatic certificates) with `acme_http` (the plain
//! listener: HTTP-01 answers and the redirect to HTTPS).

pub mod config;

mod access_log;
mod acme;
mod acme_http;
mod admin;
mod agent_keys;
mod body;
mod cache;
mod client_body;
mod connection;
mod dashboard;
mod descriptors;
mod files;
mod gallery;
mod gallery_thumbs;
mod proxy;
mod reload;
mod site;
mod stamped;
mod tls;
mod upstream_pool;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tower_service::Service;

pub use config::{Content, Overrides, Settings, StaticOptions};

use crate::client::{PeerAddr, Tls};
use crate::layer::{LenscapLayer, PolicyHandle, ResponseBody};
use crate::metrics::Metrics;
use crate::policy::EMBEDDED_POLICY;
use crate::settings::{ConfigError, read_file};
use crate::signals::transport::Transport;
use crate::stamp::StampOutcome;
use body::{SiteBody, text_response};
use connection::{Activity, Limits, TrackedBody};
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
    resolve_text(options, &text, &name, base.as_deref())
}

/// Resolves the configuration from `text`, already read from `options.config` (a reload
/// reads the file itself, once it is complete).
pub(crate) fn settings_from_text(
    options: &ServeOptions,
    text: &str,
) -> Result<Settings, ServerError> {
    match &options.config {
        Some(path) => resolve_text(options, text, &path.display().to_string(), path.parent()),
        None => resolve_text(options, text, "embedded policy", None),
    }
}

fn resolve_text(
    options: &ServeOptions,
    text: &str,
    name: &str,
    base: Option<&Path>,
) -> Result<Settings, ServerError> {
    let file: config::ServerFile =
        toml::from_str(text).map_err(|e| ConfigError::toml(name, text, &e))?;
    Settings::resolve(file, text, name, base, &options.overrides)
}

/// The server. See the [module docs](self).
#[derive(Debug)]
pub struct Server;

/// State shared by the connections of one server.
struct Shared {
    router: Router,
    metrics: Metrics,
    ready: AtomicBool,
    /// The access log, when `[server] access_log` is set.
    access_log: Option<access_log::AccessLog>,
    /// The shared store, when `[store] backend = "redis"`.
    fleet: Option<Arc<crate::limit::Fleet>>,
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
    reopen_log: Option<Arc<AtomicBool>>,
}

impl RunningServer {
    /// Makes the access log reopen its file before the next line (what SIGHUP and SIGUSR1
    /// do, for logrotate).
    pub fn reopen_access_log(&self) {
        if let Some(flag) = &self.reopen_log {
            flag.store(true, Ordering::Release);
        }
    }

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
        metrics.set_full_addresses(settings.dashboard_full_addresses);
        let access_log = match &settings.access_log {
            Some(target) => Some(
                access_log::AccessLog::open(target, settings.access_log_buffer, metrics.clone())
                    .map_err(|error| {
                        ServerError::Config(ConfigError::Invalid {
                            source_name: "server.access_log".to_owned(),
                            message: format!("cannot open the access log: {error}"),
                        })
                    })?,
            ),
            None => None,
        };
        // First, so that the raised limit covers every descriptor the server opens.
        let max_connections = connection_limit(&settings);
        let certificates = match (&settings.tls, &settings.acme) {
            (Some((cert, key)), _) => Some(Arc::new(tls::Certificates::with_files(cert, key)?)),
            (None, Some(_)) => Some(Arc::new(tls::Certificates::default())),
            (None, None) => None,
        };
        let tls = match &certificates {
            Some(certificates) => Some(tls::acceptor(
                certificates.clone(),
                settings.acme.is_some(),
            )?),
            None => None,
        };
        let http01 = Arc::new(acme::Http01Answers::default());
        let acme = match (&settings.acme, &certificates) {
            (Some(acme), Some(certificates)) => Some(acme::Acme::new(
                acme.clone(),
                certificates.clone(),
                http01.clone(),
            )?),
            _ => None,
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
        let redirect_listener = match settings.redirect_http {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|error| ServerError::Bind { addr, error })?,
            ),
            None => None,
        };

        let restart_only = settings.restart_only();
        // One connection for every site; kept across reloads (the stores live in the layers).
        let fleet = match &settings.store {
            Some(store) => Some(crate::limit::Fleet::connect(store.clone()).await?),
            None => None,
        };
        let mut sites = Vec::with_capacity(settings.sites.len());
        let mut hosts = Vec::with_capacity(settings.sites.len());
        let mut handles = Vec::with_capacity(settings.sites.len());
        let scheme = if tls.is_some() { "https" } else { "http" };
        for spec in settings.sites {
            let handle = PolicyHandle::new(spec.policy);
            let site_metrics = metrics.site(&spec.name);
            let service = match &spec.content {
                Content::Static(root) => {
                    tracing::info!(
                        target: "lenscap::server",
                        site = %spec.name,
                        "static folder {} is served as {}",
                        root.display(),
                        gallery::mode_of(root, &settings.statics),
                    );
                    SiteService::Static(Arc::new(stamped::StaticSite::new(
                        root,
                        &settings.statics,
                        handle.clone(),
                    )))
                }
                Content::Proxy(origin) => SiteService::Proxy(
                    Arc::new(proxy::Upstream::new(
                        origin,
                        settings.proxy.clone(),
                        handle.clone(),
                        site_metrics.clone(),
                        spec.name.clone(),
                    )),
                    None,
                ),
            };
            let mut layer = LenscapLayer::with_handle(handle.clone());
            if let Some(log) = &access_log {
                // The limiter's clock, read back for each line, so replay sees its times.
                layer = layer
                    .with_clock(access_log::SharedLogClock(log.clock.clone()))
                    .with_decision_slots();
            }
            if let Some(fleet) = &fleet {
                layer = layer
                    .with_store(fleet.store(&spec.name))
                    .with_clock(fleet.clock());
            }
            let layer = layer.with_metrics(&metrics, &spec.name);
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
        let reopen_log = access_log.as_ref().map(|log| log.reopen_flag());
        if let Some(log) = &access_log {
            watch_reopen_signals(log);
        }
        let shared = Arc::new(Shared {
            router: Router::new(sites, hosts, settings.default_site),
            metrics: metrics.clone(),
            ready: AtomicBool::new(true),
            access_log,
            fleet,
        });
        if let Some(addr) = admin_addr {
            tracing::info!(
                target: "lenscap::server",
                "admin: http://{addr}/ (dashboard), /api/summary, /metrics, /healthz, /readyz{}",
                if settings.admin_auth.required() { " (credentials required)" } else { "" }
            );
        }

        let agent_keys_task = agent_keys::spawn(
            handles
                .iter()
                .map(|(_, handle, _)| handle.clone())
                .collect(),
        );
        let reloader = Arc::new(reload::Reloader::new(
            options,
            handles,
            metrics.clone(),
            restart_only,
            certificates.clone(),
            settings.reload_settle_time,
        ));
        let watch_task = if settings.watch {
            reloader.clone().watch()
        } else {
            None
        };
        let certificate_watch = match (&certificates, settings.watch) {
            (Some(certificates), true) => {
                tls::watch_files(certificates.clone(), settings.reload_settle_time)
            }
            _ => None,
        };

        let (stop, stop_rx) = watch::channel(false);
        let limits = Limits {
            header_read_timeout: settings.header_read_timeout,
            max_header_bytes: settings.max_header_bytes,
            grace_period: settings.grace_period,
            idle_timeout: settings.idle_timeout,
            keep_alive_interval: settings.http2_keep_alive_interval,
            keep_alive_timeout: settings.http2_keep_alive_timeout,
            send_timeout: settings.send_timeout,
        };
        let connections = Arc::new(Semaphore::new(max_connections));
        let admin_task = admin_listener.map(|l| {
            let admin = admin::Admin {
                shared: shared.clone(),
                limits,
                connections: Arc::new(Semaphore::new(settings.admin_max_connections)),
                auth: Arc::new(admin::Credentials::new(&settings.admin_auth)),
            };
            tokio::spawn(admin.serve(l, stop_rx.clone()))
        });
        let acme_task = acme.map(|acme| acme.spawn(stop_rx.clone()));
        let redirect_task = redirect_listener.map(|l| {
            if let Ok(addr) = l.local_addr() {
                tracing::info!(target: "lenscap::server", "redirecting http://{addr} to HTTPS");
            }
            tokio::spawn(acme_http::serve(
                l,
                local_addr.port(),
                http01,
                settings.header_read_timeout,
                stop_rx.clone(),
            ))
        });
        let done = tokio::spawn(async move {
            accept_loop(listener, tls, shared, limits, connections, stop_rx).await;
            if let Some(task) = admin_task {
                let _ = task.await;
            }
            for task in [
                watch_task,
                certificate_watch,
                acme_task,
                redirect_task,
                agent_keys_task,
            ]
            .into_iter()
            .flatten()
            {
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
            reopen_log,
        })
    }
}

/// SIGHUP and SIGUSR1 reopen the access log (SIGHUP also reloads the config, elsewhere).
fn watch_reopen_signals(log: &access_log::AccessLog) {
    #[cfg(unix)]
    for kind in [
        tokio::signal::unix::SignalKind::hangup(),
        tokio::signal::unix::SignalKind::user_defined1(),
    ] {
        let Ok(mut signal) = tokio::signal::unix::signal(kind) else {
            tracing::warn!(target: "lenscap::server", "access log: cannot watch signals to reopen it");
            continue;
        };
        let flag = log.reopen_flag();
        tokio::spawn(async move {
            while signal.recv().await.is_some() {
                flag.store(true, Ordering::Release);
            }
        });
    }
    #[cfg(not(unix))]
    let _ = log;
}

/// Raises the open-file limit and decides `max_connections`: the file's value, else what the
/// descriptors leave. Logs both.
fn connection_limit(settings: &Settings) -> usize {
    let open = descriptors::raise();
    let carried = descriptors::max_connections(open.soft, settings.admin_max_connections);
    let (max_connections, source) = if settings.max_connections_set {
        (settings.max_connections, "server.max_connections")
    } else {
        (carried, "derived from the open-file limit")
    };
    let shown =
        |limit: Option<u64>| limit.map_or_else(|| "unlimited".to_owned(), |n| n.to_string());
    tracing::info!(
        target: "lenscap::server",
        soft_before = open.before,
        soft = open.soft,
        hard = open.hard,
        max_connections,
        "descriptor limit: soft {} raised to {} (hard {}); max_connections = {max_connections} ({source})",
        shown(open.before),
        shown(open.soft),
        shown(open.hard),
    );
    if settings.max_connections_set && max_connections > carried {
        tracing::warn!(
            target: "lenscap::server",
            max_connections,
            carried,
            "server.max_connections is more than the open-file limit carries: accepts may fail with \"too many open files\" before the limit is reached"
        );
    }
    max_connections
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
    limits: Limits,
    connections: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) {
    let builder = Arc::new(connection::builder(limits));
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
            let _ = connection::unless(serve, cut_rx.changed()).await;
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
    /// Held while the connection is open: the graceful shutdown waits for it.
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
    let _watcher = context.watcher;
    // Before the first byte (and during a TLS handshake) hyper's timeouts do not run yet.
    let timeout = context.limits.header_read_timeout;
    let activity = Arc::new(Activity::default());
    let kept = KeptUpstream::for_connection(&context.shared);
    let drive = {
        let kept = kept.clone();
        std::future::poll_fn(move |cx| match &kept {
            Some(kept) => kept.0.poll_drive(cx),
            None => std::task::Poll::Pending,
        })
    };
    match tls {
        None => {
            if !connection::first_byte(&stream, timeout, &mut context.stopping).await {
                return;
            }
            let service = connection_service(context.shared, peer, None, activity.clone(), kept);
            connection::serve_driving(
                stream,
                service,
                &context.builder,
                &activity,
                context.limits,
                context.stopping,
                drive,
            )
            .await;
        }
        Some(acceptor) => {
            let stream = tokio::select! {
                accepted = tokio::time::timeout(timeout, acceptor.accept(tls::HelloCopy::on(stream))) => match accepted {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(error)) => {
                        tracing::debug!(target: "lenscap::server", %peer, %error, "TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                },
                _ = context.stopping.changed() => return,
            };
            if stream.get_ref().1.alpn_protocol() == Some(tls::ACME_TLS_ALPN) {
                // A TLS-ALPN-01 validation: the handshake was the whole answer.
                return;
            }
            let mut stream = stream;
            let slot = connection::TransportSlot::new(stream.get_mut().0.take_fingerprint());
            let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
            let stream = connection::H2Opening::on(stream, slot.clone(), h2);
            let service =
                connection_service(context.shared, peer, Some(slot), activity.clone(), kept);
            connection::serve_driving(
                stream,
                service,
                &context.builder,
                &activity,
                context.limits,
                context.stopping,
                drive,
            )
            .await;
        }
    }
}

type ServerResponse = Response<ResponseBody<SiteBody>>;
type TrackedResponse = Response<TrackedBody<ResponseBody<SiteBody>>>;

/// The upstream connection a client connection keeps for its proxied requests (see
/// `upstream_pool`), handed to the proxy with the site's service.
#[derive(Clone)]
pub(crate) struct KeptUpstream(pub(crate) Arc<upstream_pool::Affinity<client_body::ClientBody>>);

impl KeptUpstream {
    /// One for a new connection, when a site is proxied.
    fn for_connection(shared: &Shared) -> Option<Self> {
        let proxies = shared
            .router
            .sites
            .iter()
            .any(|site| matches!(site.service.get_ref(), SiteService::Proxy(..)));
        proxies.then(|| KeptUpstream(upstream_pool::Affinity::new()))
    }
}

/// `transport`: the TLS connection's fingerprints (`None` on plain HTTP); `kept`: the upstream
/// connection this connection keeps, when a site is proxied.
fn connection_service(
    shared: Arc<Shared>,
    peer: SocketAddr,
    transport: Option<Arc<connection::TransportSlot>>,
    activity: Arc<Activity>,
    kept: Option<KeptUpstream>,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = TrackedResponse,
    Error = Infallible,
    Future = impl Future<Output = Result<TrackedResponse, Infallible>> + Send,
> + Clone {
    hyper::service::service_fn(move |request| {
        let transport = transport.as_ref().map(|slot| slot.transport());
        let kept = kept.clone();
        connection::track(
            &activity,
            handle(shared.clone(), peer, transport, kept, request),
        )
    })
}

async fn handle(
    shared: Arc<Shared>,
    peer: SocketAddr,
    transport: Option<Transport>,
    kept: Option<KeptUpstream>,
    mut request: Request<Incoming>,
) -> Result<ServerResponse, Infallible> {
    let tls = transport.is_some();
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
    if let Some(transport) = transport {
        request.extensions_mut().insert(Tls);
        request.extensions_mut().insert(transport);
    }
    let started = Instant::now();
    let (image, pending, refuses) = {
        let policy = site.policy.current.load();
        let pending = shared.access_log.as_ref().map(|log| {
            access_log::LogClock::forget();
            log.begin(&mut request, peer, tls, policy.limits.cookie.name())
        });
        // Whether a request the fleet finds over quota after the fact is refused.
        let refuses =
            policy.mode == crate::policy::Mode::Enforce && policy.limits.rejects_over_quota();
        (policy.is_image_path(request.uri().path()), pending, refuses)
    };
    let mut service = site.service.clone();
    // HTTP/2 streams are served in tasks of their own: only HTTP/1 gains by keeping one.
    if let SiteService::Proxy(_, slot) = service.get_mut()
        && request.version() <= http::Version::HTTP_11
    {
        *slot = kept;
    }
    if let Some(records) = service.prefetch(&request) {
        records.await;
    }
    let static_site = matches!(service.get_ref(), SiteService::Static(_));
    let (future, written) = match &shared.fleet {
        Some(_) => crate::limit::hold_writes(refuses, || service.call(request)),
        None => (service.call(request), None),
    };
    // The layer judged the request inside `call`, on this thread: its clock reading is here.
    let judged_at = shared.access_log.as_ref().map(|log| log.clock.judged_at());
    let (answered, merged) = match written {
        Some(written) => tokio::join!(future, written),
        None => (future.await, crate::limit::Merged::default()),
    };
    let mut response = match answered {
        Ok(response) => response,
        Err(never) => match never {},
    };
    if let Some(wait) = merged.refused_for() {
        // Another instance used the budget up while this one decided: the fleet's merge
        // refused the request after the fact (docs/FLEET.md). Only when enforcing.
        response = over_quota_in_the_fleet(wait);
    }
    if static_site {
        keep_redirect_on_this_host(response.headers_mut());
    }
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
    site.metrics.response(response.status().as_u16());
    if let (Some(log), Some(pending), Some(at)) = (&shared.access_log, pending, judged_at) {
        log.finish(pending, at, site.metrics.name(), &response);
    }
    Ok(response)
}

/// The 429 of a request the fleet's merge refused after the fact, with its `Retry-After`.
fn over_quota_in_the_fleet(wait: Duration) -> ServerResponse {
    let mut response = text_response(
        StatusCode::TOO_MANY_REQUESTS,
        "429 Too Many Requests: over quota.\n",
    )
    .map(ResponseBody::inner);
    let secs = crate::limit::retry_after_secs(wait);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    response
}

/// A static folder's redirect (`/photos` to `/photos/`) is built from the request path, so
/// `//photos` would send the client to `//photos/`, which a browser reads as the host
/// `photos`. The Location keeps one leading slash (backslashes count: browsers read them as
/// slashes).
fn keep_redirect_on_this_host(headers: &mut http::HeaderMap) {
    let Some(location) = headers.get(header::LOCATION) else {
        return;
    };
    let bytes = location.as_bytes();
    if !(bytes.starts_with(b"//") || bytes.starts_with(b"/\\")) {
        return;
    }
    let rest = bytes
        .iter()
        .position(|&b| b != b'/' && b != b'\\')
        .map_or(&[][..], |start| &bytes[start..]);
    let mut local = Vec::with_capacity(rest.len() + 1);
    local.push(b'/');
    local.extend_from_slice(rest);
    match HeaderValue::from_bytes(&local) {
        Ok(value) => {
            headers.insert(header::LOCATION, value);
        }
        Err(_) => {
            headers.remove(header::LOCATION);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_never_leave_the_host() {
        for (given, kept) in [
            ("//photos/", "/photos/"),
            ("///photos/", "/photos/"),
            ("/\\evil.example/", "/evil.example/"),
            ("//", "/"),
            ("/photos/", "/photos/"),
        ] {
            let mut headers = http::HeaderMap::new();
            headers.insert(header::LOCATION, HeaderValue::from_static(given));
            keep_redirect_on_this_host(&mut headers);
            assert_eq!(headers[header::LOCATION], kept, "{given}");
        }
    }
}
