//! Static mode: small images kept ready stamped, so a repeated request skips `ServeDir` and
//! the stamper.
//!
//! The Lenscap layer stamps every image `200` it passes on (XMP, scrubs, `Content-Length`,
//! `ETag` suffix); ranges and HEAD are cut from that stamped answer by the layer
//! (`tag::range`), which asks this service for the whole image. For a file that has not changed, the result is the
//! same every time. [`StaticSite`] keeps that result per URI path: the headers `ServeDir`
//! gives a plain `GET` of the file after the stamper's corrections, the stamped bytes and the
//! [`StampOutcome`], valid for one file version (modification time, length, inode: one
//! `stat` per request, as [`FileCache`] does) and one compiled stamp (a reload compiles a new
//! one, so its first requests stamp afresh).
//!
//! Only requests whose answer depends on nothing but the file take this path: a `GET` of an
//! image path (as the policy's classifier names them) while stamping is on, that has no
//! `Range`, `If-Range`, `If-Match`, `If-None-Match`, `If-Modified-Since` or
//! `If-Unmodified-Since`, has a plain path (no percent escapes, no `.`/`..` or empty
//! segments), names a regular file of at most [`MAX_FILE_BYTES`], and has no precompressed
//! `.br`/`.gz` variant beside it (checked on every request, as `ServeDir` does). Everything else
//! (`HEAD`, ranges, revalidations, folders, large files) goes through `ServeDir` and the
//! layer's stamper as before. A hit is marked [`Prestamped`] so the layer does not stamp it
//! again; the layer's verdict, limits, opt-out headers and metrics still run on it.
//!
//! A miss asks `ServeDir` for the file with a bare `GET` (the same answer the request would
//! get: it has no header `ServeDir` reads), stamps it with the layer's own code, and keeps
//! the result only if a second `stat` still shows the version the first one saw. The cache
//! holds at most [`MAX_TOTAL_BYTES`](super::cache::MAX_TOTAL_BYTES) of bodies; when full, arbitrary entries are evicted.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use tower::ServiceExt;
use tower_http::services::ServeDir;
use tower_http::services::fs::DefaultServeDirFallback;

use super::body::{SiteBody, text_response};
#[cfg(test)]
use super::cache::MAX_TOTAL_BYTES;
use super::cache::{Budgeted, Cost};
use super::config::StaticOptions;
use super::files::{FileCache, FileMeta, MAX_FILE_BYTES};
use super::gallery::{self, PageContext};
use super::gallery_thumbs::{Size, Thumbnails};
use crate::layer::PolicyHandle;
use crate::stamp::{Prestamped, Stamp, StampOutcome, Withheld, stamp_response};
use crate::tag::starts_with_ignore_case;

/// Bytes counted per entry besides its body (key, headers, bookkeeping).
const ENTRY_OVERHEAD: u64 = 512;

/// A finished image answer, as the layer's stamper left it.
struct Ready {
    headers: HeaderMap,
    body: Bytes,
    outcome: StampOutcome,
}

struct Entry {
    meta: FileMeta,
    stamp: Arc<Stamp>,
    ready: Arc<Ready>,
    cost: u64,
}

type Entries = Budgeted<String, Entry>;

impl Cost for Entry {
    fn cost(&self) -> u64 {
        self.cost
    }
}

/// A path found inside the folder.
struct Inside {
    meta: FileMeta,
    cost: u64,
}

impl Cost for Inside {
    fn cost(&self) -> u64 {
        self.cost
    }
}

/// A static site: `ServeDir` on the [`FileCache`] backend, the stamped answers, and the
/// gallery for folders without `index.html`.
pub(crate) struct StaticSite {
    dir: ServeDir<DefaultServeDirFallback, FileCache>,
    root: PathBuf,
    /// `root`, canonical: symbolic links are judged against it.
    real_root: PathBuf,
    entries: RwLock<Entries>,
    /// Paths found inside the folder, with the `stat` they were found under.
    inside: RwLock<Budgeted<String, Inside>>,
    options: StaticOptions,
    thumbnails: Thumbnails,
    policy: PolicyHandle,
}

/// Where [`StaticSite::route`] sends a request.
pub(crate) enum Route {
    /// A dot file, a link out of the folder, a gallery page that does not exist: 404.
    NotFound,
    /// A gallery page: folder and page number.
    Page(PathBuf, usize, Option<http::HeaderValue>),
    /// A thumbnail or display size of a photo.
    Thumb(PathBuf, Size, Option<http::HeaderValue>),
    /// The files, as usual ([`StaticSite::lookup`], then `ServeDir`).
    Files,
}

/// What [`StaticSite::lookup`] found.
pub(crate) enum Lookup {
    /// The stamped answer.
    Hit(Response<SiteBody>),
    /// Eligible, not cached (or stale): [`StaticSite::fill`] it.
    Miss(Miss),
    /// Not for this path: `ServeDir` and the layer, as usual.
    Pass,
}

/// An eligible request not yet cached.
pub(crate) struct Miss {
    key: String,
    uri: http::Uri,
    path: PathBuf,
    meta: FileMeta,
    stamp: Arc<Stamp>,
}

impl StaticSite {
    pub(crate) fn new(root: &Path, options: &StaticOptions, policy: PolicyHandle) -> StaticSite {
        StaticSite {
            dir: ServeDir::with_backend(root, FileCache::default())
                .precompressed_gzip()
                .precompressed_br()
                .append_index_html_on_directories(true),
            root: root.to_path_buf(),
            real_root: std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf()),
            entries: RwLock::default(),
            inside: RwLock::default(),
            options: options.clone(),
            thumbnails: Thumbnails::new(options),
            policy,
        }
    }

    /// Confinement first (dot files, links out of the folder: 404), then the gallery's own
    /// answers (pages for folders without `index.html`, thumbnails), then the files.
    pub(crate) fn route<B>(&self, request: &Request<B>) -> Route {
        let uri = request.uri();
        if !self.confined(uri.path()) {
            return Route::NotFound;
        }
        if !self.options.gallery || !matches!(*request.method(), Method::GET | Method::HEAD) {
            return Route::Files;
        }
        let Some(rel) = gallery::relative_path(uri.path()) else {
            return Route::Files;
        };
        let validator = request.headers().get(header::IF_NONE_MATCH).cloned();
        if let Some(size) = Size::from_query(uri.query())
            && gallery::photo_kind(uri.path()) == Some(gallery::PhotoKind::Thumbed)
        {
            return Route::Thumb(self.root.join(rel), size, validator);
        }
        if uri.path().ends_with('/') {
            let folder = self.root.join(&rel);
            if folder.is_dir() && !folder.join("index.html").exists() {
                return match gallery::page_of(uri.query()) {
                    Some(page) => Route::Page(rel, page, validator),
                    None => Route::NotFound,
                };
            }
        }
        Route::Files
    }

    /// Whether a path may be served: no dot file (unless `dotfiles`), nothing reached through
    /// a symbolic link out of the folder (unless `outside_symlinks`). Resolving every link of a
    /// path costs a system call per segment, so a path found inside is remembered with its
    /// file's `stat` and trusted while that `stat` stays the same (one call).
    fn confined(&self, uri_path: &str) -> bool {
        let Some(rel) = gallery::relative_path(uri_path) else {
            // ServeDir refuses these too.
            return false;
        };
        if !self.options.dotfiles && gallery::is_hidden(&rel) {
            return false;
        }
        if self.options.outside_symlinks {
            return true;
        }
        let path = self.root.join(&rel);
        let Ok(meta) = std::fs::metadata(&path) else {
            // Nothing there (a dangling link too): ServeDir answers 404.
            return true;
        };
        let meta = FileMeta::of(&meta);
        let known = {
            let inside = self.inside.read().unwrap_or_else(|e| e.into_inner());
            inside
                .by_path
                .get(uri_path)
                .is_some_and(|seen| seen.meta == meta)
        };
        if known {
            return true;
        }
        let inside =
            std::fs::canonicalize(&path).is_ok_and(|real| real.starts_with(&self.real_root));
        if inside {
            let entry = Inside {
                meta,
                cost: uri_path.len() as u64 + 96,
            };
            let mut cache = self.inside.write().unwrap_or_else(|e| e.into_inner());
            cache.insert(uri_path.to_owned(), entry);
        }
        inside
    }

    /// A gallery page, rendered off the worker thread (it reads folders).
    pub(crate) async fn page(
        self: Arc<Self>,
        rel: PathBuf,
        page: usize,
        validator: Option<http::HeaderValue>,
    ) -> Response<SiteBody> {
        let site = self.clone();
        let rendered = tokio::task::spawn_blocking(move || {
            let policy = site.policy.load();
            let reservation = policy.reservation();
            let context = PageContext {
                site_name: reservation.site_name.as_deref(),
                policy_path: &reservation.policy_path,
                trap_path: policy.trap_paths().first().map(String::as_str),
            };
            gallery::render(&site.real_root, &rel, page, &site.options, &context)
        })
        .await
        .ok()
        .flatten();
        let Some(html) = rendered else {
            return text_response(StatusCode::NOT_FOUND, "404 Not Found\n");
        };
        let etag = format!(
            "W/\"p{:016x}\"",
            crate::fingerprint::fnv1a64(&[html.as_bytes()])
        );
        let etag = http::HeaderValue::from_str(&etag).expect("hex is a header value");
        let fresh = validator.is_some_and(|v| {
            v.as_bytes()
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii() == etag.as_bytes())
        });
        let mut response = if fresh {
            let mut response = Response::new(SiteBody::full(Bytes::new()));
            *response.status_mut() = StatusCode::NOT_MODIFIED;
            response
        } else {
            let len = html.len();
            let mut response = Response::new(SiteBody::full(html));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/html; charset=utf-8"),
            );
            response
                .headers_mut()
                .insert(header::CONTENT_LENGTH, http::HeaderValue::from(len));
            response
        };
        let headers = response.headers_mut();
        headers.insert(header::ETAG, etag);
        headers.insert(
            header::CACHE_CONTROL,
            http::HeaderValue::from_static("no-cache"),
        );
        response
    }

    /// A thumbnail or display size.
    pub(crate) async fn thumb(
        &self,
        photo: PathBuf,
        size: Size,
        validator: Option<http::HeaderValue>,
    ) -> Response<SiteBody> {
        self.thumbnails.answer(photo, size, validator).await
    }

    /// `ServeDir`, for the requests this cache does not answer.
    pub(crate) fn dir(&self) -> &ServeDir<DefaultServeDirFallback, FileCache> {
        &self.dir
    }

    /// Whether `request` can be answered from the cache, and the answer if it is there.
    pub(crate) fn lookup<B>(&self, request: &Request<B>) -> Lookup {
        if request.method() != Method::GET {
            return Lookup::Pass;
        }
        // The layer in front stamps an image path's `200` with the current stamp; the policy
        // it judged the request under may be older by a reload, and then takes this answer
        // as stamped all the same (a `Prestamped` answer is never stamped twice).
        let policy = self.policy.load();
        let Some(stamp) = policy.tag.stamp.as_ref() else {
            return Lookup::Pass;
        };
        if !policy.classifier.is_image_path(request.uri().path()) {
            return Lookup::Pass;
        }
        let headers = request.headers();
        for name in [
            header::RANGE,
            header::IF_RANGE,
            header::IF_MATCH,
            header::IF_NONE_MATCH,
            header::IF_MODIFIED_SINCE,
            header::IF_UNMODIFIED_SINCE,
        ] {
            if headers.contains_key(name) {
                return Lookup::Pass;
            }
        }
        let uri_path = request.uri().path();
        let Some(path) = plain_path(&self.root, uri_path) else {
            return Lookup::Pass;
        };
        let meta = match std::fs::metadata(&path) {
            Ok(meta) if meta.is_file() && meta.len() <= MAX_FILE_BYTES => FileMeta::of(&meta),
            _ => return Lookup::Pass,
        };
        // ServeDir would try these when the client accepts br or gzip; when neither exists
        // its answer does not depend on Accept-Encoding.
        if headers.contains_key(header::ACCEPT_ENCODING)
            && (may_exist(&path, ".br") || may_exist(&path, ".gz"))
        {
            return Lookup::Pass;
        }
        let ready = {
            let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
            entries
                .by_path
                .get(uri_path)
                .filter(|entry| entry.meta == meta && Arc::ptr_eq(&entry.stamp, stamp))
                .map(|entry| entry.ready.clone())
        };
        match ready {
            Some(ready) => Lookup::Hit(answer(&ready)),
            None => Lookup::Miss(Miss {
                key: uri_path.to_owned(),
                uri: request.uri().clone(),
                path,
                meta,
                stamp: stamp.clone(),
            }),
        }
    }

    /// Builds the stamped answer for `miss` through `ServeDir` and the stamper, keeps it if
    /// the file did not change meanwhile, and answers with it.
    pub(crate) async fn fill(&self, miss: Miss) -> Response<SiteBody> {
        let Miss {
            key,
            uri,
            path,
            meta,
            stamp,
        } = miss;
        let mut bare = Request::new(Empty::<Bytes>::new());
        *bare.uri_mut() = uri;
        let response = match self.dir.clone().oneshot(bare).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let image = response.status() == StatusCode::OK
            && !response.headers().contains_key(header::CONTENT_ENCODING)
            && !response.headers().contains_key(header::CONTENT_RANGE)
            && response
                .headers()
                .get(header::CONTENT_TYPE)
                .is_some_and(|ct| starts_with_ignore_case(ct.as_bytes(), b"image/"));
        if !image {
            // The layer decides as usual (it stamps only image/* answers).
            return response.map(SiteBody::file);
        }
        let stamped = stamp_response(response, stamp.clone()).await;
        let (parts, body) = stamped.into_parts();
        let body = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            // An in-memory file does not fail to read; a file that vanished mid-read might.
            Err(_) => {
                return text_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "500 Internal Server Error: the file could not be read.\n",
                );
            }
        };
        if parts.status != StatusCode::OK || parts.extensions.get::<Withheld>().is_some() {
            // Withheld (a format whose metadata cannot be read, so may carry a location): the
            // stamper's own answer, never cached, never replayed as a 200.
            return Response::from_parts(parts, SiteBody::full(body));
        }
        let Some(outcome) = parts.extensions.get::<StampOutcome>().copied() else {
            return text_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "500 Internal Server Error: the image could not be stamped.\n",
            );
        };
        let ready = Arc::new(Ready {
            headers: parts.headers,
            body,
            outcome,
        });
        let whole = ready
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            == Some(ready.body.len() as u64);
        let unchanged = std::fs::metadata(&path).is_ok_and(|now| FileMeta::of(&now) == meta);
        if whole && unchanged {
            let cost = ready.body.len() as u64 + key.len() as u64 + ENTRY_OVERHEAD;
            let entry = Entry {
                meta,
                stamp: stamp.clone(),
                ready: ready.clone(),
                cost,
            };
            let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
            entries.insert(key, entry);
        }
        answer(&ready)
    }
}

/// The response for a cached answer; the layer adds its headers and skips stamping.
fn answer(ready: &Ready) -> Response<SiteBody> {
    let mut response = Response::new(SiteBody::full(ready.body.clone()));
    *response.headers_mut() = ready.headers.clone();
    let extensions = response.extensions_mut();
    extensions.insert(ready.outcome);
    extensions.insert(Prestamped);
    response
}

/// The file `ServeDir` would open for `uri_path`, for paths whose mapping is plain: ASCII
/// segments without percent escapes, backslashes or colons, none empty, `.` or `..`.
fn plain_path(root: &Path, uri_path: &str) -> Option<PathBuf> {
    let rel = uri_path.strip_prefix('/')?;
    if rel.is_empty()
        || !rel
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.' | b'~'))
    {
        return None;
    }
    if rel
        .split('/')
        .any(|segment| segment.is_empty() || segment == "." || segment == "..")
    {
        return None;
    }
    Some(root.join(rel))
}

/// Whether `path` + `suffix` might exist (anything but "not found" counts).
fn may_exist(path: &Path, suffix: &str) -> bool {
    let mut variant = std::ffi::OsString::with_capacity(path.as_os_str().len() + suffix.len());
    variant.push(path);
    variant.push(suffix);
    !matches!(std::fs::metadata(&variant), Err(e) if e.kind() == io::ErrorKind::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stamp::StampConfig;

    /// A GET of an image path under stamping is looked up (a miss, then a hit once filled);
    /// a HEAD, a range, a page and a policy without stamping are not.
    #[tokio::test]
    async fn image_gets_are_cached_under_the_current_stamp() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/gallery");
        let policy = crate::layer::PolicyHandle::new(crate::Policy::embedded().unwrap());
        let site = StaticSite::new(&root, &StaticOptions::default(), policy.clone());
        let photo = "/photos/beer-garden-01.jpg";
        let get = |path: &str| Request::get(path).body(()).unwrap();
        let Lookup::Miss(miss) = site.lookup(&get(photo)) else {
            panic!("the first GET of a photo is a miss");
        };
        let filled = site.fill(miss).await;
        assert_eq!(filled.status(), StatusCode::OK);
        let Lookup::Hit(hit) = site.lookup(&get(photo)) else {
            panic!("the second GET of a photo is a hit");
        };
        assert!(hit.extensions().get::<Prestamped>().is_some());
        assert_eq!(
            hit.headers()[header::CONTENT_LENGTH],
            filled.headers()[header::CONTENT_LENGTH]
        );
        let head = Request::head(photo).body(()).unwrap();
        assert!(matches!(site.lookup(&head), Lookup::Pass));
        let ranged = Request::get(photo)
            .header(header::RANGE, "bytes=0-9")
            .body(())
            .unwrap();
        assert!(matches!(site.lookup(&ranged), Lookup::Pass));
        assert!(matches!(site.lookup(&get("/index.html")), Lookup::Pass));

        let unstamped = "[stamp]\nxmp = false\nscrub_gps = false\nscrub_serials = false\n";
        policy.store(crate::Policy::from_toml_str(unstamped, None).unwrap());
        assert!(matches!(site.lookup(&get(photo)), Lookup::Pass));
    }

    #[test]
    fn only_plain_paths_are_mapped() {
        let root = Path::new("/srv/g");
        assert_eq!(
            plain_path(root, "/photos/a-1_b.JPG"),
            Some(PathBuf::from("/srv/g/photos/a-1_b.JPG"))
        );
        for path in [
            "/",
            "",
            "/photos/",
            "/photos//a.jpg",
            "/./a.jpg",
            "/../a.jpg",
            "/photos/../a.jpg",
            "/a%20b.jpg",
            "/c:/a.jpg",
            "/a\\b.jpg",
            "/caf\u{e9}.jpg",
        ] {
            assert_eq!(plain_path(root, path), None, "{path}");
        }
    }

    #[test]
    fn the_cache_stays_within_its_byte_budget() {
        let stamp = Arc::new(Stamp::compile(&StampConfig::default()).unwrap());
        let body = Bytes::from(vec![7u8; MAX_FILE_BYTES as usize]);
        let mut entries = Entries::default();
        let count = MAX_TOTAL_BYTES / MAX_FILE_BYTES + 10;
        for i in 0..count {
            let meta = std::fs::metadata(std::env::temp_dir()).unwrap();
            let ready = Arc::new(Ready {
                headers: HeaderMap::new(),
                body: body.clone(),
                outcome: StampOutcome::Stamped,
            });
            let key = format!("/p/{i}");
            let cost = body.len() as u64 + key.len() as u64 + ENTRY_OVERHEAD;
            entries.insert(
                key,
                Entry {
                    meta: FileMeta::of(&meta),
                    stamp: stamp.clone(),
                    ready,
                    cost,
                },
            );
            assert!(entries.total <= MAX_TOTAL_BYTES);
            let held: u64 = entries.by_path.values().map(|e| e.cost).sum();
            assert_eq!(held, entries.total);
        }
        assert!(entries.by_path.contains_key(&format!("/p/{}", count - 1)));
    }
}
