//! JPEG: an `APP1` XMP segment after `SOI`, `APP0` and Exif `APP1`; Exif and XMP edits.
//!
//! The header is buffered up to the first `SOS` (start of scan): that is where the `APPn`
//! segments live, so an existing XMP packet is found before deciding. Every Exif `APP1` is
//! scrubbed (GPS wherever its pointer sits), every XMP and Extended XMP `APP1` has its
//! location properties blanked, and a Photoshop `APP13` its embedded Exif and XMP. From
//! `SOS` on, the [`JpegWalker`] does the same for segments between scans and for every
//! image appended after `EOI` (MPF), with nothing changing length.

use bytes::Bytes;

use super::exif::ScrubOptions;
use super::read::{be16, be32};
use super::walk::{JpegWalker, Walker};
use super::{Head, PassReason, Plan, Stamp, Step, exif, xmp};

/// The namespace that opens a standard XMP `APP1` payload (29 bytes, NUL included).
pub(crate) const XMP_NS: &[u8] = b"http://ns.adobe.com/xap/1.0/\0";
/// Extended XMP: namespace, then a 32-byte GUID, full length and offset (4 bytes each).
const XMP_EXT_NS: &[u8] = b"http://ns.adobe.com/xmp/extension/\0";
const EXIF_ID: &[u8] = b"Exif\0\0";
const PHOTOSHOP_ID: &[u8] = b"Photoshop 3.0\0";

/// Scrubs one marker segment's payload in place; returns whether anything changed.
pub(crate) fn scrub_segment(marker: u8, payload: &mut [u8], scrub: ScrubOptions) -> bool {
    match marker {
        0xE1 if payload.starts_with(EXIF_ID) => {
            exif::scrub_or_blank(&mut payload[EXIF_ID.len()..], scrub)
        }
        0xE1 if payload.starts_with(XMP_NS) => {
            xmp::blank_properties(&mut payload[XMP_NS.len()..], scrub)
        }
        0xE1 if payload.starts_with(XMP_EXT_NS) => {
            let at = (XMP_EXT_NS.len() + 40).min(payload.len());
            xmp::blank_properties(&mut payload[at..], scrub)
        }
        0xED if payload.starts_with(PHOTOSHOP_ID) => {
            scrub_photoshop(&mut payload[PHOTOSHOP_ID.len()..], scrub)
        }
        _ => false,
    }
}

/// Photoshop image resources: `8BIM`, id, padded Pascal name, size, padded data. Exif
/// (0x0422) and XMP (0x0424) resources are scrubbed; a list that does not add up has its
/// text blanked as XMP would be, and is zeroed if a GPS IFD might hide in it.
fn scrub_photoshop(irb: &mut [u8], scrub: ScrubOptions) -> bool {
    let mut changed = false;
    let mut pos = 0;
    while pos + 4 <= irb.len() {
        let ok = (|| {
            if &irb[pos..pos + 4] != b"8BIM" {
                return None;
            }
            let id = be16(irb, pos + 4)?;
            let name_len = usize::from(*irb.get(pos + 6)?);
            let name_end = pos + 6 + ((name_len + 2) & !1);
            let size = be32(irb, name_end)? as usize;
            let start = name_end + 4;
            let end = start.checked_add(size)?;
            if end > irb.len() {
                return None;
            }
            Some((id, start, end, end + (size & 1)))
        })();
        let Some((id, start, end, next)) = ok else {
            let rest = &mut irb[pos..];
            changed |= xmp::blank_properties(rest, scrub);
            if scrub.gps && super::walk::has_marker(rest) {
                rest.fill(0);
                changed = true;
            }
            return changed;
        };
        match id {
            0x0422 => changed |= super::exif::scrub_block(&mut irb[start..end], scrub),
            0x0424 => changed |= xmp::blank_properties(&mut irb[start..end], scrub),
            _ => {}
        }
        pos = next;
    }
    changed
}

/// Scrub only, for a header that could not be read whole (too large, truncated): `SOI` is
/// kept and everything after it goes through the walker.
pub(crate) fn scrub_only(stamp: &Stamp) -> Option<Plan> {
    stamp.scrub.any().then(|| Plan {
        consumed: 2,
        head: vec![0xFF, 0xD8].into(),
        added: 0,
        walker: Some(Walker::Jpeg(JpegWalker::new(stamp.scrub))),
        stamped: false,
        scrubbed: false,
    })
}

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

    let walker = || {
        stamp
            .scrub
            .any()
            .then(|| Walker::Jpeg(JpegWalker::new(stamp.scrub)))
    };
    let existing = segments.iter().position(is_xmp);
    if existing.is_none()
        && stamp.xmp
        && !segments
            .iter()
            .any(|s| scrub_changes(s.marker, &data[s.start..s.end], stamp.scrub))
    {
        // Nothing in the header changes: the input's bytes go out around the stamp.
        return Step::Plan(Plan {
            consumed: sos,
            head: Head::Insert {
                at: insert_at,
                bytes: stamp.jpeg_segment.clone(),
            },
            added: 0,
            walker: walker(),
            stamped: true,
            scrubbed: false,
        });
    }

    let mut head = Vec::with_capacity(sos + stamp.jpeg_segment.len());
    head.extend_from_slice(&data[..insert_at]);
    if existing.is_none() && stamp.xmp {
        head.extend_from_slice(&stamp.jpeg_segment);
    }
    head.extend_from_slice(&data[insert_at..sos]);
    // Segments after the insertion point moved by the inserted segment's length.
    let shift = head.len() - sos;
    let moved = |s: &Segment| {
        let by = if s.start >= insert_at { shift } else { 0 };
        (s.start + by, s.end + by)
    };
    let mut scrubbed = false;
    let mut stamped = false;
    // The first standard XMP packet is the one to merge into; every segment is scrubbed.
    for (n, s) in segments.iter().enumerate() {
        let (start, end) = moved(s);
        if Some(n) == existing {
            let packet = &mut head[start + XMP_NS.len()..end];
            let attrs = if stamp.xmp {
                stamp.merge_attrs.as_deref()
            } else {
                None
            };
            let edit = xmp::edit_in_place(packet, attrs, stamp.scrub);
            stamped = edit.merged;
            scrubbed |= edit.scrubbed;
        } else if stamp.scrub.any() {
            scrubbed |= scrub_segment(s.marker, &mut head[start..end], stamp.scrub);
        }
    }
    stamped |= existing.is_none() && stamp.xmp;
    Step::Plan(Plan {
        consumed: sos,
        head: head.into(),
        added: 0,
        walker: walker(),
        stamped,
        scrubbed,
    })
}

/// Whether [`scrub_segment`] would change any byte of this segment, tried on a copy (only
/// `APP1` and `APP13` segments can change, and a segment is at most 64 KiB).
fn scrub_changes(marker: u8, payload: &[u8], scrub: ScrubOptions) -> bool {
    if !matches!(marker, 0xE1 | 0xED) || !scrub.any() {
        return false;
    }
    let mut copy = payload.to_vec();
    scrub_segment(marker, &mut copy, scrub) || copy != payload
}
