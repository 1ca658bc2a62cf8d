//! Stamping throughput against a plain copy through the same body plumbing.
//!
//! Each image is served as 16 KiB frames (what a file body yields) through a
//! `StreamBody`; "copy" wraps that body in `StampBody::passthrough` and drains it into a
//! buffer, "stamp" runs `stamp_response` on it and drains the result the same way.
//! Target: stamp within 10% of copy (see DESIGN.md, performance targets).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures_util::stream;
use http_body::{Body, Frame};
use http_body_util::{BodyExt, StreamBody};
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, ImageEncoder, RgbImage};
use lenscap::stamp::{Stamp, StampBody, StampConfig, stamp_response};

const FRAME: usize = 16 * 1024;

type FrameBody = StreamBody<stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

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
fn image_of(target: usize, png: bool) -> Vec<u8> {
    let mut side = 64u32;
    loop {
        let img = noise(side, side);
        let mut out = Vec::new();
        if png {
            PngEncoder::new(&mut out)
                .write_image(img.as_raw(), side, side, ExtendedColorType::Rgb8)
                .unwrap();
        } else {
            JpegEncoder::new_with_quality(&mut out, 92)
                .encode_image(&img)
                .unwrap();
        }
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

fn response(bytes: &Bytes) -> http::Response<FrameBody> {
    http::Response::builder()
        .header("content-type", "image/jpeg")
        .header("content-length", bytes.len())
        .header("etag", "\"bench\"")
        .body(StreamBody::new(stream::iter(frames(bytes))))
        .unwrap()
}

async fn drain<B>(mut body: B, sink: &mut Vec<u8>) -> usize
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Debug,
{
    sink.clear();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            sink.extend_from_slice(&data);
        }
    }
    sink.len()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let stamp = Arc::new(Stamp::compile(&StampConfig::default()).unwrap());
    let mut group = c.benchmark_group("stamp");
    for (label, size) in [("100KB", 100_000), ("1MB", 1_000_000), ("5MB", 5_000_000)] {
        for (format, png) in [("jpeg", false), ("png", true)] {
            let bytes = Bytes::from(image_of(size, png));
            let mut sink = Vec::with_capacity(bytes.len() + 4096);
            group.throughput(Throughput::Bytes(bytes.len() as u64));
            let id = format!("{format}/{label}");
            group.bench_with_input(BenchmarkId::new("copy", &id), &bytes, |b, bytes| {
                b.iter(|| {
                    rt.block_on(async {
                        let body = StampBody::passthrough(response(bytes).into_body());
                        drain(body, &mut sink).await
                    })
                })
            });
            group.bench_with_input(BenchmarkId::new("stamp", &id), &bytes, |b, bytes| {
                b.iter(|| {
                    rt.block_on(async {
                        let stamped = stamp_response(response(bytes), stamp.clone()).await;
                        drain(stamped.into_body(), &mut sink).await
                    })
                })
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
