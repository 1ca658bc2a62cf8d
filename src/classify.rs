//! Classify: what the client is and what it asks for, before anything is decided.
//!
//! From the identified client and the request's headers this stage works out the static
//! facts: the catalog agent a User-Agent names (read once per distinct User-Agent), whether a
//! claim of a crawler with published ranges comes from inside them, the header shape, whether
//! the origin is secure in the browser's eyes, and what kind of request it is (page, image,
//! robots.txt, other). It decides nothing: [`decide`](crate::decide) turns these facts into
//! an action.
//!
//! ```
//! use http::Request;
//! use lenscap::{Category, PeerAddr, Policy, Reason};
//!
//! let policy = Policy::embedded().unwrap();
//! let mut request = Request::get("/photos/1.jpg")
//!     .header("user-agent", "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)")
//!     .body(())
//!     .unwrap();
//! // Not one of Google's published addresses: a spoofer.
//! request.extensions_mut().insert(PeerAddr("203.0.113.9:5555".parse().unwrap()));
//! let (_client, verdict) = policy.verdict_for(&request);
//! assert_eq!(verdict.category, Category::SearchEngine);
//! assert!(verdict.reasons.contains(Reason::SpoofedAgent));
//! ```

mod reader;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::{HeaderMap, Method, Version};
use serde::Deserialize;

use crate::catalog::datacenter::DatacenterRanges;
use crate::catalog::ranges::{RangeTable, VerifiedRanges};
use crate::catalog::{Catalog, CatalogConfig, Category};
use crate::client::{ClientId, Identity};
use crate::documents::Offer;
use crate::request_headers::RequestHeaders;
use crate::settings::{ConfigError, Source};
use crate::signals::behaviour::Kind;
use crate::signals::transport::{self, Transport};
use crate::signals::web_bot_auth::{
    self, AgentKeys, SignatureError, Signed, SignedParts, WebBotAuth, WebBotAuthConfig,
};
use crate::signals::{RequestView, UserAgentCache, is_image_dest, is_local_host, shape};
use crate::verdict::{Reason, Reasons};
use reader::UserAgentReader;

/// The `[ranges]` name that replaces the embedded cloud and hosting list.
const DATACENTER_RANGES: &str = "datacenter";

/// `[images]`: what counts as an image request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ImagesConfig {
    /// Path extensions that make a request an image request (case-insensitive).
    pub(crate) extensions: Vec<String>,
}

impl Default for ImagesConfig {
    fn default() -> Self {
        ImagesConfig {
            extensions: [
                "jpg", "jpeg", "png", "webp", "avif", "gif", "svg", "heic", "heif", "jxl", "bmp",
                "tif", "tiff",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

/// The classify stage, compiled: the catalog, the verified ranges, the image extensions.
#[derive(Debug)]
pub(crate) struct Classifier {
    pub(crate) catalog: Catalog,
    pub(crate) ranges: VerifiedRanges,
    /// Per catalog agent: its range table's name, when it has one.
    agent_ranges: Vec<Option<String>>,
    image_extensions: Vec<String>,
    /// Reads a User-Agent in one pass (the catalog's tokens, browser markers, crawler words).
    reader: UserAgentReader,
    /// User-Agents read so far under this catalog.
    user_agents: UserAgentCache,
    /// `[web_bot_auth]`, when enabled.
    pub(crate) web_bot_auth: Option<WebBotAuth>,
    /// Cloud and hosting ranges (the embedded list is shared by every compile).
    datacenter: Arc<DatacenterRanges>,
}

/// What classifying one request found. Later stages read it instead of working it out again.
#[derive(Debug)]
pub(crate) struct Classification {
    pub(crate) client: ClientId,
    /// Browsers treat the origin as secure (TLS, a trusted proxy's `https`, localhost).
    pub(crate) secure: bool,
    /// The path ends in an image extension.
    pub(crate) image_path: bool,
    /// `Sec-Fetch-Dest: image`.
    pub(crate) fetch_dest_image: bool,
    /// Page, image, robots.txt or other.
    pub(crate) kind: Kind,
    /// A top-level navigation to an image ([`direct_open`]): counted as a page view.
    pub(crate) direct_open: bool,
    /// The catalog agent the User-Agent names (an index into the catalog).
    pub(crate) agent: Option<usize>,
    /// What the client is.
    pub(crate) category: Category,
    /// The header-shape and catalog signals (`known-agent`, `verified-agent`, `spoofed-agent`).
    pub(crate) reasons: Reasons,
    /// The Web Bot Auth signature's verdict (none: unsigned, or verification off).
    pub(crate) signature: Option<Result<Signed, SignatureError>>,
    /// The price the request offers (`crawler-exact-price` / `crawler-max-price`), or what
    /// is wrong with it; read only when some action is `license`.
    pub(crate) offer: Result<Option<Offer>, String>,
    /// The cloud or hosting provider of the client's address (see [`Classifier::datacenter_name`]).
    pub(crate) datacenter: Option<u8>,
}

impl Classification {
    /// An image by its path or by fetch metadata (the category actions' notion of an image).
    pub(crate) fn image(&self) -> bool {
        self.image_path || self.fetch_dest_image
    }
}

/// The parts of a request classification reads.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RequestParts<'a> {
    pub(crate) method: &'a Method,
    pub(crate) path: &'a str,
    pub(crate) version: Version,
    pub(crate) headers: &'a HeaderMap,
    /// The headers every stage reads, found in one pass over `headers`.
    pub(crate) known: RequestHeaders<'a>,
    /// The connection is TLS (or the URI says `https`).
    pub(crate) tls: bool,
    /// The URI's authority, or the `Host` header.
    pub(crate) authority: Option<&'a str>,
    /// The query, without `?`.
    pub(crate) query: Option<&'a str>,
    /// The connection's TLS and HTTP/2 fingerprints, when the server terminated TLS.
    pub(crate) transport: Option<Transport>,
}

impl<'a> RequestParts<'a> {
    pub(crate) fn of<B>(request: &'a http::Request<B>) -> Self {
        let known = RequestHeaders::of(request.headers());
        RequestParts {
            method: request.method(),
            path: request.uri().path(),
            version: request.version(),
            headers: request.headers(),
            known,
            tls: request.extensions().get::<crate::client::Tls>().is_some()
                || request.uri().scheme() == Some(&http::uri::Scheme::HTTPS),
            authority: request
                .uri()
                .authority()
                .map(|a| a.as_str())
                .or_else(|| known.host?.to_str().ok()),
            query: request.uri().query(),
            transport: request.extensions().get::<Transport>().copied(),
        }
    }
}

impl Classifier {
    /// Loads the catalog and the ranges files; `resolve` makes relative paths absolute.
    pub(crate) fn compile(
        catalog: &CatalogConfig,
        ranges: &std::collections::BTreeMap<String, PathBuf>,
        images: &ImagesConfig,
        web_bot_auth: &WebBotAuthConfig,
        resolve: &dyn Fn(&Path) -> PathBuf,
        source: &Source<'_>,
    ) -> Result<Classifier, ConfigError> {
        let catalog = catalog.load(resolve)?;
        let web_bot_auth = WebBotAuth::compile(web_bot_auth, &catalog, source)?;
        let mut overrides: std::collections::BTreeMap<String, PathBuf> = ranges
            .iter()
            .map(|(k, v)| (k.clone(), resolve(v)))
            .collect();
        let datacenter = match overrides.remove(DATACENTER_RANGES) {
            Some(path) => Arc::new(DatacenterRanges::load(&path)?),
            None => DatacenterRanges::embedded()?,
        };
        let ranges = VerifiedRanges::load(&overrides)?;
        let mut agent_ranges = Vec::with_capacity(catalog.len());
        for agent in catalog.agents() {
            if let Some(name) = agent.ranges()
                && ranges.get(name).is_none()
            {
                return Err(source.invalid(
                    None,
                    format!(
                        "catalog agent {:?} names ranges file {name:?}, which is neither embedded nor set in [ranges]",
                        agent.name()
                    ),
                ));
            }
            agent_ranges.push(agent.ranges().map(str::to_owned));
        }
        Ok(Classifier {
            reader: UserAgentReader::new(&catalog)?,
            catalog,
            ranges,
            agent_ranges,
            image_extensions: images
                .extensions
                .iter()
                .map(|e| e.trim_start_matches('.').to_ascii_lowercase())
                .collect(),
            user_agents: UserAgentCache::default(),
            web_bot_auth,
            datacenter,
        })
    }

    /// The provider of the cloud or hosting range holding `ip`.
    pub(crate) fn datacenter_provider(&self, ip: std::net::IpAddr) -> Option<&str> {
        self.datacenter.provider(ip)
    }

    /// The key (`aws`, `hetzner`, …) of the provider a classification found.
    pub(crate) fn datacenter_name(&self, index: u8) -> Option<&str> {
        self.datacenter.provider_name(index)
    }

    fn range_table(&self, agent_index: usize) -> Option<&RangeTable> {
        self.agent_ranges
            .get(agent_index)?
            .as_deref()
            .and_then(|name| self.ranges.get(name))
    }

    /// Whether `path` (without query) ends in an image extension.
    pub(crate) fn is_image_path(&self, path: &str) -> bool {
        let path = path.as_bytes();
        // The extension: after the last dot, when no slash follows it.
        let Some(dot) = memchr::memrchr2(b'.', b'/', path).filter(|&i| path[i] == b'.') else {
            return false;
        };
        let ext = &path[dot + 1..];
        self.image_extensions
            .iter()
            .any(|e| e.len() == ext.len() && e.as_bytes().eq_ignore_ascii_case(ext))
    }

    /// Classifies one request from an identified client.
    pub(crate) fn classify(
        &self,
        identity: &Identity,
        request: &RequestParts<'_>,
    ) -> Classification {
        let known = &request.known;
        let secure = request.tls || identity.forwarded_https || is_local_host(known.host);
        let image_path = self.is_image_path(request.path);
        let fetch_dest_image = is_image_dest(known.sec_fetch_dest);
        let view = RequestView {
            method: request.method,
            path: request.path,
            version: request.version,
            headers: request.headers,
            secure,
            image: image_path || fetch_dest_image,
        };
        let ua = known.user_agent_bytes();
        let reading = self.user_agents.get_or_read(ua, |ua| self.reader.read(ua));
        let agent = reading.agent.map(|i| i as usize);
        let mut reasons = shape(&view, known, ua.is_empty(), agent.is_some(), &reading);
        let client = identity.client;
        let category = match agent {
            Some(index) => {
                reasons.insert(Reason::KnownAgent);
                if let Some(ranges) = self.range_table(index) {
                    if client != ClientId::UNKNOWN && ranges.contains(client.ip()) {
                        reasons.insert(Reason::VerifiedAgent);
                    } else {
                        reasons.insert(Reason::SpoofedAgent);
                    }
                }
                self.catalog.agents()[index].category()
            }
            // A User-Agent that names itself a robot is no browser, whatever it starts with.
            None if reasons.contains(Reason::NoUserAgent)
                || reasons.contains(Reason::NonBrowserUserAgent)
                || reasons.contains(Reason::BotLikeUserAgent) =>
            {
                Category::Unknown
            }
            None => Category::Browser,
        };
        // Behind a trusted proxy the connection (and its fingerprints) is the proxy's.
        if agent.is_none()
            && !identity.via_trusted_proxy
            && let Some(transport) = &request.transport
            && transport::contradicts(&reading.browser, transport)
        {
            reasons.insert(Reason::TransportMismatch);
        }
        let datacenter = if client == ClientId::UNKNOWN {
            None
        } else {
            self.datacenter.provider_index(client.ip())
        };
        if datacenter.is_some() {
            reasons.insert(Reason::Datacenter);
        }
        let direct_open = view.image && direct_open(known, secure, fetch_dest_image);
        let kind = if direct_open {
            Kind::Page
        } else {
            request_kind(request.method, request.path, known, view.image)
        };
        Classification {
            client,
            secure,
            image_path,
            fetch_dest_image,
            kind,
            direct_open,
            agent,
            category,
            reasons,
            signature: None,
            offer: Ok(None),
            datacenter,
        }
    }

    /// Verifies the request's Web Bot Auth signature at unix time `now` and adds what it
    /// proves: a valid one from a listed directory makes the request a verified agent of that
    /// directory's catalog entry; a User-Agent naming an agent known to sign, without a valid
    /// signature from a listed directory, is a spoofer. `record`: remember the nonce (off
    /// for `explain`, which must not use it up).
    pub(crate) fn check_signature(
        &self,
        found: &mut Classification,
        request: &RequestParts<'_>,
        keys: &AgentKeys,
        now: u64,
        record: bool,
    ) {
        let Some(config) = &self.web_bot_auth else {
            return;
        };
        let parts = SignedParts {
            method: request.method,
            scheme: if request.tls { "https" } else { "http" },
            authority: request.authority,
            path: request.path,
            query: request.query,
            headers: request.headers,
        };
        let mut signature = web_bot_auth::verify(config, keys, &parts, now);
        if record
            && let Some(Ok(signed)) = &signature
            && let Err(replayed) = keys.note_use(signed)
        {
            signature = Some(Err(replayed));
        }
        let claims_signer = found
            .agent
            .is_some_and(|index| self.catalog.agents()[index].signs());
        let vouched = match &signature {
            Some(Ok(signed)) => {
                found.reasons.insert(Reason::SignedAgent);
                signed.agent
            }
            Some(Err(error)) => {
                found.reasons.insert(error.reason());
                None
            }
            None => None,
        };
        match vouched {
            Some(index) => {
                found.agent = Some(index);
                found.category = self.catalog.agents()[index].category();
                found.reasons.insert(Reason::KnownAgent);
                found.reasons.insert(Reason::VerifiedAgent);
                found.reasons.remove(Reason::SpoofedAgent);
            }
            None if claims_signer => {
                found.reasons.insert(Reason::UnsignedAgent);
                found.reasons.insert(Reason::SpoofedAgent);
                found.reasons.remove(Reason::VerifiedAgent);
            }
            None => {}
        }
        found.signature = signature;
    }

    /// The name of catalog agent `index`, shared (no copy per verdict).
    pub(crate) fn agent_name(&self, index: usize) -> Arc<str> {
        self.catalog.agents()[index].shared_name().clone()
    }
}

/// A browser tab opening an image (a shared photo link): `Accept` starting with `text/html`,
/// or `Sec-Fetch-Dest: document` where browsers send fetch metadata (secure origins). A person
/// opening links one after another is browsing pages, so it is charged as a page view (page
/// pace, page quotas) rather than as an image no page embedded.
fn direct_open(known: &RequestHeaders<'_>, secure: bool, fetch_dest_image: bool) -> bool {
    if fetch_dest_image {
        return false;
    }
    let html_first = known
        .accept
        .is_some_and(|a| crate::tag::starts_with_ignore_case(a.as_bytes(), b"text/html"));
    let document = secure
        && known
            .sec_fetch_dest
            .is_some_and(|d| d.as_bytes().eq_ignore_ascii_case(b"document"));
    html_first || document
}

/// Page, image, robots.txt or other, from the request alone. `image`: an image extension or
/// `Sec-Fetch-Dest: image`.
fn request_kind(method: &Method, path: &str, known: &RequestHeaders<'_>, image: bool) -> Kind {
    if path == "/robots.txt" {
        return Kind::Robots;
    }
    if image
        || known
            .accept
            .is_some_and(|a| a.as_bytes().starts_with(b"image/"))
    {
        return Kind::Image;
    }
    if method != Method::GET && method != Method::HEAD {
        return Kind::Other;
    }
    if is_page_path(path) {
        Kind::Page
    } else {
        Kind::Other
    }
}

/// Whether a path (without query) names a page: its last segment has no extension, or an
/// HTML-ish one (`/`, `/gallery/2`, `/visit.html`). Replay reads access logs by it.
pub(crate) fn is_page_path(path: &str) -> bool {
    let file = path.rsplit('/').next().unwrap_or(path);
    match file.rsplit_once('.') {
        None => true,
        Some((_, ext)) => ["html", "htm", "php", "asp", "aspx", "shtml"]
            .iter()
            .any(|e| e.eq_ignore_ascii_case(ext)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_paths() {
        let c = Classifier::compile(
            &CatalogConfig::default(),
            &Default::default(),
            &ImagesConfig::default(),
            &WebBotAuthConfig::default(),
            &|p: &Path| p.to_path_buf(),
            &Source::new("test", ""),
        )
        .unwrap();
        assert!(c.is_image_path("/photos/IMG_0001.JPG"));
        assert!(c.is_image_path("/a.webp"));
        assert!(!c.is_image_path("/gallery/"));
        assert!(!c.is_image_path("/jpg"));
        assert!(!c.is_image_path("/index.html"));
    }
}
