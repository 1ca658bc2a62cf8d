//! The reservation, end to end through `lenscap serve` on the demo gallery: documents (with the
//! gallery's own robots.txt merged), opt-out headers and meta tags, every photo stamped with
//! identical pixels and no GPS left, conditional requests and Range still correct.

mod stamp_support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use lenscap::server::{Overrides, RunningServer, ServeOptions, Server};
use stamp_support::TiffRead;

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:145.0) Gecko/20100101 Firefox/145.0";
const GUARD: Duration = Duration::from_secs(20);

fn gallery() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/gallery"))
}

/// The demo gallery under the default policy, rate limits off: these tests fetch every photo
/// in a row, which is what limits exist to stop (they are tested in limits_sessions.rs).
async fn start() -> RunningServer {
    let config = std::env::temp_dir().join(format!("lenscap-optout-{}.toml", std::process::id()));
    std::fs::write(&config, "[limits]\nenabled = false\n").unwrap();
    Server::bind(ServeOptions {
        config: Some(config),
        overrides: Overrides {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            admin: Some(Some("127.0.0.1:0".parse().unwrap())),
            root: Some(gallery()),
            ..Overrides::default()
        },
    })
    .await
    .expect("server starts")
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

async fn get(addr: SocketAddr, path: &str, extra: &[(&str, &str)]) -> Answer {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut request = Request::get(format!("http://{addr}{path}"))
        .header("user-agent", FIREFOX)
        .header("accept", "image/avif,image/webp,*/*")
        .header("accept-language", "en-GB,en;q=0.8")
        .header("accept-encoding", "gzip, deflate, br")
        .header("referer", format!("http://{addr}/"));
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    let response = tokio::time::timeout(GUARD, client.request(request.body(Empty::new()).unwrap()))
        .await
        .expect("guard")
        .expect("response");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body,
    }
}

fn photos(ext: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(gallery().join("photos"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(ext))
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_gallery_photo_is_stamped_with_identical_pixels_and_no_gps() {
    let server = start().await;
    let addr = server.local_addr();
    let mut had_gps = 0;
    for ext in [".jpg", ".png", ".webp"] {
        for name in photos(ext) {
            let original = std::fs::read(gallery().join("photos").join(&name)).unwrap();
            let served = get(addr, &format!("/photos/{name}"), &[]).await;
            assert_eq!(served.status, StatusCode::OK, "{name}");
            assert_eq!(
                served
                    .headers
                    .get_all("x-robots-tag")
                    .iter()
                    .collect::<Vec<_>>(),
                ["noai, noimageai"],
                "{name}"
            );
            assert_eq!(served.headers["tdm-reservation"], "1");
            assert_eq!(served.headers["content-usage"], "train-ai=n");
            assert_eq!(
                served.headers["content-length"],
                served.body.len().to_string().as_str(),
                "{name}"
            );
            assert_eq!(
                stamp_support::frames(&served.body),
                stamp_support::frames(&original),
                "{name}: pixels changed"
            );
            let packets = match ext {
                ".jpg" => stamp_support::jpeg_xmp(&served.body),
                ".png" => stamp_support::png_xmp(&served.body),
                _ => stamp_support::webp_xmp(&served.body),
            };
            assert!(
                packets
                    .iter()
                    .any(|p| p.contains("DMI-PROHIBITED-AIMLTRAINING")),
                "{name}: no XMP reservation"
            );
            if ext == ".jpg"
                && let Some(before) = stamp_support::jpeg_exif(&original)
            {
                let after = stamp_support::jpeg_exif(&served.body).expect("Exif kept");
                let (b, a) = (TiffRead::new(&before), TiffRead::new(&after));
                if b.has_gps() {
                    had_gps += 1;
                    assert!(!a.has_gps(), "{name}: GPS left in");
                }
                assert_eq!(
                    a.orientation(),
                    b.orientation(),
                    "{name}: orientation changed"
                );
            }
        }
    }
    assert!(
        had_gps > 0,
        "the demo gallery should include photos with GPS"
    );
    let metrics = get(server.admin_addr().unwrap(), "/metrics", &[]).await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.lines()
            .any(|l| l.starts_with("lenscap_images_stamped_total") && !l.ends_with(" 0")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("lenscap_images_scrubbed_total") && !l.ends_with(" 0")),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_and_range_requests_stay_correct() {
    let server = start().await;
    let addr = server.local_addr();
    let name = &photos(".jpg")[0];
    let path = format!("/photos/{name}");
    let original = std::fs::read(gallery().join("photos").join(name)).unwrap();

    let full = get(addr, &path, &[]).await;
    assert_eq!(full.headers["accept-ranges"], "bytes");
    let etag = full.headers["etag"].to_str().unwrap().to_owned();
    let again = get(addr, &path, &[("if-none-match", &etag)]).await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    assert_eq!(again.headers["etag"], etag.as_str());
    assert!(again.body.is_empty());

    // A Range answer is a slice of the stamped image, never of the file as stored.
    assert_ne!(full.body, original);
    let part = get(addr, &path, &[("range", "bytes=0-99")]).await;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(&part.body[..], &full.body[..100]);
    assert_eq!(part.headers["etag"], etag.as_str());
    // Resuming with the stamped validator splices onto the same stamped bytes …
    let resumed = get(addr, &path, &[("range", "bytes=100-"), ("if-range", &etag)]).await;
    assert_eq!(resumed.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(&resumed.body[..], &full.body[100..]);
    // … and with the file's own (unstamped) validator gets the whole stamped image.
    let unstamped = etag.split("-lc").next().unwrap().to_owned() + "\"";
    let whole = get(
        addr,
        &path,
        &[("range", "bytes=100-"), ("if-range", &unstamped)],
    )
    .await;
    assert_eq!(whole.status, StatusCode::OK);
    assert_eq!(whole.body, full.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_and_pages_declare_the_reservation() {
    let server = start().await;
    let addr = server.local_addr();

    let robots = get(addr, "/robots.txt", &[]).await;
    assert_eq!(robots.status, StatusCode::OK);
    assert_eq!(robots.headers["content-type"], "text/plain; charset=utf-8");
    let text = String::from_utf8(robots.body.to_vec()).unwrap();
    let gptbot = texting_robots::Robot::new("GPTBot", text.as_bytes()).unwrap();
    assert!(!gptbot.allowed("/photos/beer-garden-01.jpg"));
    // The gallery's own rule survives the merge.
    let anyone = texting_robots::Robot::new("SomeBrowserExtension", text.as_bytes()).unwrap();
    assert!(!anyone.allowed("/staff/rota.html"));
    assert!(anyone.allowed("/"));
    assert!(text.contains("Sitemap: http://127.0.0.1:8080/sitemap.xml"));
    let etag = robots.headers["etag"].to_str().unwrap().to_owned();
    assert_eq!(
        get(addr, "/robots.txt", &[("if-none-match", &etag)])
            .await
            .status,
        StatusCode::NOT_MODIFIED
    );

    let tdmrep = get(addr, "/.well-known/tdmrep.json", &[]).await;
    let json: serde_json::Value = serde_json::from_slice(&tdmrep.body).unwrap();
    assert_eq!(json[0]["tdm-reservation"], 1);
    assert_eq!(
        get(addr, "/ai.txt", &[]).await.headers["content-type"],
        "text/plain; charset=utf-8"
    );
    let policy = get(addr, "/ai-policy", &[]).await;
    assert_eq!(policy.headers["content-type"], "text/html; charset=utf-8");

    // Pages come uncompressed here (no precompressed copy): they get the meta tags.
    let page = get(addr, "/", &[("accept-encoding", "identity")]).await;
    let html = String::from_utf8(page.body.to_vec()).unwrap();
    assert!(html.contains(r#"<meta name="robots" content="noai, noimageai">"#));
    assert_eq!(page.headers["tdm-reservation"], "1");
}

/// A minimal upstream: its own robots.txt, and a page for everything else.
async fn upstream_with_robots() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = stream.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]);
                let body = if head.starts_with("GET /robots.txt ") {
                    "User-agent: *\nDisallow: /members/\n\nSitemap: https://upstream.example/sitemap.xml\n"
                } else {
                    "<html><head></head><body>upstream page</body></html>"
                };
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxied_sites_own_robots_txt_is_merged() {
    let upstream = upstream_with_robots().await;
    let server = Server::bind(ServeOptions {
        config: None,
        overrides: Overrides {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            admin: Some(None),
            upstream: Some(format!("http://{upstream}")),
            ..Overrides::default()
        },
    })
    .await
    .expect("server starts");
    let robots = get(server.local_addr(), "/robots.txt", &[]).await;
    let text = String::from_utf8(robots.body.to_vec()).unwrap();
    let anyone = texting_robots::Robot::new("SomeReader", text.as_bytes()).unwrap();
    assert!(!anyone.allowed("/members/list"), "{text}");
    assert!(anyone.allowed("/"), "{text}");
    let gptbot = texting_robots::Robot::new("GPTBot", text.as_bytes()).unwrap();
    assert!(!gptbot.allowed("/"), "{text}");
    assert!(
        text.contains("Sitemap: https://upstream.example/sitemap.xml"),
        "{text}"
    );
}

// === the stamped-image cache (static mode) ===

/// A far-future `If-Unmodified-Since` passes, but keeps a request off the stamped-image
/// cache: its answer is the one `ServeDir` and the layer's stamper give without the cache.
const UNCACHED: (&str, &str) = ("if-unmodified-since", "Fri, 01 Jan 2100 00:00:00 GMT");

/// A server over a scratch folder holding copies of one gallery photo per format.
async fn start_copy(name: &str) -> (RunningServer, PathBuf) {
    let dir = std::env::temp_dir().join(format!("lenscap-optout-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("root/photos")).unwrap();
    for ext in [".jpg", ".png", ".webp"] {
        for photo in photos(ext).iter().take(2) {
            std::fs::copy(
                gallery().join("photos").join(photo),
                dir.join("root/photos").join(photo),
            )
            .unwrap();
        }
    }
    let config = dir.join("lenscap.toml");
    std::fs::write(&config, "[limits]\nenabled = false\n").unwrap();
    let server = Server::bind(ServeOptions {
        config: Some(config),
        overrides: Overrides {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            admin: Some(Some("127.0.0.1:0".parse().unwrap())),
            root: Some(dir.join("root")),
            ..Overrides::default()
        },
    })
    .await
    .expect("server starts");
    (server, dir.join("root"))
}

/// Status, headers but `Date`, body.
fn seen(answer: &Answer) -> (StatusCode, Vec<(String, Vec<u8>)>, Bytes) {
    let mut headers: Vec<(String, Vec<u8>)> = answer
        .headers
        .iter()
        .filter(|(name, _)| *name != http::header::DATE)
        .map(|(name, value)| (name.to_string(), value.as_bytes().to_vec()))
        .collect();
    headers.sort();
    (answer.status, headers, answer.body.clone())
}

async fn stamped_total(server: &RunningServer) -> f64 {
    let admin = server.admin_addr().unwrap();
    let text = String::from_utf8(get(admin, "/metrics", &[]).await.body.to_vec()).unwrap();
    text.lines()
        .filter(|l| l.starts_with("lenscap_images_stamped_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_stamped_images_answer_exactly_as_the_stamper_does() {
    let (server, _root) = start_copy("same").await;
    let addr = server.local_addr();
    let mut requests = 0.0;
    for ext in [".jpg", ".png", ".webp"] {
        let path = format!("/photos/{}", photos(ext)[0]);
        let uncached = get(addr, &path, &[UNCACHED]).await;
        assert_eq!(uncached.status, StatusCode::OK);
        assert_eq!(
            uncached.headers["accept-ranges"], "bytes",
            "{path} is stamped"
        );
        let miss = get(addr, &path, &[]).await;
        let hit = get(addr, &path, &[]).await;
        let again = get(addr, &path, &[UNCACHED]).await;
        assert_eq!(seen(&miss), seen(&uncached), "{path}: first (cache filled)");
        assert_eq!(seen(&hit), seen(&uncached), "{path}: from the cache");
        assert_eq!(seen(&again), seen(&uncached), "{path}: uncached again");
        requests += 4.0;
    }
    // Every answer counts as stamped, from the cache or not.
    assert_eq!(stamped_total(&server).await, requests);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_photo_is_stamped_afresh_and_validators_follow_it() {
    let (server, root) = start_copy("replace").await;
    let addr = server.local_addr();
    let [first, second] = [&photos(".jpg")[0], &photos(".jpg")[1]];
    let path = format!("/photos/{first}");
    let file = root.join("photos").join(first);

    let old = get(addr, &path, &[]).await;
    let old_cached = get(addr, &path, &[]).await;
    assert_eq!(seen(&old_cached), seen(&old));
    let old_etag = old.headers["etag"].to_str().unwrap().to_owned();

    // Replaced by rename with another photo.
    let replacement = std::fs::read(root.join("photos").join(second)).unwrap();
    let temp = root.join("photos").join(".new");
    std::fs::write(&temp, &replacement).unwrap();
    std::fs::rename(&temp, &file).unwrap();
    let new = get(addr, &path, &[]).await;
    let reference = get(addr, &path, &[UNCACHED]).await;
    assert_eq!(seen(&new), seen(&reference));
    assert_ne!(new.body, old.body);
    let new_etag = new.headers["etag"].to_str().unwrap().to_owned();
    assert_ne!(new_etag, old_etag);
    assert_eq!(seen(&get(addr, &path, &[]).await), seen(&reference));

    // Validators: the old stamped tag no longer matches, the new one does.
    let stale = get(addr, &path, &[("if-none-match", &old_etag)]).await;
    assert_eq!(stale.status, StatusCode::OK);
    assert_eq!(stale.body, new.body);
    let fresh = get(addr, &path, &[("if-none-match", &new_etag)]).await;
    assert_eq!(fresh.status, StatusCode::NOT_MODIFIED);
    assert_eq!(fresh.headers["etag"], new_etag.as_str());
    assert!(fresh.body.is_empty());

    // Ranges are slices of the new stamped image; a resume with the old tag gets the whole
    // new image, one with the new tag the rest of it.
    let part = get(addr, &path, &[("range", "bytes=0-99")]).await;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(&part.body[..], &new.body[..100]);
    let stale_resume = get(
        addr,
        &path,
        &[("range", "bytes=100-"), ("if-range", &old_etag)],
    )
    .await;
    assert_eq!(stale_resume.status, StatusCode::OK);
    assert_eq!(stale_resume.body, new.body);
    let resumed = get(
        addr,
        &path,
        &[("range", "bytes=100-"), ("if-range", &new_etag)],
    )
    .await;
    assert_eq!(resumed.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(&resumed.body[..], &new.body[100..]);

    // HEAD describes the stamped image: its length and its tag.
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let head = client
        .request(
            Request::head(format!("http://{addr}{path}"))
                .header("user-agent", FIREFOX)
                .header("accept", "image/avif,image/webp,*/*")
                .header("accept-language", "en-GB,en;q=0.8")
                .body(Empty::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(
        head.headers()["content-length"],
        new.body.len().to_string().as_str()
    );
    assert_ne!(new.body.len(), replacement.len());
    assert_eq!(head.headers()["etag"], new_etag.as_str());

    // Same bytes, a new modification time: a new tag.
    let later = std::time::SystemTime::now() + Duration::from_secs(10);
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(later)
        .unwrap();
    let touched = get(addr, &path, &[]).await;
    assert_eq!(seen(&touched), seen(&get(addr, &path, &[UNCACHED]).await));
    assert_eq!(touched.body, new.body);
    assert_ne!(touched.headers["etag"], new_etag.as_str());

    // A precompressed variant that appears is served as ServeDir serves it, unstamped.
    std::fs::write(root.join("photos").join(format!("{first}.gz")), b"gz").unwrap();
    let gz = get(addr, &path, &[]).await;
    assert_eq!(gz.headers["content-encoding"], "gzip");
    assert_eq!(&gz.body[..], b"gz");
    std::fs::remove_file(root.join("photos").join(format!("{first}.gz"))).unwrap();
    assert_eq!(get(addr, &path, &[]).await.body, new.body);

    std::fs::remove_file(&file).unwrap();
    assert_eq!(get(addr, &path, &[]).await.status, StatusCode::NOT_FOUND);
    server.shutdown().await;
}
