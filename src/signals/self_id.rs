//! Self-identification: a User-Agent that says it is a robot, catalogued or not.
//!
//! The catalog names the crawlers it has a policy for; this is the long tail. Words built like
//! crawler names (`…bot`, `…crawler`, `…spider`, `Slurp`, `…fetcher`, `…checker`), a URL or a
//! mail address to contact the operator, and a list of named tools, all read from
//! `config/crawler-patterns.toml` and matched on word boundaries, so that `Cubot` phones,
//! `SLCC2` in old Internet Explorer strings and `Abbott` never look like robots. Every needle
//! (word endings and starts, markers, names) is found by one pass of one DFA, and each
//! occurrence then checked on its own terms; the classifier puts the same needles into its
//! own DFA with the catalog's tokens (`classify::reader`).
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

use aho_corasick::automaton::Automaton;
use aho_corasick::dfa::DFA;
use aho_corasick::{Anchored, MatchKind};
use serde::Deserialize;

/// The embedded pattern set.
const PATTERNS: &str = include_str!("../../config/crawler-patterns.toml");

/// Longest word read as a crawler word (longer runs of letters are not words).
const LONGEST_WORD: usize = 48;

/// Shortest word read as a crawler word.
const SHORTEST_WORD: usize = 3;

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

/// What a self-identification needle asks of the bytes around an occurrence of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SelfIdNeedle {
    /// A contact URL or `www.`: any occurrence counts.
    Marker,
    /// The end of a crawler word (`…bot`): the run of letters ends with it.
    WordEnding,
    /// The start of a crawler word (`crawl…`): the run of letters starts with it.
    WordStart,
    /// A named tool, word-bounded on each side whose edge is a word byte.
    Name {
        /// The name's first byte is a word byte: no word byte may come before it.
        start_word: bool,
        /// The name's last byte is a word byte: no word byte may follow it.
        end_word: bool,
    },
}

/// The pattern set, parsed: every needle with what it asks of its surroundings, searched
/// by one case-insensitive automaton (here, and fused with the catalog in the classifier).
pub(crate) struct SelfIdPatterns {
    needles: Vec<(String, SelfIdNeedle)>,
    not_crawlers: Vec<Box<[u8]>>,
    mail: bool,
}

/// The pattern set, parsed once.
static PATTERN_SET: LazyLock<SelfIdPatterns> = LazyLock::new(|| {
    SelfIdPatterns::parse(PATTERNS).expect("config/crawler-patterns.toml is checked by tests")
});

/// Its own automaton, built on the first [`self_identifies`] (the classifier builds one
/// with the catalog's tokens in it instead).
static AUTOMATON: LazyLock<NeedleAutomaton> = LazyLock::new(|| {
    NeedleAutomaton::new(PATTERN_SET.needles().map(|(n, _)| n))
        .expect("the embedded patterns build an automaton")
});

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

/// The embedded pattern set, parsed once.
pub(crate) fn patterns() -> &'static SelfIdPatterns {
    &PATTERN_SET
}

/// A case-insensitive DFA over many needles that reports every occurrence of every needle,
/// overlapping ones included: one table step a byte, whatever the number of needles.
pub(crate) struct NeedleAutomaton {
    dfa: DFA,
}

impl NeedleAutomaton {
    /// Builds the automaton; needle `i` is reported as `i`.
    pub(crate) fn new<P: AsRef<[u8]>>(
        needles: impl IntoIterator<Item = P>,
    ) -> Result<NeedleAutomaton, String> {
        let dfa = aho_corasick::dfa::Builder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .build(needles)
            .map_err(|e| format!("building the user-agent automaton: {e}"))?;
        Ok(NeedleAutomaton { dfa })
    }

    /// Calls `found(needle, start, end)` for each occurrence, in order of their ends (of
    /// occurrences ending together, in needle order), until it returns `true`; returns
    /// whether one did. Walks the DFA by hand: the library's overlapping iterator cost
    /// several times more a byte.
    pub(crate) fn find(
        &self,
        haystack: &[u8],
        mut found: impl FnMut(usize, usize, usize) -> bool,
    ) -> bool {
        let dfa = &self.dfa;
        let Ok(mut state) = dfa.start_state(Anchored::No) else {
            return false;
        };
        for (at, &byte) in haystack.iter().enumerate() {
            state = dfa.next_state(Anchored::No, state, byte);
            if !dfa.is_match(state) {
                continue;
            }
            let end = at + 1;
            for i in 0..dfa.match_len(state) {
                let needle = dfa.match_pattern(state, i);
                if found(needle.as_usize(), end - dfa.pattern_len(needle), end) {
                    return true;
                }
            }
        }
        false
    }
}

impl SelfIdPatterns {
    fn parse(text: &str) -> Result<SelfIdPatterns, String> {
        let file: PatternsFile =
            toml::from_str(text).map_err(|e| format!("crawler-patterns.toml: {e}"))?;
        if let Some(empty) = file.names.iter().position(|n| n.trim().is_empty()) {
            return Err(format!("crawler-patterns.toml: names[{empty}] is empty"));
        }
        if let Some(empty) = file.markers.iter().position(|m| m.is_empty()) {
            return Err(format!("crawler-patterns.toml: markers[{empty}] is empty"));
        }
        for (key, list) in [
            ("word_endings", &file.word_endings),
            ("word_starts", &file.word_starts),
            ("not_crawlers", &file.not_crawlers),
        ] {
            if let Some(bad) = list
                .iter()
                .find(|w| w.is_empty() || !w.bytes().all(|b| b.is_ascii_alphabetic()))
            {
                return Err(format!(
                    "crawler-patterns.toml: {key} entry {bad:?} is not a word of ASCII letters"
                ));
            }
        }
        let mut needles = Vec::new();
        needles.extend(file.markers.into_iter().map(|m| (m, SelfIdNeedle::Marker)));
        needles.extend(
            file.word_endings
                .into_iter()
                .map(|w| (w, SelfIdNeedle::WordEnding)),
        );
        needles.extend(
            file.word_starts
                .into_iter()
                .map(|w| (w, SelfIdNeedle::WordStart)),
        );
        needles.extend(file.names.into_iter().map(|n| {
            let b = n.as_bytes();
            let needle = SelfIdNeedle::Name {
                start_word: is_word_byte(b[0]),
                end_word: is_word_byte(b[b.len() - 1]),
            };
            (n, needle)
        }));
        Ok(SelfIdPatterns {
            needles,
            not_crawlers: file
                .not_crawlers
                .iter()
                .map(|w| w.to_ascii_lowercase().into_bytes().into_boxed_slice())
                .collect(),
            mail: file.mail,
        })
    }

    /// Every needle and what it asks.
    pub(crate) fn needles(&self) -> impl Iterator<Item = (&str, SelfIdNeedle)> {
        self.needles.iter().map(|(n, k)| (n.as_str(), *k))
    }

    /// Whether an occurrence of a needle at `start..end` of `ua` makes it self-identify.
    pub(crate) fn confirms(
        &self,
        needle: SelfIdNeedle,
        ua: &[u8],
        start: usize,
        end: usize,
    ) -> bool {
        let letter = |i: usize| ua.get(i).is_some_and(u8::is_ascii_alphabetic);
        match needle {
            SelfIdNeedle::Marker => true,
            SelfIdNeedle::WordEnding => {
                !letter(end) && {
                    let from = ua[..start]
                        .iter()
                        .rposition(|b| !b.is_ascii_alphabetic())
                        .map_or(0, |i| i + 1);
                    self.is_crawler_word(&ua[from..end])
                }
            }
            SelfIdNeedle::WordStart => {
                (start == 0 || !letter(start - 1)) && {
                    let to = ua[end..]
                        .iter()
                        .position(|b| !b.is_ascii_alphabetic())
                        .map_or(ua.len(), |i| end + i);
                    self.is_crawler_word(&ua[start..to])
                }
            }
            SelfIdNeedle::Name {
                start_word,
                end_word,
            } => {
                let before_ok = !start_word || start == 0 || !is_word_byte(ua[start - 1]);
                let after_ok = !end_word || end == ua.len() || !is_word_byte(ua[end]);
                before_ok && after_ok
            }
        }
    }

    /// A whole run of letters that carries a crawler ending or start: long enough to be a
    /// word, and not one of the words that only look like one (`Cubot`).
    fn is_crawler_word(&self, word: &[u8]) -> bool {
        (SHORTEST_WORD..=LONGEST_WORD).contains(&word.len())
            && !self
                .not_crawlers
                .iter()
                .any(|n| n.eq_ignore_ascii_case(word))
    }

    /// Whether the User-Agent carries a mail address (when the set asks for them).
    pub(crate) fn has_mail(&self, ua: &[u8]) -> bool {
        self.mail && has_mail_address(ua)
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
    let set = patterns();
    AUTOMATON.find(ua, |needle, start, end| {
        set.confirms(set.needles[needle].1, ua, start, end)
    }) || set.has_mail(ua)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aho_corasick::{AhoCorasick, AhoCorasickBuilder};

    #[test]
    fn the_embedded_patterns_parse() {
        let set = SelfIdPatterns::parse(PATTERNS).unwrap();
        let names = set
            .needles()
            .filter(|(_, n)| matches!(n, SelfIdNeedle::Name { .. }))
            .count();
        assert!(names > 1000, "{names} names");
        assert!(SelfIdPatterns::parse("names = [\"\"]").is_err());
    }

    #[test]
    fn words_that_are_not_letters_are_rejected_by_name() {
        let file = |ending: &str| {
            format!(
                "word_endings = [{ending:?}]\nword_starts = []\nnot_crawlers = []\nmarkers = []\nmail = false\nnames = []\n"
            )
        };
        assert!(SelfIdPatterns::parse(&file("bot")).is_ok());
        for bad in ["", "bot2", "b-ot"] {
            let error = SelfIdPatterns::parse(&file(bad)).err().unwrap();
            assert!(
                error.contains("word_endings") && error.contains(&format!("{bad:?}")),
                "{error}"
            );
        }
    }

    /// The reading before the needles were searched by one automaton: each word of letters
    /// against the ending and start lists, then the markers and the names apart.
    struct OneListAtATime {
        file: PatternsFile,
        markers: AhoCorasick,
        names: AhoCorasick,
    }

    impl OneListAtATime {
        fn new() -> OneListAtATime {
            let file: PatternsFile = toml::from_str(PATTERNS).unwrap();
            let insensitive = |list: &[String]| {
                AhoCorasickBuilder::new()
                    .ascii_case_insensitive(true)
                    .build(list)
                    .unwrap()
            };
            OneListAtATime {
                markers: insensitive(&file.markers),
                names: insensitive(&file.names),
                file,
            }
        }

        fn matches(&self, ua: &[u8]) -> bool {
            let file = &self.file;
            let lower = |w: &String| w.to_ascii_lowercase().into_bytes();
            let word = ua.split(|b| !b.is_ascii_alphabetic()).any(|w| {
                let w = w.to_ascii_lowercase();
                (3..=48).contains(&w.len())
                    && !file.not_crawlers.iter().any(|n| lower(n) == w)
                    && (file.word_endings.iter().any(|e| w.ends_with(&lower(e)))
                        || file.word_starts.iter().any(|s| w.starts_with(&lower(s))))
            });
            let name = self.names.find_overlapping_iter(ua).any(|m| {
                let n = file.names[m.pattern().as_usize()].as_bytes();
                (!is_word_byte(n[0]) || m.start() == 0 || !is_word_byte(ua[m.start() - 1]))
                    && (!is_word_byte(n[n.len() - 1])
                        || m.end() == ua.len()
                        || !is_word_byte(ua[m.end()]))
            });
            self.markers.is_match(ua) || (file.mail && has_mail_address(ua)) || word || name
        }
    }

    #[test]
    fn one_automaton_reads_as_the_lists_did() {
        let corpora = [
            include_str!("../../tests/data/crawlers.txt"),
            include_str!("../../tests/data/browsers.txt"),
            include_str!("../../tests/data/browsers-generated.txt"),
        ];
        let lists = OneListAtATime::new();
        let mut bot_like = 0;
        for ua in corpora.iter().flat_map(|c| c.lines()) {
            // Cut and glued variants reach word edges the list does not.
            let bytes = ua.as_bytes();
            let cut = &bytes[..bytes.len() / 2];
            let glued = format!("{ua}X{ua}");
            for variant in [bytes, cut, glued.as_bytes()] {
                let expected = lists.matches(variant);
                assert_eq!(
                    self_identifies(variant),
                    expected,
                    "{}",
                    String::from_utf8_lossy(variant)
                );
                bot_like += usize::from(expected);
            }
        }
        assert!(bot_like > 4_000, "{bot_like}");
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
