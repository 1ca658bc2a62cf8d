//! PNG: an uncompressed XMP `iTXt` chunk before the first `IDAT`; `eXIf` and XMP edits.
//!
//! Chunks are buffered from the signature up to the first `IDAT`. The signature and a
//! 13-byte `IHDR` with a valid CRC are required. An `eXIf` is scrubbed in place and its CRC
//! recomputed; an existing uncompressed XMP `iTXt` is edited in place (see the module
//! docs of `stamp`); a compressed one is left alone and no second packet is added.

use bytes::Bytes;

use super::read::be32;
use super::{PassReason, Plan, Stamp, Step, exif, xmp};

/// The eight-byte PNG signature.
pub(crate) const SIGNATURE: &[u8] = &[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
/// `iTXt` keyword, NUL, compression flag 0, method 0, empty language, empty translation.
const XMP_KEYWORD: &[u8] = b"XML:com.adobe.xmp\0\0\0\0\0";
const MAX_CHUNK: u32 = 0x7FFF_FFFF;

pub(crate) fn crc(kind: &[u8], data: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(kind);
    h.update(data);
    h.finalize()
}

/// A complete `iTXt` chunk carrying `packet`.
pub(crate) fn xmp_chunk(packet: &[u8]) -> Bytes {
    let len = XMP_KEYWORD.len() + packet.len();
    let mut c = Vec::with_capacity(12 + len);
    c.extend_from_slice(&(len as u32).to_be_bytes());
    c.extend_from_slice(b"iTXt");
    c.extend_from_slice(XMP_KEYWORD);
    c.extend_from_slice(packet);
    let sum = crc(b"iTXt", &c[8..]);
    c.extend_from_slice(&sum.to_be_bytes());
    Bytes::from(c)
}

struct Chunk {
    kind: [u8; 4],
    /// Offset of the length field; data is `at + 8 .. at + 8 + len`.
    at: usize,
    len: usize,
}

impl Chunk {
    fn data(&self) -> (usize, usize) {
        (self.at + 8, self.at + 8 + self.len)
    }
}

/// Parses chunks up to the first `IDAT`; see [`Step`].
pub(crate) fn plan(data: &[u8], stamp: &Stamp) -> Step {
    if !data.starts_with(SIGNATURE) {
        return Step::Pass(PassReason::UnknownFormat);
    }
    let mut chunks = Vec::new();
    let mut pos = SIGNATURE.len();
    let idat = loop {
        let (Some(len), Some(kind)) = (be32(data, pos), data.get(pos + 4..pos + 8)) else {
            return Step::NeedMore(pos + 8);
        };
        if len > MAX_CHUNK || !kind.iter().all(u8::is_ascii_alphabetic) {
            return Step::Pass(PassReason::Malformed);
        }
        let kind: [u8; 4] = [kind[0], kind[1], kind[2], kind[3]];
        if chunks.is_empty() && (&kind != b"IHDR" || len != 13) {
            return Step::Pass(PassReason::Malformed);
        }
        if &kind == b"IDAT" {
            break pos;
        }
        if &kind == b"IEND" {
            return Step::Pass(PassReason::Malformed);
        }
        let end = pos + 12 + len as usize;
        if data.len() < end {
            return Step::NeedMore(end);
        }
        chunks.push(Chunk {
            kind,
            at: pos,
            len: len as usize,
        });
        pos = end;
    };
    if chunks.is_empty() {
        return Step::Pass(PassReason::Malformed);
    }
    let crc_ok = |c: &Chunk| {
        let (s, e) = c.data();
        be32(data, e) == Some(crc(&c.kind, &data[s..e]))
    };
    if !crc_ok(&chunks[0]) {
        return Step::Pass(PassReason::Malformed);
    }

    let mut head = Vec::with_capacity(idat + stamp.png_chunk.len());
    head.extend_from_slice(&data[..idat]);
    let mut scrubbed = false;
    let mut stamped = false;
    let mut has_xmp = false;
    for c in &chunks {
        let (s, e) = c.data();
        let edited = match &c.kind {
            b"eXIf" if stamp.scrub.any() && crc_ok(c) => {
                match exif::scrub_block(&mut head[s..e], stamp.scrub) {
                    Ok(changed) => {
                        scrubbed |= changed;
                        changed
                    }
                    Err(error) => {
                        tracing::debug!(%error, "png eXIf left untouched");
                        false
                    }
                }
            }
            b"iTXt" if data[s..e].starts_with(b"XML:com.adobe.xmp\0") => {
                has_xmp = true;
                if data[s..e].starts_with(XMP_KEYWORD) && crc_ok(c) {
                    let text = &mut head[s + XMP_KEYWORD.len()..e];
                    let attrs = if stamp.xmp {
                        stamp.merge_attrs.as_deref()
                    } else {
                        None
                    };
                    let edit = xmp::edit_in_place(text, attrs, stamp.scrub.gps);
                    stamped |= edit.merged;
                    scrubbed |= edit.scrubbed;
                    edit.merged || edit.scrubbed
                } else {
                    false
                }
            }
            _ => false,
        };
        if edited {
            let sum = crc(&c.kind, &head[s..e]);
            head[e..e + 4].copy_from_slice(&sum.to_be_bytes());
        }
    }
    if !has_xmp && stamp.xmp {
        head.extend_from_slice(&stamp.png_chunk);
        stamped = true;
    }
    Step::Plan(Plan {
        consumed: idat,
        head,
        added: 0,
        walker: None,
        stamped,
        scrubbed,
    })
}
