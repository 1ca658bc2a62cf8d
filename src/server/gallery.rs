//! Album pages for a bare folder of photos: static mode, a folder without `index.html`,
//! `[server] gallery = "auto"` (the default).
//!
//! A folder's page lists its subfolders as albums (newest first: by the newest photo inside,
//! with a cover and a count) and its photos as lazy-loaded thumbnails linking the photo (or
//! its display size when it is big), [`PER_PAGE`] to a page. Photos a browser cannot show
//! (HEIC, TIFF, …) are listed with a download link. The page is self-contained HTML: inline
//! CSS, no script, no external asset, readable on a phone; its footer links the policy page
//! and its title is `[reservation] site_name`.
//!
//! The pages are part of the human envelope: a view of one earns `credit_per_page` image
//! credit and the thumbnails it embeds carry it as their Referer, so they are vouched.
//! [`PER_PAGE`] stays below the default credit, so every thumbnail of a page is.
//!
//! Thumbnails are `?size=thumb` and `?size=display` of the photo's own path (so they are
//! image requests by extension, stamped like any image): see `gallery_thumbs`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::config::StaticOptions;

/// Photos per album page (below the default `credit_per_page` of 100).
pub(crate) const PER_PAGE: usize = 48;
// A page view earns the default `credit_per_page` (100): every thumbnail of a page is vouched.
const _: () = assert!(PER_PAGE <= 100);

/// Entries read per folder at most.
const MAX_ENTRIES: usize = 10_000;

/// Extensions whose photos get thumbnails (the `image` crate's decoders in the build).
const THUMBED: &[&str] = &["jpg", "jpeg", "png", "webp"];
/// Extensions a browser shows as they are (no thumbnail made).
const SHOWN: &[&str] = &["gif", "avif", "svg"];
/// Photos a browser cannot show: listed with a download link.
const DOWNLOADED: &[&str] = &["heic", "heif", "tif", "tiff", "jxl", "bmp", "dng"];

/// How a photo appears on a page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PhotoKind {
    Thumbed,
    Shown,
    Downloaded,
}

pub(crate) fn photo_kind(name: &str) -> Option<PhotoKind> {
    let ext = name.rsplit_once('.')?.1;
    let is = |list: &[&str]| list.iter().any(|e| e.eq_ignore_ascii_case(ext));
    if is(THUMBED) {
        Some(PhotoKind::Thumbed)
    } else if is(SHOWN) {
        Some(PhotoKind::Shown)
    } else if is(DOWNLOADED) {
        Some(PhotoKind::Downloaded)
    } else {
        None
    }
}

// === paths ===

/// The folder-relative path a URI path names, read as `ServeDir` reads it: decoded first,
/// then split, empty and `.` segments skipped (so `//.env` and `/./.env` name `.env`).
/// `None` for what `ServeDir` refuses or no file can be named by (`..`, backslashes, NUL,
/// invalid UTF-8). Dot files come back as they are; [`is_hidden`] tells them.
pub(crate) fn relative_path(uri_path: &str) -> Option<PathBuf> {
    let decoded = percent_decode(uri_path.strip_prefix('/')?)?;
    let mut rel = PathBuf::new();
    for segment in decoded.split('/') {
        if segment.is_empty() || segment == "." {
            continue;
        }
        if segment == ".."
            || segment.contains(['\\', '\0'])
            || (cfg!(windows) && segment.contains(':'))
        {
            return None;
        }
        rel.push(segment);
    }
    Some(rel)
}

/// Whether a decoded relative path has a segment starting with a dot.
pub(crate) fn is_hidden(rel: &Path) -> bool {
    rel.components()
        .any(|c| c.as_os_str().to_string_lossy().starts_with('.'))
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A name made safe for a URI path segment (RFC 3986 unreserved characters kept).
fn encode_segment(name: &str, out: &mut String) {
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// The URI path of a folder-relative path (`dir` true: with a trailing slash).
fn href(rel: &Path, dir: bool) -> String {
    let mut out = String::from("/");
    for (i, c) in rel.components().enumerate() {
        if i > 0 {
            out.push('/');
        }
        encode_segment(&c.as_os_str().to_string_lossy(), &mut out);
    }
    if dir && !out.ends_with('/') {
        out.push('/');
    }
    out
}

fn escape(text: &str) -> String {
    crate::documents::escape_html(text)
}

// === listing ===

#[derive(Debug)]
struct Photo {
    name: String,
    kind: PhotoKind,
    len: u64,
    /// Changes with the file's version: a thumbnail URL carries it (`&v=`), so a browser
    /// never shows an old thumbnail of an edited photo.
    version: u32,
}

#[derive(Debug)]
struct Album {
    name: String,
    newest: Option<SystemTime>,
    count: usize,
    /// The cover photo's name and version.
    cover: Option<(String, u32)>,
}

/// A short fingerprint of a file version (length and modification time).
fn version_of(meta: &std::fs::Metadata) -> u32 {
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    crate::fingerprint::fnv1a64(&[&meta.len().to_le_bytes(), &modified.to_le_bytes()]) as u32
}

#[derive(Debug, Default)]
struct Listing {
    albums: Vec<Album>,
    photos: Vec<Photo>,
}

fn visible(name: &str) -> bool {
    !name.starts_with('.')
}

/// Photos directly in `dir`, sorted by name, and the newest modification time among them.
fn photos_in(dir: &Path) -> (Vec<Photo>, Option<SystemTime>) {
    let mut photos = Vec::new();
    let mut newest = None;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (photos, newest);
    };
    for entry in entries.take(MAX_ENTRIES).flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(kind) = photo_kind(&name).filter(|_| visible(&name)) else {
            continue;
        };
        let Ok(meta) = std::fs::metadata(entry.path()) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        newest = newest.max(meta.modified().ok());
        photos.push(Photo {
            version: version_of(&meta),
            name,
            kind,
            len: meta.len(),
        });
    }
    photos.sort_by(|a, b| natural(&a.name, &b.name));
    (photos, newest)
}

/// Name order with runs of digits compared as numbers (`IMG_2` before `IMG_10`).
fn natural(a: &str, b: &str) -> std::cmp::Ordering {
    fn key(s: &str) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        let mut text = String::new();
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            if c.is_ascii_digit() {
                let mut n = c.to_digit(10).unwrap_or(0) as u64;
                while let Some(d) = chars.peek().and_then(|d| d.to_digit(10)) {
                    n = n.saturating_mul(10).saturating_add(d as u64);
                    chars.next();
                }
                out.push((std::mem::take(&mut text).to_lowercase(), n));
            } else {
                text.push(c);
            }
        }
        out.push((text.to_lowercase(), 0));
        out
    }
    key(a).cmp(&key(b)).then_with(|| a.cmp(b))
}

fn list(root: &Path, dir: &Path, options: &StaticOptions) -> Listing {
    let (photos, _) = photos_in(dir);
    let mut albums = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.take(MAX_ENTRIES).flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if !visible(&name) || !path.is_dir() {
                continue;
            }
            if !options.outside_symlinks
                && !std::fs::canonicalize(&path).is_ok_and(|real| real.starts_with(root))
            {
                continue;
            }
            let (inside, newest) = photos_in(&path);
            let newest = newest.or_else(|| std::fs::metadata(&path).ok()?.modified().ok());
            let cover = inside
                .iter()
                .find(|p| p.kind != PhotoKind::Downloaded)
                .map(|p| (p.name.clone(), p.version));
            albums.push(Album {
                name,
                newest,
                count: inside.len(),
                cover,
            });
        }
    }
    albums.sort_by(|a, b| {
        b.newest
            .cmp(&a.newest)
            .then_with(|| natural(&a.name, &b.name))
    });
    Listing { albums, photos }
}

// === pages ===

/// What a page shows besides the folder: the site's name, the policy page, trap links.
pub(crate) struct PageContext<'a> {
    pub(crate) site_name: Option<&'a str>,
    pub(crate) policy_path: &'a str,
    pub(crate) trap_path: Option<&'a str>,
}

/// Photos bigger than this are linked at their display size.
pub(crate) const DISPLAY_ABOVE_BYTES: u64 = 1024 * 1024;

const STYLE: &str = "*{box-sizing:border-box}\
body{margin:0;font:16px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#222;background:#faf8f5}\
header,main,footer{max-width:1100px;margin:0 auto;padding:0 14px}\
header{padding-top:18px}h1{font-size:1.6rem;margin:0 0 4px}h2{font-size:1.2rem;margin:22px 0 10px}\
nav a,footer a,.crumbs a{color:#7a3b00}p.crumbs{margin:0;color:#666}\
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:8px;list-style:none;margin:0;padding:0}\
.albums{grid-template-columns:repeat(auto-fill,minmax(220px,1fr));gap:14px}\
.grid a{display:block;color:inherit;text-decoration:none}\
.grid img{display:block;width:100%;aspect-ratio:1;object-fit:cover;border-radius:6px;background:#e8e2da}\
.albums img{aspect-ratio:4/3}.albums span{display:block;padding:6px 2px 0;font-weight:600}\
.albums small{display:block;color:#666;font-weight:400}\
.file{display:flex;align-items:center;justify-content:center;aspect-ratio:1;border-radius:6px;background:#e8e2da;padding:8px;text-align:center;word-break:break-word;font-size:.85rem}\
.pages{display:flex;gap:16px;margin:18px 0}\
footer{margin-top:30px;padding-bottom:30px;color:#666;font-size:.9rem;border-top:1px solid #e2dcd3;padding-top:12px}\
@media (max-width:480px){.grid{grid-template-columns:repeat(3,1fr);gap:4px}.albums{grid-template-columns:repeat(2,1fr);gap:10px}h1{font-size:1.3rem}}";

/// The page for folder `rel` (page `page`, from 1) of the folder `root` (canonical: folders
/// reached through links out of it are not listed), or `None` when that page does not exist.
pub(crate) fn render(
    root: &Path,
    rel: &Path,
    page: usize,
    options: &StaticOptions,
    context: &PageContext<'_>,
) -> Option<String> {
    let listing = list(root, &root.join(rel), options);
    let pages = listing.photos.len().div_ceil(PER_PAGE).max(1);
    if page == 0 || page > pages {
        return None;
    }
    let site = context.site_name.unwrap_or("Photos");
    let here = rel.file_name().map(|n| n.to_string_lossy().into_owned());
    let mut html = String::with_capacity(8 * 1024);
    let title = match &here {
        Some(name) => format!("{} · {}", escape(name), escape(site)),
        None => escape(site),
    };
    let _ = write!(
        html,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title}</title><style>{STYLE}</style></head><body>\n<header><h1>{}</h1>",
        here.as_deref().map_or_else(|| escape(site), escape)
    );
    if here.is_some() {
        html.push_str("<p class=\"crumbs\"><a href=\"/\">");
        html.push_str(&escape(site));
        html.push_str("</a>");
        let mut sofar = PathBuf::new();
        let parts: Vec<_> = rel.components().collect();
        for c in &parts[..parts.len().saturating_sub(1)] {
            sofar.push(c);
            let _ = write!(
                html,
                " › <a href=\"{}\">{}</a>",
                escape(&href(&sofar, true)),
                escape(&c.as_os_str().to_string_lossy())
            );
        }
        html.push_str("</p>");
    }
    html.push_str("</header>\n<main>\n");
    if !listing.albums.is_empty() && page == 1 {
        html.push_str("<h2>Albums</h2>\n<ul class=\"grid albums\">\n");
        for album in &listing.albums {
            let album_rel = rel.join(&album.name);
            let link = escape(&href(&album_rel, true));
            let _ = write!(html, "<li><a href=\"{link}\">");
            match &album.cover {
                Some((cover, version)) => {
                    let src = cover_src(&album_rel.join(cover), cover, *version);
                    let _ = write!(
                        html,
                        "<img src=\"{}\" alt=\"\" loading=\"lazy\" decoding=\"async\">",
                        escape(&src)
                    );
                }
                None => html.push_str("<div class=\"file\">No photos yet</div>"),
            }
            let count = match album.count {
                1 => "1 photo".to_owned(),
                n => format!("{n} photos"),
            };
            let _ = writeln!(
                html,
                "<span>{}<small>{count}</small></span></a></li>",
                escape(&album.name)
            );
        }
        html.push_str("</ul>\n");
    }
    if !listing.photos.is_empty() {
        if !listing.albums.is_empty() && page == 1 {
            html.push_str("<h2>Photos</h2>\n");
        }
        html.push_str("<ul class=\"grid\">\n");
        let shown = listing
            .photos
            .iter()
            .skip((page - 1) * PER_PAGE)
            .take(PER_PAGE);
        for photo in shown {
            let photo_rel = rel.join(&photo.name);
            let full = href(&photo_rel, false);
            let alt = escape(&photo.name);
            match photo.kind {
                PhotoKind::Thumbed => {
                    let open = if photo.len > DISPLAY_ABOVE_BYTES {
                        format!("{full}?size=display")
                    } else {
                        full.clone()
                    };
                    let _ = writeln!(
                        html,
                        "<li><a href=\"{}\"><img src=\"{}?size=thumb&amp;v={:08x}\" alt=\"{alt}\" loading=\"lazy\" decoding=\"async\"></a></li>",
                        escape(&open),
                        escape(&full),
                        photo.version
                    );
                }
                PhotoKind::Shown => {
                    let _ = writeln!(
                        html,
                        "<li><a href=\"{0}\"><img src=\"{0}\" alt=\"{alt}\" loading=\"lazy\" decoding=\"async\"></a></li>",
                        escape(&full)
                    );
                }
                PhotoKind::Downloaded => {
                    let _ = writeln!(
                        html,
                        "<li><a class=\"file\" href=\"{}\" download>{alt}<br>(download: your browser cannot show this format)</a></li>",
                        escape(&full)
                    );
                }
            }
        }
        html.push_str("</ul>\n");
    }
    if listing.albums.is_empty() && listing.photos.is_empty() {
        html.push_str("<p>No photos here yet.</p>\n");
    }
    if pages > 1 {
        html.push_str("<nav class=\"pages\">");
        if page > 1 {
            let _ = write!(html, "<a href=\"?page={}\">← Newer</a>", page - 1);
        }
        let _ = write!(html, "<span>Page {page} of {pages}</span>");
        if page < pages {
            let _ = write!(html, "<a href=\"?page={}\">More →</a>", page + 1);
        }
        html.push_str("</nav>\n");
    }
    html.push_str("</main>\n<footer>");
    let _ = write!(
        html,
        "These photos are not for AI training or face search: <a href=\"{}\">our photo policy</a>.",
        escape(context.policy_path)
    );
    if let Some(trap) = context.trap_path {
        // No person sees or follows this; crawlers that follow hidden links mark themselves.
        let _ = write!(
            html,
            "<a href=\"{}\" hidden aria-hidden=\"true\" tabindex=\"-1\" rel=\"nofollow\"></a>",
            escape(trap)
        );
    }
    html.push_str("</footer>\n</body></html>\n");
    Some(html)
}

fn cover_src(rel: &Path, name: &str, version: u32) -> String {
    let full = href(rel, false);
    match photo_kind(name) {
        Some(PhotoKind::Thumbed) => format!("{full}?size=thumb&v={version:08x}"),
        _ => full,
    }
}

/// What a static folder is served as, for the start-up log.
pub(crate) fn mode_of(root: &Path, options: &StaticOptions) -> &'static str {
    if root.join("index.html").is_file() {
        "its own pages (index.html)"
    } else if options.gallery {
        "gallery (no index.html: album pages and thumbnails are generated)"
    } else {
        "files only (no index.html and gallery = \"off\": / answers 404)"
    }
}

/// The page number in a query (`page=N`); 1 without one, `None` when malformed.
pub(crate) fn page_of(query: Option<&str>) -> Option<usize> {
    let Some(query) = query else {
        return Some(1);
    };
    let mut page = 1;
    for pair in query.split('&') {
        if let Some(n) = pair.strip_prefix("page=") {
            page = n.parse().ok()?;
        }
    }
    Some(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_paths_map_to_plain_relative_paths() {
        assert_eq!(relative_path("/"), Some(PathBuf::new()));
        assert_eq!(
            relative_path("/Quiz%20Night/IMG_1.JPG"),
            Some(PathBuf::from("Quiz Night/IMG_1.JPG"))
        );
        assert_eq!(
            relative_path("/Quiz%20Night/"),
            Some(PathBuf::from("Quiz Night"))
        );
        for bad in [
            "/../x",
            "/a/%2e%2e/x",
            "/a/..%2Fx",
            "/a\\b",
            "/%ff",
            "/%zz",
            "/a%00",
        ] {
            assert_eq!(relative_path(bad), None, "{bad}");
        }
        assert_eq!(relative_path("/a//b/./c"), Some(PathBuf::from("a/b/c")));
        for hidden in [
            "/.git/config",
            "//.env",
            "/./.env",
            "/a%2F.env",
            "/a/%2Eenv",
        ] {
            assert!(is_hidden(&relative_path(hidden).unwrap()), "{hidden}");
        }
        assert!(!is_hidden(&relative_path("/a/b.env").unwrap()));
    }

    #[test]
    fn links_are_encoded_and_names_sort_naturally() {
        assert_eq!(
            href(Path::new("Quiz Night/Ä b.jpg"), false),
            "/Quiz%20Night/%C3%84%20b.jpg"
        );
        assert_eq!(href(Path::new(""), true), "/");
        let mut names = vec!["IMG_10.jpg", "img_2.jpg", "IMG_1.jpg"];
        names.sort_by(|a, b| natural(a, b));
        assert_eq!(names, ["IMG_1.jpg", "img_2.jpg", "IMG_10.jpg"]);
    }

    #[test]
    fn page_numbers() {
        assert_eq!(page_of(None), Some(1));
        assert_eq!(page_of(Some("page=3")), Some(3));
        assert_eq!(page_of(Some("page=x")), None);
    }
}
