//! The mutation test: thousands of odd and malformed variants of a corpus of real images
//! (truncations, length fields that lie, bad CRCs, flipped bits, inserted and deleted bytes),
//! generated deterministically from fixed seeds. For every variant that decodes, the stamp
//! returns it byte for byte or as an image that decodes to exactly the same pixels. A variant
//! that does not decode (the stamp streams, so it cannot know a file is truncated or its image
//! data broken before the end) may only have its metadata blanked in place or Lenscap's own
//! XMP added: no byte of it is lost, and nothing else is added.

mod stamp_support;

use lenscap::stamp::stamp_bytes;
use stamp_support::*;

/// The seed images: each format and container the stamp rewrites.
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "jpeg+exif",
            jpeg_with(
                &jpeg_baseline(16, 16),
                &[exif_segment(&exif_tiff(true)), icc_segment()],
            ),
        ),
        (
            "jpeg+exif-be",
            jpeg_with(&jpeg_baseline(12, 9), &[exif_segment(&exif_tiff(false))]),
        ),
        ("jpeg-progressive", fixtures::PROGRESSIVE_JPEG.to_vec()),
        (
            "png+exif",
            png_with(
                &png_encode(9, 9, true),
                &[chunk(b"eXIf", &exif_tiff(false))],
            ),
        ),
        ("png-interlaced", png_interlaced(9, 9)),
        ("webp-lossless", webp_lossless(8, 6, true)),
        ("webp+exif", webp_with_exif(&exif_tiff(true))),
        ("webp-animated", webp_animated()),
    ]
}

/// A small deterministic generator (xorshift64*), so every run tests the same variants.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Offsets of the length fields of the seed's containers (JPEG segment lengths, PNG chunk
/// lengths and CRCs, RIFF chunk sizes), where a lie hurts most.
fn structure_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    if bytes.starts_with(&[0xFF, 0xD8]) {
        let mut at = 2;
        while at + 4 <= bytes.len() && bytes[at] == 0xFF && bytes[at + 1] != 0xDA {
            out.push(at + 2);
            let len = u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]) as usize;
            at += 2 + len;
        }
    } else if bytes.starts_with(b"\x89PNG") {
        let mut at = 8;
        while at + 12 <= bytes.len() {
            let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            out.push(at);
            out.push((at + 8 + len).min(bytes.len() - 1));
            at += 12 + len;
        }
    } else if bytes.starts_with(b"RIFF") {
        out.push(4);
        let mut at = 12;
        while at + 8 <= bytes.len() {
            out.push(at + 4);
            let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
            at += 8 + len + (len & 1);
        }
    }
    out
}

fn mutate(seed: &[u8], rng: &mut Rng, kind: usize) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    let fields = structure_offsets(seed);
    match kind {
        // Truncated anywhere.
        0 => bytes.truncate(rng.below(seed.len())),
        // One bit flipped anywhere.
        1 => {
            let at = rng.below(bytes.len());
            bytes[at] ^= 1 << rng.below(8);
        }
        // A length field (or CRC) that lies.
        2 if !fields.is_empty() => {
            let at = fields[rng.below(fields.len())];
            let end = (at + 4).min(bytes.len());
            for b in &mut bytes[at..end] {
                *b = rng.next() as u8;
            }
        }
        // Bytes inserted.
        3 => {
            let at = rng.below(bytes.len());
            let n = 1 + rng.below(16);
            let junk: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            bytes.splice(at..at, junk);
        }
        // Bytes deleted.
        _ => {
            let at = rng.below(bytes.len());
            let n = (1 + rng.below(16)).min(bytes.len() - at);
            bytes.drain(at..at + n);
        }
    }
    bytes
}

/// The pixels of every frame (RGBA8, with its size), or `None` when the bytes do not decode.
fn pixels(bytes: &[u8]) -> Option<Vec<(u32, u32, Vec<u8>)>> {
    use image::AnimationDecoder;
    if bytes.starts_with(b"RIFF") && bytes.windows(4).any(|w| w == b"ANIM") {
        let decoder = image::codecs::webp::WebPDecoder::new(std::io::Cursor::new(bytes)).ok()?;
        return decoder
            .into_frames()
            .map(|frame| {
                let buffer = frame.ok()?.into_buffer();
                Some((buffer.width(), buffer.height(), buffer.into_raw()))
            })
            .collect();
    }
    let image = image::load_from_memory(bytes).ok()?.to_rgba8();
    Some(vec![(image.width(), image.height(), image.into_raw())])
}

/// The problems, counted by seed, mutation and kind of failure.
fn summary(problems: &[String]) -> String {
    let mut counts = std::collections::BTreeMap::new();
    for p in problems {
        let key = p
            .split_once(" #")
            .map(|(name, rest)| format!("{name} {}", rest.split_once(' ').map_or("", |r| r.1)))
            .unwrap_or_else(|| p.clone());
        let key = key.split(" (").take(2).collect::<Vec<_>>().join(" (");
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
        .iter()
        .map(|(k, n)| format!("{n:5} {k}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_variant_is_returned_whole_or_decodes_to_the_same_pixels() {
    let stamp = stamp();
    let mut rng = Rng(0x1e25_ca95_d00d_f00d);
    let (mut identical, mut rewritten, mut problems) = (0, 0, Vec::new());
    for (name, seed) in seeds() {
        // What stamping adds to this container: the XMP in its framing.
        let added = stamp_bytes(&stamp, &seed).0.len() - seed.len();
        for round in 0..500 {
            let kind = round % 5;
            let input = mutate(&seed, &mut rng, kind);
            let (output, outcome) = stamp_bytes(&stamp, &input);
            if output == input {
                identical += 1;
                continue;
            }
            rewritten += 1;
            match (pixels(&input), pixels(&output)) {
                (Some(before), Some(after)) if before == after => {}
                (None, _) if output.len() == input.len() || output.len() == input.len() + added => {}
                (None, _) => problems.push(format!(
                    "{name} #{round} (kind {kind}): undecodable input lost or gained bytes ({outcome:?}, {} -> {} bytes)",
                    input.len(),
                    output.len()
                )),
                (Some(_), None) => problems.push(format!(
                    "{name} #{round} (kind {kind}): the output no longer decodes ({outcome:?})"
                )),
                (Some(_), Some(_)) => problems.push(format!(
                    "{name} #{round} (kind {kind}): pixels changed ({outcome:?})"
                )),
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} of {} variants went wrong ({identical} identical, {rewritten} rewritten):\n{}",
        problems.len(),
        identical + rewritten,
        summary(&problems)
    );
    // The test means something only if both paths were taken many times.
    assert!(
        identical > 500 && rewritten > 500,
        "{identical} identical, {rewritten} rewritten"
    );
}
