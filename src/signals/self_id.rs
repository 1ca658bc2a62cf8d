//! Self-identification: a User-Agent that says it is a robot, catalogued or not.
//!
//! The catalog names the crawlers it has a policy for; this is the long tail. Words built like
//! crawler names (`…bot`, `…crawler`, `…spider`, `Slurp`, `…fetcher`, `…checker`), a URL or a
//! mail address to contact the operator, and a list of named tools, all read from
//! `config/crawler-patterns.toml` and matched on word boundaries, so that `Cubot` phones,
//! `SLCC2` in old Internet Explorer strings and `Abbott` never look like robots.
//!
//! ```
//! use lenscap::signals::self_identifies;
//!
//! assert!(self_identifies(b"Mozilla/5.0 (compatible; Seekport Crawler; http://seekport.com/)"));
//! assert!(self_identifies(b"Mozilla/5.0 (compatible; MyLittleBot/1.0)"));
//! assert!(!self_identifies(b"Mozilla/5.0 (Linux; Android 13; CUBOT KINGKONG 9) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Mobile Safari/537.36"));
//! assert!(!self_identifies(b"Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 6.1; Trident/4.0; SLCC2; .NET CLR 2.0.50727)"));
//! ```

use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use serde::Deserialize;

/// The embedded pattern set.
const PATTERNS: &str = include_str!("../../config/crawler-patterns.toml");

/// `config/crawler-patterns.toml` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatternsFile {
    word_endings: Vec<String>,
    word_starts: Vec<String>,
    not_crawlers: Vec<String>,
    markers: Vec<String>,
    mail: bool,
    names: Vec<String>,
}

/// The pattern set, compiled once.
struct SelfIdentification {
    endings: Vec<Box<[u8]>>,
    starts: Vec<Box<[u8]>>,
    not_crawlers: Vec<Box<[u8]>>,
    markers: AhoCorasick,
    mail: bool,
    names: AhoCorasick,
    /// Per name: whether its first and last bytes are word characters (then a boundary is
    /// needed on that side).
    name_edges: Vec<(bool, bool)>,
}

static SET: LazyLock<SelfIdentification> = LazyLock::new(|| {
    SelfIdentification::parse(PATTERNS).expect("config/crawler-patterns.toml is checked by tests")
});

fn lower(words: &[String]) -> Vec<Box<[u8]>> {
    words
        .iter()
        .map(|w| w.to_ascii_lowercase().into_bytes().into_boxed_slice())
        .collect()
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

impl SelfIdentification {
    fn parse(text: &str) -> Result<SelfIdentification, String> {
        let file: PatternsFile =
            toml::from_str(text).map_err(|e| format!("crawler-patterns.toml: {e}"))?;
        if let Some(empty) = file.names.iter().position(|n| n.trim().is_empty()) {
            return Err(format!("crawler-patterns.toml: names[{empty}] is empty"));
        }
        let markers = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .build(&file.markers)
            .map_err(|e| e.to_string())?;
        let names = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .build(&file.names)
            .map_err(|e| e.to_string())?;
        let name_edges = file
            .names
            .iter()
            .map(|n| {
                let n = n.as_bytes();
                (is_word_byte(n[0]), is_word_byte(n[n.len() - 1]))
            })
            .collect();
        Ok(SelfIdentification {
            endings: lower(&file.word_endings),
            starts: lower(&file.word_starts),
            not_crawlers: lower(&file.not_crawlers),
            markers,
            mail: file.mail,
            names,
            name_edges,
        })
    }

    fn matches(&self, ua: &[u8]) -> bool {
        self.markers.is_match(ua)
            || (self.mail && has_mail_address(ua))
            || self.has_crawler_word(ua)
            || self.has_name(ua)
    }

    fn has_crawler_word(&self, ua: &[u8]) -> bool {
        const LONGEST: usize = 48;
        let mut buf = [0u8; LONGEST];
        ua.split(|b| !b.is_ascii_alphabetic())
            .filter(|w| w.len() >= 3 && w.len() <= LONGEST)
            .any(|word| {
                let w = &mut buf[..word.len()];
                w.copy_from_slice(word);
                w.make_ascii_lowercase();
                let w = &*w;
                !self.not_crawlers.iter().any(|n| **n == *w)
                    && (self.endings.iter().any(|e| w.ends_with(e))
                        || self.starts.iter().any(|s| w.starts_with(s)))
            })
    }

    fn has_name(&self, ua: &[u8]) -> bool {
        self.names.find_overlapping_iter(ua).any(|m| {
            let (start_word, end_word) = self.name_edges[m.pattern().as_usize()];
            let before_ok = !start_word || m.start() == 0 || !is_word_byte(ua[m.start() - 1]);
            let after_ok = !end_word || m.end() == ua.len() || !is_word_byte(ua[m.end()]);
            before_ok && after_ok
        })
    }
}

/// `name@host.tld`: word bytes, `@`, a host with a dot and a letter after it.
fn has_mail_address(ua: &[u8]) -> bool {
    memchr::memchr_iter(b'@', ua).any(|at| {
        let before = at > 0 && is_word_byte(ua[at - 1]);
        let host = &ua[at + 1..];
        let host_len = host
            .iter()
            .take_while(|&&b| is_word_byte(b) || b == b'-' || b == b'.')
            .count();
        let host = &host[..host_len];
        let dotted = host
            .iter()
            .rposition(|&b| b == b'.')
            .is_some_and(|dot| dot > 0 && host.get(dot + 1).is_some_and(u8::is_ascii_alphabetic));
        before && dotted
    })
}

/// Whether a User-Agent names itself a robot: a crawler word, a contact URL or mail address,
/// or a named tool of `config/crawler-patterns.toml`.
pub fn self_identifies(ua: &[u8]) -> bool {
    SET.matches(ua)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_patterns_parse() {
        let set = SelfIdentification::parse(PATTERNS).unwrap();
        assert!(set.names.patterns_len() > 1000);
        assert!(SelfIdentification::parse("names = [\"\"]").is_err());
    }

    #[test]
    fn words_are_bounded() {
        for ua in [
            "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
            "Baiduspider+(+http://www.baidu.com/search/spider.htm)",
            "Mozilla/5.0 (compatible; Yahoo! Slurp)",
            "crawler4j (https://github.com/yasserg/crawler4j/)",
            "Mozilla/5.0 (compatible; XyzFeedFetcher 2.0)",
            "Mozilla/5.0 (compatible; ops contact: crawl-ops@example.org)",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/100.0 Safari/537.36 PTST/211202.211915",
        ] {
            assert!(self_identifies(ua.as_bytes()), "{ua}");
        }
        for ua in [
            "Mozilla/5.0 (Linux; Android 12; CUBOT_X30) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
            "Mozilla/5.0 (Windows NT 6.1; Trident/7.0; SLCC2; .NET CLR 2.0.50727; rv:11.0) like Gecko",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Abbott/2.1",
            "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0",
        ] {
            assert!(!self_identifies(ua.as_bytes()), "{ua}");
        }
    }

    #[test]
    fn mail_addresses() {
        assert!(has_mail_address(b"bot (admin@crawler.example.com)"));
        assert!(!has_mail_address(b"@ the pub"));
        assert!(!has_mail_address(b"x@localhost"));
    }
}
