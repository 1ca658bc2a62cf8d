//! The request headers every stage reads, found in one pass over the header map.
//!
//! Classification, the tracker, the visitor cookie and the pass each read a handful of the same
//! headers (`User-Agent`, `Accept`, `Host`, `Referer`, `Cookie`, `Sec-Fetch-*`). Looking each
//! up by name in the `HeaderMap` hashes the name every time; [`RequestHeaders::of`] walks the
//! request's few headers once, compares their names with the standard constants, and keeps a
//! reference to the first value of each, which is what `HeaderMap::get` would return.

use http::{HeaderMap, HeaderName, HeaderValue, header};

/// Name of the request header that carries the verdict to an upstream, when enabled. A client
/// never gets one through: the one header walk notes it, and the layer removes it.
pub const VERDICT_HEADER: &str = "x-lenscap-verdict";

/// `Sec-Fetch-Dest`.
pub(crate) const SEC_FETCH_DEST: HeaderName = HeaderName::from_static("sec-fetch-dest");
/// `Sec-Fetch-Mode`.
pub(crate) const SEC_FETCH_MODE: HeaderName = HeaderName::from_static("sec-fetch-mode");
/// `Sec-CH-UA`.
pub(crate) const SEC_CH_UA: HeaderName = HeaderName::from_static("sec-ch-ua");

/// The first value of each header the stages read, from one walk over the request's headers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RequestHeaders<'a> {
    map: &'a HeaderMap,
    pub(crate) host: Option<&'a HeaderValue>,
    pub(crate) user_agent: Option<&'a HeaderValue>,
    pub(crate) accept: Option<&'a HeaderValue>,
    pub(crate) accept_language: Option<&'a HeaderValue>,
    pub(crate) accept_encoding: Option<&'a HeaderValue>,
    pub(crate) connection: Option<&'a HeaderValue>,
    pub(crate) referer: Option<&'a HeaderValue>,
    pub(crate) sec_fetch_dest: Option<&'a HeaderValue>,
    pub(crate) sec_fetch_mode: Option<&'a HeaderValue>,
    pub(crate) sec_ch_ua: Option<&'a HeaderValue>,
    cookie: Option<&'a HeaderValue>,
    /// More than one `Cookie` line (HTTP/2 may split them).
    more_cookies: bool,
    pub(crate) present: Present,
}

/// Whether the request carries the headers the tag stage takes off or rewrites.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Present {
    /// `Range` or `If-Range`.
    pub(crate) range: bool,
    /// `If-None-Match` or `If-Match`.
    pub(crate) validators: bool,
    /// A verdict header ([`VERDICT_HEADER`]), which no client may send.
    pub(crate) verdict: bool,
}

impl<'a> RequestHeaders<'a> {
    /// Walks `map` once.
    pub(crate) fn of(map: &'a HeaderMap) -> RequestHeaders<'a> {
        let mut found = RequestHeaders {
            map,
            host: None,
            user_agent: None,
            accept: None,
            accept_language: None,
            accept_encoding: None,
            connection: None,
            referer: None,
            sec_fetch_dest: None,
            sec_fetch_mode: None,
            sec_ch_ua: None,
            cookie: None,
            more_cookies: false,
            present: Present::default(),
        };
        for (name, value) in map {
            found.note(name, value);
        }
        found
    }

    fn note(&mut self, name: &HeaderName, value: &'a HeaderValue) {
        let slot = if *name == header::USER_AGENT {
            &mut self.user_agent
        } else if *name == header::ACCEPT {
            &mut self.accept
        } else if *name == header::ACCEPT_LANGUAGE {
            &mut self.accept_language
        } else if *name == header::ACCEPT_ENCODING {
            &mut self.accept_encoding
        } else if *name == header::HOST {
            &mut self.host
        } else if *name == header::REFERER {
            &mut self.referer
        } else if *name == header::COOKIE {
            self.more_cookies |= self.cookie.is_some();
            &mut self.cookie
        } else if *name == header::CONNECTION {
            &mut self.connection
        } else if let Some(slot) = self.fetch_metadata_slot(name) {
            slot
        } else {
            self.note_presence(name);
            return;
        };
        if slot.is_none() {
            *slot = Some(value);
        }
    }

    fn note_presence(&mut self, name: &HeaderName) {
        if *name == header::RANGE || *name == header::IF_RANGE {
            self.present.range = true;
        } else if *name == header::IF_NONE_MATCH || *name == header::IF_MATCH {
            self.present.validators = true;
        } else if name.as_str() == VERDICT_HEADER {
            self.present.verdict = true;
        }
    }

    /// The slot of a `Sec-*` header (custom names: compared only when they start so).
    fn fetch_metadata_slot(&mut self, name: &HeaderName) -> Option<&mut Option<&'a HeaderValue>> {
        if !name.as_str().starts_with("sec-") {
            return None;
        }
        if *name == SEC_FETCH_DEST {
            Some(&mut self.sec_fetch_dest)
        } else if *name == SEC_FETCH_MODE {
            Some(&mut self.sec_fetch_mode)
        } else if *name == SEC_CH_UA {
            Some(&mut self.sec_ch_ua)
        } else {
            None
        }
    }

    /// Every `Cookie` line, in order (as `HeaderMap::get_all` would give them).
    pub(crate) fn cookie_lines(&self) -> impl Iterator<Item = &'a HeaderValue> + use<'a> {
        let rest = self
            .more_cookies
            .then(|| self.map.get_all(header::COOKIE).iter().skip(1));
        self.cookie.into_iter().chain(rest.into_iter().flatten())
    }

    /// The `User-Agent` bytes (empty when there is none).
    pub(crate) fn user_agent_bytes(&self) -> &'a [u8] {
        self.user_agent
            .map(HeaderValue::as_bytes)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    #[test]
    fn each_header_is_the_first_value_get_finds() {
        let m = map(&[
            ("user-agent", "a"),
            ("accept", "image/*"),
            ("user-agent", "b"),
            ("Sec-Fetch-Dest", "image"),
            ("sec-fetch-mode", "no-cors"),
            ("sec-ch-ua", "\"Chromium\""),
            ("sec-fetch-site", "same-origin"),
            ("host", "gallery.test"),
            ("referer", "http://gallery.test/"),
            ("connection", "close"),
            ("accept-language", "en"),
            ("accept-encoding", "gzip"),
            ("x-other", "1"),
        ]);
        let h = RequestHeaders::of(&m);
        let same = |found: Option<&HeaderValue>, name: HeaderName| {
            assert_eq!(found, m.get(&name), "{name}");
        };
        same(h.user_agent, header::USER_AGENT);
        same(h.accept, header::ACCEPT);
        same(h.accept_language, header::ACCEPT_LANGUAGE);
        same(h.accept_encoding, header::ACCEPT_ENCODING);
        same(h.host, header::HOST);
        same(h.referer, header::REFERER);
        same(h.connection, header::CONNECTION);
        same(h.sec_fetch_dest, SEC_FETCH_DEST);
        same(h.sec_fetch_mode, SEC_FETCH_MODE);
        same(h.sec_ch_ua, SEC_CH_UA);
        assert_eq!(h.user_agent_bytes(), b"a");
        assert_eq!(h.cookie_lines().count(), 0);
    }

    #[test]
    fn ranges_and_validators_are_noted() {
        let none = RequestHeaders::of(&map(&[("accept", "*/*")])).present;
        assert_eq!(none, Present::default());
        for (name, range, validators, verdict) in [
            ("range", true, false, false),
            ("if-range", true, false, false),
            ("if-none-match", false, true, false),
            ("if-match", false, true, false),
            ("x-lenscap-verdict", false, false, true),
            ("x-lenscap-verdicts", false, false, false),
        ] {
            let present = RequestHeaders::of(&map(&[(name, "x")])).present;
            let expected = Present {
                range,
                validators,
                verdict,
            };
            assert_eq!(present, expected, "{name}");
        }
    }

    #[test]
    fn every_cookie_line_is_read_in_order() {
        let m = map(&[("cookie", "a=1"), ("accept", "*/*"), ("cookie", "b=2; c=3")]);
        let lines: Vec<_> = RequestHeaders::of(&m).cookie_lines().collect();
        let all: Vec<_> = m.get_all(header::COOKIE).iter().collect();
        assert_eq!(lines, all);
        let one = map(&[("cookie", "a=1")]);
        assert_eq!(RequestHeaders::of(&one).cookie_lines().count(), 1);
        assert!(
            RequestHeaders::of(&HeaderMap::new())
                .user_agent_bytes()
                .is_empty()
        );
    }
}
