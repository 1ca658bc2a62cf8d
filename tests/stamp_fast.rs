//! The stamper's fast paths keep the privacy invariant where a shortcut would miss:
//!
//! - JPEG: the walker over entropy-coded data finds a marker segment holding a location
//!   after the first scan at every offset (of a 64-byte block, of a frame, right after a
//!   restart marker, after densely stuffed data), and a second image appended after `EOI`:
//!   the guard any faster scan of that data must keep.
//! - A header that needs no change goes out as slices of the input around the prebuilt
//!   stamp: an Exif `APP1` (JPEG) or text chunk (PNG) that holds a location still gets the
//!   rewritten, scrubbed header, one without gets exactly the input plus the stamp.
//! - PNG chunk headers after `IDAT` are passed on as slices when a frame holds them whole,
//!   and frames a walker passes whole as they came: an `eXIf` with GPS after many `IDAT`
//!   chunks is scrubbed, with the same output, whatever the frame edges.
//! - A small WebP's chunk layout is checked over the frames as they came, without joining
//!   them: the output, headers and outcome are the same in every chunking, an `EXIF` chunk
//!   with GPS in a later frame is scrubbed, and a chunk size that breaks the layout in a
//!   later frame still stops the XMP from being added.

mod stamp_support;

use lenscap::stamp::{StampConfig, StampOutcome, stamp_bytes};
use stamp_support::corpus::{GpsIn, V, gps_packet, phone_tiff, position_needles, tiff};
use stamp_support::*;

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn assert_no_position(out: &[u8], what: &str) {
    for needle in position_needles() {
        assert!(
            !contains(out, &needle),
            "{what}: position left in the output"
        );
    }
}

/// A baseline JPEG whose entropy-coded data is `filler` bytes of noise with stuffed `FF 00`
/// and restart markers in it, then (with `restart`) one more restart marker and two bytes,
/// then an Exif `APP1` with GPS (as between two scans), then a second scan and `EOI`.
fn jpeg_with_late_exif(filler: usize, restart: bool) -> Vec<u8> {
    let mut scan = Vec::new();
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ filler as u64;
    for i in 0..filler {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let b = (state >> 24) as u8;
        if b == 0xFF {
            scan.extend_from_slice(&[0xFF, if i % 2 == 0 { 0x00 } else { 0xD1 }]);
        } else {
            scan.push(b);
        }
    }
    if restart {
        scan.extend_from_slice(&[0xFF, 0xD2, 0x13, 0x37]);
    }
    jpeg_with_exif_after(&scan)
}

/// A baseline JPEG whose entropy-coded data is `scan`, then an Exif `APP1` with GPS, a
/// second scan and `EOI`.
fn jpeg_with_exif_after(scan: &[u8]) -> Vec<u8> {
    let base = jpeg_baseline(16, 16);
    let sos = base
        .windows(2)
        .position(|w| w == [0xFF, 0xDA])
        .expect("SOS");
    let sos_len = usize::from(u16::from_be_bytes([base[sos + 2], base[sos + 3]]));
    let mut out = base[..sos + 2 + sos_len].to_vec();
    out.extend_from_slice(scan);
    out.extend(exif_segment(&phone_tiff(true, GpsIn::Ifd0)));
    out.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x3F, 0x00]);
    out.extend_from_slice(&[0x12, 0x34, 0xFF, 0x00, 0x56]);
    out.extend_from_slice(&[0xFF, 0xD9]);
    out
}

#[tokio::test]
async fn jpeg_exif_after_the_scan_is_found_at_every_block_offset() {
    let stamp = stamp();
    // 200 fillers in a row cover every offset of the segment's FF within a 64-byte block,
    // and, with the header before them, every offset within a 7- and a 64-byte frame.
    for filler in 1000..1200 {
        let input = jpeg_with_late_exif(filler, false);
        let (whole, outcome) = stamp_bytes(&stamp, &input);
        assert_eq!(outcome, StampOutcome::Stamped, "filler {filler}");
        assert_no_position(&whole, &format!("filler {filler}"));
        for chunking in [
            Chunking::Fixed(64),
            Chunking::Fixed(61),
            Chunking::Random(filler as u64),
        ] {
            let served = serve(&stamp, &input, "image/jpeg", chunking).await;
            assert_eq!(
                served.body, whole,
                "filler {filler}: chunking changed the output"
            );
        }
    }
}

#[tokio::test]
async fn jpeg_exif_after_the_scan_of_an_unchanged_header_is_found_at_every_offset() {
    let stamp = stamp();
    // The header needs no change, so it goes out as slices around the stamp; the scan after
    // it is still walked. 260 fillers put the segment's FF (right after a restart marker or
    // not) at every offset of the frames below, and their edges inside the segment's start.
    for filler in 3000..3260 {
        for restart in [false, true] {
            let what = format!("filler {filler}, restart marker {restart}");
            let input = jpeg_with_late_exif(filler, restart);
            let (whole, outcome) = stamp_bytes(&stamp, &input);
            assert_eq!(outcome, StampOutcome::Stamped, "{what}");
            assert_no_position(&whole, &what);
            // The APP1 XMP segment: marker, length, namespace, packet; nothing else grew.
            let added = 2 + 2 + 29 + stamp.packet().len();
            assert_eq!(whole.len(), input.len() + added, "{what}");
            for chunking in [
                Chunking::Fixed(255),
                Chunking::Fixed(256),
                Chunking::Fixed(16 * 1024),
            ] {
                let served = serve(&stamp, &input, "image/jpeg", chunking).await;
                assert_eq!(served.body, whole, "{what}: chunking changed the output");
            }
        }
    }
}

#[tokio::test]
async fn jpeg_exif_after_densely_stuffed_scan_data_is_found() {
    let stamp = stamp();
    // Every other byte an `FF` (stuffed, a restart marker, or fill before the segment's own
    // marker): the search for the next `FF` restarts on very short stretches, at every
    // alignment, and the segment's `FF` follows a run of them.
    let patterns: [&[u8]; 3] = [&[0xFF, 0x00], &[0xFF, 0xD3], &[0x5A, 0xFF, 0x00]];
    for pattern in patterns {
        for run in 0..70 {
            let mut scan = pattern.repeat(run);
            scan.extend(std::iter::repeat_n(0xFF, run % 3));
            let input = jpeg_with_exif_after(&scan);
            let what = format!("{pattern:02X?} x {run}");
            let (whole, outcome) = stamp_bytes(&stamp, &input);
            assert_eq!(outcome, StampOutcome::Stamped, "{what}");
            assert_no_position(&whole, &what);
            for chunking in [Chunking::Fixed(33), Chunking::Random(run as u64)] {
                let served = serve(&stamp, &input, "image/jpeg", chunking).await;
                assert_eq!(served.body, whole, "{what}: chunking changed the output");
            }
        }
    }
}

#[tokio::test]
async fn jpeg_appended_after_eoi_is_scrubbed_at_every_block_offset() {
    let stamp = stamp();
    let second = jpeg_with(
        &jpeg_baseline(8, 8),
        &[exif_segment(&phone_tiff(false, GpsIn::Ifd0))],
    );
    for filler in 0..130 {
        let mut input = jpeg_baseline(24, 24);
        input.extend(std::iter::repeat_n(0u8, filler));
        input.extend_from_slice(&second);
        let served = serve_all(&stamp, &input, "image/jpeg").await;
        assert_eq!(served.outcome, StampOutcome::Stamped);
        assert_no_position(&served.body, &format!("appended after {filler} zeros"));
        assert_eq!(frames(&input)[0], frames(&served.body)[0], "same pixels");
    }
}

/// A lossless WebP of about 40 KB (noise does not compress), with an `EXIF` chunk after the
/// image data, as cameras and editors write it.
fn webp_noise_with_exif() -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let img = image::RgbImage::from_fn(110, 110, |_, _| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let b = state.to_le_bytes();
        image::Rgb([b[0], b[1], b[2]])
    });
    let mut simple = Vec::new();
    image::codecs::webp::WebPEncoder::new_lossless(&mut simple)
        .encode(img.as_raw(), 110, 110, image::ExtendedColorType::Rgb8)
        .unwrap();
    let vp8l = webp_chunks(&simple)[0].1.clone();
    riff(&[
        vp8x(0x08, 110, 110),
        riff_chunk(b"VP8L", &vp8l),
        riff_chunk(b"EXIF", &phone_tiff(true, GpsIn::Ifd0)),
    ])
}

#[tokio::test]
async fn small_webp_layout_is_checked_over_frames_and_late_exif_scrubbed() {
    let stamp = stamp();
    let input = webp_noise_with_exif();
    assert!(input.len() > 30_000, "{} bytes", input.len());
    let (whole, outcome) = stamp_bytes(&stamp, &input);
    assert_eq!(outcome, StampOutcome::Both);
    assert_no_position(&whole, "webp, whole");
    assert_eq!(webp_xmp(&whole).len(), 1, "XMP added");
    let served = serve_all(&stamp, &input, "image/webp").await;
    assert_eq!(served.body, whole);
    for size in [1000, 4096, 16 * 1024] {
        let other = serve(&stamp, &input, "image/webp", Chunking::Fixed(size)).await;
        assert_eq!(other.body, whole, "{size}-byte frames");
        assert_eq!(other.headers, served.headers, "{size}-byte frames");
        assert_eq!(other.outcome, served.outcome, "{size}-byte frames");
    }
    assert_eq!(frames(&input), frames(&served.body), "same pixels");
}

#[tokio::test]
async fn small_webp_with_a_broken_layout_in_a_later_frame_gets_no_xmp() {
    let stamp = stamp();
    let mut input = webp_noise_with_exif();
    // The EXIF chunk claims two bytes fewer than it has: chunk boundaries no longer meet the
    // RIFF end, and that is only visible past the first frames.
    let exif_at = input.len() - phone_tiff(true, GpsIn::Ifd0).len() - 8;
    assert_eq!(&input[exif_at..exif_at + 4], b"EXIF");
    let size = u32::from_le_bytes(input[exif_at + 4..exif_at + 8].try_into().unwrap());
    input[exif_at + 4..exif_at + 8].copy_from_slice(&(size - 2).to_le_bytes());
    let (whole, outcome) = stamp_bytes(&stamp, &input);
    assert!(
        !contains(&whole, b"plus:DataMining"),
        "no XMP on a broken layout"
    );
    assert_eq!(whole.len(), input.len(), "nothing inserted");
    assert_eq!(&whole[..30], &input[..30], "header untouched");
    assert_no_position(&whole, "webp with a broken layout");
    for size in [1000, 16 * 1024] {
        let served = serve(&stamp, &input, "image/webp", Chunking::Fixed(size)).await;
        assert_eq!(served.body, whole, "{size}-byte frames");
        assert_eq!(served.outcome, outcome, "{size}-byte frames");
        assert_eq!(
            served.headers["content-length"],
            input.len().to_string().as_str()
        );
    }
}

/// Exif that holds nothing the scrub removes: Make and Orientation only.
fn plain_tiff() -> Vec<u8> {
    tiff(
        true,
        &[vec![
            (0x010F, V::Ascii("Lenscap Cam")),
            (0x0112, V::Short(1)),
        ]],
        &[0],
    )
}

/// The output with the one segment or chunk that was added cut out again.
fn without(out: &[u8], at: usize, len: usize) -> Vec<u8> {
    [&out[..at], &out[at + len..]].concat()
}

#[tokio::test]
async fn jpeg_header_that_needs_no_change_is_the_input_around_the_stamp() {
    let stamp = stamp();
    let input = jpeg_with(
        &jpeg_baseline(32, 32),
        &[exif_segment(&plain_tiff()), icc_segment()],
    );
    let served = serve_all(&stamp, &input, "image/jpeg").await;
    assert_eq!(served.outcome, StampOutcome::Stamped);
    // The XMP segment sits right after APP0 and the Exif APP1; nothing else moved.
    let exif_end = input
        .windows(2)
        .position(|w| w == [0xFF, 0xE2])
        .expect("the ICC segment");
    assert_eq!(&served.body[exif_end..exif_end + 2], &[0xFF, 0xE1]);
    let seg_len = 2 + usize::from(u16::from_be_bytes([
        served.body[exif_end + 2],
        served.body[exif_end + 3],
    ]));
    assert!(served.body[exif_end + 4..].starts_with(XMP_NS));
    assert_eq!(without(&served.body, exif_end, seg_len), input);
    assert_eq!(frames(&input), frames(&served.body), "same pixels");
}

#[tokio::test]
async fn jpeg_header_with_a_location_is_still_rewritten_and_scrubbed() {
    let stamp = stamp();
    for (name, extra) in [
        (
            "Exif with GPS",
            exif_segment(&phone_tiff(false, GpsIn::ExifIfd)),
        ),
        ("XMP with GPS", xmp_segment(&gps_packet())),
    ] {
        let input = jpeg_with(&jpeg_baseline(32, 32), &[icc_segment(), extra]);
        let served = serve_all(&stamp, &input, "image/jpeg").await;
        assert!(served.outcome.is_modified(), "{name}");
        assert_no_position(&served.body, name);
        assert_eq!(frames(&input), frames(&served.body), "{name}: same pixels");
    }
    // With the serial scrub off, GPS in the Exif still sends the header to the rewrite.
    let input = jpeg_with(
        &jpeg_baseline(32, 32),
        &[exif_segment(&phone_tiff(true, GpsIn::Ifd0))],
    );
    let no_serials = stamp_with(StampConfig {
        scrub_serials: false,
        ..StampConfig::default()
    });
    let served = serve_all(&no_serials, &input, "image/jpeg").await;
    assert_eq!(served.outcome, StampOutcome::Both);
    assert_no_position(&served.body, "Exif with GPS, serials kept");
}

/// A PNG whose image data is cut into many small `IDAT` chunks (as libpng writes 8 KiB
/// ones), with `before` chunks ahead of the first `IDAT` and `after` chunks before `IEND`.
fn png_many_idats(before: &[Vec<u8>], after: &[Vec<u8>]) -> Vec<u8> {
    let png = png_encode(96, 96, false);
    let chunks = png_chunks(&png);
    let data: Vec<u8> = chunks
        .iter()
        .filter(|(k, _)| k == b"IDAT")
        .flat_map(|(_, d)| d.clone())
        .collect();
    let mut out = png[..8].to_vec();
    out.extend(chunk(b"IHDR", &chunks[0].1));
    for c in before {
        out.extend_from_slice(c);
    }
    for part in data.chunks(101) {
        out.extend(chunk(b"IDAT", part));
    }
    for c in after {
        out.extend_from_slice(c);
    }
    out.extend(chunk(b"IEND", &[]));
    out
}

#[tokio::test]
async fn png_exif_after_many_idat_chunks_is_scrubbed_at_every_frame_edge() {
    let stamp = stamp();
    let exif = chunk(b"eXIf", &phone_tiff(false, GpsIn::Ifd0));
    let input = png_many_idats(&[], &[exif]);
    let (whole, outcome) = stamp_bytes(&stamp, &input);
    // The outcome follows from the header; the late eXIf is scrubbed all the same.
    assert_eq!(outcome, StampOutcome::Stamped);
    assert_no_position(&whole, "png, whole");
    // Frame sizes around the chunk length put every chunk header across a frame edge at
    // every offset somewhere in the file.
    for size in (1..14).chain(100..116) {
        let served = serve(&stamp, &input, "image/png", Chunking::Fixed(size)).await;
        assert_eq!(served.body, whole, "{size}-byte frames");
    }
    let served = serve_all(&stamp, &input, "image/png").await;
    assert_eq!(served.body, whole);
    png_chunks(&served.body);
    assert_eq!(frames(&input), frames(&served.body), "same pixels");
}

#[tokio::test]
async fn png_header_that_needs_no_change_is_the_input_and_the_stamp() {
    let stamp = stamp();
    let text = chunk(b"tEXt", b"Comment\0terrace reopening");
    let input = png_many_idats(&[text], &[]);
    let served = serve_all(&stamp, &input, "image/png").await;
    assert_eq!(served.outcome, StampOutcome::Stamped);
    let idat = input.windows(4).position(|w| w == b"IDAT").expect("IDAT") - 4;
    assert_eq!(&served.body[idat + 4..idat + 8], b"iTXt", "XMP before IDAT");
    let len = u32::from_be_bytes(served.body[idat..idat + 4].try_into().unwrap()) as usize;
    assert_eq!(without(&served.body, idat, len + 12), input);
    assert_eq!(png_xmp(&served.body).len(), 1);
}

#[tokio::test]
async fn png_text_with_a_location_before_idat_is_still_scrubbed() {
    let stamp = stamp();
    let mut text = b"Comment\0".to_vec();
    text.extend(gps_packet());
    let input = png_many_idats(&[chunk(b"tEXt", &text)], &[]);
    let served = serve_all(&stamp, &input, "image/png").await;
    assert_eq!(served.outcome, StampOutcome::Both);
    assert_no_position(&served.body, "png tEXt with GPS");
    png_chunks(&served.body);
    assert_eq!(frames(&input), frames(&served.body), "same pixels");
}
