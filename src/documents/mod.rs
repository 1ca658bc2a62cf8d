//! The documents Lenscap answers itself: `/robots.txt`, `/ai.txt`, `/.well-known/tdmrep.json`
//! and the policy page.
//!
//! ```
//! use http::{HeaderMap, Method, StatusCode};
//! use lenscap::documents::{Disallow, Documents, ReservationConfig, RobotsAgent};
//!
//! let cfg = ReservationConfig { site_name: Some("The Red Lion".into()), ..Default::default() };
//! let agents = [
//!     RobotsAgent::new("GPTBot", Disallow::Everything),
//!     RobotsAgent::new("PerplexityBot", Disallow::Images),
//! ];
//! let site = "User-agent: *\nDisallow: /admin/\nSitemap: https://example.com/sitemap.xml\n";
//! let docs = Documents::build(&cfg, &agents, &["/.trap/".into()], Some(site))?;
//!
//! let robots = docs.answer(&Method::GET, "/robots.txt", &HeaderMap::new()).unwrap();
//! assert_eq!(robots.status(), StatusCode::OK);
//! assert_eq!(robots.headers()["content-type"], "text/plain; charset=utf-8");
//! let text = std::str::from_utf8(robots.body())?;
//! assert!(text.contains("User-agent: GPTBot\nDisallow: /\n"));
//! assert!(text.contains("User-agent: *\nDisallow: /.trap/\n"));
//! assert!(text.contains("Disallow: /admin/\n"));
//! assert!(text.ends_with("Sitemap: https://example.com/sitemap.xml\n"));
//!
//! // Every other path is left to the rest of the stack.
//! assert!(docs.answer(&Method::GET, "/photos/a.jpg", &HeaderMap::new()).is_none());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Everything is rendered once by [`Documents::build`], off the hot path, and kept as [`Bytes`]
//! with a strong ETag; [`Documents::answer`] only compares the path against a handful of strings.
//!
//! # robots.txt
//!
//! The file reads top to bottom as: a comment header; the site's preamble (comments and
//! global lines such as `Host:`); one group per [`Disallow`] scope for Lenscap's agents; the
//! `*` group; the site's other groups; every `Sitemap:` line, at the end.
//!
//! Lenscap declares its reservation in every group, since a crawler reads only the one group
//! that names it (RFC 9309 §2.2.1): each group carries the trap-path `Disallow` lines (so no
//! well-behaved crawler, named or not, ever walks into a trap), `Content-Usage: train-ai=n`
//! (IETF aipref) and `Content-Signal: search=yes, ai-train=no` (per the config).
//! `Crawl-delay` goes to the `*` group and the [`Disallow::Images`] groups.
//!
//! The site's own file is parsed tolerantly (BOM, CRLF or CR, any key case, comments, unknown
//! lines kept in their group) and merged so that every agent ends up in exactly one group:
//!
//! - **An agent both name**: the site's rules for it (from every group naming it) join
//!   Lenscap's rules for it in one group. The site's rules are kept as written, so an explicit
//!   `Allow: /blog/` for `GPTBot` still opens `/blog/` to GPTBot: that is the site's choice.
//! - **A Lenscap agent the site does not name** used to follow the site's `*` group; it keeps
//!   that group's `Disallow` and `Crawl-delay` lines, but not its `Allow` lines, which could
//!   otherwise outrank the image rules (longest match wins).
//! - Agents of one scope with the same site rules share a group (several `User-agent` lines);
//!   agents with different site rules get their own, so one agent's exceptions never leak to
//!   another.
//! - **The site's `*` group** merges into Lenscap's `*` group, all its lines kept.
//! - **The site's other agents** keep their rules; an agent named in several of the site's
//!   groups gets one group with all of them.
//! - The site's unscoped `Content-Usage` and `Content-Signal` lines are replaced by Lenscap's
//!   when Lenscap emits its own (`content_usage` / `content_signal`); path-scoped
//!   `Content-Usage: /path/ …` lines are kept. Several `Crawl-delay` values become the largest.
//! - Rules written before any `User-agent` line apply to nobody; they are kept as comments.
//! - Empty `Disallow:` lines are dropped: they match nothing (RFC 9309), but some parsers
//!   (texting_robots) read them as "allow all", which would win a tie against `Disallow: /`.
//!
//! Path matching in robots.txt is case-sensitive, so image rules name each extension in lower
//! and upper case, with `$` and with a query string (`/*.jpg$`, `/*.jpg?`, `/*.JPG$`, …).
//! Crawler tokens containing digits (`AI2Bot`, `img2dataset`) cannot be matched by Google's
//! parser, which reads only letters, `-` and `_`: enforcement has to catch those.
//!
//! The result must stay under 500 KiB, where Google stops reading; a site file that would push
//! it over is a [`DocumentError::RobotsTooLarge`].
//!
//! # Other documents
//!
//! - `/ai.txt` (Spawning): `User-Agent: *`, then `Disallow: *.jpg` … for image and video
//!   extensions while training is reserved.
//! - `/.well-known/tdmrep.json` (W3C TDMRep): `[{"location": "/*", "tdm-reservation": 1}]`,
//!   plus `tdm-policy` when `policy_url` is set; `0` when training is not reserved.
//! - The policy page at `policy_path`: self-contained HTML (inline CSS, no script), every
//!   config value escaped.
//!
//! # Responses
//!
//! `GET` and `HEAD` (empty body, same headers, same `Content-Length`) get `200`, or `304` when
//! `If-None-Match` names the ETag; any other method gets `405` with `Allow: GET, HEAD`. All carry
//! `Cache-Control: public, max-age=3600` and `X-Content-Type-Options: nosniff`. The ETag is a
//! 64-bit FNV-1a hash of the bytes, so every instance serving the same config agrees on it.

mod aitxt;
mod config;
mod license;
mod page;
mod robots;
mod tdmrep;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};

use crate::fingerprint::fnv1a64;

pub use config::{ConfigError, ReservationConfig};
pub use license::{
    CRAWLER_CHARGED, CRAWLER_EXACT_PRICE, CRAWLER_MAX_PRICE, CRAWLER_PRICE, LicenseTerms, Price,
    PriceError,
};
pub(crate) use license::{LicensingConfig, Offer};
pub use robots::{Disallow, RobotsAgent};

pub(crate) use config::contact_link;
pub(crate) use page::{escape_html, with_query_pair};

/// Image extensions kept from [`Disallow::Images`] agents (lower case; upper case is added).
pub(crate) const IMAGE_EXTENSIONS: [&str; 13] = [
    "jpg", "jpeg", "jpe", "png", "webp", "avif", "gif", "heic", "heif", "jxl", "tif", "tiff", "bmp",
];

/// Media extensions disallowed in `/ai.txt`: images, then video.
pub(crate) const MEDIA_EXTENSIONS: [&str; 17] = [
    "jpg", "jpeg", "jpe", "png", "webp", "avif", "gif", "heic", "heif", "jxl", "tif", "tiff",
    "bmp", "mp4", "m4v", "mov", "webm",
];

const ROBOTS_PATH: &str = "/robots.txt";
const AI_TXT_PATH: &str = "/ai.txt";
const TDMREP_PATH: &str = "/.well-known/tdmrep.json";

const TEXT_PLAIN: &str = "text/plain; charset=utf-8";
const APPLICATION_JSON: &str = "application/json";
const TEXT_HTML: &str = "text/html; charset=utf-8";
const CACHE_CONTROL: &str = "public, max-age=3600";
const ALLOW: &str = "GET, HEAD";

/// Why the documents could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DocumentError {
    /// The `[reservation]` table is invalid; every problem is listed.
    #[error("{}", join(.0))]
    Config(Vec<ConfigError>),
    /// A crawler token would not fit on a `User-agent` line.
    #[error(
        "crawler token {token:?} cannot be a robots.txt User-agent (empty, '*', spaces, ':' or '#')"
    )]
    InvalidAgentToken {
        /// The token as given.
        token: String,
    },
    /// A trap path is not a plain absolute path.
    #[error("trap path {path:?} must start with '/' and contain no spaces, line breaks or '#'")]
    InvalidTrapPath {
        /// The path as given.
        path: String,
    },
    /// A trap path is also a document Lenscap answers.
    #[error("trap path {path:?} is also a document Lenscap serves")]
    TrapShadowsDocument {
        /// The path as given.
        path: String,
    },
    /// The merged robots.txt is past the size crawlers read.
    #[error(
        "robots.txt would be {size} bytes after merging the site's file; crawlers read at most {limit}"
    )]
    RobotsTooLarge {
        /// Size of the merged file.
        size: usize,
        /// The limit, 500 KiB.
        limit: usize,
    },
}

fn join(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Makes a config value safe inside a `#` comment line.
pub(crate) fn comment_safe(value: &str) -> String {
    value
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

// === impl Document ===

/// One pre-rendered document.
#[derive(Clone, Debug)]
struct Document {
    path: Box<str>,
    content_type: HeaderValue,
    etag: HeaderValue,
    content_length: HeaderValue,
    body: Bytes,
}

impl Document {
    fn new(path: &str, content_type: &'static str, body: String) -> Self {
        let body = Bytes::from(body);
        let etag = format!("\"{:016x}\"", fnv1a64(&[&body]));
        Self {
            path: path.into(),
            content_type: HeaderValue::from_static(content_type),
            etag: HeaderValue::try_from(etag)
                .expect("hex digits in quotes are a valid header value"),
            content_length: HeaderValue::from(body.len()),
            body,
        }
    }

    fn respond(&self, method: &Method, headers: &HeaderMap) -> Response<Bytes> {
        let head = *method == Method::HEAD;
        if !head && *method != Method::GET {
            let body = Bytes::from_static(b"405 Method Not Allowed\n");
            let length = HeaderValue::from(body.len());
            let mut res = Response::new(body);
            *res.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            let h = res.headers_mut();
            h.insert(header::ALLOW, HeaderValue::from_static(ALLOW));
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(TEXT_PLAIN));
            h.insert(header::CONTENT_LENGTH, length);
            h.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            return res;
        }
        let not_modified = if_none_match(headers, &self.etag);
        let body = if head || not_modified {
            Bytes::new()
        } else {
            self.body.clone()
        };
        let mut res = Response::new(body);
        let h = res.headers_mut();
        h.insert(header::ETAG, self.etag.clone());
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(CACHE_CONTROL),
        );
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        if not_modified {
            *res.status_mut() = StatusCode::NOT_MODIFIED;
        } else {
            h.insert(header::CONTENT_TYPE, self.content_type.clone());
            h.insert(header::CONTENT_LENGTH, self.content_length.clone());
        }
        res
    }
}

/// Whether `If-None-Match` names `etag` (weak comparison, RFC 9110 §13.1.2) or is `*`.
fn if_none_match(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let ours = etag.as_bytes();
    headers.get_all(header::IF_NONE_MATCH).iter().any(|value| {
        value.as_bytes().split(|&b| b == b',').any(|tag| {
            let tag = tag.trim_ascii();
            tag == b"*" || tag.strip_prefix(b"W/").unwrap_or(tag) == ours
        })
    })
}

// === impl Documents ===

/// The documents Lenscap answers itself, rendered once.
#[derive(Clone, Debug)]
pub struct Documents {
    docs: Vec<Document>,
}

impl Documents {
    /// Renders every enabled document.
    ///
    /// `agents` are the crawlers named in robots.txt (tokens already RFC 9309 product tokens),
    /// `trap_paths` the honeypot paths every group disallows, `site_robots` the site's own
    /// robots.txt to merge (see the [module docs](self)).
    pub fn build(
        cfg: &ReservationConfig,
        agents: &[RobotsAgent],
        trap_paths: &[String],
        site_robots: Option<&str>,
    ) -> Result<Self, DocumentError> {
        cfg.validate().map_err(DocumentError::Config)?;
        let mut docs = Vec::with_capacity(4);
        if cfg.robots_txt {
            docs.push(Document::new(
                ROBOTS_PATH,
                TEXT_PLAIN,
                robots::render(cfg, agents, trap_paths, site_robots)?,
            ));
        }
        if cfg.ai_txt {
            docs.push(Document::new(AI_TXT_PATH, TEXT_PLAIN, aitxt::render(cfg)));
        }
        if cfg.tdmrep {
            docs.push(Document::new(
                TDMREP_PATH,
                APPLICATION_JSON,
                tdmrep::render(cfg),
            ));
        }
        if cfg.policy_page {
            docs.push(Document::new(
                &cfg.policy_path,
                TEXT_HTML,
                page::render(cfg),
            ));
        }
        if let Some(trap) = trap_paths
            .iter()
            .find(|t| docs.iter().any(|d| *d.path == ***t))
        {
            return Err(DocumentError::TrapShadowsDocument { path: trap.clone() });
        }
        Ok(Self { docs })
    }

    /// The response for a document path, or `None` for every other path (no allocation then).
    ///
    /// `path` is the request path without the query string.
    pub fn answer(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Option<Response<Bytes>> {
        let doc = self.docs.iter().find(|d| *d.path == *path)?;
        Some(doc.respond(method, headers))
    }

    /// The paths answered, e.g. to keep them out of behaviour tracking.
    pub fn paths(&self) -> impl Iterator<Item = &str> + '_ {
        self.docs.iter().map(|d| &*d.path)
    }

    /// The rendered bytes of the document at `path`.
    pub fn body(&self, path: &str) -> Option<&Bytes> {
        self.docs.iter().find(|d| *d.path == *path).map(|d| &d.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_forms() {
        let etag = HeaderValue::from_static("\"abc\"");
        let check = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::IF_NONE_MATCH, HeaderValue::from_static(v));
            if_none_match(&h, &etag)
        };
        assert!(check("\"abc\""));
        assert!(check("W/\"abc\""));
        assert!(check("\"x\", \"abc\""));
        assert!(check("*"));
        assert!(!check("\"abcd\""));
        assert!(!check("abc"));
        assert!(!if_none_match(&HeaderMap::new(), &etag));
    }

    #[test]
    fn disabled_documents_are_not_answered() {
        let cfg = ReservationConfig {
            ai_txt: false,
            policy_page: false,
            ..Default::default()
        };
        let docs = Documents::build(&cfg, &[], &[], None).unwrap();
        assert_eq!(
            docs.paths().collect::<Vec<_>>(),
            ["/robots.txt", "/.well-known/tdmrep.json"]
        );
        assert!(
            docs.answer(&Method::GET, "/ai.txt", &HeaderMap::new())
                .is_none()
        );
    }

    #[test]
    fn trap_on_a_document_path_is_refused() {
        let err = Documents::build(
            &ReservationConfig::default(),
            &[],
            &["/ai-policy".into()],
            None,
        )
        .unwrap_err();
        assert!(matches!(err, DocumentError::TrapShadowsDocument { .. }));
    }
}
