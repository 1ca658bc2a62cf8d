//! Same-length Exif (TIFF) scrub: every GPS IFD and, optionally, serial numbers and names.
//!
//! A `GPSInfo` (0x8825) pointer is looked for in every IFD a reader follows: IFD0, the
//! chain after it (IFD1, the thumbnail's, and any later one) and the Exif IFD. Each GPS IFD
//! is removed by zeroing its table and out-of-line values, then taking its pointer entry out
//! of the IFD that holds it: the following entries and the next-IFD link shift left by 12
//! bytes, the count drops and the freed 12 bytes are zeroed. The block keeps its length and
//! no other offset moves, so Orientation, the thumbnail, ICC and maker notes stay valid.
//!
//! Everything is validated before the first byte changes. A block that cannot be walked
//! safely is handled by [`scrub_or_blank`]: if a reader could still reach a GPS IFD through
//! it, the whole block is zeroed (same length); if not (no GPS pointer, or one that leads
//! outside the block), it is left untouched.

/// What to remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ScrubOptions {
    pub(crate) gps: bool,
    pub(crate) serials: bool,
}

impl ScrubOptions {
    pub(crate) fn any(self) -> bool {
        self.gps || self.serials
    }
}

/// Why an Exif block could not be scrubbed entry by entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ExifError {
    #[error("not a TIFF header")]
    NotTiff,
    #[error("an IFD or value lies outside the block")]
    OutOfBounds,
    #[error("an entry has an unknown type")]
    UnknownType,
    #[error("a GPS IFD overlaps an IFD that is kept")]
    Overlap,
    #[error("the IFDs form a loop or are too many")]
    Loop,
}

const TAG_GPS_IFD: u16 = 0x8825;
const TAG_EXIF_IFD: u16 = 0x8769;
const TAG_ARTIST: u16 = 0x013B;
const TAG_XP_AUTHOR: u16 = 0x9C9D;
const TAG_CAMERA_SERIAL: u16 = 0xC62F;
const TAG_OWNER: u16 = 0xA430;
const TAG_BODY_SERIAL: u16 = 0xA431;
const TAG_LENS_SERIAL: u16 = 0xA435;
const MAX_ENTRIES: usize = 4096;
const MAX_IFDS: usize = 16;

#[derive(Clone, Copy)]
struct Tiff<'a> {
    data: &'a [u8],
    le: bool,
}

#[derive(Clone, Copy)]
struct Entry {
    at: usize,
    tag: u16,
    kind: u16,
    count: u32,
}

#[derive(Clone, Copy)]
struct Ifd {
    at: usize,
    count: usize,
    /// One past the next-IFD link.
    end: usize,
}

impl<'a> Tiff<'a> {
    fn new(data: &'a [u8]) -> Result<Self, ExifError> {
        let le = match data.get(0..2) {
            Some(b"II") => true,
            Some(b"MM") => false,
            _ => return Err(ExifError::NotTiff),
        };
        let t = Tiff { data, le };
        if t.u16(2) != Some(42) {
            return Err(ExifError::NotTiff);
        }
        Ok(t)
    }

    fn u16(&self, at: usize) -> Option<u16> {
        let b: [u8; 2] = self.data.get(at..at.checked_add(2)?)?.try_into().ok()?;
        Some(if self.le {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        })
    }

    fn u32(&self, at: usize) -> Option<u32> {
        let b: [u8; 4] = self.data.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(if self.le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    }

    fn ifd(&self, at: usize) -> Result<Ifd, ExifError> {
        let count = usize::from(self.u16(at).ok_or(ExifError::OutOfBounds)?);
        if count > MAX_ENTRIES {
            return Err(ExifError::OutOfBounds);
        }
        let end = at
            .checked_add(2 + 12 * count + 4)
            .filter(|end| *end <= self.data.len())
            .ok_or(ExifError::OutOfBounds)?;
        Ok(Ifd { at, count, end })
    }

    fn entry(&self, ifd: &Ifd, i: usize) -> Entry {
        let at = ifd.at + 2 + 12 * i;
        // In bounds: `ifd` checked its table against the block.
        Entry {
            at,
            tag: self.u16(at).unwrap_or(0),
            kind: self.u16(at + 2).unwrap_or(0),
            count: self.u32(at + 4).unwrap_or(0),
        }
    }

    fn entries(&self, ifd: Ifd) -> impl Iterator<Item = (usize, Entry)> + '_ {
        (0..ifd.count).map(move |i| (i, self.entry(&ifd, i)))
    }

    /// The byte range of an entry's value, and whether it is inline in the entry.
    fn value(&self, e: &Entry) -> Result<(usize, usize, bool), ExifError> {
        let unit: u64 = match e.kind {
            1 | 2 | 6 | 7 => 1,
            3 | 8 => 2,
            4 | 9 | 11 | 13 => 4,
            5 | 10 | 12 => 8,
            _ => return Err(ExifError::UnknownType),
        };
        let len = unit * u64::from(e.count);
        if len <= 4 {
            return Ok((e.at + 8, e.at + 8 + len as usize, true));
        }
        let off = self.u32(e.at + 8).ok_or(ExifError::OutOfBounds)? as u64;
        let end = off.checked_add(len).ok_or(ExifError::OutOfBounds)?;
        if end > self.data.len() as u64 {
            return Err(ExifError::OutOfBounds);
        }
        Ok((off as usize, end as usize, false))
    }

    fn pointer(&self, e: &Entry) -> Result<usize, ExifError> {
        if !matches!(e.kind, 4 | 13) || e.count != 1 {
            return Err(ExifError::OutOfBounds);
        }
        Ok(self.u32(e.at + 8).ok_or(ExifError::OutOfBounds)? as usize)
    }

    /// IFD0 and the chain after it. A next link of 0 or past the block ends the chain.
    fn main_chain(&self) -> Result<Vec<Ifd>, ExifError> {
        let mut chain: Vec<Ifd> = Vec::new();
        let mut at = self.u32(4).ok_or(ExifError::NotTiff)? as usize;
        loop {
            if chain.iter().any(|i| i.at == at) || chain.len() >= MAX_IFDS {
                return Err(ExifError::Loop);
            }
            let ifd = self.ifd(at)?;
            chain.push(ifd);
            let next = self.u32(ifd.end - 4).unwrap_or(0) as usize;
            if next == 0 || next >= self.data.len() {
                return Ok(chain);
            }
            at = next;
        }
    }

    /// The Exif IFDs pointed at from `chain` (a pointer past the block is ignored).
    fn exif_ifds(&self, chain: &[Ifd]) -> Result<Vec<Ifd>, ExifError> {
        let mut out: Vec<Ifd> = Vec::new();
        for ifd in chain {
            for (_, e) in self.entries(*ifd) {
                if e.tag == TAG_EXIF_IFD {
                    let at = self.pointer(&e)?;
                    if at >= self.data.len() || out.iter().any(|i| i.at == at) {
                        continue;
                    }
                    out.push(self.ifd(at)?);
                }
            }
        }
        Ok(out)
    }
}

fn overlaps(a: (usize, usize), b: (usize, usize)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

/// Scrubs a PNG `eXIf`, WebP `EXIF` or HEIF Exif payload: TIFF, tolerating a stray
/// `Exif\0\0` prefix. Falls back to zeroing the block as [`scrub_or_blank`] does.
pub(crate) fn scrub_block(block: &mut [u8], opts: ScrubOptions) -> bool {
    match block.strip_prefix(b"Exif\0\0") {
        Some(_) => scrub_or_blank(&mut block[6..], opts),
        None => scrub_or_blank(block, opts),
    }
}

/// Scrubs a TIFF block in place; a block that cannot be walked but through which a reader
/// could still reach a GPS IFD is zeroed whole. Returns whether anything changed.
pub(crate) fn scrub_or_blank(tiff: &mut [u8], opts: ScrubOptions) -> bool {
    match scrub(tiff, opts) {
        Ok(changed) => changed,
        Err(error) if opts.gps && reaches_gps(tiff) => {
            tracing::debug!(%error, "exif block zeroed: a GPS IFD is reachable but the block is malformed");
            let changed = tiff.iter().any(|b| *b != 0);
            tiff.fill(0);
            changed
        }
        Err(error) => {
            tracing::debug!(%error, "exif block left untouched: no GPS IFD is reachable");
            false
        }
    }
}

/// Whether a lenient reader would find a `GPSInfo` pointer that leads inside the block.
pub(crate) fn reaches_gps(tiff: &[u8]) -> bool {
    let Ok(t) = Tiff::new(tiff) else {
        return false;
    };
    let mut todo: Vec<usize> = t.u32(4).map(|a| a as usize).into_iter().collect();
    let mut seen: Vec<usize> = Vec::new();
    while let Some(at) = todo.pop() {
        if at == 0 || at >= tiff.len() || seen.contains(&at) || seen.len() >= MAX_IFDS {
            continue;
        }
        seen.push(at);
        let Some(count) = t.u16(at) else { continue };
        for i in 0..usize::from(count).min(MAX_ENTRIES) {
            let e = at + 2 + 12 * i;
            let (Some(tag), Some(off)) = (t.u16(e), t.u32(e + 8)) else {
                break;
            };
            match tag {
                TAG_GPS_IFD if (off as usize) < tiff.len() => return true,
                TAG_EXIF_IFD => todo.push(off as usize),
                _ => {}
            }
        }
        if let Some(next) = t.u32(at + 2 + 12 * usize::from(count)) {
            todo.push(next as usize);
        }
    }
    false
}

/// Scrubs a TIFF block in place, entry by entry. Returns whether anything changed; an
/// error leaves the block untouched.
pub(crate) fn scrub(tiff: &mut [u8], opts: ScrubOptions) -> Result<bool, ExifError> {
    let mut zero: Vec<(usize, usize)> = Vec::new();
    // (IFD, indices of its entries to take out)
    let mut remove: Vec<(Ifd, Vec<usize>)> = Vec::new();
    {
        let t = Tiff::new(tiff)?;
        let chain = t.main_chain()?;
        let exif = t.exif_ifds(&chain)?;
        let kept: Vec<(usize, usize)> = chain.iter().chain(&exif).map(|i| (i.at, i.end)).collect();
        let out_of_line = |v: (usize, usize, bool), zero: &mut Vec<(usize, usize)>| {
            if !v.2 && kept.iter().any(|k| overlaps((v.0, v.1), *k)) {
                return Err(ExifError::Overlap);
            }
            zero.push((v.0, v.1));
            Ok(())
        };
        for (ifd, is_exif) in chain
            .iter()
            .map(|i| (*i, false))
            .chain(exif.iter().map(|i| (*i, true)))
        {
            let mut gone = Vec::new();
            for (i, e) in t.entries(ifd) {
                match e.tag {
                    TAG_GPS_IFD if opts.gps => {
                        let gps = t.ifd(t.pointer(&e)?)?;
                        if kept.iter().any(|k| overlaps((gps.at, gps.end), *k)) {
                            return Err(ExifError::Overlap);
                        }
                        zero.push((gps.at, gps.end));
                        for (_, g) in t.entries(gps) {
                            let v = t.value(&g)?;
                            // Inline values went with the table.
                            if !v.2 {
                                out_of_line(v, &mut zero)?;
                            }
                        }
                        gone.push(i);
                    }
                    TAG_ARTIST | TAG_XP_AUTHOR | TAG_CAMERA_SERIAL if opts.serials && !is_exif => {
                        out_of_line(t.value(&e)?, &mut zero)?;
                    }
                    TAG_OWNER | TAG_BODY_SERIAL | TAG_LENS_SERIAL if opts.serials && is_exif => {
                        out_of_line(t.value(&e)?, &mut zero)?;
                    }
                    _ => {}
                }
            }
            if !gone.is_empty() {
                remove.push((ifd, gone));
            }
        }
    }

    let mut changed = false;
    for (start, end) in zero {
        // Checked by `Tiff::value` and `Tiff::ifd`.
        if let Some(range) = tiff.get_mut(start..end) {
            changed |= range.iter().any(|b| *b != 0);
            range.fill(0);
        }
    }
    let le = tiff[0] == b'I';
    for (ifd, gone) in remove {
        // Compact the table: kept entries move up, then the next-IFD link, then zeros.
        let mut write = ifd.at + 2;
        for i in 0..ifd.count {
            if gone.contains(&i) {
                continue;
            }
            let read = ifd.at + 2 + 12 * i;
            tiff.copy_within(read..read + 12, write);
            write += 12;
        }
        tiff.copy_within(ifd.end - 4..ifd.end, write);
        tiff[write + 4..ifd.end].fill(0);
        let count = (ifd.count - gone.len()) as u16;
        let bytes = if le {
            count.to_le_bytes()
        } else {
            count.to_be_bytes()
        };
        tiff[ifd.at..ifd.at + 2].copy_from_slice(&bytes);
        changed = true;
    }
    Ok(changed)
}

/// Reads the tags of IFD0 (tag, type, count, raw value field); for tests.
#[cfg(test)]
pub(crate) fn ifd0_tags(tiff: &[u8]) -> Option<Vec<(u16, u16, u32, u32)>> {
    let t = Tiff::new(tiff).ok()?;
    let ifd = t.ifd(t.u32(4)? as usize).ok()?;
    Some(
        (0..ifd.count)
            .map(|i| {
                let e = t.entry(&ifd, i);
                (e.tag, e.kind, e.count, t.u32(e.at + 8).unwrap_or(0))
            })
            .collect(),
    )
}

/// Builds a small TIFF block: IFD0 with Orientation, Artist, an Exif IFD (owner, body
/// serial) and a GPS IFD with out-of-line rationals, then IFD1. For tests.
#[cfg(test)]
pub(crate) fn sample_tiff(le: bool) -> Vec<u8> {
    let mut b = TiffBuilder {
        out: Vec::new(),
        le,
    };
    b.out.extend_from_slice(if le { b"II" } else { b"MM" });
    b.u16(42);
    b.u32(8);
    // IFD0 at 8: 4 entries -> ends at 8 + 2 + 48 + 4 = 62.
    b.u16(4);
    b.entry(0x0112, 3, 1, 6 << if le { 0 } else { 16 });
    b.entry(TAG_ARTIST, 2, 8, 200);
    b.entry(TAG_EXIF_IFD, 4, 1, 100);
    b.entry(TAG_GPS_IFD, 4, 1, 140);
    b.u32(300); // IFD1
    b.out.resize(100, 0);
    // Exif IFD at 100: 2 entries -> 100 + 2 + 24 + 4 = 130.
    b.u16(2);
    b.entry(TAG_OWNER, 2, 4, u32::from_be_bytes(*b"Bob\0"));
    b.entry(TAG_BODY_SERIAL, 2, 8, 208);
    b.u32(0);
    b.out.resize(140, 0);
    // GPS IFD at 140: 2 entries -> 140 + 2 + 24 + 4 = 170; latitude at 170 (24 bytes).
    b.u16(2);
    b.entry(0x0001, 2, 2, u32::from_be_bytes(*b"N\0\0\0"));
    b.entry(0x0002, 5, 3, 170);
    b.u32(0);
    for v in [52u32, 1, 22, 1, 7, 1] {
        b.u32(v);
    }
    b.out.resize(200, 0);
    b.out.extend_from_slice(b"Jo Doe\0\0");
    b.out.extend_from_slice(b"SN12345\0");
    b.out.resize(300, 0);
    // IFD1 at 300: one entry.
    b.u16(1);
    b.entry(0x0103, 3, 1, 6 << if le { 0 } else { 16 });
    b.u32(0);
    b.out
}

#[cfg(test)]
struct TiffBuilder {
    out: Vec<u8>,
    le: bool,
}

#[cfg(test)]
impl TiffBuilder {
    fn u16(&mut self, v: u16) {
        let b = if self.le {
            v.to_le_bytes()
        } else {
            v.to_be_bytes()
        };
        self.out.extend_from_slice(&b);
    }
    fn u32(&mut self, v: u32) {
        let b = if self.le {
            v.to_le_bytes()
        } else {
            v.to_be_bytes()
        };
        self.out.extend_from_slice(&b);
    }
    fn entry(&mut self, tag: u16, kind: u16, count: u32, value: u32) {
        self.u16(tag);
        self.u16(kind);
        self.u32(count);
        // Inline ASCII is raw bytes; callers pass it big-endian-packed.
        if kind == 2 && count <= 4 {
            self.out.extend_from_slice(&value.to_be_bytes());
        } else {
            self.u32(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GPS_ONLY: ScrubOptions = ScrubOptions {
        gps: true,
        serials: false,
    };

    #[test]
    fn removes_gps_keeps_orientation_and_ifd1() {
        for le in [true, false] {
            let mut t = sample_tiff(le);
            let len = t.len();
            assert!(scrub(&mut t, GPS_ONLY).unwrap());
            assert_eq!(t.len(), len);
            let tags = ifd0_tags(&t).unwrap();
            let names: Vec<u16> = tags.iter().map(|e| e.0).collect();
            assert_eq!(names, vec![0x0112, TAG_ARTIST, TAG_EXIF_IFD]);
            // The next-IFD link moved with the entries.
            let tt = Tiff::new(&t).unwrap();
            assert_eq!(tt.u32(8 + 2 + 36), Some(300));
            assert_eq!(tt.u16(300), Some(1));
            // GPS IFD and its rationals are gone, the artist is still there.
            assert!(t[140..194].iter().all(|b| *b == 0));
            assert_eq!(&t[200..206], b"Jo Doe");
            // A second pass finds nothing.
            assert!(!scrub(&mut t, GPS_ONLY).unwrap());
        }
    }

    #[test]
    fn blanks_serials_and_names() {
        let mut t = sample_tiff(true);
        let opts = ScrubOptions {
            gps: false,
            serials: true,
        };
        assert!(scrub(&mut t, opts).unwrap());
        assert!(t[200..216].iter().all(|b| *b == 0));
        assert_eq!(ifd0_tags(&t).unwrap().len(), 4);
        assert!(!t.windows(3).any(|w| w == b"Bob"));
    }

    #[test]
    fn bad_bounds_leave_block_untouched() {
        let mut t = sample_tiff(true);
        // GPS latitude offset far outside the block.
        let at = 140 + 2 + 12 + 8;
        t[at..at + 4].copy_from_slice(&10_000u32.to_le_bytes());
        let orig = t.clone();
        assert_eq!(scrub(&mut t, GPS_ONLY), Err(ExifError::OutOfBounds));
        assert_eq!(t, orig);
        let mut short = sample_tiff(false);
        short.truncate(60);
        let orig = short.clone();
        assert!(scrub(&mut short, GPS_ONLY).is_err());
        assert_eq!(short, orig);
        assert!(scrub(&mut [], GPS_ONLY).is_err());
    }
}
