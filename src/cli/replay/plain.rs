//! The jsonl lines most logs are made of, read without serde: one flat object whose strings
//! need no unescaping.
//!
//! ```text
//! {"ip":"203.0.113.7","method":"GET","path":"/a.jpg","headers":{"user-agent":"…"},"t":1.5}
//! ```
//!
//! [`read`] gives the [`Line`] `serde_json` would give for such a line, or `None` for
//! anything else — a backslash or a control character anywhere, a field named twice, no
//! `path`, a value of a type the field does not take, an object or array in a field replay
//! ignores — and the caller then reads the line with `serde_json`, which also words the
//! error of a line that is not a request. `serde_json` took about 7,000 instructions a line of
//! the throughput corpus, this reader about 5,100 (`docs/BENCHMARKS.md`, replay throughput).

use std::borrow::Cow;

use super::{HeaderField, Headers, Line};

/// The line `serde_json` would read from `text`, when `text` is a plain line; `None` when it
/// is anything else (or not a request at all).
pub(super) fn read(text: &str) -> Option<Line<'_>> {
    if has_control_byte(text.as_bytes()) {
        return None;
    }
    let mut cursor = Cursor { text, at: 0 };
    let line = cursor.line()?;
    cursor.at_end().then_some(line)
}

/// Any byte below 0x20: a raw control character in a string (an error to `serde_json`), or
/// whitespace other than a space, which this reader does not skip.
fn has_control_byte(bytes: &[u8]) -> bool {
    // Whole chunks without an early exit, so the compiler can compare many bytes at once.
    bytes
        .chunks(32)
        .any(|chunk| chunk.iter().fold(false, |found, &b| found | (b < 0x20)))
}

/// The fields of [`Line`], one bit each, to refuse a field given twice as serde does.
#[derive(Clone, Copy)]
enum Field {
    Ip,
    Method,
    Path,
    Scheme,
    Headers,
    T,
    Version,
    Visitor,
    SetVisitor,
    ContentType,
    Ja4,
    TlsTraits,
    H2,
}

impl Field {
    fn of(key: &str) -> Option<Field> {
        Some(match key {
            "ip" => Field::Ip,
            "method" => Field::Method,
            "path" => Field::Path,
            "scheme" => Field::Scheme,
            "headers" => Field::Headers,
            "t" => Field::T,
            "version" => Field::Version,
            "visitor" => Field::Visitor,
            "set_visitor" => Field::SetVisitor,
            "content_type" => Field::ContentType,
            "ja4" => Field::Ja4,
            "tls_traits" => Field::TlsTraits,
            "h2" => Field::H2,
            _ => return None,
        })
    }

    fn bit(self) -> u16 {
        1 << self as u16
    }
}

/// A position in the line's text.
struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Cursor<'a> {
    /// `{ "key": value, … }`: the request object.
    fn line(&mut self) -> Option<Line<'a>> {
        let mut line = Line::without_path();
        let mut seen = 0u16;
        self.expect(b'{')?;
        if !self.eat(b'}') {
            loop {
                let key = self.string()?;
                self.expect(b':')?;
                match Field::of(key) {
                    Some(field) => {
                        if seen & field.bit() != 0 {
                            return None;
                        }
                        seen |= field.bit();
                        self.field(&mut line, field)?;
                    }
                    None => self.scalar()?,
                }
                if !self.eat(b',') {
                    self.expect(b'}')?;
                    break;
                }
            }
        }
        (seen & Field::Path.bit() != 0).then_some(line)
    }

    /// The value of `field`, into `line`.
    fn field(&mut self, line: &mut Line<'a>, field: Field) -> Option<()> {
        let text = match field {
            Field::Path => {
                line.path = Cow::Borrowed(self.string()?);
                return Some(());
            }
            Field::Headers => {
                line.headers = self.headers()?;
                return Some(());
            }
            Field::T => {
                line.t = self.number_or_null()?;
                return Some(());
            }
            Field::Ip => &mut line.ip,
            Field::Method => &mut line.method,
            Field::Scheme => &mut line.scheme,
            Field::Version => &mut line.version,
            Field::Visitor => &mut line.visitor,
            Field::SetVisitor => &mut line.set_visitor,
            Field::ContentType => &mut line.content_type,
            Field::Ja4 => &mut line.ja4,
            Field::TlsTraits => &mut line.tls_traits,
            Field::H2 => &mut line.h2,
        };
        *text = self.string_or_null()?.map(Cow::Borrowed);
        Some(())
    }

    /// `{ "name": "value" | ["value", …], … }`, in the order serde's reading gives.
    fn headers(&mut self) -> Option<Headers<'a>> {
        let mut headers = Headers(Vec::with_capacity(8));
        self.expect(b'{')?;
        if self.eat(b'}') {
            return Some(headers);
        }
        loop {
            let name = self.string()?;
            self.expect(b':')?;
            let field = if self.eat(b'[') {
                HeaderField::Many(self.strings()?)
            } else {
                HeaderField::One(Cow::Borrowed(self.string()?))
            };
            headers.put(Cow::Borrowed(name), field);
            if !self.eat(b',') {
                self.expect(b'}')?;
                return Some(headers);
            }
        }
    }

    /// The strings of an array, after its `[`, through its `]`.
    fn strings(&mut self) -> Option<Vec<Cow<'a, str>>> {
        let mut values = Vec::new();
        if self.eat(b']') {
            return Some(values);
        }
        loop {
            values.push(Cow::Borrowed(self.string()?));
            if !self.eat(b',') {
                self.expect(b']')?;
                return Some(values);
            }
        }
    }

    /// A string without escapes (its text between the quotes).
    fn string(&mut self) -> Option<&'a str> {
        self.expect(b'"')?;
        let rest = &self.text.as_bytes()[self.at..];
        let end = quote_or_backslash(rest)?;
        if rest[end] != b'"' {
            return None;
        }
        let text = &self.text[self.at..self.at + end];
        self.at += end + 1;
        Some(text)
    }

    /// A string, or `null`.
    fn string_or_null(&mut self) -> Option<Option<&'a str>> {
        if self.literal("null") {
            return Some(None);
        }
        self.string().map(Some)
    }

    /// A number (read by `serde_json`, so it rounds as serde's reading of the line would), or
    /// `null`.
    fn number_or_null(&mut self) -> Option<Option<f64>> {
        if self.literal("null") {
            return Some(None);
        }
        let number = self.number()?;
        serde_json::from_str::<f64>(number).ok().map(Some)
    }

    /// A value of a field replay ignores: a string, a number, `true`, `false` or `null`.
    fn scalar(&mut self) -> Option<()> {
        self.skip_spaces();
        match self.text.as_bytes().get(self.at)? {
            b'"' => self.string().map(drop),
            b't' => self.literal("true").then_some(()),
            b'f' => self.literal("false").then_some(()),
            b'n' => self.literal("null").then_some(()),
            _ => self.number().map(drop),
        }
    }

    /// A JSON number: `-`? (`0` | a digit 1–9 and digits) (`.` digits)? (`e` `+`/`-`? digits)?
    fn number(&mut self) -> Option<&'a str> {
        self.skip_spaces();
        let bytes = self.text.as_bytes();
        let start = self.at;
        let mut at = start;
        if bytes.get(at) == Some(&b'-') {
            at += 1;
        }
        match bytes.get(at)? {
            b'0' => at += 1,
            b'1'..=b'9' => at = digits_end(bytes, at),
            _ => return None,
        }
        if bytes.get(at) == Some(&b'.') {
            at = digits_after(bytes, at + 1)?;
        }
        if matches!(bytes.get(at), Some(b'e' | b'E')) {
            at += 1;
            if matches!(bytes.get(at), Some(b'+' | b'-')) {
                at += 1;
            }
            at = digits_after(bytes, at)?;
        }
        self.at = at;
        Some(&self.text[start..at])
    }

    /// Takes `word` (after any spaces) if it is next.
    fn literal(&mut self, word: &str) -> bool {
        self.skip_spaces();
        let found = self.text.as_bytes()[self.at..].starts_with(word.as_bytes());
        if found {
            self.at += word.len();
        }
        found
    }

    /// Takes `byte` (after any spaces) if it is next.
    fn eat(&mut self, byte: u8) -> bool {
        self.skip_spaces();
        let found = self.text.as_bytes().get(self.at) == Some(&byte);
        self.at += usize::from(found);
        found
    }

    /// Takes `byte` (after any spaces), or gives up on the line.
    fn expect(&mut self, byte: u8) -> Option<()> {
        self.eat(byte).then_some(())
    }

    fn skip_spaces(&mut self) {
        let bytes = self.text.as_bytes();
        while bytes.get(self.at) == Some(&b' ') {
            self.at += 1;
        }
    }

    /// Whether only spaces are left.
    fn at_end(&mut self) -> bool {
        self.skip_spaces();
        self.at == self.text.len()
    }
}

/// Where the first `"` or `\\` of `bytes` is. Eight bytes at a time: the strings of a line
/// are short, and `memchr2`'s setup cost more than the search (about 120 instructions a
/// string of the corpus, against 50).
fn quote_or_backslash(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    /// The high bit of each zero byte of `word` (and of none below the first).
    fn zero_bytes(word: u64) -> u64 {
        word.wrapping_sub(ONES) & !word & HIGHS
    }
    let mut words = bytes.chunks_exact(8);
    let mut at = 0;
    for chunk in words.by_ref() {
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let found = zero_bytes(word ^ (ONES * u64::from(b'"')))
            | zero_bytes(word ^ (ONES * u64::from(b'\\')));
        if found != 0 {
            return Some(at + found.trailing_zeros() as usize / 8);
        }
        at += 8;
    }
    let tail = words
        .remainder()
        .iter()
        .position(|&b| b == b'"' || b == b'\\')?;
    Some(at + tail)
}

/// Where the digits from `at` end.
fn digits_end(bytes: &[u8], at: usize) -> usize {
    at + bytes[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count()
}

/// Where one or more digits from `at` end; `None` if there is none.
fn digits_after(bytes: &[u8], at: usize) -> Option<usize> {
    let end = digits_end(bytes, at);
    (end > at).then_some(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `read`, and what `serde_json` reads from the same text.
    fn both(text: &str) -> (Option<Line<'_>>, Option<Line<'_>>) {
        (read(text), serde_json::from_str::<Line<'_>>(text).ok())
    }

    /// Lines of the shapes logs have, each of them plain.
    const PLAIN: &[&str] = &[
        r#"{"ip":"203.0.113.1","method":"GET","path":"/gallery/3","scheme":"https","headers":{"user-agent":"Mozilla/5.0 (X11; Linux x86_64; rv:150.0) Gecko/20100101 Firefox/150.0","accept":"text/html","accept-language":"en-GB,en;q=0.9","accept-encoding":"gzip, deflate, br","sec-fetch-dest":"document","sec-fetch-mode":"navigate"},"t":1780000000.005}"#,
        r#"{"ip":"2001:db8::7","method":"HEAD","path":"/b.png?size=thumb","headers":{"User-Agent":"curl/8.5.0","ACCEPT":["*/*","image/png"],"accept":"image/webp","x-empty":[]},"t":-0.5e2}"#,
        r#"{"path":"/","headers":{}}"#,
        r#"{ "path" : "/a.jpg" , "t" : null , "ip" : null , "headers" : { "b" : "1" , "a" : "2" , "b" : "3" } }"#,
        r#"{"status":200,"bytes":1024,"ok":true,"cached":false,"note":null,"who":"x","path":"/p","t":12,"version":"HTTP/2","visitor":"v1","set_visitor":"v2","content_type":"image/jpeg","ja4":"t13d1516h2_8daaf6152771_e5627efa2ab1","tls_traits":"grease,alps","h2":"1:65536;2:0|15663105|0|m,a,s,p"}"#,
        r#"{"path":"/é/日本","headers":{"user-agent":"Firefox Édition"},"t":0}"#,
        r#"{"path":"/x","t":1.7976931348623157e308,"n":-0,"m":0.0,"e":1E+2}"#,
    ];

    #[test]
    fn plain_lines_read_as_serde_reads_them() {
        for text in PLAIN {
            let (ours, serde) = both(text);
            assert!(ours.is_some(), "not read as plain: {text}");
            assert_eq!(ours, serde, "{text}");
        }
    }

    #[test]
    fn other_lines_are_left_to_serde() {
        for text in [
            r#"{"path":"/a\"b"}"#,
            r#"{"path":"/a\/b"}"#,
            r#"{"path":"/","path":"/b"}"#,
            r#"{"ip":"1.2.3.4"}"#,
            "{\"path\":\"/\",\t\"t\":1}",
            r#"{"path":"/","headers":{"a":1}}"#,
            r#"{"path":"/","headers":{"a":["x",1]}}"#,
            r#"{"path":"/","headers":null}"#,
            r#"{"path":"/","extra":{"nested":[1]}}"#,
            r#"{"path":"/","extra":[]}"#,
            r#"{"path":"/","t":"12"}"#,
            r#"{"path":"/","t":1e400}"#,
            r#"{"path":"/","t":01}"#,
            r#"{"path":"/","ip":5}"#,
            r#"{"path":"/"} x"#,
            r#"{"path":"/",}"#,
            r#"["path"]"#,
            "not json",
        ] {
            assert!(read(text).is_none(), "read as plain: {text}");
        }
    }

    /// Every line one edit away from a plain one (a byte taken out, or one of JSON's
    /// structural bytes put in) is either read as serde reads it or left to serde.
    #[test]
    fn near_misses_are_read_as_serde_reads_them_or_left_to_it() {
        let mut read_plain = 0;
        for text in PLAIN {
            let mut variants: Vec<String> = Vec::new();
            for (at, _) in text.char_indices() {
                let mut cut = text.to_string();
                cut.remove(at);
                variants.push(cut);
                for put in [
                    "\"", ",", ":", "{", "}", "[", "]", " ", "0", "-", ".", "e", "n", "\\",
                ] {
                    let mut more = text.to_string();
                    more.insert_str(at, put);
                    variants.push(more);
                }
            }
            for variant in &variants {
                let (ours, serde) = both(variant);
                if ours.is_some() {
                    read_plain += 1;
                    assert_eq!(ours, serde, "{variant}");
                }
            }
        }
        // The edits that keep a line plain (in a string, a digit more) are read, not refused.
        assert!(
            read_plain > 1_000,
            "only {read_plain} variants read as plain"
        );
    }
}
