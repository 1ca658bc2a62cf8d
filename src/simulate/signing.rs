//! Signing profiles: a Web Bot Auth key made for the run, its key directory served on a
//! loopback address for the run's length, and the signature headers of each request.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use tokio::task::JoinHandle;

use super::profile::ProfileSettings;
use crate::signals::web_bot_auth::{DIRECTORY_MEDIA_TYPE, Signer, Signing};

/// How long each signature is valid.
const VALIDITY_SECS: u64 = 60;
/// How long a run waits for the target to fetch a configured key directory: a target started
/// before the run found the directory closed and tries again 5 s later (plus its half-second
/// tick and the fetch), so the wait spans that retry with room to spare.
pub(crate) const FETCH_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// A profile's signer and the task serving its key directory (ended on drop).
#[derive(Debug)]
pub(crate) struct AgentSigning {
    signer: Signer,
    origin: String,
    directory: JoinHandle<()>,
    /// Whether the directory was fetched yet.
    fetched: tokio::sync::watch::Receiver<bool>,
    /// The directory's address was given (the target is configured to fetch it).
    configured: bool,
}

impl Drop for AgentSigning {
    fn drop(&mut self) {
        self.directory.abort();
    }
}

impl AgentSigning {
    /// Makes a key and serves its directory on `settings.key_directory` (a free loopback port
    /// without one). Must run inside the runtime.
    pub(crate) fn start(settings: &ProfileSettings) -> Result<AgentSigning, String> {
        let wanted = settings
            .key_directory
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        if !wanted.ip().is_loopback() {
            return Err(format!(
                "{}: key_directory {wanted} is not a loopback address",
                settings.kind
            ));
        }
        let listener = std::net::TcpListener::bind(wanted)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .and_then(tokio::net::TcpListener::from_std)
            .map_err(|e| format!("{}: key directory on {wanted}: {e}", settings.kind))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("{}: key directory: {e}", settings.kind))?;
        let origin = format!("http://{addr}");
        let signer = Signer::generate(Some(&origin))?;
        let (fetched_tx, fetched) = tokio::sync::watch::channel(false);
        let directory = tokio::spawn(serve_directory(listener, signer.directory(), fetched_tx));
        tracing::info!(
            target: "lenscap::simulate",
            profile = %settings.kind,
            directory = %origin,
            "signing as {origin}: list it in [web_bot_auth] directories (allow_insecure_loopback = true)"
        );
        Ok(AgentSigning {
            signer,
            origin,
            directory,
            fetched,
            configured: settings.key_directory.is_some(),
        })
    }

    /// A real agent publishes its directory before it crawls: when the target was told where
    /// it is (`key_directory` set), waits until it has fetched it, at most [`FETCH_WAIT`].
    /// Whether it did.
    pub(crate) async fn published(&self) -> bool {
        if !self.configured {
            return true;
        }
        let mut fetched = self.fetched.clone();
        tokio::time::timeout(FETCH_WAIT, fetched.wait_for(|f| *f))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// The `Signature-Agent` origin.
    pub(crate) fn origin(&self) -> &str {
        &self.origin
    }

    /// The signature headers for a request to `authority`, covering `offer` when given (the
    /// caller sends the offer header itself).
    pub(crate) fn headers(
        &self,
        authority: &str,
        offer: Option<(&'static str, &'static str)>,
    ) -> Vec<(&'static str, String)> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let nonce = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
        let covered: Vec<(&str, &str)> = offer.into_iter().collect();
        self.signer
            .sign(&Signing {
                authority,
                created: now,
                expires: now + VALIDITY_SECS,
                nonce: Some(&nonce),
                covered: &covered,
            })
            .unwrap_or_default()
    }
}

async fn serve_directory(
    listener: tokio::net::TcpListener,
    jwks: String,
    fetched: tokio::sync::watch::Sender<bool>,
) {
    let body = Bytes::from(jwks);
    let fetched = std::sync::Arc::new(fetched);
    while let Ok((stream, _)) = listener.accept().await {
        let body = body.clone();
        let fetched = fetched.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |_request| {
                fetched.send_replace(true);
                let response = http::Response::builder()
                    .header(http::header::CONTENT_TYPE, DIRECTORY_MEDIA_TYPE)
                    .header(http::header::CACHE_CONTROL, "max-age=300")
                    .body(Full::new(body.clone()))
                    .expect("static response");
                async move { Ok::<_, Infallible>(response) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}
