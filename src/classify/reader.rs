//! One pass over a User-Agent: the catalog agent it names, what it claims as a browser,
//! whether it names itself a robot.
//!
//! Reading a User-Agent the classifier has not seen (every request of a scraper that rotates
//! User-Agents) used to search it once for the catalog's tokens, once per browser marker,
//! once for the crawler-name list and once per word against the crawler-word lists. Here
//! every needle of the three sets goes into one case-insensitive DFA, searched once with
//! overlapping matches; each occurrence is then checked against what its needle asks (word
//! boundaries, a whole crawler word, the exact case of a browser marker). The reading equals
//! that of the separate searches (`signals::read_user_agent`, kept as the tests' reference).

use crate::catalog::Catalog;
use crate::settings::ConfigError;
use crate::signals::{
    BROWSER_MARKERS, BrowserUa, NeedleAutomaton, SelfIdNeedle, UserAgent, self_id_patterns,
};

/// What an automaton pattern is.
#[derive(Clone, Copy, Debug)]
enum Needle {
    /// A catalog token of agent `agent`, `len` bytes, word-bounded on both sides.
    Token { agent: u32, len: u32 },
    /// A self-identification needle.
    SelfId(SelfIdNeedle),
    /// A browser marker (case-sensitive): its index in [`BROWSER_MARKERS`].
    Browser(usize),
}

/// The fused User-Agent reader of one catalog.
pub(crate) struct UserAgentReader {
    automaton: NeedleAutomaton,
    needles: Vec<Needle>,
}

impl std::fmt::Debug for UserAgentReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserAgentReader")
            .field("needles", &self.needles.len())
            .finish_non_exhaustive()
    }
}

impl UserAgentReader {
    /// Builds the reader for `catalog`'s tokens and the embedded self-identification set.
    pub(crate) fn new(catalog: &Catalog) -> Result<UserAgentReader, ConfigError> {
        let mut texts: Vec<&[u8]> = Vec::new();
        let mut needles = Vec::new();
        // Catalog tokens first, in file order: ties between equal tokens go to the first.
        for (token, agent) in catalog.tokens() {
            texts.push(token.as_bytes());
            needles.push(Needle::Token {
                agent: agent as u32,
                len: token.len() as u32,
            });
        }
        for (text, needle) in self_id_patterns().needles() {
            texts.push(text.as_bytes());
            needles.push(Needle::SelfId(needle));
        }
        for (marker, text) in BROWSER_MARKERS.iter().enumerate() {
            texts.push(text);
            needles.push(Needle::Browser(marker));
        }
        let automaton = NeedleAutomaton::new(&texts).map_err(|e| ConfigError::Data(e.into()))?;
        Ok(UserAgentReader { automaton, needles })
    }

    /// Reads one User-Agent.
    pub(crate) fn read(&self, ua: &[u8]) -> UserAgent {
        let patterns = self_id_patterns();
        let mut best: Option<(u32, u32)> = None;
        let mut bot_like = false;
        let mut markers = [None; BROWSER_MARKERS.len()];
        self.automaton.find(ua, |needle, start, end| {
            match self.needles[needle] {
                Needle::Token { agent, len } => {
                    if word_bounded(ua, start, end)
                        && best.is_none_or(|(_, best_len)| len > best_len)
                    {
                        best = Some((agent, len));
                    }
                }
                Needle::SelfId(needle) => {
                    bot_like = bot_like || patterns.confirms(needle, ua, start, end);
                }
                Needle::Browser(marker) => {
                    if ua[start..end] == *BROWSER_MARKERS[marker] {
                        markers[marker].get_or_insert(start);
                    }
                }
            }
            false
        });
        UserAgent {
            agent: best.map(|(agent, _)| agent),
            browser: BrowserUa::read_with(ua, |marker| markers[marker]),
            bot_like: bot_like || patterns.has_mail(ua),
        }
    }
}

/// Neither the byte before `start` nor the one at `end` continues a word.
fn word_bounded(ua: &[u8], start: usize, end: usize) -> bool {
    let outside = |i: Option<usize>| {
        i.and_then(|i| ua.get(i))
            .is_none_or(|b| !b.is_ascii_alphanumeric())
    };
    outside(start.checked_sub(1)) && outside(Some(end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signals::read_user_agent;

    fn corpus() -> impl Iterator<Item = &'static str> {
        [
            include_str!("../../tests/data/crawlers.txt"),
            include_str!("../../tests/data/browsers.txt"),
            include_str!("../../tests/data/browsers-generated.txt"),
        ]
        .into_iter()
        .flat_map(str::lines)
    }

    /// Every User-Agent of the corpora, cut, glued and recased, reads as the separate
    /// searches read it.
    #[test]
    fn one_pass_reads_as_the_separate_searches() {
        let catalog = Catalog::embedded().unwrap();
        let reader = UserAgentReader::new(&catalog).unwrap();
        let (mut agents, mut bots, mut chromes) = (0, 0, 0);
        for ua in corpus() {
            let bytes = ua.as_bytes();
            let glued = format!("{ua} {ua}Bot");
            let upper = ua.to_ascii_uppercase();
            let lower = ua.to_ascii_lowercase();
            for variant in [
                bytes,
                &bytes[..bytes.len() / 2],
                &bytes[bytes.len() / 3..],
                glued.as_bytes(),
                upper.as_bytes(),
                lower.as_bytes(),
            ] {
                let expected = read_user_agent(&catalog, variant);
                assert_eq!(
                    reader.read(variant),
                    expected,
                    "{}",
                    String::from_utf8_lossy(variant)
                );
                agents += usize::from(expected.agent.is_some());
                bots += usize::from(expected.bot_like);
                chromes += usize::from(expected.browser.chrome.is_some());
            }
        }
        // The corpora reach every part of the reading.
        assert!(
            agents > 2_000 && bots > 5_000 && chromes > 15_000,
            "{agents} {bots} {chromes}"
        );
    }

    #[test]
    fn every_catalog_token_is_found_as_the_catalog_finds_it() {
        let catalog = Catalog::embedded().unwrap();
        let reader = UserAgentReader::new(&catalog).unwrap();
        for (token, agent) in catalog.tokens() {
            let ua = format!("Mozilla/5.0 (compatible; {token}/1.0; +https://example.com/bot)");
            let expected = read_user_agent(&catalog, ua.as_bytes());
            assert_eq!(reader.read(ua.as_bytes()), expected, "{ua}");
            assert!(expected.agent.is_some(), "{token} (agent {agent})");
        }
    }

    #[test]
    fn edges_and_odd_bytes() {
        let catalog = Catalog::embedded().unwrap();
        let reader = UserAgentReader::new(&catalog).unwrap();
        let mut long = vec![0xffu8; 4096];
        long.extend_from_slice(b" Googlebot/2.1");
        for ua in [
            &b""[..],
            b"Mozilla/",
            b"Mozilla/5.0 Chrome/",
            b"Mozilla/5.0 Chrome/x Chrome/120",
            b"Mozilla/5.0 chrome/120 Chrome/99",
            b"Mozilla/5.0 Safari/1 Version/",
            b"Opera/9.80 (J2ME/MIDP; Opera Mini/9.80) Presto/2.5.25 Version/10.54",
            b"Nokia6230i/2.0 (03.25) Profile/MIDP-2.0 Configuration/CLDC-1.1",
            b"bot",
            b"cubot",
            b"xbot",
            b"Mozilla/5.0 \xc3\xa9crawler",
            &long,
        ] {
            assert_eq!(
                reader.read(ua),
                read_user_agent(&catalog, ua),
                "{}",
                String::from_utf8_lossy(ua)
            );
        }
    }
}
