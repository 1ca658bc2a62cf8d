//! HEIC/HEIF/AVIF (ISO-BMFF): the Exif and XMP items, blanked in place.
//!
//! The header is buffered from `ftyp` through the top-level `meta` box. Its `iinf` names the
//! metadata items (type `Exif`, or `mime` with content type `application/rdf+xml`) and its
//! `iloc` where their bytes are: a file offset (construction method 0) or inside `idat`
//! (method 1). As the body streams, the [`BmffWalker`] captures each item (up to
//! `max_capture` bytes) and scrubs it in place: the Exif item through the TIFF scrub (after
//! its 4-byte header offset), the XMP item by blanking its location properties. An item in
//! several extents, a compressed XMP item, or one larger than `max_capture` is zeroed. No
//! byte moves, so every `iloc` offset stays valid, and image items are never touched.
//!
//! No XMP is added (that would mean rewriting `iinf`/`iloc`); the opt-out headers still go
//! out. A file whose metadata cannot be located before it streams past is withheld (see
//! the module docs of `stamp`): `mdat` before `meta`, an item built from other items
//! (method 2), an extent "to the end of the file", overlapping items, a `meta` box larger
//! than `max_header_bytes` or one that does not parse.

use bytes::Bytes;

use super::exif::ScrubOptions;
use super::read::{be16, be32};
use super::walk::{Walker, zeros};
use super::{Format, Halt, PassReason, Plan, Stamp, Step, exif, xmp};

/// `ftyp` brands of still images and image sequences in HEIF and AVIF.
const HEIF_BRANDS: [&[u8; 4]; 10] = [
    b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"mif2", b"MiHE",
];
const AVIF_BRANDS: [&[u8; 4]; 2] = [b"avif", b"avis"];

/// HEIF or AVIF from an `ftyp` box at the start of `head`.
pub(crate) fn sniff(head: &[u8]) -> Option<Format> {
    if head.len() < 16 || &head[4..8] != b"ftyp" {
        return None;
    }
    let size = (be32(head, 0)? as usize).clamp(16, head.len());
    let brands = std::iter::once(&head[8..12]).chain(head[16..size].chunks_exact(4));
    let mut heif = false;
    for b in brands {
        if AVIF_BRANDS.iter().any(|a| &a[..] == b) {
            return Some(Format::Avif);
        }
        heif |= HEIF_BRANDS.iter().any(|h| &h[..] == b);
    }
    heif.then_some(Format::Heif)
}

/// `(type, header length, total length)` of the box at `at`; `None` when not all buffered.
fn box_at(data: &[u8], at: usize, end: usize) -> Result<([u8; 4], usize, u64), Halt> {
    let need = Halt::NeedMore(at + 16);
    let (Some(size), Some(kind)) = (be32(data, at), data.get(at + 4..at + 8)) else {
        return Err(need);
    };
    let kind = [kind[0], kind[1], kind[2], kind[3]];
    let (header, total) = match size {
        0 => (8, (end - at) as u64),
        1 => {
            let (Some(hi), Some(lo)) = (be32(data, at + 8), be32(data, at + 12)) else {
                return Err(need);
            };
            (16, u64::from(hi) << 32 | u64::from(lo))
        }
        n => (8, u64::from(n)),
    };
    if total < header as u64 {
        return Err(Halt::Withhold);
    }
    Ok((kind, header, total))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Exif,
    Xmp,
    Zero,
}

#[derive(Debug, Clone, Copy)]
struct Range {
    start: u64,
    end: u64,
    action: Action,
}

/// Reads a big-endian unsigned of `n` bytes (0, 4 or 8).
fn uint(data: &[u8], at: usize, n: usize) -> Option<u64> {
    match n {
        0 => Some(0),
        4 => be32(data, at).map(u64::from),
        8 => Some(u64::from(be32(data, at)?) << 32 | u64::from(be32(data, at + 4)?)),
        _ => None,
    }
}

fn cstr(data: &[u8], at: usize, end: usize) -> Option<(&[u8], usize)> {
    let s = data.get(at..end)?;
    let n = memchr::memchr(0, s)?;
    Some((&s[..n], at + n + 1))
}

/// The metadata items of a `meta` box payload (after its version and flags).
fn metadata_items(data: &[u8], start: usize, end: usize) -> Option<Vec<(u32, Action)>> {
    let mut items = Vec::new();
    let mut at = start;
    while at + 8 <= end {
        let size = be32(data, at)? as usize;
        if size < 8 || at + size > end {
            return None;
        }
        if &data[at + 4..at + 8] == b"iinf" {
            let version = *data.get(at + 8)?;
            let (count, mut e) = if version == 0 {
                (u32::from(be16(data, at + 12)?), at + 14)
            } else {
                (be32(data, at + 12)?, at + 16)
            };
            for _ in 0..count {
                let isize = be32(data, e)? as usize;
                if isize < 12 || e + isize > at + size || &data[e + 4..e + 8] != b"infe" {
                    return None;
                }
                let v = data[e + 8];
                if v >= 2 {
                    let (id, p) = if v == 2 {
                        (u32::from(be16(data, e + 12)?), e + 14)
                    } else {
                        (be32(data, e + 12)?, e + 16)
                    };
                    let kind = data.get(p + 2..p + 6)?;
                    let (_, after_name) = cstr(data, p + 6, e + isize)?;
                    if kind == b"Exif" {
                        items.push((id, Action::Exif));
                    } else if kind == b"mime" {
                        let (ct, after) = cstr(data, after_name, e + isize)?;
                        let encoding = cstr(data, after, e + isize).map_or(&b""[..], |c| c.0);
                        if ct.eq_ignore_ascii_case(b"application/rdf+xml") {
                            let plain = encoding.is_empty();
                            items.push((id, if plain { Action::Xmp } else { Action::Zero }));
                        }
                    }
                }
                e += isize;
            }
        }
        at += size;
    }
    Some(items)
}

/// Where the items' bytes are: `(id, method, extents)` from `iloc`; and the `idat` start.
#[allow(clippy::type_complexity)]
fn locations(
    data: &[u8],
    start: usize,
    end: usize,
) -> Option<(Vec<(u32, u8, Vec<(u64, u64)>)>, Option<u64>)> {
    let mut out = Vec::new();
    let mut idat = None;
    let mut at = start;
    while at + 8 <= end {
        let size = be32(data, at)? as usize;
        if size < 8 || at + size > end {
            return None;
        }
        match &data[at + 4..at + 8] {
            b"idat" => idat = Some(at as u64 + 8),
            b"iloc" => {
                let version = *data.get(at + 8)?;
                let b1 = *data.get(at + 12)?;
                let b2 = *data.get(at + 13)?;
                let (off_size, len_size) = (usize::from(b1 >> 4), usize::from(b1 & 15));
                let base_size = usize::from(b2 >> 4);
                let index_size = if version >= 1 {
                    usize::from(b2 & 15)
                } else {
                    0
                };
                let (count, mut p) = if version < 2 {
                    (u32::from(be16(data, at + 14)?), at + 16)
                } else {
                    (be32(data, at + 14)?, at + 18)
                };
                for _ in 0..count {
                    let (id, q) = if version < 2 {
                        (u32::from(be16(data, p)?), p + 2)
                    } else {
                        (be32(data, p)?, p + 4)
                    };
                    p = q;
                    let method = if version >= 1 {
                        let m = (be16(data, p)? & 15) as u8;
                        p += 2;
                        m
                    } else {
                        0
                    };
                    p += 2; // data_reference_index
                    let base = uint(data, p, base_size)?;
                    p += base_size;
                    let extents = be16(data, p)?;
                    p += 2;
                    let mut list = Vec::new();
                    for _ in 0..extents {
                        p += index_size;
                        let off = uint(data, p, off_size)?;
                        p += off_size;
                        let len = uint(data, p, len_size)?;
                        p += len_size;
                        list.push((base.checked_add(off)?, len));
                    }
                    if p > at + size {
                        return None;
                    }
                    out.push((id, method, list));
                }
            }
            _ => {}
        }
        at += size;
    }
    Some((out, idat))
}

/// Parses `ftyp` through `meta`; see [`Step`].
pub(crate) fn plan(data: &[u8], stamp: &Stamp, expected_len: Option<u64>) -> Step {
    let end_hint = expected_len.map_or(usize::MAX, |l| l as usize);
    let mut at = 0usize;
    let meta = loop {
        let (kind, header, total) = match box_at(data, at, end_hint.max(at + 16)) {
            Ok(b) => b,
            Err(halt) => return halt.into(),
        };
        if at == 0 && &kind != b"ftyp" {
            return Step::Pass(PassReason::UnknownFormat);
        }
        match &kind {
            b"meta" => {
                let end = at as u64 + total;
                if end > data.len() as u64 {
                    return Step::NeedMore(usize::try_from(end).unwrap_or(usize::MAX));
                }
                break (at + header + 4, end as usize);
            }
            b"ftyp" | b"free" | b"skip" | b"wide" | b"uuid" => {
                at = match usize::try_from(at as u64 + total) {
                    Ok(n) => n,
                    Err(_) => return Step::Withhold,
                };
            }
            // Image data (or a movie) before the item table: items cannot be located.
            _ => return Step::Withhold,
        }
    };
    let (start, end) = meta;
    let Some(items) = metadata_items(data, start, end) else {
        return Step::Withhold;
    };
    let Some((locs, idat)) = locations(data, start, end) else {
        return Step::Withhold;
    };
    let mut ranges = Vec::new();
    for (id, action) in &items {
        let Some((_, method, extents)) = locs.iter().find(|l| l.0 == *id) else {
            continue;
        };
        let origin = match (method, idat) {
            (0, _) => 0,
            (1, Some(idat)) => idat,
            _ => return Step::Withhold,
        };
        let action = if extents.len() == 1 {
            *action
        } else {
            Action::Zero
        };
        for (off, len) in extents {
            let Some(s) = origin.checked_add(*off) else {
                return Step::Withhold;
            };
            if *len == 0 {
                return Step::Withhold;
            }
            ranges.push(Range {
                start: s,
                end: s.saturating_add(*len),
                action,
            });
        }
    }
    ranges.sort_by_key(|r| r.start);
    if ranges.windows(2).any(|w| w[0].end > w[1].start) {
        return Step::Withhold;
    }
    if !stamp.scrub.any() || ranges.is_empty() {
        return Step::Plan(Plan {
            consumed: 0,
            head: Vec::new().into(),
            added: 0,
            walker: None,
            stamped: false,
            scrubbed: false,
        });
    }
    // Items inside the buffered header (in `idat`) are scrubbed right here.
    let consumed = end;
    if let Some(r) = ranges
        .iter()
        .find(|r| r.start < consumed as u64 && r.end > consumed as u64)
    {
        return Step::NeedMore(usize::try_from(r.end).unwrap_or(usize::MAX));
    }
    let mut head = data[..consumed].to_vec();
    let mut changed = false;
    ranges.retain(|r| {
        if r.end > consumed as u64 {
            return true;
        }
        changed |= apply(
            r.action,
            &mut head[r.start as usize..r.end as usize],
            stamp.scrub,
        );
        false
    });
    Step::Plan(Plan {
        consumed,
        head: head.into(),
        added: 0,
        walker: Some(Walker::Bmff(BmffWalker {
            pos: consumed as u64,
            ranges: ranges.into_iter().rev().collect(),
            scrub: stamp.scrub,
            max_capture: stamp.max_header_bytes,
            capture: None,
            changed,
        })),
        stamped: false,
        scrubbed: true,
    })
}

fn apply(action: Action, data: &mut [u8], scrub: ScrubOptions) -> bool {
    match action {
        Action::Exif => {
            // exif_tiff_header_offset, then the TIFF header (often after "Exif\0\0").
            let tiff = be32(data, 0)
                .and_then(|off| 4usize.checked_add(off as usize))
                .filter(|at| *at <= data.len());
            match tiff {
                Some(at) => exif::scrub_block(&mut data[at..], scrub),
                None => blank(data),
            }
        }
        Action::Xmp => xmp::blank_properties(data, scrub),
        Action::Zero => blank(data),
    }
}

fn blank(data: &mut [u8]) -> bool {
    let changed = data.iter().any(|b| *b != 0);
    data.fill(0);
    changed
}

// === impl BmffWalker ===

/// Scrubs item byte ranges as the body streams; see the module docs.
#[derive(Debug)]
pub(crate) struct BmffWalker {
    /// Offset in the original stream of the next byte pushed.
    pos: u64,
    /// Ranges still ahead, the nearest last.
    ranges: Vec<Range>,
    scrub: ScrubOptions,
    max_capture: usize,
    capture: Option<Vec<u8>>,
    changed: bool,
}

impl BmffWalker {
    pub(crate) fn push(&mut self, mut seg: Bytes, out: &mut impl Extend<Bytes>) {
        while !seg.is_empty() {
            let Some(r) = self.ranges.last().copied() else {
                self.pos += seg.len() as u64;
                out.extend(Some(seg));
                return;
            };
            if self.pos < r.start {
                let k = (r.start - self.pos).min(seg.len() as u64) as usize;
                out.extend(Some(seg.split_to(k)));
                self.pos += k as u64;
                continue;
            }
            let k = (r.end - self.pos).min(seg.len() as u64) as usize;
            let part = seg.split_to(k);
            self.pos += k as u64;
            let len = r.end - r.start;
            if r.action == Action::Zero || len > self.max_capture as u64 {
                self.changed |= part.iter().any(|b| *b != 0);
                zeros(k as u64, out);
            } else {
                let buf = self
                    .capture
                    .get_or_insert_with(|| Vec::with_capacity(len as usize));
                buf.extend_from_slice(&part);
                if buf.len() as u64 == len {
                    let mut data = self.capture.take().unwrap_or_default();
                    self.changed |= apply(r.action, &mut data, self.scrub);
                    out.extend(Some(Bytes::from(data)));
                }
            }
            if self.pos == r.end {
                self.ranges.pop();
            }
        }
    }

    /// The input ended: a partial capture comes out zeroed.
    pub(crate) fn finish(&mut self, out: &mut impl Extend<Bytes>) {
        if let Some(buf) = self.capture.take() {
            self.changed = true;
            zeros(buf.len() as u64, out);
        }
    }

    pub(crate) fn held(&self) -> u64 {
        self.capture.as_ref().map_or(0, |b| b.len() as u64)
    }

    pub(crate) fn changed(&self) -> bool {
        self.changed
    }
}
