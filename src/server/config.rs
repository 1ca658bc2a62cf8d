//! The `[server]`, `[proxy]` and `[[site]]` tables of the policy file, and their resolution into
//! [`Settings`] the server runs with.
//!
//! ```toml
//! [server]
//! listen = "0.0.0.0:8080"
//! admin = "127.0.0.1:9090"        # "off" disables the admin listener
//! root = "/srv/photos"            # the default site serves this folder …
//! # upstream = "http://127.0.0.1:3000"   # … or proxies to this origin
//! default_site = "crown"          # unknown Host: this site (without it: 421)
//!
//! [proxy]
//! connect_timeout = "5s"
//!
//! [[site]]
//! name = "crown"
//! hosts = ["thecrown.example", "www.thecrown.example"]
//! root = "/srv/crown"
//! [site.policy]                   # overrides of the policy above, for this site only
//! mode = "report-only"
//! ```

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::Uri;
use serde::Deserialize;
use serde_spanned::Spanned;

use super::ServerError;
pub use super::acme::{AcmeSettings, Challenge};
use crate::policy::Policy;
use crate::settings::ConfigError;

/// `lenscap serve`'s view of the policy file: its own tables. The rest of the file is the
/// policy, which [`Policy`] reads and checks (unknown keys included) from the same text.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ServerFile {
    pub(crate) server: ServerSection,
    pub(crate) proxy: ProxySection,
    pub(crate) site: Vec<SiteSection>,
    pub(crate) store: crate::limit::StoreConfig,
}

/// `[server]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// Address the server listens on (default `127.0.0.1:8080`).
    pub listen: Spanned<String>,
    /// Address of the admin listener (`/metrics`, `/healthz`, `/readyz`); `"off"` disables it.
    pub admin: Spanned<String>,
    /// Static folder of the default site.
    pub root: Option<PathBuf>,
    /// Upstream origin of the default site, e.g. `http://127.0.0.1:3000`.
    pub upstream: Option<Spanned<String>>,
    /// The `[[site]]` that answers a Host no site names (default: the site built from `root`
    /// or `upstream`, else 421 Misdirected Request).
    pub default_site: Option<Spanned<String>>,
    /// Longest wait for a complete request head, idle keep-alive time included (slowloris).
    pub header_read_timeout: Spanned<String>,
    /// Largest request head (request line and headers), in bytes; at least 8192 in effect
    /// (hyper's smallest buffer).
    pub max_header_bytes: Spanned<usize>,
    /// Most client connections open at once; beyond that new ones are closed at once. Default:
    /// what the open-file limit leaves (half of it, less a reserve), at most 16,384.
    pub max_connections: Spanned<usize>,
    /// Longest time a connection stays open with no request in progress (HTTP/2: no stream
    /// open), on the main and the admin listener.
    pub idle_timeout: Spanned<String>,
    /// HTTP/2: how often a connection that has sent nothing for that long is pinged.
    pub http2_keep_alive_interval: Spanned<String>,
    /// HTTP/2: longest wait for a ping's answer before the connection is closed.
    pub http2_keep_alive_timeout: Spanned<String>,
    /// Longest time the server's writes to a client may stay blocked (a client that does not
    /// take its answer) before the connection is cut.
    pub send_timeout: Spanned<String>,
    /// Most connections to the admin listener open at once.
    pub admin_max_connections: Spanned<usize>,
    /// On reload, how long the file must stay unchanged before it is read.
    pub reload_settle_time: Spanned<String>,
    /// How long in-flight requests may take to finish on shutdown.
    pub grace_period: Spanned<String>,
    /// PEM certificate chain; with `tls_key`, the listener speaks TLS only.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key.
    pub tls_key: Option<PathBuf>,
    /// Reload the policy (and the certificate files) when they change (SIGHUP always
    /// reloads).
    pub watch: bool,
    /// Static folders without an `index.html`: `"auto"` answers them with generated album
    /// pages and thumbnails, `"off"` leaves them to 404.
    pub gallery: Spanned<String>,
    /// Where generated thumbnails are kept (default: `lenscap-gallery` in the system temp
    /// folder).
    pub gallery_cache: Option<PathBuf>,
    /// Most bytes of thumbnails kept on disk; the oldest go first.
    pub gallery_cache_max_bytes: u64,
    /// Serve dot files (`/.env`, `/.git/…`) from static folders; Lenscap's own `/.well-known/`
    /// answers are unaffected.
    pub dotfiles: bool,
    /// Follow symbolic links that lead out of a static folder.
    pub outside_symlinks: bool,
    /// Access log: a file to append one JSON line per request to, or `"-"` for standard
    /// output; off when absent. Reopened on SIGHUP and SIGUSR1.
    pub access_log: Option<Spanned<String>>,
    /// Most access log lines waiting to be written; beyond that lines are dropped (and
    /// counted), never a request held up.
    pub access_log_buffer: Spanned<usize>,
    /// A bearer token the admin listener requires (`Authorization: Bearer …`).
    pub admin_token: Option<Spanned<String>>,
    /// With `admin_password`: basic auth the admin listener requires (what a browser asks for).
    pub admin_user: Option<Spanned<String>>,
    /// The basic-auth password.
    pub admin_password: Option<Spanned<String>>,
    /// Show whole client addresses on the dashboard instead of their /24 (IPv4) or /48 (IPv6).
    pub dashboard_full_addresses: bool,
    /// A plain-HTTP listener that redirects every request to HTTPS and answers ACME HTTP-01
    /// challenges, e.g. `"0.0.0.0:80"` (needs TLS: certificate files or `[server.acme]`).
    pub redirect_http: Option<Spanned<String>>,
    /// `[server.acme]`: certificates obtained and renewed automatically.
    pub acme: Option<Spanned<AcmeSection>>,
}

/// `[server.acme]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AcmeSection {
    /// Names to hold certificates for (default: every `[[site]]` host that is a name).
    pub domains: Option<Vec<Spanned<String>>>,
    /// The ACME directory (default: Let's Encrypt's production directory).
    pub directory: Spanned<String>,
    /// PEM root certificates trusted for the directory besides the system's (a private or
    /// test directory).
    pub directory_ca: Option<PathBuf>,
    /// Contact URL or URLs for the account, e.g. `"mailto:owner@thecrown.example"`.
    pub contact: Contact,
    /// Where the account and certificates are kept (default: `$STATE_DIRECTORY/acme` under
    /// systemd, else `acme/` beside the config file).
    pub cache: Option<PathBuf>,
    /// `"tls-alpn-01"` (on the TLS listener, the default) or `"http-01"` (on
    /// `server.redirect_http`).
    pub challenge: Spanned<String>,
    /// How long before expiry a certificate is renewed (sooner for short-lived ones: a third
    /// of their lifetime).
    pub renew_before: Spanned<String>,
}

impl Default for AcmeSection {
    fn default() -> Self {
        AcmeSection {
            domains: None,
            directory: Spanned::new(0..0, super::acme::LETS_ENCRYPT.to_owned()),
            directory_ca: None,
            contact: Contact::default(),
            cache: None,
            challenge: Spanned::new(0..0, "tls-alpn-01".to_owned()),
            renew_before: Spanned::new(0..0, "720h".to_owned()),
        }
    }
}

/// One contact URL or several.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Contact {
    /// `contact = "mailto:…"`
    One(String),
    /// `contact = ["mailto:…", …]`
    Many(Vec<String>),
}

impl Default for Contact {
    fn default() -> Self {
        Contact::Many(Vec::new())
    }
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            listen: Spanned::new(0..0, "127.0.0.1:8080".into()),
            admin: Spanned::new(0..0, "127.0.0.1:9090".into()),
            root: None,
            upstream: None,
            default_site: None,
            header_read_timeout: Spanned::new(0..0, "10s".into()),
            max_header_bytes: Spanned::new(0..0, 16 * 1024),
            max_connections: Spanned::new(0..0, DEFAULT_MAX_CONNECTIONS),
            idle_timeout: Spanned::new(0..0, "60s".into()),
            http2_keep_alive_interval: Spanned::new(0..0, "20s".into()),
            http2_keep_alive_timeout: Spanned::new(0..0, "20s".into()),
            send_timeout: Spanned::new(0..0, "60s".into()),
            admin_max_connections: Spanned::new(0..0, 16),
            reload_settle_time: Spanned::new(0..0, "250ms".into()),
            grace_period: Spanned::new(0..0, "10s".into()),
            tls_cert: None,
            tls_key: None,
            watch: true,
            gallery: Spanned::new(0..0, "auto".into()),
            gallery_cache: None,
            gallery_cache_max_bytes: 256 * 1024 * 1024,
            dotfiles: false,
            outside_symlinks: false,
            access_log: None,
            access_log_buffer: Spanned::new(0..0, 8192),
            admin_token: None,
            admin_user: None,
            admin_password: None,
            dashboard_full_addresses: false,
            redirect_http: None,
            acme: None,
        }
    }
}

/// `[proxy]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxySection {
    /// Longest wait for a TCP connection to the upstream (then 504).
    pub connect_timeout: Spanned<String>,
    /// Longest wait for the upstream's response head (then 504).
    pub response_timeout: Spanned<String>,
    /// Longest pause between two pieces of a response body (then the response is cut).
    pub body_idle_timeout: Spanned<String>,
    /// Longest time for a whole exchange, body included.
    pub total_timeout: Spanned<String>,
    /// Idle upstream connections kept per host.
    pub pool_max_idle: usize,
    /// How long an idle upstream connection is kept.
    pub pool_idle_timeout: Spanned<String>,
    /// Send the client's Host upstream (default); `false` sends the upstream's authority.
    pub preserve_host: bool,
    /// Longest wait for the next piece of a client's request body (then 408).
    pub request_body_idle_timeout: Spanned<String>,
    /// Bytes per second a request body must average, once it has been waited on for
    /// `request_body_idle_timeout` in all (then 408); 0 turns the check off.
    pub request_body_min_rate: u64,
}

impl Default for ProxySection {
    fn default() -> Self {
        let d = |s: &str| Spanned::new(0..0, s.to_owned());
        ProxySection {
            connect_timeout: d("5s"),
            response_timeout: d("60s"),
            body_idle_timeout: d("60s"),
            total_timeout: d("10m"),
            pool_max_idle: 256,
            pool_idle_timeout: d("90s"),
            preserve_host: true,
            request_body_idle_timeout: d("30s"),
            request_body_min_rate: 1024,
        }
    }
}

/// The ceiling of the derived `server.max_connections`, and its default where the open-file
/// limit is unknown.
pub const DEFAULT_MAX_CONNECTIONS: usize = 16_384;

/// One `[[site]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteSection {
    /// Name used in logs and metrics labels.
    pub name: Spanned<String>,
    /// Host names (without port) this site answers.
    #[serde(default)]
    pub hosts: Vec<Spanned<String>>,
    /// Static folder.
    pub root: Option<PathBuf>,
    /// Upstream origin.
    pub upstream: Option<Spanned<String>>,
    /// Policy keys overriding the top-level policy for this site.
    pub policy: Option<Spanned<toml::Table>>,
}

/// What a site serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Content {
    /// A folder of pages and photos.
    Static(PathBuf),
    /// An upstream origin (`http://host:port`, optionally with a base path).
    Proxy(Uri),
}

impl std::fmt::Display for Content {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Content::Static(path) => write!(f, "static folder {}", path.display()),
            Content::Proxy(uri) => write!(f, "upstream {uri}"),
        }
    }
}

/// One site, resolved.
#[derive(Debug)]
pub struct SiteSpec {
    /// Its name.
    pub name: String,
    /// Lower-case host names, no port.
    pub hosts: Vec<String>,
    /// What it serves.
    pub content: Content,
    /// Its compiled policy.
    pub policy: Policy,
}

/// Proxy timeouts and pool, resolved.
#[derive(Clone, Debug)]
pub struct ProxySettings {
    /// TCP connect.
    pub connect_timeout: Duration,
    /// Response head.
    pub response_timeout: Duration,
    /// Pause within a response body.
    pub body_idle_timeout: Duration,
    /// Whole exchange.
    pub total_timeout: Duration,
    /// Idle connections kept per host.
    pub pool_max_idle: usize,
    /// Idle connection lifetime.
    pub pool_idle_timeout: Duration,
    /// Pass the client's Host on.
    pub preserve_host: bool,
    /// Pause within a request body.
    pub request_body_idle_timeout: Duration,
    /// Least average request-body rate, bytes per second (0: off).
    pub request_body_min_rate: u64,
}

/// How static folders are served, resolved from `[server]`.
#[derive(Clone, Debug)]
pub struct StaticOptions {
    /// Generated album pages for folders without `index.html`.
    pub gallery: bool,
    /// The thumbnail cache folder.
    pub gallery_cache: PathBuf,
    /// The thumbnail cache's size bound, in bytes.
    pub gallery_cache_max_bytes: u64,
    /// Dot files are served.
    pub dotfiles: bool,
    /// Symbolic links out of the folder are followed.
    pub outside_symlinks: bool,
}

impl Default for StaticOptions {
    fn default() -> Self {
        StaticOptions {
            gallery: true,
            gallery_cache: std::env::temp_dir().join("lenscap-gallery"),
            gallery_cache_max_bytes: 256 * 1024 * 1024,
            dotfiles: false,
            outside_symlinks: false,
        }
    }
}

/// Where the access log goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessLogTarget {
    /// Standard output (`"-"`).
    Stdout,
    /// A file, appended to.
    File(PathBuf),
}

/// What the admin listener asks of a client.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AdminAuth {
    /// `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// `Authorization: Basic …` for this user and password.
    pub basic: Option<(String, String)>,
}

impl AdminAuth {
    /// Whether anything is required.
    pub fn required(&self) -> bool {
        self.token.is_some() || self.basic.is_some()
    }
}

/// Everything the server runs with, resolved from the file and the command line.
#[derive(Debug)]
pub struct Settings {
    /// Main listener.
    pub listen: SocketAddr,
    /// Admin listener.
    pub admin: Option<SocketAddr>,
    /// Certificate and key files.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Request-head timeout.
    pub header_read_timeout: Duration,
    /// Largest request head.
    pub max_header_bytes: usize,
    /// Connection limit.
    pub max_connections: usize,
    /// Whether `max_connections` was set in the file (else the server derives it from the
    /// open-file limit).
    pub max_connections_set: bool,
    /// Longest time without a request in progress.
    pub idle_timeout: Duration,
    /// HTTP/2 ping interval.
    pub http2_keep_alive_interval: Duration,
    /// HTTP/2 ping answer timeout.
    pub http2_keep_alive_timeout: Duration,
    /// Longest blocked write to a client.
    pub send_timeout: Duration,
    /// Admin connection limit.
    pub admin_max_connections: usize,
    /// How long a changed file must stay unchanged before a reload reads it.
    pub reload_settle_time: Duration,
    /// Shutdown grace period.
    pub grace_period: Duration,
    /// Reload on file change.
    pub watch: bool,
    /// Static folders: gallery, dot files, symbolic links.
    pub statics: StaticOptions,
    /// The plain listener redirecting to HTTPS (and answering HTTP-01).
    pub redirect_http: Option<SocketAddr>,
    /// Automatic certificates.
    pub acme: Option<AcmeSettings>,
    /// Proxy settings shared by every proxied site.
    pub proxy: ProxySettings,
    /// The access log, if on.
    pub access_log: Option<AccessLogTarget>,
    /// Lines the access log buffers at most.
    pub access_log_buffer: usize,
    /// The admin listener's credentials.
    pub admin_auth: AdminAuth,
    /// Whole addresses on the dashboard.
    pub dashboard_full_addresses: bool,
    /// The sites; the first matching host wins.
    pub sites: Vec<SiteSpec>,
    /// Index in `sites` of the site answering unknown hosts.
    pub default_site: Option<usize>,
    /// `[store]`: the shared store of a fleet (`None`: the in-process store).
    pub store: Option<crate::limit::StoreSettings>,
}

/// Command-line values that override the file.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--admin` (`Some(None)` disables it).
    pub admin: Option<Option<SocketAddr>>,
    /// `--static`.
    pub root: Option<PathBuf>,
    /// `--upstream`.
    pub upstream: Option<String>,
    /// Served when neither the file nor the flags name anything to serve (the demo gallery).
    pub fallback_root: Option<PathBuf>,
}

/// Where a setting came from, to point at it in errors.
struct Source<'a> {
    name: &'a str,
    text: &'a str,
    base: Option<&'a Path>,
}

impl Source<'_> {
    fn lines(&self) -> crate::settings::Source<'_> {
        crate::settings::Source::new(self.name, self.text)
    }

    fn invalid(
        &self,
        span: std::ops::Range<usize>,
        message: impl std::fmt::Display,
    ) -> ServerError {
        self.lines().invalid(Some(span), message.to_string()).into()
    }

    fn duration(&self, key: &str, value: &Spanned<String>) -> Result<Duration, ServerError> {
        Ok(self.lines().duration(key, value)?)
    }

    /// A duration that must not be zero (a timer that fires at once).
    fn positive_duration(
        &self,
        key: &str,
        value: &Spanned<String>,
    ) -> Result<Duration, ServerError> {
        let duration = self.duration(key, value)?;
        if duration.is_zero() {
            return Err(self.invalid(
                value.span(),
                format!("{key} = {:?} must be longer than zero", value.get_ref()),
            ));
        }
        Ok(duration)
    }

    fn resolve(&self, path: &Path) -> PathBuf {
        match self.base {
            Some(base) if path.is_relative() => base.join(path),
            _ => path.to_path_buf(),
        }
    }
}

/// Parses an upstream origin: `http://host[:port][/base]`.
pub fn parse_upstream(text: &str) -> Result<Uri, String> {
    let uri: Uri = text
        .parse()
        .map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => {
            return Err(format!(
                "{text:?}: scheme {other:?} is not supported (use http://; TLS to the upstream is not built yet)"
            ));
        }
        None => return Err(format!("{text:?} needs a scheme, e.g. http://{text}")),
    }
    if uri.authority().is_none() {
        return Err(format!("{text:?} has no host"));
    }
    if uri.query().is_some() {
        return Err(format!("{text:?}: an upstream cannot have a query"));
    }
    Ok(uri)
}

fn parse_addr(
    source: &Source<'_>,
    key: &str,
    value: &Spanned<String>,
) -> Result<SocketAddr, ServerError> {
    parse_listen(value.get_ref())
        .map_err(|message| source.invalid(value.span(), format!("{key} = {message}")))
}

/// A listening address, `host:port`. A bare port is refused with both meanings spelled out:
/// this machine only, or every interface (choosing for the user would surprise one of them).
pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.trim().parse::<SocketAddr>() {
        return Ok(addr);
    }
    let port = text.trim().trim_start_matches(':');
    if let Ok(port) = port.parse::<u16>() {
        return Err(format!(
            "{text:?} has no host: use \"127.0.0.1:{port}\" (this machine only) or \"0.0.0.0:{port}\" (every interface)"
        ));
    }
    Err(format!(
        "{text:?} is not an address like \"127.0.0.1:8080\", \"0.0.0.0:443\" or \"[::1]:8080\""
    ))
}

/// The policy text without the server tables, with `overrides` merged in (tables merge key by
/// key, everything else is replaced).
fn merged_policy_text(root: &toml::Table, overrides: &toml::Table) -> String {
    fn merge(into: &mut toml::Table, from: &toml::Table) {
        for (key, value) in from {
            match (into.get_mut(key), value) {
                (Some(toml::Value::Table(a)), toml::Value::Table(b)) => merge(a, b),
                _ => {
                    into.insert(key.clone(), value.clone());
                }
            }
        }
    }
    let mut table = root.clone();
    for key in ["server", "proxy", "site"] {
        table.remove(key);
    }
    merge(&mut table, overrides);
    toml::to_string(&table).expect("a TOML table serialises")
}

/// Keys a site policy cannot set: they belong to the whole server.
const SERVER_ONLY: [&str; 3] = ["server", "proxy", "site"];

/// Compiles the policy of the `index`th `[[site]]`: the file's policy with the site's
/// overrides merged in. Keys that would do nothing per site are refused, and every error
/// points at the file's own line (the merged text is not the file).
fn site_policy(
    source: &Source<'_>,
    root: &toml::Table,
    index: usize,
    name: &str,
    overrides: &Spanned<toml::Table>,
) -> Result<Policy, ServerError> {
    let site_path = |rest: &[&str]| {
        let mut path = vec![
            Part::Key("site".into()),
            Part::Index(index),
            Part::Key("policy".into()),
        ];
        path.extend(rest.iter().map(|k| Part::Key((*k).to_owned())));
        path
    };
    for key in SERVER_ONLY {
        if overrides.get_ref().contains_key(key) {
            let span = key_span(source.text, &site_path(&[key])).unwrap_or(overrides.span());
            return Err(source.invalid(
                span,
                format!(
                    "[site.policy.{key}] of site {name:?} would do nothing: [{key}] applies to the whole server; set it at the top level of the file"
                ),
            ));
        }
    }
    let merged = merged_policy_text(root, overrides.get_ref());
    Policy::compile_named(&merged, source.name, source.base).map_err(|error| {
        let (source_name, message) = match error {
            ConfigError::Parse {
                source_name,
                message,
            }
            | ConfigError::Invalid {
                source_name,
                message,
            } => (source_name, message),
            other => return ServerError::Config(other),
        };
        // "line N…" of the merged text → the key there → that key's line in the file.
        let relocated = leading_line(&message).and_then(|(line, rest)| {
            let path = path_at_line(&merged, line)?;
            let mut in_site = site_path(&[]);
            in_site.extend(path.iter().cloned());
            let span = key_span(source.text, &in_site).or_else(|| key_span(source.text, &path))?;
            let line = crate::settings::line_col(source.text, span.start).0;
            Some((line, rest.to_owned()))
        });
        let (line, message) = relocated.unwrap_or_else(|| {
            let line = crate::settings::line_col(source.text, overrides.span().start).0;
            (line, format!("in the merged policy, {message}"))
        });
        ServerError::Config(ConfigError::Invalid {
            source_name,
            message: format!("line {line}: [site.policy] of site {name:?}: {message}"),
        })
    })
}

/// One step of a path into a TOML document.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Key(String),
    Index(usize),
}

/// `line N: rest` or `line N, column C: rest` → `(N, rest)`.
fn leading_line(message: &str) -> Option<(usize, &str)> {
    let after = message.strip_prefix("line ")?;
    let digits = after.bytes().take_while(u8::is_ascii_digit).count();
    let line = after[..digits].parse().ok()?;
    let rest = &after[digits..];
    let rest = rest.split_once(": ").map_or(rest, |(_, r)| r);
    Some((line, rest))
}

/// The path of the deepest key written on `line` of `text`.
fn path_at_line(text: &str, line: usize) -> Option<Vec<Part>> {
    fn walk(
        text: &str,
        table: &toml::de::DeTable<'_>,
        line: usize,
        path: &mut Vec<Part>,
        found: &mut Option<Vec<Part>>,
    ) {
        for (key, value) in table {
            path.push(Part::Key(key.get_ref().to_string()));
            if crate::settings::line_col(text, key.span().start).0 == line {
                *found = Some(path.clone());
            }
            walk_value(text, value.get_ref(), line, path, found);
            path.pop();
        }
    }
    fn walk_value(
        text: &str,
        value: &toml::de::DeValue<'_>,
        line: usize,
        path: &mut Vec<Part>,
        found: &mut Option<Vec<Part>>,
    ) {
        match value {
            toml::de::DeValue::Table(table) => walk(text, table, line, path, found),
            toml::de::DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    path.push(Part::Index(i));
                    walk_value(text, item.get_ref(), line, path, found);
                    path.pop();
                }
            }
            _ => {}
        }
    }
    let document = toml::de::DeTable::parse(text).ok()?;
    let mut found = None;
    walk(text, document.get_ref(), line, &mut Vec::new(), &mut found);
    found
}

/// The span of the key at `path` in `text`.
fn key_span(text: &str, path: &[Part]) -> Option<std::ops::Range<usize>> {
    let document = toml::de::DeTable::parse(text).ok()?;
    let mut table = document.get_ref();
    let mut value: Option<&toml::de::DeValue<'_>> = None;
    let mut span = None;
    for part in path {
        match part {
            Part::Key(name) => {
                match value {
                    None => {}
                    Some(toml::de::DeValue::Table(inner)) => table = inner,
                    Some(_) => return None,
                }
                let (key, found) = table.iter().find(|(k, _)| *k.get_ref() == name.as_str())?;
                span = Some(key.span());
                value = Some(found.get_ref());
            }
            Part::Index(i) => match value {
                Some(toml::de::DeValue::Array(items)) => value = Some(items.get(*i)?.get_ref()),
                _ => return None,
            },
        }
    }
    span
}

/// `[server.acme]` resolved; `hosts` are the `[[site]]` hosts, the default domains.
fn resolve_acme<'h>(
    source: &Source<'_>,
    section: &Spanned<AcmeSection>,
    hosts: impl Iterator<Item = &'h String>,
) -> Result<AcmeSettings, ServerError> {
    let acme = section.get_ref();
    let mut domains = Vec::new();
    match &acme.domains {
        Some(list) => {
            for domain in list {
                let name = normalise_host(domain.get_ref())
                    .filter(|n| is_dns_name(n))
                    .ok_or_else(|| {
                        source.invalid(
                            domain.span(),
                            format!(
                                "server.acme.domains: {:?} is not a host name a certificate can be ordered for (no IP address, port or wildcard)",
                                domain.get_ref()
                            ),
                        )
                    })?;
                if !domains.contains(&name) {
                    domains.push(name);
                }
            }
        }
        None => {
            for host in hosts {
                if is_dns_name(host) && !domains.contains(host) {
                    domains.push(host.clone());
                }
            }
        }
    }
    if domains.is_empty() {
        return Err(source.invalid(
            section.span(),
            "[server.acme] has no domains: list them in server.acme.domains, or give the [[site]]s hosts",
        ));
    }
    let directory = acme.directory.get_ref().trim().to_owned();
    if !directory.starts_with("https://") {
        return Err(source.invalid(
            acme.directory.span(),
            format!("server.acme.directory = {directory:?} must be an https:// URL"),
        ));
    }
    let challenge = match acme.challenge.get_ref().as_str() {
        "tls-alpn-01" => Challenge::TlsAlpn01,
        "http-01" => Challenge::Http01,
        other => {
            return Err(source.invalid(
                acme.challenge.span(),
                format!("server.acme.challenge = {other:?}: use \"tls-alpn-01\" or \"http-01\""),
            ));
        }
    };
    let contact = match &acme.contact {
        Contact::One(one) => vec![one.clone()],
        Contact::Many(many) => many.clone(),
    };
    let cache = match &acme.cache {
        Some(path) => source.resolve(path),
        None => match std::env::var_os("STATE_DIRECTORY") {
            // systemd's StateDirectory= (several are separated by colons: take the first).
            Some(dirs) => PathBuf::from(
                dirs.to_string_lossy()
                    .split(':')
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
            )
            .join("acme"),
            None => source.resolve(Path::new("acme")),
        },
    };
    Ok(AcmeSettings {
        domains,
        directory,
        directory_ca: acme.directory_ca.as_deref().map(|p| source.resolve(p)),
        contact,
        cache,
        challenge,
        renew_before: source.duration("server.acme.renew_before", &acme.renew_before)?,
    })
}

/// A name a certificate can be ordered for: labels of letters, digits and `-`, one dot at
/// least, not an IP address.
fn is_dns_name(host: &str) -> bool {
    host.contains('.')
        && host.parse::<std::net::IpAddr>().is_err()
        && !host.starts_with('[')
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

impl Settings {
    /// The settings a reload cannot change, by key: a reload that changes any of them says so
    /// by name. (Site policies and the certificate files do apply on reload.)
    pub(crate) fn restart_only(&self) -> std::collections::BTreeMap<String, String> {
        let mut keys = std::collections::BTreeMap::new();
        let mut put = |key: &str, value: String| {
            keys.insert(key.to_owned(), value);
        };
        put("server.listen", self.listen.to_string());
        put("store", format!("{:?}", self.store));
        put("server.admin", format!("{:?}", self.admin));
        put(
            "server.tls_cert/tls_key (TLS on or off)",
            self.tls.is_some().to_string(),
        );
        put(
            "server.header_read_timeout",
            format!("{:?}", self.header_read_timeout),
        );
        put("server.max_header_bytes", self.max_header_bytes.to_string());
        put(
            "server.max_connections",
            format!(
                "{:?}",
                self.max_connections_set.then_some(self.max_connections)
            ),
        );
        put("server.idle_timeout", format!("{:?}", self.idle_timeout));
        put(
            "server.http2_keep_alive_interval",
            format!("{:?}", self.http2_keep_alive_interval),
        );
        put(
            "server.http2_keep_alive_timeout",
            format!("{:?}", self.http2_keep_alive_timeout),
        );
        put("server.send_timeout", format!("{:?}", self.send_timeout));
        put(
            "server.admin_max_connections",
            self.admin_max_connections.to_string(),
        );
        put(
            "server.reload_settle_time",
            format!("{:?}", self.reload_settle_time),
        );
        put("server.grace_period", format!("{:?}", self.grace_period));
        put("server.watch", self.watch.to_string());
        put("server.redirect_http", format!("{:?}", self.redirect_http));
        put("server.acme", format!("{:?}", self.acme));
        let p = &self.proxy;
        put("proxy.connect_timeout", format!("{:?}", p.connect_timeout));
        put(
            "proxy.response_timeout",
            format!("{:?}", p.response_timeout),
        );
        put(
            "proxy.body_idle_timeout",
            format!("{:?}", p.body_idle_timeout),
        );
        put("proxy.total_timeout", format!("{:?}", p.total_timeout));
        put("proxy.pool_max_idle", p.pool_max_idle.to_string());
        put(
            "proxy.pool_idle_timeout",
            format!("{:?}", p.pool_idle_timeout),
        );
        put("proxy.preserve_host", p.preserve_host.to_string());
        put(
            "proxy.request_body_idle_timeout",
            format!("{:?}", p.request_body_idle_timeout),
        );
        put(
            "proxy.request_body_min_rate",
            p.request_body_min_rate.to_string(),
        );
        let names: Vec<&str> = self.sites.iter().map(|s| s.name.as_str()).collect();
        put("the [[site]] list", names.join(", "));
        put(
            "server.default_site",
            format!("{:?}", self.default_site.map(|i| &self.sites[i].name)),
        );
        for site in &self.sites {
            put(
                &format!("site {:?} hosts", site.name),
                site.hosts.join(", "),
            );
            put(
                &format!("site {:?} root/upstream", site.name),
                site.content.to_string(),
            );
        }
        keys
    }

    /// Resolves parsed config (`text` is its source, used for line numbers and site policy
    /// overrides) and the command-line overrides. Compiles every site's policy and checks that
    /// static folders exist.
    pub(crate) fn resolve(
        config: ServerFile,
        text: &str,
        source_name: &str,
        base: Option<&Path>,
        overrides: &Overrides,
    ) -> Result<Settings, ServerError> {
        let source = Source {
            name: source_name,
            text,
            base,
        };
        let server = &config.server;
        let proxy_section = &config.proxy;
        let listen = match overrides.listen {
            Some(addr) => addr,
            None => parse_addr(&source, "server.listen", &server.listen)?,
        };
        let admin = match overrides.admin {
            Some(admin) => admin,
            None if matches!(server.admin.get_ref().as_str(), "" | "off") => None,
            None => Some(parse_addr(&source, "server.admin", &server.admin)?),
        };
        let tls = match (&server.tls_cert, &server.tls_key) {
            (Some(cert), Some(key)) => Some((source.resolve(cert), source.resolve(key))),
            (None, None) => None,
            _ => {
                return Err(source.invalid(
                    0..0,
                    "server.tls_cert and server.tls_key must be set together",
                ));
            }
        };
        let max_header_bytes = *server.max_header_bytes.get_ref();
        if !(1024..=1024 * 1024).contains(&max_header_bytes) {
            return Err(source.invalid(
                server.max_header_bytes.span(),
                format!("server.max_header_bytes = {max_header_bytes} is outside 1024–1048576"),
            ));
        }
        let max_connections = *server.max_connections.get_ref();
        if max_connections == 0 {
            return Err(source.invalid(
                server.max_connections.span(),
                "server.max_connections must be at least 1",
            ));
        }
        let proxy = ProxySettings {
            connect_timeout: source
                .duration("proxy.connect_timeout", &proxy_section.connect_timeout)?,
            response_timeout: source
                .duration("proxy.response_timeout", &proxy_section.response_timeout)?,
            body_idle_timeout: source
                .duration("proxy.body_idle_timeout", &proxy_section.body_idle_timeout)?,
            total_timeout: source.duration("proxy.total_timeout", &proxy_section.total_timeout)?,
            pool_max_idle: proxy_section.pool_max_idle,
            pool_idle_timeout: source
                .duration("proxy.pool_idle_timeout", &proxy_section.pool_idle_timeout)?,
            preserve_host: proxy_section.preserve_host,
            request_body_idle_timeout: source.positive_duration(
                "proxy.request_body_idle_timeout",
                &proxy_section.request_body_idle_timeout,
            )?,
            request_body_min_rate: proxy_section.request_body_min_rate,
        };
        let idle_timeout = source.positive_duration("server.idle_timeout", &server.idle_timeout)?;
        let http2_keep_alive_interval = source.positive_duration(
            "server.http2_keep_alive_interval",
            &server.http2_keep_alive_interval,
        )?;
        let http2_keep_alive_timeout = source.positive_duration(
            "server.http2_keep_alive_timeout",
            &server.http2_keep_alive_timeout,
        )?;
        let send_timeout = source.positive_duration("server.send_timeout", &server.send_timeout)?;
        let reload_settle_time =
            source.duration("server.reload_settle_time", &server.reload_settle_time)?;
        let gallery = match server.gallery.get_ref().as_str() {
            "auto" => true,
            "off" => false,
            other => {
                return Err(source.invalid(
                    server.gallery.span(),
                    format!("server.gallery = {other:?} must be \"auto\" or \"off\""),
                ));
            }
        };
        let statics = StaticOptions {
            gallery,
            gallery_cache: server.gallery_cache.as_deref().map_or_else(
                || StaticOptions::default().gallery_cache,
                |p| source.resolve(p),
            ),
            gallery_cache_max_bytes: server.gallery_cache_max_bytes,
            dotfiles: server.dotfiles,
            outside_symlinks: server.outside_symlinks,
        };
        let admin_max_connections = *server.admin_max_connections.get_ref();
        if admin_max_connections == 0 {
            return Err(source.invalid(
                server.admin_max_connections.span(),
                "server.admin_max_connections must be at least 1",
            ));
        }
        let header_read_timeout =
            source.duration("server.header_read_timeout", &server.header_read_timeout)?;
        let grace_period = source.duration("server.grace_period", &server.grace_period)?;
        let admin_auth = admin_auth(&source, server, admin)?;
        let access_log = match &server.access_log {
            None => None,
            Some(value) if value.get_ref() == "-" => Some(AccessLogTarget::Stdout),
            Some(value) if value.get_ref().is_empty() => {
                return Err(source.invalid(
                    value.span(),
                    "server.access_log must be a file or \"-\" (standard output); leave it out to turn the log off",
                ));
            }
            Some(value) => Some(AccessLogTarget::File(
                source.resolve(Path::new(value.get_ref())),
            )),
        };
        let access_log_buffer = *server.access_log_buffer.get_ref();
        if access_log_buffer == 0 {
            return Err(source.invalid(
                server.access_log_buffer.span(),
                "server.access_log_buffer must be at least 1",
            ));
        }

        let root_table: toml::Table = if config.site.iter().any(|s| s.policy.is_some()) {
            toml::from_str(text).map_err(|e| source.invalid(0..0, e.message()))?
        } else {
            toml::Table::new()
        };
        let mut sites = Vec::new();
        let mut names = BTreeSet::new();
        let mut hosts_seen = BTreeSet::new();
        for site in &config.site {
            let name = site.name.get_ref().trim().to_owned();
            if name.is_empty() || !names.insert(name.clone()) {
                return Err(source.invalid(
                    site.name.span(),
                    format!("site.name = {name:?} is empty or used twice"),
                ));
            }
            let content = match (&site.root, &site.upstream) {
                (Some(root), None) => Content::Static(source.resolve(root)),
                (None, Some(upstream)) => {
                    Content::Proxy(parse_upstream(upstream.get_ref()).map_err(|m| {
                        source.invalid(upstream.span(), format!("site.upstream: {m}"))
                    })?)
                }
                _ => {
                    return Err(source.invalid(
                        site.name.span(),
                        format!("site {name:?} needs exactly one of root or upstream"),
                    ));
                }
            };
            let mut hosts = Vec::new();
            for host in &site.hosts {
                let normal = normalise_host(host.get_ref()).ok_or_else(|| {
                    source.invalid(
                        host.span(),
                        format!("site.hosts: {:?} is not a host name", host.get_ref()),
                    )
                })?;
                if !hosts_seen.insert(normal.clone()) {
                    return Err(source.invalid(
                        host.span(),
                        format!("site.hosts: {normal:?} is claimed by two sites"),
                    ));
                }
                hosts.push(normal);
            }
            let policy = match &site.policy {
                None => None,
                Some(overrides) => Some(site_policy(
                    &source,
                    &root_table,
                    sites.len(),
                    &name,
                    overrides,
                )?),
            };
            sites.push((name, hosts, content, policy));
        }

        let acme = match &server.acme {
            Some(section) => Some(resolve_acme(
                &source,
                section,
                sites.iter().flat_map(|s| s.1.iter()),
            )?),
            None => None,
        };
        let redirect_http = match &server.redirect_http {
            Some(value) => {
                if tls.is_none() && acme.is_none() {
                    return Err(source.invalid(
                        value.span(),
                        "server.redirect_http redirects to HTTPS: set server.tls_cert and tls_key, or [server.acme]",
                    ));
                }
                Some(parse_addr(&source, "server.redirect_http", value)?)
            }
            None => None,
        };
        if let (Some(acme), Some(section)) = (&acme, &server.acme)
            && acme.challenge == Challenge::Http01
            && redirect_http.is_none()
        {
            return Err(source.invalid(
                section.get_ref().challenge.span(),
                "server.acme.challenge = \"http-01\" is answered on the plain listener: set server.redirect_http (port 80 for a public directory)",
            ));
        }

        let default_content = if let Some(root) = &overrides.root {
            Some(Content::Static(root.clone()))
        } else if let Some(upstream) = &overrides.upstream {
            Some(Content::Proxy(parse_upstream(upstream).map_err(|m| {
                ServerError::Config(ConfigError::Invalid {
                    source_name: "--upstream".into(),
                    message: m,
                })
            })?))
        } else {
            match (&server.root, &server.upstream) {
                (Some(root), None) => Some(Content::Static(source.resolve(root))),
                (None, Some(upstream)) => {
                    Some(Content::Proxy(parse_upstream(upstream.get_ref()).map_err(
                        |m| source.invalid(upstream.span(), format!("server.upstream: {m}")),
                    )?))
                }
                (Some(_), Some(upstream)) => {
                    return Err(source.invalid(
                        upstream.span(),
                        "server.root and server.upstream cannot both be set",
                    ));
                }
                (None, None) if sites.is_empty() => {
                    overrides.fallback_root.clone().map(Content::Static)
                }
                (None, None) => None,
            }
        };

        let mut default_site = None;
        if let Some(name) = &server.default_site {
            let index = sites
                .iter()
                .position(|s| s.0 == *name.get_ref())
                .ok_or_else(|| {
                    source.invalid(
                        name.span(),
                        format!(
                            "server.default_site = {:?} names no [[site]]",
                            name.get_ref()
                        ),
                    )
                })?;
            default_site = Some(index);
        }
        if let Some(content) = default_content {
            if default_site.is_some() {
                return Err(source.invalid(
                    0..0,
                    "server.default_site and server.root/upstream (or --static/--upstream) both name the site for unknown hosts: keep one",
                ));
            }
            default_site = Some(sites.len());
            sites.push(("default".to_owned(), Vec::new(), content, None));
        }
        if sites.is_empty() {
            return Err(source.invalid(
                0..0,
                "nothing to serve: set server.root or server.upstream, add a [[site]], or pass --static/--upstream",
            ));
        }

        // Sites that do not override the policy share one compile of it.
        let mut shared: Option<Policy> = None;
        let mut specs = Vec::with_capacity(sites.len());
        for (name, hosts, content, policy) in sites {
            if let Content::Static(root) = &content
                && !root.is_dir()
            {
                return Err(ServerError::MissingRoot {
                    site: name,
                    path: root.clone(),
                });
            }
            let mut policy = match (policy, &shared) {
                (Some(policy), _) => policy,
                (None, Some(policy)) => policy.clone(),
                (None, None) => {
                    let policy = Policy::compile_named(text, source_name, base)?;
                    shared = Some(policy.clone());
                    policy
                }
            };
            // The folder's own robots.txt is merged into the one Lenscap serves.
            if let Content::Static(root) = &content {
                let file = root.join("robots.txt");
                match std::fs::read_to_string(&file) {
                    Ok(site_robots) => policy.set_site_robots(&site_robots)?,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(ServerError::Config(ConfigError::Invalid {
                            source_name: file.display().to_string(),
                            message: format!("reading the site's robots.txt: {e}"),
                        }));
                    }
                }
            }
            specs.push(SiteSpec {
                name,
                hosts,
                content,
                policy,
            });
        }

        Ok(Settings {
            listen,
            admin,
            tls,
            header_read_timeout,
            max_header_bytes,
            max_connections,
            // A key read from the file has a place in it; a default has none.
            max_connections_set: server.max_connections.span().end > 0,
            idle_timeout,
            http2_keep_alive_interval,
            http2_keep_alive_timeout,
            send_timeout,
            admin_max_connections,
            reload_settle_time,
            grace_period,
            watch: server.watch,
            statics,
            access_log,
            access_log_buffer,
            admin_auth,
            dashboard_full_addresses: server.dashboard_full_addresses,
            redirect_http,
            acme,
            proxy,
            sites: specs,
            default_site,
            store: config
                .store
                .compile(&crate::settings::Source::new(source_name, text))?,
        })
    }
}

/// The admin listener's credentials; an admin listener off the loopback must have some.
fn admin_auth(
    source: &Source<'_>,
    server: &ServerSection,
    admin: Option<SocketAddr>,
) -> Result<AdminAuth, ServerError> {
    let non_empty = |key: &str, value: &Option<Spanned<String>>| match value {
        Some(v) if v.get_ref().is_empty() => {
            Err(source.invalid(v.span(), format!("{key} must not be empty")))
        }
        Some(v) => Ok(Some(v.get_ref().clone())),
        None => Ok(None),
    };
    let token = non_empty("server.admin_token", &server.admin_token)?;
    let user = non_empty("server.admin_user", &server.admin_user)?;
    let password = non_empty("server.admin_password", &server.admin_password)?;
    let basic = match (user, password) {
        (Some(user), Some(password)) => {
            if user.contains(':') {
                let span = server.admin_user.as_ref().map_or(0..0, |v| v.span());
                return Err(source.invalid(span, "server.admin_user must not contain ':'"));
            }
            Some((user, password))
        }
        (None, None) => None,
        _ => {
            return Err(source.invalid(
                0..0,
                "server.admin_user and server.admin_password must be set together",
            ));
        }
    };
    let auth = AdminAuth { token, basic };
    if let Some(addr) = admin
        && !addr.ip().is_loopback()
        && !auth.required()
    {
        return Err(source.invalid(
            server.admin.span(),
            format!(
                "server.admin = {addr} is not a loopback address: set server.admin_token or server.admin_user and server.admin_password, or listen on 127.0.0.1"
            ),
        ));
    }
    Ok(auth)
}

/// The host part of a `Host` value (no port, no trailing dot), or `None` when malformed:
/// empty, a user-info part, or a character no host name or IP literal has.
pub(crate) fn host_part(value: &str) -> Option<&str> {
    let host = if let Some(rest) = value.strip_prefix('[') {
        // An IPv6 literal, `[::1]` or `[::1]:8080`.
        let end = rest.find(']')?;
        let after = &rest[end + 1..];
        if !(after.is_empty() || valid_port(after.strip_prefix(':')?)) {
            return None;
        }
        if !rest[..end]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return None;
        }
        &value[..end + 2]
    } else {
        let host = match value.rsplit_once(':') {
            Some((host, port)) if valid_port(port) => host,
            Some(_) => return None,
            None => value,
        };
        if !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        {
            return None;
        }
        host.strip_suffix('.').unwrap_or(host)
    };
    (!host.is_empty()).then_some(host)
}

fn valid_port(port: &str) -> bool {
    !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit())
}

/// `Host` value → lower-case host without port or trailing dot; `None` when malformed.
pub(crate) fn normalise_host(value: &str) -> Option<String> {
    host_part(value.trim()).map(str::to_ascii_lowercase)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(text: &str) -> Result<Settings, ServerError> {
        let config: ServerFile = toml::from_str(text).unwrap();
        let dir = std::env::temp_dir();
        let overrides = Overrides::default();
        Settings::resolve(config, text, "test.toml", Some(&dir), &overrides)
    }

    #[test]
    fn hosts_are_normalised() {
        assert_eq!(
            normalise_host("Example.COM:8080").as_deref(),
            Some("example.com")
        );
        assert_eq!(
            normalise_host("example.com.").as_deref(),
            Some("example.com")
        );
        assert_eq!(normalise_host("[::1]:80").as_deref(), Some("[::1]"));
        assert_eq!(normalise_host("a b"), None);
        assert_eq!(normalise_host("user@host"), None);
        assert_eq!(normalise_host(""), None);
    }

    #[test]
    fn errors_name_key_and_line() {
        let e = resolve("[server]\nroot = \".\"\nlisten = \"nowhere\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3") && e.contains("server.listen"), "{e}");
        let e = resolve("[server]\nroot = \".\"\n[proxy]\nconnect_timeout = \"soon\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 4") && e.contains("proxy.connect_timeout"),
            "{e}"
        );
        let e = resolve("[[site]]\nname = \"a\"\nupstream = \"ftp://x\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3") && e.contains("ftp"), "{e}");
        let e = resolve("[server]\nroot = \".\"\ndefault_site = \"nope\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3") && e.contains("default_site"), "{e}");
    }

    #[test]
    fn nothing_to_serve_is_an_error() {
        let e = resolve("").unwrap_err().to_string();
        assert!(e.contains("nothing to serve"), "{e}");
    }

    #[test]
    fn missing_root_is_an_error_naming_the_folder() {
        let e = resolve("[server]\nroot = \"/no/such/lenscap/folder\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("/no/such/lenscap/folder"), "{e}");
    }

    #[test]
    fn site_policy_overrides_merge_over_the_top_level() {
        let s = resolve(
            "mode = \"enforce\"\n[[site]]\nname = \"a\"\nhosts = [\"a.example\"]\nupstream = \"http://127.0.0.1:1\"\n[site.policy]\nmode = \"report-only\"\n[[site]]\nname = \"b\"\nhosts = [\"b.example\"]\nupstream = \"http://127.0.0.1:2\"\n",
        )
        .unwrap();
        assert_eq!(s.sites[0].policy.mode(), crate::Mode::ReportOnly);
        assert_eq!(s.sites[1].policy.mode(), crate::Mode::Enforce);
        assert_eq!(s.default_site, None);

        let e = resolve(
            "[[site]]\nname = \"a\"\nupstream = \"http://127.0.0.1:1\"\n[site.policy]\nmode = \"sometimes\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("line 5") && e.contains("sometimes"), "{e}");
    }

    #[test]
    fn site_policy_errors_name_the_files_own_line() {
        let text = "mode = \"enforce\"\n\n[limits]\n\n[[site]]\nname = \"a\"\nupstream = \"http://127.0.0.1:1\"\n[site.policy]\nmode = \"report-only\"\n[site.policy.verdict]\nblock_after = 3\n";
        let e = resolve(text).unwrap_err().to_string();
        assert!(
            e.contains("line 11") && e.contains("block_after") && e.contains("site \"a\""),
            "{e}"
        );
        // The second site's error, in a file where the first has overrides too.
        let text = "[[site]]\nname = \"a\"\nupstream = \"http://127.0.0.1:1\"\n[site.policy]\nmode = \"report-only\"\n[[site]]\nname = \"b\"\nupstream = \"http://127.0.0.1:2\"\n[site.policy]\nmode = \"report-only\"\nsurprise = true\n";
        let e = resolve(text).unwrap_err().to_string();
        assert!(e.contains("line 11") && e.contains("surprise"), "{e}");
    }

    #[test]
    fn server_tables_in_a_site_policy_are_errors() {
        for (table, key) in [
            ("proxy", "response_timeout = \"1s\""),
            ("server", "listen = \"127.0.0.1:1\""),
        ] {
            let text = format!(
                "[[site]]\nname = \"a\"\nupstream = \"http://127.0.0.1:1\"\n[site.policy]\nmode = \"report-only\"\n[site.policy.{table}]\n{key}\n"
            );
            let e = resolve(&text).unwrap_err().to_string();
            assert!(
                e.contains("line 6")
                    && e.contains(&format!("[site.policy.{table}]"))
                    && e.contains("would do nothing"),
                "{e}"
            );
        }
    }

    #[test]
    fn a_bare_port_is_refused_with_both_forms() {
        let e = resolve("[server]\nroot = \".\"\nlisten = \"8081\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 3")
                && e.contains("\"127.0.0.1:8081\"")
                && e.contains("\"0.0.0.0:8081\""),
            "{e}"
        );
    }

    #[test]
    fn acme_domains_default_to_the_site_hosts() {
        let s = resolve(
            "[server.acme]\ncontact = \"mailto:a@b.example\"\ncache = \"acme\"\n[[site]]\nname = \"a\"\nhosts = [\"Crown.example\", \"127.0.0.1\", \"www.crown.example\"]\nupstream = \"http://127.0.0.1:1\"\n",
        )
        .unwrap();
        let acme = s.acme.unwrap();
        assert_eq!(acme.domains, ["crown.example", "www.crown.example"]);
        assert_eq!(acme.directory, crate::server::acme::LETS_ENCRYPT);
        assert_eq!(acme.contact, ["mailto:a@b.example"]);
        assert_eq!(acme.challenge, Challenge::TlsAlpn01);

        let e = resolve("[server]\nroot = \".\"\n[server.acme]\ndomains = [\"*.crown.example\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 4") && e.contains("wildcard"), "{e}");
        let e = resolve(
            "[server]\nroot = \".\"\n[server.acme]\ndomains = [\"crown.example\"]\nchallenge = \"http-01\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("line 5") && e.contains("redirect_http"), "{e}");
        let e = resolve("[server]\nroot = \".\"\nredirect_http = \"127.0.0.1:0\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3") && e.contains("HTTPS"), "{e}");
    }

    #[test]
    fn restart_only_settings_are_named_when_they_change() {
        let before =
            resolve("[server]\nroot = \".\"\n[proxy]\nresponse_timeout = \"60s\"\n").unwrap();
        let after = resolve(
            "mode = \"report-only\"\n[server]\nroot = \".\"\n[proxy]\nresponse_timeout = \"5s\"\n",
        )
        .unwrap();
        let changed =
            crate::server::reload::changed_keys(&before.restart_only(), &after.restart_only());
        assert_eq!(changed, ["proxy.response_timeout"]);
    }
}
