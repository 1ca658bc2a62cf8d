//! Streaming XMP stamping of JPEG, PNG and WebP images, and location scrubbing of those and
//! of HEIC/HEIF/AVIF.
//!
//! A [`Stamp`] is compiled once from a [`StampConfig`]: the XMP packet that declares the
//! site's IPTC Data Mining reservation (`plus:DataMining`) is built up front, already framed
//! for each container, so the hot path only splices it in. [`stamp_response`] then wraps an
//! image response: it buffers only the header bytes a format needs, decides, rewrites them,
//! corrects `Content-Length` and `ETag`, and streams the rest of the body through a walker
//! that scrubs, in place, every metadata block that comes later.
//!
//! # The privacy invariant
//!
//! An image that leaves is byte-identical, or a valid image with identical pixels, and
//! never carries its original GPS position (nor, by default, camera and lens serials and
//! owner names). Where each format keeps them, and what is done:
//!
//! - **JPEG**: every Exif `APP1` (GPS pointer in IFD0, IFD1 or the Exif IFD), every XMP and
//!   Extended XMP `APP1`, Photoshop `APP13`; after the first `SOS`, segments between
//!   progressive scans and every image appended after `EOI` (MPF secondary images, a second
//!   JPEG) the same way. Bytes after the last image that are not a JPEG (a trailer, a
//!   motion-photo video) pass until an Exif/TIFF/XMP/QuickTime-location marker appears, and
//!   are zeroed from there.
//! - **PNG**: `eXIf`, XMP `iTXt` and other text chunks before and after `IDAT`; compressed
//!   text and ImageMagick raw profiles holding a location are neutralised (renamed to a
//!   private ancillary chunk and zeroed). Bytes after `IEND` as for JPEG.
//! - **WebP**: every `EXIF` and `XMP ` chunk, flagged or not; bytes after the RIFF end as
//!   for JPEG.
//! - **HEIC/HEIF/AVIF**: the Exif and XMP items found through `meta`/`iinf`/`iloc`, blanked
//!   in place (no offset moves, image items untouched). No XMP is added to them.
//! - **XMP in any container**: every property whose local name starts with `GPS` (any
//!   prefix: `exif:`, `exifEX:`, `drone-dji:Gps…`), IPTC `LocationCreated`/`LocationShown`,
//!   and with serials on the serial and owner properties, attribute or element, blanked
//!   with spaces. A packet holding such a name that cannot be delimited is blanked whole.
//! - **Exif that cannot be walked** (bounds that do not add up): zeroed whole if a reader
//!   could still reach a GPS IFD through it, left as it is if not.
//!
//! # What cannot be understood (the safe default)
//!
//! - A recognised image whose header is malformed, truncated or larger than
//!   `max_header_bytes` gets no XMP and no structural change at all: only the in-place
//!   scrub of its metadata blocks runs. Such a file is byte-identical unless it carries
//!   metadata, and never half-modified (a WebP header is rewritten only once its `VP8X`,
//!   first chunks and bitstream header validate).
//! - A body that ends inside a metadata block has the part that came zeroed.
//! - HEIF/AVIF whose items cannot be located before the body streams past them (`mdat`
//!   before `meta`, items built from items, overlapping items, `meta` over the limit), and
//!   any `image/*` body in a container that carries Exif but that Lenscap does not parse
//!   (TIFF and TIFF-based raw, other ISO-BMFF such as CR3 or JPEG 2000, the JPEG XL
//!   container, Photoshop, Fujifilm raw) are **withheld**: the response becomes a `403`
//!   with a short `text/plain` body, `Cache-Control: no-store`, no `ETag`, marked
//!   [`StampOutcome::Scrubbed`] and [`Withheld`]. [`stamp_bytes`] returns no bytes for them.
//! - Formats with no place a camera writes a position into (GIF, BMP, ICO, SVG, …) pass as
//!   they are. GIF XMP application extensions and SVG metadata are not scanned.
//!
//! The outcome, and so the `ETag`, is decided on the header alone, before the rest of the
//! body is seen; it does not depend on how the body is chunked. A block the header does not
//! announce (an `XMP ` chunk in a WebP whose `VP8X` already has the XMP flag, PNG metadata
//! after `IDAT`, an appended JPEG) is scrubbed all the same when it streams by, even under
//! [`StampOutcome::PassedThrough`]; the response then keeps the inner service's `ETag`.
//! [`stamp_bytes`], which sees the whole image, reports [`StampOutcome::Scrubbed`] then.
//!
//! ```
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Full};
//! use lenscap::stamp::{stamp_response, Stamp, StampConfig, StampOutcome};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let stamp = Arc::new(Stamp::compile(&StampConfig::default()).unwrap());
//! // The smallest JPEG header we accept: SOI, then a start of scan.
//! let jpeg: &[u8] = &[0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x02, 0x00, 0xFF, 0xD9];
//! let response = http::Response::builder()
//!     .header("content-type", "image/jpeg")
//!     .header("content-length", jpeg.len())
//!     .header("etag", "\"v1\"")
//!     .body(Full::new(Bytes::from_static(jpeg)))
//!     .unwrap();
//!
//! let stamped = stamp_response(response, stamp.clone()).await;
//! assert_eq!(stamped.extensions().get::<StampOutcome>(), Some(&StampOutcome::Stamped));
//! assert_ne!(stamped.headers()["etag"], "\"v1\"");
//! let declared: usize = stamped.headers()["content-length"].to_str().unwrap().parse().unwrap();
//! let body = stamped.into_body().collect().await.unwrap().to_bytes();
//! assert_eq!(body.len(), declared);
//! assert!(body.windows(15).any(|w| w == b"plus:DataMining"));
//! # });
//! ```
//!
//! # What is written where
//!
//! - **JPEG**: an `APP1` XMP segment right after `SOI` and the leading run of `APP0` (JFIF)
//!   and Exif `APP1` segments. The header is buffered up to the first `SOS`.
//! - **PNG**: an `iTXt` chunk with keyword `XML:com.adobe.xmp`, uncompressed, right before
//!   the first `IDAT`. Chunks are buffered up to the first `IDAT`.
//! - **WebP**: an `XMP ` chunk appended at the end of the RIFF payload, the `VP8X` XMP flag
//!   set (a simple `VP8 `/`VP8L` file is converted to the extended layout first) and the
//!   RIFF size updated.
//!
//! # Images that already carry XMP
//!
//! Rewriting someone else's XMP is only done in place, never changing its length, so no
//! offset anywhere in the file can move (JPEG MPF offsets, WebP chunk layout, PNG CRCs are
//! recomputed):
//!
//! - if the packet already declares `DataMining` it is left as it is (the image's own
//!   declaration wins, and a stamped image stays stamped once, idempotently);
//! - otherwise `plus:DataMining` is merged as an attribute of the first `rdf:Description`,
//!   taking its room from the packet's trailing padding, only if the packet is writable
//!   (`end="w"`), has enough padding, does not bind the `plus` prefix already and the
//!   configured value is not `DMI-PROHIBITED-SEECONSTRAINT` (whose lang-alt
//!   `plus:OtherConstraints` cannot be an attribute);
//! - otherwise the packet is left alone and only the scrub applies.
//!
//! Copyright, credit and web statement are never merged into an existing packet: the
//! image's own rights data wins. WebP files whose `VP8X` already has the XMP flag get no
//! second packet.
//!
//! # Location and serial scrub
//!
//! See the `exif` submodule: each GPS IFD is removed from the IFD that points at it without
//! moving any other byte, and with `scrub_serials` (the default) the serial numbers and
//! owner and artist names are blanked. Maker notes are not touched.
//!
//! # Caches and conditional requests
//!
//! A stamped `200` gets its strong `ETag` suffixed with [`Stamp::etag_suffix`] (which
//! encodes the config), so stamped and unstamped bytes never share a validator. A layer
//! should call [`Stamp::strip_conditional`] on the request, so the inner service still
//! recognises its own tags, and [`Stamp::mark_etag`] on a resulting `304`. A `HEAD`
//! response has no body to read, so it keeps the unstamped `Content-Length`.
//!
//! # Unsupported (passed through, or left as is)
//!
//! - Anything not recognised passes through byte-identical (see above for what is withheld).
//! - Location text (city names outside IPTC location structures) and maker notes are not
//!   touched; a JPEG Extended XMP property split across two segments is not seen whole.
//! - HEIF/AVIF image sequences: a `moov` box's user data is not scanned.
//! - A WebP whose first chunks validate but whose later chunk sizes do not add up still
//!   gets its XMP flag and tail, decided before that chunk streamed by.
//! - A Range request, a `206`, any status but `200`, and any `Content-Encoding` other than
//!   `identity` pass through untouched (whole-image stamping of ranges belongs to the
//!   layer and the static cache).

mod bmff;
mod body;
mod exif;
mod jpeg;
mod jpeg_walk;
mod png;
mod png_walk;
mod riff_walk;
mod walk;
mod webp;
mod xmp;

use std::collections::VecDeque;
use std::fmt;

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};

pub(crate) use body::content_length;
pub use body::{StampBody, StampFuture, stamp_response};
pub use xmp::find_packet;

use walk::Walker;

/// The IPTC Data Mining vocabulary (the tokens after `http://ns.useplus.org/ldf/vocab/`).
pub const DATA_MINING_VOCABULARY: [&str; 7] = [
    "DMI-UNSPECIFIED",
    "DMI-ALLOWED",
    "DMI-PROHIBITED-AIMLTRAINING",
    "DMI-PROHIBITED-GENAIMLTRAINING",
    "DMI-PROHIBITED-EXCEPTSEARCHENGINEINDEXING",
    "DMI-PROHIBITED",
    "DMI-PROHIBITED-SEECONSTRAINT",
];

/// The base URI of the PLUS Data Mining vocabulary.
pub const DATA_MINING_VOCABULARY_URI: &str = "http://ns.useplus.org/ldf/vocab/";

/// The largest XMP packet that fits a single JPEG `APP1` segment (kept under 65 502 bytes).
pub const MAX_PACKET_BYTES: usize = 65_502;

// === impl StampConfig ===

/// What to write into images and what to scrub from them.
///
/// Every field has a default, so an empty table turns stamping on with the safe defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StampConfig {
    /// Add an XMP packet declaring the data-mining reservation (default `true`).
    pub xmp: bool,
    /// The IPTC Data Mining value, one of [`DATA_MINING_VOCABULARY`] (default
    /// `DMI-PROHIBITED-AIMLTRAINING`). The full vocabulary URI is accepted too.
    pub data_mining: String,
    /// `plus:OtherConstraints`, required with `DMI-PROHIBITED-SEECONSTRAINT`.
    pub other_constraints: Option<String>,
    /// `dc:rights` (a lang-alt, written as `x-default`).
    pub copyright: Option<String>,
    /// `photoshop:Credit`.
    pub credit: Option<String>,
    /// `xmpRights:WebStatement`, an absolute `http(s)` URL.
    pub web_statement: Option<String>,
    /// Remove the GPS IFD from Exif and blank `exif:GPS…` in existing XMP (default `true`).
    pub scrub_gps: bool,
    /// Blank camera and lens serial numbers, camera owner and artist names (default `true`).
    pub scrub_serials: bool,
    /// How many bytes of an image header may be buffered before giving up and passing the
    /// image through untouched (default 1 MiB).
    pub max_header_bytes: usize,
}

impl Default for StampConfig {
    fn default() -> Self {
        StampConfig {
            xmp: true,
            data_mining: "DMI-PROHIBITED-AIMLTRAINING".to_owned(),
            other_constraints: None,
            copyright: None,
            credit: None,
            web_statement: None,
            scrub_gps: true,
            scrub_serials: true,
            max_header_bytes: 1 << 20,
        }
    }
}

// === impl StampError ===

/// A [`StampConfig`] that cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StampError {
    /// `data_mining` is not in the IPTC vocabulary.
    #[error(
        "stamp.data_mining = {0:?} is not an IPTC Data Mining value (expected one of DMI-UNSPECIFIED, DMI-ALLOWED, DMI-PROHIBITED-AIMLTRAINING, DMI-PROHIBITED-GENAIMLTRAINING, DMI-PROHIBITED-EXCEPTSEARCHENGINEINDEXING, DMI-PROHIBITED, DMI-PROHIBITED-SEECONSTRAINT)"
    )]
    UnknownDataMining(String),
    /// `DMI-PROHIBITED-SEECONSTRAINT` without `other_constraints`.
    #[error(
        "stamp.data_mining = \"DMI-PROHIBITED-SEECONSTRAINT\" requires stamp.other_constraints"
    )]
    MissingOtherConstraints,
    /// A text value holds a character XML 1.0 cannot carry, or is empty.
    #[error("stamp.{field} = {value:?} is empty or holds a control character XML cannot carry")]
    InvalidText {
        /// The config key.
        field: &'static str,
        /// The rejected value.
        value: String,
    },
    /// `web_statement` is not an absolute http(s) URL.
    #[error("stamp.web_statement = {0:?} is not an absolute http:// or https:// URL")]
    InvalidWebStatement(String),
    /// `max_header_bytes` is too small to hold any image header.
    #[error("stamp.max_header_bytes = {0} is below the minimum of 64")]
    MaxHeaderTooSmall(usize),
    /// The XMP packet built from the config does not fit a JPEG APP1 segment.
    #[error("the XMP packet built from stamp.* is {0} bytes, over the limit of 65502")]
    PacketTooLarge(usize),
}

// === impl Stamp ===

/// A compiled [`StampConfig`]: the XMP packet, prebuilt per container, and the scrub options.
///
/// Build it once (at startup or reload) and share it behind an `Arc`.
#[derive(Debug, Clone)]
pub struct Stamp {
    pub(crate) xmp: bool,
    pub(crate) packet: Bytes,
    pub(crate) jpeg_segment: Bytes,
    pub(crate) png_chunk: Bytes,
    pub(crate) webp_chunk: Bytes,
    /// ` plus:DataMining="…"` plus its namespace, for merging into an existing packet.
    pub(crate) merge_attrs: Option<Bytes>,
    pub(crate) scrub: exif::ScrubOptions,
    pub(crate) max_header_bytes: usize,
    pub(crate) etag_suffix: String,
}

impl Stamp {
    /// Validates `config` and prebuilds everything the hot path writes.
    pub fn compile(config: &StampConfig) -> Result<Stamp, StampError> {
        if config.max_header_bytes < 64 {
            return Err(StampError::MaxHeaderTooSmall(config.max_header_bytes));
        }
        let packet = xmp::build_packet(config)?;
        if packet.len() > MAX_PACKET_BYTES {
            return Err(StampError::PacketTooLarge(packet.len()));
        }
        let token = xmp::data_mining_token(&config.data_mining)?;
        let merge_attrs = (token != "DMI-PROHIBITED-SEECONSTRAINT").then(|| {
            Bytes::from(format!(
                " xmlns:plus=\"{}\" plus:DataMining=\"{DATA_MINING_VOCABULARY_URI}{token}\"",
                xmp::PLUS_NS
            ))
        });
        let jpeg_segment = jpeg::xmp_segment(&packet);
        let png_chunk = png::xmp_chunk(&packet);
        let webp_chunk = webp::xmp_chunk(&packet);
        let scrub = exif::ScrubOptions {
            gps: config.scrub_gps,
            serials: config.scrub_serials,
        };
        let etag_suffix = format!(
            "-lc{:08x}",
            // 32 bits of the fingerprint are plenty to tell stamp configs apart.
            crate::fingerprint::fnv1a64(&[
                &packet[..],
                &[
                    config.xmp as u8,
                    config.scrub_gps as u8,
                    config.scrub_serials as u8
                ],
            ]) as u32
        );
        Ok(Stamp {
            xmp: config.xmp,
            packet: Bytes::from(packet),
            jpeg_segment,
            png_chunk,
            webp_chunk,
            merge_attrs,
            scrub,
            max_header_bytes: config.max_header_bytes,
            etag_suffix,
        })
    }

    /// The XMP packet this stamp writes (UTF-8, `<?xpacket …?>` wrapped).
    pub fn packet(&self) -> &[u8] {
        &self.packet
    }

    /// The suffix added inside a strong `ETag` of a stamped response, e.g. `-lc1a2b3c4d`.
    ///
    /// It encodes the packet and the scrub options, so a config change changes the tag.
    pub fn etag_suffix(&self) -> &str {
        &self.etag_suffix
    }

    /// Removes this stamp's ETag suffix from `If-None-Match` and `If-Match` (not `If-Range`),
    /// so the inner service can match the tags it issued. Returns whether any tag had it:
    /// then a `304` from the inner service should go back through [`Stamp::mark_etag`].
    pub fn strip_conditional(&self, headers: &mut http::HeaderMap) -> bool {
        use http::header::{IF_MATCH, IF_NONE_MATCH};
        let needle = format!("{}\"", self.etag_suffix);
        let mut found = false;
        // If-Range is left alone: a stamped tag must not match the inner service's tag there,
        // or a resumed download would splice unstamped bytes onto stamped ones. Unmatched, the
        // inner service answers with the whole (stamped) image instead.
        for name in [IF_NONE_MATCH, IF_MATCH] {
            let values: Vec<http::HeaderValue> = headers.get_all(&name).iter().cloned().collect();
            if !values.iter().any(|v| {
                v.as_bytes()
                    .windows(needle.len())
                    .any(|w| w == needle.as_bytes())
            }) {
                continue;
            }
            headers.remove(&name);
            for v in values {
                let stripped = v
                    .to_str()
                    .ok()
                    .map(|s| s.replace(&needle, "\""))
                    .and_then(|s| http::HeaderValue::from_str(&s).ok())
                    .unwrap_or(v);
                headers.append(&name, stripped);
            }
            found = true;
        }
        found
    }

    /// Adds this stamp's suffix to a strong `ETag` (as on a stamped `200`), for a `304`
    /// answering a request whose tag [`Stamp::strip_conditional`] stripped.
    pub fn mark_etag(&self, headers: &mut http::HeaderMap) {
        if let Some(tag) = headers.get(http::header::ETAG)
            && let Some(new) = body::stamped_etag(tag, &self.etag_suffix)
        {
            headers.insert(http::header::ETAG, new);
        }
    }

    /// Whether this stamp changes anything (XMP or a scrub is on).
    pub fn is_enabled(&self) -> bool {
        self.enabled()
    }

    fn enabled(&self) -> bool {
        self.xmp || self.scrub.gps || self.scrub.serials
    }
}

// === impl Prestamped ===

/// On a response: its body and `Content-Length`/`ETag` are already the output of
/// [`stamp_response`] (the static server's cache of stamped images; a [`StampOutcome`] is in
/// the extensions too). The layer passes such an answer on without stamping it again.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Prestamped;

// === impl Format ===

/// An image container the stamper understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// JPEG (JFIF or Exif).
    Jpeg,
    /// PNG (and APNG).
    Png,
    /// WebP (simple lossy, lossless, or extended).
    Webp,
    /// HEIF, HEIC and their sequences (ISO-BMFF): scrubbed, never stamped.
    Heif,
    /// AVIF (ISO-BMFF): scrubbed, never stamped.
    Avif,
}

impl Format {
    /// Recognises a format from the first bytes of a file (3 for JPEG, 8 for PNG, 12 for
    /// WebP). Returns `None` when there are too few bytes or they match nothing.
    pub fn sniff(head: &[u8]) -> Option<Format> {
        if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(Format::Jpeg)
        } else if head.starts_with(png::SIGNATURE) {
            Some(Format::Png)
        } else if head.len() >= 12 && &head[0..4] == b"RIFF" && &head[8..12] == b"WEBP" {
            Some(Format::Webp)
        } else {
            bmff::sniff(head)
        }
    }

    /// The candidate format for a `Content-Type` value (parameters and case ignored).
    pub fn from_content_type(content_type: &str) -> Option<Format> {
        let essence = content_type.split(';').next().unwrap_or("").trim();
        if essence.eq_ignore_ascii_case("image/jpeg")
            || essence.eq_ignore_ascii_case("image/jpg")
            || essence.eq_ignore_ascii_case("image/pjpeg")
        {
            Some(Format::Jpeg)
        } else if essence.eq_ignore_ascii_case("image/png")
            || essence.eq_ignore_ascii_case("image/apng")
        {
            Some(Format::Png)
        } else if essence.eq_ignore_ascii_case("image/webp") {
            Some(Format::Webp)
        } else if [
            "image/heic",
            "image/heif",
            "image/heic-sequence",
            "image/heif-sequence",
        ]
        .iter()
        .any(|t| essence.eq_ignore_ascii_case(t))
        {
            Some(Format::Heif)
        } else if essence.eq_ignore_ascii_case("image/avif")
            || essence.eq_ignore_ascii_case("image/avif-sequence")
        {
            Some(Format::Avif)
        } else {
            None
        }
    }

    /// The candidate format for a URL path or file name, by extension (case ignored).
    pub fn from_path(path: &str) -> Option<Format> {
        let path = path.split(['?', '#']).next().unwrap_or("");
        let name = path.rsplit('/').next().unwrap_or("");
        let (_, ext) = name.rsplit_once('.')?;
        match ext.to_ascii_lowercase().as_str() {
            "jpg" | "jpeg" | "jpe" | "jfif" => Some(Format::Jpeg),
            "png" | "apng" => Some(Format::Png),
            "webp" => Some(Format::Webp),
            "heic" | "heif" | "hif" | "heics" | "heifs" => Some(Format::Heif),
            "avif" | "avifs" => Some(Format::Avif),
            _ => None,
        }
    }
}

// === impl StampOutcome ===

/// What happened to one response; put on the response extensions for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StampOutcome {
    /// XMP was added or merged; no location or serial data was removed.
    Stamped,
    /// Location or serial data was removed (or, for WebP, the scrub was armed); no XMP added.
    Scrubbed,
    /// Both of the above.
    Both,
    /// The body was passed through byte-identical.
    PassedThrough(PassReason),
}

/// Why a response was passed through untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PassReason {
    /// The config turns off both stamping and scrubbing.
    Disabled,
    /// The status is not `200 OK`.
    Status,
    /// A `Content-Encoding` other than `identity` is present.
    ContentEncoding,
    /// A `Content-Range` is present.
    ContentRange,
    /// The `Content-Type` is not an image format we stamp.
    ContentType,
    /// The bytes are not JPEG, PNG or WebP.
    UnknownFormat,
    /// The header is malformed or its bounds do not add up.
    Malformed,
    /// The body ended (or failed) before the header was complete.
    Truncated,
    /// The header is larger than `max_header_bytes`.
    HeaderTooLarge,
    /// The image already carries what we would add, and there is nothing to scrub.
    NothingToDo,
}

impl fmt::Display for PassReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PassReason::Disabled => "disabled",
            PassReason::Status => "status",
            PassReason::ContentEncoding => "content-encoding",
            PassReason::ContentRange => "content-range",
            PassReason::ContentType => "content-type",
            PassReason::UnknownFormat => "unknown-format",
            PassReason::Malformed => "malformed",
            PassReason::Truncated => "truncated",
            PassReason::HeaderTooLarge => "header-too-large",
            PassReason::NothingToDo => "nothing-to-do",
        })
    }
}

impl StampOutcome {
    pub(crate) fn from_flags(stamped: bool, scrubbed: bool) -> StampOutcome {
        match (stamped, scrubbed) {
            (true, true) => StampOutcome::Both,
            (true, false) => StampOutcome::Stamped,
            (false, true) => StampOutcome::Scrubbed,
            (false, false) => StampOutcome::PassedThrough(PassReason::NothingToDo),
        }
    }

    /// Whether the output bytes may differ from the input.
    pub fn is_modified(&self) -> bool {
        !matches!(self, StampOutcome::PassedThrough(_))
    }
}

// === impl Stamper ===

/// One step of a format's header parser, run over everything buffered so far.
#[derive(Debug)]
pub(crate) enum Step {
    /// Call again once at least this many bytes are buffered in one piece.
    NeedMore(usize),
    /// Call again once at least this many bytes are held in all; the parser reads past its
    /// contiguous prefix only through [`Held`].
    NeedBytes(usize),
    /// Pass the whole image through untouched.
    Pass(PassReason),
    /// Rewrite the header.
    Plan(Plan),
    /// Serve nothing of this image: it may carry a location we cannot remove.
    Withhold,
}

/// A [`Step`] that is not a plan, small enough to be an `Err`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Halt {
    NeedMore(usize),
    NeedBytes(usize),
    Pass(PassReason),
    Withhold,
}

impl From<Halt> for Step {
    fn from(halt: Halt) -> Step {
        match halt {
            Halt::NeedMore(n) => Step::NeedMore(n),
            Halt::NeedBytes(n) => Step::NeedBytes(n),
            Halt::Pass(reason) => Step::Pass(reason),
            Halt::Withhold => Step::Withhold,
        }
    }
}

/// A header rewrite: original bytes `[0, consumed)` become `head`; the rest of the stream
/// passes through, or through `walker` when one is given.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) consumed: usize,
    pub(crate) head: Head,
    /// Bytes the walker appends (the WebP XMP chunk), counted in `added`.
    pub(crate) added: u64,
    pub(crate) walker: Option<Walker>,
    pub(crate) stamped: bool,
    pub(crate) scrubbed: bool,
}

/// What the original bytes `[0, consumed)` of a [`Plan`] become.
#[derive(Debug)]
pub(crate) enum Head {
    /// New bytes: the header was rewritten.
    New(Vec<u8>),
    /// The original bytes, unchanged, with `bytes` put in at offset `at`: sent as slices of
    /// the input around the prebuilt stamp, nothing copied.
    Insert { at: usize, bytes: Bytes },
}

impl From<Vec<u8>> for Head {
    fn from(bytes: Vec<u8>) -> Head {
        Head::New(bytes)
    }
}

impl Head {
    /// How many bytes the head is, given the `consumed` original bytes it stands for.
    fn len(&self, consumed: usize) -> usize {
        match self {
            Head::New(bytes) => bytes.len(),
            Head::Insert { bytes, .. } => consumed + bytes.len(),
        }
    }

    /// Appends the head's pieces to `out`; `all[..consumed]` are the original bytes.
    fn emit(self, all: &Bytes, consumed: usize, out: &mut Pieces) {
        match self {
            Head::New(bytes) => out.push_back(Bytes::from(bytes)),
            Head::Insert { at, bytes } => {
                if at > 0 {
                    out.push_back(all.slice(..at));
                }
                out.push_back(bytes);
                if at < consumed {
                    out.push_back(all.slice(at..consumed));
                }
            }
        }
    }
}

/// Bytes to send, in order. Most often one piece (the first frame passed through, or a new
/// header), held apart from the queue so that passing an image through allocates nothing.
#[derive(Debug, Default)]
pub(crate) struct Pieces {
    first: Option<Bytes>,
    rest: VecDeque<Bytes>,
}

impl Pieces {
    /// `first` (when not empty), then `rest`.
    fn of(first: Bytes, rest: Vec<Bytes>) -> Pieces {
        let mut pieces = Pieces {
            first: None,
            rest: VecDeque::from(rest),
        };
        if !first.is_empty() {
            pieces.first = Some(first);
        }
        pieces
    }

    /// No pieces yet, with room for `n` after the first.
    fn with_capacity(n: usize) -> Pieces {
        Pieces {
            first: None,
            rest: VecDeque::with_capacity(n),
        }
    }

    /// One piece.
    pub(crate) fn one(bytes: Bytes) -> Pieces {
        Pieces {
            first: Some(bytes),
            rest: VecDeque::new(),
        }
    }

    /// Adds `bytes` after the others.
    pub(crate) fn push_back(&mut self, bytes: Bytes) {
        if self.first.is_none() && self.rest.is_empty() {
            self.first = Some(bytes);
        } else {
            self.rest.push_back(bytes);
        }
    }

    /// Takes the first piece.
    pub(crate) fn pop_front(&mut self) -> Option<Bytes> {
        self.first.take().or_else(|| self.rest.pop_front())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.first.is_none() && self.rest.is_empty()
    }

    /// The pieces, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Bytes> {
        self.first.iter().chain(&self.rest)
    }
}

impl Extend<Bytes> for Pieces {
    fn extend<I: IntoIterator<Item = Bytes>>(&mut self, pieces: I) {
        for bytes in pieces {
            self.push_back(bytes);
        }
    }
}

/// What the stamper decided once the header was read.
#[derive(Debug)]
pub(crate) struct Decision {
    /// Bytes to send first (the rewritten header and whatever else was buffered).
    pub(crate) head: Pieces,
    /// How many bytes the output has beyond the input.
    pub(crate) added: u64,
    /// The rest of the stream goes through this, if any.
    pub(crate) walker: Option<Walker>,
    pub(crate) outcome: StampOutcome,
    /// The image must not be served at all (see [`Withheld`]).
    pub(crate) withheld: bool,
}

/// On a response (with [`StampOutcome::Scrubbed`]): the image was not served, because it
/// may carry a location Lenscap cannot remove. The response is a `403` with a short
/// `text/plain` explanation instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Withheld;

/// The bytes a parser sees: a contiguous prefix, then frames held as they came.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Held<'a> {
    pub(crate) prefix: &'a [u8],
    pub(crate) later: &'a [Bytes],
}

impl Held<'_> {
    /// How many bytes are held in all.
    pub(crate) fn len(&self) -> usize {
        self.prefix.len() + self.later.iter().map(Bytes::len).sum::<usize>()
    }

    /// The little-endian `u32` at `at`, wherever its bytes lie.
    pub(crate) fn le32(&self, at: usize) -> Option<u32> {
        if let Some(v) = read::le32(self.prefix, at) {
            return Some(v);
        }
        let mut bytes = [0u8; 4];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = self.byte(at.checked_add(i)?)?;
        }
        Some(u32::from_le_bytes(bytes))
    }

    fn byte(&self, mut at: usize) -> Option<u8> {
        if let Some(b) = self.prefix.get(at) {
            return Some(*b);
        }
        at -= self.prefix.len();
        for frame in self.later {
            match frame.get(at) {
                Some(b) => return Some(*b),
                None => at -= frame.len(),
            }
        }
        None
    }
}

/// The push-based front of the stamper: feed it body chunks until it decides.
///
/// Bytes a header parser reads as one slice are held contiguous (`buf`, or the first frame
/// itself when it holds enough); bytes a parser only needs counted and read here and there
/// ([`Step::NeedBytes`]: a small WebP's chunk layout) are kept as the frames they came in,
/// not copied.
#[derive(Debug)]
pub(crate) struct Stamper {
    expected_len: Option<u64>,
    buf: BytesMut,
    /// Set once a parser asked for [`Step::NeedBytes`]: the contiguous prefix it parsed.
    prefix: Option<Bytes>,
    /// Frames after `prefix`, as they came.
    later: Vec<Bytes>,
    later_len: usize,
    need: usize,
}

impl Stamper {
    pub(crate) fn new(expected_len: Option<u64>) -> Self {
        Stamper {
            expected_len,
            buf: BytesMut::new(),
            prefix: None,
            later: Vec::new(),
            later_len: 0,
            need: 1,
        }
    }

    /// The inner response's `Content-Length`, read once when the stamper was made.
    pub(crate) fn expected_len(&self) -> Option<u64> {
        self.expected_len
    }

    /// Feeds one chunk; returns the decision once there is one.
    pub(crate) fn push(&mut self, stamp: &Stamp, chunk: Bytes) -> Option<Decision> {
        if chunk.is_empty() {
            return None;
        }
        if let Some(prefix) = self.prefix.clone() {
            self.later_len += chunk.len();
            self.later.push(chunk);
            if prefix.len() + self.later_len < self.need {
                return self.check_limit(stamp);
            }
            return self.step_loose(stamp, prefix);
        }
        if self.buf.is_empty() && chunk.len() >= self.need {
            // Common case: the first frame holds the whole header; parse it without a copy.
            match self.step(stamp, &chunk, &[]) {
                Step::NeedMore(n) => self.need = n,
                Step::NeedBytes(n) => return self.go_loose(stamp, chunk, n),
                step => return Some(decide_on(step, chunk, Vec::new(), stamp)),
            }
            self.buf.extend_from_slice(&chunk);
            return self.check_limit(stamp);
        }
        self.buf.extend_from_slice(&chunk);
        if self.buf.len() < self.need {
            return self.check_limit(stamp);
        }
        match self.step(stamp, &self.buf, &[]) {
            Step::NeedMore(n) => {
                self.need = n;
                self.check_limit(stamp)
            }
            Step::NeedBytes(n) => {
                let prefix = std::mem::take(&mut self.buf).freeze();
                self.go_loose(stamp, prefix, n)
            }
            step => {
                let all = std::mem::take(&mut self.buf).freeze();
                Some(decide_on(step, all, Vec::new(), stamp))
            }
        }
    }

    /// From now on frames are kept as they come, until `need` bytes are held in all.
    fn go_loose(&mut self, stamp: &Stamp, prefix: Bytes, need: usize) -> Option<Decision> {
        // Frames of about this size follow until `need` bytes are held: room for them at
        // once (bounded, since a frame may be one byte).
        let frames = need
            .saturating_sub(prefix.len())
            .div_ceil(prefix.len().max(1));
        self.later.reserve(frames.min(64));
        self.need = need;
        self.prefix = Some(prefix);
        self.check_limit(stamp)
    }

    /// Runs the parser again over the prefix and the later frames.
    fn step_loose(&mut self, stamp: &Stamp, prefix: Bytes) -> Option<Decision> {
        match self.step(stamp, &prefix, &self.later) {
            Step::NeedBytes(n) => {
                self.need = n;
                self.check_limit(stamp)
            }
            Step::NeedMore(n) => {
                // The parser wants more of it in one piece after all: join what is held.
                self.prefix = None;
                self.buf.extend_from_slice(&prefix);
                for frame in std::mem::take(&mut self.later) {
                    self.buf.extend_from_slice(&frame);
                }
                self.later_len = 0;
                self.need = n;
                self.check_limit(stamp)
            }
            step => {
                self.prefix = None;
                self.later_len = 0;
                let later = std::mem::take(&mut self.later);
                Some(decide_on(step, prefix, later, stamp))
            }
        }
    }

    /// The body ended before a decision: what was buffered is all there is. Metadata in it
    /// is scrubbed (a partial block zeroed); otherwise it passes as it was.
    pub(crate) fn finish(&mut self, stamp: &Stamp) -> Decision {
        let (all, later) = self.take_held();
        let reason = if all.len() >= 12 && Format::sniff(&all).is_none() {
            PassReason::UnknownFormat
        } else {
            PassReason::Truncated
        };
        let mut decision = decide_on(Step::Pass(reason), all, later, stamp);
        if let Some(mut walker) = decision.walker.take() {
            walker.finish(&mut decision.head);
            if walker.changed() && !decision.outcome.is_modified() {
                decision.outcome = StampOutcome::Scrubbed;
            }
        }
        decision
    }

    /// Everything held: the contiguous part and the frames after it.
    fn take_held(&mut self) -> (Bytes, Vec<Bytes>) {
        self.later_len = 0;
        match self.prefix.take() {
            Some(prefix) => (prefix, std::mem::take(&mut self.later)),
            None => (std::mem::take(&mut self.buf).freeze(), Vec::new()),
        }
    }

    fn held_len(&self) -> usize {
        self.prefix.as_ref().map_or(self.buf.len(), |p| p.len()) + self.later_len
    }

    fn check_limit(&mut self, stamp: &Stamp) -> Option<Decision> {
        if self.need > stamp.max_header_bytes || self.held_len() > stamp.max_header_bytes {
            let (all, later) = self.take_held();
            Some(decide_on(
                Step::Pass(PassReason::HeaderTooLarge),
                all,
                later,
                stamp,
            ))
        } else {
            None
        }
    }

    fn step(&self, stamp: &Stamp, data: &[u8], later: &[Bytes]) -> Step {
        if data.len() < 16 && !data.starts_with(&[0xFF, 0xD8, 0xFF]) {
            // Sixteen bytes sniff any format; until then, keep going while a magic still fits.
            let fits = |magic: &[u8]| {
                let n = data.len().min(magic.len());
                data[..n] == magic[..n]
            };
            // An ISO-BMFF file opens with a small box size, then `ftyp`.
            let ftyp =
                data.iter().take(3).all(|b| *b == 0) && (data.len() < 8 || &data[4..8] == b"ftyp");
            if fits(&[0xFF, 0xD8, 0xFF]) || fits(png::SIGNATURE) || fits(b"RIFF") || ftyp {
                return Step::NeedMore(16);
            }
            return unknown(data);
        }
        match Format::sniff(data) {
            Some(Format::Jpeg) => jpeg::plan(data, stamp),
            Some(Format::Png) => png::plan(data, stamp),
            Some(Format::Webp) => webp::plan(
                &Held {
                    prefix: data,
                    later,
                },
                stamp,
                self.expected_len,
            ),
            Some(Format::Heif | Format::Avif) => bmff::plan(data, stamp, self.expected_len),
            None => unknown(data),
        }
    }
}

/// Containers we do not parse but whose files carry Exif or XMP as a rule: TIFF and the
/// TIFF-based raw formats, other ISO-BMFF files (CR3, JPEG 2000 family, video), JPEG XL's
/// container, Photoshop, Fujifilm raw. Their images are withheld, everything else passes.
fn unknown(data: &[u8]) -> Step {
    let metadata_container = data.starts_with(b"II*\0")
        || data.starts_with(b"MM\0*")
        || data.starts_with(b"IIRO")
        || data.starts_with(b"IIU\0")
        || data.starts_with(b"8BPS")
        || data.starts_with(b"FUJIFILMCCD-RAW")
        || data.get(4..8) == Some(b"ftyp")
        || data.starts_with(b"\0\0\0\x0cJXL \r\n\x87\n")
        || data.starts_with(b"\0\0\0\x0cjP  \r\n\x87\n");
    if metadata_container {
        Step::Withhold
    } else {
        Step::Pass(PassReason::UnknownFormat)
    }
}

/// The scrub-only plan for a recognised image whose header could not be used (malformed,
/// truncated, too large): nothing structural changes, metadata is scrubbed in place.
fn salvage(all: &[u8], stamp: &Stamp, reason: PassReason) -> Option<Step> {
    match Format::sniff(all)? {
        Format::Jpeg => jpeg::scrub_only(stamp).map(Step::Plan),
        Format::Png => png::scrub_only(stamp).map(Step::Plan),
        Format::Webp => webp::scrub_only(all, stamp).map(Step::Plan),
        Format::Heif | Format::Avif if !stamp.scrub.any() => None,
        // A truncated file is all here: zero it from the first metadata marker on.
        Format::Heif | Format::Avif if reason == PassReason::Truncated => {
            let at = walk::first_marker(all)?;
            let mut head = all.to_vec();
            head[at..].fill(0);
            Some(Step::Plan(Plan {
                consumed: all.len(),
                head: head.into(),
                added: 0,
                walker: None,
                stamped: false,
                scrubbed: true,
            }))
        }
        // The rest of the file is not here: its items cannot be found.
        Format::Heif | Format::Avif => Some(Step::Withhold),
    }
}

/// Decides on `all` (the contiguous bytes the parser read) and `later` (frames held after
/// them, not copied).
fn decide_on(step: Step, all: Bytes, later: Vec<Bytes>, stamp: &Stamp) -> Decision {
    let (step, fallback) = match step {
        Step::Pass(
            reason @ (PassReason::Malformed | PassReason::Truncated | PassReason::HeaderTooLarge),
        ) => match salvage(&all, stamp, reason) {
            Some(step) => (step, reason),
            None => return pass(all, later, reason),
        },
        Step::NeedMore(_) | Step::NeedBytes(_) => {
            return pass(all, later, PassReason::Truncated);
        }
        Step::Pass(reason) => return pass(all, later, reason),
        step => (step, PassReason::NothingToDo),
    };
    let plan = match step {
        Step::Plan(plan) => plan,
        Step::Withhold => {
            return Decision {
                head: Pieces::default(),
                added: 0,
                walker: None,
                outcome: StampOutcome::Scrubbed,
                withheld: true,
            };
        }
        Step::NeedMore(_) | Step::NeedBytes(_) | Step::Pass(_) => {
            return pass(all, later, fallback);
        }
    };
    if !plan.stamped && !plan.scrubbed && plan.walker.is_none() {
        return pass(all, later, fallback);
    }
    let in_bounds = match &plan.head {
        Head::New(_) => plan.consumed <= all.len(),
        Head::Insert { at, .. } => *at <= plan.consumed && plan.consumed <= all.len(),
    };
    if !in_bounds {
        return pass(all, later, PassReason::Malformed);
    }
    let rest = all.slice(plan.consumed..);
    let head_len = plan.head.len(plan.consumed) as u64;
    let added = (head_len + plan.added).saturating_sub(plan.consumed as u64);
    // The outcome (and so the ETag) follows from the header alone: what the walker finds
    // later, even within this first buffer, must not make it depend on the chunking.
    let outcome = match StampOutcome::from_flags(plan.stamped, plan.scrubbed) {
        StampOutcome::PassedThrough(_) => StampOutcome::PassedThrough(fallback),
        outcome => outcome,
    };
    let mut walker = plan.walker;
    // Room for the head's pieces, what the walker makes of them and every held frame,
    // allocated once.
    let mut head = Pieces::with_capacity(later.len() + 4);
    plan.head.emit(&all, plan.consumed, &mut head);
    if outcome.is_modified() {
        feed(walker.as_mut(), rest, later, &mut head);
    } else {
        feed(walker.as_mut(), rest, later.iter().cloned(), &mut head);
        if walker
            .as_ref()
            .is_none_or(|w| w.held() == 0 && !w.changed())
        {
            // Nothing changed and nothing is held: the buffered bytes go out as they came.
            head = held(all, later);
        }
    }
    Decision {
        head,
        added,
        walker,
        outcome,
        withheld: false,
    }
}

/// Sends the rest of the parsed bytes and the frames held after them through `walker`, or
/// on as they are without one.
fn feed(
    walker: Option<&mut Walker>,
    rest: Bytes,
    later: impl IntoIterator<Item = Bytes>,
    head: &mut Pieces,
) {
    match walker {
        Some(w) => {
            w.push(rest, head);
            for frame in later {
                w.push(frame, head);
            }
        }
        None => {
            if !rest.is_empty() {
                head.push_back(rest);
            }
            head.extend(later);
        }
    }
}

/// The held bytes, in order, without an empty first piece (no allocation for one piece).
fn held(all: Bytes, later: Vec<Bytes>) -> Pieces {
    Pieces::of(all, later)
}

fn pass(all: Bytes, later: Vec<Bytes>, reason: PassReason) -> Decision {
    Decision {
        head: held(all, later),
        added: 0,
        walker: None,
        outcome: StampOutcome::PassedThrough(reason),
        withheld: false,
    }
}

/// Stamps a whole in-memory image; returns the output and what happened.
///
/// The same code path as [`stamp_response`], for callers that already hold the bytes
/// (static file caches, tools).
pub fn stamp_bytes(stamp: &Stamp, input: &[u8]) -> (Vec<u8>, StampOutcome) {
    if !stamp.enabled() {
        return (
            input.to_vec(),
            StampOutcome::PassedThrough(PassReason::Disabled),
        );
    }
    let mut stamper = Stamper::new(Some(input.len() as u64));
    let decision = stamper
        .push(stamp, Bytes::copy_from_slice(input))
        .unwrap_or_else(|| stamper.finish(stamp));
    if decision.withheld {
        return (Vec::new(), decision.outcome);
    }
    let mut outcome = decision.outcome;
    let mut out = Vec::with_capacity(input.len() + decision.added as usize);
    for b in decision.head.iter() {
        out.extend_from_slice(b);
    }
    if let Some(mut walker) = decision.walker {
        let mut tail = Vec::new();
        walker.finish(&mut tail);
        for b in &tail {
            out.extend_from_slice(b);
        }
        // Here the whole image was seen: a late scrub makes the outcome say so.
        if walker.changed() && !outcome.is_modified() {
            outcome = StampOutcome::Scrubbed;
        }
    }
    (out, outcome)
}

/// Bounds-checked big-endian and little-endian reads shared by the format parsers.
pub(crate) mod read {
    pub(crate) fn be16(b: &[u8], at: usize) -> Option<u16> {
        Some(u16::from_be_bytes(
            b.get(at..at.checked_add(2)?)?.try_into().ok()?,
        ))
    }
    pub(crate) fn be32(b: &[u8], at: usize) -> Option<u32> {
        Some(u32::from_be_bytes(
            b.get(at..at.checked_add(4)?)?.try_into().ok()?,
        ))
    }
    pub(crate) fn le16(b: &[u8], at: usize) -> Option<u16> {
        Some(u16::from_le_bytes(
            b.get(at..at.checked_add(2)?)?.try_into().ok()?,
        ))
    }
    pub(crate) fn le32(b: &[u8], at: usize) -> Option<u32> {
        Some(u32::from_le_bytes(
            b.get(at..at.checked_add(4)?)?.try_into().ok()?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_compiles_and_names_bad_values() {
        let stamp = Stamp::compile(&StampConfig::default()).unwrap();
        assert!(stamp.etag_suffix().starts_with("-lc"));
        let bad = StampConfig {
            data_mining: "DMI-NOPE".into(),
            ..StampConfig::default()
        };
        let err = Stamp::compile(&bad).unwrap_err();
        assert!(err.to_string().contains("DMI-NOPE"), "{err}");
        let see = StampConfig {
            data_mining: "DMI-PROHIBITED-SEECONSTRAINT".into(),
            ..StampConfig::default()
        };
        assert_eq!(
            Stamp::compile(&see).unwrap_err(),
            StampError::MissingOtherConstraints
        );
        let ctl = StampConfig {
            credit: Some("a\u{1}b".into()),
            ..StampConfig::default()
        };
        assert!(
            Stamp::compile(&ctl)
                .unwrap_err()
                .to_string()
                .contains("stamp.credit")
        );
        let url = StampConfig {
            web_statement: Some("example.com/terms".into()),
            ..StampConfig::default()
        };
        assert!(matches!(
            Stamp::compile(&url),
            Err(StampError::InvalidWebStatement(_))
        ));
    }

    #[test]
    fn etag_suffix_tracks_config() {
        let a = Stamp::compile(&StampConfig::default()).unwrap();
        let b = Stamp::compile(&StampConfig {
            scrub_serials: false,
            ..StampConfig::default()
        })
        .unwrap();
        assert_ne!(a.etag_suffix(), b.etag_suffix());
    }

    #[test]
    fn conditional_tags_round_trip() {
        let stamp = Stamp::compile(&StampConfig::default()).unwrap();
        let mut req = http::HeaderMap::new();
        let tag = format!("\"v1{}\", W/\"v0\"", stamp.etag_suffix());
        req.insert(http::header::IF_NONE_MATCH, tag.parse().unwrap());
        assert!(stamp.strip_conditional(&mut req));
        assert_eq!(req[http::header::IF_NONE_MATCH], "\"v1\", W/\"v0\"");
        assert!(!stamp.strip_conditional(&mut req));
        let mut res = http::HeaderMap::new();
        res.insert(http::header::ETAG, "\"v1\"".parse().unwrap());
        stamp.mark_etag(&mut res);
        assert_eq!(
            res[http::header::ETAG],
            format!("\"v1{}\"", stamp.etag_suffix()).as_str()
        );
    }

    #[test]
    fn sniff_and_hints() {
        assert_eq!(Format::sniff(&[0xFF, 0xD8, 0xFF, 0xE0]), Some(Format::Jpeg));
        assert_eq!(Format::sniff(png::SIGNATURE), Some(Format::Png));
        assert_eq!(Format::sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some(Format::Webp));
        assert_eq!(Format::sniff(b"RIFF\0\0\0\0WAVE"), None);
        assert_eq!(Format::sniff(b"GIF89a"), None);
        assert_eq!(
            Format::from_content_type("Image/JPEG; q=1"),
            Some(Format::Jpeg)
        );
        assert_eq!(Format::from_content_type("image/gif"), None);
        assert_eq!(Format::from_path("/a/b/Photo.JPG?x=1"), Some(Format::Jpeg));
        assert_eq!(Format::from_path("/a.webp"), Some(Format::Webp));
        assert_eq!(Format::from_path("/png"), None);
    }

    #[test]
    fn unknown_bytes_pass_early() {
        let stamp = Stamp::compile(&StampConfig::default()).unwrap();
        let mut s = Stamper::new(None);
        let d = s.push(&stamp, Bytes::from_static(b"<html>")).unwrap();
        assert_eq!(
            d.outcome,
            StampOutcome::PassedThrough(PassReason::UnknownFormat)
        );
        let head: Vec<_> = d.head.iter().cloned().collect();
        assert_eq!(head, vec![Bytes::from_static(b"<html>")]);
    }

    #[test]
    fn config_deserializes_with_defaults_and_rejects_unknown_keys() {
        let c: StampConfig = serde_json::from_str(r#"{"scrub_serials": true}"#).unwrap();
        assert!(c.xmp && c.scrub_gps && c.scrub_serials);
        assert!(serde_json::from_str::<StampConfig>(r#"{"scrub_gpx": true}"#).is_err());
    }
}
