//! `lenscap serve` on a loopback port in front of the gallery, with the default policy and an
//! access log: the only settings written are where to serve from, the log, and — when a case
//! needs it — the test certificate or loopback as a trusted proxy.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lenscap::server::{Overrides, RunningServer, ServeOptions, Server};
use serde::Deserialize;

/// How clients reach the site.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Plain HTTP.
    Plain,
    /// HTTPS with a test certificate for the public name, `localhost` and `127.0.0.1`.
    Tls,
    /// Plain HTTP behind a proxy on loopback, which the site trusts for `X-Forwarded-For`.
    BehindProxy,
}

/// A running site and where its log goes.
pub struct Site {
    server: RunningServer,
    log: PathBuf,
    /// The scenario's folder (certificate, log, browser profiles).
    pub dir: PathBuf,
    /// The certificate clients trust when the origin is TLS.
    pub ca: Option<PathBuf>,
    origin: Origin,
}

impl Site {
    /// Starts a site serving `gallery` for the scenario `name`.
    pub async fn start(name: &str, gallery: &Path, origin: Origin) -> Site {
        let dir = super::scratch(name);
        let log = dir.join("access.jsonl");
        let mut config = format!(
            "[server]\nroot = {gallery:?}\naccess_log = {log:?}\ngallery_cache = {:?}\n",
            dir.join("thumbs")
        );
        let ca = (origin == Origin::Tls).then(|| write_certificate(&dir, &mut config));
        if origin == Origin::BehindProxy {
            config.push_str("[client]\ntrusted_proxies = [\"127.0.0.0/8\"]\n");
        }
        let file = dir.join("lenscap.toml");
        std::fs::write(&file, config).expect("the site's settings");
        let server = Server::bind(ServeOptions {
            config: Some(file),
            overrides: Overrides {
                listen: Some("127.0.0.1:0".parse().unwrap()),
                admin: Some(None),
                ..Overrides::default()
            },
        })
        .await
        .unwrap_or_else(|error| panic!("the site for {name} does not start: {error}"));
        Site {
            server,
            log,
            dir,
            ca,
            origin,
        }
    }

    /// The loopback address the site listens on.
    pub fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The site's URL under `host` (a name a browser maps to loopback, or an address).
    pub fn url(&self, host: &str) -> String {
        let scheme = if self.origin == Origin::Tls {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{host}:{}", self.addr().port())
    }

    /// Stops the site and reads its access log once the writer has caught up.
    pub async fn finish(self) -> AccessLog {
        self.server.shutdown().await;
        let mut log = AccessLog::read_settled(&self.log).await;
        log.folder = self.dir;
        log
    }
}

/// A self-signed certificate for every name the clients use; the settings point at it.
fn write_certificate(dir: &Path, config: &mut String) -> PathBuf {
    let names = vec![
        super::PUBLIC_HOST.to_owned(),
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
    ];
    let certified = rcgen::generate_simple_self_signed(names).expect("a test certificate");
    let cert = dir.join("cert.pem");
    std::fs::write(&cert, certified.cert.pem()).expect("cert.pem");
    std::fs::write(dir.join("key.pem"), certified.signing_key.serialize_pem()).expect("key.pem");
    config.push_str("tls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\n");
    cert
}

/// One line of the access log: what the stages judged and what was answered.
#[derive(Clone, Debug, Deserialize)]
pub struct Line {
    /// When it was judged, in Unix seconds.
    pub t: f64,
    pub path: String,
    pub scheme: String,
    pub status: u16,
    pub action: String,
    #[serde(default)]
    pub reasons: Vec<String>,
    pub client: String,
    pub visitor: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// How long the server took to answer, in milliseconds.
    pub duration_ms: f64,
}

impl Line {
    /// Whether the request was for one of the gallery's photos.
    pub fn is_photo(&self) -> bool {
        self.path.starts_with("/photos/")
    }

    /// Whether the client was refused (an error status, or a way-through page in its place).
    pub fn refused(&self) -> bool {
        self.status >= 400
    }

    /// Whether it was the browser's own request for the site icon (no page shows it).
    pub fn is_favicon(&self) -> bool {
        self.path == "/favicon.ico"
    }
}

/// What a scenario's requests must have looked like for it to test what it says; `None`
/// leaves a property unchecked.
#[derive(Clone, Copy, Default)]
pub struct Shape {
    /// Every request over TLS (or none).
    pub https: Option<bool>,
    /// Every request with `Sec-Fetch-Dest` (or none): browsers send it only to secure origins.
    pub fetch_metadata: Option<bool>,
    /// Requests carrying a visitor cookie: most (true; a pass may stand in for it) or none.
    pub cookies: Option<bool>,
    /// Clients in at least this many /24s.
    pub subnets: usize,
}

/// Every line a site logged.
pub struct AccessLog {
    pub lines: Vec<Line>,
    /// The scenario's folder, where the log file stays.
    pub folder: PathBuf,
}

impl AccessLog {
    /// Reads the log once it stops growing (the writer thread appends after each response):
    /// the same length twice running, 200 ms apart, ending with a whole line.
    async fn read_settled(file: &Path) -> AccessLog {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let read = || std::fs::read(file).unwrap_or_default();
        let (mut seen, mut quiet) = (read(), 0);
        while quiet < 2 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let now = read();
            let whole = now.is_empty() || now.ends_with(b"\n");
            quiet = if now.len() == seen.len() && whole {
                quiet + 1
            } else {
                0
            };
            seen = now;
        }
        let text = std::fs::read_to_string(file)
            .unwrap_or_else(|error| panic!("cannot read the access log {file:?}: {error}"));
        let lines = text
            .lines()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|error| panic!("access log line {line:?}: {error}"))
            })
            .collect();
        AccessLog {
            lines,
            folder: PathBuf::new(),
        }
    }

    /// Photos answered 200.
    pub fn photos_served(&self) -> usize {
        self.lines
            .iter()
            .filter(|l| l.is_photo() && l.status == 200)
            .count()
    }

    /// How the requests differ from `shape`, in words; empty when they match.
    pub fn differences(&self, shape: Shape) -> Vec<String> {
        let mut out = Vec::new();
        let count = |test: &dyn Fn(&Line) -> bool| self.lines.iter().filter(|l| test(l)).count();
        let all = self.lines.len();
        if all == 0 {
            out.push("nothing was logged".to_owned());
        }
        if let Some(https) = shape.https {
            let over_tls = count(&|l| l.scheme == "https");
            if over_tls != if https { all } else { 0 } {
                out.push(format!("{over_tls} of {all} requests over TLS"));
            }
        }
        if let Some(expected) = shape.fetch_metadata {
            let with = count(&|l| l.headers.contains_key("sec-fetch-dest"));
            if with != if expected { all } else { 0 } {
                out.push(format!("{with} of {all} requests with Sec-Fetch-Dest"));
            }
        }
        if let Some(cookies) = shape.cookies {
            let with = count(&|l| l.visitor.is_some());
            let fine = if cookies { with * 2 >= all } else { with == 0 };
            if !fine {
                out.push(format!("{with} of {all} requests with a visitor cookie"));
            }
        }
        let subnets: std::collections::BTreeSet<&str> = self
            .lines
            .iter()
            .map(|l| {
                l.client
                    .rsplit_once('.')
                    .map_or(l.client.as_str(), |(net, _)| net)
            })
            .collect();
        if subnets.len() < shape.subnets {
            out.push(format!("clients in {} /24s", subnets.len()));
        }
        out
    }

    /// Navigations (requests for a document, as their `Accept` says) per minute per client,
    /// over the time from the first request to the last: how fast the clients turned pages.
    pub fn pages_per_minute(&self, clients: usize) -> f64 {
        let pages = self
            .lines
            .iter()
            .filter(|l| {
                l.headers
                    .get("accept")
                    .is_some_and(|a| a.starts_with("text/html"))
            })
            .count();
        let times = self.lines.iter().map(|l| l.t);
        let first = times.clone().fold(f64::INFINITY, f64::min);
        let last = times.fold(f64::NEG_INFINITY, f64::max);
        let minutes = ((last - first) / 60.0).max(1.0 / 60.0);
        pages as f64 / minutes / clients.max(1) as f64
    }

    /// Requests refused, but for the site icon's.
    pub fn refusals(&self) -> Vec<&Line> {
        self.lines
            .iter()
            .filter(|l| l.refused() && !l.is_favicon())
            .collect()
    }

    /// The server's slowest answer, in milliseconds (0 with no requests).
    pub fn slowest_ms(&self) -> f64 {
        self.lines.iter().map(|l| l.duration_ms).fold(0.0, f64::max)
    }

    /// Refused requests for the site icon.
    pub fn favicon_refusals(&self) -> usize {
        self.lines
            .iter()
            .filter(|l| l.refused() && l.is_favicon())
            .count()
    }

    /// How often each reason was given on a request that was not simply allowed, most first.
    pub fn reasons(&self) -> Vec<(String, usize)> {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for line in self.lines.iter().filter(|l| l.action != "allow") {
            let key = format!(
                "{} {}: {}",
                line.action,
                line.status,
                line.reasons.join("+")
            );
            *counts.entry(key).or_default() += 1;
        }
        let mut counts: Vec<_> = counts.into_iter().collect();
        counts.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        counts
    }

    /// The reasons in one line, for the table.
    pub fn reasons_summary(&self) -> String {
        let reasons = self.reasons();
        if reasons.is_empty() {
            return "-".to_owned();
        }
        reasons
            .iter()
            .take(4)
            .map(|(reason, n)| format!("{n}× {reason}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}
