//! WebP: an `XMP ` chunk at the end of the RIFF payload, `VP8X` with the XMP flag.
//!
//! The RIFF header and the first chunks are parsed and validated up front; the header is
//! only rewritten once everything a decoder checks first adds up (12.11: an undecodable
//! file must never come out half-modified):
//! - `VP8X` (exactly 10 bytes, reserved bits clear, canvas within 2^32 pixels), then an
//!   optional `ICCP` (only with its flag), then `ANIM` when the animation flag is set, or
//!   `ALPH` and/or a `VP8 `/`VP8L` bitstream whose frame header is valid and whose size is
//!   the canvas. Without the XMP flag: the flag is set, the RIFF size grows by the XMP
//!   chunk, and the walker appends the chunk at the RIFF end (after image data and `EXIF`,
//!   as the container spec orders them). With the flag already set, XMP is not added.
//! - simple `VP8 ` or `VP8L` filling the whole RIFF payload: a `VP8X` chunk is inserted
//!   before it, with the canvas size read from the VP8 frame header or the VP8L header (and
//!   the alpha flag from VP8L's `alpha_is_used` bit), and the XMP chunk appended as above.
//!
//! Whatever the header, the [`RiffWalker`] scrubs every `EXIF` and `XMP ` chunk in place as
//! the body streams, flags or not. A file that fails validation, is truncated, or whose
//! header is too large gets only that in-place scrub: its header bytes are never changed,
//! so such a file is byte-identical unless it carries metadata to scrub.

use bytes::Bytes;

use super::read::{le16, le32};
use super::walk::{RiffWalker, Walker};
use super::{Halt, Held, PassReason, Plan, Stamp, Step};

const FLAG_ICC: u8 = 0x20;
const FLAG_ALPHA: u8 = 0x10;
const FLAG_EXIF: u8 = 0x08;
const FLAG_XMP: u8 = 0x04;
const FLAG_ANIM: u8 = 0x02;
const FLAGS_RESERVED: u8 = 0xC1;

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

/// Scrub only: the header is kept and every chunk from the first goes through the walker.
pub(crate) fn scrub_only(data: &[u8], stamp: &Stamp) -> Option<Plan> {
    if !stamp.scrub.any() || data.len() < 12 {
        return None;
    }
    let riff_end = 8 + u64::from(le32(data, 4)?);
    Some(Plan {
        consumed: 12,
        head: data[..12].to_vec().into(),
        added: 0,
        walker: Some(Walker::Riff(RiffWalker::new(
            12,
            riff_end.max(12),
            None,
            stamp.scrub,
            stamp.max_header_bytes,
        ))),
        stamped: false,
        scrubbed: false,
    })
}

fn chunk_at(data: &[u8], at: usize) -> Result<([u8; 4], u32), Halt> {
    match (data.get(at..at + 4), le32(data, at + 4)) {
        (Some(k), Some(size)) => Ok(([k[0], k[1], k[2], k[3]], size)),
        _ => Err(Halt::NeedMore(at + 8)),
    }
}

/// Checks the chunks after a `VP8X` up to the first image bitstream header.
fn check_extended(
    data: &[u8],
    flags: u8,
    width: u32,
    height: u32,
    riff_end: u64,
) -> Result<(), Halt> {
    let malformed = Halt::Pass(PassReason::Malformed);
    let mut at = 30usize;
    let mut seen_alpha = false;
    let mut first = true;
    loop {
        let (kind, size) = chunk_at(data, at)?;
        let padded = u64::from(size) + u64::from(size & 1);
        if at as u64 + 8 + padded > riff_end {
            return Err(malformed);
        }
        let next = at + 8 + padded as usize;
        match &kind {
            b"ICCP" if first && flags & FLAG_ICC != 0 => {}
            b"ANIM" if flags & FLAG_ANIM != 0 && !seen_alpha => {
                return if size == 6 { Ok(()) } else { Err(malformed) };
            }
            b"ALPH" if flags & FLAG_ANIM == 0 && !seen_alpha && size > 0 => seen_alpha = true,
            b"VP8 " | b"VP8L" if flags & FLAG_ANIM == 0 => {
                let min = if &kind == b"VP8 " { 10 } else { 5 };
                if size < min {
                    return Err(malformed);
                }
                if data.len() < at + 8 + min as usize {
                    return Err(Halt::NeedMore(at + 8 + min as usize));
                }
                return match bitstream(&kind, &data[at..], size) {
                    Some((w, h, _)) if (w, h) == (width, height) => Ok(()),
                    _ => Err(malformed),
                };
            }
            _ => return Err(malformed),
        }
        first = false;
        at = next;
    }
}

/// Whether the XMP chunk may be added, which changes the file's layout: only when the file's
/// length is known and holds the whole RIFF payload, and, for a payload small enough to hold
/// whole (`max_header_bytes`), when every chunk boundary lines up with the RIFF end. A length
/// that lies anywhere would otherwise send a reader of the rewritten file astray.
fn layout_holds(
    held: &Held<'_>,
    riff_end: u64,
    expected_len: Option<u64>,
    hold: usize,
) -> Result<bool, Halt> {
    let Some(len) = expected_len else {
        return Ok(false);
    };
    if len < riff_end {
        return Ok(false);
    }
    if riff_end > hold as u64 {
        // Too large to look at whole: the first chunks were checked.
        return Ok(true);
    }
    if (held.len() as u64) < riff_end {
        // Only chunk sizes are read from here on: the frames need not be joined.
        return Err(Halt::NeedBytes(riff_end as usize));
    }
    let mut at = 12u64;
    while at < riff_end {
        let Some(size) = held.le32(at as usize + 4) else {
            return Ok(false);
        };
        at += 8 + u64::from(size) + u64::from(size & 1);
    }
    Ok(at == riff_end)
}

/// Parses the RIFF header and first chunks; see [`Step`].
pub(crate) fn plan(held: &Held<'_>, stamp: &Stamp, expected_len: Option<u64>) -> Step {
    let data = held.prefix;
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
            if size != 10 {
                return Step::Pass(PassReason::Malformed);
            }
            if data.len() < 30 {
                return Step::NeedMore(30);
            }
            let flags = data[20];
            if flags & FLAGS_RESERVED != 0 || data[21..24] != [0, 0, 0] {
                return Step::Pass(PassReason::Malformed);
            }
            let width = u32::from_le_bytes([data[24], data[25], data[26], 0]) + 1;
            let height = u32::from_le_bytes([data[27], data[28], data[29], 0]) + 1;
            if u64::from(width) * u64::from(height) > u64::from(u32::MAX) {
                return Step::Pass(PassReason::Malformed);
            }
            let mut add_xmp = stamp.xmp && flags & FLAG_XMP == 0;
            if add_xmp && let Err(halt) = check_extended(data, flags, width, height, riff_end) {
                return halt.into();
            }
            if add_xmp {
                match layout_holds(held, riff_end, expected_len, stamp.max_header_bytes) {
                    Ok(holds) => add_xmp = holds,
                    Err(halt) => return halt.into(),
                }
            }
            if !add_xmp {
                // Nothing in the header changes; the walker scrubs whatever chunks follow.
                return match scrub_only(data, stamp) {
                    Some(mut plan) => {
                        plan.scrubbed = flags & FLAG_EXIF != 0;
                        Step::Plan(plan)
                    }
                    None => Step::Plan(nothing()),
                };
            }
            let Some(new_size) = riff_size.checked_add(xmp_len) else {
                return Step::Pass(PassReason::Malformed);
            };
            let mut head = data[..21].to_vec();
            head[4..8].copy_from_slice(&new_size.to_le_bytes());
            head[20] = flags | FLAG_XMP;
            let walker = RiffWalker::new(
                21,
                riff_end,
                Some(stamp.webp_chunk.clone()),
                stamp.scrub,
                stamp.max_header_bytes,
            )
            // The walker starts mid-chunk: skip the rest of VP8X's payload.
            .skipping(9);
            Step::Plan(Plan {
                consumed: 21,
                head: head.into(),
                added: u64::from(xmp_len),
                walker: Some(Walker::Riff(walker)),
                stamped: true,
                scrubbed: flags & FLAG_EXIF != 0 && stamp.scrub.any(),
            })
        }
        b"VP8 " | b"VP8L" => {
            let min = if kind == b"VP8 " { 10 } else { 5 };
            if size < min {
                return Step::Pass(PassReason::Malformed);
            }
            if data.len() < 20 + min as usize {
                return Step::NeedMore(20 + min as usize);
            }
            let Some((width, height, alpha)) = bitstream(kind, &data[12..], size) else {
                return Step::Pass(PassReason::Malformed);
            };
            let whole = 20 + u64::from(size) + u64::from(size & 1) == riff_end;
            let holds = match layout_holds(held, riff_end, expected_len, stamp.max_header_bytes) {
                Ok(holds) => holds,
                Err(halt) => return halt.into(),
            };
            if !stamp.xmp || !whole || !holds {
                // A simple file has no room for metadata; chunks after its bitstream
                // (out of spec) are still walked and scrubbed.
                return match scrub_only(data, stamp) {
                    Some(plan) => Step::Plan(plan),
                    None => Step::Plan(nothing()),
                };
            }
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
            let walker = RiffWalker::new(
                12,
                riff_end,
                Some(stamp.webp_chunk.clone()),
                stamp.scrub,
                stamp.max_header_bytes,
            );
            Step::Plan(Plan {
                consumed: 12,
                head: head.into(),
                added: u64::from(xmp_len),
                walker: Some(Walker::Riff(walker)),
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
        head: Vec::new().into(),
        added: 0,
        walker: None,
        stamped: false,
        scrubbed: false,
    }
}

/// Canvas width, height (both ≥ 1) and alpha from a bitstream chunk (`chunk` starts at
/// its fourcc, `size` is its payload size).
fn bitstream(kind: &[u8], chunk: &[u8], size: u32) -> Option<(u32, u32, bool)> {
    if kind == b"VP8 " {
        let body = chunk.get(8..18)?;
        // Frame tag: key frame (bit 0 clear), version ≤ 3, shown, first partition inside.
        let tag = u32::from(body[0]) | u32::from(body[1]) << 8 | u32::from(body[2]) << 16;
        let partition = tag >> 5;
        if tag & 1 != 0 || (tag >> 1) & 7 > 3 || tag & 0x10 == 0 || partition + 10 > size {
            return None;
        }
        if body[3..6] != [0x9D, 0x01, 0x2A] {
            return None;
        }
        let w = u32::from(le16(body, 6)? & 0x3FFF);
        let h = u32::from(le16(body, 8)? & 0x3FFF);
        (w > 0 && h > 0).then_some((w, h, false))
    } else {
        let body = chunk.get(8..13)?;
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
