//! WebP stamping: lossy, lossless, alpha, animated, EXIF after the image data.

mod stamp_support;

use lenscap::stamp::{PassReason, StampConfig, StampOutcome, stamp_bytes};
use stamp_support::*;

fn kinds(webp: &[u8]) -> Vec<String> {
    webp_chunks(webp)
        .iter()
        .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
        .collect()
}

/// Flags and canvas (width, height) of the VP8X chunk.
fn vp8x_of(webp: &[u8]) -> (u8, u32, u32) {
    let (k, d) = &webp_chunks(webp)[0];
    assert_eq!(k, b"VP8X");
    let w = u32::from_le_bytes([d[4], d[5], d[6], 0]) + 1;
    let h = u32::from_le_bytes([d[7], d[8], d[9], 0]) + 1;
    (d[0], w, h)
}

#[tokio::test]
async fn simple_files_become_extended_with_xmp_last() {
    let stamp = stamp();
    let cases: [(&[u8], &str, u8); 3] = [
        (fixtures::LOSSY_WEBP, "VP8 ", 0x04),
        (&webp_lossless(31, 9, false), "VP8L", 0x04),
        (&webp_lossless(12, 7, true), "VP8L", 0x14),
    ];
    for (input, kind, flags) in cases {
        assert_eq!(kinds(input), vec![kind]);
        let served = serve_all(&stamp, input, "image/webp").await;
        assert_eq!(served.outcome, StampOutcome::Stamped);
        assert_stamped_headers(&served);
        assert_eq!(frames(input), frames(&served.body), "{kind}");
        assert_eq!(kinds(&served.body), vec!["VP8X", kind, "XMP "]);
        let (f, w, h) = vp8x_of(&served.body);
        let (w0, h0, _) = &frames(input)[0];
        assert_eq!((f, w, h), (flags, *w0, *h0), "{kind}");
        assert_dmi(&webp_xmp(&served.body)[0]);
    }
}

#[tokio::test]
async fn lossy_with_alpha_vp8x_gets_flag_and_chunk() {
    let stamp = stamp();
    let input = fixtures::LOSSY_ALPHA_WEBP;
    assert_eq!(kinds(input), vec!["VP8X", "ALPH", "VP8 "]);
    let served = serve_all(&stamp, input, "image/webp").await;
    assert_eq!(served.outcome, StampOutcome::Stamped);
    assert_eq!(frames(input), frames(&served.body));
    assert_eq!(kinds(&served.body), vec!["VP8X", "ALPH", "VP8 ", "XMP "]);
    assert_eq!(vp8x_of(&served.body).0, vp8x_of(input).0 | 0x04);
    // Everything but the RIFF size and flags byte is unchanged up to the old end.
    assert_eq!(&served.body[8..20], &input[8..20]);
    assert_eq!(&served.body[21..input.len()], &input[21..]);
}

#[tokio::test]
async fn animated_keeps_frames() {
    let stamp = stamp();
    let input = webp_animated();
    let before = frames(&input);
    assert_eq!(before.len(), 2);
    let served = serve_all(&stamp, &input, "image/webp").await;
    assert_eq!(served.outcome, StampOutcome::Stamped);
    assert_eq!(before, frames(&served.body));
    assert_eq!(
        kinds(&served.body),
        vec!["VP8X", "ANIM", "ANMF", "ANMF", "XMP "]
    );
    assert_eq!(vp8x_of(&served.body).0, 0x02 | 0x10 | 0x04);
}

#[tokio::test]
async fn exif_after_image_data_is_scrubbed_in_stream() {
    let stamp = stamp();
    for le in [true, false] {
        let tiff = exif_tiff(le);
        let input = webp_with_exif(&tiff);
        let served = serve_all(&stamp, &input, "image/webp").await;
        assert_eq!(served.outcome, StampOutcome::Both);
        assert_eq!(frames(&input), frames(&served.body));
        assert_eq!(kinds(&served.body), vec!["VP8X", "VP8L", "EXIF", "XMP "]);
        let exif = webp_chunks(&served.body)[2].1.clone();
        assert_gps_gone(&tiff, &exif);
    }
}

#[tokio::test]
async fn existing_xmp_flag_means_leave_xmp_alone() {
    let stamp = stamp();
    let simple = webp_lossless(8, 8, false);
    let vp8l = webp_chunks(&simple)[0].1.clone();
    let input = riff(&[
        vp8x(0x04, 8, 8),
        riff_chunk(b"VP8L", &vp8l),
        riff_chunk(b"XMP ", b"<x:xmpmeta/>"),
    ]);
    let served = serve(&stamp, &input, "image/webp", Chunking::Fixed(3)).await;
    assert_eq!(
        served.outcome,
        StampOutcome::PassedThrough(PassReason::NothingToDo)
    );
    assert_eq!(served.body, input);
    assert_eq!(served.headers["etag"], "\"v1\"");
}

#[test]
fn declared_length_shorter_than_riff_passes_through() {
    let input = webp_lossless(8, 8, false);
    let cut = &input[..input.len() - 4];
    let (out, outcome) = stamp_bytes(&stamp(), cut);
    assert_eq!(outcome, StampOutcome::PassedThrough(PassReason::Truncated));
    assert_eq!(out, cut);
}

#[test]
fn trailing_bytes_after_riff_stay_after_the_xmp_chunk() {
    let mut input = webp_lossless(8, 8, false);
    let riff_len = input.len();
    input.extend_from_slice(b"trailer");
    let (out, _) = stamp_bytes(&stamp(), &input);
    assert!(out.ends_with(b"trailer"));
    assert_eq!(kinds(&out[..out.len() - 7]), vec!["VP8X", "VP8L", "XMP "]);
    assert!(out.len() > riff_len);
}

#[test]
fn scrub_only_leaves_simple_files_alone() {
    let s = stamp_with(StampConfig {
        xmp: false,
        ..StampConfig::default()
    });
    let input = webp_lossless(8, 8, true);
    let (out, outcome) = stamp_bytes(&s, &input);
    assert_eq!(
        outcome,
        StampOutcome::PassedThrough(PassReason::NothingToDo)
    );
    assert_eq!(out, input);
}
