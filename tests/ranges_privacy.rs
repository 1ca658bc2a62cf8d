//! The privacy invariant, as a property over request shapes: whatever a client asks — GET,
//! HEAD, a single, open-ended, suffix or multiple Range, If-Range with either tag or a date,
//! conditional requests, over HTTP/1.1 or HTTP/2, in static and in proxy mode — the bytes it
//! receives never carry the original's GPS position (exiftool finds none, and the original
//! GPS block's bytes appear nowhere), slices are slices of the stamped image with its ETag,
//! and HEAD describes the stamped image.

mod gallery_corpus;

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use lenscap::server::{Overrides, RunningServer, ServeOptions, Server};

use gallery_corpus::{Corpus, GPS_LATITUDE, build, contains, exiftool_gps, uri};

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:150.0) Gecko/20100101 Firefox/150.0";

/// Limits off: these tests fetch every photo many times in a row.
async fn start(corpus: &Corpus, root: Option<&Corpus>, upstream: Option<String>) -> RunningServer {
    let config = corpus
        .root
        .with_extension(format!("privacy-{}.toml", upstream.is_some()));
    std::fs::write(&config, "[limits]\nenabled = false\n").unwrap();
    Server::bind(ServeOptions {
        config: Some(config),
        overrides: Overrides {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            admin: Some(None),
            root: root.map(|c| c.root.clone()),
            upstream,
            ..Overrides::default()
        },
    })
    .await
    .expect("server starts")
}

/// An upstream that serves the corpus as it is stored, Range and conditionals included.
async fn upstream(corpus: &Corpus) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let dir = tower_http::services::ServeDir::new(&corpus.root);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let dir = dir.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                        let dir = dir.clone();
                        async move {
                            if request.uri().path() == "/robots.txt" {
                                let mut response = http::Response::new(
                                    http_body_util::Full::new(Bytes::new())
                                        .map_err(|e: Infallible| match e {})
                                        .boxed_unsync(),
                                );
                                *response.status_mut() = StatusCode::NOT_FOUND;
                                return Ok::<_, Infallible>(response);
                            }
                            let response = tower::ServiceExt::oneshot(dir, request).await.unwrap();
                            Ok(response.map(|b| b.map_err(std::io::Error::other).boxed_unsync()))
                        }
                    });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

async fn ask(
    client: &Client<HttpConnector, Empty<Bytes>>,
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, String)],
) -> Answer {
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header(header::USER_AGENT, FIREFOX)
        .header(header::ACCEPT, "image/avif,image/webp,*/*")
        .header(header::ACCEPT_LANGUAGE, "en-GB,en;q=0.8")
        .header(header::REFERER, format!("http://{addr}/"));
    for (name, value) in headers {
        request = request.header(*name, value.as_str());
    }
    let response = client
        .request(request.body(Empty::new()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body,
    }
}

/// Bodies exiftool has already read (the same bytes come back for many shapes).
type Seen = std::collections::HashSet<Bytes>;

fn no_gps(seen: &mut Seen, bytes: &Bytes, label: &str) {
    assert!(
        !contains(bytes, &GPS_LATITUDE),
        "{label}: the original GPS block is in the bytes sent"
    );
    if bytes.is_empty() || !seen.insert(bytes.clone()) {
        return;
    }
    let read = exiftool_gps(bytes, label);
    assert!(read.is_empty(), "{label}: exiftool reads GPS: {read}");
}

/// A small deterministic stream of numbers for the random ranges.
struct Draws(u64);

impl Draws {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// Every request shape against every photo of the corpus through the server at `addr`.
async fn every_shape_keeps_the_position_private(addr: SocketAddr, corpus: &Corpus, mode: &str) {
    let h1: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let h2: Client<HttpConnector, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let mut draws = Draws(0x2545_f491_4f6c_dd1d);
    let mut seen = Seen::new();
    for rel in &corpus.viewable {
        let original = gallery_corpus::original(corpus, rel);
        assert!(
            contains(&original, &GPS_LATITUDE),
            "{rel}: the corpus carries GPS"
        );
        assert!(
            !exiftool_gps(&original, rel).is_empty(),
            "{rel}: exiftool reads the corpus GPS"
        );
        let path = uri(rel);
        for (version, client) in [("HTTP/1.1", &h1), ("HTTP/2", &h2)] {
            let label = |shape: &str| format!("{mode} {version} {rel} {shape}");
            let full = ask(client, addr, Method::GET, &path, &[]).await;
            assert_eq!(full.status, StatusCode::OK, "{}", label("GET"));
            no_gps(&mut seen, &full.body, &label("GET"));
            let len = full.body.len() as u64;
            let etag = full.headers["etag"].to_str().unwrap().to_owned();
            assert_eq!(full.headers["accept-ranges"], "bytes", "{}", label("GET"));

            let head = ask(client, addr, Method::HEAD, &path, &[]).await;
            assert_eq!(head.status, StatusCode::OK, "{}", label("HEAD"));
            assert!(head.body.is_empty());
            assert_eq!(
                head.headers["content-length"],
                len.to_string().as_str(),
                "{}",
                label("HEAD")
            );
            assert_eq!(head.headers["etag"], etag.as_str(), "{}", label("HEAD"));

            let unstamped = etag
                .rsplit_once("-lc")
                .map(|(tag, _)| format!("{tag}\""))
                .unwrap_or_else(|| etag.clone());
            let modified = full
                .headers
                .get("last-modified")
                .map(|v| v.to_str().unwrap().to_owned());
            let mut shapes: Vec<(String, Vec<(&str, String)>)> = vec![
                ("bytes=0-".into(), vec![("range", "bytes=0-".into())]),
                ("bytes=0-500".into(), vec![("range", "bytes=0-500".into())]),
                ("bytes=-200".into(), vec![("range", "bytes=-200".into())]),
                (
                    format!("bytes=-{}", len + 10),
                    vec![("range", format!("bytes=-{}", len + 10))],
                ),
                ("bytes=10-".into(), vec![("range", "bytes=10-".into())]),
                (
                    "multiple".into(),
                    vec![("range", "bytes=0-10,20-40,100-".into())],
                ),
                (
                    "past the end".into(),
                    vec![("range", format!("bytes={}-", len + 5))],
                ),
                (
                    "if-range stamped".into(),
                    vec![("range", "bytes=0-99".into()), ("if-range", etag.clone())],
                ),
                (
                    "if-range unstamped".into(),
                    vec![
                        ("range", "bytes=0-99".into()),
                        ("if-range", unstamped.clone()),
                    ],
                ),
                (
                    "if-none-match unstamped".into(),
                    vec![("if-none-match", unstamped.clone())],
                ),
                (
                    "if-none-match stamped".into(),
                    vec![("if-none-match", etag.clone())],
                ),
                (
                    "if-match unstamped".into(),
                    vec![
                        ("if-match", unstamped.clone()),
                        ("range", "bytes=0-".into()),
                    ],
                ),
                (
                    "if-modified-since old".into(),
                    vec![("if-modified-since", "Mon, 01 Jan 2001 00:00:00 GMT".into())],
                ),
            ];
            if let Some(date) = &modified {
                shapes.push((
                    "if-range date".into(),
                    vec![("range", "bytes=0-99".into()), ("if-range", date.clone())],
                ));
                shapes.push((
                    "if-unmodified-since".into(),
                    vec![
                        ("if-unmodified-since", date.clone()),
                        ("range", "bytes=5-".into()),
                    ],
                ));
            }
            for _ in 0..8 {
                let start = draws.below(len);
                let end = start + draws.below(len - start);
                shapes.push((
                    format!("bytes={start}-{end}"),
                    vec![("range", format!("bytes={start}-{end}"))],
                ));
            }
            for (shape, headers) in &shapes {
                for method in [Method::GET, Method::HEAD] {
                    let shape = format!("{method} {shape}");
                    let answer = ask(client, addr, method.clone(), &path, headers).await;
                    no_gps(&mut seen, &answer.body, &label(&shape));
                    if method == Method::HEAD {
                        assert!(answer.body.is_empty(), "{}", label(&shape));
                    }
                    if let Some(value) = answer.headers.get("content-length")
                        && answer.status.is_success()
                        && method == Method::HEAD
                    {
                        assert_eq!(value, len.to_string().as_str(), "{}", label(&shape));
                    }
                    match answer.status {
                        StatusCode::PARTIAL_CONTENT => {
                            let range = answer.headers["content-range"].to_str().unwrap();
                            let (span, total) = range
                                .strip_prefix("bytes ")
                                .unwrap()
                                .split_once('/')
                                .unwrap();
                            assert_eq!(total, len.to_string(), "{}", label(&shape));
                            let (a, b) = span.split_once('-').unwrap();
                            let (a, b): (usize, usize) = (a.parse().unwrap(), b.parse().unwrap());
                            assert_eq!(
                                &answer.body[..],
                                &full.body[a..=b],
                                "{}: a slice of the stamped image",
                                label(&shape)
                            );
                            assert_eq!(answer.headers["etag"], etag.as_str(), "{}", label(&shape));
                        }
                        StatusCode::OK if method == Method::GET => {
                            assert_eq!(
                                answer.body,
                                full.body,
                                "{}: the whole stamped image",
                                label(&shape)
                            );
                        }
                        StatusCode::OK
                        | StatusCode::NOT_MODIFIED
                        | StatusCode::PRECONDITION_FAILED
                        | StatusCode::RANGE_NOT_SATISFIABLE => {}
                        other => panic!("{}: {other}", label(&shape)),
                    }
                }
            }
            // A resumed download is the stamped image, never a splice of the file.
            let first = ask(
                client,
                addr,
                Method::GET,
                &path,
                &[("range", "bytes=0-99".into())],
            )
            .await;
            let rest = ask(
                client,
                addr,
                Method::GET,
                &path,
                &[("range", "bytes=100-".into()), ("if-range", etag.clone())],
            )
            .await;
            let mut joined = first.body.to_vec();
            joined.extend_from_slice(&rest.body);
            assert_eq!(joined, full.body, "{}", label("resumed"));
            no_gps(&mut seen, &Bytes::from(joined), &label("resumed"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_mode_never_sends_the_position() {
    let corpus = build("privacy-static");
    let server = start(&corpus, Some(&corpus), None).await;
    every_shape_keeps_the_position_private(server.local_addr(), &corpus, "static").await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_mode_never_sends_the_position() {
    let corpus = build("privacy-proxy");
    let origin = upstream(&corpus).await;
    let server = start(&corpus, None, Some(format!("http://{origin}"))).await;
    every_shape_keeps_the_position_private(server.local_addr(), &corpus, "proxy").await;
    server.shutdown().await;
}
