//! Same-length Exif (TIFF) scrub: the GPS IFD and, optionally, serial numbers and names.
//!
//! The GPS IFD is removed by zeroing its entries and their out-of-line values, then taking
//! its `GPSInfo` (0x8825) entry out of IFD0: the following entries and the next-IFD link
//! shift left by 12 bytes, the count drops by one and the freed 12 bytes are zeroed. The
//! block keeps its length and no other offset moves, so Orientation, the thumbnail (IFD1),
//! ICC and maker notes stay valid. Everything is validated before the first byte changes:
//! a block whose bounds do not add up is left untouched.

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

/// Why an Exif block was left untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ExifError {
    #[error("not a TIFF header")]
    NotTiff,
    #[error("an IFD or value lies outside the block")]
    OutOfBounds,
    #[error("an entry has an unknown type")]
    UnknownType,
    #[error("the GPS IFD overlaps IFD0")]
    Overlap,
}

const TAG_GPS_IFD: u16 = 0x8825;
const TAG_EXIF_IFD: u16 = 0x8769;
const TAG_ARTIST: u16 = 0x013B;
const TAG_XP_AUTHOR: u16 = 0x9C9D;
const TAG_OWNER: u16 = 0xA430;
const TAG_BODY_SERIAL: u16 = 0xA431;
const TAG_LENS_SERIAL: u16 = 0xA435;
const MAX_ENTRIES: usize = 4096;

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

    /// The byte range of an entry's value: inline in the entry, or out of line.
    fn value(&self, e: &Entry) -> Result<(usize, usize), ExifError> {
        let unit: u64 = match e.kind {
            1 | 2 | 6 | 7 => 1,
            3 | 8 => 2,
            4 | 9 | 11 | 13 => 4,
            5 | 10 | 12 => 8,
            _ => return Err(ExifError::UnknownType),
        };
        let len = unit * u64::from(e.count);
        if len <= 4 {
            return Ok((e.at + 8, e.at + 8 + len as usize));
        }
        let off = self.u32(e.at + 8).ok_or(ExifError::OutOfBounds)? as u64;
        let end = off.checked_add(len).ok_or(ExifError::OutOfBounds)?;
        if end > self.data.len() as u64 {
            return Err(ExifError::OutOfBounds);
        }
        Ok((off as usize, end as usize))
    }

    fn pointer(&self, e: &Entry) -> Result<usize, ExifError> {
        if !matches!(e.kind, 4 | 13) || e.count != 1 {
            return Err(ExifError::OutOfBounds);
        }
        Ok(self.u32(e.at + 8).ok_or(ExifError::OutOfBounds)? as usize)
    }
}

fn overlaps(a: (usize, usize), b: (usize, usize)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

/// Scrubs a PNG `eXIf` or WebP `EXIF` payload: TIFF, tolerating a stray `Exif\0\0` prefix.
pub(crate) fn scrub_block(block: &mut [u8], opts: ScrubOptions) -> Result<bool, ExifError> {
    match block.strip_prefix(b"Exif\0\0") {
        Some(_) => scrub(&mut block[6..], opts),
        None => scrub(block, opts),
    }
}

/// Scrubs a TIFF block in place. Returns whether anything changed.
pub(crate) fn scrub(tiff: &mut [u8], opts: ScrubOptions) -> Result<bool, ExifError> {
    let mut zero: Vec<(usize, usize)> = Vec::new();
    let mut remove_gps: Option<(Ifd, usize)> = None;
    {
        let t = Tiff::new(tiff)?;
        let ifd0_at = t.u32(4).ok_or(ExifError::NotTiff)? as usize;
        let ifd0 = t.ifd(ifd0_at)?;
        let ifd0_range = (ifd0.at, ifd0.end);
        for i in 0..ifd0.count {
            let e = t.entry(&ifd0, i);
            match e.tag {
                TAG_GPS_IFD if opts.gps => {
                    let gps_at = t.pointer(&e)?;
                    let gps = t.ifd(gps_at)?;
                    if overlaps((gps.at, gps.end), ifd0_range) {
                        return Err(ExifError::Overlap);
                    }
                    zero.push((gps.at, gps.end));
                    for j in 0..gps.count {
                        let v = t.value(&t.entry(&gps, j))?;
                        if v.0 >= gps.end || v.1 <= gps.at {
                            if overlaps(v, ifd0_range) {
                                return Err(ExifError::Overlap);
                            }
                            zero.push(v);
                        }
                    }
                    if remove_gps.is_none() {
                        remove_gps = Some((t.ifd(ifd0_at)?, i));
                    }
                }
                TAG_ARTIST | TAG_XP_AUTHOR if opts.serials => zero.push(t.value(&e)?),
                TAG_EXIF_IFD if opts.serials => {
                    let exif = t.ifd(t.pointer(&e)?)?;
                    for j in 0..exif.count {
                        let e = t.entry(&exif, j);
                        if matches!(e.tag, TAG_OWNER | TAG_BODY_SERIAL | TAG_LENS_SERIAL) {
                            zero.push(t.value(&e)?);
                        }
                    }
                }
                _ => {}
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
    if let Some((ifd0, i)) = remove_gps {
        let entry = ifd0.at + 2 + 12 * i;
        tiff.copy_within(entry + 12..ifd0.end, entry);
        tiff[ifd0.end - 12..ifd0.end].fill(0);
        let count = (ifd0.count - 1) as u16;
        let bytes = if tiff[0] == b'I' {
            count.to_le_bytes()
        } else {
            count.to_be_bytes()
        };
        tiff[ifd0.at..ifd0.at + 2].copy_from_slice(&bytes);
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
