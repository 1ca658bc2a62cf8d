//! Transport fingerprints: what the TLS ClientHello and the first HTTP/2 frames say about the
//! software that opened the connection, whatever its User-Agent claims.
//!
//! A script can copy every header Chrome sends, but its TLS library still greets the server
//! the way OpenSSL, Go or Java does, and its HTTP/2 library still opens the connection with its
//! own SETTINGS and pseudo-header order. When Lenscap terminates TLS, the server reads both
//! (the raw ClientHello before rustls takes it, the first frames after the preface) and puts a
//! [`Transport`] in the request's extensions; the classifier compares it with the browser
//! family the User-Agent claims ([`contradicts`]).
//!
//! - [`TlsFingerprint`]: the JA4 fingerprint (FoxIO's public spec) and the traits that tell
//!   the TLS stacks apart: GREASE values (Chromium and Apple's stack send them, NSS and
//!   OpenSSL never do), ALPS and certificate compression (Chromium), `record_size_limit`
//!   (Firefox), `encrypt_then_mac` (OpenSSL: curl, Python, Node).
//! - [`H2Fingerprint`]: the Akamai-style HTTP/2 fingerprint
//!   `SETTINGS|WINDOW_UPDATE|PRIORITY|pseudo-header order`.
//!
//! ```
//! use lenscap::signals::transport::{ClientHelloFacts, TlsFingerprint, TlsStack};
//!
//! // The cipher suites and extensions of a Chrome ClientHello, GREASE included.
//! let hello = ClientHelloFacts {
//!     version: 0x0304,
//!     sni: true,
//!     ciphers: &[0x1a1a, 0x1301, 0x1302, 0x1303, 0xc02b],
//!     extensions: &[0x2a2a, 0x0000, 0x0010, 0x001b, 0x44cd, 0x002b],
//!     signature_algorithms: &[0x0403, 0x0804],
//!     alpn: Some(b"h2"),
//! };
//! let fingerprint = TlsFingerprint::from_hello(&hello);
//! assert!(fingerprint.ja4().starts_with("t13d0405h2_"));
//! assert_eq!(fingerprint.stack(), TlsStack::Chromium);
//! ```

use std::fmt;

use super::BrowserUa;

// === impl TlsFingerprint ===

/// The parts of a ClientHello the fingerprint reads, in the order the client sent them.
#[derive(Clone, Copy, Debug)]
pub struct ClientHelloFacts<'a> {
    /// The highest version offered: from `supported_versions` when present (GREASE skipped),
    /// else the ClientHello's own version.
    pub version: u16,
    /// A `server_name` extension was sent.
    pub sni: bool,
    /// Cipher suites, GREASE included.
    pub ciphers: &'a [u16],
    /// Extension types, GREASE included.
    pub extensions: &'a [u16],
    /// `signature_algorithms`, in order.
    pub signature_algorithms: &'a [u16],
    /// The first ALPN protocol offered.
    pub alpn: Option<&'a [u8]>,
}

/// Whether a TLS value is a GREASE value (RFC 8701: `0x?a?a` with both bytes equal).
pub fn is_grease(value: u16) -> bool {
    value & 0x0f0f == 0x0a0a && value >> 8 == value & 0xff
}

const EXT_SERVER_NAME: u16 = 0x0000;
const EXT_ALPN: u16 = 0x0010;
const EXT_ENCRYPT_THEN_MAC: u16 = 0x0016;
const EXT_COMPRESS_CERTIFICATE: u16 = 0x001b;
const EXT_RECORD_SIZE_LIMIT: u16 = 0x001c;
const EXT_DELEGATED_CREDENTIALS: u16 = 0x0022;
/// ALPS, old and new codepoints.
const EXT_ALPS: [u16; 2] = [0x4469, 0x44cd];

/// Trait bits of a ClientHello.
const GREASE: u8 = 1;
const ALPS: u8 = 1 << 1;
const COMPRESS_CERTIFICATE: u8 = 1 << 2;
const RECORD_SIZE_LIMIT: u8 = 1 << 3;
const DELEGATED_CREDENTIALS: u8 = 1 << 4;
const ENCRYPT_THEN_MAC: u8 = 1 << 5;

const TRAIT_NAMES: [(u8, &str); 6] = [
    (GREASE, "grease"),
    (ALPS, "alps"),
    (COMPRESS_CERTIFICATE, "compress-certificate"),
    (RECORD_SIZE_LIMIT, "record-size-limit"),
    (DELEGATED_CREDENTIALS, "delegated-credentials"),
    (ENCRYPT_THEN_MAC, "encrypt-then-mac"),
];

/// The TLS stack a ClientHello's traits point to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TlsStack {
    /// GREASE with ALPS, or with certificate compression and Chromium's short suite list:
    /// Chrome, Edge, Opera, Brave, Android WebView, Electron.
    Chromium,
    /// No GREASE, `record_size_limit` and `delegated_credentials`: NSS (Firefox).
    Firefox,
    /// GREASE otherwise: Apple's stack (Safari, every iOS browser).
    Apple,
    /// No GREASE, `encrypt_then_mac`: OpenSSL (curl, Python, Node, wget, Ruby).
    OpenSsl,
    /// None of the above (Go, Java, rustls, …).
    Other,
}

impl TlsStack {
    /// The lower-case name used in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsStack::Chromium => "chromium",
            TlsStack::Firefox => "firefox",
            TlsStack::Apple => "apple",
            TlsStack::OpenSsl => "openssl",
            TlsStack::Other => "other",
        }
    }
}

/// A ClientHello's JA4 fingerprint and stack traits. Small and `Copy`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TlsFingerprint {
    /// `t13d1516h2_8daaf6152771_e5627efa2ab1`: always 36 ASCII bytes.
    ja4: [u8; 36],
    traits: u8,
}

impl fmt::Debug for TlsFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsFingerprint")
            .field("ja4", &self.ja4())
            .field("stack", &self.stack())
            .finish()
    }
}

impl TlsFingerprint {
    /// The fingerprint of a ClientHello.
    pub fn from_hello(hello: &ClientHelloFacts<'_>) -> TlsFingerprint {
        let mut ciphers: Vec<u16> = hello
            .ciphers
            .iter()
            .copied()
            .filter(|&c| !is_grease(c))
            .collect();
        let extensions: Vec<u16> = hello
            .extensions
            .iter()
            .copied()
            .filter(|&e| !is_grease(e))
            .collect();
        let mut ja4 = [b'0'; 36];
        ja4[0] = b't';
        ja4[1..3].copy_from_slice(version_code(hello.version));
        ja4[3] = if hello.sni { b'd' } else { b'i' };
        ja4[4..6].copy_from_slice(&two_digits(ciphers.len()));
        ja4[6..8].copy_from_slice(&two_digits(extensions.len()));
        ja4[8..10].copy_from_slice(&alpn_code(hello.alpn));
        ja4[10] = b'_';
        ciphers.sort_unstable();
        ja4[11..23].copy_from_slice(&truncated_hash(&hex_list(&ciphers), ciphers.is_empty()));
        ja4[23] = b'_';
        let mut hashed: Vec<u16> = extensions
            .iter()
            .copied()
            .filter(|&e| e != EXT_SERVER_NAME && e != EXT_ALPN)
            .collect();
        hashed.sort_unstable();
        let mut text = hex_list(&hashed);
        let algorithms: Vec<u16> = hello
            .signature_algorithms
            .iter()
            .copied()
            .filter(|&a| !is_grease(a))
            .collect();
        if !algorithms.is_empty() {
            text.push('_');
            text.push_str(&hex_list(&algorithms));
        }
        ja4[24..36].copy_from_slice(&truncated_hash(&text, hashed.is_empty()));
        TlsFingerprint {
            ja4,
            traits: traits_of(hello),
        }
    }

    /// The JA4 fingerprint.
    pub fn ja4(&self) -> &str {
        // Built from ASCII only.
        std::str::from_utf8(&self.ja4).unwrap_or("")
    }

    fn has(&self, bit: u8) -> bool {
        self.traits & bit != 0
    }

    /// The stack its traits point to.
    pub fn stack(&self) -> TlsStack {
        if self.has(GREASE) {
            // Chromium without ALPS (HTTP/1.1 only) still compresses certificates; Apple's
            // stack offers 20 suites, legacy CBC ones included, to Chromium's 15.
            let suites = (self.ja4[4] - b'0') * 10 + (self.ja4[5] - b'0');
            if self.has(ALPS) || (self.has(COMPRESS_CERTIFICATE) && suites < 18) {
                TlsStack::Chromium
            } else {
                TlsStack::Apple
            }
        } else if self.has(RECORD_SIZE_LIMIT) && self.has(DELEGATED_CREDENTIALS) {
            TlsStack::Firefox
        } else if self.has(ENCRYPT_THEN_MAC) {
            TlsStack::OpenSsl
        } else {
            TlsStack::Other
        }
    }

    /// The traits by name, comma-separated: `grease,alps,compress-certificate`.
    pub fn traits(&self) -> String {
        TRAIT_NAMES
            .iter()
            .filter(|(bit, _)| self.has(*bit))
            .map(|(_, name)| *name)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A fingerprint as logs write it (`ja4` and [`traits`](Self::traits)), for `explain` and
    /// `replay`.
    pub fn from_text(ja4: &str, traits: &str) -> Result<TlsFingerprint, String> {
        let bytes: [u8; 36] = ja4
            .as_bytes()
            .try_into()
            .ok()
            .filter(|b: &[u8; 36]| b.is_ascii() && b[10] == b'_' && b[23] == b'_')
            .ok_or_else(|| {
                format!(
                    "JA4 {ja4:?}: expected 36 characters like t13d1516h2_8daaf6152771_e5627efa2ab1"
                )
            })?;
        let mut bits = 0;
        for name in traits.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let (bit, _) = TRAIT_NAMES
                .iter()
                .find(|(_, known)| *known == name)
                .ok_or_else(|| {
                    let known: Vec<_> = TRAIT_NAMES.iter().map(|(_, n)| *n).collect();
                    format!("TLS trait {name:?}: not one of {}", known.join(", "))
                })?;
            bits |= bit;
        }
        Ok(TlsFingerprint {
            ja4: bytes,
            traits: bits,
        })
    }

    /// Whether a browser of `family` could have sent this ClientHello.
    fn fits(&self, family: BrowserFamily) -> bool {
        match family {
            // Chromium has sent GREASE since 55 and certificate compression since 83.
            BrowserFamily::Chromium => {
                self.has(GREASE) && (self.has(ALPS) || self.has(COMPRESS_CERTIFICATE))
            }
            // NSS never sends GREASE; record_size_limit since Firefox 65.
            BrowserFamily::Firefox => !self.has(GREASE) && self.has(RECORD_SIZE_LIMIT),
            BrowserFamily::Safari => self.has(GREASE),
        }
    }
}

fn traits_of(hello: &ClientHelloFacts<'_>) -> u8 {
    let mut traits = 0;
    if hello
        .ciphers
        .iter()
        .chain(hello.extensions)
        .any(|&v| is_grease(v))
    {
        traits |= GREASE;
    }
    for &extension in hello.extensions {
        traits |= match extension {
            EXT_COMPRESS_CERTIFICATE => COMPRESS_CERTIFICATE,
            EXT_RECORD_SIZE_LIMIT => RECORD_SIZE_LIMIT,
            EXT_DELEGATED_CREDENTIALS => DELEGATED_CREDENTIALS,
            EXT_ENCRYPT_THEN_MAC => ENCRYPT_THEN_MAC,
            e if EXT_ALPS.contains(&e) => ALPS,
            _ => 0,
        };
    }
    traits
}

fn version_code(version: u16) -> &'static [u8; 2] {
    match version {
        0x0304 => b"13",
        0x0303 => b"12",
        0x0302 => b"11",
        0x0301 => b"10",
        0x0300 => b"s3",
        0x0002 => b"s2",
        0xfeff => b"d1",
        0xfefd => b"d2",
        0xfefc => b"d3",
        _ => b"00",
    }
}

fn two_digits(count: usize) -> [u8; 2] {
    let count = count.min(99) as u8;
    [b'0' + count / 10, b'0' + count % 10]
}

/// The first and last characters of the first ALPN value; its hex digits when either is not
/// alphanumeric; `00` without ALPN.
fn alpn_code(alpn: Option<&[u8]>) -> [u8; 2] {
    let Some(alpn) = alpn.filter(|a| !a.is_empty()) else {
        return *b"00";
    };
    let (first, last) = (alpn[0], alpn[alpn.len() - 1]);
    if first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric() {
        [first, last]
    } else {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        [HEX[usize::from(first >> 4)], HEX[usize::from(last & 0x0f)]]
    }
}

fn hex_list(values: &[u16]) -> String {
    let mut text = String::with_capacity(values.len() * 5);
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(&format!("{value:04x}"));
    }
    text
}

/// The first 12 hex digits of the SHA-256 of `text`; `000000000000` for an empty list.
fn truncated_hash(text: &str, empty: bool) -> [u8; 12] {
    let mut out = [b'0'; 12];
    if empty {
        return out;
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, byte) in digest.as_ref()[..6].iter().enumerate() {
        out[2 * i] = HEX[usize::from(byte >> 4)];
        out[2 * i + 1] = HEX[usize::from(byte & 0x0f)];
    }
    out
}

// === impl H2Fingerprint ===

/// The HTTP/2 client connection preface.
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Longest fingerprint text kept (a browser's is about 60 bytes).
const H2_TEXT: usize = 120;

/// The HTTP/2 stack the opening frames point to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum H2Stack {
    /// `:method :authority :scheme :path` with a header-table-size setting.
    Chromium,
    /// `:method :path :authority :scheme`.
    Firefox,
    /// `:method :scheme` first.
    Apple,
    /// `:method :path :scheme :authority` (nghttp2: curl).
    Curl,
    /// `:authority :method :path :scheme` (Go's net/http).
    Go,
    /// Anything else.
    Other,
}

impl H2Stack {
    /// The lower-case name used in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            H2Stack::Chromium => "chromium",
            H2Stack::Firefox => "firefox",
            H2Stack::Apple => "apple",
            H2Stack::Curl => "curl",
            H2Stack::Go => "go",
            H2Stack::Other => "other",
        }
    }
}

/// The Akamai-style HTTP/2 fingerprint of a connection:
/// `1:65536;2:0;4:6291456;6:262144|15663105|0|m,a,s,p`. Small and `Copy`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct H2Fingerprint {
    text: [u8; H2_TEXT],
    len: u8,
    /// Pseudo-header letters in order (`m`, `a`, `s`, `p`), zero-padded.
    pseudo: [u8; 4],
    /// SETTINGS_HEADER_TABLE_SIZE was sent.
    header_table_size: bool,
}

impl fmt::Debug for H2Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("H2Fingerprint")
            .field("akamai", &self.akamai())
            .field("stack", &self.stack())
            .finish()
    }
}

/// What reading the opening frames came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum H2Reading {
    /// More bytes are needed.
    Incomplete,
    /// Not an HTTP/2 opening this reader understands: stop reading.
    Unreadable,
    /// The first HEADERS frame was read.
    Done(H2Fingerprint),
}

impl H2Fingerprint {
    /// Reads the fingerprint from the first bytes a client sent on an HTTP/2 connection
    /// (preface included), up to its first HEADERS frame.
    pub fn read(bytes: &[u8]) -> H2Reading {
        if bytes.len() < H2_PREFACE.len() {
            return if H2_PREFACE.starts_with(bytes) {
                H2Reading::Incomplete
            } else {
                H2Reading::Unreadable
            };
        }
        if !bytes.starts_with(H2_PREFACE) {
            return H2Reading::Unreadable;
        }
        let mut opening = Opening::default();
        let mut rest = &bytes[H2_PREFACE.len()..];
        loop {
            if rest.len() < 9 {
                return H2Reading::Incomplete;
            }
            let length =
                usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
            let (kind, flags) = (rest[3], rest[4]);
            let stream = u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]) & 0x7fff_ffff;
            let Some(payload) = rest.get(9..9 + length) else {
                return H2Reading::Incomplete;
            };
            match kind {
                FRAME_SETTINGS if flags & FLAG_ACK == 0 && opening.settings.is_none() => {
                    opening.settings = Some(settings(payload));
                }
                FRAME_WINDOW_UPDATE if stream == 0 && opening.window_update.is_none() => {
                    opening.window_update = payload
                        .get(..4)
                        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) & 0x7fff_ffff);
                }
                FRAME_PRIORITY if payload.len() == 5 && opening.priorities.len() < 16 => {
                    opening.priorities.push(priority(stream, payload));
                }
                FRAME_HEADERS => {
                    return match header_block(payload, flags) {
                        Some(block) => H2Reading::Done(opening.finish(pseudo_order(block))),
                        None => H2Reading::Unreadable,
                    };
                }
                _ => {}
            }
            rest = &rest[9 + length..];
        }
    }

    /// A fingerprint from its Akamai-style text (as logs write it), for `explain` and `replay`.
    pub fn from_akamai(text: &str) -> Result<H2Fingerprint, String> {
        let parts: Vec<&str> = text.split('|').collect();
        let [settings, _, _, pseudo] = parts[..] else {
            return Err(format!(
                "HTTP/2 fingerprint {text:?}: expected SETTINGS|WINDOW_UPDATE|PRIORITY|pseudo-headers"
            ));
        };
        if text.len() > H2_TEXT {
            return Err(format!(
                "HTTP/2 fingerprint {text:?}: longer than {H2_TEXT} bytes"
            ));
        }
        let mut letters = [0u8; 4];
        for (i, letter) in pseudo.split(',').filter(|l| !l.is_empty()).enumerate() {
            match (letters.get_mut(i), letter) {
                (Some(slot), "m" | "a" | "s" | "p") => *slot = letter.as_bytes()[0],
                _ => {
                    return Err(format!(
                        "HTTP/2 fingerprint {text:?}: pseudo-headers must be up to four of m, a, s, p"
                    ));
                }
            }
        }
        let mut buffer = [0u8; H2_TEXT];
        buffer[..text.len()].copy_from_slice(text.as_bytes());
        Ok(H2Fingerprint {
            text: buffer,
            len: text.len() as u8,
            pseudo: letters,
            header_table_size: settings.split(';').any(|s| s.starts_with("1:")),
        })
    }

    /// The Akamai-style text.
    pub fn akamai(&self) -> &str {
        std::str::from_utf8(&self.text[..usize::from(self.len)]).unwrap_or("")
    }

    /// The stack the frames point to.
    pub fn stack(&self) -> H2Stack {
        match &self.pseudo {
            b"masp" if self.header_table_size => H2Stack::Chromium,
            b"mpas" => H2Stack::Firefox,
            [b'm', b's', ..] => H2Stack::Apple,
            b"mpsa" => H2Stack::Curl,
            b"amps" => H2Stack::Go,
            _ => H2Stack::Other,
        }
    }

    /// Whether a browser of `family` could have opened this connection. A connection whose
    /// pseudo-headers could not be read says nothing.
    fn fits(&self, family: BrowserFamily) -> bool {
        if self.pseudo[0] == 0 {
            return true;
        }
        let stack = self.stack();
        match family {
            BrowserFamily::Chromium => stack == H2Stack::Chromium,
            BrowserFamily::Firefox => stack == H2Stack::Firefox,
            BrowserFamily::Safari => stack == H2Stack::Apple,
        }
    }
}

const FRAME_HEADERS: u8 = 0x1;
const FRAME_PRIORITY: u8 = 0x2;
const FRAME_SETTINGS: u8 = 0x4;
const FRAME_WINDOW_UPDATE: u8 = 0x8;
const FLAG_ACK: u8 = 0x1;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;

/// The frames before the first HEADERS.
#[derive(Default)]
struct Opening {
    settings: Option<Vec<(u16, u32)>>,
    window_update: Option<u32>,
    /// `stream:exclusive:depends-on:weight`.
    priorities: Vec<(u32, u8, u32, u16)>,
}

impl Opening {
    fn finish(self, pseudo: [u8; 4]) -> H2Fingerprint {
        let settings = self.settings.unwrap_or_default();
        let mut text = settings
            .iter()
            .map(|(id, value)| format!("{id}:{value}"))
            .collect::<Vec<_>>()
            .join(";");
        text.push('|');
        match self.window_update {
            Some(increment) => text.push_str(&increment.to_string()),
            None => text.push_str("00"),
        }
        text.push('|');
        if self.priorities.is_empty() {
            text.push('0');
        } else {
            let list: Vec<String> = self
                .priorities
                .iter()
                .map(|(s, e, d, w)| format!("{s}:{e}:{d}:{w}"))
                .collect();
            text.push_str(&list.join(","));
        }
        text.push('|');
        let letters: Vec<String> = pseudo
            .iter()
            .take_while(|&&b| b != 0)
            .map(|&b| char::from(b).to_string())
            .collect();
        text.push_str(&letters.join(","));
        let mut buffer = [0u8; H2_TEXT];
        let len = text.len().min(H2_TEXT);
        buffer[..len].copy_from_slice(&text.as_bytes()[..len]);
        H2Fingerprint {
            text: buffer,
            len: len as u8,
            pseudo,
            header_table_size: settings.iter().any(|&(id, _)| id == 1),
        }
    }
}

fn settings(payload: &[u8]) -> Vec<(u16, u32)> {
    payload
        .chunks_exact(6)
        .take(32)
        .map(|c| {
            (
                u16::from_be_bytes([c[0], c[1]]),
                u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
            )
        })
        .collect()
}

fn priority(stream: u32, payload: &[u8]) -> (u32, u8, u32, u16) {
    let dependency = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
    (
        stream,
        (dependency >> 31) as u8,
        dependency & 0x7fff_ffff,
        u16::from(payload[4]) + 1,
    )
}

/// The header block fragment of a HEADERS frame, without padding and priority fields.
fn header_block(payload: &[u8], flags: u8) -> Option<&[u8]> {
    let mut block = payload;
    let mut padding = 0;
    if flags & FLAG_PADDED != 0 {
        padding = usize::from(*block.first()?);
        block = &block[1..];
    }
    if flags & FLAG_PRIORITY != 0 {
        block = block.get(5..)?;
    }
    block.get(..block.len().checked_sub(padding)?)
}

/// The pseudo-header letters of the connection's first header block, in order. Only static
/// table names are needed: the dynamic table is empty at the first block, and browsers name
/// pseudo-headers by their static index. Stops at the first regular header or at anything it
/// cannot read without a full HPACK decoder.
fn pseudo_order(block: &[u8]) -> [u8; 4] {
    let mut letters = [0u8; 4];
    let mut count = 0;
    let mut rest = block;
    while count < 4 {
        let Some(&first) = rest.first() else { break };
        let name_index = if first & 0x80 != 0 {
            let Some((index, after)) = hpack_int(rest, 7) else {
                break;
            };
            rest = after;
            index
        } else if first & 0xe0 == 0x20 {
            // A dynamic table size update.
            let Some((_, after)) = hpack_int(rest, 5) else {
                break;
            };
            rest = after;
            continue;
        } else {
            let prefix = if first & 0x40 != 0 { 6 } else { 4 };
            let Some((index, after)) = hpack_int(rest, prefix) else {
                break;
            };
            if index == 0 {
                // A literal name: a pseudo-header browsers never send this way.
                break;
            }
            let Some(after) = skip_string(after) else {
                break;
            };
            rest = after;
            index
        };
        let letter = match name_index {
            1 => b'a',
            2 | 3 => b'm',
            4 | 5 => b'p',
            6 | 7 => b's',
            _ => break,
        };
        letters[count] = letter;
        count += 1;
    }
    letters
}

/// An HPACK integer with an `n`-bit prefix, and the bytes after it.
fn hpack_int(bytes: &[u8], n: u32) -> Option<(u64, &[u8])> {
    let mask = (1u16 << n) as u8 - 1;
    let mut value = u64::from(bytes.first()? & mask);
    let mut rest = &bytes[1..];
    if value < u64::from(mask) {
        return Some((value, rest));
    }
    let mut shift = 0;
    loop {
        let byte = *rest.first()?;
        rest = &rest[1..];
        value += u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some((value, rest));
        }
        shift += 7;
        if shift > 28 {
            return None;
        }
    }
}

fn skip_string(bytes: &[u8]) -> Option<&[u8]> {
    let (length, rest) = hpack_int(bytes, 7)?;
    rest.get(usize::try_from(length).ok()?..)
}

// === impl Transport ===

/// What the connection's opening said, put in request extensions by a server that terminates
/// TLS itself. Either part may be missing (HTTP/1.1 has no HTTP/2 fingerprint; a ClientHello
/// that did not parse has no TLS one).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Transport {
    /// The ClientHello's fingerprint.
    pub tls: Option<TlsFingerprint>,
    /// The HTTP/2 opening's fingerprint.
    pub h2: Option<H2Fingerprint>,
}

impl Transport {
    /// The fingerprints as logs write them (`ja4`, `tls_traits`, `h2`): `None` when none is
    /// given, an error naming the bad value otherwise. For `explain` and `replay`.
    pub fn from_text(
        ja4: Option<&str>,
        tls_traits: Option<&str>,
        h2: Option<&str>,
    ) -> Result<Option<Transport>, String> {
        let tls = match (ja4, tls_traits) {
            (Some(ja4), traits) => Some(TlsFingerprint::from_text(ja4, traits.unwrap_or(""))?),
            (None, Some(_)) => return Err("TLS traits given without a JA4 fingerprint".into()),
            (None, None) => None,
        };
        let h2 = h2.map(H2Fingerprint::from_akamai).transpose()?;
        Ok((tls.is_some() || h2.is_some()).then_some(Transport { tls, h2 }))
    }
}

/// The browser family a User-Agent claims, for the transport check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BrowserFamily {
    Chromium,
    Firefox,
    Safari,
}

/// The family a browser User-Agent claims, when a current one: the checks rest on traits
/// each family has had for years, not on version lists. iOS browsers (`CriOS`, `FxiOS`) claim
/// no `Chrome/` or `Firefox/` and run on Apple's stack, so they are read as Safari or not at
/// all.
fn claimed_family(browser: &BrowserUa) -> Option<BrowserFamily> {
    if browser.chrome.is_some_and(|v| v >= 100) {
        Some(BrowserFamily::Chromium)
    } else if browser.firefox.is_some_and(|v| v >= 100) {
        Some(BrowserFamily::Firefox)
    } else if browser.safari.is_some_and(|v| v >= 15) {
        Some(BrowserFamily::Safari)
    } else {
        None
    }
}

/// Whether the transport contradicts the browser the User-Agent claims: a Chrome User-Agent
/// over OpenSSL's ClientHello, a Firefox one with GREASE, a Chrome one opening HTTP/2 the way
/// curl or Go do.
pub fn contradicts(browser: &BrowserUa, transport: &Transport) -> bool {
    let Some(family) = claimed_family(browser) else {
        return false;
    };
    transport.tls.is_some_and(|t| !t.fits(family)) || transport.h2.is_some_and(|h| !h.fits(family))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of FoxIO's JA4 specification (a Chrome ClientHello).
    #[test]
    fn ja4_matches_the_specification_example() {
        let ciphers = [
            0x1a1a, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013,
            0xc014, 0x009c, 0x009d, 0x002f, 0x0035,
        ];
        let extensions = [
            0x0a0a, 0x001b, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002d, 0x000d, 0x0005, 0x0023,
            0x0012, 0x002b, 0xff01, 0x000b, 0x000a, 0x0015,
        ];
        let algorithms = [
            0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
        ];
        let fingerprint = TlsFingerprint::from_hello(&ClientHelloFacts {
            version: 0x0304,
            sni: true,
            ciphers: &ciphers,
            extensions: &extensions,
            signature_algorithms: &algorithms,
            alpn: Some(b"h2"),
        });
        assert_eq!(fingerprint.ja4(), "t13d1516h2_8daaf6152771_e5627efa2ab1");
        assert_eq!(fingerprint.stack(), TlsStack::Chromium);
    }

    #[test]
    fn ja4_edge_cases() {
        let fingerprint = TlsFingerprint::from_hello(&ClientHelloFacts {
            version: 0x0303,
            sni: false,
            ciphers: &[],
            extensions: &[],
            signature_algorithms: &[],
            alpn: None,
        });
        assert_eq!(fingerprint.ja4(), "t12i000000_000000000000_000000000000");
        // A non-alphanumeric ALPN is written as hex digits of its first and last bytes.
        assert_eq!(alpn_code(Some(&[0xab, 0x01, 0xcd])), *b"ad");
        assert_eq!(alpn_code(Some(b"http/1.1")), *b"h1");
        assert!(is_grease(0xfafa) && is_grease(0x0a0a) && !is_grease(0x0a1a));
    }

    fn hello_with(extensions: &[u16], grease: bool) -> TlsFingerprint {
        let ciphers: &[u16] = if grease { &[0x3a3a, 0x1301] } else { &[0x1301] };
        TlsFingerprint::from_hello(&ClientHelloFacts {
            version: 0x0304,
            sni: true,
            ciphers,
            extensions,
            signature_algorithms: &[0x0403],
            alpn: Some(b"h2"),
        })
    }

    fn claim(ua: &str) -> BrowserUa {
        BrowserUa::parse(ua.as_bytes())
    }

    const CHROME: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36";
    const FIREFOX: &str =
        "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:145.0) Gecko/20100101 Firefox/145.0";
    const CHROME_IOS: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/142.0.7444.46 Mobile/15E148 Safari/604.1";

    #[test]
    fn a_chrome_claim_over_openssl_is_a_contradiction() {
        let openssl = hello_with(&[0x0000, 0x000b, 0x000a, 0x0016, 0x0017, 0x000d], false);
        assert_eq!(openssl.stack(), TlsStack::OpenSsl);
        let chromium = hello_with(&[0x0000, 0x001b, 0x44cd, 0x0010], true);
        let nss = hello_with(&[0x0000, 0x001c, 0x0022, 0x0010], false);
        assert_eq!(nss.stack(), TlsStack::Firefox);
        let over = |tls| Transport {
            tls: Some(tls),
            h2: None,
        };
        assert!(contradicts(&claim(CHROME), &over(openssl)));
        assert!(!contradicts(&claim(CHROME), &over(chromium)));
        assert!(contradicts(&claim(FIREFOX), &over(chromium)));
        assert!(contradicts(&claim(FIREFOX), &over(openssl)));
        assert!(!contradicts(&claim(FIREFOX), &over(nss)));
        // Chrome on iOS runs on Apple's stack and says so (CriOS): no claim to contradict.
        assert!(!contradicts(&claim(CHROME_IOS), &over(openssl)));
        // No transport (plain HTTP, a proxy in front): nothing to say.
        assert!(!contradicts(&claim(CHROME), &Transport::default()));
    }

    /// Frames as a client writes them after the preface.
    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let len = payload.len() as u32;
        out.extend_from_slice(&len.to_be_bytes()[1..]);
        out.push(kind);
        out.push(flags);
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    fn settings_payload(pairs: &[(u16, u32)]) -> Vec<u8> {
        pairs
            .iter()
            .flat_map(|(id, v)| id.to_be_bytes().into_iter().chain(v.to_be_bytes()))
            .collect()
    }

    /// Chrome's opening: SETTINGS, WINDOW_UPDATE, then HEADERS naming :method, :authority,
    /// :scheme, :path by static index (with a literal authority value).
    fn chrome_opening() -> Vec<u8> {
        let mut bytes = H2_PREFACE.to_vec();
        bytes.extend(frame(
            FRAME_SETTINGS,
            0,
            0,
            &settings_payload(&[(1, 65536), (2, 0), (4, 6291456), (6, 262144)]),
        ));
        bytes.extend(frame(FRAME_WINDOW_UPDATE, 0, 0, &15663105u32.to_be_bytes()));
        // :method GET (2), :authority literal (name 1) "a.b", :scheme https (7), :path / (4).
        let block = [0x82, 0x41, 0x03, b'a', b'.', b'b', 0x87, 0x84];
        let mut payload = vec![0x80, 0, 0, 0, 0xff];
        payload.extend_from_slice(&block);
        bytes.extend(frame(
            FRAME_HEADERS,
            0x04 | 0x01 | FLAG_PRIORITY,
            1,
            &payload,
        ));
        bytes
    }

    #[test]
    fn h2_fingerprint_of_a_chrome_opening() {
        let bytes = chrome_opening();
        let H2Reading::Done(fingerprint) = H2Fingerprint::read(&bytes) else {
            panic!("the opening was not read");
        };
        assert_eq!(
            fingerprint.akamai(),
            "1:65536;2:0;4:6291456;6:262144|15663105|0|m,a,s,p"
        );
        assert_eq!(fingerprint.stack(), H2Stack::Chromium);
        // Every shorter prefix asks for more bytes, never panics or guesses.
        for end in 0..bytes.len() {
            assert!(
                matches!(H2Fingerprint::read(&bytes[..end]), H2Reading::Incomplete),
                "prefix of {end} bytes"
            );
        }
        assert_eq!(
            H2Fingerprint::read(b"GET / HTTP/1.1\r\n\r\n"),
            H2Reading::Unreadable
        );
    }

    #[test]
    fn h2_curl_opening_contradicts_a_chrome_claim() {
        let mut bytes = H2_PREFACE.to_vec();
        bytes.extend(frame(
            FRAME_SETTINGS,
            0,
            0,
            &settings_payload(&[(3, 100), (4, 10485760), (2, 0)]),
        ));
        bytes.extend(frame(
            FRAME_WINDOW_UPDATE,
            0,
            0,
            &1048510465u32.to_be_bytes(),
        ));
        bytes.extend(frame(FRAME_PRIORITY, 0, 3, &[0, 0, 0, 0, 200]));
        // :method GET, :path /, :scheme https, :authority literal without indexing.
        let block = [0x82, 0x84, 0x87, 0x01, 0x01, b'x'];
        bytes.extend(frame(FRAME_HEADERS, 0x05, 1, &block));
        let H2Reading::Done(fingerprint) = H2Fingerprint::read(&bytes) else {
            panic!("the opening was not read");
        };
        assert_eq!(
            fingerprint.akamai(),
            "3:100;4:10485760;2:0|1048510465|3:0:0:201|m,p,s,a"
        );
        assert_eq!(fingerprint.stack(), H2Stack::Curl);
        let transport = Transport {
            tls: None,
            h2: Some(fingerprint),
        };
        assert!(contradicts(&claim(CHROME), &transport));
        let H2Reading::Done(chrome) = H2Fingerprint::read(&chrome_opening()) else {
            panic!("the opening was not read");
        };
        assert!(!contradicts(
            &claim(CHROME),
            &Transport {
                tls: None,
                h2: Some(chrome)
            }
        ));
    }

    #[test]
    fn fingerprints_round_trip_through_their_text() {
        let tls = hello_with(&[0x0000, 0x001b, 0x44cd, 0x0010], true);
        assert_eq!(tls.traits(), "grease,alps,compress-certificate");
        assert_eq!(TlsFingerprint::from_text(tls.ja4(), &tls.traits()), Ok(tls));
        let err = TlsFingerprint::from_text("t13d", "").unwrap_err();
        assert!(err.contains("t13d"), "{err}");
        let err = TlsFingerprint::from_text(tls.ja4(), "grease,shiny").unwrap_err();
        assert!(err.contains("shiny"), "{err}");
        let H2Reading::Done(h2) = H2Fingerprint::read(&chrome_opening()) else {
            panic!("the opening was not read");
        };
        assert_eq!(H2Fingerprint::from_akamai(h2.akamai()), Ok(h2));
        let err = H2Fingerprint::from_akamai("1:65536|0").unwrap_err();
        assert!(err.contains("1:65536|0"), "{err}");
        assert!(H2Fingerprint::from_akamai("|0|0|m,x").is_err());
    }

    #[test]
    fn hpack_integers() {
        assert_eq!(hpack_int(&[0x0a], 5), Some((10, &[][..])));
        // RFC 7541 C.1.2: 1337 with a 5-bit prefix.
        assert_eq!(hpack_int(&[0x1f, 0x9a, 0x0a], 5), Some((1337, &[][..])));
        assert_eq!(hpack_int(&[0x1f, 0x9a], 5), None);
        assert_eq!(
            hpack_int(&[0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], 5),
            None
        );
    }
}
