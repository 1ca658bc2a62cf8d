//! PNG stamping: RGB, RGBA, Adam7-interlaced, eXIf GPS scrub, existing XMP.

mod stamp_support;

use lenscap::stamp::{PassReason, StampOutcome, stamp_bytes};
use stamp_support::*;

fn kinds(png: &[u8]) -> Vec<String> {
    png_chunks(png)
        .iter()
        .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
        .collect()
}

#[tokio::test]
async fn rgb_rgba_and_interlaced_get_itxt_before_idat() {
    let stamp = stamp();
    for input in [
        png_encode(33, 17, false),
        png_encode(20, 20, true),
        png_interlaced(19, 13),
    ] {
        let served = serve_all(&stamp, &input, "image/png").await;
        assert_eq!(served.outcome, StampOutcome::Stamped);
        assert_stamped_headers(&served);
        assert_eq!(frames(&input), frames(&served.body));
        let k = kinds(&served.body);
        let itxt = k.iter().position(|k| k == "iTXt").unwrap();
        let idat = k.iter().position(|k| k == "IDAT").unwrap();
        assert_eq!(itxt + 1, idat, "{k:?}");
        let xmp = png_xmp(&served.body);
        assert_eq!(xmp.len(), 1);
        assert_dmi(&xmp[0]);
        assert_eq!(
            served.body.len(),
            input.len() + 12 + 22 + stamp.packet().len()
        );
    }
    // Interlace flag really is set in the hand-made file.
    let ihdr = &png_chunks(&png_interlaced(19, 13))[0].1;
    assert_eq!(ihdr[12], 1);
}

#[tokio::test]
async fn exif_gps_removed_and_crc_recomputed() {
    let stamp = stamp();
    for le in [true, false] {
        let tiff = exif_tiff(le);
        let input = png_with(&png_encode(24, 24, true), &[chunk(b"eXIf", &tiff)]);
        let served = serve_all(&stamp, &input, "image/png").await;
        assert_eq!(served.outcome, StampOutcome::Both);
        assert_eq!(frames(&input), frames(&served.body));
        let exif = png_chunks(&served.body)
            .into_iter()
            .find(|(k, _)| k == b"eXIf")
            .unwrap()
            .1;
        assert_gps_gone(&tiff, &exif);
    }
}

#[tokio::test]
async fn existing_xmp_is_merged_or_left_alone() {
    let stamp = stamp();
    let mut itxt = b"XML:com.adobe.xmp\0\0\0\0\0".to_vec();
    itxt.extend(adobe_packet(1024, ""));
    let input = png_with(&png_encode(8, 8, false), &[chunk(b"iTXt", &itxt)]);
    let (out, outcome) = stamp_bytes(&stamp, &input);
    assert_eq!(outcome, StampOutcome::Both);
    assert_eq!(out.len(), input.len());
    let xmp = png_xmp(&out);
    assert_eq!(xmp.len(), 1);
    assert!(xmp[0].contains(DMI_URI) && !xmp[0].contains("GPS"));
    assert_eq!(frames(&input), frames(&out));

    // Compressed XMP: not ours to rewrite, and no second packet either.
    let mut z = b"XML:com.adobe.xmp\0\x01\0\0\0".to_vec();
    z.extend_from_slice(b"x\x9c\x03\0\0\0\0\x01");
    let input = png_with(&png_encode(8, 8, false), &[chunk(b"iTXt", &z)]);
    let (out, outcome) = stamp_bytes(&stamp, &input);
    assert_eq!(
        outcome,
        StampOutcome::PassedThrough(PassReason::NothingToDo)
    );
    assert_eq!(out, input);
}

#[test]
fn bad_ihdr_crc_or_missing_ihdr_pass_through() {
    let stamp = stamp();
    let mut input = png_encode(8, 8, false);
    input[8 + 8 + 13] ^= 0xFF; // IHDR CRC
    let (out, outcome) = stamp_bytes(&stamp, &input);
    assert_eq!(outcome, StampOutcome::PassedThrough(PassReason::Malformed));
    assert_eq!(out, input);

    let good = png_encode(8, 8, false);
    let mut no_ihdr = good[..8].to_vec();
    no_ihdr.extend_from_slice(&good[8 + 25..]);
    let (out, outcome) = stamp_bytes(&stamp, &no_ihdr);
    assert_eq!(outcome, StampOutcome::PassedThrough(PassReason::Malformed));
    assert_eq!(out, no_ihdr);
}

#[test]
fn apng_keeps_its_frames() {
    // acTL before IDAT marks an APNG; the iTXt goes before IDAT, sequence numbers untouched.
    let input = png_with(
        &png_encode(8, 8, false),
        &[chunk(b"acTL", &[0, 0, 0, 1, 0, 0, 0, 0])],
    );
    let (out, outcome) = stamp_bytes(&stamp(), &input);
    assert_eq!(outcome, StampOutcome::Stamped);
    assert_eq!(kinds(&out)[..4], ["IHDR", "acTL", "iTXt", "IDAT"]);
}
