//! A file-system [`Backend`] for tower-http's `ServeDir` that keeps small files in memory.
//!
//! `ServeDir` on the default `TokioBackend` sends every file operation through
//! `spawn_blocking`: with precompressed variants configured, one image costs a directory
//! check, two failed opens (`.br`, `.gz`), the open, an `fstat` and two reads, each a hand-off
//! to the blocking pool and back. Profiled under load, the thread switches were most of the
//! server's time. This backend answers `stat` and `open` on the worker thread, as nginx does
//! in its event loop, and serves files of at most [`MAX_FILE_BYTES`] from memory; larger
//! files (and reads of a file not yet cached) still go through the blocking pool.
//!
//! Every hit is validated by a `stat` of the path (modification time, length and inode), so an
//! edited or replaced file is read afresh on the next request; nothing is served stale. The
//! cache holds at most [`MAX_TOTAL_BYTES`](super::cache::MAX_TOTAL_BYTES); when full, arbitrary entries are evicted.
//! `ServeDir` itself still builds every response it is asked for (ETag, Last-Modified, Range,
//! conditional requests, precompressed variants), so its semantics are unchanged; repeated
//! plain `GET`s of stamped images are answered before it, from `super::stamped`.
//!
//! A `stat` blocks the worker for a few microseconds on a local disk; on a network file
//! system it can take longer (the same trade nginx makes without `aio threads`).

use std::future::{Future, Ready, ready};
use std::io::{self, Cursor, Read, SeekFrom};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncSeek, ReadBuf};
use tower_http::services::fs::{Backend, File, Metadata, TokioBackend, TokioFile};

#[cfg(test)]
use super::cache::MAX_TOTAL_BYTES;
use super::cache::{Budgeted, Cost};

/// Files up to this size are kept in memory.
pub(crate) const MAX_FILE_BYTES: u64 = 256 * 1024;

/// What `ServeDir` needs to know about a file: taken from one `stat`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FileMeta {
    is_dir: bool,
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl FileMeta {
    pub(crate) fn of(meta: &std::fs::Metadata) -> FileMeta {
        FileMeta {
            is_dir: meta.is_dir(),
            modified: meta.modified().ok(),
            len: meta.len(),
            inode: inode(meta),
        }
    }
}

/// The inode of a `stat` (0 where there is none).
#[cfg(unix)]
pub(crate) fn inode(meta: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(meta)
}

#[cfg(not(unix))]
pub(crate) fn inode(_meta: &std::fs::Metadata) -> u64 {
    0
}

impl Metadata for FileMeta {
    fn is_dir(&self) -> bool {
        self.is_dir
    }

    fn modified(&self) -> io::Result<SystemTime> {
        self.modified
            .ok_or_else(|| io::Error::new(io::ErrorKind::Unsupported, "no modification time"))
    }

    fn len(&self) -> u64 {
        self.len
    }
}

/// The contents of one small file and the `stat` they were read under.
struct Entry {
    meta: FileMeta,
    bytes: Bytes,
}

type Entries = Budgeted<PathBuf, Entry>;

impl Cost for Entry {
    fn cost(&self) -> u64 {
        self.bytes.len() as u64
    }
}

// === impl FileCache ===

/// The backend: cheap to clone, shared by every clone of one site's `ServeDir`.
#[derive(Clone, Default)]
pub(crate) struct FileCache {
    entries: Arc<RwLock<Entries>>,
}

impl std::fmt::Debug for FileCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileCache").finish_non_exhaustive()
    }
}

impl FileCache {
    fn cached(&self, path: &Path, meta: &FileMeta) -> Option<Bytes> {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        entries
            .by_path
            .get(path)
            .filter(|entry| entry.meta == *meta)
            .map(|entry| entry.bytes.clone())
    }

    fn store(&self, path: PathBuf, entry: Entry) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        entries.insert(path, entry);
    }
}

/// Reads a small file whole, with the `stat` of the handle it was read from.
fn read_small(path: &Path) -> io::Result<Option<Entry>> {
    let mut file = std::fs::File::open(path)?;
    let meta = FileMeta::of(&file.metadata()?);
    if meta.is_dir || meta.len > MAX_FILE_BYTES {
        return Ok(None);
    }
    let mut bytes = Vec::with_capacity(meta.len as usize);
    file.read_to_end(&mut bytes)?;
    if bytes.len() as u64 != meta.len {
        // Written to while we read: serve what we read, but do not keep it.
        return Ok(Some(Entry {
            meta: FileMeta {
                len: bytes.len() as u64,
                modified: None,
                ..meta
            },
            bytes: bytes.into(),
        }));
    }
    Ok(Some(Entry {
        meta,
        bytes: bytes.into(),
    }))
}

type BoxedOpen = Pin<Box<dyn Future<Output = io::Result<CachedFile>> + Send>>;

/// The future of [`FileCache::open`]: ready at once on a hit, a blocking read otherwise.
pub(crate) enum OpenFuture {
    Ready(Option<io::Result<CachedFile>>),
    Blocking(BoxedOpen),
}

impl Future for OpenFuture {
    type Output = io::Result<CachedFile>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            OpenFuture::Ready(result) => {
                Poll::Ready(result.take().expect("OpenFuture polled after completion"))
            }
            OpenFuture::Blocking(future) => future.as_mut().poll(cx),
        }
    }
}

impl Backend for FileCache {
    type File = CachedFile;
    type Metadata = FileMeta;
    type OpenFuture = OpenFuture;
    type MetadataFuture = Ready<io::Result<FileMeta>>;

    fn open(&self, path: PathBuf) -> OpenFuture {
        let meta = match std::fs::metadata(&path) {
            Ok(meta) => FileMeta::of(&meta),
            Err(error) => return OpenFuture::Ready(Some(Err(not_found_if_unnameable(error)))),
        };
        if let Some(bytes) = self.cached(&path, &meta) {
            return OpenFuture::Ready(Some(Ok(CachedFile::memory(bytes, meta))));
        }
        if meta.is_dir || meta.len > MAX_FILE_BYTES {
            let backend = TokioBackend;
            let open = backend.open(path);
            return OpenFuture::Blocking(Box::pin(async move {
                let file = open.await?;
                let meta = FileMeta::of(&file.metadata().await?);
                Ok(CachedFile::Disk { file, meta })
            }));
        }
        let cache = self.clone();
        OpenFuture::Blocking(Box::pin(async move {
            let read = {
                let path = path.clone();
                tokio::task::spawn_blocking(move || read_small(&path))
            };
            let entry = read.await.map_err(io::Error::other)?;
            match entry? {
                Some(entry) => {
                    let file = CachedFile::memory(entry.bytes.clone(), entry.meta);
                    if entry.meta.modified.is_some() {
                        cache.store(path, entry);
                    }
                    Ok(file)
                }
                // It grew past the limit (or became a folder) since the stat: read from disk.
                None => {
                    let file = TokioBackend.open(path).await?;
                    let meta = FileMeta::of(&file.metadata().await?);
                    Ok(CachedFile::Disk { file, meta })
                }
            }
        }))
    }

    fn metadata(&self, path: PathBuf) -> Ready<io::Result<FileMeta>> {
        ready(
            std::fs::metadata(path)
                .map(|meta| FileMeta::of(&meta))
                .map_err(not_found_if_unnameable),
        )
    }
}

/// A name the file system cannot hold (a segment over 255 bytes) names no file: "not found",
/// which `ServeDir` answers 404, rather than an error it answers 500.
fn not_found_if_unnameable(error: io::Error) -> io::Error {
    if error.kind() == io::ErrorKind::InvalidFilename {
        io::Error::new(io::ErrorKind::NotFound, error)
    } else {
        error
    }
}

// === impl CachedFile ===

/// An opened file: bytes in memory, or a file read through the blocking pool.
pub(crate) enum CachedFile {
    Memory {
        cursor: Cursor<Bytes>,
        meta: FileMeta,
    },
    Disk {
        file: TokioFile,
        meta: FileMeta,
    },
}

impl CachedFile {
    fn memory(bytes: Bytes, meta: FileMeta) -> CachedFile {
        CachedFile::Memory {
            cursor: Cursor::new(bytes),
            meta,
        }
    }
}

impl AsyncRead for CachedFile {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            CachedFile::Memory { cursor, .. } => Pin::new(cursor).poll_read(cx, buf),
            CachedFile::Disk { file, .. } => Pin::new(file).poll_read(cx, buf),
        }
    }
}

impl AsyncSeek for CachedFile {
    fn start_seek(self: Pin<&mut Self>, position: SeekFrom) -> io::Result<()> {
        match self.get_mut() {
            CachedFile::Memory { cursor, .. } => Pin::new(cursor).start_seek(position),
            CachedFile::Disk { file, .. } => Pin::new(file).start_seek(position),
        }
    }

    fn poll_complete(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        match self.get_mut() {
            CachedFile::Memory { cursor, .. } => Pin::new(cursor).poll_complete(cx),
            CachedFile::Disk { file, .. } => Pin::new(file).poll_complete(cx),
        }
    }
}

impl File for CachedFile {
    type Metadata = FileMeta;
    type MetadataFuture<'a> = Ready<io::Result<FileMeta>>;

    fn metadata(&self) -> Ready<io::Result<FileMeta>> {
        match self {
            CachedFile::Memory { meta, .. } | CachedFile::Disk { meta, .. } => ready(Ok(*meta)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Request, StatusCode};
    use http_body_util::{BodyExt, Empty};
    use tower::ServiceExt;
    use tower_http::services::ServeDir;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("lenscap-files-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("photos")).unwrap();
        dir
    }

    /// Status, the headers ServeDir sets, and the body.
    async fn fetch<B: Backend>(
        dir: &ServeDir<tower_http::services::fs::DefaultServeDirFallback, B>,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Vec<(String, String)>, Bytes) {
        let mut request = Request::builder().method(method).uri(path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = dir
            .clone()
            .oneshot(request.body(Empty::<Bytes>::new()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let mut seen: Vec<(String, String)> = response
            .headers()
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        seen.sort();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, seen, body)
    }

    fn served(
        root: &Path,
    ) -> ServeDir<tower_http::services::fs::DefaultServeDirFallback, FileCache> {
        ServeDir::with_backend(root, FileCache::default())
            .precompressed_gzip()
            .precompressed_br()
            .append_index_html_on_directories(true)
    }

    /// Method, path, request headers.
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>);

    #[tokio::test]
    async fn answers_exactly_as_the_tokio_backend_cold_and_cached() {
        let root = scratch("same");
        std::fs::write(root.join("index.html"), "<h1>The Crown</h1>").unwrap();
        std::fs::write(
            root.join("photos/a.jpg"),
            b"\xFF\xD8\xFF\xE0jpeg-bytes-0123456789",
        )
        .unwrap();
        std::fs::write(root.join("notes.txt"), "plain notes").unwrap();
        std::fs::write(root.join("notes.txt.gz"), b"\x1f\x8bnot-really-gzip").unwrap();
        let big: Vec<u8> = (0..MAX_FILE_BYTES + 1000)
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(root.join("photos/big.png"), &big).unwrap();

        let plain = ServeDir::new(&root)
            .precompressed_gzip()
            .precompressed_br()
            .append_index_html_on_directories(true);
        let cached = served(&root);
        let (_, headers, _) = fetch(&plain, "GET", "/photos/a.jpg", &[]).await;
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        let (etag, modified) = (header("etag"), header("last-modified"));
        let requests: Vec<Case<'_>> = vec![
            ("GET", "/", vec![]),
            ("GET", "/photos", vec![]),
            ("GET", "/photos/a.jpg", vec![]),
            ("HEAD", "/photos/a.jpg", vec![]),
            ("GET", "/photos/a.jpg", vec![("range", "bytes=2-5")]),
            ("GET", "/photos/a.jpg", vec![("range", "bytes=-4")]),
            ("GET", "/photos/a.jpg", vec![("range", "bytes=100-200")]),
            ("GET", "/photos/a.jpg", vec![("if-none-match", &etag)]),
            ("GET", "/photos/a.jpg", vec![("if-match", "\"other\"")]),
            (
                "GET",
                "/photos/a.jpg",
                vec![("if-modified-since", &modified)],
            ),
            ("GET", "/notes.txt", vec![("accept-encoding", "gzip, br")]),
            ("GET", "/notes.txt", vec![("accept-encoding", "br")]),
            ("GET", "/photos/big.png", vec![]),
            (
                "GET",
                "/photos/big.png",
                vec![("range", "bytes=262000-262200")],
            ),
            ("GET", "/photos/nope.jpg", vec![]),
            ("GET", "/photos/a.jpg/", vec![]),
        ];
        for round in ["cold", "cached"] {
            for (method, path, headers) in &requests {
                let want = fetch(&plain, method, path, headers).await;
                let got = fetch(&cached, method, path, headers).await;
                assert_eq!(got, want, "{round}: {method} {path} {headers:?}");
            }
        }
    }

    #[tokio::test]
    async fn an_edited_or_replaced_file_is_served_afresh() {
        let root = scratch("edit");
        let path = root.join("photos/a.jpg");
        std::fs::write(&path, b"first").unwrap();
        let dir = served(&root);
        let (_, _, body) = fetch(&dir, "GET", "/photos/a.jpg", &[]).await;
        assert_eq!(&body[..], b"first");
        let (_, first_headers, body) = fetch(&dir, "GET", "/photos/a.jpg", &[]).await;
        assert_eq!(&body[..], b"first");

        // Same length, new modification time.
        std::fs::write(&path, b"again").unwrap();
        let later = SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later)
            .unwrap();
        let (_, headers, body) = fetch(&dir, "GET", "/photos/a.jpg", &[]).await;
        assert_eq!(&body[..], b"again");
        assert_ne!(headers, first_headers);

        // Replaced by rename, another length.
        let fresh = root.join("photos/.a.jpg.new");
        std::fs::write(&fresh, b"third version").unwrap();
        std::fs::rename(&fresh, &path).unwrap();
        let (_, _, body) = fetch(&dir, "GET", "/photos/a.jpg", &[]).await;
        assert_eq!(&body[..], b"third version");

        std::fs::remove_file(&path).unwrap();
        let (status, _, _) = fetch(&dir, "GET", "/photos/a.jpg", &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[test]
    fn the_cache_stays_within_its_byte_budget() {
        static CONTENT: [u8; MAX_FILE_BYTES as usize] = [7; MAX_FILE_BYTES as usize];
        let mut entries = Entries::default();
        let count = MAX_TOTAL_BYTES / MAX_FILE_BYTES + 10;
        for i in 0..count {
            let meta = FileMeta {
                is_dir: false,
                modified: Some(SystemTime::UNIX_EPOCH),
                len: MAX_FILE_BYTES,
                inode: i,
            };
            let bytes = Bytes::from_static(&CONTENT);
            entries.insert(PathBuf::from(format!("/p/{i}")), Entry { meta, bytes });
            assert!(entries.total <= MAX_TOTAL_BYTES);
            let held: u64 = entries.by_path.values().map(|e| e.bytes.len() as u64).sum();
            assert_eq!(held, entries.total);
        }
        assert_eq!(
            entries.by_path.len() as u64,
            MAX_TOTAL_BYTES / MAX_FILE_BYTES
        );
        // The newest entry is always kept.
        assert!(
            entries
                .by_path
                .contains_key(Path::new(&format!("/p/{}", count - 1)))
        );
    }
}
