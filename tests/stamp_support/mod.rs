//! Shared corpus and readers for the `stamp_*` integration tests.
//!
//! Images are built with the `image` crate plus byte surgery. Encoders the `image` crate
//! lacks (progressive JPEG, lossy WebP) come from three tiny fixtures made once with
//! `cjpeg -progressive -quality 90` and `cwebp -q 80` from a 16x12 gradient (`fixtures`).
#![allow(dead_code)]

pub mod corpus;
pub mod fixtures;

use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::codecs::webp::WebPEncoder;
use image::{AnimationDecoder, ExtendedColorType, ImageEncoder, RgbImage, RgbaImage};
use lenscap::stamp::{Stamp, StampConfig, StampOutcome, stamp_response};

pub const DMI_URI: &str = "http://ns.useplus.org/ldf/vocab/DMI-PROHIBITED-AIMLTRAINING";
pub const XMP_NS: &[u8] = b"http://ns.adobe.com/xap/1.0/\0";

pub fn stamp() -> Arc<Stamp> {
    Arc::new(Stamp::compile(&StampConfig::default()).unwrap())
}

pub fn stamp_with(config: StampConfig) -> Arc<Stamp> {
    Arc::new(Stamp::compile(&config).unwrap())
}

// === pixels ===

pub fn rgb(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 13) as u8, (y * 7) as u8, ((x ^ y) * 5) as u8])
    })
}

pub fn rgba(w: u32, h: u32) -> RgbaImage {
    RgbaImage::from_fn(w, h, |x, y| {
        image::Rgba([
            (x * 13) as u8,
            (y * 7) as u8,
            ((x ^ y) * 5) as u8,
            (x * y) as u8,
        ])
    })
}

/// Every frame, decoded to RGBA8, with its size.
pub fn frames(bytes: &[u8]) -> Vec<(u32, u32, Vec<u8>)> {
    if bytes.starts_with(b"RIFF") && bytes.windows(4).any(|w| w == b"ANIM") {
        let dec = image::codecs::webp::WebPDecoder::new(std::io::Cursor::new(bytes)).unwrap();
        return dec
            .into_frames()
            .map(|f| {
                let b = f.unwrap().into_buffer();
                (b.width(), b.height(), b.into_raw())
            })
            .collect();
    }
    let img = image::load_from_memory(bytes).unwrap().to_rgba8();
    vec![(img.width(), img.height(), img.into_raw())]
}

// === JPEG ===

pub fn jpeg_baseline(w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, 90)
        .encode_image(&rgb(w, h))
        .unwrap();
    out
}

pub fn segment(marker: u8, payload: &[u8]) -> Vec<u8> {
    let mut s = vec![0xFF, marker];
    s.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
    s.extend_from_slice(payload);
    s
}

pub fn exif_segment(tiff: &[u8]) -> Vec<u8> {
    let mut p = b"Exif\0\0".to_vec();
    p.extend_from_slice(tiff);
    segment(0xE1, &p)
}

pub fn icc_segment() -> Vec<u8> {
    let mut p = b"ICC_PROFILE\0\x01\x01".to_vec();
    p.extend((0..600u32).map(|i| (i * 31) as u8));
    segment(0xE2, &p)
}

pub fn xmp_segment(packet: &[u8]) -> Vec<u8> {
    let mut p = XMP_NS.to_vec();
    p.extend_from_slice(packet);
    segment(0xE1, &p)
}

/// Inserts segments right after SOI and the APP0 the encoder wrote (if any).
pub fn jpeg_with(jpeg: &[u8], extra: &[Vec<u8>]) -> Vec<u8> {
    let mut at = 2;
    if jpeg[2..4] == [0xFF, 0xE0] {
        at = 4 + u16::from_be_bytes([jpeg[4], jpeg[5]]) as usize;
    }
    let mut out = jpeg[..at].to_vec();
    for s in extra {
        out.extend_from_slice(s);
    }
    out.extend_from_slice(&jpeg[at..]);
    out
}

/// Segments before SOS: (marker, payload).
pub fn jpeg_segments(jpeg: &[u8]) -> Vec<(u8, Vec<u8>)> {
    assert_eq!(&jpeg[..2], &[0xFF, 0xD8]);
    let mut pos = 2;
    let mut out = Vec::new();
    loop {
        assert_eq!(jpeg[pos], 0xFF, "marker expected at {pos}");
        let marker = jpeg[pos + 1];
        if marker == 0xDA {
            return out;
        }
        let len = u16::from_be_bytes([jpeg[pos + 2], jpeg[pos + 3]]) as usize;
        out.push((marker, jpeg[pos + 4..pos + 2 + len].to_vec()));
        pos += 2 + len;
    }
}

pub fn jpeg_xmp(jpeg: &[u8]) -> Vec<String> {
    jpeg_segments(jpeg)
        .into_iter()
        .filter(|(m, p)| *m == 0xE1 && p.starts_with(XMP_NS))
        .map(|(_, p)| String::from_utf8(p[XMP_NS.len()..].to_vec()).unwrap())
        .collect()
}

pub fn jpeg_exif(jpeg: &[u8]) -> Option<Vec<u8>> {
    jpeg_segments(jpeg)
        .into_iter()
        .find(|(m, p)| *m == 0xE1 && p.starts_with(b"Exif\0\0"))
        .map(|(_, p)| p[6..].to_vec())
}

// === PNG ===

pub fn png_encode(w: u32, h: u32, alpha: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let enc = PngEncoder::new(&mut out);
    if alpha {
        enc.write_image(rgba(w, h).as_raw(), w, h, ExtendedColorType::Rgba8)
            .unwrap();
    } else {
        enc.write_image(rgb(w, h).as_raw(), w, h, ExtendedColorType::Rgb8)
            .unwrap();
    }
    out
}

pub fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut c = (data.len() as u32).to_be_bytes().to_vec();
    c.extend_from_slice(kind);
    c.extend_from_slice(data);
    let mut h = crc32fast::Hasher::new();
    h.update(kind);
    h.update(data);
    c.extend_from_slice(&h.finalize().to_be_bytes());
    c
}

/// An Adam7-interlaced RGB PNG, written by hand (the `image` encoder cannot interlace).
pub fn png_interlaced(w: u32, h: u32) -> Vec<u8> {
    let img = rgb(w, h);
    let passes = [
        (0, 0, 8, 8),
        (4, 0, 8, 8),
        (0, 4, 4, 8),
        (2, 0, 4, 4),
        (0, 2, 2, 4),
        (1, 0, 2, 2),
        (0, 1, 1, 2),
    ];
    let mut raw = Vec::new();
    for (x0, y0, dx, dy) in passes {
        if x0 >= w || y0 >= h {
            continue;
        }
        for y in (y0..h).step_by(dy) {
            raw.push(0);
            for x in (x0..w).step_by(dx) {
                raw.extend_from_slice(&img.get_pixel(x, y).0);
            }
        }
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&raw).unwrap();
    let idat = z.finish().unwrap();
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 1]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    out.extend(chunk(b"IHDR", &ihdr));
    // Split IDAT in two, as real encoders do for larger images.
    let half = idat.len() / 2;
    out.extend(chunk(b"IDAT", &idat[..half]));
    out.extend(chunk(b"IDAT", &idat[half..]));
    out.extend(chunk(b"IEND", &[]));
    out
}

/// Inserts a chunk right before the first IDAT.
pub fn png_with(png: &[u8], extra: &[Vec<u8>]) -> Vec<u8> {
    let at = png.windows(4).position(|w| w == b"IDAT").unwrap() - 4;
    let mut out = png[..at].to_vec();
    for c in extra {
        out.extend_from_slice(c);
    }
    out.extend_from_slice(&png[at..]);
    out
}

/// All chunks (kind, data), asserting every CRC.
pub fn png_chunks(png: &[u8]) -> Vec<([u8; 4], Vec<u8>)> {
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let mut pos = 8;
    let mut out = Vec::new();
    while pos < png.len() {
        let len = u32::from_be_bytes(png[pos..pos + 4].try_into().unwrap()) as usize;
        let kind: [u8; 4] = png[pos + 4..pos + 8].try_into().unwrap();
        let data = png[pos + 8..pos + 8 + len].to_vec();
        let crc = u32::from_be_bytes(png[pos + 8 + len..pos + 12 + len].try_into().unwrap());
        let mut h = crc32fast::Hasher::new();
        h.update(&kind);
        h.update(&data);
        assert_eq!(
            crc,
            h.finalize(),
            "CRC of {}",
            String::from_utf8_lossy(&kind)
        );
        out.push((kind, data));
        pos += 12 + len;
    }
    out
}

pub fn png_xmp(png: &[u8]) -> Vec<String> {
    const KEY: &[u8] = b"XML:com.adobe.xmp\0\0\0\0\0";
    png_chunks(png)
        .into_iter()
        .filter(|(k, d)| k == b"iTXt" && d.starts_with(KEY))
        .map(|(_, d)| String::from_utf8(d[KEY.len()..].to_vec()).unwrap())
        .collect()
}

// === WebP ===

pub fn webp_lossless(w: u32, h: u32, alpha: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let enc = WebPEncoder::new_lossless(&mut out);
    if alpha {
        enc.encode(rgba(w, h).as_raw(), w, h, ExtendedColorType::Rgba8)
            .unwrap();
    } else {
        enc.encode(rgb(w, h).as_raw(), w, h, ExtendedColorType::Rgb8)
            .unwrap();
    }
    out
}

pub fn riff_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut c = kind.to_vec();
    c.extend_from_slice(&(data.len() as u32).to_le_bytes());
    c.extend_from_slice(data);
    if data.len() % 2 == 1 {
        c.push(0);
    }
    c
}

pub fn riff(chunks: &[Vec<u8>]) -> Vec<u8> {
    let body: Vec<u8> = chunks.concat();
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&((body.len() + 4) as u32).to_le_bytes());
    out.extend_from_slice(b"WEBP");
    out.extend(body);
    out
}

pub fn vp8x(flags: u8, w: u32, h: u32) -> Vec<u8> {
    let mut d = vec![flags, 0, 0, 0];
    d.extend_from_slice(&(w - 1).to_le_bytes()[..3]);
    d.extend_from_slice(&(h - 1).to_le_bytes()[..3]);
    riff_chunk(b"VP8X", &d)
}

/// The chunks after `WEBP`: (fourcc, data), asserting the RIFF size.
pub fn webp_chunks(webp: &[u8]) -> Vec<([u8; 4], Vec<u8>)> {
    assert_eq!(&webp[..4], b"RIFF");
    let size = u32::from_le_bytes(webp[4..8].try_into().unwrap()) as usize;
    assert_eq!(size + 8, webp.len(), "RIFF size matches the file");
    let mut pos = 12;
    let mut out = Vec::new();
    while pos < webp.len() {
        let kind: [u8; 4] = webp[pos..pos + 4].try_into().unwrap();
        let len = u32::from_le_bytes(webp[pos + 4..pos + 8].try_into().unwrap()) as usize;
        out.push((kind, webp[pos + 8..pos + 8 + len].to_vec()));
        pos += 8 + len + (len & 1);
    }
    assert_eq!(pos, webp.len());
    out
}

/// A lossless VP8X file with an `EXIF` chunk after the image data.
pub fn webp_with_exif(tiff: &[u8]) -> Vec<u8> {
    let simple = webp_lossless(24, 16, false);
    let chunks = webp_chunks(&simple);
    riff(&[
        vp8x(0x08, 24, 16),
        riff_chunk(b"VP8L", &chunks[0].1),
        riff_chunk(b"EXIF", tiff),
    ])
}

/// A two-frame animated lossless WebP, built from RIFF chunks.
pub fn webp_animated() -> Vec<u8> {
    let f1 = webp_chunks(&webp_lossless(20, 10, true))[0].1.clone();
    let f2 = webp_chunks(&webp_lossless(10, 6, true))[0].1.clone();
    let anmf = |x: u32, y: u32, w: u32, h: u32, frame: &[u8]| {
        let mut d = Vec::new();
        d.extend_from_slice(&(x / 2).to_le_bytes()[..3]);
        d.extend_from_slice(&(y / 2).to_le_bytes()[..3]);
        d.extend_from_slice(&(w - 1).to_le_bytes()[..3]);
        d.extend_from_slice(&(h - 1).to_le_bytes()[..3]);
        d.extend_from_slice(&100u32.to_le_bytes()[..3]);
        d.push(0);
        d.extend(riff_chunk(b"VP8L", frame));
        riff_chunk(b"ANMF", &d)
    };
    riff(&[
        vp8x(0x02 | 0x10, 20, 10),
        riff_chunk(b"ANIM", &[0, 0, 0, 0, 0, 0]),
        anmf(0, 0, 20, 10, &f1),
        anmf(4, 2, 10, 6, &f2),
    ])
}

pub fn webp_xmp(webp: &[u8]) -> Vec<String> {
    webp_chunks(webp)
        .into_iter()
        .filter(|(k, _)| k == b"XMP ")
        .map(|(_, d)| String::from_utf8(d).unwrap())
        .collect()
}

// === Exif ===

pub struct Tiff {
    pub out: Vec<u8>,
    pub le: bool,
}

impl Tiff {
    fn u16(&mut self, v: u16) {
        let b = if self.le {
            v.to_le_bytes()
        } else {
            v.to_be_bytes()
        };
        self.out.extend_from_slice(&b);
    }
    fn u32(&mut self, v: u32) {
        let b = if self.le {
            v.to_le_bytes()
        } else {
            v.to_be_bytes()
        };
        self.out.extend_from_slice(&b);
    }
    fn short_entry(&mut self, tag: u16, v: u16) {
        self.u16(tag);
        self.u16(3);
        self.u32(1);
        self.u16(v);
        self.u16(0);
    }
    fn long_entry(&mut self, tag: u16, kind: u16, count: u32, v: u32) {
        self.u16(tag);
        self.u16(kind);
        self.u32(count);
        self.u32(v);
    }
}

/// IFD0: Make (out of line), Orientation=6, Artist, ExifIFD, GPSInfo; Exif IFD with
/// BodySerialNumber; GPS IFD with latitude/longitude rationals; IFD1 with a
/// JPEGInterchangeFormat pair.
pub fn exif_tiff(le: bool) -> Vec<u8> {
    let mut t = Tiff {
        out: Vec::new(),
        le,
    };
    t.out.extend_from_slice(if le { b"II" } else { b"MM" });
    t.u16(42);
    t.u32(8);
    // IFD0 at 8, 5 entries: ends at 8 + 2 + 60 + 4 = 74.
    t.u16(5);
    t.long_entry(0x010F, 2, 6, 230); // Make "Lensc\0"
    t.short_entry(0x0112, 6);
    t.long_entry(0x013B, 2, 8, 238); // Artist
    t.long_entry(0x8769, 4, 1, 80);
    t.long_entry(0x8825, 4, 1, 120);
    t.u32(300);
    t.out.resize(80, 0);
    // Exif IFD at 80, 1 entry: ends at 98.
    t.u16(1);
    t.long_entry(0xA431, 2, 8, 246);
    t.u32(0);
    t.out.resize(120, 0);
    // GPS IFD at 120, 4 entries: ends at 174; rationals at 174 and 198.
    t.u16(4);
    t.long_entry(0x0001, 2, 2, u32::from_be_bytes(*b"N\0\0\0"));
    t.long_entry(0x0002, 5, 3, 174);
    t.long_entry(0x0003, 2, 2, u32::from_be_bytes(*b"E\0\0\0"));
    t.long_entry(0x0004, 5, 3, 198);
    // Inline ASCII must not be byte-swapped: rewrite those two value fields raw.
    for (i, c) in [(0usize, b'N'), (2, b'E')] {
        let at = 120 + 2 + 12 * i + 8;
        t.out[at..at + 4].copy_from_slice(&[c, 0, 0, 0]);
    }
    t.u32(0);
    for v in [52u32, 1, 22, 1, 7, 1, 4, 1, 53, 1, 9, 1] {
        t.u32(v);
    }
    t.out.resize(230, 0);
    t.out.extend_from_slice(b"Lensc\0\0\0");
    t.out.extend_from_slice(b"Jo Doe\0\0");
    t.out.extend_from_slice(b"SN-98765");
    t.out.resize(300, 0);
    // IFD1 at 300, 2 entries.
    t.u16(2);
    t.long_entry(0x0201, 4, 1, 0);
    t.long_entry(0x0202, 4, 1, 0);
    t.u32(0);
    t.out
}

pub struct TiffRead<'a> {
    pub b: &'a [u8],
    pub le: bool,
}

impl<'a> TiffRead<'a> {
    pub fn new(b: &'a [u8]) -> Self {
        TiffRead {
            b,
            le: &b[..2] == b"II",
        }
    }
    pub fn u16(&self, at: usize) -> u16 {
        let x = [self.b[at], self.b[at + 1]];
        if self.le {
            u16::from_le_bytes(x)
        } else {
            u16::from_be_bytes(x)
        }
    }
    pub fn u32(&self, at: usize) -> u32 {
        let x: [u8; 4] = self.b[at..at + 4].try_into().unwrap();
        if self.le {
            u32::from_le_bytes(x)
        } else {
            u32::from_be_bytes(x)
        }
    }
    /// (tag, type, count, value-or-offset field) of the IFD at `at`, and its next link.
    pub fn ifd(&self, at: usize) -> (Vec<(u16, u16, u32, usize)>, u32) {
        let n = self.u16(at) as usize;
        let entries = (0..n)
            .map(|i| {
                let e = at + 2 + 12 * i;
                (self.u16(e), self.u16(e + 2), self.u32(e + 4), e + 8)
            })
            .collect();
        (entries, self.u32(at + 2 + 12 * n))
    }
    pub fn ifd0(&self) -> (Vec<(u16, u16, u32, usize)>, u32) {
        self.ifd(self.u32(4) as usize)
    }
    pub fn orientation(&self) -> Option<u16> {
        let (e, _) = self.ifd0();
        e.iter().find(|e| e.0 == 0x0112).map(|e| self.u16(e.3))
    }
    pub fn has_gps(&self) -> bool {
        self.ifd0().0.iter().any(|e| e.0 == 0x8825)
    }
}

/// Asserts an Exif block lost its GPS IFD and kept everything else.
pub fn assert_gps_gone(before: &[u8], after: &[u8]) {
    assert_eq!(before.len(), after.len());
    let (b, a) = (TiffRead::new(before), TiffRead::new(after));
    assert!(b.has_gps() && !a.has_gps());
    assert_eq!(a.orientation(), Some(6));
    let (eb, nb) = b.ifd0();
    let (ea, na) = a.ifd0();
    assert_eq!(nb, na, "IFD1 link kept");
    assert_eq!(ea.len() + 1, eb.len());
    assert_eq!(a.ifd(na as usize).0.len(), 2, "IFD1 intact");
    assert!(
        !after.windows(2).any(|w| w == [52, 0] || w == [0, 52]),
        "latitude zeroed"
    );
    assert_eq!(&after[230..236], b"Lensc\0", "Make kept");
}

// === XMP ===

/// An Adobe-style packet with padding and GPS properties.
pub fn adobe_packet(padding: usize, extra_attr: &str) -> Vec<u8> {
    let mut s = String::from(
        "<?xpacket begin=\"\u{FEFF}\" id=\"W5M0MpCehiHzreSzNTczkc9d\"?>\n<x:xmpmeta xmlns:x=\"adobe:ns:meta/\">\n <rdf:RDF xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\">\n  <rdf:Description rdf:about=\"\" xmlns:exif=\"http://ns.adobe.com/exif/1.0/\" xmlns:xmp=\"http://ns.adobe.com/xap/1.0/\" xmp:CreatorTool=\"Lightroom\" exif:GPSLongitude=\"4,53.9E\"",
    );
    s.push_str(extra_attr);
    s.push_str(">\n   <exif:GPSLatitude>52,22.1N</exif:GPSLatitude>\n  </rdf:Description>\n </rdf:RDF>\n</x:xmpmeta>\n");
    s.push_str(&" ".repeat(padding));
    s.push_str("\n<?xpacket end=\"w\"?>");
    s.into_bytes()
}

// === http ===

pub enum Chunking {
    Whole,
    Fixed(usize),
    Random(u64),
}

pub fn split(bytes: &[u8], chunking: &Chunking) -> Vec<Bytes> {
    match chunking {
        Chunking::Whole => vec![Bytes::copy_from_slice(bytes)],
        Chunking::Fixed(n) => bytes.chunks(*n).map(Bytes::copy_from_slice).collect(),
        Chunking::Random(seed) => {
            let mut state = *seed | 1;
            let mut out = Vec::new();
            let mut rest = bytes;
            while !rest.is_empty() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let n = (1 + state % 97) as usize;
                let (a, b) = rest.split_at(n.min(rest.len()));
                out.push(Bytes::copy_from_slice(a));
                rest = b;
            }
            out
        }
    }
}

pub type TestBody =
    StreamBody<stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, std::convert::Infallible>>>>;

pub fn body(parts: Vec<Bytes>) -> TestBody {
    StreamBody::new(stream::iter(
        parts
            .into_iter()
            .map(|b| Ok(Frame::data(b)))
            .collect::<Vec<_>>(),
    ))
}

pub struct Served {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub outcome: StampOutcome,
    pub body: Vec<u8>,
}

/// Serves `bytes` as a 200 with Content-Length and a strong ETag, through `stamp_response`.
pub async fn serve(
    stamp: &Arc<Stamp>,
    bytes: &[u8],
    content_type: &str,
    chunking: Chunking,
) -> Served {
    let response = http::Response::builder()
        .header("content-type", content_type)
        .header("content-length", bytes.len())
        .header("etag", "\"v1\"")
        .body(body(split(bytes, &chunking)))
        .unwrap();
    serve_response(stamp, response).await
}

pub async fn serve_response(stamp: &Arc<Stamp>, response: http::Response<TestBody>) -> Served {
    let out = stamp_response(response, stamp.clone()).await;
    let (parts, body) = out.into_parts();
    let outcome = *parts.extensions.get::<StampOutcome>().unwrap();
    let body = body.collect().await.unwrap().to_bytes().to_vec();
    Served {
        status: parts.status,
        headers: parts.headers,
        outcome,
        body,
    }
}

/// Serves in whole, 1-byte, 7-byte and random chunking; asserts all agree, Content-Length
/// matches, and returns the output.
pub async fn serve_all(stamp: &Arc<Stamp>, bytes: &[u8], content_type: &str) -> Served {
    let whole = serve(stamp, bytes, content_type, Chunking::Whole).await;
    for chunking in [
        Chunking::Fixed(1),
        Chunking::Fixed(7),
        Chunking::Random(7),
        Chunking::Random(99),
    ] {
        let other = serve(stamp, bytes, content_type, chunking).await;
        assert_eq!(other.body, whole.body, "output independent of chunking");
        assert_eq!(other.headers, whole.headers);
        assert_eq!(other.outcome, whole.outcome);
    }
    let declared: usize = whole.headers["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        declared,
        whole.body.len(),
        "Content-Length is the real length"
    );
    whole
}

pub fn assert_stamped_headers(served: &Served) {
    let etag = served.headers["etag"].to_str().unwrap();
    assert!(etag.starts_with("\"v1-lc") && etag.ends_with('"'), "{etag}");
}

pub fn assert_dmi(packet: &str) {
    assert!(packet.contains(DMI_URI), "{packet}");
    assert!(packet.contains("xmlns:plus=\"http://ns.useplus.org/ldf/xmp/1.0/\""));
}
