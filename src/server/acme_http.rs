//! The plain-HTTP listener of an HTTPS server (`server.redirect_http`, usually port 80): it
//! answers ACME HTTP-01 challenges at `/.well-known/acme-challenge/TOKEN` and sends every
//! other request to the same host and path over HTTPS (308, so no method is rewritten). It
//! serves no content and runs no policy: nothing behind it can be harvested.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use super::acme::Http01Answers;
use super::config::host_part;

/// Most connections open at once on the plain listener (it answers in one short response).
const MAX_CONNECTIONS: usize = 1024;
const CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// Serves the plain listener until `stop` changes. `https_port` is the TLS listener's port
/// (left out of the redirect when it is 443).
pub(super) async fn serve(
    listener: TcpListener,
    https_port: u16,
    answers: Arc<Http01Answers>,
    header_read_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(target: "lenscap::server", %error, "accept failed on the redirect listener");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            continue;
        };
        let answers = answers.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let response = answer(&request, https_port, &answers);
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            // A connection that never sends a byte: the header timeout runs only once one comes.
            let deadline = header_read_timeout * 2;
            tokio::select! {
                _ = tokio::time::timeout(deadline, connection) => {}
                _ = stop.changed() => {}
            }
            drop(permit);
        });
    }
}

/// The answer to one plain request.
fn answer(
    request: &Request<Incoming>,
    https_port: u16,
    answers: &Http01Answers,
) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    if let Some(token) = path.strip_prefix(CHALLENGE_PREFIX) {
        return match answers.get(token) {
            Some(key_authorization) => text(StatusCode::OK, key_authorization),
            None => text(StatusCode::NOT_FOUND, "no such challenge\n".into()),
        };
    }
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| request.uri().host())
        .and_then(host_part);
    let Some(host) = host else {
        return text(
            StatusCode::BAD_REQUEST,
            "missing or malformed Host\n".into(),
        );
    };
    let target = request.uri().path_and_query().map_or("/", |p| p.as_str());
    // Never `//host`: the path starts with exactly one slash.
    let target = format!("/{}", target.trim_start_matches(['/', '\\']));
    let location = if https_port == 443 {
        format!("https://{host}{target}")
    } else {
        format!("https://{host}:{https_port}{target}")
    };
    let mut response = text(StatusCode::PERMANENT_REDIRECT, "moved to HTTPS\n".into());
    match HeaderValue::from_str(&location) {
        Ok(value) => {
            response.headers_mut().insert(header::LOCATION, value);
        }
        Err(_) => return text(StatusCode::BAD_REQUEST, "malformed request\n".into()),
    }
    response
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
