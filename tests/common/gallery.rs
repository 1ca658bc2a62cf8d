//! A generated gallery behind the layer, in-process: pages of [`PER_PAGE`] photos at
//! `/gallery/N`, each photo a tiny JPEG at `/photos/IMG_NNNN.jpg`, and a page under `/js/`
//! that names none of its images (a script-built page).

use std::convert::Infallible;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, header};
use http_body_util::Full;

/// Chrome's User-Agent.
pub const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36";
/// The gallery's host.
pub const HOST: &str = "gallery.test";
/// Photos on each page.
pub const PER_PAGE: usize = 20;

/// The layer around [`gallery`], boxed.
pub type App = tower::util::BoxCloneService<
    Request<()>,
    Response<lenscap::ResponseBody<Full<Bytes>>>,
    Infallible,
>;

/// The path of page `page` (from 1).
pub fn page_path(page: usize) -> String {
    format!("/gallery/{page}")
}

/// The path of photo `i` (from 0) of page `page`.
pub fn photo(page: usize, i: usize) -> String {
    format!("/photos/IMG_{:04}.jpg", (page - 1) * PER_PAGE + i + 1)
}

/// A gallery page as a site writes it: thumbnails with `srcset`, some in `<picture>`, each
/// linking its photo.
fn page_html(page: usize) -> String {
    let mut html = format!(
        "<!doctype html><html><head><title>Terrace, page {page}</title></head><body><h1>Page {page}</h1>"
    );
    for i in 0..PER_PAGE {
        let src = photo(page, i);
        if i % 3 == 0 {
            html.push_str(&format!(
                "<picture><source srcset=\"{src} 1x\" type=\"image/jpeg\"><img src=\"{src}\" alt=\"photo {i}\" loading=\"lazy\"></picture>"
            ));
        } else {
            html.push_str(&format!(
                "<a href=\"{src}\"><img src='{src}' srcset=\"{src} 800w\" sizes=\"50vw\" alt=\"photo {i}\"></a>"
            ));
        }
    }
    html.push_str("</body></html>");
    html
}

/// The gallery's service: pages, photos, and the script-built page under `/js/`.
pub async fn gallery(request: Request<()>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path();
    let (kind, body) = if path.ends_with(".jpg") {
        ("image/jpeg", Bytes::from_static(b"\xff\xd8\xff\xd9"))
    } else if path.starts_with("/js/") {
        let html = "<html><body><div id=app></div><script src=/app.js></script></body></html>";
        ("text/html", Bytes::from_static(html.as_bytes()))
    } else {
        let page = path
            .strip_prefix("/gallery/")
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        ("text/html; charset=utf-8", Bytes::from(page_html(page)))
    };
    let mut response = Response::new(Full::new(body));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    Ok(response)
}
