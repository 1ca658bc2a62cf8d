//! WebP: an `XMP ` chunk at the end of the RIFF payload, `VP8X` with the XMP flag.
//!
//! Only the RIFF header and the first chunk are parsed up front:
//! - `VP8X` without the XMP flag: the flag is set, the RIFF size grows by the XMP chunk,
//!   and the walker appends the chunk at the RIFF end (after image data and `EXIF`, as the
//!   container spec orders them). With the flag already set, XMP is left alone.
//! - simple `VP8 ` or `VP8L`: a `VP8X` chunk is inserted before it, with the canvas size
//!   read from the VP8 frame header or the VP8L header (and the alpha flag from VP8L's
//!   `alpha_is_used` bit), and the XMP chunk appended as above.
//!
//! `EXIF` (after the image data) is scrubbed in stream by the walker when `VP8X` flags it.
//! A body whose declared `Content-Length` is shorter than the RIFF size passes through.

use bytes::Bytes;

use super::read::{le16, le32};
use super::walk::Walker;
use super::{PassReason, Plan, Stamp, Step};

const FLAG_ALPHA: u8 = 0x10;
const FLAG_EXIF: u8 = 0x08;
const FLAG_XMP: u8 = 0x04;

/// `XMP ` + little-endian size + packet + a pad byte when the size is odd.
pub(crate) fn xmp_chunk(packet: &[u8]) -> Bytes {
    let mut c = Vec::with_capacity(8 + packet.len() + 1);
    c.extend_from_slice(b"XMP ");
    c.extend_from_slice(&(packet.len() as u32).to_le_bytes());
    c.extend_from_slice(packet);
    if packet.len() % 2 == 1 {
        c.push(0);
    }
    Bytes::from(c)
}

/// Parses the RIFF header and first chunk; see [`Step`].
pub(crate) fn plan(data: &[u8], stamp: &Stamp, expected_len: Option<u64>) -> Step {
    if data.len() < 20 {
        return Step::NeedMore(20);
    }
    if &data[0..4] != b"RIFF" || &data[8..12] != b"WEBP" {
        return Step::Pass(PassReason::UnknownFormat);
    }
    let Some(riff_size) = le32(data, 4) else {
        return Step::NeedMore(8);
    };
    let riff_end = 8 + u64::from(riff_size);
    if riff_size % 2 == 1 || riff_size < 4 + 8 {
        return Step::Pass(PassReason::Malformed);
    }
    if expected_len.is_some_and(|len| len < riff_end) {
        return Step::Pass(PassReason::Truncated);
    }
    let kind = &data[12..16];
    let Some(size) = le32(data, 16) else {
        return Step::NeedMore(20);
    };
    if 20 + u64::from(size) > riff_end {
        return Step::Pass(PassReason::Malformed);
    }
    let xmp_len = stamp.webp_chunk.len() as u32;
    match kind {
        b"VP8X" => {
            if size < 10 {
                return Step::Pass(PassReason::Malformed);
            }
            // Header and flags are all we need; the rest of VP8X passes through the walker.
            let Some(&flags) = data.get(20) else {
                return Step::NeedMore(21);
            };
            let has_xmp = flags & FLAG_XMP != 0;
            let add_xmp = stamp.xmp && !has_xmp;
            let scrub = flags & FLAG_EXIF != 0 && stamp.scrub.any();
            if !add_xmp && !scrub {
                return Step::Plan(nothing());
            }
            let mut head = data[..21].to_vec();
            let tail = if add_xmp {
                let Some(new_size) = riff_size.checked_add(xmp_len) else {
                    return Step::Pass(PassReason::Malformed);
                };
                head[4..8].copy_from_slice(&new_size.to_le_bytes());
                head[20] = flags | FLAG_XMP;
                Some(stamp.webp_chunk.clone())
            } else {
                None
            };
            let walker = Walker::new(21, riff_end, tail, stamp.scrub, stamp.max_header_bytes);
            // The walker starts mid-chunk: skip the rest of VP8X's payload and pad.
            let walker = walker.skipping(u64::from(size) + u64::from(size & 1) - 1);
            Step::Plan(Plan {
                consumed: 21,
                head,
                added: u64::from(xmp_len) * u64::from(add_xmp),
                walker: Some(walker),
                stamped: add_xmp,
                scrubbed: scrub,
            })
        }
        b"VP8 " | b"VP8L" => {
            if !stamp.xmp {
                // A simple file has no room for EXIF: nothing to scrub either.
                return Step::Plan(nothing());
            }
            let min = if kind == b"VP8 " { 10 } else { 5 };
            if size < min {
                return Step::Pass(PassReason::Malformed);
            }
            if data.len() < 20 + min as usize {
                return Step::NeedMore(20 + min as usize);
            }
            let Some((width, height, alpha)) = canvas(kind, data) else {
                return Step::Pass(PassReason::Malformed);
            };
            let Some(new_size) = riff_size.checked_add(18 + xmp_len) else {
                return Step::Pass(PassReason::Malformed);
            };
            let mut head = Vec::with_capacity(30);
            head.extend_from_slice(b"RIFF");
            head.extend_from_slice(&new_size.to_le_bytes());
            head.extend_from_slice(b"WEBPVP8X");
            head.extend_from_slice(&10u32.to_le_bytes());
            head.push(FLAG_XMP | if alpha { FLAG_ALPHA } else { 0 });
            head.extend_from_slice(&[0, 0, 0]);
            head.extend_from_slice(&(width - 1).to_le_bytes()[..3]);
            head.extend_from_slice(&(height - 1).to_le_bytes()[..3]);
            let walker = Walker::new(
                12,
                riff_end,
                Some(stamp.webp_chunk.clone()),
                stamp.scrub,
                stamp.max_header_bytes,
            );
            Step::Plan(Plan {
                consumed: 12,
                head,
                added: u64::from(xmp_len),
                walker: Some(walker),
                stamped: true,
                scrubbed: false,
            })
        }
        _ => Step::Pass(PassReason::Malformed),
    }
}

fn nothing() -> Plan {
    Plan {
        consumed: 0,
        head: Vec::new(),
        added: 0,
        walker: None,
        stamped: false,
        scrubbed: false,
    }
}

/// Canvas width, height (both ≥ 1) and alpha from a simple file's bitstream header.
fn canvas(kind: &[u8], data: &[u8]) -> Option<(u32, u32, bool)> {
    if kind == b"VP8 " {
        let body = data.get(20..30)?;
        // Frame tag (3 bytes, bit 0 clear for a key frame), start code, 14-bit sizes.
        if body[0] & 1 != 0 || body[3..6] != [0x9D, 0x01, 0x2A] {
            return None;
        }
        let w = u32::from(le16(body, 6)? & 0x3FFF);
        let h = u32::from(le16(body, 8)? & 0x3FFF);
        (w > 0 && h > 0).then_some((w, h, false))
    } else {
        let body = data.get(20..25)?;
        // Signature 0x2F, then width-1 (14 bits), height-1 (14), alpha (1), version (3).
        if body[0] != 0x2F {
            return None;
        }
        let bits = le32(body, 1)?;
        if bits >> 29 != 0 {
            return None;
        }
        let w = (bits & 0x3FFF) + 1;
        let h = ((bits >> 14) & 0x3FFF) + 1;
        Some((w, h, bits & (1 << 28) != 0))
    }
}
