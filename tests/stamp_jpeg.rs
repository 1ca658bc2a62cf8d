//! JPEG stamping: baseline and progressive, Exif GPS scrub, ICC, existing XMP.

mod stamp_support;

use lenscap::stamp::{PassReason, StampConfig, StampOutcome, stamp_bytes};
use stamp_support::*;

#[tokio::test]
async fn baseline_gets_xmp_after_app0_and_same_pixels() {
    let stamp = stamp();
    let input = jpeg_baseline(64, 48);
    let served = serve_all(&stamp, &input, "image/jpeg").await;
    assert_eq!(served.outcome, StampOutcome::Stamped);
    assert_stamped_headers(&served);
    assert_eq!(frames(&input), frames(&served.body));
    let segs = jpeg_segments(&served.body);
    assert_eq!(segs[0].0, 0xE0, "JFIF stays first");
    assert_eq!(segs[1].0, 0xE1, "XMP right after APP0");
    let xmp = jpeg_xmp(&served.body);
    assert_eq!(xmp.len(), 1);
    assert_dmi(&xmp[0]);
    // Only the segment was inserted: the rest is byte-identical.
    let seg_len = 4 + XMP_NS.len() + stamp.packet().len();
    assert_eq!(served.body.len(), input.len() + seg_len);
    let app0_end = 4 + u16::from_be_bytes([input[4], input[5]]) as usize;
    assert_eq!(&served.body[..app0_end], &input[..app0_end]);
    assert_eq!(&served.body[app0_end + seg_len..], &input[app0_end..]);
}

#[tokio::test]
async fn progressive_is_stamped_and_decodes_the_same() {
    let stamp = stamp();
    let input = fixtures::PROGRESSIVE_JPEG;
    assert!(
        jpeg_segments(input).iter().any(|(m, _)| *m == 0xC2),
        "fixture is SOF2"
    );
    let served = serve_all(&stamp, input, "image/jpeg").await;
    assert_eq!(served.outcome, StampOutcome::Stamped);
    assert_eq!(frames(input), frames(&served.body));
    assert_dmi(&jpeg_xmp(&served.body)[0]);
}

#[tokio::test]
async fn exif_gps_removed_orientation_kept_xmp_after_exif() {
    let stamp = stamp();
    for le in [true, false] {
        let tiff = exif_tiff(le);
        let input = jpeg_with(
            &jpeg_baseline(40, 30),
            &[exif_segment(&tiff), icc_segment()],
        );
        let served = serve_all(&stamp, &input, "image/jpeg").await;
        assert_eq!(served.outcome, StampOutcome::Both);
        assert_eq!(frames(&input), frames(&served.body));
        let segs = jpeg_segments(&served.body);
        let order: Vec<u8> = segs.iter().map(|s| s.0).take(4).collect();
        assert_eq!(order, vec![0xE0, 0xE1, 0xE1, 0xE2], "APP0, Exif, XMP, ICC");
        assert!(segs[2].1.starts_with(XMP_NS));
        assert_eq!(segs[3].1, icc_segment()[4..], "ICC untouched");
        assert_gps_gone(&tiff, &jpeg_exif(&served.body).unwrap());
    }
}

#[tokio::test]
async fn serials_blanked_only_when_asked() {
    let tiff = exif_tiff(true);
    let input = jpeg_with(&jpeg_baseline(16, 16), &[exif_segment(&tiff)]);
    // Serials are scrubbed by default now: "not asked" is an explicit `false`.
    let lenient = stamp_with(StampConfig {
        scrub_serials: false,
        ..StampConfig::default()
    });
    let (out, _) = stamp_bytes(&lenient, &input);
    let exif = jpeg_exif(&out).unwrap();
    assert!(exif.windows(8).any(|w| w == b"SN-98765"));
    assert!(exif.windows(6).any(|w| w == b"Jo Doe"));
    let (out, outcome) = stamp_bytes(&stamp(), &input);
    assert_eq!(outcome, StampOutcome::Both);
    let exif = jpeg_exif(&out).unwrap();
    assert!(!exif.windows(8).any(|w| w == b"SN-98765"));
    assert!(!exif.windows(6).any(|w| w == b"Jo Doe"));
    assert_eq!(TiffRead::new(&exif).orientation(), Some(6));
}

#[tokio::test]
async fn existing_xmp_with_padding_gets_data_mining_merged_in_place() {
    let stamp = stamp();
    let tiff = exif_tiff(true);
    let packet = adobe_packet(2048, "");
    let input = jpeg_with(
        &jpeg_baseline(32, 32),
        &[exif_segment(&tiff), xmp_segment(&packet)],
    );
    let served = serve_all(&stamp, &input, "image/jpeg").await;
    assert_eq!(served.outcome, StampOutcome::Both);
    assert_eq!(served.body.len(), input.len(), "merge is same-length");
    assert_stamped_headers(&served);
    assert_eq!(frames(&input), frames(&served.body));
    let xmp = jpeg_xmp(&served.body);
    assert_eq!(xmp.len(), 1, "no second packet");
    assert!(
        xmp[0].contains(&format!("plus:DataMining=\"{DMI_URI}\"")),
        "{}",
        xmp[0]
    );
    assert!(xmp[0].contains("xmp:CreatorTool=\"Lightroom\""));
    assert!(!xmp[0].contains("GPS"), "exif:GPS* blanked");
    assert!(xmp[0].ends_with("<?xpacket end=\"w\"?>"));
}

#[tokio::test]
async fn existing_xmp_without_room_is_left_alone_but_exif_is_scrubbed() {
    let stamp = stamp();
    let tiff = exif_tiff(true);
    let packet = adobe_packet(0, "");
    let input = jpeg_with(
        &jpeg_baseline(32, 32),
        &[exif_segment(&tiff), xmp_segment(&packet)],
    );
    let (out, outcome) = stamp_bytes(&stamp, &input);
    assert_eq!(outcome, StampOutcome::Scrubbed);
    assert_eq!(out.len(), input.len());
    let xmp = jpeg_xmp(&out);
    assert_eq!(xmp.len(), 1);
    assert!(!xmp[0].contains("DataMining"));
    assert_gps_gone(&tiff, &jpeg_exif(&out).unwrap());
}

#[tokio::test]
async fn already_declared_and_nothing_to_scrub_passes_byte_identical() {
    let stamp = stamp();
    let packet = adobe_packet(
        100,
        " xmlns:plus=\"http://ns.useplus.org/ldf/xmp/1.0/\" plus:DataMining=\"http://ns.useplus.org/ldf/vocab/DMI-ALLOWED\"",
    );
    // The sample packet carries GPS properties: turn the scrub off so nothing is to do.
    let cfg = StampConfig {
        scrub_gps: false,
        ..StampConfig::default()
    };
    let input = jpeg_with(&jpeg_baseline(16, 16), &[xmp_segment(&packet)]);
    let served = serve(&stamp_with(cfg), &input, "image/jpeg", Chunking::Fixed(5)).await;
    assert_eq!(
        served.outcome,
        StampOutcome::PassedThrough(PassReason::NothingToDo)
    );
    assert_eq!(served.body, input);
    assert_eq!(served.headers["etag"], "\"v1\"");
    // Stamping our own output again changes nothing either.
    let (once, _) = stamp_bytes(&stamp, &jpeg_baseline(16, 16));
    let (twice, outcome) = stamp_bytes(&stamp, &once);
    assert_eq!(twice, once);
    assert_eq!(
        outcome,
        StampOutcome::PassedThrough(PassReason::NothingToDo)
    );
}

#[tokio::test]
async fn malformed_exif_is_left_untouched_and_xmp_still_added() {
    let mut tiff = exif_tiff(true);
    // The GPS IFD pointer goes past the end of the block.
    let gps_entry = 8 + 2 + 12 * 4 + 8;
    tiff[gps_entry..gps_entry + 4].copy_from_slice(&5000u32.to_le_bytes());
    let input = jpeg_with(&jpeg_baseline(16, 16), &[exif_segment(&tiff)]);
    let (out, outcome) = stamp_bytes(&stamp(), &input);
    assert_eq!(outcome, StampOutcome::Stamped);
    assert_eq!(jpeg_exif(&out).unwrap(), tiff);
}

#[tokio::test]
async fn header_over_limit_passes_through() {
    let small = stamp_with(StampConfig {
        max_header_bytes: 256,
        ..StampConfig::default()
    });
    let input = jpeg_with(&jpeg_baseline(16, 16), &[icc_segment()]);
    let served = serve(&small, &input, "image/jpeg", Chunking::Fixed(7)).await;
    assert_eq!(
        served.outcome,
        StampOutcome::PassedThrough(PassReason::HeaderTooLarge)
    );
    assert_eq!(served.body, input);
    assert_eq!(
        served.headers["content-length"],
        input.len().to_string().as_str()
    );
}

#[test]
fn xmp_disabled_still_scrubs() {
    let s = stamp_with(StampConfig {
        xmp: false,
        ..StampConfig::default()
    });
    let tiff = exif_tiff(false);
    let input = jpeg_with(&jpeg_baseline(16, 16), &[exif_segment(&tiff)]);
    let (out, outcome) = stamp_bytes(&s, &input);
    assert_eq!(outcome, StampOutcome::Scrubbed);
    assert!(jpeg_xmp(&out).is_empty());
    assert_gps_gone(&tiff, &jpeg_exif(&out).unwrap());
}
