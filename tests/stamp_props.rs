//! Property tests: truncated and random inputs pass through byte-identical, never panic;
//! whatever decodes before stamping decodes to the same pixels after.

mod stamp_support;

use lenscap::stamp::{StampConfig, StampOutcome, stamp_bytes};
use proptest::prelude::*;
use stamp_support::*;

fn corpus() -> Vec<Vec<u8>> {
    vec![
        jpeg_with(
            &jpeg_baseline(16, 16),
            &[exif_segment(&exif_tiff(true)), icc_segment()],
        ),
        fixtures::PROGRESSIVE_JPEG.to_vec(),
        png_with(
            &png_encode(9, 9, true),
            &[chunk(b"eXIf", &exif_tiff(false))],
        ),
        png_interlaced(9, 9),
        fixtures::LOSSY_WEBP.to_vec(),
        fixtures::LOSSY_ALPHA_WEBP.to_vec(),
        webp_with_exif(&exif_tiff(true)),
        webp_animated(),
    ]
    .into_iter()
    .chain(
        stamp_support::corpus::all_cases()
            .into_iter()
            .map(|c| c.bytes),
    )
    .collect()
}

/// Whether a WebP's chunks tile its RIFF payload exactly (always true for other formats).
/// A WebP whose later chunks do not add up is not checked for pixels: its XMP flag and tail
/// were decided before the broken chunk streamed by (see "Unsupported" in `stamp`).
fn riff_consistent(bytes: &[u8]) -> bool {
    if !bytes.starts_with(b"RIFF") || bytes.len() < 12 {
        return true;
    }
    let end = 8 + u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
    let mut pos = 12;
    while pos + 8 <= end.min(bytes.len()) {
        let n = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap()) as usize;
        pos += 8 + n + (n & 1);
    }
    pos == end
}

/// The decoded pixels, if the bytes decode at all.
fn pixels(bytes: &[u8]) -> Option<(u32, u32, Vec<u8>)> {
    let img = image::load_from_memory(bytes).ok()?.to_rgba8();
    Some((img.width(), img.height(), img.into_raw()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// A truncated image is either passed through whole, or (when the cut falls after the
    /// header) stamped: never a panic, and a pass is byte-identical.
    #[test]
    fn truncated_prefixes(which in 0usize..64, cut in 0usize..4096) {
        let corpus = corpus();
        let full = &corpus[which % corpus.len()];
        let input = &full[..cut.min(full.len())];
        let (out, outcome) = stamp_bytes(&stamp(), input);
        if let StampOutcome::PassedThrough(_) = outcome {
            prop_assert_eq!(&out, input);
        } else {
            prop_assert!(out.len() >= input.len());
        }
        if let Some(before) = pixels(input) {
            prop_assert_eq!(Some(before), pixels(&out));
        }
    }

    #[test]
    fn random_bytes_pass_through(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let (out, outcome) = stamp_bytes(&stamp(), &data);
        prop_assert!(matches!(outcome, StampOutcome::PassedThrough(_)));
        prop_assert_eq!(out, data);
    }

    /// Random bytes behind a valid magic exercise every parser's bounds checks.
    #[test]
    fn random_bytes_behind_magic(magic in 0usize..5, data in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let mut input = match magic {
            0 => vec![0xFF, 0xD8, 0xFF],
            1 => b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec(),
            2 => b"RIFF\xf0\x03\0\0WEBPVP8X".to_vec(),
            3 => b"RIFF\xf0\x03\0\0WEBPVP8L".to_vec(),
            _ => b"RIFF\xf0\x03\0\0WEBPVP8 ".to_vec(),
        };
        input.extend_from_slice(&data);
        let strict = stamp_with(StampConfig { scrub_serials: true, ..StampConfig::default() });
        let (out, outcome) = stamp_bytes(&strict, &input);
        if let StampOutcome::PassedThrough(_) = outcome {
            prop_assert_eq!(out, input);
        }
    }

    /// Flipping bytes of a valid image never panics; decodable output keeps its pixels.
    #[test]
    fn corrupted_images(which in 0usize..64, flips in proptest::collection::vec((0usize..600, any::<u8>()), 1..6)) {
        let corpus = corpus();
        let mut input = corpus[which % corpus.len()].clone();
        for (at, v) in flips {
            let n = input.len();
            input[at % n] = v;
        }
        let strict = stamp_with(StampConfig { scrub_serials: true, ..StampConfig::default() });
        let (out, outcome) = stamp_bytes(&strict, &input);
        if let StampOutcome::PassedThrough(_) = outcome {
            prop_assert_eq!(&out, &input);
        }
        // Withheld (empty) output aside, a decodable input keeps its pixels.
        if !out.is_empty() && riff_consistent(&input) && let Some(before) = pixels(&input) {
            prop_assert_eq!(Some(before), pixels(&out));
        }
    }
}

/// The pixel check above is real: every image of the corpus decodes (the hand-built
/// HEIF/AVIF aside), so a stamp that touched pixels would be caught.
#[test]
fn corpus_decodes() {
    let corpus = corpus();
    let decodable = corpus.iter().filter(|b| pixels(b).is_some()).count();
    let heif = stamp_support::corpus::heif_cases().len();
    // The animated WebP decodes through `frames`, not `load_from_memory`.
    assert!(
        decodable >= corpus.len() - heif - 1,
        "{decodable} of {}",
        corpus.len()
    );
    for full in &corpus {
        let (out, _) = stamp_bytes(&stamp(), full);
        if let Some(before) = pixels(full) {
            assert_eq!(Some(before), pixels(&out));
        }
    }
}

#[tokio::test]
async fn truncated_bodies_through_http_in_small_chunks() {
    let stamp = stamp();
    // The first eight images flag their metadata in the header. The privacy corpus has
    // blocks the header does not announce, which a streamed pass still scrubs: for those
    // the check is that no position leaves.
    for full in corpus().into_iter().skip(8) {
        for cut in [12, 13, 21, 33, 100, 400, 900, full.len() / 2, full.len()] {
            let input = &full[..cut.min(full.len())];
            let served = serve(&stamp, input, "image/webp", Chunking::Fixed(1)).await;
            for n in stamp_support::corpus::position_needles() {
                assert!(!served.body.windows(n.len()).any(|w| w == n), "cut {cut}");
            }
        }
    }
    for full in corpus().into_iter().take(8) {
        for cut in [1, 2, 3, 11, 12, 13, 20, 21, 29, 30, 33, 100, full.len() / 2] {
            let input = &full[..cut.min(full.len())];
            let served = serve(&stamp, input, "image/webp", Chunking::Fixed(1)).await;
            if let StampOutcome::PassedThrough(_) = served.outcome {
                assert_eq!(served.body, input);
            }
        }
    }
}
