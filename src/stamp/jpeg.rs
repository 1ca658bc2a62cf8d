//! JPEG: an `APP1` XMP segment after `SOI`, `APP0` and Exif `APP1`; Exif and XMP edits.
//!
//! The header is buffered up to the first `SOS` (start of scan): that is where every
//! `APPn` lives, so an existing XMP packet is found before deciding. Everything from `SOS`
//! on, including progressive scans and MPF secondary images, streams through untouched.

use bytes::Bytes;

use super::read::be16;
use super::{PassReason, Plan, Stamp, Step, exif, xmp};

/// The namespace that opens a standard XMP `APP1` payload (29 bytes, NUL included).
pub(crate) const XMP_NS: &[u8] = b"http://ns.adobe.com/xap/1.0/\0";
const EXIF_ID: &[u8] = b"Exif\0\0";

/// `FF E1`, length, namespace, packet. The packet size was checked by `Stamp::compile`.
pub(crate) fn xmp_segment(packet: &[u8]) -> Bytes {
    let len = (2 + XMP_NS.len() + packet.len()).min(usize::from(u16::MAX)) as u16;
    let mut seg = Vec::with_capacity(4 + XMP_NS.len() + packet.len());
    seg.extend_from_slice(&[0xFF, 0xE1]);
    seg.extend_from_slice(&len.to_be_bytes());
    seg.extend_from_slice(XMP_NS);
    seg.extend_from_slice(packet);
    Bytes::from(seg)
}

struct Segment {
    marker: u8,
    /// Payload range (after the length field).
    start: usize,
    end: usize,
}

/// Parses the header in `data`; see [`Step`].
pub(crate) fn plan(data: &[u8], stamp: &Stamp) -> Step {
    if !data.starts_with(&[0xFF, 0xD8]) {
        return Step::Pass(PassReason::UnknownFormat);
    }
    let mut segments: Vec<Segment> = Vec::new();
    let mut pos = 2;
    let sos = loop {
        let Some(&ff) = data.get(pos) else {
            return Step::NeedMore(pos + 2);
        };
        if ff != 0xFF {
            return Step::Pass(PassReason::Malformed);
        }
        let Some(&marker) = data.get(pos + 1) else {
            return Step::NeedMore(pos + 2);
        };
        match marker {
            // Fill bytes before a marker.
            0xFF => pos += 1,
            0xDA => break pos,
            0xD8 | 0xD9 | 0x00 => return Step::Pass(PassReason::Malformed),
            0x01 | 0xD0..=0xD7 => pos += 2,
            _ => {
                let Some(len) = be16(data, pos + 2) else {
                    return Step::NeedMore(pos + 4);
                };
                let len = usize::from(len);
                if len < 2 {
                    return Step::Pass(PassReason::Malformed);
                }
                let end = pos + 2 + len;
                if data.len() < end {
                    return Step::NeedMore(end);
                }
                segments.push(Segment {
                    marker,
                    start: pos + 4,
                    end,
                });
                pos = end;
            }
        }
    };

    let is_exif = |s: &Segment| s.marker == 0xE1 && data[s.start..s.end].starts_with(EXIF_ID);
    let is_xmp = |s: &Segment| s.marker == 0xE1 && data[s.start..s.end].starts_with(XMP_NS);

    // Insert after the leading run of APP0 and Exif APP1 segments (fill bytes included).
    let mut insert_at = 2;
    for s in &segments {
        if s.marker == 0xE0 || is_exif(s) {
            insert_at = s.end;
        } else {
            break;
        }
    }

    let mut head = Vec::with_capacity(sos + stamp.jpeg_segment.len());
    head.extend_from_slice(&data[..sos]);
    let mut scrubbed = false;
    let mut stamped = false;
    if stamp.scrub.any() {
        for s in segments.iter().filter(|s| is_exif(s)) {
            let tiff = &mut head[s.start + EXIF_ID.len()..s.end];
            match exif::scrub(tiff, stamp.scrub) {
                Ok(changed) => scrubbed |= changed,
                Err(error) => tracing::debug!(%error, "jpeg exif left untouched"),
            }
        }
    }
    let existing = segments.iter().find(|s| is_xmp(s));
    if let Some(s) = existing {
        let packet = &mut head[s.start + XMP_NS.len()..s.end];
        let attrs = if stamp.xmp {
            stamp.merge_attrs.as_deref()
        } else {
            None
        };
        let edit = xmp::edit_in_place(packet, attrs, stamp.scrub.gps);
        stamped = edit.merged;
        scrubbed |= edit.scrubbed;
    } else if stamp.xmp {
        head.splice(insert_at..insert_at, stamp.jpeg_segment.iter().copied());
        stamped = true;
    }
    Step::Plan(Plan {
        consumed: sos,
        head,
        added: 0,
        walker: None,
        stamped,
        scrubbed,
    })
}
