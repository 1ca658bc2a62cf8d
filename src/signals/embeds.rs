//! The images a page embeds, read from its HTML as it streams out, so that a page view vouches
//! only for the images that page shows.
//!
//! A person's browser fetches the images of the page it is on; a harvester that views one page
//! and then pulls any image with that page as Referer is not doing that. The scanner reads the
//! `src`, `srcset`, `data-src` and `data-srcset` of `<img>` and `<source>` (so `<picture>`
//! too), and the `href` of `<a>` links to image files (a thumbnail opening its photo), and
//! keeps them as a 512-bit Bloom set with the count of distinct entries — 72 bytes per page,
//! whatever the page's size. Sets live in one site-wide table keyed by the page's path and
//! query ([`EmbedTable`], at most [`PAGES`] pages): the images of a page are the same for every
//! visitor, so no client record grows.
//!
//! The scanner holds at most one tag at a time ([`LONGEST_TAG`] bytes; a longer one is
//! skipped) and never changes a byte.
//!
//! ```
//! use lenscap::signals::embeds::{EmbedScanner, embed_key};
//!
//! let mut scanner = EmbedScanner::new("/gallery/2");
//! scanner.feed(b"<p><img src=\"/photos/a.jpg\" alt=x><picture><source srcset=\"b.webp 1x, /photos/b@2x.webp 2x\">");
//! scanner.feed(b"<img SRC='https://pub.example/photos/c.jpg?w=800#top'></picture>");
//! let set = scanner.finish();
//! assert_eq!(set.count(), 4);
//! assert!(set.contains(embed_key(b"/photos/a.jpg")));
//! assert!(set.contains(embed_key(b"/gallery/b.webp")));
//! assert!(set.contains(embed_key(b"/photos/b@2x.webp")));
//! assert!(set.contains(embed_key(b"/photos/c.jpg?w=800")));
//! assert!(!set.contains(embed_key(b"/photos/z.jpg")));
//! ```

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::RwLock;

/// Pages whose images are remembered at once (the table is cleared when full).
pub const PAGES: usize = 4096;

/// The longest tag the scanner reads (longer `<img>` tags are skipped).
pub const LONGEST_TAG: usize = 4096;

/// Bits in a page's set.
const BITS: usize = 512;

/// The key of a path and query, for an image request and for the URLs a page embeds.
pub fn embed_key(path_and_query: &[u8]) -> u64 {
    foldhash::fast::FixedState::with_seed(0x0e3b_ed5e).hash_one(path_and_query)
}

/// The images one page embeds: a Bloom set (two bits per image) and how many were added.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EmbedSet {
    bits: [u64; BITS / 64],
    count: u16,
    /// The page was served with the render proof (a stylesheet link only renderers fetch).
    renders: bool,
}

impl EmbedSet {
    fn positions(key: u64) -> [usize; 2] {
        [(key as usize) % BITS, ((key >> 32) as usize) % BITS]
    }

    /// Adds an image; counts it when it was not in the set yet.
    pub fn insert(&mut self, key: u64) {
        if self.contains(key) {
            return;
        }
        for p in Self::positions(key) {
            self.bits[p / 64] |= 1 << (p % 64);
        }
        self.count = self.count.saturating_add(1);
    }

    /// Whether the page embeds the image (false positives: about 1% at 30 images).
    pub fn contains(&self, key: u64) -> bool {
        Self::positions(key)
            .iter()
            .all(|&p| self.bits[p / 64] & (1 << (p % 64)) != 0)
    }

    /// Distinct images added.
    pub fn count(&self) -> u16 {
        self.count
    }

    /// Notes that the page was served with the render proof.
    pub fn mark_render_proof(&mut self) {
        self.renders = true;
    }

    /// Whether the page was served with the render proof.
    pub fn has_render_proof(&self) -> bool {
        self.renders
    }
}

/// What the table knows of an image's Referer page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Embedding {
    /// The page embeds the image.
    pub embedded: bool,
    /// The page was served with the render proof.
    pub render_proof: bool,
}

/// The sets of the pages served lately, shared by every clone of a layer.
#[derive(Debug, Default)]
pub struct EmbedTable {
    pages: RwLock<HashMap<u64, EmbedSet, foldhash::fast::FixedState>>,
}

impl EmbedTable {
    /// Remembers what page `page` embeds (replacing what it embedded before).
    pub fn store(&self, page: u64, set: EmbedSet) {
        let mut pages = self
            .pages
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if pages.len() >= PAGES && !pages.contains_key(&page) {
            // Bounded: start over rather than track which page is stalest.
            pages.clear();
        }
        pages.insert(page, set);
    }

    fn read<T>(&self, page: u64, f: impl FnOnce(&EmbedSet) -> T) -> Option<T> {
        let pages = self
            .pages
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        pages.get(&page).map(f)
    }

    /// Whether page `page` embeds image `image` (`None`: the page's images are not known).
    pub fn embeds(&self, page: u64, image: u64) -> Option<bool> {
        self.read(page, |set| set.contains(image))
    }

    /// Whether page `page` embeds image `image` and carried the render proof, in one lookup
    /// (`None`: the page's images are not known).
    pub fn embedding(&self, page: u64, image: u64) -> Option<Embedding> {
        self.read(page, |set| Embedding {
            embedded: set.contains(image),
            render_proof: set.renders,
        })
    }

    /// How many images page `page` embeds, when known.
    pub fn count(&self, page: u64) -> Option<u16> {
        self.read(page, EmbedSet::count)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Between tags.
    Text,
    /// Just after `<`: reading a tag name.
    Name,
    /// Inside a tag worth reading, outside quotes.
    Attributes,
    /// Inside a quoted attribute value of a tag worth reading.
    Quoted(u8),
    /// Inside a tag not worth reading (or too long), outside quotes.
    Skip,
    /// Inside a quoted value of a tag not worth reading.
    SkipQuoted(u8),
}

/// Reads the images a page embeds from its HTML, chunk by chunk.
#[derive(Debug)]
pub struct EmbedScanner {
    state: State,
    /// The tag being read (its name, then its attributes).
    tag: Vec<u8>,
    /// The page's directory, for relative URLs (`/gallery/` for `/gallery/2`).
    base: Box<[u8]>,
    /// A relative URL joined to `base` (kept, so that its room is allocated once).
    joined: Vec<u8>,
    set: EmbedSet,
}

const NAME_MAX: usize = 8;

impl EmbedScanner {
    /// A scanner for the page at `path` (its path, without the query).
    pub fn new(path: &str) -> EmbedScanner {
        let path = path.as_bytes();
        let dir = path.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
        EmbedScanner {
            state: State::Text,
            tag: Vec::new(),
            base: if dir == 0 {
                b"/".as_slice().into()
            } else {
                path[..dir].into()
            },
            joined: Vec::new(),
            set: EmbedSet::default(),
        }
    }

    /// Reads the next bytes of the page.
    pub fn feed(&mut self, bytes: &[u8]) {
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            match self.state {
                State::Text => match memchr::memchr(b'<', &bytes[i..]) {
                    Some(at) => {
                        i += at;
                        self.tag.clear();
                        self.state = State::Name;
                    }
                    None => return,
                },
                State::Name => {
                    if b.is_ascii_alphabetic() && self.tag.len() < NAME_MAX {
                        self.tag.push(b.to_ascii_lowercase());
                    } else {
                        let wanted = matches!(self.tag.as_slice(), b"img" | b"source" | b"a");
                        let ends_name = b.is_ascii_whitespace() || b == b'/' || b == b'>';
                        self.state = if wanted && ends_name {
                            State::Attributes
                        } else {
                            State::Skip
                        };
                        continue;
                    }
                }
                State::Attributes => {
                    // Up to the tag's end or a quote, the bytes go into the tag as they are.
                    let rest = &bytes[i..];
                    let at = memchr::memchr3(b'>', b'"', b'\'', rest).unwrap_or(rest.len());
                    let room = LONGEST_TAG.saturating_sub(self.tag.len());
                    if !self.take(&rest[..at]) {
                        self.state = State::Skip;
                        i += room;
                        continue;
                    }
                    i += at;
                    match rest.get(at) {
                        None => return,
                        Some(b'>') => {
                            self.read_tag();
                            self.state = State::Text;
                        }
                        Some(&q) => {
                            if self.tag.len() >= LONGEST_TAG {
                                self.state = State::Skip;
                                continue;
                            }
                            self.tag.push(q);
                            self.state = State::Quoted(q);
                        }
                    }
                }
                State::Quoted(q) => {
                    // The value and its closing quote.
                    let rest = &bytes[i..];
                    let (at, closed) = match memchr::memchr(q, rest) {
                        Some(at) => (at + 1, true),
                        None => (rest.len(), false),
                    };
                    let room = LONGEST_TAG.saturating_sub(self.tag.len());
                    if !self.take(&rest[..at]) {
                        self.state = State::SkipQuoted(q);
                        i += room;
                        continue;
                    }
                    if !closed {
                        return;
                    }
                    self.state = State::Attributes;
                    i += at;
                    continue;
                }
                State::Skip => match memchr::memchr3(b'>', b'"', b'\'', &bytes[i..]) {
                    Some(at) => {
                        i += at;
                        self.state = match bytes[i] {
                            b'>' => State::Text,
                            q => State::SkipQuoted(q),
                        };
                    }
                    None => return,
                },
                State::SkipQuoted(q) => match memchr::memchr(q, &bytes[i..]) {
                    Some(at) => {
                        i += at;
                        self.state = State::Skip;
                    }
                    None => return,
                },
            }
            i += 1;
        }
    }

    /// Appends `run` to the tag when it fits within [`LONGEST_TAG`]; otherwise fills the tag
    /// to the limit and returns `false` (the tag is then too long to read).
    fn take(&mut self, run: &[u8]) -> bool {
        let room = LONGEST_TAG.saturating_sub(self.tag.len());
        if run.len() <= room {
            self.tag.extend_from_slice(run);
            return true;
        }
        self.tag.extend_from_slice(&run[..room]);
        false
    }

    /// The images read so far.
    pub fn finish(self) -> EmbedSet {
        self.set
    }

    /// Reads the attributes of one `<img>`, `<source>` or `<a>` tag.
    fn read_tag(&mut self) {
        let tag = std::mem::take(&mut self.tag);
        let (name, mut rest) =
            tag.split_at(tag.iter().take_while(|b| b.is_ascii_alphabetic()).count());
        let link = name == b"a";
        while let Some((attr, value, after)) = next_attribute(rest) {
            rest = after;
            let attr = attr.to_ascii_lowercase();
            match attr.as_slice() {
                b"src" | b"data-src" if !link => self.add(value),
                b"srcset" | b"data-srcset" if !link => {
                    for candidate in value.split(|&b| b == b',') {
                        let url = candidate
                            .trim_ascii()
                            .split(|b| b.is_ascii_whitespace())
                            .next()
                            .unwrap_or_default();
                        self.add(url);
                    }
                }
                b"href" if link && names_an_image(value) => self.add(value),
                _ => {}
            }
        }
        self.tag = tag;
    }

    fn add(&mut self, url: &[u8]) {
        let url = url.trim_ascii();
        if url.is_empty() || url.starts_with(b"data:") || url.starts_with(b"#") {
            return;
        }
        let url = match memchr::memchr(b'#', url) {
            Some(i) => &url[..i],
            None => url,
        };
        let mut joined = std::mem::take(&mut self.joined);
        let path = if let Some(rest) = url.strip_prefix(b"//") {
            after_authority(rest)
        } else if let Some(authority) = after_scheme(url) {
            after_authority(authority)
        } else if url.starts_with(b"/") {
            url
        } else {
            joined.clear();
            joined.extend_from_slice(&self.base);
            joined.extend_from_slice(url);
            &joined
        };
        let key = embed_key(&unescape_amp(path));
        self.set.insert(key);
        self.joined = joined;
    }
}

/// What follows `scheme://` when the URL starts with one (letters, then `://`).
fn after_scheme(url: &[u8]) -> Option<&[u8]> {
    let letters = url.iter().take_while(|b| b.is_ascii_alphabetic()).count();
    url[letters..].strip_prefix(b"://")
}

/// The path and query after `host[:port]`.
fn after_authority(rest: &[u8]) -> &[u8] {
    match rest.iter().position(|&b| b == b'/' || b == b'?') {
        Some(i) if rest[i] == b'/' => &rest[i..],
        _ => b"/",
    }
}

/// `&amp;` is how HTML writes `&` in a URL with a query.
fn unescape_amp(path: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if memchr::memchr(b'&', path).is_none() {
        return path.into();
    }
    let mut out = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        if path[i..].starts_with(b"&amp;") {
            out.push(b'&');
            i += 5;
        } else {
            out.push(path[i]);
            i += 1;
        }
    }
    out.into()
}

fn names_an_image(url: &[u8]) -> bool {
    let path = url
        .split(|&b| b == b'?' || b == b'#')
        .next()
        .unwrap_or_default();
    let ext = match path.iter().rposition(|&b| b == b'.') {
        Some(i) => &path[i + 1..],
        None => return false,
    };
    ["jpg", "jpeg", "png", "webp", "avif", "gif", "heic", "jxl"]
        .iter()
        .any(|e| e.as_bytes().eq_ignore_ascii_case(ext))
}

/// The next `name=value` (or bare `name`) in a tag's attribute text, and what follows.
fn next_attribute(text: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let start = text
        .iter()
        .position(|b| !b.is_ascii_whitespace() && *b != b'/')?;
    let text = &text[start..];
    let name_len = text
        .iter()
        .position(|b| b.is_ascii_whitespace() || *b == b'=' || *b == b'/')
        .unwrap_or(text.len());
    let (name, rest) = text.split_at(name_len);
    let rest_trimmed = rest.trim_ascii_start();
    let Some(after_eq) = rest_trimmed.strip_prefix(b"=") else {
        return Some((name, b"", rest));
    };
    let after_eq = after_eq.trim_ascii_start();
    match after_eq.first() {
        Some(&q) if q == b'"' || q == b'\'' => {
            let body = &after_eq[1..];
            let end = body.iter().position(|&b| b == q).unwrap_or(body.len());
            Some((name, &body[..end], body.get(end + 1..).unwrap_or_default()))
        }
        _ => {
            let end = after_eq
                .iter()
                .position(u8::is_ascii_whitespace)
                .unwrap_or(after_eq.len());
            Some((name, &after_eq[..end], &after_eq[end..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(page: &str, chunks: &[&str]) -> EmbedSet {
        let mut s = EmbedScanner::new(page);
        for c in chunks {
            s.feed(c.as_bytes());
        }
        s.finish()
    }

    #[test]
    fn tags_split_across_chunks_are_read() {
        let html = "<html><body><img alt=\"a > b\" src=\"/p/1.jpg\"><img src=/p/2.jpg><a href=\"/p/3.jpg\">x</a><a href=\"/about\">y</a><script>var s='<img src=\"/p/4.jpg\">'</script>";
        let whole = scan("/", &[html]);
        for split in 1..html.len() {
            let (a, b) = html.split_at(split);
            assert_eq!(scan("/", &[a, b]), whole, "split at {split}");
        }
        assert!(whole.contains(embed_key(b"/p/1.jpg")));
        assert!(whole.contains(embed_key(b"/p/2.jpg")));
        assert!(whole.contains(embed_key(b"/p/3.jpg")));
        assert!(!whole.contains(embed_key(b"/about")));
        // Over-collecting from script text costs nothing but a little credit.
        assert_eq!(whole.count(), 4);
    }

    #[test]
    fn other_tags_and_long_tags_are_skipped() {
        let long = format!(
            "<img data-x=\"{}\" src=\"/p/9.jpg\">",
            "x".repeat(LONGEST_TAG)
        );
        let set = scan(
            "/g/1",
            &[
                "<image src=\"/p/5.jpg\"><iframe src=\"/p/6.jpg\">",
                &long,
                "<img src=\"&amp;\">",
            ],
        );
        assert!(!set.contains(embed_key(b"/p/5.jpg")));
        assert!(!set.contains(embed_key(b"/p/9.jpg")));
        assert_eq!(set.count(), 1);
        assert!(set.contains(embed_key(b"/g/&")));
    }

    #[test]
    fn a_tag_at_the_length_limit_is_read_whole_or_skipped_however_it_is_split() {
        for quote in ["\"", ""] {
            for pad in LONGEST_TAG - 40..LONGEST_TAG + 3 {
                let attrs = format!(" src=\"/p/a.jpg\" data-x={quote}{}{quote}", "x".repeat(pad));
                let html = format!("<p>text</p><img{attrs}><img src=/p/b.jpg>");
                let whole = scan("/", &[&html]);
                // The tag holds its name and attributes; `>` needs no room.
                let fits = 3 + attrs.len() <= LONGEST_TAG;
                assert_eq!(
                    whole.contains(embed_key(b"/p/a.jpg")),
                    fits,
                    "pad {pad} {quote}"
                );
                assert!(whole.contains(embed_key(b"/p/b.jpg")), "pad {pad} {quote}");
                for split in (1..html.len())
                    .step_by(61)
                    .chain(html.len() - 30..html.len())
                {
                    let (a, b) = html.split_at(split);
                    assert_eq!(
                        scan("/", &[a, b]),
                        whole,
                        "pad {pad} {quote}, split at {split}"
                    );
                }
            }
        }
    }

    #[test]
    fn absolute_and_scheme_relative_urls_count_by_their_path_and_query() {
        let set = scan(
            "/g/",
            &[
                "<img src=\"https://gallery.test/p/7.jpg\"><img src=\"//cdn.test/p/8.jpg?x=1&amp;y=2\"><img src=\"mailto://x\"><img src=\"9.jpg?a&b\">",
            ],
        );
        assert!(set.contains(embed_key(b"/p/7.jpg")));
        assert!(set.contains(embed_key(b"/p/8.jpg?x=1&y=2")));
        assert!(set.contains(embed_key(b"/")));
        assert!(set.contains(embed_key(b"/g/9.jpg?a&b")));
        assert_eq!(set.count(), 4);
    }

    #[test]
    fn the_table_is_bounded() {
        let table = EmbedTable::default();
        for page in 0..(PAGES as u64 + 10) {
            table.store(page, EmbedSet::default());
        }
        assert!(table.pages.read().unwrap().len() <= PAGES);
        assert_eq!(table.count(PAGES as u64 + 9), Some(0));
        assert_eq!(table.embeds(1, 1), None);
    }

    #[test]
    fn a_page_served_with_the_render_proof_says_so_in_the_same_lookup() {
        let table = EmbedTable::default();
        let mut set = scan("/g/1", &["<img src=\"/p/1.jpg\">"]);
        table.store(1, set);
        set.mark_render_proof();
        table.store(2, set);
        let image = embed_key(b"/p/1.jpg");
        let plain = table.embedding(1, image).unwrap();
        assert!(plain.embedded && !plain.render_proof);
        let proof = table.embedding(2, image).unwrap();
        assert!(proof.embedded && proof.render_proof);
        assert!(!table.embedding(2, embed_key(b"/p/2.jpg")).unwrap().embedded);
        assert_eq!(table.embedding(3, image), None);
    }

    #[test]
    fn sizes() {
        assert_eq!(std::mem::size_of::<EmbedSet>(), 72);
    }
}
