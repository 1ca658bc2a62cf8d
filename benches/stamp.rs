//! Stamping throughput against a plain copy through the same body plumbing, in one run.
//!
//! Each image is served as 16 KiB frames (what a file body yields) through a `StreamBody`;
//! "copy" wraps that body in `StampBody::passthrough` and drains it into a buffer, "stamp"
//! runs `stamp_response` on it and drains the result the same way. JPEG, PNG and WebP
//! (lossless), about 100 KB, 1 MB and 5 MB each, made of noise so no encoder shrinks them.
//!
//! `cargo bench --bench stamp`: for each image, rounds of copy and stamp alternate (so load
//! from other processes hits both alike); prints the median time of each and the ratio
//! stamp / copy. Target: at most 1.10 (within 10% of a copy).
//!
//! Instructions: `LENSCAP_BENCH_ROUNDS=3 LENSCAP_BENCH_ONLY=png/100KB valgrind --tool=callgrind
//! --toggle-collect=stamp::drive_stamp target/release/deps/stamp-…` (one image; `drive_copy`
//! likewise), then `callgrind_annotate`.

use std::convert::Infallible;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::stream;
use http_body::{Body, Frame};
use http_body_util::{BodyExt, StreamBody};
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::codecs::webp::WebPEncoder;
use image::{ExtendedColorType, ImageEncoder, RgbImage};
use lenscap::stamp::{Stamp, StampBody, StampConfig, StampOutcome, stamp_response};

const FRAME: usize = 16 * 1024;

type FrameBody = StreamBody<stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

#[derive(Clone, Copy)]
enum Kind {
    Jpeg,
    Png,
    Webp,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Jpeg => "jpeg",
            Kind::Png => "png",
            Kind::Webp => "webp",
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Kind::Jpeg => "image/jpeg",
            Kind::Png => "image/png",
            Kind::Webp => "image/webp",
        }
    }

    fn encode(self, img: &RgbImage) -> Vec<u8> {
        let (w, h) = img.dimensions();
        let mut out = Vec::new();
        match self {
            Kind::Jpeg => JpegEncoder::new_with_quality(&mut out, 92)
                .encode_image(img)
                .unwrap(),
            Kind::Png => PngEncoder::new(&mut out)
                .write_image(img.as_raw(), w, h, ExtendedColorType::Rgb8)
                .unwrap(),
            Kind::Webp => WebPEncoder::new_lossless(&mut out)
                .write_image(img.as_raw(), w, h, ExtendedColorType::Rgb8)
                .unwrap(),
        }
        out
    }
}

fn noise(w: u32, h: u32) -> RgbImage {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    RgbImage::from_fn(w, h, |_, _| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let b = state.to_le_bytes();
        image::Rgb([b[0], b[1], b[2]])
    })
}

/// An image of about `target` bytes: grows a noise image until the encoding is that large.
fn image_of(target: usize, kind: Kind) -> Vec<u8> {
    let mut side = 64u32;
    loop {
        let out = kind.encode(&noise(side, side));
        if out.len() >= target {
            return out;
        }
        let scale = (target as f64 / out.len() as f64).sqrt().max(1.05);
        side = (side as f64 * scale).ceil() as u32;
    }
}

fn frames(bytes: &Bytes) -> Vec<Result<Frame<Bytes>, Infallible>> {
    (0..bytes.len())
        .step_by(FRAME)
        .map(|at| Ok(Frame::data(bytes.slice(at..(at + FRAME).min(bytes.len())))))
        .collect()
}

fn response(bytes: &Bytes, kind: Kind) -> http::Response<FrameBody> {
    http::Response::builder()
        .header("content-type", kind.content_type())
        .header("content-length", bytes.len())
        .header("etag", "\"bench\"")
        .body(StreamBody::new(stream::iter(frames(bytes))))
        .unwrap()
}

/// Drains a body that never waits (every frame is ready).
fn drain<B>(mut body: B, sink: &mut Vec<u8>) -> usize
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Debug,
{
    sink.clear();
    while let Some(frame) = body.frame().now_or_never().expect("ready") {
        if let Ok(data) = frame.unwrap().into_data() {
            sink.extend_from_slice(&data);
        }
    }
    sink.len()
}

#[inline(never)]
fn drive_copy(bytes: &Bytes, kind: Kind, sink: &mut Vec<u8>) -> usize {
    let body = StampBody::passthrough(response(bytes, kind).into_body());
    drain(body, sink)
}

#[inline(never)]
fn drive_stamp(bytes: &Bytes, kind: Kind, stamp: &Arc<Stamp>, sink: &mut Vec<u8>) -> usize {
    let stamped = stamp_response(response(bytes, kind), stamp.clone())
        .now_or_never()
        .expect("ready");
    drain(stamped.into_body(), sink)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    // Criterion's flags (`--bench`) are accepted and ignored: this harness prints its own.
    let rounds: usize = std::env::var("LENSCAP_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(31);
    let stamp = Arc::new(Stamp::compile(&StampConfig::default()).unwrap());
    println!(
        "{:<12} {:>9} {:>12} {:>12} {:>7}  outcome",
        "image", "bytes", "copy", "stamp", "ratio"
    );
    // LENSCAP_BENCH_ONLY=png/100KB runs the images whose name contains it (for callgrind).
    let only = std::env::var("LENSCAP_BENCH_ONLY").unwrap_or_default();
    let mut worst: f64 = 0.0;
    for (label, size) in [("100KB", 100_000), ("1MB", 1_000_000), ("5MB", 5_000_000)] {
        for kind in [Kind::Jpeg, Kind::Png, Kind::Webp] {
            let name = format!("{}/{label}", kind.name());
            if !name.contains(&only) {
                continue;
            }
            let bytes = Bytes::from(image_of(size, kind));
            let mut sink = Vec::with_capacity(bytes.len() + 4096);
            let outcome = stamp_response(response(&bytes, kind), stamp.clone())
                .now_or_never()
                .expect("ready")
                .extensions()
                .get::<StampOutcome>()
                .copied();
            assert_eq!(outcome, Some(StampOutcome::Stamped), "{}", kind.name());
            // Enough iterations per round for about 2 ms of copying.
            let per_round = (2_000_000 / bytes.len()).clamp(1, 200);
            let (mut copy, mut stamped) = (Vec::new(), Vec::new());
            for _ in 0..rounds {
                let start = Instant::now();
                for _ in 0..per_round {
                    black_box(drive_copy(&bytes, kind, &mut sink));
                }
                copy.push(start.elapsed() / per_round as u32);
                let start = Instant::now();
                for _ in 0..per_round {
                    black_box(drive_stamp(&bytes, kind, &stamp, &mut sink));
                }
                stamped.push(start.elapsed() / per_round as u32);
            }
            let (copy, stamped) = (median(copy), median(stamped));
            let ratio = stamped.as_secs_f64() / copy.as_secs_f64();
            worst = worst.max(ratio);
            println!(
                "{:<12} {:>9} {:>12?} {:>12?} {:>7.2}  {:?}",
                name,
                bytes.len(),
                copy,
                stamped,
                ratio,
                outcome.unwrap()
            );
        }
    }
    println!("worst ratio stamp / copy: {worst:.2} (target <= 1.10)");
}
