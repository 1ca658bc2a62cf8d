//! `lenscap serve` (and `lenscap` with no command): the server, until SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::server::{Overrides, ServeOptions, Server};

/// Log line format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum LogFormat {
    /// One readable line per event.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Default, clap::Args)]
pub(super) struct Args {
    /// Policy file with optional [server], [proxy] and [[site]] tables (default: the embedded
    /// policy).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address to listen on, host and port: 127.0.0.1:8081 (this machine only) or
    /// 0.0.0.0:8081 (every interface). Default: server.listen, else 127.0.0.1:8080.
    #[arg(long, value_parser = listen_address)]
    listen: Option<SocketAddr>,
    /// Admin address for /metrics, /healthz, /readyz, or `off` (default 127.0.0.1:9090).
    #[arg(long)]
    admin: Option<String>,
    /// Serve this folder of pages and photos (default: the demo gallery).
    #[arg(long = "static", value_name = "DIR", conflicts_with = "upstream")]
    root: Option<PathBuf>,
    /// Proxy to this upstream origin, e.g. http://127.0.0.1:3000.
    #[arg(long, value_name = "URL")]
    upstream: Option<String>,
    /// Log format; the level comes from RUST_LOG (default info).
    #[arg(long, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
}

/// `--listen`: a bare port is refused with both forms it could have meant.
fn listen_address(text: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = text.trim().trim_start_matches(':').parse::<u16>() {
        return Err(format!(
            "a port alone does not say where to listen: use --listen 127.0.0.1:{port} (this machine only) or --listen 0.0.0.0:{port} (every interface)"
        ));
    }
    crate::server::config::parse_listen(text)
}

/// The bundled demo gallery: `examples/gallery` under the current folder, else under the
/// source tree this binary was built from.
fn demo_gallery() -> PathBuf {
    let here = PathBuf::from("examples/gallery");
    if here.is_dir() {
        return here;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/gallery")
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Logs go to standard error (standard output may carry the access log), with colour
    // codes only when a person is watching a terminal.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

pub(super) fn run(args: Args) -> anyhow::Result<ExitCode> {
    init_logging(args.log_format);
    let admin = match args.admin.as_deref() {
        None => None,
        Some("off") | Some("") => Some(None),
        Some(text) => Some(Some(text.parse::<SocketAddr>().with_context(|| {
            format!("--admin {text:?}: expected an address like 127.0.0.1:9090, or off")
        })?)),
    };
    let options = ServeOptions {
        config: args.config,
        overrides: Overrides {
            listen: args.listen,
            admin,
            root: args.root,
            upstream: args.upstream,
            fallback_root: Some(demo_gallery()),
        },
    };
    let runtime = runtime()?;
    runtime.block_on(async move {
        // Before the listeners open: a SIGHUP that comes as soon as the port answers (a
        // `systemctl reload` right after start) must reload, not kill the process.
        #[cfg(unix)]
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("installing the SIGHUP handler")?;
        let server = Server::bind(options).await?;
        let stop = server.stop_handle();
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!(target: "lenscap::server", "shutdown signal received");
            stop.stop();
        });
        #[cfg(unix)]
        {
            let reload = server.reload_handle();
            tokio::spawn(async move {
                while hangup.recv().await.is_some() {
                    tracing::info!(target: "lenscap::reload", "SIGHUP: reloading the config");
                    let _ = reload.reload().await;
                }
            });
        }
        server.wait().await;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => return ctrl_c.await.unwrap_or(()),
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// The Tokio runtime the server runs on: with one worker (`TOKIO_WORKER_THREADS=1`, or a
/// process allowed one core), Tokio's single-threaded scheduler, which runs every task on
/// this thread and skips what a pool of one pays for (handing work between the pool's
/// thread and this one, the work-stealing queues); with more, the multi-threaded one, with
/// `TOKIO_WORKER_THREADS` workers (default: one per core).
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = match worker_threads(std::env::var("TOKIO_WORKER_THREADS").ok())? {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(workers) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(workers);
            builder
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    builder
        .enable_all()
        .build()
        .context("starting the Tokio runtime")
}

/// How many worker threads: `TOKIO_WORKER_THREADS` when set, else one when the process may
/// use only one core (`taskset`, a container's CPU set), else `None` (one per core).
fn worker_threads(variable: Option<String>) -> anyhow::Result<Option<usize>> {
    if let Some(text) = variable {
        return match text.trim().parse::<usize>() {
            Ok(workers) if workers > 0 => Ok(Some(workers)),
            _ => anyhow::bail!(
                "TOKIO_WORKER_THREADS={text:?}: expected a whole number of worker threads, 1 or more"
            ),
        };
    }
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    Ok((cores == 1).then_some(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_listen_port_shows_both_full_forms() {
        let error = listen_address("8081").unwrap_err();
        assert!(
            error.contains("--listen 127.0.0.1:8081") && error.contains("--listen 0.0.0.0:8081"),
            "{error}"
        );
        assert_eq!(
            listen_address("0.0.0.0:8081").unwrap(),
            "0.0.0.0:8081".parse::<SocketAddr>().unwrap()
        );
        assert!(
            listen_address("localhost")
                .unwrap_err()
                .contains("127.0.0.1:8080")
        );
    }

    #[test]
    fn worker_threads_come_from_the_variable_or_the_cores() {
        assert_eq!(worker_threads(Some("1".into())).unwrap(), Some(1));
        assert_eq!(worker_threads(Some(" 4 ".into())).unwrap(), Some(4));
        for bad in ["0", "two", "-1", ""] {
            let error = worker_threads(Some(bad.into())).unwrap_err().to_string();
            assert!(error.contains("TOKIO_WORKER_THREADS"), "{bad}: {error}");
        }
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        assert_eq!(worker_threads(None).unwrap(), (cores == 1).then_some(1));
    }
}
