//! Site discovery: links, `<img>` and `srcset` from HTML, same-origin URL resolution, and the
//! robots.txt rules a polite crawler obeys.
//!
//! The HTML scanner is small and careful rather than complete: it reads start tags and their
//! attributes, skips comments and the contents of `<script>`, `<style>`, `<textarea>` and
//! `<title>`, and decodes the handful of character references that appear in URLs.
//!
//! ```
//! use lenscap::simulate::discovery::{scan_html, resolve};
//!
//! let page = scan_html(r#"<a href="/g/2">next</a><img src="a.jpg" srcset="a-2x.jpg 2x, a-1x.jpg 1x">"#);
//! assert_eq!(page.links, ["/g/2"]);
//! assert_eq!(page.images[0].src.as_deref(), Some("a.jpg"));
//! assert_eq!(page.images[0].srcset.len(), 2);
//! assert_eq!(resolve("/g/1/", "a.jpg", "http", "127.0.0.1:8080").as_deref(), Some("/g/1/a.jpg"));
//! assert_eq!(resolve("/g/1/", "https://elsewhere.example/x.jpg", "http", "127.0.0.1:8080"), None);
//! ```

/// What one HTML page points at.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScannedPage {
    /// `href` of `<a>` and `<area>`, as written (unresolved).
    pub links: Vec<String>,
    /// Links a person cannot see or reach (`hidden`, `aria-hidden="true"`): trap links that
    /// only a crawler follows.
    pub hidden_links: Vec<String>,
    /// `<img>` elements and `<picture>`'s `<source>` elements, in document order.
    pub images: Vec<ImageElement>,
    /// `href` of `<link rel="stylesheet">`, as written: what a renderer fetches besides images.
    pub stylesheets: Vec<String>,
}

/// An `<img>` (or a `<source>` inside `<picture>`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImageElement {
    /// `src`, as written.
    pub src: Option<String>,
    /// `srcset` candidates.
    pub srcset: Vec<Candidate>,
    /// A `<source>` rather than an `<img>`: an alternative a browser may skip.
    pub source: bool,
}

/// One `srcset` candidate.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    /// The URL, as written.
    pub url: String,
    /// `NNNw`, when given.
    pub width: Option<u32>,
    /// `N.Nx`, when given (a candidate without a descriptor is `1x`).
    pub density: Option<f32>,
}

impl ImageElement {
    /// The one URL a browser on a ~1x screen about 1200 px wide would load.
    pub fn browser_choice(&self) -> Option<&str> {
        let by_width = self
            .srcset
            .iter()
            .filter_map(|c| c.width.map(|w| (w, c)))
            .min_by_key(|(w, _)| w.abs_diff(1200));
        if let Some((_, c)) = by_width {
            return Some(&c.url);
        }
        let one_x = self.srcset.iter().find(|c| c.density.unwrap_or(1.0) == 1.0);
        one_x
            .map(|c| c.url.as_str())
            .or(self.src.as_deref())
            .or(self.srcset.first().map(|c| c.url.as_str()))
    }

    /// The biggest version on offer (what a scraper wants).
    pub fn largest(&self) -> Option<&str> {
        let score = |c: &Candidate| {
            c.width
                .map(f64::from)
                .unwrap_or(c.density.unwrap_or(1.0) as f64 * 1000.0)
        };
        self.srcset
            .iter()
            .max_by(|a, b| score(a).total_cmp(&score(b)))
            .map(|c| c.url.as_str())
            .or(self.src.as_deref())
    }

    /// Every URL the element names.
    pub fn all(&self) -> impl Iterator<Item = &str> {
        self.src
            .as_deref()
            .into_iter()
            .chain(self.srcset.iter().map(|c| c.url.as_str()))
    }
}

/// Scans HTML for links, images and srcset candidates.
pub fn scan_html(html: &str) -> ScannedPage {
    let mut page = ScannedPage::default();
    let bytes = html.as_bytes();
    let mut i = 0;
    while let Some(offset) = memchr(b'<', &bytes[i..]) {
        i += offset + 1;
        if bytes[i..].starts_with(b"!--") {
            i = find(&bytes[i..], b"-->").map_or(bytes.len(), |end| i + end + 3);
            continue;
        }
        if !bytes.get(i).is_some_and(u8::is_ascii_alphabetic) {
            continue;
        }
        let (tag, attributes, end) = read_tag(html, i);
        i = end;
        match tag.as_str() {
            "a" | "area" => {
                if let Some(href) = attribute(&attributes, "href") {
                    let hidden = attributes.iter().any(|(name, value)| {
                        name == "hidden"
                            || (name == "aria-hidden" && value.eq_ignore_ascii_case("true"))
                    });
                    if hidden {
                        page.hidden_links.push(href);
                    } else {
                        page.links.push(href);
                    }
                }
            }
            "link" => {
                let stylesheet = attribute(&attributes, "rel").is_some_and(|rel| {
                    rel.split_ascii_whitespace()
                        .any(|r| r.eq_ignore_ascii_case("stylesheet"))
                });
                if stylesheet && let Some(href) = attribute(&attributes, "href") {
                    page.stylesheets.push(href);
                }
            }
            "img" | "source" => {
                let element = ImageElement {
                    src: attribute(&attributes, "src"),
                    srcset: attribute(&attributes, "srcset")
                        .map(|s| parse_srcset(&s))
                        .unwrap_or_default(),
                    source: tag == "source",
                };
                if element.src.is_some() || !element.srcset.is_empty() {
                    page.images.push(element);
                }
            }
            // Raw text elements: their contents are not markup.
            "script" | "style" | "textarea" | "title" => {
                let close = format!("</{tag}");
                i = find_ascii_ci(&bytes[i..], close.as_bytes()).map_or(bytes.len(), |p| i + p);
            }
            _ => {}
        }
    }
    page
}

/// The wait and the target of a page's `<meta http-equiv="refresh" content="N;url=…">` when it
/// points at Lenscap's pass URL (the way-through page), entities in the URL decoded.
pub fn way_through_link(html: &str) -> Option<(u64, String)> {
    let bytes = html.as_bytes();
    let mut i = 0;
    while let Some(offset) = memchr(b'<', &bytes[i..]) {
        i += offset + 1;
        let (tag, attributes, end) = read_tag(html, i);
        i = end;
        let refresh =
            attribute(&attributes, "http-equiv").is_some_and(|v| v.eq_ignore_ascii_case("refresh"));
        if tag != "meta" || !refresh {
            continue;
        }
        let content = attribute(&attributes, "content")?;
        let (wait, rest) = content.split_once(';')?;
        let url = rest.trim().strip_prefix("url=")?;
        return url
            .starts_with(crate::limit::PASS_PATH)
            .then(|| Some((wait.trim().parse().ok()?, url.to_owned())))?;
    }
    None
}

/// Reads a start tag whose name begins at `start`: (lower-case name, attributes, index after `>`).
fn read_tag(html: &str, start: usize) -> (String, Vec<(String, String)>, usize) {
    let bytes = html.as_bytes();
    let mut i = start;
    while i < bytes.len() && !is_space(bytes[i]) && bytes[i] != b'>' && bytes[i] != b'/' {
        i += 1;
    }
    let name = html[start..i].to_ascii_lowercase();
    let mut attributes = Vec::new();
    loop {
        while i < bytes.len() && (is_space(bytes[i]) || bytes[i] == b'/') {
            i += 1;
        }
        if i >= bytes.len() {
            return (name, attributes, i);
        }
        if bytes[i] == b'>' {
            return (name, attributes, i + 1);
        }
        let name_start = i;
        while i < bytes.len() && !is_space(bytes[i]) && !matches!(bytes[i], b'=' | b'>' | b'/') {
            i += 1;
        }
        let attribute_name = html[name_start..i].to_ascii_lowercase();
        while i < bytes.len() && is_space(bytes[i]) {
            i += 1;
        }
        let mut value = String::new();
        if bytes.get(i) == Some(&b'=') {
            i += 1;
            while i < bytes.len() && is_space(bytes[i]) {
                i += 1;
            }
            match bytes.get(i) {
                Some(&quote @ (b'"' | b'\'')) => {
                    let end = memchr(quote, &bytes[i + 1..]).map_or(bytes.len(), |p| i + 1 + p);
                    value = decode_entities(&html[i + 1..end]);
                    i = (end + 1).min(bytes.len());
                }
                _ => {
                    let value_start = i;
                    while i < bytes.len() && !is_space(bytes[i]) && bytes[i] != b'>' {
                        i += 1;
                    }
                    value = decode_entities(&html[value_start..i]);
                }
            }
        }
        if !attribute_name.is_empty() {
            attributes.push((attribute_name, value));
        }
    }
}

fn attribute(attributes: &[(String, String)], name: &str) -> Option<String> {
    attributes
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// Parses a `srcset` value (HTML's candidate-string grammar, without the rare parenthesised
/// descriptors).
pub fn parse_srcset(value: &str) -> Vec<Candidate> {
    let mut candidates = Vec::new();
    let mut rest = value;
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_ascii_whitespace() || c == ',');
        if rest.is_empty() {
            return candidates;
        }
        let url_end = rest
            .find(|c: char| c.is_ascii_whitespace())
            .unwrap_or(rest.len());
        let mut url = &rest[..url_end];
        rest = &rest[url_end..];
        let mut descriptor = "";
        if url.ends_with(',') {
            url = url.trim_end_matches(',');
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            descriptor = rest[..end].trim();
            rest = &rest[end..];
        }
        let width = descriptor
            .strip_suffix('w')
            .and_then(|w| w.parse::<u32>().ok());
        let density = descriptor
            .strip_suffix('x')
            .and_then(|x| x.parse::<f32>().ok());
        if !url.is_empty() {
            candidates.push(Candidate {
                url: url.to_owned(),
                width,
                density,
            });
        }
    }
}

fn decode_entities(text: &str) -> String {
    if !text.contains('&') {
        return text.to_owned();
    }
    text.replace("&amp;", "&")
        .replace("&#38;", "&")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&apos;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
}

/// Resolves `reference` against the page at `base_path` (an origin-relative path) and returns
/// the origin-relative path and query, or `None` when it leaves the target's origin (another
/// host, another scheme, `mailto:`, `javascript:`, `data:` …). Fragments are dropped.
pub fn resolve(base_path: &str, reference: &str, scheme: &str, authority: &str) -> Option<String> {
    let reference = reference.trim();
    let reference = reference.split('#').next().unwrap_or("");
    if reference.is_empty() {
        return Some(base_path.to_owned());
    }
    let lower = reference.to_ascii_lowercase();
    let same_origin_rest = |rest: &str| -> Option<String> {
        let (host, path) = rest
            .find(['/', '?'])
            .map_or((rest, "/"), |p| rest.split_at(p));
        if !same_authority(host, authority, scheme) {
            return None;
        }
        Some(if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
        })
    };
    let path = if lower.starts_with("//") {
        same_origin_rest(&reference[2..])?
    } else if let Some(ref_scheme) = scheme_of(&lower) {
        if ref_scheme != scheme {
            return None;
        }
        same_origin_rest(&reference[ref_scheme.len() + 3..])?
    } else if lower.contains(':') && scheme_like(&lower) {
        return None;
    } else if reference.starts_with('/') {
        reference.to_owned()
    } else if reference.starts_with('?') {
        let base = base_path.split('?').next().unwrap_or("/");
        format!("{base}{reference}")
    } else {
        let base = base_path.split('?').next().unwrap_or("/");
        let dir = &base[..base.rfind('/').map_or(0, |p| p + 1)];
        format!("{dir}{reference}")
    };
    Some(normalize_path(&path))
}

/// `http://` or `https://` at the start of a lower-cased reference.
fn scheme_of(lower: &str) -> Option<&'static str> {
    if lower.starts_with("http://") {
        Some("http")
    } else if lower.starts_with("https://") {
        Some("https")
    } else {
        None
    }
}

/// A reference with a scheme of its own (`mailto:`, `data:`, …) before any `/`, `?` or `#`.
fn scheme_like(lower: &str) -> bool {
    let colon = lower.find(':').unwrap_or(usize::MAX);
    let first_delimiter = lower.find(['/', '?', '#']).unwrap_or(usize::MAX);
    colon < first_delimiter
        && lower[..colon]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

fn same_authority(host: &str, authority: &str, scheme: &str) -> bool {
    let default_port = if scheme == "https" { ":443" } else { ":80" };
    let strip = |a: &str| {
        let a = a.to_ascii_lowercase();
        a.strip_suffix(default_port).map(str::to_owned).unwrap_or(a)
    };
    strip(host) == strip(authority)
}

/// Removes `.` and `..` segments (RFC 3986 §5.2.4), keeping the query untouched.
fn normalize_path(path_and_query: &str) -> String {
    let (path, query) = match path_and_query.find('?') {
        Some(p) => path_and_query.split_at(p),
        None => (path_and_query, ""),
    };
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    for (index, segment) in segments.iter().enumerate() {
        match *segment {
            "." => {
                if index == last {
                    out.push("");
                }
            }
            ".." => {
                out.pop();
                if index == last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    format!("/{}{query}", out.join("/"))
}

/// Whether a path looks like an image file, by its extension (the same list as Lenscap's
/// default `images.extensions`).
pub fn is_image_path(path_and_query: &str) -> bool {
    let path = path_and_query.split('?').next().unwrap_or("");
    let Some((_, extension)) = path.rsplit_once('.') else {
        return false;
    };
    [
        "jpg", "jpeg", "png", "webp", "gif", "avif", "svg", "heic", "heif", "jxl", "bmp", "tif",
        "tiff",
    ]
    .iter()
    .any(|e| extension.eq_ignore_ascii_case(e))
}

// === impl Robots ===

/// The rules of robots.txt (RFC 9309) that apply to one product token.
#[derive(Clone, Debug, Default)]
pub struct Robots {
    rules: Vec<(bool, String)>,
    /// `Crawl-delay` in seconds, when the group gives one (not in RFC 9309, widely sent).
    pub crawl_delay: Option<f64>,
}

impl Robots {
    /// The rules for `token` in `text`: the groups naming it (case-insensitively), or else the
    /// `*` groups.
    pub fn parse(text: &str, token: &str) -> Robots {
        let mut own = Robots::default();
        let mut any = Robots::default();
        let mut found_own = false;
        let mut agents: Vec<String> = Vec::new();
        let mut in_rules = false;
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let key = key.trim().to_ascii_lowercase();
            let value = value.trim();
            match key.as_str() {
                "user-agent" => {
                    if in_rules {
                        agents.clear();
                        in_rules = false;
                    }
                    agents.push(value.to_ascii_lowercase());
                }
                "allow" | "disallow" | "crawl-delay" => {
                    in_rules = true;
                    let mine = agents.iter().any(|a| a.eq_ignore_ascii_case(token));
                    let star = agents.iter().any(|a| a == "*");
                    found_own |= mine;
                    for (target, applies) in [(&mut own, mine), (&mut any, star)] {
                        if !applies {
                            continue;
                        }
                        match key.as_str() {
                            "crawl-delay" => target.crawl_delay = value.parse().ok(),
                            // An empty Disallow allows everything: no rule.
                            _ if value.is_empty() => {}
                            _ => target.rules.push((key == "allow", value.to_owned())),
                        }
                    }
                }
                _ => {}
            }
        }
        if found_own { own } else { any }
    }

    /// Whether `path` may be fetched: the longest matching rule wins, `allow` wins ties, and
    /// no matching rule means allowed. `/robots.txt` itself is always allowed.
    pub fn allows(&self, path: &str) -> bool {
        if path == "/robots.txt" {
            return true;
        }
        let mut best: Option<(usize, bool)> = None;
        for (allow, pattern) in &self.rules {
            if pattern_matches(pattern.as_bytes(), path.as_bytes()) {
                let length = pattern.len();
                best = match best {
                    Some((l, a)) if l > length || (l == length && a) => Some((l, a)),
                    _ => Some((length, *allow)),
                };
            }
        }
        best.is_none_or(|(_, allow)| allow)
    }
}

/// robots.txt matching: a prefix match where `*` matches any run and a final `$` anchors.
fn pattern_matches(pattern: &[u8], path: &[u8]) -> bool {
    match pattern.split_first() {
        None => true,
        Some((b'$', [])) => path.is_empty(),
        Some((b'*', rest)) => (0..=path.len()).any(|skip| pattern_matches(rest, &path[skip..])),
        Some((&c, rest)) => path.first() == Some(&c) && pattern_matches(rest, &path[1..]),
    }
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c')
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn find_ascii_ci(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_links_images_and_srcset_and_skips_scripts_and_comments() {
        let html = r#"<!doctype html><html><head><title><a href="/no">x</a></title>
            <link rel="preload" href="/font.woff2"><link rel="Stylesheet alternate" href="/s.css">
            <script>var s = '<img src="/no.jpg">';</script><style>a{}</style></head>
            <body><!-- <a href="/commented"> -->
            <A HREF='/g/2?p=1&amp;q=2'>next</A> <a href=/g/3>unquoted</a>
            <picture><source srcset="/p/1.webp 1x, /p/1@2x.webp 2x" type="image/webp">
            <img src="/p/1.jpg" srcset="/p/1-400.jpg 400w, /p/1-1200.jpg 1200w,/p/1-2400.jpg 2400w" alt="a > b"></picture>
            <img data-src="/lazy.jpg"><img src="">
            <a href="/trap/" hidden>x</a><a href="/trap2/" aria-hidden="true"></a>
            </body></html>"#;
        let page = scan_html(html);
        assert_eq!(page.links, ["/g/2?p=1&q=2", "/g/3"]);
        assert_eq!(page.hidden_links, ["/trap/", "/trap2/"]);
        assert_eq!(page.stylesheets, ["/s.css"]);
        assert_eq!(page.images.len(), 2);
        assert!(page.images[0].source);
        let img = &page.images[1];
        assert_eq!(img.src.as_deref(), Some("/p/1.jpg"));
        assert_eq!(img.browser_choice(), Some("/p/1-1200.jpg"));
        assert_eq!(img.largest(), Some("/p/1-2400.jpg"));
        assert_eq!(img.all().count(), 4);
    }

    #[test]
    fn the_way_through_page_is_read_for_its_wait_and_pass_url() {
        let html = "<html><head><meta charset=utf-8>\
            <meta http-equiv=\"refresh\" content=\"3;url=/.well-known/lenscap/pass?t=ab&amp;to=%2Fg%2F1\">";
        assert_eq!(
            way_through_link(html),
            Some((3, "/.well-known/lenscap/pass?t=ab&to=%2Fg%2F1".to_owned()))
        );
        let elsewhere = "<meta http-equiv=\"Refresh\" content=\"0;url=/next\">";
        assert_eq!(way_through_link(elsewhere), None);
        assert_eq!(way_through_link("<p>no refresh</p>"), None);
    }

    #[test]
    fn srcset_grammar() {
        let c = parse_srcset(" a.jpg, b.jpg 2x ,c.jpg 300w,d, e.jpg");
        let urls: Vec<_> = c.iter().map(|c| c.url.as_str()).collect();
        assert_eq!(urls, ["a.jpg", "b.jpg", "c.jpg", "d", "e.jpg"]);
        assert_eq!(c[1].density, Some(2.0));
        assert_eq!(c[2].width, Some(300));
        let el = ImageElement {
            src: None,
            srcset: parse_srcset("x2.jpg 2x, x1.jpg"),
            source: false,
        };
        assert_eq!(el.browser_choice(), Some("x1.jpg"));
        assert_eq!(el.largest(), Some("x2.jpg"));
    }

    #[test]
    fn resolution_stays_on_the_origin() {
        let r = |base, reference| resolve(base, reference, "http", "127.0.0.1:8080");
        assert_eq!(r("/a/b.html", "c.html").as_deref(), Some("/a/c.html"));
        assert_eq!(r("/a/b/", "../c.jpg").as_deref(), Some("/a/c.jpg"));
        assert_eq!(r("/a/b/", "./").as_deref(), Some("/a/b/"));
        assert_eq!(r("/a/b", "?page=2").as_deref(), Some("/a/b?page=2"));
        assert_eq!(r("/a", "#top").as_deref(), Some("/a"));
        assert_eq!(r("/a", "/x#y").as_deref(), Some("/x"));
        assert_eq!(
            r("/", "http://127.0.0.1:8080/p/1.jpg").as_deref(),
            Some("/p/1.jpg")
        );
        assert_eq!(r("/", "//127.0.0.1:8080?x").as_deref(), Some("/?x"));
        assert_eq!(r("/", "https://127.0.0.1:8080/p/1.jpg"), None);
        assert_eq!(r("/", "http://example.org/p/1.jpg"), None);
        assert_eq!(r("/", "mailto:a@b.c"), None);
        assert_eq!(r("/", "javascript:void(0)"), None);
        assert_eq!(r("/", "data:image/png;base64,xx"), None);
        assert_eq!(
            resolve("/", "http://HOST/a", "http", "host:80").as_deref(),
            Some("/a")
        );
    }

    #[test]
    fn robots_groups_and_longest_match() {
        let text = "User-agent: *\nDisallow: /private/\n\n\
                    User-agent: GPTBot\nUser-agent: CCBot\nDisallow: /\nAllow: /public/\nDisallow: /public/*.jpg$\nCrawl-delay: 2\n";
        let gpt = Robots::parse(text, "gptbot");
        assert!(!gpt.allows("/"));
        assert!(gpt.allows("/public/page"));
        assert!(!gpt.allows("/public/a.jpg"));
        assert!(gpt.allows("/public/a.jpg?x"));
        assert!(gpt.allows("/robots.txt"));
        assert_eq!(gpt.crawl_delay, Some(2.0));
        let other = Robots::parse(text, "ClaudeBot");
        assert!(other.allows("/"));
        assert!(!other.allows("/private/x"));
        let empty = Robots::parse("User-agent: *\nDisallow:\n", "x");
        assert!(empty.allows("/anything"));
        let tie = Robots::parse("User-agent: *\nDisallow: /a\nAllow: /a\n", "x");
        assert!(tie.allows("/a"));
    }

    #[test]
    fn image_paths() {
        assert!(is_image_path("/p/1.JPG"));
        assert!(is_image_path("/p/1.webp?w=200"));
        assert!(!is_image_path("/p/1.html"));
        assert!(!is_image_path("/jpg"));
    }
}
