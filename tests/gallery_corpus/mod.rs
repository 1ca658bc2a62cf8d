//! A venue's folder of phone photos, generated: two event subfolders with spaces and capitals
//! in their names, JPEG, PNG and WebP photos carrying Exif as phones write it (GPS position,
//! orientation, camera serial, owner) and a small HEIC (ISO-BMFF) file.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The original's GPS latitude as it is stored: three big-endian rationals, 51/1 30/1
/// 2621/100. Its bytes never appear in anything Lenscap sends.
pub const GPS_LATITUDE: [u8; 24] = [
    0, 0, 0, 51, 0, 0, 0, 1, 0, 0, 0, 30, 0, 0, 0, 1, 0, 0, 0x0A, 0x3D, 0, 0, 0, 100,
];

/// Camera serial and owner, as written.
pub const SERIAL: &str = "SN-4711-0815";
pub const OWNER: &str = "Jo Bloggs";

/// A TIFF (Exif) block, big-endian: IFD0 with Orientation 6, the Exif IFD pointer and the
/// GPS IFD pointer; the Exif IFD with the body serial and the owner; the GPS IFD with
/// latitude N 51°30'26.21" and longitude W 0°7'39".
pub fn exif_tiff() -> Vec<u8> {
    fn entry(out: &mut Vec<u8>, tag: u16, kind: u16, count: u32, value: [u8; 4]) {
        out.extend_from_slice(&tag.to_be_bytes());
        out.extend_from_slice(&kind.to_be_bytes());
        out.extend_from_slice(&count.to_be_bytes());
        out.extend_from_slice(&value);
    }
    let be = |v: u32| v.to_be_bytes();
    // Layout: header 8, IFD0 at 8 (3 entries: 2 + 36 + 4 = 42) → 50,
    // Exif IFD at 50 (2 entries: 2 + 24 + 4 = 30) → 80, its strings at 80 (13) and 93 (10),
    // GPS IFD at 104 (4 entries: 2 + 48 + 4 = 54) → 158, latitude at 158, longitude at 182.
    let (exif_at, serial_at, owner_at, gps_at, lat_at, lon_at) =
        (50u32, 80u32, 93u32, 104u32, 158u32, 182u32);
    let mut out = b"MM\0\x2a\0\0\0\x08".to_vec();
    out.extend_from_slice(&3u16.to_be_bytes());
    entry(&mut out, 0x0112, 3, 1, [0, 6, 0, 0]);
    entry(&mut out, 0x8769, 4, 1, be(exif_at));
    entry(&mut out, 0x8825, 4, 1, be(gps_at));
    out.extend_from_slice(&0u32.to_be_bytes());
    assert_eq!(out.len() as u32, exif_at);
    out.extend_from_slice(&2u16.to_be_bytes());
    entry(&mut out, 0xA430, 2, 10, be(owner_at)); // CameraOwnerName
    entry(&mut out, 0xA431, 2, 13, be(serial_at)); // BodySerialNumber
    out.extend_from_slice(&0u32.to_be_bytes());
    assert_eq!(out.len() as u32, serial_at);
    out.extend_from_slice(SERIAL.as_bytes());
    out.push(0);
    assert_eq!(out.len() as u32, owner_at);
    out.extend_from_slice(OWNER.as_bytes());
    out.push(0);
    out.push(0); // word alignment
    assert_eq!(out.len() as u32, gps_at);
    out.extend_from_slice(&4u16.to_be_bytes());
    entry(&mut out, 1, 2, 2, *b"N\0\0\0");
    entry(&mut out, 2, 5, 3, be(lat_at));
    entry(&mut out, 3, 2, 2, *b"W\0\0\0");
    entry(&mut out, 4, 5, 3, be(lon_at));
    out.extend_from_slice(&0u32.to_be_bytes());
    assert_eq!(out.len() as u32, lat_at);
    out.extend_from_slice(&GPS_LATITUDE);
    assert_eq!(out.len() as u32, lon_at);
    for (n, d) in [(0u32, 1u32), (7, 1), (39, 1)] {
        out.extend_from_slice(&n.to_be_bytes());
        out.extend_from_slice(&d.to_be_bytes());
    }
    out
}

fn picture(w: u32, h: u32, seed: u32) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([
            ((x * 7 + seed * 40) % 256) as u8,
            ((y * 5 + seed * 90) % 256) as u8,
            ((x + y + seed * 13) % 256) as u8,
        ])
    })
}

/// A JPEG with the Exif block in APP1 right after SOI.
pub fn jpeg(w: u32, h: u32, seed: u32) -> Vec<u8> {
    let mut plain = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut plain, 85)
        .encode_image(&picture(w, h, seed))
        .unwrap();
    let tiff = exif_tiff();
    let mut payload = b"Exif\0\0".to_vec();
    payload.extend_from_slice(&tiff);
    let mut out = plain[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&payload);
    out.extend_from_slice(&plain[2..]);
    out
}

fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc = crc32fast::Hasher::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(&crc.finalize().to_be_bytes());
    out
}

/// A PNG with an `eXIf` chunk before the image data.
pub fn png(w: u32, h: u32, seed: u32) -> Vec<u8> {
    let mut plain = Vec::new();
    picture(w, h, seed)
        .write_to(
            &mut std::io::Cursor::new(&mut plain),
            image::ImageFormat::Png,
        )
        .unwrap();
    // Signature (8) and IHDR (25), then eXIf.
    let mut out = plain[..33].to_vec();
    out.extend_from_slice(&png_chunk(b"eXIf", &exif_tiff()));
    out.extend_from_slice(&plain[33..]);
    out
}

fn riff_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = kind.to_vec();
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
    if data.len() % 2 == 1 {
        out.push(0);
    }
    out
}

/// A WebP in the extended layout (`VP8X` with the Exif flag), its bitstream, then `EXIF`.
pub fn webp(w: u32, h: u32, seed: u32) -> Vec<u8> {
    let mut plain = Vec::new();
    image::codecs::webp::WebPEncoder::new_lossless(&mut plain)
        .encode(
            picture(w, h, seed).as_raw(),
            w,
            h,
            image::ExtendedColorType::Rgb8,
        )
        .unwrap();
    assert_eq!(&plain[..4], b"RIFF");
    let bitstream = &plain[12..];
    let mut vp8x = vec![0x08, 0, 0, 0];
    vp8x.extend_from_slice(&(w - 1).to_le_bytes()[..3]);
    vp8x.extend_from_slice(&(h - 1).to_le_bytes()[..3]);
    let mut body = b"WEBP".to_vec();
    body.extend_from_slice(&riff_chunk(b"VP8X", &vp8x));
    body.extend_from_slice(bitstream);
    body.extend_from_slice(&riff_chunk(b"EXIF", &exif_tiff()));
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// A small ISO-BMFF file with the HEIC brand (not decodable: it stands for an iPhone photo
/// the gallery lists with a download link).
pub fn heic() -> Vec<u8> {
    let mut ftyp = b"heic".to_vec();
    ftyp.extend_from_slice(&0u32.to_be_bytes());
    ftyp.extend_from_slice(b"mif1heic");
    let mut out = ((ftyp.len() + 8) as u32).to_be_bytes().to_vec();
    out.extend_from_slice(b"ftyp");
    out.extend_from_slice(&ftyp);
    let meta_payload = [0u8; 4];
    out.extend_from_slice(&((meta_payload.len() + 8) as u32).to_be_bytes());
    out.extend_from_slice(b"meta");
    out.extend_from_slice(&meta_payload);
    out
}

/// The corpus folder: what each file is, by its path under the root.
pub struct Corpus {
    pub root: PathBuf,
    /// Browser-viewable photos (folder-relative paths).
    pub viewable: Vec<String>,
    /// HEIC photos.
    pub heic: Vec<String>,
}

/// Writes the corpus under a fresh folder named after `name`. The older event gets the
/// older modification times, so the newer one is listed first.
pub fn build(name: &str) -> Corpus {
    let root = std::env::temp_dir().join(format!("lenscap-corpus-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    type Files = Vec<(&'static str, Vec<u8>)>;
    let events: [(&str, u64, Files); 2] = [
        (
            "Summer Terrace 2026",
            1_000_000,
            vec![
                ("IMG_0001.JPG", jpeg(64, 48, 1)),
                ("IMG_0002.jpg", jpeg(48, 64, 2)),
                ("Sunset Toast.png", png(40, 30, 3)),
                ("Band On Stage.webp", webp(36, 24, 4)),
                ("IMG_0005.HEIC", heic()),
            ],
        ),
        (
            "Quiz Night",
            2_000_000,
            vec![
                ("Winning Team.jpg", jpeg(60, 40, 5)),
                ("IMG_0101.JPG", jpeg(40, 40, 6)),
                ("Scoreboard.PNG", png(30, 30, 7)),
                ("Prize Table.WebP", webp(32, 32, 8)),
                ("IMG_0104.heic", heic()),
            ],
        ),
    ];
    let mut viewable = Vec::new();
    let mut heic_files = Vec::new();
    for (event, age, files) in events {
        let dir = root.join(event);
        std::fs::create_dir_all(&dir).unwrap();
        let when = std::time::SystemTime::now() - std::time::Duration::from_secs(age);
        for (file, bytes) in files {
            let path = dir.join(file);
            std::fs::write(&path, bytes).unwrap();
            std::fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(when)
                .unwrap();
            let rel = format!("{event}/{file}");
            if file.to_ascii_lowercase().ends_with(".heic") {
                heic_files.push(rel);
            } else {
                viewable.push(rel);
            }
        }
    }
    Corpus {
        root,
        viewable,
        heic: heic_files,
    }
}

/// A folder-relative path as a URI path.
pub fn uri(rel: &str) -> String {
    let mut out = String::from("/");
    for b in rel.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What exiftool reads of GPS in `bytes` (empty: none). Panics when exiftool is missing: the
/// privacy tests must not pass without it.
pub fn exiftool_gps(bytes: &[u8], label: &str) -> String {
    let dir = std::env::temp_dir().join(format!("lenscap-exiftool-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let safe: String = label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let file = dir.join(format!("{n}-{safe}.bin"));
    std::fs::write(&file, bytes).unwrap();
    let output = std::process::Command::new("exiftool")
        .args(["-gps:all", "-s", "-s", "-m", "-q"])
        .arg(&file)
        .output()
        .expect("exiftool must be installed for the privacy tests (apt-get install libimage-exiftool-perl)");
    let _ = std::fs::remove_file(&file);
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Whether `haystack` contains `needle`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The corpus photo's original bytes.
pub fn original(corpus: &Corpus, rel: &str) -> Vec<u8> {
    std::fs::read(Path::new(&corpus.root).join(rel)).unwrap()
}
