//! Property tests: truncated and random inputs pass through byte-identical, never panic.

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
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// A truncated image is either passed through whole, or (when the cut falls after the
    /// header) stamped: never a panic, and a pass is byte-identical.
    #[test]
    fn truncated_prefixes(which in 0usize..8, cut in 0usize..4096) {
        let corpus = corpus();
        let full = &corpus[which];
        let input = &full[..cut.min(full.len())];
        let (out, outcome) = stamp_bytes(&stamp(), input);
        if let StampOutcome::PassedThrough(_) = outcome {
            prop_assert_eq!(&out, input);
        } else {
            prop_assert!(out.len() >= input.len());
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
    fn corrupted_images(which in 0usize..8, flips in proptest::collection::vec((0usize..600, any::<u8>()), 1..6)) {
        let mut input = corpus()[which].clone();
        for (at, v) in flips {
            let n = input.len();
            input[at % n] = v;
        }
        let strict = stamp_with(StampConfig { scrub_serials: true, ..StampConfig::default() });
        let (out, outcome) = stamp_bytes(&strict, &input);
        if let StampOutcome::PassedThrough(_) = outcome {
            prop_assert_eq!(out, input);
        }
    }
}

#[tokio::test]
async fn truncated_bodies_through_http_in_small_chunks() {
    let stamp = stamp();
    for full in corpus() {
        for cut in [1, 2, 3, 11, 12, 13, 20, 21, 29, 30, 33, 100, full.len() / 2] {
            let input = &full[..cut.min(full.len())];
            let served = serve(&stamp, input, "image/webp", Chunking::Fixed(1)).await;
            if let StampOutcome::PassedThrough(_) = served.outcome {
                assert_eq!(served.body, input);
            }
        }
    }
}
