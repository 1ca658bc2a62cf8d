//! The privacy invariant, format by format: no stamped image carries its original position
//! (nor, by default, serials and owner names) out, checked with exiftool and byte by byte,
//! and every decodable image keeps its pixels. exiftool is required: the test fails, not
//! skips, without it (`apt-get install libimage-exiftool-perl`).

mod stamp_support;

use std::path::Path;
use std::process::Command;

use lenscap::stamp::{StampOutcome, Withheld, stamp_bytes};
use stamp_support::corpus::{self, Case};
use stamp_support::*;

/// `exiftool -a -G1 -ee <tags> -j FILE`, parsed: every `group:tag` key with its value.
fn exiftool(bytes: &[u8], name: &str, tags: &[&str]) -> Vec<(String, String)> {
    let dir = std::env::temp_dir().join(format!("lenscap-privacy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = dir.join(format!("{n}-{name}"));
    std::fs::write(&path, bytes).unwrap();
    let out = Command::new("exiftool")
        .args(["-a", "-G1", "-ee", "-j"])
        .args(tags)
        .arg(&path)
        .output()
        .expect("exiftool must be installed (Debian: libimage-exiftool-perl)");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "exiftool output for {name}: {e}: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    let _ = std::fs::remove_file(Path::new(&path));
    json[0]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "SourceFile" && !k.starts_with("ExifTool:"))
        .map(|(k, v)| (k.clone(), v.to_string().trim_matches('"').to_owned()))
        .collect()
}

fn gps_tags(bytes: &[u8], name: &str) -> Vec<(String, String)> {
    exiftool(bytes, name, &["-gps:all", "-xmp:all"])
        .into_iter()
        .filter(|(k, _)| {
            let k = k.to_ascii_lowercase();
            k.contains("gps") || k.contains("location")
        })
        .collect()
}

fn serial_tags(bytes: &[u8], name: &str) -> Vec<(String, String)> {
    exiftool(bytes, name, &[])
        .into_iter()
        .filter(|(k, v)| {
            let k = k.to_ascii_lowercase();
            (k.contains("serial") || k.contains("owner") || k.ends_with(":artist"))
                && !v.trim().is_empty()
        })
        .collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn file_name(case: &Case) -> String {
    let ext = case.content_type.rsplit('/').next().unwrap();
    format!("{}.{ext}", case.name)
}

/// Every case, served through `stamp_response` in several chunkings (`serve_all` checks
/// they agree and that Content-Length is right).
#[tokio::test]
async fn no_position_serial_or_owner_leaves_in_any_format() {
    let stamp = stamp();
    let mut failures = Vec::new();
    for case in corpus::all_cases() {
        let name = file_name(&case);
        // The corpus must really leak before stamping, or this test proves nothing.
        let before = gps_tags(&case.bytes, &name);
        assert_eq!(
            !before.is_empty(),
            case.exiftool_reads,
            "{name}: exiftool's view of the input: {before:?}"
        );
        // Compressed text hides the bytes; there exiftool's view is the check.
        assert!(
            corpus::position_needles()
                .iter()
                .any(|n| contains(&case.bytes, n))
                || case.name.contains("compressed")
                || case.name.contains("raw-profile"),
            "{name}: input lacks the position bytes"
        );

        let served = serve_all(&stamp, &case.bytes, case.content_type).await;
        // The streamed outcome is decided on the header; a block found later is still
        // scrubbed. Over the whole image, `stamp_bytes` reports it.
        let (whole, whole_outcome) = stamp_bytes(&stamp, &case.bytes);
        assert!(whole_outcome.is_modified(), "{name}: {whole_outcome:?}");
        assert_eq!(served.status, http::StatusCode::OK, "{name}");
        let out = &served.body;
        let after = gps_tags(out, &name);
        if !after.is_empty() {
            failures.push(format!("{name}: exiftool still finds {after:?}"));
        }
        for n in corpus::position_needles() {
            if contains(out, &n) {
                failures.push(format!(
                    "{name}: position bytes {:?} left",
                    String::from_utf8_lossy(&n)
                ));
            }
        }
        let serials = serial_tags(out, &name);
        if !serials.is_empty() {
            failures.push(format!("{name}: exiftool still finds {serials:?}"));
        }
        for n in corpus::serial_needles() {
            if contains(out, &n) {
                failures.push(format!("{name}: {:?} left", String::from_utf8_lossy(&n)));
            }
        }
        assert_eq!(whole, *out, "{name}: stamp_bytes agrees with the stream");

        if case.decodable {
            assert_eq!(frames(&case.bytes), frames(out), "{name}: pixels");
        }
        if let Some(ranges) = &case.mutable {
            assert_eq!(out.len(), case.bytes.len(), "{name}: same length");
            for (i, (a, b)) in case.bytes.iter().zip(out.iter()).enumerate() {
                if a != b {
                    assert!(
                        ranges.iter().any(|(s, e)| (*s..*e).contains(&i)),
                        "{name}: byte {i} outside the metadata items changed"
                    );
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn orientation_survives_the_scrub() {
    let stamp = stamp();
    for case in corpus::jpeg_cases().into_iter().take(4) {
        let name = file_name(&case);
        let served = serve_all(&stamp, &case.bytes, case.content_type).await;
        let tags = exiftool(&served.body, &name, &["-Orientation", "-n"]);
        assert!(
            tags.iter()
                .any(|(k, v)| k == "IFD0:Orientation" && v == "6"),
            "{name}: {tags:?}"
        );
    }
}

#[tokio::test]
async fn appended_image_keeps_its_pixels_and_mpf_offsets() {
    let input = corpus::jpeg_mpf();
    let served = serve_all(&stamp(), &input, "image/jpeg").await;
    // Both images are still where MPF says: the appended one starts with SOI at the same
    // distance from the end.
    let second_at = input
        .windows(4)
        .rposition(|w| w == [0xFF, 0xD8, 0xFF, 0xE0])
        .unwrap();
    let from_end = input.len() - second_at;
    let out = &served.body;
    let second_out = &out[out.len() - from_end..];
    assert_eq!(&second_out[..2], &[0xFF, 0xD8]);
    assert_eq!(frames(&input[second_at..]), frames(second_out));
    assert!(!gps_tags(second_out, "second.jpg").iter().any(|_| true));
}

#[tokio::test]
async fn unparsed_containers_that_carry_exif_are_withheld() {
    let stamp = stamp();
    // A TIFF (as a camera or scanner writes it) with the phone's GPS IFD.
    let tiff = corpus::phone_tiff(true, corpus::GpsIn::Ifd0);
    assert!(!gps_tags(&tiff, "camera.tif").is_empty());
    let served = serve(&stamp, &tiff, "image/tiff", Chunking::Fixed(5)).await;
    assert_eq!(served.status, http::StatusCode::FORBIDDEN);
    assert_eq!(served.outcome, StampOutcome::Scrubbed);
    assert!(!contains(&served.body, &corpus::lat_bytes()[0]));
    assert_eq!(
        served.headers["content-length"],
        served.body.len().to_string().as_str()
    );
    assert!(served.headers.get("etag").is_none());
    let (out, _) = stamp_bytes(&stamp, &tiff);
    assert!(out.is_empty());

    // A GIF has no Exif: it passes untouched.
    let gif = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;".to_vec();
    let served = serve(&stamp, &gif, "image/gif", Chunking::Whole).await;
    assert_eq!(served.status, http::StatusCode::OK);
    assert_eq!(served.body, gif);
    assert!(!served.outcome.is_modified());
}

#[tokio::test]
async fn withheld_responses_are_marked() {
    let tiff = corpus::phone_tiff(false, corpus::GpsIn::ExifIfd);
    let response = http::Response::builder()
        .header("content-type", "image/tiff")
        .header("content-length", tiff.len())
        .body(body(vec![bytes::Bytes::from(tiff)]))
        .unwrap();
    let out = lenscap::stamp::stamp_response(response, stamp()).await;
    assert_eq!(out.extensions().get::<Withheld>(), Some(&Withheld));
}

#[tokio::test]
async fn truncated_metadata_is_blanked_not_passed() {
    // The body ends inside the Exif APP1, after the GPS IFD: what came is scrubbed.
    let case = &corpus::jpeg_cases()[0];
    let cut_at = case
        .bytes
        .windows(6)
        .position(|w| w == b"Exif\0\0")
        .unwrap()
        + 400;
    let input = &case.bytes[..cut_at];
    assert!(corpus::lat_bytes().iter().any(|n| contains(input, n)));
    let served = serve(&stamp(), input, "image/jpeg", Chunking::Fixed(64)).await;
    assert_eq!(served.body.len(), input.len());
    assert!(
        !corpus::lat_bytes()
            .iter()
            .any(|n| contains(&served.body, n))
    );
    assert!(served.outcome.is_modified());
}
