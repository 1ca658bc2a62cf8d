//! Helpers for the suites that drive the real server in-process: start it on loopback ports
//! from a policy text, GET through a real HTTP/1.1 client with a browser's headers, read its
//! metrics, and talk raw bytes to it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use lenscap::server::{Overrides, RunningServer, ServeOptions, Server, ServerError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Answer;

/// Firefox on Linux.
pub const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

/// Only keeps a broken build from hanging; never a statement about speed.
pub const GUARD: Duration = Duration::from_secs(20);

/// The server with `config` (written to `dir/lenscap.toml`) on an ephemeral loopback port,
/// its admin listener on another, serving `root` when given.
pub async fn start_server(
    dir: &Path,
    config: &str,
    root: Option<PathBuf>,
) -> Result<RunningServer, ServerError> {
    let path = dir.join("lenscap.toml");
    std::fs::write(&path, config).unwrap();
    Server::bind(ServeOptions {
        config: Some(path),
        overrides: Overrides {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            admin: Some(Some("127.0.0.1:0".parse().unwrap())),
            root,
            ..Overrides::default()
        },
    })
    .await
}

/// GET through a real HTTP/1.1 client with Firefox's headers and `accept`, plus `extra`
/// (which replace a header of the same name).
pub async fn browser_get(
    addr: SocketAddr,
    path: &str,
    accept: &str,
    extra: &[(&str, &str)],
) -> Answer {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut request = Request::get(format!("http://{addr}{path}"))
        .header("user-agent", FIREFOX)
        .header("accept", accept)
        .header("accept-language", "en-GB,en;q=0.8")
        .header("accept-encoding", "gzip, deflate, br")
        .body(Empty::new())
        .unwrap();
    for (name, value) in extra {
        let name = http::HeaderName::from_bytes(name.as_bytes()).unwrap();
        request
            .headers_mut()
            .insert(name, http::HeaderValue::from_str(value).unwrap());
    }
    let response = tokio::time::timeout(GUARD, client.request(request))
        .await
        .expect("guard")
        .expect("response");
    let status = response.status();
    let headers = response.headers().clone();
    let body = tokio::time::timeout(GUARD, response.into_body().collect())
        .await
        .expect("guard")
        .expect("body")
        .to_bytes();
    Answer {
        status,
        headers,
        body,
    }
}

/// The admin listener's `/metrics` text.
pub async fn metrics(server: &RunningServer) -> String {
    let addr = server.admin_addr().expect("admin listener");
    let answer = browser_get(addr, "/metrics", "*/*", &[]).await;
    assert_eq!(answer.status, StatusCode::OK);
    String::from_utf8(answer.body.to_vec()).unwrap()
}

/// The value of the first metric line starting with `prefix`, or 0.
pub fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Reads until the peer closes; `None` when it is still open at the guard.
pub async fn read_until_closed(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    match tokio::time::timeout(GUARD, stream.read_to_end(&mut out)).await {
        Ok(_) => Some(out),
        Err(_) => None,
    }
}

/// Sends raw bytes and reads until the peer closes (or the guard fires).
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let out = read_until_closed(&mut stream).await.unwrap_or_default();
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads one head (up to the blank line) from `stream`.
pub async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}
