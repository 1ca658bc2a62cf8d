//! PNG: an uncompressed XMP `iTXt` chunk before the first `IDAT`; `eXIf` and XMP edits.
//!
//! Chunks are buffered from the signature up to the first `IDAT`. The signature and a
//! 13-byte `IHDR` with a valid CRC are required. Metadata chunks are edited by
//! [`edit_chunk`], before `IDAT` here and after it by the [`PngWalker`]: an `eXIf` is
//! scrubbed in place, uncompressed text (XMP or not) has its location properties blanked;
//! compressed text is inflated and checked, and neutralised if it holds a location (renamed
//! to the private ancillary chunk `lcBk`, data zeroed, CRC recomputed: decoders skip it).
//! ImageMagick's hex `Raw profile type exif/APP1/xmp` text is decoded and checked the same
//! way. An existing uncompressed XMP `iTXt` gets `plus:DataMining` merged (see the module
//! docs of `stamp`); a compressed one only its scrub, and no second packet is added.

use std::io::Read;

use bytes::Bytes;

use super::exif::ScrubOptions;
use super::read::be32;
use super::walk::{PngWalker, Walker};
use super::{Head, PassReason, Plan, Stamp, Step, exif, xmp};

/// The private ancillary, safe-to-copy chunk type a neutralised metadata chunk becomes.
pub(crate) const NEUTRAL: &[u8; 4] = b"lcBk";
/// Compressed text is inflated up to this many bytes; more is treated as unreadable.
const MAX_INFLATE: u64 = 8 << 20;

/// What [`edit_chunk`] did to a chunk's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChunkEdit {
    Unchanged,
    /// Edited in place: recompute the CRC.
    Edited,
    /// Holds a location that cannot be edited in place: rename, zero, recompute the CRC.
    Neutralise,
}

fn inflate(data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(data)
        .take(MAX_INFLATE + 1)
        .read_to_end(&mut out)
        .ok()?;
    (out.len() as u64 <= MAX_INFLATE).then_some(out)
}

/// Whether some text (XMP, or an ImageMagick raw profile) carries what `scrub` removes.
fn text_has_location(keyword: &[u8], text: &[u8], scrub: ScrubOptions) -> bool {
    if let Some(kind) = keyword.strip_prefix(b"Raw profile type ") {
        // "\n<type>\n<length>\n<hex…>"
        let hex: Vec<u8> = text
            .splitn(4, |b| *b == b'\n')
            .nth(3)
            .unwrap_or(&[])
            .iter()
            .copied()
            .filter(u8::is_ascii_hexdigit)
            .collect();
        let bytes: Vec<u8> = hex
            .chunks_exact(2)
            .filter_map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok())
            .collect();
        return match kind {
            b"exif" | b"APP1" => {
                let tiff = bytes.strip_prefix(b"Exif\0\0").unwrap_or(&bytes);
                let mut copy = tiff.to_vec();
                scrub.gps && exif::reaches_gps(tiff) || exif::scrub(&mut copy, scrub) == Ok(true)
            }
            _ => xmp::has_properties(&bytes, scrub),
        };
    }
    xmp::has_properties(text, scrub)
}

/// Whether a chunk type is one [`edit_chunk`] may edit.
pub(crate) fn is_metadata(kind: &[u8]) -> bool {
    matches!(kind, b"eXIf" | b"iTXt" | b"tEXt" | b"zTXt")
}

/// Edits one metadata chunk's data (`eXIf`, `iTXt`, `tEXt`, `zTXt`) in place.
pub(crate) fn edit_chunk(kind: &[u8; 4], data: &mut [u8], scrub: ScrubOptions) -> ChunkEdit {
    let changed = |c: bool| {
        if c {
            ChunkEdit::Edited
        } else {
            ChunkEdit::Unchanged
        }
    };
    if !scrub.any() {
        return ChunkEdit::Unchanged;
    }
    if kind == b"eXIf" {
        return changed(exif::scrub_block(data, scrub));
    }
    let Some(k) = memchr::memchr(0, data) else {
        // No keyword terminator: not a text chunk a reader can parse either.
        return ChunkEdit::Unchanged;
    };
    let keyword = data[..k].to_vec();
    match kind {
        b"tEXt" => {
            let text = &mut data[k + 1..];
            if keyword.starts_with(b"Raw profile type ") {
                return if text_has_location(&keyword, text, scrub) {
                    ChunkEdit::Neutralise
                } else {
                    ChunkEdit::Unchanged
                };
            }
            changed(xmp::blank_properties(text, scrub))
        }
        b"zTXt" => match inflate(data.get(k + 2..).unwrap_or(&[])) {
            Some(text) if !text_has_location(&keyword, &text, scrub) => ChunkEdit::Unchanged,
            // Unreadable compressed text cannot carry anything a reader would find.
            None => ChunkEdit::Unchanged,
            Some(_) => ChunkEdit::Neutralise,
        },
        b"iTXt" => {
            // keyword \0 flag method language \0 translated keyword \0 text
            let flag = data.get(k + 1).copied();
            let lang = data
                .get(k + 3..)
                .and_then(|r| memchr::memchr(0, r))
                .map(|p| k + 3 + p);
            let text_at = lang.and_then(|l| {
                data.get(l + 1..)
                    .and_then(|r| memchr::memchr(0, r))
                    .map(|p| l + 2 + p)
            });
            let Some(text_at) = text_at else {
                return changed(xmp::blank_properties(data, scrub));
            };
            if flag == Some(0) {
                return changed(xmp::blank_properties(&mut data[text_at..], scrub));
            }
            match inflate(&data[text_at..]) {
                Some(text) if !text_has_location(&keyword, &text, scrub) => ChunkEdit::Unchanged,
                None => ChunkEdit::Unchanged,
                Some(_) => ChunkEdit::Neutralise,
            }
        }
        _ => ChunkEdit::Unchanged,
    }
}

/// Scrub only, for a header that could not be read whole (too large, truncated): the
/// signature is kept and every chunk goes through the walker.
pub(crate) fn scrub_only(stamp: &Stamp) -> Option<Plan> {
    stamp.scrub.any().then(|| Plan {
        consumed: SIGNATURE.len(),
        head: SIGNATURE.to_vec().into(),
        added: 0,
        walker: Some(Walker::Png(PngWalker::new(
            stamp.scrub,
            stamp.max_header_bytes,
        ))),
        stamped: false,
        scrubbed: false,
    })
}

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

    let is_xmp = |c: &Chunk| {
        let (s, e) = c.data();
        &c.kind == b"iTXt" && data[s..e].starts_with(b"XML:com.adobe.xmp\0")
    };
    let edits = |c: &Chunk| {
        let (s, e) = c.data();
        is_metadata(&c.kind)
            && edit_chunk(&c.kind, &mut data[s..e].to_vec(), stamp.scrub) != ChunkEdit::Unchanged
    };
    if stamp.xmp && !chunks.iter().any(|c| is_xmp(c) || edits(c)) {
        // Nothing before `IDAT` changes: the input's bytes go out, then the stamp.
        return Step::Plan(Plan {
            consumed: idat,
            head: Head::Insert {
                at: idat,
                bytes: stamp.png_chunk.clone(),
            },
            added: 0,
            walker: walker(stamp),
            stamped: true,
            scrubbed: false,
        });
    }

    let mut head = Vec::with_capacity(idat + stamp.png_chunk.len());
    head.extend_from_slice(&data[..idat]);
    let mut scrubbed = false;
    let mut stamped = false;
    let mut has_xmp = false;
    for c in &chunks {
        let (s, e) = c.data();
        let is_xmp = is_xmp(c);
        let merge_here = is_xmp && !has_xmp && data[s..e].starts_with(XMP_KEYWORD) && crc_ok(c);
        let edit = if merge_here {
            let text = &mut head[s + XMP_KEYWORD.len()..e];
            let attrs = if stamp.xmp {
                stamp.merge_attrs.as_deref()
            } else {
                None
            };
            let edit = xmp::edit_in_place(text, attrs, stamp.scrub);
            stamped |= edit.merged;
            scrubbed |= edit.scrubbed;
            if edit.merged || edit.scrubbed {
                ChunkEdit::Edited
            } else {
                ChunkEdit::Unchanged
            }
        } else {
            edit_chunk(&c.kind, &mut head[s..e], stamp.scrub)
        };
        has_xmp |= is_xmp;
        match edit {
            ChunkEdit::Unchanged => continue,
            ChunkEdit::Edited => {}
            ChunkEdit::Neutralise => {
                head[c.at + 4..c.at + 8].copy_from_slice(NEUTRAL);
                head[s..e].fill(0);
            }
        }
        scrubbed |= !merge_here;
        let kind: [u8; 4] = head[c.at + 4..c.at + 8].try_into().expect("4 bytes");
        let sum = crc(&kind, &head[s..e]);
        head[e..e + 4].copy_from_slice(&sum.to_be_bytes());
    }
    if !has_xmp && stamp.xmp {
        head.extend_from_slice(&stamp.png_chunk);
        stamped = true;
    }
    Step::Plan(Plan {
        consumed: idat,
        head: head.into(),
        added: 0,
        walker: walker(stamp),
        stamped,
        scrubbed,
    })
}

/// The walker over the chunks from the first `IDAT` on, when anything is scrubbed.
fn walker(stamp: &Stamp) -> Option<Walker> {
    stamp
        .scrub
        .any()
        .then(|| Walker::Png(PngWalker::new(stamp.scrub, stamp.max_header_bytes)))
}
