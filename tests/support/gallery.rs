//! The gallery every real client browses: 300 small generated JPEGs on 15 plain HTML pages of
//! 20, and an index linking the pages. Built once per test binary, read only afterwards.

use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Gallery pages.
pub const PAGES: usize = 15;
/// Photos on each page.
pub const PER_PAGE: usize = 20;
/// Photos in the gallery.
pub const PHOTOS: usize = PAGES * PER_PAGE;

/// The path of gallery page `page` (1-based).
pub fn page_path(page: usize) -> String {
    format!("/gallery/{page}.html")
}

/// The path of photo `n` (1-based, in gallery order).
pub fn photo_path(n: usize) -> String {
    format!("/photos/IMG_{n:04}.jpg")
}

/// The gallery folder, built on first use.
pub fn shared() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| build(&super::scratch("gallery")))
}

fn build(dir: &Path) -> PathBuf {
    let root = dir.join("root");
    for folder in ["gallery", "photos"] {
        std::fs::create_dir_all(root.join(folder)).expect("gallery folders");
    }
    write(&root.join("index.html"), index_html().as_bytes());
    // Browsers ask for it beside an image opened on its own.
    write(&root.join("favicon.ico"), &favicon());
    for page in 1..=PAGES {
        let file = root.join(page_path(page).trim_start_matches('/'));
        write(&file, page_html(page).as_bytes());
    }
    for n in 1..=PHOTOS {
        let file = root.join(photo_path(n).trim_start_matches('/'));
        write(&file, &jpeg(n));
    }
    root
}

fn write(file: &Path, bytes: &[u8]) {
    std::fs::write(file, bytes).unwrap_or_else(|error| panic!("cannot write {file:?}: {error}"));
}

/// Markup shared by every page: no favicon request (a data URL), no script.
fn head(title: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title><link rel=\"icon\" href=\"data:,\"></head>"
    )
}

fn index_html() -> String {
    let mut html = head("The Crown — terrace photos");
    html.push_str("<body><h1 id=\"gallery-index\">Terrace photos</h1><ul>");
    for page in 1..=PAGES {
        let _ = write!(
            html,
            "<li><a href=\"{}\">Page {page}</a></li>",
            page_path(page)
        );
    }
    html.push_str("</ul></body></html>");
    html
}

/// A page with its 20 photos, each linking the photo, and a link to the next page.
fn page_html(page: usize) -> String {
    let mut html = head(&format!("The Crown — page {page} of {PAGES}"));
    let _ = write!(
        html,
        "<body><h1 id=\"gallery-page\" data-page=\"{page}\">Page {page}</h1><div>"
    );
    for i in 1..=PER_PAGE {
        let n = (page - 1) * PER_PAGE + i;
        let src = photo_path(n);
        let _ = write!(
            html,
            "<a class=\"photo\" href=\"{src}\"><img src=\"{src}\" width=\"96\" height=\"64\" alt=\"Photo {n}\"></a>"
        );
    }
    html.push_str("</div><nav>");
    if page < PAGES {
        let _ = write!(
            html,
            "<a id=\"next\" href=\"{}\">Next</a>",
            page_path(page + 1)
        );
    }
    html.push_str("</nav></body></html>");
    html
}

/// A 16×16 PNG icon (browsers read PNG in `favicon.ico`).
fn favicon() -> Vec<u8> {
    let image = image::RgbImage::from_pixel(16, 16, image::Rgb([120, 30, 40]));
    let mut bytes = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut bytes, image::ImageFormat::Png)
        .expect("a PNG encodes");
    bytes.into_inner()
}

/// A small JPEG of its own colour (96×64).
fn jpeg(n: usize) -> Vec<u8> {
    let shade = |k: usize| ((n * k) % 251) as u8;
    let image = image::RgbImage::from_fn(96, 64, |x, y| {
        image::Rgb([shade(7) ^ (x as u8), shade(13), shade(29) ^ (y as u8)])
    });
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 80)
        .encode_image(&image)
        .expect("a JPEG encodes");
    bytes
}
