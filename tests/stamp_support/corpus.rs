//! A deterministic corpus of phone-like images carrying GPS, serials, owner and
//! orientation, in every place a reader finds them. Each case knows which bytes give its
//! position away, so a test can check both with exiftool and byte by byte.

use super::*;

/// A latitude no other byte of the corpus happens to contain: 51° 37' 12.3456".
pub const LAT: [(u32, u32); 3] = [(51, 1), (37, 1), (123_456, 10_000)];
pub const LON: [(u32, u32); 3] = [(4, 1), (42, 1), (987_654, 10_000)];
/// The same position as XMP writes it.
pub const XMP_LAT: &str = "51,37.20576N";
pub const XMP_LON: &str = "4,42.16461E";
pub const SERIAL: &str = "SN-PHONE-0042";
pub const LENS_SERIAL: &str = "LENS-7731";
pub const OWNER: &str = "Ann Owner";

pub enum V {
    Ascii(&'static str),
    Short(u16),
    Rational(Vec<(u32, u32)>),
    Byte4([u8; 4]),
    /// A pointer (LONG) to another IFD of the list.
    Ifd(usize),
}

impl V {
    fn kind_count(&self) -> (u16, u32) {
        match self {
            V::Ascii(s) => (2, s.len() as u32 + 1),
            V::Short(_) => (3, 1),
            V::Rational(v) => (5, v.len() as u32),
            V::Byte4(_) => (1, 4),
            V::Ifd(_) => (4, 1),
        }
    }
    fn bytes(&self, le: bool, ifd_at: &[usize]) -> Vec<u8> {
        let u16b = |v: u16| if le { v.to_le_bytes() } else { v.to_be_bytes() };
        let u32b = |v: u32| if le { v.to_le_bytes() } else { v.to_be_bytes() };
        match self {
            V::Ascii(s) => {
                let mut b = s.as_bytes().to_vec();
                b.push(0);
                b
            }
            V::Short(v) => u16b(*v).to_vec(),
            V::Rational(v) => v
                .iter()
                .flat_map(|(n, d)| [u32b(*n), u32b(*d)].concat())
                .collect(),
            V::Byte4(b) => b.to_vec(),
            V::Ifd(i) => u32b(ifd_at[*i] as u32).to_vec(),
        }
    }
}

/// Lays out `ifds` (entries sorted as given) one after another, each followed by its
/// out-of-line values; `chain` lists the IFDs linked from the header (IFD0, IFD1, …).
pub fn tiff(le: bool, ifds: &[Vec<(u16, V)>], chain: &[usize]) -> Vec<u8> {
    let size = |ifd: &Vec<(u16, V)>| {
        let data: usize = ifd
            .iter()
            .map(|(_, v)| {
                let n = v.bytes(le, &vec![0; ifds.len()]).len();
                if n > 4 { (n + 1) & !1 } else { 0 }
            })
            .sum();
        2 + 12 * ifd.len() + 4 + data
    };
    let mut at = Vec::new();
    let mut pos = 8;
    for ifd in ifds {
        at.push(pos);
        pos += size(ifd);
    }
    let u16b = |v: u16| if le { v.to_le_bytes() } else { v.to_be_bytes() };
    let u32b = |v: u32| if le { v.to_le_bytes() } else { v.to_be_bytes() };
    let mut out = Vec::new();
    out.extend_from_slice(if le { b"II" } else { b"MM" });
    out.extend_from_slice(&u16b(42));
    out.extend_from_slice(&u32b(at[chain[0]] as u32));
    for (i, ifd) in ifds.iter().enumerate() {
        assert_eq!(out.len(), at[i]);
        let mut data_at = at[i] + 2 + 12 * ifd.len() + 4;
        let mut data = Vec::new();
        out.extend_from_slice(&u16b(ifd.len() as u16));
        for (tag, v) in ifd {
            let (kind, count) = v.kind_count();
            out.extend_from_slice(&u16b(*tag));
            out.extend_from_slice(&u16b(kind));
            out.extend_from_slice(&u32b(count));
            let mut b = v.bytes(le, &at);
            if b.len() <= 4 {
                b.resize(4, 0);
                out.extend_from_slice(&b);
            } else {
                out.extend_from_slice(&u32b(data_at as u32));
                if b.len() % 2 == 1 {
                    b.push(0);
                }
                data_at += b.len();
                data.extend_from_slice(&b);
            }
        }
        let next = chain
            .iter()
            .position(|c| *c == i)
            .and_then(|p| chain.get(p + 1))
            .map_or(0, |n| at[*n] as u32);
        out.extend_from_slice(&u32b(next));
        out.extend_from_slice(&data);
    }
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GpsIn {
    Ifd0,
    Ifd1,
    ExifIfd,
}

fn gps_ifd() -> Vec<(u16, V)> {
    vec![
        (0x0000, V::Byte4([2, 3, 0, 0])),
        (0x0001, V::Ascii("N")),
        (0x0002, V::Rational(LAT.to_vec())),
        (0x0003, V::Ascii("E")),
        (0x0004, V::Rational(LON.to_vec())),
    ]
}

/// Exif as a phone writes it: Make, Model, Orientation 6, Artist; an Exif IFD with serials
/// and the owner; a GPS IFD pointed at from `gps`; IFD1 (the thumbnail's).
pub fn phone_tiff(le: bool, gps: GpsIn) -> Vec<u8> {
    // 0: IFD0, 1: Exif IFD, 2: GPS IFD, 3: IFD1
    let mut ifd0 = vec![
        (0x010F, V::Ascii("Lenscap Phone")),
        (0x0110, V::Ascii("LP-1 Pro")),
        (0x0112, V::Short(6)),
        (0x013B, V::Ascii(OWNER)),
        (0x8769, V::Ifd(1)),
    ];
    let mut exif = vec![
        (0x9003, V::Ascii("2024:06:01 21:14:03")),
        (0xA430, V::Ascii(OWNER)),
        (0xA431, V::Ascii(SERIAL)),
        (0xA435, V::Ascii(LENS_SERIAL)),
    ];
    let mut ifd1 = vec![(0x0103, V::Short(6)), (0x0112, V::Short(6))];
    match gps {
        GpsIn::Ifd0 => ifd0.push((0x8825, V::Ifd(2))),
        GpsIn::ExifIfd => exif.push((0x8825, V::Ifd(2))),
        GpsIn::Ifd1 => ifd1.push((0x8825, V::Ifd(2))),
    }
    tiff(le, &[ifd0, exif, gps_ifd(), ifd1], &[0, 3])
}

/// A latitude triple as it sits in a TIFF block (both byte orders are searched).
pub fn lat_bytes() -> [Vec<u8>; 2] {
    let enc = |le: bool| {
        LAT.iter()
            .flat_map(|(n, d)| {
                if le {
                    [n.to_le_bytes(), d.to_le_bytes()].concat()
                } else {
                    [n.to_be_bytes(), d.to_be_bytes()].concat()
                }
            })
            .collect::<Vec<u8>>()
    };
    [enc(true), enc(false)]
}

/// An XMP packet with GPS as attributes and elements, a drone's own GPS properties, an
/// IPTC location structure and serials.
pub fn gps_packet() -> Vec<u8> {
    format!(
        "<?xpacket begin=\"\u{FEFF}\" id=\"W5M0MpCehiHzreSzNTczkc9d\"?>\n<x:xmpmeta xmlns:x=\"adobe:ns:meta/\">\n <rdf:RDF xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\">\n  <rdf:Description rdf:about=\"\" xmlns:exif=\"http://ns.adobe.com/exif/1.0/\" xmlns:aux=\"http://ns.adobe.com/exif/1.0/aux/\" xmlns:drone-dji=\"http://www.dji.com/drone-dji/1.0/\" xmlns:Iptc4xmpExt=\"http://iptc.org/std/Iptc4xmpExt/2008-02-29/\" exif:GPSLongitude=\"{XMP_LON}\" drone-dji:GpsLatitude=\"+51.620096\" aux:SerialNumber=\"{SERIAL}\">\n   <exif:GPSLatitude>{XMP_LAT}</exif:GPSLatitude>\n   <Iptc4xmpExt:LocationCreated><rdf:Bag><rdf:li rdf:parseType=\"Resource\"><Iptc4xmpExt:City>Gouda</Iptc4xmpExt:City><exif:GPSLatitude>{XMP_LAT}</exif:GPSLatitude></rdf:li></rdf:Bag></Iptc4xmpExt:LocationCreated>\n  </rdf:Description>\n </rdf:RDF>\n</x:xmpmeta>\n{}\n<?xpacket end=\"w\"?>",
        " ".repeat(200)
    )
    .into_bytes()
}

/// The position in every encoding the corpus uses.
pub fn position_needles() -> Vec<Vec<u8>> {
    let mut n = lat_bytes().to_vec();
    n.push(XMP_LAT.as_bytes().to_vec());
    n.push(XMP_LON.as_bytes().to_vec());
    n.push(b"+51.620096".to_vec());
    n
}

pub fn serial_needles() -> Vec<Vec<u8>> {
    vec![
        SERIAL.as_bytes().to_vec(),
        LENS_SERIAL.as_bytes().to_vec(),
        OWNER.as_bytes().to_vec(),
    ]
}

pub struct Case {
    pub name: &'static str,
    pub bytes: Vec<u8>,
    pub content_type: &'static str,
    /// Decodes with the `image` crate (pixels are compared).
    pub decodable: bool,
    /// Byte ranges the scrub may change (HEIF items); `None`: anything but pixels.
    pub mutable: Option<Vec<(usize, usize)>>,
    /// exiftool reads the position in the input (a raw trailer it does not: there only
    /// the bytes are checked).
    pub exiftool_reads: bool,
}

// === JPEG ===

fn mpf_segment(second_offset: u32, second_len: u32, first_len: u32) -> Vec<u8> {
    // MP header: big-endian TIFF, MP Index IFD with MPFVersion, NumberOfImages, MPEntry.
    let mut p = b"MPF\0".to_vec();
    let mut t = Vec::new();
    t.extend_from_slice(b"MM\0*");
    t.extend_from_slice(&8u32.to_be_bytes());
    t.extend_from_slice(&3u16.to_be_bytes());
    let entries_at = 8 + 2 + 36 + 4;
    t.extend_from_slice(&[0xB0, 0x00, 0, 7, 0, 0, 0, 4]);
    t.extend_from_slice(b"0100");
    t.extend_from_slice(&[0xB0, 0x01, 0, 4, 0, 0, 0, 1]);
    t.extend_from_slice(&2u32.to_be_bytes());
    t.extend_from_slice(&[0xB0, 0x02, 0, 7, 0, 0, 0, 32]);
    t.extend_from_slice(&(entries_at as u32).to_be_bytes());
    t.extend_from_slice(&0u32.to_be_bytes());
    // Entry 1: primary; entry 2: the appended image, offset from the MP header.
    t.extend_from_slice(&0x2003_0000u32.to_be_bytes());
    t.extend_from_slice(&first_len.to_be_bytes());
    t.extend_from_slice(&0u32.to_be_bytes());
    t.extend_from_slice(&0u32.to_be_bytes());
    t.extend_from_slice(&0x0002_0000u32.to_be_bytes());
    t.extend_from_slice(&second_len.to_be_bytes());
    t.extend_from_slice(&second_offset.to_be_bytes());
    t.extend_from_slice(&0u32.to_be_bytes());
    p.extend_from_slice(&t);
    segment(0xE2, &p)
}

/// A primary image with Exif (GPS in IFD0) and MPF, and a second image appended after its
/// `EOI` whose own Exif carries GPS in the Exif IFD.
pub fn jpeg_mpf() -> Vec<u8> {
    let second = jpeg_with(
        &jpeg_baseline(16, 8),
        &[exif_segment(&phone_tiff(false, GpsIn::ExifIfd))],
    );
    let exif = exif_segment(&phone_tiff(true, GpsIn::Ifd0));
    let base = jpeg_baseline(40, 24);
    // The MP header sits 8 bytes into the APP2 segment (marker, length, "MPF\0").
    let probe = jpeg_with(&base, &[exif.clone(), mpf_segment(0, 0, 0)]);
    let mpf_at = probe.windows(4).position(|w| w == b"MPF\0").unwrap() + 4;
    let first_len = probe.len() as u32;
    let mpf = mpf_segment(first_len - mpf_at as u32, second.len() as u32, first_len);
    let mut out = jpeg_with(&base, &[exif, mpf]);
    assert_eq!(out.len() as u32, first_len);
    out.extend_from_slice(&second);
    out
}

pub fn jpeg_cases() -> Vec<Case> {
    let jpeg = |name, bytes| Case {
        name,
        bytes,
        content_type: "image/jpeg",
        decodable: true,
        mutable: None,
        exiftool_reads: true,
    };
    let base = || jpeg_baseline(48, 32);
    let mut appended = jpeg_with(&base(), &[exif_segment(&phone_tiff(true, GpsIn::Ifd1))]);
    appended.extend(jpeg_with(
        &jpeg_baseline(8, 8),
        &[
            exif_segment(&phone_tiff(true, GpsIn::Ifd0)),
            xmp_segment(&gps_packet()),
        ],
    ));
    let mut progressive_tail = fixtures::PROGRESSIVE_JPEG.to_vec();
    // A trailer after EOI that holds an Exif block (as some phone apps write them).
    progressive_tail.extend_from_slice(b"\0\0TRAILER");
    progressive_tail.extend(exif_segment(&phone_tiff(false, GpsIn::Ifd0)));
    vec![
        jpeg(
            "jpeg-gps-ifd0",
            jpeg_with(&base(), &[exif_segment(&phone_tiff(true, GpsIn::Ifd0))]),
        ),
        jpeg(
            "jpeg-gps-ifd1",
            jpeg_with(&base(), &[exif_segment(&phone_tiff(false, GpsIn::Ifd1))]),
        ),
        jpeg(
            "jpeg-gps-exif-ifd",
            jpeg_with(&base(), &[exif_segment(&phone_tiff(true, GpsIn::ExifIfd))]),
        ),
        jpeg(
            "jpeg-two-exif-app1",
            jpeg_with(
                &base(),
                &[
                    exif_segment(&phone_tiff(true, GpsIn::ExifIfd)),
                    exif_segment(&phone_tiff(false, GpsIn::Ifd1)),
                ],
            ),
        ),
        jpeg(
            "jpeg-xmp-gps",
            jpeg_with(&base(), &[xmp_segment(&gps_packet())]),
        ),
        jpeg("jpeg-mpf-appended", jpeg_mpf()),
        jpeg("jpeg-appended-no-mpf", appended),
        Case {
            exiftool_reads: false,
            ..jpeg("jpeg-progressive-trailer", progressive_tail)
        },
    ]
}

// === PNG ===

fn png_after_idat(png: &[u8], extra: &[Vec<u8>]) -> Vec<u8> {
    let iend = png.len() - 12;
    let mut out = png[..iend].to_vec();
    for c in extra {
        out.extend_from_slice(c);
    }
    out.extend_from_slice(&png[iend..]);
    out
}

fn itxt_xmp(packet: &[u8], compressed: bool) -> Vec<u8> {
    let mut d = b"XML:com.adobe.xmp\0".to_vec();
    if compressed {
        d.extend_from_slice(&[1, 0, 0, 0]);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(packet).unwrap();
        d.extend(z.finish().unwrap());
    } else {
        d.extend_from_slice(&[0, 0, 0, 0]);
        d.extend_from_slice(packet);
    }
    chunk(b"iTXt", &d)
}

/// ImageMagick's `Raw profile type exif`, hex in a zTXt.
fn raw_profile_exif(tiff: &[u8]) -> Vec<u8> {
    let mut data = b"Exif\0\0".to_vec();
    data.extend_from_slice(tiff);
    let mut text = format!("\nexif\n{:8}\n", data.len());
    for (i, b) in data.iter().enumerate() {
        text.push_str(&format!("{b:02x}"));
        if i % 36 == 35 {
            text.push('\n');
        }
    }
    text.push('\n');
    let mut d = b"Raw profile type exif\0\0".to_vec();
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(text.as_bytes()).unwrap();
    d.extend(z.finish().unwrap());
    chunk(b"zTXt", &d)
}

pub fn png_cases() -> Vec<Case> {
    let png = |name, bytes| Case {
        name,
        bytes,
        content_type: "image/png",
        decodable: true,
        mutable: None,
        exiftool_reads: true,
    };
    vec![
        png(
            "png-exif-after-idat",
            png_after_idat(
                &png_encode(30, 20, true),
                &[chunk(b"eXIf", &phone_tiff(false, GpsIn::Ifd0))],
            ),
        ),
        png(
            "png-xmp-after-idat",
            png_after_idat(
                &png_encode(30, 20, false),
                &[itxt_xmp(&gps_packet(), false)],
            ),
        ),
        png(
            "png-xmp-compressed-before-idat",
            png_with(&png_encode(30, 20, false), &[itxt_xmp(&gps_packet(), true)]),
        ),
        png(
            "png-exif-ifd1-before-idat",
            png_with(
                &png_interlaced(19, 13),
                &[chunk(b"eXIf", &phone_tiff(true, GpsIn::Ifd1))],
            ),
        ),
        png(
            "png-raw-profile-exif",
            png_with(
                &png_encode(12, 12, false),
                &[raw_profile_exif(&phone_tiff(true, GpsIn::ExifIfd))],
            ),
        ),
    ]
}

// === WebP ===

pub fn webp_cases() -> Vec<Case> {
    let webp = |name, bytes| Case {
        name,
        bytes,
        content_type: "image/webp",
        decodable: true,
        mutable: None,
        exiftool_reads: true,
    };
    let vp8l = webp_chunks(&webp_lossless(24, 16, false))[0].1.clone();
    let lossy = webp_chunks(fixtures::LOSSY_WEBP)[0].1.clone();
    vec![
        webp(
            "webp-xmp-chunk",
            riff(&[
                vp8x(0x04, 24, 16),
                riff_chunk(b"VP8L", &vp8l),
                riff_chunk(b"XMP ", &gps_packet()),
            ]),
        ),
        webp(
            "webp-exif-and-xmp",
            riff(&[
                vp8x(0x08 | 0x04, 16, 12),
                riff_chunk(b"VP8 ", &lossy),
                riff_chunk(b"EXIF", &phone_tiff(true, GpsIn::ExifIfd)),
                riff_chunk(b"XMP ", &gps_packet()),
            ]),
        ),
        webp(
            "webp-exif-no-flag",
            riff(&[
                vp8x(0x00, 24, 16),
                riff_chunk(b"VP8L", &vp8l),
                riff_chunk(b"EXIF", &phone_tiff(false, GpsIn::Ifd1)),
            ]),
        ),
    ]
}

// === HEIF / AVIF ===

fn bmff_box(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut b = ((payload.len() + 8) as u32).to_be_bytes().to_vec();
    b.extend_from_slice(kind);
    b.extend_from_slice(payload);
    b
}

fn full_box(kind: &[u8; 4], version: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![version, 0, 0, 0];
    p.extend_from_slice(payload);
    bmff_box(kind, &p)
}

fn infe(id: u16, kind: &[u8; 4], extra: &[u8]) -> Vec<u8> {
    let mut p = id.to_be_bytes().to_vec();
    p.extend_from_slice(&0u16.to_be_bytes());
    p.extend_from_slice(kind);
    p.push(0); // empty item name
    p.extend_from_slice(extra);
    full_box(b"infe", 2, &p)
}

/// A hand-built HEIF/AVIF: `ftyp`, `meta` (hdlr, pitm, iinf, iloc, idat), `mdat` with the
/// coded image item, the Exif item and an XMP item. With `exif_in_idat`, the Exif item is
/// stored in `idat` (construction method 1) instead of `mdat`. Returns the file and the
/// byte ranges of the metadata items.
pub fn heif(
    brand: &[u8; 4],
    image: &[u8; 4],
    exif_in_idat: bool,
) -> (Vec<u8>, Vec<(usize, usize)>) {
    let mut exif = 6u32.to_be_bytes().to_vec();
    exif.extend_from_slice(b"Exif\0\0");
    exif.extend(phone_tiff(false, GpsIn::Ifd0));
    let xmp = gps_packet();
    let coded: Vec<u8> = (0..600u32).map(|i| (i * 7 + 3) as u8).collect();
    let mut ftyp = brand.to_vec();
    ftyp.extend_from_slice(&0u32.to_be_bytes());
    ftyp.extend_from_slice(brand);
    ftyp.extend_from_slice(b"mif1miaf");
    let ftyp = bmff_box(b"ftyp", &ftyp);
    let build = |mdat_at: u32, idat_len: usize| {
        let mut hdlr = vec![0; 4];
        hdlr.extend_from_slice(b"pict");
        hdlr.extend_from_slice(&[0; 12]);
        hdlr.push(0);
        let mut iinf = 3u16.to_be_bytes().to_vec();
        iinf.extend(infe(1, image, &[]));
        iinf.extend(infe(2, b"Exif", &[]));
        iinf.extend(infe(3, b"mime", b"application/rdf+xml\0"));
        // iloc v1: offset 4, length 4, base 0, index 0.
        let mut iloc = vec![0x44, 0x00];
        iloc.extend_from_slice(&3u16.to_be_bytes());
        let mut item = |id: u16, method: u16, off: u32, len: usize| {
            iloc.extend_from_slice(&id.to_be_bytes());
            iloc.extend_from_slice(&method.to_be_bytes());
            iloc.extend_from_slice(&0u16.to_be_bytes());
            iloc.extend_from_slice(&1u16.to_be_bytes());
            iloc.extend_from_slice(&off.to_be_bytes());
            iloc.extend_from_slice(&(len as u32).to_be_bytes());
        };
        let data = mdat_at + 8;
        item(1, 0, data, coded.len());
        if exif_in_idat {
            item(2, 1, 0, exif.len());
        } else {
            item(2, 0, data + coded.len() as u32, exif.len());
        }
        let xmp_at = data + coded.len() as u32 + if exif_in_idat { 0 } else { exif.len() as u32 };
        item(3, 0, xmp_at, xmp.len());
        let mut meta = full_box(b"hdlr", 0, &hdlr[4..]);
        meta.extend(full_box(b"pitm", 0, &1u16.to_be_bytes()));
        meta.extend(full_box(b"iinf", 0, &iinf));
        meta.extend(full_box(b"iloc", 1, &iloc));
        if exif_in_idat {
            meta.extend(bmff_box(b"idat", &exif));
        }
        let _ = idat_len;
        full_box(b"meta", 0, &meta)
    };
    let probe = build(0, 0);
    let mdat_at = (ftyp.len() + probe.len()) as u32;
    let meta = build(mdat_at, 0);
    assert_eq!(meta.len(), probe.len());
    let mut mdat = coded.clone();
    if !exif_in_idat {
        mdat.extend_from_slice(&exif);
    }
    mdat.extend_from_slice(&xmp);
    let mut out = ftyp;
    out.extend_from_slice(&meta);
    let data = out.len() + 8;
    out.extend(bmff_box(b"mdat", &mdat));
    let mut ranges = Vec::new();
    if exif_in_idat {
        let at = out.windows(4).position(|w| w == b"idat").unwrap() + 4;
        ranges.push((at, at + exif.len()));
        ranges.push((data + coded.len(), data + coded.len() + xmp.len()));
    } else {
        ranges.push((data + coded.len(), data + coded.len() + exif.len()));
        let x = data + coded.len() + exif.len();
        ranges.push((x, x + xmp.len()));
    }
    (out, ranges)
}

pub fn heif_cases() -> Vec<Case> {
    let (heic, heic_ranges) = heif(b"heic", b"hvc1", false);
    let (avif, avif_ranges) = heif(b"avif", b"av01", true);
    vec![
        Case {
            name: "heic-exif-and-xmp-items",
            bytes: heic,
            content_type: "image/heic",
            decodable: false,
            mutable: Some(heic_ranges),
            exiftool_reads: true,
        },
        Case {
            name: "avif-exif-in-idat",
            bytes: avif,
            content_type: "image/avif",
            decodable: false,
            mutable: Some(avif_ranges),
            exiftool_reads: true,
        },
    ]
}

pub fn all_cases() -> Vec<Case> {
    let mut all = jpeg_cases();
    all.extend(png_cases());
    all.extend(webp_cases());
    all.extend(heif_cases());
    all
}
