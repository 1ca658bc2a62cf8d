//! A bare folder of phone photos served by `lenscap serve`: an index of albums at `/` from
//! which every browser-viewable photo is reachable, album pages whose thumbnails a page view
//! pays for (the default policy, limits on), thumbnails without metadata and with ETags,
//! HEIC listed for download, dot files and links out of the folder answered 404.

mod gallery_corpus;

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use lenscap::server::{Overrides, RunningServer, ServeOptions, Server};

use gallery_corpus::{Corpus, build, contains, exiftool_gps, uri};

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:150.0) Gecko/20100101 Firefox/150.0";

async fn start(corpus: &Corpus, extra: &str) -> RunningServer {
    let dir = corpus.root.with_extension("state");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("lenscap.toml");
    std::fs::write(
        &config,
        format!(
            // The crawl turns pages as fast as a script can, not at a person's pace (which
            // tests/detection_envelope.rs holds people to): the page pace is opened wide.
            "[server]\ngallery_cache = {:?}\n{extra}\n[reservation]\nsite_name = \"The Crown & Anchor\"\n[limits]\npage_pace = {{ rate = \"600/min\", burst = 100 }}\nanonymous_page_pace = {{ rate = \"600/min\", burst = 100 }}\n",
            dir.join("thumbs")
        ),
    )
    .unwrap();
    Server::bind(ServeOptions {
        config: Some(config),
        overrides: Overrides {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            admin: Some(None),
            root: Some(corpus.root.clone()),
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

impl Answer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A browser on plain HTTP: cookies kept, Referer sent, and the fetch metadata Firefox sends
/// to a localhost origin (a potentially trustworthy one).
struct Browser {
    addr: SocketAddr,
    cookie: Option<String>,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>,
}

impl Browser {
    fn new(addr: SocketAddr) -> Browser {
        Browser {
            addr,
            cookie: None,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    async fn fetch(
        &mut self,
        path: &str,
        accept: &str,
        referer: Option<&str>,
        extra: &[(&str, &str)],
    ) -> Answer {
        let mut request = Request::get(format!("http://{}{path}", self.addr))
            .header(header::USER_AGENT, FIREFOX)
            .header(header::ACCEPT, accept)
            .header(header::ACCEPT_LANGUAGE, "en-GB,en;q=0.8")
            .header(header::ACCEPT_ENCODING, "gzip, deflate, br");
        if let Some(referer) = referer {
            request = request.header(header::REFERER, format!("http://{}{referer}", self.addr));
        }
        let (dest, mode) = match accept.split(',').next() {
            Some("text/html") => ("document", "navigate"),
            Some("text/css") => ("style", "no-cors"),
            _ => ("image", "no-cors"),
        };
        let site = if referer.is_some() {
            "same-origin"
        } else {
            "none"
        };
        request = request
            .header("sec-fetch-dest", dest)
            .header("sec-fetch-mode", mode)
            .header("sec-fetch-site", site);
        if let Some(cookie) = &self.cookie {
            request = request.header(header::COOKIE, cookie);
        }
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        let response = self
            .client
            .request(request.body(Empty::new()).unwrap())
            .await
            .unwrap();
        if let Some(set) = response.headers().get(header::SET_COOKIE) {
            self.cookie = Some(set.to_str().unwrap().split(';').next().unwrap().to_owned());
        }
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn page(&mut self, path: &str, referer: Option<&str>) -> Answer {
        let page = self
            .fetch(
                path,
                "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
                referer,
                &[],
            )
            .await;
        self.render(path, &page).await;
        page
    }

    /// Fetches the render proof the page links, as a browser fetches a page's stylesheets.
    async fn render(&mut self, path: &str, page: &Answer) {
        let html = String::from_utf8_lossy(&page.body);
        let Some(proof) = common::render_proof_link(&html).map(str::to_owned) else {
            return;
        };
        let answer = self
            .fetch(&proof, "text/css,*/*;q=0.1", Some(path), &[])
            .await;
        assert_eq!(answer.status, StatusCode::OK, "the render proof of {path}");
    }

    async fn image(&mut self, path: &str, referer: &str) -> Answer {
        self.fetch(path, "image/avif,image/webp,*/*", Some(referer), &[])
            .await
    }
}

/// The values of `attr="…"` in `html`, entities for `&` undone.
fn attrs(html: &str, attr: &str) -> Vec<String> {
    let needle = format!("{attr}=\"");
    html.match_indices(&needle)
        .map(|(at, _)| {
            let rest = &html[at + needle.len()..];
            rest[..rest.find('"').unwrap()].replace("&amp;", "&")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_viewable_photo_is_reachable_from_the_index_and_paid_for_by_page_views() {
    let corpus = build("reach");
    let server = start(&corpus, "").await;
    let mut browser = Browser::new(server.local_addr());

    let index = browser.page("/", None).await;
    assert_eq!(index.status, StatusCode::OK);
    assert_eq!(index.headers["content-type"], "text/html; charset=utf-8");
    let html = index.text();
    assert!(
        html.contains("<title>The Crown &amp; Anchor</title>"),
        "{html}"
    );
    assert!(html.contains("name=\"viewport\""));
    assert!(!html.contains("<script"), "no script: {html}");
    assert!(
        !html.contains("src=\"http") && !html.contains("href=\"http"),
        "no external assets: {html}"
    );
    assert!(
        html.contains("href=\"/ai-policy\""),
        "the policy page in the footer: {html}"
    );
    // Albums newest first, with counts and covers.
    let summer = html
        .find("Summer Terrace 2026")
        .expect("summer album listed");
    let quiz = html.find("Quiz Night").expect("quiz album listed");
    assert!(summer < quiz, "newest album first");
    assert_eq!(html.matches("5 photos").count(), 2, "{html}");
    let albums: Vec<String> = attrs(&html, "href")
        .into_iter()
        .filter(|h| h.ends_with('/') && h != "/" && !h.starts_with("/lenscap-trap"))
        .collect();
    assert_eq!(albums, ["/Summer%20Terrace%202026/", "/Quiz%20Night/"]);
    let covers = attrs(&html, "src");
    assert_eq!(covers.len(), 2);
    for cover in &covers {
        let thumb = browser.image(cover, "/").await;
        assert_eq!(thumb.status, StatusCode::OK, "cover {cover}");
    }

    let mut reached = Vec::new();
    for album in &albums {
        let page = browser.page(album, Some("/")).await;
        assert_eq!(page.status, StatusCode::OK, "{album}");
        let html = page.text();
        assert!(
            html.contains("The Crown &amp; Anchor"),
            "site name on the album page"
        );
        for src in attrs(&html, "src") {
            assert!(src.contains("?size=thumb&v="), "{src}");
            assert!(html.contains("loading=\"lazy\""));
            let thumb = browser.image(&src, album).await;
            assert_eq!(
                thumb.status,
                StatusCode::OK,
                "thumbnail {src} refused: {:?}",
                thumb.headers
            );
            assert_eq!(thumb.headers["content-type"], "image/jpeg");
            assert!(thumb.headers.contains_key("etag"));
            let decoded = image::load_from_memory(&thumb.body).expect("a thumbnail decodes");
            assert!(decoded.width() <= 480 && decoded.height() <= 480);
            assert!(
                exiftool_gps(&thumb.body, &src).is_empty(),
                "{src} carries GPS"
            );
            assert!(!contains(&thumb.body, gallery_corpus::SERIAL.as_bytes()));
            assert!(!contains(&thumb.body, &gallery_corpus::GPS_LATITUDE));
            // Revalidation with the tag it was sent with.
            let etag = thumb.headers["etag"].to_str().unwrap().to_owned();
            let again = browser
                .fetch(
                    &src,
                    "image/avif,image/webp,*/*",
                    Some(album),
                    &[("if-none-match", &etag)],
                )
                .await;
            assert_eq!(again.status, StatusCode::NOT_MODIFIED, "{src}");
        }
        for link in attrs(&html, "href") {
            if link.starts_with(album.as_str()) && link.len() > album.len() {
                reached.push(link);
            }
        }
    }
    // HEIC: a download link, never an <img>.
    for heic in &corpus.heic {
        let link = uri(heic);
        assert!(reached.contains(&link), "{heic} listed");
    }
    let mut viewable: Vec<String> = corpus.viewable.iter().map(|rel| uri(rel)).collect();
    viewable.sort();
    let mut photos: Vec<String> = reached
        .iter()
        .filter(|l| !l.to_ascii_lowercase().ends_with(".heic"))
        .map(|l| l.trim_end_matches("?size=display").to_owned())
        .collect();
    photos.sort();
    photos.dedup();
    assert_eq!(photos, viewable, "every browser-viewable photo is linked");
    // Opening each photo from its album, as a person does.
    for photo in &photos {
        let opened = browser.page(photo, Some("/Quiz%20Night/")).await;
        assert_eq!(opened.status, StatusCode::OK, "{photo}");
        assert!(
            opened.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("image/")
        );
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heic_is_listed_for_download_and_gallery_off_leaves_folders_alone() {
    let corpus = build("heic");
    let server = start(&corpus, "").await;
    let mut browser = Browser::new(server.local_addr());
    let album = browser.page("/Quiz%20Night/", Some("/")).await.text();
    assert!(
        album.contains("href=\"/Quiz%20Night/IMG_0104.heic\" download"),
        "{album}"
    );
    assert!(
        !album.contains("src=\"/Quiz%20Night/IMG_0104.heic"),
        "{album}"
    );
    // A folder's own index.html wins over the gallery.
    std::fs::write(
        corpus.root.join("Quiz Night/index.html"),
        "<p>our own page</p>",
    )
    .unwrap();
    let own = browser.page("/Quiz%20Night/", Some("/")).await;
    assert!(own.text().contains("our own page"), "{}", own.text());
    server.shutdown().await;

    let off = start(&corpus, "gallery = \"off\"").await;
    let mut browser = Browser::new(off.local_addr());
    assert_eq!(browser.page("/", None).await.status, StatusCode::NOT_FOUND);
    off.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_files_and_links_out_of_the_folder_answer_404() {
    let corpus = build("confine");
    let root = &corpus.root;
    std::fs::write(root.join(".env"), "SECRET=1").unwrap();
    std::fs::create_dir_all(root.join(".git")).unwrap();
    std::fs::write(root.join(".git/config"), "[core]").unwrap();
    std::fs::write(
        root.join("Quiz Night/.hidden.jpg"),
        gallery_corpus::jpeg(8, 8, 1),
    )
    .unwrap();
    let outside: PathBuf = root.with_extension("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.jpg"), gallery_corpus::jpeg(8, 8, 2)).unwrap();
    std::os::unix::fs::symlink(outside.join("secret.jpg"), root.join("linked.jpg")).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("Linked Album")).unwrap();
    std::os::unix::fs::symlink(
        root.join("Quiz Night/IMG_0101.JPG"),
        root.join("inside.jpg"),
    )
    .unwrap();

    let server = start(&corpus, "").await;
    let mut browser = Browser::new(server.local_addr());
    for path in [
        "/.env",
        "//.env",
        "/./.env",
        "/Quiz%20Night%2F.hidden.jpg",
        "/.git/config",
        "/%2Eenv",
        "/Quiz%20Night/.hidden.jpg",
        "/linked.jpg",
        "/Linked%20Album/secret.jpg",
        "/Linked%20Album/",
        "/.well-known/security.txt",
    ] {
        let answer = browser.page(path, None).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
    }
    // Lenscap's own /.well-known/ answer still comes.
    assert_eq!(
        browser.page("/.well-known/tdmrep.json", None).await.status,
        StatusCode::OK
    );
    // A link inside the folder is followed; the outside album is not listed.
    assert_eq!(
        browser.page("/inside.jpg", None).await.status,
        StatusCode::OK
    );
    let index = browser.page("/", None).await.text();
    assert!(!index.contains("Linked Album"), "{index}");
    assert!(!index.contains(".hidden"), "{index}");
    server.shutdown().await;

    let allowed = start(&corpus, "dotfiles = true\noutside_symlinks = true").await;
    let mut browser = Browser::new(allowed.local_addr());
    assert_eq!(browser.page("/.env", None).await.status, StatusCode::OK);
    assert_eq!(
        browser.page("/linked.jpg", None).await.status,
        StatusCode::OK
    );
    allowed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_view_pays_for_every_thumbnail_of_a_big_album_and_thumbnails_stand_upright() {
    let corpus = build("big");
    let big = corpus.root.join("Big Night");
    std::fs::create_dir_all(&big).unwrap();
    for n in 1..=60 {
        std::fs::write(
            big.join(format!("IMG_{n:04}.jpg")),
            gallery_corpus::jpeg(16, 12, n),
        )
        .unwrap();
    }
    let server = start(&corpus, "").await;
    let mut browser = Browser::new(server.local_addr());
    browser.page("/", None).await;
    let mut thumbs = 0;
    for page in ["/Big%20Night/", "/Big%20Night/?page=2"] {
        let html = browser.page(page, Some("/")).await.text();
        for src in attrs(&html, "src") {
            let thumb = browser.image(&src, page).await;
            assert_eq!(
                thumb.status,
                StatusCode::OK,
                "{src} from {page}: {:?}",
                thumb.headers
            );
            // Written 16×12 with Exif orientation 6 (turn clockwise): upright it is 12×16.
            let decoded = image::load_from_memory(&thumb.body).unwrap();
            assert_eq!((decoded.width(), decoded.height()), (12, 16), "{src}");
            thumbs += 1;
        }
    }
    assert_eq!(thumbs, 60);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_named_by_a_relative_path_lists_its_albums() {
    let corpus = build("relative");
    let cwd = std::env::current_dir().unwrap();
    let up: PathBuf = cwd.components().skip(1).map(|_| "..").collect();
    let relative = up.join(corpus.root.strip_prefix("/").unwrap());
    assert!(relative.is_relative() && relative.is_dir(), "{relative:?}");
    let server = Server::bind(ServeOptions {
        config: None,
        overrides: Overrides {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            admin: Some(None),
            root: Some(relative),
            ..Overrides::default()
        },
    })
    .await
    .expect("server starts");
    let mut browser = Browser::new(server.local_addr());
    let index = browser.page("/", None).await.text();
    assert!(
        index.contains("Quiz Night") && index.contains("Summer Terrace 2026"),
        "{index}"
    );
    server.shutdown().await;
}
