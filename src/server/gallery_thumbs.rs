//! Gallery thumbnails and display sizes: made once per file version with the `image` crate,
//! re-encoded as JPEG without any metadata (no Exif, no XMP: nothing of the original's GPS,
//! serials or owner survives a decode and encode), kept on disk under a byte bound.
//!
//! A variant's name is the fingerprint of the photo's path, length, modification time and
//! inode and of the size asked, so an edited photo gets new variants and its old ones age
//! out. Writes go to a temporary file renamed into place (a reader never sees half a file);
//! after each write the oldest variants are deleted until the folder is under
//! `gallery_cache_max_bytes`. At most [`DECODERS`] photos are decoded at once, each within
//! the decoder limits below, so a folder of big photos cannot exhaust memory.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use tokio::sync::Semaphore;

use super::body::{SiteBody, text_response};
use super::config::StaticOptions;
use crate::fingerprint::fnv1a64;

/// Photos decoded at once.
const DECODERS: usize = 2;
/// Largest decoded image accepted, in bytes (a 48-megapixel photo is ~150 MB as RGB).
const MAX_DECODED_BYTES: u64 = 512 * 1024 * 1024;

/// A size a gallery page asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Size {
    /// Album grid: at most 480 pixels on the long side.
    Thumb,
    /// A big photo opened from the album: at most 2048 pixels on the long side.
    Display,
}

impl Size {
    /// `size=thumb` or `size=display` in a query.
    pub(crate) fn from_query(query: Option<&str>) -> Option<Size> {
        query?.split('&').find_map(|pair| match pair {
            "size=thumb" => Some(Size::Thumb),
            "size=display" => Some(Size::Display),
            _ => None,
        })
    }

    fn long_side(self) -> u32 {
        match self {
            Size::Thumb => 480,
            Size::Display => 2048,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Size::Thumb => "thumb",
            Size::Display => "display",
        }
    }
}

/// The thumbnail cache of one server.
pub(crate) struct Thumbnails {
    dir: PathBuf,
    max_bytes: u64,
    decoders: Arc<Semaphore>,
}

impl Thumbnails {
    pub(crate) fn new(options: &StaticOptions) -> Thumbnails {
        Thumbnails {
            dir: options.gallery_cache.clone(),
            max_bytes: options.gallery_cache_max_bytes,
            decoders: Arc::new(Semaphore::new(DECODERS)),
        }
    }

    /// The variant of `photo` at `size`, made now if it is not on disk; `if_none_match` is
    /// the request's validator (already without the stamp's suffix).
    pub(crate) async fn answer(
        &self,
        photo: PathBuf,
        size: Size,
        if_none_match: Option<HeaderValue>,
    ) -> Response<SiteBody> {
        let Ok(meta) = std::fs::metadata(&photo) else {
            return text_response(StatusCode::NOT_FOUND, "404 Not Found\n");
        };
        if !meta.is_file() {
            return text_response(StatusCode::NOT_FOUND, "404 Not Found\n");
        }
        let key = variant_key(&photo, &meta, size);
        let etag = format!("\"g{key:016x}\"");
        if if_none_match.is_some_and(|v| {
            v.as_bytes()
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii() == etag.as_bytes() || t.trim_ascii() == b"*")
        }) {
            let mut response = Response::new(SiteBody::full(Bytes::new()));
            *response.status_mut() = StatusCode::NOT_MODIFIED;
            response.headers_mut().insert(
                header::ETAG,
                HeaderValue::from_str(&etag).expect("hex is a header value"),
            );
            return response;
        }
        let file = self.dir.join(format!("{key:016x}-{}.jpg", size.name()));
        let bytes = match std::fs::read(&file) {
            Ok(bytes) => Bytes::from(bytes),
            Err(_) => match self.make(photo, file, size).await {
                Some(bytes) => bytes,
                None => {
                    return text_response(
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        "415: this photo could not be read to make a thumbnail; open it directly.\n",
                    );
                }
            },
        };
        let mut response = Response::new(SiteBody::full(bytes.clone()));
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg"));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        headers.insert(
            header::ETAG,
            HeaderValue::from_str(&etag).expect("hex is a header value"),
        );
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=86400"),
        );
        response
    }

    async fn make(&self, photo: PathBuf, file: PathBuf, size: Size) -> Option<Bytes> {
        let _permit = self.decoders.clone().acquire_owned().await.ok()?;
        let (dir, max_bytes) = (self.dir.clone(), self.max_bytes);
        tokio::task::spawn_blocking(move || {
            let bytes = encode(&photo, size)?;
            store(&dir, &file, &bytes, max_bytes);
            Some(Bytes::from(bytes))
        })
        .await
        .ok()
        .flatten()
    }
}

fn variant_key(photo: &Path, meta: &std::fs::Metadata, size: Size) -> u64 {
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let inode = super::files::inode(meta);
    fnv1a64(&[
        photo.as_os_str().as_encoded_bytes(),
        &meta.len().to_le_bytes(),
        &modified.to_le_bytes(),
        &inode.to_le_bytes(),
        size.name().as_bytes(),
    ])
}

/// Decodes `photo`, turns it upright (Exif orientation), scales it down and encodes a JPEG
/// carrying no metadata at all.
fn encode(photo: &Path, size: Size) -> Option<Vec<u8>> {
    use image::ImageDecoder as _;
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_DECODED_BYTES);
    let mut reader = image::ImageReader::open(photo)
        .ok()?
        .with_guessed_format()
        .ok()?;
    reader.limits(limits);
    let mut decoder = reader.into_decoder().ok()?;
    let orientation = decoder.orientation().ok();
    let mut picture = image::DynamicImage::from_decoder(decoder).ok()?;
    if let Some(orientation) = orientation {
        picture.apply_orientation(orientation);
    }
    let long = size.long_side();
    if picture.width() > long || picture.height() > long {
        picture = picture.resize(long, long, image::imageops::FilterType::Triangle);
    }
    let rgb = picture.to_rgb8();
    let mut out = Vec::new();
    let quality = match size {
        Size::Thumb => 78,
        Size::Display => 85,
    };
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .encode_image(&rgb)
        .ok()?;
    Some(out)
}

/// Writes a variant into the cache folder and keeps the folder under `max_bytes`.
fn store(dir: &Path, file: &Path, bytes: &[u8], max_bytes: u64) {
    if bytes.len() as u64 > max_bytes || std::fs::create_dir_all(dir).is_err() {
        return;
    }
    let temp = file.with_extension(format!("tmp{}", std::process::id()));
    if std::fs::write(&temp, bytes).is_err() || std::fs::rename(&temp, file).is_err() {
        let _ = std::fs::remove_file(&temp);
        return;
    }
    trim(dir, max_bytes);
}

/// Deletes the oldest variants until the folder holds at most `max_bytes`.
fn trim(dir: &Path, max_bytes: u64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".jpg"))
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            Some((meta.modified().ok()?, meta.len(), e.path()))
        })
        .collect();
    let mut total: u64 = files.iter().map(|f| f.1).sum();
    if total <= max_bytes {
        return;
    }
    files.sort();
    for (_, len, path) in files {
        if total <= max_bytes {
            break;
        }
        if std::fs::remove_file(&path).is_ok() {
            total -= len;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_from_queries() {
        assert_eq!(Size::from_query(Some("size=thumb")), Some(Size::Thumb));
        assert_eq!(
            Size::from_query(Some("a=1&size=display")),
            Some(Size::Display)
        );
        assert_eq!(Size::from_query(Some("size=huge")), None);
        assert_eq!(Size::from_query(None), None);
    }

    #[test]
    fn the_cache_folder_stays_under_its_bound() {
        let dir = std::env::temp_dir().join(format!("lenscap-thumbs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for i in 0..20 {
            store(
                &dir,
                &dir.join(format!("{i:016x}-thumb.jpg")),
                &[7u8; 1000],
                5_000,
            );
            let held: u64 = std::fs::read_dir(&dir)
                .unwrap()
                .flatten()
                .map(|e| e.metadata().unwrap().len())
                .sum();
            assert!(held <= 5_000, "{held} bytes after {i} writes");
        }
        assert!(dir.join(format!("{:016x}-thumb.jpg", 19)).exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
