//! The attack suite: the real server (in-process, or the built binary where a process-wide
//! setting or its log is under test) on loopback ports, driven by raw sockets through each
//! hostile or careless case of issue 12, asserting the answer a user would see.
//!
//! Bounded: every count is small, every timeout under test is configured short (a few hundred
//! milliseconds) and every wait is a poll until a deadline ([`GUARD`]) that only keeps a broken
//! build from hanging. Nothing asserts how fast anything is.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use lenscap::server::RunningServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

mod common;

use common::Answer;
use common::server::{
    FIREFOX, GUARD, browser_get, metric, metrics, raw_exchange, read_head, read_until_closed,
    start_server,
};

const GPTBOT: &str = "Mozilla/5.0 (compatible; GPTBot/1.2; +https://openai.com/gptbot)";
/// Short timeouts for the server under test, so the suite stays fast.
const SHORT: &str = "300ms";

// === helpers ===

fn scratch(name: &str) -> PathBuf {
    common::scratch("attacks", name)
}

/// A static root with a page, a photo, a folder and a file larger than an HTTP/2 window.
fn static_root(dir: &Path) -> PathBuf {
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("photos")).unwrap();
    std::fs::write(root.join("index.html"), "<h1>The Crown</h1>").unwrap();
    std::fs::write(root.join("photos/a.jpg"), b"\xFF\xD8\xFF\xE0jpeg").unwrap();
    std::fs::write(root.join("big.bin"), vec![7u8; 1024 * 1024]).unwrap();
    root
}

async fn start(dir: &Path, config: &str) -> RunningServer {
    start_server(dir, config, None).await.unwrap()
}

/// GET through a real HTTP/1.1 client with browser-like headers (plus `extra`, which win).
async fn get(addr: SocketAddr, path: &str, extra: &[(&str, &str)]) -> Answer {
    browser_get(addr, path, "*/*", extra).await
}

const OPEN: &str = "lenscap_connections_open ";
const RELOAD_OK: &str = "lenscap_config_reloads_total{result=\"ok\"}";
const RELOAD_ERROR: &str = "lenscap_config_reloads_total{result=\"error\"}";

/// Polls the server's metrics until `done` says yes; fails with `what` at the guard.
async fn wait_for_metrics(server: &RunningServer, what: &str, done: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + GUARD;
    loop {
        let text = metrics(server).await;
        if done(&text) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}; metrics:\n{text}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A request head a browser could send over plain HTTP/1.1, with `extra` header lines.
fn browser_head(method: &str, path: &str, extra: &str) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nhost: x\r\nuser-agent: {FIREFOX}\r\naccept: */*\r\naccept-language: en\r\naccept-encoding: gzip\r\n{extra}\r\n"
    )
}

/// The value of `content-length` in a head, or 0.
fn content_length(head: &str) -> usize {
    head.lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0)
}

/// An upstream that reads each request head and answers with `reply(head)`; `None` reads
/// what it is sent and never answers. It has no robots.txt. Counts the connections that
/// carried a proxied request and were closed.
async fn upstream(
    reply: impl Fn(&str) -> Option<Vec<u8>> + Send + Sync + 'static,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let closed = Arc::new(AtomicUsize::new(0));
    let reply = Arc::new(reply);
    let counter = closed.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let reply = reply.clone();
            let closed = counter.clone();
            tokio::spawn(async move {
                let mut proxied = false;
                while let Some(head) = read_head(&mut stream).await {
                    // The robots.txt fetched at start-up: none here.
                    let answer = if head.starts_with("GET /robots.txt ") {
                        Some(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n".to_vec())
                    } else {
                        proxied = true;
                        reply(&head)
                    };
                    match answer {
                        Some(bytes) => {
                            if stream.write_all(&bytes).await.is_err() {
                                break;
                            }
                        }
                        None => {
                            // Reads what it is sent until the client goes away.
                            let mut buf = [0u8; 256];
                            while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
                            break;
                        }
                    }
                }
                if proxied {
                    closed.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    (addr, closed)
}

/// Echoes the request head as the body.
fn echo(head: &str) -> Option<Vec<u8>> {
    Some(
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{head}",
            head.len()
        )
        .into_bytes(),
    )
}

fn proxy_config(upstream: SocketAddr, extra: &str) -> String {
    format!("[server]\nupstream = \"http://{upstream}\"\n{extra}\n")
}

// === HTTP/2 frames, written by hand ===

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A HPACK literal header field with an indexed name, not added to the table.
fn literal(name_index: u8, value: &str) -> Vec<u8> {
    let mut out = vec![name_index & 0x0f, value.len() as u8];
    if name_index >= 15 {
        out = vec![0x0f, name_index - 15, value.len() as u8];
    }
    out.extend_from_slice(value.as_bytes());
    out
}

/// The header block of a browser-like `GET path`.
fn h2_get_block(path: &str) -> Vec<u8> {
    let mut block = vec![0x82, 0x86]; // :method GET, :scheme http
    block.extend(literal(4, path)); // :path
    block.extend(literal(1, "x")); // :authority
    block.extend(literal(58, FIREFOX)); // user-agent
    block.extend(literal(19, "*/*")); // accept
    block.extend(literal(17, "en")); // accept-language
    block.extend(literal(16, "gzip")); // accept-encoding
    block
}

const HEADERS: u8 = 0x1;
const SETTINGS: u8 = 0x4;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

// === 1. idle HTTP/2 connections ===

fn h2_config(root: &Path) -> String {
    format!(
        "[server]\nroot = {root:?}\nheader_read_timeout = \"{SHORT}\"\nidle_timeout = \"{SHORT}\"\n\
         http2_keep_alive_interval = \"{SHORT}\"\nhttp2_keep_alive_timeout = \"{SHORT}\"\n\
         [limits]\nenabled = false\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_preface_then_silence_is_closed() {
    let dir = scratch("h2-silence");
    let server = start(&dir, &h2_config(&static_root(&dir))).await;
    let mut stream = TcpStream::connect(server.local_addr()).await.unwrap();
    stream.write_all(PREFACE).await.unwrap();
    stream.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
    assert!(
        read_until_closed(&mut stream).await.is_some(),
        "a silent HTTP/2 connection is still open"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_unfinished_headers_are_closed() {
    let dir = scratch("h2-headers");
    let server = start(&dir, &h2_config(&static_root(&dir))).await;
    let mut stream = TcpStream::connect(server.local_addr()).await.unwrap();
    stream.write_all(PREFACE).await.unwrap();
    stream.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
    // HEADERS without END_HEADERS: the CONTINUATION it promises never comes.
    let block = h2_get_block("/");
    stream
        .write_all(&frame(HEADERS, END_STREAM, 1, &block[..block.len() / 2]))
        .await
        .unwrap();
    assert!(
        read_until_closed(&mut stream).await.is_some(),
        "an HTTP/2 connection with an unfinished header block is still open"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_a_response_never_read_is_closed() {
    let dir = scratch("h2-unread");
    let server = start(&dir, &h2_config(&static_root(&dir))).await;
    let mut stream = TcpStream::connect(server.local_addr()).await.unwrap();
    stream.write_all(PREFACE).await.unwrap();
    stream.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
    stream
        .write_all(&frame(
            HEADERS,
            END_STREAM | END_HEADERS,
            1,
            &h2_get_block("/big.bin"),
        ))
        .await
        .unwrap();
    // One MiB cannot pass the 64 KiB window this client never opens, nor does it read or
    // answer pings: the stream stays open until the connection is cut.
    wait_for_metrics(&server, "the unread HTTP/2 connection is still open", |m| {
        metric(m, OPEN) == 0.0
    })
    .await;
    drop(stream);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_an_idle_connection_that_answers_pings_is_closed() {
    let dir = scratch("h2-idle");
    let server = start(&dir, &h2_config(&static_root(&dir))).await;
    // A real HTTP/2 client: it acknowledges pings, so only the idle timer can close it.
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .pool_idle_timeout(Duration::from_secs(600))
        .build_http::<Empty<Bytes>>();
    let request = Request::get(format!("http://{}/", server.local_addr()))
        .header("user-agent", FIREFOX)
        .header("accept", "*/*")
        .header("accept-language", "en")
        .header("accept-encoding", "gzip")
        .body(Empty::new())
        .unwrap();
    let response = tokio::time::timeout(GUARD, client.request(request))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.into_body().collect().await.unwrap();
    wait_for_metrics(&server, "the idle HTTP/2 connection is still open", |m| {
        metric(m, OPEN) == 0.0
    })
    .await;
    drop(client);
    server.shutdown().await;
}

/// `config` (from [`h2_config`]) with a short send timeout.
fn with_send_timeout(config: &str) -> String {
    config.replace("[limits]", &format!("send_timeout = \"{SHORT}\"\n[limits]"))
}

/// A client that asks for a large answer and never reads it: the server's writes stall.
async fn never_read(server: &RunningServer, request: &[u8]) {
    let mut stream = TcpStream::connect(server.local_addr()).await.unwrap();
    stream.write_all(request).await.unwrap();
    wait_for_metrics(
        server,
        "the connection whose answer is never read is still open",
        |m| metric(m, OPEN) == 0.0,
    )
    .await;
    drop(stream);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_never_read_over_http1_is_cut() {
    let dir = scratch("h1-unread");
    let root = static_root(&dir);
    // More than the loopback socket buffers hold, so the server's writes block.
    std::fs::write(root.join("huge.bin"), vec![7u8; 64 * 1024 * 1024]).unwrap();
    let server = start(&dir, &with_send_timeout(&h2_config(&root))).await;
    never_read(&server, browser_head("GET", "/huge.bin", "").as_bytes()).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_a_response_whose_window_is_never_opened_is_cut() {
    let dir = scratch("h2-window");
    let root = static_root(&dir);
    let server = start(&dir, &with_send_timeout(&h2_config(&root))).await;
    // A real HTTP/2 client answers pings, but opens the window only as its body is read:
    // holding the body unread keeps the stream open with the server's writes blocked.
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .http2_initial_stream_window_size(65_535)
        .http2_initial_connection_window_size(65_535)
        .build_http::<Empty<Bytes>>();
    let request = Request::get(format!("http://{}/big.bin", server.local_addr()))
        .header("user-agent", FIREFOX)
        .header("accept", "*/*")
        .header("accept-language", "en")
        .header("accept-encoding", "gzip")
        .body(Empty::new())
        .unwrap();
    let response = tokio::time::timeout(GUARD, client.request(request))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    wait_for_metrics(
        &server,
        "the stalled HTTP/2 connection is still open",
        |m| metric(m, OPEN) == 0.0,
    )
    .await;
    drop(response);
    server.shutdown().await;
}

// === 2. the admin listener ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_silent_and_unfinished_connections_are_closed() {
    let dir = scratch("admin-timeout");
    let root = static_root(&dir);
    let server = start(
        &dir,
        &format!("[server]\nroot = {root:?}\nheader_read_timeout = \"{SHORT}\"\n"),
    )
    .await;
    let admin = server.admin_addr().unwrap();
    let mut silent = TcpStream::connect(admin).await.unwrap();
    let mut unfinished = TcpStream::connect(admin).await.unwrap();
    unfinished
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    assert!(
        read_until_closed(&mut silent).await.is_some(),
        "a silent admin connection is still open"
    );
    let reply = read_until_closed(&mut unfinished).await;
    assert!(
        reply.is_some(),
        "an admin connection with an unfinished head is still open"
    );
    assert!(!String::from_utf8_lossy(&reply.unwrap()).contains("200 OK"));
    // Service goes on.
    assert_eq!(get(admin, "/healthz", &[]).await.status, StatusCode::OK);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_connections_beyond_its_own_limit_are_closed_at_once() {
    let dir = scratch("admin-limit");
    let root = static_root(&dir);
    // Long timeouts: only the limit can close the third connection within the guard.
    let server = start(
        &dir,
        &format!(
            "[server]\nroot = {root:?}\nheader_read_timeout = \"60s\"\nadmin_max_connections = 2\n"
        ),
    )
    .await;
    let admin = server.admin_addr().unwrap();
    let first = TcpStream::connect(admin).await.unwrap();
    let second = TcpStream::connect(admin).await.unwrap();
    // Let the listener take the first two before the third arrives.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut third = TcpStream::connect(admin).await.unwrap();
    let reply = read_until_closed(&mut third).await;
    assert_eq!(
        reply.as_deref(),
        Some(&b""[..]),
        "the admin listener kept a connection beyond its limit"
    );
    // The main listener is not affected, and the admin one serves again once they are gone.
    assert_eq!(
        get(server.local_addr(), "/", &[]).await.status,
        StatusCode::OK
    );
    drop((first, second));
    let deadline = Instant::now() + GUARD;
    loop {
        let mut probe = TcpStream::connect(admin).await.unwrap();
        probe
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let reply = read_until_closed(&mut probe).await.unwrap_or_default();
        if reply.starts_with(b"HTTP/1.1 200 OK") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the admin listener never recovered"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    server.shutdown().await;
}

// === 4. half-written policy files ===

/// A server whose content comes from the command line, so an empty file is a valid policy
/// (the defaults) rather than "nothing to serve".
async fn reload_server(dir: &Path, config: &str) -> RunningServer {
    let root = static_root(dir);
    start_server(dir, config, Some(root)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_file_is_not_applied_on_reload() {
    let dir = scratch("reload-empty");
    let server = reload_server(&dir, "mode = \"report-only\"\n").await;
    let addr = server.local_addr();
    let bot = [("user-agent", GPTBOT)];
    assert_eq!(get(addr, "/", &bot).await.status, StatusCode::OK);

    // Truncated in place, as a slow save starts: the watcher sees an empty file.
    std::fs::write(dir.join("lenscap.toml"), "").unwrap();
    wait_for_metrics(&server, "the watcher never looked at the file", |m| {
        metric(m, RELOAD_OK) + metric(m, RELOAD_ERROR) >= 1.0
    })
    .await;
    assert_eq!(
        get(addr, "/", &bot).await.status,
        StatusCode::OK,
        "the defaults (enforce) were applied from an empty file"
    );
    let text = metrics(&server).await;
    assert_eq!(metric(&text, RELOAD_ERROR), 1.0, "{text}");
    assert_eq!(metric(&text, RELOAD_OK), 0.0, "{text}");
    // SIGHUP's path refuses it too, naming the reason.
    let error = server.reload().await.unwrap_err().to_string();
    assert!(error.contains("empty"), "{error}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_file_at_start_may_stay_empty() {
    let dir = scratch("reload-empty-start");
    let server = reload_server(&dir, "").await;
    assert!(server.reload().await.is_ok());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_saved_slowly_is_read_once_it_is_complete() {
    let dir = scratch("reload-slow");
    // A settle time a hundred times the writer's pauses: one pause stretched by a loaded
    // machine must not look like a finished save.
    let first = "reload_settle_time = \"2s\"\n";
    let server = reload_server(&dir, &format!("mode = \"report-only\"\n[server]\n{first}")).await;
    let addr = server.local_addr();
    let bot = [("user-agent", GPTBOT)];
    assert_eq!(get(addr, "/", &bot).await.status, StatusCode::OK);

    // Rewritten in place, a few bytes at a time: every prefix is empty, invalid, or enforces.
    let path = dir.join("lenscap.toml");
    let last =
        format!("mode = \"report-only\"\n[server]\n{first}# saved slowly, a few bytes at a time\n");
    let writer = {
        let path = path.clone();
        let last = last.clone();
        std::thread::spawn(move || {
            use std::io::Write;
            let mut file = std::fs::File::create(&path).unwrap();
            for piece in last.as_bytes().chunks(4) {
                file.write_all(piece).unwrap();
                file.flush().unwrap();
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    writer.join().unwrap();
    wait_for_metrics(&server, "the finished file was never applied", |m| {
        metric(m, RELOAD_OK) >= 1.0
    })
    .await;
    let text = metrics(&server).await;
    assert_eq!(
        metric(&text, RELOAD_ERROR),
        0.0,
        "a half-written file was read: {text}"
    );
    assert_eq!(get(addr, "/", &bot).await.status, StatusCode::OK);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_panics_the_loader_leaves_reload_working() {
    let dir = scratch("reload-panic");
    let server = reload_server(&dir, "mode = \"enforce\"\n").await;
    let addr = server.local_addr();
    let bot = [("user-agent", GPTBOT)];
    assert_eq!(get(addr, "/", &bot).await.status, StatusCode::FORBIDDEN);
    let path = dir.join("lenscap.toml");
    let tmp = dir.join("lenscap.toml.tmp");
    // A duration too large for the clock: once a panic in the loader.
    std::fs::write(
        &tmp,
        "mode = \"report-only\"\n[proxy]\nconnect_timeout = \"18446744073709551616s\"\n",
    )
    .unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    wait_for_metrics(&server, "the bad file was never counted", |m| {
        metric(m, RELOAD_ERROR) >= 1.0
    })
    .await;
    assert!(server.reload().await.is_err());
    assert_eq!(get(addr, "/", &bot).await.status, StatusCode::FORBIDDEN);

    // The watcher is still alive: the next good file is applied.
    std::fs::write(&tmp, "mode = \"report-only\"\n").unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    let deadline = Instant::now() + GUARD;
    while get(addr, "/", &bot).await.status != StatusCode::OK {
        assert!(Instant::now() < deadline, "the good file was never applied");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    server.shutdown().await;
}

// === 6. slow request bodies in proxy mode ===

fn slow_body_config(upstream: SocketAddr) -> String {
    proxy_config(
        upstream,
        &format!(
            "[proxy]\nrequest_body_idle_timeout = \"{SHORT}\"\nrequest_body_min_rate = 1000\n"
        ),
    )
}

/// Writes `head` then `body` one byte per `pause`, stopping at the first failed write; returns
/// what the server answered.
async fn drip(addr: SocketAddr, head: String, body: Vec<u8>, pause: Duration) -> String {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    writer.write_all(head.as_bytes()).await.unwrap();
    let dripper = tokio::spawn(async move {
        for byte in body {
            tokio::time::sleep(pause).await;
            if writer.write_all(&[byte]).await.is_err() {
                return;
            }
        }
        // Keep the write half open: a finished body must not be what ends the exchange.
        tokio::time::sleep(GUARD).await;
    });
    let mut out = Vec::new();
    let _ = tokio::time::timeout(GUARD, reader.read_to_end(&mut out)).await;
    dripper.abort();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_dripped_slowly_is_cut_with_408() {
    let dir = scratch("drip");
    let (up, closed) = upstream(|_| None).await;
    let server = start(&dir, &slow_body_config(up)).await;
    // 10 bytes a second against a minimum of 1000: never idle for 300 ms, far too slow.
    let head = browser_head("POST", "/upload", "content-length: 1000\r\n");
    let reply = drip(
        server.local_addr(),
        head,
        vec![b'x'; 1000],
        Duration::from_millis(100),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 408 "), "{reply:.200}");
    // The upstream connection it held is given back (closed), not kept for the drip.
    let deadline = Instant::now() + GUARD;
    while closed.load(Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < deadline,
            "the upstream connection is still held"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_that_stops_is_cut_with_408() {
    let dir = scratch("stall");
    let (up, _) = upstream(|_| None).await;
    let server = start(&dir, &slow_body_config(up)).await;
    let head = browser_head("POST", "/upload", "content-length: 100\r\n");
    let mut stream = TcpStream::connect(server.local_addr()).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&[b'y'; 10]).await.unwrap();
    let reply = read_until_closed(&mut stream).await.unwrap_or_default();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 408 "), "{reply:.200}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_at_a_fair_pace_is_forwarded_whole() {
    let dir = scratch("fair-body");
    let (up, _) = upstream(|head| {
        Some(
            format!(
                "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-length: {}\r\n\r\nok",
                content_length(head)
            )
            .into_bytes(),
        )
    })
    .await;
    let server = start(&dir, &slow_body_config(up)).await;
    let client = Client::builder(TokioExecutor::new()).build_http::<http_body_util::Full<Bytes>>();
    let request = Request::post(format!("http://{}/upload", server.local_addr()))
        .header("user-agent", FIREFOX)
        .header("accept", "*/*")
        .header("accept-language", "en")
        .header("accept-encoding", "gzip")
        .body(http_body_util::Full::new(Bytes::from(vec![
            b'z';
            64 * 1024
        ])))
        .unwrap();
    let response = tokio::time::timeout(GUARD, client.request(request))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-length"], "65536");
    server.shutdown().await;
}

// === 8. wrong answers ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_segment_over_255_bytes_is_404() {
    let dir = scratch("long-segment");
    let root = static_root(&dir);
    let server = start(
        &dir,
        &format!("[server]\nroot = {root:?}\n[limits]\nenabled = false\n"),
    )
    .await;
    let long = "a".repeat(300);
    for path in [
        format!("/{long}"),
        format!("/{long}.html"),
        format!("/photos/{long}.jpg"),
        format!("/{long}/index.html"),
    ] {
        let answer = get(server.local_addr(), &path, &[]).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_first_chunk_from_the_upstream_is_502() {
    let dir = scratch("broken-chunk");
    let (up, _) = upstream(|_| {
        Some(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nnot-hex\r\nhello\r\n".to_vec())
    })
    .await;
    let server = start(&dir, &proxy_config(up, "")).await;
    let reply = raw_exchange(
        server.local_addr(),
        browser_head("GET", "/", "connection: close\r\n").as_bytes(),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 502 "), "{reply:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_bad_chunked_body_is_400() {
    let dir = scratch("bad-chunked");
    let (up, _) = upstream(|_| None).await;
    let server = start(&dir, &proxy_config(up, "")).await;
    let mut request = browser_head("POST", "/upload", "transfer-encoding: chunked\r\n");
    request.push_str("zz\r\nhello\r\n0\r\n\r\n");
    let reply = raw_exchange(server.local_addr(), request.as_bytes()).await;
    assert!(reply.starts_with("HTTP/1.1 400 "), "{reply:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_behind_doubled_slashes_never_redirects_protocol_relative() {
    let dir = scratch("double-slash");
    let root = static_root(&dir);
    let server = start(
        &dir,
        &format!("[server]\nroot = {root:?}\n[limits]\nenabled = false\n"),
    )
    .await;
    for path in ["//photos", "///photos", "/photos"] {
        let reply = raw_exchange(
            server.local_addr(),
            browser_head("GET", path, "connection: close\r\n").as_bytes(),
        )
        .await;
        let location = reply
            .lines()
            .find_map(|l| l.strip_prefix("location: "))
            .unwrap_or_else(|| panic!("{path}: no redirect: {reply:.200}"));
        assert_eq!(location, "/photos/", "{path}");
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http10_upstream_answer_is_relayed_in_the_clients_version() {
    let dir = scratch("http10");
    let (up, _) =
        upstream(|_| Some(b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nhi".to_vec())).await;
    let server = start(&dir, &proxy_config(up, "")).await;
    let reply = raw_exchange(
        server.local_addr(),
        browser_head("GET", "/", "connection: close\r\n").as_bytes(),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply:?}");
    assert!(reply.ends_with("\r\n\r\nhi"), "{reply:?}");
    server.shutdown().await;
}

// === 9. identity headers a client sends about itself ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_own_identity_headers_do_not_reach_the_upstream() {
    let dir = scratch("identity");
    let (up, _) = upstream(echo).await;
    let server = start(&dir, &proxy_config(up, "[limits]\nenabled = false\n")).await;
    let forged = [
        ("x-real-ip", "6.6.6.1"),
        ("true-client-ip", "6.6.6.2"),
        ("cf-connecting-ip", "6.6.6.3"),
        ("x-client-ip", "6.6.6.4"),
        ("x-cluster-client-ip", "6.6.6.5"),
        ("fastly-client-ip", "6.6.6.6"),
        ("x-original-forwarded-for", "6.6.6.7"),
        ("client-ip", "6.6.6.8"),
    ];
    let answer = get(server.local_addr(), "/", &forged).await;
    assert_eq!(answer.status, StatusCode::OK);
    let seen = String::from_utf8(answer.body.to_vec())
        .unwrap()
        .to_ascii_lowercase();
    assert!(!seen.contains("6.6.6."), "{seen}");
    // X-Real-IP says what Lenscap itself saw.
    assert!(seen.contains("\r\nx-real-ip: 127.0.0.1\r\n"), "{seen}");
    server.shutdown().await;
}

// === the binary: descriptor limits, and log lines ===

/// `lenscap serve` started through `sh` with `ulimit` applied first; its log lines are
/// collected as they come.
struct Binary {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Binary {
    fn start(ulimit: &str, dir: &Path, config: &str, args: &[&str]) -> Binary {
        let path = dir.join("lenscap.toml");
        std::fs::write(&path, config).unwrap();
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("{ulimit} exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_lenscap"))
            .arg("serve")
            .arg("--config")
            .arg(&path)
            .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
            .args(["--log-format", "json"])
            .args(args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { return };
                    lines.lock().unwrap().push(line);
                }
            });
        }
        Binary { child, lines }
    }

    /// Waits for a log line containing `needle`.
    fn line(&self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + GUARD;
        loop {
            if let Some(line) = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(needle))
            {
                return line.clone();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no log line with {needle:?}: {:#?}",
                self.lines.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The address after `marker` in the first log line containing it.
    fn addr_after(&self, marker: &str) -> SocketAddr {
        let line = self.line(marker);
        let rest = &line[line.find(marker).unwrap() + marker.len()..];
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ':'))
            .unwrap_or(rest.len());
        rest[..end].parse().unwrap()
    }

    fn listen_addr(&self) -> SocketAddr {
        self.addr_after(" at http://")
    }

    fn admin_addr(&self) -> SocketAddr {
        self.addr_after("admin: http://")
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// (soft, hard) "Max open files" of a process.
fn open_files_limit(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (numbers[0], numbers[1])
}

#[test]
fn the_soft_descriptor_limit_is_raised_to_the_hard_limit() {
    let (_, hard) = open_files_limit(std::process::id());
    if hard <= 256 {
        eprintln!("hard descriptor limit {hard}: nothing to raise");
        return;
    }
    let dir = scratch("rlimit-raise");
    let root = static_root(&dir);
    let binary = Binary::start(
        "ulimit -S -n 256 &&",
        &dir,
        "",
        &["--static", root.to_str().unwrap()],
    );
    binary.listen_addr();
    assert_eq!(open_files_limit(binary.child.id()), (hard, hard));
    let line = binary.line("descriptor");
    assert!(
        line.contains("256") && line.contains(&hard.to_string()),
        "{line}"
    );
    assert!(binary.line("max_connections").contains("max_connections"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_low_descriptor_limit_a_flood_is_refused_and_admin_still_answers() {
    let dir = scratch("rlimit-flood");
    let root = static_root(&dir);
    let binary = Binary::start(
        "ulimit -n 128 &&",
        &dir,
        "[server]\nheader_read_timeout = \"60s\"\n",
        &["--static", root.to_str().unwrap()],
    );
    let addr = binary.listen_addr();
    let admin = binary.admin_addr();
    // More idle connections than the process has descriptors.
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    // The admin answers throughout; the refusals show once the accept loop has reached the
    // connections past the limit (it may still be accepting the first ones when asked).
    let deadline = Instant::now() + GUARD;
    loop {
        let mut probe = TcpStream::connect(admin).await.unwrap();
        probe
            .write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let reply = read_until_closed(&mut probe).await.expect("admin answers");
        let reply = String::from_utf8_lossy(&reply);
        assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply:.200}");
        if metric_in(&reply, "lenscap_connections_rejected_total ") > 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no connection was refused: {reply}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(idle);
    let line = binary.line("max_connections");
    assert!(line.contains("128"), "{line}");
}

/// A metric from a raw HTTP reply (head and body).
fn metric_in(reply: &str, prefix: &str) -> f64 {
    metric(reply.split("\r\n\r\n").nth(1).unwrap_or(""), prefix)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_100_upstream_headers_is_502_with_a_log_line_saying_why() {
    let dir = scratch("many-headers");
    let (up, _) = upstream(|_| {
        let mut reply = String::from("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n");
        for i in 0..150 {
            reply.push_str(&format!("x-header-{i}: {i}\r\n"));
        }
        reply.push_str("\r\nok");
        Some(reply.into_bytes())
    })
    .await;
    let binary = Binary::start("", &dir, &proxy_config(up, ""), &[]);
    let reply = raw_exchange(
        binary.listen_addr(),
        browser_head("GET", "/", "connection: close\r\n").as_bytes(),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 502 "), "{reply:?}");
    let line = binary.line("upstream request failed");
    assert!(line.contains("more than 100 header fields"), "{line}");
}

// === 3. durations too large for the clock ===

/// Once a panic (exit 101) at start-up; now an error naming the key and its line, for
/// `check-config` and for `serve` alike.
#[test]
fn a_duration_too_large_for_the_clock_is_an_error_naming_its_key() {
    let dir = scratch("huge-duration");
    for (text, key) in [
        (
            "[limits]\nidle_after = \"18446744073709551616s\"\n",
            "limits.idle_after",
        ),
        (
            "[tarpit]\ndelay = \"99999999999999999999h\"\n",
            "tarpit.delay",
        ),
        (
            "[server]\ngrace_period = \"18446744073709551616s\"\nroot = \".\"\n",
            "server.grace_period",
        ),
    ] {
        let path = dir.join("huge.toml");
        std::fs::write(&path, text).unwrap();
        for args in [
            vec!["check-config", path.to_str().unwrap()],
            vec![
                "serve",
                "--config",
                path.to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
                "--admin",
                "off",
            ],
        ] {
            let out = Command::new(env!("CARGO_BIN_EXE_lenscap"))
                .args(&args)
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            // 1 (check-config) or 2 (serve: a configuration error); a panic exits with 101.
            assert!(
                matches!(out.status.code(), Some(1 | 2)),
                "{args:?} {text:?}: {:?} {err}",
                out.status
            );
            assert!(
                err.contains(key) && err.contains("line 2") && !err.contains("panicked"),
                "{args:?}: {err}"
            );
        }
    }
}

// === 5. HTML rewriting holds a bounded amount ===

/// A page whose head holds a tag too long to buffer (an 8 MB `data:` favicon) is passed on
/// byte for byte instead of being held whole in memory to insert the opt-out tags.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_with_a_huge_head_tag_passes_through_whole() {
    let dir = scratch("huge-head");
    let root = static_root(&dir);
    let icon = "A".repeat(8 * 1024 * 1024);
    let page = format!(
        "<!doctype html><html><head><link rel=\"icon\" href=\"data:image/png;base64,{icon}\"><title>The Crown</title></head><body><p>Terrace</p></body></html>"
    );
    std::fs::write(root.join("big.html"), &page).unwrap();
    let server = start(&dir, &format!("[server]\nroot = {root:?}\n")).await;
    let answer = get(server.local_addr(), "/big.html", &[("accept", "text/html")]).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(
        answer.body == page.as_bytes(),
        "{} bytes back for a page of {}",
        answer.body.len(),
        page.len()
    );
    // An ordinary page still gets its tags.
    let answer = get(server.local_addr(), "/", &[("accept", "text/html")]).await;
    let body = String::from_utf8_lossy(&answer.body);
    assert!(body.contains("noai, noimageai"), "{body}");
    server.shutdown().await;
}

// === 10. the visitor cookie's signature, on every request ===

fn page_view(cookie: Option<&str>) -> Vec<u8> {
    let cookie = cookie.map_or(String::new(), |c| format!("cookie: {c}\r\n"));
    format!(
        "GET / HTTP/1.1\r\nhost: 127.0.0.1\r\nuser-agent: {FIREFOX}\r\naccept: text/html,*/*;q=0.8\r\naccept-language: en\r\naccept-encoding: gzip\r\n{cookie}connection: close\r\n\r\n"
    )
    .into_bytes()
}

/// The `lenscap=…` pair a response sets, if any.
fn set_cookie(reply: &str) -> Option<String> {
    reply
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .map(|v| v.split(';').next().unwrap().to_owned())
}

/// Once a visitor was tracked, its id with a zeroed (or any) signature was taken as that
/// visitor. Now such a cookie is no cookie: the page view is issued a fresh one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_with_its_signature_stripped_is_not_a_visitor() {
    let dir = scratch("cookie-mac");
    let root = static_root(&dir);
    let server = start(&dir, &format!("[server]\nroot = {root:?}\n")).await;
    let addr = server.local_addr();
    let reply = raw_exchange(addr, &page_view(None)).await;
    let cookie = set_cookie(&reply).expect("a first page view gets a cookie");
    // With its own cookie, the visitor is known: nothing new is set.
    let reply = raw_exchange(addr, &page_view(Some(&cookie))).await;
    assert!(reply.starts_with("HTTP/1.1 200 "), "{reply:.80}");
    assert_eq!(set_cookie(&reply), None, "{reply:.400}");
    // The same id, the signature's characters replaced: refused, so a new cookie is issued.
    let (name, value) = cookie.split_once('=').unwrap();
    let forged = format!("{name}={}{}", &value[..22], "A".repeat(value.len() - 22));
    assert_ne!(forged, cookie);
    let reply = raw_exchange(addr, &page_view(Some(&forged))).await;
    assert!(reply.starts_with("HTTP/1.1 200 "), "{reply:.80}");
    let fresh = set_cookie(&reply).expect("a forged cookie is no visitor");
    assert_ne!(fresh, cookie);
    server.shutdown().await;
}
